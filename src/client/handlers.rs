//! Event handlers and lifecycle callbacks, made safe: a handler or callback that returns an
//! error or panics (in its synchronous part or its future) is logged and the client goes on,
//! as the seeds' dual try/catch wrapping does.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::args::{Arg, Args};
use crate::error::BoxError;
use crate::plumbing::BoxFuture;

/// What a handler or callback may return: nothing, or a `Result` whose error is logged.
pub trait HandlerResult: Send + 'static {
    /// The error to log, if any.
    fn into_result(self) -> Result<(), BoxError>;
}

impl HandlerResult for () {
    fn into_result(self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<E: Display + Send + 'static> HandlerResult for Result<(), E> {
    fn into_result(self) -> Result<(), BoxError> {
        self.map_err(|e| e.to_string().into())
    }
}

/// An event handler, for [`SocketClient::subscribe_handler`] and
/// [`SocketClient::subscribe_many`].
///
/// [`SocketClient::subscribe_handler`]: crate::client::SocketClient::subscribe_handler
/// [`SocketClient::subscribe_many`]: crate::client::SocketClient::subscribe_many
#[derive(Clone)]
pub struct EventHandler(pub(crate) Handler);

impl EventHandler {
    /// A handler of the event's data (its first argument) as JSON; it may return `()` or a
    /// `Result` (an error is logged). JSON has no binary type: binary data reaches it as an
    /// array of its bytes' values (as serde_json writes bytes), a string with a lone
    /// surrogate with U+FFFD in its place. For binary data, take [`Bytes`](bytes::Bytes) in
    /// a [`typed`](Self::typed) handler, or every argument as it came with
    /// [`args`](Self::args).
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        Self(handler(f))
    }

    /// A handler of typed data (the event's first argument): binary data reads as
    /// [`Bytes`](bytes::Bytes) (or `Vec<u8>` with `serde_bytes`); data of another shape is
    /// logged and skipped.
    pub fn typed<T, F, Fut>(event: &str, f: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        Self(typed_handler(event, f))
    }

    /// A handler whose answer goes back to the server when it asked for an acknowledgement.
    pub fn answering<F, Fut, E>(f: F) -> Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        Self(answering_handler(move |args: Args| {
            let fut = f(first_as_json(&args));
            async move { fut.await.map(|answer| Args::from(vec![Arg::from(answer)])) }
        }))
    }

    /// A handler of all the event's arguments as they came, binary data included.
    pub fn args<F, Fut>(f: F) -> Self
    where
        F: Fn(Args) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        Self(Arc::new(move |args| {
            let fut = f(args);
            Box::pin(async move { fut.await.into_result().map(|()| None) })
        }))
    }

    /// A handler of all the event's arguments whose answer, any arguments with binary data
    /// among them, goes back to the server when it asked for an acknowledgement.
    pub fn answering_args<F, Fut, E>(f: F) -> Self
    where
        F: Fn(Args) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Args, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        Self(answering_handler(f))
    }
}

/// The event's data as a JSON handler takes it: its first argument (`null` without one).
pub(crate) fn first_as_json(args: &Args) -> Value {
    args.first().map_or(Value::Null, json_of)
}

/// `arg` as JSON, binary data as the array of its bytes and a lone surrogate as U+FFFD.
fn json_of(arg: &Arg) -> Value {
    match arg {
        Arg::Binary(bytes) => bytes.iter().map(|&b| Value::from(b)).collect(),
        Arg::Utf16(units) => Value::String(String::from_utf16_lossy(units)),
        Arg::Array(items) => items.iter().map(json_of).collect(),
        Arg::Object(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), json_of(v)))
                .collect(),
        ),
        other => other.to_json().unwrap_or(Value::Null),
    }
}

/// A type-erased event handler: takes the event's arguments, answers what to send back when
/// the server asked for an acknowledgement (`None`: no answer).
pub(crate) type Handler =
    Arc<dyn Fn(Args) -> BoxFuture<Result<Option<Args>, BoxError>> + Send + Sync>;

