//! Repeated warnings and errors are rate-limited per callsite: at most
//! `repeat_burst` lines from one place per `repeat_window_ms`; the rest are
//! counted (`natter_log_suppressed_lines_total`), and when the window has
//! ended one line says how many were suppressed. So a failing store logs a
//! bounded number of lines, however many requests fail.

use natter_runtime::clock::Instant;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::callsite::Identifier;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

#[derive(Clone)]
pub struct Suppress {
    burst: u32,
    window: Duration,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    windows: HashMap<Identifier, Window>,
    /// Summaries of windows that ended while lines still came.
    owed: Vec<Suppressed>,
}

struct Window {
    start: Instant,
    passed: u32,
    suppressed: u64,
    from: String,
}

/// A summary owed: `count` lines from `from` were suppressed.
#[derive(Debug, PartialEq)]
pub struct Suppressed {
    pub from: String,
    pub count: u64,
}

impl Suppress {
    /// `burst` 0 lets everything through.
    pub fn new(burst: u32, window: Duration) -> Suppress {
        Suppress {
            burst,
            window,
            state: Arc::default(),
        }
    }

    /// Decides for one event at `now`: true lets it through.
    fn admit(&self, event: &Event<'_>, now: Instant) -> bool {
        let meta = event.metadata();
        // Every warning and error is counted (the dashboard's error rate),
        // whether or not it is then held back.
        if *meta.level() == Level::ERROR {
            metrics::counter!("natter_log_events_total", "level" => "error").increment(1);
        } else if *meta.level() == Level::WARN {
            metrics::counter!("natter_log_events_total", "level" => "warn").increment(1);
        }
        if self.burst == 0 || *meta.level() > Level::WARN || meta.target() == super::sink::TARGET {
            return true;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let State { windows, owed } = &mut *state;
        let w = windows.entry(meta.callsite()).or_insert_with(|| Window {
            start: now,
            passed: 0,
            suppressed: 0,
            from: match (meta.file(), meta.line()) {
                (Some(f), Some(l)) => format!("{} ({f}:{l})", meta.target()),
                _ => meta.target().to_owned(),
            },
        });
        if now.saturating_duration_since(w.start) >= self.window {
            if w.suppressed > 0 {
                owed.push(Suppressed {
                    from: w.from.clone(),
                    count: w.suppressed,
                });
            }
            w.start = now;
            w.passed = 0;
            w.suppressed = 0;
        }
        if w.passed < self.burst {
            w.passed += 1;
            true
        } else {
            w.suppressed += 1;
            metrics::counter!("natter_log_suppressed_lines_total").increment(1);
            false
        }
    }

    /// The windows that ended at `now` with lines suppressed, reset.
    pub fn take_ended(&self, now: Instant) -> Vec<Suppressed> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let State { windows, owed } = &mut *state;
        let mut out = std::mem::take(owed);
        windows.retain(|_, w| {
            if now.saturating_duration_since(w.start) < self.window {
                return true;
            }
            if w.suppressed > 0 {
                out.push(Suppressed {
                    from: w.from.clone(),
                    count: w.suppressed,
                });
            }
            // Forgotten: the next line from there starts a new window.
            false
        });
        out
    }

    /// Logs one line for each ended window that suppressed lines.
    pub fn report(&self, now: Instant) {
        for s in self.take_ended(now) {
            tracing::warn!(
                target: "natter::logging",
                suppressed = s.count,
                "suppressed {} similar lines from {}",
                s.count,
                s.from
            );
        }
    }
}

impl<S: Subscriber> Layer<S> for Suppress {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        self.admit(event, Instant::now())
    }

    /// It only holds back lines the other layers want, and wants none
    /// itself. Saying so lets the per-layer level filters beside it set the
    /// level tracing checks first (no hint would mean every level), so a
    /// disabled debug event costs a comparison.
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::OFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tracing_subscriber::layer::SubscriberExt;

    /// Counts the events that reach it.
    struct Count(Arc<AtomicUsize>);

    impl<S: Subscriber> Layer<S> for Count {
        fn on_event(&self, _: &Event<'_>, _: Context<'_, S>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }

        fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
            Some(tracing::level_filters::LevelFilter::TRACE)
        }
    }

    fn fail(i: u32) {
        tracing::error!(i, "store failure");
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_from_one_place_is_cut_to_the_burst_and_summed_up() {
        let _one = super::super::one_subscriber_test().await;
        let suppress = Suppress::new(10, Duration::from_secs(10));
        let reached = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry()
            .with(suppress.clone())
            .with(Count(reached.clone()));
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..1000 {
                fail(i);
            }
            // Other places and lower levels are not affected.
            for _ in 0..20 {
                tracing::warn!("another place");
                tracing::info!("information");
            }
        });
        assert_eq!(reached.load(Ordering::Relaxed), 10 + 10 + 20);
        assert_eq!(suppress.take_ended(Instant::now()), vec![]);
        tokio::time::advance(Duration::from_secs(10)).await;
        let ended = suppress.take_ended(Instant::now());
        assert_eq!(ended.len(), 2, "{ended:?}");
        let counts: Vec<u64> = ended.iter().map(|s| s.count).collect();
        assert!(counts.contains(&990) && counts.contains(&10), "{ended:?}");
        assert!(
            ended.iter().any(|s| s.from.contains("suppress.rs")),
            "{ended:?}"
        );
        // A new window lets a new burst through.
        let subscriber = tracing_subscriber::registry()
            .with(suppress.clone())
            .with(Count(reached.clone()));
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..50 {
                fail(i);
            }
        });
        assert_eq!(reached.load(Ordering::Relaxed), 40 + 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_trickle_is_never_suppressed() {
        let _one = super::super::one_subscriber_test().await;
        let suppress = Suppress::new(2, Duration::from_secs(1));
        let reached = Arc::new(AtomicUsize::new(0));
        for i in 0..10 {
            let subscriber = tracing_subscriber::registry()
                .with(suppress.clone())
                .with(Count(reached.clone()));
            tracing::subscriber::with_default(subscriber, || fail(i));
            tokio::time::advance(Duration::from_millis(600)).await;
        }
        assert_eq!(reached.load(Ordering::Relaxed), 10);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(suppress.take_ended(Instant::now()), vec![]);
    }
}
