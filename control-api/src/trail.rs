//! Trail downloads: the raw file (Range requests, streamed from disk, works while the session is
//! still being recorded), an asciicast or FBS export, or a live follow that streams until the session
//! ends. Every download is audited in the catalog.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tower::ServiceExt;
use trailgate_recorder::catalog::TrailDownload;

use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;

/// Records a download in the catalog's audit (`trail_downloads`) before it is served.
pub(crate) async fn audit(
    st: &ApiState,
    id: &str,
    caller: &Caller,
    format: String,
    range: Option<String>,
    follow: bool,
) -> Result<(), ApiError> {
    let entry = TrailDownload {
        session_id: id.to_string(),
        token: caller.name.clone(),
        time: trailgate_recorder::writer::rfc3339(time::OffsetDateTime::now_utc()),
        format,
        range,
        follow,
    };
    let cat = st.catalog.clone();
    tokio::task::spawn_blocking(move || cat.add_download(&entry))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(())
}

/// How long a download of a live session's trail waits for the recorder to flush.
pub(crate) const LIVE_FLUSH_LIMIT: Duration = Duration::from_secs(2);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct TrailParams {
    /// `raw` (default), `asciicast` (a terminal channel) or `fbs` (a VNC session, FBS 001.000).
    pub format: Option<String>,
    /// Channel for `asciicast` (default: the first terminal channel).
    pub channel: Option<u32>,
    /// Stream the raw trail live until the session ends.
    pub follow: Option<bool>,
}

/// Download a session's trail.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/trail", params(("id" = String, Path), TrailParams), security(("bearer" = [])),
    responses((status = 200, content_type = "application/octet-stream", description = "the trail (or asciicast v2, or FBS 001.000)"),
        (status = 206, description = "a Range of the trail"), (status = 401), (status = 404)))]
pub async fn download(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(p): Query<TrailParams>,
    req: Request,
) -> Result<Response, ApiError> {
    let rec = crate::routes::find(&st, &id).await?;
    let path = crate::cluster::trail_file(&st, &rec).await?;
    let format = p.format.clone().unwrap_or_else(|| "raw".into());
    let follow = p.follow.unwrap_or(false);
    if !matches!(format.as_str(), "raw" | "asciicast" | "fbs") {
        return Err(ApiError::BadRequest(format!(
            "format: {format:?} is not one of raw, asciicast, fbs"
        )));
    }
    if format == "fbs" && rec.protocol != "vnc" {
        return Err(ApiError::NotFound(format!(
            "session {id} is not a VNC session"
        )));
    }
    if follow && format != "raw" {
        return Err(ApiError::BadRequest("follow: only with format=raw".into()));
    }
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let shown = if format == "asciicast" {
        format!(
            "asciicast channel={}",
            p.channel.map_or("default".into(), |c| c.to_string())
        )
    } else {
        format.clone()
    };
    audit(&st, &id, &caller, shown, range.clone(), follow).await?;
    tracing::info!(session = %id, token = %caller.name, %format, follow, range = ?range, "trail download");
    let filename = format!(
        "{id}.{}",
        match format.as_str() {
            "asciicast" => "cast",
            "fbs" => "fbs",
            _ => "trail",
        }
    );
    // A live session's trail up to this moment, not up to its last flush (bounded: a recorder
    // that is behind must not hold the download up). Not for a Range request: a client reading
    // a live trail piece by piece would otherwise force a small zstd block per piece.
    if range.is_none()
        && let Some(live) = st.registry.get(&id)
        && !live.flush_trail(LIVE_FLUSH_LIMIT).await
    {
        tracing::debug!(session = %id, "live trail not flushed before the download");
    }
    let mut resp = if format == "asciicast" {
        asciicast(path, p.channel).await?
    } else if format == "fbs" {
        fbs(path)
    } else if follow {
        follow_raw(st.clone(), id.clone(), path)
    } else {
        // ServeFile streams from disk and answers Range requests; on a trail still being written
        // it serves what is recorded so far.
        tower_http::services::ServeFile::new(path)
            .oneshot(req)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .into_response()
    };
    let h = resp.headers_mut();
    if format == "raw" {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.trailgate.trail"),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// Bytes written on a blocking thread, streamed to the client through a small bounded queue.
pub(crate) struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    pub(crate) fn new(tx: mpsc::Sender<Result<Bytes, std::io::Error>>) -> ChannelWriter {
        ChannelWriter {
            tx,
            buf: Vec::new(),
        }
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = Bytes::from(std::mem::take(&mut self.buf));
            self.tx.blocking_send(Ok(chunk)).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away")
            })?;
        }
        Ok(())
    }
}

