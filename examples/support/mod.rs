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

/// Serving a tower service with hyper alone (no axum): HTTP/1.1 with the WebSocket upgrade
/// and HTTP/2 on one port, each request tagged with the peer address for the handshake.
/// Used by the hyper-only and tonic examples.
#[allow(dead_code)]
pub mod hyper_serve {
    use std::future::Future;
    use std::time::Duration;

    use http::Request;
    use hyper::body::Incoming;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;
    use socketio_stack::{BoxError, PeerAddr};
    use tokio::net::TcpListener;
    use tokio::sync::watch;
    use tokio::task::JoinSet;
    use tower::{Service, ServiceBuilder};

    /// The connections being served, to drain at shutdown.
    pub struct Connections {
        stop: watch::Sender<bool>,
        set: JoinSet<()>,
    }

    impl Connections {
        /// Asks every connection to finish gracefully, waits at most `timeout`, then closes
        /// what is left.
        pub async fn drain(mut self, timeout: Duration) {
            self.stop.send(true).ok();
            let drained = tokio::time::timeout(timeout, async {
                while self.set.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                tracing::warn!(
                    open = self.set.len(),
                    "connections still open after {timeout:?}: closing them"
                );
                self.set.shutdown().await;
            }
        }
    }

    /// Accepts connections on `listener` and serves `service` on each until `until`
    /// resolves; returns its output and the open connections.
    pub async fn serve_until<S, B, F>(
        listener: TcpListener,
        service: S,
        until: F,
    ) -> (F::Output, Connections)
    where
        S: Service<Request<Incoming>, Response = http::Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
        F: Future,
    {
        // HTTP/1.1 or HTTP/2, detected per connection.
        let http = auto::Builder::new(TokioExecutor::new());
        // Flipped to `true` to ask every connection to finish gracefully.
        let (stop, stop_rx) = watch::channel(false);
        let mut set = JoinSet::new();
        tokio::pin!(until);
        let outcome = loop {
            let (stream, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // E.g. out of file descriptors: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                // Forget connections that have ended, so the set does not grow for ever.
                Some(_) = set.join_next(), if !set.is_empty() => continue,
                outcome = &mut until => break outcome,
            };
            // Per connection: tag each request with the peer address, then the shared service.
            let svc = ServiceBuilder::new()
                .map_request(move |mut req: Request<Incoming>| {
                    req.extensions_mut().insert(PeerAddr(remote));
                    req
                })
                .service(service.clone());
            let http = http.clone();
            let mut stop = stop_rx.clone();
            set.spawn(async move {
                // `_with_upgrades`: the WebSocket transport takes the connection over after the
                // HTTP/1.1 upgrade; without it, clients stay on long-polling.
                let conn = http.serve_connection_with_upgrades(
                    TokioIo::new(stream),
                    TowerToHyperService::new(svc),
                );
                tokio::pin!(conn);
                let result = tokio::select! {
                    res = conn.as_mut() => res,
                    _ = stop.changed() => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(%remote, "connection ended with an error: {e}");
                }
            });
        };
        drop(listener);
        (outcome, Connections { stop, set })
    }
}
