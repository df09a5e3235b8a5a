//! The session catalog: every connection attempt as a [`SessionRecord`], in SQLite
//! (`<data_dir>/catalog.sqlite`, WAL mode; the default) or PostgreSQL (`[catalog] url`, shared by
//! several gateway nodes). Trails stay the source of truth; the catalog can be rebuilt from them
//! ([`Catalog::reindex`]).
//!
//! Writes never block the gateway: [`Catalog::upsert`] stores the latest record per session in a
//! map that a writer thread drains in batches (updates of one session coalesce), so memory is
//! bounded by the number of sessions changing at once. A batch that fails to commit (disk full,
//! database down) goes back into the map (unless a newer state of the session arrived meanwhile)
//! and is retried with backoff until it succeeds: no session is ever left without its last
//! record, and memory stays bounded the same way. [`Catalog::health`] says whether writes are
//! failing now. Reads use a small pool of connections. SQLite files are created owner-only.
//!
//! Modules: `db` (one SQL interface over both backends), `schema` (tables and migrations, run
//! at start-up), `writer` (the writer thread), `config` (objects managed through the control
//! API and the audit of configuration changes), `retention` (trails and records past their
//! age), `rebuild` (records from trails: reindex, restart reconciliation), `transfers` (each
//! session's files index) `downloads` (the audit of trail downloads) and `nodes` (gateway nodes sharing the catalog: heartbeats, lost
//! nodes, kills sent to the node holding a session).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use serde::Deserialize;

use crate::error::Result;
use crate::record::*;

mod config;
pub(crate) mod db;
mod downloads;
mod nodes;
mod rebuild;
mod retention;
mod schema;
#[cfg(test)]
mod tests;
mod transfers;
mod writer;
pub use config::{ConfigChange, StoredObject};
pub use db::Backend;
use db::{Conn, Row, Val, args};
pub use downloads::TrailDownload;
pub use nodes::{KillRequest, NodeInfo};
pub use rebuild::record_from_trail;
pub use retention::Deleted;
pub use transfers::may_have_files;
use writer::writer_loop;

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
    backend: Backend,
    /// Trail paths in error messages are shown relative to it.
    data_dir: PathBuf,
    pending: Arc<Pending>,
    readers: Mutex<Vec<Conn>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Writes records in the caller's transaction. PostgreSQL also keeps the number of sessions
/// (`session_count`): counting a million rows there takes 90 ms, reading one row does not.
fn upsert_rows(c: &mut Conn, recs: &[SessionRecord]) -> Result<()> {
    let mut new = 0i64;
    for r in recs {
        new += i64::from(upsert_row(c, r)?);
    }
    if c.is_postgres() && new > 0 {
        c.exec("UPDATE session_count SET n = n + ?1", args![new])?;
    }
    Ok(())
}

