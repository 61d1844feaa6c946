//! The bound on the namespace CONNECT packets one Engine.IO session may send.
//!
//! socketioxide answers every CONNECT itself, before any layer sees it: to a namespace that
//! does not exist with a CONNECT_ERROR, and, when the client's write buffer is full, with an
//! ERROR log line. A client that stopped reading and sends CONNECTs in a loop made the server
//! write over 100,000 log lines a second, and each CONNECT to `/` makes a socket that goes
//! through the whole stack. An official client sends one CONNECT per namespace it uses (again
//! after a reconnection), so a session gets a burst of [`ConnectLimit::burst`] CONNECTs and
//! then one per [`ConnectLimit::refill`]; past that its transport is ended (a WebSocket is cut
//! before the excess packet is read, a long-polling session is refused) and one line is
//! logged.
//!
//! The packets are found before socketioxide parses anything: in the WebSocket frames as they
//! are read (only each text frame's first two payload bytes are unmasked) and in the
//! long-polling POST bodies as they stream. A Socket.IO CONNECT is an Engine.IO message
//! (`4`) whose Socket.IO packet type is CONNECT (`0`): it starts with `40`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use socketioxide::socket::Sid;

/// How many namespace CONNECTs an Engine.IO session may send.
///
/// socketioxide answers every CONNECT itself, before any layer sees it: to a namespace that
/// does not exist with a CONNECT_ERROR, and, when the client's write buffer is full, with an
/// ERROR log line. A client that stopped reading and sends CONNECTs in a loop made the server
/// write over 100,000 log lines a second, and each CONNECT to `/` makes a socket that goes
/// through the whole stack. An official client sends one CONNECT per namespace it uses (again
/// after a reconnection), so a session gets a burst of [`ConnectLimit::burst`] CONNECTs and
/// then one per [`ConnectLimit::refill`]; past that its transport is ended (a WebSocket is cut
/// before the excess packet is read, a long-polling session is refused) and one line is
/// logged.
///
/// The packets are found before socketioxide parses anything: in the WebSocket frames as they
/// are read (only each text frame's first two payload bytes are unmasked) and in the
/// long-polling POST bodies as they stream. A Socket.IO CONNECT is an Engine.IO message
/// (`4`) whose Socket.IO packet type is CONNECT (`0`): it starts with `40`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectLimit {
    /// CONNECTs allowed at once (default 16).
    pub burst: u32,
    /// One more CONNECT is allowed after each such interval (default 2 s).
    pub refill: Duration,
}

impl Default for ConnectLimit {
    fn default() -> Self {
        Self {
            burst: 16,
            refill: Duration::from_secs(2),
        }
    }
}

/// A session's CONNECT tokens.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: ConnectLimit,
    tokens: f64,
    last: Instant,
}

impl Budget {
    pub(crate) fn new(limit: ConnectLimit) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst),
            last: Instant::now(),
        }
    }

    /// Takes one CONNECT; `false` once the session is past its bound.
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = self.limit.refill.as_secs_f64().max(f64::MIN_POSITIVE);
        let earned = now.duration_since(self.last).as_secs_f64() / refill;
        self.tokens = (self.tokens + earned).min(f64::from(self.limit.burst));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn log_excess(sid: Option<Sid>, transport: &str) {
    tracing::warn!(
        ?sid,
        transport,
        "too many namespace CONNECTs: transport closed"
    );
}

/// Finds the CONNECTs in what a client writes on a WebSocket: a parser of the frame headers
/// (client frames are masked) that looks at the first two payload bytes of each text frame.
#[derive(Debug)]
pub(crate) struct WsConnectMeter {
    budget: Budget,
    /// The header of the frame being read, while incomplete.
    header: [u8; 14],
    header_len: usize,
    /// The frame being read: its header's length, its mask, where we are in its payload, how
    /// long it is.
    frame_header: usize,
    mask: [u8; 4],
    at: u64,
    len: u64,
    text: bool,
    prefix: [u8; 2],
}

impl WsConnectMeter {
    pub(crate) fn new(limit: ConnectLimit) -> Self {
        Self {
            budget: Budget::new(limit),
            header: [0; 14],
            header_len: 0,
            frame_header: 0,
            mask: [0; 4],
            at: 0,
            len: 0,
            text: false,
            prefix: [0; 2],
        }
    }

