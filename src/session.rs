//! Per-socket state shared by the layers and the handlers: the authentication state and the
//! identity it found, typed extensions, timers, the handshake, and whether the socket has gone.
//!
//! One [`Session`] is made for each socket when it connects and travels with every request
//! of that socket (see [`SocketRequest`](crate::SocketRequest)). It is the seeds'
//! `ISocketIOClient` minus the socket: `state`, and the timers (`interval`,
//! `authenticateTimeout`) keyed by a type each layer owns. It is the one home for per-socket
//! state: a layer keeps its own in the [`Extensions`] (as `http::Extensions`, by type), and
//! handlers read it with the [`Extension`](crate::socket_core::extract::Extension) extractor.
//! Everything in it is per socket (atomics and per-socket mutexes), so no global lock sits on
//! the hot path.

use std::any::TypeId;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use socketioxide::SocketError;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use socketioxide::socket::{DisconnectReason, Sid};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::handshake::Handshake;
use crate::identity::{ConnectRefusal, IdentityValue, StoredIdentity};
use crate::plumbing::{BoxFuture, LogThrottle};
use crate::timer_queue::TimerKey;
use crate::transport::Transports;

/// What a session tells when its socket joins rooms.
pub(crate) type RoomsJoined = Arc<dyn Fn() + Send + Sync>;

/// The seeds' client states: `unauthorized → authenticating → authenticated`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientState {
    /// Connected, not (yet) authenticated; also the state after a failed authentication.
    Unauthorized,
    /// An `authenticate` event is being answered.
    Authenticating,
    /// Authenticated: rooms, ping and user handlers are live.
    Authenticated,
}

impl ClientState {
    /// The seeds' string value: `unauthorized`, `authenticating` or `authenticated`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Authenticating => "authenticating",
            Self::Authenticated => "authenticated",
        }
    }

    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Authenticating,
            2 => Self::Authenticated,
            _ => Self::Unauthorized,
        }
    }
}

impl fmt::Display for ClientState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per-socket state; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Session(Arc<Inner>);

struct Inner {
    id: Sid,
    handshake: Arc<Handshake>,
    state: AtomicU8,
    authentication_deferred: AtomicBool,
    authentication_completed: AtomicBool,
    after_request: Mutex<Vec<BoxFuture<()>>>,
    closed: AtomicBool,
    closed_notify: Notify,
    disconnect_reason: Mutex<Option<DisconnectReason>>,
    timers: Mutex<Vec<Timer>>,
    extensions: Extensions,
    /// How to close the socket's transport when a DISCONNECT packet cannot be queued.
    transports: OnceLock<Transports>,
    /// Told when the socket joins rooms (the sharded fan-out's room channels follow them).
    rooms_joined: OnceLock<RoomsJoined>,
    /// A disconnect has been decided (it may take a moment to be carried out).
    disconnecting: AtomicBool,
    /// Malformed requests of this socket refused so far.
    refusals: LogThrottle,
}

impl Session {
    /// A new session in the `unauthorized` state.
    pub fn new(id: Sid, handshake: Handshake) -> Self {
        Self(Arc::new(Inner {
            id,
            handshake: Arc::new(handshake),
            state: AtomicU8::new(ClientState::Unauthorized as u8),
            authentication_deferred: AtomicBool::new(false),
            authentication_completed: AtomicBool::new(false),
            after_request: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            closed_notify: Notify::new(),
            disconnect_reason: Mutex::new(None),
            timers: Mutex::new(Vec::new()),
            extensions: Extensions::default(),
            transports: OnceLock::new(),
            rooms_joined: OnceLock::new(),
            disconnecting: AtomicBool::new(false),
            refusals: LogThrottle::new(),
        }))
    }

    /// Counts one more malformed request of this socket refused, and says whether to log it
    /// (`Some(count)`: see [`LogThrottle`]). A client can send such requests at will, and one
    /// socket's first refusals must not hide behind another's.
    pub(crate) fn count_refusal(&self) -> Option<u64> {
        self.0.refusals.hit(1)
    }

    pub(crate) fn attach_transports(&self, transports: Transports) {
        let _ = self.0.transports.set(transports);
    }

