//! A session's beginning and end, the same for every protocol: admission at accept, the
//! session's id, span, record and registry entry; and at the end the sealed trail, the final
//! record, metrics and the one "session ended" log line. A bridge calls [`begin`] when it
//! accepts a connection and [`conclude`] once its legs are closed and its pumps have ended.

use std::net::SocketAddr;
use std::sync::Arc;

use super::{Session, SessionId, Verdict};
use crate::config::Protocol;
use crate::services::Services;

/// Admits a new connection (pre-authentication limits) and opens its session: id, tracing
/// span, record, registry entry. The record is published once the client has sent its first
/// byte ([`Session::heard`]): connections that never send one (load-balancer health checks,
/// port scans) are counted, not stored. `None`: refused at accept, before any work or record,
/// so a flood costs an accept and a close.
pub fn begin(gw: &Arc<Services>, protocol: Protocol, peer: SocketAddr) -> Option<Arc<Session>> {
    let preauth = match gw.admission.admit(peer.ip()) {
        Ok(p) => p,
        Err(limit) => {
            tracing::debug!(client = %peer, protocol = protocol.as_str(), limit = limit.as_str(),
                "connection refused before authentication");
            return None;
        }
    };
    let id = SessionId::new();
    let span =
        tracing::info_span!("session", id = %id, protocol = protocol.as_str(), client = %peer);
    gw.metrics.connection_opened();
    let sh = Session::new(gw.clone(), protocol, id, span, peer, preauth);
    gw.registry.insert(sh.live.clone());
    Some(sh)
}

/// Seals the trail, publishes the final record, leaves the registry, and logs the session's
/// end. Call once the client and target legs are closed and every pump has finished.
pub async fn conclude(sh: &Arc<Session>) {
    if !sh.was_heard() {
        sh.gw.registry.remove(&sh.id);
        sh.gw.metrics.probe(sh.protocol);
        tracing::debug!("connection closed without a byte from the client (probe): not a session");
        return;
    }
    sh.finish_trail().await;
    let waited = sh.trail.get().map(|t| t.backpressure()).unwrap_or_default();
    sh.gw.metrics.recording_paced(&waited);
    // Final record first: whoever sees the session leave the registry (the API's kill answer)
    // then finds that record in the catalog, not the last live one.
    let rec = sh.publish_final();
    sh.gw.registry.remove(&sh.id);
    // Indexing reads the whole trail: off the connection's task, and only for sessions that
    // may have transferred files. The shutdown root waits for it. What follows the session
    // (its trail's upload) starts after it, while the trail is still here.
    if rec.trail.integrity == "sealed" && trailgate_recorder::catalog::may_have_files(&rec) {
        let (gw, rec, span) = (sh.gw.clone(), rec.clone(), sh.span.clone());
        sh.gw.tracker.spawn_blocking(move || {
            let _g = span.enter();
            gw.observer.session_sealed(&rec);
            gw.observer.session_ended(&rec);
        });
    } else {
        sh.gw.observer.session_ended(&rec);
    }
    let verdict = rec.verdict.map(Verdict::as_str).unwrap_or("-");
    sh.gw.metrics.connection_ended(
        sh.protocol,
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
