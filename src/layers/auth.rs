//! Authentication: the seeds' `authenticate` flow, and the gate in front of everything else.
//!
//! On `Connect` the layer claims the socket ([`Session::defer_authentication`]), so the layers
//! beneath it wait for the synthetic `Authenticated` request. When the client emits
//! `authenticate` (any arguments, they are ignored) in the `unauthorized` state:
//!
//! 1. the state becomes `authenticating` and the user's function is called with the
//!    [`Handshake`];
//! 2. accepted (`Ok(true)`, or `Ok(Some(identity))`): the state becomes `authenticated` and
//!    the identity is kept with the socket ([`identity`](crate::identity));
//!    right after, the synthetic `Authenticated` request goes through the whole stack (auth
//!    timer cleared, initial ping, default rooms, ping interval); when it has passed this
//!    layer, the client gets `authenticated` `{id, time}`; then the authenticated callback
//!    runs. This is the seeds' order (`onClientAuthenticated`);
//! 3. refused (`Ok(false)` or `Ok(None)`): back to `unauthorized`, the client gets `unauthenticated`
//!    `{message: "Invalid token to authenticate! Please login again!", time}`, then is
//!    disconnected;
//! 4. `Err(_)` or a panic: logged at error level, back to `unauthorized`, `unauthenticated`
//!    `{message: "Failed to authenticate connection! Please login again!", time}`, then
//!    disconnected.
//!
//! The `unauthenticated` packet is queued before the disconnect packet on the same socket, so
//! the client always reads the message before it is disconnected. An `authenticate` while
//! authenticating or authenticated is ignored. When a socket disconnects while its
//! authenticate function runs, the function's future is dropped.
//!
//! Every other event of a socket that is not authenticated is dropped here (logged at debug
//! level), unless its name is on the allow-list ([`AuthLayer::allow_unauthenticated`]).
//!
//! To refuse a client at its CONNECT instead (socket.io's `io.use` idiom), use
//! [`HandshakeAuthLayer`](crate::layers::HandshakeAuthLayer): the same function, the same
//! identity.
//!
//! # Example
//! ```
//! use socketio_stack::layers::AuthLayer;
//! use socketio_stack::Handshake;
//! use std::sync::Arc;
//!
//! // The seeds' form: whether the client may in.
//! async fn authenticate(handshake: Arc<Handshake>) -> Result<bool, std::io::Error> {
//!     let token = handshake.auth_field("token").or(handshake.bearer_token());
//!     Ok(token == Some("secret"))
//! }
//!
//! // Or who it is: `Some(user)` in, `None` refused.
//! async fn find_user(handshake: Arc<Handshake>) -> Result<Option<String>, std::io::Error> {
//!     Ok(handshake.auth_field("token").and_then(|t| t.strip_prefix("user:")).map(str::to_owned))
//! }
//!
//! let layer = AuthLayer::new(authenticate).allow_unauthenticated("hello");
//! let with_identity = AuthLayer::new(find_user);
//! # let _ = (layer, with_identity);
//! ```

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use tower_layer::Layer;
use tower_service::Service;

use crate::authentication::AuthOutcome;
use crate::error::BoxError;
use crate::event::{RequestKind, SocketRequest, Stamped, names};
use crate::handshake::Handshake;
use crate::layers::ResponseFuture;
use crate::plumbing::BoxFuture;
use crate::plumbing::{catch_panic_call, catch_panic_now};
use crate::session::{ClientState, Session};
use crate::telemetry::{self, AuthResult, DropReason};

/// The message of `unauthenticated` when the authenticate function answered `false`.
pub const INVALID_TOKEN_MESSAGE: &str = "Invalid token to authenticate! Please login again!";
/// The message of `unauthenticated` when the authenticate function failed.
pub const AUTH_FAILED_MESSAGE: &str = "Failed to authenticate connection! Please login again!";

/// An authenticate function, erased: its answer is applied to the session by
/// [`AuthOutcome::admit`].
pub(crate) type AuthenticateFn =
    Arc<dyn Fn(Arc<Handshake>) -> BoxFuture<Result<Admission, BoxError>> + Send + Sync>;

/// An authenticate function's answer, ready to be applied to a session.
pub(crate) type Admission = Box<dyn FnOnce(&Session) -> bool + Send>;