async fn asciicast(path: PathBuf, channel: Option<u32>) -> Result<Response, ApiError> {
    // Fail before streaming if there is no such channel, or no terminal channel to export.
    let p = path.clone();
    tokio::task::spawn_blocking(move || match channel {
        Some(c) => trailgate_recorder::export::require_channel(&p, c).map(|_| c),
        None => trailgate_recorder::export::default_terminal_channel(&p),
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| match e {
        trailgate_recorder::RecorderError::NoSuchChannel { .. } => {
            ApiError::NotFound(format!("channel={}: {e}", channel.unwrap_or_default()))
        }
        _ if channel.is_none() => ApiError::NotFound("this trail has no terminal channel".into()),
        other => ApiError::from(other),
    })?;
    let (tx, rx) = mpsc::channel(8);
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter::new(tx.clone());
        let res = trailgate_recorder::export::asciicast(&path, channel, false, &mut w)
            .map(|_| ())
            .and_then(|_| w.flush().map_err(Into::into));
        if let Err(e) = res {
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let mut resp = Body::from_stream(ReceiverStream::new(rx)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-asciicast"),
    );
    Ok(resp)
}

/// The VNC session as FBS 001.000, written on a blocking thread as the trail is read.
fn fbs(path: PathBuf) -> Response {
    let (tx, rx) = mpsc::channel(8);
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter::new(tx.clone());
        let res = trailgate_recorder::vnc::export_fbs(&path, &mut w)
            .map(|_| ())
            .and_then(|_| w.flush().map_err(Into::into));
        if let Err(e) = res {
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let mut resp = Body::from_stream(ReceiverStream::new(rx)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

/// Streams the trail file as it grows, until the session has ended and everything is sent.
fn follow_raw(st: Arc<ApiState>, id: String, path: PathBuf) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut f = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // Checked before reading so that the last read after the session ends sees the seal.
            let ended = st.registry.get(&id).is_none();
            match f.read(&mut buf).await {
                Ok(0) if ended => return,
                Ok(0) => tokio::time::sleep(Duration::from_millis(50)).await,
                Ok(n) => {
                    if tx
                        .send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return; // client went away
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    Body::from_stream(ReceiverStream::new(rx)).into_response()
}

/// Verifies a session's trail (hash chain and signature) as `trailgate trail verify` does:
/// `{integrity, detail, signing_key_fingerprint, records}`. A live trail verifies as far as it is
/// written (`incomplete` until sealed).
#[utoipa::path(get, path = "/api/v1/sessions/{id}/verify", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, description = "`{integrity, detail, signing_key_fingerprint, records}`"), (status = 401), (status = 404)))]
pub async fn verify(
    State(st): State<Arc<ApiState>>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let rec = crate::routes::find(&st, &id).await?;
    let path = crate::cluster::trail_file(&st, &rec).await?;
    let info = tokio::task::spawn_blocking(move || trailgate_recorder::export::info(&path))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(axum::Json(serde_json::json!({
        "integrity": info.integrity,
        "detail": info.integrity_detail,
        "signing_key_fingerprint": info.signing_key_fingerprint,
        "records": info.records,
    })))
}
