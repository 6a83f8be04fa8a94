//! The dashboard's figures, live over Server-Sent Events
//! (`GET /admin/api/dashboard`), read from the same Prometheus recorder
//! that `/metrics` renders: no second statistics store. One sampler task
//! renders and reads the metrics once a second while at least one
//! dashboard is open and shares each sample with all of them, so ten open
//! dashboards cost what one does, and none costs nothing.

use super::{Admin, AdminState};
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Serialize;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How often the figures are sampled.
pub const EVERY: Duration = Duration::from_secs(1);

/// One sample of the figures the dashboard shows.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Stats {
    pub at_ms: i64,
    /// Users with a session attached to this node.
    pub users_online: f64,
    /// Chat connections (TCP, WebSocket, event streams) logged in here.
    pub connections: f64,
    pub http_connections: f64,
    pub messages_in_per_sec: f64,
    pub pushes_out_per_sec: f64,
    pub logins_per_sec: f64,
    /// Warnings and errors logged, per second.
    pub errors_per_sec: f64,
    /// From a message's commit to its push queued for its recipients.
    pub delivery_p99_ms: Option<f64>,
    pub commit_p99_ms: Option<f64>,
    /// Messages per store commit round, on average since the last sample.
    pub batch_size_avg: Option<f64>,
    pub rss_mib: f64,
    pub overload_stage: f64,
    /// Each node of a cluster with its load (empty on one node).
    pub nodes: Vec<serde_json::Value>,
}

/// Prometheus text as `name{labels}` → value; a summary's quantiles and a
/// histogram's `_sum`/`_count` are series like any other.
pub fn parse(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        if let Ok(v) = value.parse::<f64>() {
            out.insert(series.to_owned(), v);
        }
    }
    out
}

/// The sum of every series of metric `name`, whatever its labels.
fn total(m: &HashMap<String, f64>, name: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| {
            k.strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
        })
        .map(|(_, v)| v)
        .sum()
}

/// The sum of the series of `name` whose labels include `label`.
fn with_label(m: &HashMap<String, f64>, name: &str, label: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| {
            k.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') && rest.contains(label))
        })
        .map(|(_, v)| v)
        .sum()
}

/// A summary's 0.99 quantile, in milliseconds (`None` before any value).
fn p99_ms(m: &HashMap<String, f64>, name: &str) -> Option<f64> {
    m.get(&format!("{name}{{quantile=\"0.99\"}}"))
        .copied()
        .filter(|v| v.is_finite())
        .map(|v| v * 1000.0)
}

/// The figures from two renders `secs` apart.
pub fn stats(now: &HashMap<String, f64>, before: &HashMap<String, f64>, secs: f64) -> Stats {
    let rate = |name: &str| {
        let d = total(now, name) - total(before, name);
        if secs > 0.0 {
            (d / secs).max(0.0)
        } else {
            0.0
        }
    };
    let errors = |m: &HashMap<String, f64>| {
        with_label(m, "natter_log_events_total", "level=\"error\"")
            + with_label(m, "natter_log_events_total", "level=\"warn\"")
    };
    let stored =
        |m: &HashMap<String, f64>| with_label(m, "natter_messages_total", "outcome=\"stored\"");
    let batches = total(now, "natter_store_batch_size_count")
        - total(before, "natter_store_batch_size_count");
    let batched =
        total(now, "natter_store_batch_size_sum") - total(before, "natter_store_batch_size_sum");
    Stats {
        at_ms: natter_runtime::clock::now_ms(),
        users_online: total(now, "natter_users_online"),
        connections: total(now, "natter_connections"),
        http_connections: total(now, "natter_http_connections"),
        messages_in_per_sec: if secs > 0.0 {
            ((stored(now) - stored(before)) / secs).max(0.0)
        } else {
            0.0
        },
        pushes_out_per_sec: rate("natter_pushes_total"),
        logins_per_sec: rate("natter_logins_total"),
        errors_per_sec: if secs > 0.0 {
            ((errors(now) - errors(before)) / secs).max(0.0)
        } else {
            0.0
        },
        delivery_p99_ms: p99_ms(now, "natter_delivery_seconds"),
        commit_p99_ms: p99_ms(now, "natter_store_commit_seconds"),
        batch_size_avg: (batches > 0.0).then(|| batched / batches),
        rss_mib: total(now, "natter_memory_rss_bytes") / (1024.0 * 1024.0),
        overload_stage: total(now, "natter_overload_stage"),
        nodes: Vec::new(),
    }
}

