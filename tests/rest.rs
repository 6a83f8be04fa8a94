//! The REST API over a real socket: accounts, messaging, the error shape,
//! the limits it shares with the frame protocol, and its OpenAPI document.
#![allow(clippy::unwrap_used)]

mod common;

use common::http::{call, register_and_login};
use common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;

/// Raw bytes to the HTTP port; the status line's code and the body.
async fn raw(addr: SocketAddr, request: String) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out).into_owned();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn accounts_over_http_register_login_me_password_and_logout() {
    let server = TestServer::start().await;
    let a = server.http;

    let (st, r, _) = call(
        a,
        "POST",
        "/v1/register",
        None,
        Some(json!({"username": "Alice", "password": PASSWORD})),
    )
    .await;
    assert_eq!(st, 201, "{r}");
    assert_eq!(r["username"], "alice");
    let alice = r["user_id"].as_u64().unwrap();

    // The same name again: the wire protocol's code, in the one error shape.
    let (st, e, _) = call(
        a,
        "POST",
        "/v1/register",
        None,
        Some(json!({"username": "alice", "password": PASSWORD})),
    )
    .await;
    assert_eq!((st, e["code"].as_str()), (409, Some("USERNAME_TAKEN")));
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));

    let (st, e, _) = call(
        a,
        "POST",
        "/v1/login",
        None,
        Some(json!({"username": "alice", "password": "not the password"})),
    )
    .await;
    assert_eq!((st, e["code"].as_str()), (401, Some("BAD_CREDENTIALS")));

    let (st, l, _) = call(
        a,
        "POST",
        "/v1/login",
        None,
        Some(json!({"username": "alice", "password": PASSWORD})),
    )
    .await;
    assert_eq!(st, 200, "{l}");
    assert_eq!(l["user_id"].as_u64(), Some(alice));
    assert_eq!(l["device_id"], "http");
    assert!(l["expires_at_ms"].as_i64().unwrap() > 0);
    // The node to connect to for live traffic: this one.
    assert_eq!(l["node"]["tcp"].as_str(), Some(server.tcp.as_str()));
    let token = l["token"].as_str().unwrap();

    let (st, me, _) = call(a, "GET", "/v1/me", Some(token), None).await;
    assert_eq!(st, 200, "{me}");
    assert_eq!(
        (me["user_id"].as_u64(), me["username"].as_str()),
        (Some(alice), Some("alice"))
    );

    let (st, e, _) = call(a, "GET", "/v1/me", None, None).await;
    assert_eq!((st, e["code"].as_str()), (401, Some("NOT_AUTHENTICATED")));
    let (st, e, _) = call(a, "GET", "/v1/me", Some("not-a-token"), None).await;
    assert_eq!((st, e["code"].as_str()), (401, Some("TOKEN_INVALID")));

    // The token is the frame protocol's session: a Resume takes it.
    let mut c = server.client().await;
    let resumed = c.resume(token, "http").await.unwrap();
    assert_eq!(resumed.user_id, alice);

    // A new password ends every other session; this one goes on.
    let (_, other) = server.device("alice", "phone").await;
    let (st, _, _) = call(
        a,
        "PUT",
        "/v1/me/password",
        Some(token),
        Some(json!({"old_password": PASSWORD, "new_password": "another fine password"})),
    )
    .await;
    assert_eq!(st, 204);
    let (st, e, _) = call(a, "GET", "/v1/me", Some(&other.token), None).await;
    assert_eq!((st, e["code"].as_str()), (401, Some("TOKEN_INVALID")));
    assert_eq!(call(a, "GET", "/v1/me", Some(token), None).await.0, 200);

    let (st, _, _) = call(a, "POST", "/v1/logout", Some(token), None).await;
    assert_eq!(st, 204);
    let (st, e, _) = call(a, "GET", "/v1/me", Some(token), None).await;
    assert_eq!((st, e["code"].as_str()), (401, Some("TOKEN_INVALID")));
}

