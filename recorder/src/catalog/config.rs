//! Configuration kept in the catalog: objects the control API manages (settings policies, the
//! global VNC options) as JSON by kind, scope and key, and the audit of every configuration
//! change (who, when, what, before and after). A change and its audit entry commit together.

use serde::{Deserialize, Serialize};

use super::Catalog;
use super::db::{Conn, args};
use crate::error::Result;

/// One configuration change, as `GET /api/v1/configuration/changes` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConfigChange {
    /// Sequence number (assigned by the catalog).
    #[serde(default)]
    pub n: i64,
    pub time: String,
    /// The API token's name, or `SIGHUP` for a reload of the file.
    pub by: String,
    /// `create`, `replace`, `delete`, `update`, `reload`, `reload-refused`.
    pub action: String,
    /// What changed: the object's API path, or the configuration file.
    pub object: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A stored object: its scope (e.g. the protocol), key and JSON body.
#[derive(Debug, Clone)]
pub struct StoredObject {
    pub scope: String,
    pub key: String,
    pub body: serde_json::Value,
}

fn json(v: &Option<serde_json::Value>) -> Option<String> {
    v.as_ref().map(|v| v.to_string())
}

impl Catalog {
    /// Every stored object of a kind.
    pub fn config_objects(&self, kind: &str) -> Result<Vec<StoredObject>> {
        self.with_conn(|c| {
            c.query(
                "SELECT scope, key, body FROM config_objects WHERE kind = ?1 ORDER BY scope, key",
                args![kind],
            )?
            .iter()
            .map(|r| {
                Ok(StoredObject {
                    scope: r.text(0)?,
                    key: r.text(1)?,
                    body: serde_json::from_str(&r.text(2)?)?,
                })
            })
            .collect()
        })
    }

    pub fn config_object(
        &self,
        kind: &str,
        scope: &str,
        key: &str,
    ) -> Result<Option<serde_json::Value>> {
        self.with_conn(|c| {
            let row = c.query_opt(
                "SELECT body FROM config_objects WHERE kind = ?1 AND scope = ?2 AND key = ?3",
                args![kind, scope, key],
            )?;
            match row {
                Some(r) => Ok(Some(serde_json::from_str(&r.text(0)?)?)),
                None => Ok(None),
            }
        })
    }

    /// Creates or replaces an object (`body: None` deletes it) and audits the change, in one
    /// transaction.
    pub fn put_config_object(
        &self,
        kind: &str,
        scope: &str,
        key: &str,
        body: Option<&serde_json::Value>,
        change: &ConfigChange,
    ) -> Result<()> {
        self.with_conn(|c| {
            c.tx(|c| {
                match body {
                    Some(b) => c.exec(
                        "INSERT INTO config_objects (kind, scope, key, body, updated) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (kind, scope, key) DO UPDATE SET body = excluded.body, updated = excluded.updated",
                        args![kind, scope, key, b.to_string(), &change.time],
                    )?,
                    None => c.exec(
                        "DELETE FROM config_objects WHERE kind = ?1 AND scope = ?2 AND key = ?3",
                        args![kind, scope, key],
                    )?,
                };
                insert_change(c, change)
            })
        })
    }

    /// Audits a change that stores nothing here (a reload of the configuration file).
    pub fn add_config_change(&self, change: &ConfigChange) -> Result<()> {
        self.with_conn(|c| insert_change(c, change))
    }

