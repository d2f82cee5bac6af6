//! push: a kernel task that receives crate objects from the host over the second serial port.
//!
//! `make push CRATE=...` builds a crate with the image's exact build and sends it here; the
//! object lands among a namespace's updates, where `swap` finds it. The wire format is one
//! header line, then the bytes:
//!
//! ```text
//! DELOS-PUSH 2 <namespace> <file name> <length> <crc32, 8 hex digits> <signature hex, or ->\n<length bytes>
//! ```
//!
//! A transfer is accepted only if exactly `length` bytes arrive (no pause longer than
//! [`STALL_MS`]), their CRC-32 (IEEE) matches, and — for a crate or C object, which would run
//! in ring 0 — the ed25519 signature over its namespace, name and SHA-512 verifies with the key
//! nano_core was built with (`make push` signs with the image's key; see the `signing` crate).
//! WASM modules may come unsigned: they run contained. Anything else is reported and dropped,
//! and the running system is unchanged. The port is polled, yielding the CPU while it is idle.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use nano_core::serial::COM2;
/// Largest object accepted.
pub const MAX_LEN: usize = 16 << 20;
/// A transfer that stalls this long is dropped.
pub const STALL_MS: u64 = 3000;

/// Reads one byte, waiting while none is there; `None` after `STALL_MS` of silence if
/// `stall` is set, or after `IDLE_MS` otherwise (the receiver then checks for a new version).
///
/// With COM2's receive interrupt on, the wait is `task::wait_until` the ring has a byte. Polled
/// (`serial_poll`), within a message (`stall`) the first `BURST_US` of waiting only yield the
/// CPU rather than sleep: the UART's FIFO holds 16 bytes, so sleeping a timer tick between reads would cap a
/// transfer at 16 bytes per tick (a 140 KiB C program took 17 s; yielding makes it ~1 s).
fn read_byte(stall: bool) -> Option<u8> {
    let start = nano_core::time::micros_since_entry();
    let limit = if stall { STALL_MS } else { IDLE_MS };
    loop {
        if let Some(b) = COM2.try_read() {
            return Some(b);
        }
        let waited = nano_core::time::micros_since_entry() - start;
        if waited > limit * 1000 {
            return None;
        }
        if COM2.input_by_interrupt() {
            // Bytes arrive in the receive ring by interrupt, which also ends a halt: wait for
            // one (the CPU halts meanwhile if no task has work) or the limit.
            task::wait_until(|| COM2.input_waiting(), Some(start + limit * 1000 + 1));
        } else if stall && waited < BURST_US {
            task::yield_now();
        } else {
            task::sleep_ms(2);
        }
    }
}

/// How long a receiver inside a message keeps polling (yielding) before it sleeps between reads.
const BURST_US: u64 = 20_000;

/// How long the receiver waits for a header before looking for a new version of itself.
const IDLE_MS: u64 = 200;

/// CRC-32 (IEEE 802.3, reflected, as zlib computes it).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A parsed header.
#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    /// Target namespace.
    pub namespace: String,
    /// File name among the updates.
    pub file: String,
    /// Byte count.
    pub len: usize,
    /// Expected CRC-32.
    pub crc: u32,
    /// The ed25519 signature (hex), if any.
    pub signature: Option<String>,
}

/// Parses a header line (without the newline).
pub fn parse_header(line: &str) -> Result<Header, String> {
    let f: Vec<&str> = line.split(' ').collect();
    if f.len() == 6 && f[0] == "DELOS-PUSH" && f[1] == "1" {
        return Err("an unsigned version-1 push; this kernel takes version 2 (make push signs objects)".into());
    }
    let [magic, version, namespace, file, len, crc, sig] = f.as_slice() else { return Err(format!("malformed header {line:?}")) };
    if *magic != "DELOS-PUSH" || *version != "2" {
        return Err(format!("not a push header: {line:?}"));
    }
    // Crate objects for swap, or WASM modules for `wasm run`/`wasm swap`.
    if file.is_empty() || file.contains('/') || !(file.ends_with(".o") || file.ends_with(".wasm")) {
        return Err(format!("bad file name {file:?}"));
    }
    let len: usize = len.parse().map_err(|_| format!("bad length {len:?}"))?;
    if len > MAX_LEN {
        return Err(format!("{len} bytes is more than the {MAX_LEN}-byte limit"));
    }
    let crc = u32::from_str_radix(crc, 16).map_err(|_| format!("bad checksum {crc:?}"))?;
    let signature = (*sig != "-").then(|| String::from(*sig));
    Ok(Header { namespace: String::from(*namespace), file: String::from(*file), len, crc, signature })
}

