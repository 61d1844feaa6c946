//! Rate limiting: a token bucket per socket, so that one client flooding events cannot hurt
//! the others.
//!
//! Every client event takes a token from its socket's bucket: the `events` bucket for
//! ordinary events, a separate `control` bucket for `authenticate`, `join` and `leave` (so a
//! chatty client can still authenticate and manage its rooms, and a client retrying
//! `authenticate` in a loop is bounded too). A bucket holds at most `burst` tokens and gains
//! `rate` per second. An event that finds its bucket empty is handled by the
//! [`ExcessPolicy`]:
//!
//! - [`ExcessPolicy::Drop`] (default): the event is dropped, with a warning for each of the
//!   socket's first ten drops, then at most one a second;
//! - [`ExcessPolicy::Disconnect`]: the client gets `rate_limited` `{message, time}`, then is
//!   disconnected.
//!
//! The buckets live with the socket (in its extensions) and go away with it. Put this layer
//! first, in front of authentication, so that it bounds everything.
//!
//! # Example
//! ```
//! use socketio_stack::layers::event_rate_limit::{Bucket, ExcessPolicy, EventRateLimitLayer};
//!
//! let layer = EventRateLimitLayer::default()                  // 50/s, burst 100; control 5/s, burst 10
//!     .events(Bucket::new(200.0, 400).unwrap())
//!     .policy(ExcessPolicy::Disconnect);
//! # let _ = layer;
//! ```

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use socketioxide::adapter::Adapter;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::BuildError;
use crate::event::{RequestKind, SocketRequest, Stamped, names};
use crate::layers::ResponseFuture;
use crate::plumbing::LogThrottle;
use crate::telemetry::{self, DropReason};

/// The event a client gets before a rate-limit disconnect.
pub const RATE_LIMITED: &str = "rate_limited";

/// A token bucket's settings: `rate` tokens per second, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    rate: f64,
    burst: u32,
}

impl Bucket {
    /// `rate` events per second on average, `burst` at once; both must be positive.
    pub fn new(rate: f64, burst: u32) -> Result<Self, BuildError> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(BuildError::InvalidLimit("rate", rate.to_string()));
        }
        if burst == 0 {
            return Err(BuildError::InvalidLimit("burst", "0".into()));
        }
        Ok(Self { rate, burst })
    }
}

/// What happens to an event over the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExcessPolicy {
    /// Drop it (logged).
    #[default]
    Drop,
    /// Tell the client (`rate_limited`) and disconnect it.
    Disconnect,
}

/// Adds rate limiting; see the [module docs](self).
#[derive(Debug, Clone, Copy)]
pub struct EventRateLimitLayer {
    events: Bucket,
    control: Bucket,
    policy: ExcessPolicy,
}

impl Default for EventRateLimitLayer {
    fn default() -> Self {
        Self {
            events: Bucket {
                rate: 50.0,
                burst: 100,
            },
            control: Bucket {
                rate: 5.0,
                burst: 10,
            },
            policy: ExcessPolicy::Drop,
        }
    }
}

impl EventRateLimitLayer {
    /// The bucket of ordinary events (default 50/s, burst 100).
    pub fn events(mut self, bucket: Bucket) -> Self {
        self.events = bucket;
        self
    }

    /// The bucket of `authenticate`, `join` and `leave` (default 5/s, burst 10).
    pub fn control(mut self, bucket: Bucket) -> Self {
        self.control = bucket;
        self
    }

    /// What to do with an event over the limit (default: drop).
    pub fn policy(mut self, policy: ExcessPolicy) -> Self {
        self.policy = policy;
        self
    }
}

impl<S> Layer<S> for EventRateLimitLayer {
    type Service = EventRateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EventRateLimitService {
            inner,
            config: *self,
        }
    }
}

/// The service of [`EventRateLimitLayer`].
#[derive(Debug, Clone)]
pub struct EventRateLimitService<S> {
    inner: S,
    config: EventRateLimitLayer,
}

/// One socket's buckets.
#[derive(Debug)]
struct Buckets {
    events: Tokens,
    control: Tokens,
    dropped: LogThrottle,
}

#[derive(Debug)]
struct Tokens {
    available: f64,
    at: Instant,
}

impl Tokens {
    fn full(bucket: Bucket) -> Self {
        Self {
            available: f64::from(bucket.burst),
            at: Instant::now(),
        }
    }

