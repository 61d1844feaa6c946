//! The wire of what one member of a fleet asks of all the others, beyond the broadcasts and
//! remote joins of [`wire`]: acknowledged broadcasts (request type 7, answered
//! with types 8 and 9), server-side emits (type 6, answered with type 6), the questions of
//! types 0, 1 and 5 as this instance asks them, and the answers it collects, all as
//! `@socket.io/redis-adapter` (v8) writes them.
//!
//! - An acknowledged broadcast is MessagePack `{uid, requestId, type: 7, packet: {type: 2,
//!   data: [event, ...args], nsp}, opts: {rooms, except, flags: {timeout}}}` on the request
//!   channel; each server answers on the response channel with JSON `{type: 8, requestId,
//!   clientCount}` (how many of its sockets got it) and, per socket that acknowledged, with
//!   MessagePack `{type: 9, requestId, packet: <the ack's first argument>}`.
//! - A server-side emit is JSON `{uid, type: 6, data: [event, ...args], requestId?}` (with a
//!   `requestId` when an answer is expected); each answer is JSON `{type: 6, requestId,
//!   data: <the answer>}`. What holds binary data is written as MessagePack instead, which
//!   the JavaScript adapter reads as well (it tells the two apart by the first byte, `{`).
//! - The answers to questions carry no type: `{requestId, sockets}`, `{requestId, rooms}`.

use std::time::Duration;

use indexmap::IndexMap;
use rmpv::Value as Mp;
use serde_json::Value;

use crate::args::Arg;
use crate::fanout::wire::{self, Query, WireError};

/// Request type SERVER_SIDE_EMIT (and the type of its answers).
pub const SERVER_SIDE_EMIT: u64 = 6;
/// Request type BROADCAST: a broadcast whose acknowledgements are collected.
pub const BROADCAST: u64 = 7;
/// Answer type BROADCAST_CLIENT_COUNT: how many sockets of one server an acknowledged
/// broadcast reached.
pub const BROADCAST_CLIENT_COUNT: u64 = 8;
/// Answer type BROADCAST_ACK: one socket's acknowledgement.
pub const BROADCAST_ACK: u64 = 9;

/// A broadcast whose senders wants each socket's acknowledgement (request type 7).
#[derive(Debug, Clone, PartialEq)]
pub struct AckBroadcast {
    /// The asking server's uid.
    pub uid: String,
    /// The asker's id of this request, which every answer carries.
    pub request_id: String,
    /// The namespace.
    pub nsp: String,
    /// The event name.
    pub event: String,
    /// Its arguments.
    pub args: Vec<Arg>,
    /// The rooms it goes to; empty: everyone.
    pub rooms: Vec<String>,
    /// The rooms (or socket ids) left out.
    pub except: Vec<String>,
    /// How long the asker waits for acknowledgements (`flags.timeout`).
    pub timeout: Option<Duration>,
}

/// An event for the servers themselves, not their sockets (request type 6): socket.io's
/// `io.serverSideEmit(event, ...args)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSideEmit {
    /// The emitting server's uid.
    pub uid: String,
    /// Set when the emitter waits for one answer from each server.
    pub request_id: Option<String>,
    /// The event name.
    pub event: String,
    /// Its arguments.
    pub args: Vec<Arg>,
}

/// A request of the types this module reads.
#[derive(Debug, Clone, PartialEq)]
pub enum FleetRequest {
    /// Type 7.
    AckBroadcast(AckBroadcast),
    /// Type 6.
    ServerSideEmit(ServerSideEmit),
}

/// An answer on the response channel: the id of the request it answers, its type when it
/// has one (8, 9 and 6 do, answers to questions do not), and the whole message.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The request it answers.
    pub request_id: String,
    /// Its `type`, when it has one.
    pub kind: Option<u64>,
    /// The message, a map.
    pub body: Arg,
}

impl Response {
    /// A field of the answer.
    pub fn get(&self, name: &str) -> Option<&Arg> {
        self.body.get(name)
    }
}

