//! The seeds' "Connection Lifecycle", step by step, against a real server and client.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use socketio_stack::layers::{AuthLayer, AuthTimeoutLayer, Next, PingLayer, RoomsLayer, from_fn};
use socketio_stack::layers::{auth_timeout, ping};
use socketio_stack::outbound::DropReason;
use socketio_stack::{
    ClientState, Delivery, OutboundMessage, RequestKind, SendError, SocketRequest, SocketServer,
};
use socketioxide::extract::SocketRef;
use tokio::sync::Notify;

#[tokio::test]
async fn connect_tracks_an_unauthorized_client_with_its_auth_timer() {
    let t = serve(seeds_stack(10_000, 10_000)).await;
    assert!(t.server.clients().is_empty());
    let c = TestClient::connect(&t.url()).await;
    eventually("the client is tracked", || t.server.client_count() == 1).await;
    let client = t.server.clients().remove(0);
    assert_eq!(client.state(), ClientState::Unauthorized);
    assert_eq!(
        client.session.timer_names(),
        [std::any::type_name::<auth_timeout::Deadline>()]
    );
    assert!(t.server.client(&client.id().to_string()).is_some());
    assert!(t.server.client("not-a-socket-id").is_none());
    // Unauthenticated: in its own id room only.
    assert_eq!(
        rooms_of(&t, &client.id().to_string()),
        [client.id().to_string()]
    );
    c.disconnect().await;
    eventually("the client is untracked after it left", || {
        t.server.client_count() == 0
    })
    .await;
}

#[tokio::test]
async fn authentication_success_runs_every_step_in_order() {
    let connected = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let server = {
        let connected = connected.clone();
        let release = release.clone();
        SocketServer::builder()
            .layer(AuthLayer::new(move |hs| {
                let release = release.clone();
                async move {
                    // Hold the answer until the test has seen the `authenticating` state.
                    release.notified().await;
                    authenticate(hs).await
                }
            }))
            .layer(AuthTimeoutLayer::new(Duration::from_secs(10)).unwrap())
            .layer(PingLayer::new(Duration::from_secs(10)).unwrap())
            .layer(RoomsLayer::new().validate(allow_public))
            .on_authenticated(move |socket: socketioxide::extract::SocketRef| {
                let connected = connected.clone();
                async move {
                    connected.fetch_add(1, Ordering::SeqCst);
                    socket
                        .emit("welcome", &json!({"rooms": socket.rooms().len()}))
                        .ok();
                }
            })
            .build()
            .unwrap()
    };
    let t = serve(server).await;
    let mut c = TestClient::connect(&t.url()).await;
    c.emit("authenticate", json!({})).await;
    eventually("the client is authenticating", || {
        t.server.clients().first().map(|c| c.state()) == Some(ClientState::Authenticating)
    })
    .await;
    release.notify_one();

    // Initial ping first, then `authenticated` {id, time}, as the seeds' onClientAuthenticated.
    let Received::Event(first, ping) = c.next().await else {
        panic!("closed")
    };
    assert_eq!(first, "ping");
    assert_iso_time(&ping["time"]);
    let Received::Event(second, data) = c.next().await else {
        panic!("closed")
    };
    assert_eq!(second, "authenticated");
    assert_iso_time(&data["time"]);
    let id = data["id"].as_str().unwrap().to_owned();
    // Then the authenticated callback (clientConnectedFn), with the default rooms in place:
    // what it sends comes after `authenticated`.
    assert_eq!(
        c.next_non_ping().await,
        Received::Event("welcome".into(), json!({"rooms": 3}))
    );

    let client = t
        .server
        .client(&id)
        .expect("tracked under the id sent to the client");
    assert_eq!(client.state(), ClientState::Authenticated);
    let rooms = rooms_of(&t, &id);
    let expected = sorted(["io-default", "io-notification", id.as_str()]);
    assert_eq!(rooms, expected);
    assert_eq!(
        client.session.timer_names(),
        [std::any::type_name::<ping::Interval>()],
        "auth timer cleared, ping running"
    );
    assert_eq!(
        connected.load(Ordering::SeqCst),
        1,
        "clientConnectedFn ran once"
    );
}

#[tokio::test]
async fn auth_by_bearer_header_and_by_polling_transport() {
    let t = serve(seeds_stack(10_000, 10_000)).await;
    let mut c = TestClient::connect_with(
        &t.url(),
        ClientOptions {
            auth: None,
            header: Some(("authorization".into(), format!("Bearer {TOKEN}"))),
            transport: rust_socketio::TransportType::Polling,
            namespace: None,
        },
    )
    .await;
    c.emit("authenticate", json!({})).await;
    c.expect_event("authenticated").await;
}

