//! The admin namespace and what every part of the Admin UI shares ([`AdminHub`]): the UI's
//! login, what it is sent at its connect, its commands, the stats clock, and the reporter
//! that sends events to every UI of the fleet.
//!
//! Events for the UIs go through the bottom of the outbound stack (local delivery, or the
//! Redis delivery with a fan-out) to the admin namespace: with a fan-out, every server
//! delivers them to its own admin sockets, as a Node server's `adminNamespace.emit` does
//! through its adapter, so one UI sees every server.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde::Serialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::DisconnectReason;
use socketioxide_core::adapter::Spawnable;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::AbortHandle;
use tower::ServiceExt;

use super::protocol::{
    self, EventCounts, NamespaceStats, RAW_CONNECTION, RAW_DISCONNECTION, SerializedSocket,
    ServerStats,
};
use super::sessions::Sessions;
use super::{AdminUi, Auth, STATS_INTERVAL};
use crate::args::{Arg, Args};
use crate::error::BuildError;
use crate::fanout::{RedisFanout, WeakFanout};
use crate::outbound::OutboundMessage;
use crate::plumbing::LogThrottle;
use crate::server::DeliveryService;

/// The refusal the UI knows (it shows "Invalid credentials" for this message exactly).
pub(crate) const INVALID_CREDENTIALS: &str = "invalid credentials";

/// How many events for the UIs may wait to be sent; past it they are dropped.
const QUEUE: usize = 1024;

/// bcrypt checks at once: each takes a core for tens of milliseconds at cost 10.
const CHECKS_AT_ONCE: usize = 2;

/// Commands and `all_sockets` at once, over every admin socket.
const WORK_AT_ONCE: usize = 8;

/// The longest namespace, room or filter a command may name.
const MAX_NAME: usize = 256;

/// An `event_received` shows the event's arguments when they take at most this much.
const MAX_SHOWN_ARGS: usize = 16 * 1024;

/// One event for every UI.
struct Outgoing {
    event: &'static str,
    args: Vec<Arg>,
}

/// What every part of the Admin UI shares: its configuration, this server, the counts, the
/// sessions, the queue to the UIs.
pub(crate) struct AdminHub<A: Adapter> {
    config: AdminUi,
    server_id: String,
    hostname: String,
    started: Instant,
    io: SocketIo<A>,
    fanout: Option<WeakFanout>,
    delivery: DeliveryService,
    pub(crate) counts: EventCounts,
    sessions: Sessions,
    outgoing: mpsc::Sender<Outgoing>,
    dropped: LogThrottle,
    checks: Semaphore,
    work: Semaphore,
}

/// The Admin UI's tasks (the reporter and the stats clock), ended with the last handle of
/// the server that holds this.
pub(crate) struct AdminTasks(Vec<AbortHandle>);

impl AdminTasks {
    /// Ends the tasks.
    pub(crate) fn stop(&self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl Drop for AdminTasks {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Set by the login, read at the connect: the new session's id, for the `session` event.
#[derive(Clone)]
struct NewSession(String);

/// Every argument of a UI command: socketioxide hands an event's arguments whole only to a
/// type that deserializes as a tuple, whatever their number.
struct AllArgs(Vec<Arg>);

impl<'de> serde::Deserialize<'de> for AllArgs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = AllArgs;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("the arguments of an event")
            }
            fn visit_seq<S: serde::de::SeqAccess<'de>>(
                self,
                mut seq: S,
            ) -> Result<AllArgs, S::Error> {
                let mut args = Vec::new();
                while let Some(arg) = seq.next_element::<Arg>()? {
                    args.push(arg);
                }
                Ok(AllArgs(args))
            }
        }
        d.deserialize_tuple(usize::MAX, Visitor)
    }
}

/// A UI command's operation on the sockets it targets.
#[derive(Clone, Copy)]
enum Command {
    Join,
    Leave,
    Disconnect,
}

