//! Trailgate's control API (axum): sessions (list, detail, channels, kill), trails (download with
//! Range, asciicast, live follow) with every download audited, an OpenAPI document generated from
//! the code, `/healthz`, and Prometheus metrics at `/metrics`.
//!
//! Modules:
//! - [`auth`]: bearer tokens (stored as SHA-256), roles `admin` and `auditor`.
//! - [`error`]: the JSON error shape.
//! - [`routes`]: session endpoints.
//! - [`trail`]: trail downloads, exports and live follow.
//! - [`tls`]: optional HTTPS listener (rustls).
//! - [`openapi`]: the OpenAPI document.

pub mod auth;
pub mod error;
pub mod openapi;
pub mod routes;
pub mod tls;
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
        .route(
            "/api/v1/sessions/{id}/trail_downloads",
            get(routes::trail_downloads),
        )
        .fallback(routes::not_found)
        .with_state(state)
}