#[tokio::test]
async fn a_refused_token_gets_the_invalid_token_message_then_a_disconnect() {
    let t = serve(seeds_stack(10_000, 10_000)).await;
    for auth in [json!({"token": "wrong"}), json!({}), json!({"token": 42})] {
        let opts = ClientOptions {
            auth: Some(auth),
            ..Default::default()
        };
        let mut c = TestClient::connect_with(&t.url(), opts).await;
        expect_refusal(&mut c, "Invalid token to authenticate! Please login again!").await;
    }
    eventually("refused clients are untracked", || {
        t.server.client_count() == 0
    })
    .await;
}

#[tokio::test]
async fn a_failing_authenticate_function_gets_the_failure_message_then_a_disconnect() {
    let t = serve(seeds_stack(10_000, 10_000)).await;
    let mut c = connect_with_token(&t.url(), "boom").await;
    expect_refusal(
        &mut c,
        "Failed to authenticate connection! Please login again!",
    )
    .await;
}

#[tokio::test]
async fn the_auth_timeout_disconnects_only_unauthenticated_clients() {
    let t = serve(seeds_stack(300, 10_000)).await;
    let started = Instant::now();
    let mut idle = TestClient::connect(&t.url()).await;
    let (mut authed, _) = TestClient::authenticated(&t.url()).await;
    idle.expect_close().await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "disconnected too early: {waited:?}"
    );
    // The authenticated one is still served well past the deadline.
    tokio::time::sleep(Duration::from_millis(400)).await;
    authed.sync().await;
    assert!(!authed.skipped.contains(&Received::Close));
    eventually("only the authenticated client is tracked", || {
        t.server.client_count() == 1
    })
    .await;
}

#[tokio::test]
async fn ping_repeats_at_the_interval() {
    let t = serve(seeds_stack(10_000, 150)).await;
    let (mut c, _) = TestClient::authenticated(&t.url()).await;
    let mut times = Vec::new();
    while times.len() < 4 {
        let data = c.expect_event("ping").await;
        assert_iso_time(&data["time"]);
        times.push(Instant::now());
    }
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(75) && gap <= Duration::from_millis(2000),
            "gap {gap:?}"
        );
    }
}

#[tokio::test]
async fn join_is_validated_and_leave_always_allowed() {
    let t = serve(seeds_stack(10_000, 10_000)).await;
    let (mut c, id) = TestClient::authenticated(&t.url()).await;
    c.emit(
        "join",
        json!({"rooms": ["public-a", "private-b", "public-c"]}),
    )
    .await;
    c.sync().await;
    let in_room = |room: &str| rooms_of(&t, &id).iter().any(|r| r == room);
    assert!(in_room("public-a") && in_room("public-c") && !in_room("private-b"));

    // Delivery agrees: the refused room gets nothing, the joined one gets its message.
    t.server
        .send(OutboundMessage::to("private-b", "secret", json!(1)))
        .await
        .unwrap();
    t.server
        .send(OutboundMessage::to("public-a", "public", json!(2)))
        .await
        .unwrap();
    assert_eq!(
        c.next_non_ping().await,
        Received::Event("public".into(), json!(2))
    );

    c.emit("leave", json!({"rooms": ["public-a", "io-default"]}))
        .await;
    c.sync().await;
    assert!(!in_room("public-a") && !in_room("io-default") && in_room("public-c"));
}

#[tokio::test]
async fn without_a_validate_function_every_join_is_refused() {
    let server = SocketServer::builder()
        .layer(AuthLayer::new(authenticate))
        .layer(RoomsLayer::new())
        .on("sync", sync_handler)
        .build()
        .unwrap();
    let t = serve(server).await;
    let (mut c, id) = TestClient::authenticated(&t.url()).await;
    c.emit("join", json!({"rooms": ["public-a"]})).await;
    c.sync().await;
    let rooms = rooms_of(&t, &id);
    let expected = sorted(["io-default", "io-notification", id.as_str()]);
    assert_eq!(rooms, expected);
}

