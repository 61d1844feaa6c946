//! Errors of configuration: what the builder and the layers' constructors refuse, with
//! messages that say what to change (the seeds' binding checks).

use std::time::Duration;

/// A boxed error, as user callbacks may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A refused configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// An event handler was registered with an empty topic.
    EmptyTopic,
    /// Two handlers were registered for one topic.
    DuplicateTopic(String),
    /// A handler was registered for a reserved event name; the second field says what to use.
    ReservedTopic(String, &'static str),
    /// The Socket.IO path is not an absolute path below `/` (it must start with `/`, must not
    /// be `/` alone, which would take every request, and must hold no `?` or `#`); the second
    /// field says which.
    InvalidPath(String, &'static str),
    /// A duration that must be positive is zero.
    ZeroDuration(&'static str),
    /// A duration is too large to schedule.
    DurationTooLarge(&'static str, Duration),
    /// A room name is empty.
    EmptyRoomName,
    /// A limit (rate, burst, bound) is not positive.
    InvalidLimit(&'static str, String),
    /// A second fan-out was given to one server.
    FanoutTwice,
    /// A namespace path is refused (it must start with `/`; a dynamic one must be a
    /// socketioxide path pattern); the second field says why.
    InvalidNamespace(String, String),
    /// The Admin UI's configuration is refused ([`AdminUi`](crate::admin_ui::AdminUi)); the
    /// field says why.
    #[cfg(feature = "admin-ui")]
    InvalidAdminUi(String),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EmptyTopic => {
                f.write_str("invalid topic to register an event handler: it is empty")
            }
            Self::DuplicateTopic(t) => {
                write!(f, "an event handler is already registered for topic {t:?}")
            }
            Self::ReservedTopic(t, hint) => {
                write!(f, "cannot register a handler for topic {t:?}: {hint}")
            }
            Self::InvalidPath(p, reason) => write!(f, "invalid Socket.IO path {p:?}: {reason}"),
            Self::ZeroDuration(what) => write!(f, "invalid {what}: it must be greater than zero"),
            Self::DurationTooLarge(what, d) => {
                write!(f, "invalid {what}: {d:?} is too large (at most one year)")
            }
            Self::EmptyRoomName => f.write_str("invalid room name: it is empty"),
            Self::InvalidLimit(what, value) => {
                write!(f, "invalid {what} {value}: it must be a positive number")
            }
            Self::InvalidNamespace(ns, reason) => write!(f, "invalid namespace {ns:?}: {reason}"),
            #[cfg(feature = "admin-ui")]
            Self::InvalidAdminUi(reason) => write!(f, "invalid Admin UI configuration: {reason}"),
            Self::FanoutTwice => f.write_str(
                "a server has one fan-out: builder_with_redis_adapter already sets it, or fanout() was called twice",
            ),
        }
    }
}

impl std::error::Error for BuildError {}

/// Checks a layer's duration: positive and at most a year (tokio cannot schedule much more).
pub(crate) fn check_duration(what: &'static str, d: Duration) -> Result<Duration, BuildError> {
    if d.is_zero() {
        Err(BuildError::ZeroDuration(what))
    } else if d > Duration::from_secs(365 * 24 * 3600) {
        Err(BuildError::DurationTooLarge(what, d))
    } else {
        Ok(d)
    }
}
