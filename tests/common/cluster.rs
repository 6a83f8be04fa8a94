//! A local cluster for black-box tests: N real `natter serve` processes on
//! one PostgreSQL schema and one Redis (the shared one from
//! NATTER_TEST_REDIS_URL under a cluster name of their own, or a private
//! redis-server the test can restart), and devices that audit what they
//! see across reconnects: sessions of the client library, which syncs by
//! cursor on a gap, on a SyncHint, and after every reconnect.

use super::{http_get, Binary, PASSWORD, WAIT};
use natter_client::{pb, Client, Delivery, Feed, Route, ServerFrame, Session, SessionOptions};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The services a cluster test needs, or why it skips.
pub fn services(test: &str) -> Option<(String, String)> {
    let pg = std::env::var("NATTER_TEST_POSTGRES_URL").ok();
    let redis = std::env::var("NATTER_TEST_REDIS_URL").ok();
    match (pg, redis) {
        (Some(pg), Some(redis)) if !pg.is_empty() && !redis.is_empty() => Some((pg, redis)),
        _ => {
            eprintln!(
                "skipped: {test} needs NATTER_TEST_POSTGRES_URL and NATTER_TEST_REDIS_URL (a cluster runs on PostgreSQL and Redis)"
            );
            None
        }
    }
}

/// A private Redis on a free port, stopped (by PID) when dropped.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<std::process::Child>,
    dir: tempfile::TempDir,
}

