//! The `natter client` command-line contract that scripts rely on.

mod common;

use common::*;

#[tokio::test]
async fn register_send_and_sync_json() {
    let server = TestServer::start().await;
    let s = server.tcp.as_str();
    for user in ["alice", "bob"] {
        let out = natter(&["client", "--server", s, "register", user, PASSWORD]).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for text in ["first", "second", "third"] {
        let out = natter(&[
            "client",
            "--server",
            s,
            "send",
            "--user",
            "alice",
            "--password",
            PASSWORD,
            "--to",
            "bob",
            text,
        ])
        .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = natter(&[
        "client",
        "--server",
        s,
        "send",
        "--user",
        "bob",
        "--password",
        PASSWORD,
        "--to",
        "alice",
        "--json",
        "reply",
    ])
    .await;
    let ack: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON ACK");
    assert_eq!(ack["seq"], 4);

    let out = natter(&[
        "client",
        "--server",
        s,
        "sync",
        "--user",
        "bob",
        "--password",
        PASSWORD,
        "--json",
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let got: Vec<(String, String, u64, String)> = lines
        .iter()
        .map(|v| {
            assert!(v["msg_id"].as_u64().unwrap() > 0);
            (
                v["from"].as_str().unwrap().into(),
                v["to"].as_str().unwrap().into(),
                v["seq"].as_u64().unwrap(),
                v["text"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want = [
        ("alice", "bob", 1, "first"),
        ("alice", "bob", 2, "second"),
        ("alice", "bob", 3, "third"),
        ("bob", "alice", 4, "reply"),
    ];
    assert_eq!(
        got,
        want.map(|(f, t, s, x)| (f.to_string(), t.to_string(), s, x.to_string()))
    );
}

#[tokio::test]
async fn failures_exit_non_zero_with_a_readable_message() {
    let server = TestServer::start().await;
    let s = server.tcp.as_str();
    natter(&["client", "--server", s, "register", "alice", PASSWORD]).await;
    let cases: [(&[&str], &str); 4] = [
        (
            &["client", "--server", s, "register", "alice", PASSWORD],
            "taken",
        ),
        (
            &[
                "client",
                "--server",
                s,
                "sync",
                "--user",
                "alice",
                "--password",
                "wrong password",
                "--json",
            ],
            "wrong username or password",
        ),
        (
            &[
                "client",
                "--server",
                s,
                "send",
                "--user",
                "alice",
                "--password",
                PASSWORD,
                "--to",
                "nobody",
                "hi",
            ],
            "nobody",
        ),
        (
            &[
                "client",
                "--server",
                "127.0.0.1:1",
                "register",
                "x",
                PASSWORD,
            ],
            "cannot connect",
        ),
    ];
    for (args, needle) in cases {
        let out = natter(args).await;
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("error:") && err.contains(needle),
            "{args:?}: {err}"
        );
    }
}

#[tokio::test]
async fn listen_prints_live_messages_and_history_prints_the_conversation() {
    let server = TestServer::start().await;
    let s = server.tcp.clone();
    let (alice, _) = server.user("alice").await;
    let (_bob, bob) = server.user("bob").await;
    alice
        .send_text(bob.user_id, "old", "before listening")
        .await
        .unwrap();
    let mut listener = tokio::process::Command::new(env!("CARGO_BIN_EXE_natter"))
        .args([
            "client",
            "--server",
            &s,
            "listen",
            "--user",
            "bob",
            "--password",
            PASSWORD,
            "--device",
            "cli-listen",
            "--count",
            "2",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The listener says on stderr when it has caught up and is live.
    let stderr = listener.stderr.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
    let ready = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("listener ready in time")
        .unwrap();
    assert!(ready.is_some_and(|l| l.contains("listening")));
    alice
        .send_text(bob.user_id, "l1", "live one")
        .await
        .unwrap();
    alice
        .send_text(bob.user_id, "l2", "live two")
        .await
        .unwrap();
    let out = tokio::time::timeout(WAIT, listener.wait_with_output())
        .await
        .expect("listen exits after --count")
        .unwrap();
    assert!(out.status.success());
    let texts: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        texts,
        vec!["live one", "live two"],
        "only messages after the start, once each"
    );

    let out = natter(&[
        "client",
        "--server",
        &s,
        "history",
        "--user",
        "bob",
        "--password",
        PASSWORD,
        "--with",
        "alice",
        "--json",
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seqs: Vec<u64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, vec![1, 2, 3], "oldest first");
}

/// Runs `natter client <cmd> --user <user> ... --json` and returns its JSON
/// lines, failing the test on a non-zero exit.
async fn json_lines(server: &str, user: &str, cmd: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["client", "--server", server];
    args.extend_from_slice(&cmd[..1]);
    args.extend_from_slice(&["--user", user, "--password", PASSWORD]);
    args.extend_from_slice(&cmd[1..]);
    args.push("--json");
    let out = natter(&args).await;
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test]
async fn friends_groups_and_the_conversation_list_from_the_cli() {
    let server = friends_only_server().await;
    let s = server.tcp.as_str();
    for user in ["alice", "bob", "carol"] {
        server
            .client()
            .await
            .register(user, PASSWORD)
            .await
            .unwrap();
    }
    let r = json_lines(s, "alice", &["friend", "add", "bob", "--message", "hi"]).await;
    let request_id = r[0]["request_id"].as_u64().unwrap().to_string();
    let incoming = json_lines(s, "bob", &["friend", "requests"]).await;
    assert_eq!(incoming[0]["from_username"], "alice");
    assert_eq!(incoming[0]["message"], "hi");
    json_lines(
        s,
        "bob",
        &["friend", "accept", &request_id, "--reply", "ok"],
    )
    .await;
    let friends = json_lines(s, "alice", &["friend", "list"]).await;
    assert_eq!(friends.len(), 1);
    assert_eq!(friends[0]["username"], "bob");

    let g = json_lines(s, "alice", &["group", "create", "team", "--members", "bob"]).await;
    assert_eq!(g[0]["member_count"], 2);
    let id = g[0]["conversation_id"].as_u64().unwrap().to_string();
    let ack = json_lines(
        s,
        "bob",
        &["group", "send", &id, "hello @alice", "--mention", "alice"],
    )
    .await;
    assert_eq!(ack[0]["seq"], 2);
    let list = json_lines(s, "alice", &["conversations"]).await;
    assert_eq!(list[0]["title"], "team");
    assert_eq!(list[0]["unread"], 1);
    assert_eq!(list[0]["mentioned"], true);
    let members = json_lines(s, "alice", &["group", "members", &id]).await;
    assert_eq!(members.len(), 2);

    // A refusal exits non-zero with the server's reason.
    let out = natter(&[
        "client",
        "--server",
        s,
        "group",
        "--user",
        "carol",
        "--password",
        PASSWORD,
        "send",
        &id,
        "let me in",
    ])
    .await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a member"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
