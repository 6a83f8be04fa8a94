//! What a migration copies: every table with ids, its columns and their
//! kinds, in an order that keeps every foreign key satisfied. Emailed codes
//! wait only minutes and are not copied; PostgreSQL's `message_ids` is
//! made from the messages on arrival. The kinds are what each backend
//! reads and writes in its own form (see `Value`).

#[derive(Clone, Copy)]
pub(super) enum Kind {
    BigInt,
    SmallInt,
    Int,
    Text,
    /// Text that may be NULL.
    OptText,
    /// A BIGINT that may be NULL.
    OptBigInt,
    Bool,
    Bytes,
    /// Ids: separated by spaces on SQLite and MySQL, BIGINT[] on PostgreSQL.
    Ids,
}

pub(super) struct Table {
    pub name: &'static str,
    pub columns: &'static [(&'static str, Kind)],
    /// Has an identity column `id` whose sequence must follow the copy.
    pub identity: bool,
}

impl Table {
    /// The column names, as a select or insert lists them.
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|c| c.0).collect();
        names.join(", ")
    }
}

use Kind::*;

/// In an order that keeps every foreign key satisfied.
pub(super) const TABLES: &[Table] = &[
    Table {
        name: "users",
        columns: &[
            ("id", BigInt),
            ("username", Text),
            ("password_hash", Text),
            ("disabled", Bool),
            ("created_at_ms", BigInt),
            ("email", OptText),
            ("banned_until_ms", OptBigInt),
            ("ban_reason", Text),
        ],
        identity: true,
    },
    Table {
        name: "sessions",
        columns: &[
            ("id", BigInt),
            ("user_id", BigInt),
            ("device_id", Text),
            ("token_hash", Bytes),
            ("created_at_ms", BigInt),
            ("expires_at_ms", BigInt),
            ("revoked", Bool),
        ],
        identity: true,
    },
    Table {
        name: "conversations",
        columns: &[
            ("id", BigInt),
            ("kind", SmallInt),
            ("last_seq", BigInt),
            ("created_at_ms", BigInt),
            ("last_activity_ms", BigInt),
        ],
        identity: true,
    },
    Table {
        name: "direct_pairs",
        columns: &[
            ("user_lo", BigInt),
            ("user_hi", BigInt),
            ("conversation_id", BigInt),
        ],
        identity: false,
    },
    Table {
        name: "members",
        columns: &[
            ("user_id", BigInt),
            ("conversation_id", BigInt),
            ("role", SmallInt),
            ("joined_seq", BigInt),
            ("left_seq", BigInt),
            ("read_seq", BigInt),
            ("delivered_seq", BigInt),
            ("muted_until_ms", BigInt),
            ("joined_at_ms", BigInt),
        ],
        identity: false,
    },
    Table {
        name: "messages",
        columns: &[
            ("conversation_id", BigInt),
            ("seq", BigInt),
            ("id", BigInt),
            ("sender_id", BigInt),
            ("client_msg_id", Text),
            ("created_at_ms", BigInt),
            ("body_kind", SmallInt),
            ("body", Text),
            ("mentions", Ids),
            ("mention_all", Bool),
        ],
        identity: true,
    },
    Table {
        name: "mentions",
        columns: &[
            ("user_id", BigInt),
            ("conversation_id", BigInt),
            ("seq", BigInt),
        ],
        identity: false,
    },
    Table {
        name: "groups",
        columns: &[
            ("conversation_id", BigInt),
            ("name", Text),
            ("notice", Text),
            ("owner_id", BigInt),
            ("join_policy", SmallInt),
            ("muted_all", Bool),
            ("dismissed", Bool),
            ("member_count", Int),
            ("invite_code", Text),
        ],
        identity: false,
    },
    Table {
        name: "join_requests",
        columns: &[
            ("conversation_id", BigInt),
            ("user_id", BigInt),
            ("message", Text),
            ("created_at_ms", BigInt),
        ],
        identity: false,
    },
    Table {
        name: "friend_requests",
        columns: &[
            ("id", BigInt),
            ("from_id", BigInt),
            ("to_id", BigInt),
            ("message", Text),
            ("status", SmallInt),
            ("reply", Text),
            ("created_at_ms", BigInt),
            ("decided_at_ms", BigInt),
        ],
        identity: true,
    },
    Table {
        name: "friends",
        columns: &[
            ("user_id", BigInt),
            ("friend_id", BigInt),
            ("remark", Text),
            ("since_ms", BigInt),
        ],
        identity: false,
    },
    Table {
        name: "blocks",
        columns: &[("user_id", BigInt), ("blocked_id", BigInt)],
        identity: false,
    },
    Table {
        name: "admins",
        columns: &[
            ("id", BigInt),
            ("name", Text),
            ("password_hash", Text),
            ("role", SmallInt),
            ("created_at_ms", BigInt),
        ],
        identity: true,
    },
    Table {
        name: "admin_sessions",
        columns: &[
            ("token_hash", Bytes),
            ("admin_id", BigInt),
            ("created_at_ms", BigInt),
            ("expires_at_ms", BigInt),
        ],
        identity: false,
    },
    Table {
        name: "admin_audit",
        columns: &[
            ("id", BigInt),
            ("at_ms", BigInt),
            ("actor", Text),
            ("address", Text),
            ("action", Text),
            ("target", Text),
            ("detail", Text),
            ("ok", Bool),
        ],
        identity: true,
    },
];
