//! Delivery to this process's sockets.
//!
//! A client whose write buffer is full (it stopped reading) misses a message rather than
//! making the server hold it without bound. Such misses are logged, at most once a second
//! with the count since the last line. The client itself is cut off by
//! [`serve`](crate::serve)'s write timeout (30 s without progress by default): its connection
//! is shut down and its session ends, so it can reconnect and resynchronise. (The engine's
//! heartbeat does not end it: socketioxide's writer stays blocked on such a client.) Volatile sends are not counted: missing them is what
//! they are for.

use std::task::{Context, Poll};

use socketioxide::adapter::{Adapter, LocalAdapter};
use socketioxide::{BroadcastError, SocketError, SocketIo};
use tower_service::Service;

use crate::outbound::request::{OutboundMessage, SendError};
use crate::plumbing::BoxFuture;

/// The bottom of the outbound stack: emits to the local sockets in the destination room
/// (a socket id is a room), or to all of them.
pub struct LocalDelivery<A: Adapter = LocalAdapter> {
    io: SocketIo<A>,
}

impl<A: Adapter> Clone for LocalDelivery<A> {
    fn clone(&self) -> Self {
        Self {
            io: self.io.clone(),
        }
    }
}

impl<A: Adapter> LocalDelivery<A> {
    /// Delivers through `io`.
    pub fn new(io: SocketIo<A>) -> Self {
        Self { io }
    }
}

impl<A: Adapter> Service<OutboundMessage> for LocalDelivery<A> {
    type Response = ();
    type Error = SendError;
    type Future = BoxFuture<Result<(), SendError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: OutboundMessage) -> Self::Future {
        let io = self.io.clone();
        Box::pin(async move {
            // After shutdown the namespace is gone; socketioxide's `io.to()` would panic.
            let Some(ns) = io.of(req.nsp()) else {
                if req.nsp() == "/" {
                    return Err(SendError::Delivery(
                        "the Socket.IO server is shut down".into(),
                    ));
                }
                // A namespace no socket has opened here (a dynamic one's instance is made
                // by its first CONNECT): nobody to deliver to.
                tracing::debug!(nsp = req.nsp(), "send to a namespace with no sockets here");
                return Ok(());
            };
            let mut op = match req.room() {
                Some(room) => ns.to(room.to_owned()),
                None => ns,
            };
            if req.volatile {
                op = op.volatile();
            }
            match op.emit(&req.topic, &req.args).await {
                Ok(()) => Ok(()),
                // Some local sockets closed meanwhile or have a full buffer: everyone else got
                // the message, so the send as a whole succeeded.
                Err(BroadcastError::Socket(errors)) => {
                    let full = errors
                        .iter()
                        .filter(|e| matches!(e, SocketError::InternalChannelFull))
                        .count();
                    if full > 0 {
                        crate::telemetry::send_missed(full as u64, req.volatile);
                        report_missed(full, &req.topic);
                    }
                    Ok(())
                }
                Err(BroadcastError::Serialize(e)) => Err(SendError::Encode(e.to_string())),
                Err(other) => Err(SendError::Delivery(other.to_string())),
            }
        })
    }
}

/// Logs missed deliveries, throttled (a client that stopped reading misses every send until
/// the write timeout cuts it off: one line each would flood the log).
fn report_missed(count: usize, topic: &str) {
    static MISSED: crate::plumbing::LogThrottle = crate::plumbing::LogThrottle::new();
    if let Some(missed) = MISSED.hit(count as u64) {
        tracing::warn!(
            missed,
            topic,
            "clients with a full write buffer (not reading) missed messages"
        );
    }
}
