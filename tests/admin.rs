//! The admin API and `natter admin ...` against a real server: an
//! administrator made by the command line logs in (cookie + CSRF), finds
//! accounts, disables one whose connection closes at once, bans one for a
//! time that ends by itself, ends sessions, resets a password; a viewer may
//! only look; wrong passwords back off; everything is in the audit log.
//! Groups made by users are found, looked at, dismissed and thinned by an
//! administrator, their members told; the effective configuration names
//! where each key came from and hides secrets.

mod common;

use common::admin::{admin_call, admin_cli, create_admin, header, AdminClient, ADMIN_PASSWORD};
use common::http::{call, register_and_login};
use common::{
    code, next_disconnect, next_message, store_env_for, system_event, Binary, TestServer, PASSWORD,
};
use natter_client::Client;
use natter_proto::pb;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

async fn rest_login(addr: SocketAddr, name: &str, password: &str) -> (u16, Value) {
    let (st, v, _) = call(
        addr,
        "POST",
        "/v1/login",
        None,
        Some(json!({"username": name, "password": password, "device_id": "again"})),
    )
    .await;
    (st, v)
}

#[tokio::test]
async fn an_administrator_finds_disables_bans_and_resets_accounts_and_all_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let made = create_admin(dir.path(), "root", "admin", &[]).await;
    assert!(made.contains("made administrator root"), "{made}");
    create_admin(dir.path(), "watcher", "viewer", &[]).await;
    let s = TestServer::start_in(dir, |_| {}).await;
    let addr = s.http;

    // Not logged in, a wrong password, a forged change.
    let (st, v, _) = admin_call(addr, "GET", "/admin/api/users", None, None, None).await;
    assert_eq!((st, v["code"].as_str()), (401, Some("NOT_AUTHENTICATED")));
    let (st, v, _) = admin_call(
        addr,
        "POST",
        "/admin/api/login",
        None,
        None,
        Some(json!({"name": "root", "password": "wrong password"})),
    )
    .await;
    assert_eq!((st, v["code"].as_str()), (401, Some("BAD_CREDENTIALS")));
    let root = AdminClient::login(addr, "root").await;
    let (st, me) = root.get("/admin/api/me").await;
    assert_eq!((st, me["role"].as_str()), (200, Some("admin")));
    assert_eq!(me["csrf"], root.csrf);

    // Chat users: alice connected over TCP, bob over HTTP.
    let (mut alice, alice_ok) = s.user("alice").await;
    let alice_id = alice_ok.user_id;
    let (bob_id, bob_token) = register_and_login(addr, "bob").await;

    // Find them, page by page.
    let (st, page) = root.get("/admin/api/users?q=LIC").await;
    assert_eq!(st, 200);
    let names: Vec<&str> = page["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice"]);
    let (_, first) = root.get("/admin/api/users?limit=1").await;
    assert_eq!(first["users"][0]["id"], alice_id);
    let after = first["next_after"].as_u64().expect("a next page");
    let (_, second) = root
        .get(&format!("/admin/api/users?limit=1&after={after}"))
        .await;
    assert_eq!(second["users"][0]["id"], bob_id);
    let (_, one) = root.get(&format!("/admin/api/users/{alice_id}")).await;
    assert_eq!(one["username"], "alice");
    assert_eq!(one["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(one["online"], true);
    assert!(one["last_login_ms"].as_i64().unwrap() > 0);
    let (st, _) = root.get("/admin/api/users/999999").await;
    assert_eq!(st, 404);
    // A server handed a whole configuration says so of every key.
    let (st, conf) = root.get("/admin/api/config").await;
    assert_eq!(st, 200);
    let keys = conf["keys"].as_array().unwrap();
    assert!(keys.len() > 50, "{conf}");
    assert!(keys.iter().all(|k| k["source"] == "given"), "{conf}");

    // A change without the CSRF token is refused and changes nothing.
    let (st, v, _) = admin_call(
        addr,
        "POST",
        &format!("/admin/api/users/{alice_id}/disable"),
        Some(&root.cookie),
        Some("forged"),
        Some(json!({})),
    )
    .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("FORBIDDEN")));
    let (st, _) = rest_login(addr, "alice", PASSWORD).await;
    assert_eq!(st, 200, "alice is still enabled");

    // Someone writing to her: allowed now, refused once she is disabled.
    let (carl, _) = s.user("carl").await;
    carl.send_text(alice_id, "c1", "hi alice").await.unwrap();

    // Disabled: her open connection is closed at once and she cannot log in.
    let (st, v) = root
        .post(
            &format!("/admin/api/users/{alice_id}/disable"),
            json!({"reason": "spam"}),
        )
        .await;
    assert_eq!(st, 204, "{v}");
    let d = next_disconnect(&mut alice).await;
    assert_eq!(d.reason, pb::DisconnectReason::Kicked as i32);
    assert!(d.message.contains("disabled"), "{}", d.message);
    let (st, v) = rest_login(addr, "alice", PASSWORD).await;
    assert_eq!((st, v["code"].as_str()), (403, Some("ACCOUNT_DISABLED")));
    assert!(
        carl.send_text(alice_id, "c2", "still there?")
            .await
            .is_err(),
        "a disabled account takes no new messages"
    );
    let (_, one) = root.get(&format!("/admin/api/users/{alice_id}")).await;
    assert_eq!(
        (one["disabled"].as_bool(), one["reason"].as_str()),
        (Some(true), Some("spam"))
    );
    assert!(one["sessions"].as_array().unwrap().is_empty());
    let (st, _) = root
        .post(&format!("/admin/api/users/{alice_id}/enable"), json!({}))
        .await;
    assert_eq!(st, 204);
    let (st, _) = rest_login(addr, "alice", PASSWORD).await;
    assert_eq!(st, 200, "enabled again");

    // Banned for two seconds: refused, then let in by itself.
    let (st, v) = root
        .post(
            &format!("/admin/api/users/{bob_id}/ban"),
            json!({"seconds": 2, "reason": "cool down"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v, _) = call(addr, "GET", "/v1/me", Some(&bob_token), None).await;
    assert_eq!(st, 401, "a banned account's token is ended: {v}");
    let (st, v) = rest_login(addr, "bob", PASSWORD).await;
    assert_eq!((st, v["code"].as_str()), (403, Some("ACCOUNT_DISABLED")));
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let (st, v) = rest_login(addr, "bob", PASSWORD).await;
    assert_eq!(st, 200, "the ban ended by itself: {v}");

    // Every session ended: both devices' connections close.
    let (mut a1, _) = s.device("alice", "phone").await;
    let (mut a2, _) = s.device("alice", "laptop").await;
    let (st, v) = root
        .post(&format!("/admin/api/users/{alice_id}/logout"), json!({}))
        .await;
    assert_eq!(st, 200);
    assert!(v["sessions"].as_u64().unwrap() >= 2, "{v}");
    for c in [&mut a1, &mut a2] {
        let d = next_disconnect(c).await;
        assert_eq!(d.reason, pb::DisconnectReason::Kicked as i32);
    }

    // A new password: the old one no longer works, the new one does.
    let (st, v) = root
        .post(&format!("/admin/api/users/{alice_id}/password"), json!({}))
        .await;
    assert_eq!(st, 200);
    let new = v["password"].as_str().unwrap().to_owned();
    assert_eq!(rest_login(addr, "alice", PASSWORD).await.0, 401);
    assert_eq!(rest_login(addr, "alice", &new).await.0, 200);

    // A viewer looks but changes nothing.
    let watcher = AdminClient::login(addr, "watcher").await;
    let (st, _) = watcher.get("/admin/api/users").await;
    assert_eq!(st, 200);
    let (st, v) = watcher
        .post(&format!("/admin/api/users/{bob_id}/disable"), json!({}))
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("FORBIDDEN")));
    assert_eq!(rest_login(addr, "bob", PASSWORD).await.0, 200);

    // The audit log: who did what to whom, the refusals too, newest first.
    let (st, log) = root.get("/admin/api/audit?limit=100").await;
    assert_eq!(st, 200);
    let lines: Vec<(String, String, String, bool)> = log["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["actor"].as_str().unwrap().to_owned(),
                l["action"].as_str().unwrap().to_owned(),
                l["target"].as_str().unwrap().to_owned(),
                l["ok"].as_bool().unwrap(),
            )
        })
        .collect();
    let a = format!("user:{alice_id}");
    let b = format!("user:{bob_id}");
    let want = [
        ("watcher", "user.disable", b.as_str(), false),
        ("watcher", "admin.login", "", true),
        ("root", "user.reset_password", a.as_str(), true),
        ("root", "user.logout", a.as_str(), true),
        ("root", "user.ban", b.as_str(), true),
        ("root", "user.enable", a.as_str(), true),
        ("root", "user.disable", a.as_str(), true),
        ("root", "admin.login", "", true),
        ("root", "admin.login", "", false),
    ];
    let got: Vec<(&str, &str, &str, bool)> = lines
        .iter()
        .map(|(w, a, t, ok)| (w.as_str(), a.as_str(), t.as_str(), *ok))
        .take(want.len())
        .collect();
    assert_eq!(got, want);
    assert!(
        lines
            .iter()
            .any(|(w, a, t, _)| w.starts_with("cli:") && a == "admin.create" && t == "admin:root"),
        "{lines:?}"
    );

    // Logged out, the cookie is worth nothing.
    let (st, _) = root.post("/admin/api/logout", json!({})).await;
    assert_eq!(st, 204);
    let (st, _) = root.get("/admin/api/users").await;
    assert_eq!(st, 401);
    s.stop().await;
}

