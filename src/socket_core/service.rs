//! The core service: the bottom of the inbound stack.
//!
//! It tracks clients (the seeds' `getClients`), runs the user's event handlers and the
//! authenticated callback (the seeds' `clientConnectedFn`), and knows no policy: whatever
//! reaches it has already been let through by the layers above.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use socketioxide::adapter::{Adapter, LocalAdapter};
use tower_service::Service;

use crate::args::{Arg, Args};
use crate::error::BuildError;
use crate::event::{RequestKind, SocketRequest, names};
use crate::plumbing::BoxFuture;
use crate::socket_core::ClientRegistry;
use crate::socket_core::handler::{self, BoxedHandler, EventHandler, EventParts};

/// What to use instead of a handler for one of Socket.IO's reserved event names
/// ([`names::RESERVED`]): no client can send those. The core knows no policy: a name a layer
/// answers (`authenticate`, `join`...) never reaches a handler while that layer is in the
/// stack, and reaches it when the layer is left out.
fn reserved_hint(name: &str) -> Option<&'static str> {
    match name {
        "connect" => Some("it is reserved by Socket.IO; use on_connect"),
        "disconnect" | "disconnecting" => Some("it is reserved by Socket.IO; use on_disconnect"),
        _ if names::is_reserved(name) => Some("it is reserved by Socket.IO"),
        _ => None,
    }
}

/// Tracks clients and dispatches events to user handlers. Cheap to clone.
pub struct CoreService<A: Adapter = LocalAdapter> {
    registry: ClientRegistry<A>,
    handlers: Arc<Handlers<A>>,
}

struct Handlers<A: Adapter> {
    by_name: HashMap<String, BoxedHandler<A>>,
    fallback: Option<BoxedHandler<A>>,
    on_connect: Option<BoxedHandler<A>>,
    on_authenticated: Option<BoxedHandler<A>>,
    on_disconnect: Option<BoxedHandler<A>>,
    /// The application state given to `with_state`, by type.
    state: http::Extensions,
}

impl<A: Adapter> Clone for CoreService<A> {
    fn clone(&self) -> Self {
        Self {
            registry: self.registry.clone(),
            handlers: self.handlers.clone(),
        }
    }
}

impl<A: Adapter> CoreService<A> {
    /// A builder to register handlers.
    pub fn builder() -> CoreServiceBuilder<A> {
        CoreServiceBuilder {
            registry: ClientRegistry::new(),
            handlers: Handlers {
                by_name: HashMap::new(),
                fallback: None,
                on_connect: None,
                on_authenticated: None,
                on_disconnect: None,
                state: http::Extensions::new(),
            },
            errors: Vec::new(),
        }
    }

    /// The tracked clients.
    pub fn registry(&self) -> &ClientRegistry<A> {
        &self.registry
    }
}

/// Registers user handlers on a [`CoreService`].
pub struct CoreServiceBuilder<A: Adapter = LocalAdapter> {
    registry: ClientRegistry<A>,
    handlers: Handlers<A>,
    errors: Vec<BuildError>,
}

impl<A: Adapter> CoreServiceBuilder<A> {
    /// Runs `handler` for every client event named `topic` (the seeds' server-level `on`).
    ///
    /// An empty topic, a topic registered twice, or one of Socket.IO's reserved names
    /// (`connect`, `disconnect`...) makes [`build`](Self::build) fail.
    pub fn on<T, H: EventHandler<A, T>>(mut self, topic: &str, handler: H) -> Self {
        let refusal = if topic.trim().is_empty() {
            Some(BuildError::EmptyTopic)
        } else if let Some(hint) = reserved_hint(topic) {
            Some(BuildError::ReservedTopic(topic.to_owned(), hint))
        } else if self.handlers.by_name.contains_key(topic) {
            Some(BuildError::DuplicateTopic(topic.to_owned()))
        } else {
            None
        };
        match refusal {
            Some(e) => self.errors.push(e),
            None => {
                self.handlers
                    .by_name
                    .insert(topic.to_owned(), handler::boxed(handler));
            }
        }
        self
    }

