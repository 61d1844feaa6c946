//! The whole fleet from Rust: every server on the fan-out's Redis, Node's and ours, as
//! `@socket.io/redis-adapter` lets a Node server see it: its sockets (with their rooms,
//! handshake and `data`), its rooms, remote joins, leaves and disconnects, and server-side
//! emits (events for the servers themselves), with and without answers.
//!
//! ```no_run
//! use socketio_stack::args::{Arg, Args};
//! use socketio_stack::fanout::RedisFanout;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let fanout = RedisFanout::connect("redis://127.0.0.1:6379").await?;
//! // Answers the `ping-servers` server-side emits of every other server, Node's included.
//! fanout.on_server_side_emit("ping-servers", async |_args| Arg::from("pong"));
//!
//! let lobby = fanout.fleet().within("lobby").fetch_sockets().await?;
//! for socket in &lobby {
//!     println!("{} in {:?}, data {}", socket.id, socket.rooms, socket.data);
//! }
//! fanout.fleet().within("lobby").join(&["announcements"]).await?;
//! let pongs = fanout.fleet().server_side_emit_with_ack("ping-servers", Args::new()).await?;
//! println!("{} servers answered", pongs.len());
//! # Ok(()) }
//! ```
//!
//! Each question goes to every other server (counted as the JavaScript adapter counts them:
//! the subscribers of the request channel) and waits for all their answers, at most
//! [`DEFAULT_REQUESTS_TIMEOUT`] (or [`Fleet::timeout`]): a server that dies in the middle of
//! a request makes it fail with [`FleetError::TimedOut`] then, never hang.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::args::{Arg, Args};
use crate::fanout::RedisFanout;
use crate::fanout::connect_error::FanoutError;
use crate::fanout::fleet_wire::{Response, ServerSideEmit};
use crate::fanout::redis_fanout::Question;
use crate::fanout::wire::{Query, RemoteOp, Request};

/// How long a question to the fleet waits for every server's answer, as the JavaScript
/// adapter's `requestsTimeout` (5 s).
pub const DEFAULT_REQUESTS_TIMEOUT: Duration = Duration::from_secs(5);

/// A socket of some server of the fleet, as socket.io's `fetchSockets()` describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetSocket {
    /// Its id (also a room it is in).
    pub id: String,
    /// The rooms it is in.
    #[serde(default)]
    pub rooms: Vec<String>,
    /// Its `socket.data`: on our servers, the identity authentication found
    /// ([`Session::data`](crate::Session::data)); `{}` before.
    #[serde(default)]
    pub data: Value,
    /// Its `socket.handshake` (headers, query, `auth`, address, time…).
    #[serde(default)]
    pub handshake: Value,
}

/// What a question to the fleet could not do.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FleetError {
    /// Publishing the question failed (Redis is down, the fan-out is shut down…).
    Fanout(FanoutError),
    /// Not every server answered in time.
    TimedOut {
        /// The question.
        what: &'static str,
        /// How many servers answered.
        answered: usize,
        /// How many were asked.
        expected: usize,
        /// For a server-side emit, the answers that came.
        replies: Vec<Arg>,
    },
}

impl std::fmt::Display for FleetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fanout(e) => write!(f, "{e}"),
            Self::TimedOut {
                what,
                answered,
                expected,
                ..
            } => write!(
                f,
                "{what}: only {answered} of {expected} servers answered in time"
            ),
        }
    }
}

impl std::error::Error for FleetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Fanout(e) => Some(e),
            Self::TimedOut { .. } => None,
        }
    }
}

impl From<FanoutError> for FleetError {
    fn from(e: FanoutError) -> Self {
        Self::Fanout(e)
    }
}

/// The sockets of the whole fleet, narrowed to rooms; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Fleet<'a> {
    fanout: &'a RedisFanout,
    nsp: String,
    rooms: Vec<String>,
    except: Vec<String>,
    timeout: Duration,
}

impl RedisFanout {
    /// Every server of the fleet and their sockets; narrow with [`within`](Fleet::within)
    /// and [`except`](Fleet::except).
    pub fn fleet(&self) -> Fleet<'_> {
        Fleet {
            fanout: self,
            nsp: "/".to_owned(),
            rooms: Vec::new(),
            except: Vec::new(),
            timeout: DEFAULT_REQUESTS_TIMEOUT,
        }
    }
}

