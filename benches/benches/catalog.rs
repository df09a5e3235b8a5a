//! Session-list latency with 1,000,000 sessions in the catalog: p50/p99 of filtered pages.
//!
//! `cargo bench -p trailgate-benches --bench catalog` (set `CATALOG_SESSIONS` to change the size,
//! `CATALOG_URL=postgres://...` or `CATALOG_URL=postgres` for PostgreSQL).
//! The catalog is built once in a temporary directory (takes about a minute), or in
//! `CATALOG_KEEP` (a data directory), where it stays for other benchmarks (the console's).

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use trailgate_recorder::catalog::{Catalog, Query};
use trailgate_recorder::record::*;
use trailgate_recorder::transfers::{TransferredFile, Transfers};

const YEAR_US: i64 = 365 * 24 * 3600 * 1_000_000;
const T0: i64 = 1_763_000_000_000_000; // Nov 2025, unix µs

fn record(i: u64, rng: &mut StdRng) -> SessionRecord {
    let verdict = match rng.gen_range(0..100) {
        0..=84 => Verdict::Accept,
        85..=92 => Verdict::GwAuthFail,
        93..=95 => Verdict::Deny,
        96..=97 => Verdict::Fail,
        98 => Verdict::KeyError,
        _ => Verdict::AuthFail,
    };
    let start = T0 + rng.gen_range(0..YEAR_US);
    let active = i.is_multiple_of(5000);
    SessionRecord {
        id: format!("{:016x}-{i:08}", start),
        protocol: if rng.gen_bool(0.9) {
            "ssh".into()
        } else {
            "vnc".into()
        },
        active,
        status: if active {
            Status::Connected
        } else if verdict == Verdict::Accept {
            Status::Disconnected
        } else {
            Status::Rejected
        },
        verdict: Some(verdict),
        client: ClientAddr {
            ip: format!("10.0.{}.{}", rng.gen_range(0..255), rng.gen_range(1..255)),
            port: rng.gen_range(1024..65535),
        },
        target: TargetRef {
            name: Some(format!("target-{}", rng.gen_range(0..50))),
            ip: Some("10.1.0.1".into()),
            port: Some(22),
        },
        user: UserRef {
            name: Some(format!("user-{}", rng.gen_range(0..100))),
            server_username: Some("root".into()),
        },
        auth_method: Some("publickey".into()),
        start_time: String::new(),
        start_unix_us: start,
        end_time: None,
        end_unix_us: Some(start + 60_000_000),
        duration: Some(60.0),
        bytes_client_to_server: rng.gen_range(0..1 << 20),
        bytes_server_to_client: rng.gen_range(0..1 << 26),
        end_reason: Some("client disconnected".into()),
        end_reason_code: Some(EndCode::ClientDisconnected),
        terminated_by: None,
        last_activity: None,
        files: 0,
        // A third of the sessions ran a command (the `command` filter's rows).
        channels: if rng.gen_range(0..3) == 0 {
            vec![ChannelRecord {
                id: 1,
                kind: "session-exec".into(),
                verdict: "accept".into(),
                command: Some(format!("systemctl restart svc-{}", rng.gen_range(0..1000))),
                ..Default::default()
            }]
        } else {
            vec![]
        },
        policies: vec!["channel:default".into()],
        trail: TrailRef {
            path: Some(format!("/var/lib/trailgate/trails/2026/01/01/{i}.trail")),
            url: None,
            size: 123_456,
            integrity: "sealed".into(),
            ..Default::default()
        },
        node_id: "bench".into(),
        vnc: None,
    }
}

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful: stay quick there.
    let n: u64 = std::env::var("CATALOG_SESSIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if std::env::args().any(|a| a == "--bench") {
            1_000_000
        } else {
            10_000
        });
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = std::env::var_os("CATALOG_KEEP")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    // `CATALOG_URL=postgres://...`: the same figures on PostgreSQL (`CATALOG_URL=postgres`: a
    // private PostgreSQL 15 cluster of the test kit's, started here).
    let mut _pg = None;
    let url = match std::env::var("CATALOG_URL").ok().as_deref() {
        Some("postgres") => {
            let pg = trailgate_testkit::pg::Postgres::start().expect("PostgreSQL");
            let url = pg.create_database("bench").expect("database");
            _pg = Some(pg);
            Some(url)
        }
        other => other.map(str::to_string),
    };
    let cat = Catalog::open_url(url.as_deref(), &dir).expect("catalog");
    println!("backend: {}", cat.backend().describe());
    let mut rng = StdRng::seed_from_u64(42);
    let t = Instant::now();
    let mut batch = Vec::with_capacity(50_000);
    // One session in fifty transferred files (the `file` filter's rows).
    let mut with_files = Vec::new();
    for i in 0..n {
        let r = record(i, &mut rng);
        if i % 50 == 0 {
            with_files.push(r.id.clone());
        }
        batch.push(r);
        if batch.len() == 50_000 {
            cat.insert_many(&batch).expect("insert");
            batch.clear();
        }
    }
    cat.insert_many(&batch).expect("insert");
    let tf = Instant::now();
    for id in &with_files {
        let files = (0..3)
            .map(|k| TransferredFile {
                n: k,
                channel: 1,
                path: format!("/srv/data-{}/file-{k}.bin", rng.gen_range(0..1000)),
                direction: "upload",
                bytes: 1,
                ranges: vec![(0, 1)],
                contiguous: true,
                sha256: None,
                opened_s: 0.0,
                closed_s: Some(1.0),
                status: "ok",
                error: None,
            })
            .collect();
        let t = Transfers {
            files,
            operations: vec![],
        };
        cat.set_transfers(id, &t).expect("set_transfers");
    }
    println!(
        "files index: {} sessions with 3 files each stored in {:.1} s",
        with_files.len(),
        tf.elapsed().as_secs_f64()
    );
    cat.analyze().expect("analyze");
    // Keyset paging starts from real ids deep in the list.
    let (deep, _) = cat
        .list(&Query {
            limit: Some(1000),
            offset: Some(n / 2),
            ..Default::default()
        })
        .expect("list");
    let deep_ids: Vec<String> = deep.into_iter().map(|r| r.id).collect();
    let db = cat
        .path()
        .and_then(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "catalog: {n} sessions inserted in {:.1} s, {:.0} MiB on disk",
        t.elapsed().as_secs_f64(),
        db as f64 / 1048576.0
    );

    let since = |days: i64| Some(T0 + days * 24 * 3600 * 1_000_000);
    type Case = (&'static str, Box<dyn Fn(&mut StdRng) -> Query>);
    let cases: Vec<Case> = vec![
        ("newest page (no filter)", Box::new(|_| Query::default())),
        (
            "user=U",
            Box::new(|r| Query {
                user: Some(format!("user-{}", r.gen_range(0..100))),
                ..Default::default()
            }),
        ),
        (
            "target=T&verdict=accept",
            Box::new(|r| Query {
                target: Some(format!("target-{}", r.gen_range(0..50))),
                verdict: Some("accept".into()),
                ..Default::default()
            }),
        ),
        (
            "active=true",
            Box::new(|_| Query {
                active: Some(true),
                ..Default::default()
            }),
        ),
        (
            "since/until one week",
            Box::new(move |r| {
                let d = r.gen_range(0..350);
                Query {
                    since_us: since(d),
                    until_us: since(d + 7),
                    ..Default::default()
                }
            }),
        ),
        (
            "user=U&since one month",
            Box::new(move |r| Query {
                user: Some(format!("user-{}", r.gen_range(0..100))),
                since_us: since(r.gen_range(0..330)),
                until_us: None,
                ..Default::default()
            }),
        ),
        (
            "command=restart svc-K (substring)",
            Box::new(|r| Query {
                command: Some(format!("restart svc-{}", r.gen_range(0..1000))),
                ..Default::default()
            }),
        ),
        (
            "file=data-K/ (substring)",
            Box::new(|r| Query {
                file: Some(format!("data-{}/", r.gen_range(0..1000))),
                ..Default::default()
            }),
        ),
        (
            "offset = n/2 (deep page)",
            Box::new(move |_| Query {
                offset: Some(n / 2),
                ..Default::default()
            }),
        ),
        (
            "after=ID at n/2 (keyset)",
            Box::new(move |r| Query {
                after: deep_ids.get(r.gen_range(0..deep_ids.len().max(1))).cloned(),
                ..Default::default()
            }),
        ),
        (
            "verdict=gw-auth-fail, page 20",
            Box::new(|_| Query {
                verdict: Some("gw-auth-fail".into()),
                offset: Some(1000),
                ..Default::default()
            }),
        ),
    ];
    println!("| query (limit 50) | p50 | p99 | max | total matches (last) |");
    println!("|---|---|---|---|---|");
    for (name, make) in &cases {
        let mut times = Vec::new();
        let mut total = 0;
        for _ in 0..200 {
            let q = make(&mut rng);
            let t = Instant::now();
            let (items, tot) = cat.list(&q).expect("list");
            times.push(t.elapsed());
            total = tot;
            std::hint::black_box(items);
        }
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
        println!(
            "| {name} | {} | {} | {} | {total} |",
            ms(pct(times.clone(), 0.5)),
            ms(pct(times.clone(), 0.99)),
            ms(pct(times, 1.0))
        );
    }
    cat.close();
}
