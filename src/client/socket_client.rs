//! The client helper: the seeds' `SocketIOClientHelper`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::client::driver;
use crate::client::error::ClientError;
use crate::client::handlers::{self, AnyHandler, Callback, Handler, HandlerResult, guarded};
use crate::client::options::ClientOptions;
use crate::client::protocol;
use crate::event::names;
use crate::plumbing::BoxFuture;
use crate::session::ClientState;

/// How long [`SocketClient::shutdown`] lets running handlers and callbacks finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// What the client is asked to be: the background task follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Desire {
    Connected,
    Disconnected,
    Shutdown,
}

/// The id of one subscription, to remove that handler alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionId(u64);

/// An event handler, for [`SocketClient::subscribe_handler`] and
/// [`SocketClient::subscribe_many`].
#[derive(Clone)]
pub struct EventHandler(Handler);

impl EventHandler {
    /// A handler of the event's data as JSON; it may return `()` or a `Result` (an error is
    /// logged).
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        Self(handlers::handler(f))
    }

    /// A handler of typed data; data of another shape is logged and skipped.
    pub fn typed<T, F, Fut>(event: &str, f: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        Self(handlers::typed_handler(event, f))
    }

    /// A handler whose answer goes back to the server when it asked for an acknowledgement.
    pub fn answering<F, Fut, E>(f: F) -> Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        Self(handlers::answering_handler(f))
    }
}

/// Options of one emit: the seeds' `doLog` and `cb`.
#[derive(Default)]
pub struct EmitOptions {
    /// Log the emit (topic and data) at info level.
    pub log: bool,
    /// Runs once the packet has been handed to the connection (not after the server got it).
    pub callback: Option<Box<dyn FnOnce() + Send>>,
}

#[derive(Default)]
pub(crate) struct Callbacks {
    on_connected: Option<Callback<SocketClient>>,
    on_disconnected: Option<Callback<(SocketClient, String)>>,
    on_error: Option<Callback<(SocketClient, ClientError)>>,
    on_authenticated: Option<Callback<SocketClient>>,
    on_unauthenticated: Option<Callback<(SocketClient, String)>>,
}

tokio::task_local! {
    /// Set while the dispatcher polls handlers: a `shutdown()` from inside one must not wait
    /// for the dispatcher (itself).
    static IN_DISPATCHER: ();
}

pub(crate) struct Inner {
    pub(crate) identifier: String,
    pub(crate) url: String,
    pub(crate) options: ClientOptions,
    callbacks: Callbacks,
    state: AtomicU8,
    connected: AtomicBool,
    ids: Mutex<(Option<String>, Option<String>)>,
    writer: Mutex<Option<mpsc::UnboundedSender<String>>>,
    handlers: RwLock<HashMap<String, Vec<(SubscriptionId, Handler)>>>,
    any: RwLock<Vec<(SubscriptionId, AnyHandler)>>,
    next_id: AtomicU64,
    acks: Mutex<HashMap<u64, oneshot::Sender<Vec<Value>>>>,
    pub(crate) desire: watch::Sender<Desire>,
    jobs: mpsc::UnboundedSender<BoxFuture<()>>,
    in_flight: Arc<AtomicUsize>,
    shutting_down: AtomicBool,
    stopped: watch::Sender<bool>,
    driver: Mutex<Option<JoinHandle<()>>>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    rng: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn set_state(&self, state: ClientState) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// A number in [0, 1) for the backoff's jitter (xorshift; no need for a real RNG here).
    pub(crate) fn jitter(&self) -> f64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Hands `job` to the client's dispatcher, which starts jobs in the order they come (so
    /// handlers and callbacks begin in the order of the events) and runs them concurrently.
    fn spawn(&self, job: impl Future<Output = ()> + Send + 'static) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        if self.jobs.send(Box::pin(job)).is_err() {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Whether `shutdown()` has begun: the helper's listeners are gone, as the seeds' removes
    /// them first.
    fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    fn fire<T: Send + 'static>(&self, name: &str, callback: &Option<Callback<T>>, arg: T) {
        if self.shutting_down() {
            return;
        }
        if let Some(callback) = callback.clone() {
            let what = format!("{} callback of client {:?}", name, self.identifier);
            let fut = guarded(what, move || callback(arg));
            self.spawn(async move {
                fut.await;
            });
        }
    }

