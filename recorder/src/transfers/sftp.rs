//! SFTP (version 3, as OpenSSH speaks it) from the two recorded byte streams of one channel:
//! packets are framed per direction, requests are matched with their replies by id (replies may
//! come in any order), handles are followed from OPEN to CLOSE, and every file's content is
//! reported as it crossed, by offset. Pure: bytes in, events out; memory is bounded by the
//! packets in flight, whatever the file sizes.

use std::collections::HashMap;

/// The largest SFTP packet accepted (OpenSSH's limit is 256 KiB; beyond this the stream is not
/// followed further).
const MAX_PACKET: usize = 1 << 20;

mod op {
    pub const INIT: u8 = 1;
    pub const OPEN: u8 = 3;
    pub const CLOSE: u8 = 4;
    pub const READ: u8 = 5;
    pub const WRITE: u8 = 6;
    pub const SETSTAT: u8 = 9;
    pub const FSETSTAT: u8 = 10;
    pub const REMOVE: u8 = 13;
    pub const MKDIR: u8 = 14;
    pub const RMDIR: u8 = 15;
    pub const RENAME: u8 = 18;
    pub const SYMLINK: u8 = 20;
    pub const STATUS: u8 = 101;
    pub const HANDLE: u8 = 102;
    pub const DATA: u8 = 103;
    pub const EXTENDED: u8 = 200;
}

const FXF_WRITE: u32 = 0x02;

/// What the parser reports.
#[derive(Debug, Clone, PartialEq)]
pub enum SftpEvent {
    /// A file was opened: `upload` when opened for writing.
    Opened {
        file: u64,
        path: String,
        upload: bool,
    },
    /// Content at an offset (upload: a WRITE the server acknowledged or not yet; download: DATA).
    Content {
        file: u64,
        offset: u64,
        data: Vec<u8>,
    },
    /// A WRITE the server refused, or a READ that failed.
    Failed {
        file: u64,
        message: String,
    },
    Closed {
        file: u64,
    },
    /// OPEN refused by the server: no handle, a failed transfer of `path`.
    OpenFailed {
        path: String,
        upload: bool,
        message: String,
    },
    /// Another operation and its outcome: `remove`, `rename`, `mkdir`, `rmdir`, `setstat`,
    /// `symlink`.
    Operation {
        op: &'static str,
        paths: Vec<String>,
        ok: bool,
        message: String,
    },
}

enum Pending {
    Open {
        path: String,
        upload: bool,
    },
    Read {
        file: u64,
        offset: u64,
    },
    Write {
        file: u64,
    },
    Close {
        file: u64,
    },
    Op {
        op: &'static str,
        paths: Vec<String>,
    },
}

/// One direction's framing: bytes in, whole packets out.
#[derive(Default)]
struct Framer {
    buf: Vec<u8>,
    broken: bool,
}

impl Framer {
    fn push(&mut self, data: &[u8], out: &mut Vec<Vec<u8>>) {
        if self.broken {
            return;
        }
        self.buf.extend_from_slice(data);
        let mut at = 0;
        while self.buf.len() - at >= 4 {
            let len = u32::from_be_bytes([
                self.buf[at],
                self.buf[at + 1],
                self.buf[at + 2],
                self.buf[at + 3],
            ]) as usize;
            if len == 0 || len > MAX_PACKET {
                self.broken = true;
                self.buf.clear();
                return;
            }
            if self.buf.len() - at - 4 < len {
                break;
            }
            out.push(self.buf[at + 4..at + 4 + len].to_vec());
            at += 4 + len;
        }
        self.buf.drain(..at);
    }
}

