//! The edge: domain types to protobuf and back, and service errors to wire
//! error codes. The only place that maps between the two worlds.

use natter_proto::pb::{self, ErrorCode};
use natter_proto::ServerFrame;
use natter_runtime::clock::millis;
use natter_service::model::{
    Body, BodyKind, ConversationKind, ConversationState, ConversationSummary, FriendRequestRecord,
    GroupRecord, HistoryPage, JoinPolicy, JoinRequestRecord, MemberRecord, RequestStatus, Role,
    StoredMessage, SyncPage, Target,
};
use natter_service::ServiceError;

pub fn message(m: &StoredMessage) -> pb::Message {
    pb::Message {
        conversation_id: m.conversation_id,
        seq: m.seq,
        msg_id: m.msg_id,
        sender_id: m.sender_id,
        client_msg_id: m.client_msg_id.clone(),
        server_ts_ms: m.server_ts_ms,
        body: Some(pb::Body {
            kind: match m.body.kind {
                BodyKind::Text => pb::BodyKind::Text,
                BodyKind::Custom => pb::BodyKind::Custom,
                BodyKind::File => pb::BodyKind::File,
                BodyKind::System => pb::BodyKind::System,
                BodyKind::Recalled => pb::BodyKind::Recalled,
            } as i32,
            content: m.body.content.clone(),
        }),
        mention_user_ids: m.mentions.clone(),
        mention_all: m.mention_all,
    }
}

/// A pushed message back from its protobuf form (`live` reads the frames
/// queued for a session); a body kind no variant has is a bug.
pub fn message_from(m: pb::Message) -> Option<StoredMessage> {
    let body = m.body?;
    Some(StoredMessage {
        conversation_id: m.conversation_id,
        seq: m.seq,
        msg_id: m.msg_id,
        sender_id: m.sender_id,
        client_msg_id: m.client_msg_id,
        server_ts_ms: m.server_ts_ms,
        body: Body {
            kind: match pb::BodyKind::try_from(body.kind).ok()? {
                pb::BodyKind::Text => BodyKind::Text,
                pb::BodyKind::Custom => BodyKind::Custom,
                pb::BodyKind::File => BodyKind::File,
                pb::BodyKind::System => BodyKind::System,
                pb::BodyKind::Recalled => BodyKind::Recalled,
                _ => return None,
            },
            content: body.content,
        },
        mentions: m.mention_user_ids,
        mention_all: m.mention_all,
    })
}

pub fn conversation_kind(k: ConversationKind) -> i32 {
    (match k {
        ConversationKind::Direct => pb::ConversationKind::Direct,
        ConversationKind::Group => pb::ConversationKind::Group,
        ConversationKind::Room => pb::ConversationKind::Room,
    }) as i32
}

pub fn role(r: Role) -> i32 {
    (match r {
        Role::Member => pb::Role::Member,
        Role::Admin => pb::Role::Admin,
        Role::Owner => pb::Role::Owner,
    }) as i32
}

pub fn role_from(r: i32) -> Result<Role, ServiceError> {
    match pb::Role::try_from(r) {
        Ok(pb::Role::Member) => Ok(Role::Member),
        Ok(pb::Role::Admin) => Ok(Role::Admin),
        Ok(pb::Role::Owner) => Ok(Role::Owner),
        _ => Err(ServiceError::InvalidArgument(format!("unknown role {r}"))),
    }
}

fn join_policy(p: JoinPolicy) -> i32 {
    (match p {
        JoinPolicy::Open => pb::JoinPolicy::Open,
        JoinPolicy::Approval => pb::JoinPolicy::Approval,
    }) as i32
}

/// UNSPECIFIED means OPEN.
pub fn join_policy_from(p: i32) -> Result<JoinPolicy, ServiceError> {
    match pb::JoinPolicy::try_from(p) {
        Ok(pb::JoinPolicy::Unspecified | pb::JoinPolicy::Open) => Ok(JoinPolicy::Open),
        Ok(pb::JoinPolicy::Approval) => Ok(JoinPolicy::Approval),
        Err(_) => Err(ServiceError::InvalidArgument(format!(
            "unknown join policy {p}"
        ))),
    }
}

