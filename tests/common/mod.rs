//! Shared by the integration tests: a real server on an ephemeral port (axum, as a user would
//! mount it) and a real Socket.IO client (rust_socketio) that records what it receives.
#![allow(dead_code)]

pub mod redis_server;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload, TransportType};
use serde_json::{Value, json};
use socketio_stack::layers::{AuthLayer, AuthTimeoutLayer, PingLayer, RoomsLayer};
use socketio_stack::{BoxError, Handshake, Session, SocketServer};
use tokio::sync::{mpsc, oneshot};

/// How long a test waits for something that should happen (generous: CI machines are slow).
pub const WAIT: Duration = Duration::from_secs(10);

pub const TOKEN: &str = "demo-token";

/// A running server.
pub struct TestServer {
    pub server: SocketServer,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    url: Option<String>,
}

impl TestServer {
    /// The URL a client connects to (`/io/` path).
    pub fn url(&self) -> String {
        self.url
            .clone()
            .unwrap_or_else(|| format!("http://{}{}/", self.addr, self.server.path()))
    }

    /// A server of another adapter type, served by the test itself: only its address and
    /// URL are kept here.
    pub fn external(addr: SocketAddr, url: String) -> Self {
        Self {
            server: SocketServer::builder().build().unwrap(),
            addr,
            stop: None,
            url: Some(url),
        }
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
    }
}

/// Serves `server` beside an ordinary route on 127.0.0.1:0.
pub async fn serve(server: SocketServer) -> TestServer {
    let app = axum::Router::new()
        .route("/health", axum::routing::get(|| async { "ok" }))
        .layer(server.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                stopped.await.ok();
            })
            .await
            .ok();
    });
    TestServer {
        server,
        addr,
        stop: Some(stop),
        url: None,
    }
}

/// The demo's authenticate function: `auth.token` or a Bearer header equal to [`TOKEN`];
/// `boom` in either fails.
pub async fn authenticate(hs: Arc<Handshake>) -> Result<bool, BoxError> {
    let given = [hs.auth_field("token"), hs.bearer_token()];
    if given.contains(&Some("boom")) {
        return Err("boom".into());
    }
    Ok(given.contains(&Some(TOKEN)))
}

pub async fn allow_public(_s: Session, rooms: Vec<String>) -> Result<Vec<String>, BoxError> {
    Ok(rooms
        .into_iter()
        .filter(|r| r.starts_with("public-"))
        .collect())
}

/// The seeds' stack with short timings and a `sync` handler that acks, used as a barrier:
/// one socket's events are handled in order, so its ack proves every earlier event of that
/// socket has been handled.
pub fn seeds_stack(auth_timeout_ms: u64, ping_ms: u64) -> SocketServer {
    SocketServer::builder()
        .layer(AuthLayer::new(authenticate))
        .layer(AuthTimeoutLayer::new(Duration::from_millis(auth_timeout_ms)).unwrap())
        .layer(PingLayer::new(Duration::from_millis(ping_ms)).unwrap())
        .layer(RoomsLayer::new().validate(allow_public))
        .on("sync", sync_handler)
        .build()
        .unwrap()
}

/// Answers `sync` with a `synced` event carrying the same data. (An event rather than an ack:
/// rust_socketio stops delivering events after an ack callback has run.)
pub async fn sync_handler(
    socket: socketioxide::extract::SocketRef,
    socketio_stack::extract::Data(data): socketio_stack::extract::Data<Value>,
) {
    socket.emit("synced", &data).ok();
}

/// What a client received.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    Event(String, Value),
    Close,
}

/// A real Socket.IO client recording every event it receives, in order.
///
/// rust_socketio takes the event names `open`, `close`, `error`, `message` and `connect` for
/// its own events and never reports them through `on_any`: tests avoid them as topics.
pub struct TestClient {
    pub client: Client,
    rx: mpsc::UnboundedReceiver<Received>,
    /// Events read past while looking for another one (kept for later assertions).
    pub skipped: Vec<Received>,
    sync_seq: u64,
}

pub struct ClientOptions {
    pub auth: Option<Value>,
    pub header: Option<(String, String)>,
    pub transport: TransportType,
    /// The namespace to connect to (`/` when `None`).
    pub namespace: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            auth: Some(json!({ "token": TOKEN })),
            header: None,
            transport: TransportType::Websocket,
            namespace: None,
        }
    }
}

impl TestClient {
    pub async fn connect(url: &str) -> Self {
        Self::connect_with(url, ClientOptions::default()).await
    }

