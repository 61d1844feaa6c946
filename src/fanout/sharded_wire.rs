//! The Redis wire of `createShardedAdapter` of `@socket.io/redis-adapter` (8.3), the adapter
//! on Redis 7's sharded pub/sub (`SPUBLISH` / `SSUBSCRIBE`), as the installed npm code
//! implements it (`dist/sharded-adapter.js`, over socket.io-adapter 2.5's `ClusterAdapter`
//! in `dist/cluster-adapter.js`). It shares nothing with the classic adapter's wire of
//! [`wire`] and [`fleet_wire`](super::fleet_wire) but the room-list policy and
//! the bounds: other channels, other messages, other type numbers. The captures in this
//! module's tests come from `tests/js/sharded-capture.mjs`, which regenerates them.
//!
//! In Rust, a [`Message`] is one of them ([`Body`]: what it says, by type), [`encode`] and
//! [`decode`] write and read it, and [`publish_channel`], [`response_channel`] and
//! [`SubscriptionMode::subscribes_to_room`] say where it travels. The fan-out speaks it with
//! [`RedisOptions::sharded`](crate::fanout::RedisOptions::sharded).
//!
//! # Channels
//!
//! With the prefix `key` (the option `channelPrefix`, `socket.io` by default), each
//! namespace's adapter has:
//!
//! - the **main channel** `<key>#<nsp>#` (`socket.io#/#`, `socket.io#/admin#`): every message
//!   but the answers and the broadcasts of a room channel;
//! - its **response channel** `<key>#<nsp>#<uid>#`, where `uid` is the adapter's random id (16
//!   hex digits, one per namespace of each server): the answers to its own requests;
//! - in the modes `dynamic` and `dynamic-private`, one **room channel** `<key>#<nsp>#<room>#`
//!   per room it holds sockets in, subscribed when the room is created on this server and
//!   unsubscribed when its last socket leaves.
//!
//! Sharded pub/sub has no patterns, so each channel is subscribed by its exact name.
//!
//! A channel is a plain string: `#` in a namespace or a room is not escaped, and a room named
//! like an adapter's uid shares its channel with that adapter's answers (the adapter tells
//! answers apart by the channel only: what arrives on its response channel is read as an
//! answer, anything else as a message, whose answer types are then read as answers too).
//!
//! # Messages
//!
//! Each message is one map `{type, data, uid, nsp}`, in that order: `type` is
//! socket.io-adapter's `MessageType`, `uid` the publishing adapter's uid, `nsp` its namespace.
//! A receiver drops what carries its own uid (it sees its own publishes on the main channel)
//! or another namespace. No emitter speaks this wire (`@socket.io/redis-emitter` 5.1
//! publishes on the classic channels only), so every message comes from an adapter; answers
//! carry the same four fields; the asker matches them to its
//! request by `data.requestId` (16 hex digits) alone.
//!
//! `opts` below is `{rooms: [...], except: [...], flags: {...}}`: the targeted rooms (none:
//! every socket) and those left out, read as sets. `flags` of a broadcast may hold
//! `volatile`, `compress` (`false` when turned off) and `timeout` (milliseconds, for an
//! acknowledged one), in the order they were set; other operations send `{}`.
//!
//! | type | name | `data` | channel |
//! | --- | --- | --- | --- |
//! | 1, 2, 13 | `INITIAL_HEARTBEAT`, `HEARTBEAT`, `ADAPTER_CLOSE` | none | never sent by this adapter (they belong to `ClusterAdapterWithHeartbeat`) |
//! | 3 | `BROADCAST` | `{packet: {type: 2, data: [event, ...args]}, requestId?, opts}` | see above; with `requestId`, the main channel |
//! | 4 | `SOCKETS_JOIN` | `{opts, rooms: [...]}`: the targeted sockets join `rooms` | main |
//! | 5 | `SOCKETS_LEAVE` | `{opts, rooms: [...]}` | main |
//! | 6 | `DISCONNECT_SOCKETS` | `{opts, close}`: `close` also closes the connection | main |
//! | 7 | `FETCH_SOCKETS` | `{opts, requestId}` | main |
//! | 8 | `FETCH_SOCKETS_RESPONSE` | `{requestId, sockets: [{id, handshake, rooms: [...], data}]}`: every targeted socket of the answering server (possibly none) | the asker's response channel |
//! | 9 | `SERVER_SIDE_EMIT` | `{packet: [event, ...args]}`, or `{requestId, packet}` when the emitter waits for answers | main |
//! | 10 | `SERVER_SIDE_EMIT_RESPONSE` | `{requestId, packet: <the first argument of the listener's callback>}` | the asker's response channel |
//! | 11 | `BROADCAST_CLIENT_COUNT` | `{requestId, clientCount}`: how many of its sockets the acknowledged broadcast reached | the asker's response channel |
//! | 12 | `BROADCAST_ACK` | `{requestId, packet: <the first argument of one socket's ack>}` | the asker's response channel |
//!
//! The packet of a broadcast carries neither `nsp` nor `id` (the receiver adds its own), and
//! its `type` is 2 (EVENT) whatever its arguments. A value JavaScript leaves `undefined` (an
//! answer without argument) is absent from JSON text: a missing `packet` is `null`.
//! A `handshake` is the socket's handshake (`headers`, `time`, `address`, `xdomain`, `secure`,
//! `issued`, `url`, `query`, `auth`), without its `sessionStore`.
//!
//! # Encoding
//!
//! A message of type 3, 8, 9, 10 or 12 that holds binary data anywhere in `data` (a `Buffer`,
//! an `ArrayBuffer` or a typed array) is MessagePack as notepack.io writes it (binary data as
//! `bin`); every other message is JSON text (`JSON.stringify`), even one of another type that
//! holds binary data (which JSON writes as `{type: "Buffer", data: [...]}`). A receiver reads
//! a message starting with `{` (0x7b) as JSON, anything else as MessagePack (whose maps never
//! start with that byte).
//!
//! # Answers and acknowledgements
//!
//! Every answer goes to the asker's response channel, named after the asker's `uid` in the
//! request. How many answers the asker waits for is the **server count**: `PUBSUB
//! SHARDNUMSUB <main channel>`, summed over every master of a cluster (on one server: its
//! own answer), counting the asker itself, so each server must hold exactly one subscription
//! to the main channel of each of its namespaces.
//!
//! - `FETCH_SOCKETS` and a `SERVER_SIDE_EMIT` with `requestId` wait for `count - 1` answers
//!   (none asked when that is 0) and fail at the timeout (`flags.timeout` of the fetch, else
//!   5 s) with the answers that came. Every server answers a fetch, with an empty list when
//!   none of its sockets is targeted; a server answers a server-side emit once, when one of
//!   its listeners calls the callback, later calls ignored.
//! - An acknowledged broadcast (`requestId` present) is delivered by every server, which
//!   answers with one `BROADCAST_CLIENT_COUNT` (after sending it to its sockets) and then one
//!   `BROADCAST_ACK` per socket that acknowledged. The asker's `emit` completes once it has
//!   a count from each of the `count` servers (its own included) and as many acks as the
//!   counts add up to, or fails at `flags.timeout` with the acks that came; that is why such
//!   a broadcast never uses a room channel, which would reach only some of the servers
//!   counted.
//!
//! # Bounds
//!
//! Decoding keeps the classic wire's bounds ([`wire`]): the bytes of a message,
//! the values it holds and what it decodes to, the depth of each argument (counted from the
//! argument itself, wherever the message puts it), and the room-list policy for every list
//! of rooms (`opts.rooms`, `opts.except`, the rooms of a join or leave, a fetched socket's
//! rooms).

