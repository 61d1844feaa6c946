//! The demo server: the full stack, configured by environment, as `shared/DESIGN.md` specifies.
//!
//! ```text
//! cargo run --release --example demo
//! PORT=0 AUTH_TIMEOUT_MS=500 cargo run --example demo   # ephemeral port, short deadline
//! ```
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | PORT | 3000 | listen port (0: any free port; the one chosen is printed) |
//! | HOST | 127.0.0.1 | listen address |
//! | IO_PATH | /io | Socket.IO path |
//! | REDIS_URL | unset | `redis://[user:password@]host:port` or `rediss://…` (TLS): deliver through Redis (every instance on it); unset: local delivery |
//! | CORS_ORIGINS | unset | comma-separated origins (`https://app.example.com,http://localhost:8080`) whose pages may use the server: CORS on every route, Socket.IO's long-polling included, and a `403` for a request from any other origin, a WebSocket upgrade included (CORS does not cover those); unset: no CORS, no origin check |
//! | REDIS_SHARDED | 0 | `1`: speak `createShardedAdapter`'s wire on Redis 7's sharded pub/sub (a Redis Cluster node's URL, or one redis-server 7) |
//! | REDIS_SUBSCRIPTION_MODE | dynamic | with `REDIS_SHARDED=1`: `static`, `dynamic` or `dynamic-private`, as the fleet's Node servers |
//! | REDIS_CA_FILE | unset | a PEM file of the authorities that signed a `rediss://` server's certificate (unset: the system's) |
//! | AUTH_TOKEN | demo-token | the accepted token (`auth.token` or `authorization: Bearer`); `boom` fails |
//! | AUTH_AT | event | `event`: the seeds' `authenticate` event; `handshake`: at the CONNECT (socket.io's `io.use`), a bad token refused with `connect_error` |
//! | AUTH_TIMEOUT_MS | 10000 | authentication deadline (with `AUTH_AT=handshake`: how long the function may take) |
//! | PING_INTERVAL_MS | 30000 | keep-alive interval |
//! | HEADER_TIMEOUT_MS | 10000 | a connection's request headers must arrive within it |
//! | MAX_CONNECTIONS | unset | connections served at once; past it, `503` (unset: no cap) |
//! | WRITE_TIMEOUT_MS | 30000 | a write to a client may make no progress this long, then its connection is shut down |
//! | IDLE_TIMEOUT_MS | 30000 | a connection (HTTP/1 or HTTP/2) with no request in flight this long is closed |
//! | ADMIN_UI | 0 | `1`: serve the Socket.IO Admin UI's namespace `/admin` (`@socket.io/admin-ui`; see the README) |
//! | ADMIN_USER | admin | with `ADMIN_UI=1`: the UI's user name |
//! | ADMIN_PASSWORD_HASH | unset | with `ADMIN_UI=1`, required: the bcrypt hash of the UI's password (`$2a$`/`$2b$`, as bcryptjs or `htpasswd -nbBC 10 "" password` make it) |
//! | ADMIN_READONLY | 0 | with `ADMIN_UI=1`: `1` ignores the UI's commands (join, leave, disconnect) |
//! | ADMIN_PRODUCTION | 0 | with `ADMIN_UI=1`: `1` sends the UI only the servers' stats |
//! | ADMIN_SERVER_ID | host name | with `ADMIN_UI=1`: this instance's id in the UI (instances on one machine need their own) |
//!
//! Each client may send 100 events/s (bursts of 200) and 20 `authenticate`/`join`/`leave` per
//! second (bursts of 40); beyond that its events are dropped. Rooms starting with `public-`
//! may be joined. HTTP on the same port: `POST /send`
//! `{destination?, topic, data, volatile?}` (or `args: [...]` for several arguments in place of
//! `data`) → 204 (also when dropped for a missing or falsy
//! topic or data), 400 for a reserved topic such as `disconnect`; `GET /health` → `ok`,
//! `GET /stats` → `{clients, rss, cpu_us}`, `GET /metrics` → every layer's metrics in Prometheus'
//! text format (`socketio_stack::telemetry`).
//! Prints `listening on <port>` on stdout when ready; logs go to stderr. It raises its
//! open-file limit to the hard limit at start, and on SIGINT or SIGTERM shuts down gracefully
//! (its clients told, then Redis, then 5 s for the HTTP connections to finish). This header is
//! the demo's contract: the black-box suites (tests/js, tests/examples.rs) rely on it.

