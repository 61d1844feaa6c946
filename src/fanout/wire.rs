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
//! Room lists (`rooms` and `except` in broadcasts, requests and queries, the rooms a remote
//! join or leave names) are all read by one policy, as the JavaScript adapter reads them into
//! a `Set`: missing or null is the empty list; strings and integers are names, duplicates kept
//! once; anything else, or more than [`MAX_ROOMS`] names, refuses the whole message, since
//! dropping an entry would widen what it reaches.
//!
//! Encoding follows notepack.io (the JavaScript packages' encoder): maps and arrays in the
//! smallest form, integral numbers as integers, other numbers as float64, so that what we
//! publish is byte for byte what the JavaScript emitter publishes (checked against the
//! captures in `shared/reference/redis-wire-captures`).

use indexmap::IndexMap;
use rmpv::Value as Mp;
use serde_json::{Number, Value};

use crate::args::Arg;

/// The default channel prefix (the JavaScript packages' `key` option).
pub const DEFAULT_KEY: &str = "socket.io";
/// The uid of emitters.
pub const EMITTER_UID: &str = "emitter";
/// The largest message decoded (2 MiB, twice the largest message a client may send);
/// bigger ones are refused (and logged by the caller).
pub const MAX_MESSAGE_BYTES: usize = 2 << 20;
/// The most values (scalars, strings, arrays, maps, map keys) one message may hold.
/// MessagePack spends as little as one byte on a value, which decodes to 112 (its node and
/// its JSON copy), so the byte bound alone lets a 2 MiB message of nils decode to hundreds of
/// megabytes. 512 Ki values let through a full 2 MiB message averaging 4 bytes a value or
/// more: records of named fields (about 6.5 bytes a value), float64 numbers (9), text.
pub const MAX_VALUES: usize = 512 << 10;
/// The most memory one message may decode to, as estimated before decoding: for each value
/// its MessagePack node and its JSON copy (they live together while a message is converted),
/// plus string bytes (twice) and map entries. A 2 MiB message of records decodes to about
/// 45 MB, one of float64 numbers to about 26 MB; [`MAX_VALUES`] values cost 56 MiB, so what
/// this bound refuses on its own are messages made mostly of map entries, which cost the most.
/// An instance decodes its messages one at a time, so this roughly bounds its decoding peak.
pub const MAX_DECODED_BYTES: usize = 64 << 20;
/// The deepest an argument may nest: 64 arrays or maps one in another, each level counted
/// once (`[[1]]` nests 2 deep, `1` none). A message holding a deeper one is refused, and the
/// senders (`send`, the [`Emitter`](crate::fanout::Emitter), the
/// [`RedisAdapter`](crate::fanout::RedisAdapter)) refuse to publish one, with an error, rather
/// than have every receiver drop it.
pub const MAX_DEPTH: usize = 64;
/// The levels a message takes around its arguments: `[uid, {data: [event, ...args]}, opts]`
/// (and a request's `{data: [...]}` or `{opts: {rooms: [...]}}`, within the same). Another
/// wire passes its own to [`decode_message_within`].
const ENVELOPE_DEPTH: usize = 3;
/// Socket.IO packet type EVENT.
const EVENT: u64 = 2;
/// Socket.IO packet type BINARY_EVENT.
const BINARY_EVENT: u64 = 5;

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
    /// The event's arguments (binary ones travel as MessagePack `bin`, as notepack.io writes a
    /// `Buffer`).
    pub args: Vec<Arg>,
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
    pub fn of_send(req: crate::OutboundMessage) -> Self {
        Self {
            uid: EMITTER_UID.to_owned(),
            nsp: req.nsp().to_owned(),
            rooms: req.room().map(|r| vec![r.to_owned()]).unwrap_or_default(),
            event: req.topic,
            args: req.args.into_vec(),
            except: Vec::new(),
            flags: Flags {
                compress: Some(req.compress),
                volatile: req.volatile.then_some(true),
            },
        }
    }

    /// Refuses, before it is published, a broadcast that every receiving instance would
    /// refuse (a room list over [`MAX_ROOMS`]): it would reach no one, the publisher's own
    /// sockets included, while the publish succeeded.
    /// Refuses, as well, arguments the receivers could not deliver as sent: nested deeper
    /// than [`MAX_DEPTH`], or holding a string with a lone surrogate (which MessagePack cannot
    /// carry to JavaScript members: see [`Arg::Utf16`]).
    pub(crate) fn check_publishable(&self) -> Result<(), WireError> {
        check_room_count("opts.rooms", &self.rooms)?;
        check_room_count("opts.except", &self.except)?;
        check_args(&self.args)
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

impl Request {
    /// [`Broadcast::check_publishable`] for a request.
    pub(crate) fn check_publishable(&self) -> Result<(), WireError> {
        if let RemoteOp::Join(rooms) | RemoteOp::Leave(rooms) = &self.op {
            check_room_count("rooms", rooms)?;
        }
        check_room_count("opts.rooms", &self.rooms)?;
        check_room_count("opts.except", &self.except)
    }
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

/// Decodes a request (JSON text, or MessagePack as the adapter also accepts), within the same
/// bounds as broadcasts. `Ok(None)` for the other request types (questions: [`decode_query`];
/// server-side emits and acknowledged broadcasts:
/// [`decode_fleet_request`](crate::fanout::fleet_wire::decode_fleet_request); requests aimed
/// at one socket id of another adapter, which only adapters of older versions send).
pub fn decode_request(bytes: &[u8]) -> Result<Option<Request>, WireError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(WireError(format!(
            "request of {} bytes is over the bound",
            bytes.len()
        )));
    }
    let value: Value = if bytes.first() == Some(&b'{') {
        check_json(bytes, ENVELOPE_DEPTH)
            .map_err(|e| WireError(format!("request refused: {e}")))?;
        serde_json::from_slice(bytes).map_err(|e| WireError(format!("not JSON: {e}")))?
    } else {
        let mp = read_msgpack(bytes).map_err(|e| WireError(format!("request refused: {e}")))?;
        mp_to_arg(&mp)?
            .to_json()
            .ok_or_else(|| WireError("a request holding binary data".into()))?
    };
    let Some(kind) = value.get("type").and_then(Value::as_u64) else {
        return Err(WireError("a request without a type".into()));
    };
    let Some(opts) = value.get("opts").filter(|o| o.is_object()) else {
        return Ok(None);
    };
    let op = match kind {
        2 => RemoteOp::Join(room_list(value.get("rooms"), "rooms")?),
        3 => RemoteOp::Leave(room_list(value.get("rooms"), "rooms")?),
        4 => RemoteOp::Disconnect {
            close: value.get("close").and_then(Value::as_bool).unwrap_or(false),
        },
        _ => return Ok(None),
    };
    Ok(Some(Request {
        uid: value.get("uid").and_then(Value::as_str).map(str::to_owned),
        op,
        rooms: room_list(opts.get("rooms"), "opts.rooms")?,
        except: room_list(opts.get("except"), "opts.except")?,
    }))
}

