//! The Redis fan-out against a real redis-server the tests start themselves.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::*;
use serde_json::{Value, json};
use socketio_stack::args::Args;
use socketio_stack::extract::Data;
use socketio_stack::fanout::{Emitter, FanoutError, RedisAdapter, RedisFanout, RedisOptions};
use socketio_stack::layers::{AuthLayer, RoomsLayer};
use socketio_stack::{Delivery, OutboundMessage, SocketServer};
use socketioxide::extract::SocketRef;

async fn instance(redis: &RedisServer) -> TestServer {
    fanout_instance(RedisOptions::new(redis.url())).await
}

/// The next event named `name` (others skipped).
async fn next_named(c: &mut TestClient, name: &str) -> Value {
    c.expect_event(name).await
}

#[tokio::test]
async fn two_instances_deliver_each_others_sends() {
    let redis = RedisServer::start();
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let (mut on_a, id_a) = TestClient::authenticated(&a.url()).await;
    let (mut on_b, id_b) = TestClient::authenticated(&b.url()).await;

    assert_eq!(
        a.server
            .send(OutboundMessage::to(
                "io-default",
                "room",
                json!({"from": "a"})
            ))
            .await,
        Ok(Delivery::Sent)
    );
    assert_eq!(next_named(&mut on_a, "room").await, json!({"from": "a"}));
    assert_eq!(next_named(&mut on_b, "room").await, json!({"from": "a"}));

    // To one socket id on the other instance, then a broadcast as a barrier.
    b.server
        .send(OutboundMessage::to(id_a.clone(), "direct", json!("to a")))
        .await
        .unwrap();
    b.server
        .send(OutboundMessage::broadcast("all", json!("barrier")))
        .await
        .unwrap();
    assert_eq!(
        on_a.next_non_ping().await,
        Received::Event("direct".into(), json!("to a"))
    );
    assert_eq!(
        on_a.next_non_ping().await,
        Received::Event("all".into(), json!("barrier"))
    );
    assert_eq!(
        on_b.next_non_ping().await,
        Received::Event("all".into(), json!("barrier"))
    );

    // A room joined on B, sent to from A.
    on_b.emit("join", json!({"rooms": ["public-x"]})).await;
    on_b.sync().await;
    a.server
        .send(OutboundMessage::to("public-x", "x", json!(1)))
        .await
        .unwrap();
    a.server
        .send(OutboundMessage::to(id_b.clone(), "barrier", json!(2)))
        .await
        .unwrap();
    assert_eq!(
        on_b.next_non_ping().await,
        Received::Event("x".into(), json!(1))
    );
    assert_eq!(
        on_b.next_non_ping().await,
        Received::Event("barrier".into(), json!(2))
    );
    a.server.shutdown().await;
    b.server.shutdown().await;
}

/// The Redis delivery is the bottom of the outbound stack: an outbound layer wraps it as it
/// would wrap local delivery, and it is a `Service<OutboundMessage>` of its own.
#[tokio::test]
async fn outbound_layers_wrap_the_redis_delivery() {
    use tower::ServiceExt;
    let redis = RedisServer::start();
    let fanout = RedisFanout::connect(&redis.url()).await.unwrap();
    let server = SocketServer::builder()
        .fanout(fanout.clone())
        .outbound_layer(tower::util::MapRequestLayer::new(
            |mut req: OutboundMessage| {
                req.topic.push_str("-tagged");
                req
            },
        ))
        .layer(AuthLayer::new(authenticate))
        .build()
        .unwrap();
    let a = serve(server).await;
    let b = instance(&redis).await;
    let (mut on_a, _) = TestClient::authenticated(&a.url()).await;
    let (mut on_b, _) = TestClient::authenticated(&b.url()).await;

    a.server
        .send(OutboundMessage::broadcast("news", json!(1)))
        .await
        .unwrap();
    assert_eq!(next_named(&mut on_a, "news-tagged").await, json!(1));
    assert_eq!(next_named(&mut on_b, "news-tagged").await, json!(1));

    // Called directly, beneath the layer: published, and delivered by both instances.
    fanout
        .delivery()
        .oneshot(OutboundMessage::broadcast("direct", json!(2)))
        .await
        .unwrap();
    assert_eq!(next_named(&mut on_a, "direct").await, json!(2));
    assert_eq!(next_named(&mut on_b, "direct").await, json!(2));
    a.server.shutdown().await;
    b.server.shutdown().await;
}

#[tokio::test]
async fn the_standalone_emitter_reaches_clients_of_every_instance() {
    let redis = RedisServer::start();
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let (mut on_a, id_a) = TestClient::authenticated(&a.url()).await;
    let (mut on_b, _) = TestClient::authenticated(&b.url()).await;
    let emitter = Emitter::connect(&redis.url()).await.unwrap();
    emitter
        .to("io-default")
        .emit("worker", &json!({"job": 1}))
        .await
        .unwrap();
    assert_eq!(next_named(&mut on_a, "worker").await, json!({"job": 1}));
    assert_eq!(next_named(&mut on_b, "worker").await, json!({"job": 1}));
    // Several arguments, to one socket, with an exception that leaves out nobody else.
    emitter
        .to(id_a.clone())
        .emit_args("multi", vec![json!(1), json!("two")])
        .await
        .unwrap();
    emitter
        .to("io-default")
        .except(id_a.clone())
        .emit("not-a", &json!(true))
        .await
        .unwrap();
    emitter.emit("everyone", &json!(3)).await.unwrap();
    // rust_socketio's on_any hands over the first argument.
    assert_eq!(
        on_a.next_non_ping().await,
        Received::Event("multi".into(), json!(1))
    );
    assert_eq!(
        on_a.next_non_ping().await,
        Received::Event("everyone".into(), json!(3))
    );
    assert_eq!(
        on_b.next_non_ping().await,
        Received::Event("not-a".into(), json!(true))
    );
    assert_eq!(
        on_b.next_non_ping().await,
        Received::Event("everyone".into(), json!(3))
    );
}

