//! What a listener allows a client: a cap on open connections, and connections that make no
//! progress are closed. Slow or idle clients cannot hold the server's sockets and memory.
//!
//! - At most `max_connections` connections are open; one more is closed as soon as it arrives.
//! - A connection on which nothing is read or written for `idle_timeout` while no request is
//!   being answered is closed (an idle keep-alive connection, a TLS handshake never finished,
//!   an HTTP/2 connection with no streams).
//! - Request headers must arrive within `header_read_timeout` (hyper's HTTP/1 timer; it also
//!   runs while a keep-alive connection waits for its next request). Bodies have their own
//!   bound in the API (`--body-read-timeout`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// The bounds of every listener of the platform.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub header_read_timeout: Duration,
}

impl Limits {
    /// Configures the HTTP server of a listener with these limits.
    pub fn configure<A, Acc>(&self, server: &mut axum_server::Server<A, Acc>)
    where
        A: axum_server::Address,
    {
        let builder = server.http_builder();
        builder
            .http1()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        builder
            .http2()
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Some(self.idle_timeout))
            .keep_alive_timeout(self.header_read_timeout);
    }
}

/// An acceptor that enforces [`Limits`] on every connection, below TLS when there is TLS.
#[derive(Clone)]
pub struct Guard {
    limits: Limits,
    slots: Arc<Semaphore>,
    /// Connections refused since the last warning (warned about at most every few seconds, so
    /// that a flood does not flood the log too).
    refused: Arc<Mutex<(u64, Option<Instant>)>>,
}

impl Guard {
    pub fn new(limits: Limits) -> Guard {
        Guard {
            limits,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            refused: Arc::new(Mutex::new((0, None))),
        }
    }

    fn refused_one(&self) {
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        refused.0 += 1;
        if refused.1.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            tracing::warn!(
                limit = self.limits.max_connections,
                refused = refused.0,
                "connections refused: too many open connections (--max-connections)"
            );
            *refused = (0, Some(Instant::now()));
        }
    }
}

/// How often refused connections are reported.
const WARN_EVERY: Duration = Duration::from_secs(10);

impl<I, S> Accept<I, S> for Guard
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Send + 'static,
{
    type Stream = GuardedIo<I>;
    type Service = Counted<S>;
    type Future = std::future::Ready<io::Result<(GuardedIo<I>, Counted<S>)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            self.refused_one();
            // Dropping the stream closes the connection at once.
            return std::future::ready(Err(io::Error::other("too many open connections")));
        };
        let in_flight = Arc::new(AtomicUsize::new(0));
        let idle = self.limits.idle_timeout;
        let io = GuardedIo {
            inner: stream,
            _permit: permit,
            in_flight: in_flight.clone(),
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        };
        std::future::ready(Ok((io, Counted { inner: service, in_flight })))
    }
}

/// A connection's stream: holds its slot, and fails once idle past the timeout.
pub struct GuardedIo<I> {
    inner: I,
    _permit: OwnedSemaphorePermit,
    /// Requests of this connection being answered.
    in_flight: Arc<AtomicUsize>,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<I> GuardedIo<I> {
    fn progressed(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.idle);
    }

    /// Whether the connection has been idle too long (with no request being answered).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.deadline.as_mut().poll(cx).is_pending() {
            return false;
        }
        if self.in_flight.load(Ordering::Acquire) > 0 {
            // A request is being worked on: silence is not idleness.
            self.progressed();
            let _ = self.deadline.as_mut().poll(cx);
            return false;
        }
        true
    }
}

fn idle_error() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the connection was idle too long")
}

impl<I: AsyncRead + Unpin> AsyncRead for GuardedIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.progressed();
                }
                Poll::Ready(result)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for GuardedIo<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.progressed();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(idle_error())),
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A connection's service: counts the requests being answered, so that a slow answer does not
/// look like an idle connection.
#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    in_flight: Arc<AtomicUsize>,
}

impl<S, R> tower::Service<R> for Counted<S>
where
    S: tower::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let counter = InFlight::new(self.in_flight.clone());
        let answer = self.inner.call(request);
        Box::pin(async move {
            let result = answer.await;
            drop(counter);
            result
        })
    }
}

/// One request being answered, until dropped.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Ordering::AcqRel);
        InFlight(count)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The default cap on open connections: three quarters of the file descriptors this process
/// may open, so that replicas' logs, the database and outgoing connections keep the rest.
pub fn default_max_connections() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(1024);
    usize::try_from(soft / 4 * 3).unwrap_or(usize::MAX).clamp(64, 100_000)
}
