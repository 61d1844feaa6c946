//! The handle callers send through: the seeds' `send()`, with its silent drops and
//! completion callback, whatever delivery stack is below.

use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_service::Service;

use crate::args::Arg;
use crate::event::names;
use crate::outbound::request::{OutboundMessage, SendError};
use crate::telemetry::{self, SendOutcome};

/// What happened to a send that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Handed to the delivery stack.
    Sent,
    /// Dropped without sending, as the seeds drop it silently.
    Dropped(DropReason),
}

/// Why a send was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The topic is empty.
    NoTopic,
    /// The data is falsy in JavaScript's sense: `null`, `false`, `0`, `""` (or absent).
    FalsyData,
}

/// Sends messages to clients through the outbound stack. Cheap to clone.
#[derive(Clone)]
pub struct Outbound {
    service: BoxCloneSyncService<OutboundMessage, (), SendError>,
}

impl Outbound {
    /// A handle over an outbound stack: [`LocalDelivery`](crate::outbound::LocalDelivery) or
    /// [`RedisDelivery`](crate::fanout::RedisDelivery), possibly wrapped in outbound layers.
    pub fn new<S>(service: S) -> Self
    where
        S: Service<OutboundMessage, Response = (), Error = SendError>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        Self {
            service: BoxCloneSyncService::new(service),
        }
    }

    /// Sends `req`, unless the seeds would drop it: an empty topic, or falsy data (no
    /// argument, or a single falsy one), give
    /// `Ok(Delivery::Dropped(_))` with nothing sent and nothing logged above trace level.
    ///
    /// A reserved topic ([`names::RESERVED`], e.g. `disconnect`) fails with
    /// [`SendError::ReservedTopic`] and sends nothing, as the JavaScript emitter throws. The
    /// silent drops come first, in the seeds' order.
    pub async fn send(&self, req: OutboundMessage) -> Result<Delivery, SendError> {
        let outcome = self.send_counted(req).await;
        telemetry::send(match &outcome {
            Ok(Delivery::Sent) => SendOutcome::Sent,
            Ok(Delivery::Dropped(_)) => SendOutcome::Dropped,
            Err(_) => SendOutcome::Failed,
        });
        outcome
    }

    async fn send_counted(&self, req: OutboundMessage) -> Result<Delivery, SendError> {
        if req.topic.is_empty() {
            tracing::trace!("send dropped: no topic");
            return Ok(Delivery::Dropped(DropReason::NoTopic));
        }
        if matches!(req.args.as_slice(), [] | [_]) && req.args.iter().all(Arg::is_falsy) {
            tracing::trace!(topic = %req.topic, "send dropped: falsy data");
            return Ok(Delivery::Dropped(DropReason::FalsyData));
        }
        if names::is_reserved(&req.topic) {
            return Err(SendError::ReservedTopic(req.topic));
        }
        if req.log {
            tracing::info!(destination = req.room().unwrap_or("*"), topic = %req.topic, "send");
        }
        self.service.clone().oneshot(req).await?;
        Ok(Delivery::Sent)
    }

    /// [`send`](Self::send), then runs `callback` once the message has been handed to the
    /// delivery stack (the seeds' `cb`: after the emit, not after the clients received it).
    /// As in the seeds, a dropped send never runs it; neither does a failed one. A panic in
    /// the callback is contained and logged.
    pub async fn send_then<F>(
        &self,
        req: OutboundMessage,
        callback: F,
    ) -> Result<Delivery, SendError>
    where
        F: FnOnce() + Send + 'static,
    {
        let outcome = self.send(req).await;
        if matches!(outcome, Ok(Delivery::Sent))
            && let Err(panic) = crate::plumbing::catch_panic_now(callback)
        {
            telemetry::handler_panicked();
            tracing::error!(panic = %panic, "send callback panicked");
        }
        outcome
    }
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::{Arc, Mutex};

    #[test]
    fn falsy_as_javascript_says() {
        for v in [
            json!(null),
            json!(false),
            json!(0),
            json!(0.0),
            json!(-0.0),
            json!(""),
        ] {
            assert!(Arg::from(v.clone()).is_falsy(), "{v}");
        }
        for v in [json!(true), json!(1), json!("0"), json!([]), json!({})] {
            assert!(!Arg::from(v.clone()).is_falsy(), "{v}");
        }
    }

    #[tokio::test]
    async fn drops_silently_and_calls_back_after_sending() {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let recorder = {
            let sent = sent.clone();
            tower::service_fn(move |req: OutboundMessage| {
                sent.lock().unwrap().push(req.topic);
                async { Ok::<_, SendError>(()) }
            })
        };
        let out = Outbound::new(recorder);
        assert_eq!(
            out.send(OutboundMessage::broadcast("", json!({"a": 1})))
                .await,
            Ok(Delivery::Dropped(DropReason::NoTopic))
        );
        assert_eq!(
            out.send(OutboundMessage::to("room", "t", json!(0))).await,
            Ok(Delivery::Dropped(DropReason::FalsyData))
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        let outcome = out
            .send_then(OutboundMessage::to("room", "t", json!([])), move || {
                tx.send(()).ok();
            })
            .await;
        assert_eq!(outcome, Ok(Delivery::Sent));
        rx.await.unwrap();
        out.send_then(OutboundMessage::broadcast("p", json!(1)), || {
            panic!("callback bug")
        })
        .await
        .unwrap();
        assert_eq!(*sent.lock().unwrap(), ["t", "p"]);
    }

    #[tokio::test]
    async fn refuses_reserved_topics_before_the_stack() {
        let reached = Arc::new(Mutex::new(0));
        let counter = {
            let reached = reached.clone();
            tower::service_fn(move |_: OutboundMessage| {
                *reached.lock().unwrap() += 1;
                async { Ok::<_, SendError>(()) }
            })
        };
        let out = Outbound::new(counter);
        for topic in names::RESERVED {
            let refused = out
                .send_then(OutboundMessage::broadcast(*topic, json!({"a": 1})), || {
                    panic!("a refused send runs no callback")
                })
                .await;
            assert_eq!(refused, Err(SendError::ReservedTopic((*topic).into())));
            let message = refused.unwrap_err().to_string();
            assert!(message.contains(&format!("{topic:?}")) && message.contains("reserved"));
        }
        // Falsy data is dropped silently first, as in the seeds.
        assert_eq!(
            out.send(OutboundMessage::broadcast("disconnect", json!(null)))
                .await,
            Ok(Delivery::Dropped(DropReason::FalsyData))
        );
        assert_eq!(*reached.lock().unwrap(), 0);
    }
}
