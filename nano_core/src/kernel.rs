//! Handing over to the loaded kernel: namespaces, nano_core's own symbols, and `captain`.
//!
//! nano_core creates one namespace per `namespaces/<name>.toml` in the boot image (parent as
//! the manifest says), puts each namespace's objects in its directory, registers its own symbols
//! from the table `imgtool` wrote into this binary ([`DELOS_KERNEL_SYMBOLS`]) as the prelinked
//! crate `nano_core` of the kernel namespace, loads
//! `captain` and calls `captain::init`, found by symbol lookup. Loaded crates reach the loader
//! through [`with_loader_ref`] and [`with_loader_mut`].

use crate::modules::BootModule;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use mod_mgmt::{Loader, NamespaceId, ObjectBytes};
use spin::{Once, RwLock};

/// The loader with every namespace. Loaded crates use it through [`with_loader_ref`] (read-only
/// queries, shared) and [`with_loader_mut`] (loading, unloading, swapping: exclusive).
static LOADER: RwLock<Option<Loader>> = RwLock::new(None);

/// What nano_core knows from boot, for loaded crates.
#[derive(Debug)]
pub struct BootState {
    /// The kernel command line.
    pub cmdline: String,
    /// Every file of the boot image.
    pub modules: Vec<BootModule>,
    /// Microseconds from entry to the hand-over to captain.
    pub handover_us: u64,
    /// Time spent importing nano_core's symbols, in microseconds.
    pub symbol_import_us: u64,
    /// nano_core symbols imported.
    pub nano_core_symbols: usize,
}

static BOOT: Once<BootState> = Once::new();

/// Bytes reserved for nano_core's symbol table; imgtool refuses to build an image whose table
/// does not fit, and says to raise this.
const KERNEL_SYMBOLS_CAPACITY: usize = 768 * 1024;

/// nano_core's symbol table ([`mod_mgmt::symtab`]). The linked binary holds only a marker here;
/// `imgtool` writes the table over it in `target/image/nano_core` once the link has fixed every
/// address. It is part of the kernel image, so it is trusted as the kernel's code is, and the
/// loader reads it in place (no parsing, no copying) — the boot's import was 35 ms from a text
/// file before.
#[unsafe(no_mangle)]
#[used]
#[unsafe(link_section = ".imgtool")]
static DELOS_KERNEL_SYMBOLS: [u8; KERNEL_SYMBOLS_CAPACITY] = {
    let mut a = [0u8; KERNEL_SYMBOLS_CAPACITY];
    let mut i = 0;
    while i < UNFILLED.len() {
        a[i] = UNFILLED[i];
        i += 1;
    }
    a
};

/// What [`DELOS_KERNEL_SYMBOLS`] starts with until imgtool writes the table.
const UNFILLED: &[u8] = b"unfilled: boot the image imgtool writes";

/// A static of the `.imgtool` section as it is in memory: imgtool writes these after the link
/// ([`DELOS_KERNEL_SYMBOLS`], the trust module's manifest digest). The compiler knows their
/// initializers, so they are read through a pointer it cannot see through; otherwise it could
/// fold a read to the initializer instead of the bytes imgtool wrote.
pub(crate) fn written_by_imgtool<T>(s: &'static T) -> &'static T {
    let p = core::hint::black_box(s as *const T);
    // SAFETY: `p` is `s`: an immutable static, mapped read-only for the kernel's lifetime, that
    // nothing writes after the image is built.
    unsafe { &*p }
}

/// Boot information (available once captain runs).
pub fn boot_state() -> &'static BootState {
    BOOT.get().expect("boot state is set before any crate is loaded")
}

/// Runs `f` with shared, read-only access to the loader.
///
/// Readers share the lock, so a fault or a backtrace inside a query can still symbolize (its
/// handler reads too); a mutation waits for all of them. Like every loader access it runs with
/// interrupts off (a timer-driven switch could otherwise leave the lock held by a descheduled
/// task) and allocates from the metadata heap (see [`crate::heap`]: lazily demangled names are
/// loader bookkeeping). Keep `f` short, and print its results after it returns.
pub fn with_loader_ref<T>(f: impl FnOnce(&Loader) -> T) -> T {
    let _in = InLoader::enter();
    crate::heap::metadata(|| {
        let g = spin_until(|| LOADER.try_read());
        let _holder = Holder::reader();
        f(g.as_ref().expect("loader is set up before any crate runs"))
    })
}

/// Runs `f` with the loader locked exclusively, for changes (see [`with_loader_ref`] for the
/// rules both follow). What `f` allocates comes from the metadata heap: the loader's
/// bookkeeping, and results derived from it.
pub fn with_loader_mut<T>(f: impl FnOnce(&mut Loader) -> T) -> T {
    let _in = InLoader::enter();
    crate::heap::metadata(|| {
        let mut g = spin_until(|| LOADER.try_write());
        let _holder = Holder::writer();
        // One round of TLB shootdowns for the whole change (a load protects each part of each
        // crate it adds); unmapped frames are given back only after their own round.
        crate::tlb::batch(|| f(g.as_mut().expect("loader is set up before any crate runs")))
    })
}

