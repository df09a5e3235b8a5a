//! Trailgate's control API (axum): sessions (list, detail, channels, kill), trails (download with
//! Range, asciicast, live follow) and VNC screen snapshots, every download audited, an OpenAPI
//! document generated from the code, `/healthz`, and Prometheus metrics at `/metrics`.
//!
//! Modules:
//! - [`auth`]: bearer tokens (stored as SHA-256), roles `admin` and `auditor`.
//! - [`error`]: the JSON error shape.
//! - [`routes`]: session endpoints.
//! - [`trail`]: trail downloads, exports and live follow.
//! - [`snapshot`]: PNG screens of VNC sessions at any moment.
//! - [`serve`]: the HTTP server (connection cap, header-read timeout, optional TLS).
//! - [`openapi`]: the OpenAPI document.

pub mod auth;
pub mod error;
pub mod openapi;
pub mod routes;
pub mod serve;
pub mod snapshot;
pub mod trail;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use trailgate_proxy::registry::Registry;
use trailgate_recorder::catalog::Catalog;

pub use auth::{Role, Token};
pub use error::ApiError;

/// What the handlers share.
pub struct ApiState {
    pub catalog: Arc<Catalog>,
    pub registry: Arc<Registry>,
    pub tokens: Vec<Token>,
    pub data_dir: PathBuf,
    pub metrics: Arc<trailgate_proxy::metrics::Metrics>,
    pub health: HealthProbe,
}

/// The recording probe behind `/healthz`, run at most once a second (a scraper polling it must
/// not turn into disk load).
#[derive(Default)]
pub struct HealthProbe {
    last: tokio::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>,
}

impl HealthProbe {
    pub async fn recording(&self, data_dir: &std::path::Path) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, r)) = last.as_ref()
            && at.elapsed() < std::time::Duration::from_secs(1)
        {
            return r.clone();
        }
        let dir = data_dir.join("trails");
        let r =
            tokio::task::spawn_blocking(move || trailgate_recorder::fsutil::probe_writable(&dir))
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
                .map_err(|e| format!("trail storage: {e}"));
        *last = Some((std::time::Instant::now(), r.clone()));
        r
    }
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/metrics", get(routes::metrics))
        .route("/api/v1/openapi.json", get(openapi::serve))
        .route("/api/v1/sessions", get(routes::list_sessions))
        .route("/api/v1/sessions/{id}", get(routes::get_session))
        .route("/api/v1/sessions/{id}/channels", get(routes::get_channels))
        .route("/api/v1/sessions/{id}/kill", post(routes::kill_session))
        .route("/api/v1/sessions/{id}/trail", get(trail::download))
        .route("/api/v1/sessions/{id}/snapshot", get(snapshot::snapshot))
        .route(
            "/api/v1/sessions/{id}/trail_downloads",
            get(routes::trail_downloads),
        )
        .fallback(routes::not_found)
        .with_state(state)
}
