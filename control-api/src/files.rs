//! Files transferred in a session (SFTP and scp in SFTP mode), indexed from its trail on
//! demand: the list, and one file's content exactly as it crossed. Content downloads are audited
//! like trail downloads.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;

async fn trail_of(st: &Arc<ApiState>, id: &str) -> Result<PathBuf, ApiError> {
    let rec = crate::routes::find(st, id).await?;
    let path = crate::cluster::trail_file(st, &rec).await?;
    if let Some(live) = st.registry.get(id) {
        let _ = live.flush_trail(crate::trail::LIVE_FLUSH_LIMIT).await;
    }
    Ok(path)
}

/// The files and file operations of a session: from the catalog's index once the trail is sealed
/// and indexed, else from the trail itself (live sessions, trails indexed before).
#[utoipa::path(get, path = "/api/v1/sessions/{id}/files", params(("id" = String, Path), crate::routes::PageParams), security(("bearer" = [])),
    responses((status = 200, description = "`{items: [TransferredFile], operations: [FileOperation], meta}`"), (status = 400), (status = 401), (status = 404)))]
pub async fn list(
    State(st): State<Arc<ApiState>>,
    _caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<crate::routes::PageParams>,
) -> Result<Json<Value>, ApiError> {
    page.checked()?;
    let rec = crate::routes::find(&st, &id).await?;
    let stored = if rec.active {
        None
    } else {
        let (cat, id2) = (st.catalog.clone(), id.clone());
        tokio::task::spawn_blocking(move || cat.transfers(&id2))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??
    };
    let mut t = match stored {
        Some(t) => t,
        None => {
            let path = trail_of(&st, &id).await?;
            let t =
                tokio::task::spawn_blocking(move || trailgate_recorder::transfers::index(&path))
                    .await
                    .map_err(|e| ApiError::Internal(e.to_string()))??;
            serde_json::to_value(t).map_err(|e| ApiError::Internal(e.to_string()))?
        }
    };
    let files = match t.get_mut("files").map(Value::take) {
        Some(Value::Array(v)) => v,
        _ => Vec::new(),
    };
    let base = format!("/api/v1/sessions/{}/files", crate::routes::urlencode(&id));
    let (items, meta) = page.page(&base, files)?;
    Ok(Json(json!({
        "items": items,
        "operations": t.get("operations").cloned().unwrap_or(json!([])),
        "meta": meta,
    })))
}

/// One file's content as it crossed (parts that never crossed are zeros).
#[utoipa::path(get, path = "/api/v1/sessions/{id}/files/{n}/content", params(("id" = String, Path), ("n" = usize, Path)), security(("bearer" = [])),
    responses((status = 200, content_type = "application/octet-stream"), (status = 401), (status = 404)))]
pub async fn content(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    Path((id, n)): Path<(String, usize)>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let path = trail_of(&st, &id).await?;
    // Extracted into an owner-only temporary file, served from there and removed.
    let dir = st.data_dir.join("tmp");
    let tmp = dir.join(format!("extract-{id}-{n}-{}", std::process::id()));
    let t2 = tmp.clone();
    let entry = tokio::task::spawn_blocking(move || {
        trailgate_recorder::fsutil::private_dir_all(&dir)?;
        let mut f = trailgate_recorder::fsutil::private_new_file()
            .truncate(true)
            .open(&t2)
            .map_err(trailgate_recorder::RecorderError::RawIo)?;
        trailgate_recorder::transfers::extract(&path, n, &mut f)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| match e {
        trailgate_recorder::RecorderError::Record(m) => ApiError::NotFound(m),
        other => ApiError::from(other),
    })?;
    let shown = format!("file {n} ({})", entry.path);
    crate::trail::audit(&st, &id, &caller, shown, None, false).await?;
    tracing::info!(session = %id, token = %caller.name, file = n, path = %entry.path, "file content download");
    let served = tower_http::services::ServeFile::new(&tmp)
        .oneshot(req)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    // The open file keeps the data until the response is sent; the name can go now.
    let _ = std::fs::remove_file(&tmp);
    let mut resp = served.map(Body::new).into_response();
    let name = entry
        .path
        .rsplit('/')
        .next()
        .unwrap_or("file")
        .replace(['"', '\\'], "_");
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some(sha) = &entry.sha256
        && let Ok(v) = HeaderValue::from_str(sha)
    {
        resp.headers_mut().insert("x-content-sha256", v);
    }
    Ok(resp)
}