/// Spins until `take` gets the lock, with interrupts off (the loader's users run with them
/// off): meanwhile this CPU answers what the lock's holder on another CPU may be waiting for —
/// a TLB shootdown or a stop of the world — which it could not take as an interrupt.
fn spin_until<G>(mut take: impl FnMut() -> Option<G>) -> G {
    loop {
        if let Some(g) = take() {
            return g;
        }
        crate::stw::serve_while_waiting();
        core::hint::spin_loop();
    }
}

/// Like [`with_loader_ref`], but returns `None` instead of waiting if a change holds the loader
/// (for fault handlers and backtraces, which may interrupt code changing it).
pub fn try_with_loader_ref<T>(f: impl FnOnce(&Loader) -> T) -> Option<T> {
    let _in = InLoader::enter();
    crate::heap::metadata(|| {
        let g = LOADER.try_read()?;
        let _holder = Holder::reader();
        g.as_ref().map(f)
    })
}

/// Like [`with_loader_mut`], but returns `None` instead of waiting if anyone holds the loader
/// (for a fault handler repairing code in place).
pub fn try_with_loader_mut<T>(f: impl FnOnce(&mut Loader) -> T) -> Option<T> {
    let _in = InLoader::enter();
    crate::heap::metadata(|| {
        let mut g = LOADER.try_write()?;
        let _holder = Holder::writer();
        g.as_mut().map(f)
    })
}

/// For a fault handler, on any CPU: like [`try_with_loader_mut`], but while the loader is held
/// by another CPU only — whose code goes on and lets go — waits for it (at most
/// [`FAULT_WAIT_MS`], answering TLB shootdown requests meanwhile). `None` if this CPU holds it
/// (the faulting code itself, which never lets go while its fault is handled) or the wait ran
/// out. On one CPU a held loader always meant the faulting code's; with several, a fault on one
/// CPU while another changed code (a bit flipped on purpose, a swap) found the loader busy, took
/// the code for intact, and unwound through the damage.
pub fn with_loader_mut_unless_held_here<T>(f: impl FnOnce(&mut Loader) -> T) -> Option<T> {
    let interrupted_in_loader = InLoader::here();
    let _in = InLoader::enter();
    crate::heap::metadata(|| {
        let mut g = wait_unless_held_here(interrupted_in_loader, || LOADER.try_write())?;
        let _holder = Holder::writer();
        g.as_mut().map(f)
    })
}

/// [`with_loader_mut_unless_held_here`] for reading.
pub fn with_loader_ref_unless_held_here<T>(f: impl FnOnce(&Loader) -> T) -> Option<T> {
    let interrupted_in_loader = InLoader::here();
    let _in = InLoader::enter();
    crate::heap::metadata(|| {
        let g = wait_unless_held_here(interrupted_in_loader, || LOADER.try_read())?;
        let _holder = Holder::reader();
        g.as_ref().map(f)
    })
}

/// How long a fault handler waits for another CPU to let go of the loader.
pub const FAULT_WAIT_MS: u64 = 5000;

/// How long the loader may look held with no holder recorded before a fault handler takes the
/// holder for the code it interrupted.
const UNRECORDED_WAIT_US: u64 = 2_000;

/// Why a fault handler's wait for the loader ([`with_loader_mut_unless_held_here`]) last gave up
/// on a CPU, for its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum GaveUp {
    /// It has not.
    Never = 0,
    /// This CPU holds it: the faulting code itself.
    HeldHere = 1,
    /// Held with no holder recorded for `UNRECORDED_WAIT_US`.
    Unrecorded = 2,
    /// Held by another CPU for all of [`FAULT_WAIT_MS`].
    TimedOut = 3,
}

static GAVE_UP: [core::sync::atomic::AtomicU8; MAX_CPUS] = [const { core::sync::atomic::AtomicU8::new(0) }; MAX_CPUS];

/// This CPU's entry of [`GAVE_UP`].
fn gave_up_here() -> &'static core::sync::atomic::AtomicU8 {
    &GAVE_UP[crate::jobs::this_cpu_index().min(MAX_CPUS - 1)]
}

/// Why this CPU's last wait for the loader in a fault handler gave up (see [`GaveUp`]).
pub fn loader_wait_gave_up() -> GaveUp {
    match gave_up_here().load(Ordering::Relaxed) {
        1 => GaveUp::HeldHere,
        2 => GaveUp::Unrecorded,
        3 => GaveUp::TimedOut,
        _ => GaveUp::Never,
    }
}

/// Per CPU: how many loader accesses (the `with_loader_*` functions) are in progress on it,
/// from before they try the lock until after they let it go. A fault handler that finds the
/// loader held with no holder recorded uses it to tell whose code that can be (see
/// [`wait_unless_held_here`]).
static IN_LOADER: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// One loader access in progress on this CPU ([`IN_LOADER`]), for as long as it lives.
struct InLoader(usize);

