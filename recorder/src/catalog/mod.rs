//! The session catalog: every connection attempt as a [`SessionRecord`] in an embedded SQLite
//! database (`<data_dir>/catalog.sqlite`, WAL mode). Trails stay the source of truth; the catalog
//! can be rebuilt from them ([`Catalog::reindex`]).
//!
//! Writes never block the gateway: [`Catalog::upsert`] stores the latest record per session in a
//! map that a writer thread drains in batches (updates of one session coalesce), so memory is
//! bounded by the number of sessions changing at once. A batch that fails to commit (disk full)
//! goes back into the map (unless a newer state of the session arrived meanwhile) and is retried
//! with backoff until it succeeds: no session is ever left without its last record, and memory
//! stays bounded the same way. [`Catalog::health`] says whether writes are failing now. Reads use
//! a small pool of read connections. The database files are created owner-only (0600).
//! Configuration objects managed through the control API and the audit of configuration changes
//! live here too (`config`), as do retention (`retention`: trails and records past their age),
//! records rebuilt from trails (`rebuild`: reindex, restart reconciliation), each session's files
//! index (`transfers`), and the schema with its migrations (`schema`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use serde::{Deserialize, Serialize};

use crate::error::{RecorderError, Result};
use crate::record::*;

mod config;
mod rebuild;
mod retention;
mod schema;
mod transfers;
mod writer;
pub use config::{ConfigChange, StoredObject};
pub use rebuild::record_from_trail;
pub use retention::Deleted;
use schema::{SCHEMA, migrate};
pub use transfers::may_have_files;
use writer::writer_loop;

fn db_err(e: rusqlite::Error) -> RecorderError {
    RecorderError::Catalog(e.to_string())
}

/// Filters and paging of a session list.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Query {
    pub limit: Option<u32>,
    pub offset: Option<u64>,
    pub active: Option<bool>,
    pub protocol: Option<String>,
    pub user: Option<String>,
    pub target: Option<String>,
    pub verdict: Option<String>,
    /// Sessions started at or after (unix microseconds).
    pub since_us: Option<i64>,
    /// Sessions started before (unix microseconds).
    pub until_us: Option<i64>,
    /// Sessions that transferred a file whose path contains this.
    pub file: Option<String>,
    /// Sessions with an exec command containing this.
    pub command: Option<String>,
    /// Keyset paging: sessions after this one in list order (older; ids are time-ordered).
    pub after: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TrailDownload {
    pub session_id: String,
    pub token: String,
    pub time: String,
    pub format: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    pub follow: bool,
}

struct Pending {
    map: Mutex<Queue>,
    cv: Condvar,
    /// Signalled when the writer has drained and committed everything (for `flush`).
    idle: Condvar,
}

#[derive(Default)]
struct Queue {
    /// Latest state per session, not yet handed to the writer.
    records: HashMap<String, SessionRecord>,
    closed: bool,
    /// The writer holds a drained batch it has not committed yet: `flush` must wait for it too,
    /// or a reader right after `flush` could miss it.
    writing: bool,
    /// The last write failed with this error (cleared by the next success).
    failing: Option<String>,
    /// Failed write attempts since the catalog opened.
    failures: u64,
}

pub struct Catalog {
    path: PathBuf,
    pending: Arc<Pending>,
    readers: Mutex<Vec<Connection>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn open_conn(path: &Path) -> Result<Connection> {
    // SQLite creates the database, its WAL and shared-memory files with the process umask;
    // pre-creating the database owner-only keeps session records private whatever it is
    // (the -wal and -shm files take the database file's mode).
    if !path.exists() {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| RecorderError::io(path, e))?;
    }
    let c = Connection::open(path).map_err(db_err)?;
    c.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(db_err)?;
    Ok(c)
}

fn upsert_row(tx: &rusqlite::Transaction<'_>, r: &SessionRecord) -> Result<()> {
    let json = serde_json::to_string(r)?;
    tx.execute(
        "INSERT INTO sessions (id, start_us, active, protocol, user, target, verdict, status, trail_path, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT(id) DO UPDATE SET start_us=?2, active=?3, protocol=?4, user=?5, target=?6, verdict=?7,
             status=?8, trail_path=?9, record=?10",
        params![
            r.id,
            r.start_unix_us,
            r.active,
            r.protocol,
            r.user.name,
            r.target.name,
            r.verdict.map(|v| v.as_str()),
            r.status.as_str(),
            r.trail.path,
            json
        ],
    )
    .map_err(db_err)?;
    let commands: Vec<&str> = r
        .channels
        .iter()
        .filter_map(|c| c.command.as_deref())
        .collect();
    if !commands.is_empty() {
        tx.execute(
            "DELETE FROM session_commands WHERE session_id = ?1",
            [&r.id],
        )
        .map_err(db_err)?;
        for c in commands {
            tx.execute(
                "INSERT INTO session_commands (session_id, command) VALUES (?1, ?2)",
                params![r.id, c],
            )
            .map_err(db_err)?;
        }
    }
    Ok(())
}

