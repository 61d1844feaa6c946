//! The connection loop: connect (WebSocket, Engine.IO open, Socket.IO connect), serve the
//! connection (heartbeat, events, acks, outgoing packets), and reconnect with backoff.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::error::ClientError;
use crate::client::protocol::{self, Open, Packet};
use crate::client::socket_client::{Desire, Inner};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why a connection ended, as socket.io-client names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    ServerDisconnect,
    ClientDisconnect,
    TransportClose,
    TransportError,
    PingTimeout,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::ServerDisconnect => "io server disconnect",
            Self::ClientDisconnect => "io client disconnect",
            Self::TransportClose => "transport close",
            Self::TransportError => "transport error",
            Self::PingTimeout => "ping timeout",
        }
    }

    /// socket.io-client reconnects after a lost connection, not after a deliberate disconnect.
    fn reconnects(self) -> bool {
        matches!(
            self,
            Self::TransportClose | Self::TransportError | Self::PingTimeout
        )
    }
}

struct Connection {
    ws: Ws,
    open: Open,
    sid: Option<String>,
}

/// The client's one background task.
pub(crate) async fn drive(inner: Arc<Inner>) {
    let mut desire = inner.desire.subscribe();
    let mut failures: u32 = 0;
    loop {
        let wanted = *desire.borrow_and_update();
        match wanted {
            Desire::Shutdown => return,
            Desire::Disconnected => {
                failures = 0;
                if desire.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Desire::Connected => {}
        }
        let timeout = inner.options.timeout;
        let attempt = tokio::select! {
            res = tokio::time::timeout(timeout, connect(&inner)) => res.unwrap_or(Err(ClientError::Timeout(timeout))),
            // A disconnect or shutdown while connecting.
            _ = desire.changed() => continue,
        };
        let delay = match attempt {
            Ok(conn) => {
                failures = 0;
                let reason = serve(&inner, conn, &mut desire).await;
                if !(reason.reconnects() && inner.options.reconnection) {
                    if *desire.borrow() == Desire::Connected {
                        inner.desire.send_replace(Desire::Disconnected);
                    }
                    continue;
                }
                inner.options.backoff(0, inner.jitter())
            }
            Err(e) => {
                tracing::warn!(client = %inner.identifier, "connection failed: {e}");
                inner.fire_error(e);
                failures += 1;
                let exhausted = inner
                    .options
                    .reconnection_attempts
                    .is_some_and(|max| failures > max);
                if !inner.options.reconnection || exhausted {
                    if *desire.borrow() == Desire::Connected {
                        inner.desire.send_replace(Desire::Disconnected);
                    }
                    continue;
                }
                inner.options.backoff(failures - 1, inner.jitter())
            }
        };
        tracing::debug!(client = %inner.identifier, ?delay, "reconnecting");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = desire.changed() => {}
        }
    }
}

/// Opens the WebSocket, reads the Engine.IO open packet, connects to the default namespace.
async fn connect(inner: &Inner) -> Result<Connection, ClientError> {
    let mut request = inner
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| ClientError::InvalidUrl(e.to_string()))?;
    for (name, value) in &inner.options.extra_headers {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| ClientError::InvalidUrl(format!("header {name:?}: {e}")))?;
        let value = http::HeaderValue::from_str(value)
            .map_err(|e| ClientError::InvalidUrl(format!("header {name}: {e}")))?;
        request.headers_mut().append(name, value);
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    let open = loop {
        match next_packet(&mut ws).await? {
            Packet::Open(open) => break open,
            Packet::Noop => continue,
            other => {
                return Err(ClientError::Transport(format!(
                    "expected the Engine.IO open packet, got {other:?}"
                )));
            }
        }
    };
    send(&mut ws, protocol::connect(inner.options.auth.as_ref())).await?;
    let sid = loop {
        match next_packet(&mut ws).await? {
            Packet::Connect { sid } => break sid,
            Packet::ConnectError(message) => return Err(ClientError::Refused(message)),
            Packet::Ping => send(&mut ws, protocol::PONG.to_owned()).await?,
            Packet::Close => {
                return Err(ClientError::Transport("closed during the handshake".into()));
            }
            other => {
                tracing::debug!(client = %inner.identifier, "ignored during the handshake: {other:?}")
            }
        }
    };
    Ok(Connection { ws, open, sid })
}

async fn send(ws: &mut Ws, text: String) -> Result<(), ClientError> {
    ws.send(Message::text(text))
        .await
        .map_err(|e| ClientError::Transport(e.to_string()))
}

async fn next_packet(ws: &mut Ws) -> Result<Packet, ClientError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(protocol::decode(&text)),
            Some(Ok(Message::Close(_))) | None => {
                return Err(ClientError::Transport(
                    "the server closed the connection".into(),
                ));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(ClientError::Transport(e.to_string())),
        }
    }
}

/// Serves one connection until it ends; returns why.
async fn serve(
    inner: &Arc<Inner>,
    conn: Connection,
    desire: &mut tokio::sync::watch::Receiver<Desire>,
) -> Reason {
    let Connection { ws, open, sid } = conn;
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    inner.connected_with(tx, open.sid.clone(), sid);
    tracing::info!(client = %inner.identifier, "connected");
    inner.fire_connected();

    // The server pings every `ping_interval`; silence past `ping_timeout` more means the
    // connection is dead even if TCP has not noticed.
    let heartbeat = Duration::from_millis(open.ping_interval.saturating_add(open.ping_timeout));
    let deadline = tokio::time::sleep(heartbeat);
    tokio::pin!(deadline);
    let reason = loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => match protocol::decode(&text) {
                    Packet::Ping => {
                        deadline.as_mut().reset(Instant::now() + heartbeat);
                        if sink.send(Message::text(protocol::PONG)).await.is_err() {
                            break Reason::TransportError;
                        }
                    }
                    Packet::Close => break Reason::TransportClose,
                    Packet::Disconnect => break Reason::ServerDisconnect,
                    Packet::Event { name, args, ack } => inner.dispatch(name, args, ack),
                    Packet::Ack { id, args } => inner.resolve_ack(id, args),
                    Packet::ConnectError(message) => {
                        tracing::warn!(client = %inner.identifier, "connect_error: {message}");
                    }
                    Packet::Unsupported(text) => {
                        tracing::debug!(client = %inner.identifier, "unsupported packet ignored: {text}");
                    }
                    Packet::Open(_) | Packet::Connect { .. } | Packet::Noop => {}
                },
                Some(Ok(Message::Close(_))) | None => break Reason::TransportClose,
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(client = %inner.identifier, "transport error: {e}");
                    break Reason::TransportError;
                }
            },
            Some(text) = rx.recv() => {
                if sink.send(Message::text(text)).await.is_err() {
                    break Reason::TransportError;
                }
            }
            () = &mut deadline => break Reason::PingTimeout,
            changed = desire.changed() => {
                if changed.is_err() || *desire.borrow() != Desire::Connected {
                    // What was emitted before the disconnect still goes out first.
                    rx.close();
                    while let Ok(text) = rx.try_recv() {
                        sink.send(Message::text(text)).await.ok();
                    }
                    sink.send(Message::text(protocol::DISCONNECT)).await.ok();
                    sink.close().await.ok();
                    break Reason::ClientDisconnect;
                }
            }
        }
    };
    inner.disconnected();
    tracing::info!(client = %inner.identifier, reason = reason.as_str(), "disconnected");
    inner.fire_disconnected(reason.as_str().to_owned());
    reason
}
