//! Typed calls for friends, groups and rooms, the conversation list, read
//! cursors, typing and recall. Each sends one request and unwraps its answer.

use crate::conn::{expect_done, unexpected};
use crate::{Client, ClientError};
use natter_proto::{pb, ClientFrame, ServerFrame};

macro_rules! call {
    ($client:expr, $req:ident { $($field:tt)* } => $answer:ident) => {
        match $client
            .request(ClientFrame::$req(pb::$req { $($field)* }))
            .await?
        {
            ServerFrame::$answer(a) => Ok(a),
            other => Err(unexpected(&other)),
        }
    };
    ($client:expr, $req:ident { $($field:tt)* }) => {
        expect_done(
            $client
                .request(ClientFrame::$req(pb::$req { $($field)* }))
                .await?,
        )
    };
}

type R<T> = Result<T, ClientError>;

impl Client {
    // ---- friends

    pub async fn friend_request(&self, user_id: u64, message: &str) -> R<pb::FriendRequest> {
        call!(self, SendFriendRequest { user_id, message: message.into() } => FriendRequest)
    }

    pub async fn respond_friend_request(
        &self,
        request_id: u64,
        accept: bool,
        reply: &str,
    ) -> R<pb::FriendRequest> {
        call!(self, RespondFriendRequest { request_id, accept, reply: reply.into() } => FriendRequest)
    }

    /// One page of friend requests below `before_id` (0: the newest).
    pub async fn friend_requests_page(&self, before_id: u64, limit: u32) -> R<pb::FriendRequests> {
        call!(self, ListFriendRequests { before_id, limit } => FriendRequests)
    }

    /// Every friend request, page by page.
    pub async fn friend_requests(&self) -> R<pb::FriendRequests> {
        let mut all = pb::FriendRequests::default();
        let mut before_id = 0;
        loop {
            let p = self.friend_requests_page(before_id, 0).await?;
            before_id = p
                .incoming
                .iter()
                .chain(&p.outgoing)
                .map(|r| r.request_id)
                .min()
                .unwrap_or(0);
            all.incoming.extend(p.incoming);
            all.outgoing.extend(p.outgoing);
            if !p.has_more || before_id == 0 {
                return Ok(all);
            }
        }
    }

    /// One page of friends after `after_username` ("" from the first).
    pub async fn friends_page(&self, after_username: &str, limit: u32) -> R<pb::Friends> {
        call!(self, ListFriends { after_username: after_username.into(), limit } => Friends)
    }

    /// Every friend, page by page, and the blocked list.
    pub async fn friends(&self) -> R<pb::Friends> {
        let mut all = self.friends_page("", 0).await?;
        while all.has_more {
            let after = all
                .friends
                .last()
                .map(|f| f.username.clone())
                .unwrap_or_default();
            let p = self.friends_page(&after, 0).await?;
            all.friends.extend(p.friends);
            all.has_more = p.has_more && !after.is_empty();
        }
        Ok(all)
    }

    pub async fn set_remark(&self, user_id: u64, remark: &str) -> R<()> {
        call!(
            self,
            SetFriendRemark {
                user_id,
                remark: remark.into()
            }
        )
    }

    pub async fn remove_friend(&self, user_id: u64) -> R<()> {
        call!(self, RemoveFriend { user_id })
    }

    pub async fn block(&self, user_id: u64, blocked: bool) -> R<()> {
        call!(self, BlockUser { user_id, blocked })
    }

    pub async fn search_users(&self, prefix: &str, limit: u32) -> R<Vec<pb::User>> {
        call!(self, SearchUsers { prefix: prefix.into(), limit } => Users).map(|u| u.users)
    }

    /// Makes two clients friends: `self` asks, `other` accepts.
    pub async fn befriend(&self, other: &Client, other_id: u64) -> R<()> {
        let r = self.friend_request(other_id, "").await?;
        if r.status() == pb::FriendRequestStatus::Pending {
            other.respond_friend_request(r.request_id, true, "").await?;
        }
        Ok(())
    }

    // ---- groups and rooms

    pub async fn create_group(
        &self,
        kind: pb::ConversationKind,
        name: &str,
        join_policy: pb::JoinPolicy,
        member_ids: Vec<u64>,
    ) -> R<pb::GroupInfo> {
        call!(self, CreateGroup {
            kind: kind as i32,
            name: name.into(),
            notice: String::new(),
            join_policy: join_policy as i32,
            member_ids,
        } => GroupInfo)
    }

    pub async fn group(&self, conversation_id: u64) -> R<pb::GroupInfo> {
        call!(self, GetGroup { conversation_id } => GroupInfo)
    }

    /// One page of the user's groups and rooms after `after_id`.
    pub async fn my_groups_page(&self, after_id: u64, limit: u32) -> R<pb::GroupList> {
        call!(self, ListGroups { after_id, limit } => GroupList)
    }

    /// Every group and room of the user, page by page.
    pub async fn my_groups(&self) -> R<Vec<pb::GroupInfo>> {
        let mut all = Vec::new();
        loop {
            let after_id = all.last().map_or(0, |g: &pb::GroupInfo| g.conversation_id);
            let p = self.my_groups_page(after_id, 0).await?;
            let done = !p.has_more || p.groups.is_empty();
            all.extend(p.groups);
            if done {
                return Ok(all);
            }
        }
    }

