//! The web chat client in a real Chromium: `tests/browser/chat.mjs`
//! (playwright-core) drives two users through the page against a real
//! server started here, with the friends-only default for 1:1s.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_in_a_real_browser() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if let Some(why) = missing(&root) {
        let required = std::env::var("NATTER_TEST_BROWSER").is_ok_and(|v| v == "1");
        assert!(!required, "NATTER_TEST_BROWSER=1 but {why}");
        eprintln!("skipping the browser test: {why}");
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
    let shots = std::env::var("NATTER_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target/screenshots"));
    // The script's output goes straight to the test's, step by step.
    let mut child = tokio::process::Command::new("node")
        .arg(root.join("tests/browser/chat.mjs"))
        .arg(format!("http://{}", server.http))
        .arg(&shots)
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
    assert!(status.success(), "chat.mjs failed: {status}");
    server.stop().await;
}