impl<A: Adapter> AdminHub<A> {
    /// Serves the admin namespace of `io` and starts the tasks; `delivery` is the bottom of
    /// the outbound stack, `fanout` the server's, if any.
    pub(crate) fn install(
        config: AdminUi,
        io: &SocketIo<A>,
        fanout: Option<&RedisFanout>,
        delivery: DeliveryService,
    ) -> Result<(Arc<Self>, AdminTasks), BuildError>
    where
        A: socketioxide_core::adapter::DefinedAdapter,
    {
        config.check()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(BuildError::InvalidAdminUi(
                "it runs tasks: build the server inside a tokio runtime".into(),
            ));
        }
        if let Some(fanout) = fanout {
            fanout
                .want_namespace(&config.namespace)
                .map_err(BuildError::InvalidAdminUi)?;
        }
        let hostname = hostname();
        let (outgoing, queue) = mpsc::channel(QUEUE);
        let hub = Arc::new(Self {
            server_id: config.server_id.clone().unwrap_or_else(|| hostname.clone()),
            hostname,
            started: Instant::now(),
            io: io.clone(),
            fanout: fanout.map(RedisFanout::downgrade),
            delivery: delivery.clone(),
            counts: EventCounts::default(),
            sessions: Sessions::default(),
            outgoing,
            dropped: LogThrottle::new(),
            checks: Semaphore::new(CHECKS_AT_ONCE),
            work: Semaphore::new(WORK_AT_ONCE),
            config,
        });
        let connected = {
            let hub = hub.clone();
            move |socket: SocketRef<A>| {
                let hub = hub.clone();
                async move { hub.connected(socket).await }
            }
        };
        let admit = {
            let hub = hub.clone();
            move |socket: SocketRef<A>, TryData(auth): TryData<Value>| {
                let hub = hub.clone();
                async move { hub.admit(&socket, auth.unwrap_or(Value::Null)).await }
            }
        };
        io.ns(hub.config.namespace.clone(), connected.with(admit))
            .spawn();

