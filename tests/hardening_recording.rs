//! Recording correctness under abuse and bad days: clients that close both ways at once, and a
//! full disk, in both `on_failure` modes. Real sshd, the real binary, asyncssh and OpenSSH.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::peers::peer;
use common::*;

const AUDITOR: &str = "audit-secret";

#[test]
fn eof_then_close_at_once_loses_no_record_and_reports_no_failure() {
    const N: usize = 200;
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    let out = peer("eof_close.py")
        .args([
            &gw.addr.ip().to_string(),
            &gw.addr.port().to_string(),
            "alice@db1",
            gw.alice_key.to_str().unwrap(),
            &N.to_string(),
            "25",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every session ends, none of them with a failed recording.
    let ended = wait_until("every session to end", 60, || {
        let (_, active) = gw.sessions("active=true", AUDITOR);
        let (items, total) = gw.sessions("active=false&verdict=accept", AUDITOR);
        (active == 0 && total as usize == N).then_some(items)
    });
    let m = gw.metrics_text(AUDITOR);
    assert_eq!(
        metric_value(&m, "trailgate_recording_failures_total"),
        0.0,
        "{m}"
    );
    assert!(!gw.log().contains("recording failed"), "{}", gw.log());
    let mut payloads = BTreeSet::new();
    for s in &ended {
        assert_eq!(s["trail"]["integrity"], "sealed", "{s:#}");
        assert!(s["trail"]["error"].is_null(), "{s:#}");
        let ch = &s["channels"][0];
        assert_eq!(ch["command"], "cat", "{s:#}");
        // Every byte the gateway counted as relayed is in the trail, both ways, and the
        // channel's close is recorded.
        let trail = gw.trail_of(s);
        let (code, v) = trail_verify(&trail);
        assert_eq!(code, 0, "{v}");
        let info = trail_info(&trail);
        let tch = find_channel(&info, |c| c["command"] == "cat");
        assert!(
            tch["end_time_us"].is_u64(),
            "channel close recorded: {info:#}"
        );
        assert_eq!(
            tch["bytes_client_to_server"], ch["bytes_client_to_server"],
            "{info:#}\n{s:#}"
        );
        assert_eq!(
            tch["bytes_server_to_client"], ch["bytes_server_to_client"],
            "{info:#}\n{s:#}"
        );
        let sent = trail_cat(&trail, tch["id"].as_u64().unwrap(), Some("c2s"));
        let sent = String::from_utf8(sent).unwrap();
        assert!(
            sent.starts_with("session-") && sent.ends_with("-payload\n"),
            "{sent:?}"
        );
        payloads.insert(sent);
    }
    assert_eq!(payloads.len(), N, "each session recorded its own payload");
}

/// A small tmpfs as the gateway's data directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .expect("mount (the disk-full tests run as root, as CI does)");
        assert!(
            st.success(),
            "mount tmpfs failed: the disk-full tests need root"
        );
        Tmpfs { dir }
    }

    /// Fills the file system but for `keep` bytes.
    fn fill(&self, keep: u64) {
        let filler = self.dir.path().join("filler");
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=64k"])
            .arg(format!("of={}", filler.display()))
            .output();
        // dd stopped at ENOSPC; give back what was asked.
        let len = std::fs::metadata(&filler).unwrap().len();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&filler)
            .unwrap();
        f.set_len(len.saturating_sub(keep)).unwrap();
    }

    fn free(&self) {
        std::fs::remove_file(self.dir.path().join("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_disk_leaves_an_honest_record_of_every_session_in_both_modes() {
    let sshd = Sshd::start().unwrap();
    for on_failure in ["terminate", "continue"] {
        let disk = Tmpfs::mount("16m");
        let data = disk.dir.path().display().to_string();
        let gw = Gateway::start_custom(
            &sshd,
            FULL_POLICY,
            |text| {
                text.replace("data_dir = \"data\"", &format!("data_dir = \"{data}\""))
                    .replace(
                        "fsync = false\n",
                        &format!("fsync = false\non_failure = \"{on_failure}\"\n"),
                    )
            },
            None,
        )
        .unwrap();
        let before = gw.exec("echo before-the-outage");
        assert!(before.status.success());
        let (code, _) = gw.api_call("GET", "/healthz", None, None);
        assert_eq!(code, 200);

        disk.fill(0);
        // The probe runs at most once a second: the outage shows within a few.
        let body = wait_until("/healthz to report the outage", 10, || {
            let (code, body) = gw.api_call("GET", "/healthz", None, None);
            (code == 503).then(|| String::from_utf8_lossy(&body).to_string())
        });
        assert!(body.contains("recording unavailable"), "{body}");
        assert!(
            !body.contains(&data),
            "no server path in an unauthenticated answer: {body}"
        );

        // A session during the outage: refused (terminate) or run unrecorded (continue).
        let during = gw.exec("echo during-the-outage");
        let err = String::from_utf8_lossy(&during.stderr).to_string();
        assert!(
            !err.contains(&data),
            "the client is not shown server paths: {err}"
        );
        match on_failure {
            "terminate" => {
                assert!(!during.status.success());
                assert!(err.contains("recording unavailable"), "{err}");
            }
            _ => {
                assert!(during.status.success(), "{err}");
                assert_eq!(
                    String::from_utf8_lossy(&during.stdout),
                    "during-the-outage\n"
                );
            }
        }

        // Space comes back: the catalog catches up without a restart, and health recovers.
        disk.free();
        wait_until("/healthz to recover", 30, || {
            (gw.api_call("GET", "/healthz", None, None).0 == 200).then_some(())
        });
        let all = wait_until("both sessions in the catalog, ended", 30, || {
            let (items, _) = gw.sessions("", AUDITOR);
            (items.len() == 2 && items.iter().all(|s| s["active"] == false)).then_some(items)
        });
        // Newest first.
        let (outage, ok) = (&all[0], &all[1]);
        assert_eq!(ok["trail"]["integrity"], "sealed", "{ok:#}");
        assert_eq!(outage["trail"]["integrity"], "failed", "{outage:#}");
        assert!(
            outage["trail"]["error"]
                .as_str()
                .unwrap_or("")
                .contains("space"),
            "the record says why: {outage:#}"
        );
        let data = gw.data_dir().display().to_string();
        assert!(
            !outage.to_string().contains(&data),
            "no server path in the record: {outage:#}"
        );
        match on_failure {
            "terminate" => {
                assert_eq!(outage["verdict"], "fail", "{outage:#}");
                assert_eq!(outage["end_reason"], "recording unavailable", "{outage:#}");
            }
            _ => {
                assert_eq!(outage["verdict"], "accept", "{outage:#}");
                assert_eq!(outage["status"], "disconnected", "{outage:#}");
            }
        }
        let m = gw.metrics_text(AUDITOR);
        assert!(
            metric_value(&m, "trailgate_recording_failures_total") >= 1.0,
            "{m}"
        );
        drop(gw);
    }
}
