//! The examples, run as a user would run them: the tonic example serves gRPC and Socket.IO on
//! one port and verifies both with real clients; the client example works against the demo
//! and against a Node socket.io server speaking the seeds' protocol; the load tool runs every
//! scenario against the demo and the bare socketioxide baseline, and sees what it must.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{ServerProcess, example};

#[test]
fn tonic_example_serves_grpc_and_socketio_on_one_port() {
    let bin = example("tonic_grpc");
    assert!(
        bin.exists(),
        "{} missing: cargo test builds examples first",
        bin.display()
    );
    let out = Command::new(&bin)
        .arg("--self-check")
        .env("PORT", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "self-check failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tonic_example_self_check_can_fail() {
    let out = Command::new(example("tonic_grpc"))
        .arg("--self-check")
        .env("PORT", "0")
        .env("SELF_CHECK_TOKEN", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// Runs the client example against `server`: it must authenticate, join only the allowed
/// room, print each event as `name json`, and exit 0 on SIGTERM.
fn client_example_works_against(server: &ServerProcess) {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};
    let mut client = Command::new(example("client"))
        .args(["--url", &format!("http://127.0.0.1:{}", server.port)])
        .args([
            "--path",
            "/io",
            "--token",
            "demo-token",
            "--rooms",
            "public-a,private-b",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel::<String>();
    let stdout = client.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    let next = |what: &str| -> String {
        let left = deadline.saturating_duration_since(Instant::now());
        lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no line while waiting for {what}"))
    };
    let authenticated = loop {
        let line = next("authenticated");
        if let Some(data) = line.strip_prefix("authenticated ") {
            break serde_json::from_str::<serde_json::Value>(data).unwrap();
        }
    };
    let id = authenticated["id"].as_str().unwrap().to_owned();
    // The join goes out after `authenticated`: send to the room until its message shows.
    'joined: loop {
        assert_eq!(
            server.send(
                &serde_json::json!({"destination": "public-a", "topic": "news", "data": {"n": 1}})
            ),
            204
        );
        let until = Instant::now() + Duration::from_millis(200);
        while let Ok(line) = lines.recv_timeout(until.saturating_duration_since(Instant::now())) {
            if line == r#"news {"n":1}"# {
                break 'joined;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the client never got the room's message"
        );
    }
    // The refused room gets nothing: a message to it, then one to the client's own id.
    server.send(&serde_json::json!({"destination": "private-b", "topic": "secret", "data": 1}));
    server.send(&serde_json::json!({"destination": id, "topic": "direct", "data": "barrier"}));
    loop {
        let line = next("the barrier");
        assert!(!line.starts_with("secret"), "{line}");
        if line == r#"direct "barrier""# {
            break;
        }
    }
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(client.id() as i32, libc::SIGTERM) };
    let status = client.wait().unwrap();
    assert!(status.success(), "client exited with {status}");
}

#[test]
fn client_example_works_against_the_demo() {
    let demo = ServerProcess::start(Command::new(example("demo")));
    client_example_works_against(&demo);
}

#[test]
fn client_example_works_against_a_node_socketio_server() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js/seeds-server.mjs");
    let modules = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js/node_modules/socket.io");
    assert!(
        modules.exists(),
        "run `npm ci` in tests/js first (scripts/test.sh does)"
    );
    let mut cmd = Command::new("node");
    cmd.arg(script);
    let node = ServerProcess::start(cmd);
    client_example_works_against(&node);
}

/// Runs the load tool against `server`; its per-run JSON lines (summaries left out).
fn load(server: &ServerProcess, args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(example("load"))
        .args(["--url", &format!("http://127.0.0.1:{}", server.port)])
        .args(args)
        .stderr(std::process::Stdio::null())
        .output()
        .expect("the load example runs");
    assert!(
        out.status.success(),
        "load {args:?} exited with {}",
        out.status
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("runs").is_none())
        .collect()
}

#[test]
fn load_tool_runs_every_scenario_against_the_demo_and_the_bare_baseline() {
    let small = [
        "--scenario",
        "all",
        "--clients",
        "40",
        "--concurrency",
        "10",
        "--messages",
        "20",
        "--rate",
        "400",
        "--rooms",
        "4",
        "--workers",
        "8",
        "--duration-ms",
        "300",
    ];
    for bin in ["demo", "bare_socketioxide"] {
        let server = ServerProcess::start(Command::new(example(bin)));
        let lines = load(&server, &small);
        let scenarios: Vec<_> = lines
            .iter()
            .map(|l| l["scenario"].as_str().unwrap())
            .collect();
        assert_eq!(scenarios, ["connect", "fanout", "rooms", "churn"], "{bin}");
        for line in &lines {
            assert_eq!(line["failures"], 0, "{bin}: {line}");
            match line["scenario"].as_str().unwrap() {
                "connect" => {
                    assert_eq!(line["tracked"], 40, "{bin}: {line}");
                    assert!(line["rss_per_client_bytes"].as_u64().is_some(), "{line}");
                }
                "fanout" | "rooms" => {
                    assert!(line["expected"].as_u64().unwrap() > 0, "{line}");
                    assert_eq!(line["delivered"], line["expected"], "{bin}: {line}");
                    for zero in ["lost", "duplicates", "misdeliveries", "send_failures"] {
                        assert_eq!(line[zero], 0, "{bin} {zero}: {line}");
                    }
                }
                _ => {
                    assert!(line["cycles"].as_u64().unwrap() > 0, "{line}");
                    assert_eq!(line["leaked"], 0, "{bin}: {line}");
                }
            }
        }
    }
}

#[test]
fn load_tool_reports_refused_handshakes_and_a_flooder() {
    let demo = ServerProcess::start(Command::new(example("demo")));
    let refused = load(
        &demo,
        &[
            "--scenario",
            "connect",
            "--clients",
            "5",
            "--token",
            "wrong",
        ],
    );
    assert_eq!(refused[0]["failures"], 5, "{}", refused[0]);

    // The demo's rate limit drops most of the flood; the other clients lose nothing.
    let flood = load(
        &demo,
        &[
            "--scenario",
            "fanout",
            "--clients",
            "20",
            "--messages",
            "20",
            "--rate",
            "400",
            "--flood",
            "5000",
        ],
    );
    let line = &flood[0];
    assert_eq!(line["flood_emitted"], 5000, "{line}");
    assert_eq!(line["lost"], 0, "{line}");
    assert_eq!(line["delivered"], line["expected"], "{line}");
}
