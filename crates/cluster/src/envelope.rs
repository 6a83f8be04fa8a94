//! What travels on the bus: batches of routed events, each narrowed to the
//! users on the receiving node, with the frame already encoded. Protobuf, so
//! nodes of neighbouring versions can read each other's batches.

use bytes::Bytes;
use natter_gateway::delivery::Routed;
use natter_service::model::UserId;
use natter_service::RevokeReason;
use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Batch {
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<Envelope>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Envelope {
    /// The recipients on the receiving node.
    #[prost(uint64, repeated, tag = "1")]
    pub users: Vec<u64>,
    /// The session that must not get the frame (the sender's, which has the ACK).
    #[prost(uint64, optional, tag = "2")]
    pub skip: Option<u64>,
    /// The frame, encoded once by the node that routed it.
    #[prost(bytes = "bytes", tag = "3")]
    pub frame: Bytes,
    /// Sessions to close instead of a frame to queue.
    #[prost(uint64, repeated, tag = "4")]
    pub revoke: Vec<u64>,
    /// 1: REPLACED, 2: KICKED, 3: LOGGED_OUT.
    #[prost(uint32, tag = "5")]
    pub reason: u32,
    /// Pushes to the receiving node may have been lost: every session there
    /// should Sync.
    #[prost(bool, tag = "6")]
    pub resync: bool,
    /// A message's conversation and seq (0: not a message).
    #[prost(uint64, tag = "7")]
    pub conversation: u64,
    /// A revocation covers only connections attached at or before this
    /// time, ms since the epoch (0: all of them; what a node of an earlier
    /// version sends).
    #[prost(int64, tag = "9")]
    pub revoke_attached_by_ms: i64,
    #[prost(uint64, tag = "8")]
    pub seq: u64,
}

impl Envelope {
    /// `routed`, for `users` only (those on the receiving node).
    pub(crate) fn of(routed: &Routed, users: Vec<UserId>) -> Envelope {
        match routed {
            Routed::Push {
                frame, skip, order, ..
            } => Envelope {
                users,
                skip: *skip,
                frame: frame.clone(),
                conversation: order.map_or(0, |o| o.0),
                seq: order.map_or(0, |o| o.1),
                ..Envelope::default()
            },
            Routed::Revoke {
                sessions,
                reason,
                attached_by_ms,
                ..
            } => Envelope {
                users,
                revoke: sessions.clone(),
                revoke_attached_by_ms: attached_by_ms.unwrap_or(0),
                reason: match reason {
                    RevokeReason::Replaced => 1,
                    RevokeReason::Kicked => 2,
                    RevokeReason::LoggedOut => 3,
                    RevokeReason::Disabled => 4,
                    RevokeReason::Admin => 5,
                },
                ..Envelope::default()
            },
        }
    }

    pub(crate) fn resync() -> Envelope {
        Envelope {
            resync: true,
            ..Envelope::default()
        }
    }

    /// What the receiving node does with it.
    pub(crate) fn into_routed(self) -> Option<Routed> {
        if self.resync {
            return None;
        }
        if !self.revoke.is_empty() {
            let reason = match self.reason {
                1 => RevokeReason::Replaced,
                3 => RevokeReason::LoggedOut,
                4 => RevokeReason::Disabled,
                5 => RevokeReason::Admin,
                _ => RevokeReason::Kicked,
            };
            return Some(Routed::Revoke {
                user: self.users.first().copied().unwrap_or(0),
                sessions: self.revoke,
                reason,
                attached_by_ms: (self.revoke_attached_by_ms > 0)
                    .then_some(self.revoke_attached_by_ms),
            });
        }
        Some(Routed::Push {
            users: self.users.into(),
            frame: self.frame,
            skip: self.skip,
            order: (self.seq > 0).then_some((self.conversation, self.seq)),
        })
    }
}

pub(crate) fn encode(batch: &Batch) -> Vec<u8> {
    batch.encode_to_vec()
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Batch, prost::DecodeError> {
    Batch::decode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A replacing attach's time crosses the bus; a revocation without one
    /// (every other kind, or from a node of an earlier version) covers
    /// every connection of its sessions.
    #[test]
    fn a_revocation_keeps_the_time_of_the_attach_it_follows() {
        for by in [Some(1_700_000_000_123), None] {
            let routed = Routed::Revoke {
                user: 7,
                sessions: vec![70, 71],
                reason: RevokeReason::Replaced,
                attached_by_ms: by,
            };
            let batch = Batch {
                items: vec![Envelope::of(&routed, vec![7])],
            };
            let back = decode(&encode(&batch)).unwrap().items.remove(0);
            match back.into_routed() {
                Some(Routed::Revoke {
                    user,
                    sessions,
                    reason,
                    attached_by_ms,
                }) => {
                    assert_eq!((user, sessions), (7, vec![70, 71]));
                    assert_eq!(reason, RevokeReason::Replaced);
                    assert_eq!(attached_by_ms, by);
                }
                _ => panic!("not a revocation"),
            }
        }
    }
}
