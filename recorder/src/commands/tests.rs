//! The line editor on keystrokes and echoes as terminals and shells send them, and `commands` on
//! a trail recorded through the real writer.

use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::format::{ChannelOpen, SessionEnd, SessionMeta};
use crate::keys::SigningKey;
use crate::writer::{TrailSpec, TrailWriter, WriterConfig};

enum Step<'a> {
    /// Keystrokes, in one record.
    In(&'a [u8]),
    /// Server output.
    Out(&'a [u8]),
    /// Keystrokes one by one, each echoed as a raw terminal would (the usual interactive case).
    Typed(&'a [u8]),
}
use Step::*;

fn run(steps: &[Step]) -> Vec<(String, bool)> {
    let mut ed = LineEditor::default();
    let mut lines = Vec::new();
    for (t, s) in steps.iter().enumerate() {
        match s {
            In(b) => ed.input(b, t as u64, &mut lines),
            Out(b) => ed.output(b, &mut lines),
            Typed(b) => {
                for x in b.iter() {
                    ed.input(&[*x], t as u64, &mut lines);
                    ed.output(&[*x], &mut lines);
                }
            }
        }
    }
    lines.into_iter().map(|l| (l.text, l.approximate)).collect()
}

fn exact(texts: &[&str]) -> Vec<(String, bool)> {
    texts.iter().map(|t| (t.to_string(), false)).collect()
}

#[test]
fn plain_lines_backspace_and_empty_lines() {
    assert_eq!(
        run(&[Typed(b"ls -l\r\r  \rlss\x7f -x\x08l\necho ok\r\n")]),
        exact(&["ls -l", "ls -l", "echo ok"])
    );
}

#[test]
fn utf8_is_decoded_across_records_and_backspace_deletes_a_character() {
    let input = "echo h\u{e9}\u{e9}\x7f \u{1f980}\r";
    assert_eq!(
        run(&[Typed(input.as_bytes())]),
        exact(&["echo h\u{e9} \u{1f980}"])
    );
    // A stray continuation byte is not followed.
    assert_eq!(
        run(&[Typed(b"echo \x80x\r")]),
        vec![("echo x".to_string(), true)]
    );
}

#[test]
fn kill_line_kill_word_and_abandon() {
    assert_eq!(run(&[Typed(b"rm -rf /\x15ls\r")]), exact(&["ls"]), "ctrl-u");
    // Ctrl-U kills up to the cursor, like readline.
    assert_eq!(
        run(&[Typed(b"abc def\x1b[D\x1b[D\x1b[D\x15\r")]),
        exact(&["def"])
    );
    assert_eq!(
        run(&[
            Typed(b"git comit\x17commit -m x\r"),
            Typed(b"ls  foo  \x17bar\r")
        ]),
        exact(&["git commit -m x", "ls  bar"])
    );
    assert_eq!(run(&[Typed(b"oops\x03ls\r")]), exact(&["ls"]), "ctrl-c");
    assert_eq!(
        run(&[Typed(b"ls -la\x02\x02\x0b\x01x\x05y\r")]),
        exact(&["xls -y"])
    );
}

#[test]
fn cursor_keys_edit_in_the_middle_in_csi_and_ss3_forms() {
    assert_eq!(
        run(&[Typed(b"eco hi\x1b[D\x1b[D\x1b[D\x1b[Dh\x1b[C\x1b[Cw\r")]),
        exact(&["echo whi"])
    );
    assert_eq!(
        run(&[Typed(b"eco hi\x1bOD\x1bOD\x1bOD\x1bODh\r")]),
        exact(&["echo hi"])
    );
    for (home, del, end) in [
        (&b"\x1b[H"[..], &b"\x1b[3~"[..], &b"\x1b[F"[..]),
        (b"\x1bOH", b"\x1b[3~", b"\x1bOF"),
        (b"\x1b[1~", b"\x04", b"\x1b[4~"),
        (b"\x1b[7~", b"\x1b[3~", b"\x1b[8~"),
    ] {
        let keys = [&b"xcho hi"[..], home, del, b"e", end, b"!\r"].concat();
        assert_eq!(run(&[Typed(&keys)]), exact(&["echo hi!"]));
    }
    // Function keys and Alt-keys are not followed; replies of the terminal are not keys.
    assert_eq!(run(&[Typed(b"ls\x1b[15~\r")]), vec![("ls".into(), true)]);
    assert_eq!(run(&[Typed(b"ls x\x1bb\r")]), vec![("ls x".into(), true)]);
    assert_eq!(run(&[Typed(b"ls\x1b[12;40R\r")]), exact(&["ls"]));
}

#[test]
fn tab_completion_takes_the_plain_echo() {
    // Unique completion at the end of the line.
    assert_eq!(
        run(&[Typed(b"cat fi"), In(b"\t"), Out(b"le.txt "), Typed(b"\r")]),
        vec![("cat file.txt ".into(), true)]
    );
    // In the middle: readline writes the completion and the rest, then backs up over the rest.
    assert_eq!(
        run(&[
            Typed(b"cat fi x\x1b[D\x1b[D"),
            In(b"\t"),
            Out(b"le.txt  x\x08\x08"),
            Typed(b"-n\r"),
        ]),
        vec![("cat file.txt -n x".into(), true)]
    );
    // Typed in the same record as the TAB: what follows is their echo, not a redraw.
    assert_eq!(
        run(&[In(b"cat fi\t"), Out(b"cat file.txt "), Typed(b"\r")]),
        vec![("cat fi".into(), true)]
    );
    // Ambiguous: a bell, then a listing and the prompt again (not followed); typing goes on.
    assert_eq!(
        run(&[
            Typed(b"cat f"),
            In(b"\t"),
            Out(b"\x07"),
            In(b"\t"),
            Out(b"\r\nfile1  file2\r\n$ cat f"),
            Typed(b"ile1\r"),
        ]),
        vec![("cat file1".into(), true)]
    );
}

#[test]
fn history_is_approximate_and_taken_from_a_plain_redraw() {
    assert_eq!(
        run(&[In(b"\x1b[A"), Out(b"make test"), Typed(b" -j4\r")]),
        vec![("make test -j4".into(), true)]
    );
    // Up again: readline backs up to what differs and erases the rest.
    assert_eq!(
        run(&[
            In(b"\x1b[A"),
            Out(b"make test"),
            In(b"\x1bOA"),
            Out(b"\x08\x08\x08\x08\x08\x08\x08\x08\x08ls\x1b[K"),
            Typed(b"\r"),
        ]),
        vec![("ls".into(), true)]
    );
    // A redraw from the start of the prompt is not followed: the line stays what was typed.
    assert_eq!(
        run(&[
            Typed(b"ls"),
            In(b"\x10"),
            Out(b"\r$ vi x\x1b[K"),
            Typed(b"\r")
        ]),
        vec![("ls".into(), true)]
    );
}

#[test]
fn lines_never_echoed_are_dropped_and_typed_ahead_lines_are_not() {
    // A password prompt: no echo while typing nor after.
    assert_eq!(
        run(&[
            Out(b"[sudo] password for alice: "),
            In(b"h"),
            In(b"unter"),
            In(b"2"),
            In(b"\r"),
            Out(b"\r\n"),
            Out(b"total 0\r\n$ "),
            Typed(b"ls\r"),
        ]),
        exact(&["ls"])
    );
    // Masked with stars: still no character of the line.
    assert_eq!(
        run(&[
            In(b"h"),
            Out(b"*"),
            In(b"unter2"),
            Out(b"*****"),
            In(b"\r"),
            Out(b"\r\n$ "),
            Typed(b"ls\r"),
        ]),
        exact(&["ls"])
    );
    // Output keeps coming and never shows it: it is dropped once the window is full.
    let out = vec![b'x'; ECHO_WINDOW];
    let mut ed = LineEditor::default();
    let mut lines = Vec::new();
    ed.input(b"hunter2\r", 1, &mut lines);
    ed.output(&out, &mut lines);
    assert!(lines.is_empty() && ed.pending.is_empty());
    // Typed ahead in one record and echoed afterwards, edits included: both are commands.
    assert_eq!(
        run(&[
            In(b"ech\x7fho a\recho b\r"),
            Out(b"ech\x08 \x08ho a\r\n"),
            Out(b"a\r\n$ echo b\r\nb\r\n"),
        ]),
        exact(&["echo a", "echo b"])
    );
    // The echo of cursor moves and an insertion, as readline draws it.
    assert_eq!(
        run(&[
            In(b"eco x\x1b[D\x1b[D\x1b[Dh\r"),
            Out(b"$ eco x\x08\x08\x08ho x\x08\x08\x08\r\n"),
        ]),
        exact(&["echo x"])
    );
    // As bash draws them: an insertion (CSI @), a paste shown highlighted then redrawn with
    // the prompt; a password still waiting for an echo holds up no later line.
    assert_eq!(
        run(&[
            In(b"hunter2\r"),
            Out(b"\r\n$ "),
            In(b"echo -x\x1b[D\x1b[Dfour\r"),
            Out(b"echo -x\x08\x08\x1b[4@four\r\n-x\r\n$ "),
            In(b"\x1b[200~echo five\x1b[201~\r"),
            Out(b"\x1b[7mecho five\x1b[27m\r$ echo five\r\n"),
        ]),
        exact(&["echo four-x", "echo five"])
    );
    // A line typed twice is echoed twice.
    assert_eq!(
        run(&[In(b"ls\rls\r"), Out(b"ls\r\n$ ls\r\n")]),
        exact(&["ls", "ls"])
    );
}

#[test]
fn bracketed_paste_inserts_the_text() {
    assert_eq!(
        run(&[Typed(b"# \x1b[200~echo one\recho\ttwo\x1b[201~\r")]),
        exact(&["# echo one\necho\ttwo"])
    );
    // The end marker split across records.
    assert_eq!(
        run(&[Typed(b"\x1b[200~ls\x1b[20"), Typed(b"1~ -l\r")]),
        exact(&["ls -l"])
    );
}

#[test]
fn full_screen_programs_and_long_lines() {
    assert_eq!(
        run(&[
            Typed(b"vi x\r"),
            Out(b"\x1b[?1049h\x1b[H"),
            Typed(b"ihello\x1b:wq\r"),
            Out(b"\x1b[?1049l"),
            Typed(b"ls\r"),
        ]),
        exact(&["vi x", "ls"])
    );
    let mut ed = LineEditor::default();
    let mut lines = Vec::new();
    ed.input(&vec![b'a'; MAX_LINE + 10], 1, &mut lines);
    ed.output(b"a", &mut lines);
    ed.input(b"\r", 2, &mut lines);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].text.len(), MAX_LINE);
    assert!(lines[0].approximate);
}

