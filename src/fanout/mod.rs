//! Fan-out across instances through Redis, compatible with the JavaScript packages
//! `@socket.io/redis-adapter` (v8) and `@socket.io/redis-emitter` (v5).
//!
//! [`wire`] documents the format: channels `socket.io#/#` and `socket.io#/#<room>#`,
//! MessagePack `[uid, packet, opts]`.

pub mod wire;
