//! The state a client's handles and its dispatcher share: the authentication state, the
//! connection (writer and ids), the subscriptions, the acknowledgements awaited, what the
//! client is asked to be, and its tasks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::args::Args;
use crate::client::driver::Desire;
use crate::client::error::ClientError;
use crate::client::handlers::{AnyHandler, Handler};
use crate::client::jobs::JobQueue;
use crate::client::options::TransportKind;
use crate::client::protocol::Outgoing;
use crate::session::ClientState;

/// The id of one subscription, to remove that handler alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionId(u64);

/// One client's shared state.
/// Who one connection is: its Engine.IO and Socket.IO ids, and its transport.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConnectionIds {
    pub(crate) engine_id: String,
    pub(crate) socket_id: Option<String>,
    pub(crate) transport: TransportKind,
}

pub(crate) struct Shared {
    pub(crate) identifier: String,
    state: AtomicU8,
    connected: AtomicBool,
    /// Who the connection is, while connected.
    ids: Mutex<Option<ConnectionIds>>,
    writer: Mutex<Option<mpsc::UnboundedSender<Outgoing>>>,
    handlers: RwLock<HashMap<String, Vec<(SubscriptionId, Handler)>>>,
    any: RwLock<Vec<(SubscriptionId, AnyHandler)>>,
    /// Subscription and ack ids.
    next_id: AtomicU64,
    acks: Mutex<HashMap<u64, oneshot::Sender<Args>>>,
    pub(crate) desire: watch::Sender<Desire>,
    pub(crate) jobs: JobQueue,
    shutting_down: AtomicBool,
    /// Set once a `shutdown()` has stopped the tasks, for concurrent calls to wait on.
    pub(crate) stopped: watch::Sender<bool>,
    driver: Mutex<Option<JoinHandle<()>>>,
    runner: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// The state of a client not connected yet, following `desire`, its jobs going to `jobs`.
    pub(crate) fn new(identifier: String, desire: watch::Sender<Desire>, jobs: JobQueue) -> Self {
        Self {
            identifier,
            state: AtomicU8::new(ClientState::Unauthorized as u8),
            connected: AtomicBool::new(false),
            ids: Mutex::new(None),
            writer: Mutex::new(None),
            handlers: RwLock::default(),
            any: RwLock::default(),
            next_id: AtomicU64::new(1),
            acks: Mutex::default(),
            desire,
            jobs,
            shutting_down: AtomicBool::new(false),
            stopped: watch::channel(false).0,
            driver: Mutex::new(None),
            runner: Mutex::new(None),
        }
    }

