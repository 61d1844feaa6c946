//! The handshake handed to the authenticate function: the seeds' `IHandshake`.
//!
//! It is taken once, when the socket connects to the namespace, from the HTTP request that
//! opened the Engine.IO session and from the `auth` payload of the Socket.IO CONNECT packet
//! (`io(url, { auth: { token } })` in the JavaScript client).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::SystemTime;

use http::HeaderMap;
use http::request::Parts;
use serde_json::Value;

use crate::clock;

/// What a client sent when it connected, as the seeds' `IHandshake`.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// HTTP headers of the request that opened the connection.
    pub headers: HeaderMap,
    /// When the socket connected, as an ISO-8601 string.
    pub time: String,
    /// The peer's address, when the server put a [`PeerAddr`] (or a bare `SocketAddr`) in the
    /// request extensions, else `None`. With axum, copy `ConnectInfo<SocketAddr>` into a
    /// `PeerAddr` with a `map_request` in front of the Socket.IO layer (see the demo).
    pub address: Option<SocketAddr>,
    /// Whether the request was cross-origin (it carried an `origin` header), as Engine.IO
    /// computes it.
    pub xdomain: bool,
    /// Whether the connection was made over TLS (`https`/`wss`, or `x-forwarded-proto: https`).
    pub secure: bool,
    /// When the socket connected, in milliseconds since the Unix epoch.
    pub issued: u64,
    /// The request URL (path and query), as sent; [`query`](Self::query) reads its query.
    pub url: String,
    /// The `auth` payload of the CONNECT packet; `Value::Null` when the client sent none.
    pub auth: Value,
}

impl Handshake {
    /// Builds the handshake from the connecting request and the CONNECT packet's `auth`.
    pub fn from_parts(parts: &Parts, auth: Value) -> Self {
        let now = SystemTime::now();
        let address = parts.extensions.get::<SocketAddr>().copied().or_else(|| {
            parts
                .extensions
                .get::<PeerAddr>()
                .map(|PeerAddr(addr)| *addr)
        });
        let forwarded_https = parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"));
        Self {
            headers: parts.headers.clone(),
            time: clock::iso_string(now),
            address,
            xdomain: parts.headers.contains_key(http::header::ORIGIN),
            secure: parts.uri.scheme() == Some(&http::uri::Scheme::HTTPS) || forwarded_https,
            issued: clock::unix_millis(now),
            url: parts
                .uri
                .path_and_query()
                .map(|pq| pq.as_str().to_owned())
                .unwrap_or_else(|| parts.uri.path().to_owned()),
            auth,
        }
    }

    /// A header's value, when present and valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The token of an `authorization: Bearer <token>` header (scheme case-insensitive).
    pub fn bearer_token(&self) -> Option<&str> {
        let value = self.header("authorization")?.trim();
        let (scheme, token) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty())
    }

    /// The string at `auth.<field>` of the CONNECT payload, e.g. `auth_field("token")`.
    pub fn auth_field(&self, field: &str) -> Option<&str> {
        self.auth.get(field).and_then(Value::as_str)
    }

    /// The URL query parameters, decoded, in order (a name may repeat).
    ///
    /// Parsed from [`url`](Self::url) on each call rather than kept parsed: a parsed copy
    /// costs far more than the query itself when it is made of many short parameters (a
    /// 64 KB `a&a&…` took 1.7 MB per socket), and it is seldom read past the handshake.
    pub fn query(&self) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
        let query = self.url.split_once('?').map_or("", |(_, q)| q);
        form_urlencoded::parse(query.as_bytes())
    }

    /// The first value of a query parameter, decoded (borrowed from the URL when it needed no
    /// decoding).
    pub fn query_param(&self, name: &str) -> Option<Cow<'_, str>> {
        self.query().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// The peer address of a connection: put it into the request extensions in front of the
/// Socket.IO layer so that [`Handshake::address`] can report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parts(req: http::Request<()>) -> Parts {
        req.into_parts().0
    }

    #[test]
    fn reads_headers_query_and_auth() {
        let req = http::Request::get("/io/?EIO=4&transport=polling&room=a%20b&room=c")
            .header("authorization", "Bearer  abc ")
            .header("origin", "http://example.test")
            .body(())
            .unwrap();
        let hs = Handshake::from_parts(&parts(req), json!({"token": "t1"}));
        assert_eq!(hs.bearer_token(), Some("abc"));
        assert_eq!(hs.auth_field("token"), Some("t1"));
        assert_eq!(hs.query_param("room").as_deref(), Some("a b"));
        assert_eq!(hs.query_param("transport").as_deref(), Some("polling"));
        assert_eq!(hs.query_param("missing"), None);
        assert_eq!(hs.query().count(), 4);
        assert!(hs.xdomain);
        assert!(!hs.secure);
        assert_eq!(hs.url, "/io/?EIO=4&transport=polling&room=a%20b&room=c");
        assert!(hs.issued > 0);
        assert!(hs.address.is_none());
    }

    #[test]
    fn odd_authorization_headers_give_no_token() {
        for value in ["Bearer", "Basic abc", "Bearer   ", "token"] {
            let req = http::Request::get("/")
                .header("authorization", value)
                .body(())
                .unwrap();
            let hs = Handshake::from_parts(&parts(req), Value::Null);
            assert_eq!(hs.bearer_token(), None, "{value:?}");
        }
    }

    #[test]
    fn peer_address_and_forwarded_tls() {
        let mut req = http::Request::get("/")
            .header("x-forwarded-proto", "HTTPS")
            .body(())
            .unwrap();
        let addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        req.extensions_mut().insert(PeerAddr(addr));
        let hs = Handshake::from_parts(&parts(req), Value::Null);
        assert_eq!(hs.address, Some(addr));
        assert!(hs.secure);
    }
}
