//! Session endpoints.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::json;
use trailgate_proxy::registry::KillReason;
use trailgate_recorder::catalog::{self, TrailDownload};
use trailgate_recorder::record::{ChannelRecord, SessionRecord};

use crate::ApiState;
use crate::auth::Caller;
use crate::blocking;
use crate::error::ApiError;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListParams {
    /// Page size, default 50, at most 1000.
    pub limit: Option<u32>,
    pub offset: Option<u64>,
    pub active: Option<bool>,
    pub protocol: Option<String>,
    pub user: Option<String>,
    pub target: Option<String>,
    pub verdict: Option<String>,
    /// RFC 3339: sessions that started at or after.
    pub since: Option<String>,
    /// RFC 3339: sessions that started before.
    pub until: Option<String>,
    /// Sessions that transferred a file whose path contains this.
    pub file: Option<String>,
    /// Sessions with an exec command containing this.
    pub command: Option<String>,
    /// Keyset paging: the sessions after this id in list order (the `next` link carries it);
    /// not combined with `offset`.
    pub after: Option<String>,
}

/// Paging of the lists inside a session (channels, downloads, files).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct PageParams {
    /// Page size, default 100, at most 1000.
    pub limit: Option<u32>,
    pub offset: Option<u64>,
}

impl PageParams {
    /// The page's limit and offset, checked.
    pub fn checked(&self) -> Result<(u32, u64), ApiError> {
        check_paging(self.limit, self.offset)?;
        Ok((self.limit.unwrap_or(100), self.offset.unwrap_or(0)))
    }

    /// One page of `all` and its meta (`base`: the list's path).
    pub fn page<T>(&self, base: &str, all: Vec<T>) -> Result<(Vec<T>, Meta), ApiError> {
        let (limit, offset) = self.checked()?;
        let total = all.len() as u64;
        let items = all
            .into_iter()
            .skip(offset.min(usize::MAX as u64) as usize)
            .take(limit as usize)
            .collect();
        Ok((items, Meta::offset_page(base, "", limit, offset, total)))
    }
}

fn check_paging(limit: Option<u32>, offset: Option<u64>) -> Result<(), ApiError> {
    if offset.is_some_and(|o| o > i64::MAX as u64) {
        return Err(ApiError::BadRequest(format!(
            "offset: must be at most {}",
            i64::MAX
        )));
    }
    if limit.is_some_and(|l| l == 0 || l > 1000) {
        return Err(ApiError::BadRequest(
            "limit: must be between 1 and 1000".into(),
        ));
    }
    Ok(())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Meta {
    pub limit: u32,
    pub offset: u64,
    /// Every match of the filters (whatever the page).
    pub total: u64,
    /// Link to the next page, or null.
    pub next: Option<String>,
    /// Link to the previous page, or null.
    pub previous: Option<String>,
}

impl Meta {
    /// Offset paging: `query` is the list's other parameters (`k=v&...`, or empty).
    pub fn offset_page(base: &str, query: &str, limit: u32, offset: u64, total: u64) -> Meta {
        let link = |off: u64| {
            let sep = if query.is_empty() { "" } else { "&" };
            format!("{base}?limit={limit}&offset={off}{sep}{query}")
        };
        Meta {
            limit,
            offset,
            total,
            next: (offset + u64::from(limit) < total).then(|| link(offset + u64::from(limit))),
            previous: (offset > 0).then(|| link(offset.saturating_sub(u64::from(limit)))),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionList {
    pub items: Vec<SessionRecord>,
    pub meta: Meta,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChannelList {
    pub items: Vec<ChannelRecord>,
    pub meta: Meta,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DownloadList {
    pub items: Vec<TrailDownload>,
    pub meta: Meta,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct KillRequest {
    /// Shown to the user and recorded as the end reason.
    pub reason: Option<String>,
}

fn parse_time(key: &str, v: &Option<String>) -> Result<Option<i64>, ApiError> {
    v.as_deref()
        .map(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map(|t| (t.unix_timestamp_nanos() / 1000) as i64)
                .map_err(|_| {
                    ApiError::BadRequest(format!(
                        "{key}: expected an RFC 3339 time such as 2026-11-22T10:00:00Z"
                    ))
                })
        })
        .transpose()
}

/// 200 while sessions can be recorded; 503 while they cannot (the trail directory cannot be
/// written, or catalog writes are failing and being retried). Unauthenticated: the reasons name
/// no paths. The disk probe runs at most once a second.
pub async fn healthz(State(st): State<Arc<ApiState>>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let floor = st.runtime.config().recording.min_free_space;
    let probe = st.health.recording(&st.data_dir, floor).await;
    let catalog = st.catalog.health();
    let problems: Vec<String> = [probe.err(), catalog.err()].into_iter().flatten().collect();
    if problems.is_empty() {
        return Json(json!({"status": "ok"})).into_response();
    }
    (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "recording unavailable", "problems": problems})),
    )
        .into_response()
}

/// Prometheus metrics (any valid token: scrapers send it as `authorization` bearer credentials).
#[utoipa::path(get, path = "/metrics", security(("bearer" = [])),
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain"),
        (status = 401)))]
