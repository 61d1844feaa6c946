//! The builder of a [`SocketClient`]: identifier, host, options and lifecycle callbacks, checked
//! at [`build`](SocketClientBuilder::build), which starts the client's two tasks.

use std::future::Future;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::watch;

use crate::client::dial::{Dial, TransportDial};
use crate::client::dispatcher::{Callbacks, Dispatcher};
use crate::client::driver::{Desire, Driver};
use crate::client::error::ClientError;
use crate::client::handle::SocketClient;
use crate::client::handlers::{self, HandlerResult};
use crate::client::jobs::job_queue;
use crate::client::options::ClientOptions;
use crate::client::state::Shared;

impl SocketClient {
    /// A builder for a client named `identifier` (used in logs) connecting to `host`
    /// (`http://host:port`).
    pub fn builder(identifier: impl Into<String>, host: impl Into<String>) -> SocketClientBuilder {
        SocketClientBuilder {
            identifier: identifier.into(),
            host: host.into(),
            options: ClientOptions::default(),
            callbacks: Callbacks::default(),
        }
    }
}

/// Builds a [`SocketClient`]: identifier, host, options and lifecycle callbacks.
pub struct SocketClientBuilder {
    identifier: String,
    host: String,
    options: ClientOptions,
    callbacks: Callbacks,
}

impl SocketClientBuilder {
    /// All options at once.
    pub fn options(mut self, options: ClientOptions) -> Self {
        self.options = options;
        self
    }

    /// The Socket.IO path (default `/io`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.options.path = path.into();
        self
    }

    /// A header sent with the connection request.
    pub fn extra_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.extra_headers.push((name.into(), value.into()));
        self
    }

    /// The `auth` payload of the CONNECT packet.
    pub fn auth(mut self, auth: Value) -> Self {
        self.options.auth = Some(auth);
        self
    }

    /// Runs when the connection is established (also after each reconnection), with a handle
    /// to the client (e.g. to `authenticate()`).
    pub fn on_connected<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(SocketClient) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        self.callbacks.on_connected = Some(handlers::callback(f));
        self
    }

    /// Runs when the connection ends, with socket.io-client's reason (`io server disconnect`,
    /// `io client disconnect`, `transport close`, `transport error`, `ping timeout`).
    pub fn on_disconnected<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(SocketClient, String) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        self.callbacks.on_disconnected = Some(handlers::callback(move |(c, r)| f(c, r)));
        self
    }

    /// Runs when a connection attempt fails (the seeds' `connect_error`).
    pub fn on_error<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(SocketClient, ClientError) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        self.callbacks.on_error = Some(handlers::callback(move |(c, e)| f(c, e)));
        self
    }

    /// Runs when the server sends `authenticated`.
    pub fn on_authenticated<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(SocketClient) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        self.callbacks.on_authenticated = Some(handlers::callback(f));
        self
    }

    /// Runs when the server sends `unauthenticated`, with its message.
    pub fn on_unauthenticated<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(SocketClient, String) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        self.callbacks.on_unauthenticated = Some(handlers::callback(move |(c, m)| f(c, m)));
        self
    }

    /// Checks the URL and starts the client's background task (connecting at once unless
    /// `auto_connect` is off). Must be called inside a tokio runtime.
    pub fn build(self) -> Result<SocketClient, ClientError> {
        let dial = TransportDial::new(&self.host, &self.options)?;
        if self.options.auth.as_ref().is_some_and(|a| !a.is_object()) {
            return Err(ClientError::InvalidUrl(
                "the auth payload must be a JSON object".into(),
            ));
        }
        Ok(self.start(dial))
    }

    /// Starts the client's tasks: the connection loop over `dial`, and the runner of its
    /// handlers and callbacks.
    fn start(self, dial: impl Dial) -> SocketClient {
        let (desire, _) = watch::channel(if self.options.auto_connect {
            Desire::Connected
        } else {
            Desire::Disconnected
        });
        let (jobs, runner) = job_queue();
        let shared = Arc::new(Shared::new(self.identifier.clone(), desire.clone(), jobs));
        let mut stop = desire.subscribe();
        let runner = tokio::spawn(runner.run(async move {
            let _ = stop.wait_for(|d| *d == Desire::Shutdown).await;
        }));
        let events = Dispatcher::new(shared.clone(), self.callbacks);
        let driver = Driver::new(self.identifier, self.options, dial, events, desire);
        shared.started(tokio::spawn(driver.run()), runner);
        SocketClient::owning(shared)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc;
    use tokio::time::Instant;

    use super::*;
    use crate::client::dial::memory::{self, MemoryDial};
    use crate::session::ClientState;

    /// Far longer than the test waits: on paused time, reached only when what is awaited
    /// never comes.
    const NEVER: Duration = Duration::from_secs(3600);

    async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
        tokio::time::timeout(NEVER, rx.recv())
            .await
            .expect("in time")
            .expect("open")
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_authenticates_is_reset_by_a_lost_connection_reconnects_and_shuts_down() {
        let (dial, mut servers) = MemoryDial::new();
        let (log, mut seen) = mpsc::unbounded_channel::<String>();
        let [a, b, c] = [(); 3].map(|()| log.clone());
        drop(log);
        let client = SocketClient::builder("t", "http://unused")
            .options(ClientOptions {
                randomization_factor: 0.0,
                ..Default::default()
            })
            .auth(serde_json::json!({ "token": "t" }))
            .on_connected(move |client| {
                a.send("connected".into()).ok();
                client.authenticate();
                async {}
            })
            .on_authenticated(move |_| {
                b.send("authenticated".into()).ok();
                async {}
            })
            .on_disconnected(move |_, reason| {
                c.send(format!("disconnected:{reason}")).ok();
                async {}
            })
            .start(dial);
        let start = Instant::now();

        let mut server = next(&mut servers).await;
        assert_eq!(memory::accept(&mut server).await, r#"40{"token":"t"}"#);
        assert_eq!(next(&mut seen).await, "connected");
        let authenticate = memory::recv(&mut server).await.unwrap();
        assert_eq!(authenticate, r#"42["authenticate"]"#);
        assert_eq!(client.state(), ClientState::Authenticating);
        memory::send(&mut server, r#"42["authenticated",{"id":"s1","time":"t"}]"#).await;
        assert_eq!(next(&mut seen).await, "authenticated");
        assert_eq!(client.state(), ClientState::Authenticated);
        assert_eq!(client.raw().id().as_deref(), Some("s1"));

        drop(server);
        assert_eq!(next(&mut seen).await, "disconnected:transport error");
        assert_eq!(client.state(), ClientState::Unauthorized);
        assert!(!client.is_connected());

        let mut server = next(&mut servers).await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        memory::accept(&mut server).await;
        assert_eq!(next(&mut seen).await, "connected");
        assert_eq!(memory::recv(&mut server).await.unwrap(), authenticate);

        client.shutdown().await;
        assert_eq!(memory::recv(&mut server).await.unwrap(), "41");
        assert_eq!(client.running_tasks(), 0);
        assert_eq!(client.emit("x", &1), Err(ClientError::Shutdown));
        // No callback after the shutdown, and none of them kept alive by the handle.
        let after = tokio::time::timeout(NEVER, seen.recv()).await;
        assert_eq!(after, Ok(None));
    }
}
