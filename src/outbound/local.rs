//! Delivery to this process's sockets.

use std::task::{Context, Poll};

use socketioxide::adapter::{Adapter, LocalAdapter};
use socketioxide::{BroadcastError, SocketIo};
use tower_service::Service;

use crate::core::handler::BoxFuture;
use crate::outbound::request::{SendError, SendRequest};

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

impl<A: Adapter> Service<SendRequest> for LocalDelivery<A> {
    type Response = ();
    type Error = SendError;
    type Future = BoxFuture<Result<(), SendError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: SendRequest) -> Self::Future {
        let io = self.io.clone();
        Box::pin(async move {
            // After shutdown the namespace is gone; socketioxide's `io.to()` would panic.
            let Some(ns) = io.of("/") else {
                return Err(SendError::Delivery(
                    "the Socket.IO server is shut down".into(),
                ));
            };
            let res = match req.room() {
                Some(room) => ns.to(room.to_owned()).emit(&req.topic, &req.data).await,
                None => ns.emit(&req.topic, &req.data).await,
            };
            match res {
                Ok(()) => Ok(()),
                // Some local sockets closed meanwhile or have a full buffer: everyone else got
                // the message, so the send as a whole succeeded.
                Err(BroadcastError::Socket(errors)) => {
                    tracing::warn!(count = errors.len(), topic = %req.topic, "some local sockets could not take the message");
                    Ok(())
                }
                Err(BroadcastError::Serialize(e)) => Err(SendError::Encode(e.to_string())),
                Err(other) => Err(SendError::Delivery(other.to_string())),
            }
        })
    }
}
