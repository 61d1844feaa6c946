//! A layer from an async function, as axum's `middleware::from_fn`: a policy of a few lines
//! needs no hand-written `Service`.
//!
//! The function gets each [`SocketRequest`] and a [`Next`], the rest of the stack: call
//! `next.run(req).await` to pass the request down, or answer it yourself and return. It sees
//! every kind of request (`Handshake`, `Connect`, `Event`, `Authenticated`, `Disconnect`), so
//! it can claim authentication, refuse a CONNECT, keep per-socket state in the
//! [`Session`](crate::Session)'s extensions or start a timer, as a hand-written layer would.
//! Write a `Service` instead when the layer needs its own readiness (backpressure) or the
//! last nanoseconds: each request boxes the function's future, [`Next`] (the rest of the
//! stack, cloned) and its future, about 40 ns in all on this project's machine (BENCHMARKS.md).
//!
//! # Example
//! ```
//! use socketio_stack::layers::{Next, from_fn};
//! use socketio_stack::{BoxError, RequestKind, SocketRequest, SocketServer};
//!
//! // Drops events whose name starts with `admin:` unless the socket's identity is "root".
//! async fn admin_only(req: SocketRequest, next: Next) -> Result<(), BoxError> {
//!     let admin = req.event_name().is_some_and(|n| n.starts_with("admin:"));
//!     if admin && req.session.identity::<String>().as_deref() != Some("root") {
//!         tracing::info!(sid = %req.socket.id, "admin event refused");
//!         return Ok(());
//!     }
//!     next.run(req).await
//! }
//!
//! let server = SocketServer::builder()
//!     .layer(from_fn(admin_only))
//!     .layer(from_fn(async |req: SocketRequest, next: Next| {
//!         if matches!(req.kind, RequestKind::Connect) {
//!             tracing::info!(sid = %req.socket.id, "hello");
//!         }
//!         next.run(req).await
//!     }))
//!     .build()
//!     .unwrap();
//! # let _ = server;
//! ```

use std::future::Future;
use std::task::{Context, Poll};

use socketioxide::adapter::{Adapter, LocalAdapter};
use tower::ServiceExt;
use tower::util::BoxService;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::BoxError;
use crate::event::SocketRequest;
use crate::plumbing::BoxFuture;

/// A layer running `f` for each request; see the [module docs](self).
pub fn from_fn<F>(f: F) -> FromFnLayer<F> {
    FromFnLayer { f }
}

/// The layer of [`from_fn`].
#[derive(Clone, Copy)]
pub struct FromFnLayer<F> {
    f: F,
}

impl<F> std::fmt::Debug for FromFnLayer<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FromFnLayer")
            .field("f", &std::any::type_name::<F>())
            .finish()
    }
}

impl<S, F: Clone> Layer<S> for FromFnLayer<F> {
    type Service = FromFn<F, S>;

    fn layer(&self, inner: S) -> Self::Service {
        FromFn {
            f: self.f.clone(),
            inner,
        }
    }
}

/// The service of [`from_fn`].
#[derive(Clone)]
pub struct FromFn<F, S> {
    f: F,
    inner: S,
}

impl<F, S> std::fmt::Debug for FromFn<F, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FromFn")
            .field("f", &std::any::type_name::<F>())
            .finish_non_exhaustive()
    }
}

/// The rest of the stack beneath a [`from_fn`] layer, ready for one request.
pub struct Next<A: Adapter = LocalAdapter> {
    inner: BoxService<SocketRequest<A>, (), BoxError>,
}

impl<A: Adapter> Next<A> {
    /// Passes `req` down the stack and waits for it to be handled.
    pub async fn run(mut self, req: SocketRequest<A>) -> Result<(), BoxError> {
        self.inner.call(req).await
    }
}

impl<A: Adapter> std::fmt::Debug for Next<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Next").finish_non_exhaustive()
    }
}

impl<F, Fut, S, A> Service<SocketRequest<A>> for FromFn<F, S>
where
    A: Adapter,
    F: Fn(SocketRequest<A>, Next<A>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    S: Service<SocketRequest<A>, Response = ()> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = BoxError;
    type Future = BoxFuture<Result<(), BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: SocketRequest<A>) -> Self::Future {
        // The instance polled ready goes to `Next`; a clone waits for the next `poll_ready`.
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        let next = Next {
            inner: BoxService::new(ready.map_err(Into::into)),
        };
        Box::pin((self.f)(req, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::RequestKind;
    use crate::testing::{Recorder, TestSocket, event};
    use serde_json::json;

    #[tokio::test]
    async fn the_function_passes_down_answers_or_fails() {
        let t = TestSocket::new().await;
        let rec = Recorder::default();
        let mut svc = from_fn(
            async |req: SocketRequest, next: Next| match req.event_name() {
                Some("secret") => Ok(()),
                Some("broken") => Err("refused".into()),
                _ => next.run(req).await,
            },
        )
        .layer(rec.clone());
        for kind in [
            RequestKind::Connect,
            event("secret", json!(1)),
            event("chat", json!(2)),
        ] {
            svc.ready()
                .await
                .unwrap()
                .call(t.request(kind))
                .await
                .unwrap();
        }
        let err = svc
            .ready()
            .await
            .unwrap()
            .call(t.request(event("broken", json!(3))))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "refused");
        assert_eq!(rec.seen(), ["connect", "event:chat"]);
    }

    #[tokio::test]
    async fn a_request_may_go_down_after_the_function_awaited_something() {
        let t = TestSocket::new().await;
        let rec = Recorder::default();
        let mut svc = from_fn(async |req: SocketRequest, next: Next| {
            tokio::task::yield_now().await;
            req.session.extensions().insert(7_u32);
            next.run(req).await
        })
        .layer(rec.clone());
        let first = svc
            .ready()
            .await
            .unwrap()
            .call(t.request(RequestKind::Connect));
        let second = svc
            .ready()
            .await
            .unwrap()
            .call(t.request(event("chat", json!(1))));
        second.await.unwrap();
        first.await.unwrap();
        assert_eq!(rec.seen(), ["event:chat", "connect"]);
        assert_eq!(t.session.extensions().get::<u32>(), Some(7));
    }
}
