//! The server helper: a builder that assembles the stack and checks its inputs, and the
//! handle to run it (the seeds' `SocketIOServerHelper`). Both are re-exported at the crate's
//! root, where their docs are.

use std::convert::Infallible;
use std::time::Duration;

use socketioxide::adapter::{Adapter, LocalAdapter};
use socketioxide::{SocketIo, SocketIoBuilder};
use tower::ServiceExt;
use tower::util::{BoxCloneSyncService, Either};
use tower_layer::{Identity, Layer, Stack};
use tower_service::Service;

use crate::connect_limit::ConnectLimit;
use crate::error::{BoxError, BuildError};
use crate::event::SocketRequest;
#[cfg(feature = "fanout")]
use crate::fanout::{RedisAdapter, RedisFanout};
use crate::io_service::{IoLayer, IoService};
use crate::limits::{
    DEFAULT_MAX_PAYLOAD, DEFAULT_PATH, DEFAULT_QUEUE_BYTES, DEFAULT_QUEUE_CAPACITY,
    DEFAULT_SOCKET_BUFFER, DEFAULT_TOTAL_QUEUE_BYTES, DEFAULT_WRITE_TIMEOUT,
    DEFAULT_WS_READ_BUFFER,
};
use crate::outbound::{Delivery, LocalDelivery, Outbound, OutboundMessage, SendError};
use crate::socket_core::EventHandler;
use crate::socket_core::bridge::Bridge;
use crate::socket_core::{Client, ClientRegistry, CoreService, CoreServiceBuilder};
use crate::transport::Transports;
#[cfg(not(feature = "fanout"))]
use no_fanout::RedisFanout;
use socketioxide_core::adapter::Spawnable;

/// The bottom of the outbound stack: [`LocalDelivery`], or [`RedisDelivery`] with a fan-out.
///
/// [`RedisDelivery`]: crate::fanout::RedisDelivery
pub type DeliveryService = BoxCloneSyncService<OutboundMessage, (), SendError>;

/// The inbound stack, type-erased so the bridge has one concrete type.
pub type InboundService<A = LocalAdapter> = BoxCloneSyncService<SocketRequest<A>, (), BoxError>;

type ConfigureIo = Box<dyn FnOnce(SocketIoBuilder) -> SocketIoBuilder + Send>;

/// Assembles a [`SocketServer`] (an example there).
pub struct SocketServerBuilder<L = Identity, O = Identity, A: Adapter = LocalAdapter> {
    path: String,
    fanout: Option<RedisFanout>,
    adapter_state: A::State,
    core: CoreServiceBuilder<A>,
    errors: Vec<BuildError>,
    inbound: L,
    outbound: O,
    configure_io: Option<ConfigureIo>,
    queue_capacity: usize,
    queue_bytes: usize,
    total_queue_bytes: usize,
    connect_limit: ConnectLimit,
    write_timeout: Option<Duration>,
    namespaces: Vec<Namespace>,
    #[cfg(feature = "admin-ui")]
    admin_ui: Option<crate::admin_ui::AdminUi>,
}

/// A namespace served beside `/`, through the same layers and handlers.
#[derive(Debug, Clone)]
enum Namespace {
    Static(String),
    Dynamic(String),
}

impl SocketServer<LocalAdapter> {
    /// A builder with the seeds' path (`/io`), no layers and no handlers.
    pub fn builder() -> SocketServerBuilder {
        SocketServerBuilder::with_adapter_state(())
    }
}

#[cfg(feature = "fanout")]
impl SocketServer<RedisAdapter> {
    /// A builder whose Socket.IO server uses the [`RedisAdapter`]: `send` and socketioxide's
    /// own broadcasts (`io.to(room).emit` in handlers, whose `SocketRef` is then
    /// `SocketRef<RedisAdapter>`) both reach every instance on the fan-out's Redis.
    pub fn builder_with_redis_adapter(
        fanout: RedisFanout,
    ) -> SocketServerBuilder<Identity, Identity, RedisAdapter> {
        SocketServerBuilder::with_adapter_state(fanout.downgrade()).fanout(fanout)
    }
}

