//! The reference server of the Socket.IO protocol's own test suite (`test-suite/` of the
//! socket.io-protocol repository), built on the stack: the events of `/` go through the
//! stack's pipeline (no auth layer, so every socket counts as authenticated at connect).
//!
//! ```text
//! cargo run --example protocol_conformance            # port 3000, as the suite expects
//! PORT=0 cargo run --example protocol_conformance     # any free port
//! ```
//!
//! What it does, as the suite's reference server:
//! - Engine.IO on `/socket.io`: pingInterval 300 ms, pingTimeout 200 ms, maxPayload
//!   1,000,000 bytes, connectTimeout 1 s (a session that joins no namespace by then is
//!   closed); any origin allowed (CORS);
//! - on `/`: at connect, emits `auth` with the handshake's `auth` (`{}` when there is none);
//!   `message` is echoed as `message-back` with all its arguments, binary included;
//!   `message-with-ack` is acknowledged with all its arguments;
//! - on `/custom`: at connect, emits `auth` with the handshake's `auth`. This namespace is a
//!   plain socketioxide one on the same engine: the stack's pipeline serves `/`.
//!
//! Prints `listening on <port>` on stdout when ready. `tests/protocol_conformance.rs` and
//! `tests/js/conformance.test.mjs` run each case of the suite against it.

mod support;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use socketio_stack::args::Args;
use socketio_stack::serve::{ServeConfig, bind, serve_until};
use socketio_stack::{Handshake, SocketServer};
use socketioxide::extract::{AckSender, Data, SocketRef};
use tower::Layer;
use tower_http::cors::CorsLayer;

/// The `auth` payload of a CONNECT as the suite expects it back: `{}` when there is none.
fn auth_or_empty(auth: serde_json::Value) -> serde_json::Value {
    if auth.is_null() {
        serde_json::json!({})
    } else {
        auth
    }
}

async fn on_connect(socket: SocketRef, handshake: Arc<Handshake>) {
    socket
        .emit("auth", &auth_or_empty(handshake.auth.clone()))
        .ok();
}

async fn on_custom_connect(socket: SocketRef, Data(auth): Data<serde_json::Value>) {
    socket.emit("auth", &auth_or_empty(auth)).ok();
}

async fn on_message(socket: SocketRef, args: Args) {
    socket.emit("message-back", &args).ok();
}

async fn on_message_with_ack(ack: AckSender, args: Args) {
    ack.send(&args).ok();
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    support::init_logging();
    let port: u16 = match std::env::var("PORT") {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("PORT must be a port number, got {v:?}"))?,
        Err(_) => 3000,
    };

    let server = SocketServer::builder()
        .path("/socket.io")
        .configure_io(|io| {
            io.ping_interval(Duration::from_millis(300))
                .ping_timeout(Duration::from_millis(200))
                .max_payload(1_000_000)
                .connect_timeout(Duration::from_secs(1))
        })
        .on_connect(on_connect)
        .on("message", on_message)
        .on("message-with-ack", on_message_with_ack)
        .build()?;
    server.io().ns("/custom", on_custom_connect);

    let app = CorsLayer::permissive().layer(server.service());
    let config = ServeConfig::default();
    let listener = bind(([127, 0, 0, 1], port).into(), config.backlog)?;
    let port = listener.local_addr()?.port();
    println!("listening on {port}");
    std::io::stdout().flush()?;
    serve_until(listener, app, config, support::shutdown_signal()).await;
    server.shutdown().await;
    Ok(())
}
