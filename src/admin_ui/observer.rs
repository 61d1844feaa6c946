//! The observing layer: the outermost of the inbound stack when the Admin UI is on, it sees
//! every request of every socket before any policy does, and tells the UIs (in development
//! mode) and the stats (in both modes) what happened:
//!
//! | request | counted (`aggregatedEvents`) | reported (development mode) |
//! | --- | --- | --- |
//! | `Connect` | `rawConnection` | `socket_connected` |
//! | `Event` | `packetsIn` | `event_received`; `room_joined`/`room_left` for rooms its handling changed |
//! | `Authenticated` | | `socket_updated` (the identity as `data`); `room_joined` for the default rooms |
//! | `Disconnect` | `rawDisconnection` (by reason) | `socket_disconnected` |
//!
//! It passes every request down unchanged; what it reports waits in the Admin UI's bounded
//! queue, so a request never waits for a UI.

use std::collections::HashSet;
use std::sync::Arc;
use std::task::{Context, Poll};

use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use tower_layer::Layer;
use tower_service::Service;

use super::namespace::AdminHub;
use super::protocol::{PACKETS_IN, RAW_CONNECTION};
use crate::event::{RequestKind, SocketRequest};
use crate::plumbing::BoxFuture;

/// Wraps the inbound stack in an [`AdminObserver`].
pub(crate) struct AdminObserverLayer<A: Adapter> {
    hub: Arc<AdminHub<A>>,
}

impl<A: Adapter> AdminObserverLayer<A> {
    /// Reports to `hub`.
    pub(crate) fn new(hub: Arc<AdminHub<A>>) -> Self {
        Self { hub }
    }
}

impl<S, A: Adapter> Layer<S> for AdminObserverLayer<A> {
    type Service = AdminObserver<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        AdminObserver {
            inner,
            hub: self.hub.clone(),
        }
    }
}

/// The observing service; see the [module docs](self).
pub(crate) struct AdminObserver<S, A: Adapter> {
    inner: S,
    hub: Arc<AdminHub<A>>,
}

impl<S: Clone, A: Adapter> Clone for AdminObserver<S, A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            hub: self.hub.clone(),
        }
    }
}

fn rooms_of<A: Adapter>(socket: &SocketRef<A>) -> HashSet<String> {
    socket.rooms().iter().map(|r| r.to_string()).collect()
}

impl<S, A> Service<SocketRequest<A>> for AdminObserver<S, A>
where
    A: Adapter,
    S: Service<SocketRequest<A>, Response = ()> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = ();
    type Error = S::Error;
    type Future = BoxFuture<Result<(), S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: SocketRequest<A>) -> Self::Future {
        let hub = self.hub.clone();
        let development = hub.development();
        match &req.kind {
            RequestKind::Connect => {
                hub.counts.add(RAW_CONNECTION, None);
                if development {
                    hub.socket_connected(&req.socket);
                }
            }
            RequestKind::Event(ev) => {
                hub.counts.add(PACKETS_IN, None);
                if development {
                    hub.event_received(&req.socket, &ev.name, &ev.args);
                }
            }
            RequestKind::Disconnect(reason) => hub.socket_disconnected(&req.socket, *reason),
            RequestKind::Handshake | RequestKind::Authenticated => {}
        }
        // Rooms change while an event or the authentication is handled (`join`/`leave`, the
        // default rooms, a handler's own joins): compared before and after, in development
        // mode only.
        let watched =
            development && matches!(req.kind, RequestKind::Event(_) | RequestKind::Authenticated);
        let before = watched.then(|| rooms_of(&req.socket));
        let authenticated = matches!(req.kind, RequestKind::Authenticated);
        let socket = req.socket.clone();
        // The clone is ready only if polled; the ready one is the one called (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let handled = inner.call(req);
        Box::pin(async move {
            let result = handled.await;
            if let Some(before) = before {
                let after = rooms_of(&socket);
                let (nsp, id) = (socket.ns(), socket.id.as_str());
                for room in after.difference(&before) {
                    hub.room_changed(nsp, id, room, true);
                }
                for room in before.difference(&after) {
                    hub.room_changed(nsp, id, room, false);
                }
            }
            if development && authenticated {
                hub.data_changed(&socket);
            }
            result
        })
    }
}