/// UNSPECIFIED means GROUP; DIRECT is refused by the service.
pub fn group_kind_from(k: i32) -> Result<ConversationKind, ServiceError> {
    match pb::ConversationKind::try_from(k) {
        Ok(pb::ConversationKind::Unspecified | pb::ConversationKind::Group) => {
            Ok(ConversationKind::Group)
        }
        Ok(pb::ConversationKind::Room) => Ok(ConversationKind::Room),
        Ok(pb::ConversationKind::Direct) => Ok(ConversationKind::Direct),
        Err(_) => Err(ServiceError::InvalidArgument(format!(
            "unknown conversation kind {k}"
        ))),
    }
}

pub fn friend_request(r: &FriendRequestRecord) -> pb::FriendRequest {
    pb::FriendRequest {
        request_id: r.id,
        from_user_id: r.from,
        from_username: r.from_name.clone(),
        to_user_id: r.to,
        to_username: r.to_name.clone(),
        message: r.message.clone(),
        status: (match r.status {
            RequestStatus::Pending => pb::FriendRequestStatus::Pending,
            RequestStatus::Accepted => pb::FriendRequestStatus::Accepted,
            RequestStatus::Rejected => pb::FriendRequestStatus::Rejected,
        }) as i32,
        reply: r.reply.clone(),
        created_at_ms: r.created_at_ms,
        decided_at_ms: r.decided_at_ms,
    }
}

/// A pushed friend request back from its protobuf form.
pub fn friend_request_from(r: pb::FriendRequest) -> Option<FriendRequestRecord> {
    Some(FriendRequestRecord {
        id: r.request_id,
        from: r.from_user_id,
        from_name: r.from_username,
        to: r.to_user_id,
        to_name: r.to_username,
        message: r.message,
        status: match pb::FriendRequestStatus::try_from(r.status).ok()? {
            pb::FriendRequestStatus::Pending => RequestStatus::Pending,
            pb::FriendRequestStatus::Accepted => RequestStatus::Accepted,
            pb::FriendRequestStatus::Rejected => RequestStatus::Rejected,
            _ => return None,
        },
        reply: r.reply,
        created_at_ms: r.created_at_ms,
        decided_at_ms: r.decided_at_ms,
    })
}

/// A pushed join request back from its protobuf form.
pub fn join_request_from(r: pb::JoinRequest) -> JoinRequestRecord {
    JoinRequestRecord {
        conversation_id: r.conversation_id,
        user_id: r.user_id,
        username: r.username,
        message: r.message,
        created_at_ms: r.created_at_ms,
    }
}

pub fn join_request(r: &JoinRequestRecord) -> pb::JoinRequest {
    pb::JoinRequest {
        conversation_id: r.conversation_id,
        user_id: r.user_id,
        username: r.username.clone(),
        message: r.message.clone(),
        created_at_ms: r.created_at_ms,
    }
}

pub fn group_info(g: &GroupRecord, max_members: u32) -> pb::GroupInfo {
    pb::GroupInfo {
        conversation_id: g.id,
        kind: conversation_kind(g.kind),
        name: g.name.clone(),
        notice: g.notice.clone(),
        owner_id: g.owner_id,
        join_policy: join_policy(g.join_policy),
        muted_all: g.muted_all,
        dismissed: g.dismissed,
        member_count: g.member_count,
        max_members,
        last_seq: g.last_seq,
        created_at_ms: g.created_at_ms,
        my_role: g.my_role.map(role).unwrap_or(0),
        invite_code: g.invite_code.clone(),
    }
}

pub fn member(m: &MemberRecord) -> pb::Member {
    pb::Member {
        user_id: m.user_id,
        username: m.username.clone(),
        role: role(m.role),
        muted_until_ms: m.muted_until_ms,
        joined_at_ms: m.joined_at_ms,
    }
}

pub fn summary(c: &ConversationSummary) -> pb::ConversationSummary {
    pb::ConversationSummary {
        conversation_id: c.id,
        kind: conversation_kind(c.kind),
        title: c.title.clone(),
        peer_user_id: c.peer.unwrap_or(0),
        last_seq: c.last_seq,
        read_seq: c.read_seq,
        unread: c.unread,
        mentioned: c.mentioned,
        last_message: c.last_message.as_ref().map(message),
        last_activity_ms: c.last_activity_ms,
        preview_truncated: c.preview_truncated,
    }
}

