//! Gateway nodes sharing one catalog: each registers itself and heartbeats in the `nodes`
//! table (times are the database's clock, so nodes' clock skew does not matter); a node whose
//! heartbeat is older than the grace period is claimed lost by exactly one other node, which
//! ends its active sessions with `gateway node lost`. Kills of a session held by another node
//! travel over the catalog: PostgreSQL `NOTIFY` on the `trailgate_kill` channel, which the
//! holding node `LISTEN`s to.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use serde::{Deserialize, Serialize};

use super::Catalog;
use super::db::{Conn, Row, args};
use crate::error::{RecorderError, Result};
use crate::record::{EndCode, SessionRecord, Status, Verdict};

const KILL_CHANNEL: &str = "trailgate_kill";

/// A gateway node as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeInfo {
    pub id: String,
    /// Where other nodes reach this node's control API (live follow is proxied there).
    pub api_url: Option<String>,
    pub started_unix_us: i64,
    /// The last heartbeat, by the database's clock.
    pub heartbeat_unix_us: i64,
    /// `up`, `lost` (stopped heartbeating; its sessions were ended) or `stopped` (shut down).
    pub state: String,
}

/// A kill sent to the node holding a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillRequest {
    pub node: String,
    pub session: String,
    pub reason: String,
    /// Who asked (`api token NAME`), as the record's `terminated_by` will say.
    pub by: String,
}

/// The database's clock in unix microseconds, in each dialect.
fn now_us(c: &Conn) -> &'static str {
    if c.is_postgres() {
        "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)"
    } else {
        "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)"
    }
}

fn node_row(r: &Row) -> Result<NodeInfo> {
    Ok(NodeInfo {
        id: r.text(0)?,
        api_url: r.opt_text(1)?,
        started_unix_us: r.int(2)?,
        heartbeat_unix_us: r.int(3)?,
        state: r.text(4)?,
    })
}

impl Catalog {
    /// Registers `node` as up (or keeps it so): its API address and a fresh heartbeat.
    pub fn heartbeat(&self, node: &str, api_url: Option<&str>, started_us: i64) -> Result<()> {
        self.with_conn(|c| {
            let now = now_us(c);
            c.exec(
                &format!(
                    "INSERT INTO nodes (id, api_url, started_us, heartbeat_us, state) VALUES (?1, ?2, ?3, {now}, 'up')
                     ON CONFLICT(id) DO UPDATE SET api_url = ?2, started_us = ?3, heartbeat_us = {now}, state = 'up'"
                ),
                args![node, api_url, started_us],
            )?;
            Ok(())
        })
    }

    /// Marks `node` stopped (a clean shutdown: nothing for other nodes to take over).
    pub fn node_stopped(&self, node: &str) -> Result<()> {
        self.with_conn(|c| {
            c.exec(
                "UPDATE nodes SET state = 'stopped' WHERE id = ?1",
                args![node],
            )?;
            Ok(())
        })
    }

    pub fn nodes(&self) -> Result<Vec<NodeInfo>> {
        self.with_conn(|c| {
            c.query(
                "SELECT id, api_url, started_us, heartbeat_us, state FROM nodes ORDER BY id",
                &[],
            )?
            .iter()
            .map(node_row)
            .collect()
        })
    }

    pub fn node(&self, id: &str) -> Result<Option<NodeInfo>> {
        self.with_conn(|c| {
            c.query_opt(
                "SELECT id, api_url, started_us, heartbeat_us, state FROM nodes WHERE id = ?1",
                args![id],
            )?
            .as_ref()
            .map(node_row)
            .transpose()
        })
    }

    /// Claims the nodes (other than `me`) whose heartbeat is older than `grace`, marking them
    /// lost; each lost node is claimed by one caller only. Returns their ids.
    pub fn claim_lost_nodes(&self, me: &str, grace: Duration) -> Result<Vec<String>> {
        let grace_us = i64::try_from(grace.as_micros()).unwrap_or(i64::MAX);
        self.with_conn(|c| {
            let now = now_us(c);
            c.query(
                &format!(
                    "UPDATE nodes SET state = 'lost' WHERE state = 'up' AND id <> ?1 AND heartbeat_us < {now} - ?2 RETURNING id"
                ),
                args![me, grace_us],
            )?
            .iter()
            .map(|r| r.text(0))
            .collect()
        })
    }

