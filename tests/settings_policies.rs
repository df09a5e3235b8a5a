//! Settings policies end to end over SSH, against a real sshd with real ssh clients: timeouts
//! on time with their own reasons (keepalives do not count), the preconnect check (the target
//! is never contacted), policies created through the control API with the role matrix and
//! reaching the next session without a restart, persistence across restarts, the audit of
//! changes, and SIGHUP with a valid and an invalid file.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const ADMIN: &str = "admin-secret";
const AUDITOR: &str = "audit-secret";

/// A target block for `sshd` named `name` with extra keys.
fn target(sshd: &Sshd, name: &str, keys: &str) -> String {
    format!(
        "\n[[targets]]\nname = \"{name}\"\naddress = \"127.0.0.1:{}\"\nhost_key = \"{}\"\nuser = \"{}\"\nprivate_key = \"{}\"\nallow_users = [\"alice\"]\nchannel_policy = \"test\"\n{keys}\n",
        sshd.port,
        sshd.host_pub,
        whoami(),
        sshd.gateway_key.display()
    )
}

fn start(sshd: &Sshd, db1_keys: &str, extra: &str) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let text = gateway_config(dir.path(), sshd, extra, FULL_POLICY)
        .unwrap()
        .replacen(
            "channel_policy = \"test\"\n",
            &format!("channel_policy = \"test\"\n{db1_keys}\n"),
            1,
        );
    let config = dir.path().join("trailgate.toml");
    std::fs::write(&config, text).unwrap();
    Gateway::run(dir, config, String::new()).unwrap()
}

