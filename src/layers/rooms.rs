//! Rooms: the seeds' default rooms, validated `join`, and `leave`.
//!
//! - On `Authenticated` the socket joins the default rooms (`io-default`, `io-notification`
//!   unless configured otherwise).
//! - `join` `{rooms: [...]}` from an authenticated socket: the rooms are handed to the user's
//!   validate function (the seeds' `validateRoomFn`), and only those it returns (and that were
//!   asked for) are joined. With no validate function every join is refused with a warning:
//!   security by default. A validate function that fails or panics is logged; the socket stays
//!   connected.
//! - `leave` `{rooms: [...]}` is always allowed, except leaving the room named after the
//!   socket's own id, which would make it unreachable by id.
//!
//! Requests are bounded ([`RoomLimits`]: 100 rooms per request, 256-byte names, 1,000 rooms
//! per socket by default); over a bound the request is refused with a warning.
//!
//! Payloads are read defensively, as the seeds' `const { rooms = [] } = payload || {}` (the
//! payload is the event's first argument; the seeds' handler takes no other): no payload,
//! `null`, `{}` or a payload without `rooms` mean no rooms; `rooms` that is not an array is
//! refused with a warning; entries that are not non-empty strings are skipped. A payload
//! carrying binary data anywhere is refused with a warning: a room name is text. Refusals are
//! logged for a socket's first ten, then at most once a second, since a client can send them at will.
//! `join` and `leave` are answered here and not passed down.
//!
//! # Example
//! ```
//! use socketio_stack::layers::RoomsLayer;
//! use socketio_stack::Session;
//!
//! async fn validate(_session: Session, rooms: Vec<String>) -> Result<Vec<String>, std::io::Error> {
//!     Ok(rooms.into_iter().filter(|r| r.starts_with("public-")).collect())
//! }
//!
//! let layer = RoomsLayer::new().validate(validate);
//! let custom = RoomsLayer::new().default_rooms(["lobby"]).unwrap();
//! # let _ = (layer, custom);
//! ```

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::args::{Arg, Args};
use crate::telemetry::{self, JoinResult};
use socketioxide::adapter::Adapter;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{BoxError, BuildError};
use crate::event::{RequestKind, SocketRequest, names};
use crate::layers::ResponseFuture;
use crate::plumbing::BoxFuture;
use crate::plumbing::catch_panic_call;
use crate::session::{ClientState, Session};

/// The seeds' default rooms.
pub const DEFAULT_ROOMS: [&str; 2] = ["io-default", "io-notification"];

/// Bounds on room requests (the seeds have none; these keep one client from costing the
/// server without bound). Over a bound, the whole request is refused with a warning and the
/// socket stays as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomLimits {
    /// Rooms in one `join` or `leave` (default 100).
    pub per_request: usize,
    /// Bytes in one room name (default 256).
    pub name_bytes: usize,
    /// Rooms one socket may be in, its own id room and the default rooms included
    /// (default 1,000).
    pub per_socket: usize,
}

impl Default for RoomLimits {
    fn default() -> Self {
        Self {
            per_request: 100,
            name_bytes: 256,
            per_socket: 1000,
        }
    }
}

impl RoomLimits {
    fn check_request(&self, rooms: &[String]) -> Result<(), &'static str> {
        if rooms.len() > self.per_request {
            return Err("too many rooms in one request");
        }
        if rooms.iter().any(|r| r.len() > self.name_bytes) {
            return Err("a room name is too long");
        }
        Ok(())
    }
}

type ValidateFn =
    Arc<dyn Fn(Session, Vec<String>) -> BoxFuture<Result<Vec<String>, BoxError>> + Send + Sync>;

/// Adds the rooms policy; see the [module docs](self).
#[derive(Clone)]
pub struct RoomsLayer {
    default_rooms: Arc<[String]>,
    validate: Option<ValidateFn>,
    limits: RoomLimits,
}

impl RoomsLayer {
    /// The seeds' default rooms and no validate function (every `join` refused).
    pub fn new() -> Self {
        Self {
            default_rooms: DEFAULT_ROOMS.iter().map(|r| (*r).to_owned()).collect(),
            validate: None,
            limits: RoomLimits::default(),
        }
    }

    /// Validates joins with `validate`: given the session and the rooms asked for, it answers
    /// the rooms the socket may join.
    pub fn validate<F, Fut, E>(mut self, validate: F) -> Self
    where
        F: Fn(Session, Vec<String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<String>, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.validate = Some(Arc::new(move |session, rooms| {
            let fut = validate(session, rooms);
            Box::pin(async move { fut.await.map_err(Into::into) })
        }));
        self
    }

