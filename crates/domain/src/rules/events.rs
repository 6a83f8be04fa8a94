//! The system events a conversation records in its own sequence. Their
//! JSON is a client contract (docs/PROTOCOL.md, *System events*), so it has
//! exactly one encoding, here.

use crate::{
    Body, BodyKind, ConversationId, JoinPolicy, Role, StoredMessage, UserId, SYSTEM_ID_PREFIX,
};
use serde::ser::{Serialize, SerializeMap, Serializer};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SystemEvent {
    Created {
        actor: UserId,
        name: String,
        users: Vec<UserId>,
    },
    Joined {
        actor: UserId,
        users: Vec<UserId>,
    },
    Invited {
        actor: UserId,
        users: Vec<UserId>,
    },
    Left {
        actor: UserId,
    },
    /// `operator`: the server's operators removed the member (`actor` is
    /// then the owner, whose name the message is sent in).
    Kicked {
        actor: UserId,
        user: UserId,
        operator: bool,
    },
    RoleChanged {
        actor: UserId,
        user: UserId,
        role: Role,
    },
    OwnerTransferred {
        actor: UserId,
        user: UserId,
    },
    Muted {
        actor: UserId,
        user: UserId,
        until_ms: i64,
    },
    Unmuted {
        actor: UserId,
        user: UserId,
    },
    Updated {
        actor: UserId,
        name: Option<String>,
        notice: Option<String>,
        join_policy: Option<JoinPolicy>,
        muted_all: Option<bool>,
        /// The code itself is not in the event: not every member may see it.
        invite_code_reset: bool,
    },
    /// `operator`: as for `Kicked`.
    Dismissed {
        actor: UserId,
        operator: bool,
    },
    Recalled {
        actor: UserId,
        seq: u64,
    },
}

impl SystemEvent {
    /// Who the event is written as (its message's sender).
    pub fn actor(&self) -> UserId {
        use SystemEvent::*;
        match self {
            Created { actor, .. }
            | Joined { actor, .. }
            | Invited { actor, .. }
            | Left { actor }
            | Kicked { actor, .. }
            | RoleChanged { actor, .. }
            | OwnerTransferred { actor, .. }
            | Muted { actor, .. }
            | Unmuted { actor, .. }
            | Updated { actor, .. }
            | Dismissed { actor, .. }
            | Recalled { actor, .. } => *actor,
        }
    }

    pub fn name(&self) -> &'static str {
        use SystemEvent::*;
        match self {
            Created { .. } => "created",
            Joined { .. } => "joined",
            Invited { .. } => "invited",
            Left { .. } => "left",
            Kicked { .. } => "kicked",
            RoleChanged { .. } => "role_changed",
            OwnerTransferred { .. } => "owner_transferred",
            Muted { .. } => "muted",
            Unmuted { .. } => "unmuted",
            Updated { .. } => "updated",
            Dismissed { .. } => "dismissed",
            Recalled { .. } => "recalled",
        }
    }

    /// The event's message body.
    pub fn to_json(&self) -> String {
        // Serializing plain numbers and strings into a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The event as the message a backend stores at `seq` (its `msg_id` is
    /// the backend's to fill in).
    pub fn message(&self, conversation: ConversationId, seq: u64, now_ms: i64) -> StoredMessage {
        StoredMessage {
            conversation_id: conversation,
            seq,
            msg_id: 0,
            sender_id: self.actor(),
            client_msg_id: Self::client_msg_id(conversation, seq),
            server_ts_ms: now_ms,
            body: Body {
                kind: BodyKind::System,
                content: self.to_json(),
            },
            mentions: Vec::new(),
            mention_all: false,
        }
    }

    /// The client_msg_id an event is stored under: unique because
    /// (conversation, seq) is, and in a prefix clients may not use.
    pub fn client_msg_id(conversation: ConversationId, seq: u64) -> String {
        format!("{SYSTEM_ID_PREFIX}{conversation}-{seq}")
    }
}

fn policy_name(p: JoinPolicy) -> &'static str {
    match p {
        JoinPolicy::Open => "open",
        JoinPolicy::Approval => "approval",
    }
}