impl InLoader {
    fn enter() -> InLoader {
        let cpu = crate::jobs::this_cpu_index().min(MAX_CPUS - 1);
        IN_LOADER[cpu].fetch_add(1, Ordering::Relaxed);
        InLoader(cpu)
    }

    /// Whether code on this CPU is in a loader access (the code a fault handler interrupted).
    fn here() -> bool {
        IN_LOADER[crate::jobs::this_cpu_index().min(MAX_CPUS - 1)].load(Ordering::Relaxed) != 0
    }
}

impl Drop for InLoader {
    fn drop(&mut self) {
        IN_LOADER[self.0].fetch_sub(1, Ordering::Relaxed);
    }
}

/// `interrupted_in_loader`: whether the code this fault interrupted on this CPU was in a loader
/// access ([`InLoader::here`], read before the handler's own access began). Only then can a
/// lock held with no holder recorded be that code's (taken, not recorded yet: it would never
/// go on), and only then is it given up on after [`UNRECORDED_WAIT_US`]. Otherwise the holder
/// is another CPU between taking the lock and recording itself, which is waited for like any
/// holder: a vCPU that the host deschedules in that window stays there for milliseconds, and
/// giving up after 2 ms took damaged code for intact (`smp_damage_hit_by_several_cpus_at_once_runs_again_on_each`
/// with both host cores busy: "the code could not be checked for damage (the loader:
/// Unrecorded)", a task killed, 1 run in 25).
fn wait_unless_held_here<G>(interrupted_in_loader: bool, mut take: impl FnMut() -> Option<G>) -> Option<G> {
    let me = crate::jobs::this_cpu_index() + 1;
    let deadline = crate::time::micros_since_entry() + FAULT_WAIT_MS * 1000;
    let mut unrecorded_since = None;
    loop {
        if let Some(g) = take() {
            return Some(g);
        }
        // One look at every recorded holder: whether there is one, and whether it is this CPU.
        let (mut recorded, mut here) = (false, false);
        for c in core::iter::once(&WRITER_CPU).chain(&READER_CPUS).map(|c| c.load(Ordering::Relaxed)) {
            recorded |= c != 0;
            here |= c == me;
        }
        // Held, and no holder recorded: code between taking the lock and recording itself — on
        // another CPU it records within instructions; if it stays unrecorded, it is the code
        // this CPU interrupted (an NMI between the two), which would never go on.
        // (A reader that found no free slot stays unrecorded too: it is given up on sooner.)
        let now = crate::time::micros_since_entry();
        if recorded || !interrupted_in_loader {
            unrecorded_since = None;
        } else if now - *unrecorded_since.get_or_insert(now) > UNRECORDED_WAIT_US {
            gave_up_here().store(GaveUp::Unrecorded as u8, Ordering::Relaxed);
            return None;
        }
        if here || now > deadline {
            let why = if here { GaveUp::HeldHere } else { GaveUp::TimedOut };
            gave_up_here().store(why as u8, Ordering::Relaxed);
            return None;
        }
        crate::tlb::serve_request();
        core::hint::spin_loop();
    }
}

/// The stack pointer of the code holding the loader exclusively (0 when free): who to blame,
/// and whose death releases it.
static WRITER: AtomicU64 = AtomicU64::new(0);
/// The CPU of that code, plus one (0: free, or not known yet).
static WRITER_CPU: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
/// The CPU of each reader in [`READERS`], plus one.
static READER_CPUS: [core::sync::atomic::AtomicUsize; 8] = [const { core::sync::atomic::AtomicUsize::new(0) }; 8];
/// The stack pointers of the readers holding it (0: free slot). Nesting is shallow (a fault
/// inside a query reads again), so a few slots suffice; a reader that finds none still reads,
/// only its death without unwinding could not be repaired.
static READERS: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

/// Marks the loader as held by the current stack for as long as it lives.
enum Holder {
    Writer,
    Reader(Option<usize>),
}

impl Holder {
    fn writer() -> Holder {
        WRITER.store(current_stack_pointer(), Ordering::Relaxed);
        WRITER_CPU.store(crate::jobs::this_cpu_index() + 1, Ordering::Relaxed);
        Holder::Writer
    }

    fn reader() -> Holder {
        let sp = current_stack_pointer();
        let slot = READERS.iter().position(|r| r.compare_exchange(0, sp, Ordering::Relaxed, Ordering::Relaxed).is_ok());
        if let Some(i) = slot {
            READER_CPUS[i].store(crate::jobs::this_cpu_index() + 1, Ordering::Relaxed);
        }
        Holder::Reader(slot)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        match self {
            Holder::Writer => {
                WRITER_CPU.store(0, Ordering::Relaxed);
                WRITER.store(0, Ordering::Relaxed);
            }
            Holder::Reader(Some(i)) => {
                READER_CPUS[*i].store(0, Ordering::Relaxed);
                READERS[*i].store(0, Ordering::Relaxed);
            }
            Holder::Reader(None) => {}
        }
    }
}