#[tokio::test]
async fn send_reaches_a_room_a_socket_id_or_everyone_and_drops_silently() {
    let t = serve(seeds_stack(10_000, 10_000)).await;
    let (mut a, id_a) = TestClient::authenticated(&t.url()).await;
    let (mut b, id_b) = TestClient::authenticated(&t.url()).await;
    b.emit("join", json!({"rooms": ["public-b"]})).await;
    b.sync().await;

    let s = &t.server;
    assert_eq!(
        s.send(OutboundMessage::to("io-default", "room", json!({"n": 1})))
            .await,
        Ok(Delivery::Sent)
    );
    assert_eq!(
        a.next_non_ping().await,
        Received::Event("room".into(), json!({"n": 1}))
    );
    assert_eq!(
        b.next_non_ping().await,
        Received::Event("room".into(), json!({"n": 1}))
    );

    // To one socket id, then a barrier to the other: A must not see B's message.
    s.send(OutboundMessage::to(id_b.clone(), "direct", json!("to b")))
        .await
        .unwrap();
    s.send(OutboundMessage::to(id_a.clone(), "direct", json!("to a")))
        .await
        .unwrap();
    assert_eq!(
        a.next_non_ping().await,
        Received::Event("direct".into(), json!("to a"))
    );
    assert_eq!(
        b.next_non_ping().await,
        Received::Event("direct".into(), json!("to b"))
    );

    // The seeds' silent drops: nothing is sent, the caller can tell.
    assert_eq!(
        s.send(OutboundMessage::broadcast("", json!({"x": 1})))
            .await,
        Ok(Delivery::Dropped(DropReason::NoTopic))
    );
    for falsy in [json!(null), json!(false), json!(0), json!("")] {
        assert_eq!(
            s.send(OutboundMessage::broadcast("falsy", falsy)).await,
            Ok(Delivery::Dropped(DropReason::FalsyData))
        );
    }
    // An empty destination means everyone; the completion callback runs after the send.
    let (done, called) = tokio::sync::oneshot::channel();
    let req = OutboundMessage {
        destination: Some(String::new()),
        ..OutboundMessage::broadcast("all", json!([1]))
    };
    s.send_then(req, move || {
        done.send(()).ok();
    })
    .await
    .unwrap();
    called.await.unwrap();
    assert_eq!(
        a.next_non_ping().await,
        Received::Event("all".into(), json!([1]))
    );
    assert_eq!(
        b.next_non_ping().await,
        Received::Event("all".into(), json!([1]))
    );

    // Only B is in public-b.
    s.send(OutboundMessage::to("public-b", "only-b", json!(true)))
        .await
        .unwrap();
    s.send(OutboundMessage::broadcast("barrier", json!(1)))
        .await
        .unwrap();
    assert_eq!(
        a.next_non_ping().await,
        Received::Event("barrier".into(), json!(1))
    );
    assert_eq!(
        b.next_non_ping().await,
        Received::Event("only-b".into(), json!(true))
    );
}

#[tokio::test]
async fn send_refuses_reserved_topics_and_the_clients_stay_connected() {
    let t = serve(seeds_stack(10_000, 10_000)).await;
    let (mut c, id) = TestClient::authenticated(&t.url()).await;
    for topic in socketio_stack::event::names::RESERVED {
        for req in [
            OutboundMessage::broadcast(*topic, json!({"x": 1})),
            OutboundMessage::to("io-default", *topic, json!({"x": 1})),
            OutboundMessage::to(id.clone(), *topic, json!({"x": 1})),
        ] {
            let err = t.server.send(req).await.unwrap_err();
            assert_eq!(err, SendError::ReservedTopic((*topic).into()));
            assert!(err.to_string().contains("reserved"), "{err}");
        }
    }
    // Nothing reached the client: the next thing it gets is a normal send, and it is still
    // connected and tracked.
    assert_eq!(
        t.server
            .send(OutboundMessage::broadcast("after", json!("still here")))
            .await,
        Ok(Delivery::Sent)
    );
    assert_eq!(
        c.next_non_ping().await,
        Received::Event("after".into(), json!("still here"))
    );
    assert_eq!(t.server.client_count(), 1);
    c.sync().await;
}

#[tokio::test]
async fn server_disconnect_clears_timers_and_untracks_once_gone() {
    let t = serve(seeds_stack(10_000, 100)).await;
    let (mut c, id) = TestClient::authenticated(&t.url()).await;
    let session = t.server.client(&id).unwrap().session;
    assert_eq!(
        session.timer_names(),
        [std::any::type_name::<ping::Interval>()]
    );
    assert!(t.server.disconnect(&id));
    assert!(session.is_closed(), "gone at once");
    c.expect_close().await;
    // Untracked when gone, not before: the stack handles its disconnect first.
    eventually("untracked", || t.server.client(&id).is_none()).await;
    assert!(session.timer_names().is_empty());
    assert!(!t.server.disconnect(&id), "already gone");
    assert!(!t.server.disconnect("junk"));
}

