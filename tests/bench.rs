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

/// A server that dies during a run: the report says what went wrong (the
/// refused connections to its address), not only how much.
#[tokio::test]
async fn a_server_killed_mid_run_yields_a_report_naming_the_error() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Binary::start(data.path(), &[], &[]).await;
    let tokens = data.path().join("tokens.json");
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(["bench", "dm", "--clients", "8", "--rate", "200"])
        .args(["--duration", "3", "--procs", "2", "--json"])
        .args(["--reconnect-for", "1"])
        .args(["--server", &server.tcp, "--server-pid"])
        .arg(server.pid().to_string())
        .arg("--tokens")
        .arg(&tokens)
        .stderr(std::process::Stdio::piped())
        .output();
    let run = natter_testkit::spawn(run);
    // Setup, then about a second of sending.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("bench ends")
        .unwrap()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
    });
    assert!(r["sent"].as_u64().unwrap() > 0, "{r}");
    assert!(r["errors"]["count"].as_u64().unwrap() > 0, "{r}");
    let first: Vec<&str> = r["errors"]["first"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(
        first
            .iter()
            .any(|m| m.contains(&server.tcp) && m.contains("refused")),
        "{first:?}"
    );
    assert!(first.iter().any(|m| m.contains("has gone")), "{first:?}");
}

/// The PIDs of `pid`'s child processes.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return vec![];
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// SIGTERM to `natter bench` stops its workers and still prints what it
/// has, marked partial.
#[tokio::test]
async fn sigterm_to_bench_stops_its_workers_and_reports() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bench = tokio::process::Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(["bench", "connect", "--clients", "6", "--duration", "60"])
        .args([
            "--procs",
            "2",
            "--json",
            "--server",
            &server.tcp,
            "--tokens",
        ])
        .arg(dir.path().join("tokens.json"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = bench.id().unwrap();
    let workers = tokio::time::timeout(WAIT, async {
        loop {
            let w = children(pid);
            if w.len() == 2 {
                return w;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("two workers start");
    // Let them connect and start holding.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let out = tokio::time::timeout(WAIT, bench.wait_with_output())
        .await
        .expect("bench stops on SIGTERM")
        .unwrap();
    assert!(!out.status.success(), "a cut run is not a success");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
    });
    assert_eq!(r["partial"], true, "{r}");
    let first = r["errors"]["first"].to_string();
    assert!(first.contains("interrupted by SIGTERM"), "{first}");
    for w in workers {
        assert!(
            !std::path::Path::new(&format!("/proc/{w}")).exists(),
            "worker {w} still there"
        );
    }
}
