//! Sharded pub/sub (Redis 7 `SSUBSCRIBE`, `SPUBLISH`, `PUBSUB SHARDNUMSUB`) through the redis
//! client's cluster connection, on a three-node Redis Cluster the test starts, carrying
//! messages of `fanout::sharded_wire`: what the fan-out's sharded mode (issue 12, item 4) is to
//! stand on, checked before it is built, down to a channel's slot moving to another node; and
//! the same on one redis-server 7, which has sharded pub/sub too, through a plain connection.

mod common;

use common::WAIT;
use common::redis_server::{RedisCluster, RedisServer};
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClientBuilder;
use redis::{AsyncCommands, AsyncConnectionConfig, ProtocolVersion, PushInfo, PushKind, Value};
use socketio_stack::args::Arg;
use socketio_stack::fanout::sharded_wire::{self, Body, Broadcast, Flags, Message, Target};
use tokio::sync::mpsc::UnboundedReceiver;

/// The next push of `kind` about `channel`, skipping the others (the confirmations the client
/// sends again when it resubscribes, for instance).
async fn next_push(
    pushes: &mut UnboundedReceiver<PushInfo>,
    kind: PushKind,
    channel: &str,
) -> PushInfo {
    let wanted = async {
        loop {
            let push = pushes.recv().await.expect("the push channel is open");
            if push.kind == kind && push.data.first() == Some(&bulk(channel.as_bytes())) {
                return push;
            }
        }
    };
    tokio::time::timeout(WAIT, wanted)
        .await
        .unwrap_or_else(|_| panic!("no {kind:?} push about {channel} within {WAIT:?}"))
}

fn bulk(bytes: &[u8]) -> Value {
    Value::BulkString(bytes.to_vec())
}

/// A plain connection to one node of the cluster.
async fn node(port: u16) -> MultiplexedConnection {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// `PUBSUB SHARDNUMSUB channel` on one node: what the Node adapter sums over the masters for
/// its server count.
async fn shard_subscribers(port: u16, channel: &str) -> usize {
    let (_, count): (String, usize) = redis::cmd("PUBSUB")
        .arg("SHARDNUMSUB")
        .arg(channel)
        .query_async(&mut node(port).await)
        .await
        .unwrap();
    count
}

/// A broadcast as a Node sharded adapter of uid `uid` writes it.
fn broadcast(uid: &str, n: u64) -> Message {
    Message {
        uid: uid.into(),
        nsp: "/".into(),
        body: Body::Broadcast(Broadcast {
            event: "news".into(),
            args: vec![
                Arg::from(n),
                Arg::Binary(bytes::Bytes::from_static(b"\x01")),
            ],
            request_id: None,
            target: Target::default(),
            flags: Flags::default(),
        }),
    }
}

#[tokio::test]
async fn a_sharded_subscription_through_the_cluster_connection_survives_its_slot_moving() {
    let cluster = RedisCluster::start();
    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.url()).collect();
    // Pushes (RESP3) are what carries `smessage`; a connection without a push sender refuses
    // SSUBSCRIBE.
    let (tx, mut pushes) = tokio::sync::mpsc::unbounded_channel();
    let mut subscriber = ClusterClientBuilder::new(urls.clone())
        .use_protocol(ProtocolVersion::RESP3)
        .push_sender(tx)
        .build()
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    let mut publisher = ClusterClientBuilder::new(urls)
        .build()
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();

    // One server's two channels of `/`, in two slots: the cluster connection sends each
    // SSUBSCRIBE to the node owning its channel's slot.
    let main = sharded_wire::main_channel("socket.io", "/");
    let answers = sharded_wire::response_channel("socket.io", "/", "22580c26a967c78c");
    for channel in [&main, &answers] {
        subscriber.ssubscribe(channel).await.unwrap();
        next_push(&mut pushes, PushKind::SSubscribe, channel).await;
    }

    let first = broadcast("c81d1484cdcdde13", 1);
    let receivers: usize = publisher
        .spublish(&main, sharded_wire::encode(&first).unwrap())
        .await
        .unwrap();
    assert_eq!(receivers, 1);
    let push = next_push(&mut pushes, PushKind::SMessage, &main).await;
    let [_, Value::BulkString(bytes)] = push.data.as_slice() else {
        panic!("an smessage of {:?}", push.data);
    };
    assert_eq!(sharded_wire::decode(bytes).unwrap(), Some(first));

    // The server count as the Node adapter takes it: one node, the owner, counts the
    // subscriber; the others none.
    let counts = cluster.shard_subscribers(&main);
    assert_eq!(counts.iter().sum::<usize>(), 1, "{counts:?}");
    let source = counts.iter().position(|&c| c == 1).unwrap();
    // The cluster connection asks every node and adds their counts up itself.
    let total: std::collections::HashMap<String, usize> = redis::cmd("PUBSUB")
        .arg("SHARDNUMSUB")
        .arg(&main)
        .query_async(&mut publisher)
        .await
        .unwrap();
    assert_eq!(total, [(main.clone(), 1)].into());

    // The slot of the main channel moves to another master: its old owner drops the
    // subscription and says so with an `sunsubscribe` push.
    let slot = cluster.slot_of(&main);
    let target = (source + 1) % 3;
    cluster.move_slot(slot, source, target);
    next_push(&mut pushes, PushKind::SUnsubscribe, &main).await;
    assert_eq!(cluster.shard_subscribers(&main), [0, 0, 0]);
    // The client forgot the channel with that push, and nothing resubscribes it: a publish,
    // sent on to the new owner after its MOVED, reaches nobody.
    let lost: usize = publisher
        .spublish(&main, sharded_wire::encode(&broadcast("x", 2)).unwrap())
        .await
        .unwrap();
    assert_eq!(lost, 0);

    // Subscribing again is the subscriber's task; the cluster connection follows the MOVED to
    // the new owner.
    subscriber.ssubscribe(&main).await.unwrap();
    next_push(&mut pushes, PushKind::SSubscribe, &main).await;
    let mut expected = vec![0; 3];
    expected[target] = 1;
    assert_eq!(cluster.shard_subscribers(&main), expected);
    let third = broadcast("c81d1484cdcdde13", 3);
    let receivers: usize = publisher
        .spublish(&main, sharded_wire::encode(&third).unwrap())
        .await
        .unwrap();
    assert_eq!(receivers, 1);
    let push = next_push(&mut pushes, PushKind::SMessage, &main).await;
    let [_, Value::BulkString(bytes)] = push.data.as_slice() else {
        panic!("an smessage of {:?}", push.data);
    };
    assert_eq!(sharded_wire::decode(bytes).unwrap(), Some(third));
    // The answers' channel, in a slot that did not move, kept its subscription.
    assert_eq!(cluster.shard_subscribers(&answers).iter().sum::<usize>(), 1);
}

