//! Configuration endpoints: settings policies per protocol (`/api/v1/configuration/{ssh,vnc}/
//! settings_policies[/{key}]`), the global VNC options, and the audit of changes. Envelopes are
//! the vendor's: `{key, body, meta{href, parent}}` for one object, `{items, meta}` for lists.
//! Reads: any role; writes: admin. Policies from the configuration file are listed with
//! `"source": "config"` and are read-only here. Every change is persisted in the catalog with
//! its audit entry before it takes effect, and applies to sessions that start afterwards.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};
use trailgate_proxy::ProxyError;
use trailgate_proxy::config::Protocol;
use trailgate_proxy::policy::{SettingsPolicy, VncOptions};
use trailgate_proxy::runtime::{Resolved, Runtime};
use trailgate_recorder::catalog::{Catalog, ConfigChange};

use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;

const POLICY_KIND: &str = "settings_policy";
const OPTIONS_KIND: &str = "options";

fn protocol(p: &str) -> Result<Protocol, ApiError> {
    Protocol::ALL
        .into_iter()
        .find(|x| x.as_str() == p)
        .ok_or_else(|| {
            ApiError::NotFound(format!("no configuration for protocol {p:?} (ssh, vnc)"))
        })
}

fn base(p: Protocol) -> String {
    format!("/api/v1/configuration/{}/settings_policies", p.as_str())
}

fn now() -> String {
    trailgate_recorder::writer::rfc3339(time::OffsetDateTime::now_utc())
}

fn proxy_err(e: ProxyError) -> ApiError {
    match e {
        ProxyError::Conflict(m) => ApiError::Conflict(m),
        ProxyError::NotFound(m) => ApiError::NotFound(m),
        ProxyError::Invalid(m) => ApiError::BadRequest(m),
        other => ApiError::Internal(other.to_string()),
    }
}

fn object(p: Protocol, r: &Resolved) -> Value {
    let mut o = json!({
        "key": r.key,
        "body": r.policy,
        "source": r.source,
        "meta": {"href": format!("{}/{}", base(p), r.key), "parent": base(p)},
    });
    let w = r.policy.warnings("body");
    if !w.is_empty() {
        o["warnings"] = json!(w);
    }
    o
}

/// A PUT or POST carries the body alone, or the object as GET returned it (`{key, body, ...}`).
fn body_of(v: Value) -> Result<SettingsPolicy, ApiError> {
    let body = match v {
        Value::Object(mut m) if m.contains_key("body") => m.remove("body").unwrap_or(Value::Null),
        other => other,
    };
    parse_body(body)
}

/// A request body as `T`; a problem names the field (`body.timeout: ...`).
fn parse_body<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            "body".to_string()
        } else {
            format!("body.{path}")
        };
        ApiError::BadRequest(format!("{at}: {}", e.inner()))
    })
}

#[utoipa::path(get, path = "/api/v1/configuration/{proto}/settings_policies", params(("proto" = String, Path, description = "ssh or vnc")), security(("bearer" = [])),
    responses((status = 200, description = "`{items: [{key, body, source, meta}], meta}`"), (status = 401), (status = 404)))]
pub async fn list_policies(
    State(st): State<Arc<ApiState>>,
    _caller: Caller,
    Path(proto): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let p = protocol(&proto)?;
    let items: Vec<Value> = st.runtime.list(p).iter().map(|r| object(p, r)).collect();
    let n = items.len();
    Ok(Json(json!({
        "items": items,
        "meta": {"href": base(p), "parent": format!("/api/v1/configuration/{}", p.as_str()),
                 "limit": n, "offset": 0, "total": n, "next": null, "previous": null},
    })))
}

#[utoipa::path(get, path = "/api/v1/configuration/{proto}/settings_policies/{key}", params(("proto" = String, Path, description = "ssh or vnc"), ("key" = String, Path)), security(("bearer" = [])),
    responses((status = 200, description = "`{key, body, source, meta}`"), (status = 401), (status = 404)))]
pub async fn get_policy(
    State(st): State<Arc<ApiState>>,
    _caller: Caller,
    Path((proto, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let p = protocol(&proto)?;
    let cfg = st.runtime.config();
    let r = st
        .runtime
        .resolve(&cfg, p, &key)
        .ok_or_else(|| ApiError::NotFound(format!("no settings policy {key:?}")))?;
    Ok(Json(object(p, &r)))
}

#[utoipa::path(post, path = "/api/v1/configuration/{proto}/settings_policies", params(("proto" = String, Path, description = "ssh or vnc")), security(("bearer" = [])),
    request_body = SettingsPolicy,
    responses((status = 201, description = "created under a generated key"), (status = 400), (status = 401), (status = 403)))]
pub async fn create_policy(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    Path(proto): Path<String>,
    body: Json<Value>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require_admin()?;
    let p = protocol(&proto)?;
    let policy = body_of(body.0)?;
    let key = uuid::Uuid::now_v7().to_string();
    let r = store_policy(&st, &caller, p, &key, policy).await?;
    Ok((StatusCode::CREATED, Json(object(p, &r))))
}

