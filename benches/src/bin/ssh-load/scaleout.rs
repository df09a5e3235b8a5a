//! `--scale-out`: how many sessions a second node adds. First `--typing` sessions type through
//! one gateway node pinned to CPU 0; then 1.8 times as many through two nodes pinned to CPUs 0
//! and 1, logged in round-robin, both on one PostgreSQL catalog (a private cluster of the test
//! kit's). The harness (clients and target) is not pinned: it shares both CPUs with the nodes,
//! and carries 1.8 times the load in the second run, which counts against the two nodes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::Semaphore;

use crate::client::{self, Session};
use crate::gateway::Gateway;
use crate::phases::{Latencies, type_until};
use crate::{Args, Setup};

struct Measured {
    nodes: usize,
    sessions: usize,
    failed: usize,
    lat: Latencies,
    /// CPU of each node while typing, in cores.
    cores: Vec<f64>,
}

async fn one(args: &Args, s: &Setup, url: &str, nodes: usize, sessions: usize) -> Result<Measured> {
    let gws: Vec<Gateway> = (0..nodes)
        .map(|i| s.start_node(args, i, url))
        .collect::<Result<_>>()?;
    let cfg = client::config();
    let sem = Arc::new(Semaphore::new(args.concurrency));
    let mut tasks = Vec::new();
    for k in 0..sessions {
        let permit = sem.clone().acquire_owned().await?;
        let (key, cfg, addr) = (s.user_key.clone(), cfg.clone(), gws[k % nodes].ssh);
        tasks.push(tokio::spawn(async move {
            let r = Session::open(addr, "load@echo", &key, &cfg).await;
            drop(permit);
            r
        }));
    }
    let (mut open, mut failed) = (Vec::new(), 0);
    for t in tasks {
        match t.await? {
            Ok(sess) => open.push(sess),
            Err(e) => {
                failed += 1;
                eprintln!("login failed: {e:#}");
            }
        }
    }
    eprintln!("{nodes} node(s): {} sessions open", open.len());
    tokio::time::sleep(Duration::from_secs(args.idle_settle_s)).await;
    let before: Vec<_> = gws.iter().map(|g| g.stats()).collect();
    let until = Instant::now() + Duration::from_secs(args.duration_s);
    let (open, lat) = type_until(open, Duration::from_millis(args.key_interval_ms), until).await;
    let cores = gws
        .iter()
        .zip(&before)
        .map(|(g, b)| b.cores_until(&g.stats()))
        .collect();
    for sess in open {
        let _ = sess.close().await;
    }
    for g in gws {
        g.stop();
    }
    Ok(Measured {
        nodes,
        sessions,
        failed,
        lat,
        cores,
    })
}

pub async fn run(args: &Args, s: &Setup) -> Result<()> {
    let pg = trailgate_testkit::pg::Postgres::start()?;
    let single = one(args, s, &pg.create_database("one")?, 1, args.typing).await?;
    let more = (args.typing as f64 * 1.8).round() as usize;
    let double = one(args, s, &pg.create_database("two")?, 2, more).await?;
    println!(
        "| nodes (one core each) | typing sessions | failed | keys | echo p50 | p99 | p999 | node CPU (cores) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for m in [&single, &double] {
        println!(
            "| {} | {} | {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
            m.nodes,
            m.sessions,
            m.failed,
            m.lat.us.len(),
            m.lat.pct(0.5),
            m.lat.pct(0.99),
            m.lat.pct(0.999),
            m.cores
                .iter()
                .map(|c| format!("{c:.2}"))
                .collect::<Vec<_>>()
                .join(" + ")
        );
    }
    Ok(())
}