    pub(crate) fn fire_error(self: &Arc<Self>, error: ClientError) {
        let handle = SocketClient::detached(self);
        self.fire("on_error", &self.callbacks.on_error, (handle, error));
    }

    pub(crate) fn fire_connected(self: &Arc<Self>) {
        self.fire(
            "on_connected",
            &self.callbacks.on_connected,
            SocketClient::detached(self),
        );
    }

    pub(crate) fn fire_disconnected(self: &Arc<Self>, reason: String) {
        let handle = SocketClient::detached(self);
        self.fire(
            "on_disconnected",
            &self.callbacks.on_disconnected,
            (handle, reason),
        );
    }

    /// Moves the desire from `from` to `to` if it still is `from` (a `connect()` or
    /// `shutdown()` made meanwhile wins).
    pub(crate) fn settle(&self, from: Desire, to: Desire) {
        self.desire.send_if_modified(|d| {
            let change = *d == from;
            if change {
                *d = to;
            }
            change
        });
    }

    pub(crate) fn connected_with(
        &self,
        writer: mpsc::UnboundedSender<String>,
        engine_id: String,
        socket_id: Option<String>,
    ) {
        *lock(&self.writer) = Some(writer);
        *lock(&self.ids) = (Some(engine_id), socket_id);
        self.set_state(ClientState::Unauthorized);
        self.connected.store(true, Ordering::Release);
    }

    pub(crate) fn disconnected(&self) {
        self.connected.store(false, Ordering::Release);
        *lock(&self.writer) = None;
        *lock(&self.ids) = (None, None);
        self.set_state(ClientState::Unauthorized);
        // Waiting `emit_with_ack` calls learn at once that no answer will come.
        lock(&self.acks).clear();
    }

    fn send(&self, text: String) -> Result<(), ClientError> {
        if self.shutting_down() {
            return Err(ClientError::Shutdown);
        }
        match &*lock(&self.writer) {
            Some(writer) if self.connected.load(Ordering::Acquire) => {
                writer.send(text).map_err(|_| ClientError::NotConnected)
            }
            _ => Err(ClientError::NotConnected),
        }
    }

    /// An event from the server: the helper's own reactions, then the user's handlers.
    pub(crate) fn dispatch(self: &Arc<Self>, name: String, args: Vec<Value>, ack: Option<u64>) {
        if self.shutting_down() {
            return;
        }
        let data = args.into_iter().next().unwrap_or(Value::Null);
        match name.as_str() {
            names::AUTHENTICATED => {
                tracing::info!(client = %self.identifier, data = %data, "authenticated");
                self.set_state(ClientState::Authenticated);
                let handle = SocketClient::detached(self);
                self.fire("on_authenticated", &self.callbacks.on_authenticated, handle);
            }
            names::UNAUTHENTICATED => {
                tracing::warn!(client = %self.identifier, data = %data, "unauthenticated");
                self.set_state(ClientState::Unauthorized);
                let message = data
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let handle = SocketClient::detached(self);
                self.fire(
                    "on_unauthenticated",
                    &self.callbacks.on_unauthenticated,
                    (handle, message),
                );
            }
            names::PING => tracing::debug!(client = %self.identifier, data = %data, "ping"),
            _ => {}
        }
        let handlers: Vec<Handler> = self
            .handlers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&name)
            .map(|hs| hs.iter().map(|(_, h)| h.clone()).collect())
            .unwrap_or_default();
        let any: Vec<AnyHandler> = self
            .any
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, h)| h.clone())
            .collect();
        for handler in any {
            let what = format!(
                "catch-all handler (event {name:?}, client {:?})",
                self.identifier
            );
            let (name, data) = (name.clone(), data.clone());
            let fut = guarded(what, move || handler(name, data));
            self.spawn(async move {
                fut.await;
            });
        }
        for handler in handlers {
            let what = format!("handler of event {name:?} (client {:?})", self.identifier);
            let data = data.clone();
            let fut = guarded(what, move || handler(data));
            let inner = self.clone();
            self.spawn(async move {
                if let (Some(Some(answer)), Some(id)) = (fut.await, ack) {
                    inner.send(protocol::ack(id, &answer)).ok();
                }
            });
        }
    }

    pub(crate) fn resolve_ack(&self, id: u64, args: Vec<Value>) {
        if let Some(waiter) = lock(&self.acks).remove(&id) {
            waiter.send(args).ok();
        }
    }
}

