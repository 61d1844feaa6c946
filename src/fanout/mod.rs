//! Fan-out across instances through Redis, compatible with the JavaScript packages
//! `@socket.io/redis-adapter` (v8) and `@socket.io/redis-emitter` (v5).
//!
//! The wire is the JavaScript adapter's: channels `socket.io#/#` and `socket.io#/#<room>#`,
//! MessagePack `[uid, packet, opts]` (`createShardedAdapter`'s with
//! [`RedisOptions::sharded`]).
//!
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
//!   remote joins, server-side emits.
//! - [`RedisOptions::sharded`]: Redis 7 sharded pub/sub, on a Redis Cluster or one
//!   redis-server 7.

pub mod adapter;
mod connect_error;
mod delivery;
pub mod emitter;
pub mod fleet;
mod fleet_acks;
mod fleet_wire;
pub(crate) mod local_server;
pub mod options;
mod pending_requests;
pub mod redis_fanout;
mod sharded_connections;
mod sharded_messages;
// The wire formats are the fan-out's own business; the tests and benchmarks (feature
// `test-util`) build and read payloads with them.
#[cfg(any(test, feature = "test-util"))]
pub mod sharded_wire;
#[cfg(not(any(test, feature = "test-util")))]
mod sharded_wire;
#[cfg(any(test, feature = "test-util"))]
pub mod wire;
#[cfg(not(any(test, feature = "test-util")))]
mod wire;

pub use adapter::RedisAdapter;
pub use connect_error::{Cause, FanoutError};
pub use delivery::RedisDelivery;
pub use emitter::{DEFAULT_CONNECT_TIMEOUT, Emitter, Target};
pub use fleet::{DEFAULT_REQUESTS_TIMEOUT, Fleet, FleetError, FleetSocket};
pub use options::{DEFAULT_KEEPALIVE_INTERVAL, DEFAULT_KEEPALIVE_TIMEOUT, RedisOptions};
pub use redis_fanout::{
    MAX_ACK_TIMEOUT, MAX_NAMESPACES, MAX_REQUESTS_IN_FLIGHT, RedisFanout,
    SERVER_SIDE_HANDLER_TIMEOUT, WeakFanout,
};
pub use sharded_wire::SubscriptionMode;
pub use wire::{MAX_MESSAGE_BYTES, MAX_ROOMS, WireError};
