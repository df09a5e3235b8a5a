//! The SSH bridge: one connection task per client, a russh server handler toward the admin, a
//! russh client toward the target, and two pump tasks per channel that relay and record.
//!
//! - [`service`]: host keys, targets' credentials and the russh configurations ([`SshService`]).
//! - [`legs`]: the SSH side of a session (both connections, the channel policy); the neutral
//!   side is [`crate::session::Session`].
//! - [`handler`]: the russh server handler (every callback).
//! - [`login`]: gateway authentication (bounded password checks, throttling, refused names).
//! - [`start`]: the session after authentication (target, policies, upstream, trail).
//! - [`requests`]: channel opens and requests relayed to the target.
//! - [`upstream`]: connecting and authenticating to the target; channels the target opens.
//! - [`relay`]: the per-channel pumps.
//! - [`ciphers`]: cipher lists of both legs (config names, defaults by CPU); pure.

pub mod ciphers;
mod handler;
pub mod hostkey;
mod legs;
mod login;
mod relay;
mod requests;
mod service;
mod start;
pub(crate) mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::Disconnect;
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::config::Protocol;
use crate::session::{self, EndCode, Session, Status, Verdict};
use crate::stream::Closable;

pub use service::{SshService, TargetRuntime};

/// The read buffer in front of each SSH socket: one `recvfrom` per packet instead of three,
/// and no memory held while the connection is idle ([`crate::readbuf`]).
pub fn read_buffered(tcp: TcpStream) -> crate::readbuf::ReadBuffered {
    crate::readbuf::ReadBuffered::new(tcp)
}

/// How long the pumps of an ended session get to finish on their own (the client leg is
/// gone, so each pump ends and closes its upstream channel, whose close ends the other) before
/// the upstream connection is closed under them.
const PUMP_DRAIN: Duration = Duration::from_secs(2);

/// Runs one client connection from accept to sealed trail.
pub async fn serve_connection(ssh: Arc<SshService>, tcp: TcpStream, peer: SocketAddr) {
    let gw = ssh.svc.clone();
    let Some(sh) = session::begin(&gw, Protocol::Ssh, peer) else {
        return;
    };
    let span = sh.span.clone();
    async move {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "set_nodelay");
        }
        let legs = Arc::new(legs::SshLegs::default());
        // The login timeout runs from accept, so a client that never speaks is closed too.
        let timers = tokio::spawn(session::policy_timers(sh.clone(), sh.cfg.ssh.login_timeout));
        let handler = handler::SshHandler::new(sh.clone(), ssh.clone(), legs.clone());
        let heard = sh.clone();
        let stream =
            Closable::new(read_buffered(tcp), sh.conn.clone()).on_first_read(move || heard.heard());
        let banner = sh.cfg.ssh.banner_timeout;
        let handshake = tokio::time::timeout(
            banner,
            russh::server::run_stream(ssh.ssh_config.clone(), stream, handler),
        );
        let handshake = tokio::select! {
            r = handshake => Some(r),
            _ = sh.live.killed() => None,
        };
        match handshake {
            Some(Ok(Ok(running))) => run(&sh, &legs, running).await,
            Some(Ok(Err(e))) => sh.end_with(
                Status::Rejected,
                Verdict::ProtocolError,
                &format!("ssh handshake failed: {e}"),
            ),
            Some(Err(_)) => sh.end_with(
                Status::Rejected,
                Verdict::LoginTimeout,
                &format!("no SSH version line within {banner:?}"),
            ),
            None => sh.terminated(&sh.kill_reason()),
        }
        timers.abort();
        finish(&sh, &legs).await;
    }
    .instrument(span)
    .await
}

/// Runs an established connection until the client leaves or the session is killed, and notes
/// how it ended.
async fn run(
    sh: &Arc<Session>,
    legs: &legs::SshLegs,
    mut running: russh::server::RunningSession<handler::SshHandler>,
) {
    let _ = legs.down.set(running.handle());
    let max_auth = sh.cfg.ssh.max_auth_attempts;
    let outcome = tokio::select! {
        r = &mut running => Some(r),
        _ = sh.live.killed() => None,
    };
    match outcome {
        Some(Ok(())) => sh.note_end(
            "client disconnected",
            false,
            max_auth,
            EndCode::ClientDisconnected,
        ),
        // A peer's disconnect message is a clean end, not a protocol error.
        Some(Err(russh::Error::Disconnect)) => sh.note_end(
            "client disconnected",
            false,
            max_auth,
            EndCode::ClientDisconnected,
        ),
        // Clients that just close the socket (OpenSSH after a refused exec, or when killed) end
        // the session as much as a disconnect message does.
        Some(Err(russh::Error::IO(e)))
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            sh.note_end(
                &format!("client closed the connection ({e})"),
                false,
                max_auth,
                EndCode::ClientDisconnected,
            )
        }
        Some(Err(e)) => sh.note_end(
            &format!("connection error: {e}"),
            true,
            max_auth,
            EndCode::ConnectionError,
        ),
        None => {
            let reason = sh.kill_reason();
            let msg = format!("session terminated by {}: {}", reason.by, reason.reason);
            sh.terminated(&reason);
            let _ = running
                .handle()
                .disconnect(Disconnect::ByApplication, msg, "en".into())
                .await;
            // Let the disconnect message reach the client before the socket closes.
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut running).await;
        }
    }
}

/// Ends the session in order: the client connection is closed (whether or not the client
/// answered), the channel pumps finish and record their last events, the upstream closes, and
/// only then is the trail sealed and the final record published.
async fn finish(sh: &Arc<Session>, legs: &legs::SshLegs) {
    sh.conn.cancel();
    sh.pumps.close();
    // A session ended from outside (kill, timeout, shutdown) has nothing left to drain that
    // is worth holding its end for: the upstream closes at once, and the pumps record their
    // last events as they stop.
    let drain = if sh.live.kill_reason().is_some() {
        Duration::ZERO
    } else {
        PUMP_DRAIN
    };
    if tokio::time::timeout(drain, sh.pumps.wait()).await.is_err() {
        tracing::debug!("channel pumps still running; closing the upstream under them");
    }
    if let Some(up) = legs.upstream.get() {
        let _ = up
            .disconnect(Disconnect::ByApplication, "session ended", "en")
            .await;
    }
    sh.closing.cancel();
    // The pumps now stop at their next wait on a peer; a record they are writing completes
    // (the writer's budget bounds how long that takes).
    sh.pumps.wait().await;
    session::conclude(sh).await;
}
