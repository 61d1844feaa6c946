//! Errors of the fan-out, and the reachability check every connection starts with.

use std::time::Duration;

use crate::fanout::wire::WireError;

/// What the fan-out could not do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FanoutError {
    /// The Redis URL or settings are not valid.
    Config(String),
    /// Redis could not be reached in time, or refused the connection or the credentials.
    Unreachable(String),
    /// Redis was reachable before but a publish failed (e.g. it is down now).
    Unavailable(String),
    /// The event is one of Socket.IO's reserved names
    /// ([`names::RESERVED`](crate::event::names::RESERVED)), which would make every
    /// socket.io-client receiving it drop its connection. Nothing was published.
    ReservedEvent(String),
    /// The message holds what every receiving instance would refuse (see
    /// [`wire::MAX_ROOMS`](crate::fanout::wire::MAX_ROOMS)). Nothing was published.
    Unpublishable(WireError),
}

impl std::fmt::Display for FanoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Config(e) => write!(f, "invalid Redis configuration: {e}"),
            Self::Unreachable(e) => write!(f, "Redis is not reachable: {e}"),
            Self::Unavailable(e) => write!(f, "Redis is unavailable: {e}"),
            Self::ReservedEvent(e) => write!(
                f,
                "cannot emit event {e:?}: it is a reserved Socket.IO event name ({}), which clients would take as a malformed packet",
                crate::event::names::RESERVED.join(", ")
            ),
            Self::Unpublishable(e) => write!(f, "cannot publish the message: {e}"),
        }
    }
}

impl std::error::Error for FanoutError {}

pub(crate) fn open_client(url: &str) -> Result<redis::Client, FanoutError> {
    redis::Client::open(url).map_err(|e| FanoutError::Config(e.to_string()))
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
        Ok(Err(e)) => Err(FanoutError::Unreachable(e.to_string())),
        Err(_) => Err(FanoutError::Unreachable(format!(
            "no answer within {timeout:?}"
        ))),
    }
}
