//! Live-session registry: session id -> handle that can terminate it with a reason.

use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

use crate::error::ProxyError;
use crate::session::{EndCode, SessionRecord};
use trailgate_recorder::{TrailWriter, WeakTrailWriter};

/// Why a session is being terminated from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillReason {
    pub reason: String,
    /// Who asked (`api token NAME`, `gateway`, `policy`, `recorder`, `target`).
    pub by: String,
    /// The session record's `end_reason_code`.
    pub code: EndCode,
}

pub struct LiveSession {
    pub id: String,
    kill: CancellationToken,
    reason: Mutex<Option<KillReason>>,
    snapshot: Mutex<Option<SessionRecord>>,
    /// Builds a fresh record on demand (live byte counters), set by the session.
    live_view: std::sync::OnceLock<Box<dyn Fn() -> Option<SessionRecord> + Send + Sync>>,
    /// The session's trail writer, once its trail is open (weak: the session owns it).
    trail: std::sync::OnceLock<WeakTrailWriter>,
}

impl LiveSession {
    pub fn new(id: String) -> Arc<Self> {
        Arc::new(LiveSession {
            id,
            kill: CancellationToken::new(),
            reason: Mutex::new(None),
            snapshot: Mutex::new(None),
            live_view: std::sync::OnceLock::new(),
            trail: std::sync::OnceLock::new(),
        })
    }

    /// First kill wins; later ones do not overwrite the reason.
    pub fn kill(&self, reason: KillReason) {
        if let Ok(mut r) = self.reason.lock()
            && r.is_none()
        {
            *r = Some(reason);
        }
        self.kill.cancel();
    }

    pub fn killed(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.kill.cancelled()
    }

    pub fn token(&self) -> CancellationToken {
        self.kill.clone()
    }

    pub fn kill_reason(&self) -> Option<KillReason> {
        self.reason.lock().ok().and_then(|r| r.clone())
    }

    pub fn set_snapshot(&self, rec: &SessionRecord) {
        if let Ok(mut s) = self.snapshot.lock() {
            *s = Some(rec.clone());
        }
    }

    pub fn set_live_view(&self, f: Box<dyn Fn() -> Option<SessionRecord> + Send + Sync>) {
        let _ = self.live_view.set(f);
    }

    pub fn set_trail(&self, w: &TrailWriter) {
        let _ = self.trail.set(w.downgrade());
    }

    /// Puts everything the session recorded so far in its trail file, so a download now ends
    /// with what just happened rather than up to a flush interval earlier. Waits at most
    /// `limit` (a recorder that is behind must not hold the download up for long); `false`
    /// when the session has no trail, its recording failed, or the limit passed.
    pub async fn flush_trail(&self, limit: std::time::Duration) -> bool {
        let Some(w) = self.trail.get().and_then(|w| w.upgrade()) else {
            return false;
        };
        matches!(tokio::time::timeout(limit, w.flush()).await, Ok(Ok(())))
    }

    /// The current record: built live when the session provides a view, else the last published.
    pub fn snapshot(&self) -> Option<SessionRecord> {
        if let Some(r) = self.live_view.get().and_then(|f| f()) {
            return Some(r);
        }
        self.snapshot.lock().ok().and_then(|s| s.clone())
    }
}

#[derive(Default)]
pub struct Registry {
    sessions: DashMap<String, Arc<LiveSession>>,
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::new(Registry::default())
    }

    pub fn insert(&self, s: Arc<LiveSession>) {
        self.sessions.insert(s.id.clone(), s);
    }

    pub fn remove(&self, id: &str) {
        self.sessions.remove(id);
    }

    pub fn get(&self, id: &str) -> Option<Arc<LiveSession>> {
        self.sessions.get(id).map(|s| s.clone())
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn ids(&self) -> Vec<String> {
        self.sessions.iter().map(|e| e.key().clone()).collect()
    }

    /// Terminates a live session. Unknown ids: `NoSuchSession` (the caller checks the catalog to
    /// tell "never existed" from "already ended").
    pub fn kill(&self, id: &str, reason: KillReason) -> Result<(), ProxyError> {
        let s = self
            .get(id)
            .ok_or_else(|| ProxyError::NoSuchSession(id.to_string()))?;
        s.kill(reason);
        Ok(())
    }

    pub fn kill_all(&self, reason: KillReason) {
        for s in self.sessions.iter() {
            s.kill(reason.clone());
        }
    }
}