        let reporter = tokio::spawn(report(queue, delivery, hub.config.namespace.clone()));
        let clock = {
            let hub = hub.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(STATS_INTERVAL);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    let stats = to_arg(&hub.stats(true));
                    hub.report("server_stats", vec![stats]);
                }
            })
        };
        let tasks = AdminTasks(vec![reporter.abort_handle(), clock.abort_handle()]);
        Ok((hub, tasks))
    }

    /// Whether events are reported as they happen (development mode).
    pub(crate) fn development(&self) -> bool {
        self.config.development()
    }

    /// Queues `event` for every UI of the fleet; dropped (and logged, throttled) when the
    /// queue is full.
    pub(crate) fn report(&self, event: &'static str, args: Vec<Arg>) {
        if self.outgoing.try_send(Outgoing { event, args }).is_err()
            && let Some(dropped) = self.dropped.hit(1)
        {
            tracing::warn!(
                event,
                dropped,
                "Admin UI queue full: events for the UIs dropped"
            );
        }
    }

    /// `socket_connected` for `socket`.
    pub(crate) fn socket_connected(&self, socket: &SocketRef<A>) {
        let serialized = to_arg(&SerializedSocket::local(socket));
        self.report("socket_connected", vec![serialized, now()]);
    }

    /// `socket_disconnected` for `socket`, and its count.
    pub(crate) fn socket_disconnected(&self, socket: &SocketRef<A>, reason: DisconnectReason) {
        let reason = protocol::disconnect_reason(reason);
        self.counts.add(RAW_DISCONNECTION, Some(reason));
        if self.development() {
            let args = vec![
                Arg::from(socket.ns()),
                Arg::from(socket.id.as_str()),
                Arg::from(reason),
                now(),
            ];
            self.report("socket_disconnected", args);
        }
    }

    /// `event_received` for an event of `socket`: its name and, when they are not too
    /// large, its arguments.
    pub(crate) fn event_received(&self, socket: &SocketRef<A>, name: &str, args: &Args) {
        let mut shown = vec![Arg::from(name)];
        if !protocol::larger_than(args, MAX_SHOWN_ARGS) {
            shown.extend(args.iter().cloned());
        }
        let args = vec![
            Arg::from(socket.ns()),
            Arg::from(socket.id.as_str()),
            Arg::Array(shown),
            now(),
        ];
        self.report("event_received", args);
    }

    /// `room_joined` or `room_left` of `socket`.
    pub(crate) fn room_changed(&self, nsp: &str, id: &str, room: &str, joined: bool) {
        let event = if joined { "room_joined" } else { "room_left" };
        let args = vec![Arg::from(nsp), Arg::from(room), Arg::from(id), now()];
        self.report(event, args);
    }

    /// `socket_updated` with `socket`'s data.
    pub(crate) fn data_changed(&self, socket: &SocketRef<A>) {
        let data = socket
            .extensions
            .get::<crate::Session>()
            .map_or_else(|| json!({}), |s| Value::clone(&s.data()));
        let update = json!({ "id": socket.id.as_str(), "nsp": socket.ns(), "data": data });
        self.report("socket_updated", vec![Arg::from(update)]);
    }

    /// The admin namespace's connect middleware: the UI's login, then (with a fan-out) its
    /// subscription, so that it misses no stats.
    async fn admit(&self, socket: &SocketRef<A>, auth: Value) -> Result<(), String> {
        if let Some(Auth::Basic {
            username,
            password_hash,
        }) = &self.config.auth
        {
            let known_session = auth
                .get("sessionId")
                .and_then(Value::as_str)
                .is_some_and(|id| self.sessions.contains(id));
            if !known_session {
                // A missing or non-string password is a refusal (the JavaScript package's
                // process dies of it).
                let password = match auth.get("password").and_then(Value::as_str) {
                    Some(p) if auth.get("username").and_then(Value::as_str) == Some(username) => p,
                    _ => return Err(INVALID_CREDENTIALS.into()),
                };
                if !self.password_matches(password, password_hash).await {
                    return Err(INVALID_CREDENTIALS.into());
                }
                if let Some(id) = self.sessions.open() {
                    socket.extensions.insert(NewSession(id));
                }
            }
        }
        if let Some(fanout) = self.fanout.as_ref().and_then(WeakFanout::upgrade) {
            fanout.serve_namespace(socket.ns()).await?;
        }
        Ok(())
    }

    /// Checks `password` against the hash, off the async threads, a few at a time.
    async fn password_matches(&self, password: &str, hash: &str) -> bool {
        let Ok(_turn) = self.checks.acquire().await else {
            return false;
        };
        let (password, hash) = (password.to_owned(), hash.to_owned());
        tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false)
    }

    /// An admin socket is connected: what it is sent first, its commands, its disconnect.
    async fn connected(self: Arc<Self>, socket: SocketRef<A>) {
        if let Some(NewSession(id)) = socket.extensions.remove::<NewSession>() {
            emit(&socket, "session", &id);
        }
        let features = protocol::supported_features(self.config.readonly, self.development());
        emit(&socket, "config", &json!({ "supportedFeatures": features }));
        // This server's, at once: the UI would otherwise wait for the clock.
        emit(&socket, "server_stats", &self.stats(false));
        self.counts.add(RAW_CONNECTION, None);
        if self.development() {
            self.socket_connected(&socket);
        }
        let hub = self.clone();
        socket.on_disconnect(move |s: SocketRef<A>, reason: DisconnectReason| {
            let hub = hub.clone();
            async move { hub.socket_disconnected(&s, reason) }
        });
        if !self.config.readonly {
            self.commands(&socket);
        }
        if self.development() {
            let Ok(_turn) = self.work.acquire().await else {
                return;
            };
            emit(&socket, "all_sockets", &self.all_sockets().await);
        }
    }

    /// The UI's commands, as the JavaScript package's handlers (no answer, no error).
    fn commands(self: &Arc<Self>, socket: &SocketRef<A>) {
        for (event, command) in [
            ("join", Command::Join),
            ("leave", Command::Leave),
            ("_disconnect", Command::Disconnect),
        ] {
            let hub = self.clone();
            socket.on(event, move |TryData(args): TryData<AllArgs>| {
                let hub = hub.clone();
                async move {
                    if let Ok(AllArgs(args)) = args {
                        hub.command(command, args).await;
                    }
                }
            });
        }
        let hub = self.clone();
        socket.on("emit", move |TryData(args): TryData<AllArgs>| {
            let hub = hub.clone();
            async move {
                if let Ok(AllArgs(args)) = args {
                    hub.emit_command(args).await;
                }
            }
        });
    }

    /// `join`/`leave` `(nsp, room, filter?)`, `_disconnect` `(nsp, close, filter?)`: on the
    /// sockets of `nsp` in room `filter` (a socket id targets one), or all of them, on every
    /// server.
    async fn command(&self, command: Command, args: Vec<Arg>) {
        let name = |i: usize| {
            args.get(i)
                .and_then(Arg::as_str)
                .filter(|s| !s.is_empty() && s.len() <= MAX_NAME)
        };
        let Some(nsp) = name(0) else {
            return;
        };
        let room = match command {
            Command::Join | Command::Leave => match name(1) {
                Some(room) => Some(room),
                None => return,
            },
            Command::Disconnect => None,
        };
        let filter = name(2);
        let Ok(_turn) = self.work.try_acquire() else {
            tracing::warn!("Admin UI command dropped: too many at once");
            return;
        };
        let close = args.get(1).and_then(Arg::as_bool) == Some(true);
        let result = match self.fanout.as_ref().and_then(WeakFanout::upgrade) {
            Some(fanout) => {
                let mut fleet = fanout.fleet().namespace(nsp);
                if let Some(filter) = filter {
                    fleet = fleet.within(filter);
                }
                match (command, room) {
                    (Command::Join, Some(room)) => fleet.join(&[room]).await,
                    (Command::Leave, Some(room)) => fleet.leave(&[room]).await,
                    _ => fleet.disconnect(close).await,
                }
                .map_err(|e| e.to_string())
            }
            None => {
                // An unknown namespace has no socket to act on (Node would create it).
                let Some(mut op) = self.io.of(nsp) else {
                    return;
                };
                if let Some(filter) = filter {
                    op = op.within(filter.to_owned());
                }
                match (command, room) {
                    (Command::Join, Some(room)) => {
                        op.join(room.to_owned()).await.map_err(|e| e.to_string())
                    }
                    (Command::Leave, Some(room)) => {
                        op.leave(room.to_owned()).await.map_err(|e| e.to_string())
                    }
                    // socketioxide closes the namespace socket; its connection goes with it
                    // when it was the last, as with `close: true`.
                    _ => op.disconnect().await.map_err(|e| e.to_string()),
                }
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "Admin UI command incomplete");
            return;
        }
        // This server's sockets that the command moved, for the UIs (the other servers'
        // are not reported: they do not know the command came from a UI).
        if let (Some(room), true) = (room, self.development()) {
            let joined = matches!(command, Command::Join);
            let Some(mut op) = self.io.of(nsp).map(|op| op.local()) else {
                return;
            };
            if let Some(filter) = filter {
                op = op.within(filter.to_owned());
            }
            for socket in op.sockets().iter().take(self.config.max_sockets) {
                self.room_changed(nsp, socket.id.as_str(), room, joined);
            }
        }
    }

    /// `emit` `(nsp, filter, event, ...args)`: an event to the sockets of `nsp` (in room
    /// `filter`), on every server.
    async fn emit_command(&self, mut args: Vec<Arg>) {
        if args.len() < 3 {
            return;
        }
        let rest = args.split_off(3);
        let (nsp, filter, event) = (&args[0], &args[1], &args[2]);
        let (Some(nsp), Some(event)) = (nsp.as_str(), event.as_str()) else {
            return;
        };
        if nsp.len() > MAX_NAME || event.is_empty() || event.len() > MAX_NAME {
            return;
        }
        let Ok(_turn) = self.work.try_acquire() else {
            tracing::warn!("Admin UI command dropped: too many at once");
            return;
        };
        let mut send = OutboundMessage::broadcast(event, Arg::Null)
            .with_args(rest)
            .in_namespace(nsp);
        send.destination = filter
            .as_str()
            .filter(|f| f.len() <= MAX_NAME)
            .map(str::to_owned);
        if let Err(e) = self.delivery.clone().oneshot(send).await {
            tracing::warn!(error = %e, "Admin UI emit not sent");
        }
    }

    /// This server's stats; the counts are taken (and start again) when `take_counts`, as
    /// for the clock's `server_stats`, and left for it otherwise.
    fn stats(&self, take_counts: bool) -> ServerStats {
        let mut namespaces = Vec::new();
        let (mut clients, mut polling) = (0, 0);
        for op in self.io.nsps() {
            let sockets = op.clone().local().sockets();
            clients += sockets.len();
            polling += sockets
                .iter()
                .filter(|s| s.transport_type() == socketioxide::TransportType::Polling)
                .count();
            namespaces.push(NamespaceStats {
                name: op.ns_path().to_owned(),
                sockets_count: sockets.len(),
            });
        }
        ServerStats {
            server_id: self.server_id.clone(),
            hostname: self.hostname.clone(),
            pid: std::process::id(),
            uptime: self.started.elapsed().as_secs_f64(),
            clients_count: clients,
            polling_clients_count: polling,
            aggregated_events: if take_counts {
                self.counts.take()
            } else {
                Vec::new()
            },
            namespaces,
        }
    }

    /// The sockets of every namespace of this server, then of the other servers of the
    /// fleet, at most `max_sockets` in all.
    async fn all_sockets(&self) -> Vec<SerializedSocket> {
        let max = self.config.max_sockets;
        let mut listed = Vec::new();
        let namespaces: Vec<String> = self
            .io
            .nsps()
            .iter()
            .map(|op| op.ns_path().to_owned())
            .collect();
        for op in self.io.nsps() {
            let room = max.saturating_sub(listed.len());
            let sockets = op.local().sockets();
            listed.extend(sockets.iter().take(room).map(SerializedSocket::local));
        }
        let Some(fanout) = self.fanout.as_ref().and_then(WeakFanout::upgrade) else {
            return listed;
        };
        for nsp in namespaces {
            if listed.len() >= max {
                break;
            }
            match fanout.fleet().namespace(&nsp).fetch_remote_sockets().await {
                Ok(remote) => {
                    let room = max - listed.len();
                    listed.extend(
                        remote
                            .into_iter()
                            .take(room)
                            .map(|s| SerializedSocket::remote(&nsp, s)),
                    );
                }
                Err(e) => {
                    tracing::warn!(nsp, error = %e, "Admin UI: other servers' sockets unknown")
                }
            }
        }
        listed
    }
}

