//! The server's log for administrators: recent lines from the in-memory
//! ring the logging layer keeps (filtered by level, text and after a line),
//! a live tail over Server-Sent Events, an export as text, the level
//! changed while running, and per-user traces (one user's debug lines for a
//! while, downloadable). The binary gives the log through [`LogView`], so
//! this crate needs no logging types.

use super::{Admin, AdminState};
use crate::rest::{ApiError, ErrorBody, Json, Path, Query};
use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use natter_service::ServiceError;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::pin::Pin;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

/// One log line.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LogLine {
    /// Increases by one per line kept.
    pub seq: u64,
    pub ts_ms: i64,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
    pub target: String,
    pub message: String,
    /// The event's other fields, `key=value ...`.
    pub fields: String,
    /// The user the line is about, when it names one.
    pub user: Option<u64>,
}

/// Which lines.
#[derive(Clone, Debug, Default)]
pub struct LogFilter {
    /// The least severe level shown (`info`: info, warn and error).
    pub level: String,
    /// Text the line contains, any case.
    pub text: Option<String>,
    pub after: Option<u64>,
    pub limit: usize,
}

/// A user traced now.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TraceRow {
    pub user_id: u64,
    pub until_ms: i64,
    /// Lines kept so far.
    pub lines: usize,
}

/// The log a running server keeps, as the binary gives it.
pub trait LogView: Send + Sync + 'static {
    fn lines(&self, filter: &LogFilter) -> Vec<LogLine>;
    /// Every line kept from now on; a reader that falls behind skips lines.
    fn follow(&self) -> Pin<Box<dyn Stream<Item = LogLine> + Send>>;
    fn level(&self) -> String;
    /// A bad filter is refused with why, and changes nothing.
    fn set_level(&self, level: &str) -> Result<(), String>;
    /// Starts (or extends) a trace; when it ends.
    fn trace_user(&self, user: u64, for_: Duration) -> Result<i64, String>;
    fn traces(&self) -> Vec<TraceRow>;
    fn trace(&self, user: u64) -> Option<Vec<LogLine>>;
}

/// The levels from most to least severe.
const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

fn rank(level: &str) -> Option<usize> {
    LEVELS.iter().position(|l| *l == level)
}

/// Whether `line` passes `f` (the live tail filters here).
pub fn passes(line: &LogLine, f: &LogFilter) -> bool {
    let most = rank(&f.level).unwrap_or(2);
    rank(&line.level).is_some_and(|r| r <= most)
        && f.after.is_none_or(|a| line.seq > a)
        && f.text.as_deref().is_none_or(|t| {
            let t = t.to_lowercase();
            line.message.to_lowercase().contains(&t)
                || line.target.to_lowercase().contains(&t)
                || line.fields.to_lowercase().contains(&t)
        })
}

fn view(s: &AdminState) -> Result<&dyn LogView, ApiError> {
    s.logs.as_deref().ok_or_else(|| {
        ApiError::new(
            "NOT_FOUND",
            "this server keeps no log in memory (log.ring_lines = 0, or it runs inside another program)",
        )
    })
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// The least severe level shown: error, warn, info (default), debug, trace.
    #[serde(default)]
    pub level: Option<String>,
    /// Text the line contains (any case).
    #[serde(default)]
    pub q: Option<String>,
    /// Only lines after this `seq`.
    #[serde(default)]
    pub after: Option<u64>,
    /// At most this many, the newest (default 500, at most 5,000).
    #[serde(default)]
    pub limit: Option<usize>,
}

impl LogQuery {
    fn filter(self) -> Result<LogFilter, ApiError> {
        let level = self.level.unwrap_or_else(|| "info".into());
        if rank(&level).is_none() {
            return Err(ApiError::new(
                "INVALID_ARGUMENT",
                "level is error, warn, info, debug or trace",
            ));
        }
        Ok(LogFilter {
            level,
            text: self
                .q
                .filter(|q| !q.is_empty())
                .map(|q| q.chars().take(200).collect()),
            after: self.after,
            limit: self.limit.unwrap_or(500).clamp(1, 5_000),
        })
    }
}

