//! The server side of the [Socket.IO Admin UI](https://socket.io/docs/v4/admin-ui/)
//! (`@socket.io/admin-ui` 0.5, the official web app), as its JavaScript `instrument()` does
//! it: the UI connects to a namespace of its own (`/admin` by default), and sees this
//! server's (and, with a Redis fan-out, every server's) stats, sockets with their rooms and
//! data, rooms and events; unless read-only, it can disconnect a socket or make it join or
//! leave a room. Behind the `admin-ui` feature.
//!
//! ```no_run
//! use socketio_stack::SocketServer;
//! use socketio_stack::admin_ui::AdminUi;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // A bcrypt hash, as the JavaScript package takes it: `htpasswd -nbBC 10 "" secret`,
//! // or `node -e 'console.log(require("bcryptjs").hashSync("secret", 10))'`.
//! let hash = "$2b$10$JPOr3g3uqZtm1QCr6ApKT.Fi47xKDuq0vyQnq/ey.a8CCRJ/65RWi"; // "secret"
//! let server = SocketServer::builder()
//!     .admin_ui(AdminUi::new().basic_auth("admin", hash).server_id("eu-1"))
//!     .build()?;
//! // Serve `server.layer()` as usual, then open https://admin.socket.io (or the package's
//! // `ui/dist` served by you) with the server's URL, the path (`/io`), `admin` and `secret`.
//! # let _ = server; Ok(()) }
//! ```
//!
//! What the UI gets, as from a Node server:
//! - at its connect: `session` (a session id, after a password login), `config` (what this
//!   server supports), `server_stats` (this server's, so the UI need not wait) and, in
//!   development mode, `all_sockets`: the sockets of every namespace of the whole fleet
//!   (through [`RedisFanout::fleet`](crate::fanout::RedisFanout::fleet) when there is a
//!   fan-out);
//! - every 2 s, from every server of the fleet, `server_stats`: id, host, pid, uptime, socket
//!   counts per namespace, and what happened each second (`aggregatedEvents`: connections,
//!   disconnections by reason, events received);
//! - in development mode, as it happens: `socket_connected`, `socket_updated` (the socket's
//!   `data` once authentication found who it is), `room_joined` and `room_left` (rooms
//!   changed while one of the socket's requests was handled: default rooms, `join`/`leave`),
//!   `event_received` and `socket_disconnected`, for every socket that goes through the
//!   stack, and `socket_connected`/`socket_disconnected` for the admin namespace's own.
//!
//! The UI's commands (`join`, `leave`, `_disconnect`, `emit`, with a room or socket id as
//! filter) act on the whole fleet; in [`readonly`](AdminUi::readonly) mode they are ignored,
//! as in the JavaScript package. [`Mode::Production`] sends only `session`, `config` and
//! `server_stats`.
//!
//! The admin namespace does not go through the application's layers: it has its own basic
//! auth (the UI's `{username, password}`, the password checked against a bcrypt hash, or a
//! session id a password login gave), refusing with `connect_error` `invalid credentials`.
//!
//! Bounds, so that an admin client (authenticated or not) cannot make a server do unbounded
//! work: two bcrypt checks run at once (others wait for their turn); `all_sockets` lists at
//! most [`max_sockets`](AdminUi::max_sockets) sockets (10,000 by default); at most 8
//! commands or `all_sockets` run at once, further commands are dropped; names in commands
//! are at most 256 bytes; at most 1,000 session ids are kept (24 h each); events reported to
//! the UIs wait in a queue of 1,024, then are dropped, and an `event_received` shows the
//! arguments only when they take at most 16 KiB.
//!
//! In development mode, each request of a socket costs a copy of its rooms before and after
//! (for `room_joined`/`room_left`) and each event a copy of its arguments (for
//! `event_received`); production mode costs a count per request.
//!
//! Differences from the JavaScript package: `session` comes right after the CONNECT answer,
//! where Node sends it just before (so the UI, whose listeners are set once it is connected,
//! never sees Node's), and `server_stats` is also sent at a UI's connect. Not reported
//! (socketioxide does not show them): `event_sent`, transport upgrades, the Engine.IO
//! traffic in bytes, and the sockets' Engine.IO ids (the "Clients" page groups a socket by
//! the first 12 characters of its id instead, so a client with two namespaces shows as two).