    /// Gives handlers `value` through the [`State`](crate::socket_core::extract::State) extractor:
    /// application state (a database pool, a config), one value of each type, shared by
    /// every socket.
    pub fn with_state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.handlers.state.insert(value);
        self
    }

    /// Runs `handler` for client events no other handler is registered for.
    pub fn on_fallback<T, H: EventHandler<A, T>>(mut self, handler: H) -> Self {
        self.handlers.fallback = Some(handler::boxed(handler));
        self
    }

    /// Runs `handler` when a socket connects, before it authenticates (the seeds'
    /// `on({topic: 'connection'})`). It is awaited before the socket's first event.
    pub fn on_connect<T, H: EventHandler<A, T>>(mut self, handler: H) -> Self {
        self.handlers.on_connect = Some(handler::boxed(handler));
        self
    }

    /// Runs `handler` once a socket is authenticated (the seeds' `clientConnectedFn`): after
    /// the client got `authenticated`, before the socket's next event is handled.
    pub fn on_authenticated<T, H: EventHandler<A, T>>(mut self, handler: H) -> Self {
        self.handlers.on_authenticated = Some(handler::boxed(handler));
        self
    }

    /// Runs `handler` when a socket disconnects (after the client is untracked and its
    /// timers cleared; its rooms are still readable).
    pub fn on_disconnect<T, H: EventHandler<A, T>>(mut self, handler: H) -> Self {
        self.handlers.on_disconnect = Some(handler::boxed(handler));
        self
    }

    /// Shares an existing registry (the server handle's) instead of a new one.
    pub fn registry(mut self, registry: ClientRegistry<A>) -> Self {
        self.registry = registry;
        self
    }

    /// The service; fails with the first refused registration.
    pub fn build(self) -> Result<CoreService<A>, BuildError> {
        if let Some(e) = self.errors.into_iter().next() {
            return Err(e);
        }
        Ok(CoreService {
            registry: self.registry,
            handlers: Arc::new(self.handlers),
        })
    }
}

