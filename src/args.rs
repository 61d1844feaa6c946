//! An event's arguments as Socket.IO carries them: any number of values, each any JSON value
//! with binary data ([`Bytes`]) wherever it sits.
//!
//! A JavaScript client's `socket.emit("chat", room, text, file)` reaches the stack as one
//! [`Args`] of three [`Arg`]s, in order, the file as [`Arg::Binary`]. `Args` serializes as
//! several Socket.IO arguments (a tuple, in serde's terms), so emitting it or acknowledging
//! with it sends every argument back as it came, binary included:
//!
//! ```
//! use socketio_stack::args::{Arg, Args};
//! use socketio_stack::socket_core::CoreService;
//! use socketioxide::adapter::LocalAdapter;
//! use socketioxide::extract::{AckSender, SocketRef};
//!
//! // `42["message",1,"2",{"3":[true]}]` comes back as `42["message-back",1,"2",{"3":[true]}]`.
//! async fn echo(socket: SocketRef, args: Args) {
//!     socket.emit("message-back", &args).ok();
//! }
//!
//! // `421["message-with-ack",1,"2"]` is answered with `431[1,"2"]`.
//! async fn echo_ack(ack: AckSender, args: Args) {
//!     ack.send(&args).ok();
//! }
//!
//! // Typed: a tuple takes the arguments in order; missing trailing ones read as `null`.
//! let args = Args::from(vec![Arg::from("lobby"), Arg::from("hello")]);
//! let (room, text, file): (String, String, Option<bytes::Bytes>) = args.decode().unwrap();
//! assert_eq!((room.as_str(), text.as_str(), file), ("lobby", "hello", None));
//! # let _ = CoreService::<LocalAdapter>::builder().on("message", echo).on("message-with-ack", echo_ack).build().unwrap();
//! ```
//!
//! Decoding never drops what does not fit: [`Args::decode`] into a type that is not a tuple
//! takes the one argument and refuses an event that has several, and a tuple refuses
//! arguments beyond its last element. A `Vec<Arg>` (what `Args` derefs to) serializes as one
//! array argument: emit the `Args` itself to send several.

use std::collections::VecDeque;
use std::fmt;
use std::ops::{Deref, DerefMut};

use bytes::Bytes;
use indexmap::IndexMap;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use serde::ser::{SerializeMap, SerializeSeq, SerializeTuple};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Number;

/// The error of reading arguments: the shape does not fit, or the packet is malformed.
pub type ArgsError = serde_json::Error;

/// One argument of an event, or a value inside one: a JSON value that may hold binary data.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Arg {
    /// `null` (and JavaScript's `undefined`, which travels as `null`).
    #[default]
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, integral or not.
    Number(Number),
    /// A string.
    String(String),
    /// A string that JavaScript can hold and UTF-8 cannot: one with a lone surrogate (a UTF-16
    /// code unit from U+D800 to U+DFFF without its pair), which JSON text writes as an escape
    /// such as `"\ud800"` and which serde_json refuses to read into a `String`. Kept as its
    /// UTF-16 code units, it reaches clients as the same escapes, as a Node server forwards
    /// it; [`Arg::from_utf16`] makes every other string an [`Arg::String`].
    ///
    /// It cannot cross Redis: notepack.io, the JavaScript members' MessagePack decoder, reads
    /// strings as UTF-8, in which no lone surrogate can be written (it would read U+FFFD
    /// instead), so the fan-out refuses to publish it (with an error) rather than deliver
    /// something else. It does not decode into
    /// Rust types either (a `String` cannot hold it): read it as an `Arg`.
    Utf16(Vec<u16>),
    /// Binary data: a JavaScript `Buffer`, `ArrayBuffer` or typed array, sent as an
    /// attachment of the packet.
    Binary(Bytes),
    /// An array.
    Array(Vec<Arg>),
    /// An object, its keys in the order they came.
    Object(IndexMap<String, Arg>),
}

impl Arg {
    /// A string from its UTF-16 code units: [`Arg::String`], or [`Arg::Utf16`] when it holds
    /// a lone surrogate.
    pub fn from_utf16(units: Vec<u16>) -> Self {
        match String::from_utf16(&units) {
            Ok(s) => Self::String(s),
            Err(_) => Self::Utf16(units),
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The number as an `i64`, if it is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    /// The number as an `f64`, if this is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Number(n) => n.as_f64(),
            _ => None,
        }
    }

