//! The fan-out: `send` publishes on Redis (through [`RedisDelivery`]), and every instance, the
//! sender included, delivers what it receives from Redis to its own sockets.
//!
//! ```no_run
//! use socketio_stack::SocketServer;
//! use socketio_stack::fanout::RedisFanout;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Fails, and the server does not start, when Redis is unreachable or refuses the login.
//! let fanout = RedisFanout::connect("redis://127.0.0.1:6379").await?;
//! let server = SocketServer::builder().fanout(fanout).build()?;
//! // `server.send(..)` now reaches the clients of every instance on this Redis.
//! # Ok(()) }
//! ```
//!
//! Messages are published as `@socket.io/redis-emitter` publishes them (uid `emitter`), so
//! Node servers using `@socket.io/redis-adapter` on the same Redis deliver them too, and this
//! instance delivers what Node emitters and adapters publish.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use crate::args::{Arg, Args};
use crate::fanout::connect_error::{Cause, FanoutError, check_reachable};
use crate::fanout::delivery::{Publishing, RedisDelivery};
use crate::fanout::emitter::Emitter;
use crate::fanout::fleet_wire::{self, AckBroadcast, FleetRequest, ServerSideEmit};
use crate::fanout::local_server::{LocalAck, LocalServer};
use crate::fanout::options::{KeepAlive, RedisOptions};
use crate::fanout::pending_requests::{Awaited, PendingRequests};
use crate::fanout::sharded_connections::{self, ShardedPublisher, ShardedSubscriber, Topology};
use crate::fanout::sharded_messages;
use crate::fanout::sharded_wire::Body as ShardedBody;
use crate::fanout::wire::{self, Broadcast, Query, Request, WireError};
use crate::plumbing::{BoxFuture, LogThrottle, catch_panic_call};
use crate::telemetry::{self, FanoutResult, RedisOp};

mod sharded_subscription;

/// The Redis connections of one instance, the seeds' three clients: the emitter's (pooled;
/// what `send` publishes), the adapter's publishing side (pooled; what the [`RedisAdapter`]
/// publishes) and the adapter's subscription to the broadcast and request channels. Cheap to
/// clone.
///
/// [`RedisAdapter`]: crate::fanout::RedisAdapter
#[derive(Clone)]
pub struct RedisFanout {
    inner: Arc<Inner>,
}

/// A handler of server-side emits (see [`RedisFanout::on_server_side_emit`]).
type ServerSideHandler = Arc<dyn Fn(Args) -> BoxFuture<Arg> + Send + Sync>;

struct Inner {
    /// This instance's id on the wire (what the JavaScript adapter calls its uid).
    uid: String,
    emitter: Emitter,
    /// The adapter's publishing connections.
    adapter_pub: Emitter,
    /// Whether this instance's subscription is up: while it is down, the instance would not
    /// deliver its own sends, so they fail instead of vanishing.
    subscribed: Arc<AtomicBool>,
    key: String,
    /// This instance's sockets (set by `attach`).
    local: OnceLock<Arc<dyn LocalServer>>,
    /// The questions this instance asked the fleet, awaiting answers.
    pending: PendingRequests,
    /// By namespace and event.
    server_side: RwLock<HashMap<(String, String), ServerSideHandler>>,
    /// The namespaces whose channels the subscription covers (`/` and those served here).
    namespaces: Mutex<BTreeSet<String>>,
    /// The namespaces whose subscription Redis refused (kept, so that their sockets are
    /// refused without asking Redis again).
    refused: Mutex<BTreeSet<String>>,
    /// Those of `namespaces` whose subscription is in place.
    active: Mutex<BTreeSet<String>>,
    /// Woken when `active` changes.
    active_changed: tokio::sync::Notify,
    /// How long a new namespace's first socket waits for its subscription.
    subscribe_wait: Duration,
    /// Tells the subscription of a namespace to add.
    new_namespaces: mpsc::UnboundedSender<String>,
    /// The sharded wire's publisher, when this instance speaks it (the classic wire's
    /// otherwise).
    sharded: Option<ShardedPublisher>,
    /// Woken when this instance's rooms may have changed (the sharded wire's dynamic modes
    /// subscribe a channel per room).
    rooms_changed: Arc<tokio::sync::Notify>,
    /// A socket joined rooms since the last sweep (see `rooms_joined`).
    rooms_joined: AtomicBool,
    /// The channels the sharded subscription holds (room channels among them), as of its
    /// last sweep.
    room_channels: Mutex<std::collections::HashSet<String>>,
    stop: watch::Sender<bool>,
    subscriber: Mutex<Option<JoinHandle<()>>>,
    refusals: Refusals,
    /// Bounds the other servers' requests answered at once (acknowledged broadcasts,
    /// server-side emits): each holds a task until it is done.
    in_flight: Arc<Semaphore>,
}

/// The most requests of other servers answered at once; past it, new ones are refused
/// (logged, throttled): whoever can publish on this Redis could otherwise pile up tasks.
pub const MAX_REQUESTS_IN_FLIGHT: usize = 1024;

/// The most namespaces one instance subscribes (`/`, the static ones, and each instance of a
/// dynamic one a client was admitted to: socketioxide keeps them all). Past it, a socket of
/// a new namespace is refused (`connect_error`), and so is a server built with more.
pub const MAX_NAMESPACES: usize = 10_000;

