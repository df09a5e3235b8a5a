//! Where the catalog and the trails live, and how nodes sharing them behave:
//! `[catalog]` (`url`: `sqlite://PATH`, the default in `data_dir`, or `postgres://...`),
//! `[storage]` (`url`: absent for the local disk only, or `s3://bucket/prefix` with `endpoint`,
//! `region`, `credentials_file`, `part_size`, `cache_max`), and `[cluster]` (this node's API
//! address for the others, heartbeat and the grace before a silent node is declared lost).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Config;
use crate::error::ProxyError;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// `sqlite://PATH` (relative to `data_dir`) or `postgres://USER:PASSWORD@HOST:PORT/DB`.
    /// Absent: `sqlite://catalog.sqlite` in `data_dir`.
    #[serde(default)]
    pub url: Option<String>,
    /// A file holding the PostgreSQL password (kept out of the configuration file); used when
    /// the URL has none.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `s3://bucket/prefix`. Absent: trails stay on this node's disk.
    #[serde(default)]
    pub url: Option<String>,
    /// An S3-compatible server (`https://minio.example:9000`); absent: AWS for the region.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    /// An AWS credentials file (`[default]` or `profile`); absent: `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`) from the environment.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    #[serde(default)]
    pub profile: Option<String>,
    /// Multipart part size (at least 5 MiB).
    #[serde(default = "default_part", deserialize_with = "super::bytes::size")]
    pub part_size: u64,
    /// Trails read back from the bucket are cached in `data_dir/cache` up to this size.
    #[serde(default = "default_cache", deserialize_with = "super::bytes::size")]
    pub cache_max: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            url: None,
            endpoint: None,
            region: None,
            credentials_file: None,
            profile: None,
            part_size: default_part(),
            cache_max: default_cache(),
        }
    }
}

fn default_part() -> u64 {
    16 << 20
}
fn default_cache() -> u64 {
    4 << 30
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// How the other nodes reach this node's control API (live follow of its sessions is
    /// proxied there), e.g. `http://10.0.0.5:9090`. Absent: derived from `api.listen` when it
    /// is not a wildcard address.
    #[serde(default)]
    pub api_url: Option<String>,
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// A node silent this long is declared lost and its active sessions are ended.
    #[serde(default = "default_lost", with = "humantime_serde")]
    pub node_lost_after: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            api_url: None,
            heartbeat_interval: default_heartbeat(),
            node_lost_after: default_lost(),
        }
    }
}

fn default_heartbeat() -> Duration {
    Duration::from_secs(2)
}
fn default_lost() -> Duration {
    Duration::from_secs(30)
}

pub(super) fn validate(
    catalog: &CatalogConfig,
    storage: &StorageConfig,
    cluster: &ClusterConfig,
) -> Result<(), String> {
    if let Some(u) = &catalog.url {
        trailgate_recorder::catalog::Backend::from_url(Some(u), std::path::Path::new("."))
            .map_err(|e| {
                format!(
                    "catalog.url: {}",
                    e.to_string().trim_start_matches("catalog: ")
                )
            })?;
    }
    if catalog.password_file.is_some()
        && !catalog
            .url
            .as_deref()
            .is_some_and(|u| u.starts_with("postgres"))
    {
        return Err("catalog.password_file: only for a postgres:// catalog.url".into());
    }
    if let Some(u) = &storage.url {
        trailgate_storage::settings::parse_url(u).map_err(|e| {
            format!(
                "storage.url: {}",
                e.to_string().trim_start_matches("storage settings: url: ")
            )
        })?;
        if let Some(e) = &storage.endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(format!(
                "storage.endpoint: must start with http:// or https://, got {e:?}"
            ));
        }
    } else if storage.endpoint.is_some() || storage.credentials_file.is_some() {
        return Err(
            "storage: endpoint and credentials_file need storage.url (s3://bucket/prefix)".into(),
        );
    }
    if storage.part_size < 5 << 20 || storage.part_size > 1 << 30 {
        return Err("storage.part_size: must be between 5MiB and 1GiB".into());
    }
    if let Some(u) = &cluster.api_url
        && !(u.starts_with("http://") || u.starts_with("https://"))
    {
        return Err(format!(
            "cluster.api_url: must start with http:// or https://, got {u:?}"
        ));
    }
    if cluster.heartbeat_interval < Duration::from_millis(100)
        || cluster.heartbeat_interval > Duration::from_secs(60)
    {
        return Err("cluster.heartbeat_interval: must be between 100ms and 60s".into());
    }
    if cluster.node_lost_after < cluster.heartbeat_interval * 3 {
        return Err(format!(
            "cluster.node_lost_after: must be at least three heartbeats ({})",
            humantime::format_duration(cluster.heartbeat_interval * 3)
        ));
    }
    Ok(())
}

impl Config {
    /// The catalog URL with the password from `catalog.password_file` filled in.
    pub fn catalog_url(&self) -> Result<Option<String>, ProxyError> {
        let Some(url) = &self.catalog.url else {
            return Ok(None);
        };
        let Some(f) = &self.catalog.password_file else {
            return Ok(Some(url.clone()));
        };
        let pw = std::fs::read_to_string(f).map_err(|e| {
            ProxyError::Config(format!("catalog.password_file {}: {e}", f.display()))
        })?;
        let pw = pw.trim_end_matches(['\n', '\r']);
        // libpq's key=value options may follow the URL: `?password=` is percent-decoded.
        let enc: String = pw
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let sep = if url.contains('?') { '&' } else { '?' };
        Ok(Some(format!("{url}{sep}password={enc}")))
    }

    /// The object store of `[storage]`, if it names one.
    pub fn trail_store(&self) -> Result<Option<trailgate_storage::TrailStore>, ProxyError> {
        let Some(url) = &self.storage.url else {
            return Ok(None);
        };
        let s = trailgate_storage::S3Settings::new(
            url,
            self.storage.endpoint.as_deref(),
            self.storage.region.as_deref(),
            self.storage.credentials_file.as_deref(),
            self.storage.profile.as_deref(),
        )
        .map_err(|e| ProxyError::Config(format!("storage: {e}")))?;
        trailgate_storage::TrailStore::new(&s, self.storage.part_size as usize)
            .map(Some)
            .map_err(|e| ProxyError::Config(format!("storage: {e}")))
    }
}
