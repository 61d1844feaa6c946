//! Who the client is, end to end: the identity the authenticate function finds reaches the
//! layers beneath, the handlers and the authenticated callback; typed per-socket state and
//! application state reach handlers; authentication at the handshake refuses a bad CONNECT
//! with `connect_error` and fills the same identity.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use serde_json::{Value, json};
use socketio_stack::extract::{Extension, State};
use socketio_stack::layers::auth::INVALID_TOKEN_MESSAGE;
use socketio_stack::layers::{AuthLayer, HandshakeAuthLayer, Next, from_fn};
use socketio_stack::{BoxError, Handshake, Identity, RequestKind, SocketRequest, SocketServer};
use socketioxide::extract::SocketRef;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct User {
    name: String,
}

/// The token is `user:<name>`; anything else is refused.
async fn find_user(hs: Arc<Handshake>) -> Result<Option<User>, BoxError> {
    Ok(hs
        .auth_field("token")
        .and_then(|t| t.strip_prefix("user:"))
        .filter(|name| !name.is_empty())
        .map(|name| User { name: name.into() }))
}

/// A request's label, and the identity the layer saw with it.
type Seen = (String, Option<User>);

/// Set by a layer at connect, read by a handler.
#[derive(Debug, Clone)]
struct ConnectedAt(u64);

#[derive(Debug, Clone)]
struct Greeting(&'static str);

async fn whoami(
    socket: SocketRef,
    Identity(user): Identity<User>,
    other: Option<Identity<String>>,
    Extension(ConnectedAt(n)): Extension<ConnectedAt>,
    State(Greeting(greeting)): State<Greeting>,
) {
    let answer =
        json!({ "name": user.name, "other": other.is_some(), "n": n, "greeting": greeting });
    socket.emit("me", &answer).ok();
}

#[tokio::test]
async fn the_identity_reaches_the_layers_beneath_the_handlers_and_the_authenticated_callback() {
    // What the layer beneath authentication saw of the identity, request by request.
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let seen_by_layer = seen.clone();
    let server = SocketServer::builder()
        .layer(AuthLayer::new(find_user))
        .layer(from_fn(move |req: SocketRequest, next: Next| {
            let seen = seen_by_layer.clone();
            async move {
                if matches!(req.kind, RequestKind::Connect) {
                    req.session.extensions().insert(ConnectedAt(42));
                }
                let label = req.kind.label().to_owned();
                seen.lock()
                    .unwrap()
                    .push((label, req.session.identity::<User>()));
                next.run(req).await
            }
        }))
        .with_state(Greeting("hello"))
        .on("whoami", whoami)
        .on_authenticated(async |socket: SocketRef, Identity(user): Identity<User>| {
            socket.emit("welcome", &user.name).ok();
        })
        .build()
        .unwrap();
    let t = serve(server).await;

    let mut c = connect_with_token(&t.url(), "user:ann").await;
    c.emit("authenticate", json!({})).await;
    c.expect_event("authenticated").await;
    assert_eq!(c.expect_event("welcome").await, json!("ann"));
    c.emit("whoami", json!(null)).await;
    assert_eq!(
        c.expect_event("me").await,
        json!({ "name": "ann", "other": false, "n": 42, "greeting": "hello" })
    );
    let ann = Some(User { name: "ann".into() });
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            ("handshake".to_owned(), None),
            ("connect".to_owned(), None),
            ("authenticated".to_owned(), ann.clone()),
            ("event".to_owned(), ann),
        ]
    );
    let client = t.server.clients().remove(0);
    assert_eq!(*client.session.data(), json!({ "name": "ann" }));

    // `None` refuses, with the seeds' message.
    let mut refused = connect_with_token(&t.url(), "nobody").await;
    expect_refusal(&mut refused, INVALID_TOKEN_MESSAGE).await;
}

#[tokio::test]
async fn a_handler_asking_for_what_the_socket_has_not_is_not_called_and_others_go_on() {
    // No authentication: sockets are authenticated at connect, with no identity.
    let server = SocketServer::builder()
        .on("whoami", whoami)
        .on("sync", sync_handler)
        .build()
        .unwrap();
    let t = serve(server).await;
    let mut c = TestClient::connect(&t.url()).await;
    c.emit("whoami", json!(null)).await;
    c.sync().await;
    assert!(
        c.skipped
            .iter()
            .all(|r| !format!("{r:?}").contains("\"me\"")),
        "{:?}",
        c.skipped
    );
    assert_eq!(*t.server.clients()[0].session.data(), json!({}));
}

/// A raw CONNECT with `auth`: the server's answer to it, as text (`40…` or `44…`).
async fn raw_connect(t: &TestServer, auth: Value) -> String {
    let mut ws = raw_ws(t.addr, None).await;
    raw_connect_answer(&mut ws, "/", &auth).await
}

