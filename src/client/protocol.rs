//! The packets of Engine.IO v4 and Socket.IO v5 that the client speaks.
//!
//! Engine.IO: `0{open json}`, `1` close, `2` ping, `3` pong, `4<payload>` message, `6` noop,
//! each a text [`Frame`]; a binary frame is an attachment of the Socket.IO packet before it.
//! Socket.IO (inside a message): `0{auth}` connect, `1` disconnect, `2[...]` event, `3[...]`
//! ack, `4{...}` connect error, and `5<n>-[...]` / `6<n>-[...]`, an event / ack whose `n`
//! attachments follow as binary frames, each placeholder `{"_placeholder":true,"num":i}` in
//! its data standing for attachment `i`. Each may name a namespace (`/nsp,`) and, events and
//! acks, carry an ack id before the data. Only the default namespace is used here.
//!
//! Encoding is socketioxide's own (`socketioxide-parser-common`), so that what this client
//! sends is exactly what a socketioxide server would send for the same data; decoding
//! rebuilds the arguments with [`Args::from_packet`], as the server side does.

use std::collections::VecDeque;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use socketioxide_core::packet::Packet as WirePacket;
use socketioxide_core::parser::Parse;
use socketioxide_parser_common::CommonParser;

use crate::args::{Arg, Args};
use crate::client::error::ClientError;

/// One Engine.IO packet as a transport carries it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Frame {
    /// A text packet (type digit first).
    Text(String),
    /// A binary packet: an attachment.
    Binary(Bytes),
}

/// The most attachments one packet may announce (socketioxide's own bound on what it takes
/// from clients): a larger count is refused, not waited for.
pub(crate) const MAX_ATTACHMENTS: usize = 10_000;

/// The Engine.IO open packet's payload.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Open {
    /// The Engine.IO session id.
    pub(crate) sid: String,
    /// Milliseconds between the server's pings.
    pub(crate) ping_interval: u64,
    /// Milliseconds the server waits for a pong.
    pub(crate) ping_timeout: u64,
}

/// A packet received from the server.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Packet {
    /// Engine.IO open.
    Open(Open),
    /// Engine.IO close.
    Close,
    /// Engine.IO ping (answered with a pong).
    Ping,
    /// Engine.IO noop, or pong.
    Noop,
    /// Socket.IO connect acknowledged, with the socket id.
    Connect { sid: Option<String> },
    /// Socket.IO disconnect from the server.
    Disconnect,
    /// Socket.IO event: name, arguments, ack id when the server asks for an answer.
    Event {
        name: String,
        args: Args,
        ack: Option<u64>,
    },
    /// Socket.IO ack of one of our emits.
    Ack { id: u64, args: Args },
    /// The head of a binary event or ack: its attachments come next, as binary frames.
    Binary(BinaryHead),
    /// Socket.IO connect error, with the server's message.
    ConnectError(String),
    /// Anything this client does not handle (other namespaces, garbage), for the log.
    Unsupported(String),
}

/// A binary event or ack waiting for its attachments.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BinaryHead {
    /// An ack (`6`) rather than an event (`5`).
    is_ack: bool,
    /// How many attachments follow.
    pub(crate) attachments: usize,
    ack: Option<u64>,
    /// The JSON data, placeholders and all.
    data: String,
}

impl BinaryHead {
    /// The packet, its attachments in the order they came.
    pub(crate) fn complete(self, attachments: &VecDeque<Bytes>) -> Packet {
        match (self.is_ack, self.ack) {
            (true, Some(id)) => match Args::from_packet(&self.data, Some(attachments), false) {
                Ok(args) => Packet::Ack { id, args },
                Err(e) => Packet::Unsupported(format!("binary ack: {e}")),
            },
            (true, None) => Packet::Unsupported("binary ack without an id".into()),
            (false, ack) => decode_event(&self.data, Some(attachments), ack)
                .unwrap_or_else(|| Packet::Unsupported(truncate(&self.data))),
        }
    }
}