    /// Reads `data`, the next bytes from the client. Returns where the first frame over the
    /// bound starts, if there is one: what comes from there on must not be read.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < data.len() {
            if self.at < self.len {
                // In a payload: look at its first two bytes if it is a text frame, skip the rest.
                if self.text && self.at < 2 {
                    let k = self.at as usize;
                    self.prefix[k] = data[i] ^ self.mask[k % 4];
                    self.at += 1;
                    i += 1;
                    if self.at == 2 && self.prefix == *b"40" && !self.budget.take() {
                        log_excess(None, "websocket");
                        return Some(self.frame_start(i));
                    }
                    continue;
                }
                let skip = (self.len - self.at).min((data.len() - i) as u64);
                self.at += skip;
                i += skip as usize;
                continue;
            }
            self.header[self.header_len] = data[i];
            self.header_len += 1;
            i += 1;
            if let Some((len, masked)) = self.header_complete() {
                let h = &self.header;
                // Text frames only: continuations and binary attachments start no packet.
                self.text = h[0] & 0x0f == 1;
                self.mask = if masked {
                    let at = self.header_len - 4;
                    [h[at], h[at + 1], h[at + 2], h[at + 3]]
                } else {
                    [0; 4]
                };
                self.frame_header = self.header_len;
                self.len = len;
                self.at = 0;
                self.header_len = 0;
            }
        }
        None
    }

    /// Where the frame whose payload byte we just read (the `i`th of this read) started: its
    /// header and the payload bytes before. It may have started in an earlier read: then at 0.
    fn frame_start(&self, i: usize) -> usize {
        i.saturating_sub(self.frame_header + self.at as usize)
    }

    /// The payload length, and whether the frame is masked (a client's must be; the WebSocket
    /// parser refuses one that is not), once the header is complete.
    fn header_complete(&self) -> Option<(u64, bool)> {
        let h = &self.header[..self.header_len];
        if h.len() < 2 {
            return None;
        }
        let (ext, len7) = match h[1] & 0x7f {
            126 => (2, None),
            127 => (8, None),
            n => (0, Some(u64::from(n))),
        };
        let masked = h[1] & 0x80 != 0;
        let mask = if masked { 4 } else { 0 };
        if h.len() < 2 + ext + mask {
            return None;
        }
        let len = len7.unwrap_or_else(|| {
            h[2..2 + ext]
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        });
        Some((len, masked))
    }
}

/// The CONNECT budgets of the long-polling sessions, by session id.
#[derive(Default)]
pub(crate) struct PollingBudgets {
    budgets: Mutex<HashMap<Sid, (Budget, Instant)>>,
}

/// Past this many sessions, budgets not used for [`FORGET_AFTER`] are swept.
const SWEEP_AT: usize = 4096;
const FORGET_AFTER: Duration = Duration::from_secs(120);

impl PollingBudgets {
    fn take(&self, sid: Sid, limit: ConnectLimit) -> bool {
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if budgets.len() >= SWEEP_AT && !budgets.contains_key(&sid) {
            budgets.retain(|_, (_, seen)| now.duration_since(*seen) < FORGET_AFTER);
        }
        let (budget, seen) = budgets
            .entry(sid)
            .or_insert_with(|| (Budget::new(limit), now));
        *seen = now;
        budget.take()
    }

    pub(crate) fn forget(&self, sid: Sid) {
        self.budgets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&sid);
    }
}

/// What a long-polling POST body is metered with.
pub(crate) struct PollingMeter {
    budgets: Arc<PollingBudgets>,
    limit: ConnectLimit,
    sid: Sid,
    /// Bytes of the current packet seen so far (up to 2), and its first two.
    seen: usize,
    prefix: [u8; 2],
    /// Called once the session is past its bound.
    refuse: Box<dyn FnOnce(Sid) + Send>,
    over: bool,
}

impl PollingMeter {
    pub(crate) fn new(
        budgets: Arc<PollingBudgets>,
        limit: ConnectLimit,
        sid: Sid,
        refuse: Box<dyn FnOnce(Sid) + Send>,
    ) -> Self {
        Self {
            budgets,
            limit,
            sid,
            seen: 0,
            prefix: [0; 2],
            refuse,
            over: false,
        }
    }

