//! Any node's API serves every session of the cluster. A trail is read from this node's disk,
//! from object storage (through the cache), or, while only the recording node has it (the
//! session is active, or its upload has not finished), by forwarding the request to that
//! node's API with the caller's own credentials; live follow streams through the same way.
//! A kill of a session held by another node is sent over the catalog and answered with the
//! final record that node writes. `GET /api/v1/nodes` lists the nodes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use trailgate_recorder::catalog::NodeInfo;
use trailgate_recorder::record::SessionRecord;

use crate::auth::Caller;
use crate::{ApiError, ApiState, blocking};

/// Marks a request one node forwarded to another (never forwarded again).
const FORWARDED: &str = "x-trailgate-forwarded-by";
/// Headers that go along to the owner, and back from it.
const REQUEST_HEADERS: [&str; 3] = ["authorization", "range", "accept"];
const RESPONSE_HEADERS: [&str; 8] = [
    "content-type",
    "content-length",
    "content-range",
    "accept-ranges",
    "content-disposition",
    "x-trailgate-trail-integrity",
    "x-trailgate-replay-from",
    "cache-control",
];

/// Whether a record's trail path is on this node's disk (another node's paths mean nothing
/// here, even when a shared file system happens to show them).
fn own(st: &ApiState, rec: &SessionRecord) -> bool {
    rec.node_id.is_empty() || rec.node_id == st.node_id
}

/// A local file holding the session's trail: this node's copy, or the stored object.
pub async fn trail_file(st: &ApiState, rec: &SessionRecord) -> Result<PathBuf, ApiError> {
    if let Some(p) = rec.trail.path.as_deref().map(PathBuf::from)
        && own(st, rec)
        && p.exists()
    {
        return Ok(p);
    }
    if st.trails.can_read_stored(rec) {
        return st.trails.file(rec).await.map_err(|e| {
            tracing::error!(session = %rec.id, error = %e, "reading a trail from object storage failed");
            ApiError::Unavailable(format!(
                "the trail of session {} is in object storage, which cannot be read now",
                rec.id
            ))
        });
    }
    Err(match rec.trail.storage.as_deref() {
        Some("stored") => ApiError::Unavailable(format!(
            "the trail of session {} is in object storage, which this node is not configured for",
            rec.id
        )),
        _ if !rec.node_id.is_empty() && rec.node_id != st.node_id && rec.trail.url.is_some() => {
            ApiError::Unavailable(format!(
                "the trail of session {} is on node {}, which cannot be reached",
                rec.id, rec.node_id
            ))
        }
        _ => ApiError::NotFound(format!("session {} has no trail", rec.id)),
    })
}

/// Middleware of the trail-reading routes: requests for a trail only another (live) node
/// has go to that node.
pub async fn owner_proxy(
    State(st): State<Arc<ApiState>>,
    _caller: Caller,
    req: Request,
    next: Next,
) -> Response {
    let Some(id) = req
        .uri()
        .path()
        .strip_prefix("/api/v1/sessions/")
        .and_then(|r| r.split('/').next())
        .map(str::to_string)
    else {
        return next.run(req).await;
    };
    if st.registry.get(&id).is_some() || req.headers().contains_key(FORWARDED) {
        return next.run(req).await;
    }
    let cat = st.catalog.clone();
    let rec = match blocking(move || cat.get(&id).map_err(ApiError::from)).await {
        Ok(Some(r)) => r,
        _ => return next.run(req).await,
    };
    if own(&st, &rec) || st.trails.can_read_stored(&rec) {
        return next.run(req).await;
    }
    match forward(&st, &rec, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn forward(st: &ApiState, rec: &SessionRecord, req: Request) -> Result<Response, ApiError> {
    let owner = rec.node_id.clone();
    let cat = st.catalog.clone();
    let node = blocking(move || cat.node(&owner).map_err(ApiError::from))
        .await?
        .ok_or_else(|| {
            ApiError::Unavailable(format!(
                "session {} is on node {}, which is not registered",
                rec.id, rec.node_id
            ))
        })?;
    let url = match (&node.api_url, node.state.as_str()) {
        (Some(u), "up") => u.clone(),
        (None, _) => {
            return Err(ApiError::Unavailable(format!(
                "the trail of session {} is on node {}, which has no API address (cluster.api_url)",
                rec.id, node.id
            )));
        }
        (_, state) => {
            return Err(ApiError::Unavailable(format!(
                "the trail of session {} is on node {}, which is {state}; it is served again when the node returns",
                rec.id, node.id
            )));
        }
    };
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let mut out = st
        .http
        .request(req.method().clone(), format!("{url}{path}"))
        .header(FORWARDED, st.node_id.as_str());
    for h in REQUEST_HEADERS {
        if let Some(v) = req.headers().get(h) {
            out = out.header(h, v);
        }
    }
    let resp = out.send().await.map_err(|e| {
        tracing::warn!(node = %node.id, error = %e, "forwarding to the node holding a session failed");
        ApiError::Unavailable(format!("node {} holding session {} did not answer", node.id, rec.id))
    })?;
    let mut b = Response::builder().status(resp.status().as_u16());
    for h in RESPONSE_HEADERS {
        if let Some(v) = resp.headers().get(h) {
            b = b.header(h, v.as_bytes());
        }
    }
    b = b.header("x-trailgate-served-by", node.id.as_str());
    let body = Body::from_stream(resp.bytes_stream().map_err(std::io::Error::other));
    b.body(body).map_err(|e| ApiError::Internal(e.to_string()))
}

/// Kills a session another node holds: the kill goes over the catalog, and the answer is the
/// final record that node writes (waited for up to 10 s).
pub async fn remote_kill(
    st: &Arc<ApiState>,
    rec: SessionRecord,
    reason: String,
    by: String,
) -> Result<SessionRecord, ApiError> {
    let req = trailgate_recorder::catalog::KillRequest {
        node: rec.node_id.clone(),
        session: rec.id.clone(),
        reason,
        by,
    };
    tracing::info!(session = %rec.id, node = %rec.node_id, "kill sent to the node holding the session");
    let cat = st.catalog.clone();
    blocking(move || {
        cat.send_kill(&req).map_err(|e| {
            ApiError::Conflict(e.to_string().trim_start_matches("catalog: ").to_string())
        })
    })
    .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (cat, id) = (st.catalog.clone(), rec.id.clone());
        if let Some(r) = blocking(move || cat.get(&id).map_err(ApiError::from)).await?
            && !r.active
        {
            return Ok(r);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(ApiError::Unavailable(format!(
                "node {} did not end session {} within 10 s",
                rec.node_id, rec.id
            )));
        }
        // Polls the shared catalog for the owner's final record.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct NodeList {
    pub items: Vec<NodeInfo>,
    /// This node's id.
    pub this_node: String,
}

/// The gateway nodes sharing this catalog, with their heartbeats.
#[utoipa::path(get, path = "/api/v1/nodes", security(("bearer" = [])),
    responses((status = 200, body = NodeList), (status = 401)))]
pub async fn nodes(
    State(st): State<Arc<ApiState>>,
    _c: Caller,
) -> Result<Json<NodeList>, ApiError> {
    let cat = st.catalog.clone();
    let items = blocking(move || cat.nodes().map_err(ApiError::from)).await?;
    Ok(Json(NodeList {
        items,
        this_node: st.node_id.clone(),
    }))
}
