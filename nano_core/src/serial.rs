//! COM1: the console and the log.
//!
//! The port is behind a spin lock for normal output, which records the CPU that holds it.
//! Fault handlers and the panic path use [`emergency_write`]: it formats first, on the stack,
//! then writes under the lock if another CPU holds it only briefly, and without the lock if the
//! holder is the code the report interrupted on this CPU (a report that deadlocks is worse than
//! one that interleaves). A parked CPU's report is another case ([`write_whole_from_parked_cpu`]):
//! the lock's holder is another CPU, which will let go.

use byte_ring::ByteRing;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use spin::Mutex;
use x86_64::instructions::port::Port;
use x86_64::structures::idt::InterruptStackFrame;

/// A 16550 UART at an I/O port base. nano_core owns COM1 (the console); `push` uses COM2.
#[derive(Debug, Clone, Copy)]
pub struct Uart {
    base: u16,
}

/// The console.
pub const COM1: Uart = Uart::new(0x3F8);
/// The second port (signed pushes of new objects).
pub const COM2: Uart = Uart::new(0x2F8);

impl Uart {
    /// The UART whose registers start at `base`.
    pub const fn new(base: u16) -> Uart {
        Uart { base }
    }

    fn outb(self, reg: u16, v: u8) {
        // SAFETY: a UART's registers are plain I/O ports with no memory side effects; each port
        // has one owner (COM1 nano_core, COM2 the push receiver).
        unsafe { Port::new(self.base + reg).write(v) }
    }

    fn inb(self, reg: u16) -> u8 {
        // SAFETY: as in `outb`; reading a UART register has no memory side effects.
        unsafe { Port::new(self.base + reg).read() }
    }

    /// Programs the port for 115200 8N1 with FIFOs, interrupts off.
    pub fn init(self) {
        self.outb(1, 0x00); // no interrupts
        self.outb(3, 0x80); // DLAB
        self.outb(0, 0x01); // divisor 1: 115200 baud
        self.outb(1, 0x00);
        self.outb(3, 0x03); // 8N1
        self.outb(2, 0xC7); // FIFO on, cleared, 14-byte threshold
        self.outb(4, 0x0B); // DTR, RTS, OUT2 (OUT2 gates the port's interrupt line on a PC)
        if self.input_by_interrupt() {
            self.outb(1, IER_RECEIVED);
        }
    }

    /// Whether a UART answers here (its scratch register keeps what is written).
    pub fn present(self) -> bool {
        self.outb(7, 0x5A);
        let a = self.inb(7);
        self.outb(7, 0xA5);
        a == 0x5A && self.inb(7) == 0xA5
    }

    /// Reads one byte if one is waiting: from the receive ring once the port's receive
    /// interrupt fills it ([`Uart::receive_by_interrupt`]), else from the UART itself.
    ///
    /// Never both: with the interrupt on, the handler on the boot CPU may be holding a byte it
    /// took from the FIFO and not yet put in the ring, and a task that read the FIFO then would
    /// get the next byte first.
    pub fn try_read(self) -> Option<u8> {
        if let Some(rx) = self.rx_on() {
            let b = rx.ring.pop();
            // The handler stopped taking bytes when the ring was full (the rest waits in the
            // FIFO, and QEMU holds back what does not fit there); half empty, it takes them again.
            if rx.paused.load(Ordering::Acquire) && rx.ring.room() >= RX_BYTES / 2 && rx.paused.swap(false, Ordering::AcqRel) {
                self.outb(1, IER_RECEIVED);
            }
            return b;
        }
        self.poll()
    }

    /// Whether a byte is waiting for [`Uart::try_read`], without taking it: in the receive
    /// ring, or in the UART's FIFO while the port is polled. Takes no lock (for a caller with
    /// interrupts off, about to halt).
    pub fn input_waiting(self) -> bool {
        match self.rx_on() {
            Some(rx) => !rx.ring.is_empty(),
            None => self.data_ready(),
        }
    }

    /// Whether received bytes arrive by interrupt ([`Uart::receive_by_interrupt`]): a reader may
    /// then halt until input comes. A polled port must be read before its 16-byte FIFO fills.
    pub fn input_by_interrupt(self) -> bool {
        self.rx_on().is_some()
    }