/// Decodes any message of the request and response channels (JSON text when it starts with
/// `{`, MessagePack otherwise, as the JavaScript adapter tells them apart) to one value,
/// within the same bounds as broadcasts; `what` names it in errors.
pub(crate) fn decode_message(bytes: &[u8], what: &str) -> Result<Arg, WireError> {
    decode_message_within(bytes, what, ENVELOPE_DEPTH)
}

/// [`decode_message`] for a wire that puts its arguments `envelope` levels deep (arrays and
/// maps around them), rather than this one's 3: the message may nest [`MAX_DEPTH`] levels
/// more. What nests within that bound is for the caller to check argument by argument
/// ([`check_args`]) where its arguments sit less deep.
pub(crate) fn decode_message_within(
    bytes: &[u8],
    what: &str,
    envelope: usize,
) -> Result<Arg, WireError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(WireError(format!(
            "{what} of {} bytes is over the bound",
            bytes.len()
        )));
    }
    if bytes.first() == Some(&b'{') {
        check_json(bytes, envelope).map_err(|e| WireError(format!("{what} refused: {e}")))?;
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| WireError(format!("not JSON: {e}")))?;
        Ok(Arg::from(value))
    } else {
        let mp = read_msgpack_within(bytes, envelope)
            .map_err(|e| WireError(format!("{what} refused: {e}")))?;
        mp_to_arg(&mp)
    }
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

/// Decodes a query (JSON, as adapters send them) with its asker's uid, within the same bounds
/// as requests. `Ok(None)` for anything that is not a query this crate answers (no
/// `requestId`, another type, MessagePack); an error for text over the bounds or a room list
/// that the room-list policy (in the [module docs](self)) refuses: answered, a target list
/// read wrongly would name sockets the asker did not ask for.
pub fn decode_query(bytes: &[u8]) -> Result<Option<(Option<String>, Query)>, WireError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(WireError(format!(
            "query of {} bytes is over the bound",
            bytes.len()
        )));
    }
    // Adapters send their queries as JSON text; MessagePack ones are not answered.
    if bytes.first() != Some(&b'{') {
        return Ok(None);
    }
    check_json(bytes, ENVELOPE_DEPTH).map_err(|e| WireError(format!("query refused: {e}")))?;
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return Ok(None);
    };
    let Some(request_id) = value.get("requestId").and_then(Value::as_str) else {
        return Ok(None);
    };
    let request_id = request_id.to_owned();
    let query = match value.get("type").and_then(Value::as_u64) {
        Some(0) => Query::Sockets {
            request_id,
            rooms: room_list(value.get("rooms"), "rooms")?,
        },
        Some(1) => Query::AllRooms { request_id },
        Some(5) => {
            let opts = value.get("opts");
            Query::Fetch {
                request_id,
                rooms: room_list(opts.and_then(|o| o.get("rooms")), "opts.rooms")?,
                except: room_list(opts.and_then(|o| o.get("except")), "opts.except")?,
            }
        }
        _ => return Ok(None),
    };
    let uid = value.get("uid").and_then(Value::as_str).map(str::to_owned);
    Ok(Some((uid, query)))
}

/// The channel a broadcast to `rooms` in `nsp` is published on.
pub fn channel(key: &str, nsp: &str, rooms: &[String]) -> String {
    match rooms {
        [room] => format!("{key}#{nsp}#{room}#"),
        _ => format!("{key}#{nsp}#"),
    }
}

/// The pattern a node subscribes to for the broadcasts of `nsp` (glob characters of the key
/// and the namespace escaped, so that `/a*` covers itself only).
pub fn pattern(key: &str, nsp: &str) -> String {
    format!("{}#*", glob_literal(&format!("{key}#{nsp}")))
}

/// `text` as a Redis glob pattern matching only itself.
pub(crate) fn glob_literal(text: &str) -> String {
    let mut literal = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            literal.push('\\');
        }
        literal.push(c);
    }
    literal
}

/// Encodes a broadcast as the JavaScript packages do.
pub fn encode(b: &Broadcast) -> Vec<u8> {
    let mut data = Vec::with_capacity(b.args.len() + 1);
    data.push(Mp::from(b.event.as_str()));
    data.extend(b.args.iter().map(arg_to_mp));
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

/// Decodes a broadcast, refusing what is not one (too big in bytes, in values or decoded,
/// nested too deep, truncated, not MessagePack, not an EVENT packet); its arguments read as
/// a Node member delivers them: dates as their ISO 8601 text, bad UTF-8 as U+FFFD.
pub fn decode(bytes: &[u8]) -> Result<Broadcast, WireError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(WireError(format!(
            "message of {} bytes is over the {MAX_MESSAGE_BYTES}-byte bound",
            bytes.len()
        )));
    }
    let value = read_msgpack(bytes).map_err(|e| WireError(format!("message refused: {e}")))?;
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
    // The JavaScript packages publish EVENT whatever the data; BINARY_EVENT is taken too.
    if kind != Some(EVENT) && kind != Some(BINARY_EVENT) {
        return Err(WireError(format!("packet type {kind:?} is not an EVENT")));
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
    let args = data.map(mp_to_arg).collect::<Result<Vec<_>, _>>()?;

    let flags = field(&opts, "flags");
    let flag = |name: &str| flags.and_then(|f| field(f, name)).and_then(Mp::as_bool);
    Ok(Broadcast {
        uid,
        nsp,
        event,
        args,
        rooms: room_list(field(&opts, "rooms"), "opts.rooms")?,
        except: room_list(field(&opts, "except"), "opts.except")?,
        flags: Flags {
            compress: flag("compress"),
            volatile: flag("volatile"),
        },
    })
}

/// The most names one room list may hold, as sent (duplicates included); a list over it is
/// refused whole, and [`Emitter`](crate::fanout::Emitter) refuses to publish one. The
/// JavaScript packages set no bound; this one is far above what one message addresses in
/// practice (a send names one room, the `RoomsLayer` lets a socket be in 1,000), and keeps a
/// single remote join from giving every targeted socket hundreds of thousands of rooms, which
/// the byte and value bounds alone would let through.
pub const MAX_ROOMS: usize = 10_000;

/// What [`room_list`] sees of a decoded value, MessagePack or JSON: the kind of value, and
/// nothing of the policy.
pub(crate) enum Shape<'a, V> {
    /// Nil, or JSON `null`.
    Null,
    List(&'a [V]),
    /// A string; `None` when its bytes are not UTF-8 (MessagePack only).
    Text(Option<&'a str>),
    /// An integer, as its decimal text.
    Integer(String),
    /// Anything else, named for the error message.
    Other(&'static str),
}

impl<V> Shape<'_, V> {
    fn kind(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::List(_) => "an array",
            Self::Text(_) => "a string",
            Self::Integer(_) => "an integer",
            Self::Other(kind) => kind,
        }
    }
}

/// A decoded value a room list may come in.
pub(crate) trait RoomListValue: Sized {
    fn shape(&self) -> Shape<'_, Self>;
}

