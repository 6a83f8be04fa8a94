//! The coordinating process: sets up accounts, starts the workers, releases
//! them together, samples the server, and merges what they report.

use crate::report::{self, Errors, Percentiles, Report, Totals, WorkerResult};
use crate::{setup, BenchArgs, Scenario};
use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use natter_runtime::procstat;
use serde::Deserialize;
use std::process::Stdio;
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

/// A line a worker prints on stdout.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerLine {
    Ready,
    Progress(u64),
    Result(Box<WorkerResult>),
    /// The worker failed; it exits next.
    Error(String),
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let c = &args.common;
    if args.scenario == Scenario::Dm && c.clients < 2 {
        bail!("dm needs at least 2 clients");
    }
    if args.scenario == Scenario::Group && !(c.senders >= 1 && c.clients > c.senders) {
        bail!("group needs more clients than --senders, and at least one sender");
    }
    setup::ensure(c, args.scenario == Scenario::Dm)
        .await
        .context("preparing bench accounts")?;
    let procs = match args.scenario {
        // One group, one process: every receiver and sender in one place
        // makes loss accounting exact.
        Scenario::Group => 1,
        _ => c.procs.unwrap_or(c.clients.div_ceil(9000)).max(1),
    };
    let mut errors = Errors::default();
    let baseline = sample(&c.server_pid, &mut errors)?;
    // From here on SIGINT and SIGTERM end the run: the workers are killed
    // and what they reported so far is still reported.
    let mut signal = Box::pin(interrupted());
    // Why the run was cut short, if it was.
    let mut cut: Option<String> = None;

    let exe = std::env::current_exe()?;
    let forwarded: Vec<String> = std::env::args().skip(1).collect();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut children = Vec::new();
    let mut stdins = Vec::new();
    for i in 0..procs {
        let mut child = Command::new(&exe)
            .args(&forwarded)
            .args(["--worker", &i.to_string(), "--workers", &procs.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting a worker process")?;
        stdins.push(child.stdin.take().context("worker stdin")?);
        let mut lines = BufReader::new(child.stdout.take().context("worker stdout")?).lines();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<WorkerLine>(&line) {
                    Ok(msg) => {
                        let _ = tx.send((i, Some(msg)));
                    }
                    Err(e) => eprintln!("worker {i}: unreadable line ({e}): {line}"),
                }
            }
            let _ = tx.send((i, None));
        });
        children.push(child);
    }
    drop(tx);

    let bar = |len: u64, what: &str| {
        let b = ProgressBar::new(len);
        b.set_style(
            ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.set_message(what.to_owned());
        b
    };
    let expected_connections = match args.scenario {
        Scenario::Dm => (c.clients / 2 * 2) as u64,
        _ => c.clients as u64,
    };
    let connecting = args.scenario != Scenario::Storm;
    let progress = bar(
        if connecting { expected_connections } else { 0 },
        "connecting",
    );
    let mut worker_progress = vec![0u64; procs];
    let mut ready = 0;
    while ready < procs {
        let line = tokio::select! {
            sig = &mut signal => {
                cut = Some(format!("interrupted by {sig} before the start"));
                break;
            }
            line = rx.recv() => line,
        };
        match line {
            Some((_, Some(WorkerLine::Ready))) => ready += 1,
            Some((i, Some(WorkerLine::Progress(n)))) => {
                worker_progress[i] = n;
                progress.set_position(worker_progress.iter().sum());
            }
            Some((i, Some(WorkerLine::Error(e)))) => errors.note(format!("worker {i}: {e}")),
            Some((i, Some(WorkerLine::Result(_)))) => {
                cut = Some(format!("worker {i} finished before the start"));
                break;
            }
            Some((i, None)) => {
                cut = Some(format!("worker {i} exited before it was ready"));
                break;
            }
            None => {
                cut = Some("every worker exited before the start".into());
                break;
            }
        }
    }
    progress.finish_and_clear();

    let at_go = sample(&c.server_pid, &mut errors)?;
    let started = Instant::now();
    if cut.is_none() {
        for stdin in &mut stdins {
            stdin.write_all(b"go\n").await?;
            stdin.flush().await?;
        }
    }
    let total = match args.scenario {
        Scenario::Dm | Scenario::Group => (c.rate * c.duration) as u64,
        _ => expected_connections,
    };
    let progress = bar(total, args.scenario.name());
    worker_progress.iter_mut().for_each(|p| *p = 0);
    let mut results = Vec::new();
    // A worker is done once it has reported, or exited without a result.
    let mut done = vec![false; procs];
    while cut.is_none() && done.iter().any(|d| !d) {
        let line = tokio::select! {
            sig = &mut signal => {
                let reported = results.len();
                cut = Some(format!(
                    "interrupted by {sig} after {:.1} s; {reported} of {procs} workers had reported",
                    started.elapsed().as_secs_f64()
                ));
                break;
            }
            line = rx.recv() => line,
        };
        match line {
            Some((i, Some(WorkerLine::Result(r)))) => {
                done[i] = true;
                results.push(*r);
            }
            // A worker that has reported may exit before the others finish.
            Some((i, None)) if done[i] => {}
            Some((i, Some(WorkerLine::Progress(n)))) => {
                worker_progress[i] = n;
                progress.set_position(worker_progress.iter().sum());
            }
            Some((_, Some(WorkerLine::Ready))) => {}
            Some((i, Some(WorkerLine::Error(e)))) => errors.note(format!("worker {i}: {e}")),
            Some((i, None)) => {
                done[i] = true;
                errors.note(format!("worker {i} exited without a result"));
            }
            None => break,
        }
    }
    progress.finish_and_clear();
    let elapsed = started.elapsed();
    let at_end = sample(&c.server_pid, &mut errors)?;
    let partial = cut.is_some() || results.len() < procs;
    if let Some(why) = cut {
        errors.note(why);
        // By PID; a worker that has exited already is simply reaped.
        for child in &mut children {
            let _ = child.start_kill();
        }
    }
    // Closing their stdin tells workers still running that the run is over.
    drop(stdins);
    for mut child in children {
        let _ = child.wait().await;
    }

    let mut totals = Totals::default();
    let mut connect = report::histogram();
    let mut latency = report::histogram();
    let mut connect_wall_ms = 0;
    let mut send_secs: f64 = 0.0;
    let mut outages = report::Outages::default();
    for r in &results {
        errors.merge(&r.errors);
        outages.merge(&r.outages)?;
        totals.add(&r.totals);
        connect.add(report::decode(&r.connect_us)?)?;
        latency.add(report::decode(&r.latency_us)?)?;
        connect_wall_ms = connect_wall_ms.max(r.connect_wall_ms);
        send_secs = send_secs.max(r.send_secs);
    }
    let mut report = Report {
        scenario: args.scenario.name().into(),
        clients: c.clients,
        procs,
        offered_rate: if matches!(args.scenario, Scenario::Dm | Scenario::Group) {
            c.rate
        } else {
            0.0
        },
        duration_s: c.duration,
        connect_wall_ms,
        connect_ms: Percentiles::of(&connect),
        latency_ms: Percentiles::of(&latency),
        delivered_per_sec: if send_secs > 0.0 {
            totals.delivered as f64 / send_secs
        } else {
            0.0
        },
        totals,
        reconnects: outages.took.len(),
        moved: outages.moved,
        reconnect_ms: Percentiles::of(&outages.took),
        all_back_after_ms: outages
            .first_lost_us
            .map(|f| outages.last_back_us.saturating_sub(f) as f64 / 1000.0),
        errors,
        partial,
        ..Report::default()
    };
    if let (Some(base), Some(go), Some(end)) = (baseline, at_go, at_end) {
        let held = match args.scenario {
            Scenario::Storm => end.rss_bytes,
            _ => go.rss_bytes.max(end.rss_bytes),
        };
        report.server_rss_bytes = Some(held);
        if report.totals.connected > 0 {
            report.server_rss_per_conn_bytes =
                Some(held.saturating_sub(base.rss_bytes) as f64 / report.totals.connected as f64);
        }
        let cpu = end.cpu.saturating_sub(go.cpu);
        report.server_cpu_percent = Some(100.0 * cpu.as_secs_f64() / elapsed.as_secs_f64());
        if report.totals.delivered > 0 {
            report.server_cpu_us_per_msg =
                Some(cpu.as_secs_f64() * 1e6 / report.totals.delivered as f64);
        }
    }
    Ok(report)
}

/// The servers' CPU time and resident memory, summed; `None` without PIDs.
/// A server that has gone (killed during the run) is left out, so the
/// figures of a run that lost one cover the others only.
fn sample(pids: &[u32], errors: &mut Errors) -> anyhow::Result<Option<procstat::Sample>> {
    let mut sum: Option<procstat::Sample> = None;
    for pid in pids {
        let Ok(s) = procstat::sample(*pid) else {
            let gone = format!("server {pid} has gone; its CPU and memory are left out");
            eprintln!("{gone}");
            errors.note(gone);
            continue;
        };
        sum = Some(match sum {
            None => s,
            Some(t) => procstat::Sample {
                cpu: t.cpu + s.cpu,
                rss_bytes: t.rss_bytes + s.rss_bytes,
            },
        });
    }
    Ok(sum)
}

/// Resolves on SIGINT or SIGTERM, with the signal's name.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => std::future::pending().await,
    }
}
