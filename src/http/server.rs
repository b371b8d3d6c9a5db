//! The accept loop: what `axum::serve` does, plus the deadlines it cannot set.
//! A client must finish its request headers within the header timeout
//! (slowloris), and a peer that stops reading what we send is cut off after
//! the write timeout (`TCP_USER_TIMEOUT`), so a stalled socket cannot hold
//! its connection, or a server task, forever.

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::Service as _;

/// Per-connection deadlines.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// From the first byte of a request (or the start of an idle keep-alive
    /// connection) to the end of its headers.
    pub header_read: Duration,
    /// How long sent data may stay unacknowledged, or unsent for lack of room
    /// in the peer's window, before the connection is aborted.
    pub write: Duration,
}

/// Serves `app` until `shutdown` resolves, then stops accepting and waits for
/// the open requests to finish. Handlers can extract the peer as
/// `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    deadlines: Deadlines,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(deadlines.header_read);
    // As axum::serve: WebSockets over HTTP/2 need the CONNECT protocol.
    builder.http2().enable_connect_protocol();
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(e) = socket2::SockRef::from(&stream).set_tcp_user_timeout(Some(deadlines.write))
        {
            tracing::warn!(error = %e, "cannot set the write timeout of a connection");
        }
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().call(request)
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::trace!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// As axum::serve: a connection that died while queued is skipped; anything
/// else (such as running out of file descriptors) is logged and retried after
/// a pause, while the open connections go on.
async fn accept_failed(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
