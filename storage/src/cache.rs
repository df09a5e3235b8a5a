//! Trails read back from the bucket: [`TrailCache::file`] gives a local file for a session's
//! trail, the recording node's own copy while it has one, else the object downloaded (streamed,
//! never held in memory) into `<data_dir>/cache/`. The cache is bounded: after each download
//! the least recently used files go until it fits (a reader that has a file open keeps reading
//! it). One download per trail at a time; others wait for it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use trailgate_recorder::record::SessionRecord;

use crate::store::TrailStore;
use crate::{Result, StorageError};

pub struct TrailCache {
    dir: PathBuf,
    max_bytes: u64,
    store: Option<TrailStore>,
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl TrailCache {
    pub fn new(dir: PathBuf, max_bytes: u64, store: Option<TrailStore>) -> TrailCache {
        TrailCache {
            dir,
            max_bytes,
            store,
            fetching: Mutex::new(HashMap::new()),
        }
    }

    pub fn store(&self) -> Option<&TrailStore> {
        self.store.as_ref()
    }

    /// Whether the trail is in the bucket this node reads.
    pub fn can_read_stored(&self, rec: &SessionRecord) -> bool {
        self.store.is_some() && rec.trail.storage.as_deref() == Some("stored")
    }

    /// A local file holding the stored trail (the caller checks for the node's own copy first).
    pub async fn file(&self, rec: &SessionRecord) -> Result<PathBuf> {
        let Some(store) = self
            .store
            .as_ref()
            .filter(|_| rec.trail.storage.as_deref() == Some("stored"))
        else {
            return Err(StorageError::Unavailable(rec.id.clone()));
        };
        let dest = self.dir.join(format!("{}.trail", rec.id));
        let lock = {
            let mut m = self
                .fetching
                .lock()
                .map_err(|_| StorageError::Unavailable(rec.id.clone()))?;
            m.entry(rec.id.clone()).or_default().clone()
        };
        let _g = lock.lock().await;
        if dest.exists() {
            touch(&dest);
        } else {
            tokio::fs::create_dir_all(&self.dir)
                .await
                .map_err(|e| StorageError::io(&self.dir, e))?;
            let n = store.download_to(&store.key_for(&rec.id), &dest).await?;
            tracing::info!(session = %rec.id, bytes = n, "trail fetched from object storage into the cache");
            let (dir, max, keep) = (self.dir.clone(), self.max_bytes, dest.clone());
            let _ = tokio::task::spawn_blocking(move || evict(&dir, max, &keep)).await;
        }
        if let Ok(mut m) = self.fetching.lock()
            && Arc::strong_count(&lock) <= 2
        {
            m.remove(&rec.id);
        }
        Ok(dest)
    }
}

fn touch(p: &Path) {
    if let Ok(f) = std::fs::File::options().append(true).open(p) {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// Removes the least recently used cached trails until the cache fits in `max` (never `keep`).
fn evict(dir: &Path, max: u64, keep: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(SystemTime, u64, PathBuf)> = rd
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            m.is_file().then(|| {
                (
                    m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    m.len(),
                    e.path(),
                )
            })
        })
        .collect();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    files.sort();
    for (_, len, p) in files {
        if total <= max {
            break;
        }
        if p == keep {
            continue;
        }
        if std::fs::remove_file(&p).is_ok() {
            total -= len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_drops_the_least_recently_used_first_and_keeps_the_new_one() {
        let d = tempfile::tempdir().unwrap();
        let t0 = SystemTime::now() - std::time::Duration::from_secs(100);
        for (i, name) in ["old", "mid", "new"].iter().enumerate() {
            let p = d.path().join(name);
            std::fs::write(&p, vec![0u8; 100]).unwrap();
            let f = std::fs::File::options().append(true).open(&p).unwrap();
            f.set_modified(t0 + std::time::Duration::from_secs(i as u64 * 10))
                .unwrap();
        }
        evict(d.path(), 150, &d.path().join("old"));
        assert!(d.path().join("old").exists(), "kept: it was just fetched");
        assert!(!d.path().join("mid").exists());
        assert!(!d.path().join("new").exists());
        evict(d.path(), 1000, Path::new("/"));
        assert!(d.path().join("old").exists());
    }
}
