//! # socketio-stack
//!
//! Authenticated, room-validated Socket.IO as a stack of composable
//! [tower](https://docs.rs/tower) layers around a core service, on
//! [socketioxide](https://docs.rs/socketioxide). It re-makes, in Rust, the Socket.IO server
//! helper of a TypeScript framework (the "seeds"): the same events, defaults, messages and
//! order of steps, so JavaScript clients written for it work unchanged.
//!
//! ## Cargo features
//!
//! | feature | default | what |
//! | --- | --- | --- |
//! | `metrics` | on | every layer's metrics through the `metrics` facade ([`telemetry`]); off, the reports compile to nothing |
//! | `fanout` | on | the Redis fan-out (`fanout`: instances on one Redis, with Node members; redis, bb8-redis, rmpv, rustls) |
//! | `admin-ui` | on | the server side of the Socket.IO Admin UI (`admin_ui`; bcrypt; brings `fanout`) |
//! | `client` | on | the client helper (`client`, on tokio-tungstenite) |
//! | `serve` | on | serving with hyper (`serve`: header deadline, connection cap, write timeout, backlog, open-file limit; hyper-util's server, rlimit, socket2) |
//! | `test-util` | off | drive layers without a network (`testing`) |
//!
//! `default-features = false` keeps the core, the layers and the outbound stack on local
//! delivery (97 crates in its tree, against 191); mount the stack in your own server then
//! (`axum::serve`, hyper-util, tonic).
//!
//! ## The shape
//!
//! Every thing that happens to a socket (connect, an event, the synthetic "authenticated",
//! disconnect) is a [`SocketRequest`] flowing down a `tower::Service` stack, one request of a
//! socket at a time. Each policy is one layer:
//!
//! | layer | seeds counterpart | default |
//! | --- | --- | --- |
//! | [`EventRateLimitLayer`](layers::EventRateLimitLayer) | (none) | 50 events/s, burst 100; 5/s, burst 10 for `authenticate`/`join`/`leave` |
//! | [`AuthLayer`](layers::AuthLayer) | `authenticateFn`, `authenticate` / `authenticated` / `unauthenticated` | no default: you give the function |
//! | [`HandshakeAuthLayer`](layers::HandshakeAuthLayer) | (instead of `AuthLayer`: socket.io's `io.use`) | refuses a bad CONNECT with `connect_error` |
//! | [`AuthTimeoutLayer`](layers::AuthTimeoutLayer) | `authenticateTimeout` | 10 s |
//! | [`PingLayer`](layers::PingLayer) | `pingInterval`, `ping` `{time}` | 30 s |
//! | [`RoomsLayer`](layers::RoomsLayer) | `defaultRooms`, `validateRoomFn`, `join` / `leave` | `io-default`, `io-notification`; joins refused without a validate function |
//!
//! Your own policy is a `tower::Layer` over [`SocketRequest`], or an async function given to
//! [`from_fn`](fn@layers::from_fn).
//!
//! Who the client is, as the authenticate function found it, stays with the socket
//! ([`identity`]): layers read it from the [`Session`], handlers with the [`Identity`]
//! extractor, the fleet as the socket's `data`.
//!
//! At the bottom, the [`CoreService`](socket_core::CoreService) tracks clients and runs your
//! handlers. Leave a layer out and the rest still work (without [`AuthLayer`](layers::AuthLayer),
//! sockets count as authenticated at connect, so rooms and ping start then); replace one with
//! your own `tower::Layer` over [`SocketRequest`].
//!
//! Messages to clients go through a second stack: [`OutboundMessage`] → outbound layers →
//! [`LocalDelivery`](outbound::LocalDelivery), or, when instances share a Redis,
//! [`RedisDelivery`](fanout::RedisDelivery) ([`fanout`], compatible with
//! `@socket.io/redis-adapter` and `@socket.io/redis-emitter`); callers use [`Outbound`] /
//! [`SocketServer::send`] either way. With the fan-out, a server is a full member of a Node
//! fleet: [`RedisFanout::fleet`](fanout::RedisFanout::fleet) fetches the sockets and rooms of
//! every server, makes them join, leave or disconnect, and sends server-side emits; the
//! [`RedisAdapter`](fanout::RedisAdapter) carries socketioxide's own broadcasts, acknowledged
//! ones included. Every namespace a server serves
//! ([`namespace`](SocketServerBuilder::namespace),
//! [`dynamic_namespace`](SocketServerBuilder::dynamic_namespace)) goes through the same
//! layers and fans out on its own channels.
//!
//! Also here: [`serve`] (hyper serving with connection bounds) and [`client`] (a managed
//! Socket.IO client, the seeds' client helper).
//!
//! ## Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use socketio_stack::layers::{AuthLayer, AuthTimeoutLayer, PingLayer, RoomsLayer};
//! use socketio_stack::{Handshake, Session, SocketServer};
//!
//! async fn authenticate(hs: Arc<Handshake>) -> Result<bool, std::io::Error> {
//!     Ok(hs.auth_field("token").or(hs.bearer_token()) == Some("secret"))
//! }
//! async fn validate(_s: Session, rooms: Vec<String>) -> Result<Vec<String>, std::io::Error> {
//!     Ok(rooms.into_iter().filter(|r| r.starts_with("public-")).collect())
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let server = SocketServer::builder()
//!         .layer(AuthLayer::new(authenticate))
//!         .layer(AuthTimeoutLayer::default())
//!         .layer(PingLayer::default())
//!         .layer(RoomsLayer::new().validate(validate))
//!         .build()?;
//!     let app = axum::Router::new()
//!         .route("/health", axum::routing::get(|| async { "ok" }))
//!         .layer(server.layer());
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     axum::serve(listener, app).await?;
//!     Ok(())
//! }
//! ```

// No unsafe code of our own: the system calls go through rlimit and socket2.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// docs.rs (nightly, `--cfg docsrs`): each item says which cargo features it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "admin-ui")]
pub mod admin_ui;
pub mod args;
pub mod authentication;
#[cfg(feature = "client")]
pub mod client;
mod clock;
mod connect_limit;
pub mod error;
pub mod event;
#[cfg(feature = "fanout")]
pub mod fanout;
mod first_ping;
pub mod handshake;
pub mod identity;
mod io_service;
pub mod layers;
pub mod limits;
pub mod outbound;
mod plumbing;
#[cfg(feature = "serve")]
pub mod serve;
mod server;
pub mod session;
pub mod socket_core;
pub mod telemetry;
mod timer_queue;
mod transport;
mod write_stall;

#[cfg(any(test, feature = "test-util"))]
pub mod testing;

pub use connect_limit::ConnectLimit;
pub use error::{BoxError, BuildError};
pub use event::{ClientEvent, RequestKind, SocketRequest};
pub use handshake::{Handshake, PeerAddr};
pub use identity::Identity;
pub use io_service::{IoLayer, IoService};
pub use outbound::{Delivery, Outbound, OutboundMessage, SendError};
pub use server::{DeliveryService, InboundService, NotFound, SocketServer, SocketServerBuilder};
pub use session::{ClientState, Session};
pub use socket_core::extract;