    pub(crate) fn attach_rooms_joined(&self, hook: RoomsJoined) {
        let _ = self.0.rooms_joined.set(hook);
    }

    /// Says that the socket joined rooms through the stack (its own id, the default rooms, a
    /// validated `join`): the sharded fan-out's dynamic modes subscribe new rooms' channels at
    /// their next sweep rather than at their slower fallback one.
    pub(crate) fn rooms_joined(&self) {
        if let Some(hook) = self.0.rooms_joined.get() {
            hook();
        }
    }

    /// Whether `other` is this very session (not merely one of the same socket id: a client
    /// that leaves the namespace and connects again on its Engine.IO session keeps its id).
    pub fn same_as(&self, other: &Session) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Disconnects `socket`, whatever its outgoing buffer holds: every policy's decision to
    /// disconnect goes through here.
    ///
    /// socketioxide's `disconnect` queues a DISCONNECT packet and, when the client's buffer is
    /// full (a client that stops reading can fill it on purpose), refuses and closes nothing.
    /// Then the socket's transport is ended instead: a WebSocket connection is cut at once; a
    /// long-polling session is refused every further request, and engineioxide closes it at
    /// its next heartbeat (within one Engine.IO ping interval). The client never reads the
    /// DISCONNECT: its connection simply ends. Either way the
    /// socket's disconnect then runs through the stack as usual.
    ///
    /// Only the first call acts; [`is_disconnecting`](Self::is_disconnecting) tells the
    /// layers that a decision was taken.
    pub fn disconnect<A: Adapter>(&self, socket: &SocketRef<A>) {
        if self.0.disconnecting.swap(true, Ordering::AcqRel) {
            return;
        }
        match socket.clone().disconnect() {
            Ok(()) | Err(SocketError::Closed) => {}
            Err(SocketError::InternalChannelFull) => match self.0.transports.get() {
                Some(transports) => {
                    transports.cut(socket);
                    tracing::info!(sid = %socket.id, "outgoing buffer full: transport closed instead of sending DISCONNECT");
                }
                None => {
                    tracing::warn!(sid = %socket.id, "outgoing buffer full and no transport to close (the stack was not built by SocketServer): socket left connected");
                }
            },
        }
    }

    /// The socket id.
    pub fn id(&self) -> Sid {
        self.0.id
    }

    /// The handshake taken when the socket connected.
    pub fn handshake(&self) -> &Arc<Handshake> {
        &self.0.handshake
    }

    /// The current authentication state.
    pub fn state(&self) -> ClientState {
        ClientState::from_u8(self.0.state.load(Ordering::Acquire))
    }

    /// Sets the authentication state.
    pub fn set_state(&self, state: ClientState) {
        self.0.state.store(state as u8, Ordering::Release);
    }

    /// Moves from `from` to `to` if the state is `from`; returns whether it did.
    pub fn transition(&self, from: ClientState, to: ClientState) -> bool {
        self.0
            .state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Called by an authentication layer when it sees the `Connect` request: it will send
    /// the synthetic `Authenticated` request itself once the client has proven who it is.
    ///
    /// When no layer calls this, the bridge treats the socket as authenticated right after
    /// `Connect`, so that a stack without authentication starts rooms and ping at connect.
    pub fn defer_authentication(&self) {
        self.0
            .authentication_deferred
            .store(true, Ordering::Release);
    }

    /// Whether an authentication layer has claimed the socket (see
    /// [`defer_authentication`](Self::defer_authentication)).
    pub fn authentication_deferred(&self) -> bool {
        self.0.authentication_deferred.load(Ordering::Acquire)
    }

    /// Called by an authentication layer once the client has proven who it is: the state
    /// becomes `authenticated`, and as soon as the current request is done (after `Connect`,
    /// when it is the `Handshake` request) the bridge sends the synthetic `Authenticated`
    /// request through the whole stack, from the top, so every layer sees it wherever it sits
    /// relative to the authentication layer.
    pub fn complete_authentication(&self) {
        self.set_state(ClientState::Authenticated);
        self.0
            .authentication_completed
            .store(true, Ordering::Release);
    }

    /// [`complete_authentication`](Self::complete_authentication), with who the client is:
    /// `identity` is kept with the socket (see [`identity`](crate::identity)).
    pub fn complete_authentication_as<T: IdentityValue>(&self, identity: T) {
        self.set_identity(identity);
        self.complete_authentication();
    }

    /// Keeps `identity` as who the client is, replacing any identity before, and its
    /// serialized form as the socket's [`data`](Self::data). An identity that cannot be
    /// serialized (a map with keys that are not strings, say) is kept all the same; its
    /// `data` is then `{}`, and that is logged.
    pub fn set_identity<T: IdentityValue>(&self, identity: T) {
        let data = serde_json::to_value(&identity).unwrap_or_else(|e| {
            tracing::warn!(sid = %self.0.id, error = %e, "identity not serializable as the socket's data");
            serde_json::Value::Object(Default::default())
        });
        self.0.extensions.insert(StoredIdentity {
            value: Arc::new(identity),
            data: Arc::new(data),
        });
    }

    /// Who the client is, if authentication said so with a `T`.
    pub fn identity<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        let stored = self.0.extensions.get::<StoredIdentity>()?;
        stored.value.downcast_ref::<T>().cloned()
    }