impl<A: Adapter> SocketServerBuilder<Identity, Identity, A> {
    fn with_adapter_state(adapter_state: A::State) -> Self {
        SocketServerBuilder {
            path: DEFAULT_PATH.to_owned(),
            fanout: None,
            adapter_state,
            core: CoreService::builder(),
            errors: Vec::new(),
            inbound: Identity::new(),
            outbound: Identity::new(),
            configure_io: None,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            total_queue_bytes: DEFAULT_TOTAL_QUEUE_BYTES,
            connect_limit: ConnectLimit::default(),
            write_timeout: Some(DEFAULT_WRITE_TIMEOUT),
            namespaces: Vec::new(),
            #[cfg(feature = "admin-ui")]
            admin_ui: None,
        }
    }
}

impl<L, O, A: Adapter> SocketServerBuilder<L, O, A> {
    /// The Socket.IO path (default `/io`); must start with `/`.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Adds an inbound layer. As with `tower::ServiceBuilder`, the first layer added is the
    /// outermost: add the auth layer first so that it gates everything beneath it.
    pub fn layer<T>(self, layer: T) -> SocketServerBuilder<Stack<T, L>, O, A> {
        SocketServerBuilder {
            path: self.path,
            fanout: self.fanout,
            adapter_state: self.adapter_state,
            core: self.core,
            errors: self.errors,
            inbound: Stack::new(layer, self.inbound),
            outbound: self.outbound,
            configure_io: self.configure_io,
            queue_capacity: self.queue_capacity,
            queue_bytes: self.queue_bytes,
            total_queue_bytes: self.total_queue_bytes,
            connect_limit: self.connect_limit,
            write_timeout: self.write_timeout,
            namespaces: self.namespaces,
            #[cfg(feature = "admin-ui")]
            admin_ui: self.admin_ui,
        }
    }

    /// Adds an inbound layer whose constructor checks its configuration
    /// (`AuthTimeoutLayer::new(d)`, `PingLayer::new(d)`, `RoomsLayer::new().limits(..)`...): a
    /// refused one makes [`build`](Self::build) fail with its error, so the chain needs no `?`
    /// in the middle.
    pub fn try_layer<T>(
        mut self,
        layer: Result<T, BuildError>,
    ) -> SocketServerBuilder<Stack<Either<T, Identity>, L>, O, A> {
        let layer = match layer {
            Ok(layer) => Some(layer),
            Err(e) => {
                self.errors.push(e);
                None
            }
        };
        self.layer(tower::util::option_layer(layer))
    }

    /// Delivers through Redis: the bottom of the outbound stack is the fan-out's
    /// [`RedisDelivery`](crate::fanout::RedisDelivery) instead of [`LocalDelivery`], so `send`
    /// publishes, and what every instance (this one included) publishes is delivered to this
    /// server's sockets. See [`RedisFanout`].
    ///
    /// One fan-out per server: a second call (or one after
    /// [`SocketServer::builder_with_redis_adapter`], which sets it) makes `build` fail.
    #[cfg(feature = "fanout")]
    pub fn fanout(mut self, fanout: RedisFanout) -> Self {
        if self.fanout.is_some() {
            self.errors.push(BuildError::FanoutTwice);
        } else {
            self.fanout = Some(fanout);
        }
        self
    }

    /// Adds an outbound layer around the delivery ([`LocalDelivery`], or the fan-out's
    /// [`RedisDelivery`](crate::fanout::RedisDelivery)); first added is outermost.
    pub fn outbound_layer<T>(self, layer: T) -> SocketServerBuilder<L, Stack<T, O>, A> {
        SocketServerBuilder {
            path: self.path,
            fanout: self.fanout,
            adapter_state: self.adapter_state,
            core: self.core,
            errors: self.errors,
            inbound: self.inbound,
            outbound: Stack::new(layer, self.outbound),
            configure_io: self.configure_io,
            queue_capacity: self.queue_capacity,
            queue_bytes: self.queue_bytes,
            total_queue_bytes: self.total_queue_bytes,
            connect_limit: self.connect_limit,
            write_timeout: self.write_timeout,
            namespaces: self.namespaces,
            #[cfg(feature = "admin-ui")]
            admin_ui: self.admin_ui,
        }
    }

    /// Runs `handler` for each client event named `topic` that reaches the core (the seeds'
    /// `on`). An empty, duplicate or reserved topic makes [`build`](Self::build) fail.
    pub fn on<T, H: EventHandler<A, T>>(mut self, topic: &str, handler: H) -> Self {
        self.core = self.core.on(topic, handler);
        self
    }

