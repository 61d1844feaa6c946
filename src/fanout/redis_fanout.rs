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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::args::Args;
use crate::fanout::connect_error::{Cause, FanoutError, check_reachable};
use crate::fanout::delivery::RedisDelivery;
use crate::fanout::emitter::Emitter;
use crate::fanout::options::{KeepAlive, RedisOptions};
use crate::fanout::wire::{self, Broadcast, Query, RemoteOp, Request, WireError};
use crate::plumbing::{BoxFuture, LogThrottle};

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

/// Delivers a broadcast from Redis to this instance's sockets (set by `attach`).
/// Its answer, for a query: the JSON text to publish on the response channel.
type LocalDeliver = Box<dyn Fn(Incoming) -> BoxFuture<Option<String>> + Send + Sync>;

/// What comes from Redis for the local sockets.
enum Incoming {
    Broadcast(Broadcast),
    Request(Request),
    Query(Query),
}

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
    deliver: OnceLock<LocalDeliver>,
    stop: watch::Sender<bool>,
    subscriber: Mutex<Option<JoinHandle<()>>>,
    refusals: Refusals,
}

/// Logs the messages refused from Redis (the first ten, then at most once a second, with how
/// many so far): whoever can publish on this Redis could otherwise flood the log.
#[derive(Default)]
struct Refusals(LogThrottle);

