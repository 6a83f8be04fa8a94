//! The conformance cases, by topic, and the helpers they share. Every
//! `pub async fn(env: Env)` here runs on every backend (see the macro in
//! `conformance.rs`).

mod accounts;
mod messages;
mod nodes;
mod social;

pub use crate::harness::{msg, page, Env};
pub use accounts::*;
pub use messages::*;
pub use natter_store::model::*;
pub use natter_store::rules::Refusal;
pub use natter_store::{Store, StoreError};
pub use nodes::*;
pub use social::*;
pub use std::collections::HashMap;
pub use std::sync::Arc;

pub const LIMITS: GroupLimits = GroupLimits {
    max_members: 100,
    room_history: 2,
};

pub async fn users(s: &dyn Store, names: &[&str]) -> Vec<UserId> {
    let mut out = Vec::new();
    for n in names {
        out.push(s.create_user(n, "hash", 0).await.unwrap());
    }
    out
}

pub async fn group(
    s: &dyn Store,
    owner: UserId,
    members: Vec<UserId>,
    kind: ConversationKind,
) -> u64 {
    s.create_group(
        NewGroup {
            creator: owner,
            kind,
            name: format!("g{owner}-{}", members.len()),
            notice: String::new(),
            join_policy: JoinPolicy::Open,
            members,
            invite_code: "code".into(),
            now_ms: 1,
        },
        LIMITS,
    )
    .await
    .unwrap()
    .id
}

pub fn to(conversation: u64, sender: UserId, id: &str) -> NewMessage {
    NewMessage {
        target: Target::Conversation(conversation),
        ..msg(sender, 0, id)
    }
}

pub fn seqs(p: &SyncPage, conversation: u64) -> Vec<u64> {
    p.messages
        .iter()
        .filter(|m| m.conversation_id == conversation)
        .map(|m| m.seq)
        .collect()
}

/// What an id past what the database stores gets: nothing, or not found
/// (or not a member), never a failure of the store.
pub fn unknown(r: Result<bool, StoreError>) {
    match r {
        Ok(false) | Err(StoreError::NotFound(_)) | Err(StoreError::NotMember(_)) => {}
        other => panic!("an id past the stored range gave {other:?}"),
    }
}

pub fn refused(r: Result<impl std::fmt::Debug, StoreError>, want: Refusal) {
    match r {
        Err(StoreError::Refused(got)) => assert_eq!(got, want),
        other => panic!("expected {want:?}, got {other:?}"),
    }
}