/// Whether anyone holds the loader (a load, a swap, a listing of every section): work that
/// runs with interrupts off and may take long — loading the 9 MiB cranelift_codegen takes about
/// a second under TCG. The watchdog gives it more time before it calls it a hang.
pub fn loader_held() -> bool {
    WRITER.load(Ordering::Relaxed) != 0 || READERS.iter().any(|r| r.load(Ordering::Relaxed) != 0)
}

/// The stack pointers of code doing known-long work with interrupts off outside the loader
/// (0: free slot): building a crate's DWARF line tables for a fault report takes 50–200 ms
/// under TCG, and on an overloaded host it was seen to take 3.7 s. See [`long_work`].
static LONG_WORK: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// Runs `f` marked as known-long work: the watchdog gives it the loader's longer limit (a hang
/// inside it is still reported, later). Nesting and a task that dies inside `f` are handled as
/// for the loader's readers: the mark is keyed by the stack pointer, and a dying task's marks
/// are cleared by [`release_loader_held_by`]. With no free slot `f` still runs, unmarked.
pub fn long_work<T>(f: impl FnOnce() -> T) -> T {
    struct Mark(Option<usize>);
    impl Drop for Mark {
        fn drop(&mut self) {
            if let Some(i) = self.0 {
                LONG_WORK[i].store(0, Ordering::Relaxed);
            }
        }
    }
    let sp = current_stack_pointer();
    let _mark = Mark(LONG_WORK.iter().position(|r| r.compare_exchange(0, sp, Ordering::Relaxed, Ordering::Relaxed).is_ok()));
    f()
}

/// Whether the kernel is doing work that may run long with interrupts off: the loader is held
/// (a load, a swap, a listing of every section) or [`long_work`] runs (a fault report reading
/// debug information). The watchdog gives both its longer limit.
pub fn long_work_running() -> bool {
    loader_held() || LONG_WORK.iter().any(|r| r.load(Ordering::Relaxed) != 0)
}

fn current_stack_pointer() -> u64 {
    let rsp: u64;
    // SAFETY: reads the stack pointer register; no memory is touched.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack)) };
    rsp
}

/// Called by the task layer when a task on the stack `[lo, hi)` ends. If that task died while
/// holding the loader (a panic inside a loader call that could not unwind: the unwinder needs
/// the loader to find frames), the lock is released so that the rest of the system does not
/// hang on it. The loader's state may be half-changed then; this is reported loudly. Its
/// [`long_work`] marks are cleared too.
pub fn release_loader_held_by(lo: u64, hi: u64) {
    let sp = WRITER.load(Ordering::Relaxed);
    if sp >= lo && sp < hi && LOADER.writer_count() > 0 {
        WRITER.store(0, Ordering::Relaxed);
        WRITER_CPU.store(0, Ordering::Relaxed);
        // SAFETY: the write lock's holder is the ending task (its stack holds the marked frame);
        // it never runs again, so no guard of it will be used or dropped.
        unsafe { LOADER.force_write_unlock() };
        crate::serial::emergency_write(format_args!(
            "    (the task died holding the loader lock; released it — the loader may be in a half-changed state)\n"
        ));
    }
    for (slot, cpu) in READERS.iter().zip(&READER_CPUS) {
        let sp = slot.load(Ordering::Relaxed);
        if sp != 0 && sp >= lo && sp < hi && LOADER.reader_count() > 0 {
            cpu.store(0, Ordering::Relaxed);
            slot.store(0, Ordering::Relaxed);
            // SAFETY: this read guard belongs to the ending task (marked from its stack), which
            // never runs again: its guard will never be dropped, so its count is given back here.
            unsafe { LOADER.force_read_decrement() };
            crate::serial::emergency_write(format_args!("    (the task died reading the loader; released its read lock)\n"));
        }
    }
    for slot in &LONG_WORK {
        let sp = slot.load(Ordering::Relaxed);
        if sp != 0 && sp >= lo && sp < hi {
            slot.store(0, Ordering::Relaxed);
        }
    }
    if crate::heap::leave_metadata_if_dead() {
        crate::serial::emergency_write(format_args!("    (the task died allocating loader metadata; back to the general heap)\n"));
    }
    if crate::tlb::leave_batch_if_dead() {
        crate::serial::emergency_write(format_args!(
            "    (the task died inside a batch of page-table changes; its TLB shootdown was sent)\n"
        ));
    }
}

/// What the boot context runs once captain has started the kernel: the task layer's idle step
/// (yield, then halt until the next interrupt). A hook, so that the idle loop itself lives in
/// nano_core and never keeps an old version of the task crate running.
pub static IDLE_HOOK: crate::hooks::Hook<fn()> = crate::hooks::Hook::new("nano_core::idle");

/// One piece of idle work, for code that would otherwise only wait: the idle task, and the
/// shell waiting for a key (the shell is always runnable, so the idle task seldom runs: the
/// shell's wait is where a system's idle time goes; it halts the CPU only once no piece is
/// left). Each piece takes about half a millisecond with interrupts off.
/// Returns whether more is left.
///
/// `keeping`: also run the keeper ([`KEEPER_HOOK`]) when it is due. The shell passes `true`; the
/// idle task `false`, since recovery work can fault, and a fault in the idle task is fatal.
pub fn idle_work(keeping: bool) -> bool {
    let now = crate::time::micros_since_entry();
    if keeping && now.saturating_sub(LAST_KEEP_US.load(Ordering::Relaxed)) >= KEEP_EVERY_US {
        LAST_KEEP_US.store(now, Ordering::Relaxed);
        if let Some(keep) = KEEPER_HOOK.get() {
            keep();
        }
    }
    crate::trust::idle_hash_step()
}

