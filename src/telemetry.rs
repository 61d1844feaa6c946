//! What every layer reports, through the [`metrics`](https://docs.rs/metrics) facade: the
//! application picks the exporter (Prometheus, StatsD, OpenTelemetry…) and installs it as the
//! global recorder; without one, reporting costs an atomic load. Behind the cargo feature
//! `metrics`: without it, every report here compiles to nothing.
//!
//! ```
//! # #[cfg(feature = "metrics")]
//! # fn main() {
//! // With metrics-exporter-prometheus, for instance (what the demo does for `GET /metrics`):
//! //     let handle = PrometheusBuilder::new().install_recorder()?;
//! //     ... handle.render() is the text format.
//! socketio_stack::telemetry::describe();
//! assert_eq!(socketio_stack::telemetry::names::AUTH, "socketio_auth_total");
//! # }
//! # #[cfg(not(feature = "metrics"))]
//! # fn main() {}
//! ```
//!
//! The names follow Prometheus' conventions (`_total` for counters, base units); no label
//! takes a value a client chooses (no event or room names, no ids), so the number of series
//! is bounded. The log lines that report the same things keep their throttle ("the first ten,
//! then at most one a second"); the counters carry the totals.
//!
//! | name | type | labels | what |
//! | --- | --- | --- | --- |
//! | `socketio_connected_sockets` | gauge | | sockets connected now (every namespace) |
//! | `socketio_connections_total` | counter | | sockets that connected |
//! | `socketio_auth_total` | counter | `result`: `ok`, `refused`, `error`, `timeout` | each socket counted once: let in, refused by the authenticate function, failed with its error (or panic), or disconnected by the deadline |
//! | `socketio_auth_duration_seconds` | histogram | | how long the authenticate function took |
//! | `socketio_events_received_total` | counter | | events that came off the wire |
//! | `socketio_events_dropped_total` | counter | `reason`: `not_authenticated`, `rate_limited`, `queue_full`, `unreadable` | events not handed to the application |
//! | `socketio_room_joins_total` | counter | `result`: `ok`, `refused`, `error` | `join` requests: joined, refused (by the validate function, a bound, or before authentication), the validate function failed |
//! | `socketio_sends_total` | counter | `outcome`: `sent`, `dropped`, `failed` | `send` calls: delivered or published, dropped (falsy topic or data), failed |
//! | `socketio_send_misses_total` | counter | `reason`: `full`, `volatile` | sockets a send did not reach: their write buffer was full (not reading); `volatile` for a volatile send, which may skip them by design |
//! | `socketio_redis_publish_duration_seconds` | histogram | | how long a publish to Redis took |
//! | `socketio_redis_errors_total` | counter | `op`: `publish`, `subscribe` | Redis operations that failed |
//! | `socketio_redis_subscription_reconnects_total` | counter | | times the subscription was made again after a loss |
//! | `socketio_fanout_received_total` | counter | `result`: `delivered`, `own`, `other_server`, `other_namespace`, `malformed`, `refused` | messages from Redis: delivered (or applied, answered), skipped as this instance's own, answers to another server's question, for a namespace not served here, unreadable (logged, throttled), refused past a bound (requests answered at once) |
//! | `socketio_handler_panics_total` | counter | | panics of a handler, a layer or a callback, contained |

// Without the fan-out, its reports are never made.
#![cfg_attr(not(feature = "fanout"), allow(dead_code))]

use std::time::Duration;

