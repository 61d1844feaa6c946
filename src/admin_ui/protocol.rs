//! The Admin UI's payloads, as `@socket.io/admin-ui` 0.5's `instrument()` sends them: a
//! socket (`all_sockets`, `socket_connected`), a server's stats (`server_stats`), the counts
//! of what happened each second (`aggregatedEvents`), the `config` features, and socket.io's
//! disconnect reasons. The UI reads these shapes field by field; their names are the
//! JavaScript ones.

use std::sync::Mutex;

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{Map, Value};
use socketioxide::TransportType;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use socketioxide::socket::DisconnectReason;

use crate::args::Arg;
use crate::fanout::FleetSocket;
use crate::session::Session;

/// A socket as the UI lists it (`SerializedSocket` of the JavaScript package).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SerializedSocket {
    /// The socket id (also its private room).
    pub id: String,
    /// The client (Engine.IO connection) it belongs to: the UI's "Clients" page groups
    /// sockets by it. socketioxide does not show a socket's Engine.IO session id, so ours is
    /// the first 12 characters of the socket id (a client with two namespaces shows as two);
    /// a Node server's, from its `data._admin`, is its Engine.IO id's.
    pub client_id: String,
    /// `polling` or `websocket`.
    pub transport: String,
    /// Its namespace.
    pub nsp: String,
    /// Its `socket.data`: on our servers, the identity authentication found (`{}` before).
    pub data: Value,
    /// Its handshake, as socket.io's `socket.handshake` without `auth` (which may hold a
    /// token): headers, query, address, time, issued, url, secure, xdomain.
    pub handshake: Value,
    /// Its rooms, its private room first.
    pub rooms: Vec<String>,
}

/// How many characters of an Engine.IO id the JavaScript package shows as the client id.
const CLIENT_ID_CHARS: usize = 12;

impl SerializedSocket {
    /// A socket of this server.
    pub(crate) fn local<A: Adapter>(socket: &SocketRef<A>) -> Self {
        let id = socket.id.to_string();
        let session = socket.extensions.get::<Session>();
        let handshake = session.as_ref().map_or_else(
            || Value::Object(Map::new()),
            |session| crate::fanout::local_server::handshake_json(session.handshake()),
        );
        let data = session.map_or_else(
            || Value::Object(Map::new()),
            |session| Value::clone(&session.data()),
        );
        let mut rooms: Vec<String> = socket.rooms().iter().map(|r| r.to_string()).collect();
        private_room_first(&mut rooms, &id);
        Self {
            client_id: id.chars().take(CLIENT_ID_CHARS).collect(),
            id,
            transport: transport_name(socket.transport_type()).to_owned(),
            nsp: socket.ns().to_owned(),
            data,
            handshake: for_the_ui(handshake),
            rooms,
        }
    }

    /// A socket another server of the fleet described (Node's or ours).
    pub(crate) fn remote(nsp: &str, socket: FleetSocket) -> Self {
        let FleetSocket {
            id,
            mut rooms,
            data,
            handshake,
        } = socket;
        // A Node server instrumented by `@socket.io/admin-ui` keeps the client id and the
        // current transport in `data._admin`, since `data` is what crosses servers.
        let (mut data, admin) = match data {
            Value::Object(mut map) => {
                let admin = map.shift_remove("_admin");
                (Value::Object(map), admin)
            }
            other => (other, None),
        };
        if data.is_null() {
            data = Value::Object(Map::new());
        }
        let admin = admin.unwrap_or(Value::Null);
        let client_id = admin["clientId"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| id.chars().take(CLIENT_ID_CHARS).collect());
        let transport = admin["transport"]
            .as_str()
            .or_else(|| handshake["query"]["transport"].as_str())
            .unwrap_or("polling")
            .to_owned();
        private_room_first(&mut rooms, &id);
        Self {
            id,
            client_id,
            transport,
            nsp: nsp.to_owned(),
            data,
            handshake: for_the_ui(handshake),
            rooms,
        }
    }
}

fn private_room_first(rooms: &mut [String], id: &str) {
    if let Some(at) = rooms.iter().position(|r| r == id) {
        rooms[..=at].rotate_right(1);
    }
}

/// The handshake without `auth`, its `address` the client's as a proxy reports it
/// (`cf-connecting-ip`, then `x-forwarded-for`), as the JavaScript package shows it.
fn for_the_ui(handshake: Value) -> Value {
    let Value::Object(mut map) = handshake else {
        return Value::Object(Map::new());
    };
    map.shift_remove("auth");
    let forwarded = ["cf-connecting-ip", "x-forwarded-for"]
        .iter()
        .find_map(|h| map.get("headers")?.get(*h)?.as_str().map(str::to_owned));
    if let Some(address) = forwarded {
        map.insert("address".into(), Value::from(address));
    }
    Value::Object(map)
}