/// A check that idle time runs every [`KEEP_EVERY_US`] (the recovery crate's: when every task
/// that would restart dead tasks is dead itself, idle time does it). A hook: it moves with a
/// swap of its crate.
pub static KEEPER_HOOK: crate::hooks::Hook<fn()> = crate::hooks::Hook::new("nano_core::keeper");
const KEEP_EVERY_US: u64 = 100_000;
static LAST_KEEP_US: AtomicU64 = AtomicU64::new(0);

/// The boot context's last job: the idle loop.
pub fn idle_loop() -> ! {
    loop {
        match IDLE_HOOK.get() {
            Some(step) => step(),
            None => x86_64::instructions::interrupts::enable_and_hlt(),
        }
    }
}

/// On a parked CPU that runs tasks, called by its park loop (its idle task) before it looks at
/// its mailbox: runs this CPU's runnable tasks (the task crate's `schedule`).
pub static AP_SCHEDULE_HOOK: crate::hooks::Hook<fn()> = crate::hooks::Hook::new("nano_core::ap_schedule");
/// Wakes CPU `index` (an IPI) so that its idle task looks for runnable tasks: set by the smp
/// crate, called by the task crate when it makes a task of that CPU runnable.
pub static WAKE_CPU_HOOK: crate::hooks::Hook<fn(usize)> = crate::hooks::Hook::new("nano_core::wake_cpu");

/// Most CPUs nano_core keeps a mailbox for.
pub const MAX_CPUS: usize = 64;

/// Work for a parked CPU: a function, its argument, and the result once it ran there. The
/// poster keeps the function's crate referenced while it waits (its own code names the
/// function), which is what keeps a swap from retiring code a parked CPU is running.
#[derive(Debug)]
pub struct Mailbox {
    job: AtomicU64,
    arg: AtomicU64,
    result: AtomicU64,
    done: core::sync::atomic::AtomicBool,
    /// Why the last job was abandoned, if it was.
    fault: spin::Mutex<Option<crate::jobs::JobFault>>,
}

impl Mailbox {
    const fn new() -> Mailbox {
        Mailbox {
            job: AtomicU64::new(0),
            arg: AtomicU64::new(0),
            result: AtomicU64::new(0),
            done: core::sync::atomic::AtomicBool::new(false),
            fault: spin::Mutex::new(None),
        }
    }

    /// Posts `f(arg)`; the poster then wakes the CPU (an IPI) and waits for [`Mailbox::result`].
    /// `false` if a job is still pending.
    pub fn post(&self, f: fn(u64) -> u64, arg: u64) -> bool {
        if self.job.load(Ordering::Acquire) != 0 {
            return false;
        }
        self.done.store(false, Ordering::Release);
        *self.fault.lock() = None;
        self.arg.store(arg, Ordering::Release);
        self.job.store(f as usize as u64, Ordering::Release);
        true
    }

    /// The result of the last job once it ran, or why it was abandoned (a CPU exception or a
    /// panic in it, see `crate::jobs`).
    pub fn outcome(&self) -> Option<Result<u64, crate::jobs::JobFault>> {
        if !self.done.load(Ordering::Acquire) {
            return None;
        }
        // Interrupts off around the lock: a parked CPU's exception gate may wait for it.
        Some(match x86_64::instructions::interrupts::without_interrupts(|| *self.fault.lock()) {
            Some(f) => Err(f),
            None => Ok(self.result.load(Ordering::Acquire)),
        })
    }

    /// Records why the running job is abandoned (the CPU's exception or panic gate).
    pub(crate) fn note_abandoned(&self, f: crate::jobs::JobFault) {
        *self.fault.lock() = Some(f);
    }
}

/// One mailbox per CPU index (0, the boot CPU, never parks).
pub static MAILBOXES: [Mailbox; MAX_CPUS] = [const { Mailbox::new() }; MAX_CPUS];

