//! Panics never take the process down. Work that may panic (a connection,
//! the store writer's batch, a fan-out worker) runs under [`guard`] or
//! [`catch`], which name its component; a panic there is logged once, with
//! the component and a backtrace, counted in
//! `natter_panics_total{component}`, and only that unit of work is lost.

use std::backtrace::Backtrace;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;
use std::task::Poll;

thread_local! {
    /// The component running on this thread right now, inside a guard.
    static COMPONENT: Cell<Option<&'static str>> = const { Cell::new(None) };
    /// What the hook saw of the last panic, for the guard to log.
    static CAPTURED: RefCell<Option<Captured>> = const { RefCell::new(None) };
}

struct Captured {
    message: String,
    location: String,
    backtrace: String,
}

/// Sets the thread's component for as long as it lives.
struct Scope(Option<&'static str>);

impl Scope {
    fn enter(component: &'static str) -> Scope {
        Scope(COMPONENT.replace(Some(component)))
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        COMPONENT.set(self.0);
    }
}

fn message_of(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-string panic payload)".into())
}

/// Installs the process's panic hook (once). Inside a guard the hook only
/// records the panic and its backtrace for the guard to report; elsewhere it
/// logs and counts the panic as `unguarded`, then runs the previous hook.
pub fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let message = message_of(info.payload());
            let location = info.location().map(|l| l.to_string()).unwrap_or_default();
            if COMPONENT.get().is_some() {
                let backtrace = Backtrace::force_capture().to_string();
                CAPTURED.set(Some(Captured {
                    message,
                    location,
                    backtrace,
                }));
                return;
            }
            metrics::counter!("natter_panics_total", "component" => "unguarded").increment(1);
            let thread = std::thread::current();
            tracing::error!(
                component = "unguarded",
                thread = thread.name().unwrap_or("unnamed"),
                %location,
                "panic: {message}"
            );
            previous(info);
        }));
    });
}

fn report(component: &'static str, payload: &(dyn std::any::Any + Send)) {
    metrics::counter!("natter_panics_total", "component" => component).increment(1);
    match CAPTURED.take() {
        Some(c) => tracing::error!(
            component,
            location = %c.location,
            backtrace = %c.backtrace,
            "panic: {}",
            c.message
        ),
        // No hook installed: the default hook already printed it.
        None => tracing::error!(component, "panic: {}", message_of(payload)),
    }
}

/// Runs `f`; a panic is reported and becomes `None`.
pub fn catch<R>(component: &'static str, f: impl FnOnce() -> R) -> Option<R> {
    let _scope = Scope::enter(component);
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(payload) => {
            report(component, &*payload);
            None
        }
    }
}

/// Drives `fut`; a panic in any poll is reported and ends it with `None`.
/// The caller pins the future where it lives (`std::pin::pin!`), so the
/// guard adds a pointer to it, not a second copy of it.
pub async fn guard<F: Future>(
    component: &'static str,
    mut fut: std::pin::Pin<&mut F>,
) -> Option<F::Output> {
    std::future::poll_fn(move |cx| {
        let _scope = Scope::enter(component);
        match panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Some(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => {
                report(component, &*payload);
                Poll::Ready(None)
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_returns_none_on_panic_and_the_thread_goes_on() {
        install_hook();
        assert_eq!(catch("test", || 7), Some(7));
        assert_eq!(catch("test", || -> u32 { panic!("boom") }), None);
        assert_eq!(COMPONENT.get(), None);
        assert_eq!(catch("test", || 8), Some(8));
    }

    #[tokio::test]
    async fn guard_ends_a_panicking_future() {
        install_hook();
        let ok = guard("test", std::pin::pin!(async { 1 })).await;
        assert_eq!(ok, Some(1));
        let bad = guard(
            "test",
            std::pin::pin!(async {
                tokio::task::yield_now().await;
                panic!("in a later poll")
            }),
        )
        .await;
        assert_eq!(bad, None::<()>);
    }
}