/// The longest another server's acknowledged broadcast is awaited here, whatever its
/// `timeout` says (a socket's pending acknowledgement is kept that long).
pub const MAX_ACK_TIMEOUT: Duration = Duration::from_secs(600);

/// The longest a server-side emit's handler may run; past it, it answers nothing (its asker
/// gave up long before: the JavaScript adapter's default is 5 s).
pub const SERVER_SIDE_HANDLER_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a socket of a namespace Redis refused to subscribe is refused.
const REFUSED_NAMESPACE: &str = "Redis refused to carry this namespace";

fn too_many() -> WireError {
    WireError(format!(
        "{MAX_REQUESTS_IN_FLIGHT} requests of other servers are being answered already"
    ))
}

/// Logs the messages refused from Redis (the first ten, then at most once a second, with how
/// many so far): whoever can publish on this Redis could otherwise flood the log.
#[derive(Default)]
struct Refusals(LogThrottle);

impl Refusals {
    fn report(&self, channel: &str, bytes: usize, what: &str, error: &WireError) {
        self.report_as(FanoutResult::Malformed, channel, bytes, what, error);
    }

    /// [`report`](Self::report), counted as `result` (a bound's refusal is not garbage).
    fn report_as(
        &self,
        result: FanoutResult,
        channel: &str,
        bytes: usize,
        what: &str,
        error: &WireError,
    ) {
        telemetry::fanout_received(result);
        if let Some(refused) = self.0.hit(1) {
            tracing::warn!(channel, bytes, refused, error = %error, "ignored {what}");
        }
    }
}

impl RedisFanout {
    /// Connects to the Redis at `url` (`redis://[user:password@]host:port[/db]`, or
    /// `rediss://…` for TLS) and subscribes to the broadcast channels; fails with a clear
    /// error within 5 s when Redis is unreachable or refuses the credentials.
    pub async fn connect(url: &str) -> Result<Self, FanoutError> {
        Self::connect_with_options(RedisOptions::new(url)).await
    }

    /// [`connect`](Self::connect) with a channel prefix and a timeout.
    pub async fn connect_with(
        url: &str,
        key: &str,
        timeout: Duration,
    ) -> Result<Self, FanoutError> {
        Self::connect_with_options(RedisOptions::new(url).key(key).connect_timeout(timeout)).await
    }

    /// [`connect`](Self::connect) with every setting: certificates for a managed Redis, the
    /// subscription's keepalive (a half-open connection is noticed within 10 s by default)
    /// and the rest of [`RedisOptions`].
    pub async fn connect_with_options(options: RedisOptions) -> Result<Self, FanoutError> {
        let keepalive = options.checked_keepalive()?;
        let (key, timeout) = (options.channel_key(), options.timeout());
        let client = options.client()?;
        let emitter = Emitter::connect_with_options(&options).await?;
        let adapter_pub = Emitter::connect_with_options(&options).await?;
        let namespaces = BTreeSet::from(["/".to_owned()]);
        let (uid, sharded, subscription) = match options.sharded_mode() {
            None => {
                let pubsub = subscribe(&client, key, &namespaces, timeout).await?;
                (instance_uid(), None, Subscription::Classic(client, pubsub))
            }
            Some(mode) => {
                let topology = sharded_connections::topology(&client, timeout).await?;
                let publisher =
                    ShardedPublisher::connect(&options, mode, topology, adapter_pub.clone())
                        .await?;
                let uid = sharded_uid();
                let subscriber =
                    sharded_subscription::open(&options, topology, &uid, &namespaces).await?;
                (
                    uid,
                    Some(publisher),
                    Subscription::Sharded(topology, subscriber),
                )
            }
        };
        let (new_namespaces, added) = mpsc::unbounded_channel();
        let (stop, stopped) = watch::channel(false);
        let inner = Arc::new(Inner {
            uid,
            emitter,
            adapter_pub,
            subscribed: Arc::new(AtomicBool::new(true)),
            key: key.to_owned(),
            local: OnceLock::new(),
            pending: PendingRequests::default(),
            server_side: RwLock::default(),
            refused: Mutex::default(),
            active: Mutex::new(namespaces.clone()),
            active_changed: tokio::sync::Notify::new(),
            subscribe_wait: keepalive.timeout,
            namespaces: Mutex::new(namespaces),
            new_namespaces,
            sharded,
            rooms_changed: Arc::default(),
            rooms_joined: AtomicBool::new(false),
            room_channels: Mutex::default(),
            stop,
            subscriber: Mutex::new(None),
            refusals: Refusals::default(),
            in_flight: Arc::new(Semaphore::new(MAX_REQUESTS_IN_FLIGHT)),
        });
        let task = match subscription {
            Subscription::Classic(client, pubsub) => tokio::spawn(receive(
                Arc::downgrade(&inner),
                client,
                pubsub,
                stopped,
                timeout,
                keepalive,
                added,
            )),
            Subscription::Sharded(topology, subscriber) => {
                tokio::spawn(sharded_subscription::receive(
                    Arc::downgrade(&inner),
                    options.clone(),
                    topology,
                    subscriber,
                    stopped,
                    keepalive,
                    added,
                ))
            }
        };
        *inner.subscriber.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(Self { inner })
    }

