//! Files transferred in a session, from its trail alone (so it works on every trail ever
//! written, sealed or live): SFTP channels (the `sftp` subsystem, which OpenSSH's `scp` also uses
//! by default) are parsed as they were recorded, streaming, in memory bounded by what is in
//! flight and not by file sizes.
//!
//! Modules:
//! - [`sftp`]: the SFTP v3 parser (framing, request/reply matching, handles); pure.
//! - [`scp`]: the classic scp protocol (`scp -O`: `scp -t` / `scp -f` over exec); pure.
//! - `hash`: the files' SHA-256, in order, on a thread of their own.

mod hash;
pub mod scp;
pub mod sftp;

use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use serde::Serialize;

use crate::error::{RecorderError, Result};
use crate::format::{Direction, Event, Request};
use crate::reader::TrailReader;
use hash::{HashWorker, Hashing};
use scp::{ScpEvent, ScpStream};
use sftp::{SftpEvent, SftpStream};

/// One file that crossed the gateway.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TransferredFile {
    /// Number of the file in the session (for `extract` and the API).
    pub n: usize,
    pub channel: u32,
    pub path: String,
    /// `upload` (client to target) or `download`.
    pub direction: &'static str,
    /// Bytes of content that crossed (overlapping parts counted once).
    pub bytes: u64,
    /// The byte ranges that crossed, `[start, end)`, merged.
    pub ranges: Vec<(u64, u64)>,
    /// Every byte from 0 to the end crossed, once and in order.
    pub contiguous: bool,
    /// SHA-256 of the content, when it crossed contiguously.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Seconds from the session's start.
    pub opened_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_s: Option<f64>,
    /// `ok`, `unclean_close` (the channel or session ended mid-transfer) or `failed`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Another file operation (remove, rename, mkdir, rmdir, setstat, symlink).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FileOperation {
    pub channel: u32,
    pub op: &'static str,
    pub paths: Vec<String>,
    pub ok: bool,
    pub message: String,
    pub time_s: f64,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Transfers {
    pub files: Vec<TransferredFile>,
    pub operations: Vec<FileOperation>,
}