impl<A: Adapter> Service<SocketRequest<A>> for CoreService<A> {
    type Response = ();
    type Error = Infallible;
    type Future = BoxFuture<Result<(), Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: SocketRequest<A>) -> Self::Future {
        let SocketRequest {
            socket,
            session,
            kind,
        } = req;
        let handler = match kind {
            RequestKind::Handshake => return Box::pin(async { Ok(()) }),
            RequestKind::Connect => {
                if !self.registry.insert(socket.clone(), session.clone()) {
                    tracing::debug!(sid = %socket.id, "connect of a tracked or gone socket ignored");
                    return Box::pin(async { Ok(()) });
                }
                self.handlers
                    .on_connect
                    .clone()
                    .map(|h| (h, "connect".to_owned(), Args::new(), None))
            }
            RequestKind::Disconnect(reason) => {
                session.clear_timers();
                self.registry.remove_session(socket.id, &session);
                tracing::debug!(sid = %socket.id, %reason, "client removed");
                self.handlers.on_disconnect.clone().map(|h| {
                    let reason = Args::from(Arg::String(reason.to_string()));
                    (h, "disconnect".to_owned(), reason, None)
                })
            }
            RequestKind::Authenticated => {
                // Queued to run once the whole `Authenticated` request is done, i.e. after the
                // auth layer has sent `authenticated`, as the seeds call clientConnectedFn last.
                if let Some(handler) = self.handlers.on_authenticated.clone() {
                    let parts = EventParts {
                        socket,
                        session: session.clone(),
                        name: names::AUTHENTICATED.to_owned(),
                        args: Args::new(),
                        ack: None,
                        state: &self.handlers.state,
                    };
                    session.after_request(handler(parts));
                }
                return Box::pin(async { Ok(()) });
            }
            RequestKind::Event(ev) => {
                let handler = self
                    .handlers
                    .by_name
                    .get(&ev.name)
                    .or(self.handlers.fallback.as_ref())
                    .cloned();
                if handler.is_none() {
                    tracing::debug!(sid = %socket.id, event = %ev.name, "no handler for event");
                }
                handler.map(|h| (h, ev.name, ev.args, ev.ack))
            }
        };
        match handler {
            Some((handler, name, args, ack)) => {
                let fut = handler(EventParts {
                    socket,
                    session,
                    name,
                    args,
                    ack,
                    state: &self.handlers.state,
                });
                Box::pin(async move {
                    fut.await;
                    Ok(())
                })
            }
            None => Box::pin(async { Ok(()) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use serde_json::json;
    use socketioxide::socket::DisconnectReason;
    use tower::ServiceExt;

    use crate::socket_core::extract::{Data, EventName, State};
    use crate::testing::{TestSocket, event};

    type Log = Arc<Mutex<Vec<String>>>;

    fn logged(log: &Log, line: impl Into<String>) {
        log.lock().unwrap().push(line.into());
    }

    async fn call(core: &mut CoreService, req: SocketRequest) {
        core.ready().await.unwrap().call(req).await.unwrap();
    }

    /// Handlers that log what they got, the log given to them as state.
    fn core(log: &Log) -> CoreService {
        CoreService::builder()
            .with_state(log.clone())
            .on(
                "chat",
                async |Data(n): Data<u32>, State(log): State<Log>| {
                    logged(&log, format!("chat {n}"))
                },
            )
            .on_fallback(async |EventName(name): EventName, State(log): State<Log>| {
                logged(&log, format!("fallback {name}"))
            })
            .on_connect(async |State(log): State<Log>| logged(&log, "connect"))
            .on_authenticated(async |EventName(name): EventName, State(log): State<Log>| {
                logged(&log, name)
            })
            .on_disconnect(async |Data(reason): Data<String>, State(log): State<Log>| {
                logged(&log, format!("disconnect {reason}"))
            })
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn tracks_the_client_from_connect_to_disconnect_and_runs_each_handler() {
        let log = Log::default();
        let mut core = core(&log);
        let t = TestSocket::new().await;
        call(&mut core, t.request(RequestKind::Handshake)).await;
        assert_eq!(core.registry().len(), 0, "not tracked before Connect");
        call(&mut core, t.request(RequestKind::Connect)).await;
        assert_eq!(core.registry().len(), 1);
        // A second Connect of the same socket is ignored, its handler not run again.
        call(&mut core, t.request(RequestKind::Connect)).await;
        call(&mut core, t.request(event("chat", json!(7)))).await;
        call(&mut core, t.request(event("other", json!(null)))).await;
        // A handler whose arguments do not fit is not called.
        call(&mut core, t.request(event("chat", json!("seven")))).await;
        call(&mut core, t.request(RequestKind::Authenticated)).await;
        assert_eq!(
            *log.lock().unwrap(),
            ["connect", "chat 7", "fallback other"],
            "the authenticated callback waits for the end of its request"
        );
        for task in t.session.take_after_request() {
            task.await;
        }
        let reason = DisconnectReason::ClientNSDisconnect;
        call(&mut core, t.request(RequestKind::Disconnect(reason))).await;
        assert_eq!(core.registry().len(), 0);
        assert_eq!(
            *log.lock().unwrap(),
            [
                "connect",
                "chat 7",
                "fallback other",
                "authenticated",
                &format!("disconnect {reason}"),
            ]
        );
    }

    #[tokio::test]
    async fn a_panicking_handler_is_contained_and_the_next_event_handled() {
        let log = Log::default();
        let mut core = CoreService::builder()
            .with_state(log.clone())
            .on("boom", async || panic!("handler bug"))
            .on("ok", async |State(log): State<Log>| logged(&log, "ok"))
            .build()
            .unwrap();
        let t = TestSocket::new().await;
        call(&mut core, t.request(RequestKind::Connect)).await;
        call(&mut core, t.request(event("boom", json!(null)))).await;
        call(&mut core, t.request(event("ok", json!(null)))).await;
        assert_eq!(*log.lock().unwrap(), ["ok"]);
    }

    #[test]
    fn registration_errors_come_at_build() {
        let refused = |name: &str| {
            CoreService::<LocalAdapter>::builder()
                .on(name, async || {})
                .on("fine", async || {})
                .build()
                .err()
        };
        assert_eq!(refused(""), Some(BuildError::EmptyTopic));
        assert!(matches!(
            refused("disconnecting"),
            Some(BuildError::ReservedTopic(..))
        ));
        assert_eq!(
            refused("fine"),
            Some(BuildError::DuplicateTopic("fine".into()))
        );
        assert_eq!(
            refused("join"),
            None,
            "a layer's name is not the core's business"
        );
    }
}
