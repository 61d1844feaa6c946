//! Ending a client's connection when socketioxide will not: the transport cut-off.
//!
//! socketioxide's `Socket::disconnect` queues a DISCONNECT packet, and when the client's
//! outgoing buffer is full it refuses (`InternalChannelFull`) and closes nothing. A client
//! that stops reading can fill its buffer on purpose, so a policy's decision to disconnect
//! (the auth deadline, a refused token, the rate limit) would last only as long as the client
//! agreed. [`Session::disconnect`](crate::Session::disconnect) therefore falls back on closing
//! the Engine.IO transport itself:
//!
//! - **WebSocket**: [`IoService`](crate::io_service::IoService) performs the upgrade and hands
//!   engineioxide the connection wrapped in a [`Severable`] stream. Cutting it ends its reads
//!   and fails its writes (waking a writer blocked on a client that reads nothing), and
//!   engineioxide closes the session as a transport close.
//! - **long-polling**: there is no connection to cut (each request is its own, and a client
//!   that reads nothing sends none), and engineioxide offers no way to close a session from
//!   outside. The session is marked *refused* instead: every later request of it (a poll
//!   that would drain the buffer, a post that would answer the heartbeat) is answered by
//!   engineioxide as one of an unknown session, without touching it. Its buffer stays full,
//!   so engineioxide's next heartbeat cannot queue its ping and closes the session: within
//!   one Engine.IO ping interval (25 s by default) whatever the client does.
//!
//! Either way socketioxide then calls the socket's disconnect handler, so the socket is
//! untracked when it is gone, not before.
//!
//! A WebSocket write that makes no progress for the server's write timeout cuts the
//! connection off the same way: engineioxide reports a session closed only once its writer
//! returns, even a session its own heartbeat closed, so a client that stops reading would
//! otherwise stay connected and tracked for as long as it likes.

use std::collections::{HashMap, HashSet};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;

use crate::connect_limit::{ConnectLimit, PollingBudgets, WsConnectMeter};
use crate::first_ping::{FirstPing, ReadStep, WriteStep};
use socketioxide::adapter::Adapter;
use socketioxide::socket::{Sid, Socket};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::write_stall::WriteStall;

/// The transports this server can cut off: the WebSocket connections upgraded from
/// long-polling (by session id), and the long-polling sessions refused. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Transports(Arc<Inner>);

struct Inner {
    /// A session that starts on long-polling keeps its first request's head, so the cut-off of
    /// the WebSocket it upgrades to is found here rather than in that head.
    upgraded: Mutex<HashMap<Sid, Weak<CutOff>>>,
    /// Long-polling sessions whose requests are no longer served.
    refused: Mutex<HashSet<Sid>>,
    /// How many are refused: requests skip the lock while there are none.
    refused_count: AtomicUsize,
    connect_limit: ConnectLimit,
    polling_budgets: Arc<PollingBudgets>,
    write_timeout: Option<Duration>,
}

impl Default for Transports {
    fn default() -> Self {
        Self::new(
            ConnectLimit::default(),
            Some(crate::write_stall::DEFAULT_WRITE_TIMEOUT),
        )
    }
}

impl Transports {
    pub(crate) fn new(connect_limit: ConnectLimit, write_timeout: Option<Duration>) -> Self {
        Self(Arc::new(Inner {
            upgraded: Mutex::default(),
            refused: Mutex::default(),
            refused_count: AtomicUsize::new(0),
            connect_limit,
            polling_budgets: Arc::default(),
            write_timeout,
        }))
    }

    /// How long a write to a WebSocket client may make no progress before it is cut off.
    pub(crate) fn write_timeout(&self) -> Option<Duration> {
        self.0.write_timeout
    }

    /// The bound on a session's namespace CONNECTs.
    pub(crate) fn connect_limit(&self) -> ConnectLimit {
        self.0.connect_limit
    }

    /// The CONNECT budgets of long-polling sessions.
    pub(crate) fn polling_budgets(&self) -> &Arc<PollingBudgets> {
        &self.0.polling_budgets
    }

    /// A CONNECT meter for a new WebSocket connection.
    pub(crate) fn ws_meter(&self) -> WsConnectMeter {
        WsConnectMeter::new(self.0.connect_limit)
    }

