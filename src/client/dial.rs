//! Opening the connection a client runs over: the [`Dial`] seam of the connection loop, and
//! its real implementation, the options' transports in order (a WebSocket, then long-polling;
//! over TLS for `https://` and `wss://`) to the endpoint made from the host and the options.

use std::future::Future;
use std::sync::Arc;

use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{Connector, MaybeTlsStream};

use crate::client::error::ClientError;
use crate::client::options::{ClientOptions, TransportKind};
use crate::client::polling::PollingTarget;
use crate::client::transport::{Transport, WebSocketTransport};

/// Opens a connection to the server, once per connection attempt.
pub(crate) trait Dial: Send + Sync + 'static {
    /// What the connection runs over.
    type Transport: Transport;

    /// A new connection to the server, its transport's own handshake done.
    fn dial(&self) -> impl Future<Output = Result<Self::Transport, ClientError>> + Send;
}

/// The transports of [`ClientOptions::transports`], tried in order at each attempt.
pub(crate) struct TransportDial {
    order: Vec<TransportKind>,
    websocket: WebSocketDial,
    polling: Arc<PollingTarget>,
}

impl TransportDial {
    /// Checks the URL made from `host` and the options, the headers and the certificates.
    pub(crate) fn new(host: &str, options: &ClientOptions) -> Result<Self, ClientError> {
        let endpoint = Endpoint::new(host, options)?;
        check_headers(&options.extra_headers)?;
        if options.transports.is_empty() {
            return Err(ClientError::InvalidUrl(
                "no transport to connect with".into(),
            ));
        }
        let tls = match (&options.root_certificates_pem, endpoint.secure) {
            (Some(pem), true) => Some(Arc::new(tls_config(roots_of_pem(pem)?))),
            (Some(_), false) => {
                return Err(ClientError::Tls(format!(
                    "{host:?}: root certificates are for a TLS server (https:// or wss://)"
                )));
            }
            (None, true) => Some(Arc::new(tls_config(system_roots()))),
            (None, false) => None,
        };
        let headers = options.extra_headers.clone();
        Ok(Self {
            order: options.transports.clone(),
            websocket: WebSocketDial {
                url: endpoint.websocket_url(),
                headers: headers.clone(),
                tls: tls.clone(),
            },
            polling: Arc::new(PollingTarget::new(endpoint, headers, tls)),
        })
    }
}

impl Dial for TransportDial {
    type Transport = Box<dyn Transport>;

    async fn dial(&self) -> Result<Self::Transport, ClientError> {
        let mut failures = Vec::new();
        for kind in &self.order {
            let opened = match kind {
                TransportKind::WebSocket => self
                    .websocket
                    .dial()
                    .await
                    .map(|t| Box::new(t) as Box<dyn Transport>),
                TransportKind::Polling => self
                    .polling
                    .open()
                    .await
                    .map(|t| Box::new(t) as Box<dyn Transport>),
            };
            match opened {
                Ok(transport) => return Ok(transport),
                Err(ClientError::Transport(e)) => failures.push(e),
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::Transport(failures.join("; ")))
    }
}

/// Where the Socket.IO endpoint is: checked once, at build.
pub(crate) struct Endpoint {
    /// Over TLS (`https://`, `wss://`).
    pub(crate) secure: bool,
    /// `host[:port]` as given: the `Host` header.
    pub(crate) authority: String,
    /// The host to connect to (an IPv6 address without its brackets).
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The path, without a trailing `/`.
    path: String,
    /// `EIO=4` and the options' query, encoded.
    query: String,
}

impl Endpoint {
    /// From `http(s)://` or `ws(s)://` and the options' path and query.
    fn new(host: &str, options: &ClientOptions) -> Result<Self, ClientError> {
        let uri: http::Uri = host
            .parse()
            .map_err(|e| ClientError::InvalidUrl(format!("{host:?}: {e}")))?;
        let secure = match uri.scheme_str() {
            Some("http") | Some("ws") => false,
            Some("https") | Some("wss") => true,
            _ => {
                return Err(ClientError::InvalidUrl(format!(
                    "{host:?}: the scheme must be http://, https://, ws:// or wss://"
                )));
            }
        };
        let authority = uri
            .authority()
            .filter(|a| !a.host().is_empty())
            .ok_or_else(|| ClientError::InvalidUrl(format!("{host:?}: no host")))?;
        if !options.path.starts_with('/') {
            return Err(ClientError::InvalidUrl(format!(
                "path {:?} must start with '/'",
                options.path
            )));
        }
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("EIO", "4");
        for (k, v) in &options.query {
            query.append_pair(k, v);
        }
        Ok(Self {
            secure,
            authority: authority.as_str().to_owned(),
            host: authority.host().trim_matches(['[', ']']).to_owned(),
            port: authority
                .port_u16()
                .unwrap_or(if secure { 443 } else { 80 }),
            path: options.path.trim_end_matches('/').to_owned(),
            query: query.finish(),
        })
    }

    /// `ws(s)://host[:port]<path>/?EIO=4&transport=websocket[&query]`.
    fn websocket_url(&self) -> String {
        let scheme = if self.secure { "wss" } else { "ws" };
        let (authority, path, query) = (&self.authority, &self.path, &self.query);
        format!("{scheme}://{authority}{path}/?{query}&transport=websocket")
    }

