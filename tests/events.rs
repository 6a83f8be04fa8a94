//! Live events over HTTP (`GET /v1/events`) against a real server over a
//! real socket, read with a real HTTP client: pushes from frame and HTTP
//! clients arrive, the session counts as online, a reconnect syncs and
//! loses nothing, logout, a second stream of the session and shutdown end
//! it with a reason, a stream that falls behind is ended, and a request
//! without a valid token gets the error shape.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

/// One server-sent event.
#[derive(Debug)]
struct Ev {
    event: String,
    id: Option<String>,
    data: Value,
}

/// An open event stream, read with hyper.
struct Stream {
    body: Incoming,
    buf: String,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        // The connection goes with the stream, as a client that closes it.
        self.driver.abort();
    }
}

/// `GET /v1/events`: the open stream, or the status and JSON of a refusal.
async fn open(
    addr: SocketAddr,
    token: Option<&str>,
    last_event_id: Option<&str>,
) -> Result<Stream, (u16, Value)> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let driver = natter_testkit::spawn(async move {
        let _ = conn.await;
    });
    let mut req = hyper::Request::get("http://x/v1/events")
        .header("host", "x")
        .header("accept", "text/event-stream")
        // A stream must not wait for a compressor's block to fill.
        .header("accept-encoding", "gzip");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let resp = h1
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    if status != 200 {
        let gzipped = resp.headers().get("content-encoding").is_some();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        driver.abort();
        let mut json = Vec::new();
        if gzipped {
            use std::io::Read;
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut json)
                .unwrap();
        } else {
            json = body.to_vec();
        }
        return Err((status, serde_json::from_slice(&json).unwrap_or(Value::Null)));
    }
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    assert!(resp.headers().get("content-encoding").is_none());
    Ok(Stream {
        body: resp.into_body(),
        buf: String::new(),
        driver,
    })
}

impl Stream {
    /// The next event (comments skipped), or `None` when the stream ends.
    async fn next(&mut self) -> Option<Ev> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (None, None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if let Some(event) = event {
                    let data = serde_json::from_str(&data).unwrap();
                    return Some(Ev { event, id, data });
                }
                continue;
            }
            let frame = tokio::time::timeout(WAIT, self.body.frame())
                .await
                .expect("an event within the wait");
            match frame {
                Some(Ok(f)) => {
                    if let Ok(bytes) = f.into_data() {
                        self.buf.push_str(std::str::from_utf8(&bytes).unwrap());
                    }
                }
                _ => return None,
            }
        }
    }

    /// The next event named `name`, skipping others.
    async fn next_named(&mut self, name: &str) -> Ev {
        loop {
            match self.next().await {
                Some(e) if e.event == name => return e,
                Some(_) => continue,
                None => panic!("the stream ended before a `{name}` event"),
            }
        }
    }
}

/// One JSON request with a real client: (status, body or Null).
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let (status, body, _) = common::http::call(addr, method, path, token, body).await;
    (status, body)
}

/// Registers `name` over HTTP and logs in on `device`: (user id, token).
async fn http_user(addr: SocketAddr, name: &str, device: &str) -> (u64, String) {
    let (st, r) = call(
        addr,
        "POST",
        "/v1/register",
        None,
        Some(json!({"username": name, "password": PASSWORD})),
    )
    .await;
    assert_eq!(st, 201, "{r}");
    login(addr, name, device).await
}

async fn login(addr: SocketAddr, name: &str, device: &str) -> (u64, String) {
    let (st, l) = call(
        addr,
        "POST",
        "/v1/login",
        None,
        Some(json!({"username": name, "password": PASSWORD, "device_id": device})),
    )
    .await;
    assert_eq!(st, 200, "{l}");
    (
        l["user_id"].as_u64().unwrap(),
        l["token"].as_str().unwrap().to_owned(),
    )
}

