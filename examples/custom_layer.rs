//! Swapping in your own policies without touching the crate: every layer of the stack is a
//! plain `tower::Layer` over [`SocketRequest`], so yours slot in beside (or instead of) the
//! crate's.
//!
//! What it shows:
//! - (a) a custom authenticate function for [`AuthLayer`]: an *expiring signed token*
//!   `user:expiry:signature` (expiry in Unix seconds), checked for its signature and its
//!   expiry; it answers with the token's claims, which the stack keeps as the socket's
//!   identity, so `whoami` reads them with the `Identity` extractor instead of verifying again. The "signature" is std's `DefaultHasher` over a secret and the claims: **NOT
//!   cryptographic**, it only shows the shape of a JWT-style check; use a real MAC (HMAC-SHA256
//!   from the `hmac` + `sha2` crates) or a JWT crate for anything real;
//! - (b) `GraceTimeoutLayer`, a hand-written replacement for the crate's `AuthTimeoutLayer`:
//!   a `Layer` and a `Service` that warn the client with `auth-warning` `{remainingMs}` at half
//!   the deadline and disconnect it at the deadline unless it has authenticated meanwhile. Its
//!   timer lives in the socket's [`Session`] (`set_timer::<GraceTimer>` / `clear_timer`), keyed
//!   by a type of its own as the crate's layers key theirs, so it never outlives the socket;
//! - (c) a layer from an async function ([`from_fn`]): it counts the events each socket sends,
//!   in the session's extensions, and logs the count when the socket leaves.
//!
//! Run it:
//!
//! ```text
//! PORT=0 AUTH_TIMEOUT_MS=2000 cargo run --example custom_layer
//! cargo run --example custom_layer -- mint alice 3600     # prints a token valid for 1 h, exits
//! ```
//!
//! At start it also logs a token for the user `demo`, valid one hour. Tokens are only valid for
//! the binary that minted them (and the same `TOKEN_SECRET`, default `change-me`):
//! `DefaultHasher`'s algorithm may change between Rust releases.
//!
//! Try it from `tests/js` (after `npm ci`), with `TOKEN` set to a minted token:
//!
//! ```text
//! node -e "
//!   const { io } = require('socket.io-client');
//!   const s = io('http://127.0.0.1:3000', { path: '/io', auth: { token: process.env.TOKEN } });
//!   s.onAny((e, d) => console.log('<-', e, JSON.stringify(d)));
//!   s.on('disconnect', (r) => console.log('disconnect', r));
//!   s.on('connect', () => setTimeout(() => s.emit('authenticate'), 1500));
//!   s.on('authenticated', () => s.emit('whoami', null, (me) => console.log('me', me)));
//! "
//! ```
//!
//! With `AUTH_TIMEOUT_MS=2000` the client gets `auth-warning` `{remainingMs: 1000}` after one
//! second, then authenticates in time and `whoami` answers `{user: "alice", ...}`. Never emit
//! `authenticate` and it is disconnected at two seconds; send an expired or tampered token and
//! it gets `unauthenticated`. When it leaves, the server logs how many events it sent.

mod support;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use socketio_stack::layers::{AuthLayer, Next, PingLayer, from_fn};
use socketio_stack::{
    BoxError, BuildError, ClientState, Handshake, Identity, RequestKind, Session, SocketRequest,
    SocketServer,
};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef};
use tower::{Layer, Service};

// =============================================================================================
// (a) An expiring signed token: `user:expiry:signature`
// =============================================================================================