mod namespace;
mod observer;
mod protocol;
mod sessions;

use std::time::Duration;

pub(crate) use namespace::{AdminHub, AdminTasks};
pub(crate) use observer::AdminObserverLayer;

use crate::error::BuildError;

/// The namespace the UI connects to by default, as in the JavaScript package.
pub const DEFAULT_NAMESPACE: &str = "/admin";

/// How often every server sends its `server_stats`, as in the JavaScript package.
pub const STATS_INTERVAL: Duration = Duration::from_secs(2);

/// How many sockets an `all_sockets` lists at most (see [`AdminUi::max_sockets`]).
pub const DEFAULT_MAX_SOCKETS: usize = 10_000;

/// What the UI is sent (the JavaScript package's `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Everything: sockets, rooms and events as they happen.
    #[default]
    Development,
    /// Only `session`, `config` and `server_stats`: no socket, room or event is serialized.
    Production,
}

/// How an admin client proves who it is.
#[derive(Clone)]
enum Auth {
    /// Everyone is admitted (the JavaScript package's `auth: false`).
    None,
    /// `{username, password}` against this user and bcrypt hash.
    Basic {
        username: String,
        password_hash: String,
    },
}

/// The Admin UI's configuration; give it to
/// [`SocketServerBuilder::admin_ui`](crate::SocketServerBuilder::admin_ui). See the
/// [module docs](self).
#[derive(Clone)]
pub struct AdminUi {
    namespace: String,
    auth: Option<Auth>,
    readonly: bool,
    mode: Mode,
    server_id: Option<String>,
    max_sockets: usize,
}

impl std::fmt::Debug for AdminUi {
    /// Shows the user, never the hash.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match &self.auth {
            None => "unset".to_owned(),
            Some(Auth::None) => "none".to_owned(),
            Some(Auth::Basic { username, .. }) => format!("basic ({username})"),
        };
        f.debug_struct("AdminUi")
            .field("namespace", &self.namespace)
            .field("auth", &auth)
            .field("readonly", &self.readonly)
            .field("mode", &self.mode)
            .field("server_id", &self.server_id)
            .field("max_sockets", &self.max_sockets)
            .finish()
    }
}

impl Default for AdminUi {
    fn default() -> Self {
        Self::new()
    }
}

impl AdminUi {
    /// The namespace `/admin`, development mode, commands allowed, the host name as server
    /// id. An authentication must be chosen ([`basic_auth`](Self::basic_auth) or
    /// [`no_auth`](Self::no_auth)), as the JavaScript package requires: the build fails
    /// without one.
    pub fn new() -> Self {
        Self {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            auth: None,
            readonly: false,
            mode: Mode::Development,
            server_id: None,
            max_sockets: DEFAULT_MAX_SOCKETS,
        }
    }

    /// The namespace the UI connects to (default `/admin`; the UI's "Admin namespace").
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Admits the UI that gives `username` and a password matching `password_hash`, a
    /// bcrypt hash (`$2a$`, `$2b$`, `$2x$` or `$2y$`, as bcryptjs and `htpasswd -B` make
    /// them); a hash that is not one makes the build fail.
    pub fn basic_auth(
        mut self,
        username: impl Into<String>,
        password_hash: impl Into<String>,
    ) -> Self {
        self.auth = Some(Auth::Basic {
            username: username.into(),
            password_hash: password_hash.into(),
        });
        self
    }

    /// Admits every admin client (the JavaScript package's `auth: false`): only where the
    /// admin namespace cannot be reached from outside.
    pub fn no_auth(mut self) -> Self {
        self.auth = Some(Auth::None);
        self
    }

    /// Ignores the UI's commands (join, leave, disconnect, emit); the UI is told so in
    /// `config` and hides its buttons.
    pub fn readonly(mut self, readonly: bool) -> Self {
        self.readonly = readonly;
        self
    }

