//! The authentication deadline: a socket not authenticated within it is disconnected.
//!
//! On `Connect` a timer starts (default 10 s, the seeds' `authenticateTimeout`); it is kept in
//! the socket's [`Session`](crate::Session) under [`Deadline`] and cleared when `Authenticated`
//! or `Disconnect` passes by. When it fires, a socket whose state is not `authenticated` (still
//! `unauthorized`, or `authenticating` with an authenticate function that has not answered)
//! is disconnected. The check happens when it fires, so the layer works above or below the
//! auth layer.
//!
//! Every socket's deadline is an entry of one queue per service, run by one task while any is
//! armed, not a task per socket: arming and clearing one costs no allocation of a task, and a
//! cleared deadline lets go of its socket at once.
//!
//! # Example
//! ```
//! use socketio_stack::layers::AuthTimeoutLayer;
//! use std::time::Duration;
//!
//! let seeds_default = AuthTimeoutLayer::default();
//! let strict = AuthTimeoutLayer::new(Duration::from_secs(3)).expect("a positive duration");
//! assert!(AuthTimeoutLayer::new(Duration::ZERO).is_err());
//! # let _ = (seeds_default, strict);
//! ```

use std::task::{Context, Poll};
use std::time::Duration;

use socketioxide::adapter::Adapter;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{BuildError, check_duration};
use crate::event::{RequestKind, SocketRequest};
use crate::layers::ResponseFuture;
use crate::session::ClientState;
use crate::telemetry::{self, AuthResult};
use crate::timer_queue::TimerQueue;

/// The seeds' default deadline: 10 s.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// The key of the layer's timer in the session: `session.has_timer::<Deadline>()`.
#[derive(Debug)]
pub struct Deadline;

/// Adds the authentication deadline; see the [module docs](self).
#[derive(Debug, Clone, Copy)]
pub struct AuthTimeoutLayer {
    timeout: Duration,
}

impl AuthTimeoutLayer {
    /// A deadline of `timeout`; refused when zero or over a year.
    pub fn new(timeout: Duration) -> Result<Self, BuildError> {
        Ok(Self {
            timeout: check_duration("authentication timeout", timeout)?,
        })
    }

    /// The deadline.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl Default for AuthTimeoutLayer {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_AUTH_TIMEOUT,
        }
    }
}

impl<S> Layer<S> for AuthTimeoutLayer {
    type Service = AuthTimeoutService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthTimeoutService {
            inner,
            timeout: self.timeout,
            deadlines: TimerQueue::new(self.timeout),
        }
    }
}

/// The service of [`AuthTimeoutLayer`].
#[derive(Debug, Clone)]
pub struct AuthTimeoutService<S> {
    inner: S,
    timeout: Duration,
    /// Every socket's deadline, on one task.
    deadlines: TimerQueue,
}

impl<S, A> Service<SocketRequest<A>> for AuthTimeoutService<S>
where
    A: Adapter,
    S: Service<SocketRequest<A>, Response = ()>,
{
    type Response = ();
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: SocketRequest<A>) -> Self::Future {
        match &req.kind {
            // Authenticated at the handshake already: no deadline to keep.
            RequestKind::Connect if req.session.state() != ClientState::Authenticated => {
                let socket = req.socket.clone();
                let session = req.session.clone();
                let timeout = self.timeout;
                let timer = self.deadlines.arm(Box::new(move || {
                    if session.state() != ClientState::Authenticated && !session.is_closed() {
                        tracing::info!(sid = %socket.id, ?timeout, state = %session.state(), "not authenticated in time, disconnecting");
                        telemetry::auth(AuthResult::Timeout);
                        session.disconnect(&socket);
                    }
                    false
                }));
                req.session.set_queued_timer::<Deadline>(timer);
            }
            RequestKind::Authenticated | RequestKind::Disconnect(_) => {
                req.session.clear_timer::<Deadline>();
            }
            RequestKind::Handshake | RequestKind::Connect | RequestKind::Event(_) => {}
        }
        ResponseFuture::inner(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Recorder, TestPacket, TestSocket};
    use socketioxide::socket::DisconnectReason;

    fn layer(ms: u64) -> AuthTimeoutLayer {
        AuthTimeoutLayer::new(Duration::from_millis(ms)).unwrap()
    }

    #[tokio::test]
    async fn disconnects_a_socket_not_authenticated_in_time() {
        let t = TestSocket::new().await;
        let mut svc = layer(50).layer(Recorder::default());
        svc.call(t.request(RequestKind::Connect)).await.unwrap();
        assert!(t.session.has_timer::<Deadline>());
        assert_eq!(t.next_packet().await, TestPacket::Disconnect);
    }

    #[tokio::test]
    async fn is_cleared_by_authentication_and_by_disconnect() {
        for kind in [
            RequestKind::Authenticated,
            RequestKind::Disconnect(DisconnectReason::TransportClose),
        ] {
            let t = TestSocket::new().await;
            let mut svc = layer(20).layer(Recorder::default());
            svc.call(t.request(RequestKind::Connect)).await.unwrap();
            svc.call(t.request(kind)).await.unwrap();
            assert!(t.session.timer_names().is_empty());
            // Past the deadline, nothing was sent: the timer is gone, not merely late.
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(t.no_packet_pending());
        }
    }

    #[test]
    fn refuses_zero_and_absurd_deadlines() {
        assert_eq!(
            AuthTimeoutLayer::new(Duration::ZERO).unwrap_err(),
            BuildError::ZeroDuration("authentication timeout")
        );
        assert!(AuthTimeoutLayer::new(Duration::from_secs(u64::MAX)).is_err());
        assert_eq!(
            AuthTimeoutLayer::default().timeout(),
            Duration::from_secs(10)
        );
    }
}
