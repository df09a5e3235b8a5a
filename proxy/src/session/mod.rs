//! The protocol-neutral session core: the session ([`Session`]: record, trail, counters, end),
//! its channels' neutral state ([`ChannelState`]), its timers ([`policy_timers`]), and the
//! observer the gateway reports records to. A bridge builds on these; nothing here knows a
//! protocol.
//!
//! Modules: `core` (the session), `id` (session ids), `lifecycle` (begin and conclude), `login` (gateway authentication),
//! `channel` (channel state), `timers` (policy timers), `start` (target choice and trail).

mod channel;
mod core;
mod id;
mod lifecycle;
mod login;
mod start;
mod timers;

pub use channel::ChannelState;
pub use core::Session;
pub use id::SessionId;
pub use lifecycle::{begin, conclude};
pub use start::{choose_target, endpoint};
pub use timers::policy_timers;
pub use trailgate_recorder::record::*;

/// Wall-clock time as the records show it (RFC 3339, UTC).
pub fn now_rfc3339() -> String {
    trailgate_recorder::writer::rfc3339(time::OffsetDateTime::now_utc())
}

/// Receives session records as they change (start, authentication, channels, end). The catalog
/// implements it; calls must be cheap and must not block (queue internally).
pub trait SessionObserver: Send + Sync + 'static {
    fn session_changed(&self, record: &SessionRecord);

    /// The session has ended and its trail is sealed: index what can be found in it (files).
    /// Runs on a blocking thread; may take as long as reading the trail does.
    fn session_sealed(&self, _record: &SessionRecord) {}

    /// The final record is about to be published: add what the observer keeps in it (where
    /// the trail will be kept).
    fn finalize(&self, _record: &mut SessionRecord) {}

    /// The final record is published (and the files indexed): start what follows a session
    /// (its trail's upload). Must not block.
    fn session_ended(&self, _record: &SessionRecord) {}
}

/// An observer that ignores everything (tests, or a gateway without a catalog).
pub struct NoObserver;

impl SessionObserver for NoObserver {
    fn session_changed(&self, _record: &SessionRecord) {}
}

/// The gateway's observer in production: every change is queued for the catalog, and closed
/// trails go to object storage when `[storage]` names one.
pub struct CatalogObserver {
    pub catalog: std::sync::Arc<trailgate_recorder::catalog::Catalog>,
    /// Set at start-up when `[storage]` names an object store.
    pub uploader: std::sync::OnceLock<std::sync::Arc<trailgate_storage::Uploader>>,
}

impl SessionObserver for CatalogObserver {
    fn session_changed(&self, record: &SessionRecord) {
        self.catalog.upsert(record);
    }

    fn session_sealed(&self, record: &SessionRecord) {
        self.catalog.index_files(record);
    }

    fn finalize(&self, record: &mut SessionRecord) {
        if record.trail.path.is_some() {
            let state = if self.uploader.get().is_some() {
                "uploading"
            } else {
                "local"
            };
            record.trail.storage = Some(state.into());
        }
    }

    fn session_ended(&self, record: &SessionRecord) {
        if let Some(u) = self.uploader.get()
            && record.trail.storage.as_deref() == Some("uploading")
        {
            u.wake();
        }
    }
}
