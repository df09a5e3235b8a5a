//! Round-trip, truncation, tamper and live-read tests of the trail format through the real writer.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use trailgate_recorder::export;
use trailgate_recorder::format::*;
use trailgate_recorder::keys::SigningKey;
use trailgate_recorder::reader::{Integrity, Item, TrailReader, verify};
use trailgate_recorder::writer::{TrailSpec, TrailWriter, WriterConfig};

fn key() -> Arc<SigningKey> {
    Arc::new(SigningKey::from_bytes(&[7u8; 32]))
}

fn cfg() -> WriterConfig {
    WriterConfig {
        flush_interval: Duration::from_millis(20),
        frame_max_raw: 8 * 1024,
        chunk_bytes: 2 * 1024,
        queue_bytes: 16 * 1024,
        fsync: false,
        ..WriterConfig::default()
    }
}

fn spec(id: &str) -> TrailSpec {
    TrailSpec {
        session_id: id.into(),
        protocol: "ssh".into(),
        meta: SessionMeta {
            client: Some(Endpoint {
                host: "127.0.0.1".into(),
                port: 40000,
            }),
            target_name: Some("db1".into()),
            gateway_user: Some("alice".into()),
            target_user: Some("root".into()),
            policies: vec!["default".into()],
            ..Default::default()
        },
        start: time::OffsetDateTime::now_utc(),
    }
}

/// A generated session: several channels, interleaved, binary payloads from 0 bytes to 200 KiB.
fn generate(seed: u64, n: usize, max_len: usize) -> Vec<(u32, Event)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ev = Vec::new();
    for ch in 1..=6u32 {
        ev.push((
            ch,
            Event::Open(ChannelOpen {
                kind: "session".into(),
                originator: None,
                connected: None,
                reason: None,
            }),
        ));
    }
    ev.push((
        3,
        Event::Request {
            dir: Direction::ClientToServer,
            request: Request::Exec {
                command: "tar c /etc".into(),
            },
        },
    ));
    ev.push((
        1,
        Event::Request {
            dir: Direction::ClientToServer,
            request: Request::Pty {
                term: "xterm".into(),
                cols: 120,
                rows: 40,
                width_px: 0,
                height_px: 0,
                modes: vec![(53, 1)],
            },
        },
    ));
    for _ in 0..n {
        let ch = rng.gen_range(1..=6u32);
        let len = match rng.gen_range(0..10) {
            0 => 0,
            1..=5 => rng.gen_range(1..16),
            6..=8 => rng.gen_range(16..2048.min(max_len)),
            _ => rng.gen_range(2048.min(max_len - 1)..=max_len),
        };
        let mut data = vec![0u8; len];
        if rng.gen_bool(0.5) {
            rng.fill(&mut data[..]);
        } else {
            for (i, b) in data.iter_mut().enumerate() {
                *b = b"ls -la /var/log\r\n"[i % 17];
            }
        }
        let dir = if rng.gen_bool(0.5) {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        let e = match rng.gen_range(0..20) {
            0 => Event::ExtendedData {
                dir: Direction::ServerToClient,
                code: 1,
                data: Bytes::from(data),
            },
            1 => Event::Request {
                dir: Direction::ClientToServer,
                request: Request::WindowChange {
                    cols: 100,
                    rows: 30,
                    width_px: 0,
                    height_px: 0,
                },
            },
            _ => Event::Data {
                dir,
                data: Bytes::from(data),
            },
        };
        ev.push((ch, e));
    }
    ev.push((
        3,
        Event::Request {
            dir: Direction::ServerToClient,
            request: Request::ExitStatus { status: 2 },
        },
    ));
    for ch in 1..=6u32 {
        ev.push((
            ch,
            Event::Eof {
                dir: Direction::ServerToClient,
            },
        ));
        ev.push((ch, Event::Close));
    }
    ev
}

async fn write_trail(dir: &Path, id: &str, events: &[(u32, Event)], cfg: WriterConfig) -> PathBuf {
    let w = TrailWriter::create(dir, spec(id), key(), cfg)
        .await
        .unwrap();
    for (i, (ch, e)) in events.iter().enumerate() {
        // Spread timestamps so coalescing and delta times are exercised both ways.
        w.record_at(*ch, i as u64 * 997, e.clone()).await.unwrap();
    }
    let s = w
        .finish(SessionEnd {
            reason: "client disconnected".into(),
            verdict: Some("accept".into()),
            terminated_by: None,
            ..Default::default()
        })
        .await
        .unwrap();
    s.path
}

fn stream_of(events: &[(u32, Event)], ch: u32, dir: Option<Direction>) -> Vec<u8> {
    let mut v = Vec::new();
    for (c, e) in events {
        if *c != ch {
            continue;
        }
        match e {
            Event::Data { dir: d, data } if dir.is_none_or(|x| x == *d) => {
                v.extend_from_slice(data)
            }
            Event::ExtendedData { data, .. } if dir.is_none() => v.extend_from_slice(data),
            _ => {}
        }
    }
    v
}

