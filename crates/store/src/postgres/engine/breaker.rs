//! A circuit breaker in front of a database server. After `failures`
//! consecutive failures that say the server is unreachable or stalled
//! (not merely busy), it
//! opens: callers are refused at once (no connection attempts, no waits)
//! for `open_for`. Then one probe goes through (half-open): success closes
//! it, failure opens it again. Its state is the `natter_store_breaker_state`
//! gauge (0 closed, 1 half-open, 2 open).

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
    /// One probe is out; everyone else is refused until it returns.
    HalfOpen,
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
            State::Open { until } if Instant::now() >= until => {
                *s = State::HalfOpen;
                gauge(&s);
                Ok(())
            }
            State::Open { .. } | State::HalfOpen => Err(StoreError::Fault {
                fault: Fault::Down,
                source: Arc::new(BreakerOpen),
            }),
        }
    }

    /// Reports how an admitted request went. Only failures that say the
    /// server is unreachable or stalled count; a refusal or a bug says the
    /// server answered.
    pub fn record<T>(&self, outcome: &Result<T, StoreError>) {
        // Busy (pool exhausted, statement timeout, lock conflicts) is load
        // on a server that answers: backing off is the callers' business.
        let down = matches!(outcome, Err(e) if e.fault() == Some(Fault::Down));
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let next = match (*s, down) {
            (_, false) => State::Closed { failures: 0 },
            (State::Closed { failures }, true) if failures + 1 < self.options.failures => {
                State::Closed {
                    failures: failures + 1,
                }
            }
            (State::Open { until }, true) => State::Open { until },
            (_, true) => State::Open {
                until: Instant::now() + self.options.open_for,
            },
        };
        if next != *s {
            if matches!(next, State::Open { .. }) {
                tracing::warn!("database unreachable: circuit breaker open");
            } else if matches!(next, State::Closed { .. }) && !matches!(*s, State::Closed { .. }) {
                tracing::info!("database reachable again: circuit breaker closed");
            }
            *s = next;
            gauge(&s);
        }
    }
}

fn gauge(s: &State) {
    let v = match s {
        State::Closed { .. } => 0.0,
        State::HalfOpen => 1.0,
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
        assert_eq!(b.state(), State::HalfOpen);
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
}