impl RoomListValue for Mp {
    fn shape(&self) -> Shape<'_, Self> {
        match self {
            Mp::Nil => Shape::Null,
            Mp::Array(items) => Shape::List(items),
            Mp::String(s) => Shape::Text(s.as_str()),
            Mp::Integer(i) => Shape::Integer(i.to_string()),
            Mp::Boolean(_) => Shape::Other("a boolean"),
            Mp::F32(_) | Mp::F64(_) => Shape::Other("a floating-point number"),
            Mp::Binary(_) => Shape::Other("binary data"),
            Mp::Map(_) => Shape::Other("a map"),
            Mp::Ext(..) => Shape::Other("an extension value"),
        }
    }
}

impl RoomListValue for Value {
    fn shape(&self) -> Shape<'_, Self> {
        match self {
            Value::Null => Shape::Null,
            Value::Array(items) => Shape::List(items),
            Value::String(s) => Shape::Text(Some(s)),
            Value::Number(n) if n.is_i64() || n.is_u64() => Shape::Integer(n.to_string()),
            Value::Number(_) => Shape::Other("a floating-point number"),
            Value::Bool(_) => Shape::Other("a boolean"),
            Value::Object(_) => Shape::Other("a map"),
        }
    }
}

impl RoomListValue for Arg {
    fn shape(&self) -> Shape<'_, Self> {
        match self {
            Arg::Null => Shape::Null,
            Arg::Array(items) => Shape::List(items),
            Arg::String(s) => Shape::Text(Some(s)),
            // A lone surrogate: no UTF-8 room name.
            Arg::Utf16(_) => Shape::Text(None),
            Arg::Number(n) if n.is_i64() || n.is_u64() => Shape::Integer(n.to_string()),
            Arg::Number(_) => Shape::Other("a floating-point number"),
            Arg::Bool(_) => Shape::Other("a boolean"),
            Arg::Binary(_) => Shape::Other("binary data"),
            Arg::Object(_) => Shape::Other("a map"),
        }
    }
}