    pub async fn connect_with(url: &str, opts: ClientOptions) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let on_any = tx.clone();
        // rust_socketio's connect() returns before the server has acknowledged the namespace
        // connection; events emitted before that would be dropped by any server. Wait for it.
        let (connected_tx, connected_rx) = oneshot::channel();
        let connected_tx = std::sync::Mutex::new(Some(connected_tx));
        let mut builder = ClientBuilder::new(url)
            .reconnect(false)
            .transport_type(opts.transport)
            .on_any(move |event, payload, _| {
                let name = String::from(event);
                let data = match payload {
                    Payload::Text(mut values) if !values.is_empty() => values.remove(0),
                    _ => Value::Null,
                };
                on_any.send(Received::Event(name, data)).ok();
                async {}.boxed()
            })
            .on(Event::Connect, move |_, _| {
                if let Some(tx) = connected_tx.lock().unwrap().take() {
                    tx.send(()).ok();
                }
                async {}.boxed()
            })
            .on(Event::Close, move |_, _| {
                tx.send(Received::Close).ok();
                async {}.boxed()
            });
        if let Some(auth) = opts.auth {
            builder = builder.auth(auth);
        }
        if let Some(ns) = opts.namespace {
            builder = builder.namespace(ns);
        }
        if let Some((k, v)) = opts.header {
            builder = builder.opening_header(k, v);
        }
        let client = tokio::time::timeout(WAIT, builder.connect())
            .await
            .expect("connected in time")
            .expect("connected");
        tokio::time::timeout(WAIT, connected_rx)
            .await
            .expect("namespace connected in time")
            .expect("connect callback ran");
        Self {
            client,
            rx,
            skipped: Vec::new(),
            sync_seq: 0,
        }
    }

    /// Connects and authenticates; returns the client and its socket id.
    pub async fn authenticated(url: &str) -> (Self, String) {
        let mut c = Self::connect(url).await;
        c.emit("authenticate", json!({})).await;
        let data = c.expect_event("authenticated").await;
        let id = data["id"].as_str().expect("authenticated.id").to_owned();
        (c, id)
    }

    pub async fn emit(&self, event: &str, data: Value) {
        self.client.emit(event, data).await.expect("emit");
    }

    /// Emits `sync` and waits for the `synced` answer: every event this client emitted before
    /// has been handled (one socket's events are handled in order). Other events received
    /// meanwhile are kept in `skipped`.
    pub async fn sync(&mut self) {
        self.sync_seq += 1;
        let seq = self.sync_seq;
        self.emit("sync", json!({ "seq": seq })).await;
        loop {
            let data = self.expect_event("synced").await;
            if data["seq"] == seq {
                return;
            }
        }
    }

    /// The next thing received.
    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "nothing received within {WAIT:?}; skipped so far: {:?}",
                    self.skipped
                )
            })
            .expect("client channel open")
    }

    /// The next event other than `ping`.
    pub async fn next_non_ping(&mut self) -> Received {
        loop {
            match self.next().await {
                Received::Event(name, _) if name == "ping" => continue,
                other => return other,
            }
        }
    }

    /// Waits for the event `name`, skipping (and keeping) others; panics on close.
    pub async fn expect_event(&mut self, name: &str) -> Value {
        loop {
            match self.next().await {
                Received::Event(n, data) if n == name => return data,
                Received::Close => panic!(
                    "closed while waiting for {name}; skipped: {:?}",
                    self.skipped
                ),
                other => self.skipped.push(other),
            }
        }
    }

    /// Waits for the server to disconnect this client, skipping events.
    pub async fn expect_close(&mut self) {
        loop {
            match self.next().await {
                Received::Close => return,
                other => self.skipped.push(other),
            }
        }
    }

    pub async fn disconnect(&self) {
        self.client.disconnect().await.ok();
    }
}

/// Polls `cond` every 10 ms until it holds, failing after [`WAIT`]. For server-side state
/// that no event announces (e.g. the registry after a client left).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Asserts a value is an ISO-8601 time as JavaScript's `toISOString()` writes it.
pub fn assert_iso_time(v: &Value) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("time is not a string: {v}"));
    let b = s.as_bytes();
    assert_eq!(s.len(), 24, "{s}");
    assert!(
        s.ends_with('Z') && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[19] == b'.',
        "{s}"
    );
}

/// The rooms a tracked socket is in, sorted.
pub fn rooms_of(t: &TestServer, id: &str) -> Vec<String> {
    let client = t.server.client(id).expect("tracked");
    sorted(client.socket.rooms().iter().map(|r| r.to_string()))
}

/// The items as sorted strings, to compare room sets.
pub fn sorted<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Vec<String> {
    let mut items: Vec<String> = items.into_iter().map(Into::into).collect();
    items.sort();
    items
}

/// Connects with `auth: {token}`.
pub async fn connect_with_token(url: &str, token: &str) -> TestClient {
    let opts = ClientOptions {
        auth: Some(json!({ "token": token })),
        ..Default::default()
    };
    TestClient::connect_with(url, opts).await
}

/// Authenticates and expects the refusal: `unauthenticated` `{message, time}` first, then the
/// disconnect, nothing in between.
pub async fn expect_refusal(c: &mut TestClient, message: &str) {
    c.emit("authenticate", json!({})).await;
    let Received::Event(name, data) = c.next().await else {
        panic!("closed before unauthenticated")
    };
    assert_eq!(name, "unauthenticated");
    assert_eq!(data["message"], message);
    assert_iso_time(&data["time"]);
    assert_eq!(c.next().await, Received::Close);
}

