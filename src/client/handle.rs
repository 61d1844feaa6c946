//! The client's public handle, [`SocketClient`]: its state, emits, subscriptions, rooms,
//! connect / disconnect and shutdown, and the lower-level [`RawSocket`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::args::Args;
use crate::client::driver::{Desire, settle};
use crate::client::error::ClientError;
use crate::client::handlers::{self, EventHandler, HandlerResult, guarded};
use crate::client::jobs::{SHUTDOWN_GRACE, in_runner};
use crate::client::options::TransportKind;
use crate::client::protocol;
use crate::client::state::{Shared, SubscriptionId};
use crate::event::names;
use crate::session::ClientState;

/// Options of one emit: the seeds' `doLog` and `cb`.
#[derive(Default)]
pub struct EmitOptions {
    /// Log the emit (topic and data) at info level.
    pub log: bool,
    /// Runs once the packet has been handed to the connection (not after the server got it).
    pub callback: Option<Box<dyn FnOnce() + Send>>,
}

/// Asks the client's tasks to stop when the last handle to the client is dropped.
struct ShutdownOnDrop(watch::Sender<Desire>);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        self.0.send_replace(Desire::Shutdown);
    }
}

/// A managed Socket.IO client (the seeds' `SocketIOClientHelper`); cheap to clone. See the
/// [module docs](crate::client).
///
/// The client runs until [`shutdown`](Self::shutdown), or until every handle returned by
/// [`build`](crate::client::SocketClientBuilder::build) (and their clones) is dropped. Handles
/// given to callbacks, and those from [`handle`](Self::handle), do not keep it running:
/// capture those in handlers, so that a handler never keeps its own client alive.
#[derive(Clone)]
pub struct SocketClient {
    inner: Arc<Shared>,
    _guard: Option<Arc<ShutdownOnDrop>>,
}

impl SocketClient {
    /// The handle [`build`](crate::client::SocketClientBuilder::build) gives: the client runs
    /// as long as it or a clone of it is alive.
    pub(crate) fn owning(inner: Arc<Shared>) -> Self {
        Self {
            _guard: Some(Arc::new(ShutdownOnDrop(inner.desire.clone()))),
            inner,
        }
    }

    /// A handle that does not keep the client running.
    pub(crate) fn detached(inner: &Arc<Shared>) -> Self {
        Self {
            inner: inner.clone(),
            _guard: None,
        }
    }

    /// A handle to this client that does not keep it running (see the type's docs): the one
    /// to capture in handlers.
    pub fn handle(&self) -> Self {
        Self::detached(&self.inner)
    }

    /// The client's name.
    pub fn identifier(&self) -> &str {
        &self.inner.identifier
    }

    /// The authentication state (the seeds' `getState()`).
    pub fn state(&self) -> ClientState {
        self.inner.state()
    }

