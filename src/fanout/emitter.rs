//! The standalone emitter: publishes broadcasts on Redis for every instance to deliver, from
//! a process with no Socket.IO server of its own (a background worker), as
//! `@socket.io/redis-emitter` does.
//!
//! ```no_run
//! use serde_json::json;
//! use socketio_stack::fanout::Emitter;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let emitter = Emitter::connect("redis://127.0.0.1:6379").await?;
//! emitter.to("io-default").emit("news", &json!({"title": "hi"})).await?;
//! emitter.to("some-socket-id").emit("direct", &json!(1)).await?;
//! emitter.emit("to-everyone", &json!(true)).await?;
//! # Ok(()) }
//! ```

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bb8_redis::RedisConnectionManager;
use bb8_redis::bb8::{Pool, RunError};
use serde::Serialize;

use crate::args::Args;
use crate::event::names;
use crate::fanout::connect_error::{Cause, FanoutError};
use crate::fanout::options::RedisOptions;
use crate::fanout::wire::{self, Broadcast, Flags, RemoteOp, Request};
use crate::telemetry::{self, RedisOp};

/// How long connecting (and each publish's wait for a connection) may take by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes broadcasts on Redis. Cheap to clone (a pooled connection).
#[derive(Clone)]
pub struct Emitter {
    /// `None` once closed: the connections are dropped and publishing fails.
    pool: Arc<RwLock<Option<Pool<RedisConnectionManager>>>>,
    /// One per pooled connection: a publish waits here for its turn, with no deadline, so
    /// that the pool's deadline measures Redis, not the length of the line.
    turns: Arc<tokio::sync::Semaphore>,
    /// How long a publish waits for a pooled connection once its turn has come.
    checkout_timeout: Duration,
    key: String,
}

/// The pooled connections of an emitter.
const POOL_SIZE: u32 = 4;

impl Emitter {
    /// Connects to the Redis at `url` (`redis://[user:password@]host:port[/db]`, or
    /// `rediss://…` for TLS), failing with a clear error within [`DEFAULT_CONNECT_TIMEOUT`]
    /// when it is unreachable or refuses the credentials.
    pub async fn connect(url: &str) -> Result<Self, FanoutError> {
        Self::connect_with_options(&RedisOptions::new(url)).await
    }

    /// [`connect`](Self::connect) with a channel prefix (the JavaScript `key` option) and a
    /// timeout.
    pub async fn connect_with(
        url: &str,
        key: &str,
        timeout: Duration,
    ) -> Result<Self, FanoutError> {
        Self::connect_with_options(&RedisOptions::new(url).key(key).connect_timeout(timeout)).await
    }

    /// [`connect`](Self::connect) with every setting ([`RedisOptions`]: certificates for a
    /// managed Redis among them; the keepalive is the subscription's, so it does not apply).
    pub async fn connect_with_options(options: &RedisOptions) -> Result<Self, FanoutError> {
        let (key, timeout) = (options.channel_key(), options.timeout());
        let client = options.client()?;
        crate::fanout::connect_error::check_reachable(&client, timeout).await?;
        let manager = RedisConnectionManager::new(client.get_connection_info().clone())
            .map_err(|e| FanoutError::Config(Cause::of(e)))?;
        // Pooled connections do not reconnect by themselves: a PING at checkout replaces one
        // that died with a Redis restart. During an outage a send waits at most a second for
        // a connection once its turn has come, then fails (a burst of 1,000 sends, longer than
        // a second to publish, waits its turns without failing).
        let checkout_timeout = timeout.min(Duration::from_secs(1));
        let pool = Pool::builder()
            .max_size(POOL_SIZE)
            .connection_timeout(checkout_timeout)
            .test_on_check_out(true)
            .retry_connection(false)
            .build_unchecked(manager);
        Ok(Self {
            pool: Arc::new(RwLock::new(Some(pool))),
            turns: Arc::new(tokio::sync::Semaphore::new(POOL_SIZE as usize)),
            checkout_timeout,
            key: key.to_owned(),
        })
    }

