//! The control API end to end: a running gateway, a real sshd target, real ssh clients, curl.

mod common;

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Instant;

use common::*;
use serde_json::Value;

const ADMIN: &str = "admin-secret";
const AUDITOR: &str = "audit-secret";

fn wait_for<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait_until(what, 30, f)
}

/// An interactive session kept open: `ssh -tt` running a shell we type into.
struct Interactive {
    child: Child,
    stdin: ChildStdin,
    out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Interactive {
    fn start(gw: &Gateway) -> Interactive {
        let mut child = gw
            .ssh()
            .arg("-tt")
            .arg(gw.dest())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let o = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                o.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Interactive { child, stdin, out }
    }
    fn type_line(&mut self, s: &str) {
        self.stdin.write_all(s.as_bytes()).unwrap();
        self.stdin.write_all(b"\n").unwrap();
    }
    fn wait_output(&self, needle: &str) {
        wait_for(needle, || {
            String::from_utf8_lossy(&self.out.lock().unwrap())
                .contains(needle)
                .then_some(())
        });
    }
}

fn active_session(gw: &Gateway) -> Value {
    wait_for("an active session in the API", || {
        let (code, v) = gw.api_json("GET", "/api/v1/sessions?active=true", AUDITOR);
        assert_eq!(code, 200);
        v["items"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["verdict"] == "accept").cloned())
    })
}

#[test]
fn sessions_are_listed_and_filtered_while_active_and_after_they_end() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    // A failed attempt is a session record too.
    let bad = gw
        .ssh()
        .arg(format!("alice@nope@{}", gw.addr.ip()))
        .arg("true")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(255));

    let mut s = Interactive::start(&gw);
    s.type_line("echo api-visible");
    s.wait_output("api-visible");
    let live = active_session(&gw);
    assert_eq!(live["active"], true);
    assert_eq!(live["status"], "connected");
    assert_eq!(live["user"]["name"], "alice");
    assert_eq!(live["user"]["server_username"], whoami());
    assert_eq!(live["target"]["name"], "db1");
    assert_eq!(live["protocol"], "ssh");
    assert_eq!(live["auth_method"], "publickey");
    assert!(live["end_time"].is_null());
    assert_eq!(live["trail"]["integrity"], "recording");
    assert_eq!(live["node_id"], "test-node");
    let id = live["id"].as_str().unwrap().to_string();
    let (_, detail) = gw.api_json("GET", &format!("/api/v1/sessions/{id}"), AUDITOR);
    assert_eq!(detail["id"], id.as_str());
    let (_, chans) = gw.api_json("GET", &format!("/api/v1/sessions/{id}/channels"), AUDITOR);
    assert_eq!(chans["items"][0]["type"], "session-shell");

    for (q, expect) in [
        ("user=alice", true),
        ("user=bob", false),
        ("target=db1&protocol=ssh", true),
        ("verdict=accept", true),
        ("verdict=deny", false),
        ("since=2000-01-01T00:00:00Z", true),
        ("until=2000-01-01T00:00:00Z", false),
    ] {
        let (code, v) = gw.api_json("GET", &format!("/api/v1/sessions?active=true&{q}"), AUDITOR);
        assert_eq!(code, 200, "{q}");
        let found = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == id.as_str());
        assert_eq!(found, expect, "filter {q}: {v}");
    }
    let (code, v) = gw.api_json("GET", "/api/v1/sessions?verdict=deny", AUDITOR);
    assert_eq!(code, 200);
    assert_eq!(v["items"][0]["status"], "rejected");
    assert_eq!(v["items"][0]["active"], false);
    let (code, v) = gw.api_json("GET", "/api/v1/sessions?verdict=maybe", AUDITOR);
    assert_eq!(code, 400);
    assert_eq!(v["error"]["code"], "bad_request");

    s.type_line("exit");
    s.child.wait().unwrap();
    let ended = wait_for("the session to end in the catalog", || {
        let (_, v) = gw.api_json("GET", &format!("/api/v1/sessions/{id}"), AUDITOR);
        (v["active"] == false && v["trail"]["integrity"] == "sealed").then_some(v)
    });
    assert_eq!(ended["status"], "disconnected");
    assert_eq!(ended["end_reason"], "client disconnected");
    assert!(ended["end_time"].is_string());
    assert!(ended["bytes_server_to_client"].as_u64().unwrap() > 0);
    let (_, page) = gw.api_json("GET", "/api/v1/sessions?limit=1", AUDITOR);
    assert_eq!(page["meta"]["total"], 2);
    assert_eq!(page["meta"]["limit"], 1);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert!(page["meta"]["next"].as_str().unwrap().contains("offset=1"));
    assert!(page["meta"]["previous"].is_null());
}

