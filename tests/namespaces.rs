//! Namespaces beside `/`: static and dynamic ones are served through the same layers and
//! handlers, sends reach them by namespace, and the fan-out carries them between instances.

mod common;

use common::redis_server::RedisServer;
use common::*;
use serde_json::json;
use socketio_stack::fanout::RedisFanout;
use socketio_stack::layers::AuthLayer;
use socketio_stack::{BuildError, Delivery, OutboundMessage, SocketServer};

/// A server on `fanout` (or local) serving `/`, `/admin` and `/tenant/{id}`, behind the
/// seeds' authentication.
async fn server(fanout: Option<RedisFanout>) -> TestServer {
    let mut builder = SocketServer::builder();
    if let Some(fanout) = fanout {
        builder = builder.fanout(fanout);
    }
    let server = builder
        .namespace("/admin")
        .dynamic_namespace("/tenant/{id}")
        .layer(AuthLayer::new(authenticate))
        .on("sync", sync_handler)
        .build()
        .unwrap();
    serve(server).await
}

/// A client of namespace `nsp`, authenticated through the layer stack.
async fn member(url: &str, nsp: &str) -> TestClient {
    let mut c = TestClient::connect_with(
        url,
        ClientOptions {
            namespace: Some(nsp.to_owned()),
            ..ClientOptions::default()
        },
    )
    .await;
    c.emit("authenticate", json!({})).await;
    c.expect_event("authenticated").await;
    c
}

#[tokio::test]
async fn every_namespace_goes_through_the_layers_and_sends_reach_it_by_namespace() {
    let t = server(None).await;
    // The authentication layer applies in /admin as in /: a bad token is refused there too.
    let mut refused = TestClient::connect_with(
        &t.url(),
        ClientOptions {
            namespace: Some("/admin".into()),
            auth: Some(json!({ "token": "wrong" })),
            ..ClientOptions::default()
        },
    )
    .await;
    refused.emit("authenticate", json!({})).await;
    refused.expect_event("unauthenticated").await;

    let mut main = member(&t.url(), "/").await;
    let mut admin = member(&t.url(), "/admin").await;
    let mut tenant = member(&t.url(), "/tenant/7").await;

    let to = |nsp: &str, data| OutboundMessage::broadcast("news", data).in_namespace(nsp);
    assert_eq!(
        t.server.send(to("/admin", json!("admins"))).await,
        Ok(Delivery::Sent)
    );
    assert_eq!(
        t.server.send(to("/tenant/7", json!("t7"))).await,
        Ok(Delivery::Sent)
    );
    assert_eq!(
        t.server
            .send(OutboundMessage::broadcast("news", json!("main")))
            .await,
        Ok(Delivery::Sent)
    );
    // No socket has opened /tenant/8 here: nobody to deliver to, and no error.
    assert_eq!(
        t.server.send(to("/tenant/8", json!("t8"))).await,
        Ok(Delivery::Sent)
    );

    assert_eq!(admin.expect_event("news").await, json!("admins"));
    assert_eq!(tenant.expect_event("news").await, json!("t7"));
    assert_eq!(main.expect_event("news").await, json!("main"));
    for c in [&mut main, &mut admin, &mut tenant] {
        c.sync().await;
        assert!(
            c.skipped
                .iter()
                .all(|r| !matches!(r, Received::Event(name, _) if name == "news")),
            "each namespace got its own send only: {:?}",
            c.skipped
        );
    }
}

#[tokio::test]
async fn namespaces_fan_out_between_instances_dynamic_ones_included() {
    let redis = RedisServer::start();
    let connect = || async { Some(RedisFanout::connect(&redis.url()).await.unwrap()) };
    let (a, b) = (server(connect().await).await, server(connect().await).await);
    let mut admin_b = member(&b.url(), "/admin").await;
    let mut tenant_b = member(&b.url(), "/tenant/7").await;
    let mut main_b = member(&b.url(), "/").await;
    // Until b has subscribed /tenant/7 (as its first socket came), a send from a may pass
    // it by: send until it arrives.
    let to = |nsp: &str, data| OutboundMessage::broadcast("news", data).in_namespace(nsp);
    a.server.send(to("/admin", json!("admins"))).await.unwrap();
    assert_eq!(admin_b.expect_event("news").await, json!("admins"));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        a.server.send(to("/tenant/7", json!("t7"))).await.unwrap();
        admin_b.sync().await;
        tenant_b.sync().await;
        if tenant_b.skipped.iter().any(
            |r| matches!(r, Received::Event(name, data) if name == "news" && *data == json!("t7")),
        ) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/tenant/7 never reached b"
        );
    }
    main_b.sync().await;
    assert!(
        main_b
            .skipped
            .iter()
            .all(|r| !matches!(r, Received::Event(name, _) if name == "news")),
        "/ got none of them: {:?}",
        main_b.skipped
    );
}

#[test]
fn a_namespace_that_is_not_a_path_is_refused_at_build() {
    let refused = |builder: socketio_stack::SocketServerBuilder| match builder.build() {
        Err(BuildError::InvalidNamespace(ns, reason)) => format!("{ns}: {reason}"),
        other => panic!("built: {other:?}"),
    };
    assert!(refused(SocketServer::builder().namespace("admin")).contains("start with '/'"));
    assert!(refused(SocketServer::builder().namespace("/")).contains("always served"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    // socketioxide refuses the pattern (an unclosed parameter).
    let _guard = rt.enter();
    refused(SocketServer::builder().dynamic_namespace("/tenant/{id"));
}