fn conversation(c: &ConversationState) -> pb::Conversation {
    pb::Conversation {
        conversation_id: c.id,
        kind: conversation_kind(c.kind),
        member_ids: c.members.iter().map(|m| m.user_id).collect(),
        last_seq: c.last_seq,
        delivered: c
            .members
            .iter()
            .map(|m| pb::MemberCursor {
                user_id: m.user_id,
                seq: m.delivered_seq,
            })
            .collect(),
        joined_seq: c.joined_seq,
        left_seq: c.left_seq,
    }
}

pub fn sync_page(p: &SyncPage) -> pb::SyncPage {
    pb::SyncPage {
        conversations: p.conversations.iter().map(conversation).collect(),
        messages: p.messages.iter().map(message).collect(),
        has_more: p.has_more,
        next_after_conversation_id: p.resume_after(),
        pending_friend_requests: p
            .pending_friend_requests
            .iter()
            .map(friend_request)
            .collect(),
    }
}

pub fn history_page(p: &HistoryPage) -> pb::HistoryPage {
    pb::HistoryPage {
        messages: p.messages.iter().map(message).collect(),
        has_more: p.has_more,
    }
}

pub fn body(b: Option<pb::Body>) -> Result<Body, ServiceError> {
    let b = b.ok_or_else(|| ServiceError::InvalidArgument("body is required".into()))?;
    let kind = match pb::BodyKind::try_from(b.kind) {
        Ok(pb::BodyKind::Text) => BodyKind::Text,
        Ok(pb::BodyKind::Custom) => BodyKind::Custom,
        Ok(pb::BodyKind::File) => BodyKind::File,
        Ok(pb::BodyKind::System) => BodyKind::System,
        Ok(pb::BodyKind::Recalled) => BodyKind::Recalled,
        _ => {
            return Err(ServiceError::InvalidArgument(format!(
                "unknown body kind {}",
                b.kind
            )))
        }
    };
    Ok(Body {
        kind,
        content: b.content,
    })
}

pub fn target(t: Option<pb::send::Target>) -> Result<Target, ServiceError> {
    match t {
        Some(pb::send::Target::PeerUserId(u)) => Ok(Target::Peer(u)),
        Some(pb::send::Target::ConversationId(c)) => Ok(Target::Conversation(c)),
        None => Err(ServiceError::InvalidArgument(
            "a target (peer_user_id or conversation_id) is required".into(),
        )),
    }
}

pub fn error(e: &ServiceError) -> ServerFrame {
    if let ServiceError::GroupFull(_) = e {
        metrics::counter!("natter_limit_hits_total", "limit" => "group_size").increment(1);
    }
    let code = match e {
        ServiceError::InvalidArgument(_) => ErrorCode::InvalidArgument,
        ServiceError::UsernameTaken => ErrorCode::UsernameTaken,
        ServiceError::WeakPassword(_) => ErrorCode::WeakPassword,
        ServiceError::BadCredentials | ServiceError::BadCode(_) => ErrorCode::BadCredentials,
        ServiceError::TokenInvalid => ErrorCode::TokenInvalid,
        ServiceError::TokenExpired => ErrorCode::TokenExpired,
        ServiceError::AccountDisabled => ErrorCode::AccountDisabled,
        ServiceError::TooManySessions => ErrorCode::TooManySessions,
        ServiceError::NotFound(_) => ErrorCode::NotFound,
        ServiceError::Forbidden(_) => ErrorCode::Forbidden,
        ServiceError::MessageTooLarge { .. } => ErrorCode::MessageTooLarge,
        ServiceError::Muted { .. } => ErrorCode::Muted,
        ServiceError::GroupFull(_) => ErrorCode::GroupFull,
        ServiceError::RateLimited { .. } => ErrorCode::RateLimited,
        ServiceError::Unavailable(_) => ErrorCode::Unavailable,
        ServiceError::Internal(_) => ErrorCode::Internal,
    };
    let retry_after_ms = e.retry_after().map(millis).unwrap_or(0);
    ServerFrame::Error(pb::Error {
        code: code as i32,
        message: e.to_string(),
        retry_after_ms,
        muted_until_ms: e.muted_until_ms().unwrap_or(0),
    })
}