    /// Closes the connections (of every clone); publishing fails with
    /// [`FanoutError::Closed`] from then on.
    pub fn close(&self) {
        self.pool.write().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Targets a room (or a socket id).
    pub fn to(&self, room: impl Into<String>) -> Target<'_> {
        Target {
            emitter: self,
            nsp: "/".to_owned(),
            rooms: vec![room.into()],
            except: Vec::new(),
            flags: Flags::default(),
        }
    }

    /// Emits `event` with `data` to every client of every instance.
    pub async fn emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<(), FanoutError> {
        self.everyone().emit(event, data).await
    }

    /// Targets every client (to narrow with `except`, or to set flags on).
    pub fn everyone(&self) -> Target<'_> {
        self.of("/")
    }

    /// Targets every client of namespace `nsp` (socket.io's `emitter.of(nsp)`); narrow it
    /// with [`to`](Target::to).
    pub fn of(&self, nsp: impl Into<String>) -> Target<'_> {
        Target {
            emitter: self,
            nsp: nsp.into(),
            rooms: Vec::new(),
            except: Vec::new(),
            flags: Flags::default(),
        }
    }

    /// Publishes a broadcast as it is; answers how many subscribers (server instances)
    /// received it. A reserved event name ([`names::RESERVED`]) fails with
    /// [`FanoutError::ReservedEvent`] before anything is published, as the JavaScript
    /// emitter throws, and a room list the receivers would refuse (over
    /// [`MAX_ROOMS`](crate::fanout::MAX_ROOMS)) with [`FanoutError::Unpublishable`].
    pub async fn publish(&self, broadcast: &Broadcast) -> Result<u64, FanoutError> {
        if names::is_reserved(&broadcast.event) {
            return Err(FanoutError::ReservedEvent(broadcast.event.clone()));
        }
        broadcast
            .check_publishable()
            .map_err(FanoutError::Unpublishable)?;
        let channel = wire::channel(&self.key, &broadcast.nsp, &broadcast.rooms);
        self.publish_bytes(channel, wire::encode(broadcast)).await
    }

    /// Publishes a request (remote join, leave, disconnect) as it is; a room list over
    /// [`MAX_ROOMS`](crate::fanout::MAX_ROOMS) fails with [`FanoutError::Unpublishable`] first.
    pub async fn publish_request(&self, request: &Request) -> Result<u64, FanoutError> {
        self.publish_request_in("/", request).await
    }

    /// [`publish_request`](Self::publish_request) to the sockets of namespace `nsp`.
    pub async fn publish_request_in(
        &self,
        nsp: &str,
        request: &Request,
    ) -> Result<u64, FanoutError> {
        request
            .check_publishable()
            .map_err(FanoutError::Unpublishable)?;
        let channel = wire::request_channel(&self.key, nsp);
        self.publish_bytes(channel, wire::encode_request(request))
            .await
    }

    /// Publishes raw bytes on a channel (answers to queries).
    pub(crate) async fn publish_raw(
        &self,
        channel: String,
        payload: Vec<u8>,
    ) -> Result<u64, FanoutError> {
        self.publish_bytes(channel, payload).await
    }

    async fn publish_bytes(&self, channel: String, payload: Vec<u8>) -> Result<u64, FanoutError> {
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(channel).arg(payload);
        timed_publish(self.run(publish)).await
    }

    /// How many connections are subscribed to `channel` (`PUBSUB NUMSUB`): on a request
    /// channel, how many servers there are, as the JavaScript adapter counts them.
    pub(crate) async fn subscribers(&self, channel: String) -> Result<u64, FanoutError> {
        let mut numsub = redis::cmd("PUBSUB");
        numsub.arg("NUMSUB").arg(channel);
        let counts: Vec<(String, u64)> = self.run(numsub).await?;
        Ok(counts.first().map_or(0, |(_, n)| *n))
    }

    /// Runs one command on a pooled connection, waiting for its turn.
    pub(crate) async fn run<T: redis::FromRedisValue>(
        &self,
        cmd: redis::Cmd,
    ) -> Result<T, FanoutError> {
        let pool = self
            .pool
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(FanoutError::Closed)?;
        let _turn = self
            .turns
            .acquire()
            .await
            .map_err(|_| FanoutError::Closed)?;
        let mut conn = pool.get().await.map_err(|e| {
            FanoutError::Unavailable(match e {
                RunError::User(e) => Cause::of(e),
                RunError::TimedOut => Cause::timed_out("pooled connection", self.checkout_timeout),
            })
        })?;
        cmd.query_async::<T>(&mut *conn)
            .await
            .map_err(|e| FanoutError::Unavailable(Cause::of(e)))
    }
}

