//! What the client does with what its connection loop reports: the helper's own reactions
//! (state, lifecycle callbacks), then the user's handlers, each handed to the job runner so
//! that they start in the order of the events and none can stop the loop.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::args::Args;
use crate::client::driver::{Events, Reason};
use crate::client::error::ClientError;
use crate::client::handle::SocketClient;
use crate::client::handlers::{Callback, first_as_json, guarded};
use crate::client::protocol::{self, Outgoing};
use crate::client::state::{ConnectionIds, Shared};
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
    fn connected(&self, writer: mpsc::UnboundedSender<Outgoing>, ids: ConnectionIds) {
        self.shared.connected_with(writer, ids);
        self.fire("on_connected", &self.callbacks.on_connected, self.handle());
    }

    /// The helper's own reactions, then the user's handlers.
    fn event(&self, name: String, args: Args, ack: Option<u64>) {
        let shared = &self.shared;
        if shared.shutting_down() {
            return;
        }
        let data = first_as_json(&args);
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
            let args = args.clone();
            let fut = guarded(what, move || handler(args));
            let shared = shared.clone();
            self.shared.jobs.push(async move {
                if let (Some(Some(answer)), Some(id)) = (fut.await, ack) {
                    match protocol::ack(id, &answer) {
                        Ok(packet) => {
                            shared.send(packet).ok();
                        }
                        Err(e) => {
                            tracing::error!(client = %shared.identifier, error = %e, "acknowledgement not sent")
                        }
                    }
                }
            });
        }
    }

    fn ack(&self, id: u64, args: Args) {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use tokio::sync::watch;

    use super::*;
    use crate::client::driver::Desire;
    use crate::client::handlers::{EventHandler, callback};
    use crate::client::jobs::job_queue;

    /// Far longer than any test waits: on paused time, reached only when what is awaited
    /// never comes.
    const NEVER: Duration = Duration::from_secs(3600);

    /// A client's state and dispatcher with a running job runner, connected: the packets it
    /// sends come out of the receiver.
    fn ids(engine_id: &str, socket_id: &str) -> ConnectionIds {
        ConnectionIds {
            engine_id: engine_id.into(),
            socket_id: Some(socket_id.into()),
            transport: crate::client::options::TransportKind::WebSocket,
        }
    }

    fn connected(callbacks: Callbacks) -> (Dispatcher, mpsc::UnboundedReceiver<Outgoing>) {
        let (queue, runner) = job_queue();
        let (desire, _) = watch::channel(Desire::Connected);
        let shared = Arc::new(Shared::new("t".into(), desire, queue));
        tokio::spawn(runner.run(std::future::pending()));
        let dispatcher = Dispatcher::new(shared, callbacks);
        let (writer, sent) = mpsc::unbounded_channel();
        dispatcher.connected(writer, ids("e1", "s1"));
        (dispatcher, sent)
    }

    async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
        tokio::time::timeout(NEVER, rx.recv())
            .await
            .expect("in time")
            .expect("open")
    }

    async fn next_text(rx: &mut mpsc::UnboundedReceiver<Outgoing>) -> String {
        next(rx).await.text
    }

    /// Lifecycle callbacks that note what they are called with.
    fn noting(log: &mpsc::UnboundedSender<String>) -> Callbacks {
        let [a, b, c, d, e] = [(); 5].map(|()| log.clone());
        Callbacks {
            on_connected: Some(callback(move |_: SocketClient| {
                a.send("connected".into()).ok();
                async {}
            })),
            on_disconnected: Some(callback(move |(_, reason): (SocketClient, String)| {
                b.send(format!("disconnected:{reason}")).ok();
                async {}
            })),
            on_error: Some(callback(move |(_, error): (SocketClient, ClientError)| {
                c.send(format!("error:{error}")).ok();
                async {}
            })),
            on_authenticated: Some(callback(move |_: SocketClient| {
                d.send("authenticated".into()).ok();
                async {}
            })),
            on_unauthenticated: Some(callback(move |(_, message): (SocketClient, String)| {
                e.send(format!("unauthenticated:{message}")).ok();
                async {}
            })),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_state_goes_unauthorized_authenticating_authenticated_and_back_on_each_loss() {
        let (log, mut noted) = mpsc::unbounded_channel();
        let (dispatcher, mut sent) = connected(noting(&log));
        let client = dispatcher.handle();
        assert_eq!(next(&mut noted).await, "connected");
        assert_eq!(client.state(), ClientState::Unauthorized);

        client.authenticate();
        assert_eq!(client.state(), ClientState::Authenticating);
        assert_eq!(next_text(&mut sent).await, r#"42["authenticate"]"#);
        client.authenticate();
        assert!(sent.try_recv().is_err(), "no second authenticate");

        dispatcher.event(
            names::AUTHENTICATED.into(),
            vec![json!({"id": "s1", "time": "t"})].into(),
            None,
        );
        assert_eq!(client.state(), ClientState::Authenticated);
        assert_eq!(next(&mut noted).await, "authenticated");
        client.authenticate();
        assert!(
            sent.try_recv().is_err(),
            "no authenticate once authenticated"
        );

        dispatcher.closed();
        dispatcher.disconnected(Reason::TransportClose);
        assert_eq!(client.state(), ClientState::Unauthorized);
        assert!(!client.is_connected());
        assert_eq!(next(&mut noted).await, "disconnected:transport close");
        assert_eq!(client.emit("x", &1), Err(ClientError::NotConnected));

        let (writer, mut sent) = mpsc::unbounded_channel();
        dispatcher.connected(writer, ids("e2", "s2"));
        assert_eq!(next(&mut noted).await, "connected");
        client.authenticate();
        assert_eq!(next_text(&mut sent).await, r#"42["authenticate"]"#);
        dispatcher.event(
            names::UNAUTHENTICATED.into(),
            vec![json!({"message": "bad token"})].into(),
            None,
        );
        assert_eq!(client.state(), ClientState::Unauthorized);
        assert_eq!(next(&mut noted).await, "unauthenticated:bad token");

        dispatcher.failed(ClientError::Refused("no".into()));
        assert_eq!(
            next(&mut noted).await,
            "error:the server refused the connection: no"
        );
    }

    async fn panics_in_its_future(_: Value) {
        panic!("later")
    }

    #[tokio::test(start_paused = true)]
    async fn failing_and_panicking_handlers_are_contained_and_the_others_still_run() {
        let (log, mut noted) = mpsc::unbounded_channel::<String>();
        let (dispatcher, mut sent) = connected(Callbacks::default());
        let client = dispatcher.handle();
        let news = [
            EventHandler::new(|_| -> std::future::Ready<()> { panic!("at once") }),
            EventHandler::new(panics_in_its_future),
            EventHandler::new(|_| async { Err::<(), _>("failed") }),
            EventHandler::new(move |data| {
                log.send(format!("news {data}")).ok();
                async {}
            }),
        ];
        for handler in news {
            client.subscribe_handler("news", handler, false).unwrap();
        }
        client.subscribe_handler(
            "ask",
            EventHandler::answering(|data| async move { Ok::<_, String>(json!({ "got": data })) }),
            true,
        );

        dispatcher.event("news".into(), vec![json!(1)].into(), None);
        assert_eq!(next(&mut noted).await, "news 1");
        dispatcher.event("ask".into(), vec![json!(2)].into(), Some(9));
        assert_eq!(next_text(&mut sent).await, r#"439[{"got":2}]"#);
        dispatcher.event("news".into(), vec![json!(3)].into(), None);
        assert_eq!(next(&mut noted).await, "news 3");
        // The note comes from the handler's synchronous part: let the runner finish the rest.
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(client.running_tasks(), 0, "every handler has ended");
    }

    #[tokio::test(start_paused = true)]
    async fn binary_data_reaches_each_kind_of_handler_and_goes_back_in_answers() {
        use bytes::Bytes;

        use crate::args::Arg;

        let (log, mut noted) = mpsc::unbounded_channel::<String>();
        let (dispatcher, mut sent) = connected(Callbacks::default());
        let client = dispatcher.handle();
        let file = Bytes::from_static(&[0, 1, 0xff]);
        let [a, b, c] = [(); 3].map(|()| log.clone());
        let handlers = [
            EventHandler::args(move |args: Args| {
                a.send(format!("args {:?}", args.into_vec())).ok();
                async {}
            }),
            EventHandler::typed("file", move |bytes: Bytes| {
                b.send(format!("typed {:?}", bytes.to_vec())).ok();
                async {}
            }),
            EventHandler::new(move |data| {
                c.send(format!("json {data}")).ok();
                async {}
            }),
        ];
        for handler in handlers {
            client.subscribe_handler("file", handler, false).unwrap();
        }
        client.subscribe_handler(
            "echo",
            EventHandler::answering_args(|args: Args| async move { Ok::<_, String>(args) }),
            true,
        );
        let args = Args::from(vec![Arg::Binary(file.clone()), Arg::from("name")]);
        dispatcher.event("file".into(), args.clone(), None);
        assert_eq!(
            next(&mut noted).await,
            format!("args {:?}", args.clone().into_vec())
        );
        assert_eq!(next(&mut noted).await, "typed [0, 1, 255]");
        assert_eq!(next(&mut noted).await, "json [0,1,255]");

        dispatcher.event("echo".into(), args, Some(4));
        let answer = next(&mut sent).await;
        assert_eq!(
            answer.text,
            r#"461-4[{"_placeholder":true,"num":0},"name"]"#
        );
        assert_eq!(answer.attachments, [file]);
    }

    #[tokio::test(start_paused = true)]
    async fn once_shutdown_has_begun_nothing_fires_and_nothing_changes() {
        let (log, mut noted) = mpsc::unbounded_channel();
        let (dispatcher, _sent) = connected(noting(&log));
        assert_eq!(next(&mut noted).await, "connected");
        let client = dispatcher.handle();
        let handled = log.clone();
        client.subscribe("news", move |_| {
            handled.send("news".into()).ok();
            async {}
        });
        dispatcher.shared.begin_shutdown();
        dispatcher.event(names::AUTHENTICATED.into(), Args::new(), None);
        dispatcher.event("news".into(), Args::new(), None);
        dispatcher.disconnected(Reason::ClientDisconnect);
        dispatcher.failed(ClientError::Timeout(Duration::from_secs(1)));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(client.state(), ClientState::Unauthorized);
        assert!(noted.try_recv().is_err());
    }
}
