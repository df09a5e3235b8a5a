//! Recorder throughput and size: `TrailWriter` against raw zstd level 3 on the same payload.
//!
//! `cargo bench -p trailgate-benches --bench recorder`; on one core:
//! `taskset -c 1 target/release/deps/recorder-<hash> --bench` after a `--no-run` build.
//!
//! Before the timed benches, each corpus is written once to report the trail size against
//! `zstd -3` of the bare payload (the trail is verified as sealed), then writer and zstd runs are
//! interleaved to report their wall and CPU (all threads) throughput and ratio.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use time::OffsetDateTime;
use trailgate_benches::{Item, bulk_corpus, interactive_corpus, payload_concat, payload_len};
use trailgate_recorder::keys::SigningKey;
use trailgate_recorder::{
    Endpoint, Integrity, SessionEnd, SessionMeta, TrailSpec, TrailSummary, TrailWriter,
    WriterConfig,
};

/// Default writer settings without fsync; `TG_FLUSH_MS`, `TG_FRAME_AGE_S` and `TG_IDLE_CLOSE_S`
/// override the timers, `TG_WINDOW_LOG`, `TG_HASH_LOG` and `TG_CHAIN_LOG` the zstd tables, for
/// experiments.
fn writer_config() -> WriterConfig {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let d = WriterConfig::default();
    WriterConfig {
        fsync: false,
        // The writer at the level it is compared at: never stepping down when it falls behind
        // (which it always is here, fed as fast as it takes records).
        zstd_fast_level: d.zstd_level,
        flush_interval: env("TG_FLUSH_MS").map_or(d.flush_interval, Duration::from_millis),
        frame_max_age: env("TG_FRAME_AGE_S").map_or(d.frame_max_age, Duration::from_secs),
        frame_idle_close: env("TG_IDLE_CLOSE_S").map_or(d.frame_idle_close, Duration::from_secs),
        window_log: env("TG_WINDOW_LOG").map_or(d.window_log, |v| v as u32),
        hash_log: env("TG_HASH_LOG").map_or(d.hash_log, |v| v as u32),
        chain_log: env("TG_CHAIN_LOG").map_or(d.chain_log, |v| v as u32),
        ..d
    }
}

struct Env {
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    key: Arc<SigningKey>,
    n: u64,
}

impl Env {
    fn new() -> Self {
        Env {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            dir: tempfile::tempdir().expect("temp dir"),
            key: Arc::new(SigningKey::from_bytes(&[7u8; 32])),
            n: 0,
        }
    }

    /// Writes `corpus` into a fresh trail; returns the time from create to sealed, and the summary.
    fn write_trail(&mut self, corpus: &[Item], cfg: WriterConfig) -> (Duration, TrailSummary) {
        self.write_trail_paced(corpus, cfg, false)
    }

    /// As `write_trail`; `live` paces the replay as a live session runs: wherever the flush
    /// interval has passed on the records' clock, the writer flushes and the replay waits until
    /// that is in the file, so the compressor is never behind and every flush is its own (a
    /// replay at full speed is always behind: its flushes are grouped, as a gateway short of CPU
    /// would group them). The trail is then the one a live session leaves.
    fn write_trail_paced(
        &mut self,
        corpus: &[Item],
        cfg: WriterConfig,
        live: bool,
    ) -> (Duration, TrailSummary) {
        let flush_us = cfg.flush_interval.as_micros() as u64;
        self.n += 1;
        let id = format!("bench-{:06}", self.n);
        let path: PathBuf = self.dir.path().join(format!("{id}.trail"));
        let spec = TrailSpec {
            session_id: id,
            protocol: "ssh".into(),
            meta: SessionMeta {
                client: Some(Endpoint {
                    host: "10.0.3.17".into(),
                    port: 53422,
                }),
                target_name: Some("web-03".into()),
                target_address: Some(Endpoint {
                    host: "10.1.0.3".into(),
                    port: 22,
                }),
                gateway_user: Some("alice".into()),
                target_user: Some("alice".into()),
                auth_method: Some("publickey".into()),
                policies: vec!["default".into()],
                node_id: Some("gw-1".into()),
            },
            start: OffsetDateTime::from_unix_timestamp(1_715_680_000).expect("time"),
        };
        let key = self.key.clone();
        let t0 = Instant::now();
        let summary = self.rt.block_on(async move {
            let w = TrailWriter::create_at(path, spec, key, cfg)
                .await
                .expect("create trail");
            let mut points = FlushPoints::new(flush_us);
            for (ch, t, dir, data) in corpus {
                if points.due(*t) && live {
                    w.flush().await.expect("flush");
                }
                // As the relay does: the data is passed on after it is recorded.
                w.record_data_at(*ch, *t, *dir, data).await.expect("record");
            }
            w.finish(SessionEnd {
                reason: "client disconnected".into(),
                ..Default::default()
            })
            .await
            .expect("finish")
        });
        (t0.elapsed(), summary)
    }
}

