//! The environment `natter serve` reads: `NATTER_DATA_DIR` and
//! `NATTER_<SECTION>__<KEY>` are server settings; the client's variables
//! (`NATTER_SERVER`, `NATTER_PASSWORD`) and any other `NATTER_*` are not.

mod common;

use common::*;
use natter_client::{pb, Client};

/// The README's client variables, and one of the user's own.
const CLIENT_ENV: &[(&str, &str)] = &[
    ("NATTER_SERVER", "127.0.0.1:1"),
    ("NATTER_PASSWORD", "not a section"),
    ("NATTER_CONFIG_DIR", "/nonexistent"),
    ("NATTER_FOO", "bar"),
];

#[tokio::test]
async fn serve_starts_and_serves_beside_the_clients_variables() {
    let dir = tempfile::tempdir().unwrap();
    let server = Binary::start(dir.path(), CLIENT_ENV, &[]).await;
    // The CLI, with its own variables pointing at this server, in the same
    // environment.
    let config_dir = tempfile::tempdir().unwrap();
    let cli = |args: &'static [&'static str]| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_natter"));
        cmd.args(args)
            .env("NATTER_SERVER", &server.tcp)
            .env("NATTER_PASSWORD", PASSWORD)
            .env("NATTER_CONFIG_DIR", config_dir.path())
            .env("NATTER_FOO", "bar");
        cmd
    };
    for args in [
        &["client", "register", "alice"][..],
        &["client", "register", "bob"][..],
        &["client", "send", "--user", "alice", "--to", "bob", "hi"][..],
    ] {
        let out = cli(args).output().await.unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut bob = Client::connect(&server.tcp).await.unwrap();
    bob.login("bob", PASSWORD, "d1").await.unwrap();
    let page = bob.sync_page(vec![], 0, 0).await.unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(text(&page.messages[0]), "hi");
}

#[tokio::test]
async fn an_unknown_key_in_the_servers_shape_stops_start_up_naming_the_variable() {
    for var in ["NATTER_LISTEN__NOPE", "NATTER_NOSECTION__X"] {
        let dir = tempfile::tempdir().unwrap();
        let out = tokio::time::timeout(
            WAIT,
            tokio::process::Command::new(env!("CARGO_BIN_EXE_natter"))
                .args(["serve", "--tcp-addr", "127.0.0.1:0", "--ws-addr", ""])
                .args(["--http-addr", "127.0.0.1:0", "--data-dir"])
                .arg(dir.path())
                .env(var, "1")
                .envs(CLIENT_ENV.iter().copied())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("serve refuses at once")
        .unwrap();
        assert!(!out.status.success(), "{var} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("environment variable {var}")) && err.contains("unknown field"),
            "{var}: {err}"
        );
    }
}

#[tokio::test]
async fn section_variables_still_apply() {
    let dir = tempfile::tempdir().unwrap();
    let server = Binary::start(
        dir.path(),
        &[("NATTER_LIMITS__MAX_MESSAGE_BYTES", "1234")],
        &[],
    )
    .await;
    let mut raw = Raw::connect(&server.tcp).await;
    raw.request(
        1,
        natter_proto::ClientFrame::Hello(pb::Hello {
            min_version: 1,
            max_version: 1,
            client_name: "env".into(),
        }),
    )
    .await;
    match raw.frame().await {
        Some((1, natter_client::ServerFrame::HelloOk(ok))) => {
            assert_eq!(ok.max_message_bytes, 1234)
        }
        other => panic!("expected HelloOk, got {other:?}"),
    }
}