pub async fn metrics(
    State(st): State<Arc<ApiState>>,
    _c: Caller,
) -> impl axum::response::IntoResponse {
    st.metrics
        .catalog_write_failures(st.catalog.write_failures());
    if let Some(u) = &st.uploader {
        use std::sync::atomic::Ordering::Relaxed;
        st.metrics.trail_uploads(
            u.counters.uploaded.load(Relaxed),
            u.counters.failed.load(Relaxed),
            u.counters.bytes.load(Relaxed),
        );
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.encode(),
    )
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}

/// List sessions, newest first.
#[utoipa::path(get, path = "/api/v1/sessions", params(ListParams), security(("bearer" = [])),
    responses((status = 200, body = SessionList), (status = 400), (status = 401), (status = 403)))]
pub async fn list_sessions(
    State(st): State<Arc<ApiState>>,
    _c: Caller,
    Query(p): Query<ListParams>,
) -> Result<Json<SessionList>, ApiError> {
    check_paging(p.limit, p.offset)?;
    if let Some(v) = &p.verdict
        && trailgate_recorder::record::Verdict::parse(v).is_none()
    {
        return Err(ApiError::BadRequest(format!(
            "verdict: unknown verdict {v:?}"
        )));
    }
    if p.after.is_some() && p.offset.is_some() {
        return Err(ApiError::BadRequest(
            "after: cannot be combined with offset (use one way of paging)".into(),
        ));
    }
    let q = catalog::Query {
        limit: Some(p.limit.unwrap_or(50)),
        offset: p.offset,
        active: p.active,
        protocol: p.protocol.clone(),
        user: p.user.clone(),
        target: p.target.clone(),
        verdict: p.verdict.clone(),
        since_us: parse_time("since", &p.since)?,
        until_us: parse_time("until", &p.until)?,
        file: p.file.clone().filter(|f| !f.is_empty()),
        command: p.command.clone().filter(|c| !c.is_empty()),
        after: p.after.clone(),
    };
    let limit = q.limit.unwrap_or(50);
    let offset = q.offset.unwrap_or(0);
    let cat = st.catalog.clone();
    let registry = st.registry.clone();
    let (mut items, total) = blocking(move || {
        if let Some(a) = &q.after
            && !cat.exists(a)?
        {
            return Err(ApiError::BadRequest(format!("after: no session {a}")));
        }
        cat.list(&q).map_err(ApiError::from)
    })
    .await?;
    // Active sessions: the live view is fresher than the catalog (byte counters, channels).
    let mut ended = Vec::new();
    for (i, it) in items.iter_mut().enumerate().filter(|(_, i)| i.active) {
        match registry.get(&it.id).and_then(|s| s.snapshot()) {
            Some(live) => *it = live,
            None => ended.push(i),
        }
    }
    // Marked active in the catalog but gone from the registry: the session has just ended and
    // its final record is on its way to the catalog. Show that record, not the stale one.
    if !ended.is_empty() {
        let cat = st.catalog.clone();
        let ids: Vec<String> = ended.iter().map(|&i| items[i].id.clone()).collect();
        let finals = blocking(move || {
            cat.flush_for(Some(FINAL_RECORD_WAIT));
            ids.iter()
                .map(|id| cat.get(id).map_err(ApiError::from))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        for (&i, rec) in ended.iter().zip(finals) {
            if let Some(rec) = rec {
                items[i] = rec;
            }
        }
    }
    let mut query = Vec::new();
    for (k, v) in [
        ("protocol", &p.protocol),
        ("user", &p.user),
        ("target", &p.target),
        ("verdict", &p.verdict),
        ("since", &p.since),
        ("until", &p.until),
        ("file", &p.file),
        ("command", &p.command),
    ] {
        if let Some(v) = v {
            query.push(format!("{k}={}", urlencode(v)));
        }
    }
    if let Some(a) = p.active {
        query.push(format!("active={a}"));
    }
    let query = query.join("&");
    const BASE: &str = "/api/v1/sessions";
    let meta = if p.after.is_some() {
        // Keyset: the next page starts after the last item; there is no way back but the start.
        let sep = if query.is_empty() { "" } else { "&" };
        Meta {
            limit,
            offset: 0,
            total,
            next: (items.len() == limit as usize)
                .then(|| items.last())
                .flatten()
                .map(|last| {
                    format!(
                        "{BASE}?limit={limit}&after={}{sep}{query}",
                        urlencode(&last.id)
                    )
                }),
            previous: None,
        }
    } else {
        Meta::offset_page(BASE, &query, limit, offset, total)
    };
    Ok(Json(SessionList { items, meta }))
}

/// Percent-encodes what is not unreserved in a URL path segment or query value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A session: the live view while active, the catalog record after.
pub async fn find(st: &Arc<ApiState>, id: &str) -> Result<SessionRecord, ApiError> {
    if let Some(live) = st.registry.get(id).and_then(|s| s.snapshot()) {
        return Ok(live);
    }
    let cat = st.catalog.clone();
    let id2 = id.to_string();
    blocking(move || {
        let rec = cat.get(&id2)?;
        // Active in the catalog but not live: it has just ended; wait for its final record.
        if rec.as_ref().is_some_and(|r| r.active) {
            cat.flush_for(Some(FINAL_RECORD_WAIT));
            return cat.get(&id2).map_err(ApiError::from);
        }
        Ok(rec)
    })
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no session {id}")))
}

/// How long an answer waits for the final record of a session that has just ended.
const FINAL_RECORD_WAIT: Duration = Duration::from_secs(2);

#[utoipa::path(get, path = "/api/v1/sessions/{id}", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = SessionRecord), (status = 401), (status = 404)))]
pub async fn get_session(
    State(st): State<Arc<ApiState>>,
    _c: Caller,
    Path(id): Path<String>,
) -> Result<Json<SessionRecord>, ApiError> {
    Ok(Json(find(&st, &id).await?))
}

#[utoipa::path(get, path = "/api/v1/sessions/{id}/channels", params(("id" = String, Path), PageParams), security(("bearer" = [])),
    responses((status = 200, body = ChannelList), (status = 401), (status = 404)))]
