//! The cluster, black-box: real `natter serve` processes on one PostgreSQL
//! and one Redis, on their own ports. Cross-node delivery with every
//! guarantee of one node, sessions and revocations across nodes,
//! assignment, shared rate limits, rebalancing, and the tools asking
//! assignment (failures are in `cluster_failures.rs`). Skips (saying why) without NATTER_TEST_POSTGRES_URL and
//! NATTER_TEST_REDIS_URL; .ci/run sets both.

mod common;

use common::cluster::{live, services, text_send, Device, LocalCluster, LONG};
use common::{http_get, natter, PASSWORD};
use natter_client::{pb, Client, ServerFrame};
use std::collections::HashSet;
use std::time::Duration;

fn group_send(conversation: u64, id: &str) -> pb::Send {
    pb::Send {
        target: Some(pb::send::Target::ConversationId(conversation)),
        ..text_send(0, id)
    }
}

fn disconnect_in(f: ServerFrame) -> Option<pb::Disconnect> {
    match f {
        ServerFrame::Disconnect(d) => Some(d),
        _ => None,
    }
}

/// The client ids shown in `conversation`, in order.
fn shown_in(d: &Device, conversation: u64) -> Vec<String> {
    d.audit().remove(&conversation).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_cross_nodes_exactly_once_in_order() {
    let Some((pg, redis)) = services("messages_cross_nodes_exactly_once_in_order") else {
        return;
    };
    let c = LocalCluster::start(&pg, &redis, 3, &[]).await;
    let alice = c.user(0, "alice", "a1").await;
    let mut bob1 = c.user(1, "bob", "b1").await;
    let mut bob2 = c.user(2, "bob", "b2").await;
    let mut carol = c.user(2, "carol", "c1").await;
    assert_eq!(
        c.presence(bob1.user_id).await,
        ["n1", "n2"],
        "bob is on two nodes"
    );
    assert_eq!(c.presence(alice.user_id).await, ["n0"]);

    // 1:1 from node 0 to both of bob's devices, on nodes 1 and 2, pipelined.
    let a = alice.client();
    let acks = futures_util::future::join_all(
        (0..100).map(|i| a.send(text_send(bob1.user_id, &format!("m{i}")))),
    )
    .await;
    let seqs: Vec<u64> = acks.into_iter().map(|a| a.expect("ACK").seq).collect();
    assert_eq!(
        seqs,
        (1..=100).collect::<Vec<_>>(),
        "dense seqs, in the order sent"
    );
    let conversation = {
        let ack = alice
            .client()
            .send(text_send(bob1.user_id, "m100"))
            .await
            .expect("ACK");
        assert_eq!(ack.seq, 101);
        ack.conversation_id
    };
    let want: Vec<String> = (0..=100).map(|i| format!("m{i}")).collect();
    for bob in [&mut bob1, &mut bob2] {
        bob.until(LONG, |d| d.shown.len() >= 101).await;
        assert_eq!(
            shown_in(bob, conversation),
            want,
            "every message once, in order"
        );
    }

    // A resend through another node is the same message.
    let alice_again = c.user(2, "alice", "a2").await;
    let again = alice_again
        .client()
        .send(text_send(bob1.user_id, "m50"))
        .await
        .expect("ACK");
    assert!(again.duplicate, "a resend is recognised on any node");
    assert_eq!(again.seq, 51);

    // Typing crosses nodes too.
    alice.client().typing(conversation).await.expect("typing");
    let typing = bob1
        .next_other(|f| match f {
            ServerFrame::TypingPush(t) => Some(t),
            _ => None,
        })
        .await;
    assert_eq!(typing.user_id, alice.user_id);

    // A group spanning the three nodes, its members sending at once from
    // their own nodes: the seq is taken once per message, none skipped.
    let group = alice
        .client()
        .create_group(
            pb::ConversationKind::Group,
            "three nodes",
            pb::JoinPolicy::Open,
            vec![bob1.user_id, carol.user_id],
        )
        .await
        .expect("group")
        .conversation_id;
    let senders = [alice.client(), bob1.client(), carol.client()];
    let sent =
        futures_util::future::join_all(senders.iter().enumerate().map(|(s, client)| async move {
            let acks = futures_util::future::join_all(
                (0..50).map(|i| client.send(group_send(group, &format!("g{s}-{i}")))),
            )
            .await;
            acks.into_iter()
                .map(|a| a.expect("ACK").seq)
                .collect::<Vec<u64>>()
        }))
        .await;
    let mut all: Vec<u64> = sent.into_iter().flatten().collect();
    all.sort_unstable();
    let first = all[0];
    assert_eq!(
        all,
        (first..first + 150).collect::<Vec<_>>(),
        "dense across nodes"
    );
    // bob's second device sees all 150, bob's own included; carol sees the 100 of the others.
    bob2.until(LONG, |d| {
        shown_in(d, group)
            .iter()
            .filter(|i| i.starts_with('g'))
            .count()
            >= 150
    })
    .await;
    carol
        .until(LONG, |d| {
            shown_in(d, group)
                .iter()
                .filter(|i| i.starts_with('g'))
                .count()
                >= 100
        })
        .await;
    // Three writers commit into the group at once, yet pushes arrive in seq
    // order: each node holds one that comes ahead of the one before it.
    eprintln!("gaps: bob2 {} carol {}", bob2.feed.gaps, carol.feed.gaps);
    assert!(
        bob2.feed.gaps + carol.feed.gaps <= 10,
        "pushes out of order: {} and {}",
        bob2.feed.gaps,
        carol.feed.gaps
    );
    for s in 0..3 {
        let mine: Vec<String> = shown_in(&bob2, group)
            .into_iter()
            .filter(|i| i.starts_with(&format!("g{s}-")))
            .collect();
        let want: Vec<String> = (0..50).map(|i| format!("g{s}-{i}")).collect();
        assert_eq!(mine, want, "sender {s}'s messages in the order sent");
    }
    bob1.audit();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_are_replaced_and_kicked_on_any_node() {
    let Some((pg, redis)) = services("sessions_are_replaced_and_kicked_on_any_node") else {
        return;
    };
    let c = LocalCluster::start(&pg, &redis, 3, &[]).await;
    let mut first = c.user(0, "dave", "phone").await;
    // The same session resumed on node 1: node 0's connection is REPLACED.
    let mut second = Client::connect(&c.nodes[1].tcp).await.expect("connect");
    second.resume(&first.token, "phone").await.expect("resume");
    let d = first.next_other(disconnect_in).await;
    assert_eq!(d.reason, pb::DisconnectReason::Replaced as i32);

    // A password change on node 1 ends the session of another device on node 2.
    let mut laptop = c.user(2, "dave", "laptop").await;
    second
        .change_password(PASSWORD, "a new horse battery")
        .await
        .expect("change password");
    let d = laptop.next_other(disconnect_in).await;
    assert_eq!(d.reason, pb::DisconnectReason::Kicked as i32);
    // The session that changed it stays.
    second.ping().await.expect("still connected");
}

/// Every node's report carries its TLS addresses (here the advertised
/// ones), so assignment and the node table can send TLS-only clients to
/// any node, whichever node answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_report_their_tls_addresses() {
    let Some((pg, redis)) = services("nodes_report_their_tls_addresses") else {
        return;
    };
    let c = LocalCluster::start(
        &pg,
        &redis,
        2,
        &[
            ("NATTER_CLUSTER__ADVERTISE_TCP_TLS", "chat.example:7443"),
            ("NATTER_CLUSTER__ADVERTISE_WSS", "chat.example:7444"),
            ("NATTER_CLUSTER__ADVERTISE_HTTPS", "chat.example:7843"),
        ],
    )
    .await;
    let want = [
        "chat.example:7443",
        "chat.example:7444",
        "chat.example:7843",
    ];
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let (_, body) = http_get(c.nodes[0].http, "/v1/cluster/nodes").await;
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
        let tls =
            |n: &serde_json::Value| [n["tcp_tls"].clone(), n["wss"].clone(), n["https"].clone()];
        if nodes.len() == 2
            && nodes
                .iter()
                .all(|n| tls(n) == want.map(serde_json::Value::from))
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for from in 0..2 {
        let (status, body) = http_get(c.nodes[from].http, "/v1/cluster/assign").await;
        assert_eq!(status, 200, "{body}");
        let a: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(a["tcp_tls"], want[0], "{a}");
        assert_eq!(a["wss"], want[1], "{a}");
        assert_eq!(a["https"], want[2], "{a}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn assignment_strategies() {
    let Some((pg, redis)) = services("assignment_strategies") else {
        return;
    };
    async fn assigned(c: &LocalCluster, from: usize, query: &str) -> String {
        let (status, body) =
            http_get(c.nodes[from].http, &format!("/v1/cluster/assign{query}")).await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert!(v["tcp"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
        v["node_id"].as_str().expect("node_id").to_owned()
    }

    let rr =
        LocalCluster::start(&pg, &redis, 3, &[("NATTER_CLUSTER__ASSIGN", "round_robin")]).await;
    let turns: Vec<String> =
        futures_util::future::join_all((0..6).map(|_| assigned(&rr, 0, ""))).await;
    let mut counts = std::collections::HashMap::new();
    for t in &turns {
        *counts.entry(t.clone()).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 3, "every node in turn: {turns:?}");
    assert!(counts.values().all(|n| *n == 2), "{turns:?}");
    drop(rr);

    let sticky = LocalCluster::start(&pg, &redis, 3, &[("NATTER_CLUSTER__ASSIGN", "sticky")]).await;
    let mut spread = HashSet::new();
    for u in 0..30 {
        let q = format!("?user=user{u}");
        let a = assigned(&sticky, 0, &q).await;
        assert_eq!(a, assigned(&sticky, 1, &q).await, "every node agrees");
        assert_eq!(a, assigned(&sticky, 2, &q).await, "every node agrees");
        assert_eq!(a, assigned(&sticky, 0, &q).await, "the same node each time");
        spread.insert(a);
    }
    assert!(spread.len() >= 2, "users spread over the nodes: {spread:?}");
    drop(sticky);

    // Least-loaded: node 0 holds 40 sessions, the others none; by power of
    // two choices node 0 is never the pick.
    let ll = LocalCluster::start(&pg, &redis, 3, &[]).await;
    let mut held = Vec::new();
    for i in 0..40 {
        held.push(ll.user(0, &format!("load{i}"), "d").await);
    }
    ll.wait_for(1, |nodes| {
        nodes
            .iter()
            .any(|n| n["node_id"] == "n0" && n["connections"].as_u64() >= Some(40))
    })
    .await;
    for _ in 0..20 {
        assert_ne!(
            assigned(&ll, 1, "").await,
            "n0",
            "the loaded node is not picked"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_users_send_rate_holds_across_nodes() {
    let Some((pg, redis)) = services("a_users_send_rate_holds_across_nodes") else {
        return;
    };
    let c = LocalCluster::start(
        &pg,
        &redis,
        2,
        &[
            ("NATTER_LIMITS__SEND_RATE_PER_SEC", "1"),
            ("NATTER_LIMITS__SEND_BURST", "10"),
        ],
    )
    .await;
    let peer = c.user(0, "peer", "p").await;
    let one = c.user(0, "eve", "e1").await;
    let two = c.user(1, "eve", "e2").await;
    // The nodes learn that eve is on both from the login's REPLACED check.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (one, two) = (one.client(), two.client());
    let sends = futures_util::future::join_all((0..30).map(|i| {
        let client = if i % 2 == 0 { &one } else { &two };
        client.send(text_send(peer.user_id, &format!("r{i}")))
    }))
    .await;
    let acked = sends.iter().filter(|r| r.is_ok()).count();
    let limited = sends
        .iter()
        .filter(|r| matches!(r, Err(e) if e.code() == Some(pb::ErrorCode::RateLimited)))
        .count();
    assert_eq!(acked + limited, 30, "{sends:?}");
    // One burst of 10 (and a message or two of refill) for both nodes
    // together, not 10 on each.
    assert!((10..=12).contains(&acked), "{acked} of 30 went through");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_far_above_the_average_moves_idle_clients_away() {
    let Some((pg, redis)) = services("a_node_far_above_the_average_moves_idle_clients_away") else {
        return;
    };
    let c = LocalCluster::start(
        &pg,
        &redis,
        2,
        &[("NATTER_CLUSTER__REBALANCE_MIN_EXCESS", "10")],
    )
    .await;
    // As after a rolling restart: everyone on node 0, nobody on node 1.
    let mut devices = Vec::new();
    for i in 0..30 {
        devices.push(c.user(0, &format!("idle{i}"), "d").await);
    }
    let n1 = c.nodes[1].tcp.clone();
    let tasks: Vec<_> = devices
        .into_iter()
        .map(|mut d| {
            natter_testkit::spawn(async move {
                let moved = tokio::time::timeout(
                    Duration::from_secs(12),
                    d.until(LONG, |d| d.reconnects() > 0),
                )
                .await
                .is_ok();
                (moved, d)
            })
        })
        .collect();
    let mut moved = 0;
    let mut kept = Vec::new();
    for t in tasks {
        let (m, d) = t.await.expect("device");
        if m {
            moved += 1;
            assert_eq!(
                d.client().ping().await.map(|_| ()).ok(),
                Some(()),
                "moved and connected"
            );
        }
        if m {
            assert_eq!(
                d.told,
                std::slice::from_ref(&n1),
                "sent to the less loaded node"
            );
        }
        kept.push(d);
    }
    // About half the excess moves (30 vs an average of 15), not everyone.
    assert!((5..=15).contains(&moved), "{moved} of 30 moved");
    c.wait_for(0, |nodes| {
        nodes
            .iter()
            .any(|n| n["node_id"] == "n1" && n["connections"].as_u64() >= Some(5))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_and_the_load_generator_ask_assignment() {
    let Some((pg, redis)) = services("the_cli_and_the_load_generator_ask_assignment") else {
        return;
    };
    let c = LocalCluster::start(&pg, &redis, 2, &[]).await;
    let any = format!("http://{}", c.nodes[0].http);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(["client", "--server", &any, "register", "carl"])
        .env("NATTER_PASSWORD", "carl password")
        .output()
        .await
        .expect("run natter");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = natter(&["cluster", "status", "--redis", &c.redis, "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The cluster's own name (not the default) finds its nodes; a name
    // nobody reports under says which name it looked under.
    let out = natter(&["cluster", "status", "--redis", &c.redis, "--name", &c.name]).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && table.contains("n0") && table.contains("n1"),
        "{table}"
    );
    let out = natter(&["cluster", "status", "--redis", &c.redis, "--name", "nobody"]).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("no node has reported under the cluster name \"nobody\""),
        "{table}"
    );

    // The load generator spreads its clients by asking, and holds them.
    let dir = tempfile::tempdir().expect("dir");
    let tokens = dir.path().join("tokens.json");
    let bench = tokio::process::Command::new(env!("CARGO_BIN_EXE_natter"))
        .args([
            "bench",
            "connect",
            "--clients",
            "30",
            "--duration",
            "8",
            "--json",
        ])
        .args(["--server", &c.nodes[0].tcp, "--assign", &any, "--tokens"])
        .arg(&tokens)
        .output();
    let watch = c.wait_for(1, |nodes| {
        nodes.len() == 2
            && nodes.iter().all(|n| n["connections"].as_u64() > Some(0))
            && nodes
                .iter()
                .filter_map(|n| n["connections"].as_u64())
                .sum::<u64>()
                == 30
    });
    let (out, table) = tokio::join!(bench, watch);
    let out = out.expect("run natter bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["connected"], 30, "{report}");
    assert_eq!(live(&table), 2);
}

/// The admin dashboard of any node shows every node of the cluster with
/// its own connections (the per-node table of the console).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_shows_each_node_with_its_connections() {
    use common::admin::{admin_events, AdminClient};
    let Some((pg, redis)) = services("the_dashboard_shows_each_node_with_its_connections") else {
        return;
    };
    let c = LocalCluster::start(&pg, &redis, 2, &[]).await;
    c.create_admin("root").await;
    let _a = c.user(0, "ann", "a1").await;
    let _b = c.user(1, "ben", "b1").await;
    let _b2 = c.user(1, "bea", "b2").await;
    let root = AdminClient::login(c.nodes[0].http, "root").await;
    let mut stats = admin_events(c.nodes[0].http, "/admin/api/dashboard", &root.cookie);
    let mut seen = serde_json::Value::Null;
    let shown = tokio::time::timeout(LONG, async {
        loop {
            let (event, data) = stats.recv().await.expect("the stream goes on");
            if event != "stats" {
                continue;
            }
            seen = data;
            let mut by_node: Vec<(String, u64)> = seen["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| {
                    let id = n["node_id"].as_str().unwrap_or("").to_owned();
                    (id, n["connections"].as_u64().unwrap_or(0))
                })
                .collect();
            by_node.sort();
            if by_node == [("n0".to_owned(), 1), ("n1".to_owned(), 2)] {
                return;
            }
        }
    })
    .await;
    assert!(shown.is_ok(), "the nodes never showed: {seen}");
}