    /// The bottom of the outbound stack in place of [`LocalDelivery`]: each send is
    /// published, and delivered by every instance that receives it (the builder's `fanout()`
    /// puts it there).
    ///
    /// [`LocalDelivery`]: crate::outbound::LocalDelivery
    pub fn delivery(&self) -> RedisDelivery {
        let publishing = match &self.inner.sharded {
            Some(publisher) => {
                Publishing::Sharded(publisher.clone(), RoomCheck(Arc::downgrade(&self.inner)))
            }
            None => Publishing::Classic(self.inner.emitter.clone()),
        };
        RedisDelivery::new(publishing, self.inner.subscribed.clone())
    }

    /// Whether this instance speaks the sharded adapter's wire
    /// ([`RedisOptions::sharded`]).
    pub fn is_sharded(&self) -> bool {
        self.inner.sharded.is_some()
    }

    /// An emitter publishing on the same Redis, on the classic channels (which a sharded
    /// fleet does not hear: see [`RedisOptions::sharded`]).
    pub fn emitter(&self) -> Emitter {
        self.inner.emitter.clone()
    }

    /// Delivers what comes from Redis to the sockets of `io` (the builder does it; the first
    /// call wins). Deliveries are local-only broadcasts, so an adapter never re-publishes them.
    pub fn attach<A: Adapter>(&self, io: SocketIo<A>) {
        if self.inner.local.set(Arc::new(io)).is_err() {
            tracing::warn!("fan-out already attached to a Socket.IO server");
        }
    }

    /// This instance's uid on the wire.
    pub fn uid(&self) -> &str {
        &self.inner.uid
    }

    /// Publishes a broadcast on the adapter's connections (the adapter's path; `send` goes
    /// through [`RedisDelivery`] and the emitter's).
    pub async fn publish(&self, broadcast: &Broadcast) -> Result<u64, FanoutError> {
        match &self.inner.sharded {
            Some(publisher) => {
                broadcast
                    .check_publishable()
                    .map_err(FanoutError::Unpublishable)?;
                let message = sharded_messages::broadcast(&self.inner.uid, broadcast);
                Ok(publisher.publish(&message).await?.0)
            }
            None => self.inner.adapter_pub.publish(broadcast).await,
        }
    }

    /// Publishes a request (remote join, leave, disconnect) for namespace `/`.
    pub async fn publish_request(&self, request: &Request) -> Result<u64, FanoutError> {
        self.publish_request_in("/", request).await
    }

    /// Publishes a request for the sockets of namespace `nsp`.
    pub async fn publish_request_in(
        &self,
        nsp: &str,
        request: &Request,
    ) -> Result<u64, FanoutError> {
        let Some(publisher) = &self.inner.sharded else {
            return self
                .inner
                .adapter_pub
                .publish_request_in(nsp, request)
                .await;
        };
        request
            .check_publishable()
            .map_err(FanoutError::Unpublishable)?;
        let message = sharded_messages::request_message(&self.inner.uid, nsp, request);
        Ok(publisher.publish(&message).await?.0)
    }

    /// Handles the server-side emits of `event` from the other servers of the fleet (Node's
    /// `io.serverSideEmit(event, ...args)`, ours from [`Fleet::server_side_emit`]): `handler`
    /// gets their arguments, and what it returns answers an emit that awaits answers
    /// (ignored otherwise). One handler per event; a later one replaces it. A handler that
    /// panics, or takes longer than [`SERVER_SIDE_HANDLER_TIMEOUT`], answers nothing (the
    /// asker times out) and is logged. For namespace `/` (socket.io's `io.on(event)`); see
    /// [`on_server_side_emit_in`](Self::on_server_side_emit_in) for the others.
    ///
    /// [`Fleet::server_side_emit`]: crate::fanout::Fleet::server_side_emit
    pub fn on_server_side_emit<F, Fut>(&self, event: &str, handler: F)
    where
        F: Fn(Args) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Arg> + Send + 'static,
    {
        self.on_server_side_emit_in("/", event, handler);
    }

    /// [`on_server_side_emit`](Self::on_server_side_emit) for the server-side emits of
    /// namespace `nsp` (socket.io's `io.of(nsp).on(event)`).
    pub fn on_server_side_emit_in<F, Fut>(&self, nsp: &str, event: &str, handler: F)
    where
        F: Fn(Args) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Arg> + Send + 'static,
    {
        let handler: ServerSideHandler = Arc::new(move |args| Box::pin(handler(args)));
        self.inner
            .server_side
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert((nsp.to_owned(), event.to_owned()), handler);
    }

    /// Covers namespace `nsp` too, its broadcasts, requests and answers, from the moment the
    /// subscription has taken it (and after every reconnection); `Ok(true)` when it is new.
    /// Refused past [`MAX_NAMESPACES`].
    pub(crate) fn want_namespace(&self, nsp: &str) -> Result<bool, String> {
        if self
            .inner
            .refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(nsp)
        {
            return Err(REFUSED_NAMESPACE.to_owned());
        }
        let mut namespaces = self.inner.lock_namespaces();
        if namespaces.contains(nsp) {
            return Ok(false);
        }
        if namespaces.len() >= MAX_NAMESPACES {
            return Err(format!(
                "this server fans out {MAX_NAMESPACES} namespaces already"
            ));
        }
        namespaces.insert(nsp.to_owned());
        self.inner.new_namespaces.send(nsp.to_owned()).ok();
        Ok(true)
    }

