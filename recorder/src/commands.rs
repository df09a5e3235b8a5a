//! Commands run in an SSH session, best effort from its trail's recorded input and echo.
//!
//! Exec channels give their command as requested. Terminal channels (a `shell` request or a pty)
//! have their keystrokes replayed through a [`LineEditor`] that follows the usual line editing
//! (where readline and a tty's cooked mode agree); every line submitted with Enter is a command.
//! The input alone cannot say what history recall or completion produced: lines that used them,
//! or keys the editor does not follow, are `approximate`, and the server's echo fills in a
//! completion or recalled line when it is a plain redraw. A line the server never echoed (a
//! password at a prompt) is left out, and keys typed while a full-screen program holds the
//! alternate screen are not commands.
//!
//! [`LineEditor`] is pure (bytes in, lines out), as is `term` (escape sequences, keys, a minimal
//! screen for echoes); [`commands`] streams a trail through them.

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::export::Utf8Stream;
use crate::format::{Direction, Event, Request};
use crate::reader::{Integrity, TrailReader};
use term::{Key, Parser, Screen, Tok, control_key, csi_key, ss3_key};

mod term;

/// Longest line kept, in characters (64 KiB of memory); longer ones are cut and approximate.
const MAX_LINE: usize = 16 * 1024;
/// Output (characters) searched for the echo of a line submitted before any echo was seen.
const ECHO_WINDOW: usize = 4096;
/// Lines waiting for their echo; beyond this the oldest counts as never echoed.
const MAX_PENDING: usize = 16;
/// Output kept after a TAB or history key to redraw the line from; more is not a plain redraw.
const MAX_REDRAW: usize = 4096;
/// Characters of a line looked for in the output as its echo.
const ECHO_KEY: usize = 32;

/// One command, as `trail commands` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Command {
    pub channel: u32,
    /// Wall-clock time (RFC 3339) of the Enter key, or of the exec request.
    pub time: String,
    /// Seconds from the session's start.
    pub offset_s: f64,
    /// `shell` (typed in a terminal) or `exec`.
    pub kind: &'static str,
    pub command: String,
    /// The text may differ from what ran (history, completion, keys not followed, cut).
    pub approximate: bool,
    /// Why an exec request was not carried out (policy or target).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// A line submitted in a terminal, with the time (µs from session start) of its Enter.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub time_us: u64,
    pub text: String,
    pub approximate: bool,
}

/// Replays one terminal channel: keystrokes through [`input`](Self::input), the server's output
/// through [`output`](Self::output); both return the lines that became commands.
#[derive(Default)]
pub struct LineEditor {
    line: Vec<char>,
    cursor: usize,
    approximate: bool,
    /// Keys were typed for this line: output from now on may be their echo.
    started: bool,
    echoed: bool,
    /// ASCII characters typed into the line (and whether any other was): what an echo shows.
    typed: u128,
    typed_other: bool,
    /// Keys were typed since the last output: output now may be their echo, not a redraw.
    echo_due: bool,
    paste: bool,
    keys: Parser,
    keys_utf8: Utf8Stream,
    /// Output since a TAB or history key, applied as a redraw at the next keystroke.
    redraw: Option<Vec<u8>>,
    /// Lines submitted without echo so far, each with where in `window` its echo may start.
    pending: VecDeque<(Line, usize)>,
    window: Screen,
    output: Parser,
    output_utf8: Utf8Stream,
    alt_screen: bool,
}

impl LineEditor {
    pub fn input(&mut self, data: &[u8], time_us: u64, out: &mut Vec<Line>) {
        for c in self.keys_utf8.push(data).chars() {
            if let Some(r) = self.redraw.take() {
                self.apply_redraw(&r);
            }
            self.started = true;
            match self.keys.feed(c, false) {
                None => {}
                Some(Tok::Char('\u{fffd}')) => self.approximate = true,
                // Pasted text is text, newlines and tabs included.
                Some(Tok::Char('\r' | '\n')) if self.paste => self.insert('\n'),
                Some(Tok::Char('\t')) if self.paste => self.insert('\t'),
                Some(Tok::Char(c)) if c.is_control() && self.paste => {}
                Some(Tok::Char(c)) if c.is_control() => self.key(control_key(c), time_us, out),
                Some(Tok::Char(c)) => self.insert(c),
                Some(Tok::Csi(p, f)) => self.key(csi_key(&p, f), time_us, out),
                Some(Tok::Ss3(f)) => self.key(ss3_key(f), time_us, out),
                // Alt-something (word moves and the like) is not followed.
                Some(Tok::Alt(_) | Tok::Skip) => self.key(Key::Unknown, time_us, out),
            }
        }
    }

