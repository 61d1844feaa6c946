//! Delivery through Redis: the bottom of the outbound stack when instances share a Redis, in
//! place of [`LocalDelivery`](crate::outbound::LocalDelivery). Outbound layers wrap either.
//!
//! ```no_run
//! use socketio_stack::OutboundMessage;
//! use socketio_stack::fanout::RedisFanout;
//! use tower::ServiceExt;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let fanout = RedisFanout::connect("redis://127.0.0.1:6379").await?;
//! // What the builder's `fanout()` puts at the bottom of the outbound stack; a plain
//! // `tower::Service<OutboundMessage>`.
//! let delivery = fanout.delivery();
//! delivery.oneshot(OutboundMessage::to("io-default", "news", serde_json::json!(1))).await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tower_service::Service;

use crate::fanout::connect_error::FanoutError;
use crate::fanout::emitter::Emitter;
use crate::fanout::redis_fanout::RoomCheck;
use crate::fanout::sharded_connections::ShardedPublisher;
use crate::fanout::sharded_messages;
use crate::fanout::wire::Broadcast;
use crate::outbound::{OutboundMessage, SendError};
use crate::plumbing::BoxFuture;

/// Publishes each send on Redis as `@socket.io/redis-emitter` does (uid `emitter`), and
/// delivers nothing here: this instance delivers it when it comes back from Redis, like every
/// other instance on that Redis. A send that Redis does not take, or that would not come back
/// to this instance, fails with [`SendError::Delivery`]. Obtained from
/// [`RedisFanout::delivery`](crate::fanout::RedisFanout::delivery); cheap to clone.
#[derive(Clone)]
pub struct RedisDelivery {
    publishing: Publishing,
    /// The instance's subscription state, shared with its subscription loop.
    subscribed: Arc<AtomicBool>,
}

/// Which wire a send is published on.
#[derive(Clone)]
pub(crate) enum Publishing {
    /// The classic adapter's, as `@socket.io/redis-emitter` publishes.
    Classic(Emitter),
    /// The sharded adapter's (uid `emitter` too, so that every instance delivers it).
    Sharded(ShardedPublisher, RoomCheck),
}

impl RedisDelivery {
    pub(crate) fn new(publishing: Publishing, subscribed: Arc<AtomicBool>) -> Self {
        Self {
            publishing,
            subscribed,
        }
    }
}

impl Publishing {
    /// Publishes `broadcast`: how many subscribers got it, and whether this instance is one
    /// of them for certain (not on a room's own channel of the sharded wire, which has none
    /// when no server holds the room).
    async fn publish(&self, broadcast: &Broadcast) -> Result<(u64, bool), FanoutError> {
        match self {
            Self::Classic(emitter) => Ok((emitter.publish(broadcast).await?, true)),
            Self::Sharded(publisher, rooms) => {
                if crate::event::names::is_reserved(&broadcast.event) {
                    return Err(FanoutError::ReservedEvent(broadcast.event.clone()));
                }
                broadcast
                    .check_publishable()
                    .map_err(FanoutError::Unpublishable)?;
                let message = sharded_messages::broadcast(&broadcast.uid, broadcast);
                // A room this instance holds sockets in but has not subscribed yet (joined
                // since the last sweep): the main channel reaches them.
                let to_main = match broadcast.rooms.as_slice() {
                    [room] => !rooms.room_channel_reaches_us(&broadcast.nsp, room),
                    _ => false,
                };
                if to_main {
                    return publisher.publish_to_main(&message).await;
                }
                publisher.publish(&message).await
            }
        }
    }
}

impl std::fmt::Debug for RedisDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDelivery")
            .field(
                "wire",
                &match self.publishing {
                    Publishing::Classic(_) => "classic",
                    Publishing::Sharded(..) => "sharded",
                },
            )
            .field("subscribed", &self.subscribed.load(Ordering::Relaxed))
            .finish()
    }
}

impl Service<OutboundMessage> for RedisDelivery {
    type Response = ();
    type Error = SendError;
    type Future = BoxFuture<Result<(), SendError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: OutboundMessage) -> Self::Future {
        let publishing = self.publishing.clone();
        let subscribed = self.subscribed.clone();
        Box::pin(async move {
            if !subscribed.load(Ordering::Acquire) {
                return Err(SendError::Delivery(
                    "this instance's Redis subscription is down: its own clients would miss the message".into(),
                ));
            }
            let broadcast = Broadcast::of_send(req);
            match publishing.publish(&broadcast).await {
                // This instance is always subscribed: nobody received it means Redis dropped
                // our subscription without our noticing yet.
                Ok((0, true)) => Err(SendError::Delivery(
                    "no server instance received the message (the subscription is down)".into(),
                )),
                Ok(_) => Ok(()),
                Err(e) => Err(SendError::Delivery(e.to_string())),
            }
        })
    }
}
