//! The HTTP port's own accept loop: a bound on open connections, a deadline for each request's
//! head and another for its body, and an idle deadline, none of which `axum::serve` sets (it gives hyper no timer, so
//! hyper's header-read timeout never runs, and it accepts without bound). The port is often
//! reachable from the internet, and it lives in the worker's own process: a few hundred
//! connections that trickle header bytes must not hold its file descriptors and memory.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::HttpSettings;

/// What one connection may take of the process.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A request's line and headers must arrive whole within this, counted from the moment
    /// the server starts reading them: the connection's opening, or the end of the previous
    /// response on a kept-alive one (so an idle kept-alive connection ends after this too);
    /// and its body within as long again ([`read_body`]).
    pub header_read_timeout: Duration,
    /// A connection on which no byte moves either way for this long is closed: a body that
    /// stops arriving, a client that stops reading its response.
    pub idle_timeout: Duration,
    /// Connections open at once. Past it the loop stops accepting: new ones wait in the
    /// kernel's backlog until one closes, which the header deadline makes happen soon.
    pub max_connections: usize,
}

impl Limits {
    pub fn from_settings(http: &HttpSettings) -> Limits {
        Limits {
            header_read_timeout: Duration::from_millis(http.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(http.idle_timeout_ms),
            max_connections: http.max_connections,
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown`; then stops accepting, lets each
/// open connection finish its request in flight, and returns once all are closed. Requests
/// carry the peer's address as [`ConnectInfo`] (the console's trusted-proxy check reads it).
pub async fn serve_on(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    // Said once each time the limit is reached, not once per waiting connection.
    let mut full = false;
    loop {
        if permits.available_permits() == 0 && !full {
            warn!(
                max_connections = limits.max_connections,
                "HTTP connection limit reached; new connections wait (http.max_connections)"
            );
        }
        full = permits.available_permits() == 0;
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, a connection reset before it was accepted: the
                    // listener itself is fine; a pause keeps an EMFILE from spinning.
                    debug!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let activity = Activity::new();
        let io = TokioIo::new(Tracked {
            inner: stream,
            activity: Arc::clone(&activity),
        });
        let router = app.clone();
        let body_deadline = limits.header_read_timeout;
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let mut router = router.clone();
            async move {
                match read_body(req, body_deadline).await {
                    Ok(req) => tower_service::Service::call(&mut router, req).await,
                    Err(refused) => Ok(refused),
                }
            }
        });
        let conn = graceful.watch(builder.serve_connection(io, service));
        let idle = limits.idle_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                served = conn => {
                    if let Err(e) = served {
                        debug!(%peer, error = %e, "HTTP connection ended");
                    }
                }
                _ = activity.idle_for(idle) => {
                    debug!(%peer, "HTTP connection closed: idle");
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The most a request's body may hold on this port: the webhook's and the console's forms
/// take at most 64 KiB each (their own limits say so per route).
pub const MAX_REQUEST_BODY: usize = 64 * 1024;

/// Reads a request's whole body before any handler sees it, within `deadline` from the end of
/// its head and at most [`MAX_REQUEST_BODY`]: a body sent a byte at a time would otherwise hold
/// its connection (and a slot of `max_connections`) for as long as the idle timeout keeps
/// being pushed back, and a few hundred such clients would stop every request on the port.
/// Too slow: 408 and the connection closes; too large: 413.
async fn read_body(
    req: hyper::Request<Incoming>,
    deadline: Duration,
) -> Result<axum::extract::Request, axum::response::Response> {
    use axum::response::IntoResponse;
    let (parts, body) = req.into_parts();
    let body = axum::body::Body::new(body);
    match tokio::time::timeout(deadline, axum::body::to_bytes(body, MAX_REQUEST_BODY)).await {
        Ok(Ok(bytes)) => Ok(axum::extract::Request::from_parts(
            parts,
            axum::body::Body::from(bytes),
        )),
        Ok(Err(_)) => Err((
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            [(axum::http::header::CONNECTION, "close")],
            "request body too large\n",
        )
            .into_response()),
        Err(_) => {
            debug!(uri = %parts.uri.path(), "HTTP request body not received in time");
            Err((
                axum::http::StatusCode::REQUEST_TIMEOUT,
                [(axum::http::header::CONNECTION, "close")],
                "request body not received in time\n",
            )
                .into_response())
        }
    }
}

/// When a connection last moved a byte, in milliseconds since it opened.
struct Activity {
    opened: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Returns once nothing has moved for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let since = self.opened.elapsed().saturating_sub(last);
            if since >= limit {
                return;
            }
            tokio::time::sleep(limit - since).await;
        }
    }
}

/// A TCP stream that notes every byte it moves.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = polled {
            if n > 0 {
                self.activity.touch();
            }
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            if n > 0 {
                self.activity.touch();
            }
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