pub async fn get_channels(
    State(st): State<Arc<ApiState>>,
    _c: Caller,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
) -> Result<Json<ChannelList>, ApiError> {
    page.checked()?;
    let base = format!("/api/v1/sessions/{}/channels", urlencode(&id));
    let (items, meta) = page.page(&base, find(&st, &id).await?.channels)?;
    Ok(Json(ChannelList { items, meta }))
}

/// Terminate a live session (admin). The client is disconnected with the reason, the trail sealed.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/kill", params(("id" = String, Path)), request_body(content = KillRequest, description = "optional"),
    security(("bearer" = [])),
    responses((status = 200, body = SessionRecord, description = "the ended session"), (status = 401), (status = 403), (status = 404), (status = 409)))]
pub async fn kill_session(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<KillRequest>>,
) -> Result<Json<SessionRecord>, ApiError> {
    caller.require_admin()?;
    let reason = body
        .and_then(|b| b.0.reason)
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| "terminated by an operator".into());
    let Some(live) = st.registry.get(&id) else {
        let rec = find(&st, &id).await?;
        if rec.active && !rec.node_id.is_empty() && rec.node_id != st.node_id {
            let by = format!("api token {}", caller.name);
            return Ok(Json(
                crate::cluster::remote_kill(&st, rec, reason, by).await?,
            ));
        }
        return Err(ApiError::Conflict(format!(
            "session {id} has already ended"
        )));
    };
    tracing::info!(session = %id, token = %caller.name, %reason, "kill requested");
    live.kill(KillReason {
        reason,
        by: format!("api token {}", caller.name),
        code: trailgate_recorder::record::EndCode::Killed,
    });
    // Answer with the final record: wait until the session has ended and its trail is sealed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while st.registry.get(&id).is_some() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cat = st.catalog.clone();
    blocking(move || {
        cat.flush();
        Ok(())
    })
    .await?;
    Ok(Json(find(&st, &id).await?))
}

#[utoipa::path(get, path = "/api/v1/sessions/{id}/trail_downloads", params(("id" = String, Path), PageParams), security(("bearer" = [])),
    responses((status = 200, body = DownloadList), (status = 401), (status = 404)))]
pub async fn trail_downloads(
    State(st): State<Arc<ApiState>>,
    _c: Caller,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
) -> Result<Json<DownloadList>, ApiError> {
    let (limit, offset) = page.checked()?;
    find(&st, &id).await?;
    let cat = st.catalog.clone();
    let base = format!("/api/v1/sessions/{}/trail_downloads", urlencode(&id));
    let (items, total) =
        blocking(move || cat.downloads(&id, limit, offset).map_err(ApiError::from)).await?;
    Ok(Json(DownloadList {
        items,
        meta: Meta::offset_page(&base, "", limit, offset, total),
    }))
}
