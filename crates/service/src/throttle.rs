//! Limits on what is costly or amplifying to ask for: password logins per
//! address, failed logins per address and per username (an escalating
//! back-off whose every wait is capped),
//! registrations per address, and typing signals per user and conversation.
//! Token resumes are never throttled here: a device with a session can
//! always come back.

use crate::ServiceError;
use natter_domain::{ConversationId, UserId};
use natter_runtime::clock::Instant;
use natter_runtime::config::{check, Invalid};
use natter_runtime::limits::{address_key, Backoff, KeyedBuckets, Remembered};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::time::Duration;

/// The `[throttle]` section: limits on logins, registrations and typing.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Password logins per second from one address, and the burst.
    pub login_rate_per_address: f64,
    pub login_burst_per_address: f64,
    /// Failed logins from one address: the burst, refilled at this rate.
    pub failed_login_rate_per_address: f64,
    pub failed_login_burst_per_address: f64,
    /// Failures of one username before its back-off starts.
    pub failed_login_free_per_user: u32,
    pub failed_login_backoff_ms: u64,
    pub failed_login_backoff_max_ms: u64,
    /// A username without a failure for this long starts afresh.
    pub failed_login_window_secs: u64,
    pub register_rate_per_address: f64,
    pub register_burst_per_address: f64,
    /// One typing signal per user and conversation per interval is passed on.
    pub typing_interval_ms: u64,
    /// Keys each table tracks at most (not a setting).
    #[serde(skip)]
    pub max_tracked: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            login_rate_per_address: 2.0,
            login_burst_per_address: 20.0,
            failed_login_rate_per_address: 0.1,
            failed_login_burst_per_address: 20.0,
            failed_login_free_per_user: 5,
            failed_login_backoff_ms: 1_000,
            failed_login_backoff_max_ms: 60_000,
            failed_login_window_secs: 900,
            register_rate_per_address: 1.0 / 60.0,
            register_burst_per_address: 5.0,
            typing_interval_ms: 3_000,
            max_tracked: 100_000,
        }
    }
}

impl ThrottleConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        let t = self;
        for (ok, key) in [
            (
                t.login_rate_per_address > 0.0,
                "throttle.login_rate_per_address",
            ),
            (
                t.login_burst_per_address >= 1.0,
                "throttle.login_burst_per_address",
            ),
            (
                t.failed_login_rate_per_address > 0.0,
                "throttle.failed_login_rate_per_address",
            ),
            (
                t.failed_login_burst_per_address >= 1.0,
                "throttle.failed_login_burst_per_address",
            ),
            (
                t.register_rate_per_address > 0.0,
                "throttle.register_rate_per_address",
            ),
            (
                t.register_burst_per_address >= 1.0,
                "throttle.register_burst_per_address",
            ),
            (
                t.failed_login_backoff_ms >= 1,
                "throttle.failed_login_backoff_ms",
            ),
            (
                t.failed_login_window_secs >= 1,
                "throttle.failed_login_window_secs",
            ),
            (t.typing_interval_ms >= 1, "throttle.typing_interval_ms"),
        ] {
            check(ok, key, || "must be positive (bursts at least 1)".into())?;
        }
        check(
            t.failed_login_backoff_max_ms >= t.failed_login_backoff_ms,
            "throttle.failed_login_backoff_max_ms",
            || "must be at least throttle.failed_login_backoff_ms".into(),
        )
    }
}

pub(crate) struct Throttles {
    logins: KeyedBuckets<IpAddr>,
    failed_by_address: KeyedBuckets<IpAddr>,
    failed_by_user: Backoff<String>,
    registrations: KeyedBuckets<IpAddr>,
    typing: KeyedBuckets<(UserId, ConversationId)>,
    /// (address, username) pairs that gave the right password lately: a
    /// login from one is hashed ahead of the crowd (see `password`).
    known: Remembered<(IpAddr, String)>,
}

pub(crate) fn limited(what: &'static str, retry_after: Duration) -> ServiceError {
    metrics::counter!("natter_limit_hits_total", "limit" => what).increment(1);
    ServiceError::RateLimited {
        what: match what {
            "login_rate" => "too many logins from this address",
            "failed_logins_address" => "too many failed logins from this address",
            "failed_logins_user" => "too many failed logins for this account",
            "email_codes_address" => "too many codes sent to this email address",
            "email_codes_source" => "too many email codes asked for from this address",
            "email_code_tries" => "too many email codes tried from this address",
            _ => "too many registrations from this address",
        },
        retry_after,
    }
}

