//! Who may send what where, who may recall a message, and what a member
//! may see of a conversation.

use super::{Refusal, SystemEvent};
use crate::{
    BodyKind, ConversationId, ConversationKind, DomainError, NewMessage, Result, Role, Target,
    UserId,
};
use std::collections::HashMap;
use std::sync::Arc;

/// What a send to a conversation is checked against, as loaded (or cached)
/// by the backend that holds the conversation's write lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationView {
    pub kind: ConversationKind,
    pub dismissed: bool,
    pub muted_all: bool,
    /// Current members, ascending.
    pub members: Arc<[UserId]>,
    /// Role and muted-until of each current member.
    pub roles: HashMap<UserId, (Role, i64)>,
}

impl ConversationView {
    pub fn role(&self, user: UserId) -> Option<Role> {
        self.roles.get(&user).map(|&(r, _)| r)
    }
}

/// What a 1:1 send needs to know of its recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerFacts {
    /// The recipient exists and is not disabled.
    pub active: bool,
    /// The recipient counts the sender as a friend.
    pub friends: bool,
    /// The recipient has blocked the sender.
    pub blocked: bool,
}

/// The checks of a 1:1 send that need nothing loaded: not to oneself, no
/// mentions.
fn direct_target(new: &NewMessage, peer: UserId) -> Result<()> {
    if new.sender_id == peer {
        return Err(Refusal::SelfConversation.into());
    }
    no_mentions(new)
}

fn no_mentions(new: &NewMessage) -> Result<()> {
    if !new.mentions.is_empty() || new.mention_all {
        return Err(Refusal::MentionsOutsideGroups.into());
    }
    Ok(())
}

/// Whether a user may message `peer` 1:1 (`None`: no such user). A block
/// and the friends-only rule give the same answer, so a blocked sender
/// cannot tell that they are blocked.
fn may_message(peer: Option<PeerFacts>, friends_only: bool) -> Result<()> {
    match peer {
        None | Some(PeerFacts { active: false, .. }) => Err(DomainError::NotFound("user")),
        Some(p) if p.blocked || (friends_only && !p.friends) => Err(Refusal::FriendsOnly.into()),
        Some(_) => Ok(()),
    }
}

/// Where a send into an existing conversation goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendTo {
    /// A 1:1: the peer must still accept it (see [`may_message`]).
    Direct { peer: UserId },
    /// A group or room, with the mentions to flag (current members only,
    /// ascending, once each).
    Group { mentions: Vec<UserId> },
}

/// Checks a send into an existing conversation.
pub fn may_send(view: &ConversationView, id: ConversationId, new: &NewMessage) -> Result<SendTo> {
    let Some(&(role, muted_until)) = view.roles.get(&new.sender_id) else {
        return Err(DomainError::NotMember(id));
    };
    if view.kind == ConversationKind::Direct {
        no_mentions(new)?;
        let peer = view
            .members
            .iter()
            .copied()
            .find(|u| *u != new.sender_id)
            .unwrap_or(new.sender_id);
        return Ok(SendTo::Direct { peer });
    }
    if view.dismissed {
        return Err(Refusal::Dismissed.into());
    }
    if muted_until > new.now_ms {
        return Err(Refusal::Muted {
            until_ms: muted_until,
        }
        .into());
    }
    if view.muted_all && role == Role::Member {
        return Err(Refusal::MutedAll.into());
    }
    if new.mention_all && role == Role::Member {
        return Err(Refusal::MentionAllAdminsOnly.into());
    }
    let mut mentions: Vec<UserId> = new
        .mentions
        .iter()
        .copied()
        .filter(|u| view.roles.contains_key(u))
        .collect();
    mentions.sort_unstable();
    mentions.dedup();
    Ok(SendTo::Group { mentions })
}

/// The verdict on a send that may go through: the mentions to flag and,
/// for a 1:1, the peer whose facts allowed it (a backend may keep them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendVerdict {
    pub mentions: Vec<UserId>,
    pub peer: Option<(UserId, PeerFacts)>,
}

