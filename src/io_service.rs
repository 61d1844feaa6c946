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
//! Every request reaches the wrapped service with its body in a
//! [`MeteredBody`] (the same data and errors): a long-polling
//! POST's packets are counted for the session's CONNECT bound as they stream, other bodies pass
//! untouched.
//!
//! A WebSocket upgrade is carried out here rather than by engineioxide, so that the
//! connection engineioxide gets can be cut off by the server (see
//! [`Session::disconnect`](crate::Session::disconnect)).
//! engineioxide still checks the request and writes the `101 Switching Protocols` answer.
//!
//! [`SocketServer::layer`](crate::SocketServer::layer) and
//! [`SocketServer::service`](crate::SocketServer::service) return these types.

use std::fmt::Write;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use socketioxide::adapter::{Adapter, LocalAdapter};
use socketioxide::layer::SocketIoLayer;
use socketioxide::service::SocketIoService;
use socketioxide::socket::Sid;
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

use crate::connect_limit::{MeteredBody, PollingMeter};
use crate::transport::{CutOff, Severable, Transports};

/// A tower layer serving Socket.IO at the stack's path and passing every other request to
/// the service it wraps.
pub struct IoLayer<A: Adapter = LocalAdapter> {
    inner: SocketIoLayer<A>,
    path: Arc<str>,
    transports: Transports,
}

impl<A: Adapter> IoLayer<A> {
    pub(crate) fn new(inner: SocketIoLayer<A>, path: &str, transports: Transports) -> Self {
        Self {
            inner,
            path: path.trim_end_matches('/').into(),
            transports,
        }
    }
}

impl<A: Adapter> Clone for IoLayer<A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            path: self.path.clone(),
            transports: self.transports.clone(),
        }
    }
}

impl<S: Clone, A: Adapter> Layer<S> for IoLayer<A> {
    type Service = IoService<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        IoService {
            inner: self.inner.layer(inner),
            path: self.path.clone(),
            transports: self.transports.clone(),
        }
    }
}

/// The service of [`IoLayer`]: Socket.IO at the path, the wrapped service elsewhere.
///
/// copied out of the connection's read buffer.
///
/// hyper parses a request's URI and header values as slices of the connection's read
/// buffer (8 to 16 KiB), and socketioxide keeps the handshake request's head for the whole
/// life of the socket. Left as is, every idle client would pin its connection's read
/// buffer: about 16 KiB per client, half of what an authenticated idle client costs. The
/// copy (a few hundred bytes, once per Socket.IO HTTP request) frees it; requests outside
/// the Socket.IO path are passed on untouched.
///
/// One copy is out of reach here: axum's `Router` stores the request's original URI in its
/// extensions before a route's layers run, so `Router::layer(server.layer())` still pins the
/// buffer. Mounted in front of the router instead, `server.layer().layer(router)` (as the
/// demo does), Socket.IO requests never enter axum.
///
/// Every request reaches the wrapped service with its body in a
/// `MeteredBody` (the same data and errors): a long-polling
/// POST's packets are counted for the session's CONNECT bound as they stream, other bodies pass
/// untouched.
///
/// A WebSocket upgrade is carried out here rather than by engineioxide, so that the
/// connection engineioxide gets can be cut off by the server (see
/// [`Session::disconnect`](crate::Session::disconnect)).
/// engineioxide still checks the request and writes the `101 Switching Protocols` answer.
///
/// [`SocketServer::layer`](crate::SocketServer::layer) and
/// [`SocketServer::service`](crate::SocketServer::service) return these types.
pub struct IoService<S: Clone, A: Adapter = LocalAdapter> {
    inner: SocketIoService<S, A>,
    path: Arc<str>,
    transports: Transports,
}

impl<S: Clone, A: Adapter> Clone for IoService<S, A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            path: self.path.clone(),
            transports: self.transports.clone(),
        }
    }
}

impl<S, A, B, RB> Service<Request<B>> for IoService<S, A>
where
    A: Adapter,
    S: Clone + Send + 'static,
    SocketIoService<S, A>: Service<Request<MeteredBody<B>>, Response = http::Response<RB>>,
{
    type Response = http::Response<RB>;
    type Error = <SocketIoService<S, A> as Service<Request<MeteredBody<B>>>>::Error;
    type Future = IoFuture<<SocketIoService<S, A> as Service<Request<MeteredBody<B>>>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if !is_under(req.uri().path(), &self.path) {
            let req = req.map(|body| MeteredBody::new(body, None));
            return IoFuture::new(self.inner.call(req), None);
        }
        let mut req = detach_head(req);
        let sid = session_id(req.uri());
        if sid.is_some_and(|sid| self.transports.is_refused(sid)) {
            refuse_session(&mut req);
        }
        let upgrade = is_websocket_upgrade(&req).then(|| self.take_upgrade(&mut req));
        // A long-polling POST carries the client's packets: its CONNECTs are counted.
        let meter = sid
            .filter(|_| req.method() == http::Method::POST)
            .map(|sid| {
                let transports = self.transports.clone();
                PollingMeter::new(
                    self.transports.polling_budgets().clone(),
                    self.transports.connect_limit(),
                    sid,
                    Box::new(move |sid| transports.refuse(sid)),
                )
            });
        let req = req.map(|body| MeteredBody::new(body, meter));
        IoFuture::new(self.inner.call(req), upgrade)
    }
}

