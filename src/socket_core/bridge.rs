//! The bridge from socketioxide into the inbound pipeline, in one place.
//!
//! [`Bridge`] is the namespace's connect handler. For every socket it
//! 1. takes the handshake and makes the socket's [`Session`], then registers a synchronous
//!    fallback message handler and a disconnect handler that only push into a per-socket
//!    queue, in the order socketioxide receives packets. This runs as the connect
//!    middleware, before socketioxide sends CONNECT: a client may send its first event as
//!    soon as it reads CONNECT, and an event with no handler registered yet is dropped.
//!    Then it sends the `Handshake` request through the stack, still before CONNECT is
//!    answered: a layer that refuses it ([`Session::refuse_connection`]) has the client
//!    answered with `connect_error` `{message}`, and the socket goes no further;
//! 2. once connected, joins the socket to the room named after its own id (as a JavaScript
//!    Socket.IO socket is), so a socket id can be used wherever a room can;
//! 3. starts the socket's worker;
//! 4. drains that queue with a worker that calls the stack with `Connect`, then each
//!    event in order, then `Disconnect`: one request of a socket at a time (a `join` then a
//!    `leave` never swap), while different sockets run in parallel. The worker runs only
//!    while the socket has something to handle and is started again by its next event, so
//!    an idle socket holds no task and no channel buffer (about 5 KiB per client saved; see
//!    BENCHMARKS.md). It starts on socketioxide's own call and becomes a task only when a
//!    request has to wait, so a request that ends at once costs no task spawn (a socket
//!    disconnected from there leaves the namespace from a task, after socketioxide's read).
//!    When
//!    authentication completes
//!    during a request ([`Session::complete_authentication`], or at connect when no layer
//!    defers it), the worker sends `Authenticated` through the whole stack right after that
//!    request, then runs the tasks queued with [`Session::after_request`].
//!
//! What waits in a socket's queue is bounded in count ([`DEFAULT_QUEUE_CAPACITY`]) and in
//! bytes, per socket and for all sockets ([`Bridge::queue_bytes`]); an event waits as it came
//! off the wire and is parsed only when its turn comes.
//!
//! When socketioxide reports a disconnect, the socket leaves the namespace and its rooms at
//! once (so a client's new CONNECT on the same Engine.IO session is answered), and its
//! `Disconnect` goes through the stack after the events it sent before: handlers of
//! `Disconnect` see the socket outside its rooms.
//!
//! A panic in a layer or a handler is contained and logged; the worker goes on.
//!
//! When a socket disconnects while one of its requests is still running (an authenticate
//! function that never returns, say), that request is left to finish on its own task and the
//! worker goes on to `Disconnect` at once: the client is untracked and its timers cleared
//! without waiting for it. Layers check [`Session::is_closed`] before acting on a late result.

use std::collections::VecDeque;
use std::fmt::Display;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Data, Event, SocketRef};
use socketioxide::handler::connect::FromConnectParts;
use socketioxide::handler::disconnect::DisconnectHandler;
use socketioxide::handler::message::FromMessageParts;
use socketioxide::handler::{ConnectHandler, MessageHandler, Value as WireValue};
use socketioxide::socket::{DisconnectReason, Sid, Socket};
use tower::ServiceExt;
use tower_service::Service;

use crate::args::Args;
use crate::event::{ClientEvent, RequestKind, SocketRequest};
use crate::handshake::Handshake;
use crate::limits::{
    DEFAULT_QUEUE_BYTES, DEFAULT_QUEUE_CAPACITY, DEFAULT_TOTAL_QUEUE_BYTES, MAX_AUTH_BYTES,
    MAX_AUTH_VALUES,
};
use crate::plumbing::{LogThrottle, catch_panic, catch_panic_now};
use crate::session::Session;
use crate::telemetry::{self, DropReason};
use crate::transport::Transports;
use tracing::Instrument;

/// Refuses an `auth` payload over the bounds, before it is parsed.
fn check_auth(auth: &Option<WireValue>) -> Result<(), String> {
    let Some(auth) = auth else {
        return Ok(());
    };
    let bytes = wire_size(auth);
    if bytes > MAX_AUTH_BYTES {
        return Err(format!(
            "auth payload of {bytes} bytes is over the {MAX_AUTH_BYTES}-byte bound"
        ));
    }
    // Separators overcount (a string may hold them), never undercount.
    let values = match auth {
        WireValue::Str(text, _) => text
            .as_bytes()
            .iter()
            .filter(|b| matches!(b, b',' | b':' | b'[' | b'{'))
            .count(),
        WireValue::Bytes(_) => 0,
    };
    if values > MAX_AUTH_VALUES {
        return Err(format!(
            "auth payload of about {values} values is over the {MAX_AUTH_VALUES}-value bound"
        ));
    }
    Ok(())
}

