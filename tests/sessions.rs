//! Accounts and sessions through a real server: credentials, tokens, the
//! device policy, logout, password change, auth and heartbeat timeouts.

mod common;

use common::*;
use natter::config::DevicePolicy;
use natter_client::{pb, ServerFrame};
use natter_proto::ClientFrame;
use std::time::Duration;

#[tokio::test]
async fn register_rules_and_wrong_credentials() {
    let server = TestServer::start().await;
    let c = server.client().await;
    c.register("Alice", PASSWORD).await.unwrap();
    let e = c.register("alice", PASSWORD).await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(pb::ErrorCode::UsernameTaken),
        "names are case-insensitive"
    );
    assert_eq!(
        c.register("x", PASSWORD).await.unwrap_err().code(),
        Some(pb::ErrorCode::InvalidArgument)
    );
    assert_eq!(
        c.register("bob", "short").await.unwrap_err().code(),
        Some(pb::ErrorCode::WeakPassword)
    );
    assert_eq!(
        c.register("bobbybob", "bobbybob").await.unwrap_err().code(),
        Some(pb::ErrorCode::WeakPassword)
    );

    let mut c = server.client().await;
    let e = c.login("alice", "wrong password", "d").await.unwrap_err();
    assert_eq!(e.code(), Some(pb::ErrorCode::BadCredentials));
    let e = c.login("nobody", PASSWORD, "d").await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(pb::ErrorCode::BadCredentials),
        "unknown users look like wrong passwords"
    );
    // Not logged in: everything but the account requests is refused.
    let e = c.sync_page(vec![], 0, 10).await.unwrap_err();
    assert_eq!(e.code(), Some(pb::ErrorCode::NotAuthenticated));
    // The same connection can still log in.
    let ok = c.login("ALICE", PASSWORD, "d").await.unwrap();
    assert_eq!(ok.username, "alice");
    let e = c.login("alice", PASSWORD, "d").await.unwrap_err();
    assert_eq!(e.code(), Some(pb::ErrorCode::AlreadyAuthenticated));
}

