//! Protocol test vectors: `vectors.txt` holds encoded frames with their
//! meaning; every one must decode to exactly that and re-encode to the same
//! bytes. The file doubles as reference material for client authors.
//!
//! After a deliberate change to the wire format, regenerate it with
//! `NATTER_BLESS=1 cargo test -p natter-proto --test vectors` and review the diff.
#![allow(clippy::unwrap_used)] // a benchmark, test or example: a failure should stop it

use bytes::BytesMut;
use natter_proto::{pb, ClientFrame, FrameDecoder, ServerFrame};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors.txt");

enum Either {
    C(ClientFrame),
    S(ServerFrame),
}

fn text(content: &str) -> Option<pb::Body> {
    Some(pb::Body {
        kind: pb::BodyKind::Text as i32,
        content: content.into(),
    })
}

fn cases() -> Vec<(&'static str, u32, Either)> {
    use Either::*;
    vec![
        (
            "Client hello: versions 1..=1",
            1,
            C(ClientFrame::Hello(pb::Hello {
                min_version: 1,
                max_version: 1,
                client_name: "demo".into(),
            })),
        ),
        (
            "Server hello answer",
            1,
            S(ServerFrame::HelloOk(pb::HelloOk {
                version: 1,
                server_name: "natter".into(),
                max_frame_bytes: 262144,
                max_message_bytes: 65536,
                auth_timeout_ms: 10000,
            })),
        ),
        (
            "Register",
            2,
            C(ClientFrame::Register(pb::Register {
                username: "alice".into(),
                password: "secret pw".into(),
            })),
        ),
        ("Success without data", 2, S(ServerFrame::Done(pb::Done {}))),
        (
            "Login on device phone",
            3,
            C(ClientFrame::Login(pb::Login {
                username: "alice".into(),
                password: "secret pw".into(),
                device_id: "phone".into(),
            })),
        ),
        (
            "Login answer",
            3,
            S(ServerFrame::LoginOk(pb::LoginOk {
                user_id: 1,
                username: "alice".into(),
                session_id: 7,
                token: "tok".into(),
                token_expires_at_ms: 1700000000000,
                heartbeat_interval_ms: 30000,
                heartbeat_timeout_ms: 90000,
            })),
        ),
        (
            "Resume with a token",
            4,
            C(ClientFrame::Resume(pb::Resume {
                token: "tok".into(),
                device_id: "phone".into(),
            })),
        ),
        (
            "Heartbeat",
            5,
            C(ClientFrame::Ping(pb::Ping { client_time_ms: 1 })),
        ),
        (
            "Send text to user 2",
            6,
            C(ClientFrame::Send(pb::Send {
                client_msg_id: "m1".into(),
                target: Some(pb::send::Target::PeerUserId(2)),
                body: text("hi"),
                ..Default::default()
            })),
        ),
        (
            "ACK: conversation 1, seq 1, message 10",
            6,
            S(ServerFrame::SendAck(pb::SendAck {
                conversation_id: 1,
                seq: 1,
                msg_id: 10,
                server_ts_ms: 1700000000000,
                duplicate: false,
            })),
        ),
        (
            "Sync from seq 0 of conversation 1, 100 per page",
            7,
            C(ClientFrame::Sync(pb::Sync {
                cursors: vec![pb::Cursor {
                    conversation_id: 1,
                    seq: 0,
                }],
                limit: 100,
                after_conversation_id: 0,
            })),
        ),
        (
            "History: 20 before seq 50",
            8,
            C(ClientFrame::History(pb::History {
                conversation_id: 1,
                before_seq: 50,
                limit: 20,
            })),
        ),
        (
            "Delivered up to seq 1",
            9,
            C(ClientFrame::DeliveryAck(pb::DeliveryAck {
                conversation_id: 1,
                seq: 1,
            })),
        ),
        (
            "Look up a user by name",
            10,
            C(ClientFrame::GetUsers(pb::GetUsers {
                user_ids: vec![],
                usernames: vec!["bob".into()],
            })),
        ),
        ("Logout", 11, C(ClientFrame::Logout(pb::Logout::default()))),
        (
            "Error: not logged in",
            12,
            S(ServerFrame::error(
                pb::ErrorCode::NotAuthenticated,
                "log in first",
            )),
        ),
        (
            "Push: a new message",
            0,
            S(ServerFrame::MessagePush(pb::MessagePush {
                message: Some(pb::Message {
                    conversation_id: 1,
                    seq: 2,
                    msg_id: 11,
                    sender_id: 2,
                    client_msg_id: "b1".into(),
                    server_ts_ms: 1700000000001,
                    body: text("yo"),
                    ..Default::default()
                }),
            })),
        ),
        (
            "Push: user 2 has everything up to seq 1",
            0,
            S(ServerFrame::ReceiptPush(pb::ReceiptPush {
                conversation_id: 1,
                user_id: 2,
                seq: 1,
            })),
        ),
        (
            "Push: the server is going away",
            0,
            S(ServerFrame::Disconnect(pb::Disconnect {
                reason: pb::DisconnectReason::GoingAway as i32,
                message: "bye".into(),
                reconnect_after_ms: 1000,
                ..Default::default()
            })),
        ),
        (
            "Push: the node is going away; reconnect to another node of the cluster",
            0,
            S(ServerFrame::Disconnect(pb::Disconnect {
                reason: pb::DisconnectReason::GoingAway as i32,
                message: "bye".into(),
                reconnect_after_ms: 1000,
                reconnect_tcp: "10.0.0.3:7700".into(),
                reconnect_ws: "10.0.0.3:7701".into(),
            })),
        ),
        (
            "Push: pushes may have been lost, Sync now",
            0,
            S(ServerFrame::SyncHintPush(pb::SyncHintPush {})),
        ),
        (
            "Create a group with users 2 and 3, open to join",
            7,
            C(ClientFrame::CreateGroup(pb::CreateGroup {
                kind: pb::ConversationKind::Group as i32,
                name: "team".into(),
                notice: String::new(),
                join_policy: pb::JoinPolicy::Open as i32,
                member_ids: vec![2, 3],
            })),
        ),
        (
            "GroupInfo: the created group, as its owner sees it",
            7,
            S(ServerFrame::GroupInfo(pb::GroupInfo {
                conversation_id: 9,
                kind: pb::ConversationKind::Group as i32,
                name: "team".into(),
                notice: String::new(),
                owner_id: 1,
                join_policy: pb::JoinPolicy::Open as i32,
                muted_all: false,
                dismissed: false,
                member_count: 3,
                max_members: 5000,
                last_seq: 1,
                created_at_ms: 1700000000000,
                my_role: pb::Role::Owner as i32,
                invite_code: "0123456789abcdef0123456789abcdef".into(),
            })),
        ),
        (
            "Join group 9 with its invite code",
            11,
            C(ClientFrame::JoinGroup(pb::JoinGroup {
                conversation_id: 9,
                message: String::new(),
                invite_code: "0123456789abcdef0123456789abcdef".into(),
            })),
        ),
        (
            "JoinResult: joined (an OPEN group)",
            11,
            S(ServerFrame::JoinResult(pb::JoinResult {
                joined: true,
                pending: false,
            })),
        ),
        (
            "JoinResult: waiting for approval (an APPROVAL group)",
            11,
            S(ServerFrame::JoinResult(pb::JoinResult {
                joined: false,
                pending: true,
            })),
        ),
        (
            "Send text into conversation 9, mentioning user 3",
            8,
            C(ClientFrame::Send(pb::Send {
                client_msg_id: "g1".into(),
                target: Some(pb::send::Target::ConversationId(9)),
                body: text("@carol look"),
                mention_user_ids: vec![3],
                mention_all: false,
            })),
        ),
        (
            "Ask user 2 to be friends",
            9,
            C(ClientFrame::SendFriendRequest(pb::SendFriendRequest {
                user_id: 2,
                message: "hi, it's alice".into(),
            })),
        ),
        (
            "Mark conversation 9 read up to seq 4",
            10,
            C(ClientFrame::MarkRead(pb::MarkRead {
                conversation_id: 9,
                seq: 4,
            })),
        ),
        (
            "Push: user 2 is typing in conversation 9",
            0,
            S(ServerFrame::TypingPush(pb::TypingPush {
                conversation_id: 9,
                user_id: 2,
            })),
        ),
    ]
}