    /// Whether the connection is up.
    pub fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }

    /// Emits `authenticate`; the server answers `authenticated` or `unauthenticated`. A no-op
    /// with a warning when not connected, or when not `unauthorized` (no double
    /// authentication).
    pub fn authenticate(&self) {
        if !self.is_connected() {
            tracing::warn!(client = %self.inner.identifier, "authenticate: not connected");
            return;
        }
        if !self.inner.begin_authenticating() {
            tracing::warn!(client = %self.inner.identifier, state = %self.state(), "authenticate: not unauthorized");
            return;
        }
        let sent = protocol::event(names::AUTHENTICATE, &Args::new(), None)
            .and_then(|packet| self.inner.send(packet));
        if sent.is_err() {
            self.inner.set_state(ClientState::Unauthorized);
        }
    }

    /// Emits `topic` with `data`, one argument: [`Bytes`](bytes::Bytes) anywhere in it (or
    /// `serde_bytes`) goes as binary data, an attachment of the packet. Errors (status 400)
    /// when not connected, without a topic or with a reserved one (`disconnect`...).
    pub fn emit<T: Serialize + ?Sized>(&self, topic: &str, data: &T) -> Result<(), ClientError> {
        self.emit_with(topic, data, EmitOptions::default())
    }

    /// [`emit`](Self::emit) with the seeds' `doLog` and `cb` options.
    pub fn emit_with<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        data: &T,
        options: EmitOptions,
    ) -> Result<(), ClientError> {
        self.check_emit(topic)?;
        let packet = protocol::event(topic, &(data,), None)?;
        let logged = options
            .log
            .then(|| (packet.text.clone(), packet.attachments.len()));
        self.inner.send(packet)?;
        if let Some((packet, attachments)) = logged {
            tracing::info!(client = %self.inner.identifier, topic, packet, attachments, "emitted");
        }
        if let Some(callback) = options.callback {
            // Later, not within this call: the seeds run it through `setImmediate`.
            let what = format!("emit callback of client {:?}", self.inner.identifier);
            self.inner.jobs.push(async move {
                guarded(what, move || {
                    Box::pin(async move {
                        callback();
                        Ok(())
                    })
                })
                .await;
            });
        }
        Ok(())
    }

    /// Emits and waits for the server's acknowledgement: its first argument as JSON (binary
    /// data in it as the array of its bytes; [`emit_with_ack_args`](Self::emit_with_ack_args)
    /// gives the answer as it came).
    pub async fn emit_with_ack<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        data: &T,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let answer = self.emit_with_ack_args(topic, data, timeout).await?;
        Ok(handlers::first_as_json(&answer))
    }

    /// Emits and waits for the server's acknowledgement, all its arguments, binary data
    /// included.
    pub async fn emit_with_ack_args<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        data: &T,
        timeout: Duration,
    ) -> Result<Args, ClientError> {
        self.check_emit(topic)?;
        let (id, rx) = self.inner.expect_ack();
        // Forgets the waiter however this call ends: answered, timed out, failed or dropped.
        struct Forget<'a>(&'a Shared, u64);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                self.0.forget_ack(self.1);
            }
        }
        let _forget = Forget(&self.inner, id);
        self.inner
            .send(protocol::event(topic, &(data,), Some(id))?)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(args)) => Ok(args),
            Ok(Err(_)) => Err(ClientError::Transport(
                "disconnected before the acknowledgement".into(),
            )),
            Err(_) => Err(ClientError::AckTimeout(timeout)),
        }
    }

    fn check_emit(&self, topic: &str) -> Result<(), ClientError> {
        if self.inner.shutting_down() {
            return Err(ClientError::Shutdown);
        }
        if !self.is_connected() {
            return Err(ClientError::NotConnected);
        }
        if topic.is_empty() {
            return Err(ClientError::MissingTopic);
        }
        if names::is_reserved(topic) {
            return Err(ClientError::ReservedTopic(topic.to_owned()));
        }
        Ok(())
    }

    /// Subscribes `handler` (of the event's data as JSON: see [`EventHandler::new`]) to
    /// `event`, unless the event already has a handler (the seeds' `ignoreDuplicate: true`):
    /// then a warning, and `None`.
    pub fn subscribe<F, Fut>(&self, event: &str, handler: F) -> Option<SubscriptionId>
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        self.subscribe_handler(event, EventHandler::new(handler), true)
    }

    /// [`subscribe`](Self::subscribe) with typed data ([`Bytes`](bytes::Bytes) for binary
    /// data): data of another shape is logged and skipped, never fatal.
    pub fn subscribe_typed<T, F, Fut>(&self, event: &str, handler: F) -> Option<SubscriptionId>
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        self.subscribe_handler(event, EventHandler::typed(event, handler), true)
    }

    /// [`subscribe`](Self::subscribe) with every argument of the event as it came, binary
    /// data included.
    pub fn subscribe_args<F, Fut>(&self, event: &str, handler: F) -> Option<SubscriptionId>
    where
        F: Fn(Args) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        self.subscribe_handler(event, EventHandler::args(handler), true)
    }

    /// Subscribes a handler; with `ignore_duplicate`, not if the event already has one.
    pub fn subscribe_handler(
        &self,
        event: &str,
        handler: EventHandler,
        ignore_duplicate: bool,
    ) -> Option<SubscriptionId> {
        if event.is_empty() {
            tracing::warn!(client = %self.inner.identifier, "subscribe: empty event name");
            return None;
        }
        if matches!(event, "connect" | "disconnect" | "connect_error") {
            tracing::warn!(client = %self.inner.identifier, event, "subscribe: not an event the server sends; use the builder's callbacks");
            return None;
        }
        let id = self.inner.add_handler(event, handler.0, ignore_duplicate);
        if id.is_none() {
            tracing::warn!(client = %self.inner.identifier, event, "subscribe: the event already has a handler");
        }
        id
    }

    /// Subscribes `handler` to every event the server sends (name and data as JSON, as
    /// [`EventHandler::new`] takes it), after the helper's own reactions and alongside the
    /// per-event handlers.
    pub fn subscribe_any<F, Fut>(&self, handler: F) -> SubscriptionId
    where
        F: Fn(String, Value) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        self.inner.add_any(handlers::any_handler(handler))
    }

    /// Removes a catch-all handler; returns whether it was there.
    pub fn unsubscribe_any(&self, id: SubscriptionId) -> bool {
        self.inner.remove_any(id)
    }

    /// Subscribes several handlers (the seeds' `subscribeMany`).
    pub fn subscribe_many<'a>(
        &self,
        events: impl IntoIterator<Item = (&'a str, EventHandler)>,
        ignore_duplicate: bool,
    ) -> Vec<Option<SubscriptionId>> {
        events
            .into_iter()
            .map(|(event, handler)| self.subscribe_handler(event, handler, ignore_duplicate))
            .collect()
    }

    /// Removes one handler (`Some(id)`) or all handlers (`None`) of `event`; returns whether
    /// anything was removed.
    pub fn unsubscribe(&self, event: &str, id: Option<SubscriptionId>) -> bool {
        self.inner.remove_handlers(event, id)
    }

    /// Removes every handler of each event (the seeds' `unsubscribeMany`).
    pub fn unsubscribe_many<'a>(&self, events: impl IntoIterator<Item = &'a str>) {
        for event in events {
            self.unsubscribe(event, None);
        }
    }

    /// Asks the server to join `rooms` (it validates them); a no-op with a warning when not
    /// connected.
    pub fn join_rooms<S: AsRef<str>>(&self, rooms: &[S]) {
        self.room_request(names::JOIN, rooms);
    }

    /// Asks the server to leave `rooms`; a no-op with a warning when not connected.
    pub fn leave_rooms<S: AsRef<str>>(&self, rooms: &[S]) {
        self.room_request(names::LEAVE, rooms);
    }

    fn room_request<S: AsRef<str>>(&self, event: &str, rooms: &[S]) {
        if !self.is_connected() {
            tracing::warn!(client = %self.inner.identifier, event, "not connected: room request skipped");
            return;
        }
        let rooms: Vec<&str> = rooms.iter().map(AsRef::as_ref).collect();
        let sent = protocol::event(event, &(json!({ "rooms": rooms }),), None)
            .and_then(|packet| self.inner.send(packet));
        if let Err(e) = sent {
            tracing::warn!(client = %self.inner.identifier, event, error = %e, "room request not sent");
        }
    }

    /// Connects (after `auto_connect: false`, a `disconnect()`, or a server disconnect).
    pub fn connect(&self) {
        settle(&self.inner.desire, Desire::Disconnected, Desire::Connected);
    }

    /// Disconnects (no reconnection follows).
    pub fn disconnect(&self) {
        settle(&self.inner.desire, Desire::Connected, Desire::Disconnected);
    }

    /// Shuts the client down (the seeds' `shutdown()`): the helper's and the user's listeners
    /// removed first (no callback fires from here on), disconnected, state reset. When it
    /// resolves, every task of the client has ended: handlers still running got
    /// [`SHUTDOWN_GRACE`] to finish. Called from inside a handler or callback, it starts the
    /// shutdown and returns at once (waiting there would wait for itself).
    pub async fn shutdown(&self) {
        self.inner.begin_shutdown();
        self.inner.desire.send_replace(Desire::Shutdown);
        if in_runner() {
            return;
        }
        let (driver, runner) = self.inner.take_tasks();
        if driver.is_none() && runner.is_none() {
            // Another call is stopping the tasks: wait for it.
            let mut stopped = self.inner.stopped.subscribe();
            let _ = stopped.wait_for(|s| *s).await;
            return;
        }
        if let Some(mut driver) = driver
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut driver)
                .await
                .is_err()
        {
            tracing::warn!(client = %self.inner.identifier, "connection still busy at shutdown: aborted");
            driver.abort();
            driver.await.ok();
        }
        if let Some(runner) = runner {
            runner.await.ok();
        }
        self.inner.disconnected();
        self.inner.stopped.send_replace(true);
    }

    /// How many of the client's tasks are running: the connection task, the one that runs
    /// handlers and callbacks, and the handlers and callbacks at work. 0 after
    /// [`shutdown`](Self::shutdown).
    pub fn running_tasks(&self) -> usize {
        self.inner.tasks_alive() + self.inner.jobs.in_flight()
    }

    /// Lower-level access to the connection (the seeds' `getSocketClient()`).
    pub fn raw(&self) -> RawSocket<'_> {
        RawSocket { client: self }
    }
}