    /// Refuses every further request of long-polling session `sid` (see the module docs).
    pub(crate) fn refuse(&self, sid: Sid) {
        if self.refused().insert(sid) {
            self.0.refused_count.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn refused(&self) -> std::sync::MutexGuard<'_, HashSet<Sid>> {
        self.0.refused.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the requests of session `sid` are refused.
    pub(crate) fn is_refused(&self, sid: Sid) -> bool {
        self.0.refused_count.load(Ordering::Acquire) > 0 && self.refused().contains(&sid)
    }

    /// Forgets what was kept of session `sid`, once its socket has gone.
    pub(crate) fn forget(&self, sid: Sid) {
        self.0.polling_budgets.forget(sid);
        if self.0.refused_count.load(Ordering::Acquire) > 0 && self.refused().remove(&sid) {
            self.0.refused_count.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn upgraded(&self) -> std::sync::MutexGuard<'_, HashMap<Sid, Weak<CutOff>>> {
        self.0.upgraded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers the cut-off of session `sid`'s WebSocket, for as long as `cut` lives.
    pub(crate) fn register_upgrade(&self, sid: Sid, cut: &Arc<CutOff>) {
        self.upgraded().insert(sid, Arc::downgrade(cut));
    }

    fn unregister_upgrade(&self, sid: Sid, cut: &CutOff) {
        let mut upgraded = self.upgraded();
        let ours = upgraded
            .get(&sid)
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), cut));
        if ours {
            upgraded.remove(&sid);
        }
    }

    /// Ends `socket`'s transport, whatever its buffers hold: a WebSocket is cut off at once, a
    /// long-polling session refused until engineioxide closes it (see the module docs).
    pub(crate) fn cut<A: Adapter>(&self, socket: &Socket<A>) {
        let upgraded = self.upgraded().get(&socket.id).and_then(Weak::upgrade);
        let direct = || socket.req_parts().extensions.get::<Arc<CutOff>>().cloned();
        match upgraded.or_else(direct) {
            Some(cut) => cut.cut(),
            None => self.refuse(socket.id),
        }
    }
}

/// The switch of one WebSocket connection: once cut, its [`Severable`] stream reads end and
/// writes fail.
#[derive(Default)]
pub(crate) struct CutOff {
    cut: AtomicBool,
    read: AtomicWaker,
    write: AtomicWaker,
}

impl CutOff {
    /// Cuts the connection off and wakes whoever waits on it.
    pub(crate) fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        self.read.wake();
        self.write.wake();
    }

    fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }
}

/// A connection that its [`CutOff`] can end from outside, even while a read or a write is
/// pending on it.
pub(crate) struct Severable<T> {
    io: T,
    cut: Arc<CutOff>,
    /// What the client writes is metered for its namespace CONNECTs.
    meter: Option<WsConnectMeter>,
    /// Where this connection is registered (an upgrade from long-polling), to forget it at the
    /// end.
    registration: Option<(Transports, Sid)>,
    /// The engine's first PING, hidden until it has been dealt with (see
    /// [`first_ping`](crate::first_ping)). Boxed: it lives for the first few frames only,
    /// and the connection for as long as the client stays.
    first_ping: Option<Box<FirstPing>>,
    /// The deadline of a write that makes no progress.
    stall: WriteStall,
}

impl<T> Severable<T> {
    pub(crate) fn new(io: T, cut: Arc<CutOff>, registration: Option<(Transports, Sid)>) -> Self {
        Self {
            io,
            cut,
            meter: None,
            registration,
            first_ping: None,
            stall: WriteStall::new(None),
        }
    }

    /// Cuts the connection off when a write makes no progress for `timeout`: a client that
    /// stops reading blocks the engine's writer, and the engine waits for that writer before
    /// it reports the session closed (even one its own heartbeat closed), so without this the
    /// socket would stay, tracked, for as long as the client likes wherever the stack is
    /// mounted (`serve`'s write timeout does the same for the connections it serves).
    pub(crate) fn write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.stall = WriteStall::new(timeout);
        self
    }

    /// Hides the engine's first PING of a session opened on this connection, so that it comes
    /// one ping interval after the open packet, as the protocol has it.
    pub(crate) fn first_ping_after_one_interval(mut self) -> Self {
        self.first_ping = Some(Box::new(FirstPing::new()));
        self
    }

    /// Forgets the first-PING state once it has nothing left to do.
    fn settle_first_ping(&mut self) {
        if self.first_ping.as_deref().is_some_and(FirstPing::is_done) {
            self.first_ping = None;
        }
    }

    /// Meters what the client writes; the connection is cut before a CONNECT over the bound.
    pub(crate) fn metered(mut self, meter: WsConnectMeter) -> Self {
        self.meter = Some(meter);
        self
    }
}

impl<T> Drop for Severable<T> {
    fn drop(&mut self) {
        if let Some((transports, sid)) = &self.registration {
            transports.unregister_upgrade(*sid, &self.cut);
        }
    }
}

fn cut_error() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "transport cut off by the server")
}

