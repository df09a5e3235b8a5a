//! A synthetic VNC session recorded through the real writer: snapshots at two times, the FBS
//! round trip, `info`, and trails that end badly.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use trailgate_rfb::client::{self as rfbc, encoding};
use trailgate_rfb::encode::{self, ZrleStream};

use super::*;
use crate::format::{ChannelOpen, SessionEnd, SessionMeta};
use crate::keys::SigningKey;
use crate::writer::{TrailSpec, TrailWriter, WriterConfig};

const RED: [u8; 3] = [255, 0, 0];
const BLUE: [u8; 3] = [0, 0, 255];
const GREEN: [u8; 3] = [0, 255, 0];
const W: u16 = 16;
const H: u16 = 8;

/// What the client switches to: 16 bits, big-endian (the server offers 32-bit RGB888).
fn pf16() -> PixelFormat {
    PixelFormat {
        bits_per_pixel: 16,
        depth: 16,
        big_endian: true,
        true_colour: true,
        red_max: 31,
        green_max: 63,
        blue_max: 31,
        red_shift: 11,
        green_shift: 5,
        blue_shift: 0,
    }
}

fn data(dir: Direction, b: &[u8]) -> Event {
    Event::Data {
        dir,
        data: Bytes::copy_from_slice(b),
    }
}

