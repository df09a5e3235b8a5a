//! What a terminal's bytes mean, as far as commands go: escape sequences (the same parser for
//! keys and output), keys as line-editing actions, and a minimal screen for echoes and redraws.
//! Pure.

/// Escape sequences, parsed the same way from keys and from output.
#[derive(Debug, Default)]
enum State {
    #[default]
    Ground,
    Escape,
    /// Parameter and intermediate characters so far (bounded).
    Csi(String),
    Ss3,
    /// `ESC ( B` and the like: one more character ends it.
    Intermediate,
    /// OSC, DCS and the like (output only), up to BEL or ST.
    Str,
    StrEnd,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Char(char),
    Csi(String, char),
    Ss3(char),
    /// ESC and a character: Alt-something as a key.
    Alt(char),
    /// A sequence with nothing to say (a string, a charset choice, a broken sequence).
    Skip,
}

#[derive(Debug, Default)]
pub(super) struct Parser {
    state: State,
}

impl Parser {
    /// `output`: strings (OSC, DCS) and charset choices are output's; as keys, ESC ] is Alt-].
    pub(super) fn feed(&mut self, c: char, output: bool) -> Option<Tok> {
        let tok = match std::mem::take(&mut self.state) {
            State::Ground if c == '\x1b' => {
                self.state = State::Escape;
                return None;
            }
            State::Ground => Tok::Char(c),
            State::Escape => {
                self.state = match c {
                    '[' => State::Csi(String::new()),
                    'O' => State::Ss3,
                    ']' | 'P' | 'X' | '^' | '_' if output => State::Str,
                    ' '..='/' if output => State::Intermediate,
                    _ => return Some(Tok::Alt(c)),
                };
                return None;
            }
            State::Csi(mut p) => match c {
                ' '..='?' => {
                    if p.len() < 16 {
                        p.push(c);
                    }
                    self.state = State::Csi(p);
                    return None;
                }
                '@'..='~' => Tok::Csi(p, c),
                _ => Tok::Skip,
            },
            State::Ss3 => Tok::Ss3(c),
            State::Str if c != '\x07' => {
                self.state = if c == '\x1b' {
                    State::StrEnd
                } else {
                    State::Str
                };
                return None;
            }
            State::Intermediate | State::Str | State::StrEnd => Tok::Skip,
        };
        Some(tok)
    }
}

/// A terminal's text as far as echo goes: typing overwrites at the cursor, BS and CSI C/D move
/// within the last line, CSI K, @ and P erase, insert and delete. An edited echo then reads as
/// the final text.
#[derive(Debug, Default)]
pub(super) struct Screen {
    pub(super) text: Vec<char>,
    pub(super) cursor: usize,
    /// Where the last line starts.
    pub(super) line: usize,
}

impl Screen {
    /// Applies `t`, keeping at most `cap` characters; false for what it does not follow.
    pub(super) fn apply(&mut self, t: &Tok, cap: usize) -> bool {
        match t {
            Tok::Char('\x07') => {}
            Tok::Char('\x08') if self.cursor > self.line => self.cursor -= 1,
            Tok::Char('\r') => self.cursor = self.line,
            Tok::Char('\n') => {
                self.cursor = self.text.len();
                self.put('\n', cap);
                self.line = self.cursor;
            }
            Tok::Char(c) if !c.is_control() => return self.put(*c, cap),
            Tok::Csi(p, f) => {
                let n = p.parse::<usize>().ok();
                match f {
                    'K' if n.unwrap_or(0) == 0 => self.text.truncate(self.cursor),
                    // Insert blanks, delete characters: how readline edits in the middle.
                    '@' => {
                        let n = n.unwrap_or(1).min(cap.saturating_sub(self.text.len()));
                        let at = self.cursor.min(self.text.len());
                        self.text.splice(at..at, std::iter::repeat_n(' ', n));
                    }
                    'P' => {
                        let at = self.cursor.min(self.text.len());
                        let end = at.saturating_add(n.unwrap_or(1)).min(self.text.len());
                        self.text.drain(at..end);
                    }
                    'C' => self.cursor = (self.cursor + n.unwrap_or(1)).min(self.text.len()),
                    'D' => self.cursor = self.cursor.saturating_sub(n.unwrap_or(1)).max(self.line),
                    _ => return false,
                }
            }
            _ => return false,
        }
        true
    }

    fn put(&mut self, c: char, cap: usize) -> bool {
        if let Some(x) = self.text.get_mut(self.cursor) {
            *x = c;
        } else if self.text.len() < cap {
            self.text.push(c);
        } else {
            return false;
        }
        self.cursor += 1;
        true
    }

    /// Forgets the first `n` characters (an echo already accounted for).
    pub(super) fn consume(&mut self, n: usize) {
        self.text.drain(..n.min(self.text.len()));
        self.cursor = self.cursor.saturating_sub(n);
        self.line = self.line.saturating_sub(n);
    }
}

/// What a key does to the line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Key {
    Left,
    Right,
    Home,
    End,
    Delete,
    Backspace,
    KillToStart,
    KillToEnd,
    KillWord,
    Abandon,
    Submit,
    Complete,
    History,
    PasteStart,
    PasteEnd,
    Ignore,
    Unknown,
}

pub(super) fn control_key(c: char) -> Key {
    match c {
        '\x01' => Key::Home,
        '\x02' => Key::Left,
        '\x03' => Key::Abandon,
        '\x04' => Key::Delete,
        '\x05' => Key::End,
        '\x06' => Key::Right,
        '\x08' | '\x7f' => Key::Backspace,
        '\t' => Key::Complete,
        '\n' | '\r' => Key::Submit,
        '\x0b' => Key::KillToEnd,
        '\x0e' | '\x10' => Key::History,
        '\x15' => Key::KillToStart,
        '\x17' => Key::KillWord,
        // Bell, clear screen: nothing to the line.
        '\x07' | '\x0c' => Key::Ignore,
        _ => Key::Unknown,
    }
}

pub(super) fn csi_key(params: &str, fin: char) -> Key {
    match (params, fin) {
        ("" | "1", 'A' | 'B') => Key::History,
        ("" | "1", 'C') => Key::Right,
        ("" | "1", 'D') => Key::Left,
        ("" | "1", 'H') | ("1" | "7", '~') => Key::Home,
        ("" | "1", 'F') | ("4" | "8", '~') => Key::End,
        ("3", '~') => Key::Delete,
        ("200", '~') => Key::PasteStart,
        ("201", '~') => Key::PasteEnd,
        // The terminal's replies (cursor position, attributes, focus): not keys.
        (_, 'R' | 'c') | ("", 'I' | 'O') => Key::Ignore,
        _ => Key::Unknown,
    }
}

pub(super) fn ss3_key(fin: char) -> Key {
    match fin {
        'A' | 'B' => Key::History,
        'C' => Key::Right,
        'D' => Key::Left,
        'H' => Key::Home,
        'F' => Key::End,
        _ => Key::Unknown,
    }
}