impl<T: AsyncRead + Unpin> AsyncRead for Severable<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Registered before the check, so a cut that comes between the two still wakes us.
        self.cut.read.register(cx.waker());
        if self.cut.is_cut() {
            return Poll::Ready(Ok(())); // end of stream
        }
        let before = buf.filled().len();
        let this = &mut *self;
        let res = match this.first_ping.as_deref().map(FirstPing::before_read) {
            Some(ReadStep::Answer(pong)) => {
                let n = pong.len().min(buf.remaining());
                buf.put_slice(&pong[..n]);
                if let Some(fp) = this.first_ping.as_mut() {
                    fp.answered(n);
                }
                this.settle_first_ping();
                // The engine's own bytes: neither metered nor followed.
                return Poll::Ready(Ok(()));
            }
            Some(ReadStep::ReadAtMost(limit)) => {
                let mut part = ReadBuf::new(buf.initialize_unfilled_to(limit.min(buf.remaining())));
                let res = Pin::new(&mut this.io).poll_read(cx, &mut part);
                let n = part.filled().len();
                buf.advance(n);
                res
            }
            Some(ReadStep::Read) | None => Pin::new(&mut this.io).poll_read(cx, buf),
        };
        if let (Poll::Ready(Ok(())), Some(fp)) = (&res, self.first_ping.as_mut()) {
            fp.after_read(&buf.filled()[before..]);
            self.settle_first_ping();
        }
        if let (Poll::Ready(Ok(())), Some(meter)) = (&res, self.meter.as_mut())
            && let Some(excess) = meter.feed(&buf.filled()[before..])
        {
            // What comes from the excess frame on is never read: the connection ends there.
            buf.set_filled(before + excess);
            self.cut.cut();
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> Severable<T> {
    fn guard<R>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut T>, &mut Context<'_>) -> Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        self.cut.write.register(cx.waker());
        if self.cut.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        let io = &mut self.io;
        match std::task::ready!(self.stall.guard(cx, |cx| op(Pin::new(io), cx))) {
            Ok(res) => Poll::Ready(res),
            Err(timeout) => {
                tracing::debug!("websocket cut off: a write made no progress for {timeout:?}");
                self.cut.cut();
                Poll::Ready(Err(cut_error()))
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Severable<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let Some(fp) = this.first_ping.as_mut() else {
            return this.guard(cx, |io, cx| io.poll_write(cx, buf));
        };
        let n = match fp.before_write(buf) {
            WriteStep::Drop(n) => {
                // The reader hands the engine the PONG: wake it if it waits on the client.
                this.cut.read.wake();
                return Poll::Ready(Ok(n));
            }
            WriteStep::Write(n) => n,
        };
        let res = this.guard(cx, |io, cx| io.poll_write(cx, &buf[..n]));
        if let (Poll::Ready(Ok(written)), Some(fp)) = (&res, this.first_ping.as_mut()) {
            fp.after_write(&buf[..*written]);
            this.settle_first_ping();
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.first_ping.is_some() {
            // Frame by frame while the first PING is looked for.
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &**b);
            return self.poll_write(cx, first);
        }
        self.guard(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.guard(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.cut.is_cut() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_cut_ends_a_pending_read_and_fails_a_blocked_write() {
        // A peer that neither writes nor reads: our read waits, our writes fill the pipe.
        let (ours, _peer) = tokio::io::duplex(64);
        let cut = Arc::new(CutOff::default());
        let (mut rd, mut wr) = tokio::io::split(Severable::new(ours, cut.clone(), None));
        let reader = tokio::spawn(async move { rd.read(&mut [0u8; 16]).await });
        let writer = tokio::spawn(async move {
            loop {
                if let Err(e) = wr.write_all(&[0u8; 32]).await {
                    return e;
                }
            }
        });
        tokio::task::yield_now().await;
        cut.cut();
        assert_eq!(
            reader.await.unwrap().unwrap(),
            0,
            "the read ends as end of stream"
        );
        assert_eq!(writer.await.unwrap().kind(), io::ErrorKind::BrokenPipe);
    }

    #[tokio::test]
    async fn an_upgrade_is_forgotten_when_its_connection_ends() {
        let transports = Transports::default();
        let sid = Sid::new();
        let cut = Arc::new(CutOff::default());
        transports.register_upgrade(sid, &cut);
        let (ours, _peer) = tokio::io::duplex(64);
        let conn = Severable::new(ours, cut.clone(), Some((transports.clone(), sid)));
        assert!(transports.upgraded().contains_key(&sid));
        drop(conn);
        assert!(!transports.upgraded().contains_key(&sid));
    }
}
