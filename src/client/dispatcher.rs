//! What the client does with what its connection loop reports: the helper's own reactions
//! (state, lifecycle callbacks), then the user's handlers, each handed to the job runner so
//! that they start in the order of the events and none can stop the loop.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::client::driver::{Events, Reason};
use crate::client::error::ClientError;
use crate::client::handle::SocketClient;
use crate::client::handlers::{Callback, guarded};
use crate::client::protocol;
use crate::client::state::Shared;
use crate::event::names;
use crate::session::ClientState;

/// The lifecycle callbacks given to the builder.
#[derive(Default)]
pub(crate) struct Callbacks {
    pub(crate) on_connected: Option<Callback<SocketClient>>,
    pub(crate) on_disconnected: Option<Callback<(SocketClient, String)>>,
    pub(crate) on_error: Option<Callback<(SocketClient, ClientError)>>,
    pub(crate) on_authenticated: Option<Callback<SocketClient>>,
    pub(crate) on_unauthenticated: Option<Callback<(SocketClient, String)>>,
}

/// The [`Events`] of one client's connection loop.
pub(crate) struct Dispatcher {
    shared: Arc<Shared>,
    callbacks: Callbacks,
}

impl Dispatcher {
    pub(crate) fn new(shared: Arc<Shared>, callbacks: Callbacks) -> Self {
        Self { shared, callbacks }
    }

    /// A handle for a callback: one that does not keep the client running.
    fn handle(&self) -> SocketClient {
        SocketClient::detached(&self.shared)
    }

    fn fire<T: Send + 'static>(&self, name: &str, callback: &Option<Callback<T>>, arg: T) {
        if self.shared.shutting_down() {
            return;
        }
        if let Some(callback) = callback.clone() {
            let what = format!("{} callback of client {:?}", name, self.shared.identifier);
            let fut = guarded(what, move || callback(arg));
            self.shared.jobs.push(async move {
                fut.await;
            });
        }
    }
}

impl Events for Dispatcher {
    fn connected(
        &self,
        writer: mpsc::UnboundedSender<String>,
        engine_id: String,
        socket_id: Option<String>,
    ) {
        self.shared.connected_with(writer, engine_id, socket_id);
        self.fire("on_connected", &self.callbacks.on_connected, self.handle());
    }

    /// The helper's own reactions, then the user's handlers.
    fn event(&self, name: String, args: Vec<Value>, ack: Option<u64>) {
        let shared = &self.shared;
        if shared.shutting_down() {
            return;
        }
        let data = args.into_iter().next().unwrap_or(Value::Null);
        match name.as_str() {
            names::AUTHENTICATED => {
                tracing::info!(client = %shared.identifier, data = %data, "authenticated");
                shared.set_state(ClientState::Authenticated);
                self.fire(
                    "on_authenticated",
                    &self.callbacks.on_authenticated,
                    self.handle(),
                );
            }
            names::UNAUTHENTICATED => {
                tracing::warn!(client = %shared.identifier, data = %data, "unauthenticated");
                shared.set_state(ClientState::Unauthorized);
                let message = data
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                self.fire(
                    "on_unauthenticated",
                    &self.callbacks.on_unauthenticated,
                    (self.handle(), message),
                );
            }
            names::PING => tracing::debug!(client = %shared.identifier, data = %data, "ping"),
            _ => {}
        }
        let handlers = shared.handlers_of(&name);
        for handler in shared.any_handlers() {
            let what = format!(
                "catch-all handler (event {name:?}, client {:?})",
                shared.identifier
            );
            let (name, data) = (name.clone(), data.clone());
            let fut = guarded(what, move || handler(name, data));
            shared.jobs.push(async move {
                fut.await;
            });
        }
        for handler in handlers {
            let what = format!("handler of event {name:?} (client {:?})", shared.identifier);
            let data = data.clone();
            let fut = guarded(what, move || handler(data));
            let shared = shared.clone();
            self.shared.jobs.push(async move {
                if let (Some(Some(answer)), Some(id)) = (fut.await, ack) {
                    shared.send(protocol::ack(id, &answer)).ok();
                }
            });
        }
    }

    fn ack(&self, id: u64, args: Vec<Value>) {
        self.shared.resolve_ack(id, args);
    }

    fn closed(&self) {
        self.shared.disconnected();
    }

    fn disconnected(&self, reason: Reason) {
        self.fire(
            "on_disconnected",
            &self.callbacks.on_disconnected,
            (self.handle(), reason.as_str().to_owned()),
        );
    }

    fn failed(&self, error: ClientError) {
        self.fire("on_error", &self.callbacks.on_error, (self.handle(), error));
    }
}