/// Sends what is queued for the UIs, one at a time, to the admin namespace of every server.
async fn report(mut queue: mpsc::Receiver<Outgoing>, delivery: DeliveryService, nsp: String) {
    let failed = LogThrottle::new();
    while let Some(Outgoing { event, args }) = queue.recv().await {
        // Not volatile: socketioxide drops a volatile message whenever the transport is busy
        // writing, so most of a burst would be lost. A UI that stops reading is cut off by
        // the server's write timeout, as any client.
        let send = OutboundMessage::broadcast(event, Arg::Null)
            .with_args(args)
            .in_namespace(nsp.clone());
        if let Err(e) = delivery.clone().oneshot(send).await
            && let Some(failures) = failed.hit(1)
        {
            tracing::warn!(event, failures, error = %e, "Admin UI event not sent");
        }
    }
}

/// Emits to one admin socket; a failure (the socket gone, its buffer full) is only logged.
fn emit<A: Adapter, T: Serialize + ?Sized>(socket: &SocketRef<A>, event: &str, data: &T) {
    if let Err(e) = socket.emit(event, data) {
        tracing::debug!(socket = %socket.id, event, "Admin UI: not sent: {e}");
    }
}

/// A payload as an event argument.
fn to_arg<T: Serialize>(value: &T) -> Arg {
    // These payloads are plain data: serializing them cannot fail.
    Arg::from(serde_json::to_value(value).unwrap_or_default())
}

/// The current time, as the JavaScript package's `new Date()` arguments reach the UI.
fn now() -> Arg {
    Arg::from(crate::clock::iso_string(SystemTime::now()))
}

/// The machine's host name (`os.hostname()`): the kernel's on Linux, else `HOSTNAME` or
/// `COMPUTERNAME` from the environment; empty if neither says.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|name| name.trim().to_owned())
        .unwrap_or_default()
}