/// Parses one text frame.
pub(crate) fn decode(text: &str) -> Packet {
    let unsupported = || Packet::Unsupported(truncate(text));
    let mut chars = text.chars();
    match chars.next() {
        Some('0') => serde_json::from_str(&text[1..]).map_or_else(|_| unsupported(), Packet::Open),
        Some('1') => Packet::Close,
        Some('2') => Packet::Ping,
        Some('3') | Some('6') => Packet::Noop,
        Some('4') => decode_socketio(&text[1..]).unwrap_or_else(unsupported),
        _ => unsupported(),
    }
}

/// The digits at the start of `text`, as a number, and what follows them.
fn leading_number(text: &str) -> (Option<u64>, &str) {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let number = (digits > 0)
        .then(|| text[..digits].parse::<u64>().ok())
        .flatten();
    (number, &text[digits..])
}

fn decode_socketio(text: &str) -> Option<Packet> {
    let kind = text.chars().next()?;
    let mut rest = &text[kind.len_utf8()..];
    // A binary packet announces its attachments first: `5<n>-`.
    let attachments = if matches!(kind, '5' | '6') {
        let (count, after) = leading_number(rest);
        rest = after.strip_prefix('-')?;
        Some(usize::try_from(count?).ok()?)
    } else {
        None
    };
    // A namespace other than the default one is not ours.
    if rest.starts_with('/') {
        let (nsp, after) = rest.split_once(',').unwrap_or((rest, ""));
        if nsp != "/" {
            return None;
        }
        rest = after;
    }
    let (ack, data) = leading_number(rest);
    match kind {
        '0' => {
            let sid = serde_json::from_str::<Value>(data)
                .ok()
                .and_then(|v| v.get("sid").and_then(Value::as_str).map(str::to_owned));
            Some(Packet::Connect { sid })
        }
        '1' => Some(Packet::Disconnect),
        '2' => decode_event(data, None, ack),
        '3' => Some(Packet::Ack {
            id: ack?,
            args: Args::from_packet(data, None, false).ok()?,
        }),
        '4' => {
            let message = match serde_json::from_str::<Value>(data).ok()? {
                Value::Object(map) => map
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                Value::String(s) => s,
                other => other.to_string(),
            };
            Some(Packet::ConnectError(message))
        }
        '5' | '6' => {
            let attachments = attachments?;
            if attachments > MAX_ATTACHMENTS {
                return None;
            }
            Some(Packet::Binary(BinaryHead {
                is_ack: kind == '6',
                attachments,
                ack,
                data: data.to_owned(),
            }))
        }
        _ => None,
    }
}

/// An event from its data `[name, ...args]`.
fn decode_event(
    data: &str,
    attachments: Option<&VecDeque<Bytes>>,
    ack: Option<u64>,
) -> Option<Packet> {
    let mut args = Args::from_packet(data, attachments, false).ok()?.into_vec();
    if args.is_empty() {
        return None;
    }
    let Arg::String(name) = args.remove(0) else {
        return None;
    };
    Some(Packet::Event {
        name,
        args: args.into(),
        ack,
    })
}

/// At most 200 characters of `text`, for logs.
fn truncate(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// A packet to send: its text frame, then its attachments as binary frames.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outgoing {
    /// The Engine.IO text packet.
    pub(crate) text: String,
    /// The attachments that follow it.
    pub(crate) attachments: VecDeque<Bytes>,
}

impl Outgoing {
    /// A packet of text only.
    pub(crate) fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            attachments: VecDeque::new(),
        }
    }

    /// Its frames, in order.
    pub(crate) fn into_frames(self) -> impl Iterator<Item = Frame> {
        std::iter::once(Frame::Text(self.text))
            .chain(self.attachments.into_iter().map(Frame::Binary))
    }
}

/// A Socket.IO packet as an Engine.IO message, by socketioxide's encoder.
fn message(packet: WirePacket) -> Outgoing {
    match CommonParser.encode(packet) {
        socketioxide_core::Value::Str(text, attachments) => Outgoing {
            text: format!("4{}", text.as_str()),
            attachments: attachments.unwrap_or_default(),
        },
        // The common parser writes text only.
        socketioxide_core::Value::Bytes(bytes) => Outgoing {
            text: "4".to_owned(),
            attachments: VecDeque::from([bytes]),
        },
    }
}

