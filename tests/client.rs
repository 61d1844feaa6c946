//! The client helper against a real socketio-stack server on an ephemeral port.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use serde_json::{Value, json};
use socketio_stack::args::{Arg, Args};
use socketio_stack::client::{
    ClientError, ClientOptions, EmitOptions, EventHandler, SocketClient, TransportKind,
};
use socketio_stack::layers::AuthLayer;
use socketio_stack::{ClientState, OutboundMessage, SocketServer};
use tokio::sync::mpsc;

/// What the client's callbacks and handlers saw, in order.
struct Seen(mpsc::UnboundedReceiver<String>);

impl Seen {
    /// Waits for the first line starting with `prefix`, skipping others; returns it.
    async fn expect(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.0.recv()).await {
                Ok(Some(line)) if line.starts_with(prefix) => return line,
                Ok(Some(_)) => continue,
                _ => panic!("no {prefix:?} within {WAIT:?}"),
            }
        }
    }

    /// Everything seen so far (not waiting).
    fn drain(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(line) = self.0.try_recv() {
            lines.push(line);
        }
        lines
    }
}

fn options(token: &str) -> ClientOptions {
    ClientOptions {
        auth: Some(json!({ "token": token })),
        reconnection_delay: Duration::from_millis(50),
        reconnection_delay_max: Duration::from_millis(200),
        randomization_factor: 0.0,
        timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

/// A client whose callbacks, and handlers of `ping` and `news`, report to [`Seen`].
fn client(host: &str, options: ClientOptions) -> (SocketClient, Seen) {
    let (tx, rx) = mpsc::unbounded_channel();
    let [a, b, c, d, e] = [(); 5].map(|()| tx.clone());
    let client = SocketClient::builder("test-client", host)
        .options(options)
        .on_connected(move |_client| {
            a.send("connected".into()).ok();
            async {}
        })
        .on_disconnected(move |_client, reason| {
            b.send(format!("disconnected:{reason}")).ok();
            async {}
        })
        .on_error(move |_client, error| {
            c.send(format!("error:{}:{error}", error.status())).ok();
            async {}
        })
        .on_authenticated(move |_client| {
            d.send("authenticated".into()).ok();
            async {}
        })
        .on_unauthenticated(move |_client, message| {
            e.send(format!("unauthenticated:{message}")).ok();
            async {}
        })
        .build()
        .expect("valid client");
    for event in ["ping", "news"] {
        let tx = tx.clone();
        client.subscribe(event, move |data: Value| {
            tx.send(format!("event:{event}:{data}")).ok();
            async {}
        });
    }
    (client, Seen(rx))
}

fn host(t: &TestServer) -> String {
    format!("http://{}", t.addr)
}

async fn authenticated(t: &TestServer) -> (SocketClient, Seen) {
    let (c, mut seen) = client(&host(t), options(TOKEN));
    seen.expect("connected").await;
    c.authenticate();
    seen.expect("authenticated").await;
    (c, seen)
}

/// The first error a client reports, reconnection off; the client is shut down, never having
/// connected.
async fn first_error(host: &str, options: ClientOptions) -> String {
    let (c, mut seen) = client(
        host,
        ClientOptions {
            reconnection: false,
            ..options
        },
    );
    let error = seen.expect("error:").await;
    assert!(!c.is_connected());
    c.shutdown().await;
    error
}

#[tokio::test]
async fn callbacks_and_states_follow_the_lifecycle() {
    let t = serve(seeds_stack(10_000, 100)).await;
    let (c, mut seen) = client(&host(&t), options(TOKEN));
    assert_eq!(seen.expect("connected").await, "connected");
    assert!(c.is_connected());
    assert_eq!(c.state(), ClientState::Unauthorized);
    assert!(c.raw().id().is_some() && c.raw().engine_id().is_some());
    assert_eq!(c.raw().transport(), Some(TransportKind::WebSocket));
    c.authenticate();
    assert_eq!(c.state(), ClientState::Authenticating);
    c.authenticate(); // ignored: not unauthorized
    seen.expect("authenticated").await;
    assert_eq!(c.state(), ClientState::Authenticated);
    let ping = seen.expect("event:ping:").await;
    assert!(ping.contains("\"time\""), "{ping}");

    c.disconnect();
    assert_eq!(
        seen.expect("disconnected").await,
        "disconnected:io client disconnect"
    );
    assert_eq!(c.state(), ClientState::Unauthorized);
    assert!(!c.is_connected());
    assert_eq!(c.raw().transport(), None);
    eventually("the server saw the client leave", || {
        t.server.client_count() == 0
    })
    .await;

    c.connect();
    seen.expect("connected").await;
    c.authenticate();
    seen.expect("authenticated").await;
    c.shutdown().await;
    assert_eq!(c.running_tasks(), 0);
}

#[tokio::test]
async fn a_refused_token_resets_the_state_and_does_not_reconnect() {
    let t = serve(seeds_stack(10_000, 10_000)).await;
    let (c, mut seen) = client(&host(&t), options("wrong"));
    seen.expect("connected").await;
    c.authenticate();
    assert_eq!(
        seen.expect("unauthenticated").await,
        "unauthenticated:Invalid token to authenticate! Please login again!"
    );
    assert_eq!(
        seen.expect("disconnected").await,
        "disconnected:io server disconnect"
    );
    assert_eq!(c.state(), ClientState::Unauthorized);
    // As socket.io-client: a disconnect by the server is not followed by a reconnection,
    // though reconnection is on with a 50 ms delay. (An absence: checked over 10 delays.)
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!seen.drain().contains(&"connected".to_owned()));
    assert!(!c.is_connected());
    c.shutdown().await;
}

#[tokio::test]
async fn the_server_auth_timeout_disconnects_and_resets_an_authenticating_client() {
    // An authenticate function that never answers: the client stays `authenticating` until
    // the server's deadline disconnects it.
    let server = SocketServer::builder()
        .layer(AuthLayer::new(|_hs| {
            std::future::pending::<Result<bool, socketio_stack::BoxError>>()
        }))
        .layer(socketio_stack::layers::AuthTimeoutLayer::new(Duration::from_millis(300)).unwrap())
        .build()
        .unwrap();
    let t = serve(server).await;
    let (c, mut seen) = client(&host(&t), options(TOKEN));
    seen.expect("connected").await;
    c.authenticate();
    assert_eq!(c.state(), ClientState::Authenticating);
    assert_eq!(
        seen.expect("disconnected").await,
        "disconnected:io server disconnect"
    );
    assert_eq!(c.state(), ClientState::Unauthorized);
    c.shutdown().await;
}

#[tokio::test]
async fn a_failing_server_authenticate_function_is_reported() {
    let t = serve(seeds_stack(10_000, 10_000)).await;
    let (c, mut seen) = client(&host(&t), options("boom"));
    seen.expect("connected").await;
    c.authenticate();
    assert_eq!(
        seen.expect("unauthenticated").await,
        "unauthenticated:Failed to authenticate connection! Please login again!"
    );
    seen.expect("disconnected:io server disconnect").await;
    c.shutdown().await;
}

#[tokio::test]
async fn connect_from_the_disconnected_callback_reconnects_after_a_kick() {
    let t = serve(seeds_stack(10_000, 10_000)).await;
    let (tx, rx) = mpsc::unbounded_channel();
    let mut seen = Seen(rx);
    let (a, b) = (tx.clone(), tx);
    let c = SocketClient::builder("comeback", host(&t))
        .options(options(TOKEN))
        .on_connected(move |client| {
            a.send("connected".into()).ok();
            client.authenticate();
            async {}
        })
        .on_disconnected(move |client, reason| {
            b.send(format!("disconnected:{reason}")).ok();
            // socket.io's documented answer to a kick: connect again.
            client.connect();
            async {}
        })
        .build()
        .unwrap();
    seen.expect("connected").await;
    eventually("authenticated", || c.state() == ClientState::Authenticated).await;
    let id = c.raw().id().unwrap();
    assert!(t.server.disconnect(&id));
    seen.expect("disconnected:io server disconnect").await;
    seen.expect("connected").await;
    eventually("authenticated again", || {
        c.state() == ClientState::Authenticated
    })
    .await;
    assert_ne!(c.raw().id().unwrap(), id);
    c.shutdown().await;
}

/// The demo binary as a child process: a real server process to kill and restart.
struct Demo(Child);

impl Demo {
    fn start(port: u16) -> Self {
        let exe = std::env::current_exe().unwrap();
        let bin = exe
            .parent()
            .and_then(|d| d.parent())
            .unwrap()
            .join("examples")
            .join("demo");
        assert!(
            bin.exists(),
            "{} missing: build the examples first",
            bin.display()
        );
        let child = Command::new(bin)
            .env("PORT", port.to_string())
            .env("PING_INTERVAL_MS", "200")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut demo = Demo(child);
        let stdout = demo.0.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        assert!(line.starts_with("listening on"), "{line:?}");
        demo
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

#[tokio::test]
async fn reconnects_after_the_server_restarts() {
    let port = common::redis_server::free_port();
    let demo = Demo::start(port);
    let (c, mut seen) = client(&format!("http://127.0.0.1:{port}"), options(TOKEN));
    seen.expect("connected").await;
    c.authenticate();
    seen.expect("authenticated").await;

    drop(demo); // SIGKILL: no goodbye to the client
    let reason = seen.expect("disconnected").await;
    assert!(
        [
            "disconnected:transport close",
            "disconnected:transport error",
            "disconnected:ping timeout"
        ]
        .contains(&reason.as_str()),
        "{reason}"
    );
    assert_eq!(c.state(), ClientState::Unauthorized);
    // While the server is down, attempts fail and are reported.
    seen.expect("error:503").await;

    let _demo = Demo::start(port);
    seen.expect("connected").await;
    assert_eq!(c.state(), ClientState::Unauthorized);
    c.authenticate();
    seen.expect("authenticated").await;
    c.shutdown().await;
}

#[tokio::test]
async fn subscribe_protects_against_duplicates() {
    let t = serve(seeds_stack(10_000, 10_000)).await;
    let (c, mut seen) = authenticated(&t).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = |calls: &Arc<AtomicUsize>| {
        let calls = calls.clone();
        move |_data: Value| {
            calls.fetch_add(1, Ordering::SeqCst);
            async {}
        }
    };
    let first = c
        .subscribe("tick", counter(&calls))
        .expect("first subscription");
    assert!(
        c.subscribe("tick", counter(&calls)).is_none(),
        "a duplicate is refused"
    );
    let second = c
        .subscribe_handler("tick", EventHandler::new(counter(&calls)), false)
        .expect("allowed when asked");

    let send = |topic: &'static str| {
        t.server
            .send(OutboundMessage::to("io-default", topic, json!({"n": 1})))
    };
    send("tick").await.unwrap();
    send("news").await.unwrap(); // barrier: handlers of one message all start before the next
    seen.expect("event:news").await;
    eventually("both tick handlers ran", || {
        calls.load(Ordering::SeqCst) == 2
    })
    .await;

    assert!(c.unsubscribe("tick", Some(first)));
    assert!(!c.unsubscribe("tick", Some(first)));
    send("tick").await.unwrap();
    send("news").await.unwrap();
    seen.expect("event:news").await;
    eventually("one tick handler left", || {
        calls.load(Ordering::SeqCst) == 3
    })
    .await;

    c.unsubscribe_many(["tick"]);
    assert!(!c.unsubscribe("tick", Some(second)));
    send("tick").await.unwrap();
    send("news").await.unwrap();
    seen.expect("event:news").await;
    tokio::task::yield_now().await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    let many = c.subscribe_many(
        [
            ("a", EventHandler::new(counter(&calls))),
            ("news", EventHandler::new(counter(&calls))),
        ],
        true,
    );
    assert!(
        many[0].is_some() && many[1].is_none(),
        "news already has a handler"
    );
    c.shutdown().await;
}

#[tokio::test]
async fn failing_and_panicking_handlers_and_callbacks_never_take_the_client_down() {
    let t = serve(seeds_stack(10_000, 10_000)).await;
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    let mut seen = Seen(rx);
    let ok = tx.clone();
    let c = SocketClient::builder("fragile", host(&t))
        .options(options(TOKEN))
        .on_connected(move |_client| {
            ok.send("connected".into()).ok();
            if true {
                panic!("on_connected bug");
            }
            async {}
        })
        .on_authenticated(|_client| async { Err::<(), _>("on_authenticated failed") })
        .build()
        .unwrap();
    seen.expect("connected").await;
    c.subscribe("boom-sync", |_| {
        if true {
            panic!("sync panic");
        }
        async {}
    });
    c.subscribe("boom-async", |_| async {
        if true {
            panic!("async panic");
        }
    });
    c.subscribe("boom-err", |_| async { Err::<(), _>("handler error") });
    c.subscribe("good", move |data| {
        tx.send(format!("good:{data}")).ok();
        async {}
    });
    c.authenticate();
    eventually("authenticated", || c.state() == ClientState::Authenticated).await;
    for round in 0..3 {
        for topic in ["boom-sync", "boom-async", "boom-err", "good"] {
            let data = json!({ "round": round });
            t.server
                .send(OutboundMessage::to("io-default", topic, data))
                .await
                .unwrap();
        }
        assert_eq!(
            seen.expect("good:").await,
            format!("good:{{\"round\":{round}}}")
        );
    }
    assert!(c.is_connected());
    c.shutdown().await;
}

#[tokio::test]
async fn emit_errors_and_acknowledgements() {
    let server = SocketServer::builder()
        .layer(AuthLayer::new(authenticate))
        .on(
            "echo",
            async |ack: socketioxide::extract::AckSender,
                   socketio_stack::extract::Data(v): socketio_stack::extract::Data<
                Value,
            >| {
                ack.send(&json!({ "echo": v })).ok();
            },
        )
        .build()
        .unwrap();
    let t = serve(server).await;
    let (c, mut seen) = client(
        &host(&t),
        ClientOptions {
            auto_connect: false,
            ..options(TOKEN)
        },
    );
    let err = c.emit("news", &json!(1)).unwrap_err();
    assert_eq!(
        (err.status(), err.to_string().as_str()),
        (400, "Invalid socket client state to emit")
    );
    assert_eq!(err, ClientError::NotConnected);
    c.join_rooms(&["public-a"]); // no-op with a warning
    c.authenticate(); // no-op with a warning
    assert_eq!(c.state(), ClientState::Unauthorized);

    c.connect();
    seen.expect("connected").await;
    let err = c.emit("", &json!(1)).unwrap_err();
    assert_eq!(
        (err.status(), err.to_string().as_str()),
        (400, "Topic is required to emit")
    );
    // Reserved names are refused as socket.io-client refuses them, and nothing is sent.
    for topic in socketio_stack::event::names::RESERVED {
        let err = c.emit(topic, &json!(1)).unwrap_err();
        assert_eq!(err, ClientError::ReservedTopic((*topic).into()));
        assert_eq!(
            (err.status(), err.to_string()),
            (400, format!("\"{topic}\" is a reserved event name"))
        );
        let err = c
            .emit_with_ack(topic, &json!(1), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(err, ClientError::ReservedTopic((*topic).into()));
    }
    assert!(c.is_connected());
    c.authenticate();
    seen.expect("authenticated").await;

    let (done, called) = tokio::sync::oneshot::channel();
    let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = ran.clone();
    let opts = EmitOptions {
        log: true,
        callback: Some(Box::new(move || {
            flag.store(true, Ordering::SeqCst);
            done.send(()).ok();
        })),
    };
    c.emit_with("news", &json!({"x": 1}), opts).unwrap();
    assert!(
        !ran.load(Ordering::SeqCst),
        "the callback runs later, as with setImmediate"
    );
    called.await.unwrap();
    let answer = c
        .emit_with_ack("echo", &json!({"n": 7}), WAIT)
        .await
        .unwrap();
    assert_eq!(answer, json!({"echo": {"n": 7}}));
    let err = c
        .emit_with_ack("nobody-answers", &json!(1), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(err.status(), 504);
    c.shutdown().await;
}

#[tokio::test]
async fn join_and_leave_show_in_what_the_server_sends() {
    let t = serve(seeds_stack(10_000, 10_000)).await;
    let (c, mut seen) = authenticated(&t).await;
    let id = c.raw().id().unwrap();
    c.join_rooms(&["public-a", "private-b"]);
    eventually("joined public-a", || {
        rooms_of(&t, &id).contains(&"public-a".to_owned())
    })
    .await;
    assert!(!rooms_of(&t, &id).contains(&"private-b".to_owned()));
    t.server
        .send(OutboundMessage::to("private-b", "news", json!("private")))
        .await
        .unwrap();
    t.server
        .send(OutboundMessage::to("public-a", "news", json!("public")))
        .await
        .unwrap();
    assert_eq!(seen.expect("event:news").await, "event:news:\"public\"");
    c.leave_rooms(&["public-a"]);
    eventually("left public-a", || {
        !rooms_of(&t, &id).contains(&"public-a".to_owned())
    })
    .await;
    t.server
        .send(OutboundMessage::to("public-a", "news", json!("gone")))
        .await
        .unwrap();
    t.server
        .send(OutboundMessage::to(id.clone(), "news", json!("barrier")))
        .await
        .unwrap();
    assert_eq!(seen.expect("event:news").await, "event:news:\"barrier\"");
    c.shutdown().await;
}

#[derive(serde::Deserialize)]
struct News {
    title: String,
}

#[tokio::test]
async fn a_typed_handler_skips_data_of_another_shape() {
    let t = serve(seeds_stack(10_000, 10_000)).await;
    let (c, mut seen) = authenticated(&t).await;
    let (tx, mut titles) = mpsc::unbounded_channel();
    c.subscribe_typed("headline", move |news: News| {
        tx.send(news.title).ok();
        async {}
    });
    for data in [
        json!({"wrong": 1}),
        json!("just text"),
        json!([1, 2]),
        json!({"title": "ok"}),
    ] {
        t.server
            .send(OutboundMessage::to("io-default", "headline", data))
            .await
            .unwrap();
    }
    let title = tokio::time::timeout(WAIT, titles.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(title, "ok");
    t.server
        .send(OutboundMessage::to("io-default", "news", json!(1)))
        .await
        .unwrap();
    seen.expect("event:news").await;
    assert!(
        titles.try_recv().is_err(),
        "only the fitting data reached the handler"
    );
    assert!(c.is_connected());
    c.shutdown().await;
}

/// A server in a runtime of its own, and an empty runtime for the client: the client runs
/// alone there, so that runtime's count of live tasks is the client's.
fn separate_runtimes() -> (tokio::runtime::Runtime, TestServer, tokio::runtime::Runtime) {
    let server_rt = tokio::runtime::Runtime::new().unwrap();
    let t = server_rt.block_on(async { serve(seeds_stack(10_000, 50)).await });
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (server_rt, t, client_rt)
}

#[test]
fn shutdown_leaves_no_task_running() {
    let (_server_rt, t, client_rt) = separate_runtimes();
    let url = host(&t);
    client_rt.block_on(async {
        let (c, mut seen) = client(&url, options(TOKEN));
        seen.expect("connected").await;
        c.authenticate();
        seen.expect("authenticated").await;
        c.subscribe("ping", |_| async {
            tokio::time::sleep(Duration::from_secs(60)).await
        });
        c.subscribe_any(|_, _| async { tokio::time::sleep(Duration::from_secs(60)).await });
        seen.expect("event:ping").await;
        assert!(
            c.running_tasks() > 1,
            "the connection and sleeping handlers"
        );
        c.shutdown().await;
        assert_eq!(c.running_tasks(), 0);
        assert!(!c.is_connected());
        assert_eq!(c.state(), ClientState::Unauthorized);
    });
    assert_eq!(client_rt.metrics().num_alive_tasks(), 0);
    drop(t);
}

#[tokio::test]
async fn a_server_closing_mid_handshake_is_an_error_not_a_panic() {
    for reply in [
        &b""[..],
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        b"garbage\r\n\r\n",
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                // Read (some of) the request, then answer it badly.
                let mut buf = [0u8; 1024];
                let _read = stream.read(&mut buf).await;
                stream.write_all(reply).await.ok();
            }
        });
        let (c, mut seen) = client(
            &format!("http://{addr}"),
            ClientOptions {
                reconnection: false,
                ..options(TOKEN)
            },
        );
        let error = seen.expect("error:").await;
        assert!(error.starts_with("error:503:"), "{error}");
        assert!(!c.is_connected());
        c.shutdown().await;
    }
    // A WebSocket that closes right after the upgrade, before the Engine.IO open packet.
    let app = axum::Router::new().route(
        "/io/",
        axum::routing::get(|| async { (axum::http::StatusCode::SWITCHING_PROTOCOLS, "") }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    let (c, mut seen) = client(
        &format!("http://{addr}"),
        ClientOptions {
            reconnection: false,
            ..options(TOKEN)
        },
    );
    seen.expect("error:").await;
    c.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_host_reports_errors_with_backoff_not_a_busy_loop() {
    let port = common::redis_server::free_port();
    let opts = ClientOptions {
        reconnection_delay: Duration::from_millis(100),
        reconnection_delay_max: Duration::from_secs(1),
        reconnection_attempts: Some(3),
        ..options(TOKEN)
    };
    let started = Instant::now();
    let (c, mut seen) = client(&format!("http://127.0.0.1:{port}"), opts);
    for _ in 0..4 {
        seen.expect("error:503").await;
    }
    // One attempt and three retries, 100 + 200 + 400 ms apart.
    assert!(
        started.elapsed() >= Duration::from_millis(650),
        "{:?}",
        started.elapsed()
    );
    // Then it gives up: no fifth attempt (checked over more than the next delay would be).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(seen.drain().iter().all(|l| !l.starts_with("error")));
    c.shutdown().await;
}

#[tokio::test]
async fn invalid_urls_are_refused_at_build() {
    for host in ["not a url", "ftp://x", "http://"] {
        let err = SocketClient::builder("bad", host).build().unwrap_err();
        assert_eq!(err.status(), 400, "{host}: {err}");
    }
    let err = SocketClient::builder("bad", "http://127.0.0.1:1")
        .path("io")
        .build()
        .unwrap_err();
    assert_eq!(err.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_start_in_the_order_events_arrive() {
    let t = serve(seeds_stack(10_000, 10_000)).await;
    let (c, mut seen) = authenticated(&t).await;
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = order.clone();
    c.subscribe("seq", move |data: Value| {
        let record = record.clone();
        // Everything inside the future: the order is the dispatcher's, not the closure's.
        async move {
            record.lock().unwrap().push(data.as_u64().unwrap());
        }
    });
    for n in 1..=300u64 {
        t.server
            .send(OutboundMessage::to("io-default", "seq", json!(n)))
            .await
            .unwrap();
    }
    t.server
        .send(OutboundMessage::to("io-default", "news", json!("done")))
        .await
        .unwrap();
    seen.expect("event:news").await;
    eventually("all 300 handled", || order.lock().unwrap().len() == 300).await;
    let order = order.lock().unwrap().clone();
    assert_eq!(order, (1..=300).collect::<Vec<_>>());
    c.shutdown().await;
}

#[test]
fn dropping_every_handle_stops_the_client() {
    let (server_rt, t, client_rt) = separate_runtimes();
    let url = host(&t);
    client_rt.block_on(async {
        let (c, mut seen) = client(&url, options(TOKEN));
        seen.expect("connected").await;
        // A handler holding a handle to its own client, as handlers do.
        let own = c.handle();
        c.subscribe("ping", move |_| {
            let _ = own.is_connected();
            async {}
        });
        c.authenticate();
        seen.expect("authenticated").await;
        drop(c);
        seen.expect("disconnected:io client disconnect").await;
        let deadline = Instant::now() + WAIT;
        while tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
            > 0
        {
            assert!(
                Instant::now() < deadline,
                "the client's tasks outlived its handles"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    server_rt.block_on(eventually("the server saw it leave", || {
        t.server.client_count() == 0
    }));
}

/// A WebSocket server that plays `script` on each connection: text frames to send, with
/// `"close"` to close and `"wait"` to go silent.
async fn scripted_server(script: &'static [&'static str]) -> String {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                for step in script {
                    match *step {
                        "close" => {
                            ws.close(None).await.ok();
                            return;
                        }
                        "wait" => std::future::pending::<()>().await,
                        text => {
                            if ws.send(Message::text(text)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                // Answer the client's Socket.IO connect, then stay.
                std::future::pending::<()>().await
            });
        }
    });
    format!("http://{addr}")
}

const OPEN: &str =
    r#"0{"sid":"e1","upgrades":[],"pingInterval":100,"pingTimeout":100,"maxPayload":1000000}"#;

#[tokio::test]
async fn servers_that_misbehave_during_the_handshake_are_errors_not_panics() {
    let no_retry = || ClientOptions {
        reconnection: false,
        ..options(TOKEN)
    };
    for script in [
        &["close"][..],
        &[OPEN, "close"][..],
        &["not an engine.io packet"][..],
    ] {
        let url = scripted_server(script).await;
        let (c, mut seen) = client(&url, no_retry());
        let error = seen.expect("error:").await;
        assert!(error.starts_with("error:503:"), "{script:?}: {error}");
        assert!(!c.is_connected());
        c.shutdown().await;
    }
    // A refusal (connect_error) is final: reported once, not retried, even with reconnection.
    let url = scripted_server(&[OPEN, r#"44{"message":"not allowed"}"#, "wait"]).await;
    let (c, mut seen) = client(&url, options(TOKEN));
    assert_eq!(
        seen.expect("error:").await,
        "error:401:the server refused the connection: not allowed"
    );
    tokio::time::sleep(Duration::from_millis(300)).await; // 6 reconnection delays
    assert!(seen.drain().iter().all(|l| !l.starts_with("error")));
    c.shutdown().await;
}

#[tokio::test]
async fn a_silent_server_is_detected_by_the_heartbeat_and_reconnected_to() {
    // Opens, connects the namespace, then never pings: past pingInterval + pingTimeout
    // (200 ms) the connection counts as dead, and the client reconnects.
    let url = scripted_server(&[OPEN, r#"40{"sid":"s1"}"#, "wait"]).await;
    let (c, mut seen) = client(&url, options(TOKEN));
    seen.expect("connected").await;
    assert_eq!(
        seen.expect("disconnected").await,
        "disconnected:ping timeout"
    );
    seen.expect("connected").await;
    c.shutdown().await;
}

#[tokio::test]
async fn disconnect_during_backoff_stops_the_attempts_and_connect_resumes_them() {
    let port = common::redis_server::free_port();
    let opts = ClientOptions {
        reconnection_delay: Duration::from_millis(300),
        reconnection_delay_max: Duration::from_millis(300),
        ..options(TOKEN)
    };
    let (c, mut seen) = client(&format!("http://127.0.0.1:{port}"), opts);
    seen.expect("error:503").await;
    c.disconnect();
    // Over several backoff periods, no attempt.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(seen.drain().iter().all(|l| !l.starts_with("error")));
    c.connect();
    seen.expect("error:503").await;
    c.shutdown().await;
    let err = c.emit("x", &json!(1)).unwrap_err();
    assert_eq!(
        (err, 410),
        (ClientError::Shutdown, ClientError::Shutdown.status())
    );
}

/// A server answering `upload` with every argument it got, binary data included, sending
/// them back as `blob` for `relay`, and answering `transport` with the transport of the
/// asking socket as the server sees it. It pings every 100 ms.
fn echo_server() -> SocketServer {
    SocketServer::builder()
        .layer(AuthLayer::new(authenticate))
        .layer(socketio_stack::layers::RoomsLayer::new().validate(allow_public))
        .layer(socketio_stack::layers::PingLayer::new(Duration::from_millis(100)).unwrap())
        .on(
            "upload",
            async |ack: socketioxide::extract::AckSender, args: Args| {
                ack.send(&args).ok();
            },
        )
        .on(
            "relay",
            async |socket: socketioxide::extract::SocketRef, args: Args| {
                socket.emit("blob", &args).ok();
            },
        )
        .on(
            "transport",
            async |socket: socketioxide::extract::SocketRef,
                   ack: socketioxide::extract::AckSender| {
                ack.send(&format!("{:?}", socket.transport_type())).ok();
            },
        )
        .build()
        .unwrap()
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct File {
    name: String,
    data: Bytes,
}

#[tokio::test]
async fn binary_data_goes_both_ways_in_events_and_acknowledgements() {
    let t = serve(echo_server()).await;
    let (c, mut seen) = authenticated(&t).await;
    let (tx, blobs) = mpsc::unbounded_channel();
    let mut blobs = Seen(blobs);
    let typed = tx.clone();
    c.subscribe_args("blob", move |args: Args| {
        tx.send(format!("args:{:?}", args.into_vec())).ok();
        async {}
    });
    c.subscribe_typed("file", move |file: File| {
        typed
            .send(format!("file:{}:{:?}", file.name, file.data))
            .ok();
        async {}
    });

    // Client to server and back: one buffer, an empty one, 256 KiB, and one inside an object.
    let every_byte = Bytes::from((0..=255u8).collect::<Vec<_>>());
    let answer = c
        .emit_with_ack_args("upload", &every_byte, WAIT)
        .await
        .unwrap();
    assert_eq!(answer.into_vec(), vec![Arg::from(every_byte.clone())]);
    let answer = c.emit_with_ack_args("upload", &Bytes::new(), WAIT).await;
    assert_eq!(answer.unwrap().into_vec(), vec![Arg::from(Bytes::new())]);
    let big = Bytes::from(vec![7u8; 256 * 1024]);
    let answer = c.emit_with_ack_args("upload", &big, WAIT).await.unwrap();
    assert_eq!(answer.into_vec()[0].as_bytes(), Some(&big));
    let file = File {
        name: "a.bin".into(),
        data: every_byte.clone(),
    };
    let answer = c.emit_with_ack_args("upload", &file, WAIT).await.unwrap();
    assert_eq!(answer.decode::<(File,)>().unwrap().0, file);
    // The JSON view of an answer shows binary data as its bytes.
    let two = Bytes::from_static(&[1, 2]);
    let json = c.emit_with_ack("upload", &two, WAIT).await.unwrap();
    assert_eq!(json, json!([1, 2]));

    // Several arguments, text and binary mixed, and back as an event.
    let mixed = vec![Arg::from("x"), Arg::from(Bytes::from_static(b"\0\xff"))];
    c.raw().emit_args("relay", mixed.clone()).unwrap();
    let line = blobs.expect("args:").await;
    assert_eq!(line, format!("args:{mixed:?}"));

    // Server to client: an event of two attachments, and a typed one.
    t.server
        .send(
            OutboundMessage::to("io-default", "blob", json!(null)).with_args(vec![
                Arg::from(Bytes::from_static(b"one")),
                Arg::from("between"),
                Arg::from(Bytes::from_static(b"two")),
            ]),
        )
        .await
        .unwrap();
    let line = blobs.expect("args:").await;
    assert_eq!(
        line,
        format!(
            "args:{:?}",
            vec![
                Arg::from(Bytes::from_static(b"one")),
                Arg::from("between"),
                Arg::from(Bytes::from_static(b"two")),
            ]
        )
    );
    let data = Args::from_serialize(&(&file,)).unwrap();
    t.server
        .send(OutboundMessage::to("io-default", "file", json!(null)).with_args(data))
        .await
        .unwrap();
    let line = blobs.expect("file:").await;
    assert_eq!(line, format!("file:a.bin:{every_byte:?}"));
    assert!(c.is_connected());
    assert!(seen.drain().iter().all(|l| !l.starts_with("error")));
    c.shutdown().await;
}

/// Terminates TLS for `backend` with the test authority's certificate for 127.0.0.1, as a
/// load balancer in front of the server would; returns its address.
async fn tls_front(ca: &tls::TestCa, backend: std::net::SocketAddr) -> std::net::SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs = CertificateDer::pem_file_iter(ca.path("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(ca.path("server-key.pem")).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to relay.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut plain = tokio::net::TcpStream::connect(backend).await.unwrap();
                tokio::io::copy_bidirectional(&mut tls, &mut plain)
                    .await
                    .ok();
            });
        }
    });
    addr
}

#[tokio::test]
async fn wss_reaches_a_server_behind_tls_with_the_authorities_given() {
    let t = serve(echo_server()).await;
    let ca = tls::TestCa::new("client wss test");
    let front = tls_front(&ca, t.addr).await;
    for scheme in ["https", "wss"] {
        let (c, mut seen) = client(
            &format!("{scheme}://127.0.0.1:{}", front.port()),
            ClientOptions {
                root_certificates_pem: Some(ca.pem().into_bytes()),
                ..options(TOKEN)
            },
        );
        seen.expect("connected").await;
        c.authenticate();
        seen.expect("authenticated").await;
        let data = Bytes::from_static(b"\x00over tls\xff");
        let answer = c.emit_with_ack_args("upload", &data, WAIT).await.unwrap();
        assert_eq!(answer.into_vec(), vec![Arg::from(data)]);
        c.shutdown().await;
    }
}

#[tokio::test]
async fn wss_refuses_a_certificate_of_an_authority_not_trusted() {
    let t = serve(echo_server()).await;
    let ca = tls::TestCa::new("the server's authority");
    let front = tls_front(&ca, t.addr).await;
    let other = tls::TestCa::new("another authority");
    let host = format!("wss://127.0.0.1:{}", front.port());
    // Neither the system's authorities nor another one trust the test's.
    for roots in [None, Some(other.pem().into_bytes())] {
        let options = ClientOptions {
            root_certificates_pem: roots,
            ..options(TOKEN)
        };
        let error = first_error(&host, options).await;
        assert!(error.starts_with("error:503:"), "{error}");
        assert!(error.contains("certificate"), "{error}");
    }
    assert_eq!(t.server.client_count(), 0);
}

#[test]
fn bad_root_certificates_are_refused_at_build() {
    let ca = tls::TestCa::new("build test");
    let cases = [
        ("wss://127.0.0.1:1", b"not a certificate".to_vec()),
        ("wss://127.0.0.1:1", Vec::new()),
        (
            "wss://127.0.0.1:1",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
        ),
        // Authorities for a server that is not behind TLS: a mistake, said at once.
        ("http://127.0.0.1:1", ca.pem().into_bytes()),
        ("ws://127.0.0.1:1", ca.pem().into_bytes()),
    ];
    for (host, pem) in cases {
        let err = SocketClient::builder("bad", host)
            .options(ClientOptions {
                root_certificates_pem: Some(pem.clone()),
                ..Default::default()
            })
            .build()
            .unwrap_err();
        assert!(matches!(err, ClientError::Tls(_)), "{host} {pem:?}: {err}");
        assert_eq!(err.status(), 400, "{err}");
    }
}

fn polling_only(token: &str) -> ClientOptions {
    ClientOptions {
        transports: vec![TransportKind::Polling],
        ..options(token)
    }
}

/// Everything a connection does, over long-polling: authentication, the server's pings and
/// sends, binary data both ways, rooms, and a clean disconnect.
async fn exercise_polling(t: &TestServer, c: &SocketClient, seen: &mut Seen) {
    seen.expect("connected").await;
    c.authenticate();
    seen.expect("authenticated").await;
    let transport = c.emit_with_ack("transport", &json!(null), WAIT).await;
    assert_eq!(transport.unwrap(), json!("Polling"));
    assert_eq!(c.raw().transport(), Some(TransportKind::Polling));
    seen.expect("event:ping:").await;
    let data = Bytes::from((0..=255u8).cycle().take(100_000).collect::<Vec<_>>());
    let answer = c.emit_with_ack_args("upload", &data, WAIT).await.unwrap();
    assert_eq!(answer.into_vec(), vec![Arg::from(data)]);
    // Many emits at once go out in few POSTs, in order.
    for n in 0..200 {
        c.emit("upload", &json!(n)).unwrap();
    }
    let last = c.emit_with_ack("upload", &json!("last"), WAIT).await;
    assert_eq!(last.unwrap(), json!("last"));
    c.join_rooms(&["public-a"]);
    let id = c.raw().id().unwrap();
    eventually("the server joined the client to public-a", || {
        rooms_of(t, &id).contains(&"public-a".to_owned())
    })
    .await;
    t.server
        .send(OutboundMessage::to(
            "public-a",
            "news",
            json!({"over": "polling"}),
        ))
        .await
        .unwrap();
    assert_eq!(
        seen.expect("event:news:").await,
        r#"event:news:{"over":"polling"}"#
    );
    c.disconnect();
    seen.expect("disconnected:io client disconnect").await;
    eventually("the server saw the client leave", || {
        t.server.client_count() == 0
    })
    .await;
}

#[tokio::test]
async fn long_polling_carries_the_whole_protocol() {
    let t = serve(echo_server()).await;
    let (c, mut seen) = client(&host(&t), polling_only(TOKEN));
    exercise_polling(&t, &c, &mut seen).await;
    assert!(seen.drain().iter().all(|l| !l.starts_with("error")));
    c.shutdown().await;
    assert_eq!(c.running_tasks(), 0);
}

#[tokio::test]
async fn long_polling_over_tls() {
    let t = serve(echo_server()).await;
    let ca = tls::TestCa::new("client polling test");
    let front = tls_front(&ca, t.addr).await;
    let (c, mut seen) = client(
        &format!("https://127.0.0.1:{}", front.port()),
        ClientOptions {
            root_certificates_pem: Some(ca.pem().into_bytes()),
            ..polling_only(TOKEN)
        },
    );
    exercise_polling(&t, &c, &mut seen).await;
    c.shutdown().await;
}

/// Refuses WebSocket upgrades, as a proxy that does not pass them would.
async fn refuse_websockets(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let upgrade = request.headers().contains_key(http::header::UPGRADE);
    if upgrade {
        return (http::StatusCode::FORBIDDEN, "no websockets here").into_response();
    }
    next.run(request).await
}

#[tokio::test]
async fn a_client_falls_back_to_long_polling_where_websockets_are_refused() {
    let server = echo_server();
    let app = axum::Router::new()
        .layer(server.layer())
        .layer(axum::middleware::from_fn(refuse_websockets));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The default transports: a WebSocket first, then polling.
    let (c, mut seen) = client(&format!("http://{addr}"), options(TOKEN));
    seen.expect("connected").await;
    c.authenticate();
    seen.expect("authenticated").await;
    let transport = c.emit_with_ack("transport", &json!(null), WAIT).await;
    assert_eq!(transport.unwrap(), json!("Polling"));
    assert_eq!(c.raw().transport(), Some(TransportKind::Polling));
    c.shutdown().await;

    // WebSocket alone: the refusal is the error, and nothing connects.
    let options = ClientOptions {
        transports: vec![TransportKind::WebSocket],
        ..options(TOKEN)
    };
    let error = first_error(&format!("http://{addr}"), options).await;
    assert!(
        error.starts_with("error:503:") && error.contains("403"),
        "{error}"
    );
    assert_eq!(server.client_count(), 0);
}

#[tokio::test]
async fn every_transport_failing_is_one_error_naming_each() {
    let port = common::redis_server::free_port();
    let error = first_error(&format!("http://127.0.0.1:{port}"), options(TOKEN)).await;
    assert!(
        error.contains("websocket:") && error.contains("polling:"),
        "{error}"
    );
    let err = SocketClient::builder("none", "http://127.0.0.1:1")
        .options(ClientOptions {
            transports: Vec::new(),
            ..Default::default()
        })
        .build()
        .unwrap_err();
    assert_eq!(err.status(), 400, "{err}");
}
