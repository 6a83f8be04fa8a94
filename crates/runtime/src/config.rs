//! What every crate's configuration section shares: the answer its
//! `validate` gives when a setting is wrong, naming the key (as conduwuit's
//! `check.rs` does), so the binary can report it without knowing the rule.

use std::fmt;

/// A setting that fails its section's rule: the dotted key
/// (`section.key`) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub key: &'static str,
    pub reason: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration key `{}`: {}", self.key, self.reason)
    }
}

impl std::error::Error for Invalid {}

/// `Ok` when `ok`, else the key and the reason (made only when needed).
pub fn check(ok: bool, key: &'static str, reason: impl FnOnce() -> String) -> Result<(), Invalid> {
    if ok {
        Ok(())
    } else {
        Err(Invalid {
            key,
            reason: reason(),
        })
    }
}
