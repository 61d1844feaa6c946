//! One socket's events reach the stack in the order they were sent, even when an earlier one
//! takes long; different sockets do not wait for each other.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Received;
use common::*;
use serde_json::json;
use socketio_stack::layers::{AuthLayer, RoomsLayer};
use socketio_stack::{BoxError, Session, SocketServer};
use tokio::sync::Notify;

/// A validator that takes its time for rooms named `slow-*`: if events of one socket were
/// handled concurrently (socketioxide spawns a task per message), the `leave` sent after the
/// `join` would be applied first and the socket would end up in the room.
async fn slow_validator(_s: Session, rooms: Vec<String>) -> Result<Vec<String>, BoxError> {
    if rooms.iter().any(|r| r.starts_with("slow-")) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(rooms)
}

#[tokio::test]
async fn a_join_then_a_leave_never_swap() {
    let server = SocketServer::builder()
        .layer(AuthLayer::new(authenticate))
        .layer(RoomsLayer::new().validate(slow_validator))
        .on("sync", sync_handler)
        .build()
        .unwrap();
    let t = serve(server).await;
    let (mut c, id) = TestClient::authenticated(&t.url()).await;
    for i in 0..5 {
        let room = format!("slow-{i}");
        c.emit("join", json!({ "rooms": [room] })).await;
        c.emit("leave", json!({ "rooms": [room] })).await;
    }
    c.emit("join", json!({ "rooms": ["slow-last"] })).await;
    c.sync().await;
    let mut rooms = rooms_of(&t, &id);
    rooms.retain(|r| r.starts_with("slow-"));
    assert_eq!(rooms, ["slow-last"]);
}

#[tokio::test]
async fn a_slow_socket_does_not_hold_up_the_others() {
    let gate = Arc::new(Notify::new());
    let server = {
        let gate = gate.clone();
        SocketServer::builder()
            .layer(AuthLayer::new(authenticate))
            .on("sync", sync_handler)
            .on("stall", move || {
                let gate = gate.clone();
                async move { gate.notified().await }
            })
            .build()
            .unwrap()
    };
    let t = serve(server).await;
    let (mut slow, _) = TestClient::authenticated(&t.url()).await;
    let (mut quick, _) = TestClient::authenticated(&t.url()).await;
    slow.emit("stall", json!(1)).await;
    // The stalled socket's own next event waits; another socket's does not.
    quick.sync().await;
    gate.notify_one();
    slow.sync().await;
}

#[tokio::test]
async fn a_socket_leaving_while_its_handler_stalls_is_cleaned_up_at_once() {
    let server = SocketServer::builder()
        .layer(AuthLayer::new(authenticate))
        .layer(RoomsLayer::new().validate(slow_validator))
        .on("sync", sync_handler)
        .on("stall", std::future::pending::<()>)
        .build()
        .unwrap();
    let t = serve(server).await;
    let (mut c, id) = TestClient::authenticated(&t.url()).await;
    c.emit("join", json!({ "rooms": ["room-a"] })).await;
    c.sync().await;
    let client = t.server.client(&id).unwrap();
    c.emit("stall", json!(1)).await;
    c.emit("join", json!({ "rooms": ["room-b"] })).await;
    c.disconnect().await;
    eventually("untracked", || t.server.client_count() == 0).await;
    eventually("out of every room", || client.socket.rooms().is_empty()).await;
    assert!(client.session.timer_names().is_empty());
}

#[tokio::test]
async fn rooms_and_ping_above_the_auth_layer_still_start_at_authentication() {
    let server = SocketServer::builder()
        .layer(socketio_stack::layers::PingLayer::new(Duration::from_secs(30)).unwrap())
        .layer(RoomsLayer::new().validate(slow_validator))
        .layer(AuthLayer::new(authenticate))
        .on("sync", sync_handler)
        .build()
        .unwrap();
    let t = serve(server).await;
    let mut c = TestClient::connect(&t.url()).await;
    // Reaches the rooms layer before the auth layer can drop it: ignored there all the same.
    c.emit("join", json!({ "rooms": ["early"] })).await;
    c.emit("authenticate", json!({})).await;
    let Received::Event(first, _) = c.next().await else {
        panic!("closed")
    };
    assert_eq!(first, "ping");
    let id = c.expect_event("authenticated").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    c.sync().await;
    assert_eq!(
        rooms_of(&t, &id),
        sorted(["io-default", "io-notification", id.as_str()])
    );
}