/// Sessions matched by more than this many rows of a `file` or `command` search are filtered
/// by a subquery rather than by their ids.
const MAX_LISTED_MATCHES: usize = 10_000;

/// Literal SQL for a list of session ids (quotes doubled: ids are the gateway's, but still).
fn id_list(ids: &[String]) -> String {
    let quoted: Vec<String> = ids
        .iter()
        .map(|i| format!("'{}'", i.replace('\'', "''")))
        .collect();
    format!("id IN ({})", quoted.join(","))
}

/// Selects what [`row_record`] reads.
const RECORD_COLUMNS: &str = "record, trail_path, \
    (SELECT files FROM session_transfers t WHERE t.session_id = sessions.id)";

/// A record from its row: the JSON, plus what is kept beside it (the trail's path, which no
/// response shows, and the number of files its index found).
fn row_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<SessionRecord>> {
    let json: String = row.get(0)?;
    let path: Option<String> = row.get(1)?;
    let files: Option<i64> = row.get(2)?;
    Ok(serde_json::from_str::<SessionRecord>(&json)
        .map_err(RecorderError::from)
        .map(|mut r| {
            r.trail.path = path;
            r.files = files.unwrap_or(0).max(0) as u32;
            r
        }))
}

impl Catalog {
    pub fn open(data_dir: &Path) -> Result<Arc<Catalog>> {
        crate::fsutil::private_dir_all(data_dir)?;
        let path = data_dir.join("catalog.sqlite");
        let conn = open_conn(&path)?;
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        conn.execute_batch(config::SCHEMA).map_err(db_err)?;
        conn.execute_batch(transfers::SCHEMA).map_err(db_err)?;
        migrate(&conn)?;
        // Keeps the planner's statistics current so it picks the most selective index.
        conn.execute_batch("PRAGMA optimize=0x10002;")
            .map_err(db_err)?;
        let pending = Arc::new(Pending {
            map: Mutex::new(Queue::default()),
            cv: Condvar::new(),
            idle: Condvar::new(),
        });
        let p = pending.clone();
        let writer = std::thread::Builder::new()
            .name("catalog-writer".into())
            .spawn(move || writer_loop(conn, p))
            .map_err(RecorderError::RawIo)?;
        Ok(Arc::new(Catalog {
            path,
            pending,
            readers: Mutex::new(Vec::new()),
            writer: Mutex::new(Some(writer)),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues the latest state of a session; never blocks on the database.
    pub fn upsert(&self, r: &SessionRecord) {
        if let Ok(mut g) = self.pending.map.lock() {
            g.records.insert(r.id.clone(), r.clone());
            self.pending.cv.notify_one();
        }
    }

    /// Waits until every queued record is written.
    pub fn flush(&self) {
        self.flush_for(None);
    }

    /// Waits until every queued record is written, or `limit` passed (`false`: records are
    /// still queued, e.g. while the disk is full).
    pub fn flush_for(&self, limit: Option<std::time::Duration>) -> bool {
        let deadline = limit.map(|l| std::time::Instant::now() + l);
        let Ok(mut g) = self.pending.map.lock() else {
            return false;
        };
        while !g.records.is_empty() || g.writing {
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return false;
            }
            self.pending.cv.notify_one();
            match self
                .pending
                .idle
                .wait_timeout(g, std::time::Duration::from_millis(100))
            {
                Ok((ng, _)) => g = ng,
                Err(_) => return false,
            }
        }
        true
    }

    /// `Err(reason)` while catalog writes are failing (they are being retried).
    pub fn health(&self) -> std::result::Result<(), String> {
        match self.pending.map.lock() {
            Ok(g) => match &g.failing {
                Some(e) => Err(format!(
                    "catalog writes failing ({} records waiting): {e}",
                    g.records.len() + usize::from(g.writing)
                )),
                None => Ok(()),
            },
            Err(_) => Err("catalog state poisoned".into()),
        }
    }

    /// Failed write attempts since the catalog opened (each is retried).
    pub fn write_failures(&self) -> u64 {
        self.pending.map.lock().map(|g| g.failures).unwrap_or(0)
    }

    /// Writes records synchronously in one transaction (bulk loads, reindex).
    pub fn insert_many(&self, recs: &[SessionRecord]) -> Result<()> {
        let mut c = open_conn(&self.path)?;
        let tx = c.transaction().map_err(db_err)?;
        for r in recs {
            upsert_row(&tx, r)?;
        }
        tx.commit().map_err(db_err)?;
        c.execute_batch("PRAGMA optimize;").map_err(db_err)
    }

    /// Refreshes the query planner's statistics (after bulk loads).
    pub fn analyze(&self) -> Result<()> {
        open_conn(&self.path)?
            .execute_batch("ANALYZE;")
            .map_err(db_err)
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = match self.readers.lock().ok().and_then(|mut v| v.pop()) {
            Some(c) => c,
            None => open_conn(&self.path)?,
        };
        let r = f(&conn);
        if let Ok(mut v) = self.readers.lock()
            && v.len() < 8
        {
            v.push(conn);
        }
        r
    }

    pub fn get(&self, id: &str) -> Result<Option<SessionRecord>> {
        self.with_reader(|c| {
            c.query_row(
                &format!("SELECT {RECORD_COLUMNS} FROM sessions WHERE id = ?1"),
                [id],
                row_record,
            )
            .optional()
            .map_err(db_err)?
            .transpose()
        })
    }

    /// Newest first. Returns the page and the total number of matches.
    pub fn list(&self, q: &Query) -> Result<(Vec<SessionRecord>, u64)> {
        let mut wh = Vec::new();
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut add = |cond: &str, v: Option<rusqlite::types::Value>| match v {
            Some(v) => {
                args.push(v);
                wh.push(cond.replace('?', &format!("?{}", args.len())));
            }
            None => wh.push(cond.to_string()),
        };
        if let Some(a) = q.active {
            add("active = ?", Some((a as i64).into()));
        }
        if let Some(p) = &q.protocol {
            add("protocol = ?", Some(p.clone().into()));
        }
        if let Some(u) = &q.user {
            add("user = ?", Some(u.clone().into()));
        }
        if let Some(t) = &q.target {
            add("target = ?", Some(t.clone().into()));
        }
        if let Some(v) = &q.verdict {
            add("verdict = ?", Some(v.clone().into()));
        }
        if let Some(s) = q.since_us {
            add("start_us >= ?", Some(s.into()));
        }
        if let Some(u) = q.until_us {
            add("start_us < ?", Some(u.into()));
        }
        let mut by_ids = false;
        // Substring searches (case-sensitive, `instr`: no wildcards) scan the commands or files
        // table once; the sessions they name then filter the list and its count by id.
        for (needle, table, column) in [
            (&q.file, "session_files", "path"),
            (&q.command, "session_commands", "command"),
        ] {
            let Some(needle) = needle else { continue };
            // No DISTINCT: it would walk the session_id index (a random read per row) instead
            // of scanning the table; duplicates are dropped here.
            let sql = format!("SELECT session_id FROM {table} WHERE instr({column}, ?1) > 0");
            let ids = self.with_reader(|c| {
                let mut st = c.prepare_cached(&sql).map_err(db_err)?;
                let rows = st
                    .query_map([needle], |r| r.get::<_, String>(0))
                    .map_err(db_err)?;
                let mut ids = Vec::new();
                let mut seen = std::collections::HashSet::new();
                for r in rows {
                    let id = r.map_err(db_err)?;
                    if seen.insert(id.clone()) {
                        ids.push(id);
                        if ids.len() > MAX_LISTED_MATCHES {
                            break;
                        }
                    }
                }
                Ok(ids)
            })?;
            if ids.is_empty() {
                return Ok((Vec::new(), 0));
            }
            if ids.len() <= MAX_LISTED_MATCHES {
                by_ids = true;
                add(&id_list(&ids), None);
            } else {
                add(
                    &format!("id IN (SELECT session_id FROM {table} WHERE instr({column}, ?) > 0)"),
                    Some(needle.clone().into()),
                );
            }
        }
        // Keyset paging excludes nothing from the total: `total` counts every match.
        let filters = wh.len();
        if let Some(a) = &q.after {
            args.push(a.clone().into());
            wh.push(format!(
                "(start_us, id) < (SELECT start_us, id FROM sessions WHERE id = ?{})",
                args.len()
            ));
        }
        let where_of = |conds: &[String]| {
            if conds.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", conds.join(" AND "))
            }
        };
        // With sessions named by id, fetch those (by the primary key) and sort them: walking
        // the time index in order and testing each row would read the whole table.
        let order = if by_ids {
            "+start_us DESC, +id DESC"
        } else {
            "start_us DESC, id DESC"
        };
        let count_sql = where_of(&wh[..filters]);
        let where_sql = where_of(&wh);
        let limit = q.limit.unwrap_or(50).clamp(1, 1000);
        let offset = q.offset.unwrap_or(0);
        self.with_reader(|c| {
            let count_args = params_from_iter(args.iter().take(filters));
            let total: i64 = c
                .query_row(&format!("SELECT COUNT(*) FROM sessions {count_sql}"), count_args, |r| r.get(0))
                .map_err(db_err)?;
            let mut stmt = c
                .prepare_cached(&format!("SELECT {RECORD_COLUMNS} FROM sessions {where_sql} ORDER BY {order} LIMIT {limit} OFFSET {offset}"))
                .map_err(db_err)?;
            let rows = stmt.query_map(params_from_iter(args.iter()), row_record).map_err(db_err)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row.map_err(db_err)??);
            }
            Ok((out, total as u64))
        })
    }