impl Throttles {
    #[cfg(test)]
    pub fn new(c: &ThrottleConfig) -> Self {
        Throttles::knowing_for(c, Duration::from_secs(30 * 24 * 3600))
    }

    /// `known_for`: how long an address that logged in to an account stays
    /// known for it (the service gives a session's lifetime).
    pub fn knowing_for(c: &ThrottleConfig, known_for: Duration) -> Self {
        let n = c.max_tracked;
        Throttles {
            known: Remembered::new("known_logins", known_for, n),
            logins: KeyedBuckets::new(
                "logins",
                c.login_rate_per_address,
                c.login_burst_per_address,
                n,
            ),
            failed_by_address: KeyedBuckets::new(
                "failed_logins_address",
                c.failed_login_rate_per_address,
                c.failed_login_burst_per_address,
                n,
            ),
            failed_by_user: Backoff::new(
                "failed_logins_user",
                c.failed_login_free_per_user,
                Duration::from_millis(c.failed_login_backoff_ms),
                Duration::from_millis(c.failed_login_backoff_max_ms),
                Duration::from_secs(c.failed_login_window_secs),
                n,
            ),
            registrations: KeyedBuckets::new(
                "registrations",
                c.register_rate_per_address,
                c.register_burst_per_address,
                n,
            ),
            typing: KeyedBuckets::new(
                "typing",
                1.0 / Duration::from_millis(c.typing_interval_ms)
                    .as_secs_f64()
                    .max(0.001),
                1.0,
                n,
            ),
        }
    }

    /// Before a password is checked: refuses when the username (or, with
    /// one, the address) must wait, and otherwise counts the attempt as a
    /// failure at once, in one step with the username's check, so that
    /// guesses made in parallel get no more than the free failures between
    /// them before the first one is judged. A correct password takes it back.
    pub fn before_password(
        &self,
        user: &str,
        from: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), ServiceError> {
        let user = user.to_owned();
        let refused = |d| limited("failed_logins_user", d);
        self.failed_by_user.check(&user, now).map_err(refused)?;
        let addr = from.map(address_key);
        if let Some(addr) = addr {
            self.failed_by_address
                .check(&addr, now)
                .map_err(|d| limited("failed_logins_address", d))?;
            self.logins
                .take(&addr, now)
                .map_err(|d| limited("login_rate", d))?;
            let _ = self.failed_by_address.take(&addr, now);
        }
        if let Err(d) = self.failed_by_user.reserve(&user, now) {
            // Another guess took the last free failure since the check.
            if let Some(addr) = addr {
                self.logins.give_back(&addr, now);
                self.failed_by_address.give_back(&addr, now);
            }
            return Err(refused(d));
        }
        Ok(())
    }

    /// The password was right: the attempt was no failure after all, and
    /// the address is known for the account from now on.
    pub fn password_right(&self, user: &str, from: Option<IpAddr>, now: Instant) {
        self.failed_by_user.succeed(&user.to_owned());
        if let Some(addr) = from.map(address_key) {
            self.known.remember(&(addr, user.to_owned()), now);
        }
        self.not_checked(from, now);
    }

    /// The account could not be looked up (the storage down or busy):
    /// nothing was guessed, so neither the username nor the address is
    /// charged a failure. Only a wrong password counts toward a back-off.
    pub fn not_looked_up(&self, user: &str, from: Option<IpAddr>, now: Instant) {
        self.failed_by_user.give_back(&user.to_owned(), now);
        self.not_checked(from, now);
    }

    /// Whether `from` gave the right password for `user` lately.
    pub fn known(&self, user: &str, from: IpAddr, now: Instant) -> bool {
        self.known.knows(&(address_key(from), user.to_owned()), now)
    }

    /// The password could not be checked (the hashing line was full): the
    /// address's failure is given back; the username's stays counted, so a
    /// busy server never makes guessing cheaper.
    pub fn not_checked(&self, from: Option<IpAddr>, now: Instant) {
        if let Some(addr) = from.map(address_key) {
            self.failed_by_address.give_back(&addr, now);
        }
    }

    pub fn before_register(&self, from: IpAddr, now: Instant) -> Result<(), ServiceError> {
        self.registrations
            .take(&address_key(from), now)
            .map_err(|d| limited("registrations", d))
    }

