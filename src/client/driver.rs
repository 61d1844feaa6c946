//! The connection loop: connect (WebSocket, Engine.IO open, Socket.IO connect), serve the
//! connection (heartbeat, events, acks, outgoing packets), and reconnect with backoff. It
//! follows what the client is asked to be ([`Desire`]), opens its WebSockets through a
//! [`Dial`], and tells the client what happens through [`Events`]; it knows nothing else
//! of the client.

use std::time::Duration;

use futures_util::{FutureExt, Sink, SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::args::Args;
use crate::client::attachments::Assembly;
use crate::client::dial::Dial;
use crate::client::error::ClientError;
use crate::client::options::ClientOptions;
use crate::client::protocol::{self, Frame, Open, Outgoing, Packet};
use crate::client::state::ConnectionIds;
use crate::client::transport::Transport;

/// What the client is asked to be: the connection loop follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Desire {
    Connected,
    Disconnected,
    Shutdown,
}

/// Moves `desire` from `from` to `to` if it still is `from` (a `connect()` or `shutdown()`
/// made meanwhile wins).
pub(crate) fn settle(desire: &watch::Sender<Desire>, from: Desire, to: Desire) {
    desire.send_if_modified(|d| {
        let change = *d == from;
        if change {
            *d = to;
        }
        change
    });
}

/// What the connection loop reports, in the order it happens.
pub(crate) trait Events: Send + Sync + 'static {
    /// The connection is up: packets for the server go to `writer`.
    fn connected(&self, writer: mpsc::UnboundedSender<Outgoing>, ids: ConnectionIds);
    /// An event from the server, with its ack id when the server wants an answer.
    fn event(&self, name: String, args: Args, ack: Option<u64>);
    /// The server's answer to the emit of ack id `id`.
    fn ack(&self, id: u64, args: Args);
    /// The connection is gone: nothing more goes out on it (its WebSocket is being closed).
    fn closed(&self);
    /// The connection ended for `reason`; whether another follows is decided already.
    fn disconnected(&self, reason: Reason);
    /// A connection attempt failed; whether another follows is decided already.
    fn failed(&self, error: ClientError);
}

/// Why a connection ended, as socket.io-client names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    ServerDisconnect,
    ClientDisconnect,
    TransportClose,
    TransportError,
    PingTimeout,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::ServerDisconnect => "io server disconnect",
            Self::ClientDisconnect => "io client disconnect",
            Self::TransportClose => "transport close",
            Self::TransportError => "transport error",
            Self::PingTimeout => "ping timeout",
        }
    }

    /// socket.io-client reconnects after a lost connection, not after a deliberate disconnect.
    fn reconnects(self) -> bool {
        matches!(
            self,
            Self::TransportClose | Self::TransportError | Self::PingTimeout
        )
    }
}

/// The backoff's jitter: numbers in [0, 1) (xorshift; no need for a real RNG here).
struct Jitter(u64);