#[tokio::test]
async fn handshake_authentication_refuses_at_connect_and_fills_the_same_identity() {
    let server = SocketServer::builder()
        .layer(
            HandshakeAuthLayer::new(async |hs: Arc<Handshake>| {
                if hs.auth_field("token") == Some("slow") {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                find_user(hs).await
            })
            .timeout(Duration::from_millis(300)),
        )
        .on("whoami", whoami)
        .with_state(Greeting("hi"))
        .build()
        .unwrap();
    let t = serve(server).await;
    for (token, message) in [
        ("nobody", INVALID_TOKEN_MESSAGE),
        (
            "slow",
            "Failed to authenticate connection! Please login again!",
        ),
    ] {
        let answer = raw_connect(&t, json!({ "token": token })).await;
        let refusal: Value =
            serde_json::from_str(answer.strip_prefix("44").expect(&answer)).unwrap();
        assert_eq!(refusal, json!({ "message": message }), "{token}");
    }
    assert_eq!(
        t.server.client_count(),
        0,
        "refused sockets are never tracked"
    );

    // Accepted: connected, told `authenticated` (for seeds clients), identity in handlers.
    let mut c = connect_with_token(&t.url(), "user:bo").await;
    c.expect_event("authenticated").await;
    c.emit("authenticate", json!({})).await;
    // No extension set by any layer here: `whoami` is not called; the identity is there.
    c.emit("whoami", json!(null)).await;
    let client = t.server.clients().remove(0);
    assert_eq!(
        client.session.identity::<User>(),
        Some(User { name: "bo".into() })
    );
    assert_eq!(*client.session.data(), json!({ "name": "bo" }));
}

#[tokio::test]
async fn a_client_gone_while_its_handshake_is_decided_leaves_nothing_behind() {
    // The function waits for the test; a layer above hands the test each session.
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let gate = release.clone();
    let (sessions_tx, mut sessions) = tokio::sync::mpsc::unbounded_channel();
    let server = SocketServer::builder()
        .layer(from_fn(move |req: SocketRequest, next: Next| {
            if matches!(req.kind, RequestKind::Handshake) {
                sessions_tx.send(req.session.clone()).ok();
            }
            next.run(req)
        }))
        .layer(HandshakeAuthLayer::new(move |hs: Arc<Handshake>| {
            let gate = gate.clone();
            async move {
                gate.acquire().await.unwrap().forget();
                find_user(hs).await
            }
        }))
        .build()
        .unwrap();
    let t = serve(server).await;
    let mut ws = raw_ws(t.addr, None).await;
    ws.send(Message::text(r#"40{"token":"user:cy"}"#))
        .await
        .unwrap();
    let session = tokio::time::timeout(WAIT, sessions.recv())
        .await
        .unwrap()
        .unwrap();
    drop(ws);
    // Accepted after the client left: the CONNECT answer cannot be sent, the socket is never
    // connected, and its session is closed (its timers and waiters with it).
    release.add_permits(1);
    tokio::time::timeout(WAIT, session.closed())
        .await
        .expect("the session closed");
    assert_eq!(t.server.client_count(), 0);
}

#[tokio::test]
async fn refused_connects_over_long_polling_stay_under_the_session_s_connect_bound() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let server = SocketServer::builder()
        .layer(HandshakeAuthLayer::new(move |hs: Arc<Handshake>| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            find_user(hs)
        }))
        .build()
        .unwrap();
    let t = serve(server).await;
    let (status, open) = raw_http(t.addr, "GET", "/io/?EIO=4&transport=polling", "").await;
    assert_eq!(status, 200);
    let open: Value = serde_json::from_str(open.strip_prefix('0').unwrap()).unwrap();
    let target = format!(
        "/io/?EIO=4&transport=polling&sid={}",
        open["sid"].as_str().unwrap()
    );
    // One bad CONNECT at a time, each refusal read before the next: a refusal must not hand
    // the session a fresh budget (16 at once, then one per 2 s).
    let mut refused = 0;
    for _ in 0..40 {
        let (status, _) = raw_http(t.addr, "POST", &target, r#"40{"token":"nobody"}"#).await;
        if status != 200 {
            break;
        }
        let (status, body) = raw_http(t.addr, "GET", &target, "").await;
        if status != 200 {
            break;
        }
        if body.contains(INVALID_TOKEN_MESSAGE) {
            refused += 1;
        }
    }
    let calls = calls.load(std::sync::atomic::Ordering::SeqCst);
    assert!((16..=18).contains(&refused), "{refused} refusals");
    assert!(calls <= 18, "{calls} calls of the authenticate function");
    let (status, _) = raw_http(t.addr, "POST", &target, "40").await;
    assert_eq!(status, 400, "the session is cut off");
}