    fn insert(&mut self, c: char) {
        if self.line.len() >= MAX_LINE {
            self.approximate = true;
            return;
        }
        self.line.insert(self.cursor, c);
        self.cursor += 1;
        self.echo_due = true;
        match u8::try_from(c) {
            Ok(b) if b < 0x80 => self.typed |= 1 << b,
            _ => self.typed_other = true,
        }
    }

    fn key(&mut self, k: Key, t: u64, out: &mut Vec<Line>) {
        if self.paste && k != Key::PasteEnd {
            self.approximate = true;
            return;
        }
        let due = std::mem::replace(&mut self.echo_due, true);
        let (line, cur) = (&mut self.line, self.cursor);
        match k {
            Key::Left => self.cursor = cur.saturating_sub(1),
            Key::Right => self.cursor = (cur + 1).min(line.len()),
            Key::Home => self.cursor = 0,
            Key::End => self.cursor = line.len(),
            Key::Delete if cur < line.len() => {
                line.remove(cur);
            }
            Key::Backspace if cur > 0 => {
                line.remove(cur - 1);
                self.cursor -= 1;
            }
            Key::KillToStart => {
                line.drain(..cur);
                self.cursor = 0;
            }
            Key::KillToEnd => line.truncate(cur),
            Key::KillWord => {
                // unix-word-rubout: back over blanks, then over the word before them.
                let mut i = cur;
                while i > 0 && line[i - 1].is_whitespace() {
                    i -= 1;
                }
                while i > 0 && !line[i - 1].is_whitespace() {
                    i -= 1;
                }
                line.drain(i..cur);
                self.cursor = i;
            }
            Key::Abandon => self.reset(),
            Key::Submit => self.submit(t, out),
            Key::Complete | Key::History => {
                self.approximate = true;
                // Keys typed ahead of this one would echo into its redraw.
                self.redraw = (!due).then(Vec::new);
            }
            Key::PasteStart => self.paste = true,
            Key::PasteEnd => self.paste = false,
            Key::Unknown => self.approximate = true,
            Key::Delete | Key::Backspace | Key::Ignore => {}
        }
    }

    fn reset(&mut self) {
        self.line.clear();
        self.cursor = 0;
        self.approximate = false;
        self.started = false;
        self.echoed = false;
        self.typed = 0;
        self.typed_other = false;
        self.paste = false;
        self.redraw = None;
    }

    fn submit(&mut self, t: u64, out: &mut Vec<Line>) {
        let line = Line {
            time_us: t,
            text: self.line.iter().collect(),
            approximate: self.approximate,
        };
        let echoed = self.echoed;
        self.reset();
        if self.alt_screen || line.text.trim().is_empty() {
            return;
        }
        if echoed {
            out.push(line);
            return;
        }
        // Typed ahead, or not echoed at all (a password): the output that follows decides.
        if self.pending.is_empty() {
            self.window = Screen::default();
        }
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
        }
        // On the terminal's current line or later: a prompt may be redrawn over the typing.
        self.pending.push_back((line, self.window.line));
    }

    /// Redraws the line with the output that followed a TAB or history key, when it is the
    /// plain kind ([`Screen`]); a new line or a prompt redrawn from CR is not followed.
    fn apply_redraw(&mut self, r: &[u8]) {
        let mut screen = Screen {
            text: self.line.clone(),
            cursor: self.cursor,
            line: 0,
        };
        let mut parser = Parser::default();
        for c in String::from_utf8_lossy(r).chars() {
            match parser.feed(c, true) {
                None => {}
                Some(Tok::Char('\r' | '\n')) => return,
                Some(t) if !screen.apply(&t, MAX_LINE) => return,
                Some(t) => self.echoed |= matches!(t, Tok::Char(c) if !c.is_control()),
            }
        }
        self.line = screen.text;
        self.cursor = screen.cursor;
    }

    pub fn output(&mut self, data: &[u8], out: &mut Vec<Line>) {
        if data.is_empty() {
            return;
        }
        self.echo_due = false;
        if let Some(r) = &mut self.redraw {
            if r.len() + data.len() <= MAX_REDRAW {
                r.extend_from_slice(data);
            } else {
                self.redraw = None;
            }
        }
        for c in self.output_utf8.push(data).chars() {
            let Some(tok) = self.output.feed(c, true) else {
                continue;
            };
            match &tok {
                Tok::Csi(p, f @ ('h' | 'l')) => self.screen_mode(p, *f == 'h'),
                Tok::Char(c) if !c.is_control() && *c != ' ' && self.started && !self.echoed => {
                    self.echoed = match u8::try_from(*c) {
                        Ok(b) if b < 0x80 => self.typed & (1 << b) != 0,
                        _ => self.typed_other,
                    }
                }
                _ => {}
            }
            if !self.pending.is_empty() {
                self.window.apply(&tok, 2 * ECHO_WINDOW);
            }
        }
        // A pending line was echoed once its text shows up after where it was typed (lines
        // typed alike take successive echoes); it never was once that much output went by.
        let mut i = 0;
        while let Some((line, from)) = self.pending.get(i) {
            let key = echo_key(&line.text);
            let text = self.window.text.get(*from..).unwrap_or_default();
            if let Some(at) = text.windows(key.len().max(1)).position(|w| w == key) {
                let end = from + at + key.len();
                for p in self.pending.iter_mut().skip(i + 1) {
                    p.1 = p.1.max(end);
                }
                out.extend(self.pending.remove(i).map(|p| p.0));
            } else if text.len() >= ECHO_WINDOW {
                self.pending.remove(i);
            } else {
                i += 1;
            }
        }
        // Only the output a pending line may still find its echo in is kept.
        match self.pending.iter().map(|p| p.1).min() {
            None => self.window = Screen::default(),
            Some(n) => {
                self.window.consume(n);
                self.pending.iter_mut().for_each(|p| p.1 -= n);
            }
        }
    }

    /// The alternate screen (`CSI ? 1049 h` and older forms): a full-screen program's keys are
    /// not shell lines, nor is what was typed when it started or stopped.
    fn screen_mode(&mut self, params: &str, set: bool) {
        let Some(rest) = params.strip_prefix('?') else {
            return;
        };
        if rest.split(';').any(|p| matches!(p, "1049" | "1047" | "47")) && self.alt_screen != set {
            self.alt_screen = set;
            self.reset();
        }
    }
}