impl Jitter {
    fn from_clock() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15)
            | 1;
        Self(seed)
    }

    fn next(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Connection<T> {
    transport: T,
    open: Open,
    sid: Option<String>,
}

/// A client's connection loop; [`run`](Self::run) it on a task of its own.
pub(crate) struct Driver<D, E> {
    identifier: String,
    options: ClientOptions,
    dial: D,
    events: E,
    desire: watch::Sender<Desire>,
}

impl<D: Dial, E: Events> Driver<D, E> {
    /// The loop of the client named `identifier` (in logs), following `desire`.
    pub(crate) fn new(
        identifier: String,
        options: ClientOptions,
        dial: D,
        events: E,
        desire: watch::Sender<Desire>,
    ) -> Self {
        Self {
            identifier,
            options,
            dial,
            events,
            desire,
        }
    }

    /// Connects, serves and reconnects as asked until the desire is [`Desire::Shutdown`].
    pub(crate) async fn run(self) {
        let mut desire = self.desire.subscribe();
        let mut jitter = Jitter::from_clock();
        // Reconnection attempts since the last good connection: the backoff's exponent.
        let mut attempt: u32 = 0;
        // Failed connection attempts in a row: checked against `reconnection_attempts`.
        let mut failures: u32 = 0;
        loop {
            let wanted = *desire.borrow_and_update();
            match wanted {
                Desire::Shutdown => return,
                Desire::Disconnected => {
                    (attempt, failures) = (0, 0);
                    if desire.changed().await.is_err() {
                        return;
                    }
                    continue;
                }
                Desire::Connected => {}
            }
            let timeout = self.options.timeout;
            let outcome = tokio::select! {
                res = tokio::time::timeout(timeout, self.connect()) => res.unwrap_or(Err(ClientError::Timeout(timeout))),
                // A disconnect or shutdown while connecting.
                _ = desire.changed() => continue,
            };
            match outcome {
                Ok(conn) => {
                    (attempt, failures) = (0, 0);
                    let reason = self.serve(conn, &mut desire).await;
                    let reconnect = reason.reconnects() && self.options.reconnection;
                    if !reconnect {
                        // Before the report, so that a `connect()` made on it is not undone.
                        settle(&self.desire, Desire::Connected, Desire::Disconnected);
                    }
                    self.events.disconnected(reason);
                    if !reconnect {
                        continue;
                    }
                }
                Err(e) => {
                    tracing::warn!(client = %self.identifier, error = %e, "connection failed");
                    failures += 1;
                    let exhausted = self
                        .options
                        .reconnection_attempts
                        .is_some_and(|max| failures > max);
                    // A refusal by the server is final, as in socket.io-client: the same
                    // credentials would be refused again.
                    let give_up = !self.options.reconnection
                        || exhausted
                        || matches!(e, ClientError::Refused(_));
                    if give_up {
                        settle(&self.desire, Desire::Connected, Desire::Disconnected);
                    }
                    self.events.failed(e);
                    if give_up {
                        continue;
                    }
                }
            }
            let delay = self.options.backoff(attempt, jitter.next());
            attempt = attempt.saturating_add(1);
            tracing::debug!(client = %self.identifier, ?delay, "reconnecting");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = desire.changed() => {}
            }
        }
    }

    /// Opens the transport, reads the Engine.IO open packet, connects to the default
    /// namespace.
    async fn connect(&self) -> Result<Connection<D::Transport>, ClientError> {
        let mut transport = self.dial.dial().await?;
        match self.handshake(&mut transport).await {
            Ok((open, sid)) => Ok(Connection {
                transport,
                open,
                sid,
            }),
            Err(e) => {
                let _ = tokio::time::timeout(Duration::from_secs(1), transport.close()).await;
                Err(e)
            }
        }
    }

    /// The Engine.IO open packet, then the Socket.IO connect; the open packet and the socket
    /// id.
    async fn handshake(
        &self,
        ws: &mut D::Transport,
    ) -> Result<(Open, Option<String>), ClientError> {
        let open = loop {
            match next_packet(ws).await? {
                Packet::Open(open) => break open,
                Packet::Noop => continue,
                other => {
                    return Err(ClientError::Transport(format!(
                        "expected the Engine.IO open packet, got {other:?}"
                    )));
                }
            }
        };
        send(ws, protocol::connect(self.options.auth.as_ref())).await?;
        let sid = loop {
            match next_packet(ws).await? {
                Packet::Connect { sid } => break sid,
                Packet::ConnectError(message) => return Err(ClientError::Refused(message)),
                Packet::Ping => send(ws, protocol::PONG.to_owned()).await?,
                Packet::Close => {
                    return Err(ClientError::Transport("closed during the handshake".into()));
                }
                other => {
                    tracing::debug!(client = %self.identifier, "ignored during the handshake: {other:?}")
                }
            }
        };
        Ok((open, sid))
    }

    /// Serves one connection until it ends; returns why.
    async fn serve(
        &self,
        conn: Connection<D::Transport>,
        desire: &mut watch::Receiver<Desire>,
    ) -> Reason {
        let Connection {
            transport,
            open,
            sid,
        } = conn;
        let ids = ConnectionIds {
            engine_id: open.sid.clone(),
            socket_id: sid,
            transport: transport.kind(),
        };
        let (mut sink, mut stream) = transport.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
        tracing::info!(client = %self.identifier, "connected");
        self.events.connected(tx, ids);

        // The server pings every `ping_interval`; silence past `ping_timeout` more means the
        // connection is dead even if TCP has not noticed.
        let heartbeat = Duration::from_millis(open.ping_interval.saturating_add(open.ping_timeout));
        let deadline = tokio::time::sleep(heartbeat);
        tokio::pin!(deadline);
        // A server that stops reading must not stall this loop (and with it the heartbeat
        // check and disconnect requests): every write has a deadline.
        let write_timeout = self.options.timeout;
        macro_rules! write {
            ($outgoing:expr) => {
                matches!(
                    tokio::time::timeout(write_timeout, write_packet(&mut sink, $outgoing)).await,
                    Ok(Ok(()))
                )
            };
        }
        let mut assembly = Assembly::default();
        let reason = loop {
            tokio::select! {
                frame = stream.next() => {
                    let packet = match frame {
                        Some(Ok(frame)) => assembly.frame(frame),
                        None => break Reason::TransportClose,
                        Some(Err(e)) => {
                            tracing::debug!(client = %self.identifier, error = %e, "transport error");
                            break Reason::TransportError;
                        }
                    };
                    match packet {
                        Some(Packet::Ping) => {
                            deadline.as_mut().reset(Instant::now() + heartbeat);
                            if !write!(Outgoing::text(protocol::PONG)) {
                                break Reason::TransportError;
                            }
                        }
                        Some(Packet::Close) => break Reason::TransportClose,
                        Some(Packet::Disconnect) => break Reason::ServerDisconnect,
                        Some(Packet::Event { name, args, ack }) => self.events.event(name, args, ack),
                        Some(Packet::Ack { id, args }) => self.events.ack(id, args),
                        Some(Packet::ConnectError(message)) => {
                            tracing::warn!(client = %self.identifier, "connect_error: {message}");
                        }
                        Some(Packet::Unsupported(text)) => {
                            tracing::debug!(client = %self.identifier, "unsupported packet ignored: {text}");
                        }
                        Some(Packet::Open(_) | Packet::Connect { .. } | Packet::Noop | Packet::Binary(_))
                        | None => {}
                    }
                }
                Some(outgoing) = rx.recv() => {
                    if !write!(outgoing) {
                        // A server that sent a last event (a `rate_limited`, say) and closed
                        // can fail this write before the loop reads it: what has already
                        // arrived is still delivered.
                        break self.deliver_arrived(&mut stream, &mut assembly).unwrap_or(Reason::TransportError);
                    }
                }
                () = &mut deadline => break Reason::PingTimeout,
                changed = desire.changed() => {
                    if changed.is_err() || *desire.borrow() != Desire::Connected {
                        // What was emitted before the disconnect still goes out first.
                        rx.close();
                        while let Ok(outgoing) = rx.try_recv() {
                            if !write!(outgoing) {
                                break;
                            }
                        }
                        write!(Outgoing::text(protocol::DISCONNECT));
                        break Reason::ClientDisconnect;
                    }
                }
            }
        };
        self.events.closed();
        // A proper close (of the WebSocket), however the connection ended (bounded: the peer
        // may be gone).
        let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
        tracing::info!(client = %self.identifier, reason = reason.as_str(), "disconnected");
        reason
    }

    /// Delivers the events and acknowledgements already received (without waiting for more),
    /// after the connection failed; the server's disconnect or close among them is the reason.
    fn deliver_arrived<S>(&self, stream: &mut S, assembly: &mut Assembly) -> Option<Reason>
    where
        S: futures_util::Stream<Item = Result<Frame, ClientError>> + Unpin,
    {
        while let Some(Some(Ok(frame))) = stream.next().now_or_never() {
            match assembly.frame(frame) {
                Some(Packet::Event { name, args, ack }) => self.events.event(name, args, ack),
                Some(Packet::Ack { id, args }) => self.events.ack(id, args),
                Some(Packet::Disconnect) => return Some(Reason::ServerDisconnect),
                Some(Packet::Close) => return Some(Reason::TransportClose),
                _ => {}
            }
        }
        None
    }
}