impl<S: Clone + Send + 'static, A: Adapter> IoService<S, A> {
    /// Takes the connection's upgrade out of `req` (engineioxide, finding none, still answers
    /// `101` but leaves the connection alone) and returns what starts the WebSocket on it,
    /// wrapped in a cut-off, once that answer has gone out.
    fn take_upgrade<B>(&self, req: &mut Request<B>) -> StartWebSocket {
        let on_upgrade = hyper::upgrade::on(&mut *req);
        let cut = Arc::new(CutOff::default());
        let sid = session_id(req.uri());
        let mut head = Request::new(());
        *head.method_mut() = req.method().clone();
        *head.uri_mut() = req.uri().clone();
        *head.version_mut() = req.version();
        *head.headers_mut() = req.headers().clone();
        *head.extensions_mut() = req.extensions().clone();
        // A session opened on this WebSocket keeps this head: its cut-off is found there.
        head.extensions_mut().insert(cut.clone());
        // The same engine as the long-polling requests: a session upgraded from long-polling
        // is found there (each `SocketIoLayer::layer` makes an engine of its own).
        let websocket = self.inner.clone();
        let transports = self.transports.clone();
        let transports_meter = self.transports.ws_meter();
        let write_timeout = self.transports.write_timeout();
        Box::new(move || {
            tokio::spawn(async move {
                let io = match on_upgrade.await {
                    Ok(upgraded) => TokioIo::new(upgraded),
                    Err(e) => {
                        tracing::debug!(error = %e, "websocket upgrade failed");
                        return;
                    }
                };
                // A session upgraded from long-polling keeps its first request's head
                // instead: its cut-off is registered by session id.
                let registration = sid.map(|sid| {
                    transports.register_upgrade(sid, &cut);
                    (transports, sid)
                });
                let meter = transports_meter;
                let io = Severable::new(io, cut, registration)
                    .metered(meter)
                    .write_timeout(write_timeout);
                // A session opened on this WebSocket: its first PING waits one interval.
                let io = if sid.is_none() {
                    io.first_ping_after_one_interval()
                } else {
                    io
                };
                if let Err(e) = websocket.oneshot((io, head)).await {
                    tracing::debug!(error = %e, "websocket refused");
                }
            });
        })
    }
}

type StartWebSocket = Box<dyn FnOnce() + Send>;

pin_project_lite::pin_project! {
    /// The future of [`IoService`]: socketioxide's, and for a WebSocket upgrade, the start of
    /// the connection once the `101` answer is ready.
    pub struct IoFuture<F> {
        #[pin]
        inner: F,
        upgrade: Option<StartWebSocket>,
    }
}

impl<F> IoFuture<F> {
    fn new(inner: F, upgrade: Option<StartWebSocket>) -> Self {
        Self { inner, upgrade }
    }
}

impl<F, RB, E> Future for IoFuture<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx));
        if let Some(start) = this.upgrade.take() {
            let switching = matches!(&res, Ok(r) if r.status() == StatusCode::SWITCHING_PROTOCOLS);
            if switching {
                start();
            }
        }
        Poll::Ready(res)
    }
}

/// A WebSocket upgrade request (what engineioxide would upgrade itself).
fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    req.method() == http::Method::GET
        && req
            .headers()
            .get(http::header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// Makes a request of a refused session one of an unknown session: engineioxide answers it
/// `400 Session ID unknown` and leaves the session alone (see [`Session::disconnect`](crate::Session::disconnect)).
fn refuse_session<B>(req: &mut Request<B>) {
    let Some(query) = req.uri().query() else {
        return;
    };
    let query: Vec<&str> = query
        .split('&')
        .map(|pair| {
            if pair.starts_with("sid=") {
                "sid=refused"
            } else {
                pair
            }
        })
        .collect();
    let uri = format!("{}?{}", req.uri().path(), query.join("&"));
    if let Ok(uri) = uri.parse() {
        *req.uri_mut() = uri;
    }
}

/// The `sid` of the query, when the request belongs to an existing session.
fn session_id(uri: &Uri) -> Option<Sid> {
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("sid="))
        .and_then(|sid| sid.parse().ok())
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
