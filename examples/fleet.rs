//! A member of a mixed fleet (Node socket.io servers with `@socket.io/redis-adapter` and ours
//! on one Redis) that shows, over HTTP, every operation that crosses it: acknowledged
//! broadcasts, server-side emits, fetching sockets and rooms, remote joins, leaves and
//! disconnects. `tests/js/fleet.test.mjs` drives it beside Node servers.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 PORT=0 cargo run --example fleet
//! REDIS_URL=redis://127.0.0.1:7000 REDIS_SHARDED=dynamic PORT=0 cargo run --example fleet
//! ```
//!
//! `REDIS_SHARDED` (`static`, `dynamic` or `dynamic-private`) speaks the wire of
//! `createShardedAdapter` in that subscription mode, on a Redis Cluster (the URL of one of its
//! nodes) or one redis-server 7.
//!
//! A client connects with `auth: {name, room?}`, to `/`, `/admin` or any `/tenant/{id}` (a
//! dynamic namespace), all through the same layers: its identity (socket.io's `socket.data`)
//! is `{name}`, and it joins `room` when given. A client without a name is refused.
//! Every route takes a `namespace` (`/` when unset) where it acts on sockets. In arguments
//! and answers, `{"$hex": "00ff"}` stands for binary data.
//!
//! | route | what |
//! | --- | --- |
//! | `POST /emit {room?, event, args}` | `io.of(namespace).to(room).emit(..)` through the adapter |
//! | `POST /ack-broadcast {room?, event, args, timeout_ms}` | `io.to(room).timeout(..).emit_with_ack(..)` through the adapter → `{responses, timeouts}` |
//! | `POST /server-side-emit {event, args, ack, timeout_ms?}` | `fleet().server_side_emit[_with_ack]` → `{responses}`, or 504 `{error, responses}` |
//! | `GET /fetch-sockets?room=&timeout_ms=` | `fleet().within(room).fetch_sockets()` → the sockets, or 504 |
//! | `GET /socket-ids?room=` | `fleet().within(room).socket_ids()` (the adapter's `SOCKETS` question) |
//! | `GET /rooms` | `fleet().rooms()`; `GET /io-rooms`: socketioxide's `io.rooms()` through the adapter |
//! | `GET /server-count` | `fleet().server_count()` |
//! | `POST /join`, `POST /leave` `{room?, rooms}`; `POST /disconnect {room?}` | `fleet().within(room).join(..)` … |
//! | `GET /server-side-log` | the server-side emits this server's `whoami` handler got |
//!
//! The `whoami` server-side handler answers `{server: "rust", port, arg}`.
//! Prints `listening on <port>` on stdout once ready.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use socketio_stack::args::{Arg, Args};
use socketio_stack::fanout::{FleetError, RedisAdapter, RedisFanout, RedisOptions};
use socketio_stack::layers::HandshakeAuthLayer;
use socketio_stack::serve::{ServeConfig, bind, serve_until};
use socketio_stack::{BoxError, Handshake, Session, SocketServer};
use socketioxide::extract::SocketRef;
use socketioxide::operators::BroadcastOperators;
use tower::Layer;

/// Who a client is: the name it gave.
#[derive(Clone, Serialize)]
struct Member {
    name: String,
}

#[derive(Clone)]
struct App {
    server: SocketServer<RedisAdapter>,
    fanout: RedisFanout,
    log: Arc<Mutex<Vec<Value>>>,
}

async fn admit(hs: Arc<Handshake>) -> Result<Option<Member>, BoxError> {
    Ok(hs
        .auth
        .get("name")
        .and_then(Value::as_str)
        .map(|name| Member { name: name.into() }))
}

/// Arguments from JSON, where `{"$hex": "00ff"}` stands for binary data (JSON has none).
fn from_json(values: Vec<Value>) -> Args {
    fn arg(v: Value) -> Arg {
        match v {
            Value::Object(map) if map.len() == 1 && map.contains_key("$hex") => {
                let hex = map["$hex"].as_str().unwrap_or_default();
                let bytes = (0..hex.len() / 2)
                    .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
                    .collect::<Vec<u8>>();
                Arg::Binary(bytes.into())
            }
            Value::Array(items) => Arg::Array(items.into_iter().map(arg).collect()),
            Value::Object(map) => Arg::Object(map.into_iter().map(|(k, v)| (k, arg(v))).collect()),
            other => Arg::from(other),
        }
    }
    values.into_iter().map(arg).collect()
}

