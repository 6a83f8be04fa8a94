//! natter's domain logic: accounts, sessions, 1:1 messaging and sync.
//!
//! The service knows nothing of sockets or wire formats. It talks to storage
//! through [`natter_store::Store`] and announces what happened through an
//! [`EventSink`], which the gateway implements for the sessions it holds.
#![forbid(unsafe_code)]

mod accounts;
mod config;
mod error;
mod events;
mod groups;
mod messaging;
mod password;
mod social;

pub use accounts::{SessionInfo, Tokens};
pub use config::{PasswordConfig, ServiceConfig};
pub use error::ServiceError;
pub use events::{Event, EventSink, RevokeReason};
pub use messaging::SendInput;
pub use natter_store as store;
pub use social::FriendView;

use natter_store::{CommitFeed, Store};
use std::sync::Arc;

/// Everything a request handler needs, cheap to clone.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    events: Arc<dyn EventSink>,
    config: ServiceConfig,
    hasher: password::Hasher,
}

impl Service {
    pub fn new(store: Arc<dyn Store>, events: Arc<dyn EventSink>, config: ServiceConfig) -> Self {
        let hasher = password::Hasher::new(&config.password);
        Service {
            inner: Arc::new(Inner {
                store,
                events,
                config,
                hasher,
            }),
        }
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.inner.config
    }

    /// Forwards every newly committed message to the event sink, in commit
    /// order, until the feed closes. Run it as a task for the server's life.
    pub async fn dispatch(self, mut feed: CommitFeed) {
        while let Some(committed) = feed.recv().await {
            self.inner.events.publish(Event::Message(committed));
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