    /// The binary data, if this is binary.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Self::Binary(b) => Some(b),
            _ => None,
        }
    }

    /// The items, if this is an array.
    pub fn as_array(&self) -> Option<&Vec<Arg>> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The entries, if this is an object.
    pub fn as_object(&self) -> Option<&IndexMap<String, Arg>> {
        match self {
            Self::Object(o) => Some(o),
            _ => None,
        }
    }

    /// Whether this is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    /// The value under `key`, if this is an object that has it.
    pub fn get(&self, key: &str) -> Option<&Arg> {
        self.as_object().and_then(|o| o.get(key))
    }

    /// Whether JavaScript would take this value as false: `null`, `false`, `0`, `NaN` or
    /// `""` (arrays, objects and binary data are always true).
    pub fn is_falsy(&self) -> bool {
        match self {
            Self::Null => true,
            Self::Bool(b) => !b,
            Self::Number(n) => n.as_f64().is_none_or(|f| f == 0.0 || f.is_nan()),
            Self::String(s) => s.is_empty(),
            Self::Utf16(units) => units.is_empty(),
            Self::Binary(_) | Self::Array(_) | Self::Object(_) => false,
        }
    }

    /// Whether binary data sits anywhere in this value.
    pub fn has_binary(&self) -> bool {
        match self {
            Self::Binary(_) => true,
            Self::Array(a) => a.iter().any(Arg::has_binary),
            Self::Object(o) => o.values().any(Arg::has_binary),
            _ => false,
        }
    }

    /// This value as JSON, or `None` when it holds what `serde_json::Value` cannot: binary data,
    /// or a string with a lone surrogate ([`Arg::Utf16`]).
    pub fn to_json(&self) -> Option<serde_json::Value> {
        use serde_json::Value;
        Some(match self {
            Self::Null => Value::Null,
            Self::Bool(b) => Value::Bool(*b),
            Self::Number(n) => Value::Number(n.clone()),
            Self::String(s) => Value::String(s.clone()),
            Self::Binary(_) | Self::Utf16(_) => return None,
            Self::Array(a) => Value::Array(a.iter().map(Arg::to_json).collect::<Option<_>>()?),
            Self::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| Some((k.clone(), v.to_json()?)))
                    .collect::<Option<_>>()?,
            ),
        })
    }

    /// This value deserialized as `T` (binary data reads as bytes: [`Bytes`], `Vec<u8>` with
    /// `serde_bytes`, ...).
    pub fn decode<T: de::DeserializeOwned>(&self) -> Result<T, ArgsError> {
        T::deserialize(self)
    }
}

impl From<serde_json::Value> for Arg {
    fn from(v: serde_json::Value) -> Self {
        use serde_json::Value;
        match v {
            Value::Null => Self::Null,
            Value::Bool(b) => Self::Bool(b),
            Value::Number(n) => Self::Number(n),
            Value::String(s) => Self::String(s),
            Value::Array(a) => Self::Array(a.into_iter().map(Arg::from).collect()),
            Value::Object(o) => Self::Object(o.into_iter().map(|(k, v)| (k, v.into())).collect()),
        }
    }
}

impl PartialEq<serde_json::Value> for Arg {
    /// Equal when this holds no binary data and is that JSON value.
    fn eq(&self, other: &serde_json::Value) -> bool {
        use serde_json::Value;
        match (self, other) {
            (Self::Null, Value::Null) => true,
            (Self::Bool(a), Value::Bool(b)) => a == b,
            (Self::Number(a), Value::Number(b)) => a == b,
            (Self::String(a), Value::String(b)) => a == b,
            (Self::Array(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
            }
            (Self::Object(a), Value::Object(b)) => {
                a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| v == w))
            }
            _ => false,
        }
    }
}

impl From<Bytes> for Arg {
    fn from(b: Bytes) -> Self {
        Self::Binary(b)
    }
}

impl From<&str> for Arg {
    fn from(s: &str) -> Self {
        Self::String(s.to_owned())
    }
}

impl From<String> for Arg {
    fn from(s: String) -> Self {
        Self::String(s)
    }
}

impl From<bool> for Arg {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}

impl From<i64> for Arg {
    fn from(n: i64) -> Self {
        Self::Number(n.into())
    }
}

impl From<u64> for Arg {
    fn from(n: u64) -> Self {
        Self::Number(n.into())
    }
}

impl From<f64> for Arg {
    /// A finite number; `NaN` and the infinities become `null`, as `JSON.stringify` makes them.
    fn from(n: f64) -> Self {
        Number::from_f64(n).map_or(Self::Null, Self::Number)
    }
}

impl From<Vec<Arg>> for Arg {
    fn from(a: Vec<Arg>) -> Self {
        Self::Array(a)
    }
}

/// All the arguments of one event, in order (the event name is not one of them).
///
/// Serializes as several Socket.IO arguments; derefs to the `Vec<Arg>`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Args(Vec<Arg>);

impl Args {
    /// No arguments.
    pub fn new() -> Self {
        Self::default()
    }

    /// The arguments, as a vector.
    pub fn into_vec(self) -> Vec<Arg> {
        self.0
    }

    /// The arguments deserialized as `T`.
    ///
    /// A tuple (or a tuple struct) takes them in order: `(String, Option<u32>)` reads
    /// `["a", 1]`, and also `["a"]` (a missing trailing argument reads as `null`, as it is
    /// `undefined` in JavaScript), but refuses `["a", 1, true]`: nothing is cut. Any other type
    /// takes the one argument (`null` when there is none) and refuses an event that has
    /// several. Trailing `null` arguments beyond what `T` takes are no data and are let go:
    /// JavaScript sends a trailing `undefined` argument as `null`.
    pub fn decode<T: de::DeserializeOwned>(&self) -> Result<T, ArgsError> {
        if socketioxide_core::parser::is_de_tuple::<T>() {
            return T::deserialize(ArgsDeserializer(&self.0));
        }
        match self.without_trailing_nulls() {
            [] => T::deserialize(&Arg::Null),
            [one] => T::deserialize(one),
            more => Err(de::Error::custom(format_args!(
                "{} arguments where one is taken (read them as a tuple, or as Args)",
                more.len()
            ))),
        }
    }

