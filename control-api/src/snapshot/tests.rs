//! The snapshot endpoint through the router: real trails written by the recorder, a catalog
//! indexed from them, tokens of both roles.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tower::ServiceExt;
use trailgate_recorder::catalog::{Catalog, record_from_trail};
use trailgate_recorder::keys::SigningKey;
use trailgate_recorder::writer::{TrailSpec, TrailWriter, WriterConfig};
use trailgate_recorder::{ChannelOpen, Direction, Event, SessionEnd, SessionMeta};
use trailgate_rfb::{PixelFormat, ServerInit, client as rfbc, encode};

use crate::ApiState;

const AUDITOR: &str = "auditor-secret";
const ADMIN: &str = "admin-secret";
const RED: [u8; 3] = [255, 0, 0];
const BLUE: [u8; 3] = [0, 0, 255];

fn tokens_config() -> trailgate_proxy::Config {
    let sha = |s: &str| hex::encode(Sha256::digest(s.as_bytes()));
    trailgate_proxy::Config::parse(&format!(
        "[[api_tokens]]\nname = \"audit\"\ntoken_sha256 = \"{}\"\nrole = \"auditor\"\n\
         [[api_tokens]]\nname = \"root\"\ntoken_sha256 = \"{}\"\nrole = \"admin\"\n",
        sha(AUDITOR),
        sha(ADMIN)
    ))
    .unwrap()
}

fn open(kind: &str) -> Event {
    Event::Open(ChannelOpen {
        kind: kind.into(),
        originator: None,
        connected: None,
        reason: None,
    })
}

fn data(dir: Direction, b: &[u8]) -> Event {
    Event::Data {
        dir,
        data: Bytes::copy_from_slice(b),
    }
}

/// A 4x2 desktop: all red by 1 s, its right half blue from 2 s.
fn vnc_events() -> Vec<(u64, Event)> {
    let pf = PixelFormat::RGB888;
    let init = ServerInit {
        width: 4,
        height: 2,
        pixel_format: pf,
        name: "desk".into(),
    };
    let mut hello = vec![1u8];
    hello.extend(rfbc::update_request(false, 0, 0, 4, 2));
    let mut u1 = encode::update_header(1).to_vec();
    u1.extend(encode::raw_rect(&pf, 0, 0, 4, 2, &[RED; 8]));
    let mut u2 = encode::update_header(1).to_vec();
    u2.extend(encode::ZrleStream::new().rect(&pf, 2, 0, 2, 2, &[BLUE; 4]));
    vec![
        (0, open("vnc")),
        (500_000, data(Direction::ServerToClient, &init.to_bytes())),
        (600_000, data(Direction::ClientToServer, &hello)),
        (1_000_000, data(Direction::ServerToClient, &u1)),
        (2_000_000, data(Direction::ServerToClient, &u2)),
    ]
}