#[tokio::test]
async fn an_unreachable_redis_fails_configure_within_a_bound() {
    let port = common::redis_server::free_port();
    let started = Instant::now();
    let err = RedisFanout::connect(&format!("redis://127.0.0.1:{port}"))
        .await
        .unwrap_err();
    assert!(matches!(err, FanoutError::Unreachable(_)), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert!(redis_source(&err).is_io_error(), "{err:?}");
    let err = RedisFanout::connect("not-a-url").await.unwrap_err();
    assert!(matches!(err, FanoutError::Config(_)), "{err}");
    assert_eq!(
        redis_source(&err).kind(),
        redis::ErrorKind::InvalidClientConfig
    );
}

/// The Redis error a fan-out error comes from.
fn redis_source(err: &FanoutError) -> &redis::RedisError {
    std::error::Error::source(err)
        .and_then(|s| s.downcast_ref())
        .unwrap_or_else(|| panic!("no Redis error as the source of {err:?}"))
}

#[tokio::test]
async fn the_emitter_s_errors_say_what_failed_and_keep_their_source() {
    let redis = RedisServer::start();
    let emitter = Emitter::connect(&redis.url()).await.unwrap();
    // JSON has no map with keys that are not strings.
    let data = HashMap::from([((1, 2), 3)]);
    let err = emitter.emit("t", &data).await.unwrap_err();
    assert!(matches!(err, FanoutError::Encode(_)), "{err}");
    assert!(
        err.to_string()
            .starts_with("could not encode the event's arguments: "),
        "{err}"
    );
    let source = std::error::Error::source(&err).expect("the encoder's error");
    assert!(source.is::<serde_json::Error>(), "{source:?}");

    emitter.close();
    let err = emitter.emit("t", &json!(1)).await.unwrap_err();
    assert!(matches!(err, FanoutError::Closed), "{err}");
    assert_eq!(
        err.to_string(),
        "the Redis connections are closed: the emitter or the fan-out was shut down"
    );
}

#[tokio::test]
async fn refused_credentials_fail_configure_with_redis_s_message() {
    let redis = RedisServer::start_with(&["--requirepass", "secret"]);
    let err = RedisFanout::connect(&redis.url()).await.unwrap_err();
    assert!(
        err.to_string().contains("NOAUTH") || err.to_string().to_lowercase().contains("auth"),
        "{err}"
    );
    let err = RedisFanout::connect(&format!("redis://:wrong@127.0.0.1:{}", redis.port))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .to_lowercase()
            .contains("authentication failed"),
        "{err}"
    );
    assert_eq!(
        redis_source(&err).kind(),
        redis::ErrorKind::AuthenticationFailed
    );
    RedisFanout::connect(&format!("redis://:secret@127.0.0.1:{}", redis.port))
        .await
        .expect("the right password");
}

#[tokio::test]
async fn reserved_event_names_are_refused_before_publishing_and_dropped_on_receipt() {
    let redis = RedisServer::start();
    let a = instance(&redis).await;
    let (mut c, id) = TestClient::authenticated(&a.url()).await;
    // A subscriber on every channel sees whatever the emitter publishes.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut watcher = client.get_async_pubsub().await.unwrap();
    watcher.psubscribe("socket.io#*").await.unwrap();
    let emitter = Emitter::connect(&redis.url()).await.unwrap();
    for event in socketio_stack::event::names::RESERVED {
        let refused = [
            emitter.emit(event, &json!(1)).await,
            emitter.to(id.clone()).emit(event, &json!(1)).await,
            emitter.to("io-default").emit_args(event, Args::new()).await,
        ];
        for result in refused {
            let err = result.unwrap_err();
            assert!(
                matches!(&err, FanoutError::ReservedEvent(e) if e == event),
                "{err}"
            );
            assert!(err.to_string().contains("reserved"), "{err}");
        }
    }
    // So is a room list that every instance would refuse on receipt.
    let mut wide = emitter.everyone();
    for i in 0..=socketio_stack::fanout::wire::MAX_ROOMS {
        wide = wide.except(format!("s{i}"));
    }
    let err = wide.emit("wide", &json!(1)).await.unwrap_err();
    assert!(matches!(err, FanoutError::Unpublishable(_)), "{err}");
    assert!(
        err.to_string()
            .contains("opts.except lists 10001 rooms, over the bound of 10000"),
        "{err}"
    );
    // A publisher that does not check (here, raw bytes): the server drops the broadcast
    // rather than deliver it.
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let reserved = socketio_stack::fanout::wire::encode(&socketio_stack::fanout::wire::Broadcast {
        uid: "emitter".into(),
        nsp: "/".into(),
        event: "disconnect".into(),
        args: vec![json!(1).into()],
        rooms: vec![],
        except: vec![],
        flags: Default::default(),
    });
    redis::cmd("PUBLISH")
        .arg("socket.io#/#")
        .arg(reserved)
        .query_async::<i64>(&mut conn)
        .await
        .unwrap();
    emitter.emit("after", &json!("still here")).await.unwrap();
    assert_eq!(
        c.next_non_ping().await,
        Received::Event("after".into(), json!("still here"))
    );
    // The watcher saw the raw broadcast and the normal one only: the refused ones were
    // never published.
    use futures_util::StreamExt;
    let mut seen = watcher.on_message();
    for expected in ["disconnect", "after"] {
        let msg = tokio::time::timeout(Duration::from_secs(5), seen.next())
            .await
            .expect("a published message")
            .unwrap();
        let payload: Vec<u8> = msg.get_payload().unwrap();
        let event = socketio_stack::fanout::wire::decode(&payload)
            .ok()
            .map(|b| b.event);
        assert_eq!(event.as_deref(), Some(expected));
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(200), seen.next())
            .await
            .is_err(),
        "nothing else was published"
    );
}

