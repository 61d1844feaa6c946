//! The bridge from socketioxide into the inbound pipeline, in one place.
//!
//! [`Bridge`] is the namespace's connect handler. For every socket it
//! 1. takes the handshake and makes the socket's [`Session`], then registers a synchronous
//!    fallback message handler and a disconnect handler that only push into a per-socket
//!    queue, in the order socketioxide receives packets. This runs as the connect
//!    middleware, before socketioxide sends CONNECT: a client may send its first event as
//!    soon as it reads CONNECT, and an event with no handler registered yet is dropped;
//! 2. once connected, joins the socket to the room named after its own id (as a JavaScript
//!    Socket.IO socket is), so a socket id can be used wherever a room can;
//! 3. starts the socket's worker;
//! 4. drains that queue with a worker task that calls the stack with `Connect`, then each
//!    event in order, then `Disconnect`: one request of a socket at a time (a `join` then a
//!    `leave` never swap), while different sockets run in parallel. The worker runs only
//!    while the socket has something to handle and is started again by its next event, so
//!    an idle socket holds no task and no channel buffer (about 5 KiB per client saved; see
//!    BENCHMARKS.md). When authentication completes
//!    during a request ([`Session::complete_authentication`], or at connect when no layer
//!    defers it), the worker sends `Authenticated` through the whole stack right after that
//!    request, then runs the tasks queued with [`Session::after_request`].
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
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Data, Event, SocketRef, TryData};
use socketioxide::handler::connect::FromConnectParts;
use socketioxide::handler::disconnect::DisconnectHandler;
use socketioxide::handler::message::{FromMessage, FromMessageParts};
use socketioxide::handler::{ConnectHandler, MessageHandler, Value as WireValue};
use socketioxide::socket::{DisconnectReason, Sid, Socket};
use tower::ServiceExt;
use tower_service::Service;

use crate::event::{ClientEvent, RequestKind, SocketRequest};
use crate::handshake::Handshake;
use crate::session::Session;

/// How many events of one socket may wait while an earlier one is being handled.
pub const DEFAULT_QUEUE_CAPACITY: usize = 256;

/// The namespace connect handler feeding a socket's lifecycle into `service`.
pub struct Bridge<S, A> {
    service: S,
    queue_capacity: usize,
    _adapter: PhantomData<fn() -> A>,
}

impl<S: Clone, A> Clone for Bridge<S, A> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            queue_capacity: self.queue_capacity,
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
}

#[doc(hidden)]
pub struct BridgeMarker;

type DeferSlot<A> = Arc<Mutex<Option<(fn(Arc<Socket<A>>), Arc<Socket<A>>)>>>;

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
        let auth = match Data::<serde_json::Value>::from_connect_parts(&s, auth) {
            Ok(Data(v)) => v,
            Err(_) => serde_json::Value::Null,
        };
        let socket = SocketRef::from(s);
        let session = Session::new(socket.id, Handshake::from_parts(socket.req_parts(), auth));
        socket.extensions.insert(session.clone());
        let lane = Lane {
            service: self.service.clone(),
            session,
            pending: Arc::new(Pending {
                state: Mutex::new(PendingState {
                    events: VecDeque::new(),
                    // Events that come before `call` wait for the connect's worker.
                    worker: true,
                    finished: false,
                    dropped: 0,
                }),
                capacity: self.queue_capacity,
            }),
            defer: Arc::default(),
        };
        socket.on_fallback(EventForwarder { lane: lane.clone() });
        socket.on_disconnect(DisconnectForwarder { lane: lane.clone() });
        // Handed to `call`, which starts the worker once the socket is connected.
        socket.extensions.insert(lane);
        Box::pin(std::future::ready(Ok(())))
    }

    fn call(&self, s: Arc<Socket<A>>, _auth: Option<WireValue>) {
        let socket = SocketRef::from(s);
        let Some(lane) = socket.extensions.remove::<Lane<S, A>>() else {
            tracing::error!(socket = %socket.id, "connected without the bridge's set-up");
            return;
        };
        socket.join(socket.id.to_string());
        // A transport that closed before the socket was connected: socketioxide cleaned the
        // socket up itself; only the session is left to close.
        if !socket.connected() {
            lane.session.close(DisconnectReason::TransportClose);
        }
        tokio::spawn(lane.run(socket, true));
    }
}

/// A socket's way into the stack: its queue of events not yet handled, and what a worker
/// needs to handle them.
struct Lane<S, A: Adapter> {
    service: S,
    session: Session,
    pending: Arc<Pending<A>>,
    defer: DeferSlot<A>,
}

impl<S: Clone, A: Adapter> Clone for Lane<S, A> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            session: self.session.clone(),
            pending: self.pending.clone(),
            defer: self.defer.clone(),
        }
    }
}

struct Pending<A: Adapter> {
    state: Mutex<PendingState<A>>,
    capacity: usize,
}

struct PendingState<A: Adapter> {
    events: VecDeque<ClientEvent<A>>,
    /// A worker is running and will see what is pushed now.
    worker: bool,
    /// `Disconnect` was handled: nothing more is taken.
    finished: bool,
    /// Events dropped because the queue was full.
    dropped: u64,
}