/// Encodes an acknowledged broadcast as the JavaScript adapter does (MessagePack).
pub fn encode_ack_broadcast(b: &AckBroadcast) -> Vec<u8> {
    let mut data = Vec::with_capacity(b.args.len() + 1);
    data.push(Mp::from(b.event.as_str()));
    data.extend(b.args.iter().map(wire::arg_to_mp));
    let mut flags = Vec::new();
    if let Some(timeout) = b.timeout {
        flags.push((
            Mp::from("timeout"),
            Mp::from(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
        ));
    }
    let message = Mp::Map(vec![
        (Mp::from("uid"), Mp::from(b.uid.as_str())),
        (Mp::from("requestId"), Mp::from(b.request_id.as_str())),
        (Mp::from("type"), Mp::from(BROADCAST)),
        (
            Mp::from("packet"),
            Mp::Map(vec![
                (Mp::from("type"), Mp::from(2u64)),
                (Mp::from("data"), Mp::Array(data)),
                (Mp::from("nsp"), Mp::from(b.nsp.as_str())),
            ]),
        ),
        (
            Mp::from("opts"),
            Mp::Map(vec![
                (Mp::from("rooms"), strings(&b.rooms)),
                (Mp::from("except"), strings(&b.except)),
                (Mp::from("flags"), Mp::Map(flags)),
            ]),
        ),
    ]);
    msgpack(&message)
}

/// Encodes a server-side emit: JSON as the JavaScript adapter writes it, or MessagePack when
/// an argument is binary (JSON would turn it into `{type: "Buffer", data: [...]}`).
pub fn encode_server_side_emit(e: &ServerSideEmit) -> Vec<u8> {
    let mut data = Vec::with_capacity(e.args.len() + 1);
    data.push(Arg::String(e.event.clone()));
    data.extend(e.args.iter().cloned());
    let mut map = IndexMap::new();
    map.insert("uid".to_owned(), Arg::String(e.uid.clone()));
    map.insert("type".to_owned(), Arg::from(SERVER_SIDE_EMIT));
    map.insert("data".to_owned(), Arg::Array(data));
    if let Some(id) = &e.request_id {
        map.insert("requestId".to_owned(), Arg::String(id.clone()));
    }
    json_or_msgpack(&Arg::Object(map))
}

/// A question of type 0, 1 or 5 as this instance asks it (JSON).
pub fn encode_query(uid: &str, query: &Query) -> Vec<u8> {
    let message = match query {
        Query::Sockets { request_id, rooms } => serde_json::json!({
            "uid": uid, "requestId": request_id, "type": 0, "rooms": rooms,
        }),
        Query::AllRooms { request_id } => serde_json::json!({
            "uid": uid, "requestId": request_id, "type": 1,
        }),
        Query::Fetch {
            request_id,
            rooms,
            except,
        } => serde_json::json!({
            "uid": uid, "requestId": request_id, "type": 5,
            "opts": { "rooms": rooms, "except": except },
        }),
    };
    message.to_string().into_bytes()
}

/// How many sockets of this server an acknowledged broadcast reached (JSON, type 8).
pub fn encode_client_count(request_id: &str, count: u64) -> Vec<u8> {
    serde_json::json!({ "type": BROADCAST_CLIENT_COUNT, "requestId": request_id, "clientCount": count })
        .to_string()
        .into_bytes()
}

/// One socket's acknowledgement of a broadcast (MessagePack, type 9).
pub fn encode_broadcast_ack(request_id: &str, value: &Arg) -> Vec<u8> {
    msgpack(&Mp::Map(vec![
        (Mp::from("type"), Mp::from(BROADCAST_ACK)),
        (Mp::from("requestId"), Mp::from(request_id)),
        (Mp::from("packet"), wire::arg_to_mp(value)),
    ]))
}

/// This server's answer to a server-side emit (JSON, type 6; MessagePack when binary).
pub fn encode_server_side_answer(request_id: &str, value: &Arg) -> Vec<u8> {
    let mut map = IndexMap::new();
    map.insert("type".to_owned(), Arg::from(SERVER_SIDE_EMIT));
    map.insert("requestId".to_owned(), Arg::String(request_id.to_owned()));
    map.insert("data".to_owned(), value.clone());
    json_or_msgpack(&Arg::Object(map))
}

/// Reads a request of type 6 or 7; `Ok(None)` for every other type (the requests and
/// questions of [`wire`]).
pub fn decode_fleet_request(bytes: &[u8]) -> Result<Option<FleetRequest>, WireError> {
    let message = wire::decode_message(bytes, "request")?;
    let kind = message.get("type").and_then(Arg::as_i64);
    let uid = || {
        message
            .get("uid")
            .and_then(Arg::as_str)
            .map(str::to_owned)
            .ok_or_else(|| WireError("a request without a uid".into()))
    };
    let request_id = || message.get("requestId").and_then(id_text);
    Ok(Some(match kind {
        Some(6) => {
            let (event, args) = event_and_args(message.get("data"))?;
            FleetRequest::ServerSideEmit(ServerSideEmit {
                uid: uid()?,
                request_id: request_id(),
                event,
                args,
            })
        }
        Some(7) => {
            let request_id =
                request_id().ok_or_else(|| WireError("a broadcast without a requestId".into()))?;
            let packet = message.get("packet");
            let nsp = packet
                .and_then(|p| p.get("nsp"))
                .and_then(Arg::as_str)
                .unwrap_or("/")
                .to_owned();
            let (event, args) = event_and_args(packet.and_then(|p| p.get("data")))?;
            let opts = message.get("opts");
            let timeout = opts
                .and_then(|o| o.get("flags"))
                .and_then(|f| f.get("timeout"))
                .and_then(Arg::as_f64)
                .filter(|ms| ms.is_finite() && *ms >= 0.0)
                .map(|ms| Duration::from_millis(ms.min(u32::MAX.into()) as u64));
            FleetRequest::AckBroadcast(AckBroadcast {
                uid: uid()?,
                request_id,
                nsp,
                event,
                args,
                rooms: wire::room_list(opts.and_then(|o| o.get("rooms")), "opts.rooms")?,
                except: wire::room_list(opts.and_then(|o| o.get("except")), "opts.except")?,
                timeout,
            })
        }
        _ => return Ok(None),
    }))
}

/// Reads an answer from the response channel; an error for what has no `requestId`.
pub fn decode_response(bytes: &[u8]) -> Result<Response, WireError> {
    let body = wire::decode_message(bytes, "response")?;
    let request_id = body
        .get("requestId")
        .and_then(id_text)
        .ok_or_else(|| WireError("a response without a requestId".into()))?;
    let kind = body
        .get("type")
        .and_then(Arg::as_i64)
        .and_then(|k| u64::try_from(k).ok());
    Ok(Response {
        request_id,
        kind,
        body,
    })
}

/// A request id: a string (the JavaScript adapter's), or an integer as its text.
fn id_text(id: &Arg) -> Option<String> {
    match id {
        Arg::String(s) => Some(s.clone()),
        Arg::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// `[event, ...args]`, the data of an EVENT packet or of a server-side emit.
fn event_and_args(data: Option<&Arg>) -> Result<(String, Vec<Arg>), WireError> {
    let Some(Arg::Array(data)) = data else {
        return Err(WireError("no data array".into()));
    };
    let mut data = data.iter();
    let event = data
        .next()
        .and_then(Arg::as_str)
        .ok_or_else(|| WireError("the event name is missing".into()))?
        .to_owned();
    Ok((event, data.cloned().collect()))
}

fn strings(items: &[String]) -> Mp {
    Mp::Array(items.iter().map(|s| Mp::from(s.as_str())).collect())
}

fn msgpack(value: &Mp) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    rmpv::encode::write_value(&mut out, value).expect("writing to a Vec cannot fail");
    out
}

/// JSON text when the value has no binary data, MessagePack otherwise.
fn json_or_msgpack(value: &Arg) -> Vec<u8> {
    match value.to_json() {
        Some(json) => Value::to_string(&json).into_bytes(),
        None => msgpack(&wire::arg_to_mp(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_acknowledged_broadcast_reads_back_as_written() {
        let b = AckBroadcast {
            uid: "abc123".into(),
            request_id: "r1".into(),
            nsp: "/".into(),
            event: "question".into(),
            args: vec![
                Arg::from("why?"),
                Arg::Binary(bytes::Bytes::from_static(b"\x00\x01")),
            ],
            rooms: vec!["lobby".into()],
            except: vec!["muted".into()],
            timeout: Some(Duration::from_millis(1500)),
        };
        let decoded = decode_fleet_request(&encode_ack_broadcast(&b)).unwrap();
        assert_eq!(decoded, Some(FleetRequest::AckBroadcast(b)));
    }

    #[test]
    fn a_server_side_emit_is_json_unless_it_holds_binary_data() {
        let mut e = ServerSideEmit {
            uid: "abc123".into(),
            request_id: Some("r2".into()),
            event: "hello".into(),
            args: vec![Arg::from(1i64), Arg::from("two")],
        };
        let text = encode_server_side_emit(&e);
        assert_eq!(
            std::str::from_utf8(&text).unwrap(),
            r#"{"uid":"abc123","type":6,"data":["hello",1,"two"],"requestId":"r2"}"#
        );
        assert_eq!(
            decode_fleet_request(&text).unwrap(),
            Some(FleetRequest::ServerSideEmit(e.clone()))
        );
        e.args.push(Arg::Binary(bytes::Bytes::from_static(b"\xff")));
        let packed = encode_server_side_emit(&e);
        assert_ne!(packed[0], b'{');
        assert_eq!(
            decode_fleet_request(&packed).unwrap(),
            Some(FleetRequest::ServerSideEmit(e))
        );
    }

    #[test]
    fn answers_carry_their_request_id_and_type() {
        let count = decode_response(&encode_client_count("r3", 4)).unwrap();
        assert_eq!(count.request_id, "r3");
        assert_eq!(count.kind, Some(BROADCAST_CLIENT_COUNT));
        assert_eq!(count.get("clientCount").and_then(Arg::as_i64), Some(4));
        let ack = decode_response(&encode_broadcast_ack("r3", &Arg::from("yes"))).unwrap();
        assert_eq!(ack.kind, Some(BROADCAST_ACK));
        assert_eq!(ack.get("packet").and_then(Arg::as_str), Some("yes"));
        let rooms = decode_response(br#"{"requestId":"r4","rooms":["a","b"]}"#).unwrap();
        assert_eq!(rooms.kind, None);
        assert!(decode_response(br#"{"rooms":[]}"#).is_err());
    }

    #[test]
    fn other_request_types_are_left_to_the_broadcast_wire() {
        let join = br#"{"uid":"x","type":2,"opts":{"rooms":[],"except":[]},"rooms":["a"]}"#;
        assert_eq!(decode_fleet_request(join).unwrap(), None);
        let fetch = encode_query(
            "me",
            &Query::Fetch {
                request_id: "r5".into(),
                rooms: vec!["a".into()],
                except: vec![],
            },
        );
        assert_eq!(decode_fleet_request(&fetch).unwrap(), None);
        assert_eq!(
            wire::decode_query(&fetch).unwrap(),
            Some((
                Some("me".into()),
                Query::Fetch {
                    request_id: "r5".into(),
                    rooms: vec!["a".into()],
                    except: vec![]
                }
            ))
        );
    }

    #[test]
    fn a_broadcast_without_an_event_or_with_a_bad_room_list_is_refused() {
        let no_event = msgpack(&Mp::Map(vec![
            (Mp::from("uid"), Mp::from("x")),
            (Mp::from("requestId"), Mp::from("r")),
            (Mp::from("type"), Mp::from(7u64)),
            (
                Mp::from("packet"),
                Mp::Map(vec![(Mp::from("data"), Mp::Array(vec![]))]),
            ),
        ]));
        assert!(decode_fleet_request(&no_event).is_err());
        let bad_rooms = br#"{"uid":"x","requestId":"r","type":7,"packet":{"type":2,"data":["e"]},"opts":{"rooms":"lobby"}}"#;
        assert!(decode_fleet_request(bad_rooms).is_err());
    }
}
