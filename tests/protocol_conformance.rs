//! Each case of the Socket.IO protocol's own test suite (`test-suite/test-suite.js` of the
//! socket.io-protocol repository), written here, against `examples/protocol_conformance.rs`
//! run as a process, with raw HTTP requests and raw WebSocket frames, as the suite sends them.
//! The suite's test names are kept in the names of the tests below.
//!
//! The official JavaScript client's side of the same server is `tests/js/conformance.test.mjs`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{ServerProcess, WAIT, example, raw_http};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

const PING_INTERVAL: Duration = Duration::from_millis(300);
const PING_TIMEOUT: Duration = Duration::from_millis(200);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn start() -> ServerProcess {
    let bin = example("protocol_conformance");
    assert!(
        bin.exists(),
        "{} missing: cargo test builds examples first",
        bin.display()
    );
    ServerProcess::start(std::process::Command::new(bin))
}

fn addr(server: &ServerProcess) -> SocketAddr {
    ([127, 0, 0, 1], server.port).into()
}

async fn http(server: &ServerProcess, method: &str, query: &str, body: &str) -> (u16, String) {
    raw_http(addr(server), method, &format!("/socket.io/{query}"), body).await
}

/// A long-polling session's id, from its open packet.
async fn polling_session(server: &ServerProcess) -> String {
    let (status, body) = http(server, "GET", "?EIO=4&transport=polling", "").await;
    assert_eq!(status, 200, "{body}");
    let open: Value = serde_json::from_str(body.strip_prefix('0').unwrap()).unwrap();
    open["sid"].as_str().unwrap().to_owned()
}

/// A WebSocket to `query`, or the refusal of its handshake.
async fn try_ws(server: &ServerProcess, query: &str) -> Result<Ws, String> {
    let url = format!("ws://{}/socket.io/{query}", addr(server));
    tokio_tungstenite::connect_async(url)
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

async fn ws(server: &ServerProcess, query: &str) -> Ws {
    try_ws(server, query).await.unwrap()
}

/// The next message, text or binary; panics on close or after [`WAIT`].
async fn next(ws: &mut Ws) -> Message {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("the connection open")
            .expect("a readable message");
        match msg {
            Message::Text(_) | Message::Binary(_) => return msg,
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

async fn next_text(ws: &mut Ws) -> String {
    match next(ws).await {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// The next message that is not a PING (`2`), as the suite's `waitForPackets`.
async fn next_non_ping(ws: &mut Ws) -> Message {
    loop {
        let msg = next(ws).await;
        if msg.to_text().ok() != Some("2") {
            return msg;
        }
    }
}

/// Waits until the server closes the connection; panics after [`WAIT`].
async fn closed(ws: &mut Ws) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => panic!("still open after {WAIT:?}"),
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return,
            Ok(Some(Ok(_))) => {}
        }
    }
}

async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
}

/// The suite's `initSocketIOConnection`: the Engine.IO open, `40`, its CONNECT, then the `auth`
/// packet, each the very next message (a PING in between would break the suite).
async fn socket_io_connection(server: &ServerProcess) -> Ws {
    let mut ws = ws(server, "?EIO=4&transport=websocket").await;
    assert!(next_text(&mut ws).await.starts_with('0'));
    send(&mut ws, "40").await;
    assert!(next_text(&mut ws).await.starts_with("40"));
    assert_eq!(next_text(&mut ws).await, r#"42["auth",{}]"#);
    ws
}

/// The open packet's fields, as the suite checks them.
fn check_open(open: &str, upgrades: &[&str]) {
    let value: Value = serde_json::from_str(open.strip_prefix('0').unwrap()).unwrap();
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "maxPayload",
            "pingInterval",
            "pingTimeout",
            "sid",
            "upgrades"
        ]
    );
    assert!(value["sid"].is_string());
    assert_eq!(value["upgrades"], serde_json::json!(upgrades));
    assert_eq!(value["pingInterval"], 300);
    assert_eq!(value["pingTimeout"], 200);
    assert_eq!(value["maxPayload"], 1_000_000);
}