    /// Ends the sessions a lost node held with `gateway node lost` (their trails stay on that
    /// node until it returns and reconciles them). Returns the records as written.
    pub fn end_sessions_of_lost_node(&self, node: &str) -> Result<Vec<SessionRecord>> {
        let mut recs = self.with_conn(|c| {
            super::rows_records(c.query(
                &format!(
                    "SELECT {} FROM sessions WHERE active = 1 AND node_id = ?1",
                    super::RECORD_COLUMNS
                ),
                args![node],
            )?)
        })?;
        let now = time::OffsetDateTime::now_utc();
        for r in &mut recs {
            r.active = false;
            r.end_unix_us = Some((now.unix_timestamp_nanos() / 1000) as i64);
            r.end_time = Some(crate::writer::rfc3339(now));
            r.duration = r
                .end_unix_us
                .map(|e| (e - r.start_unix_us).max(0) as f64 / 1e6);
            r.end_reason = Some("gateway node lost".into());
            r.end_reason_code = Some(EndCode::GatewayNodeLost);
            r.terminated_by = Some("gateway".into());
            r.status = if r.verdict == Some(Verdict::Accept) {
                Status::Disconnected
            } else {
                Status::Rejected
            };
        }
        self.insert_many(&recs)?;
        Ok(recs)
    }

    /// Sessions of `node` that another node marked lost and whose trail this node has not
    /// recovered yet.
    pub(super) fn lost_unrecovered(&self, node: &str) -> Result<Vec<SessionRecord>> {
        let recs = self.with_conn(|c| {
            super::rows_records(c.query(
                &format!(
                    "SELECT {} FROM sessions WHERE end_code = 'gateway_node_lost' AND node_id = ?1",
                    super::RECORD_COLUMNS
                ),
                args![node],
            )?)
        })?;
        Ok(recs
            .into_iter()
            .filter(|r| r.trail.integrity == "recording")
            .collect())
    }

    /// This node's trails waiting for object storage (`uploading`, `upload_failed`), oldest
    /// first, at most `limit`.
    pub fn pending_uploads(&self, node: &str, limit: u32) -> Result<Vec<SessionRecord>> {
        // The queue is the catalog: what was just queued for it must be there to be found.
        self.flush_for(Some(Duration::from_secs(2)));
        self.with_conn(|c| {
            super::rows_records(c.query(
                &format!(
                    "SELECT {} FROM sessions WHERE node_id = ?1 AND storage IN ('uploading', 'upload_failed')
                     ORDER BY end_us LIMIT ?2",
                    super::RECORD_COLUMNS
                ),
                args![node, limit],
            )?)
        })
    }

    /// Sends a kill to the node holding a session. Needs PostgreSQL: one SQLite catalog is
    /// not shared between nodes.
    pub fn send_kill(&self, req: &KillRequest) -> Result<()> {
        let payload = serde_json::to_string(req)?;
        self.with_conn(|c| {
            if !c.is_postgres() {
                return Err(RecorderError::Catalog(format!(
                    "session {} is held by node {}; killing it from another node needs a shared PostgreSQL catalog",
                    req.session, req.node
                )));
            }
            c.exec("SELECT pg_notify(?1, ?2)", args![KILL_CHANNEL, payload])?;
            Ok(())
        })
    }

    /// Receives the kills sent to `node` until `stop` is set, calling `on_kill` for each (on a
    /// thread of its own; reconnects with backoff when the database goes away). Returns at
    /// once on SQLite.
    pub fn listen_kills(
        self: &Arc<Self>,
        node: String,
        stop: Arc<AtomicBool>,
        on_kill: impl Fn(KillRequest) + Send + 'static,
    ) -> Result<Option<std::thread::JoinHandle<()>>> {
        if !self.backend.is_postgres() {
            return Ok(None);
        }
        let backend = self.backend.clone();
        let h = std::thread::Builder::new()
            .name("catalog-kills".into())
            .spawn(move || {
                let mut backoff = Duration::from_millis(100);
                while !stop.load(Ordering::Relaxed) {
                    match listen_once(&backend, &node, &stop, &on_kill) {
                        Ok(()) => return,
                        Err(e) => {
                            tracing::warn!(error = %e, "listening for kills failed; reconnecting");
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                }
            })
            .map_err(RecorderError::RawIo)?;
        Ok(Some(h))
    }
}

fn listen_once(
    backend: &super::Backend,
    node: &str,
    stop: &AtomicBool,
    on_kill: &impl Fn(KillRequest),
) -> Result<()> {
    let mut conn = backend.connect()?;
    let Some(client) = conn.postgres() else {
        return Ok(());
    };
    client
        .batch_execute(&format!("LISTEN {KILL_CHANNEL}"))
        .map_err(|e| RecorderError::Catalog(format!("postgres: LISTEN: {e}")))?;
    while !stop.load(Ordering::Relaxed) {
        {
            let mut n = client.notifications();
            let mut it = n.timeout_iter(Duration::from_millis(250));
            while let Some(msg) = it
                .next()
                .map_err(|e| RecorderError::Catalog(format!("postgres: notifications: {e}")))?
            {
                match serde_json::from_str::<KillRequest>(msg.payload()) {
                    Ok(k) if k.node == node => on_kill(k),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "malformed kill request ignored"),
                }
            }
        }
        if client.is_closed() {
            return Err(RecorderError::Catalog(
                "postgres: the listening connection closed".into(),
            ));
        }
    }
    Ok(())
}
