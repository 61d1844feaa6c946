//! The send request and its error.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::outbound::handle::is_falsy;

/// The seeds' `send({destination, payload: {topic, data}})`, flattened.
///
/// Deserializes from the JSON the demo's `POST /send` takes: `{destination?, topic, data}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendRequest {
    /// A room name or a socket id; `None` or empty: every client.
    #[serde(default)]
    pub destination: Option<String>,
    /// The event name the clients receive. In JSON, a falsy non-string (`null`, `false`,
    /// `0`) reads as empty, so that the send is dropped as the seeds drop any falsy topic;
    /// another non-string is refused.
    #[serde(default, deserialize_with = "topic_or_falsy")]
    pub topic: String,
    /// The event data.
    #[serde(default)]
    pub data: Value,
    /// Ask for compression, as the seeds' `emitter.compress(true)` does for every send (the
    /// default). Carried on the fan-out wire as `flags.compress`; local delivery leaves
    /// compression to the transport.
    #[serde(default = "compress_default")]
    pub compress: bool,
    /// Log the send at info level (the seeds' `doLog`; off by default to keep high-throughput
    /// sends quiet).
    #[serde(default)]
    pub log: bool,
    /// socket.io's `volatile`: a client that cannot take the message now (its write buffer
    /// is full) simply misses it, quietly. Without it, such a client's miss is logged, and
    /// the client is cut off by [`serve`](crate::serve)'s write timeout (see
    /// [`DEFAULT_SOCKET_BUFFER`](crate::server::DEFAULT_SOCKET_BUFFER)). Carried on the
    /// fan-out wire as `flags.volatile`.
    #[serde(default)]
    pub volatile: bool,
}

fn compress_default() -> bool {
    true
}

fn topic_or_falsy<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(topic) => Ok(topic),
        falsy if is_falsy(&falsy) => Ok(String::new()),
        other => Err(serde::de::Error::custom(format_args!(
            "the topic must be a string, got {other}"
        ))),
    }
}

impl SendRequest {
    /// A message to `destination` (a room or a socket id).
    pub fn to(destination: impl Into<String>, topic: impl Into<String>, data: Value) -> Self {
        Self::new(Some(destination.into()), topic.into(), data)
    }

    /// A message to every connected client, authenticated or not, as the seeds' broadcast
    /// (send to `io-default` to reach authenticated clients only).
    pub fn broadcast(topic: impl Into<String>, data: Value) -> Self {
        Self::new(None, topic.into(), data)
    }

    fn new(destination: Option<String>, topic: String, data: Value) -> Self {
        Self {
            destination,
            topic,
            data,
            compress: compress_default(),
            log: false,
            volatile: false,
        }
    }

    /// The same message, marked volatile (see [`SendRequest::volatile`]).
    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
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
        let req: SendRequest =
            serde_json::from_value(json!({"topic": "t", "data": {"a": 1}})).unwrap();
        assert_eq!(req.room(), None);
        assert!(req.compress && !req.log && !req.volatile);
        let req: SendRequest =
            serde_json::from_value(json!({"destination": "r", "topic": "t", "volatile": true}))
                .unwrap();
        assert_eq!(req.room(), Some("r"));
        assert!(req.volatile);
        assert!(SendRequest::to("r", "t", json!(1)).volatile().volatile);
    }

    #[test]
    fn a_falsy_topic_reads_as_none_and_another_non_string_is_refused() {
        for falsy in [json!(null), json!(false), json!(0), json!("")] {
            let req: SendRequest =
                serde_json::from_value(json!({"topic": falsy, "data": {"a": 1}})).unwrap();
            assert_eq!(req.topic, "", "{falsy}");
        }
        for other in [json!(1), json!(true), json!([]), json!({})] {
            let err = serde_json::from_value::<SendRequest>(json!({"topic": other}))
                .unwrap_err()
                .to_string();
            assert!(err.contains("the topic must be a string"), "{err}");
        }
    }
}
