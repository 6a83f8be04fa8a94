//! The web chat client as a browser fetches it, over plain HTTP from a real
//! server: the page with its security headers, assets with their ETag and
//! `304` on revalidation, `404` for a file that is not there; and the REST
//! endpoint it says "typing" with.
#![allow(clippy::unwrap_used)]

mod common;

use common::http::{call, register_and_login};
use common::*;
use natter_client::ServerFrame;
use std::collections::HashMap;
use std::net::SocketAddr;

/// One HTTP/1.1 GET: status, headers (lower-case names) and body.
async fn get(
    addr: SocketAddr,
    path: &str,
    extra: &[(&str, &str)],
) -> (u16, HashMap<String, String>, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status.parse().unwrap(), headers, out[split + 4..].to_vec())
}

fn assert_secured(h: &HashMap<String, String>) {
    let csp = &h["content-security-policy"];
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(csp.contains("img-src 'self' blob: data:"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_etags_and_security_headers() {
    let server = TestServer::start().await;
    let a = server.http;

    let (st, h, body) = get(a, "/", &[]).await;
    assert_eq!(st, 200);
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["cache-control"], "no-cache");
    assert_secured(&h);
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("<script type=\"module\" src=\"/chat/app.js\">"));

    for (file, kind) in [
        ("app.js", "text/javascript"),
        ("api.js", "text/javascript"),
        ("store.js", "text/javascript"),
        ("ui.js", "text/javascript"),
        ("groups.js", "text/javascript"),
        ("upload.js", "text/javascript"),
        ("chat.css", "text/css"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let path = format!("/chat/{file}");
        let (st, h, body) = get(a, &path, &[]).await;
        assert_eq!(st, 200, "{path}");
        assert!(h["content-type"].starts_with(kind), "{path}: {h:?}");
        assert!(!body.is_empty(), "{path}");
        assert_secured(&h);
        let etag = h["etag"].clone();
        assert!(
            etag.starts_with('"') && etag.len() > 8,
            "a strong ETag: {etag}"
        );

        // Revalidation: the same ETag is 304 with no body, another is 200.
        let (st, h2, body) = get(a, &path, &[("if-none-match", &etag)]).await;
        assert_eq!(st, 304, "{path}");
        assert_eq!(h2["etag"], etag);
        assert!(body.is_empty());
        let (st, _, _) = get(a, &path, &[("if-none-match", "\"stale\"")]).await;
        assert_eq!(st, 200, "{path}");
    }
    let (_, js, _) = get(a, "/chat/app.js", &[]).await;
    let (_, css, _) = get(a, "/chat/chat.css", &[]).await;
    assert_ne!(js["etag"], css["etag"], "each file has its own ETag");

    let (st, h, _) = get(a, "/chat/x", &[]).await;
    assert_eq!(st, 404);
    assert_secured(&h);
    let (st, _, _) = get(a, "/chat/../Cargo.toml", &[]).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn typing_over_http_reaches_the_other_member() {
    let server = TestServer::start().await;
    let a = server.http;
    let (_, alice) = register_and_login(a, "alice").await;
    let (mut bob, b) = server.user("bob").await;
    let (st, sent, _) = call(
        a,
        "POST",
        "/v1/messages",
        Some(&alice),
        Some(
            serde_json::json!({"client_msg_id": "m1", "to_user_id": b.user_id,
            "body": {"kind": "TEXT", "content": "hi"}}),
        ),
    )
    .await;
    assert_eq!(st, 200, "{sent}");
    next_message(&mut bob).await;
    let conv = sent["conversation_id"].as_u64().unwrap();

    let path = format!("/v1/conversations/{conv}/typing");
    let (st, r, _) = call(a, "POST", &path, Some(&alice), None).await;
    assert_eq!(st, 204, "{r}");
    let t = next_push(&mut bob, |f| match f {
        ServerFrame::TypingPush(t) => Some(t),
        _ => None,
    })
    .await;
    assert_eq!(t.conversation_id, conv);

    let (_, eve) = register_and_login(a, "eve").await;
    let (st, r, _) = call(a, "POST", &path, Some(&eve), None).await;
    assert_eq!((st, r["code"].as_str()), (403, Some("FORBIDDEN")), "{r}");
}