/// One HTTP/1.1 request on a connection of its own (`connection: close`), written by hand as a
/// raw client would: the status (0 when the answer is no HTTP) and the body. A server that
/// stops reading the body part way is not an error here.
pub async fn raw_http(addr: SocketAddr, method: &str, target: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nhost: x\r\ncontent-type: text/plain;charset=UTF-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(body.as_bytes()).await.ok();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, conn.read_to_end(&mut answer))
        .await
        .expect("an answer")
        .ok();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A raw WebSocket to the server.
pub type RawWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw Engine.IO v4 WebSocket client, its open packet read; with `recv_buffer`, its socket's
/// receive buffer (loopback's grows to tens of MiB otherwise, so a client that stops reading
/// would take that much before the server's writes block).
pub async fn raw_ws(addr: SocketAddr, recv_buffer: Option<u32>) -> RawWs {
    use futures_util::StreamExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let stream = socket.connect(addr).await.unwrap();
    let url = format!("ws://{addr}/io/?EIO=4&transport=websocket");
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    ws.next().await.unwrap().unwrap(); // Engine.IO open
    ws
}

/// Connects `ws` to the namespace `/` with `auth`; returns the socket id from the CONNECT
/// (the engine's first ping may come before it).
pub async fn raw_ws_namespace(ws: &mut RawWs, auth: &Value) -> String {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::text(format!("40{auth}"))).await.unwrap();
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("the namespace's CONNECT")
            .unwrap()
            .unwrap();
        if let Some(rest) = msg.to_text().unwrap_or_default().strip_prefix("40") {
            let connect: Value = serde_json::from_str(rest).unwrap();
            return connect["sid"].as_str().unwrap().to_owned();
        }
    }
}

/// Sends `ws` a CONNECT to namespace `nsp` with `auth`; the server's answer to it, as text
/// (`40…` accepted, `44…` refused).
pub async fn raw_connect_answer(ws: &mut RawWs, nsp: &str, auth: &Value) -> String {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    // `/` goes without its name, as socket.io-client writes it.
    let prefix = if nsp == "/" {
        String::new()
    } else {
        format!("{nsp},")
    };
    ws.send(Message::text(format!("40{prefix}{auth}")))
        .await
        .unwrap();
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("an answer to the CONNECT")
            .unwrap()
            .unwrap();
        let text = msg.to_text().unwrap_or_default().to_owned();
        if text.starts_with(&format!("40{prefix}")) || text.starts_with(&format!("44{prefix}")) {
            return text;
        }
    }
}

/// `target/<profile>/examples/<name>`, next to this test's own binary (`.../deps/`).
pub fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    profile_dir.join("examples").join(name)
}

/// A server process printing `listening on <port>` when ready; killed when dropped.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub port: u16,
}

impl ServerProcess {
    pub fn start(mut cmd: std::process::Command) -> Self {
        let mut child = cmd
            .env("PORT", "0")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {cmd:?}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{cmd:?} printed {line:?}"));
        Self { child, port }
    }

    /// `POST /send` with a JSON body; the status code.
    pub fn send(&self, body: &serde_json::Value) -> u16 {
        use std::io::{Read, Write};
        let body = body.to_string();
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "POST /send HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// The seeds' stack (auth, rooms, `sync`) fanning out through a Redis reached with `options`:
/// one server instance of a fleet.
pub async fn fanout_instance(options: socketio_stack::fanout::RedisOptions) -> TestServer {
    let fanout = socketio_stack::fanout::RedisFanout::connect_with_options(options)
        .await
        .expect("fan-out connects");
    instance_on(fanout).await
}

/// [`fanout_instance`] on a fan-out connected already.
pub async fn instance_on(fanout: socketio_stack::fanout::RedisFanout) -> TestServer {
    let server = SocketServer::builder()
        .fanout(fanout)
        .layer(AuthLayer::new(authenticate))
        .layer(RoomsLayer::new().validate(allow_public))
        .on("sync", sync_handler)
        .build()
        .unwrap();
    serve(server).await
}

/// Sends `event` with `0, 1, …` from `from` until one reaches `c` (Redis coming back, a
/// subscription being made again), failing after [`WAIT`]; the one that arrived.
pub async fn until_delivered(from: &TestServer, c: &mut TestClient, event: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    for n in 0u64.. {
        let sent = from
            .server
            .send(socketio_stack::OutboundMessage::broadcast(event, json!(n)))
            .await;
        if sent.is_ok() {
            let got = tokio::time::timeout(Duration::from_millis(300), c.next_non_ping()).await;
            if let Ok(Received::Event(name, value)) = got {
                assert_eq!(name, event);
                return value;
            }
        }
        assert!(Instant::now() < deadline, "{event} never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!()
}