#[tokio::test]
async fn garbage_on_the_channels_is_ignored_and_the_server_keeps_serving() {
    let redis = RedisServer::start();
    let a = instance(&redis).await;
    let (mut c, _) = TestClient::authenticated(&a.url()).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let valid = {
        let b = socketio_stack::fanout::wire::Broadcast {
            uid: "emitter".into(),
            nsp: "/".into(),
            event: "ok".into(),
            args: vec![json!(1).into()],
            rooms: vec![],
            except: vec![],
            flags: Default::default(),
        };
        socketio_stack::fanout::wire::encode(&b)
    };
    let mut unknown_nsp = valid.clone();
    // Same message for namespace "/x" (the packet's nsp string "/" becomes "/x").
    let pos = unknown_nsp
        .windows(5)
        .position(|w| w == [0xa3, b'n', b's', b'p', 0xa1])
        .unwrap();
    unknown_nsp.splice(pos + 4..pos + 6, [0xa2, b'/', b'x']);
    let payloads: Vec<(&str, Vec<u8>)> = vec![
        ("socket.io#/#", b"not msgpack at all".to_vec()),
        ("socket.io#/#", valid[..valid.len() / 2].to_vec()),
        ("socket.io#/#io-default#", vec![0x93, 0xa1]),
        ("socket.io#/#", unknown_nsp),
        ("socket.io#/#", vec![0xc4; 2 << 20]),
        // A well-formed broadcast over the 2 MiB bound: refused by size, not by form.
        ("socket.io#/#", {
            let big = socketio_stack::fanout::wire::Broadcast {
                uid: "emitter".into(),
                nsp: "/".into(),
                event: "big".into(),
                args: vec![json!("x".repeat(3 << 20)).into()],
                rooms: vec![],
                except: vec![],
                flags: Default::default(),
            };
            socketio_stack::fanout::wire::encode(&big)
        }),
        (
            "socket.io#/#",
            serde_json::to_vec(&json!({"json": "instead"})).unwrap(),
        ),
    ];
    for (channel, payload) in payloads {
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async::<i64>(&mut conn)
            .await
            .unwrap();
    }
    a.server
        .send(OutboundMessage::broadcast(
            "after-garbage",
            json!("still here"),
        ))
        .await
        .unwrap();
    assert_eq!(
        c.next_non_ping().await,
        Received::Event("after-garbage".into(), json!("still here"))
    );
}

/// This process's peak resident memory since the last [`reset_peak_resident`], in bytes
/// (a decoded message is freed as soon as it is refused or delivered, so what it cost shows
/// only in the peak).
fn peak_resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Resets the peak to the current resident size (Linux's `clear_refs` 5); without it the
/// peak is the process's, which can only overstate the growth.
fn reset_peak_resident() {
    std::fs::write("/proc/self/clear_refs", "5").ok();
}

/// MessagePack: an array of `n` nils (0xdd, a 32-bit length, then `n` 0xc0).
fn nil_array(n: u32) -> Vec<u8> {
    let mut out = vec![0xdd];
    out.extend(n.to_be_bytes());
    out.resize(out.len() + n as usize, 0xc0);
    out
}

// Two workers: before the bounds, decoding held a worker long enough for the publishing
// connection's replies to time out on a single-threaded runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inflating_messages_are_refused_before_decoding_and_the_server_keeps_serving() {
    let redis = RedisServer::start();
    let a = instance(&redis).await;
    let (mut c, _) = TestClient::authenticated(&a.url()).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let nils = nil_array(2_000_000);
    // A well-formed broadcast whose one argument is the nil array: it would be decoded,
    // converted to JSON and delivered, so it inflates the most.
    let mut broadcast = vec![0x93, 0xa7];
    broadcast.extend(b"emitter");
    broadcast.extend([0x83, 0xa4]);
    broadcast.extend(b"type\x02\xa4data\x92\xa2ev");
    broadcast.extend(&nils);
    broadcast.extend(b"\xa3nsp\xa1/\x80");
    let json_zeros = format!(
        r#"{{"type":2,"opts":{{}},"rooms":[{}0]}}"#,
        "0,".repeat(1_000_000)
    );
    let json_arrays = format!(
        r#"{{"type":2,"opts":{{}},"x":[{}[]]}}"#,
        "[],".repeat(680_000)
    );
    let payloads: Vec<(&str, Vec<u8>)> = vec![
        ("socket.io#/#", nils.clone()),
        ("socket.io#/#", broadcast),
        ("socket.io-request#/#", nils),
        ("socket.io-request#/#", json_zeros.into_bytes()),
        ("socket.io-request#/#", json_arrays.into_bytes()),
    ];
    for (_, payload) in &payloads {
        assert!(payload.len() <= socketio_stack::fanout::wire::MAX_MESSAGE_BYTES);
    }
    reset_peak_resident();
    let before = peak_resident_bytes();
    let started = Instant::now();
    for (channel, payload) in payloads {
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async::<i64>(&mut conn)
            .await
            .unwrap();
    }
    a.server
        .send(OutboundMessage::broadcast(
            "after-inflating",
            json!("still here"),
        ))
        .await
        .unwrap();
    // expect_event skips (and keeps) what comes first, so the figure is also taken when the
    // inflating broadcast was delivered.
    assert_eq!(c.expect_event("after-inflating").await, json!("still here"));
    let growth = peak_resident_bytes().saturating_sub(before);
    eprintln!(
        "peak resident growth: {} KiB; delivered after {:?}",
        growth / 1024,
        started.elapsed()
    );
    assert!(
        growth < 50 << 20,
        "peak resident memory grew {growth} bytes"
    );
}