/// A packet's frames, its attachments after its text, then a flush.
async fn write_packet<S>(sink: &mut S, outgoing: Outgoing) -> Result<(), ClientError>
where
    S: Sink<Frame, Error = ClientError> + Unpin,
{
    for frame in outgoing.into_frames() {
        sink.feed(frame).await?;
    }
    sink.flush().await
}

async fn send<T: Transport>(transport: &mut T, text: String) -> Result<(), ClientError> {
    transport.send(Frame::Text(text)).await
}

/// The next packet of the handshake (binary frames have no place in it and are let go).
async fn next_packet<T: Transport>(transport: &mut T) -> Result<Packet, ClientError> {
    loop {
        match transport.next().await {
            Some(Ok(Frame::Text(text))) => return Ok(protocol::decode(&text)),
            Some(Ok(Frame::Binary(_))) => continue,
            None => {
                return Err(ClientError::Transport(
                    "the server closed the connection".into(),
                ));
            }
            Some(Err(e)) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use serde_json::json;
    use tokio::task::JoinHandle;

    use super::*;
    use crate::args::Arg;
    use crate::client::dial::memory::{self, MemoryDial, ServerEnd};

    /// What the loop reported.
    #[derive(Debug)]
    enum Report {
        Connected(mpsc::UnboundedSender<Outgoing>, String, Option<String>),
        Event(String, Args, Option<u64>),
        Ack(u64, Args),
        Closed,
        Disconnected(Reason),
        Failed(ClientError),
    }

    struct Recorder(mpsc::UnboundedSender<Report>);

    impl Events for Recorder {
        fn connected(&self, writer: mpsc::UnboundedSender<Outgoing>, ids: ConnectionIds) {
            self.0
                .send(Report::Connected(writer, ids.engine_id, ids.socket_id))
                .ok();
        }
        fn event(&self, name: String, args: Args, ack: Option<u64>) {
            self.0.send(Report::Event(name, args, ack)).ok();
        }
        fn ack(&self, id: u64, args: Args) {
            self.0.send(Report::Ack(id, args)).ok();
        }
        fn closed(&self) {
            self.0.send(Report::Closed).ok();
        }
        fn disconnected(&self, reason: Reason) {
            self.0.send(Report::Disconnected(reason)).ok();
        }
        fn failed(&self, error: ClientError) {
            self.0.send(Report::Failed(error)).ok();
        }
    }

    /// Far longer than any test waits. Paused time moves only while every task waits, so
    /// reaching this means that what was awaited never comes.
    const NEVER: Duration = Duration::from_secs(3600);

    /// A loop over in-memory connections, the test playing the server.
    struct Harness {
        desire: watch::Sender<Desire>,
        reports: mpsc::UnboundedReceiver<Report>,
        servers: mpsc::UnboundedReceiver<ServerEnd>,
        task: JoinHandle<()>,
        start: Instant,
    }

    impl Harness {
        fn start(options: ClientOptions) -> Self {
            let (desire, _) = watch::channel(Desire::Connected);
            let (dial, servers) = MemoryDial::new();
            let (tx, reports) = mpsc::unbounded_channel();
            let driver = Driver::new("t".into(), options, dial, Recorder(tx), desire.clone());
            Self {
                desire,
                reports,
                servers,
                task: tokio::spawn(driver.run()),
                start: Instant::now(),
            }
        }

        fn elapsed(&self) -> Duration {
            self.start.elapsed()
        }

        async fn report(&mut self) -> Report {
            tokio::time::timeout(NEVER, self.reports.recv())
                .await
                .expect("a report")
                .expect("the loop is running")
        }

        /// The next connection attempt, as the server sees it.
        async fn dialed(&mut self) -> ServerEnd {
            tokio::time::timeout(NEVER, self.servers.recv())
                .await
                .expect("an attempt")
                .expect("the loop is running")
        }

        /// The next attempt accepted; its server end and the writer the loop reported.
        async fn connected(&mut self) -> (ServerEnd, mpsc::UnboundedSender<Outgoing>) {
            let mut server = self.dialed().await;
            memory::accept(&mut server).await;
            match self.report().await {
                Report::Connected(writer, ..) => (server, writer),
                other => panic!("reported {other:?}"),
            }
        }

        /// Neither a report nor an attempt while `quiet` passes.
        async fn quiet_for(&mut self, quiet: Duration) {
            tokio::time::sleep(quiet).await;
            assert!(self.servers.try_recv().is_err(), "an attempt");
            if let Ok(report) = self.reports.try_recv() {
                panic!("reported {report:?}");
            }
        }

        /// The loop has returned, having reported nothing more.
        async fn ended(mut self) {
            tokio::time::timeout(NEVER, &mut self.task)
                .await
                .expect("the loop returns")
                .expect("without panicking");
            if let Ok(report) = self.reports.try_recv() {
                panic!("reported {report:?}");
            }
        }
    }

    fn options() -> ClientOptions {
        ClientOptions {
            auth: Some(json!({ "token": "t" })),
            randomization_factor: 0.0,
            ..Default::default()
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[tokio::test(start_paused = true)]
    async fn failed_attempts_back_off_doubling_to_the_maximum_and_a_connection_resets_it() {
        let mut h = Harness::start(options());
        // Delays of 1, 2, 4, then 5 s (the maximum).
        for at in [0, 1, 3, 7, 12, 17] {
            let server = h.dialed().await;
            assert_eq!(h.elapsed(), secs(at));
            drop(server);
            assert!(matches!(
                h.report().await,
                Report::Failed(ClientError::Transport(_))
            ));
        }
        let (server, _writer) = h.connected().await;
        assert_eq!(h.elapsed(), secs(22));
        drop(server);
        assert!(matches!(h.report().await, Report::Closed));
        assert!(matches!(
            h.report().await,
            Report::Disconnected(Reason::TransportError)
        ));
        // The lost connection is retried after the first delay again.
        h.dialed().await;
        assert_eq!(h.elapsed(), secs(23));
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_past_the_timeout_fails_and_is_retried() {
        let mut h = Harness::start(ClientOptions {
            timeout: secs(5),
            ..options()
        });
        let _silent = h.dialed().await;
        match h.report().await {
            Report::Failed(ClientError::Timeout(t)) => assert_eq!(t, secs(5)),
            other => panic!("reported {other:?}"),
        }
        assert_eq!(h.elapsed(), secs(5));
        h.dialed().await;
        assert_eq!(h.elapsed(), secs(6));
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_stop_after_the_configured_number_and_connect_resumes_them() {
        let mut h = Harness::start(ClientOptions {
            reconnection_attempts: Some(2),
            ..options()
        });
        // The first attempt and two reconnection attempts.
        for _ in 0..3 {
            drop(h.dialed().await);
            assert!(matches!(h.report().await, Report::Failed(_)));
        }
        assert_eq!(*h.desire.borrow(), Desire::Disconnected);
        h.quiet_for(secs(60)).await;
        let resumed = h.elapsed();
        h.desire.send_replace(Desire::Connected);
        drop(h.dialed().await);
        assert_eq!(h.elapsed(), resumed, "at once");
        assert!(matches!(h.report().await, Report::Failed(_)));
        // The count starts again: the next delay is the first one.
        h.dialed().await;
        assert_eq!(h.elapsed(), resumed + secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_and_a_server_disconnect_are_final_a_closed_transport_is_not() {
        let mut h = Harness::start(options());
        let mut server = h.dialed().await;
        memory::send(&mut server, memory::OPEN).await;
        assert_eq!(
            memory::recv(&mut server).await.unwrap(),
            r#"40{"token":"t"}"#
        );
        memory::send(&mut server, r#"44{"message":"nope"}"#).await;
        match h.report().await {
            Report::Failed(ClientError::Refused(m)) => assert_eq!(m, "nope"),
            other => panic!("reported {other:?}"),
        }
        assert_eq!(*h.desire.borrow(), Desire::Disconnected);
        h.quiet_for(secs(60)).await;

        h.desire.send_replace(Desire::Connected);
        let (mut server, _writer) = h.connected().await;
        memory::send(&mut server, "41").await;
        assert!(matches!(h.report().await, Report::Closed));
        assert!(matches!(
            h.report().await,
            Report::Disconnected(Reason::ServerDisconnect)
        ));
        assert_eq!(*h.desire.borrow(), Desire::Disconnected);
        h.quiet_for(secs(60)).await;

        h.desire.send_replace(Desire::Connected);
        let (mut server, _writer) = h.connected().await;
        let closed_at = h.elapsed();
        memory::send(&mut server, "1").await;
        assert!(matches!(h.report().await, Report::Closed));
        assert!(matches!(
            h.report().await,
            Report::Disconnected(Reason::TransportClose)
        ));
        assert_eq!(*h.desire.borrow(), Desire::Connected);
        h.dialed().await;
        assert_eq!(h.elapsed(), closed_at + secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_server_is_left_at_the_heartbeat_deadline_each_ping_pushing_it_back() {
        // OPEN: pings every 1 s, 0.5 s more for the pong: 1.5 s of silence is a dead server.
        let mut h = Harness::start(options());
        let (mut server, _writer) = h.connected().await;
        tokio::time::sleep(secs(1)).await;
        memory::send(&mut server, "2").await;
        assert_eq!(memory::recv(&mut server).await.unwrap(), protocol::PONG);
        assert!(matches!(h.report().await, Report::Closed));
        assert_eq!(h.elapsed(), Duration::from_millis(2500));
        assert!(matches!(
            h.report().await,
            Report::Disconnected(Reason::PingTimeout)
        ));
        assert_eq!(memory::recv(&mut server).await, None, "closed");
        h.dialed().await;
    }

    #[tokio::test(start_paused = true)]
    async fn events_and_acks_are_reported_in_order_and_the_writer_reaches_the_server() {
        let mut h = Harness::start(options());
        let mut server = h.dialed().await;
        assert_eq!(memory::accept(&mut server).await, r#"40{"token":"t"}"#);
        let writer = match h.report().await {
            Report::Connected(writer, eid, sid) => {
                assert_eq!((eid.as_str(), sid.as_deref()), ("e1", Some("s1")));
                writer
            }
            other => panic!("reported {other:?}"),
        };
        // An incomplete binary packet (the next text frame drops it), a stray attachment, and
        // a whole binary event.
        for frame in [
            r#"42["news",{"a":1}]"#,
            r#"451-["binary",{}]"#,
            r#"421["ask",2]"#,
            "6",
            r#"437["ok"]"#,
        ] {
            memory::send(&mut server, frame).await;
        }
        memory::send_binary(&mut server, b"stray").await;
        memory::send(&mut server, r#"451-["file",{"_placeholder":true,"num":0}]"#).await;
        memory::send_binary(&mut server, &[0, 0xff]).await;
        match h.report().await {
            Report::Event(name, args, None) => {
                assert_eq!(
                    (name.as_str(), args),
                    ("news", Args::from(vec![json!({"a": 1})]))
                )
            }
            other => panic!("reported {other:?}"),
        }
        match h.report().await {
            Report::Event(name, args, Some(1)) => {
                assert_eq!((name.as_str(), args), ("ask", Args::from(vec![json!(2)])))
            }
            other => panic!("reported {other:?}"),
        }
        match h.report().await {
            Report::Ack(7, args) => assert_eq!(args, Args::from(vec![json!("ok")])),
            other => panic!("reported {other:?}"),
        }
        match h.report().await {
            Report::Event(name, args, None) => {
                assert_eq!(name, "file");
                assert_eq!(
                    args.into_vec(),
                    [Arg::Binary(Bytes::from_static(&[0, 0xff]))]
                );
            }
            other => panic!("reported {other:?}"),
        }
        writer.send(Outgoing::text(r#"42["hi"]"#)).unwrap();
        assert_eq!(memory::recv(&mut server).await.unwrap(), r#"42["hi"]"#);
        let upload = protocol::event("up", &(Bytes::from_static(b"\x01\x02"),), None).unwrap();
        writer.send(upload).unwrap();
        assert_eq!(
            memory::recv(&mut server).await.unwrap(),
            r#"451-["up",{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(memory::recv_binary(&mut server).await.unwrap(), [1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_disconnect_sends_what_was_written_then_the_goodbye_and_stays_disconnected() {
        let mut h = Harness::start(options());
        let (mut server, writer) = h.connected().await;
        // Many, so that the loop cannot have written them all before it sees the disconnect.
        let written: Vec<String> = (0..50).map(|i| format!(r#"42["n",{i}]"#)).collect();
        for text in &written {
            writer.send(Outgoing::text(text.clone())).unwrap();
        }
        h.desire.send_replace(Desire::Disconnected);
        for expected in written
            .iter()
            .map(String::as_str)
            .chain([protocol::DISCONNECT])
        {
            assert_eq!(memory::recv(&mut server).await.unwrap(), expected);
        }
        assert_eq!(memory::recv(&mut server).await, None, "closed");
        assert!(matches!(h.report().await, Report::Closed));
        assert!(matches!(
            h.report().await,
            Report::Disconnected(Reason::ClientDisconnect)
        ));
        assert!(
            writer.send(Outgoing::text("late")).is_err(),
            "the writer is gone"
        );
        h.quiet_for(secs(60)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_loop_while_connecting() {
        let mut h = Harness::start(options());
        let _silent = h.dialed().await;
        h.desire.send_replace(Desire::Shutdown);
        h.ended().await;
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_loop_during_the_backoff_at_once() {
        let mut h = Harness::start(options());
        drop(h.dialed().await);
        assert!(matches!(h.report().await, Report::Failed(_)));
        h.desire.send_replace(Desire::Shutdown);
        let start = h.start;
        h.ended().await;
        assert_eq!(start.elapsed(), Duration::ZERO, "the delay was not waited");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_while_connected_says_goodbye_then_ends_the_loop() {
        let mut h = Harness::start(options());
        let (mut server, _writer) = h.connected().await;
        h.desire.send_replace(Desire::Shutdown);
        assert_eq!(
            memory::recv(&mut server).await.unwrap(),
            protocol::DISCONNECT
        );
        assert!(matches!(h.report().await, Report::Closed));
        assert!(matches!(
            h.report().await,
            Report::Disconnected(Reason::ClientDisconnect)
        ));
        h.ended().await;
    }
}
