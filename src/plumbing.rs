//! Shared plumbing that every other module may use and that uses nothing of the crate:
//! the boxed future, the one panic guard, and the one log throttle.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;

/// A boxed, sendable future that owns what it uses (futures-util's, fixed to `'static`).
pub type BoxFuture<T> = futures_util::future::BoxFuture<'static, T>;

/// Runs `call` with its panic contained: `Err(message)` instead of unwinding. For the
/// synchronous part of a user callback (the body of a closure before its future).
pub(crate) fn catch_panic_now<T>(call: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(call)).map_err(panic_message)
}

/// Awaits `fut` with its panic contained: `Err(message)` instead of unwinding. (Generic over
/// the future alone, so the result is `'static` whenever `fut` is.)
pub(crate) fn catch_panic<F: Future>(fut: F) -> impl Future<Output = Result<F::Output, String>> {
    AssertUnwindSafe(fut)
        .catch_unwind()
        .map(|res| res.map_err(panic_message))
}

/// Calls `call` and awaits the future it returns, a panic of either part contained.
pub(crate) async fn catch_panic_call<F: Future>(
    call: impl FnOnce() -> F,
) -> Result<F::Output, String> {
    catch_panic(catch_panic_now(call)?).await
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".to_owned())
}

/// Says which of many occurrences to log: the first [`LogThrottle::FIRST`], then at most one
/// a second, each line with the count so far. What a client or a publisher can make happen
/// at will must not be able to flood the log too, and a socket's first few must not hide
/// behind another's: keep one per thing that is counted (16 bytes).
#[derive(Debug, Default)]
pub(crate) struct LogThrottle {
    count: AtomicU64,
    last_logged_second: AtomicU64,
}

impl LogThrottle {
    /// How many occurrences are logged before the one-a-second rule starts.
    pub(crate) const FIRST: u64 = 10;

    /// For a `static`.
    pub(crate) const fn new() -> Self {
        Self {
            count: AtomicU64::new(0),
            last_logged_second: AtomicU64::new(0),
        }
    }

    /// Counts `n` more occurrences; `Some(count so far)` when a line is due.
    pub(crate) fn hit(&self, n: u64) -> Option<u64> {
        let count = self.count.fetch_add(n, Ordering::Relaxed) + n;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_logged_second.load(Ordering::Relaxed);
        let due = count <= Self::FIRST
            || (now > last
                && self
                    .last_logged_second
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok());
        if due && count <= Self::FIRST {
            self.last_logged_second.store(now, Ordering::Relaxed);
        }
        due.then_some(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_ten_then_at_most_one_a_second() {
        let throttle = LogThrottle::new();
        let first: Vec<_> = (0..10).filter_map(|_| throttle.hit(1)).collect();
        assert_eq!(first, (1..=10).collect::<Vec<_>>());
        let lines = (0..10_000).filter_map(|_| throttle.hit(1)).count();
        // Within the second of the tenth: none; across a second boundary: one.
        assert!(lines <= 1, "{lines}");
        assert_eq!(throttle.count.load(Ordering::Relaxed), 10_010);
    }

    #[tokio::test]
    async fn panics_of_either_part_are_contained() {
        let sync = catch_panic_call(|| -> std::future::Ready<()> { panic!("now") }).await;
        assert_eq!(sync.unwrap_err(), "now");
        let later = catch_panic_call(|| async { panic!("{}", "later") }).await;
        assert_eq!(later.unwrap_err(), "later");
        assert_eq!(catch_panic_call(|| async { 7 }).await, Ok(7));
    }
}
