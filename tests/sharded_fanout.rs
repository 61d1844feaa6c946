//! The fan-out in sharded mode (`RedisOptions::sharded`), our instances alone, against a real
//! redis-server 7 and a real Redis Cluster the tests start: sends and room channels, garbage
//! on its channels, Redis going away and coming back, and a channel's slot moving to another
//! node of the cluster. (Node's sharded servers in the same fleet: tests/js/sharded.test.mjs.)

mod common;

use std::time::{Duration, Instant};

use common::redis_server::{RedisCluster, RedisServer};
use common::*;
use serde_json::json;
use socketio_stack::fanout::SubscriptionMode;
use socketio_stack::fanout::{RedisFanout, RedisOptions};
use socketio_stack::{Delivery, OutboundMessage};

async fn instance(url: &str, mode: SubscriptionMode) -> TestServer {
    let options = RedisOptions::new(url)
        .sharded(mode)
        .keepalive(Duration::from_millis(500), Duration::from_millis(500));
    let fanout = RedisFanout::connect_with_options(options)
        .await
        .expect("fan-out connects");
    assert!(fanout.is_sharded());
    instance_on(fanout).await
}

/// `redis-cli` on `redis`, its answer trimmed.
fn cli(redis: &RedisServer, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string()])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Whether `room`'s channel of the main namespace has one subscriber.
fn room_subscribed(redis: &RedisServer, room: &str) -> bool {
    let channel = format!("socket.io#/#{room}#");
    cli(redis, &["PUBSUB", "SHARDNUMSUB", &channel]).ends_with('1')
}

#[tokio::test]
async fn two_instances_on_one_redis_server_fan_out_on_the_sharded_wire_and_shrug_off_garbage() {
    let redis = RedisServer::start();
    let url = redis.url();
    let a = instance(&url, SubscriptionMode::Dynamic).await;
    let b = instance(&url, SubscriptionMode::Dynamic).await;
    let (mut on_a, _) = TestClient::authenticated(&a.url()).await;
    let (mut on_b, _) = TestClient::authenticated(&b.url()).await;

    assert_eq!(
        a.server
            .send(OutboundMessage::to(
                "io-default",
                "hello",
                json!({"from": "a"})
            ))
            .await,
        Ok(Delivery::Sent)
    );
    assert_eq!(on_a.expect_event("hello").await, json!({"from": "a"}));
    assert_eq!(on_b.expect_event("hello").await, json!({"from": "a"}));

    // A room joined on B and sent to from A at once: A publishes on the room's channel, which
    // B subscribes once it has seen the join (its sweep), so the send is retried until then.
    on_b.emit("join", json!({"rooms": ["public-x"]})).await;
    on_b.sync().await;
    let cli = |args: &[&str]| cli(&redis, args);
    eventually("B subscribes the room's channel", || {
        room_subscribed(&redis, "public-x")
    })
    .await;
    a.server
        .send(OutboundMessage::to("public-x", "x", json!(1)))
        .await
        .unwrap();
    assert_eq!(on_b.expect_event("x").await, json!(1));

    // A room joined on A and sent to from A at once, before A's sweep has subscribed its
    // channel: A's own send goes on the main channel, so the first one arrives.
    on_a.emit("join", json!({"rooms": ["public-fresh"]})).await;
    on_a.sync().await;
    a.server
        .send(OutboundMessage::to("public-fresh", "fresh", json!(1)))
        .await
        .unwrap();
    assert_eq!(on_a.expect_event("fresh").await, json!(1));

    // Garbage on every kind of channel: each is logged and dropped, and what follows arrives.
    for channel in ["socket.io#/#", "socket.io#/#public-x#"] {
        for payload in [
            "not json",
            "{\"type\":3}",
            "\u{93}\u{a1}x",
            "{\"type\":3,\"uid\":\"z\",\"nsp\":\"/\",\"data\":{\"packet\":{\"type\":2,\"data\":[\"connect\"]},\"opts\":{\"rooms\":[],\"except\":[],\"flags\":{}}}}",
        ] {
            cli(&["SPUBLISH", channel, payload]);
        }
    }
    // A namespace nobody serves, and one message claiming another namespace than its channel's.
    cli(&[
        "SPUBLISH",
        "socket.io#/nobody#",
        "{\"type\":3,\"uid\":\"z\",\"nsp\":\"/nobody\",\"data\":{\"packet\":{\"type\":2,\"data\":[\"ghost\"]},\"opts\":{\"rooms\":[],\"except\":[],\"flags\":{}}}}",
    ]);
    cli(&[
        "SPUBLISH",
        "socket.io#/#",
        "{\"type\":3,\"uid\":\"z\",\"nsp\":\"/other\",\"data\":{\"packet\":{\"type\":2,\"data\":[\"ghost\"]},\"opts\":{\"rooms\":[],\"except\":[],\"flags\":{}}}}",
    ]);
    b.server
        .send(OutboundMessage::broadcast("after", json!("garbage")))
        .await
        .unwrap();
    assert_eq!(
        on_a.next_non_ping().await,
        Received::Event("after".into(), json!("garbage"))
    );
    // The Node adapter's broadcast of a good message still arrives, `except` honoured.
    cli(&[
        "SPUBLISH",
        "socket.io#/#",
        "{\"type\":3,\"uid\":\"z\",\"nsp\":\"/\",\"data\":{\"packet\":{\"type\":2,\"data\":[\"node\",1]},\"opts\":{\"rooms\":[\"io-default\"],\"except\":[],\"flags\":{}}}}",
    ]);
    assert_eq!(on_a.expect_event("node").await, json!(1));
    assert_eq!(on_b.expect_event("node").await, json!(1));
}

