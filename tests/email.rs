//! Email codes end to end: a real server configured with `[email]` sends
//! to an SMTP sink written here (a TCP listener speaking just enough
//! SMTP), and the tests read each code from the mail the sink received:
//! registration with a verified address, wrong and expired codes, resends
//! limited, a reset by code that ends every session, a mail server that
//! fails or hangs, and a server without `[email]` as before.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// One mail the sink took: its recipient and its DATA.
#[derive(Debug)]
struct Mail {
    to: String,
    data: String,
}

/// An SMTP server that accepts every mail and hands it to the test.
struct Sink {
    addr: SocketAddr,
    mails: mpsc::UnboundedReceiver<Mail>,
}

impl Sink {
    async fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mails) = mpsc::unbounded_channel();
        // Ends with the test's runtime.
        natter_testkit::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                natter_testkit::spawn(smtp(s, tx.clone()));
            }
        });
        Sink { addr, mails }
    }

    async fn next(&mut self) -> Mail {
        tokio::time::timeout(WAIT, self.mails.recv())
            .await
            .expect("a mail within the timeout")
            .unwrap()
    }

    /// The code in the next mail, which must be to `to`.
    async fn code_for(&mut self, to: &str) -> String {
        let mail = self.next().await;
        assert_eq!(mail.to, to, "{mail:?}");
        code_in(&mail)
    }
}

/// One SMTP session: 220, EHLO/HELO 250, MAIL/RCPT 250, DATA 354 … 250,
/// QUIT 221.
async fn smtp(s: TcpStream, tx: mpsc::UnboundedSender<Mail>) {
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let _ = w.write_all(b"220 sink ESMTP\r\n").await;
    let (mut line, mut to) = (String::new(), String::new());
    loop {
        line.clear();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let cmd = line.trim_end().to_ascii_uppercase();
        let reply: &[u8] = if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
            b"250 sink\r\n"
        } else if cmd.starts_with("RCPT TO:") {
            to = line.trim_end()[8..]
                .trim()
                .trim_matches(['<', '>'])
                .to_owned();
            b"250 ok\r\n"
        } else if cmd.starts_with("MAIL FROM:") || cmd == "RSET" || cmd == "NOOP" {
            b"250 ok\r\n"
        } else if cmd == "DATA" {
            let _ = w.write_all(b"354 go on\r\n").await;
            let mut data = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                if line == ".\r\n" {
                    break;
                }
                data.push_str(&line);
            }
            let _ = tx.send(Mail {
                to: to.clone(),
                data,
            });
            b"250 queued\r\n"
        } else if cmd == "QUIT" {
            let _ = w.write_all(b"221 bye\r\n").await;
            return;
        } else {
            b"502 not here\r\n"
        };
        if w.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// The 6-digit code in a mail's body.
fn code_in(mail: &Mail) -> String {
    let body = mail.data.split_once("\r\n\r\n").unwrap().1;
    let b = body.as_bytes();
    (0..b.len().saturating_sub(5))
        .find(|&i| {
            b[i..i + 6].iter().all(u8::is_ascii_digit)
                && (i == 0 || !b[i - 1].is_ascii_digit())
                && b.get(i + 6).is_none_or(|c| !c.is_ascii_digit())
        })
        .map(|i| body[i..i + 6].to_owned())
        .unwrap_or_else(|| panic!("no code in {body:?}"))
}

/// A server whose `[email]` points at `smtp`.
async fn server_with(
    smtp: SocketAddr,
    tweak: impl FnOnce(&mut natter::config::Email),
) -> TestServer {
    server_in(tempfile::tempdir().unwrap(), smtp, tweak).await
}

/// The same on the data directory `dir`.
async fn server_in(
    dir: tempfile::TempDir,
    smtp: SocketAddr,
    tweak: impl FnOnce(&mut natter::config::Email),
) -> TestServer {
    TestServer::start_in(dir, |c| {
        c.email = natter::config::Email {
            smtp_host: smtp.ip().to_string(),
            smtp_port: smtp.port(),
            tls: natter::config::EmailTls::None,
            from: "natter <no-reply@example.org>".into(),
            ..natter::config::Email::default()
        };
        tweak(&mut c.email);
        c.validate().unwrap();
    })
    .await
}

/// One JSON request (a `Null` body: none): (status, body or Null).
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let body = (!body.is_null()).then_some(body);
    let (status, body, _) = common::http::call(addr, method, path, token, body).await;
    (status, body)
}

async fn ask_code(addr: SocketAddr, email: &str, purpose: &str) -> (u16, Value) {
    call(
        addr,
        "POST",
        "/v1/email/code",
        None,
        json!({"email": email, "purpose": purpose}),
    )
    .await
}

async fn register(addr: SocketAddr, name: &str, email: &str, code: &str) -> (u16, Value) {
    call(
        addr,
        "POST",
        "/v1/register",
        None,
        json!({"username": name, "password": PASSWORD, "email": email, "code": code}),
    )
    .await
}

