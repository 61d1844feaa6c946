//! A chat server: the example a real application starts from.
//!
//! - **Who the client is**: HS256 JWTs (the `jsonwebtoken` crate), in the CONNECT's
//!   `auth.token` or an `authorization: Bearer` header, checked when the client emits the
//!   seeds' `authenticate`. The claim `sub` is the user, kept as the socket's identity; an
//!   expired, badly signed or malformed token gets the seeds' `unauthenticated` message and a
//!   disconnect.
//! - **Rooms**: the seeds' `join` `{rooms}`; rooms named `chat-*` may be joined, others are
//!   refused.
//! - **`chat` `{room, text}`** from a member of `room` goes to every member of that room, the
//!   sender included, on every instance, as `chat` `{from, room, text, time}`: `from` is the
//!   authenticated user whatever the payload says, `time` an ISO string. It is acked
//!   `{ok: true}`; from a non-member, or malformed, it is acked `{ok: false, error}` and sent to
//!   nobody.
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | PORT | 3000 | listen port on 127.0.0.1 (0 picks a free one) |
//! | IO_PATH | /io | Socket.IO path |
//! | JWT_SECRET | dev-secret | the HS256 secret |
//! | REDIS_URL | unset | `redis://…`: instances on one Redis carry each other's chat |
//!
//! Prints `listening on <port>` on stdout once ready (logs go to stderr).
//!
//! ```text
//! cargo run --example chat
//! ```
//!
//! Then, from `tests/js` (after `npm ci`), with a token signed with `dev-secret` (`sub` the
//! user, `exp` in the future; `tests/js/chat.test.mjs` shows how to make one with node:crypto):
//!
//! ```text
//! node -e "
//!   const { io } = require('socket.io-client');
//!   const s = io('http://127.0.0.1:3000', { path: '/io', auth: { token: process.env.TOKEN } });
//!   s.on('connect', () => s.emit('authenticate'));
//!   s.on('authenticated', () => {
//!     s.emit('join', { rooms: ['chat-lobby'] });
//!     s.emit('chat', { room: 'chat-lobby', text: 'hello' }, (ack) => console.log('ack', ack));
//!   });
//!   s.on('chat', (m) => console.log(m));
//! "
//! ```

mod support;

use std::io::Write;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use socketio_stack::event::iso_now;
use socketio_stack::extract::{State, TryData};
use socketio_stack::fanout::RedisFanout;
use socketio_stack::layers::{AuthLayer, AuthTimeoutLayer, PingLayer, RoomsLayer};
use socketio_stack::serve::{ServeConfig, bind, serve_until};
use socketio_stack::{
    BoxError, Handshake, Identity, Outbound, OutboundMessage, Session, SocketServer,
};
use socketioxide::extract::{AckSender, SocketRef};
use tower::Layer;

/// The authenticated user: the token's `sub`. Kept with the socket; the fleet sees it as the
/// socket's `data` (`{"sub": …}`).
#[derive(Debug, Clone, Serialize)]
struct User {
    sub: String,
}

/// The claims the server reads. `exp` is required and checked by `jsonwebtoken`.
#[derive(Deserialize)]
struct Claims {
    sub: String,
}

/// `chat` as the client sends it.
#[derive(Deserialize)]
struct ChatIn {
    room: String,
    text: String,
}

/// Checks the JWT: signed with the secret (HS256 only), not expired, `sub` not empty.
fn verify(key: &DecodingKey, token: &str) -> Result<User, String> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    let data =
        jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| e.to_string())?;
    if data.claims.sub.is_empty() {
        return Err("empty sub".into());
    }
    Ok(User {
        sub: data.claims.sub,
    })
}

/// The authenticate function: the user, or `None` (refused with the seeds' message).
async fn authenticate(key: Arc<DecodingKey>, hs: Arc<Handshake>) -> Result<Option<User>, BoxError> {
    let Some(token) = hs.auth_field("token").or(hs.bearer_token()) else {
        tracing::info!("no token");
        return Ok(None);
    };
    match verify(&key, token) {
        Ok(user) => Ok(Some(user)),
        Err(why) => {
            tracing::info!(%why, "token refused");
            Ok(None)
        }
    }
}

async fn validate(_session: Session, rooms: Vec<String>) -> Result<Vec<String>, BoxError> {
    Ok(rooms
        .into_iter()
        .filter(|r| r.starts_with("chat-"))
        .collect())
}

