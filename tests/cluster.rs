//! Two gateway processes on one PostgreSQL catalog and one S3 bucket (moto), real OpenSSH
//! clients and target: sessions through either node appear in both APIs, a kill sent to node A
//! ends a session on node B within a second, live follow and downloads work through the other
//! node (a trail B uploaded downloads byte-exact from A), `kill -9` of B gets its sessions
//! marked lost by A within the grace period and B's restart uploads what it had sealed, and an
//! outage of the store loses nothing: the record says `upload_failed` meanwhile.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use sha2::Digest;
use trailgate_testkit::s3::S3Server;

const BUCKET: &str = "trails";

struct Cluster {
    sshd: Sshd,
    s3: S3Server,
    catalog: String,
    _creds: tempfile::TempDir,
    creds: std::path::PathBuf,
}

impl Cluster {
    fn new() -> Cluster {
        let sshd = Sshd::start().expect("sshd");
        let s3 = S3Server::start().expect("moto (scripts/install-test-deps.sh)");
        s3.create_bucket(BUCKET).expect("bucket");
        let catalog = trailgate_testkit::pg::shared()
            .and_then(|pg| pg.create_unique_database("cluster"))
            .expect("PostgreSQL (scripts/install-test-deps.sh)");
        let creds_dir = tempfile::tempdir().unwrap();
        let creds = creds_dir.path().join("s3-credentials");
        std::fs::write(
            &creds,
            "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
        )
        .unwrap();
        Cluster {
            sshd,
            s3,
            catalog,
            _creds: creds_dir,
            creds,
        }
    }

    fn node(&self, id: &str) -> Gateway {
        let (catalog, endpoint, creds) =
            (self.catalog.clone(), self.s3.endpoint(), self.creds.clone());
        let id = id.to_string();
        Gateway::start_custom(
            &self.sshd,
            FULL_POLICY,
            move |cfg| {
                // One shared catalog, whatever TRAILGATE_TEST_CATALOG says.
                let cfg = match cfg.find("\n[catalog]\n") {
                    Some(i) => {
                        let end = cfg[i + 11..].find('\n').map_or(cfg.len(), |e| i + 11 + e + 1);
                        format!("{}{}", &cfg[..i], &cfg[end..])
                    }
                    None => cfg,
                };
                format!(
                    "{}\n[catalog]\nurl = \"{catalog}\"\n\n[storage]\nurl = \"s3://{BUCKET}/gw\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\ncredentials_file = \"{}\"\npart_size = \"5MiB\"\n\n[cluster]\nheartbeat_interval = \"200ms\"\nnode_lost_after = \"2s\"\n",
                    cfg.replace("node_id = \"test-node\"", &format!("node_id = \"{id}\"")),
                    creds.display()
                )
            },
            None,
        )
        .expect("gateway node")
    }
}

fn session(gw: &Gateway, id: &str) -> Value {
    let (code, v) = gw.api_json("GET", &format!("/api/v1/sessions/{id}"), ADMIN_SECRET);
    assert_eq!(code, 200, "{v}");
    v
}

/// The one session whose record satisfies `f`, as `gw` lists it.
fn find_session(gw: &Gateway, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    wait_until(what, 20, || {
        gw.sessions("", ADMIN_SECRET).0.into_iter().find(|s| f(s))
    })
}

/// An established session held by `node`: logged in, recording, with its command channel.
fn established(s: &Value, node: &str) -> bool {
    s["node_id"] == node
        && s["active"] == true
        && s["user"]["name"] == "alice"
        && s["trail"]["integrity"] == "recording"
        && !s["channels"].as_array().is_none_or(|c| c.is_empty())
}

