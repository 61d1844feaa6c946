//! A command-line Socket.IO client built on the crate's client helper: connects,
//! authenticates, joins the rooms given, and prints each event it receives as one line (the
//! event name, a space, its data as JSON) on stdout. Logs go to stderr. It exits cleanly on
//! Ctrl-C or SIGTERM, and with status 1 when the server refuses its token.
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

/// What the callbacks tell the main loop.
enum Step {
    Connected,
    Authenticated,
    Refused,
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
    let (tx, mut steps) = mpsc::unbounded_channel();
    let mut builder = SocketClient::builder("client", &args.url).path(&args.path);
    if let Some(token) = &args.token {
        builder = builder
            .auth(json!({ "token": token }))
            .extra_header("authorization", format!("Bearer {token}"));
    }
    let (on_connected, on_authenticated, on_refused) = (tx.clone(), tx.clone(), tx);
    let built = builder
        .on_connected(move || {
            on_connected.send(Step::Connected).ok();
            async {}
        })
        .on_authenticated(move || {
            on_authenticated.send(Step::Authenticated).ok();
            async {}
        })
        .on_unauthenticated(move |message| {
            tracing::error!(%message, "the server refused the token");
            on_refused.send(Step::Refused).ok();
            async {}
        })
        .on_disconnected(|reason| async move { tracing::info!(%reason, "disconnected") })
        .on_error(|error| async move { tracing::warn!(%error, "connection error") })
        .build();
    let client = match built {
        Ok(client) => client,
        Err(e) => {
            eprintln!("client: {e}");
            std::process::exit(2);
        }
    };
    client.subscribe_any(|event, data| async move {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{event} {data}").and_then(|()| out.flush())
    });

    let shutdown = support::shutdown_signal();
    tokio::pin!(shutdown);
    let code = loop {
        tokio::select! {
            () = &mut shutdown => break 0,
            step = steps.recv() => match step {
                Some(Step::Connected) => client.authenticate(),
                Some(Step::Authenticated) => {
                    if !args.rooms.is_empty() {
                        client.join_rooms(&args.rooms);
                    }
                }
                Some(Step::Refused) => break 1,
                None => break 0,
            },
        }
    };
    client.shutdown().await;
    std::process::exit(code);
}
