//! The results: every trail verified, the catalog's rows counted through the API, and one table.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use trailgate_recorder::Integrity;

use crate::Args;
use crate::gateway::{API_TOKEN, Gateway};
use crate::phases::Run;

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

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

fn per(kib_delta: i64, n: usize) -> String {
    if n == 0 {
        return "-".into();
    }
    format!("{:.0} KiB", kib_delta as f64 / n as f64)
}

fn lat(l: &crate::phases::Latencies) -> String {
    format!(
        "{:.2} / {:.2} / {:.2} ms ({} keys{})",
        l.pct(0.5),
        l.pct(0.99),
        l.pct(0.999),
        l.us.len(),
        if l.errors > 0 {
            format!(", {} sessions failed", l.errors)
        } else {
            String::new()
        }
    )
}

/// The results as a markdown table (stdout).
pub fn table(args: &Args, gw: &Run, direct: Option<&Run>) {
    let col = |f: &dyn Fn(&Run) -> String| {
        let d = direct.map(f).unwrap_or_default();
        format!("| {} | {} |", f(gw), d)
    };
    let typing = args.typing.min(gw.opened);
    println!(
        "\n### {} sessions, {} typing (a key every {} ms on average), {} bulk ({} MiB downloads)\n",
        args.sessions, args.typing, args.key_interval_ms, args.bulk, args.bulk_mib
    );
    println!("| | through the gateway | direct |\n|---|---|---|");
    let rows: Vec<(&str, Box<dyn Fn(&Run) -> String>)> = vec![
        (
            "sessions open (failed)",
            Box::new(|r: &Run| format!("{} ({})", r.opened, r.failed_logins)),
        ),
        (
            "logins per second",
            Box::new(|r: &Run| {
                format!(
                    "{:.0} ({} at a time)",
                    r.opened as f64 / r.login_secs,
                    args.concurrency
                )
            }),
        ),
        (
            "gateway CPU per login",
            Box::new(|r: &Run| {
                if r.direct {
                    "-".into()
                } else {
                    format!("{:.2} ms", r.cpu_ms_per_login)
                }
            }),
        ),
        (
            "gateway RSS: before / idle / peak / closed",
            Box::new(|r: &Run| {
                if r.direct {
                    "-".into()
                } else {
                    format!(
                        "{} / {} / {} / {}",
                        mib(r.base.rss_kib),
                        mib(r.idle.rss_kib),
                        mib(r.peak_rss_kib),
                        mib(r.closed.rss_kib)
                    )
                }
            }),
        ),
        (
            "gateway RSS per idle session",
            Box::new(|r: &Run| {
                if r.direct {
                    "-".into()
                } else {
                    per(r.idle.rss_kib as i64 - r.base.rss_kib as i64, r.opened)
                }
            }),
        ),
        (
            "echo p50 / p99 / p999, typing",
            Box::new(|r: &Run| lat(&r.typing)),
        ),
        (
            "gateway CPU per typing session",
            Box::new(move |r: &Run| {
                if r.direct || typing == 0 {
                    "-".into()
                } else {
                    format!("{:.3}% of a core", r.typing_cores * 100.0 / typing as f64)
                }
            }),
        ),
        (
            "gateway RSS per typing session",
            Box::new(move |r: &Run| {
                if r.direct {
                    "-".into()
                } else {
                    per(
                        r.typing_stats.rss_kib as i64 - r.idle.rss_kib as i64,
                        typing,
                    )
                }
            }),
        ),
        (
            "echo p50 / p99 / p999, beside bulk",
            Box::new(|r: &Run| lat(&r.bulk)),
        ),
        (
            "bulk throughput (all bulk sessions)",
            Box::new(|r: &Run| {
                format!(
                    "{:.0} MiB/s, gateway {:.2} cores",
                    r.bulk_mib_s, r.bulk_cores
                )
            }),
        ),
        (
            "gateway fds: before / open / closed",
            Box::new(|r: &Run| {
                if r.direct {
                    "-".into()
                } else {
                    format!("{} / {} / {}", r.base.fds, r.idle.fds, r.closed.fds)
                }
            }),
        ),
        (
            "trails sealed / files / catalog rows",
            Box::new(|r: &Run| match &r.trails {
                Some(t) => format!("{} / {} / {}", t.sealed, t.files, t.catalog_rows),
                None => "-".into(),
            }),
        ),
    ];
    for (name, f) in &rows {
        println!("| {name} |{}", &col(f.as_ref())[1..]);
    }
    if let Some(t) = &gw.trails {
        for b in t.not_sealed.iter().take(10) {
            println!("not sealed: {b}");
        }
    }
}