    /// Gives handlers `value` through the [`State`](crate::socket_core::extract::State) extractor
    /// (one value of each type); the server's [`Outbound`] is always there.
    pub fn with_state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.core = self.core.with_state(value);
        self
    }

    /// Runs `handler` for client events that have no handler of their own.
    pub fn on_fallback<T, H: EventHandler<A, T>>(mut self, handler: H) -> Self {
        self.core = self.core.on_fallback(handler);
        self
    }

    /// Runs `handler` when a socket connects (the seeds' `on({topic: 'connection'})`); see
    /// [`CoreServiceBuilder::on_connect`].
    pub fn on_connect<T, H: EventHandler<A, T>>(mut self, handler: H) -> Self {
        self.core = self.core.on_connect(handler);
        self
    }

    /// Runs `handler` once a socket is authenticated (the seeds' `clientConnectedFn`): after
    /// the client got `authenticated`, before its next event.
    pub fn on_authenticated<T, H: EventHandler<A, T>>(mut self, handler: H) -> Self {
        self.core = self.core.on_authenticated(handler);
        self
    }

    /// Runs `handler` when a socket disconnects; its one argument is the reason, as text.
    pub fn on_disconnect<T, H: EventHandler<A, T>>(mut self, handler: H) -> Self {
        self.core = self.core.on_disconnect(handler);
        self
    }

    /// Adjusts socketioxide's own settings (Engine.IO ping, payload limits, transports...).
    /// The path is set by [`path`](Self::path).
    pub fn configure_io(
        mut self,
        configure: impl FnOnce(SocketIoBuilder) -> SocketIoBuilder + Send + 'static,
    ) -> Self {
        self.configure_io = Some(Box::new(configure));
        self
    }

    /// How many events of one socket may wait while an earlier one is handled (default 256).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// How many namespace CONNECT packets one Engine.IO session may send (default: a burst of
    /// 16, then one every 2 s); past it the session's transport is ended. See
    /// [`ConnectLimit`].
    pub fn connect_limit(mut self, limit: ConnectLimit) -> Self {
        self.connect_limit = limit;
        self
    }

    /// How long a write to a WebSocket client may make no progress before its connection is
    /// cut off (default [`DEFAULT_WRITE_TIMEOUT`]; `None`: never). A client that stops reading
    /// blocks socketioxide's writer, and the engine waits for that writer before it reports
    /// the session closed, even one its own heartbeat closed: without this bound the socket
    /// would stay, tracked and holding its buffer, for as long as the client likes, wherever
    /// the stack is mounted. [`serve`](crate::serve)'s write timeout bounds the connections it
    /// serves the same way; this one holds under `axum::serve` and any other server too.
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// How many bytes of events may wait, per socket (default 2 MB) and for all sockets
    /// together (default 256 MiB); see [`queue_capacity`](Self::queue_capacity).
    pub fn queue_bytes(mut self, per_socket: usize, total: usize) -> Self {
        self.queue_bytes = per_socket;
        self.total_queue_bytes = total;
        self
    }

    /// Serves the namespace `path` (say `/admin`) beside the main namespace `/`: its sockets
    /// go through the same layers (authentication, rooms, limits…) and handlers as those of
    /// `/`, which tell them apart by `socket.ns()` (socketioxide's [`Socket::ns`](socketioxide::socket::Socket::ns)),
    /// and the fan-out carries its broadcasts and requests on its own channels, as the
    /// JavaScript adapter's. Sends reach it with [`OutboundMessage::in_namespace`].
    pub fn namespace(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        match check_namespace(&path) {
            Ok(()) => self.namespaces.push(Namespace::Static(path)),
            Err(e) => self.errors.push(e),
        }
        self
    }

    /// Serves every namespace matching `pattern`, a socketioxide path pattern such as
    /// `/tenant/{id}` (socket.io's `io.of(/regex/)`): each one a client connects to becomes a
    /// namespace of its own, served as [`namespace`](Self::namespace) says.
    pub fn dynamic_namespace(mut self, pattern: impl Into<String>) -> Self {
        let pattern = pattern.into();
        match check_namespace(&pattern) {
            Ok(()) => self.namespaces.push(Namespace::Dynamic(pattern)),
            Err(e) => self.errors.push(e),
        }
        self
    }

    /// Serves the [Socket.IO Admin UI](crate::admin_ui) on its own namespace (`/admin` by
    /// default), outside the layers added with [`layer`](Self::layer): it has its own login.
    /// Every socket of the other namespaces is observed from the top of the stack. A second
    /// call replaces the first.
    #[cfg(feature = "admin-ui")]
    pub fn admin_ui(mut self, config: crate::admin_ui::AdminUi) -> Self {
        self.admin_ui = Some(config);
        self
    }

    /// Checks the configuration and assembles the server.
    pub fn build(self) -> Result<SocketServer<A>, BuildError>
    where
        A: socketioxide_core::adapter::DefinedAdapter,
        L: Layer<CoreService<A>>,
        L::Service: Service<SocketRequest<A>, Response = ()> + Clone + Send + Sync + 'static,
        <L::Service as Service<SocketRequest<A>>>::Error: Into<BoxError>,
        <L::Service as Service<SocketRequest<A>>>::Future: Send + 'static,
        O: Layer<DeliveryService>,
        O::Service: Service<OutboundMessage, Response = (), Error = SendError>
            + Clone
            + Send
            + Sync
            + 'static,
        <O::Service as Service<OutboundMessage>>::Future: Send + 'static,
    {
        if let Some(e) = self.errors.into_iter().next() {
            return Err(e);
        }
        let path_refusal = if !self.path.starts_with('/') {
            Some("it must start with '/'")
        } else if self.path.trim_end_matches('/').is_empty() {
            Some("it must not be '/' alone, which would take every request")
        } else if self.path.contains(['?', '#']) {
            Some("it must hold no '?' or '#'")
        } else {
            None
        };
        if let Some(reason) = path_refusal {
            return Err(BuildError::InvalidPath(self.path, reason));
        }

        // socket.io's default `maxHttpBufferSize` (1e6 bytes) on both transports, where
        // socketioxide allows 100 kB over polling and 64 MiB over WebSocket; and room for
        // bursts in each client's write buffer.
        let mut io_builder = SocketIo::builder()
            .max_payload(DEFAULT_MAX_PAYLOAD)
            .ws_max_message_size(DEFAULT_MAX_PAYLOAD as usize)
            .max_buffer_size(DEFAULT_SOCKET_BUFFER)
            .ws_read_buffer_size(DEFAULT_WS_READ_BUFFER);
        if let Some(configure) = self.configure_io {
            io_builder = configure(io_builder);
        }
        let (layer, io) = io_builder
            .req_path(self.path.clone())
            .with_adapter::<A>(self.adapter_state)
            .build_layer();
        let transports = Transports::new(self.connect_limit, self.write_timeout);
        // One or the other at the bottom; the user's outbound layers wrap whichever it is.
        let delivery: DeliveryService = match &self.fanout {
            Some(fanout) => {
                fanout.attach(io.clone());
                BoxCloneSyncService::new(fanout.delivery())
            }
            None => BoxCloneSyncService::new(LocalDelivery::new(io.clone())),
        };
        #[cfg(feature = "admin-ui")]
        let admin =
            match self.admin_ui {
                Some(config) => {
                    if self.namespaces.iter().any(
                        |n| matches!(n, Namespace::Static(p) if *p == config_namespace(&config)),
                    ) {
                        return Err(BuildError::InvalidAdminUi(format!(
                            "namespace {:?} is served by the application too",
                            config_namespace(&config)
                        )));
                    }
                    Some(crate::admin_ui::AdminHub::install(
                        config,
                        &io,
                        self.fanout.as_ref(),
                        delivery.clone(),
                    )?)
                }
                None => None,
            };
        let outbound = Outbound::new(self.outbound.layer(delivery));
        let registry = ClientRegistry::new();
        let core = self
            .core
            .with_state(outbound.clone())
            .registry(registry.clone())
            .build()?;
        let inbound: InboundService<A> =
            BoxCloneSyncService::new(self.inbound.layer(core).map_err(Into::into));
        // Outermost: it sees every request before any policy does.
        #[cfg(feature = "admin-ui")]
        let inbound: InboundService<A> = match &admin {
            Some((hub, _)) => BoxCloneSyncService::new(
                crate::admin_ui::AdminObserverLayer::new(hub.clone()).layer(inbound),
            ),
            None => inbound,
        };
        let bridge = Bridge::new(inbound)
            .queue_capacity(self.queue_capacity)
            .queue_bytes(self.queue_bytes, self.total_queue_bytes)
            .transports(transports.clone());
        // The sharded fan-out's room channels follow the rooms the stack joins.
        #[cfg(feature = "fanout")]
        let bridge = match &self.fanout {
            Some(fanout) => {
                let fanout = fanout.downgrade();
                bridge.rooms_joined(std::sync::Arc::new(move || {
                    if let Some(fanout) = fanout.upgrade() {
                        fanout.rooms_joined();
                    }
                }))
            }
            None => bridge,
        };
        io.ns("/", bridge.clone()).spawn();
        // With the fan-out, a namespace's sockets are connected once its subscription is in
        // place (a dynamic one's instance is subscribed as its first admitted socket comes),
        // so that nothing sent to them passes them by, and refused when Redis refuses it.
        let fanned_out = |bridge: &Bridge<InboundService<A>, A>| match &self.fanout {
            Some(fanout) => {
                // (Without the `fanout` feature, this arm is never reached.)
                #[cfg_attr(not(feature = "fanout"), allow(unused_variables))]
                let fanout = fanout.downgrade();
                bridge
                    .clone()
                    .namespace_seen(std::sync::Arc::new(move |nsp: &str| {
                        let fanout = fanout.upgrade();
                        let nsp = nsp.to_owned();
                        Box::pin(async move {
                            match fanout {
                                Some(fanout) => fanout.serve_namespace(&nsp).await,
                                None => Ok(()),
                            }
                        })
                    }))
            }
            None => bridge.clone(),
        };
        for namespace in self.namespaces {
            match namespace {
                Namespace::Static(path) => {
                    if let Some(fanout) = &self.fanout {
                        fanout
                            .want_namespace(&path)
                            .map_err(|reason| BuildError::InvalidNamespace(path.clone(), reason))?;
                    }
                    io.ns(path, fanned_out(&bridge)).spawn();
                }
                Namespace::Dynamic(pattern) => {
                    io.dyn_ns(pattern.clone(), fanned_out(&bridge))
                        .map_err(|e| BuildError::InvalidNamespace(pattern, e.to_string()))?;
                }
            }
        }
        Ok(SocketServer {
            io,
            layer: IoLayer::new(layer, &self.path, transports),
            registry,
            outbound,
            fanout: self.fanout,
            path: self.path,
            #[cfg(feature = "admin-ui")]
            admin_tasks: admin.map(|(_, tasks)| std::sync::Arc::new(tasks)),
        })
    }
}

