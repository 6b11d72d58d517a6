//! Per-connection timeouts that tell an idle keep-alive connection from a slow request head.
//!
//! hyper's own `header_read_timeout` also runs while a keep-alive connection waits for its next
//! request, so it closes pooled connections that clients are about to reuse (a reset on the
//! client's next call). Here the head timer starts only when the first byte of a request
//! arrives, never runs while a request is being served, and an idle connection is closed
//! quietly after a longer idle timeout.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Set by the request handler while it serves a request on this connection.
#[derive(Clone, Default)]
pub struct Busy(Arc<AtomicBool>);

impl Busy {
    /// Marks the connection busy until the returned guard is dropped.
    pub fn enter(&self) -> BusyGuard {
        self.0.store(true, Ordering::Release);
        BusyGuard(self.0.clone())
    }

    fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

pub struct BusyGuard(Arc<AtomicBool>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// An I/O stream with the head and idle timeouts applied to its reads.
pub struct Timed<S> {
    inner: S,
    busy: Busy,
    head_timeout: Duration,
    idle_timeout: Duration,
    /// When the current request head must be complete (`None`: no head being read).
    head_deadline: Option<Instant>,
    last_activity: Instant,
    sleep: Pin<Box<Sleep>>,
}

impl<S> Timed<S> {
    pub fn new(inner: S, busy: Busy, head_timeout: Duration, idle_timeout: Duration) -> Self {
        let now = Instant::now();
        Timed {
            inner,
            busy,
            head_timeout,
            idle_timeout,
            head_deadline: None,
            last_activity: now,
            sleep: Box::pin(tokio::time::sleep_until(now + idle_timeout)),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                let now = Instant::now();
                this.last_activity = now;
                if this.busy.get() {
                    this.head_deadline = None;
                } else if buf.filled().len() > before && this.head_deadline.is_none() {
                    // First bytes of a new request: its head must arrive in time.
                    this.head_deadline = Some(now + this.head_timeout);
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if this.busy.get() {
                    // Never time out a connection while its request is being served.
                    this.head_deadline = None;
                    return Poll::Pending;
                }
                let (deadline, on_expiry) = match this.head_deadline {
                    Some(d) => (d, Expiry::Head),
                    None => (this.last_activity + this.idle_timeout, Expiry::Idle),
                };
                if this.sleep.deadline() != deadline {
                    this.sleep.as_mut().reset(deadline);
                }
                match this.sleep.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => match on_expiry {
                        Expiry::Head => Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "request head not received in time",
                        ))),
                        // End of stream: hyper closes an idle connection quietly.
                        Expiry::Idle => Poll::Ready(Ok(())),
                    },
                }
            }
        }
    }
}

enum Expiry {
    Head,
    Idle,
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Timed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if r.is_ready() {
            // A response went out: the next bytes start a new head.
            this.head_deadline = None;
            this.last_activity = Instant::now();
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
