//! The file-descriptor budget. The process's descriptor limit is raised to
//! its hard maximum and split between the chat listeners and the HTTP
//! listener, after what the store and the runtime keep open, so no listener
//! can take the descriptors another one needs. When the configured caps do
//! not fit, both are scaled down in proportion, with a warning naming them.

use crate::config::Config;

/// Descriptors kept for everything but client connections: the database
/// files of each store connection, listeners, the runtime, logs.
fn reserve(c: &Config) -> u64 {
    // A database server: the pool and the writer's connection.
    let server = match c.store.backend {
        crate::config::Backend::Postgres | crate::config::Backend::Mysql => {
            c.store.pool_size as u64 + 1
        }
        crate::config::Backend::Sqlite => 0,
    };
    // Redis: the command connection, the subscription, one reconnecting.
    let cluster = if c.cluster.redis_url.is_empty() { 0 } else { 3 };
    // Each HTTP listener's health slots, past its cap (HTTP and HTTPS).
    let health = 2 * natter_api::HEALTH_SLOTS as u64;
    64 + 3 * (c.store.readers as u64 + 2) + server + cluster + health
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Chat connections (TCP and WebSocket together).
    pub chat: usize,
    pub http: usize,
}

/// Raises the soft descriptor limit to the hard one; returns the limit now.
fn raise_nofile() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
        l = getrlimit(Resource::Nofile);
    }
    l.current
}

/// The connection caps to use, within the descriptors this process has.
pub fn budget(c: &Config) -> Budget {
    let want = Budget {
        chat: c.limits.max_connections,
        http: if c.listen.http.is_empty()
            && c.listen.https.is_empty()
            && matches!(c.listen.admin.as_str(), "" | "none")
        {
            0
        } else {
            c.http.max_connections
        },
    };
    let Some(limit) = raise_nofile() else {
        return want;
    };
    let b = split(want, limit.saturating_sub(reserve(c)));
    if b != want {
        tracing::warn!(
            limit,
            chat = b.chat,
            http = b.http,
            "limits.max_connections ({}) and http.max_connections ({}) do not fit in this \
             process's {limit} file descriptors: using {} and {}",
            want.chat,
            want.http,
            b.chat,
            b.http
        );
    }
    b
}

fn split(want: Budget, room: u64) -> Budget {
    let total = (want.chat + want.http) as u64;
    if total <= room {
        return want;
    }
    let chat = (room * want.chat as u64 / total.max(1)).max(1) as usize;
    let http = if want.http == 0 {
        0
    } else {
        (room as usize).saturating_sub(chat).max(1)
    };
    Budget { chat, http }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_that_fit_are_kept_and_others_scaled_in_proportion() {
        let b = |chat, http| Budget { chat, http };
        assert_eq!(split(b(100, 10), 1000), b(100, 10));
        assert_eq!(split(b(19_000, 512), 19_500), b(18_988, 512));
        assert_eq!(split(b(19_000, 1_000), 200), b(190, 10));
        assert_eq!(split(b(19_000, 0), 200), b(200, 0));
    }
}
