//! The service's error type; the gateway maps it to wire error codes.

use natter_domain::rules::{Refusal, RefusalKind};
use natter_store::{Fault, StoreError};
use std::time::Duration;

#[derive(Clone, Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("that username is taken")]
    UsernameTaken,
    #[error("{0}")]
    WeakPassword(String),
    #[error("wrong username or password")]
    BadCredentials,
    /// An emailed code that is wrong, expired, used or never sent (the
    /// wire's BAD_CREDENTIALS: the code is the credential).
    #[error("{0}")]
    BadCode(String),
    #[error("the token is not valid")]
    TokenInvalid,
    #[error("the token has expired; log in again")]
    TokenExpired,
    #[error("the account is disabled")]
    AccountDisabled,
    #[error("the user already has the maximum number of sessions")]
    TooManySessions,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Forbidden(String),
    /// The sender may not send here now: muted until `until_ms` (ms since
    /// the epoch), or, with 0, the whole group until an admin lifts it.
    #[error("{why}")]
    Muted { why: String, until_ms: i64 },
    #[error("the group is full ({0} members)")]
    GroupFull(u32),
    #[error("message body is {size} bytes; the limit is {max}")]
    MessageTooLarge { size: usize, max: usize },
    /// A limit on how often something may be done; try again after the wait.
    #[error("{what}; retry later")]
    RateLimited {
        what: &'static str,
        retry_after: Duration,
    },
    /// Nothing was done; the same request may succeed later.
    #[error("{0}")]
    Unavailable(Unavailable),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why the server cannot do something now. Nothing was done, so the request
/// can be repeated as it was (a Send with the same client_msg_id).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("the server is shutting down; reconnect and retry")]
    ShuttingDown,
    #[error("the server is overloaded; retry later")]
    Overloaded,
    #[error("too many passwords are being checked; retry later")]
    Busy(Duration),
    #[error("the server's storage is full; nothing was stored")]
    StorageFull,
    #[error("the server's storage is failing; nothing was stored")]
    StorageFailing,
    #[error("the server's database is unreachable; nothing was stored")]
    DatabaseDown,
    #[error("the server's database is busy; nothing was done, retry shortly")]
    StorageBusy,
    #[error("the server could not send the email; retry later")]
    MailFailing,
}

impl Unavailable {
    /// When a retry makes sense.
    pub fn retry_after(&self) -> Duration {
        match self {
            Unavailable::ShuttingDown => Duration::from_secs(1),
            Unavailable::Overloaded => Duration::from_secs(2),
            Unavailable::Busy(d) => *d,
            Unavailable::StorageFull | Unavailable::StorageFailing => Duration::from_secs(5),
            Unavailable::DatabaseDown | Unavailable::StorageBusy => Duration::from_secs(1),
            Unavailable::MailFailing => Duration::from_secs(10),
        }
    }
}

/// Text a user gives that the store keeps must hold no NUL (U+0000): one
/// backend's text type cannot store it, so it is refused on every one.
pub(crate) fn storable(what: &str, text: &str) -> Result<(), ServiceError> {
    if text.contains('\0') {
        return Err(ServiceError::InvalidArgument(format!(
            "{what} must not contain NUL (U+0000)"
        )));
    }
    Ok(())
}