fn add_range(ranges: &mut Vec<(u64, u64)>, start: u64, end: u64) {
    if start >= end {
        return;
    }
    ranges.push((start, end));
    if ranges.len() > 1
        && ranges[ranges.len() - 2].1 >= start
        && ranges[ranges.len() - 2].0 <= start
    {
        // The common case: appending to the last range.
        let last = ranges.pop().unwrap_or((start, end));
        if let Some(prev) = ranges.last_mut() {
            prev.1 = prev.1.max(last.1);
        }
        return;
    }
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for &(s, e) in ranges.iter() {
        match merged.last_mut() {
            Some(m) if s <= m.1 => m.1 = m.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    *ranges = merged;
}

struct Live {
    n: usize,
    hashing: Hashing,
}

const RSYNC_NOTE: &str = "rsync's own protocol: its files are not listed one by one";

/// An rsync over SSH (`rsync --server ...` on the target): one operation naming the direction
/// and the target path; the rsync protocol (delta transfer) is not decoded into files.
pub fn rsync_operation(channel: u32, command: &str, time_s: f64) -> Option<FileOperation> {
    let rest = command.strip_prefix("rsync --server")?;
    let args: Vec<&str> = rest.split_whitespace().collect();
    let download = args.contains(&"--sender");
    // The server's arguments end with `.` and the paths.
    let paths: Vec<String> = match args.iter().position(|a| *a == ".") {
        Some(i) => args[i + 1..].iter().map(|p| p.to_string()).collect(),
        None => args.last().map(|p| p.to_string()).into_iter().collect(),
    };
    Some(FileOperation {
        channel,
        op: if download {
            "rsync-download"
        } else {
            "rsync-upload"
        },
        paths,
        ok: false,
        message: format!("rsync did not report an exit status; {RSYNC_NOTE}"),
        time_s,
    })
}

/// The scan shared by [`index`] and [`extract`]: `sink` sees every piece of content with its
/// file number and offset.
fn scan(path: &Path, mut sink: impl FnMut(usize, u64, &[u8]) -> Result<()>) -> Result<Transfers> {
    let mut r = TrailReader::open(path)?;
    let mut streams: HashMap<u32, SftpStream> = HashMap::new();
    let mut scps: HashMap<u32, ScpStream> = HashMap::new();
    let mut scp_events = Vec::new();
    // rsync channels: their operation's index, to complete it with the exit status.
    let mut rsyncs: HashMap<u32, usize> = HashMap::new();
    let mut live: HashMap<(u32, u64), Live> = HashMap::new();
    let mut out = Transfers::default();
    let mut hasher = HashWorker::start();
    let mut last_s = 0.0;
    let mut events = Vec::new();
    r.for_each_record(|rec| {
        let t = rec.time_us as f64 / 1e6;
        last_s = t;
        let ch = rec.channel;
        match &rec.event {
            Event::Request {
                request: Request::Subsystem { name },
                ..
            } if name == "sftp" => {
                streams.entry(ch).or_default();
            }
            Event::Request {
                request: Request::Exec { command },
                ..
            } => {
                if let Some(s) = ScpStream::from_command(command) {
                    scps.insert(ch, s);
                } else if let Some(op) = rsync_operation(ch, command, t) {
                    rsyncs.insert(ch, out.operations.len());
                    out.operations.push(op);
                }
            }
            Event::Request {
                request: Request::ExitStatus { status },
                ..
            } if rsyncs.contains_key(&ch) => {
                if let Some(op) = rsyncs.get(&ch).and_then(|&i| out.operations.get_mut(i)) {
                    op.ok = *status == 0;
                    op.message = format!("rsync exited with status {status}; {RSYNC_NOTE}");
                }
            }
            Event::Data { dir, data } => {
                if let Some(st) = streams.get_mut(&ch) {
                    match dir {
                        Direction::ClientToServer => st.client(data, &mut events),
                        Direction::ServerToClient => st.server(data, &mut events),
                    }
                }
                if let Some(s) = scps.get_mut(&ch) {
                    if (*dir == Direction::ClientToServer) == s.upload {
                        s.source(data, &mut scp_events);
                    } else {
                        s.sink(data, &mut scp_events);
                    }
                    let upload = s.upload;
                    // Same shapes as SFTP's: one path below handles both.
                    for e in scp_events.drain(..) {
                        events.push(match e {
                            ScpEvent::Opened { file, path } => {
                                SftpEvent::Opened { file, path, upload }
                            }
                            ScpEvent::Content { file, offset, data } => {
                                SftpEvent::Content { file, offset, data }
                            }
                            ScpEvent::Closed { file } => SftpEvent::Closed { file },
                            ScpEvent::Failed { file, message } => {
                                SftpEvent::Failed { file, message }
                            }
                        });
                    }
                }
            }
            Event::Close => {
                scps.remove(&ch);
                streams.remove(&ch);
                // Files still open on the channel were cut off.
                let open: Vec<(u32, u64)> =
                    live.keys().filter(|(c, _)| *c == ch).copied().collect();
                for key in open {
                    if let Some(l) = live.remove(&key) {
                        finish(
                            &mut out.files[l.n],
                            l.hashing,
                            t,
                            "unclean_close",
                            Some("the channel closed mid-transfer".into()),
                        );
                    }
                }
            }
            _ => {}
        }
        for ev in events.drain(..) {
            match ev {
                SftpEvent::Opened { file, path, upload } => {
                    let n = out.files.len();
                    out.files.push(new_file(n, ch, path, upload, t));
                    live.insert(
                        (ch, file),
                        Live {
                            n,
                            hashing: Hashing::new(),
                        },
                    );
                }
                SftpEvent::OpenFailed {
                    path,
                    upload,
                    message,
                } => {
                    let n = out.files.len();
                    let mut f = new_file(n, ch, path, upload, t);
                    f.status = "failed";
                    f.error = Some(message);
                    f.closed_s = Some(t);
                    out.files.push(f);
                }
                SftpEvent::Content { file, offset, data } => {
                    if let Some(l) = live.get_mut(&(ch, file)) {
                        let f = &mut out.files[l.n];
                        add_range(&mut f.ranges, offset, offset + data.len() as u64);
                        sink(l.n, offset, &data)?;
                        l.hashing.add(&mut hasher, l.n, offset, data);
                    }
                }
                SftpEvent::Failed { file, message } => {
                    if let Some(l) = live.get(&(ch, file)) {
                        let f = &mut out.files[l.n];
                        f.status = "failed";
                        f.error.get_or_insert(message);
                    }
                }
                SftpEvent::Closed { file } => {
                    if let Some(l) = live.remove(&(ch, file)) {
                        let status = out.files[l.n].status;
                        finish(&mut out.files[l.n], l.hashing, t, status, None);
                    }
                }
                SftpEvent::Operation {
                    op,
                    paths,
                    ok,
                    message,
                } => {
                    out.operations.push(FileOperation {
                        channel: ch,
                        op,
                        paths,
                        ok,
                        message,
                        time_s: t,
                    });
                }
            }
        }
        Ok(())
    })?;
    // The session ended (or the trail ends here, live) with files still open.
    for (_, l) in live {
        let why = "the session ended mid-transfer (or the trail is still being written)";
        finish(
            &mut out.files[l.n],
            l.hashing,
            last_s,
            "unclean_close",
            Some(why.into()),
        );
        out.files[l.n].closed_s = None;
    }
    // The hashes of files that crossed whole (or whose crossed part is one run from 0).
    let digests = hasher.finish()?;
    for f in out.files.iter_mut().filter(|f| f.sha256.is_some()) {
        f.sha256 = Some(hex::encode(
            digests.get(&f.n).copied().unwrap_or(hash::EMPTY),
        ));
    }
    Ok(out)
}

fn new_file(n: usize, channel: u32, path: String, upload: bool, t: f64) -> TransferredFile {
    TransferredFile {
        n,
        channel,
        path,
        direction: if upload { "upload" } else { "download" },
        bytes: 0,
        ranges: Vec::new(),
        contiguous: true,
        sha256: None,
        opened_s: t,
        closed_s: None,
        status: "ok",
        error: None,
    }
}

fn finish(
    f: &mut TransferredFile,
    h: Hashing,
    t: f64,
    status: &'static str,
    error: Option<String>,
) {
    f.bytes = f.ranges.iter().map(|(s, e)| e - s).sum();
    f.contiguous = !h.broken
        && h.pending.is_empty()
        && f.ranges.len() <= 1
        && f.ranges.first().is_none_or(|r| r.0 == 0);
    // Marked for its hash, which the hashing thread gives when the scan is over.
    if f.contiguous {
        f.sha256 = Some(String::new());
    }
    f.closed_s = Some(t);
    f.status = status;
    if error.is_some() {
        f.error = error;
    }
}

/// The files and file operations of a trail.
pub fn index(path: &Path) -> Result<Transfers> {
    scan(path, |_, _, _| Ok(()))
}

/// Writes file `n`'s content to `out` exactly as it crossed (each part at its offset; parts that
/// never crossed stay holes). Returns the file's entry.
pub fn extract(path: &Path, n: usize, out: &mut std::fs::File) -> Result<TransferredFile> {
    let t = scan(path, |file, offset, data| {
        if file == n {
            out.seek(SeekFrom::Start(offset))?;
            out.write_all(data)?;
        }
        Ok(())
    })?;
    let f = t
        .files
        .into_iter()
        .nth(n)
        .ok_or_else(|| RecorderError::Record(format!("no file {n} in this trail")))?;
    // A file whose last part never crossed still has its size where the parts end.
    out.set_len(f.ranges.last().map_or(0, |r| r.1))?;
    out.flush()?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_rewrites_break_the_hash() {
        let mut r = Vec::new();
        add_range(&mut r, 0, 10);
        add_range(&mut r, 10, 20);
        add_range(&mut r, 30, 40);
        add_range(&mut r, 20, 30);
        assert_eq!(r, vec![(0, 40)]);
        add_range(&mut r, 50, 60);
        assert_eq!(r, vec![(0, 40), (50, 60)]);

        let mut w = HashWorker::start();
        let mut h = Hashing::new();
        h.add(&mut w, 0, 0, b"hello".to_vec());
        h.add(&mut w, 0, 0, b"hello".to_vec());
        assert!(h.broken);
    }
}
