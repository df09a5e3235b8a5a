//! Trailgate's control API (axum): sessions (list, detail, channels, kill), trails (download with
//! Range, asciicast, live follow) and VNC screen snapshots, every download audited, an OpenAPI
//! document generated from the code, `/healthz`, and Prometheus metrics at `/metrics`.
//!
//! Modules:
//! - [`auth`]: bearer tokens (stored as SHA-256), roles `admin` and `auditor`.
//! - [`cluster`]: every session through any node: trails from object storage or forwarded to
//!   the node holding them, kills sent to that node, the node list.
//! - [`configuration`]: settings policies, VNC options and the audit of configuration changes.
//! - [`console`]: the web console (embedded pages) and the security headers of every response.
//! - [`error`]: the JSON error shape.
//! - [`files`]: files transferred in a session (list, content), from its trail.
//! - [`routes`]: session endpoints.
//! - [`trail`]: trail downloads, exports and live follow.
//! - [`snapshot`]: VNC screens: PNG at any moment (thumbnails too), replays for browser players.
//! - [`serve`]: the HTTP server (connection cap, header-read timeout, optional TLS).
//! - [`openapi`]: the OpenAPI document.

pub mod auth;
pub mod cluster;
pub mod configuration;
pub mod console;
pub mod error;
pub mod files;
pub mod openapi;
pub mod routes;
pub mod serve;
pub mod snapshot;
pub mod trail;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post, put};
use trailgate_proxy::registry::Registry;
use trailgate_recorder::catalog::Catalog;

pub use auth::{Role, Token};
pub use error::ApiError;

/// Called with the VNC options after they change.
pub type OptionsHook = Box<dyn Fn(&trailgate_proxy::policy::VncOptions) + Send + Sync>;

/// What the handlers share.
pub struct ApiState {
    pub catalog: Arc<Catalog>,
    pub registry: Arc<Registry>,
    /// The configuration in force (tokens are read from it, so a reload changes them) and the
    /// API-managed policies and options.
    pub runtime: Arc<trailgate_proxy::runtime::Runtime>,
    /// Configuration writes one at a time (check, persist, apply).
    pub config_lock: tokio::sync::Mutex<()>,
    /// Called after the VNC options change (the binary applies the log level).
    pub on_vnc_options: Option<OptionsHook>,
    pub data_dir: PathBuf,
    pub metrics: Arc<trailgate_proxy::metrics::Metrics>,
    pub health: HealthProbe,
    /// Trails read back from object storage (none configured: this node's disk only).
    pub trails: Arc<trailgate_storage::TrailCache>,
    /// This node's uploader, for `/metrics`.
    pub uploader: Option<Arc<trailgate_storage::Uploader>>,
    pub node_id: String,
    /// Requests forwarded to the node holding a session.
    pub http: reqwest::Client,
}

impl ApiState {
    pub fn new(
        catalog: Arc<Catalog>,
        registry: Arc<Registry>,
        runtime: Arc<trailgate_proxy::runtime::Runtime>,
        data_dir: PathBuf,
        metrics: Arc<trailgate_proxy::metrics::Metrics>,
    ) -> ApiState {
        let node_id = runtime.config().node_id();
        ApiState {
            catalog,
            registry,
            runtime,
            config_lock: tokio::sync::Mutex::new(()),
            on_vnc_options: None,
            trails: Arc::new(trailgate_storage::TrailCache::new(
                data_dir.join("cache"),
                4 << 30,
                None,
            )),
            data_dir,
            metrics,
            health: HealthProbe::default(),
            uploader: None,
            node_id,
            http: reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(3))
                .build()
                .unwrap_or_default(),
        }
    }
}

/// The recording probe behind `/healthz`, run at most once a second (a scraper polling it must
/// not turn into disk load).
#[derive(Default)]
pub struct HealthProbe {
    last: tokio::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>,
}

impl HealthProbe {
    pub async fn recording(
        &self,
        data_dir: &std::path::Path,
        floor: Option<u64>,
    ) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, r)) = last.as_ref()
            && at.elapsed() < std::time::Duration::from_secs(1)
        {
            return r.clone();
        }
        let dir = data_dir.join("trails");
        let r = tokio::task::spawn_blocking(move || {
            trailgate_recorder::fsutil::probe_writable(&dir)
                .map_err(|e| format!("trail storage: {e}"))?;
            trailgate_recorder::fsutil::check_free_space(&dir, floor)
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        *last = Some((std::time::Instant::now(), r.clone()));
        r
    }
}

/// Runs blocking work (the catalog, trail files) on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
}

pub fn router(state: Arc<ApiState>) -> Router {
    // What reads a trail: forwarded to the node holding it when only that node has it.
    let trail_routes = Router::new()
        .route("/api/v1/sessions/{id}/verify", get(trail::verify))
        .route("/api/v1/sessions/{id}/trail", get(trail::download))
        .route("/api/v1/sessions/{id}/snapshot", get(snapshot::snapshot))
        .route("/api/v1/sessions/{id}/replay", get(snapshot::replay))
        .route("/api/v1/sessions/{id}/files", get(files::list))
        .route(
            "/api/v1/sessions/{id}/files/{n}/content",
            get(files::content),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            cluster::owner_proxy,
        ));
    Router::new()
        .merge(trail_routes)
        .route("/", get(console::index))
        .route("/console/{*path}", get(console::asset))
        .route("/api/v1/whoami", get(auth::whoami))
        .route("/api/v1/nodes", get(cluster::nodes))
        .route("/healthz", get(routes::healthz))
        .route("/metrics", get(routes::metrics))
        .route("/api/v1/openapi.json", get(openapi::serve))
        .route("/api/v1/sessions", get(routes::list_sessions))
        .route("/api/v1/sessions/{id}", get(routes::get_session))
        .route("/api/v1/sessions/{id}/channels", get(routes::get_channels))
        .route("/api/v1/sessions/{id}/kill", post(routes::kill_session))
        .route(
            "/api/v1/sessions/{id}/trail_downloads",
            get(routes::trail_downloads),
        )
        .route(
            "/api/v1/configuration/{proto}/settings_policies",
            get(configuration::list_policies).post(configuration::create_policy),
        )
        .route(
            "/api/v1/configuration/{proto}/settings_policies/{key}",
            get(configuration::get_policy)
                .put(configuration::put_policy)
                .delete(configuration::delete_policy),
        )
        .route(
            "/api/v1/configuration/vnc/options",
            get(configuration::get_vnc_options).merge(put(configuration::put_vnc_options)),
        )
        .route("/api/v1/configuration/changes", get(configuration::changes))
        .fallback(routes::not_found)
        .layer(axum::middleware::map_response(error::json_errors))
        .layer(axum::middleware::map_response(console::security_headers))
        .with_state(state)
}
