//! The ring, the live level and the per-user traces, through the same
//! subscriber `init` installs, run as a local one.

use super::super::control::Control;
use super::super::suppress::Suppress;
use super::super::{subscriber, Output, RingSize};
use super::*;
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;

/// What the formatted output wrote.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// Runs `f` under the logging `init` would install at `level`, with a ring
/// of `lines` and `bytes`.
fn logged(level: &str, lines: usize, bytes: usize, f: impl FnOnce(&Control)) -> Captured {
    let out = Captured::default();
    let output = Output {
        writer: out.clone(),
        json: false,
        ansi: false,
    };
    let ring = RingSize { lines, bytes };
    let (sub, control) = subscriber(
        level,
        ring,
        Suppress::new(0, Duration::from_secs(1)),
        output,
    )
    .unwrap();
    tracing::subscriber::with_default(sub, || f(&control));
    out
}

const BIG: usize = 8 * 1024 * 1024;

fn all(control: &Control) -> Vec<Arc<Line>> {
    control.lines(&Query::default())
}

fn messages(lines: &[Arc<Line>]) -> Vec<String> {
    lines.iter().map(|l| l.message.clone()).collect()
}

/// Debug events from one place, so the callsite's cached interest matters.
fn debug_for(user: u64, what: &str) {
    tracing::debug!(user, "{what}");
}

fn info_for(user: u64, what: &str) {
    tracing::info!(user_id = user, "{what}");
}

#[test]
fn the_ring_keeps_the_newest_lines_up_to_its_line_cap() {
    let _one = super::super::one_subscriber_test_now();
    logged("info", 5, BIG, |c| {
        for i in 0..12 {
            tracing::info!(i, "line {i}");
        }
        let lines = all(c);
        assert_eq!(
            messages(&lines),
            ["line 7", "line 8", "line 9", "line 10", "line 11"]
        );
        assert!(lines.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(lines[0].fields, "i=7");
        assert_eq!(lines[0].level, Level::INFO);
        assert!(
            lines[0].target.ends_with("ring::tests"),
            "{}",
            lines[0].target
        );
    });
}

#[test]
fn the_ring_keeps_the_newest_lines_up_to_its_byte_cap() {
    let _one = super::super::one_subscriber_test_now();
    let text = "x".repeat(1000);
    let cost = {
        let mut cost = 0;
        logged("info", 10, BIG, |c| {
            tracing::info!("{text}");
            cost = all(c)[0].cost();
        });
        cost
    };
    // Room for three and a half lines.
    logged("info", 1000, cost * 7 / 2, |c| {
        for i in 0..10 {
            tracing::info!(i, "{text}");
        }
        let lines = all(c);
        let kept: Vec<&str> = lines.iter().map(|l| l.fields.as_str()).collect();
        assert_eq!(kept, ["i=7", "i=8", "i=9"]);
    });
}

#[test]
fn a_line_past_8_kib_is_cut_and_says_so() {
    let _one = super::super::one_subscriber_test_now();
    logged("info", 10, BIG, |c| {
        let long = "é".repeat(10_000);
        tracing::info!(extra = %long, "{long}");
        let line = &all(c)[0];
        assert!(
            line.message.contains("[line cut: "),
            "{}",
            &line.message[..40]
        );
        let kept = line.message.find(" [line cut").unwrap() + line.fields.len();
        assert!(kept <= MAX_LINE_BYTES, "{kept}");
        assert!(line.message.starts_with("éé"));
    });
}

#[test]
fn queries_filter_by_level_text_seq_user_and_limit() {
    let _one = super::super::one_subscriber_test_now();
    logged("debug", 100, BIG, |c| {
        tracing::debug!(user = 1u64, "opened");
        tracing::info!(user_id = 2u64, "Sent A Message");
        tracing::warn!(user = %3u64, peer = "10.0.0.9", "slow consumer");
        tracing::error!("store failed");
        let q = |f: &dyn Fn(&mut Query)| {
            let mut q = Query::default();
            f(&mut q);
            messages(&c.lines(&q))
        };
        assert_eq!(q(&|_| {}).len(), 4);
        assert_eq!(
            q(&|q| q.min_level = Level::WARN),
            ["slow consumer", "store failed"]
        );
        assert_eq!(
            q(&|q| q.contains = Some("a MESSAGE".into())),
            ["Sent A Message"]
        );
        // Fields and the target are searched too.
        assert_eq!(
            q(&|q| q.contains = Some("10.0.0".into())),
            ["slow consumer"]
        );
        assert_eq!(q(&|q| q.contains = Some("RING::TESTS".into())).len(), 4);
        assert_eq!(q(&|q| q.user = Some(2)), ["Sent A Message"]);
        assert_eq!(q(&|q| q.user = Some(3)), ["slow consumer"]);
        let second = all(c)[1].seq;
        assert_eq!(
            q(&|q| q.after_seq = Some(second)),
            ["slow consumer", "store failed"]
        );
        // The newest, oldest first.
        assert_eq!(q(&|q| q.limit = 2), ["slow consumer", "store failed"]);
        assert_eq!(q(&|q| q.limit = 1_000_000).len(), 4);
        let users: Vec<Option<u64>> = all(c).iter().map(|l| l.user).collect();
        assert_eq!(users, [Some(1), Some(2), Some(3), None]);
    });
}

#[test]
fn a_line_serializes_with_a_lowercase_level() {
    let _one = super::super::one_subscriber_test_now();
    logged("info", 10, BIG, |c| {
        tracing::warn!(user = 5u64, n = 1, "hello");
        let json = serde_json::to_value(&all(c)[0]).unwrap();
        assert_eq!(json["level"], "warn");
        assert_eq!(json["message"], "hello");
        assert_eq!(json["fields"], "user=5 n=1");
        assert_eq!(json["user"], 5);
        assert!(json["seq"].is_u64() && json["ts_ms"].is_i64());
    });
}

#[test]
fn subscribers_hear_each_new_line_and_a_slow_one_lags() {
    let _one = super::super::one_subscriber_test_now();
    logged("info", 10, BIG, |c| {
        let mut rx = c.subscribe();
        tracing::info!("first");
        assert_eq!(rx.try_recv().unwrap().message, "first");
        // Nobody reads: the logger goes on, the reader is told it lagged.
        for i in 0..LIVE_CAPACITY + 10 {
            tracing::info!("{i}");
        }
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(10))
        ));
        assert_eq!(all(c).len(), 10);
    });
}