    /// The port's receive ring, while its receive interrupt fills it.
    fn rx_on(self) -> Option<&'static Rx> {
        self.rx().filter(|rx| rx.on.load(Ordering::Acquire))
    }

    /// Whether the UART's FIFO holds a received byte (the line status register's data-ready bit).
    fn data_ready(self) -> bool {
        self.inb(5) & 1 != 0
    }

    fn poll(self) -> Option<u8> {
        self.data_ready().then(|| self.inb(0))
    }

    /// The receive ring of a port that has one (COM1, COM2).
    fn rx(self) -> Option<&'static Rx> {
        match self.base {
            0x3F8 => Some(&COM1_RX),
            0x2F8 => Some(&COM2_RX),
            _ => None,
        }
    }

    /// From now on, received bytes are taken by the port's interrupt handler ([`com1_interrupt`],
    /// [`com2_interrupt`]), which the caller has installed and routed, into a ring that
    /// [`Uart::try_read`] reads. Bytes already in the FIFO are moved there first. `false` for a
    /// port without a ring.
    pub fn receive_by_interrupt(self) -> bool {
        let Some(rx) = self.rx() else { return false };
        x86_64::instructions::interrupts::without_interrupts(|| {
            while let Some(b) = self.poll() {
                if !rx.ring.push(b) {
                    break;
                }
            }
            rx.on.store(true, Ordering::Release);
            self.outb(1, IER_RECEIVED);
        });
        true
    }

    /// The receive interrupt: moves every byte the FIFO holds into the ring, or stops taking
    /// them while the ring is full.
    fn on_receive_interrupt(self) {
        let Some(rx) = self.rx() else { return };
        rx.interrupts.fetch_add(1, Ordering::Relaxed);
        while self.data_ready() {
            if rx.ring.room() == 0 {
                rx.paused.store(true, Ordering::Release);
                rx.pauses.fetch_add(1, Ordering::Relaxed);
                self.outb(1, 0);
                break;
            }
            rx.ring.push(self.inb(0));
            rx.bytes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// What the port's receive interrupt has done (`None`: polled, no interrupt).
    pub fn receive_stats(self) -> Option<ReceiveStats> {
        let rx = self.rx_on()?;
        Some(ReceiveStats {
            interrupts: rx.interrupts.load(Ordering::Relaxed),
            bytes: rx.bytes.load(Ordering::Relaxed),
            pauses: rx.pauses.load(Ordering::Relaxed),
            waiting: rx.ring.len(),
        })
    }

    /// Writes one byte, waiting for room in the transmitter.
    pub fn write_byte(self, b: u8) {
        while self.inb(5) & 0x20 == 0 {
            core::hint::spin_loop();
        }
        self.outb(0, b);
    }
}

/// Interrupt enable register: received data available.
const IER_RECEIVED: u8 = 0x01;

/// Bytes a receive ring holds: a push of a large object arrives faster than a task that runs
/// one tick in several drains it.
const RX_BYTES: usize = 64 * 1024;

/// A port's receive ring and what its interrupt handler did.
struct Rx {
    ring: ByteRing<RX_BYTES>,
    /// The receive interrupt fills the ring (readers read only the ring).
    on: AtomicBool,
    /// The handler stopped taking bytes because the ring was full.
    paused: AtomicBool,
    interrupts: AtomicU64,
    bytes: AtomicU64,
    pauses: AtomicU64,
}

impl Rx {
    const fn new() -> Rx {
        Rx {
            ring: ByteRing::new(),
            on: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            interrupts: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            pauses: AtomicU64::new(0),
        }
    }
}

static COM1_RX: Rx = Rx::new();
static COM2_RX: Rx = Rx::new();

/// What a port's receive interrupt has done since it was switched on.
#[derive(Debug, Clone, Copy)]
pub struct ReceiveStats {
    /// Receive interrupts taken.
    pub interrupts: u64,
    /// Bytes moved from the FIFO to the ring.
    pub bytes: u64,
    /// Times the ring was full and the handler stopped taking bytes until a reader made room.
    pub pauses: u64,
    /// Bytes in the ring now.
    pub waiting: usize,
}

/// COM1's receive interrupt handler. It lives in nano_core, which is never swapped: the IDT
/// holds its address where no reference scan looks.
pub extern "x86-interrupt" fn com1_interrupt(_frame: InterruptStackFrame) {
    COM1.on_receive_interrupt();
    crate::ipi::end_of_interrupt();
}

/// COM2's receive interrupt handler (see [`com1_interrupt`]).
pub extern "x86-interrupt" fn com2_interrupt(_frame: InterruptStackFrame) {
    COM2.on_receive_interrupt();
    crate::ipi::end_of_interrupt();
}

/// The serial port as a `fmt::Write` sink.
pub struct Serial {
    _private: (),
}

static SERIAL: Mutex<Serial> = Mutex::new(Serial { _private: () });

/// The console lock's holder: its CPU index + 1 (0: free, or taken a moment ago and not yet
/// recorded).
static HOLDER: AtomicUsize = AtomicUsize::new(0);

/// A bounded wait for the console lock gave up, and no writer has taken the lock since: the
/// holder is stuck (a CPU hung with the lock), so later reports do not wait for it again.
static WAIT_GAVE_UP: AtomicBool = AtomicBool::new(false);

/// The console lock, held; the holder record is cleared before the lock is let go.
struct Console {
    _guard: spin::MutexGuard<'static, Serial>,
}

impl Console {
    fn held(guard: spin::MutexGuard<'static, Serial>) -> Console {
        HOLDER.store(crate::jobs::this_cpu_index() + 1, Ordering::Relaxed);
        WAIT_GAVE_UP.store(false, Ordering::Relaxed);
        Console { _guard: guard }
    }

    /// Waits for the lock (ordinary output: its holder writes a line and lets go).
    fn lock() -> Console {
        Console::held(SERIAL.lock())
    }

    /// The lock within `ms` milliseconds, or `None`: at once if this CPU holds it (the code a
    /// fault or an NMI interrupted; waiting would never end), and without waiting after a wait
    /// that gave up, until the lock is taken again.
    fn within(ms: u64) -> Option<Console> {
        if HOLDER.load(Ordering::Relaxed) == crate::jobs::this_cpu_index() + 1 {
            return None;
        }
        let per_ms = crate::time::tsc_per_ms().max(1);
        let until = crate::time::rdtsc().saturating_add(ms * per_ms);
        let wait = !WAIT_GAVE_UP.load(Ordering::Relaxed);
        loop {
            if let Some(g) = SERIAL.try_lock() {
                return Some(Console::held(g));
            }
            if !wait || crate::time::rdtsc() > until {
                WAIT_GAVE_UP.store(true, Ordering::Relaxed);
                return None;
            }
            core::hint::spin_loop();
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        HOLDER.store(0, Ordering::Relaxed);
    }
}

/// Programs COM1 for 115200 8N1 with FIFOs.
pub fn init() {
    COM1.init();
}

fn put_byte(b: u8) {
    COM1.write_byte(b);
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
    COM1.try_read()
}

/// Whether a byte is waiting on the console (COM1), without taking it; takes no lock.
pub fn input_waiting() -> bool {
    COM1.input_waiting()
}

/// Whether console input arrives by interrupt (see [`Uart::input_by_interrupt`]).
pub fn input_by_interrupt() -> bool {
    COM1.input_by_interrupt()
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
        let _console = Console::lock();
        let _ = fmt::Write::write_fmt(&mut Serial { _private: () }, args);
    });
}