#[cfg(feature = "admin-ui")]
fn config_namespace(config: &crate::admin_ui::AdminUi) -> String {
    config.namespace_path().to_owned()
}

fn check_namespace(path: &str) -> Result<(), BuildError> {
    let refusal = if !path.starts_with('/') {
        Some("it must start with '/'")
    } else if path == "/" {
        Some("'/' is always served")
    } else if path.contains(['?', '#']) {
        Some("it must hold no '?' or '#'")
    } else {
        None
    };
    match refusal {
        Some(reason) => Err(BuildError::InvalidNamespace(path.to_owned(), reason.into())),
        None => Ok(()),
    }
}

/// A running Socket.IO stack: mount it, send through it, inspect and shut it down.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use socketio_stack::layers::{AuthLayer, AuthTimeoutLayer, PingLayer, RoomsLayer};
/// use socketio_stack::{Handshake, OutboundMessage, Session, SocketServer};
///
/// async fn authenticate(hs: Arc<Handshake>) -> Result<bool, std::io::Error> {
///     Ok(hs.auth_field("token") == Some("secret"))
/// }
/// async fn validate(_s: Session, rooms: Vec<String>) -> Result<Vec<String>, std::io::Error> {
///     Ok(rooms.into_iter().filter(|r| r.starts_with("public-")).collect())
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let server = SocketServer::builder()
///     .path("/io")
///     .layer(AuthLayer::new(authenticate))
///     .try_layer(AuthTimeoutLayer::new(Duration::from_secs(10)))
///     .try_layer(PingLayer::new(Duration::from_secs(30)))
///     .layer(RoomsLayer::new().validate(validate))
///     .build()?;
///
/// // Mount beside other routes: `axum::Router::new().route(..).layer(server.layer())`,
/// // or stand alone: `server.service_with_fallback(other_service)`.
/// server.send(OutboundMessage::to("io-default", "hello", serde_json::json!({"n": 1}))).await?;
/// server.shutdown().await;
/// # Ok(()) }
/// ```
pub struct SocketServer<A: Adapter = LocalAdapter> {
    io: SocketIo<A>,
    layer: IoLayer<A>,
    registry: ClientRegistry<A>,
    outbound: Outbound,
    fanout: Option<RedisFanout>,
    path: String,
    /// The Admin UI's tasks, ended with the last handle.
    #[cfg(feature = "admin-ui")]
    admin_tasks: Option<std::sync::Arc<crate::admin_ui::AdminTasks>>,
}

