//! The accept loop: what `axum::serve` does, plus the deadlines and caps it
//! cannot set.
//!
//! - Every connection is closed once it has had no request in flight for the
//!   idle deadline (`--header-timeout-secs`), counted from accept and from the
//!   end of each response. That one clock covers the slow or silent client in
//!   every form: nothing sent at all, part of a request head (slowloris), only
//!   the HTTP/2 preface, an HTTP/1 keep-alive or HTTP/2 connection left idle.
//!   hyper's own header timeout cannot: it starts only once hyper has told
//!   HTTP/1 from HTTP/2, which takes the client's first bytes, and HTTP/2 has
//!   none. A request in flight (an Engine.IO long poll lasts up to a ping
//!   interval) is never cut; a WebSocket belongs to Engine.IO, whose connect
//!   and ping timeouts close it.
//! - A peer that stops reading what we send is cut off after the write
//!   timeout (`TCP_USER_TIMEOUT`).
//! - Connections are capped per client address and per node
//!   ([`super::admission`]).
//!
//! So a stalled or hostile socket can hold neither its connection nor a
//! server task for long, nor crowd out the others.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::ConnectInfo;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tower::Service as _;

use super::admission::{Admission, Conn, InFlight};

/// Per-connection deadlines.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// How long a connection may go without a request in flight: from accept
    /// to its first complete request head, and from the end of each response
    /// to the next request head.
    pub idle: Duration,
    /// How long sent data may stay unacknowledged, or unsent for lack of room
    /// in the peer's window, before the connection is aborted.
    pub write: Duration,
}

/// How long the accept loop waits for evicted connections to close before it
/// accepts again. They close at once unless a request slipped in before the
/// eviction reached them, which is then finished first: the loop does not
/// wait for that.
const SETTLE: Duration = Duration::from_millis(100);

/// After an accept failed for want of resources (file descriptors, memory):
/// long enough not to spin, short enough that the queue is served again as
/// soon as a connection closes.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Serves `app` until `shutdown` resolves, then stops accepting and waits for
/// the open requests to finish. Handlers can extract the peer as
/// `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    deadlines: Deadlines,
    admission: Arc<Admission>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    // As axum::serve: WebSockets over HTTP/2 need the CONNECT protocol.
    builder.http2().enable_connect_protocol();
    // Every connection's task holds a receiver: all dropped means all done.
    let (stopping, stop) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let _ = tokio::time::timeout(SETTLE, admission.settled()).await;
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e, &admission).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let conn = match admission.admit(peer.ip()) {
            Ok(conn) => conn,
            Err(cap) => {
                // Accepted only to be closed: refused, not left in the backlog.
                tracing::debug!(%peer, ?cap, "connection refused: every connection under the cap is busy");
                continue;
            }
        };
        if let Err(e) = socket2::SockRef::from(&stream).set_tcp_user_timeout(Some(deadlines.write))
        {
            tracing::warn!(error = %e, "cannot set the write timeout of a connection");
        }
        let service = {
            let app = app.clone();
            let conn = conn.clone();
            hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let in_flight = conn.request_started();
                let connect = request.method() == Method::CONNECT;
                let response = app.clone().call(request);
                async move {
                    let response = response.await?;
                    // hyper's two kinds of upgrade: HTTP/1's 101, HTTP/2's CONNECT.
                    let status = response.status();
                    let response = if status == StatusCode::SWITCHING_PROTOCOLS
                        || (connect && status.is_success())
                    {
                        in_flight.upgraded();
                        response
                    } else {
                        response.map(|body| {
                            Body::new(InFlightBody {
                                body,
                                _in_flight: in_flight,
                            })
                        })
                    };
                    Ok::<_, Infallible>(response)
                }
            })
        };
        let io = TokioIo::new(Held {
            stream,
            _conn: conn.clone(),
        });
        let connection = builder
            .serve_connection_with_upgrades(io, service)
            .into_owned();
        tokio::spawn(drive(
            connection,
            |connection| connection.graceful_shutdown(),
            conn,
            deadlines.idle,
            stop.clone(),
            peer,
        ));
    }
    drop(listener);
    drop(stop);
    let _ = stopping.send(());
    stopping.closed().await;
    Ok(())
}

/// Runs one connection to its end, or closes it: when it has been idle for
/// `idle` (see [`Deadlines::idle`]), when a newcomer evicted it, or when the
/// server stops. A connection with requests in flight is shut down
/// gracefully: they finish first.
///
/// One timer per connection, re-armed lazily: while the connection is busy
/// it wakes once per `idle` to look again, which costs less than resetting it
/// at every request.
async fn drive<C, E>(
    connection: C,
    graceful_shutdown: impl Fn(Pin<&mut C>),
    conn: Arc<Conn>,
    idle: Duration,
    mut stop: watch::Receiver<()>,
    peer: SocketAddr,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut connection = pin!(connection);
    let deadline = tokio::time::sleep(idle);
    let mut deadline = pin!(deadline);
    let mut draining = false;
    let ended = loop {
        tokio::select! {
            ended = connection.as_mut() => break ended,
            _ = stop.changed(), if !draining => {}
            () = conn.evicted(), if !draining => {}
            () = deadline.as_mut() => {
                let now = Instant::now();
                match conn.idle_since() {
                    Some(since) if since + idle <= now => {}
                    Some(since) => {
                        deadline.as_mut().reset(since + idle);
                        continue;
                    }
                    None => {
                        deadline.as_mut().reset(now + idle);
                        continue;
                    }
                }
            }
        }
        graceful_shutdown(connection.as_mut());
        if conn.idle_since().is_some() {
            // Nothing to finish. One more poll writes what the shutdown has
            // to say (HTTP/2's GOAWAY); waiting for the client to answer it
            // would let the client keep the connection.
            match futures_util::poll!(connection.as_mut()) {
                Poll::Ready(ended) => break ended,
                Poll::Pending => {
                    tracing::trace!(%peer, "idle connection closed");
                    return;
                }
            }
        }
        // Requests in flight finish first; if the client then lingers, the
        // idle deadline closes the connection.
        draining = true;
    };
    if let Err(e) = ended {
        tracing::trace!(error = %e, %peer, "connection ended with an error");
    }
}

/// The socket, holding its connection's place in the [`Admission`] table
/// for as long as it is open — after an upgrade too, when hyper has handed it
/// to the WebSocket.
struct Held {
    stream: TcpStream,
    _conn: Arc<Conn>,
}

impl AsyncRead for Held {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Held {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A response body that keeps its request counted in flight until hyper has
/// sent it in full (or given up on it) and dropped it.
struct InFlightBody {
    body: Body,
    _in_flight: InFlight,
}

impl HttpBody for InFlightBody {
    type Data = <Body as HttpBody>::Data;
    type Error = <Body as HttpBody>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// As axum::serve: a connection that died while queued is skipped. Anything
/// else is a lack of resources (such as file descriptors, despite the
/// reserve): the node's oldest idle connection is closed to make some, and
/// accepting resumes after a short pause, while the open connections go on.
async fn accept_failed(e: io::Error, admission: &Admission) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    let evicted = admission.evict_oldest_idle();
    tracing::error!(error = %e, evicted_an_idle_connection = evicted, "accept failed");
    tokio::time::sleep(ACCEPT_RETRY).await;
}
