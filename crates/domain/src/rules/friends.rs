//! Friend requests and blocks: what asking, answering and blocking do.

use super::Refusal;
use crate::{DomainError, FriendRequestRecord, RequestStatus, Result, UserId};

/// What a friend request from `from` to `to` is judged by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestFacts {
    /// `to` exists and is not disabled.
    pub to_active: bool,
    pub friends: bool,
    /// `to` has blocked `from`.
    pub blocked: bool,
    /// A pending request from `to` to `from`.
    pub theirs: Option<u64>,
    /// A pending request from `from` to `to`.
    pub mine: Option<u64>,
}

/// What a friend request, or the answer to one, writes: first `befriend`,
/// then `request`. A backend writes exactly this and reads back the request
/// it wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FriendPlan {
    /// These two become friends, each in the other's list.
    pub befriend: Option<(UserId, UserId)>,
    pub request: RequestWrite,
    /// Whether both users hear of it: a request to someone who blocked the
    /// sender waits unseen, and the sender is not told why.
    pub notify: bool,
}

/// What a plan writes on the request itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestWrite {
    /// Decides a pending request; the text at hand becomes its reply.
    Decide(u64, RequestStatus),
    /// Asking again renews the pending request (new message and time).
    Renew(u64),
    /// A new pending request.
    Create { from: UserId, to: UserId },
}

/// Judges a friend request from `from` to `to`. When both asked, the second
/// request accepts the first.
pub fn send_request(from: UserId, to: UserId, f: RequestFacts) -> Result<FriendPlan> {
    if from == to {
        return Err(Refusal::SelfFriend.into());
    }
    if !f.to_active {
        return Err(DomainError::NotFound("user"));
    }
    if f.friends {
        return Err(Refusal::AlreadyFriends.into());
    }
    let notify = !f.blocked;
    let (befriend, request) = match (f.theirs, f.mine) {
        (Some(theirs), _) if notify => (
            Some((from, to)),
            RequestWrite::Decide(theirs, RequestStatus::Accepted),
        ),
        (_, Some(mine)) => (None, RequestWrite::Renew(mine)),
        _ => (None, RequestWrite::Create { from, to }),
    };
    Ok(FriendPlan {
        befriend,
        request,
        notify,
    })
}

/// Answers a request addressed to `me` that is still pending; an accept
/// needs its sender to still exist.
pub fn respond_request(
    request: Option<&FriendRequestRecord>,
    me: UserId,
    accept: bool,
    from_active: bool,
) -> Result<FriendPlan> {
    let r = match request {
        Some(r) if r.to == me && r.status == RequestStatus::Pending => r,
        _ => return Err(DomainError::NotFound("pending friend request")),
    };
    let (befriend, status) = match (accept, from_active) {
        (false, _) => (None, RequestStatus::Rejected),
        (true, false) => return Err(DomainError::NotFound("user")),
        (true, true) => (Some((r.from, me)), RequestStatus::Accepted),
    };
    Ok(FriendPlan {
        befriend,
        request: RequestWrite::Decide(r.id, status),
        notify: true,
    })
}

/// Whether `me` may block (or unblock) `other`: `count` is how many `me`
/// blocks now, `already` whether `other` is among them.
pub fn may_block(
    me: UserId,
    other: UserId,
    other_active: bool,
    block: bool,
    already: bool,
    count: usize,
    max: usize,
) -> Result<()> {
    if me == other {
        return Err(Refusal::SelfBlock.into());
    }
    if !other_active {
        return Err(DomainError::NotFound("user"));
    }
    if block && !already && count >= max {
        return Err(Refusal::TooManyBlocked { max }.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn friend_request_transitions() {
        let f = |theirs, mine, blocked| RequestFacts {
            to_active: true,
            friends: false,
            blocked,
            theirs,
            mine,
        };
        // (from, to, facts, expected)
        let table: Vec<(UserId, UserId, RequestFacts, &str)> = vec![
            (
                1,
                2,
                f(None, None, false),
                "Ok(FriendPlan { befriend: None, request: Create { from: 1, to: 2 }, notify: true })",
            ),
            (
                1,
                2,
                f(None, Some(5), false),
                "Ok(FriendPlan { befriend: None, request: Renew(5), notify: true })",
            ),
            (
                1,
                2,
                f(Some(4), None, false),
                "Ok(FriendPlan { befriend: Some((1, 2)), request: Decide(4, Accepted), notify: true })",
            ),
            (
                1,
                2,
                f(Some(4), Some(5), false),
                "Ok(FriendPlan { befriend: Some((1, 2)), request: Decide(4, Accepted), notify: true })",
            ),
            // Blocked: nothing is accepted, and nobody is told.
            (
                1,
                2,
                f(Some(4), None, true),
                "Ok(FriendPlan { befriend: None, request: Create { from: 1, to: 2 }, notify: false })",
            ),
            (
                1,
                2,
                f(Some(4), Some(5), true),
                "Ok(FriendPlan { befriend: None, request: Renew(5), notify: false })",
            ),
            (1, 1, f(None, None, false), "SelfFriend"),
            (
                1,
                2,
                RequestFacts {
                    friends: true,
                    ..f(None, None, false)
                },
                "AlreadyFriends",
            ),
            (
                1,
                2,
                RequestFacts {
                    to_active: false,
                    ..f(None, None, false)
                },
                "NotFound",
            ),
        ];
        for (from, to, facts, want) in table {
            let got = format!("{:?}", send_request(from, to, facts));
            assert!(got.contains(want), "{facts:?}: {got}");
        }
    }

    #[test]
    fn answers_and_blocks() {
        let r = FriendRequestRecord {
            id: 1,
            from: 1,
            from_name: "a".into(),
            to: 2,
            to_name: "b".into(),
            message: String::new(),
            status: RequestStatus::Pending,
            reply: String::new(),
            created_at_ms: 0,
            decided_at_ms: 0,
        };
        let decided = FriendRequestRecord {
            status: RequestStatus::Rejected,
            ..r.clone()
        };
        // (request, me, accept, sender active, expected)
        let table: Vec<(Option<&FriendRequestRecord>, UserId, bool, bool, &str)> = vec![
            (
                Some(&r),
                2,
                true,
                true,
                "Ok(FriendPlan { befriend: Some((1, 2)), request: Decide(1, Accepted), notify: true })",
            ),
            (
                Some(&r),
                2,
                false,
                false,
                "Ok(FriendPlan { befriend: None, request: Decide(1, Rejected), notify: true })",
            ),
            (Some(&r), 2, true, false, "NotFound(\"user\")"),
            (Some(&r), 1, true, true, "pending friend request"),
            (Some(&decided), 2, true, true, "pending friend request"),
            (None, 2, true, true, "pending friend request"),
        ];
        for (req, me, accept, active, want) in table {
            let got = format!("{:?}", respond_request(req, me, accept, active));
            assert!(got.contains(want), "{me} {accept}: {got}");
        }
        assert!(may_block(1, 2, true, true, false, 9, 10).is_ok());
        assert!(
            may_block(1, 2, true, true, true, 10, 10).is_ok(),
            "already blocked"
        );
        assert!(
            may_block(1, 2, true, false, true, 10, 10).is_ok(),
            "unblocking"
        );
        assert!(may_block(1, 2, true, true, false, 10, 10).is_err());
        assert!(may_block(1, 1, true, true, false, 0, 10).is_err());
        assert!(may_block(1, 2, false, true, false, 0, 10).is_err());
    }
}