#[tokio::test]
async fn admin_logins_back_off_and_the_cli_acts_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    create_admin(dir.path(), "root", "admin", &[]).await;
    // A name taken: refused unless replaced.
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_natter"));
    cmd.args(["admin", "create-admin", "--name", "root", "--data-dir"])
        .arg(dir.path())
        .env("NATTER_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdin(std::process::Stdio::null());
    cmd.envs(store_env_for(dir.path()).await);
    let out = cmd.output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));
    let replaced = create_admin(dir.path(), "root", "admin", &["--replace"]).await;
    assert!(
        replaced.contains("replaced administrator root"),
        "{replaced}"
    );

    let s = TestServer::start_in(dir, |c| {
        c.throttle.failed_login_free_per_user = 3;
    })
    .await;
    let addr = s.http;
    let (mut carol, ok) = s.user("carol").await;

    // The command line, as the administrator, through the running server.
    let (ok_, listed, err) = admin_cli(addr, &["users", "--search", "car"]).await;
    assert!(ok_, "{err}");
    assert!(
        listed.contains("carol") && listed.contains("active"),
        "{listed}"
    );
    let (ok_, _, err) = admin_cli(addr, &["disable", "carol", "--reason", "cli"]).await;
    assert!(ok_, "{err}");
    let d = next_disconnect(&mut carol).await;
    assert_eq!(d.reason, pb::DisconnectReason::Kicked as i32);
    let (_, shown, _) = admin_cli(addr, &["user", &ok.user_id.to_string()]).await;
    assert!(shown.contains("\"disabled\": true"), "{shown}");
    let (_, audit, _) = admin_cli(addr, &["audit"]).await;
    assert!(audit.contains("user.disable"), "{audit}");

    // Wrong passwords for one administrator back off (429), and then even
    // the right one waits: guessing is slowed the same as for chat users.
    let mut codes = Vec::new();
    for _ in 0..6 {
        let (st, _, _) = admin_call(
            addr,
            "POST",
            "/admin/api/login",
            None,
            None,
            Some(json!({"name": "root", "password": "guess"})),
        )
        .await;
        codes.push(st);
    }
    assert_eq!(&codes[..3], &[401, 401, 401], "{codes:?}");
    assert!(codes[3..].iter().all(|&c| c == 429), "{codes:?}");
    let (st, _, h) = admin_call(
        addr,
        "POST",
        "/admin/api/login",
        None,
        None,
        Some(json!({"name": "root", "password": ADMIN_PASSWORD})),
    )
    .await;
    assert_eq!(st, 429);
    assert!(header(&h, "retry-after").is_some());
    s.stop().await;
}