#[tokio::test]
async fn http_and_frame_clients_share_one_conversation() {
    let server = TestServer::start().await;
    let a = server.http;
    let (alice, alice_token) = register_and_login(a, "alice").await;
    let (mut bob_frames, bob_login) = server.user("bob").await;
    let bob = bob_login.user_id;

    // Over HTTP to a frame client, who hears it pushed.
    let send = json!({
        "client_msg_id": "m1",
        "to_user_id": bob,
        "body": {"kind": "TEXT", "content": "hello over http"},
    });
    let (st, ack, _) = call(
        a,
        "POST",
        "/v1/messages",
        Some(&alice_token),
        Some(send.clone()),
    )
    .await;
    assert_eq!(st, 200, "{ack}");
    assert_eq!(ack["duplicate"], false);
    let conv = ack["conversation_id"].as_u64().unwrap();
    let pushed = next_message(&mut bob_frames).await;
    assert_eq!(
        (pushed.sender_id, text(&pushed)),
        (alice, "hello over http")
    );
    assert_eq!(pushed.seq, ack["seq"].as_u64().unwrap());

    // The same client_msg_id again stores nothing new.
    let (st, again, _) = call(a, "POST", "/v1/messages", Some(&alice_token), Some(send)).await;
    assert_eq!(st, 200);
    assert_eq!(
        (again["duplicate"].as_bool(), &again["seq"]),
        (Some(true), &ack["seq"])
    );

    // From the frame client, read over HTTP.
    bob_frames
        .send_text(alice, "r1", "and back over frames")
        .await
        .unwrap();
    let (st, page, _) = call(
        a,
        "POST",
        "/v1/sync",
        Some(&alice_token),
        Some(json!({"cursors": []})),
    )
    .await;
    assert_eq!(st, 200, "{page}");
    let texts: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["hello over http", "and back over frames"]);
    assert_eq!(page["has_more"], false);
    assert_eq!(page["conversations"][0]["kind"], "DIRECT");

    let (st, list, _) = call(a, "GET", "/v1/conversations", Some(&alice_token), None).await;
    assert_eq!(st, 200, "{list}");
    let entry = &list["conversations"][0];
    assert_eq!(
        (entry["conversation_id"].as_u64(), entry["title"].as_str()),
        (Some(conv), Some("bob"))
    );
    assert_eq!(entry["unread"], 1);
    assert_eq!(
        entry["last_message"]["body"]["content"],
        "and back over frames"
    );

    let (st, _, _) = call(
        a,
        "POST",
        &format!("/v1/conversations/{conv}/read"),
        Some(&alice_token),
        Some(json!({"seq": 2})),
    )
    .await;
    assert_eq!(st, 204);
    let (_, list, _) = call(a, "GET", "/v1/conversations", Some(&alice_token), None).await;
    assert_eq!(list["conversations"][0]["unread"], 0);

    // Recall over HTTP: the frame client's history shows the tombstone.
    let seq = ack["seq"].as_u64().unwrap();
    let (st, _, _) = call(
        a,
        "POST",
        &format!("/v1/conversations/{conv}/messages/{seq}/recall"),
        Some(&alice_token),
        None,
    )
    .await;
    assert_eq!(st, 204);
    let (st, h, _) = call(
        a,
        "GET",
        &format!("/v1/conversations/{conv}/messages?limit=10"),
        Some(&alice_token),
        None,
    )
    .await;
    assert_eq!(st, 200, "{h}");
    let kinds: Vec<&str> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"]["kind"].as_str().unwrap())
        .collect();
    // Newest first: the recall's event, Bob's message, the tombstone.
    assert_eq!(kinds, ["SYSTEM", "TEXT", "RECALLED"]);

    // Alice's recall of Bob's message is refused, as over frames.
    let (st, e, _) = call(
        a,
        "POST",
        &format!("/v1/conversations/{conv}/messages/2/recall"),
        Some(&alice_token),
        None,
    )
    .await;
    assert_eq!((st, e["code"].as_str()), (403, Some("FORBIDDEN")), "{e}");
    // A stranger's history is refused.
    let (_, carol_token) = register_and_login(a, "carol").await;
    let (st, e, _) = call(
        a,
        "GET",
        &format!("/v1/conversations/{conv}/messages"),
        Some(&carol_token),
        None,
    )
    .await;
    assert_eq!((st, e["code"].as_str()), (403, Some("FORBIDDEN")), "{e}");
}