    pub(crate) fn state(&self) -> ClientState {
        ClientState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn set_state(&self, state: ClientState) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// `unauthorized → authenticating`; false (and no change) from any other state.
    pub(crate) fn begin_authenticating(&self) -> bool {
        self.state
            .compare_exchange(
                ClientState::Unauthorized as u8,
                ClientState::Authenticating as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Who the connection is, while connected.
    pub(crate) fn ids(&self) -> Option<ConnectionIds> {
        lock(&self.ids).clone()
    }

    /// Whether `shutdown()` has begun: the helper's listeners are gone, as the seeds' removes
    /// them first.
    pub(crate) fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// The start of `shutdown()`: no send, no callback and no handler from here on.
    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        write(&self.handlers).clear();
        write(&self.any).clear();
    }

    pub(crate) fn connected_with(
        &self,
        writer: mpsc::UnboundedSender<Outgoing>,
        ids: ConnectionIds,
    ) {
        *lock(&self.writer) = Some(writer);
        *lock(&self.ids) = Some(ids);
        self.set_state(ClientState::Unauthorized);
        self.connected.store(true, Ordering::Release);
    }

    pub(crate) fn disconnected(&self) {
        self.connected.store(false, Ordering::Release);
        *lock(&self.writer) = None;
        *lock(&self.ids) = None;
        self.set_state(ClientState::Unauthorized);
        // Waiting `emit_with_ack` calls learn at once that no answer will come.
        lock(&self.acks).clear();
    }

    /// Hands a packet to the connection.
    pub(crate) fn send(&self, packet: Outgoing) -> Result<(), ClientError> {
        if self.shutting_down() {
            return Err(ClientError::Shutdown);
        }
        match &*lock(&self.writer) {
            Some(writer) if self.is_connected() => {
                writer.send(packet).map_err(|_| ClientError::NotConnected)
            }
            _ => Err(ClientError::NotConnected),
        }
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A new ack id, and where its answer will come.
    pub(crate) fn expect_ack(&self) -> (u64, oneshot::Receiver<Args>) {
        let id = self.next_id();
        let (tx, rx) = oneshot::channel();
        lock(&self.acks).insert(id, tx);
        (id, rx)
    }

    pub(crate) fn forget_ack(&self, id: u64) {
        lock(&self.acks).remove(&id);
    }

    pub(crate) fn resolve_ack(&self, id: u64, args: Args) {
        if let Some(waiter) = lock(&self.acks).remove(&id) {
            waiter.send(args).ok();
        }
    }

    /// Adds a handler of `event`; with `ignore_duplicate`, `None` if it already has one.
    pub(crate) fn add_handler(
        &self,
        event: &str,
        handler: Handler,
        ignore_duplicate: bool,
    ) -> Option<SubscriptionId> {
        let mut handlers = write(&self.handlers);
        let entry = handlers.entry(event.to_owned()).or_default();
        if ignore_duplicate && !entry.is_empty() {
            return None;
        }
        let id = SubscriptionId(self.next_id());
        entry.push((id, handler));
        Some(id)
    }

    /// Removes one handler (`Some(id)`) or all handlers (`None`) of `event`; whether anything
    /// was removed.
    pub(crate) fn remove_handlers(&self, event: &str, id: Option<SubscriptionId>) -> bool {
        let mut handlers = write(&self.handlers);
        let Some(entry) = handlers.get_mut(event) else {
            return false;
        };
        let before = entry.len();
        match id {
            Some(id) => entry.retain(|(i, _)| *i != id),
            None => entry.clear(),
        }
        let removed = entry.len() != before;
        if entry.is_empty() {
            handlers.remove(event);
        }
        removed
    }

    pub(crate) fn add_any(&self, handler: AnyHandler) -> SubscriptionId {
        let id = SubscriptionId(self.next_id());
        write(&self.any).push((id, handler));
        id
    }

    pub(crate) fn remove_any(&self, id: SubscriptionId) -> bool {
        let mut any = write(&self.any);
        let before = any.len();
        any.retain(|(i, _)| *i != id);
        any.len() != before
    }

    /// The handlers of `event` now (taken out of the lock: they run later).
    pub(crate) fn handlers_of(&self, event: &str) -> Vec<Handler> {
        read(&self.handlers)
            .get(event)
            .map(|hs| hs.iter().map(|(_, h)| h.clone()).collect())
            .unwrap_or_default()
    }

    /// The catch-all handlers now.
    pub(crate) fn any_handlers(&self) -> Vec<AnyHandler> {
        read(&self.any).iter().map(|(_, h)| h.clone()).collect()
    }

    /// Keeps the client's two tasks, for `shutdown()` to wait on.
    pub(crate) fn started(&self, driver: JoinHandle<()>, runner: JoinHandle<()>) {
        *lock(&self.driver) = Some(driver);
        *lock(&self.runner) = Some(runner);
    }

    /// The tasks, to the first `shutdown()` that asks.
    pub(crate) fn take_tasks(&self) -> (Option<JoinHandle<()>>, Option<JoinHandle<()>>) {
        (lock(&self.driver).take(), lock(&self.runner).take())
    }

    /// How many of the two tasks are alive.
    pub(crate) fn tasks_alive(&self) -> usize {
        let alive = |slot: &Mutex<Option<JoinHandle<()>>>| {
            lock(slot).as_ref().is_some_and(|h| !h.is_finished())
        };
        usize::from(alive(&self.driver)) + usize::from(alive(&self.runner))
    }
}