#[test]
fn role_matrix_for_every_endpoint() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    let out = gw.exec("echo for-the-matrix");
    assert!(out.status.success());
    let id = wait_for("a sealed session", || {
        let (_, v) = gw.api_json("GET", "/api/v1/sessions", ADMIN);
        v["items"]
            .as_array()?
            .iter()
            .find(|s| s["trail"]["integrity"] == "sealed")
            .map(|s| s["id"].as_str().unwrap().to_string())
    });
    let endpoints: Vec<(&str, String, u16, u16)> = vec![
        // method, path, auditor status, admin status
        ("GET", "/api/v1/sessions".into(), 200, 200),
        ("GET", format!("/api/v1/sessions/{id}"), 200, 200),
        ("GET", format!("/api/v1/sessions/{id}/channels"), 200, 200),
        ("GET", format!("/api/v1/sessions/{id}/trail"), 200, 200),
        (
            "GET",
            format!("/api/v1/sessions/{id}/trail?format=asciicast"),
            200,
            200,
        ),
        (
            "GET",
            format!("/api/v1/sessions/{id}/trail_downloads"),
            200,
            200,
        ),
        ("GET", "/api/v1/openapi.json".into(), 200, 200),
        ("GET", "/metrics".into(), 200, 200),
        ("POST", format!("/api/v1/sessions/{id}/kill"), 403, 409),
        ("POST", "/api/v1/sessions/nope/kill".into(), 403, 404),
        ("GET", "/api/v1/sessions/nope".into(), 404, 404),
    ];
    for (m, path, auditor, admin) in &endpoints {
        for (token, want) in [
            (None, 401),
            (Some("wrong-token"), 401),
            (Some(AUDITOR), *auditor),
            (Some(ADMIN), *admin),
        ] {
            let (code, body) = gw.api_call(m, path, token, None);
            assert_eq!(
                code,
                want,
                "{m} {path} with {token:?}: {}",
                String::from_utf8_lossy(&body)
            );
            if code >= 400 {
                let v: Value = serde_json::from_slice(&body)
                    .unwrap_or_else(|_| panic!("error body is JSON: {m} {path}"));
                assert!(
                    v["error"]["code"].is_string() && v["error"]["message"].is_string(),
                    "{v}"
                );
                assert!(
                    !String::from_utf8_lossy(&body).contains("/tmp/"),
                    "no internal paths in errors"
                );
            }
        }
    }
    let (code, body) = gw.api_call("GET", "/healthz", None, None);
    assert_eq!((code, body), (200, br#"{"status":"ok"}"#.to_vec()));
    // The OpenAPI document describes the endpoints it serves.
    let (_, doc) = gw.api_json("GET", "/api/v1/openapi.json", AUDITOR);
    for p in [
        "/api/v1/sessions",
        "/api/v1/sessions/{id}",
        "/api/v1/sessions/{id}/kill",
        "/api/v1/sessions/{id}/trail",
        "/api/v1/sessions/{id}/trail_downloads",
        "/api/v1/sessions/{id}/channels",
    ] {
        assert!(doc["paths"][p].is_object(), "openapi lacks {p}");
    }
    assert!(doc["components"]["schemas"]["SessionRecord"]["properties"]["verdict"].is_object());
}

#[test]
fn kill_an_interactive_session_and_a_bulk_transfer() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    let mut s = Interactive::start(&gw);
    s.type_line("echo about-to-be-killed");
    s.wait_output("about-to-be-killed");
    let id = active_session(&gw)["id"].as_str().unwrap().to_string();
    let t0 = Instant::now();
    let (code, body) = gw.api_call(
        "POST",
        &format!("/api/v1/sessions/{id}/kill"),
        Some(ADMIN),
        Some(r#"{"reason":"policy violation"}"#),
    );
    let kill_ms = t0.elapsed().as_millis();
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let rec: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(rec["status"], "terminated");
    assert_eq!(rec["active"], false);
    assert_eq!(
        rec["end_reason"],
        "terminated by api token admin-tok: policy violation"
    );
    let status = s.child.wait().unwrap();
    assert_eq!(status.code(), Some(255));
    let mut err = String::new();
    s.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains("policy violation"),
        "the client is told why: {err}"
    );
    eprintln!("kill of an interactive session answered in {kill_ms} ms");
    let trail = gw.trail_of(&rec);
    assert_eq!(rec["trail"]["integrity"], "sealed");
    assert_eq!(trail_verify(&trail).0, 0);
    assert!(String::from_utf8_lossy(&trail_cat(&trail, 1, None)).contains("about-to-be-killed"));
    // Killing it again: 409.
    let (code, _) = gw.api_call(
        "POST",
        &format!("/api/v1/sessions/{id}/kill"),
        Some(ADMIN),
        None,
    );
    assert_eq!(code, 409);

    // A 1 GiB download in progress.
    let mut bulk = gw
        .ssh()
        .arg(gw.dest())
        .arg("head -c 1G /dev/urandom")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut bulk_out = bulk.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut n = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(k) = bulk_out.read(&mut buf) {
            if k == 0 {
                break;
            }
            n += k as u64;
        }
        n
    });
    let bid = wait_for("the transfer to be under way", || {
        let (_, v) = gw.api_json("GET", "/api/v1/sessions?active=true", AUDITOR);
        v["items"]
            .as_array()?
            .iter()
            .find(|s| s["bytes_server_to_client"].as_u64().unwrap_or(0) > 8 << 20)
            .map(|s| s["id"].as_str().unwrap().to_string())
    });
    let (code, body) = gw.api_call(
        "POST",
        &format!("/api/v1/sessions/{bid}/kill"),
        Some(ADMIN),
        None,
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let status = bulk.wait().unwrap();
    let got = reader.join().unwrap();
    assert_ne!(status.code(), Some(0));
    assert!(got < 1 << 30, "transfer was cut short ({got} bytes)");
    let mut err = String::new();
    bulk.stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("terminated by api token admin-tok"), "{err}");
    let (_, rec) = gw.api_json("GET", &format!("/api/v1/sessions/{bid}"), AUDITOR);
    let path = gw.trail_of(&rec).display().to_string();
    let (code, report) = trail_verify(std::path::Path::new(&path));
    assert_eq!(code, 0, "killed transfer's trail is sealed: {report}");
}