use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value;

use crate::args::Arg;
use crate::fanout::wire::{self, WireError};

/// The levels the deepest value of a message sits in: a fetched socket's handshake field,
/// `{data: {sockets: [{handshake: {auth: ...}}]}}`. Arguments sitting less deep (a
/// broadcast's, 4 levels in) are checked one by one against [`wire::MAX_DEPTH`].
const ENVELOPE_DEPTH: usize = 5;

/// `MessageType.BROADCAST`: an event for sockets, acknowledged or not.
pub const BROADCAST: u64 = 3;
/// `MessageType.SOCKETS_JOIN`: targeted sockets join rooms.
pub const SOCKETS_JOIN: u64 = 4;
/// `MessageType.SOCKETS_LEAVE`: targeted sockets leave rooms.
pub const SOCKETS_LEAVE: u64 = 5;
/// `MessageType.DISCONNECT_SOCKETS`: targeted sockets are disconnected.
pub const DISCONNECT_SOCKETS: u64 = 6;
/// `MessageType.FETCH_SOCKETS`: every server is asked for its targeted sockets.
pub const FETCH_SOCKETS: u64 = 7;
/// `MessageType.FETCH_SOCKETS_RESPONSE`: one server's answer to [`FETCH_SOCKETS`].
pub const FETCH_SOCKETS_RESPONSE: u64 = 8;
/// `MessageType.SERVER_SIDE_EMIT`: an event for the servers themselves.
pub const SERVER_SIDE_EMIT: u64 = 9;
/// `MessageType.SERVER_SIDE_EMIT_RESPONSE`: one server's answer to an acknowledged
/// [`SERVER_SIDE_EMIT`].
pub const SERVER_SIDE_EMIT_RESPONSE: u64 = 10;
/// `MessageType.BROADCAST_CLIENT_COUNT`: how many sockets of one server an acknowledged
/// broadcast reached.
pub const BROADCAST_CLIENT_COUNT: u64 = 11;
/// `MessageType.BROADCAST_ACK`: one socket's acknowledgement of a broadcast.
pub const BROADCAST_ACK: u64 = 12;

/// Which room channels a server subscribes to, and where it publishes a broadcast to one
/// room: the adapter's `subscriptionMode`. Each room channel is `<key>#<nsp>#<room>#`.
///
/// The subscription mode (`subscriptionMode`) decides which rooms have a channel:
///
/// | mode | rooms subscribed (on the server holding them) | a broadcast to exactly one room, without ack, is published on |
/// | --- | --- | --- |
/// | `static` | none | the main channel |
/// | `dynamic` (the default) | public rooms: those that are not the id of one of its own sockets | the room's channel, unless the room's name is 20 UTF-16 units long (it "looks like a socket id"); then the main channel |
/// | `dynamic-private` | every room, socket ids included | the room's channel |
///
/// Everything else goes to the main channel: broadcasts to no room or to several, every
/// acknowledged broadcast (its answers are counted against every server, see below), and
/// every other message type. Since every server subscribes to the main channel, a message
/// published there reaches all of them whatever their mode, but a broadcast published on a
/// room channel reaches only the servers that subscribed to it: a fleet must not mix a
/// `static` server with `dynamic` publishers, nor a `dynamic` one with `dynamic-private`
/// publishers (which publish socket-id broadcasts on channels `dynamic` servers never take).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubscriptionMode {
    /// `static`: the main channel and the response channel only.
    Static,
    /// `dynamic` (the adapter's default): a channel per public room too.
    #[default]
    Dynamic,
    /// `dynamic-private`: a channel per room, socket ids included.
    DynamicPrivate,
}

impl SubscriptionMode {
    /// Whether a server in this mode subscribes to the channel of one of its rooms;
    /// `own_socket_id`: the room is the id of one of this server's sockets (the adapter's
    /// `sids.has(room)`).
    pub fn subscribes_to_room(self, own_socket_id: bool) -> bool {
        match self {
            Self::Static => false,
            Self::Dynamic => !own_socket_id,
            Self::DynamicPrivate => true,
        }
    }
}

/// Reads the JavaScript option's values: `static`, `dynamic`, `dynamic-private`.
impl std::str::FromStr for SubscriptionMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "static" => Ok(Self::Static),
            "dynamic" => Ok(Self::Dynamic),
            "dynamic-private" => Ok(Self::DynamicPrivate),
            other => Err(format!(
                "a subscription mode is static, dynamic or dynamic-private, not {other:?}"
            )),
        }
    }
}

/// The channel every server of `nsp` subscribes to: `<key>#<nsp>#`.
pub fn main_channel(key: &str, nsp: &str) -> String {
    format!("{key}#{nsp}#")
}

/// The channel the answers to the adapter `uid` of `nsp` go to: `<key>#<nsp>#<uid>#`.
pub fn response_channel(key: &str, nsp: &str, uid: &str) -> String {
    format!("{key}#{nsp}#{uid}#")
}

/// The channel of one room of `nsp`, in the dynamic modes: `<key>#<nsp>#<room>#`.
pub fn room_channel(key: &str, nsp: &str, room: &str) -> String {
    format!("{key}#{nsp}#{room}#")
}

/// Where the adapter in `mode` publishes `message`: a broadcast without acknowledgement to
/// exactly one room may go to that room's channel, everything else to the main channel.
/// Answers are not published here but on the asker's [`response_channel`].
pub fn publish_channel(key: &str, mode: SubscriptionMode, message: &Message) -> String {
    if let Body::Broadcast(b) = &message.body
        && b.request_id.is_none()
        && let [room] = b.target.rooms.as_slice()
    {
        // The adapter's `looksLikeASocketId`: JavaScript's length, in UTF-16 code units.
        let looks_like_a_socket_id = room.encode_utf16().count() == 20;
        let own_channel = match mode {
            SubscriptionMode::Static => false,
            SubscriptionMode::Dynamic => !looks_like_a_socket_id,
            SubscriptionMode::DynamicPrivate => true,
        };
        if own_channel {
            return room_channel(key, &message.nsp, room);
        }
    }
    main_channel(key, &message.nsp)
}

/// The sockets an operation targets: those in `rooms` (every socket when empty) but those in
/// `except`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Target {
    /// The targeted rooms (or socket ids).
    pub rooms: Vec<String>,
    /// The rooms (or socket ids) left out.
    pub except: Vec<String>,
}

/// The flags of a broadcast that cross the wire.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Flags {
    /// `volatile`, when set.
    pub volatile: Option<bool>,
    /// `compress`, when set (`false`: turned off).
    pub compress: Option<bool>,
    /// `timeout` of an acknowledged broadcast: how long the asker waits.
    pub timeout: Option<Duration>,
}

/// An event for the targeted sockets of every server (type 3).
#[derive(Debug, Clone, PartialEq)]
pub struct Broadcast {
    /// The event name.
    pub event: String,
    /// Its arguments.
    pub args: Vec<Arg>,
    /// Set when the asker collects the sockets' acknowledgements.
    pub request_id: Option<String>,
    /// The sockets it goes to.
    pub target: Target,
    /// Its flags.
    pub flags: Flags,
}