/// The metric names.
pub mod names {
    /// Gauge: sockets connected now.
    pub const CONNECTED_SOCKETS: &str = "socketio_connected_sockets";
    /// Counter: sockets that connected.
    pub const CONNECTIONS: &str = "socketio_connections_total";
    /// Counter, label `result`: authentications, one per socket.
    pub const AUTH: &str = "socketio_auth_total";
    /// Histogram: seconds the authenticate function took.
    pub const AUTH_DURATION: &str = "socketio_auth_duration_seconds";
    /// Counter: events off the wire.
    pub const EVENTS_RECEIVED: &str = "socketio_events_received_total";
    /// Counter, label `reason`: events not handed to the application.
    pub const EVENTS_DROPPED: &str = "socketio_events_dropped_total";
    /// Counter, label `result`: `join` requests.
    pub const ROOM_JOINS: &str = "socketio_room_joins_total";
    /// Counter, label `outcome`: `send` calls.
    pub const SENDS: &str = "socketio_sends_total";
    /// Counter, label `reason`: sockets a send missed.
    pub const SEND_MISSES: &str = "socketio_send_misses_total";
    /// Histogram: seconds a publish to Redis took.
    pub const REDIS_PUBLISH_DURATION: &str = "socketio_redis_publish_duration_seconds";
    /// Counter, label `op`: failed Redis operations.
    pub const REDIS_ERRORS: &str = "socketio_redis_errors_total";
    /// Counter: subscriptions made again.
    pub const REDIS_SUBSCRIPTION_RECONNECTS: &str = "socketio_redis_subscription_reconnects_total";
    /// Counter, label `result`: messages from Redis.
    pub const FANOUT_RECEIVED: &str = "socketio_fanout_received_total";
    /// Counter: contained panics.
    pub const HANDLER_PANICS: &str = "socketio_handler_panics_total";
}

/// Registers the description (and unit) of every metric with the installed recorder, for the
/// `# HELP` lines of an exporter; call it once after installing one. A no-op without the
/// `metrics` feature.
pub fn describe() {
    #[cfg(feature = "metrics")]
    {
        use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
        describe_gauge!(names::CONNECTED_SOCKETS, "Sockets connected now");
        describe_counter!(names::CONNECTIONS, "Sockets that connected");
        describe_counter!(
            names::AUTH,
            "Authentications, each socket once: ok, refused, error or timeout"
        );
        describe_histogram!(
            names::AUTH_DURATION,
            Unit::Seconds,
            "How long the authenticate function took"
        );
        describe_counter!(names::EVENTS_RECEIVED, "Events that came off the wire");
        describe_counter!(
            names::EVENTS_DROPPED,
            "Events not handed to the application, by reason"
        );
        describe_counter!(names::ROOM_JOINS, "Join requests, by result");
        describe_counter!(names::SENDS, "Send calls, by outcome");
        describe_counter!(
            names::SEND_MISSES,
            "Sockets a send did not reach, by reason"
        );
        describe_histogram!(
            names::REDIS_PUBLISH_DURATION,
            Unit::Seconds,
            "How long a publish to Redis took"
        );
        describe_counter!(names::REDIS_ERRORS, "Redis operations that failed, by op");
        describe_counter!(
            names::REDIS_SUBSCRIPTION_RECONNECTS,
            "Times the Redis subscription was made again after a loss"
        );
        describe_counter!(names::FANOUT_RECEIVED, "Messages from Redis, by result");
        describe_counter!(
            names::HANDLER_PANICS,
            "Panics of handlers, layers and callbacks, contained"
        );
    }
}

/// Declares a label (its key) and its values: an enum that adds to a counter under its value.
/// Literal keys and values, so that the facade's key is static (a label built at run time
/// would allocate at every report).
macro_rules! label_values {
    ($(#[$doc:meta] $name:ident($key:literal) { $($variant:ident => $text:literal),+ $(,)? })+) => {$(
        #[$doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum $name { $($variant),+ }

        impl $name {
            /// Adds `n` to the counter `metric`, labelled with this value.
            #[inline]
            fn add_to(self, metric: &'static str, n: u64) {
                #[cfg(feature = "metrics")]
                match self { $(Self::$variant => metrics::counter!(metric, $key => $text).increment(n)),+ }
                #[cfg(not(feature = "metrics"))]
                let _ = (self, metric, n);
            }
        }
    )+};
}

