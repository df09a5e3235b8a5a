//! The files index of each session in the catalog: the transfers found in its sealed trail (as
//! `trail files` lists them), their paths for the `file` filter, and their number on the record.
//! Written once the trail is sealed (or by `reindex`); sessions without one are indexed on demand.

use super::Catalog;
use super::db::args;
use crate::error::Result;
use crate::transfers::Transfers;

impl Catalog {
    /// Stores a session's files index (replacing an earlier one).
    pub fn set_transfers(&self, session_id: &str, t: &Transfers) -> Result<()> {
        let json = serde_json::to_string(t)?;
        self.with_conn(|c| {
            c.tx(|c| {
                c.exec(
                    "DELETE FROM session_files WHERE session_id = ?1",
                    args![session_id],
                )?;
                c.exec(
                    "INSERT INTO session_transfers (session_id, files, transfers) VALUES (?1, ?2, ?3)
                     ON CONFLICT(session_id) DO UPDATE SET files = ?2, transfers = ?3",
                    args![session_id, t.files.len() as i64, json.as_str()],
                )?;
                for f in &t.files {
                    c.exec(
                        "INSERT INTO session_files (session_id, n, path) VALUES (?1, ?2, ?3)",
                        args![session_id, f.n as i64, f.path.as_str()],
                    )?;
                }
                Ok(())
            })
        })
    }

    /// A session's stored files index (`{files, operations}`), if it has been indexed.
    pub fn transfers(&self, session_id: &str) -> Result<Option<serde_json::Value>> {
        self.with_conn(|c| {
            match c.query_opt(
                "SELECT transfers FROM session_transfers WHERE session_id = ?1",
                args![session_id],
            )? {
                Some(r) => Ok(Some(serde_json::from_str(&r.text(0)?)?)),
                None => Ok(None),
            }
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

#[cfg(test)]
mod tests {
    use super::super::Query;
    use super::*;
    use crate::record::{ChannelRecord, SessionRecord};

    fn rec(id: &str, command: Option<&str>) -> SessionRecord {
        let mut r: SessionRecord = serde_json::from_value(serde_json::json!({
            "id": id, "protocol": "ssh", "active": false, "status": "disconnected",
            "client": {"ip": "127.0.0.1", "port": 1}, "target": {}, "user": {},
            "start_time": "2026-01-01T00:00:00Z", "start_unix_us": 1,
            "bytes_client_to_server": 0, "bytes_server_to_client": 0,
            "channels": [], "policies": [], "trail": {"size": 0, "integrity": "none"}, "node_id": "n"
        }))
        .unwrap();
        r.channels = command
            .map(|c| ChannelRecord {
                id: 1,
                command: Some(c.into()),
                ..Default::default()
            })
            .into_iter()
            .collect();
        r
    }

    fn file(n: usize, path: &str) -> crate::transfers::TransferredFile {
        crate::transfers::TransferredFile {
            n,
            channel: 1,
            path: path.into(),
            direction: "upload",
            bytes: 0,
            ranges: vec![],
            contiguous: true,
            sha256: None,
            opened_s: 0.0,
            closed_s: None,
            status: "ok",
            error: None,
        }
    }

    fn ids(c: &Catalog, q: Query) -> Vec<String> {
        let mut v: Vec<String> = c.list(&q).unwrap().0.into_iter().map(|r| r.id).collect();
        v.sort();
        v
    }

    #[test]
    fn command_and_file_filters_match_substrings_literally() {
        // Substrings, case-sensitive: commands and paths are.
        for (_dir, c) in crate::catalog::test_catalogs() {
            let c = &*c;
            c.insert_many(&[
                rec("a", Some("systemctl Restart nginx")),
                rec("b", Some("echo 100%_done")),
                rec("c", None),
            ])
            .unwrap();
            // A session's commands are replaced with its record (no stale rows).
            c.insert_many(&[rec("a", Some("systemctl restart nginx"))])
                .unwrap();
            let t = |files: Vec<crate::transfers::TransferredFile>| crate::transfers::Transfers {
                files,
                operations: vec![],
            };
            c.set_transfers(
                "c",
                &t(vec![file(0, "/srv/naïve name.txt"), file(1, "/tmp/x")]),
            )
            .unwrap();
            c.set_transfers("c", &t(vec![file(0, "/srv/naïve name.txt")]))
                .unwrap();
            let cmd = |s: &str| Query {
                command: Some(s.into()),
                ..Default::default()
            };
            let path = |s: &str| Query {
                file: Some(s.into()),
                ..Default::default()
            };
            assert_eq!(ids(c, cmd("restart ngi")), ["a"]);
            assert!(
                ids(c, cmd("Restart")).is_empty(),
                "case-sensitive, replaced rows"
            );
            assert_eq!(ids(c, cmd("100%_")), ["b"]);
            assert!(ids(c, cmd("100_%")).is_empty());
            assert_eq!(ids(c, cmd("%_")), ["b"], "wildcards are literal");
            assert!(ids(c, cmd("x%")).is_empty());
            assert_eq!(ids(c, cmd("n")), ["a", "b"]);
            assert_eq!(ids(c, path("ïve na")), ["c"]);
            assert!(ids(c, path("/tmp/x")).is_empty(), "replaced index");
            assert!(ids(c, path("\"")).is_empty());
            assert!(ids(c, path("a\"b\"c")).is_empty(), "quotes are literal");
            assert_eq!(c.get("c").unwrap().unwrap().files, 1);
        }
    }
}
