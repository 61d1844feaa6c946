//! A client flooding namespace CONNECTs while it reads nothing: what it makes the server do,
//! log lines included. In its own process, so that the log it counts is its own.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use socketio_stack::SocketServer;
use socketio_stack::layers::AuthLayer;
use tokio_tungstenite::tungstenite::Message;

/// Every log line of the process, kept to be counted.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }
    fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_flood_is_cut_off_and_logs_a_bounded_number_of_lines() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let t = serve(
        SocketServer::builder()
            .layer(AuthLayer::new(common::authenticate))
            .configure_io(|io| io.max_buffer_size(32))
            .build()
            .unwrap(),
    )
    .await;

    // WebSocket: 100,000 CONNECTs to a namespace that does not exist, nothing read. A small
    // receive buffer, so that the server's writes block soon.
    let mut ws = raw_ws(t.addr, Some(4096)).await;
    let mut sent = 0;
    for _ in 0..100_000 {
        if ws.feed(Message::text("40/nope,")).await.is_err() {
            break;
        }
        sent += 1;
    }
    ws.flush().await.ok();
    // The server ends the connection: what it had written, then the end.
    let ended =
        tokio::time::timeout(WAIT, async { while let Some(Ok(_)) = ws.next().await {} }).await;
    assert!(ended.is_ok(), "the flooder's connection is still open");
    let lines = captured.lines();
    println!("websocket: {sent} CONNECTs sent, {} log lines", lines.len());
    for line in lines.iter().take(5) {
        println!("  {line}");
    }
    assert!(lines.len() <= 5, "{} log lines", lines.len());
    assert!(
        lines
            .iter()
            .any(|l| l.contains("too many namespace CONNECTs"))
    );
    captured.clear();

    // Long-polling: 1,000 CONNECTs in one POST body, nothing read.
    let (status, open) = raw_http(t.addr, "GET", "/io/?EIO=4&transport=polling", "").await;
    assert_eq!(status, 200);
    let open: serde_json::Value = serde_json::from_str(open.strip_prefix('0').unwrap()).unwrap();
    let target = format!(
        "/io/?EIO=4&transport=polling&sid={}",
        open["sid"].as_str().unwrap()
    );
    let flood = vec!["40/nope,"; 1_000].join("\u{1e}");
    raw_http(t.addr, "POST", &target, &flood).await;
    // The session is refused from then on: its next requests are those of an unknown session.
    let (status, body) = raw_http(t.addr, "POST", &target, "40/nope,").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = raw_http(t.addr, "GET", &target, "").await;
    assert_eq!(status, 400, "{body}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lines = captured.lines();
    println!("polling: 1000 CONNECTs sent, {} log lines", lines.len());
    for line in lines.iter().take(5) {
        println!("  {line}");
    }
    assert!(lines.len() <= 5, "{} log lines", lines.len());
}
