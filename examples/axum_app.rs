//! An ordinary axum 0.8 application with the full Socket.IO stack mounted beside its routes
//! (the seeds' "Node mode": one HTTP server, Socket.IO on its own path, everything else to
//! the app).
//!
//! What it shows:
//! - `Router::layer(server.layer())`: requests under `/io` go to Socket.IO, all others reach
//!   the routes (`GET /`, `GET /api/users/{id}`, `POST /api/announce`);
//! - the full policy stack: [`AuthLayer`] (token from `auth.token` or an
//!   `authorization: Bearer` header), [`AuthTimeoutLayer`], [`PingLayer`] and [`RoomsLayer`]
//!   with a validate function (only rooms named `chat-*` may be joined);
//! - a user event handler, `.on("chat", on_chat)`, written with the crate's extractors
//!   (`Data`, `SocketRef`, `AckSender`), which relays a chat message to a room;
//! - `.on_authenticated(...)`, run once per socket after authentication;
//! - an HTTP route that talks to the sockets through `server.send(OutboundMessage::broadcast(..))`.
//!
//! Run it:
//!
//! ```text
//! cargo run --example axum_app                 # port 3000
//! PORT=0 cargo run --example axum_app          # any free port, printed as `listening on <port>`
//! AUTH_TOKEN=s3cret PORT=4000 cargo run --example axum_app
//! ```
//!
//! Try the HTTP side:
//!
//! ```text
//! curl http://127.0.0.1:3000/
//! curl http://127.0.0.1:3000/api/users/1
//! curl -X POST http://127.0.0.1:3000/api/announce -H 'content-type: application/json' \
//!      -d '{"text":"maintenance at noon"}'
//! ```
//!
//! Try the Socket.IO side with the JavaScript client installed for the interop tests
//! (run from `tests/js`, after `npm ci`):
//!
//! ```text
//! node -e "
//!   const { io } = require('socket.io-client');
//!   const s = io('http://127.0.0.1:3000', { path: '/io', auth: { token: 'demo-token' } });
//!   s.onAny((e, d) => console.log('<-', e, JSON.stringify(d)));
//!   s.on('connect', () => s.emit('authenticate'));
//!   s.on('authenticated', () => {
//!     s.emit('join', { rooms: ['chat-lobby'] });
//!     setTimeout(() => s.emit('chat', { room: 'chat-lobby', text: 'hi' }, (a) => console.log('ack', a)), 100);
//!   });
//! "
//! ```
//!
//! The client connects, emits `authenticate`, gets `welcome` (from the authenticated callback),
//! `ping` and `authenticated`, joins `chat-lobby`, then sees its own chat message relayed and
//! the acknowledgement `{ok: true}`. A `POST /api/announce` meanwhile reaches it as
//! `announcement`.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use socketio_stack::extract::Data;
use socketio_stack::layers::{AuthLayer, AuthTimeoutLayer, PingLayer, RoomsLayer};
use socketio_stack::{
    BoxError, Delivery, Handshake, OutboundMessage, PeerAddr, Session, SocketServer,
};
use socketioxide::extract::{AckSender, SocketRef};
use tower::ServiceBuilder;

// ---------------------------------------------------------------------------------------------
// Policy callbacks
// ---------------------------------------------------------------------------------------------

/// The authenticate function: the token may come from the CONNECT packet's `auth.token`
/// (`io(url, {auth: {token}})`) or from an `authorization: Bearer <token>` header.
async fn authenticate(expected: Arc<str>, hs: Arc<Handshake>) -> Result<bool, BoxError> {
    let given = hs.auth_field("token").or(hs.bearer_token());
    Ok(given == Some(&*expected))
}

/// The room validate function: of the rooms asked for, only `chat-*` ones may be joined.
async fn validate_rooms(session: Session, rooms: Vec<String>) -> Result<Vec<String>, BoxError> {
    let (allowed, refused): (Vec<_>, Vec<_>) =
        rooms.into_iter().partition(|r| r.starts_with("chat-"));
    if !refused.is_empty() {
        tracing::info!(socket = %session.id(), ?refused, "join refused");
    }
    Ok(allowed)
}

// ---------------------------------------------------------------------------------------------
// Socket.IO handlers (the crate's extractors: any of `Data<T>`, `SocketRef`, `AckSender`,
// `Session`, `Arc<Handshake>`, `EventName`, in any order)
// ---------------------------------------------------------------------------------------------

/// The `chat` event's payload. When the data does not fit (e.g. no `room`), the handler is
/// not called and the mismatch is logged; use `TryData<T>` to answer bad input yourself.
#[derive(Debug, Deserialize)]
struct ChatMessage {
    room: String,
    text: String,
}