    /// Reads a chunk of the body; `false` once the session is past its bound.
    fn feed(&mut self, chunk: &[u8]) -> bool {
        for &b in chunk {
            // Engine.IO v4 packets of one payload are separated by 0x1e.
            if b == 0x1e {
                self.seen = 0;
                continue;
            }
            if self.seen < 2 {
                self.prefix[self.seen] = b;
                self.seen += 1;
                if self.seen == 2
                    && self.prefix == *b"40"
                    && !self.budgets.take(self.sid, self.limit)
                {
                    return false;
                }
            }
        }
        true
    }
}

pin_project_lite::pin_project! {
    /// A request body, metered when it is a long-polling POST: past the session's bound it
    /// ends early (what it carried from the excess chunk on is not read) and the session is
    /// refused.
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        meter: Option<Box<PollingMeter>>,
    }
}

impl<B> MeteredBody<B> {
    pub(crate) fn new(inner: B, meter: Option<PollingMeter>) -> Self {
        Self {
            inner,
            meter: meter.map(Box::new),
        }
    }
}

impl<B: Body> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if this.meter.as_ref().is_some_and(|m| m.over) {
            return Poll::Ready(None);
        }
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        // hyper's bodies come in contiguous chunks: `chunk` is the whole of each.
        if let (Some(meter), Some(Ok(frame))) = (this.meter.as_mut(), &frame)
            && let Some(data) = frame.data_ref()
            && !meter.feed(data.chunk())
        {
            meter.over = true;
            log_excess(Some(meter.sid), "polling");
            let refuse = std::mem::replace(&mut meter.refuse, Box::new(|_| {}));
            refuse(meter.sid);
            return Poll::Ready(None);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.meter.as_ref().is_some_and(|m| m.over) || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for MeteredBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredBody")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client text frame.
    fn frame(payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut out = vec![0x81];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn limit(burst: u32) -> ConnectLimit {
        ConnectLimit {
            burst,
            refill: Duration::from_secs(3600),
        }
    }

    #[test]
    fn the_websocket_meter_counts_connects_and_stops_at_the_excess_frame() {
        let mut meter = WsConnectMeter::new(limit(2));
        let event = frame(br#"42["chat","40"]"#);
        let big = frame(&[b'4'; 70_000]);
        let connect = frame(b"40/nope,");
        let mut stream = Vec::new();
        stream.extend_from_slice(&event);
        stream.extend_from_slice(&connect);
        stream.extend_from_slice(&big);
        stream.extend_from_slice(&connect);
        let excess_at = stream.len();
        stream.extend_from_slice(&connect);
        stream.extend_from_slice(&event);
        // Fed in pieces of every size, the excess frame is found at its start.
        for piece in [1, 3, 7, 1024, stream.len()] {
            let mut meter = WsConnectMeter::new(limit(2));
            let mut offset = 0;
            let mut found = None;
            for chunk in stream.chunks(piece) {
                if let Some(at) = meter.feed(chunk) {
                    found = Some((offset, offset + at));
                    break;
                }
                offset += chunk.len();
            }
            let (read_start, found) = found.expect("the third CONNECT is over the bound");
            // At the excess frame's start, or at the start of the read when the frame began
            // in an earlier one (that read has gone to the parser already).
            assert_eq!(found, excess_at.max(read_start), "piece {piece}");
        }
        assert_eq!(meter.feed(&event), None);
    }

    #[test]
    fn the_polling_meter_counts_connects_across_chunks_and_packets() {
        let budgets = Arc::new(PollingBudgets::default());
        let sid = Sid::new();
        let mut meter = PollingMeter::new(budgets.clone(), limit(3), sid, Box::new(|_| {}));
        assert!(meter.feed(b"40\x1e42[\"a\",\"40\"]\x1e4"));
        assert!(meter.feed(b"0/x,\x1e"), "a packet split across chunks");
        assert!(meter.feed(b"40/y,"));
        assert!(!meter.feed(b"\x1e40/z,"), "the fourth");
        // The budget is the session's, across its requests.
        let mut next = PollingMeter::new(budgets.clone(), limit(3), sid, Box::new(|_| {}));
        assert!(!next.feed(b"40"));
        budgets.forget(sid);
        let mut fresh = PollingMeter::new(budgets, limit(3), sid, Box::new(|_| {}));
        assert!(fresh.feed(b"40"));
    }

    #[test]
    fn the_budget_refills() {
        let mut budget = Budget::new(ConnectLimit {
            burst: 1,
            refill: Duration::from_millis(1),
        });
        assert!(budget.take());
        std::thread::sleep(Duration::from_millis(5));
        assert!(budget.take());
    }
}