#[tokio::test]
async fn the_admin_api_is_not_served_on_a_public_listener_and_has_its_own_document() {
    // On the loopback HTTP listener by default.
    let s = TestServer::start().await;
    let (st, doc, _) = admin_call(s.http, "GET", "/admin/api/openapi.json", None, None, None).await;
    assert_eq!(st, 200);
    for p in [
        "/admin/api/login",
        "/admin/api/users",
        "/admin/api/users/{id}/disable",
        "/admin/api/users/{id}/ban",
        "/admin/api/audit",
        "/admin/api/config",
        "/admin/api/groups",
        "/admin/api/groups/{id}",
        "/admin/api/groups/{id}/dismiss",
        "/admin/api/groups/{id}/members/{user_id}/remove",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} is not documented");
    }
    s.stop().await;
    // With a listener of its own, the HTTP listener no longer serves it.
    let s = TestServer::start_with(|c| c.listen.admin = "127.0.0.1:0".into()).await;
    let (st, _, _) = admin_call(s.http, "GET", "/admin/api/me", None, None, None).await;
    assert_eq!(st, 404);
    s.stop().await;
    let s = TestServer::start_with(|c| c.listen.admin = "none".into()).await;
    let (st, _, _) = admin_call(s.http, "GET", "/admin/api/me", None, None, None).await;
    assert_eq!(st, 404);
    s.stop().await;
}

