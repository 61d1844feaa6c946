//! The memory a client's queued events may take while an earlier event of it is slow: the
//! worst case, measured alone in its own process (peak resident memory is per process).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use futures_util::{SinkExt, StreamExt};
use socketio_stack::layers::AuthLayer;
use socketio_stack::{BoxError, SocketServer};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

/// The process's peak resident memory (VmHWM), in KiB.
fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// Starts a new peak from the current resident memory.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_big_events_behind_a_slow_authentication_cost_their_bound_not_their_parse() {
    let release = Arc::new(Notify::new());
    let handled = Arc::new(AtomicUsize::new(0));
    let marked = Arc::new(Notify::new());
    let (gate, count, mark) = (release.clone(), handled.clone(), marked.clone());
    let server = SocketServer::builder()
        .layer(AuthLayer::new(move |_hs| {
            let gate = gate.clone();
            async move {
                gate.notified().await;
                Ok::<_, BoxError>(true)
            }
        }))
        .on("big", move || {
            let count = count.clone();
            async move {
                count.fetch_add(1, Ordering::SeqCst);
            }
        })
        .on("mark", move || {
            let marked = mark.clone();
            async move { marked.notify_one() }
        })
        .build()
        .unwrap();
    let t = serve(server).await;
    let mut ws = raw_ws(t.addr, None).await;
    raw_ws_namespace(&mut ws, &serde_json::json!({})).await;
    ws.send(Message::text(r#"42["authenticate"]"#))
        .await
        .unwrap();

    // 60 events of almost 1 MB (the largest message a client may send), each an array of
    // 499,000 numbers: as a parsed value, each is tens of times its size on the wire.
    let numbers = vec!["0"; 499_000].join(",");
    let big = format!(r#"42["big",[{numbers}]]"#);
    assert!(big.len() < 1_000_000);
    reset_peak();
    let before = peak_kib();
    for _ in 0..60 {
        ws.send(Message::text(big.clone())).await.unwrap();
    }
    // A CONNECT to a namespace that does not exist is answered by the engine's reader at
    // once, in the order the client sent: once its answer is back, every big event has been
    // read, and queued or dropped, while the authentication was still pending.
    ws.send(Message::text("40/probe,")).await.unwrap();
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if msg.to_text().unwrap_or_default().starts_with("44/probe") {
            break;
        }
    }
    ws.send(Message::text(r#"42["mark"]"#)).await.unwrap();
    release.notify_one();
    tokio::time::timeout(WAIT, marked.notified())
        .await
        .expect("the events after the authentication are handled");
    let growth_mib = (peak_kib() - before) as f64 / 1024.0;
    let handled = handled.load(Ordering::SeqCst);
    println!("peak growth {growth_mib:.1} MiB, big events handled {handled} of 60");
    // 2 MB of them may wait (the default per-socket bound): two are handled, the rest were
    // dropped as they came.
    assert_eq!(handled, 2);
    assert!(growth_mib < 200.0, "peak growth {growth_mib:.1} MiB");
}
