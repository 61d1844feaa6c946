//! A stack without the auth layer still works: sockets count as authenticated at connect, so
//! rooms and ping start then and events reach the handlers.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use socketio_stack::layers::{PingLayer, RoomsLayer};
use socketio_stack::{ClientState, OutboundMessage, SocketServer};

#[tokio::test]
async fn rooms_ping_and_handlers_start_at_connect() {
    let server = SocketServer::builder()
        .layer(PingLayer::new(Duration::from_millis(100)).unwrap())
        .layer(RoomsLayer::new().validate(allow_public))
        .on("sync", sync_handler)
        .build()
        .unwrap();
    let t = serve(server).await;
    let mut c = TestClient::connect(&t.url()).await;
    // The first ping comes at connect, without any `authenticate`.
    c.expect_event("ping").await;
    c.emit("join", json!({"rooms": ["public-a"]})).await;
    c.sync().await;
    let client = t.server.clients().remove(0);
    assert_eq!(client.state(), ClientState::Authenticated);
    let id = client.id().to_string();
    let rooms = rooms_of(&t, &id);
    let expected = sorted(["io-default", "io-notification", "public-a", id.as_str()]);
    assert_eq!(rooms, expected);
    t.server
        .send(OutboundMessage::to(
            "public-a",
            "hello",
            json!("no auth needed"),
        ))
        .await
        .unwrap();
    assert_eq!(c.expect_event("hello").await, json!("no auth needed"));
    c.expect_event("ping").await;
}

#[tokio::test]
async fn a_bare_core_tracks_clients_and_runs_handlers() {
    let server = SocketServer::builder()
        .on("sync", sync_handler)
        .build()
        .unwrap();
    let t = serve(server).await;
    let mut c = TestClient::connect(&t.url()).await;
    c.sync().await;
    assert_eq!(t.server.client_count(), 1);
    c.disconnect().await;
    eventually("untracked", || t.server.client_count() == 0).await;
}
