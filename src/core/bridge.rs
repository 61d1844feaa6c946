//! The bridge from socketioxide into the inbound pipeline, in one place.
//!
//! [`Bridge`] is the namespace's connect handler. For every socket it
//! 1. joins the socket to the room named after its own id (as a JavaScript Socket.IO socket
//!    is), so a socket id can be used wherever a room can;
//! 2. takes the handshake and makes the socket's [`Session`];
//! 3. registers a synchronous fallback message handler and a disconnect handler that only
//!    push into a per-socket queue, in the order socketioxide receives packets;
//! 4. spawns one worker per socket that calls the stack with `Connect`, then each event in
//!    order, then `Disconnect`: one request of a socket at a time (a `join` then a `leave`
//!    never swap), while different sockets run in parallel.
//!
//! When a socket disconnects while one of its requests is still running (an authenticate
//! function that never returns, say), that request is left to finish on its own task and the
//! worker goes on to `Disconnect` at once: the client is untracked and its timers cleared
//! without waiting for it. Layers check [`Session::is_closed`] before acting on a late result.

use std::fmt::Display;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Data, Event, SocketRef, TryData};
use socketioxide::handler::connect::FromConnectParts;
use socketioxide::handler::disconnect::DisconnectHandler;
use socketioxide::handler::message::{FromMessage, FromMessageParts};
use socketioxide::handler::{ConnectHandler, MessageHandler, Value as WireValue};
use socketioxide::socket::{DisconnectReason, Socket};
use tokio::sync::mpsc;
use tower::ServiceExt;
use tower_service::Service;

use crate::event::{ClientEvent, RequestKind, SocketRequest};
use crate::handshake::Handshake;
use crate::session::{ClientState, Session};

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
    fn call(&self, s: Arc<Socket<A>>, auth: Option<WireValue>) {
        let auth = match Data::<serde_json::Value>::from_connect_parts(&s, &auth) {
            Ok(Data(v)) => v,
            Err(_) => serde_json::Value::Null,
        };
        let socket = SocketRef::from(s);
        socket.join(socket.id.to_string());
        let session = Session::new(socket.id, Handshake::from_parts(socket.req_parts(), auth));
        socket.extensions.insert(session.clone());

        let (tx, rx) = mpsc::channel(self.queue_capacity);
        let defer: DeferSlot<A> = Arc::default();
        socket.on_fallback(EventForwarder { tx });
        socket.on_disconnect(DisconnectForwarder {
            session: session.clone(),
            defer: defer.clone(),
        });
        tokio::spawn(run(self.service.clone(), socket, session, rx, defer));
    }
}

/// Pushes each client event into the socket's queue, synchronously, in arrival order.
struct EventForwarder<A: Adapter> {
    tx: mpsc::Sender<ClientEvent<A>>,
}

impl<A: Adapter> Clone for EventForwarder<A> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<A: Adapter> MessageHandler<A, BridgeMarker> for EventForwarder<A> {
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
        match self.tx.try_send(ClientEvent {
            name,
            data,
            ack: Some(ack),
        }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(ev)) => {
                tracing::warn!(socket = %s.id, event = %ev.name, "event queue full, event dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// Marks the session closed; the worker then sends `Disconnect` after the queued events.
struct DisconnectForwarder<A: Adapter> {
    session: Session,
    defer: DeferSlot<A>,
}

impl<A: Adapter> DisconnectHandler<A, BridgeMarker> for DisconnectForwarder<A> {
    fn call_with_defer(
        &self,
        s: Arc<Socket<A>>,
        reason: DisconnectReason,
        defer: fn(Arc<Socket<A>>),
    ) {
        *self.defer.lock().unwrap_or_else(|e| e.into_inner()) = Some((defer, s));
        self.session.close(reason);
    }
}

/// The per-socket worker: one request at a time, in order.
async fn run<S, A>(
    mut service: S,
    socket: SocketRef<A>,
    session: Session,
    mut rx: mpsc::Receiver<ClientEvent<A>>,
    defer: DeferSlot<A>,
) where
    A: Adapter,
    S: Service<SocketRequest<A>, Response = ()> + Send + 'static,
    S::Error: Display + Send,
    S::Future: Send + 'static,
{
    let request = |kind| SocketRequest::new(socket.clone(), session.clone(), kind);

    dispatch(&mut service, request(RequestKind::Connect), &session).await;
    if !session.authentication_deferred() && !session.is_closed() {
        session.set_state(ClientState::Authenticated);
        dispatch(&mut service, request(RequestKind::Authenticated), &session).await;
    }
    loop {
        tokio::select! {
            biased;
            event = rx.recv() => match event {
                Some(event) => dispatch(&mut service, request(RequestKind::Event(event)), &session).await,
                None => break,
            },
            () = session.closed() => break,
        }
    }
    // The socket is gone: what it sent before leaving is still handled, in order, then the
    // disconnect. Each of these is detached if it does not finish at once (see module docs).
    rx.close();
    while let Ok(event) = rx.try_recv() {
        dispatch(&mut service, request(RequestKind::Event(event)), &session).await;
    }
    session.closed().await;
    let reason = session
        .disconnect_reason()
        .unwrap_or(DisconnectReason::TransportClose);
    match service.ready().await {
        Ok(svc) => {
            if let Err(e) = svc.call(request(RequestKind::Disconnect(reason))).await {
                tracing::error!(socket = %socket.id, "disconnect request failed: {e}");
            }
        }
        Err(e) => tracing::error!(socket = %socket.id, "service not ready for disconnect: {e}"),
    }
    session.clear_timers();
    let deferred = defer.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some((cleanup, s)) = deferred {
        cleanup(s);
    }
}

/// Calls the stack with one request; if the socket disconnects meanwhile, the request is left
/// to finish on its own task so the worker can go on.
async fn dispatch<S, A>(service: &mut S, req: SocketRequest<A>, session: &Session)
where
    A: Adapter,
    S: Service<SocketRequest<A>, Response = ()>,
    S::Error: Display + Send,
    S::Future: Send + 'static,
{
    let socket = req.socket.id;
    let label = req.kind.label();
    let svc = match service.ready().await {
        Ok(svc) => svc,
        Err(e) => {
            tracing::error!(%socket, request = label, "service not ready: {e}");
            return;
        }
    };
    let mut fut = Box::pin(svc.call(req));
    tokio::select! {
        biased;
        res = &mut fut => {
            if let Err(e) = res {
                tracing::error!(%socket, request = label, "request failed: {e}");
            }
        }
        () = session.closed() => {
            tokio::spawn(async move {
                if let Err(e) = fut.await {
                    tracing::error!(%socket, request = label, "request failed: {e}");
                }
            });
        }
    }
}