async fn login(addr: SocketAddr, name: &str, password: &str, device: &str) -> (u16, Value) {
    call(
        addr,
        "POST",
        "/v1/login",
        None,
        json!({"username": name, "password": password, "device_id": device}),
    )
    .await
}

/// A code that is not `code` (for a wrong try).
fn other_than(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 1) % 1_000_000)
}

#[tokio::test]
async fn registration_needs_a_verified_address_when_required() {
    let mut sink = Sink::start().await;
    let server = server_with(sink.addr, |e| e.require_verified = true).await;
    let a = server.http;

    // Without an address: refused, as the server requires one.
    let (st, e) = call(
        a,
        "POST",
        "/v1/register",
        None,
        json!({"username": "ann", "password": PASSWORD}),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (400, Some("INVALID_ARGUMENT")),
        "{e}"
    );

    // The frame protocol's Register carries no address: refused too.
    let c = server.client().await;
    assert_eq!(
        code(c.register("fred", PASSWORD).await),
        natter_client::pb::ErrorCode::InvalidArgument
    );

    let (st, e) = ask_code(a, " Ann@Example.org", "register").await;
    assert_eq!(st, 202, "{e}");
    let code = sink.code_for("ann@example.org").await;

    let (st, e) = register(a, "ann", "ann@example.org", &other_than(&code)).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (401, Some("BAD_CREDENTIALS")),
        "{e}"
    );
    // The address is compared as stored (trimmed, lower-case).
    let (st, r) = register(a, "ann", "ANN@example.org", &code).await;
    assert_eq!(st, 201, "{r}");
    assert_eq!(r["username"], "ann");
    let (st, l) = login(a, "ann", PASSWORD, "web").await;
    assert_eq!(st, 200, "{l}");

    // An address belongs to one account (the reset test shows a code is
    // single use).
    let (st, e) = register(a, "ann2", "ann@example.org", &code).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (400, Some("INVALID_ARGUMENT")),
        "{e}"
    );
    // Not an address at all.
    let (st, e) = ask_code(a, "not an address", "register").await;
    assert_eq!(
        (st, e["code"].as_str()),
        (400, Some("INVALID_ARGUMENT")),
        "{e}"
    );
    server.stop().await;
}

#[tokio::test]
async fn wrong_codes_are_capped_codes_expire_and_resends_are_limited() {
    let mut sink = Sink::start().await;
    let server = server_with(sink.addr, |e| {
        e.max_attempts = 3;
        e.code_ttl_secs = 2;
        e.codes_per_address_per_hour = 3;
    })
    .await;
    let a = server.http;
    let bob = "bob@example.org";

    assert_eq!(ask_code(a, bob, "register").await.0, 202);
    let code = sink.code_for(bob).await;
    for _ in 0..3 {
        let (st, e) = register(a, "bob", bob, &other_than(&code)).await;
        assert_eq!(
            (st, e["code"].as_str()),
            (401, Some("BAD_CREDENTIALS")),
            "{e}"
        );
    }
    // Three wrong tries killed it: the right code no longer works.
    let (st, e) = register(a, "bob", bob, &code).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (401, Some("BAD_CREDENTIALS")),
        "{e}"
    );

    // A new code, too late.
    assert_eq!(ask_code(a, bob, "register").await.0, 202);
    let code = sink.code_for(bob).await;
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let (st, e) = register(a, "bob", bob, &code).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (401, Some("BAD_CREDENTIALS")),
        "{e}"
    );
    assert!(e["message"].as_str().unwrap().contains("expired"), "{e}");

    // The third code for the address is the last this hour.
    assert_eq!(ask_code(a, bob, "register").await.0, 202);
    let code = sink.code_for(bob).await;
    let (st, e) = ask_code(a, bob, "register").await;
    assert_eq!((st, e["code"].as_str()), (429, Some("RATE_LIMITED")), "{e}");
    // The code sent before the limit still works.
    let (st, r) = register(a, "bob", bob, &code).await;
    assert_eq!(st, 201, "{r}");
    server.stop().await;
}

