//! The defaults of the server's bounds, in one place: what a client may send, what may wait
//! for it and for the handlers, and how long a write may stall. Each is changed on
//! [`SocketServerBuilder`](crate::SocketServerBuilder) (the auth bounds are fixed).

/// The seeds' examples mount Socket.IO at `/io` (socketioxide's own default is `/socket.io`).
pub const DEFAULT_PATH: &str = "/io";

/// The largest message a client may send, on either transport, unless
/// [`SocketServerBuilder::configure_io`](crate::SocketServerBuilder::configure_io) says otherwise: socket.io's `maxHttpBufferSize`
/// default. A bigger one closes that client's connection, as in socket.io.
pub const DEFAULT_MAX_PAYLOAD: u64 = 1_000_000;

/// How many packets may wait to be written to one client (socketioxide's default is 128).
/// A send to a client whose buffer is full is dropped for that client (and logged), so a
/// burst bigger than the buffer would lose messages for a client that reads normally; the
/// buffer's memory is only taken while packets wait.
pub const DEFAULT_SOCKET_BUFFER: usize = 4096;

/// Bytes read from a WebSocket at a time (socketioxide's default: 4096). The buffer is
/// allocated for every client, idle or not, so its size is a per-client cost; frames larger
/// than it are still read whole, over more reads.
pub const DEFAULT_WS_READ_BUFFER: usize = 1024;

/// How many events of one socket may wait while an earlier one is being handled.
pub const DEFAULT_QUEUE_CAPACITY: usize = 256;

/// How many bytes (as sent: text and binary attachments) of one socket's events may wait:
/// room for two of the largest messages a client may send ([`DEFAULT_MAX_PAYLOAD`]).
pub const DEFAULT_QUEUE_BYTES: usize = 2_000_000;

/// How many bytes of all sockets' events may wait at once, whatever the number of clients.
pub const DEFAULT_TOTAL_QUEUE_BYTES: usize = 256 << 20;

/// The largest `auth` payload a CONNECT may carry, as sent. The handshake keeps it, parsed,
/// for the socket's life: its cost is the server's to set, as for the request head (16 KiB).
pub const MAX_AUTH_BYTES: usize = 8 * 1024;

/// The most values (objects, arrays, keys and items) the `auth` payload may hold: parsed, a
/// value costs tens of bytes whatever its size on the wire.
pub const MAX_AUTH_VALUES: usize = 512;

pub use crate::socket_core::bridge::HANDSHAKE_DEADLINE;
pub use crate::write_stall::DEFAULT_WRITE_TIMEOUT;
