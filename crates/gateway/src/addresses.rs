//! Unauthenticated connections, counted per source address and in all. A
//! connection holds a slot from accept until it logs in, so one host cannot
//! fill the server with connections that never authenticate, and many hosts
//! cannot take the room logins need: past the bound on all of them, or when
//! the node is full, a new connection evicts one still waiting to log in.

use natter_runtime::limits::address_key;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub(crate) struct Unauthenticated {
    table: Mutex<Table>,
    total: AtomicUsize,
}

/// Each address's waiting connections, oldest first, with the token that
/// evicts each.
#[derive(Default)]
struct Table {
    by_address: HashMap<IpAddr, VecDeque<(u64, CancellationToken)>>,
    next: u64,
}

/// One unauthenticated connection's place; given back when dropped.
pub(crate) struct Slot {
    table: Arc<Unauthenticated>,
    key: IpAddr,
    seq: u64,
    evicted: CancellationToken,
}

impl Slot {
    /// Cancelled when a newer connection took this one's place.
    pub fn evicted(&self) -> CancellationToken {
        self.evicted.clone()
    }
}

impl Unauthenticated {
    /// A slot for a new connection from `ip`, unless that address already
    /// holds `per_address` unauthenticated connections or the server holds
    /// `refuse_at` (pass `usize::MAX` for no such limit). When `evict_at`
    /// are waiting already, one of them is evicted to make room (and
    /// `evicted` says so: its place among all connections is freed too).
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        per_address: usize,
        refuse_at: usize,
        evict_at: usize,
    ) -> Result<Admission, Refused> {
        let key = address_key(ip);
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let total = self.total.load(Ordering::Relaxed);
        if total >= refuse_at {
            return Err(Refused::Total);
        }
        if table.by_address.get(&key).map_or(0, VecDeque::len) >= per_address {
            return Err(Refused::Address);
        }
        let evicted = total >= evict_at && self.evict(&mut table, None);
        let (seq, token) = (table.next, CancellationToken::new());
        table.next += 1;
        table
            .by_address
            .entry(key)
            .or_default()
            .push_back((seq, token.clone()));
        self.moved(1);
        let slot = Slot {
            table: self.clone(),
            key,
            seq,
            evicted: token,
        };
        Ok(Admission { slot, evicted })
    }

    /// Evicts one waiting connection other than `spare`'s, to free the
    /// place it holds among all connections; false when there is none.
    pub fn evict_one(&self, spare: Option<&Slot>) -> bool {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        self.evict(&mut table, spare.map(|s| s.seq))
    }

    /// The oldest connection of the address holding the most: a flood from
    /// a few hosts loses its own connections first, and one client's login
    /// from an address of its own is the last to go.
    fn evict(&self, table: &mut Table, spare: Option<u64>) -> bool {
        let victim = table
            .by_address
            .iter()
            .filter_map(|(ip, q)| {
                let (i, (seq, _)) = q.iter().enumerate().find(|(_, (s, _))| Some(*s) != spare)?;
                Some((q.len(), std::cmp::Reverse(*seq), *ip, i))
            })
            .max();
        let Some((_, _, ip, i)) = victim else {
            return false;
        };
        let q = table
            .by_address
            .get_mut(&ip)
            .expect("the victim's address is in the table");
        if let Some((_, token)) = q.remove(i) {
            token.cancel();
        }
        if q.is_empty() {
            table.by_address.remove(&ip);
        }
        self.moved(-1);
        metrics::counter!("natter_unauthenticated_evictions_total").increment(1);
        true
    }

    fn moved(&self, by: isize) {
        let total = if by > 0 {
            self.total.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.total.fetch_sub(1, Ordering::Relaxed) - 1
        };
        metrics::gauge!("natter_unauthenticated_connections").set(total as f64);
    }

    /// Unauthenticated connections now, from every address.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

/// A new connection's slot, and whether another was evicted for it.
pub(crate) struct Admission {
    pub slot: Slot,
    pub evicted: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    Address,
    Total,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = self.table.table.lock().unwrap_or_else(|p| p.into_inner());
        let Some(q) = table.by_address.get_mut(&self.key) else {
            return;
        };
        // An evicted slot was taken out of the table already.
        let Some(i) = q.iter().position(|(s, _)| *s == self.seq) else {
            return;
        };
        q.remove(i);
        if q.is_empty() {
            table.by_address.remove(&self.key);
        }
        self.table.moved(-1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO: usize = usize::MAX;

    #[test]
    fn slots_are_counted_per_address_and_returned() {
        let t = Arc::new(Unauthenticated::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = t.admit(a, 2, 10, NO).unwrap().slot;
        let _s2 = t.admit(a, 2, 10, NO).unwrap().slot;
        assert_eq!(t.admit(a, 2, 10, NO).err(), Some(Refused::Address));
        let _s3 = t.admit(b, 2, 3, NO).unwrap().slot;
        assert_eq!(t.admit(b, 2, 3, NO).err(), Some(Refused::Total));
        drop(s1);
        assert_eq!(t.total(), 2);
        assert!(!t.admit(a, 2, 10, NO).unwrap().evicted);
    }

    #[test]
    fn past_the_bound_the_busiest_address_loses_its_oldest() {
        let t = Arc::new(Unauthenticated::default());
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        let a1 = t.admit(ip(1), 9, NO, 3).unwrap().slot;
        let a2 = t.admit(ip(1), 9, NO, 3).unwrap().slot;
        let b1 = t.admit(ip(2), 9, NO, 3).unwrap().slot;
        // The fourth evicts: address 1 holds the most, a1 is its oldest.
        let c1 = t.admit(ip(3), 9, NO, 3).unwrap();
        assert!(c1.evicted && a1.evicted().is_cancelled());
        let c1 = c1.slot;
        assert_eq!(t.total(), 3);
        // Evicted slots give back nothing more when they end.
        drop(a1);
        assert_eq!(t.total(), 3);
        // A tie: the oldest of them (a2) goes.
        let c2 = t.admit(ip(3), 9, NO, 3).unwrap().slot;
        assert!(a2.evicted().is_cancelled());
        // Making room among all connections for c1: address 3 holds the
        // most, and c1 is spared, so c2 goes.
        assert!(t.evict_one(Some(&c1)));
        assert!(!c1.evicted().is_cancelled() && c2.evicted().is_cancelled());
        assert!(!b1.evicted().is_cancelled());
        assert_eq!(t.total(), 2);
        drop((a2, c2, b1));
        assert!(!t.evict_one(Some(&c1)), "nothing else to evict");
        drop(c1);
        assert_eq!(t.total(), 0);
    }
}
