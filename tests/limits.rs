//! Limits against a real server: one client flooding must not hurt the others.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use common::*;
use serde_json::json;
use socketio_stack::SocketServer;
use socketio_stack::client::{ClientOptions, SocketClient};
use socketio_stack::layers::rate_limit::{Bucket, ExcessPolicy, RateLimitLayer};
use socketio_stack::layers::{AuthLayer, RoomsLayer};
use tokio::sync::mpsc;

fn server(policy: ExcessPolicy, handled: Arc<AtomicUsize>) -> SocketServer {
    SocketServer::builder()
        .layer(
            RateLimitLayer::default()
                .events(Bucket::new(100.0, 200).unwrap())
                .policy(policy),
        )
        .layer(AuthLayer::new(authenticate))
        .layer(RoomsLayer::new().validate(allow_public))
        .on("sync", sync_handler)
        .on("flood", move || {
            let handled = handled.clone();
            async move {
                handled.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .unwrap()
}

/// A client of the crate's own, authenticated, reporting `rate_limited` and disconnects.
async fn flooder(t: &TestServer) -> (SocketClient, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (a, b) = (tx.clone(), tx.clone());
    let client = SocketClient::builder("flooder", format!("http://{}", t.addr))
        .options(ClientOptions {
            auth: Some(json!({ "token": TOKEN })),
            reconnection: false,
            ..Default::default()
        })
        .on_connected(|c| async move { c.authenticate() })
        .on_authenticated(move |_| {
            a.send("authenticated".to_owned()).ok();
            async {}
        })
        .on_disconnected(move |_, reason| {
            b.send(format!("disconnected:{reason}")).ok();
            async {}
        })
        .build()
        .unwrap();
    client.subscribe("rate_limited", move |data| {
        tx.send(format!("rate_limited:{}", data["message"])).ok();
        async {}
    });
    (client, rx)
}

async fn expect(rx: &mut mpsc::UnboundedReceiver<String>, prefix: &str) -> String {
    loop {
        let line = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("in time")
            .expect("open");
        if line.starts_with(prefix) {
            return line;
        }
    }
}

#[tokio::test]
async fn a_flood_of_50000_events_is_cut_to_the_rate_and_others_are_served() {
    let handled = Arc::new(AtomicUsize::new(0));
    let t = serve(server(ExcessPolicy::Drop, handled.clone())).await;
    let (mut other, _) = TestClient::authenticated(&t.url()).await;
    let (flood, mut seen) = flooder(&t).await;
    expect(&mut seen, "authenticated").await;
    let started = Instant::now();
    for n in 0..50_000 {
        flood.emit("flood", &json!(n)).unwrap();
    }
    // Another client's round trip goes through while the flood is being cut.
    other.sync().await;
    eventually("the burst went through", || {
        handled.load(Ordering::SeqCst) >= 200
    })
    .await;
    // Checked after the fact: whatever was handled by now fits in burst + rate x time.
    let elapsed = started.elapsed().as_secs_f64();
    let bound = 200.0 + 100.0 * elapsed + 5.0;
    let got = handled.load(Ordering::SeqCst) as f64;
    assert!(
        got <= bound,
        "{got} events handled in {elapsed:.2} s, bound {bound:.0}"
    );
    assert!(flood.is_connected(), "the drop policy keeps the client");
    flood.shutdown().await;
}

#[tokio::test]
async fn the_disconnect_policy_tells_the_flooder_and_drops_it() {
    let handled = Arc::new(AtomicUsize::new(0));
    let t = serve(server(ExcessPolicy::Disconnect, handled.clone())).await;
    let (mut other, _) = TestClient::authenticated(&t.url()).await;
    let (flood, mut seen) = flooder(&t).await;
    expect(&mut seen, "authenticated").await;
    for n in 0..5_000 {
        if flood.emit("flood", &json!(n)).is_err() {
            break;
        }
    }
    let told = expect(&mut seen, "rate_limited").await;
    assert!(told.contains("rate limit"), "{told}");
    assert_eq!(
        expect(&mut seen, "disconnected").await,
        "disconnected:io server disconnect"
    );
    other.sync().await;
    eventually("only the other client is left", || {
        t.server.client_count() == 1
    })
    .await;
    flood.shutdown().await;
}