#[tokio::test]
async fn a_deleted_account_loses_its_data_and_its_name_is_free_again() {
    let dir = tempfile::tempdir().unwrap();
    create_admin(dir.path(), "root", "admin", &[]).await;
    let s = TestServer::start_in(dir, |_| {}).await;
    let addr = s.http;
    let root = AdminClient::login(addr, "root").await;
    let (mut gone, gone_ok) = s.user("gone").await;
    let id = gone_ok.user_id;
    let (friend, friend_ok) = s.user("friend").await;
    // A friendship and a message: the message stays in the friend's
    // history, the friendship goes.
    let req = gone.friend_request(friend_ok.user_id, "hi").await.unwrap();
    friend
        .respond_friend_request(req.request_id, true, "")
        .await
        .unwrap();
    gone.send_text(friend_ok.user_id, "g1", "remember me")
        .await
        .unwrap();
    assert_eq!(friend.friends().await.unwrap().friends.len(), 1);

    let (st, v, _) = admin_call(
        addr,
        "DELETE",
        &format!("/admin/api/users/{id}"),
        Some(&root.cookie),
        Some(&root.csrf),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["sessions"], 1);
    let d = next_disconnect(&mut gone).await;
    assert_eq!(d.reason, pb::DisconnectReason::Kicked as i32);
    assert!(friend.friends().await.unwrap().friends.is_empty());
    let (_, shown) = root.get(&format!("/admin/api/users/{id}")).await;
    assert_eq!(shown["username"], format!("~deleted-{id}"));
    assert_eq!(shown["disabled"], true);
    assert!(shown["sessions"].as_array().unwrap().is_empty());
    // The old password opens nothing; the name is free for someone new.
    assert_eq!(rest_login(addr, "gone", PASSWORD).await.0, 401);
    let (new_id, _) = register_and_login(addr, "gone").await;
    assert_ne!(new_id, id);
    // Deleted once only; the audit log has it.
    let (st, _, _) = admin_call(
        addr,
        "DELETE",
        &format!("/admin/api/users/{id}"),
        Some(&root.cookie),
        Some(&root.csrf),
        None,
    )
    .await;
    assert_eq!(st, 404);
    let (_, log) = root.get("/admin/api/audit").await;
    let line = &log["lines"][1];
    assert_eq!(
        (line["action"].as_str(), line["ok"].as_bool()),
        (Some("user.delete"), Some(true))
    );
    s.stop().await;
}

