//! Authentication at the handshake: socket.io's `io.use` idiom, the second built-in way to
//! authenticate (the seeds' event-based [`AuthLayer`](crate::layers::AuthLayer) is the first).
//!
//! The user's function gets the [`Handshake`] (the CONNECT's `auth` payload, the request's
//! headers and query) during the socket's `Handshake` request, before its CONNECT is answered:
//!
//! 1. accepted (`Ok(true)`, `Ok(Some(identity))`): the identity is kept with the socket, the
//!    CONNECT is answered, and the synthetic `Authenticated` request goes through the stack
//!    right after `Connect` (ping and the default rooms start, the authenticated callback
//!    runs). The client also gets the seeds' `authenticated` `{id, time}`, so a client written
//!    for the event-based flow works unchanged; its `authenticate` events are ignored;
//! 2. refused (`Ok(false)`, `Ok(None)`): the client gets `connect_error`
//!    `{message: "Invalid token to authenticate! Please login again!"}` and no socket: no
//!    layer beneath sees it, no handler runs, nothing is tracked;
//! 3. failed (`Err(_)`, a panic, or no answer within the timeout, 10 s by default): logged at
//!    error level, and `connect_error`
//!    `{message: "Failed to authenticate connection! Please login again!"}`.
//!
//! The Engine.IO session stays open after a refusal, as in socket.io, until socketioxide's
//! connect timeout (45 s after it opened, unless a CONNECT succeeds): the client may CONNECT
//! again meanwhile (socket.io-client does not on its own; the application can, with another
//! token), and a session's CONNECTs are bounded ([`ConnectLimit`](crate::ConnectLimit)),
//! refused ones included. A client that leaves while its function runs costs that call, up to
//! the timeout; the socket then goes no further.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use socketio_stack::layers::HandshakeAuthLayer;
//! use socketio_stack::{Handshake, SocketServer};
//!
//! async fn authenticate(hs: Arc<Handshake>) -> Result<Option<String>, std::io::Error> {
//!     Ok((hs.auth_field("token") == Some("secret")).then(|| "alice".to_owned()))
//! }
//!
//! let server = SocketServer::builder()
//!     .layer(HandshakeAuthLayer::new(authenticate).timeout(Duration::from_secs(3)))
//!     .build()
//!     .unwrap();
//! # let _ = server;
//! ```

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use socketioxide::adapter::Adapter;
use tower_layer::Layer;
use tower_service::Service;

use crate::authentication::AuthOutcome;
use crate::error::BoxError;
use crate::event::{RequestKind, SocketRequest, names};
use crate::handshake::Handshake;
use crate::layers::ResponseFuture;
use crate::layers::auth::{
    AUTH_FAILED_MESSAGE, AuthenticateFn, INVALID_TOKEN_MESSAGE, announce_authenticated,
    erase_authenticate,
};
use crate::layers::auth_timeout::DEFAULT_AUTH_TIMEOUT;
use crate::plumbing::{catch_panic_call, catch_panic_now};
use crate::session::ClientState;
use crate::telemetry::{self, AuthResult, DropReason};

/// Adds authentication at the handshake; see the [module docs](self).
#[derive(Clone)]
pub struct HandshakeAuthLayer {
    authenticate: AuthenticateFn,
    timeout: Duration,
}