/// `ssh` into a shell on `gw` that prints `marker` and stays open.
fn open_shell(gw: &Gateway, marker: &str) -> Child {
    gw.ssh()
        .arg(gw.dest())
        .arg(format!("echo {marker}; exec sleep 120"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ssh")
}

fn stored(gw: &Gateway, id: &str, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = session(gw, id);
        if s["trail"]["storage"] == "stored" {
            return s;
        }
        assert!(Instant::now() < deadline, "trail of {id} not stored: {s}");
        std::thread::sleep(Duration::from_millis(50)); // polling interval
    }
}

#[test]
fn sessions_kills_live_follow_and_trails_work_through_either_node() {
    let c = Cluster::new();
    let a = c.node("node-a");
    let b = c.node("node-b");
    // Both nodes are registered, each with its API address.
    let (code, nodes) = a.api_json("GET", "/api/v1/nodes", ADMIN_SECRET);
    assert_eq!(code, 200, "{nodes}");
    assert_eq!(nodes["this_node"], "node-a");
    wait_until("both nodes up", 10, || {
        let (_, n) = b.api_json("GET", "/api/v1/nodes", ADMIN_SECRET);
        let items = n["items"].as_array().cloned().unwrap_or_default();
        (items.len() == 2
            && items
                .iter()
                .all(|i| i["state"] == "up" && i["api_url"].is_string()))
        .then_some(())
    });

    // A finished session through A shows in B's API, and an active one through B in A's.
    let out = a.exec("echo hello-from-a");
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("hello-from-a"));
    let done = find_session(&b, "A's session in B's API", |s| {
        s["node_id"] == "node-a" && s["active"] == false
    });
    let mut client = open_shell(&b, "marker-on-b");
    let live = find_session(&a, "B's active session in A's API", |s| {
        established(s, "node-b")
    });
    let live_id = live["id"].as_str().unwrap().to_string();

    // Live follow of B's session through A: the trail as it grows, with the echoed marker.
    let followed = a.dir.path().join("followed.trail");
    let out = std::process::Command::new("curl")
        .args(["-sS", "-N", "--max-time", "3", "-o"])
        .arg(&followed)
        .args(["-H", &format!("Authorization: Bearer {ADMIN_SECRET}")])
        .arg(format!(
            "http://{}/api/v1/sessions/{live_id}/trail?follow=true",
            a.api
        ))
        .output()
        .expect("curl");
    assert_eq!(
        out.status.code(),
        Some(28),
        "still streaming when curl gave up: {out:?}"
    );
    let text = String::from_utf8_lossy(&trail_cat(&followed, 1, Some("s2c"))).into_owned();
    assert!(
        text.contains("marker-on-b"),
        "live follow through A: {text:?}\n{}",
        a.log()
    );

    // A kill sent to A ends the session on B within a second: the client is disconnected.
    let t = Instant::now();
    let (api, path) = (a.api, format!("/api/v1/sessions/{live_id}/kill"));
    let killer = std::thread::spawn(move || {
        std::process::Command::new("curl")
            .args([
                "-sS",
                "-X",
                "POST",
                "-H",
                &format!("Authorization: Bearer {ADMIN_SECRET}"),
            ])
            .args([
                "-H",
                "Content-Type: application/json",
                "--data",
                r#"{"reason":"from node a"}"#,
            ])
            .arg(format!("http://{api}{path}"))
            .output()
            .expect("curl")
    });
    let status = wait_until("the client disconnected", 10, || {
        client.try_wait().ok().flatten()
    });
    let took = t.elapsed();
    assert!(!status.success());
    assert!(
        took < Duration::from_secs(1),
        "the client was disconnected after {took:?}"
    );
    let out = killer.join().unwrap();
    let killed: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    // The answer is the final record B wrote, in the shared catalog.
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "kill answered after {:?}",
        t.elapsed()
    );
    assert_eq!(
        killed["active"],
        false,
        "{killed}\n{}\n{}",
        a.log(),
        b.log()
    );
    assert_eq!(
        killed["end_reason"],
        "terminated by api token admin-tok: from node a"
    );
    assert_eq!(killed["terminated_by"], "api token admin-tok");

    // B's trail is uploaded, verified, gone from B's disk, and downloads byte-exact from A.
    let rec = stored(&a, &live_id, 30);
    assert!(
        b.trails().is_empty(),
        "B's local copies are deleted once stored"
    );
    let key = format!("gw/{live_id}.trail");
    let object = c.s3.object_bytes(BUCKET, &key).expect("object");
    let (code, via_a) = a.api_call(
        "GET",
        &format!("/api/v1/sessions/{live_id}/trail"),
        Some(ADMIN_SECRET),
        None,
    );
    assert_eq!(code, 200);
    assert!(
        via_a == object,
        "download through A differs from the stored object"
    );
    assert_eq!(
        rec["trail"]["sha256"],
        hex::encode(sha2::Sha256::digest(&via_a))
    );
    assert_eq!(rec["trail"]["size"].as_u64(), Some(via_a.len() as u64));
    // Range and exports work from the stored trail too.
    let part = std::process::Command::new("curl")
        .args([
            "-sS",
            "-r",
            "0-99",
            "-H",
            &format!("Authorization: Bearer {ADMIN_SECRET}"),
        ])
        .arg(format!("http://{}/api/v1/sessions/{live_id}/trail", a.api))
        .output()
        .unwrap()
        .stdout;
    assert!(part == via_a[..100]);
    let (code, cast) = b.api_call(
        "GET",
        &format!("/api/v1/sessions/{live_id}/trail?format=asciicast"),
        Some(ADMIN_SECRET),
        None,
    );
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&cast).contains("marker-on-b"));
    // A's own session, stored by A, reads from B.
    let done_id = done["id"].as_str().unwrap();
    stored(&b, done_id, 30);
    let (code, t) = b.api_call(
        "GET",
        &format!("/api/v1/sessions/{done_id}/trail?format=asciicast"),
        Some(ADMIN_SECRET),
        None,
    );
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&t).contains("hello-from-a"));
    let m = a.metrics_text(ADMIN_SECRET);
    assert!(
        metric_value(&m, "trailgate_trail_uploads_total") >= 1.0,
        "{m}"
    );
}

