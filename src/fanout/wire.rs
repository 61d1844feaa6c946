//! The Redis wire format of `@socket.io/redis-adapter` (v8) and `@socket.io/redis-emitter`
//! (v5), for broadcasts.
//!
//! A broadcast is published on the channel `socket.io#<nsp>#` (no room, or several rooms) or
//! `socket.io#<nsp>#<room>#` (exactly one room; a socket id is a room), as a MessagePack
//! array `[uid, packet, opts]`:
//!
//! - `uid`: `"emitter"` for emitters (and the seeds' `send()`), the adapter's own id for
//!   adapter broadcasts; a node ignores only messages carrying its own uid;
//! - `packet`: `{type: 2, data: [event, ...args], nsp}` (a Socket.IO EVENT packet);
//! - `opts`: `{rooms: [...], flags: {...}, except: [...]}`; `flags` may hold `compress`,
//!   `volatile`, `local`, `broadcast`, `timeout`.
//!
//! Encoding follows notepack.io (the JavaScript packages' encoder): maps and arrays in the
//! smallest form, integral numbers as integers, other numbers as float64, so that what we
//! publish is byte for byte what the JavaScript emitter publishes (checked against the
//! captures in `shared/reference/redis-wire-captures`).

use rmpv::Value as Mp;
use serde_json::{Map, Number, Value};

/// The default channel prefix (the JavaScript packages' `key` option).
pub const DEFAULT_KEY: &str = "socket.io";
/// The uid of emitters.
pub const EMITTER_UID: &str = "emitter";
/// The largest message decoded (2 MiB, twice the largest message a client may send);
/// bigger ones are refused (and logged by the caller).
pub const MAX_MESSAGE_BYTES: usize = 2 << 20;
/// The deepest nesting decoded.
const MAX_DEPTH: usize = 64;
/// Socket.IO packet type EVENT.
const EVENT: u64 = 2;

/// Broadcast flags carried on the wire.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Flags {
    /// `compress`, when set.
    pub compress: Option<bool>,
    /// `volatile`, when set.
    pub volatile: Option<bool>,
}

/// One broadcast, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Broadcast {
    /// Who published it.
    pub uid: String,
    /// The namespace (`/`).
    pub nsp: String,
    /// The event name.
    pub event: String,
    /// The event's arguments.
    pub args: Vec<Value>,
    /// The rooms it goes to; empty: everyone.
    pub rooms: Vec<String>,
    /// The rooms (or socket ids) it must not reach.
    pub except: Vec<String>,
    /// Its flags.
    pub flags: Flags,
}

impl Broadcast {
    /// What the seeds' `send` publishes: `@socket.io/redis-emitter`'s broadcast of `req` to
    /// namespace `/` (uid `emitter`), with its `compress` and `volatile` flags.
    pub fn of_send(req: crate::SendRequest) -> Self {
        Self {
            uid: EMITTER_UID.to_owned(),
            nsp: "/".to_owned(),
            rooms: req.room().map(|r| vec![r.to_owned()]).unwrap_or_default(),
            event: req.topic,
            args: vec![req.data],
            except: Vec::new(),
            flags: Flags {
                compress: Some(req.compress),
                volatile: req.volatile.then_some(true),
            },
        }
    }
}

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WireError {}

/// A remote operation on the sockets of every instance (the JavaScript `socketsJoin`,
/// `socketsLeave` and `disconnectSockets`).
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteOp {
    /// Make the targeted sockets join these rooms (request type 2).
    Join(Vec<String>),
    /// Make them leave these rooms (type 3).
    Leave(Vec<String>),
    /// Disconnect them; `close` also closes their connection (type 4).
    Disconnect {
        /// Close the underlying connection too.
        close: bool,
    },
}

/// A request on the request channel: an operation on the sockets in `rooms` (all sockets
/// when empty) but those in `except`.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The publishing adapter's uid; `None` from emitters.
    pub uid: Option<String>,
    /// What to do.
    pub op: RemoteOp,
    /// The targeted rooms.
    pub rooms: Vec<String>,
    /// The rooms left out.
    pub except: Vec<String>,
}

/// The channel requests of `nsp` are published on.
pub fn request_channel(key: &str, nsp: &str) -> String {
    format!("{key}-request#{nsp}#")
}

