//! What a run measured: counters, histograms (HDR, microseconds), and the
//! server's resource use; mergeable across workers.

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

pub fn histogram() -> Histogram<u64> {
    // 1 µs to 1 hour at 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

pub fn encode(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    let _ = V2Serializer::new().serialize(h, &mut buf);
    base64::engine::general_purpose::STANDARD.encode(buf)
}

pub fn decode(s: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(s)?;
    Ok(Deserializer::new().deserialize(&mut &bytes[..])?)
}

/// Counters a worker reports.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Totals {
    pub connected: u64,
    pub connect_failed: u64,
    pub sent: u64,
    pub acked: u64,
    pub send_failed: u64,
    pub rate_limited: u64,
    pub delivered: u64,
    /// Messages a receiver showed twice, or out of seq order (faults).
    pub duplicates: u64,
    pub out_of_order: u64,
    pub lost: u64,
    /// Pushes of a message already shown, dropped by the client.
    #[serde(default)]
    pub duplicate_pushes: u64,
    /// Syncs a receiver made because a push came ahead of a gap or the
    /// server hinted it.
    #[serde(default)]
    pub gap_syncs: u64,
    /// Sessions that gave up (could not reconnect in time, or were ended).
    #[serde(default)]
    pub sessions_failed: u64,
    /// Times a connecting client was turned away as busy (SERVER_FULL) and
    /// came back when told.
    #[serde(default)]
    pub busy_refusals: u64,
}

impl Totals {
    /// Takes the connect phase's counts (connected, failed, turned away as
    /// busy) from `phase`, the rest staying this run's.
    pub fn connections_from(&mut self, phase: &Totals) {
        self.connected = phase.connected;
        self.connect_failed = phase.connect_failed;
        self.busy_refusals = phase.busy_refusals;
    }

    pub fn add(&mut self, o: &Totals) {
        self.connected += o.connected;
        self.connect_failed += o.connect_failed;
        self.sent += o.sent;
        self.acked += o.acked;
        self.send_failed += o.send_failed;
        self.rate_limited += o.rate_limited;
        self.delivered += o.delivered;
        self.duplicates += o.duplicates;
        self.out_of_order += o.out_of_order;
        self.lost += o.lost;
        self.duplicate_pushes += o.duplicate_pushes;
        self.gap_syncs += o.gap_syncs;
        self.sessions_failed += o.sessions_failed;
        self.busy_refusals += o.busy_refusals;
    }
}

/// Lost connections and their return.
pub struct Outages {
    /// Sessions that moved because the server asked (GOING_AWAY).
    pub moved: u64,
    /// From a connection that just went to the session resumed elsewhere, µs.
    pub took: Histogram<u64>,
    /// Wall-clock µs of the first loss and the last return.
    pub first_lost_us: Option<u64>,
    pub last_back_us: u64,
}

impl Default for Outages {
    fn default() -> Self {
        Outages {
            moved: 0,
            took: histogram(),
            first_lost_us: None,
            last_back_us: 0,
        }
    }
}

/// [`Outages`] as a worker reports them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OutagesWire {
    pub moved: u64,
    pub took_us: String,
    pub first_lost_us: Option<u64>,
    pub last_back_us: u64,
}

impl Outages {
    pub fn encode(&self) -> OutagesWire {
        OutagesWire {
            moved: self.moved,
            took_us: encode(&self.took),
            first_lost_us: self.first_lost_us,
            last_back_us: self.last_back_us,
        }
    }

    pub fn merge(&mut self, w: &OutagesWire) -> anyhow::Result<()> {
        self.moved += w.moved;
        if !w.took_us.is_empty() {
            self.took.add(decode(&w.took_us)?)?;
        }
        if let Some(f) = w.first_lost_us {
            self.first_lost_us = Some(self.first_lost_us.map_or(f, |x| x.min(f)));
        }
        self.last_back_us = self.last_back_us.max(w.last_back_us);
        Ok(())
    }
}

/// One worker's result, sent to the parent as JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerResult {
    pub totals: Totals,
    /// Connect + login latency, µs.
    pub connect_us: String,
    /// Scheduled send to receipt, µs.
    pub latency_us: String,
    /// From the start signal until every connection was up, ms.
    pub connect_wall_ms: u64,
    /// Seconds spent in the send phase.
    pub send_secs: f64,
    #[serde(default)]
    pub outages: OutagesWire,
    #[serde(default)]
    pub errors: Errors,
}

/// The errors a run met: how many, and the first few messages, each once,
/// so a report says why (a refused connection, a server that went away)
/// and not only how many.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Errors {
    pub count: u64,
    pub first: Vec<String>,
}

impl Errors {
    /// How many distinct messages a report keeps.
    pub const KEEP: usize = 10;

    pub fn note(&mut self, message: String) {
        self.count += 1;
        self.keep(message);
    }

    fn keep(&mut self, message: String) {
        if self.first.len() < Errors::KEEP && !self.first.contains(&message) {
            self.first.push(message);
        }
    }

    pub fn merge(&mut self, other: &Errors) {
        self.count += other.count;
        for m in &other.first {
            self.keep(m.clone());
        }
    }
}

/// The errors this process has met (a worker is one process).
static NOTED: std::sync::Mutex<Errors> = std::sync::Mutex::new(Errors {
    count: 0,
    first: Vec::new(),
});

