//! The catalog's writer thread: drains queued records in batches, one transaction each; a
//! batch that fails goes back into the queue (newer states win) and is retried with backoff.

use std::sync::Arc;

use super::db::{Backend, Conn};
use super::{Pending, upsert_rows};
use crate::record::SessionRecord;

const RETRY_MIN: std::time::Duration = std::time::Duration::from_millis(50);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(2);

pub(super) fn writer_loop(conn: Conn, backend: Backend, p: Arc<Pending>) {
    let mut conn = Some(conn);
    let mut backoff = RETRY_MIN;
    loop {
        let batch: Vec<SessionRecord> = {
            let Ok(mut g) = p.map.lock() else { return };
            while g.records.is_empty() && !g.closed {
                p.idle.notify_all();
                g = match p.cv.wait(g) {
                    Ok(g) => g,
                    Err(_) => return,
                };
            }
            if g.records.is_empty() && g.closed {
                p.idle.notify_all();
                return;
            }
            g.writing = true;
            g.records.drain().map(|(_, v)| v).collect()
        };
        // A connection the server dropped (PostgreSQL restarted) is replaced on the next try.
        let res = match conn.take().map_or_else(|| backend.connect(), Ok) {
            Ok(mut c) => {
                let r = c.tx(|c| upsert_rows(c, &batch));
                if c.is_usable() {
                    conn = Some(c);
                }
                r
            }
            Err(e) => Err(e),
        };
        let Ok(mut g) = p.map.lock() else { return };
        g.writing = false;
        match res {
            Ok(()) => {
                if let Some(e) = g.failing.take() {
                    tracing::info!(after = %e, "catalog writes succeed again");
                }
                backoff = RETRY_MIN;
            }
            Err(e) => {
                // Back into the queue, unless the session has moved on meanwhile (its newer
                // state supersedes this one): retried until it succeeds.
                g.failures += 1;
                if g.failing.is_none() {
                    tracing::error!(error = %e, sessions = batch.len(), "catalog write failed; retrying until it succeeds");
                }
                g.failing = Some(e.to_string());
                for r in batch {
                    g.records.entry(r.id.clone()).or_insert(r);
                }
                p.idle.notify_all();
                if g.closed {
                    // `close` already waited its bound; the next start reconciles these
                    // sessions from their trails.
                    return;
                }
                drop(g);
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(RETRY_MAX);
                continue;
            }
        }
        if g.records.is_empty() {
            p.idle.notify_all();
        }
    }
}
