//! The first ten minutes: the README's first command (`trailgate demo`) on a clean directory,
//! used the way its printed instructions say, with the real ssh client; the session is in a
//! trail and in the API the printed token opens. Also `setup`, the first-day error messages and
//! the CLI's manners. The operator's first day is tests/operator_day.rs.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

struct Demo {
    child: Child,
    text: String,
    dir: tempfile::TempDir,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    /// Starts `trailgate demo` and reads its instructions (up to the "Stop with" line).
    fn start() -> Demo {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(bin())
            .args(["demo", "--ssh-port", "0", "--api-port", "0", "--dir"])
            .arg(dir.path().join("demo"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("demo.log")).unwrap())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                text.push_str(&line);
                text.push('\n');
                if line.starts_with("Stop with") {
                    let _ = tx.send(text.clone());
                }
            }
        });
        let text = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("demo instructions");
        Demo { child, text, dir }
    }

    /// The value after `key` on its line.
    fn after(&self, key: &str) -> String {
        self.text
            .lines()
            .find_map(|l| l.split(key).nth(1))
            .map(|s| s.split_whitespace().next().unwrap_or_default().to_string())
            .unwrap_or_else(|| panic!("no {key:?} in:\n{}", self.text))
    }
}

#[test]
fn the_readme_first_command_records_a_session_typed_as_printed() {
    let demo = Demo::start();
    // The printed command, word for word: `ssh -p PORT demo@127.0.0.1`.
    let line = demo
        .text
        .lines()
        .find(|l| l.trim_start().starts_with("ssh -p "))
        .expect("ssh line")
        .trim()
        .to_string();
    let words: Vec<&str> = line.split_whitespace().take(4).collect();
    assert_eq!(words[0], "ssh");
    assert_eq!(words[3].split('@').next(), Some("demo"));
    let password = demo.after("password: ");
    assert!(demo.text.contains("ssh host key SHA256:"), "{}", demo.text);
    let ask = askpass(demo.dir.path(), &password);
    let mut ssh = Command::new("setsid")
        .args(&words[..])
        .args(["-tt", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
        .env("SSH_ASKPASS", &ask)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = ssh.stdin.take().unwrap();
    stdin
        .write_all(b"echo first-day-$((6*7))\nexit 7\n")
        .unwrap();
    let out = ssh.wait_with_output().unwrap();
    drop(stdin);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("first-day-42"),
        "{shown}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(7));

    // The printed token opens the API, which lists the session.
    let token = demo.after("API token (admin): ");
    let api = demo.after("http://");
    let api = api.split('/').next().unwrap().to_string();
    let list = wait_until("the session in the API", 20, || {
        let o = Command::new("curl")
            .args(["-sS", "-H", &format!("Authorization: Bearer {token}")])
            .arg(format!("http://{api}/api/v1/sessions?active=false"))
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        (v["meta"]["total"] == 1).then_some(v)
    });
    let s = &list["items"][0];
    assert_eq!(s["user"]["name"], "demo");
    assert_eq!(s["target"]["name"], "demo");
    assert_eq!(s["verdict"], "accept");
    // The trail under the printed directory holds what was typed and shown, and verifies.
    let trails = demo.after("trails:  ");
    let files = walk(std::path::Path::new(&trails));
    assert_eq!(files.len(), 1, "{files:?}");
    let (code, _) = trail_verify(&files[0]);
    assert_eq!(code, 0);
    let out = trail_cat(&files[0], 1, Some("s2c"));
    assert!(String::from_utf8_lossy(&out).contains("first-day-42"));
}

#[test]
fn check_config_loads_what_serve_loads() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("t.toml");
    let base = "data_dir = \"data\"\n[ssh]\nlisten = \"127.0.0.1:0\"\n\
                [[targets]]\nname = \"t\"\naddress = \"127.0.0.1:1\"\nuser = \"u\"\n\
                insecure_skip_host_key_check = true\n";
    let run = |cmd: &str, text: &str| {
        std::fs::write(&cfg, text).unwrap();
        let o = Command::new(bin())
            .args([cmd, "--config"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let cases = [
        (
            format!("{base}private_key = \"missing-key\"\n"),
            "private_key",
        ),
        (
            format!("{base}password = \"p\"\n")
                .replace("[ssh]\n", "[ssh]\nhost_keys = [\"nope\"]\n"),
            "ssh.host_keys",
        ),
        (
            format!("{base}password = \"p\"\n[vnc]\ntls_cert = \"no.pem\"\ntls_key = \"no.key\"\n"),
            "vnc.tls_cert",
        ),
    ];
    for (text, key) in cases {
        let (code, err) = run("check-config", &text);
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains(key), "check-config: {err}");
        let (code, err) = run("serve", &text);
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains(key), "serve: {err}");
    }
    let (code, err) = run("check-config", &format!("{base}password = \"p\"\n"));
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn known_hosts_problems_are_named_and_show_the_offered_key() {
    let sshd = Sshd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let other = keygen(&dir.path().join("other"));
    let other_line = other
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let listed_elsewhere = dir.path().join("kh-elsewhere");
    std::fs::write(&listed_elsewhere, format!("[10.9.9.9]:22 {other_line}\n")).unwrap();
    let mismatch = dir.path().join("kh-mismatch");
    std::fs::write(
        &mismatch,
        format!("[127.0.0.1]:{} {other_line}\n", sshd.port),
    )
    .unwrap();
    let offered: String = sshd
        .host_pub
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    for (file, want) in [
        (dir.path().join("kh-missing"), "does not exist".to_string()),
        (
            listed_elsewhere,
            format!("does not list [127.0.0.1]:{}", sshd.port),
        ),
        (mismatch, "does not match known_hosts file".to_string()),
    ] {
        let f = file.display().to_string();
        let gw = Gateway::start_custom(
            &sshd,
            FULL_POLICY,
            |t| {
                let line = t
                    .lines()
                    .find(|l| l.starts_with("host_key = "))
                    .unwrap()
                    .to_string();
                t.replace(&line, &format!("known_hosts = \"{f}\""))
            },
            None,
        )
        .unwrap();
        let o = gw.exec("true");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(255));
        assert!(err.contains(&want), "{err}");
        if !want.contains("does not exist") {
            assert!(
                err.contains(&offered),
                "the offered key as a host_key line: {err}"
            );
        }
    }
}

#[test]
fn trail_commands_name_the_channels_and_print_errors_once() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    assert_eq!(gw.exec("echo cli-check").stdout, b"cli-check\n");
    let trail = gw.sealed_trail_with("echo cli-check");
    for args in [
        vec!["trail", "cat", "--channel", "99"],
        vec![
            "trail",
            "export",
            "--format",
            "asciicast",
            "--channel",
            "99",
        ],
        vec!["trail", "play", "--channel", "99"],
    ] {
        let o = Command::new(bin())
            .args(&args[..2])
            .arg(&trail)
            .args(&args[2..])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("no channel 99 in this trail; its channels: 1 (session-exec)"),
            "{args:?}: {err}"
        );
    }
    let (code, body) = gw.api_call(
        "GET",
        &format!(
            "/api/v1/sessions/{}/trail?format=asciicast&channel=99",
            trail_info(&trail)["session_id"].as_str().unwrap()
        ),
        Some("admin-secret"),
        None,
    );
    assert_eq!(code, 404);
    assert!(String::from_utf8_lossy(&body).contains("its channels: 1 (session-exec)"));
    let o = Command::new(bin())
        .args(["trail", "info", "/nonexistent.trail"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

#[test]
fn setup_writes_a_working_configuration_and_never_trusts_a_host_key_silently() {
    let sshd = Sshd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("trailgate.toml");
    let setup = |extra: &[&str]| {
        let mut c = Command::new(bin());
        c.args([
            "setup",
            "--user",
            "alice",
            "--password-stdin",
            "--target-name",
            "db1",
        ])
        .args(["--target-address", &format!("127.0.0.1:{}", sshd.port)])
        .args([
            "--target-user",
            &whoami(),
            "--listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
        ])
        .arg("--target-key")
        .arg(&sshd.gateway_key)
        .arg("--out")
        .arg(&out)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{ALICE_PASSWORD}\n").as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    // Not confirmed: the key is shown, nothing is written.
    let (code, _, err) = setup(&[]);
    assert_eq!(code, Some(1), "{err}");
    let fp = err
        .split("offers host key ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect(&err)
        .to_string();
    assert!(fp.starts_with("SHA256:"), "{err}");
    assert!(
        err.contains(sshd.host_pub.split_whitespace().nth(1).unwrap()),
        "the key line is shown: {err}"
    );
    assert!(!out.exists());
    let (code, _, err) = setup(&["--accept-host-key", "SHA256:not-it"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("refusing to trust"), "{err}");
    assert!(!out.exists());
    // Confirmed by its fingerprint: a configuration that serves.
    let (code, stdout, err) = setup(&["--accept-host-key", &fp]);
    assert_eq!(code, Some(0), "{err}");
    let token = stdout
        .split("(shown once; only its SHA-256 is stored): ")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_string();
    assert!(stdout.contains("trailgate serve --config"), "{stdout}");
    let check = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let gw = Gateway::run(dir, out, String::new()).unwrap();
    let o = gw.password_ssh(ALICE_PASSWORD, &[], "echo set-up");
    assert_eq!(
        o.stdout,
        b"set-up\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (code, _) = gw.api_call("GET", "/api/v1/sessions", Some(&token), None);
    assert_eq!(code, 200);
}

#[test]
fn a_closed_pipe_ends_the_cli_quietly() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    assert_eq!(gw.exec("seq 1 20000").status.code(), Some(0));
    let trail = gw.sealed_trail_with("seq 1 20000");
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("'{}' trail info '{}' | head -c 1 >/dev/null; '{}' trail cat '{}' --channel 1 | head -c 1", bin().display(), trail.display(), bin().display(), trail.display()))
        .output()
        .unwrap();
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