#[test]
fn trails_download_raw_with_ranges_as_asciicast_and_every_download_is_audited() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    let mut s = Interactive::start(&gw);
    s.type_line("echo cast-me");
    s.wait_output("cast-me");
    let id = active_session(&gw)["id"].as_str().unwrap().to_string();
    s.type_line("exit");
    s.child.wait().unwrap();
    let rec = wait_for("catalog", || {
        let v = gw
            .api_json("GET", &format!("/api/v1/sessions/{id}"), AUDITOR)
            .1;
        (v["trail"]["integrity"] == "sealed").then_some(v)
    });
    let trail = gw.trail_of(&rec);
    let (code, raw) = gw.api_call(
        "GET",
        &format!("/api/v1/sessions/{id}/trail"),
        Some(AUDITOR),
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(
        raw,
        std::fs::read(&trail).unwrap(),
        "the download is the trail file"
    );
    let out = Command::new("curl")
        .args([
            "-sS",
            "-H",
            &format!("Authorization: Bearer {AUDITOR}"),
            "-H",
            "Range: bytes=0-99",
            "-w",
            "\n%{http_code}",
        ])
        .arg(format!("http://{}/api/v1/sessions/{id}/trail", gw.api))
        .output()
        .unwrap();
    let body = out.stdout;
    assert!(body.ends_with(b"\n206"));
    assert_eq!(&body[..100], &raw[..100]);
    let (code, cast) = gw.api_call(
        "GET",
        &format!("/api/v1/sessions/{id}/trail?format=asciicast"),
        Some(ADMIN),
        None,
    );
    assert_eq!(code, 200);
    let text = String::from_utf8(cast).unwrap();
    let header: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert!(text.contains("cast-me"));
    let (_, d) = gw.api_json(
        "GET",
        &format!("/api/v1/sessions/{id}/trail_downloads"),
        AUDITOR,
    );
    let items = d["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{d}");
    assert_eq!(items[0]["token"], "audit-tok");
    assert_eq!(items[0]["format"], "raw");
    assert_eq!(items[1]["range"], "bytes=0-99");
    assert_eq!(items[2]["token"], "admin-tok");
    assert!(
        items[2]["format"]
            .as_str()
            .unwrap()
            .starts_with("asciicast")
    );
}