mod support;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, ORIGIN};
use axum::http::{HeaderValue, Method, Request};
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use socketio_stack::admin_ui::{AdminUi, Mode};
use socketio_stack::fanout::SubscriptionMode;
use socketio_stack::fanout::{RedisFanout, RedisOptions};
use socketio_stack::layers::event_rate_limit::Bucket;
use socketio_stack::layers::{
    AuthLayer, AuthTimeoutLayer, EventRateLimitLayer, HandshakeAuthLayer, PingLayer, RoomsLayer,
};
use socketio_stack::serve::{ServeConfig, bind, raise_open_file_limit, serve_until};
use socketio_stack::{BoxError, Handshake, OutboundMessage, SendError, Session, SocketServer};
use tower::Layer;
use tower::util::Either;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::map_response_body::MapResponseBodyLayer;
use tower_http::trace::TraceLayer;
use tower_http::validate_request::{ValidateRequest, ValidateRequestHeaderLayer};

struct Config {
    redis_url: Option<String>,
    cors_origins: Option<Vec<HeaderValue>>,
    redis_ca_file: Option<String>,
    redis_sharded: Option<SubscriptionMode>,
    header_timeout: Duration,
    max_connections: Option<usize>,
    write_timeout: Duration,
    idle_timeout: Duration,
    host: String,
    port: u16,
    io_path: String,
    token: String,
    auth_at_handshake: bool,
    auth_timeout: Duration,
    ping_interval: Duration,
    admin_ui: Option<AdminUi>,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn env_number(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name} must be a whole number, got {v:?}")),
        Err(_) => Ok(default),
    }
}

/// `0` or `1` (unset: `0`).
fn env_flag(name: &str) -> Result<bool, String> {
    match env_or(name, "0").as_str() {
        "0" => Ok(false),
        "1" => Ok(true),
        other => Err(format!("{name} must be 0 or 1, got {other:?}")),
    }
}

