//! Engine.IO's HTTP long-polling as a [`Transport`], for where a WebSocket cannot pass (a proxy
//! or a firewall that refuses the upgrade): the server holds each GET until it has packets for
//! the client, and what the client sends goes in POSTs, one at a time.
//!
//! A payload is Engine.IO v4's: packets joined by the record separator `\x1e`, a binary one as
//! `b` and its bytes in base64. The GETs and the POSTs each keep one HTTP/1.1 connection
//! (hyper's, over rustls for `https://`), as a browser does.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use futures_util::{Sink, Stream};
use http_body::Body as _;
use hyper::client::conn::http1::SendRequest as HttpSender;
use hyper_util::rt::TokioIo;
use tokio::sync::Mutex;

use crate::client::attachments::MAX_ATTACHMENT_BYTES;
use crate::client::dial::Endpoint;
use crate::client::error::ClientError;
use crate::client::options::TransportKind;
use crate::client::protocol::Frame;

/// Engine.IO's separator of the packets of one payload.
const SEPARATOR: char = '\x1e';

/// The largest response the client reads: a server's payload may hold many packets, but not
/// without bound.
const MAX_RESPONSE_BYTES: usize = MAX_ATTACHMENT_BYTES + (1 << 20);

/// What a POST may carry when the server's open packet does not say: socket.io's
/// `maxHttpBufferSize` default, the server side's too.
const DEFAULT_MAX_PAYLOAD: usize = crate::limits::DEFAULT_MAX_PAYLOAD as usize;

/// Where the polling requests go, and how.
pub(crate) struct PollingTarget {
    endpoint: Endpoint,
    headers: Vec<(String, String)>,
    tls: Option<tokio_rustls::TlsConnector>,
}

/// One kept HTTP/1.1 connection (none until the first request, or after it broke).
type Connection = Arc<Mutex<Option<HttpSender<String>>>>;

impl PollingTarget {
    pub(crate) fn new(
        endpoint: Endpoint,
        headers: Vec<(String, String)>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Self {
        Self {
            endpoint,
            headers,
            tls: tls.map(tokio_rustls::TlsConnector::from),
        }
    }

    /// The Engine.IO handshake: a new session, its first frames (the open packet first).
    pub(crate) async fn open(self: &Arc<Self>) -> Result<PollingTransport, ClientError> {
        let get = Connection::default();
        let body = self.request(&get, "GET", None, String::new()).await?;
        let frames = decode_payload(&body)?;
        let Some(Frame::Text(open)) = frames.first() else {
            return Err(transport(
                "the polling handshake did not start with a packet",
            ));
        };
        let fields: serde_json::Value = open
            .strip_prefix('0')
            .and_then(|json| serde_json::from_str(json).ok())
            .ok_or_else(|| {
                transport(format!("expected the Engine.IO open packet, got {open:?}"))
            })?;
        let sid = fields["sid"]
            .as_str()
            .filter(|sid| !sid.is_empty())
            .ok_or_else(|| transport("the open packet has no sid"))?
            .to_owned();
        let max_payload = fields["maxPayload"]
            .as_u64()
            .map_or(DEFAULT_MAX_PAYLOAD, |n| n.clamp(1024, 1 << 30) as usize);
        Ok(PollingTransport {
            target: self.clone(),
            sid,
            max_payload,
            get,
            post: Connection::default(),
            received: frames.into(),
            polling: None,
            outbox: VecDeque::new(),
            posting: None,
            ended: false,
        })
    }

    /// One request on `connection` (a new one if it has none or it broke); the response's
    /// body, or an error for anything but `200 OK`.
    async fn request(
        &self,
        connection: &Connection,
        method: &str,
        sid: Option<&str>,
        body: String,
    ) -> Result<Bytes, ClientError> {
        let mut kept = connection.lock().await;
        let mut sender = match kept.take() {
            Some(mut sender) => match sender.ready().await {
                Ok(()) => sender,
                Err(_) => self.connect().await?,
            },
            None => self.connect().await?,
        };
        let mut uri = self.endpoint.polling_path();
        if let Some(sid) = sid {
            uri.push_str("&sid=");
            uri.extend(form_urlencoded::byte_serialize(sid.as_bytes()));
        }
        let mut request = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::HOST, &self.endpoint.authority);
        if method == "POST" {
            request = request.header(http::header::CONTENT_TYPE, "text/plain; charset=UTF-8");
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let request = request
            .body(body)
            .map_err(|e| ClientError::InvalidUrl(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(transport)?;
        let status = response.status();
        let body = read_body(response.into_body()).await?;
        // Kept for the next request only once this one is answered whole.
        *kept = Some(sender);
        if status != http::StatusCode::OK {
            let excerpt = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(transport(format!("{method} answered {status}: {excerpt}")));
        }
        Ok(body)
    }

    /// A new HTTP/1.1 connection; its task ends when the sender is dropped.
    async fn connect(&self) -> Result<HttpSender<String>, ClientError> {
        let (host, port) = (&self.endpoint.host, self.endpoint.port);
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(transport)?;
        tcp.set_nodelay(true).ok();
        match &self.tls {
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| ClientError::InvalidUrl(format!("{host:?}: {e}")))?;
                let tls = tls.connect(name, tcp).await.map_err(transport)?;
                handshake(TokioIo::new(tls)).await
            }
            None => handshake(TokioIo::new(tcp)).await,
        }
    }
}

async fn handshake<Io>(io: Io) -> Result<HttpSender<String>, ClientError>
where
    Io: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(transport)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "polling connection ended");
        }
    });
    Ok(sender)
}

