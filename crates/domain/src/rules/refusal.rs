//! Why a rule said no. A refusal names the rule, not the words: the service
//! turns it into the text a user reads.

/// A request a rule refused; nothing was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    // ---- the request makes no sense
    SelfConversation,
    SelfFriend,
    SelfBlock,
    AlreadyFriends,
    MentionsOutsideGroups,
    RecallSystemEvent,
    OwnerByTransferOnly,
    AlreadyOwner,
    TooManyBlocked {
        max: usize,
    },
    // ---- not allowed
    FriendsOnly,
    Dismissed,
    MentionAllAdminsOnly,
    RecallSenderOrAdmin,
    RecallWindowPassed {
        window_ms: i64,
    },
    InviteAdminsOnly,
    OwnerCannotLeave,
    KickNotAllowed,
    RolesOwnerOnly,
    TransferOwnerOnly,
    MuteNotAllowed,
    UpdateAdminsOnly,
    DismissOwnerOnly,
    JoinRequestsAdminsOnly,
    /// The server's operators remove members and dismiss, nothing else.
    OperatorRemovesAndDismissesOnly,
    /// Not even the operators remove an owner: the group is dismissed.
    OwnerNotRemovable,
    // ---- muted
    Muted {
        until_ms: i64,
    },
    MutedAll,
    // ---- a limit
    GroupFull {
        max: u32,
    },
    TooManySessions,
}

/// The families a transport maps refusals to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    Invalid,
    Forbidden,
    Muted,
    GroupFull,
    TooManySessions,
}

impl Refusal {
    pub fn kind(self) -> RefusalKind {
        use Refusal::*;
        match self {
            SelfConversation
            | SelfFriend
            | SelfBlock
            | AlreadyFriends
            | MentionsOutsideGroups
            | RecallSystemEvent
            | OwnerByTransferOnly
            | AlreadyOwner
            | TooManyBlocked { .. } => RefusalKind::Invalid,
            FriendsOnly
            | Dismissed
            | MentionAllAdminsOnly
            | RecallSenderOrAdmin
            | RecallWindowPassed { .. }
            | InviteAdminsOnly
            | OwnerCannotLeave
            | KickNotAllowed
            | RolesOwnerOnly
            | TransferOwnerOnly
            | MuteNotAllowed
            | UpdateAdminsOnly
            | DismissOwnerOnly
            | JoinRequestsAdminsOnly
            | OperatorRemovesAndDismissesOnly
            | OwnerNotRemovable => RefusalKind::Forbidden,
            Muted { .. } | MutedAll => RefusalKind::Muted,
            GroupFull { .. } => RefusalKind::GroupFull,
            TooManySessions => RefusalKind::TooManySessions,
        }
    }
}
