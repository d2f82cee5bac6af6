//! Terminal input, decoded: bytes from a serial terminal in, [`Key`]s out.
//!
//! Terminals disagree on what a key sends. Home is `ESC [ H` in xterm, `ESC O H` in xterm's
//! application mode, `ESC [ 1 ~` in tmux, screen and the Linux console, `ESC [ 7 ~` in rxvt;
//! End likewise with `F`, `4 ~` and `8 ~`. Text arrives as UTF-8. A sequence this decoder does
//! not know (a function key, `ESC [ 999 Z`) is consumed whole and ignored: none of its bytes
//! may be taken for typed text. The decoder is a byte-at-a-time state machine so the shell
//! can feed it from a polled serial port; it is `no_std` and has no dependencies, so it is
//! tested on the host.
#![no_std]

/// A key the line editor acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A printable character (ASCII or any other Unicode scalar value).
    Char(char),
    /// Return or line feed.
    Enter,
    /// Ctrl-C.
    Interrupt,
    /// Ctrl-L.
    ClearScreen,
    /// Backspace (DEL or BS).
    Backspace,
    /// The Delete key (`ESC [ 3 ~`) or Ctrl-D.
    Delete,
    /// Cursor keys.
    Up,
    /// See [`Key::Up`].
    Down,
    /// See [`Key::Up`].
    Left,
    /// See [`Key::Up`].
    Right,
    /// Home (any encoding) or Ctrl-A.
    Home,
    /// End (any encoding) or Ctrl-E.
    End,
}

/// Longest parameter string kept for a control sequence (longer ones are still consumed).
const MAX_PARAMS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ground,
    /// After ESC.
    Escape,
    /// After `ESC [`: parameters, intermediates, then a final byte.
    Csi,
    /// After `ESC O`: one final byte.
    Ss3,
    /// Inside a multi-byte UTF-8 character.
    Utf8,
}

/// The decoder's state between bytes.
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
    params: [u8; MAX_PARAMS],
    nparams: usize,
    /// Set when a control sequence had intermediate bytes or too many parameters: its final
    /// byte is then ignored.
    odd: bool,
    utf8: [u8; 4],
    have: usize,
    need: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder between keys.
    pub const fn new() -> Decoder {
        Decoder { state: State::Ground, params: [0; MAX_PARAMS], nparams: 0, odd: false, utf8: [0; 4], have: 0, need: 0 }
    }

    /// Takes one byte; returns the key it completes, if any.
    pub fn feed(&mut self, b: u8) -> Option<Key> {
        match self.state {
            State::Ground => self.ground(b),
            State::Escape => {
                self.state = match b {
                    b'[' => {
                        self.nparams = 0;
                        self.odd = false;
                        State::Csi
                    }
                    b'O' => State::Ss3,
                    // ESC ESC: the first was a lone Escape; the second may start a sequence.
                    0x1b => State::Escape,
                    // Alt+key and other two-byte sequences: ignored whole.
                    _ => State::Ground,
                };
                None
            }
            State::Csi => match b {
                0x30..=0x3f => {
                    if self.nparams < MAX_PARAMS {
                        self.params[self.nparams] = b;
                        self.nparams += 1;
                    } else {
                        self.odd = true;
                    }
                    None
                }
                0x20..=0x2f => {
                    self.odd = true;
                    None
                }
                0x40..=0x7e => {
                    self.state = State::Ground;
                    if self.odd { None } else { csi(&self.params[..self.nparams], b) }
                }
                // A control byte inside a sequence: the sequence is abandoned, and the byte
                // counts for itself (a terminal would act on it).
                _ => {
                    self.state = State::Ground;
                    self.ground(b)
                }
            },
            State::Ss3 => {
                self.state = State::Ground;
                match b {
                    b'A' => Some(Key::Up),
                    b'B' => Some(Key::Down),
                    b'C' => Some(Key::Right),
                    b'D' => Some(Key::Left),
                    b'H' => Some(Key::Home),
                    b'F' => Some(Key::End),
                    _ => None,
                }
            }
            State::Utf8 => {
                if b & 0xc0 != 0x80 {
                    // Not a continuation byte: the partial character is dropped and the byte
                    // starts afresh.
                    self.state = State::Ground;
                    return self.ground(b);
                }
                self.utf8[self.have] = b;
                self.have += 1;
                if self.have < self.need {
                    return None;
                }
                self.state = State::Ground;
                // from_utf8 rejects overlong forms, surrogates and values above U+10FFFF.
                core::str::from_utf8(&self.utf8[..self.have]).ok().and_then(|s| s.chars().next()).map(Key::Char)
            }
        }
    }

    fn ground(&mut self, b: u8) -> Option<Key> {
        let len = match b {
            0x1b => {
                self.state = State::Escape;
                return None;
            }
            b'\r' | b'\n' => return Some(Key::Enter),
            0x01 => return Some(Key::Home),
            0x03 => return Some(Key::Interrupt),
            0x04 => return Some(Key::Delete),
            0x05 => return Some(Key::End),
            0x08 | 0x7f => return Some(Key::Backspace),
            0x0c => return Some(Key::ClearScreen),
            0x20..=0x7e => return Some(Key::Char(b as char)),
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            // Other control bytes, stray continuation bytes, bytes UTF-8 never uses.
            _ => return None,
        };
        self.utf8[0] = b;
        self.have = 1;
        self.need = len;
        self.state = State::Utf8;
        None
    }
}

