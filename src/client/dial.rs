//! Opening the WebSocket a connection runs over: the [`Dial`] seam of the connection loop,
//! and its one real implementation, over TCP to the URL made from the host and the options.

use std::future::Future;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::error::ClientError;
use crate::client::options::ClientOptions;

/// Opens a WebSocket to the server, once per connection attempt.
pub(crate) trait Dial: Send + Sync + 'static {
    /// The byte stream under the WebSocket.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// A new WebSocket to the server, its HTTP upgrade done.
    fn dial(&self) -> impl Future<Output = Result<WebSocketStream<Self::Io>, ClientError>> + Send;
}

/// A WebSocket over TCP to the Socket.IO endpoint, with the options' extra headers.
pub(crate) struct WebSocketDial {
    url: String,
    headers: Vec<(String, String)>,
}

impl WebSocketDial {
    /// Checks the URL made from `host` and the options, and the headers.
    pub(crate) fn new(host: &str, options: &ClientOptions) -> Result<Self, ClientError> {
        let url = websocket_url(host, options)?;
        check_headers(&options.extra_headers)?;
        Ok(Self {
            url,
            headers: options.extra_headers.clone(),
        })
    }
}

impl Dial for WebSocketDial {
    type Io = MaybeTlsStream<TcpStream>;

    async fn dial(&self) -> Result<WebSocketStream<Self::Io>, ClientError> {
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
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(ws)
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

/// `ws://host[:port]<path>/?EIO=4&transport=websocket[&query]` from `http(s)://` or `ws://`.
fn websocket_url(host: &str, options: &ClientOptions) -> Result<String, ClientError> {
    let uri: http::Uri = host
        .parse()
        .map_err(|e| ClientError::InvalidUrl(format!("{host:?}: {e}")))?;
    let scheme = match uri.scheme_str() {
        Some("http") | Some("ws") => "ws",
        Some("https") | Some("wss") => {
            return Err(ClientError::InvalidUrl(format!(
                "{host:?}: TLS (https/wss) is not built into this client; put a TLS-terminating proxy in front or connect over plain ws"
            )));
        }
        _ => {
            return Err(ClientError::InvalidUrl(format!(
                "{host:?}: the scheme must be http:// or ws://"
            )));
        }
    };
    let authority = uri
        .authority()
        .ok_or_else(|| ClientError::InvalidUrl(format!("{host:?}: no host")))?;
    if !options.path.starts_with('/') {
        return Err(ClientError::InvalidUrl(format!(
            "path {:?} must start with '/'",
            options.path
        )));
    }
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("EIO", "4")
        .append_pair("transport", "websocket");
    for (k, v) in &options.query {
        query.append_pair(k, v);
    }
    let path = options.path.trim_end_matches('/');
    Ok(format!("{scheme}://{authority}{path}/?{}", query.finish()))
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
        type Io = DuplexStream;

        async fn dial(&self) -> Result<WebSocketStream<DuplexStream>, ClientError> {
            let (client, server) = tokio::io::duplex(64 * 1024);
            let server = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
            self.0
                .send(server)
                .map_err(|_| ClientError::Transport("no server".into()))?;
            Ok(WebSocketStream::from_raw_socket(client, Role::Client, None).await)
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