/// Records `events` (channel 1 unless said) into a fresh trail and returns its path.
async fn record(dir: &Path, protocol: &str, events: Vec<(u64, Event)>) -> PathBuf {
    let spec = TrailSpec {
        session_id: "vnc-test".into(),
        protocol: protocol.into(),
        meta: SessionMeta::default(),
        start: time::OffsetDateTime::now_utc(),
    };
    let cfg = WriterConfig {
        fsync: false,
        ..WriterConfig::default()
    };
    let key = Arc::new(SigningKey::from_bytes(&[5u8; 32]));
    let w = TrailWriter::create(dir, spec, key, cfg).await.unwrap();
    for (t, e) in events {
        w.record_at(1, t, e).await.unwrap();
    }
    w.finish(SessionEnd {
        reason: "client closed".into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .path
}

fn open_vnc() -> Vec<(u64, Event)> {
    vec![
        (
            0,
            Event::Open(ChannelOpen {
                kind: "vnc".into(),
                originator: None,
                connected: None,
                reason: None,
            }),
        ),
        (
            5,
            Event::Note(
                json!({"event": "vnc", "desktop_name": "desk", "width": W, "height": H,
                "client": {"rfb_version": "3.8", "security": "vencrypt-x509-plain"},
                "target": {"rfb_version": "3.8", "security": "vencrypt-x509-vnc"}}),
            ),
        ),
    ]
}

/// The session: red screen by 3 s (Raw, 16 bpp), a blue ZRLE block by 5 s, a green one at 7 s.
fn session() -> Vec<(u64, Event)> {
    let c2s = Direction::ClientToServer;
    let s2c = Direction::ServerToClient;
    let init = ServerInit {
        width: W,
        height: H,
        pixel_format: PixelFormat::RGB888,
        name: "desk".into(),
    }
    .to_bytes();
    let mut hello = vec![1u8];
    hello.extend(rfbc::set_pixel_format(&pf16()));
    hello.extend(rfbc::set_encodings(&[encoding::ZRLE, encoding::RAW]));
    hello.extend(rfbc::update_request(false, 0, 0, W, H));
    let mut u1 = encode::update_header(1).to_vec();
    u1.extend(encode::raw_rect(
        &pf16(),
        0,
        0,
        W,
        H,
        &[RED; (W * H) as usize],
    ));
    let mut z = ZrleStream::new();
    let mut u2 = encode::update_header(1).to_vec();
    u2.extend(z.rect(&pf16(), 4, 2, 8, 4, &[BLUE; 32]));
    u2.extend(encode::bell());
    let mut u3 = encode::update_header(1).to_vec();
    u3.extend(z.rect(&pf16(), 0, 0, 2, 2, &[GREEN; 4]));
    let mut input = rfbc::key_event(true, 0x61).to_vec();
    input.extend(rfbc::key_event(false, 0x61));
    input.extend(rfbc::pointer_event(1, 3, 3));
    let mut ev = open_vnc();
    ev.extend([
        (1_000_000, data(s2c, &init[..7])),
        (1_000_100, data(s2c, &init[7..])),
        (2_000_000, data(c2s, &hello[..9])),
        (2_000_050, data(c2s, &hello[9..])),
        (3_000_000, data(s2c, &u1[..100])),
        (3_000_500, data(s2c, &u1[100..201])),
        (3_001_000, data(s2c, &u1[201..])),
        (4_000_000, data(c2s, &input)),
        (5_000_000, data(s2c, &u2[..20])),
        (5_000_001, data(s2c, &u2[20..])),
        (6_000_000, data(c2s, &rfbc::key_event(true, 0x62))),
        (7_000_000, data(s2c, &u3)),
        (8_000_000, Event::Eof { dir: c2s }),
        (8_000_001, Event::Close),
    ]);
    ev
}

fn at(s: f64) -> Option<Duration> {
    Some(Duration::from_secs_f64(s))
}

/// RGB pixels of a PNG.
fn png_pixels(png: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut r = png::Decoder::new(std::io::Cursor::new(png))
        .read_info()
        .unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[tokio::test]
async fn snapshots_at_two_times_and_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = record(dir.path(), "vnc", session()).await;

    let f = frame(&path, at(4.0)).unwrap();
    assert_eq!(f.updates, 1);
    // Record times are kept to 100 µs or 1 ms past short gaps (trail format §3).
    assert!((3_000_000..3_010_000).contains(&f.time_us), "{}", f.time_us);
    assert_eq!(f.framebuffer.pixel(5, 3), Some(RED));

    let (w, h, px) = png_pixels(&snapshot(&path, at(6.0)).unwrap());
    assert_eq!((w, h), (u32::from(W), u32::from(H)));
    let p = |x: usize, y: usize| &px[(y * usize::from(W) + x) * 3..][..3];
    assert_eq!(p(5, 3), BLUE);
    assert_eq!(p(3, 3), RED);
    assert_eq!(p(0, 0), RED);

    let end = frame(&path, None).unwrap();
    assert_eq!(end.updates, 3);
    assert_eq!(end.framebuffer.pixel(0, 0), Some(GREEN));
    assert_eq!(end.framebuffer.pixel(5, 3), Some(BLUE));
    assert!(end.decode_error.is_none());
    assert_eq!(end.integrity, Integrity::Sealed);

    // Before the ServerInit there is no screen: an error that says so.
    let e = frame(&path, at(0.5)).unwrap_err();
    assert!(e.to_string().contains("no screen yet"), "{e}");
}

#[tokio::test]
async fn fbs_export_replays_to_the_final_frame() {
    let dir = tempfile::tempdir().unwrap();
    let path = record(dir.path(), "vnc", session()).await;
    let mut out = Vec::new();
    let x = export_fbs(&path, &mut out).unwrap();
    assert_eq!(x.pixel_format, pf16());
    assert!(!x.later_format_change);
    assert_eq!(x.integrity, Integrity::Sealed);
    let blocks = fbs::read_blocks(&out).unwrap();
    assert_eq!(blocks.len() as u64, x.blocks + 1);
    // The handshake announces the format the stream is in, not the server's.
    let mut d = Decoder::with_rfb33_handshake();
    d.feed_server(&blocks[0].1).unwrap();
    assert_eq!(d.server_init().unwrap().pixel_format, pf16());
    // The second half of the split ServerInit held nothing else: the first block is the update.
    assert_eq!(blocks[1].0, 3000);
    assert_eq!(blocks.last().unwrap().0, 7000);
    let replayed = fbs::replay(&out).unwrap();
    let end = frame(&path, None).unwrap();
    assert_eq!(replayed.framebuffer(), &end.framebuffer);
    assert_eq!(replayed.counters().updates, 3);
}

#[tokio::test]
async fn info_counts_and_legs() {
    let dir = tempfile::tempdir().unwrap();
    let path = record(dir.path(), "vnc", session()).await;
    let i = vnc_info(&path).unwrap().unwrap();
    assert_eq!(i.desktop_name.as_deref(), Some("desk"));
    assert_eq!((i.width, i.height), (Some(W), Some(H)));
    assert_eq!(i.pixel_format, Some(PixelFormat::RGB888));
    assert_eq!(i.client_pixel_format, Some(pf16()));
    let c = &i.counters;
    assert_eq!((c.key_events, c.pointer_events, c.updates), (3, 1, 3));
    assert_eq!((c.update_requests, c.bells), (1, 1));
    assert_eq!(
        i.client.as_ref().unwrap()["security"],
        "vencrypt-x509-plain"
    );
    let all = crate::export::info(&path).unwrap();
    let v = serde_json::to_value(&all).unwrap();
    assert_eq!(v["vnc"]["key_events"], 3);
    assert_eq!(v["vnc"]["target"]["security"], "vencrypt-x509-vnc");
    assert_eq!(v["vnc"]["pixel_format"]["bits_per_pixel"], 32);
    // A catalog rebuilt from trails keeps the VNC part of the record.
    let rec = crate::catalog::record_from_trail(&path)
        .unwrap()
        .vnc
        .unwrap();
    assert_eq!((rec.desktop_name.as_str(), rec.width), ("desk", W));
    assert_eq!(rec.client.security, "vencrypt-x509-plain");
    assert_eq!(rec.pixel_format["depth"], 24);
}

#[tokio::test]
async fn bad_data_stops_decoding_but_not_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut ev = session();
    // After the red screen, a rectangle in an encoding nobody negotiated (Tight).
    let mut bad = encode::update_header(1).to_vec();
    bad.extend(encode::rect_header(0, 0, 1, 1, 7));
    ev.insert(10, (4_500_000, data(Direction::ServerToClient, &bad)));
    let path = record(dir.path(), "vnc", ev).await;
    let f = frame(&path, None).unwrap();
    assert!(
        f.decode_error
            .as_deref()
            .unwrap()
            .contains("unsupported encoding 7")
    );
    assert_eq!(f.framebuffer.pixel(5, 3), Some(RED));
    assert!(snapshot(&path, None).unwrap().starts_with(b"\x89PNG"));
    let i = vnc_info(&path).unwrap().unwrap();
    assert!(i.decode_error.is_some());
    // The FBS export still carries every server byte.
    let mut out = Vec::new();
    let x = export_fbs(&path, &mut out).unwrap();
    assert!(x.decode_error.is_some());
    assert_eq!(fbs::read_blocks(&out).unwrap().last().unwrap().0, 7000);
}

#[tokio::test]
async fn a_session_cut_mid_rectangle_shows_what_arrived() {
    let dir = tempfile::tempdir().unwrap();
    let mut ev = session();
    ev.truncate(2 + 2 + 2 + 1); // open, note, ServerInit, hello, the first 100 update bytes
    let path = record(dir.path(), "vnc", ev).await;
    let f = frame(&path, None).unwrap();
    assert_eq!(f.updates, 0);
    assert!(f.decode_error.is_none());
    // 100 bytes: 4 of header, 12 of rectangle, 42 pixels of the first 16-pixel rows.
    assert_eq!(f.framebuffer.pixel(15, 1), Some(RED));
    assert_eq!(f.framebuffer.pixel(0, 3), Some([0, 0, 0]));
}

#[tokio::test]
async fn trails_without_vnc_are_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let ev = vec![(
        0,
        Event::Open(ChannelOpen {
            kind: "session".into(),
            originator: None,
            connected: None,
            reason: None,
        }),
    )];
    let path = record(dir.path(), "ssh", ev).await;
    assert!(matches!(
        snapshot(&path, None),
        Err(RecorderError::NotVnc(_))
    ));
    assert!(matches!(
        export_fbs(&path, &mut Vec::new()),
        Err(RecorderError::NotVnc(_))
    ));
    assert!(vnc_info(&path).unwrap().is_none());
    assert!(crate::export::info(&path).unwrap().vnc.is_none());
}