#[tokio::test]
async fn a_redis_restart_fails_sends_visibly_then_delivery_resumes() {
    let mut redis = RedisServer::start();
    let a = instance(&redis).await;
    let (mut c, _) = TestClient::authenticated(&a.url()).await;
    // A send before the outage, so the pool holds connections that the restart kills.
    a.server
        .send(OutboundMessage::broadcast("before", json!(1)))
        .await
        .unwrap();
    assert_eq!(
        c.next_non_ping().await,
        Received::Event("before".into(), json!(1))
    );
    redis.kill();
    let started = Instant::now();
    let err = a
        .server
        .send(OutboundMessage::broadcast("lost", json!(1)))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the failure took {:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("Redis is unavailable"), "{err}");
    // The clients are untouched by the outage.
    c.sync().await;
    redis.restart();
    // Once the publisher and the subscription are back, a send goes through and arrives.
    until_delivered(&a, &mut c, "back").await;
}

#[tokio::test]
async fn a_thousand_interleaved_sends_reach_every_client_exactly_once() {
    let redis = RedisServer::start();
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let mut clients = Vec::new();
    for t in [&a, &b, &a, &b] {
        clients.push(TestClient::authenticated(&t.url()).await.0);
    }
    // Not authenticated, so not in io-default: must get none of them.
    let mut outsider = TestClient::connect(&b.url()).await;
    let sends = (0..1000u64).map(|n| {
        let server = if n % 2 == 0 {
            a.server.clone()
        } else {
            b.server.clone()
        };
        async move {
            server
                .send(OutboundMessage::to("io-default", "n", json!({ "n": n })))
                .await
        }
    });
    for result in futures_util::future::join_all(sends).await {
        assert_eq!(result, Ok(Delivery::Sent));
    }
    a.server
        .send(OutboundMessage::to("io-default", "end", json!(true)))
        .await
        .unwrap();
    for c in &mut clients {
        let mut seen: HashMap<u64, u32> = HashMap::new();
        while seen.len() < 1000 {
            match c.next_non_ping().await {
                Received::Event(name, data) if name == "n" => {
                    *seen.entry(data["n"].as_u64().unwrap()).or_default() += 1;
                }
                other => panic!("unexpected {other:?} after {} messages", seen.len()),
            }
        }
        assert!(seen.values().all(|&count| count == 1), "a duplicate");
        // Nothing more than the 1,000 before the end marker (sent after all of them).
        assert_eq!(
            c.next_non_ping().await,
            Received::Event("end".into(), json!(true))
        );
    }
    // The outsider's own barrier (its socket id), sent after everything else: it must be the
    // first and only thing it gets.
    let outsider_id = b
        .server
        .clients()
        .into_iter()
        .find(|c| c.state() == socketio_stack::ClientState::Unauthorized)
        .unwrap()
        .id();
    a.server
        .send(OutboundMessage::to(
            outsider_id.to_string(),
            "yours",
            json!(1),
        ))
        .await
        .unwrap();
    assert_eq!(
        outsider.next_non_ping().await,
        Received::Event("yours".into(), json!(1))
    );
}