impl HandshakeAuthLayer {
    /// Authenticates each CONNECT with `authenticate`, which answers whether the client may in
    /// (`bool`) or who it is (`Option<T>`), as for [`AuthLayer`](crate::layers::AuthLayer).
    pub fn new<F, Fut, O, E>(authenticate: F) -> Self
    where
        F: Fn(Arc<Handshake>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
        O: AuthOutcome,
        E: Into<BoxError>,
    {
        Self {
            authenticate: erase_authenticate(authenticate),
            timeout: DEFAULT_AUTH_TIMEOUT,
        }
    }

    /// How long the function may take before the CONNECT is refused as failed (default 10 s,
    /// the seeds' `authenticateTimeout`): the client waits for its CONNECT answer meanwhile.
    /// The bridge gives the whole `Handshake` request at most
    /// [`HANDSHAKE_DEADLINE`](crate::limits::HANDSHAKE_DEADLINE) (45 s) whatever this
    /// says; zero refuses every client.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl std::fmt::Debug for HandshakeAuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeAuthLayer")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for HandshakeAuthLayer {
    type Service = HandshakeAuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HandshakeAuthService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`HandshakeAuthLayer`].
#[derive(Clone, Debug)]
pub struct HandshakeAuthService<S> {
    inner: S,
    layer: HandshakeAuthLayer,
}

impl<S, A> Service<SocketRequest<A>> for HandshakeAuthService<S>
where
    A: Adapter,
    S: Service<SocketRequest<A>, Response = ()> + Clone + Send + 'static,
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
            RequestKind::Handshake => {
                req.session.defer_authentication();
                let authenticate = self.layer.authenticate.clone();
                let timeout = self.layer.timeout;
                // The ready clone goes with the request; this one waits for the next readiness.
                let fresh = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, fresh);
                ResponseFuture::boxed(async move {
                    if admitted(authenticate, timeout, &req).await {
                        inner.call(req).await
                    } else {
                        Ok(())
                    }
                })
            }
            RequestKind::Authenticated if req.session.authentication_deferred() => {
                announce_authenticated(&mut self.inner, req)
            }
            RequestKind::Event(ev) if ev.name == names::AUTHENTICATE => {
                tracing::debug!(sid = %req.socket.id, "authenticate ignored: authenticated at the handshake");
                ResponseFuture::done()
            }
            // Never expected (a socket refused at its CONNECT sends nothing), but should a
            // layer above have dropped the Handshake request after the claim, fail closed.
            RequestKind::Event(ev) if req.session.state() != ClientState::Authenticated => {
                telemetry::event_dropped(DropReason::NotAuthenticated);
                tracing::debug!(sid = %req.socket.id, event = %ev.name, "event from a socket not authenticated at the handshake dropped");
                ResponseFuture::done()
            }
            _ => ResponseFuture::inner(self.inner.call(req)),
        }
    }
}