/// An argument as JSON, binary data as `{"$hex": ..}`.
fn shown(arg: &Arg) -> Value {
    match arg {
        Arg::Binary(bytes) => {
            json!({ "$hex": bytes.iter().map(|b| format!("{b:02x}")).collect::<String>() })
        }
        Arg::Array(items) => Value::Array(items.iter().map(shown).collect()),
        Arg::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), shown(v))).collect()),
        other => other.to_json().unwrap_or(Value::Null),
    }
}

#[derive(Deserialize)]
struct AckBroadcast {
    namespace: Option<String>,
    room: Option<String>,
    event: String,
    #[serde(default)]
    args: Vec<Value>,
    timeout_ms: u64,
}

/// The namespace `nsp` (`/` when unset) as socketioxide's broadcast operator, if it exists.
fn namespace(app: &App, nsp: Option<&str>) -> Option<BroadcastOperators<RedisAdapter>> {
    app.server.io().of(nsp.unwrap_or("/"))
}

async fn ack_broadcast(State(app): State<App>, Json(req): Json<AckBroadcast>) -> Response {
    let Some(ns) = namespace(&app, req.namespace.as_deref()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let timeout = Duration::from_millis(req.timeout_ms);
    let op = match req.room {
        Some(room) => ns.to(room).timeout(timeout),
        None => ns.timeout(timeout),
    };
    let args = from_json(req.args);
    let acks = op.emit_with_ack::<_, Arg>(&req.event, &args).await;
    let acks = match acks {
        Ok(acks) => acks,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let (mut responses, mut timeouts) = (Vec::new(), 0);
    let mut acks = std::pin::pin!(acks);
    while let Some((_, ack)) = acks.next().await {
        match ack {
            Ok(arg) => responses.push(shown(&arg)),
            Err(_) => timeouts += 1,
        }
    }
    Json(json!({ "responses": responses, "timeouts": timeouts })).into_response()
}

#[derive(Deserialize)]
struct Emit {
    namespace: Option<String>,
    room: Option<String>,
    event: String,
    #[serde(default)]
    args: Vec<Value>,
}

async fn emit(State(app): State<App>, Json(req): Json<Emit>) -> Response {
    let Some(ns) = namespace(&app, req.namespace.as_deref()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let op = match req.room {
        Some(room) => ns.to(room),
        None => ns,
    };
    match op.emit(&req.event, &from_json(req.args)).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

#[derive(Deserialize)]
struct ServerSideEmit {
    event: String,
    #[serde(default)]
    args: Vec<Value>,
    #[serde(default)]
    ack: bool,
    timeout_ms: Option<u64>,
}

async fn server_side_emit(State(app): State<App>, Json(req): Json<ServerSideEmit>) -> Response {
    let mut fleet = app.fanout.fleet();
    if let Some(ms) = req.timeout_ms {
        fleet = fleet.timeout(Duration::from_millis(ms));
    }
    let args = from_json(req.args);
    if !req.ack {
        return match fleet.server_side_emit(&req.event, args).await {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => failure(e),
        };
    }
    match fleet.server_side_emit_with_ack(&req.event, args).await {
        Ok(replies) => {
            let responses: Vec<Value> = replies.iter().map(shown).collect();
            Json(json!({ "responses": responses })).into_response()
        }
        Err(e) => failure(e),
    }
}

/// 504 with what came, when the fleet did not answer in time; 502 when Redis failed.
fn failure(e: FleetError) -> Response {
    let status = match e {
        FleetError::TimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    };
    let responses: Vec<Value> = match &e {
        FleetError::TimedOut { replies, .. } => replies.iter().map(shown).collect(),
        _ => Vec::new(),
    };
    (
        status,
        Json(json!({ "error": e.to_string(), "responses": responses })),
    )
        .into_response()
}

#[derive(Deserialize)]
struct Target {
    namespace: Option<String>,
    room: Option<String>,
    timeout_ms: Option<u64>,
    #[serde(default)]
    rooms: Vec<String>,
}

impl Target {
    fn fleet<'a>(&self, fanout: &'a RedisFanout) -> socketio_stack::fanout::Fleet<'a> {
        let mut fleet = fanout.fleet();
        if let Some(nsp) = &self.namespace {
            fleet = fleet.namespace(nsp.clone());
        }
        if let Some(room) = &self.room {
            fleet = fleet.within(room.clone());
        }
        if let Some(ms) = self.timeout_ms {
            fleet = fleet.timeout(Duration::from_millis(ms));
        }
        fleet
    }

    fn rooms(&self) -> Vec<&str> {
        self.rooms.iter().map(String::as_str).collect()
    }
}

async fn fetch_sockets(State(app): State<App>, Query(target): Query<Target>) -> Response {
    match target.fleet(&app.fanout).fetch_sockets().await {
        Ok(sockets) => Json(sockets).into_response(),
        Err(e) => failure(e),
    }
}

async fn socket_ids(State(app): State<App>, Query(target): Query<Target>) -> Response {
    match target.fleet(&app.fanout).socket_ids().await {
        Ok(ids) => Json(ids).into_response(),
        Err(e) => failure(e),
    }
}

async fn rooms(State(app): State<App>) -> Response {
    match app.fanout.fleet().rooms().await {
        Ok(rooms) => Json(rooms).into_response(),
        Err(e) => failure(e),
    }
}

async fn io_rooms(State(app): State<App>) -> Response {
    match app.server.io().rooms().await {
        Ok(rooms) => Json(rooms.iter().map(|r| r.to_string()).collect::<Vec<_>>()).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

async fn server_count(State(app): State<App>) -> Response {
    match app.fanout.fleet().server_count().await {
        Ok(n) => Json(n).into_response(),
        Err(e) => failure(e),
    }
}

async fn join(State(app): State<App>, Json(target): Json<Target>) -> Response {
    done(target.fleet(&app.fanout).join(&target.rooms()).await)
}

async fn leave(State(app): State<App>, Json(target): Json<Target>) -> Response {
    done(target.fleet(&app.fanout).leave(&target.rooms()).await)
}

async fn disconnect(State(app): State<App>, Json(target): Json<Target>) -> Response {
    done(target.fleet(&app.fanout).disconnect(true).await)
}

fn done(result: Result<(), FleetError>) -> Response {
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => failure(e),
    }
}

#[tokio::main]
async fn main() {
    support::init_logging();
    if let Err(e) = run().await {
        eprintln!("fleet: {e}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), BoxError> {
    let url = std::env::var("REDIS_URL").map_err(|_| "REDIS_URL is required")?;
    let port: u16 = std::env::var("PORT")
        .ok()
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(3000);
    let mut options = RedisOptions::new(url);
    if let Ok(mode) = std::env::var("REDIS_SHARDED") {
        options = options.sharded(mode.parse()?);
    }
    let fanout = RedisFanout::connect_with_options(options).await?;
    let server = SocketServer::builder_with_redis_adapter(fanout.clone())
        .namespace("/admin")
        .dynamic_namespace("/tenant/{id}")
        .layer(HandshakeAuthLayer::new(admit).timeout(Duration::from_secs(2)))
        .on_connect(async |socket: SocketRef<RedisAdapter>, session: Session| {
            if let Some(room) = session.handshake().auth.get("room").and_then(Value::as_str) {
                socket.join(room.to_owned());
            }
        })
        .build()?;

    let listener = bind(
        ([127, 0, 0, 1], port).into(),
        ServeConfig::default().backlog,
    )?;
    let port = listener.local_addr()?.port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let handler_log = log.clone();
    fanout.on_server_side_emit("whoami", move |args: Args| {
        let log = handler_log.clone();
        async move {
            let arg = args.first().map(shown).unwrap_or(Value::Null);
            log.lock().unwrap().push(arg.clone());
            Arg::from(json!({ "server": "rust", "port": port, "arg": arg }))
        }
    });

    let app = App {
        server: server.clone(),
        fanout,
        log,
    };
    let routes = Router::new()
        .route("/ack-broadcast", post(ack_broadcast))
        .route("/emit", post(emit))
        .route("/server-side-emit", post(server_side_emit))
        .route("/fetch-sockets", get(fetch_sockets))
        .route("/socket-ids", get(socket_ids))
        .route("/rooms", get(rooms))
        .route("/io-rooms", get(io_rooms))
        .route("/server-count", get(server_count))
        .route("/join", post(join))
        .route("/leave", post(leave))
        .route("/disconnect", post(disconnect))
        .route(
            "/server-side-log",
            get(|State(app): State<App>| async move { Json(app.log.lock().unwrap().clone()) }),
        )
        .with_state(app);
    let service = server.layer().layer(routes);
    println!("listening on {port}");
    std::io::stdout().flush()?;
    let ((), connections) = serve_until(
        listener,
        service,
        ServeConfig::default(),
        support::shutdown_signal(),
    )
    .await;
    server.shutdown().await;
    connections.drain(Duration::from_secs(2)).await;
    Ok(())
}
