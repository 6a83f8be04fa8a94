//! The log as the admin API reads it ([`natter_api::admin::logs::LogView`]):
//! the ring's lines, their live feed, the level and the traces, turned into
//! the API's types.

use super::control::Control;
use super::ring::{Line, Query};
use futures_util::Stream;
use natter_api::admin::logs::{LogFilter, LogLine, LogView, TraceRow};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

fn line(l: &Line) -> LogLine {
    LogLine {
        seq: l.seq,
        ts_ms: l.ts_ms,
        level: l.level.as_str().to_ascii_lowercase(),
        target: l.target.to_owned(),
        message: l.message.clone(),
        fields: l.fields.clone(),
        user: l.user,
    }
}

impl LogView for Control {
    fn lines(&self, f: &LogFilter) -> Vec<LogLine> {
        let q = Query {
            min_level: f.level.parse().unwrap_or(tracing::Level::INFO),
            contains: f.text.clone(),
            after_seq: f.after,
            user: None,
            limit: f.limit,
        };
        Control::lines(self, &q).iter().map(|l| line(l)).collect()
    }

    fn follow(&self) -> Pin<Box<dyn Stream<Item = LogLine> + Send>> {
        let rx = self.subscribe();
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(l) => return Some((line(&l), rx)),
                    // A reader that fell behind goes on from the newest.
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                }
            }
        }))
    }

    fn level(&self) -> String {
        Control::level(self)
    }

    fn set_level(&self, level: &str) -> Result<(), String> {
        Control::set_level(self, level)
    }

    fn trace_user(&self, user: u64, for_: Duration) -> Result<i64, String> {
        Control::trace_user(self, user, for_)
    }

    fn traces(&self) -> Vec<TraceRow> {
        Control::traces(self)
            .into_iter()
            .map(|t| TraceRow {
                user_id: t.user,
                until_ms: t.until_ms,
                lines: t.lines,
            })
            .collect()
    }

    fn trace(&self, user: u64) -> Option<Vec<LogLine>> {
        Control::trace(self, user).map(|t| t.lines.iter().map(|l| line(l)).collect())
    }
}

/// The process's log for the admin API, when logging keeps one.
pub fn admin_view() -> Option<Arc<dyn LogView>> {
    super::control().map(|c| Arc::new(c) as Arc<dyn LogView>)
}
