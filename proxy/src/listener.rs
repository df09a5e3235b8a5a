//! The one accept loop of every listener (SSH, the control API; VNC next): accepts until
//! shutdown, runs each connection in a task on the given tracker, and backs off when accepting
//! fails (EMFILE and friends) instead of spinning.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long to wait after a failed accept: with no file descriptor left, retrying at once would
/// spin a core without freeing one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    what: &'static str,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    mut serve: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let addr = listener.local_addr().ok();
    tracing::info!(listen = ?addr, "{what} listener ready");
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, peer)) => {
                tracker.spawn(serve(tcp, peer));
            }
            Err(e) => {
                tracing::warn!(error = %e, "{what}: accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}