#[tokio::test]
async fn bad_requests_get_the_error_shape_and_nothing_is_stored() {
    let server = TestServer::start().await;
    let a = server.http;
    let (_, token) = register_and_login(a, "alice").await;
    let (_, bob_token) = register_and_login(a, "bob").await;
    let auth = format!("authorization: Bearer {token}\r\n");

    let post = |path: &str, ctype: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{auth}content-type: {ctype}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let (st, e) = raw(a, post("/v1/messages", "application/json", "{not json")).await;
    assert_eq!((st, e["code"].as_str()), (400, Some("MALFORMED")), "{e}");
    let (st, e) = raw(a, post("/v1/messages", "text/plain", "{}")).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (415, Some("UNSUPPORTED_MEDIA_TYPE")),
        "{e}"
    );
    let big = format!("{{\"x\": \"{}\"}}", "a".repeat(300 * 1024));
    let (st, e) = raw(a, post("/v1/messages", "application/json", &big)).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (413, Some("FRAME_TOO_LARGE")),
        "{e}"
    );
    // Unknown fields are refused, not ignored.
    let (st, e, _) = call(
        a,
        "POST",
        "/v1/messages",
        Some(&token),
        Some(json!({"client_msg_id": "x", "to_user_id": 2, "body": {"kind": "TEXT", "content": "x"}, "colour": "red"})),
    )
    .await;
    assert_eq!((st, e["code"].as_str()), (400, Some("MALFORMED")), "{e}");
    // Both targets, or neither.
    let (st, e, _) = call(
        a,
        "POST",
        "/v1/messages",
        Some(&token),
        Some(json!({"client_msg_id": "x", "to_user_id": 2, "conversation_id": 3, "body": {"kind": "TEXT", "content": "x"}})),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (400, Some("INVALID_ARGUMENT")),
        "{e}"
    );
    // Text no backend may be asked to keep: a NUL, on every backend.
    let (st, e, _) = call(
        a,
        "POST",
        "/v1/messages",
        Some(&token),
        Some(json!({"client_msg_id": "x", "to_user_id": 2, "body": {"kind": "TEXT", "content": "a\0b"}})),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (400, Some("INVALID_ARGUMENT")),
        "{e}"
    );
    // A body only the server writes.
    let (st, e, _) = call(
        a,
        "POST",
        "/v1/messages",
        Some(&token),
        Some(json!({"client_msg_id": "x", "to_user_id": 2, "body": {"kind": "SYSTEM", "content": "{}"}})),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (400, Some("INVALID_ARGUMENT")),
        "{e}"
    );
    let (st, e, _) = call(
        a,
        "GET",
        "/v1/conversations/abc/messages",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (400, Some("INVALID_ARGUMENT")),
        "{e}"
    );
    let (st, e, _) = call(
        a,
        "GET",
        "/v1/conversations?before_id=3",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (400, Some("INVALID_ARGUMENT")),
        "{e}"
    );

    // None of it stored anything.
    let (_, page, _) = call(a, "POST", "/v1/sync", Some(&bob_token), Some(json!({}))).await;
    assert_eq!(page["messages"], json!([]), "{page}");
}

