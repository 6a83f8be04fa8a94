//! What the metrics recorder holds when nobody scrapes `/metrics`: every
//! value a histogram records stays until something drains it, so the server
//! drains them itself every few seconds (`server::metrics::upkeep`). A test
//! binary of its own, because it counts every byte the process holds
//! through a counting allocator.
#![allow(unsafe_code)] // the counting allocator

use metrics_exporter_prometheus::PrometheusBuilder;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Bytes the process holds from its allocator.
static HELD: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every call goes to the system allocator unchanged; the count is
// an atomic integer.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's layout, as GlobalAlloc requires.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn held() -> isize {
    HELD.load(Ordering::Relaxed)
}

#[test]
fn the_upkeep_bounds_what_a_histogram_holds_when_nobody_scrapes() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let h = metrics::with_local_recorder(&recorder, || {
        metrics::histogram!("natter_test_upkeep_seconds")
    });
    let record = |n: u32| {
        for i in 0..n {
            h.record(f64::from(i) * 1e-6);
        }
    };
    record(1_000);
    let before = held();
    record(200_000);
    let grown = held() - before;
    // Each value is kept, with its time, until something drains it.
    assert!(grown >= 200_000 * 16, "held {grown} B for 200,000 values");

    let stop = CancellationToken::new();
    let mut task = Box::pin(natter::server::metrics::upkeep(
        handle.clone(),
        Duration::from_secs(5),
        stop.clone(),
    ));
    rt.block_on(async {
        tokio::select! {
            _ = &mut task => panic!("the upkeep ended before it was stopped"),
            _ = tokio::time::sleep(Duration::from_secs(6)) => {}
        }
    });
    // The drained blocks are freed once the recorder's epoch moves on,
    // which a few more records make it do.
    record(1_000);
    let after = held() - before;
    assert!(
        after < grown / 10,
        "after one upkeep the histogram still holds {after} of {grown} B"
    );
    // Nothing was lost: the drained values are in the summary.
    let page = handle.render();
    assert!(
        page.contains("natter_test_upkeep_seconds_count 202000"),
        "{page}"
    );
    stop.cancel();
    rt.block_on(task);
}
