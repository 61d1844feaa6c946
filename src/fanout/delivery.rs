//! Delivery through Redis: the bottom of the outbound stack when instances share a Redis, in
//! place of [`LocalDelivery`](crate::outbound::LocalDelivery). Outbound layers wrap either.
//!
//! ```no_run
//! use socketio_stack::SendRequest;
//! use socketio_stack::fanout::RedisFanout;
//! use tower::ServiceExt;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let fanout = RedisFanout::connect("redis://127.0.0.1:6379").await?;
//! // What the builder's `fanout()` puts at the bottom of the outbound stack; a plain
//! // `tower::Service<SendRequest>`.
//! let delivery = fanout.delivery();
//! delivery.oneshot(SendRequest::to("io-default", "news", serde_json::json!(1))).await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tower_service::Service;

use crate::fanout::emitter::Emitter;
use crate::fanout::wire::Broadcast;
use crate::outbound::{SendError, SendRequest};
use crate::plumbing::BoxFuture;

/// Publishes each send on Redis as `@socket.io/redis-emitter` does (uid `emitter`), and
/// delivers nothing here: this instance delivers it when it comes back from Redis, like every
/// other instance on that Redis. A send that Redis does not take, or that would not come back
/// to this instance, fails with [`SendError::Delivery`]. Obtained from
/// [`RedisFanout::delivery`](crate::fanout::RedisFanout::delivery); cheap to clone.
#[derive(Clone)]
pub struct RedisDelivery {
    emitter: Emitter,
    /// The instance's subscription state, shared with its subscription loop.
    subscribed: Arc<AtomicBool>,
}

impl RedisDelivery {
    pub(crate) fn new(emitter: Emitter, subscribed: Arc<AtomicBool>) -> Self {
        Self {
            emitter,
            subscribed,
        }
    }
}

impl std::fmt::Debug for RedisDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDelivery")
            .field("emitter", &self.emitter)
            .field("subscribed", &self.subscribed.load(Ordering::Relaxed))
            .finish()
    }
}

impl Service<SendRequest> for RedisDelivery {
    type Response = ();
    type Error = SendError;
    type Future = BoxFuture<Result<(), SendError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: SendRequest) -> Self::Future {
        let emitter = self.emitter.clone();
        let subscribed = self.subscribed.clone();
        Box::pin(async move {
            if !subscribed.load(Ordering::Acquire) {
                return Err(SendError::Delivery(
                    "this instance's Redis subscription is down: its own clients would miss the message".into(),
                ));
            }
            let broadcast = Broadcast::of_send(req);
            match emitter.publish(&broadcast).await {
                // This instance is always subscribed: nobody received it means Redis dropped
                // our subscription without our noticing yet.
                Ok(0) => Err(SendError::Delivery(
                    "no server instance received the message (the subscription is down)".into(),
                )),
                Ok(_) => Ok(()),
                Err(e) => Err(SendError::Delivery(e.to_string())),
            }
        })
    }
}
