//! Operating a deployment: the administrators (separate from chat users,
//! with a role each), their sessions, the audit log of what they did, the
//! view of an account they work on, and when an account is barred (disabled,
//! or banned until a time).

use crate::model::{BadValue, ConversationId, SessionId, SessionRecord, UserId, UserRecord};

pub type AdminId = u64;

/// What an administrator may do: an `Admin` everything, a `Viewer` only
/// look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminRole {
    Admin = 1,
    Viewer = 2,
}

impl TryFrom<i64> for AdminRole {
    type Error = BadValue;
    fn try_from(v: i64) -> Result<Self, BadValue> {
        match v {
            1 => Ok(AdminRole::Admin),
            2 => Ok(AdminRole::Viewer),
            _ => Err(BadValue {
                what: "admin role",
                value: v,
            }),
        }
    }
}

impl AdminRole {
    pub fn name(self) -> &'static str {
        match self {
            AdminRole::Admin => "admin",
            AdminRole::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<AdminRole> {
        match s {
            "admin" => Some(AdminRole::Admin),
            "viewer" => Some(AdminRole::Viewer),
            _ => None,
        }
    }

    /// Whether this role may change anything (a viewer only reads).
    pub fn may_change(self) -> bool {
        self == AdminRole::Admin
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminRecord {
    pub id: AdminId,
    pub name: String,
    pub password_hash: String,
    pub role: AdminRole,
    pub created_at_ms: i64,
}

/// An administrator's session as stored: only the token's hash is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminSessionRecord {
    pub admin_id: AdminId,
    pub name: String,
    pub role: AdminRole,
    pub expires_at_ms: i64,
}

/// One line of the audit log, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAudit {
    pub at_ms: i64,
    /// The administrator's name, or the command line (`cli:<user>`).
    pub actor: String,
    /// Where the action came from (an address, or `cli`).
    pub address: String,
    /// What was done, e.g. `user.disable`.
    pub action: String,
    /// What it was done to, e.g. `user:42`.
    pub target: String,
    /// The rest (a reason, a ban's end), as text.
    pub detail: String,
    /// Whether it was done; a refused action is logged too.
    pub ok: bool,
}

/// One line of the audit log, as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: u64,
    pub entry: NewAudit,
}

/// An account as an administrator sees it in a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountSummary {
    pub id: UserId,
    pub username: String,
    pub email: Option<String>,
    pub created_at_ms: i64,
    pub bar: Bar,
}

/// Whether an account may log in: `disabled` alone is until enabled; with
/// `until_ms` it is a ban that ends by itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bar {
    pub disabled: bool,
    pub until_ms: Option<i64>,
    pub reason: String,
}

impl Bar {
    /// Whether the account is barred at `now_ms`: disabled, and not by a
    /// ban that has ended.
    pub fn active(&self, now_ms: i64) -> bool {
        barred(self.disabled, self.until_ms, now_ms)
    }
}

/// The one rule for a barred account, for callers that hold only the
/// columns.
pub fn barred(disabled: bool, until_ms: Option<i64>, now_ms: i64) -> bool {
    disabled && until_ms.is_none_or(|t| t > now_ms)
}

impl UserRecord {
    /// Whether the account may not log in at `now_ms` ([`barred`]).
    pub fn barred(&self, now_ms: i64) -> bool {
        barred(self.disabled, self.banned_until_ms, now_ms)
    }
}

impl SessionRecord {
    /// Whether the session's account may not be used at `now_ms`.
    pub fn user_barred(&self, now_ms: i64) -> bool {
        barred(self.user_disabled, self.user_banned_until_ms, now_ms)
    }
}

/// A session of an account, as an administrator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountSession {
    pub id: SessionId,
    pub device_id: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

/// A group or room an account is in, as an administrator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountGroup {
    pub id: ConversationId,
    pub name: String,
    /// `member`, `admin` or `owner`.
    pub role: &'static str,
}

/// One account in full: its sessions still valid, its groups, its last
/// login (the newest session made).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountDetail {
    pub summary: AccountSummary,
    pub sessions: Vec<AccountSession>,
    pub groups: Vec<AccountGroup>,
    pub last_login_ms: Option<i64>,
    pub friends: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ban_ends_by_itself_a_disable_does_not() {
        assert!(!barred(false, None, 10));
        assert!(barred(true, None, 10));
        assert!(barred(true, Some(11), 10));
        assert!(!barred(true, Some(10), 10));
        assert!(!barred(false, Some(11), 10));
    }

    #[test]
    fn roles_decode_and_only_admins_change() {
        assert_eq!(AdminRole::try_from(1), Ok(AdminRole::Admin));
        assert_eq!(AdminRole::try_from(2), Ok(AdminRole::Viewer));
        assert!(AdminRole::try_from(3).is_err());
        assert!(AdminRole::Admin.may_change());
        assert!(!AdminRole::Viewer.may_change());
        assert_eq!(AdminRole::parse("viewer"), Some(AdminRole::Viewer));
        assert_eq!(AdminRole::parse("root"), None);
    }
}