/// Where a CPU that runs no tasks waits for good: halted with interrupts on, so that IPIs reach
/// it; after each wake-up it runs the job in its [`Mailbox`], if any. In nano_core, so that
/// between jobs and interrupts a parked CPU runs no loaded crate's code, which a swap could
/// retire. Only IPIs arrive: the legacy PIC's interrupts go to the boot CPU alone.
pub fn park_cpu(index: usize) -> ! {
    crate::jobs::arrive(index);
    loop {
        // A CPU that runs tasks: this loop is its idle task; whatever is runnable here runs
        // first (the hook returns when this CPU's idle task is switched to again).
        if crate::jobs::runs_tasks(index)
            && let Some(schedule) = AP_SCHEDULE_HOOK.get()
        {
            schedule();
        }
        // Interrupts off while the mailbox is looked at: an IPI that arrives after the look
        // stays pending until `sti; hlt`, which it then ends at once.
        x86_64::instructions::interrupts::disable();
        if let Some(b) = MAILBOXES.get(index) {
            let job = b.job.load(Ordering::Acquire);
            if job != 0 {
                crate::tlb::before_job(index);
                x86_64::instructions::interrupts::enable();
                // A fault or a panic in the job abandons it (see `crate::jobs`): its result is
                // then 0, and the mailbox says why.
                let r = crate::jobs::run(index, job as usize, b.arg.load(Ordering::Acquire)).unwrap_or(0);
                x86_64::instructions::interrupts::disable();
                crate::tlb::after_job(index);
                b.result.store(r, Ordering::Release);
                // `done` before the slot is freed: a next `post` (possible once `job` is 0)
                // clears `done`, and must not have it set again by this job.
                b.done.store(true, Ordering::Release);
                b.job.store(0, Ordering::Release);
                continue;
            }
        }
        x86_64::instructions::interrupts::enable_and_hlt();
    }
}

/// The address `symbol` resolves to in `namespace` now. A long-running loop compares it with
/// its own function's address at a quiet point: once a swap replaced its crate they differ, and
/// the loop hands over to the new version (like an Erlang process making a fully qualified
/// call) instead of keeping the old version's code alive forever.
pub fn current_version(namespace: &str, symbol: &str) -> Option<u64> {
    with_loader_ref(|l| {
        let ns = l.namespace_by_name(namespace).ok()?;
        l.lookup(ns, symbol).ok().map(|s| s.addr)
    })
}

/// Turns the address of a loaded `fn() -> isize` into a callable function pointer.
///
/// This is how entry points found by symbol lookup (the shell's `main`, commands) are called;
/// the signature is the contract between the caller and the crate, which both sides are built
/// against in the same build.
pub fn entry_point(addr: u64) -> fn() -> isize {
    // SAFETY: callers pass the address of a function with this signature from a loaded,
    // executable section; function pointers and addresses have the same representation.
    unsafe { core::mem::transmute::<usize, fn() -> isize>(addr as usize) }
}

/// Turns the address of a loaded `fn(u64) -> isize` (a restartable task's entry) into a
/// callable pointer (same contract as [`entry_point`]).
pub fn restartable_entry(addr: u64) -> fn(u64) -> isize {
    // SAFETY: as in `entry_point`, for the restartable-task signature.
    unsafe { core::mem::transmute::<usize, fn(u64) -> isize>(addr as usize) }
}

/// What [`try_load_and_init`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LazyStart {
    /// The crate is loaded and its `init` ran.
    Started,
    /// Someone holds the loader (a fault inside a loader query, a load in progress): nothing
    /// was done; try again later.
    Busy,
    /// The crate could not be loaded or exports no `init` (the reason).
    Failed(alloc::string::String),
}

/// Loads crate `name` into namespace `namespace` unless it is loaded, and calls its
/// `<name>::init` (`fn()`, by convention), with the loader released: how a subsystem that the
/// boot does not need (source locations: `debuginfo`, `gimli`, `addr2line`) comes in on first
/// use. Never waits for the loader, so fault handlers may call it.
pub fn try_load_and_init(namespace: &str, name: &str) -> LazyStart {
    let found = try_with_loader_mut(|l| {
        let ns = l.namespace_by_name(namespace).map_err(|e| alloc::format!("{e}"))?;
        let k = l.load_crate(ns, name).map_err(|e| alloc::format!("{e}"))?;
        l.export_of(k, &alloc::format!("{name}::init")).ok_or_else(|| alloc::format!("{name} exports no {name}::init"))
    });
    match found {
        None => LazyStart::Busy,
        Some(Err(e)) => LazyStart::Failed(e),
        Some(Ok(addr)) => {
            // SAFETY: `<crate>::init` is, by convention, a `fn()` its crate exports; same build
            // as this kernel.
            let f: fn() = unsafe { core::mem::transmute::<usize, fn()>(addr as usize) };
            f();
            LazyStart::Started
        }
    }
}

/// Calls `<crate>::HOOK` — by convention a `fn()` the crate exports — of every live crate
/// `which` selects that has one, each looked up in its own namespace (a private copy's hook,
/// not its parent's). Called with the loader released: what a hook drops may go back to the
/// loader. Returns how many ran. (`after_swap` after every swap, `before_unload` before a
/// namespace is dropped.)
pub fn call_crate_hooks(hook: &str, which: &dyn Fn(&mod_mgmt::LoadedCrate) -> bool) -> usize {
    let calls: alloc::vec::Vec<u64> = with_loader_ref(|l| {
        l.crates().filter(|k| which(k)).filter_map(|k| l.export_of(k.id, &alloc::format!("{}::{hook}", k.name))).collect()
    });
    for &addr in &calls {
        // SAFETY: `<crate>::HOOK` is, by the hook's convention, a `fn()` its crate exports; same
        // build as this kernel.
        let f: fn() = unsafe { core::mem::transmute::<usize, fn()>(addr as usize) };
        f();
    }
    calls.len()
}

