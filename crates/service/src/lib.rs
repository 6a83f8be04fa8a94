//! natter's domain logic: accounts, sessions, 1:1 messaging and sync;
//! email codes when `[email]` is set.
//!
//! The service knows nothing of sockets or wire formats. It talks to storage
//! through [`natter_store::Store`] and announces what happened through an
//! [`EventSink`], which the gateway implements for the sessions it holds.
#![forbid(unsafe_code)]

mod accounts;
pub mod admin;
mod config;
mod email;
mod error;
mod events;
pub mod files;
mod groups;
mod messaging;
mod password;
mod social;
mod throttle;

pub use accounts::{SessionInfo, Tokens};
pub use config::{DirectMessages, PasswordConfig, ServiceConfig, SessionConfig, SocialConfig};
pub use email::{EmailConfig, EmailTls};
pub use error::{ServiceError, Unavailable};
pub use events::{Event, EventSink, Limiter, Presence, PresenceUnknown, Push, RevokeReason};
pub use messaging::{PendingSend, SendInput};
/// The domain types callers of the service use; the backends stay below.
pub use natter_domain::model;
pub use password::hash_now as hash_password;
pub use social::FriendView;
pub use throttle::ThrottleConfig;

use natter_runtime::load::Load;
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
    presence: Arc<dyn Presence>,
    /// Each user's message allowance, shared by their sessions (on every
    /// node, in a cluster) and kept when they disconnect, so reconnecting
    /// does not refill the burst. Every edge's send goes through it.
    limiter: Arc<dyn Limiter>,
    config: ServiceConfig,
    hasher: password::Hasher,
    throttles: throttle::Throttles,
    /// The mailer, with `[email]`.
    mail: Option<email::Mail>,
    load: Arc<Load>,
    /// Uploads, when this node stores files (`Service::set_files`).
    files: std::sync::OnceLock<files::Files>,
}

impl Service {
    /// `load` is the node's overload stage: while it sheds, new logins and
    /// registrations are refused and ephemeral signals pause. `events` and
    /// `presence` are where sessions are: the gateway's registry on one
    /// node, the cluster bus in front of it on several. `limiter` keeps
    /// each user's send rate (this node's buckets, or the cluster's).
    pub fn new(
        store: Arc<dyn Store>,
        events: Arc<dyn EventSink>,
        presence: Arc<dyn Presence>,
        limiter: Arc<dyn Limiter>,
        config: ServiceConfig,
        load: Arc<Load>,
    ) -> Self {
        let p = &config.password;
        let hasher = password::Hasher::new(&password::PoolConfig {
            memory_kib: p.argon2_memory_kib,
            iterations: p.argon2_iterations,
            parallelism: p.argon2_parallelism,
            workers: p.max_concurrent_hashes,
            queue: p.max_queued_hashes,
        });
        Service {
            inner: Arc::new(Inner {
                throttles: throttle::Throttles::knowing_for(
                    &config.throttle,
                    std::time::Duration::from_secs(config.token_ttl_secs),
                ),
                mail: email::Mail::new(&config.email, config.throttle.max_tracked),
                store,
                events,
                presence,
                limiter,
                config,
                hasher,
                load,
                files: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Gives the service the node's file storage (once, at start-up):
    /// file messages then share their file with their conversation.
    pub fn set_files(&self, files: files::Files) {
        let _ = self.inner.files.set(files);
    }

    /// The node's file storage; `NOT_FOUND` on a node that keeps none.
    pub fn files(&self) -> Result<&files::Files, ServiceError> {
        self.inner
            .files
            .get()
            .ok_or(ServiceError::NotFound("file storage"))
    }

    /// The node's overload stage.
    pub fn load_handle(&self) -> Arc<Load> {
        self.inner.load.clone()
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.inner.config
    }

    /// A list page: `limit` items (0: `default`, at most `max`) within the
    /// page byte budget, so the answer fits in one frame.
    pub(crate) fn list_page(
        &self,
        limit: usize,
        default: usize,
        max: usize,
    ) -> natter_domain::Page {
        natter_domain::Page {
            items: if limit == 0 { default } else { limit.min(max) },
            bytes: self.inner.config.max_page_bytes,
        }
    }

    /// Forwards every newly committed message of one feed shard to the
    /// event sink, in commit order, until the feed closes (when the store
    /// has closed): run one per shard for the server's life, and wait for
    /// them at shutdown. A panic while fanning out one message loses that
    /// push only (sync recovers it).
    pub async fn dispatch(self, mut feed: CommitFeed) {
        while let Some(committed) = feed.recv().await {
            let events = &self.inner.events;
            natter_runtime::panics::catch("fanout", || {
                events.publish(Event::Message(committed));
            });
        }
    }
}

pub use natter_runtime::clock::now_ms;
