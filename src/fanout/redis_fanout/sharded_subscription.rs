//! The subscription of the sharded mode: each namespace's main and response channels, and in
//! the dynamic modes a channel per room this instance holds, subscribed by exact name
//! (sharded pub/sub has no patterns); what comes on them is handed to the same deliveries,
//! answers and waiting requests as the classic wire's.
//!
//! socketioxide tells nobody when a room is made or emptied (a handler's `socket.join` goes
//! straight to its local adapter), so the room channels follow this instance's rooms by a
//! sweep, which lists every room: at once after a remote join or a join through the adapter;
//! within [`ROOM_SWEEP_INTERVAL`] after the stack joined a socket to rooms (its own id, the
//! default rooms, a validated `join`); and every [`ROOM_SWEEP_FALLBACK`] otherwise, for what
//! a handler joins by itself and for the rooms emptied. A room joined here is subscribed
//! within that time; until then, another server's broadcast published on the room's channel
//! does not reach its sockets here (the JavaScript adapter subscribes without waiting
//! either, so it has the same window, shorter). Sweeping only then keeps an idle instance's
//! cost off its number of sockets (BENCHMARKS.md: 10,000 idle clients cost 0.24 core with a
//! sweep ten times a second).
//! This instance's own sends to such a room go on the main channel, so they reach its sockets.
//! When the slot of a channel moves to another node of a cluster, Redis unsubscribes it
//! (an `sunsubscribe` push) and it is subscribed again, on its new node.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::{PushKind, Value};
use tokio::sync::{mpsc, watch};

use super::{Inner, until_stopped};
use crate::fanout::connect_error::{Cause, FanoutError};
use crate::fanout::options::{KeepAlive, RedisOptions};
use crate::fanout::sharded_connections::{ShardedSubscriber, Topology};
use crate::fanout::sharded_messages::{self, Incoming};
use crate::fanout::sharded_wire::{self, SubscriptionMode};
use crate::telemetry::{self, FanoutResult, RedisOp};

/// How soon the dynamic modes compare this instance's rooms with the room channels it
/// subscribes once the stack joined a socket to rooms.
pub const ROOM_SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// How often they compare them otherwise (rooms a handler joined by itself, rooms emptied).
pub const ROOM_SWEEP_FALLBACK: Duration = Duration::from_secs(2);

/// The channels every server of `nsp` subscribes to: its main channel and its own response
/// channel.
fn namespace_channels(key: &str, nsp: &str, uid: &str) -> [String; 2] {
    [
        sharded_wire::main_channel(key, nsp),
        sharded_wire::response_channel(key, nsp, uid),
    ]
}

/// A new subscriber, subscribed to the channels of each of `namespaces`, within the
/// connect timeout.
pub(super) async fn open(
    options: &RedisOptions,
    topology: Topology,
    uid: &str,
    namespaces: &BTreeSet<String>,
) -> Result<ShardedSubscriber, FanoutError> {
    let timeout = options.timeout();
    let opening = async {
        let mut subscriber = ShardedSubscriber::open(options, topology).await?;
        for nsp in namespaces {
            for channel in namespace_channels(options.channel_key(), nsp, uid) {
                subscriber
                    .subscribe(&channel)
                    .await
                    .map_err(FanoutError::connecting)?;
            }
        }
        Ok(subscriber)
    };
    match tokio::time::timeout(timeout, opening).await {
        Ok(result) => result,
        Err(_) => Err(FanoutError::Unreachable(Cause::timed_out(
            "sharded subscription",
            timeout,
        ))),
    }
}

/// What the subscription holds: every channel, and the room channels by namespace.
#[derive(Default)]
struct Held {
    channels: HashSet<String>,
    rooms: HashMap<String, HashSet<String>>,
}