/// One socket in a server's answer to [`Body::FetchSockets`].
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedSocket {
    /// The socket id.
    pub id: String,
    /// Its handshake, a map (`headers`, `time`, `address`, `query`, `auth`...), as the
    /// answering server has it.
    pub handshake: Arg,
    /// Its rooms, its own id included.
    pub rooms: Vec<String>,
    /// Its `data`.
    pub data: Arg,
}

/// What a message says, by type.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// Type 3.
    Broadcast(Broadcast),
    /// Type 4: the targeted sockets join `rooms`.
    SocketsJoin {
        /// The sockets.
        target: Target,
        /// The rooms they join.
        rooms: Vec<String>,
    },
    /// Type 5: the targeted sockets leave `rooms`.
    SocketsLeave {
        /// The sockets.
        target: Target,
        /// The rooms they leave.
        rooms: Vec<String>,
    },
    /// Type 6: the targeted sockets are disconnected.
    DisconnectSockets {
        /// The sockets.
        target: Target,
        /// Close their underlying connection too.
        close: bool,
    },
    /// Type 7: every server is asked for its targeted sockets.
    FetchSockets {
        /// The sockets.
        target: Target,
        /// The asker's id of this request.
        request_id: String,
    },
    /// Type 8: one server's targeted sockets.
    FetchSocketsResponse {
        /// The request answered.
        request_id: String,
        /// The sockets, possibly none.
        sockets: Vec<FetchedSocket>,
    },
    /// Type 9: `io.serverSideEmit(event, ...args)`.
    ServerSideEmit {
        /// Set when the emitter waits for one answer from each server.
        request_id: Option<String>,
        /// The event name.
        event: String,
        /// Its arguments.
        args: Vec<Arg>,
    },
    /// Type 10: one server's answer to an acknowledged server-side emit.
    ServerSideEmitResponse {
        /// The request answered.
        request_id: String,
        /// The first argument its listener answered with (`null` for none).
        value: Arg,
    },
    /// Type 11: how many sockets of one server an acknowledged broadcast reached.
    BroadcastClientCount {
        /// The broadcast answered.
        request_id: String,
        /// How many acknowledgements to expect from that server.
        client_count: u64,
    },
    /// Type 12: one socket's acknowledgement.
    BroadcastAck {
        /// The broadcast answered.
        request_id: String,
        /// The first argument the socket acknowledged with (`null` for none).
        value: Arg,
    },
}

impl Body {
    /// Its `MessageType`.
    pub fn kind(&self) -> u64 {
        match self {
            Self::Broadcast(_) => BROADCAST,
            Self::SocketsJoin { .. } => SOCKETS_JOIN,
            Self::SocketsLeave { .. } => SOCKETS_LEAVE,
            Self::DisconnectSockets { .. } => DISCONNECT_SOCKETS,
            Self::FetchSockets { .. } => FETCH_SOCKETS,
            Self::FetchSocketsResponse { .. } => FETCH_SOCKETS_RESPONSE,
            Self::ServerSideEmit { .. } => SERVER_SIDE_EMIT,
            Self::ServerSideEmitResponse { .. } => SERVER_SIDE_EMIT_RESPONSE,
            Self::BroadcastClientCount { .. } => BROADCAST_CLIENT_COUNT,
            Self::BroadcastAck { .. } => BROADCAST_ACK,
        }
    }

    /// Whether it answers a request (types 8, 10, 11 and 12), and so is published on the
    /// asker's [`response_channel`] and matched by its request id alone.
    #[cfg(test)]
    pub fn is_answer(&self) -> bool {
        matches!(
            self,
            Self::FetchSocketsResponse { .. }
                | Self::ServerSideEmitResponse { .. }
                | Self::BroadcastClientCount { .. }
                | Self::BroadcastAck { .. }
        )
    }
}

/// One message of the sharded wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The publishing adapter's uid.
    pub uid: String,
    /// Its namespace.
    pub nsp: String,
    /// What it says.
    pub body: Body,
}

/// Encodes a message as the JavaScript adapter does: JSON text, or MessagePack when a type
/// that may carry binary data holds some (the [module docs](self)). Refused, before anything
/// is published, what every receiver would refuse or could not deliver as sent: a room list
/// over [`wire::MAX_ROOMS`], arguments nested deeper than [`wire::MAX_DEPTH`] or holding a
/// lone surrogate. Flags are written in the order `volatile`, `compress`, `timeout`.
pub fn encode(m: &Message) -> Result<Vec<u8>, WireError> {
    check_publishable(&m.body)?;
    let mut data = IndexMap::new();
    let mut put = |name: &str, value: Arg| {
        data.insert(name.to_owned(), value);
    };
    match &m.body {
        Body::Broadcast(b) => {
            put("packet", event_packet(&b.event, &b.args));
            if let Some(id) = &b.request_id {
                put("requestId", Arg::from(id.as_str()));
            }
            put("opts", opts(&b.target, &b.flags));
        }
        Body::SocketsJoin { target, rooms } | Body::SocketsLeave { target, rooms } => {
            put("opts", opts(target, &Flags::default()));
            put("rooms", strings(rooms));
        }
        Body::DisconnectSockets { target, close } => {
            put("opts", opts(target, &Flags::default()));
            put("close", Arg::Bool(*close));
        }
        Body::FetchSockets { target, request_id } => {
            put("opts", opts(target, &Flags::default()));
            put("requestId", Arg::from(request_id.as_str()));
        }
        Body::FetchSocketsResponse {
            request_id,
            sockets,
        } => {
            put("requestId", Arg::from(request_id.as_str()));
            let sockets = sockets
                .iter()
                .map(|s| {
                    object([
                        ("id", Arg::from(s.id.as_str())),
                        ("handshake", s.handshake.clone()),
                        ("rooms", strings(&s.rooms)),
                        ("data", s.data.clone()),
                    ])
                })
                .collect();
            put("sockets", Arg::Array(sockets));
        }
        Body::ServerSideEmit {
            request_id,
            event,
            args,
        } => {
            if let Some(id) = request_id {
                put("requestId", Arg::from(id.as_str()));
            }
            let mut packet = Vec::with_capacity(args.len() + 1);
            packet.push(Arg::from(event.as_str()));
            packet.extend(args.iter().cloned());
            put("packet", Arg::Array(packet));
        }
        Body::ServerSideEmitResponse { request_id, value }
        | Body::BroadcastAck { request_id, value } => {
            put("requestId", Arg::from(request_id.as_str()));
            put("packet", value.clone());
        }
        Body::BroadcastClientCount {
            request_id,
            client_count,
        } => {
            put("requestId", Arg::from(request_id.as_str()));
            put("clientCount", Arg::from(*client_count));
        }
    }
    let message = object([
        ("type", Arg::from(m.body.kind())),
        ("data", Arg::Object(data)),
        ("uid", Arg::from(m.uid.as_str())),
        ("nsp", Arg::from(m.nsp.as_str())),
    ]);
    // Only the types that may carry binary data hold arguments, and a lone surrogate was
    // refused above, so what JSON cannot hold is binary data of those types.
    Ok(match message.to_json() {
        Some(json) => Value::to_string(&json).into_bytes(),
        None => {
            let mut out = Vec::with_capacity(64);
            rmpv::encode::write_value(&mut out, &wire::arg_to_mp(&message))
                .expect("writing to a Vec cannot fail");
            out
        }
    })
}