/// A validated `join` tells the sharded subscription, which subscribes the room's channel at
/// its next tick (100 ms), not at its fallback sweep (every 2 s, for what handlers join by
/// themselves): three fresh rooms in a row each get their channel within a second. (Left to
/// the fallback, that would happen about once in eight runs.)
#[tokio::test]
async fn rooms_joined_through_the_stack_are_subscribed_at_the_next_tick() {
    let redis = RedisServer::start();
    let a = instance(&redis.url(), SubscriptionMode::Dynamic).await;
    let (mut client, _) = TestClient::authenticated(&a.url()).await;
    for k in 0..3 {
        let room = format!("public-tick-{k}");
        client.emit("join", json!({"rooms": [&room]})).await;
        client.sync().await;
        let joined = Instant::now();
        eventually("the room's channel is subscribed", || {
            room_subscribed(&redis, &room)
        })
        .await;
        assert!(
            joined.elapsed() < Duration::from_secs(1),
            "{room} subscribed after {:?}",
            joined.elapsed()
        );
    }
}

#[tokio::test]
async fn a_redis_restart_fails_sharded_sends_visibly_then_delivery_resumes() {
    let mut redis = RedisServer::start();
    let a = instance(&redis.url(), SubscriptionMode::Static).await;
    let (mut c, _) = TestClient::authenticated(&a.url()).await;
    until_delivered(&a, &mut c, "before").await;
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
    assert!(
        err.to_string().contains("Redis is unavailable")
            || err.to_string().contains("subscription is down"),
        "{err}"
    );
    redis.restart();
    until_delivered(&a, &mut c, "back").await;
}

#[tokio::test]
async fn on_a_cluster_the_main_channel_moving_to_another_node_is_subscribed_again() {
    let cluster = RedisCluster::start();
    let url = cluster.nodes[0].url();
    let a = instance(&url, SubscriptionMode::Dynamic).await;
    let b = instance(&url, SubscriptionMode::Dynamic).await;
    let (mut on_b, _) = TestClient::authenticated(&b.url()).await;
    until_delivered(&a, &mut on_b, "before").await;

    let main = "socket.io#/#";
    let counts = cluster.shard_subscribers(main);
    assert_eq!(counts.iter().sum::<usize>(), 2, "{counts:?}");
    let source = counts.iter().position(|&c| c == 2).unwrap();
    let target = (source + 1) % 3;
    cluster.move_slot(cluster.slot_of(main), source, target);
    // Both instances take the channel again, on its new node.
    eventually("both subscribe the main channel on its new node", || {
        cluster.shard_subscribers(main)[target] == 2
    })
    .await;
    until_delivered(&a, &mut on_b, "after the move").await;
}

#[tokio::test]
async fn an_acl_user_with_the_least_the_sharded_mode_needs_delivers() {
    // What the README lists: exact channel names under the prefix (no patterns in sharded
    // pub/sub), and `info` for the topology.
    let redis = RedisServer::start_with(&[
        "--user",
        "default",
        "off",
        "--user",
        "fleet",
        "on",
        ">s3cret",
        "resetchannels",
        "&socket.io#*",
        "-@all",
        "+ping",
        "+info",
        "+spublish",
        "+ssubscribe",
        "+sunsubscribe",
        "+pubsub|shardnumsub",
    ]);
    let url = format!("redis://fleet:s3cret@127.0.0.1:{}", redis.port);
    let a = instance(&url, SubscriptionMode::Dynamic).await;
    let b = instance(&url, SubscriptionMode::Dynamic).await;
    let (mut on_b, _) = TestClient::authenticated(&b.url()).await;
    until_delivered(&a, &mut on_b, "allowed").await;
    // A room's channel too (subscribed by the sweep, under the same pattern).
    on_b.emit("join", json!({"rooms": ["public-acl"]})).await;
    on_b.sync().await;
    let deadline = Instant::now() + WAIT;
    loop {
        a.server
            .send(OutboundMessage::to("public-acl", "in-room", json!(1)))
            .await
            .unwrap();
        if let Ok(Received::Event(name, _)) =
            tokio::time::timeout(Duration::from_millis(300), on_b.next_non_ping()).await
        {
            assert_eq!(name, "in-room");
            break;
        }
        assert!(Instant::now() < deadline, "the room's send never arrived");
    }
}
