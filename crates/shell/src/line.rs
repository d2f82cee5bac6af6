//! The line editor: reads bytes from COM1 (polling, yielding the CPU while idle) and keeps a
//! history.

use alloc::string::String;
use alloc::vec::Vec;
use nano_core::print;

const HISTORY_MAX: usize = 100;

/// Editor state that survives between lines.
pub struct Editor {
    history: Vec<String>,
}

fn read_byte() -> u8 {
    loop {
        if let Some(b) = nano_core::serial::try_read_byte() {
            return b;
        }
        task::yield_now();
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
        loop {
            let b = read_byte();
            match b {
                b'\r' | b'\n' => {
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
                0x03 => {
                    print!("^C\n");
                    return None;
                }
                0x0c => {
                    print!("\x1b[2J\x1b[H");
                    redraw(prompt, &buf, cursor);
                }
                0x01 => {
                    cursor = 0;
                    redraw(prompt, &buf, cursor);
                }
                0x05 => {
                    cursor = buf.len();
                    redraw(prompt, &buf, cursor);
                }
                0x7f | 0x08 => {
                    if cursor > 0 {
                        cursor -= 1;
                        buf.remove(cursor);
                        redraw(prompt, &buf, cursor);
                    }
                }
                0x1b => {
                    if read_byte() != b'[' {
                        continue;
                    }
                    match read_byte() {
                        b'A' if hist > 0 => {
                            hist -= 1;
                            buf = self.history[hist].chars().collect();
                            cursor = buf.len();
                        }
                        b'B' if hist < self.history.len() => {
                            hist += 1;
                            buf = self.history.get(hist).map(|h| h.chars().collect()).unwrap_or_default();
                            cursor = buf.len();
                        }
                        b'C' if cursor < buf.len() => cursor += 1,
                        b'D' if cursor > 0 => cursor -= 1,
                        b'H' => cursor = 0,
                        b'F' => cursor = buf.len(),
                        b'3' => {
                            if read_byte() == b'~' && cursor < buf.len() {
                                buf.remove(cursor);
                            }
                        }
                        _ => {}
                    }
                    redraw(prompt, &buf, cursor);
                }
                b if b >= 0x20 && b < 0x7f => {
                    buf.insert(cursor, b as char);
                    cursor += 1;
                    if cursor == buf.len() {
                        print!("{}", b as char);
                    } else {
                        redraw(prompt, &buf, cursor);
                    }
                }
                _ => {}
            }
        }
    }
}

impl Default for Editor {
    fn default() -> Self {
        Editor::new()
    }
}
