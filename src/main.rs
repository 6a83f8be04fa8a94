//! `natter`: the server, a command-line client and a load generator, in one binary.
#![forbid(unsafe_code)]

use anyhow::Context;
use clap::{Parser, Subcommand};
use natter::cli::client as cli_client;
use natter::config::Config;
use natter::server::{self, logging};
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "natter",
    version,
    about = "A durable, observable instant-messaging server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server.
    #[command(after_long_help = SERVE_HELP)]
    Serve(ServeArgs),
    /// Talk to a server from the command line.
    Client(cli_client::ClientArgs),
    /// Generate load against a server and report latency and throughput.
    Bench(natter_bench::BenchArgs),
    /// Operate on a deployment's data.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Look at a cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// List the nodes with their load and state, as Redis holds them now.
    Status {
        /// The cluster's Redis (default: cluster.redis_url of --config).
        #[arg(long)]
        redis: Option<String>,
        /// A configuration file naming the cluster's Redis.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The cluster's name, the prefix of its Redis keys (default:
        /// cluster.name of --config, else "natter").
        #[arg(long)]
        name: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Copy everything from one backend to another (SQLite, PostgreSQL,
    /// MySQL/MariaDB) and verify the copy (row counts, each conversation's
    /// last seq). Stop the servers on both first.
    Migrate {
        /// The source: a SQLite data directory (the server's data_dir),
        /// postgres://user:password@host:port/database or
        /// mysql://user:password@host:port/database.
        #[arg(long)]
        from: String,
        /// The target, in the same forms; a data directory is made if
        /// missing.
        #[arg(long)]
        to: String,
        /// Continue a copy into a target that already holds some of it.
        #[arg(long)]
        resume: bool,
        /// A configuration file whose [store] partition settings a new
        /// PostgreSQL target is made with (as `natter serve --config` would).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    #[command(flatten)]
    Ops(natter::cli::admin::AdminOps),
}

/// Where `serve --help` sends people for the rest of the settings.
const SERVE_HELP: &str = "\
Every setting is described in docs/CONFIG.md. Settings are layered: \
defaults, then the --config TOML file, then environment variables, then \
these flags. An environment variable NATTER_<SECTION>__<KEY> (two \
underscores) sets key KEY of section [SECTION], for example \
NATTER_LISTEN__TCP=0.0.0.0:7700 or NATTER_STORE__BACKEND=postgres; \
NATTER_DATA_DIR sets data_dir. A bad setting stops the server with an \
error that names the key.";

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// A TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where the embedded database lives (default ./natter-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// TCP listen address (port 0 picks a free port).
    #[arg(long)]
    tcp_addr: Option<String>,
    /// WebSocket listen address; "" disables it.
    #[arg(long)]
    ws_addr: Option<String>,
    /// HTTP listen address (health, metrics); "" disables it.
    #[arg(long)]
    http_addr: Option<String>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Client(args) => cli_client::run(args).await,
            Command::Bench(args) => natter_bench::run(args).await,
            Command::Admin(AdminCommand::Migrate {
                from,
                to,
                resume,
                config,
            }) => migrate(&from, &to, resume, config.as_deref()).await,
            Command::Admin(AdminCommand::Ops(op)) => natter::cli::admin::run(op).await,
            Command::Cluster(ClusterCommand::Status {
                redis,
                config,
                name,
                json,
            }) => cluster_status(redis, config.as_deref(), name, json).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    use natter::config::explain::{self, flag};
    let mut figment = Config::figment(args.config.as_deref());
    if let Some(d) = args.data_dir {
        figment = figment.merge(flag("data_dir", d));
    }
    if let Some(a) = args.tcp_addr {
        figment = figment.merge(flag("listen.tcp", a));
    }
    if let Some(a) = args.ws_addr {
        figment = figment.merge(flag("listen.ws", a));
    }
    if let Some(a) = args.http_addr {
        figment = figment.merge(flag("listen.http", a));
    }
    let config = Config::from_figment(figment.clone())?;
    // Which layer set each key, for the admin API (secrets redacted).
    let explained = std::sync::Arc::new(explain::explain(&figment, &config));
    // Held to the end: dropping it writes out the queued log lines.
    let _logging = logging::init(&config).context("cannot start logging")?;
    let listeners = server::Listeners::bind(&config.listen).await?;
    // SIGHUP reloads the TLS certificate. Its handler is installed before
    // the addresses are printed (tokio's handler then stays for the life of
    // the process), so an early SIGHUP never takes the default: exiting.
    #[cfg(unix)]
    let _hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot handle SIGHUP")?;
    let shutdown = CancellationToken::new();
    // The process's signal listeners: they live as long as the process (the
    // drain they start cannot wait for them) and end with the runtime.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(signals(shutdown.clone()));
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(file_size_signals());
    // The addresses are printed once start-up can no longer fail, plainly
    // as well, so scripts that start on port 0 can find us.
    server::run_then(config, Some(explained), listeners, shutdown, |listeners| {
        println!("natter tcp={}", listeners.tcp_addr());
        if let Some(a) = listeners.ws_addr() {
            println!("natter ws={a}");
        }
        if let Some(a) = listeners.http_addr() {
            println!("natter http={a}");
        }
        if let Some(a) = listeners.admin_addr() {
            println!("natter admin={a}");
        }
        for (name, a) in listeners.tls_addrs() {
            println!("natter {name}={a}");
        }
    })
    .await
    .context("server failed")
}

async fn cluster_status(
    redis: Option<String>,
    config: Option<&std::path::Path>,
    name: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    // Only the [cluster] section matters here (a node's environment may
    // hold settings that are valid only together with others).
    let cluster: natter::config::ClusterSection = Config::figment(config)
        .extract_inner("cluster")
        .context("the [cluster] settings")?;
    let url = redis.unwrap_or(cluster.redis_url);
    anyhow::ensure!(
        !url.is_empty(),
        "no cluster: give --redis URL or a --config with cluster.redis_url"
    );
    let name = name.unwrap_or(cluster.name);
    let nodes = natter_cluster::status(&url, &name)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the cluster from {url}: {e}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
        return Ok(());
    }
    println!(
        "{:<20} {:<9} {:<22} {:<22} {:>11} {:>6} {:>9}",
        "node", "state", "tcp", "ws", "connections", "cpu", "msgs/s"
    );
    for n in &nodes {
        println!(
            "{:<20} {:<9} {:<22} {:<22} {:>11} {:>5.0}% {:>9.0}",
            n.node_id,
            n.state,
            n.tcp,
            n.ws,
            n.connections,
            n.cpu * 100.0,
            n.messages_per_sec
        );
    }
    if nodes.is_empty() {
        println!("(no node has reported under the cluster name \"{name}\"; --name or cluster.name picks another)");
    }
    Ok(())
}