/// The claims of a valid token: the socket's identity once it authenticated (and its `data`
/// for the fleet: `{user, expires_at}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
struct Claims {
    user: String,
    expires_at: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The token's "signature": a keyed hash of the claims.
///
/// NOT CRYPTOGRAPHIC. `DefaultHasher` (SipHash-1-3 with fixed keys) is a hash-table hash: it is
/// not a MAC, its output is only 64 bits, and its algorithm may change between Rust releases.
/// It stands in for HMAC-SHA256 here only to keep the example free of dependencies. The shape
/// (sign the claims with a server secret, compare, then check the expiry) is what carries over.
fn signature(secret: &str, user: &str, expires_at: u64) -> String {
    let mut h = DefaultHasher::new();
    (secret, user, expires_at).hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Makes a token for `user`, valid `ttl` from now.
fn mint(secret: &str, user: &str, ttl: Duration) -> String {
    let expires_at = unix_now() + ttl.as_secs();
    format!(
        "{user}:{expires_at}:{}",
        signature(secret, user, expires_at)
    )
}

/// Checks a token: well formed, signed with `secret`, not expired.
fn verify(secret: &str, token: &str) -> Result<Claims, &'static str> {
    // `rsplitn`: the user part is everything before the last two colons.
    let mut parts = token.rsplitn(3, ':');
    let (Some(sig), Some(expiry), Some(user)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("malformed token");
    };
    let expires_at: u64 = expiry.parse().map_err(|_| "malformed expiry")?;
    // A real MAC is compared in constant time (e.g. `subtle::ConstantTimeEq`).
    if user.is_empty() || sig != signature(secret, user, expires_at) {
        return Err("bad signature");
    }
    if expires_at <= unix_now() {
        return Err("token expired");
    }
    Ok(Claims {
        user: user.to_owned(),
        expires_at,
    })
}

/// The handshake's token: `auth.token` of the CONNECT packet, or `authorization: Bearer`.
fn token_of(hs: &Handshake) -> Option<&str> {
    hs.auth_field("token").or(hs.bearer_token())
}

/// The authenticate function handed to the crate's [`AuthLayer`]: who the client is, or `None`
/// for a token that does not verify (the client gets the seeds' "Invalid token" message and is
/// disconnected).
async fn authenticate(secret: Arc<str>, hs: Arc<Handshake>) -> Result<Option<Claims>, BoxError> {
    let Some(token) = token_of(&hs) else {
        return Ok(None);
    };
    match verify(&secret, token) {
        Ok(claims) => {
            tracing::info!(user = %claims.user, "token accepted");
            Ok(Some(claims))
        }
        Err(why) => {
            tracing::info!(why, "token refused");
            Ok(None)
        }
    }
}

/// `whoami` (with an ack): the claims the authenticate function found, kept with the socket.
async fn whoami(Identity(claims): Identity<Claims>, ack: AckSender) {
    ack.send(&json!({ "user": claims.user, "expiresAt": claims.expires_at }))
        .ok();
}

// =============================================================================================
// (b) GraceTimeoutLayer: the authentication deadline, with a warning at half time
// =============================================================================================

/// Warns at half the deadline, disconnects at the deadline, unless authenticated by then.
///
/// Works above or below the auth layer: it acts on `Connect`, `Authenticated` and `Disconnect`,
/// which the crate's `AuthLayer` passes down, and checks the session's state when the timer
/// fires rather than trusting what it saw before.
#[derive(Debug, Clone, Copy)]
struct GraceTimeoutLayer {
    deadline: Duration,
}

/// The key of the layer's timer in the session: a type of its own, so it never replaces
/// another layer's.
struct GraceTimer;
/// The warning event sent at half the deadline.
const AUTH_WARNING: &str = "auth-warning";

impl GraceTimeoutLayer {
    /// A deadline of `deadline`; refused when zero, as the crate's layers refuse it.
    fn new(deadline: Duration) -> Result<Self, BuildError> {
        if deadline.is_zero() {
            return Err(BuildError::ZeroDuration("grace timeout"));
        }
        Ok(Self { deadline })
    }
}

impl<S> Layer<S> for GraceTimeoutLayer {
    type Service = GraceTimeoutService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GraceTimeoutService {
            inner,
            deadline: self.deadline,
        }
    }
}

#[derive(Debug, Clone)]
struct GraceTimeoutService<S> {
    inner: S,
    deadline: Duration,
}

impl<S, A> Service<SocketRequest<A>> for GraceTimeoutService<S>
where
    A: Adapter,
    S: Service<SocketRequest<A>, Response = ()>,
{
    type Response = ();
    type Error = S::Error;
    // Every request is passed down, so the inner future is the response future as is: no box.
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: SocketRequest<A>) -> Self::Future {
        match &req.kind {
            RequestKind::Connect => {
                let timer = tokio::spawn(grace_timer(
                    req.socket.clone(),
                    req.session.clone(),
                    self.deadline,
                ));
                // Kept in the session: replaced if set again, aborted if the socket has
                // already gone, and cleared by the core at disconnect in any case.
                req.session.set_timer::<GraceTimer>(timer.abort_handle());
            }
            RequestKind::Authenticated | RequestKind::Disconnect(_) => {
                req.session.clear_timer::<GraceTimer>();
            }
            RequestKind::Handshake | RequestKind::Event(_) => {}
        }
        self.inner.call(req)
    }
}

