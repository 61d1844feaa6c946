//! What a connection runs over: a stream and a sink of Engine.IO [`Frame`]s, whatever carries
//! them; and the WebSocket as one.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::client::error::ClientError;
use crate::client::options::TransportKind;
use crate::client::protocol::Frame;

/// A connection's frames both ways. The stream ends when the connection is closed.
pub(crate) trait Transport:
    Stream<Item = Result<Frame, ClientError>>
    + Sink<Frame, Error = ClientError>
    + Send
    + Unpin
    + 'static
{
    /// Which transport this is.
    fn kind(&self) -> TransportKind;
}

impl Transport for Box<dyn Transport> {
    fn kind(&self) -> TransportKind {
        (**self).kind()
    }
}

impl<Io: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for WebSocketTransport<Io> {
    fn kind(&self) -> TransportKind {
        TransportKind::WebSocket
    }
}

/// A WebSocket as a [`Transport`]: each text or binary message is a frame. Its own ping and
/// pong are not (tungstenite answers pings), and its close message ends the stream.
pub(crate) struct WebSocketTransport<Io>(WebSocketStream<Io>);

impl<Io> WebSocketTransport<Io> {
    pub(crate) fn new(ws: WebSocketStream<Io>) -> Self {
        Self(ws)
    }
}

fn transport_error(e: impl std::fmt::Display) -> ClientError {
    ClientError::Transport(e.to_string())
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Stream for WebSocketTransport<Io> {
    type Item = Result<Frame, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let frame = match ready!(Pin::new(&mut self.0).poll_next(cx)) {
                Some(Ok(Message::Text(text))) => Frame::Text(text.as_str().to_owned()),
                Some(Ok(Message::Binary(bytes))) => Frame::Binary(bytes),
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(None),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Err(e)) => return Poll::Ready(Some(Err(transport_error(e)))),
            };
            return Poll::Ready(Some(Ok(frame)));
        }
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Sink<Frame> for WebSocketTransport<Io> {
    type Error = ClientError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        Pin::new(&mut self.0)
            .poll_ready(cx)
            .map_err(transport_error)
    }

    fn start_send(mut self: Pin<&mut Self>, frame: Frame) -> Result<(), ClientError> {
        let message = match frame {
            Frame::Text(text) => Message::text(text),
            Frame::Binary(bytes) => Message::binary(bytes),
        };
        Pin::new(&mut self.0)
            .start_send(message)
            .map_err(transport_error)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        Pin::new(&mut self.0)
            .poll_flush(cx)
            .map_err(transport_error)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        Pin::new(&mut self.0)
            .poll_close(cx)
            .map_err(transport_error)
    }
}
