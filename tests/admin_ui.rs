//! The Admin UI's server side (`admin-ui` feature) with a raw Socket.IO client on `/admin`,
//! speaking the protocol as the UI does: the login and its refusals, what a UI is sent at its
//! connect and as sockets come and go, the commands (and their absence when read-only),
//! production mode, and three instances on one real redis-server (two with the fan-out, one
//! on the Redis adapter) seen by one UI.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::redis_server::RedisServer;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use socketio_stack::admin_ui::{AdminUi, Mode};
use socketio_stack::fanout::{RedisAdapter, RedisFanout};
use socketio_stack::layers::{AuthLayer, RoomsLayer};
use socketio_stack::{BoxError, Handshake, SocketServer};
use tokio_tungstenite::tungstenite::Message;

/// `s3cret`, hashed by bcryptjs 3 in Node (cost 4, to keep the tests fast).
const HASH: &str = "$2b$04$Z0vTp2RgXLCWnafc8K26iOD4syyjktjkDDeW31POMQ2ClyWviXPqS";

fn login() -> Value {
    json!({ "username": "admin", "password": "s3cret" })
}

/// Who the client is, when its token is right: the socket's `data`.
async fn identify(hs: Arc<Handshake>) -> Result<Option<Value>, BoxError> {
    Ok((hs.auth_field("token") == Some(TOKEN)).then(|| json!({ "user": "alice" })))
}

/// A demo-like stack (authentication with an identity, the seeds' rooms) with the Admin UI.
async fn server(admin: AdminUi, fanout: Option<RedisFanout>) -> TestServer {
    let mut builder = SocketServer::builder();
    if let Some(fanout) = fanout {
        builder = builder.fanout(fanout);
    }
    let server = builder
        .admin_ui(admin)
        .layer(AuthLayer::new(identify))
        .layer(RoomsLayer::new().validate(allow_public))
        .on("sync", sync_handler)
        .build()
        .unwrap();
    serve(server).await
}

/// The same stack on the Redis adapter (`builder_with_redis_adapter`), served here.
async fn adapter_server(
    admin: AdminUi,
    fanout: RedisFanout,
) -> (TestServer, SocketServer<RedisAdapter>) {
    let server = SocketServer::builder_with_redis_adapter(fanout)
        .admin_ui(admin)
        .layer(AuthLayer::new(identify))
        .layer(RoomsLayer::new().validate(allow_public))
        .build()
        .unwrap();
    let app = axum::Router::new().layer(server.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (
        TestServer::external(addr, format!("http://{addr}/io/")),
        server,
    )
}

fn basic(id: &str) -> AdminUi {
    AdminUi::new().basic_auth("admin", HASH).server_id(id)
}

/// A raw admin client: every event with all its arguments, Engine.IO pings answered.
struct Admin {
    ws: RawWs,
    id: String,
}

impl Admin {
    /// Connects to `/admin` with `auth`; the refusal's text (`44/admin,…`) when refused.
    async fn try_connect(addr: SocketAddr, auth: Value) -> Result<Self, String> {
        let mut ws = raw_ws(addr, None).await;
        let answer = raw_connect_answer(&mut ws, "/admin", &auth).await;
        match answer.strip_prefix("40/admin,") {
            Some(rest) => {
                let id = serde_json::from_str::<Value>(rest).unwrap()["sid"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                Ok(Self { ws, id })
            }
            None => Err(answer),
        }
    }

    async fn connect(addr: SocketAddr) -> Self {
        Self::try_connect(addr, login()).await.expect("admitted")
    }

    /// The next event: its name and arguments.
    async fn next(&mut self) -> (String, Vec<Value>) {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("an admin event in time")
                .expect("the connection open")
                .unwrap();
            let text = msg.to_text().unwrap_or_default();
            if text == "2" {
                self.ws.send(Message::text("3")).await.unwrap();
                continue;
            }
            if let Some(rest) = text.strip_prefix("42/admin,") {
                let mut items: Vec<Value> = serde_json::from_str(rest).unwrap();
                let name = items.remove(0).as_str().unwrap().to_owned();
                return (name, items);
            }
        }
    }

    /// The arguments of the next `name`, skipping other events.
    async fn expect(&mut self, name: &str) -> Vec<Value> {
        self.expect_where(name, |_| true).await
    }

    /// The next `name` whose arguments `pick` accepts, within [`WAIT`] (the stats clock
    /// never lets the connection go quiet).
    async fn expect_where(&mut self, name: &str, pick: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = std::time::Instant::now() + WAIT;
        let mut skipped = Vec::new();
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "no {name} as expected; skipped: {skipped:?}"
            );
            let (n, args) = self.next().await;
            if n == name && pick(&args) {
                return args;
            }
            skipped.push((n, args));
        }
    }

    async fn emit(&mut self, event: &str, args: &[Value]) {
        let mut items = vec![json!(event)];
        items.extend_from_slice(args);
        let text = format!("42/admin,{}", Value::from(items));
        self.ws.send(Message::text(text)).await.unwrap();
    }
}

