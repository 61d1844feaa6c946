//! A socketioxide adapter speaking the `@socket.io/redis-adapter` protocol: broadcasts made
//! with socketioxide's own operators (`io.to(room).emit(..)`, `socket.broadcast()..`) inside
//! handlers reach the sockets of every instance, ours and Node's.
//!
//! ```no_run
//! use socketio_stack::SocketServer;
//! use socketio_stack::fanout::RedisFanout;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let fanout = RedisFanout::connect("redis://127.0.0.1:6379").await?;
//! let server = SocketServer::builder_with_redis_adapter(fanout)
//!     .on("chat", async |socket: socketioxide::extract::SocketRef<socketio_stack::fanout::RedisAdapter>| {
//!         // Reaches `lobby` members on every instance.
//!         socket.to("lobby").emit("chat", "hi").await.ok();
//!     })
//!     .build()?;
//! # let _ = server; Ok(()) }
//! ```
//!
//! A broadcast is delivered to this instance's sockets at once and published with this
//! instance's uid; every other instance delivers it when it comes from Redis, and this one
//! skips it then. Broadcasts with the `local` flag, operations on one socket of this server
//! (as `fetch_sockets` hands them out) and everything outside the default namespace `/` are
//! not published. Remote joins, leaves and
//! disconnects (`io.within(room).join(..)`, `.leave(..)`, `.disconnect()`) are applied here
//! and published as the JavaScript adapter's requests. Acknowledged broadcasts, fetching
//! sockets or rooms of other instances and server-side emits stay on this instance, for now.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use crate::args::{Arg, Args};
use socketioxide::BroadcastError;
use socketioxide::adapter::{AdapterError, Emitter as SocketsOfNamespace};
use socketioxide_core::adapter::{
    BroadcastFlags, BroadcastOptions, CoreAdapter, CoreLocalAdapter, DefinedAdapter, RoomParam,
    SocketEmitter,
};
use socketioxide_core::packet::{Packet, PacketData};

use crate::fanout::FanoutError;
use crate::fanout::redis_fanout::WeakFanout;
use crate::fanout::wire::{Broadcast, Flags, RemoteOp, Request, WireError};

/// The adapter; see the [module docs](self). Its state is the instance's
/// [`RedisFanout`](crate::fanout::RedisFanout), held weakly.
pub struct RedisAdapter {
    local: CoreLocalAdapter<SocketsOfNamespace>,
    /// Weak, so the Socket.IO server (which owns the adapters) and the fan-out (whose
    /// subscription delivers into that server) do not keep each other alive.
    fanout: WeakFanout,
}

impl CoreAdapter<SocketsOfNamespace> for RedisAdapter {
    type Error = Infallible;
    type State = WeakFanout;
    type AckStream = <SocketsOfNamespace as SocketEmitter>::AckStream;
    type InitRes = ();

    fn new(state: &WeakFanout, local: CoreLocalAdapter<SocketsOfNamespace>) -> Self {
        Self {
            local,
            fanout: state.clone(),
        }
    }

    fn init(self: Arc<Self>, on_success: impl FnOnce() + Send + 'static) -> Self::InitRes {
        on_success();
    }

    async fn broadcast(
        &self,
        packet: Packet,
        opts: BroadcastOptions,
    ) -> Result<(), BroadcastError> {
        let fanout = self
            .reaches_other_instances(&opts)
            .then(|| self.fanout.upgrade())
            .flatten();
        // What the other instances would refuse is refused here, before anyone gets it, so
        // the sender learns that the broadcast did not reach the fleet.
        let unpublishable =
            |e| BroadcastError::Adapter(AdapterError(Box::new(FanoutError::Unpublishable(e))));
        let remote = match &fanout {
            Some(f) => to_wire(&packet, &opts, f.uid()).map_err(unpublishable)?,
            None => None,
        };
        if let Some(broadcast) = &remote {
            broadcast.check_publishable().map_err(unpublishable)?;
        }
        let local = self
            .local
            .broadcast(packet, opts)
            .map_err(BroadcastError::from);
        if let (Some(broadcast), Some(fanout)) = (remote, fanout) {
            fanout
                .publish(&broadcast)
                .await
                .map_err(|e| BroadcastError::Adapter(AdapterError(Box::new(e))))?;
        }
        local
    }