fn data(dir: Direction, b: &[u8]) -> Event {
    Event::Data {
        dir,
        data: Bytes::copy_from_slice(b),
    }
}

fn req(request: Request) -> Event {
    Event::Request {
        dir: Direction::ClientToServer,
        request,
    }
}

#[tokio::test]
async fn commands_of_a_recorded_session() {
    let dir = tempfile::tempdir().unwrap();
    let start = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let spec = TrailSpec {
        session_id: "cmds-test".into(),
        protocol: "ssh".into(),
        meta: SessionMeta::default(),
        start,
    };
    let cfg = WriterConfig {
        fsync: false,
        ..WriterConfig::default()
    };
    let key = Arc::new(SigningKey::from_bytes(&[7u8; 32]));
    let w = TrailWriter::create(dir.path(), spec, key, cfg)
        .await
        .unwrap();
    let session = || {
        Event::Open(ChannelOpen {
            kind: "session".into(),
            originator: None,
            connected: None,
            reason: None,
        })
    };
    let (c2s, s2c) = (Direction::ClientToServer, Direction::ServerToClient);
    let events = vec![
        (1, 0, session()),
        (
            1,
            0,
            req(Request::Pty {
                term: "xterm".into(),
                cols: 80,
                rows: 24,
                width_px: 0,
                height_px: 0,
                modes: vec![],
            }),
        ),
        (1, 0, req(Request::Shell)),
        (1, 100_000, data(s2c, b"$ ")),
        (1, 1_000_000, data(c2s, b"l")),
        (1, 1_010_000, data(s2c, b"l")),
        (1, 1_100_000, data(c2s, b"s")),
        (1, 1_110_000, data(s2c, b"s")),
        (1, 1_500_000, data(c2s, b"\r")),
        (1, 1_510_000, data(s2c, b"\r\nfile\r\n$ ")),
        (2, 2_000_000, session()),
        (
            2,
            2_000_000,
            req(Request::Exec {
                command: "uptime".into(),
            }),
        ),
        (3, 2_500_000, session()),
        (
            3,
            2_500_000,
            req(Request::Exec {
                command: "rm -rf /".into(),
            }),
        ),
        (
            3,
            2_500_000,
            Event::Request {
                dir: s2c,
                request: Request::Refused {
                    request: "exec rm -rf /".into(),
                    reason: "denied by channel policy".into(),
                },
            },
        ),
        (1, 3_000_000, data(c2s, b"secret\r")),
        (1, 3_100_000, data(s2c, b"\r\n$ ")),
        (1, 4_000_000, Event::Close),
    ];
    for (ch, t, e) in events {
        w.record_at(ch, t, e).await.unwrap();
    }
    let path = w
        .finish(SessionEnd {
            reason: "client closed".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .path;
    let (cmds, integrity) = commands(&path).unwrap();
    assert_eq!(integrity, Integrity::Sealed);
    let v = serde_json::to_value(&cmds).unwrap();
    assert_eq!(
        v,
        serde_json::json!([
            {"channel": 1, "time": "2023-11-14T22:13:21.5Z", "offset_s": 1.5, "kind": "shell",
             "command": "ls", "approximate": false},
            {"channel": 2, "time": "2023-11-14T22:13:22Z", "offset_s": 2.0,
             "kind": "exec", "command": "uptime", "approximate": false},
            {"channel": 3, "time": "2023-11-14T22:13:22.5Z", "offset_s": 2.5,
             "kind": "exec", "command": "rm -rf /", "approximate": false,
             "refused": "denied by channel policy"},
        ])
    );
}