    /// The socket's `data` as the fleet sees it (`socket.data` in a Node server's
    /// `fetchSockets()` answer): the identity, serialized; `{}` when there is none.
    pub fn data(&self) -> Arc<serde_json::Value> {
        match self.0.extensions.get::<StoredIdentity>() {
            Some(stored) => stored.data,
            None => Arc::new(serde_json::Value::Object(Default::default())),
        }
    }

    /// Refuses the socket's CONNECT, when called during its `Handshake` request (see the
    /// [authentication contract](crate::authentication#the-contract)): the client
    /// gets `connect_error` `{message}` and no socket. Later, it does nothing: use
    /// [`disconnect`](Self::disconnect).
    pub fn refuse_connection(&self, message: impl Into<String>) {
        self.0.extensions.insert(ConnectRefusal(message.into()));
    }

    /// Takes the refusal left by [`refuse_connection`](Self::refuse_connection).
    pub(crate) fn take_connect_refusal(&self) -> Option<String> {
        self.0
            .extensions
            .remove::<ConnectRefusal>()
            .map(|ConnectRefusal(m)| m)
    }

    /// Takes the signal left by [`complete_authentication`](Self::complete_authentication).
    pub(crate) fn take_authentication_completed(&self) -> bool {
        self.0
            .authentication_completed
            .swap(false, Ordering::AcqRel)
    }

    /// Runs `task` once the request being handled is done, before the socket's next request
    /// (the core runs the authenticated callback this way, so that it comes after the
    /// `authenticated` event, as in the seeds). Dropped if the socket has disconnected.
    pub fn after_request(&self, task: impl Future<Output = ()> + Send + 'static) {
        if !self.is_closed() {
            lock(&self.0.after_request).push(Box::pin(task));
        }
    }

    /// Takes the tasks queued by [`after_request`](Self::after_request).
    pub(crate) fn take_after_request(&self) -> Vec<BoxFuture<()>> {
        std::mem::take(&mut *lock(&self.0.after_request))
    }

    /// Whether the socket has been disconnected by [`disconnect`](Self::disconnect), or has
    /// gone: a layer should then act on nothing more it sent (what it sent before still passes
    /// down the stack).
    pub fn is_disconnecting(&self) -> bool {
        self.0.disconnecting.load(Ordering::Acquire) || self.is_closed()
    }

