//! Bad input and hostile clients: each gets its documented outcome, nothing
//! stored is lost, and the server keeps serving everyone else.

mod common;

use bytes::BytesMut;
use common::*;
use futures_util::{SinkExt, StreamExt};
use natter_client::{pb, Inbox, ServerFrame};
use natter_proto::ClientFrame;

fn header(len: u32, kind: u16, req: u32) -> Vec<u8> {
    let mut v = len.to_be_bytes().to_vec();
    v.extend_from_slice(&kind.to_be_bytes());
    v.extend_from_slice(&req.to_be_bytes());
    v
}

async fn still_serving(server: &TestServer) {
    let c = server.client().await;
    c.ping().await.expect("the server still answers");
}

#[tokio::test]
async fn garbage_bytes_get_an_error_and_a_close() {
    let server = TestServer::start().await;
    // An HTTP request on the frame port: the "length" is absurd.
    let mut raw = Raw::connect(&server.tcp).await;
    raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let frames = raw.until_closed().await;
    assert_eq!(error_code(&frames[0]), Some(pb::ErrorCode::FrameTooLarge));
    assert_eq!(
        disconnect_reason(&frames),
        Some(pb::DisconnectReason::ProtocolError)
    );
    // A plausible length with a type nobody knows, before Hello.
    let mut raw = Raw::connect(&server.tcp).await;
    let mut bytes = header(8, 0xBEEF, 7);
    bytes.extend_from_slice(b"zz");
    raw.send(&bytes).await;
    let frames = raw.until_closed().await;
    assert_eq!(error_code(&frames[0]), Some(pb::ErrorCode::UnknownType));
    assert_eq!(
        disconnect_reason(&frames),
        Some(pb::DisconnectReason::ProtocolError)
    );
    // A length too short to hold the header.
    let mut raw = Raw::connect(&server.tcp).await;
    raw.send(&3u32.to_be_bytes()).await;
    let frames = raw.until_closed().await;
    assert_eq!(error_code(&frames[0]), Some(pb::ErrorCode::Malformed));
    still_serving(&server).await;
}

