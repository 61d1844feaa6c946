//! Each layer alone, driven with synthetic lifecycle requests over a no-op inner service (no
//! network), next to the bare core, so each layer's cost reads as a ratio to it.
//!
//! ```text
//! cargo bench --features test-util --bench layers
//! # The metrics' cost: the feature off, then on with a Prometheus recorder installed.
//! cargo bench --no-default-features --features test-util --bench layers -- layer/
//! BENCH_RECORDER=prometheus cargo bench --features test-util --bench layers -- layer/
//! ```

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use socketio_stack::OutboundMessage;
use socketio_stack::fanout::wire::{self, Broadcast};
use socketio_stack::layers::event_rate_limit::Bucket;
use socketio_stack::layers::{
    AuthLayer, AuthTimeoutLayer, EventRateLimitLayer, HandshakeAuthLayer, Next, PingLayer,
    RoomsLayer, from_fn,
};
use socketio_stack::socket_core::CoreService;
use socketio_stack::testing::{Noop, TestSocket, event};
use socketio_stack::{BoxError, ClientState, Identity, RequestKind, Session, SocketRequest};
use socketioxide::socket::DisconnectReason;
use tower::{Layer, Service, ServiceExt};

#[derive(Clone, serde::Serialize)]
struct User {
    name: String,
}

async fn allow_all(_s: Session, rooms: Vec<String>) -> Result<Vec<String>, BoxError> {
    Ok(rooms)
}

/// With `BENCH_RECORDER=prometheus`, every report goes to a Prometheus recorder, as in an
/// application that exports its metrics (without one, a report is an atomic load).
fn install_recorder() {
    if std::env::var("BENCH_RECORDER").as_deref() == Ok("prometheus") {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("the first recorder of this process");
    }
}

fn layers(c: &mut Criterion) {
    install_recorder();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t = rt.block_on(TestSocket::new());
    t.session.set_state(ClientState::Authenticated);

    let mut group = c.benchmark_group("layer");
    group.measurement_time(Duration::from_secs(3));

    // What every case below pays before any layer runs: making the request (its JSON data
    // included) and calling a service that does nothing.
    group.bench_function("baseline: request into a no-op service", |b| {
        b.to_async(&rt).iter(|| {
            let req = t.request(event("chat", json!({"text": "hi"})));
            async move { Noop.call(req).await.unwrap() }
        })
    });

    let core = CoreService::builder()
        .on("chat", async || {})
        .build()
        .unwrap();
    group.bench_function("core: event to a handler", |b| {
        b.to_async(&rt).iter(|| {
            let mut core = core.clone();
            let req = t.request(event("chat", json!({"text": "hi"})));
            async move { core.call(req).await.unwrap() }
        })
    });

    // A handler that reads the socket's identity: the cost of the extractor on the hot path.
    t.session.set_identity(User { name: "ann".into() });
    let with_identity = CoreService::builder()
        .on("chat", async |Identity(user): Identity<User>| {
            std::hint::black_box(user);
        })
        .build()
        .unwrap();
    group.bench_function("core: event to a handler taking Identity", |b| {
        b.to_async(&rt).iter(|| {
            let mut core = with_identity.clone();
            let req = t.request(event("chat", json!({"text": "hi"})));
            async move { core.call(req).await.unwrap() }
        })
    });

    let pass = from_fn(async |req: SocketRequest, next: Next| next.run(req).await).layer(Noop);
    group.bench_function("from_fn: pass-through", |b| {
        b.to_async(&rt).iter(|| {
            let mut pass = pass.clone();
            let req = t.request(event("chat", json!({"text": "hi"})));
            async move { pass.ready().await.unwrap().call(req).await.unwrap() }
        })
    });

    let handshake = HandshakeAuthLayer::new(|_hs| async {
        Ok::<_, BoxError>(Some(User { name: "ann".into() }))
    })
    .layer(Noop);
    let connecting = rt.block_on(TestSocket::new());
    group.bench_function("handshake auth: accepted, identity kept", |b| {
        b.to_async(&rt).iter(|| {
            let mut handshake = handshake.clone();
            let req = connecting.request(RequestKind::Handshake);
            async move { handshake.call(req).await.unwrap() }
        })
    });

    let auth = AuthLayer::new(|_hs| async { Ok::<_, BoxError>(true) }).layer(Noop);
    group.bench_function("auth: gate, authenticated event", |b| {
        b.to_async(&rt).iter(|| {
            let mut auth = auth.clone();
            let req = t.request(event("chat", json!({"text": "hi"})));
            async move { auth.call(req).await.unwrap() }
        })
    });

    let unauthenticated = rt.block_on(TestSocket::new());
    group.bench_function("auth: gate, event dropped before authentication", |b| {
        b.to_async(&rt).iter(|| {
            let mut auth = auth.clone();
            let req = unauthenticated.request(event("chat", json!({"text": "hi"})));
            async move { auth.call(req).await.unwrap() }
        })
    });

    group.bench_function("auth: authenticate, success", |b| {
        b.to_async(&rt).iter(|| {
            let mut auth = auth.clone();
            unauthenticated.session.set_state(ClientState::Unauthorized);
            let req = unauthenticated.request(event("authenticate", json!(null)));
            unauthenticated.drain();
            async move { auth.call(req).await.unwrap() }
        })
    });

    unauthenticated.session.defer_authentication();
    group.bench_function(
        "auth: Authenticated through the layer (the authenticated emit)",
        |b| {
            b.to_async(&rt).iter(|| {
                let mut auth = auth.clone();
                let req = unauthenticated.request(RequestKind::Authenticated);
                unauthenticated.drain();
                async move { auth.call(req).await.unwrap() }
            })
        },
    );

    let rate = EventRateLimitLayer::default()
        .events(Bucket::new(1e12, u32::MAX).unwrap())
        .layer(Noop);
    group.bench_function("rate limit: event within the budget", |b| {
        b.to_async(&rt).iter(|| {
            let mut rate = rate.clone();
            let req = t.request(event("chat", json!({"text": "hi"})));
            async move { rate.call(req).await.unwrap() }
        })
    });

    // A socket not authenticated at connect: the layer starts its deadline (an authenticated
    // one, as after a handshake authentication, needs none).
    let arriving = rt.block_on(TestSocket::new());
    let timeout = AuthTimeoutLayer::default().layer(Noop);
    group.bench_function("auth timeout: connect + disconnect", |b| {
        b.to_async(&rt).iter(|| {
            let mut timeout = timeout.clone();
            let connect = arriving.request(RequestKind::Connect);
            let disconnect =
                arriving.request(RequestKind::Disconnect(DisconnectReason::TransportClose));
            async move {
                timeout.call(connect).await.unwrap();
                timeout.call(disconnect).await.unwrap();
            }
        })
    });

    let ping = PingLayer::default().layer(Noop);
    group.bench_function("ping: authenticated + disconnect", |b| {
        b.to_async(&rt).iter(|| {
            let mut ping = ping.clone();
            let authenticated = t.request(RequestKind::Authenticated);
            let disconnect = t.request(RequestKind::Disconnect(DisconnectReason::TransportClose));
            t.drain();
            async move {
                ping.call(authenticated).await.unwrap();
                ping.call(disconnect).await.unwrap();
            }
        })
    });

    let rooms = RoomsLayer::new().validate(allow_all).layer(Noop);
    for n in [1, 100] {
        let names: Vec<String> = (0..n).map(|i| format!("room-{i}")).collect();
        group.bench_function(format!("rooms: join + leave {n}"), |b| {
            b.to_async(&rt).iter(|| {
                let mut rooms = rooms.clone();
                let join = t.request(event("join", json!({ "rooms": names })));
                let leave = t.request(event("leave", json!({ "rooms": names })));
                async move {
                    rooms.call(join).await.unwrap();
                    rooms.call(leave).await.unwrap();
                }
            })
        });
    }
    // What the bridge adds to every event off the wire: one counter's report, the same macro
    // call as src/telemetry.rs makes (the layers above add nothing for an event that passes).
    #[cfg(feature = "metrics")]
    group.bench_function("metrics: the report of one event received", |b| {
        b.iter(|| metrics::counter!(socketio_stack::telemetry::names::EVENTS_RECEIVED).increment(1))
    });

    group.finish();
}

