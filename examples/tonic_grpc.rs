//! gRPC (tonic) and Socket.IO on ONE port.
//!
//! What it shows:
//! - a tonic service turned into a plain tower service with `tonic::service::Routes`, and the
//!   Socket.IO stack put in front of it with `server.service_with_fallback(grpc_routes)`:
//!   requests under `/io` are Socket.IO, everything else is gRPC (a path that is no gRPC method
//!   gets the gRPC status `UNIMPLEMENTED`);
//! - one hyper-util `auto::Builder` serving both: gRPC needs HTTP/2 (cleartext, prior
//!   knowledge), Socket.IO clients speak HTTP/1.1 and upgrade to WebSocket;
//! - the gRPC service is the standard health service of the `tonic-health` crate (its code is
//!   generated in advance, so building this needs no `protoc`). It reports the overall server
//!   (`""`) and a `socket.io` entry, both `NOT_SERVING` once shutdown begins;
//! - `--self-check`: the example checks itself and exits: a tonic client asks the health
//!   service for both entries, and a `rust_socketio` client connects with `auth.token`,
//!   authenticates and calls the `echo` handler with an ack. Exit status 0 when all of that
//!   worked, 1 otherwise, so a test can run it (`SELF_CHECK_TOKEN=wrong` makes the client
//!   send a wrong token, to see it fail).
//!
//! Run it:
//!
//! ```text
//! cargo run --example tonic_grpc                     # port 3000, until Ctrl-C
//! PORT=0 cargo run --example tonic_grpc -- --self-check
//! ```
//!
//! Check it by hand (with `grpcurl`, which needs the proto files or reflection; this server
//! has no reflection, so give it the health proto):
//!
//! ```text
//! grpcurl -plaintext -proto health.proto 127.0.0.1:3000 grpc.health.v1.Health/Check
//! grpcurl -plaintext -proto health.proto -d '{"service":"socket.io"}' \
//!     127.0.0.1:3000 grpc.health.v1.Health/Check
//! curl 'http://127.0.0.1:3000/io/?EIO=4&transport=polling'      # Engine.IO handshake
//! ```
//!
//! and Socket.IO from `tests/js` (after `npm ci`):
//!
//! ```text
//! node -e "
//!   const { io } = require('socket.io-client');
//!   const s = io('http://127.0.0.1:3000', { path: '/io', auth: { token: 'demo-token' } });
//!   s.on('connect', () => s.emit('authenticate'));
//!   s.on('authenticated', () => s.emit('echo', { hi: 1 }, (r) => { console.log(r); s.close(); }));
//! "
//! ```

mod support;

use socketio_stack::serve::ServeConfig;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use rust_socketio::Payload;
use rust_socketio::asynchronous::ClientBuilder;
use serde_json::{Value, json};
use socketio_stack::extract::Data;
use socketio_stack::layers::{AuthLayer, AuthTimeoutLayer, PingLayer};
use socketio_stack::{BoxError, Handshake, SocketServer};
use socketioxide::extract::AckSender;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as PbStatus;
use tonic_health::pb::health_client::HealthClient;

/// The health entry that stands for the Socket.IO side.
const SOCKETIO_HEALTH: &str = "socket.io";
/// How long `--self-check` may take in all.
const SELF_CHECK_TIMEOUT: Duration = Duration::from_secs(20);
/// How long open connections may take to finish once shutdown has begun.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// The Socket.IO side
// ---------------------------------------------------------------------------------------------

async fn authenticate(expected: Arc<str>, hs: Arc<Handshake>) -> Result<bool, BoxError> {
    Ok(hs.auth_field("token").or(hs.bearer_token()) == Some(&*expected))
}

/// `echo`: acknowledges with the data it was given.
async fn echo(Data(data): Data<Value>, ack: AckSender) {
    ack.send(&json!({ "echo": data })).ok();
}

// ---------------------------------------------------------------------------------------------
// --self-check
// ---------------------------------------------------------------------------------------------

/// Asks the health service about `service` over gRPC (HTTP/2) on this very port.
async fn grpc_health(port: u16, service: &str) -> Result<PbStatus, BoxError> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    let mut client = HealthClient::new(channel);
    let response = client
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await?;
    Ok(response.into_inner().status())
}