/// An authenticated app client in `public-a`; its socket id.
async fn member(url: &str) -> (TestClient, String) {
    let (mut c, id) = TestClient::authenticated(url).await;
    c.emit("join", json!({ "rooms": ["public-a"] })).await;
    c.sync().await;
    (c, id)
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_refused_with_invalid_credentials() {
    let t = server(basic("srv"), None).await;
    for auth in [
        json!({ "username": "admin", "password": "wrong" }),
        json!({ "username": "root", "password": "s3cret" }),
        // The JavaScript package's process dies of these two; here they are refusals.
        json!({ "username": "admin" }),
        json!({ "username": "admin", "password": 42 }),
        json!({ "sessionId": "deadbeefdeadbeef" }),
        json!({}),
        json!("not an object"),
    ] {
        let answer = Admin::try_connect(t.addr, auth.clone()).await.err();
        assert_eq!(
            answer.as_deref(),
            Some(r#"44/admin,{"message":"invalid credentials"}"#),
            "{auth}"
        );
    }
    // The application's own namespace is untouched by the admin login.
    let (_c, _id) = member(&t.url()).await;
}

#[tokio::test]
async fn a_login_gets_session_config_stats_and_every_socket_with_its_rooms_and_data() {
    let t = server(basic("srv-a"), None).await;
    let (_app, app_id) = member(&t.url()).await;

    let mut admin = Admin::connect(t.addr).await;
    let (name, session) = admin.next().await;
    assert_eq!(name, "session");
    let session = session[0].as_str().unwrap().to_owned();
    assert!(session.len() == 16 && session.bytes().all(|b| b.is_ascii_hexdigit()));
    let (name, config) = admin.next().await;
    assert_eq!(name, "config");
    assert_eq!(
        config[0],
        json!({ "supportedFeatures": ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT", "AGGREGATED_EVENTS", "ALL_EVENTS"] })
    );
    let (name, stats) = admin.next().await;
    assert_eq!(name, "server_stats");
    let stats = &stats[0];
    assert_eq!(stats["serverId"], "srv-a");
    assert_eq!(stats["pid"], std::process::id());
    assert!(stats["hostname"].is_string());
    assert!(stats["uptime"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        stats["clientsCount"], 2,
        "the app client and this admin: {stats}"
    );
    assert_eq!(stats["pollingClientsCount"], 0);
    assert!(stats["aggregatedEvents"].is_array());
    let namespaces = stats["namespaces"].as_array().unwrap();
    assert!(
        namespaces.contains(&json!({ "name": "/", "socketsCount": 1 })),
        "{stats}"
    );
    assert!(
        namespaces.contains(&json!({ "name": "/admin", "socketsCount": 1 })),
        "{stats}"
    );

    let sockets = admin.expect("all_sockets").await;
    let sockets = sockets[0].as_array().unwrap();
    let app = sockets
        .iter()
        .find(|s| s["id"] == app_id.as_str())
        .unwrap_or_else(|| panic!("{app_id} in {sockets:?}"));
    assert_eq!(app["nsp"], "/");
    assert_eq!(app["transport"], "websocket");
    assert_eq!(app["clientId"], &app_id[..12]);
    assert_eq!(app["data"], json!({ "user": "alice" }));
    let rooms: Vec<String> = serde_json::from_value(app["rooms"].clone()).unwrap();
    assert_eq!(rooms[0], app_id, "its private room first");
    assert_eq!(
        sorted(rooms[1..].iter().cloned()),
        ["io-default", "io-notification", "public-a"]
    );
    let handshake = &app["handshake"];
    assert!(
        handshake.get("auth").is_none(),
        "the token stays out: {handshake}"
    );
    assert_eq!(handshake["query"]["transport"], "websocket");
    assert!(handshake["headers"].is_object() && handshake["issued"].is_u64());
    assert!(
        sockets
            .iter()
            .any(|s| s["id"] == admin.id.as_str() && s["nsp"] == "/admin")
    );

    // The clock's stats come too, counting what happened.
    let stats = admin.expect("server_stats").await;
    let counted = stats[0]["aggregatedEvents"].as_array().unwrap();
    assert!(
        counted.iter().any(|e| e["type"] == "rawConnection"),
        "{counted:?}"
    );
    assert!(
        counted.iter().any(|e| e["type"] == "packetsIn"),
        "{counted:?}"
    );

    // The session id admits without the password, and gives no new one.
    let mut again = Admin::try_connect(t.addr, json!({ "sessionId": session }))
        .await
        .unwrap();
    assert_eq!(again.next().await.0, "config");
}

#[tokio::test]
async fn sockets_are_reported_as_they_come_authenticate_join_send_and_go() {
    let t = server(basic("srv"), None).await;
    let mut admin = Admin::connect(t.addr).await;
    admin.expect("all_sockets").await;

    let (app, id) = member(&t.url()).await;
    let connected = admin
        .expect_where("socket_connected", |a| a[0]["nsp"] == "/")
        .await;
    assert_eq!(connected[0]["id"], id.as_str());
    assert_eq!(connected[0]["rooms"], json!([id]));
    assert_iso_time(&connected[1]);
    // Then, in the order the socket's requests were handled: its data once authenticated, the
    // `join` as it came, then the room its handling joined.
    let mut seen = Vec::new();
    loop {
        let (name, args) = admin.next().await;
        let done = name == "room_joined" && args[1] == "public-a";
        seen.push((name, args));
        if done {
            break;
        }
    }
    let position = |name: &str, pick: &dyn Fn(&[Value]) -> bool| {
        seen.iter()
            .position(|(n, a)| n == name && pick(a))
            .unwrap_or_else(|| panic!("no {name} in {seen:?}"))
    };
    let updated = position("socket_updated", &|_| true);
    assert_eq!(
        seen[updated].1[0],
        json!({ "id": id, "nsp": "/", "data": { "user": "alice" } })
    );
    let received = position("event_received", &|a| a[2][0] == "join");
    assert_eq!(
        &seen[received].1[..3],
        &[
            json!("/"),
            json!(id),
            json!(["join", { "rooms": ["public-a"] }])
        ]
    );
    let joined = &seen.last().unwrap().1;
    assert_eq!(&joined[..3], &[json!("/"), json!("public-a"), json!(id)]);
    position("room_joined", &|a| a[1] == "io-default");

    app.disconnect().await;
    let gone = admin.expect("socket_disconnected").await;
    assert_eq!(
        &gone[..3],
        &[json!("/"), json!(id), json!("client namespace disconnect")]
    );
}

#[tokio::test]
async fn commands_join_leave_and_disconnect_unless_read_only() {
    let t = server(basic("srv"), None).await;
    let (mut app, id) = member(&t.url()).await;
    let mut admin = Admin::connect(t.addr).await;
    admin.expect("all_sockets").await;

    admin
        .emit("join", &[json!("/"), json!("ops"), json!(id)])
        .await;
    let joined = admin.expect("room_joined").await;
    assert_eq!(&joined[..3], &[json!("/"), json!("ops"), json!(id)]);
    assert!(rooms_of(&t, &id).contains(&"ops".to_owned()));

    admin
        .emit("leave", &[json!("/"), json!("ops"), json!(id)])
        .await;
    admin.expect("room_left").await;
    assert!(!rooms_of(&t, &id).contains(&"ops".to_owned()));

    admin
        .emit(
            "emit",
            &[
                json!("/"),
                json!(id),
                json!("announce"),
                json!({ "hi": 1 }),
                json!(2),
            ],
        )
        .await;
    assert_eq!(app.expect_event("announce").await, json!({ "hi": 1 }));

    // Junk arguments are ignored, and the admin socket goes on.
    admin.emit("join", &[json!(1), json!({}), json!([])]).await;
    admin.emit("join", &[]).await;
    admin
        .emit("_disconnect", &[json!("/"), json!(false), json!(id)])
        .await;
    app.expect_close().await;
    let gone = admin.expect("socket_disconnected").await;
    assert_eq!(
        &gone[..3],
        &[json!("/"), json!(id), json!("server namespace disconnect")]
    );

    // Read-only: no command, and the UI is told so.
    let t = server(basic("ro").readonly(true), None).await;
    let (mut app, id) = member(&t.url()).await;
    let mut admin = Admin::connect(t.addr).await;
    let config = admin.expect("config").await;
    assert_eq!(
        config[0]["supportedFeatures"],
        json!(["AGGREGATED_EVENTS", "ALL_EVENTS"])
    );
    admin
        .emit("join", &[json!("/"), json!("ops"), json!(id)])
        .await;
    admin
        .emit("_disconnect", &[json!("/"), json!(true), json!(id)])
        .await;
    // The app client still answers after the server handled what came before its sync: the
    // admin's frames came earlier on their own connection, and the next clock tick after
    // them shows the socket still there and outside `ops`.
    admin.expect("server_stats").await;
    let stats = admin.expect("server_stats").await;
    assert!(
        stats[0]["namespaces"]
            .as_array()
            .unwrap()
            .contains(&json!({ "name": "/", "socketsCount": 1 }))
    );
    app.sync().await;
    assert!(!rooms_of(&t, &id).contains(&"ops".to_owned()));
}

#[tokio::test]
async fn production_mode_sends_only_session_config_and_stats() {
    let t = server(basic("prod").mode(Mode::Production), None).await;
    let mut admin = Admin::connect(t.addr).await;
    let (_app, _id) = member(&t.url()).await;
    let mut names = Vec::new();
    // Two clock ticks after the app client came: anything else would be among them.
    while names.iter().filter(|n| *n == "server_stats").count() < 3 {
        let (name, args) = admin.next().await;
        if name == "config" {
            assert_eq!(
                args[0]["supportedFeatures"],
                json!([
                    "EMIT",
                    "JOIN",
                    "LEAVE",
                    "DISCONNECT",
                    "MJOIN",
                    "MLEAVE",
                    "MDISCONNECT",
                    "AGGREGATED_EVENTS"
                ])
            );
        }
        names.push(name);
    }
    assert_eq!(
        names,
        [
            "session",
            "config",
            "server_stats",
            "server_stats",
            "server_stats"
        ]
    );
}

#[tokio::test]
async fn instances_on_one_redis_appear_as_servers_of_one_ui_whatever_their_adapter() {
    let redis = RedisServer::start();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let a = server(
        basic("srv-a"),
        Some(RedisFanout::connect(&url).await.unwrap()),
    )
    .await;
    let b = server(
        basic("srv-b"),
        Some(RedisFanout::connect(&url).await.unwrap()),
    )
    .await;
    let (c, _server_c) =
        adapter_server(basic("srv-c"), RedisFanout::connect(&url).await.unwrap()).await;
    let (mut on_b, b_id) = member(&b.url()).await;
    let (_on_c, c_id) = TestClient::authenticated(&c.url()).await;

    let mut admin = Admin::connect(a.addr).await;
    let sockets = admin.expect("all_sockets").await;
    let remote = sockets[0]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == b_id.as_str())
        .unwrap_or_else(|| panic!("B's socket in {sockets:?}"))
        .clone();
    assert_eq!(remote["data"], json!({ "user": "alice" }));
    assert!(
        remote["rooms"]
            .as_array()
            .unwrap()
            .contains(&json!("public-a"))
    );

    assert!(
        sockets[0]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == c_id.as_str()),
        "the adapter instance's socket in {sockets:?}"
    );

    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 3 {
        let stats = admin.expect("server_stats").await;
        seen.insert(stats[0]["serverId"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ["srv-a", "srv-b", "srv-c"].map(String::from).into());

    // A's UI moves B's socket, and sees B's events.
    admin
        .emit("join", &[json!("/"), json!("ops"), json!(b_id)])
        .await;
    eventually("B's socket in ops", || {
        rooms_of(&b, &b_id).contains(&"ops".to_owned())
    })
    .await;
    on_b.emit("join", json!({ "rooms": ["public-b"] })).await;
    let joined = admin
        .expect_where("room_joined", |a| a[1] == "public-b")
        .await;
    assert_eq!(joined[2], b_id.as_str());
    admin
        .emit("_disconnect", &[json!("/"), json!(false), json!(b_id)])
        .await;
    on_b.expect_close().await;
}
