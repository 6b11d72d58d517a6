//! Connection handling: the timeouts of one connection, and the pools that bound how many are
//! open without letting idle or silent ones lock anybody out.
//!
//! Timeouts (`Timed`), each for one phase of a connection:
//! - first byte: a fresh connection that sends nothing is closed quietly after a few seconds;
//! - head: once a request's first byte arrives, its whole head must follow in time;
//! - idle: a keep-alive connection waiting for its next request is closed quietly after a
//!   longer time (hyper's own `header_read_timeout` would also run there, closing pooled
//!   connections that clients are about to reuse);
//! - write: a response write that makes no progress (the client stopped reading) closes the
//!   connection.
//!
//! No timer runs while a request is being served.
//!
//! A `Pool` holds a fixed number of permits. When none is free, the oldest connection that
//! is not serving a request is evicted to make room: first one that has not sent a byte, then
//! one still sending its head, then one idle in keep-alive. A connection serving a request is
//! never evicted; when every connection is busy there is no room and the caller refuses.

use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// How long each phase of a connection may last; see the module doc.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub first_byte: Duration,
    pub head: Duration,
    pub idle: Duration,
    pub write: Duration,
}

// What a connection is doing, in the low bits of `Slot::state`, ordered by how readily it is
// evicted. `EVICTED` is a flag on top: the connection closes as soon as it is not busy.
/// Polled, and nothing has arrived.
const FRESH: u8 = 0;
/// Part of a request head has arrived.
const HEAD: u8 = 1;
/// Between requests.
const IDLE: u8 = 2;
/// Admitted but not yet polled: under a flood of connections the accept loop can admit many
/// before a new connection's task first reads, and a client that sent its request with the
/// connect must get that read.
const NEW: u8 = 3;
const BUSY: u8 = 4;
const PHASE: u8 = 0b111;
const EVICTED: u8 = 0b1000;
/// The connection has closed (its seat was dropped): no longer a candidate.
const CLOSED: u8 = 0b1_0000;

/// One open connection as its pool sees it.
pub struct Slot {
    state: AtomicU8,
    /// The connection's task, woken by an eviction. An `AtomicWaker` rather than a `Notify`:
    /// it is registered on every poll of the connection, and a `Notify` takes a lock there.
    evict: AtomicWaker,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            state: AtomicU8::new(NEW),
            evict: AtomicWaker::new(),
        }
    }

    fn set_phase(&self, phase: u8) {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                Some((s & !PHASE) | phase)
            });
    }

    fn phase(&self) -> u8 {
        self.state.load(Ordering::Acquire) & PHASE
    }

    fn busy(&self) -> bool {
        self.phase() == BUSY
    }

    fn evicted(&self) -> bool {
        self.state.load(Ordering::Acquire) & EVICTED != 0
    }

    fn closed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Marks the connection busy (serving a request) until the guard is dropped.
    pub fn enter(self: &Arc<Self>) -> BusyGuard {
        self.set_phase(BUSY);
        BusyGuard(self.clone())
    }

    /// Flags the connection for closing unless it is busy, closed or already flagged.
    fn try_evict(&self) -> bool {
        let flagged = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s & (EVICTED | CLOSED) == 0 && s & PHASE != BUSY).then_some(s | EVICTED)
            })
            .is_ok();
        if flagged {
            // Wakes `serve`, which polls the connection again; its next read or blocked write
            // sees the flag.
            self.evict.wake();
        }
        flagged
    }

    /// Drives `conn` to its end; an eviction wakes it so that it closes.
    pub async fn serve<F: Future>(&self, conn: F) {
        tokio::pin!(conn);
        std::future::poll_fn(|cx| {
            // Registered before the poll: an eviction flagged after the connection looked at
            // the flag still wakes this task.
            self.evict.register(cx.waker());
            conn.as_mut().poll(cx).map(drop)
        })
        .await
    }
}

pub struct BusyGuard(Arc<Slot>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.set_phase(IDLE);
    }
}

