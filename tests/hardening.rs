//! Decisions a hostile client must not beat, against a real server and raw Engine.IO clients
//! (WebSocket and long-polling) that stop reading on purpose.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use socketio_stack::layers::event_rate_limit::{Bucket, EventRateLimitLayer, ExcessPolicy};
use socketio_stack::layers::{AuthLayer, AuthTimeoutLayer, PingLayer, RoomsLayer};
use socketio_stack::{ClientState, OutboundMessage, SocketServer};
use socketioxide::SocketIoBuilder;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Transport {
    WebSocket,
    Polling,
}

const TRANSPORTS: [Transport; 2] = [Transport::WebSocket, Transport::Polling];

/// A raw client on one transport: it connects to the namespace, then reads only when told.
struct Raw {
    addr: SocketAddr,
    ws: Option<RawWs>,
    /// The Engine.IO session id (long-polling).
    eio_sid: String,
    /// The Socket.IO socket id.
    id: String,
}

impl Raw {
    /// Connects on `transport` to `/` with `auth`, and reads up to the namespace's CONNECT.
    async fn connect(addr: SocketAddr, transport: Transport, auth: Value) -> Self {
        let connect = format!("40{auth}");
        match transport {
            Transport::WebSocket => {
                // A small receive buffer: the server's writes block after a few MiB.
                let mut ws = raw_ws(addr, Some(16 * 1024)).await;
                let id = raw_ws_namespace(&mut ws, &auth).await;
                Self {
                    addr,
                    ws: Some(ws),
                    eio_sid: String::new(),
                    id,
                }
            }
            Transport::Polling => {
                let (status, open) =
                    raw_http(addr, "GET", "/io/?EIO=4&transport=polling", "").await;
                assert_eq!(status, 200, "{open}");
                let open: Value = serde_json::from_str(open.strip_prefix('0').unwrap()).unwrap();
                let eio_sid = open["sid"].as_str().unwrap().to_owned();
                let mut raw = Self {
                    addr,
                    ws: None,
                    eio_sid,
                    id: String::new(),
                };
                raw.post(&connect).await;
                let id = loop {
                    let packets = raw.poll().await;
                    let connect = packets.iter().find_map(|p| p.strip_prefix("40"));
                    if let Some(rest) = connect {
                        break serde_json::from_str::<Value>(rest).unwrap()["sid"]
                            .as_str()
                            .unwrap()
                            .to_owned();
                    }
                };
                raw.id = id;
                raw
            }
        }
    }

    fn polling_target(&self) -> String {
        format!("/io/?EIO=4&transport=polling&sid={}", self.eio_sid)
    }

    async fn post(&self, payload: &str) -> u16 {
        raw_http(self.addr, "POST", &self.polling_target(), payload)
            .await
            .0
    }

    /// One long-polling GET: the packets it carried.
    async fn poll(&self) -> Vec<String> {
        let (status, body) = raw_http(self.addr, "GET", &self.polling_target(), "").await;
        assert_eq!(status, 200, "{body}");
        body.split('\u{1e}').map(str::to_owned).collect()
    }

    /// Sends one Socket.IO packet, without reading anything; returns whether the server took
    /// it.
    async fn send(&mut self, packet: &str) -> bool {
        match &mut self.ws {
            Some(ws) => ws.send(Message::text(packet)).await.is_ok(),
            None => self.post(packet).await == 200,
        }
    }

    /// Over long-polling, what a client beating the decision would do next: drain its buffer
    /// and answer the engine's pings, for as long as the session is served.
    fn drain_and_pong(&self) -> Option<tokio::task::JoinHandle<()>> {
        if self.ws.is_some() {
            return None;
        }
        let (addr, target) = (self.addr, self.polling_target());
        Some(tokio::spawn(async move {
            loop {
                let (status, body) = raw_http(addr, "GET", &target, "").await;
                if status != 200 {
                    return;
                }
                if body.split('\u{1e}').any(|p| p == "2") {
                    raw_http(addr, "POST", &target, "3").await;
                }
            }
        }))
    }

    /// Reads until the server has ended the transport: the WebSocket stream ends (after
    /// everything it had buffered), or the long-polling session is unknown.
    async fn expect_transport_closed(&mut self) {
        match &mut self.ws {
            Some(ws) => {
                let drained = tokio::time::timeout(WAIT, async {
                    while let Some(Ok(_)) = ws.next().await {}
                })
                .await;
                assert!(drained.is_ok(), "the WebSocket is still open");
            }
            None => {
                let (status, body) = raw_http(self.addr, "GET", &self.polling_target(), "").await;
                assert_eq!(status, 400, "the session is still open: {body}");
                assert!(body.contains("Session ID unknown"), "{body}");
            }
        }
    }
}

