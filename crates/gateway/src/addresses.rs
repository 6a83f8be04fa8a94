//! Unauthenticated connections, counted per source address and in all. A
//! connection holds a slot from accept until it logs in, so one host cannot
//! fill the server with connections that never authenticate.

use natter_runtime::limits::address_key;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub(crate) struct Unauthenticated {
    by_address: Mutex<HashMap<IpAddr, usize>>,
    total: AtomicUsize,
}

/// One unauthenticated connection's place; given back when dropped.
pub(crate) struct Slot {
    table: Arc<Unauthenticated>,
    key: IpAddr,
}

impl Unauthenticated {
    /// A slot for a new connection from `ip`, unless that address already
    /// holds `per_address` unauthenticated connections or the server holds
    /// `total` (pass `usize::MAX` for no total limit).
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        per_address: usize,
        total: usize,
    ) -> Result<Slot, Refused> {
        let key = address_key(ip);
        let mut map = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        if self.total.load(Ordering::Relaxed) >= total {
            return Err(Refused::Total);
        }
        let n = map.entry(key).or_insert(0);
        if *n >= per_address {
            return Err(Refused::Address);
        }
        *n += 1;
        let total = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!("natter_unauthenticated_connections").set(total as f64);
        Ok(Slot {
            table: self.clone(),
            key,
        })
    }

    /// Unauthenticated connections now, from every address.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    Address,
    Total,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self
            .table
            .by_address
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
        let total = self.table.total.fetch_sub(1, Ordering::Relaxed) - 1;
        metrics::gauge!("natter_unauthenticated_connections").set(total as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_address_and_returned() {
        let t = Arc::new(Unauthenticated::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = t.admit(a, 2, 10).unwrap();
        let _s2 = t.admit(a, 2, 10).unwrap();
        assert_eq!(t.admit(a, 2, 10).err(), Some(Refused::Address));
        let _s3 = t.admit(b, 2, 3).unwrap();
        assert_eq!(t.admit(b, 2, 3).err(), Some(Refused::Total));
        drop(s1);
        assert_eq!(t.total(), 2);
        assert!(t.admit(a, 2, 10).is_ok());
    }
}