/// Decodes a message, JSON text or MessagePack, within the bounds of the [module
/// docs](self). `Ok(None)` for a type this wire does not carry (the heartbeats of
/// `ClusterAdapterWithHeartbeat`, a type of a later version); an error for what no adapter
/// would act on (no uid or namespace, no `data`, no `opts` where the type needs one, an event
/// without a name) or what the bounds refuse.
pub fn decode(bytes: &[u8]) -> Result<Option<Message>, WireError> {
    let m = wire::decode_message_within(bytes, "sharded message", ENVELOPE_DEPTH)?;
    let Some(kind) = m.get("type").and_then(Arg::as_i64) else {
        return Err(WireError("a message without a type".into()));
    };
    if !(BROADCAST as i64..=BROADCAST_ACK as i64).contains(&kind) {
        return Ok(None);
    }
    let text = |name: &str| {
        m.get(name)
            .and_then(Arg::as_str)
            .map(str::to_owned)
            .ok_or_else(|| WireError(format!("a message without a {name}")))
    };
    let (uid, nsp) = (text("uid")?, text("nsp")?);
    let Some(data) = m.get("data").filter(|d| d.as_object().is_some()) else {
        return Err(WireError(format!("a message of type {kind} without data")));
    };
    let request_id = || -> Result<String, WireError> {
        optional_id(data)?.ok_or_else(|| WireError(format!("type {kind} without a requestId")))
    };
    let rooms = || wire::room_list(data.get("rooms"), "rooms");
    let body = match kind as u64 {
        BROADCAST => {
            let packet = data.get("packet");
            let packet_type = packet.and_then(|p| p.get("type")).and_then(Arg::as_i64);
            // The adapter publishes EVENT whatever the data; BINARY_EVENT is taken too.
            if !matches!(packet_type, Some(2 | 5)) {
                return Err(WireError(format!(
                    "packet type {packet_type:?} is not an EVENT"
                )));
            }
            let (event, args) = event_and_args(packet.and_then(|p| p.get("data")))?;
            let (target, flags) = read_opts(data)?;
            Body::Broadcast(Broadcast {
                event,
                args,
                request_id: optional_id(data)?,
                target,
                flags,
            })
        }
        SOCKETS_JOIN => Body::SocketsJoin {
            target: read_opts(data)?.0,
            rooms: rooms()?,
        },
        SOCKETS_LEAVE => Body::SocketsLeave {
            target: read_opts(data)?.0,
            rooms: rooms()?,
        },
        DISCONNECT_SOCKETS => Body::DisconnectSockets {
            target: read_opts(data)?.0,
            close: data.get("close").and_then(Arg::as_bool).unwrap_or(false),
        },
        FETCH_SOCKETS => Body::FetchSockets {
            target: read_opts(data)?.0,
            request_id: request_id()?,
        },
        FETCH_SOCKETS_RESPONSE => {
            let Some(Arg::Array(sockets)) = data.get("sockets") else {
                return Err(WireError("an answer without its sockets".into()));
            };
            Body::FetchSocketsResponse {
                request_id: request_id()?,
                sockets: sockets
                    .iter()
                    .enumerate()
                    .map(|(i, s)| fetched_socket(s, i))
                    .collect::<Result<_, _>>()?,
            }
        }
        SERVER_SIDE_EMIT => {
            let (event, args) = event_and_args(data.get("packet"))?;
            Body::ServerSideEmit {
                request_id: optional_id(data)?,
                event,
                args,
            }
        }
        SERVER_SIDE_EMIT_RESPONSE => Body::ServerSideEmitResponse {
            request_id: request_id()?,
            value: answer_value(data)?,
        },
        BROADCAST_CLIENT_COUNT => Body::BroadcastClientCount {
            request_id: request_id()?,
            client_count: data
                .get("clientCount")
                .and_then(Arg::as_i64)
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| WireError("a client count that is no count".into()))?,
        },
        _ => Body::BroadcastAck {
            request_id: request_id()?,
            value: answer_value(data)?,
        },
    };
    Ok(Some(Message { uid, nsp, body }))
}

/// [`encode`]'s refusals.
fn check_publishable(body: &Body) -> Result<(), WireError> {
    let rooms = |name: &str, rooms: &[String]| {
        if rooms.len() > wire::MAX_ROOMS {
            return Err(WireError(format!(
                "{name} lists {} rooms, over the bound of {}",
                rooms.len(),
                wire::MAX_ROOMS
            )));
        }
        Ok(())
    };
    let target = |t: &Target| {
        rooms("opts.rooms", &t.rooms)?;
        rooms("opts.except", &t.except)
    };
    match body {
        Body::Broadcast(b) => {
            target(&b.target)?;
            wire::check_args(&b.args)
        }
        Body::SocketsJoin {
            target: t,
            rooms: r,
        }
        | Body::SocketsLeave {
            target: t,
            rooms: r,
        } => {
            target(t)?;
            rooms("rooms", r)
        }
        Body::DisconnectSockets { target: t, .. } | Body::FetchSockets { target: t, .. } => {
            target(t)
        }
        Body::FetchSocketsResponse { sockets, .. } => sockets.iter().try_for_each(|s| {
            rooms("rooms", &s.rooms)?;
            check_socket_values(s)
        }),
        Body::ServerSideEmit { args, .. } => wire::check_args(args),
        Body::ServerSideEmitResponse { value, .. } | Body::BroadcastAck { value, .. } => {
            wire::check_args(std::slice::from_ref(value))
        }
        Body::BroadcastClientCount { .. } => Ok(()),
    }
}

/// The depth (and lone surrogates) of a fetched socket's values, each counted from itself as
/// an argument is: its `data`, and each field of its handshake.
fn check_socket_values(s: &FetchedSocket) -> Result<(), WireError> {
    wire::check_args(std::slice::from_ref(&s.data))?;
    match &s.handshake {
        Arg::Object(fields) => fields
            .values()
            .try_for_each(|v| wire::check_args(std::slice::from_ref(v))),
        other => wire::check_args(std::slice::from_ref(other)),
    }
}

/// `{type: 2, data: [event, ...args]}`, as the adapter publishes the packet of a broadcast.
fn event_packet(event: &str, args: &[Arg]) -> Arg {
    let mut data = Vec::with_capacity(args.len() + 1);
    data.push(Arg::from(event));
    data.extend(args.iter().cloned());
    object([("type", Arg::from(2u64)), ("data", Arg::Array(data))])
}

/// `{rooms, except, flags}`.
fn opts(target: &Target, flags: &Flags) -> Arg {
    let mut f = IndexMap::new();
    if let Some(v) = flags.volatile {
        f.insert("volatile".to_owned(), Arg::Bool(v));
    }
    if let Some(c) = flags.compress {
        f.insert("compress".to_owned(), Arg::Bool(c));
    }
    if let Some(t) = flags.timeout {
        let ms = u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
        f.insert("timeout".to_owned(), Arg::from(ms));
    }
    object([
        ("rooms", strings(&target.rooms)),
        ("except", strings(&target.except)),
        ("flags", Arg::Object(f)),
    ])
}

