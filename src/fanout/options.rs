//! How the fan-out and the emitter reach Redis: the URL, and what a managed Redis needs besides
//! it (a private certificate authority for `rediss://`, a client certificate), the channel
//! prefix, the connect deadline and the subscription's keepalive.
//!
//! ```no_run
//! use std::time::Duration;
//! use socketio_stack::fanout::{Emitter, RedisFanout, RedisOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // TLS, an ACL user, and a server certificate signed by the provider's own authority.
//! let options = RedisOptions::new("rediss://app:s3cret@redis.internal:6380")
//!     .root_certificates_pem(std::fs::read("/etc/redis/ca.pem")?)
//!     .keepalive(Duration::from_secs(5), Duration::from_secs(5));
//! let fanout = RedisFanout::connect_with_options(options.clone()).await?;
//! let emitter = Emitter::connect_with_options(&options).await?;
//! # Ok(()) }
//! ```
//!
//! The URL is `redis://[user:password@]host[:port][/db]`, or `rediss://…` for TLS (through
//! rustls, checking the server's certificate and host name). Without
//! [`root_certificates_pem`](RedisOptions::root_certificates_pem), a `rediss://` server's
//! certificate must chain to one of the system's authorities; `#insecure` (no check at all) is
//! refused.

use std::time::Duration;

use crate::fanout::SubscriptionMode;
use crate::fanout::connect_error::{Cause, FanoutError};
use crate::fanout::emitter::DEFAULT_CONNECT_TIMEOUT;
use crate::fanout::wire;

/// How often the subscription's connection is PINGed by default.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// How long a PING of the subscription may go unanswered by default before its connection is
/// taken for dead.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where Redis is and how to connect to it; see the [module](self) for an example. Cheap to
/// clone (certificates are small).
#[derive(Clone)]
pub struct RedisOptions {
    url: String,
    key: String,
    connect_timeout: Duration,
    root_certificates: Option<Vec<u8>>,
    client_certificate: Option<(Vec<u8>, Vec<u8>)>,
    keepalive: KeepAlive,
    sharded: Option<SubscriptionMode>,
}

/// The subscription's keepalive: a PING every `interval`; no answer within `timeout` and the
/// connection is dropped, the subscription marked down (sends fail) and made again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeepAlive {
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
}

