//! Drive layers without a network, for tests and benchmarks (feature `test-util`).
//!
//! [`TestSocket`] is a real socketioxide socket connected through socketioxide's in-memory
//! test harness: layers can emit to it, join it to rooms and disconnect it, and the test reads
//! what was sent. [`event`] makes a synthetic client event; [`Recorder`] and [`Noop`] are inner
//! services to put under a layer.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use socketio_stack::testing::{Recorder, TestSocket, event};
//! use socketio_stack::layers::RoomsLayer;
//! use socketio_stack::{ClientState, RequestKind};
//! use tower::{Layer, Service};
//!
//! let t = TestSocket::new().await;
//! t.session.set_state(ClientState::Authenticated);
//! let recorder = Recorder::default();
//! let mut svc = RoomsLayer::new().layer(recorder.clone());
//! svc.call(t.request(RequestKind::Authenticated)).await.unwrap();
//! svc.call(t.request(event("chat", serde_json::json!("hi")))).await.unwrap();
//! assert_eq!(recorder.seen(), ["authenticated", "event:chat"]);
//! assert_eq!(t.socket.rooms().len(), 2);
//! # }
//! ```
//!
//! It relies on socketioxide's hidden `__test_harness` feature: meant for tests and benches,
//! never for production code.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use engineioxide::Packet;
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::extract::SocketRef;
use tokio::sync::mpsc;
use tower_service::Service;

use crate::args::{Arg, Args};
use crate::event::{ClientEvent, RequestKind, SocketRequest};
use crate::handshake::Handshake;
use crate::session::Session;

/// A connected socket, its session, and what the server sent to it.
pub struct TestSocket {
    _io: SocketIo,
    /// The socket.
    pub socket: SocketRef,
    /// Its session (not put in the socket's extensions: the bridge does that, not this).
    pub session: Session,
    packets: tokio::sync::Mutex<mpsc::Receiver<Packet>>,
    _client: mpsc::Sender<Packet>,
}

/// One packet the server sent to the test socket.
#[derive(Debug, PartialEq)]
pub enum TestPacket {
    /// An event: its name and first argument (`Null` when none).
    Event(String, Value),
    /// The namespace disconnect packet.
    Disconnect,
    /// Anything else, as text.
    Other(String),
}

impl TestSocket {
    /// Connects a new socket to a fresh in-memory server's `/` namespace.
    pub async fn new() -> Self {
        let (_svc, io) = SocketIo::new_svc();
        let (tx, mut rx) = mpsc::unbounded_channel();
        io.ns("/", async move |s: SocketRef| {
            tx.send(s).ok();
        });
        let (client, mut packets) = io.new_dummy_sock("/", ()).await;
        let socket = rx.recv().await.expect("connect handler ran");
        // The CONNECT answer is not interesting to the tests.
        packets.recv().await;
        let handshake = Handshake::from_parts(socket.req_parts(), Value::Null);
        let session = Session::new(socket.id, handshake);
        Self {
            _io: io,
            socket,
            session,
            packets: tokio::sync::Mutex::new(packets),
            _client: client,
        }
    }

    /// A request of `kind` for this socket.
    pub fn request(&self, kind: RequestKind) -> SocketRequest {
        SocketRequest::new(self.socket.clone(), self.session.clone(), kind)
    }

    /// The next packet sent to the socket, waiting at most 5 s.
    pub async fn next_packet(&self) -> TestPacket {
        let mut rx = self.packets.lock().await;
        let packet = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a packet within 5 s")
            .expect("socket open");
        decode(packet)
    }

    /// Discards every packet sent and not yet read (benchmarks call it between rounds so the
    /// socket's buffer never fills).
    pub fn drain(&self) {
        if let Ok(mut rx) = self.packets.try_lock() {
            while rx.try_recv().is_ok() {}
        }
    }

    /// Whether nothing has been sent and not yet read.
    pub fn no_packet_pending(&self) -> bool {
        self.packets
            .try_lock()
            .is_ok_and(|mut rx| rx.try_recv().is_err())
    }
}

fn decode(packet: Packet) -> TestPacket {
    let Packet::Message(text) = packet else {
        return TestPacket::Other(format!("{packet:?}"));
    };
    let text = text.as_str();
    if text.starts_with('1') {
        return TestPacket::Disconnect;
    }
    if let Some(rest) = text.strip_prefix('2') {
        let start = rest.find('[').unwrap_or(0);
        if let Ok(Value::Array(mut items)) = serde_json::from_str::<Value>(&rest[start..]) {
            let data = if items.len() > 1 {
                items.remove(1)
            } else {
                Value::Null
            };
            let name = items[0].as_str().unwrap_or_default().to_owned();
            return TestPacket::Event(name, data);
        }
    }
    TestPacket::Other(text.to_owned())
}

/// A client event request kind with one argument, as synthetic requests make it (no ack).
pub fn event(name: &str, data: Value) -> RequestKind {
    event_args(name, Args::from(Arg::from(data)))
}

/// A client event request kind with these arguments (no ack).
pub fn event_args(name: &str, args: Args) -> RequestKind {
    RequestKind::Event(ClientEvent {
        name: name.to_owned(),
        args,
        ack: None,
    })
}

/// An inner service recording what reached it: `connect`, `event:<name>`, ...
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<String>>>);

impl Recorder {
    /// What reached it, in order.
    pub fn seen(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl Service<SocketRequest> for Recorder {
    type Response = ();
    type Error = Infallible;
    type Future = Ready<Result<(), Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: SocketRequest) -> Self::Future {
        let label = match &req.kind {
            RequestKind::Event(ev) => format!("event:{}", ev.name),
            kind => kind.label().to_owned(),
        };
        self.0.lock().unwrap().push(label);
        ready(Ok(()))
    }
}

/// An inner service that does nothing: the bottom of a stack under benchmark.
#[derive(Clone, Copy, Debug, Default)]
pub struct Noop;

impl Service<SocketRequest> for Noop {
    type Response = ();
    type Error = Infallible;
    type Future = Ready<Result<(), Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: SocketRequest) -> Self::Future {
        ready(Ok(()))
    }
}
