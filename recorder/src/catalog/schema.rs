//! The catalog's schema: the sessions table with one index per list filter, trail downloads,
//! exec commands, and the changes that bring an older catalog up to date (`PRAGMA user_version`).

use rusqlite::Connection;

use super::db_err;
use crate::error::Result;

pub(super) const SCHEMA: &str = r#"
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
"#;

/// Schema changes of existing catalogs, by `PRAGMA user_version`.
pub(super) fn migrate(c: &Connection) -> Result<()> {
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db_err)?;
    if v < 1 {
        // Exec commands of the sessions recorded before the `command` filter existed.
        c.execute_batch(
            "BEGIN;
             DELETE FROM session_commands;
             INSERT INTO session_commands (session_id, command)
                 SELECT s.id, json_extract(ch.value, '$.command')
                 FROM sessions s, json_each(s.record, '$.channels') ch
                 WHERE json_extract(ch.value, '$.command') IS NOT NULL;
             PRAGMA user_version = 1;
             COMMIT;",
        )
        .map_err(db_err)?;
    }
    Ok(())
}
