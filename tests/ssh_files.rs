//! Files in trails: real OpenSSH `sftp` and `scp` (SFTP mode, OpenSSH's default) through the
//! gateway; `trailgate trail files` lists every file with its direction, size, SHA-256 and
//! status, and `trail extract` gives back exactly the bytes that crossed.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

fn extract(trail: &std::path::Path, n: u64, out: &std::path::Path) {
    let o = Command::new(bin())
        .args(["trail", "extract"])
        .arg(trail)
        .args(["--file", &n.to_string(), "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn sftp_and_scp_transfers_are_listed_hashed_and_extractable() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    let d = gw.dir.path();
    let remote = tempfile::tempdir().unwrap();
    let (empty, big, odd) = (
        d.join("empty"),
        d.join("big.bin"),
        d.join("naïve name ü.txt"),
    );
    std::fs::write(&empty, b"").unwrap();
    make_file(&big, 3);
    std::fs::write(
        &odd,
        "a file with spaces and unicode in its name\n".repeat(1000),
    )
    .unwrap();
    let r = remote.path();
    let denied = "/proc/version-nope";
    let batch = d.join("batch");
    std::fs::write(
        &batch,
        format!(
            "put {e} {r}/empty\nput {b} {r}/big.bin\nput \"{o}\" \"{r}/naïve name ü.txt\"\nget {r}/big.bin {d}/big.back\n\
             rename {r}/empty {r}/empty2\nrm {r}/empty2\n-put {b} {denied}\n",
            e = empty.display(),
            b = big.display(),
            o = odd.display(),
            r = r.display(),
            d = d.display(),
        ),
    )
    .unwrap();
    let port = gw.addr.port().to_string();
    let out = gw
        .ssh_cmd("sftp")
        .args(["-P", &port, "-o", "User=alice@db1", "-b"])
        .arg(&batch)
        .arg("127.0.0.1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sftp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sha256_file(&d.join("big.back")), sha256_file(&big));

    let trail = gw.sealed_trail_with("session-subsystem:sftp");
    let t = trail_files(&trail);
    let list = t["files"].as_array().unwrap();
    let by = |path: String, dir: &str| {
        list.iter()
            .find(|f| f["path"] == path && f["direction"] == dir)
            .unwrap_or_else(|| panic!("{path} {dir} in {t:#}"))
            .clone()
    };
    let e = by(format!("{}/empty", r.display()), "upload");
    assert_eq!(
        (e["bytes"].as_u64(), e["status"].as_str()),
        (Some(0), Some("ok")),
        "{e}"
    );
    assert_eq!(e["sha256"], sha256_file(&empty));
    for (f, dir, local) in [
        (format!("{}/big.bin", r.display()), "upload", &big),
        (format!("{}/naïve name ü.txt", r.display()), "upload", &odd),
        (format!("{}/big.bin", r.display()), "download", &big),
    ] {
        let entry = by(f, dir);
        assert_eq!(entry["status"], "ok", "{entry}");
        assert_eq!(entry["contiguous"], true, "{entry}");
        assert_eq!(
            entry["bytes"].as_u64(),
            Some(std::fs::metadata(local).unwrap().len()),
            "{entry}"
        );
        assert_eq!(entry["sha256"], sha256_file(local), "{entry}");
        let back = d.join(format!("extracted-{}", entry["n"]));
        extract(&trail, entry["n"].as_u64().unwrap(), &back);
        assert_eq!(sha256_file(&back), sha256_file(local), "extract of {entry}");
    }
    let failed = by(denied.to_string(), "upload");
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("denied")
            || failed["error"].as_str().unwrap().contains("no such"),
        "{failed}"
    );
    // The same through the API, for auditors: the list, and a file's content (audited).
    let id = trail_info(&trail)["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, v) = gw.api_json(
        "GET",
        &format!("/api/v1/sessions/{id}/files"),
        "audit-secret",
    );
    assert_eq!(code, 200);
    assert_eq!(v["items"].as_array().unwrap().len(), list.len(), "{v}");
    let up = by(format!("{}/big.bin", r.display()), "upload");
    let (code, body) = gw.api_call(
        "GET",
        &format!("/api/v1/sessions/{id}/files/{}/content", up["n"]),
        Some("audit-secret"),
        None,
    );
    assert_eq!(code, 200);
    let got = d.join("via-api.bin");
    std::fs::write(&got, &body).unwrap();
    assert_eq!(sha256_file(&got), sha256_file(&big));
    let (code, v) = gw.api_json(
        "GET",
        &format!("/api/v1/sessions/{id}/trail_downloads"),
        "admin-secret",
    );
    assert_eq!(code, 200);
    assert!(
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["format"].as_str().unwrap_or("").starts_with("file ")),
        "{v}"
    );
    let (code, _) = gw.api_call(
        "GET",
        &format!("/api/v1/sessions/{id}/files/999/content"),
        Some("audit-secret"),
        None,
    );
    assert_eq!(code, 404);

    let ops = t["operations"].as_array().unwrap();
    assert!(
        ops.iter().any(|o| o["op"] == "rename" && o["ok"] == true),
        "{t:#}"
    );
    assert!(
        ops.iter().any(|o| o["op"] == "remove" && o["ok"] == true),
        "{t:#}"
    );

    // scp in its default (SFTP) mode is an sftp channel too.
    let out = gw
        .ssh_cmd("scp")
        .args(["-P", &port, "-o", "User=alice@db1"])
        .arg(&odd)
        .arg(format!("127.0.0.1:{}/via-scp.txt", r.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = gw
        .sealed_trails_with("session-subsystem:sftp", 2)
        .into_iter()
        .map(|(_, p)| trail_files(&p))
        .find(|t| t["files"].as_array().unwrap().len() == 1)
        .expect("the scp session's trail");
    let f = &t["files"][0];
    assert_eq!(f["path"], format!("{}/via-scp.txt", r.display()));
    assert_eq!(f["sha256"], sha256_file(&odd), "{t:#}");
}

#[test]
fn classic_scp_uploads_downloads_and_directories_are_files_too() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    let d = gw.dir.path();
    let remote = tempfile::tempdir().unwrap();
    let r = remote.path();
    let tree = d.join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    make_file(&tree.join("sub/two.bin"), 2);
    std::fs::write(tree.join("zero"), b"").unwrap();
    let port = gw.addr.port().to_string();
    let scp = |args: &[&str]| {
        let o = gw
            .ssh_cmd("scp")
            .args(["-O", "-P", &port, "-o", "User=alice@db1"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "scp {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    scp(&[
        "-r",
        tree.to_str().unwrap(),
        &format!("127.0.0.1:{}/", r.display()),
    ]);
    scp(&[
        &format!("127.0.0.1:{}/tree/sub/two.bin", r.display()),
        d.join("two.back").to_str().unwrap(),
    ]);
    assert_eq!(
        sha256_file(&d.join("two.back")),
        sha256_file(&tree.join("sub/two.bin"))
    );
    let trails = gw.sealed_trails_with("scp -", 2);
    let all: Vec<Value> = trails.iter().map(|(_, p)| trail_files(p)).collect();
    let every: Vec<&Value> = all
        .iter()
        .flat_map(|t| t["files"].as_array().unwrap().iter())
        .collect();
    let find = |path: String, dir: &str| {
        every
            .iter()
            .find(|f| f["path"] == path && f["direction"] == dir)
            .copied()
            .unwrap_or_else(|| panic!("{path} {dir}: {all:#?}"))
            .clone()
    };
    let up = find(format!("{}/tree/sub/two.bin", r.display()), "upload");
    assert_eq!(
        (up["status"].as_str(), up["sha256"].as_str()),
        (
            Some("ok"),
            Some(sha256_file(&tree.join("sub/two.bin")).as_str())
        ),
        "{up}"
    );
    let zero = find(format!("{}/tree/zero", r.display()), "upload");
    assert_eq!(
        (zero["bytes"].as_u64(), zero["status"].as_str()),
        (Some(0), Some("ok")),
        "{zero}"
    );
    let down = every
        .iter()
        .find(|f| f["direction"] == "download")
        .expect("the download");
    assert_eq!(
        down["sha256"],
        sha256_file(&tree.join("sub/two.bin")),
        "{down}"
    );
    let (path, n) = trails
        .iter()
        .find_map(|(_, p)| {
            trail_files(p)["files"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["direction"] == "download")
                .map(|f| (p.clone(), f["n"].as_u64().unwrap()))
        })
        .unwrap();
    extract(&path, n, &d.join("two.extracted"));
    assert_eq!(
        sha256_file(&d.join("two.extracted")),
        sha256_file(&tree.join("sub/two.bin"))
    );
}

#[test]
fn sessions_are_found_by_file_and_command_and_a_transfer_killed_halfway_is_unclean() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    let d = gw.dir.path();
    let remote = tempfile::tempdir().unwrap();
    let r = remote.path();
    let port = gw.addr.port().to_string();
    // Many files in one session, one of them with a space and a LIKE wildcard in its name.
    let mut batch = String::new();
    for i in 0..30 {
        let name = if i == 7 {
            "many 7 100%_done.txt".to_string()
        } else {
            format!("many-{i}.txt")
        };
        let local = d.join(&name);
        std::fs::write(&local, format!("file {i}\n").repeat(i * 10)).unwrap();
        batch.push_str(&format!(
            "put \"{}\" \"{}/{name}\"\n",
            local.display(),
            r.display()
        ));
    }
    std::fs::write(d.join("batch"), batch).unwrap();
    let sftp = |extra: &[&str]| {
        let mut c = gw.ssh_cmd("sftp");
        c.args(["-P", &port, "-o", "User=alice@db1"])
            .args(extra)
            .arg("-b")
            .arg(d.join("batch"))
            .arg("127.0.0.1");
        c
    };
    let out = sftp(&[]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Indexed after the seal: the record counts the files, and the `file` filter finds them.
    let items = wait_until("the sftp session indexed", 20, || {
        let (items, total) = gw.sessions("file=many-17", ADMIN_SECRET);
        (total == 1 && items[0]["files"] == 30).then_some(items)
    });
    let sftp_id = items[0]["id"].as_str().unwrap().to_string();
    let (found, _) = gw.sessions("file=100%25_done", ADMIN_SECRET);
    assert_eq!(found.len(), 1, "literal % and _ in a file filter");
    assert_eq!(gw.sessions("file=100%25x", ADMIN_SECRET).1, 0);
    assert_eq!(
        gw.sessions("file=many-_7", ADMIN_SECRET).1,
        0,
        "_ is literal"
    );
    // Exec commands: the `command` filter.
    assert!(gw.exec("echo command-marker-42").status.success());
    let hit = wait_until("the exec session listed", 10, || {
        let (items, total) = gw.sessions("command=marker-42&active=false", ADMIN_SECRET);
        (total == 1).then_some(items)
    });
    assert_eq!(hit[0]["channels"][0]["command"], "echo command-marker-42");
    assert_eq!(hit[0]["files"], 0);
    assert_ne!(hit[0]["id"], sftp_id.as_str());

    // A large upload, slowed down, killed halfway by an operator.
    let big = d.join("big-killed.bin");
    make_file(&big, 48);
    std::fs::write(
        d.join("batch"),
        format!("put {} {}/big-killed.bin\n", big.display(), r.display()),
    )
    .unwrap();
    let mut child = sftp(&["-l", "16000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let id = wait_until("the slow upload is live", 20, || {
        let (items, _) = gw.sessions("active=true", ADMIN_SECRET);
        items.first().map(|s| s["id"].as_str().unwrap().to_string())
    });
    // Listed on demand while it is live: the file is there, partly written, still open.
    let partial = wait_until("the live upload listed", 20, || {
        let (code, v) = gw.api_json("GET", &format!("/api/v1/sessions/{id}/files"), AUDIT_SECRET);
        // 404 until the session has logged in and opened its trail.
        assert!(code == 200 || code == 404, "{v}");
        let f = v["items"][0].clone();
        (f["bytes"].as_u64().unwrap_or(0) > 1 << 20).then_some(f)
    });
    assert_eq!(partial["path"], format!("{}/big-killed.bin", r.display()));
    assert_eq!(
        partial["status"], "unclean_close",
        "open while live: {partial}"
    );
    let (code, _) = gw.api_call(
        "POST",
        &format!("/api/v1/sessions/{id}/kill"),
        Some(ADMIN_SECRET),
        Some(r#"{"reason": "halfway"}"#),
    );
    assert_eq!(code, 200);
    assert!(!child.wait().unwrap().success(), "the killed sftp fails");
    let f = wait_until("the killed session indexed", 20, || {
        let (_, v) = gw.api_json("GET", &format!("/api/v1/sessions/{id}"), AUDIT_SECRET);
        (v["files"] == 1).then_some(())?;
        let (_, v) = gw.api_json("GET", &format!("/api/v1/sessions/{id}/files"), AUDIT_SECRET);
        Some(v["items"][0].clone())
    });
    assert_eq!(f["status"], "unclean_close", "{f}");
    let total = std::fs::metadata(&big).unwrap().len();
    let bytes = f["bytes"].as_u64().unwrap();
    assert!(bytes > 1 << 20 && bytes < total, "{f}");
    // What crossed is extractable and is exactly the original's first bytes.
    let (code, body) = gw.api_call(
        "GET",
        &format!("/api/v1/sessions/{id}/files/0/content"),
        Some(AUDIT_SECRET),
        None,
    );
    assert_eq!(code, 200);
    let original = std::fs::read(&big).unwrap();
    let end = f["ranges"][0][1].as_u64().unwrap() as usize;
    assert_eq!(f["ranges"][0][0], 0, "{f}");
    assert!(body.len() >= end);
    assert!(
        body[..end] == original[..end],
        "the part that crossed is exact"
    );
    // Its hash is that of what crossed (the part), which is what an extract gives.
    use sha2::Digest;
    assert_eq!(
        f["sha256"],
        hex::encode(sha2::Sha256::digest(&original[..end])),
        "{f}"
    );
}