/// A download of a live session's trail ends with what just happened: the gateway flushes the
/// recorder first. With a one-minute flush interval the output would otherwise not be in the
/// file for up to a minute; here it is in the first download, without waiting.
#[test]
fn a_live_download_includes_what_just_happened() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start_custom(
        &sshd,
        FULL_POLICY,
        |text| text.replace("flush_interval = \"100ms\"", "flush_interval = \"60s\""),
        None,
    )
    .unwrap();
    assert!(
        std::fs::read_to_string(&gw.config)
            .unwrap()
            .contains("flush_interval = \"60s\"")
    );
    let mut s = Interactive::start(&gw);
    s.type_line("echo just-$((40+2))");
    s.wait_output("just-42");
    let id = active_session(&gw)["id"].as_str().unwrap().to_string();
    let (code, raw) = gw.api_call(
        "GET",
        &format!("/api/v1/sessions/{id}/trail"),
        Some(AUDITOR),
        None,
    );
    assert_eq!(code, 200);
    let file = gw.dir.path().join("live.trail");
    std::fs::write(&file, &raw).unwrap();
    assert!(
        String::from_utf8_lossy(&trail_cat(&file, 1, Some("s2c"))).contains("just-42"),
        "the live download ends before the output"
    );
    assert_eq!(
        trail_verify(&file).0,
        3,
        "a live trail is intact but incomplete"
    );
    s.type_line("exit");
    s.child.wait().unwrap();
}

