//! The inbound request: one thing that happened to a socket, flowing down the layer stack.
//!
//! The bridge from socketioxide turns each socket's lifecycle into a sequence of
//! [`SocketRequest`]s (`Handshake` before the CONNECT is answered, `Connect` once it has
//! been, then `Event`s in the order the client sent them, with the
//! synthetic `Authenticated` in between when authentication succeeds, and finally
//! `Disconnect`), and calls the stack once per request, one request of a socket at a time.
//! Layers react to the kinds they care about and pass the rest down to the core service.

use std::fmt;

use socketioxide::adapter::{Adapter, LocalAdapter};
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::socket::DisconnectReason;

use crate::args::Args;
use crate::session::Session;

/// The current time as the seeds' payloads carry it (their `time` field, JavaScript's
/// `new Date().toISOString()`): `2026-11-22T09:30:00.123Z`, UTC, milliseconds. For payloads of
/// your own that clients of the seeds' shape parse with `new Date(time)`.
pub fn iso_now() -> String {
    crate::clock::iso_now()
}

/// A payload of the seeds' server events: `{id, time}` (`authenticated`), `{message, time}`
/// (`unauthenticated`, `rate_limited`), `{time}` (`ping`), the time taken when it is made.
/// Serialized straight into the packet: no JSON map is built on the way.
#[derive(serde::Serialize)]
pub(crate) struct Stamped<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    time: String,
}

impl<'a> Stamped<'a> {
    /// `{time}`.
    pub(crate) fn now() -> Self {
        Self {
            id: None,
            message: None,
            time: iso_now(),
        }
    }

    /// `{id, time}`.
    pub(crate) fn id(id: &'a str) -> Self {
        Self {
            id: Some(id),
            ..Self::now()
        }
    }

    /// `{message, time}`.
    pub(crate) fn message(message: &'a str) -> Self {
        Self {
            message: Some(message),
            ..Self::now()
        }
    }
}

/// Events the seeds define, by name.
pub mod names {
    /// Client → server: asks to be authenticated.
    pub const AUTHENTICATE: &str = "authenticate";
    /// Server → client: `{id, time}` once authentication succeeded.
    pub const AUTHENTICATED: &str = "authenticated";
    /// Server → client: `{message, time}` when authentication failed.
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    /// Server → client keep-alive: `{time}`.
    pub const PING: &str = "ping";
    /// Client → server: `{rooms: [...]}` to join.
    pub const JOIN: &str = "join";
    /// Client → server: `{rooms: [...]}` to leave.
    pub const LEAVE: &str = "leave";

    /// Event names Socket.IO keeps for itself, which no one may emit: a socket.io-client
    /// receiving one takes the packet as malformed and drops its connection. The list of
    /// socket.io's `RESERVED_EVENTS` (the server, the client, the parser and
    /// `@socket.io/redis-emitter` v5 share it); `send`, the fan-out
    /// [`Emitter`](crate::fanout::Emitter) and the [client](crate::client) refuse them.
    pub const RESERVED: &[&str] = &[
        "connect",
        "connect_error",
        "disconnect",
        "disconnecting",
        "newListener",
        "removeListener",
    ];

    /// Whether `name` is one of the [`RESERVED`] event names (case matters, as in JavaScript).
    pub fn is_reserved(name: &str) -> bool {
        RESERVED.contains(&name)
    }
}

/// One lifecycle request of one socket.
pub struct SocketRequest<A: Adapter = LocalAdapter> {
    /// The socket it concerns.
    pub socket: SocketRef<A>,
    /// The socket's shared state.
    pub session: Session,
    /// What happened.
    pub kind: RequestKind<A>,
}

/// What happened to the socket.
pub enum RequestKind<A: Adapter = LocalAdapter> {
    /// The client asked to connect to the namespace and has not been answered yet (the first
    /// request of every socket). A layer may refuse it here
    /// ([`Session::refuse_connection`]): the client then gets `connect_error` and the socket
    /// goes no further (no `Connect`, no `Disconnect`). The socket is not connected yet:
    /// nothing can be emitted to it.
    Handshake,
    /// The socket connected to the namespace (the client has its CONNECT answer).
    Connect,
    /// The client emitted an event.
    Event(ClientEvent<A>),
    /// Synthetic: the socket has just been authenticated. The bridge sends it through the
    /// whole stack right after the request during which an auth layer called
    /// [`Session::complete_authentication`], or right after `Connect` when no layer defers
    /// authentication.
    Authenticated,
    /// The socket disconnected (the last request of every socket that connected: one refused
    /// at its `Handshake`, or gone before its CONNECT could be answered, gets none).
    Disconnect(DisconnectReason),
}

/// An event emitted by the client.
pub struct ClientEvent<A: Adapter = LocalAdapter> {
    /// The event name.
    pub name: String,
    /// Every argument of the event, in order, binary attachments in place
    /// ([`Arg::Binary`](crate::args::Arg::Binary)); empty when the client sent none.
    pub args: Args,
    /// Answers the client's acknowledgement callback (sending on it is a no-op when the
    /// client asked for none); `None` for synthetic events made without a socket packet.
    pub ack: Option<AckSender<A>>,
}

impl<A: Adapter> SocketRequest<A> {
    /// A request of `kind` for `socket`.
    pub fn new(socket: SocketRef<A>, session: Session, kind: RequestKind<A>) -> Self {
        Self {
            socket,
            session,
            kind,
        }
    }

    /// The client event, if this request is one.
    pub fn event(&self) -> Option<&ClientEvent<A>> {
        match &self.kind {
            RequestKind::Event(ev) => Some(ev),
            _ => None,
        }
    }

    /// The event name, if this request is a client event.
    pub fn event_name(&self) -> Option<&str> {
        self.event().map(|ev| ev.name.as_str())
    }
}

impl<A: Adapter> RequestKind<A> {
    /// A short name for logs: `handshake`, `connect`, `event`, `authenticated` or
    /// `disconnect`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Handshake => "handshake",
            Self::Connect => "connect",
            Self::Event(_) => "event",
            Self::Authenticated => "authenticated",
            Self::Disconnect(_) => "disconnect",
        }
    }
}

impl<A: Adapter> fmt::Debug for SocketRequest<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("SocketRequest");
        d.field("socket", &self.socket.id)
            .field("kind", &self.kind.label());
        match &self.kind {
            RequestKind::Event(ev) => d.field("event", &ev.name),
            RequestKind::Disconnect(reason) => d.field("reason", reason),
            _ => &mut d,
        };
        d.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::names;

    #[test]
    fn reserved_names_are_socket_io_s_and_nothing_else() {
        for name in [
            "connect",
            "connect_error",
            "disconnect",
            "disconnecting",
            "newListener",
            "removeListener",
        ] {
            assert!(names::is_reserved(name), "{name}");
        }
        for name in [
            "",
            "Connect",
            "disconnect ",
            "newlistener",
            "connection",
            names::AUTHENTICATE,
            names::PING,
            "news",
        ] {
            assert!(!names::is_reserved(name), "{name:?}");
        }
    }
}
