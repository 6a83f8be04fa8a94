//! `natter bench`: a load generator that measures what clients see.
//!
//! The parent process prepares accounts and tokens, spreads clients over
//! worker processes (each may use its own source address, 127.0.0.2, ...),
//! releases them together, samples the server's CPU and memory, and merges
//! the workers' HDR histograms into one report. Sending is open-loop: each
//! message has a scheduled time and latency is measured from it, so a slow
//! server cannot hide its slowness by slowing the sender down.
// A load generator measures real elapsed time and wall-clock send times,
// which a paused test clock must not bend; and it is no server with a drain:
// its senders, receivers and progress tasks are awaited by the run that
// spawns them.
#![allow(clippy::disallowed_methods)]
#![forbid(unsafe_code)]

mod group;
mod parent;
mod report;
mod setup;
mod worker;

use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// How every connection of this process connects (TLS trust and the session
/// cache shared by its reconnects, so they resume).
static CONNECT: OnceLock<natter_client::ConnectOptions> = OnceLock::new();

pub(crate) fn connect_options() -> natter_client::ConnectOptions {
    CONNECT.get().cloned().unwrap_or_default()
}

/// With `--tls-resume`: each client's own TLS configuration (and session
/// cache), warmed before the start.
static PER_CLIENT: OnceLock<std::collections::HashMap<usize, Arc<natter_client::TlsConfig>>> =
    OnceLock::new();

/// How client `user` connects.
pub(crate) fn connect_options_for(user: usize) -> natter_client::ConnectOptions {
    let mut o = connect_options();
    if let Some(tls) = PER_CLIENT.get().and_then(|m| m.get(&user)) {
        o.tls = Some(tls.clone());
    }
    o
}

/// Gives each of `users` a TLS configuration of its own and makes one
/// connection with it, so the session cache holds a ticket.
pub(crate) async fn warm_tls(
    c: &Common,
    users: &[usize],
    local_ip: Option<std::net::IpAddr>,
) -> anyhow::Result<()> {
    let mut map = std::collections::HashMap::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(256));
    let mut tasks = Vec::new();
    for &u in users {
        let tls = natter_client::client_config(c.ca.as_deref()).map_err(anyhow::Error::msg)?;
        map.insert(u, tls.clone());
        let server = c.servers_for(u)[0].clone();
        let permit = permits.clone().acquire_owned().await?;
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let options = natter_client::ConnectOptions {
                local_ip,
                tls: Some(tls),
                ..connect_options()
            };
            natter_client::Client::connect_with(&server, options)
                .await
                .map(drop)
        }));
    }
    for t in tasks {
        t.await??;
    }
    let _ = PER_CLIENT.set(map);
    Ok(())
}

