//! A log line at most once a second, counting what happened in between: what a client or a
//! publisher can make happen at will must not be able to flood the log too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// Counts occurrences and lets one of them be logged per second (with the count).
#[derive(Debug, Default)]
pub(crate) struct EverySecond {
    since_logged: AtomicU64,
    last_log_second: AtomicU64,
}

impl EverySecond {
    /// For a `static`.
    pub(crate) const fn new() -> Self {
        Self {
            since_logged: AtomicU64::new(0),
            last_log_second: AtomicU64::new(0),
        }
    }

    /// Counts `n` occurrences; returns how many there were since the last line when a line
    /// is due now.
    pub(crate) fn count(&self, n: u64) -> Option<u64> {
        self.since_logged.fetch_add(n, Ordering::Relaxed);
        let now = crate::clock::unix_millis(SystemTime::now()) / 1000;
        let last = self.last_log_second.load(Ordering::Relaxed);
        let due = now > last
            && self
                .last_log_second
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        due.then(|| self.since_logged.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_with_the_count() {
        let throttle = EverySecond::new();
        assert_eq!(throttle.count(1), Some(1));
        let lines = (0..10_000).filter_map(|_| throttle.count(1)).count();
        // Within the same second as the first: none; across a second boundary: one.
        assert!(lines <= 1, "{lines}");
    }
}