impl Fleet<'_> {
    /// The sockets of namespace `nsp` instead of `/` (every server serving it; socket.io's
    /// `io.of(nsp)`).
    pub fn namespace(mut self, nsp: impl Into<String>) -> Self {
        self.nsp = nsp.into();
        self
    }

    /// Only the sockets in `room` (or in any of the rooms named so).
    pub fn within(mut self, room: impl Into<String>) -> Self {
        self.rooms.push(room.into());
        self
    }

    /// Not the sockets in `room`.
    pub fn except(mut self, room: impl Into<String>) -> Self {
        self.except.push(room.into());
        self
    }

    /// How long a question waits for every server (default [`DEFAULT_REQUESTS_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many servers serve this namespace (the subscribers of its request channel), this
    /// one included when it serves it.
    pub async fn server_count(&self) -> Result<usize, FleetError> {
        Ok(self.fanout.server_count(&self.nsp).await?)
    }

    /// The sockets of every server, with their rooms, handshake and `data`
    /// (socket.io's `io.in(room).fetchSockets()`).
    pub async fn fetch_sockets(self) -> Result<Vec<FleetSocket>, FleetError> {
        let mut sockets = self
            .fanout
            .local_server()
            .map(|local| local.fetch(&self.nsp, self.rooms.clone(), self.except.clone()))
            .unwrap_or_default();
        sockets.extend(self.fetch_remote_sockets().await?);
        Ok(sockets)
    }

    /// [`fetch_sockets`](Self::fetch_sockets) of the other servers only.
    pub(crate) async fn fetch_remote_sockets(&self) -> Result<Vec<FleetSocket>, FleetError> {
        let (rooms, except) = (self.rooms.clone(), self.except.clone());
        let remote = self
            .ask(
                "fetchSockets",
                |request_id| {
                    Question::Query(Query::Fetch {
                        request_id,
                        rooms,
                        except,
                    })
                },
                |answer| {
                    let list = answer.get("sockets")?.to_json()?;
                    serde_json::from_value::<Vec<FleetSocket>>(list).ok()
                },
                |_| Vec::new(),
            )
            .await?;
        Ok(remote.into_iter().flatten().collect())
    }

    /// The ids of the sockets of every server in the rooms (`except` does not apply, as in
    /// the JavaScript adapter's `sockets(rooms)`).
    pub async fn socket_ids(self) -> Result<Vec<String>, FleetError> {
        if self.fanout.is_sharded() {
            // The sharded wire has no such question: the fetched sockets answer it.
            let fleet = Fleet {
                except: Vec::new(),
                ..self
            };
            let ids = fleet.fetch_sockets().await?.into_iter().map(|s| s.id);
            return Ok(union(ids.collect(), Vec::new()));
        }
        let ids = self
            .fanout
            .local_server()
            .map(|local| local.socket_ids(&self.nsp, self.rooms.clone()))
            .unwrap_or_default();
        let rooms = self.rooms.clone();
        let remote = self
            .ask(
                "sockets",
                |request_id| Question::Query(Query::Sockets { request_id, rooms }),
                |answer| names(answer.get("sockets")?),
                |_| Vec::new(),
            )
            .await?;
        Ok(union(ids, remote))
    }

    /// Every room of every server (the JavaScript adapter's `allRooms()`; the rooms and
    /// exceptions of this `Fleet` do not apply), each once.
    pub async fn rooms(self) -> Result<Vec<String>, FleetError> {
        if self.fanout.is_sharded() {
            // As for `socket_ids`: the rooms of every fetched socket.
            let fleet = Fleet {
                rooms: Vec::new(),
                except: Vec::new(),
                ..self
            };
            let rooms = fleet.fetch_sockets().await?.into_iter().map(|s| s.rooms);
            return Ok(union(Vec::new(), rooms.collect()));
        }
        let rooms = match self.fanout.local_server() {
            Some(local) => local.rooms(&self.nsp).await,
            None => Vec::new(),
        };
        let remote = self
            .ask(
                "allRooms",
                |request_id| Question::Query(Query::AllRooms { request_id }),
                |answer| names(answer.get("rooms")?),
                |_| Vec::new(),
            )
            .await?;
        Ok(union(rooms, remote))
    }

    /// Makes the sockets of every server join `rooms` (socket.io's `socketsJoin`): applied
    /// here at once, published for the others.
    pub async fn join(self, rooms: &[&str]) -> Result<(), FleetError> {
        self.remote(RemoteOp::Join(
            rooms.iter().map(|r| r.to_string()).collect(),
        ))
        .await
    }

    /// Makes them leave `rooms` (socket.io's `socketsLeave`).
    pub async fn leave(self, rooms: &[&str]) -> Result<(), FleetError> {
        self.remote(RemoteOp::Leave(
            rooms.iter().map(|r| r.to_string()).collect(),
        ))
        .await
    }

    /// Disconnects them (socket.io's `disconnectSockets(close)`).
    pub async fn disconnect(self, close: bool) -> Result<(), FleetError> {
        self.remote(RemoteOp::Disconnect { close }).await
    }

    /// Emits `event` to the other servers (socket.io's `io.serverSideEmit`); their
    /// [`on_server_side_emit`](RedisFanout::on_server_side_emit) handlers (or Node's
    /// `io.on(event)` listeners) get `args`. Not to any socket, nor to this server.
    pub async fn server_side_emit(
        self,
        event: &str,
        args: impl Into<Args>,
    ) -> Result<(), FleetError> {
        let emit = self.server_side(event, args.into())?;
        self.fanout
            .publish_question(&self.nsp, Question::ServerSideEmit(emit))
            .await?;
        Ok(())
    }

    /// [`server_side_emit`](Self::server_side_emit), and the answer of each other server
    /// (socket.io's `io.timeout(ms).serverSideEmitWithAck`); fails with
    /// [`FleetError::TimedOut`], holding the answers that came, when one is missing.
    pub async fn server_side_emit_with_ack(
        self,
        event: &str,
        args: impl Into<Args>,
    ) -> Result<Vec<Arg>, FleetError> {
        let emit = self.server_side(event, args.into())?;
        self.ask(
            "serverSideEmit",
            |request_id| {
                Question::ServerSideEmit(ServerSideEmit {
                    request_id: Some(request_id),
                    ..emit
                })
            },
            |answer| Some(answer.get("data").cloned().unwrap_or_default()),
            |replies| replies,
        )
        .await
    }

    /// A server-side emit of this server, checked (a reserved name, or what would not cross
    /// as sent, is refused); awaiting no answer.
    fn server_side(&self, event: &str, args: Args) -> Result<ServerSideEmit, FleetError> {
        names_reserved(event)?;
        carried(&args)?;
        Ok(ServerSideEmit {
            uid: self.fanout.uid().to_owned(),
            request_id: None,
            event: event.to_owned(),
            args: args.into_vec(),
        })
    }

    async fn remote(self, op: RemoteOp) -> Result<(), FleetError> {
        let request = Request {
            uid: Some(self.fanout.uid().to_owned()),
            op,
            rooms: self.rooms,
            except: self.except,
        };
        if let Some(local) = self.fanout.local_server() {
            local.apply(&self.nsp, request.clone()).await;
            self.fanout.rooms_may_have_changed();
        }
        self.fanout.publish_request_in(&self.nsp, &request).await?;
        Ok(())
    }

    /// Asks every other server, and collects what `take` makes of each answer until every
    /// server has answered or the timeout passes (then [`FleetError::TimedOut`], with what
    /// `keep` keeps of the answers that came).
    async fn ask<T>(
        &self,
        what: &'static str,
        question: impl FnOnce(String) -> Question,
        take: impl Fn(&Response) -> Option<T>,
        keep: impl FnOnce(Vec<T>) -> Vec<Arg>,
    ) -> Result<Vec<T>, FleetError> {
        let expected = self.fanout.other_servers(&self.nsp).await?;
        if expected == 0 {
            return Ok(Vec::new());
        }
        let mut awaited = self.fanout.register_request();
        self.fanout
            .publish_question(&self.nsp, question(awaited.id.clone()))
            .await?;
        // A timeout too long to add (`Duration::MAX`, "no timeout") waits for a year.
        let now = tokio::time::Instant::now();
        let deadline = now
            .checked_add(self.timeout)
            .unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
        let mut taken = Vec::with_capacity(expected);
        for answered in 0..expected {
            match tokio::time::timeout_at(deadline, awaited.next()).await {
                Ok(Some(answer)) => taken.extend(take(&answer)),
                Ok(None) | Err(_) => {
                    return Err(FleetError::TimedOut {
                        what,
                        answered,
                        expected,
                        replies: keep(taken),
                    });
                }
            }
        }
        Ok(taken)
    }
}

/// This server's names and the other servers', each once, in the order they came.
fn union(local: Vec<String>, remote: Vec<Vec<String>>) -> Vec<String> {
    let names: indexmap::IndexSet<String> = local
        .into_iter()
        .chain(remote.into_iter().flatten())
        .collect();
    names.into_iter().collect()
}

/// A list of names (socket ids, rooms) in an answer.
fn names(list: &Arg) -> Option<Vec<String>> {
    list.as_array()?
        .iter()
        .map(|n| n.as_str().map(str::to_owned))
        .collect()
}

/// Socket.IO refuses its reserved names as server-side events too.
fn names_reserved(event: &str) -> Result<(), FleetError> {
    if crate::event::names::is_reserved(event) {
        return Err(FleetError::Fanout(FanoutError::ReservedEvent(
            event.to_owned(),
        )));
    }
    Ok(())
}

/// Refuses what would not reach the other servers as sent (see [`wire`](crate::fanout::wire)).
fn carried(args: &Args) -> Result<(), FleetError> {
    crate::fanout::wire::check_args(args)
        .map_err(|e| FleetError::Fanout(FanoutError::Unpublishable(e)))
}
