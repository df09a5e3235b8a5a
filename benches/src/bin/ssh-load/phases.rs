//! The measured run: log in, idle, type, type beside bulk downloads, close; through the gateway
//! or straight to the target.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use rand::Rng;
use tokio::sync::Semaphore;

use crate::client::{self, Session};
use crate::gateway::{self, Gateway, Stats};
use crate::{Args, Setup};

/// What one run measured.
#[derive(Debug, Default)]
pub struct Run {
    pub direct: bool,
    pub opened: usize,
    pub failed_logins: usize,
    pub first_error: Option<String>,
    pub login_secs: f64,
    /// Gateway CPU per login, ms.
    pub cpu_ms_per_login: f64,
    pub base: Stats,
    pub idle: Stats,
    pub typing_stats: Stats,
    /// Gateway CPU while typing, in cores.
    pub typing_cores: f64,
    pub typing: Latencies,
    pub bulk: Latencies,
    pub bulk_mib_s: f64,
    pub bulk_cores: f64,
    pub peak_rss_kib: u64,
    pub closed: Stats,
    pub trails: Option<crate::trails::Trails>,
}

#[derive(Debug, Default)]
pub struct Latencies {
    /// Echo round trips, µs, sorted.
    pub us: Vec<u32>,
    pub errors: usize,
}

impl Latencies {
    pub fn pct(&self, p: f64) -> f64 {
        if self.us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.us.len() as f64 * p).ceil() as usize).clamp(1, self.us.len()) - 1;
        self.us[i] as f64 / 1000.0
    }
}

fn stats(gw: Option<&Gateway>) -> Stats {
    gw.map(|g| g.stats()).unwrap_or_default()
}

/// `typing` sessions type until `until`; their round trips.
pub async fn type_until(
    sessions: Vec<Session>,
    mean: Duration,
    until: Instant,
) -> (Vec<Session>, Latencies) {
    let lat = Arc::new(Mutex::new(Latencies::default()));
    let mut tasks = Vec::new();
    for mut s in sessions {
        let lat = lat.clone();
        tasks.push(tokio::spawn(async move {
            // Start at a random point of the first interval, as people do.
            let first = mean.mul_f64(rand::thread_rng().gen_range(0.0..1.0));
            tokio::time::sleep(first).await;
            let mut key = b'a';
            while Instant::now() < until {
                match s.keystroke(key).await {
                    Ok(d) => lat
                        .lock()
                        .unwrap()
                        .us
                        .push(d.as_micros().min(u32::MAX as u128) as u32),
                    Err(_) => {
                        lat.lock().unwrap().errors += 1;
                        return None;
                    }
                }
                key = if key == b'z' { b'a' } else { key + 1 };
                let gap = mean.mul_f64(rand::thread_rng().gen_range(0.5..1.5));
                tokio::time::sleep(gap).await;
            }
            Some(s)
        }));
    }
    let mut back = Vec::new();
    for t in tasks {
        if let Ok(Some(s)) = t.await {
            back.push(s);
        }
    }
    let mut lat = std::mem::take(&mut *lat.lock().unwrap());
    lat.us.sort_unstable();
    (back, lat)
}

