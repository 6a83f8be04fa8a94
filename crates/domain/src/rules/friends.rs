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

/// What a friend request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestStep {
    /// Both asked: the second request accepts the first (this one).
    AcceptTheirs(u64),
    /// Asking again renews the pending request (new message and time).
    Renew(u64),
    Create,
}

/// Judges a friend request; the flag says whether both users hear of it.
/// A request to someone who blocked the sender waits unseen, and the
/// sender is not told why.
pub fn send_request(from: UserId, to: UserId, f: RequestFacts) -> Result<(RequestStep, bool)> {
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
    Ok(match (f.theirs, f.mine) {
        (Some(theirs), _) if notify => (RequestStep::AcceptTheirs(theirs), true),
        (_, Some(mine)) => (RequestStep::Renew(mine), notify),
        _ => (RequestStep::Create, notify),
    })
}

/// Answers a request addressed to `me` that is still pending; an accept
/// needs its sender to still exist.
pub fn respond_request(
    request: Option<&FriendRequestRecord>,
    me: UserId,
    accept: bool,
    from_active: bool,
) -> Result<RequestStatus> {
    match request {
        Some(r) if r.to == me && r.status == RequestStatus::Pending => {}
        _ => return Err(DomainError::NotFound("pending friend request")),
    }
    if !accept {
        return Ok(RequestStatus::Rejected);
    }
    if !from_active {
        return Err(DomainError::NotFound("user"));
    }
    Ok(RequestStatus::Accepted)
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
            (1, 2, f(None, None, false), "Ok((Create, true))"),
            (1, 2, f(None, Some(5), false), "Ok((Renew(5), true))"),
            (1, 2, f(Some(4), None, false), "Ok((AcceptTheirs(4), true))"),
            (
                1,
                2,
                f(Some(4), Some(5), false),
                "Ok((AcceptTheirs(4), true))",
            ),
            // Blocked: nothing is accepted, and nobody is told.
            (1, 2, f(Some(4), None, true), "Ok((Create, false))"),
            (1, 2, f(Some(4), Some(5), true), "Ok((Renew(5), false))"),
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
            (Some(&r), 2, true, true, "Ok(Accepted)"),
            (Some(&r), 2, false, false, "Ok(Rejected)"),
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
