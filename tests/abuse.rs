//! One hostile host against a node: password guessing, registration and
//! connection floods, oversized frames before login, typing floods. Each
//! gets its documented refusal, and everyone else keeps being served.

mod common;

use common::*;
use natter_client::{pb, ServerFrame};
use natter_proto::ClientFrame;
use std::collections::HashMap;
use std::time::Duration;

/// A test configuration with the real per-address limits back in place.
fn real_limits(c: &mut natter::Config) {
    let d = natter::config::Throttle::default();
    c.throttle = d;
    c.limits.max_unauthenticated_per_address =
        natter::config::Limits::default().max_unauthenticated_per_address;
}

/// Writes all `frames` at once, then reads one answer per request id.
async fn pipelined(raw: &mut Raw, frames: Vec<(u32, ClientFrame)>) -> HashMap<u32, ServerFrame> {
    let mut bytes = Vec::new();
    let n = frames.len();
    for (id, f) in frames {
        bytes.extend_from_slice(&f.to_bytes(id));
    }
    raw.send(&bytes).await;
    let mut answers = HashMap::new();
    while answers.len() < n {
        let (id, f) = raw.frame().await.expect("an answer for every request");
        assert!(
            answers.insert(id, f).is_none(),
            "request {id} answered twice"
        );
    }
    answers
}

fn login(name: &str, password: &str) -> ClientFrame {
    ClientFrame::Login(pb::Login {
        username: name.into(),
        password: password.into(),
        device_id: "d".into(),
    })
}

fn count(answers: &HashMap<u32, ServerFrame>, code: pb::ErrorCode) -> usize {
    answers
        .values()
        .filter(|f| error_code(f) == Some(code))
        .count()
}