fn read_all(path: &Path) -> (Vec<Record>, Integrity) {
    let mut r = TrailReader::open(path).unwrap();
    let mut v = Vec::new();
    let i = r
        .for_each_record(|rec| {
            v.push(rec.clone());
            Ok(())
        })
        .unwrap();
    (v, i)
}

#[tokio::test]
async fn round_trip_is_byte_exact_per_channel_and_direction() {
    let dir = tempfile::tempdir().unwrap();
    let events = generate(1, 3000, 200 * 1024);
    let path = write_trail(dir.path(), "s-roundtrip", &events, cfg()).await;
    assert!(path.starts_with(dir.path().join("trails")));

    let v = verify(&path, Some(&key().verifying_key())).unwrap();
    assert_eq!(v.integrity, Integrity::Sealed);
    assert_eq!(v.key_matches, Some(true));
    assert!(
        v.frames_verified > 10,
        "small frames configured: {}",
        v.frames_verified
    );

    for ch in 1..=6u32 {
        for dir in [
            Some(Direction::ClientToServer),
            Some(Direction::ServerToClient),
            None,
        ] {
            let mut out = Vec::new();
            export::cat(&path, ch, dir, &mut out).unwrap();
            assert_eq!(out, stream_of(&events, ch, dir), "channel {ch} {dir:?}");
        }
    }
    assert!(matches!(
        export::cat(&path, 99, None, &mut Vec::new()),
        Err(trailgate_recorder::RecorderError::NoSuchChannel { channel: 99, ref available })
            if available.contains("1 (session-shell)") || available.starts_with("1 (")
    ));

    let info = export::info(&path).unwrap();
    assert_eq!(info.integrity, "sealed");
    assert_eq!(info.end_reason.as_deref(), Some("client disconnected"));
    assert_eq!(info.channels.len(), 6);
    let c3 = info.channels.iter().find(|c| c.id == 3).unwrap();
    assert_eq!(c3.label, "session-exec");
    assert_eq!(c3.stats.command.as_deref(), Some("tar c /etc"));
    assert_eq!(c3.stats.exit_status, Some(2));
    assert_eq!(
        c3.stats.bytes_client_to_server as usize,
        stream_of(&events, 3, Some(Direction::ClientToServer)).len()
    );

    // The whole file is one zstd stream: skippable frames skipped, records concatenated.
    let decoded = zstd::decode_all(std::fs::File::open(&path).unwrap()).unwrap();
    assert!(!decoded.is_empty());
}

#[tokio::test]
async fn every_truncation_yields_a_valid_prefix_and_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let events = generate(2, 60, 300);
    let small = WriterConfig {
        frame_max_raw: 600,
        chunk_bytes: 200,
        ..cfg()
    };
    let path = write_trail(dir.path(), "s-trunc", &events, small).await;
    let full = std::fs::read(&path).unwrap();
    let (all, integrity) = read_all(&path);
    assert_eq!(integrity, Integrity::Sealed);
    let cut_path = dir.path().join("cut.trail");
    let mut last_len = 0;
    for cut in 0..full.len() {
        std::fs::write(&cut_path, &full[..cut]).unwrap();
        let Ok(mut r) = TrailReader::open(&cut_path) else {
            continue;
        };
        let mut got = Vec::new();
        let integ = r
            .for_each_record(|rec| {
                got.push(rec.clone());
                Ok(())
            })
            .unwrap();
        assert!(
            matches!(integ, Integrity::Incomplete { .. }),
            "cut at {cut}: {integ:?}"
        );
        assert_eq!(&all[..got.len()], &got[..], "cut at {cut} is not a prefix");
        assert!(
            got.len() >= last_len || got.len() + 64 >= last_len,
            "prefix shrank a lot at {cut}"
        );
        assert!(r.records_verified as usize <= got.len());
        last_len = got.len();
        // verify on a cut trail: incomplete, never corrupt.
        let v = verify(&cut_path, None).unwrap();
        assert!(
            matches!(v.integrity, Integrity::Incomplete { .. }),
            "verify at {cut}: {:?}",
            v.integrity
        );
    }
    assert!(
        last_len + 1 >= all.len(),
        "almost-whole file yields almost all records"
    );
}

