//! The edge: domain types to protobuf and back, and service errors to wire
//! error codes. The only place that maps between the two worlds.

use natter_proto::pb::{self, ErrorCode};
use natter_proto::ServerFrame;
use natter_service::store::{
    Body, BodyKind, ConversationState, HistoryPage, StoredMessage, SyncPage, Target,
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
            } as i32,
            content: m.body.content.clone(),
        }),
    }
}

fn conversation(c: &ConversationState) -> pb::Conversation {
    pb::Conversation {
        conversation_id: c.id,
        kind: pb::ConversationKind::Direct as i32,
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
    }
}

pub fn sync_page(p: &SyncPage) -> pb::SyncPage {
    pb::SyncPage {
        conversations: p.conversations.iter().map(conversation).collect(),
        messages: p.messages.iter().map(message).collect(),
        has_more: p.has_more,
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
    let code = match e {
        ServiceError::InvalidArgument(_) => ErrorCode::InvalidArgument,
        ServiceError::UsernameTaken => ErrorCode::UsernameTaken,
        ServiceError::WeakPassword(_) => ErrorCode::WeakPassword,
        ServiceError::BadCredentials => ErrorCode::BadCredentials,
        ServiceError::TokenInvalid => ErrorCode::TokenInvalid,
        ServiceError::TokenExpired => ErrorCode::TokenExpired,
        ServiceError::AccountDisabled => ErrorCode::AccountDisabled,
        ServiceError::TooManySessions => ErrorCode::TooManySessions,
        ServiceError::NotFound(_) => ErrorCode::NotFound,
        ServiceError::Forbidden(_) => ErrorCode::Forbidden,
        ServiceError::MessageTooLarge { .. } => ErrorCode::MessageTooLarge,
        ServiceError::Unavailable => ErrorCode::Unavailable,
        ServiceError::Internal(_) => ErrorCode::Internal,
    };
    ServerFrame::error(code, e.to_string())
}
