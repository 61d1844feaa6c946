//! Errors of the fan-out, and the reachability check every connection starts with.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use crate::fanout::wire::WireError;

/// What the fan-out could not do.
///
/// Its message includes what went wrong underneath (the demo and the logs print the message
/// alone), and [`source`](Error::source) gives that error itself when there is one, to
/// downcast (to `redis::RedisError`, or `serde_json::Error` for [`Encode`](Self::Encode)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FanoutError {
    /// The Redis URL or settings are not valid.
    Config(Cause),
    /// Redis could not be reached in time, or refused the connection (TLS included: a
    /// certificate that is not trusted or not for that host).
    Unreachable(Cause),
    /// Redis refused this client: a wrong user or password, none where one is required, or
    /// an ACL user whose permissions do not cover what the fan-out runs on its channels.
    Refused(Cause),
    /// Redis was reachable before but a publish failed (e.g. it is down now).
    Unavailable(Cause),
    /// The emitter's connections are closed ([`Emitter::close`], or the fan-out's shutdown):
    /// nothing is published any more.
    ///
    /// [`Emitter::close`]: crate::fanout::Emitter::close
    Closed,
    /// The data could not be encoded as the event's arguments. Nothing was published.
    Encode(Cause),
    /// The event is one of Socket.IO's reserved names
    /// ([`names::RESERVED`](crate::event::names::RESERVED)), which would make every
    /// socket.io-client receiving it drop its connection. Nothing was published.
    ReservedEvent(String),
    /// The message holds what every receiving instance would refuse (see
    /// [`MAX_ROOMS`](crate::fanout::MAX_ROOMS)). Nothing was published.
    Unpublishable(WireError),
}

/// What went wrong underneath a [`FanoutError`]: an error of Redis, of the connection or of
/// the encoder, or a deadline that passed with nothing from Redis. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Cause(Repr);

#[derive(Debug, Clone)]
enum Repr {
    // Shared, so that the error stays `Clone` whatever the underlying error is.
    Error(Arc<dyn Error + Send + Sync>),
    TimedOut {
        awaited: &'static str,
        within: Duration,
    },
    /// A setting of ours that is out of range (no error underneath).
    Invalid(&'static str),
}

impl Cause {
    pub(crate) fn of(e: impl Error + Send + Sync + 'static) -> Self {
        Self(Repr::Error(Arc::new(e)))
    }

    /// Nothing came within `within`; `awaited` names what was waited for.
    pub(crate) fn timed_out(awaited: &'static str, within: Duration) -> Self {
        Self(Repr::TimedOut { awaited, within })
    }

    /// A setting is out of range; `what` says which and why.
    pub(crate) fn invalid(what: &'static str) -> Self {
        Self(Repr::Invalid(what))
    }

    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.0 {
            Repr::Error(e) => Some(&**e),
            Repr::TimedOut { .. } | Repr::Invalid(_) => None,
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Repr::Error(e) => e.fmt(f),
            Repr::TimedOut { awaited, within } => write!(f, "no {awaited} within {within:?}"),
            Repr::Invalid(what) => f.write_str(what),
        }
    }
}

impl std::fmt::Display for FanoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Config(e) => write!(f, "invalid Redis configuration: {e}"),
            Self::Unreachable(e) => write!(f, "Redis is not reachable: {e}"),
            Self::Refused(e) => write!(
                f,
                "Redis refused this client (its credentials or ACL permissions): {e}"
            ),
            Self::Unavailable(e) => write!(f, "Redis is unavailable: {e}"),
            Self::Closed => f.write_str(
                "the Redis connections are closed: the emitter or the fan-out was shut down",
            ),
            Self::Encode(e) => write!(f, "could not encode the event's arguments: {e}"),
            Self::ReservedEvent(e) => write!(
                f,
                "cannot emit event {e:?}: it is a reserved Socket.IO event name ({}), which clients would take as a malformed packet",
                crate::event::names::RESERVED.join(", ")
            ),
            Self::Unpublishable(e) => write!(f, "cannot publish the message: {e}"),
        }
    }
}

impl Error for FanoutError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Config(c)
            | Self::Unreachable(c)
            | Self::Refused(c)
            | Self::Unavailable(c)
            | Self::Encode(c) => c.source(),
            Self::Unpublishable(e) => Some(e),
            Self::Closed | Self::ReservedEvent(_) => None,
        }
    }
}

impl FanoutError {
    /// What a Redis error met while connecting or subscribing means: the login or the ACL
    /// refused ([`Refused`](Self::Refused)), or Redis not reached.
    pub(crate) fn connecting(e: redis::RedisError) -> Self {
        let refused = e.kind() == redis::ErrorKind::AuthenticationFailed
            || matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"));
        if refused {
            Self::Refused(Cause::of(e))
        } else {
            Self::Unreachable(Cause::of(e))
        }
    }
}

/// Connects once and PINGs, so that an unreachable server or refused credentials fail here,
/// with Redis's own message, within `timeout`.
pub(crate) async fn check_reachable(
    client: &redis::Client,
    timeout: Duration,
) -> Result<(), FanoutError> {
    let check = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(timeout, check).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(FanoutError::connecting(e)),
        Err(_) => Err(FanoutError::Unreachable(Cause::timed_out(
            "answer to PING",
            timeout,
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_server_that_never_answers_fails_the_check_by_its_deadline_without_a_source() {
        // Accepts the connection (the kernel does, from the backlog) and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let timeout = Duration::from_millis(200);
        let err = check_reachable(&redis::Client::open(url).unwrap(), timeout)
            .await
            .unwrap_err();
        assert!(matches!(err, FanoutError::Unreachable(_)), "{err}");
        assert_eq!(
            err.to_string(),
            "Redis is not reachable: no answer to PING within 200ms"
        );
        assert!(err.source().is_none());
    }

    #[test]
    fn an_invalid_url_keeps_redis_s_error_as_its_source() {
        let err = crate::fanout::RedisOptions::new("redis://[::1")
            .client()
            .unwrap_err();
        let source = err
            .source()
            .and_then(|s| s.downcast_ref::<redis::RedisError>());
        assert_eq!(
            source.map(redis::RedisError::kind),
            Some(redis::ErrorKind::InvalidClientConfig),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with("invalid Redis configuration: "),
            "{err}"
        );
    }
}
