//! The SSH gateway end to end: real sshd target, real OpenSSH clients, real trails.

mod common;

use common::*;

#[test]
fn exec_relays_stdout_stderr_and_exit_code_and_records_them() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    let out = gw.exec("echo hello-out; echo hello-err >&2; exit 7");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello-out\n",
        "log: {}",
        gw.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "hello-err\n");
    assert_eq!(out.status.code(), Some(7));

    let trail = gw.sealed_trail_with("hello-out");
    let info = trail_info(&trail);
    assert_eq!(info["protocol"], "ssh");
    assert_eq!(info["meta"]["gateway_user"], "alice");
    assert_eq!(info["meta"]["target_name"], "db1");
    assert_eq!(info["end_reason"], "client disconnected");
    // The default recorder: level 3, down to -3 while short of CPU.
    assert_eq!(
        (&info["zstd_level"], &info["zstd_fast_level"]),
        (&3.into(), &(-3).into())
    );
    let ch = find_channel(&info, |c| c["type"] == "session-exec");
    assert_eq!(ch["command"], "echo hello-out; echo hello-err >&2; exit 7");
    assert_eq!(ch["exit_status"], 7);
    let id = ch["id"].as_u64().unwrap();
    assert_eq!(trail_cat(&trail, id, Some("s2c")), b"hello-out\n");
    assert_eq!(trail_cat(&trail, id, None), b"hello-out\nhello-err\n");
    assert_eq!(trail_verify(&trail).0, 0);

    // Origin: the gateway's public key proves who sealed it; another key does not.
    let pubkey = gw.data_dir().join("keys/trail-signing.pub");
    let out = Command::new(bin())
        .args(["trail", "verify"])
        .arg(&trail)
        .arg("--key")
        .arg(&pubkey)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("origin proven"));
    let other = gw.dir.path().join("other.key");
    assert!(
        Command::new(bin())
            .args(["keygen", "trail-signing", "--out"])
            .arg(&other)
            .status()
            .unwrap()
            .success()
    );
    let out = Command::new(bin())
        .args(["trail", "verify"])
        .arg(&trail)
        .arg("--key")
        .arg(other.with_extension("pub"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Tampering and truncation, as auditors see them.
    let bytes = std::fs::read(&trail).unwrap();
    let copy = gw.dir.path().join("copy.trail");
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x20;
    std::fs::write(&copy, &flipped).unwrap();
    let (code, report) = trail_verify(&copy);
    assert_eq!(code, 1, "{report}");
    assert!(report.contains("CORRUPT"), "{report}");
    std::fs::write(&copy, &bytes[..bytes.len() - 200]).unwrap();
    let (code, report) = trail_verify(&copy);
    assert_eq!(code, 3, "{report}");
    // The file is one zstd stream: zstdcat prints the recorded bytes.
    let z = Command::new("zstd")
        .args(["-dc"])
        .arg(&trail)
        .output()
        .unwrap();
    assert!(z.status.success());
    assert!(String::from_utf8_lossy(&z.stdout).contains("hello-out"));
}

use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn interactive_pty_shell_is_relayed_and_recorded_with_its_terminal() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    let mut child = gw
        .ssh()
        .arg("-tt")
        .arg(gw.dest())
        .env("TERM", "xterm-256color")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"echo marker-$((6*7)); tty; exit 3\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("marker-42"),
        "shell output: {text}\nlog: {}",
        gw.log()
    );
    assert!(
        text.contains("/dev/pts/"),
        "a real pty at the target: {text}"
    );
    assert_eq!(out.status.code(), Some(3));
    drop(stdin);

    let trail = gw.sealed_trail_with("session-shell");
    let info = trail_info(&trail);
    let ch = find_channel(&info, |c| c["type"] == "session-shell");
    assert_eq!(ch["term"], "xterm-256color");
    assert_eq!(ch["exit_status"], 3);
    let id = ch["id"].as_u64().unwrap();
    let typed = String::from_utf8(trail_cat(&trail, id, Some("c2s"))).unwrap();
    assert!(
        typed.contains("echo marker-$((6*7))"),
        "keystrokes recorded: {typed:?}"
    );
    let shown = String::from_utf8_lossy(&trail_cat(&trail, id, Some("s2c"))).into_owned();
    assert!(shown.contains("marker-42"));
    // The terminal channel exports as asciicast that starts with a v2 header of the pty size.
    let cast = Command::new(bin())
        .args(["trail", "export", "--format", "asciicast"])
        .arg(&trail)
        .output()
        .unwrap();
    assert!(cast.status.success());
    let first: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&cast.stdout)
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["version"], 2);
    assert!(String::from_utf8_lossy(&cast.stdout).contains("marker-42"));
}