/// Lower-level access to the client's connection: ids and emits of any shape.
pub struct RawSocket<'a> {
    client: &'a SocketClient,
}

impl RawSocket<'_> {
    /// The Socket.IO socket id given by the server, while connected.
    pub fn id(&self) -> Option<String> {
        self.client.inner.ids().and_then(|ids| ids.socket_id)
    }

    /// The Engine.IO session id, while connected.
    pub fn engine_id(&self) -> Option<String> {
        self.client.inner.ids().map(|ids| ids.engine_id)
    }

    /// The transport the connection runs over, while connected: a WebSocket, or long-polling
    /// where one could not be opened (see [`ClientOptions::transports`]).
    ///
    /// [`ClientOptions::transports`]: crate::client::ClientOptions::transports
    pub fn transport(&self) -> Option<TransportKind> {
        self.client.inner.ids().map(|ids| ids.transport)
    }

    /// Whether the connection is up.
    pub fn connected(&self) -> bool {
        self.client.is_connected()
    }

    /// Emits an event with any number of arguments (JSON values, or [`Arg`](crate::args::Arg)s
    /// with binary data), bypassing the helper's checks but the connection's.
    pub fn emit_args(&self, event: &str, args: impl Into<Args>) -> Result<(), ClientError> {
        let packet = protocol::event(event, &args.into(), None)?;
        self.client.inner.send(packet)
    }
}

impl std::fmt::Debug for SocketClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketClient")
            .field("identifier", &self.inner.identifier)
            .field("connected", &self.is_connected())
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}
