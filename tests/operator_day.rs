//! An operator's first day: sessions through the CLI (no curl), retention, the free-space
//! floor, and the shipped systemd unit and configurations. Real sshd, real ssh clients.

mod common;

use std::process::{Command, Stdio};

use common::*;

#[test]
fn retention_deletes_old_trails_then_records_but_never_an_active_sessions() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start_with(
        &sshd,
        "\n[retention]\ntrails = \"2s\"\nmetadata = \"5s\"\ninterval = \"300ms\"\n",
        FULL_POLICY,
    )
    .unwrap();
    const ADMIN: &str = "admin-secret";
    // A long session, active throughout.
    let mut long = gw
        .ssh()
        .arg(gw.dest())
        .arg("echo long-one; sleep 9")
        .spawn()
        .unwrap();
    let o = gw.exec("echo short-one");
    assert_eq!(o.stdout, b"short-one\n");
    let short = wait_until("the short session ended", 10, || {
        let (items, _) = gw.sessions("active=false", ADMIN);
        items.into_iter().next()
    });
    let id = short["id"].as_str().unwrap().to_string();
    let path = gw.trail_of(&short).display().to_string();
    assert!(std::path::Path::new(&path).exists());
    let marked = wait_until("the short trail deleted", 10, || {
        let (_, v) = gw.api_json("GET", &format!("/api/v1/sessions/{id}"), ADMIN);
        (v["trail"]["integrity"] == "deleted").then_some(v)
    });
    assert!(!std::path::Path::new(&path).exists(), "{marked}");
    let (active, _) = gw.sessions("active=true", ADMIN);
    assert_eq!(active.len(), 1);
    let long_trail = gw.trail_of(&active[0]).display().to_string();
    assert!(
        std::path::Path::new(&long_trail).exists(),
        "the active session's trail stays"
    );
    wait_until("the short record deleted", 15, || {
        (gw.api_json("GET", &format!("/api/v1/sessions/{id}"), ADMIN)
            .0
            == 404)
            .then_some(())
    });
    let m = gw.metrics_text(ADMIN);
    assert!(
        metric_value(&m, "trailgate_retention_deleted_total{what=\"trail\"}") >= 1.0,
        "{m}"
    );
    assert!(
        metric_value(&m, "trailgate_retention_deleted_total{what=\"record\"}") >= 1.0,
        "{m}"
    );
    assert!(long.wait().unwrap().success());
    assert!(gw.log().contains("retention: trail deleted"));
}

#[test]
fn operators_list_show_download_and_kill_sessions_without_curl() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    assert_eq!(gw.exec("echo via-cli").stdout, b"via-cli\n");
    let url = format!("http://{}", gw.api);
    let cli = |args: &[&str], token: &str| {
        let o = Command::new(bin())
            .arg("sessions")
            .args(args)
            .env("TRAILGATE_URL", &url)
            .env("TRAILGATE_TOKEN", token)
            .current_dir(gw.dir.path())
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let id = wait_until("the session listed", 20, || {
        let (code, out, _) = cli(&["list", "--active", "false", "--json"], "audit-secret");
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        (code == Some(0) && v["meta"]["total"] == 1)
            .then(|| v["items"][0]["id"].as_str().unwrap().to_string())
    });
    let (code, out, err) = cli(&["list"], "audit-secret");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&id)
            && out.contains("alice")
            && out.contains("db1")
            && out.contains("1 of 1 sessions"),
        "{out}"
    );
    let (code, out, _) = cli(&["show", &id], "audit-secret");
    assert_eq!(code, Some(0));
    assert!(out.contains("session-exec echo via-cli"), "{out}");
    let (code, out, err) = cli(&["download", &id], "audit-secret");
    assert_eq!(code, Some(0), "{err}");
    let file = gw.dir.path().join(format!("{id}.trail"));
    assert!(out.contains(&format!("{id}.trail")), "{out}");
    assert_eq!(trail_verify(&file).0, 0);

    // Kill: an auditor is refused with the API's reason; an admin ends the session.
    let long = gw
        .ssh()
        .arg(gw.dest())
        .arg("sleep 30")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let live = wait_until("the live session", 20, || {
        let (items, _) = gw.sessions("active=true", "admin-secret");
        items
            .into_iter()
            .find(|s| s["verdict"] == "accept")
            .map(|s| s["id"].as_str().unwrap().to_string())
    });
    let (code, _, err) = cli(&["kill", &live], "audit-secret");
    assert_eq!(code, Some(1));
    assert!(err.contains("403") && err.contains("role"), "{err}");
    let (code, out, err) = cli(&["kill", &live, "--reason", "maintenance"], "admin-secret");
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("maintenance"), "{out}");
    let o = long.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&o.stderr).contains("maintenance"));
    // A wrong token says so.
    let (code, _, err) = cli(&["list"], "wrong");
    assert_eq!(code, Some(1));
    assert!(err.contains("401"), "{err}");
}