#[tokio::test]
async fn one_redis_server_has_sharded_pub_sub_through_a_plain_resp3_connection() {
    let server = RedisServer::start();
    let client = redis::Client::open(format!("{}?protocol=3", server.url())).unwrap();
    let (tx, mut pushes) = tokio::sync::mpsc::unbounded_channel();
    let mut subscriber = client
        .get_multiplexed_async_connection_with_config(
            &AsyncConnectionConfig::new().set_push_sender(tx),
        )
        .await
        .unwrap();
    // No method for it on a plain connection: the command as it is, whose confirmation the
    // connection reads as the reply.
    let main = sharded_wire::main_channel("socket.io", "/");
    let () = redis::cmd("SSUBSCRIBE")
        .arg(&main)
        .query_async(&mut subscriber)
        .await
        .unwrap();
    next_push(&mut pushes, PushKind::SSubscribe, &main).await;
    assert_eq!(shard_subscribers(server.port, &main).await, 1);

    let message = broadcast("c81d1484cdcdde13", 1);
    let receivers: usize = node(server.port)
        .await
        .spublish(&main, sharded_wire::encode(&message).unwrap())
        .await
        .unwrap();
    assert_eq!(receivers, 1);
    let push = next_push(&mut pushes, PushKind::SMessage, &main).await;
    let [_, Value::BulkString(bytes)] = push.data.as_slice() else {
        panic!("an smessage of {:?}", push.data);
    };
    assert_eq!(sharded_wire::decode(bytes).unwrap(), Some(message));
    // The same connection still answers commands between the pushes (RESP3).
    let pong: String = redis::cmd("PING")
        .query_async(&mut subscriber)
        .await
        .unwrap();
    assert_eq!(pong, "PONG");
}