/// Whether the session was new.
fn upsert_row(c: &mut Conn, r: &SessionRecord) -> Result<bool> {
    let json = serde_json::to_string(r)?;
    const UPSERT: &str = "INSERT INTO sessions (id, start_us, active, protocol, \"user\", target, verdict, status, trail_path, record, end_us, node_id, storage, end_code)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT(id) DO UPDATE SET start_us=?2, active=?3, protocol=?4, \"user\"=?5, target=?6, verdict=?7,
             status=?8, trail_path=?9, record=?10, end_us=?11, node_id=?12, storage=?13, end_code=?14";
    let values = args![
        &r.id,
        r.start_unix_us,
        r.active,
        &r.protocol,
        r.user.name.as_deref(),
        r.target.name.as_deref(),
        r.verdict.map(|v| v.as_str()),
        r.status.as_str(),
        r.trail.path.as_deref(),
        json,
        r.end_unix_us,
        Some(r.node_id.as_str()).filter(|n| !n.is_empty()),
        r.trail.storage.as_deref(),
        r.end_reason_code.map(|c| c.as_str()),
    ];
    let new = if c.is_postgres() {
        // `xmax = 0`: the row was inserted, not updated.
        let row = c.query_opt(&format!("{UPSERT} RETURNING (xmax = 0)"), values)?;
        row.map_or(Ok(0), |r| r.int(0))? != 0
    } else {
        c.exec(UPSERT, values)?;
        false
    };
    let commands: Vec<&str> = r
        .channels
        .iter()
        .filter_map(|c| c.command.as_deref())
        .collect();
    if !commands.is_empty() {
        c.exec(
            "DELETE FROM session_commands WHERE session_id = ?1",
            args![&r.id],
        )?;
        for cmd in commands {
            c.exec(
                "INSERT INTO session_commands (session_id, command) VALUES (?1, ?2)",
                args![&r.id, cmd],
            )?;
        }
    }
    Ok(new)
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
pub(super) const RECORD_COLUMNS: &str = "record, trail_path, \
    (SELECT files FROM session_transfers t WHERE t.session_id = sessions.id)";

/// A record from its row: the JSON, plus what is kept beside it (the trail's path, which no
/// response shows, and the number of files its index found).
fn row_record(row: &Row) -> Result<SessionRecord> {
    let mut r: SessionRecord = serde_json::from_str(&row.text(0)?)?;
    r.trail.path = row.opt_text(1)?;
    r.files = row.opt_int(2)?.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32;
    Ok(r)
}

pub(super) fn rows_records(rows: Vec<Row>) -> Result<Vec<SessionRecord>> {
    rows.iter().map(row_record).collect()
}

impl Catalog {
    /// The SQLite catalog in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Arc<Catalog>> {
        Self::open_url(None, data_dir)
    }

    /// The catalog `url` names (see [`Backend::from_url`]; none: SQLite in `data_dir`), its
    /// schema created or migrated.
    pub fn open_url(url: Option<&str>, data_dir: &Path) -> Result<Arc<Catalog>> {
        crate::fsutil::private_dir_all(data_dir)?;
        let backend = Backend::from_url(url, data_dir)?;
        let mut conn = backend.connect()?;
        db::off_runtime(|| -> Result<()> {
            schema::migrate(&mut conn)?;
            if let Some(c) = conn.sqlite() {
                // Keeps the planner's statistics current so it picks the most selective index.
                c.execute_batch("PRAGMA optimize=0x10002;")
                    .map_err(|e| crate::RecorderError::Catalog(e.to_string()))?;
            }
            Ok(())
        })?;
        let pending = Arc::new(Pending {
            map: Mutex::new(Queue::default()),
            cv: Condvar::new(),
            idle: Condvar::new(),
        });
        let p = pending.clone();
        let writer_backend = backend.clone();
        let writer = std::thread::Builder::new()
            .name("catalog-writer".into())
            .spawn(move || writer_loop(conn, writer_backend, p))
            .map_err(crate::RecorderError::RawIo)?;
        Ok(Arc::new(Catalog {
            backend,
            data_dir: data_dir.to_path_buf(),
            pending,
            readers: Mutex::new(Vec::new()),
            writer: Mutex::new(Some(writer)),
        }))
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The SQLite database file (none on PostgreSQL).
    pub fn path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Sqlite(p) => Some(p),
            Backend::Postgres(_) => None,
        }
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
        self.with_conn(|c| {
            c.tx(|c| upsert_rows(c, recs))?;
            if let Some(l) = c.sqlite() {
                l.execute_batch("PRAGMA optimize;")
                    .map_err(|e| crate::RecorderError::Catalog(e.to_string()))?;
            }
            Ok(())
        })
    }

    /// Refreshes the query planner's statistics (after bulk loads).
    pub fn analyze(&self) -> Result<()> {
        self.with_conn(|c| {
            c.batch(if c.is_postgres() {
                "VACUUM ANALYZE"
            } else {
                "ANALYZE"
            })
        })
    }

    /// Runs `f` on a pooled connection (a new one when the pool is empty); a connection the
    /// server dropped is not pooled again.
    fn with_conn<T: Send>(&self, f: impl FnOnce(&mut Conn) -> Result<T> + Send) -> Result<T> {
        let pooled = self.readers.lock().ok().and_then(|mut v| v.pop());
        db::off_runtime(|| {
            let mut conn = match pooled {
                Some(c) => c,
                None => self.backend.connect()?,
            };
            let r = f(&mut conn);
            if conn.is_usable()
                && let Ok(mut v) = self.readers.lock()
                && v.len() < 8
            {
                v.push(conn);
            }
            r
        })
    }

    pub fn get(&self, id: &str) -> Result<Option<SessionRecord>> {
        self.with_conn(|c| {
            c.query_opt(
                &format!("SELECT {RECORD_COLUMNS} FROM sessions WHERE id = ?1"),
                args![id],
            )?
            .as_ref()
            .map(row_record)
            .transpose()
        })
    }

    /// Newest first. Returns the page and the total number of matches.
    pub fn list(&self, q: &Query) -> Result<(Vec<SessionRecord>, u64)> {
        let mut wh = Vec::new();
        let mut args: Vec<Val> = Vec::new();
        let mut add = |cond: &str, v: Option<Val>| match v {
            Some(v) => {
                args.push(v);
                wh.push(cond.replace('?', &format!("?{}", args.len())));
            }
            None => wh.push(cond.to_string()),
        };
        if let Some(a) = q.active {
            add("active = ?", Some(a.into()));
        }
        if let Some(p) = &q.protocol {
            add("protocol = ?", Some(p.into()));
        }
        if let Some(u) = &q.user {
            add("\"user\" = ?", Some(u.into()));
        }
        if let Some(t) = &q.target {
            add("target = ?", Some(t.into()));
        }
        if let Some(v) = &q.verdict {
            add("verdict = ?", Some(v.into()));
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
            let sql = format!(
                "SELECT session_id FROM {table} WHERE instr({column}, ?1) > 0 LIMIT {}",
                MAX_LISTED_MATCHES * 4
            );
            let rows = self.with_conn(|c| c.query(&sql, args![needle]))?;
            // Rows past the limit may name more sessions: then the subquery filters.
            let truncated = rows.len() >= MAX_LISTED_MATCHES * 4;
            let mut ids = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for r in rows {
                let id = r.text(0)?;
                if seen.insert(id.clone()) {
                    ids.push(id);
                    if ids.len() > MAX_LISTED_MATCHES {
                        break;
                    }
                }
            }
            if ids.is_empty() {
                return Ok((Vec::new(), 0));
            }
            if ids.len() <= MAX_LISTED_MATCHES && !truncated {
                by_ids = true;
                add(&id_list(&ids), None);
            } else {
                add(
                    &format!("id IN (SELECT session_id FROM {table} WHERE instr({column}, ?) > 0)"),
                    Some(needle.into()),
                );
            }
        }
        // Keyset paging excludes nothing from the total: `total` counts every match.
        let filters = wh.len();
        let count_args = args.clone();
        if let Some(a) = &q.after {
            args.push(a.into());
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
        // (SQLite's unary `+` keeps the planner off those indexes; PostgreSQL plans that alone.)
        let order = if by_ids {
            "+start_us DESC, +id DESC"
        } else {
            "start_us DESC, id DESC"
        };
        let count_sql = where_of(&wh[..filters]);
        let where_sql = where_of(&wh);
        let limit = q.limit.unwrap_or(50).clamp(1, 1000);
        let offset = q.offset.unwrap_or(0);
        self.with_conn(|c| {
            let count = if c.is_postgres() && count_sql.is_empty() {
                "SELECT n FROM session_count".to_string()
            } else {
                format!("SELECT COUNT(*) FROM sessions {count_sql}")
            };
            let total = c
                .query_opt(&count, &count_args)?
                .map_or(Ok(0), |r| r.int(0))?;
            // PostgreSQL keeps the record in the table, not in the indexes: the page's ids are
            // found first (an index-only walk, however deep the offset), then only those 50
            // rows are read.
            let sql = if c.is_postgres() {
                format!(
                    "SELECT {RECORD_COLUMNS} FROM sessions WHERE id IN (SELECT id FROM sessions {where_sql} \
                     ORDER BY start_us DESC, id DESC LIMIT {limit} OFFSET {offset}) ORDER BY start_us DESC, id DESC"
                )
            } else {
                format!(
                    "SELECT {RECORD_COLUMNS} FROM sessions {where_sql} ORDER BY {order} LIMIT {limit} OFFSET {offset}"
                )
            };
            let rows = c.query(&sql, &args)?;
            Ok((rows_records(rows)?, total.max(0) as u64))
        })
    }

    /// Whether a session is in the catalog.
    pub fn exists(&self, id: &str) -> Result<bool> {
        self.with_conn(|c| {
            Ok(
                c.query_opt("SELECT 1 FROM sessions WHERE id = ?1", args![id])?
                    .is_some(),
            )
        })
    }

    /// Every record still marked active, on every node.
    pub fn active(&self) -> Result<Vec<SessionRecord>> {
        self.with_conn(|c| {
            rows_records(c.query(
                &format!(
                    "SELECT {RECORD_COLUMNS} FROM sessions WHERE active = 1 ORDER BY start_us, id"
                ),
                &[],
            )?)
        })
    }

    /// The records `node` holds marked active (at start-up: sessions its last run left open;
    /// records written before nodes were recorded count as this node's).
    pub fn active_on(&self, node: &str) -> Result<Vec<SessionRecord>> {
        self.with_conn(|c| {
            rows_records(c.query(
                &format!("SELECT {RECORD_COLUMNS} FROM sessions WHERE active = 1 AND (node_id = ?1 OR node_id IS NULL) ORDER BY start_us, id"),
                args![node],
            )?)
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

/// Catalogs for tests on both backends: SQLite in a temporary directory, and a database of its
/// own on the test process's PostgreSQL cluster (started on first use).
#[cfg(test)]
pub(crate) fn test_catalogs() -> Vec<(tempfile::TempDir, Arc<Catalog>)> {
    let lite = tempfile::tempdir().expect("tempdir");
    let c = Catalog::open(lite.path()).expect("sqlite catalog");
    let pg_dir = tempfile::tempdir().expect("tempdir");
    let url = trailgate_testkit::pg::shared()
        .and_then(|pg| pg.create_unique_database("catalog"))
        .expect("PostgreSQL for the catalog tests (scripts/install-test-deps.sh)");
    let p = Catalog::open_url(Some(&url), pg_dir.path()).expect("postgres catalog");
    vec![(lite, c), (pg_dir, p)]
}
