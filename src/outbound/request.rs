//! The send request and its error.

use serde::Deserialize;

use crate::args::{Arg, Args};

/// The seeds' `send({destination, payload: {topic, data}})`, flattened, with any number of
/// arguments where the seeds have one `data`.
///
/// Deserializes from the JSON the demo's `POST /send` takes: `{destination?, topic, data}`
/// (one argument), or `{destination?, topic, args: [...]}` (each item an argument).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "SendBody")]
pub struct OutboundMessage {
    /// A room name or a socket id; `None` or empty: every client.
    #[serde(default)]
    pub destination: Option<String>,
    /// The event name the clients receive. In JSON, a falsy non-string (`null`, `false`,
    /// `0`) reads as empty, so that the send is dropped as the seeds drop any falsy topic;
    /// another non-string is refused.
    pub topic: String,
    /// The event's arguments, in order (the seeds' `data` is the one argument); binary ones
    /// reach the clients as binary attachments. No argument, or a single falsy one, drops the
    /// send as the seeds drop falsy data.
    pub args: Args,
    /// Ask for compression, as the seeds' `emitter.compress(true)` does for every send (the
    /// default). Carried on the fan-out wire as `flags.compress`; local delivery leaves
    /// compression to the transport.
    pub compress: bool,
    /// Log the send at info level (the seeds' `doLog`; off by default to keep high-throughput
    /// sends quiet).
    pub log: bool,
    /// socket.io's `volatile`: a client that cannot take the message now (its write buffer
    /// is full) simply misses it, quietly. Without it, such a client's miss is logged, and
    /// the client is cut off by [`serve`](crate::serve)'s write timeout (see
    /// [`DEFAULT_SOCKET_BUFFER`](crate::limits::DEFAULT_SOCKET_BUFFER)). Carried on the
    /// fan-out wire as `flags.volatile`.
    pub volatile: bool,
    /// The namespace of the sockets it goes to; `None`: the main namespace `/`. In JSON,
    /// `namespace`.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// The JSON of a send, before its arguments are settled.
#[derive(Deserialize)]
struct SendBody {
    #[serde(default)]
    destination: Option<String>,
    #[serde(default, deserialize_with = "topic_or_falsy")]
    topic: String,
    // Read straight into arguments, without a `serde_json::Value` in between.
    #[serde(default)]
    data: Option<Arg>,
    #[serde(default)]
    args: Option<Vec<Arg>>,
    #[serde(default = "compress_default")]
    compress: bool,
    #[serde(default)]
    log: bool,
    #[serde(default)]
    volatile: bool,
    #[serde(default)]
    namespace: Option<String>,
}

impl TryFrom<SendBody> for OutboundMessage {
    type Error = String;

    fn try_from(b: SendBody) -> Result<Self, String> {
        let args = match (b.data, b.args) {
            (Some(_), Some(_)) => {
                return Err("give `data` (one argument) or `args` (several), not both".into());
            }
            (Some(data), None) => Args::from(data),
            (None, Some(args)) => Args::from(args),
            (None, None) => Args::new(),
        };
        Ok(Self {
            destination: b.destination,
            topic: b.topic,
            args,
            compress: b.compress,
            log: b.log,
            volatile: b.volatile,
            namespace: b.namespace,
        })
    }
}

fn compress_default() -> bool {
    true
}

fn topic_or_falsy<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Arg::deserialize(d)? {
        Arg::String(topic) => Ok(topic),
        falsy if falsy.is_falsy() => Ok(String::new()),
        other => Err(serde::de::Error::custom(format_args!(
            "the topic must be a string, got {}",
            other.to_json().unwrap_or_default()
        ))),
    }
}

impl OutboundMessage {
    /// A message to `destination` (a room or a socket id) with one argument, `data` (a JSON
    /// value, [`Bytes`](bytes::Bytes), or any [`Arg`]).
    pub fn to(
        destination: impl Into<String>,
        topic: impl Into<String>,
        data: impl Into<Arg>,
    ) -> Self {
        Self::new(
            Some(destination.into()),
            topic.into(),
            Args::from(data.into()),
        )
    }

    /// A message to every connected client, authenticated or not, as the seeds' broadcast
    /// (send to `io-default` to reach authenticated clients only), with one argument.
    pub fn broadcast(topic: impl Into<String>, data: impl Into<Arg>) -> Self {
        Self::new(None, topic.into(), Args::from(data.into()))
    }