/// Asks the background task to stop when the last handle to the client is dropped.
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
/// [`build`](SocketClientBuilder::build) (and their clones) is dropped. Handles given to
/// callbacks, and those from [`handle`](Self::handle), do not keep it running: capture those
/// in handlers, so that a handler never keeps its own client alive.
#[derive(Clone)]
pub struct SocketClient {
    inner: Arc<Inner>,
    _guard: Option<Arc<ShutdownOnDrop>>,
}

/// Starts jobs in arrival order and runs them concurrently until shutdown; then gives the
/// running ones [`SHUTDOWN_GRACE`] and drops the rest.
async fn run_jobs(
    mut jobs: mpsc::UnboundedReceiver<BoxFuture<()>>,
    in_flight: Arc<AtomicUsize>,
    mut desire: watch::Receiver<Desire>,
) {
    let done = |n: usize| {
        in_flight.fetch_sub(n, Ordering::AcqRel);
    };
    IN_DISPATCHER
        .scope((), async {
            let mut running = FuturesUnordered::new();
            loop {
                tokio::select! {
                    biased;
                    changed = desire.wait_for(|d| *d == Desire::Shutdown) => {
                        let _ = changed;
                        break;
                    }
                    job = jobs.recv() => match job {
                        Some(job) => running.push(job),
                        None => break,
                    },
                    Some(()) = running.next(), if !running.is_empty() => done(1),
                }
            }
            jobs.close();
            while let Ok(job) = jobs.try_recv() {
                drop(job);
                done(1);
            }
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
                while running.next().await.is_some() {
                    done(1);
                }
            })
            .await;
            if !running.is_empty() {
                tracing::warn!(
                    running = running.len(),
                    "client handlers still running at shutdown: dropped"
                );
                done(running.len());
            }
        })
        .await;
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
        let url = websocket_url(&self.host, &self.options)?;
        check_headers(&self.options.extra_headers)?;
        if self.options.auth.as_ref().is_some_and(|a| !a.is_object()) {
            return Err(ClientError::InvalidUrl(
                "the auth payload must be a JSON object".into(),
            ));
        }
        let (desire, _) = watch::channel(if self.options.auto_connect {
            Desire::Connected
        } else {
            Desire::Disconnected
        });
        let (jobs, job_rx) = mpsc::unbounded_channel();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15)
            | 1;
        let inner = Arc::new(Inner {
            identifier: self.identifier,
            url,
            options: self.options,
            callbacks: self.callbacks,
            state: AtomicU8::new(ClientState::Unauthorized as u8),
            connected: AtomicBool::new(false),
            ids: Mutex::new((None, None)),
            writer: Mutex::new(None),
            handlers: RwLock::default(),
            any: RwLock::default(),
            next_id: AtomicU64::new(1),
            acks: Mutex::default(),
            desire: desire.clone(),
            jobs,
            in_flight: in_flight.clone(),
            shutting_down: AtomicBool::new(false),
            stopped: watch::channel(false).0,
            driver: Mutex::new(None),
            dispatcher: Mutex::new(None),
            rng: AtomicU64::new(seed),
        });
        *lock(&inner.dispatcher) = Some(tokio::spawn(run_jobs(
            job_rx,
            in_flight,
            desire.subscribe(),
        )));
        *lock(&inner.driver) = Some(tokio::spawn(driver::drive(inner.clone())));
        Ok(SocketClient {
            inner,
            _guard: Some(Arc::new(ShutdownOnDrop(desire))),
        })
    }
}

/// Header names and values must be valid HTTP.
fn check_headers(headers: &[(String, String)]) -> Result<(), ClientError> {
    for (name, value) in headers {
        http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| ClientError::InvalidUrl(format!("header {name:?}: {e}")))?;
        http::HeaderValue::from_str(value)
            .map_err(|e| ClientError::InvalidUrl(format!("header {name:?}: {e}")))?;
    }
    Ok(())
}