    /// The arguments of an event packet as socketioxide hands them over: the packet's JSON
    /// text `[event, ...args]` and its binary attachments. Each placeholder
    /// `{"_placeholder": true, "num": n}` of a binary packet becomes its attachment `n`, as
    /// socket.io-parser reconstructs packets; one naming an attachment the packet lacks makes
    /// the packet malformed. `with_event`: the text's first item is the event name (an EVENT,
    /// not an ACK), left out.
    pub fn from_packet(
        text: &str,
        attachments: Option<&VecDeque<Bytes>>,
        with_event: bool,
    ) -> Result<Self, ArgsError> {
        let mut items: Vec<Arg> = if may_hold_surrogates(text) {
            lone_surrogates::parse(text)?
        } else {
            serde_json::from_str(text)?
        };
        if with_event {
            if items.is_empty() {
                return Err(de::Error::custom("an event packet without its name"));
            }
            items.remove(0);
        }
        if let Some(attachments) = attachments {
            for item in &mut items {
                reconstruct(item, attachments)?;
            }
        }
        Ok(Self(items))
    }

    /// The arguments up to the last one that is not `null`.
    fn without_trailing_nulls(&self) -> &[Arg] {
        let end = self
            .0
            .iter()
            .rposition(|a| !a.is_null())
            .map_or(0, |i| i + 1);
        &self.0[..end]
    }

    /// Whether binary data sits anywhere in the arguments.
    pub fn has_binary(&self) -> bool {
        self.0.iter().any(Arg::has_binary)
    }

    /// The arguments an emit of `data` sends, as socketioxide's encoder makes them: a tuple
    /// gives one argument per element, any other value one argument; [`Bytes`] (and
    /// `serde_bytes`) anywhere become binary data.
    pub fn from_serialize<T: Serialize + ?Sized>(data: &T) -> Result<Self, ArgsError> {
        use socketioxide_core::parser::Parse;
        let encoded = socketioxide_parser_common::CommonParser
            .encode_value(data, None)
            .map_err(de::Error::custom)?;
        match &encoded {
            socketioxide_core::Value::Str(text, attachments) => {
                Self::from_packet(text.as_str(), attachments.as_ref(), false)
            }
            socketioxide_core::Value::Bytes(_) => Err(de::Error::custom("not a text encoding")),
        }
    }
}

/// Whether JSON text may hold an escaped surrogate (`\uD800` to `\uDFFF`), so a lone one:
/// other text takes serde_json's fast path. An escaped backslash before a `u` counts too; the
/// slower parse is right for any text.
fn may_hold_surrogates(text: &str) -> bool {
    text.as_bytes().windows(4).any(|w| {
        matches!(
            w,
            [
                b'\\',
                b'u',
                b'd' | b'D',
                b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F',
            ]
        )
    })
}

/// A string's JSON text as `JSON.stringify` writes it: lone surrogates as lowercase `\u`
/// escapes, as are control characters without a short escape.
fn json_text(units: &[u16]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(units.len() + 2);
    out.push('"');
    for c in char::decode_utf16(units.iter().copied()) {
        match c {
            Ok('"') => out.push_str("\\\""),
            Ok('\\') => out.push_str("\\\\"),
            Ok('\u{8}') => out.push_str("\\b"),
            Ok('\u{c}') => out.push_str("\\f"),
            Ok('\n') => out.push_str("\\n"),
            Ok('\r') => out.push_str("\\r"),
            Ok('\t') => out.push_str("\\t"),
            Ok(c) if c < ' ' => write!(out, "\\u{:04x}", u32::from(c)).expect("to a String"),
            Ok(c) => out.push(c),
            Err(lone) => {
                write!(out, "\\u{:04x}", lone.unpaired_surrogate()).expect("to a String");
            }
        }
    }
    out.push('"');
    out
}

/// JSON text to arguments for text that may hold lone surrogates, which serde_json refuses in
/// any string it hands over: the structure is read here, strings into UTF-16 code units
/// ([`Arg::from_utf16`]), numbers by serde_json, so they parse as on the fast path. It nests
/// at most 128 levels, as serde_json does.
mod lone_surrogates {
    use super::{Arg, ArgsError};
    use indexmap::IndexMap;
    use serde::de::Error as _;

    const MAX_NESTING: usize = 128;

    pub(super) fn parse(text: &str) -> Result<Vec<Arg>, ArgsError> {
        let mut p = Parser { text, at: 0 };
        let value = p.value(0)?;
        p.blank();
        if p.at != text.len() {
            return Err(p.error("trailing characters"));
        }
        match value {
            Arg::Array(items) => Ok(items),
            _ => Err(ArgsError::custom("the packet's data is not an array")),
        }
    }