    /// `<path>/?EIO=4&transport=polling[&query]`, the target of every polling request.
    pub(crate) fn polling_path(&self) -> String {
        format!("{}/?{}&transport=polling", self.path, self.query)
    }
}

/// A WebSocket to the Socket.IO endpoint, with the options' extra headers; over TLS
/// (rustls) when the URL asks for it.
struct WebSocketDial {
    url: String,
    headers: Vec<(String, String)>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// The authorities in `pem`.
fn roots_of_pem(pem: &[u8]) -> Result<rustls::RootCertStore, ClientError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| ClientError::Tls(format!("root certificates: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| ClientError::Tls(format!("root certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ClientError::Tls(
            "root certificates: no CERTIFICATE block in the PEM".into(),
        ));
    }
    Ok(roots)
}

/// The system's trust store; what it cannot read is logged (and then no server is trusted:
/// every connection fails with a certificate error, which says why).
fn system_roots() -> rustls::RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "reading the system's root certificates");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 || added == 0 {
        tracing::warn!(added, ignored, "the system's root certificates");
    }
    roots
}

/// A client configuration trusting `roots`.
fn tls_config(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    // rustls needs a process-wide crypto provider; the application may have installed its
    // own (then this is a no-op), and otherwise `ring` is it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

impl WebSocketDial {
    async fn dial(
        &self,
    ) -> Result<WebSocketTransport<MaybeTlsStream<tokio::net::TcpStream>>, ClientError> {
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| ClientError::InvalidUrl(e.to_string()))?;
        for (name, value) in &self.headers {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| ClientError::InvalidUrl(format!("header {name:?}: {e}")))?;
            let value = http::HeaderValue::from_str(value)
                .map_err(|e| ClientError::InvalidUrl(format!("header {name}: {e}")))?;
            request.headers_mut().append(name, value);
        }
        let connector = self.tls.clone().map(Connector::Rustls);
        let (ws, _) =
            tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector)
                .await
                .map_err(|e| ClientError::Transport(format!("websocket: {e}")))?;
        Ok(WebSocketTransport::new(ws))
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

/// An in-memory [`Dial`] for the tests: each connection is a pipe whose server end comes out
/// of a channel, for the test to play the server on.
#[cfg(test)]
pub(crate) mod memory {
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::DuplexStream;
    use tokio::sync::mpsc;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::Role;

    use super::Dial;
    use crate::client::error::ClientError;
    use crate::client::transport::WebSocketTransport;

    /// The server's end of one connection.
    pub(crate) type ServerEnd = WebSocketStream<DuplexStream>;

    /// Dials by handing the server end to [`MemoryDial::new`]'s receiver.
    pub(crate) struct MemoryDial(mpsc::UnboundedSender<ServerEnd>);

    impl MemoryDial {
        /// A dial and the connections it makes, as the server sees them. With the receiver
        /// dropped, every attempt fails.
        pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<ServerEnd>) {
            let (tx, rx) = mpsc::unbounded_channel();
            (Self(tx), rx)
        }
    }

    impl Dial for MemoryDial {
        type Transport = WebSocketTransport<DuplexStream>;

        async fn dial(&self) -> Result<Self::Transport, ClientError> {
            let (client, server) = tokio::io::duplex(64 * 1024);
            let server = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
            self.0
                .send(server)
                .map_err(|_| ClientError::Transport("no server".into()))?;
            let ws = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
            Ok(WebSocketTransport::new(ws))
        }
    }

    /// The Engine.IO open packet of the tests' server: a ping every second, and half a second
    /// more for the pong.
    pub(crate) const OPEN: &str =
        r#"0{"sid":"e1","upgrades":[],"pingInterval":1000,"pingTimeout":500,"maxPayload":1000000}"#;

    pub(crate) async fn send(ws: &mut ServerEnd, text: &str) {
        ws.send(Message::text(text))
            .await
            .expect("the client is there");
    }

    pub(crate) async fn send_binary(ws: &mut ServerEnd, bytes: &[u8]) {
        ws.send(Message::binary(bytes.to_vec()))
            .await
            .expect("the client is there");
    }

    /// The next binary frame from the client; `None` once it has closed.
    pub(crate) async fn recv_binary(ws: &mut ServerEnd) -> Option<Vec<u8>> {
        loop {
            match ws.next().await {
                Some(Ok(Message::Binary(bytes))) => return Some(bytes.to_vec()),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next text frame from the client; `None` once it has closed.
    pub(crate) async fn recv(ws: &mut ServerEnd) -> Option<String> {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => return Some(text.as_str().to_owned()),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// The server's side of the handshake: [`OPEN`], then the client's CONNECT accepted as
    /// socket `s1`. Gives the CONNECT packet.
    pub(crate) async fn accept(ws: &mut ServerEnd) -> String {
        send(ws, OPEN).await;
        let connect = recv(ws).await.expect("a CONNECT");
        send(ws, r#"40{"sid":"s1"}"#).await;
        connect
    }
}