fn put_str_locked(s: &str) {
    let _console = Console::lock();
    put_str(s);
}

/// Text formatted on the stack (no heap: a parked CPU must not allocate), cut at `N` bytes.
pub struct StackText<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackText<N> {
    /// Empty.
    pub const fn new() -> Self {
        Self { buf: [0; N], len: 0 }
    }

    /// What was written (whole characters only).
    pub fn as_str(&self) -> &str {
        // The writer copies whole characters only, so the prefix is valid UTF-8.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> Default for StackText<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for StackText<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = N - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// How long a parked CPU waits for the console's lock before writing without it.
const PARKED_WAIT_MS: u64 = 100;

/// Writes a parked CPU's report whole, under the console's lock, so that it does not interleave
/// with the boot CPU's log line of the same moment (it did: `... faulting address 0x8[ 0.188004]
/// INFO watchdog: ...`, which failed a test 1 run in 10 with a busy host). The holder is another
/// CPU, which writes a line and lets go; if it has not within [`PARKED_WAIT_MS`] (it stopped while
/// holding it), the report is written without the lock, as [`emergency_write`] would.
pub fn write_whole_from_parked_cpu(text: &str) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let _console = Console::within(PARKED_WAIT_MS);
        put_str(text);
    });
}

/// How long a fault or panic report waits for the console lock that another CPU holds.
const REPORT_WAIT_MS: u64 = 20;

