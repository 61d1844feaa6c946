//! The requests this instance has asked of the fleet and still awaits answers to, by request
//! id: what comes on the response channels is handed to the one waiting for it, and what
//! nobody waits for (answers to other servers, late answers) is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::fanout::fleet_wire::Response;

/// The table; cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct PendingRequests {
    inner: Arc<Table>,
}

#[derive(Default)]
struct Table {
    waiting: Mutex<HashMap<String, mpsc::UnboundedSender<Response>>>,
    next: AtomicU64,
}

/// One request's answers, as they come; dropping it forgets the request.
pub(crate) struct Awaited {
    /// The id its answers carry.
    pub(crate) id: String,
    answers: mpsc::UnboundedReceiver<Response>,
    table: Arc<Table>,
}

impl PendingRequests {
    /// Registers a new request; its id is unique in the fleet as long as `uid` is (the
    /// instance's uid and a counter).
    pub(crate) fn register(&self, uid: &str) -> Awaited {
        let n = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{uid}-{n}");
        let (tx, answers) = mpsc::unbounded_channel();
        self.lock().insert(id.clone(), tx);
        Awaited {
            id,
            answers,
            table: self.inner.clone(),
        }
    }

    /// Hands an answer to its request; `false` when nobody waits for it.
    pub(crate) fn answer(&self, response: Response) -> bool {
        match self.lock().get(&response.request_id) {
            Some(tx) => tx.send(response).is_ok(),
            None => false,
        }
    }

    /// How many requests await answers.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<Response>>> {
        self.inner.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Awaited {
    /// The next answer; `None` never comes while the request is registered, so callers
    /// bound the wait themselves.
    pub(crate) async fn next(&mut self) -> Option<Response> {
        self.answers.recv().await
    }

    /// The next answer if one is there already (for streams polled by hand).
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Response>> {
        self.answers.poll_recv(cx)
    }
}

impl Drop for Awaited {
    fn drop(&mut self) {
        self.table
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Arg;

    fn response(id: &str) -> Response {
        Response {
            request_id: id.into(),
            kind: None,
            body: Arg::Null,
        }
    }

    #[tokio::test]
    async fn answers_reach_their_request_and_nothing_outlives_it() {
        let pending = PendingRequests::default();
        let mut a = pending.register("me");
        let b = pending.register("me");
        assert_ne!(a.id, b.id);
        assert!(pending.answer(response(&a.id)));
        assert!(!pending.answer(response("someone-else-1")));
        assert_eq!(a.next().await.unwrap().request_id, a.id);
        drop(b);
        assert_eq!(pending.len(), 1);
        let id = a.id.clone();
        drop(a);
        assert!(!pending.answer(response(&id)));
        assert_eq!(pending.len(), 0);
    }
}