/// Erases `authenticate`, whatever [`AuthOutcome`] it answers with.
pub(crate) fn erase_authenticate<F, Fut, O, E>(authenticate: F) -> AuthenticateFn
where
    F: Fn(Arc<Handshake>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, E>> + Send + 'static,
    O: AuthOutcome,
    E: Into<BoxError>,
{
    Arc::new(move |handshake| {
        let fut = authenticate(handshake);
        Box::pin(async move {
            match fut.await {
                Ok(outcome) => Ok(Box::new(move |s: &Session| outcome.admit(s)) as Admission),
                Err(e) => Err(e.into()),
            }
        })
    })
}

/// Adds the authentication policy; see the [module docs](self).
#[derive(Clone)]
pub struct AuthLayer {
    authenticate: AuthenticateFn,
    allow_unauthenticated: Arc<HashSet<String>>,
}

impl AuthLayer {
    /// Authenticates with `authenticate`, the seeds' `authenticateFn`: an async function of
    /// the handshake answering whether the client may in (`bool`), or who it is
    /// (`Option<T>`: see [`AuthOutcome`]).
    pub fn new<F, Fut, O, E>(authenticate: F) -> Self
    where
        F: Fn(Arc<Handshake>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
        O: AuthOutcome,
        E: Into<BoxError>,
    {
        Self {
            authenticate: erase_authenticate(authenticate),
            allow_unauthenticated: Arc::default(),
        }
    }

    /// Lets the event `name` reach the layers beneath even before authentication.
    pub fn allow_unauthenticated(mut self, name: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.allow_unauthenticated).insert(name.into());
        self
    }
}

impl std::fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLayer")
            .field("allow_unauthenticated", &self.allow_unauthenticated)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`AuthLayer`].
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S, A> Service<SocketRequest<A>> for AuthService<S>
where
    A: Adapter,
    S: Service<SocketRequest<A>, Response = ()>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = ();
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: SocketRequest<A>) -> Self::Future {
        match &req.kind {
            RequestKind::Handshake => ResponseFuture::inner(self.inner.call(req)),
            RequestKind::Connect => {
                req.session.defer_authentication();
                ResponseFuture::inner(self.inner.call(req))
            }
            RequestKind::Event(ev) if ev.name == names::AUTHENTICATE => {
                let authenticate = self.layer.authenticate.clone();
                ResponseFuture::boxed(authenticate_socket(authenticate, req))
            }
            RequestKind::Event(ev) => {
                let allowed = req.session.state() == ClientState::Authenticated
                    || self.layer.allow_unauthenticated.contains(&ev.name);
                if allowed {
                    ResponseFuture::inner(self.inner.call(req))
                } else {
                    telemetry::event_dropped(DropReason::NotAuthenticated);
                    tracing::debug!(sid = %req.socket.id, event = %ev.name, state = %req.session.state(), "event from a socket that is not authenticated dropped");
                    ResponseFuture::done()
                }
            }
            RequestKind::Authenticated if req.session.authentication_deferred() => {
                announce_authenticated(&mut self.inner, req)
            }
            RequestKind::Authenticated | RequestKind::Disconnect(_) => {
                ResponseFuture::inner(self.inner.call(req))
            }
        }
    }
}

/// Marks a socket told it is authenticated.
#[derive(Clone)]
struct Announced;

/// Passes `Authenticated` down, then tells the client: it hears of its authentication once
/// the layers beneath have set the socket up (rooms joined, first ping sent), as in the seeds.
pub(crate) fn announce_authenticated<S, A>(
    inner: &mut S,
    req: SocketRequest<A>,
) -> ResponseFuture<S::Future, S::Error>
where
    A: Adapter,
    S: Service<SocketRequest<A>, Response = ()>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    let socket = req.socket.clone();
    let session = req.session.clone();
    let inner = inner.call(req);
    ResponseFuture::boxed(async move {
        inner.await?;
        // Once per socket, should two authentication layers share a stack.
        let first = session.extensions().insert(Announced).is_none();
        if first && !session.is_disconnecting() {
            let payload = Stamped::id(socket.id.as_str());
            if let Err(e) = socket.emit(names::AUTHENTICATED, &payload) {
                tracing::warn!(sid = %socket.id, error = %e, "could not send authenticated");
            }
            tracing::info!(sid = %socket.id, "socket authenticated");
        }
        Ok(())
    })
}

async fn authenticate_socket<A: Adapter, E>(
    authenticate: AuthenticateFn,
    req: SocketRequest<A>,
) -> Result<(), E> {
    let SocketRequest {
        socket, session, ..
    } = req;
    if session.is_disconnecting() {
        return Ok(());
    }
    if !session.transition(ClientState::Unauthorized, ClientState::Authenticating) {
        tracing::debug!(sid = %socket.id, state = %session.state(), "authenticate ignored");
        return Ok(());
    }
    let handshake = session.handshake().clone();
    let answer = catch_panic_call(move || authenticate(handshake));
    let started = std::time::Instant::now();
    let outcome = tokio::select! {
        biased;
        outcome = answer => outcome,
        () = session.closed() => {
            session.set_state(ClientState::Unauthorized);
            tracing::debug!(sid = %socket.id, "socket disconnected during authentication");
            return Ok(());
        }
    };
    telemetry::auth_duration(started.elapsed());
    // Closed by the deadline while the function ran: counted as a timeout there.
    let counted = !session.is_closed();
    let result = match outcome {
        Ok(Ok(admission)) => match catch_panic_now(|| admission(&session)) {
            Ok(true) => AuthResult::Ok,
            Ok(false) => {
                reject(&socket, &session, INVALID_TOKEN_MESSAGE);
                AuthResult::Refused
            }
            Err(panic) => {
                tracing::error!(sid = %socket.id, panic = %panic, "keeping the identity panicked");
                reject(&socket, &session, AUTH_FAILED_MESSAGE);
                AuthResult::Error
            }
        },
        Ok(Err(e)) => {
            tracing::error!(sid = %socket.id, error = %e, "authenticate function failed");
            reject(&socket, &session, AUTH_FAILED_MESSAGE);
            AuthResult::Error
        }
        Err(panic) => {
            tracing::error!(sid = %socket.id, panic = %panic, "authenticate function panicked");
            reject(&socket, &session, AUTH_FAILED_MESSAGE);
            AuthResult::Error
        }
    };
    if counted {
        telemetry::auth(result);
    }
    Ok(())
}