#[test]
fn an_off_ring_keeps_nothing_and_its_subscribers_wait() {
    let _one = super::super::one_subscriber_test_now();
    logged("info", 0, BIG, |c| {
        let mut rx = c.subscribe();
        tracing::info!("nowhere");
        assert!(all(c).is_empty());
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Empty)
        ));
        assert!(c.trace_user(1, Duration::from_secs(1)).is_err());
    });
}

#[test]
fn the_level_changes_live_for_the_ring_and_the_output() {
    let _one = super::super::one_subscriber_test_now();
    let out = logged("info", 100, BIG, |c| {
        assert_eq!(c.level(), "info");
        debug_for(1, "hidden");
        c.set_level("debug").unwrap();
        assert_eq!(c.level(), "debug");
        debug_for(1, "shown");
        c.set_level("warn").unwrap();
        tracing::info!("quiet");
        let err = c.set_level("info,[[[").unwrap_err();
        assert!(err.contains("not a valid log filter"), "{err}");
        assert_eq!(c.level(), "warn");
        tracing::info!("still quiet");
        assert_eq!(messages(&all(c)), ["shown"]);
    });
    let text = out.text();
    assert!(text.contains("shown"), "{text}");
    for absent in ["hidden", "quiet"] {
        assert!(!text.contains(absent), "{text}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_trace_keeps_one_users_debug_lines_until_it_ends() {
    let _one = super::super::one_subscriber_test().await;
    let (sub, c) = subscriber(
        "info",
        RingSize {
            lines: 100,
            bytes: BIG,
        },
        Suppress::new(0, Duration::from_secs(1)),
        Output {
            writer: Captured::default(),
            json: false,
            ansi: false,
        },
    )
    .unwrap();
    let dispatch = tracing::Dispatch::new(sub);
    let log = |f: &dyn Fn()| tracing::dispatcher::with_default(&dispatch, f);
    log(&|| debug_for(7, "before the trace"));
    // Under the subscriber, as the server's global one is: a trace rebuilds
    // the callsites' interest, which asks the dispatchers in reach.
    let before = natter_runtime::clock::now_ms();
    let until = tracing::dispatcher::with_default(&dispatch, || {
        c.trace_user(7, Duration::from_secs(60)).unwrap()
    });
    // A minute from when it was asked (the clock may tick meanwhile).
    let after = natter_runtime::clock::now_ms();
    assert!(
        (before + 60_000..=after + 60_000).contains(&until),
        "{until}"
    );
    log(&|| {
        debug_for(7, "seven's request");
        debug_for(8, "eight's request");
        info_for(7, "seven logged in");
        info_for(8, "eight logged in");
    });
    let trace = c.trace(7).unwrap();
    assert_eq!(
        messages(&trace.lines),
        ["seven's request", "seven logged in"]
    );
    assert!(c.trace(8).is_none());
    // The ring keeps what the level lets through, and only that.
    assert_eq!(messages(&all(&c)), ["seven logged in", "eight logged in"]);
    assert_eq!(
        c.traces(),
        [super::super::control::TraceSummary {
            user: 7,
            until_ms: until,
            lines: 2
        }]
    );

    tokio::time::advance(Duration::from_secs(61)).await;
    log(&|| debug_for(7, "after the trace"));
    assert!(c.trace(7).is_none());
    assert!(c.traces().is_empty());
    assert!(!messages(&all(&c)).contains(&"after the trace".to_string()));
}

#[tokio::test(start_paused = true)]
async fn traces_are_bounded_in_users_time_and_lines() {
    let _one = super::super::one_subscriber_test().await;
    let (sub, c) = subscriber(
        "info",
        RingSize {
            lines: 100,
            bytes: BIG,
        },
        Suppress::new(0, Duration::from_secs(1)),
        Output {
            writer: Captured::default(),
            json: false,
            ansi: false,
        },
    )
    .unwrap();
    let now = natter_runtime::clock::now_ms();
    assert_eq!(
        c.trace_user(1, Duration::from_secs(3600)).unwrap(),
        now + 600_000
    );
    for user in 2..=16 {
        c.trace_user(user, Duration::from_secs(1)).unwrap();
    }
    let err = c.trace_user(17, Duration::from_secs(1)).unwrap_err();
    assert!(err.contains("16 users"), "{err}");
    assert!(c.stop_trace(16));
    c.trace_user(17, Duration::from_secs(1)).unwrap();
    tracing::subscriber::with_default(sub, || {
        for i in 0..super::super::control::TRACE_LINES + 5 {
            debug_for(1, &i.to_string());
        }
    });
    let lines = c.trace(1).unwrap().lines;
    assert_eq!(lines.len(), super::super::control::TRACE_LINES);
    assert_eq!(lines[0].message, "5");
    // The short ones end; the long one goes on.
    tokio::time::advance(Duration::from_secs(2)).await;
    let users: Vec<u64> = c.traces().iter().map(|t| t.user).collect();
    assert_eq!(users, [1]);
}

#[test]
fn the_subscriber_tells_tracing_its_most_verbose_level() {
    let _one = super::super::one_subscriber_test_now();
    use tracing::Subscriber as _;
    let hint = |level: &str, traced: bool| {
        let (sub, c) = subscriber(
            level,
            RingSize {
                lines: 10,
                bytes: BIG,
            },
            Suppress::new(0, Duration::from_secs(1)),
            Output {
                writer: Captured::default(),
                json: false,
                ansi: false,
            },
        )
        .unwrap();
        if traced {
            c.trace_user(1, Duration::from_secs(1)).unwrap();
        }
        sub.max_level_hint()
    };
    // Debug and trace callsites cost one comparison at info.
    assert_eq!(hint("info", false), Some(LevelFilter::INFO));
    assert_eq!(hint("natter=debug,warn", false), Some(LevelFilter::DEBUG));
    // While a user is traced, debug events are looked at.
    assert_eq!(hint("info", true), Some(LevelFilter::DEBUG));
}