/// The one sampler, shared by every open dashboard.
#[derive(Default)]
pub struct Sampler {
    live: Mutex<Option<watch::Receiver<Option<Arc<Stats>>>>>,
}

impl Sampler {
    /// A view of the samples, starting the sampler if none runs. It stops
    /// by itself once no dashboard holds a view.
    fn subscribe(&self, s: &AdminState) -> watch::Receiver<Option<Arc<Stats>>> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = live.as_ref().filter(|rx| rx.has_changed().is_ok()) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        let (metrics, cluster) = (s.metrics.clone(), s.cluster.clone());
        // Ends when the last view is dropped (every send then fails).
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(async move {
            let render = || {
                metrics
                    .as_ref()
                    .map(|h| parse(&h.render()))
                    .unwrap_or_default()
            };
            let mut before = render();
            let mut at = tokio::time::Instant::now();
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = render();
                let secs = at.elapsed().as_secs_f64();
                at = tokio::time::Instant::now();
                let mut st = stats(&now, &before, secs);
                if let Some(nodes) = cluster.as_ref().map(|c| c.nodes()) {
                    st.nodes = nodes.as_array().cloned().unwrap_or_default();
                }
                before = now;
                if tx.send(Some(Arc::new(st))).is_err() {
                    return;
                }
            }
        });
        *live = Some(rx.clone());
        rx
    }
}

/// `GET /admin/api/dashboard`: an `event: stats` with [`Stats`] as JSON
/// every second.
#[utoipa::path(get, path = "/admin/api/dashboard", tag = "dashboard",
    responses((status = 200, description = "Server-Sent Events: `event: stats`, `data:` the figures as JSON, every second", content_type = "text/event-stream")))]
pub async fn dashboard(
    State(s): State<AdminState>,
    _a: Admin,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = s.sampler.subscribe(&s);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            rx.changed().await.ok()?;
            let st = rx.borrow_and_update().clone();
            if let Some(st) = st {
                let ev = Event::default()
                    .event("stats")
                    .json_data(&*st)
                    .unwrap_or_else(|_| Event::default().comment("unencodable"));
                return Some((Ok(ev), rx));
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
# TYPE natter_messages_total counter
natter_messages_total{outcome=\"stored\"} 100
natter_messages_total{outcome=\"duplicate\"} 50
natter_pushes_total 10
natter_connections 3
natter_store_batch_size_sum 100
natter_store_batch_size_count 10
";
    const NOW: &str = "\
natter_messages_total{outcome=\"stored\"} 500
natter_messages_total{outcome=\"duplicate\"} 250
natter_messages_totally_other 1000
natter_pushes_total 410
natter_connections 7
natter_users_online 5
natter_store_commit_seconds{quantile=\"0.99\"} 0.004
natter_store_batch_size_sum 400
natter_store_batch_size_count 20
natter_log_events_total{level=\"error\"} 4
natter_log_events_total{level=\"warn\"} 6
natter_memory_rss_bytes 104857600
";

    #[test]
    fn figures_come_from_two_renders() {
        let s = stats(&parse(NOW), &parse(BEFORE), 2.0);
        assert_eq!(s.messages_in_per_sec, 200.0);
        assert_eq!(s.pushes_out_per_sec, 200.0);
        assert_eq!(s.connections, 7.0);
        assert_eq!(s.users_online, 5.0);
        assert_eq!(s.commit_p99_ms, Some(4.0));
        assert_eq!(s.delivery_p99_ms, None);
        assert_eq!(s.batch_size_avg, Some(30.0));
        assert_eq!(s.errors_per_sec, 5.0);
        assert_eq!(s.rss_mib, 100.0);
    }

    #[test]
    fn a_counter_reset_is_no_negative_rate() {
        let s = stats(&parse(BEFORE), &parse(NOW), 1.0);
        assert_eq!(s.messages_in_per_sec, 0.0);
        assert_eq!(s.batch_size_avg, None);
    }
}