/// A response's body, up to [`MAX_RESPONSE_BYTES`].
async fn read_body(mut body: hyper::body::Incoming) -> Result<Bytes, ClientError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if let Ok(data) = frame.map_err(transport)?.into_data() {
            if buf.len() + data.len() > MAX_RESPONSE_BYTES {
                return Err(transport(format!(
                    "a polling response over {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

fn transport(e: impl std::fmt::Display) -> ClientError {
    ClientError::Transport(format!("polling: {e}"))
}

/// The frames of a payload.
fn decode_payload(body: &[u8]) -> Result<Vec<Frame>, ClientError> {
    let text = std::str::from_utf8(body).map_err(transport)?;
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(SEPARATOR)
        .map(|packet| match packet.strip_prefix('b') {
            Some(base64) => base64::engine::general_purpose::STANDARD
                .decode(base64)
                .map(|bytes| Frame::Binary(bytes.into()))
                .map_err(transport),
            None => Ok(Frame::Text(packet.to_owned())),
        })
        .collect()
}

/// A frame as a payload writes it.
fn encode_frame(frame: &Frame, payload: &mut String) {
    match frame {
        Frame::Text(text) => payload.push_str(text),
        Frame::Binary(bytes) => {
            payload.push('b');
            base64::engine::general_purpose::STANDARD.encode_string(bytes, payload);
        }
    }
}

/// The bytes a frame takes in a payload.
fn encoded_len(frame: &Frame) -> usize {
    match frame {
        Frame::Text(text) => text.len(),
        Frame::Binary(bytes) => 1 + bytes.len().div_ceil(3) * 4,
    }
}

/// One Engine.IO session over long-polling.
pub(crate) struct PollingTransport {
    target: Arc<PollingTarget>,
    sid: String,
    /// The most a POST may carry (the server's `maxPayload`).
    max_payload: usize,
    get: Connection,
    post: Connection,
    /// Frames come in payloads: the rest of the last one.
    received: VecDeque<Frame>,
    /// The GET in flight.
    polling: Option<BoxFuture<'static, Result<Bytes, ClientError>>>,
    /// Frames sent and not yet posted.
    outbox: VecDeque<Frame>,
    /// The POST in flight.
    posting: Option<BoxFuture<'static, Result<Bytes, ClientError>>>,
    ended: bool,
}

impl PollingTransport {
    fn start_request(
        &self,
        connection: &Connection,
        method: &'static str,
        body: String,
    ) -> BoxFuture<'static, Result<Bytes, ClientError>> {
        let (target, connection, sid) = (self.target.clone(), connection.clone(), self.sid.clone());
        Box::pin(async move { target.request(&connection, method, Some(&sid), body).await })
    }

    /// The next POST's body: frames from the outbox up to the server's bound (at least one).
    fn next_payload(&mut self) -> String {
        let mut payload = String::new();
        while let Some(frame) = self.outbox.front() {
            let len = encoded_len(frame) + usize::from(!payload.is_empty());
            if !payload.is_empty() && payload.len() + len > self.max_payload {
                break;
            }
            if !payload.is_empty() {
                payload.push(SEPARATOR);
            }
            let frame = self.outbox.pop_front().expect("front was some");
            encode_frame(&frame, &mut payload);
        }
        payload
    }
}

impl crate::client::transport::Transport for PollingTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Polling
    }
}

impl Stream for PollingTransport {
    type Item = Result<Frame, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(frame) = self.received.pop_front() {
                return Poll::Ready(Some(Ok(frame)));
            }
            if self.ended {
                return Poll::Ready(None);
            }
            if self.polling.is_none() {
                let get = self.get.clone();
                self.polling = Some(self.start_request(&get, "GET", String::new()));
            }
            let polled = ready!(self.polling.as_mut().expect("set above").as_mut().poll(cx));
            self.polling = None;
            match polled.and_then(|body| decode_payload(&body)) {
                Ok(frames) => self.received.extend(frames),
                Err(e) => {
                    self.ended = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }
}

impl Sink<Frame> for PollingTransport {
    type Error = ClientError;

    fn poll_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        if self.ended {
            return Poll::Ready(Err(transport("the session has ended")));
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(mut self: Pin<&mut Self>, frame: Frame) -> Result<(), ClientError> {
        self.outbox.push_back(frame);
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        loop {
            if let Some(posting) = self.posting.as_mut() {
                let posted = ready!(posting.as_mut().poll(cx));
                self.posting = None;
                if let Err(e) = posted {
                    self.ended = true;
                    return Poll::Ready(Err(e));
                }
            }
            if self.outbox.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let payload = self.next_payload();
            let post = self.post.clone();
            self.posting = Some(self.start_request(&post, "POST", payload));
        }
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        if !self.ended {
            // Engine.IO's close packet, so the server ends the session now rather than at its
            // ping timeout; the GET in flight is dropped with its connection.
            self.outbox.push_back(Frame::Text("1".into()));
            self.polling = None;
            let flushed = ready!(self.as_mut().poll_flush(cx));
            self.ended = true;
            return Poll::Ready(flushed);
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_split_into_text_and_binary_frames() {
        let frames = decode_payload(b"0{\"sid\":\"a\"}\x1e42[\"x\"]\x1ebAAH/").unwrap();
        assert_eq!(
            frames,
            vec![
                Frame::Text("0{\"sid\":\"a\"}".into()),
                Frame::Text("42[\"x\"]".into()),
                Frame::Binary(Bytes::from_static(&[0, 1, 255])),
            ]
        );
        assert_eq!(decode_payload(b"").unwrap(), vec![]);
        assert!(decode_payload(b"b!!!").is_err());
        assert!(decode_payload(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn frames_encode_as_a_payload() {
        let mut payload = String::new();
        encode_frame(
            &Frame::Binary(Bytes::from_static(&[0, 1, 255])),
            &mut payload,
        );
        assert_eq!(payload, "bAAH/");
        assert_eq!(
            encoded_len(&Frame::Binary(Bytes::from_static(&[0, 1, 255]))),
            5
        );
        assert_eq!(encoded_len(&Frame::Binary(Bytes::from_static(&[0]))), 5);
    }
}