/// Notes an error for this process's result.
pub fn note_error(message: String) {
    NOTED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .note(message);
}

/// The errors noted so far, taken.
pub fn noted_errors() -> Errors {
    std::mem::take(&mut *NOTED.lock().unwrap_or_else(|p| p.into_inner()))
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    /// In milliseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |v: u64| v as f64 / 1000.0;
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// The merged report.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    pub clients: usize,
    pub procs: usize,
    pub offered_rate: f64,
    pub duration_s: f64,
    #[serde(flatten)]
    pub totals: Totals,
    pub connect_wall_ms: u64,
    pub connect_ms: Percentiles,
    pub latency_ms: Percentiles,
    pub delivered_per_sec: f64,
    pub server_cpu_us_per_msg: Option<f64>,
    pub server_rss_bytes: Option<u64>,
    pub server_rss_per_conn_bytes: Option<f64>,
    pub server_cpu_percent: Option<f64>,
    /// Connections that just went (a node died) and came back elsewhere.
    pub reconnects: u64,
    /// Per such reconnect: from the loss to the session resumed, ms.
    pub reconnect_ms: Percentiles,
    /// From the first such loss to the last session back, ms.
    pub all_back_after_ms: Option<f64>,
    /// Sessions that moved because the server asked (GOING_AWAY).
    pub moved: u64,
    /// What went wrong: failed connections and sends, sessions that gave
    /// up, workers that died, an interrupted run.
    pub errors: Errors,
    /// The run was cut short (interrupted, or a worker died): the figures
    /// cover only what was reported.
    pub partial: bool,
}

impl Report {
    pub fn table(&self) -> String {
        let mut t = String::new();
        let row = |t: &mut String, k: &str, v: String| t.push_str(&format!("{k:<28} {v}\n"));
        row(
            &mut t,
            "scenario",
            format!(
                "{} ({} clients, {} procs)",
                self.scenario, self.clients, self.procs
            ),
        );
        row(
            &mut t,
            "connected / failed",
            format!("{} / {}", self.totals.connected, self.totals.connect_failed),
        );
        if self.totals.busy_refusals > 0 {
            row(
                &mut t,
                "turned away as busy",
                format!(
                    "{} times (each came back when told)",
                    self.totals.busy_refusals
                ),
            );
        }
        row(
            &mut t,
            "all connected after",
            format!("{} ms", self.connect_wall_ms),
        );
        let c = &self.connect_ms;
        row(
            &mut t,
            "login ms p50/p99/max",
            format!("{:.2} / {:.2} / {:.2}", c.p50, c.p99, c.max),
        );
        if self.scenario == "dm" || self.scenario == "group" {
            row(
                &mut t,
                "offered rate",
                format!(
                    "{:.0} msg/s for {:.0} s",
                    self.offered_rate, self.duration_s
                ),
            );
            let s = &self.totals;
            row(
                &mut t,
                "sent / acked / failed",
                format!(
                    "{} / {} / {} (rate limited {})",
                    s.sent, s.acked, s.send_failed, s.rate_limited
                ),
            );
            row(
                &mut t,
                "delivered",
                format!("{} ({:.0} msg/s)", s.delivered, self.delivered_per_sec),
            );
            row(
                &mut t,
                "lost / dup / out of order",
                format!("{} / {} / {}", s.lost, s.duplicates, s.out_of_order),
            );
            row(
                &mut t,
                "dup pushes / gap syncs",
                format!("{} / {}", s.duplicate_pushes, s.gap_syncs),
            );
            let l = &self.latency_ms;
            row(
                &mut t,
                "latency ms p50/p90/p99",
                format!("{:.2} / {:.2} / {:.2}", l.p50, l.p90, l.p99),
            );
            row(
                &mut t,
                "latency ms p99.9/max",
                format!("{:.2} / {:.2}", l.p999, l.max),
            );
        }
        if self.reconnects > 0 || self.moved > 0 || self.totals.sessions_failed > 0 {
            let r = &self.reconnect_ms;
            row(
                &mut t,
                "reconnects / moved / gave up",
                format!(
                    "{} / {} / {}",
                    self.reconnects, self.moved, self.totals.sessions_failed
                ),
            );
            row(
                &mut t,
                "reconnect ms p50/p99/max",
                format!("{:.1} / {:.1} / {:.1}", r.p50, r.p99, r.max),
            );
            if let Some(v) = self.all_back_after_ms {
                row(&mut t, "all back after first loss", format!("{v:.0} ms"));
            }
        }
        if let Some(v) = self.server_cpu_us_per_msg {
            row(&mut t, "server CPU per message", format!("{v:.2} µs"));
        }
        if let Some(v) = self.server_cpu_percent {
            row(&mut t, "server CPU", format!("{v:.0} % of one core"));
        }
        if let Some(v) = self.server_rss_bytes {
            row(
                &mut t,
                "server RSS",
                format!("{:.1} MiB", v as f64 / 1048576.0),
            );
        }
        if let Some(v) = self.server_rss_per_conn_bytes {
            row(
                &mut t,
                "server RSS per connection",
                format!("{:.0} bytes", v),
            );
        }
        if self.partial {
            row(&mut t, "PARTIAL", "the run was cut short".into());
        }
        if self.errors.count > 0 {
            row(&mut t, "errors", self.errors.count.to_string());
            for m in &self.errors.first {
                row(&mut t, "", m.clone());
            }
        }
        t
    }
}
