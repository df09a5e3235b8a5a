//! The classic scp protocol (`scp -O`: an exec channel running `scp -t` to upload or `scp -f`
//! to download) from the recorded streams: the source side sends `C<mode> <size> <name>` (and
//! `D`/`E` around directories, `T` times), then the file's bytes and a NUL; the sink answers
//! each step with NUL, or `\x01`/`\x02` and a message. Pure, bounded memory.

/// What the parser reports (files are numbered per channel).
#[derive(Debug, Clone, PartialEq)]
pub enum ScpEvent {
    Opened {
        file: u64,
        path: String,
    },
    Content {
        file: u64,
        offset: u64,
        data: Vec<u8>,
    },
    Closed {
        file: u64,
    },
    Failed {
        file: u64,
        message: String,
    },
}

/// The longest control line accepted.
const MAX_LINE: usize = 64 * 1024;

enum State {
    /// Reading a control line.
    Line(Vec<u8>),
    /// Reading a file's bytes.
    Data {
        file: u64,
        size: u64,
        done: u64,
    },
    /// After the data: the source's NUL.
    Trailer {
        file: u64,
    },
    Broken,
}

/// One scp channel: `upload` when the client is the source (`scp -t`).
pub struct ScpStream {
    pub upload: bool,
    base: String,
    join: bool,
    dirs: Vec<String>,
    state: State,
    next_file: u64,
    open: Option<u64>,
    /// The sink's error line being read (`\x01`/`\x02` ... `\n`).
    sink_err: Option<Vec<u8>>,
}

impl ScpStream {
    /// From the exec command, when it is an scp sink or source (`scp [-r] [-d] [-p] -t|-f PATH`).
    pub fn from_command(command: &str) -> Option<ScpStream> {
        let mut words = command.split_whitespace();
        if !words.next()?.ends_with("scp") {
            return None;
        }
        let (mut mode, mut join, mut path) = (None, false, String::new());
        for w in words {
            match w {
                "-t" => mode = Some(true),
                "-f" => mode = Some(false),
                "-r" | "-d" => join = true,
                "--" => {}
                w if w.starts_with('-') => {}
                w => path = w.to_string(),
            }
        }
        let upload = mode?;
        Some(ScpStream {
            upload,
            join: join || path.ends_with('/'),
            base: path.trim_end_matches('/').to_string(),
            dirs: Vec::new(),
            state: State::Line(Vec::new()),
            next_file: 0,
            open: None,
            sink_err: None,
        })
    }

    /// Bytes from the source side (the client for uploads, the target for downloads).
    pub fn source(&mut self, mut data: &[u8], out: &mut Vec<ScpEvent>) {
        while !data.is_empty() {
            match &mut self.state {
                State::Broken => return,
                State::Line(line) => {
                    let Some(nl) = data.iter().position(|&b| b == b'\n') else {
                        line.extend_from_slice(data);
                        if line.len() > MAX_LINE {
                            self.state = State::Broken;
                        }
                        return;
                    };
                    line.extend_from_slice(&data[..nl]);
                    data = &data[nl + 1..];
                    let l = std::mem::take(line);
                    self.control(&l, out);
                }
                State::Data { file, size, done } => {
                    let n = ((*size - *done) as usize).min(data.len());
                    if n > 0 {
                        out.push(ScpEvent::Content {
                            file: *file,
                            offset: *done,
                            data: data[..n].to_vec(),
                        });
                        *done += n as u64;
                        data = &data[n..];
                    }
                    if *done == *size {
                        self.state = State::Trailer { file: *file };
                    }
                }
                State::Trailer { file } => {
                    let f = *file;
                    data = &data[1..];
                    self.open = None;
                    out.push(ScpEvent::Closed { file: f });
                    self.state = State::Line(Vec::new());
                }
            }
        }
    }

