//! What every example binary does the same way: logs on stderr, and the shutdown signal.

/// Logs to stderr (stdout is kept for the `listening on <port>` line), filtered by
/// `RUST_LOG`, `info` by default.
pub fn init_logging() {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
#[allow(dead_code)] // the emitter example has no server to stop
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!("no SIGTERM handler ({e}); stopping on Ctrl-C only");
            tokio::signal::ctrl_c().await.ok();
        }
    }
}