    async fn add_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: impl RoomParam,
    ) -> Result<(), Infallible> {
        let rooms: Vec<String> = rooms.into_room_iter().map(|r| r.to_string()).collect();
        self.remote(&opts, RemoteOp::Join(rooms.clone())).await;
        self.local.add_sockets(opts, rooms);
        Ok(())
    }

    async fn del_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: impl RoomParam,
    ) -> Result<(), Infallible> {
        let rooms: Vec<String> = rooms.into_room_iter().map(|r| r.to_string()).collect();
        self.remote(&opts, RemoteOp::Leave(rooms.clone())).await;
        self.local.del_sockets(opts, rooms);
        Ok(())
    }

    async fn disconnect_socket(&self, opts: BroadcastOptions) -> Result<(), BroadcastError> {
        self.remote(&opts, RemoteOp::Disconnect { close: false })
            .await;
        self.local
            .disconnect_socket(opts)
            .map_err(BroadcastError::Socket)
    }

    async fn broadcast_with_ack(
        &self,
        packet: Packet,
        opts: BroadcastOptions,
        timeout: Option<Duration>,
    ) -> Result<Self::AckStream, Self::Error> {
        Ok(self.local.broadcast_with_ack(packet, opts, timeout).0)
    }

    fn get_local(&self) -> &CoreLocalAdapter<SocketsOfNamespace> {
        &self.local
    }
}

impl DefinedAdapter for RedisAdapter {}

impl RedisAdapter {
    /// Whether an operation goes to other instances: not when it is local-only, not when it
    /// targets one socket of this server (what `fetch_sockets` hands out; published, it would
    /// read as "every socket" elsewhere), and not outside the default namespace, the only one
    /// the subscription covers for now.
    fn reaches_other_instances(&self, opts: &BroadcastOptions) -> bool {
        let one_socket = !opts.has_flag(BroadcastFlags::Broadcast)
            && opts.rooms.is_empty()
            && opts.sid.is_some();
        self.local.path().as_str() == "/" && !opts.is_local(self.local.server_id()) && !one_socket
    }

    /// Publishes a remote operation for the other instances (when it reaches them); a failure
    /// is logged, the local part still happens.
    async fn remote(&self, opts: &BroadcastOptions, op: RemoteOp) {
        if !self.reaches_other_instances(opts) {
            return;
        }
        let Some(fanout) = self.fanout.upgrade() else {
            return;
        };
        let request = Request {
            uid: Some(fanout.uid().to_owned()),
            op,
            rooms: opts.rooms.iter().map(|r| r.to_string()).collect(),
            except: opts.except.iter().map(|r| r.to_string()).collect(),
        };
        if let Err(e) = fanout.publish_request(&request).await {
            tracing::warn!("remote operation not published, applied on this instance only: {e}");
        }
    }
}

/// The wire form of a socketioxide broadcast, as the JavaScript adapter publishes it (binary
/// attachments in place); `None` for what the format cannot carry (acknowledged broadcasts),
/// which then stays local (logged); an error for arguments that cannot be read back from
/// socketioxide's encoding (nested past serde_json's 128 levels).
fn to_wire(
    packet: &Packet,
    opts: &BroadcastOptions,
    uid: &str,
) -> Result<Option<Broadcast>, WireError> {
    let (PacketData::Event(socketioxide_core::Value::Str(text, attachments), None)
    | PacketData::BinaryEvent(socketioxide_core::Value::Str(text, attachments), None)) =
        &packet.inner
    else {
        tracing::warn!("an acknowledged broadcast is delivered on this instance only");
        return Ok(None);
    };
    let mut data = Args::from_packet(text.as_str(), attachments.as_ref(), false)
        .map_err(|e| {
            WireError(format!(
                "the broadcast's arguments cannot be read back: {e}"
            ))
        })?
        .into_vec();
    if data.is_empty() {
        return Ok(None);
    }
    let Arg::String(event) = data.remove(0) else {
        return Ok(None);
    };
    let mut except: Vec<String> = opts.except.iter().map(|r| r.to_string()).collect();
    // `socket.broadcast()` leaves the sender out, as the JavaScript adapter's `except` does.
    if let (true, Some(sid)) = (opts.has_flag(BroadcastFlags::Broadcast), opts.sid) {
        except.push(sid.to_string());
    }
    Ok(Some(Broadcast {
        uid: uid.to_owned(),
        nsp: packet.ns.to_string(),
        event,
        args: data,
        rooms: opts.rooms.iter().map(|r| r.to_string()).collect(),
        except,
        flags: Flags {
            compress: None,
            volatile: opts.has_flag(BroadcastFlags::Volatile).then_some(true),
        },
    }))
}
