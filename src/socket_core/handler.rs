//! User event handlers: plain async functions whose arguments are extractors, in the style of
//! socketioxide's handlers.
//!
//! ```
//! use socketio_stack::extract::{Data, EventName};
//! use socketioxide::extract::{AckSender, SocketRef};
//!
//! #[derive(serde::Deserialize)]
//! struct Chat { text: String }
//!
//! async fn on_chat(socket: SocketRef, Data(chat): Data<Chat>, ack: AckSender) {
//!     socket.to("lobby").emit("chat", &chat.text).await.ok();
//!     ack.send("ok").ok();
//! }
//!
//! async fn log_any(EventName(name): EventName) {
//!     tracing::info!(%name, "event");
//! }
//! # let _ = socketio_stack::socket_core::CoreService::<socketioxide::adapter::LocalAdapter>::builder()
//! #     .on("chat", on_chat).on("other", log_any).build().unwrap();
//! ```

use std::future::Future;
use std::sync::Arc;

use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef};

use crate::args::{Args, ArgsError};
use crate::plumbing::{BoxFuture, catch_panic, catch_panic_now};
use crate::session::Session;
use crate::telemetry;

/// Everything an extractor may take its value from.
pub struct EventParts<'a, A: Adapter> {
    /// The socket.
    pub socket: SocketRef<A>,
    /// The socket's session.
    pub session: Session,
    /// The event name (`authenticated` for the authenticated callback).
    pub name: String,
    /// The event's arguments (the disconnect handler gets the reason as its one argument).
    pub args: Args,
    /// The acknowledgement sender, taken by the first `AckSender` extractor.
    pub ack: Option<AckSender<A>>,
    /// The application state given to the builder (`with_state`), by type: borrowed, since
    /// extractors run before the handler's future is made.
    pub state: &'a http::Extensions,
}

/// Why an extractor could not produce its value; the handler is then not called and the
/// failure is logged.
#[derive(Debug)]
pub struct ExtractError(pub String);

impl std::fmt::Display for ExtractError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ExtractError {}

/// A handler argument taken from the event.
pub trait FromEventParts<A: Adapter>: Sized {
    /// Takes the value, or says why it cannot.
    fn from_event_parts(parts: &mut EventParts<'_, A>) -> Result<Self, ExtractError>;
}

/// Extractors for handler arguments.
pub mod extract {
    use super::*;
    use serde::de::DeserializeOwned;

    /// The event's arguments deserialized as `T`, as [`Args::decode`] reads them: a tuple
    /// takes every argument in order (`Data<(String, String)>` for `emit("chat", room,
    /// text)`), another type the one argument. When they do not fit (a wrong shape, or more
    /// arguments than `T` takes, trailing `null`s aside: JavaScript's trailing `undefined`),
    /// the handler is not called and the mismatch is logged: nothing is cut to the part that
    /// fits.
    #[derive(Debug, Clone)]
    pub struct Data<T>(pub T);

    /// The event's arguments deserialized as `T` (as [`Data`] reads them), or the error, for
    /// handlers that want to answer bad input themselves.
    #[derive(Debug)]
    pub struct TryData<T>(pub Result<T, ArgsError>);

    /// The event name.
    #[derive(Debug, Clone)]
    pub struct EventName(pub String);

    pub use crate::identity::Identity;

    /// A value of the socket's [`Extensions`](crate::session::Extensions), cloned out: what a
    /// layer of yours kept there for the handlers. Missing, the handler is not called (logged);
    /// ask for `Option<Extension<T>>` where it may be missing.
    #[derive(Debug, Clone, Copy)]
    pub struct Extension<T>(pub T);

    /// A value of the application state given to the builder
    /// ([`with_state`](crate::SocketServerBuilder::with_state)), cloned out. The server's
    /// [`Outbound`](crate::Outbound) is always there: `State(out): State<Outbound>` sends
    /// from a handler through the same stack as `SocketServer::send` (Redis included).
    #[derive(Debug, Clone, Copy)]
    pub struct State<T>(pub T);

    /// Who the client is, as authentication found it (see [`identity`](crate::identity)).
    impl<A: Adapter, T: Clone + Send + Sync + 'static> FromEventParts<A> for Identity<T> {
        fn from_event_parts(parts: &mut EventParts<'_, A>) -> Result<Self, ExtractError> {
            parts.session.identity().map(Identity).ok_or_else(|| {
                ExtractError(format!(
                    "the socket has no identity of type {}",
                    std::any::type_name::<T>()
                ))
            })
        }
    }