/// A CONNECT answer `40<nsp>{"sid": ...}` holding the sid alone.
fn check_connect(packet: &str, prefix: &str) {
    let rest = packet
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{packet}"));
    let value: Value = serde_json::from_str(rest).unwrap();
    let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["sid"], "{packet}");
    assert!(value["sid"].is_string());
}

// Engine.IO protocol / handshake / HTTP long-polling

#[tokio::test]
async fn engine_io_handshake_polling_should_successfully_open_a_session() {
    let s = start();
    let (status, body) = http(&s, "GET", "?EIO=4&transport=polling", "").await;
    assert_eq!(status, 200);
    assert!(body.starts_with('0'), "{body}");
    check_open(&body, &["websocket"]);
}

#[tokio::test]
async fn engine_io_handshake_polling_should_fail_with_an_invalid_eio_query_parameter() {
    let s = start();
    assert_eq!(http(&s, "GET", "?transport=polling", "").await.0, 400);
    assert_eq!(
        http(&s, "GET", "?EIO=abc&transport=polling", "").await.0,
        400
    );
}

#[tokio::test]
async fn engine_io_handshake_polling_should_fail_with_an_invalid_transport_query_parameter() {
    let s = start();
    assert_eq!(http(&s, "GET", "?EIO=4", "").await.0, 400);
    assert_eq!(http(&s, "GET", "?EIO=4&transport=abc", "").await.0, 400);
}

#[tokio::test]
async fn engine_io_handshake_polling_should_fail_with_an_invalid_request_method() {
    let s = start();
    assert_eq!(
        http(&s, "POST", "?EIO=4&transport=polling", "").await.0,
        400
    );
    assert_eq!(http(&s, "PUT", "?EIO=4&transport=polling", "").await.0, 400);
}

// Engine.IO protocol / handshake / WebSocket

#[tokio::test]
async fn engine_io_handshake_websocket_should_successfully_open_a_session() {
    let s = start();
    let mut ws = ws(&s, "?EIO=4&transport=websocket").await;
    check_open(&next_text(&mut ws).await, &[]);
}

#[tokio::test]
async fn engine_io_handshake_websocket_should_fail_with_an_invalid_eio_query_parameter() {
    let s = start();
    for query in ["?transport=websocket", "?EIO=abc&transport=websocket"] {
        match try_ws(&s, query).await {
            Err(e) => assert!(e.contains("400"), "{query}: {e}"),
            Ok(mut ws) => closed(&mut ws).await,
        }
    }
}

#[tokio::test]
async fn engine_io_handshake_websocket_should_fail_with_an_invalid_transport_query_parameter() {
    let s = start();
    for query in ["?EIO=4", "?EIO=4&transport=abc"] {
        match try_ws(&s, query).await {
            Err(e) => assert!(e.contains("400"), "{query}: {e}"),
            Ok(mut ws) => closed(&mut ws).await,
        }
    }
}

// Engine.IO protocol / heartbeat

#[tokio::test]
async fn engine_io_heartbeat_polling_should_send_ping_pong_packets() {
    let s = start();
    let sid = polling_session(&s).await;
    let query = format!("?EIO=4&transport=polling&sid={sid}");
    for _ in 0..3 {
        assert_eq!(http(&s, "GET", &query, "").await, (200, "2".to_owned()));
        assert_eq!(http(&s, "POST", &query, "3").await.0, 200);
    }
}

#[tokio::test]
async fn engine_io_heartbeat_polling_should_close_the_session_upon_ping_timeout() {
    let s = start();
    let sid = polling_session(&s).await;
    // The suite waits pingInterval + pingTimeout; a margin for slow machines.
    tokio::time::sleep(PING_INTERVAL + PING_TIMEOUT + Duration::from_millis(500)).await;
    let query = format!("?EIO=4&transport=polling&sid={sid}");
    assert_eq!(http(&s, "GET", &query, "").await.0, 400);
}