/// The writer's flush rule on the items' own clock: a flush falls due before the first item a
/// flush interval or more after the first item not yet flushed.
struct FlushPoints {
    every_us: u64,
    first: Option<u64>,
}

impl FlushPoints {
    fn new(every_us: u64) -> Self {
        FlushPoints {
            every_us,
            first: None,
        }
    }

    /// Whether a flush falls due before the item at `t` (which is then the first unflushed).
    fn due(&mut self, t: u64) -> bool {
        let due = self
            .first
            .is_some_and(|f| t.saturating_sub(f) >= self.every_us);
        if due {
            self.first = None;
        }
        self.first.get_or_insert(t);
        due
    }
}

fn zstd_stream(payload: &[u8]) -> usize {
    let mut enc =
        zstd::stream::Encoder::new(Vec::with_capacity(payload.len() / 2), 3).expect("zstd encoder");
    enc.write_all(payload).expect("compress");
    enc.finish().expect("finish").len()
}

/// Raw streaming zstd -3 of the payload, flushed (`ZSTD_e_flush`) wherever the writer's flush
/// rule would flush: once a second's worth of data is pending (the flush interval counted from
/// the first unflushed byte, on the items' own clock). What any recorder that keeps the
/// flush-interval promise pays inside zstd, whatever its own format. Returns (size, flushes).
fn zstd_flushed(corpus: &[Item], flush_us: u64) -> (usize, usize) {
    let (out, flushes) = zstd_flushed_bytes(corpus, flush_us);
    (out.len(), flushes)
}

fn zstd_flushed_bytes(corpus: &[Item], flush_us: u64) -> (Vec<u8>, usize) {
    let mut enc = zstd::stream::Encoder::new(Vec::with_capacity(1 << 20), 3).expect("zstd encoder");
    let (mut points, mut flushes) = (FlushPoints::new(flush_us), 0);
    for (_, t, _, data) in corpus {
        if points.due(*t) {
            enc.flush().expect("flush");
            flushes += 1;
        }
        enc.write_all(data).expect("compress");
    }
    (enc.finish().expect("finish"), flushes)
}

/// CPU time of this process, all threads (user + system).
fn process_cpu() -> Option<Duration> {
    // getrusage counts every thread the process ever ran, including blocking-pool threads that
    // have already exited (a per-thread sum over /proc/self/task would miss them).
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let ru = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) != 0 {
            return None;
        }
        ru.assume_init()
    };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Some(Duration::from_micros(us(ru.ru_utime) + us(ru.ru_stime)))
}