/// The namespace connect handler feeding a socket's lifecycle into `service`.
pub struct Bridge<S, A> {
    service: S,
    queue_capacity: usize,
    queue_bytes: usize,
    total: Arc<TotalQueue>,
    transports: Transports,
    /// Given to each socket's session, to be told when it joins rooms.
    rooms_joined: Option<crate::session::RoomsJoined>,
    /// Asked, for each socket its handshake admitted, whether its namespace may be served
    /// (set for dynamic namespaces, whose instances the fan-out learns of this way); a
    /// refusal refuses the CONNECT with its message.
    namespace_seen: Option<NamespaceSeen>,
    _adapter: PhantomData<fn() -> A>,
}

/// What a bridge asks of the namespace of each socket it connects.
pub(crate) type NamespaceSeen =
    Arc<dyn Fn(&str) -> crate::plumbing::BoxFuture<Result<(), String>> + Send + Sync>;

/// The bytes of events waiting in every socket's queue, and their bound.
struct TotalQueue {
    limit: usize,
    queued: AtomicUsize,
}

impl TotalQueue {
    fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit: limit.max(1),
            queued: AtomicUsize::new(0),
        })
    }

    /// Takes `bytes` if they fit under the bound.
    fn take(&self, bytes: usize) -> bool {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                q.checked_add(bytes).filter(|&after| after <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::AcqRel);
    }
}

impl<S: Clone, A> Clone for Bridge<S, A> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            queue_capacity: self.queue_capacity,
            queue_bytes: self.queue_bytes,
            total: self.total.clone(),
            transports: self.transports.clone(),
            rooms_joined: self.rooms_joined.clone(),
            namespace_seen: self.namespace_seen.clone(),
            _adapter: PhantomData,
        }
    }
}

impl<S, A> Bridge<S, A> {
    /// A bridge calling `service` with each socket's requests.
    pub fn new(service: S) -> Self {
        Self {
            service,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            total: TotalQueue::new(DEFAULT_TOTAL_QUEUE_BYTES),
            transports: Transports::default(),
            rooms_joined: None,
            namespace_seen: None,
            _adapter: PhantomData,
        }
    }

    /// How many events of one socket may wait while an earlier one is handled (default
    /// [`DEFAULT_QUEUE_CAPACITY`]); past it, new events of that socket are dropped with a
    /// warning, so a flooding client costs bounded memory and harms nobody else.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// How many bytes of events may wait, per socket (default [`DEFAULT_QUEUE_BYTES`]) and for
    /// all sockets together (default [`DEFAULT_TOTAL_QUEUE_BYTES`]). An event is counted at its
    /// size on the wire, and it waits as such: it is parsed only when its turn comes. Past
    /// either bound, new events are dropped as past the count.
    pub fn queue_bytes(mut self, per_socket: usize, total: usize) -> Self {
        self.queue_bytes = per_socket.max(1);
        self.total = TotalQueue::new(total);
        self
    }

    /// Where the socket's transport is closed when a disconnect cannot be queued.
    pub(crate) fn transports(mut self, transports: Transports) -> Self {
        self.transports = transports;
        self
    }

    /// Tells `hook` whenever a socket joins rooms through the stack.
    #[cfg(feature = "fanout")]
    pub(crate) fn rooms_joined(mut self, hook: crate::session::RoomsJoined) -> Self {
        self.rooms_joined = Some(hook);
        self
    }

    /// Asks `seen` about the namespace of each socket its handshake admitted, before it
    /// connects.
    pub(crate) fn namespace_seen(mut self, seen: NamespaceSeen) -> Self {
        self.namespace_seen = Some(seen);
        self
    }
}

#[doc(hidden)]
pub struct BridgeMarker;