#[derive(Serialize, ToSchema)]
pub struct LogPage {
    /// Oldest first.
    pub lines: Vec<LogLine>,
    /// The server's level filter now.
    pub level: String,
}

/// Recent log lines from the server's memory.
#[utoipa::path(get, path = "/admin/api/logs", tag = "logs", params(LogQuery),
    responses((status = 200, body = LogPage), (status = 404, description = "NOT_FOUND: no log kept in memory", body = ErrorBody)))]
pub async fn lines(
    State(s): State<AdminState>,
    _a: Admin,
    Query(q): Query<LogQuery>,
) -> Result<axum::Json<LogPage>, ApiError> {
    let v = view(&s)?;
    Ok(axum::Json(LogPage {
        lines: v.lines(&q.filter()?),
        level: v.level(),
    }))
}

/// The log as text, one line each (the filter of `GET /admin/api/logs`).
#[utoipa::path(get, path = "/admin/api/logs/export", tag = "logs", params(LogQuery),
    responses((status = 200, description = "text/plain, an attachment", content_type = "text/plain")))]
pub async fn export(
    State(s): State<AdminState>,
    _a: Admin,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let mut f = q.filter()?;
    f.limit = 5_000;
    let mut text = String::new();
    for l in view(&s)?.lines(&f) {
        text.push_str(&format!(
            "{} {:<5} {}: {} {}\n",
            l.ts_ms,
            l.level.to_uppercase(),
            l.target,
            l.message,
            l.fields
        ));
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"natter.log\"",
            ),
        ],
        text,
    )
        .into_response())
}

/// The live tail: `event: line` with a [`LogLine`] for each line kept that
/// passes the filter, `id:` its seq.
#[utoipa::path(get, path = "/admin/api/logs/stream", tag = "logs", params(LogQuery),
    responses((status = 200, description = "Server-Sent Events: `event: line`, `data:` a LogLine", content_type = "text/event-stream")))]
pub async fn stream(
    State(s): State<AdminState>,
    _a: Admin,
    Query(q): Query<LogQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let mut f = q.filter()?;
    let follow = view(&s)?.follow();
    // Lines kept between the page the client read and now are not lost:
    // they come first, then the live ones after them.
    let backlog = match f.after {
        Some(_) => view(&s)?.lines(&f),
        None => Vec::new(),
    };
    if let Some(last) = backlog.last() {
        f.after = Some(last.seq);
    }
    let live = follow.filter(move |l| std::future::ready(passes(l, &f)));
    let events = futures_util::stream::iter(backlog).chain(live).map(|l| {
        Ok(Event::default()
            .event("line")
            .id(l.seq.to_string())
            .json_data(&l)
            .unwrap_or_else(|_| Event::default().comment("unencodable")))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Level {
    /// A tracing filter: `info`, `debug`, or per module, e.g.
    /// `natter_gateway=debug,info`.
    pub level: String,
}

/// The server's log level now.
#[utoipa::path(get, path = "/admin/api/logs/level", tag = "logs",
    responses((status = 200, body = Level)))]
pub async fn level(State(s): State<AdminState>, _a: Admin) -> Result<axum::Json<Level>, ApiError> {
    Ok(axum::Json(Level {
        level: view(&s)?.level(),
    }))
}

/// Changes the log level at once (stdout, the file and the memory alike),
/// until the next change or restart.
#[utoipa::path(put, path = "/admin/api/logs/level", tag = "logs", request_body = Level,
    responses((status = 200, body = Level), (status = 400, description = "INVALID_ARGUMENT: not a filter", body = ErrorBody), (status = 403, description = "FORBIDDEN: a viewer", body = ErrorBody)))]
