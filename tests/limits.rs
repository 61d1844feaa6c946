//! Limits against a real server: one client flooding must not hurt the others.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use socketio_stack::client::{ClientOptions, SocketClient};
use socketio_stack::layers::event_rate_limit::{Bucket, EventRateLimitLayer, ExcessPolicy};
use socketio_stack::layers::{AuthLayer, RoomsLayer};
use socketio_stack::serve::{ServeConfig, bind, raise_open_file_limit, serve_until};
use socketio_stack::{OutboundMessage, SocketServer};
use tokio::sync::mpsc;

fn server(policy: ExcessPolicy, handled: Arc<AtomicUsize>) -> SocketServer {
    SocketServer::builder()
        .layer(
            EventRateLimitLayer::default()
                .events(Bucket::new(100.0, 200).unwrap())
                .policy(policy),
        )
        .layer(AuthLayer::new(authenticate))
        .layer(RoomsLayer::new().validate(allow_public))
        .on("sync", sync_handler)
        .on("flood", move || {
            let handled = handled.clone();
            async move {
                handled.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .unwrap()
}

/// A client of the crate's own, authenticated, reporting `rate_limited` and disconnects.
async fn flooder(t: &TestServer) -> (SocketClient, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (a, b) = (tx.clone(), tx.clone());
    let client = SocketClient::builder("flooder", format!("http://{}", t.addr))
        .options(ClientOptions {
            auth: Some(json!({ "token": TOKEN })),
            reconnection: false,
            ..Default::default()
        })
        .on_connected(|c| async move { c.authenticate() })
        .on_authenticated(move |_| {
            a.send("authenticated".to_owned()).ok();
            async {}
        })
        .on_disconnected(move |_, reason| {
            b.send(format!("disconnected:{reason}")).ok();
            async {}
        })
        .build()
        .unwrap();
    client.subscribe("rate_limited", move |data| {
        tx.send(format!("rate_limited:{}", data["message"])).ok();
        async {}
    });
    (client, rx)
}

async fn expect(rx: &mut mpsc::UnboundedReceiver<String>, prefix: &str) -> String {
    loop {
        let line = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("in time")
            .expect("open");
        if line.starts_with(prefix) {
            return line;
        }
    }
}

#[tokio::test]
async fn a_flood_of_50000_events_is_cut_to_the_rate_and_others_are_served() {
    let handled = Arc::new(AtomicUsize::new(0));
    let t = serve(server(ExcessPolicy::Drop, handled.clone())).await;
    let (mut other, _) = TestClient::authenticated(&t.url()).await;
    let (flood, mut seen) = flooder(&t).await;
    expect(&mut seen, "authenticated").await;
    let started = Instant::now();
    for n in 0..50_000 {
        flood.emit("flood", &json!(n)).unwrap();
    }
    // Another client's round trip goes through while the flood is being cut.
    other.sync().await;
    eventually("the burst went through", || {
        handled.load(Ordering::SeqCst) >= 200
    })
    .await;
    // Checked after the fact: whatever was handled by now fits in burst + rate x time.
    let elapsed = started.elapsed().as_secs_f64();
    let bound = 200.0 + 100.0 * elapsed + 5.0;
    let got = handled.load(Ordering::SeqCst) as f64;
    assert!(
        got <= bound,
        "{got} events handled in {elapsed:.2} s, bound {bound:.0}"
    );
    assert!(flood.is_connected(), "the drop policy keeps the client");
    flood.shutdown().await;
}

#[tokio::test]
async fn the_disconnect_policy_tells_the_flooder_and_drops_it() {
    let handled = Arc::new(AtomicUsize::new(0));
    let t = serve(server(ExcessPolicy::Disconnect, handled.clone())).await;
    let (mut other, _) = TestClient::authenticated(&t.url()).await;
    let (flood, mut seen) = flooder(&t).await;
    expect(&mut seen, "authenticated").await;
    for n in 0..5_000 {
        if flood.emit("flood", &json!(n)).is_err() {
            break;
        }
    }
    let told = expect(&mut seen, "rate_limited").await;
    assert!(told.contains("rate limit"), "{told}");
    // Usually the DISCONNECT itself. socketioxide closes the whole connection at a packet for
    // the socket it has just removed from the namespace (Node ignores such a packet), and a
    // flooder is still sending: the close may then reach it before the DISCONNECT does.
    let disconnected = expect(&mut seen, "disconnected").await;
    assert!(
        [
            "disconnected:io server disconnect",
            "disconnected:transport close",
            "disconnected:transport error"
        ]
        .contains(&disconnected.as_str()),
        "{disconnected}"
    );
    other.sync().await;
    eventually("only the other client is left", || {
        t.server.client_count() == 1
    })
    .await;
    flood.shutdown().await;
}

/// The seeds' stack served by the crate's `serve_until` with `config`; its address.
async fn serve_bounded(config: ServeConfig) -> (std::net::SocketAddr, SocketServer) {
    let server = seeds_stack(10_000, 10_000);
    let listener = bind("127.0.0.1:0".parse().unwrap(), config.backlog).unwrap();
    let addr = listener.local_addr().unwrap();
    let service = server.service();
    tokio::spawn(serve_until(
        listener,
        service,
        config,
        std::future::pending::<()>(),
    ));
    (addr, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_silent_or_half_open_connections_are_closed_by_the_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // 2,000 connections are 4,000 descriptors here: both ends live in this process.
    raise_open_file_limit().unwrap();
    let deadline = std::time::Duration::from_millis(300);
    let (addr, _server) = serve_bounded(ServeConfig {
        header_read_timeout: deadline,
        ..ServeConfig::default()
    })
    .await;
    let started = Instant::now();
    let mut idle = Vec::new();
    for n in 0..2000 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        if n % 2 == 1 {
            stream
                .write_all(b"GET /io/?EIO=4&transport=polling HTTP/1.1\r\nhost: x\r\n")
                .await
                .unwrap();
        }
        idle.push(stream);
    }
    // A normal client is served meanwhile.
    let url = format!("http://{addr}/io/");
    let (mut normal, _) = TestClient::authenticated(&url).await;
    normal.sync().await;
    // Every idle connection is closed by the server: EOF, within the deadline and a margin.
    let closed = futures_util::future::join_all(idle.into_iter().map(|mut s| async move {
        let mut buf = [0u8; 64];
        tokio::time::timeout(WAIT, s.read(&mut buf)).await
    }))
    .await;
    let elapsed = started.elapsed();
    for result in closed {
        let read = result.expect("closed within the wait");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    assert!(elapsed < WAIT, "{elapsed:?}");
    // The normal client outlived the deadline.
    normal.sync().await;
}

#[tokio::test]
async fn past_the_connection_cap_new_connections_get_a_503_not_a_hang() {
    use tokio::io::AsyncReadExt;
    let (addr, _server) = serve_bounded(ServeConfig {
        max_connections: Some(3),
        ..ServeConfig::default()
    })
    .await;
    let held: Vec<_> =
        futures_util::future::join_all((0..3).map(|_| tokio::net::TcpStream::connect(addr)))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    // The accept loop counts connections as it accepts them: wait until it has these three.
    let mut answer = String::new();
    let deadline = Instant::now() + WAIT;
    while !answer.starts_with("HTTP/1.1 503") {
        assert!(Instant::now() < deadline, "no 503 past the cap");
        let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
        answer.clear();
        tokio::time::timeout(WAIT, extra.read_to_string(&mut answer))
            .await
            .unwrap()
            .ok();
    }
    assert!(answer.ends_with("too many connections"), "{answer}");
    drop(held);
    // Room again once they are gone.
    let deadline = Instant::now() + WAIT;
    loop {
        let ok = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            let resp = reqwest_lite(addr).await;
            resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.1 404")
        })
        .await
        .unwrap_or(false);
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no room after the held connections closed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A raw Socket.IO WebSocket client, its Engine.IO open packet read: the upgrade is done.
async fn websocket_opened(
    addr: std::net::SocketAddr,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::Error,
> {
    use futures_util::StreamExt;
    let url = format!("ws://{addr}/io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    let open = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("the open packet in time")
        .expect("the open packet")?;
    assert!(open.to_text().unwrap().starts_with("0{"), "{open:?}");
    Ok(ws)
}

#[tokio::test]
async fn websockets_count_against_the_connection_cap_until_they_close() {
    use tokio::io::AsyncReadExt;
    let (addr, _server) = serve_bounded(ServeConfig {
        max_connections: Some(2),
        ..ServeConfig::default()
    })
    .await;
    let first = websocket_opened(addr).await.unwrap();
    let _second = websocket_opened(addr).await.unwrap();
    // Upgraded, they have left hyper's connection: still, a third connection is refused,
    // and stays refused while they are open.
    for attempt in 0..10 {
        let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(2), extra.read_to_string(&mut answer))
            .await
            .ok();
        assert!(
            answer.starts_with("HTTP/1.1 503"),
            "attempt {attempt}: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Once one of them closes, a new client is served.
    drop(first);
    let deadline = Instant::now() + WAIT;
    while websocket_opened(addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "no room after a WebSocket closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plain HTTP GET of `/` (answered 404 by the standalone service): the status line.
async fn reqwest_lite(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .ok();
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok();
    out
}

/// This process's resident memory, in bytes.
fn resident_bytes() -> u64 {
    let pages: u64 = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_costs_bounded_memory_and_delays_nobody() {
    let t = serve(seeds_stack(60_000, 60_000)).await;
    let (mut reader, _) = TestClient::authenticated(&t.url()).await;
    let slow = never_reading_client(&t.addr).await;
    eventually("both authenticated", || authenticated(&t.server) == 2).await;

    let before = resident_bytes();
    let payload = "x".repeat(1024);
    for n in 0..10_000u64 {
        t.server
            .send(OutboundMessage::to(
                "io-default",
                "bulk",
                json!({ "n": n, "pad": payload }),
            ))
            .await
            .unwrap();
    }
    // The reading client gets every one of them, in order.
    for n in 0..10_000u64 {
        let data = reader.expect_event("bulk").await;
        assert_eq!(data["n"], n);
    }
    let grown = resident_bytes().saturating_sub(before);
    // 10,000 x 1 KiB sent to a client that reads nothing: what waits for it is bounded by
    // its write buffer (4096 packets), not by what was sent.
    assert!(
        grown < 64 << 20,
        "resident memory grew by {} MiB",
        grown >> 20
    );
    drop(slow);
}

/// How many of `server`'s clients are authenticated.
fn authenticated(server: &SocketServer) -> usize {
    server
        .clients()
        .iter()
        .filter(|c| c.state() == socketio_stack::ClientState::Authenticated)
        .count()
}

/// A raw WebSocket client that authenticates, then never reads again.
async fn never_reading_client(addr: &std::net::SocketAddr) -> RawWs {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut slow = raw_ws(*addr, None).await;
    raw_ws_namespace(&mut slow, &json!({ "token": TOKEN })).await;
    slow.send(Message::text(r#"42["authenticate"]"#))
        .await
        .unwrap();
    slow
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_by_the_write_timeout() {
    // The default heartbeat (25 s + 20 s) is far off: what ends the slow client here is the
    // 300 ms write timeout, once the kernel's socket buffers are full.
    let config = ServeConfig {
        write_timeout: Some(Duration::from_millis(300)),
        ..ServeConfig::default()
    };
    let (addr, server) = serve_bounded(config).await;
    let url = format!("http://{addr}/io");
    let (mut reader, _) = TestClient::authenticated(&url).await;
    let slow = never_reading_client(&addr).await;
    eventually("both authenticated", || authenticated(&server) == 2).await;

    // 1,500 x 16 KiB = 24 MiB, more than loopback's socket buffers hold: the writes to the
    // slow client block. Half are volatile: a client that cannot take them misses them.
    let payload = "x".repeat(16 * 1024);
    let started = Instant::now();
    for n in 0..1_500u64 {
        let req = OutboundMessage::to("io-default", "bulk", json!({ "n": n, "pad": payload }));
        let req = if n % 2 == 0 { req.volatile() } else { req };
        server.send(req).await.unwrap();
    }
    // Its connection is shut down, its session ends, it is untracked.
    eventually("the slow client is untracked", || {
        server.client_count() == 1
    })
    .await;
    let cut_off_after = started.elapsed();
    // Well before the heartbeat's 45 s; the time includes the 24 MiB of sends themselves
    // (6 s once, from a debug build beside the other tests of this file).
    assert!(cut_off_after < Duration::from_secs(15), "{cut_off_after:?}");
    // The reader is still served, after everything sent before.
    server
        .send(OutboundMessage::to(
            "io-default",
            "after",
            json!({"ok": true}),
        ))
        .await
        .unwrap();
    assert_eq!(reader.expect_event("after").await, json!({"ok": true}));
    drop(slow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_a_fan_out_loses_nothing_sent_before_it() {
    let t = serve(seeds_stack(60_000, 60_000)).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(TestClient::authenticated(&t.url()).await.0);
    }
    for n in 0..2_000u64 {
        t.server
            .send(OutboundMessage::to("io-default", "seq", json!({ "n": n })))
            .await
            .unwrap();
    }
    t.server.shutdown().await;
    // Each client got every message sent before the shutdown, in order, then the disconnect.
    for c in &mut clients {
        for n in 0..2_000u64 {
            match c.next_non_ping().await {
                Received::Event(name, data) if name == "seq" => assert_eq!(data["n"], n),
                other => panic!("message {n}: got {other:?}"),
            }
        }
        assert_eq!(c.next_non_ping().await, Received::Close);
    }
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
const H2_EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];

/// One HTTP/2 frame, as a raw client reads it.
struct Frame {
    kind: u8,
    flags: u8,
    payload: Vec<u8>,
}

/// The next frame from the server; `None` once it has closed the connection.
async fn read_frame(s: &mut tokio::net::TcpStream) -> Option<Frame> {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0; len];
    s.read_exact(&mut payload).await.ok()?;
    Some(Frame {
        kind: head[3],
        flags: head[4],
        payload,
    })
}

/// A raw h2c connection: the preface and an empty SETTINGS sent, the server's SETTINGS read
/// (so hyper serves it, and it counts against the cap).
async fn h2c_connect(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&[H2_PREFACE, &H2_EMPTY_SETTINGS].concat())
        .await
        .unwrap();
    loop {
        let frame = tokio::time::timeout(WAIT, read_frame(&mut s))
            .await
            .expect("the server's SETTINGS in time")
            .expect("the server's SETTINGS");
        if frame.kind == 4 && frame.flags & 1 == 0 {
            return s;
        }
    }
}

/// What an idle h2c client saw before the server closed its connection.
#[derive(Debug, Default)]
struct H2Closed {
    goaway: bool,
    pings: usize,
}

/// Reads frames until the server closes the connection. With `answer`, ACKs every SETTINGS
/// and PING, as a live peer does; without, sends nothing at all.
async fn h2c_until_closed(mut s: tokio::net::TcpStream, answer: bool) -> H2Closed {
    use tokio::io::AsyncWriteExt;
    let mut seen = H2Closed::default();
    while let Some(frame) = read_frame(&mut s).await {
        let ack = match frame.kind {
            4 if frame.flags & 1 == 0 => vec![0, 0, 0, 4, 1, 0, 0, 0, 0],
            6 if frame.flags & 1 == 0 => {
                seen.pings += 1;
                [&[0, 0, 8, 6, 1, 0, 0, 0, 0][..], &frame.payload].concat()
            }
            7 => {
                seen.goaway = true;
                continue;
            }
            _ => continue,
        };
        if answer && s.write_all(&ack).await.is_err() {
            break;
        }
    }
    seen
}

/// Four idle h2c connections on a server capped at four: each is closed by the idle deadline
/// (GOAWAY, then EOF), and then a fifth, normal client is served.
async fn four_idle_h2c_connections(answer: bool, http2_keep_alive: Option<Duration>) {
    let idle = Duration::from_millis(300);
    let (addr, _server) = serve_bounded(ServeConfig {
        max_connections: Some(4),
        idle_timeout: idle,
        http2_keep_alive,
        ..ServeConfig::default()
    })
    .await;
    let started = Instant::now();
    let conns = futures_util::future::join_all((0..4).map(|_| h2c_connect(addr))).await;
    let closed = tokio::time::timeout(
        WAIT,
        futures_util::future::join_all(conns.into_iter().map(|s| h2c_until_closed(s, answer))),
    )
    .await
    .expect("every idle connection closed within the wait");
    let elapsed = started.elapsed();
    eprintln!("4 idle h2c connections (answering: {answer}) closed after {elapsed:?}: {closed:?}");
    for seen in &closed {
        assert!(seen.goaway, "closed gracefully: {seen:?}");
        if answer && http2_keep_alive.is_some() {
            assert!(
                seen.pings > 0,
                "the server's keep-alive PINGs were answered: {seen:?}"
            );
        }
    }
    // At most twice the deadline (idle, then the GOAWAY's grace), with a generous margin.
    assert!(elapsed < 2 * idle + WAIT / 2, "{elapsed:?}");
    // Each one's slot is free once its socket is closed: the fifth client is served at once.
    let resp = reqwest_lite(addr).await;
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_h2c_connections_are_closed_by_the_idle_deadline_and_free_the_cap() {
    four_idle_h2c_connections(false, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_connections_answering_pings_are_still_closed_by_the_idle_deadline() {
    four_idle_h2c_connections(true, Some(Duration::from_millis(100))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_h2c_peer_is_found_dead_by_the_keep_alive() {
    // The idle deadline is far off: what closes it is the unanswered PING.
    let (addr, _server) = serve_bounded(ServeConfig {
        idle_timeout: Duration::from_secs(60),
        http2_keep_alive: Some(Duration::from_millis(100)),
        ..ServeConfig::default()
    })
    .await;
    let s = h2c_connect(addr).await;
    let seen = tokio::time::timeout(WAIT, h2c_until_closed(s, false))
        .await
        .expect("closed within the wait");
    assert!(seen.pings > 0, "{seen:?}");
}

/// Sends an HTTP/1.1 request on `s` and reads its response head and `content-length` body.
async fn http1_exchange(s: &mut tokio::net::TcpStream, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")?
                        .trim()
                        .parse()
                        .ok()
                })
                .unwrap_or(0);
            if body.len() >= len {
                return text;
            }
        }
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed mid-response: {text}");
        got.extend_from_slice(&buf[..n]);
    }
}

/// An Engine.IO polling POST of `body` to session `sid`, on a connection of its own: the
/// response.
async fn post_packet(addr: std::net::SocketAddr, sid: &str, body: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nhost: x\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    http1_exchange(&mut s, &request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_in_flight_is_not_cut_by_the_idle_deadline() {
    let idle = Duration::from_millis(300);
    let (addr, _server) = serve_bounded(ServeConfig {
        idle_timeout: idle,
        ..ServeConfig::default()
    })
    .await;
    let mut poll = tokio::net::TcpStream::connect(addr).await.unwrap();
    let open = http1_exchange(
        &mut poll,
        "GET /io/?EIO=4&transport=polling HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    let sid = open
        .split_once(r#""sid":""#)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(sid, _)| sid.to_owned())
        .unwrap_or_else(|| panic!("no sid in {open}"));
    // The next GET is held until the server has a packet for it: a request in flight.
    // (engineioxide pings at once after the open: that one is answered with a pong first.)
    let held = loop {
        let pending =
            format!("GET /io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nhost: x\r\n\r\n");
        let mut held = tokio::spawn(async move {
            let resp = http1_exchange(&mut poll, &pending).await;
            (resp, poll)
        });
        // Five idle deadlines pass with the poll held, and its connection stays open.
        let Ok(ended) = tokio::time::timeout(5 * idle, &mut held).await else {
            break held;
        };
        let (resp, back) = ended.unwrap();
        assert!(resp.ends_with("\r\n\r\n2"), "the held poll ended: {resp}");
        poll = back;
        let pong = post_packet(addr, &sid, "3").await;
        assert!(pong.starts_with("HTTP/1.1 200"), "{pong}");
    };
    // The CONNECT, posted on another connection, is what answers it.
    let posted = post_packet(addr, &sid, &format!(r#"40{{"token":"{TOKEN}"}}"#)).await;
    assert!(posted.starts_with("HTTP/1.1 200"), "{posted}");
    let (resp, mut poll) = tokio::time::timeout(WAIT, held).await.unwrap().unwrap();
    assert!(
        resp.starts_with("HTTP/1.1 200") && resp.contains("40{"),
        "{resp}"
    );
    // Idle again, the connection is closed.
    use tokio::io::AsyncReadExt;
    let mut rest = [0u8; 64];
    let read = tokio::time::timeout(WAIT, poll.read(&mut rest))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

/// Sends `request` raw and reads what comes back until the server closes the connection (a
/// reset after the answer, as when the server closes with the rest of a big head unread,
/// ends it too).
async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.ok();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n @ 1..)) = tokio::time::timeout(WAIT, s.read(&mut buf)).await {
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn an_http1_request_head_over_the_bound_gets_431() {
    let (addr, _server) = serve_bounded(ServeConfig::default()).await;
    let request = |pad: usize| {
        format!(
            "GET / HTTP/1.1\r\nhost: x\r\nx-pad: {}\r\nconnection: close\r\n\r\n",
            "a".repeat(pad)
        )
    };
    let small = raw_exchange(addr, request(10_000).as_bytes()).await;
    assert!(small.starts_with("HTTP/1.1 404"), "{small}");
    let big = raw_exchange(addr, request(20_000).as_bytes()).await;
    assert!(big.starts_with("HTTP/1.1 431"), "{big}");
}

/// An HPACK string literal, not Huffman-coded: its length (7-bit prefix) and bytes.
fn hpack_str(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if s.len() < 127 {
        out.push(s.len() as u8);
    } else {
        out.push(127);
        let mut rest = s.len() - 127;
        while rest >= 128 {
            out.push((rest % 128) as u8 | 0x80);
            rest /= 128;
        }
        out.push(rest as u8);
    }
    out.extend_from_slice(s);
    out
}

/// An HTTP/2 frame of `kind` with `flags` on stream 1.
fn h2_frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    [
        &[len[1], len[2], len[3], kind, flags, 0, 0, 0, 1][..],
        payload,
    ]
    .concat()
}

/// The header block of the server's first HEADERS frame for `GET /` with an `x-pad` header of
/// `pad` bytes, sent on a raw h2c connection.
async fn h2_get_with_pad(addr: std::net::SocketAddr, pad: usize) -> Vec<u8> {
    use tokio::io::AsyncWriteExt;
    let mut s = h2c_connect(addr).await;
    // :method GET, :scheme http, :path / (static table), :authority x, then x-pad.
    let mut block = vec![0x82, 0x86, 0x84, 0x41];
    block.extend(hpack_str(b"x"));
    block.push(0x00);
    block.extend(hpack_str(b"x-pad"));
    block.extend(hpack_str(&vec![b'a'; pad]));
    // Frames carry at most 16 KiB: the rest of the block goes in CONTINUATION frames.
    let mut chunks = block.chunks(16_384).peekable();
    let mut frames = h2_frame(1, 0x1, chunks.next().unwrap());
    if chunks.peek().is_none() {
        frames[4] |= 0x4;
    }
    while let Some(chunk) = chunks.next() {
        let end = if chunks.peek().is_none() { 0x4 } else { 0 };
        frames.extend(h2_frame(9, end, chunk));
    }
    s.write_all(&frames).await.unwrap();
    loop {
        let frame = tokio::time::timeout(WAIT, read_frame(&mut s))
            .await
            .expect("an answer in time")
            .expect("an answer before the close");
        if frame.kind == 1 {
            return frame.payload;
        }
    }
}

#[tokio::test]
async fn an_http2_request_head_over_the_bound_gets_431() {
    let (addr, _server) = serve_bounded(ServeConfig::default()).await;
    // 404 is entry 13 of HPACK's static table.
    let small = h2_get_with_pad(addr, 10_000).await;
    assert_eq!(small.first(), Some(&0x8d), "{small:x?}");
    // 431 is not in it: `:status` (entry 8) with the Huffman-coded literal "431".
    let big = h2_get_with_pad(addr, 20_000).await;
    assert!(
        big.get(1..5) == Some(&[0x83, 0x69, 0x90, 0xff][..]),
        "{:x?}",
        &big[..big.len().min(8)]
    );
}

/// A server mounted with `axum::serve` (no write timeout of its own), whose engine heartbeat
/// is short, and whose WebSocket writes may stall `write_timeout` at most.
async fn axum_served(write_timeout: Option<Duration>) -> TestServer {
    let server = SocketServer::builder()
        .layer(AuthLayer::new(authenticate))
        .write_timeout(write_timeout)
        .configure_io(|io| {
            io.ping_interval(Duration::from_millis(300))
                .ping_timeout(Duration::from_millis(300))
        })
        .build()
        .unwrap();
    serve(server).await
}

/// Sends 24 MiB to `id`, more than loopback's socket buffers hold: a client that reads none
/// of it blocks the server's writes.
async fn flood(server: &SocketServer, id: &str) {
    let payload = "x".repeat(16 * 1024);
    for n in 0..1_500u64 {
        let req = OutboundMessage::to(id, "bulk", json!({ "n": n, "pad": payload })).volatile();
        server.send(req).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_wherever_the_stack_is_mounted() {
    // Under axum::serve: the engine's heartbeat closes the session soon, but socketioxide
    // reports it closed only once its blocked writer returns; the stack's own write timeout
    // ends that write.
    let t = axum_served(Some(Duration::from_millis(300))).await;
    let mut slow = raw_ws(t.addr, None).await;
    let id = raw_ws_namespace(&mut slow, &json!({ "token": TOKEN })).await;
    let started = Instant::now();
    flood(&t.server, &id).await;
    eventually("the slow client is untracked", || {
        t.server.client(&id).is_none()
    })
    .await;
    eprintln!("untracked {:?} after the flood began", started.elapsed());
    drop(slow);
}