    struct Parser<'a> {
        text: &'a str,
        at: usize,
    }

    impl Parser<'_> {
        fn error(&self, what: &str) -> ArgsError {
            ArgsError::custom(format_args!("{what} at byte {}", self.at))
        }

        fn peek(&self) -> Option<u8> {
            self.text.as_bytes().get(self.at).copied()
        }

        fn blank(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.at += 1;
            }
        }

        fn expect(&mut self, byte: u8) -> Result<(), ArgsError> {
            self.blank();
            if self.peek() != Some(byte) {
                return Err(self.error(&format!("expected `{}`", char::from(byte))));
            }
            self.at += 1;
            Ok(())
        }

        /// After an opening bracket: true (and past it) when `close` ends the list at once.
        fn closes(&mut self, close: u8) -> bool {
            self.blank();
            let closed = self.peek() == Some(close);
            self.at += usize::from(closed);
            closed
        }

        /// After an item: true at the end of the list, false before another item.
        fn ends(&mut self, close: u8) -> Result<bool, ArgsError> {
            self.blank();
            match self.peek() {
                Some(b',') => {
                    self.at += 1;
                    Ok(false)
                }
                Some(b) if b == close => {
                    self.at += 1;
                    Ok(true)
                }
                _ => Err(self.error("expected `,` or the end of the list")),
            }
        }

        fn value(&mut self, depth: usize) -> Result<Arg, ArgsError> {
            self.blank();
            match self.peek() {
                Some(b'[' | b'{') if depth == MAX_NESTING => {
                    Err(self.error("recursion limit exceeded"))
                }
                Some(b'[') => {
                    self.at += 1;
                    let mut items = Vec::new();
                    if !self.closes(b']') {
                        loop {
                            items.push(self.value(depth + 1)?);
                            if self.ends(b']')? {
                                break;
                            }
                        }
                    }
                    Ok(Arg::Array(items))
                }
                Some(b'{') => {
                    self.at += 1;
                    let mut entries = IndexMap::new();
                    if !self.closes(b'}') {
                        loop {
                            self.blank();
                            let key = match self.string()? {
                                Arg::String(key) => key,
                                _ => return Err(self.error("an object key with a lone surrogate")),
                            };
                            self.expect(b':')?;
                            // A repeated key keeps its first place and its last value, as
                            // `JSON.parse` does (and the fast path).
                            entries.insert(key, self.value(depth + 1)?);
                            if self.ends(b'}')? {
                                break;
                            }
                        }
                    }
                    Ok(Arg::Object(entries))
                }
                Some(b'"') => self.string(),
                Some(b't') => self.word("true", Arg::Bool(true)),
                Some(b'f') => self.word("false", Arg::Bool(false)),
                Some(b'n') => self.word("null", Arg::Null),
                Some(b'-' | b'0'..=b'9') => {
                    let start = self.at;
                    while matches!(
                        self.peek(),
                        Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                    ) {
                        self.at += 1;
                    }
                    serde_json::from_str(&self.text[start..self.at]).map(Arg::Number)
                }
                _ => Err(self.error("expected a value")),
            }
        }

        fn word(&mut self, word: &str, value: Arg) -> Result<Arg, ArgsError> {
            if !self.text[self.at..].starts_with(word) {
                return Err(self.error("expected a value"));
            }
            self.at += word.len();
            Ok(value)
        }

        /// A string, its opening quote next.
        fn string(&mut self) -> Result<Arg, ArgsError> {
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string"));
            }
            self.at += 1;
            let mut units = Vec::new();
            loop {
                let run = self.at;
                while matches!(self.peek(), Some(b) if b != b'"' && b != b'\\' && b >= 0x20) {
                    self.at += 1;
                }
                // The run ends at an ASCII byte, so on a character boundary.
                units.extend(self.text[run..self.at].encode_utf16());
                match self.peek() {
                    Some(b'"') => {
                        self.at += 1;
                        return Ok(Arg::from_utf16(units));
                    }
                    Some(b'\\') => {
                        self.at += 1;
                        let unit = match self.peek() {
                            Some(b'"') => u16::from(b'"'),
                            Some(b'\\') => u16::from(b'\\'),
                            Some(b'/') => u16::from(b'/'),
                            Some(b'b') => 0x08,
                            Some(b'f') => 0x0c,
                            Some(b'n') => u16::from(b'\n'),
                            Some(b'r') => u16::from(b'\r'),
                            Some(b't') => u16::from(b'\t'),
                            Some(b'u') => {
                                let hex = self
                                    .text
                                    .get(self.at + 1..self.at + 5)
                                    .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                                    .ok_or_else(|| self.error("invalid escape"))?;
                                self.at += 4;
                                u16::from_str_radix(hex, 16)
                                    .map_err(|_| self.error("invalid escape"))?
                            }
                            _ => return Err(self.error("invalid escape")),
                        };
                        self.at += 1;
                        units.push(unit);
                    }
                    Some(_) => return Err(self.error("a control character in a string")),
                    None => return Err(self.error("an unterminated string")),
                }
            }
        }
    }
}

