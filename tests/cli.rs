//! The `natter client` command-line contract that scripts rely on.

mod common;

use common::cli::Cli;
use common::*;

#[tokio::test]
async fn register_send_and_sync_json() {
    let server = TestServer::start().await;
    let cli = Cli::new(&server.tcp);
    for user in ["alice", "bob"] {
        cli.ok(Some(PASSWORD), &["register", user]).await;
    }
    for text in ["first", "second", "third"] {
        cli.ok(
            Some(PASSWORD),
            &["send", "--user", "alice", "--to", "bob", text],
        )
        .await;
    }
    let out = cli
        .ok(
            Some(PASSWORD),
            &["send", "--user", "bob", "--to", "alice", "--json", "reply"],
        )
        .await;
    let ack: serde_json::Value = serde_json::from_str(&out).expect("one JSON ACK");
    assert_eq!(ack["seq"], 4);

    let out = cli
        .ok(Some(PASSWORD), &["sync", "--user", "bob", "--json"])
        .await;
    let got: Vec<(String, String, u64, String)> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("each line is JSON"))
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
    let cli = Cli::new(&server.tcp);
    let nowhere = Cli::new("127.0.0.1:1");
    cli.ok(Some(PASSWORD), &["register", "alice"]).await;
    let cases = [
        (&cli, Some(PASSWORD), vec!["register", "alice"], "taken"),
        (
            &cli,
            Some("wrong password"),
            vec!["sync", "--user", "alice", "--json"],
            "wrong username or password",
        ),
        (
            &cli,
            Some(PASSWORD),
            vec!["send", "--user", "alice", "--to", "nobody", "hi"],
            "nobody",
        ),
        (
            &nowhere,
            Some(PASSWORD),
            vec!["register", "x"],
            "cannot connect",
        ),
        // No saved session and no password: how to get one.
        (
            &cli,
            None,
            vec!["sync", "--user", "alice"],
            "natter client --server",
        ),
        (&cli, None, vec!["register", "bob"], "NATTER_PASSWORD"),
        // No --user and nobody logged in.
        (&cli, Some(PASSWORD), vec!["sync"], "--user"),
    ];
    for (cli, password, args, needle) in cases {
        let out = cli.run(password, &args).await;
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("error:") && err.contains(needle),
            "{args:?}: {err}"
        );
    }
}

/// Reads the listener's stderr until it says it is live.
async fn until_listening(listener: &mut tokio::process::Child) {
    let stderr = listener.stderr.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
    let ready = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("listener ready in time")
        .unwrap();
    assert!(ready.is_some_and(|l| l.contains("listening")));
}