async fn adapter_instance(redis: &RedisServer) -> (TestServer, SocketServer<RedisAdapter>) {
    let fanout = RedisFanout::connect(&redis.url()).await.unwrap();
    let server = SocketServer::builder_with_redis_adapter(fanout)
        .layer(AuthLayer::new(authenticate))
        .layer(RoomsLayer::new())
        .on(
            "shout",
            async |socket: SocketRef<RedisAdapter>, Data(v): Data<Value>| {
                // socketioxide's own operators, inside a handler: to every instance.
                socket.to("io-default").emit("shouted", &v).await.ok();
            },
        )
        .on(
            "everyone",
            async |socket: SocketRef<RedisAdapter>, Data(v): Data<Value>| {
                // `within` includes the sender.
                socket.within("io-default").emit("all", &v).await.ok();
            },
        )
        .build()
        .unwrap();
    let app = axum::Router::new().layer(server.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    let url = format!("http://{addr}/io/");
    (TestServer::external(addr, url), server)
}

#[tokio::test]
async fn socketioxide_broadcasts_in_handlers_reach_every_instance_exactly_once() {
    let redis = RedisServer::start();
    let (a, server_a) = adapter_instance(&redis).await;
    let (b, server_b) = adapter_instance(&redis).await;
    let (mut on_a, _) = TestClient::authenticated(&a.url()).await;
    let (mut on_b, _) = TestClient::authenticated(&b.url()).await;
    // `socket.to(room)` leaves the sender out, as in socket.io, on every instance.
    on_a.emit("shout", json!({"n": 1})).await;
    assert_eq!(
        on_b.next_non_ping().await,
        Received::Event("shouted".into(), json!({"n": 1}))
    );
    // `within` reaches everyone in the room, the sender included, each exactly once (the
    // origin delivers at once and skips its own message coming back from Redis).
    on_a.emit("everyone", json!({"n": 2})).await;
    assert_eq!(
        on_a.next_non_ping().await,
        Received::Event("all".into(), json!({"n": 2}))
    );
    assert_eq!(
        on_b.next_non_ping().await,
        Received::Event("all".into(), json!({"n": 2}))
    );
    server_b
        .send(OutboundMessage::to("io-default", "barrier", json!(3)))
        .await
        .unwrap();
    assert_eq!(
        on_a.next_non_ping().await,
        Received::Event("barrier".into(), json!(3))
    );
    assert_eq!(
        on_b.next_non_ping().await,
        Received::Event("barrier".into(), json!(3))
    );
    server_a.shutdown().await;
    server_b.shutdown().await;
}

#[tokio::test]
async fn remote_join_leave_and_disconnect_reach_every_instance() {
    let redis = RedisServer::start();
    let (a, server_a) = adapter_instance(&redis).await;
    let (b, server_b) = adapter_instance(&redis).await;
    let (mut on_a, _) = TestClient::authenticated(&a.url()).await;
    let (mut on_b, id_b) = TestClient::authenticated(&b.url()).await;
    // Not authenticated, so in no room but its own: no room-targeted operation may touch it.
    let _outsider = TestClient::connect(&b.url()).await;
    eventually("the outsider is tracked", || server_b.client_count() == 2).await;
    let outsider_id = server_b
        .clients()
        .into_iter()
        .find(|c| c.id().to_string() != id_b)
        .unwrap()
        .id()
        .to_string();
    let rooms_of_b = |id: &str| -> Vec<String> {
        server_b
            .client(id)
            .map(|c| c.socket.rooms().iter().map(|r| r.to_string()).collect())
            .unwrap_or_default()
    };
    // From A's server: every socket in io-default, on both instances, joins "vip".
    server_a
        .io()
        .within("io-default")
        .join("vip")
        .await
        .unwrap();
    eventually("B's client joined vip", || {
        server_b
            .client(&id_b)
            .is_some_and(|c| c.socket.rooms().iter().any(|r| r == "vip"))
    })
    .await;
    server_b
        .send(OutboundMessage::to("vip", "vip-news", json!(1)))
        .await
        .unwrap();
    assert_eq!(
        on_a.next_non_ping().await,
        Received::Event("vip-news".into(), json!(1))
    );
    assert_eq!(
        on_b.next_non_ping().await,
        Received::Event("vip-news".into(), json!(1))
    );
    server_a.io().within("vip").leave("vip").await.unwrap();
    eventually("B's client left vip", || {
        server_b
            .client(&id_b)
            .is_some_and(|c| !c.socket.rooms().iter().any(|r| r == "vip"))
    })
    .await;
    // The standalone emitter's socketsJoin reaches the same sockets.
    let emitter = Emitter::connect(&redis.url()).await.unwrap();
    emitter
        .to(id_b.clone())
        .sockets_join(&["emitted"])
        .await
        .unwrap();
    eventually("B's client joined emitted", || {
        server_b
            .client(&id_b)
            .is_some_and(|c| c.socket.rooms().iter().any(|r| r == "emitted"))
    })
    .await;
    assert_eq!(
        rooms_of_b(&outsider_id),
        vec![outsider_id.clone()],
        "the outsider joined nothing"
    );
    // One socket of A's, as fetch_sockets hands it out: the operation stays with it, it does
    // not turn into "every socket" on B.
    for socket in server_a.io().fetch_sockets().await.unwrap() {
        socket.join("solo").await.unwrap();
    }
    // A barrier: a request after it, on the same channel, seen applied on B.
    server_a
        .io()
        .within(id_b.clone())
        .join("marker")
        .await
        .unwrap();
    eventually("the marker request arrived", || {
        rooms_of_b(&id_b).contains(&"marker".to_owned())
    })
    .await;
    assert!(!rooms_of_b(&id_b).contains(&"solo".to_owned()));
    assert!(!rooms_of_b(&outsider_id).contains(&"solo".to_owned()));
    // A remote disconnect from A's server closes B's client.
    server_a
        .io()
        .within(id_b.clone())
        .disconnect()
        .await
        .unwrap();
    on_b.expect_close().await;
    server_a.shutdown().await;
    server_b.shutdown().await;
}

#[tokio::test]
async fn instances_on_different_nodes_of_a_redis_cluster_deliver_each_others_sends() {
    // Classic pub/sub is cluster-wide: each instance may use any node.
    let cluster = common::redis_server::RedisCluster::start();
    let (a, b) = (
        instance(&cluster.nodes[0]).await,
        instance(&cluster.nodes[2]).await,
    );
    let (mut on_a, _) = TestClient::authenticated(&a.url()).await;
    let (mut on_b, id_b) = TestClient::authenticated(&b.url()).await;
    a.server
        .send(OutboundMessage::to("io-default", "cluster", json!(1)))
        .await
        .unwrap();
    assert_eq!(
        on_a.next_non_ping().await,
        Received::Event("cluster".into(), json!(1))
    );
    assert_eq!(
        on_b.next_non_ping().await,
        Received::Event("cluster".into(), json!(1))
    );
    let emitter = Emitter::connect(&cluster.nodes[1].url()).await.unwrap();
    emitter.to(id_b).emit("direct", &json!(2)).await.unwrap();
    assert_eq!(
        on_b.next_non_ping().await,
        Received::Event("direct".into(), json!(2))
    );
}

/// How many clients Redis has connected, not counting the one asking.
async fn redis_clients(redis: &RedisServer) -> usize {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    list.lines().count() - 1
}

#[tokio::test]
async fn three_connections_as_in_the_seeds_and_shutdown_closes_them_all() {
    let redis = RedisServer::start();
    let (a, server) = adapter_instance(&redis).await;
    let (mut c, _) = TestClient::authenticated(&a.url()).await;
    // The emitter's connection (send), the adapter's publishing one (a handler's broadcast),
    // and the subscription.
    server
        .send(OutboundMessage::to("io-default", "via-send", json!(1)))
        .await
        .unwrap();
    c.emit("everyone", json!({"n": 2})).await;
    // In either order: the handler's broadcast reaches this instance's own client at once,
    // the send only once Redis has handed it back.
    let mut got = vec![
        format!("{:?}", c.next_non_ping().await),
        format!("{:?}", c.next_non_ping().await),
    ];
    got.sort();
    let mut want = vec![
        format!("{:?}", Received::Event("via-send".into(), json!(1))),
        format!("{:?}", Received::Event("all".into(), json!({"n": 2}))),
    ];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(redis_clients(&redis).await, 3);
    server.shutdown().await;
    let deadline = Instant::now() + WAIT;
    while redis_clients(&redis).await > 0 {
        assert!(
            Instant::now() < deadline,
            "connections left open after shutdown"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn one_fan_out_per_server() {
    let redis = RedisServer::start();
    let f = RedisFanout::connect(&redis.url()).await.unwrap();
    let g = RedisFanout::connect(&redis.url()).await.unwrap();
    let err = SocketServer::builder_with_redis_adapter(f)
        .fanout(g)
        .build()
        .unwrap_err();
    assert_eq!(err, socketio_stack::BuildError::FanoutTwice);
}

#[tokio::test]
async fn several_arguments_and_binary_data_reach_a_client_of_another_instance() {
    use socketio_stack::args::Arg;
    use tokio_tungstenite::tungstenite::Message;
    let redis = RedisServer::start();
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    // A raw client on b: it reads the packets as they come, attachments included.
    let mut on_b = common::raw_ws(b.addr, None).await;
    let id = common::raw_ws_namespace(&mut on_b, &json!({ "token": TOKEN })).await;
    let file = bytes::Bytes::from_static(&[0, 1, 2, 254, 255]);
    let args = vec![
        Arg::from("report.bin"),
        Arg::Binary(file.clone()),
        Arg::from(json!({"size": 5})),
    ];
    a.server
        .send(OutboundMessage::to(id.as_str(), "file", Arg::Null).with_args(args))
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let msg = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut on_b))
            .await
            .expect("the file in time")
            .unwrap()
            .unwrap();
        if msg.to_text().ok() != Some("2") {
            got.push(msg);
        }
    }
    assert_eq!(
        got[0],
        Message::text(r#"451-["file","report.bin",{"_placeholder":true,"num":0},{"size":5}]"#)
    );
    assert_eq!(got[1], Message::binary(file.to_vec()));
}

/// A raw Socket.IO client (it sees packets as sent, attachments included) on the server at
/// `addr`, ours or Node's, authenticated, so in `io-default`.
async fn raw_member(addr: std::net::SocketAddr) -> common::RawWs {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut ws = common::raw_ws(addr, None).await;
    common::raw_ws_namespace(&mut ws, &json!({ "token": TOKEN })).await;
    ws.send(Message::text(r#"42["authenticate",{}]"#))
        .await
        .unwrap();
    next_packet(&mut ws, "authenticated").await;
    ws
}

/// The next event `name` a raw client gets: its packet's text and its attachments, in order
/// (other packets skipped).
async fn next_packet(ws: &mut common::RawWs, name: &str) -> (String, Vec<Vec<u8>>) {
    next_packet_where(ws, name, |_| {}).await
}

/// [`next_packet`], showing each event packet skipped on the way to `seen`.
async fn next_packet_where(
    ws: &mut common::RawWs,
    name: &str,
    mut seen: impl FnMut(&str),
) -> (String, Vec<Vec<u8>>) {
    let mut next = async || {
        tokio::time::timeout(WAIT, futures_util::StreamExt::next(ws))
            .await
            .unwrap_or_else(|_| panic!("no {name} within {WAIT:?}"))
            .unwrap()
            .unwrap()
    };
    loop {
        let msg = next().await;
        let text = msg.to_text().unwrap_or_default().to_owned();
        let (attachments, data) = match (text.strip_prefix("42"), text.strip_prefix("45")) {
            (Some(data), _) => (0, data),
            (_, Some(rest)) => {
                let (n, data) = rest.split_once('-').unwrap();
                (n.parse().unwrap(), data)
            }
            _ => continue,
        };
        let is_it = data.starts_with(&format!("[\"{name}\""));
        let mut bins = Vec::new();
        for _ in 0..attachments {
            bins.push(next().await.into_data().to_vec());
        }
        if is_it {
            return (text, bins);
        }
        seen(&text);
    }
}

/// JSON text of `1` in `levels` nested arrays.
fn deep_json(levels: usize) -> String {
    format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
}

/// A Node socket.io 4 server with `@socket.io/redis-adapter` on `redis` (tests/js/seeds-server.mjs).
async fn node_server(redis: &RedisServer) -> ServerProcess {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        dir.join("node_modules/@socket.io/redis-adapter").exists(),
        "run `npm ci` in tests/js first (scripts/test.sh does)"
    );
    let mut cmd = std::process::Command::new("node");
    cmd.current_dir(&dir)
        .arg("seeds-server.mjs")
        .env("REDIS_URL", redis.url());
    tokio::task::spawn_blocking(move || ServerProcess::start(cmd))
        .await
        .unwrap()
}

/// `POST path` with a JSON body of hand-written text (it may hold escapes `serde_json`
/// cannot write, such as lone surrogates) to the Node server; the status.
async fn post_text(node: &ServerProcess, path: &str, body: &str) -> u16 {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], node.port));
    common::raw_http(addr, "POST", path, body).await.0
}

