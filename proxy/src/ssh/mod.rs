//! The SSH bridge: one connection task per client, a russh server handler toward the admin, a
//! russh client toward the target, and two pump tasks per channel that relay and record.
//!
//! - [`shared`]: per-session state shared by the handler, the pumps and the upstream client.
//! - [`handler`]: the russh server handler (authentication, channel opens, requests).
//! - [`upstream`]: connecting and authenticating to the target; channels the target opens.
//! - [`relay`]: the per-channel pumps.
//! - [`ciphers`]: cipher lists of both legs (config names, defaults by CPU); pure.

pub mod ciphers;
mod handler;
mod relay;
mod shared;
pub(crate) mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::Disconnect;
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::gateway::Gateway;
use crate::registry::KillReason;
use crate::session::{Status, Verdict};

pub use shared::Shared;

/// Read buffer in front of each SSH socket. russh reads a packet's length, then its body, then
/// polls again until `EAGAIN`: three `recvfrom` per packet on a bare socket. One read into a
/// buffer serves a whole packet (or many), and a short read tells tokio the socket is drained,
/// so a keystroke costs one `recvfrom` per hop instead of three. Writes pass straight through.
pub const SOCKET_READ_BUFFER: usize = 256 * 1024;

pub fn read_buffered(tcp: TcpStream) -> tokio::io::BufReader<TcpStream> {
    tokio::io::BufReader::with_capacity(SOCKET_READ_BUFFER, tcp)
}

/// Runs one client connection from accept to sealed trail.
pub async fn serve_connection(gw: Arc<Gateway>, tcp: TcpStream, peer: SocketAddr) {
    let id = uuid::Uuid::now_v7().to_string();
    let span = tracing::info_span!("session", id = %id, client = %peer);
    async move {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "set_nodelay");
        }
        gw.metrics.connection_opened();
        let sh = Shared::new(gw.clone(), id, peer);
        gw.registry.insert(sh.live.clone());
        sh.publish();
        let handler = handler::SshHandler::new(sh.clone());
        let running = tokio::select! {
            r = russh::server::run_stream(gw.ssh_config.clone(), read_buffered(tcp), handler) => r,
            _ = sh.live.killed() => {
                sh.end_with(Status::Rejected, None, "terminated before the SSH handshake");
                finish(&sh).await;
                return;
            }
        };
        let mut running = match running {
            Ok(r) => r,
            Err(e) => {
                sh.end_with(
                    Status::Rejected,
                    None,
                    &format!("ssh handshake failed: {e}"),
                );
                finish(&sh).await;
                return;
            }
        };
        let _ = sh.down.set(running.handle());
        let timers = tokio::spawn(shared::policy_timers(sh.clone()));
        let outcome = tokio::select! {
            r = &mut running => Some(r),
            _ = sh.live.killed() => None,
        };
        timers.abort();
        match outcome {
            Some(Ok(())) => sh.note_end("client disconnected"),
            Some(Err(e)) => sh.note_end(&format!("connection error: {e}")),
            None => {
                let reason = sh.live.kill_reason().unwrap_or(KillReason {
                    reason: "terminated".into(),
                    by: "gateway".into(),
                });
                let msg = format!("session terminated by {}: {}", reason.by, reason.reason);
                sh.terminated(&reason);
                let handle = running.handle();
                let _ = handle
                    .disconnect(Disconnect::ByApplication, msg, "en".into())
                    .await;
                // Let the disconnect message reach the client before the socket closes.
                let _ = tokio::time::timeout(Duration::from_secs(2), &mut running).await;
            }
        }
        finish(&sh).await;
    }
    .instrument(span)
    .await
}

/// Closes the upstream, seals the trail, publishes the final record and logs the summary line.
async fn finish(sh: &Arc<Shared>) {
    if let Some(up) = sh.upstream.get() {
        let _ = up
            .disconnect(Disconnect::ByApplication, "session ended", "en")
            .await;
    }
    sh.finish_trail().await;
    let waited = sh.trail.get().map(|t| t.backpressure()).unwrap_or_default();
    sh.gw.metrics.recording_paced(&waited);
    // Final record first: whoever sees the session leave the registry (the API's kill answer)
    // then finds that record in the catalog, not the last live one.
    let rec = sh.publish();
    sh.gw.registry.remove(&sh.id);
    let verdict = rec.verdict.map(Verdict::as_str).unwrap_or("-");
    sh.gw.metrics.connection_ended(
        rec.verdict.map(Verdict::as_str).unwrap_or("none"),
        rec.status.as_str(),
        rec.duration.unwrap_or(0.0),
    );
    tracing::info!(
        user = rec.user.name.as_deref().unwrap_or("-"),
        target = rec.target.name.as_deref().unwrap_or("-"),
        server_user = rec.user.server_username.as_deref().unwrap_or("-"),
        duration_s = rec.duration.unwrap_or(0.0),
        bytes_c2s = rec.bytes_client_to_server,
        bytes_s2c = rec.bytes_server_to_client,
        verdict,
        status = rec.status.as_str(),
        reason = rec.end_reason.as_deref().unwrap_or("-"),
        trail = rec.trail.path.as_deref().unwrap_or("-"),
        recording_wait_ms = waited.waited.as_millis() as u64,
        recording_fast_frames = waited.fast_frames,
        "session ended"
    );
}