/// A CPU's report text not yet written: fault reports come in many `emergency_write` calls per
/// line (`rip: `, the address, ` in `, the symbol, ...), and each line is written whole.
struct ReportLine {
    buf: [u8; 512],
    len: usize,
}

impl ReportLine {
    /// Writes what is buffered, under the console lock when another CPU holds it for at most
    /// [`REPORT_WAIT_MS`]. Only plain bytes are written under the lock: the report's `Display`
    /// code ran before, so a fault in it cannot leave the lock held.
    fn flush(&mut self) {
        if self.len == 0 {
            return;
        }
        // With interrupts off while the lock is held, as every holder does: a panic report runs
        // with them on, and a task preempted holding the console left every other writer
        // spinning with interrupts off (a watchdog hang in `put_str_locked`).
        x86_64::instructions::interrupts::without_interrupts(|| {
            let _console = Console::within(REPORT_WAIT_MS);
            // The buffer holds whole characters (see `write_str`).
            put_str(core::str::from_utf8(&self.buf[..self.len]).unwrap_or(""));
        });
        self.len = 0;
    }
}

impl fmt::Write for ReportLine {
    fn write_str(&mut self, mut s: &str) -> fmt::Result {
        while !s.is_empty() {
            // Up to and including the next line break, or all of it.
            let piece = s.find('\n').map_or(s.len(), |i| i + 1);
            let mut take = piece.min(self.buf.len() - self.len);
            while !s.is_char_boundary(take) {
                take -= 1;
            }
            if take == 0 {
                // Full (a line longer than the buffer): written as it is so far.
                self.flush();
                continue;
            }
            self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
            self.len += take;
            if self.buf[self.len - 1] == b'\n' {
                self.flush();
            }
            s = &s[take..];
        }
        Ok(())
    }
}

/// One CPU's [`ReportLine`], used only on that CPU.
struct ReportSlot {
    /// The line is being appended to: a report nested in another on this CPU (an NMI, a fault in
    /// the report's own code) writes directly instead.
    busy: AtomicBool,
    line: core::cell::UnsafeCell<ReportLine>,
}

// SAFETY: a slot is only used by its own CPU, and `busy` gives one user at a time even when an
// NMI or a fault interrupts a report on that CPU.
unsafe impl Sync for ReportSlot {}

static REPORT_LINES: [ReportSlot; crate::kernel::MAX_CPUS] =
    [const { ReportSlot { busy: AtomicBool::new(false), line: core::cell::UnsafeCell::new(ReportLine { buf: [0; 512], len: 0 }) } };
        crate::kernel::MAX_CPUS];

/// Writes part of a fault or panic report. The text is formatted first (no heap, and no lock
/// held while the arguments' code runs) and collected per CPU until a line is complete; each
/// line is then written whole under the console lock when another CPU holds it briefly, so that
/// it does not interleave with that CPU's output character by character (it did: campaign seed
/// 44, trial 262, beats on CPU 1 unreadable inside CPU 0's reports). The lock is not waited for
/// when this CPU holds it (the interrupted code) or when its holder does not let go within
/// [`REPORT_WAIT_MS`]. A report nested in another on the same CPU is written at once, without
/// the lock, as before.
pub fn emergency_write(args: fmt::Arguments<'_>) {
    let Some(slot) = REPORT_LINES.get(crate::jobs::this_cpu_index()) else {
        let _ = fmt::Write::write_fmt(&mut Serial { _private: () }, args);
        return;
    };
    if slot.busy.swap(true, Ordering::Acquire) {
        let _ = fmt::Write::write_fmt(&mut Serial { _private: () }, args);
        return;
    }
    // SAFETY: `busy` was false and is now ours: no other user of this CPU's line exists (other
    // CPUs use their own slots; a nested report on this CPU sees `busy` and writes directly).
    let line = unsafe { &mut *slot.line.get() };
    let _ = fmt::Write::write_fmt(line, args);
    slot.busy.store(false, Ordering::Release);
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