#[tokio::test]
async fn binary_dates_and_exact_values_cross_between_node_and_our_servers_both_ways() {
    use socketio_stack::args::Arg;
    let redis = RedisServer::start();
    let ours = instance(&redis).await;
    let (_adapter_http, adapter_server) = adapter_instance(&redis).await;
    let node = node_server(&redis).await;
    let node_addr = std::net::SocketAddr::from(([127, 0, 0, 1], node.port));
    let mut on_ours = raw_member(ours.addr).await;
    let mut on_node = raw_member(node_addr).await;
    let deep = deep_json(64);
    let placeholder = |n: u32| format!(r#"{{"_placeholder":true,"num":{n}}}"#);
    let bins = vec![vec![1, 2, 3], vec![4], vec![5, 6], vec![]];
    let nested = format!(
        r#"{{"nested":{},"list":[{},[{}]]}}"#,
        placeholder(1),
        placeholder(2),
        placeholder(3)
    );

    // From Node: Buffers anywhere, Dates of every epoch, a float, 64 levels; through its
    // adapter and through the npm emitter, to our client and to Node's alike.
    let node_args = format!(
        r#"["a",{{"$buffer":[1,2,3]}},{{"nested":{{"$buffer":[4]}},"list":[{{"$buffer":[5,6]}},[{{"$buffer":[]}}]]}},{{"$date":-14182940000}},{{"$date":1234}},{{"$date":8.64e15}},{{"$date":-1}},123456789.12345679,{deep}"#
    );
    let node_expected = format!(
        r#"["a",{},{nested},"1969-07-20T20:17:40.000Z","1970-01-01T00:00:01.234Z","+275760-09-13T00:00:00.000Z","1969-12-31T23:59:59.999Z",123456789.12345679,{deep}"#,
        placeholder(0)
    );
    for via in ["adapter", "emitter"] {
        let topic = format!("from-node-{via}");
        // A lone surrogate: notepack.io writes it with the next character as one 4-byte
        // sequence (here, U+10000) when the string is short; every member decodes that.
        let (extra, extra_expected) = match via {
            "emitter" => (r#","\ud800""#, ",\"\u{10000}\""),
            _ => ("", ""),
        };
        let body = format!(
            r#"{{"via":"{via}","destination":"io-default","topic":"{topic}","args":{node_args}{extra}]}}"#
        );
        assert_eq!(post_text(&node, "/emit", &body).await, 204);
        let expected = (
            format!(r#"454-["{topic}",{}{extra_expected}]"#, &node_expected[1..]),
            bins.clone(),
        );
        assert_eq!(
            next_packet(&mut on_node, &topic).await,
            expected,
            "Node's client"
        );
        assert_eq!(
            next_packet(&mut on_ours, &topic).await,
            expected,
            "our client"
        );
    }

    // From us: `Bytes` anywhere, the float, 64 levels; by `send`, by the standalone emitter
    // and by a broadcast through the RedisAdapter.
    let mut args = socketio_stack::args::Args::from_packet(
        &format!(r#"["a",null,{{"nested":null,"list":[null,[null]]}},123456789.12345679,{deep}]"#),
        None,
        false,
    )
    .unwrap();
    let bin = |b: &[u8]| Arg::Binary(bytes::Bytes::copy_from_slice(b));
    args[1] = bin(&[1, 2, 3]);
    let Arg::Object(obj) = &mut args[2] else {
        unreachable!()
    };
    obj["nested"] = bin(&[4]);
    obj["list"] = Arg::Array(vec![bin(&[5, 6]), Arg::Array(vec![bin(&[])])]);
    let ours_expected = |topic: &str| {
        (
            format!(
                r#"454-["{topic}","a",{},{nested},123456789.12345679,{deep}]"#,
                placeholder(0)
            ),
            bins.clone(),
        )
    };
    ours.server
        .send(
            OutboundMessage::to("io-default", "from-ours-send", Arg::Null).with_args(args.clone()),
        )
        .await
        .unwrap();
    let emitter = Emitter::connect(&redis.url()).await.unwrap();
    emitter
        .to("io-default")
        .emit("from-ours-emitter", &args)
        .await
        .unwrap();
    adapter_server
        .io()
        .to("io-default")
        .emit("from-ours-adapter", &args)
        .await
        .unwrap();
    for topic in ["from-ours-send", "from-ours-emitter", "from-ours-adapter"] {
        let expected = ours_expected(topic);
        assert_eq!(
            next_packet(&mut on_node, topic).await,
            expected,
            "Node's client"
        );
        assert_eq!(
            next_packet(&mut on_ours, topic).await,
            expected,
            "our client"
        );
    }
    adapter_server.shutdown().await;
}

#[tokio::test]
async fn what_cannot_cross_redis_as_sent_is_refused_at_the_sender_with_an_error() {
    use socketio_stack::args::Arg;
    let redis = RedisServer::start();
    let ours = instance(&redis).await;
    let (_adapter_http, adapter_server) = adapter_instance(&redis).await;
    let mut on_ours = raw_member(ours.addr).await;
    let emitter = Emitter::connect(&redis.url()).await.unwrap();
    let cases = [
        (
            Args::from_packet(r#"["ok","a\ud800"]"#, None, false).unwrap(),
            "argument 1 holds a string with a lone surrogate",
        ),
        (
            Args::from_packet(&format!("[{}]", deep_json(65)), None, false).unwrap(),
            "argument 0 nests deeper than 64 levels",
        ),
    ];
    for (args, why) in cases {
        let err = ours
            .server
            .send(OutboundMessage::to("io-default", "refused", json!(null)).with_args(args.clone()))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(why), "{err}");
        let err = emitter
            .clone()
            .to("io-default")
            .emit_args("refused", args.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, FanoutError::Unpublishable(e) if e.0.contains(why)),
            "{err}"
        );
        // Refused before this instance's own sockets get it, too.
        let err = adapter_server
            .io()
            .to("io-default")
            .emit("refused", &args)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(why), "{err}");
    }
    // Past serde_json's 128 levels, socketioxide's encoding of a broadcast cannot even be
    // read back to publish it: refused as well, not kept to this instance silently.
    let deepest = (0..200).fold(Arg::from(1u64), |inner, _| Arg::Array(vec![inner]));
    let err = adapter_server
        .io()
        .to("io-default")
        .emit("refused", &deepest)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot be read back"), "{err}");
    // Nothing of them was published: the next event is the one sent after.
    ours.server
        .send(OutboundMessage::to("io-default", "after", json!(1)))
        .await
        .unwrap();
    next_packet_where(&mut on_ours, "after", |skipped| {
        assert!(!skipped.contains("refused"), "{skipped}");
    })
    .await;
    adapter_server.shutdown().await;
}

/// The local counterpart (no Redis): what a client sends reaches clients exactly, floats,
/// 64 levels and lone surrogates included, echoed by a handler and sent by `send`.
#[tokio::test]
async fn values_arrive_exactly_on_local_delivery_too() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let server = SocketServer::builder()
        .layer(AuthLayer::new(authenticate))
        .layer(RoomsLayer::new())
        .on("echo", async |socket: SocketRef, args: Args| {
            socket.emit("echoed", &args).ok();
        })
        .build()
        .unwrap();
    let local = serve(server).await;
    let mut client = raw_member(local.addr).await;
    let values = format!(
        r#"123456789.12345679,{},"\ud800",{{"k":"a\udc00","pair":"😀"}},0.30000000000000004"#,
        deep_json(64)
    );
    client
        .send(Message::text(format!(r#"42["echo",{values}]"#)))
        .await
        .unwrap();
    assert_eq!(
        next_packet(&mut client, "echoed").await,
        (format!(r#"42["echoed",{values}]"#), vec![])
    );
    let args = Args::from_packet(&format!("[{values}]"), None, false).unwrap();
    local
        .server
        .send(OutboundMessage::to("io-default", "sent", json!(null)).with_args(args))
        .await
        .unwrap();
    assert_eq!(
        next_packet(&mut client, "sent").await,
        (format!(r#"42["sent",{values}]"#), vec![])
    );
}

#[tokio::test]
async fn a_fan_out_without_a_server_answers_the_fleet_as_a_server_without_sockets() {
    let redis = RedisServer::start();
    let server_side = RedisFanout::connect(&redis.url()).await.unwrap();
    let a = SocketServer::builder()
        .fanout(server_side.clone())
        .layer(AuthLayer::new(authenticate))
        .build()
        .unwrap();
    let a = serve(a).await;
    let (_on_a, id_a) = TestClient::authenticated(&a.url()).await;
    // A worker: subscribed (so counted as a server), no Socket.IO server attached.
    let worker = RedisFanout::connect(&redis.url()).await.unwrap();
    worker.on_server_side_emit("status", async |_args: Args| json!("worker ok").into());
    let fleet = || server_side.fleet().timeout(Duration::from_secs(3));
    assert_eq!(fleet().server_count().await.unwrap(), 2);
    let started = Instant::now();
    let sockets = fleet()
        .fetch_sockets()
        .await
        .expect("the worker answers, with no socket");
    let ids: Vec<&str> = sockets.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, [id_a.as_str()]);
    // Each socket is in the room of its id.
    assert_eq!(fleet().rooms().await.unwrap(), [id_a]);
    let answers = fleet()
        .server_side_emit_with_ack("status", Args::new())
        .await
        .unwrap();
    assert_eq!(answers, [json!("worker ok")]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "nobody waited for a timeout"
    );
}
