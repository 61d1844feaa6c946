//! Serving with hyper alone, with the connection bounds a public server needs: what the
//! examples and the demo run on, and what you can run on too.
//!
//! [`serve_until`] accepts connections on a listener and serves a tower HTTP service on each
//! (HTTP/1.1 with the WebSocket upgrade, and HTTP/2, on one port), tagging each request with
//! the peer's [`PeerAddr`] for the handshake. It bounds:
//!
//! - the time a connection may take to send its request headers ([`ServeConfig::header_read_timeout`],
//!   default 10 s): a connection that sends nothing, or half a request, is closed then;
//! - the connections served at once ([`ServeConfig::max_connections`], no cap by default),
//!   WebSockets included: an upgraded WebSocket holds its place until its socket is closed.
//!   Past the cap, a new connection is answered `503 Service Unavailable` and closed, never
//!   left hanging;
//! - the time a write may make no progress ([`ServeConfig::write_timeout`], default 30 s):
//!   a client that stops reading fills its socket buffers and then blocks the server's
//!   writes to it. socketioxide's writer cannot be stopped while it is blocked, so that
//!   client's session would never end (its disconnect is never handled, its memory never
//!   freed). Past the deadline the connection is shut down both ways: the session ends as a
//!   transport close, and the writer is released;
//! - the time a connection may have no request in flight ([`ServeConfig::idle_timeout`],
//!   default 30 s), on HTTP/1 and HTTP/2 alike: an HTTP/2 connection that has sent its
//!   preface and then nothing, or that only answers PINGs, is closed then (`GOAWAY`, and cut
//!   off if the close has not finished one more deadline later). Idle connections thus hold a
//!   place under the cap for at most twice the deadline. A held long-polling GET is a request
//!   in flight; an upgraded WebSocket has left the HTTP connection and is never cut by it;
//! - HTTP/2 liveness ([`ServeConfig::http2_keep_alive`], default 20 s): an unanswered PING
//!   closes the connection, so a dead peer is found even with a request in flight; and at
//!   most 100 concurrent streams per connection;
//! - the request head ([`ServeConfig::max_head_bytes`], default 16 KiB, as Node): a bigger
//!   one is answered `431`, on HTTP/1 and HTTP/2; hyper keeps each request's head while it
//!   runs (a WebSocket's for the socket's life), so this bounds what a client can pin;
//! - and [`bind`] listens with a backlog sized for connection storms (default 4096; tokio's
//!   own default is 128).
//!
//! ```no_run
//! use socketio_stack::SocketServer;
//! use socketio_stack::serve::{ServeConfig, bind, serve_until};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let server = SocketServer::builder().build()?;
//! let listener = bind("127.0.0.1:3000".parse()?, ServeConfig::default().backlog)?;
//! let service = server.service();
//! let ((), connections) =
//!     serve_until(listener, service, ServeConfig::default(), tokio::signal::ctrl_c().map(|_| ())).await;
//! server.shutdown().await;                               // clients first
//! connections.drain(std::time::Duration::from_secs(5)).await; // then the connections
//! # Ok(()) }
//! # use futures_util::FutureExt;
//! ```

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::{Service, ServiceBuilder};

use crate::error::BoxError;
use crate::handshake::PeerAddr;
use crate::write_stall::WriteStall;

/// The bounds of [`serve_until`].
#[derive(Debug, Clone, Copy)]
pub struct ServeConfig {
    /// How long a connection may take to send a request's headers (default 10 s).
    pub header_read_timeout: Duration,
    /// How many connections are served at once; `None` (default): no cap. A connection
    /// counts until its socket is closed: an upgraded WebSocket, which has left hyper's
    /// connection, counts for as long as it is open.
    pub max_connections: Option<usize>,
    /// The listen backlog [`bind`] asks for (default 4096).
    pub backlog: u32,
    /// How long a write to a client may make no progress before the connection is shut
    /// down (default 30 s); `None`: no deadline.
    pub write_timeout: Option<Duration>,
    /// How long a connection may have no request in flight before it is closed (default
    /// 30 s), on either protocol: a request is in flight until its response body has been sent
    /// or dropped, so a held long-polling GET counts; an upgraded WebSocket has left the HTTP
    /// connection and is never cut by it. The connection is closed gracefully (HTTP/2:
    /// `GOAWAY`); a peer that does not finish the close within one more `idle_timeout` is cut
    /// off, so an idle connection holds a place under [`max_connections`](Self::max_connections)
    /// for at most twice this. 30 s lets a client reuse its connection between emits without
    /// reconnecting, while idle connections free the cap within a minute; an HTTP/1 connection
    /// waiting for its next request is bounded sooner by `header_read_timeout`, which hyper
    /// starts as soon as it waits.
    pub idle_timeout: Duration,
    /// HTTP/2 keep-alive: a `PING` is sent after this long without a frame from the peer, and
    /// the connection is closed if it is not answered within as long (default 20 s, hyper's
    /// own PING timeout); `None`: no PINGs. It finds a dead peer even while a request is in
    /// flight, where the idle deadline does not apply.
    pub http2_keep_alive: Option<Duration>,
    /// The largest request head (request line or pseudo-headers, and headers) accepted, in
    /// bytes (default 16 KiB, as Node); a bigger one is answered `431 Request Header Fields
    /// Too Large`. hyper keeps a request's head for as long as it runs, which is the socket's
    /// life for a WebSocket, so this bounds a client's cost. HTTP/1 applies it as its read
    /// buffer's cap, which hyper does not let go below 8 KiB (a smaller value is raised to
    /// that); HTTP/2 as `SETTINGS_MAX_HEADER_LIST_SIZE`, which counts 32 bytes more per header.
    pub max_head_bytes: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: None,
            backlog: 4096,
            write_timeout: Some(Duration::from_secs(30)),
            idle_timeout: Duration::from_secs(30),
            http2_keep_alive: Some(Duration::from_secs(20)),
            max_head_bytes: 16 * 1024,
        }
    }
}