    fn new(destination: Option<String>, topic: String, args: Args) -> Self {
        Self {
            destination,
            topic,
            args,
            compress: compress_default(),
            log: false,
            volatile: false,
            namespace: None,
        }
    }

    /// The same message with these arguments instead:
    /// `OutboundMessage::to("lobby", "chat", "ann").with_args(vec![Arg::from("ann"), Arg::from("hi")])`
    /// sends `42["chat","ann","hi"]`.
    pub fn with_args(mut self, args: impl Into<Args>) -> Self {
        self.args = args.into();
        self
    }

    /// The same message, marked volatile (see [`OutboundMessage::volatile`]).
    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }

    /// The same message, to the sockets of namespace `nsp` (a static namespace, or an
    /// instance of a dynamic one, such as `/tenant-7`) instead of `/`.
    pub fn in_namespace(mut self, nsp: impl Into<String>) -> Self {
        self.namespace = Some(nsp.into());
        self
    }

    /// The namespace it goes to (`/` unless set).
    pub fn nsp(&self) -> &str {
        self.namespace.as_deref().unwrap_or("/")
    }

    /// The destination, `None` when it is absent or empty (meaning every client).
    pub fn room(&self) -> Option<&str> {
        self.destination.as_deref().filter(|d| !d.is_empty())
    }
}

/// A send that could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The data could not be encoded.
    Encode(String),
    /// The delivery path refused or failed (e.g. the adapter or the broker).
    Delivery(String),
    /// The topic is one of Socket.IO's reserved event names
    /// ([`names::RESERVED`](crate::event::names::RESERVED)), which would make every
    /// socket.io-client receiving it drop its connection. Nothing was sent.
    ReservedTopic(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Encode(e) => write!(f, "could not encode the message: {e}"),
            Self::Delivery(e) => write!(f, "could not deliver the message: {e}"),
            Self::ReservedTopic(t) => write!(
                f,
                "cannot send topic {t:?}: it is a reserved Socket.IO event name ({}), which clients would take as a malformed packet",
                crate::event::names::RESERVED.join(", ")
            ),
        }
    }
}

impl std::error::Error for SendError {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_demo_body_deserializes_with_its_defaults() {
        let req: OutboundMessage =
            serde_json::from_value(json!({"topic": "t", "data": {"a": 1}})).unwrap();
        assert_eq!(req.room(), None);
        assert!(req.compress && !req.log && !req.volatile);
        let req: OutboundMessage =
            serde_json::from_value(json!({"destination": "r", "topic": "t", "volatile": true}))
                .unwrap();
        assert_eq!(req.room(), Some("r"));
        assert!(req.volatile);
        assert!(OutboundMessage::to("r", "t", json!(1)).volatile().volatile);
    }

    #[test]
    fn the_demo_body_takes_one_argument_as_data_or_several_as_args_not_both() {
        let one: OutboundMessage =
            serde_json::from_value(json!({"topic": "t", "data": [1, 2]})).unwrap();
        assert_eq!(one.args.len(), 1, "an array in `data` is one argument");
        let several: OutboundMessage =
            serde_json::from_value(json!({"topic": "t", "args": [1, "2", {"3": true}]})).unwrap();
        assert_eq!(several.args.len(), 3);
        assert_eq!(several.args[2], json!({"3": true}));
        let none: OutboundMessage = serde_json::from_value(json!({"topic": "t"})).unwrap();
        assert!(none.args.is_empty());
        let err = serde_json::from_value::<OutboundMessage>(
            json!({"topic": "t", "data": 1, "args": [2]}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not both"), "{err}");
    }

    #[test]
    fn a_falsy_topic_reads_as_none_and_another_non_string_is_refused() {
        for falsy in [json!(null), json!(false), json!(0), json!("")] {
            let req: OutboundMessage =
                serde_json::from_value(json!({"topic": falsy, "data": {"a": 1}})).unwrap();
            assert_eq!(req.topic, "", "{falsy}");
        }
        for other in [json!(1), json!(true), json!([]), json!({})] {
            let err = serde_json::from_value::<OutboundMessage>(json!({"topic": other}))
                .unwrap_err()
                .to_string();
            assert!(err.contains("the topic must be a string"), "{err}");
        }
    }
}