    /// Bounds on room requests (see [`RoomLimits`]); each must be positive.
    pub fn limits(mut self, limits: RoomLimits) -> Result<Self, BuildError> {
        for (what, value) in [
            ("rooms per request", limits.per_request),
            ("room name length", limits.name_bytes),
            ("rooms per socket", limits.per_socket),
        ] {
            if value == 0 {
                return Err(BuildError::InvalidLimit(what, "0".into()));
            }
        }
        self.limits = limits;
        Ok(self)
    }

    /// The rooms every socket joins on authentication (may be none); an empty name is refused.
    pub fn default_rooms<I, R>(mut self, rooms: I) -> Result<Self, BuildError>
    where
        I: IntoIterator<Item = R>,
        R: Into<String>,
    {
        let rooms: Vec<String> = rooms.into_iter().map(Into::into).collect();
        if rooms.iter().any(|r| r.trim().is_empty()) {
            return Err(BuildError::EmptyRoomName);
        }
        self.default_rooms = rooms.into();
        Ok(self)
    }
}

impl Default for RoomsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for RoomsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomsLayer")
            .field("default_rooms", &self.default_rooms)
            .field("validate", &self.validate.is_some())
            .field("limits", &self.limits)
            .finish()
    }
}

impl<S> Layer<S> for RoomsLayer {
    type Service = RoomsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RoomsService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`RoomsLayer`].
#[derive(Clone, Debug)]
pub struct RoomsService<S> {
    inner: S,
    layer: RoomsLayer,
}

/// The rooms of a `join`/`leave` event's arguments, read as the module docs say.
pub fn parse_rooms(args: &Args) -> Result<Vec<String>, &'static str> {
    let payload = args.first().unwrap_or(&Arg::Null);
    if payload.has_binary() {
        return Err("the payload carries binary data");
    }
    let rooms = match payload {
        Arg::Object(map) => map.get("rooms").unwrap_or(&Arg::Null),
        Arg::Null => &Arg::Null,
        _ => return Err("the payload is not an object"),
    };
    let rooms = match rooms {
        Arg::Null => return Ok(Vec::new()),
        Arg::Array(rooms) => rooms,
        _ => return Err("`rooms` is not an array"),
    };
    let mut seen = HashSet::new();
    Ok(rooms
        .iter()
        .filter_map(Arg::as_str)
        .filter(|r| !r.is_empty() && seen.insert(*r))
        .map(str::to_owned)
        .collect())
}