    pub async fn rooms(&self, prefix: &str, after_id: u64, limit: u32) -> R<Vec<pb::GroupInfo>> {
        self.rooms_page(prefix, after_id, limit)
            .await
            .map(|g| g.groups)
    }

    pub async fn rooms_page(&self, prefix: &str, after_id: u64, limit: u32) -> R<pb::GroupList> {
        call!(self, ListRooms { prefix: prefix.into(), after_id, limit } => GroupList)
    }

    pub async fn members(
        &self,
        conversation_id: u64,
        after_user_id: u64,
        limit: u32,
    ) -> R<pb::Members> {
        call!(self, GetMembers { conversation_id, after_user_id, limit } => Members)
    }

    /// Joins a room, or a group with its invite code ("" for a room).
    pub async fn join_group(
        &self,
        conversation_id: u64,
        message: &str,
        invite_code: &str,
    ) -> R<pb::JoinResult> {
        call!(self, JoinGroup { conversation_id, message: message.into(), invite_code: invite_code.into() } => JoinResult)
    }

    pub async fn invite(&self, conversation_id: u64, user_ids: Vec<u64>) -> R<()> {
        call!(
            self,
            InviteMembers {
                conversation_id,
                user_ids
            }
        )
    }

    pub async fn leave_group(&self, conversation_id: u64) -> R<()> {
        call!(self, LeaveGroup { conversation_id })
    }

    pub async fn kick(&self, conversation_id: u64, user_id: u64) -> R<()> {
        call!(
            self,
            KickMember {
                conversation_id,
                user_id
            }
        )
    }

    pub async fn set_role(&self, conversation_id: u64, user_id: u64, role: pb::Role) -> R<()> {
        call!(
            self,
            SetRole {
                conversation_id,
                user_id,
                role: role as i32
            }
        )
    }

    pub async fn transfer_ownership(&self, conversation_id: u64, user_id: u64) -> R<()> {
        call!(
            self,
            TransferOwnership {
                conversation_id,
                user_id
            }
        )
    }

    pub async fn mute(&self, conversation_id: u64, user_id: u64, duration_secs: u32) -> R<()> {
        call!(
            self,
            MuteMember {
                conversation_id,
                user_id,
                duration_secs
            }
        )
    }

    pub async fn update_group(&self, update: pb::UpdateGroup) -> R<pb::GroupInfo> {
        match self.request(ClientFrame::UpdateGroup(update)).await? {
            ServerFrame::GroupInfo(g) => Ok(g),
            other => Err(unexpected(&other)),
        }
    }

    pub async fn dismiss(&self, conversation_id: u64) -> R<()> {
        call!(self, DismissGroup { conversation_id })
    }

    /// One page of a group's join requests after `after_user_id`.
    pub async fn join_requests_page(
        &self,
        conversation_id: u64,
        after_user_id: u64,
        limit: u32,
    ) -> R<pb::JoinRequests> {
        call!(self, ListJoinRequests { conversation_id, after_user_id, limit } => JoinRequests)
    }

    /// Every join request of a group, page by page.
    pub async fn join_requests(&self, conversation_id: u64) -> R<Vec<pb::JoinRequest>> {
        let mut all: Vec<pb::JoinRequest> = Vec::new();
        loop {
            let after = all.last().map_or(0, |r| r.user_id);
            let p = self.join_requests_page(conversation_id, after, 0).await?;
            let done = !p.has_more || p.requests.is_empty();
            all.extend(p.requests);
            if done {
                return Ok(all);
            }
        }
    }

    pub async fn respond_join(&self, conversation_id: u64, user_id: u64, accept: bool) -> R<()> {
        call!(
            self,
            RespondJoinRequest {
                conversation_id,
                user_id,
                accept
            }
        )
    }

    // ---- conversations

    /// Sends text into an existing conversation (1:1, group or room).
    pub async fn send_to(
        &self,
        conversation_id: u64,
        client_msg_id: &str,
        text: &str,
    ) -> R<pb::SendAck> {
        self.send(crate::text_message(
            pb::send::Target::ConversationId(conversation_id),
            client_msg_id,
            text,
        ))
        .await
    }

    /// The first page of the conversation list, at most `limit` (0: 100).
    pub async fn conversations(&self, limit: u32) -> R<Vec<pb::ConversationSummary>> {
        self.conversations_page(None, limit)
            .await
            .map(|c| c.conversations)
    }

    /// A page of the conversation list after `before` (the last summary of
    /// the previous page), most recent first.
    pub async fn conversations_page(
        &self,
        before: Option<&pb::ConversationSummary>,
        limit: u32,
    ) -> R<pb::ConversationList> {
        let (before_activity_ms, before_conversation_id) =
            before.map_or((0, 0), |c| (c.last_activity_ms, c.conversation_id));
        call!(self, ListConversations { limit, before_activity_ms, before_conversation_id } => ConversationList)
    }

    pub async fn mark_read(&self, conversation_id: u64, seq: u64) -> R<()> {
        call!(
            self,
            MarkRead {
                conversation_id,
                seq
            }
        )
    }

    pub async fn typing(&self, conversation_id: u64) -> R<()> {
        call!(self, Typing { conversation_id })
    }

    pub async fn recall(&self, conversation_id: u64, seq: u64) -> R<()> {
        call!(
            self,
            Recall {
                conversation_id,
                seq
            }
        )
    }
}
