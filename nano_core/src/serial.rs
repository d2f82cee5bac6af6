//! COM1: the console and the log.
//!
//! The port is behind a spin lock for normal output. Fault handlers and the panic path use
//! [`emergency_write`], which ignores the lock: a fault may arrive while the lock is held, and a
//! report that deadlocks is worse than one that interleaves.

use core::fmt;
use spin::Mutex;
use x86_64::instructions::port::Port;

const COM1: u16 = 0x3F8;

/// The serial port as a `fmt::Write` sink.
pub struct Serial {
    _private: (),
}

static SERIAL: Mutex<Serial> = Mutex::new(Serial { _private: () });

fn outb(port: u16, v: u8) {
    // SAFETY: COM1's registers are plain I/O ports with no memory side effects; nano_core owns them.
    unsafe { Port::new(port).write(v) }
}

fn inb(port: u16) -> u8 {
    // SAFETY: as in `outb`; reading a UART register has no memory side effects.
    unsafe { Port::new(port).read() }
}

/// Programs COM1 for 115200 8N1 with FIFOs.
pub fn init() {
    outb(COM1 + 1, 0x00); // no interrupts yet
    outb(COM1 + 3, 0x80); // DLAB
    outb(COM1, 0x01); // divisor 1: 115200 baud
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); // 8N1
    outb(COM1 + 2, 0xC7); // FIFO on, cleared, 14-byte threshold
    outb(COM1 + 4, 0x0B); // DTR, RTS, OUT2
}

fn put_byte(b: u8) {
    while inb(COM1 + 5) & 0x20 == 0 {
        core::hint::spin_loop();
    }
    outb(COM1, b);
}

fn put_str(s: &str) {
    for b in s.bytes() {
        if b == b'\n' {
            put_byte(b'\r');
        }
        put_byte(b);
    }
}

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        put_str(s);
        Ok(())
    }
}

/// Reads one byte if one is waiting.
pub fn try_read_byte() -> Option<u8> {
    (inb(COM1 + 5) & 1 != 0).then(|| inb(COM1))
}

/// Whether the heap is up (formatting can then happen outside the lock).
static HEAP_READY: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Called once the heap works.
pub fn heap_ready() {
    HEAP_READY.store(true, core::sync::atomic::Ordering::Release);
}

/// Writes formatted output under the lock (with interrupts off, so a timer cannot interleave).
///
/// Once the heap exists, the text is formatted first and only written under the lock: the
/// `Display` code of the arguments belongs to whoever prints, and if it faults, its task dies —
/// holding no lock that the rest of the system needs.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    if HEAP_READY.load(core::sync::atomic::Ordering::Acquire) {
        let text = alloc::fmt::format(args);
        x86_64::instructions::interrupts::without_interrupts(|| put_str_locked(&text));
        return;
    }
    x86_64::instructions::interrupts::without_interrupts(|| {
        let _ = fmt::Write::write_fmt(&mut *SERIAL.lock(), args);
    });
}

fn put_str_locked(s: &str) {
    let _guard = SERIAL.lock();
    put_str(s);
}

/// Writes formatted output without taking the lock; for fault and panic reports only.
pub fn emergency_write(args: fmt::Arguments<'_>) {
    let _ = fmt::Write::write_fmt(&mut Serial { _private: () }, args);
}

/// `print!` to the serial console.
#[macro_export]
macro_rules! print {
    ($($t:tt)*) => { $crate::serial::write_fmt(format_args!($($t)*)) };
}

/// `println!` to the serial console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($t:tt)*) => { $crate::serial::write_fmt(format_args!("{}\n", format_args!($($t)*))) };
}