/// Wall and CPU time of one run of `f`.
fn timed(f: impl FnOnce()) -> (Duration, Duration) {
    let (c0, t0) = (process_cpu(), Instant::now());
    f();
    let wall = t0.elapsed();
    let cpu = process_cpu().zip(c0).map_or(wall, |(c1, c0)| c1 - c0);
    (wall, cpu)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn mib_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

/// Outside the criterion benches: trail size against `zstd -3` of the payload, throughput
/// against raw zstd, and (for a corpus with pauses) the CPU a live session's recording costs.
///
/// The writer applies its flush and frame timers to the records' own timestamps as well as to
/// the clock, so writing a 3-hour corpus in milliseconds cuts frames where the live session
/// would have. Its flushes are another matter: a replay at full speed keeps the compressor
/// behind, so they are grouped (one per write, as on a gateway short of CPU), while a live
/// session flushes once a second on its own. Size and live cost therefore come from a replay
/// paced as a live session (`write_trail_paced`), throughput from one at full speed.
fn report(name: &str, corpus: &[Item], payload: &[u8]) {
    let mut env = Env::new();
    let flush_us = writer_config().flush_interval.as_micros() as u64;
    let (_, s) = env.write_trail_paced(corpus, writer_config(), true);
    let v = trailgate_recorder::verify(&s.path, None).expect("verify");
    assert_eq!(v.integrity, Integrity::Sealed, "bench trail must verify");
    let trail = s.file_bytes as usize;
    std::fs::remove_file(&s.path).ok();
    let (_, fast) = env.write_trail(corpus, writer_config());
    std::fs::remove_file(&fast.path).ok();
    let z3 = zstd::bulk::compress(payload, 3).expect("zstd").len();
    let pct = |a: usize| (a as f64 / z3 as f64 - 1.0) * 100.0;
    println!(
        "size {name}: payload {} bytes, trail {trail} bytes, zstd-3 {z3} bytes, overhead {:+.1}% \
         ({} records, {} frames, ratio {:.2}; paced as a live session; at full speed, flushes \
         grouped: {} bytes, {:+.1}%)",
        payload.len(),
        pct(trail),
        s.end.records,
        s.end.frames,
        payload.len() as f64 / trail as f64,
        fast.file_bytes,
        pct(fast.file_bytes as usize),
    );
    // Throughput: the writer fed as fast as it takes records, interleaved with raw zstd of the
    // same payload (so drifts in machine speed hit both alike; ratios are medians of the runs'
    // ratios), in one call and fed record by record as a recorder receives them. CPU time (all
    // threads) is what "on one core" means; wall time shows what a second core adds.
    let mut runs = Vec::new();
    for _ in 0..7 {
        let w = timed(|| {
            let (_, s) = env.write_trail(corpus, writer_config());
            std::fs::remove_file(&s.path).ok();
        });
        let z = timed(|| {
            std::hint::black_box(zstd_stream(payload));
        });
        let zr = timed(|| {
            std::hint::black_box(zstd_flushed(corpus, u64::MAX));
        });
        runs.push([w, z, zr]);
    }
    let n = payload.len();
    // (wall, cpu) of the writer, zstd in one call, zstd record by record.
    type Run = [(Duration, Duration); 3];
    let med = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let pct = |i: usize, cpu: bool| {
        med(&|r| {
            let d = |x: (Duration, Duration)| if cpu { x.1 } else { x.0 }.as_secs_f64();
            d(r[i]) / d(r[0]) * 100.0
        })
    };
    println!(
        "cpu {name}: writer {:.0} MiB/s wall, {:.0} MiB per cpu-s; zstd-3 in one call {:.0} MiB/s \
         wall; zstd-3 fed record by record {:.0} MiB/s wall; writer/zstd one call {:.0}% wall, \
         {:.0}% cpu; writer/zstd record by record {:.0}% wall, {:.0}% cpu (medians of 7 \
         interleaved runs)",
        med(&|r| mib_s(n, r[0].0)),
        med(&|r| mib_s(n, r[0].1)),
        med(&|r| mib_s(n, r[1].0)),
        med(&|r| mib_s(n, r[2].0)),
        pct(1, false),
        pct(1, true),
        pct(2, false),
        pct(2, true),
    );
    let (_, flushes) = zstd_flushed(corpus, flush_us);
    if flushes < 100 {
        return;
    }
    // A live session's cost: the paced replay's CPU against raw zstd flushed at the same points
    // (what any recorder keeping the one-second promise pays inside zstd, whatever its format).
    let mut live = Vec::new();
    for _ in 0..3 {
        let w = timed(|| {
            let (_, s) = env.write_trail_paced(corpus, writer_config(), true);
            std::fs::remove_file(&s.path).ok();
        });
        let zf = timed(|| {
            std::hint::black_box(zstd_flushed(corpus, flush_us));
        });
        live.push((w.1, zf.1));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "live {name}: {flushes} flushes; writer paced as a live session {:.0} ms cpu, zstd-3 fed \
         record by record and flushed at the same points {:.0} ms cpu, writer/that {:.0}% \
         (medians of 3)",
        median(live.iter().map(|l| ms(l.0)).collect()),
        median(live.iter().map(|l| ms(l.1)).collect()),
        median(
            live.iter()
                .map(|l| l.1.as_secs_f64() / l.0.as_secs_f64() * 100.0)
                .collect()
        ),
    );
}

fn bench_corpus(c: &mut Criterion, name: &str, corpus: &[Item]) {
    let payload = payload_concat(corpus);
    report(name, corpus, &payload);
    let mut env = Env::new();
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Bytes(payload.len() as u64));
    g.bench_function("trail_writer", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (d, s) = env.write_trail(corpus, writer_config());
                total += d;
                // Outside the measured span: keep the temp dir from filling up.
                std::fs::remove_file(&s.path).ok();
            }
            total
        })
    });
    g.bench_function("zstd3_stream", |b| b.iter(|| zstd_stream(&payload)));
    g.finish();
}

