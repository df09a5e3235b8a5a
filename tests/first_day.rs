//! The first ten minutes: the README's first command (`trailgate demo`) on a clean directory,
//! used the way its printed instructions say, with the real ssh client; the session is in a
//! trail and in the API the printed token opens. Also the first-day error messages.

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