/// Replaces the placeholders of `arg` with their attachments.
fn reconstruct(arg: &mut Arg, attachments: &VecDeque<Bytes>) -> Result<(), ArgsError> {
    match arg {
        Arg::Object(o) if o.get("_placeholder") == Some(&Arg::Bool(true)) => {
            let found = o
                .get("num")
                .and_then(|n| match n {
                    Arg::Number(n) => n.as_u64(),
                    _ => None,
                })
                .and_then(|n| attachments.get(usize::try_from(n).ok()?));
            match found {
                Some(bin) => *arg = Arg::Binary(bin.clone()),
                None => {
                    return Err(de::Error::custom(format_args!(
                        "illegal attachments: a placeholder names none of the packet's {}",
                        attachments.len()
                    )));
                }
            }
        }
        Arg::Object(o) => {
            for v in o.values_mut() {
                reconstruct(v, attachments)?;
            }
        }
        Arg::Array(a) => {
            for v in a {
                reconstruct(v, attachments)?;
            }
        }
        _ => {}
    }
    Ok(())
}

impl Deref for Args {
    type Target = Vec<Arg>;
    fn deref(&self) -> &Vec<Arg> {
        &self.0
    }
}

impl DerefMut for Args {
    fn deref_mut(&mut self) -> &mut Vec<Arg> {
        &mut self.0
    }
}

impl From<Vec<Arg>> for Args {
    fn from(v: Vec<Arg>) -> Self {
        Self(v)
    }
}

impl From<Vec<serde_json::Value>> for Args {
    /// One argument per JSON value.
    fn from(v: Vec<serde_json::Value>) -> Self {
        v.into_iter().map(Arg::from).collect()
    }
}

impl From<Arg> for Args {
    /// One argument.
    fn from(a: Arg) -> Self {
        Self(vec![a])
    }
}