pub async fn run(args: &Args, s: &Setup, direct: bool) -> Result<Run> {
    let mut run = Run {
        direct,
        ..Run::default()
    };
    let gw = if direct {
        None
    } else {
        Some(s.start_gateway(args, "gateway")?)
    };
    let (addr, user) = match &gw {
        Some(g) => (g.ssh, "load@echo"),
        None => (s.target, "load"),
    };
    let label = if direct { "direct" } else { "gateway" };
    run.base = stats(gw.as_ref());

    // 1. Logins.
    let cfg = client::config();
    let sem = Arc::new(Semaphore::new(args.concurrency));
    let t = Instant::now();
    let mut tasks = Vec::with_capacity(args.sessions);
    for _ in 0..args.sessions {
        let permit = sem.clone().acquire_owned().await?;
        let (key, cfg) = (s.user_key.clone(), cfg.clone());
        tasks.push(tokio::spawn(async move {
            let r = Session::open(addr, user, &key, &cfg).await;
            drop(permit);
            r
        }));
    }
    let mut sessions = Vec::with_capacity(args.sessions);
    for task in tasks {
        match task.await? {
            Ok(sess) => sessions.push(sess),
            Err(e) => {
                run.failed_logins += 1;
                run.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    run.login_secs = t.elapsed().as_secs_f64();
    run.opened = sessions.len();
    let after_logins = stats(gw.as_ref());
    run.cpu_ms_per_login = (after_logins.cpu_ticks.saturating_sub(run.base.cpu_ticks)) as f64
        / gateway::ticks_per_second()
        * 1000.0
        / run.opened.max(1) as f64;
    eprintln!(
        "{label}: {} sessions open in {:.1} s ({} failed{})",
        run.opened,
        run.login_secs,
        run.failed_logins,
        run.first_error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    );

    // 2. Idle.
    tokio::time::sleep(Duration::from_secs(args.idle_settle_s)).await;
    run.idle = stats(gw.as_ref());
    eprintln!(
        "{label}: idle RSS {} KiB, {} fds",
        run.idle.rss_kib, run.idle.fds
    );

    // 3. Typing.
    let mean = Duration::from_millis(args.key_interval_ms);
    let typing: Vec<Session> = sessions.drain(..args.typing.min(sessions.len())).collect();
    let before = stats(gw.as_ref());
    let peak = sample_peak(gw.as_ref().map(|g| g.child.id()));
    let until = Instant::now() + Duration::from_secs(args.duration_s);
    let (typing, lat) = type_until(typing, mean, until).await;
    run.typing_stats = stats(gw.as_ref());
    run.typing_cores = before.cores_until(&run.typing_stats);
    run.typing = lat;
    eprintln!(
        "{label}: typing p50 {:.2} ms p99 {:.2} ms ({} keys)",
        run.typing.pct(0.5),
        run.typing.pct(0.99),
        run.typing.us.len()
    );

    // 4. Typing beside bulk downloads.
    let bulk: Vec<Session> = sessions.drain(..args.bulk.min(sessions.len())).collect();
    let before = stats(gw.as_ref());
    let until = Instant::now() + Duration::from_secs(args.duration_s);
    let bytes = args.bulk_mib << 20;
    let t = Instant::now();
    let downloads: Vec<_> = bulk
        .into_iter()
        .map(|b| {
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < until {
                    match b.download(bytes).await {
                        Ok(k) => n += k,
                        Err(e) => {
                            eprintln!("bulk download failed: {e:#}");
                            break;
                        }
                    }
                }
                (b, n)
            })
        })
        .collect();
    let (typing, lat) = type_until(typing, mean, until).await;
    let mut moved = 0;
    for d in downloads {
        let (b, n) = d.await?;
        moved += n;
        sessions.push(b);
    }
    run.bulk_mib_s = moved as f64 / (1 << 20) as f64 / t.elapsed().as_secs_f64();
    run.bulk_cores = before.cores_until(&stats(gw.as_ref()));
    run.bulk = lat;
    run.peak_rss_kib = peak.stop();
    sessions.extend(typing);

    // 5. Close.
    let closing: Vec<_> = sessions
        .into_iter()
        .map(|s| tokio::spawn(s.close()))
        .collect();
    for c in closing {
        let _ = c.await;
    }
    if let Some(g) = &gw {
        // Until the gateway has let go of every session (descriptors back to the start).
        let deadline = Instant::now() + Duration::from_secs(120);
        while g.stats().fds > run.base.fds + 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Freed memory goes back to the system within a couple of seconds (jemalloc's decay).
    if gw.is_some() {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    run.closed = stats(gw.as_ref());
    // For a look at the gateway after the run (e.g. its /proc/PID/smaps).
    if let Some(s) = std::env::var("LOAD_HOLD_AFTER_CLOSE_S")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        eprintln!(
            "{label}: holding for {s} s (pid {:?})",
            gw.as_ref().map(|g| g.child.id())
        );
        tokio::time::sleep(Duration::from_secs(s)).await;
    }
    if let Some(g) = gw {
        run.trails = Some(crate::trails::check_trails(&g, run.opened).await?);
        g.stop();
    }
    Ok(run)
}

/// Samples the gateway's RSS every 250 ms until stopped; the peak.
pub struct Peak {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

pub fn sample_peak(pid: Option<u32>) -> Peak {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let thread = pid.map(|pid| {
        std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(Stats::of(pid).rss_kib);
                std::thread::sleep(Duration::from_millis(250));
            }
            peak
        })
    });
    Peak { stop, thread }
}

impl Peak {
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or(0)
    }
}
