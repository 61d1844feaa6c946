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

/// The client's connection task.
pub(crate) async fn drive(inner: Arc<Inner>) {
    let mut desire = inner.desire.subscribe();
    // Reconnection attempts since the last good connection: the backoff's exponent.
    let mut attempt: u32 = 0;
    // Failed connection attempts in a row: checked against `reconnection_attempts`.
    let mut failures: u32 = 0;
    loop {
        let wanted = *desire.borrow_and_update();
        match wanted {
            Desire::Shutdown => return,
            Desire::Disconnected => {
                (attempt, failures) = (0, 0);
                if desire.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Desire::Connected => {}
        }
        let timeout = inner.options.timeout;
        let outcome = tokio::select! {
            res = tokio::time::timeout(timeout, connect(&inner)) => res.unwrap_or(Err(ClientError::Timeout(timeout))),
            // A disconnect or shutdown while connecting.
            _ = desire.changed() => continue,
        };
        match outcome {
            Ok(conn) => {
                (attempt, failures) = (0, 0);
                let reason = serve(&inner, conn, &mut desire).await;
                let reconnect = reason.reconnects() && inner.options.reconnection;
                if !reconnect {
                    // Before the callback, so that a `connect()` made from it is not undone.
                    inner.settle(Desire::Connected, Desire::Disconnected);
                }
                inner.fire_disconnected(reason.as_str().to_owned());
                if !reconnect {
                    continue;
                }
            }
            Err(e) => {
                tracing::warn!(client = %inner.identifier, "connection failed: {e}");
                failures += 1;
                let exhausted = inner
                    .options
                    .reconnection_attempts
                    .is_some_and(|max| failures > max);
                // A refusal by the server is final, as in socket.io-client: the same
                // credentials would be refused again.
                let give_up = !inner.options.reconnection
                    || exhausted
                    || matches!(e, ClientError::Refused(_));
                if give_up {
                    inner.settle(Desire::Connected, Desire::Disconnected);
                }
                inner.fire_error(e);
                if give_up {
                    continue;
                }
            }
        }
        let delay = inner.options.backoff(attempt, inner.jitter());
        attempt = attempt.saturating_add(1);
        tracing::debug!(client = %inner.identifier, ?delay, "reconnecting");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = desire.changed() => {}
        }
    }
}

/// Opens the WebSocket, reads the Engine.IO open packet, connects to the default namespace.
async fn connect(inner: &Inner) -> Result<Connection, ClientError> {
    let mut ws = open_websocket(inner).await?;
    match handshake(inner, &mut ws).await {
        Ok((open, sid)) => Ok(Connection { ws, open, sid }),
        Err(e) => {
            let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
            Err(e)
        }
    }
}

async fn open_websocket(inner: &Inner) -> Result<Ws, ClientError> {
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
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    Ok(ws)
}

/// The Engine.IO open packet, then the Socket.IO connect; the open packet and the socket id.
async fn handshake(inner: &Inner, ws: &mut Ws) -> Result<(Open, Option<String>), ClientError> {
    let open = loop {
        match next_packet(ws).await? {
            Packet::Open(open) => break open,
            Packet::Noop => continue,
            other => {
                return Err(ClientError::Transport(format!(
                    "expected the Engine.IO open packet, got {other:?}"
                )));
            }
        }
    };
    send(ws, protocol::connect(inner.options.auth.as_ref())).await?;
    let sid = loop {
        match next_packet(ws).await? {
            Packet::Connect { sid } => break sid,
            Packet::ConnectError(message) => return Err(ClientError::Refused(message)),
            Packet::Ping => send(ws, protocol::PONG.to_owned()).await?,
            Packet::Close => {
                return Err(ClientError::Transport("closed during the handshake".into()));
            }
            other => {
                tracing::debug!(client = %inner.identifier, "ignored during the handshake: {other:?}")
            }
        }
    };
    Ok((open, sid))
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
    // A server that stops reading must not stall this loop (and with it the heartbeat check
    // and disconnect requests): every write has a deadline.
    let write_timeout = inner.options.timeout;
    macro_rules! write {
        ($text:expr) => {
            matches!(
                tokio::time::timeout(write_timeout, sink.send(Message::text($text))).await,
                Ok(Ok(()))
            )
        };
    }
    let reason = loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => match protocol::decode(&text) {
                    Packet::Ping => {
                        deadline.as_mut().reset(Instant::now() + heartbeat);
                        if !write!(protocol::PONG) {
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
                if !write!(text) {
                    break Reason::TransportError;
                }
            }
            () = &mut deadline => break Reason::PingTimeout,
            changed = desire.changed() => {
                if changed.is_err() || *desire.borrow() != Desire::Connected {
                    // What was emitted before the disconnect still goes out first.
                    rx.close();
                    while let Ok(text) = rx.try_recv() {
                        if !write!(text) {
                            break;
                        }
                    }
                    write!(protocol::DISCONNECT);
                    break Reason::ClientDisconnect;
                }
            }
        }
    };
    inner.disconnected();
    // A proper WebSocket close, however the connection ended (bounded: the peer may be gone).
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
    tracing::info!(client = %inner.identifier, reason = reason.as_str(), "disconnected");
    reason
}
