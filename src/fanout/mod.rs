//! Fan-out across instances through Redis, compatible with the JavaScript packages
//! `@socket.io/redis-adapter` (v8) and `@socket.io/redis-emitter` (v5).
//!
//! - [`wire`]: the format: channels `socket.io#/#` and `socket.io#/#<room>#`, MessagePack
//!   `[uid, packet, opts]`.
//! - [`RedisFanout`]: the connections of one server instance; what every instance receives
//!   from Redis it delivers to its own sockets.
//! - [`RedisDelivery`]: the bottom of the outbound stack beside
//!   [`LocalDelivery`](crate::outbound::LocalDelivery), publishing each `send` (outbound
//!   layers wrap either).
//! - [`Emitter`]: publishing from a process without a Socket.IO server.
//! - [`RedisOptions`]: how to reach Redis: `rediss://` with a private certificate authority
//!   or a client certificate, ACL users, the subscription's keepalive.
//! - [`RedisAdapter`]: socketioxide's own broadcast operators, fanned out the same way.
//! - [`Fleet`]: every server and socket of the fleet from Rust: fetching sockets and rooms,
//!   remote joins, server-side emits ([`fleet_wire`]: their format).
//! - [`sharded_wire`]: the format of `createShardedAdapter` (Redis 7 sharded pub/sub), spoken
//!   with [`RedisOptions::sharded`], on a Redis Cluster or one redis-server 7.

pub mod adapter;
pub mod connect_error;
pub mod delivery;
pub mod emitter;
pub mod fleet;
pub mod fleet_acks;
pub mod fleet_wire;
pub(crate) mod local_server;
pub mod options;
mod pending_requests;
pub mod redis_fanout;
mod sharded_connections;
mod sharded_messages;
pub mod sharded_wire;
pub mod wire;

pub use adapter::RedisAdapter;
pub use connect_error::{Cause, FanoutError};
pub use delivery::RedisDelivery;
pub use emitter::Emitter;
pub use fleet::{Fleet, FleetError, FleetSocket};
pub use options::RedisOptions;
pub use redis_fanout::{RedisFanout, WeakFanout};