pub async fn set_level(
    State(s): State<AdminState>,
    a: Admin,
    Json(l): Json<Level>,
) -> Result<axum::Json<Level>, ApiError> {
    let v = view(&s)?;
    let before = v.level();
    let detail = format!("{before} -> {}", l.level);
    s.service
        .admin_change(&a.actor, "log.level", String::new(), detail, async {
            if l.level.len() > 1000 {
                return Err(ServiceError::InvalidArgument(
                    "a level filter is at most 1,000 bytes".into(),
                ));
            }
            v.set_level(&l.level).map_err(ServiceError::InvalidArgument)
        })
        .await?;
    Ok(axum::Json(Level { level: v.level() }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TraceRequest {
    pub user_id: u64,
    /// How long, 1 to 10 minutes.
    pub minutes: u64,
}

#[derive(Serialize, ToSchema)]
pub struct TraceList {
    pub traces: Vec<TraceRow>,
}

/// Starts a trace: the user's debug lines are kept for the time asked,
/// whatever the level (at most 16 users at once, 2,000 lines each).
#[utoipa::path(post, path = "/admin/api/traces", tag = "logs", request_body = TraceRequest,
    responses((status = 200, body = TraceRow), (status = 400, description = "INVALID_ARGUMENT", body = ErrorBody), (status = 403, description = "FORBIDDEN: a viewer", body = ErrorBody)))]
pub async fn start_trace(
    State(s): State<AdminState>,
    a: Admin,
    Json(t): Json<TraceRequest>,
) -> Result<axum::Json<TraceRow>, ApiError> {
    let v = view(&s)?;
    let target = format!("user:{}", t.user_id);
    let detail = format!("{} min", t.minutes);
    let until_ms = s
        .service
        .admin_change(&a.actor, "log.trace", target, detail, async {
            if !(1..=10).contains(&t.minutes) {
                return Err(ServiceError::InvalidArgument(
                    "a trace lasts 1 to 10 minutes".into(),
                ));
            }
            v.trace_user(t.user_id, Duration::from_secs(t.minutes * 60))
                .map_err(ServiceError::InvalidArgument)
        })
        .await?;
    Ok(axum::Json(TraceRow {
        user_id: t.user_id,
        until_ms,
        lines: 0,
    }))
}

/// The traces running or kept.
#[utoipa::path(get, path = "/admin/api/traces", tag = "logs",
    responses((status = 200, body = TraceList)))]
pub async fn traces(
    State(s): State<AdminState>,
    _a: Admin,
) -> Result<axum::Json<TraceList>, ApiError> {
    Ok(axum::Json(TraceList {
        traces: view(&s)?.traces(),
    }))
}

/// One user's trace, as newline-delimited JSON (a download).
#[utoipa::path(get, path = "/admin/api/traces/{user_id}", tag = "logs",
    params(("user_id" = u64, Path)),
    responses((status = 200, description = "application/x-ndjson: one LogLine per line", content_type = "application/x-ndjson"), (status = 404, description = "NOT_FOUND", body = ErrorBody)))]
pub async fn trace(
    State(s): State<AdminState>,
    _a: Admin,
    Path(user): Path<u64>,
) -> Result<Response, ApiError> {
    let lines = view(&s)?
        .trace(user)
        .ok_or_else(|| ApiError::new("NOT_FOUND", "no trace of this user"))?;
    let mut body = String::new();
    for l in lines {
        body.push_str(&serde_json::to_string(&l).unwrap_or_default());
        body.push('\n');
    }
    let name = format!("attachment; filename=\"trace-{user}.ndjson\"");
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: u64, level: &str, message: &str) -> LogLine {
        LogLine {
            seq,
            ts_ms: 0,
            level: level.into(),
            target: "natter".into(),
            message: message.into(),
            fields: "user=7".into(),
            user: Some(7),
        }
    }

    #[test]
    fn the_tail_filters_by_level_text_and_seq() {
        let f = LogFilter {
            level: "warn".into(),
            text: Some("DISK".into()),
            after: Some(3),
            limit: 10,
        };
        assert!(passes(&line(4, "error", "disk full"), &f));
        assert!(passes(&line(4, "warn", "the disk"), &f));
        assert!(!passes(&line(4, "info", "disk"), &f), "below the level");
        assert!(!passes(&line(3, "error", "disk"), &f), "not after 3");
        assert!(!passes(&line(5, "error", "network"), &f), "no such text");
        let f = LogFilter {
            level: "debug".into(),
            text: Some("USER=7".into()),
            ..LogFilter::default()
        };
        assert!(passes(&line(1, "debug", "x"), &f), "fields are searched");
        assert!(!passes(&line(1, "trace", "x"), &f));
    }
}