impl Serialize for SystemEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use SystemEvent::*;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", self.name())?;
        // The server's operators are no user: actor 0, and said so.
        let operator = matches!(
            self,
            Kicked { operator: true, .. } | Dismissed { operator: true, .. }
        );
        if operator {
            m.serialize_entry("actor_id", &0)?;
            m.serialize_entry("by", "operator")?;
        } else {
            m.serialize_entry("actor_id", &self.actor())?;
        }
        match self {
            Created { name, users, .. } => {
                m.serialize_entry("name", name)?;
                m.serialize_entry("user_ids", users)?;
            }
            Joined { users, .. } | Invited { users, .. } => m.serialize_entry("user_ids", users)?,
            Left { actor } => m.serialize_entry("user_ids", &[actor])?,
            Kicked { user, .. } | OwnerTransferred { user, .. } | Unmuted { user, .. } => {
                m.serialize_entry("user_ids", &[user])?
            }
            RoleChanged { user, role, .. } => {
                m.serialize_entry("user_ids", &[user])?;
                m.serialize_entry("role", role.name())?;
            }
            Muted { user, until_ms, .. } => {
                m.serialize_entry("user_ids", &[user])?;
                m.serialize_entry("until_ms", until_ms)?;
            }
            Updated {
                name,
                notice,
                join_policy,
                muted_all,
                invite_code_reset,
                ..
            } => {
                if let Some(n) = name {
                    m.serialize_entry("name", n)?;
                }
                if let Some(n) = notice {
                    m.serialize_entry("notice", n)?;
                }
                if let Some(p) = join_policy {
                    m.serialize_entry("join_policy", policy_name(*p))?;
                }
                if let Some(v) = muted_all {
                    m.serialize_entry("muted_all", v)?;
                }
                if *invite_code_reset {
                    m.serialize_entry("invite_code_reset", &true)?;
                }
            }
            Dismissed { .. } => {}
            Recalled { seq, .. } => m.serialize_entry("seq", seq)?,
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn every_event_has_its_documented_json() {
        let table: Vec<(SystemEvent, Value)> = vec![
            (
                SystemEvent::Created {
                    actor: 1,
                    name: "g".into(),
                    users: vec![2, 3],
                },
                json!({"type": "created", "actor_id": 1, "name": "g", "user_ids": [2, 3]}),
            ),
            (
                SystemEvent::Joined {
                    actor: 1,
                    users: vec![4],
                },
                json!({"type": "joined", "actor_id": 1, "user_ids": [4]}),
            ),
            (
                SystemEvent::Invited {
                    actor: 1,
                    users: vec![4, 5],
                },
                json!({"type": "invited", "actor_id": 1, "user_ids": [4, 5]}),
            ),
            (
                SystemEvent::Left { actor: 7 },
                json!({"type": "left", "actor_id": 7, "user_ids": [7]}),
            ),
            (
                SystemEvent::Kicked {
                    actor: 1,
                    user: 2,
                    operator: false,
                },
                json!({"type": "kicked", "actor_id": 1, "user_ids": [2]}),
            ),
            (
                SystemEvent::Kicked {
                    actor: 1,
                    user: 2,
                    operator: true,
                },
                json!({"type": "kicked", "actor_id": 0, "by": "operator", "user_ids": [2]}),
            ),
            (
                SystemEvent::RoleChanged {
                    actor: 1,
                    user: 2,
                    role: Role::Admin,
                },
                json!({"type": "role_changed", "actor_id": 1, "user_ids": [2], "role": "admin"}),
            ),
            (
                SystemEvent::OwnerTransferred { actor: 1, user: 2 },
                json!({"type": "owner_transferred", "actor_id": 1, "user_ids": [2]}),
            ),
            (
                SystemEvent::Muted {
                    actor: 1,
                    user: 2,
                    until_ms: 99,
                },
                json!({"type": "muted", "actor_id": 1, "user_ids": [2], "until_ms": 99}),
            ),
            (
                SystemEvent::Unmuted { actor: 1, user: 2 },
                json!({"type": "unmuted", "actor_id": 1, "user_ids": [2]}),
            ),
            (
                SystemEvent::Updated {
                    actor: 1,
                    name: Some("n".into()),
                    notice: None,
                    join_policy: Some(JoinPolicy::Approval),
                    muted_all: Some(false),
                    invite_code_reset: true,
                },
                json!({"type": "updated", "actor_id": 1, "name": "n", "join_policy": "approval",
                       "muted_all": false, "invite_code_reset": true}),
            ),
            (
                SystemEvent::Updated {
                    actor: 1,
                    name: None,
                    notice: Some("hi".into()),
                    join_policy: None,
                    muted_all: None,
                    invite_code_reset: false,
                },
                json!({"type": "updated", "actor_id": 1, "notice": "hi"}),
            ),
            (
                SystemEvent::Dismissed {
                    actor: 1,
                    operator: false,
                },
                json!({"type": "dismissed", "actor_id": 1}),
            ),
            (
                SystemEvent::Dismissed {
                    actor: 1,
                    operator: true,
                },
                json!({"type": "dismissed", "actor_id": 0, "by": "operator"}),
            ),
            (
                SystemEvent::Recalled { actor: 1, seq: 5 },
                json!({"type": "recalled", "actor_id": 1, "seq": 5}),
            ),
        ];
        for (event, want) in table {
            let got: Value = serde_json::from_str(&event.to_json()).unwrap();
            assert_eq!(got, want, "{event:?}");
        }
    }
}