/// Encodes a request as JSON text, as the JavaScript emitter and adapter do.
pub fn encode_request(r: &Request) -> Vec<u8> {
    let mut map = serde_json::Map::new();
    if let Some(uid) = &r.uid {
        map.insert("uid".into(), Value::from(uid.as_str()));
    }
    let kind = match r.op {
        RemoteOp::Join(_) => 2,
        RemoteOp::Leave(_) => 3,
        RemoteOp::Disconnect { .. } => 4,
    };
    map.insert("type".into(), Value::from(kind));
    map.insert(
        "opts".into(),
        serde_json::json!({ "rooms": r.rooms, "except": r.except }),
    );
    match &r.op {
        RemoteOp::Join(rooms) | RemoteOp::Leave(rooms) => {
            map.insert("rooms".into(), Value::from(rooms.clone()));
        }
        RemoteOp::Disconnect { close } => {
            map.insert("close".into(), Value::from(*close));
        }
    }
    Value::Object(map).to_string().into_bytes()
}

/// Decodes a request (JSON text, or MessagePack as the adapter also accepts). `Ok(None)` for
/// the request types this crate does not serve yet (fetching sockets and rooms,
/// server-side emits, requests aimed at one socket id of another adapter).
pub fn decode_request(bytes: &[u8]) -> Result<Option<Request>, WireError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(WireError(format!(
            "request of {} bytes is over the bound",
            bytes.len()
        )));
    }
    let value: Value = if bytes.first() == Some(&b'{') {
        serde_json::from_slice(bytes).map_err(|e| WireError(format!("not JSON: {e}")))?
    } else {
        let mut reader = bytes;
        let mp = rmpv::decode::read_value_with_max_depth(&mut reader, MAX_DEPTH)
            .map_err(|e| WireError(format!("not MessagePack: {e}")))?;
        mp_to_json(&mp)?
    };
    let Some(kind) = value.get("type").and_then(Value::as_u64) else {
        return Err(WireError("a request without a type".into()));
    };
    let Some(opts) = value.get("opts").filter(|o| o.is_object()) else {
        return Ok(None);
    };
    let names = |v: Option<&Value>, what: &str| -> Result<Vec<String>, WireError> {
        match v {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    other => Err(WireError(format!("{what} holds {other}, not a room name"))),
                })
                .collect(),
            Some(other) => Err(WireError(format!("{what} is {other}, not an array"))),
        }
    };
    let op = match kind {
        2 => RemoteOp::Join(names(value.get("rooms"), "rooms")?),
        3 => RemoteOp::Leave(names(value.get("rooms"), "rooms")?),
        4 => RemoteOp::Disconnect {
            close: value.get("close").and_then(Value::as_bool).unwrap_or(false),
        },
        _ => return Ok(None),
    };
    Ok(Some(Request {
        uid: value.get("uid").and_then(Value::as_str).map(str::to_owned),
        op,
        rooms: names(opts.get("rooms"), "opts.rooms")?,
        except: names(opts.get("except"), "opts.except")?,
    }))
}

/// A question another instance's adapter asks every server, answered on the response channel.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// Socket ids in `rooms` (all when empty) (request type 0).
    Sockets {
        /// The asker's id of this request.
        request_id: String,
        /// The rooms asked about.
        rooms: Vec<String>,
    },
    /// Every room of this server (type 1).
    AllRooms {
        /// The asker's id of this request.
        request_id: String,
    },
    /// The sockets in `rooms` but those in `except`, with their handshake and rooms (type 5).
    Fetch {
        /// The asker's id of this request.
        request_id: String,
        /// The targeted rooms.
        rooms: Vec<String>,
        /// The rooms left out.
        except: Vec<String>,
    },
}

/// The channel answers to queries are published on (the adapter's default, shared one).
pub fn response_channel(key: &str, nsp: &str) -> String {
    format!("{key}-response#{nsp}#")
}

/// Decodes a query (JSON, as adapters send them) with its asker's uid; `None` for anything
/// else.
pub fn decode_query(bytes: &[u8]) -> Option<(Option<String>, Query)> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    let request_id = value.get("requestId")?.as_str()?.to_owned();
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let query = match value.get("type")?.as_u64()? {
        0 => Query::Sockets {
            request_id,
            rooms: strings(value.get("rooms")),
        },
        1 => Query::AllRooms { request_id },
        5 => {
            let opts = value.get("opts");
            Query::Fetch {
                request_id,
                rooms: strings(opts.and_then(|o| o.get("rooms"))),
                except: strings(opts.and_then(|o| o.get("except"))),
            }
        }
        _ => return None,
    };
    let uid = value.get("uid").and_then(Value::as_str).map(str::to_owned);
    Some((uid, query))
}

