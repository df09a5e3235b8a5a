//! Trail storage against a real S3 server (moto): uploads byte-exact in one request and in
//! parts, verification that catches a different object, the uploader's queue in the catalog
//! (stored, local copy deleted), and an outage: `upload_failed` with the reason meanwhile,
//! then stored once the server is back.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use trailgate_recorder::catalog::Catalog;
use trailgate_recorder::record::SessionRecord;
use trailgate_storage::{S3Settings, TrailCache, TrailStore, Uploaded, Uploader};
use trailgate_testkit::s3::S3Server;

const BUCKET: &str = "trails";

fn settings(s3: &S3Server) -> S3Settings {
    S3Settings {
        bucket: BUCKET.into(),
        prefix: "test/node".into(),
        endpoint: Some(s3.endpoint()),
        region: "us-east-1".into(),
        access_key_id: Some("testing".into()),
        secret_access_key: Some("testing".into()),
        session_token: None,
    }
}

fn server() -> S3Server {
    let s3 = S3Server::start().expect("moto (scripts/install-test-deps.sh)");
    s3.create_bucket(BUCKET).expect("bucket");
    s3
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[1] ^ seed)
        .collect()
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50)); // polling interval
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_in_one_request_and_in_parts_arrive_byte_exact_and_verify() {
    let s3 = server();
    let store = TrailStore::new(&settings(&s3), 5 << 20).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (name, len) in [
        ("empty", 0),
        ("small", 1000),
        ("exact", 5 << 20),
        ("multi", (12 << 20) + 7),
    ] {
        let bytes = pattern(len, len as u8);
        let local = dir.path().join(name);
        std::fs::write(&local, &bytes).unwrap();
        let key = store.key_for(name);
        let up = store.upload(&local, &key).await.unwrap();
        assert_eq!(up.size, len as u64);
        store.verify(&key, &up).await.unwrap();
        assert!(
            s3.object_bytes(BUCKET, &key).unwrap() == bytes,
            "{name}: stored bytes differ"
        );
        let back = dir.path().join(format!("{name}.back"));
        assert_eq!(store.download_to(&key, &back).await.unwrap(), len as u64);
        assert!(
            std::fs::read(&back).unwrap() == bytes,
            "{name}: downloaded bytes differ"
        );
    }
    assert!(s3.list_keys(BUCKET, "test/node/").unwrap().len() >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_catches_an_object_that_is_not_the_trail() {
    let s3 = server();
    let store = TrailStore::new(&settings(&s3), 5 << 20).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("t");
    std::fs::write(&local, pattern(4096, 1)).unwrap();
    let key = store.key_for("t");
    let up = store.upload(&local, &key).await.unwrap();
    // Same size, other content; then another size.
    s3.put_object(BUCKET, &key, &pattern(4096, 2)).unwrap();
    let e = store.verify(&key, &up).await.unwrap_err().to_string();
    assert!(e.contains("does not match") && e.contains("SHA-256"), "{e}");
    s3.put_object(BUCKET, &key, b"short").unwrap();
    let e = store.verify(&key, &up).await.unwrap_err().to_string();
    assert!(e.contains("5 bytes stored, 4096 in the trail"), "{e}");
    let missing = Uploaded {
        size: 1,
        sha256: String::new(),
    };
    assert!(store.verify("nope", &missing).await.is_err());
}

fn record(id: &str, trail: &Path) -> SessionRecord {
    let mut r: SessionRecord = serde_json::from_value(serde_json::json!({
        "id": id, "protocol": "ssh", "active": false, "status": "disconnected",
        "client": {"ip": "127.0.0.1", "port": 1}, "target": {}, "user": {},
        "start_time": "2026-01-01T00:00:00Z", "start_unix_us": 1, "end_unix_us": 2,
        "bytes_client_to_server": 0, "bytes_server_to_client": 0,
        "channels": [], "policies": [], "trail": {"size": 0, "integrity": "sealed", "storage": "uploading"},
        "node_id": "n1"
    }))
    .unwrap();
    r.trail.path = Some(trail.display().to_string());
    r
}

fn storage_of(c: &Catalog, id: &str) -> SessionRecord {
    c.flush();
    c.get(id).unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_uploader_stores_verifies_then_deletes_and_rides_out_an_outage() {
    let mut s3 = server();
    let store = TrailStore::new(&settings(&s3), 5 << 20).unwrap();
    let data = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(data.path()).unwrap();
    let trail = data.path().join("a.trail");
    let bytes = pattern(7 << 20, 9);
    std::fs::write(&trail, &bytes).unwrap();
    catalog.upsert(&record("a", &trail));
    catalog.flush();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    let up = Uploader::spawn(
        store.clone(),
        catalog.clone(),
        "n1".into(),
        shutdown.clone(),
        &tracker,
    );
    let c = catalog.clone();
    tokio::task::spawn_blocking(move || {
        wait_until("stored", Duration::from_secs(30), || {
            storage_of(&c, "a").trail.storage.as_deref() == Some("stored")
        })
    })
    .await
    .unwrap();
    let r = storage_of(&catalog, "a");
    use sha2::Digest;
    assert_eq!(
        r.trail.sha256.as_deref(),
        Some(hex::encode(sha2::Sha256::digest(&bytes)).as_str())
    );
    assert!(
        r.trail.path.is_none() && !trail.exists(),
        "local copy deleted after the object verified"
    );
    assert!(s3.object_bytes(BUCKET, &store.key_for("a")).unwrap() == bytes);
    // Read back through the cache: a file again, byte-exact.
    let cache = TrailCache::new(data.path().join("cache"), 1 << 30, Some(store.clone()));
    let f = cache.file(&r).await.unwrap();
    assert!(std::fs::read(&f).unwrap() == bytes);

    // The store goes away: the record says so, nothing is lost, and it resumes.
    s3.stop();
    let trail_b = data.path().join("b.trail");
    std::fs::write(&trail_b, pattern(1000, 3)).unwrap();
    catalog.upsert(&record("b", &trail_b));
    up.wake();
    let c = catalog.clone();
    let failed = tokio::task::spawn_blocking(move || {
        wait_until("upload_failed", Duration::from_secs(60), || {
            storage_of(&c, "b").trail.storage.as_deref() == Some("upload_failed")
        });
        storage_of(&c, "b")
    })
    .await
    .unwrap();
    assert!(
        failed
            .trail
            .storage_error
            .as_deref()
            .is_some_and(|e| !e.is_empty())
    );
    assert!(trail_b.exists(), "kept while the store is away");
    s3.restart().unwrap();
    s3.create_bucket(BUCKET).unwrap();
    let c = catalog.clone();
    tokio::task::spawn_blocking(move || {
        wait_until("stored after the outage", Duration::from_secs(90), || {
            storage_of(&c, "b").trail.storage.as_deref() == Some("stored")
        })
    })
    .await
    .unwrap();
    assert!(storage_of(&catalog, "b").trail.storage_error.is_none());
    assert!(s3.object_bytes(BUCKET, &store.key_for("b")).unwrap() == pattern(1000, 3));
    assert!(
        up.counters
            .failed
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    assert_eq!(
        up.counters
            .uploaded
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    let _: Arc<Catalog> = catalog;
}