label_values! {
    /// How a socket's authentication ended.
    AuthResult("result") { Ok => "ok", Refused => "refused", Error => "error", Timeout => "timeout" }
    /// Why an event was not handed to the application.
    DropReason("reason") {
        NotAuthenticated => "not_authenticated",
        RateLimited => "rate_limited",
        QueueFull => "queue_full",
        Unreadable => "unreadable",
    }
    /// How a `join` request ended.
    JoinResult("result") { Ok => "ok", Refused => "refused", Error => "error" }
    /// How a `send` call ended.
    SendOutcome("outcome") { Sent => "sent", Dropped => "dropped", Failed => "failed" }
    /// What became of a message from Redis.
    FanoutResult("result") {
        Delivered => "delivered",
        Own => "own",
        OtherServer => "other_server",
        OtherNamespace => "other_namespace",
        Malformed => "malformed",
        Refused => "refused",
    }
    /// A Redis operation.
    RedisOp("op") { Publish => "publish", Subscribe => "subscribe" }
    /// Why a send missed a socket.
    MissReason("reason") { Full => "full", Volatile => "volatile" }
}

// Each report below is a no-op without the feature; with it, one lookup in the installed
// recorder's registry (static names and labels: nothing is allocated).

#[inline]
fn add(name: &'static str, n: u64) {
    #[cfg(feature = "metrics")]
    metrics::counter!(name).increment(n);
    #[cfg(not(feature = "metrics"))]
    let _ = (name, n);
}

#[inline]
fn observe(name: &'static str, took: Duration) {
    #[cfg(feature = "metrics")]
    metrics::histogram!(name).record(took.as_secs_f64());
    #[cfg(not(feature = "metrics"))]
    let _ = (name, took);
}

#[inline]
fn shift(delta: f64) {
    #[cfg(feature = "metrics")]
    metrics::gauge!(names::CONNECTED_SOCKETS).increment(delta);
    #[cfg(not(feature = "metrics"))]
    let _ = delta;
}

/// A socket connected.
pub(crate) fn socket_connected() {
    add(names::CONNECTIONS, 1);
    shift(1.0);
}

/// A socket that connected went away.
pub(crate) fn socket_disconnected() {
    shift(-1.0);
}

/// A socket's authentication ended so.
pub(crate) fn auth(result: AuthResult) {
    result.add_to(names::AUTH, 1);
}

/// The authenticate function took `took`.
pub(crate) fn auth_duration(took: Duration) {
    observe(names::AUTH_DURATION, took);
}

/// An event came off the wire.
pub(crate) fn event_received() {
    add(names::EVENTS_RECEIVED, 1);
}

/// An event was not handed to the application.
pub(crate) fn event_dropped(reason: DropReason) {
    reason.add_to(names::EVENTS_DROPPED, 1);
}

/// A `join` request ended so.
pub(crate) fn room_join(result: JoinResult) {
    result.add_to(names::ROOM_JOINS, 1);
}

/// A `send` ended so.
pub(crate) fn send(outcome: SendOutcome) {
    outcome.add_to(names::SENDS, 1);
}

/// A send missed `count` sockets whose write buffer was full (`volatile`: a volatile send,
/// which may miss them by design).
pub(crate) fn send_missed(count: u64, volatile: bool) {
    let reason = if volatile {
        MissReason::Volatile
    } else {
        MissReason::Full
    };
    reason.add_to(names::SEND_MISSES, count);
}

/// A publish to Redis took `took`.
pub(crate) fn redis_publish_duration(took: Duration) {
    observe(names::REDIS_PUBLISH_DURATION, took);
}

/// A Redis operation failed.
pub(crate) fn redis_error(op: RedisOp) {
    op.add_to(names::REDIS_ERRORS, 1);
}

/// The subscription was made again.
pub(crate) fn redis_subscription_reconnected() {
    add(names::REDIS_SUBSCRIPTION_RECONNECTS, 1);
}

/// A message from Redis ended so.
pub(crate) fn fanout_received(result: FanoutResult) {
    result.add_to(names::FANOUT_RECEIVED, 1);
}

/// A panic was contained.
pub(crate) fn handler_panicked() {
    add(names::HANDLER_PANICS, 1);
}
