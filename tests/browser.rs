//! The web chat client and the admin console in a real Chromium:
//! `tests/browser/chat.mjs` (playwright-core) drives two users through the
//! chat page against a real server started here, with the friends-only
//! default for 1:1s; `tests/browser/admin.mjs` an administrator through the
//! console beside a chat user's page, against the real binary.
//!
//! It needs node, Chromium (`/usr/bin/chromium`, or `NATTER_CHROMIUM`) and
//! `npm ci --prefix tests/browser`. Where one is missing the test says which
//! and passes, unless `NATTER_TEST_BROWSER=1` (as in CI) requires it.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole run, from the browser's start to the last assertion.
const RUN_LIMIT: Duration = Duration::from_secs(240);

/// Why the browser test cannot run here, if it cannot.
fn missing(root: &Path) -> Option<String> {
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("node is not installed".into());
    }
    let chromium = std::env::var("NATTER_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Some(format!("no Chromium at {chromium}"));
    }
    let playwright = root.join("tests/browser/node_modules/playwright-core");
    if !playwright.exists() {
        return Some("tests/browser/node_modules is missing: npm ci --prefix tests/browser".into());
    }
    None
}

/// Whether the browser tests run here: `None` (and why, printed) when one
/// of what they need is missing and CI does not require them.
fn can_run(root: &Path) -> bool {
    if let Some(why) = missing(root) {
        let required = std::env::var("NATTER_TEST_BROWSER").is_ok_and(|v| v == "1");
        assert!(!required, "NATTER_TEST_BROWSER=1 but {why}");
        eprintln!("skipping the browser test: {why}");
        return false;
    }
    true
}

/// Where the screenshots go.
fn shots(root: &Path) -> PathBuf {
    std::env::var("NATTER_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target/screenshots"))
}

/// Runs `tests/browser/<script>` with `args` to its end, its output going
/// straight to the test's, step by step; fails the test if it fails.
async fn run_script(root: &Path, script: &str, args: &[String]) {
    let mut child = tokio::process::Command::new("node")
        .arg(root.join("tests/browser").join(script))
        .args(args)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let status = match tokio::time::timeout(RUN_LIMIT, child.wait()).await {
        Ok(status) => status.unwrap(),
        Err(_) => {
            child.kill().await.unwrap();
            panic!("the browser run took over {RUN_LIMIT:?}");
        }
    };
    assert!(status.success(), "{script} failed: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_in_a_real_browser() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if !can_run(&root) {
        return;
    }
    // 1:1s between friends only, the default. Chromium starting beside a
    // debug build on a small machine stalls the server's runtime for a
    // moment: at the default lag thresholds it would shed registrations and
    // typing (best effort) and fail a test that is about the client.
    let server = TestServer::start_with(|c| {
        c.social.direct_messages = natter::config::DirectMessages::Friends;
        c.overload.shed_lag_ms = 5_000;
        c.overload.essential_lag_ms = 10_000;
    })
    .await;
    let args = [
        format!("http://{}", server.http),
        shots(&root).display().to_string(),
    ];
    run_script(&root, "chat.mjs", &args).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_works_in_a_real_browser() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if !can_run(&root) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    common::admin::create_admin(dir.path(), "root", "admin", &[]).await;
    // The real binary: its log is kept in memory for the console.
    let bin = Binary::start(
        dir.path(),
        &[
            ("NATTER_LOG__LEVEL", "info"),
            ("NATTER_OVERLOAD__SHED_LAG_MS", "5000"),
            ("NATTER_OVERLOAD__ESSENTIAL_LAG_MS", "10000"),
        ],
        &[],
    )
    .await;
    // Load for the dashboard: two users sending to each other all along.
    // loada also runs a group with loadb in it, for the console's groups
    // page, and is traced there.
    let tcp = bin.tcp.clone();
    let (ready, loada) = tokio::sync::oneshot::channel();
    let load = natter_testkit::spawn(async move {
        let (mut a, mut b) = (
            natter_client::Client::connect(&tcp).await.unwrap(),
            natter_client::Client::connect(&tcp).await.unwrap(),
        );
        a.register("loada", PASSWORD).await.unwrap();
        b.register("loadb", PASSWORD).await.unwrap();
        let me = a.login("loada", PASSWORD, "d").await.unwrap().user_id;
        let to = b.login("loadb", PASSWORD, "d").await.unwrap().user_id;
        let kind = natter_client::pb::ConversationKind::Group;
        let open = natter_client::pb::JoinPolicy::Open;
        a.create_group(kind, "crew", open, vec![to]).await.unwrap();
        ready.send(me).unwrap();
        for i in 0u64.. {
            if a.send_text(to, &format!("l{i}"), "load").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let args = [
        format!("http://{}", bin.http.unwrap()),
        shots(&root).display().to_string(),
        "root".into(),
        common::admin::ADMIN_PASSWORD.into(),
        loada.await.unwrap().to_string(),
    ];
    run_script(&root, "admin.mjs", &args).await;
    load.abort();
}