/// Reports a publish's duration, or its failure, to the metrics.
pub(crate) async fn timed_publish(
    publishing: impl Future<Output = Result<u64, FanoutError>>,
) -> Result<u64, FanoutError> {
    let started = std::time::Instant::now();
    let outcome = publishing.await;
    match &outcome {
        Ok(_) => telemetry::redis_publish_duration(started.elapsed()),
        Err(_) => telemetry::redis_error(RedisOp::Publish),
    }
    outcome
}

/// A broadcast being addressed: namespace, rooms, exceptions, flags.
pub struct Target<'a> {
    emitter: &'a Emitter,
    nsp: String,
    rooms: Vec<String>,
    except: Vec<String>,
    flags: Flags,
}

impl Target<'_> {
    /// Adds a room (once: as in JavaScript, rooms are a set).
    pub fn to(mut self, room: impl Into<String>) -> Self {
        let room = room.into();
        if !self.rooms.contains(&room) {
            self.rooms.push(room);
        }
        self
    }

    /// Leaves out the members of a room (or a socket id).
    pub fn except(mut self, room: impl Into<String>) -> Self {
        self.except.push(room.into());
        self
    }

    /// Sets the `compress` flag.
    pub fn compress(mut self, compress: bool) -> Self {
        self.flags.compress = Some(compress);
        self
    }

    /// Sets the `volatile` flag.
    pub fn volatile(mut self) -> Self {
        self.flags.volatile = Some(true);
        self
    }

    /// Makes the targeted sockets of every instance join `rooms` (`socketsJoin`).
    pub async fn sockets_join(self, rooms: &[&str]) -> Result<(), FanoutError> {
        self.request(RemoteOp::Join(
            rooms.iter().map(|r| (*r).to_owned()).collect(),
        ))
        .await
    }

    /// Makes them leave `rooms` (`socketsLeave`).
    pub async fn sockets_leave(self, rooms: &[&str]) -> Result<(), FanoutError> {
        self.request(RemoteOp::Leave(
            rooms.iter().map(|r| (*r).to_owned()).collect(),
        ))
        .await
    }

    /// Disconnects them (`disconnectSockets`).
    pub async fn disconnect_sockets(self, close: bool) -> Result<(), FanoutError> {
        self.request(RemoteOp::Disconnect { close }).await
    }

    async fn request(self, op: RemoteOp) -> Result<(), FanoutError> {
        let request = Request {
            uid: None,
            op,
            rooms: self.rooms,
            except: self.except,
        };
        self.emitter
            .publish_request_in(&self.nsp, &request)
            .await
            .map(|_| ())
    }

    /// Emits `event` with `data`, as socketioxide's `emit` sends it: one argument, or one per
    /// element of a tuple; [`Bytes`](bytes::Bytes) anywhere in it travel as binary data.
    pub async fn emit<T: Serialize + ?Sized>(
        self,
        event: &str,
        data: &T,
    ) -> Result<(), FanoutError> {
        let args = Args::from_serialize(data).map_err(|e| FanoutError::Encode(Cause::of(e)))?;
        self.emit_args(event, args).await
    }

    /// Emits `event` with these arguments (binary ones included).
    pub async fn emit_args(self, event: &str, args: impl Into<Args>) -> Result<(), FanoutError> {
        let broadcast = Broadcast {
            uid: wire::EMITTER_UID.to_owned(),
            nsp: self.nsp,
            event: event.to_owned(),
            args: args.into().into_vec(),
            rooms: self.rooms,
            except: self.except,
            flags: self.flags,
        };
        self.emitter.publish(&broadcast).await.map(|_| ())
    }
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}
