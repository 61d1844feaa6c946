//! The deadline on a write that makes no progress, shared by the connections [`serve`](crate::serve)
//! accepts and the WebSocket wrapper of the [`transport`](crate::transport) module: a client
//! that stops reading blocks the server's writes to it, and socketioxide's writer cannot be
//! stopped from outside while it waits.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Sleep;

/// How long a write to a WebSocket client may make no progress before its connection is cut
/// off (see [`SocketServerBuilder::write_timeout`](crate::SocketServerBuilder::write_timeout)):
/// [`serve`](crate::serve)'s own default.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// A deadline armed when a write stays pending and disarmed when one goes through.
pub(crate) struct WriteStall {
    timeout: Option<Duration>,
    /// Armed while a write is blocked (boxed: only a stalled connection pays for it).
    sleep: Option<Pin<Box<Sleep>>>,
}

impl WriteStall {
    /// A deadline of `timeout`; `None`: writes may block for ever.
    pub(crate) fn new(timeout: Option<Duration>) -> Self {
        Self {
            timeout,
            sleep: None,
        }
    }

    /// Runs `write`, passing its outcome on; a write that has stayed pending for the whole
    /// deadline gives `Err(timeout)` instead (the caller then ends the connection).
    pub(crate) fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<Result<T, Duration>> {
        match write(cx) {
            Poll::Ready(res) => {
                self.sleep = None;
                Poll::Ready(Ok(res))
            }
            Poll::Pending => {
                let Some(timeout) = self.timeout else {
                    return Poll::Pending;
                };
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
                Poll::Ready(Err(timeout))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_write_pending_for_the_whole_deadline_times_out_and_progress_disarms_it() {
        let mut stall = WriteStall::new(Some(Duration::from_secs(1)));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(stall.guard(&mut cx, |_| Poll::<()>::Pending).is_pending());
        assert!(stall.sleep.is_some(), "armed by a pending write");
        assert_eq!(stall.guard(&mut cx, |_| Poll::Ready(7)), Poll::Ready(Ok(7)));
        assert!(stall.sleep.is_none(), "disarmed by progress");
        let pending = std::future::poll_fn(|cx| stall.guard(cx, |_| Poll::<()>::Pending));
        assert_eq!(pending.await, Err(Duration::from_secs(1)));
        let mut never = WriteStall::new(None);
        assert!(never.guard(&mut cx, |_| Poll::<()>::Pending).is_pending());
        assert!(never.sleep.is_none());
    }
}