/// A type-erased catch-all handler: event name and data.
pub(crate) type AnyHandler =
    Arc<dyn Fn(String, Value) -> BoxFuture<Result<(), BoxError>> + Send + Sync>;

/// A catch-all handler.
pub(crate) fn any_handler<F, Fut>(f: F) -> AnyHandler
where
    F: Fn(String, Value) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: HandlerResult,
{
    Arc::new(move |name, data| {
        let fut = f(name, data);
        Box::pin(async move { fut.await.into_result() })
    })
}

/// A type-erased lifecycle callback.
pub(crate) type Callback<T> = Arc<dyn Fn(T) -> BoxFuture<Result<(), BoxError>> + Send + Sync>;

/// A handler of the raw JSON data.
fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Value) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: HandlerResult,
{
    Arc::new(move |args| {
        let fut = f(first_as_json(&args));
        Box::pin(async move { fut.await.into_result().map(|()| None) })
    })
}

/// A handler of typed data: data that does not deserialize as `T` is logged and skipped.
fn typed_handler<T, F, Fut>(event: &str, f: F) -> Handler
where
    T: DeserializeOwned + Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: HandlerResult,
{
    let event = event.to_owned();
    Arc::new(
        move |args| match args.first().unwrap_or(&Arg::Null).decode::<T>() {
            Ok(typed) => {
                let fut = f(typed);
                Box::pin(async move { fut.await.into_result().map(|()| None) })
            }
            Err(e) => {
                let message = format!("event {event:?}: data of an unexpected shape skipped: {e}");
                Box::pin(async move { Err(message.into()) })
            }
        },
    )
}

/// A handler whose answer is sent back when the server asks for an acknowledgement.
fn answering_handler<F, Fut, E>(f: F) -> Handler
where
    F: Fn(Args) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Args, E>> + Send + 'static,
    E: Display + Send + 'static,
{
    Arc::new(move |args| {
        let fut = f(args);
        Box::pin(async move { fut.await.map(Some).map_err(|e| e.to_string().into()) })
    })
}

/// A lifecycle callback.
pub(crate) fn callback<T, F, Fut>(f: F) -> Callback<T>
where
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: HandlerResult,
{
    Arc::new(move |arg| {
        let fut = f(arg);
        Box::pin(async move { fut.await.into_result() })
    })
}

/// Starts `call` now (its synchronous part, under the panic guard), and gives back its future
/// with its panic or error turned into a log line. Now, not when the future is first polled:
/// the future must not keep what `call` holds (a handler holding its own client's handle
/// would keep the client alive while the job waits).
pub(crate) fn guarded<T: Send + 'static>(
    what: String,
    call: impl FnOnce() -> BoxFuture<Result<T, BoxError>>,
) -> BoxFuture<Option<T>> {
    let started = crate::plumbing::catch_panic_now(call);
    Box::pin(async move {
        let outcome = match started {
            Ok(fut) => crate::plumbing::catch_panic(fut).await,
            Err(panic) => Err(panic),
        };
        match outcome {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "{what} failed");
                None
            }
            Err(panic) => {
                tracing::error!(panic = %panic, "{what} panicked");
                None
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    async fn fails_later() -> Result<(), BoxError> {
        panic!("later")
    }

    #[tokio::test]
    async fn guarded_starts_the_call_at_once_and_contains_what_either_part_does() {
        let started = Arc::new(AtomicBool::new(false));
        let flag = started.clone();
        let rest = guarded("t".into(), move || {
            flag.store(true, Ordering::SeqCst);
            Box::pin(async { Ok(7) })
        });
        assert!(
            started.load(Ordering::SeqCst),
            "before the future is polled"
        );
        assert_eq!(rest.await, Some(7));
        let at_once = guarded::<()>("t".into(), || panic!("at once"));
        assert_eq!(at_once.await, None);
        assert_eq!(guarded("t".into(), || Box::pin(fails_later())).await, None);
        let failed = guarded::<()>("t".into(), || Box::pin(async { Err("failed".into()) }));
        assert_eq!(failed.await, None);
    }
}