/// Runs the function on the socket's handshake; on anything but acceptance, leaves the
/// refusal for the bridge to answer the CONNECT with.
async fn admitted<A: Adapter>(
    authenticate: AuthenticateFn,
    timeout: Duration,
    req: &SocketRequest<A>,
) -> bool {
    let (socket, session) = (&req.socket, &req.session);
    session.set_state(ClientState::Authenticating);
    let handshake = session.handshake().clone();
    let answer = tokio::time::timeout(timeout, catch_panic_call(move || authenticate(handshake)));
    let started = std::time::Instant::now();
    let answer = answer.await;
    telemetry::auth_duration(started.elapsed());
    let (result, refusal) = match answer {
        Ok(Ok(Ok(admission))) => match catch_panic_now(|| admission(session)) {
            Ok(true) => {
                telemetry::auth(AuthResult::Ok);
                return true;
            }
            Ok(false) => (AuthResult::Refused, INVALID_TOKEN_MESSAGE),
            Err(panic) => {
                tracing::error!(sid = %socket.id, panic = %panic, "keeping the identity panicked");
                (AuthResult::Error, AUTH_FAILED_MESSAGE)
            }
        },
        Ok(Ok(Err(e))) => {
            tracing::error!(sid = %socket.id, error = %e, "authenticate function failed");
            (AuthResult::Error, AUTH_FAILED_MESSAGE)
        }
        Ok(Err(panic)) => {
            tracing::error!(sid = %socket.id, panic = %panic, "authenticate function panicked");
            (AuthResult::Error, AUTH_FAILED_MESSAGE)
        }
        Err(_) => {
            tracing::error!(sid = %socket.id, ?timeout, "authenticate function did not answer in time");
            (AuthResult::Timeout, AUTH_FAILED_MESSAGE)
        }
    };
    telemetry::auth(result);
    session.set_state(ClientState::Unauthorized);
    session.refuse_connection(refusal);
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Recorder, TestPacket, TestSocket};
    use serde_json::json;

    #[derive(Clone, Debug, PartialEq, serde::Serialize)]
    struct User(String);

    #[tokio::test]
    async fn an_accepted_handshake_keeps_the_identity_and_passes_down() {
        let t = TestSocket::new().await;
        let rec = Recorder::default();
        let layer =
            HandshakeAuthLayer::new(|_hs| async { Ok::<_, BoxError>(Some(User("ann".into()))) });
        let mut svc = layer.layer(rec.clone());
        svc.call(t.request(RequestKind::Handshake)).await.unwrap();
        assert_eq!(t.session.state(), ClientState::Authenticated);
        assert_eq!(t.session.identity::<User>(), Some(User("ann".into())));
        assert_eq!(*t.session.data(), json!("ann"));
        assert!(t.session.take_connect_refusal().is_none());
        svc.call(t.request(RequestKind::Authenticated))
            .await
            .unwrap();
        let TestPacket::Event(name, _) = t.next_packet().await else {
            panic!()
        };
        assert_eq!(name, "authenticated");
        assert_eq!(rec.seen(), ["handshake", "authenticated"]);
    }

    #[tokio::test]
    async fn with_the_event_based_layer_too_the_client_is_told_once_and_events_are_gated() {
        let t = TestSocket::new().await;
        let rec = Recorder::default();
        let accept = |_hs| async { Ok::<_, BoxError>(true) };
        let mut svc = HandshakeAuthLayer::new(accept)
            .layer(crate::layers::AuthLayer::new(accept).layer(rec.clone()));
        // Before authentication (a layer above dropped the Handshake, say): nothing passes.
        t.session.defer_authentication();
        svc.call(t.request(crate::testing::event("chat", json!(1))))
            .await
            .unwrap();
        assert!(rec.seen().is_empty());
        svc.call(t.request(RequestKind::Handshake)).await.unwrap();
        svc.call(t.request(RequestKind::Connect)).await.unwrap();
        svc.call(t.request(RequestKind::Authenticated))
            .await
            .unwrap();
        let TestPacket::Event(name, _) = t.next_packet().await else {
            panic!()
        };
        assert_eq!(name, "authenticated");
        assert!(t.no_packet_pending(), "told once");
        svc.call(t.request(crate::testing::event("chat", json!(2))))
            .await
            .unwrap();
        assert_eq!(
            rec.seen(),
            ["handshake", "connect", "authenticated", "event:chat"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refused_failed_panicking_and_slow_functions_refuse_the_connect() {
        let cases: Vec<(HandshakeAuthLayer, &str)> = vec![
            (
                HandshakeAuthLayer::new(|_hs| async { Ok::<_, BoxError>(false) }),
                INVALID_TOKEN_MESSAGE,
            ),
            (
                HandshakeAuthLayer::new(|_hs| async { Ok::<Option<User>, BoxError>(None) }),
                INVALID_TOKEN_MESSAGE,
            ),
            (
                HandshakeAuthLayer::new(|_hs| async { Err::<bool, BoxError>("db down".into()) }),
                AUTH_FAILED_MESSAGE,
            ),
            (
                HandshakeAuthLayer::new(|_hs| -> std::future::Ready<Result<bool, BoxError>> {
                    panic!("boom")
                }),
                AUTH_FAILED_MESSAGE,
            ),
            (
                HandshakeAuthLayer::new(|_hs| std::future::pending::<Result<bool, BoxError>>())
                    .timeout(Duration::from_secs(3)),
                AUTH_FAILED_MESSAGE,
            ),
        ];
        for (layer, message) in cases {
            let t = TestSocket::new().await;
            let rec = Recorder::default();
            let mut svc = layer.layer(rec.clone());
            svc.call(t.request(RequestKind::Handshake)).await.unwrap();
            assert_eq!(t.session.take_connect_refusal().as_deref(), Some(message));
            assert_eq!(t.session.state(), ClientState::Unauthorized);
            assert!(
                rec.seen().is_empty(),
                "nothing beneath sees a refused socket"
            );
        }
    }
}
