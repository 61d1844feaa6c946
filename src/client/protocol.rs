//! The text packets of Engine.IO v4 and Socket.IO v5 that the client speaks, over WebSocket.
//!
//! Engine.IO: `0{open json}`, `1` close, `2` ping, `3` pong, `4<payload>` message, `6` noop.
//! Socket.IO (inside a message): `0{auth}` connect, `1` disconnect, `2[...]` event,
//! `3[...]` ack, `4{...}` connect error, each with an optional namespace (`/nsp,`) and, for
//! events and acks, an optional ack id between the type and the data. Only the default
//! namespace is used here; binary packets (`5`, `6`) are not supported and are reported as
//! [`Packet::Unsupported`].

use serde::Deserialize;
use serde_json::Value;

/// The Engine.IO open packet's payload.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Open {
    /// The Engine.IO session id.
    pub sid: String,
    /// Milliseconds between the server's pings.
    pub ping_interval: u64,
    /// Milliseconds the server waits for a pong.
    pub ping_timeout: u64,
}

/// A packet received from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    /// Engine.IO open.
    Open(Open),
    /// Engine.IO close.
    Close,
    /// Engine.IO ping (answered with a pong).
    Ping,
    /// Engine.IO noop, or pong.
    Noop,
    /// Socket.IO connect acknowledged, with the socket id.
    Connect {
        /// The Socket.IO socket id.
        sid: Option<String>,
    },
    /// Socket.IO disconnect from the server.
    Disconnect,
    /// Socket.IO event: name, arguments, ack id when the server asks for an answer.
    Event {
        /// The event name.
        name: String,
        /// Its arguments.
        args: Vec<Value>,
        /// The ack id, when the server asked for an acknowledgement.
        ack: Option<u64>,
    },
    /// Socket.IO ack of one of our emits.
    Ack {
        /// The ack id we sent.
        id: u64,
        /// The server's answer.
        args: Vec<Value>,
    },
    /// Socket.IO connect error, with the server's message.
    ConnectError(String),
    /// Anything this client does not handle (binary packets, other namespaces, garbage).
    Unsupported(String),
}

/// Parses one WebSocket text frame.
pub fn decode(text: &str) -> Packet {
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

fn decode_socketio(text: &str) -> Option<Packet> {
    let kind = text.chars().next()?;
    let mut rest = &text[kind.len_utf8()..];
    // A namespace other than the default one is not ours.
    if rest.starts_with('/') {
        let (nsp, after) = rest.split_once(',').unwrap_or((rest, ""));
        if nsp != "/" {
            return None;
        }
        rest = after;
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let ack = if digits > 0 {
        rest[..digits].parse::<u64>().ok()
    } else {
        None
    };
    let data = &rest[digits..];
    match kind {
        '0' => {
            let sid = serde_json::from_str::<Value>(data)
                .ok()
                .and_then(|v| v.get("sid").and_then(Value::as_str).map(str::to_owned));
            Some(Packet::Connect { sid })
        }
        '1' => Some(Packet::Disconnect),
        '2' => {
            let Value::Array(mut args) = serde_json::from_str(data).ok()? else {
                return None;
            };
            if args.is_empty() {
                return None;
            }
            let Value::String(name) = args.remove(0) else {
                return None;
            };
            Some(Packet::Event { name, args, ack })
        }
        '3' => {
            let Value::Array(args) = serde_json::from_str(data).ok()? else {
                return None;
            };
            Some(Packet::Ack { id: ack?, args })
        }
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
        _ => None,
    }
}

/// At most 200 characters of `text`, for logs.
fn truncate(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// The Engine.IO pong.
pub const PONG: &str = "3";

/// Socket.IO connect to the default namespace, with the `auth` payload if any.
pub fn connect(auth: Option<&Value>) -> String {
    match auth {
        Some(auth) => format!("40{auth}"),
        None => "40".to_owned(),
    }
}

/// Socket.IO disconnect from the default namespace.
pub const DISCONNECT: &str = "41";

/// A Socket.IO event, with an ack id when an answer is wanted; `data: None` sends the event
/// without arguments (as `socket.emit('authenticate')` does).
pub fn event(name: &str, data: Option<&Value>, ack: Option<u64>) -> String {
    let mut args = vec![Value::String(name.to_owned())];
    args.extend(data.cloned());
    let args = Value::Array(args);
    match ack {
        Some(id) => format!("42{id}{args}"),
        None => format!("42{args}"),
    }
}

/// A Socket.IO ack answering the server's ack id.
pub fn ack(id: u64, data: &Value) -> String {
    format!("43{id}{}", Value::Array(vec![data.clone()]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
                args: vec![json!({"time": "t"})],
                ack: None
            }
        );
        assert_eq!(
            decode(r#"4212["ask",1,2]"#),
            Packet::Event {
                name: "ask".into(),
                args: vec![json!(1), json!(2)],
                ack: Some(12)
            }
        );
        assert_eq!(
            decode(r#"437["ok"]"#),
            Packet::Ack {
                id: 7,
                args: vec![json!("ok")]
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
                args: vec![],
                ack: None
            }
        );
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
            "451-[\"bin\",{}]",
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
    fn encodes_the_client_packets() {
        assert_eq!(connect(Some(&json!({"token": "t"}))), r#"40{"token":"t"}"#);
        assert_eq!(connect(None), "40");
        assert_eq!(
            event("join", Some(&json!({"rooms": ["a"]})), None),
            r#"42["join",{"rooms":["a"]}]"#
        );
        assert_eq!(event("q", Some(&json!(1)), Some(3)), r#"423["q",1]"#);
        assert_eq!(event("authenticate", None, None), r#"42["authenticate"]"#);
        assert_eq!(ack(5, &json!({"ok": true})), r#"435[{"ok":true}]"#);
    }
}
