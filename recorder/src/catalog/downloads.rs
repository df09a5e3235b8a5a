//! The audit of trail downloads: who fetched which session's trail, when, in what format and
//! range, and whether live.

use serde::{Deserialize, Serialize};

use super::Catalog;
use super::db::args;
use crate::error::Result;

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

impl Catalog {
    pub fn add_download(&self, d: &TrailDownload) -> Result<()> {
        self.with_conn(|c| {
            c.exec(
                "INSERT INTO trail_downloads (session_id, token, time, format, range, follow) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                args![&d.session_id, &d.token, &d.time, &d.format, d.range.as_deref(), d.follow],
            )?;
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
        self.with_conn(|c| {
            let total = c
                .query_opt("SELECT COUNT(*) FROM trail_downloads WHERE session_id = ?1", args![id])?
                .map_or(Ok(0), |r| r.int(0))?;
            let rows = c.query(
                "SELECT session_id, token, time, format, range, follow FROM trail_downloads WHERE session_id = ?1 ORDER BY n LIMIT ?2 OFFSET ?3",
                args![id, limit, offset as i64],
            )?;
            let items = rows
                .iter()
                .map(|r| {
                    Ok(TrailDownload {
                        session_id: r.text(0)?,
                        token: r.text(1)?,
                        time: r.text(2)?,
                        format: r.text(3)?,
                        range: r.opt_text(4)?,
                        follow: r.int(5)? != 0,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((items, total.max(0) as u64))
        })
    }
}