impl<S, A> ConnectHandler<A, BridgeMarker> for Bridge<S, A>
where
    A: Adapter,
    S: Service<SocketRequest<A>, Response = ()> + Clone + Send + Sync + 'static,
    S::Error: Display + Send,
    S::Future: Send + 'static,
{
    /// Everything that must be in place before socketioxide sends the namespace's CONNECT:
    /// a client may send its first event (its `authenticate`) the moment it reads CONNECT,
    /// and socketioxide drops events for which no handler is registered yet. (The connect
    /// handler itself, `call`, runs only after CONNECT is sent.)
    fn call_middleware<'a>(
        &'a self,
        s: Arc<Socket<A>>,
        auth: &'a Option<WireValue>,
    ) -> Pin<Box<dyn Future<Output = Result<(), Box<dyn Display + Send>>> + Send + 'a>> {
        if let Err(refusal) = check_auth(auth) {
            // Answered with `connect_error` {message}; the Engine.IO session stays.
            tracing::info!(sid = %s.id, error = %refusal, "CONNECT refused");
            return Box::pin(std::future::ready(Err(
                Box::new(refusal) as Box<dyn Display + Send>
            )));
        }
        let auth = match Data::<serde_json::Value>::from_connect_parts(&s, auth) {
            Ok(Data(v)) => v,
            Err(_) => serde_json::Value::Null,
        };
        let socket = SocketRef::from(s);
        let namespace_seen = self.namespace_seen.clone();
        let session = Session::new(socket.id, Handshake::from_parts(socket.req_parts(), auth));
        session.attach_transports(self.transports.clone());
        if let Some(hook) = &self.rooms_joined {
            session.attach_rooms_joined(hook.clone());
        }
        socket.extensions.insert(session.clone());
        // Every request of this socket, its handlers' logs included, in one span: what a
        // handler logs says which socket it is about.
        let span = tracing::info_span!("socket", sid = %socket.id, ns = socket.ns());
        let lane = Lane(Arc::new(LaneShared {
            span: span.clone(),
            session,
            pending: Pending {
                state: Mutex::new(PendingState {
                    events: VecDeque::new(),
                    // Events that come before `call` wait for the connect's worker.
                    worker: true,
                    finished: false,
                    bytes: 0,
                    service: None,
                }),
                capacity: self.queue_capacity,
                bytes: self.queue_bytes,
                dropped: LogThrottle::new(),
                total: self.total.clone(),
            },
        }));
        socket.on_fallback(EventForwarder { lane: lane.clone() });
        socket.on_disconnect(DisconnectForwarder { lane: lane.clone() });
        let mut service = self.service.clone();
        Box::pin(async move {
            // A layer may refuse the CONNECT here (a handshake authentication, say). Fails
            // closed: a request that failed, panicked or took too long refuses it too, since
            // the layer that would have claimed the socket may not have run.
            let handled = tokio::time::timeout(
                HANDSHAKE_DEADLINE,
                dispatch(
                    &mut service,
                    &socket,
                    &lane.session,
                    RequestKind::Handshake,
                    Detach::Never,
                ),
            )
            .await;
            let session = &lane.session;
            let mut refusal = match (session.take_connect_refusal(), handled) {
                (Some(message), _) => Some(message),
                (None, Ok(true)) if !session.is_disconnecting() => None,
                (None, Ok(true)) => Some("the server refused the connection".to_owned()),
                (None, Ok(false)) => Some("the server failed to accept the connection".to_owned()),
                (None, Err(_)) => {
                    tracing::error!(sid = %socket.id, ?HANDSHAKE_DEADLINE, "the Handshake request did not end in time");
                    Some("the server failed to accept the connection".to_owned())
                }
            };
            // Only once the handshake admitted it: a refused client makes the fan-out serve
            // nothing.
            if let (None, Some(seen)) = (&refusal, namespace_seen) {
                refusal = seen(socket.ns()).await.err();
            }
            if let Some(message) = refusal {
                tracing::info!(sid = %socket.id, %message, "CONNECT refused");
                // Its Engine.IO session goes on, with its CONNECT budget.
                session.mark_closed(DisconnectReason::ServerNSDisconnect);
                return Err(Box::new(message) as Box<dyn Display + Send>);
            }
            // The connect's worker calls the stack with this clone: the socket's one (a
            // worker takes it from the queue's state and puts it back when it stops).
            lane.pending.lock().service = Some(service);
            // Handed to `call`, which starts the worker once the socket is connected; closes
            // the session should the socket never be connected (its transport gone before
            // the CONNECT answer could be sent).
            let unanswered = Unanswered::new(session.clone());
            socket.extensions.insert(Admitted { lane, unanswered });
            Ok(())
        }
        .instrument(span))
    }

    fn call(&self, s: Arc<Socket<A>>, _auth: Option<WireValue>) {
        let socket = SocketRef::from(s);
        let admitted = socket.extensions.remove::<Admitted<S, A>>();
        let Some((lane, service)) = admitted.and_then(|Admitted { lane, unanswered }| {
            unanswered.disarm();
            let service = lane.pending.lock().service.take()?;
            Some((lane, service))
        }) else {
            tracing::error!(sid = %socket.id, "connected without the bridge's set-up");
            return;
        };
        socket.join(socket.id.to_string());
        lane.session.rooms_joined();
        telemetry::socket_connected();
        // A transport that closed before the socket was connected: socketioxide cleaned the
        // socket up itself; only the session is left to close.
        if !socket.connected() {
            lane.session.close(DisconnectReason::TransportClose);
        }
        let span = lane.span.clone();
        start_worker(lane.run(service, socket, true).instrument(span));
    }
}