/// Judges one send, 1:1 or into a conversation, the same on every backend.
/// `view` is the targeted conversation as loaded (`None`: no such
/// conversation, or a send to a peer); `peer_facts` loads what a 1:1 needs
/// of its recipient, and is asked only when the send is a 1:1.
pub fn judge_send<E: From<DomainError>>(
    new: &NewMessage,
    view: Option<&ConversationView>,
    peer_facts: impl FnOnce(UserId) -> std::result::Result<Option<PeerFacts>, E>,
) -> std::result::Result<SendVerdict, E> {
    let (peer, mentions) = match new.target {
        Target::Peer(peer) => {
            direct_target(new, peer)?;
            (peer, Vec::new())
        }
        Target::Conversation(id) => {
            let view = view.ok_or(DomainError::NotMember(id))?;
            match may_send(view, id, new)? {
                SendTo::Direct { peer } => (peer, Vec::new()),
                SendTo::Group { mentions } => {
                    return Ok(SendVerdict {
                        mentions,
                        peer: None,
                    })
                }
            }
        }
    };
    let facts = peer_facts(peer)?;
    may_message(facts, new.friends_only)?;
    Ok(SendVerdict {
        mentions,
        peer: facts.map(|f| (peer, f)),
    })
}

/// What a recall does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecallStep {
    /// Already a tombstone: nothing to do, and no error.
    Done,
    Recall(RecallPlan),
}

/// What a recall writes: message `seq` becomes a tombstone (kind
/// `Recalled`, its body, mentions and mention-all cleared), then `event` is
/// recorded, heard by `audience` (every current member).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecallPlan {
    pub seq: u64,
    pub event: SystemEvent,
    pub audience: Arc<[UserId]>,
}

/// The part of a message a recall is judged by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recallable {
    pub sender: UserId,
    pub kind: BodyKind,
    pub server_ts_ms: i64,
}

/// The sender may recall their message within the window; in groups and
/// rooms, so may the owner and admins.
pub fn recall(
    view: &ConversationView,
    id: ConversationId,
    seq: u64,
    actor: UserId,
    message: Option<Recallable>,
    window_ms: i64,
    now_ms: i64,
) -> Result<RecallStep> {
    let Some(role) = view.role(actor) else {
        return Err(DomainError::NotMember(id));
    };
    let message = message.ok_or(DomainError::NotFound("message"))?;
    match message.kind {
        BodyKind::Recalled => return Ok(RecallStep::Done),
        BodyKind::System => return Err(Refusal::RecallSystemEvent.into()),
        _ => {}
    }
    let moderator = view.kind != ConversationKind::Direct && role >= Role::Admin;
    if message.sender != actor && !moderator {
        return Err(Refusal::RecallSenderOrAdmin.into());
    }
    if now_ms - message.server_ts_ms > window_ms {
        return Err(Refusal::RecallWindowPassed { window_ms }.into());
    }
    Ok(RecallStep::Recall(RecallPlan {
        seq,
        event: SystemEvent::Recalled { actor, seq },
        audience: view.members.clone(),
    }))
}

/// The last seq a member may see: up to where they left, else the newest.
pub fn visible_upto(left_seq: u64, last_seq: u64) -> u64 {
    if left_seq > 0 {
        left_seq
    } else {
        last_seq
    }
}

/// The largest group whose members hear each other's read cursors (read
/// receipts); in a larger one, and in every room, only the reader's own
/// devices do: each read there would be one push per member.
pub const READ_RECEIPTS_MAX_MEMBERS: usize = 32;

/// Whether `cursor_audience` needs the conversation's members (up to
/// `READ_RECEIPTS_MAX_MEMBERS + 1` of them are enough to decide).
pub fn cursor_needs_members(kind: ConversationKind, read: bool) -> bool {
    match kind {
        ConversationKind::Direct => true,
        ConversationKind::Group => read,
        _ => false,
    }
}