/// `chat` `{room, text}`: checked, then sent to the room through the outbound stack (and so
/// through Redis when there is one), then acked.
async fn chat(
    socket: SocketRef,
    Identity(user): Identity<User>,
    TryData(message): TryData<ChatIn>,
    State(outbound): State<Outbound>,
    ack: AckSender,
) {
    let answer = match relay(&socket, &user, message, &outbound).await {
        Ok(()) => json!({ "ok": true }),
        Err(error) => json!({ "ok": false, "error": error }),
    };
    ack.send(&answer).ok();
}

async fn relay(
    socket: &SocketRef,
    user: &User,
    message: Result<ChatIn, serde_json::Error>,
    outbound: &Outbound,
) -> Result<(), String> {
    let ChatIn { room, text } =
        message.map_err(|e| format!("expected {{room, text}} as strings: {e}"))?;
    // Every socket is also in the default rooms (and its own): chat is for chat-* rooms only.
    if !room.starts_with("chat-") {
        return Err(format!("{room:?} is not a chat room (chat-*)"));
    }
    if !socket.rooms().iter().any(|r| *r == room) {
        return Err(format!("not a member of room {room:?}"));
    }
    let payload: Value = json!({ "from": user.sub, "room": room, "text": text, "time": iso_now() });
    outbound
        .send(OutboundMessage::to(room, "chat", payload))
        .await
        .map(drop)
        .map_err(|e| {
            tracing::warn!(socket = %socket.id, "chat not sent: {e}");
            "not sent, try again".to_owned()
        })
}

#[tokio::main]
async fn main() {
    support::init_logging();
    if let Err(e) = run().await {
        eprintln!("chat: {e}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), BoxError> {
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p
            .parse()
            .map_err(|_| format!("PORT must be a port number, got {p:?}"))?,
        Err(_) => 3000,
    };
    let io_path = std::env::var("IO_PATH").unwrap_or_else(|_| "/io".into());
    let secret = std::env::var("JWT_SECRET").unwrap_or_else(|_| "dev-secret".into());
    let key = Arc::new(DecodingKey::from_secret(secret.as_bytes()));

    let mut builder = SocketServer::builder();
    if let Some(url) = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty()) {
        builder = builder.fanout(RedisFanout::connect(&url).await?);
        tracing::info!("chat carried through Redis");
    }
    let server = builder
        .path(io_path)
        .layer(AuthLayer::new(move |hs| authenticate(key.clone(), hs)))
        .layer(AuthTimeoutLayer::default())
        .layer(PingLayer::default())
        .layer(RoomsLayer::new().validate(validate))
        .on("chat", chat)
        .build()?;

    let routes = axum::Router::new().route("/health", axum::routing::get(|| async { "ok" }));
    // Socket.IO in front of the router (see the demo for why), served with the crate's bounds.
    let app = server.layer().layer(routes);
    let config = ServeConfig::default();
    let listener = bind(([127, 0, 0, 1], port).into(), config.backlog)?;
    println!("listening on {}", listener.local_addr()?.port());
    std::io::stdout().flush()?;

    let ((), connections) = serve_until(listener, app, config, support::shutdown_signal()).await;
    tracing::info!("shutting down");
    server.shutdown().await;
    connections.drain(std::time::Duration::from_secs(5)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    fn token(secret: &str, sub: &str, exp: u64) -> String {
        let claims = json!({ "sub": sub, "exp": exp });
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn only_well_signed_unexpired_tokens_with_a_user_verify() {
        let key = DecodingKey::from_secret(b"k");
        let later = std::time::UNIX_EPOCH.elapsed().unwrap().as_secs() + 60;
        assert_eq!(verify(&key, &token("k", "ann", later)).unwrap().sub, "ann");
        assert!(
            verify(&key, &token("other", "ann", later)).is_err(),
            "bad signature"
        );
        assert!(
            verify(&key, &token("k", "ann", later - 120)).is_err(),
            "expired"
        );
        assert!(verify(&key, &token("k", "", later)).is_err(), "no user");
        assert!(verify(&key, "not.a.jwt").is_err());
        let none = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbm4iLCJleHAiOjk5OTk5OTk5OTl9.";
        assert!(verify(&key, none).is_err(), "alg none");
    }
}