impl RedisOptions {
    /// The Redis at `url`, with the defaults: the channel prefix `socket.io` (the JavaScript
    /// packages' `key`), a 5 s connect deadline, the system's certificate authorities, and a
    /// keepalive that notices a half-open subscription within 10 s.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key: wire::DEFAULT_KEY.to_owned(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            root_certificates: None,
            client_certificate: None,
            keepalive: KeepAlive {
                interval: DEFAULT_KEEPALIVE_INTERVAL,
                timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            },
            sharded: None,
        }
    }

    /// Speaks the wire of `createShardedAdapter` of `@socket.io/redis-adapter` on Redis 7's
    /// sharded pub/sub (`SSUBSCRIBE` / `SPUBLISH`) instead of the classic adapter's, in the
    /// subscription mode `mode` (the JavaScript `subscriptionMode`; every member of a fleet
    /// uses the same). On a Redis Cluster
    /// (found out when connecting), each channel lives on the node owning its slot, so a
    /// broadcast costs one node instead of every node; on one redis-server 7 it works the
    /// same. The classic channels are not heard then: `@socket.io/redis-emitter` (which
    /// publishes on them only) does not reach a sharded fleet, in Node as here.
    pub fn sharded(mut self, mode: SubscriptionMode) -> Self {
        self.sharded = Some(mode);
        self
    }

    /// The channel prefix (the JavaScript `key` option); every member of a fleet uses the same.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
    }

    /// How long connecting may take before it fails (also each reconnection attempt of the
    /// subscription); 5 s by default.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Trusts the certificate authorities in `pem` (one or more `CERTIFICATE` blocks) for a
    /// `rediss://` server, in place of the system's: a managed Redis whose certificate is
    /// signed by the provider's own authority. A PEM that does not parse fails `connect` with
    /// [`FanoutError::Config`], as does a `redis://` URL (these are for TLS).
    pub fn root_certificates_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates = Some(pem.into());
        self
    }

    /// Presents this client certificate (a PEM chain) and its private key (PEM) to a
    /// `rediss://` server that asks for one (redis-server's `tls-auth-clients`).
    pub fn client_certificate_pem(
        mut self,
        certificate: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> Self {
        self.client_certificate = Some((certificate.into(), key.into()));
        self
    }

    /// The subscription's keepalive: a PING every `interval`, and a connection that leaves
    /// one unanswered for `timeout` is taken for dead. So a half-open connection (Redis gone
    /// silent, its TCP connection still open: a crashed host, a dropped NAT entry, a failover
    /// behind a load balancer) is noticed within `interval + timeout` (10 s by default):
    /// from then on sends fail (this instance would miss them) until the subscription is made
    /// again. Both must be above zero, or `connect` fails with [`FanoutError::Config`]. The
    /// emitter's pooled connections need none: each publish checks its connection and has a
    /// deadline of its own.
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keepalive = KeepAlive { interval, timeout };
        self
    }

    /// The subscription mode of the sharded wire, when it is the one spoken.
    pub(crate) fn sharded_mode(&self) -> Option<SubscriptionMode> {
        self.sharded
    }

    /// The client of a Redis Cluster whose node the URL names, with the same credentials
    /// and certificates; `pushes` gets what the nodes push (RESP3), the sharded messages
    /// among them.
    pub(crate) fn cluster_client(
        &self,
        pushes: Option<tokio::sync::mpsc::UnboundedSender<redis::PushInfo>>,
    ) -> Result<redis::cluster::ClusterClient, FanoutError> {
        let config = |e| FanoutError::Config(Cause::of(e));
        let mut builder = redis::cluster::ClusterClientBuilder::new(vec![self.url.as_str()])
            .connection_timeout(self.connect_timeout)
            .response_timeout(self.connect_timeout);
        if let Some(pushes) = pushes {
            builder = builder
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(pushes);
        }
        if self.root_certificates.is_some() || self.client_certificate.is_some() {
            builder = builder.certs(self.certificates());
        }
        builder.build().map_err(config)
    }

    fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: self
                .client_certificate
                .clone()
                .map(|(client_cert, client_key)| redis::ClientTlsConfig {
                    client_cert,
                    client_key,
                }),
            root_cert: self.root_certificates.clone(),
        }
    }

    pub(crate) fn channel_key(&self) -> &str {
        &self.key
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The keepalive, checked.
    pub(crate) fn checked_keepalive(&self) -> Result<KeepAlive, FanoutError> {
        if self.keepalive.interval.is_zero() || self.keepalive.timeout.is_zero() {
            return Err(FanoutError::Config(Cause::invalid(
                "the keepalive's interval and timeout must be above zero",
            )));
        }
        Ok(self.keepalive)
    }

    /// The client for these options: the URL, with the certificates when there are any.
    pub(crate) fn client(&self) -> Result<redis::Client, FanoutError> {
        self.client_speaking(redis::ProtocolVersion::RESP2)
    }

    /// [`client`](Self::client) speaking RESP3, whose pushes carry sharded messages.
    pub(crate) fn resp3_client(&self) -> Result<redis::Client, FanoutError> {
        self.client_speaking(redis::ProtocolVersion::RESP3)
    }

    fn client_speaking(
        &self,
        protocol: redis::ProtocolVersion,
    ) -> Result<redis::Client, FanoutError> {
        let config = |e| FanoutError::Config(Cause::of(e));
        let mut info =
            redis::IntoConnectionInfo::into_connection_info(self.url.as_str()).map_err(config)?;
        if protocol != redis::ProtocolVersion::RESP2 {
            let settings = info.redis_settings().clone().set_protocol(protocol);
            info = info.set_redis_settings(settings);
        }
        if let redis::ConnectionAddr::TcpTls { insecure, .. } = info.addr() {
            // redis would refuse it only when connecting, as if Redis were unreachable.
            if *insecure {
                return Err(FanoutError::Config(Cause::invalid(
                    "`#insecure` is refused: a `rediss://` server's certificate is always checked (give its authority with `root_certificates_pem`)",
                )));
            }
            // rustls needs a process-wide crypto provider; the application may have installed
            // its own (then this is a no-op), and otherwise `ring` is it.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        if self.root_certificates.is_none() && self.client_certificate.is_none() {
            return redis::Client::open(info).map_err(config);
        }
        redis::Client::build_with_tls(info, self.certificates()).map_err(config)
    }
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password, and the certificates a private key: neither is printed.
        f.debug_struct("RedisOptions")
            .field("key", &self.key)
            .field("connect_timeout", &self.connect_timeout)
            .field("root_certificates", &self.root_certificates.is_some())
            .field("client_certificate", &self.client_certificate.is_some())
            .field("keepalive", &self.keepalive)
            .field("sharded", &self.sharded)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn certificates_are_for_tls_urls_only() {
        let err = RedisOptions::new("redis://127.0.0.1:6379")
            .root_certificates_pem(Vec::new())
            .client()
            .unwrap_err();
        assert!(matches!(err, FanoutError::Config(_)), "{err}");
        assert!(err.to_string().contains("rediss://"), "{err}");
        assert!(err.source().is_some_and(|s| s.is::<redis::RedisError>()));
    }

    #[test]
    fn insecure_tls_is_refused_up_front() {
        let err = RedisOptions::new("rediss://127.0.0.1:6380/#insecure")
            .client()
            .unwrap_err();
        assert!(matches!(err, FanoutError::Config(_)), "{err}");
        assert!(err.to_string().contains("`#insecure` is refused"), "{err}");
        RedisOptions::new("rediss://127.0.0.1:6380/")
            .client()
            .expect("the system's authorities");
    }

    #[test]
    fn a_root_certificate_that_does_not_parse_is_a_configuration_error() {
        let err = RedisOptions::new("rediss://127.0.0.1:6380")
            .root_certificates_pem("-----BEGIN CERTIFICATE-----\nnot base64\n")
            .client()
            .unwrap_err();
        assert!(matches!(err, FanoutError::Config(_)), "{err}");
        assert!(err.to_string().contains("certificate"), "{err}");
    }

    #[test]
    fn a_keepalive_of_zero_is_refused_and_the_default_bound_is_ten_seconds() {
        let options = RedisOptions::new("redis://127.0.0.1:6379");
        let keepalive = options.checked_keepalive().unwrap();
        assert_eq!(
            keepalive.interval + keepalive.timeout,
            Duration::from_secs(10)
        );
        for (interval, timeout) in [(0, 1), (1, 0)] {
            let err = options
                .clone()
                .keepalive(
                    Duration::from_millis(interval),
                    Duration::from_millis(timeout),
                )
                .checked_keepalive()
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                "invalid Redis configuration: the keepalive's interval and timeout must be above zero"
            );
            assert!(err.source().is_none());
        }
    }

    #[test]
    fn the_debug_form_prints_neither_the_password_nor_the_key() {
        let options = RedisOptions::new("redis://user:hunter2@127.0.0.1:6379")
            .client_certificate_pem("cert", "PRIVATE KEY");
        let printed = format!("{options:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("PRIVATE"), "{printed}");
    }
}
