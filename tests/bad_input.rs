//! Bad input, each asserted: never a panic of the server, a hung socket, or harm to others.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use socketio_stack::layers::{AuthLayer, AuthTimeoutLayer, PingLayer, RoomsLayer};
use socketio_stack::{BoxError, OutboundMessage, SocketServer};

/// An onlooker in `io-default` that must keep receiving promptly whatever the others do.
async fn assert_onlooker_served(t: &TestServer, onlooker: &mut TestClient, n: u64) {
    t.server
        .send(OutboundMessage::to(
            "io-default",
            "still-there",
            json!({"n": n}),
        ))
        .await
        .unwrap();
    loop {
        match onlooker.next_non_ping().await {
            Received::Event(name, data) if name == "still-there" && data["n"] == n => return,
            Received::Event(..) => continue,
            Received::Close => panic!("the onlooker was disconnected"),
        }
    }
}

#[tokio::test]
async fn malformed_join_and_leave_payloads_are_refused_and_the_socket_stays() {
    let t = serve(seeds_stack(10_000, 10_000)).await;
    let (mut onlooker, _) = TestClient::authenticated(&t.url()).await;
    let (mut c, id) = TestClient::authenticated(&t.url()).await;
    let before = rooms_of(&t, &id);
    let payloads = [
        Value::Null,
        json!({}),
        json!({"rooms": "x"}),
        json!({"rooms": "public-x"}),
        json!({"rooms": [1, 2]}),
        json!({"rooms": [null, {}, [], true]}),
        json!({"rooms": {"public-a": true}}),
        json!("public-a"),
        json!(12),
        json!([["public-a"]]),
    ];
    for (i, payload) in payloads.iter().enumerate() {
        c.emit("join", payload.clone()).await;
        c.emit("leave", payload.clone()).await;
        c.sync().await;
        assert_eq!(rooms_of(&t, &id), before, "payload {payload}");
        assert_onlooker_served(&t, &mut onlooker, i as u64).await;
    }
    assert!(!c.skipped.contains(&Received::Close));
}

#[tokio::test]
async fn ten_thousand_or_a_hundred_thousand_rooms_in_one_join_are_refused_whole() {
    let t = serve(seeds_stack(10_000, 10_000)).await;
    let (mut onlooker, _) = TestClient::authenticated(&t.url()).await;
    let (mut c, id) = TestClient::authenticated(&t.url()).await;
    let before = rooms_of(&t, &id);
    let public: Vec<String> = (0..10_000).map(|i| format!("public-{i}")).collect();
    c.emit("join", json!({ "rooms": public })).await;
    c.sync().await;
    assert_eq!(
        rooms_of(&t, &id),
        before,
        "over the 100-rooms-per-request bound"
    );
    // 100,000 short names (still under the 1e6-byte message bound): refused whole too.
    let many: Vec<String> = (0..100_000).map(|i| i.to_string()).collect();
    c.emit("join", json!({ "rooms": many })).await;
    c.sync().await;
    assert_eq!(rooms_of(&t, &id), before);
    assert_onlooker_served(&t, &mut onlooker, 1).await;
    // At the bound, a join goes through; leaving them all works too.
    let hundred: Vec<String> = public[..100].to_vec();
    c.emit("join", json!({ "rooms": hundred })).await;
    c.sync().await;
    assert_eq!(rooms_of(&t, &id).len(), before.len() + 100);
    t.server
        .send(OutboundMessage::to("public-99", "deep", json!(1)))
        .await
        .unwrap();
    assert_eq!(c.expect_event("deep").await, json!(1));
    c.emit("leave", json!({ "rooms": hundred })).await;
    c.sync().await;
    assert_eq!(rooms_of(&t, &id), before);
}

