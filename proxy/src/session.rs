//! The session record (defined by the recorder's catalog) and the observer the gateway reports to.

pub use trailgate_recorder::record::*;

/// Receives session records as they change (start, authentication, channels, end). The catalog
/// implements it; calls must be cheap and must not block (queue internally).
pub trait SessionObserver: Send + Sync + 'static {
    fn session_changed(&self, record: &SessionRecord);
}

/// An observer that ignores everything (tests, or a gateway without a catalog).
pub struct NoObserver;

impl SessionObserver for NoObserver {
    fn session_changed(&self, _record: &SessionRecord) {}
}

/// The catalog is the gateway's observer in production: every change is queued for SQLite.
impl SessionObserver for trailgate_recorder::catalog::Catalog {
    fn session_changed(&self, record: &SessionRecord) {
        self.upsert(record);
    }
}