/// Runs `cmd` on `target` with keepalives every second; returns the time from the first output
/// line to the client's exit, the exit code and stderr.
fn timed(gw: &Gateway, target: &str, cmd: &str) -> (Duration, Option<i32>, String) {
    let mut child = gw
        .ssh()
        .args([
            "-o",
            "ServerAliveInterval=1",
            "-o",
            "ServerAliveCountMax=30",
        ])
        .arg(format!("alice@{target}@{}", gw.addr.ip()))
        .arg(cmd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(!first.is_empty(), "no output from {target}");
    let t0 = Instant::now();
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let o = child.wait_with_output().unwrap();
    (
        t0.elapsed(),
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ended(gw: &Gateway, target: &str) -> Value {
    wait_until(&format!("ended session to {target}"), 20, || {
        let (items, _) = gw.sessions(&format!("target={target}"), ADMIN);
        items.into_iter().find(|s| s["active"] == false)
    })
}

#[test]
fn ssh_timeouts_fire_on_time_with_their_reasons_and_keepalives_do_not_count() {
    let sshd = Sshd::start().unwrap();
    let extra = target(&sshd, "db2", "settings_policy = \"inactive\"")
        + "\n[settings_policies.idle]\ntimeout = 2\n\
           \n[settings_policies.inactive]\ninactivity_timeout = { enabled = true, value = 3 }\n";
    let gw = start(&sshd, "settings_policy = \"idle\"", &extra);

    // Idle: one line, then silence; keepalives every second cross both legs meanwhile.
    let (t, code, err) = timed(&gw, "db1", "echo start; sleep 30");
    assert!(err.contains("idle timeout"), "{err}");
    assert_eq!(code, Some(255));
    assert!(
        t >= Duration::from_millis(1900) && t < Duration::from_millis(3000),
        "idle after {t:?}"
    );
    let s = ended(&gw, "db1");
    assert_eq!(s["end_reason"], "terminated by policy: idle timeout", "{s}");
    assert!(
        s["policies"]
            .as_array()
            .unwrap()
            .contains(&json!("settings:idle")),
        "{s}"
    );

    // Inactivity: output flows all the time, but nothing is typed.
    let (t, code, err) = timed(&gw, "db2", "while :; do echo tick; sleep 0.2; done");
    assert!(err.contains("inactivity timeout"), "{err}");
    assert_eq!(code, Some(255));
    assert!(t < Duration::from_millis(3500), "inactivity after {t:?}");
    let s = ended(&gw, "db2");
    assert_eq!(
        s["end_reason"], "terminated by policy: inactivity timeout",
        "{s}"
    );
    assert!(s["bytes_server_to_client"].as_u64().unwrap() > 20, "{s}");
}

/// A TCP listener standing in for a target, counting the connections it gets.
fn counting_target() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            c.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (port, n)
}

#[test]
fn the_preconnect_check_refuses_without_contacting_the_target() {
    let sshd = Sshd::start().unwrap();
    let (port, hits) = counting_target();
    let fake = |name: &str, policy: &str| {
        format!(
            "\n[[targets]]\nname = \"{name}\"\naddress = \"127.0.0.1:{port}\"\nhost_key = \"{}\"\nuser = \"u\"\npassword = \"p\"\nchannel_policy = \"nothing\"\nsettings_policy = \"{policy}\"\n",
            sshd.host_pub
        )
    };
    let extra = fake("checked", "pre")
        + &fake("unchecked", "nopre")
        + "\n[channel_policies.nothing]\nallow = []\n\
           \n[settings_policies.pre]\npreconnect_channel_check = true\n\
           \n[settings_policies.nopre]\npreconnect_channel_check = false\n";
    let gw = start(&sshd, "", &extra);
    let run = |t: &str| {
        gw.ssh()
            .arg(format!("alice@{t}@{}", gw.addr.ip()))
            .arg("true")
            .output()
            .unwrap()
    };
    let o = run("checked");
    assert_eq!(o.status.code(), Some(255));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("refused before connecting") && err.contains("permits no channel"),
        "{err}"
    );
    let s = ended(&gw, "checked");
    assert_eq!(s["verdict"], "deny", "{s}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the target was contacted");
    // Without the check the gateway connects first (and the counter works).
    let o = run("unchecked");
    assert_eq!(o.status.code(), Some(255));
    wait_until("the unchecked target contacted", 10, || {
        (hits.load(Ordering::SeqCst) == 1).then_some(())
    });
}

fn call(gw: &Gateway, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let b = body.map(|b| b.to_string());
    let (code, out) = gw.api_call(method, path, Some(token), b.as_deref());
    (code, serde_json::from_slice(&out).unwrap_or(Value::Null))
}

const SSH_POLICIES: &str = "/api/v1/configuration/ssh/settings_policies";

#[test]
fn policies_through_the_api_reach_the_next_session_persist_and_are_audited() {
    let sshd = Sshd::start().unwrap();
    let extra = "\n[settings_policies.filepol]\ntimeout = 600\n";
    let mut gw = start(&sshd, "settings_policy = \"later\"", extra);
    // The file names a policy nobody has defined yet: check-config warns, sessions fail closed.
    let check = std::process::Command::new(bin())
        .args(["check-config", "--config"])
        .arg(&gw.config)
        .output()
        .unwrap();
    assert!(check.status.success());
    assert!(
        String::from_utf8_lossy(&check.stderr).contains("\"later\""),
        "{check:?}"
    );
    let o = gw.exec("echo hello");
    assert_eq!(o.status.code(), Some(255));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("does not exist"),
        "{o:?}"
    );
    assert_eq!(ended(&gw, "db1")["verdict"], "deny");

    let body = json!({"name": "later", "timeout": 3, "inactivity_timeout": {"enabled": false}});
    let path = format!("{SSH_POLICIES}/later");
    // Role matrix: auditors read, only admins write; no token, no answer.
    assert_eq!(call(&gw, "PUT", &path, AUDITOR, Some(body.clone())).0, 403);
    assert_eq!(gw.api_call("GET", SSH_POLICIES, None, None).0, 401);
    let (code, v) = call(&gw, "PUT", &path, ADMIN, Some(body.clone()));
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["key"], "later");
    assert_eq!(v["meta"]["href"], path);
    assert_eq!(v["body"]["timeout"], 3);
    // Idempotent replace.
    assert_eq!(call(&gw, "PUT", &path, ADMIN, Some(body.clone())).0, 200);
    let (code, list) = call(&gw, "GET", SSH_POLICIES, AUDITOR, None);
    assert_eq!(code, 200);
    let items = list["items"].as_array().unwrap();
    let src = |k: &str| {
        items
            .iter()
            .find(|i| i["key"] == k)
            .map(|i| i["source"].clone())
    };
    assert_eq!(src("filepol"), Some(json!("config")));
    assert_eq!(src("later"), Some(json!("api")));
    // The new policy governs the next session: it ends on its 3 s idle timeout.
    let o = gw.exec("echo hello; sleep 20");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello\n");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("idle timeout"),
        "{o:?}"
    );

    // Validation names the field; the file's policies are read-only; a used policy stays.
    let bad = json!({"timeout": 600, "inactivity_timeout": {"enabled": true, "value": 60}});
    let (code, v) = call(&gw, "PUT", &path, ADMIN, Some(bad));
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("inactivity_timeout.value"),
        "{v}"
    );
    let bad = json!({"client_tls_security_settings": {"cipher_strength": {"selection": "custom", "custom_cipher": "RC4-MD5"}}});
    let (code, v) = call(&gw, "PUT", &path, ADMIN, Some(bad));
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("TLS_AES_128_GCM_SHA256"),
        "{v}"
    );
    let (code, v) = call(
        &gw,
        "PUT",
        &format!("{SSH_POLICIES}/filepol"),
        ADMIN,
        Some(json!({})),
    );
    assert_eq!(code, 409, "{v}");
    let (code, v) = call(&gw, "DELETE", &path, ADMIN, None);
    assert_eq!(code, 409, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("db1"),
        "{v}"
    );
    // POST makes a key; DELETE removes an unused policy.
    let (code, v) = call(
        &gw,
        "POST",
        SSH_POLICIES,
        ADMIN,
        Some(json!({"timeout": 30})),
    );
    assert_eq!(code, 201, "{v}");
    let made = v["key"].as_str().unwrap().to_string();
    let made_path = format!("{SSH_POLICIES}/{made}");
    assert_eq!(call(&gw, "GET", &made_path, AUDITOR, None).0, 200);
    assert_eq!(call(&gw, "DELETE", &made_path, AUDITOR, None).0, 403);
    assert_eq!(call(&gw, "DELETE", &made_path, ADMIN, None).0, 200);
    assert_eq!(call(&gw, "GET", &made_path, ADMIN, None).0, 404);
    // The VNC policies are another collection.
    assert_eq!(
        call(
            &gw,
            "GET",
            "/api/v1/configuration/vnc/settings_policies/later",
            ADMIN,
            None
        )
        .0,
        404
    );
    assert_eq!(
        call(
            &gw,
            "GET",
            "/api/v1/configuration/rdp/settings_policies",
            ADMIN,
            None
        )
        .0,
        404
    );

    // Every change is audited: who, what, before and after.
    let (code, ch) = call(&gw, "GET", "/api/v1/configuration/changes", AUDITOR, None);
    assert_eq!(code, 200);
    let actions: Vec<&str> = ch["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["delete", "create", "replace", "create"], "{ch}");
    let first = &ch["items"][3];
    assert_eq!(first["by"], "admin-tok");
    assert_eq!(first["object"], path);
    assert_eq!(first["after"]["timeout"], 3);

    // Restarted, the gateway still has the policy.
    gw.crash_and_restart().unwrap();
    let (code, v) = call(&gw, "GET", &path, ADMIN, None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["source"], "api");
    let o = gw.exec("echo again; sleep 20");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("idle timeout"),
        "{o:?}"
    );
}

