//! The application-level keep-alive: the seeds' `ping` `{time}` event.
//!
//! On `Authenticated` the socket gets a first `ping` at once, then one every interval
//! (default 30 s, the seeds' `pingInterval`) until `Disconnect` clears the timer (kept in the
//! [`Session`] under [`Interval`]). This is an event the application sees,
//! distinct from Engine.IO's own heartbeat, which socketioxide runs underneath. Every socket's
//! interval is an entry of one queue per service, run by one task, not a task per socket.
//!
//! The seeds' unauthenticated-client rule: a ping with `doIgnoreAuth = false` disconnects a
//! client that is not authenticated instead of pinging it. The seeds' stack always pings with
//! `doIgnoreAuth = true`, and so does this layer by default;
//! [`PingLayer::disconnect_unauthenticated`] turns the rule on.
//!
//! # Example
//! ```
//! use socketio_stack::layers::PingLayer;
//! use std::time::Duration;
//!
//! let seeds_default = PingLayer::default();
//! let fast = PingLayer::new(Duration::from_secs(5)).unwrap().disconnect_unauthenticated(true);
//! # let _ = (seeds_default, fast);
//! ```

use std::task::{Context, Poll};
use std::time::Duration;

use crate::timer_queue::TimerQueue;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{BuildError, check_duration};
use crate::event::{RequestKind, SocketRequest, Stamped, names};
use crate::layers::ResponseFuture;
use crate::session::{ClientState, Session};

/// The seeds' default interval: 30 s.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);
/// The key of the layer's timer in the session: `session.has_timer::<Interval>()`.
#[derive(Debug)]
pub struct Interval;

/// Adds the keep-alive; see the [module docs](self).
#[derive(Debug, Clone, Copy)]
pub struct PingLayer {
    interval: Duration,
    disconnect_unauthenticated: bool,
}

impl PingLayer {
    /// Pings every `interval`; refused when zero or over a year.
    pub fn new(interval: Duration) -> Result<Self, BuildError> {
        Ok(Self {
            interval: check_duration("ping interval", interval)?,
            disconnect_unauthenticated: false,
        })
    }

    /// Whether a ping due to a client that is not authenticated disconnects it (the seeds'
    /// `doIgnoreAuth = false`); off by default, as in the seeds' stack.
    pub fn disconnect_unauthenticated(mut self, on: bool) -> Self {
        self.disconnect_unauthenticated = on;
        self
    }

    /// The interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

impl Default for PingLayer {
    fn default() -> Self {
        Self {
            interval: DEFAULT_PING_INTERVAL,
            disconnect_unauthenticated: false,
        }
    }
}

impl<S> Layer<S> for PingLayer {
    type Service = PingService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PingService {
            inner,
            config: *self,
            intervals: TimerQueue::new(self.interval),
        }
    }
}

/// The service of [`PingLayer`].
#[derive(Debug, Clone)]
pub struct PingService<S> {
    inner: S,
    config: PingLayer,
    /// Every socket's next ping, on one task.
    intervals: TimerQueue,
}

/// Sends one ping, or applies the unauthenticated-client rule. Returns whether the socket is
/// still worth pinging.
fn ping<A: Adapter>(
    socket: &SocketRef<A>,
    session: &Session,
    disconnect_unauthenticated: bool,
) -> bool {
    if session.is_closed() {
        return false;
    }
    if disconnect_unauthenticated && session.state() != ClientState::Authenticated {
        tracing::info!(sid = %socket.id, "ping to a client that is not authenticated: disconnecting");
        session.disconnect(socket);
        return false;
    }
    if let Err(e) = socket.emit(names::PING, &Stamped::now()) {
        tracing::debug!(sid = %socket.id, error = %e, "ping not sent");
    }
    true
}

impl<S, A> Service<SocketRequest<A>> for PingService<S>
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
        match &req.kind {
            RequestKind::Authenticated => {
                let disconnect_unauthenticated = self.config.disconnect_unauthenticated;
                // The first ping goes out now; the seeds send it while authenticating, with
                // doIgnoreAuth = true.
                if ping(&req.socket, &req.session, false) {
                    let socket = req.socket.clone();
                    let session = req.session.clone();
                    let timer = self.intervals.arm(Box::new(move || {
                        ping(&socket, &session, disconnect_unauthenticated)
                    }));
                    req.session.set_queued_timer::<Interval>(timer);
                }
            }
            RequestKind::Disconnect(_) => {
                req.session.clear_timer::<Interval>();
            }
            RequestKind::Handshake | RequestKind::Connect | RequestKind::Event(_) => {}
        }
        ResponseFuture::inner(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Recorder, TestPacket, TestSocket};
    use socketioxide::socket::DisconnectReason;

    #[tokio::test]
    async fn pings_at_authentication_then_every_interval_until_disconnect() {
        let t = TestSocket::new().await;
        let mut svc = PingLayer::new(Duration::from_millis(30))
            .unwrap()
            .layer(Recorder::default());
        svc.call(t.request(RequestKind::Connect)).await.unwrap();
        assert!(t.no_packet_pending(), "no ping before authentication");
        svc.call(t.request(RequestKind::Authenticated))
            .await
            .unwrap();
        for _ in 0..3 {
            let TestPacket::Event(name, data) = t.next_packet().await else {
                panic!()
            };
            assert_eq!(name, "ping");
            assert_eq!(data["time"].as_str().unwrap().len(), 24);
        }
        svc.call(t.request(RequestKind::Disconnect(DisconnectReason::TransportClose)))
            .await
            .unwrap();
        assert!(t.session.timer_names().is_empty());
    }

    #[tokio::test]
    async fn the_unauthenticated_client_rule_disconnects() {
        let t = TestSocket::new().await;
        let mut svc = PingLayer::new(Duration::from_millis(10))
            .unwrap()
            .disconnect_unauthenticated(true)
            .layer(Recorder::default());
        svc.call(t.request(RequestKind::Authenticated))
            .await
            .unwrap();
        // The session says unauthorized (no auth layer set it): the first ping is sent (the
        // seeds ignore auth for it), the next one disconnects.
        assert!(matches!(t.next_packet().await, TestPacket::Event(..)));
        assert_eq!(t.next_packet().await, TestPacket::Disconnect);
    }
}