#[tokio::test]
async fn failed_logins_back_off_per_account_and_the_owner_gets_back_in() {
    let server = TestServer::start_with(|c| {
        c.throttle.failed_login_free_per_user = 3;
        c.throttle.failed_login_backoff_ms = 300;
        c.throttle.failed_login_backoff_max_ms = 600;
    })
    .await;
    server.user("alice").await;
    let mut guesser = server.client().await;
    for i in 0..3 {
        let r = guesser.login("alice", &format!("guess {i}"), "g").await;
        assert_eq!(code(r), pb::ErrorCode::BadCredentials, "guess {i}");
    }
    // The third and last free failure started a back-off for the account,
    // from anywhere.
    let mut elsewhere = client_from(&server.tcp, "127.0.0.2").await;
    match elsewhere.login("alice", "guess 5", "g").await {
        Err(natter_client::ClientError::Server {
            code,
            retry_after_ms,
            message,
            ..
        }) => {
            assert_eq!(code, pb::ErrorCode::RateLimited);
            assert!((1..=300).contains(&retry_after_ms), "{retry_after_ms}");
            assert!(message.contains("account"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // The owner is refused too while it lasts, but never for long.
    let mut owner = server.client().await;
    assert_eq!(
        code(owner.login("alice", PASSWORD, "phone").await),
        pb::ErrorCode::RateLimited
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    owner.login("alice", PASSWORD, "phone").await.unwrap();
    // A success clears the account's failures.
    let mut fresh = server.client().await;
    assert_eq!(
        code(fresh.login("alice", "wrong", "g").await),
        pb::ErrorCode::BadCredentials
    );
}

#[tokio::test]
async fn a_flood_of_pipelined_logins_costs_at_most_the_address_allowance() {
    let server = TestServer::start_with(real_limits).await;
    server.user("alice").await;
    let mut raw = Raw::connect(&server.tcp).await;
    raw.hello().await;
    let frames = (0..300)
        .map(|i| (i + 2, login(&format!("user{}", i % 40), "wrong password")))
        .collect();
    let answers = pipelined(&mut raw, frames).await;
    let bad = count(&answers, pb::ErrorCode::BadCredentials);
    let limited = count(&answers, pb::ErrorCode::RateLimited);
    assert_eq!(bad + limited, 300, "every login answered, none accepted");
    // At most the failure burst (20) was checked against a password.
    assert!((1..=21).contains(&bad), "{bad} passwords checked");
    // Another host is not affected.
    let mut other = client_from(&server.tcp, "127.0.0.2").await;
    other.login("alice", PASSWORD, "d2").await.unwrap();
}

#[tokio::test]
async fn registrations_from_one_address_are_paced() {
    let server = TestServer::start_with(real_limits).await;
    let mut raw = Raw::connect(&server.tcp).await;
    raw.hello().await;
    let frames = (0..100)
        .map(|i| {
            let r = pb::Register {
                username: format!("spam{i}"),
                password: PASSWORD.into(),
            };
            (i + 2, ClientFrame::Register(r))
        })
        .collect();
    let answers = pipelined(&mut raw, frames).await;
    let done = answers
        .values()
        .filter(|f| matches!(f, ServerFrame::Done(_)))
        .count();
    assert_eq!(done, 5, "the burst of registrations per address");
    assert_eq!(count(&answers, pb::ErrorCode::RateLimited), 95);
    let other = client_from(&server.tcp, "127.0.0.2").await;
    other.register("honest", PASSWORD).await.unwrap();
}

#[tokio::test]
async fn unauthenticated_connections_are_capped_per_address() {
    let server = TestServer::start_with(|c| c.limits.max_unauthenticated_per_address = 8).await;
    let (_alice, login_ok) = server.user("alice").await;
    let mut idle = Vec::new();
    for _ in 0..8 {
        let mut r = Raw::connect(&server.tcp).await;
        r.hello().await;
        idle.push(r);
    }
    let mut ninth = Raw::connect(&server.tcp).await;
    let frames = ninth.until_closed().await;
    match frames.last() {
        Some(ServerFrame::Disconnect(d)) => {
            assert_eq!(d.reason(), pb::DisconnectReason::ServerFull);
            assert!(d.message.contains("address"), "{}", d.message);
        }
        other => panic!("{other:?}"),
    }
    // Another host logs in, and a login frees a slot for this one.
    let mut other = client_from(&server.tcp, "127.0.0.2").await;
    other.login("alice", PASSWORD, "d2").await.unwrap();
    idle[0].resume(&login_ok.token).await;
    let mut tenth = Raw::connect(&server.tcp).await;
    tenth.hello().await;
}

fn header(len: u32, kind: u16, req: u32) -> Vec<u8> {
    let mut v = len.to_be_bytes().to_vec();
    v.extend_from_slice(&kind.to_be_bytes());
    v.extend_from_slice(&req.to_be_bytes());
    v
}

#[tokio::test]
async fn before_login_only_small_frames_are_read() {
    let server = TestServer::start().await;
    let (alice, _) = server.user("alice").await;
    let (_b, bob) = server.user("bob").await;
    let mut raw = Raw::connect(&server.tcp).await;
    raw.hello().await;
    // A 256 KiB frame announced before login is refused at once.
    raw.send(&header(256 * 1024, 3, 2)).await;
    let frames = raw.until_closed().await;
    match &frames[0] {
        ServerFrame::Error(e) => {
            assert_eq!(e.code(), pb::ErrorCode::FrameTooLarge);
            assert!(e.message.contains("4096") && e.message.contains("before login"));
        }
        other => panic!("{other:?}"),
    }
    // After login the same size is fine.
    let big = "y".repeat(60 * 1024);
    alice.send_text(bob.user_id, "big", &big).await.unwrap();

    // A WebSocket client may not send much before it logs in either: past
    // its 32 KiB it hears FRAME_TOO_LARGE, then Disconnect, then a close
    // frame saying why (1009, too big).
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws.as_str())
        .await
        .unwrap();
    let _ = ws.send(Message::Binary(vec![7u8; 64 * 1024].into())).await;
    let (mut frames, mut close) = (Vec::new(), None);
    tokio::time::timeout(WAIT, async {
        while let Some(Ok(m)) = ws.next().await {
            match m {
                Message::Binary(b) => {
                    let mut buf = bytes::BytesMut::from(&b[..]);
                    let f = natter_proto::FrameDecoder::new(1 << 20)
                        .decode(&mut buf)
                        .unwrap()
                        .expect("one whole frame per message");
                    frames.push(ServerFrame::decode(&f).unwrap());
                }
                Message::Close(c) => close = c,
                _ => {}
            }
        }
    })
    .await
    .expect("the WebSocket is closed, not left to grow");
    match &frames[..] {
        [ServerFrame::Error(e), ServerFrame::Disconnect(d)] => {
            assert_eq!(e.code(), pb::ErrorCode::FrameTooLarge);
            assert!(e.message.contains("32768") && e.message.contains("before login"));
            assert_eq!(d.reason(), pb::DisconnectReason::ProtocolError);
        }
        other => panic!("{other:?}"),
    }
    let close = close.expect("a close frame");
    assert_eq!(close.code, CloseCode::Size);
    assert!(close.reason.contains("before login"), "{close:?}");
}

#[tokio::test]
async fn a_typing_flood_reaches_each_member_once_per_interval() {
    let server = TestServer::start_with(|c| c.social.typing_max_members = 8).await;
    let (alice, _) = server.user("alice").await;
    let (mut members, ids) = server.users("member", 5).await;
    let small = alice
        .create_group(
            pb::ConversationKind::Group,
            "small",
            pb::JoinPolicy::Open,
            ids.clone(),
        )
        .await
        .unwrap()
        .conversation_id;
    for _ in 0..200 {
        alice.typing(small).await.unwrap();
    }
    for m in members.iter_mut() {
        let typing = drain_pushes(m, Duration::from_millis(300))
            .await
            .into_iter()
            .filter(|f| matches!(f, ServerFrame::TypingPush(_)))
            .count();
        assert_eq!(typing, 1, "one push per member for 200 requests");
    }
    // In a conversation above typing_max_members nobody hears typing.
    let mut more = ids.clone();
    for i in 0..5 {
        more.push(server.user(&format!("extra{i}")).await.1.user_id);
    }
    let big = alice
        .create_group(
            pb::ConversationKind::Group,
            "big",
            pb::JoinPolicy::Open,
            more,
        )
        .await
        .unwrap()
        .conversation_id;
    alice.typing(big).await.unwrap();
    let heard = drain_pushes(&mut members[0], Duration::from_millis(300)).await;
    assert!(!heard
        .iter()
        .any(|f| matches!(f, ServerFrame::TypingPush(_))));
}

#[tokio::test]
async fn the_send_bucket_is_kept_across_reconnects() {
    let server = TestServer::start_with(|c| {
        c.limits.send_rate_per_sec = 0.01;
        c.limits.send_burst = 5.0;
    })
    .await;
    let (alice, _) = server.user("alice").await;
    let (_b, bob) = server.user("bob").await;
    for i in 0..5 {
        alice
            .send_text(bob.user_id, &format!("m{i}"), "hi")
            .await
            .unwrap();
    }
    assert_eq!(
        code(alice.send_text(bob.user_id, "m5", "hi").await),
        pb::ErrorCode::RateLimited
    );
    drop(alice);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (again, _) = server.device("alice", "d2").await;
    assert_eq!(
        code(again.send_text(bob.user_id, "m6", "hi").await),
        pb::ErrorCode::RateLimited,
        "reconnecting does not refill the burst"
    );
}

#[tokio::test]
async fn password_changes_are_under_the_accounts_back_off() {
    let server = TestServer::start_with(|c| {
        c.throttle.failed_login_free_per_user = 3;
        c.throttle.failed_login_backoff_ms = 60_000;
    })
    .await;
    let (alice, _) = server.user("alice").await;
    for i in 0..3 {
        assert_eq!(
            code(
                alice
                    .change_password(&format!("guess {i}"), "new password")
                    .await
            ),
            pb::ErrorCode::BadCredentials
        );
    }
    assert_eq!(
        code(alice.change_password(PASSWORD, "new password").await),
        pb::ErrorCode::RateLimited,
        "a stolen session cannot guess the password at the request rate"
    );
}

#[tokio::test]
async fn ids_beyond_what_is_stored_are_not_found_not_server_errors() {
    let server = TestServer::start().await;
    let (alice, _) = server.user("alice").await;
    assert_eq!(code(alice.group(u64::MAX).await), pb::ErrorCode::NotFound);
    assert_eq!(
        code(alice.join_group(u64::MAX, "", "x").await),
        pb::ErrorCode::NotFound
    );
    let page = alice.sync_page(vec![], u64::MAX, 10).await.unwrap();
    assert!(page.conversations.is_empty() && !page.has_more);
}
