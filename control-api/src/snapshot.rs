//! VNC screens: the screen at a moment of the recording (PNG, full size or a thumbnail), and the
//! session re-encoded from a moment for browser players (FBS). Both are decoded from the trail
//! on the blocking pool; both show what the trail shows, so they are audited with the trail
//! downloads.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio_stream::wrappers::ReceiverStream;
use trailgate_recorder::RecorderError;

use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SnapshotParams {
    /// Seconds since the session start, e.g. `12.5` (default: the latest screen recorded).
    #[param(value_type = Option<f64>)]
    pub at: Option<String>,
    /// Scale down to at most this many pixels wide (1 to 4096), keeping the aspect: a
    /// thumbnail. Default: full size.
    #[param(value_type = Option<u16>)]
    pub width: Option<String>,
}

/// `width` as pixels; read here rather than by serde so a bad value gets the JSON error.
fn parse_width(w: Option<&str>) -> Result<Option<u16>, ApiError> {
    let Some(s) = w else {
        return Ok(None);
    };
    s.trim()
        .parse::<u16>()
        .ok()
        .filter(|w| (1..=4096).contains(w))
        .map(Some)
        .ok_or_else(|| {
            ApiError::BadRequest(format!("width: expected pixels from 1 to 4096, not {s:?}"))
        })
}

/// A time parameter (`at`, `from`) as a duration; read here rather than by serde so a bad
/// value gets the JSON error.
fn parse_at(at: Option<&str>) -> Result<Option<Duration>, ApiError> {
    parse_time("at", at)
}

fn parse_time(name: &str, at: Option<&str>) -> Result<Option<Duration>, ApiError> {
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
                "{name}: expected seconds since the session start (a number from 0), not {s:?}"
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
    let width = parse_width(p.width.as_deref())?;
    let mut shown = match at {
        Some(at) => format!("snapshot at={:.3}", at.as_secs_f64()),
        None => "snapshot".into(),
    };
    if let Some(w) = width {
        shown += &format!(" width={w}");
    }
    let path = vnc_trail(&st, &id, &caller, shown).await?;
    tracing::info!(session = %id, token = %caller.name, at = ?at, "vnc snapshot");
    let decoded = tokio::task::spawn_blocking(move || {
        let mut f = trailgate_recorder::vnc::frame(&path, at)?;
        if let Some(w) = width {
            f.framebuffer = f.framebuffer.scaled_to_width(w);
        }
        let png = f.to_png()?;
        Ok::<_, RecorderError>((f, png))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let (frame, png) = match decoded {
        Ok(x) => x,
        Err(e) => return Err(vnc_error(&id, e)),
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

fn not_vnc(id: &str) -> ApiError {
    ApiError::NotFound(format!("session {id} is not a VNC session"))
}

fn vnc_error(id: &str, e: RecorderError) -> ApiError {
    match e {
        RecorderError::NotVnc(_) => not_vnc(id),
        RecorderError::Vnc(msg) => ApiError::NotFound(msg),
        e => e.into(),
    }
}

/// The trail of VNC session `id`, after auditing the caller's `what` and, for a live session,
/// flushing its recorder (so the screen is the one of this moment, not of its last flush).
async fn vnc_trail(
    st: &Arc<ApiState>,
    id: &str,
    caller: &Caller,
    what: String,
) -> Result<std::path::PathBuf, ApiError> {
    let rec = crate::routes::find(st, id).await?;
    if rec.protocol != "vnc" {
        return Err(not_vnc(id));
    }
    let path = crate::cluster::trail_file(st, &rec).await?;
    crate::trail::audit(st, id, caller, what, None, false).await?;
    if let Some(live) = st.registry.get(id)
        && !live.flush_trail(crate::trail::LIVE_FLUSH_LIMIT).await
    {
        tracing::debug!(session = %id, "live trail not flushed before decoding its screen");
    }
    Ok(path)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ReplayParams {
    /// Seconds since the session start to begin at, e.g. `12.5` (default: the start).
    #[param(value_type = Option<f64>)]
    pub from: Option<String>,
}

/// A VNC session for browser players (auditor or admin): FBS 001.000 (RFB 3.3 without
/// authentication), 32-bit RGB, ZRLE. It starts with the screen at `from` as one update timed
/// `from` (milliseconds since the session start, like every block), then every change at its
/// recorded time. `x-trailgate-replay-from` gives the start in seconds (the last screen's time
/// when `from` lies beyond it). Streamed as it is decoded; the trail is not loaded whole.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/replay", params(("id" = String, Path), ReplayParams), security(("bearer" = [])),
    responses((status = 200, content_type = "application/octet-stream", description = "FBS 001.000"),
        (status = 400, description = "a bad `from`"), (status = 401),
        (status = 404, description = "no such session, not a VNC session, or no screen")))]
pub async fn replay(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(p): Query<ReplayParams>,
) -> Result<Response, ApiError> {
    let from = parse_time("from", p.from.as_deref())?;
    let what = format!("replay from={:.3}", from.unwrap_or_default().as_secs_f64());
    let path = vnc_trail(&st, &id, &caller, what).await?;
    tracing::info!(session = %id, token = %caller.name, from = ?from, "vnc replay");
    // Decoded up to `from` before answering: errors are statuses, and the start is known.
    let replay =
        tokio::task::spawn_blocking(move || trailgate_recorder::vnc::Replay::open(&path, from))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(|e| vnc_error(&id, e))?;
    let start = replay.start_us();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::task::spawn_blocking(move || {
        let mut w = crate::trail::ChannelWriter::new(tx.clone());
        let res = replay
            .write_to(&mut w)
            .and_then(|x| w.flush().map(|_| x).map_err(Into::into));
        match res {
            Ok(x) if x.decode_error.is_some() => {
                tracing::warn!(error = ?x.decode_error, "vnc replay: decoding stopped early");
            }
            Ok(_) => {}
            Err(e) => {
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    let mut resp = Body::from_stream(ReceiverStream::new(rx)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("{:.3}", start as f64 / 1e6)) {
        h.insert("x-trailgate-replay-from", v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests;