/// The Engine.IO pong.
pub(crate) const PONG: &str = "3";

/// Socket.IO connect to the default namespace, with the `auth` payload if any.
pub(crate) fn connect(auth: Option<&Value>) -> String {
    match auth {
        Some(auth) => format!("40{auth}"),
        None => "40".to_owned(),
    }
}

/// Socket.IO disconnect from the default namespace.
pub(crate) const DISCONNECT: &str = "41";

/// A Socket.IO event whose arguments are `args` (a tuple or [`Args`]: one argument per
/// element), with an ack id when an answer is wanted. [`Bytes`] anywhere in them become
/// attachments.
pub(crate) fn event<T: Serialize + ?Sized>(
    name: &str,
    args: &T,
    ack: Option<u64>,
) -> Result<Outgoing, ClientError> {
    let data = CommonParser
        .encode_value(args, Some(name))
        .map_err(|e| ClientError::Encode(e.to_string()))?;
    let mut packet = WirePacket::event("/", data);
    if let Some(id) = ack {
        packet.inner.set_ack_id(ack_id(id)?);
    }
    Ok(message(packet))
}

/// A Socket.IO ack answering the server's ack id with `args`.
pub(crate) fn ack(id: u64, args: &Args) -> Result<Outgoing, ClientError> {
    let data = CommonParser
        .encode_value(args, None)
        .map_err(|e| ClientError::Encode(e.to_string()))?;
    Ok(message(WirePacket::ack("/", data, ack_id(id)?)))
}