    /// Changes, newest first, and their total.
    pub fn config_changes(&self, limit: u32, offset: u64) -> Result<(Vec<ConfigChange>, u64)> {
        self.with_conn(|c| {
            let total = c
                .query_opt("SELECT COUNT(*) FROM config_changes", &[])?
                .map_or(Ok(0), |r| r.int(0))?;
            let rows = c.query(
                "SELECT n, time, \"by\", action, object, before, after, detail FROM config_changes ORDER BY n DESC LIMIT ?1 OFFSET ?2",
                args![limit, offset as i64],
            )?;
            let parse = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
            let out = rows
                .iter()
                .map(|r| {
                    Ok(ConfigChange {
                        n: r.int(0)?,
                        time: r.text(1)?,
                        by: r.text(2)?,
                        action: r.text(3)?,
                        object: r.text(4)?,
                        before: parse(r.opt_text(5)?),
                        after: parse(r.opt_text(6)?),
                        detail: r.opt_text(7)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((out, total.max(0) as u64))
        })
    }

    /// Deletes the records of `node`'s sessions (of `protocol`, or all) that ended before
    /// `cutoff_us` (unix microseconds); active sessions are never touched, nor other nodes'
    /// (each node cleans up after itself: their trails are on their disks). Returns the trail
    /// paths of the deleted records (for the caller to delete) and how many went.
    pub fn delete_ended_before(
        &self,
        node: &str,
        protocol: Option<&str>,
        cutoff_us: i64,
    ) -> Result<(Vec<String>, usize)> {
        self.with_conn(|c| {
            c.tx(|c| {
                let cond = "active = 0 AND (CAST(?1 AS TEXT) IS NULL OR protocol = ?1) AND end_us < ?2
                    AND (node_id = ?3 OR node_id IS NULL)";
                let paths = c
                    .query(
                        &format!("SELECT trail_path FROM sessions WHERE {cond} AND trail_path IS NOT NULL"),
                        args![protocol, cutoff_us, node],
                    )?
                    .iter()
                    .map(|r| r.text(0))
                    .collect::<Result<Vec<_>>>()?;
                let n = c.exec(
                    &format!("DELETE FROM sessions WHERE {cond}"),
                    args![protocol, cutoff_us, node],
                )?;
                if c.is_postgres() && n > 0 {
                    c.exec("UPDATE session_count SET n = n - ?1", args![n as i64])?;
                }
                Ok((paths, n as usize))
            })
        })
    }

    /// `node`'s sessions that ended before `cutoff_us` and still have a trail file on its disk:
    /// (id, path), at most `limit`.
    pub fn trails_ended_before(
        &self,
        node: &str,
        cutoff_us: i64,
        limit: u32,
    ) -> Result<Vec<(String, String)>> {
        self.with_conn(|c| {
            c.query(
                "SELECT id, trail_path FROM sessions WHERE active = 0 AND trail_path IS NOT NULL
                 AND end_us < ?1 AND (node_id = ?3 OR node_id IS NULL) LIMIT ?2",
                args![cutoff_us, limit, node],
            )?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?)))
            .collect()
        })
    }
}

fn insert_change(c: &mut Conn, ch: &ConfigChange) -> Result<()> {
    c.exec(
        "INSERT INTO config_changes (time, \"by\", action, object, before, after, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        args![&ch.time, &ch.by, &ch.action, &ch.object, json(&ch.before), json(&ch.after), ch.detail.as_deref()],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::SessionRecord;

    fn rec(id: &str, protocol: &str, active: bool, end_us: Option<i64>) -> SessionRecord {
        let mut r: SessionRecord = serde_json::from_value(serde_json::json!({
            "id": id, "protocol": protocol, "active": active, "status": "disconnected",
            "client": {"ip": "127.0.0.1", "port": 1}, "target": {}, "user": {},
            "start_time": "2026-01-01T00:00:00Z", "start_unix_us": 1,
            "bytes_client_to_server": 0, "bytes_server_to_client": 0,
            "channels": [], "policies": [], "trail": {"size": 0, "integrity": "none"}, "node_id": "n"
        }))
        .unwrap();
        r.end_unix_us = end_us;
        r
    }

    #[test]
    fn cleanup_deletes_old_ended_sessions_of_one_protocol_only() {
        for (_dir, c) in crate::catalog::test_catalogs() {
            let c = &*c;
            c.insert_many(&[
                rec("old-vnc", "vnc", false, Some(100)),
                rec("new-vnc", "vnc", false, Some(10_000)),
                rec("active-vnc", "vnc", true, None),
                rec("old-ssh", "ssh", false, Some(100)),
            ])
            .unwrap();
            assert_eq!(c.delete_ended_before("n", Some("vnc"), 5_000).unwrap().1, 1);
            assert!(c.get("old-vnc").unwrap().is_none());
            for id in ["new-vnc", "active-vnc", "old-ssh"] {
                assert!(c.get(id).unwrap().is_some(), "{id}");
            }
            // The unfiltered total follows deletions (PostgreSQL keeps it in a counter).
            assert_eq!(c.list(&super::super::Query::default()).unwrap().1, 3);
        }
    }

    #[test]
    fn objects_and_their_audit_commit_together() {
        for (_dir, c) in crate::catalog::test_catalogs() {
            let c = &*c;
            let change = |action: &str| ConfigChange {
                n: 0,
                time: "2026-12-06T00:00:00Z".into(),
                by: "admin".into(),
                action: action.into(),
                object: "/x".into(),
                before: None,
                after: Some(serde_json::json!({"timeout": 1})),
                detail: None,
            };
            let body = serde_json::json!({"timeout": 1});
            c.put_config_object("k", "ssh", "a", Some(&body), &change("create"))
                .unwrap();
            assert_eq!(c.config_object("k", "ssh", "a").unwrap(), Some(body));
            assert_eq!(c.config_objects("k").unwrap().len(), 1);
            c.put_config_object("k", "ssh", "a", None, &change("delete"))
                .unwrap();
            assert!(c.config_object("k", "ssh", "a").unwrap().is_none());
            let (items, total) = c.config_changes(10, 0).unwrap();
            assert_eq!(total, 2);
            assert_eq!(items[0].action, "delete");
            assert!(items[0].n > items[1].n);
        }
    }
}