impl<A: Adapter> std::fmt::Debug for SocketServer<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketServer")
            .field("path", &self.path)
            .field("clients", &self.registry.len())
            .finish_non_exhaustive()
    }
}

impl<A: Adapter> Clone for SocketServer<A> {
    fn clone(&self) -> Self {
        Self {
            io: self.io.clone(),
            layer: self.layer.clone(),
            registry: self.registry.clone(),
            outbound: self.outbound.clone(),
            fanout: self.fanout.clone(),
            path: self.path.clone(),
            #[cfg(feature = "admin-ui")]
            admin_tasks: self.admin_tasks.clone(),
        }
    }
}

impl<A: Adapter> SocketServer<A> {
    /// The socketioxide server (the seeds' `getIOServer()`), for what the helper does not
    /// wrap.
    pub fn io(&self) -> &SocketIo<A> {
        &self.io
    }

    /// The Socket.IO path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// A tower layer serving Socket.IO at the path and passing every other request to the
    /// service it wraps: `axum::Router::layer(server.layer())` (the seeds' Node mode), or
    /// in front of the whole router, `server.layer().layer(router)`. The second is lighter on
    /// memory with many idle clients: inside a router, axum keeps a copy of each request's
    /// URI, which holds the connection's read buffer (about 16 KiB) for the socket's life;
    /// see [`IoService`].
    pub fn layer(&self) -> IoLayer<A> {
        self.layer.clone()
    }

