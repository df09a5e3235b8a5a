//! Pseudo-terminals: a process in a new session with a pty as its controlling terminal, the
//! master side for the caller (reader and writer), and window-size changes.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Stdio;

/// A process running in a pty.
pub struct PtyProcess {
    pub child: tokio::process::Child,
    /// Output of the terminal (reads end with EIO once every process holding the pty is gone);
    /// taken by whoever pumps it.
    pub reader: Option<tokio::fs::File>,
    /// Input to the terminal.
    pub writer: tokio::fs::File,
    master: OwnedFd,
}

fn winsize(cols: u16, rows: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows.max(1),
        ws_col: cols.max(1),
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// Starts `cmd` with a new pty of `cols` x `rows` (0 means 80 x 24) as its terminal.
pub fn spawn(
    mut cmd: tokio::process::Command,
    term: &str,
    cols: u16,
    rows: u16,
) -> std::io::Result<PtyProcess> {
    let (cols, rows) = if cols == 0 || rows == 0 {
        (80, 24)
    } else {
        (cols, rows)
    };
    let (mut master, mut slave) = (0, 0);
    let ws = winsize(cols, rows);
    // SAFETY: openpty writes two descriptors it opened into the given integers.
    if unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &ws,
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just opened by openpty and are owned by nothing else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    cmd.stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave))
        .env("TERM", if term.is_empty() { "xterm" } else { term })
        .kill_on_drop(true);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    // The parent's copies of the slave side go with `cmd`: the terminal reports EOF (EIO) once
    // the processes in it are gone.
    drop(cmd);
    let reader = tokio::fs::File::from_std(std::fs::File::from(master.try_clone()?));
    let writer = tokio::fs::File::from_std(std::fs::File::from(master.try_clone()?));
    Ok(PtyProcess {
        child,
        reader: Some(reader),
        writer,
        master,
    })
}

impl PtyProcess {
    /// The terminal's new size (the client's window changed).
    pub fn resize(&self, cols: u16, rows: u16) {
        let ws = winsize(cols, rows);
        // SAFETY: TIOCSWINSZ reads a winsize from the pointer; the descriptor is ours.
        unsafe {
            libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}