/// The caller's frame pointer (the frame-pointer ABI keeps `rbp` pointing at the current
/// frame record: saved `rbp`, then the return address).
#[inline(always)]
pub fn current_frame_pointer() -> u64 {
    let rbp: u64;
    // SAFETY: reads a register; no memory is touched.
    unsafe { core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack)) };
    rbp
}

/// The frame record at `rbp` — (saved `rbp`, return address) — if both words are mapped.
pub fn read_frame_record(rbp: u64) -> Option<(u64, u64)> {
    if !rbp.is_multiple_of(8) {
        return None;
    }
    crate::paging::translate(rbp)?;
    crate::paging::translate(rbp + 8)?;
    // SAFETY: both words are mapped (checked above) and aligned.
    Some(unsafe { ((rbp as *const u64).read(), ((rbp + 8) as *const u64).read()) })
}

/// Why the hand-over failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandoverError {
    /// The loader refused something.
    #[error(transparent)]
    Load(#[from] mod_mgmt::LoadError),
    /// A needed file is not in the boot image.
    #[error("boot image lacks {0}")]
    Missing(String),
    /// The boot image is not signed with this kernel's key.
    #[error("the boot image is not trusted: {0}")]
    Untrusted(#[from] crate::trust::TrustError),
    /// This binary is the linker's output, without the symbol table imgtool writes into it.
    #[error("nano_core's symbol table was never written into this binary: boot target/image/nano_core, which imgtool makes")]
    NoSymbolTable,
}

/// `parent = "..."` from a namespace manifest (the only key nano_core needs).
fn manifest_parent(text: &str) -> Option<&str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "parent").then(|| v.trim().trim_matches('"'))
    })
}

/// Whether each crate's load is logged at `info` (the `log_loads` kernel option; `debug`
/// otherwise). Every byte to the serial port costs about 2.8 us under QEMU (an exit and a host
/// write per byte), and a crate's line is about 190 bytes: the boot's 19 lines took 10 ms, half
/// the time of a small crate's swap went to its line, and they ran with interrupts off, inside
/// the loader. `make bench` and the tests that count loads boot with `log_loads`.
static LOG_LOADS: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Logs each crate the loader links: its size, relocations and own load+link time.
fn log_load(l: &Loader, id: mod_mgmt::CrateId) {
    let level = if LOG_LOADS.load(Ordering::Relaxed) { log::Level::Info } else { log::Level::Debug };
    if !log::log_enabled!(level) {
        return;
    }
    if let Some(k) = l.krate(id) {
        let ns = l.namespace(k.namespace).map_or("?", |n| n.name.as_str());
        let p = k.phases;
        log::log!(
            level,
            "crate {} loaded into {ns}: {} sections, {} relocations, {} bytes, {} us (check {}, parse {}, place {}, register {}, resolve {}, relocate {})",
            k.name,
            k.sections.len(),
            k.relocations,
            k.memory_size(),
            k.load_us,
            p.check_us,
            p.parse_us,
            p.place_us,
            p.register_us,
            p.resolve_us,
            p.relocate_us
        );
    }
}

fn gdb_and_log(l: &Loader, id: mod_mgmt::CrateId) {
    log_load(l, id);
    print_gdb_sections(l, id);
}

/// Prints, for a debugger, where each section of a just-loaded crate lives:
/// `gdb-load: FILE SECTION ADDR SECTION ADDR ...` (tools/delos.gdb turns these lines into
/// `add-symbol-file` commands). Enabled by the `gdb` kernel option.
fn print_gdb_sections(l: &Loader, id: mod_mgmt::CrateId) {
    let Some(k) = l.krate(id) else { return };
    let mut line = alloc::format!("gdb-load: {}", k.file);
    for s in &k.sections {
        if let Some(sec) = l.section(*s)
            && !sec.kind.is_tls()
            && sec.size > 0
        {
            line.push_str(&alloc::format!(" {} {:#x}", sec.name, sec.addr));
        }
    }
    crate::println!("{line}");
}

/// Sets up namespaces and loads captain; returns the address of `captain::init`. The loader's
/// bookkeeping goes to the metadata heap from the start (see [`crate::heap`]).
pub fn start(cmdline: &str, modules: Vec<BootModule>) -> Result<fn(), HandoverError> {
    crate::heap::metadata(|| start_loader(cmdline, modules))
}