#[tokio::test]
async fn http_and_frames_draw_on_one_send_allowance() {
    let server = TestServer::start_with(|c| {
        c.limits.send_rate_per_sec = 0.01;
        c.limits.send_burst = 4.0;
    })
    .await;
    let a = server.http;
    let (alice_frames, _) = server.user("alice").await;
    let (bob, _) = register_and_login(a, "bob").await;
    let (_, alice) = {
        let (st, l, _) = call(
            a,
            "POST",
            "/v1/login",
            None,
            Some(json!({"username": "alice", "password": PASSWORD, "device_id": "web"})),
        )
        .await;
        assert_eq!(st, 200);
        ((), l["token"].as_str().unwrap().to_owned())
    };
    for i in 0..2 {
        alice_frames
            .send_text(bob, &format!("f{i}"), "over frames")
            .await
            .unwrap();
    }
    for i in 0..2 {
        let (st, r, _) = call(
            a,
            "POST",
            "/v1/messages",
            Some(&alice),
            Some(json!({"client_msg_id": format!("h{i}"), "to_user_id": bob, "body": {"kind": "TEXT", "content": "over http"}})),
        )
        .await;
        assert_eq!(st, 200, "{r}");
    }
    // The burst of 4 is spent, whichever edge spent it.
    let (st, e, retry) = call(
        a,
        "POST",
        "/v1/messages",
        Some(&alice),
        Some(json!({"client_msg_id": "h9", "to_user_id": bob, "body": {"kind": "TEXT", "content": "one more"}})),
    )
    .await;
    assert_eq!((st, e["code"].as_str()), (429, Some("RATE_LIMITED")), "{e}");
    assert!(e["retry_after_ms"].as_u64().unwrap() > 0);
    assert!(retry.unwrap().parse::<u64>().unwrap() >= 1);
    let over_frames = alice_frames.send_text(bob, "f9", "one more").await;
    assert_eq!(code(over_frames), natter_proto::pb::ErrorCode::RateLimited);
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let server = TestServer::start().await;
    let (st, doc, _) = call(server.http, "GET", "/v1/openapi.json", None, None).await;
    assert_eq!(st, 200);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    let routes = [
        ("/v1/register", "post"),
        ("/v1/login", "post"),
        ("/v1/logout", "post"),
        ("/v1/me", "get"),
        ("/v1/me/password", "put"),
        ("/v1/email/code", "post"),
        ("/v1/password/reset", "post"),
        ("/v1/messages", "post"),
        ("/v1/sync", "post"),
        ("/v1/events", "get"),
        ("/v1/conversations", "get"),
        ("/v1/conversations/{id}/messages", "get"),
        ("/v1/conversations/{id}/read", "post"),
        ("/v1/conversations/{id}/typing", "post"),
        ("/v1/conversations/{id}/messages/{seq}/recall", "post"),
        ("/v1/users", "get"),
        ("/v1/friends/requests", "post"),
        ("/v1/friends/requests", "get"),
        ("/v1/friends/requests/{id}", "post"),
        ("/v1/friends", "get"),
        ("/v1/friends/{user_id}", "delete"),
        ("/v1/friends/{user_id}/remark", "put"),
        ("/v1/blocks/{user_id}", "put"),
        ("/v1/blocks/{user_id}", "delete"),
        ("/v1/groups", "post"),
        ("/v1/groups", "get"),
        ("/v1/groups/{id}", "get"),
        ("/v1/groups/{id}", "patch"),
        ("/v1/groups/{id}", "delete"),
        ("/v1/rooms", "get"),
        ("/v1/groups/{id}/members", "get"),
        ("/v1/groups/{id}/members", "post"),
        ("/v1/groups/{id}/members/{user_id}", "delete"),
        ("/v1/groups/{id}/members/{user_id}/role", "put"),
        ("/v1/groups/{id}/members/{user_id}/mute", "put"),
        ("/v1/groups/{id}/owner", "post"),
        ("/v1/groups/{id}/leave", "post"),
        ("/v1/groups/{id}/join", "post"),
        ("/v1/groups/{id}/join-requests", "get"),
        ("/v1/groups/{id}/join-requests/{user_id}", "post"),
        ("/v1/files", "post"),
        ("/v1/files/{id}", "patch"),
        ("/v1/files/{id}", "delete"),
        ("/v1/files/{id}", "get"),
    ];
    for (path, method) in routes {
        let op = &paths[path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        // Every operation documents its errors in the one shape.
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|s| s.starts_with('4')),
            "{method} {path} documents no error"
        );
        if op["security"].is_array() {
            assert!(responses.contains_key("401"), "{method} {path}: no 401");
        }
    }
    let documented: usize = paths
        .values()
        .map(|p| {
            p.as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "parameters")
                .count()
        })
        .sum();
    assert_eq!(documented, routes.len(), "{:?}", paths.keys());
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // Each path's operations exist on the server: none answers 404/405.
    for (path, method) in routes {
        let concrete = path
            .replace("{id}", "1")
            .replace("{seq}", "1")
            .replace("{user_id}", "1");
        let (st, _, _) = call(
            server.http,
            &method.to_uppercase(),
            &concrete,
            None,
            (method != "get" && method != "delete").then(|| json!({})),
        )
        .await;
        assert!(st != 404 && st != 405, "{method} {path}: {st}");
    }
}

#[tokio::test]
async fn http2_by_its_preface_and_gzip_for_who_asks() {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use std::io::Read;

    let server = TestServer::start().await;
    let (_, token) = register_and_login(server.http, "alice").await;

    // h2c with prior knowledge: requests multiplexed on one connection.
    let stream = tokio::net::TcpStream::connect(server.http).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let driver = natter_testkit::spawn(conn);
    for path in ["/v1/me", "/v1/conversations"] {
        let req = hyper::Request::get(format!("http://x{path}"))
            .header("authorization", format!("Bearer {token}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = h2.send_request(req).await.unwrap();
        assert_eq!(resp.version(), hyper::Version::HTTP_2);
        assert_eq!(resp.status(), 200, "{path}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert!(v.is_object(), "{path}: {v}");
    }
    drop(h2);
    driver.abort();

    // HTTP/1.1 with accept-encoding: gzip gets the same JSON, gzipped.
    let stream = tokio::net::TcpStream::connect(server.http).await.unwrap();
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let driver = natter_testkit::spawn(conn);
    let req = hyper::Request::get("http://x/v1/openapi.json")
        .header("host", "x")
        .header("accept-encoding", "gzip")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = h1.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip")
    );
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let mut json = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut json)
        .unwrap();
    let doc: Value = serde_json::from_str(&json).unwrap();
    assert!(json.len() > body.len(), "gzip made it smaller");
    assert!(doc["paths"]["/v1/login"].is_object());
    driver.abort();
}