async fn migrate(
    from: &str,
    to: &str,
    resume: bool,
    config: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use natter_store::migrate::{Endpoint, Options};
    let config = Config::from_figment(Config::figment(config))?;
    let options = Options {
        resume,
        partitioning: config.store.partitioning(),
    };
    let (from, to) = (Endpoint::parse(from), Endpoint::parse(to));
    let mut last = String::new();
    let report = natter_store::migrate::copy(&from, &to, options, |table, rows| {
        if table != last {
            eprintln!("copying {table}...");
            last = table.to_owned();
        }
        if rows % 100_000 == 0 {
            eprintln!("  {rows} rows");
        }
    })
    .await
    .with_context(|| format!("migrating from {} to {}", from.backend(), to.backend()))?;
    for (table, rows) in &report.tables {
        println!("{table}: {rows} rows");
    }
    println!(
        "verified: row counts match, and so do the last seqs of all {} conversations",
        report.conversations
    );
    Ok(())
}

/// Takes SIGXFSZ (a write past the process's file size limit), whose default
/// would kill the process: the write fails with an error instead, which the
/// store reports as a storage fault, and the server goes on.
async fn file_size_signals() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut xfsz) = signal(SignalKind::from_raw(libc::SIGXFSZ)) {
            while xfsz.recv().await.is_some() {
                tracing::warn!("a write went past the file size limit (SIGXFSZ); it failed");
            }
        }
    }
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn signals(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    shutdown.cancel();
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every subcommand, positional and flag says what it is for.
    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_hide_set() || matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                let sub_path = format!("{path} {}", sub.get_name());
                if sub.get_name() != "help" && sub.get_about().is_none() {
                    missing.push(sub_path.clone());
                }
                walk(sub, &sub_path, missing);
            }
        }
        let mut missing = Vec::new();
        let cmd = Cli::command();
        walk(&cmd, "natter", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
        // The walk sees the whole tree.
        assert!(cmd
            .find_subcommand("client")
            .is_some_and(|c| c.get_subcommands().count() > 10));
    }
}
