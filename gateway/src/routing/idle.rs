//! A route's idle timeout: a body, either way, that gives up when no piece of it moves for a
//! while; and [`Sent`], the moment a request body has gone out completely, from which the
//! time to the first byte of the answer is counted (so a long upload is not cut by it).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use crate::error::GatewayError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What became of a streamed request body: sent completely, or cut on the client's side
/// (it stalled past the idle timeout, or broke off). Shared by the body and the forwarder,
/// which learns from it whose fault a failed exchange was, whatever the upstream protocol
/// made of the error.
#[derive(Debug, Default)]
pub struct Sent {
    done: AtomicBool,
    stalled: AtomicBool,
    broke: AtomicBool,
    notify: Notify,
}

impl Sent {
    fn finish(&self) {
        if !self.done.swap(true, Ordering::AcqRel) {
            self.notify.notify_waiters();
        }
    }

    /// Returns once the body is sent.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a finish in between is not missed.
            notified.as_mut().enable();
            if self.done.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// The body stalled past the idle timeout.
    pub fn stalled(&self) -> bool {
        self.stalled.load(Ordering::Acquire)
    }

    /// The body broke off (the client went away or sent a broken body).
    pub fn broke(&self) -> bool {
        self.broke.load(Ordering::Acquire)
    }
}

/// A body that fails with [`GatewayError::Idle`] when its source keeps it waiting longer
/// than `idle` for the next piece.
pub struct IdleBody<B> {
    inner: B,
    idle: Duration,
    /// Armed only when the source first makes us wait: most small bodies never need it.
    timer: Option<Pin<Box<Sleep>>>,
    sent: Option<Arc<Sent>>,
    /// Which body, for the log: "request" or "response".
    side: &'static str,
}

impl<B> IdleBody<B> {
    /// Wraps `inner`, the `side` ("request" or "response") body; `sent`, if given, is set when
    /// the body has ended.
    pub fn new(inner: B, idle: Duration, side: &'static str, sent: Option<Arc<Sent>>) -> IdleBody<B> {
        IdleBody { inner, idle, timer: None, sent, side }
    }

    fn ended(&self) {
        if let Some(s) = &self.sent {
            s.finish();
        }
    }
}

impl<B> Body for IdleBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(t) = this.timer.as_mut() {
                    t.as_mut().reset(Instant::now() + this.idle);
                }
                if this.inner.is_end_stream() {
                    this.ended();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(s) = &this.sent {
                    s.broke.store(true, Ordering::Release);
                }
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.ended();
                Poll::Ready(None)
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        tracing::warn!(body = this.side, ?idle, "no data moved within the idle timeout; the exchange is cut");
                        if let Some(s) = &this.sent {
                            s.stalled.store(true, Ordering::Release);
                        }
                        Poll::Ready(Some(Err(Box::new(GatewayError::Idle(idle)))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            self.ended();
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    /// A body fed piece by piece by the test.
    struct Fed(mpsc::Receiver<Bytes>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|piece| piece.map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_fails_after_the_idle_time_and_one_that_moves_does_not() {
        let (tx, rx) = mpsc::channel(4);
        let sent = Arc::new(Sent::default());
        let mut body = IdleBody::new(Fed(rx), Duration::from_secs(5), "request", Some(sent.clone()));
        let feeder = tokio::spawn(async move {
            for _ in 0..3 {
                // Pauses below the idle time keep the body alive.
                tokio::time::sleep(Duration::from_secs(4)).await;
                tx.send(Bytes::from_static(b"piece")).await.unwrap();
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(tx);
        });
        for _ in 0..3 {
            assert_eq!(body.frame().await.unwrap().unwrap().into_data().unwrap(), "piece");
        }
        let started = Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(matches!(err.downcast_ref::<GatewayError>(), Some(GatewayError::Idle(d)) if *d == Duration::from_secs(5)), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert!(sent.stalled() && !sent.broke(), "the stall is recorded");
        assert!(!sent.done.load(Ordering::Acquire), "a body cut short was not sent");
        feeder.abort();
    }

    #[tokio::test]
    async fn sent_is_set_at_the_end_of_the_body_and_wakes_a_waiter() {
        let sent = Arc::new(Sent::default());
        let waiter = tokio::spawn({
            let s = sent.clone();
            async move { s.wait().await }
        });
        let body =
            IdleBody::new(http_body_util::Full::new(Bytes::from_static(b"all")), Duration::from_secs(1), "request", Some(sent.clone()));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "all");
        tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("the waiter wakes").unwrap();
    }
}
