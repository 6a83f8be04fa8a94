//! The admin console's live parts against a real server: the dashboard's
//! figures over Server-Sent Events move with the traffic; the server's log
//! read from memory, tailed live, exported, its level changed while running
//! (a viewer may not), and one user's debug lines traced; the console's
//! page and files served with their security headers.

mod common;

use common::admin::{admin_call, admin_cli, admin_events, create_admin, header, AdminClient};
use common::{Binary, TestServer};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::timeout;

/// The next event named `name` (others skipped), within `wait`.
async fn next_event(
    rx: &mut tokio::sync::mpsc::Receiver<(String, Value)>,
    name: &str,
    wait: Duration,
) -> Value {
    timeout(wait, async {
        loop {
            let (event, data) = rx.recv().await.expect("the stream goes on");
            if event == name {
                return data;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {name} event within {wait:?}"))
}

#[tokio::test]
async fn the_dashboard_moves_with_the_traffic() {
    let dir = tempfile::tempdir().unwrap();
    create_admin(dir.path(), "root", "admin", &[]).await;
    let s = TestServer::start_in(dir, |_| {}).await;
    let root = AdminClient::login(s.http, "root").await;
    let mut stats = admin_events(s.http, "/admin/api/dashboard", &root.cookie);
    let first = next_event(&mut stats, "stats", Duration::from_secs(5)).await;
    for key in [
        "connections",
        "messages_in_per_sec",
        "users_online",
        "at_ms",
    ] {
        assert!(first.get(key).is_some(), "no {key} in {first}");
    }
    // Two users online, sending: the figures show it within a few samples.
    let (a, _) = s.user("ann").await;
    let (_b, b_ok) = s.user("ben").await;
    let sender = natter_testkit::spawn(async move {
        for i in 0..2_000u32 {
            let m = a
                .send_text(b_ok.user_id, &format!("m{i}"), &format!("hello {i}"))
                .await;
            if m.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let mut seen = Value::Null;
    let moved = timeout(Duration::from_secs(15), async {
        loop {
            seen = next_event(&mut stats, "stats", Duration::from_secs(5)).await;
            if seen["messages_in_per_sec"].as_f64().unwrap() > 0.0
                && seen["pushes_out_per_sec"].as_f64().unwrap() > 0.0
                && seen["users_online"].as_f64().unwrap() >= 2.0
                && seen["delivery_p99_ms"].as_f64().is_some()
            {
                return;
            }
        }
    })
    .await;
    assert!(moved.is_ok(), "the dashboard did not move: {seen}");
    sender.abort();
    // Without a session there is no dashboard.
    let (st, _, _) = admin_call(s.http, "GET", "/admin/api/dashboard", None, None, None).await;
    assert_eq!(st, 401);
    s.stop().await;
}

#[tokio::test]
async fn the_console_is_served_with_its_files_and_headers() {
    let s = TestServer::start().await;
    for path in ["/admin", "/admin/"] {
        let (st, _, h) = admin_call(s.http, "GET", path, None, None, None).await;
        assert_eq!(st, 200, "{path}");
        assert!(header(&h, "content-type").unwrap().starts_with("text/html"));
        let csp = header(&h, "content-security-policy").expect("a CSP");
        assert!(csp.contains("default-src 'self'"), "{csp}");
        assert_eq!(header(&h, "x-frame-options"), Some("DENY"));
    }
    let (st, _, h) = admin_call(s.http, "GET", "/admin/assets/admin.js", None, None, None).await;
    assert_eq!(st, 200);
    assert!(header(&h, "content-type").unwrap().contains("javascript"));
    let etag = header(&h, "etag").expect("an ETag").to_owned();
    let (st, _, _) = common::admin::admin_call_with(
        s.http,
        "/admin/assets/admin.js",
        &[("if-none-match", etag.as_str())],
    )
    .await;
    assert_eq!(st, 304);
    let (st, _, _) = admin_call(s.http, "GET", "/admin/assets/nope.js", None, None, None).await;
    assert_eq!(st, 404);
    s.stop().await;
}

#[tokio::test]
async fn the_log_is_read_tailed_exported_and_its_level_changed_live() {
    let dir = tempfile::tempdir().unwrap();
    create_admin(dir.path(), "root", "admin", &[]).await;
    create_admin(dir.path(), "watcher", "viewer", &[]).await;
    let bin = Binary::start(dir.path(), &[("NATTER_LOG__LEVEL", "info")], &[]).await;
    let http = bin.http.unwrap();
    let root = AdminClient::login(http, "root").await;

    // What the server logged at start, from memory.
    let (st, page) = root
        .get("/admin/api/logs?level=info&q=natter%20is%20up")
        .await;
    assert_eq!(st, 200, "{page}");
    assert_eq!(page["level"], "info");
    let lines = page["lines"].as_array().unwrap();
    assert!(
        lines.iter().any(|l| l["message"] == "natter is up"),
        "{page}"
    );
    let (st, v) = root.get("/admin/api/logs?level=loud").await;
    assert_eq!((st, v["code"].as_str()), (400, Some("INVALID_ARGUMENT")));

    // The live tail shows an admin action as it happens. It starts after the
    // last line read, so a line logged before the stream is up comes too.
    let last = lines.last().and_then(|l| l["seq"].as_u64()).unwrap_or(0);
    let mut tail = admin_events(
        http,
        &format!("/admin/api/logs/stream?level=info&q=actor%3Dwatcher&after={last}"),
        &root.cookie,
    );
    let watcher = AdminClient::login(http, "watcher").await;
    let line = next_event(&mut tail, "line", Duration::from_secs(10)).await;
    assert!(
        line["fields"].as_str().unwrap().contains("watcher"),
        "{line}"
    );

    // A viewer may not change the level; an admin may, at once.
    let (st, v) = watcher
        .put("/admin/api/logs/level", json!({"level": "debug"}))
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("FORBIDDEN")));
    let (st, v) = root
        .put("/admin/api/logs/level", json!({"level": "nonsense=!!"}))
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (400, Some("INVALID_ARGUMENT")),
        "{v}"
    );
    let (st, v) = root
        .put("/admin/api/logs/level", json!({"level": "debug"}))
        .await;
    assert_eq!((st, v["level"].as_str()), (200, Some("debug")));
    // A chat login now shows at debug level, naming its user.
    let mut c = natter_client::Client::connect(&bin.tcp).await.unwrap();
    c.register("dora", common::PASSWORD).await.unwrap();
    let ok = c.login("dora", common::PASSWORD, "d1").await.unwrap();
    let user = ok.user_id;
    let found = timeout(Duration::from_secs(10), async {
        loop {
            let (_, p) = root.get("/admin/api/logs?level=debug").await;
            let hit = p["lines"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["level"] == "debug" && l["user"].as_u64() == Some(user));
            if hit {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(found.is_ok(), "no debug line about user {user}");

    // Back to info; a trace keeps one user's debug lines anyway.
    let (st, _) = root
        .put("/admin/api/logs/level", json!({"level": "info"}))
        .await;
    assert_eq!(st, 200);
    let (st, v) = root
        .post("/admin/api/traces", json!({"user_id": user, "minutes": 1}))
        .await;
    assert_eq!(st, 200, "{v}");
    // Any request of hers is logged at debug level with her id (this one
    // is refused: there is no conversation with oneself).
    let _ = c.send_text(user, "self-1", "note to self").await;
    let traced = timeout(Duration::from_secs(10), async {
        loop {
            let (st, _, body) = common::admin::admin_get_text(
                http,
                &format!("/admin/api/traces/{user}"),
                &root.cookie,
            )
            .await;
            if st == 200 && body.lines().any(|l| l.contains("\"level\":\"debug\"")) {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the trace keeps the user's debug lines");
    assert!(traced
        .lines()
        .all(|l| { serde_json::from_str::<Value>(l).unwrap()["user"].as_u64() == Some(user) }));
    let (_, list) = root.get("/admin/api/traces").await;
    assert_eq!(list["traces"][0]["user_id"].as_u64(), Some(user));

    // The export is text, and the level changes are in the audit log.
    let (st, _, text) =
        common::admin::admin_get_text(http, "/admin/api/logs/export?level=info", &root.cookie)
            .await;
    assert_eq!(st, 200);
    assert!(text.contains("natter is up"), "{text}");
    let (_, audit) = root.get("/admin/api/audit").await;
    let actions: Vec<(&str, &str, bool)> = audit["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["actor"].as_str().unwrap(),
                l["action"].as_str().unwrap(),
                l["ok"].as_bool().unwrap(),
            )
        })
        .filter(|(_, a, _)| a.starts_with("log."))
        .collect();
    assert_eq!(
        actions,
        [
            ("root", "log.trace", true),
            ("root", "log.level", true),
            ("root", "log.level", true),
            ("root", "log.level", false),
            ("watcher", "log.level", false),
        ]
    );
    drop(bin);
}

/// The deployment's `natter admin` commands through a real server: groups
/// found, shown, a member removed and the group dismissed; the
/// configuration with each key's source; the log level read and changed,
/// the log read, one user traced.
#[tokio::test]
async fn the_command_line_operates_groups_the_configuration_and_the_log() {
    use natter_client::pb;
    let dir = tempfile::tempdir().unwrap();
    create_admin(dir.path(), "root", "admin", &[]).await;
    let bin = Binary::start(dir.path(), &[("NATTER_LOG__LEVEL", "info")], &[]).await;
    let http = bin.http.unwrap();
    let user = |name: &'static str| {
        let tcp = bin.tcp.clone();
        async move {
            let mut c = natter_client::Client::connect(&tcp).await.unwrap();
            c.register(name, common::PASSWORD).await.unwrap();
            let id = c.login(name, common::PASSWORD, "d1").await.unwrap().user_id;
            (c, id)
        }
    };
    let (alice, _) = user("alice").await;
    let (_bob, bob_id) = user("bob").await;
    let g = alice
        .create_group(
            pb::ConversationKind::Group,
            "climbers",
            pb::JoinPolicy::Open,
            vec![bob_id],
        )
        .await
        .unwrap();
    let id = g.conversation_id.to_string();

    let (ok, out, err) = admin_cli(http, &["groups", "--search", "climb"]).await;
    assert!(ok, "{err}");
    let row = out.lines().find(|l| l.contains("climbers")).expect(&out);
    assert!(row.contains(&id) && row.contains("live"), "{out}");
    let (ok, out, err) = admin_cli(http, &["group", &id]).await;
    assert!(ok, "{err}");
    assert!(out.contains("\"username\": \"bob\""), "{out}");
    let (ok, _, err) = admin_cli(http, &["remove-member", &id, "bob"]).await;
    assert!(ok, "{err}");
    let (_, out, _) = admin_cli(http, &["group", &id]).await;
    assert!(!out.contains("\"username\": \"bob\""), "{out}");
    // Dismissing needs --yes; then the group says so.
    let (ok, _, err) = admin_cli(http, &["dismiss-group", &id]).await;
    assert!(!ok && err.contains("--yes"), "{err}");
    let (ok, _, err) = admin_cli(http, &["dismiss-group", &id, "--yes"]).await;
    assert!(ok, "{err}");
    let (_, out, _) = admin_cli(http, &["groups", "--search", "climb"]).await;
    assert!(out.contains("dismissed"), "{out}");

    // The configuration: a key set by the environment says so, and is live.
    let (ok, out, err) = admin_cli(http, &["config", "--key", "log."]).await;
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .any(|l| l == "log.level = \"info\"  # env, live"),
        "{out}"
    );
    assert!(out.lines().all(|l| l.starts_with("log.")), "{out}");

    // The level, read and changed; the log, read; a user traced.
    let (_, out, _) = admin_cli(http, &["log-level"]).await;
    assert_eq!(out.trim(), "info");
    let (ok, out, err) = admin_cli(http, &["log-level", "debug"]).await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "debug");
    let (ok, out, err) = admin_cli(http, &["logs", "--search", "natter is up"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("INFO") && out.contains("natter is up"),
        "{out}"
    );
    let (ok, _, err) = admin_cli(http, &["trace", "alice", "--minutes", "1"]).await;
    assert!(ok, "{err}");
    let _ = alice.ping().await;
    let traced = timeout(Duration::from_secs(10), async {
        loop {
            let (ok, out, _) = admin_cli(http, &["trace", "alice", "--show"]).await;
            if ok && out.lines().any(|l| l.contains("\"level\":\"debug\"")) {
                return out;
            }
            let _ = alice.ping().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the trace keeps alice's debug lines");
    assert!(traced.lines().all(|l| l.contains("\"user\":")), "{traced}");
    let (_, audit, _) = admin_cli(http, &["audit"]).await;
    for action in [
        "group.dismiss",
        "group.remove_member",
        "log.level",
        "log.trace",
    ] {
        assert!(audit.contains(action), "{action}: {audit}");
    }
    drop(bin);
}
