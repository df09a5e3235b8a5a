//! Screen snapshots of VNC sessions: the screen at a moment of the recording, decoded from the
//! trail on the blocking pool and served as PNG. A snapshot shows what the trail shows, so it is
//! audited with the trail downloads.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use trailgate_recorder::RecorderError;

use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SnapshotParams {
    /// Seconds since the session start, e.g. `12.5` (default: the latest screen recorded).
    #[param(value_type = Option<f64>)]
    pub at: Option<String>,
}

/// `at` as a duration; read here rather than by serde so a bad value gets the JSON error.
fn parse_at(at: Option<&str>) -> Result<Option<Duration>, ApiError> {
    let Some(s) = at else {
        return Ok(None);
    };
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "at: expected seconds since the session start (a number from 0), not {s:?}"
            ))
        })
}

/// The screen of a VNC session at `at` seconds (auditor or admin). Responses carry
/// `x-trailgate-screen-time` (seconds: the time of the last screen data decoded) and, when
/// decoding stopped early, `x-trailgate-decode-error` (the image is then the screen decoded
/// before the error).
#[utoipa::path(get, path = "/api/v1/sessions/{id}/snapshot", params(("id" = String, Path), SnapshotParams), security(("bearer" = [])),
    responses((status = 200, content_type = "image/png", description = "the screen as PNG"),
        (status = 400, description = "a bad `at`"), (status = 401),
        (status = 404, description = "no such session, not a VNC session, or no screen yet at that time")))]
pub async fn snapshot(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(p): Query<SnapshotParams>,
) -> Result<Response, ApiError> {
    let at = parse_at(p.at.as_deref())?;
    let rec = crate::routes::find(&st, &id).await?;
    let not_vnc = || ApiError::NotFound(format!("session {id} is not a VNC session"));
    if rec.protocol != "vnc" {
        return Err(not_vnc());
    }
    let path = crate::routes::trail_path(&rec)?;
    let shown = match at {
        Some(at) => format!("snapshot at={:.3}", at.as_secs_f64()),
        None => "snapshot".into(),
    };
    crate::trail::audit(&st, &id, &caller, shown, None, false).await?;
    tracing::info!(session = %id, token = %caller.name, at = ?at, "vnc snapshot");
    // A live session's screen up to this moment, not up to the recorder's last flush.
    if let Some(live) = st.registry.get(&id)
        && !live.flush_trail(crate::trail::LIVE_FLUSH_LIMIT).await
    {
        tracing::debug!(session = %id, "live trail not flushed before the snapshot");
    }
    let decoded = tokio::task::spawn_blocking(move || {
        let f = trailgate_recorder::vnc::frame(&path, at)?;
        let png = f.to_png()?;
        Ok::<_, RecorderError>((f, png))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let (frame, png) = match decoded {
        Ok(x) => x,
        Err(RecorderError::NotVnc(_)) => return Err(not_vnc()),
        Err(RecorderError::Vnc(msg)) => return Err(ApiError::NotFound(msg)),
        Err(e) => return Err(e.into()),
    };
    let mut resp = png.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    // A screen may show anything: no shared cache keeps it.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("{:.3}", frame.time_us as f64 / 1e6)) {
        h.insert("x-trailgate-screen-time", v);
    }
    if let Some(e) = &frame.decode_error {
        tracing::warn!(session = %id, error = %e, "vnc snapshot: decoding stopped early");
        let ascii: String = e
            .chars()
            .filter(|c| c.is_ascii() && !c.is_ascii_control())
            .collect();
        if let Ok(v) = HeaderValue::from_str(&ascii) {
            h.insert("x-trailgate-decode-error", v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{id}.png\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests;