    /// What the UI is sent (default [`Mode::Development`]).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// This server's id in the UI's "Servers" page (default: the host name). Servers of one
    /// fleet need different ids: the UI shows one row per id.
    pub fn server_id(mut self, id: impl Into<String>) -> Self {
        self.server_id = Some(id.into());
        self
    }

    /// How many sockets an `all_sockets` lists at most, over every namespace and server
    /// (default [`DEFAULT_MAX_SOCKETS`]); must be above 0.
    pub fn max_sockets(mut self, max: usize) -> Self {
        self.max_sockets = max;
        self
    }

    /// The admin namespace.
    pub(crate) fn namespace_path(&self) -> &str {
        &self.namespace
    }

    /// Whether events are reported as they happen.
    pub(crate) fn development(&self) -> bool {
        self.mode == Mode::Development
    }

    /// Checks the configuration, as the builder's `build` does.
    pub(crate) fn check(&self) -> Result<(), BuildError> {
        let refuse = |reason: String| Err(BuildError::InvalidAdminUi(reason));
        let ns = &self.namespace;
        if !ns.starts_with('/') || ns == "/" || ns.contains(['?', '#']) {
            return refuse(format!(
                "namespace {ns:?}: it must start with '/', must not be '/' and must hold no '?' or '#'"
            ));
        }
        match &self.auth {
            None => refuse(
                "an authentication must be chosen: basic_auth(username, password_hash) or no_auth()"
                    .into(),
            ),
            Some(Auth::Basic { password_hash, .. })
                if password_hash.parse::<bcrypt::HashParts>().is_err() =>
            {
                refuse("the password hash must be a bcrypt hash ($2a$, $2b$, $2x$ or $2y$)".into())
            }
            _ if self.max_sockets == 0 => refuse("max_sockets must be above 0".into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made in Node by bcryptjs 3.0.3: `hashSync("s3cret", 4)` (`$2b$`, bcryptjs 3's
    /// default) and `hashSync("s3cret", "$2a$04$JZTwakoGwO0XzlrKRjuFuu")` (`$2a$`, what
    /// bcryptjs 2 made, as the JavaScript package's README shows).
    const BCRYPTJS_2B: &str = "$2b$04$Z0vTp2RgXLCWnafc8K26iOD4syyjktjkDDeW31POMQ2ClyWviXPqS";
    const BCRYPTJS_2A: &str = "$2a$04$JZTwakoGwO0XzlrKRjuFuuYrubRG5Hfgf3JXr6uFBqbvHY4FVhWaS";

    #[test]
    fn hashes_made_by_bcryptjs_verify_here() {
        for hash in [BCRYPTJS_2B, BCRYPTJS_2A] {
            assert!(bcrypt::verify("s3cret", hash).unwrap(), "{hash}");
            assert!(!bcrypt::verify("wrong", hash).unwrap(), "{hash}");
        }
    }

    #[test]
    fn an_authentication_must_be_chosen_and_the_hash_be_bcrypt() {
        let err = AdminUi::new().check().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid Admin UI configuration: an authentication must be chosen: basic_auth(username, password_hash) or no_auth()"
        );
        let err = AdminUi::new()
            .basic_auth("admin", "s3cret")
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("must be a bcrypt hash"), "{err}");
        assert!(
            AdminUi::new()
                .basic_auth("admin", BCRYPTJS_2B)
                .check()
                .is_ok()
        );
        assert!(AdminUi::new().no_auth().check().is_ok());
        for ns in ["admin", "/", "/a?b"] {
            assert!(
                AdminUi::new().no_auth().namespace(ns).check().is_err(),
                "{ns}"
            );
        }
        assert!(AdminUi::new().no_auth().max_sockets(0).check().is_err());
    }

    #[test]
    fn debug_shows_the_user_not_the_hash() {
        let shown = format!("{:?}", AdminUi::new().basic_auth("admin", BCRYPTJS_2B));
        assert!(shown.contains("basic (admin)"));
        assert!(!shown.contains("$2b$"));
    }
}