#[tokio::test]
async fn long_room_names_and_a_one_mebibyte_message_do_not_harm_anyone() {
    let t = serve(seeds_stack(10_000, 10_000)).await;
    let (mut onlooker, _) = TestClient::authenticated(&t.url()).await;
    let (mut c, id) = TestClient::authenticated(&t.url()).await;
    let before = rooms_of(&t, &id);
    // A 900 kB name: under the message bound, over the 256-byte name bound: refused.
    c.emit(
        "join",
        json!({ "rooms": [format!("public-{}", "x".repeat(900_000))] }),
    )
    .await;
    c.sync().await;
    assert_eq!(rooms_of(&t, &id), before);
    // A name at the bound is fine.
    let at_bound = format!("public-{}", "x".repeat(256 - 7));
    c.emit("join", json!({ "rooms": [at_bound.clone()] })).await;
    c.sync().await;
    assert!(rooms_of(&t, &id).contains(&at_bound));
    // Over the message bound (1e6 bytes, socket.io's default): the sender's connection is
    // closed, as socket.io closes it; everyone else goes on.
    c.emit(
        "join",
        json!({ "rooms": [format!("public-{}", "x".repeat(1 << 20))] }),
    )
    .await;
    eventually("the oversized sender is gone", || {
        t.server.client(&id).is_none()
    })
    .await;
    assert_onlooker_served(&t, &mut onlooker, 1).await;
    TestClient::authenticated(&t.url()).await;
}

#[tokio::test]
async fn authenticate_with_junk_arguments_authenticates_as_usual() {
    let t = serve(seeds_stack(10_000, 10_000)).await;
    for junk in [
        Value::Null,
        json!("junk"),
        json!([1, "two", {"three": 3}]),
        json!({"token": "wrong"}),
        json!("y".repeat(50_000)),
    ] {
        let mut c = TestClient::connect(&t.url()).await;
        c.emit("authenticate", junk).await;
        c.expect_event("authenticated").await;
    }
}

#[tokio::test]
async fn unknown_events_and_room_requests_before_authentication_are_ignored() {
    let chats = Arc::new(AtomicUsize::new(0));
    let server = {
        let chats = chats.clone();
        SocketServer::builder()
            .layer(AuthLayer::new(authenticate))
            .layer(RoomsLayer::new().validate(allow_public))
            .on("sync", sync_handler)
            .on("chat", move || {
                let chats = chats.clone();
                async move {
                    chats.fetch_add(1, Ordering::SeqCst);
                }
            })
            .build()
            .unwrap()
    };
    let t = serve(server).await;
    let mut c = TestClient::connect(&t.url()).await;
    c.emit("join", json!({"rooms": ["public-a"]})).await;
    c.emit("chat", json!("before auth")).await;
    c.emit("no-such-event", json!({"x": 1})).await;
    c.emit("authenticate", json!({})).await;
    let id = c.expect_event("authenticated").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    c.emit("no-such-event", json!({"x": 2})).await;
    c.emit("chat", json!("after auth")).await;
    c.sync().await;
    assert_eq!(
        chats.load(Ordering::SeqCst),
        1,
        "only the chat after authentication reached the handler"
    );
    assert!(
        !rooms_of(&t, &id).contains(&"public-a".to_owned()),
        "the early join was ignored"
    );
}

#[tokio::test]
async fn a_panicking_authenticate_function_is_contained() {
    let server = SocketServer::builder()
        .layer(AuthLayer::new(
            |hs: Arc<socketio_stack::Handshake>| async move {
                if hs.auth_field("token") == Some("panic") {
                    panic!("authenticate bug");
                }
                authenticate(hs).await
            },
        ))
        .build()
        .unwrap();
    let t = serve(server).await;
    for _ in 0..3 {
        let mut c = connect_with_token(&t.url(), "panic").await;
        expect_refusal(
            &mut c,
            "Failed to authenticate connection! Please login again!",
        )
        .await;
    }
    // The server still serves.
    TestClient::authenticated(&t.url()).await;
}

