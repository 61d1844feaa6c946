//! The standalone emitter, from a process without any Socket.IO server (a background worker):
//! publishes one event on Redis for every server on it to deliver, then exits.
//!
//! ```text
//! cargo run --example emitter -- --redis redis://127.0.0.1:6379 --to io-default news '{"title":"hi"}'
//! cargo run --example emitter -- --redis redis://127.0.0.1:6379 everyone '"to all"'
//! ```
//!
//! `--to` may repeat (several rooms, or socket ids); `--except ROOM` leaves a room out;
//! `--of NSP` addresses the sockets of namespace NSP instead of `/`. The
//! data is JSON. `--join ROOM` (instead of an event) makes the targeted sockets join ROOM
//! (the JavaScript emitter's `socketsJoin`). It reaches clients of socketio-stack servers with the fan-out and of Node
//! servers using `@socket.io/redis-adapter` alike. Exit status: 0 published, 1 Redis error,
//! 2 bad arguments.

mod support;

use socketio_stack::fanout::Emitter;

const USAGE: &str = "usage: emitter --redis URL [--of NSP] [--to ROOM]... [--except ROOM]... (EVENT JSON | --join ROOM)";

#[tokio::main]
async fn main() {
    support::init_logging();
    let mut redis = None;
    let mut join = None;
    let mut nsp = "/".to_owned();
    let (mut to, mut except, mut rest) = (Vec::new(), Vec::new(), Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--redis" => redis = args.next(),
            "--of" => nsp = args.next().unwrap_or_else(|| exit(2, USAGE)),
            "--to" => to.extend(args.next()),
            "--except" => except.extend(args.next()),
            "--join" => join = args.next(),
            "--help" | "-h" => exit(0, USAGE),
            _ => rest.push(arg),
        }
    }
    let Some(redis) = redis else {
        exit(2, USAGE);
    };
    let emitter = match Emitter::connect(&redis).await {
        Ok(emitter) => emitter,
        Err(e) => exit(1, &e.to_string()),
    };
    let mut target = to
        .iter()
        .fold(emitter.of(nsp), |t, room| t.to(room.clone()));
    for room in except {
        target = target.except(room);
    }
    let published = match (join, rest.as_slice()) {
        (Some(room), []) => target.sockets_join(&[room.as_str()]).await,
        (None, [event, data]) => match serde_json::from_str::<serde_json::Value>(data) {
            Ok(data) => target.emit(event, &data).await,
            Err(e) => exit(2, &format!("the data is not JSON: {e}")),
        },
        _ => exit(2, USAGE),
    };
    if let Err(e) = published {
        exit(1, &e.to_string());
    }
}

fn exit(code: i32, message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(code)
}