    /// [`want_namespace`](Self::want_namespace), then waits (at most the keepalive's
    /// timeout) until the subscription covers it: a socket of `nsp` connected before would
    /// miss what is sent to it meanwhile. An error past [`MAX_NAMESPACES`].
    pub(crate) async fn serve_namespace(&self, nsp: &str) -> Result<(), String> {
        self.want_namespace(nsp)?;
        let deadline = tokio::time::Instant::now() + self.inner.subscribe_wait;
        loop {
            let changed = self.inner.active_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.inner.lock_active().contains(nsp) {
                return Ok(());
            }
            let wanted = self.inner.lock_namespaces().contains(nsp);
            if !wanted {
                return Err(REFUSED_NAMESPACE.to_owned());
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                // Redis is slow or down: the socket may in; sends fail while the subscription
                // is down anyway.
                tracing::warn!(nsp, "namespace not subscribed in time; serving it anyway");
                return Ok(());
            }
        }
    }

    /// This instance's sockets, once a server is attached.
    pub(crate) fn local_server(&self) -> Option<Arc<dyn LocalServer>> {
        self.inner.local.get().cloned()
    }

    /// How many servers of the fleet serve namespace `nsp` (the subscribers of its request
    /// channel, as the JavaScript adapter counts them), this one included when it does.
    pub(crate) async fn server_count(&self, nsp: &str) -> Result<usize, FanoutError> {
        let n = match &self.inner.sharded {
            Some(publisher) => publisher.server_count(nsp).await?,
            None => {
                let channel = wire::request_channel(&self.inner.key, nsp);
                self.inner.adapter_pub.subscribers(channel).await?
            }
        };
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// How many other servers serve `nsp`: those a question in `nsp` awaits answers from.
    pub(crate) async fn other_servers(&self, nsp: &str) -> Result<usize, FanoutError> {
        let all = self.server_count(nsp).await?;
        let here = self.inner.lock_active().contains(nsp);
        Ok(all.saturating_sub(usize::from(here)))
    }

    /// A new question to the fleet, whose answers come to the returned handle.
    pub(crate) fn register_request(&self) -> Awaited {
        self.inner.pending.register(&self.inner.uid)
    }

    /// Publishes a question (or a server-side emit) to the other servers of `nsp`.
    pub(crate) async fn publish_question(
        &self,
        nsp: &str,
        question: Question,
    ) -> Result<u64, FanoutError> {
        let uid = self.inner.uid.as_str();
        let Some(publisher) = &self.inner.sharded else {
            let message = match question {
                Question::Query(q) => fleet_wire::encode_query(uid, &q),
                Question::ServerSideEmit(e) => fleet_wire::encode_server_side_emit(&e),
                Question::AckBroadcast(b) => fleet_wire::encode_ack_broadcast(&b),
            };
            let channel = wire::request_channel(&self.inner.key, nsp);
            return self.inner.adapter_pub.publish_raw(channel, message).await;
        };
        let message = match question {
            Question::Query(q) => sharded_messages::query(uid, nsp, q),
            Question::ServerSideEmit(e) => sharded_messages::server_side_emit(uid, nsp, e),
            Question::AckBroadcast(b) => sharded_messages::ack_broadcast(uid, nsp, b),
        };
        Ok(publisher.publish(&message).await?.0)
    }

    /// This instance's rooms may have changed (a remote join, a join through the adapter):
    /// the sharded wire's dynamic modes subscribe their channels now rather than at the next
    /// sweep.
    pub(crate) fn rooms_may_have_changed(&self) {
        if self.inner.sharded.is_some() {
            self.inner.rooms_changed.notify_one();
        }
    }

    /// A socket here joined rooms through the stack: the dynamic modes compare their room
    /// channels at the next sweep, not only at the fallback one. (Not at once: every
    /// authentication joins the default rooms, and a sweep lists every room.)
    pub(crate) fn rooms_joined(&self) {
        if self.inner.sharded.is_some() {
            self.inner.rooms_joined.store(true, Ordering::Release);
        }
    }

    /// Stops the subscription and closes the connections (publishing fails from then on);
    /// resolves once the subscription has ended.
    pub async fn shutdown(&self) {
        self.inner.emitter.close();
        self.inner.adapter_pub.close();
        if let Some(publisher) = &self.inner.sharded {
            publisher.close();
        }
        self.inner.stop.send_replace(true);
        let task = self
            .inner
            .subscriber
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            task.await.ok();
        }
    }
}

/// Tells a send on the sharded wire whether a room's own channel reaches this instance (see
/// [`sharded_subscription`]); weak, as the delivery is held by the server the fan-out
/// delivers into.
#[derive(Clone)]
pub(crate) struct RoomCheck(std::sync::Weak<Inner>);

impl RoomCheck {
    pub(crate) fn room_channel_reaches_us(&self, nsp: &str, room: &str) -> bool {
        self.0
            .upgrade()
            .is_none_or(|inner| inner.room_channel_reaches_us(nsp, room))
    }
}

/// A weak handle to a [`RedisFanout`] (what the adapter keeps).
#[derive(Clone)]
pub struct WeakFanout(std::sync::Weak<Inner>);

impl WeakFanout {
    /// The fan-out, while it is alive.
    pub fn upgrade(&self) -> Option<RedisFanout> {
        self.0.upgrade().map(|inner| RedisFanout { inner })
    }
}