/// Fills the client's write buffer: over WebSocket, first the kernel's socket buffers (the
/// server's writes then block), then socketioxide's 32 packets; over long-polling, the 32
/// packets alone (nothing is written until the client polls).
async fn fill_buffer(server: &SocketServer, id: &str) {
    let pad = "x".repeat(16 * 1024);
    for n in 0..1_000u64 {
        server
            .send(OutboundMessage::to(
                id,
                "bulk",
                json!({ "n": n, "pad": pad }),
            ))
            .await
            .unwrap();
    }
}

/// Logs of the server under test, when `RUST_LOG` asks for them.
fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// socketioxide's write buffer of each client: 32 packets; and a short Engine.IO heartbeat,
/// which ends a session whose full buffer nobody drains: 1 s over long-polling; 3 s over
/// WebSocket, whose first PING is answered for the client (see src/first_ping.rs), so that
/// its first check (one interval in, when the buffer is full) comes after the policy under
/// test has decided.
fn small_buffer(transport: Transport) -> impl FnOnce(SocketIoBuilder) -> SocketIoBuilder {
    let interval = match transport {
        Transport::Polling => Duration::from_secs(1),
        Transport::WebSocket => Duration::from_secs(3),
    };
    move |io| {
        io.max_buffer_size(32)
            .ping_interval(interval)
            .ping_timeout(Duration::from_secs(5))
    }
}

/// A server with `layers` whose clients have a small write buffer (see [`small_buffer`]).
async fn start(
    transport: Transport,
    layers: impl FnOnce(
        socketio_stack::SocketServerBuilder,
    ) -> Result<SocketServer, socketio_stack::BuildError>,
) -> TestServer {
    serve(layers(SocketServer::builder().configure_io(small_buffer(transport))).unwrap()).await
}

/// Leaves the server time to take its decision, which nothing shows the client (the
/// DISCONNECT cannot reach it), before the client drains its buffer to beat it.
async fn decision_taken(after: Duration) {
    tokio::time::sleep(after + Duration::from_millis(500)).await;
}

fn state_of(server: &SocketServer, id: &str) -> Option<ClientState> {
    server.client(id).map(|c| c.state())
}

/// The decision about the client has been enforced although the client tries to beat it
/// (over long-polling, by draining its buffer once the decision is taken): it is gone from
/// the server, and its transport is closed.
async fn expect_gone(server: &SocketServer, raw: &mut Raw, decided_within: Duration) {
    decision_taken(decided_within).await;
    let drainer = raw.drain_and_pong();
    eventually("the client is untracked", || {
        server.client(&raw.id).is_none()
    })
    .await;
    raw.expect_transport_closed().await;
    if let Some(drainer) = drainer {
        tokio::time::timeout(WAIT, drainer)
            .await
            .expect("the drainer is refused")
            .unwrap();
    }
}

