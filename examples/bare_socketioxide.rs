//! The load tool's baseline: a bare socketioxide server honouring the demo's contract
//! (`shared/DESIGN.md`) with none of this crate's layers, no rate limit, no Redis.
//!
//! ```text
//! PORT=3001 cargo run --release --example bare_socketioxide
//! cargo run --release --example load -- --url http://127.0.0.1:3001 --scenario connect
//! ```
//!
//! It does the least the contract needs so that the load tool's scenarios run unchanged:
//! the handshake's `auth.token` is checked once, `authenticate` answers `authenticated`
//! {id, time} and joins `io-default`, `join` takes rooms starting with `public-`,
//! `POST /send`, `GET /health`, `GET /stats` as in the demo. Variables: `PORT` (3000),
//! `HOST` (127.0.0.1), `IO_PATH` (/io), `AUTH_TOKEN` (demo-token). Figures set side by side
//! with the demo's are in BENCHMARKS.md.

mod support;

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use socketio_stack::serve::{ServeConfig, bind, raise_open_file_limit, serve_until};
use socketioxide::SocketIo;
use socketioxide::extract::{Data, SocketRef};
use socketioxide::handler::ConnectHandler;

#[derive(Deserialize)]
struct SendBody {
    #[serde(default)]
    destination: Option<String>,
    topic: String,
    #[serde(default)]
    data: Value,
}

#[derive(Deserialize)]
struct Join {
    rooms: Vec<String>,
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn on_connect(socket: SocketRef, Data(auth): Data<Value>, token: &str) {
    let accepted = auth.get("token").and_then(Value::as_str) == Some(token);
    socket.on("authenticate", async move |socket: SocketRef| {
        if !accepted {
            socket
                .emit(
                    "unauthenticated",
                    &json!({"message": "Invalid token", "time": now_millis()}),
                )
                .ok();
            socket.disconnect().ok();
            return;
        }
        socket.join(["io-default", "io-notification"]);
        socket
            .emit(
                "authenticated",
                &json!({"id": socket.id.to_string(), "time": now_millis()}),
            )
            .ok();
    });
    socket.on("join", async |socket: SocketRef, Data(join): Data<Join>| {
        socket.join(
            join.rooms
                .into_iter()
                .filter(|r| r.starts_with("public-"))
                .collect::<Vec<_>>(),
        );
    });
}

async fn send(State(io): State<SocketIo>, Json(req): Json<SendBody>) -> impl IntoResponse {
    let result = match req.destination.filter(|d| !d.is_empty()) {
        Some(room) => io.to(room).emit(&req.topic, &req.data).await,
        None => io.emit(&req.topic, &req.data).await,
    };
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

async fn stats(State(io): State<SocketIo>) -> impl IntoResponse {
    let clients = io.sockets().len();
    Json(
        json!({ "clients": clients, "rss": support::resident_bytes(), "cpu_us": support::cpu_micros() }),
    )
}

#[tokio::main]
async fn main() {
    support::init_logging();
    if let Err(e) = run().await {
        eprintln!("bare_socketioxide: {e}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let port: u16 = std::env::var("PORT").map_or(Ok(3000), |p| p.parse())?;
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let path = std::env::var("IO_PATH").unwrap_or_else(|_| "/io".into());
    let token = std::env::var("AUTH_TOKEN").unwrap_or_else(|_| "demo-token".into());
    raise_open_file_limit().ok();

    let (layer, io) = SocketIo::builder().req_path(path).build_layer();
    let token: std::sync::Arc<str> = token.into();
    // The handlers are registered in a connect middleware, which socketioxide runs before it
    // sends the namespace's CONNECT. In the connect handler itself (spawned after CONNECT is
    // sent) they would race the client's first event: an `authenticate` sent at once was
    // dropped in about 1 of 1,000 handshakes.
    let register = async move |socket: SocketRef, auth: Data<Value>| {
        on_connect(socket, auth, &token);
        Ok::<(), std::convert::Infallible>(())
    };
    io.ns("/", (async |_: SocketRef| {}).with(register));
    let app = Router::new()
        .route("/send", post(send))
        .route("/health", get(|| async { "ok" }))
        .route("/stats", get(stats))
        .with_state(io)
        .layer(layer);

    let config = ServeConfig::default();
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await?
        .next()
        .ok_or("HOST does not resolve")?;
    let listener = bind(addr, config.backlog)?;
    println!("listening on {}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    let ((), connections) = serve_until(listener, app, config, support::shutdown_signal()).await;
    connections.drain(std::time::Duration::from_secs(5)).await;
    Ok(())
}