/// A cursor over one packet's fields.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u32(&mut self) -> Option<u32> {
        let b = self.0.get(..4)?;
        let v = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        self.0 = &self.0[4..];
        Some(v)
    }
    fn u64(&mut self) -> Option<u64> {
        let b = self.0.get(..8)?;
        let v = u64::from_be_bytes(b.try_into().ok()?);
        self.0 = &self.0[8..];
        Some(v)
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        let b = self.0.get(..n)?;
        self.0 = &self.0[n..];
        Some(b)
    }
    fn string(&mut self) -> Option<String> {
        self.bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

/// One SFTP channel's state.
#[derive(Default)]
pub struct SftpStream {
    c2s: Framer,
    s2c: Framer,
    pending: HashMap<u32, Pending>,
    handles: HashMap<Vec<u8>, u64>,
    /// Files opened so far (ids are per channel, in open order).
    next_file: u64,
    /// Open files by id, and whether each is an upload.
    files: HashMap<u64, bool>,
}

impl SftpStream {
    /// Client-to-server bytes.
    pub fn client(&mut self, data: &[u8], out: &mut Vec<SftpEvent>) {
        let mut packets = Vec::new();
        self.c2s.push(data, &mut packets);
        for p in packets {
            self.request(&p, out);
        }
    }

    /// Server-to-client bytes.
    pub fn server(&mut self, data: &[u8], out: &mut Vec<SftpEvent>) {
        let mut packets = Vec::new();
        self.s2c.push(data, &mut packets);
        for p in packets {
            self.reply(&p, out);
        }
    }

    /// Files still open (the channel or session ended under them).
    pub fn open_files(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.files.keys().copied().collect();
        v.sort_unstable();
        v
    }

    fn request(&mut self, p: &[u8], out: &mut Vec<SftpEvent>) {
        let mut f = Fields(p);
        let Some(kind) = f.u8() else { return };
        if kind == op::INIT {
            return;
        }
        let Some(id) = f.u32() else { return };
        let pending = match kind {
            op::OPEN => {
                let (Some(path), Some(flags)) = (f.string(), f.u32()) else {
                    return;
                };
                Pending::Open {
                    path,
                    upload: flags & FXF_WRITE != 0,
                }
            }
            op::READ => {
                let (Some(h), Some(offset)) = (f.bytes(), f.u64()) else {
                    return;
                };
                let Some(&file) = self.handles.get(h) else {
                    return;
                };
                Pending::Read { file, offset }
            }
            op::WRITE => {
                let (Some(h), Some(offset), Some(data)) = (f.bytes(), f.u64(), f.bytes()) else {
                    return;
                };
                let Some(&file) = self.handles.get(h) else {
                    return;
                };
                out.push(SftpEvent::Content {
                    file,
                    offset,
                    data: data.to_vec(),
                });
                Pending::Write { file }
            }
            op::CLOSE => {
                let Some(h) = f.bytes() else { return };
                match self.handles.remove(h) {
                    Some(file) => Pending::Close { file },
                    // A directory handle (OPENDIR): not a transfer.
                    None => return,
                }
            }
            op::REMOVE => Pending::Op {
                op: "remove",
                paths: f.string().into_iter().collect(),
            },
            op::RMDIR => Pending::Op {
                op: "rmdir",
                paths: f.string().into_iter().collect(),
            },
            op::MKDIR => Pending::Op {
                op: "mkdir",
                paths: f.string().into_iter().collect(),
            },
            op::SETSTAT => Pending::Op {
                op: "setstat",
                paths: f.string().into_iter().collect(),
            },
            op::FSETSTAT => return,
            op::RENAME => Pending::Op {
                op: "rename",
                paths: [f.string(), f.string()].into_iter().flatten().collect(),
            },
            op::SYMLINK => Pending::Op {
                op: "symlink",
                paths: [f.string(), f.string()].into_iter().flatten().collect(),
            },
            op::EXTENDED => {
                let name = f.string().unwrap_or_default();
                match name.as_str() {
                    "posix-rename@openssh.com" => Pending::Op {
                        op: "rename",
                        paths: [f.string(), f.string()].into_iter().flatten().collect(),
                    },
                    "hardlink@openssh.com" => Pending::Op {
                        op: "hardlink",
                        paths: [f.string(), f.string()].into_iter().flatten().collect(),
                    },
                    _ => return,
                }
            }
            _ => return,
        };
        self.pending.insert(id, pending);
    }

    fn reply(&mut self, p: &[u8], out: &mut Vec<SftpEvent>) {
        let mut f = Fields(p);
        let Some(kind) = f.u8() else { return };
        if !matches!(kind, op::STATUS | op::HANDLE | op::DATA) {
            // NAME, ATTRS, VERSION, EXTENDED_REPLY: nothing about transfers; drop the request.
            if let Some(id) = f.u32() {
                self.pending.remove(&id);
            }
            return;
        }
        let Some(id) = f.u32() else { return };
        let Some(req) = self.pending.remove(&id) else {
            return;
        };
        match (kind, req) {
            (op::HANDLE, Pending::Open { path, upload }) => {
                let Some(h) = f.bytes() else { return };
                let file = self.next_file;
                self.next_file += 1;
                self.handles.insert(h.to_vec(), file);
                self.files.insert(file, upload);
                out.push(SftpEvent::Opened { file, path, upload });
            }
            (op::STATUS, Pending::Open { path, upload }) => {
                let (code, msg) = (f.u32().unwrap_or(0), f.string().unwrap_or_default());
                out.push(SftpEvent::OpenFailed {
                    path,
                    upload,
                    message: status_text(code, &msg),
                });
            }
            (op::DATA, Pending::Read { file, offset }) => {
                if let Some(data) = f.bytes() {
                    out.push(SftpEvent::Content {
                        file,
                        offset,
                        data: data.to_vec(),
                    });
                }
            }
            (op::STATUS, Pending::Read { file, .. }) => {
                // EOF (1) ends a download normally; anything else is a failure.
                let (code, msg) = (f.u32().unwrap_or(0), f.string().unwrap_or_default());
                if code != 1 {
                    out.push(SftpEvent::Failed {
                        file,
                        message: status_text(code, &msg),
                    });
                }
            }
            (op::STATUS, Pending::Write { file }) => {
                let (code, msg) = (f.u32().unwrap_or(0), f.string().unwrap_or_default());
                if code != 0 {
                    out.push(SftpEvent::Failed {
                        file,
                        message: status_text(code, &msg),
                    });
                }
            }
            (op::STATUS, Pending::Close { file }) => {
                self.files.remove(&file);
                out.push(SftpEvent::Closed { file });
            }
            (op::STATUS, Pending::Op { op, paths }) => {
                let (code, msg) = (f.u32().unwrap_or(0), f.string().unwrap_or_default());
                out.push(SftpEvent::Operation {
                    op,
                    paths,
                    ok: code == 0,
                    message: status_text(code, &msg),
                });
            }
            _ => {}
        }
    }
}

fn status_text(code: u32, msg: &str) -> String {
    let name = match code {
        0 => "ok",
        1 => "eof",
        2 => "no such file",
        3 => "permission denied",
        4 => "failure",
        5 => "bad message",
        8 => "operation unsupported",
        _ => "error",
    };
    if msg.is_empty() {
        name.to_string()
    } else {
        format!("{name}: {msg}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(kind: u8, fields: &[&[u8]]) -> Vec<u8> {
        let mut body = vec![kind];
        for f in fields {
            body.extend_from_slice(f);
        }
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend(body);
        out
    }
    fn s(b: &[u8]) -> Vec<u8> {
        let mut v = (b.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(b);
        v
    }

    #[test]
    fn an_upload_with_replies_out_of_order_and_split_packets() {
        let mut st = SftpStream::default();
        let mut ev = Vec::new();
        let id = |n: u32| n.to_be_bytes();
        let open = pkt(
            op::OPEN,
            &[
                &id(1),
                &s(b"/tmp/a b"),
                &0x1au32.to_be_bytes(),
                &0u32.to_be_bytes(),
            ],
        );
        // Split across records.
        st.client(&open[..5], &mut ev);
        st.client(&open[5..], &mut ev);
        st.server(&pkt(op::HANDLE, &[&id(1), &s(b"h1")]), &mut ev);
        let w1 = pkt(
            op::WRITE,
            &[&id(2), &s(b"h1"), &0u64.to_be_bytes(), &s(b"hello ")],
        );
        let w2 = pkt(
            op::WRITE,
            &[&id(3), &s(b"h1"), &6u64.to_be_bytes(), &s(b"world")],
        );
        st.client(&[w1, w2].concat(), &mut ev);
        st.server(
            &pkt(op::STATUS, &[&id(3), &0u32.to_be_bytes(), &s(b""), &s(b"")]),
            &mut ev,
        );
        st.server(
            &pkt(op::STATUS, &[&id(2), &0u32.to_be_bytes(), &s(b""), &s(b"")]),
            &mut ev,
        );
        st.client(&pkt(op::CLOSE, &[&id(4), &s(b"h1")]), &mut ev);
        st.server(
            &pkt(op::STATUS, &[&id(4), &0u32.to_be_bytes(), &s(b""), &s(b"")]),
            &mut ev,
        );
        assert_eq!(
            ev,
            vec![
                SftpEvent::Opened {
                    file: 0,
                    path: "/tmp/a b".into(),
                    upload: true
                },
                SftpEvent::Content {
                    file: 0,
                    offset: 0,
                    data: b"hello ".to_vec()
                },
                SftpEvent::Content {
                    file: 0,
                    offset: 6,
                    data: b"world".to_vec()
                },
                SftpEvent::Closed { file: 0 },
            ]
        );
        assert!(st.open_files().is_empty());
    }

    #[test]
    fn refused_writes_and_opens_and_other_operations() {
        let mut st = SftpStream::default();
        let mut ev = Vec::new();
        let id = |n: u32| n.to_be_bytes();
        st.client(
            &pkt(
                op::OPEN,
                &[
                    &id(7),
                    &s(b"/etc/x"),
                    &0x1au32.to_be_bytes(),
                    &0u32.to_be_bytes(),
                ],
            ),
            &mut ev,
        );
        st.server(
            &pkt(
                op::STATUS,
                &[
                    &id(7),
                    &3u32.to_be_bytes(),
                    &s(b"Permission denied"),
                    &s(b""),
                ],
            ),
            &mut ev,
        );
        st.client(&pkt(op::RENAME, &[&id(8), &s(b"/a"), &s(b"/b")]), &mut ev);
        st.server(
            &pkt(op::STATUS, &[&id(8), &0u32.to_be_bytes(), &s(b""), &s(b"")]),
            &mut ev,
        );
        assert_eq!(
            ev,
            vec![
                SftpEvent::OpenFailed {
                    path: "/etc/x".into(),
                    upload: true,
                    message: "permission denied: Permission denied".into()
                },
                SftpEvent::Operation {
                    op: "rename",
                    paths: vec!["/a".into(), "/b".into()],
                    ok: true,
                    message: "ok".into()
                },
            ]
        );
        // An absurd length stops the parse of that stream, without panicking or buffering.
        st.client(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3], &mut ev);
        st.client(&[0u8; 100], &mut ev);
        assert_eq!(ev.len(), 2);
    }
}