    /// Whether this typing signal should be passed on.
    pub fn typing(&self, user: UserId, conversation: ConversationId, now: Instant) -> bool {
        self.typing.take(&(user, conversation), now).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn failed_logins_back_off_per_user_and_per_address() {
        let t = Throttles::new(&ThrottleConfig {
            failed_login_burst_per_address: 8.0,
            ..ThrottleConfig::default()
        });
        let now = Instant::now;
        let at = |s: &str| Some(addr(s));
        // A guesser spreads over addresses: the username backs off after 5.
        for i in 0..5 {
            t.before_password("alice", at(&format!("10.0.0.{i}")), now())
                .unwrap();
        }
        match t.before_password("alice", at("10.9.9.9"), now()) {
            Err(ServiceError::RateLimited { retry_after, .. }) => {
                assert_eq!(retry_after, Duration::from_secs(1))
            }
            other => panic!("{other:?}"),
        }
        // Other users from a clean address are untouched.
        t.before_password("bob", at("10.9.9.9"), now()).unwrap();
        t.password_right("bob", at("10.9.9.9"), now());
        // The owner is let in once the (capped) back-off passes.
        tokio::time::advance(Duration::from_secs(1)).await;
        t.before_password("alice", at("10.9.9.9"), now()).unwrap();
        t.password_right("alice", at("10.9.9.9"), now());
        t.before_password("alice", at("10.9.9.9"), now()).unwrap();
        // One address guessing many names runs out of its failure burst,
        // however many guesses it has in flight at once.
        let bad = at("192.0.2.1");
        let passed = (0..20)
            .filter(|i| t.before_password(&format!("user{i}"), bad, now()).is_ok())
            .count();
        assert_eq!(passed, 8);
        // Without an address (a password change) only the username counts.
        for _ in 0..5 {
            t.before_password("carol", None, now()).unwrap();
        }
        assert!(t.before_password("carol", None, now()).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_the_storage_could_not_judge_cost_nothing() {
        let t = Throttles::new(&ThrottleConfig {
            failed_login_burst_per_address: 3.0,
            ..ThrottleConfig::default()
        });
        let (now, from) = (Instant::now, Some(addr("10.0.0.1")));
        for _ in 0..20 {
            t.before_password("dave", from, now()).unwrap();
            t.not_looked_up("dave", from, now());
        }
        // Five wrong passwords are free; the back-off starts after them.
        for _ in 0..5 {
            t.before_password("dave", None, now()).unwrap();
        }
        assert!(t.before_password("dave", None, now()).is_err());
        // One that could not be judged takes back the doubling it made:
        // the wait stays the 1 s the five wrong ones earned, not 2 s.
        tokio::time::advance(Duration::from_secs(1)).await;
        t.before_password("dave", None, now()).unwrap();
        t.not_looked_up("dave", None, now());
        match t.before_password("dave", None, now()) {
            Err(ServiceError::RateLimited { retry_after, .. }) => {
                assert_eq!(retry_after, Duration::from_secs(1))
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_is_known_for_an_account_once_its_password_was_right() {
        let t = Throttles::knowing_for(&ThrottleConfig::default(), Duration::from_secs(60));
        let (home, elsewhere) = (addr("10.0.0.1"), addr("10.0.0.2"));
        t.before_password("dave", Some(home), Instant::now())
            .unwrap();
        assert!(!t.known("dave", home, Instant::now()));
        t.password_right("dave", Some(home), Instant::now());
        assert!(t.known("dave", home, Instant::now()));
        assert!(!t.known("dave", elsewhere, Instant::now()));
        assert!(!t.known("erin", home, Instant::now()));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(!t.known("dave", home, Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn registrations_and_typing_are_paced() {
        let t = Throttles::new(&ThrottleConfig::default());
        let from = addr("2001:db8::1");
        for _ in 0..5 {
            t.before_register(from, Instant::now()).unwrap();
        }
        // Another address in the same /64 shares the allowance.
        assert!(t
            .before_register(addr("2001:db8::2"), Instant::now())
            .is_err());
        assert!(t.typing(1, 7, Instant::now()));
        assert!(!t.typing(1, 7, Instant::now()));
        assert!(t.typing(1, 8, Instant::now()));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(t.typing(1, 7, Instant::now()));
    }
}
