//! Configuration kept in the catalog: objects the control API manages (settings policies, the
//! global VNC options) as JSON by kind, scope and key, and the audit of every configuration
//! change (who, when, what, before and after). A change and its audit entry commit together.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{Catalog, db_err};
use crate::error::Result;

pub(super) const SCHEMA: &str = r#"
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
"#;

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
        self.with_reader(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT scope, key, body FROM config_objects WHERE kind = ?1 ORDER BY scope, key",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map([kind], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
                })
                .map_err(db_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (scope, key, body) = row.map_err(db_err)?;
                out.push(StoredObject {
                    scope,
                    key,
                    body: serde_json::from_str(&body)?,
                });
            }
            Ok(out)
        })
    }

    pub fn config_object(
        &self,
        kind: &str,
        scope: &str,
        key: &str,
    ) -> Result<Option<serde_json::Value>> {
        self.with_reader(|c| {
            let body: Option<String> = c
                .query_row(
                    "SELECT body FROM config_objects WHERE kind = ?1 AND scope = ?2 AND key = ?3",
                    params![kind, scope, key],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
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
        self.with_reader(|c| {
            let tx = c.unchecked_transaction().map_err(db_err)?;
            match body {
                Some(b) => tx
                    .execute(
                        "INSERT INTO config_objects (kind, scope, key, body, updated) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (kind, scope, key) DO UPDATE SET body = excluded.body, updated = excluded.updated",
                        params![kind, scope, key, b.to_string(), change.time],
                    )
                    .map_err(db_err)?,
                None => tx
                    .execute(
                        "DELETE FROM config_objects WHERE kind = ?1 AND scope = ?2 AND key = ?3",
                        params![kind, scope, key],
                    )
                    .map_err(db_err)?,
            };
            insert_change(&tx, change)?;
            tx.commit().map_err(db_err)
        })
    }

    /// Audits a change that stores nothing here (a reload of the configuration file).
    pub fn add_config_change(&self, change: &ConfigChange) -> Result<()> {
        self.with_reader(|c| insert_change(c, change))
    }

    /// Changes, newest first, and their total.
    pub fn config_changes(&self, limit: u32, offset: u64) -> Result<(Vec<ConfigChange>, u64)> {
        self.with_reader(|c| {
            let total: i64 = c
                .query_row("SELECT COUNT(*) FROM config_changes", [], |r| r.get(0))
                .map_err(db_err)?;
            let mut stmt = c
                .prepare_cached(
                    "SELECT n, time, by, action, object, before, after, detail FROM config_changes ORDER BY n DESC LIMIT ?1 OFFSET ?2",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![limit, offset as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, Option<String>>(7)?,
                    ))
                })
                .map_err(db_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (n, time, by, action, object, before, after, detail) = row.map_err(db_err)?;
                let parse = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
                out.push(ConfigChange {
                    n,
                    time,
                    by,
                    action,
                    object,
                    before: parse(before),
                    after: parse(after),
                    detail,
                });
            }
            Ok((out, total.max(0) as u64))
        })
    }

    /// Deletes the records of sessions (of `protocol`, or all) that ended before `cutoff_us`
    /// (unix microseconds); active sessions are never touched. Returns the trail paths of the
    /// deleted records (for the caller to delete) and how many went.
    pub fn delete_ended_before(
        &self,
        protocol: Option<&str>,
        cutoff_us: i64,
    ) -> Result<(Vec<String>, usize)> {
        self.with_reader(|c| {
            let tx = c.unchecked_transaction().map_err(db_err)?;
            let cond = "active = 0 AND (?1 IS NULL OR protocol = ?1)
                 AND CAST(json_extract(record, '$.end_unix_us') AS INTEGER) < ?2";
            let mut paths = Vec::new();
            {
                let mut stmt = tx
                    .prepare(&format!(
                        "SELECT trail_path FROM sessions WHERE {cond} AND trail_path IS NOT NULL"
                    ))
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![protocol, cutoff_us], |r| r.get::<_, String>(0))
                    .map_err(db_err)?;
                for r in rows {
                    paths.push(r.map_err(db_err)?);
                }
            }
            let n = tx
                .execute(
                    &format!("DELETE FROM sessions WHERE {cond}"),
                    params![protocol, cutoff_us],
                )
                .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok((paths, n))
        })
    }

    /// Sessions that ended before `cutoff_us` and still have a trail file: (id, path), at most
    /// `limit`.
    pub fn trails_ended_before(&self, cutoff_us: i64, limit: u32) -> Result<Vec<(String, String)>> {
        self.with_reader(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, trail_path FROM sessions WHERE active = 0 AND trail_path IS NOT NULL
                     AND CAST(json_extract(record, '$.end_unix_us') AS INTEGER) < ?1 LIMIT ?2",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![cutoff_us, limit], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db_err)?;
            rows.map(|r| r.map_err(db_err)).collect()
        })
    }
}

fn insert_change(c: &rusqlite::Connection, ch: &ConfigChange) -> Result<()> {
    c.execute(
        "INSERT INTO config_changes (time, by, action, object, before, after, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![ch.time, ch.by, ch.action, ch.object, json(&ch.before), json(&ch.after), ch.detail],
    )
    .map_err(db_err)?;
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
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(dir.path()).unwrap();
        c.insert_many(&[
            rec("old-vnc", "vnc", false, Some(100)),
            rec("new-vnc", "vnc", false, Some(10_000)),
            rec("active-vnc", "vnc", true, None),
            rec("old-ssh", "ssh", false, Some(100)),
        ])
        .unwrap();
        assert_eq!(c.delete_ended_before(Some("vnc"), 5_000).unwrap().1, 1);
        assert!(c.get("old-vnc").unwrap().is_none());
        for id in ["new-vnc", "active-vnc", "old-ssh"] {
            assert!(c.get(id).unwrap().is_some(), "{id}");
        }
    }

    #[test]
    fn objects_and_their_audit_commit_together() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(dir.path()).unwrap();
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
