//! `trailgate trail commands` end to end: lines typed into a real bash on a pty through the
//! gateway, rebuilt from the recorded input and echo.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn commands_typed_in_a_terminal_are_listed_from_input_and_echo() {
    let sshd = Sshd::start().unwrap();
    let gw = Gateway::start(&sshd).unwrap();
    let files = tempfile::tempdir().unwrap();
    let dir = files.path().display().to_string();
    std::fs::write(
        files.path().join("tgcmd-unique-file.txt"),
        "file-content-marker\n",
    )
    .unwrap();
    // An interactive bash on a pty, without start-up files: the prompt and line editing are
    // bash's own.
    let mut child = gw
        .ssh()
        .arg("-tt")
        .arg(gw.dest())
        .arg("bash --norc --noprofile")
        .env("TERM", "xterm-256color")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // What the terminal showed, and a signal each time more arrives.
    let shown = std::sync::Arc::new((
        std::sync::Mutex::new(String::new()),
        std::sync::Condvar::new(),
    ));
    let sink = shown.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = std::io::Read::read(&mut stdout, &mut buf) {
            sink.0
                .lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
            sink.1.notify_all();
        }
    });
    // Types `keys`, then waits until the terminal shows `until` (output of the shell, not the
    // echo, so the shell has taken every key before the next ones come).
    let mut type_until = |keys: &[u8], until: &str| {
        stdin.write_all(keys).unwrap();
        stdin.flush().unwrap();
        let (text, more) = &*shown;
        let (text, timeout) = more
            .wait_timeout_while(text.lock().unwrap(), Duration::from_secs(20), |t| {
                !t.contains(until)
            })
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "no {until:?} on the terminal: {:?}",
            *text
        );
    };
    type_until(b"echo one-$((0+1))\r", "one-1");
    type_until(b"echo twoo\x7f-$((1+1))\r", "two-2");
    type_until(b"garbage\x15echo three-$((2+1))\r", "three-3");
    type_until(
        &[&b"echo -$((3+1))"[..], &b"\x1b[D".repeat(9), b"four\r"].concat(),
        "four-4",
    );
    type_until(b"\x1b[200~echo five-$((4+1))\x1b[201~\r", "five-5");
    // A password at a prompt that does not echo is not a command.
    type_until(b"read -s -p \"$((5*5))> \" pw; echo got-${#pw}\r", "25> ");
    type_until(b"hunter2\r", "got-7");
    // Completion: the path as typed, then TAB, then Enter once the completion is shown.
    type_until(format!("cat {dir}/tgcmd-uni").as_bytes(), "tgcmd-uni");
    type_until(b"\t", "que-file.txt");
    type_until(b"\r", "file-content-marker");
    stdin.write_all(b"exit\r").unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    assert!(status.success(), "log: {}", gw.log());

    let trail = gw.sealed_trail_with("bash --norc");
    let out = Command::new(bin())
        .args(["trail", "commands", "--json"])
        .arg(&trail)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cmds: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&cmds[0]["kind"], &cmds[0]["command"]),
        (&"exec".into(), &"bash --norc --noprofile".into())
    );
    let got: Vec<(String, bool)> = cmds[1..]
        .iter()
        .map(|c| {
            assert_eq!(c["kind"], "shell");
            assert!(c["time"].as_str().unwrap().ends_with('Z'), "{c}");
            (
                c["command"].as_str().unwrap().trim_end().to_string(),
                c["approximate"].as_bool().unwrap(),
            )
        })
        .collect();
    let exact = |s: &str| (s.to_string(), false);
    assert_eq!(
        got,
        vec![
            exact("echo one-$((0+1))"),
            exact("echo two-$((1+1))"),
            exact("echo three-$((2+1))"),
            exact("echo four-$((3+1))"),
            exact("echo five-$((4+1))"),
            exact("read -s -p \"$((5*5))> \" pw; echo got-${#pw}"),
            (format!("cat {dir}/tgcmd-unique-file.txt"), true),
            exact("exit"),
        ],
        "typed as recorded: {:?}",
        String::from_utf8_lossy(&trail_cat(
            &trail,
            cmds[0]["channel"].as_u64().unwrap(),
            None
        ))
    );
    let table = Command::new(bin())
        .args(["trail", "commands"])
        .arg(&trail)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("~ cat "), "{table}");
    assert!(!table.contains("hunter2"), "{table}");
}