    /// Whether a session is in the catalog.
    pub fn exists(&self, id: &str) -> Result<bool> {
        self.with_reader(|c| {
            c.query_row("SELECT 1 FROM sessions WHERE id = ?1", [id], |_| Ok(()))
                .optional()
                .map(|o| o.is_some())
                .map_err(db_err)
        })
    }

    /// Every record still marked active (at start-up: sessions the last run left open).
    pub fn active(&self) -> Result<Vec<SessionRecord>> {
        self.with_reader(|c| {
            let mut stmt = c
                .prepare(&format!(
                    "SELECT {RECORD_COLUMNS} FROM sessions WHERE active = 1 ORDER BY start_us, id"
                ))
                .map_err(db_err)?;
            let rows = stmt.query_map([], row_record).map_err(db_err)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row.map_err(db_err)??);
            }
            Ok(out)
        })
    }

    pub fn add_download(&self, d: &TrailDownload) -> Result<()> {
        self.with_reader(|c| {
            c.execute(
                "INSERT INTO trail_downloads (session_id, token, time, format, range, follow) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![d.session_id, d.token, d.time, d.format, d.range, d.follow],
            )
            .map_err(db_err)?;
            Ok(())
        })
    }

    /// A session's trail downloads, oldest first: a page, and how many there are.
    pub fn downloads(
        &self,
        id: &str,
        limit: u32,
        offset: u64,
    ) -> Result<(Vec<TrailDownload>, u64)> {
        self.with_reader(|c| {
            let total: i64 = c
                .query_row(
                    "SELECT COUNT(*) FROM trail_downloads WHERE session_id = ?1",
                    [id],
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            let mut stmt = c
                .prepare_cached("SELECT session_id, token, time, format, range, follow FROM trail_downloads WHERE session_id = ?1 ORDER BY n LIMIT ?2 OFFSET ?3")
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![id, limit, offset as i64], |r| {
                    Ok(TrailDownload { session_id: r.get(0)?, token: r.get(1)?, time: r.get(2)?, format: r.get(3)?, range: r.get(4)?, follow: r.get(5)? })
                })
                .map_err(db_err)?;
            let items = rows.map(|r| r.map_err(db_err)).collect::<Result<Vec<_>>>()?;
            Ok((items, total as u64))
        })
    }

    /// Stops the writer thread after draining what is queued (waiting at most 10 s while writes
    /// fail: what is left is logged, and the next start reconciles it from the trails).
    pub fn close(&self) {
        if !self.flush_for(Some(std::time::Duration::from_secs(10))) {
            let left = self
                .pending
                .map
                .lock()
                .map(|g| g.records.len())
                .unwrap_or(0);
            tracing::error!(
                records = left,
                "catalog closed with records it could not write"
            );
        }
        if let Ok(mut g) = self.pending.map.lock() {
            g.closed = true;
            self.pending.cv.notify_all();
        }
        if let Some(h) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = h.join();
        }
    }
}