#[test]
fn a_lost_node_s_sessions_end_and_its_restart_uploads_what_it_sealed_after_a_store_outage() {
    let mut c = Cluster::new();
    let a = c.node("node-a");
    let mut b = c.node("node-b");
    // The store goes away for a minute: a session B completes meanwhile says so, and keeps its
    // trail.
    c.s3.stop();
    let outage = Instant::now();
    let out = b.exec("echo sealed-on-b");
    assert!(out.status.success());
    let sealed = find_session(&a, "B's finished session", |s| {
        s["node_id"] == "node-b" && s["active"] == false
    });
    let sealed_id = sealed["id"].as_str().unwrap().to_string();
    let failing = wait_until("upload_failed in the record", 30, || {
        let s = session(&a, &sealed_id);
        (s["trail"]["storage"] == "upload_failed").then_some(s)
    });
    assert!(
        failing["trail"]["storage_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{failing}"
    );
    assert_eq!(
        b.trails().len(),
        1,
        "the trail stays on B while the store is away"
    );
    // While only B has it, A forwards a download to B.
    let (code, _) = a.api_call(
        "GET",
        &format!("/api/v1/sessions/{sealed_id}/trail"),
        Some(ADMIN_SECRET),
        None,
    );
    assert_eq!(code, 200, "{}", a.log());

    // An active session on B, then B dies without a word.
    let mut client = open_shell(&b, "left-open");
    let open = find_session(&a, "B's active session", |s| established(s, "node-b"));
    let open_id = open["id"].as_str().unwrap().to_string();
    b.kill();
    let t = Instant::now();
    let lost = wait_until("A marks B's session lost", 10, || {
        let s = session(&a, &open_id);
        (s["active"] == false).then_some(s)
    });
    let after = t.elapsed();
    assert_eq!(lost["end_reason"], "gateway node lost", "{lost}");
    assert_eq!(lost["end_reason_code"], "gateway_node_lost");
    // Grace 2 s, heartbeats every 200 ms.
    assert!(
        after < Duration::from_secs(4),
        "marked lost after {after:?}"
    );
    let (_, nodes) = a.api_json("GET", "/api/v1/nodes", ADMIN_SECRET);
    assert!(
        nodes["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["id"] == "node-b" && n["state"] == "lost"),
        "{nodes}"
    );
    // While B is away, its trails cannot be read; the API says why.
    let (code, body) = a.api_call(
        "GET",
        &format!("/api/v1/sessions/{sealed_id}/trail"),
        Some(ADMIN_SECRET),
        None,
    );
    assert_eq!(code, 503, "{}", String::from_utf8_lossy(&body));
    let _ = client.kill();
    let _ = client.wait();
    // For the rest of the minute the record keeps saying why its trail is not stored.
    while outage.elapsed() < Duration::from_secs(60) {
        let s = session(&a, &sealed_id);
        assert_eq!(s["trail"]["storage"], "upload_failed", "{s}");
        std::thread::sleep(Duration::from_secs(1)); // the outage's own duration, sampled
    }

    // The store and B come back: B reconciles and uploads both trails.
    c.s3.restart().unwrap();
    c.s3.create_bucket(BUCKET).unwrap();
    b.crash_and_restart().expect("restart B");
    let rec = stored(&a, &sealed_id, 60);
    assert!(rec["trail"]["storage_error"].is_null());
    let (code, via_a) = a.api_call(
        "GET",
        &format!("/api/v1/sessions/{sealed_id}/trail"),
        Some(ADMIN_SECRET),
        None,
    );
    assert_eq!(code, 200);
    assert!(
        via_a
            == c.s3
                .object_bytes(BUCKET, &format!("gw/{sealed_id}.trail"))
                .unwrap()
    );
    let reopened = stored(&a, &open_id, 60);
    assert_eq!(reopened["end_reason"], "gateway node lost");
    assert_eq!(reopened["trail"]["integrity"], "incomplete", "{reopened}");
    let (code, v) = a.api_json(
        "GET",
        &format!("/api/v1/sessions/{open_id}/verify"),
        ADMIN_SECRET,
    );
    assert_eq!(code, 200, "{v}");
    assert!(b.trails().is_empty());
}
