//! `serve`'s accept loop: each connection served by hyper's HTTP/1 under the connection
//! limits of docs/serve.md (Limits), and shutdown with a deadline.
//!
//! - **Connection cap** (`max_connections`): the loop takes a slot before it accepts, so past
//!   the cap new connections wait in the kernel's accept queue until one closes. The cap alone
//!   cannot save a legitimate client from a flood of idle connections; the timeouts do, by
//!   closing them.
//! - **Header-read timeout** (`header_read_timeout_s`, hyper's): a request's whole head must
//!   arrive within it, counted from the connection's start (after the TLS handshake, itself
//!   under `handshake_timeout_s`) or from the end of the previous answer. It bounds the first
//!   request after the handshake, the wait between keep-alive requests and a head sent slowly.
//! - **Idle timeout** (`idle_timeout_s`): a connection on which nothing moved for that long
//!   while the verifier waited on the client (before its first request, between requests, or
//!   while it does not read an answer) is closed. A request being handled is never idle; its
//!   own bound is `request_timeout_s`.
//! - **Shutdown** (`shutdown_grace_s`): the listener closes, every connection is told to finish
//!   (hyper closes idle ones at once and lets a request in flight complete), and whatever is
//!   still open when the grace ends is dropped.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::config::Limits;
use super::tls::PeerCertificates;

/// What a connection tells each of its requests about its peer besides the address: the
/// certificate chain a TLS client presented, for authentication ([`super::auth`]).
pub(super) trait PeerIdentity {
    /// The client's certificate chain; `None` on a plain TCP connection.
    fn peer_certificates(&self) -> Option<PeerCertificates>;
}

impl PeerIdentity for tokio::net::TcpStream {
    fn peer_certificates(&self) -> Option<PeerCertificates> {
        None
    }
}

impl PeerIdentity for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    fn peer_certificates(&self) -> Option<PeerCertificates> {
        Some(PeerCertificates::of(self))
    }
}

/// How the accept loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stopped {
    /// Connections open when shutdown began.
    pub(super) open: usize,
    /// Of those, the ones still open at the end of `shutdown_grace_s`, dropped.
    pub(super) dropped: usize,
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops within
/// `limits.shutdown_grace`.
pub(super) async fn serve<L>(
    mut listener: L,
    app: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()>,
) -> Stopped
where
    L: Listener<Addr = SocketAddr>,
    L::Io: AsyncRead + AsyncWrite + PeerIdentity + Unpin + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let http = Arc::new(http);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            (io, peer, slot) = accept(&mut listener, &slots) => {
                let conn = Connection {
                    peer,
                    slot,
                    app: app.clone(),
                    http: Arc::clone(&http),
                    idle: limits.idle_timeout,
                    stop: stop_rx.clone(),
                };
                connections.spawn(conn.run(io));
            }
        }
    }
    // No new connections; the open ones finish what is in flight, within the grace.
    drop(listener);
    let _ = stop_tx.send(true);
    let open = connections.len();
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    let dropped = if drained.is_err() {
        connections.len()
    } else {
        0
    };
    connections.abort_all();
    Stopped { open, dropped }
}

/// Waits for a connection slot, then for a connection.
async fn accept<L: Listener>(
    listener: &mut L,
    slots: &Arc<Semaphore>,
) -> (L::Io, L::Addr, OwnedSemaphorePermit) {
    let Ok(slot) = Arc::clone(slots).acquire_owned().await else {
        // The semaphore is never closed; were it, accepting no more is the safe outcome.
        return std::future::pending().await;
    };
    let (io, peer) = listener.accept().await;
    (io, peer, slot)
}

/// One accepted connection and what serving it needs.
struct Connection {
    peer: SocketAddr,
    /// Held while the connection is open.
    slot: OwnedSemaphorePermit,
    app: Router,
    http: Arc<http1::Builder>,
    idle: Duration,
    stop: watch::Receiver<bool>,
}