/// The timer task: warn at half time, disconnect at the deadline.
async fn grace_timer<A: Adapter>(socket: SocketRef<A>, session: Session, deadline: Duration) {
    let pending = || session.state() != ClientState::Authenticated && !session.is_closed();
    let half = deadline / 2;
    tokio::time::sleep(half).await;
    if !pending() {
        return;
    }
    let remaining = deadline - half;
    let warning =
        json!({ "remainingMs": u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX) });
    if let Err(e) = socket.emit(AUTH_WARNING, &warning) {
        tracing::debug!(socket = %socket.id, "could not send {AUTH_WARNING}: {e}");
    }
    tokio::time::sleep(remaining).await;
    if pending() {
        let id = socket.id;
        tracing::info!(socket = %id, ?deadline, state = %session.state(), "not authenticated in time, disconnecting");
        // Not `socket.disconnect()`: socketioxide refuses it when the client's buffer is full.
        session.disconnect(&socket);
    }
}

// =============================================================================================
// (c) A layer from an async function
// =============================================================================================

/// The per-socket counter, kept in the session's extensions (no global map, no global lock).
#[derive(Debug, Clone, Default)]
struct EventCount(Arc<AtomicU64>);

/// Counts each socket's events and logs the total when the socket disconnects; every request
/// is passed on. Used as `from_fn(count_events)`.
async fn count_events(req: SocketRequest, next: Next) -> Result<(), BoxError> {
    match &req.kind {
        RequestKind::Event(ev) => {
            let EventCount(n) = req
                .session
                .extensions()
                .get_or_insert_with(EventCount::default);
            let n = n.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::debug!(socket = %req.socket.id, event = %ev.name, n, "event");
        }
        RequestKind::Disconnect(reason) => {
            let n = req
                .session
                .extensions()
                .get::<EventCount>()
                .map_or(0, |EventCount(n)| n.load(Ordering::Relaxed));
            tracing::info!(socket = %req.socket.id, events = n, %reason, "socket left");
        }
        _ => {}
    }
    next.run(req).await
}

// =============================================================================================
// Main
// =============================================================================================

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    support::init_logging();
    let secret: Arc<str> = std::env::var("TOKEN_SECRET")
        .unwrap_or_else(|_| "change-me".into())
        .into();

    // `mint USER SECONDS`: print a token and exit.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [cmd, user, secs] = args.as_slice()
        && cmd == "mint"
    {
        if user.is_empty() || user.contains(':') {
            return Err("the user must be non-empty and contain no ':'".into());
        }
        let ttl = Duration::from_secs(secs.parse()?);
        println!("{}", mint(&secret, user, ttl));
        return Ok(());
    }
    if !args.is_empty() {
        return Err("usage: custom_layer [mint USER SECONDS]".into());
    }

    let port: u16 = std::env::var("PORT").map_or(Ok(3000), |p| p.parse())?;
    let deadline_ms: u64 = std::env::var("AUTH_TIMEOUT_MS").map_or(Ok(10_000), |v| v.parse())?;
    tracing::info!(
        token = %mint(&secret, "demo", Duration::from_secs(3600)),
        "a token for the user `demo`, valid for one hour"
    );

    let auth_secret = secret.clone();
    let server = SocketServer::builder()
        // (c) outermost: it sees every request, including the events the auth layer drops.
        .layer(from_fn(count_events))
        // (a) the crate's auth layer with our authenticate function.
        .layer(AuthLayer::new(move |hs| {
            authenticate(auth_secret.clone(), hs)
        }))
        // (b) our deadline in place of the crate's `AuthTimeoutLayer`.
        .try_layer(GraceTimeoutLayer::new(Duration::from_millis(deadline_ms)))
        // The crate's layers mix freely with ours.
        .layer(PingLayer::default())
        .on("whoami", whoami)
        .build()?;

    // No other routes: Socket.IO at `/io`, 404 elsewhere.
    let app = axum::Router::new().layer(server.layer());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let port = listener.local_addr()?.port();
    println!("listening on {port}");
    std::io::stdout().flush()?;

    let socket_server = server.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            support::shutdown_signal().await;
            tracing::info!("shutting down");
            socket_server.shutdown().await;
        })
        .await?;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_untampered_and_unexpired() {
        let token = mint("k", "alice", Duration::from_secs(60));
        assert_eq!(verify("k", &token).unwrap().user, "alice");
        assert_eq!(verify("other", &token), Err("bad signature"));
        let forged = token.replacen("alice", "mallory", 1);
        assert_eq!(verify("k", &forged), Err("bad signature"));
        let past = unix_now() - 1;
        let expired = format!("bob:{past}:{}", signature("k", "bob", past));
        assert_eq!(verify("k", &expired), Err("token expired"));
        assert_eq!(verify("k", "nonsense"), Err("malformed token"));
    }
}