    /// A standalone service: Socket.IO at the path, `fallback` for everything else (the seeds'
    /// Bun fetch handler).
    pub fn service_with_fallback<S: Clone>(&self, fallback: S) -> IoService<S, A> {
        self.layer.layer(fallback)
    }

    /// A standalone service answering 404 outside the Socket.IO path.
    pub fn service(&self) -> IoService<NotFound, A> {
        self.layer.layer(NotFound)
    }

    /// All tracked clients (the seeds' `getClients()`).
    pub fn clients(&self) -> Vec<Client<A>> {
        self.registry.all()
    }

    /// The tracked client with this socket id (the seeds' `getClients({id})`).
    pub fn client(&self, id: &str) -> Option<Client<A>> {
        self.registry.get_str(id)
    }

    /// How many clients are tracked.
    pub fn client_count(&self) -> usize {
        self.registry.len()
    }

    /// The outbound handle, to give to code that only sends.
    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }

    /// Sends a message (the seeds' `send()`); see [`Outbound::send`].
    pub async fn send(&self, req: OutboundMessage) -> Result<Delivery, SendError> {
        self.outbound.send(req).await
    }

    /// Sends, then calls `callback`; see [`Outbound::send_then`].
    pub async fn send_then<F: FnOnce() + Send + 'static>(
        &self,
        req: OutboundMessage,
        callback: F,
    ) -> Result<Delivery, SendError> {
        self.outbound.send_then(req, callback).await
    }

    /// Disconnects a client (the seeds' `disconnect()`): its socket is disconnected, whatever
    /// its outgoing buffer holds (see [`Session::disconnect`](crate::Session::disconnect)), and
    /// once it is gone its timers are cleared and it is no longer tracked. Returns whether a
    /// socket with this id was connected here.
    pub fn disconnect(&self, id: &str) -> bool {
        let Ok(sid) = id.parse() else {
            return false;
        };
        // The registry knows the socket whatever its namespace (and no longer does once
        // shutdown has drained it).
        let Some(socket) = self.registry.get(sid).map(|c| c.socket) else {
            return false;
        };
        match socket.extensions.get::<crate::Session>() {
            Some(session) => session.disconnect(&socket),
            None => {
                if let Err(e) = socket.disconnect() {
                    tracing::debug!(sid = %sid, error = %e, "disconnect");
                }
            }
        }
        true
    }

    /// Shuts down in the seeds' order: every client's timers cleared and socket disconnected,
    /// the client map emptied, the Socket.IO server closed, then the Redis connections;
    /// resolves when all are.
    pub async fn shutdown(&self) {
        // No more stats for UIs that are about to go.
        #[cfg(feature = "admin-ui")]
        if let Some(tasks) = &self.admin_tasks {
            tasks.stop();
        }
        for client in self.registry.drain() {
            client.session.clear_timers();
            client.session.disconnect(&client.socket);
        }
        self.io.close().await;
        tracing::info!("socket.io server closed");
        if let Some(fanout) = &self.fanout {
            fanout.shutdown().await;
            tracing::info!("redis fan-out closed");
        }
    }
}