/// `send`'s encodings: what the Redis fan-out publishes for each send (the
/// `@socket.io/redis-emitter` msgpack), against the bare JSON of the same data.
fn send_encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("send");
    group.measurement_time(Duration::from_secs(3));
    let data = json!({"seq": 1234, "text": "hello", "t": 1_763_800_000_000_u64});
    group.bench_function("data as JSON (local delivery's encoding)", |b| {
        b.iter(|| serde_json::to_vec(&json!(["news", &data])).unwrap())
    });
    group.bench_function("Redis publish encoding (msgpack broadcast)", |b| {
        b.iter(|| {
            let req = OutboundMessage::to("io-default", "news", data.clone());
            let broadcast = Broadcast::of_send(req);
            wire::encode(&broadcast)
        })
    });
    group.finish();
}

/// What the bridge does to each event as its turn comes: its arguments read from the packet's
/// text (and attachments), against reading the same text as one `serde_json::Value`, as the
/// bridge did before events carried all their arguments.
fn event_arguments(c: &mut Criterion) {
    use socketio_stack::args::Args;
    let mut group = c.benchmark_group("event");
    group.measurement_time(Duration::from_secs(3));
    let text = r#"["chat",{"room":"lobby","text":"hello there","seq":1234,"tags":["a","b"]}]"#;
    group.bench_function("arguments from the packet (Args)", |b| {
        b.iter(|| Args::from_packet(text, None, true).unwrap())
    });
    group.bench_function("the same text as a serde_json::Value", |b| {
        b.iter(|| serde_json::from_str::<serde_json::Value>(text).unwrap())
    });
    let bins = std::collections::VecDeque::from([bytes::Bytes::from_static(&[7; 1024])]);
    let binary = r#"["file",{"name":"a.bin","content":{"_placeholder":true,"num":0}}]"#;
    group.bench_function("arguments with a 1 KiB attachment (Args)", |b| {
        b.iter(|| Args::from_packet(binary, Some(&bins), true).unwrap())
    });
    group.finish();
}

criterion_group!(benches, layers, send_encoding, event_arguments);
criterion_main!(benches);
