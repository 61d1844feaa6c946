//! The Redis connections of the sharded mode ([`RedisOptions::sharded`]): the publisher
//! (`SPUBLISH`, `PUBSUB SHARDNUMSUB`) and the subscriber (`SSUBSCRIBE`, whose messages come as
//! RESP3 pushes). On a Redis Cluster they are the client's cluster connections, which send
//! each command to the node owning its channel's slot and follow `MOVED`; on one
//! redis-server 7 (which has sharded pub/sub too) a plain connection and the emitter's pool.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, PushInfo, RedisResult};
use tokio::sync::mpsc;

use crate::fanout::connect_error::{Cause, FanoutError};
use crate::fanout::emitter::{Emitter, timed_publish};
use crate::fanout::options::RedisOptions;
use crate::fanout::sharded_wire::{self, Message, SubscriptionMode, publish_channel};

/// What the URL names: a node of a Redis Cluster, or one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Topology {
    Cluster,
    Single,
}

/// Asks the Redis at the URL whether it is a cluster node (`INFO cluster`); the caller has
/// checked that it is reachable.
pub(crate) async fn topology(
    client: &redis::Client,
    timeout: Duration,
) -> Result<Topology, FanoutError> {
    let asking = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("INFO")
            .arg("cluster")
            .query_async::<String>(&mut conn)
            .await
    };
    match tokio::time::timeout(timeout, asking).await {
        Ok(Ok(info)) if info.contains("cluster_enabled:1") => Ok(Topology::Cluster),
        Ok(Ok(_)) => Ok(Topology::Single),
        Ok(Err(e)) => Err(FanoutError::connecting(e)),
        Err(_) => Err(FanoutError::Unreachable(Cause::timed_out(
            "INFO cluster",
            timeout,
        ))),
    }
}

/// Publishes sharded messages on the channels of prefix `key`, as an adapter in `mode` does.
/// Cheap to clone.
#[derive(Clone)]
pub(crate) struct ShardedPublisher {
    link: Link,
    key: String,
    mode: SubscriptionMode,
}

#[derive(Clone)]
enum Link {
    /// The cluster connection (multiplexed; `None` once closed).
    Cluster {
        conn: Arc<RwLock<Option<ClusterConnection>>>,
        timeout: Duration,
    },
    /// One server: the pooled connections of an emitter.
    Single(Emitter),
}

impl ShardedPublisher {
    /// The publisher for `topology` and the options' key and mode; `pool` is used on one
    /// server.
    pub(crate) async fn connect(
        options: &RedisOptions,
        mode: SubscriptionMode,
        topology: Topology,
        pool: Emitter,
    ) -> Result<Self, FanoutError> {
        let link = match topology {
            Topology::Single => Link::Single(pool),
            Topology::Cluster => {
                let client = options.cluster_client(None)?;
                let conn = connect_cluster(&client, options.timeout()).await?;
                Link::Cluster {
                    conn: Arc::new(RwLock::new(Some(conn))),
                    timeout: options.timeout(),
                }
            }
        };
        Ok(Self {
            link,
            key: options.channel_key().to_owned(),
            mode,
        })
    }

    /// The subscription mode.
    pub(crate) fn mode(&self) -> SubscriptionMode {
        self.mode
    }

    /// Publishes `message` where the adapter in this mode publishes it ([`publish_channel`]):
    /// how many subscribers received it, and whether that was the main channel (which every
    /// server of the namespace, this one included, subscribes to; a room's channel has none
    /// when no server holds the room). Refused, before anything is published, what the
    /// receivers would refuse.
    pub(crate) async fn publish(&self, message: &Message) -> Result<(u64, bool), FanoutError> {
        let bytes = sharded_wire::encode(message).map_err(FanoutError::Unpublishable)?;
        let channel = publish_channel(&self.key, self.mode, message);
        let main = channel == sharded_wire::main_channel(&self.key, &message.nsp);
        Ok((self.spublish(channel, bytes).await?, main))
    }

    /// Publishes `message` on the main channel of its namespace, wherever the mode would
    /// publish it (every server of the namespace hears that one).
    pub(crate) async fn publish_to_main(
        &self,
        message: &Message,
    ) -> Result<(u64, bool), FanoutError> {
        let bytes = sharded_wire::encode(message).map_err(FanoutError::Unpublishable)?;
        let channel = sharded_wire::main_channel(&self.key, &message.nsp);
        Ok((self.spublish(channel, bytes).await?, true))
    }

    /// Publishes an answer on the response channel of the adapter `asker`.
    pub(crate) async fn answer(&self, asker: &str, message: &Message) -> Result<u64, FanoutError> {
        let bytes = sharded_wire::encode(message).map_err(FanoutError::Unpublishable)?;
        let channel = sharded_wire::response_channel(&self.key, &message.nsp, asker);
        self.spublish(channel, bytes).await
    }