/// The transport's name in socket.io's terms.
pub(crate) fn transport_name(transport: TransportType) -> &'static str {
    match transport {
        TransportType::Polling => "polling",
        TransportType::Websocket => "websocket",
    }
}

/// One server's stats (`server_stats`), every 2 s to every UI of the fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerStats {
    /// The server's id: the UI shows one row per id.
    pub server_id: String,
    /// The machine's host name.
    pub hostname: String,
    /// The process id.
    pub pid: u32,
    /// Seconds since the Admin UI was set up on this server.
    pub uptime: f64,
    /// Connected sockets of this server, in every namespace (socketioxide does not show its
    /// Engine.IO connections: a client with two namespaces counts twice).
    pub clients_count: usize,
    /// How many of them are still on HTTP long-polling.
    pub polling_clients_count: usize,
    /// What happened since the previous `server_stats`, per second.
    pub aggregated_events: Vec<AggregatedEvent>,
    /// Every namespace of this server, with its socket count.
    pub namespaces: Vec<NamespaceStats>,
}

/// A namespace in [`ServerStats`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceStats {
    /// Its name (`/`, `/admin`...).
    pub name: String,
    /// Its sockets on this server.
    pub sockets_count: usize,
}

/// How many times something of `type` (and `subType`) happened during one second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AggregatedEvent {
    /// The second, in milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// What happened: `rawConnection`, `rawDisconnection` or `packetsIn`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// For `rawDisconnection`, the reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_type: Option<&'static str>,
    /// How many times.
    pub count: u64,
}

/// A socket connected (the UI's connection chart).
pub const RAW_CONNECTION: &str = "rawConnection";
/// A socket disconnected, its reason as the sub-type.
pub const RAW_DISCONNECTION: &str = "rawDisconnection";
/// A client sent an event.
pub const PACKETS_IN: &str = "packetsIn";

/// The most (second, type, sub-type) entries kept between two `server_stats`: 2 s of every
/// type and reason fit many times over; past it, counts of new entries are lost.
const MAX_COUNTED: usize = 1024;

/// What is counted: the second (ms since the epoch), the type, the sub-type.
type CountKey = (u64, &'static str, Option<&'static str>);

/// The counts of [`AggregatedEvent`]s since they were last taken.
#[derive(Debug, Default)]
pub(crate) struct EventCounts(Mutex<IndexMap<CountKey, u64>>);

impl EventCounts {
    /// Counts one `kind` (of `sub_type`) now.
    pub(crate) fn add(&self, kind: &'static str, sub_type: Option<&'static str>) {
        let second = crate::clock::unix_millis(std::time::SystemTime::now()) / 1000 * 1000;
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let key = (second, kind, sub_type);
        if let Some(count) = counts.get_mut(&key) {
            *count += 1;
        } else if counts.len() < MAX_COUNTED {
            counts.insert(key, 1);
        }
    }

    /// The counts so far, which start again from nothing.
    pub(crate) fn take(&self) -> Vec<AggregatedEvent> {
        let counts = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        counts
            .into_iter()
            .map(|((timestamp, kind, sub_type), count)| AggregatedEvent {
                timestamp,
                kind,
                sub_type,
                count,
            })
            .collect()
    }
}

/// The `config` event's `supportedFeatures`, in the JavaScript package's order: the commands
/// unless read-only, then `AGGREGATED_EVENTS`, then `ALL_EVENTS` in development mode (the UI
/// shows its sockets, rooms and events pages only then).
pub fn supported_features(readonly: bool, development: bool) -> Vec<&'static str> {
    let mut features = Vec::new();
    if !readonly {
        features.extend([
            "EMIT",
            "JOIN",
            "LEAVE",
            "DISCONNECT",
            "MJOIN",
            "MLEAVE",
            "MDISCONNECT",
        ]);
    }
    features.push("AGGREGATED_EVENTS");
    if development {
        features.push("ALL_EVENTS");
    }
    features
}

/// A disconnect reason as socket.io names it (`socket_disconnected`, `rawDisconnection`).
pub fn disconnect_reason(reason: DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::TransportClose => "transport close",
        DisconnectReason::MultipleHttpPollingError | DisconnectReason::TransportError => {
            "transport error"
        }
        DisconnectReason::PacketParsingError => "parse error",
        DisconnectReason::HeartbeatTimeout => "ping timeout",
        DisconnectReason::ClientNSDisconnect => "client namespace disconnect",
        DisconnectReason::ServerNSDisconnect => "server namespace disconnect",
        DisconnectReason::ClosingServer => "server shutting down",
    }
}

