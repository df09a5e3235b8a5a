//! Files in trails: real OpenSSH `sftp` and `scp` (SFTP mode, OpenSSH's default) through the
//! gateway; `trailgate trail files` lists every file with its direction, size, SHA-256 and
//! status, and `trail extract` gives back exactly the bytes that crossed.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

fn files(trail: &std::path::Path) -> Value {
    let o = Command::new(bin())
        .args(["trail", "files", "--json"])
        .arg(trail)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

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

    let trail = gw.sealed_trail_with("subsystem sftp");
    let t = files(&trail);
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
        .sealed_trails_with("subsystem sftp", 2)
        .into_iter()
        .map(|(_, p)| files(&p))
        .find(|t| t["files"].as_array().unwrap().len() == 1)
        .expect("the scp session's trail");
    let f = &t["files"][0];
    assert_eq!(f["path"], format!("{}/via-scp.txt", r.display()));
    assert_eq!(f["sha256"], sha256_file(&odd), "{t:#}");
}