impl RedisFanout {
    /// A handle that does not keep the fan-out alive.
    pub fn downgrade(&self) -> WeakFanout {
        WeakFanout(Arc::downgrade(&self.inner))
    }
}

impl std::fmt::Debug for RedisFanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisFanout")
            .field("key", &self.inner.key)
            .finish_non_exhaustive()
    }
}

/// What this instance answers to another server's acknowledged broadcast or server-side emit.
enum Reply {
    /// How many of its sockets the broadcast reached.
    ClientCount(u64),
    /// One socket's acknowledgement.
    Ack(Arg),
    /// The handler's answer.
    ServerSide(Arg),
}

/// What this instance asks of (or emits to) the other servers of a namespace.
pub(crate) enum Question {
    /// Its sockets, socket ids or rooms.
    Query(Query),
    ServerSideEmit(ServerSideEmit),
    AckBroadcast(AckBroadcast),
}

/// The first subscription of an instance, by wire.
enum Subscription {
    Classic(redis::Client, redis::aio::PubSub),
    Sharded(Topology, ShardedSubscriber),
}

/// Subscribes to the broadcasts, the requests and the answers of each of `namespaces`.
async fn subscribe(
    client: &redis::Client,
    key: &str,
    namespaces: &BTreeSet<String>,
    timeout: Duration,
) -> Result<redis::aio::PubSub, FanoutError> {
    check_reachable(client, timeout).await?;
    let open = async {
        let mut pubsub = client.get_async_pubsub().await?;
        // Every namespace's answers, those this instance asks in namespaces it does not serve
        // included (a pattern: the JavaScript adapter counts servers by the subscribers of
        // request channels only).
        // One command for each kind, however many namespaces: a reconnection subscribes them
        // all within its timeout.
        let (mut patterns, channels): (Vec<String>, Vec<String>) = namespaces
            .iter()
            .map(|nsp| namespace_channels(key, nsp))
            .unzip();
        patterns.push(response_pattern(key));
        pubsub.psubscribe(&patterns).await?;
        pubsub.subscribe(&channels).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    match tokio::time::timeout(timeout, open).await {
        Ok(Ok(pubsub)) => Ok(pubsub),
        Ok(Err(e)) => Err(FanoutError::connecting(e)),
        Err(_) => Err(FanoutError::Unreachable(Cause::timed_out(
            "subscription",
            timeout,
        ))),
    }
}

/// What one namespace is subscribed to: the pattern of its broadcasts and its request
/// channel.
fn namespace_channels(key: &str, nsp: &str) -> (String, String) {
    (wire::pattern(key, nsp), wire::request_channel(key, nsp))
}

/// The pattern of every response channel: the shared one of each namespace, and each
/// server's own (which JavaScript adapters answer on with `publishOnSpecificResponseChannel`).
fn response_pattern(key: &str) -> String {
    format!("{}-response#*", wire::glob_literal(key))
}

/// Resolves once the fan-out is shut down (and yields nothing that is not `Send`).
async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// The subscription loop: decodes each message and delivers it locally; when the connection
/// drops, or goes silent (see [`keep_alive`]), resubscribes with a growing delay (100 ms to
/// 2 s) until Redis is back.
async fn receive(
    inner: std::sync::Weak<Inner>,
    client: redis::Client,
    first: redis::aio::PubSub,
    mut stopped: watch::Receiver<bool>,
    timeout: Duration,
    keepalive: KeepAlive,
    mut added: mpsc::UnboundedReceiver<String>,
) {
    let mut pubsub = Some(first);
    let mut delay = Duration::from_millis(100);
    loop {
        let Some(current) = pubsub.take() else {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = until_stopped(&mut stopped) => return,
            }
            let Some(strong) = inner.upgrade() else {
                return;
            };
            let key = strong.key.clone();
            // Namespaces added from now on come through `added` as well (subscribing twice
            // is harmless).
            let namespaces = strong.lock_namespaces().clone();
            drop(strong);
            let attempt = tokio::select! {
                attempt = subscribe(&client, &key, &namespaces, timeout) => attempt,
                () = until_stopped(&mut stopped) => return,
            };
            match attempt {
                Ok(p) => {
                    tracing::info!("Redis subscription restored");
                    telemetry::redis_subscription_reconnected();
                    if let Some(inner) = inner.upgrade() {
                        inner.subscribed.store(true, Ordering::Release);
                        *inner.lock_active() = namespaces;
                        inner.active_changed.notify_waiters();
                    }
                    pubsub = Some(p);
                    delay = Duration::from_millis(100);
                }
                Err(e) => {
                    telemetry::redis_error(RedisOp::Subscribe);
                    tracing::warn!(error = %e, "Redis subscription still down");
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
            continue;
        };
        let (sink, mut messages) = current.split();
        let silent = keep_alive(sink, keepalive, &mut added, inner.clone());
        tokio::pin!(silent);
        loop {
            tokio::select! {
                message = messages.next() => match message {
                    Some(message) => {
                        let Some(inner) = inner.upgrade() else { return };
                        inner.deliver(message.get_channel_name(), message.get_payload_bytes()).await;
                    }
                    None => {
                        telemetry::redis_error(RedisOp::Subscribe);
                        tracing::warn!("Redis subscription lost; reconnecting");
                        if let Some(inner) = inner.upgrade() {
                            inner.subscribed.store(false, Ordering::Release);
                        }
                        break;
                    }
                },
                cause = &mut silent => {
                    telemetry::redis_error(RedisOp::Subscribe);
                    tracing::warn!(cause = %cause, "Redis subscription unresponsive; reconnecting");
                    if let Some(inner) = inner.upgrade() {
                        inner.subscribed.store(false, Ordering::Release);
                    }
                    // Dropping the stream closes the connection, so Redis drops the
                    // subscription too once it notices.
                    break;
                }
                () = until_stopped(&mut stopped) => return,
            }
        }
    }
}

/// Keeps the subscription's connection: subscribes the namespaces that come through `added`,
/// and PINGs it every `interval`. Resolves, with why, once a PING goes unanswered for
/// `timeout` or a command fails: a connection that Redis no longer answers while TCP keeps
/// it open (a half-open connection) would otherwise look subscribed for good, delivering
/// nothing. So it is noticed within `interval + timeout` of going silent.
async fn keep_alive(
    mut sink: redis::aio::PubSubSink,
    keepalive: KeepAlive,
    added: &mut mpsc::UnboundedReceiver<String>,
    inner: std::sync::Weak<Inner>,
) -> Cause {
    let Some(key) = inner.upgrade().map(|i| i.key.clone()) else {
        return Cause::timed_out("the fan-out, dropped", Duration::ZERO);
    };
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + keepalive.interval,
        keepalive.interval,
    );
    loop {
        tokio::select! {
            _ = ping.tick() => {
                // In subscribed mode Redis answers `["pong", ""]` (RESP2); any answer will do.
                match tokio::time::timeout(keepalive.timeout, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Cause::of(e),
                    Err(_) => return Cause::timed_out("answer to PING", keepalive.timeout),
                }
            }
            Some(nsp) = added.recv() => {
                let (pattern, channel) = namespace_channels(&key, &nsp);
                let subscribing = async {
                    sink.psubscribe(pattern).await?;
                    sink.subscribe(channel).await
                };
                match tokio::time::timeout(keepalive.timeout, subscribing).await {
                    Ok(Ok(())) => {
                        tracing::debug!(nsp, "namespace subscribed");
                        if let Some(inner) = inner.upgrade() {
                            inner.lock_active().insert(nsp);
                            inner.active_changed.notify_waiters();
                        }
                    }
                    // Redis answered, and refused (an ACL user without this namespace's
                    // channels): this namespace is not served, the others go on.
                    Ok(Err(e)) if !e.is_io_error() && !e.is_connection_dropped() => {
                        tracing::error!(nsp, error = %e, "Redis refused the subscription of a namespace; its sockets are refused");
                        // Its pattern may have been taken before its channel was refused.
                        let (pattern, _) = namespace_channels(&key, &nsp);
                        let leaving = sink.punsubscribe(pattern);
                        tokio::time::timeout(keepalive.timeout, leaving).await.ok();
                        if let Some(inner) = inner.upgrade() {
                            inner.refuse_namespace(nsp);
                        }
                    }
                    // The connection failed: the reconnection subscribes it with the others.
                    Ok(Err(e)) => return Cause::of(e),
                    Err(_) => return Cause::timed_out("subscription of a namespace", keepalive.timeout),
                }
            }
        }
    }
}

impl Inner {
    /// Redis refused to subscribe `nsp`: its sockets are refused from now on (remembered, up
    /// to [`MAX_NAMESPACES`]), and those waiting for it are told.
    fn refuse_namespace(&self, nsp: String) {
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        self.lock_namespaces().remove(&nsp);
        if refused.len() < MAX_NAMESPACES {
            refused.insert(nsp);
        }
        drop(refused);
        self.active_changed.notify_waiters();
    }

    fn lock_room_channels(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.room_channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_active(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_namespaces(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.namespaces.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs the answer to another server's request `what` (that came on `channel`, `bytes`
    /// long) in a task of its own, within [`MAX_REQUESTS_IN_FLIGHT`]; when there are that
    /// many already, it is refused (logged, throttled). Counted either way.
    fn answer_bounded(
        &self,
        answering: impl Future<Output = ()> + Send + 'static,
        (channel, bytes, what): (&str, usize, &str),
    ) {
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            let e = too_many();
            return self
                .refusals
                .report_as(FanoutResult::Refused, channel, bytes, what, &e);
        };
        telemetry::fanout_received(FanoutResult::Delivered);
        tokio::spawn(async move {
            answering.await;
            drop(permit);
        });
    }

    /// Handles one message from Redis: a broadcast is delivered to the local sockets, a
    /// request applied or answered, an answer handed to the question awaiting it. Garbage is
    /// ignored (and logged, throttled), and this instance's own broadcasts and requests
    /// (applied when made) are skipped.
    async fn deliver(self: &Arc<Self>, channel: &str, payload: &[u8]) {
        let key = self.key.as_str();
        if channel
            .strip_prefix(key)
            .is_some_and(|c| c.starts_with("-response#"))
        {
            // Our request ids start with our uid: answers to other servers' questions (which
            // come on the same channels) are skipped without decoding them.
            if !payload
                .windows(self.uid.len())
                .any(|w| w == self.uid.as_bytes())
            {
                telemetry::fanout_received(FanoutResult::OtherServer);
                return;
            }
            match fleet_wire::decode_response(payload) {
                Ok(response) => {
                    telemetry::fanout_received(FanoutResult::Delivered);
                    self.pending.answer(response);
                }
                Err(e) => self
                    .refusals
                    .report(channel, payload.len(), "a malformed answer", &e),
            }
            return;
        }
        if let Some(nsp) = channel
            .strip_prefix(key)
            .and_then(|c| c.strip_prefix("-request#"))
            .and_then(|c| c.strip_suffix('#'))
        {
            self.on_request(nsp, channel, payload).await;
            return;
        }
        let broadcast = match wire::decode(payload) {
            Ok(b) => b,
            Err(e) => {
                self.refusals.report(
                    channel,
                    payload.len(),
                    "a message that is not a broadcast",
                    &e,
                );
                return;
            }
        };
        // As the JavaScript adapter: a namespace's broadcasts come on its own channels only.
        let own_channel = channel
            .strip_prefix(key)
            .and_then(|c| c.strip_prefix('#'))
            .and_then(|c| c.strip_prefix(broadcast.nsp.as_str()))
            .is_some_and(|c| c.starts_with('#'));
        if broadcast.uid == self.uid {
            return telemetry::fanout_received(FanoutResult::Own);
        }
        if !own_channel {
            return telemetry::fanout_received(FanoutResult::OtherNamespace);
        }
        telemetry::fanout_received(FanoutResult::Delivered);
        if let Some(local) = self.local.get() {
            local.deliver(broadcast).await;
        }
    }

    async fn on_request(self: &Arc<Self>, nsp: &str, channel: &str, payload: &[u8]) {
        let report = |what: &str, e: &WireError| {
            self.refusals.report(channel, payload.len(), what, e);
        };
        let own = || telemetry::fanout_received(FanoutResult::Own);
        let taken = || telemetry::fanout_received(FanoutResult::Delivered);
        match fleet_wire::decode_fleet_request(payload) {
            Ok(Some(FleetRequest::AckBroadcast(mut b))) if b.uid != self.uid => {
                // For the namespace of the channel, as the JavaScript adapter reads it.
                nsp.clone_into(&mut b.nsp);
                // Without a timeout the asker waits for nothing (JavaScript's `setTimeout` of
                // `undefined` fires at once): socketioxide's default ack timeout then.
                b.timeout = b.timeout.map(|t| t.min(MAX_ACK_TIMEOUT));
                // Answered in its own task: acknowledgements take up to the asker's timeout.
                let what = (channel, payload.len(), "an acknowledged broadcast");
                return self.answer_bounded(self.clone().answer_ack_broadcast(b), what);
            }
            Ok(Some(FleetRequest::ServerSideEmit(e))) if e.uid != self.uid => {
                let what = (channel, payload.len(), "a server-side emit");
                return self
                    .answer_bounded(self.clone().on_server_side_emit(nsp.to_owned(), e), what);
            }
            Ok(Some(_)) => return own(),
            Ok(None) => {}
            Err(e) => return report("a malformed request", &e),
        }
        match wire::decode_request(payload) {
            Ok(Some(request)) if request.uid.as_deref() != Some(self.uid.as_str()) => {
                taken();
                if let Some(local) = self.local.get() {
                    local.apply(nsp, request).await;
                }
                return;
            }
            Ok(Some(_)) => return own(),
            Ok(None) => {}
            Err(e) => return report("a malformed request", &e),
        }
        match wire::decode_query(payload) {
            Ok(Some((uid, query))) if uid.as_deref() != Some(self.uid.as_str()) => {
                taken();
                let Some(answer) = self.answer(nsp, query).await else {
                    return;
                };
                if let Err(e) = self.publish_answer(nsp, answer).await {
                    tracing::warn!(error = %e, "could not answer a query");
                }
            }
            Ok(Some(_)) => own(),
            Ok(None) => {
                telemetry::fanout_received(FanoutResult::Malformed);
                tracing::debug!(channel, "request type not served: ignored");
            }
            Err(e) => report("a malformed query", &e),
        }
    }

    /// The answer of this server to another's question, as the JavaScript adapter writes it.
    /// A fan-out with no server attached (yet) answers as a server without sockets: it is
    /// subscribed, so the asker counts it.
    async fn answer(&self, nsp: &str, query: Query) -> Option<Vec<u8>> {
        let local = self.local.get();
        let answer = match query {
            Query::Sockets { request_id, rooms } => {
                let ids = local.map(|l| l.socket_ids(nsp, rooms)).unwrap_or_default();
                serde_json::json!({ "requestId": request_id, "sockets": ids })
            }
            Query::AllRooms { request_id } => {
                let rooms = match local {
                    Some(local) => local.rooms(nsp).await,
                    None => Vec::new(),
                };
                serde_json::json!({ "requestId": request_id, "rooms": rooms })
            }
            Query::Fetch {
                request_id,
                rooms,
                except,
            } => {
                let sockets = local
                    .map(|l| l.fetch(nsp, rooms, except))
                    .unwrap_or_default();
                serde_json::json!({ "requestId": request_id, "sockets": sockets })
            }
        };
        Some(answer.to_string().into_bytes())
    }

    /// Publishes an answer on the shared response channel of `nsp` (every adapter listens
    /// there).
    async fn publish_answer(&self, nsp: &str, answer: Vec<u8>) -> Result<u64, FanoutError> {
        let channel = wire::response_channel(&self.key, nsp);
        self.adapter_pub.publish_raw(channel, answer).await
    }

    /// Publishes an answer to the request `request_id` of the server `asker`: on the shared
    /// response channel of `nsp` (classic wire), or on the asker's own (sharded).
    async fn publish_reply(
        &self,
        nsp: &str,
        asker: &str,
        request_id: &str,
        reply: Reply,
    ) -> Result<u64, FanoutError> {
        let Some(publisher) = &self.sharded else {
            let answer = match &reply {
                Reply::ClientCount(n) => fleet_wire::encode_client_count(request_id, *n),
                Reply::Ack(value) => fleet_wire::encode_broadcast_ack(request_id, value),
                Reply::ServerSide(value) => {
                    fleet_wire::encode_server_side_answer(request_id, value)
                }
            };
            return self.publish_answer(nsp, answer).await;
        };
        let request_id = request_id.to_owned();
        let body = match reply {
            Reply::ClientCount(client_count) => ShardedBody::BroadcastClientCount {
                request_id,
                client_count,
            },
            Reply::Ack(value) => ShardedBody::BroadcastAck { request_id, value },
            Reply::ServerSide(value) => ShardedBody::ServerSideEmitResponse { request_id, value },
        };
        let message = sharded_messages::message(&self.uid, nsp, body);
        publisher.answer(asker, &message).await
    }

    /// Sends another server's acknowledged broadcast to this instance's sockets, and answers
    /// with each acknowledgement as it comes, then with how many sockets got it (the asker
    /// completes once it has every server's count and as many acknowledgements).
    async fn answer_ack_broadcast(self: Arc<Self>, broadcast: AckBroadcast) {
        let (request_id, nsp) = (broadcast.request_id.clone(), broadcast.nsp.clone());
        let asker = broadcast.uid.clone();
        // Without a server attached, this instance has no socket to count.
        let (reached, mut acks) = match self.local.get().cloned() {
            Some(local) => local.ack_broadcast(broadcast).await,
            None => (0, futures_util::stream::empty().boxed()),
        };
        // The count first, as the JavaScript adapter sends it: the asker needs every server's
        // to know how many acknowledgements to wait for, and which ones are missing at its
        // timeout.
        let count = Reply::ClientCount(reached);
        if let Err(e) = self.publish_reply(&nsp, &asker, &request_id, count).await {
            tracing::warn!(error = %e, "an acknowledged broadcast's client count not passed on");
        }
        while let Some(ack) = acks.next().await {
            if let LocalAck::Answered(value) = ack {
                let answer = Reply::Ack(value);
                if let Err(e) = self.publish_reply(&nsp, &asker, &request_id, answer).await {
                    tracing::warn!(error = %e, "an acknowledgement not passed on");
                }
            }
        }
    }

    /// Runs this server's handler of a server-side emit, and answers with what it returns
    /// when the emitter awaits answers.
    async fn on_server_side_emit(self: Arc<Self>, nsp: String, emit: ServerSideEmit) {
        let handler = self
            .server_side
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(nsp.clone(), emit.event.clone()))
            .cloned();
        let Some(handler) = handler else {
            tracing::debug!(nsp, event = %emit.event, "server-side emit without a handler here");
            return;
        };
        let args = Args::from(emit.args);
        let handling = catch_panic_call(|| handler(args));
        let answer = match tokio::time::timeout(SERVER_SIDE_HANDLER_TIMEOUT, handling).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(panic)) => {
                tracing::error!(nsp, event = %emit.event, panic = %panic, "server-side emit handler panicked");
                return;
            }
            Err(_) => {
                tracing::warn!(nsp, event = %emit.event, "server-side emit handler timed out");
                return;
            }
        };
        if let Some(request_id) = emit.request_id {
            let answer = Reply::ServerSide(answer);
            if let Err(e) = self
                .publish_reply(&nsp, &emit.uid, &request_id, answer)
                .await
            {
                tracing::warn!(error = %e, "a server-side emit's answer not passed on");
            }
        }
    }
}