/// The key of a complete control sequence `ESC [ params final`, or `None` to ignore it.
fn csi(params: &[u8], fin: u8) -> Option<Key> {
    // Cursor keys and xterm's Home/End take no parameter, or `1;m` with a modifier (Ctrl, Alt,
    // Shift: the same key here). Anything else with these finals is not a key (`ESC [ 999 D`
    // is a cursor-movement command, not something a keyboard sends).
    let plain = params.is_empty() || (params.starts_with(b"1;") && params[2..].iter().all(u8::is_ascii_digit) && params.len() > 2);
    match fin {
        b'A' if plain => Some(Key::Up),
        b'B' if plain => Some(Key::Down),
        b'C' if plain => Some(Key::Right),
        b'D' if plain => Some(Key::Left),
        b'H' if plain => Some(Key::Home),
        b'F' if plain => Some(Key::End),
        b'~' => {
            // `N ~` or `N;m ~`: the key number before any modifier.
            let n = params.split(|&c| c == b';').next().unwrap_or(&[]);
            match n {
                b"1" | b"7" => Some(Key::Home),
                b"4" | b"8" => Some(Key::End),
                b"3" => Some(Key::Delete),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::{Decoder, Key};
    use std::vec::Vec;

    fn keys(bytes: &[u8]) -> Vec<Key> {
        let mut d = Decoder::new();
        bytes.iter().filter_map(|&b| d.feed(b)).collect()
    }

    fn chars(s: &str) -> Vec<Key> {
        s.chars().map(Key::Char).collect()
    }

    #[test]
    fn ascii_and_controls() {
        assert_eq!(keys(b"ab\r"), [Key::Char('a'), Key::Char('b'), Key::Enter]);
        assert_eq!(
            keys(b"\x03\x0c\x7f\x08\x01\x05\x04"),
            [Key::Interrupt, Key::ClearScreen, Key::Backspace, Key::Backspace, Key::Home, Key::End, Key::Delete]
        );
    }

    #[test]
    fn utf8_in_every_length() {
        assert_eq!(keys("é☃𝄞".as_bytes()), chars("é☃𝄞"));
    }

    #[test]
    fn broken_utf8_is_dropped_not_misread() {
        // A lead byte followed by ASCII: the partial character is dropped, the ASCII kept.
        assert_eq!(keys(b"\xe2\x98a"), chars("a"));
        // Stray continuation bytes, an overlong form, a surrogate, bytes never used.
        assert_eq!(keys(b"\x80\xbfx"), chars("x"));
        assert_eq!(keys(b"\xe0\x80\xaf"), []);
        assert_eq!(keys(b"\xed\xa0\x80"), []);
        assert_eq!(keys(b"\xc0\xaf\xff\xf5y"), chars("y"));
    }

    #[test]
    fn home_and_end_in_every_encoding() {
        for home in [&b"\x1b[H"[..], b"\x1bOH", b"\x1b[1~", b"\x1b[7~", b"\x01", b"\x1b[1;5H"] {
            assert_eq!(keys(home), [Key::Home], "{home:?}");
        }
        for end in [&b"\x1b[F"[..], b"\x1bOF", b"\x1b[4~", b"\x1b[8~", b"\x05", b"\x1b[1;2F"] {
            assert_eq!(keys(end), [Key::End], "{end:?}");
        }
    }

    #[test]
    fn arrows_and_delete() {
        assert_eq!(
            keys(b"\x1b[A\x1b[B\x1b[C\x1b[D\x1bOA\x1bOD\x1b[3~\x1b[1;5C"),
            [Key::Up, Key::Down, Key::Right, Key::Left, Key::Up, Key::Left, Key::Delete, Key::Right]
        );
    }

    #[test]
    fn unknown_sequences_are_consumed_whole() {
        // Cursor movement by 999, a function key, page up, an SS3 function key, a sequence with
        // an intermediate byte, an over-long parameter string, Alt+x.
        let input = b"a\x1b[999Db\x1b[15~c\x1b[5~d\x1bOPe\x1b[ qf\x1b[11111111111111111111111111Ag\x1bxh";
        assert_eq!(keys(input), chars("abcdefgh"));
    }

    #[test]
    fn a_control_byte_abandons_a_sequence() {
        assert_eq!(keys(b"\x1b[12\rz"), [Key::Enter, Key::Char('z')]);
        assert_eq!(keys(b"\x1b\x1b[A"), [Key::Up]);
    }
}