/// The channel a broadcast to `rooms` in `nsp` is published on.
pub fn channel(key: &str, nsp: &str, rooms: &[String]) -> String {
    match rooms {
        [room] => format!("{key}#{nsp}#{room}#"),
        _ => format!("{key}#{nsp}#"),
    }
}

/// The pattern a node subscribes to for the broadcasts of `nsp`.
pub fn pattern(key: &str, nsp: &str) -> String {
    format!("{key}#{nsp}#*")
}

/// Encodes a broadcast as the JavaScript packages do.
pub fn encode(b: &Broadcast) -> Vec<u8> {
    let mut data = Vec::with_capacity(b.args.len() + 1);
    data.push(Mp::from(b.event.as_str()));
    data.extend(b.args.iter().map(json_to_mp));
    let packet = Mp::Map(vec![
        (Mp::from("type"), Mp::from(EVENT)),
        (Mp::from("data"), Mp::Array(data)),
        (Mp::from("nsp"), Mp::from(b.nsp.as_str())),
    ]);
    let mut flags = Vec::new();
    if let Some(c) = b.flags.compress {
        flags.push((Mp::from("compress"), Mp::from(c)));
    }
    if let Some(v) = b.flags.volatile {
        flags.push((Mp::from("volatile"), Mp::from(v)));
    }
    let strings =
        |items: &[String]| Mp::Array(items.iter().map(|s| Mp::from(s.as_str())).collect());
    let opts = Mp::Map(vec![
        (Mp::from("rooms"), strings(&b.rooms)),
        (Mp::from("flags"), Mp::Map(flags)),
        (Mp::from("except"), strings(&b.except)),
    ]);
    let message = Mp::Array(vec![Mp::from(b.uid.as_str()), packet, opts]);
    let mut out = Vec::with_capacity(64);
    rmpv::encode::write_value(&mut out, &message).expect("writing to a Vec cannot fail");
    out
}

/// Decodes a broadcast, refusing what is not one (too big, truncated, not MessagePack, not an
/// EVENT packet, binary arguments).
pub fn decode(bytes: &[u8]) -> Result<Broadcast, WireError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(WireError(format!(
            "message of {} bytes is over the {MAX_MESSAGE_BYTES}-byte bound",
            bytes.len()
        )));
    }
    let mut reader = bytes;
    let value = rmpv::decode::read_value_with_max_depth(&mut reader, MAX_DEPTH)
        .map_err(|e| WireError(format!("not MessagePack: {e}")))?;
    let Mp::Array(mut parts) = value else {
        return Err(WireError("not an array".into()));
    };
    if parts.len() < 3 {
        return Err(WireError(format!(
            "{} elements instead of [uid, packet, opts]",
            parts.len()
        )));
    }
    let opts = parts.remove(2);
    let packet = parts.remove(1);
    let uid = parts
        .remove(0)
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| WireError("the uid is not a string".into()))?;

    let kind = field(&packet, "type").and_then(Mp::as_u64);
    if kind != Some(EVENT) {
        return Err(WireError(format!(
            "packet type {kind:?} is not an EVENT (binary events are not supported)"
        )));
    }
    let nsp = field(&packet, "nsp")
        .and_then(Mp::as_str)
        .unwrap_or("/")
        .to_owned();
    let Some(Mp::Array(data)) = field(&packet, "data") else {
        return Err(WireError("the packet has no data array".into()));
    };
    let mut data = data.iter();
    let event = data
        .next()
        .and_then(Mp::as_str)
        .ok_or_else(|| WireError("the event name is missing".into()))?
        .to_owned();
    let args = data.map(mp_to_json).collect::<Result<Vec<_>, _>>()?;

    // Room names as JavaScript's `String(room)` makes them; anything else refuses the whole
    // message, since dropping an entry would widen the broadcast.
    let strings = |name: &str| -> Result<Vec<String>, WireError> {
        match field(&opts, name) {
            None | Some(Mp::Nil) => Ok(Vec::new()),
            Some(Mp::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Mp::String(s) => s
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| WireError(format!("a name in {name} is not UTF-8"))),
                    Mp::Integer(i) => Ok(i.to_string()),
                    other => Err(WireError(format!("{name} holds {other}, not a room name"))),
                })
                .collect(),
            Some(other) => Err(WireError(format!("{name} is {other}, not an array"))),
        }
    };
    let flags = field(&opts, "flags");
    let flag = |name: &str| flags.and_then(|f| field(f, name)).and_then(Mp::as_bool);
    Ok(Broadcast {
        uid,
        nsp,
        event,
        args,
        rooms: strings("rooms")?,
        except: strings("except")?,
        flags: Flags {
            compress: flag("compress"),
            volatile: flag("volatile"),
        },
    })
}