/// `RECORDER_BENCH_PROFILE=N` writes the chosen corpus N times with the default writer and
/// nothing else, so a profiler sees the writer alone (with `RECORDER_BENCH_PROFILE_ZSTD` set:
/// raw zstd flushed at the writer's flush rule instead; with `RECORDER_BENCH_PROFILE_LIVE`: the
/// replay paced as a live session; with `RECORDER_BENCH_KEEP=FILE` the last trail is kept
/// there).
fn profile_only(corpus: &[Item], runs: u32) {
    let mut env = Env::new();
    let flushed = std::env::var("RECORDER_BENCH_PROFILE_ZSTD").is_ok();
    let live = std::env::var("RECORDER_BENCH_PROFILE_LIVE").is_ok();
    let keep = std::env::var_os("RECORDER_BENCH_KEEP").map(PathBuf::from);
    let flush_us = writer_config().flush_interval.as_micros() as u64;
    let t0 = Instant::now();
    for _ in 0..runs {
        if flushed {
            let (out, _) = std::hint::black_box(zstd_flushed_bytes(corpus, flush_us));
            if let Some(to) = &keep {
                std::fs::write(to, out).expect("keep zstd output");
            }
            continue;
        }
        let (_, s) = env.write_trail_paced(corpus, writer_config(), live);
        match &keep {
            // Kept for profiling the readers (`trailgate trail info|verify|cat`).
            Some(to) => std::fs::rename(&s.path, to).expect("keep trail"),
            None => std::fs::remove_file(&s.path).expect("remove trail"),
        }
    }
    let n = payload_len(corpus) * runs as usize;
    println!(
        "profile: {runs} runs, {:.0} MiB/s wall",
        mib_s(n, t0.elapsed())
    );
}

/// `RECORDER_BENCH_CORPUS=bulk|interactive` runs one corpus only (profiling).
fn recorder(c: &mut Criterion) {
    let only = std::env::var("RECORDER_BENCH_CORPUS").ok();
    if let Some(runs) = std::env::var("RECORDER_BENCH_PROFILE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        let bulk = only.as_deref() == Some("bulk");
        let corpus = if bulk {
            bulk_corpus()
        } else {
            interactive_corpus()
        };
        return profile_only(&corpus, runs);
    }
    let want = |n: &str| only.as_deref().is_none_or(|o| o == n);
    if want("bulk") {
        bench_corpus(c, "bulk", &bulk_corpus());
    }
    if want("interactive") {
        bench_corpus(c, "interactive", &interactive_corpus());
    }
}

criterion_group!(benches, recorder);
criterion_main!(benches);