async fn record(dir: &Path, id: &str, protocol: &str, events: Vec<(u64, Event)>) -> PathBuf {
    let spec = TrailSpec {
        session_id: id.into(),
        protocol: protocol.into(),
        meta: SessionMeta::default(),
        start: time::OffsetDateTime::now_utc(),
    };
    let cfg = WriterConfig {
        fsync: false,
        ..WriterConfig::default()
    };
    let key = Arc::new(SigningKey::from_bytes(&[9u8; 32]));
    let w = TrailWriter::create(dir, spec, key, cfg).await.unwrap();
    for (t, e) in events {
        w.record_at(1, t, e).await.unwrap();
    }
    w.finish(SessionEnd {
        reason: "client disconnected".into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .path
}

/// An API over a catalog holding a VNC session (`vnc-1`) and an SSH one (`ssh-1`).
async fn api(dir: &Path) -> axum::Router {
    let vnc = record(dir, "vnc-1", "vnc", vnc_events()).await;
    let ssh = record(dir, "ssh-1", "ssh", vec![(0, open("session"))]).await;
    let catalog = Catalog::open(dir).unwrap();
    catalog
        .insert_many(&[
            record_from_trail(&vnc).unwrap(),
            record_from_trail(&ssh).unwrap(),
        ])
        .unwrap();
    crate::router(Arc::new(ApiState::new(
        catalog,
        trailgate_proxy::registry::Registry::new(),
        Arc::new(trailgate_proxy::runtime::Runtime::new(tokens_config())),
        dir.to_path_buf(),
        Arc::new(trailgate_proxy::metrics::Metrics::new()),
    )))
}

async fn get(app: &axum::Router, uri: &str, secret: Option<&str>) -> axum::response::Response {
    let mut req = Request::get(uri);
    if let Some(s) = secret {
        req = req.header("authorization", format!("Bearer {s}"));
    }
    app.clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

async fn body(r: axum::response::Response) -> Vec<u8> {
    axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec()
}

/// The `format` of each audited download of `vnc-1`, oldest first.
async fn audited_formats(app: &axum::Router) -> Vec<String> {
    let r = get(app, "/api/v1/sessions/vnc-1/trail_downloads", Some(AUDITOR)).await;
    let v: serde_json::Value = serde_json::from_slice(&body(r).await).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["format"].as_str().unwrap().to_string())
        .collect()
}

/// The error envelope's code.
async fn error_code(r: axum::response::Response) -> String {
    let v: serde_json::Value = serde_json::from_slice(&body(r).await).unwrap();
    v["error"]["code"].as_str().unwrap().to_string()
}

/// The RGB pixels of a PNG.
fn pixels(png: &[u8]) -> Vec<[u8; 3]> {
    let mut r = png::Decoder::new(std::io::Cursor::new(png))
        .read_info()
        .unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (4, 2));
    buf[..info.buffer_size()]
        .chunks(3)
        .map(|c| [c[0], c[1], c[2]])
        .collect()
}

#[tokio::test]
async fn snapshots_of_a_vnc_session_at_two_times() {
    let dir = tempfile::tempdir().unwrap();
    let app = api(dir.path()).await;

    let r = get(&app, "/api/v1/sessions/vnc-1/snapshot", Some(AUDITOR)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["x-trailgate-screen-time"], "2.000");
    assert_eq!(pixels(&body(r).await)[..4], [RED, RED, BLUE, BLUE]);

    let r = get(&app, "/api/v1/sessions/vnc-1/snapshot?at=1.5", Some(ADMIN)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(pixels(&body(r).await), [RED; 8]);

    // Both are audited with the trail downloads.
    let formats = audited_formats(&app).await;
    assert_eq!(formats, ["snapshot", "snapshot at=1.500"]);
}

#[tokio::test]
async fn fbs_download_replays_to_the_last_screen() {
    let dir = tempfile::tempdir().unwrap();
    let app = api(dir.path()).await;
    let r = get(
        &app,
        "/api/v1/sessions/vnc-1/trail?format=fbs",
        Some(AUDITOR),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let d = trailgate_rfb::fbs::replay(&body(r).await).unwrap();
    assert_eq!(d.framebuffer().pixel(3, 1), Some(BLUE));
    assert_eq!(d.framebuffer().pixel(0, 1), Some(RED));
    let r = get(
        &app,
        "/api/v1/sessions/ssh-1/trail?format=fbs",
        Some(AUDITOR),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_requests_and_missing_screens() {
    let dir = tempfile::tempdir().unwrap();
    let app = api(dir.path()).await;
    for at in ["abc", "-1", "1e300", "NaN", "inf"] {
        let r = get(
            &app,
            &format!("/api/v1/sessions/vnc-1/snapshot?at={at}"),
            Some(AUDITOR),
        )
        .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "at={at}");
        assert_eq!(error_code(r).await, "bad_request");
    }
    for uri in [
        "/api/v1/sessions/ssh-1/snapshot",
        "/api/v1/sessions/nope/snapshot",
        // Before the ServerInit there is no screen.
        "/api/v1/sessions/vnc-1/snapshot?at=0.1",
    ] {
        let r = get(&app, uri, Some(AUDITOR)).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(error_code(r).await, "not_found");
    }
    let r = get(&app, "/api/v1/sessions/vnc-1/snapshot", None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = get(&app, "/api/v1/openapi.json", Some(AUDITOR)).await;
    let doc: serde_json::Value = serde_json::from_slice(&body(r).await).unwrap();
    assert!(doc["paths"]["/api/v1/sessions/{id}/snapshot"]["get"].is_object());
}

#[tokio::test]
async fn replays_and_thumbnails_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let app = api(dir.path()).await;
    // From the start: the handshake, a black key frame at 0, red at 1 s, blue at 2 s.
    let r = get(&app, "/api/v1/sessions/vnc-1/replay", Some(AUDITOR)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-trailgate-replay-from"], "0.000");
    let file = body(r).await;
    let times: Vec<u32> = trailgate_rfb::fbs::read_blocks(&file)
        .unwrap()
        .iter()
        .map(|b| b.0)
        .collect();
    assert_eq!(times, [0, 0, 1000, 2000]);
    let d = trailgate_rfb::fbs::replay(&file).unwrap();
    assert_eq!(d.server_init().unwrap().pixel_format, PixelFormat::RGB888);
    assert_eq!(d.framebuffer().pixel(3, 1), Some(BLUE));
    assert_eq!(d.framebuffer().pixel(0, 1), Some(RED));

    // From 1.5 s: the red screen first, timed 1500.
    let r = get(&app, "/api/v1/sessions/vnc-1/replay?from=1.5", Some(ADMIN)).await;
    assert_eq!(r.headers()["x-trailgate-replay-from"], "1.500");
    let file = body(r).await;
    let blocks = trailgate_rfb::fbs::read_blocks(&file).unwrap();
    assert_eq!(
        blocks.iter().map(|b| b.0).collect::<Vec<_>>(),
        [0, 1500, 2000]
    );
    let mut d = trailgate_rfb::Decoder::with_rfb33_handshake();
    d.feed_server(&blocks[0].1).unwrap();
    d.feed_server(&blocks[1].1).unwrap();
    assert_eq!(d.framebuffer().pixel(3, 1), Some(RED));

    for (uri, status) in [
        (
            "/api/v1/sessions/vnc-1/replay?from=x",
            StatusCode::BAD_REQUEST,
        ),
        ("/api/v1/sessions/ssh-1/replay", StatusCode::NOT_FOUND),
        ("/api/v1/sessions/nope/replay", StatusCode::NOT_FOUND),
        (
            "/api/v1/sessions/vnc-1/snapshot?width=0",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/sessions/vnc-1/snapshot?width=big",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = get(&app, uri, Some(AUDITOR)).await;
        assert_eq!(r.status(), status, "{uri}");
    }

    // A thumbnail 2 pixels wide of the 4x2 screen: 2x1, red then blue.
    let r = get(
        &app,
        "/api/v1/sessions/vnc-1/snapshot?width=2",
        Some(AUDITOR),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let png = body(r).await;
    let mut dec = png::Decoder::new(std::io::Cursor::new(&png[..]))
        .read_info()
        .unwrap();
    let mut buf = vec![0; dec.output_buffer_size()];
    let info = dec.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (2, 1));
    assert_eq!(&buf[..6], [255, 0, 0, 0, 0, 255]);

    // Audited like the other screens.
    let formats = audited_formats(&app).await;
    assert_eq!(
        formats,
        ["replay from=0.000", "replay from=1.500", "snapshot width=2"]
    );
}