impl PrivateRedis {
    pub async fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut r = PrivateRedis {
            port,
            child: None,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        r.restart().await;
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on the same port, empty.
    pub async fn restart(&mut self) {
        self.kill();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (installed by .ci/run)");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server starts"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops it at once (SIGKILL: everything it held is gone).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Node {
    pub bin: Option<Binary>,
    pub id: String,
    pub tcp: String,
    pub http: SocketAddr,
    dir: tempfile::TempDir,
}

pub struct LocalCluster {
    pub nodes: Vec<Node>,
    pub name: String,
    pub redis: String,
    env: Vec<(String, String)>,
    _schema: natter_testkit::pg::Schema,
}

impl LocalCluster {
    /// `n` nodes on a fresh schema; `env` is added to every node's settings.
    pub async fn start(pg: &str, redis: &str, n: usize, env: &[(&str, &str)]) -> LocalCluster {
        let schema = natter_testkit::pg::Schema::create(pg, "natter_cl_", true)
            .await
            .expect("a test schema");
        let name = format!("t{}x{}", std::process::id(), rand_u32());
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.extend([
            ("NATTER_STORE__BACKEND".into(), "postgres".into()),
            ("NATTER_STORE__URL".into(), schema.url.clone()),
            ("NATTER_CLUSTER__REDIS_URL".into(), redis.to_owned()),
            ("NATTER_CLUSTER__NAME".into(), name.clone()),
            ("NATTER_LOG__LEVEL".into(), "warn".into()),
        ]);
        let mut c = LocalCluster {
            nodes: Vec::new(),
            name,
            redis: redis.to_owned(),
            env,
            _schema: schema,
        };
        for i in 0..n {
            let node = c
                .spawn(&format!("n{i}"), tempfile::tempdir().expect("dir"))
                .await;
            c.nodes.push(node);
        }
        // Every node has read a table with all of them.
        for i in 0..n {
            c.wait_for(i, |nodes| live(nodes) == n).await;
        }
        c
    }

    async fn spawn(&self, id: &str, dir: tempfile::TempDir) -> Node {
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.push(("NATTER_CLUSTER__NODE_ID", id));
        let bin = Binary::start(dir.path(), &env, &[]).await;
        Node {
            id: id.to_owned(),
            tcp: bin.tcp.clone(),
            http: bin.http.expect("an HTTP listener"),
            bin: Some(bin),
            dir,
        }
    }

    /// Starts node `i` again on its data directory (same node id).
    pub async fn restart(&mut self, i: usize) {
        let dir = tempfile::tempdir().expect("dir");
        let old = std::mem::replace(&mut self.nodes[i].dir, dir);
        let id = self.nodes[i].id.clone();
        self.nodes[i] = self.spawn(&id, old).await;
    }

    /// SIGKILL: the node vanishes without a word.
    pub async fn kill9(&mut self, i: usize) {
        if let Some(mut b) = self.nodes[i].bin.take() {
            b.child.start_kill().expect("SIGKILL");
            let _ = b.child.wait().await;
        }
    }

    /// SIGTERM: the node drains and leaves; returns once it exited.
    pub async fn terminate(&mut self, i: usize) {
        if let Some(mut b) = self.nodes[i].bin.take() {
            let pid = rustix::process::Pid::from_raw(b.pid() as i32).expect("a pid");
            rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
            let status = tokio::time::timeout(Duration::from_secs(20), b.child.wait())
                .await
                .expect("the node exits after SIGTERM")
                .expect("wait");
            assert!(status.success(), "clean exit after SIGTERM: {status}");
        }
    }

    /// Whether node `i` is running.
    pub fn up(&self, i: usize) -> bool {
        self.nodes[i].bin.is_some()
    }

    /// The HTTP addresses of running nodes.
    pub fn https(&self) -> Vec<SocketAddr> {
        (0..self.nodes.len())
            .filter(|i| self.up(*i))
            .map(|i| self.nodes[i].http)
            .collect()
    }

    /// `GET /v1/cluster/nodes` on node `i`.
    pub async fn table(&self, i: usize) -> Vec<serde_json::Value> {
        let (status, body) = http_get(self.nodes[i].http, "/v1/cluster/nodes").await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        v["nodes"].as_array().cloned().unwrap_or_default()
    }

    /// Polls node `i`'s node table until `pred` holds (at most 20 s).
    pub async fn wait_for(
        &self,
        i: usize,
        pred: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let t = self.table(i).await;
            if pred(&t) {
                return t;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node table never got there: {t:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A user registered through node `i` and logged in there on `device`;
    /// it reconnects through the assignment of the nodes running now.
    pub async fn user(&self, i: usize, name: &str, device: &str) -> Device {
        let address = &self.nodes[i].tcp;
        let mut c = Client::connect(address).await.expect("connect");
        if let Err(e) = c.register(name, PASSWORD).await {
            assert_eq!(
                e.code(),
                Some(pb::ErrorCode::UsernameTaken),
                "register {name}: {e:?}"
            );
        }
        let ok = c.login(name, PASSWORD, device).await.expect("login");
        Device::new(c, address, ok, device, &self.https())
    }

    /// Makes administrator `name` (role admin, `ADMIN_PASSWORD`) in the
    /// cluster's store with the command line.
    pub async fn create_admin(&self, name: &str) {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_natter"))
            .args(["admin", "create-admin", "--name", name])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("NATTER_ADMIN_PASSWORD", super::admin::ADMIN_PASSWORD)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("natter admin create-admin");
        assert!(
            out.status.success(),
            "create-admin: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The nodes listed in Redis as holding `user` (the presence directory).
    pub async fn presence(&self, user: u64) -> Vec<String> {
        let client = redis::Client::open(self.redis.as_str()).expect("redis url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let mut nodes: Vec<String> = redis::cmd("SMEMBERS")
            .arg(format!("{}:presence:{user}", self.name))
            .query_async(&mut conn)
            .await
            .expect("SMEMBERS");
        nodes.sort();
        nodes
    }
}

/// Nodes in the table whose state is "up".
pub fn live(nodes: &[serde_json::Value]) -> usize {
    nodes.iter().filter(|n| n["state"] == "up").count()
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish() as u32
}

/// One device of a user: a session of the client library (which reconnects
/// through assignment and resumes), recording every message it shows, in
/// the order shown.
pub struct Device {
    pub session: Session,
    pub feed: Feed,
    pub user_id: u64,
    pub token: String,
    pub device: String,
    /// What the user saw: (conversation, seq, client_msg_id).
    pub shown: Vec<(u64, u64, String)>,
    /// The last Disconnect received.
    pub disconnect: Option<pb::Disconnect>,
    /// Where GOING_AWAYs sent this device, in order.
    pub told: Vec<String>,
    /// Other pushes, oldest first, for `next_other`.
    others: std::collections::VecDeque<ServerFrame>,
}

impl Device {
    /// Takes over `client`, logged in at `address`; reconnects ask the
    /// assignment endpoints `https`.
    pub fn new(
        client: Client,
        address: &str,
        ok: pb::LoginOk,
        device: &str,
        https: &[SocketAddr],
    ) -> Device {
        let route = Route::Assign(https.iter().map(|h| format!("http://{h}")).collect());
        let options = SessionOptions {
            reconnect_for: Duration::from_secs(30),
            ..SessionOptions::default()
        };
        let session = Session::adopt(client, address, &ok.token, device, route, options);
        Device {
            feed: session.feed(),
            session,
            user_id: ok.user_id,
            token: ok.token,
            device: device.to_owned(),
            shown: Vec::new(),
            disconnect: None,
            told: Vec::new(),
            others: Default::default(),
        }
    }

    /// The current connection.
    pub fn client(&self) -> Arc<Client> {
        self.session.client()
    }

    pub fn reconnects(&self) -> usize {
        self.session.outages().len()
    }

    /// Takes one delivery (at most `wait`): a message is shown, anything
    /// else kept for `next_other`. False when nothing came.
    async fn step(&mut self, wait: Duration) -> bool {
        match tokio::time::timeout(wait, self.feed.next()).await {
            Err(_) => false,
            Ok(Err(e)) => panic!("device {}: the session ended: {e}", self.device),
            Ok(Ok(Delivery::Message(m))) => {
                self.shown.push((m.conversation_id, m.seq, m.client_msg_id));
                true
            }
            Ok(Ok(Delivery::Other(f))) => {
                if let ServerFrame::Disconnect(d) = &f {
                    if !d.reconnect_tcp.is_empty() {
                        self.told.push(d.reconnect_tcp.clone());
                    }
                    self.disconnect = Some(d.clone());
                }
                self.others.push_back(f);
                true
            }
        }
    }

    /// Handles pushes until `done` holds for what was shown, reconnecting
    /// as the session must. Panics after `limit`.
    pub async fn until(&mut self, limit: Duration, done: impl Fn(&Device) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        while !done(self) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                !left.is_zero(),
                "device {} timed out: {} shown",
                self.device,
                self.shown.len()
            );
            self.step(left.min(Duration::from_millis(500))).await;
        }
    }

    /// The next push other than a message that `pick` takes (within WAIT),
    /// showing messages on the way.
    pub async fn next_other<T>(&mut self, mut pick: impl FnMut(ServerFrame) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            while let Some(f) = self.others.pop_front() {
                if let Some(t) = pick(f) {
                    return t;
                }
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(!left.is_zero(), "device {}: no matching push", self.device);
            self.step(left).await;
        }
    }

    /// Messages shown per conversation, checked: each conversation's seqs
    /// strictly increase, and no client_msg_id is shown twice.
    pub fn audit(&self) -> HashMap<u64, Vec<String>> {
        let mut per: HashMap<u64, Vec<(u64, String)>> = HashMap::new();
        for (c, seq, id) in &self.shown {
            per.entry(*c).or_default().push((*seq, id.clone()));
        }
        let mut out = HashMap::new();
        for (c, list) in per {
            for w in list.windows(2) {
                assert!(
                    w[0].0 < w[1].0,
                    "device {}: out of order in {c}: {w:?}",
                    self.device
                );
            }
            let mut ids: Vec<&String> = list.iter().map(|(_, i)| i).collect();
            ids.sort();
            let before = ids.len();
            ids.dedup();
            assert_eq!(
                before,
                ids.len(),
                "device {}: a message shown twice",
                self.device
            );
            out.insert(c, list.into_iter().map(|(_, i)| i).collect());
        }
        out
    }
}

/// How long a cluster test waits for a device to see what it should.
pub const LONG: Duration = Duration::from_secs(30);

/// A text message to `peer` with client id `id`.
pub fn text_send(peer: u64, id: &str) -> pb::Send {
    pb::Send {
        client_msg_id: id.into(),
        target: Some(pb::send::Target::PeerUserId(peer)),
        body: Some(pb::Body {
            kind: pb::BodyKind::Text as i32,
            content: format!("text of {id}"),
        }),
        ..Default::default()
    }
}

/// Sends to `receivers` from `sender`, one message every `every`, until
/// `stop`; returns the client ids ACKed per receiver.
pub fn load(
    sender: Arc<Client>,
    receivers: Vec<u64>,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Vec<String>>> {
    natter_testkit::spawn(async move {
        let acked = Arc::new(Mutex::new(vec![Vec::new(); receivers.len()]));
        let mut i = 0usize;
        let mut tick = tokio::time::interval(every);
        let mut inflight = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let r = i % receivers.len();
            let id = format!("L{i}");
            i += 1;
            let (s, acked, peer) = (sender.clone(), acked.clone(), receivers[r]);
            inflight.push(natter_testkit::spawn(async move {
                // A send the server could not take is resent with its id.
                for _ in 0..50 {
                    match s.send(text_send(peer, &id)).await {
                        Ok(_) => {
                            acked.lock().expect("lock")[r].push(id);
                            return;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
                panic!("{id} was never ACKed");
            }));
        }
        for t in inflight {
            t.await.expect("sender");
        }
        let out = acked.lock().expect("lock").clone();
        out
    })
}

/// Every receiver shows exactly what was ACKed for it.
pub async fn all_arrive(receivers: &mut [Device], acked: &[Vec<String>]) {
    for (d, want) in receivers.iter_mut().zip(acked) {
        let want_set: HashSet<&String> = want.iter().collect();
        d.until(LONG, |d| d.shown.len() >= want.len()).await;
        let audit = d.audit();
        let shown: Vec<String> = audit.into_values().flatten().collect();
        let shown_set: HashSet<&String> = shown.iter().collect();
        assert_eq!(
            shown.len(),
            want.len(),
            "device {}: nothing extra",
            d.device
        );
        assert_eq!(shown_set, want_set, "device {}: 0 lost", d.device);
    }
}