#[utoipa::path(put, path = "/api/v1/configuration/{proto}/settings_policies/{key}", params(("proto" = String, Path, description = "ssh or vnc"), ("key" = String, Path)), security(("bearer" = [])),
    request_body = SettingsPolicy,
    responses((status = 200, description = "replaced"), (status = 201, description = "created"), (status = 400), (status = 401), (status = 403),
        (status = 409, description = "defined in the configuration file")))]
pub async fn put_policy(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    Path((proto, key)): Path<(String, String)>,
    body: Json<Value>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require_admin()?;
    let p = protocol(&proto)?;
    let policy = body_of(body.0)?;
    let existed = st.runtime.resolve(&st.runtime.config(), p, &key).is_some();
    let r = store_policy(&st, &caller, p, &key, policy).await?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(object(p, &r))))
}

async fn store_policy(
    st: &ApiState,
    caller: &Caller,
    p: Protocol,
    key: &str,
    policy: SettingsPolicy,
) -> Result<Resolved, ApiError> {
    let _one_at_a_time = st.config_lock.lock().await;
    st.runtime.check_put(key, &policy).map_err(proxy_err)?;
    let before = st
        .runtime
        .resolve(&st.runtime.config(), p, key)
        .map(|r| serde_json::to_value(&r.policy).unwrap_or_default());
    let after = serde_json::to_value(&policy).map_err(|e| ApiError::Internal(e.to_string()))?;
    let change = ConfigChange {
        n: 0,
        time: now(),
        by: caller.name.clone(),
        action: if before.is_some() {
            "replace"
        } else {
            "create"
        }
        .into(),
        object: format!("{}/{key}", base(p)),
        before,
        after: Some(after.clone()),
        detail: None,
    };
    persist(
        &st.catalog,
        POLICY_KIND,
        p.as_str(),
        key,
        Some(after),
        change,
    )
    .await?;
    st.runtime.put(p, key, policy.clone());
    tracing::info!(by = %caller.name, protocol = p.as_str(), %key, "settings policy stored");
    Ok(Resolved {
        key: key.to_string(),
        source: trailgate_proxy::runtime::Source::Api,
        policy,
    })
}

#[utoipa::path(delete, path = "/api/v1/configuration/{proto}/settings_policies/{key}", params(("proto" = String, Path, description = "ssh or vnc"), ("key" = String, Path)), security(("bearer" = [])),
    responses((status = 200), (status = 401), (status = 403), (status = 404),
        (status = 409, description = "defined in the file, or used by a target")))]
pub async fn delete_policy(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    Path((proto, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let p = protocol(&proto)?;
    let _one_at_a_time = st.config_lock.lock().await;
    let current = st.runtime.check_delete(p, &key).map_err(proxy_err)?;
    let change = ConfigChange {
        n: 0,
        time: now(),
        by: caller.name.clone(),
        action: "delete".into(),
        object: format!("{}/{key}", base(p)),
        before: serde_json::to_value(&current).ok(),
        after: None,
        detail: None,
    };
    persist(&st.catalog, POLICY_KIND, p.as_str(), &key, None, change).await?;
    st.runtime.delete(p, &key);
    tracing::info!(by = %caller.name, protocol = p.as_str(), %key, "settings policy deleted");
    Ok(Json(
        json!({"key": key, "meta": {"href": format!("{}/{key}", base(p)), "parent": base(p)}}),
    ))
}

async fn persist(
    catalog: &Arc<Catalog>,
    kind: &'static str,
    scope: &str,
    key: &str,
    body: Option<Value>,
    change: ConfigChange,
) -> Result<(), ApiError> {
    let (catalog, scope, key) = (catalog.clone(), scope.to_string(), key.to_string());
    tokio::task::spawn_blocking(move || {
        catalog.put_config_object(kind, &scope, &key, body.as_ref(), &change)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(())
}

const OPTIONS_HREF: &str = "/api/v1/configuration/vnc/options";

fn options_object(o: &VncOptions) -> Value {
    json!({"key": "options", "body": o, "meta": {"href": OPTIONS_HREF, "parent": "/api/v1/configuration/vnc"}})
}

#[utoipa::path(get, path = "/api/v1/configuration/vnc/options", security(("bearer" = [])),
    responses((status = 200, description = "`{key: \"options\", body, meta}`"), (status = 401)))]
pub async fn get_vnc_options(
    State(st): State<Arc<ApiState>>,
    _caller: Caller,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(options_object(&st.runtime.vnc_options())))
}

#[utoipa::path(put, path = "/api/v1/configuration/vnc/options", security(("bearer" = [])),
    request_body = VncOptions,
    responses((status = 200), (status = 400), (status = 401), (status = 403)))]