#[tokio::test]
async fn engine_io_heartbeat_websocket_should_send_ping_pong_packets() {
    let s = start();
    let mut ws = ws(&s, "?EIO=4&transport=websocket").await;
    next_text(&mut ws).await;
    let opened = Instant::now();
    for i in 0..3 {
        assert_eq!(next_text(&mut ws).await, "2");
        if i == 0 {
            // As the protocol's reference server: the first PING one interval after the open
            // packet (engineioxide alone sends it at once; see src/first_ping.rs).
            let after = opened.elapsed();
            assert!(
                after >= PING_INTERVAL - Duration::from_millis(50),
                "first PING after {after:?}"
            );
        }
        send(&mut ws, "3").await;
    }
}

#[tokio::test]
async fn engine_io_heartbeat_websocket_should_close_the_session_upon_ping_timeout() {
    let s = start();
    let mut ws = ws(&s, "?EIO=4&transport=websocket").await;
    closed(&mut ws).await;
}

// Engine.IO protocol / close

#[tokio::test]
async fn engine_io_close_polling_should_forcefully_close_the_session() {
    let s = start();
    let sid = polling_session(&s).await;
    let query = format!("?EIO=4&transport=polling&sid={sid}");
    // The first poll takes the PING that engineioxide queues at once; the next one waits.
    assert_eq!(http(&s, "GET", &query, "").await, (200, "2".to_owned()));
    let (poll, push) = tokio::join!(http(&s, "GET", &query, ""), async {
        // After the poll is waiting, as in the suite where both go at once.
        tokio::time::sleep(Duration::from_millis(50)).await;
        http(&s, "POST", &query, "1").await
    });
    assert_eq!(push.0, 200);
    assert_eq!(poll, (200, "6".to_owned()));
    assert_eq!(http(&s, "GET", &query, "").await.0, 400);
}

#[tokio::test]
async fn engine_io_close_websocket_should_forcefully_close_the_session() {
    let s = start();
    let mut ws = ws(&s, "?EIO=4&transport=websocket").await;
    next_text(&mut ws).await;
    send(&mut ws, "1").await;
    closed(&mut ws).await;
}

// Engine.IO protocol / upgrade

/// A long-polling session upgraded to a WebSocket: probe, its answer, then `5`.
async fn upgraded(s: &ServerProcess) -> (String, Ws) {
    let sid = polling_session(s).await;
    let mut ws = ws(s, &format!("?EIO=4&transport=websocket&sid={sid}")).await;
    send(&mut ws, "2probe").await;
    assert_eq!(next_text(&mut ws).await, "3probe");
    send(&mut ws, "5").await;
    (sid, ws)
}

#[tokio::test]
async fn engine_io_upgrade_should_successfully_upgrade_from_polling_to_websocket() {
    let s = start();
    let (_, mut ws) = upgraded(&s).await;
    // The session lives on over the WebSocket: it is pinged there and answers.
    assert_eq!(next_text(&mut ws).await, "2");
    send(&mut ws, "3").await;
}

#[tokio::test]
async fn engine_io_upgrade_should_ignore_http_requests_with_same_sid_after_upgrade() {
    let s = start();
    let (sid, _ws) = upgraded(&s).await;
    let query = format!("?EIO=4&transport=polling&sid={sid}");
    // The upgrade completes on the server as it reads `5`; until then a poll is still served.
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, _) = http(&s, "GET", &query, "").await;
        if status == 400 {
            break;
        }
        assert!(Instant::now() < deadline, "polling still served: {status}");
    }
}

#[tokio::test]
async fn engine_io_upgrade_should_ignore_websocket_connection_with_same_sid_after_upgrade() {
    let s = start();
    let (sid, _ws) = upgraded(&s).await;
    match try_ws(&s, &format!("?EIO=4&transport=websocket&sid={sid}")).await {
        Err(e) => assert!(e.contains("400"), "{e}"),
        Ok(mut second) => closed(&mut second).await,
    }
}

// Socket.IO protocol / connect