pub use report::Report;

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub scenario: Scenario,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// N clients log in (token resume) and hold idle, heartbeating connections.
    Connect,
    /// N/2 senders each send 1:1 to their own receiver at an offered rate.
    Dm,
    /// N clients resume with their tokens all at once (run right after a restart).
    Storm,
    /// One group of all N clients; --senders of them send into it at the
    /// offered rate and every other member must receive each message once,
    /// in order. One worker process (so N <= ~9,800); the server's
    /// social.max_group_members must allow N.
    Group,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Connect => "connect",
            Scenario::Dm => "dm",
            Scenario::Storm => "storm",
            Scenario::Group => "group",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Server address (host:port, tls://, ws:// or wss://); a comma-separated list spreads the clients over
    /// several nodes of a cluster (in turn, and every dm receiver on the
    /// node after its sender's, so with two or more nodes every dm crosses
    /// nodes).
    #[arg(long, global = true, default_value = "127.0.0.1:7700")]
    pub server: String,
    /// A PEM file of the CA that signed the server's certificate, for
    /// tls:// and wss:// servers with a private CA.
    #[arg(long, global = true)]
    pub ca: Option<PathBuf>,
    /// storm over tls://: each client first makes one TLS connection of its
    /// own (its own session cache) before the start, so the storm's
    /// handshakes resume; without it every storm handshake is full.
    #[arg(long, global = true)]
    pub tls_resume: bool,
    /// Ask this node's assignment endpoint (http://host:port) which node
    /// each client connects to, instead of --server.
    #[arg(long, global = true)]
    pub assign: Option<String>,
    /// Number of clients (connections).
    #[arg(long, global = true, default_value_t = 100)]
    pub clients: usize,
    /// Offered message rate for the whole run (dm).
    #[arg(long, global = true, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of sending (dm) or holding (connect).
    #[arg(long, global = true, default_value_t = 10.0)]
    pub duration: f64,
    /// Members that send (group).
    #[arg(long, global = true, default_value_t = 10)]
    pub senders: usize,
    /// Message body size in bytes (dm).
    #[arg(long, global = true, default_value_t = 64)]
    pub size: usize,
    /// Print the report as one JSON object.
    #[arg(long, global = true)]
    pub json: bool,
    /// Worker processes; default: one per 9,000 clients.
    #[arg(long, global = true)]
    pub procs: Option<usize>,
    /// Give worker i the source address 127.0.0.(2+i).
    #[arg(long, global = true)]
    pub source_ips: bool,
    /// The server's PID, to report its CPU per message and RSS per
    /// connection; a comma-separated list sums several nodes.
    #[arg(long, global = true, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Bench users are PREFIX0, PREFIX1, ...
    #[arg(long, global = true, default_value = "bench")]
    pub user_prefix: String,
    /// Where login tokens are cached between runs.
    #[arg(long, global = true, default_value = "natter-bench-tokens.json")]
    pub tokens: PathBuf,
    /// Connections opened at once while connecting (storm ignores it).
    #[arg(long, global = true, default_value_t = 500)]
    pub connect_concurrency: usize,
    /// Seconds a client whose server went away keeps trying to reconnect
    /// (and to resend) before it gives up and the report counts it.
    #[arg(long, global = true, default_value_t = 60.0)]
    pub reconnect_for: f64,
    /// Internal: this process is worker I of P.
    #[arg(long, global = true, hide = true)]
    pub worker: Option<usize>,
    #[arg(long, global = true, hide = true, default_value_t = 1)]
    pub workers: usize,
}

impl Common {
    /// The servers client `user` tries, first to last: users in turn over
    /// the list, a dm receiver (user k + clients/2) on the node after its
    /// sender's; a reconnect goes on to the next.
    pub(crate) fn servers_for(&self, user: usize) -> Vec<String> {
        let servers: Vec<&str> = self.server.split(',').map(str::trim).collect();
        let half = (self.clients / 2).max(1);
        let i = if user < half { user } else { user - half + 1 };
        (0..servers.len())
            .map(|k| servers[(i + k) % servers.len()].to_owned())
            .collect()
    }

    /// A node to set accounts up on: the one assignment names, or the first
    /// of --server.
    pub(crate) async fn setup_server(&self) -> anyhow::Result<String> {
        Ok(match &self.assign {
            Some(url) => {
                let first = url.split(',').next().unwrap_or_default().trim();
                natter_client::resolve(first, None, false).await?
            }
            None => self.servers_for(0).swap_remove(0),
        })
    }
}

pub const PASSWORD: &str = "bench-password";
pub const DEVICE: &str = "bench";

/// Runs the benchmark: as the parent, or as one worker when `--worker` is set.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let tls = match &args.common.ca {
        Some(ca) => Some(natter_client::client_config(Some(ca)).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let _ = CONNECT.set(natter_client::ConnectOptions {
        tls,
        ..Default::default()
    });
    match args.common.worker {
        Some(index) => {
            let r = worker::run(args, index).await;
            if let Err(e) = &r {
                // The parent puts this in its report.
                worker::emit(serde_json::json!({ "error": format!("{e:#}") }));
            }
            r
        }
        None => {
            let report = parent::run(&args).await?;
            if args.common.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", report.table());
            }
            if report.partial {
                anyhow::bail!(
                    "the run was cut short; the report covers what was done, its errors say why"
                );
            }
            Ok(())
        }
    }
}