impl<A: Adapter> Pending<A> {
    fn lock(&self) -> std::sync::MutexGuard<'_, PendingState<A>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the worker takes next.
enum Next<A: Adapter> {
    Event(ClientEvent<A>),
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
        let start = {
            let mut state = self.pending.lock();
            !state.finished && !std::mem::replace(&mut state.worker, true)
        };
        if start {
            tokio::spawn(self.clone().run(SocketRef::from(socket), false));
        }
    }

    /// The worker: `Connect` first when `connect`, then the queued events in order, then
    /// `Disconnect` once the socket is closed and its queue empty; it stops when there is
    /// nothing left to do.
    async fn run(mut self, socket: SocketRef<A>, connect: bool) {
        let Self {
            service,
            session,
            pending,
            defer,
        } = &mut self;
        if connect {
            dispatch(
                service,
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
            follow_up(service, &socket, session).await;
        }
        loop {
            let next = {
                let mut state = pending.lock();
                if let Some(event) = state.events.pop_front() {
                    Next::Event(event)
                } else if session.is_closed() {
                    state.finished = true;
                    Next::Disconnect
                } else {
                    state.worker = false;
                    return;
                }
            };
            match next {
                Next::Event(event) => {
                    // What a socket sent before leaving is still handled, in order; each of
                    // these is detached if it does not finish at once (see module docs).
                    let open = !session.is_closed();
                    dispatch(
                        service,
                        &socket,
                        session,
                        RequestKind::Event(event),
                        Detach::OnClose,
                    )
                    .await;
                    if open {
                        follow_up(service, &socket, session).await;
                    }
                }
                Next::Disconnect => break,
            }
        }
        let reason = session
            .disconnect_reason()
            .unwrap_or(DisconnectReason::TransportClose);
        dispatch(
            service,
            &socket,
            session,
            RequestKind::Disconnect(reason),
            Detach::Never,
        )
        .await;
        session.clear_timers();
        let deferred = defer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((cleanup, s)) = deferred {
            cleanup(s);
        }
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
        let name = match Event::from_message_parts(&s, &mut v, &ack_id) {
            Ok(Event(name)) => name,
            Err(e) => {
                tracing::warn!(socket = %s.id, "event without a readable name dropped: {e}");
                return;
            }
        };
        let Ok(ack) = AckSender::from_message_parts(&s, &mut v, &ack_id);
        let data = match TryData::<serde_json::Value>::from_message(s.clone(), v, ack_id) {
            Ok(TryData(Ok(data))) => data,
            _ => serde_json::Value::Null,
        };
        {
            let mut state = self.lane.pending.lock();
            if state.finished {
                return;
            }
            if state.events.len() >= self.lane.pending.capacity {
                // Logged at the first drop and every 1,000th after: a flooding client must
                // not flood the log too.
                state.dropped += 1;
                if state.dropped % 1000 == 1 {
                    tracing::warn!(socket = %s.id, event = %name, dropped = state.dropped, "event queue full, events dropped");
                }
                return;
            }
            state.events.push_back(ClientEvent {
                name,
                data,
                ack: Some(ack),
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
        *self.lane.defer.lock().unwrap_or_else(|e| e.into_inner()) = Some((defer, s.clone()));
        // Closed before the wake-up, so that a running worker finds it when its queue empties.
        self.lane.session.close(reason);
        self.lane.wake(s);
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
    while session.take_authentication_completed() && !session.is_closed() {
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
        let mut task = Box::pin(AssertUnwindSafe(task).catch_unwind());
        tokio::select! {
            biased;
            res = &mut task => log_panic(id, "after-request task", res),
            () = session.closed() => {
                tokio::spawn(async move { log_panic(id, "after-request task", task.await) });
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
/// worker always goes on to the socket's next request and its disconnect.
async fn dispatch<S, A>(
    service: &mut S,
    socket: &SocketRef<A>,
    session: &Session,
    kind: RequestKind<A>,
    detach: Detach,
) where
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
            tracing::error!(socket = %id, request = label, "service not ready: {e}");
            return;
        }
    };
    let req = SocketRequest::new(socket.clone(), session.clone(), kind);
    let fut = match std::panic::catch_unwind(AssertUnwindSafe(|| svc.call(req))) {
        Ok(fut) => fut,
        Err(_) => {
            tracing::error!(socket = %id, request = label, "the stack panicked");
            return;
        }
    };
    let mut fut = Box::pin(AssertUnwindSafe(fut).catch_unwind());
    if detach == Detach::Never {
        return report(id, label, fut.await);
    }
    tokio::select! {
        biased;
        res = &mut fut => report(id, label, res),
        () = session.closed() => {
            tokio::spawn(async move { report(id, label, fut.await) });
        }
    }
}

fn report<E: Display>(id: Sid, label: &str, res: std::thread::Result<Result<(), E>>) {
    match res {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(socket = %id, request = label, "request failed: {e}"),
        Err(_) => tracing::error!(socket = %id, request = label, "the stack panicked"),
    }
}

fn log_panic(id: Sid, what: &str, res: std::thread::Result<()>) {
    if res.is_err() {
        tracing::error!(socket = %id, "{what} panicked");
    }
}