#[tokio::test]
async fn the_configuration_names_where_each_key_came_from_and_hides_secrets() {
    let dir = tempfile::tempdir().unwrap();
    create_admin(dir.path(), "root", "admin", &[]).await;
    let file = dir.path().join("natter.toml");
    std::fs::write(
        &file,
        "[limits]\nmax_connections = 1234\n\n[files.s3]\nsecret_access_key = \"very secret\"\naccess_key_id = \"AKIAEXAMPLE\"\n",
    )
    .unwrap();
    let file = file.to_str().unwrap().to_owned();
    let bin = Binary::start_args(
        dir.path(),
        &[("NATTER_LOG__FORMAT", "json")],
        &[],
        &["--config", &file],
    )
    .await;
    let root = AdminClient::login(bin.http.unwrap(), "root").await;
    let (st, conf) = root.get("/admin/api/config").await;
    assert_eq!(st, 200, "{conf}");
    let keys = conf["keys"].as_array().unwrap();
    let key = |k: &str| {
        keys.iter()
            .find(|x| x["key"] == k)
            .unwrap_or_else(|| panic!("no {k} in {conf}"))
            .clone()
    };
    let source = |k: &str| key(k)["source"].as_str().unwrap().to_owned();
    assert_eq!(key("limits.max_connections")["value"], 1234);
    assert_eq!(source("limits.max_connections"), "file");
    assert_eq!(key("log.format")["value"], "json");
    assert_eq!(source("log.format"), "env");
    assert_eq!(source("listen.http"), "flag");
    assert_eq!(source("data_dir"), "flag");
    let secret = key("files.s3.secret_access_key");
    assert_eq!(
        (secret["value"].as_str(), secret["source"].as_str()),
        (Some("***"), Some("file"))
    );
    assert_eq!(key("files.s3.access_key_id")["value"], "***");
    assert!(!conf.to_string().contains("very secret"));
    assert!(!conf.to_string().contains("AKIAEXAMPLE"));
    // Untouched: the default, which needs a restart to change.
    let beat = key("session.heartbeat_interval_ms");
    assert_eq!(beat["source"], "default");
    assert_eq!(
        (beat["live"].as_bool(), beat["note"].as_str()),
        (Some(false), Some("restart to change"))
    );
    // The log filter and the certificate change while the server runs.
    for k in ["log.level", "tls.cert", "tls.key"] {
        assert_eq!(key(k)["live"], true, "{k}");
        assert!(key(k).get("note").is_none(), "{k}");
    }
    // Leaves only: sections nest by dots.
    assert!(keys.iter().all(|k| !k["value"].is_object()), "{conf}");
}

/// Waits for the next system event of one type pushed to `c`.
async fn event_of(c: &mut Client, kind: &str) -> (pb::Message, Value) {
    loop {
        let m = next_message(c).await;
        if let Some(e) = system_event(&m) {
            if e["type"] == kind {
                return (m, e);
            }
        }
    }
}

