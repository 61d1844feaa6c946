//! How a layer decides who the client is: the answer of an authenticate function
//! ([`AuthOutcome`]), and the contract every authentication layer follows, the built-in ones
//! ([`AuthLayer`](crate::layers::AuthLayer), [`HandshakeAuthLayer`](crate::layers::HandshakeAuthLayer))
//! and yours, so that the layers beneath and the handlers work with it unchanged.
//!
//! # The contract
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
//! # Your own, from a function
//!
//! An API key in a header, checked at the handshake, in a few lines with
//! [`from_fn`](fn@crate::layers::from_fn):
//!
//! ```
//! use socketio_stack::authentication::admit;
//! use socketio_stack::layers::{Next, from_fn};
//! use socketio_stack::{BoxError, Identity, RequestKind, SocketRequest, SocketServer};
//!
//! fn owner_of(key: Option<&str>) -> Option<String> {
//!     (key == Some("k-123")).then(|| "acme".to_owned())
//! }
//!
//! async fn api_key(req: SocketRequest, next: Next) -> Result<(), BoxError> {
//!     if let RequestKind::Handshake = req.kind {
//!         req.session.defer_authentication(); // 1. claim
//!         let owner = owner_of(req.session.handshake().header("x-api-key"));
//!         if !admit(&req.session, owner) {
//!             req.session.refuse_connection("unknown API key"); // 4. refuse
//!             return Ok(());
//!         }
//!         // 3. completed: `Authenticated` follows `Connect`. 2: nothing to gate, since a
//!         // refused client never gets a socket.
//!     }
//!     next.run(req).await
//! }
//!
//! let server = SocketServer::builder()
//!     .layer(from_fn(api_key))
//!     .on("whoami", async |Identity(owner): Identity<String>| tracing::info!(%owner))
//!     .build()
//!     .unwrap();
//! # let _ = server;
//! ```

use crate::identity::IdentityValue;
use crate::session::Session;

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
/// [contract](self#the-contract)); returns whether the client was let in.
pub fn admit(session: &Session, outcome: impl AuthOutcome) -> bool {
    outcome.admit(session)
}