pub async fn put_vnc_options(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    body: Json<Value>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let v = match body.0 {
        Value::Object(mut m) if m.contains_key("body") => m.remove("body").unwrap_or(Value::Null),
        other => other,
    };
    let o: VncOptions = parse_body(v)?;
    o.validate()
        .map_err(|m| ApiError::BadRequest(format!("body.{m}")))?;
    let _one_at_a_time = st.config_lock.lock().await;
    let before = st.runtime.vnc_options();
    let after = serde_json::to_value(&o).map_err(|e| ApiError::Internal(e.to_string()))?;
    let change = ConfigChange {
        n: 0,
        time: now(),
        by: caller.name.clone(),
        action: "update".into(),
        object: OPTIONS_HREF.into(),
        before: serde_json::to_value(&before).ok(),
        after: Some(after.clone()),
        detail: None,
    };
    persist(
        &st.catalog,
        OPTIONS_KIND,
        "vnc",
        "options",
        Some(after),
        change,
    )
    .await?;
    st.runtime.set_vnc_options(o.clone());
    if let Some(hook) = &st.on_vnc_options {
        hook(&o);
    }
    if o.channel_database_cleanup.enabled {
        let (catalog, runtime) = (st.catalog.clone(), st.runtime.clone());
        tokio::task::spawn_blocking(move || cleanup(&catalog, &runtime));
    }
    tracing::info!(by = %caller.name, enabled = o.service.enabled, "vnc options updated");
    Ok(Json(options_object(&o)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ChangesParams {
    pub limit: Option<u32>,
    pub offset: Option<u64>,
}

#[utoipa::path(get, path = "/api/v1/configuration/changes", params(ChangesParams), security(("bearer" = [])),
    responses((status = 200, description = "`{items: [ConfigChange], meta}`, newest first"), (status = 401)))]
pub async fn changes(
    State(st): State<Arc<ApiState>>,
    _caller: Caller,
    Query(q): Query<ChangesParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let offset = q.offset.unwrap_or(0);
    let catalog = st.catalog.clone();
    let (items, total) = tokio::task::spawn_blocking(move || catalog.config_changes(limit, offset))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let href = "/api/v1/configuration/changes";
    let next = (offset + u64::from(limit) < total)
        .then(|| format!("{href}?limit={limit}&offset={}", offset + u64::from(limit)));
    let previous = (offset > 0).then(|| {
        format!(
            "{href}?limit={limit}&offset={}",
            offset.saturating_sub(u64::from(limit))
        )
    });
    Ok(Json(json!({
        "items": items,
        "meta": {"href": href, "limit": limit, "offset": offset, "total": total, "next": next, "previous": previous},
    })))
}

/// Loads what the API stored (policies, VNC options) into the runtime, at start-up. Entries that
/// no longer validate (written by another version) are skipped with an error in the log.
pub fn restore(catalog: &Catalog, runtime: &Runtime) -> Result<usize, ApiError> {
    let mut n = 0;
    for o in catalog.config_objects(POLICY_KIND)? {
        let Some(p) = Protocol::ALL.into_iter().find(|p| p.as_str() == o.scope) else {
            continue;
        };
        match serde_json::from_value::<SettingsPolicy>(o.body)
            .map_err(|e| e.to_string())
            .and_then(|pol| pol.validate("body").map(|_| pol))
        {
            Ok(pol) => {
                if runtime.config().settings_policies.contains_key(&o.key) {
                    tracing::warn!(key = %o.key, "settings policy from the control API is shadowed by the file's of the same key");
                }
                runtime.put(p, &o.key, pol);
                n += 1;
            }
            Err(e) => tracing::error!(key = %o.key, error = %e, "stored settings policy skipped"),
        }
    }
    if let Some(v) = catalog.config_object(OPTIONS_KIND, "vnc", "options")? {
        match serde_json::from_value::<VncOptions>(v) {
            Ok(o) if o.validate().is_ok() => runtime.set_vnc_options(o),
            _ => tracing::error!("stored vnc options skipped: they do not validate"),
        }
    }
    Ok(n)
}

/// Deletes the metadata of VNC sessions older than the options' `channel_database_cleanup.days`
/// (never of active sessions). Returns how many records went.
pub fn cleanup(catalog: &Catalog, runtime: &Runtime) -> usize {
    let o = runtime.vnc_options().channel_database_cleanup;
    let Some(days) = o.days.filter(|_| o.enabled) else {
        return 0;
    };
    let cutoff = time::OffsetDateTime::now_utc() - time::Duration::days(i64::from(days));
    let cutoff_us = (cutoff.unix_timestamp_nanos() / 1000) as i64;
    match catalog.delete_ended_before(&runtime.config().node_id(), Some("vnc"), cutoff_us) {
        Ok((_, n)) => {
            if n > 0 {
                tracing::info!(sessions = n, days, "vnc session metadata cleaned up");
            }
            n
        }
        Err(e) => {
            tracing::error!(error = %e, "vnc session metadata cleanup failed");
            0
        }
    }
}