fn texts(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn listen_prints_live_messages_and_history_prints_the_conversation() {
    let server = TestServer::start().await;
    let cli = Cli::new(&server.tcp);
    let (alice, _) = server.user("alice").await;
    let (_bob, bob) = server.user("bob").await;
    alice
        .send_text(bob.user_id, "old", "before listening")
        .await
        .unwrap();
    let mut listener = cli
        .command(
            Some(PASSWORD),
            &["listen", "--user", "bob", "--count", "2", "--json"],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    until_listening(&mut listener).await;
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
    assert_eq!(
        texts(&out.stdout),
        vec!["live one", "live two"],
        "only messages after the start, once each"
    );

    let out = cli
        .ok(
            Some(PASSWORD),
            &["history", "--user", "bob", "--with", "alice", "--json"],
        )
        .await;
    let seqs: Vec<u64> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, vec![1, 2, 3], "oldest first");
}

/// The README's walkthrough: log in once, `listen` in one terminal, and
/// commands as the same user in another leave it running.
#[tokio::test]
async fn login_saves_a_private_session_and_listen_survives_other_commands() {
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::start().await;
    let cli = Cli::new(&server.tcp);
    cli.ok(Some(PASSWORD), &["register", "alice"]).await;
    cli.ok(Some("bob password"), &["register", "bob"]).await;

    // A wrong password is refused and saves nothing.
    let out = cli
        .run(Some("nope nope"), &["login", "--user", "bob"])
        .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrong username or password"), "{err}");
    assert!(!cli.config.path().join("sessions.json").exists());

    cli.ok(Some(PASSWORD), &["login", "--user", "alice"]).await;
    cli.ok(Some("bob password"), &["login", "--user", "bob"])
        .await;
    for file in ["sessions.json", "device"] {
        let mode = std::fs::metadata(cli.config.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    let saved = std::fs::read_to_string(cli.config.path().join("sessions.json")).unwrap();
    assert!(!saved.contains("bob password"), "tokens only, no password");

    // From here on no password anywhere: the saved sessions serve.
    cli.ok(None, &["friend", "--user", "alice", "add", "bob"])
        .await;
    let requests = cli.ok(None, &["friend", "requests", "--json"]).await;
    let id = serde_json::from_str::<serde_json::Value>(requests.lines().next().unwrap()).unwrap()
        ["request_id"]
        .to_string();
    cli.ok(None, &["friend", "accept", &id]).await; // as bob: the last one logged in

    let mut listener = cli
        .command(None, &["listen", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    until_listening(&mut listener).await;
    // Commands as bob himself, while he listens.
    cli.ok(None, &["send", "--to", "alice", "hello alice"])
        .await;
    let who = cli.ok(None, &["whoami", "--json"]).await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&who).unwrap()["username"],
        "bob"
    );
    for text in ["one", "two"] {
        cli.ok(None, &["send", "--user", "alice", "--to", "bob", text])
            .await;
    }
    // Still listening: it sees bob's own message and alice's, none cut off.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        listener.try_wait().unwrap().is_none(),
        "listen is still running"
    );
    listener.start_kill().unwrap();
    let out = listener.wait_with_output().await.unwrap();
    assert_eq!(texts(&out.stdout), vec!["hello alice", "one", "two"]);

    // Logout ends bob's sessions on the server: his token no longer works,
    // and the client says what to do.
    let stolen = saved_token(&cli, "bob");
    cli.ok(None, &["logout"]).await;
    let mut c = server.client().await;
    let e = c.resume(&stolen.0, &stolen.1).await.unwrap_err();
    assert_eq!(e.code(), Some(natter_client::pb::ErrorCode::TokenInvalid));
    let out = cli.run(None, &["sync", "--user", "bob"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("login --user bob"),
        "{err}"
    );
    // Alice's session is untouched.
    cli.ok(None, &["sync", "--user", "alice"]).await;
}

/// `logout --user bob` while bob listens elsewhere: the listener says he
/// was logged out (not that his session connected again elsewhere), and
/// commands without `--user` go on as alice, who is still logged in.
#[tokio::test]
async fn logout_ends_a_running_listen_and_leaves_the_other_user_current() {
    let server = TestServer::start().await;
    let cli = Cli::new(&server.tcp);
    for user in ["alice", "bob"] {
        cli.ok(Some(PASSWORD), &["register", user]).await;
        cli.ok(Some(PASSWORD), &["login", "--user", user]).await;
    }
    let mut listener = cli
        .command(None, &["listen", "--user", "bob"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = listener.stderr.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
    let ready = tokio::time::timeout(WAIT, lines.next_line()).await.unwrap();
    assert!(ready.unwrap().is_some_and(|l| l.contains("listening")));

    let out = cli.ok(None, &["logout", "--user", "bob"]).await;
    assert!(out.contains("now act as alice"), "{out}");
    let status = tokio::time::timeout(WAIT, listener.wait())
        .await
        .expect("listen ends when bob logs out")
        .unwrap();
    assert!(!status.success());
    let mut said = String::new();
    while let Ok(Some(l)) = lines.next_line().await {
        said.push_str(&l);
    }
    assert!(said.contains("bob was logged out"), "{said}");
    assert!(!said.contains("elsewhere"), "{said}");

    let who = cli.ok(None, &["whoami", "--json"]).await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&who).unwrap()["username"],
        "alice"
    );
    // Once nobody is logged in, logout says so, and so does whoami.
    let out = cli.ok(None, &["logout"]).await;
    assert!(out.contains("nobody is logged in"), "{out}");
    let out = cli.run(None, &["whoami"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("login --user NAME"), "{err}");
}

/// A saved session the server has ended: the command says so and asks for
/// a new login.
#[tokio::test]
async fn a_revoked_saved_session_asks_to_log_in_again() {
    let server = TestServer::start().await;
    let cli = Cli::new(&server.tcp);
    cli.ok(Some(PASSWORD), &["register", "alice"]).await;
    cli.ok(Some(PASSWORD), &["login", "--user", "alice"]).await;
    // A password change revokes every other session of the user.
    let mut c = server.client().await;
    c.login("alice", PASSWORD, "elsewhere").await.unwrap();
    c.change_password(PASSWORD, "another password")
        .await
        .unwrap();
    let out = cli.run(None, &["sync"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("saved session of alice") && err.contains("log in again"),
        "{err}"
    );
}

/// (token, device) of one of `user`'s saved sessions.
fn saved_token(cli: &Cli, user: &str) -> (String, String) {
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(cli.config.path().join("sessions.json")).unwrap(),
    )
    .unwrap();
    let devices = saved["servers"][&cli.server]["users"][user]["devices"]
        .as_object()
        .unwrap();
    let (device, t) = devices.iter().next().unwrap();
    (t["token"].as_str().unwrap().to_owned(), device.clone())
}

#[tokio::test]
async fn serve_prints_a_configuration_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[listen]\ntcp = 5\n").unwrap();
    let out = natter(&["serve", "--config", config.to_str().unwrap()]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("expected a string").count(), 1, "{err}");
    assert!(err.contains("listen.tcp"), "{err}");
}

#[tokio::test]
async fn serve_help_points_to_the_configuration_reference() {
    let out = natter(&["serve", "--help"]).await;
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in ["docs/CONFIG.md", "NATTER_LISTEN__TCP", "NATTER_DATA_DIR"] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
}

/// Runs `natter client <cmd> --user <user> ... --json` and returns its JSON
/// lines, failing the test on a non-zero exit.
async fn json_lines(cli: &Cli, user: &str, cmd: &[&str]) -> Vec<serde_json::Value> {
    let mut args = cmd[..1].to_vec();
    args.extend_from_slice(&["--user", user]);
    args.extend_from_slice(&cmd[1..]);
    args.push("--json");
    cli.ok(Some(PASSWORD), &args)
        .await
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test]
async fn friends_groups_and_the_conversation_list_from_the_cli() {
    let server = friends_only_server().await;
    let cli = Cli::new(&server.tcp);
    let s = &cli;
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
    let out = cli
        .run(
            Some(PASSWORD),
            &["group", "--user", "carol", "send", &id, "let me in"],
        )
        .await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a member"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `listen`, `sync` and `conversations` show a group message as said in
/// its group and system events as sentences, not as JSON.
#[tokio::test]
async fn group_messages_and_events_read_as_a_person_says_them() {
    use natter_client::pb;
    let server = TestServer::start().await;
    let cli = Cli::new(&server.tcp);
    let (alice, _) = server.user("alice").await;
    let (_bob, bob) = server.user("bob").await;
    let (carol, carol_login) = server.user("carol").await;
    let mut listener = cli
        .command(Some(PASSWORD), &["listen", "--user", "bob", "--count", "5"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    until_listening(&mut listener).await;
    // The group is new to the listener: it learns its name and kind.
    let g = alice
        .create_group(
            pb::ConversationKind::Group,
            "team",
            pb::JoinPolicy::Open,
            vec![bob.user_id],
        )
        .await
        .unwrap();
    let id = g.conversation_id;
    alice.send_to(id, "m1", "hello team").await.unwrap();
    alice.invite(id, vec![carol_login.user_id]).await.unwrap();
    carol.leave_group(id).await.unwrap();
    alice.recall(id, 2).await.unwrap();
    let out = tokio::time::timeout(WAIT, listener.wait_with_output())
        .await
        .expect("listen exits after --count")
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = [
        format!("[{id}#1] team: alice created the group team with bob"),
        format!("[{id}#2] alice -> team: hello team"),
        format!("[{id}#3] team: alice added carol"),
        format!("[{id}#4] team: carol left"),
        format!("[{id}#5] team: alice recalled message 2"),
    ];
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .collect::<Vec<_>>(),
        want
    );

    // Sync shows the stored message as recalled now.
    let out = cli.ok(Some(PASSWORD), &["sync", "--user", "bob"]).await;
    assert!(
        out.contains(&format!("[{id}#2] alice -> team: (recalled)")),
        "{out}"
    );
    assert!(out.contains(&format!("[{id}#4] team: carol left")), "{out}");
    let out = cli
        .ok(Some(PASSWORD), &["conversations", "--user", "bob"])
        .await;
    assert!(out.starts_with(&format!("[{id}] team unread ")), "{out}");
    assert!(out.contains("alice recalled message 2"), "{out}");
    assert!(!out.contains('{'), "no JSON: {out}");
}
