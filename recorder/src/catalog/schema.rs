//! The catalog's schema on both backends and the migrations that bring an older catalog up to
//! date at start-up: SQLite counts versions in `PRAGMA user_version`, PostgreSQL in the
//! `schema_version` table (under an advisory lock, so nodes starting together migrate once).
//!
//! Tables: `sessions` (one row per session, the record as JSON beside the filter columns, one
//! index per list filter), `trail_downloads`, `session_commands`, `config_objects`,
//! `config_changes`, `session_transfers`, `session_files`, and `nodes` (the gateways sharing
//! the catalog, with their heartbeats).

use super::db::Conn;
use crate::error::Result;

/// The schema version this build writes.
pub(super) const VERSION: i64 = 2;

const SQLITE_BASE: &str = r#"
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    start_us INTEGER NOT NULL,
    active INTEGER NOT NULL,
    protocol TEXT NOT NULL,
    user TEXT,
    target TEXT,
    verdict TEXT,
    status TEXT NOT NULL,
    trail_path TEXT,
    record TEXT NOT NULL
);
-- Every list is ordered by (start_us DESC, id DESC): each filter has an index in that order, so
-- a page is read straight from an index, never sorted. The other filter columns ride along in
-- each index so that combined filters and their COUNT(*) never touch the (large) rows.
CREATE INDEX IF NOT EXISTS sessions_by_start ON sessions(start_us DESC, id DESC, active, verdict);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions(user, start_us DESC, id DESC, target, verdict, active, protocol);
CREATE INDEX IF NOT EXISTS sessions_by_target ON sessions(target, start_us DESC, id DESC, user, verdict, active, protocol);
CREATE INDEX IF NOT EXISTS sessions_by_verdict ON sessions(verdict, start_us DESC, id DESC, user, target, active, protocol);
CREATE INDEX IF NOT EXISTS sessions_by_active ON sessions(active, start_us DESC, id DESC, user, target, verdict, protocol);
CREATE INDEX IF NOT EXISTS sessions_by_protocol ON sessions(protocol, start_us DESC, id DESC, user, target, verdict, active);
CREATE TABLE IF NOT EXISTS trail_downloads (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    token TEXT NOT NULL,
    time TEXT NOT NULL,
    format TEXT NOT NULL,
    range TEXT,
    follow INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS trail_downloads_session ON trail_downloads(session_id, n);
-- Exec commands of each session (the `command` filter), kept by every upsert.
CREATE TABLE IF NOT EXISTS session_commands (
    session_id TEXT NOT NULL,
    command TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS session_commands_session ON session_commands(session_id);
CREATE TABLE IF NOT EXISTS config_objects (
    kind TEXT NOT NULL,
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    body TEXT NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (kind, scope, key)
);
CREATE TABLE IF NOT EXISTS config_changes (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    by TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    before TEXT,
    after TEXT,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS session_transfers (
    session_id TEXT PRIMARY KEY,
    files INTEGER NOT NULL,
    transfers TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS session_files (
    session_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (session_id, n)
);
"#;

/// Version 2 on SQLite: the session's end, end code, node and trail storage as columns
/// (retention, node loss and uploads query them), and the nodes table.
const SQLITE_V2: &str = r#"
ALTER TABLE sessions ADD COLUMN end_us INTEGER;
ALTER TABLE sessions ADD COLUMN node_id TEXT;
ALTER TABLE sessions ADD COLUMN storage TEXT;
ALTER TABLE sessions ADD COLUMN end_code TEXT;
UPDATE sessions SET end_us = CAST(json_extract(record, '$.end_unix_us') AS INTEGER),
    node_id = json_extract(record, '$.node_id'),
    storage = json_extract(record, '$.trail.storage'),
    end_code = json_extract(record, '$.end_reason_code');
CREATE INDEX IF NOT EXISTS sessions_lost_by_node ON sessions(node_id) WHERE end_code = 'gateway_node_lost';
CREATE INDEX IF NOT EXISTS sessions_active_by_node ON sessions(node_id) WHERE active = 1;
CREATE INDEX IF NOT EXISTS sessions_ended ON sessions(end_us) WHERE active = 0;
CREATE INDEX IF NOT EXISTS sessions_uploads ON sessions(node_id, storage)
    WHERE storage IN ('uploading', 'upload_failed');
CREATE TABLE IF NOT EXISTS nodes (
    id TEXT PRIMARY KEY,
    api_url TEXT,
    started_us INTEGER NOT NULL,
    heartbeat_us INTEGER NOT NULL,
    state TEXT NOT NULL
);
"#;

/// The whole schema at [`VERSION`] on PostgreSQL (every integer 64-bit; `user` and `by`
/// quoted, as PostgreSQL reserves them).
const POSTGRES_V2: &str = r#"
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    start_us BIGINT NOT NULL,
    active BIGINT NOT NULL,
    protocol TEXT NOT NULL,
    "user" TEXT,
    target TEXT,
    verdict TEXT,
    status TEXT NOT NULL,
    trail_path TEXT,
    record TEXT NOT NULL,
    end_us BIGINT,
    node_id TEXT,
    storage TEXT,
    end_code TEXT
);
CREATE INDEX sessions_by_start ON sessions(start_us DESC, id DESC) INCLUDE (active, verdict);
CREATE INDEX sessions_by_user ON sessions("user", start_us DESC, id DESC) INCLUDE (target, verdict, active, protocol);
CREATE INDEX sessions_by_target ON sessions(target, start_us DESC, id DESC) INCLUDE ("user", verdict, active, protocol);
CREATE INDEX sessions_by_verdict ON sessions(verdict, start_us DESC, id DESC) INCLUDE ("user", target, active, protocol);
CREATE INDEX sessions_by_active ON sessions(active, start_us DESC, id DESC) INCLUDE ("user", target, verdict, protocol);
CREATE INDEX sessions_by_protocol ON sessions(protocol, start_us DESC, id DESC) INCLUDE ("user", target, verdict, active);
CREATE INDEX sessions_active_by_node ON sessions(node_id) WHERE active = 1;
CREATE INDEX sessions_ended ON sessions(end_us) WHERE active = 0;
-- The narrowest index over every session: unfiltered counts (a list's `total`) read it alone,
-- not the table with its records.
CREATE INDEX sessions_by_time ON sessions(start_us);
CREATE INDEX sessions_lost_by_node ON sessions(node_id) WHERE end_code = 'gateway_node_lost';
CREATE INDEX sessions_uploads ON sessions(node_id, storage)
    WHERE storage IN ('uploading', 'upload_failed');
-- The number of rows of `sessions`, kept by every insert and delete (an unfiltered list's total).
CREATE TABLE session_count (n BIGINT NOT NULL);
INSERT INTO session_count (n) VALUES (0);
CREATE TABLE trail_downloads (
    n BIGSERIAL PRIMARY KEY,
    session_id TEXT NOT NULL,
    token TEXT NOT NULL,
    time TEXT NOT NULL,
    format TEXT NOT NULL,
    range TEXT,
    follow BIGINT NOT NULL
);
CREATE INDEX trail_downloads_session ON trail_downloads(session_id, n);
CREATE TABLE session_commands (
    session_id TEXT NOT NULL,
    command TEXT NOT NULL
);
CREATE INDEX session_commands_session ON session_commands(session_id);
CREATE TABLE config_objects (
    kind TEXT NOT NULL,
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    body TEXT NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (kind, scope, key)
);
CREATE TABLE config_changes (
    n BIGSERIAL PRIMARY KEY,
    time TEXT NOT NULL,
    "by" TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    before TEXT,
    after TEXT,
    detail TEXT
);
CREATE TABLE session_transfers (
    session_id TEXT PRIMARY KEY,
    files BIGINT NOT NULL,
    transfers TEXT NOT NULL
);
CREATE TABLE session_files (
    session_id TEXT NOT NULL,
    n BIGINT NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (session_id, n)
);
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    api_url TEXT,
    started_us BIGINT NOT NULL,
    heartbeat_us BIGINT NOT NULL,
    state TEXT NOT NULL
);
"#;

/// Creates the schema or migrates it to [`VERSION`]; refuses a catalog newer than this build.
pub(super) fn migrate(c: &mut Conn) -> Result<()> {
    if c.is_postgres() {
        return migrate_postgres(c);
    }
    c.batch(SQLITE_BASE)?;
    let v = c
        .query_opt("PRAGMA user_version", &[])?
        .map_or(Ok(0), |r| r.int(0))?;
    too_new(v)?;
    if v < 1 {
        // Exec commands of the sessions recorded before the `command` filter existed.
        c.batch(
            "BEGIN;
             DELETE FROM session_commands;
             INSERT INTO session_commands (session_id, command)
                 SELECT s.id, json_extract(ch.value, '$.command')
                 FROM sessions s, json_each(s.record, '$.channels') ch
                 WHERE json_extract(ch.value, '$.command') IS NOT NULL;
             PRAGMA user_version = 1;
             COMMIT;",
        )?;
    }
    if v < 2 {
        c.batch(&format!(
            "BEGIN; {SQLITE_V2} PRAGMA user_version = 2; COMMIT;"
        ))?;
    }
    Ok(())
}

fn migrate_postgres(c: &mut Conn) -> Result<()> {
    c.tx(|c| {
        // One node migrates; the others wait here and then find the work done.
        c.batch("SELECT pg_advisory_xact_lock(7261001)")?;
        c.batch("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
        let v = match c.query_opt("SELECT version FROM schema_version", &[])? {
            Some(r) => r.int(0)?,
            None => {
                c.batch("INSERT INTO schema_version (version) VALUES (0)")?;
                0
            }
        };
        too_new(v)?;
        if v < 2 {
            c.batch(POSTGRES_V2)?;
        }
        c.batch(&format!("UPDATE schema_version SET version = {VERSION}"))
    })
}

fn too_new(v: i64) -> Result<()> {
    if v > VERSION {
        return Err(crate::error::RecorderError::Catalog(format!(
            "the catalog's schema is version {v}, newer than this gateway's {VERSION}: upgrade the gateway"
        )));
    }
    Ok(())
}
