//! The node's upload queue. It lives in the catalog, not in memory: a session whose trail is
//! closed gets `trail.storage = "uploading"` in its final record, and the uploader works
//! through this node's records in `uploading` or `upload_failed` (so a restart, or a crash,
//! loses nothing: the next start finds them). For each: upload, verify the object (size and
//! SHA-256 read back), record `stored` with the SHA-256, and only then delete the local copy.
//! A failure records `upload_failed` with the reason and is retried with backoff (1 s doubling
//! to a minute) until the store answers again.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use trailgate_recorder::catalog::Catalog;
use trailgate_recorder::record::SessionRecord;

use crate::store::TrailStore;
use crate::{Result, StorageError};

const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// Without a wake-up, the queue is looked at this often anyway.
const POLL: Duration = Duration::from_secs(30);
const BATCH: u32 = 64;

/// For `/metrics`.
#[derive(Debug, Default)]
pub struct UploadCounters {
    pub uploaded: AtomicU64,
    pub failed: AtomicU64,
    pub bytes: AtomicU64,
}

pub struct Uploader {
    wake: Notify,
    pub counters: UploadCounters,
}

impl Uploader {
    /// Starts the node's uploader on the shutdown root's tracker.
    pub fn spawn(
        store: TrailStore,
        catalog: Arc<Catalog>,
        node: String,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Arc<Uploader> {
        let up = Arc::new(Uploader {
            wake: Notify::new(),
            counters: UploadCounters::default(),
        });
        tracker.spawn(run(up.clone(), store, catalog, node, shutdown));
        up
    }

    /// A trail was closed: look at the queue now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

async fn run(
    up: Arc<Uploader>,
    store: TrailStore,
    catalog: Arc<Catalog>,
    node: String,
    shutdown: CancellationToken,
) {
    let mut backoff = RETRY_MIN;
    loop {
        let (cat, n) = (catalog.clone(), node.clone());
        let pending =
            match tokio::task::spawn_blocking(move || cat.pending_uploads(&n, BATCH)).await {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "reading the upload queue failed");
                    Vec::new()
                }
                Err(_) => Vec::new(),
            };
        let full = pending.len() >= BATCH as usize;
        let mut failed = false;
        for rec in pending {
            if shutdown.is_cancelled() {
                return;
            }
            let id = rec.id.clone();
            let res = tokio::select! {
                r = upload_one(&store, &catalog, &up, rec) => r,
                _ = shutdown.cancelled() => return,
            };
            if let Err(e) = res {
                failed = true;
                up.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(session = %id, error = %e, retry_in = ?backoff, "trail upload failed; will retry");
                mark_failed(&catalog, &id, &e.to_string()).await;
            }
        }
        let wait = if failed {
            let w = backoff;
            backoff = (backoff * 2).min(RETRY_MAX);
            w
        } else {
            backoff = RETRY_MIN;
            if full { Duration::ZERO } else { POLL }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = up.wake.notified(), if !failed => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn upload_one(
    store: &TrailStore,
    catalog: &Arc<Catalog>,
    up: &Uploader,
    rec: SessionRecord,
) -> Result<()> {
    let key = store.key_for(&rec.id);
    let local = rec.trail.path.clone();
    let uploaded = match local.as_deref().map(Path::new).filter(|p| p.exists()) {
        Some(path) => {
            let u = store.upload(path, &key).await?;
            store.verify(&key, &u).await?;
            up.counters.bytes.fetch_add(u.size, Ordering::Relaxed);
            u
        }
        // No local copy: an earlier run may have stored it and stopped before recording so.
        None => store.digest(&key).await.map_err(|e| {
            StorageError::Unavailable(format!(
                "{} (no local trail file, and no stored object: {e})",
                rec.id
            ))
        })?,
    };
    // Record first, delete after: a crash in between leaves a stored trail and a stale copy,
    // never a record pointing at nothing.
    let (cat, id, u) = (catalog.clone(), rec.id.clone(), uploaded.clone());
    let recorded = tokio::task::spawn_blocking(move || -> Result<bool> {
        let Some(mut r) = cat.get(&id)? else {
            return Ok(false);
        };
        r.trail.storage = Some("stored".into());
        r.trail.storage_error = None;
        r.trail.sha256 = Some(u.sha256.clone());
        r.trail.path = None;
        cat.upsert(&r);
        Ok(cat.flush_for(Some(Duration::from_secs(30))))
    })
    .await
    .map_err(|e| StorageError::Settings(format!("recording the upload: {e}")))??;
    up.counters.uploaded.fetch_add(1, Ordering::Relaxed);
    if recorded
        && let Some(p) = local
        && let Err(e) = std::fs::remove_file(&p)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %p, error = %e, "stored trail's local copy could not be deleted");
    }
    tracing::info!(session = %rec.id, key = %key, bytes = uploaded.size, sha256 = %uploaded.sha256, "trail stored");
    Ok(())
}

async fn mark_failed(catalog: &Arc<Catalog>, id: &str, reason: &str) {
    let (cat, id, reason) = (catalog.clone(), id.to_string(), reason.to_string());
    let _ = tokio::task::spawn_blocking(move || {
        if let Ok(Some(mut r)) = cat.get(&id)
            && r.trail.storage.as_deref() != Some("stored")
        {
            r.trail.storage = Some("upload_failed".into());
            r.trail.storage_error = Some(reason);
            cat.upsert(&r);
        }
    })
    .await;
}
