//! Rate limiters: a token bucket, a table of buckets keyed by user or
//! address (each user's send buckets among them), a table of escalating
//! back-offs for repeated failures, and a table of keys seen lately.
//!
//! Tables are sharded so unrelated keys do not contend, and bounded: an
//! entry that has returned to its resting state (a full bucket, a back-off
//! whose window passed) is indistinguishable from no entry and is swept;
//! a table full of live entries stops tracking new keys (and counts it in
//! `natter_limit_table_full_total`) rather than grow without bound.

use crate::clock::Instant;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The key a source address is limited by: an IPv4 address, or the /64 an
/// IPv6 address belongs to (one host usually holds a whole /64).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
    }

    fn wait(&self) -> Duration {
        if self.rate <= 0.0 {
            Duration::from_secs(1)
        } else {
            Duration::from_secs_f64(((1.0 - self.tokens) / self.rate).max(0.001))
        }
    }

    /// Takes one token, or says how long until one is available.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.wait())
        }
    }

    /// Returns a token taken for something that did not happen after all.
    pub fn give_back(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens + 1.0).min(self.burst);
    }

    /// Whether a token is available, without taking it.
    pub fn check(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            Ok(())
        } else {
            Err(self.wait())
        }
    }

    /// Full again: the same as a bucket that was never touched.
    fn is_rested(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }
}

const SHARDS: usize = 16;

/// A sharded, bounded map for the tables below.
struct Table<K, V> {
    shards: Box<[Mutex<HashMap<K, V>>]>,
    hasher: RandomState,
    max_per_shard: usize,
    name: &'static str,
}

impl<K: Hash + Eq + Clone, V> Table<K, V> {
    fn new(name: &'static str, max_entries: usize) -> Self {
        Table {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            max_per_shard: (max_entries / SHARDS).max(1),
            name,
        }
    }

    fn shard(&self, key: &K) -> MutexGuard<'_, HashMap<K, V>> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the key's entry, creating it with `new` if there is room.
    /// `rested` says which entries may be swept to make room. Without room,
    /// `f` sees a fresh value that is not kept.
    fn with<R>(
        &self,
        key: &K,
        new: impl FnOnce() -> V,
        rested: impl Fn(&V) -> bool,
        f: impl FnOnce(&mut V) -> R,
    ) -> R {
        let mut shard = self.shard(key);
        if let Some(v) = shard.get_mut(key) {
            return f(v);
        }
        if shard.len() >= self.max_per_shard {
            shard.retain(|_, v| !rested(v));
        }
        if shard.len() >= self.max_per_shard {
            metrics::counter!("natter_limit_table_full_total", "table" => self.name).increment(1);
            let mut v = new();
            return f(&mut v);
        }
        f(shard.entry(key.clone()).or_insert_with(new))
    }