async fn authenticate(server: &SocketServer, raw: &mut Raw) {
    assert!(raw.send(r#"42["authenticate"]"#).await);
    eventually("authenticated", || {
        state_of(server, &raw.id) == Some(ClientState::Authenticated)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auth_deadline_holds_against_a_client_whose_buffer_is_full() {
    logs();
    for transport in TRANSPORTS {
        let t = start(transport, |b| {
            b.layer(AuthLayer::new(common::authenticate))
                .layer(AuthTimeoutLayer::new(Duration::from_millis(400)).unwrap())
                .build()
        })
        .await;
        let mut raw = Raw::connect(t.addr, transport, json!({ "token": TOKEN })).await;
        fill_buffer(&t.server, &raw.id).await;
        expect_gone(&t.server, &mut raw, Duration::from_millis(400)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_ends_the_connection_of_a_client_whose_buffer_is_full() {
    logs();
    for transport in TRANSPORTS {
        let t = start(transport, |b| {
            b.layer(AuthLayer::new(common::authenticate)).build()
        })
        .await;
        let mut raw = Raw::connect(t.addr, transport, json!({ "token": "wrong" })).await;
        fill_buffer(&t.server, &raw.id).await;
        assert!(raw.send(r#"42["authenticate"]"#).await);
        expect_gone(&t.server, &mut raw, Duration::ZERO).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_disconnects_a_flooder_whose_buffer_is_full() {
    logs();
    for transport in TRANSPORTS {
        let t = start(transport, |b| {
            b.layer(
                EventRateLimitLayer::default()
                    .events(Bucket::new(1.0, 2).unwrap())
                    .policy(ExcessPolicy::Disconnect),
            )
            .layer(AuthLayer::new(common::authenticate))
            .build()
        })
        .await;
        let mut raw = Raw::connect(t.addr, transport, json!({ "token": TOKEN })).await;
        authenticate(&t.server, &mut raw).await;
        fill_buffer(&t.server, &raw.id).await;
        // Refused once the disconnect is decided, over long-polling.
        for _ in 0..5 {
            raw.send(r#"42["flood"]"#).await;
        }
        expect_gone(&t.server, &mut raw, Duration::ZERO).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ping_rule_disconnects_an_unauthenticated_client_whose_buffer_is_full() {
    logs();
    for transport in TRANSPORTS {
        let t = start(transport, |b| {
            b.layer(AuthLayer::new(common::authenticate))
                .layer(
                    PingLayer::new(Duration::from_millis(200))
                        .unwrap()
                        .disconnect_unauthenticated(true),
                )
                .build()
        })
        .await;
        let mut raw = Raw::connect(t.addr, transport, json!({ "token": TOKEN })).await;
        authenticate(&t.server, &mut raw).await;
        fill_buffer(&t.server, &raw.id).await;
        // What a custom layer revoking the authentication would do.
        let session = t.server.client(&raw.id).unwrap().session;
        session.set_state(ClientState::Unauthorized);
        expect_gone(&t.server, &mut raw, Duration::ZERO).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_disconnect_ends_the_connection_of_a_client_whose_buffer_is_full() {
    logs();
    for transport in TRANSPORTS {
        let t = start(transport, |b| {
            b.layer(AuthLayer::new(common::authenticate))
                .layer(RoomsLayer::new())
                .build()
        })
        .await;
        let mut raw = Raw::connect(t.addr, transport, json!({ "token": TOKEN })).await;
        authenticate(&t.server, &mut raw).await;
        fill_buffer(&t.server, &raw.id).await;
        assert!(t.server.disconnect(&raw.id));
        // Still tracked until it is gone: the disconnect is decided, then carried out.
        expect_gone(&t.server, &mut raw, Duration::ZERO).await;
        assert!(!t.server.disconnect(&raw.id), "already gone");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_the_namespace_and_connects_again_at_once_is_answered() {
    logs();
    let t = serve(
        SocketServer::builder()
            .layer(AuthLayer::new(common::authenticate))
            .layer(RoomsLayer::new())
            .build()
            .unwrap(),
    )
    .await;
    let url = format!("ws://{}/io/?EIO=4&transport=websocket", t.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.next().await.unwrap().unwrap(); // Engine.IO open
    let connect = format!(r#"40{{"token":"{TOKEN}"}}"#);
    // Leave (`41`) and connect again (`40`) back to back, 12 times (within the session's
    // CONNECT bound): each CONNECT is answered.
    ws.send(Message::text(connect.clone())).await.unwrap();
    for round in 0..12 {
        let id = loop {
            let msg = tokio::time::timeout(WAIT, ws.next())
                .await
                .unwrap_or_else(|_| panic!("round {round}: no CONNECT answered"))
                .unwrap()
                .unwrap();
            if let Some(rest) = msg.to_text().unwrap_or_default().strip_prefix("40") {
                break serde_json::from_str::<Value>(rest).unwrap()["sid"]
                    .as_str()
                    .unwrap()
                    .to_owned();
            }
        };
        // The new socket is tracked, with a session of its own, and in its own id's room,
        // even once the old one's disconnect has been handled.
        eventually("the new socket is tracked", || {
            t.server.client(&id).is_some_and(|c| !c.session.is_closed())
        })
        .await;
        ws.send(Message::text(r#"42["authenticate"]"#))
            .await
            .unwrap();
        eventually("authenticated", || {
            state_of(&t.server, &id) == Some(ClientState::Authenticated)
        })
        .await;
        assert!(rooms_of(&t, &id).contains(&id), "round {round}");
        ws.send(Message::text("41")).await.unwrap();
        ws.send(Message::text(connect.clone())).await.unwrap();
    }
}

#[tokio::test]
async fn an_oversized_auth_payload_is_refused_at_connect_and_the_session_may_try_again() {
    let t = serve(seeds_stack(10_000, 10_000)).await;
    let url = format!("ws://{}/io/?EIO=4&transport=websocket", t.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.next().await.unwrap().unwrap(); // Engine.IO open
    let next_packet = async |ws: &mut RawWs| loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let text = msg.to_text().unwrap_or_default().to_owned();
        if text != "2" {
            return text;
        }
    };
    // 9 KB of token, then 600 tiny values: each refused with a message, before it is parsed.
    let long = json!({ "token": "x".repeat(9_000) });
    let many = json!({ "token": TOKEN, "pad": vec![0; 600] });
    for auth in [long, many] {
        ws.send(Message::text(format!("40{auth}"))).await.unwrap();
        let answer = next_packet(&mut ws).await;
        let error: Value = serde_json::from_str(answer.strip_prefix("44").unwrap()).unwrap();
        assert!(
            error["message"].as_str().unwrap().contains("bound"),
            "{error}"
        );
    }
    assert_eq!(t.server.client_count(), 0);
    // A normal auth on the same session is answered.
    ws.send(Message::text(format!(r#"40{{"token":"{TOKEN}"}}"#)))
        .await
        .unwrap();
    assert!(next_packet(&mut ws).await.starts_with("40{"));
    eventually("tracked", || t.server.client_count() == 1).await;
}
