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
//! skips it then. Broadcasts with the `local` flag and operations on one socket of this
//! server (as `fetch_sockets` hands them out) are not published. Every namespace has its own
//! channels, as in the JavaScript adapter (`socket.io#/admin#…`). Remote joins, leaves and disconnects (`io.within(room).join(..)`,
//! `.leave(..)`, `.disconnect()`) are applied here and published as the JavaScript adapter's
//! requests.
//!
//! Across the fleet as well:
//! - **acknowledged broadcasts** (`io.to(room).timeout(..).emit_with_ack(..)`): the stream
//!   yields the acknowledgements of every server's sockets, Node's included, and ends once
//!   all have come (a remote item carries the placeholder id `Sid::ZERO`: the JavaScript adapter does not say which socket answered);
//! - **`io.rooms()`** (without rooms or exceptions): every server's rooms (this one's alone,
//!   with a warning, when another does not answer in time);
//! - **the server count** (`PUBSUB NUMSUB` of the request channel, as the JavaScript adapter).
//!
//! socketioxide's own `fetch_sockets()` stays on this instance: its remote sockets are a
//! socketioxide id and server id, which a Node socket's id does not fit, and carry no `data`.
//! [`RedisFanout::fleet`](super::RedisFanout::fleet) fetches the sockets of the whole fleet
//! with their rooms, handshake and `data`, and sends and handles server-side emits.

use std::sync::Arc;
use std::time::Duration;

use crate::args::{Arg, Args};
use socketioxide::BroadcastError;
use socketioxide::adapter::{AdapterError, Emitter as SocketsOfNamespace};
use socketioxide_core::adapter::{
    BroadcastFlags, BroadcastOptions, CoreAdapter, CoreLocalAdapter, DefinedAdapter, Room,
    RoomParam, SocketEmitter,
};
use socketioxide_core::packet::{Packet, PacketData};

use crate::fanout::FanoutError;
use crate::fanout::fleet_acks::{FleetAckStream, RemoteAcks};
use crate::fanout::fleet_wire::AckBroadcast;
use crate::fanout::redis_fanout::{Question, WeakFanout};
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
    type Error = FanoutError;
    type State = WeakFanout;
    type AckStream = FleetAckStream<<SocketsOfNamespace as SocketEmitter>::AckStream>;
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
    ) -> Result<(), FanoutError> {
        let rooms: Vec<String> = rooms.into_room_iter().map(|r| r.to_string()).collect();
        self.remote(&opts, RemoteOp::Join(rooms.clone())).await;
        self.local.add_sockets(opts, rooms);
        if let Some(fanout) = self.fanout.upgrade() {
            fanout.rooms_may_have_changed();
        }
        Ok(())
    }

    async fn del_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: impl RoomParam,
    ) -> Result<(), FanoutError> {
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
        let remote = self.ask_acks(&packet, &opts, timeout).await?;
        let (local, _) = self.local.broadcast_with_ack(packet, opts, timeout);
        Ok(FleetAckStream::new(local, remote))
    }

    async fn server_count(&self) -> Result<u16, FanoutError> {
        let Some(fanout) = self.fanout.upgrade() else {
            return Ok(1);
        };
        let n = fanout.server_count(self.local.path()).await?;
        Ok(u16::try_from(n.max(1)).unwrap_or(u16::MAX))
    }

    async fn rooms(&self, opts: BroadcastOptions) -> Result<Vec<Room>, FanoutError> {
        let everywhere = opts.rooms.is_empty() && opts.except.is_empty();
        let fanout = self
            .reaches_other_instances(&opts)
            .then(|| self.fanout.upgrade())
            .flatten()
            .filter(|_| everywhere);
        let local = || self.local.rooms(opts.clone()).into_iter().collect();
        let Some(fanout) = fanout else {
            return Ok(local());
        };
        match fanout
            .fleet()
            .namespace(self.local.path().as_str())
            .rooms()
            .await
        {
            Ok(rooms) => Ok(rooms.into_iter().map(Room::from).collect()),
            Err(e) => {
                tracing::warn!(error = %e, "rooms of the other servers unknown; this one's only");
                Ok(local())
            }
        }
    }

    fn get_local(&self) -> &CoreLocalAdapter<SocketsOfNamespace> {
        &self.local
    }
}

impl DefinedAdapter for RedisAdapter {}

impl RedisAdapter {
    /// Publishes an acknowledged broadcast for the other servers (when it reaches them and
    /// there are any), and what they will owe.
    async fn ask_acks(
        &self,
        packet: &Packet,
        opts: &BroadcastOptions,
        timeout: Option<Duration>,
    ) -> Result<Option<RemoteAcks>, FanoutError> {
        let Some(fanout) = self
            .reaches_other_instances(opts)
            .then(|| self.fanout.upgrade())
            .flatten()
        else {
            return Ok(None);
        };
        // Refused before anyone gets it, as a plain broadcast is.
        let Some(broadcast) =
            to_wire(packet, opts, fanout.uid()).map_err(FanoutError::Unpublishable)?
        else {
            return Ok(None);
        };
        broadcast
            .check_publishable()
            .map_err(FanoutError::Unpublishable)?;
        let servers = fanout.other_servers(self.local.path()).await?;
        if servers == 0 {
            return Ok(None);
        }
        let timeout = timeout.unwrap_or_else(|| self.local.ack_timeout());
        let awaited = fanout.register_request();
        let request = AckBroadcast {
            uid: broadcast.uid,
            request_id: awaited.id.clone(),
            nsp: broadcast.nsp,
            event: broadcast.event,
            args: broadcast.args,
            rooms: broadcast.rooms,
            except: broadcast.except,
            timeout: Some(timeout),
        };
        fanout
            .publish_question(self.local.path(), Question::AckBroadcast(request))
            .await?;
        Ok(Some(RemoteAcks::new(awaited, servers, timeout)))
    }

    /// Whether an operation goes to other instances: not when it is local-only, not when it
    /// targets one socket of this server (what `fetch_sockets` hands out; published, it would
    /// read as "every socket" elsewhere).
    fn reaches_other_instances(&self, opts: &BroadcastOptions) -> bool {
        let one_socket = !opts.has_flag(BroadcastFlags::Broadcast)
            && opts.rooms.is_empty()
            && opts.sid.is_some();
        !opts.is_local(self.local.server_id()) && !one_socket
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
        if let Err(e) = fanout.publish_request_in(self.local.path(), &request).await {
            tracing::warn!(error = %e, "remote operation not published, applied on this instance only");
        }
    }
}

/// The wire form of a socketioxide broadcast, as the JavaScript adapter publishes it (binary
/// attachments in place); `None` for what the format cannot carry (a packet that is no
/// event), which then stays local (logged); an error for arguments that cannot be read back from
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
        // socketioxide hands adapters event packets without an ack id (acknowledged
        // broadcasts come through `broadcast_with_ack`); anything else is not a broadcast.
        tracing::warn!("a packet that is no event broadcast is delivered on this instance only");
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

/// socketioxide takes an adapter's errors as its own: an acknowledged broadcast that could not
/// be published fails the `emit_with_ack` that made it.
impl From<FanoutError> for AdapterError {
    fn from(e: FanoutError) -> Self {
        AdapterError(Box::new(e))
    }
}
