//! The metrics that only faults move, counted exactly: contained panics of handlers, garbage
//! and this instance's own messages from Redis, a Redis outage (failed publishes, the
//! subscription's loss and its return). Read through metrics-exporter-prometheus's recorder,
//! installed for this binary (one test: it is global). The demo's traffic counters:
//! tests/js/metrics.test.mjs.

mod common;

use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::*;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use socketio_stack::fanout::RedisFanout;
use socketio_stack::layers::AuthLayer;
use socketio_stack::{OutboundMessage, SocketServer};

/// The value of one series (`name{labels}` as rendered), 0 when absent.
fn value(handle: &PrometheusHandle, series: &str) -> f64 {
    handle
        .render()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, v) = l.rsplit_once(' ')?;
            (name == series).then(|| v.parse().unwrap())
        })
        .unwrap_or(0.0)
}

/// Waits until `series` reaches `at_least` (the reports come from other tasks).
async fn reaches(handle: &PrometheusHandle, series: &str, at_least: f64) -> f64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = value(handle, series);
        if v >= at_least {
            return v;
        }
        assert!(Instant::now() < deadline, "{series} is {v}, not {at_least}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn panics_garbage_and_a_redis_outage_are_counted_exactly() {
    let handle = PrometheusBuilder::new().install_recorder().unwrap();
    let mut redis = RedisServer::start();
    let fanout = RedisFanout::connect(&redis.url()).await.unwrap();
    let server = SocketServer::builder()
        .fanout(fanout)
        .layer(AuthLayer::new(authenticate))
        .on("boom", async || panic!("the application's bug"))
        .on("sync", sync_handler)
        .build()
        .unwrap();
    let t = serve(server).await;
    let (mut c, _) = TestClient::authenticated(&t.url()).await;

    // Three panicking handlers, contained and counted; the socket goes on.
    for _ in 0..3 {
        c.emit("boom", json!(1)).await;
    }
    c.sync().await;
    assert_eq!(value(&handle, "socketio_handler_panics_total"), 3.0);

    // A send comes back from Redis and is delivered; garbage on the channel is counted apart.
    t.server
        .send(OutboundMessage::broadcast("news", json!(1)))
        .await
        .unwrap();
    c.expect_event("news").await;
    let delivered = r#"socketio_fanout_received_total{result="delivered"}"#;
    assert_eq!(value(&handle, delivered), 1.0);
    let out = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "PUBLISH",
            "socket.io#/#",
            "garbage",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    reaches(
        &handle,
        r#"socketio_fanout_received_total{result="malformed"}"#,
        1.0,
    )
    .await;
    assert_eq!(
        value(&handle, "socketio_redis_publish_duration_seconds_count"),
        1.0
    );

    // Redis goes away: the send fails and is counted, and so is the subscription's loss; it
    // comes back: the subscription's return is counted once.
    redis.kill();
    assert!(
        t.server
            .send(OutboundMessage::broadcast("lost", json!(1)))
            .await
            .is_err()
    );
    assert_eq!(
        value(&handle, r#"socketio_redis_errors_total{op="publish"}"#),
        1.0
    );
    assert_eq!(
        value(&handle, r#"socketio_sends_total{outcome="failed"}"#),
        1.0
    );
    reaches(
        &handle,
        r#"socketio_redis_errors_total{op="subscribe"}"#,
        1.0,
    )
    .await;
    assert_eq!(
        value(&handle, "socketio_redis_subscription_reconnects_total"),
        0.0
    );
    redis.restart();
    reaches(&handle, "socketio_redis_subscription_reconnects_total", 1.0).await;
    assert_eq!(
        value(&handle, "socketio_redis_subscription_reconnects_total"),
        1.0
    );
    assert_eq!(value(&handle, "socketio_connected_sockets"), 1.0);
    c.disconnect().await;
    reaches(&handle, "socketio_connections_total", 1.0).await;
    let deadline = Instant::now() + WAIT;
    while value(&handle, "socketio_connected_sockets") != 0.0 {
        assert!(Instant::now() < deadline, "the gauge never went back to 0");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