/// A 16-hex-digit id for this instance, as the sharded JavaScript adapter makes one (its
/// response channels are named after it).
fn sharded_uid() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(instance_uid().as_bytes());
    format!("{:016x}", h.finish())
}

/// A 6-character id for this instance, as the JavaScript adapter makes one per server.
fn instance_uid() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut x = h.finish();
    (0..6)
        .map(|_| {
            let c = ALPHABET[(x % 64) as usize] as char;
            x /= 64;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log sink the test reads back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn refusals_are_logged_ten_then_at_most_once_a_second_with_their_count() {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let refusals = Refusals::default();
        let error = WireError("holds at least 2000001 values".into());
        let started = std::time::Instant::now();
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..10_000 {
                refusals.report("socket.io#/#", 2_000_005, "a message", &error);
            }
        });
        let log = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines = log.lines().count();
        // A line for each of the first ten, and one more for each second the loop took.
        let seconds = started.elapsed().as_secs() as usize;
        assert!(
            lines >= 10 && lines <= 11 + seconds,
            "{lines} lines:\n{log}"
        );
        let first = log.lines().next().unwrap();
        assert!(first.contains("ignored a message "), "{log}");
        // The error as a field, the count beside it.
        assert!(
            first.contains("refused=1 error=holds at least 2000001 values"),
            "{log}"
        );
    }
}