impl<S, A> Service<SocketRequest<A>> for RoomsService<S>
where
    A: Adapter,
    S: Service<SocketRequest<A>, Response = ()>,
    S::Error: Send + 'static,
{
    type Response = ();
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: SocketRequest<A>) -> Self::Future {
        let is_leave = match &req.kind {
            RequestKind::Authenticated => {
                if !self.layer.default_rooms.is_empty() && !req.session.is_disconnecting() {
                    req.socket.join(self.layer.default_rooms.to_vec());
                    req.session.rooms_joined();
                }
                return ResponseFuture::inner(self.inner.call(req));
            }
            RequestKind::Event(ev) if ev.name == names::JOIN || ev.name == names::LEAVE => {
                ev.name == names::LEAVE
            }
            _ => return ResponseFuture::inner(self.inner.call(req)),
        };
        let name = if is_leave { names::LEAVE } else { names::JOIN };
        let socket = req.socket;
        let session = req.session;
        if session.state() != ClientState::Authenticated {
            if !is_leave {
                telemetry::room_join(JoinResult::Refused);
            }
            tracing::debug!(sid = %socket.id, event = name, "room request before authentication ignored");
            return ResponseFuture::done();
        }
        let args = match req.kind {
            RequestKind::Event(ev) => ev.args,
            _ => Args::new(),
        };
        let limits = self.layer.limits;
        let rooms = match parse_rooms(&args)
            .and_then(|rooms| limits.check_request(&rooms).map(|()| rooms))
        {
            Ok(rooms) if rooms.is_empty() => return ResponseFuture::done(),
            Ok(rooms) => rooms,
            Err(why) => {
                if !is_leave {
                    telemetry::room_join(JoinResult::Refused);
                }
                if let Some(count) = session.count_refusal() {
                    tracing::warn!(sid = %socket.id, event = %name, refused = count, error = %why, "room request refused");
                }
                return ResponseFuture::done();
            }
        };
        if is_leave {
            let own = socket.id.as_str();
            let rooms: Vec<String> = rooms.into_iter().filter(|r| r != own).collect();
            tracing::debug!(sid = %socket.id, count = rooms.len(), "leaving rooms");
            socket.leave(rooms);
            return ResponseFuture::done();
        }
        let Some(validate) = self.layer.validate.clone() else {
            telemetry::room_join(JoinResult::Refused);
            tracing::warn!(sid = %socket.id, "join refused: no validate function is configured");
            return ResponseFuture::done();
        };
        ResponseFuture::boxed(async move {
            let asked: HashSet<String> = rooms.iter().cloned().collect();
            // Dropped if the socket leaves meanwhile.
            let answer = catch_panic_call({
                let session = session.clone();
                move || validate(session, rooms)
            });
            let outcome = tokio::select! {
                biased;
                outcome = answer => outcome,
                () = session.closed() => return Ok(()),
            };
            match outcome {
                Ok(Ok(allowed)) => {
                    let allowed: Vec<String> = allowed
                        .into_iter()
                        .filter(|r| asked.contains(r))
                        .collect::<HashSet<_>>()
                        .into_iter()
                        .collect();
                    let current = socket.rooms();
                    let new = allowed
                        .iter()
                        .filter(|r| !current.iter().any(|c| c == *r))
                        .count();
                    if current.len() + new > limits.per_socket {
                        telemetry::room_join(JoinResult::Refused);
                        tracing::warn!(sid = %socket.id, rooms = current.len(), asked = new, max = limits.per_socket, "join refused: too many rooms for one socket");
                    } else if allowed.is_empty() {
                        telemetry::room_join(JoinResult::Refused);
                    } else if !session.is_disconnecting() {
                        telemetry::room_join(JoinResult::Ok);
                        tracing::debug!(sid = %socket.id, count = allowed.len(), "joining rooms");
                        socket.join(allowed);
                        session.rooms_joined();
                    }
                }
                Ok(Err(e)) => {
                    telemetry::room_join(JoinResult::Error);
                    tracing::error!(sid = %socket.id, error = %e, "validate function failed");
                }
                Err(panic) => {
                    telemetry::room_join(JoinResult::Error);
                    tracing::error!(sid = %socket.id, panic = %panic, "validate function panicked");
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Recorder, TestSocket, event};
    use indexmap::IndexMap;
    use serde_json::json;

    fn rooms_of(t: &TestSocket) -> Vec<String> {
        let mut rooms: Vec<String> = t
            .socket
            .rooms()
            .into_iter()
            .map(|r| r.to_string())
            .collect();
        rooms.sort();
        rooms
    }

    async fn allow_public(_s: Session, rooms: Vec<String>) -> Result<Vec<String>, BoxError> {
        Ok(rooms
            .into_iter()
            .filter(|r| r.starts_with("public-"))
            .collect())
    }

    #[test]
    fn parses_payloads_defensively() {
        assert_eq!(parse_rooms(&one(json!(null))), Ok(vec![]));
        assert_eq!(parse_rooms(&one(json!({}))), Ok(vec![]));
        assert_eq!(
            parse_rooms(&one(json!({"rooms": "x"}))),
            Err("`rooms` is not an array")
        );
        assert_eq!(parse_rooms(&one(json!({"rooms": [1, 2]}))), Ok(vec![]));
        assert_eq!(
            parse_rooms(&one(json!("rooms"))),
            Err("the payload is not an object")
        );
        assert_eq!(
            parse_rooms(&one(json!({"rooms": ["a", "", "a", 3, "b"]}))),
            Ok(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(
            parse_rooms(&Args::from(vec![json!({"rooms": ["a"]}), json!("extra")])),
            Ok(vec!["a".to_owned()])
        );
        let mut binary = IndexMap::new();
        binary.insert(
            "rooms".to_owned(),
            Arg::Array(vec![Arg::Binary(bytes::Bytes::from_static(b"a"))]),
        );
        assert_eq!(
            parse_rooms(&one(Arg::Object(binary))),
            Err("the payload carries binary data")
        );
        assert_eq!(parse_rooms(&Args::new()), Ok(vec![]));
    }

    fn one(arg: impl Into<Arg>) -> Args {
        Args::from(arg.into())
    }

    #[tokio::test]
    async fn joins_default_rooms_then_validated_ones_and_leaves() {
        let t = TestSocket::new().await;
        t.session.set_state(ClientState::Authenticated);
        let mut svc = RoomsLayer::new()
            .validate(allow_public)
            .layer(Recorder::default());
        svc.call(t.request(RequestKind::Authenticated))
            .await
            .unwrap();
        assert_eq!(rooms_of(&t), ["io-default", "io-notification"]);
        svc.call(t.request(event("join", json!({"rooms": ["public-a", "private-b"]}))))
            .await
            .unwrap();
        assert_eq!(rooms_of(&t), ["io-default", "io-notification", "public-a"]);
        svc.call(t.request(event("leave", json!({"rooms": ["public-a", "io-default"]}))))
            .await
            .unwrap();
        assert_eq!(rooms_of(&t), ["io-notification"]);
    }

    #[tokio::test]
    async fn without_validate_function_every_join_is_refused() {
        let t = TestSocket::new().await;
        t.session.set_state(ClientState::Authenticated);
        let rec = Recorder::default();
        let mut svc = RoomsLayer::new()
            .default_rooms(Vec::<String>::new())
            .unwrap()
            .layer(rec.clone());
        svc.call(t.request(event("join", json!({"rooms": ["public-a"]}))))
            .await
            .unwrap();
        assert!(rooms_of(&t).is_empty());
        assert!(
            rec.seen().is_empty(),
            "join is answered here, not passed down"
        );
    }

    #[tokio::test]
    async fn bad_input_and_failing_validators_leave_the_socket_usable() {
        let t = TestSocket::new().await;
        t.session.set_state(ClientState::Authenticated);
        let failing = RoomsLayer::new().validate(|_s, _r| async { Err::<Vec<String>, _>("nope") });
        let panicking = RoomsLayer::new().validate(|_s, _r| async {
            if true {
                panic!("validator bug");
            }
            Ok::<_, BoxError>(vec![])
        });
        for layer in [failing, panicking] {
            let mut svc = layer.layer(Recorder::default());
            for data in [
                json!(null),
                json!({}),
                json!({"rooms": "x"}),
                json!({"rooms": [1, 2]}),
                json!({"rooms": ["public-a"]}),
            ] {
                svc.call(t.request(event("join", data))).await.unwrap();
            }
        }
        assert!(rooms_of(&t).is_empty());
        // A validator returning rooms nobody asked for joins none of them.
        let generous = RoomsLayer::new()
            .validate(|_s, _r| async { Ok::<_, BoxError>(vec!["admin".to_owned()]) });
        generous
            .layer(Recorder::default())
            .call(t.request(event("join", json!({"rooms": ["x"]}))))
            .await
            .unwrap();
        assert!(rooms_of(&t).is_empty());
    }

    #[tokio::test]
    async fn requests_over_a_bound_are_refused_whole() {
        let t = TestSocket::new().await;
        t.session.set_state(ClientState::Authenticated);
        let limits = RoomLimits {
            per_request: 3,
            name_bytes: 8,
            per_socket: 4,
        };
        let mut svc = RoomsLayer::new()
            .default_rooms(Vec::<String>::new())
            .unwrap()
            .limits(limits)
            .unwrap()
            .validate(allow_public)
            .layer(Recorder::default());
        for rooms in [
            json!(["public-a", "public-b", "public-c", "public-d"]),
            json!(["public-toolong"]),
        ] {
            svc.call(t.request(event("join", json!({ "rooms": rooms }))))
                .await
                .unwrap();
            assert!(rooms_of(&t).is_empty(), "{rooms}");
        }
        svc.call(t.request(event("join", json!({"rooms": ["public-a", "public-b"]}))))
            .await
            .unwrap();
        assert_eq!(rooms_of(&t), ["public-a", "public-b"]);
        // 2 + 3 new > 4: refused whole.
        svc.call(t.request(event(
            "join",
            json!({"rooms": ["public-c", "public-d", "public-e"]}),
        )))
        .await
        .unwrap();
        assert_eq!(rooms_of(&t), ["public-a", "public-b"]);
        assert!(
            RoomsLayer::new()
                .limits(RoomLimits {
                    per_socket: 0,
                    ..limits
                })
                .is_err()
        );
    }

    #[tokio::test]
    async fn ignores_room_requests_before_authentication() {
        let t = TestSocket::new().await;
        let mut svc = RoomsLayer::new()
            .validate(allow_public)
            .layer(Recorder::default());
        svc.call(t.request(event("join", json!({"rooms": ["public-a"]}))))
            .await
            .unwrap();
        assert!(rooms_of(&t).is_empty());
    }
}
