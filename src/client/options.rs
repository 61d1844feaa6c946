//! How the client connects: the seeds' `IOptions` (path, extra headers) plus the usual
//! socket.io-client options, with socket.io-client's defaults.

use std::time::Duration;

use serde_json::Value;

/// Connection options. `Default` gives socket.io-client's defaults with the seeds' path `/io`.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The Socket.IO path on the server (the seeds use `/io`; socket.io's default is
    /// `/socket.io`).
    pub path: String,
    /// Headers sent with the connection request (e.g. `authorization: Bearer <token>`).
    pub extra_headers: Vec<(String, String)>,
    /// Extra query parameters of the connection URL.
    pub query: Vec<(String, String)>,
    /// The `auth` payload of the Socket.IO CONNECT packet (e.g. `{"token": "..."}`).
    pub auth: Option<Value>,
    /// Reconnect after a lost connection (default true). As in socket.io-client, a disconnect
    /// by the server (`io server disconnect`) or by the client is not followed by one.
    pub reconnection: bool,
    /// How many reconnection attempts in a row before giving up (`None`: no limit, default).
    pub reconnection_attempts: Option<u32>,
    /// The first reconnection delay (default 1 s), doubled at each attempt...
    pub reconnection_delay: Duration,
    /// ...up to this (default 5 s).
    pub reconnection_delay_max: Duration,
    /// Each delay is varied by up to this fraction, up or down (default 0.5), so that many
    /// clients do not reconnect in step.
    pub randomization_factor: f64,
    /// How long a connection attempt may take, handshake included (default 20 s).
    pub timeout: Duration,
    /// Connect as soon as the client is built (default true); otherwise call `connect()`.
    pub auto_connect: bool,
    /// The certificate authorities (PEM, one or more `CERTIFICATE` blocks) trusted for an
    /// `https://` or `wss://` server, in place of the system's: a server whose certificate a
    /// private authority signed. `None` (default): the system's trust store. Given for a
    /// plain `http://` server, or not parsing, the build fails with [`ClientError::Tls`].
    ///
    /// [`ClientError::Tls`]: crate::client::ClientError::Tls
    pub root_certificates_pem: Option<Vec<u8>>,
    /// The transports to try, in order, at each connection attempt (socket.io-client's
    /// `transports` with `tryAllTransports`): the first that opens carries the connection.
    /// Default: a WebSocket, and HTTP long-polling where a WebSocket cannot be opened (a proxy
    /// that refuses the upgrade). A connection stays on the transport it opened on (no
    /// upgrade from polling, which socket.io-client does to save a browser's first round
    /// trips). Empty: the build fails with [`ClientError::InvalidUrl`].
    ///
    /// [`ClientError::InvalidUrl`]: crate::client::ClientError::InvalidUrl
    pub transports: Vec<TransportKind>,
}

/// A transport of the client's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// One WebSocket both ways (`transport=websocket`).
    WebSocket,
    /// Engine.IO's HTTP long-polling (`transport=polling`): a GET that the server holds until
    /// it has packets, a POST for what the client sends.
    Polling,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            path: "/io".to_owned(),
            extra_headers: Vec::new(),
            query: Vec::new(),
            auth: None,
            reconnection: true,
            reconnection_attempts: None,
            reconnection_delay: Duration::from_secs(1),
            reconnection_delay_max: Duration::from_secs(5),
            randomization_factor: 0.5,
            timeout: Duration::from_secs(20),
            auto_connect: true,
            root_certificates_pem: None,
            transports: vec![TransportKind::WebSocket, TransportKind::Polling],
        }
    }
}

impl ClientOptions {
    /// The delay before reconnection attempt `attempt` (0 for the first), given `jitter` in
    /// [0, 1): socket.io-client's backoff.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let base = self.reconnection_delay.as_secs_f64() * 2f64.powi(attempt.min(30) as i32);
        let factor = self.randomization_factor.clamp(0.0, 1.0);
        let varied = base * (1.0 + factor * (2.0 * jitter - 1.0));
        Duration::from_secs_f64(varied.max(0.0))
            .min(self.reconnection_delay_max.max(self.reconnection_delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_bounded_jitter() {
        let o = ClientOptions {
            randomization_factor: 0.0,
            ..Default::default()
        };
        let delays: Vec<u64> = (0..5)
            .map(|a| o.backoff(a, 0.3).as_millis() as u64)
            .collect();
        assert_eq!(delays, [1000, 2000, 4000, 5000, 5000]);
        let o = ClientOptions::default();
        for jitter in [0.0, 0.5, 0.999] {
            let d = o.backoff(0, jitter).as_millis();
            assert!((500..=1500).contains(&d), "{d}");
        }
        assert_eq!(o.backoff(u32::MAX, 0.5), Duration::from_secs(5));
    }
}