#[test]
fn below_the_free_space_floor_sessions_are_refused_and_service_resumes_when_it_clears() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start_custom(
        &sshd,
        FULL_POLICY,
        |t| {
            t.replace(
                "[recording]\n",
                "[recording]\nmin_free_space = \"1000000TB\"\n",
            )
        },
        None,
    )
    .unwrap();
    let o = gw.exec("echo never");
    assert_eq!(o.status.code(), Some(255));
    assert!(o.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("recording unavailable"),
        "{o:?}"
    );
    let (items, _) = gw.sessions("verdict=fail", "admin-secret");
    assert_eq!(items.len(), 1);
    assert!(
        items[0]["trail"]["error"]
            .as_str()
            .unwrap()
            .contains("min_free_space"),
        "{}",
        items[0]
    );
    let (code, body) = gw.api_call("GET", "/healthz", None, None);
    assert_eq!(code, 503);
    assert!(String::from_utf8_lossy(&body).contains("min_free_space"));
    // The floor is met again (here: lowered by a reload): new sessions are recorded at once.
    let text = std::fs::read_to_string(&gw.config).unwrap();
    std::fs::write(
        &gw.config,
        text.replace(
            "min_free_space = \"1000000TB\"\n",
            "min_free_space = \"1MiB\"\n",
        ),
    )
    .unwrap();
    assert!(
        Command::new("kill")
            .args(["-HUP", &gw.pid().to_string()])
            .status()
            .unwrap()
            .success()
    );
    wait_until("service resumed", 20, || {
        (gw.exec("echo again").stdout == b"again\n").then_some(())
    });
    wait_until("healthy again", 10, || {
        (gw.api_call("GET", "/healthz", None, None).0 == 200).then_some(())
    });
}

#[test]
fn the_shipped_unit_and_configurations_check_out() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for cfg in [
        "deploy/examples/trailgate.toml",
        "deploy/examples/container.toml",
    ] {
        let o = Command::new(bin())
            .args(["check-config", "--config"])
            .arg(root.join(cfg))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{cfg}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let container = std::fs::read_to_string(root.join("deploy/examples/container.toml")).unwrap();
    assert!(container.contains("data_dir = \"/var/lib/trailgate\""));
    let file = std::fs::read_to_string(root.join("deploy/Containerfile")).unwrap();
    assert!(file.contains("COPY deploy/examples/container.toml /etc/trailgate/trailgate.toml"));
    assert!(file.contains("VOLUME [\"/var/lib/trailgate\"]"));
    // systemd's own check of the unit, with the binary where the unit expects it.
    let Ok(sa) = which("systemd-analyze") else {
        panic!("systemd-analyze missing: run scripts/install-test-deps.sh");
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(root.join("deploy/trailgate.service"))
        .unwrap()
        .replace("/usr/local/bin/trailgate", &bin().display().to_string());
    let path = dir.path().join("trailgate.service");
    std::fs::write(&path, unit).unwrap();
    let o = Command::new(sa).arg("verify").arg(&path).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.trim().is_empty(), "{err}");
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}