#[test]
fn password_and_keyboard_interactive_logins_work_and_wrong_passwords_are_refused() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    let run = |method: &str, password: &str| {
        let ask = askpass(gw.dir.path(), password);
        Command::new("setsid")
            .arg("ssh")
            .args([
                "-F",
                "/dev/null",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
            ])
            .args([
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                &format!("PreferredAuthentications={method}"),
                "-o",
                "NumberOfPasswordPrompts=1",
            ])
            .args([
                "-p",
                &gw.addr.port().to_string(),
                &gw.dest(),
                "echo logged-in",
            ])
            .env("SSH_ASKPASS", &ask)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    for method in ["password", "keyboard-interactive"] {
        let ok = run(method, ALICE_PASSWORD);
        assert_eq!(
            String::from_utf8_lossy(&ok.stdout),
            "logged-in\n",
            "{method}: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let bad = run(method, "wrong password");
        assert_eq!(bad.status.code(), Some(255), "{method}");
        assert!(
            String::from_utf8_lossy(&bad.stderr).contains("Permission denied"),
            "{method}: {}",
            String::from_utf8_lossy(&bad.stderr)
        );
    }
    let log = gw.log();
    assert!(
        log.contains("gw-auth-fail"),
        "failed logins get a verdict: {log}"
    );
}

#[test]
fn unknown_and_forbidden_targets_are_refused_naming_the_allowed_ones() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    let out = gw
        .ssh()
        .arg(format!("alice@nope@{}", gw.addr.ip()))
        .arg("true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"nope\" is not available to alice")
            && err.contains("targets you may use: db1"),
        "{err}"
    );
    // A user allowed exactly one target may omit it; `alice:db1` is accepted too.
    let out = gw
        .ssh()
        .arg(format!("alice@{}", gw.addr.ip()))
        .arg("echo implicit")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "implicit\n");
    let out = gw
        .ssh()
        .arg(format!("alice:db1@{}", gw.addr.ip()))
        .arg("echo colon")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "colon\n");
    assert!(gw.log().contains("deny"));
}