/// Reads a list of room names (or socket ids) from the wire: the one policy for every list,
/// `rooms` and `except` of broadcasts, of remote joins, leaves and disconnects and of queries,
/// and the rooms a remote join or leave names.
///
/// Accepted, as the JavaScript adapter reads a list into `new Set(list)`:
/// - a missing field, nil or `null`: the empty list (JavaScript's `new Set(undefined)`),
///   which the caller reads as the JavaScript adapter does: every socket for a target list,
///   nobody for `except`, nothing to join or leave;
/// - an array (empty included) of strings, any UTF-8 text, the empty string too (a name no
///   socket is in matches nobody), and of integers, as their decimal text (JavaScript rooms
///   may be numbers, `String(42)` is `"42"`);
/// - duplicates, kept once, in the order of their first occurrence (a `Set`).
///
/// Refused, with the whole message, never by dropping the entry: dropping would widen what
/// the message reaches (a target list that loses its only entry targets every socket, an
/// `except` list that loses one reaches sockets meant to be left out):
/// - a value that is not an array: a string (JavaScript would take it letter by letter), a
///   number or a map (`new Set(..)` throws on them);
/// - entries that are no room name: null, booleans, floating-point numbers, binary data,
///   arrays, maps, extension values (dates), strings that are not UTF-8;
/// - more than [`MAX_ROOMS`] entries.
pub(crate) fn room_list<V: RoomListValue>(
    value: Option<&V>,
    name: &str,
) -> Result<Vec<String>, WireError> {
    let items = match value.map(V::shape) {
        None | Some(Shape::Null) => return Ok(Vec::new()),
        Some(Shape::List(items)) => items,
        Some(other) => {
            return Err(WireError(format!(
                "{name} is {}, not a list of room names",
                other.kind()
            )));
        }
    };
    if items.len() > MAX_ROOMS {
        return Err(WireError(format!(
            "{name} lists {} rooms, over the bound of {MAX_ROOMS}",
            items.len()
        )));
    }
    let names = items
        .iter()
        .enumerate()
        .map(|(i, item)| match item.shape() {
            Shape::Text(Some(text)) => Ok(text.to_owned()),
            Shape::Integer(digits) => Ok(digits),
            Shape::Text(None) => Err(WireError(format!(
                "{name}[{i}] is a string that is not UTF-8"
            ))),
            other => Err(WireError(format!(
                "{name}[{i}] is {}, not a room name",
                other.kind()
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if names.len() < 2 {
        return Ok(names);
    }
    Ok(names
        .into_iter()
        .collect::<indexmap::IndexSet<_>>()
        .into_iter()
        .collect())
}

/// The sender's side of [`room_list`]'s bound: a list the receivers would refuse.
fn check_room_count(name: &str, rooms: &[String]) -> Result<(), WireError> {
    if rooms.len() > MAX_ROOMS {
        return Err(WireError(format!(
            "{name} lists {} rooms, over the bound of {MAX_ROOMS}",
            rooms.len()
        )));
    }
    Ok(())
}

fn field<'a>(map: &'a Mp, name: &str) -> Option<&'a Mp> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(_, v)| v)
}

/// An argument to MessagePack, numbers as notepack.io writes JavaScript numbers, binary data
/// as `bin` (a `Buffer`). A string with a lone surrogate ([`Arg::Utf16`]) is written with
/// U+FFFD in place of each lone surrogate, as Node's UTF-8 encoder writes it; the publishing
/// paths never get there, [`Broadcast::check_publishable`] refuses such a string first.
pub(crate) fn arg_to_mp(v: &Arg) -> Mp {
    match v {
        Arg::Null => Mp::Nil,
        Arg::Bool(b) => Mp::from(*b),
        Arg::Number(n) => {
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
        Arg::String(s) => Mp::from(s.as_str()),
        Arg::Utf16(units) => Mp::from(String::from_utf16_lossy(units)),
        Arg::Binary(b) => Mp::Binary(b.to_vec()),
        Arg::Array(items) => Mp::Array(items.iter().map(arg_to_mp).collect()),
        Arg::Object(map) => Mp::Map(
            map.iter()
                .map(|(k, v)| (Mp::from(k.as_str()), arg_to_mp(v)))
                .collect(),
        ),
    }
}

/// MessagePack to an argument, as a Node member decodes it (notepack.io) and then sends it to
/// its clients (`JSON.stringify`, binary data as attachments):
/// - a string that is not UTF-8 has each bad sequence replaced with U+FFFD, as Node's
///   `buffer.toString('utf8')` does (Rust's lossy decoding replaces the same sequences);
/// - a timestamp (extension type -1, 4, 8 or 12 bytes) is a `Date`: see [`timestamp`];
/// - another extension type `t` is notepack's `[t, Buffer]`; type 0 (notepack's old
///   encodings of `undefined`, of dates and of `ArrayBuffer`s, told apart by the marker, which
///   is not kept here) and a timestamp of another length (notepack reads 12 bytes past it)
///   are refused.
pub(crate) fn mp_to_arg(v: &Mp) -> Result<Arg, WireError> {
    Ok(match v {
        Mp::Nil => Arg::Null,
        Mp::Boolean(b) => Arg::Bool(*b),
        Mp::Integer(i) => i
            .as_u64()
            .map(Arg::from)
            .or_else(|| i.as_i64().map(Arg::from))
            .unwrap_or(Arg::Null),
        Mp::F32(f) => Number::from_f64(f64::from(*f)).map_or(Arg::Null, Arg::Number),
        Mp::F64(f) => Number::from_f64(*f).map_or(Arg::Null, Arg::Number),
        Mp::String(s) => Arg::String(text(s)),
        Mp::Binary(b) => Arg::Binary(b.clone().into()),
        Mp::Array(items) => Arg::Array(items.iter().map(mp_to_arg).collect::<Result<_, _>>()?),
        Mp::Map(entries) => {
            let mut map = IndexMap::with_capacity(entries.len());
            for (k, v) in entries {
                let key = match k {
                    Mp::String(s) => text(s),
                    other => other.to_string(),
                };
                map.insert(key, mp_to_arg(v)?);
            }
            Arg::Object(map)
        }
        Mp::Ext(-1, bytes) if matches!(bytes.len(), 4 | 8 | 12) => timestamp(bytes),
        Mp::Ext(-1, bytes) if !matches!(bytes.len(), 1 | 2 | 16) => {
            return Err(WireError(format!("a timestamp of {} bytes", bytes.len())));
        }
        Mp::Ext(0, _) => {
            return Err(WireError("extension type 0 is not supported".into()));
        }
        Mp::Ext(kind, bytes) => Arg::Array(vec![
            Arg::from(i64::from(*kind)),
            Arg::Binary(bytes.clone().into()),
        ]),
    })
}

/// A MessagePack string's text, bad UTF-8 replaced as Node replaces it.
fn text(s: &rmpv::Utf8String) -> String {
    match s.as_str() {
        Some(text) => text.to_owned(),
        None => String::from_utf8_lossy(s.as_bytes()).into_owned(),
    }
}

/// The MessagePack timestamp extension (32, 64 or 96 bits) as a Node member delivers it:
/// notepack.io decodes it to `new Date(seconds * 1e3 + nanoseconds / 1e6)`, computed here in
/// the same doubles (so the same rounding, the fraction of a millisecond then cut toward zero
/// as `Date` does), and socket.io sends a `Date` as `JSON.stringify` does: its
/// `toISOString()` for any epoch, before 1970 and past 9999 too, or `null` for a time outside
/// what a `Date` holds (8.64e15 ms either side of 1970).
fn timestamp(bytes: &[u8]) -> Arg {
    let word = |at: usize| {
        let four: [u8; 4] = bytes[at..at + 4].try_into().expect("four bytes");
        u32::from_be_bytes(four)
    };
    const TWO_32: f64 = 4_294_967_296.0;
    let millis = match bytes.len() {
        4 => f64::from(word(0)) * 1e3,
        8 => {
            let (hi, lo) = (word(0), word(4));
            let seconds = f64::from(hi & 0x3) * TWO_32 + f64::from(lo);
            seconds * 1e3 + f64::from(hi >> 2) / 1e6
        }
        _ => {
            let (nanos, hi, lo) = (word(0), word(4).cast_signed(), word(8));
            (f64::from(hi) * TWO_32 + f64::from(lo)) * 1e3 + f64::from(nanos) / 1e6
        }
    };
    // ECMAScript's TimeClip: a time out of range is an invalid Date, which JSON writes `null`.
    if !millis.is_finite() || millis.abs() > 8.64e15 {
        return Arg::Null;
    }
    Arg::String(crate::clock::iso_of_millis(millis.trunc() as i64))
}

/// Refuses arguments the receivers could not deliver as sent (see
/// [`Broadcast::check_publishable`]).
pub(crate) fn check_args(args: &[Arg]) -> Result<(), WireError> {
    /// What is wrong within `arg`, found no deeper than one level past the bound, so that a
    /// value of any depth is checked on a bounded stack.
    fn check(arg: &Arg, depth: usize) -> Result<(), String> {
        match arg {
            Arg::Array(_) | Arg::Object(_) if depth == MAX_DEPTH => Err(format!(
                "nests deeper than {MAX_DEPTH} levels, which the receivers refuse"
            )),
            Arg::Array(items) => items.iter().try_for_each(|v| check(v, depth + 1)),
            Arg::Object(entries) => entries.values().try_for_each(|v| check(v, depth + 1)),
            Arg::Utf16(_) => Err(
                "holds a string with a lone surrogate, which MessagePack cannot \
                 carry to JavaScript members (notepack.io decodes none)"
                    .into(),
            ),
            _ => Ok(()),
        }
    }
    for (i, arg) in args.iter().enumerate() {
        check(arg, 0).map_err(|e| WireError(format!("argument {i} {e}")))?;
    }
    Ok(())
}

/// What one decoded value costs at least: its MessagePack node and its copy as an argument.
const VALUE_COST: usize = size_of::<Mp>() + size_of::<Arg>();
/// What a map entry costs beyond its key and value: the JSON map's bucket (hash and key
/// string) and its index.
const ENTRY_COST: usize = size_of::<String>() + 2 * size_of::<usize>();

/// The values a message holds and what they decode to, counted before decoding.
#[derive(Default)]
struct Tally {
    values: usize,
    decoded: usize,
}

impl Tally {
    /// Counts `values` more values and `bytes` more decoded bytes, refusing the message as
    /// soon as it goes over a bound.
    fn add(&mut self, values: usize, bytes: usize) -> Result<(), WireError> {
        self.values = self.values.saturating_add(values);
        self.decoded = self.decoded.saturating_add(bytes);
        if self.values > MAX_VALUES {
            return Err(WireError(format!(
                "holds at least {} values, over the bound of {MAX_VALUES}",
                self.values
            )));
        }
        if self.decoded > MAX_DECODED_BYTES {
            return Err(WireError(format!(
                "decodes to at least {} bytes, over the bound of {MAX_DECODED_BYTES}",
                self.decoded
            )));
        }
        Ok(())
    }
}

/// What a MessagePack marker announces.
enum Head {
    /// A value of this many bytes after the marker (nil, booleans, numbers).
    Scalar(usize),
    /// A string of this many bytes.
    Str(usize),
    /// Binary or extension data of this many bytes (the extension's type byte included).
    Bytes(usize),
    Array(usize),
    Map(usize),
}

/// The big-endian length of `n` bytes at `at`.
fn length(bytes: &[u8], at: usize, n: usize) -> Result<usize, WireError> {
    let field = bytes
        .get(at..at + n)
        .ok_or_else(|| WireError("truncated in a length".into()))?;
    Ok(field.iter().fold(0, |acc, b| (acc << 8) | usize::from(*b)))
}

/// Reads the marker at `at` (and the length after it): what it announces, and where its
/// content starts.
fn head(bytes: &[u8], at: usize) -> Result<(Head, usize), WireError> {
    let marker = *bytes
        .get(at)
        .ok_or_else(|| WireError("truncated: a value is missing".into()))?;
    let at = at + 1;
    let sized = |n: usize, make: fn(usize) -> Head| Ok((make(length(bytes, at, n)?), at + n));
    match marker {
        0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => Ok((Head::Scalar(0), at)),
        0x80..=0x8f => Ok((Head::Map(usize::from(marker & 0x0f)), at)),
        0x90..=0x9f => Ok((Head::Array(usize::from(marker & 0x0f)), at)),
        0xa0..=0xbf => Ok((Head::Str(usize::from(marker & 0x1f)), at)),
        0xc4 => sized(1, Head::Bytes),
        0xc5 => sized(2, Head::Bytes),
        0xc6 => sized(4, Head::Bytes),
        // Extensions: the length, then a type byte, then the data.
        0xc7 => sized(1, |n| Head::Bytes(n + 1)),
        0xc8 => sized(2, |n| Head::Bytes(n + 1)),
        0xc9 => sized(4, |n| Head::Bytes(n + 1)),
        0xca => Ok((Head::Scalar(4), at)),
        0xcb => Ok((Head::Scalar(8), at)),
        0xcc..=0xcf => Ok((Head::Scalar(1 << (marker - 0xcc)), at)),
        0xd0..=0xd3 => Ok((Head::Scalar(1 << (marker - 0xd0)), at)),
        0xd4..=0xd8 => Ok((Head::Bytes(1 + (1 << (marker - 0xd4))), at)),
        0xd9 => sized(1, Head::Str),
        0xda => sized(2, Head::Str),
        0xdb => sized(4, Head::Str),
        0xdc => sized(2, Head::Array),
        0xdd => sized(4, Head::Array),
        0xde => sized(2, Head::Map),
        0xdf => sized(4, Head::Map),
        0xc1 => Err(WireError("marker 0xc1 is never used".into())),
    }
}

/// The first MessagePack value of `bytes`, once [`check_msgpack`] let it through.
pub(crate) fn read_msgpack(bytes: &[u8]) -> Result<Mp, WireError> {
    read_msgpack_within(bytes, ENVELOPE_DEPTH)
}

/// [`read_msgpack`] for a message whose arguments sit `envelope` levels deep.
fn read_msgpack_within(bytes: &[u8], envelope: usize) -> Result<Mp, WireError> {
    check_msgpack(bytes, envelope)?;
    // rmpv counts two levels for each array or map and three for a string, binary or
    // extension value; the walk has bounded the nesting already, one level each.
    let max_depth = 2 * (MAX_DEPTH + envelope) + 3;
    let mut reader = bytes;
    rmpv::decode::read_value_with_max_depth(&mut reader, max_depth)
        .map_err(|e| WireError(format!("not MessagePack: {e}")))
}

/// Walks the first MessagePack value of `bytes` without building anything, and refuses it
/// when it holds more than [`MAX_VALUES`] values, would decode to more than
/// [`MAX_DECODED_BYTES`], nests arrays and maps deeper than [`MAX_DEPTH`] levels within its
/// envelope, or announces more than there is: the decoder would find that out only after
/// building it. Each value takes at least one byte, so the walk is linear.
fn check_msgpack(bytes: &[u8], envelope: usize) -> Result<(), WireError> {
    let mut tally = Tally::default();
    tally.add(1, VALUE_COST)?;
    // The values announced but not yet read: each element, map key and map value.
    let mut pending: usize = 1;
    // The values still to read in each array or map open around the next value, innermost
    // last.
    let mut open: Vec<usize> = Vec::new();
    let mut at = 0;
    while pending > 0 {
        pending -= 1;
        if let Some(left) = open.last_mut() {
            *left -= 1;
        }
        let (head, start) = head(bytes, at)?;
        if let Head::Array(_) | Head::Map(_) = head
            && open.len() == MAX_DEPTH + envelope
        {
            return Err(WireError(format!(
                "nests deeper than {MAX_DEPTH} levels within its envelope"
            )));
        }
        let left = bytes.len() - start;
        // What the value takes on the wire after its head, the values it announces, and
        // what decoding them costs.
        let (skip, announced, cost) = match head {
            Head::Scalar(n) => (n, 0, 0),
            // Kept twice: the MessagePack string and its JSON copy.
            Head::Str(n) => (n, 0, n.saturating_mul(2)),
            Head::Bytes(n) => (n, 0, n),
            Head::Array(n) => (0, n, n.saturating_mul(VALUE_COST)),
            Head::Map(n) => (
                0,
                n.saturating_mul(2),
                n.saturating_mul(2 * VALUE_COST + ENTRY_COST),
            ),
        };
        if skip > left {
            return Err(WireError(format!(
                "a value announces {skip} bytes where {left} are left"
            )));
        }
        tally.add(announced, cost)?;
        pending = pending.saturating_add(announced);
        if pending > left - skip {
            return Err(WireError(format!(
                "{pending} values announced where {} bytes are left",
                left - skip
            )));
        }
        if let Head::Array(_) | Head::Map(_) = head {
            open.push(announced);
        }
        while open.last() == Some(&0) {
            open.pop();
        }
        at = start + skip;
    }
    Ok(())
}

/// The JSON counterpart of [`check_msgpack`], for requests: counts the values of JSON text in
/// one pass without parsing it. A value starts at the first byte after `[`, `{`, `,`, `:` or
/// the start that is neither blank nor a closing bracket (object keys count as values); for
/// text that is not JSON, what is counted is at least what the parser builds before failing.
fn check_json(bytes: &[u8], envelope: usize) -> Result<(), WireError> {
    const JSON_VALUE_COST: usize = size_of::<Value>();
    let mut tally = Tally::default();
    let mut expect_value = true;
    // The arrays and objects open here, bounded as in MessagePack.
    let mut depth: usize = 0;
    let mut rest = bytes.iter();
    while let Some(&b) = rest.next() {
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => continue,
            b',' => {
                expect_value = true;
                continue;
            }
            b':' => {
                tally.add(0, ENTRY_COST)?;
                expect_value = true;
                continue;
            }
            b']' | b'}' => {
                expect_value = false;
                depth = depth.saturating_sub(1);
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH + envelope {
                    return Err(WireError(format!(
                        "nests deeper than {MAX_DEPTH} levels within its envelope"
                    )));
                }
            }
            _ => {}
        }
        if expect_value {
            tally.add(1, JSON_VALUE_COST)?;
        }
        expect_value = matches!(b, b'[' | b'{');
        if b == b'"' {
            let mut len = 0;
            while let Some(&c) = rest.next() {
                match c {
                    b'"' => break,
                    // The escaped byte is part of the string, even a quote.
                    b'\\' => {
                        rest.next();
                    }
                    _ => {}
                }
                len += 1;
            }
            tally.add(0, len)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_send_becomes_the_emitter_broadcast_with_its_flags() {
        let plain = Broadcast::of_send(crate::OutboundMessage::to(
            "room-a",
            "news",
            json!({"n": 1}),
        ));
        assert_eq!(plain.uid, EMITTER_UID);
        assert_eq!(plain.nsp, "/");
        assert_eq!(plain.rooms, ["room-a"]);
        assert_eq!(plain.event, "news");
        assert_eq!(plain.args, [json!({"n": 1})]);
        assert_eq!(plain.flags.compress, Some(true));
        assert_eq!(plain.flags.volatile, None);
        let volatile =
            Broadcast::of_send(crate::OutboundMessage::broadcast("news", json!(1)).volatile());
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
            args: vec![json!({"wire": "room", "n": 1}).into()],
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
        let numbers = Arg::from(json!([1.0, -2.0, 1.5, 300]));
        rmpv::encode::write_value(&mut out, &arg_to_mp(&numbers)).unwrap();
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

    /// A room list under both encodings: the same JSON value, and its MessagePack form.
    fn both(list: Value) -> (Value, Mp) {
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &arg_to_mp(&Arg::from(list.clone()))).unwrap();
        let mp = rmpv::decode::read_value(&mut bytes.as_slice()).unwrap();
        (list, mp)
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn room_lists_read_as_javascript_reads_them_into_a_set() {
        assert_eq!(room_list::<Value>(None, "rooms"), Ok(vec![]), "missing");
        assert_eq!(room_list::<Mp>(None, "rooms"), Ok(vec![]), "missing");
        let cases = [
            (json!(null), vec![]),
            (json!([]), vec![]),
            (json!(["a", "é", ""]), names(&["a", "é", ""])),
            // Integers as their decimal text; duplicates once, where they first appear.
            (
                json!([42, -1, "b", "42", "b", 42]),
                names(&["42", "-1", "b"]),
            ),
            (json!([u64::MAX]), names(&["18446744073709551615"])),
        ];
        for (list, expected) in cases {
            let (json, mp) = both(list.clone());
            assert_eq!(
                room_list(Some(&json), "rooms"),
                Ok(expected.clone()),
                "{list}"
            );
            assert_eq!(
                room_list(Some(&mp), "rooms"),
                Ok(expected),
                "{list} (MessagePack)"
            );
        }
    }

    #[test]
    fn room_lists_holding_what_is_no_room_name_are_refused_whole() {
        let cases = [
            (json!("ab"), "rooms is a string, not a list of room names"),
            (json!(5), "rooms is an integer, not a list of room names"),
            (json!({"a": 1}), "rooms is a map, not a list of room names"),
            (json!(true), "rooms is a boolean, not a list of room names"),
            (json!(["a", null]), "rooms[1] is null, not a room name"),
            (json!([true]), "rooms[0] is a boolean, not a room name"),
            (
                json!(["a", 1.5]),
                "rooms[1] is a floating-point number, not a room name",
            ),
            (json!([["a"]]), "rooms[0] is an array, not a room name"),
            (json!([{"a": 1}]), "rooms[0] is a map, not a room name"),
        ];
        for (list, expected) in cases {
            let (json, mp) = both(list.clone());
            assert_eq!(
                room_list(Some(&json), "rooms"),
                Err(WireError(expected.into()))
            );
            assert_eq!(
                room_list(Some(&mp), "rooms"),
                Err(WireError(expected.into()))
            );
        }
        // What only MessagePack can carry.
        let mp_only = [
            (Mp::Binary(b"a".to_vec()), "binary data"),
            (Mp::Ext(-1, vec![0; 4]), "an extension value"),
            (Mp::F64(2.0), "a floating-point number"),
        ];
        for (item, kind) in mp_only {
            let list = Mp::Array(vec![Mp::from("a"), item]);
            assert_eq!(
                room_list(Some(&list), "opts.except"),
                Err(WireError(format!(
                    "opts.except[1] is {kind}, not a room name"
                )))
            );
        }
        // A one-element array holding a two-byte string that is not UTF-8.
        let not_utf8 = rmpv::decode::read_value(&mut &b"\x91\xa2\xff\xfe"[..]).unwrap();
        assert_eq!(
            room_list(Some(&not_utf8), "rooms"),
            Err(WireError("rooms[0] is a string that is not UTF-8".into()))
        );
    }

    #[test]
    fn room_lists_over_the_bound_are_refused_whole_duplicates_counted() {
        let at_bound: Vec<Value> = (0..MAX_ROOMS).map(|i| json!(format!("r{i}"))).collect();
        let (json, mp) = both(Value::from(at_bound));
        assert_eq!(room_list(Some(&json), "rooms").unwrap().len(), MAX_ROOMS);
        assert_eq!(room_list(Some(&mp), "rooms").unwrap().len(), MAX_ROOMS);
        let over = json!(vec!["same"; MAX_ROOMS + 1]);
        let (json, mp) = both(over);
        let expected = format!("rooms lists 10001 rooms, over the bound of {MAX_ROOMS}");
        assert_eq!(
            room_list(Some(&json), "rooms"),
            Err(WireError(expected.clone()))
        );
        assert_eq!(room_list(Some(&mp), "rooms"), Err(WireError(expected)));
        // The sender refuses what the receivers would.
        let wide = Broadcast {
            except: names(&vec!["x"; MAX_ROOMS + 1]),
            ..Broadcast::of_send(crate::OutboundMessage::broadcast("t", json!(1)))
        };
        assert!(wide.check_publishable().is_err());
        assert!(decode(&encode(&wide)).is_err());
        let join = Request {
            uid: None,
            op: RemoteOp::Join(names(&vec!["x"; MAX_ROOMS + 1])),
            rooms: vec![],
            except: vec![],
        };
        assert_eq!(
            join.check_publishable(),
            Err(WireError(format!(
                "rooms lists 10001 rooms, over the bound of {MAX_ROOMS}"
            )))
        );
        assert!(decode_request(&encode_request(&join)).is_err());
    }

    #[test]
    fn every_decoder_reads_room_lists_by_the_one_policy() {
        let broadcast = |opts: Mp| {
            let message = Mp::Array(vec![
                Mp::from("emitter"),
                Mp::Map(vec![
                    (Mp::from("type"), Mp::from(2)),
                    (Mp::from("data"), Mp::Array(vec![Mp::from("ev")])),
                ]),
                opts,
            ]);
            let mut bytes = Vec::new();
            rmpv::encode::write_value(&mut bytes, &message).unwrap();
            decode(&bytes)
        };
        let b = broadcast(Mp::Map(vec![])).unwrap();
        assert!(b.rooms.is_empty() && b.except.is_empty(), "missing fields");
        let b = broadcast(Mp::Map(vec![
            (Mp::from("rooms"), Mp::Nil),
            (
                Mp::from("except"),
                Mp::Array(vec![Mp::from("a"), Mp::from(7), Mp::from("a")]),
            ),
        ]))
        .unwrap();
        assert!(b.rooms.is_empty());
        assert_eq!(b.except, ["a", "7"]);
        let err = broadcast(Mp::Map(vec![(
            Mp::from("except"),
            Mp::Array(vec![Mp::from("a"), Mp::Binary(vec![1])]),
        )]))
        .unwrap_err();
        assert_eq!(err.0, "opts.except[1] is binary data, not a room name");

        let r = decode_request(br#"{"type":3,"opts":{"rooms":["a","a"]},"rooms":[1,"1"]}"#)
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.op, r.rooms, r.except),
            (RemoteOp::Leave(names(&["1"])), names(&["a"]), vec![])
        );
        let err = decode_request(br#"{"type":4,"opts":{"rooms":"abc"}}"#).unwrap_err();
        assert_eq!(err.0, "opts.rooms is a string, not a list of room names");
        let err = decode_request(br#"{"type":2,"opts":{},"rooms":[null]}"#).unwrap_err();
        assert_eq!(err.0, "rooms[0] is null, not a room name");

        // A query's target list that lost an entry would name sockets nobody asked for.
        let err =
            decode_query(br#"{"requestId":"r","type":5,"opts":{"rooms":[1.5]}}"#).unwrap_err();
        assert_eq!(
            err.0,
            "opts.rooms[0] is a floating-point number, not a room name"
        );
        let err = decode_query(br#"{"requestId":"r","type":0,"rooms":{"a":1}}"#).unwrap_err();
        assert_eq!(err.0, "rooms is a map, not a list of room names");
        assert_eq!(
            decode_query(br#"{"requestId":"r","type":5}"#),
            Ok(Some((
                None,
                Query::Fetch {
                    request_id: "r".into(),
                    rooms: vec![],
                    except: vec![]
                }
            ))),
            "no opts: every socket, none left out"
        );
    }

    #[test]
    fn decodes_the_adapter_s_queries() {
        let fetch =
            br#"{"uid":"_wMPCC","requestId":"r1","type":5,"opts":{"rooms":["a"],"except":["b"]}}"#;
        assert_eq!(
            decode_query(fetch),
            Ok(Some((
                Some("_wMPCC".to_owned()),
                Query::Fetch {
                    request_id: "r1".into(),
                    rooms: vec!["a".into()],
                    except: vec!["b".into()]
                }
            )))
        );
        assert_eq!(
            decode_query(br#"{"uid":"u","requestId":"r2","type":1}"#),
            Ok(Some((
                Some("u".to_owned()),
                Query::AllRooms {
                    request_id: "r2".into()
                }
            )))
        );
        assert_eq!(
            decode_query(br#"{"uid":"u","type":1}"#),
            Ok(None),
            "no requestId"
        );
        assert_eq!(
            decode_query(br#"{"requestId":"r","type":6}"#),
            Ok(None),
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

    /// MessagePack: an array header for `n` values (0xdd and a 32-bit length).
    fn array32(n: u32) -> Vec<u8> {
        let mut out = vec![0xdd];
        out.extend(n.to_be_bytes());
        out
    }

    /// `[uid, {type, data: [event, arg], nsp}, {}]` around an argument already encoded.
    fn broadcast_of(arg: &[u8]) -> Vec<u8> {
        let mut out = b"\x93\xa7emitter\x83\xa4type\x02\xa4data\x92\xa2ev".to_vec();
        out.extend(arg);
        out.extend(b"\xa3nsp\xa1/\x80");
        out
    }

    /// Refused within a bound of time: the walk is linear and allocates only its nesting bound.
    fn refused_quickly(what: &str, result: Result<impl std::fmt::Debug, WireError>) -> String {
        let err = match result {
            Ok(v) => panic!("{what}: decoded to {v:?}"),
            Err(e) => e.0,
        };
        assert!(err.contains("refused"), "{what}: {err}");
        err
    }

    #[test]
    fn inflating_messages_are_refused_before_decoding() {
        let started = std::time::Instant::now();
        // 2M nils: 2 MB on the wire, 224 MB decoded (and more while being delivered).
        let mut nils = array32(2_000_000);
        nils.resize(nils.len() + 2_000_000, 0xc0);
        assert!(nils.len() <= MAX_MESSAGE_BYTES);
        let err = refused_quickly("nils", decode(&nils));
        assert!(
            err.contains("2000001 values, over the bound of 524288"),
            "{err}"
        );
        refused_quickly("nils as an argument", decode(&broadcast_of(&nils)));
        refused_quickly("nils as a request", decode_request(&nils));
        // Nested empty arrays: [[], [], ...] and [[[[...]]]] (no more than 64 deep: the
        // nesting bound would refuse it too).
        let mut empties = array32(1_000_000);
        empties.resize(empties.len() + 1_000_000, 0x90);
        refused_quickly("empty arrays", decode(&broadcast_of(&empties)));
        // [[[], [], ... 15], ...]: 100,000 arrays of 15 empty arrays, 1.6 MB.
        let mut nested = array32(100_000);
        for _ in 0..100_000 {
            nested.push(0x9f);
            nested.extend([0x90; 15]);
        }
        refused_quickly("nested empty arrays", decode(&broadcast_of(&nested)));
        // A map of 500k nil -> nil pairs.
        let mut map = vec![0xdf];
        map.extend(500_000u32.to_be_bytes());
        map.resize(map.len() + 1_000_000, 0xc0);
        let err = refused_quickly("nil map", decode(&broadcast_of(&map)));
        assert!(err.contains("over the bound of 524288"), "{err}");
        // Headers announcing more than the buffer holds.
        let mut long_str = vec![0xdb];
        long_str.extend(u32::MAX.to_be_bytes());
        long_str.extend(b"abc");
        let err = refused_quickly("long string", decode(&broadcast_of(&long_str)));
        assert!(err.contains("announces 4294967295 bytes"), "{err}");
        let err = refused_quickly("long array", decode(&array32(200_000)));
        assert!(
            err.contains("200000 values announced where 0 bytes are left"),
            "{err}"
        );
        let mut long_bin = vec![0xc6];
        long_bin.extend(u32::MAX.to_be_bytes());
        refused_quickly("long binary", decode(&long_bin));
        // Within the value bound, over the decoded-size bound: 260,000 nil -> nil entries,
        // each costing two values and the JSON map's bucket (264 bytes from 2).
        let mut entries = vec![0xdf];
        entries.extend(260_000u32.to_be_bytes());
        entries.resize(entries.len() + 520_000, 0xc0);
        let err = refused_quickly("entries", decode(&broadcast_of(&entries)));
        assert!(err.contains("bytes, over the bound of 67108864"), "{err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn inflating_json_requests_are_refused_before_parsing() {
        let zeros = format!(
            r#"{{"type":2,"opts":{{}},"rooms":[{}0]}}"#,
            "0,".repeat(1_000_000)
        );
        let err = refused_quickly("zeros", decode_request(zeros.as_bytes()));
        assert!(err.contains("over the bound of 524288"), "{err}");
        let arrays = format!(
            r#"{{"type":0,"requestId":"r","x":[{}[]]}}"#,
            "[],".repeat(680_000)
        );
        refused_quickly("arrays", decode_request(arrays.as_bytes()));
        refused_quickly("arrays as a query", decode_query(arrays.as_bytes()));
        // Commas, colons and brackets inside strings (escaped quotes too) are not values.
        let text = format!(
            r#"{{"type":2,"opts":{{"rooms":["a"]}},"rooms":["{}\",[{{:"]}}"#,
            ",[{:".repeat(400_000)
        );
        let r = decode_request(text.as_bytes()).unwrap().unwrap();
        assert_eq!(r.rooms, ["a"]);
    }

    /// An argument nested `levels` deep: arrays and maps in turn, a number at the bottom.
    fn nested(levels: usize) -> Arg {
        (0..levels).fold(Arg::from(1u64), |inner, level| {
            if level % 2 == 0 {
                Arg::Array(vec![inner])
            } else {
                Arg::Object(IndexMap::from([("k".to_owned(), inner)]))
            }
        })
    }

    fn send_of(args: Vec<Arg>) -> Broadcast {
        Broadcast {
            args,
            ..Broadcast::of_send(crate::OutboundMessage::broadcast("ev", json!(null)))
        }
    }

    #[test]
    fn arguments_nest_64_levels_each_counted_once_and_deeper_is_refused_at_the_sender() {
        let deepest = send_of(vec![nested(MAX_DEPTH), Arg::from("after")]);
        deepest.check_publishable().unwrap();
        assert_eq!(decode(&encode(&deepest)).unwrap(), deepest);
        // As JSON in a request too.
        let text = format!(
            r#"{{"type":2,"opts":{{}},"rooms":["a"],"x":{}1{}}}"#,
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert!(decode_request(text.as_bytes()).unwrap().is_some());

        let deeper = send_of(vec![Arg::Null, nested(MAX_DEPTH + 1)]);
        assert_eq!(
            deeper.check_publishable(),
            Err(WireError(
                "argument 1 nests deeper than 64 levels, which the receivers refuse".into()
            ))
        );
        let err = decode(&encode(&deeper)).unwrap_err();
        assert_eq!(
            err.0,
            "message refused: nests deeper than 64 levels within its envelope"
        );
        // An empty array is a level too.
        let empty = Arg::Array(vec![]);
        let deeper = (0..MAX_DEPTH).fold(empty, |inner, _| Arg::Array(vec![inner]));
        assert!(send_of(vec![deeper.clone()]).check_publishable().is_err());
        assert!(decode(&encode(&send_of(vec![deeper]))).is_err());
        // The request's own map and arrays, as many as a broadcast's envelope, then 65 levels.
        let text = text.replace("[1]", "[[[[1]]]]");
        let err = decode_request(text.as_bytes()).unwrap_err();
        assert_eq!(
            err.0,
            "request refused: nests deeper than 64 levels within its envelope"
        );
    }

    #[test]
    fn dates_of_every_epoch_arrive_as_a_node_member_delivers_them() {
        // Each: notepack.io's encoding (or a timestamp it decodes), and what
        // `JSON.stringify(decode(..))` gives in Node.
        let cases = [
            // new Date(-14182940000): the 96-bit form, before 1970.
            (
                "c70cff00000000ffffffffff2795e4",
                json!("1969-07-20T20:17:40.000Z"),
            ),
            // new Date(-1).
            (
                "c70cff3b8b87c0ffffffffffffffff",
                json!("1969-12-31T23:59:59.999Z"),
            ),
            ("d6ff00000000", json!("1970-01-01T00:00:00.000Z")),
            // new Date(1234): the 64-bit form.
            ("d7ff37ca3a0000000001", json!("1970-01-01T00:00:01.234Z")),
            // new Date(2 ** 34 * 1000 + 5): past the 64-bit form's seconds.
            (
                "c70cff004c4b400000000400000000",
                json!("2514-05-30T01:53:04.005Z"),
            ),
            // The latest and the earliest Date.
            (
                "c70cff00000000000007dba8218000",
                json!("+275760-09-13T00:00:00.000Z"),
            ),
            (
                "c70cff00000000fffff82457de8000",
                json!("-271821-04-20T00:00:00.000Z"),
            ),
            // One second before 1970 and a nanosecond: the fraction is cut toward zero.
            (
                "c70cff00000001ffffffffffffffff",
                json!("1969-12-31T23:59:59.001Z"),
            ),
            // A billion nanoseconds is one more second.
            (
                "c70cff3b9aca0000000000ffffffff",
                json!("2106-02-07T06:28:16.000Z"),
            ),
            // Out of a Date's range: an invalid Date, which JSON writes null.
            ("c70cff00000000f0000000ffffffff", json!(null)),
        ];
        for (hex, expected) in cases {
            let b = decode(&broadcast_of(&unhex(hex))).unwrap_or_else(|e| panic!("{hex}: {e}"));
            assert_eq!(b.args, [expected], "{hex}");
        }
        // Other extension types as notepack hands them over: `[type, Buffer]`.
        let b = decode(&broadcast_of(&unhex("d5070102"))).unwrap();
        assert_eq!(
            b.args,
            [Arg::Array(vec![
                Arg::from(7u64),
                Arg::Binary(bytes::Bytes::from_static(&[1, 2]))
            ])]
        );
        // notepack's old encodings under type 0, and a timestamp notepack would read past.
        assert!(decode(&broadcast_of(&unhex("d40001"))).is_err());
        assert!(decode(&broadcast_of(&unhex("c703ff010203"))).is_err());
    }

    #[test]
    fn strings_that_are_not_utf8_arrive_as_node_decodes_them() {
        // `Buffer.from(hex, 'hex').toString('utf8')` in Node, which notepack.io uses.
        let cases = [
            ("eda080", "\u{fffd}\u{fffd}\u{fffd}"),
            ("c0af", "\u{fffd}\u{fffd}"),
            ("e282", "\u{fffd}"),
            ("ff61", "\u{fffd}a"),
            ("f4908080", "\u{fffd}\u{fffd}\u{fffd}\u{fffd}"),
            ("e2822062", "\u{fffd} b"),
            ("f0908080", "\u{10000}"),
        ];
        for (hex, expected) in cases {
            let bytes = unhex(hex);
            let mut arg = vec![0xa0 | bytes.len() as u8];
            arg.extend(&bytes);
            let b = decode(&broadcast_of(&arg)).unwrap();
            assert_eq!(b.args, [Arg::from(expected)], "{hex}");
            // As a map key too.
            let mut map = vec![0x81];
            map.extend(&arg);
            map.push(0x01);
            let b = decode(&broadcast_of(&map)).unwrap();
            assert_eq!(b.args[0].get(expected), Some(&Arg::from(1u64)), "{hex}");
        }
    }

    #[test]
    fn a_string_with_a_lone_surrogate_is_refused_at_the_sender() {
        let b = send_of(vec![Arg::from_utf16(vec![0x61, 0xd800])]);
        let err = b.check_publishable().unwrap_err();
        assert!(
            err.0
                .starts_with("argument 0 holds a string with a lone surrogate"),
            "{err}"
        );
    }

    #[test]
    fn large_legitimate_messages_still_decode() {
        let text = "é".repeat(750_000); // 1.5 MB
        let numbers: Vec<Value> = (0..50_000).map(|i| json!(i * 1000)).collect();
        // 2 MiB of float64 numbers: 233,000 values, 9 bytes each.
        let floats: Vec<Value> = (0..233_000).map(|i| json!(f64::from(i) + 0.5)).collect();
        // 2 MiB of records of named fields: 11 values in 72 bytes each.
        let records: Vec<Value> = (0..29_000)
            .map(|i| json!({"id": i, "user": format!("user-{i}"), "text": "a short chat message here", "ts": 1_795_340_096_789u64, "seen": false}))
            .collect();
        for args in [vec![json!(text)], numbers, floats, records] {
            let b = Broadcast {
                args: args.into_iter().map(Arg::from).collect(),
                ..Broadcast::of_send(crate::OutboundMessage::broadcast("big", json!(null)))
            };
            let bytes = encode(&b);
            assert!(bytes.len() <= MAX_MESSAGE_BYTES, "{}", bytes.len());
            assert_eq!(decode(&bytes).unwrap(), b, "{} bytes", bytes.len());
        }
    }
}
