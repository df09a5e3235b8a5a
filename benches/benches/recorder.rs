//! Recorder throughput and size: `TrailWriter` against raw zstd level 3 on the same payload.
//!
//! `cargo bench -p trailgate-benches --bench recorder`
//!
//! Before the timed benches, each corpus is written once to report the trail size against
//! `zstd -3` of the bare payload, and the CPU time the writer used (all threads).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use time::OffsetDateTime;
use trailgate_benches::{Item, bulk_corpus, interactive_corpus, payload_concat};
use trailgate_recorder::keys::SigningKey;
use trailgate_recorder::{
    Endpoint, Event, Integrity, SessionEnd, SessionMeta, TrailSpec, TrailSummary, TrailWriter,
    WriterConfig,
};

fn writer_config() -> WriterConfig {
    WriterConfig {
        fsync: false,
        ..WriterConfig::default()
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
            for (ch, t, dir, data) in corpus {
                let ev = Event::Data {
                    dir: *dir,
                    data: data.clone(),
                };
                w.record_at(*ch, *t, ev).await.expect("record");
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

fn zstd_stream(payload: &[u8]) -> usize {
    let mut enc =
        zstd::stream::Encoder::new(Vec::with_capacity(payload.len() / 2), 3).expect("zstd encoder");
    enc.write_all(payload).expect("compress");
    enc.finish().expect("finish").len()
}

/// User + system CPU time of this process (all threads), from /proc/self/stat (Linux).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10)) // USER_HZ is 100 on Linux
}

fn mib_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

/// Outside timing: trail size vs `zstd -3` of the payload, and CPU use of the writer.
fn report(name: &str, corpus: &[Item], payload: &[u8]) {
    let mut env = Env::new();
    let (_, s) = env.write_trail(corpus, writer_config());
    let v = trailgate_recorder::verify(&s.path, None).expect("verify");
    assert_eq!(v.integrity, Integrity::Sealed, "bench trail must verify");
    let trail = s.file_bytes as usize;
    let z3 = zstd::bulk::compress(payload, 3).expect("zstd").len();
    println!(
        "size {name}: payload {} bytes, trail {trail} bytes, zstd-3 {z3} bytes, overhead {:+.1}% \
         ({} records, {} frames, ratio {:.2})",
        payload.len(),
        (trail as f64 / z3 as f64 - 1.0) * 100.0,
        s.end.records,
        s.end.frames,
        payload.len() as f64 / trail as f64,
    );
    std::fs::remove_file(&s.path).ok();
    // Several runs so the 10 ms tick granularity of /proc/self/stat averages out.
    let (mut wall, mut cpu) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..3 {
        let c0 = process_cpu();
        let (d, s) = env.write_trail(corpus, writer_config());
        if let (Some(c0), Some(c1)) = (c0, process_cpu()) {
            cpu += c1 - c0;
        }
        wall += d;
        std::fs::remove_file(&s.path).ok();
    }
    let (c0, t0) = (process_cpu(), Instant::now());
    for _ in 0..3 {
        std::hint::black_box(zstd_stream(payload));
    }
    let (zwall, zcpu) = (t0.elapsed(), process_cpu().zip(c0).map(|(a, b)| a - b));
    println!(
        "cpu {name}: writer {:.0} MiB/s wall, {:.2} cpu-s per wall-s; zstd-3 stream {:.0} MiB/s wall, {:.2} cpu-s per wall-s",
        mib_s(payload.len() * 3, wall),
        cpu.as_secs_f64() / wall.as_secs_f64(),
        mib_s(payload.len() * 3, zwall),
        zcpu.unwrap_or_default().as_secs_f64() / zwall.as_secs_f64(),
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

// ---------------------------------------------------------------- SCRATCH (to be removed)
mod explore {
    use super::*;
    use sha2::Digest;
    use trailgate_recorder::Direction;
    use trailgate_recorder::format::encode_record;
    use zstd::zstd_safe::{CCtx, CParameter, InBuffer, OutBuffer, zstd_sys::ZSTD_EndDirective};

    fn best<T>(n: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
        let mut b = Duration::MAX;
        let mut last = None;
        for _ in 0..n {
            let t0 = Instant::now();
            let r = f();
            b = b.min(t0.elapsed());
            last = Some(r);
        }
        (b, last.unwrap())
    }

    /// Compress like the writer's Sink: chunks, optional frame ends, optional sha.
    pub fn cctx(raw: &[u8], level: i32, wlog: u32, frame: usize, chunk: usize, sha: bool) -> usize {
        let mut c = CCtx::create();
        c.set_parameter(CParameter::CompressionLevel(level))
            .unwrap();
        if wlog > 0 {
            c.set_parameter(CParameter::WindowLog(wlog)).unwrap();
        }
        c.set_parameter(CParameter::ChecksumFlag(true)).unwrap();
        let mut total = 0;
        let mut out: Vec<u8> = Vec::with_capacity(4 << 20);
        let mut h = sha2::Sha256::new();
        for fr in raw.chunks(frame) {
            let n = fr.len().div_ceil(chunk);
            for (i, ch) in fr.chunks(chunk).enumerate() {
                let end = i + 1 == n;
                let dir = if end {
                    ZSTD_EndDirective::ZSTD_e_end
                } else {
                    ZSTD_EndDirective::ZSTD_e_continue
                };
                out.clear();
                out.reserve(zstd::zstd_safe::compress_bound(ch.len()) + 1024);
                let mut input = InBuffer::around(ch);
                loop {
                    if out.capacity() - out.len() < 1024 {
                        out.reserve(64 * 1024);
                    }
                    let pos = out.len();
                    let mut ob = OutBuffer::around_pos(&mut out, pos);
                    let rem = c.compress_stream2(&mut ob, &mut input, dir).unwrap();
                    if input.pos() == ch.len() && (!end || rem == 0) {
                        break;
                    }
                }
                if sha {
                    h.update(&out);
                }
                total += out.len();
            }
        }
        std::hint::black_box(h.finalize());
        total
    }

    fn pct(a: usize, b: usize) -> f64 {
        (a as f64 / b as f64 - 1.0) * 100.0
    }

    pub fn run2() {
        let mut env = Env::new();
        let corpus = interactive_corpus();
        let last = corpus.last().unwrap().1;
        let c2s = corpus
            .iter()
            .filter(|i| i.2 == Direction::ClientToServer)
            .count();
        println!(
            "interactive: {} items ({} c2s), duration {:.0} s",
            corpus.len(),
            c2s,
            last as f64 / 1e6
        );
        // spawn_blocking round trip on a current_thread runtime
        let (d, _) = best(3, || {
            env.rt.block_on(async {
                for _ in 0..2000 {
                    tokio::task::spawn_blocking(|| ()).await.unwrap();
                }
            })
        });
        println!(
            "spawn_blocking round trip: {:.1} us",
            d.as_secs_f64() / 2000.0 * 1e6
        );
        // semaphore + unbounded mpsc producer/consumer on one thread, like record_at -> Task
        let (d, _) = best(3, || {
            env.rt.block_on(async {
                let sem = Arc::new(tokio::sync::Semaphore::new(256 << 10));
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let h = tokio::spawn(async move {
                    let mut n = 0usize;
                    while let Some((_p, b)) = rx.recv().await {
                        let b: bytes::Bytes = b;
                        n += b.len();
                    }
                    n
                });
                for (_, _, _, b) in &corpus {
                    let p = sem.clone().acquire_many_owned(65).await.unwrap();
                    tx.send((p, b.clone())).unwrap();
                }
                drop(tx);
                h.await.unwrap()
            })
        });
        println!(
            "semaphore+mpsc for {} items: {:.1} ms ({:.2} us/item)",
            corpus.len(),
            d.as_secs_f64() * 1e3,
            d.as_secs_f64() * 1e6 / corpus.len() as f64
        );
        // Realistic timing: replay at 100x speed with the writer's timers scaled by 1/100.
        let k = 100u32;
        let cfg = WriterConfig {
            flush_interval: Duration::from_secs(1) / k,
            frame_max_age: Duration::from_secs(60) / k,
            frame_idle_close: Duration::from_secs(30) / k,
            ..writer_config()
        };
        let z3 = zstd::bulk::compress(&payload_concat(&corpus), 3)
            .unwrap()
            .len();
        for (label, cfg) in [
            ("default timers", cfg.clone()),
            (
                "max_age 10 min, idle 5 min",
                WriterConfig {
                    frame_max_age: Duration::from_secs(600) / k,
                    frame_idle_close: Duration::from_secs(300) / k,
                    ..cfg.clone()
                },
            ),
            (
                "+ flush 5 s",
                WriterConfig {
                    frame_max_age: Duration::from_secs(600) / k,
                    frame_idle_close: Duration::from_secs(300) / k,
                    flush_interval: Duration::from_secs(5) / k,
                    ..cfg.clone()
                },
            ),
        ] {
            let scaled: Vec<Item> = corpus.clone();
            let t0 = Instant::now();
            let s = env.rt.block_on(async {
                let dir = env.dir.path().join(format!("scaled-{}.trail", label.len()));
                let spec = TrailSpec {
                    session_id: "scaled".into(),
                    protocol: "ssh".into(),
                    meta: SessionMeta::default(),
                    start: OffsetDateTime::from_unix_timestamp(1_715_680_000).unwrap(),
                };
                let w = TrailWriter::create_at(dir, spec, env.key.clone(), cfg)
                    .await
                    .unwrap();
                let start = tokio::time::Instant::now();
                for (ch, t, dir, data) in &scaled {
                    tokio::time::sleep_until(start + Duration::from_micros(*t / k as u64)).await;
                    w.record_at(
                        *ch,
                        *t,
                        Event::Data {
                            dir: *dir,
                            data: data.clone(),
                        },
                    )
                    .await
                    .unwrap();
                }
                w.finish(SessionEnd {
                    reason: "x".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
            });
            println!(
                "scaled x{k} [{label}]: {:.1} s real, trail {} ({:+.1}%), {} frames",
                t0.elapsed().as_secs_f64(),
                s.file_bytes,
                pct(s.file_bytes as usize, z3),
                s.end.frames
            );
        }
    }

    pub fn run3(which: &str) {
        let mut env = Env::new();
        let corpus = if which == "bulk" {
            bulk_corpus()
        } else {
            interactive_corpus()
        };
        let n = if which == "bulk" { 8 } else { 60 };
        let t0 = Instant::now();
        for _ in 0..n {
            let (_, s) = env.write_trail(&corpus, writer_config());
            std::fs::remove_file(&s.path).ok();
        }
        println!(
            "{which}: {:.1} MiB/s",
            mib_s(payload_concat(&corpus).len() * n, t0.elapsed())
        );
    }

    pub fn run4() {
        let mut env = Env::new();
        let corpus = interactive_corpus();
        let payload = payload_concat(&corpus);
        let z3 = zstd::bulk::compress(&payload, 3).unwrap().len();
        let (_, s) = env.write_trail(&corpus, writer_config());
        let file = std::fs::read(&s.path).unwrap();
        let records = zstd::stream::decode_all(&file[..]).unwrap();
        let (recs, _) =
            trailgate_recorder::reader::parse_records(bytes::Bytes::from(records)).unwrap();
        for q in [1u64, 100, 1000] {
            let (mut heads, mut bodies) = (Vec::new(), Vec::new());
            let mut last = 0;
            for r in &recs {
                let t = r.time_us / q;
                let mut one = Vec::new();
                encode_record(&mut one, r.channel, t - last, &r.event).unwrap();
                last = t;
                let plen = trailgate_recorder::format::data_len(&r.event).map_or(0, |x| x.1);
                heads.extend_from_slice(&one[..one.len() - plen]);
                bodies.extend_from_slice(&one[one.len() - plen..]);
            }
            let (ch, cb) = (
                zstd::bulk::compress(&heads, 3).unwrap().len(),
                zstd::bulk::compress(&bodies, 3).unwrap().len(),
            );
            // per-256K-frame columns with wlog 17 like the writer
            let mut fr = 0;
            let mut i = 0;
            let mut raw_in_frame = 0;
            let (mut fh, mut fb) = (Vec::new(), Vec::new());
            let mut last = 0;
            let mut first = true;
            while i < recs.len() {
                let r = &recs[i];
                let t = r.time_us / q;
                let mut one = Vec::new();
                encode_record(
                    &mut one,
                    r.channel,
                    if first { t } else { t - last },
                    &r.event,
                )
                .unwrap();
                first = false;
                last = t;
                let plen = trailgate_recorder::format::data_len(&r.event).map_or(0, |x| x.1);
                fh.extend_from_slice(&one[..one.len() - plen]);
                fb.extend_from_slice(&one[one.len() - plen..]);
                raw_in_frame += one.len();
                i += 1;
                if raw_in_frame >= 256 << 10 || i == recs.len() {
                    fr += cctx(&fh, 3, 17, usize::MAX, 64 << 10, false)
                        + cctx(&fb, 3, 17, usize::MAX, 64 << 10, false);
                    fh.clear();
                    fb.clear();
                    raw_in_frame = 0;
                    first = true;
                }
            }
            println!(
                "dt unit {q} us: columns heads {ch} + bodies {cb} = {} ({:+.1}%); as 256K frames wlog17: {fr} ({:+.1}%)",
                ch + cb,
                pct(ch + cb, z3),
                pct(fr, z3)
            );
        }
    }

    pub fn run() {
        let mut env = Env::new();
        for (name, corpus) in [
            ("bulk", bulk_corpus()),
            ("interactive", interactive_corpus()),
        ] {
            let payload = payload_concat(&corpus);
            let n = if name == "bulk" { 3 } else { 5 };
            let mb = |d: Duration| mib_s(payload.len(), d);
            let z3 = zstd::bulk::compress(&payload, 3).unwrap().len();
            println!("== {name}: payload {} zstd-3 bulk {z3}", payload.len());
            let (d, sz) = best(n, || zstd_stream(&payload));
            println!(
                "zstd::stream L3 default         {:7.1} MiB/s size {sz} ({:+.1}%)",
                mb(d),
                pct(sz, z3)
            );
            for (wlog, frame, chunk, sha, label) in [
                (
                    0,
                    usize::MAX,
                    64 << 10,
                    false,
                    "cctx L3 wlog=def 1 frame 64K chunks",
                ),
                (
                    17,
                    usize::MAX,
                    64 << 10,
                    false,
                    "cctx L3 wlog17 1 frame 64K chunks",
                ),
                (17, 256 << 10, 64 << 10, false, "cctx L3 wlog17 256K frames"),
                (
                    17,
                    256 << 10,
                    64 << 10,
                    true,
                    "cctx L3 wlog17 256K frames +sha",
                ),
                (
                    17,
                    4 << 20,
                    256 << 10,
                    true,
                    "cctx L3 wlog17 4M frames 256K chunks +sha",
                ),
                (
                    20,
                    4 << 20,
                    256 << 10,
                    true,
                    "cctx L3 wlog20 4M frames 256K chunks +sha",
                ),
            ] {
                let (d, sz) = best(n, || cctx(&payload, 3, wlog, frame, chunk, sha));
                println!(
                    "{label:<42} {:7.1} MiB/s size {sz} ({:+.1}%)",
                    mb(d),
                    pct(sz, z3)
                );
            }
            // sign cost
            let msg = [1u8; 56];
            let (d, _) = best(3, || {
                for _ in 0..100 {
                    std::hint::black_box(ed25519_dalek::Signer::sign(&*env.key, &msg));
                }
            });
            println!("ed25519 sign: {:.1} us", d.as_secs_f64() * 1e4);

            // The writer's record stream (zstdcat of the trail) compressed as one stream.
            let (d, s) = env.write_trail(&corpus, writer_config());
            let file = std::fs::read(&s.path).unwrap();
            let records = zstd::stream::decode_all(&file[..]).unwrap();
            let r3 = zstd::bulk::compress(&records, 3).unwrap().len();
            println!(
                "writer default: {:.1} MiB/s trail {} ({:+.1}%), {} records; raw record stream {} (+{} header bytes), zstd-3 of it {} ({:+.1}%)",
                mb(d),
                s.file_bytes,
                pct(s.file_bytes as usize, z3),
                s.end.records,
                records.len(),
                records.len() - payload.len(),
                r3,
                pct(r3, z3)
            );
            std::fs::remove_file(&s.path).ok();
            if name == "interactive" {
                // Re-encode the records: dt in ms, dt zero, and column split (headers | payloads).
                let (recs, _) =
                    trailgate_recorder::reader::parse_records(bytes::Bytes::from(records.clone()))
                        .unwrap();
                for (label, q) in [("dt=0", 0u64), ("dt in ms", 1000), ("dt in 10ms", 10_000)] {
                    let mut raw = Vec::new();
                    let mut last = 0;
                    for r in &recs {
                        let t = if q == 0 { 0 } else { r.time_us / q };
                        encode_record(&mut raw, r.channel, t - last, &r.event).unwrap();
                        last = t;
                    }
                    let c = zstd::bulk::compress(&raw, 3).unwrap().len();
                    println!(
                        "  records with {label:<10}: raw {} zstd-3 {c} ({:+.1}%)",
                        raw.len(),
                        pct(c, z3)
                    );
                }
                let (mut heads, mut bodies) = (Vec::new(), Vec::new());
                let mut last = 0;
                for r in &recs {
                    let mut one = Vec::new();
                    encode_record(&mut one, r.channel, r.time_us - last, &r.event).unwrap();
                    last = r.time_us;
                    let plen = trailgate_recorder::format::data_len(&r.event).map_or(0, |x| x.1);
                    heads.extend_from_slice(&one[..one.len() - plen]);
                    bodies.extend_from_slice(&one[one.len() - plen..]);
                }
                let (ch, cb) = (
                    zstd::bulk::compress(&heads, 3).unwrap().len(),
                    zstd::bulk::compress(&bodies, 3).unwrap().len(),
                );
                println!(
                    "  columns: heads raw {} z {ch}, bodies raw {} z {cb}, sum {} ({:+.1}%)",
                    heads.len(),
                    bodies.len(),
                    ch + cb,
                    pct(ch + cb, z3)
                );
                let c19 = zstd::bulk::compress(&heads, 19).unwrap().len();
                println!("  heads at level 19: {c19}");
                // Direction split of payloads
                let (mut c2s, mut s2c) = (Vec::new(), Vec::new());
                for (_, _, d, b) in &corpus {
                    if *d == Direction::ClientToServer {
                        c2s.extend_from_slice(b)
                    } else {
                        s2c.extend_from_slice(b)
                    }
                }
                println!(
                    "  payload c2s {} s2c {}; zstd-3 s2c only {}",
                    c2s.len(),
                    s2c.len(),
                    zstd::bulk::compress(&s2c, 3).unwrap().len()
                );
                // Time: encode + compress directly (no async machinery).
                let (d, sz) = best(5, || {
                    let mut raw = Vec::with_capacity(payload.len() + recs.len() * 8);
                    let mut last = 0;
                    for (ch, t, dir, data) in &corpus {
                        encode_record(
                            &mut raw,
                            *ch,
                            t - last,
                            &Event::Data {
                                dir: *dir,
                                data: data.clone(),
                            },
                        )
                        .unwrap();
                        last = *t;
                    }
                    cctx(&raw, 3, 17, 256 << 10, 64 << 10, true)
                });
                println!(
                    "  sync encode(all {} items)+compress: {:.1} MiB/s size {sz}",
                    corpus.len(),
                    mb(d)
                );
            }
            for (label, cfg) in [
                (
                    "frame_max_raw 1M chunk 256K",
                    WriterConfig {
                        frame_max_raw: 1 << 20,
                        chunk_bytes: 256 << 10,
                        ..writer_config()
                    },
                ),
                (
                    "frame_max_raw 4M chunk 256K",
                    WriterConfig {
                        frame_max_raw: 4 << 20,
                        chunk_bytes: 256 << 10,
                        ..writer_config()
                    },
                ),
                (
                    "frame 4M chunk 1M queue 2M",
                    WriterConfig {
                        frame_max_raw: 4 << 20,
                        chunk_bytes: 1 << 20,
                        queue_bytes: 2 << 20,
                        ..writer_config()
                    },
                ),
                (
                    "frame 4M chunk 256K wlog 20",
                    WriterConfig {
                        frame_max_raw: 4 << 20,
                        chunk_bytes: 256 << 10,
                        window_log: 20,
                        ..writer_config()
                    },
                ),
                (
                    "coalesce 50ms",
                    WriterConfig {
                        coalesce_us: 50_000,
                        ..writer_config()
                    },
                ),
                (
                    "level 1",
                    WriterConfig {
                        zstd_level: 1,
                        ..writer_config()
                    },
                ),
            ] {
                let (d, s) = best(n, || {
                    let (d, s) = env.write_trail(&corpus, cfg.clone());
                    std::fs::remove_file(&s.path).ok();
                    (d, s)
                });
                let d = d.min(s.0);
                let s = s.1;
                println!(
                    "writer {label:<30} {:7.1} MiB/s trail {} ({:+.1}%) frames {}",
                    mb(d),
                    s.file_bytes,
                    pct(s.file_bytes as usize, z3),
                    s.end.frames
                );
            }
        }
    }
}

fn recorder(c: &mut Criterion) {
    if std::env::var_os("TG_EXPLORE").is_some() {
        if std::env::var("TG_EXPLORE").as_deref() == Ok("2") {
            explore::run2();
        } else if std::env::var("TG_EXPLORE").as_deref() == Ok("4") {
            explore::run4();
        } else if let Ok(w) = std::env::var("TG_PROFILE") {
            explore::run3(&w);
        } else {
            explore::run();
        }
        std::process::exit(0);
    }
    bench_corpus(c, "bulk", &bulk_corpus());
    bench_corpus(c, "interactive", &interactive_corpus());
}

criterion_group!(benches, recorder);
criterion_main!(benches);
