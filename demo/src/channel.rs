//! One session channel of the demo target: waits for its request (an optional pty, then a
//! shell, a command or `sftp`), runs it as the demo's OS account, relays its input and output,
//! and ends with its exit status.

use std::path::Path;
use std::process::Stdio;

use russh::server::Msg;
use russh::{Channel, ChannelMsg};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::pty;

/// OpenSSH's sftp-server, where Debian and others install it.
pub fn sftp_server() -> Option<&'static str> {
    [
        "/usr/lib/openssh/sftp-server",
        "/usr/libexec/openssh/sftp-server",
        "/usr/lib/ssh/sftp-server",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
}

enum What {
    Shell,
    Exec(String),
    Sftp,
}

fn command(what: &What) -> Option<tokio::process::Command> {
    let shell = std::env::var("SHELL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/bin/sh".into());
    let mut c = match what {
        What::Shell => {
            let mut c = tokio::process::Command::new(&shell);
            c.arg("-l");
            c
        }
        What::Exec(cmd) => {
            let mut c = tokio::process::Command::new(&shell);
            c.arg("-c").arg(cmd);
            c
        }
        What::Sftp => tokio::process::Command::new(sftp_server()?),
    };
    if let Some(home) = std::env::var_os("HOME") {
        c.current_dir(home);
    }
    Some(c)
}

/// Runs one session channel to its end.
pub async fn run(channel: Channel<Msg>) {
    let (mut rd, wr) = channel.split();
    let mut pty_req: Option<(String, u16, u16)> = None;
    let what = loop {
        match rd.wait().await {
            None => return,
            Some(ChannelMsg::RequestPty {
                term,
                col_width,
                row_height,
                ..
            }) => pty_req = Some((term, clamp(col_width), clamp(row_height))),
            Some(ChannelMsg::RequestShell { .. }) => break What::Shell,
            Some(ChannelMsg::Exec { command, .. }) => {
                break What::Exec(String::from_utf8_lossy(&command).into_owned());
            }
            Some(ChannelMsg::RequestSubsystem { name, .. }) if name == "sftp" => break What::Sftp,
            Some(_) => {}
        }
    };
    let Some(cmd) = command(&what) else {
        let _ = wr.exit_status(127).await;
        let _ = wr.eof().await;
        let _ = wr.close().await;
        return;
    };
    let code = match (pty_req, &what) {
        (Some((term, cols, rows)), What::Shell | What::Exec(_)) => {
            match pty::spawn(cmd, &term, cols, rows) {
                Ok(p) => in_pty(p, &mut rd, wr.make_writer()).await,
                Err(e) => {
                    tracing::warn!(error = %e, "demo target: cannot start a pty");
                    1
                }
            }
        }
        _ => piped(cmd, &mut rd, wr.make_writer(), wr.make_writer_ext(Some(1))).await,
    };
    let _ = wr.exit_status(code).await;
    let _ = wr.eof().await;
    let _ = wr.close().await;
}

fn clamp(v: u32) -> u16 {
    v.min(u32::from(u16::MAX)) as u16
}

fn exit_code(s: std::io::Result<std::process::ExitStatus>) -> u32 {
    use std::os::unix::process::ExitStatusExt;
    match s {
        Ok(s) => s
            .code()
            .map(|c| c as u32)
            .unwrap_or_else(|| 128 + s.signal().unwrap_or(0) as u32),
        Err(_) => 255,
    }
}

/// Copies a process's output to the channel; a pty's EIO is its end of file.
async fn pump_out(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin) {
    let _ = tokio::io::copy(&mut from, &mut to).await;
    let _ = to.flush().await;
}

async fn in_pty(
    mut p: pty::PtyProcess,
    rd: &mut russh::ChannelReadHalf,
    out: impl AsyncWrite + Unpin + Send + 'static,
) -> u32 {
    let Some(reader) = p.reader.take() else {
        return 255;
    };
    let output = tokio::spawn(pump_out(reader, out));
    let status = loop {
        tokio::select! {
            s = p.child.wait() => break s,
            msg = rd.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    if p.writer.write_all(&data).await.is_err() {
                        continue;
                    }
                    let _ = p.writer.flush().await;
                }
                Some(ChannelMsg::WindowChange { col_width, row_height, .. }) => {
                    p.resize(clamp(col_width), clamp(row_height));
                }
                Some(_) => {}
                None => {
                    // The client went away: so does the shell.
                    let _ = p.child.start_kill();
                }
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), output).await;
    exit_code(status)
}

async fn piped(
    mut cmd: tokio::process::Command,
    rd: &mut russh::ChannelReadHalf,
    out: impl AsyncWrite + Unpin + Send + 'static,
    err: impl AsyncWrite + Unpin + Send + 'static,
) -> u32 {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "demo target: cannot start the command");
            return 127;
        }
    };
    let mut stdin = child.stdin.take();
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return 255;
    };
    let o = tokio::spawn(pump_out(stdout, out));
    let e = tokio::spawn(pump_out(stderr, err));
    let status = loop {
        tokio::select! {
            s = child.wait() => break s,
            msg = rd.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    if let Some(i) = stdin.as_mut()
                        && i.write_all(&data).await.is_err()
                    {
                        stdin = None;
                    }
                }
                Some(ChannelMsg::Eof) => stdin = None,
                Some(_) => {}
                None => {
                    stdin = None;
                    let _ = child.start_kill();
                }
            }
        }
    };
    let _ = o.await;
    let _ = e.await;
    exit_code(status)
}