fn start_loader(cmdline: &str, modules: Vec<BootModule>) -> Result<fn(), HandoverError> {
    let t = crate::time::micros_since_entry();
    let (files, how) = crate::trust::init(&modules)?;
    let how = match how {
        signing::ManifestTrust::BuiltIn => "is the one this kernel was built with (SHA-512)",
        signing::ManifestTrust::Signed => "is signed with this kernel's key",
    };
    log::info!("trust: the boot image's manifest of {files} files {how} ({} us)", crate::time::micros_since_entry() - t);
    let mut l = Loader::new(&crate::kmem::KERNEL_MEMORY);
    l.set_object_check(|_file, bytes| crate::trust::check(bytes).map_err(|e| alloc::format!("{e}")));
    l.set_clock(crate::time::micros_since_entry);
    LOG_LOADS.store(boot_info::cmdline::get(cmdline, "log_loads").is_some(), Ordering::Relaxed);
    if let Some(pieces) = boot_info::cmdline::get(cmdline, "idle_hash").and_then(|v| v.parse().ok()) {
        crate::trust::limit_idle_hashing(pieces);
    }
    l.set_load_hook(if boot_info::cmdline::get(cmdline, "gdb").is_some() { gdb_and_log } else { log_load });
    // Namespaces: kernel first, then the others in an order where parents come first.
    let mut manifests: Vec<(String, Option<String>)> = modules
        .iter()
        .filter_map(|m| {
            let name = m.name.strip_prefix("namespaces/")?.strip_suffix(".toml")?;
            let text = core::str::from_utf8(m.data).ok()?;
            Some((name.to_string(), manifest_parent(text).map(String::from)))
        })
        .collect();
    manifests.sort_by_key(|(n, p)| (p.is_some(), n.clone()));
    let mut ids: Vec<(String, NamespaceId)> = Vec::new();
    for (name, parent) in &manifests {
        let parent_id = match parent {
            Some(p) => Some(
                ids.iter()
                    .find(|(n, _)| n == p)
                    .map(|(_, id)| *id)
                    .ok_or_else(|| HandoverError::Missing(alloc::format!("parent namespace {p}")))?,
            ),
            None => None,
        };
        ids.push((name.clone(), l.add_namespace(name, parent_id)?));
    }
    let kernel = ids
        .iter()
        .find(|(n, _)| n == "kernel")
        .map(|(_, id)| *id)
        .ok_or_else(|| HandoverError::Missing("namespaces/kernel.toml".into()))?;
    for m in &modules {
        let Some(rest) = m.name.strip_prefix("namespaces/") else { continue };
        let Some((ns, file)) = rest.split_once('/') else { continue };
        if let Some((_, id)) = ids.iter().find(|(n, _)| n == ns) {
            match file.strip_prefix("updates/") {
                Some(update) => l.add_update_file(*id, update, ObjectBytes::Static(m.data))?,
                None => l.add_object_file(*id, file, ObjectBytes::Static(m.data))?,
            }
        }
    }

    // The directories' load-on-demand indexes, prepared at build time (mod_mgmt::dirindex). One
    // that does not verify or does not match its directory is not used: the loader then builds
    // the index from the objects, as for a namespace made at run time.
    for (ns, id) in &ids {
        let name = alloc::format!("dirindex/{ns}");
        let Some(m) = modules.iter().find(|m| m.name == name) else { continue };
        let installed = crate::trust::check(m.data)
            .map_err(|e| alloc::format!("{e}"))
            .and_then(|()| l.set_dir_index(*id, &name, ObjectBytes::Static(m.data)).map_err(|e| alloc::format!("{e}")));
        if let Err(e) = installed {
            log::warn!("{name} not used: {e}");
        }
    }

    let t0 = crate::time::micros_since_entry();
    let bytes: &'static [u8] = written_by_imgtool(&DELOS_KERNEL_SYMBOLS).as_slice();
    if bytes.starts_with(UNFILLED) {
        return Err(HandoverError::NoSymbolTable);
    }
    let table = mod_mgmt::symtab::SymbolTable::new("nano_core's symbol table", bytes)?;
    let t_open = crate::time::micros_since_entry();
    l.add_prelinked_table(kernel, "nano_core", table)?;
    let import_us = crate::time::micros_since_entry() - t0;
    log::info!(
        "imported {} nano_core symbols ({} sections) in {} us (table in the kernel image: open {} us, register {} us)",
        table.symbol_count(),
        table.section_count(),
        import_us,
        t_open - t0,
        import_us - (t_open - t0)
    );

    let t1 = crate::time::micros_since_entry();
    let captain = l.load_crate(kernel, "captain")?;
    let st = l.last_load_stats();
    log::info!(
        "loaded {}: {} crates, {} sections, {} symbols, {} relocations in {} us",
        l.krate(captain).map_or("captain", |k| k.file.as_str()),
        st.crates,
        st.sections,
        st.symbols,
        st.relocations,
        crate::time::micros_since_entry() - t1
    );
    let init = l.export_of(captain, "captain::init").ok_or_else(|| HandoverError::Missing("captain::init".into()))?;
    *LOADER.write() = Some(l);
    BOOT.call_once(|| BootState {
        cmdline: cmdline.to_string(),
        modules,
        handover_us: crate::time::micros_since_entry(),
        symbol_import_us: import_us,
        nano_core_symbols: table.symbol_count(),
    });
    // SAFETY: `captain::init` is a loaded, relocated function in an executable section with the
    // signature `fn()` (captain's contract with nano_core, checked by the QEMU tests).
    Ok(unsafe { core::mem::transmute::<usize, fn()>(init as usize) })
}