impl Refusals {
    fn report(&self, channel: &str, bytes: usize, what: &str, error: &WireError) {
        if let Some(refused) = self.0.hit(1) {
            tracing::warn!(channel, bytes, refused, "ignored {what}: {error}");
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
        let pubsub = subscribe(&client, key, timeout).await?;
        let (stop, stopped) = watch::channel(false);
        let inner = Arc::new(Inner {
            uid: instance_uid(),
            emitter,
            adapter_pub,
            subscribed: Arc::new(AtomicBool::new(true)),
            key: key.to_owned(),
            deliver: OnceLock::new(),
            stop,
            subscriber: Mutex::new(None),
            refusals: Refusals::default(),
        });
        let task = tokio::spawn(receive(
            Arc::downgrade(&inner),
            client,
            pubsub,
            stopped,
            timeout,
            keepalive,
        ));
        *inner.subscriber.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(Self { inner })
    }

    /// The bottom of the outbound stack in place of [`LocalDelivery`]: each send is
    /// published, and delivered by every instance that receives it (the builder's `fanout()`
    /// puts it there).
    ///
    /// [`LocalDelivery`]: crate::outbound::LocalDelivery
    pub fn delivery(&self) -> RedisDelivery {
        RedisDelivery::new(self.inner.emitter.clone(), self.inner.subscribed.clone())
    }

    /// An emitter publishing on the same Redis.
    pub fn emitter(&self) -> Emitter {
        self.inner.emitter.clone()
    }

    /// Delivers what comes from Redis to the sockets of `io` (the builder does it; the first
    /// call wins). Deliveries are local-only broadcasts, so an adapter never re-publishes them.
    pub fn attach<A: Adapter>(&self, io: SocketIo<A>) {
        let deliver: LocalDeliver = Box::new(move |incoming: Incoming| {
            let io = io.clone();
            Box::pin(async move {
                match incoming {
                    Incoming::Broadcast(b) => deliver_to(&io, b).await,
                    Incoming::Request(r) => apply_to(&io, r).await,
                    Incoming::Query(q) => return answer(&io, q).await,
                }
                None
            })
        });
        if self.inner.deliver.set(deliver).is_err() {
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
        self.inner.adapter_pub.publish(broadcast).await
    }

    /// Publishes a request (remote join, leave, disconnect).
    pub async fn publish_request(&self, request: &Request) -> Result<u64, FanoutError> {
        self.inner.adapter_pub.publish_request(request).await
    }

    /// Stops the subscription and closes the connections (publishing fails from then on);
    /// resolves once the subscription has ended.
    pub async fn shutdown(&self) {
        self.inner.emitter.close();
        self.inner.adapter_pub.close();
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

async fn subscribe(
    client: &redis::Client,
    key: &str,
    timeout: Duration,
) -> Result<redis::aio::PubSub, FanoutError> {
    check_reachable(client, timeout).await?;
    let open = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.psubscribe(wire::pattern(key, "/")).await?;
        pubsub.subscribe(wire::request_channel(key, "/")).await?;
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
) {
    let mut pubsub = Some(first);
    let mut delay = Duration::from_millis(100);
    loop {
        let Some(current) = pubsub.take() else {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = until_stopped(&mut stopped) => return,
            }
            let Some(key) = inner.upgrade().map(|i| i.key.clone()) else {
                return;
            };
            let attempt = tokio::select! {
                attempt = subscribe(&client, &key, timeout) => attempt,
                () = until_stopped(&mut stopped) => return,
            };
            match attempt {
                Ok(p) => {
                    tracing::info!("Redis subscription restored");
                    if let Some(inner) = inner.upgrade() {
                        inner.subscribed.store(true, Ordering::Release);
                    }
                    pubsub = Some(p);
                    delay = Duration::from_millis(100);
                }
                Err(e) => {
                    tracing::warn!("Redis subscription still down: {e}");
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
            continue;
        };
        let (sink, mut messages) = current.split();
        let silent = keep_alive(sink, keepalive);
        tokio::pin!(silent);
        loop {
            tokio::select! {
                message = messages.next() => match message {
                    Some(message) => {
                        let Some(inner) = inner.upgrade() else { return };
                        inner.deliver(message.get_channel_name(), message.get_payload_bytes()).await;
                    }
                    None => {
                        tracing::warn!("Redis subscription lost; reconnecting");
                        if let Some(inner) = inner.upgrade() {
                            inner.subscribed.store(false, Ordering::Release);
                        }
                        break;
                    }
                },
                cause = &mut silent => {
                    tracing::warn!("Redis subscription unresponsive ({cause}); reconnecting");
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

/// PINGs the subscription's connection every `interval`, and resolves, with why, once a PING
/// goes unanswered for `timeout` or fails: a connection that Redis no longer answers while
/// TCP keeps it open (a half-open connection) would otherwise look subscribed for good,
/// delivering nothing. So it is noticed within `interval + timeout` of going silent.
async fn keep_alive(mut sink: redis::aio::PubSubSink, keepalive: KeepAlive) -> Cause {
    loop {
        tokio::time::sleep(keepalive.interval).await;
        // In subscribed mode Redis answers `["pong", ""]` (RESP2); any answer will do.
        match tokio::time::timeout(keepalive.timeout, sink.ping::<redis::Value>()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Cause::of(e),
            Err(_) => return Cause::timed_out("answer to PING", keepalive.timeout),
        }
    }
}

impl Inner {
    /// Delivers one message from Redis to the local sockets; garbage is ignored (and logged,
    /// throttled), and this instance's own adapter broadcasts and requests (applied when made)
    /// are skipped.
    async fn deliver(&self, channel: &str, payload: &[u8]) {
        if channel == wire::request_channel(&self.key, "/") {
            match wire::decode_request(payload) {
                Ok(Some(request)) if request.uid.as_deref() != Some(self.uid.as_str()) => {
                    if let Some(deliver) = self.deliver.get() {
                        deliver(Incoming::Request(request)).await;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => match wire::decode_query(payload) {
                    Ok(Some((uid, query))) if uid.as_deref() != Some(self.uid.as_str()) => {
                        let answer = match self.deliver.get() {
                            Some(deliver) => deliver(Incoming::Query(query)).await,
                            None => None,
                        };
                        if let Some(answer) = answer {
                            let channel = wire::response_channel(&self.key, "/");
                            if let Err(e) = self
                                .adapter_pub
                                .publish_raw(channel, answer.into_bytes())
                                .await
                            {
                                tracing::warn!("could not answer a query: {e}");
                            }
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => tracing::debug!(channel, "request type not served yet: ignored"),
                    Err(e) => {
                        self.refusals
                            .report(channel, payload.len(), "a malformed query", &e);
                    }
                },
                Err(e) => {
                    self.refusals
                        .report(channel, payload.len(), "a malformed request", &e);
                }
            }
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
        if broadcast.uid == self.uid {
            return;
        }
        if let Some(deliver) = self.deliver.get() {
            deliver(Incoming::Broadcast(broadcast)).await;
        }
    }
}

/// The answer of this server to another's query, as the JavaScript adapter writes it.
async fn answer<A: Adapter>(io: &SocketIo<A>, query: Query) -> Option<String> {
    let ns = io.of("/")?.local();
    let answer = match query {
        Query::Sockets { request_id, rooms } => {
            let op = if rooms.is_empty() {
                ns
            } else {
                ns.within(rooms)
            };
            let sockets: Vec<String> = op.sockets().iter().map(|s| s.id.to_string()).collect();
            serde_json::json!({ "requestId": request_id, "sockets": sockets })
        }
        Query::AllRooms { request_id } => {
            let rooms: Vec<String> = ns
                .rooms()
                .await
                .ok()?
                .iter()
                .map(|r| r.to_string())
                .collect();
            serde_json::json!({ "requestId": request_id, "rooms": rooms })
        }
        Query::Fetch {
            request_id,
            rooms,
            except,
        } => {
            let mut op = ns;
            if !rooms.is_empty() {
                op = op.within(rooms);
            }
            if !except.is_empty() {
                op = op.except(except);
            }
            let sockets: Vec<Value> = op
                .sockets()
                .iter()
                .map(|s| {
                    let rooms: Vec<String> = s.rooms().iter().map(|r| r.to_string()).collect();
                    let session = s.extensions.get::<crate::session::Session>();
                    let handshake = session
                        .as_ref()
                        .map_or(Value::Null, |session| handshake_json(session.handshake()));
                    // The identity authentication found, as socket.io's `socket.data`.
                    let data = session.map_or_else(
                        || Value::Object(Default::default()),
                        |session| Value::clone(&session.data()),
                    );
                    serde_json::json!({ "id": s.id.to_string(), "handshake": handshake, "rooms": rooms, "data": data })
                })
                .collect();
            serde_json::json!({ "requestId": request_id, "sockets": sockets })
        }
    };
    Some(answer.to_string())
}

/// A handshake as socket.io's `socket.handshake` object.
fn handshake_json(h: &crate::handshake::Handshake) -> Value {
    let headers: serde_json::Map<String, Value> = h
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), Value::from(v.to_str().ok()?))))
        .collect();
    let query: serde_json::Map<String, Value> = h
        .query()
        .map(|(k, v)| (k.into_owned(), Value::from(v.into_owned())))
        .collect();
    serde_json::json!({
        "headers": headers,
        "time": h.time,
        "address": h.address.map(|a| a.ip().to_string()).unwrap_or_default(),
        "xdomain": h.xdomain,
        "secure": h.secure,
        "issued": h.issued,
        "url": h.url,
        "query": query,
        "auth": h.auth,
    })
}

/// One remote operation on the local sockets of `io` (local-only, so never published again).
async fn apply_to<A: Adapter>(io: &SocketIo<A>, request: Request) {
    let Some(ns) = io.of("/") else {
        return;
    };
    let mut op = ns.local();
    if !request.rooms.is_empty() {
        op = op.within(request.rooms);
    }
    if !request.except.is_empty() {
        op = op.except(request.except);
    }
    let result = match request.op {
        RemoteOp::Join(rooms) => op.join(rooms).await.map_err(|e| e.to_string()),
        RemoteOp::Leave(rooms) => op.leave(rooms).await.map_err(|e| e.to_string()),
        // socketioxide closes the namespace socket; its connection goes with it when it was
        // the last, as with `close: true`.
        RemoteOp::Disconnect { .. } => op.disconnect().await.map_err(|e| e.to_string()),
    };
    if let Err(e) = result {
        tracing::warn!("remote operation incomplete: {e}");
    }
}

/// One broadcast to the local sockets of `io`.
async fn deliver_to<A: Adapter>(io: &SocketIo<A>, broadcast: Broadcast) {
    // Our emitters refuse these, but another publisher may not: delivered, it would make
    // every client that gets it drop its connection.
    if crate::event::names::is_reserved(&broadcast.event) {
        tracing::warn!(event = %broadcast.event, "broadcast with a reserved event name dropped");
        return;
    }
    let Some(ns) = io.of(&broadcast.nsp) else {
        tracing::debug!(nsp = %broadcast.nsp, "broadcast for a namespace this server does not have");
        return;
    };
    let mut op = ns.local();
    if !broadcast.rooms.is_empty() {
        op = op.to(broadcast.rooms.clone());
    }
    if !broadcast.except.is_empty() {
        op = op.except(broadcast.except.clone());
    }
    if broadcast.flags.volatile == Some(true) {
        op = op.volatile();
    }
    // `Args` serializes as a tuple, which socketioxide sends as several arguments (a JSON
    // array would be one).
    let args = Args::from(broadcast.args);
    if let Err(e) = op.emit(&broadcast.event, &args).await {
        tracing::warn!(event = %broadcast.event, "local delivery incomplete: {e}");
    }
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
        assert!(log.lines().next().unwrap().ends_with("refused=1"), "{log}");
        assert!(
            log.contains("ignored a message: holds at least 2000001 values"),
            "{log}"
        );
    }
}
