//! Tracing: every request of a socket runs in its span (`socket`, fields `sid` and `ns`, as
//! socketioxide names them), so what a user's handler logs carries the socket's id; errors are
//! fields (`error = …`), not text inside the message. One test per binary: it installs the
//! global subscriber.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use serde_json::json;
use socketio_stack::layers::AuthLayer;
use socketio_stack::{BoxError, Handshake, SocketServer};

/// The log, as the fmt subscriber writes it.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

async fn authenticate_or_fail(hs: Arc<Handshake>) -> Result<bool, BoxError> {
    match hs.auth_field("token") {
        Some("boom") => Err("the directory is down".into()),
        token => Ok(token == Some(TOKEN)),
    }
}

#[tokio::test]
async fn a_handlers_log_lines_carry_the_socket_id_and_errors_are_fields() {
    let log = Log::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_env_filter("info")
        .init();
    let server = SocketServer::builder()
        .layer(AuthLayer::new(authenticate_or_fail))
        .on(
            "hello",
            async |_: socketio_stack::extract::Data<serde_json::Value>| {
                tracing::info!("the application's handler ran");
            },
        )
        .on("sync", sync_handler)
        .build()
        .unwrap();
    let t = serve(server).await;
    let (mut c, id) = TestClient::authenticated(&t.url()).await;
    c.emit("hello", json!(1)).await;
    c.sync().await;
    let line = log
        .lines()
        .into_iter()
        .find(|l| l.contains("the application's handler ran"))
        .expect("the handler's line is logged");
    assert!(
        line.contains(&format!("socket{{sid={id} ns=\"/\"}}")),
        "{line}"
    );

    // An authenticate function's error: a field of the line, in the socket's span.
    let mut failing = connect_with_token(&t.url(), "boom").await;
    failing.emit("authenticate", json!({})).await;
    failing.expect_event("unauthenticated").await;
    let line = log
        .lines()
        .into_iter()
        .find(|l| l.contains("authenticate function failed"))
        .expect("the failure is logged");
    assert!(line.contains("error=the directory is down"), "{line}");
    assert!(line.contains("socket{sid="), "{line}");
    assert!(
        !line.contains("failed: the directory"),
        "the error is not in the message text: {line}"
    );
}
