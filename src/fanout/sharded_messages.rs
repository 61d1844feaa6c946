//! Between the sharded wire ([`sharded_wire`]) and the fan-out's own forms of what crosses
//! Redis (the classic wire's [`Broadcast`] and [`Request`], the fleet's [`AckBroadcast`],
//! [`ServerSideEmit`] and [`Response`]), so that the sharded mode hands what it receives to the
//! same deliveries, answers and waiting requests as the classic one.

use indexmap::IndexMap;

use crate::args::Arg;
use crate::fanout::fleet::FleetSocket;
use crate::fanout::fleet_wire::{self, AckBroadcast, Response, ServerSideEmit};
use crate::fanout::sharded_wire::{self as sharded, Body, FetchedSocket, Message, Target};
use crate::fanout::wire::{Broadcast, Flags, Query, RemoteOp, Request};

/// What a message received on the sharded wire is, in the fan-out's terms.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// For this instance's sockets.
    Broadcast(Broadcast),
    /// Delivered here and acknowledged to its asker.
    AckBroadcast(AckBroadcast),
    /// A remote join, leave or disconnect.
    Request(Request),
    /// Another server asks for its sockets.
    Fetch {
        asker: String,
        request_id: String,
        target: Target,
    },
    ServerSideEmit(ServerSideEmit),
    /// An answer to one of this instance's questions.
    Answer(Response),
}

/// Reads a message (already checked to be of its namespace and not this instance's own).
pub(crate) fn incoming(message: Message) -> Incoming {
    let Message { uid, nsp, body } = message;
    match body {
        Body::Broadcast(b) => match b.request_id {
            None => Incoming::Broadcast(Broadcast {
                uid,
                nsp,
                event: b.event,
                args: b.args,
                rooms: b.target.rooms,
                except: b.target.except,
                flags: Flags {
                    compress: b.flags.compress,
                    volatile: b.flags.volatile,
                },
            }),
            Some(request_id) => Incoming::AckBroadcast(AckBroadcast {
                uid,
                request_id,
                nsp,
                event: b.event,
                args: b.args,
                rooms: b.target.rooms,
                except: b.target.except,
                timeout: b.flags.timeout,
            }),
        },
        Body::SocketsJoin { target, rooms } => request(uid, RemoteOp::Join(rooms), target),
        Body::SocketsLeave { target, rooms } => request(uid, RemoteOp::Leave(rooms), target),
        Body::DisconnectSockets { target, close } => {
            request(uid, RemoteOp::Disconnect { close }, target)
        }
        Body::FetchSockets { target, request_id } => Incoming::Fetch {
            asker: uid,
            request_id,
            target,
        },
        Body::ServerSideEmit {
            request_id,
            event,
            args,
        } => Incoming::ServerSideEmit(ServerSideEmit {
            uid,
            request_id,
            event,
            args,
        }),
        // Answers take the classic wire's field names and types, which the waiting requests
        // read.
        Body::FetchSocketsResponse {
            request_id,
            sockets,
        } => {
            let sockets = sockets.into_iter().map(fetched_as_object).collect();
            answer(request_id, None, "sockets", Arg::Array(sockets))
        }
        Body::ServerSideEmitResponse { request_id, value } => answer(
            request_id,
            Some(fleet_wire::SERVER_SIDE_EMIT),
            "data",
            value,
        ),
        Body::BroadcastClientCount {
            request_id,
            client_count,
        } => answer(
            request_id,
            Some(fleet_wire::BROADCAST_CLIENT_COUNT),
            "clientCount",
            Arg::from(client_count),
        ),
        Body::BroadcastAck { request_id, value } => {
            answer(request_id, Some(fleet_wire::BROADCAST_ACK), "packet", value)
        }
    }
}

fn request(uid: String, op: RemoteOp, target: Target) -> Incoming {
    Incoming::Request(Request {
        uid: Some(uid),
        op,
        rooms: target.rooms,
        except: target.except,
    })
}

fn answer(request_id: String, kind: Option<u64>, field: &str, value: Arg) -> Incoming {
    let body = Arg::Object(IndexMap::from([
        ("requestId".to_owned(), Arg::from(request_id.as_str())),
        (field.to_owned(), value),
    ]));
    Incoming::Answer(Response {
        request_id,
        kind,
        body,
    })
}

fn fetched_as_object(s: FetchedSocket) -> Arg {
    Arg::Object(IndexMap::from([
        ("id".to_owned(), Arg::from(s.id.as_str())),
        ("handshake".to_owned(), s.handshake),
        (
            "rooms".to_owned(),
            Arg::Array(s.rooms.iter().map(|r| Arg::from(r.as_str())).collect()),
        ),
        ("data".to_owned(), s.data),
    ]))
}

/// A fetched socket of this instance, as the sharded wire answers it.
pub(crate) fn fetched(s: FleetSocket) -> FetchedSocket {
    FetchedSocket {
        id: s.id,
        handshake: Arg::from(s.handshake),
        rooms: s.rooms,
        data: Arg::from(s.data),
    }
}