#[tokio::test]
async fn first_frame_must_be_hello_and_versions_must_overlap() {
    let server = TestServer::start().await;
    let mut raw = Raw::connect(&server.tcp).await;
    raw.request(5, ClientFrame::Ping(pb::Ping { client_time_ms: 1 }))
        .await;
    let frames = raw.until_closed().await;
    assert_eq!(error_code(&frames[0]), Some(pb::ErrorCode::Protocol));
    assert_eq!(
        disconnect_reason(&frames),
        Some(pb::DisconnectReason::ProtocolError)
    );

    let mut raw = Raw::connect(&server.tcp).await;
    raw.request(
        1,
        ClientFrame::Hello(pb::Hello {
            min_version: 2,
            max_version: 5,
            client_name: "future".into(),
        }),
    )
    .await;
    let frames = raw.until_closed().await;
    assert_eq!(
        error_code(&frames[0]),
        Some(pb::ErrorCode::UnsupportedVersion)
    );

    // A newer client that also speaks 1 gets 1.
    let mut raw = Raw::connect(&server.tcp).await;
    raw.request(
        1,
        ClientFrame::Hello(pb::Hello {
            min_version: 1,
            max_version: 9,
            client_name: "newer".into(),
        }),
    )
    .await;
    match raw.frame().await {
        Some((1, ServerFrame::HelloOk(h))) => {
            assert_eq!(h.version, 1);
            assert!(h.max_frame_bytes >= 1024 && h.max_message_bytes > 0 && h.auth_timeout_ms > 0);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn oversized_frame_is_refused_before_it_is_read() {
    let server = TestServer::start_with(|c| {
        c.limits.max_frame_bytes = 65_536;
        c.limits.max_message_bytes = 1024;
    })
    .await;
    let (_c, login) = server.user("alice").await;
    let mut raw = Raw::connect(&server.tcp).await;
    raw.hello().await;
    raw.resume(&login.token).await;
    // Announce 1 MiB; send only the header.
    raw.send(&header(1 << 20, 8, 3)).await;
    let frames = raw.until_closed().await;
    match &frames[0] {
        ServerFrame::Error(e) => {
            assert_eq!(e.code(), pb::ErrorCode::FrameTooLarge);
            assert!(e.message.contains("65536"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        disconnect_reason(&frames),
        Some(pb::DisconnectReason::ProtocolError)
    );
    still_serving(&server).await;
}

#[tokio::test]
async fn unknown_types_and_malformed_payloads_are_answered_and_survived() {
    let server = TestServer::start().await;
    let (_c, login) = server.user("alice").await;
    let mut raw = Raw::connect(&server.tcp).await;
    raw.hello().await;
    raw.resume(&login.token).await;
    let mut unknown = header(6, 4242, 3);
    // Payload of a Send that is not valid protobuf.
    let mut bad = header(6 + 3, 8, 4);
    bad.extend_from_slice(&[0xff, 0xff, 0xff]);
    unknown.extend_from_slice(&bad);
    raw.send(&unknown).await;
    let (id, f) = raw.frame().await.unwrap();
    assert_eq!((id, error_code(&f)), (3, Some(pb::ErrorCode::UnknownType)));
    let (id, f) = raw.frame().await.unwrap();
    assert_eq!((id, error_code(&f)), (4, Some(pb::ErrorCode::Malformed)));
    raw.request(5, ClientFrame::Ping(pb::Ping { client_time_ms: 9 }))
        .await;
    match raw.frame().await {
        Some((5, ServerFrame::Pong(p))) => assert_eq!(p.client_time_ms, 9),
        other => panic!("the connection should go on: {other:?}"),
    }
}

#[tokio::test]
async fn frame_cut_midway_loses_nothing_and_harms_nobody() {
    let server = TestServer::start_with(|c| c.session.auth_timeout_ms = 500).await;
    let (alice, _) = server.user("alice").await;
    let (_bob, bob) = server.user("bob").await;
    alice
        .send_text(bob.user_id, "before", "before the cut")
        .await
        .unwrap();

    let mut raw = Raw::connect(&server.tcp).await;
    raw.hello().await;
    let login = ClientFrame::Login(pb::Login {
        username: "alice".into(),
        password: PASSWORD.into(),
        device_id: "cut".into(),
    });
    let bytes = login.to_bytes(2);
    // Half a frame, then the peer vanishes.
    raw.send(&bytes[..bytes.len() / 2]).await;
    drop(raw);
    // Half a frame, then silence: the auth timeout closes it.
    let mut stalled = Raw::connect(&server.tcp).await;
    stalled.hello().await;
    stalled.send(&bytes[..bytes.len() - 1]).await;
    let frames = stalled.until_closed().await;
    assert_eq!(
        disconnect_reason(&frames),
        Some(pb::DisconnectReason::AuthTimeout)
    );

    alice
        .send_text(bob.user_id, "after", "after the cut")
        .await
        .unwrap();
    let (fresh, _) = server.device("bob", "fresh").await;
    let got = Inbox::default().sync(&fresh, 100).await.unwrap();
    assert_eq!(
        got.iter().map(text).collect::<Vec<_>>(),
        vec!["before the cut", "after the cut"]
    );
}

#[tokio::test]
async fn a_reader_that_stops_reading_is_cut_off_and_loses_nothing() {
    let server = TestServer::start_with(|c| c.limits.outbound_queue = 8).await;
    let (alice, _) = server.user("alice").await;
    let (_b, bob) = server.user("bob").await;
    let mut stuck = Raw::connect(&server.tcp).await;
    stuck.hello().await;
    stuck
        .request(
            2,
            ClientFrame::Login(pb::Login {
                username: "bob".into(),
                password: PASSWORD.into(),
                device_id: "stuck".into(),
            }),
        )
        .await;
    assert!(matches!(
        stuck.frame().await,
        Some((2, ServerFrame::LoginOk(_)))
    ));
    // bob's "stuck" device reads nothing more while alice sends ~24 MiB.
    let big = "x".repeat(60 * 1024);
    let total = 400;
    for i in 0..total {
        alice
            .send_text(bob.user_id, &format!("big{i}"), &big)
            .await
            .expect("the sender is never held back");
    }
    // The server gave up on the stuck reader: its stream ends.
    let mut buf = BytesMut::new();
    loop {
        use tokio::io::AsyncReadExt;
        let n = tokio::time::timeout(WAIT, stuck.stream.read_buf(&mut buf))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.clear();
    }
    let (_, metrics) = http_get(server.http, "/metrics").await;
    // Every series exists from start-up: the count is what says it was hit.
    let hits = metric(
        &metrics,
        "natter_limit_hits_total{limit=\"outbound_queue\"}",
    );
    assert!(hits.unwrap_or(0.0) >= 1.0, "{metrics}");
    // Reconnecting, it pulls every message from the store.
    let (again, _) = server.device("bob", "stuck").await;
    let got = Inbox::default().sync(&again, 500).await.unwrap();
    assert_eq!(got.len(), total);
    assert!(got.iter().enumerate().all(|(i, m)| m.seq == i as u64 + 1));
}

#[tokio::test]
async fn send_and_request_floods_are_rate_limited() {
    let server = TestServer::start_with(|c| {
        c.limits.send_rate_per_sec = 1.0;
        c.limits.send_burst = 5.0;
        c.limits.request_rate_per_sec = 1.0;
        c.limits.request_burst = 30.0;
    })
    .await;
    let (alice, _) = server.user("alice").await;
    let (_b, bob) = server.user("bob").await;
    for i in 0..5 {
        alice
            .send_text(bob.user_id, &format!("ok{i}"), "hi")
            .await
            .unwrap();
    }
    match alice
        .send_text(bob.user_id, "flood", "hi")
        .await
        .unwrap_err()
    {
        natter_client::ClientError::Server {
            code,
            retry_after_ms,
            ..
        } => {
            assert_eq!(code, pb::ErrorCode::RateLimited);
            assert!(
                retry_after_ms > 0 && retry_after_ms <= 1000,
                "{retry_after_ms}"
            );
        }
        e => panic!("{e}"),
    }
    let mut limited = 0;
    for _ in 0..40 {
        if let Err(e) = alice.ping().await {
            assert_eq!(e.code(), Some(pb::ErrorCode::RateLimited));
            limited += 1;
        }
    }
    assert!(limited > 0, "a request flood hits the limit");
    // The refused message was not stored.
    let got = Inbox::default()
        .sync(&server.device("bob", "x").await.0, 100)
        .await
        .unwrap();
    assert_eq!(got.len(), 5);
}

#[tokio::test]
async fn connections_past_the_limit_are_told_the_server_is_full() {
    let server = TestServer::start_with(|c| c.limits.max_connections = 2).await;
    // Logged in: one that had not would make room for a newcomer.
    let (a, _) = server.user("alice").await;
    let (_b, _) = server.user("bob").await;
    let mut third = Raw::connect(&server.tcp).await;
    let frames = third.until_closed().await;
    assert_eq!(
        disconnect_reason(&frames),
        Some(pb::DisconnectReason::ServerFull)
    );
    drop(a);
    // The slot comes back once a connection ends.
    let mut ok = None;
    for _ in 0..50 {
        if let Ok(c) = natter_client::Client::connect(&server.tcp).await {
            ok = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    ok.expect("a freed slot is reusable").ping().await.unwrap();
}

#[tokio::test]
async fn a_session_turned_away_as_busy_comes_back_when_told() {
    use natter_client::{ClientError, Route, Session, SessionOptions};
    use std::time::Duration;
    let server = TestServer::start_with(|c| {
        c.limits.max_connections = 2;
        c.shutdown.reconnect_after_ms = 200;
    })
    .await;
    let (_alice, login) = server.user("alice").await;
    // Logged in: one that had not would be evicted to let the Resume in.
    let (second, _) = server.user("bob").await;

    // Told to come back, but asked for one try: the refusal is the answer.
    let once = SessionOptions {
        busy_for: Duration::ZERO,
        ..SessionOptions::default()
    };
    match Session::open(
        Route::Servers(vec![server.tcp.clone()]),
        &login.token,
        "d1",
        once,
    )
    .await
    {
        Err(ClientError::Closed(Some(d))) => {
            assert_eq!(d.reason(), pb::DisconnectReason::ServerFull);
            assert_eq!(d.reconnect_after_ms, 200);
        }
        Err(e) => panic!("expected SERVER_FULL, got {e}"),
        Ok(_) => panic!("a full server let a third connection in"),
    }

    // Allowed to wait: it comes back after the pause it was told, and gets
    // in once a slot is free.
    let patient = SessionOptions {
        busy_for: Duration::from_secs(20),
        ..SessionOptions::default()
    };
    let (tcp, token) = (server.tcp.clone(), login.token.clone());
    let opening = natter_testkit::spawn(async move {
        Session::open(Route::Servers(vec![tcp]), &token, "d1", patient).await
    });
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(!opening.is_finished(), "no slot is free yet");
    drop(second);
    let session = tokio::time::timeout(Duration::from_secs(15), opening)
        .await
        .expect("in once a slot is free")
        .unwrap()
        .expect("the session opens");
    assert!(
        session.busy_refusals() >= 1,
        "it was turned away before it got in"
    );
    session.client().ping().await.unwrap();
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads a WebSocket to its end: the frames it carried and its close frame.
async fn until_ws_closed(
    ws: &mut Ws,
) -> (
    Vec<ServerFrame>,
    Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>,
) {
    use tokio_tungstenite::tungstenite::Message;
    let (mut frames, mut close) = (Vec::new(), None);
    tokio::time::timeout(WAIT, async {
        while let Some(Ok(m)) = ws.next().await {
            match m {
                Message::Binary(b) => {
                    let mut buf = BytesMut::from(&b[..]);
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
    .expect("the WebSocket is closed");
    (frames, close)
}

#[tokio::test]
async fn websocket_text_messages_are_a_protocol_error() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let server = TestServer::start().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws.as_str())
        .await
        .unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        "hello".into(),
    ))
    .await
    .unwrap();
    let (frames, close) = until_ws_closed(&mut ws).await;
    assert_eq!(
        disconnect_reason(&frames),
        Some(pb::DisconnectReason::ProtocolError)
    );
    // The close frame says it again: 1008, policy, with the reason.
    let close = close.expect("a close frame");
    assert_eq!(close.code, CloseCode::Policy);
    assert!(close.reason.contains("binary"), "{close:?}");
    still_serving(&server).await;
}

/// A logged-in WebSocket client that sends a message past the frame limit
/// hears FRAME_TOO_LARGE and a close frame with 1009 (too big); one still
/// connected when the server shuts down hears GOING_AWAY and 1001.
#[tokio::test]
async fn websocket_close_frames_say_too_big_and_going_away() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::Message;
    let server = TestServer::start().await;
    let (_alice, _) = server.user("alice").await;
    let connect = || tokio_tungstenite::connect_async(server.ws.as_str());
    let (mut big, _) = connect().await.unwrap();
    let mut login = Vec::new();
    for (id, f) in [
        (
            1,
            ClientFrame::Hello(pb::Hello {
                min_version: 1,
                max_version: 1,
                client_name: "ws".into(),
            }),
        ),
        (
            2,
            ClientFrame::Login(pb::Login {
                username: "alice".into(),
                password: PASSWORD.into(),
                device_id: "w".into(),
            }),
        ),
    ] {
        login.extend_from_slice(&f.to_bytes(id));
    }
    big.send(Message::Binary(login.into())).await.unwrap();
    // Past limits.max_frame_bytes (256 KiB), in one message.
    big.send(Message::Binary(vec![7u8; 300 * 1024].into()))
        .await
        .unwrap();
    let (frames, close) = until_ws_closed(&mut big).await;
    assert!(
        matches!(frames.get(1), Some(ServerFrame::LoginOk(_))),
        "{frames:?}"
    );
    assert!(
        frames
            .iter()
            .any(|f| error_code(f) == Some(pb::ErrorCode::FrameTooLarge)),
        "{frames:?}"
    );
    let close = close.expect("a close frame");
    assert_eq!(close.code, CloseCode::Size);
    assert!(close.reason.contains("exceeds"), "{close:?}");

    let (mut waiting, _) = connect().await.unwrap();
    waiting
        .send(Message::Binary(
            ClientFrame::Hello(pb::Hello {
                min_version: 1,
                max_version: 1,
                client_name: "ws".into(),
            })
            .to_bytes(1)
            .to_vec()
            .into(),
        ))
        .await
        .unwrap();
    let stopping = natter_testkit::spawn(server.stop());
    let (frames, close) = until_ws_closed(&mut waiting).await;
    assert_eq!(
        disconnect_reason(&frames),
        Some(pb::DisconnectReason::GoingAway)
    );
    let close = close.expect("a close frame");
    assert_eq!(close.code, CloseCode::Away);
    assert!(close.reason.contains("shutting down"), "{close:?}");
    stopping.await.unwrap();
}