/// What an echo of `text` contains: its start, up to its first line break.
fn echo_key(text: &str) -> Vec<char> {
    let first = text.trim_start().split('\n').next().unwrap_or("");
    let key: String = first.chars().take(ECHO_KEY).collect();
    key.trim_end().chars().collect()
}

fn wall_clock(start_unix_us: i64, time_us: u64) -> String {
    let us = i128::from(start_unix_us) + i128::from(time_us);
    time::OffsetDateTime::from_unix_timestamp_nanos(us * 1000)
        .map(crate::writer::rfc3339)
        .unwrap_or_default()
}

/// The commands of a trail, in time order, and how far the trail could be read.
pub fn commands(path: &Path) -> Result<(Vec<Command>, Integrity)> {
    let mut r = TrailReader::open(path)?;
    let start = r.header.start_unix_us;
    let mut terminals: HashMap<u32, LineEditor> = HashMap::new();
    let mut execs: HashMap<u32, usize> = HashMap::new();
    let mut out: Vec<Command> = Vec::new();
    let mut lines = Vec::new();
    let entry = |channel: u32, time_us: u64, kind, command, approximate| Command {
        channel,
        time: wall_clock(start, time_us),
        offset_s: time_us as f64 / 1e6,
        kind,
        command,
        approximate,
        refused: None,
    };
    let integrity = r.for_each_record(|rec| {
        let ch = rec.channel;
        match &rec.event {
            Event::Request { dir, request } => match request {
                Request::Pty { .. } | Request::Shell if *dir == Direction::ClientToServer => {
                    terminals.entry(ch).or_default();
                }
                Request::Exec { command } if *dir == Direction::ClientToServer => {
                    execs.insert(ch, out.len());
                    out.push(entry(ch, rec.time_us, "exec", command.clone(), false));
                }
                Request::Refused { request, reason } if request.starts_with("exec ") => {
                    if let Some(c) = execs.get(&ch).and_then(|&i| out.get_mut(i)) {
                        c.refused = Some(reason.clone());
                    }
                }
                _ => {}
            },
            Event::Data {
                dir: Direction::ClientToServer,
                data,
            } => {
                if let Some(ed) = terminals.get_mut(&ch) {
                    ed.input(data, rec.time_us, &mut lines);
                }
            }
            Event::Data {
                dir: Direction::ServerToClient,
                data,
            }
            | Event::ExtendedData {
                dir: Direction::ServerToClient,
                data,
                ..
            } => {
                if let Some(ed) = terminals.get_mut(&ch) {
                    ed.output(data, &mut lines);
                }
            }
            Event::Close => {
                // Lines still waiting for their echo never got it.
                terminals.remove(&ch);
                execs.remove(&ch);
            }
            _ => {}
        }
        for l in lines.drain(..) {
            out.push(entry(ch, l.time_us, "shell", l.text, l.approximate));
        }
        Ok(())
    })?;
    // Lines wait for their echo, so they may come after a later exec: order by time.
    out.sort_by(|a, b| a.offset_s.total_cmp(&b.offset_s));
    Ok((out, integrity))
}

#[cfg(test)]
mod tests;
