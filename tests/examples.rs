//! The examples that can check themselves do so: the tonic example serves gRPC and Socket.IO
//! on one port and verifies both with real clients.

use std::path::PathBuf;
use std::process::Command;

/// `target/<profile>/examples/<name>`, next to this test's own binary (`.../deps/`).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    profile_dir.join("examples").join(name)
}

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