#[tokio::test]
async fn an_authenticate_function_that_never_returns_still_meets_the_timeout() {
    let server = SocketServer::builder()
        .layer(AuthLayer::new(|_hs| {
            std::future::pending::<Result<bool, BoxError>>()
        }))
        .layer(AuthTimeoutLayer::new(Duration::from_millis(300)).unwrap())
        .build()
        .unwrap();
    let t = serve(server).await;
    let mut c = TestClient::connect(&t.url()).await;
    c.emit("authenticate", json!({})).await;
    c.emit("authenticate", json!({})).await;
    c.expect_close().await;
    eventually("the stuck client is untracked", || {
        t.server.client_count() == 0
    })
    .await;
}

/// Counts its drops: shows that a future holding it was dropped, not left pending.
struct DropCounter(Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_socket_leaving_during_authentication_is_handled() {
    let calls = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let server = {
        let (calls, dropped) = (calls.clone(), dropped.clone());
        SocketServer::builder()
            .layer(AuthLayer::new(move |_hs| {
                calls.fetch_add(1, Ordering::SeqCst);
                let guard = DropCounter(dropped.clone());
                async move {
                    let _guard = guard;
                    std::future::pending::<Result<bool, BoxError>>().await
                }
            }))
            .layer(PingLayer::new(Duration::from_millis(50)).unwrap())
            .layer(RoomsLayer::new())
            .build()
            .unwrap()
    };
    let t = serve(server).await;
    let c = TestClient::connect(&t.url()).await;
    c.emit("authenticate", json!({})).await;
    eventually("authenticate was called", || {
        calls.load(Ordering::SeqCst) == 1
    })
    .await;
    let client = t.server.clients().remove(0);
    c.disconnect().await;
    eventually("the leaver is untracked", || t.server.client_count() == 0).await;
    // The pending authentication was dropped with the socket, not left running.
    eventually("the authenticate future was dropped", || {
        dropped.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(
        client.session.state(),
        socketio_stack::ClientState::Unauthorized
    );
    assert!(client.session.timer_names().is_empty());
    assert!(client.socket.rooms().is_empty());
}

#[tokio::test]
async fn five_hundred_sockets_connecting_at_once_are_all_served() {
    let t = serve(seeds_stack(30_000, 30_000)).await;
    let url = t.url();
    let clients = futures_util::future::join_all((0..500).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { TestClient::authenticated(&url).await })
    }))
    .await;
    let mut clients: Vec<(TestClient, String)> = clients
        .into_iter()
        .map(|r| r.expect("client task"))
        .collect();
    assert_eq!(t.server.client_count(), 500);
    t.server
        .send(OutboundMessage::to("io-default", "all-500", json!(true)))
        .await
        .unwrap();
    for (c, _) in &mut clients {
        assert_eq!(
            c.next_non_ping().await,
            Received::Event("all-500".into(), json!(true))
        );
    }
    for (c, _) in &clients {
        c.disconnect().await;
    }
    eventually("every client untracked", || t.server.client_count() == 0).await;
}

/// What the server logs, captured for assertions.
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Collects what is logged on this thread, from INFO up, until the guard is dropped: on a
    /// current-thread runtime, that is what the server's tasks log too.
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Self::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    /// The WARN lines about `event`.
    fn warnings_about(&self, event: &str) -> Vec<String> {
        let log = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        log.lines()
            .filter(|l| l.contains(" WARN ") && l.contains(&format!("event={event}")))
            .map(str::to_owned)
            .collect()
    }
}

/// A raw Engine.IO v4 / Socket.IO v5 WebSocket client, connected to the namespace with the
/// token (not yet authenticated).
async fn raw_client(addr: &std::net::SocketAddr) -> RawWs {
    let mut ws = raw_ws(*addr, None).await;
    raw_ws_namespace(&mut ws, &json!({ "token": TOKEN })).await;
    ws
}

