//! The Redis wire of `createShardedAdapter` of `@socket.io/redis-adapter` (8.3), the adapter
//! on Redis 7's sharded pub/sub (`SPUBLISH` / `SSUBSCRIBE`), as the installed npm code
//! implements it (`dist/sharded-adapter.js`, over socket.io-adapter 2.5's `ClusterAdapter`
//! in `dist/cluster-adapter.js`). It shares nothing with the classic adapter's wire of
//! [`wire`](super::wire) and [`fleet_wire`](super::fleet_wire) but the room-list policy and
//! the bounds: other channels, other messages, other type numbers. The captures in this
//! module's tests come from `tests/js/sharded-capture.mjs`, which regenerates them.
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
//! The subscription mode (`subscriptionMode`) decides which rooms have a channel:
//!
//! | mode | rooms subscribed (on the server holding them) | a broadcast to exactly one room, without ack, is published on |
//! | --- | --- | --- |
//! | `static` | none | the main channel |
//! | `dynamic` (the default) | public rooms: those that are not the id of one of its own sockets | the room's channel, unless the room's name is 20 UTF-16 units long (it "looks like a socket id"); then the main channel |
//! | `dynamic-private` | every room, socket ids included | the room's channel |
//!
//! Everything else goes to the main channel: broadcasts to no room or to several, every
//! acknowledged broadcast (its answers are counted against every server, see below), and
//! every other message type. Since every server subscribes to the main channel, a message
//! published there reaches all of them whatever their mode, but a broadcast published on a
//! room channel reaches only the servers that subscribed to it: a fleet must not mix a
//! `static` server with `dynamic` publishers, nor a `dynamic` one with `dynamic-private`
//! publishers (which publish socket-id broadcasts on channels `dynamic` servers never take).
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
//! Decoding keeps the classic wire's bounds ([`wire`](super::wire)): the bytes of a message,
//! the values it holds and what it decodes to, the depth of each argument (counted from the
//! argument itself, wherever the message puts it), and the room-list policy for every list
//! of rooms (`opts.rooms`, `opts.except`, the rooms of a join or leave, a fetched socket's
//! rooms).