/// Receives one object; `Ok(None)` if nothing arrived for a while.
fn receive_one() -> Result<Option<String>, String> {
    let mut line = Vec::new();
    loop {
        let Some(b) = read_byte(!line.is_empty()) else {
            if line.is_empty() {
                return Ok(None);
            }
            return Err("header stalled".into());
        };
        if b == b'\n' {
            break;
        }
        if line.len() >= 512 {
            // Resynchronise: drop everything up to the next newline.
            while read_byte(true).is_some_and(|b| b != b'\n') {}
            return Err("header line too long".into());
        }
        line.push(b);
    }
    let text = core::str::from_utf8(&line).map_err(|_| String::from("header is not UTF-8"))?;
    let h = parse_header(text.trim_end_matches('\r'))?;
    let mut data = Vec::new();
    data.try_reserve_exact(h.len).map_err(|_| format!("no memory for {} bytes", h.len))?;
    let t0 = nano_core::time::micros_since_entry();
    while data.len() < h.len {
        match read_byte(true) {
            Some(b) => data.push(b),
            None => return Err(format!("{}: short transfer ({} of {} bytes)", h.file, data.len(), h.len)),
        }
    }
    let transfer_us = nano_core::time::micros_since_entry() - t0;
    let got = crc32(&data);
    if got != h.crc {
        return Err(format!("{}: checksum mismatch (expected {:08x}, got {got:08x})", h.file, h.crc));
    }
    // Objects run in ring 0: only signed ones get in (before they reach the updates).
    let signed = match (&h.signature, h.file.ends_with(".o")) {
        (Some(sig), _) => {
            nano_core::trust::accept_push(&h.namespace, &h.file, &data, sig).map_err(|e| format!("{}: signature: {e}", h.file))?;
            true
        }
        (None, true) => {
            return Err(format!(
                "{}: unsigned object (crate and C objects must be signed with the kernel's key; make push signs them)",
                h.file
            ));
        }
        (None, false) => false,
    };
    nano_core::kernel::with_loader_mut(|l| {
        let ns = l.namespace_by_name(&h.namespace).map_err(|e| format!("{e}"))?;
        l.add_update_file(ns, &h.file, mod_mgmt::ObjectBytes::from(data)).map_err(|e| format!("{e}"))
    })?;
    Ok(Some(format!(
        "received {} ({} bytes in {} ms, crc {:08x}, {}) into the updates of namespace {}",
        h.file,
        h.len,
        transfer_us / 1000,
        h.crc,
        if signed { "signature verified" } else { "unsigned WASM" },
        h.namespace
    )))
}

/// The receiver task (restartable): receives objects until a swap replaces this crate, then
/// starts the new version's receiver and ends (so the old version's code runs nowhere and is
/// reclaimed).
pub fn receiver(_: u64) -> isize {
    let me = receiver as fn(u64) -> isize as usize as u64;
    loop {
        match receive_one() {
            Ok(Some(msg)) => nano_core::println!("push: {msg}"),
            Ok(None) => match nano_core::kernel::current_version("kernel", "push::receiver") {
                Some(cur) if cur != me => match spawn(nano_core::kernel::restartable_entry(cur)) {
                    Ok(_) => return 0,
                    Err(e) => log::warn!("push: cannot start the new version's receiver: {e}"),
                },
                _ => {}
            },
            Err(e) => nano_core::println!("push: rejected: {e}"),
        }
    }
}

fn spawn(entry: fn(u64) -> isize) -> Result<task::TaskId, task::TaskError> {
    task::spawn_restartable("push", task::Restartable { entry, arg: 0, restarts: 0 })
}

/// Starts the receiver task if a second serial port exists.
pub fn start() {
    if !COM2.present() {
        log::info!("push: no second serial port; `make push` is unavailable");
        return;
    }
    COM2.init();
    let r = spawn(receiver);
    match r {
        Ok(id) => log::info!("push: receiving objects on COM2 (task {id})"),
        Err(e) => log::warn!("push: cannot start the receiver: {e}"),
    }
}