/// A connection's permit in its pool and its slot; both go when the connection closes.
pub struct Seat {
    pub slot: Arc<Slot>,
    closing: Arc<AtomicUsize>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Seat {
    fn drop(&mut self) {
        let before = self.slot.state.fetch_or(CLOSED, Ordering::AcqRel);
        if before & EVICTED != 0 {
            self.closing.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// What a pool does with a new connection.
pub enum Admission {
    Now(Seat),
    /// An idle or silent connection was evicted; its permit comes with `Pool::wait`.
    AfterEviction,
    /// Every connection is busy.
    Full,
}

/// A fixed number of connections, with eviction of the oldest non-busy one when full.
pub struct Pool {
    size: usize,
    permits: Arc<Semaphore>,
    /// Open connections in the order they were admitted (closed ones pruned as we go). A plain
    /// mutex: held only to push or to scan, never across an `.await`.
    slots: Mutex<Vec<Arc<Slot>>>,
    /// Evicted connections that have not closed yet, and connections admitted after an
    /// eviction, waiting for a permit.
    closing: Arc<AtomicUsize>,
    waiting: AtomicUsize,
    evictions: AtomicU64,
}

impl Pool {
    pub fn new(size: usize) -> Pool {
        Pool {
            size,
            permits: Arc::new(Semaphore::new(size)),
            slots: Mutex::new(Vec::with_capacity(size)),
            closing: Arc::new(AtomicUsize::new(0)),
            waiting: AtomicUsize::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// Connections holding a permit now.
    pub fn open(&self) -> usize {
        self.size - self.permits.available_permits()
    }

    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    pub fn admit(&self) -> Admission {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Admission::Now(self.seat(permit));
        }
        if self.evict_one() {
            self.waiting.fetch_add(1, Ordering::AcqRel);
            Admission::AfterEviction
        } else {
            Admission::Full
        }
    }

    /// The next free permit, for a connection admitted after an eviction. Permits go to
    /// waiters in order; `None` if none is freed within `limit` (the evicted connection turned
    /// out to be busy and is still serving).
    pub async fn wait(&self, limit: Duration) -> Option<Seat> {
        let permit = tokio::time::timeout(limit, self.permits.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match permit {
            Ok(Ok(permit)) => Some(self.seat(permit)),
            _ => None,
        }
    }

    fn seat(&self, permit: OwnedSemaphorePermit) -> Seat {
        let slot = Arc::new(Slot::new());
        let mut slots = self.lock();
        // Closed connections are pruned when they outnumber open ones, so this stays
        // O(size) in memory and O(1) amortized per connection.
        if slots.len() >= 2 * self.size + 16 {
            slots.retain(|s| !s.closed());
        }
        slots.push(slot.clone());
        Seat {
            slot,
            closing: self.closing.clone(),
            _permit: permit,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Slot>>> {
        // A panic while holding this lock leaves a valid Vec behind.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Flags the oldest connection of the lowest phase (silent, then sending its head, then
    /// idle, then not yet polled) for closing. False if every connection is busy or already
    /// flagged.
    ///
    /// Under a flood, evicted connections may not have closed yet when the next connection
    /// arrives: while there are more of them than connections waiting for their permits, the
    /// new one joins the wait instead of evicting another.
    fn evict_one(&self) -> bool {
        if self.waiting.load(Ordering::Acquire) < self.closing.load(Ordering::Acquire) {
            return true;
        }
        let mut slots = self.lock();
        slots.retain(|s| !s.closed());
        // A candidate can turn busy between the scan and the flag: scan again then.
        for _ in 0..3 {
            let mut best: Option<(u8, &Arc<Slot>)> = None;
            for slot in slots.iter() {
                let s = slot.state.load(Ordering::Acquire);
                let phase = s & PHASE;
                if s & (EVICTED | CLOSED) != 0 || phase == BUSY {
                    continue;
                }
                if best.as_ref().map_or(true, |(p, _)| phase < *p) {
                    best = Some((phase, slot));
                    if phase == FRESH {
                        break;
                    }
                }
            }
            let Some((_, victim)) = best else {
                return false;
            };
            // Counted before the flag is set, so that the seat's drop, which uncounts it,
            // always comes after.
            self.closing.fetch_add(1, Ordering::AcqRel);
            if victim.try_evict() {
                self.evictions.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            self.closing.fetch_sub(1, Ordering::AcqRel);
        }
        false
    }
}

/// Counters of the connection layer, shown on `/metrics`.
#[derive(Default)]
pub struct Counters {
    /// Requests answered 429 because every connection was busy.
    pub refused: AtomicU64,
    /// Connections closed unanswered: no room even in the reserve.
    pub dropped: AtomicU64,
    pub accept_errors: AtomicU64,
}

/// Appends the connection metrics in Prometheus text format.
pub fn render_metrics(out: &mut String, main: &Pool, reserve: &Pool, counters: &Counters) {
    let tasks = tokio::runtime::Handle::try_current()
        .map(|h| h.metrics().num_alive_tasks())
        .unwrap_or(0);
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let _ = write!(
        out,
        "# HELP secrets_agent_connections_open Connections open, by pool.\n\
         # TYPE secrets_agent_connections_open gauge\n\
         secrets_agent_connections_open{{pool=\"main\"}} {}\n\
         secrets_agent_connections_open{{pool=\"reserve\"}} {}\n\
         # HELP secrets_agent_connections_evicted_total Idle or silent connections closed to admit a new one.\n\
         # TYPE secrets_agent_connections_evicted_total counter\n\
         secrets_agent_connections_evicted_total {}\n\
         # HELP secrets_agent_connections_refused_total Requests answered 429 because every connection was busy.\n\
         # TYPE secrets_agent_connections_refused_total counter\n\
         secrets_agent_connections_refused_total {}\n\
         # HELP secrets_agent_connections_dropped_total Connections closed unanswered for lack of room.\n\
         # TYPE secrets_agent_connections_dropped_total counter\n\
         secrets_agent_connections_dropped_total {}\n\
         # HELP secrets_agent_accept_errors_total Failed accepts (e.g. out of file descriptors).\n\
         # TYPE secrets_agent_accept_errors_total counter\n\
         secrets_agent_accept_errors_total {}\n\
         # HELP secrets_agent_tasks Tokio tasks alive.\n\
         # TYPE secrets_agent_tasks gauge\n\
         secrets_agent_tasks {}\n",
        main.open(),
        reserve.open(),
        main.evictions() + reserve.evictions(),
        get(&counters.refused),
        get(&counters.dropped),
        get(&counters.accept_errors),
        tasks,
    );
}

/// An I/O stream with the connection's timeouts applied, and eviction honoured.
pub struct Timed<S> {
    inner: S,
    slot: Arc<Slot>,
    timeouts: Timeouts,
    /// Whether any byte has arrived (until then the first-byte timeout runs).
    started: bool,
    /// A read returned bytes after the connection was evicted: the request that raced the
    /// eviction is being served, and nothing more is read.
    read_while_evicted: bool,
    /// Where the current request head is.
    head: Head,
    /// When the connection was admitted, then when the last response went out.
    last_activity: Instant,
    sleep: Pin<Box<Sleep>>,
    /// Armed while a write is blocked; reset by any progress.
    write_sleep: Option<Pin<Box<Sleep>>>,
}

impl<S> Timed<S> {
    pub fn new(inner: S, slot: Arc<Slot>, timeouts: Timeouts) -> Self {
        let now = Instant::now();
        Timed {
            inner,
            slot,
            timeouts,
            started: false,
            read_while_evicted: false,
            head: Head::None,
            last_activity: now,
            sleep: Box::pin(tokio::time::sleep_until(now + timeouts.first_byte)),
            write_sleep: None,
        }
    }
}

/// The request head being read, if any.
#[derive(Clone, Copy)]
enum Head {
    None,
    /// Its first bytes have arrived; the rest may already be here too, so the clock is read
    /// only if the connection has to wait for more (most heads arrive in one read).
    Started,
    /// Waiting for the rest, which must arrive by then.
    Until(Instant),
}

enum Expiry {
    FirstByte,
    Head,
    Idle,
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let state = this.slot.state.load(Ordering::Acquire);
        let busy = state & PHASE == BUSY;
        let evicted = !busy && state & EVICTED != 0;
        if evicted && (state & PHASE == HEAD || this.read_while_evicted) {
            // End of stream: hyper drops a partial request and closes. A client pipelining
            // requests would otherwise keep an evicted connection serving for as long as it
            // sends, and the connection waiting for its seat would wait as long.
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            // An evicted connection that has nothing more to say ends here; one whose request
            // arrived as it was evicted gets it served first.
            Poll::Pending if evicted => Poll::Ready(Ok(())),
            Poll::Ready(Ok(())) if evicted && buf.filled().len() == before => Poll::Ready(Ok(())),
            Poll::Ready(r) => {
                let got = buf.filled().len() > before;
                this.started |= got;
                this.read_while_evicted |= evicted;
                if busy {
                    this.head = Head::None;
                } else if got && matches!(this.head, Head::None) {
                    // First bytes of a new request: its head must arrive in time.
                    this.head = Head::Started;
                    this.slot.set_phase(HEAD);
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if busy {
                    // Never time out a connection while its request is being served.
                    this.head = Head::None;
                    return Poll::Pending;
                }
                if state & PHASE == NEW {
                    this.slot.set_phase(FRESH);
                }
                if let Head::Started = this.head {
                    this.head = Head::Until(Instant::now() + this.timeouts.head);
                }
                let (deadline, on_expiry) = match this.head {
                    Head::Until(d) => (d, Expiry::Head),
                    _ if !this.started => (
                        this.last_activity + this.timeouts.first_byte,
                        Expiry::FirstByte,
                    ),
                    _ => (this.last_activity + this.timeouts.idle, Expiry::Idle),
                };
                // The timer is only ever moved earlier here. A later deadline (the idle one,
                // which moves with every request) is checked when the timer fires, so a busy
                // keep-alive connection does not re-arm its timer on each request.
                if this.sleep.deadline() > deadline {
                    this.sleep.as_mut().reset(deadline);
                }
                loop {
                    match this.sleep.as_mut().poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(()) if Instant::now() < deadline => {
                            this.sleep.as_mut().reset(deadline);
                        }
                        Poll::Ready(()) => {
                            return match on_expiry {
                                Expiry::Head => Poll::Ready(Err(io::Error::new(
                                    io::ErrorKind::TimedOut,
                                    "request head not received in time",
                                ))),
                                // End of stream: hyper closes a silent or idle connection
                                // quietly.
                                Expiry::FirstByte | Expiry::Idle => Poll::Ready(Ok(())),
                            };
                        }
                    }
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> Timed<S> {
    /// One write (`write` does it on the inner stream), under the write timeout. An evicted
    /// connection that is not serving a request and cannot write at once is closed: its client
    /// is not reading, and waiting for it would hold the seat a new connection needs.
    fn timed_write(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match write(Pin::new(&mut self.inner), cx) {
            Poll::Ready(r) => {
                // A response went out: the next bytes start a new head.
                self.write_sleep = None;
                self.head = Head::None;
                self.last_activity = Instant::now();
                Poll::Ready(r)
            }
            Poll::Pending if !self.slot.busy() && self.slot.evicted() => {
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "evicted while the client was not reading",
                )))
            }
            Poll::Pending => {
                let limit = self.timeouts.write;
                let sleep = self
                    .write_sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match sleep.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client stopped reading the response",
                    ))),
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Timed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .timed_write(cx, |inner, cx| inner.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .timed_write(cx, |inner, cx| inner.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const T: Timeouts = Timeouts {
        first_byte: Duration::from_secs(2),
        head: Duration::from_secs(5),
        idle: Duration::from_secs(120),
        write: Duration::from_secs(10),
    };

    fn timed(
        peer_buffer: usize,
    ) -> (
        Timed<tokio::io::DuplexStream>,
        tokio::io::DuplexStream,
        Arc<Slot>,
    ) {
        let (ours, theirs) = tokio::io::duplex(peer_buffer);
        let slot = Arc::new(Slot::new());
        (Timed::new(ours, slot.clone(), T), theirs, slot)
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_ends_after_the_first_byte_timeout() {
        let (mut conn, _peer, _) = timed(64);
        let started = Instant::now();
        let mut buf = [0u8; 8];
        assert_eq!(conn.read(&mut buf).await.unwrap(), 0, "end of stream");
        assert_eq!(started.elapsed(), T.first_byte);
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_head_gets_the_head_timeout_and_idleness_the_idle_timeout() {
        let (mut conn, mut peer, slot) = timed(64);
        let mut buf = [0u8; 64];
        peer.write_all(b"GET /pi").await.unwrap();
        assert_eq!(conn.read(&mut buf).await.unwrap(), 7);
        assert_eq!(slot.phase(), HEAD);
        let started = Instant::now();
        let err = conn.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), T.head);

        // A served request, then keep-alive: the idle timeout, not the first-byte one.
        let (mut conn, mut peer, slot) = timed(64);
        peer.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let _ = conn.read(&mut buf).await.unwrap();
        drop(slot.enter());
        conn.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        assert_eq!(slot.phase(), IDLE);
        let started = Instant::now();
        assert_eq!(conn.read(&mut buf).await.unwrap(), 0);
        assert_eq!(started.elapsed(), T.idle);
    }

    /// The read timer is re-armed lazily (only moved earlier, checked when it fires): the idle
    /// timeout still counts from the last response, and a head timeout still comes first.
    #[tokio::test(start_paused = true)]
    async fn timeouts_hold_across_many_keep_alive_requests() {
        async fn served(
            conn: &mut Timed<tokio::io::DuplexStream>,
            peer: &mut tokio::io::DuplexStream,
            slot: &Arc<Slot>,
        ) {
            let mut buf = [0u8; 64];
            peer.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
            assert!(conn.read(&mut buf).await.unwrap() > 0);
            drop(slot.enter());
            conn.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        }
        let mut buf = [0u8; 64];
        for then in ["idle", "head"] {
            let (mut conn, mut peer, slot) = timed(256);
            // A request every 100 s for 500 s: never idle for the 120 s idle timeout.
            for _ in 0..5 {
                served(&mut conn, &mut peer, &slot).await;
                let wait = tokio::time::timeout(Duration::from_secs(100), conn.read(&mut buf));
                assert!(wait.await.is_err(), "still open");
            }
            if then == "idle" {
                served(&mut conn, &mut peer, &slot).await;
                let started = Instant::now();
                assert_eq!(conn.read(&mut buf).await.unwrap(), 0);
                assert_eq!(started.elapsed(), T.idle);
            } else {
                peer.write_all(b"GET /pi").await.unwrap();
                assert_eq!(conn.read(&mut buf).await.unwrap(), 7);
                let started = Instant::now();
                let err = conn.read(&mut buf).await.unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::TimedOut);
                assert_eq!(started.elapsed(), T.head);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_read_timer_runs_while_busy() {
        let (mut conn, mut peer, slot) = timed(64);
        let guard = slot.enter();
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(T.idle * 3, conn.read(&mut buf)).await;
        assert!(read.is_err(), "still open while busy");
        drop(guard);
        peer.write_all(b"x").await.unwrap();
        assert_eq!(conn.read(&mut buf).await.unwrap(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_blocked_write_times_out() {
        let (mut conn, peer, _) = timed(16);
        let started = Instant::now();
        let err = conn.write_all(&[b'x'; 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), T.write);
        drop(peer);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_reading_is_not_cut_off() {
        let (mut conn, mut peer, _) = timed(16);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let mut total = 0;
            while total < 1024 {
                tokio::time::sleep(T.write / 2).await;
                total += peer.read(&mut buf).await.unwrap();
            }
            total
        });
        conn.write_all(&[b'x'; 1024]).await.unwrap();
        assert_eq!(reader.await.unwrap(), 1024);
    }

    #[tokio::test]
    async fn eviction_takes_silent_before_head_before_idle_and_never_busy() {
        let pool = Pool::new(4);
        let seats: Vec<Seat> = (0..4)
            .map(|_| match pool.admit() {
                Admission::Now(s) => s,
                _ => panic!("room for 4"),
            })
            .collect();
        let _busy = seats[0].slot.enter();
        seats[1].slot.set_phase(IDLE);
        seats[2].slot.set_phase(HEAD);
        seats[3].slot.set_phase(HEAD);
        assert!(matches!(pool.admit(), Admission::AfterEviction));
        assert!(seats[2].slot.evicted(), "the oldest in its head");
        assert!(matches!(pool.admit(), Admission::AfterEviction));
        assert!(seats[3].slot.evicted());
        assert!(matches!(pool.admit(), Admission::AfterEviction));
        assert!(seats[1].slot.evicted(), "then the idle one");
        assert!(
            matches!(pool.admit(), Admission::Full),
            "never the busy one"
        );
        assert!(!seats[0].slot.evicted());
        assert_eq!(pool.open(), 4);
        assert_eq!(pool.evictions(), 3);

        // The evicted connections close; waiters get their permits, never more than 4.
        drop(seats);
        for _ in 0..3 {
            assert!(pool.wait(Duration::from_secs(1)).await.is_some());
        }
        assert_eq!(pool.open(), 0, "seats returned as they were dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn an_evicted_connection_ends_at_its_next_read_unless_busy() {
        let (mut conn, _peer, slot) = timed(64);
        let guard = slot.enter();
        assert!(!slot.try_evict(), "busy: not evicted");
        drop(guard);
        assert!(slot.try_evict());
        let mut buf = [0u8; 8];
        assert_eq!(conn.read(&mut buf).await.unwrap(), 0);

        // A request that had already arrived when its connection was evicted is read.
        let (mut conn, mut peer, slot) = timed(64);
        peer.write_all(b"GET /").await.unwrap();
        assert!(slot.try_evict());
        assert_eq!(conn.read(&mut buf).await.unwrap(), 5);
        // ... but a head still incomplete is not waited for.
        assert_eq!(conn.read(&mut buf).await.unwrap(), 0);
    }
}