#[test]
fn host_key_mismatch_and_unreachable_targets_fail_with_a_message() {
    let sshd = Sshd::start().unwrap();
    let other = tempfile::tempdir().unwrap();
    let wrong_key = keygen(&other.path().join("k"));
    let dead_port = free_port();
    let extra = format!(
        r#"
[[targets]]
name = "spoofed"
address = "127.0.0.1:{port}"
host_key = "{wrong_key}"
user = "root"
private_key = "{key}"

[[targets]]
name = "down"
address = "127.0.0.1:{dead_port}"
insecure_skip_host_key_check = true
user = "root"
private_key = "{key}"
"#,
        port = sshd.port,
        key = sshd.gateway_key.display()
    );
    let gw = Gateway::start_with(&sshd, &extra, FULL_POLICY).unwrap();
    let out = gw
        .ssh()
        .arg(format!("alice@spoofed@{}", gw.addr.ip()))
        .arg("true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("host key of target spoofed does not match"),
        "{err}"
    );
    let out = gw
        .ssh()
        .arg(format!("alice@down@{}", gw.addr.ip()))
        .arg("true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("target down") && err.contains("unreachable"),
        "{err}"
    );
    let log = gw.log();
    assert!(
        log.contains(r#"verdict="key-error""#) && log.contains(r#"verdict="fail""#),
        "verdicts logged: {log}"
    );
}

#[test]
fn denied_channel_types_are_refused_and_recorded() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start_with(&sshd, "", r#""session-shell""#).unwrap();
    let (svc, _t) = banner_service();
    let out = gw
        .ssh_cmd_level("ssh", "INFO")
        .args([
            "-p",
            &gw.addr.port().to_string(),
            "-W",
            &format!("127.0.0.1:{svc}"),
        ])
        .arg(gw.dest())
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("administratively prohibited"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = gw.exec("echo should-not-run");
    assert_ne!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    let out = gw
        .ssh()
        .args([
            "-R",
            "127.0.0.1:0:127.0.0.1:1",
            "-o",
            "ExitOnForwardFailure=yes",
            "-N",
        ])
        .arg(gw.dest())
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "remote forward refused");

    let trail = gw.sealed_trail_with("direct-tcpip");
    let info = trail_info(&trail);
    let ch = find_channel(&info, |c| c["channel_type"] == "direct-tcpip");
    assert_eq!(ch["denied"], true);
    let trail = gw.sealed_trail_with("should-not-run");
    let info = trail_info(&trail);
    let ch = find_channel(&info, |c| c["command"] == "echo should-not-run");
    assert!(
        ch["exit_status"].is_null(),
        "the denied command never ran: {ch}"
    );
    assert_eq!(ch["bytes_server_to_client"], 0);
}

#[test]
fn many_sessions_in_parallel_each_get_their_own_output_and_trail() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    let n = 24;
    let outs: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let gw = &gw;
                s.spawn(move || {
                    gw.exec(&format!(
                        "echo parallel-{i}; head -c 100000 /dev/zero | tr '\\0' x"
                    ))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, o) in outs.iter().enumerate() {
        assert_eq!(
            o.status.code(),
            Some(0),
            "session {i}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.starts_with(&format!("parallel-{i}\n")));
        assert_eq!(o.stdout.len(), format!("parallel-{i}\n").len() + 100_000);
    }
    for i in 0..n {
        let t = gw.sealed_trail_with(&format!("echo parallel-{i};"));
        assert_eq!(trail_verify(&t).0, 0);
    }
}

#[test]
fn an_idle_session_is_ended_by_the_settings_policy_with_its_reason() {
    let sshd = Sshd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = gateway_config(
        dir.path(),
        &sshd,
        "\n[settings_policies.short]\nidle_timeout = \"1s\"\n",
        FULL_POLICY,
    )
    .unwrap()
    .replace(
        "channel_policy = \"test\"",
        "channel_policy = \"test\"\nsettings_policy = \"short\"",
    );
    let config = dir.path().join("trailgate.toml");
    std::fs::write(&config, text).unwrap();
    let gw = Gateway::run(dir, config, String::new()).unwrap();
    // Output for a while (activity), then silence: the session ends on the idle timeout.
    let out = gw.exec("for i in 1 2 3; do echo tick-$i; sleep 0.4; done; sleep 30; echo never");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "tick-1\ntick-2\ntick-3\n"
    );
    assert_eq!(out.status.code(), Some(255));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("idle timeout"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trail = gw.sealed_trail_with("tick-$i");
    assert_eq!(
        trail_info(&trail)["end_reason"],
        "terminated by policy: idle timeout"
    );
}

#[test]
fn the_upstream_leg_uses_aes_gcm_where_the_cpu_has_aes_instructions() {
    let sshd = Sshd::start_with("LogLevel DEBUG1").unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    let out = gw.exec("echo through");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"through\n");
    // sshd logs the cipher of each direction as it sees the gateway's (client) proposal win.
    let log = sshd.log();
    let ciphers: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split("kex: client->server cipher: ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    let want = if trailgate_proxy::ssh::ciphers::hardware_aes() {
        "aes128-gcm@openssh.com"
    } else {
        "chacha20-poly1305@openssh.com"
    };
    assert_eq!(ciphers, vec![want], "sshd log: {log}");
}

#[test]
fn cipher_lists_of_both_legs_are_applied() {
    // The target speaks only AES-GCM: the default upstream order (whatever the CPU) reaches it.
    let sshd = Sshd::start_with("Ciphers aes128-gcm@openssh.com").unwrap();
    let ssh_key =
        |line: &'static str| move |t: String| t.replacen("[ssh]\n", &format!("[ssh]\n{line}\n"), 1);
    let offered_to_clients = ssh_key(r#"ciphers = ["aes256-gcm@openssh.com"]"#);
    let gw = Gateway::start_custom(&sshd, FULL_POLICY, offered_to_clients, None).unwrap();
    let run = |gw: &Gateway, cipher: &str| {
        gw.ssh()
            .args(["-c", cipher])
            .arg(gw.dest())
            .arg("echo through")
            .output()
            .unwrap()
    };
    let out = run(&gw, "aes256-gcm@openssh.com");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"through\n");
    // A client insisting on a cipher the gateway does not offer is refused at key exchange.
    // (OpenSSH reports a failed negotiation at log level INFO.)
    let out = gw
        .ssh_cmd_level("ssh", "INFO")
        .args(["-p", &gw.addr.port().to_string()])
        .args(["-c", "chacha20-poly1305@openssh.com"])
        .arg(gw.dest())
        .arg("echo through")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no matching cipher found"), "{err}");

    // An upstream list the target shares nothing with: the session fails with a message.
    let chacha_only = ssh_key(r#"upstream_ciphers = ["chacha20-poly1305@openssh.com"]"#);
    let gw2 = Gateway::start_custom(&sshd, FULL_POLICY, chacha_only, None).unwrap();
    let out = gw2.exec("echo through");
    assert_eq!(out.status.code(), Some(255));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("target db1: ssh handshake failed"), "{err}");
    assert!(gw2.log().contains(r#"verdict="fail""#), "{}", gw2.log());
}