impl Connection {
    /// Serves the connection until it closes, stays idle too long, or shutdown finishes it.
    async fn run<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + PeerIdentity + Unpin + Send + 'static,
    {
        let Self {
            peer,
            slot,
            app,
            http,
            idle,
            mut stop,
        } = self;
        let certificates = io.peer_certificates();
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            io,
            activity: Arc::clone(&activity),
        });
        let service =
            hyper::service::service_fn(move |mut request: axum::http::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                if let Some(certificates) = &certificates {
                    request
                        .extensions_mut()
                        .insert(ConnectInfo(certificates.clone()));
                }
                let mut router = app.clone();
                tower_service::Service::call(&mut router, request)
            });
        let conn = http.serve_connection(io, service);
        let mut conn = std::pin::pin!(conn);
        let mut stopping = false;
        loop {
            tokio::select! {
                ended = conn.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(%peer, error = %e, "connection ended");
                    }
                    break;
                }
                () = activity.idle_for(idle) => {
                    tracing::debug!(%peer, idle_s = idle.as_secs(), "idle connection closed");
                    break;
                }
                _ = stop.changed(), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
        drop(slot);
    }
}

/// When bytes last moved on a connection, and which way.
struct Activity {
    start: Instant,
    /// Milliseconds since `start` of the last read or write, times two, plus one for a write.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            // As if the verifier had just written: it waits on the client from the start.
            last: AtomicU64::new(1),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn moved(&self, wrote: bool) {
        let mark = self.now_ms().saturating_mul(2) | u64::from(wrote);
        self.last.store(mark, Ordering::Relaxed);
    }

    /// Resolves once the connection has waited on its client for `idle`: the last bytes that
    /// moved were the verifier's, that long ago. While the client's bytes came last (a
    /// request is being handled), it never resolves.
    async fn idle_for(&self, idle: Duration) {
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        loop {
            let last = self.last.load(Ordering::Relaxed);
            let wait_ms = if last & 1 == 1 {
                let since = last / 2;
                let now = self.now_ms();
                let until = since.saturating_add(idle_ms);
                if now >= until {
                    return;
                }
                until - now
            } else {
                idle_ms
            };
            tokio::time::sleep(Duration::from_millis(wait_ms.max(1))).await;
        }
    }
}

/// An IO that records its [`Activity`].
struct Watched<I> {
    io: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.moved(false);
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.moved(true);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.moved(true);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn limits(header_s: u64, idle_s: u64, grace_s: u64, max_connections: usize) -> Limits {
        Limits {
            max_connections,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(header_s),
            idle_timeout: Duration::from_secs(idle_s),
            max_in_flight: 16,
            max_concurrent_verifications: 1,
            shutdown_grace: Duration::from_secs(grace_s),
            challenge_rate_per_minute: 10,
            max_outstanding_challenges: 10,
        }
    }

    async fn slow() -> &'static str {
        tokio::time::sleep(Duration::from_secs(3)).await;
        "done"
    }

    async fn started(
        limits: Limits,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<Stopped>,
    ) {
        let app = Router::new()
            .route("/", axum::routing::get(|| async { "hello" }))
            .route("/slow", axum::routing::get(slow));
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            serve(tcp, app, &limits, async {
                let _ = rx.await;
            })
            .await
        });
        (addr, tx, server)
    }

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        answer
    }

    /// Resolves once the server closed `s` (EOF or reset).
    async fn closed(s: &mut tokio::net::TcpStream) {
        let mut buf = [0u8; 64];
        while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
    }

    #[tokio::test(start_paused = true)]
    async fn idle_and_half_sent_connections_are_closed_and_the_cap_frees() {
        let (addr, _stop, _server) = started(limits(4, 2, 5, 2)).await;
        // Two slots: one idle connection, one that sent half a head.
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
        half.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        let t0 = tokio::time::Instant::now();
        // A legitimate request waits for a slot, and gets one when the timeouts free them.
        let answer = get(addr, "/").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("hello"), "{answer}");
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_secs(2) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        tokio::time::timeout(Duration::from_secs(1), closed(&mut idle))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), closed(&mut half))
            .await
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_lets_a_request_finish_and_drops_the_rest_at_the_deadline() {
        let (addr, stop, server) = started(limits(60, 60, 5, 16)).await;
        let in_flight = tokio::spawn(get(addr, "/slow"));
        let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
        half.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t0 = tokio::time::Instant::now();
        stop.send(()).unwrap();
        let stopped = server.await.unwrap();
        assert!(t0.elapsed() <= Duration::from_secs(5), "{:?}", t0.elapsed());
        assert_eq!(stopped.open, 2, "{stopped:?}");
        let answer = in_flight.await.unwrap();
        assert!(
            answer.ends_with("done"),
            "the request in flight finished: {answer}"
        );
        closed(&mut half).await;
        // Nothing listens any more.
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
