//! The policies, one tower layer each, in the order the seeds' stack puts them:
//!
//! | module | layer | what it does |
//! | --- | --- | --- |
//! | [`auth`] | [`AuthLayer`] | answers `authenticate`, gates unauthenticated sockets |
//! | [`handshake_auth`] | [`HandshakeAuthLayer`] | or: refuses a bad CONNECT with `connect_error` |
//! | [`auth_timeout`] | [`AuthTimeoutLayer`] | disconnects sockets not authenticated in time |
//! | [`ping`] | [`PingLayer`] | the application-level `ping` keep-alive |
//! | [`rooms`] | [`RoomsLayer`] | default rooms, validated `join`, `leave` |
//! | [`event_rate_limit`] | [`EventRateLimitLayer`] | a token bucket per socket against floods |
//! | [`from_fn`](mod@from_fn) | [`FromFnLayer`] | your own policy, from an async function |
//!
//! Each reacts to the [`SocketRequest`](crate::SocketRequest)s it cares about and passes the
//! rest down, so any of them can be left out or replaced by a layer of your own over the same
//! request type. The synthetic `Authenticated` request always enters at the top of the stack,
//! so every layer sees it wherever it sits. Order matters only for gating: events reach the
//! layers above [`AuthLayer`] before it can drop them. Put it first, as the seeds' stack
//! does (the rooms layer ignores `join`/`leave` from unauthenticated sockets wherever it sits).

pub mod auth;
pub mod auth_timeout;
pub mod event_rate_limit;
pub mod from_fn;
pub mod handshake_auth;
pub mod ping;
pub mod rooms;

pub use auth::{AuthLayer, AuthService};
pub use auth_timeout::{AuthTimeoutLayer, AuthTimeoutService};
pub use event_rate_limit::{EventRateLimitLayer, EventRateLimitService};
pub use from_fn::{FromFn, FromFnLayer, Next, from_fn};
pub use handshake_auth::{HandshakeAuthLayer, HandshakeAuthService};
pub use ping::{PingLayer, PingService};
pub use rooms::{RoomLimits, RoomsLayer, RoomsService};

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::plumbing::BoxFuture;

pin_project! {
    /// The response future of the crate's layers: the inner service's own future when the
    /// request is passed down untouched (no allocation on that path), an immediate result when
    /// the layer answered it itself, or a boxed future for the layer's asynchronous work.
    #[project = ResponseFutureProj]
    // pin-project-lite takes no doc comments on fields: each variant says what its field is.
    #[allow(missing_docs)]
    pub enum ResponseFuture<F, E> {
        /// The request was passed down (`fut`: the inner service's future).
        Inner { #[pin] fut: F },
        /// The layer answered at once (`result`: its answer, until polled).
        Done { result: Option<Result<(), E>> },
        /// The layer does asynchronous work of its own (`fut`: that work).
        Boxed { fut: BoxFuture<Result<(), E>> },
    }
}

/// The constructors are public so that custom layers can use the same future.
impl<F, E> ResponseFuture<F, E> {
    /// Passes the inner service's future through.
    pub fn inner(fut: F) -> Self {
        Self::Inner { fut }
    }

    /// The request was answered by the layer: `Ok(())` at once.
    pub fn done() -> Self {
        Self::Done {
            result: Some(Ok(())),
        }
    }

    /// Asynchronous work of the layer's own.
    pub fn boxed(fut: impl Future<Output = Result<(), E>> + Send + 'static) -> Self {
        Self::Boxed { fut: Box::pin(fut) }
    }
}

impl<F, E> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<(), E>>,
{
    type Output = Result<(), E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Inner { fut } => fut.poll(cx),
            ResponseFutureProj::Done { result } => Poll::Ready(result.take().unwrap_or(Ok(()))),
            ResponseFutureProj::Boxed { fut } => fut.as_mut().poll(cx),
        }
    }
}