/// Whether `args` take more than `limit` bytes or so (JSON text; binary at its length):
/// counted only up to the limit, so the cost of asking is bounded by it.
pub(crate) fn larger_than(args: &[Arg], limit: usize) -> bool {
    fn add(arg: &Arg, left: &mut usize) -> bool {
        let own = match arg {
            Arg::Null | Arg::Bool(_) | Arg::Number(_) => 8,
            Arg::String(s) => s.len() + 2,
            Arg::Utf16(units) => units.len() * 2 + 2,
            Arg::Binary(b) => b.len(),
            Arg::Array(items) => {
                return take(left, items.len() + 2) && items.iter().all(|a| add(a, left));
            }
            Arg::Object(map) => {
                return take(left, map.len() + 2)
                    && map
                        .iter()
                        .all(|(k, v)| take(left, k.len() + 3) && add(v, left));
            }
        };
        take(left, own)
    }
    fn take(left: &mut usize, n: usize) -> bool {
        match left.checked_sub(n) {
            Some(rest) => {
                *left = rest;
                true
            }
            None => false,
        }
    }
    let mut left = limit;
    !args.iter().all(|a| add(a, &mut left))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_remote_node_socket_takes_its_client_id_and_transport_from_data_admin() {
        let fleet = FleetSocket {
            id: "SuJJkHY3wh_RRk5mAAAD".into(),
            rooms: vec!["room1".into(), "SuJJkHY3wh_RRk5mAAAD".into()],
            data: json!({"_admin": {"clientId": "hK9SGJ4cTkn1", "transport": "websocket"}, "user": "alice"}),
            handshake: json!({"headers": {"x-forwarded-for": "10.0.0.1"}, "address": "::1", "auth": {"token": "secret"}, "query": {"transport": "polling"}}),
        };
        let s = SerializedSocket::remote("/", fleet);
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({
                "id": "SuJJkHY3wh_RRk5mAAAD", "clientId": "hK9SGJ4cTkn1", "transport": "websocket",
                "nsp": "/", "data": {"user": "alice"},
                "handshake": {"headers": {"x-forwarded-for": "10.0.0.1"}, "address": "10.0.0.1", "query": {"transport": "polling"}},
                "rooms": ["SuJJkHY3wh_RRk5mAAAD", "room1"],
            })
        );
    }

    #[test]
    fn a_remote_socket_without_admin_data_falls_back_on_its_id_and_handshake() {
        let fleet = FleetSocket {
            id: "abcdefghijklmnopqrst".into(),
            rooms: vec![],
            data: Value::Null,
            handshake: json!({"query": {"transport": "websocket"}}),
        };
        let s = SerializedSocket::remote("/chat", fleet);
        assert_eq!(s.client_id, "abcdefghijkl");
        assert_eq!(s.transport, "websocket");
        assert_eq!(s.data, json!({}));
    }

    #[test]
    fn counts_are_per_second_type_and_reason_and_start_again_once_taken() {
        let counts = EventCounts::default();
        counts.add(RAW_CONNECTION, None);
        counts.add(RAW_CONNECTION, None);
        counts.add(RAW_DISCONNECTION, Some("transport close"));
        let taken = counts.take();
        // Two seconds at most (the test may straddle one).
        let connections: u64 = taken
            .iter()
            .filter(|e| e.kind == RAW_CONNECTION)
            .map(|e| e.count)
            .sum();
        assert_eq!(connections, 2);
        assert!(taken.iter().all(|e| e.timestamp % 1000 == 0));
        let json = serde_json::to_value(&taken).unwrap();
        assert!(json.as_array().unwrap().iter().any(|e| e
            == &json!({
                "timestamp": taken.iter().find(|e| e.kind == RAW_DISCONNECTION).unwrap().timestamp,
                "type": "rawDisconnection", "subType": "transport close", "count": 1
            })));
        assert!(json[0].get("subType").is_none(), "absent, not null");
        assert!(counts.take().is_empty());
    }

    #[test]
    fn features_as_the_javascript_package_lists_them() {
        assert_eq!(
            supported_features(false, true),
            [
                "EMIT",
                "JOIN",
                "LEAVE",
                "DISCONNECT",
                "MJOIN",
                "MLEAVE",
                "MDISCONNECT",
                "AGGREGATED_EVENTS",
                "ALL_EVENTS"
            ]
        );
        assert_eq!(
            supported_features(true, true),
            ["AGGREGATED_EVENTS", "ALL_EVENTS"]
        );
        assert_eq!(supported_features(true, false), ["AGGREGATED_EVENTS"]);
    }

    #[test]
    fn the_size_check_stops_at_its_limit() {
        let small = [Arg::from("hello"), Arg::from(json!({"a": [1, 2]}))];
        assert!(!larger_than(&small, 100));
        assert!(larger_than(&small, 10));
        let big = [Arg::Binary(bytes::Bytes::from(vec![0; 1000]))];
        assert!(larger_than(&big, 999));
        assert!(!larger_than(&big, 1000));
    }
}