    fn remove(&self, key: &K) {
        self.shard(key).remove(key);
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

/// A token bucket per key (a user, an address).
pub struct KeyedBuckets<K> {
    table: Table<K, TokenBucket>,
    rate: f64,
    burst: f64,
}

impl<K: Hash + Eq + Clone> KeyedBuckets<K> {
    /// `name` labels the table's metrics; at most about `max_entries` keys
    /// are tracked at once.
    pub fn new(name: &'static str, rate: f64, burst: f64, max_entries: usize) -> Self {
        KeyedBuckets {
            table: Table::new(name, max_entries),
            rate,
            burst,
        }
    }

    pub fn take(&self, key: &K, now: Instant) -> Result<(), Duration> {
        self.with(key, now, |b| b.take(now))
    }

    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        self.with(key, now, |b| b.check(now))
    }

    pub fn give_back(&self, key: &K, now: Instant) {
        self.with(key, now, |b| b.give_back(now))
    }

    fn with<R>(&self, key: &K, now: Instant, f: impl FnOnce(&mut TokenBucket) -> R) -> R {
        self.table.with(
            key,
            || TokenBucket::new(self.rate, self.burst, now),
            |b| b.is_rested(now),
            f,
        )
    }

    /// Keys tracked now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Each user's message bucket on this node (keyed by user id): the send
/// limiter on one node, and each node's own share of a cluster's.
pub struct SendBuckets(KeyedBuckets<u64>);

impl SendBuckets {
    pub fn new(rate_per_sec: f64, burst: f64) -> Self {
        SendBuckets(KeyedBuckets::new("send", rate_per_sec, burst, 1_000_000))
    }

    /// Takes one message from `user`'s bucket, without waiting.
    pub fn take(&self, user: u64) -> Result<(), Duration> {
        self.0.take(&user, Instant::now())
    }

    /// Gives back one message taken for a Send the store refused: the
    /// client sends it again, and it is charged once.
    pub fn give_back(&self, user: u64) {
        self.0.give_back(&user, Instant::now())
    }
}

/// Escalating back-off after repeated failures, per key: the first `free`
/// failures cost nothing; once they are spent, each attempt waits, `base`
/// after the last free one and doubling with each further failure up to
/// `max`. A key that has not failed for `window` starts afresh; a success
/// clears it. One wait never exceeds `max` (though whoever keeps failing
/// keeps the key waiting).
pub struct Backoff<K> {
    table: Table<K, Failures>,
    pub free: u32,
    pub base: Duration,
    pub max: Duration,
    pub window: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last: Instant,
    until: Instant,
}

impl<K: Hash + Eq + Clone> Backoff<K> {
    pub fn new(
        name: &'static str,
        free: u32,
        base: Duration,
        max: Duration,
        window: Duration,
        max_entries: usize,
    ) -> Self {
        Backoff {
            table: Table::new(name, max_entries),
            free,
            base,
            max,
            window,
        }
    }

    fn rested(&self, f: &Failures, now: Instant) -> bool {
        now.saturating_duration_since(f.last) >= self.window && now >= f.until
    }

    /// How long the key must still wait, if it must.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let mut shard = self.table.shard(key);
        match shard.get(key) {
            Some(f) if self.rested(f, now) => {
                shard.remove(key);
                Ok(())
            }
            Some(f) if now < f.until => Err(f.until - now),
            _ => Ok(()),
        }
    }

    /// Records a failure; returns the wait it imposes from now.
    pub fn fail(&self, key: &K, now: Instant) -> Duration {
        self.entry(key, now, |f| {
            self.record(f, now);
            f.until.saturating_duration_since(now)
        })
    }

    /// Counts an attempt as a failure before it is judged, in one step with
    /// the check, or says how long the key must still wait. Attempts made at
    /// once cannot all pass the check before the first one fails: at most
    /// `free` of them get through while none has been judged.
    pub fn reserve(&self, key: &K, now: Instant) -> Result<(), Duration> {
        self.entry(key, now, |f| {
            if now < f.until {
                return Err(f.until - now);
            }
            self.record(f, now);
            Ok(())
        })
    }

    /// The wait after `count` failures: none while some are still free.
    pub fn wait_after(&self, count: u32) -> Duration {
        if count < self.free {
            return Duration::ZERO;
        }
        let doublings = (count - self.free).min(30);
        self.base.saturating_mul(1 << doublings).min(self.max)
    }

    fn record(&self, f: &mut Failures, now: Instant) {
        f.count += 1;
        f.last = now;
        f.until = f.until.max(now + self.wait_after(f.count));
    }

    /// Runs `op` on the key's failures (fresh if it rested), under its lock.
    fn entry<R>(&self, key: &K, now: Instant, op: impl FnOnce(&mut Failures) -> R) -> R {
        let fresh = Failures {
            count: 0,
            last: now,
            until: now,
        };
        self.table.with(
            key,
            || fresh,
            |f| self.rested(f, now),
            |f| {
                if self.rested(f, now) {
                    *f = fresh;
                }
                op(f)
            },
        )
    }

    pub fn succeed(&self, key: &K) {
        self.table.remove(key);
    }

    /// Takes back one failure recorded ahead of an attempt that turned out
    /// not to be one (it could not be judged), with the wait it imposed:
    /// the key waits as if it had never been made.
    pub fn give_back(&self, key: &K, now: Instant) {
        let mut shard = self.table.shard(key);
        let Some(f) = shard.get_mut(key) else {
            return;
        };
        f.count = f.count.saturating_sub(1);
        if f.count == 0 {
            shard.remove(key);
        } else {
            // The wait the failures left would have earned (none while
            // some are still free).
            f.until = f.until.min(now.max(f.last + self.wait_after(f.count)));
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Keys seen lately, each for `ttl` after it was last remembered: a bounded
/// table that forgets the oldest first (a full shard sweeps the expired, and
/// past that stops taking new keys, as the other tables do).
pub struct Remembered<K> {
    table: Table<K, Instant>,
    ttl: Duration,
}

impl<K: Hash + Eq + Clone> Remembered<K> {
    pub fn new(name: &'static str, ttl: Duration, max_entries: usize) -> Self {
        Remembered {
            table: Table::new(name, max_entries),
            ttl,
        }
    }

    pub fn remember(&self, key: &K, now: Instant) {
        let ttl = self.ttl;
        self.table.with(
            key,
            || now,
            |seen| now.saturating_duration_since(*seen) >= ttl,
            |seen| *seen = now,
        );
    }

    pub fn knows(&self, key: &K, now: Instant) -> bool {
        let shard = self.table.shard(key);
        shard
            .get(key)
            .is_some_and(|seen| now.saturating_duration_since(*seen) < self.ttl)
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn burst_then_refill() {
        let t0 = t0();
        let mut b = TokenBucket::new(10.0, 3.0, t0);
        for _ in 0..3 {
            assert!(b.take(t0).is_ok());
        }
        let wait = b.take(t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO);
        assert!(b.take(t0 + Duration::from_millis(100)).is_ok());
        assert!(b.take(t0 + Duration::from_millis(100)).is_err());
        // Never more than the burst, however long it waited.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(b.take(later).is_ok());
        }
        assert!(b.take(later).is_err());
    }

    #[test]
    fn check_does_not_take() {
        let t0 = t0();
        let mut b = TokenBucket::new(1.0, 1.0, t0);
        assert!(b.check(t0).is_ok());
        assert!(b.check(t0).is_ok());
        assert!(b.take(t0).is_ok());
        assert!(b.check(t0).is_err());
    }

    #[test]
    fn keyed_buckets_are_independent_and_swept_when_rested() {
        let t0 = t0();
        let k = KeyedBuckets::new("test", 1.0, 2.0, SHARDS * 2);
        let (a, b) = ("a".to_string(), "b".to_string());
        assert!(k.take(&a, t0).is_ok());
        assert!(k.take(&a, t0).is_ok());
        assert!(k.take(&a, t0).is_err());
        assert!(k.take(&b, t0).is_ok());
        // Far later every bucket is full again; filling the table sweeps them.
        let later = t0 + Duration::from_secs(10);
        for i in 0..1000 {
            let _ = k.take(&format!("x{i}"), later);
        }
        assert!(k.len() <= SHARDS * 2, "{}", k.len());
        // "a" was swept or refilled: either way it has its burst again.
        assert!(k.take(&a, later).is_ok());
    }

    #[test]
    fn a_full_table_of_live_entries_stops_tracking_new_keys() {
        let t0 = t0();
        let k = KeyedBuckets::new("test", 0.001, 1.0, SHARDS);
        for i in 0..200u32 {
            let _ = k.take(&i, t0);
        }
        assert!(k.len() <= SHARDS);
    }

    #[test]
    fn addresses_key_by_host() {
        let k = |s: &str| address_key(s.parse().unwrap()).to_string();
        assert_eq!(k("10.1.2.3"), "10.1.2.3");
        assert_eq!(k("::ffff:10.1.2.3"), "10.1.2.3");
        assert_eq!(k("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff::9"));
    }

    #[test]
    fn backoff_escalates_caps_and_forgets() {
        let t0 = t0();
        let b = Backoff::new(
            "test",
            3,
            Duration::from_secs(1),
            Duration::from_secs(8),
            Duration::from_secs(60),
            1000,
        );
        for _ in 0..2 {
            assert_eq!(b.fail(&"u", t0), Duration::ZERO);
            assert!(b.check(&"u", t0).is_ok());
        }
        // The third and last free failure makes the next attempt wait.
        let waits: Vec<u64> = (0..6).map(|_| b.fail(&"u", t0).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 8, 8]);
        assert_eq!(b.check(&"u", t0), Err(Duration::from_secs(8)));
        // The owner waits at most `max`, never forever.
        assert!(b.check(&"u", t0 + Duration::from_secs(8)).is_ok());
        // A quiet window starts afresh.
        let later = t0 + Duration::from_secs(120);
        assert!(b.check(&"u", later).is_ok());
        assert_eq!(b.fail(&"u", later), Duration::ZERO);
        b.succeed(&"u");
        assert!(b.is_empty());
    }

    #[test]
    fn reserving_lets_only_the_free_failures_through_at_once() {
        let t0 = t0();
        let b = Backoff::new(
            "test",
            5,
            Duration::from_secs(1),
            Duration::from_secs(8),
            Duration::from_secs(60),
            1000,
        );
        let passed = (0..50).filter(|_| b.reserve(&"u", t0).is_ok()).count();
        assert_eq!(passed, 5);
        assert_eq!(b.reserve(&"u", t0), Err(Duration::from_secs(1)));
        // One more after the wait, and the next waits twice as long.
        assert!(b.reserve(&"u", t0 + Duration::from_secs(1)).is_ok());
        assert_eq!(
            b.reserve(&"u", t0 + Duration::from_secs(1)),
            Err(Duration::from_secs(2))
        );
        // A success clears the key.
        b.succeed(&"u");
        assert!(b.reserve(&"u", t0 + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn remembered_keys_are_forgotten_after_their_time() {
        let t0 = t0();
        let r = Remembered::new("test", Duration::from_secs(10), SHARDS);
        r.remember(&1u32, t0);
        assert!(r.knows(&1, t0 + Duration::from_secs(9)));
        assert!(!r.knows(&2, t0));
        assert!(!r.knows(&1, t0 + Duration::from_secs(10)));
        // A full table sweeps what it has forgotten, and stays bounded.
        for i in 0..100 {
            r.remember(&i, t0 + Duration::from_secs(20));
        }
        assert!(r.len() <= SHARDS);
    }
}