/// Connects a Rust Socket.IO client, authenticates and calls `echo`; returns the ack's data.
async fn socketio_roundtrip(port: u16, token: &str) -> Result<Value, BoxError> {
    // Everything the client's callbacks see goes into one channel, read in order below.
    let (tx, mut rx) = mpsc::unbounded_channel::<(&'static str, Value)>();
    let forward = |name: &'static str| {
        let tx = tx.clone();
        move |payload: Payload, _client| {
            let data = match payload {
                Payload::Text(mut values) if !values.is_empty() => values.swap_remove(0),
                _ => Value::Null,
            };
            tx.send((name, data)).ok();
            async {}.boxed()
        }
    };
    // The path is in the URL (`/io/`); with a bare `http://host:port` the client would use
    // socket.io's default `/socket.io/`.
    let client = ClientBuilder::new(format!("http://127.0.0.1:{port}/io/"))
        .auth(json!({ "token": token }))
        .reconnect(false)
        .on(rust_socketio::Event::Connect, forward("connect"))
        .on("authenticated", forward("authenticated"))
        .on("unauthenticated", forward("unauthenticated"))
        .connect()
        .await?;

    let mut next = async |wanted: &str| -> Result<Value, BoxError> {
        loop {
            match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                Ok(Some((name, data))) if name == wanted => return Ok(data),
                Ok(Some(("unauthenticated", data))) => {
                    return Err(format!("refused: {}", data["message"]).into());
                }
                Ok(Some(_)) => continue,
                Ok(None) => return Err("client callbacks gone".into()),
                Err(_) => return Err(format!("no {wanted:?} within 5 s").into()),
            }
        }
    };
    next("connect").await?;
    client.emit("authenticate", json!({})).await?;
    let authenticated = next("authenticated").await?;
    tracing::info!(%authenticated, "self-check: authenticated");

    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
    client
        .emit_with_ack(
            "echo",
            json!({ "n": 42 }),
            Duration::from_secs(5),
            move |payload: Payload, _client| {
                ack_tx.send(payload).ok();
                async {}.boxed()
            },
        )
        .await?;
    let ack = tokio::time::timeout(Duration::from_secs(5), ack_rx.recv())
        .await
        .map_err(|_| "no ack for echo within 5 s")?
        .ok_or("ack callback gone")?;
    client.disconnect().await?;
    // rust_socketio 0.6 hands an ack over as one value, the array of the ack's arguments
    // (events, by contrast, come as one value per argument): the first argument is ours.
    match ack {
        Payload::Text(values) => match values.into_iter().next() {
            Some(Value::Array(args)) => Ok(args.into_iter().next().unwrap_or(Value::Null)),
            Some(other) => Ok(other),
            None => Ok(Value::Null),
        },
        other => Err(format!("unexpected ack payload: {other:?}").into()),
    }
}

/// Runs every check, printing one line per check on stdout; `true` when all passed.
async fn self_check(port: u16, token: &str) -> bool {
    let mut ok = true;
    for service in ["", SOCKETIO_HEALTH] {
        match grpc_health(port, service).await {
            Ok(status) => {
                println!("grpc health {service:?}: {}", status.as_str_name());
                ok &= status == PbStatus::Serving;
            }
            Err(e) => {
                println!("grpc health {service:?}: FAILED: {e}");
                ok = false;
            }
        }
    }
    match socketio_roundtrip(port, token).await {
        Ok(ack) if ack == json!({ "echo": { "n": 42 } }) => {
            println!("socket.io: authenticated, echo acked {ack}");
        }
        Ok(ack) => {
            println!("socket.io: FAILED: unexpected ack {ack}");
            ok = false;
        }
        Err(e) => {
            println!("socket.io: FAILED: {e}");
            ok = false;
        }
    }
    println!("self-check {}", if ok { "passed" } else { "FAILED" });
    ok
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() {
    support::init_logging();
    let code = match run().await {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("tonic_grpc: {e}");
            2
        }
    };
    std::process::exit(code);
}

/// Serves until a signal (or, with `--self-check`, until the checks are done); `Ok(false)`
/// when a self-check failed.
async fn run() -> Result<bool, BoxError> {
    let self_check_mode = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--self-check") => true,
        Some(other) => return Err(format!("unknown argument {other:?} (try --self-check)").into()),
    };
    let port: u16 = std::env::var("PORT").map_or(Ok(3000), |p| p.parse())?;
    let token: Arc<str> = std::env::var("AUTH_TOKEN")
        .unwrap_or_else(|_| "demo-token".into())
        .into();

    // The Socket.IO stack.
    let auth_token = token.clone();
    let server = SocketServer::builder()
        .layer(AuthLayer::new(move |hs| {
            authenticate(auth_token.clone(), hs)
        }))
        .layer(AuthTimeoutLayer::default())
        .layer(PingLayer::default())
        .on("echo", echo)
        .build()?;

    // The gRPC side: the health service, as a tower service (`Routes`, from tonic's `router`
    // feature). More services: `.add_service(...)`.
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(SOCKETIO_HEALTH, ServingStatus::Serving)
        .await;
    let grpc = tonic::service::Routes::new(health_service).prepare();

    // Socket.IO under `/io`, gRPC for everything else.
    let service = server.service_with_fallback(grpc);

    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let port = listener.local_addr()?.port();
    println!("listening on {port}");
    std::io::stdout().flush()?;

    // The token the self-check's client sends: the server's own unless SELF_CHECK_TOKEN says
    // otherwise (set it to a wrong one to see the check fail).
    let check_token = std::env::var("SELF_CHECK_TOKEN").unwrap_or_else(|_| token.to_string());
    // What ends the accept loop: a signal, or the end of the self-check.
    let until = async {
        if self_check_mode {
            tokio::select! {
                res = tokio::time::timeout(SELF_CHECK_TIMEOUT, self_check(port, &check_token)) => {
                    res.unwrap_or_else(|_| {
                        println!("self-check FAILED: not done within {SELF_CHECK_TIMEOUT:?}");
                        false
                    })
                }
                () = support::shutdown_signal() => false,
            }
        } else {
            support::shutdown_signal().await;
            true
        }
    };
    tokio::pin!(until);

    // HTTP/1.1 (Socket.IO, with the WebSocket upgrade) and HTTP/2 (gRPC) on one port: the
    // crate's accept loop (socketio_stack::serve), shared with the hyper-only example.
    let (outcome, connections) =
        socketio_stack::serve::serve_until(listener, service, ServeConfig::default(), until).await;

    tracing::info!("shutting down");
    // Tell health watchers first, then close Socket.IO, then the connections.
    for service in ["", SOCKETIO_HEALTH] {
        health
            .set_service_status(service, ServingStatus::NotServing)
            .await;
    }
    server.shutdown().await;
    connections.drain(DRAIN_TIMEOUT).await;
    tracing::info!("stopped");
    Ok(outcome)
}