/// The subscription loop of the sharded mode; as the classic one, it resubscribes with a
/// growing delay (100 ms to 2 s) when the connection drops or goes silent.
pub(super) async fn receive(
    inner: Weak<Inner>,
    options: RedisOptions,
    topology: Topology,
    first: ShardedSubscriber,
    mut stopped: watch::Receiver<bool>,
    keepalive: KeepAlive,
    mut added: mpsc::UnboundedReceiver<String>,
) {
    let Some((key, uid, mode)) = inner.upgrade().map(|i| {
        let mode = i.sharded.as_ref().map(|p| p.mode()).unwrap_or_default();
        (i.key.clone(), i.uid.clone(), mode)
    }) else {
        return;
    };
    let dynamic = mode != SubscriptionMode::Static;
    let mut subscriber = Some(first);
    let mut delay = Duration::from_millis(100);
    let mut held = Held::default();
    if let Some(inner) = inner.upgrade() {
        for nsp in inner.lock_active().iter() {
            held.channels.extend(namespace_channels(&key, nsp, &uid));
        }
    }
    loop {
        let Some(mut current) = subscriber.take() else {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = until_stopped(&mut stopped) => return,
            }
            let Some(namespaces) = inner.upgrade().map(|i| i.lock_namespaces().clone()) else {
                return;
            };
            let attempt = tokio::select! {
                attempt = open(&options, topology, &uid, &namespaces) => attempt,
                () = until_stopped(&mut stopped) => return,
            };
            match attempt {
                Ok(s) => {
                    tracing::info!("Redis sharded subscription restored");
                    telemetry::redis_subscription_reconnected();
                    held = Held::default();
                    for nsp in &namespaces {
                        held.channels.extend(namespace_channels(&key, nsp, &uid));
                    }
                    if let Some(inner) = inner.upgrade() {
                        // No room channel is held on the new connection until the sweep.
                        inner.lock_room_channels().clear();
                        inner.subscribed.store(true, Ordering::Release);
                        *inner.lock_active() = namespaces;
                        inner.active_changed.notify_waiters();
                        // The room channels are subscribed again at once.
                        inner.rooms_changed.notify_one();
                    }
                    subscriber = Some(s);
                    delay = Duration::from_millis(100);
                }
                Err(e) => {
                    telemetry::redis_error(RedisOp::Subscribe);
                    tracing::warn!(error = %e, "Redis sharded subscription still down");
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
            continue;
        };
        let mut ping = tokio::time::interval_at(
            tokio::time::Instant::now() + keepalive.interval,
            keepalive.interval,
        );
        let mut sweep = tokio::time::interval(ROOM_SWEEP_INTERVAL);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sweep = tokio::time::Instant::now();
        let lost = loop {
            tokio::select! {
                push = current.pushes.recv() => {
                    let Some(push) = push else {
                        break Cause::timed_out("the subscriber's connection, closed", Duration::ZERO);
                    };
                    match push.kind {
                        PushKind::SMessage => {
                            let Some(inner) = inner.upgrade() else { return };
                            if let [Value::BulkString(channel), Value::BulkString(payload)] = push.data.as_slice() {
                                let channel = String::from_utf8_lossy(channel);
                                inner.deliver_sharded(&channel, payload).await;
                            }
                        }
                        // A slot moved to another node, which dropped its channels: they are
                        // taken again (the cluster connection sends them to the new owner).
                        PushKind::SUnsubscribe => {
                            let Some(Value::BulkString(channel)) = push.data.first() else { continue };
                            let channel = String::from_utf8_lossy(channel).into_owned();
                            if held.channels.contains(&channel) {
                                tracing::info!(channel, "sharded channel moved; subscribing it again");
                                let again = tokio::time::timeout(keepalive.timeout, current.subscribe(&channel)).await;
                                match again {
                                    Ok(Ok(())) => {}
                                    Ok(Err(e)) => break Cause::of(e),
                                    Err(_) => break Cause::timed_out("a moved channel's subscription", keepalive.timeout),
                                }
                            }
                        }
                        // One server's connection is gone (a cluster connection reconnects its
                        // nodes and their subscriptions by itself).
                        PushKind::Disconnection if topology == Topology::Single => {
                            break Cause::timed_out("the subscriber's connection, dropped", Duration::ZERO);
                        }
                        _ => {}
                    }
                }
                _ = ping.tick() => {
                    match tokio::time::timeout(keepalive.timeout, current.ping()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => break Cause::of(e),
                        Err(_) => break Cause::timed_out("answer to PING", keepalive.timeout),
                    }
                }
                Some(nsp) = added.recv() => {
                    let Some(strong) = inner.upgrade() else { return };
                    let channels = namespace_channels(&key, &nsp, &uid);
                    let subscribing = async {
                        for channel in &channels {
                            current.subscribe(channel).await?;
                        }
                        Ok::<_, redis::RedisError>(())
                    };
                    match tokio::time::timeout(keepalive.timeout, subscribing).await {
                        Ok(Ok(())) => {
                            held.channels.extend(channels);
                            strong.lock_active().insert(nsp);
                            strong.active_changed.notify_waiters();
                        }
                        Ok(Err(e)) if !e.is_io_error() && !e.is_connection_dropped() => {
                            tracing::error!(nsp, error = %e, "Redis refused the subscription of a namespace; its sockets are refused");
                            for channel in &channels {
                                tokio::time::timeout(keepalive.timeout, current.unsubscribe(channel)).await.ok();
                            }
                            strong.refuse_namespace(nsp);
                        }
                        Ok(Err(e)) => break Cause::of(e),
                        Err(_) => break Cause::timed_out("subscription of a namespace", keepalive.timeout),
                    }
                }
                () = rooms_due(dynamic, &inner, &mut sweep, &mut last_sweep) => {
                    let Some(strong) = inner.upgrade() else { return };
                    let syncing = sync_rooms(&strong, mode, &key, &mut current, &mut held);
                    match tokio::time::timeout(keepalive.timeout, syncing).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => break Cause::of(e),
                        Err(_) => break Cause::timed_out("subscription of room channels", keepalive.timeout),
                    }
                }
                () = until_stopped(&mut stopped) => return,
            }
        };
        telemetry::redis_error(RedisOp::Subscribe);
        tracing::warn!(cause = %lost, "Redis sharded subscription lost; reconnecting");
        if let Some(inner) = inner.upgrade() {
            inner.subscribed.store(false, Ordering::Release);
        }
    }
}

