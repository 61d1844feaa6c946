//! The client helper: a managed Socket.IO client with authentication state and safe
//! subscriptions, the seeds' `SocketIOClientHelper` in Rust.
//!
//! It speaks Engine.IO v4 / Socket.IO v5 over WebSocket, or HTTP long-polling where a
//! WebSocket cannot be opened ([`ClientOptions::transports`]), plain (`http://`, `ws://`) or
//! over TLS (`https://`, `wss://`, through rustls: the system's trust store, or the
//! authorities of [`ClientOptions::root_certificates_pem`]), binary data included both ways,
//! to a
//! socketio-stack server or any server of the seeds' protocol (`authenticate` →
//! `authenticated` / `unauthenticated`, `join` / `leave`, `ping`), including the original
//! TypeScript one.
//!
//! - Lifecycle callbacks: `on_connected`, `on_disconnected(reason)`, `on_error(error)`,
//!   `on_authenticated`, `on_unauthenticated(message)`, each given a handle to the client.
//!   Each may return `()` or a `Result`; an error or a panic is logged and never takes the
//!   client down. Handlers and callbacks start in the order events arrive.
//! - State `unauthorized → authenticating → authenticated`, reset on disconnect and on
//!   `unauthenticated`: [`SocketClient::state`].
//! - [`SocketClient::emit`] errors with status 400 when not connected ("Invalid socket client
//!   state to emit") or without a topic ("Topic is required to emit").
//! - [`SocketClient::subscribe`] refuses a second handler for an event unless asked
//!   (`ignore_duplicate`, default true); handlers that fail or panic are logged.
//! - Reconnection with socket.io-client's backoff (1 s doubling to 5 s, ±50 %), after a lost
//!   connection only: not after `io server disconnect` or `disconnect()`.
//!
//! Why a client of our own: `rust_socketio` 0.6 (async) was tried first, as the integration
//! tests' client. It stopped delivering events after an ack callback had run, returned from
//! `connect()` before the namespace was connected, and swallows the event names `open`,
//! `close`, `error` and `message`. The subset a service client needs is small: WebSocket
//! (or polling), the default namespace, text and binary packets. It is built on
//! `tokio-tungstenite`, which socketioxide already uses, and hyper's HTTP/1.1 client for
//! polling, and encodes packets with socketioxide's own encoder.
//!
//! Binary data: [`Bytes`](bytes::Bytes) anywhere in what is emitted goes as an attachment
//! (as a JavaScript `Buffer` would); received, it reaches [`SocketClient::subscribe_args`]
//! handlers as [`Arg::Binary`](crate::args::Arg::Binary), typed handlers as `Bytes`, and
//! JSON handlers as the array of its bytes.
//!
//! ```no_run
//! use socketio_stack::client::SocketClient;
//! use serde_json::json;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = SocketClient::builder("worker-1", "http://127.0.0.1:3000")
//!     .path("/io")
//!     .auth(json!({ "token": "demo-token" }))
//!     .on_connected(|client| async move { client.authenticate() })
//!     .on_authenticated(|client| async move { client.join_rooms(&["public-a"]) })
//!     .on_unauthenticated(|_client, message| async move { tracing::warn!(%message, "refused") })
//!     .build()?;
//! client.subscribe("news", |data| async move { println!("news {data}") });
//! client.emit("chat", &json!({ "text": "hi" })).ok(); // Err(400) until connected
//! client.shutdown().await;
//! # Ok(()) }
//! ```

mod attachments;
mod builder;
mod dial;
mod dispatcher;
mod driver;
mod error;
mod handle;
mod handlers;
mod jobs;
mod options;
mod polling;
mod protocol;
mod state;
mod transport;

pub use builder::SocketClientBuilder;
pub use error::ClientError;
pub use handle::{EmitOptions, RawSocket, SocketClient};
pub use handlers::{EventHandler, HandlerResult};
pub use jobs::SHUTDOWN_GRACE;
pub use options::{ClientOptions, TransportKind};
pub use state::SubscriptionId;
