//! The acknowledgements of a broadcast across the fleet: what socketioxide's `emit_with_ack`
//! on a broadcast operator yields through the [`RedisAdapter`](super::RedisAdapter). This
//! instance's sockets answer as they do without Redis; every other server (Node's too)
//! answers with how many of its sockets got the broadcast and with each one's
//! acknowledgement, which come as items of the same stream.
//!
//! The stream ends when this instance's sockets have answered (or timed out) and every other
//! server has reported its count and as many acknowledgements; at the timeout, each missing
//! remote acknowledgement comes as an [`AckError::Timeout`] item. The JavaScript adapter
//! does not say which socket an acknowledgement comes from, so remote items carry the
//! placeholder id `Sid::ZERO`; a server that never reports (dead in the middle) only
//! shortens the list, it does not hold the stream past the timeout.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use futures_util::stream::FusedStream;
use socketioxide::AckError;
use socketioxide_core::Sid;
use socketioxide_core::adapter::AckStreamItem;
use socketioxide_core::parser::Parse;
use socketioxide_parser_common::CommonParser;

use crate::args::Arg;
use crate::fanout::fleet_wire::{BROADCAST_ACK, BROADCAST_CLIENT_COUNT};
use crate::fanout::pending_requests::Awaited;

pin_project_lite::pin_project! {
    /// The acknowledgements of this instance's sockets and of the other servers'; see the
    /// [module docs](self).
    pub struct FleetAckStream<S> {
        #[pin]
        local: S,
        local_done: bool,
        remote: Option<RemoteAcks>,
    }
}

/// The most sockets one server's count may announce (more than one process serves).
const MAX_CLIENT_COUNT: i64 = 1 << 20;

/// What the other servers still owe.
pub(crate) struct RemoteAcks {
    awaited: Awaited,
    /// Servers that have not reported their count yet.
    unreported: usize,
    /// Acknowledgements announced by the counts and not received yet (negative while an
    /// acknowledgement overtakes its server's count).
    owed: i64,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// After the deadline: the timeouts still to yield.
    timed_out: Option<u64>,
}

impl RemoteAcks {
    /// Awaits `servers` servers' answers to the request `awaited`, for `timeout`.
    pub(crate) fn new(awaited: Awaited, servers: usize, timeout: Duration) -> Self {
        Self {
            awaited,
            unreported: servers,
            owed: 0,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timed_out: None,
        }
    }

    fn complete(&self) -> bool {
        self.unreported == 0 && self.owed <= 0
    }

    /// The next remote item, `Ready(None)` once nothing more is owed.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<AckStreamItem<AckError>>> {
        loop {
            if let Some(left) = &mut self.timed_out {
                if *left == 0 {
                    return Poll::Ready(None);
                }
                *left -= 1;
                return Poll::Ready(Some((Sid::ZERO, Err(AckError::Timeout))));
            }
            if self.complete() {
                return Poll::Ready(None);
            }
            match self.awaited.poll_next(cx) {
                Poll::Ready(Some(answer)) => match answer.kind {
                    Some(BROADCAST_CLIENT_COUNT) => {
                        // Bounded: whoever can publish on Redis could announce any count, and
                        // each one owed becomes an item at the timeout.
                        let count = answer.get("clientCount").and_then(Arg::as_i64);
                        self.unreported = self.unreported.saturating_sub(1);
                        self.owed = self
                            .owed
                            .saturating_add(count.unwrap_or(0).clamp(0, MAX_CLIENT_COUNT));
                    }
                    Some(BROADCAST_ACK) => {
                        self.owed = self.owed.saturating_sub(1);
                        let value = answer.get("packet").cloned().unwrap_or_default();
                        // Encoded as socketioxide's own acknowledgements are, so that the
                        // caller decodes both alike.
                        let item = CommonParser
                            .encode_value(&value, None)
                            .map_err(AckError::Decode);
                        return Poll::Ready(Some((Sid::ZERO, item)));
                    }
                    _ => {}
                },
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {
                    if self.deadline.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.timed_out = Some(u64::try_from(self.owed.max(0)).unwrap_or(0));
                }
            }
        }
    }
}

impl<S> FleetAckStream<S> {
    /// This instance's acknowledgements `local`, and the other servers' when `remote`.
    pub(crate) fn new(local: S, remote: Option<RemoteAcks>) -> Self {
        Self {
            local,
            local_done: false,
            remote,
        }
    }
}