/// Who hears that `user`'s cursor moved (`read`: the read cursor, else the
/// delivered one): in a 1:1 both members; a read cursor, every member of a
/// group of at most `READ_RECEIPTS_MAX_MEMBERS`; elsewhere the user alone
/// (their other devices): telling every member of every member's cursor
/// would be one push per member per member.
pub fn cursor_audience(
    kind: ConversationKind,
    read: bool,
    user: UserId,
    members: &[UserId],
) -> Vec<UserId> {
    match kind {
        ConversationKind::Direct => members.to_vec(),
        ConversationKind::Group if read && members.len() <= READ_RECEIPTS_MAX_MEMBERS => {
            members.to_vec()
        }
        _ => vec![user],
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{Body, Target};

    fn view(kind: ConversationKind, roles: &[(UserId, Role, i64)]) -> ConversationView {
        ConversationView {
            kind,
            dismissed: false,
            muted_all: false,
            members: roles.iter().map(|r| r.0).collect::<Vec<_>>().into(),
            roles: roles.iter().map(|&(u, r, m)| (u, (r, m))).collect(),
        }
    }

    fn msg(sender: UserId, mentions: Vec<UserId>, all: bool) -> NewMessage {
        NewMessage {
            sender_id: sender,
            target: Target::Conversation(9),
            client_msg_id: "c".into(),
            body: Body {
                kind: BodyKind::Text,
                content: "hi".into(),
            },
            mentions,
            mention_all: all,
            friends_only: true,
            now_ms: 1_000,
            origin: None,
        }
    }

    #[test]
    fn sends_to_groups() {
        let g = view(
            ConversationKind::Group,
            &[
                (1, Role::Owner, 0),
                (2, Role::Member, 0),
                (3, Role::Member, 5_000),
            ],
        );
        let mut muted_all = g.clone();
        muted_all.muted_all = true;
        let mut dismissed = g.clone();
        dismissed.dismissed = true;
        let group = |m: Vec<UserId>| Ok(SendTo::Group { mentions: m });
        // (view, message, expected)
        let table: Vec<(&ConversationView, NewMessage, Result<SendTo>)> = vec![
            (&g, msg(2, vec![], false), group(vec![])),
            (&g, msg(2, vec![3, 1, 3, 77], false), group(vec![1, 3])),
            (&g, msg(4, vec![], false), Err(DomainError::NotMember(9))),
            (
                &g,
                msg(3, vec![], false),
                Err(Refusal::Muted { until_ms: 5_000 }.into()),
            ),
            (
                &g,
                msg(2, vec![], true),
                Err(Refusal::MentionAllAdminsOnly.into()),
            ),
            (&g, msg(1, vec![], true), group(vec![])),
            (
                &muted_all,
                msg(2, vec![], false),
                Err(Refusal::MutedAll.into()),
            ),
            (&muted_all, msg(1, vec![], false), group(vec![])),
            (
                &dismissed,
                msg(1, vec![], false),
                Err(Refusal::Dismissed.into()),
            ),
        ];
        for (v, m, want) in table {
            assert_eq!(
                format!("{:?}", may_send(v, 9, &m)),
                format!("{want:?}"),
                "{m:?}"
            );
        }
    }

    #[test]
    fn sends_one_to_one() {
        let d = view(
            ConversationKind::Direct,
            &[(1, Role::Member, 0), (2, Role::Member, 0)],
        );
        assert_eq!(
            may_send(&d, 9, &msg(1, vec![], false)).unwrap(),
            SendTo::Direct { peer: 2 }
        );
        assert!(matches!(
            may_send(&d, 9, &msg(1, vec![2], false)),
            Err(DomainError::Refused(Refusal::MentionsOutsideGroups))
        ));
        let facts = |active, friends, blocked| {
            Some(PeerFacts {
                active,
                friends,
                blocked,
            })
        };
        // (peer, friends only, allowed)
        let table = [
            (facts(true, true, false), true, Ok(())),
            (facts(true, false, false), false, Ok(())),
            (facts(true, false, false), true, Err("FriendsOnly")),
            (facts(true, true, true), false, Err("FriendsOnly")),
            (facts(false, true, false), false, Err("NotFound")),
            (None, false, Err("NotFound")),
        ];
        for (peer, only, want) in table {
            let got = may_message(peer, only).map_err(|e| {
                let s = format!("{e:?}");
                if s.contains("FriendsOnly") {
                    "FriendsOnly"
                } else if s.contains("NotFound") {
                    "NotFound"
                } else {
                    "other"
                }
            });
            assert_eq!(got, want, "{peer:?} {only}");
        }
        let mut m = msg(1, vec![], false);
        assert!(direct_target(&m, 2).is_ok());
        assert!(matches!(
            direct_target(&m, 1),
            Err(DomainError::Refused(Refusal::SelfConversation))
        ));
        m.mention_all = true;
        assert!(direct_target(&m, 2).is_err());
    }

    /// One verdict for both kinds of send: a first message to a peer, and a
    /// send into an existing 1:1, group or room.
    #[test]
    fn judges_every_send_the_same_way() {
        let d = view(
            ConversationKind::Direct,
            &[(1, Role::Member, 0), (2, Role::Member, 0)],
        );
        let g = view(
            ConversationKind::Group,
            &[(1, Role::Owner, 0), (2, Role::Member, 0)],
        );
        let friend = PeerFacts {
            active: true,
            friends: true,
            blocked: false,
        };
        let stranger = PeerFacts {
            friends: false,
            ..friend
        };
        let to_peer = |peer| NewMessage {
            target: Target::Peer(peer),
            ..msg(1, vec![], false)
        };
        let allowed = |mentions: Vec<UserId>, peer: Option<(UserId, PeerFacts)>| {
            format!("{:?}", Ok::<_, DomainError>(SendVerdict { mentions, peer }))
        };
        // (message, view, the peer's facts, expected)
        let table: Vec<(
            NewMessage,
            Option<&ConversationView>,
            Option<PeerFacts>,
            String,
        )> = vec![
            (
                to_peer(2),
                None,
                Some(friend),
                allowed(vec![], Some((2, friend))),
            ),
            (to_peer(2), None, Some(stranger), "FriendsOnly".into()),
            (to_peer(2), None, None, "NotFound(\"user\")".into()),
            (to_peer(1), None, Some(friend), "SelfConversation".into()),
            (
                msg(1, vec![], false),
                Some(&d),
                Some(friend),
                allowed(vec![], Some((2, friend))),
            ),
            (
                msg(1, vec![], false),
                Some(&d),
                Some(stranger),
                "FriendsOnly".into(),
            ),
            (
                msg(1, vec![2], false),
                Some(&d),
                Some(friend),
                "MentionsOutsideGroups".into(),
            ),
            (
                msg(2, vec![1, 5], false),
                Some(&g),
                None,
                allowed(vec![1], None),
            ),
            (
                msg(1, vec![], false),
                None,
                Some(friend),
                "NotMember(9)".into(),
            ),
        ];
        for (m, v, facts, want) in table {
            let mut asked = None;
            let got = format!(
                "{:?}",
                judge_send(&m, v, |peer| {
                    asked = Some(peer);
                    Ok::<_, DomainError>(facts)
                })
            );
            assert!(got.contains(&want), "{m:?} {v:?}: {got}");
            if v.is_some_and(|v| v.kind == ConversationKind::Group) {
                assert_eq!(asked, None, "a group send needs no peer's facts");
            }
        }
    }

    #[test]
    fn recalls() {
        let g = view(
            ConversationKind::Group,
            &[
                (1, Role::Owner, 0),
                (2, Role::Admin, 0),
                (3, Role::Member, 0),
            ],
        );
        let d = view(
            ConversationKind::Direct,
            &[(1, Role::Member, 0), (2, Role::Member, 0)],
        );
        let m = |sender, kind| {
            Some(Recallable {
                sender,
                kind,
                server_ts_ms: 1_000,
            })
        };
        let t = BodyKind::Text;
        // (view, actor, message, now, expected)
        let table: Vec<(&ConversationView, UserId, Option<Recallable>, i64, &str)> = vec![
            (&g, 3, m(3, t), 2_000, "Ok(Recall("),
            (&g, 2, m(3, t), 2_000, "Ok(Recall("),
            (&g, 3, m(2, t), 2_000, "RecallSenderOrAdmin"),
            (&g, 3, m(3, t), 200_000, "RecallWindowPassed"),
            (&g, 3, m(3, BodyKind::Recalled), 200_000, "Ok(Done)"),
            (&g, 1, m(1, BodyKind::System), 2_000, "RecallSystemEvent"),
            (&g, 9, m(3, t), 2_000, "NotMember"),
            (&g, 3, None, 2_000, "NotFound"),
            (&d, 1, m(2, t), 2_000, "RecallSenderOrAdmin"),
            (&d, 2, m(2, t), 2_000, "Ok(Recall("),
        ];
        for (v, actor, message, now, want) in table {
            let got = format!("{:?}", recall(v, 9, 5, actor, message, 60_000, now));
            assert!(got.contains(want), "{actor} {message:?}: {got}");
        }
        assert_eq!(
            recall(&g, 9, 5, 2, m(3, t), 60_000, 2_000),
            Ok(RecallStep::Recall(RecallPlan {
                seq: 5,
                event: SystemEvent::Recalled { actor: 2, seq: 5 },
                audience: vec![1, 2, 3].into(),
            }))
        );
    }

    #[test]
    fn cursors_and_visibility() {
        assert_eq!(visible_upto(0, 10), 10);
        assert_eq!(visible_upto(4, 10), 4);
        assert_eq!(
            cursor_audience(ConversationKind::Direct, false, 1, &[1, 2]),
            vec![1, 2]
        );
        assert_eq!(
            cursor_audience(ConversationKind::Group, false, 1, &[1, 2, 3]),
            vec![1]
        );
        assert_eq!(
            cursor_audience(ConversationKind::Group, true, 1, &[1, 2, 3]),
            vec![1, 2, 3]
        );
        let many: Vec<UserId> = (1..=READ_RECEIPTS_MAX_MEMBERS as u64 + 1).collect();
        assert_eq!(
            cursor_audience(ConversationKind::Group, true, 1, &many),
            vec![1]
        );
        assert_eq!(
            cursor_audience(ConversationKind::Room, true, 1, &[1, 2]),
            vec![1]
        );
        assert!(!cursor_needs_members(ConversationKind::Group, false));
        assert!(cursor_needs_members(ConversationKind::Group, true));
    }
}