/// `data.opts`, which every operation on sockets carries (the JavaScript adapter throws on a
/// message without it).
fn read_opts(data: &Arg) -> Result<(Target, Flags), WireError> {
    let Some(opts) = data.get("opts").filter(|o| o.as_object().is_some()) else {
        return Err(WireError("an operation on sockets without opts".into()));
    };
    let target = Target {
        rooms: wire::room_list(opts.get("rooms"), "opts.rooms")?,
        except: wire::room_list(opts.get("except"), "opts.except")?,
    };
    let flags = opts.get("flags");
    let flag = |name: &str| flags.and_then(|f| f.get(name)).and_then(Arg::as_bool);
    let timeout = flags
        .and_then(|f| f.get("timeout"))
        .and_then(Arg::as_f64)
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .map(|ms| Duration::from_millis(ms.min(u32::MAX.into()) as u64));
    Ok((
        target,
        Flags {
            volatile: flag("volatile"),
            compress: flag("compress"),
            timeout,
        },
    ))
}

/// `data.requestId` when present: a string, or an integer as its text; anything else is
/// refused, since the JavaScript adapter would take it for a request and answer it.
fn optional_id(data: &Arg) -> Result<Option<String>, WireError> {
    match data.get("requestId") {
        None => Ok(None),
        Some(Arg::String(s)) => Ok(Some(s.clone())),
        Some(Arg::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        Some(_) => Err(WireError("a requestId that is no id".into())),
    }
}

/// `[event, ...args]`, each argument within [`wire::MAX_DEPTH`].
fn event_and_args(packet: Option<&Arg>) -> Result<(String, Vec<Arg>), WireError> {
    let Some(Arg::Array(items)) = packet else {
        return Err(WireError("no data array".into()));
    };
    let mut items = items.iter();
    let event = items
        .next()
        .and_then(Arg::as_str)
        .ok_or_else(|| WireError("the event name is missing".into()))?
        .to_owned();
    let args: Vec<Arg> = items.cloned().collect();
    wire::check_args(&args)?;
    Ok((event, args))
}

/// The `packet` of an answer: JavaScript leaves out an `undefined` one, which is `null`.
fn answer_value(data: &Arg) -> Result<Arg, WireError> {
    let value = data.get("packet").cloned().unwrap_or_default();
    wire::check_args(std::slice::from_ref(&value))?;
    Ok(value)
}

/// The `i`th socket of an answer to [`Body::FetchSockets`].
fn fetched_socket(s: &Arg, i: usize) -> Result<FetchedSocket, WireError> {
    let id = s
        .get("id")
        .and_then(Arg::as_str)
        .ok_or_else(|| WireError(format!("sockets[{i}] has no id")))?
        .to_owned();
    let socket = FetchedSocket {
        id,
        handshake: s.get("handshake").cloned().unwrap_or_default(),
        rooms: wire::room_list(s.get("rooms"), "rooms")?,
        data: s.get("data").cloned().unwrap_or_default(),
    };
    check_socket_values(&socket)?;
    Ok(socket)
}

fn strings(items: &[String]) -> Arg {
    Arg::Array(items.iter().map(|s| Arg::from(s.as_str())).collect())
}

fn object<const N: usize>(fields: [(&str, Arg); N]) -> Arg {
    Arg::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The uids of the two servers of the capture (A asks, B answers).
    const A: &str = "22580c26a967c78c";
    const B: &str = "c81d1484cdcdde13";
    /// The id of the capture's only socket, on B.
    const SOCKET: &str = "1eLKyV8o2OURdEtcAAAA";

    /// What `tests/js/sharded-capture.mjs` recorded, in the mode `dynamic` unless named:
    /// (what A or B did, the channel, the bytes: JSON text as it is, MessagePack in hex).
    const BROADCAST_ALL: (&str, &[u8]) = (
        "socket.io#/#",
        br#"{"type":3,"data":{"packet":{"type":2,"data":["ev",1,"two",{"three":[3]}]},"opts":{"rooms":[],"except":[],"flags":{}}},"uid":"22580c26a967c78c","nsp":"/"}"#,
    );
    const BROADCAST_ROOM_BINARY: (&str, &str) = (
        "socket.io#/#room1#",
        "84a47479706503a46461746182a67061636b657482a47479706502a46461746192a26576c402deada46f70747383a5726f6f6d7391a5726f6f6d31a665786365707490a5666c61677380a3756964b032323538306332366139363763373863a36e7370a12f",
    );
    const BROADCAST_ROOMS_EXCEPT: (&str, &[u8]) = (
        "socket.io#/#",
        br#"{"type":3,"data":{"packet":{"type":2,"data":["ev",2.5]},"opts":{"rooms":["room1","room2"],"except":["room3"],"flags":{}}},"uid":"22580c26a967c78c","nsp":"/"}"#,
    );
    const BROADCAST_SOCKET_ID: (&str, &[u8]) = (
        "socket.io#/#",
        br#"{"type":3,"data":{"packet":{"type":2,"data":["ev",null]},"opts":{"rooms":["1eLKyV8o2OURdEtcAAAA"],"except":[],"flags":{}}},"uid":"22580c26a967c78c","nsp":"/"}"#,
    );
    /// In the mode `dynamic-private`, from another run (other ids).
    const PRIVATE_BROADCAST_SOCKET_ID: (&str, &[u8]) = (
        "socket.io#/#BL_1BKAW0honybjbAAAB#",
        br#"{"type":3,"data":{"packet":{"type":2,"data":["ev",null]},"opts":{"rooms":["BL_1BKAW0honybjbAAAB"],"except":[],"flags":{}}},"uid":"021b55bcc46d096a","nsp":"/"}"#,
    );
    const BROADCAST_VOLATILE: (&str, &[u8]) = (
        "socket.io#/#",
        br#"{"type":3,"data":{"packet":{"type":2,"data":["ev",true]},"opts":{"rooms":[],"except":[],"flags":{"volatile":true,"compress":false}}},"uid":"22580c26a967c78c","nsp":"/"}"#,
    );
    const BROADCAST_WITH_ACK: (&str, &[u8]) = (
        "socket.io#/#",
        br#"{"type":3,"data":{"packet":{"type":2,"data":["ack-event","x"]},"requestId":"b81e69847fca6f7a","opts":{"rooms":["room1"],"except":[],"flags":{"timeout":2000}}},"uid":"22580c26a967c78c","nsp":"/"}"#,
    );
    const CLIENT_COUNT: (&str, &[u8]) = (
        "socket.io#/#22580c26a967c78c#",
        br#"{"type":11,"data":{"requestId":"b81e69847fca6f7a","clientCount":1},"uid":"c81d1484cdcdde13","nsp":"/"}"#,
    );
    const ACK: (&str, &[u8]) = (
        "socket.io#/#22580c26a967c78c#",
        br#"{"type":12,"data":{"requestId":"b81e69847fca6f7a","packet":"ack:x"},"uid":"c81d1484cdcdde13","nsp":"/"}"#,
    );
    const SOCKETS_JOIN_: (&str, &[u8]) = (
        "socket.io#/#",
        br#"{"type":4,"data":{"opts":{"rooms":["room1"],"except":[],"flags":{}},"rooms":["room4","room5"]},"uid":"22580c26a967c78c","nsp":"/"}"#,
    );
    const SOCKETS_LEAVE_: (&str, &[u8]) = (
        "socket.io#/#",
        br#"{"type":5,"data":{"opts":{"rooms":[],"except":[],"flags":{}},"rooms":["room4"]},"uid":"22580c26a967c78c","nsp":"/"}"#,
    );
    const FETCH: (&str, &[u8]) = (
        "socket.io#/#",
        br#"{"type":7,"data":{"opts":{"rooms":["room1"],"except":["room9"],"flags":{}},"requestId":"039b0f61d20ddb56"},"uid":"22580c26a967c78c","nsp":"/"}"#,
    );
    const FETCH_RESPONSE: (&str, &str) = (
        "socket.io#/#22580c26a967c78c#",
        "84a47479706508a46461746182a9726571756573744964b030333962306636316432306464623536a7736f636b6574739184a26964b431654c4b7956386f324f55526445746341414141a968616e647368616b6589a76865616465727386b57365632d776562736f636b65742d76657273696f6ea23133b17365632d776562736f636b65742d6b6579b87873366c793773412f46463262674c553547774956513d3daa636f6e6e656374696f6ea755706772616465a775706772616465a9776562736f636b6574b87365632d776562736f636b65742d657874656e73696f6e73d92a7065726d6573736167652d6465666c6174653b20636c69656e745f6d61785f77696e646f775f62697473a4686f7374af3132372e302e302e313a3333373035a474696d65d93e5468752044656320303320323032362031313a31313a303620474d542b303030302028436f6f7264696e6174656420556e6976657273616c2054696d6529a761646472657373a93132372e302e302e31a778646f6d61696ec2a6736563757265c2a6697373756564cf000001a23b99d362a375726cd9252f736f636b65742e696f2f3f45494f3d34267472616e73706f72743d776562736f636b6574a5717565727982a345494fa134a97472616e73706f7274a9776562736f636b6574a46175746880a5726f6f6d7393b431654c4b7956386f324f55526445746341414141a5726f6f6d31a5726f6f6d35a46461746182a475736572a27531a6617661746172c403010203a3756964b063383164313438346364636464653133a36e7370a12f",
    );
    const SERVER_SIDE_EMIT_: (&str, &[u8]) = (
        "socket.io#/#",
        br#"{"type":9,"data":{"packet":["hello","world",7]},"uid":"22580c26a967c78c","nsp":"/"}"#,
    );
    const SERVER_SIDE_EMIT_BINARY: (&str, &str) = (
        "socket.io#/#",
        "84a47479706509a46461746181a67061636b657492a568656c6c6fc40362696ea3756964b032323538306332366139363763373863a36e7370a12f",
    );
    const SERVER_SIDE_EMIT_WITH_ACK: (&str, &[u8]) = (
        "socket.io#/#",
        br#"{"type":9,"data":{"requestId":"864abb6d51929cbc","packet":["question",21]},"uid":"22580c26a967c78c","nsp":"/"}"#,
    );
    const SERVER_SIDE_ANSWER: (&str, &[u8]) = (
        "socket.io#/#22580c26a967c78c#",
        br#"{"type":10,"data":{"requestId":"864abb6d51929cbc","packet":{"answer":42}},"uid":"c81d1484cdcdde13","nsp":"/"}"#,
    );
    const NAMESPACE: (&str, &[u8]) = (
        "socket.io#/admin#",
        br#"{"type":3,"data":{"packet":{"type":2,"data":["ev","admin"]},"opts":{"rooms":[],"except":[],"flags":{}}},"uid":"c79e86a97559107a","nsp":"/admin"}"#,
    );
    const DISCONNECT: (&str, &[u8]) = (
        "socket.io#/#",
        br#"{"type":6,"data":{"opts":{"rooms":["room1"],"except":[],"flags":{}},"close":true},"uid":"22580c26a967c78c","nsp":"/"}"#,
    );

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn message(uid: &str, body: Body) -> Message {
        Message {
            uid: uid.into(),
            nsp: "/".into(),
            body,
        }
    }

    fn target(rooms: &[&str], except: &[&str]) -> Target {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        Target {
            rooms: names(rooms),
            except: names(except),
        }
    }

    fn broadcast(event: &str, args: Vec<Arg>, target: Target) -> Broadcast {
        Broadcast {
            event: event.into(),
            args,
            request_id: None,
            target,
            flags: Flags::default(),
        }
    }

    /// `bytes` decodes to `expected`, which encodes back to `bytes`, byte for byte, and goes
    /// to `channel` (in `mode`, for what is not an answer).
    fn round_trip(mode: SubscriptionMode, (channel, bytes): (&str, &[u8]), expected: &Message) {
        assert_eq!(decode(bytes).unwrap().as_ref(), Some(expected));
        let encoded = encode(expected).unwrap();
        assert_eq!(
            encoded,
            bytes,
            "{}",
            String::from_utf8_lossy(&encoded).escape_debug()
        );
        let published = if expected.body.is_answer() {
            response_channel(DEFAULT_KEY, &expected.nsp, A)
        } else {
            publish_channel(DEFAULT_KEY, mode, expected)
        };
        assert_eq!(published, channel);
    }

    use crate::fanout::wire::DEFAULT_KEY;
    use SubscriptionMode::{Dynamic, DynamicPrivate, Static};

    #[test]
    fn broadcasts_read_and_write_as_the_sharded_adapter_s() {
        let all = broadcast(
            "ev",
            vec![
                Arg::from(1u64),
                Arg::from("two"),
                json!({"three": [3]}).into(),
            ],
            Target::default(),
        );
        round_trip(Dynamic, BROADCAST_ALL, &message(A, Body::Broadcast(all)));

        let binary = broadcast(
            "ev",
            vec![Arg::Binary(bytes::Bytes::from_static(&[0xde, 0xad]))],
            target(&["room1"], &[]),
        );
        let binary = message(A, Body::Broadcast(binary));
        let bytes = unhex(BROADCAST_ROOM_BINARY.1);
        round_trip(Dynamic, (BROADCAST_ROOM_BINARY.0, &bytes), &binary);
        // `static` keeps every room on the main channel; `dynamic-private` as `dynamic` here.
        assert_eq!(
            publish_channel(DEFAULT_KEY, Static, &binary),
            "socket.io#/#"
        );
        assert_eq!(
            publish_channel(DEFAULT_KEY, DynamicPrivate, &binary),
            "socket.io#/#room1#"
        );

        let several = broadcast(
            "ev",
            vec![Arg::from(2.5)],
            target(&["room1", "room2"], &["room3"]),
        );
        round_trip(
            Dynamic,
            BROADCAST_ROOMS_EXCEPT,
            &message(A, Body::Broadcast(several)),
        );

        let volatile = Broadcast {
            flags: Flags {
                volatile: Some(true),
                compress: Some(false),
                timeout: None,
            },
            ..broadcast("ev", vec![Arg::Bool(true)], Target::default())
        };
        round_trip(
            Dynamic,
            BROADCAST_VOLATILE,
            &message(A, Body::Broadcast(volatile)),
        );

        let admin = Message {
            uid: "c79e86a97559107a".into(),
            nsp: "/admin".into(),
            body: Body::Broadcast(broadcast("ev", vec![Arg::from("admin")], Target::default())),
        };
        round_trip(Dynamic, NAMESPACE, &admin);
    }

    #[test]
    fn a_socket_id_has_its_own_channel_in_dynamic_private_mode_only() {
        let to_socket = message(
            A,
            Body::Broadcast(broadcast("ev", vec![Arg::Null], target(&[SOCKET], &[]))),
        );
        round_trip(Dynamic, BROADCAST_SOCKET_ID, &to_socket);
        let private = Message {
            uid: "021b55bcc46d096a".into(),
            ..message(
                "",
                Body::Broadcast(broadcast(
                    "ev",
                    vec![Arg::Null],
                    target(&["BL_1BKAW0honybjbAAAB"], &[]),
                )),
            )
        };
        round_trip(DynamicPrivate, PRIVATE_BROADCAST_SOCKET_ID, &private);
        // 20 UTF-16 units, as JavaScript counts a string's length: "é" is one, "😀" two.
        let twenty = format!("{}😀", "é".repeat(18));
        let one_room = |room: &str| {
            message(
                A,
                Body::Broadcast(broadcast("ev", vec![], target(&[room], &[]))),
            )
        };
        assert_eq!(
            publish_channel(DEFAULT_KEY, Dynamic, &one_room(&twenty)),
            "socket.io#/#"
        );
        let nineteen = "é".repeat(19);
        assert_eq!(
            publish_channel(DEFAULT_KEY, Dynamic, &one_room(&nineteen)),
            room_channel(DEFAULT_KEY, "/", &nineteen)
        );
        // Which rooms a server subscribes to: by whether they are its own sockets' ids.
        assert!(!Static.subscribes_to_room(false));
        assert!(Dynamic.subscribes_to_room(false));
        assert!(!Dynamic.subscribes_to_room(true));
        assert!(DynamicPrivate.subscribes_to_room(true));
    }

    #[test]
    fn an_acknowledged_broadcast_stays_on_the_main_channel_and_its_answers_go_to_the_asker() {
        let asked = Broadcast {
            request_id: Some("b81e69847fca6f7a".into()),
            flags: Flags {
                timeout: Some(Duration::from_secs(2)),
                ..Flags::default()
            },
            ..broadcast("ack-event", vec![Arg::from("x")], target(&["room1"], &[]))
        };
        let asked = message(A, Body::Broadcast(asked));
        for mode in [Static, Dynamic, DynamicPrivate] {
            round_trip(mode, BROADCAST_WITH_ACK, &asked);
        }
        let count = Body::BroadcastClientCount {
            request_id: "b81e69847fca6f7a".into(),
            client_count: 1,
        };
        round_trip(Dynamic, CLIENT_COUNT, &message(B, count));
        let ack = Body::BroadcastAck {
            request_id: "b81e69847fca6f7a".into(),
            value: Arg::from("ack:x"),
        };
        round_trip(Dynamic, ACK, &message(B, ack));
    }

    #[test]
    fn remote_joins_leaves_and_disconnects_read_and_write_as_the_adapter_s() {
        let join = Body::SocketsJoin {
            target: target(&["room1"], &[]),
            rooms: vec!["room4".into(), "room5".into()],
        };
        round_trip(Dynamic, SOCKETS_JOIN_, &message(A, join));
        let leave = Body::SocketsLeave {
            target: Target::default(),
            rooms: vec!["room4".into()],
        };
        round_trip(Dynamic, SOCKETS_LEAVE_, &message(A, leave));
        let disconnect = Body::DisconnectSockets {
            target: target(&["room1"], &[]),
            close: true,
        };
        round_trip(Dynamic, DISCONNECT, &message(A, disconnect));
    }

    #[test]
    fn a_fetch_and_its_binary_answer_read_and_write_as_the_adapter_s() {
        let fetch = Body::FetchSockets {
            target: target(&["room1"], &["room9"]),
            request_id: "039b0f61d20ddb56".into(),
        };
        round_trip(Dynamic, FETCH, &message(A, fetch));

        let bytes = unhex(FETCH_RESPONSE.1);
        let Some(Message {
            body:
                Body::FetchSocketsResponse {
                    request_id,
                    sockets,
                },
            ..
        }) = decode(&bytes).unwrap()
        else {
            panic!("not an answer to a fetch");
        };
        assert_eq!(request_id, "039b0f61d20ddb56");
        let [socket] = sockets.as_slice() else {
            panic!("{} sockets", sockets.len());
        };
        assert_eq!(socket.id, SOCKET);
        assert_eq!(socket.rooms, [SOCKET, "room1", "room5"]);
        assert_eq!(socket.data.get("user").and_then(Arg::as_str), Some("u1"));
        assert_eq!(
            socket
                .data
                .get("avatar")
                .and_then(Arg::as_bytes)
                .map(|b| b.to_vec()),
            Some(vec![1, 2, 3])
        );
        let handshake = &socket.handshake;
        assert_eq!(
            handshake.get("address").and_then(Arg::as_str),
            Some("127.0.0.1")
        );
        assert_eq!(
            handshake.get("issued").and_then(Arg::as_i64),
            Some(1_796_296_266_594)
        );
        assert_eq!(handshake.get("auth"), Some(&Arg::Object(IndexMap::new())));
        let answer = message(
            B,
            Body::FetchSocketsResponse {
                request_id,
                sockets,
            },
        );
        round_trip(Dynamic, (FETCH_RESPONSE.0, &bytes), &answer);
    }

    #[test]
    fn server_side_emits_and_their_answers_read_and_write_as_the_adapter_s() {
        let emit = Body::ServerSideEmit {
            request_id: None,
            event: "hello".into(),
            args: vec![Arg::from("world"), Arg::from(7u64)],
        };
        round_trip(Dynamic, SERVER_SIDE_EMIT_, &message(A, emit));
        let binary = Body::ServerSideEmit {
            request_id: None,
            event: "hello".into(),
            args: vec![Arg::Binary(bytes::Bytes::from_static(b"bin"))],
        };
        let bytes = unhex(SERVER_SIDE_EMIT_BINARY.1);
        round_trip(
            Dynamic,
            (SERVER_SIDE_EMIT_BINARY.0, &bytes),
            &message(A, binary),
        );
        let asked = Body::ServerSideEmit {
            request_id: Some("864abb6d51929cbc".into()),
            event: "question".into(),
            args: vec![Arg::from(21u64)],
        };
        round_trip(Dynamic, SERVER_SIDE_EMIT_WITH_ACK, &message(A, asked));
        let answer = Body::ServerSideEmitResponse {
            request_id: "864abb6d51929cbc".into(),
            value: json!({"answer": 42}).into(),
        };
        round_trip(Dynamic, SERVER_SIDE_ANSWER, &message(B, answer));
        // An answer JavaScript left `undefined` has no `packet`: `null`.
        let empty = br#"{"type":10,"data":{"requestId":"r"},"uid":"u","nsp":"/"}"#;
        let Some(Message {
            body: Body::ServerSideEmitResponse { value, .. },
            ..
        }) = decode(empty).unwrap()
        else {
            panic!("not an answer");
        };
        assert_eq!(value, Arg::Null);
    }

    #[test]
    fn heartbeats_and_later_types_are_not_this_wire_s() {
        for kind in [1, 2, 13, 99] {
            let text = format!(r#"{{"type":{kind},"uid":"u","nsp":"/"}}"#);
            assert_eq!(decode(text.as_bytes()).unwrap(), None, "type {kind}");
        }
    }

    #[test]
    fn what_no_adapter_would_act_on_is_refused() {
        let refused = [
            // No uid, no namespace, no data, no opts where the type needs them.
            &br#"{"type":4,"data":{"opts":{},"rooms":["a"]},"nsp":"/"}"#[..],
            br#"{"type":4,"data":{"opts":{},"rooms":["a"]},"uid":"u"}"#,
            br#"{"type":6,"uid":"u","nsp":"/"}"#,
            br#"{"type":6,"data":{"close":true},"uid":"u","nsp":"/"}"#,
            // A room list that is a string (JavaScript would take it letter by letter).
            br#"{"type":4,"data":{"opts":{"rooms":"lobby"},"rooms":["a"]},"uid":"u","nsp":"/"}"#,
            br#"{"type":5,"data":{"opts":{},"rooms":[true]},"uid":"u","nsp":"/"}"#,
            // A packet that is not an event, or without its name.
            br#"{"type":3,"data":{"packet":{"type":3,"data":["e"]},"opts":{}},"uid":"u","nsp":"/"}"#,
            br#"{"type":9,"data":{"packet":[1]},"uid":"u","nsp":"/"}"#,
            // Answers without their request, a count that is no count, an id that is no id.
            br#"{"type":8,"data":{"sockets":[]},"uid":"u","nsp":"/"}"#,
            br#"{"type":11,"data":{"requestId":"r","clientCount":-1},"uid":"u","nsp":"/"}"#,
            br#"{"type":7,"data":{"opts":{},"requestId":true},"uid":"u","nsp":"/"}"#,
            // A fetched socket without an id.
            br#"{"type":8,"data":{"requestId":"r","sockets":[{"rooms":[]}]},"uid":"u","nsp":"/"}"#,
        ];
        for bytes in refused {
            assert!(decode(bytes).is_err(), "{}", String::from_utf8_lossy(bytes));
        }
    }

    /// An argument nesting `levels` arrays one in another.
    fn nested(levels: usize) -> Arg {
        (0..levels).fold(Arg::Null, |inner, _| Arg::Array(vec![inner]))
    }

    #[test]
    fn every_value_may_nest_max_depth_levels_wherever_the_message_puts_it() {
        let deepest = nested(wire::MAX_DEPTH);
        let too_deep = nested(wire::MAX_DEPTH + 1);
        let socket = |data: Arg, auth: Arg| FetchedSocket {
            id: "s".into(),
            handshake: Arg::Object(IndexMap::from([("auth".to_owned(), auth)])),
            rooms: vec![],
            data,
        };
        let bodies = |value: &Arg| {
            [
                Body::Broadcast(broadcast("e", vec![value.clone()], Target::default())),
                Body::ServerSideEmit {
                    request_id: None,
                    event: "e".into(),
                    args: vec![value.clone()],
                },
                Body::BroadcastAck {
                    request_id: "r".into(),
                    value: value.clone(),
                },
                Body::FetchSocketsResponse {
                    request_id: "r".into(),
                    sockets: vec![socket(value.clone(), Arg::Null)],
                },
                Body::FetchSocketsResponse {
                    request_id: "r".into(),
                    sockets: vec![socket(Arg::Null, value.clone())],
                },
            ]
        };
        for (fits, refused) in bodies(&deepest).into_iter().zip(bodies(&too_deep)) {
            let fits = message(A, fits);
            assert_eq!(decode(&encode(&fits).unwrap()).unwrap(), Some(fits));
            let refused = message(A, refused);
            assert!(encode(&refused).is_err(), "{refused:?}");
            // The same message as a sender that does not check would write it, both ways.
            let unchecked = unchecked(&refused);
            let mut packed = Vec::new();
            rmpv::encode::write_value(&mut packed, &wire::arg_to_mp(&unchecked)).unwrap();
            assert!(decode(&packed).is_err(), "{refused:?}");
            let text = unchecked.to_json().unwrap().to_string();
            assert!(decode(text.as_bytes()).is_err(), "{refused:?}");
        }
    }

    /// What [`encode`] would write of `m` without its checks, as one value: a copy of `m`
    /// whose deep values are placeholders is encoded, and the values put back in their place.
    fn unchecked(m: &Message) -> Arg {
        let mut shallow = m.clone();
        let mut values = Vec::new();
        let take = |v: &mut Arg, values: &mut Vec<Arg>| {
            values.push(std::mem::replace(v, Arg::from("\u{0}placeholder")));
        };
        match &mut shallow.body {
            Body::Broadcast(b) => take(&mut b.args[0], &mut values),
            Body::ServerSideEmit { args, .. } => take(&mut args[0], &mut values),
            Body::BroadcastAck { value, .. } => take(value, &mut values),
            Body::FetchSocketsResponse { sockets, .. } => {
                let s = &mut sockets[0];
                take(&mut s.data, &mut values);
                if let Arg::Object(fields) = &mut s.handshake {
                    take(fields.get_mut("auth").unwrap(), &mut values);
                }
            }
            _ => unreachable!(),
        }
        let bytes = encode(&shallow).unwrap();
        let mut tree = wire::decode_message_within(&bytes, "test", ENVELOPE_DEPTH).unwrap();
        restore(&mut tree, &mut values.into_iter());
        tree
    }

    /// Puts `values` back where the placeholders are, in order.
    fn restore(tree: &mut Arg, values: &mut impl Iterator<Item = Arg>) {
        match tree {
            Arg::String(s) if s == "\u{0}placeholder" => *tree = values.next().unwrap(),
            Arg::Array(items) => items.iter_mut().for_each(|v| restore(v, values)),
            Arg::Object(fields) => fields.values_mut().for_each(|v| restore(v, values)),
            _ => {}
        }
    }

    #[test]
    fn what_the_receivers_would_refuse_is_not_published() {
        let rooms: Vec<String> = (0..=wire::MAX_ROOMS).map(|i| i.to_string()).collect();
        let over = [
            Body::Broadcast(broadcast(
                "e",
                vec![],
                Target {
                    rooms: rooms.clone(),
                    except: vec![],
                },
            )),
            Body::SocketsJoin {
                target: Target::default(),
                rooms: rooms.clone(),
            },
            Body::DisconnectSockets {
                target: Target {
                    rooms: vec![],
                    except: rooms,
                },
                close: false,
            },
            Body::ServerSideEmit {
                request_id: None,
                event: "e".into(),
                args: vec![Arg::from_utf16(vec![0xd800])],
            },
        ];
        for body in over {
            assert!(encode(&message(A, body)).is_err());
        }
    }

    #[test]
    fn a_message_over_the_byte_bound_is_refused_before_it_is_read() {
        let mut big = br#"{"type":9,"data":{"packet":["e",""#.to_vec();
        big.extend(std::iter::repeat_n(b'x', wire::MAX_MESSAGE_BYTES));
        big.extend(br#""]},"uid":"u","nsp":"/"}"#);
        assert!(decode(&big).unwrap_err().0.contains("over the bound"));
    }
}