fn field<'a>(map: &'a Mp, name: &str) -> Option<&'a Mp> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(_, v)| v)
}

/// JSON to MessagePack, numbers as notepack.io writes JavaScript numbers.
fn json_to_mp(v: &Value) -> Mp {
    match v {
        Value::Null => Mp::Nil,
        Value::Bool(b) => Mp::from(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Mp::from(u)
            } else if let Some(i) = n.as_i64() {
                Mp::from(i)
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                // An integral float is an integer to JavaScript, and notepack writes it so.
                if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
                    if f >= 0.0 {
                        Mp::from(f as u64)
                    } else {
                        Mp::from(f as i64)
                    }
                } else {
                    Mp::F64(f)
                }
            }
        }
        Value::String(s) => Mp::from(s.as_str()),
        Value::Array(items) => Mp::Array(items.iter().map(json_to_mp).collect()),
        Value::Object(map) => Mp::Map(
            map.iter()
                .map(|(k, v)| (Mp::from(k.as_str()), json_to_mp(v)))
                .collect(),
        ),
    }
}

/// MessagePack to JSON; binary and extension values have no JSON form and are refused.
fn mp_to_json(v: &Mp) -> Result<Value, WireError> {
    Ok(match v {
        Mp::Nil => Value::Null,
        Mp::Boolean(b) => Value::Bool(*b),
        Mp::Integer(i) => i
            .as_u64()
            .map(Value::from)
            .or_else(|| i.as_i64().map(Value::from))
            .unwrap_or(Value::Null),
        Mp::F32(f) => Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number),
        Mp::F64(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Mp::String(s) => Value::String(
            s.as_str()
                .ok_or_else(|| WireError("a string is not UTF-8".into()))?
                .to_owned(),
        ),
        Mp::Binary(_) => return Err(WireError("binary arguments are not supported".into())),
        Mp::Array(items) => Value::Array(items.iter().map(mp_to_json).collect::<Result<_, _>>()?),
        Mp::Map(entries) => {
            let mut map = Map::with_capacity(entries.len());
            for (k, v) in entries {
                let key = match k {
                    Mp::String(s) => s
                        .as_str()
                        .ok_or_else(|| WireError("a map key is not UTF-8".into()))?
                        .to_owned(),
                    other => other.to_string(),
                };
                map.insert(key, mp_to_json(v)?);
            }
            Value::Object(map)
        }
        // notepack.io writes a JavaScript Date as the timestamp extension; JSON has it as the
        // ISO string `JSON.stringify` gives.
        Mp::Ext(-1, bytes) => Value::String(timestamp(bytes)?),
        Mp::Ext(kind, _) => {
            return Err(WireError(format!("extension type {kind} is not supported")));
        }
    })
}