#[test]
fn sighup_reloads_a_valid_file_and_keeps_the_old_one_when_the_new_one_is_bad() {
    let sshd = Sshd::start().unwrap();
    let gw = start(&sshd, "", "");
    let hup = || {
        let st = std::process::Command::new("kill")
            .args(["-HUP", &gw.pid().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    };
    let changes = |action: &str| -> usize {
        let (_, ch) = call(&gw, "GET", "/api/v1/configuration/changes", ADMIN, None);
        ch["items"]
            .as_array()
            .map_or(0, |v| v.iter().filter(|c| c["action"] == action).count())
    };
    let original = std::fs::read_to_string(&gw.config).unwrap();
    // A valid file: a new token and a policy on db1 apply without a restart.
    let new_token_sha = "3afb30914f8bd9c8a6f165f83c44a609d828b86fcb271d45832c5e50425be95f";
    let secret = "reloaded-secret";
    let text = original.replace(
        "channel_policy = \"test\"\n",
        "channel_policy = \"test\"\nsettings_policy = \"hup\"\n",
    ) + &format!(
        "\n[[api_tokens]]\nname = \"new-tok\"\ntoken_sha256 = \"{new_token_sha}\"\nrole = \"auditor\"\n\n[settings_policies.hup]\ntimeout = 3\n"
    );
    assert_eq!(
        gw.api_call("GET", "/api/v1/sessions", Some(secret), None).0,
        401
    );
    std::fs::write(&gw.config, text).unwrap();
    hup();
    wait_until("reload audited", 20, || {
        (changes("reload") == 1).then_some(())
    });
    assert_eq!(
        gw.api_call("GET", "/api/v1/sessions", Some(secret), None).0,
        200
    );
    let o = gw.exec("echo hi; sleep 20");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hi\n");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("idle timeout"),
        "{o:?}"
    );

    // A broken file is refused; the gateway keeps running on the previous one.
    std::fs::write(&gw.config, original.replace("[ssh]", "[ssh\n")).unwrap();
    hup();
    wait_until("refused reload audited", 20, || {
        (changes("reload-refused") == 1).then_some(())
    });
    assert!(
        gw.log().contains("configuration reload refused"),
        "{}",
        gw.log()
    );
    assert_eq!(
        gw.api_call("GET", "/api/v1/sessions", Some(secret), None).0,
        200
    );
    let o = gw.exec("echo still-here");
    assert_eq!(o.stdout, b"still-here\n", "{o:?}");
    // A file that parses but does not validate is refused the same way.
    std::fs::write(
        &gw.config,
        original.replace("allow_users = [\"alice\"]", "allow_users = [\"nobody\"]"),
    )
    .unwrap();
    hup();
    wait_until("second refused reload", 20, || {
        (changes("reload-refused") == 2).then_some(())
    });
    let (_, ch) = call(&gw, "GET", "/api/v1/configuration/changes", ADMIN, None);
    assert!(
        ch["items"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("allow_users"),
        "{ch}"
    );
    assert_eq!(gw.exec("echo alive").stdout, b"alive\n");
}