impl FromIterator<Arg> for Args {
    fn from_iter<I: IntoIterator<Item = Arg>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl IntoIterator for Args {
    type Item = Arg;
    type IntoIter = std::vec::IntoIter<Arg>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl Serialize for Arg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Null => s.serialize_unit(),
            Self::Bool(b) => s.serialize_bool(*b),
            Self::Number(n) => n.serialize(s),
            Self::String(v) => s.serialize_str(v),
            // As its JSON text, escapes and all: no `str` can hold it. serde_json (what
            // socketioxide encodes packets with) writes a raw value as it is.
            Self::Utf16(units) => serde_json::value::RawValue::from_string(json_text(units))
                .map_err(serde::ser::Error::custom)?
                .serialize(s),
            // socketioxide's encoder makes it an attachment.
            Self::Binary(b) => s.serialize_bytes(b),
            Self::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Self::Object(o) => {
                let mut map = s.serialize_map(Some(o.len()))?;
                for (k, v) in o {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl Serialize for Args {
    /// A tuple: socketioxide sends each item as its own argument.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut tuple = s.serialize_tuple(self.0.len())?;
        for v in &self.0 {
            tuple.serialize_element(v)?;
        }
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for Arg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ArgVisitor)
    }
}

struct ArgVisitor;

impl<'de> Visitor<'de> for ArgVisitor {
    type Value = Arg;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value or binary data")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Arg, E> {
        Ok(Arg::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Arg, E> {
        Ok(Arg::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Arg, E> {
        Ok(Arg::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Arg, E> {
        Ok(Arg::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Arg, E> {
        Ok(Arg::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Arg, E> {
        Ok(Arg::String(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Arg, E> {
        Ok(Arg::Binary(Bytes::copy_from_slice(v)))
    }
    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Arg, E> {
        Ok(Arg::Binary(v.into()))
    }
    fn visit_none<E>(self) -> Result<Arg, E> {
        Ok(Arg::Null)
    }
    fn visit_unit<E>(self) -> Result<Arg, E> {
        Ok(Arg::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Arg, D::Error> {
        Arg::deserialize(d)
    }
    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Arg, S::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok(Arg::Array(items))
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Arg, M::Error> {
        let mut entries = IndexMap::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some((k, v)) = map.next_entry::<String, Arg>()? {
            // A repeated key keeps its first place and its last value, as `JSON.parse` does.
            entries.insert(k, v);
        }
        Ok(Arg::Object(entries))
    }
}

impl<'de> Deserialize<'de> for Args {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<Arg>::deserialize(d).map(Self)
    }
}

impl<'de> IntoDeserializer<'de, ArgsError> for &'de Arg {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Deserializer<'de> for &'de Arg {
    type Error = ArgsError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ArgsError> {
        match self {
            Arg::Null => v.visit_unit(),
            Arg::Bool(b) => v.visit_bool(*b),
            Arg::Number(n) => n.deserialize_any(v),
            Arg::String(s) => v.visit_borrowed_str(s),
            Arg::Utf16(_) => Err(de::Error::invalid_type(self.unexpected(), &v)),
            Arg::Binary(b) => v.visit_borrowed_bytes(b),
            Arg::Array(a) => {
                let mut seq = de::value::SeqDeserializer::new(a.iter());
                let out = v.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(out)
            }
            Arg::Object(o) => {
                let mut map = de::value::MapDeserializer::new(
                    o.iter()
                        .map(|(k, v)| (de::value::BorrowedStrDeserializer::new(k), v)),
                );
                let out = v.visit_map(&mut map)?;
                map.end()?;
                Ok(out)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ArgsError> {
        match self {
            Arg::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, ArgsError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, ArgsError> {
        match self {
            // A unit variant, as serde_json writes it: `"Name"`.
            Arg::String(s) => v.visit_enum(de::value::BorrowedStrDeserializer::new(s)),
            // Any other variant: `{"Name": content}`.
            Arg::Object(o) if o.len() == 1 => {
                let (name, content) = o.first().expect("one entry");
                v.visit_enum(VariantOf { name, content })
            }
            _ => Err(de::Error::invalid_type(
                self.unexpected(),
                &"an enum variant",
            )),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

impl Arg {
    fn unexpected(&self) -> de::Unexpected<'_> {
        match self {
            Self::Null => de::Unexpected::Unit,
            Self::Bool(b) => de::Unexpected::Bool(*b),
            Self::Number(_) => de::Unexpected::Other("a number"),
            Self::String(s) => de::Unexpected::Str(s),
            Self::Utf16(_) => de::Unexpected::Other("a string with a lone surrogate"),
            Self::Binary(b) => de::Unexpected::Bytes(b),
            Self::Array(_) => de::Unexpected::Seq,
            Self::Object(_) => de::Unexpected::Map,
        }
    }
}

/// An enum variant written `{"Name": content}`.
struct VariantOf<'de> {
    name: &'de str,
    content: &'de Arg,
}

impl<'de> EnumAccess<'de> for VariantOf<'de> {
    type Error = ArgsError;
    type Variant = &'de Arg;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, &'de Arg), ArgsError> {
        let name = seed.deserialize(de::value::BorrowedStrDeserializer::<ArgsError>::new(
            self.name,
        ))?;
        Ok((name, self.content))
    }
}

impl<'de> VariantAccess<'de> for &'de Arg {
    type Error = ArgsError;

    fn unit_variant(self) -> Result<(), ArgsError> {
        de::Deserialize::deserialize(self)
    }
    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, ArgsError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, ArgsError> {
        self.deserialize_any(v)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, ArgsError> {
        self.deserialize_any(v)
    }
}

/// The arguments as a tuple: each in order, then `null` for the elements past the last
/// argument; arguments past the tuple's last element are refused.
struct ArgsDeserializer<'de>(&'de [Arg]);

impl<'de> Deserializer<'de> for ArgsDeserializer<'de> {
    type Error = ArgsError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ArgsError> {
        let len = self.0.len();
        self.deserialize_tuple(len, v)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, ArgsError> {
        let mut seq = PaddedArgs {
            args: self.0,
            taken: 0,
            len: len.max(self.0.len()),
        };
        let out = v.visit_seq(&mut seq)?;
        if self.0[seq.taken.min(self.0.len())..]
            .iter()
            .any(|a| !a.is_null())
        {
            return Err(de::Error::custom(format_args!(
                "{} arguments where {} are taken",
                self.0.len(),
                seq.taken
            )));
        }
        Ok(out)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        v: V,
    ) -> Result<V::Value, ArgsError> {
        self.deserialize_tuple(len, v)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq map struct enum
        identifier ignored_any
    }
}

struct PaddedArgs<'de> {
    args: &'de [Arg],
    taken: usize,
    len: usize,
}

impl<'de> SeqAccess<'de> for PaddedArgs<'de> {
    type Error = ArgsError;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, ArgsError> {
        static NULL: Arg = Arg::Null;
        if self.taken >= self.len {
            return Ok(None);
        }
        let arg = self.args.get(self.taken).unwrap_or(&NULL);
        self.taken += 1;
        seed.deserialize(arg).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.len - self.taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: serde_json::Value) -> Args {
        match Arg::from(v) {
            Arg::Array(a) => Args::from(a),
            other => Args::from(other),
        }
    }

    #[test]
    fn a_packet_s_arguments_keep_their_order_and_their_attachments_wherever_they_sit() {
        let bins = VecDeque::from([Bytes::from_static(&[1, 2, 3]), Bytes::from_static(&[4])]);
        let text = r#"["message",{"_placeholder":true,"num":1},"x",{"a":[{"_placeholder":true,"num":0}],"b":2}]"#;
        let got = Args::from_packet(text, Some(&bins), true).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], Arg::Binary(Bytes::from_static(&[4])));
        assert_eq!(got[1], Arg::from("x"));
        assert_eq!(
            got[2].get("a").unwrap().as_array().unwrap()[0],
            Arg::Binary(Bytes::from_static(&[1, 2, 3]))
        );
        let keys: Vec<_> = got[2].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["a", "b"]);
        assert!(got.has_binary());
    }

    #[test]
    fn placeholders_are_only_read_in_binary_packets_and_must_name_an_attachment() {
        let text = r#"["e",{"_placeholder":true,"num":0}]"#;
        let plain = Args::from_packet(text, None, true).unwrap();
        assert!(plain[0].get("_placeholder").is_some());
        for bad in [
            r#"["e",{"_placeholder":true,"num":1}]"#,
            r#"["e",{"_placeholder":true,"num":-1}]"#,
            r#"["e",{"_placeholder":true,"num":"0"}]"#,
            r#"["e",{"_placeholder":true}]"#,
        ] {
            let one = VecDeque::from([Bytes::from_static(b"z")]);
            let err = Args::from_packet(bad, Some(&one), true).unwrap_err();
            assert!(
                err.to_string().contains("illegal attachments"),
                "{bad}: {err}"
            );
        }
        assert!(Args::from_packet("[]", None, true).is_err());
        assert!(Args::from_packet("{}", None, true).is_err());
        assert_eq!(Args::from_packet("[1,2]", None, false).unwrap().len(), 2);
    }

    #[test]
    fn a_tuple_takes_every_argument_and_refuses_more() {
        let a = args(json!([1, "2", {"3": [true]}]));
        let (n, s, o): (u8, String, serde_json::Value) = a.decode().unwrap();
        assert_eq!((n, s.as_str(), o), (1, "2", json!({"3": [true]})));
        let err = a.decode::<(u8, String)>().unwrap_err().to_string();
        assert!(err.contains("3 arguments where 2 are taken"), "{err}");
        // Missing trailing arguments are `undefined`: `null`; and trailing `undefined`s past
        // the tuple are no data.
        let (n, rest): (u8, Option<String>) = args(json!([1])).decode().unwrap();
        assert_eq!((n, rest), (1, None));
        let (n, rest): (u8, Option<String>) = args(json!([1, null, null])).decode().unwrap();
        assert_eq!((n, rest), (1, None));
        assert!(args(json!([1])).decode::<(u8, String)>().is_err());
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Pair(String, u32);
        assert_eq!(
            args(json!(["a", 2])).decode::<Pair>().unwrap(),
            Pair("a".into(), 2)
        );
    }

    #[test]
    fn another_type_takes_the_one_argument_and_refuses_several() {
        assert_eq!(
            args(json!([{"a": 1}]))
                .decode::<serde_json::Value>()
                .unwrap(),
            json!({"a": 1})
        );
        assert_eq!(
            Args::new().decode::<Option<u8>>().unwrap(),
            None,
            "no argument reads as null"
        );
        let err = args(json!([1, 2]))
            .decode::<serde_json::Value>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("2 arguments where one is taken"), "{err}");
        // `emit("e", "x", undefined)` in JavaScript: the trailing null is no data.
        assert_eq!(args(json!(["x", null])).decode::<String>().unwrap(), "x");
        assert!(args(json!([null, "x"])).decode::<Option<String>>().is_err());
        // A vector is one argument, an array.
        assert_eq!(
            args(json!([[1, 2]])).decode::<Vec<u8>>().unwrap(),
            vec![1, 2]
        );
    }

    #[test]
    fn binary_decodes_as_bytes_anywhere_and_not_as_json() {
        #[derive(serde::Deserialize)]
        struct File {
            name: String,
            content: Bytes,
        }
        let mut o = IndexMap::new();
        o.insert("name".to_owned(), Arg::from("f"));
        o.insert(
            "content".to_owned(),
            Arg::Binary(Bytes::from_static(b"xyz")),
        );
        let a = Args::from(vec![Arg::Object(o), Arg::Binary(Bytes::from_static(b"!"))]);
        let (file, raw): (File, Bytes) = a.decode().unwrap();
        assert_eq!(
            (file.name.as_str(), &file.content[..], &raw[..]),
            ("f", &b"xyz"[..], &b"!"[..])
        );
        assert!(a.decode::<(serde_json::Value, Bytes)>().is_err());
        assert_eq!(a[0].to_json(), None);
        assert_eq!(
            Arg::from(json!({"k": [1]})).to_json(),
            Some(json!({"k": [1]}))
        );
    }

    #[test]
    fn enums_options_and_numbers_decode_as_from_json() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        enum E {
            Unit,
            New(u8),
            Rec { x: i32 },
        }
        let a = args(json!(["Unit", {"New": 3}, {"Rec": {"x": -1}}, null, 2.5]));
        let got: (E, E, E, Option<u8>, f64) = a.decode().unwrap();
        assert_eq!(got, (E::Unit, E::New(3), E::Rec { x: -1 }, None, 2.5));
        assert!(args(json!([300])).decode::<u8>().is_err());
    }

    #[test]
    fn falsiness_is_javascript_s() {
        for v in [json!(null), json!(false), json!(0), json!(0.0), json!("")] {
            assert!(Arg::from(v.clone()).is_falsy(), "{v}");
        }
        for v in [json!(true), json!(1), json!("0"), json!([]), json!({})] {
            assert!(!Arg::from(v.clone()).is_falsy(), "{v}");
        }
        assert!(!Arg::Binary(Bytes::new()).is_falsy());
    }

    #[test]
    fn a_typed_value_becomes_the_arguments_an_emit_of_it_sends() {
        let one = Args::from_serialize(&json!({"a": 1})).unwrap();
        assert_eq!(one, args(json!([{"a": 1}])));
        let several = Args::from_serialize(&("x", 2, Bytes::from_static(b"\x00\xff"))).unwrap();
        assert_eq!(
            several,
            Args::from(vec![
                Arg::from("x"),
                Arg::from(2u64),
                Arg::Binary(Bytes::from_static(b"\x00\xff"))
            ])
        );
        // A vector is one argument.
        assert_eq!(Args::from_serialize(&vec![1, 2]).unwrap().len(), 1);
    }

    #[test]
    fn floats_parse_to_the_double_they_were_written_from() {
        // Doubles of every magnitude, from their bits (a fixed xorshift sequence): without
        // serde_json's `float_roundtrip`, about one in four parses to a neighbour.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut floats = vec![123_456_789.123_456_79, 5e-324, f64::MAX];
        while floats.len() < 10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = f64::from_bits(x);
            if f.is_finite() {
                floats.push(f);
            }
        }
        let text = serde_json::to_string(&floats).unwrap();
        let got = Args::from_packet(&text, None, false).unwrap();
        for (arg, sent) in got.iter().zip(&floats) {
            assert_eq!(arg.as_f64().unwrap().to_bits(), sent.to_bits(), "{sent}");
        }
        // And written back as they came.
        let back = Args::from_serialize(&got).unwrap();
        assert_eq!(back, got);
        assert_eq!(
            serde_json::to_string(&Args::from_packet("[123456789.12345679]", None, false).unwrap())
                .unwrap(),
            "[123456789.12345679]"
        );
    }

    #[test]
    fn lone_surrogates_arrive_and_leave_as_the_escapes_they_came_as() {
        let text = r#"["e","\ud800",{"k":["a\uDC00b"]},"\ud83d\ude00","x\"\\\n\u0001é"]"#;
        let got = Args::from_packet(text, None, true).unwrap();
        assert_eq!(got[0], Arg::Utf16(vec![0xd800]));
        assert_eq!(
            got[1].get("k").unwrap().as_array().unwrap()[0],
            Arg::Utf16(vec![0x61, 0xdc00, 0x62])
        );
        // A pair is an ordinary string, escapes read as serde_json reads them.
        assert_eq!(got[2], Arg::from("😀"));
        assert_eq!(got[3], Arg::from("x\"\\\n\u{1}é"));
        // Written as `JSON.stringify` writes them, through socketioxide's encoder.
        use socketioxide_core::parser::Parse;
        let encoded = socketioxide_parser_common::CommonParser
            .encode_value(&got, Some("e"))
            .unwrap();
        let socketioxide_core::Value::Str(out, None) = encoded else {
            panic!("{encoded:?}")
        };
        assert_eq!(
            out.as_str(),
            r#"["e","\ud800",{"k":["a\udc00b"]},"😀","x\"\\\n\u0001é"]"#
        );
        assert!(!got[0].is_falsy());
        assert_eq!(got[0].to_json(), None);
        let err = got
            .decode::<(String, serde_json::Value, String, String)>()
            .unwrap_err();
        assert!(
            err.to_string().contains("a string with a lone surrogate"),
            "{err}"
        );
        // A key cannot be one: `Arg::Object` keys are strings.
        assert!(Args::from_packet(r#"[{"\ud800":1}]"#, None, false).is_err());
    }

    #[test]
    fn text_that_may_hold_surrogates_parses_as_serde_json_parses_the_rest() {
        let same = [
            r#"["\ud83d\ude00", 1, -2.5e-3, 1E400, true, false, null, {"a": 1, "a": 2, "b": []}]"#,
            r#"[ "\\ud800 is not an escape here" , [ [ ] ] , { } ]"#,
            r#"["\ud83d\ude00", 12345678901234567890, -9223372036854775808, 0.1]"#,
        ];
        for text in same {
            let fast: Result<Vec<Arg>, _> = serde_json::from_str(text);
            let slow = lone_surrogates::parse(text);
            assert_eq!(slow.ok(), fast.ok(), "{text}");
        }
        let deep = format!("[\"\\ud800\",{}{}]", "[".repeat(127), "]".repeat(127));
        assert!(lone_surrogates::parse(&deep).is_ok());
        let too_deep = format!("[\"\\ud800\",{}{}]", "[".repeat(128), "]".repeat(128));
        assert!(lone_surrogates::parse(&too_deep).is_err());
        for bad in [
            r#"["\ud800""#,
            r#"["\ud800",]"#,
            r#"["\ud800" 1]"#,
            r#"["\ud800"] x"#,
            r#"["\ud80"]"#,
            r#"["\ud800\x"]"#,
            "[\"\\ud800\u{1}\"]",
            r#"["\ud800",{"a" 1}]"#,
            r#"["\ud800",tru]"#,
            r#"["\ud800",01x]"#,
            r#"{"\ud800":1}"#,
        ] {
            assert!(Args::from_packet(bad, None, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn args_serialize_as_a_tuple_of_their_values() {
        let a = args(json!([1, "2", {"3": [true]}]));
        assert!(socketioxide_core::parser::is_ser_tuple(&a));
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"[1,"2",{"3":[true]}]"#
        );
        let back: Args = serde_json::from_str(r#"[1,"2",{"3":[true]}]"#).unwrap();
        assert_eq!(back, a);
    }
}
