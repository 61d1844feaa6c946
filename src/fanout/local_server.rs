//! What the fan-out does to this instance's own sockets: deliver a broadcast from Redis, apply
//! a remote join, leave or disconnect, list sockets and rooms for a question, send an
//! acknowledged broadcast and collect its acknowledgements. Everything here is local-only
//! (socketioxide's `local()`), so an adapter never publishes it again.

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;

use crate::args::{Arg, Args};
use crate::fanout::fleet::FleetSocket;
use crate::fanout::fleet_wire::AckBroadcast;
use crate::fanout::wire::{Broadcast, RemoteOp, Request};
use crate::plumbing::BoxFuture;

/// What became of one socket's copy of an acknowledged broadcast.
pub(crate) enum LocalAck {
    /// The socket acknowledged it: the acknowledgement's first argument.
    Answered(Arg),
    /// It was sent and not acknowledged in time.
    TimedOut,
    /// It could not be sent (the socket was gone or full).
    NotSent,
}

/// This instance's sockets, whatever the adapter of its Socket.IO server.
pub(crate) trait LocalServer: Send + Sync + 'static {
    /// Delivers a broadcast that came from Redis.
    fn deliver(&self, broadcast: Broadcast) -> BoxFuture<()>;
    /// Applies a remote join, leave or disconnect to the sockets of namespace `nsp`.
    fn apply(&self, nsp: &str, request: Request) -> BoxFuture<()>;
    /// The sockets of `nsp` in `rooms` (all when empty) but those in `except`, with their
    /// handshake, rooms and `data`.
    fn fetch(&self, nsp: &str, rooms: Vec<String>, except: Vec<String>) -> Vec<FleetSocket>;
    /// The ids of the sockets of `nsp` in `rooms` (all when empty).
    fn socket_ids(&self, nsp: &str, rooms: Vec<String>) -> Vec<String>;
    /// Every room of `nsp` with a socket in it.
    fn rooms(&self, nsp: &str) -> BoxFuture<Vec<String>>;
    /// Every room of `nsp` with a socket in it but the ids of its own sockets (the room each
    /// socket is in by itself), without listing the sockets: the sharded wire's sweep asks
    /// for it ten times a second.
    fn public_rooms(&self, nsp: &str) -> BoxFuture<Vec<String>>;
    /// Sends an acknowledged broadcast: how many sockets it is sent to (counted as it is sent,
    /// as the JavaScript adapter counts), and one item per socket.
    fn ack_broadcast(
        &self,
        broadcast: AckBroadcast,
    ) -> BoxFuture<(u64, BoxStream<'static, LocalAck>)>;
}

/// The rooms of `nsp` on this instance; with `public`, not those named after one of its own
/// sockets (one lookup per such room, no list of the sockets).
fn local_rooms<A: Adapter>(io: SocketIo<A>, nsp: String, public: bool) -> BoxFuture<Vec<String>> {
    Box::pin(async move {
        let Some(ns) = io.of(&nsp) else {
            return Vec::new();
        };
        let own_socket = |room: &str| {
            room.parse::<socketioxide::socket::Sid>()
                .is_ok_and(|sid| ns.get_socket(sid).is_some())
        };
        match ns.clone().local().rooms().await {
            Ok(rooms) => rooms
                .iter()
                .filter(|r| !(public && own_socket(r)))
                .map(|r| r.to_string())
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "rooms of this instance unknown");
                Vec::new()
            }
        }
    })
}

impl<A: Adapter> LocalServer for SocketIo<A> {
    fn deliver(&self, broadcast: Broadcast) -> BoxFuture<()> {
        let io = self.clone();
        Box::pin(async move { deliver_to(&io, broadcast).await })
    }

    fn apply(&self, nsp: &str, request: Request) -> BoxFuture<()> {
        let io = self.clone();
        let nsp = nsp.to_owned();
        Box::pin(async move { apply_to(&io, &nsp, request).await })
    }

