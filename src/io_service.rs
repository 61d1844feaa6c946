//! The HTTP entry of the stack: socketioxide's service, with each Socket.IO request's head
//! copied out of the connection's read buffer.
//!
//! hyper parses a request's URI and header values as slices of the connection's read
//! buffer (8 to 16 KiB), and socketioxide keeps the handshake request's head for the whole
//! life of the socket. Left as is, every idle client would pin its connection's read
//! buffer: about 16 KiB per client, half of what an authenticated idle client costs. The
//! copy (a few hundred bytes, once per Socket.IO HTTP request) frees it; requests outside
//! the Socket.IO path are passed on untouched.
//!
//! One copy is out of reach here: axum's `Router` stores the request's original URI in its
//! extensions before a route's layers run, so `Router::layer(server.layer())` still pins the
//! buffer. Mounted in front of the router instead, `server.layer().layer(router)` (as the
//! demo does), Socket.IO requests never enter axum.
//!
//! [`SocketServer::layer`](crate::SocketServer::layer) and
//! [`SocketServer::service`](crate::SocketServer::service) return these types.

use std::fmt::Write;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use http::{HeaderMap, HeaderValue, Request, Uri};
use socketioxide::adapter::{Adapter, LocalAdapter};
use socketioxide::layer::SocketIoLayer;
use socketioxide::service::SocketIoService;
use tower_layer::Layer;
use tower_service::Service;

/// A tower layer serving Socket.IO at the stack's path and passing every other request to
/// the service it wraps.
pub struct IoLayer<A: Adapter = LocalAdapter> {
    inner: SocketIoLayer<A>,
    path: Arc<str>,
}

impl<A: Adapter> IoLayer<A> {
    pub(crate) fn new(inner: SocketIoLayer<A>, path: &str) -> Self {
        Self {
            inner,
            path: path.trim_end_matches('/').into(),
        }
    }
}

impl<A: Adapter> Clone for IoLayer<A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            path: self.path.clone(),
        }
    }
}

impl<S: Clone, A: Adapter> Layer<S> for IoLayer<A> {
    type Service = IoService<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        IoService {
            inner: self.inner.layer(inner),
            path: self.path.clone(),
        }
    }
}

/// The service of [`IoLayer`]: Socket.IO at the path, the wrapped service elsewhere.
pub struct IoService<S: Clone, A: Adapter = LocalAdapter> {
    inner: SocketIoService<S, A>,
    path: Arc<str>,
}

impl<S: Clone, A: Adapter> Clone for IoService<S, A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            path: self.path.clone(),
        }
    }
}

impl<S, A, B> Service<Request<B>> for IoService<S, A>
where
    A: Adapter,
    S: Clone,
    SocketIoService<S, A>: Service<Request<B>>,
{
    type Response = <SocketIoService<S, A> as Service<Request<B>>>::Response;
    type Error = <SocketIoService<S, A> as Service<Request<B>>>::Error;
    type Future = <SocketIoService<S, A> as Service<Request<B>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let req = if is_under(req.uri().path(), &self.path) {
            detach_head(req)
        } else {
            req
        };
        self.inner.call(req)
    }
}

fn is_under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The same request, its URI and header values copied into one allocation of their own
/// (one buffer rather than one per value, so that cloning the head later, as the handshake
/// does, only counts references).
fn detach_head<B>(req: Request<B>) -> Request<B> {
    let (mut parts, body) = req.into_parts();
    let values: usize = parts.headers.values().map(|v| v.len()).sum();
    // Room for a typical URI too; writing a longer one grows the buffer.
    let mut buffer = BytesMut::with_capacity(values + 128);
    // Writing into a `BytesMut` cannot fail.
    let _ = write!(buffer, "{}", parts.uri);
    let uri_len = buffer.len();
    for value in parts.headers.values() {
        buffer.extend_from_slice(value.as_bytes());
    }
    let buffer = buffer.freeze();
    if let Ok(uri) = Uri::from_maybe_shared(buffer.slice(..uri_len)) {
        parts.uri = uri;
    }
    let mut headers = HeaderMap::with_capacity(parts.headers.len());
    let mut at = uri_len;
    for (name, value) in &parts.headers {
        let bytes = buffer.slice(at..at + value.len());
        at += value.len();
        // The bytes were a valid value already, so this cannot fail.
        if let Ok(mut copy) = HeaderValue::from_maybe_shared(bytes) {
            copy.set_sensitive(value.is_sensitive());
            headers.append(name.clone(), copy);
        }
    }
    parts.headers = headers;
    Request::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_matches_whole_segments() {
        assert!(is_under("/io", "/io"));
        assert!(is_under("/io/", "/io"));
        assert!(is_under("/io/?EIO=4", "/io"));
        assert!(!is_under("/iox", "/io"));
        assert!(!is_under("/health", "/io"));
    }

    #[test]
    fn the_detached_head_keeps_every_header_and_the_uri() {
        let mut req = Request::builder()
            .uri("/io/?EIO=4&transport=websocket")
            .header("authorization", "Bearer t")
            .header("x-twice", "1")
            .header("x-twice", "2")
            .body(())
            .unwrap();
        req.headers_mut()
            .get_mut("authorization")
            .unwrap()
            .set_sensitive(true);
        let copy = detach_head(req);
        assert_eq!(copy.uri(), "/io/?EIO=4&transport=websocket");
        assert_eq!(copy.headers()["authorization"], "Bearer t");
        assert!(copy.headers()["authorization"].is_sensitive());
        let twice: Vec<_> = copy.headers().get_all("x-twice").iter().collect();
        assert_eq!(twice, ["1", "2"]);
    }
}