#[test]
fn following_a_live_session_shows_its_output_as_it_happens() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    let mut s = Interactive::start(&gw);
    s.type_line("echo started");
    s.wait_output("started");
    let id = active_session(&gw)["id"].as_str().unwrap().to_string();
    let file = gw.dir.path().join("followed.trail");
    let mut curl = Command::new("curl")
        .args([
            "-sS",
            "-N",
            "-H",
            &format!("Authorization: Bearer {AUDITOR}"),
            "-o",
        ])
        .arg(&file)
        .arg(format!(
            "http://{}/api/v1/sessions/{id}/trail?follow=true",
            gw.api
        ))
        .spawn()
        .unwrap();
    s.type_line("echo live-$((20+22))");
    s.wait_output("live-42");
    // The partial download is itself a readable (unsealed) trail: the output shows up in it.
    wait_for("the followed stream to carry the output", || {
        let out = Command::new(bin())
            .args(["trail", "cat"])
            .arg(&file)
            .args(["--channel", "1", "--direction", "s2c"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .contains("live-42")
            .then_some(())
    });
    assert!(
        curl.try_wait().unwrap().is_none(),
        "the follow stream stays open while the session is active"
    );
    s.type_line("exit");
    s.child.wait().unwrap();
    let status = curl.wait().unwrap();
    assert!(status.success(), "the stream ends when the session ends");
    assert_eq!(
        trail_verify(&file).0,
        0,
        "the followed copy is the complete, sealed trail"
    );
}

#[test]
fn a_restart_after_kill_9_closes_open_sessions_and_recovers_their_trails() {
    let sshd = Sshd::start().unwrap();
    let mut gw = Gateway::start(&sshd).unwrap();
    let mut s = Interactive::start(&gw);
    s.type_line("echo before-crash");
    s.wait_output("before-crash");
    let live = active_session(&gw);
    let id = live["id"].as_str().unwrap().to_string();
    let path = gw.trail_of(&live);
    // Wait until the output is flushed to the trail (flush interval 100 ms in tests).
    wait_for("flushed output", || {
        let out = Command::new(bin())
            .args(["trail", "cat"])
            .arg(&path)
            .args(["--channel", "1"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .contains("before-crash")
            .then_some(())
    });
    gw.crash_and_restart().unwrap();
    let _ = s.child.wait();
    let (code, rec) = gw.api_json("GET", &format!("/api/v1/sessions/{id}"), AUDITOR);
    assert_eq!(code, 200);
    assert_eq!(rec["active"], false);
    assert_eq!(rec["end_reason"], "gateway restarted");
    assert_eq!(rec["trail"]["integrity"], "incomplete");
    let (_, v) = gw.api_json("GET", "/api/v1/sessions?active=true", AUDITOR);
    assert_eq!(
        v["meta"]["total"], 0,
        "no session shows as active without a connection"
    );
    let (code, report) = trail_verify(&path);
    assert_eq!(
        code, 3,
        "recovered trail is intact but incomplete: {report}"
    );
    let shown = String::from_utf8_lossy(&trail_cat(&path, 1, None)).into_owned();
    assert!(shown.contains("before-crash"), "nothing flushed was lost");
    // The gateway works after the restart.
    assert_eq!(
        String::from_utf8_lossy(&gw.exec("echo after-restart").stdout),
        "after-restart\n"
    );
}

#[test]
fn the_api_serves_https_when_given_a_certificate() {
    let sshd = Sshd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sh = |args: &str| {
        let st = Command::new("sh")
            .arg("-c")
            .arg(args)
            .current_dir(d)
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "{args}");
    };
    sh(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign",
    );
    sh(
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost -keyout srv.key -out srv.csr",
    );
    std::fs::write(d.join("ext"), "basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n").unwrap();
    sh(
        "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out srv.pem -extfile ext",
    );
    let text = gateway_config(d, &sshd, "", FULL_POLICY).unwrap().replace(
        "[api]\nlisten = \"127.0.0.1:0\"",
        &format!(
            "[api]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\
             [api.client_tls_security_settings]\nminimum_tls_version = \"TLSv1_3\"\n",
            d.join("srv.pem").display(),
            d.join("srv.key").display()
        ),
    );
    let config = d.join("trailgate.toml");
    std::fs::write(&config, text).unwrap();
    let gw = Gateway::run(dir, config, String::new()).unwrap();
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(gw.dir.path().join("ca.pem"))
        .args(["-H", &format!("Authorization: Bearer {AUDITOR}")])
        .arg(format!(
            "https://127.0.0.1:{}/api/v1/sessions",
            gw.api.port()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["items"].is_array());
    // The API's TLS settings: a TLS 1.2 client is refused in the handshake.
    let out = Command::new("curl")
        .args(["-sS", "--tls-max", "1.2", "--cacert"])
        .arg(gw.dir.path().join("ca.pem"))
        .arg(format!("https://127.0.0.1:{}/healthz", gw.api.port()))
        .output()
        .unwrap();
    assert!(!out.status.success(), "TLS 1.2 accepted");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("alert"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Plain HTTP to the HTTPS port is refused.
    let (code, _) = gw.api_call("GET", "/healthz", None, None);
    assert_ne!(code, 200);
}

/// The value of one exposition line (`name{labels} value`), 0 when the series is absent.

#[test]
fn metrics_count_connections_by_verdict_channels_and_relayed_bytes() {
    let sshd = Sshd::start().unwrap();
    // Exec only: `ssh -W` (a direct-tcpip channel) is refused by policy.
    let gw = Gateway::start_with(&sshd, "", r#""session-exec""#).unwrap();
    let out = gw.exec("head -c 300000 /dev/zero");
    assert_eq!(out.stdout.len(), 300_000);
    let out = gw
        .ssh()
        .args([
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "NumberOfPasswordPrompts=1",
        ])
        .arg(gw.dest())
        .arg("true")
        .output()
        .unwrap();
    assert!(!out.status.success(), "no password in batch mode: refused");
    let wait_text = |pred: &dyn Fn(&str) -> bool| {
        wait_for("metrics", || {
            let (code, body) = gw.api_call("GET", "/metrics", Some(AUDITOR), None);
            assert_eq!(code, 200);
            let text = String::from_utf8(body).unwrap();
            pred(&text).then_some(text)
        })
    };
    let text = wait_text(&|t: &str| {
        metric_value(
            t,
            "trailgate_sessions_ended_total{protocol=\"ssh\",verdict=\"accept\",status=\"disconnected\"}",
        ) >= 1.0
            && metric_value(
                t,
                "trailgate_sessions_ended_total{protocol=\"ssh\",verdict=\"gw-auth-fail\",status=\"rejected\"}",
            ) >= 1.0
    });
    assert!(
        metric_value(
            &text,
            "trailgate_relayed_bytes_total{protocol=\"ssh\",direction=\"s2c\"}"
        ) >= 300_000.0,
        "{text}"
    );
    assert!(
        metric_value(
            &text,
            "trailgate_channels_opened_total{type=\"session\",verdict=\"accept\"}"
        ) >= 1.0,
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "trailgate_recording_failures_total"),
        0.0,
        "{text}"
    );
    assert!(
        text.contains("trailgate_session_duration_seconds_count"),
        "{text}"
    );

    // A channel type the policy denies is counted as denied.
    let out = gw
        .ssh()
        .args(["-W", "127.0.0.1:9"])
        .arg(gw.dest())
        .output()
        .unwrap();
    assert!(!out.status.success());
    wait_text(&|t: &str| {
        metric_value(
            t,
            "trailgate_channels_opened_total{type=\"direct-tcpip\",verdict=\"deny\"}",
        ) >= 1.0
            // Every connection has ended: none is left counted as open.
            && metric_value(t, "trailgate_connections_active") == 0.0
    });
    // Scrapes without a valid token are refused.
    let (code, _) = gw.api_call("GET", "/metrics", None, None);
    assert_eq!(code, 401);
}