impl<S: Stream<Item = AckStreamItem<AckError>>> Stream for FleetAckStream<S> {
    type Item = AckStreamItem<AckError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        if !*this.local_done {
            match this.local.poll_next(cx) {
                Poll::Ready(Some(item)) => return Poll::Ready(Some(item)),
                Poll::Ready(None) => *this.local_done = true,
                Poll::Pending => {}
            }
        }
        if let Some(remote) = this.remote {
            match remote.poll_next(cx) {
                Poll::Ready(Some(item)) => return Poll::Ready(Some(item)),
                Poll::Ready(None) => *this.remote = None,
                Poll::Pending => return Poll::Pending,
            }
        }
        if *this.local_done {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

impl<S: Stream<Item = AckStreamItem<AckError>>> FusedStream for FleetAckStream<S> {
    fn is_terminated(&self) -> bool {
        self.local_done && self.remote.is_none()
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;
    use crate::fanout::fleet_wire;
    use crate::fanout::pending_requests::PendingRequests;

    fn answer(pending: &PendingRequests, bytes: &[u8]) {
        assert!(pending.answer(fleet_wire::decode_response(bytes).unwrap()));
    }

    fn count(id: &str, n: u64) -> Vec<u8> {
        fleet_wire::encode_client_count(id, n)
    }

    fn ack(id: &str, value: &str) -> Vec<u8> {
        fleet_wire::encode_broadcast_ack(id, &Arg::from(value))
    }

    /// The remote items of a stream with no local sockets.
    fn stream(
        awaited: Awaited,
        servers: usize,
        timeout: Duration,
    ) -> impl Stream<Item = AckStreamItem<AckError>> {
        let local = futures_util::stream::empty::<AckStreamItem<AckError>>();
        FleetAckStream::new(local, Some(RemoteAcks::new(awaited, servers, timeout)))
    }

    fn text(item: &AckStreamItem<AckError>) -> String {
        match &item.1 {
            Ok(socketioxide_core::Value::Str(s, _)) => s.to_string(),
            other => format!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ends_once_every_server_has_counted_and_acknowledged_in_any_order() {
        let pending = PendingRequests::default();
        let awaited = pending.register("me");
        let id = awaited.id.clone();
        // One server's ack comes before its count; the other's count before its ack.
        answer(&pending, &ack(&id, "a"));
        answer(&pending, &count(&id, 1));
        answer(&pending, &count(&id, 1));
        answer(&pending, &ack(&id, "b"));
        let started = tokio::time::Instant::now();
        let items: Vec<_> = stream(awaited, 2, Duration::from_secs(5)).collect().await;
        assert_eq!(
            items.iter().map(text).collect::<Vec<_>>(),
            [r#"["a"]"#, r#"["b"]"#]
        );
        assert!(items.iter().all(|(sid, _)| *sid == Sid::ZERO));
        assert_eq!(started.elapsed(), Duration::ZERO, "complete, not timed out");
    }

    #[tokio::test(start_paused = true)]
    async fn missing_acknowledgements_time_out_and_a_silent_server_holds_nothing_past_the_timeout()
    {
        let pending = PendingRequests::default();
        let awaited = pending.register("me");
        let id = awaited.id.clone();
        answer(&pending, &count(&id, 3));
        answer(&pending, &ack(&id, "only"));
        let started = tokio::time::Instant::now();
        // Two servers asked: one counted 3 and acked once, the other never answers.
        let items: Vec<_> = stream(awaited, 2, Duration::from_secs(2)).collect().await;
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(items.len(), 3, "{items:?}");
        assert_eq!(text(&items[0]), r#"["only"]"#);
        assert!(
            items[1..]
                .iter()
                .all(|(_, r)| matches!(r, Err(AckError::Timeout)))
        );
        assert_eq!(pending.len(), 0, "the request is forgotten with its stream");
    }

    #[tokio::test(start_paused = true)]
    async fn complete_at_once_when_every_server_reports_no_socket() {
        let pending = PendingRequests::default();
        let awaited = pending.register("me");
        let id = awaited.id.clone();
        answer(&pending, &count(&id, 0));
        let started = tokio::time::Instant::now();
        let items: Vec<_> = stream(awaited, 1, Duration::from_secs(60)).collect().await;
        assert!(items.is_empty());
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