/// `ws://host[:port]<path>/?EIO=4&transport=websocket[&query]` from `http(s)://` or `ws://`.
fn websocket_url(host: &str, options: &ClientOptions) -> Result<String, ClientError> {
    let uri: http::Uri = host
        .parse()
        .map_err(|e| ClientError::InvalidUrl(format!("{host:?}: {e}")))?;
    let scheme = match uri.scheme_str() {
        Some("http") | Some("ws") => "ws",
        Some("https") | Some("wss") => {
            return Err(ClientError::InvalidUrl(format!(
                "{host:?}: TLS (https/wss) is not built into this client; put a TLS-terminating proxy in front or connect over plain ws"
            )));
        }
        _ => {
            return Err(ClientError::InvalidUrl(format!(
                "{host:?}: the scheme must be http:// or ws://"
            )));
        }
    };
    let authority = uri
        .authority()
        .ok_or_else(|| ClientError::InvalidUrl(format!("{host:?}: no host")))?;
    if !options.path.starts_with('/') {
        return Err(ClientError::InvalidUrl(format!(
            "path {:?} must start with '/'",
            options.path
        )));
    }
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("EIO", "4")
        .append_pair("transport", "websocket");
    for (k, v) in &options.query {
        query.append_pair(k, v);
    }
    let path = options.path.trim_end_matches('/');
    Ok(format!("{scheme}://{authority}{path}/?{}", query.finish()))
}