#[tokio::test]
async fn an_administrator_finds_groups_removes_members_and_dismisses_them() {
    let dir = tempfile::tempdir().unwrap();
    create_admin(dir.path(), "root", "admin", &[]).await;
    create_admin(dir.path(), "watcher", "viewer", &[]).await;
    let s = TestServer::start_in(dir, |_| {}).await;
    let (mut alice, a) = s.user("alice").await;
    let (mut bob, b) = s.user("bob").await;
    let (mut carol, c) = s.user("carol").await;
    let g = alice
        .create_group(
            pb::ConversationKind::Group,
            "Spam Central",
            pb::JoinPolicy::Open,
            vec![b.user_id, c.user_id],
        )
        .await
        .unwrap();
    let id = g.conversation_id;
    alice
        .set_role(id, b.user_id, pb::Role::Admin)
        .await
        .unwrap();
    let other = alice
        .create_group(
            pb::ConversationKind::Room,
            "lobby",
            pb::JoinPolicy::Open,
            vec![],
        )
        .await
        .unwrap();

    // Found by a part of its name, in any case; shown with its members.
    let root = AdminClient::login(s.http, "root").await;
    let (st, page) = root.get("/admin/api/groups?q=spam").await;
    assert_eq!(st, 200, "{page}");
    let ids: Vec<u64> = page["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [id]);
    let (_, all) = root.get("/admin/api/groups").await;
    assert_eq!(all["groups"].as_array().unwrap().len(), 2);
    assert_eq!(all["groups"][1]["id"], other.conversation_id);
    assert_eq!(all["groups"][1]["kind"], "room");
    let (st, one) = root.get(&format!("/admin/api/groups/{id}")).await;
    assert_eq!(st, 200, "{one}");
    assert_eq!(
        (
            one["name"].as_str(),
            one["kind"].as_str(),
            one["owner_id"].as_u64()
        ),
        (Some("Spam Central"), Some("group"), Some(a.user_id))
    );
    assert_eq!(
        (one["member_count"].as_u64(), one["dismissed"].as_bool()),
        (Some(3), Some(false))
    );
    let members: Vec<(u64, &str)> = one["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["user_id"].as_u64().unwrap(), m["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        members,
        [
            (a.user_id, "owner"),
            (b.user_id, "admin"),
            (c.user_id, "member")
        ]
    );
    let (st, _) = root.get("/admin/api/groups/999999").await;
    assert_eq!(st, 404);

    // A viewer may look, not dismiss.
    let watcher = AdminClient::login(s.http, "watcher").await;
    let (st, _) = watcher.get(&format!("/admin/api/groups/{id}")).await;
    assert_eq!(st, 200);
    let (st, v) = watcher
        .post(
            &format!("/admin/api/groups/{id}/dismiss"),
            json!({"reason": "no"}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("FORBIDDEN")));

    // Removing a member: everyone hears it, as from an administrator of the
    // server; the owner is not removed (the group is dismissed instead).
    let (st, v) = root
        .post(
            &format!("/admin/api/groups/{id}/members/{}/remove", c.user_id),
            json!({}),
        )
        .await;
    assert_eq!(st, 204, "{v}");
    for client in [&mut alice, &mut bob, &mut carol] {
        let (_, e) = event_of(client, "kicked").await;
        assert_eq!(
            (e["by"].as_str(), e["actor_id"].as_u64()),
            (Some("operator"), Some(0))
        );
        assert_eq!(e["user_ids"], json!([c.user_id]));
    }
    assert_eq!(
        code(carol.send_to(id, "c1", "still here?").await),
        pb::ErrorCode::Forbidden
    );
    let (st, v) = root
        .post(
            &format!("/admin/api/groups/{id}/members/{}/remove", a.user_id),
            json!({}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("FORBIDDEN")), "{v}");

    // Dismissed: the members are told, and it is gone for them.
    let (st, v) = root
        .post(
            &format!("/admin/api/groups/{id}/dismiss"),
            json!({"reason": "spam"}),
        )
        .await;
    assert_eq!(st, 204, "{v}");
    for client in [&mut alice, &mut bob] {
        let (m, e) = event_of(client, "dismissed").await;
        assert_eq!(
            (e["by"].as_str(), e["actor_id"].as_u64()),
            (Some("operator"), Some(0))
        );
        assert_eq!(m.conversation_id, id);
    }
    assert_eq!(
        code(bob.send_to(id, "b1", "hello?").await),
        pb::ErrorCode::Forbidden
    );
    assert!(bob.my_groups().await.unwrap().is_empty());
    assert!(alice
        .my_groups()
        .await
        .unwrap()
        .iter()
        .all(|g| g.conversation_id != id));
    let (_, one) = root.get(&format!("/admin/api/groups/{id}")).await;
    assert_eq!(one["dismissed"], true);
    let (st, _) = root
        .post(&format!("/admin/api/groups/{id}/dismiss"), json!({}))
        .await;
    assert_eq!(st, 403, "dismissed once");

    // All in the audit log, the refusals too.
    let (_, log) = root.get("/admin/api/audit?limit=10").await;
    let got: Vec<(&str, &str, &str, bool)> = log["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["actor"].as_str().unwrap(),
                l["action"].as_str().unwrap(),
                l["target"].as_str().unwrap(),
                l["ok"].as_bool().unwrap(),
            )
        })
        .take(5)
        .collect();
    let t = format!("group:{id}");
    assert_eq!(
        got,
        [
            ("root", "group.dismiss", t.as_str(), false),
            ("root", "group.dismiss", t.as_str(), true),
            ("root", "group.remove_member", t.as_str(), false),
            ("root", "group.remove_member", t.as_str(), true),
            ("watcher", "group.dismiss", t.as_str(), false),
        ]
    );
    s.stop().await;
}
