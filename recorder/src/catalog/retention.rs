//! Retention: trails and session records past their age are deleted, never those of active
//! sessions. A trail that goes leaves its record behind, marked `trail.integrity = "deleted"`;
//! a record that goes takes its trail with it. Each deletion is logged.

use std::time::Duration;

use super::Catalog;
use crate::error::Result;

/// What one retention pass deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    pub trails: usize,
    pub records: usize,
}

fn cutoff(age: Duration) -> i64 {
    let now = time::OffsetDateTime::now_utc();
    let t = now - time::Duration::try_from(age).unwrap_or(time::Duration::MAX);
    (t.unix_timestamp_nanos() / 1000).max(i128::from(i64::MIN)) as i64
}

fn remove(path: &str) -> bool {
    match std::fs::remove_file(path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => {
            tracing::error!(%path, error = %e, "retention: cannot delete trail");
            false
        }
    }
}

impl Catalog {
    /// Deletes `node`'s trails older than `trails` and records older than `metadata` (by
    /// session end).
    pub fn apply_retention(
        &self,
        node: &str,
        trails: Option<Duration>,
        metadata: Option<Duration>,
    ) -> Result<Deleted> {
        let mut out = Deleted::default();
        if let Some(age) = metadata {
            let (paths, n) = self.delete_ended_before(node, None, cutoff(age))?;
            for p in &paths {
                if remove(p) {
                    out.trails += 1;
                }
            }
            out.records = n;
            if n > 0 {
                tracing::info!(records = n, trails = paths.len(), max_age = %humantime_fmt(age), "retention: session records deleted");
            }
        }
        if let Some(age) = trails {
            let c = cutoff(age);
            loop {
                let batch = self.trails_ended_before(node, c, 500)?;
                if batch.is_empty() {
                    break;
                }
                for (id, path) in batch {
                    if remove(&path) {
                        out.trails += 1;
                        tracing::info!(session = %id, %path, "retention: trail deleted");
                    }
                    if let Some(mut r) = self.get(&id)? {
                        r.trail.path = None;
                        r.trail.integrity = "deleted".into();
                        self.insert_many(&[r])?;
                    }
                }
            }
        }
        Ok(out)
    }
}

fn humantime_fmt(d: Duration) -> String {
    format!("{}s", d.as_secs())
}