impl SocketClient {
    fn detached(inner: &Arc<Inner>) -> Self {
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

    /// The client's name.
    pub fn identifier(&self) -> &str {
        &self.inner.identifier
    }

    /// The authentication state (the seeds' `getState()`).
    pub fn state(&self) -> ClientState {
        ClientState::from_u8(self.inner.state.load(Ordering::Acquire))
    }

    /// Whether the connection is up.
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire)
    }

    /// Emits `authenticate`; the server answers `authenticated` or `unauthenticated`. A no-op
    /// with a warning when not connected, or when not `unauthorized` (no double
    /// authentication).
    pub fn authenticate(&self) {
        if !self.is_connected() {
            tracing::warn!(client = %self.inner.identifier, "authenticate: not connected");
            return;
        }
        let unauthorized = ClientState::Unauthorized as u8;
        let authenticating = ClientState::Authenticating as u8;
        if self
            .inner
            .state
            .compare_exchange(
                unauthorized,
                authenticating,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            tracing::warn!(client = %self.inner.identifier, state = %self.state(), "authenticate: not unauthorized");
            return;
        }
        if self
            .inner
            .send(protocol::event(names::AUTHENTICATE, None, None))
            .is_err()
        {
            self.inner.set_state(ClientState::Unauthorized);
        }
    }

    /// Emits `topic` with `data`. Errors (status 400) when not connected, without a topic or
    /// with a reserved one (`disconnect`...).
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
        let data = self.check_emit(topic, data)?;
        self.inner.send(protocol::event(topic, Some(&data), None))?;
        if options.log {
            tracing::info!(client = %self.inner.identifier, topic, data = %data, "emitted");
        }
        if let Some(callback) = options.callback {
            // Later, not within this call: the seeds run it through `setImmediate`.
            let what = format!("emit callback of client {:?}", self.inner.identifier);
            self.inner.spawn(async move {
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

    /// Emits and waits for the server's acknowledgement (its first argument).
    pub async fn emit_with_ack<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        data: &T,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let data = self.check_emit(topic, data)?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.inner.acks).insert(id, tx);
        // Forgets the waiter however this call ends: answered, timed out, failed or dropped.
        struct Forget<'a>(&'a Inner, u64);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                lock(&self.0.acks).remove(&self.1);
            }
        }
        let _forget = Forget(&self.inner, id);
        self.inner
            .send(protocol::event(topic, Some(&data), Some(id)))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(args)) => Ok(args.into_iter().next().unwrap_or(Value::Null)),
            Ok(Err(_)) => Err(ClientError::Transport(
                "disconnected before the acknowledgement".into(),
            )),
            Err(_) => Err(ClientError::AckTimeout(timeout)),
        }
    }

    fn check_emit<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        data: &T,
    ) -> Result<Value, ClientError> {
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
        serde_json::to_value(data).map_err(|e| ClientError::Encode(e.to_string()))
    }

    /// Subscribes `handler` (of the event's JSON data) to `event`, unless the event already
    /// has a handler (the seeds' `ignoreDuplicate: true`): then a warning, and `None`.
    pub fn subscribe<F, Fut>(&self, event: &str, handler: F) -> Option<SubscriptionId>
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        self.subscribe_handler(event, EventHandler::new(handler), true)
    }

    /// [`subscribe`](Self::subscribe) with typed data: data of another shape is logged and
    /// skipped, never fatal.
    pub fn subscribe_typed<T, F, Fut>(&self, event: &str, handler: F) -> Option<SubscriptionId>
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        self.subscribe_handler(event, EventHandler::typed(event, handler), true)
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
        let mut handlers = self
            .inner
            .handlers
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let entry = handlers.entry(event.to_owned()).or_default();
        if ignore_duplicate && !entry.is_empty() {
            tracing::warn!(client = %self.inner.identifier, event, "subscribe: the event already has a handler");
            return None;
        }
        let id = SubscriptionId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        entry.push((id, handler.0));
        Some(id)
    }

    /// Subscribes `handler` to every event the server sends (name and data), after the
    /// helper's own reactions and alongside the per-event handlers.
    pub fn subscribe_any<F, Fut>(&self, handler: F) -> SubscriptionId
    where
        F: Fn(String, Value) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        let id = SubscriptionId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        self.inner
            .any
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, handlers::any_handler(handler)));
        id
    }

    /// Removes a catch-all handler; returns whether it was there.
    pub fn unsubscribe_any(&self, id: SubscriptionId) -> bool {
        let mut any = self.inner.any.write().unwrap_or_else(|e| e.into_inner());
        let before = any.len();
        any.retain(|(i, _)| *i != id);
        any.len() != before
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
        let mut handlers = self
            .inner
            .handlers
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let Some(entry) = handlers.get_mut(event) else {
            return false;
        };
        let before = entry.len();
        match id {
            Some(id) => entry.retain(|(i, _)| *i != id),
            None => entry.clear(),
        }
        let removed = entry.len() != before;
        if entry.is_empty() {
            handlers.remove(event);
        }
        removed
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
        self.inner
            .send(protocol::event(
                event,
                Some(&json!({ "rooms": rooms })),
                None,
            ))
            .ok();
    }

    /// Connects (after `auto_connect: false`, a `disconnect()`, or a server disconnect).
    pub fn connect(&self) {
        self.inner.settle(Desire::Disconnected, Desire::Connected);
    }

    /// Disconnects (no reconnection follows).
    pub fn disconnect(&self) {
        self.inner.settle(Desire::Connected, Desire::Disconnected);
    }

    /// Shuts the client down (the seeds' `shutdown()`): the helper's and the user's listeners
    /// removed first (no callback fires from here on), disconnected, state reset. When it
    /// resolves, every task of the client has ended: handlers still running got
    /// [`SHUTDOWN_GRACE`] to finish. Called from inside a handler or callback, it starts the
    /// shutdown and returns at once (waiting there would wait for itself).
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        self.inner
            .handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.inner
            .any
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.inner.desire.send_replace(Desire::Shutdown);
        if IN_DISPATCHER.try_with(|()| ()).is_ok() {
            return;
        }
        let driver = lock(&self.inner.driver).take();
        let dispatcher = lock(&self.inner.dispatcher).take();
        if driver.is_none() && dispatcher.is_none() {
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
        if let Some(dispatcher) = dispatcher {
            dispatcher.await.ok();
        }
        self.inner.disconnected();
        self.inner.stopped.send_replace(true);
    }

    /// How many of the client's tasks are running: the connection task, the dispatcher, and
    /// the handlers and callbacks at work. 0 after [`shutdown`](Self::shutdown).
    pub fn running_tasks(&self) -> usize {
        let alive = |slot: &Mutex<Option<JoinHandle<()>>>| {
            lock(slot).as_ref().is_some_and(|h| !h.is_finished())
        };
        usize::from(alive(&self.inner.driver))
            + usize::from(alive(&self.inner.dispatcher))
            + self.inner.in_flight.load(Ordering::Acquire)
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
        lock(&self.client.inner.ids).1.clone()
    }

    /// The Engine.IO session id, while connected.
    pub fn engine_id(&self) -> Option<String> {
        lock(&self.client.inner.ids).0.clone()
    }

    /// Whether the connection is up.
    pub fn connected(&self) -> bool {
        self.client.is_connected()
    }

    /// Emits an event with any number of arguments, bypassing the helper's checks but the
    /// connection's.
    pub fn emit_args(&self, event: &str, args: Vec<Value>) -> Result<(), ClientError> {
        let mut packet = vec![Value::String(event.to_owned())];
        packet.extend(args);
        self.client
            .inner
            .send(format!("42{}", Value::Array(packet)))
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