thread_local! {
    /// Set while [`start_worker`] runs a worker on the caller's thread.
    static RUNNING_INLINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the caller runs inside a worker's first poll, on socketioxide's own call (its
/// packet reading, its connect, its disconnect) rather than on a task of its own.
pub(crate) fn running_inline() -> bool {
    RUNNING_INLINE.get()
}

/// Runs a socket's worker on this thread until it first has to wait, and spawns it only
/// then. Most requests end without waiting (a `Connect`, an `authenticate` checked at once, a
/// policy's refusal, a `Disconnect`), and a task spawned for each was the largest item of the
/// stack's own CPU per handshake (BENCHMARKS.md). What the worker registered interest in
/// during that poll is registered again by the spawned task's first poll.
fn start_worker(worker: impl Future<Output = ()> + Send + 'static) {
    let mut worker = Box::pin(worker);
    let outer = RUNNING_INLINE.replace(true);
    let polled = catch_panic_now(|| {
        worker
            .as_mut()
            .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    });
    RUNNING_INLINE.set(outer);
    match polled {
        Ok(std::task::Poll::Ready(())) => {}
        Ok(std::task::Poll::Pending) => {
            tokio::spawn(worker);
        }
        // `dispatch` contains the stack's panics: this is the bridge's own, and the socket's
        // worker is lost with it. Unwinding into socketioxide would take the connection.
        Err(panic) => {
            telemetry::handler_panicked();
            tracing::error!(panic = %panic, "a socket's worker panicked");
        }
    }
}

/// How long the `Handshake` request may take: socketioxide's own connect timeout (past it the
/// engine closes a session that has no namespace connected, so the client is gone anyway).
pub const HANDSHAKE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(45);

/// Kept in a socket's extensions between its accepted `Handshake` and its `Connect`: when the
/// socket is dropped without ever being connected (its transport closed while the stack was
/// deciding), the last clone's drop closes its session, so its timers and waiters do not
/// outlive it. socketioxide runs no disconnect handler for a socket it never connected.
#[derive(Clone)]
struct Unanswered(Arc<UnansweredInner>);

struct UnansweredInner {
    session: Session,
    armed: std::sync::atomic::AtomicBool,
}

impl Unanswered {
    fn new(session: Session) -> Self {
        Self(Arc::new(UnansweredInner {
            session,
            armed: std::sync::atomic::AtomicBool::new(true),
        }))
    }

    fn disarm(&self) {
        self.0.armed.store(false, Ordering::Release);
    }
}

impl Drop for UnansweredInner {
    fn drop(&mut self) {
        if self.armed.load(Ordering::Acquire) {
            self.session.close(DisconnectReason::TransportClose);
        }
    }
}

/// A socket's way into the stack: its queue of events not yet handled, and what a worker
/// needs to handle them. One per socket, shared by its handlers and its worker.
struct Lane<S, A: Adapter>(Arc<LaneShared<S, A>>);

struct LaneShared<S, A: Adapter> {
    /// The socket's span (`sid`, `ns`), around each of its requests.
    span: tracing::Span,
    session: Session,
    pending: Pending<S, A>,
}

impl<S, A: Adapter> Clone for Lane<S, A> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<S, A: Adapter> std::ops::Deref for Lane<S, A> {
    type Target = LaneShared<S, A>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// What the bridge leaves in an admitted socket's extensions for `call`.
struct Admitted<S, A: Adapter> {
    lane: Lane<S, A>,
    unanswered: Unanswered,
}

impl<S, A: Adapter> Clone for Admitted<S, A> {
    fn clone(&self) -> Self {
        Self {
            lane: self.lane.clone(),
            unanswered: self.unanswered.clone(),
        }
    }
}

struct Pending<S, A: Adapter> {
    state: Mutex<PendingState<S, A>>,
    capacity: usize,
    bytes: usize,
    total: Arc<TotalQueue>,
    /// Events dropped because the queue was full.
    dropped: LogThrottle,
}

/// An event as it came off the wire: parsed only when its turn comes, so that what waits
/// costs its size on the wire, not tens of times that as a parsed value.
struct Queued<A: Adapter> {
    socket: Arc<Socket<A>>,
    name: String,
    data: WireValue,
    ack_id: Option<i64>,
    bytes: usize,
}

impl<A: Adapter> Queued<A> {
    /// The event, its arguments read; with why they could not be, when they could not.
    fn into_event(self) -> (ClientEvent<A>, Option<String>) {
        let Self {
            socket,
            name,
            mut data,
            ack_id,
            ..
        } = self;
        let Ok(ack) = AckSender::from_message_parts(&socket, &mut data, &ack_id);
        let (args, unreadable) = match &data {
            WireValue::Str(text, attachments) => {
                match Args::from_packet(text.as_str(), attachments.as_ref(), true) {
                    Ok(args) => (args, None),
                    // A placeholder naming no attachment, for one.
                    Err(e) => (Args::new(), Some(e.to_string())),
                }
            }
            WireValue::Bytes(_) => (Args::new(), Some("not a text packet".to_owned())),
        };
        let event = ClientEvent {
            name,
            args,
            ack: Some(ack),
        };
        (event, unreadable)
    }
}

/// The size of an event on the wire: its text and its binary attachments.
fn wire_size(v: &WireValue) -> usize {
    match v {
        WireValue::Str(text, bins) => {
            text.len() + bins.iter().flatten().map(|b| b.len()).sum::<usize>()
        }
        WireValue::Bytes(b) => b.len(),
    }
}

struct PendingState<S, A: Adapter> {
    events: VecDeque<Queued<A>>,
    /// A worker is running and will see what is pushed now.
    worker: bool,
    /// The socket's clone of the stack, here while no worker holds it: a worker calls the
    /// stack with it (no clone per worker started).
    service: Option<S>,
    /// `Disconnect` was handled: nothing more is taken.
    finished: bool,
    /// Bytes of the waiting events.
    bytes: usize,
}

impl<S, A: Adapter> Pending<S, A> {
    fn lock(&self) -> std::sync::MutexGuard<'_, PendingState<S, A>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the worker takes next.
enum Next<A: Adapter> {
    Event(Queued<A>),
    Disconnect,
}

impl<S, A> Lane<S, A>
where
    A: Adapter,
    S: Service<SocketRequest<A>, Response = ()> + Clone + Send + 'static,
    S::Error: Display + Send,
    S::Future: Send + 'static,
{
    /// Starts a worker unless one is running or the socket is finished. The caller has
    /// already pushed its event or closed the session, so the running worker sees it.
    fn wake(&self, socket: Arc<Socket<A>>) {
        let service = {
            let mut state = self.pending.lock();
            if state.finished || std::mem::replace(&mut state.worker, true) {
                return;
            }
            state.service.take()
        };
        let Some(service) = service else {
            tracing::error!(sid = %socket.id, "a socket's worker started without the stack");
            return;
        };
        let worker = self.clone().run(service, SocketRef::from(socket), false);
        start_worker(worker.instrument(self.span.clone()));
    }

    /// The worker: `Connect` first when `connect`, then the queued events in order, then
    /// `Disconnect` once the socket is closed and its queue empty; it stops when there is
    /// nothing left to do.
    async fn run(self, mut stack: S, socket: SocketRef<A>, connect: bool) {
        let LaneShared {
            session, pending, ..
        } = &*self.0;
        if connect {
            dispatch(
                &mut stack,
                &socket,
                session,
                RequestKind::Connect,
                Detach::OnClose,
            )
            .await;
            if !session.authentication_deferred() {
                // No layer claimed authentication: the socket counts as authenticated at
                // connect.
                session.complete_authentication();
            }
            follow_up(&mut stack, &socket, session).await;
        }
        loop {
            let next = {
                let mut state = pending.lock();
                if let Some(event) = state.events.pop_front() {
                    state.bytes -= event.bytes;
                    pending.total.give_back(event.bytes);
                    Next::Event(event)
                } else if session.is_closed() {
                    state.finished = true;
                    Next::Disconnect
                } else {
                    state.worker = false;
                    state.service = Some(stack);
                    return;
                }
            };
            match next {
                Next::Event(event) => {
                    let (event, unreadable) = event.into_event();
                    if let Some(e) = unreadable
                        && let Some(count) = session.count_refusal()
                    {
                        tracing::warn!(sid = %socket.id, event = %event.name, refused = count, error = %e, "event arguments unreadable, handled as none");
                    }
                    // What a socket sent before leaving is still handled, in order; each of
                    // these is detached if it does not finish at once (see module docs).
                    // (Disconnecting counts as gone: a disconnect decided on socketioxide's call
                    // is carried out a moment later, from a task.)
                    let open = !session.is_disconnecting();
                    dispatch(
                        &mut stack,
                        &socket,
                        session,
                        RequestKind::Event(event),
                        Detach::OnClose,
                    )
                    .await;
                    if open {
                        follow_up(&mut stack, &socket, session).await;
                    }
                }
                Next::Disconnect => break,
            }
        }
        let reason = session
            .disconnect_reason()
            .unwrap_or(DisconnectReason::TransportClose);
        dispatch(
            &mut stack,
            &socket,
            session,
            RequestKind::Disconnect(reason),
            Detach::Never,
        )
        .await;
        session.clear_timers();
        telemetry::socket_disconnected();
    }
}

/// Pushes each client event into the socket's queue, synchronously, in arrival order.
struct EventForwarder<S, A: Adapter> {
    lane: Lane<S, A>,
}

impl<S: Clone, A: Adapter> Clone for EventForwarder<S, A> {
    fn clone(&self) -> Self {
        Self {
            lane: self.lane.clone(),
        }
    }
}

impl<S, A> MessageHandler<A, BridgeMarker> for EventForwarder<S, A>
where
    A: Adapter,
    S: Service<SocketRequest<A>, Response = ()> + Clone + Send + Sync + 'static,
    S::Error: Display + Send,
    S::Future: Send + 'static,
{
    fn call(&self, s: Arc<Socket<A>>, mut v: WireValue, ack_id: Option<i64>) {
        telemetry::event_received();
        let name = match Event::from_message_parts(&s, &mut v, &ack_id) {
            Ok(Event(name)) => name,
            Err(e) => {
                telemetry::event_dropped(DropReason::Unreadable);
                tracing::warn!(sid = %s.id, error = %e, "event without a readable name dropped");
                return;
            }
        };
        let bytes = wire_size(&v);
        {
            let pending = &self.lane.pending;
            let mut state = pending.lock();
            if state.finished {
                return;
            }
            let full = if state.events.len() >= pending.capacity {
                Some("events")
            } else if state.bytes + bytes > pending.bytes {
                Some("bytes")
            } else if !pending.total.take(bytes) {
                Some("bytes of all sockets")
            } else {
                None
            };
            if let Some(bound) = full {
                telemetry::event_dropped(DropReason::QueueFull);
                // Throttled: a flooding client must not flood the log too.
                if let Some(dropped) = pending.dropped.hit(1) {
                    tracing::warn!(sid = %s.id, event = %name, bytes, bound, dropped, "event queue full, events dropped");
                }
                return;
            }
            state.bytes += bytes;
            state.events.push_back(Queued {
                socket: s.clone(),
                name,
                data: v,
                ack_id,
                bytes,
            });
        }
        self.lane.wake(s);
    }
}

/// Marks the session closed; the worker then sends `Disconnect` after the queued events.
struct DisconnectForwarder<S, A: Adapter> {
    lane: Lane<S, A>,
}

impl<S, A> DisconnectHandler<A, BridgeMarker> for DisconnectForwarder<S, A>
where
    A: Adapter,
    S: Service<SocketRequest<A>, Response = ()> + Clone + Send + Sync + 'static,
    S::Error: Display + Send,
    S::Future: Send + 'static,
{
    fn call_with_defer(
        &self,
        s: Arc<Socket<A>>,
        reason: DisconnectReason,
        defer: fn(Arc<Socket<A>>),
    ) {
        let lane = self.lane.clone();
        let leave = move || {
            // Out of the namespace (and its rooms) at once, not after the stack has handled
            // the disconnect: a client that leaves and connects again on the same Engine.IO
            // session gets the same id, and socketioxide ignores that CONNECT while the old
            // socket is still in the namespace (the client would wait for ever).
            defer(s.clone());
            // Closed before the wake-up, so that a running worker finds it when its queue
            // empties.
            lane.session.close(reason);
            lane.wake(s);
        };
        if running_inline() {
            // Disconnected by the stack on socketioxide's packet reading (a policy, a
            // handler): removed now, the socket would be unknown to the client's next packet
            // in the same read, and socketioxide would close the whole connection for it,
            // losing what was queued for the client (the policy's refusal, the DISCONNECT).
            // From a task, it leaves after that read, as when the worker was a task.
            tokio::spawn(async move { leave() });
        } else {
            leave();
        }
    }
}

/// What a request leads to: the synthetic `Authenticated`, from the top of the stack, when an
/// authentication layer completed authentication during it; then the tasks the stack queued
/// with [`Session::after_request`].
async fn follow_up<S, A>(service: &mut S, socket: &SocketRef<A>, session: &Session)
where
    A: Adapter,
    S: Service<SocketRequest<A>, Response = ()>,
    S::Error: Display + Send,
    S::Future: Send + 'static,
{
    while session.take_authentication_completed() && !session.is_disconnecting() {
        dispatch(
            service,
            socket,
            session,
            RequestKind::Authenticated,
            Detach::OnClose,
        )
        .await;
    }
    for task in session.take_after_request() {
        let id = socket.id;
        let mut task = Box::pin(catch_panic(task));
        tokio::select! {
            biased;
            res = &mut task => log_panic(id, "after-request task", res),
            () = session.closed() => {
                let finishing = async move { log_panic(id, "after-request task", task.await) };
                tokio::spawn(finishing.in_current_span());
            }
        }
    }
}

/// Whether a request still running when its socket disconnects is left to finish on its own.
#[derive(Clone, Copy, PartialEq)]
enum Detach {
    OnClose,
    Never,
}

/// Calls the stack with one request, containing panics (of a layer or a handler) so the
/// worker always goes on to the socket's next request and its disconnect. Returns whether the
/// request was handled to its end without error.
async fn dispatch<S, A>(
    service: &mut S,
    socket: &SocketRef<A>,
    session: &Session,
    kind: RequestKind<A>,
    detach: Detach,
) -> bool
where
    A: Adapter,
    S: Service<SocketRequest<A>, Response = ()>,
    S::Error: Display + Send,
    S::Future: Send + 'static,
{
    let id = socket.id;
    let label = kind.label();
    let svc = match service.ready().await {
        Ok(svc) => svc,
        Err(e) => {
            tracing::error!(sid = %id, request = label, error = %e, "service not ready");
            return false;
        }
    };
    let req = SocketRequest::new(socket.clone(), session.clone(), kind);
    let fut = match catch_panic_now(|| svc.call(req)) {
        Ok(fut) => fut,
        Err(panic) => {
            telemetry::handler_panicked();
            tracing::error!(sid = %id, request = label, panic = %panic, "the stack panicked");
            return false;
        }
    };
    let mut fut = Box::pin(catch_panic(fut));
    if detach == Detach::Never {
        return report(id, label, fut.await);
    }
    tokio::select! {
        biased;
        res = &mut fut => report(id, label, res),
        () = session.closed() => {
            tokio::spawn(async move { report(id, label, fut.await) }.in_current_span());
            false
        }
    }
}

/// Logs a request's failure; returns whether it succeeded.
fn report<E: Display>(id: Sid, label: &str, res: Result<Result<(), E>, String>) -> bool {
    match res {
        Ok(Ok(())) => return true,
        Ok(Err(e)) => tracing::error!(sid = %id, request = label, "request failed: {e}"),
        Err(panic) => {
            telemetry::handler_panicked();
            tracing::error!(sid = %id, request = label, panic = %panic, "the stack panicked");
        }
    }
    false
}

fn log_panic(id: Sid, what: &str, res: Result<(), String>) {
    if let Err(panic) = res {
        telemetry::handler_panicked();
        tracing::error!(sid = %id, panic = %panic, "{what} panicked");
    }
}

#[cfg(test)]
mod tests {
    //! The per-socket queue and worker, driven through socketioxide's in-memory sockets (no
    //! network), with tokio's paused time: a wait for "nothing more happens" costs nothing.
    use super::*;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use engineioxide::Packet;
    use socketioxide::SocketIo;
    use tokio::sync::{Semaphore, mpsc};

    use crate::plumbing::BoxFuture;

    /// Reports `start:<label>` and `end:<label>` of each request; an event named `slow*` waits
    /// for a permit of `release` in between. The `Handshake` does what `handshake` says, and
    /// reports `closed` when its session closes.
    #[derive(Clone)]
    struct Probe {
        log: mpsc::UnboundedSender<String>,
        release: Arc<Semaphore>,
        handshake: AtHandshake,
    }

    #[derive(Clone, Copy, PartialEq)]
    enum AtHandshake {
        Pass,
        Refuse(&'static str),
        Fail,
        Disconnect,
        Wait,
    }

    fn probe() -> (Probe, mpsc::UnboundedReceiver<String>) {
        let (log, rx) = mpsc::unbounded_channel();
        let release = Arc::new(Semaphore::new(0));
        (
            Probe {
                log,
                release,
                handshake: AtHandshake::Pass,
            },
            rx,
        )
    }

    impl Service<SocketRequest> for Probe {
        type Response = ();
        type Error = &'static str;
        type Future = BoxFuture<Result<(), &'static str>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), &'static str>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: SocketRequest) -> Self::Future {
            let label = match &req.kind {
                RequestKind::Event(ev) => ev.name.clone(),
                kind => kind.label().to_owned(),
            };
            let at_handshake = match req.kind {
                RequestKind::Handshake => self.handshake,
                _ => AtHandshake::Pass,
            };
            if at_handshake != AtHandshake::Pass {
                let (session, log) = (req.session.clone(), self.log.clone());
                tokio::spawn(async move {
                    session.closed().await;
                    log.send("closed".into()).ok();
                });
            }
            match at_handshake {
                AtHandshake::Refuse(message) => req.session.refuse_connection(message),
                AtHandshake::Disconnect => req.session.disconnect(&req.socket),
                _ => {}
            }
            let this = self.clone();
            Box::pin(async move {
                this.log.send(format!("start:{label}")).ok();
                if label.starts_with("slow") || at_handshake == AtHandshake::Wait {
                    this.release.acquire().await.unwrap().forget();
                }
                this.log.send(format!("end:{label}")).ok();
                if at_handshake == AtHandshake::Fail {
                    return Err("no");
                }
                Ok(())
            })
        }
    }

    async fn server(bridge: Bridge<Probe, socketioxide::adapter::LocalAdapter>) -> SocketIo {
        let (_svc, io) = SocketIo::new_svc();
        io.ns("/", bridge);
        io
    }

    async fn emit(client: &mpsc::Sender<Packet>, name: &str) {
        let packet = format!("2[{}]", serde_json::Value::from(name));
        client.send(Packet::Message(packet.into())).await.unwrap();
    }

    async fn expect(log: &mut mpsc::UnboundedReceiver<String>, lines: &[&str]) {
        for line in lines {
            let got = tokio::time::timeout(Duration::from_secs(5), log.recv())
                .await
                .unwrap_or_else(|_| panic!("no {line:?}"));
            assert_eq!(got.as_deref(), Some(*line));
        }
    }

    /// Nothing more is logged for a (paused, so free) minute.
    async fn quiet(log: &mut mpsc::UnboundedReceiver<String>) {
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(log.try_recv().ok(), None);
    }

    const CONNECTED: &[&str] = &[
        "start:handshake",
        "end:handshake",
        "start:connect",
        "end:connect",
        // No layer claimed authentication: authenticated right after `Connect`.
        "start:authenticated",
        "end:authenticated",
    ];

    #[tokio::test(start_paused = true)]
    async fn a_socket_s_requests_run_one_at_a_time_in_order_while_other_sockets_go_on() {
        let (probe, mut log) = probe();
        let release = probe.release.clone();
        let io = server(Bridge::new(probe)).await;
        let (one, _rx1) = io.new_dummy_sock("/", ()).await;
        expect(&mut log, CONNECTED).await;
        for name in ["slow", "a", "b"] {
            emit(&one, name).await;
        }
        expect(&mut log, &["start:slow"]).await;
        quiet(&mut log).await;

        // Another socket is not held up by the first one's slow request.
        let (two, _rx2) = io.new_dummy_sock("/", ()).await;
        expect(&mut log, CONNECTED).await;
        emit(&two, "other").await;
        expect(&mut log, &["start:other", "end:other"]).await;

        release.add_permits(1);
        expect(
            &mut log,
            &["end:slow", "start:a", "end:a", "start:b", "end:b"],
        )
        .await;
        quiet(&mut log).await;
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_queue_bound_new_events_are_dropped_and_the_queued_ones_kept() {
        let (probe, mut log) = probe();
        let release = probe.release.clone();
        let io = server(Bridge::new(probe).queue_capacity(2)).await;
        let (client, _rx) = io.new_dummy_sock("/", ()).await;
        expect(&mut log, CONNECTED).await;
        emit(&client, "slow").await;
        expect(&mut log, &["start:slow"]).await;
        for name in ["a", "b", "c", "d"] {
            emit(&client, name).await;
        }
        // Let the engine hand all four to the bridge before the slow one ends.
        tokio::time::sleep(Duration::from_secs(1)).await;
        release.add_permits(1);
        expect(
            &mut log,
            &["end:slow", "start:a", "end:a", "start:b", "end:b"],
        )
        .await;
        quiet(&mut log).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_disconnect_goes_through_while_a_request_never_ends() {
        let (probe, mut log) = probe();
        let io = server(Bridge::new(probe)).await;
        let (client, _rx) = io.new_dummy_sock("/", ()).await;
        expect(&mut log, CONNECTED).await;
        emit(&client, "slow-forever").await;
        expect(&mut log, &["start:slow-forever"]).await;
        client.send(Packet::Close).await.unwrap();
        expect(&mut log, &["start:disconnect", "end:disconnect"]).await;
        quiet(&mut log).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_failed_or_disconnected_handshake_is_answered_with_connect_error_and_goes_no_further()
     {
        for (at_handshake, message) in [
            (AtHandshake::Refuse("not you"), "not you"),
            // Fails closed: the layer that would have claimed the socket may not have run.
            (
                AtHandshake::Fail,
                "the server failed to accept the connection",
            ),
            (AtHandshake::Disconnect, "the server refused the connection"),
        ] {
            let (mut probe, mut log) = probe();
            probe.handshake = at_handshake;
            let io = server(Bridge::new(probe)).await;
            let (client, mut rx) = io.new_dummy_sock("/", ()).await;
            expect(&mut log, &["start:handshake", "end:handshake", "closed"]).await;
            let answer = loop {
                match rx.recv().await {
                    Some(Packet::Message(m)) if m.as_str().starts_with('4') => break m,
                    Some(_) => continue,
                    None => panic!("no answer to the CONNECT"),
                }
            };
            assert_eq!(answer.as_str(), format!(r#"4{{"message":"{message}"}}"#));
            emit(&client, "a").await;
            client.send(Packet::Close).await.unwrap();
            quiet(&mut log).await;
        }
    }

    #[tokio::test]
    async fn a_socket_never_connected_after_its_handshake_has_its_session_closed() {
        let t = crate::testing::TestSocket::new().await;
        let guard = Unanswered::new(t.session.clone());
        let clone = guard.clone();
        drop(guard);
        assert!(!t.session.is_closed(), "a clone is still held");
        drop(clone);
        assert!(t.session.is_closed());

        let connected = crate::testing::TestSocket::new().await;
        let guard = Unanswered::new(connected.session.clone());
        guard.disarm();
        drop(guard);
        assert!(!connected.session.is_closed(), "disarmed by the connect");
    }
}
