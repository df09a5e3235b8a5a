//! This node among others sharing one catalog: it heartbeats in the catalog's `nodes` table,
//! claims nodes that went silent for longer than `cluster.node_lost_after` (ending their
//! active sessions with `gateway node lost`), and receives the kills other nodes' APIs send
//! for sessions it holds (over the catalog: PostgreSQL `LISTEN`/`NOTIFY`). On a clean shutdown
//! the node is marked `stopped`, so nobody takes its sessions over.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use trailgate_recorder::catalog::Catalog;

use crate::registry::KillReason;
use crate::services::Services;
use crate::session::EndCode;

/// Starts the node's heartbeat and kill listener on the shutdown root. `api_url`: where other
/// nodes reach this node's control API.
pub fn start(gw: &Arc<Services>, catalog: &Arc<Catalog>, api_url: Option<String>) {
    let started_us = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64;
    let (g, cat) = (gw.clone(), catalog.clone());
    gw.tracker.spawn(async move {
        let node = g.node_id.clone();
        let mut failing = false;
        // Since when this node's own heartbeats succeed without a gap: after a catalog outage
        // every node's last heartbeat is old, and the first one back must not take the others
        // for lost before they have had the grace period to beat again.
        let mut healthy_since: Option<std::time::Instant> = None;
        loop {
            let cfg = g.cfg().cluster.clone();
            let may_claim = healthy_since.is_some_and(|t| t.elapsed() >= cfg.node_lost_after);
            let (c, n, url) = (cat.clone(), node.clone(), api_url.clone());
            let res = tokio::task::spawn_blocking(move || -> trailgate_recorder::Result<Vec<(String, usize)>> {
                c.heartbeat(&n, url.as_deref(), started_us)?;
                let mut ended = Vec::new();
                if !may_claim {
                    return Ok(ended);
                }
                for lost in c.claim_lost_nodes(&n, cfg.node_lost_after)? {
                    let recs = c.end_sessions_of_lost_node(&lost)?;
                    ended.push((lost, recs.len()));
                }
                Ok(ended)
            })
            .await;
            match res {
                Ok(Ok(ended)) => {
                    healthy_since.get_or_insert_with(std::time::Instant::now);
                    if failing {
                        tracing::info!("catalog heartbeat succeeds again");
                        failing = false;
                    }
                    for (lost, sessions) in ended {
                        tracing::warn!(node = %lost, sessions, grace = ?cfg.node_lost_after,
                            "gateway node lost: it stopped heartbeating; its active sessions are ended");
                    }
                }
                Ok(Err(e)) => {
                    healthy_since = None;
                    if !failing {
                        failing = true;
                        tracing::error!(error = %e, "catalog heartbeat failed; retrying");
                    }
                }
                Err(_) => healthy_since = None,
            }
            tokio::select! {
                _ = g.shutdown.cancelled() => break,
                _ = tokio::time::sleep(cfg.heartbeat_interval) => {}
            }
        }
        let (c, n) = (cat.clone(), node.clone());
        let _ = tokio::task::spawn_blocking(move || c.node_stopped(&n)).await;
    });

    let stop = Arc::new(AtomicBool::new(false));
    let registry = gw.registry.clone();
    let listening = catalog.listen_kills(gw.node_id.clone(), stop.clone(), move |k| {
        match registry.get(&k.session) {
            Some(live) => {
                tracing::info!(session = %k.session, by = %k.by, reason = %k.reason, "kill received from another node");
                live.kill(KillReason {
                    reason: k.reason,
                    by: k.by,
                    code: EndCode::Killed,
                });
            }
            None => tracing::debug!(session = %k.session, "kill for a session not held here (already ended)"),
        }
    });
    match listening {
        Ok(Some(handle)) => {
            let g = gw.clone();
            gw.tracker.spawn(async move {
                g.shutdown.cancelled().await;
                stop.store(true, Ordering::Relaxed);
                let _ = tokio::task::spawn_blocking(move || handle.join()).await;
            });
        }
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "cannot listen for kills from other nodes"),
    }
}
