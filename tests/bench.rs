//! `natter bench` against a real server: the load generator's own counts
//! must add up (every ACKed message delivered once, in order).

mod common;

use common::*;

async fn bench(server: &TestServer, tokens: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(["bench"])
        .args(args)
        .args(["--server", &server.tcp, "--json", "--tokens"])
        .arg(tokens)
        .output()
        .await
        .expect("run natter bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON report")
}

#[tokio::test]
async fn dm_connect_and_storm_report_consistent_counts() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.json");

    let r = bench(
        &server,
        &tokens,
        &[
            "dm",
            "--clients",
            "8",
            "--rate",
            "400",
            "--duration",
            "1",
            "--procs",
            "2",
        ],
    )
    .await;
    assert_eq!(r["scenario"], "dm");
    assert_eq!(r["connected"], 8);
    let sent = r["sent"].as_u64().unwrap();
    assert!(sent >= 300, "open loop at 400/s for 1 s sent {sent}");
    assert_eq!(r["acked"], sent);
    assert_eq!(r["delivered"], sent);
    assert_eq!(
        (
            r["lost"].as_u64(),
            r["duplicates"].as_u64(),
            r["out_of_order"].as_u64()
        ),
        (Some(0), Some(0), Some(0))
    );
    assert!(r["latency_ms"]["p50"].as_f64().unwrap() > 0.0);

    // A second run reuses the cached tokens: no new accounts, same users.
    let r = bench(
        &server,
        &tokens,
        &["connect", "--clients", "8", "--duration", "0.2"],
    )
    .await;
    assert_eq!(
        (r["connected"].as_u64(), r["connect_failed"].as_u64()),
        (Some(8), Some(0))
    );
    let r = bench(
        &server,
        &tokens,
        &["storm", "--clients", "8", "--procs", "2", "--source-ips"],
    )
    .await;
    assert_eq!(r["connected"], 8);
}

#[tokio::test]
async fn group_scenario_counts_every_delivery_to_every_member() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.json");
    let r = bench(
        &server,
        &tokens,
        &[
            "group",
            "--clients",
            "30",
            "--senders",
            "3",
            "--rate",
            "60",
            "--duration",
            "1",
        ],
    )
    .await;
    assert_eq!(r["scenario"], "group");
    assert_eq!(r["connected"], 30);
    let acked = r["acked"].as_u64().unwrap();
    assert!(acked >= 45, "open loop at 60/s for 1 s acked {acked}");
    // Every member but the 3 senders receives every message.
    assert_eq!(r["delivered"].as_u64(), Some(acked * 27));
    assert_eq!(
        (
            r["lost"].as_u64(),
            r["duplicates"].as_u64(),
            r["out_of_order"].as_u64()
        ),
        (Some(0), Some(0), Some(0))
    );
}

/// On a friends-only server the dm pairs must be friends, whatever client
/// count made the accounts: here a connect run of 12 makes them, and dm runs
/// of 8 pair users 0-3 with 4-7, which nobody had befriended.
#[tokio::test]
async fn dm_pairs_become_friends_whatever_run_made_the_accounts() {
    let server = friends_only_server().await;
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.json");
    let r = bench(
        &server,
        &tokens,
        &["connect", "--clients", "12", "--duration", "0"],
    )
    .await;
    assert_eq!(r["connected"], 12);
    for _ in 0..2 {
        let r = bench(
            &server,
            &tokens,
            &["dm", "--clients", "8", "--rate", "200", "--duration", "0.5"],
        )
        .await;
        let sent = r["sent"].as_u64().unwrap();
        assert!(sent >= 50, "sent {sent}");
        assert_eq!(r["send_failed"], 0, "{r}");
        assert_eq!(r["acked"], sent);
        assert_eq!(r["delivered"], sent);
    }
}
