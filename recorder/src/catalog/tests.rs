//! The catalog's behaviour on both backends (SQLite, PostgreSQL): every test runs on each.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::*;

fn rec(id: &str, start: i64, user: &str, active: bool, node: &str) -> SessionRecord {
    let mut r: SessionRecord = serde_json::from_value(serde_json::json!({
        "id": id, "protocol": if id.starts_with('v') { "vnc" } else { "ssh" },
        "active": active, "status": if active { "connected" } else { "disconnected" },
        "verdict": "accept",
        "client": {"ip": "127.0.0.1", "port": 1}, "target": {"name": "t1"}, "user": {"name": user},
        "start_time": "2026-01-01T00:00:00Z", "start_unix_us": start,
        "bytes_client_to_server": 0, "bytes_server_to_client": 0,
        "channels": [], "policies": [], "trail": {"size": 0, "integrity": "recording"},
        "node_id": node
    }))
    .unwrap();
    if !active {
        r.end_unix_us = Some(start + 10);
    }
    r
}

fn ids(c: &Catalog, q: &Query) -> (Vec<String>, u64) {
    let (items, total) = c.list(q).unwrap();
    (items.into_iter().map(|r| r.id).collect(), total)
}

#[test]
fn queued_records_filters_and_both_kinds_of_paging() {
    for (_d, c) in test_catalogs() {
        let name = c.backend().describe();
        for (i, (id, user, active)) in [
            ("s1", "alice", false),
            ("s2", "bob", false),
            ("v3", "alice", true),
            ("s4", "alice", false),
        ]
        .into_iter()
        .enumerate()
        {
            c.upsert(&rec(id, 100 + i as i64, user, active, "n1"));
        }
        // The latest state of a session wins.
        let mut s2 = rec("s2", 101, "bob", false, "n1");
        s2.bytes_client_to_server = 42;
        c.upsert(&s2);
        c.flush();
        assert_eq!(
            c.get("s2").unwrap().unwrap().bytes_client_to_server,
            42,
            "{name}"
        );
        assert!(c.get("nope").unwrap().is_none());
        assert!(c.exists("s1").unwrap() && !c.exists("nope").unwrap());
        let all = ids(&c, &Query::default());
        assert_eq!(
            all,
            (vec!["s4".into(), "v3".into(), "s2".into(), "s1".into()], 4),
            "{name}"
        );
        let q = |f: &dyn Fn(&mut Query)| {
            let mut q = Query::default();
            f(&mut q);
            ids(&c, &q)
        };
        assert_eq!(q(&|q| q.user = Some("alice".into())).1, 3, "{name}");
        assert_eq!(q(&|q| q.active = Some(true)).0, ["v3"], "{name}");
        assert_eq!(q(&|q| q.protocol = Some("vnc".into())).0, ["v3"], "{name}");
        assert_eq!(q(&|q| q.verdict = Some("accept".into())).1, 4, "{name}");
        assert_eq!(q(&|q| q.target = Some("t2".into())).1, 0, "{name}");
        assert_eq!(
            q(&|q| {
                q.since_us = Some(101);
                q.until_us = Some(103);
            })
            .0,
            ["v3", "s2"],
            "{name}"
        );
        // Offset and keyset pages; the total counts every match either way.
        assert_eq!(
            q(&|q| {
                q.limit = Some(2);
                q.offset = Some(1);
            }),
            (vec!["v3".into(), "s2".into()], 4),
            "{name}"
        );
        assert_eq!(
            q(&|q| {
                q.limit = Some(2);
                q.after = Some("v3".into());
            }),
            (vec!["s2".into(), "s1".into()], 4),
            "{name}"
        );
        assert_eq!(c.active().unwrap().len(), 1);
        assert_eq!(c.active_on("n1").unwrap().len(), 1);
        assert!(c.active_on("n2").unwrap().is_empty());
        assert!(c.health().is_ok());
    }
}

#[test]
fn downloads_are_audited_in_order() {
    for (_d, c) in test_catalogs() {
        for (i, f) in ["raw", "asciicast", "raw"].iter().enumerate() {
            c.add_download(&TrailDownload {
                session_id: "s1".into(),
                token: "audit".into(),
                time: format!("2026-01-01T00:00:0{i}Z"),
                format: f.to_string(),
                range: (i == 2).then(|| "bytes=0-9".into()),
                follow: i == 1,
            })
            .unwrap();
        }
        let (items, total) = c.downloads("s1", 2, 1).unwrap();
        assert_eq!(total, 3);
        assert_eq!(items[0].format, "asciicast");
        assert!(items[0].follow);
        assert_eq!(items[1].range.as_deref(), Some("bytes=0-9"));
        assert_eq!(c.downloads("s2", 10, 0).unwrap().1, 0);
    }
}

#[test]
fn reopening_migrates_once_and_a_newer_schema_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let c = Catalog::open(d.path()).unwrap();
    c.insert_many(&[rec("s1", 1, "a", false, "n")]).unwrap();
    c.close();
    let c = Catalog::open(d.path()).unwrap();
    assert!(c.get("s1").unwrap().is_some());
    c.with_conn(|c| c.batch("PRAGMA user_version = 99"))
        .unwrap();
    c.close();
    let e = Catalog::open(d.path()).err().unwrap().to_string();
    assert!(e.contains("version 99, newer than this gateway's"), "{e}");

    let pg = trailgate_testkit::pg::shared().unwrap();
    let url = pg.create_unique_database("migrate").unwrap();
    let d = tempfile::tempdir().unwrap();
    let c = Catalog::open_url(Some(&url), d.path()).unwrap();
    c.insert_many(&[rec("s1", 1, "a", false, "n")]).unwrap();
    // Two nodes starting together: one migrates, the other finds it done.
    let again: Vec<_> = (0..2)
        .map(|_| {
            let (url, dir) = (url.clone(), d.path().to_path_buf());
            std::thread::spawn(move || Catalog::open_url(Some(&url), &dir).map(|_| ()))
        })
        .collect();
    for h in again {
        h.join().unwrap().unwrap();
    }
    assert!(c.get("s1").unwrap().is_some());
    c.with_conn(|c| c.batch("UPDATE schema_version SET version = 99"))
        .unwrap();
    let e = Catalog::open_url(Some(&url), d.path())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("version 99"), "{e}");
}