/// Emits `event` with one binary attachment: the header as a text frame, the attachment as a
/// binary frame.
async fn emit_binary(ws: &mut RawWs, event: &str, args: &str) {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::text(format!(r#"451-["{event}",{args}]"#)))
        .await
        .unwrap();
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
}

/// Emits `event` with `data`, as text.
async fn emit_text(ws: &mut RawWs, event: &str, data: Value) {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::text(format!("42{}", json!([event, data]))))
        .await
        .unwrap();
}

/// Waits for the event `name` (answering the engine's pings); panics on close.
async fn raw_expect_event(ws: &mut RawWs, name: &str) -> Value {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {name} within {WAIT:?}"))
            .unwrap_or_else(|| panic!("closed while waiting for {name}"))
            .unwrap();
        let text = msg.to_text().unwrap_or_default();
        if text == "2" {
            ws.send(Message::text("3")).await.unwrap();
        } else if let Some(event) = text.strip_prefix("42") {
            let event: Value = serde_json::from_str(event).unwrap();
            if event[0] == name {
                return event[1].clone();
            }
        } else if text.starts_with('1') || text.starts_with("41") {
            panic!("closed while waiting for {name}: {text}");
        }
    }
}

#[tokio::test]
async fn join_leave_and_authenticate_with_binary_data_are_refused_with_a_warning() {
    let (logs, _guard) = Logs::capture();
    let t = serve(seeds_stack(10_000, 10_000)).await;
    let (mut onlooker, _) = TestClient::authenticated(&t.url()).await;
    let mut c = raw_client(&t.addr).await;
    // A binary `authenticate`: its arguments are read (binary included) and not needed: the
    // token is the handshake's. It authenticates as usual, with nothing to warn about.
    emit_binary(&mut c, "authenticate", r#"{"_placeholder":true,"num":0}"#).await;
    let id = raw_expect_event(&mut c, "authenticated").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = rooms_of(&t, &id);
    emit_binary(
        &mut c,
        "join",
        r#"{"rooms":[{"_placeholder":true,"num":0}]}"#,
    )
    .await;
    emit_binary(
        &mut c,
        "leave",
        r#"{"rooms":[{"_placeholder":true,"num":0}]}"#,
    )
    .await;
    emit_text(&mut c, "sync", json!({"seq": 1})).await;
    assert_eq!(raw_expect_event(&mut c, "synced").await, json!({"seq": 1}));
    assert_eq!(rooms_of(&t, &id), before);
    assert_onlooker_served(&t, &mut onlooker, 0).await;
    // Still connected, and its text joins still go through.
    emit_text(&mut c, "join", json!({"rooms": ["public-a"]})).await;
    emit_text(&mut c, "sync", json!({"seq": 2})).await;
    assert_eq!(raw_expect_event(&mut c, "synced").await, json!({"seq": 2}));
    assert!(rooms_of(&t, &id).contains(&"public-a".to_owned()));
    // One warning for each room request, from the rooms layer, naming the event and why it
    // was refused.
    for event in ["join", "leave"] {
        let lines = logs.warnings_about(event);
        assert_eq!(lines.len(), 1, "{event}: {lines:#?}");
        // Why, as a field of the line.
        assert!(
            lines[0].contains("room request refused")
                && lines[0].contains("error=the payload carries binary data"),
            "{event}: {lines:#?}"
        );
    }
    assert_eq!(logs.warnings_about("authenticate"), Vec::<String>::new());
    // A flood of them logs a bounded number of lines: the first ten of the socket (its join
    // and leave above among them: nine `join` lines), then at most one a second. In rounds of 200 with a barrier after each, so that the socket's event
    // queue (256) never fills: every join reaches the rooms layer, and no barrier is dropped.
    let started = std::time::Instant::now();
    for round in 0..10 {
        for _ in 0..200 {
            emit_binary(
                &mut c,
                "join",
                r#"{"rooms":[{"_placeholder":true,"num":0}]}"#,
            )
            .await;
        }
        emit_text(&mut c, "sync", json!({"seq": 3 + round})).await;
        assert_eq!(
            raw_expect_event(&mut c, "synced").await,
            json!({"seq": 3 + round})
        );
    }
    let lines = logs.warnings_about("join").len();
    let seconds = started.elapsed().as_secs() as usize;
    assert!(
        (9..=10 + seconds).contains(&lines),
        "{lines} lines for 2,001 binary joins"
    );
}