/// CORS_ORIGINS, each an origin as a browser sends it (`scheme://host[:port]`, no path).
fn cors_origins() -> Result<Option<Vec<HeaderValue>>, String> {
    let Ok(list) = std::env::var("CORS_ORIGINS") else {
        return Ok(None);
    };
    let origins: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .collect();
    if origins.is_empty() {
        return Err("CORS_ORIGINS is set but names no origin".into());
    }
    origins
        .into_iter()
        .map(|origin| {
            let url = origin
                .strip_prefix("https://")
                .or(origin.strip_prefix("http://"));
            match url {
                Some(host) if !host.is_empty() && !host.contains('/') => {
                    HeaderValue::from_str(origin)
                        .map_err(|_| format!("CORS_ORIGINS: {origin:?} is not a valid origin"))
                }
                _ => Err(format!(
                    "CORS_ORIGINS: {origin:?} is not an origin (scheme://host[:port], no path)"
                )),
            }
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// Refuses (`403`) a request whose `Origin` is not one of CORS_ORIGINS: a page of another
/// origin gets no CORS headers, but a WebSocket upgrade is not subject to CORS, so the browser
/// would let it through. Requests without `Origin` (not from a browser page) pass.
#[derive(Clone)]
struct OriginCheck(Arc<[HeaderValue]>);

impl<B> ValidateRequest<B> for OriginCheck {
    type ResponseBody = axum::body::Body;

    fn validate(&mut self, req: &mut Request<B>) -> Result<(), Response> {
        match req.headers().get(ORIGIN) {
            Some(origin) if !self.0.contains(origin) => {
                let path = req.uri().path();
                tracing::info!(?origin, path, "request from an origin not allowed");
                Err((StatusCode::FORBIDDEN, "origin not allowed").into_response())
            }
            _ => Ok(()),
        }
    }
}

/// The Admin UI, with `ADMIN_UI=1`: its password hash is required.
fn admin_ui() -> Result<Option<AdminUi>, String> {
    if !env_flag("ADMIN_UI")? {
        return Ok(None);
    }
    let hash = std::env::var("ADMIN_PASSWORD_HASH")
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or(
            "ADMIN_UI=1 needs ADMIN_PASSWORD_HASH, the bcrypt hash of the UI's password \
             (e.g. htpasswd -nbBC 10 \"\" secret | cut -c2-)",
        )?;
    let mut admin = AdminUi::new()
        .basic_auth(env_or("ADMIN_USER", "admin"), hash)
        .readonly(env_flag("ADMIN_READONLY")?);
    if env_flag("ADMIN_PRODUCTION")? {
        admin = admin.mode(Mode::Production);
    }
    if let Some(id) = std::env::var("ADMIN_SERVER_ID")
        .ok()
        .filter(|v| !v.is_empty())
    {
        admin = admin.server_id(id);
    }
    Ok(Some(admin))
}

fn config() -> Result<Config, String> {
    let port = env_number("PORT", 3000)?;
    Ok(Config {
        redis_url: std::env::var("REDIS_URL").ok().filter(|v| !v.is_empty()),
        cors_origins: cors_origins()?,
        redis_ca_file: std::env::var("REDIS_CA_FILE")
            .ok()
            .filter(|v| !v.is_empty()),
        redis_sharded: match env_or("REDIS_SHARDED", "0").as_str() {
            "0" => None,
            "1" => Some(env_or("REDIS_SUBSCRIPTION_MODE", "dynamic").parse()?),
            other => return Err(format!("REDIS_SHARDED must be 0 or 1, got {other:?}")),
        },
        header_timeout: Duration::from_millis(env_number("HEADER_TIMEOUT_MS", 10_000)?),
        max_connections: match std::env::var("MAX_CONNECTIONS") {
            Ok(_) => Some(env_number("MAX_CONNECTIONS", 0)? as usize),
            Err(_) => None,
        },
        write_timeout: match env_number("WRITE_TIMEOUT_MS", 30_000)? {
            0 => return Err("WRITE_TIMEOUT_MS must be above 0".into()),
            ms => Duration::from_millis(ms),
        },
        idle_timeout: match env_number("IDLE_TIMEOUT_MS", 30_000)? {
            0 => return Err("IDLE_TIMEOUT_MS must be above 0".into()),
            ms => Duration::from_millis(ms),
        },
        host: env_or("HOST", "127.0.0.1"),
        port: u16::try_from(port).map_err(|_| format!("PORT must be at most 65535, got {port}"))?,
        io_path: env_or("IO_PATH", "/io"),
        token: env_or("AUTH_TOKEN", "demo-token"),
        auth_at_handshake: match env_or("AUTH_AT", "event").as_str() {
            "event" => false,
            "handshake" => true,
            other => return Err(format!("AUTH_AT must be event or handshake, got {other:?}")),
        },
        auth_timeout: Duration::from_millis(env_number("AUTH_TIMEOUT_MS", 10_000)?),
        ping_interval: Duration::from_millis(env_number("PING_INTERVAL_MS", 30_000)?),
        admin_ui: admin_ui()?,
    })
}

/// Accepts the configured token from `auth.token` or `authorization: Bearer` (either one
/// matching is enough); `boom` in either makes the function fail.
async fn authenticate(token: Arc<str>, hs: Arc<Handshake>) -> Result<bool, BoxError> {
    let given = [hs.auth_field("token"), hs.bearer_token()];
    if given.contains(&Some("boom")) {
        return Err("the token `boom` makes the demo's authenticate function fail".into());
    }
    Ok(given.contains(&Some(&*token)))
}

async fn validate(_session: Session, rooms: Vec<String>) -> Result<Vec<String>, BoxError> {
    Ok(rooms
        .into_iter()
        .filter(|r| r.starts_with("public-"))
        .collect())
}

async fn send(
    State(server): State<SocketServer>,
    Json(req): Json<OutboundMessage>,
) -> impl IntoResponse {
    match server.send(req).await {
        // Sent, or dropped as the seeds drop a send without topic or data.
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        // The caller's mistake, not the delivery's.
        Err(e @ SendError::ReservedTopic(_)) => {
            (StatusCode::BAD_REQUEST, e.to_string()).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

async fn stats(State(server): State<SocketServer>) -> impl IntoResponse {
    Json(serde_json::json!({
        "clients": server.client_count(),
        "rss": support::resident_bytes(),
        "cpu_us": support::cpu_micros(),
    }))
}

#[tokio::main]
async fn main() {
    support::init_logging();
    if let Err(e) = run().await {
        eprintln!("demo: {e}");
        std::process::exit(2);
    }
}

/// Installs the Prometheus recorder every layer reports to: histograms with buckets (so that
/// `histogram_quantile` works across instances), kept up to date by a task of their own.
fn install_metrics() -> Result<PrometheusHandle, BoxError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".to_owned()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ],
        )?
        .install_recorder()?;
    socketio_stack::telemetry::describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

async fn run() -> Result<(), BoxError> {
    let config = config()?;
    let metrics = install_metrics()?;
    if let Err(e) = raise_open_file_limit() {
        tracing::warn!(error = %e, "could not raise the open-file limit");
    }
    let token: Arc<str> = config.token.into();
    let mut builder = SocketServer::builder();
    if let Some(url) = &config.redis_url {
        let mut options = RedisOptions::new(url);
        if let Some(path) = &config.redis_ca_file {
            let pem = std::fs::read(path).map_err(|e| format!("REDIS_CA_FILE {path}: {e}"))?;
            options = options.root_certificates_pem(pem);
        }
        if let Some(mode) = config.redis_sharded {
            options = options.sharded(mode);
        }
        // Fails, and the demo does not start, when Redis is unreachable or refuses the login.
        builder = builder.fanout(RedisFanout::connect_with_options(options).await?);
        tracing::info!(sharded = ?config.redis_sharded, "delivering through Redis");
    }
    if let Some(admin) = config.admin_ui {
        tracing::info!(?admin, "serving the Admin UI");
        builder = builder.admin_ui(admin);
    }
    let server = builder
        .path(config.io_path)
        // First, so that it bounds everything a client sends, authentication included.
        .layer(
            EventRateLimitLayer::default()
                .events(Bucket::new(100.0, 200)?)
                .control(Bucket::new(20.0, 40)?),
        )
        .layer(if config.auth_at_handshake {
            Either::Right(
                HandshakeAuthLayer::new(move |hs| authenticate(token.clone(), hs))
                    .timeout(config.auth_timeout),
            )
        } else {
            Either::Left(AuthLayer::new(move |hs| authenticate(token.clone(), hs)))
        })
        .try_layer(AuthTimeoutLayer::new(config.auth_timeout))
        .try_layer(PingLayer::new(config.ping_interval))
        .layer(RoomsLayer::new().validate(validate))
        .build()?;

    let routes = Router::new()
        .route("/send", post(send))
        .route("/health", get(|| async { "ok" }))
        .route("/stats", get(stats))
        .route(
            "/metrics",
            get(move || {
                let text = metrics.render();
                async move { ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
            }),
        )
        .with_state(server.clone())
        .layer(TraceLayer::new_for_http());
    // Socket.IO in front of the router rather than inside it (`Router::layer`): axum keeps a
    // copy of each request's URI, which would pin every client's HTTP read buffer.
    let app = server.layer().layer(routes);
    // Outermost, so that they cover the Socket.IO path too: the origin check, then CORS (its
    // preflights answered here), over one body type.
    let cors = config.cors_origins.map(|allowed| {
        let headers = CorsLayer::new()
            .allow_origin(AllowOrigin::list(allowed.clone()))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([CONTENT_TYPE, AUTHORIZATION]);
        let check = ValidateRequestHeaderLayer::custom(OriginCheck(allowed.into()));
        (check, headers)
    });
    let (check, headers) = cors.unzip();
    let app = tower::ServiceBuilder::new()
        .option_layer(check)
        .option_layer(headers)
        .layer(MapResponseBodyLayer::new(axum::body::Body::new))
        .service(app);

    // Connection bounds: headers within HEADER_TIMEOUT_MS, at most MAX_CONNECTIONS at once
    // (the others get a 503), writes stalled at most WRITE_TIMEOUT_MS, idle connections
    // closed after IDLE_TIMEOUT_MS, a listen backlog for connection storms.
    let serve_config = ServeConfig {
        header_read_timeout: config.header_timeout,
        max_connections: config.max_connections,
        write_timeout: Some(config.write_timeout),
        idle_timeout: config.idle_timeout,
        ..ServeConfig::default()
    };
    let addr = tokio::net::lookup_host((config.host.as_str(), config.port))
        .await?
        .next()
        .ok_or("HOST does not resolve")?;
    let listener = bind(addr, serve_config.backlog)?;
    let port = listener.local_addr()?.port();
    tracing::info!(addr = %listener.local_addr()?, "serving");
    println!("listening on {port}");
    std::io::stdout().flush()?;

    let ((), connections) =
        serve_until(listener, app, serve_config, support::shutdown_signal()).await;
    tracing::info!("shutting down");
    // The seeds' order: clients (told, timers cleared), the IO server, Redis; then the HTTP
    // connections get 5 s to finish.
    server.shutdown().await;
    connections.drain(Duration::from_secs(5)).await;
    Ok(())
}