    fn fetch(&self, nsp: &str, rooms: Vec<String>, except: Vec<String>) -> Vec<FleetSocket> {
        let Some(ns) = self.of(nsp) else {
            return Vec::new();
        };
        let mut op = ns.local();
        if !rooms.is_empty() {
            op = op.within(rooms);
        }
        if !except.is_empty() {
            op = op.except(except);
        }
        op.sockets()
            .iter()
            .map(|s| {
                let session = s.extensions.get::<crate::session::Session>();
                FleetSocket {
                    id: s.id.to_string(),
                    rooms: s.rooms().iter().map(|r| r.to_string()).collect(),
                    handshake: session
                        .as_ref()
                        .map_or(Value::Null, |session| handshake_json(session.handshake())),
                    // The identity authentication found, as socket.io's `socket.data`.
                    data: session.map_or_else(
                        || Value::Object(Default::default()),
                        |session| Value::clone(&session.data()),
                    ),
                }
            })
            .collect()
    }

    fn socket_ids(&self, nsp: &str, rooms: Vec<String>) -> Vec<String> {
        let Some(ns) = self.of(nsp) else {
            return Vec::new();
        };
        let op = ns.local();
        let op = if rooms.is_empty() {
            op
        } else {
            op.within(rooms)
        };
        op.sockets().iter().map(|s| s.id.to_string()).collect()
    }

    fn rooms(&self, nsp: &str) -> BoxFuture<Vec<String>> {
        local_rooms(self.clone(), nsp.to_owned(), false)
    }

    fn public_rooms(&self, nsp: &str) -> BoxFuture<Vec<String>> {
        local_rooms(self.clone(), nsp.to_owned(), true)
    }

    fn ack_broadcast(
        &self,
        broadcast: AckBroadcast,
    ) -> BoxFuture<(u64, BoxStream<'static, LocalAck>)> {
        let io = self.clone();
        Box::pin(async move {
            let none = || (0, futures_util::stream::empty().boxed());
            if crate::event::names::is_reserved(&broadcast.event) {
                tracing::warn!(event = %broadcast.event, "acknowledged broadcast with a reserved event name dropped");
                return none();
            }
            let Some(ns) = io.of(&broadcast.nsp) else {
                return none();
            };
            let mut op = ns.local();
            if !broadcast.rooms.is_empty() {
                op = op.to(broadcast.rooms);
            }
            if !broadcast.except.is_empty() {
                op = op.except(broadcast.except);
            }
            let count = u64::try_from(op.clone().sockets().len()).unwrap_or(u64::MAX);
            if let Some(timeout) = broadcast.timeout {
                op = op.timeout(timeout);
            }
            let args = Args::from(broadcast.args);
            match op.emit_with_ack::<_, Arg>(&broadcast.event, &args).await {
                Ok(acks) => (
                    count,
                    acks.map(|(_, ack)| match ack {
                        Ok(value) => LocalAck::Answered(value),
                        Err(socketioxide::AckError::Timeout) => LocalAck::TimedOut,
                        // Answered with what is no argument: answered all the same.
                        Err(socketioxide::AckError::Decode(_)) => LocalAck::Answered(Arg::Null),
                        Err(socketioxide::AckError::Socket(_)) => LocalAck::NotSent,
                    })
                    .boxed(),
                ),
                Err(e) => {
                    tracing::warn!(event = %broadcast.event, error = %e, "acknowledged broadcast not sent here");
                    none()
                }
            }
        })
    }
}

/// A handshake as socket.io's `socket.handshake` object.
pub(crate) fn handshake_json(h: &crate::handshake::Handshake) -> Value {
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

/// One remote operation on the local sockets of `io`.
async fn apply_to<A: Adapter>(io: &SocketIo<A>, nsp: &str, request: Request) {
    let Some(ns) = io.of(nsp) else {
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
        tracing::warn!(error = %e, "remote operation incomplete");
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
        tracing::warn!(event = %broadcast.event, error = %e, "local delivery incomplete");
    }
}
