//! The line editor: reads bytes from COM1 (waiting in `task::wait_until`, where the CPU halts
//! when no task has work; polling when the port is polled), decodes them
//! into keys (`line_edit`: UTF-8 and every common terminal's escape sequences) and keeps a
//! history. The cursor moves by character; the terminal is assumed to give each character
//! one column.

use alloc::string::String;
use alloc::vec::Vec;
use line_edit::{Decoder, Key};
use nano_core::print;

const HISTORY_MAX: usize = 100;

/// Editor state that survives between lines.
pub struct Editor {
    history: Vec<String>,
}

fn read_byte() -> u8 {
    loop {
        if let Some(b) = TYPEAHEAD.lock().pop() {
            return b;
        }
        if let Some(b) = nano_core::serial::try_read_byte() {
            return b;
        }
        // Waiting for a key is the system's idle time: a piece of idle work (hashing the large
        // boot objects ahead of their first load; restarting the recovery tasks if both are
        // dead), then the others' turn.
        let more = nano_core::kernel::idle_work(true);
        if more || !nano_core::serial::input_by_interrupt() {
            // Polled input (`serial_poll`) must be read before the UART's 16-byte FIFO fills:
            // no halting then.
            task::yield_now();
        } else {
            // Until a key (its interrupt ends a halt at once) or the keeper's next turn.
            let deadline = nano_core::time::micros_since_entry() + KEEPER_LOOK_US;
            task::wait_until(nano_core::serial::input_waiting, Some(deadline));
        }
    }
}

/// How often the shell, waiting for a key, gives the keeper (`nano_core::kernel::idle_work`) a
/// turn: its own period.
const KEEPER_LOOK_US: u64 = 100_000;

/// Bytes typed while a foreground command ran (which the shell reads then, for Ctrl-C): kept
/// for the line editor, in order. They used to be dropped, and so was an escape sequence's
/// first byte typed right after a command — the runner's line-editing tests lost one under
/// load, 7 runs in 20 with a busy CPU beside them (0 in 20 since).
pub static TYPEAHEAD: spin::Mutex<Typeahead> = spin::Mutex::new(Typeahead { bytes: [0; TYPEAHEAD_MAX], head: 0, len: 0 });

const TYPEAHEAD_MAX: usize = 256;

/// A fixed ring of bytes (what does not fit is dropped, as a terminal's buffer would).
pub struct Typeahead {
    bytes: [u8; TYPEAHEAD_MAX],
    head: usize,
    len: usize,
}

impl Typeahead {
    /// Keeps `b` for the line editor.
    pub fn push(&mut self, b: u8) {
        if self.len < TYPEAHEAD_MAX {
            self.bytes[(self.head + self.len) % TYPEAHEAD_MAX] = b;
            self.len += 1;
        }
    }

    fn pop(&mut self) -> Option<u8> {
        (self.len > 0).then(|| {
            let b = self.bytes[self.head];
            self.head = (self.head + 1) % TYPEAHEAD_MAX;
            self.len -= 1;
            b
        })
    }
}

/// Redraws the whole line and puts the cursor at `cursor`.
fn redraw(prompt: &str, buf: &[char], cursor: usize) {
    let s: String = buf.iter().collect();
    print!("\r{prompt}{s}\x1b[K");
    let back = buf.len() - cursor;
    if back > 0 {
        print!("\x1b[{back}D");
    }
}

impl Editor {
    /// An editor with empty history.
    pub fn new() -> Editor {
        Editor { history: Vec::new() }
    }

    /// Takes over the history of another editor (a replaced version of the shell).
    pub fn set_history(&mut self, history: Vec<String>) {
        self.history = history;
    }

    /// Previous lines, oldest first.
    pub fn history(&self) -> &[String] {
        &self.history
    }

    /// Reads one line (the prompt is already printed). `None` if it was cancelled (Ctrl-C).
    pub fn read_line(&mut self, prompt: &str) -> Option<String> {
        let mut buf: Vec<char> = Vec::new();
        let mut cursor = 0;
        let mut hist = self.history.len();
        let mut keys = Decoder::new();
        loop {
            let Some(key) = keys.feed(read_byte()) else { continue };
            match key {
                Key::Enter => {
                    print!("\n");
                    let line: String = buf.iter().collect();
                    if !line.trim().is_empty() && self.history.last() != Some(&line) {
                        if self.history.len() == HISTORY_MAX {
                            self.history.remove(0);
                        }
                        self.history.push(line.clone());
                    }
                    return Some(line);
                }
                Key::Interrupt => {
                    print!("^C\n");
                    return None;
                }
                Key::ClearScreen => print!("\x1b[2J\x1b[H"),
                Key::Home => cursor = 0,
                Key::End => cursor = buf.len(),
                Key::Left => cursor = cursor.saturating_sub(1),
                Key::Right => cursor = (cursor + 1).min(buf.len()),
                Key::Backspace if cursor > 0 => {
                    cursor -= 1;
                    buf.remove(cursor);
                }
                Key::Delete if cursor < buf.len() => {
                    buf.remove(cursor);
                }
                Key::Up if hist > 0 => {
                    hist -= 1;
                    buf = self.history[hist].chars().collect();
                    cursor = buf.len();
                }
                Key::Down if hist < self.history.len() => {
                    hist += 1;
                    buf = self.history.get(hist).map(|h| h.chars().collect()).unwrap_or_default();
                    cursor = buf.len();
                }
                Key::Char(c) if !c.is_control() => {
                    buf.insert(cursor, c);
                    cursor += 1;
                    if cursor == buf.len() {
                        // Typing at the end: echo the character, no redraw.
                        print!("{c}");
                        continue;
                    }
                }
                _ => continue,
            }
            redraw(prompt, &buf, cursor);
        }
    }
}

impl Default for Editor {
    fn default() -> Self {
        Editor::new()
    }
}