    /// Whether the socket has disconnected.
    pub fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::Acquire)
    }

    /// Resolves once the socket has disconnected (at once if it already has).
    pub async fn closed(&self) {
        let notified = self.0.closed_notify.notified();
        if self.is_closed() {
            return;
        }
        notified.await;
    }

    /// Why the socket disconnected, once it has.
    pub fn disconnect_reason(&self) -> Option<DisconnectReason> {
        *lock(&self.0.disconnect_reason)
    }

    /// Marks the socket as gone and wakes whoever waits in [`closed`](Self::closed).
    /// Returns `false` if it was already closed.
    pub(crate) fn close(&self, reason: DisconnectReason) -> bool {
        if !self.mark_closed(reason) {
            return false;
        }
        if let Some(transports) = self.0.transports.get() {
            transports.forget(self.0.id);
        }
        true
    }

    /// Marks the socket as gone, its timers aborted and its queued tasks dropped, without
    /// forgetting what its transport keeps: for a socket refused at its CONNECT, whose
    /// Engine.IO session goes on (and must keep its CONNECT budget).
    pub(crate) fn mark_closed(&self, reason: DisconnectReason) -> bool {
        let mut slot = lock(&self.0.disconnect_reason);
        if self.0.closed.swap(true, Ordering::AcqRel) {
            return false;
        }
        *slot = Some(reason);
        drop(slot);
        self.0.closed_notify.notify_waiters();
        lock(&self.0.after_request).clear();
        self.clear_timers();
        true
    }

    /// The socket's typed extensions: the one home for per-socket state (see the
    /// [module docs](self)).
    pub fn extensions(&self) -> &Extensions {
        &self.0.extensions
    }

    /// Keeps `timer` under the key type `K` (a type of the layer that owns it, so no two
    /// layers can take each other's), aborting the timer it replaces. If the socket has
    /// already disconnected, the timer is aborted at once, so a timer can never outlive its
    /// socket.
    pub fn set_timer<K: 'static>(&self, timer: AbortHandle) {
        self.keep_timer::<K>(TimerHandle::Task(timer));
    }

    /// [`set_timer`](Self::set_timer) for an entry of a layer's timer queue.
    pub(crate) fn set_queued_timer<K: 'static>(&self, timer: TimerKey) {
        self.keep_timer::<K>(TimerHandle::Queued(timer));
    }

    fn keep_timer<K: 'static>(&self, timer: TimerHandle) {
        let mut timers = lock(&self.0.timers);
        if self.is_closed() {
            timer.abort();
            return;
        }
        let key = TypeId::of::<K>();
        if let Some(slot) = timers.iter_mut().find(|t| t.key == key) {
            std::mem::replace(&mut slot.handle, timer).abort();
        } else {
            timers.push(Timer {
                key,
                name: std::any::type_name::<K>(),
                handle: timer,
            });
        }
    }

    /// Aborts and forgets the timer kept under `K`; returns whether there was one.
    pub fn clear_timer<K: 'static>(&self) -> bool {
        let mut timers = lock(&self.0.timers);
        let key = TypeId::of::<K>();
        match timers.iter().position(|t| t.key == key) {
            Some(i) => {
                timers.swap_remove(i).handle.abort();
                true
            }
            None => false,
        }
    }

    /// Whether a timer kept under `K` is running.
    pub fn has_timer<K: 'static>(&self) -> bool {
        let key = TypeId::of::<K>();
        lock(&self.0.timers)
            .iter()
            .any(|t| t.key == key && !t.handle.is_finished())
    }

    /// Aborts every timer of this socket.
    pub fn clear_timers(&self) {
        for timer in lock(&self.0.timers).drain(..) {
            timer.handle.abort();
        }
    }

    /// The key types of the timers running, by name (for logs and tests).
    pub fn timer_names(&self) -> Vec<&'static str> {
        lock(&self.0.timers)
            .iter()
            .filter(|t| !t.handle.is_finished())
            .map(|t| t.name)
            .collect()
    }
}

/// A timer of a socket, under the key type of the layer that owns it.
struct Timer {
    key: TypeId,
    name: &'static str,
    handle: TimerHandle,
}

/// A socket's timer: a task of its own (a layer's, through [`Session::set_timer`]), or an
/// entry of a layer's shared queue (the stack's own timers).
enum TimerHandle {
    Task(AbortHandle),
    Queued(TimerKey),
}

impl TimerHandle {
    fn abort(&self) {
        match self {
            Self::Task(task) => task.abort(),
            Self::Queued(key) => key.cancel(),
        }
    }

    fn is_finished(&self) -> bool {
        match self {
            Self::Task(task) => task.is_finished(),
            Self::Queued(key) => !key.is_armed(),
        }
    }
}