#[tokio::test]
async fn socket_io_connect_should_allow_connection_to_the_main_namespace() {
    let s = start();
    let mut ws = ws(&s, "?EIO=4&transport=websocket").await;
    next_text(&mut ws).await;
    send(&mut ws, "40").await;
    check_connect(&next_text(&mut ws).await, "40");
    assert_eq!(next_text(&mut ws).await, r#"42["auth",{}]"#);
}

#[tokio::test]
async fn socket_io_connect_should_allow_connection_to_the_main_namespace_with_a_payload() {
    let s = start();
    let mut ws = ws(&s, "?EIO=4&transport=websocket").await;
    next_text(&mut ws).await;
    send(&mut ws, r#"40{"token":"123"}"#).await;
    check_connect(&next_text(&mut ws).await, "40");
    assert_eq!(next_text(&mut ws).await, r#"42["auth",{"token":"123"}]"#);
}

#[tokio::test]
async fn socket_io_connect_should_allow_connection_to_a_custom_namespace() {
    let s = start();
    let mut ws = ws(&s, "?EIO=4&transport=websocket").await;
    next_text(&mut ws).await;
    send(&mut ws, "40/custom,").await;
    check_connect(&next_text(&mut ws).await, "40/custom,");
    assert_eq!(next_text(&mut ws).await, r#"42/custom,["auth",{}]"#);
}

#[tokio::test]
async fn socket_io_connect_should_allow_connection_to_a_custom_namespace_with_a_payload() {
    let s = start();
    let mut ws = ws(&s, "?EIO=4&transport=websocket").await;
    next_text(&mut ws).await;
    send(&mut ws, r#"40/custom,{"token":"abc"}"#).await;
    check_connect(&next_text(&mut ws).await, "40/custom,");
    assert_eq!(
        next_text(&mut ws).await,
        r#"42/custom,["auth",{"token":"abc"}]"#
    );
}

#[tokio::test]
async fn socket_io_connect_should_disallow_connection_to_an_unknown_namespace() {
    let s = start();
    let mut ws = ws(&s, "?EIO=4&transport=websocket").await;
    next_text(&mut ws).await;
    send(&mut ws, "40/random").await;
    assert_eq!(
        next_text(&mut ws).await,
        r#"44/random,{"message":"Invalid namespace"}"#
    );
}

#[tokio::test]
async fn socket_io_connect_should_disallow_connection_with_an_invalid_handshake() {
    let s = start();
    let mut ws = ws(&s, "?EIO=4&transport=websocket").await;
    next_text(&mut ws).await;
    send(&mut ws, "4abc").await;
    closed(&mut ws).await;
}

#[tokio::test]
async fn socket_io_connect_should_close_the_connection_if_no_handshake_is_received() {
    let s = start();
    let mut ws = ws(&s, "?EIO=4&transport=websocket").await;
    next_text(&mut ws).await;
    let started = Instant::now();
    // Answering every PING: what closes it is the connect timeout (1 s), not the heartbeat.
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Err(_) => panic!("still open after {WAIT:?}"),
            Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "2" => send(&mut ws, "3").await,
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => break,
            Ok(Some(Ok(_))) => {}
        }
    }
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(5),
        "closed after {after:?}"
    );
}

// Socket.IO protocol / disconnect

#[tokio::test]
async fn socket_io_disconnect_should_disconnect_from_the_main_namespace() {
    let s = start();
    let mut ws = socket_io_connection(&s).await;
    send(&mut ws, "41").await;
    // Nothing answers the DISCONNECT: the next packet is the engine's PING.
    assert_eq!(next_text(&mut ws).await, "2");
}

#[tokio::test]
async fn socket_io_disconnect_should_connect_then_disconnect_from_a_custom_namespace() {
    let s = start();
    let mut ws = socket_io_connection(&s).await;
    assert_eq!(next_text(&mut ws).await, "2");
    send(&mut ws, "40/custom").await;
    check_connect(&next_text(&mut ws).await, "40/custom,");
    assert_eq!(next_text(&mut ws).await, r#"42/custom,["auth",{}]"#);
    send(&mut ws, "41/custom").await;
    send(&mut ws, r#"42["message","message to main namespace"]"#).await;
    assert_eq!(
        next_text(&mut ws).await,
        r#"42["message-back","message to main namespace"]"#
    );
}

// Socket.IO protocol / message

#[tokio::test]
async fn socket_io_message_should_send_a_plain_text_packet() {
    let s = start();
    let mut ws = socket_io_connection(&s).await;
    send(&mut ws, r#"42["message",1,"2",{"3":[true]}]"#).await;
    assert_eq!(
        next_text(&mut ws).await,
        r#"42["message-back",1,"2",{"3":[true]}]"#
    );
}

/// The suite's two attachments, `[1, 2, 3]` and `[4, 5, 6]`.
fn attachments() -> [Vec<u8>; 2] {
    [vec![1, 2, 3], vec![4, 5, 6]]
}

/// Sends a binary packet: its header, then each attachment as a binary frame.
async fn send_binary(ws: &mut Ws, header: &str, attachments: &[Vec<u8>]) {
    send(ws, header).await;
    for bin in attachments {
        ws.send(Message::binary(bin.clone())).await.unwrap();
    }
}

/// Expects a binary packet (PINGs aside): `header`, then each attachment.
async fn expect_binary(ws: &mut Ws, header: &str, attachments: &[Vec<u8>]) {
    assert_eq!(next_non_ping(ws).await, Message::text(header));
    for bin in attachments {
        assert_eq!(next_non_ping(ws).await, Message::binary(bin.clone()));
    }
}

#[tokio::test]
async fn socket_io_message_should_send_a_packet_with_binary_attachments() {
    let s = start();
    let mut ws = socket_io_connection(&s).await;
    send_binary(
        &mut ws,
        r#"452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
        &attachments(),
    )
    .await;
    expect_binary(
        &mut ws,
        r#"452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
        &attachments(),
    )
    .await;
}

#[tokio::test]
async fn socket_io_message_should_send_a_plain_text_packet_with_an_ack() {
    let s = start();
    let mut ws = socket_io_connection(&s).await;
    send(&mut ws, r#"42456["message-with-ack",1,"2",{"3":[false]}]"#).await;
    assert_eq!(next_text(&mut ws).await, r#"43456[1,"2",{"3":[false]}]"#);
}

#[tokio::test]
async fn socket_io_message_should_send_a_packet_with_binary_attachments_and_an_ack() {
    let s = start();
    let mut ws = socket_io_connection(&s).await;
    send_binary(
        &mut ws,
        r#"452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
        &attachments(),
    )
    .await;
    expect_binary(
        &mut ws,
        r#"462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
        &attachments(),
    )
    .await;
}

#[tokio::test]
async fn socket_io_message_should_close_the_connection_upon_invalid_format_unknown_packet_type() {
    let s = start();
    let mut ws = socket_io_connection(&s).await;
    send(&mut ws, "4abc").await;
    closed(&mut ws).await;
}

#[tokio::test]
async fn socket_io_message_should_close_the_connection_upon_invalid_format_invalid_payload_format()
{
    let s = start();
    let mut ws = socket_io_connection(&s).await;
    send(&mut ws, "42{}").await;
    closed(&mut ws).await;
}

#[tokio::test]
async fn socket_io_message_should_close_the_connection_upon_invalid_format_invalid_ack_id() {
    let s = start();
    let mut ws = socket_io_connection(&s).await;
    send(&mut ws, r#"42abc["message-with-ack",1,"2",{"3":[false]}]"#).await;
    closed(&mut ws).await;
}

// Beyond the suite: the same echo with binary data nested in objects and arrays, mixed with
// text, and with no argument at all.

#[tokio::test]
async fn nested_binary_and_no_arguments_come_back_as_sent() {
    let s = start();
    let mut ws = socket_io_connection(&s).await;
    send_binary(
        &mut ws,
        r#"451-["message","text",{"file":{"_placeholder":true,"num":0},"list":[1,{"deep":[true]}]},[null,"x"]]"#,
        &[vec![0, 255, 7]],
    )
    .await;
    expect_binary(
        &mut ws,
        r#"451-["message-back","text",{"file":{"_placeholder":true,"num":0},"list":[1,{"deep":[true]}]},[null,"x"]]"#,
        &[vec![0, 255, 7]],
    )
    .await;
    send(&mut ws, r#"42["message"]"#).await;
    assert_eq!(
        next_non_ping(&mut ws).await,
        Message::text(r#"42["message-back"]"#)
    );
    send(&mut ws, r#"4212["message-with-ack"]"#).await;
    assert_eq!(next_non_ping(&mut ws).await, Message::text("4312[]"));
}
