//! Who the client is: the identity authentication finds, and how it is kept with the socket.
//! How a layer finds it is [`authentication`](crate::authentication)'s part.
//!
//! An authenticate function answers with an
//! [`AuthOutcome`](crate::authentication::AuthOutcome): `bool` (the seeds' form: `true`
//! lets the client in with no identity) or `Option<T>` (`Some(user)` lets it in as `user`,
//! `None` refuses it). `Err(_)` is the seeds' second failure path. The identity is kept with
//! the socket, once: every layer beneath reads it with
//! [`Session::identity`](crate::Session::identity), every handler (the authenticated callback included) with the
//! [`Identity`] extractor, and the fleet sees it, serialized, as the socket's `data` (a Node
//! server's `fetchSockets()` answer; [`Session::data`](crate::Session::data)).
//!
//! ```
//! use std::sync::Arc;
//! use socketio_stack::identity::Identity;
//! use socketio_stack::layers::AuthLayer;
//! use socketio_stack::{Handshake, SocketServer};
//!
//! #[derive(Clone, serde::Serialize)]
//! struct User { name: String }
//!
//! async fn authenticate(hs: Arc<Handshake>) -> Result<Option<User>, std::io::Error> {
//!     Ok(match hs.auth_field("token") {
//!         Some("alice-token") => Some(User { name: "alice".into() }),
//!         _ => None,
//!     })
//! }
//!
//! async fn whoami(Identity(user): Identity<User>, ack: socketioxide::extract::AckSender) {
//!     ack.send(&user.name).ok();
//! }
//!
//! let server = SocketServer::builder()
//!     .layer(AuthLayer::new(authenticate))
//!     .on("whoami", whoami)
//!     .build()
//!     .unwrap();
//! # let _ = server;
//! ```
//!
use std::any::Any;
use std::sync::Arc;

use serde::Serialize;

/// The identity authentication found, as kept with the socket and as a handler extracts it:
/// `Identity(user): Identity<User>`. A handler asking for an identity the socket has not (no
/// authentication, or one of another type) is not called, and that is logged; ask for
/// `Option<Identity<User>>` where both are expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity<T>(pub T);

/// What an identity type must be: kept with the socket (cloned out for each reader) and
/// serialized once as the socket's `data` for the fleet.
pub trait IdentityValue: Serialize + Clone + Send + Sync + 'static {}

impl<T: Serialize + Clone + Send + Sync + 'static> IdentityValue for T {}

/// The identity as kept with the socket: the value (of whatever type authentication gave)
/// and its serialized form, the socket's `data` for the fleet, in one slot so that they are
/// replaced together and an identity of another type never lingers beside the new one.
#[derive(Clone)]
pub(crate) struct StoredIdentity {
    pub(crate) value: Arc<dyn Any + Send + Sync>,
    pub(crate) data: Arc<serde_json::Value>,
}

/// Why the socket's CONNECT is refused, set during its `Handshake` request.
#[derive(Clone)]
pub(crate) struct ConnectRefusal(pub(crate) String);
