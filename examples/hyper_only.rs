//! The stack served by plain hyper 1 + hyper-util, without axum: the seeds' Bun
//! fetch-handler mode (route by path, Socket.IO first, a fallback for everything else).
//!
//! What it shows:
//! - `server.service_with_fallback(fallback)`: one tower service that answers Socket.IO under
//!   `/io` and hands every other request to `fallback`, here a hand-written tower service
//!   (`GET /health` → `200 ok`, `/health` with another method → `405`, anything else → `404`);
//! - serving it with hyper-util's `auto::Builder` (HTTP/1.1 and HTTP/2 on one port) through
//!   `TowerToHyperService`, with `serve_connection_with_upgrades` so that the WebSocket
//!   transport can take the connection over: the accept loop is the crate's
//!   `socketio_stack::serve` (src/serve.rs), with its connection bounds;
//! - putting `PeerAddr` into each request's extensions (a `map_request` wrapper, in the same
//!   loop), so the handshake handed to the authenticate function reports the client's address;
//! - a graceful shutdown by hand: stop accepting, `server.shutdown()`, ask every open
//!   connection to finish, and give them a bounded time to do so.
//!
//! The Socket.IO stack here is auth (token `demo-token`, or `AUTH_TOKEN`) and rooms with the
//! default rooms only: with no validate function, every `join` is refused (security by
//! default). Its one handler, `whoami`, answers the handshake's address through the ack.
//!
//! Run it:
//!
//! ```text
//! cargo run --example hyper_only                # port 3000
//! PORT=0 cargo run --example hyper_only         # any free port, printed as `listening on <port>`
//! ```
//!
//! Try it:
//!
//! ```text
//! curl -i http://127.0.0.1:3000/health          # 200 ok
//! curl -i http://127.0.0.1:3000/elsewhere       # 404
//! curl -i -X POST http://127.0.0.1:3000/health  # 405
//! curl 'http://127.0.0.1:3000/io/?EIO=4&transport=polling'   # an Engine.IO handshake
//! ```
//!
//! and from `tests/js` (after `npm ci`):
//!
//! ```text
//! node -e "
//!   const { io } = require('socket.io-client');
//!   const s = io('http://127.0.0.1:3000', { path: '/io', auth: { token: 'demo-token' } });
//!   s.onAny((e, d) => console.log('<-', e, JSON.stringify(d)));
//!   s.on('connect', () => s.emit('authenticate'));
//!   s.on('authenticated', () => s.emit('whoami', null, (me) => { console.log('me', me); s.close(); }));
//! "
//! ```

mod support;

use socketio_stack::serve::ServeConfig;

use std::convert::Infallible;
use std::future::Ready;
use std::io::Write;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, header};
use serde_json::json;
use socketio_stack::layers::{AuthLayer, RoomsLayer};
use socketio_stack::{BoxError, Handshake, SocketServer};
use socketioxide::extract::AckSender;
use tokio::net::TcpListener;
use tower::Service;

/// How long open connections may take to finish once shutdown has begun.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// The fallback: a hand-written tower service, the "rest of the app"
// ---------------------------------------------------------------------------------------------

/// Answers `GET /health` with `ok` and everything else with `404` (or `405` for a wrong
/// method on `/health`). Any request body type works: it is never read.
#[derive(Debug, Clone, Copy, Default)]
struct HealthOr404;

impl<B> Service<Request<B>> for HealthOr404 {
    // `String` is an `http_body::Body`, so no extra body crate is needed.
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Stateless: always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (status, body) = match (req.method(), req.uri().path()) {
            (&Method::GET | &Method::HEAD, "/health") => (StatusCode::OK, "ok"),
            (_, "/health") => (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
            _ => (StatusCode::NOT_FOUND, "not found\n"),
        };
        let mut res = Response::new(body.to_owned());
        *res.status_mut() = status;
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if status == StatusCode::METHOD_NOT_ALLOWED {
            res.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        }
        std::future::ready(Ok(res))
    }
}

// ---------------------------------------------------------------------------------------------
// The Socket.IO side
// ---------------------------------------------------------------------------------------------

async fn authenticate(expected: Arc<str>, hs: Arc<Handshake>) -> Result<bool, BoxError> {
    // `hs.address` is filled from the `PeerAddr` the accept loop inserts.
    tracing::info!(address = ?hs.address, url = %hs.url, "authenticating");
    Ok(hs.auth_field("token").or(hs.bearer_token()) == Some(&*expected))
}

/// `whoami` (with an ack): answers what the server knows of the client.
async fn whoami(hs: Arc<Handshake>, ack: AckSender) {
    let me = json!({ "address": hs.address, "url": hs.url, "secure": hs.secure, "time": hs.time });
    ack.send(&me).ok();
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    support::init_logging();

    let port: u16 = std::env::var("PORT").map_or(Ok(3000), |p| p.parse())?;
    let token: Arc<str> = std::env::var("AUTH_TOKEN")
        .unwrap_or_else(|_| "demo-token".into())
        .into();

    let server = SocketServer::builder()
        .layer(AuthLayer::new(move |hs| authenticate(token.clone(), hs)))
        .layer(RoomsLayer::new())
        .on("whoami", whoami)
        .build()?;

    // Socket.IO at `/io`, `HealthOr404` for everything else: one tower service.
    let service = server.service_with_fallback(HealthOr404);

    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let port = listener.local_addr()?.port();
    println!("listening on {port}");
    std::io::stdout().flush()?;

    // The accept loop is the crate's `serve` module (src/serve.rs), shared with the tonic
    // example: hyper-util's auto builder, the upgrade for WebSockets, `PeerAddr` per request.
    let ((), connections) = socketio_stack::serve::serve_until(
        listener,
        service,
        ServeConfig::default(),
        support::shutdown_signal(),
    )
    .await;

    tracing::info!("shutting down");
    // Seeds' order: the clients (timers cleared, sockets disconnected), then the IO server.
    server.shutdown().await;
    // Then the HTTP connections: finish what is in flight, within a bound.
    connections.drain(DRAIN_TIMEOUT).await;
    tracing::info!("stopped");
    Ok(())
}
