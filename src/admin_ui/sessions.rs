//! The session ids a password login gives (the JavaScript package's `InMemoryStore`), so a
//! UI may connect again with `{sessionId}` instead of its password. Bounded in count and in
//! time, where the JavaScript store keeps every id for ever.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many ids are kept; the oldest goes first.
pub(crate) const MAX_SESSIONS: usize = 1000;

/// How long an id is good for (the JavaScript `RedisStore`'s default `sessionDuration`).
pub(crate) const SESSION_DURATION: Duration = Duration::from_secs(24 * 3600);

/// The ids given out, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Sessions(Mutex<VecDeque<(String, Instant)>>);

impl Sessions {
    /// A new id (16 hex digits, as `crypto.randomBytes(8).toString("hex")`), kept; `None`
    /// when the system has no randomness to give.
    pub(crate) fn open(&self) -> Option<String> {
        let mut bytes = [0u8; 8];
        if let Err(e) = getrandom::fill(&mut bytes) {
            tracing::error!("admin session id: no randomness: {e}");
            return None;
        }
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut ids = self.lock();
        expire(&mut ids);
        if ids.len() >= MAX_SESSIONS {
            ids.pop_front();
        }
        ids.push_back((id.clone(), Instant::now()));
        Some(id)
    }

    /// Whether `id` was given out and is still good.
    pub(crate) fn contains(&self, id: &str) -> bool {
        let mut ids = self.lock();
        expire(&mut ids);
        ids.iter().any(|(known, _)| known == id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(String, Instant)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn expire(ids: &mut VecDeque<(String, Instant)>) {
    while ids
        .front()
        .is_some_and(|(_, at)| at.elapsed() > SESSION_DURATION)
    {
        ids.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_16_hex_digits_known_until_pushed_out() {
        let sessions = Sessions::default();
        let first = sessions.open().unwrap();
        assert_eq!(first.len(), 16);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(sessions.contains(&first));
        assert!(!sessions.contains("deadbeef"));
        for _ in 0..MAX_SESSIONS {
            sessions.open().unwrap();
        }
        assert!(!sessions.contains(&first), "the oldest goes first");
        assert_eq!(sessions.lock().len(), MAX_SESSIONS);
    }
}
