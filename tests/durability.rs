//! Durability and lifecycle with the real binary: every ACKed message
//! survives SIGKILL; SIGTERM and in-process shutdown drain with GOING_AWAY;
//! a second server on the same data directory refuses to start.

mod common;

use common::*;
use natter_client::{pb, Client, Inbox};
use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts `natter serve` on a free port over `dir`; returns it and its address.
async fn spawn_server(dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_natter"))
        .args([
            "serve",
            "--tcp-addr",
            "127.0.0.1:0",
            "--ws-addr",
            "",
            "--http-addr",
            "",
        ])
        .arg("--data-dir")
        .arg(dir)
        .env("NATTER_PASSWORD__ARGON2_MEMORY_KIB", "64")
        .env("NATTER_PASSWORD__ARGON2_ITERATIONS", "1")
        .env("NATTER_LIMITS__SEND_RATE_PER_SEC", "100000")
        .env("NATTER_LIMITS__SEND_BURST", "100000")
        .env("NATTER_THROTTLE__REGISTER_BURST_PER_ADDRESS", "100000")
        .env("NATTER_THROTTLE__LOGIN_BURST_PER_ADDRESS", "100000")
        .env("NATTER_LOG__LEVEL", "warn")
        .env("NATTER_SOCIAL__DIRECT_MESSAGES", "anyone")
        // The test suite's own variables must not upset the server.
        .env("NATTER_TEST_POSTGRES_URL", "postgres://unused")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn natter");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let addr = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(a) = line.strip_prefix("natter tcp=") {
                return a.to_owned();
            }
        }
        panic!("natter exited before printing its address");
    })
    .await
    .expect("natter starts in time");
    (child, addr)
}

async fn login(addr: &str, user: &str, device: &str) -> (Client, pb::LoginOk) {
    let mut c = Client::connect(addr).await.expect("connect");
    let ok = c.login(user, PASSWORD, device).await.expect("login");
    (c, ok)
}