/// Typed per-socket values, one of each type (like `http::Extensions`, which holds them),
/// behind the socket's own lock. Values are cloned out, so keep them cheap to clone (an
/// `Arc` for anything large or shared).
#[derive(Default)]
pub struct Extensions(Mutex<http::Extensions>);

impl Extensions {
    /// Keeps `value`, returning the value of its type it replaces.
    pub fn insert<T: Clone + Send + Sync + 'static>(&self, value: T) -> Option<T> {
        lock(&self.0).insert(value)
    }

    /// A clone of the value of type `T`, if there is one.
    pub fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        lock(&self.0).get::<T>().cloned()
    }

    /// The value of type `T`, made by `make` and kept if there is none yet.
    pub fn get_or_insert_with<T: Clone + Send + Sync + 'static>(
        &self,
        make: impl FnOnce() -> T,
    ) -> T {
        lock(&self.0).get_or_insert_with(make).clone()
    }

    /// Takes the value of type `T` out.
    pub fn remove<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        lock(&self.0).remove::<T>()
    }

    /// Whether there is a value of type `T`.
    pub fn contains<T: Clone + Send + Sync + 'static>(&self) -> bool {
        lock(&self.0).get::<T>().is_some()
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("len", &lock(&self.0).len())
            .finish()
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.0.id)
            .field("state", &self.state())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// A poisoned per-socket lock only means a panic elsewhere mid-update of plain data; the data
/// is still usable, so recover it rather than spread the panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        let parts = http::Request::get("/").body(()).unwrap().into_parts().0;
        Session::new(
            Sid::new(),
            Handshake::from_parts(&parts, serde_json::Value::Null),
        )
    }

    #[test]
    fn state_transitions() {
        let s = session();
        assert_eq!(s.state(), ClientState::Unauthorized);
        assert!(s.transition(ClientState::Unauthorized, ClientState::Authenticating));
        assert!(!s.transition(ClientState::Unauthorized, ClientState::Authenticating));
        s.set_state(ClientState::Authenticated);
        assert_eq!(s.state().as_str(), "authenticated");
    }

    #[test]
    fn an_identity_replaces_the_one_before_whatever_its_type() {
        let s = session();
        assert_eq!(*s.data(), serde_json::json!({}));
        s.set_identity("ann".to_owned());
        assert_eq!(s.identity::<String>().as_deref(), Some("ann"));
        s.set_identity(7_u32);
        assert_eq!(s.identity::<String>(), None, "the old one does not linger");
        assert_eq!(s.identity::<u32>(), Some(7));
        assert_eq!(*s.data(), serde_json::json!(7));
        // Not serializable as JSON (a map with keys that are not strings): kept, data `{}`.
        let odd: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
        s.set_identity(odd.clone());
        assert_eq!(s.identity(), Some(odd));
        assert_eq!(*s.data(), serde_json::json!({}));
    }

    #[tokio::test]
    async fn timers_are_replaced_cleared_and_never_outlive_close() {
        let s = session();
        struct T;
        struct Other;
        let first = tokio::spawn(std::future::pending::<()>());
        s.set_timer::<T>(first.abort_handle());
        let second = tokio::spawn(std::future::pending::<()>());
        s.set_timer::<T>(second.abort_handle());
        assert!(first.await.unwrap_err().is_cancelled());
        assert_eq!(s.timer_names(), vec![std::any::type_name::<T>()]);
        assert!(s.has_timer::<T>() && !s.has_timer::<Other>());
        assert!(!s.clear_timer::<Other>());
        assert!(s.clear_timer::<T>());
        assert!(second.await.unwrap_err().is_cancelled());
        assert!(!s.clear_timer::<T>());

        assert!(s.close(DisconnectReason::TransportClose));
        assert!(!s.close(DisconnectReason::TransportError));
        assert_eq!(
            s.disconnect_reason(),
            Some(DisconnectReason::TransportClose)
        );
        let late = tokio::spawn(std::future::pending::<()>());
        s.set_timer::<Other>(late.abort_handle());
        assert!(late.await.unwrap_err().is_cancelled());
        s.closed().await;
    }
}
