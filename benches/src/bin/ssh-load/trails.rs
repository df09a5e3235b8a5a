//! After a run: every trail verified (hash chain and signature), the catalog's ended sessions
//! counted through the API.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use trailgate_recorder::Integrity;

use crate::gateway::{API_TOKEN, Gateway};

/// Trails on disk and catalog rows after a run.
#[derive(Debug, Default)]
pub struct Trails {
    pub files: usize,
    pub sealed: usize,
    pub not_sealed: Vec<String>,
    /// Ended sessions in the catalog (through the API).
    pub catalog_rows: u64,
}

fn trail_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            trail_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "trail") {
            out.push(p);
        }
    }
}

/// `GET path` on the API with the load token; the body.
pub fn api_get(api: SocketAddr, path: &str) -> Result<serde_json::Value> {
    let mut s = std::net::TcpStream::connect(api)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {api}\r\nAuthorization: Bearer {API_TOKEN}\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).with_context(|| format!("GET {path}: {resp:.200}"))
}

/// Ended sessions in the catalog.
pub fn catalog_rows(api: SocketAddr) -> Result<u64> {
    let v = api_get(api, "/api/v1/sessions?active=false&limit=1")?;
    v["meta"]["total"].as_u64().context("meta.total")
}

/// Verifies every trail (hash chain and signature) and counts the catalog's ended sessions,
/// waiting up to 30 s for the catalog to reach `expected`.
pub async fn check_trails(gw: &Gateway, expected: usize) -> Result<Trails> {
    let mut t = Trails::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        t.catalog_rows = catalog_rows(gw.api)?;
        if t.catalog_rows >= expected as u64 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dir = gw.data_dir.join("trails");
    let (files, sealed, bad) = tokio::task::spawn_blocking(move || {
        let mut files = Vec::new();
        trail_files(&dir, &mut files);
        let mut sealed = 0;
        let mut bad = Vec::new();
        for f in &files {
            match trailgate_recorder::verify(f, None) {
                Ok(v) if v.integrity == Integrity::Sealed => sealed += 1,
                Ok(v) => bad.push(format!("{}: {:?}", f.display(), v.integrity)),
                Err(e) => bad.push(format!("{}: {e}", f.display())),
            }
        }
        (files.len(), sealed, bad)
    })
    .await?;
    t.files = files;
    t.sealed = sealed;
    t.not_sealed = bad;
    Ok(t)
}
