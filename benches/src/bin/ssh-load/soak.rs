//! Soak: `--soak-sessions` workers churn sessions through the gateway for `--soak-minutes`:
//! log in, type 20 keys (each checked against its echo), every fifth session download 1 MiB,
//! disconnect, again. The gateway is sampled every 30 s; at the end every trail is verified and
//! the catalog's rows are counted against the sessions the clients completed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use rand::Rng;

use crate::client::{self, Session};
use crate::gateway::Stats;
use crate::{Args, Setup};

const KEYS: usize = 20;
const SAMPLE: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Counts {
    completed: AtomicU64,
    failed: AtomicU64,
    keys: AtomicU64,
}

async fn churn(
    addr: std::net::SocketAddr,
    s: Arc<Counts>,
    key: Arc<russh::keys::PrivateKey>,
    end: Instant,
) {
    let cfg = client::config();
    let mut n = 0u64;
    while Instant::now() < end {
        n += 1;
        let r = async {
            let mut sess = Session::open(addr, "load@echo", &key, &cfg).await?;
            for k in 0..KEYS {
                sess.keystroke(b'a' + (k % 26) as u8).await?;
                s.keys.fetch_add(1, Ordering::Relaxed);
                let gap = rand::thread_rng().gen_range(20..80);
                tokio::time::sleep(Duration::from_millis(gap)).await;
            }
            if n.is_multiple_of(5) {
                sess.download(1 << 20).await?;
            }
            sess.close().await
        }
        .await;
        match r {
            Ok(()) => s.completed.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                eprintln!("soak session failed: {e:#}");
                s.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

pub async fn run(args: &Args, s: &Setup) -> Result<()> {
    let gw = s.start_gateway(args, "soak")?;
    let base = gw.stats();
    let counts = Arc::new(Counts::default());
    let start = Instant::now();
    let end = start + Duration::from_secs(args.soak_minutes * 60);
    let workers: Vec<_> = (0..args.soak_sessions)
        .map(|_| tokio::spawn(churn(gw.ssh, counts.clone(), s.user_key.clone(), end)))
        .collect();
    println!(
        "| minute | gateway RSS | fds | sessions completed | failed | keys |\n|---|---|---|---|---|---|"
    );
    let mut samples: Vec<(f64, Stats)> = Vec::new();
    while Instant::now() < end {
        tokio::time::sleep(SAMPLE.min(end.saturating_duration_since(Instant::now()))).await;
        let st = gw.stats();
        let m = start.elapsed().as_secs_f64() / 60.0;
        println!(
            "| {m:.1} | {:.1} MiB | {} | {} | {} | {} |",
            st.rss_kib as f64 / 1024.0,
            st.fds,
            counts.completed.load(Ordering::Relaxed),
            counts.failed.load(Ordering::Relaxed),
            counts.keys.load(Ordering::Relaxed)
        );
        samples.push((m, st));
    }
    for w in workers {
        let _ = w.await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while gw.stats().fds > base.fds + 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = gw.stats();
    let completed = counts.completed.load(Ordering::Relaxed);
    let failed = counts.failed.load(Ordering::Relaxed);
    let t = crate::trails::check_trails(&gw, (completed + failed) as usize).await?;
    // Warm-up: the first sixth of the run (at least one sample).
    let warm = samples
        .iter()
        .find(|(m, _)| *m >= args.soak_minutes as f64 / 6.0)
        .or(samples.first());
    let rss = |st: &Stats| st.rss_kib as f64 / 1024.0;
    let (lo, hi) = samples
        .iter()
        .filter(|(m, _)| warm.is_some_and(|(w, _)| m >= w))
        .fold((f64::MAX, 0f64), |(lo, hi), (_, st)| {
            (lo.min(rss(st)), hi.max(rss(st)))
        });
    println!(
        "\nsoak: {} workers for {} min: {completed} sessions completed, {failed} failed, {} keys echoed",
        args.soak_sessions,
        args.soak_minutes,
        counts.keys.load(Ordering::Relaxed)
    );
    if let Some((w, st)) = warm {
        println!(
            "RSS after warm-up ({w:.1} min): {:.1} MiB; from then on {lo:.1} to {hi:.1} MiB; \
             at the end {:.1} MiB with all closed (before: {:.1}); fds {} after warm-up, {} at the end (before: {})",
            rss(st),
            rss(&after),
            rss(&base),
            st.fds,
            after.fds,
            base.fds
        );
    }
    println!(
        "trails: {} sealed of {} files; catalog: {} ended sessions (clients completed {completed}, failed {failed})",
        t.sealed, t.files, t.catalog_rows
    );
    for b in t.not_sealed.iter().take(10) {
        println!("not sealed: {b}");
    }
    gw.stop();
    Ok(())
}
