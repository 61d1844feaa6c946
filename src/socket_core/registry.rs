//! The tracked clients: the seeds' `getClients()` map.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use socketioxide::adapter::{Adapter, LocalAdapter};
use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;

use crate::session::{ClientState, Session};

/// One tracked client: the seeds' `ISocketIOClient` (its timers live in the [`Session`]).
pub struct Client<A: Adapter = LocalAdapter> {
    /// The socket.
    pub socket: SocketRef<A>,
    /// The socket's state and timers.
    pub session: Session,
    /// When the client was registered.
    pub connected_at: SystemTime,
}

impl<A: Adapter> Client<A> {
    /// The socket id.
    pub fn id(&self) -> Sid {
        self.socket.id
    }

    /// The authentication state.
    pub fn state(&self) -> ClientState {
        self.session.state()
    }
}

impl<A: Adapter> Clone for Client<A> {
    fn clone(&self) -> Self {
        Self {
            socket: self.socket.clone(),
            session: self.session.clone(),
            connected_at: self.connected_at,
        }
    }
}

impl<A: Adapter> std::fmt::Debug for Client<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.socket.id)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// The map of tracked clients, shared by the core service and the server handle.
///
/// It is written only when a socket connects or disconnects; events never touch it.
pub struct ClientRegistry<A: Adapter = LocalAdapter> {
    clients: Arc<RwLock<HashMap<Sid, Client<A>>>>,
}

impl<A: Adapter> Clone for ClientRegistry<A> {
    fn clone(&self) -> Self {
        Self {
            clients: self.clients.clone(),
        }
    }
}

impl<A: Adapter> Default for ClientRegistry<A> {
    fn default() -> Self {
        Self {
            clients: Arc::default(),
        }
    }
}

impl<A: Adapter> ClientRegistry<A> {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tracks a client; returns `false` (and changes nothing) if its id is already tracked by
    /// a socket still connected, or its socket has already disconnected (a late `Connect` must
    /// not leave a ghost entry). An entry whose socket has gone is replaced: a client that
    /// left the namespace and came back on the same Engine.IO session keeps its id.
    pub fn insert(&self, socket: SocketRef<A>, session: Session) -> bool {
        let mut clients = self.write();
        let taken = clients
            .get(&socket.id)
            .is_some_and(|c| !c.session.is_closed());
        if taken || session.is_closed() {
            return false;
        }
        let client = Client {
            socket,
            session,
            connected_at: SystemTime::now(),
        };
        clients.insert(client.id(), client);
        true
    }

    /// Stops tracking a client; returns it if it was tracked.
    pub fn remove(&self, id: Sid) -> Option<Client<A>> {
        self.write().remove(&id)
    }

    /// Stops tracking the client of `session`, and only it: not a newer socket of the same id.
    pub fn remove_session(&self, id: Sid, session: &Session) -> Option<Client<A>> {
        let mut clients = self.write();
        if clients.get(&id)?.session.same_as(session) {
            clients.remove(&id)
        } else {
            None
        }
    }

    /// The client with this id.
    pub fn get(&self, id: Sid) -> Option<Client<A>> {
        self.read().get(&id).cloned()
    }

    /// The client whose id is this string (`None` for a string that is no socket id).
    pub fn get_str(&self, id: &str) -> Option<Client<A>> {
        id.parse::<Sid>().ok().and_then(|sid| self.get(sid))
    }

    /// A snapshot of all tracked clients.
    pub fn all(&self) -> Vec<Client<A>> {
        self.read().values().cloned().collect()
    }

    /// How many clients are tracked.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether no client is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes and returns every client.
    pub fn drain(&self) -> Vec<Client<A>> {
        self.write().drain().map(|(_, c)| c).collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Sid, Client<A>>> {
        self.clients.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Sid, Client<A>>> {
        self.clients.write().unwrap_or_else(|e| e.into_inner())
    }
}