#[tokio::test]
async fn shutdown_disconnects_everyone_then_closes() {
    let t = serve(seeds_stack(10_000, 10_000)).await;
    let (mut a, _) = TestClient::authenticated(&t.url()).await;
    let mut b = TestClient::connect(&t.url()).await;
    eventually("both tracked", || t.server.client_count() == 2).await;
    let sessions: Vec<_> = t.server.clients().into_iter().map(|c| c.session).collect();
    tokio::time::timeout(WAIT, t.server.shutdown())
        .await
        .expect("shutdown completes");
    assert_eq!(t.server.client_count(), 0);
    assert!(sessions.iter().all(|s| s.timer_names().is_empty()));
    a.expect_close().await;
    b.expect_close().await;
    // Every socket went through its disconnect.
    for session in &sessions {
        tokio::time::timeout(WAIT, session.closed())
            .await
            .expect("socket closed");
    }
    // After shutdown: sends fail visibly, disconnects find nobody, nothing panics.
    let err = t
        .server
        .send(OutboundMessage::broadcast("late", json!(1)))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "could not deliver the message: the Socket.IO server is shut down"
    );
    assert!(!t.server.disconnect(&sessions[0].id().to_string()));
}

#[tokio::test]
async fn handler_panics_are_contained_sync_or_async() {
    let server = SocketServer::builder()
        .layer(AuthLayer::new(authenticate))
        .on("sync", sync_handler)
        .on("panic-now", || {
            if true {
                panic!("in the handler's synchronous part");
            }
            async {}
        })
        .on("panic-later", async || panic!("in the handler's future"))
        .build()
        .unwrap();
    let t = serve(server).await;
    let (mut c, _) = TestClient::authenticated(&t.url()).await;
    for _ in 0..3 {
        c.emit("panic-now", json!(1)).await;
        c.emit("panic-later", json!(1)).await;
    }
    c.sync().await;
    assert!(!c.skipped.contains(&Received::Close));
}

#[tokio::test]
async fn connect_and_disconnect_callbacks_run() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let on_disconnect = tx.clone();
    let server =
        SocketServer::builder()
            .on_connect(move |socket: socketioxide::extract::SocketRef| {
                let tx = tx.clone();
                async move {
                    tx.send(format!("connect {}", socket.id)).ok();
                }
            })
            .on_disconnect(
                move |socket: socketioxide::extract::SocketRef,
                      socketio_stack::extract::Data(reason): socketio_stack::extract::Data<
                    String,
                >| {
                    let tx = on_disconnect.clone();
                    async move {
                        tx.send(format!("disconnect {} {reason}", socket.id)).ok();
                    }
                },
            )
            .build()
            .unwrap();
    let t = serve(server).await;
    let c = TestClient::connect(&t.url()).await;
    let connect = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    let id = connect.strip_prefix("connect ").unwrap().to_owned();
    c.disconnect().await;
    let disconnect = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        disconnect.starts_with(&format!("disconnect {id} ")),
        "{disconnect}"
    );
}

#[tokio::test]
async fn handlers_answer_the_client_acknowledgement() {
    use socketio_stack::extract::Data;
    use socketioxide::extract::AckSender;
    let server = SocketServer::builder()
        .layer(AuthLayer::new(authenticate))
        .on(
            "echo",
            async |ack: AckSender, Data(v): Data<serde_json::Value>| {
                ack.send(&json!({ "echo": v })).ok();
            },
        )
        .build()
        .unwrap();
    let t = serve(server).await;
    let (c, _) = TestClient::authenticated(&t.url()).await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    c.client
        .emit_with_ack("echo", json!({"n": 7}), WAIT, move |payload, _c| {
            if let Some(tx) = tx.lock().unwrap().take() {
                tx.send(payload).ok();
            }
            futures_util::FutureExt::boxed(async {})
        })
        .await
        .unwrap();
    let payload = tokio::time::timeout(WAIT, rx)
        .await
        .expect("ack in time")
        .unwrap();
    // rust_socketio hands an ack over as the array of its arguments.
    let rust_socketio::Payload::Text(args) = payload else {
        panic!("{payload:?}")
    };
    let answer = match args.as_slice() {
        [serde_json::Value::Array(inner)] => inner[0].clone(),
        [single] => single.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(answer, json!({"echo": {"n": 7}}));
}

/// A layer that disconnects a socket at `Connect`: the bridge runs that request on
/// socketioxide's own call, so the disconnect is carried out a moment later, from a task. The
/// socket counts as leaving meanwhile: it is not announced authenticated, and nothing of
/// authentication reaches it before its DISCONNECT.
#[tokio::test]
async fn a_socket_disconnected_at_connect_is_never_announced_authenticated() {
    let server = SocketServer::builder()
        .layer(from_fn(|req: SocketRequest, next: Next| async move {
            if matches!(req.kind, RequestKind::Connect) {
                req.session.disconnect(&req.socket);
                return Ok(());
            }
            next.run(req).await
        }))
        .layer(RoomsLayer::new())
        .on_authenticated(async |socket: SocketRef| {
            socket.emit("welcome", &1).ok();
        })
        .build()
        .unwrap();
    let t = serve(server).await;
    let mut c = TestClient::connect(&t.url()).await;
    assert_eq!(c.next_non_ping().await, Received::Close);
}