/// socketioxide's ack ids are `i64`; ours count up from 0 and the server's come from the
/// wire, where one past `i64::MAX` is no id socket.io would make.
fn ack_id(id: u64) -> Result<i64, ClientError> {
    i64::try_from(id).map_err(|_| ClientError::Encode(format!("ack id {id} out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(values: Vec<Value>) -> Args {
        Args::from(values)
    }

    #[test]
    fn decodes_the_server_packets() {
        assert_eq!(
            decode(
                r#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
            ),
            Packet::Open(Open {
                sid: "abc".into(),
                ping_interval: 25000,
                ping_timeout: 20000
            })
        );
        assert_eq!(decode("2"), Packet::Ping);
        assert_eq!(
            decode(r#"40{"sid":"s1"}"#),
            Packet::Connect {
                sid: Some("s1".into())
            }
        );
        assert_eq!(decode("41"), Packet::Disconnect);
        assert_eq!(
            decode(r#"42["ping",{"time":"t"}]"#),
            Packet::Event {
                name: "ping".into(),
                args: args(vec![json!({"time": "t"})]),
                ack: None
            }
        );
        assert_eq!(
            decode(r#"4212["ask",1,2]"#),
            Packet::Event {
                name: "ask".into(),
                args: args(vec![json!(1), json!(2)]),
                ack: Some(12)
            }
        );
        assert_eq!(
            decode(r#"437["ok"]"#),
            Packet::Ack {
                id: 7,
                args: args(vec![json!("ok")])
            }
        );
        assert_eq!(
            decode(r#"44{"message":"nope"}"#),
            Packet::ConnectError("nope".into())
        );
        assert_eq!(
            decode(r#"42/,["x"]"#),
            Packet::Event {
                name: "x".into(),
                args: Args::new(),
                ack: None
            }
        );
        // A lone surrogate is kept, as JavaScript holds it.
        let Packet::Event { args, .. } = decode(r#"42["s","\ud800"]"#) else {
            panic!()
        };
        assert_eq!(args[0], Arg::Utf16(vec![0xD800]));
    }

    #[test]
    fn rebuilds_binary_events_and_acks_from_their_attachments() {
        let Packet::Binary(head) = decode(
            r#"452-["file",{"_placeholder":true,"num":1},{"a":{"_placeholder":true,"num":0}}]"#,
        ) else {
            panic!()
        };
        assert_eq!(head.attachments, 2);
        let attachments =
            VecDeque::from([Bytes::from_static(b"zero"), Bytes::from_static(&[1, 0xff])]);
        let Packet::Event { name, args, ack } = head.complete(&attachments) else {
            panic!()
        };
        assert_eq!((name.as_str(), ack), ("file", None));
        assert_eq!(args[0], Arg::Binary(Bytes::from_static(&[1, 0xff])));
        assert_eq!(
            args[1].get("a"),
            Some(&Arg::Binary(Bytes::from_static(b"zero")))
        );

        // With a namespace and an ack id, socket.io-parser's order: count, namespace, id.
        let Packet::Binary(head) = decode(r#"451-/,9["q",{"_placeholder":true,"num":0}]"#) else {
            panic!()
        };
        let one = VecDeque::from([Bytes::from_static(b"x")]);
        assert!(matches!(
            head.complete(&one),
            Packet::Event { ack: Some(9), .. }
        ));

        let Packet::Binary(head) = decode(r#"461-7[{"_placeholder":true,"num":0}]"#) else {
            panic!()
        };
        assert_eq!(
            head.complete(&one),
            Packet::Ack {
                id: 7,
                args: Args::from(vec![Arg::Binary(Bytes::from_static(b"x"))])
            }
        );
        // A placeholder naming an attachment that did not come.
        let Packet::Binary(head) = decode(r#"451-["f",{"_placeholder":true,"num":3}]"#) else {
            panic!()
        };
        assert!(matches!(head.complete(&one), Packet::Unsupported(_)));
    }

    #[test]
    fn refuses_what_it_does_not_handle() {
        for text in [
            "",
            "9",
            "4é",
            "4",
            "42",
            "42[]",
            "42[1]",
            "42{",
            r#"42/admin,["x"]"#,
            r#"451-/admin,["x",{"_placeholder":true,"num":0}]"#,
            r#"45["no count"]"#,
            r#"45x-["bad count"]"#,
            r#"4599999999999999999999-["huge count"]"#,
            r#"4510001-["too many"]"#,
            "43[\"no id\"]",
            "0{bad",
        ] {
            assert!(matches!(decode(text), Packet::Unsupported(_)), "{text:?}");
        }
        let long = "x".repeat(10_000);
        let Packet::Unsupported(shown) = decode(&long) else {
            panic!()
        };
        assert!(shown.chars().count() <= 201);
    }

    #[test]
    fn encodes_the_client_packets_as_socketioxide_does() {
        assert_eq!(connect(Some(&json!({"token": "t"}))), r#"40{"token":"t"}"#);
        assert_eq!(connect(None), "40");
        let join = event("join", &(json!({"rooms": ["a"]}),), None).unwrap();
        assert_eq!(join, Outgoing::text(r#"42["join",{"rooms":["a"]}]"#));
        assert_eq!(event("q", &(1,), Some(3)).unwrap().text, r#"423["q",1]"#);
        assert_eq!(
            event("authenticate", &Args::new(), None).unwrap().text,
            r#"42["authenticate"]"#
        );
        assert_eq!(
            ack(5, &args(vec![json!({"ok": true})])).unwrap().text,
            r#"435[{"ok":true}]"#
        );
    }

    #[test]
    fn encodes_binary_data_as_attachments() {
        let file = Bytes::from_static(&[0, 1, 2, 0xff]);
        let sent = event("upload", &("a.bin", file.clone()), Some(2)).unwrap();
        assert_eq!(
            sent.text,
            r#"451-2["upload","a.bin",{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(sent.attachments, VecDeque::from([file.clone()]));
        let frames: Vec<Frame> = sent.into_frames().collect();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1], Frame::Binary(file.clone()));

        let answer = ack(4, &Args::from(vec![Arg::Binary(file.clone())])).unwrap();
        assert_eq!(answer.text, r#"461-4[{"_placeholder":true,"num":0}]"#);
        assert_eq!(answer.attachments, VecDeque::from([file]));
    }
}