    /// Takes a token if there is one, after refilling for the time gone by.
    fn take(&mut self, bucket: Bucket) -> bool {
        let now = Instant::now();
        let gained = now.duration_since(self.at).as_secs_f64() * bucket.rate;
        self.available = (self.available + gained).min(f64::from(bucket.burst));
        self.at = now;
        if self.available >= 1.0 {
            self.available -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The buckets, as kept in the socket's extensions (cloned out as an `Arc`).
#[derive(Clone)]
struct SocketBuckets(Arc<Mutex<Buckets>>);

impl<S, A> Service<SocketRequest<A>> for EventRateLimitService<S>
where
    A: Adapter,
    S: Service<SocketRequest<A>, Response = ()>,
{
    type Response = ();
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: SocketRequest<A>) -> Self::Future {
        let RequestKind::Event(ev) = &req.kind else {
            return ResponseFuture::inner(self.inner.call(req));
        };
        let control = matches!(
            ev.name.as_str(),
            names::AUTHENTICATE | names::JOIN | names::LEAVE
        );
        let buckets = req.session.extensions().get_or_insert_with(|| {
            SocketBuckets(Arc::new(Mutex::new(Buckets {
                events: Tokens::full(self.config.events),
                control: Tokens::full(self.config.control),
                dropped: LogThrottle::new(),
            })))
        });
        let (allowed, dropped) = {
            let mut b = buckets.0.lock().unwrap_or_else(|e| e.into_inner());
            let allowed = if control {
                b.control.take(self.config.control)
            } else {
                b.events.take(self.config.events)
            };
            (allowed, (!allowed).then(|| b.dropped.hit(1)).flatten())
        };
        if allowed {
            return ResponseFuture::inner(self.inner.call(req));
        }
        telemetry::event_dropped(DropReason::RateLimited);
        if req.session.is_disconnecting() || !req.socket.connected() {
            // Already cut off (events queued before the disconnect still pass by): quietly.
            return ResponseFuture::done();
        }
        match self.config.policy {
            ExcessPolicy::Drop => {
                if let Some(dropped) = dropped {
                    tracing::warn!(sid = %req.socket.id, event = %ev.name, dropped, "over the rate limit: events dropped");
                }
            }
            ExcessPolicy::Disconnect => {
                tracing::warn!(sid = %req.socket.id, event = %ev.name, "over the rate limit: disconnecting");
                let message = "Too many events: rate limit exceeded, disconnecting.";
                req.socket
                    .emit(RATE_LIMITED, &Stamped::message(message))
                    .ok();
                req.session.disconnect(&req.socket);
            }
        }
        ResponseFuture::done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Recorder, TestPacket, TestSocket, event};
    use serde_json::json;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn drops_over_the_burst_and_refills_at_the_rate() {
        let t = TestSocket::new().await;
        let rec = Recorder::default();
        let mut svc = EventRateLimitLayer::default()
            .events(Bucket::new(10.0, 5).unwrap())
            .layer(rec.clone());
        for _ in 0..8 {
            svc.call(t.request(event("chat", json!(1)))).await.unwrap();
        }
        assert_eq!(rec.seen().len(), 5, "the burst");
        tokio::time::advance(Duration::from_millis(300)).await; // 3 tokens back
        for _ in 0..8 {
            svc.call(t.request(event("chat", json!(1)))).await.unwrap();
        }
        assert_eq!(rec.seen().len(), 8);
        // Control events have their own budget.
        svc.call(t.request(event("join", json!({"rooms": ["a"]}))))
            .await
            .unwrap();
        assert_eq!(rec.seen().last().unwrap(), "event:join");
        assert!(t.no_packet_pending(), "dropping tells the client nothing");
    }

    #[tokio::test]
    async fn the_disconnect_policy_tells_the_client_then_disconnects() {
        let t = TestSocket::new().await;
        let mut svc = EventRateLimitLayer::default()
            .events(Bucket::new(1.0, 1).unwrap())
            .policy(ExcessPolicy::Disconnect)
            .layer(Recorder::default());
        svc.call(t.request(event("chat", json!(1)))).await.unwrap();
        svc.call(t.request(event("chat", json!(2)))).await.unwrap();
        let TestPacket::Event(name, data) = t.next_packet().await else {
            panic!()
        };
        assert_eq!(name, RATE_LIMITED);
        assert!(data["message"].as_str().unwrap().contains("rate limit"));
        assert_eq!(t.next_packet().await, TestPacket::Disconnect);
    }

    #[test]
    fn refuses_meaningless_limits() {
        assert!(Bucket::new(0.0, 1).is_err());
        assert!(Bucket::new(f64::NAN, 1).is_err());
        assert!(Bucket::new(-1.0, 1).is_err());
        assert!(Bucket::new(1.0, 0).is_err());
    }
}