/// Resolves when the room channels are to be compared with this instance's rooms: when told
/// its rooms may have changed, at the first tick after the stack joined a socket to rooms,
/// and every [`ROOM_SWEEP_FALLBACK`]; never in the static mode.
async fn rooms_due(
    dynamic: bool,
    inner: &Weak<Inner>,
    sweep: &mut tokio::time::Interval,
    last: &mut tokio::time::Instant,
) {
    if !dynamic {
        return std::future::pending().await;
    }
    // Not the fan-out itself across the wait: it can be dropped meanwhile.
    let Some(changed) = inner.upgrade().map(|i| i.rooms_changed.clone()) else {
        return;
    };
    loop {
        tokio::select! {
            _ = sweep.tick() => {}
            () = changed.notified() => break,
        }
        let joined = inner
            .upgrade()
            .is_some_and(|i| i.rooms_joined.swap(false, Ordering::AcqRel));
        if joined || last.elapsed() >= ROOM_SWEEP_FALLBACK {
            break;
        }
    }
    *last = tokio::time::Instant::now();
}

/// Subscribes the channel of each room this instance holds in its namespaces (in `dynamic`
/// mode, not the ids of its own sockets), and unsubscribes those of rooms it no longer holds.
/// A room channel Redis refuses (an ACL user without it) is logged and counted as held, so
/// that it is not asked again at every sweep; a connection error ends the subscription.
async fn sync_rooms(
    inner: &Arc<Inner>,
    mode: SubscriptionMode,
    key: &str,
    subscriber: &mut ShardedSubscriber,
    held: &mut Held,
) -> Result<(), redis::RedisError> {
    let Some(local) = inner.local.get().cloned() else {
        return Ok(());
    };
    let namespaces = inner.lock_active().clone();
    held.rooms.retain(|nsp, _| namespaces.contains(nsp));
    // Whether the channels held changed, so that the copy the sends read is made only then
    // (not at every sweep).
    let mut changed = false;
    for nsp in &namespaces {
        let now: HashSet<String> = if mode == SubscriptionMode::Dynamic {
            local.public_rooms(nsp).await
        } else {
            local.rooms(nsp).await
        }
        .into_iter()
        .collect();
        let fixed = namespace_channels(key, nsp, &inner.uid);
        let before = held.rooms.remove(nsp).unwrap_or_default();
        for room in now.difference(&before) {
            let channel = sharded_wire::room_channel(key, nsp, room);
            if !held.channels.insert(channel.clone()) {
                continue;
            }
            changed = true;
            if let Err(e) = subscriber.subscribe(&channel).await {
                if e.is_io_error() || e.is_connection_dropped() {
                    return Err(e);
                }
                tracing::error!(nsp, error = %e, "Redis refused a room's channel; broadcasts published on it miss this server");
            }
        }
        for room in before.difference(&now) {
            let channel = sharded_wire::room_channel(key, nsp, room);
            if fixed.contains(&channel) {
                continue;
            }
            held.channels.remove(&channel);
            changed = true;
            subscriber.unsubscribe(&channel).await?;
        }
        held.rooms.insert(nsp.clone(), now);
    }
    if changed {
        inner.lock_room_channels().clone_from(&held.channels);
    }
    Ok(())
}

