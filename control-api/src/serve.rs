//! The API's HTTP server: the gateway's accept loop, optional TLS, and the limits a slow or
//! greedy client meets: at most `api.max_connections` connections at once (the excess is closed
//! at accept), a TLS handshake and the request headers each within `api.header_read_timeout`.
//! Long responses (live follow) are not cut: only reading headers is timed.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

/// Serves `app` until `shutdown`, then lets open requests finish for up to `grace`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let acceptor = tls.map(TlsAcceptor::from);
    let stop = shutdown.clone();
    trailgate_proxy::listener::accept_loop(
        listener,
        "api",
        shutdown.clone(),
        tracker.clone(),
        move |tcp, peer| {
            let permit = slots.clone().try_acquire_owned();
            let (app, acceptor, limits, stop) =
                (app.clone(), acceptor.clone(), limits.clone(), stop.clone());
            async move {
                let Ok(_permit) = permit else {
                    tracing::debug!(%peer, "api connection refused: api.max_connections reached");
                    return;
                };
                let _ = tcp.set_nodelay(true);
                match acceptor {
                    None => connection(tcp, app, &limits, stop).await,
                    Some(a) => {
                        match tokio::time::timeout(limits.header_read_timeout, a.accept(tcp)).await
                        {
                            Ok(Ok(tls)) => connection(tls, app, &limits, stop).await,
                            Ok(Err(e)) => {
                                tracing::info!(%peer, error = %e, "api TLS handshake failed")
                            }
                            Err(_) => tracing::info!(%peer, "api TLS handshake timed out"),
                        }
                    }
                }
            }
        },
    )
    .await;
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::info!("api connections still open after the shutdown grace period");
    }
}

async fn connection<S>(io: S, app: Router, limits: &Limits, stop: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "api connection ended with an error");
            }
        }
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