impl ServiceError {
    /// The error's code as the wire protocol names it (`ErrorCode` without
    /// its `ERROR_CODE_` prefix): every edge answers with these names.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::InvalidArgument(_) => "INVALID_ARGUMENT",
            ServiceError::UsernameTaken => "USERNAME_TAKEN",
            ServiceError::WeakPassword(_) => "WEAK_PASSWORD",
            ServiceError::BadCredentials | ServiceError::BadCode(_) => "BAD_CREDENTIALS",
            ServiceError::TokenInvalid => "TOKEN_INVALID",
            ServiceError::TokenExpired => "TOKEN_EXPIRED",
            ServiceError::AccountDisabled => "ACCOUNT_DISABLED",
            ServiceError::TooManySessions => "TOO_MANY_SESSIONS",
            ServiceError::NotFound(_) => "NOT_FOUND",
            ServiceError::Forbidden(_) => "FORBIDDEN",
            ServiceError::Muted { .. } => "MUTED",
            ServiceError::GroupFull(_) => "GROUP_FULL",
            ServiceError::MessageTooLarge { .. } => "MESSAGE_TOO_LARGE",
            ServiceError::RateLimited { .. } => "RATE_LIMITED",
            ServiceError::Unavailable(_) => "UNAVAILABLE",
            ServiceError::Internal(_) => "INTERNAL",
        }
    }

    /// When the same request may succeed: for a rate limit or a server
    /// that cannot now; `None` for every other error.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ServiceError::RateLimited { retry_after, .. } => Some(*retry_after),
            ServiceError::Unavailable(u) => Some(u.retry_after()),
            _ => None,
        }
    }

    /// For `MUTED`: until when (ms since the epoch); 0 while the whole
    /// group is muted, until an admin lifts it.
    pub fn muted_until_ms(&self) -> Option<i64> {
        match self {
            ServiceError::Muted { until_ms, .. } => Some(*until_ms),
            _ => None,
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict("username") => ServiceError::UsernameTaken,
            StoreError::Conflict("email") => {
                ServiceError::InvalidArgument("that email address is already in use".into())
            }
            StoreError::Conflict("email code") => {
                ServiceError::InvalidArgument("a code is being sent to this address".into())
            }
            StoreError::Conflict(what) => {
                ServiceError::InvalidArgument(format!("{what} already exists"))
            }
            StoreError::NotFound(what) => ServiceError::NotFound(what),
            StoreError::NotMember(_) => ServiceError::Forbidden(e.to_string()),
            StoreError::Refused(r) => refused(r),
            StoreError::Unavailable => ServiceError::Unavailable(Unavailable::ShuttingDown),
            // Only `open` fails these ways, so no request ever gets here.
            StoreError::Locked { .. }
            | StoreError::NewerSchema { .. }
            | StoreError::PartitioningDiffers { .. } => ServiceError::Internal(e.to_string()),
            StoreError::Fault { fault, source } => {
                tracing::warn!(?fault, error = %source, "storage fault");
                ServiceError::Unavailable(match fault {
                    Fault::Full => Unavailable::StorageFull,
                    Fault::Io | Fault::Corrupt => Unavailable::StorageFailing,
                    Fault::Busy => Unavailable::StorageBusy,
                    Fault::Down => Unavailable::DatabaseDown,
                })
            }
            e @ StoreError::Backend { .. } => {
                tracing::error!(error = %e, "store failure");
                ServiceError::Internal("storage failure".into())
            }
        }
    }
}

/// The words for each refusal of the domain rules.
fn refused(r: Refusal) -> ServiceError {
    use Refusal::*;
    let until_ms = match r {
        Muted { until_ms } => until_ms,
        _ => 0,
    };
    let why: String = match r {
        SelfConversation => "cannot start a conversation with yourself".into(),
        SelfFriend => "cannot befriend yourself".into(),
        SelfBlock => "cannot block yourself".into(),
        AlreadyFriends => "already friends".into(),
        MentionsOutsideGroups => "mentions are for groups and rooms".into(),
        RecallSystemEvent => "system events cannot be recalled".into(),
        OwnerByTransferOnly => "use a transfer to change the owner".into(),
        AlreadyOwner => "already the owner".into(),
        TooManyBlocked { max } => format!("at most {max} users may be blocked"),
        FriendsOnly => "this user accepts messages from friends only".into(),
        Dismissed => "the group has been dismissed".into(),
        MentionAllAdminsOnly => "only the owner and admins may mention everyone".into(),
        RecallSenderOrAdmin => "only the sender or a group admin may recall a message".into(),
        RecallWindowPassed { window_ms } => {
            format!("the recall window ({} s) has passed", window_ms / 1000)
        }
        InviteAdminsOnly => {
            "only the owner and admins may invite to a group that needs approval".into()
        }
        OwnerCannotLeave => "the owner must transfer ownership or dismiss the group".into(),
        KickNotAllowed => "the owner may remove anyone, admins may remove members".into(),
        RolesOwnerOnly => "only the owner may change roles".into(),
        TransferOwnerOnly => "only the owner may transfer ownership".into(),
        MuteNotAllowed => "the owner may mute anyone, admins may mute members".into(),
        UpdateAdminsOnly => "only the owner and admins may change the group".into(),
        DismissOwnerOnly => "only the owner may dismiss the group".into(),
        JoinRequestsAdminsOnly => "only the owner and admins see and answer join requests".into(),
        OperatorRemovesAndDismissesOnly => {
            "an administrator of the server may only remove members and dismiss".into()
        }
        OwnerNotRemovable => "the owner cannot be removed: dismiss the group instead".into(),
        Muted { until_ms } => {
            format!("you are muted in this conversation until {until_ms} (ms since the epoch)")
        }
        MutedAll => "only the owner and admins may send while the group is muted".into(),
        GroupFull { max } => return ServiceError::GroupFull(max),
        TooManySessions => return ServiceError::TooManySessions,
    };
    match r.kind() {
        RefusalKind::Invalid => ServiceError::InvalidArgument(why),
        RefusalKind::Forbidden => ServiceError::Forbidden(why),
        RefusalKind::Muted => ServiceError::Muted { why, until_ms },
        RefusalKind::GroupFull | RefusalKind::TooManySessions => ServiceError::Internal(why),
    }
}