/// Plays a replay file: the screen after each block, with the block's time.
fn play(file: &[u8]) -> Vec<(u32, Framebuffer)> {
    let mut d = Decoder::with_rfb33_handshake();
    let mut shown = Vec::new();
    for (i, b) in fbs::blocks(file).unwrap().enumerate() {
        let (ms, data) = b.unwrap();
        d.feed_server(data).unwrap();
        if i == 0 {
            assert_eq!(d.server_init().unwrap().pixel_format, PixelFormat::RGB888);
            continue;
        }
        assert!(d.at_message_boundary(), "every block is whole updates");
        shown.push((ms, d.framebuffer().clone()));
    }
    shown
}

#[tokio::test]
async fn replay_from_any_moment_shows_the_recorded_screens() {
    let dir = tempfile::tempdir().unwrap();
    let path = record(dir.path(), "vnc", session()).await;
    let mut out = Vec::new();
    let x = export_replay(&path, None, &mut out).unwrap();
    assert_eq!(x.integrity, Integrity::Sealed);
    assert_eq!(x.bytes, out.len() as u64);
    let shown = play(&out);
    // Key frame (black, at 0), then the three updates at their recorded times, each equal
    // to the snapshot at that time; the split first update arrives as one.
    assert_eq!(
        shown.len(),
        4,
        "{:?}",
        shown.iter().map(|s| s.0).collect::<Vec<_>>()
    );
    assert_eq!(x.updates, 3);
    for (ms, fb) in &shown[1..] {
        let f = frame(&path, Some(Duration::from_millis(u64::from(*ms) + 1))).unwrap();
        assert_eq!(fb, &f.framebuffer, "screen at {ms} ms");
    }
    assert_eq!(shown[1].0 / 1000, 3);
    assert_eq!(shown[3].0, 7000);

    // From 5.5 s: the key frame is the screen then (red with the blue block), then green.
    let mut out = Vec::new();
    let x = export_replay(&path, at(5.5), &mut out).unwrap();
    assert_eq!(x.start_us, 5_500_000);
    let shown = play(&out);
    assert_eq!(shown.len(), 2);
    assert_eq!(shown[0].0, 5500);
    assert_eq!(shown[0].1, frame(&path, at(5.5)).unwrap().framebuffer);
    assert_eq!(shown[1].1, frame(&path, None).unwrap().framebuffer);

    // Past the end: the last screen, once.
    let mut out = Vec::new();
    let x = export_replay(&path, at(60.0), &mut out).unwrap();
    assert_eq!((x.updates, x.start_us / 1000), (0, 7000));
    let shown = play(&out);
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].1.pixel(0, 0), Some(GREEN));
}
