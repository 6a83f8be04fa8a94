//! The conversation list and what a member does in a conversation besides
//! sending: read cursors, typing, recall.

use super::{done, Reply};
use crate::convert;
use natter_proto::{pb, ServerFrame};
use natter_service::model::Before;
use natter_service::{Service, SessionInfo};

pub(crate) async fn list(svc: &Service, s: &SessionInfo, r: pb::ListConversations) -> Reply {
    let before = (r.before_conversation_id != 0).then_some(Before {
        activity_ms: r.before_activity_ms,
        id: r.before_conversation_id,
    });
    svc.conversations(s, before, r.limit as usize)
        .await
        .map(|(list, has_more)| {
            ServerFrame::ConversationList(pb::ConversationList {
                conversations: list.iter().map(convert::summary).collect(),
                has_more,
            })
        })
}

pub(crate) async fn mark_read(svc: &Service, s: &SessionInfo, r: pb::MarkRead) -> Reply {
    done(svc.mark_read(s, r.conversation_id, r.seq).await)
}

pub(crate) async fn typing(svc: &Service, s: &SessionInfo, r: pb::Typing) -> Reply {
    done(svc.typing(s, r.conversation_id).await)
}

pub(crate) async fn recall(svc: &Service, s: &SessionInfo, r: pb::Recall) -> Reply {
    done(svc.recall(s, r.conversation_id, r.seq).await)
}