#[tokio::test]
async fn acked_messages_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, addr) = spawn_server(dir.path()).await;
    let c = Client::connect(&addr).await.unwrap();
    c.register("alice", PASSWORD).await.unwrap();
    c.register("bob", PASSWORD).await.unwrap();
    let (_, bob) = login(&addr, "bob", "b1").await;

    // Four devices send concurrently; every ACK is recorded. The server is
    // killed while more sends are still in flight.
    let mut acked: Vec<(String, pb::SendAck)> = Vec::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut senders = Vec::new();
    for d in 0..4 {
        let (dev, _) = login(&addr, "alice", &format!("a{d}")).await;
        let tx = tx.clone();
        let to = bob.user_id;
        senders.push(natter_testkit::spawn(async move {
            for i in 0.. {
                let id = format!("a{d}-{i}");
                match dev.send_text(to, &id, &format!("text of {id}")).await {
                    Ok(ack) => {
                        if tx.send((id, ack)).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    drop(tx);
    while acked.len() < 300 {
        acked.push(rx.recv().await.expect("acks keep coming"));
    }
    server.start_kill().expect("SIGKILL");
    server.wait().await.unwrap();
    for s in senders {
        let _ = s.await;
    }
    while let Ok(a) = rx.try_recv() {
        acked.push(a);
    }

    eprintln!("acked {} messages before the kill", acked.len());
    let (_server2, addr2) = spawn_server(dir.path()).await;
    let (bob_again, _) = login(&addr2, "bob", "b2").await;
    let stored = Inbox::default().sync(&bob_again, 500).await.unwrap();
    let by_seq: HashMap<u64, &pb::Message> = stored.iter().map(|m| (m.seq, m)).collect();
    for (id, ack) in &acked {
        let m = by_seq
            .get(&ack.seq)
            .unwrap_or_else(|| panic!("ACKed seq {} lost", ack.seq));
        assert_eq!((m.msg_id, &m.client_msg_id), (ack.msg_id, id));
        assert_eq!(text(m), format!("text of {id}"));
    }
    let seqs: Vec<u64> = stored.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (1..=stored.len() as u64).collect::<Vec<_>>(),
        "dense across the crash"
    );

    // Resending every id, ACKed or not, never creates a second message.
    let (alice_again, _) = login(&addr2, "alice", "a0").await;
    for (id, ack) in acked.iter().take(20) {
        let again = alice_again
            .send_text(bob.user_id, id, "resend")
            .await
            .unwrap();
        assert!(again.duplicate);
        assert_eq!(again.seq, ack.seq);
    }
    let next = alice_again
        .send_text(bob.user_id, "after-restart", "new")
        .await
        .unwrap();
    assert_eq!(
        next.seq,
        stored.len() as u64 + 1,
        "seq continues without reuse"
    );
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_refuses_to_start() {
    if !on_sqlite("the data directory lock") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let first = Binary::start(dir.path(), &[], &[]).await;

    let mut second = Command::new(env!("CARGO_BIN_EXE_natter"));
    second
        .args(["serve", "--tcp-addr", "127.0.0.1:0", "--ws-addr", ""])
        .args(["--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("NATTER_TEST_POSTGRES_URL", "postgres://unused")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in BINARY_ENV {
        second.env(k, v);
    }
    let out = tokio::time::timeout(WAIT, second.output())
        .await
        .expect("the second server exits in time")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{:?}: {stderr}", out.status);
    assert!(stderr.contains("cannot open the database"), "{stderr}");
    assert!(
        stderr.contains("in use by another natter process"),
        "{stderr}"
    );

    // The first server never noticed.
    let c = Client::connect(&first.tcp).await.unwrap();
    c.register("alice", PASSWORD).await.unwrap();
    let (_alice, ok) = login(&first.tcp, "alice", "a").await;
    assert!(ok.user_id > 0);
    assert_eq!(first.get("/healthz").await.0, 200);
}

#[tokio::test]
async fn sigterm_drains_clients_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, addr) = spawn_server(dir.path()).await;
    let c = Client::connect(&addr).await.unwrap();
    c.register("alice", PASSWORD).await.unwrap();
    let (mut alice, _) = login(&addr, "alice", "a").await;
    let pid = server.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let d = next_disconnect(&mut alice).await;
    assert_eq!(d.reason(), pb::DisconnectReason::GoingAway);
    assert!(d.reconnect_after_ms > 0);
    let exit = tokio::time::timeout(WAIT, server.wait())
        .await
        .expect("exits in time")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn shutdown_flushes_acks_says_going_away_and_keeps_data() {
    let server = TestServer::start().await;
    let (mut alice, _) = server.user("alice").await;
    let (mut bob, bob_login) = server.user("bob").await;
    let ack = alice
        .send_text(bob_login.user_id, "last", "last words")
        .await
        .unwrap();
    server.shutdown.cancel();
    for c in [&mut alice, &mut bob] {
        let d = next_disconnect(c).await;
        assert_eq!(d.reason(), pb::DisconnectReason::GoingAway);
        assert_eq!(d.reconnect_after_ms, 1000);
    }
    // New connections are no longer accepted once draining starts.
    let dir = server.stop().await;
    let restarted = TestServer::start_in(dir, |_| {}).await;
    let (b2, _) = restarted.device("bob", "again").await;
    let got = Inbox::default().sync(&b2, 10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].seq, got[0].msg_id, text(&got[0])),
        (ack.seq, ack.msg_id, "last words")
    );
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// New messages and cursor raises are durable in the message log before
/// the database has them (`crates/store/src/sqlite/log.rs`): after SIGKILL
/// the next start copies them in, over and over, and a clean stop leaves
/// no log behind.
#[tokio::test]
async fn messages_and_cursors_in_the_log_survive_repeated_sigkills() {
    if !on_sqlite("the SQLite message log") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log_segments = || {
        std::fs::read_dir(dir.path().join("natter.db-log"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let (mut server, mut addr) = spawn_server(dir.path()).await;
    let c = Client::connect(&addr).await.unwrap();
    c.register("alice", PASSWORD).await.unwrap();
    c.register("bob", PASSWORD).await.unwrap();
    let mut sent = 0u64;
    for round in 1..=3u64 {
        let (alice, _) = login(&addr, "alice", "a").await;
        let (bob, bob_ok) = login(&addr, "bob", "b").await;
        let mut conversation = 0;
        for i in 0..40 {
            let id = format!("r{round}-{i}");
            let ack = alice
                .send_text(bob_ok.user_id, &id, &format!("text of {id}"))
                .await
                .unwrap();
            sent += 1;
            assert_eq!(ack.seq, sent, "dense across restarts");
            conversation = ack.conversation_id;
        }
        // Bob got all but the last 10, and read all but the last 20.
        bob.delivery_ack(conversation, sent - 10).await.unwrap();
        bob.mark_read(conversation, sent - 20).await.unwrap();
        assert!(log_segments() > 0, "the log holds them");
        drop((alice, bob));
        server.start_kill().expect("SIGKILL");
        server.wait().await.unwrap();

        (server, addr) = spawn_server(dir.path()).await;
        let (bob, _) = login(&addr, "bob", "b").await;
        let got = Inbox::default().sync(&bob, 500).await.unwrap();
        let ids: Vec<String> = got.iter().map(|m| m.client_msg_id.clone()).collect();
        let want: Vec<String> = (1..=round)
            .flat_map(|r| (0..40).map(move |i| format!("r{r}-{i}")))
            .collect();
        assert_eq!(ids, want, "every message once, in order");
        let list = bob.conversations(10).await.unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!((list[0].last_seq, list[0].read_seq), (sent, sent - 20));
        assert_eq!(list[0].unread, 20);
        let (alice, _) = login(&addr, "alice", "a").await;
        let page = alice.sync_page(vec![], 0, 1).await.unwrap();
        let delivered: Vec<(u64, u64)> = page.conversations[0]
            .delivered
            .iter()
            .map(|d| (d.user_id, d.seq))
            .collect();
        assert!(
            delivered.contains(&(bob_ok.user_id, sent - 10)),
            "bob's delivery cursor: {delivered:?}"
        );
    }
    // A clean stop copies everything in and removes the log.
    let pid = server.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(WAIT, server.wait())
        .await
        .expect("exits in time")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert_eq!(log_segments(), 0, "no log after a clean stop");
    let (_server, addr) = spawn_server(dir.path()).await;
    let (bob, _) = login(&addr, "bob", "b").await;
    assert_eq!(Inbox::default().sync(&bob, 500).await.unwrap().len(), 120);
}

/// Once the message log is busy (a mebibyte in a segment) the server writes
/// segments ahead with zeros and overwrites them in place
/// (`crates/store/src/sqlite/engine/log/spare.rs`): messages ACKed into
/// one survive SIGKILL like any other, every one once and in order, and
/// the restart leaves no spare behind.
#[tokio::test]
async fn messages_in_a_segment_written_ahead_survive_sigkill() {
    if !on_sqlite("the SQLite message log") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("natter.db-log");
    // The segments written ahead: as long as a whole segment from the start.
    let written_ahead = || {
        std::fs::read_dir(&log_dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
                    .filter(|e| e.metadata().is_ok_and(|m| m.len() >= 64 << 20))
                    .count()
            })
            .unwrap_or(0)
    };
    let (mut server, addr) = spawn_server(dir.path()).await;
    let c = Client::connect(&addr).await.unwrap();
    c.register("alice", PASSWORD).await.unwrap();
    c.register("bob", PASSWORD).await.unwrap();
    let (alice, _) = login(&addr, "alice", "a").await;
    let (bob, bob_ok) = login(&addr, "bob", "b").await;
    let mut want = Vec::new();
    let mut send = |id: String, text: String| {
        want.push(id.clone());
        let (alice, to, n) = (&alice, bob_ok.user_id, want.len() as u64);
        async move {
            let ack = alice.send_text(to, &id, &text).await.unwrap();
            assert_eq!(ack.seq, n, "dense");
        }
    };
    // A mebibyte and a half of messages makes the log busy.
    for i in 0..48 {
        send(format!("big-{i}"), format!("{i:>32768}")).await;
    }
    assert_eq!(written_ahead(), 0, "nothing written ahead yet");
    // Small ones go on until a spare is ready and a round has moved onto it.
    let mut i = 0;
    tokio::time::timeout(WAIT, async {
        while written_ahead() == 0 {
            send(format!("small-{i}"), format!("small {i}")).await;
            i += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a segment written ahead in time");
    for j in 0..20 {
        send(format!("after-{j}"), format!("in place {j}")).await;
    }
    drop((alice, bob));
    server.start_kill().expect("SIGKILL");
    server.wait().await.unwrap();

    let (_server, addr) = spawn_server(dir.path()).await;
    let (bob, _) = login(&addr, "bob", "b").await;
    let got = Inbox::default().sync(&bob, 500).await.unwrap();
    let ids: Vec<String> = got.iter().map(|m| m.client_msg_id.clone()).collect();
    assert_eq!(ids, want, "every message once, in order");
    assert!(
        !log_dir.join("spare.zero").exists(),
        "the spare the killed server left is gone; a quiet log makes none"
    );
}