    /// How many servers serve `nsp`: the subscribers of its main channel on every master
    /// together (`PUBSUB SHARDNUMSUB`, which the cluster connection asks of each and adds up),
    /// as the JavaScript adapter counts them.
    pub(crate) async fn server_count(&self, nsp: &str) -> Result<u64, FanoutError> {
        let channel = sharded_wire::main_channel(&self.key, nsp);
        let mut cmd = redis::cmd("PUBSUB");
        cmd.arg("SHARDNUMSUB").arg(&channel);
        let counts: HashMap<String, u64> = self.run(cmd).await?;
        Ok(counts.get(&channel).copied().unwrap_or(0))
    }

    /// Closes the connections (of every clone): publishing fails from then on.
    pub(crate) fn close(&self) {
        match &self.link {
            Link::Cluster { conn, .. } => {
                conn.write().unwrap_or_else(|e| e.into_inner()).take();
            }
            Link::Single(pool) => pool.close(),
        }
    }

    async fn spublish(&self, channel: String, payload: Vec<u8>) -> Result<u64, FanoutError> {
        let mut cmd = redis::cmd("SPUBLISH");
        cmd.arg(channel).arg(payload);
        timed_publish(self.run(cmd)).await
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, FanoutError> {
        match &self.link {
            Link::Single(pool) => pool.run(cmd).await,
            Link::Cluster { conn, timeout } => {
                let mut conn = conn
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                    .ok_or(FanoutError::Closed)?;
                match tokio::time::timeout(*timeout, cmd.query_async::<T>(&mut conn)).await {
                    Ok(Ok(value)) => Ok(value),
                    Ok(Err(e)) => Err(FanoutError::Unavailable(Cause::of(e))),
                    Err(_) => Err(FanoutError::Unavailable(Cause::timed_out(
                        "Redis Cluster",
                        *timeout,
                    ))),
                }
            }
        }
    }
}

/// The subscriber: its connection, and what Redis pushes on it (messages, confirmations, the
/// `sunsubscribe` of a channel whose slot moved, the client's `Disconnection`).
pub(crate) struct ShardedSubscriber {
    conn: SubscriberConn,
    pub(crate) pushes: mpsc::UnboundedReceiver<PushInfo>,
}

enum SubscriberConn {
    Cluster(ClusterConnection),
    Single(MultiplexedConnection),
}

impl ShardedSubscriber {
    /// A new subscriber connection, subscribed to nothing yet.
    pub(crate) async fn open(
        options: &RedisOptions,
        topology: Topology,
    ) -> Result<Self, FanoutError> {
        let (tx, pushes) = mpsc::unbounded_channel();
        let timeout = options.timeout();
        let conn = match topology {
            Topology::Cluster => {
                let client = options.cluster_client(Some(tx))?;
                SubscriberConn::Cluster(connect_cluster(&client, timeout).await?)
            }
            Topology::Single => {
                let client = options.resp3_client()?;
                let config = AsyncConnectionConfig::new()
                    .set_push_sender(tx)
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout));
                let connecting = client.get_multiplexed_async_connection_with_config(&config);
                match tokio::time::timeout(timeout, connecting).await {
                    Ok(Ok(conn)) => SubscriberConn::Single(conn),
                    Ok(Err(e)) => return Err(FanoutError::connecting(e)),
                    Err(_) => {
                        return Err(FanoutError::Unreachable(Cause::timed_out(
                            "subscription",
                            timeout,
                        )));
                    }
                }
            }
        };
        Ok(Self { conn, pushes })
    }

    /// `SSUBSCRIBE channel`, one channel a command (the channels of one command must share a
    /// slot, and a plain connection reads the first confirmation as its reply).
    pub(crate) async fn subscribe(&mut self, channel: &str) -> RedisResult<()> {
        match &mut self.conn {
            SubscriberConn::Cluster(conn) => conn.ssubscribe(channel).await,
            SubscriberConn::Single(conn) => {
                redis::cmd("SSUBSCRIBE")
                    .arg(channel)
                    .query_async(conn)
                    .await
            }
        }
    }

    /// `SUNSUBSCRIBE channel`.
    pub(crate) async fn unsubscribe(&mut self, channel: &str) -> RedisResult<()> {
        match &mut self.conn {
            SubscriberConn::Cluster(conn) => conn.sunsubscribe(channel).await,
            SubscriberConn::Single(conn) => {
                redis::cmd("SUNSUBSCRIBE")
                    .arg(channel)
                    .query_async(conn)
                    .await
            }
        }
    }

    /// A PING (any answer will do: on a cluster, some node's).
    pub(crate) async fn ping(&mut self) -> RedisResult<()> {
        let ping = redis::cmd("PING");
        match &mut self.conn {
            SubscriberConn::Cluster(conn) => ping.query_async::<redis::Value>(conn).await,
            SubscriberConn::Single(conn) => ping.query_async::<redis::Value>(conn).await,
        }
        .map(drop)
    }
}

async fn connect_cluster(
    client: &redis::cluster::ClusterClient,
    timeout: Duration,
) -> Result<ClusterConnection, FanoutError> {
    match tokio::time::timeout(timeout, client.get_async_connection()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(FanoutError::connecting(e)),
        Err(_) => Err(FanoutError::Unreachable(Cause::timed_out(
            "Redis Cluster",
            timeout,
        ))),
    }
}
