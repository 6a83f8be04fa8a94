//! A circuit breaker in front of a database server. After `failures`
//! consecutive failures that say the server is unreachable or stalled (a
//! refused or reset connection, or no answer in time), it opens: callers
//! are refused at once (no connection attempts, no waits) for `open_for`.
//! Then one probe goes through (half-open): an answer from the server
//! closes it, anything else opens it again. While open, only that probe
//! can close it: a late answer or a result that proves nothing (a pool
//! with no free connection, a request given up by its caller) leaves it
//! open. Its state is the `natter_store_breaker_state` gauge (0 closed,
//! 1 half-open, 2 open).

use crate::{Fault, StoreError};
use natter_runtime::clock::Instant;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerOptions {
    pub failures: u32,
    pub open_for: Duration,
}

impl Default for BreakerOptions {
    fn default() -> Self {
        BreakerOptions {
            failures: 3,
            open_for: Duration::from_secs(2),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is out; everyone else is refused until it returns, or
    /// until `until`, when another may go (a probe whose caller gave up
    /// reports nothing).
    HalfOpen {
        until: Instant,
    },
}

pub struct Breaker {
    options: BreakerOptions,
    state: Mutex<State>,
}

#[derive(Debug, thiserror::Error)]
#[error("the database is unreachable (circuit breaker open)")]
struct BreakerOpen;

impl Breaker {
    pub fn new(options: BreakerOptions) -> Self {
        metrics::gauge!("natter_store_breaker_state").set(0.0);
        Breaker {
            options,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    pub fn state(&self) -> State {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_open(&self) -> bool {
        !matches!(self.state(), State::Closed { .. })
    }

    /// May a request go to the server now? Refused ones fail fast.
    pub fn admit(&self) -> Result<(), StoreError> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *s {
            State::Closed { .. } => Ok(()),
            State::Open { until } | State::HalfOpen { until } if Instant::now() >= until => {
                *s = State::HalfOpen {
                    until: Instant::now() + self.options.open_for,
                };
                gauge(&s);
                Ok(())
            }
            State::Open { .. } | State::HalfOpen { .. } => Err(StoreError::Fault {
                fault: Fault::Down,
                source: Arc::new(BreakerOpen),
            }),
        }
    }

    /// Reports how an admitted request went: see [`Evidence`].
    pub fn record<T>(&self, outcome: &Result<T, StoreError>) {
        let evidence = Evidence::of(outcome);
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let open = || State::Open {
            until: Instant::now() + self.options.open_for,
        };
        let next = match (*s, evidence) {
            (State::Closed { .. }, Evidence::Answered) => State::Closed { failures: 0 },
            (State::Closed { failures }, Evidence::Down)
                if failures + 1 < self.options.failures =>
            {
                State::Closed {
                    failures: failures + 1,
                }
            }
            (State::Closed { .. }, Evidence::Down) => open(),
            (State::Closed { failures }, Evidence::Nothing) => State::Closed { failures },
            // Only the probe leaves the open state: an answer to a request
            // sent before it opened says nothing of now.
            (State::Open { until }, _) => State::Open { until },
            (State::HalfOpen { .. }, Evidence::Answered) => State::Closed { failures: 0 },
            (State::HalfOpen { .. }, Evidence::Down | Evidence::Nothing) => open(),
        };
        if next != *s {
            if matches!(next, State::Open { .. }) && !matches!(*s, State::Open { .. }) {
                tracing::warn!("database unreachable: circuit breaker open");
            } else if matches!(next, State::Closed { .. }) && !matches!(*s, State::Closed { .. }) {
                tracing::info!("database reachable again: circuit breaker closed");
            }
            *s = next;
            gauge(&s);
        }
    }
}

/// What a request's outcome says about the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// It answered: a result, a refusal, a full disk, a bug.
    Answered,
    /// Unreachable, reset, or silent past the time bound.
    Down,
    /// Nothing either way: no pooled connection came free in time (or the
    /// server cancelled a statement: busy, not down), or the request never
    /// reached it. Backing off is the callers' business.
    Nothing,
}

impl Evidence {
    pub fn of<T>(outcome: &Result<T, StoreError>) -> Evidence {
        match outcome {
            Ok(_) => Evidence::Answered,
            Err(e) => match e.fault() {
                Some(Fault::Down) => Evidence::Down,
                Some(Fault::Busy) => Evidence::Nothing,
                _ if matches!(e, StoreError::Unavailable) => Evidence::Nothing,
                _ => Evidence::Answered,
            },
        }
    }
}

fn gauge(s: &State) {
    let v = match s {
        State::Closed { .. } => 0.0,
        State::HalfOpen { .. } => 1.0,
        State::Open { .. } => 2.0,
    };
    metrics::gauge!("natter_store_breaker_state").set(v);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn down() -> Result<(), StoreError> {
        Err(StoreError::Fault {
            fault: Fault::Down,
            source: Arc::new(BreakerOpen),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_failures_probes_and_closes() {
        let b = Breaker::new(BreakerOptions {
            failures: 2,
            open_for: Duration::from_secs(1),
        });
        b.admit().unwrap();
        b.record(&down());
        assert!(!b.is_open(), "one failure is not enough");
        b.record(&Err::<(), _>(StoreError::NotFound("x")));
        b.record(&down());
        assert!(!b.is_open(), "an answer in between resets the count");
        b.record(&down());
        assert!(b.is_open());
        assert!(b.admit().is_err(), "open: refused at once");
        tokio::time::advance(Duration::from_millis(1001)).await;
        b.admit().unwrap();
        assert!(matches!(b.state(), State::HalfOpen { .. }));
        assert!(b.admit().is_err(), "one probe at a time");
        b.record(&down());
        assert!(
            matches!(b.state(), State::Open { .. }),
            "a failed probe opens it again"
        );
        tokio::time::advance(Duration::from_millis(1001)).await;
        b.admit().unwrap();
        b.record(&Ok(()));
        assert_eq!(b.state(), State::Closed { failures: 0 });
        b.admit().unwrap();
    }

    fn busy() -> Result<(), StoreError> {
        Err(StoreError::Fault {
            fault: Fault::Busy,
            source: Arc::new(BreakerOpen),
        })
    }

    /// What a silent database looks like: timeouts (Down) mixed with pool
    /// waits that ran out (Busy) and late answers to old requests. Before,
    /// any of the latter closed the breaker within a second of opening.
    #[tokio::test(start_paused = true)]
    async fn only_the_probe_closes_it_and_busy_proves_nothing() {
        let b = Breaker::new(BreakerOptions {
            failures: 2,
            open_for: Duration::from_secs(1),
        });
        b.record(&down());
        b.record(&busy());
        assert_eq!(
            b.state(),
            State::Closed { failures: 1 },
            "busy keeps the count"
        );
        b.record(&down());
        assert!(matches!(b.state(), State::Open { .. }));
        for r in [
            busy(),
            Ok(()),
            Err(StoreError::Unavailable),
            Err(StoreError::NotFound("x")),
        ] {
            b.record(&r);
            assert!(matches!(b.state(), State::Open { .. }), "{r:?} while open");
        }
        tokio::time::advance(Duration::from_millis(1001)).await;
        b.admit().unwrap();
        b.record(&busy());
        assert!(
            matches!(b.state(), State::Open { .. }),
            "a probe that proves nothing opens it again"
        );
        tokio::time::advance(Duration::from_millis(1001)).await;
        b.admit().unwrap();
        tokio::time::advance(Duration::from_millis(1001)).await;
        b.admit().expect("a probe that never reported is replaced");
        b.record(&Err::<(), _>(StoreError::NotFound("x")));
        assert_eq!(
            b.state(),
            State::Closed { failures: 0 },
            "an answer closes it"
        );
    }
}