    impl<A: Adapter, T: Clone + Send + Sync + 'static> FromEventParts<A> for Extension<T> {
        fn from_event_parts(parts: &mut EventParts<'_, A>) -> Result<Self, ExtractError> {
            parts
                .session
                .extensions()
                .get()
                .map(Extension)
                .ok_or_else(|| {
                    ExtractError(format!(
                        "the socket has no extension of type {}",
                        std::any::type_name::<T>()
                    ))
                })
        }
    }

    impl<A: Adapter, T: Clone + Send + Sync + 'static> FromEventParts<A> for State<T> {
        fn from_event_parts(parts: &mut EventParts<'_, A>) -> Result<Self, ExtractError> {
            parts.state.get::<T>().cloned().map(State).ok_or_else(|| {
                ExtractError(format!(
                    "no state of type {} was given to the builder (with_state)",
                    std::any::type_name::<T>()
                ))
            })
        }
    }

    /// Any extractor, where its value may be missing: `None` instead of the handler not
    /// being called.
    impl<A: Adapter, T: FromEventParts<A>> FromEventParts<A> for Option<T> {
        fn from_event_parts(parts: &mut EventParts<'_, A>) -> Result<Self, ExtractError> {
            Ok(T::from_event_parts(parts).ok())
        }
    }

    impl<A: Adapter, T: DeserializeOwned> FromEventParts<A> for Data<T> {
        fn from_event_parts(parts: &mut EventParts<'_, A>) -> Result<Self, ExtractError> {
            parts
                .args
                .decode()
                .map(Data)
                .map_err(|e| ExtractError(format!("event arguments do not fit the handler: {e}")))
        }
    }

    impl<A: Adapter, T: DeserializeOwned> FromEventParts<A> for TryData<T> {
        fn from_event_parts(parts: &mut EventParts<'_, A>) -> Result<Self, ExtractError> {
            Ok(TryData(parts.args.decode()))
        }
    }

    /// Every argument, untyped, binary included: emit or acknowledge with it to send them
    /// all back as they came.
    impl<A: Adapter> FromEventParts<A> for Args {
        fn from_event_parts(parts: &mut EventParts<'_, A>) -> Result<Self, ExtractError> {
            Ok(parts.args.clone())
        }
    }

    impl<A: Adapter> FromEventParts<A> for EventName {
        fn from_event_parts(parts: &mut EventParts<'_, A>) -> Result<Self, ExtractError> {
            Ok(EventName(parts.name.clone()))
        }
    }

    impl<A: Adapter> FromEventParts<A> for SocketRef<A> {
        fn from_event_parts(parts: &mut EventParts<'_, A>) -> Result<Self, ExtractError> {
            Ok(parts.socket.clone())
        }
    }

    impl<A: Adapter> FromEventParts<A> for Session {
        fn from_event_parts(parts: &mut EventParts<'_, A>) -> Result<Self, ExtractError> {
            Ok(parts.session.clone())
        }
    }

    impl<A: Adapter> FromEventParts<A> for Arc<crate::handshake::Handshake> {
        fn from_event_parts(parts: &mut EventParts<'_, A>) -> Result<Self, ExtractError> {
            Ok(parts.session.handshake().clone())
        }
    }

    impl<A: Adapter> FromEventParts<A> for AckSender<A> {
        fn from_event_parts(parts: &mut EventParts<'_, A>) -> Result<Self, ExtractError> {
            parts
                .ack
                .take()
                .ok_or_else(|| ExtractError("the ack sender can be taken once".into()))
        }
    }
}

/// An async function usable as an event handler: every argument is a [`FromEventParts`].
pub trait EventHandler<A: Adapter, T>: Clone + Send + Sync + 'static {
    /// Extracts the arguments and runs the handler.
    fn call(&self, parts: EventParts<'_, A>) -> BoxFuture<()>;
}

macro_rules! impl_event_handler {
    ($($ty:ident),*) => {
        #[allow(non_snake_case, unused_mut, unused_variables)]
        impl<A, F, Fut, $($ty,)*> EventHandler<A, ($($ty,)*)> for F
        where
            A: Adapter,
            F: Fn($($ty,)*) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future<Output = ()> + Send + 'static,
            $($ty: FromEventParts<A> + Send + 'static,)*
        {
            fn call(&self, mut parts: EventParts<'_, A>) -> BoxFuture<()> {
                $(
                    let $ty = match $ty::from_event_parts(&mut parts) {
                        Ok(v) => v,
                        Err(e) => {
                            tracing::warn!(sid = %parts.socket.id, event = %parts.name, error = %e, "handler not called");
                            return Box::pin(async {});
                        }
                    };
                )*
                Box::pin((self.clone())($($ty,)*))
            }
        }
    };
}

impl_event_handler!();
impl_event_handler!(T1);
impl_event_handler!(T1, T2);
impl_event_handler!(T1, T2, T3);
impl_event_handler!(T1, T2, T3, T4);
impl_event_handler!(T1, T2, T3, T4, T5);

/// A type-erased handler.
pub(crate) type BoxedHandler<A> =
    Arc<dyn for<'a> Fn(EventParts<'a, A>) -> BoxFuture<()> + Send + Sync>;

/// Erases `handler`, containing its panics: a panicking handler is logged and never takes its
/// socket's pipeline (or anyone else's) down.
pub(crate) fn boxed<A: Adapter, T, H: EventHandler<A, T>>(handler: H) -> BoxedHandler<A> {
    Arc::new(move |parts: EventParts<'_, A>| {
        let socket = parts.socket.id;
        let name = parts.name.clone();
        // The handler's synchronous part (extractors, a closure's body before its future) runs
        // now, under the guard as well as its future: what it does not keep is dropped now.
        let started = catch_panic_now(|| handler.call(parts));
        Box::pin(async move {
            let outcome = match started {
                Ok(fut) => catch_panic(fut).await,
                Err(panic) => Err(panic),
            };
            if let Err(panic) = outcome {
                telemetry::handler_panicked();
                tracing::error!(sid = %socket, event = %name, panic = %panic, "event handler panicked");
            }
        })
    })
}