#[test]
fn a_silent_node_is_claimed_once_and_only_its_active_sessions_end() {
    for (_d, c) in test_catalogs() {
        let name = c.backend().describe();
        c.heartbeat("a", Some("http://a:1"), 1).unwrap();
        c.heartbeat("b", None, 2).unwrap();
        c.insert_many(&[
            rec("b1", 1, "u", true, "b"),
            rec("b2", 2, "u", false, "b"),
            rec("a1", 3, "u", true, "a"),
        ])
        .unwrap();
        // Within the grace period nobody is lost.
        assert!(
            c.claim_lost_nodes("a", Duration::from_secs(60))
                .unwrap()
                .is_empty()
        );
        // b's last beat, a minute ago (no waiting for the clock).
        let age_b = || {
            c.with_conn(|c| {
                c.exec(
                    "UPDATE nodes SET heartbeat_us = heartbeat_us - 60000000 WHERE id = 'b'",
                    &[],
                )
            })
            .unwrap()
        };
        age_b();
        assert_eq!(
            c.claim_lost_nodes("a", Duration::from_secs(30)).unwrap(),
            ["b"],
            "{name}"
        );
        assert!(
            c.claim_lost_nodes("c", Duration::from_secs(30))
                .unwrap()
                .iter()
                .all(|n| n != "b")
        );
        let ended = c.end_sessions_of_lost_node("b").unwrap();
        assert_eq!(ended.len(), 1, "{name}");
        let b1 = c.get("b1").unwrap().unwrap();
        assert!(!b1.active);
        assert_eq!(b1.end_reason.as_deref(), Some("gateway node lost"));
        assert_eq!(b1.end_reason_code, Some(EndCode::GatewayNodeLost));
        assert!(
            c.get("a1").unwrap().unwrap().active,
            "{name}: other nodes untouched"
        );
        // b's restart finds its lost session to recover.
        assert_eq!(c.lost_unrecovered("b").unwrap().len(), 1);
        let nodes = c.nodes().unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[1].state, "lost");
        assert_eq!(nodes[0].api_url.as_deref(), Some("http://a:1"));
        c.heartbeat("b", None, 5).unwrap();
        assert_eq!(
            c.node("b").unwrap().unwrap().state,
            "up",
            "a returning node is up again"
        );
        c.node_stopped("b").unwrap();
        age_b();
        assert!(
            c.claim_lost_nodes("a", Duration::from_secs(30))
                .unwrap()
                .is_empty(),
            "a stopped node is not lost"
        );
    }
}

#[test]
fn the_upload_queue_is_this_nodes_uploading_and_failed_trails() {
    for (_d, c) in test_catalogs() {
        let mut recs = Vec::new();
        for (id, node, storage) in [
            ("s1", "n1", Some("uploading")),
            ("s2", "n1", Some("upload_failed")),
            ("s3", "n1", Some("stored")),
            ("s4", "n2", Some("uploading")),
            ("s5", "n1", None),
        ] {
            let mut r = rec(id, 1, "u", false, node);
            r.trail.storage = storage.map(Into::into);
            recs.push(r);
        }
        c.insert_many(&recs).unwrap();
        let mut got: Vec<String> = c
            .pending_uploads("n1", 10)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        got.sort();
        assert_eq!(got, ["s1", "s2"], "{}", c.backend().describe());
        assert_eq!(c.pending_uploads("n1", 1).unwrap().len(), 1);
    }
}

#[test]
fn kills_reach_the_listening_node_within_a_second_over_postgres() {
    let mut cats = test_catalogs();
    let (_pd, pg) = cats.pop().unwrap();
    let (_ld, lite) = cats.pop().unwrap();
    let req = KillRequest {
        node: "b".into(),
        session: "s1".into(),
        reason: "stop".into(),
        by: "api token admin".into(),
    };
    let e = lite.send_kill(&req).unwrap_err().to_string();
    assert!(e.contains("needs a shared PostgreSQL catalog"), "{e}");
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let h = pg
        .listen_kills("b".into(), stop.clone(), move |k| {
            let _ = tx.send(k);
        })
        .unwrap()
        .unwrap();
    // The listener is up once a kill sent for another node has been seen and skipped: send
    // until ours arrives.
    let t0 = std::time::Instant::now();
    let got = loop {
        pg.send_kill(&KillRequest {
            node: "a".into(),
            ..req.clone()
        })
        .unwrap();
        pg.send_kill(&req).unwrap();
        if let Ok(k) = rx.recv_timeout(Duration::from_millis(200)) {
            break k;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "no kill arrived");
    };
    assert_eq!(got, req);
    // Once listening, one kill arrives well within a second.
    while rx.try_recv().is_ok() {}
    let t = std::time::Instant::now();
    pg.send_kill(&req).unwrap();
    let k = rx.recv_timeout(Duration::from_secs(1)).expect("within 1 s");
    assert_eq!(k.session, "s1");
    assert!(t.elapsed() < Duration::from_secs(1));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    h.join().unwrap();
}