#[tokio::test]
async fn a_reset_by_code_sets_the_password_and_ends_every_session() {
    let mut sink = Sink::start().await;
    let server = server_with(sink.addr, |_| {}).await;
    let a = server.http;
    let cat = "cat@example.org";

    assert_eq!(ask_code(a, cat, "register").await.0, 202);
    let code = sink.code_for(cat).await;
    assert_eq!(register(a, "cat", cat, &code).await.0, 201);
    let mut tokens = Vec::new();
    for device in ["phone", "laptop"] {
        let (st, l) = login(a, "cat", PASSWORD, device).await;
        assert_eq!(st, 200, "{l}");
        tokens.push(l["token"].as_str().unwrap().to_owned());
    }

    // An address no account has is answered the same, and gets no mail:
    // the next mail the sink sees is the one for cat.
    assert_eq!(ask_code(a, "nobody@example.org", "reset").await.0, 202);
    assert_eq!(ask_code(a, cat, "reset").await.0, 202);
    let code = sink.code_for(cat).await;
    // A code for an address with no account says nothing more than a
    // wrong code.
    let (st, e) = call(
        a,
        "POST",
        "/v1/password/reset",
        None,
        json!({"email": "nobody@example.org", "code": code, "new_password": "a new password"}),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (401, Some("BAD_CREDENTIALS")),
        "{e}"
    );
    let (st, e) = call(
        a,
        "POST",
        "/v1/password/reset",
        None,
        json!({"email": cat, "code": other_than(&code), "new_password": "a new password"}),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (401, Some("BAD_CREDENTIALS")),
        "{e}"
    );
    let (st, e) = call(
        a,
        "POST",
        "/v1/password/reset",
        None,
        json!({"email": cat, "code": code, "new_password": "short"}),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (400, Some("WEAK_PASSWORD")),
        "{e}"
    );
    let (st, e) = call(
        a,
        "POST",
        "/v1/password/reset",
        None,
        json!({"email": cat, "code": code, "new_password": "a new password"}),
    )
    .await;
    assert_eq!(st, 204, "{e}");

    for t in &tokens {
        let (st, e) = call(a, "GET", "/v1/me", Some(t), Value::Null).await;
        assert_eq!(st, 401, "{e}");
    }
    assert_eq!(login(a, "cat", PASSWORD, "web").await.0, 401);
    assert_eq!(login(a, "cat", "a new password", "web").await.0, 200);
    // Used once.
    let (st, _) = call(
        a,
        "POST",
        "/v1/password/reset",
        None,
        json!({"email": cat, "code": code, "new_password": "another password"}),
    )
    .await;
    assert_eq!(st, 401);
    server.stop().await;
}

#[tokio::test]
async fn a_failing_or_silent_mail_server_is_unavailable_never_a_hang() {
    // dan registers while mail works.
    let mut sink = Sink::start().await;
    let server = server_with(sink.addr, |_| {}).await;
    let dan = "dan@example.org";
    assert_eq!(ask_code(server.http, dan, "register").await.0, 202);
    let code = sink.code_for(dan).await;
    assert_eq!(register(server.http, "dan", dan, &code).await.0, 201);
    let dir = server.stop().await;

    // Then the mail server accepts connections and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = server_in(dir, silent.local_addr().unwrap(), |e| {
        e.send_timeout_ms = 300
    })
    .await;
    let started = tokio::time::Instant::now();
    let (st, e) = ask_code(server.http, "eva@example.org", "register").await;
    assert_eq!((st, e["code"].as_str()), (503, Some("UNAVAILABLE")), "{e}");
    assert!(e["retry_after_ms"].as_u64().is_some(), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // A reset is answered before its mail is sent: at once, for a known
    // address as for any other (sending it would take the 300 ms timeout).
    for who in [dan, "nobody@example.org"] {
        let started = tokio::time::Instant::now();
        assert_eq!(ask_code(server.http, who, "reset").await.0, 202);
        assert!(
            started.elapsed() < Duration::from_millis(250),
            "{who}: {:?}",
            started.elapsed()
        );
    }
    server.stop().await;

    // Nobody listening at all.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = closed.local_addr().unwrap();
    drop(closed);
    let server = server_with(gone, |_| {}).await;
    let (st, e) = ask_code(server.http, "eva@example.org", "register").await;
    assert_eq!((st, e["code"].as_str()), (503, Some("UNAVAILABLE")), "{e}");
    server.stop().await;
    drop(silent);
}

#[tokio::test]
async fn without_email_settings_registration_is_as_before() {
    let server = TestServer::start().await;
    let a = server.http;
    let (st, r) = call(
        a,
        "POST",
        "/v1/register",
        None,
        json!({"username": "eve", "password": PASSWORD}),
    )
    .await;
    assert_eq!(st, 201, "{r}");
    let (st, e) = ask_code(a, "eve@example.org", "register").await;
    assert_eq!(
        (st, e["code"].as_str()),
        (400, Some("INVALID_ARGUMENT")),
        "{e}"
    );
    let (st, e) = register(a, "eve2", "eve@example.org", "123456").await;
    assert_eq!(
        (st, e["code"].as_str()),
        (400, Some("INVALID_ARGUMENT")),
        "{e}"
    );
    let (st, e) = call(
        a,
        "POST",
        "/v1/password/reset",
        None,
        json!({"email": "eve@example.org", "code": "123456", "new_password": "a new password"}),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (400, Some("INVALID_ARGUMENT")),
        "{e}"
    );
    // The frame protocol registers as before too.
    let (_c, ok) = server.user("frank").await;
    assert!(ok.user_id > 0);
    server.stop().await;
}