    /// Bytes from the sink side: acknowledgements and errors.
    pub fn sink(&mut self, data: &[u8], out: &mut Vec<ScpEvent>) {
        for &b in data {
            match &mut self.sink_err {
                Some(msg) => {
                    if b == b'\n' {
                        let m = String::from_utf8_lossy(msg).into_owned();
                        self.sink_err = None;
                        if let Some(f) = self.open.take() {
                            out.push(ScpEvent::Failed {
                                file: f,
                                message: m,
                            });
                            // Refused before its bytes: the source sends none and goes on.
                            if matches!(
                                self.state,
                                State::Data { done: 0, .. } | State::Trailer { .. }
                            ) {
                                self.state = State::Line(Vec::new());
                            }
                        }
                    } else if msg.len() < MAX_LINE {
                        msg.push(b);
                    }
                }
                None if b == 1 || b == 2 => self.sink_err = Some(Vec::new()),
                None => {}
            }
        }
    }

    fn path(&self, name: &str) -> String {
        if self.join || !self.dirs.is_empty() {
            let mut p = self.base.clone();
            for d in &self.dirs {
                p = format!("{p}/{d}");
            }
            format!("{p}/{name}")
        } else if self.base.is_empty() {
            name.to_string()
        } else {
            self.base.clone()
        }
    }

    fn control(&mut self, line: &[u8], out: &mut Vec<ScpEvent>) {
        let l = String::from_utf8_lossy(line);
        let mut parts = l.splitn(3, ' ');
        let head = parts.next().unwrap_or_default();
        match head.as_bytes().first() {
            Some(b'C') => {
                let size = parts.next().and_then(|s| s.parse::<u64>().ok());
                let name = parts.next().unwrap_or_default().to_string();
                let Some(size) = size else {
                    self.state = State::Broken;
                    return;
                };
                let file = self.next_file;
                self.next_file += 1;
                self.open = Some(file);
                out.push(ScpEvent::Opened {
                    file,
                    path: self.path(&name),
                });
                self.state = if size == 0 {
                    State::Trailer { file }
                } else {
                    State::Data {
                        file,
                        size,
                        done: 0,
                    }
                };
            }
            Some(b'D') => {
                let _ = parts.next();
                let name = parts.next().unwrap_or_default().to_string();
                if self.dirs.is_empty() && !self.join && !self.base.is_empty() {
                    self.join = true;
                }
                self.dirs.push(name);
            }
            Some(b'E') => {
                self.dirs.pop();
            }
            // Times (T), and warnings or errors from the source (`\x01`, `\x02`).
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_of_two_files_in_a_directory_and_a_refused_one() {
        let mut s = ScpStream::from_command("scp -r -t /srv").unwrap();
        assert!(s.upload);
        let mut ev = Vec::new();
        s.source(b"D0755 0 dir\nC0644 5 a.txt\nhel", &mut ev);
        s.source(b"lo\0C0644 0 empty\n\0E\n", &mut ev);
        s.source(b"C0600 3 secret\n", &mut ev);
        s.sink(b"\x01scp: /srv/secret: Permission denied\n", &mut ev);
        assert_eq!(
            ev,
            vec![
                ScpEvent::Opened {
                    file: 0,
                    path: "/srv/dir/a.txt".into()
                },
                ScpEvent::Content {
                    file: 0,
                    offset: 0,
                    data: b"hel".to_vec()
                },
                ScpEvent::Content {
                    file: 0,
                    offset: 3,
                    data: b"lo".to_vec()
                },
                ScpEvent::Closed { file: 0 },
                ScpEvent::Opened {
                    file: 1,
                    path: "/srv/dir/empty".into()
                },
                ScpEvent::Closed { file: 1 },
                ScpEvent::Opened {
                    file: 2,
                    path: "/srv/secret".into()
                },
                ScpEvent::Failed {
                    file: 2,
                    message: "scp: /srv/secret: Permission denied".into()
                },
            ]
        );
        assert!(ScpStream::from_command("ls -l").is_none());
        assert!(!ScpStream::from_command("scp -f /etc/hosts").unwrap().upload);
    }
}