/// A listener on `addr` with the given backlog (and `SO_REUSEADDR`, so a restarted server
/// gets its port back at once).
pub fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Raises this process's open-file limit to its hard limit, so that thousands of sockets fit
/// (each connection is a file descriptor; the soft limit is often 1,024). Returns the limit in
/// force afterwards.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The connections being served, to drain at shutdown.
pub struct Connections {
    stop: watch::Sender<bool>,
    set: JoinSet<()>,
}

impl Connections {
    /// Asks every connection to finish gracefully, waits at most `timeout`, then closes what
    /// is left.
    pub async fn drain(mut self, timeout: Duration) {
        self.stop.send(true).ok();
        let drained = tokio::time::timeout(timeout, async {
            while self.set.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                open = self.set.len(),
                "connections still open after {timeout:?}: closing them"
            );
            self.set.shutdown().await;
        }
    }
}

const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 20\r\nconnection: close\r\n\r\ntoo many connections";

/// Accepts connections on `listener` and serves `service` on each, within `config`'s
/// bounds, until `until` resolves; returns its output and the open connections.
pub async fn serve_until<S, B, F>(
    listener: TcpListener,
    service: S,
    config: ServeConfig,
    until: F,
) -> (F::Output, Connections)
where
    S: Service<Request<Incoming>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    F: Future,
{
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        // The head bound (hyper panics below its minimum). It caps hyper's write queue too,
        // which only makes it flush sooner.
        .max_buf_size(config.max_head_bytes.max(MIN_HTTP1_BUF));
    http.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(config.http2_keep_alive)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(u32::try_from(config.max_head_bytes).unwrap_or(u32::MAX));
    if let Some(interval) = config.http2_keep_alive {
        http.http2().keep_alive_timeout(interval);
    }
    let (stop, stop_rx) = watch::channel(false);
    let mut set = JoinSet::new();
    let open = Arc::new(AtomicUsize::new(0));
    tokio::pin!(until);
    let outcome = loop {
        let (mut stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            // Forget connections that have ended, so the set does not grow for ever.
            Some(_) = set.join_next(), if !set.is_empty() => continue,
            outcome = &mut until => break outcome,
        };
        if config
            .max_connections
            .is_some_and(|max| open.load(Ordering::Acquire) >= max)
        {
            tracing::warn!(%remote, "connection refused: too many connections");
            set.spawn(async move {
                let answer = async {
                    stream.write_all(TOO_MANY).await?;
                    stream.shutdown().await
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
            });
            continue;
        }
        // Held by the stream itself, so that a WebSocket, which outlives hyper's connection,
        // keeps its place until its socket is closed.
        let slot = Slot::take(&open);
        // Per connection: count the requests in flight, tag each with the peer address, then
        // the shared service.
        let in_flight = Arc::new(watch::Sender::new(0));
        let mut idle = in_flight.subscribe();
        let svc = ServiceBuilder::new()
            .layer_fn(|inner| CountInFlight {
                inner,
                in_flight: in_flight.clone(),
            })
            .map_request(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(PeerAddr(remote));
                req
            })
            .service(service.clone());
        let http = http.clone();
        let mut stop = stop_rx.clone();
        let header_read_timeout = config.header_read_timeout;
        let write_timeout = config.write_timeout;
        let idle_timeout = config.idle_timeout;
        set.spawn(async move {
            // hyper's header timeout starts at the first byte: a connection that sends
            // nothing at all is bounded here.
            let mut first = [0u8; 1];
            if tokio::time::timeout(header_read_timeout, stream.peek(&mut first))
                .await
                .is_err()
            {
                tracing::debug!(%remote, "closed: nothing sent within {header_read_timeout:?}");
                return;
            }
            // `_with_upgrades`: the WebSocket transport takes the connection over after the
            // HTTP/1.1 upgrade; without it, clients stay on long-polling.
            let conn = http.serve_connection_with_upgrades(
                TokioIo::new(WriteDeadline::new(stream, write_timeout, slot)),
                TowerToHyperService::new(svc),
            );
            tokio::pin!(conn);
            let result = tokio::select! {
                res = conn.as_mut() => res,
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
                () = idle_for(&mut idle, idle_timeout) => {
                    tracing::debug!(%remote, "closing: no request in flight for {idle_timeout:?}");
                    conn.as_mut().graceful_shutdown();
                    // An HTTP/2 peer that never acknowledges the GOAWAY's PING would keep the
                    // connection open: it gets one more idle period to finish.
                    tokio::select! {
                        res = conn.as_mut() => res,
                        () = idle_for(&mut idle, idle_timeout) => {
                            tracing::debug!(%remote, "closed: the graceful close did not finish");
                            Ok(())
                        }
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    };
    drop(listener);
    (outcome, Connections { stop, set })
}

/// The HTTP/2 streams a connection may have open at once. Each is a request in flight (it
/// holds the idle deadline off and costs memory), so this bounds what one connection can
/// hold; a Socket.IO client needs two (a poll and a post). RFC 9113 advises no fewer than 100.
const MAX_CONCURRENT_STREAMS: u32 = 100;

/// The smallest HTTP/1 read buffer cap hyper accepts.
const MIN_HTTP1_BUF: usize = 8192;

/// Resolves once the connection's `in_flight` count has stayed at zero for `timeout`.
async fn idle_for(in_flight: &mut watch::Receiver<usize>, timeout: Duration) {
    loop {
        // The sender lives as long as the connection's service: an error means it is gone.
        if in_flight.wait_for(|n| *n == 0).await.is_err() {
            return;
        }
        // Any change (a request starting) restarts the wait.
        match tokio::time::timeout(timeout, in_flight.changed()).await {
            // Idle for the whole timeout, or the connection gone.
            Err(_) | Ok(Err(_)) => return,
            Ok(Ok(())) => {}
        }
    }
}

/// The per-connection service wrapper that counts the requests in flight, for the idle
/// deadline.
#[derive(Clone)]
struct CountInFlight<S> {
    inner: S,
    in_flight: Arc<watch::Sender<usize>>,
}

impl<S, R, B> Service<R> for CountInFlight<S>
where
    S: Service<R, Response = http::Response<B>>,
{
    type Response = http::Response<InFlightBody<B>>;
    type Error = S::Error;
    type Future = InFlightFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        InFlightFuture {
            guard: Some(InFlight::start(&self.in_flight)),
            inner: self.inner.call(req),
        }
    }
}

/// One request in flight, from the call until its response body is dropped (hyper drops it
/// once sent, or when the connection ends).
struct InFlight(Arc<watch::Sender<usize>>);

impl InFlight {
    fn start(in_flight: &Arc<watch::Sender<usize>>) -> Self {
        in_flight.send_modify(|n| *n += 1);
        Self(in_flight.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`CountInFlight`]: hands the request's [`InFlight`] to the body.
    struct InFlightFuture<F> {
        #[pin]
        inner: F,
        guard: Option<InFlight>,
    }
}

impl<F, B, E> Future for InFlightFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<InFlightBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx));
        let guard = this.guard.take();
        Poll::Ready(res.map(|resp| {
            resp.map(|inner| InFlightBody {
                inner,
                _guard: guard,
            })
        }))
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request in flight until it is dropped.
    struct InFlightBody<B> {
        #[pin]
        inner: B,
        _guard: Option<InFlight>,
    }
}

impl<B: hyper::body::Body> hyper::body::Body for InFlightBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's place under [`ServeConfig::max_connections`]: counted while it lives.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::AcqRel);
        Self(open.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A client connection whose writes fail once one has made no progress for the deadline;
/// the socket is then shut down both ways, so that a read waiting on it ends too. It holds
/// the connection's [`Slot`]: hyper hands it to an upgraded WebSocket, which keeps it until
/// the socket is closed.
struct WriteDeadline {
    stream: TcpStream,
    stall: WriteStall,
    dead: bool,
    _slot: Slot,
}

impl WriteDeadline {
    fn new(stream: TcpStream, timeout: Option<Duration>, slot: Slot) -> Self {
        Self {
            stream,
            stall: WriteStall::new(timeout),
            dead: false,
            _slot: slot,
        }
    }

    fn stalled() -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "the client has taken no data for the write timeout",
        )
    }

    /// Runs a write; a write that stays pending past the deadline kills the connection.
    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if self.dead {
            return Poll::Ready(Err(Self::stalled()));
        }
        let stream = &mut self.stream;
        match ready!(self.stall.guard(cx, |cx| write(Pin::new(stream), cx))) {
            Ok(res) => Poll::Ready(res),
            Err(timeout) => {
                self.dead = true;
                tracing::debug!(
                    peer = ?self.stream.peer_addr().ok(),
                    "connection closed: a write made no progress for {timeout:?}"
                );
                // Both ways, so that the peer and hyper learn at once; the stream still
                // closes the descriptor once, when dropped.
                let _ = socket2::SockRef::from(&self.stream).shutdown(std::net::Shutdown::Both);
                Poll::Ready(Err(Self::stalled()))
            }
        }
    }
}

impl AsyncRead for WriteDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.dead {
            return Poll::Ready(Ok(())); // end of stream
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.guard(cx, |s, cx| s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.guard(cx, |s, cx| s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.guard(cx, |s, cx| s.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.dead {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