impl Inner {
    /// Handles one message of the sharded wire, as [`deliver`](Inner::deliver) does the
    /// classic wire's: this instance's own, and those of a namespace it does not serve or
    /// that came on another namespace's channel, are skipped; garbage is logged (throttled).
    pub(super) async fn deliver_sharded(self: &Arc<Self>, channel: &str, payload: &[u8]) {
        let message = match sharded_wire::decode(payload) {
            Ok(Some(message)) => message,
            // A type this adapter never sends (the heartbeats of another cluster adapter).
            Ok(None) => return telemetry::fanout_received(FanoutResult::Malformed),
            Err(e) => {
                return self.refusals.report(
                    channel,
                    payload.len(),
                    "a malformed sharded message",
                    &e,
                );
            }
        };
        let own_channel = channel
            .strip_prefix(self.key.as_str())
            .and_then(|c| c.strip_prefix('#'))
            .and_then(|c| c.strip_prefix(message.nsp.as_str()))
            .is_some_and(|c| c.starts_with('#'));
        if message.uid == self.uid {
            return telemetry::fanout_received(FanoutResult::Own);
        }
        if !own_channel || !self.lock_active().contains(&message.nsp) {
            return telemetry::fanout_received(FanoutResult::OtherNamespace);
        }
        let nsp = message.nsp.clone();
        match sharded_messages::incoming(message) {
            Incoming::Broadcast(b) => {
                telemetry::fanout_received(FanoutResult::Delivered);
                if let Some(local) = self.local.get() {
                    local.deliver(b).await;
                }
            }
            Incoming::AckBroadcast(mut b) => {
                b.timeout = b.timeout.map(|t| t.min(super::MAX_ACK_TIMEOUT));
                let what = (channel, payload.len(), "an acknowledged broadcast");
                self.answer_bounded(self.clone().answer_ack_broadcast(b), what);
            }
            Incoming::Request(r) => {
                telemetry::fanout_received(FanoutResult::Delivered);
                if let Some(local) = self.local.get() {
                    local.apply(&nsp, r).await;
                    self.rooms_changed.notify_one();
                }
            }
            Incoming::Fetch {
                asker,
                request_id,
                target,
            } => {
                telemetry::fanout_received(FanoutResult::Delivered);
                let sockets = self
                    .local
                    .get()
                    .map(|l| l.fetch(&nsp, target.rooms, target.except))
                    .unwrap_or_default();
                let body = sharded_wire::Body::FetchSocketsResponse {
                    request_id,
                    sockets: sockets.into_iter().map(sharded_messages::fetched).collect(),
                };
                let answer = sharded_messages::message(&self.uid, &nsp, body);
                if let Some(publisher) = &self.sharded
                    && let Err(e) = publisher.answer(&asker, &answer).await
                {
                    tracing::warn!(error = %e, "could not answer a fetch");
                }
            }
            Incoming::ServerSideEmit(e) => {
                let what = (channel, payload.len(), "a server-side emit");
                self.answer_bounded(self.clone().on_server_side_emit(nsp, e), what);
            }
            Incoming::Answer(response) => {
                telemetry::fanout_received(FanoutResult::Delivered);
                self.pending.answer(response);
            }
        }
    }

    /// Whether a send of this instance to `room` of `nsp` may go on the room's own channel:
    /// when this instance subscribes it, or holds no socket in the room (so needs not hear
    /// it); otherwise (a room joined since the last sweep) the main channel carries it.
    pub(super) fn room_channel_reaches_us(&self, nsp: &str, room: &str) -> bool {
        let channel = sharded_wire::room_channel(&self.key, nsp, room);
        if self.lock_room_channels().contains(&channel) {
            return true;
        }
        self.local
            .get()
            .is_none_or(|l| l.socket_ids(nsp, vec![room.to_owned()]).is_empty())
    }
}