/// Relays a chat message to everyone in its room, the sender included, and acknowledges it.
/// Only a member of the room may talk in it (rooms are joined through the validated `join`).
async fn on_chat(socket: SocketRef, Data(msg): Data<ChatMessage>, ack: AckSender) {
    let member = socket.rooms().iter().any(|r| *r == msg.room);
    if !member {
        ack.send(&json!({ "ok": false, "error": format!("join {} first", msg.room) }))
            .ok();
        return;
    }
    let payload = json!({ "room": msg.room, "from": socket.id.as_str(), "text": msg.text });
    // `within` includes the sender; `to` would leave it out.
    match socket.within(msg.room.clone()).emit("chat", &payload).await {
        Ok(()) => ack.send(&json!({ "ok": true })).ok(),
        Err(e) => ack
            .send(&json!({ "ok": false, "error": e.to_string() }))
            .ok(),
    };
}

/// Runs once a socket is authenticated (the seeds' `clientConnectedFn`): default rooms have
/// been joined by now, so the welcome can list them.
async fn on_authenticated(socket: SocketRef, hs: Arc<Handshake>) {
    let rooms: Vec<String> = socket.rooms().iter().map(|r| r.to_string()).collect();
    let welcome = json!({ "id": socket.id.as_str(), "address": hs.address, "rooms": rooms });
    if let Err(e) = socket.emit("welcome", &welcome) {
        tracing::debug!(socket = %socket.id, "could not send welcome: {e}");
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP routes
// ---------------------------------------------------------------------------------------------

async fn index() -> &'static str {
    "socketio-stack axum example: Socket.IO at /io, JSON at /api\n"
}

async fn get_user(Path(id): Path<u32>) -> impl IntoResponse {
    // A stand-in for a database.
    const NAMES: [&str; 3] = ["ada", "grace", "linus"];
    match NAMES.get(id.wrapping_sub(1) as usize) {
        Some(name) => (StatusCode::OK, Json(json!({ "id": id, "name": name }))),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no user {id}") })),
        ),
    }
}

#[derive(Debug, Deserialize)]
struct Announcement {
    text: String,
}

/// Sends an announcement to every connected client through the outbound stack. Sockets that
/// have not authenticated yet get it too: `send` addresses sockets, not policies (send to a
/// room such as `io-default` to reach authenticated sockets only).
async fn announce(
    State(server): State<SocketServer>,
    Json(body): Json<Announcement>,
) -> impl IntoResponse {
    let req = OutboundMessage::broadcast("announcement", json!({ "text": body.text }));
    match server.send(req).await {
        Ok(Delivery::Sent) => (StatusCode::ACCEPTED, Json(json!({ "sent": true }))),
        // The seeds silently drop a send with an empty topic or falsy data (`null`, `0`,
        // `""`...). It cannot happen here (the data is an object), but callers passing
        // arbitrary data should expect it.
        Ok(Delivery::Dropped(reason)) => (
            StatusCode::OK,
            Json(json!({ "sent": false, "dropped": format!("{reason:?}") })),
        ),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({ "error": e.to_string() })),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    support::init_logging();

    let port: u16 = std::env::var("PORT").map_or(Ok(3000), |p| p.parse())?;
    let token: Arc<str> = std::env::var("AUTH_TOKEN")
        .unwrap_or_else(|_| "demo-token".into())
        .into();

    // The stack. The first layer added is the outermost: auth first, so it gates the rest.
    let server = SocketServer::builder()
        .path("/io")
        .layer(AuthLayer::new(move |hs| authenticate(token.clone(), hs)))
        .try_layer(AuthTimeoutLayer::new(Duration::from_secs(10)))
        .try_layer(PingLayer::new(Duration::from_secs(30)))
        .layer(RoomsLayer::new().validate(validate_rooms))
        .on("chat", on_chat)
        .on_authenticated(on_authenticated)
        .build()?;

    let app = Router::new()
        .route("/", get(index))
        .route("/api/users/{id}", get(get_user))
        .route("/api/announce", post(announce))
        .with_state(server.clone())
        .layer(
            ServiceBuilder::new()
                // axum puts the peer address in `ConnectInfo`; the handshake reads `PeerAddr`.
                .map_request(|mut req: Request<_>| {
                    if let Some(ConnectInfo(addr)) =
                        req.extensions().get::<ConnectInfo<SocketAddr>>().copied()
                    {
                        req.extensions_mut().insert(PeerAddr(addr));
                    }
                    req
                })
                // Socket.IO answers under `/io`; everything else falls through to the routes.
                .layer(server.layer()),
        );

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let port = listener.local_addr()?.port();
    println!("listening on {port}");
    std::io::stdout().flush()?;

    // On a signal: disconnect every socket and close Socket.IO (`server.shutdown()`), then
    // let axum finish the HTTP requests in flight.
    let socket_server = server.clone();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        support::shutdown_signal().await;
        tracing::info!("shutting down");
        socket_server.shutdown().await;
    })
    .await?;
    tracing::info!("stopped");
    Ok(())
}
