//! A command-line Socket.IO client built on the crate's client helper: connects,
//! authenticates, joins the rooms given, and prints each event it receives as one line (the
//! event name, a space, its data as JSON) on stdout. Logs go to stderr. It exits cleanly on
//! Ctrl-C or SIGTERM, and with status 1 when the server refuses its token or disconnects it.
//!
//! ```text
//! cargo run --release --example client -- --url http://127.0.0.1:3000 --path /io \
//!     --token demo-token --rooms public-a,public-b
//! ```
//!
//! It works against the demo server and any server speaking the seeds' protocol. The token is
//! sent both as `auth.token` and as `authorization: Bearer <token>`.

mod support;

use std::io::Write;

use serde_json::json;
use socketio_stack::client::SocketClient;
use tokio::sync::mpsc;

struct Args {
    url: String,
    path: String,
    token: Option<String>,
    rooms: Vec<String>,
}

const USAGE: &str =
    "usage: client --url http://HOST:PORT [--path /io] [--token TOKEN] [--rooms a,b]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        url: String::new(),
        path: "/io".to_owned(),
        token: None,
        rooms: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--url" => args.url = value()?,
            "--path" => args.path = value()?,
            "--token" => args.token = Some(value()?),
            "--rooms" => {
                args.rooms = value()?
                    .split(',')
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            "--help" | "-h" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.url.is_empty() {
        return Err(format!("--url is required\n{USAGE}"));
    }
    Ok(args)
}

/// Why the client stopped on its own.
enum Stop {
    /// The server refused the token.
    Refused,
    /// The server disconnected the client (no reconnection follows a server disconnect).
    Kicked,
}

#[tokio::main]
async fn main() {
    support::init_logging();
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let (stop_tx, mut stops) = mpsc::unbounded_channel();
    let mut builder = SocketClient::builder("client", &args.url).path(&args.path);
    if let Some(token) = &args.token {
        builder = builder
            .auth(json!({ "token": token }))
            .extra_header("authorization", format!("Bearer {token}"));
    }
    let rooms = args.rooms.clone();
    let (on_refused, on_kicked) = (stop_tx.clone(), stop_tx);
    let built = builder
        .on_connected(|client| async move { client.authenticate() })
        .on_authenticated(move |client| {
            if !rooms.is_empty() {
                client.join_rooms(&rooms);
            }
            async {}
        })
        .on_unauthenticated(move |_client, message| {
            tracing::error!(%message, "the server refused the token");
            on_refused.send(Stop::Refused).ok();
            async {}
        })
        .on_disconnected(move |_client, reason| {
            tracing::info!(%reason, "disconnected");
            if reason == "io server disconnect" {
                on_kicked.send(Stop::Kicked).ok();
            }
            async {}
        })
        .on_error(|_client, error| async move { tracing::warn!(%error, "connection error") })
        .build();
    let client = match built {
        Ok(client) => client,
        Err(e) => {
            eprintln!("client: {e}");
            std::process::exit(2);
        }
    };
    // Printed before the handler's future: lines come out in the order events arrive.
    client.subscribe_any(|event, data| {
        let mut out = std::io::stdout().lock();
        let printed = writeln!(out, "{event} {data}").and_then(|()| out.flush());
        async move { printed }
    });

    let code = tokio::select! {
        () = support::shutdown_signal() => 0,
        stop = stops.recv() => match stop {
            Some(Stop::Refused) | Some(Stop::Kicked) => 1,
            None => 0,
        },
    };
    client.shutdown().await;
    std::process::exit(code);
}