/// Every fully written example frame in docs/PROTOCOL.md (a code block of
/// hex bytes, each line's bytes before its annotation) is one of the
/// vectors, byte for byte, so the document cannot drift from the codec.
#[test]
fn protocol_md_examples_are_vectors() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/PROTOCOL.md"
    ))
    .unwrap();
    let vectors = std::fs::read_to_string(PATH).unwrap();
    let known: Vec<&str> = vectors
        .split("\n\n")
        .skip(1)
        .filter_map(|b| b.lines().nth(2))
        .collect();
    let is_hex = |t: &str| t.len() == 2 && t.bytes().all(|b| b.is_ascii_hexdigit());
    let mut checked = Vec::new();
    for block in doc.split("```").skip(1).step_by(2) {
        let mut bytes = Vec::new();
        let mut complete = true;
        for line in block.lines() {
            let data = line.trim_start().split("  ").next().unwrap_or("");
            let tokens: Vec<&str> = data.split(' ').filter(|t| !t.is_empty()).collect();
            if tokens.is_empty() || !is_hex(tokens[0]) {
                if tokens.first() == Some(&"..") || data.contains(" ..") {
                    complete = false;
                }
                continue;
            }
            if tokens.iter().any(|t| !is_hex(t)) {
                complete = false;
            }
            bytes.extend(tokens.iter().filter(|t| is_hex(t)).copied());
        }
        // Length (4) + type (2) + request id (4) at least: a frame.
        if bytes.len() < 10 || !complete {
            continue;
        }
        let frame = bytes.join(" ");
        assert!(
            known.contains(&frame.as_str()),
            "an example in PROTOCOL.md is not in vectors.txt: {frame}"
        );
        checked.push(frame);
    }
    for needed in ["00 74 ", "00 1a ", "00 77 "] {
        assert!(
            checked.iter().any(|f| &f[12..18] == needed),
            "PROTOCOL.md shows no complete example of type {needed}"
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn render() -> String {
    let mut out = String::from(
        "# natter protocol test vectors (generated; see tests/vectors.rs).\n\
         # Each block: a description, the direction and request id, the frame in hex,\n\
         # and the decoded payload.\n",
    );
    for (what, id, frame) in cases() {
        let (dir, bytes, debug) = match &frame {
            Either::C(f) => ("client", f.to_bytes(id), format!("{f:?}")),
            Either::S(f) => ("server", f.to_bytes(id), format!("{f:?}")),
        };
        out.push_str(&format!(
            "\n# {what}\n{dir} {id}\n{}\n{debug}\n",
            hex(&bytes)
        ));
    }
    out
}

#[test]
fn vectors_match_the_codec() {
    if std::env::var_os("NATTER_BLESS").is_some() {
        std::fs::write(PATH, render()).unwrap();
    }
    let file = std::fs::read_to_string(PATH).expect("vectors.txt exists");
    // Decode the file on its own terms, not through render().
    let mut checked = 0;
    for block in file.split("\n\n").skip(1) {
        let lines: Vec<&str> = block.lines().collect();
        let [_, head, hexline, debug] = lines[..] else {
            panic!("malformed block: {block}");
        };
        let (dir, id) = head.split_once(' ').unwrap();
        let bytes: Vec<u8> = hexline
            .split(' ')
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect();
        let mut buf = BytesMut::from(&bytes[..]);
        let frame = FrameDecoder::new(1 << 20)
            .decode(&mut buf)
            .unwrap()
            .expect("a whole frame");
        assert!(buf.is_empty(), "one frame per vector");
        assert_eq!(frame.request_id.to_string(), id);
        let (decoded, reencoded) = match dir {
            "client" => {
                let f = ClientFrame::decode(&frame).unwrap();
                (format!("{f:?}"), f.to_bytes(frame.request_id))
            }
            "server" => {
                let f = ServerFrame::decode(&frame).unwrap();
                (format!("{f:?}"), f.to_bytes(frame.request_id))
            }
            other => panic!("unknown direction {other}"),
        };
        assert_eq!(decoded, debug);
        assert_eq!(&reencoded[..], &bytes[..]);
        checked += 1;
    }
    assert_eq!(checked, cases().len());
    assert_eq!(
        file,
        render(),
        "vectors.txt is stale: rerun with NATTER_BLESS=1 and review"
    );
}