/// The MessagePack timestamp extension (32, 64 or 96 bits) as `toISOString()` writes it.
fn timestamp(bytes: &[u8]) -> Result<String, WireError> {
    let (secs, nanos): (i64, u32) = match bytes.len() {
        4 => (
            i64::from(u32::from_be_bytes(bytes.try_into().unwrap_or_default())),
            0,
        ),
        8 => {
            let v = u64::from_be_bytes(bytes.try_into().unwrap_or_default());
            ((v & 0x3_ffff_ffff) as i64, (v >> 34) as u32)
        }
        12 => (
            i64::from_be_bytes(bytes[4..].try_into().unwrap_or_default()),
            u32::from_be_bytes(bytes[..4].try_into().unwrap_or_default()),
        ),
        n => return Err(WireError(format!("a timestamp of {n} bytes"))),
    };
    let secs = u64::try_from(secs).map_err(|_| WireError("a timestamp before 1970".into()))?;
    let at = std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos.min(999_999_999));
    Ok(crate::clock::iso_string(at))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_send_becomes_the_emitter_broadcast_with_its_flags() {
        let plain = Broadcast::of_send(crate::SendRequest::to("room-a", "news", json!({"n": 1})));
        assert_eq!(plain.uid, EMITTER_UID);
        assert_eq!(plain.nsp, "/");
        assert_eq!(plain.rooms, ["room-a"]);
        assert_eq!(plain.event, "news");
        assert_eq!(plain.args, [json!({"n": 1})]);
        assert_eq!(plain.flags.compress, Some(true));
        assert_eq!(plain.flags.volatile, None);
        let volatile =
            Broadcast::of_send(crate::SendRequest::broadcast("news", json!(1)).volatile());
        assert!(volatile.rooms.is_empty());
        assert_eq!(volatile.flags.volatile, Some(true));
        let decoded = decode(&encode(&volatile)).unwrap();
        assert_eq!(decoded.flags.volatile, Some(true));
    }

    use super::*;
    use serde_json::json;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The capture of the original's `send({destination: 'io-default', ...})`.
    const SEND_ROOM_HEX: &str = "93a7656d697474657283a47479706502a46461746192bd7431322d776972652d726f6f6d2d31373433362d37332d6169706e327682a477697265a4726f6f6da16e01a36e7370a12f83a5726f6f6d7391aa696f2d64656661756c74a5666c61677381a8636f6d7072657373c3a665786365707490";
    /// The capture of the external emitter's broadcast with two arguments.
    const EMITTER_BROADCAST_HEX: &str = "93a7656d697474657283a47479706502a46461746193b97431322d62636173742d31373433362d36392d656e6539736381a3616c6c01aa7365636f6e642d617267a36e7370a12f83a5726f6f6d7390a5666c61677380a665786365707490";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn encodes_send_byte_for_byte_as_the_original() {
        let b = Broadcast {
            uid: EMITTER_UID.into(),
            nsp: "/".into(),
            event: "t12-wire-room-17436-73-aipn2v".into(),
            args: vec![json!({"wire": "room", "n": 1})],
            rooms: vec!["io-default".into()],
            except: vec![],
            flags: Flags {
                compress: Some(true),
                volatile: None,
            },
        };
        assert_eq!(hex(&encode(&b)), SEND_ROOM_HEX);
        assert_eq!(
            channel(DEFAULT_KEY, "/", &b.rooms),
            "socket.io#/#io-default#"
        );
        assert_eq!(decode(&unhex(SEND_ROOM_HEX)).unwrap(), b);
    }

    #[test]
    fn decodes_the_external_emitter_and_round_trips() {
        let b = decode(&unhex(EMITTER_BROADCAST_HEX)).unwrap();
        assert_eq!(b.event, "t12-bcast-17436-69-ene9sc");
        assert_eq!(b.args, vec![json!({"all": 1}), json!("second-arg")]);
        assert!(b.rooms.is_empty() && b.except.is_empty());
        assert_eq!(b.flags, Flags::default());
        assert_eq!(channel(DEFAULT_KEY, "/", &b.rooms), "socket.io#/#");
        assert_eq!(hex(&encode(&b)), EMITTER_BROADCAST_HEX);
        assert_eq!(pattern(DEFAULT_KEY, "/"), "socket.io#/#*");
    }

    #[test]
    fn numbers_are_written_as_javascript_numbers() {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &json_to_mp(&json!([1.0, -2.0, 1.5, 300]))).unwrap();
        assert_eq!(hex(&out), "9401fecb3ff8000000000000cd012c");
    }

    #[test]
    fn decodes_dates_and_numeric_room_names_as_javascript_does() {
        // notepack.io: new Date(1795340096789) → timestamp 64 (nanos 789000000, secs 1795340096).
        let nanos: u64 = 789_000_000;
        let secs: u64 = 1_795_340_096;
        let ts = ((nanos << 34) | secs).to_be_bytes();
        let message = Mp::Array(vec![
            Mp::from("emitter"),
            Mp::Map(vec![
                (Mp::from("type"), Mp::from(2)),
                (
                    Mp::from("data"),
                    Mp::Array(vec![Mp::from("at"), Mp::Ext(-1, ts.to_vec())]),
                ),
                (Mp::from("nsp"), Mp::from("/")),
            ]),
            Mp::Map(vec![(Mp::from("rooms"), Mp::Array(vec![Mp::from(42)]))]),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &message).unwrap();
        let b = decode(&bytes).unwrap();
        assert_eq!(b.args, vec![json!("2026-11-22T09:34:56.789Z")]);
        assert_eq!(b.rooms, vec!["42".to_owned()]);
    }

    #[test]
    fn requests_match_the_captures() {
        // The external emitter's `in(<socket id>).socketsJoin(room)`.
        let emitter = r#"{"type":2,"opts":{"rooms":["cJ-_cuW3m4HIek97AAA2"],"except":[]},"rooms":["public-remote-17436-78-075qw7"]}"#;
        let r = decode_request(emitter.as_bytes()).unwrap().unwrap();
        assert_eq!(r.uid, None);
        assert_eq!(
            r.op,
            RemoteOp::Join(vec!["public-remote-17436-78-075qw7".into()])
        );
        assert_eq!(r.rooms, vec!["cJ-_cuW3m4HIek97AAA2".to_owned()]);
        assert_eq!(String::from_utf8(encode_request(&r)).unwrap(), emitter);
        // The adapter's `io.in('io-default').socketsJoin('joined')`.
        let adapter = r#"{"uid":"_wMPCC","type":2,"opts":{"rooms":["io-default"],"except":[]},"rooms":["joined"]}"#;
        let r = decode_request(adapter.as_bytes()).unwrap().unwrap();
        assert_eq!(String::from_utf8(encode_request(&r)).unwrap(), adapter);
        // Not served yet: server-side emit; garbage is an error.
        assert_eq!(
            decode_request(br#"{"uid":"_wMPCC","type":6,"data":["hello",1]}"#),
            Ok(None)
        );
        assert!(decode_request(b"{not json").is_err());
        assert!(decode_request(br#"{"opts":{}}"#).is_err());
        let disconnect = Request {
            uid: Some("u".into()),
            op: RemoteOp::Disconnect { close: true },
            rooms: vec![],
            except: vec!["x".into()],
        };
        assert_eq!(
            decode_request(&encode_request(&disconnect))
                .unwrap()
                .unwrap(),
            disconnect
        );
    }

    #[test]
    fn decodes_the_adapter_s_queries() {
        let fetch =
            br#"{"uid":"_wMPCC","requestId":"r1","type":5,"opts":{"rooms":["a"],"except":["b"]}}"#;
        assert_eq!(
            decode_query(fetch),
            Some((
                Some("_wMPCC".to_owned()),
                Query::Fetch {
                    request_id: "r1".into(),
                    rooms: vec!["a".into()],
                    except: vec!["b".into()]
                }
            ))
        );
        assert_eq!(
            decode_query(br#"{"uid":"u","requestId":"r2","type":1}"#),
            Some((
                Some("u".to_owned()),
                Query::AllRooms {
                    request_id: "r2".into()
                }
            ))
        );
        assert_eq!(
            decode_query(br#"{"uid":"u","type":1}"#),
            None,
            "no requestId"
        );
        assert_eq!(
            decode_query(br#"{"requestId":"r","type":6}"#),
            None,
            "not served"
        );
        assert_eq!(response_channel(DEFAULT_KEY, "/"), "socket.io-response#/#");
    }

    #[test]
    fn refuses_garbage() {
        let good = unhex(SEND_ROOM_HEX);
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            b"hello".to_vec(),
            good[..good.len() / 2].to_vec(),
            unhex("93a7656d69747465720102"), // packet and opts not maps
            unhex("92a7656d697474657280"),   // two elements
            vec![0x91; 200].into_iter().chain([0xc0]).collect(), // nested 200 deep
            vec![0u8; MAX_MESSAGE_BYTES + 1],
            // rooms holding something that is no room name: refused, not widened to everyone
            unhex("93a7656d697474657283a47479706502a46461746191a178a36e7370a12f81a5726f6f6d7391c3"),
        ];
        for bytes in cases {
            assert!(
                decode(&bytes).is_err(),
                "{:?}",
                &bytes[..bytes.len().min(16)]
            );
        }
    }
}