/// Sends `unauthenticated` then disconnects: both packets go through the socket's one queue,
/// in this order.
fn reject<A: Adapter>(socket: &SocketRef<A>, session: &Session, message: &str) {
    session.set_state(ClientState::Unauthorized);
    if let Err(e) = socket.emit(names::UNAUTHENTICATED, &Stamped::message(message)) {
        tracing::debug!(sid = %socket.id, error = %e, "could not send unauthenticated");
    }
    tracing::info!(sid = %socket.id, message, "socket refused");
    session.disconnect(socket);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Recorder, TestPacket, TestSocket, event};
    use serde_json::json;

    fn layer_answering(answer: Result<bool, &'static str>) -> AuthLayer {
        AuthLayer::new(move |_hs| async move { answer.map_err(BoxError::from) })
    }

    #[tokio::test]
    async fn success_completes_authentication_and_announces_it_after_the_stack_saw_it() {
        let t = TestSocket::new().await;
        let rec = Recorder::default();
        let mut svc = layer_answering(Ok(true)).layer(rec.clone());
        svc.call(t.request(RequestKind::Connect)).await.unwrap();
        assert!(t.session.authentication_deferred());
        svc.call(t.request(event("chat", json!(1)))).await.unwrap();
        svc.call(t.request(event("authenticate", json!(null))))
            .await
            .unwrap();
        assert_eq!(t.session.state(), ClientState::Authenticated);
        assert!(
            t.session.take_authentication_completed(),
            "the bridge is told"
        );
        assert!(
            t.no_packet_pending(),
            "nothing announced before the stack has seen it"
        );
        // What the bridge then does: `Authenticated` from the top of the stack.
        svc.call(t.request(RequestKind::Authenticated))
            .await
            .unwrap();
        svc.call(t.request(event("chat", json!(2)))).await.unwrap();
        assert_eq!(rec.seen(), ["connect", "authenticated", "event:chat"]);
        let TestPacket::Event(name, data) = t.next_packet().await else {
            panic!()
        };
        assert_eq!(name, "authenticated");
        assert_eq!(data["id"], t.socket.id.as_str());
        assert_eq!(data["time"].as_str().unwrap().len(), 24);
        // A second authenticate is ignored.
        svc.call(t.request(event("authenticate", json!(null))))
            .await
            .unwrap();
        assert!(!t.session.take_authentication_completed());
        assert!(t.no_packet_pending());
    }

    #[tokio::test]
    async fn refusal_and_failure_send_their_messages_then_disconnect() {
        for (answer, message) in [
            (Ok(false), INVALID_TOKEN_MESSAGE),
            (Err("db down"), AUTH_FAILED_MESSAGE),
        ] {
            let t = TestSocket::new().await;
            let rec = Recorder::default();
            let mut svc = layer_answering(answer).layer(rec.clone());
            svc.call(t.request(RequestKind::Connect)).await.unwrap();
            svc.call(t.request(event("authenticate", json!(["junk", 1]))))
                .await
                .unwrap();
            let TestPacket::Event(name, data) = t.next_packet().await else {
                panic!()
            };
            assert_eq!(name, "unauthenticated");
            assert_eq!(data["message"], message);
            assert_eq!(t.next_packet().await, TestPacket::Disconnect);
            assert_eq!(t.session.state(), ClientState::Unauthorized);
            assert_eq!(rec.seen(), ["connect"]);
        }
    }

    #[tokio::test]
    async fn a_panicking_authenticate_function_is_contained() {
        let t = TestSocket::new().await;
        let layer = AuthLayer::new(|_hs| async move {
            if true {
                panic!("boom");
            }
            Ok::<_, BoxError>(true)
        });
        let mut svc = layer.layer(Recorder::default());
        svc.call(t.request(RequestKind::Connect)).await.unwrap();
        svc.call(t.request(event("authenticate", json!(null))))
            .await
            .unwrap();
        let TestPacket::Event(_, data) = t.next_packet().await else {
            panic!()
        };
        assert_eq!(data["message"], AUTH_FAILED_MESSAGE);
    }

    #[tokio::test]
    async fn allow_list_lets_named_events_through() {
        let t = TestSocket::new().await;
        let rec = Recorder::default();
        let mut svc = layer_answering(Ok(true))
            .allow_unauthenticated("hello")
            .layer(rec.clone());
        svc.call(t.request(RequestKind::Connect)).await.unwrap();
        svc.call(t.request(event("hello", json!(null))))
            .await
            .unwrap();
        svc.call(t.request(event("join", json!({"rooms": ["a"]}))))
            .await
            .unwrap();
        assert_eq!(rec.seen(), ["connect", "event:hello"]);
    }
}
