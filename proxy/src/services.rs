//! What every protocol bridge shares, loaded once at start-up: the configuration, the trail
//! signing key, the live-session registry, the catalog observer, metrics, pre-authentication
//! limits, what may change at run time ([`Runtime`]), and the shutdown root (one `CancellationToken` and one `TaskTracker`). Bridges hold an
//! `Arc<Services>`; nothing here knows a protocol.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use trailgate_recorder::WriterConfig;
use trailgate_recorder::keys::SigningKey;

use crate::admission::Admission;
use crate::config::Config;
use crate::error::ProxyError;
use crate::metrics::Metrics;
use crate::registry::{KillReason, Registry};
use crate::runtime::Runtime;
use crate::session::SessionObserver;

pub struct Services {
    /// The configuration, API-managed policies and options in force (see [`Runtime`]).
    pub runtime: Arc<Runtime>,
    pub registry: Arc<Registry>,
    pub signing_key: Arc<SigningKey>,
    pub observer: Arc<dyn SessionObserver>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    pub writer_cfg: WriterConfig,
    pub node_id: String,
    pub metrics: Arc<Metrics>,
    /// Pre-authentication limits shared by every listener.
    pub admission: Arc<Admission>,
}

impl Services {
    /// Creates the data directory (owner-only) and loads the trail-signing key, generating it on
    /// first start.
    pub fn new(
        cfg: Config,
        observer: Arc<dyn SessionObserver>,
    ) -> Result<Arc<Services>, ProxyError> {
        trailgate_recorder::fsutil::private_dir_all(&cfg.data_dir)
            .map_err(|e| ProxyError::Config(format!("data_dir: {e}")))?;
        let signing_key = Arc::new(trailgate_recorder::keys::load_or_generate(
            &cfg.signing_key_path(),
        )?);
        let writer_cfg = WriterConfig {
            flush_interval: cfg.recording.flush_interval,
            zstd_level: cfg.recording.zstd_level,
            zstd_fast_level: cfg.recording.zstd_fast_level,
            fsync: cfg.recording.fsync,
            ..WriterConfig::default()
        };
        let metrics = Arc::new(Metrics::new());
        Ok(Arc::new(Services {
            node_id: cfg.node_id(),
            admission: Admission::new(cfg.limits.clone(), metrics.clone()),
            metrics,
            runtime: Arc::new(Runtime::new(cfg)),
            registry: Registry::new(),
            signing_key,
            observer,
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            writer_cfg,
        }))
    }

    /// The configuration in force now (sessions keep the one they started with).
    pub fn cfg(&self) -> Arc<Config> {
        self.runtime.config()
    }

    /// Stops accepting, terminates every live session with a reason, and waits for their trails to
    /// be sealed.
    pub async fn shutdown(&self, grace: Duration) {
        self.shutdown.cancel();
        self.registry.kill_all(KillReason {
            reason: "gateway shutting down".into(),
            by: "gateway".into(),
            code: trailgate_recorder::record::EndCode::GatewayShutdown,
        });
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("sessions still open after the shutdown grace period");
        }
    }
}
