//! Frame type numbers and the payload each one carries, in both directions.
//! The table below is the single source; docs/PROTOCOL.md lists the same
//! numbers and `tests/vectors.rs` checks them against encoded examples.

use crate::frame::{encode_frame, Frame};
use crate::pb;
use bytes::{Bytes, BytesMut};
use prost::Message;

/// A frame's payload could not be understood. The framing is intact, so the
/// connection can answer with an error and go on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("unknown frame type {0}")]
    UnknownType(u16),
    #[error("malformed payload for frame type {kind}: {reason}")]
    Malformed { kind: u16, reason: String },
}

macro_rules! frames {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $code:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq)]
        pub enum $name {
            $($variant(pb::$variant)),*
        }

        impl $name {
            /// Decodes a frame's payload according to its type.
            pub fn decode(frame: &Frame) -> Result<Self, DecodeError> {
                match frame.kind {
                    $($code => pb::$variant::decode(frame.payload.clone())
                        .map(Self::$variant)
                        .map_err(|e| DecodeError::Malformed {
                            kind: frame.kind,
                            reason: e.to_string(),
                        }),)*
                    other => Err(DecodeError::UnknownType(other)),
                }
            }

            /// The frame type number of this payload.
            pub fn kind(&self) -> u16 {
                match self {
                    $(Self::$variant(_) => $code),*
                }
            }

            /// A short name for logs and metrics.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => stringify!($variant)),*
                }
            }

            /// Appends the encoded frame to `dst`.
            pub fn encode(&self, request_id: u32, dst: &mut BytesMut) {
                match self {
                    $(Self::$variant(m) => encode_frame($code, request_id, m, dst)),*
                }
            }

            /// The encoded frame as one shareable buffer.
            pub fn to_bytes(&self, request_id: u32) -> Bytes {
                let mut dst = BytesMut::new();
                self.encode(request_id, &mut dst);
                dst.freeze()
            }
        }
    };
}

frames! {
    /// Frames a client sends: every one is a request and gets exactly one answer.
    ClientFrame {
        Hello = 1,
        Register = 2,
        Login = 3,
        Resume = 4,
        Logout = 5,
        ChangePassword = 6,
        Ping = 7,
        Send = 8,
        Sync = 9,
        History = 10,
        DeliveryAck = 11,
        GetUsers = 12,
        SendFriendRequest = 13,
        RespondFriendRequest = 14,
        ListFriendRequests = 15,
        ListFriends = 16,
        SetFriendRemark = 17,
        RemoveFriend = 18,
        BlockUser = 19,
        SearchUsers = 20,
        CreateGroup = 21,
        GetGroup = 22,
        ListGroups = 23,
        ListRooms = 24,
        GetMembers = 25,
        JoinGroup = 26,
        InviteMembers = 27,
        LeaveGroup = 28,
        KickMember = 29,
        SetRole = 30,
        TransferOwnership = 31,
        MuteMember = 32,
        UpdateGroup = 33,
        DismissGroup = 34,
        ListJoinRequests = 35,
        RespondJoinRequest = 36,
        ListConversations = 37,
        MarkRead = 38,
        Typing = 39,
        Recall = 40,
    }
}

frames! {
    /// Frames a server sends: answers (request id of the request) and pushes
    /// (request id 0).
    ServerFrame {
        Done = 100,
        HelloOk = 101,
        LoginOk = 103,
        Pong = 107,
        SendAck = 108,
        SyncPage = 109,
        HistoryPage = 110,
        Users = 112,
        FriendRequest = 113,
        FriendRequests = 114,
        Friends = 115,
        GroupInfo = 116,
        GroupList = 117,
        Members = 118,
        JoinResult = 119,
        JoinRequests = 120,
        ConversationList = 121,
        Error = 199,
        MessagePush = 201,
        ReceiptPush = 202,
        Disconnect = 203,
        ReadPush = 204,
        TypingPush = 205,
        PresencePush = 206,
        FriendRequestPush = 207,
        JoinRequestPush = 208,
        SyncHintPush = 209,
    }
}

impl ServerFrame {
    /// An error answer.
    pub fn error(code: pb::ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Error(pb::Error {
            code: code as i32,
            message: message.into(),
            retry_after_ms: 0,
            muted_until_ms: 0,
        })
    }

    /// The last frame before the server closes a connection.
    pub fn disconnect(reason: pb::DisconnectReason, message: impl Into<String>) -> Self {
        ServerFrame::Disconnect(pb::Disconnect {
            reason: reason as i32,
            message: message.into(),
            reconnect_after_ms: 0,
            ..Default::default()
        })
    }
}