/// A broadcast without acknowledgement, published by the adapter `uid`.
pub(crate) fn broadcast(uid: &str, b: &Broadcast) -> Message {
    Message {
        uid: uid.to_owned(),
        nsp: b.nsp.clone(),
        body: Body::Broadcast(sharded::Broadcast {
            event: b.event.clone(),
            args: b.args.clone(),
            request_id: None,
            target: Target {
                rooms: b.rooms.clone(),
                except: b.except.clone(),
            },
            flags: sharded::Flags {
                volatile: b.flags.volatile,
                compress: b.flags.compress,
                timeout: None,
            },
        }),
    }
}

/// A remote join, leave or disconnect of the sockets of `nsp`.
pub(crate) fn request_message(uid: &str, nsp: &str, r: &Request) -> Message {
    let target = Target {
        rooms: r.rooms.clone(),
        except: r.except.clone(),
    };
    let body = match &r.op {
        RemoteOp::Join(rooms) => Body::SocketsJoin {
            target,
            rooms: rooms.clone(),
        },
        RemoteOp::Leave(rooms) => Body::SocketsLeave {
            target,
            rooms: rooms.clone(),
        },
        RemoteOp::Disconnect { close } => Body::DisconnectSockets {
            target,
            close: *close,
        },
    };
    message(uid, nsp, body)
}

/// An acknowledged broadcast.
pub(crate) fn ack_broadcast(uid: &str, nsp: &str, b: AckBroadcast) -> Message {
    let body = Body::Broadcast(sharded::Broadcast {
        event: b.event,
        args: b.args,
        request_id: Some(b.request_id),
        target: Target {
            rooms: b.rooms,
            except: b.except,
        },
        flags: sharded::Flags {
            timeout: b.timeout,
            ..sharded::Flags::default()
        },
    });
    message(uid, nsp, body)
}

/// A server-side emit.
pub(crate) fn server_side_emit(uid: &str, nsp: &str, e: ServerSideEmit) -> Message {
    let body = Body::ServerSideEmit {
        request_id: e.request_id,
        event: e.event,
        args: e.args,
    };
    message(uid, nsp, body)
}

/// A question of the fleet: the sharded wire asks only for sockets (their ids and rooms come
/// from the fetched sockets), so every [`Query`] is a fetch here.
pub(crate) fn query(uid: &str, nsp: &str, q: Query) -> Message {
    let (request_id, rooms, except) = match q {
        Query::Sockets { request_id, rooms } => (request_id, rooms, Vec::new()),
        Query::AllRooms { request_id } => (request_id, Vec::new(), Vec::new()),
        Query::Fetch {
            request_id,
            rooms,
            except,
        } => (request_id, rooms, except),
    };
    let body = Body::FetchSockets {
        target: Target { rooms, except },
        request_id,
    };
    message(uid, nsp, body)
}

/// A message of the adapter `uid` of `nsp`.
pub(crate) fn message(uid: &str, nsp: &str, body: Body) -> Message {
    Message {
        uid: uid.to_owned(),
        nsp: nsp.to_owned(),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_read_as_the_classic_wire_names_them() {
        let count = incoming(message(
            "a",
            "/",
            Body::BroadcastClientCount {
                request_id: "r1".into(),
                client_count: 3,
            },
        ));
        let Incoming::Answer(r) = count else {
            panic!("{count:?}")
        };
        assert_eq!(r.kind, Some(fleet_wire::BROADCAST_CLIENT_COUNT));
        assert_eq!(r.get("clientCount").and_then(Arg::as_i64), Some(3));
        let fetched = incoming(message(
            "a",
            "/",
            Body::FetchSocketsResponse {
                request_id: "r2".into(),
                sockets: vec![FetchedSocket {
                    id: "s".into(),
                    handshake: Arg::Null,
                    rooms: vec!["s".into(), "lobby".into()],
                    data: Arg::from(serde_json::json!({"user": 1})),
                }],
            },
        ));
        let Incoming::Answer(r) = fetched else {
            panic!("{fetched:?}")
        };
        let sockets: Vec<FleetSocket> =
            serde_json::from_value(r.get("sockets").unwrap().to_json().unwrap()).unwrap();
        assert_eq!(sockets[0].rooms, ["s", "lobby"]);
        assert_eq!(sockets[0].data, serde_json::json!({"user": 1}));
    }

    #[test]
    fn an_acknowledged_broadcast_keeps_its_id_and_timeout_both_ways() {
        let asked = AckBroadcast {
            uid: "ours".into(),
            request_id: "ours-1".into(),
            nsp: "/".into(),
            event: "vote".into(),
            args: vec![Arg::from(1_u64)],
            rooms: vec!["lobby".into()],
            except: vec![],
            timeout: Some(std::time::Duration::from_millis(1500)),
        };
        let on_the_wire = ack_broadcast("ours", "/", asked.clone());
        let bytes = sharded::encode(&on_the_wire).unwrap();
        let read = incoming(sharded::decode(&bytes).unwrap().unwrap());
        let Incoming::AckBroadcast(back) = read else {
            panic!("{read:?}")
        };
        assert_eq!(back, asked);
    }
}