#[tokio::test]
async fn token_resume_without_password_and_expiry() {
    let server = TestServer::start_with(|c| c.session.token_ttl_secs = 2).await;
    let (c, login) = server.user("alice").await;
    assert!(
        login.heartbeat_interval_ms > 0 && login.heartbeat_timeout_ms > login.heartbeat_interval_ms
    );
    drop(c);
    let mut again = server.client().await;
    let resumed = again.resume(&login.token, "d1").await.unwrap();
    assert_eq!(
        (resumed.user_id, resumed.session_id),
        (login.user_id, login.session_id)
    );
    // Wrong device or garbage token: invalid.
    let mut other = server.client().await;
    assert_eq!(
        other.resume(&login.token, "d2").await.unwrap_err().code(),
        Some(pb::ErrorCode::TokenInvalid)
    );
    assert_eq!(
        other.resume("garbage", "d1").await.unwrap_err().code(),
        Some(pb::ErrorCode::TokenInvalid)
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut late = server.client().await;
    assert_eq!(
        late.resume(&login.token, "d1").await.unwrap_err().code(),
        Some(pb::ErrorCode::TokenExpired)
    );
}

#[tokio::test]
async fn logout_revokes_the_token_and_closes() {
    let server = TestServer::start().await;
    let (mut c, login) = server.user("alice").await;
    c.logout().await.unwrap();
    assert_eq!(
        next_disconnect(&mut c).await.reason(),
        pb::DisconnectReason::LoggedOut
    );
    let mut again = server.client().await;
    let e = again.resume(&login.token, "d1").await.unwrap_err();
    assert_eq!(e.code(), Some(pb::ErrorCode::TokenInvalid));
}

/// Logout with other devices' tokens ends those sessions too, and their
/// connections hear LOGGED_OUT; another user's token is left alone.
#[tokio::test]
async fn logout_with_tokens_ends_the_users_other_sessions_as_logged_out() {
    let server = TestServer::start().await;
    let (c, _) = server.user("alice").await;
    let (mut listen, listen_login) = server.device("alice", "d2").await;
    let (bob, bob_login) = server.user("bob").await;
    c.logout_with(vec![listen_login.token.clone(), bob_login.token.clone()])
        .await
        .unwrap();
    let d = next_disconnect(&mut listen).await;
    assert_eq!(d.reason(), pb::DisconnectReason::LoggedOut);
    let mut again = server.client().await;
    let e = again.resume(&listen_login.token, "d2").await.unwrap_err();
    assert_eq!(e.code(), Some(pb::ErrorCode::TokenInvalid));
    bob.ping().await.unwrap();
    let mut bob_again = server.client().await;
    bob_again.resume(&bob_login.token, "d1").await.unwrap();
}

#[tokio::test]
async fn replace_oldest_policy_kicks_the_oldest_session() {
    let server = TestServer::start_with(|c| {
        c.session.max_devices = 2;
        c.session.device_policy = DevicePolicy::ReplaceOldest;
    })
    .await;
    let (mut first, first_login) = server.user("alice").await;
    let (_second, _) = server.device("alice", "d2").await;
    let (third, _) = server.device("alice", "d3").await;
    let d = next_disconnect(&mut first).await;
    assert_eq!(d.reason(), pb::DisconnectReason::Kicked);
    let mut c = server.client().await;
    assert_eq!(
        c.resume(&first_login.token, "d1").await.unwrap_err().code(),
        Some(pb::ErrorCode::TokenInvalid)
    );
    third.ping().await.unwrap();
}

#[tokio::test]
async fn reject_policy_refuses_logins_past_the_limit() {
    let server = TestServer::start_with(|c| {
        c.session.max_devices = 2;
        c.session.device_policy = DevicePolicy::Reject;
    })
    .await;
    let (_a, _) = server.user("alice").await;
    let (_b, _) = server.device("alice", "d2").await;
    let mut c = server.client().await;
    let e = c.login("alice", PASSWORD, "d3").await.unwrap_err();
    assert_eq!(e.code(), Some(pb::ErrorCode::TooManySessions));
    // The same device logging in again replaces its own session instead.
    let (_d2_again, _) = server.device("alice", "d2").await;
}

#[tokio::test]
async fn same_device_again_replaces_the_old_connection() {
    let server = TestServer::start().await;
    let (mut old, login) = server.user("alice").await;
    // Resuming the same session on a new connection replaces the old one.
    let mut new = server.client().await;
    new.resume(&login.token, "d1").await.unwrap();
    assert_eq!(
        next_disconnect(&mut old).await.reason(),
        pb::DisconnectReason::Replaced
    );
    // A fresh login of the same device ends the previous session.
    let (_newer, _) = server.device("alice", "d1").await;
    assert_eq!(
        next_disconnect(&mut new).await.reason(),
        pb::DisconnectReason::Kicked
    );
}

#[tokio::test]
async fn change_password_ends_other_sessions() {
    let server = TestServer::start().await;
    let (a, _) = server.user("alice").await;
    let (mut b, _) = server.device("alice", "d2").await;
    assert_eq!(
        a.change_password("wrong one", "new password 1")
            .await
            .unwrap_err()
            .code(),
        Some(pb::ErrorCode::BadCredentials)
    );
    assert_eq!(
        a.change_password(PASSWORD, "short")
            .await
            .unwrap_err()
            .code(),
        Some(pb::ErrorCode::WeakPassword)
    );
    a.change_password(PASSWORD, "new password 1").await.unwrap();
    assert_eq!(
        next_disconnect(&mut b).await.reason(),
        pb::DisconnectReason::Kicked
    );
    a.ping().await.expect("the changing session stays");
    let mut c = server.client().await;
    assert_eq!(
        c.login("alice", PASSWORD, "x").await.unwrap_err().code(),
        Some(pb::ErrorCode::BadCredentials)
    );
    c.login("alice", "new password 1", "x").await.unwrap();
}

#[tokio::test]
async fn unauthenticated_connections_are_closed_after_the_auth_timeout() {
    let server = TestServer::start_with(|c| c.session.auth_timeout_ms = 300).await;
    let mut raw = Raw::connect(&server.tcp).await;
    raw.hello().await;
    // Pings do not buy time before login.
    raw.request(2, ClientFrame::Ping(pb::Ping { client_time_ms: 0 }))
        .await;
    let frames = raw.until_closed().await;
    assert_eq!(
        disconnect_reason(&frames),
        Some(pb::DisconnectReason::AuthTimeout)
    );
    // A connection that never says anything is closed too.
    let mut silent = Raw::connect(&server.tcp).await;
    let frames = silent.until_closed().await;
    assert_eq!(
        disconnect_reason(&frames),
        Some(pb::DisconnectReason::AuthTimeout)
    );
}

#[tokio::test]
async fn silent_sessions_time_out_and_pinging_ones_stay() {
    let server = TestServer::start_with(|c| {
        c.session.heartbeat_interval_ms = 100;
        c.session.heartbeat_timeout_ms = 800;
    })
    .await;
    let c = server.client().await;
    c.register("alice", PASSWORD).await.unwrap();
    // The library pings at the stated interval: this one stays.
    let (mut pinging, _) = server.device("alice", "pinger").await;

    let mut raw = Raw::connect(&server.tcp).await;
    raw.hello().await;
    raw.request(
        2,
        ClientFrame::Login(pb::Login {
            username: "alice".into(),
            password: PASSWORD.into(),
            device_id: "raw".into(),
        }),
    )
    .await;
    match raw.frame().await {
        Some((2, ServerFrame::LoginOk(ok))) => assert_eq!(
            (ok.heartbeat_interval_ms, ok.heartbeat_timeout_ms),
            (100, 800)
        ),
        other => panic!("expected LoginOk, got {other:?}"),
    }
    // Pushes to the silent connection do not count as its heartbeat: another
    // of alice's devices keeps sending (each a push to this one) while it
    // stays silent.
    let (_bob, b) = server.user("bob").await;
    let b = b.user_id;
    let (talker, _) = server.device("alice", "talker").await;
    let talking = natter_testkit::spawn(async move {
        for i in 0..40 {
            let _ = talker.send_text(b, &format!("t{i}"), "still here").await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let started = tokio::time::Instant::now();
    let frames = raw.until_closed().await;
    talking.abort();
    assert_eq!(
        disconnect_reason(&frames),
        Some(pb::DisconnectReason::HeartbeatTimeout)
    );
    assert!(
        !messages_in(&frames).is_empty(),
        "the silent connection was pushed to"
    );
    assert!(started.elapsed() >= Duration::from_millis(700));
    pinging
        .ping()
        .await
        .expect("a heartbeating session is still up");
    assert!(pinging
        .try_push()
        .iter()
        .all(|f| !matches!(f, ServerFrame::Disconnect(_))));
}

/// Connection deadlines read tokio's clock: with time paused, a silent
/// connection is closed at its auth timeout without the test waiting.
#[tokio::test(start_paused = true)]
async fn the_auth_timeout_runs_on_the_paused_clock() {
    // A paused clock jumps over every wait the runtime sees as idle,
    // network round trips to a database server included.
    if !on_sqlite("the paused-clock auth timeout") {
        return;
    }
    let server = TestServer::start_with(|c| c.session.auth_timeout_ms = 5_000).await;
    let started = tokio::time::Instant::now();
    let mut raw = Raw::connect(&server.tcp).await;
    raw.hello().await;
    let frames = raw.until_closed().await;
    assert_eq!(
        disconnect_reason(&frames),
        Some(pb::DisconnectReason::AuthTimeout)
    );
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(5_000),
        "closed after {waited:?} of the paused clock"
    );
}

/// Register is allowed after login too: it creates the account and leaves
/// the connection's own session as it was.
#[tokio::test]
async fn register_after_login_makes_another_account_and_keeps_the_session() {
    let server = TestServer::start().await;
    let (alice, a) = server.user("alice").await;
    alice.register("carol", PASSWORD).await.unwrap();
    let found = alice.users(vec![], vec!["carol".into()]).await.unwrap();
    assert_eq!(found.len(), 1, "carol exists");
    // Still alice: her own Send is from her.
    let ack = alice.send_text(found[0].user_id, "r1", "hi").await.unwrap();
    let (carol, _) = server.device("carol", "d1").await;
    let page = carol.sync_page(vec![], 0, 0).await.unwrap();
    let m = &page.messages[0];
    assert_eq!((m.sender_id, m.seq), (a.user_id, ack.seq));
}
