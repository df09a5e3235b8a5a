//! The files index of each session in the catalog: the transfers found in its sealed trail (as
//! `trail files` lists them), their paths for the `file` filter, and their number on the record.
//! Written once the trail is sealed (or by `reindex`); sessions without one are indexed on demand.

use rusqlite::{OptionalExtension, params};

use super::{Catalog, db_err};
use crate::error::Result;
use crate::transfers::Transfers;

pub(super) const SCHEMA: &str = r#"
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

impl Catalog {
    /// Stores a session's files index (replacing an earlier one).
    pub fn set_transfers(&self, session_id: &str, t: &Transfers) -> Result<()> {
        let json = serde_json::to_string(t)?;
        self.with_reader(|c| {
            let tx = c.unchecked_transaction().map_err(db_err)?;
            tx.execute(
                "DELETE FROM session_files WHERE session_id = ?1",
                [session_id],
            )
            .map_err(db_err)?;
            tx.execute(
                "INSERT INTO session_transfers (session_id, files, transfers) VALUES (?1, ?2, ?3)
                 ON CONFLICT(session_id) DO UPDATE SET files = ?2, transfers = ?3",
                params![session_id, t.files.len() as i64, json],
            )
            .map_err(db_err)?;
            for f in &t.files {
                tx.execute(
                    "INSERT INTO session_files (session_id, n, path) VALUES (?1, ?2, ?3)",
                    params![session_id, f.n as i64, f.path],
                )
                .map_err(db_err)?;
            }
            tx.commit().map_err(db_err)
        })
    }

    /// A session's stored files index (`{files, operations}`), if it has been indexed.
    pub fn transfers(&self, session_id: &str) -> Result<Option<serde_json::Value>> {
        self.with_reader(|c| {
            let s: Option<String> = c
                .query_row(
                    "SELECT transfers FROM session_transfers WHERE session_id = ?1",
                    [session_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            s.map(|s| serde_json::from_str(&s).map_err(Into::into))
                .transpose()
        })
    }
}

/// Whether a session may have transferred files: it had an SFTP subsystem, an scp or an rsync
/// command.
/// Others are not indexed (a shell session's trail would be read for nothing).
pub fn may_have_files(rec: &crate::record::SessionRecord) -> bool {
    rec.channels.iter().any(|c| {
        c.subsystem.as_deref() == Some("sftp")
            || c.command.as_deref().is_some_and(|cmd| {
                crate::transfers::scp::ScpStream::from_command(cmd).is_some()
                    || cmd.starts_with("rsync --server")
            })
    })
}
