//! The outbound pipeline: messages to clients, the seeds' `send()`.
//!
//! A [`OutboundMessage`] (`{destination?, topic, data}`) is a request on a second tower service.
//! At the bottom, [`LocalDelivery`] emits to this process's sockets: to a room, to a socket
//! by id (every socket is in the room named after its id), or to everyone. When instances
//! share a Redis, [`RedisDelivery`](crate::fanout::RedisDelivery) takes its place and
//! publishes, so that every instance delivers to its own sockets. Outbound layers wrap either;
//! callers go through the [`Outbound`] handle and never see which stack is below.

mod handle;
mod local;
mod request;

pub use handle::{Delivery, DropReason, Outbound};
pub use local::LocalDelivery;
pub use request::{OutboundMessage, SendError};
