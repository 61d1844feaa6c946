//! Who the client is: the identity authentication finds, where it is kept, and the contract
//! every authentication layer follows (the built-in ones and yours).
//!
//! # The identity
//!
//! An authenticate function answers with an [`AuthOutcome`]: `bool` (the seeds' form: `true`
//! lets the client in with no identity) or `Option<T>` (`Some(user)` lets it in as `user`,
//! `None` refuses it). `Err(_)` is the seeds' second failure path. The identity is kept with
//! the socket, once: every layer beneath reads it with
//! [`Session::identity`], every handler (the authenticated callback included) with the
//! [`Identity`] extractor, and the fleet sees it, serialized, as the socket's `data` (a Node
//! server's `fetchSockets()` answer; [`Session::data`]).
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
//! # The authentication contract
//!
//! What a layer that decides who the client is does, so that the layers beneath and the
//! handlers work with it as with [`AuthLayer`](crate::layers::AuthLayer):
//!
//! 1. **Claim** the socket when its `Connect` (or `Handshake`) request passes:
//!    [`Session::defer_authentication`]. Without a claim, the bridge counts the socket as
//!    authenticated right after `Connect`.
//! 2. **Gate** while it is not authenticated: pass down only what the layers beneath may see
//!    of an unauthenticated socket ([`Session::state`]).
//! 3. **Complete** once the client has proven who it is: [`admit`] with the authenticate
//!    function's answer (or [`Session::complete_authentication_as`] /
//!    [`Session::complete_authentication`] directly). The identity is kept, the state becomes
//!    `authenticated`, and as soon as the current request is done the bridge sends the
//!    synthetic `Authenticated` request through the whole stack, from the top: the auth
//!    timeout stops, ping and the default rooms start, the authenticated callback runs.
//! 4. **Refuse** with [`Session::disconnect`] (after telling the client why), or, during the
//!    `Handshake` request, with [`Session::refuse_connection`]: the client then gets
//!    `connect_error` `{message}` and never gets a socket.
//!
//! `examples/custom_layer.rs` builds one in a few lines with
//! [`from_fn`](crate::layers::from_fn).

use serde::Serialize;

use crate::session::Session;

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

/// An authenticate function's answer: whether the client may in, and as whom.
pub trait AuthOutcome: Send + 'static {
    /// On acceptance, completes the socket's authentication (its identity kept) and returns
    /// `true`; on refusal, does nothing and returns `false`.
    fn admit(self, session: &Session) -> bool;
}

/// The seeds' form: `true` lets the client in, with no identity.
impl AuthOutcome for bool {
    fn admit(self, session: &Session) -> bool {
        if self {
            session.complete_authentication();
        }
        self
    }
}

/// `Some(identity)` lets the client in as `identity`; `None` refuses it.
impl<T: IdentityValue> AuthOutcome for Option<T> {
    fn admit(self, session: &Session) -> bool {
        match self {
            Some(identity) => {
                session.complete_authentication_as(identity);
                true
            }
            None => false,
        }
    }
}

/// Applies an authenticate function's answer to the socket (step 3 of the
/// [contract](self#the-authentication-contract)); returns whether the client was let in.
pub fn admit(session: &Session, outcome: impl AuthOutcome) -> bool {
    outcome.admit(session)
}

/// The socket's `data` for the fleet: the identity serialized, kept beside it.
#[derive(Clone)]
pub(crate) struct SocketData(pub(crate) std::sync::Arc<serde_json::Value>);

/// Why the socket's CONNECT is refused, set during its `Handshake` request.
#[derive(Clone)]
pub(crate) struct ConnectRefusal(pub(crate) String);