#[tokio::test]
async fn flipping_any_byte_of_a_sealed_trail_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let events = generate(3, 40, 200);
    let small = WriterConfig {
        frame_max_raw: 800,
        chunk_bytes: 300,
        ..cfg()
    };
    let path = write_trail(dir.path(), "s-tamper", &events, small).await;
    let full = std::fs::read(&path).unwrap();
    assert!(verify(&path, None).unwrap().integrity == Integrity::Sealed);
    let bad = dir.path().join("bad.trail");
    for i in 0..full.len() {
        for mask in [0x01u8, 0x80] {
            let mut b = full.clone();
            b[i] ^= mask;
            std::fs::write(&bad, &b).unwrap();
            match verify(&bad, None) {
                Err(_) => {}
                Ok(v) => assert!(
                    matches!(v.integrity, Integrity::Corrupt { .. }),
                    "flip {mask:#x} at byte {i} of {}: {:?}",
                    full.len(),
                    v.integrity
                ),
            }
        }
    }
    // Appending anything is detected; so is removing the seal (no longer sealed).
    let mut appended = full.clone();
    appended.push(0);
    std::fs::write(&bad, &appended).unwrap();
    assert!(matches!(
        verify(&bad, None).unwrap().integrity,
        Integrity::Corrupt { .. }
    ));
    std::fs::write(&bad, &full[..full.len() - SEAL_FRAME_LEN]).unwrap();
    assert!(matches!(
        verify(&bad, None).unwrap().integrity,
        Integrity::Incomplete { .. }
    ));
    // A different gateway's key does not match.
    let other = SigningKey::from_bytes(&[9u8; 32]).verifying_key();
    assert_eq!(
        verify(&path, Some(&other)).unwrap().key_matches,
        Some(false)
    );
}

#[tokio::test]
async fn reordering_frames_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let events = generate(4, 200, 500);
    let path = write_trail(
        dir.path(),
        "s-reorder",
        &events,
        WriterConfig {
            frame_max_raw: 2000,
            ..cfg()
        },
    )
    .await;
    let full = std::fs::read(&path).unwrap();
    let mut r = TrailReader::open(&path).unwrap();
    let mut spans = Vec::new();
    while let Some(item) = r.next_item().unwrap() {
        if let Item::Frame { entry, .. } = item {
            spans.push((
                entry.data_offset as usize,
                entry.data_len as usize + CHAIN_BODY_LEN + SKIP_PREFIX,
            ));
        }
    }
    assert!(spans.len() >= 3);
    let (a, b) = (spans[0], spans[1]);
    let mut swapped = full[..a.0].to_vec();
    swapped.extend_from_slice(&full[b.0..b.0 + b.1]);
    swapped.extend_from_slice(&full[a.0..a.0 + a.1]);
    swapped.extend_from_slice(&full[b.0 + b.1..]);
    assert_eq!(swapped.len(), full.len());
    let bad = dir.path().join("swapped.trail");
    std::fs::write(&bad, &swapped).unwrap();
    assert!(matches!(
        verify(&bad, None).unwrap().integrity,
        Integrity::Corrupt { .. }
    ));
    // Removing a whole frame (with its chain entry) is detected too.
    let mut removed = full[..a.0].to_vec();
    removed.extend_from_slice(&full[a.0 + a.1..]);
    std::fs::write(&bad, &removed).unwrap();
    assert!(matches!(
        verify(&bad, None).unwrap().integrity,
        Integrity::Corrupt { .. }
    ));
}