/// Whether `friend` is online in `token`'s friend list.
async fn online(addr: SocketAddr, token: &str, friend: u64) -> bool {
    let (st, f) = call(addr, "GET", "/v1/friends", Some(token), None).await;
    assert_eq!(st, 200, "{f}");
    f["friends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["user_id"] == friend)
        .map(|f| f["online"] == true)
        .unwrap()
}

/// Waits until `friend`'s presence in `token`'s list is `want`.
async fn until_online(addr: SocketAddr, token: &str, friend: u64, want: bool) {
    for _ in 0..200 {
        if online(addr, token, friend).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("user {friend} never became online={want}");
}

#[tokio::test]
async fn pushes_from_frames_and_http_arrive_and_the_stream_counts_as_online() {
    let server = TestServer::start().await;
    let a = server.http;
    let (alice, alice_token) = http_user(a, "alice", "web").await;
    let (bob_frames, bob_login) = server.user("bob").await;
    let bob = bob_login.user_id;
    let (carol, carol_token) = http_user(a, "carol", "web").await;

    let mut events = open(a, Some(&alice_token), None).await.unwrap();
    let first = events.next().await.unwrap();
    assert_eq!(
        (first.event.as_str(), &first.data),
        ("sync", &json!({"reason": "connected"}))
    );

    // A message over frames arrives in the REST message shape, with its id.
    let ack = bob_frames.send_text(alice, "b1", "hi alice").await.unwrap();
    let m = events.next_named("message").await;
    assert_eq!(
        m.id.as_deref(),
        Some(format!("{}.{}", ack.conversation_id, ack.seq).as_str())
    );
    assert_eq!(m.data["sender_id"], bob);
    assert_eq!(m.data["conversation_id"], ack.conversation_id);
    assert_eq!(
        m.data["body"],
        json!({"kind": "TEXT", "content": "hi alice"})
    );
    assert_eq!(m.data["client_msg_id"], "b1");

    // Typing and read receipts, as a frame connection hears them.
    bob_frames.typing(ack.conversation_id).await.unwrap();
    let t = events.next_named("typing").await;
    assert_eq!(
        t.data,
        json!({"conversation_id": ack.conversation_id, "user_id": bob})
    );
    let (st, _) = call(
        a,
        "POST",
        "/v1/messages",
        Some(&alice_token),
        Some(json!({"client_msg_id": "a1", "to_user_id": bob,
            "body": {"kind": "TEXT", "content": "hello bob"}})),
    )
    .await;
    assert_eq!(st, 200);
    bob_frames.mark_read(ack.conversation_id, 2).await.unwrap();
    let r = events.next_named("read").await;
    assert_eq!(
        r.data,
        json!({"conversation_id": ack.conversation_id, "user_id": bob, "seq": 2})
    );

    // A friend request over HTTP; once friends, the stream is Alice online.
    let (st, req) = call(
        a,
        "POST",
        "/v1/friends/requests",
        Some(&carol_token),
        Some(json!({"to_user_id": alice, "message": "it is carol"})),
    )
    .await;
    assert_eq!(st, 200, "{req}");
    let f = events.next_named("friend_request").await;
    assert_eq!(f.data["from_user_id"], carol);
    assert_eq!(f.data["message"], "it is carol");
    assert_eq!(f.data["status"], "PENDING");
    let (st, _) = call(
        a,
        "POST",
        &format!("/v1/friends/requests/{}", req["id"]),
        Some(&alice_token),
        Some(json!({"accept": true})),
    )
    .await;
    assert_eq!(st, 200);
    assert!(online(a, &carol_token, alice).await);

    // Carol's own stream: Alice's friends hear her go when hers closes.
    let mut carols = open(a, Some(&carol_token), None).await.unwrap();
    carols.next_named("sync").await;
    drop(events);
    until_online(a, &carol_token, alice, false).await;
    let p = carols.next_named("presence").await;
    assert_eq!(p.data, json!({"user_id": alice, "online": false}));
}

#[tokio::test]
async fn a_reconnect_starts_with_sync_and_nothing_sent_meanwhile_is_lost() {
    let server = TestServer::start().await;
    let a = server.http;
    let (alice, alice_token) = http_user(a, "alice", "web").await;
    let (bob_frames, _) = server.user("bob").await;

    let mut events = open(a, Some(&alice_token), None).await.unwrap();
    events.next_named("sync").await;
    bob_frames.send_text(alice, "b1", "one").await.unwrap();
    let m = events.next_named("message").await;
    let last_id = m.id.unwrap();
    drop(events);

    // Sent while no stream is open.
    let missed = bob_frames.send_text(alice, "b2", "two").await.unwrap();

    let mut events = open(a, Some(&alice_token), Some(&last_id)).await.unwrap();
    let first = events.next().await.unwrap();
    assert_eq!(
        (first.event.as_str(), &first.data),
        (
            "sync",
            &json!({"reason": "resumed", "last_event_id": last_id})
        )
    );
    // What the client does on `sync`: sync from the cursors it holds.
    let (conv, seq) = last_id.split_once('.').unwrap();
    let (st, page) = call(
        a,
        "POST",
        "/v1/sync",
        Some(&alice_token),
        Some(
            json!({"cursors": [{"conversation_id": conv.parse::<u64>().unwrap(),
            "seq": seq.parse::<u64>().unwrap()}]}),
        ),
    )
    .await;
    assert_eq!(st, 200, "{page}");
    let got: Vec<(u64, &str)> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["seq"].as_u64().unwrap(),
                m["body"]["content"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, [(missed.seq, "two")]);

    // And from then on, live.
    bob_frames.send_text(alice, "b3", "three").await.unwrap();
    let m = events.next_named("message").await;
    assert_eq!(m.data["body"]["content"], "three");
    assert_eq!(m.data["seq"], missed.seq + 1);
}

#[tokio::test]
async fn logout_and_a_second_stream_of_the_session_end_the_stream_with_why() {
    let server = TestServer::start().await;
    let a = server.http;
    let (_, token) = http_user(a, "alice", "web").await;

    // A session lives on one connection: a second stream replaces the first.
    let mut first = open(a, Some(&token), None).await.unwrap();
    first.next_named("sync").await;
    let mut second = open(a, Some(&token), None).await.unwrap();
    second.next_named("sync").await;
    let d = first.next_named("disconnect").await;
    assert_eq!(d.data["reason"], "REPLACED", "{:?}", d.data);
    assert!(first.next().await.is_none(), "the stream ends after it");

    let (st, _) = call(a, "POST", "/v1/logout", Some(&token), None).await;
    assert_eq!(st, 204);
    let d = second.next_named("disconnect").await;
    assert_eq!(d.data["reason"], "LOGGED_OUT", "{:?}", d.data);
    assert!(second.next().await.is_none(), "the stream ends after it");

    // The ended session cannot open another.
    let (st, e) = open(a, Some(&token), None).await.err().unwrap();
    assert_eq!(
        (st, e["code"].as_str()),
        (401, Some("TOKEN_INVALID")),
        "{e}"
    );
}

#[tokio::test]
async fn a_logout_over_frames_of_another_session_ends_its_stream() {
    let server = TestServer::start().await;
    let a = server.http;
    let (_, token) = http_user(a, "alice", "web").await;
    let mut events = open(a, Some(&token), None).await.unwrap();
    events.next_named("sync").await;
    // The same user on a frame connection ends the web session by its token.
    let (phone, _) = server.device("alice", "phone").await;
    phone.logout_with(vec![token.clone()]).await.unwrap();
    let d = events.next_named("disconnect").await;
    assert_eq!(d.data["reason"], "LOGGED_OUT", "{:?}", d.data);
    assert!(events.next().await.is_none());
}

#[tokio::test]
async fn shutdown_ends_the_stream_as_going_away() {
    let server = TestServer::start().await;
    let (_, token) = http_user(server.http, "alice", "web").await;
    let mut events = open(server.http, Some(&token), None).await.unwrap();
    events.next_named("sync").await;
    let stopping = natter_testkit::spawn(server.stop());
    let d = events.next_named("disconnect").await;
    assert_eq!(d.data["reason"], "GOING_AWAY", "{:?}", d.data);
    assert!(d.data["reconnect_after_ms"].as_u64().unwrap() > 0);
    assert!(events.next().await.is_none());
    // The node drains without waiting for the stream's client.
    tokio::time::timeout(WAIT, stopping).await.unwrap().unwrap();
}

/// In a cluster the stream's node is in the directory: a message sent on
/// another node is routed to it, and so is a logout made there. Skips
/// (saying why) without NATTER_TEST_POSTGRES_URL and NATTER_TEST_REDIS_URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_a_cluster_events_from_another_node_reach_the_stream() {
    let Some((pg, redis)) =
        common::cluster::services("in_a_cluster_events_from_another_node_reach_the_stream")
    else {
        return;
    };
    let c = common::cluster::LocalCluster::start(&pg, &redis, 2, &[]).await;
    let (here, there) = (c.nodes[0].http, c.nodes[1].http);
    let (alice, token) = http_user(here, "alice", "web").await;
    let (_, bob_token) = http_user(there, "bob", "web").await;
    let mut events = open(here, Some(&token), None).await.unwrap();
    events.next_named("sync").await;

    let (st, ack) = call(
        there,
        "POST",
        "/v1/messages",
        Some(&bob_token),
        Some(json!({"client_msg_id": "b1", "to_user_id": alice,
            "body": {"kind": "TEXT", "content": "from the other node"}})),
    )
    .await;
    assert_eq!(st, 200, "{ack}");
    let m = events.next_named("message").await;
    assert_eq!(m.data["body"]["content"], "from the other node");
    assert_eq!(m.data["seq"], ack["seq"]);

    let (st, _) = call(there, "POST", "/v1/logout", Some(&token), None).await;
    assert_eq!(st, 204);
    let d = events.next_named("disconnect").await;
    assert_eq!(d.data["reason"], "LOGGED_OUT", "{:?}", d.data);
}

#[tokio::test]
async fn a_request_without_a_valid_token_gets_401_in_the_error_shape() {
    let server = TestServer::start().await;
    let (st, e) = open(server.http, None, None).await.err().unwrap();
    assert_eq!(
        (st, e["code"].as_str()),
        (401, Some("NOT_AUTHENTICATED")),
        "{e}"
    );
    assert!(e["message"].is_string(), "{e}");
    let (st, e) = open(server.http, Some("not-a-token"), None)
        .await
        .err()
        .unwrap();
    assert_eq!(
        (st, e["code"].as_str()),
        (401, Some("TOKEN_INVALID")),
        "{e}"
    );
}

#[tokio::test]
async fn a_stream_that_falls_behind_is_ended_as_a_slow_consumer() {
    let server = TestServer::start_with(|c| c.limits.outbound_queue = 8).await;
    let a = server.http;
    let (alice, token) = http_user(a, "alice", "web").await;
    let (bob_frames, _) = server.user("bob").await;
    let mut events = open(a, Some(&token), None).await.unwrap();
    events.next_named("sync").await;
    // Alice reads nothing while Bob sends more than the sockets between
    // them hold; her queue fills and the stream is ended.
    let big = "x".repeat(8 * 1024);
    let mut sent = 0;
    for i in 0..2000 {
        bob_frames
            .send_text(alice, &format!("m{i}"), &big)
            .await
            .unwrap();
        sent += 1;
        if i % 50 == 49 && metric_slow(&server).await {
            break;
        }
    }
    let mut got = 0;
    let end = loop {
        match events.next().await {
            Some(e) if e.event == "message" => got += 1,
            Some(e) if e.event == "disconnect" => break e,
            Some(_) => {}
            None => panic!("the stream ended without saying why"),
        }
    };
    assert_eq!(end.data["reason"], "SLOW_CONSUMER", "{:?}", end.data);
    assert!(got < sent, "{got} of {sent} arrived: nothing fell behind");
    assert!(events.next().await.is_none());
}

/// Whether a queue has filled (only an event stream's can in this file).
async fn metric_slow(server: &TestServer) -> bool {
    let (_, page) = http_get(server.http, "/metrics").await;
    metric(&page, "natter_limit_hits_total{limit=\"outbound_queue\"}").unwrap_or(0.0) > 0.0
}

/// On a full node an event stream is a login like any other: it takes the
/// place of a connection that has not logged in (which hears SERVER_FULL),
/// and is refused only once every place is logged in.
#[tokio::test]
async fn a_stream_on_a_full_node_takes_the_place_of_one_not_logged_in() {
    let server = TestServer::start_with(|c| c.limits.max_connections = 2).await;
    let (_, token) = http_user(server.http, "alice", "web").await;
    let (_bob, _) = server.user("bob").await;
    let mut waiting = Raw::connect(&server.tcp).await;
    waiting.hello().await;
    let mut events = open(server.http, Some(&token), None).await.unwrap();
    events.next_named("sync").await;
    let frames = waiting.until_closed().await;
    assert_eq!(
        disconnect_reason(&frames),
        Some(natter_client::pb::DisconnectReason::ServerFull)
    );
    // Both places logged in: the next stream is refused.
    let (_, other) = login(server.http, "alice", "web2").await;
    let (status, _) = open(server.http, Some(&other), None).await.err().unwrap();
    assert_eq!(status, 503);
}