/// The fallback of [`SocketServer::service`]: `404 Not Found` with an empty body.
#[derive(Debug, Clone, Copy, Default)]
pub struct NotFound;

impl<B> Service<http::Request<B>> for NotFound {
    type Response = http::Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: http::Request<B>) -> Self::Future {
        let mut res = http::Response::new(String::new());
        *res.status_mut() = http::StatusCode::NOT_FOUND;
        std::future::ready(Ok(res))
    }
}

impl<L, O, A: Adapter> std::fmt::Debug for SocketServerBuilder<L, O, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketServerBuilder")
            .field("path", &self.path)
            .field("errors", &self.errors)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_layer_configuration_fails_the_build_not_the_chain() {
        use crate::layers::PingLayer;
        let err = SocketServer::builder()
            .try_layer(PingLayer::new(Duration::ZERO))
            .on("chat", async || {})
            .build()
            .unwrap_err();
        assert_eq!(err, BuildError::ZeroDuration("ping interval"));
        assert!(
            SocketServer::builder()
                .try_layer(PingLayer::new(Duration::from_secs(1)))
                .build()
                .is_ok()
        );
    }

    #[test]
    fn refuses_bad_inputs_with_clear_errors() {
        let err = SocketServer::builder().path("io").build().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid Socket.IO path \"io\": it must start with '/'"
        );
        let err = SocketServer::builder()
            .on("", async || {})
            .build()
            .unwrap_err();
        assert_eq!(err, BuildError::EmptyTopic);
        let err = SocketServer::builder()
            .on("chat", async || {})
            .on("chat", async || {})
            .build()
            .unwrap_err();
        assert_eq!(err, BuildError::DuplicateTopic("chat".into()));
        let err = SocketServer::builder()
            .on("disconnect", async || {})
            .build()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot register a handler for topic \"disconnect\": it is reserved by Socket.IO; use on_disconnect"
        );
        for name in ["join", "authenticate", "connection"] {
            assert!(
                SocketServer::builder()
                    .on(name, async || {})
                    .build()
                    .is_ok(),
                "{name}"
            );
        }
        for (path, reason) in [
            (
                "/",
                "it must not be '/' alone, which would take every request",
            ),
            (
                "//",
                "it must not be '/' alone, which would take every request",
            ),
            ("/io?x=1", "it must hold no '?' or '#'"),
        ] {
            let err = SocketServer::builder().path(path).build().unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("invalid Socket.IO path {path:?}: {reason}")
            );
        }
    }
}

/// Without the `fanout` feature, a server has no fan-out: this stand-in has no value, so every
/// branch that would use one is unreachable, and the builder's code stays one for both.
#[cfg(not(feature = "fanout"))]
mod no_fanout {
    use socketioxide::SocketIo;
    use socketioxide::adapter::Adapter;

    use crate::outbound::LocalDelivery;

    /// No fan-out.
    #[derive(Clone)]
    pub(crate) enum RedisFanout {}

    impl RedisFanout {
        pub(crate) fn attach<A: Adapter>(&self, _io: SocketIo<A>) {
            match *self {}
        }

        pub(crate) fn delivery(&self) -> LocalDelivery {
            match *self {}
        }

        pub(crate) fn downgrade(&self) -> Self {
            match *self {}
        }

        pub(crate) fn upgrade(&self) -> Option<Self> {
            match *self {}
        }

        pub(crate) fn want_namespace(&self, _nsp: &str) -> Result<bool, String> {
            match *self {}
        }

        pub(crate) async fn serve_namespace(&self, _nsp: &str) -> Result<(), String> {
            match *self {}
        }

        pub(crate) async fn shutdown(&self) {
            match *self {}
        }
    }
}