#[tokio::test]
async fn a_trail_being_written_is_readable_within_the_flush_interval() {
    let dir = tempfile::tempdir().unwrap();
    let c = WriterConfig {
        flush_interval: Duration::from_millis(50),
        frame_max_raw: 1 << 20,
        ..cfg()
    };
    let w = TrailWriter::create(dir.path(), spec("s-live"), key(), c)
        .await
        .unwrap();
    w.record(
        1,
        Event::Open(ChannelOpen {
            kind: "session".into(),
            originator: None,
            connected: None,
            reason: None,
        }),
    )
    .await
    .unwrap();
    w.record(
        1,
        Event::Data {
            dir: Direction::ServerToClient,
            data: Bytes::from_static(b"hello live reader"),
        },
    )
    .await
    .unwrap();
    let mut r = TrailReader::open(w.path()).unwrap();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.iter().any(|r: &Record| matches!(&r.event, Event::Data { data, .. } if &data[..] == b"hello live reader")) {
        assert!(tokio::time::Instant::now() < deadline, "flushed data never became readable");
        while let Some(item) = r.next_item().unwrap() {
            if let Item::Partial { records, .. } | Item::Frame { records, .. } = item {
                seen.extend(records);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await; // polling a file, not waiting for readiness
    }
    assert!(matches!(r.integrity(), Integrity::Incomplete { .. }));
    // More data later: the same reader continues without repeating records.
    w.record(
        1,
        Event::Data {
            dir: Direction::ServerToClient,
            data: Bytes::from_static(b"second"),
        },
    )
    .await
    .unwrap();
    w.finish(SessionEnd {
        reason: "done".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    while let Some(item) = r.next_item().unwrap() {
        if let Item::Partial { records, .. } | Item::Frame { records, .. } = item {
            seen.extend(records);
        }
    }
    assert_eq!(r.integrity(), Integrity::Sealed);
    let datas: Vec<_> = seen
        .iter()
        .filter_map(|r| {
            if let Event::Data { data, .. } = &r.event {
                Some(data.clone())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        datas,
        vec![
            Bytes::from_static(b"hello live reader"),
            Bytes::from_static(b"second")
        ]
    );
}

/// `flush` puts every record so far in the file before it returns: a live reader sees them
/// at once, whatever the flush interval.
#[tokio::test]
async fn flush_makes_every_record_so_far_readable() {
    let dir = tempfile::tempdir().unwrap();
    let c = WriterConfig {
        flush_interval: Duration::from_secs(3600),
        ..cfg()
    };
    let w = TrailWriter::create(dir.path(), spec("s-flush"), key(), c)
        .await
        .unwrap();
    for (i, data) in [&b"first"[..], &[9u8; 5000][..], b"last words"]
        .iter()
        .enumerate()
    {
        w.record_at(
            1,
            i as u64,
            Event::Data {
                dir: Direction::ServerToClient,
                data: Bytes::copy_from_slice(data),
            },
        )
        .await
        .unwrap();
    }
    w.flush().await.unwrap();
    let mut r = TrailReader::open(w.path()).unwrap();
    let mut datas = Vec::new();
    while let Some(item) = r.next_item().unwrap() {
        if let Item::Partial { records, .. } | Item::Frame { records, .. } = item {
            datas.extend(records.into_iter().filter_map(|r| match r.event {
                Event::Data { data, .. } => Some(data),
                _ => None,
            }));
        }
    }
    assert_eq!(
        datas.concat(),
        [&b"first"[..], &[9u8; 5000], b"last words"].concat()
    );
    // Nothing new: flushing again is immediate and harmless.
    w.flush().await.unwrap();
    let sum = w.finish(SessionEnd::default()).await.unwrap();
    assert_eq!(
        verify(&sum.path, None).unwrap().integrity,
        Integrity::Sealed
    );
    // A finished writer cannot flush.
    assert!(w.flush().await.is_err());
}

/// Keystroke-like records one every 300 ms (a flush every few records) written twice: at full
/// speed, where the writer is behind from the start, and paced as a live session (the replay
/// waits at each flush until it is in the file). Both trails read back byte for byte; the
/// full-speed one groups its flushes (a zstd block and a batch per write, not per second) and
/// is markedly smaller, which is what lets a writer that fell behind catch up.
#[tokio::test(flavor = "current_thread")]
async fn a_writer_behind_groups_its_flushes_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WriterConfig {
        fsync: false,
        ..WriterConfig::default()
    };
    let mut rng = StdRng::seed_from_u64(5);
    let words = [
        "ls -la",
        "cd /var/log",
        "tail -f syslog",
        "git status",
        "vim notes.txt",
    ];
    let mut events = Vec::new();
    for i in 0..3000u64 {
        let dir = if i % 2 == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        let w = words[rng.gen_range(0..words.len())];
        let data = Bytes::from(format!("{w} {}\r\n", rng.gen_range(0..1000)));
        events.push((i * 300_000, dir, data));
    }
    let flush_us = cfg.flush_interval.as_micros() as u64;
    let mut sizes = Vec::new();
    for paced in [false, true] {
        let id = format!("group-{paced}");
        let w = TrailWriter::create(dir.path(), spec(&id), key(), cfg.clone())
            .await
            .unwrap();
        let mut first = None::<u64>;
        for (t, d, data) in &events {
            if paced && first.is_some_and(|f| t - f >= flush_us) {
                w.flush().await.unwrap();
                first = None;
            }
            first.get_or_insert(*t);
            w.record_data_at(1, *t, *d, data).await.unwrap();
        }
        let sum = w.finish(SessionEnd::default()).await.unwrap();
        assert_eq!(
            verify(&sum.path, None).unwrap().integrity,
            Integrity::Sealed
        );
        for d in [Direction::ClientToServer, Direction::ServerToClient] {
            let mut out = Vec::new();
            export::cat(&sum.path, 1, Some(d), &mut out).unwrap();
            let want: Vec<u8> = events
                .iter()
                .filter(|e| e.1 == d)
                .flat_map(|e| e.2.to_vec())
                .collect();
            assert_eq!(out, want, "paced {paced} {d:?}");
        }
        sizes.push(sum.file_bytes);
    }
    let (grouped, live) = (sizes[0], sizes[1]);
    assert!(
        grouped * 10 < live * 9,
        "grouped flushes: {grouped} bytes, one flush a second: {live} bytes"
    );
}

/// Data recorded by reference (the relay's path) reads back exactly, small payloads (copied)
/// and large ones (held by reference until compressed) alike, and the caller's buffers are
/// left as they were.
#[tokio::test]
async fn data_recorded_by_reference_reads_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let w = TrailWriter::create(dir.path(), spec("by-ref"), key(), cfg())
        .await
        .unwrap();
    let mut rng = StdRng::seed_from_u64(9);
    let mut want = Vec::new();
    for i in 0..200usize {
        let n = if i % 10 == 0 { 20_000 + i } else { 1 + i % 300 };
        let data: Bytes = (0..n)
            .map(|_| rng.r#gen::<u8>())
            .collect::<Vec<u8>>()
            .into();
        w.record_data(2, Direction::ServerToClient, &data)
            .await
            .unwrap();
        want.extend_from_slice(&data);
        assert_eq!(data.len(), n);
    }
    let sum = w.finish(SessionEnd::default()).await.unwrap();
    let mut out = Vec::new();
    export::cat(&sum.path, 2, Some(Direction::ServerToClient), &mut out).unwrap();
    assert_eq!(out, want);
}

#[tokio::test]
async fn asciicast_export_has_output_and_resize_events() {
    let dir = tempfile::tempdir().unwrap();
    let w = TrailWriter::create(dir.path(), spec("s-cast"), key(), cfg())
        .await
        .unwrap();
    let open = Event::Open(ChannelOpen {
        kind: "session".into(),
        originator: None,
        connected: None,
        reason: None,
    });
    w.record_at(1, 0, open).await.unwrap();
    w.record_at(
        1,
        10,
        Event::Request {
            dir: Direction::ClientToServer,
            request: Request::Pty {
                term: "xterm-256color".into(),
                cols: 132,
                rows: 43,
                width_px: 0,
                height_px: 0,
                modes: vec![],
            },
        },
    )
    .await
    .unwrap();
    // A multi-byte character split across two records must come out whole.
    let euro = "€".as_bytes();
    w.record_at(
        1,
        500_000,
        Event::Data {
            dir: Direction::ServerToClient,
            data: Bytes::from(vec![b'$', b' ', euro[0]]),
        },
    )
    .await
    .unwrap();
    w.record_at(
        1,
        1_500_000,
        Event::Data {
            dir: Direction::ServerToClient,
            data: Bytes::from(euro[1..].to_vec()),
        },
    )
    .await
    .unwrap();
    w.record_at(
        1,
        2_000_000,
        Event::Data {
            dir: Direction::ClientToServer,
            data: Bytes::from_static(b"x"),
        },
    )
    .await
    .unwrap();
    w.record_at(
        1,
        3_000_000,
        Event::Request {
            dir: Direction::ClientToServer,
            request: Request::WindowChange {
                cols: 100,
                rows: 30,
                width_px: 0,
                height_px: 0,
            },
        },
    )
    .await
    .unwrap();
    w.finish(SessionEnd {
        reason: "done".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let path = dir.path().join("trails");
    let path = walk(&path).into_iter().next().unwrap();
    let mut out = Vec::new();
    export::asciicast(&path, None, true, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["version"], 2);
    assert_eq!(lines[0]["width"], 132);
    assert_eq!(lines[0]["height"], 43);
    assert_eq!(lines[0]["env"]["TERM"], "xterm-256color");
    let events: Vec<(f64, String, String)> = lines[1..]
        .iter()
        .map(|v| {
            (
                v[0].as_f64().unwrap(),
                v[1].as_str().unwrap().into(),
                v[2].as_str().unwrap().into(),
            )
        })
        .collect();
    let outputs: String = events
        .iter()
        .filter(|e| e.1 == "o")
        .map(|e| e.2.clone())
        .collect();
    assert_eq!(outputs, "$ €");
    assert!(
        events
            .iter()
            .any(|e| e.1 == "r" && e.2 == "100x30" && (e.0 - 3.0).abs() < 1e-3)
    );
    assert!(events.iter().any(|e| e.1 == "i" && e.2 == "x"));

    let mut played = Vec::new();
    let mut slept = Vec::new();
    export::play(
        &path,
        None,
        2.0,
        Some(Duration::from_millis(300)),
        &mut played,
        &mut |d| slept.push(d),
    )
    .unwrap();
    assert_eq!(played, "$ €".as_bytes());
    assert_eq!(
        slept,
        vec![Duration::from_millis(150)],
        "1 s gap capped to 300 ms, at 2x speed"
    );
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap().path();
        if e.is_dir() {
            out.extend(walk(&e));
        } else {
            out.push(e);
        }
    }
    out
}

#[tokio::test]
async fn slow_disk_backpressure_keeps_memory_bounded_and_loses_nothing() {
    // Many concurrent producers on one trail: every record arrives, in per-producer order.
    let dir = tempfile::tempdir().unwrap();
    let w = TrailWriter::create(
        dir.path(),
        spec("s-many"),
        key(),
        WriterConfig {
            queue_bytes: 4096,
            ..cfg()
        },
    )
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for ch in 1..=8u32 {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..500u32 {
                let data = Bytes::from(format!("{ch}:{i};").into_bytes());
                w.record(
                    ch,
                    Event::Data {
                        dir: Direction::ServerToClient,
                        data,
                    },
                )
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = w
        .finish(SessionEnd {
            reason: "done".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    for ch in 1..=8u32 {
        let mut out = Vec::new();
        export::cat(&s.path, ch, None, &mut out).unwrap();
        let expect: String = (0..500).map(|i| format!("{ch}:{i};")).collect();
        assert_eq!(String::from_utf8(out).unwrap(), expect);
    }
    assert!(
        w.record(1, Event::Close).await.is_err(),
        "records after finish are refused"
    );
}

#[tokio::test]
async fn write_failure_is_reported_to_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    // /dev/full accepts the open but fails every write: the header write fails at create.
    let r = TrailWriter::create_at("/dev/full".into(), spec("s-full"), key(), cfg()).await;
    assert!(r.is_err());
    let _ = dir;
}

#[tokio::test]
async fn recovery_keeps_every_flushed_record_of_a_crashed_trail() {
    let dir = tempfile::tempdir().unwrap();
    let c = WriterConfig {
        flush_interval: Duration::from_millis(30),
        frame_max_raw: 4096,
        ..cfg()
    };
    let w = TrailWriter::create(dir.path(), spec("s-crash"), key(), c)
        .await
        .unwrap();
    let events = generate(5, 300, 300);
    for (ch, e) in &events {
        w.record(*ch, e.clone()).await.unwrap();
    }
    // Wait until everything is flushed (readable), then "crash": copy the file as it is now.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let crashed = dir.path().join("crashed.trail");
    let flushed;
    loop {
        std::fs::copy(w.path(), &crashed).unwrap();
        let (recs, integ) = read_all(&crashed);
        assert!(matches!(integ, Integrity::Incomplete { .. }));
        if recs
            .last()
            .is_some_and(|r| r.channel == 6 && r.event == Event::Close)
        {
            flushed = recs.len();
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "writer never flushed everything"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rep = trailgate_recorder::recover::recover(&crashed, &key()).unwrap();
    assert!(matches!(rep.after, Integrity::Incomplete { .. }), "{rep:?}");
    let v = verify(&crashed, None).unwrap();
    assert_eq!(
        v.records_verified as usize, flushed,
        "every flushed record is now in a verified frame"
    );
    assert_eq!(v.records_unverified, 0);
    for ch in 1..=6 {
        let mut out = Vec::new();
        export::cat(&crashed, ch, None, &mut out).unwrap();
        assert_eq!(out, stream_of(&events, ch, None));
    }
    // Recovering again changes nothing.
    let again = trailgate_recorder::recover::recover(&crashed, &key()).unwrap();
    assert_eq!(again.records_salvaged, 0);
    drop(w);
}

#[tokio::test]
async fn recovery_of_any_truncation_never_panics_and_never_corrupts() {
    let dir = tempfile::tempdir().unwrap();
    let events = generate(6, 30, 200);
    let small = WriterConfig {
        frame_max_raw: 500,
        chunk_bytes: 200,
        ..cfg()
    };
    let path = write_trail(dir.path(), "s-rtrunc", &events, small).await;
    let full = std::fs::read(&path).unwrap();
    let cut_path = dir.path().join("cut.trail");
    for cut in (0..full.len()).step_by(3) {
        std::fs::write(&cut_path, &full[..cut]).unwrap();
        let Ok(rep) = trailgate_recorder::recover::recover(&cut_path, &key()) else {
            continue;
        };
        assert!(
            !matches!(rep.after, Integrity::Corrupt { .. }),
            "cut {cut}: {rep:?}"
        );
        let (got, _) = read_all(&cut_path);
        let (all, _) = read_all(&path);
        assert_eq!(
            &all[..got.len()],
            &got[..],
            "cut {cut}: recovered records are a prefix"
        );
    }
}

/// The writer's frame timers follow the records' own timestamps, so a session replayed at any
/// speed is cut into frames exactly where the live one was: after `frame_idle_close` without a
/// record and after `frame_max_age`.
#[tokio::test]
async fn frame_timers_follow_record_time() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WriterConfig {
        flush_interval: Duration::from_secs(1),
        frame_max_age: Duration::from_secs(600),
        frame_idle_close: Duration::from_secs(60),
        fsync: false,
        ..WriterConfig::default()
    };
    let w = TrailWriter::create(dir.path(), spec("timers"), key(), cfg)
        .await
        .unwrap();
    let s = |secs: u64| secs * 1_000_000;
    let data = |b: &'static [u8]| Event::Data {
        dir: Direction::ServerToClient,
        data: Bytes::from_static(b),
    };
    let mut times = vec![0, s(1) / 10, s(1) / 5];
    // 70 s of silence (over the 60 s idle close), then a record every 30 s for 11 minutes.
    times.extend((0..=22).map(|k| s(70) + k * s(30)));
    for &t in &times {
        w.record_at(1, t, data(b"x")).await.unwrap();
    }
    let sum = w.finish(SessionEnd::default()).await.unwrap();
    let mut r = TrailReader::open(&sum.path).unwrap();
    let mut firsts = Vec::new();
    while let Some(item) = r.next_item().unwrap() {
        if let Item::Frame { entry, .. } = item {
            firsts.push(entry.first_time_us);
        }
    }
    assert_eq!(r.integrity(), Integrity::Sealed);
    // Frame 0: the first burst. Frame 1: from 70 s until the record 600 s later (670 s) would
    // make it too old. Frame 2: from 670 s to the end.
    assert_eq!(firsts, vec![0, s(70), s(670)]);
}

/// A replay faster than real time piles up flushed batches until the default 4 MiB budget is
/// full (the payload is about 10 MB, so that happens several times), and only then does the
/// compressor run, on the whole backlog in one job. Small batches travel packed in one buffer,
/// large ones on their own; one compression job takes both kinds, and every byte must still come
/// out on its channel in order, with each flush where the record times put it.
#[tokio::test(flavor = "current_thread")]
async fn a_backlog_of_small_and_large_flushed_batches_keeps_every_byte_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WriterConfig {
        fsync: false,
        ..WriterConfig::default()
    };
    // Records up to 40 KiB, 300 ms apart: a flush every few records, so batches range from a
    // few bytes to well over the 16 KiB packing limit.
    let events = generate(11, 4000, 40 * 1024);
    let w = TrailWriter::create(dir.path(), spec("backlog"), key(), cfg)
        .await
        .unwrap();
    for (i, (ch, e)) in events.iter().enumerate() {
        w.record_at(*ch, i as u64 * 300_000, e.clone())
            .await
            .unwrap();
    }
    let sum = w.finish(SessionEnd::default()).await.unwrap();
    let v = verify(&sum.path, Some(&key().verifying_key())).unwrap();
    assert_eq!(v.integrity, Integrity::Sealed);
    for ch in 1..=6u32 {
        for dir in [Direction::ClientToServer, Direction::ServerToClient] {
            let mut out = Vec::new();
            export::cat(&sum.path, ch, Some(dir), &mut out).unwrap();
            assert_eq!(
                out,
                stream_of(&events, ch, Some(dir)),
                "channel {ch} {dir:?}"
            );
        }
    }
    // Every record's time survives (gaps from 10 ms up are kept to the millisecond: 300 ms exactly).
    let mut r = TrailReader::open(&sum.path).unwrap();
    let mut times = Vec::new();
    while let Some(item) = r.next_item().unwrap() {
        if let Item::Frame { records, .. } | Item::Partial { records, .. } = item {
            times.extend(records.iter().map(|rec| rec.time_us));
        }
    }
    // The events, then the session end at the last record's time.
    assert_eq!(times.len(), events.len() + 1);
    let want: Vec<u64> = (0..events.len() as u64).map(|i| i * 300_000).collect();
    assert_eq!(times[..events.len()], want[..]);
}

/// A trail in format v1 (records with heads and payloads interleaved, two-form times), built
/// here frame by frame as the v1 writer laid it out, still verifies as sealed and reads back
/// record for record: upgrading the gateway must not strand the trails it already wrote.
#[test]
fn v1_trails_stay_readable_and_verifiable() {
    use ed25519_dalek::Signer;
    let key = key();
    let header = TrailHeader {
        format_version: 1,
        session_id: "v1-trail".into(),
        protocol: "ssh".into(),
        start_time: "2025-01-02T03:04:05Z".into(),
        start_unix_us: 1_735_787_045_000_000,
        meta: SessionMeta::default(),
        signing: trailgate_recorder::keys::signing_info(&key.verifying_key()),
        zstd_level: 3,
        zstd_fast_level: None,
    };
    let header_frame = encode_header(&header).unwrap();
    let data = |dir, b: &'static [u8]| Event::Data {
        dir,
        data: Bytes::from_static(b),
    };
    let end = SessionEnd {
        reason: "client disconnected".into(),
        ..Default::default()
    };
    // (channel, v1 wire dt, event, time the reader must reconstruct)
    let records = vec![
        (
            1,
            1_000 << 1,
            data(Direction::ClientToServer, b"ls\r"),
            1_000,
        ),
        (
            1,
            500 << 1,
            data(Direction::ServerToClient, b"a.txt\r\n"),
            1_500,
        ),
        (1, (25 << 1) | 1, Event::Close, 26_500),
        (0, 0, Event::End(end.clone()), 26_500),
    ];
    let mut raw = Vec::new();
    for (ch, dt, ev, _) in &records {
        encode_record_v1(&mut raw, *ch, *dt, ev).unwrap();
    }
    let mut zc = zstd::bulk::Compressor::new(3).unwrap();
    zc.include_checksum(true).unwrap();
    let frame = zc.compress(&raw).unwrap();
    let mut entry = ChainEntry {
        seq: 0,
        data_offset: header_frame.len() as u64,
        data_len: frame.len() as u32,
        raw_len: raw.len() as u32,
        records: records.len() as u32,
        first_time_us: 1_000,
        last_time_us: 26_500,
        hash: [0; 32],
        signature: [0; 64],
    };
    let mut h = ChainHasher::new(&header_hash(&header_frame));
    h.update(&frame);
    entry.hash = h.finish(&entry.hashed_prefix());
    entry.signature = key.sign(&entry.signed_message()).to_bytes();
    let end_frame = encode_end(&EndSummary {
        end_time: "2025-01-02T03:04:05.0265Z".into(),
        end_unix_us: header.start_unix_us + 26_500,
        duration_us: 26_500,
        end,
        records: records.len() as u64,
        frames: 1,
        bytes_client_to_server: 3,
        bytes_server_to_client: 7,
        channels: Vec::new(),
        index: vec![IndexEntry {
            offset: header_frame.len() as u64,
            time_us: 1_000,
            first_record: 0,
        }],
    })
    .unwrap();
    let end_hash = sha256(&[&end_frame]);
    let seal = Seal {
        chain_head: entry.hash,
        end_hash,
        signature: key.sign(&Seal::message(&entry.hash, &end_hash)).to_bytes(),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.trail");
    let file = [
        header_frame,
        frame,
        entry.encode(),
        end_frame,
        seal.encode(),
    ]
    .concat();
    std::fs::write(&path, &file).unwrap();

    assert_eq!(verify(&path, None).unwrap().integrity, Integrity::Sealed);
    let (got, integrity) = read_all(&path);
    assert_eq!(integrity, Integrity::Sealed);
    let want: Vec<Record> = records
        .into_iter()
        .map(|(channel, _, event, time_us)| Record {
            channel,
            time_us,
            event,
        })
        .collect();
    assert_eq!(got, want);
    // One flipped payload byte still breaks it.
    let mut bad = file.clone();
    let at = bad.len() / 3;
    bad[at] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    assert!(matches!(
        verify(&path, None).map(|v| v.integrity),
        Ok(Integrity::Corrupt { .. }) | Err(_)
    ));
}

/// Many tasks record into one trail at once (the gateway's pumps share a session's writer),
/// with a budget small enough that they keep waiting for one another: nothing is lost, each
/// channel's bytes come back in order, and the end summary counts them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_lose_nothing_and_keep_each_channel_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let w = TrailWriter::create(dir.path(), spec("concurrent"), key(), cfg())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for ch in 1..=8u32 {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(u64::from(ch));
            let mut sent = Vec::new();
            for _ in 0..1_500 {
                let n = rng.gen_range(0..3_000);
                let data: Vec<u8> = (0..n).map(|_| rng.r#gen()).collect();
                sent.extend_from_slice(&data);
                let ev = Event::Data {
                    dir: Direction::ClientToServer,
                    data: Bytes::from(data),
                };
                w.record(ch, ev).await.unwrap();
            }
            (ch, sent)
        }));
    }
    let mut sent = Vec::new();
    for t in tasks {
        sent.push(t.await.unwrap());
    }
    let sum = w.finish(SessionEnd::default()).await.unwrap();
    let (records, integrity) = read_all(&sum.path);
    assert_eq!(integrity, Integrity::Sealed);
    let events: Vec<(u32, Event)> = records.into_iter().map(|r| (r.channel, r.event)).collect();
    let mut total = 0;
    for (ch, bytes) in &sent {
        assert!(
            stream_of(&events, *ch, Some(Direction::ClientToServer)) == *bytes,
            "channel {ch} differs"
        );
        total += bytes.len() as u64;
    }
    assert_eq!(sum.end.bytes_client_to_server, total);
    assert!(
        sum.end.frames > 1,
        "the budget and frame size must have been exercised"
    );
}

#[tokio::test]
async fn a_zero_sized_pty_exports_as_80x24_and_a_corrupt_trail_says_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let w = TrailWriter::create(dir.path(), spec("s-zero"), key(), cfg())
        .await
        .unwrap();
    let open = Event::Open(ChannelOpen {
        kind: "session".into(),
        originator: None,
        connected: None,
        reason: None,
    });
    w.record_at(1, 0, open).await.unwrap();
    let pty = Request::Pty {
        term: "dumb".into(),
        cols: 0,
        rows: 0,
        width_px: 0,
        height_px: 0,
        modes: vec![],
    };
    w.record_at(
        1,
        1,
        Event::Request {
            dir: Direction::ClientToServer,
            request: pty,
        },
    )
    .await
    .unwrap();
    w.record_at(
        1,
        2,
        Event::Data {
            dir: Direction::ServerToClient,
            data: Bytes::from_static(b"hi"),
        },
    )
    .await
    .unwrap();
    w.finish(SessionEnd::default()).await.unwrap();
    let path = walk(&dir.path().join("trails")).into_iter().next().unwrap();
    let mut out = Vec::new();
    export::asciicast(&path, None, false, &mut out).unwrap();
    let header: serde_json::Value =
        serde_json::from_str(String::from_utf8(out).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(
        (header["width"].as_u64(), header["height"].as_u64()),
        (Some(80), Some(24))
    );

    // Damage the first frame: asking for a channel is answered with "corrupt", not "no channel".
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n / 3..n / 3 + 16] {
        *b ^= 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();
    for ch in [1, 7] {
        let err = export::cat(&path, ch, None, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("corrupt"), "channel {ch}: {err}");
        assert!(!err.contains("no channel"), "channel {ch}: {err}");
    }
}
