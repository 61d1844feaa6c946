//! The client's errors, each with an HTTP-like status as the seeds' `getError()` gives them.

use std::time::Duration;

/// What went wrong in the client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientError {
    /// Emitting while not connected (the seeds' "Invalid socket client state to emit", 400).
    NotConnected,
    /// Emitting without a topic (the seeds' "Topic is required to emit", 400).
    MissingTopic,
    /// Emitting a reserved event name
    /// ([`names::RESERVED`](crate::event::names::RESERVED)), as socket.io-client refuses
    /// it (`"disconnect" is a reserved event name`, 400).
    ReservedTopic(String),
    /// The host or path does not make a valid URL (400).
    InvalidUrl(String),
    /// The TLS settings cannot be used: root certificates that do not parse, or given for a
    /// server without TLS (400).
    Tls(String),
    /// The connection could not be made or was lost (503).
    Transport(String),
    /// The server refused the Socket.IO connection (`connect_error`; 401).
    Refused(String),
    /// Connecting took longer than the configured timeout (504).
    Timeout(Duration),
    /// No acknowledgement came in time (504).
    AckTimeout(Duration),
    /// The data could not be encoded (400), or received data does not fit what it was asked
    /// for (an acknowledgement holding binary data, read as JSON).
    Encode(String),
    /// The client has been shut down (410).
    Shutdown,
}

impl ClientError {
    /// The HTTP-like status of the error.
    pub fn status(&self) -> u16 {
        match self {
            Self::NotConnected
            | Self::MissingTopic
            | Self::ReservedTopic(_)
            | Self::InvalidUrl(_)
            | Self::Tls(_)
            | Self::Encode(_) => 400,
            Self::Refused(_) => 401,
            Self::Shutdown => 410,
            Self::Transport(_) => 503,
            Self::Timeout(_) | Self::AckTimeout(_) => 504,
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotConnected => f.write_str("Invalid socket client state to emit"),
            Self::MissingTopic => f.write_str("Topic is required to emit"),
            Self::ReservedTopic(t) => write!(f, "{t:?} is a reserved event name"),
            Self::InvalidUrl(e) => write!(f, "invalid server URL: {e}"),
            Self::Tls(e) => write!(f, "invalid TLS settings: {e}"),
            Self::Transport(e) => write!(f, "connection failed: {e}"),
            Self::Refused(e) => write!(f, "the server refused the connection: {e}"),
            Self::Timeout(d) => write!(f, "could not connect within {d:?}"),
            Self::AckTimeout(d) => write!(f, "no acknowledgement within {d:?}"),
            Self::Encode(e) => write!(f, "could not encode the data: {e}"),
            Self::Shutdown => f.write_str("the client has been shut down"),
        }
    }
}

impl std::error::Error for ClientError {}
