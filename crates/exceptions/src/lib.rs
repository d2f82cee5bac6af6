//! exceptions: the loaded kernel's IDT, replacing nano_core's early one.
//!
//! A task may register one handler per [`Category`] of fault (invalid address, illegal
//! instruction, bus error, arithmetic error); the handler sees the instruction and stack
//! pointers, error code and faulting address, and either resumes the task at a landing address
//! it supplies (what a WASM runtime needs to turn a fault into a trap) or lets it die. Without
//! a handler, the fault gets a report that names the faulting instruction through the loader's
//! address index (`symbol + offset (crate, namespace)`) and a frame-pointer backtrace, symbolized
//! the same way; then the task crate's [`FaultHook`] either resumes the task at a landing
//! address of its own, from which it unwinds (the handler's frame is never unwound through),
//! or ends it and switches away.
//! A fault outside any task halts the machine with the failure exit code. An NMI goes to the
//! NMI hook (the watchdog crate's), which says whether the CPU hangs with interrupts off; a
//! hang is repaired or handled as a fault at the looping instruction (see [`set_nmi_hook`]).
//! Hardware interrupt vectors (32..=255) are filled by the interrupts crate through
//! [`set_interrupt_handler`]. Double faults run on nano_core's IST stack.
#![no_std]
#![feature(abi_x86_interrupt)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

mod nmi;
mod registry;

use core::sync::atomic::{AtomicU64, Ordering};
use nano_core::hooks::Hook;
use nano_core::serial::emergency_write;
use spin::Once;
use x86_64::registers::control::Cr2;
use x86_64::structures::idt::{HandlerFunc, InterruptDescriptorTable, InterruptStackFrame};

/// What a fault hook is told.
#[derive(Debug, Clone, Copy)]
pub struct FaultInfo {
    /// Exception name.
    pub name: &'static str,
    /// Vector number.
    pub vector: u8,
    /// Error code, if the exception has one.
    pub error: Option<u64>,
    /// CR2 for page faults.
    pub address: Option<u64>,
    /// Faulting instruction.
    pub rip: u64,
    /// Stack pointer at the fault.
    pub rsp: u64,
    /// The faulting function's own code was found damaged before the faulting instruction (and
    /// repaired): what ran may have left its frame unlike what its unwind information says (a
    /// flipped prologue moves the stack pointer or skips a save), so unwinding through it would
    /// restore wrong registers into its callers — it was seen to run a destructor's `memset`
    /// on a code page. The task layer ends such a task without unwinding it.
    pub frame_unreliable: bool,
}

/// Called after the report. It either ends the faulting task (and does not return), returns a
/// landing address where the task continues on its faulting stack pointer (how a fault becomes
/// an unwind), or returns `None` when the fault is fatal (no task to blame).
pub type FaultHook = fn(&FaultInfo) -> Option<u64>;

/// Kinds of fault a task can handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    /// Page fault, general protection fault, stack-segment fault.
    InvalidAddress,
    /// Invalid opcode (`ud2`, WASM's `unreachable`).
    IllegalInstruction,
    /// Alignment check, segment not present.
    BusError,
    /// Divide error, x87 and SIMD floating-point exceptions.
    ArithmeticError,
}

impl Category {
    /// The category of an exception vector, if it has one.
    pub fn of_vector(v: u8) -> Option<Category> {
        Some(match v {
            12..=14 => Category::InvalidAddress,
            6 => Category::IllegalInstruction,
            17 | 11 => Category::BusError,
            0 | 16 | 19 => Category::ArithmeticError,
            _ => return None,
        })
    }
}

/// What a task's handler decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Continue the task at this instruction address (same stack pointer).
    Resume(u64),
    /// Let the task die (the normal report and kill follow).
    Kill,
}

/// A task's fault handler.
pub type Handler = fn(&FaultInfo, Category) -> Action;

/// Why a handler could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerError {
    /// The task already has a handler for this category.
    AlreadyRegistered(Category),
    /// No task layer is running (no current-task source).
    NoTasks,
    /// Every slot of the handler table is taken.
    Full,
}

impl core::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HandlerError::AlreadyRegistered(c) => write!(f, "this task already has a {c:?} handler"),
            HandlerError::NoTasks => write!(f, "no task layer to attach the handler to"),
            HandlerError::Full => write!(f, "all {} fault-handler slots are taken", registry::SLOTS),
        }
    }
}

static CURRENT_TASK: Hook<fn() -> u64> = Hook::new("exceptions::current_task");
static RESUMED: AtomicU64 = AtomicU64::new(0);

/// The task layer tells which task runs (the task crate calls this once).
pub fn set_current_task_source(f: fn() -> u64) {
    CURRENT_TASK.set(f);
}

fn current_task() -> Option<u64> {
    CURRENT_TASK.get().map(|f| f())
}

/// Registers `handler` for `category` faults of the calling task (one per category).
pub fn register_handler(category: Category, handler: Handler) -> Result<(), HandlerError> {
    let id = current_task().ok_or(HandlerError::NoTasks)?;
    registry::add(id, category, handler).map_err(|e| match e {
        registry::AddError::Present => HandlerError::AlreadyRegistered(category),
        registry::AddError::Full => HandlerError::Full,
    })
}

/// Removes the calling task's handler for `category`.
pub fn unregister_handler(category: Category) {
    if let Some(id) = current_task() {
        registry::remove(id, Some(category));
    }
}

/// Forgets every handler of a task (the task layer calls this when a task ends).
pub fn forget_task(id: u64) {
    registry::remove(id, None);
}

/// How many fault handlers tasks have registered.
pub fn handler_count() -> usize {
    registry::count()
}

/// Faults that a task's handler resumed.
pub fn resumed_count() -> u64 {
    RESUMED.load(Ordering::Relaxed)
}

/// The landing address if the current task's handler wants to resume.
fn handled(info: &FaultInfo) -> Option<u64> {
    let cat = Category::of_vector(info.vector)?;
    let id = current_task()?;
    let h = registry::find(id, cat)?;
    match h(info, cat) {
        Action::Resume(at) => {
            RESUMED.fetch_add(1, Ordering::Relaxed);
            Some(at)
        }
        Action::Kill => None,
    }
}

/// Prints a frame-pointer backtrace starting at `rbp`, each return address symbolized.
///
/// With `fault = (rip, rsp)`, the faulting instruction is frame #0 and the exception
/// machinery's own frames are skipped: they lie below the interrupted stack pointer (or on the
/// page-fault IST stack), so the walk starts at the first frame record at or above `rsp`.
/// Return addresses are looked up one byte back, inside the call instruction: a call that ends
/// a function (to a `-> !` callee) returns to the first byte after it, which may belong to the
/// next function or to no section at all.
pub fn print_backtrace(rbp: u64, fault: Option<(u64, u64)>) {
    ensure_locations();
    emergency_write(format_args!("    backtrace:\n"));
    let mut rbp = rbp;
    let mut depth = 0;
    if let Some((rip, _)) = fault {
        emergency_write(format_args!("      #0  {rip:#018x} "));
        describe(rip, &mut |a| emergency_write(a));
        emergency_write(format_args!("\n"));
        depth = 1;
    }
    let mut skipping = fault.is_some();
    for _ in 0..64 {
        if depth >= 32
            || rbp == 0
            || !rbp.is_multiple_of(8)
            || nano_core::paging::translate(rbp).is_none()
            || nano_core::paging::translate(rbp + 8).is_none()
        {
            break;
        }
        // SAFETY: both words are mapped (checked just above); a frame record is two words.
        let (next, ret) = unsafe { ((rbp as *const u64).read(), ((rbp + 8) as *const u64).read()) };
        if let Some((_, rsp)) = fault
            && skipping
            && rbp >= rsp
            && rbp - rsp < 1 << 20
        {
            skipping = false;
        }
        if ret == 0 {
            break;
        }
        if !skipping {
            emergency_write(format_args!("      #{depth:<2} {ret:#018x} "));
            describe_at(ret - 1, 1, &mut |a| emergency_write(a));
            emergency_write(format_args!("\n"));
            depth += 1;
        }
        if next == 0 {
            break;
        }
        rbp = next;
    }
}

fn current_rbp() -> u64 {
    let rbp: u64;
    // SAFETY: reads the frame pointer register; no memory is touched.
    unsafe { core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack)) };
    rbp
}

static HOOK: Hook<FaultHook> = Hook::new("exceptions::fault");
static LOCATION_HOOK: Hook<fn(u64) -> Option<alloc::string::String>> = Hook::new("exceptions::location");

/// Reads this crate's hook slots, which votes their three copies back into agreement (see
/// `nano_core::triple`). They are read only when a fault arrives, so a flipped bit in one copy
/// would otherwise wait there until a second flip in another copy of the same slot lost the
/// value — at the very fault it was needed for (seen in the fault campaign). The task layer
/// calls this a few times a second.
pub fn vote_hooks() {
    let _ = (HOOK.get(), LOCATION_HOOK.get(), CURRENT_TASK.get(), NMI_HOOK.get());
}

/// Registers a function that gives `file:line:column` for an address (the debuginfo crate);
/// reports and backtraces then show source locations.
pub fn set_location_hook(f: fn(u64) -> Option<alloc::string::String>) {
    LOCATION_HOOK.set(f);
}

/// Whether loading the location provider was tried and failed for good (not merely found the
/// loader busy): then reports go on without source locations instead of trying every time.
static LOCATIONS_UNAVAILABLE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// The source location of `addr`, if a location hook is registered and knows it.
///
/// The provider (the `debuginfo` crate, with `gimli` and `addr2line`: 25 ms of loading on TCG)
/// is not loaded at boot; the first lookup loads it from the kernel namespace. If the loader is
/// busy at that moment (a fault inside a loader query), this lookup has no location and a later
/// one tries again.
pub fn location(addr: u64) -> Option<alloc::string::String> {
    if !locations_safe_here() {
        return None;
    }
    ensure_locations();
    LOCATION_HOOK.get().and_then(|f| f(addr))
}

/// Whether a source location may be looked up here: the lookup allocates, and loading the
/// provider maps memory, so not while the code this CPU interrupted (an NMI comes anywhere)
/// holds a heap or the page tables — it would wait for ever (a watchdog NMI that faulted on
/// damaged code hung so, loading `debuginfo` while the interrupted task was mapping).
fn locations_safe_here() -> bool {
    !nano_core::heap::held_here() && !nano_core::paging::held_here()
}

/// Loads the location provider now if it is not loaded (see [`location`]). Reports and
/// backtraces call it before they print, so that the loader's log lines come before them
/// rather than inside one of their lines.
pub fn ensure_locations() {
    if LOCATION_HOOK.get().is_none() && locations_safe_here() && !LOCATIONS_UNAVAILABLE.load(Ordering::Relaxed) {
        match nano_core::kernel::try_load_and_init("kernel", "debuginfo") {
            nano_core::kernel::LazyStart::Started | nano_core::kernel::LazyStart::Busy => {}
            nano_core::kernel::LazyStart::Failed(why) => {
                LOCATIONS_UNAVAILABLE.store(true, Ordering::Relaxed);
                log::warn!("exceptions: no source locations: {why}");
            }
        }
    }
}
static FAULTS: AtomicU64 = AtomicU64::new(0);
static IDT: Once<spin::Mutex<&'static mut InterruptDescriptorTable>> = Once::new();

/// Installs the hook that decides what a fault does to the running task.
pub fn set_fault_hook(hook: FaultHook) {
    HOOK.set(hook);
}

/// Number of exceptions reported since boot.
pub fn fault_count() -> u64 {
    FAULTS.load(Ordering::Relaxed)
}

/// Names an address as `symbol + 0xoff (crate, namespace)` if the loader knows it. Never
/// blocks: during a fault the loader may be locked by the interrupted code.
pub fn describe(addr: u64, out: &mut dyn FnMut(core::fmt::Arguments<'_>)) {
    describe_at(addr, 0, out)
}

/// Like [`describe`] for `addr`, showing the offset of `addr + bias` (backtraces look up return
/// addresses one byte back).
pub fn describe_at(addr: u64, bias: u64, out: &mut dyn FnMut(core::fmt::Arguments<'_>)) {
    describe_symbol(addr, bias, out);
    if let Some(loc) = location(addr) {
        out(format_args!(" at {loc}"));
    }
}

/// The symbol part of [`describe_at`], without the source location (whose lookup allocates and
/// may load `debuginfo`: not for an NMI's path, which comes at every timer period).
fn describe_symbol(addr: u64, bias: u64, out: &mut dyn FnMut(core::fmt::Arguments<'_>)) {
    // No allocation: names are borrowed from the loader (which caches demangled names), and
    // printed while it is held.
    let found = nano_core::kernel::with_loader_ref_unless_held_here(|l| match l.symbol_at(addr) {
        Some((sec, off, sym)) => {
            let k = l.krate(sec.krate);
            let krate = k.map_or("?", |k| k.name.as_str());
            let ns = k.and_then(|k| l.namespace(k.namespace)).map_or("?", |n| n.name.as_str());
            match sym {
                Some((y, yoff)) => out(format_args!("{} + {:#x} (crate {krate}, namespace {ns})", y.demangled(), yoff + bias)),
                None => out(format_args!("{} + {:#x} (crate {krate}, namespace {ns})", sec.name, off + bias)),
            }
            true
        }
        None => false,
    });
    match found {
        Some(true) => {}
        Some(false) => out(format_args!("not in any loaded section")),
        None => out(format_args!("(loader busy; no symbol)")),
    }
}

fn report(info: FaultInfo) -> u64 {
    FAULTS.fetch_add(1, Ordering::Relaxed);
    ensure_locations();
    emergency_write(format_args!("\n!!! CPU EXCEPTION: {} (vector {})\n", info.name, info.vector));
    if let Some(e) = info.error {
        emergency_write(format_args!("    error code: {e:#x}\n"));
    }
    if let Some(a) = info.address {
        emergency_write(format_args!("    faulting address: {a:#x}\n"));
    }
    emergency_write(format_args!("    rip: {:#x} in ", info.rip));
    describe(info.rip, &mut |a| emergency_write(a));
    emergency_write(format_args!("\n    rsp: {:#x}\n", info.rsp));
    // From here the frame-pointer chain leads through the handler to the faulting code.
    print_backtrace(current_rbp(), Some((info.rip, info.rsp)));
    let mut info = info;
    match repair_in_place(&info) {
        Repair::RunAgain(at) => return at,
        Repair::RanBefore { damage: Damage::FaultingFunction } => {
            info.frame_unreliable = true;
            emergency_write(format_args!("    the damage was in the faulting function itself: its frame cannot be trusted to unwind\n"));
        }
        Repair::RanBefore { damage: Damage::ReadOnlyData } => {
            info.frame_unreliable = true;
            emergency_write(format_args!(
                "    the damage was in read-only data (code addresses, unwind tables): the faulting frame cannot be trusted to unwind\n"
            ));
        }
        Repair::RanBefore { damage: Damage::OtherCode } | Repair::Intact => {}
    }
    if let Some(hook) = HOOK.get()
        && let Some(at) = hook(&info)
    {
        return at;
    }
    emergency_write(format_args!("    fault outside any task: system halted (exit code failure)\n"));
    nano_core::qemu::exit(nano_core::qemu::ExitCode::Failure)
}

static REPAIRS_IN_PLACE: AtomicU64 = AtomicU64::new(0);

/// Faults survived by restoring corrupted code and running the faulting instruction again.
pub fn repairs_in_place() -> u64 {
    REPAIRS_IN_PLACE.load(Ordering::Relaxed)
}

/// If the faulting instruction lies in a crate whose code no longer matches what the loader
/// sealed, writes the sealed bytes back (the loader's `restore_at`, which allocates nothing).
/// When every changed byte lay within the faulting instruction's 16 bytes, that instruction
/// was the damage and did not complete (a fault, not a trap, except `int3` which has run):
/// returns where to run it again — the interrupted code goes on as if nothing had happened,
/// whatever context it was in (a task, the scheduler, an interrupt handler). Otherwise the
/// code is repaired but the fault takes its usual course: the damage ran earlier, and what it
/// did cannot be undone.
fn repair_in_place(info: &FaultInfo) -> Repair {
    // Not damage (debug, NMI, overflow), or nothing to return to (double fault, machine check).
    if matches!(info.vector, 1 | 2 | 4 | 8 | 18) {
        return Repair::Intact;
    }
    // A repair changes page permissions: not while the interrupted code is changing mappings
    // (an NMI may come anywhere). The NMI is then abandoned, and the next one repairs.
    if nano_core::paging::held_here() {
        return Repair::Intact;
    }
    // `int3` (a bit flip can make one) traps after the instruction: it starts one byte back.
    let at = if info.vector == 3 { info.rip.wrapping_sub(1) } else { info.rip };
    let repaired = nano_core::kernel::with_loader_mut_unless_held_here(|l| {
        let (id, r) = l.restore_at(at)?;
        if r.bytes > 0 && r.first >= at && r.end <= at + 16 {
            // Before the loader is let go: a CPU that faulted on the same damage and waits for
            // the loader finds the code intact, and must know why (see `repaired_meanwhile`).
            recent::remember(r.first, r.end);
        }
        let name = l.krate(id).map_or("?", |k| k.name.as_str());
        say_restored(name, &r);
        // Whether the first changed byte lies in the faulting function, before the fault.
        let function_start = |a: u64| l.symbol_at(a).and_then(|(_, _, sym)| sym).map(|(_, off)| a - off);
        let damage = if r.first < at && function_start(r.first).is_some_and(|f| Some(f) == function_start(at)) {
            Damage::FaultingFunction
        } else if l.symbol_at(r.first).is_some_and(|(sec, _, _)| sec.kind == mod_mgmt::SectionKind::Rodata) {
            Damage::ReadOnlyData
        } else {
            Damage::OtherCode
        };
        Some((r, damage))
    });
    let (r, damage) = match repaired {
        Some(Some(found)) => found,
        // Checked, and intact (or outside every crate).
        Some(None) => return repaired_meanwhile(at),
        // Not checked (the loader could not be had): nothing is known about the code.
        None => {
            emergency_write(format_args!(
                "    the code could not be checked for damage (the loader: {:?})\n",
                nano_core::kernel::loader_wait_gave_up()
            ));
            return Repair::Intact;
        }
    };
    if r.bytes > 0 && r.first >= at && r.end <= at + 16 {
        REPAIRS_IN_PLACE.fetch_add(1, Ordering::Relaxed);
        emergency_write(format_args!("    the faulting instruction was the damage: running it again\n"));
        Repair::RunAgain(at)
    } else if r.bytes > 0 {
        emergency_write(format_args!("    the damage ran before the fault: the fault takes its course\n"));
        Repair::RanBefore { damage }
    } else {
        repaired_meanwhile(at)
    }
}

/// A fault at an instruction whose code is intact now: if another CPU repaired that very
/// instruction a moment ago, this CPU faulted on the same damage before the repair landed (code
/// every CPU runs, such as the scheduler's step, is hit by several at once): it runs again too.
/// Before, it found nothing to repair, and the fault took its course: a flip in
/// `task::step::run` killed the shell on one CPU while another repaired it (campaign seed 45,
/// trials 163, 175 and 211).
fn repaired_meanwhile(at: u64) -> Repair {
    if recent::covers(at) {
        REPAIRS_IN_PLACE.fetch_add(1, Ordering::Relaxed);
        emergency_write(format_args!("    the faulting instruction was damage another CPU repaired meanwhile: running it again\n"));
        Repair::RunAgain(at)
    } else {
        Repair::Intact
    }
}

/// The last few faulting instructions repaired in place, for [`repaired_meanwhile`].
mod recent {
    use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    /// How long after a repair a fault on the repaired bytes is taken for one that raced it:
    /// long enough for a CPU that faulted just before the repair to reach its check under TCG
    /// on a busy host.
    const WINDOW_US: u64 = 1_000_000;
    /// How many faults one repair may send back to run again (a real fault at a repaired
    /// instruction then takes its course after these, not for the whole window).
    const RERUNS: u64 = 16;

    struct Entry {
        first: AtomicU64,
        end: AtomicU64,
        at_us: AtomicU64,
        reruns_left: AtomicU64,
    }

    static ENTRIES: [Entry; 4] =
        [const { Entry { first: AtomicU64::new(0), end: AtomicU64::new(0), at_us: AtomicU64::new(0), reruns_left: AtomicU64::new(0) } }; 4];
    static NEXT: AtomicUsize = AtomicUsize::new(0);

    /// Records that bytes `first..end` were the faulting instruction's damage, repaired now.
    pub(super) fn remember(first: u64, end: u64) {
        let e = &ENTRIES[NEXT.fetch_add(1, Ordering::Relaxed) % ENTRIES.len()];
        e.reruns_left.store(0, Ordering::Release);
        e.first.store(first, Ordering::Relaxed);
        e.end.store(end, Ordering::Relaxed);
        e.at_us.store(nano_core::time::micros_since_entry(), Ordering::Relaxed);
        e.reruns_left.store(RERUNS, Ordering::Release);
    }

    /// Whether a repair of the last [`WINDOW_US`] lay within the 16 bytes an instruction at
    /// `at` may span (the same rule as for a repair this CPU made), using up one rerun.
    pub(super) fn covers(at: u64) -> bool {
        let now = nano_core::time::micros_since_entry();
        ENTRIES.iter().any(|e| {
            e.reruns_left.load(Ordering::Acquire) > 0
                && now.saturating_sub(e.at_us.load(Ordering::Relaxed)) <= WINDOW_US
                && e.first.load(Ordering::Relaxed) >= at
                && e.end.load(Ordering::Relaxed) <= at + 16
                && e.reruns_left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok()
        })
    }
}

/// Reports a repair of crate `name`'s code (allocates nothing).
fn say_restored(name: &str, r: &mod_mgmt::integrity::Restored) {
    emergency_write(format_args!(
        "    code of crate {name} was corrupted: {} bytes at {:#x}..{:#x} restored from its sealed copy\n",
        r.bytes, r.first, r.end
    ));
}

/// Makes the interrupted code continue at `at` when `frame`'s handler returns — on the stack
/// pointer `sp`, if given (else on its own).
///
/// # Safety
/// `frame` is the live interrupt frame of the running handler, and `at` (on `sp`) is where the
/// interrupted code may continue: a landing address a fault hook chose, or a resume routine
/// of this crate.
unsafe fn resume_at(frame: &mut InterruptStackFrame, at: u64, sp: Option<u64>) {
    // SAFETY: per the caller's contract; iretq then continues at `at` with the frame's flags.
    unsafe {
        frame.as_mut().update(|f| {
            f.instruction_pointer = x86_64::VirtAddr::new_truncate(at);
            if let Some(sp) = sp {
                f.stack_pointer = x86_64::VirtAddr::new_truncate(sp);
            }
        })
    }
}

/// What [`repair_in_place`] found.
enum Repair {
    /// The faulting crate's code was intact (or could not be checked).
    Intact,
    /// The faulting instruction was the damage, now repaired: run it again here.
    RunAgain(u64),
    /// Damage that ran before the fault, now repaired.
    RanBefore { damage: Damage },
}

/// Where damage that ran before a fault lay, which says whether the faulting frame can be
/// unwound by its CFI.
enum Damage {
    /// In the faulting function, before the faulting instruction: its frame may not be the one
    /// its CFI describes.
    FaultingFunction,
    /// In read-only data: a damaged code address (a function table, a vtable, a jump table)
    /// sends control anywhere, even into the middle of a function whose prologue never ran,
    /// and damaged unwind tables mislead the unwinder itself. Seed 23, trial 100: a flipped
    /// bit in the scheduler policy's function table sent a tick into `scheduler::init + 0x31`;
    /// unwinding that frame by its CFI restored registers from the wrong slots, and the step's
    /// caller then faulted on a damaged task table with the table held: the kernel halted.
    ReadOnlyData,
    /// In other code of the crate: it computed something wrong, but the faulting function was
    /// entered and its frame built as its CFI says.
    OtherCode,
}

fn info(name: &'static str, vector: u8, error: Option<u64>, frame: &InterruptStackFrame) -> FaultInfo {
    let address = (vector == 14).then(Cr2::read_raw);
    FaultInfo {
        name,
        vector,
        error,
        address,
        rip: frame.instruction_pointer.as_u64(),
        rsp: frame.stack_pointer.as_u64(),
        frame_unreliable: false,
    }
}

/// Lets the task's handler resume the task, or reports the fault: the task crate's hook then
/// ends the task or names where it continues (to unwind).
fn dispatch(i: FaultInfo, frame: &mut InterruptStackFrame) {
    if nmi::in_nmi() {
        // Damaged code on the NMI's path (the watchdog's, at every timer period): the NMI is
        // abandoned; the code it interrupted goes on and is not blamed.
        FAULTS.fetch_add(1, Ordering::Relaxed);
        let (at, sp) = nmi_fault(&i);
        // SAFETY: either `at` is the repaired faulting instruction, run again on its own stack,
        // or `nmi_resume` runs on the registers the NMI's entry saved (`sp`), puts them back
        // and returns from the NMI; the frame is the live interrupt frame of this fault.
        unsafe { resume_at(frame, at, Some(sp)) };
        return;
    }
    let at = match handled(&i) {
        Some(at) => at,
        None => report(i),
    };
    // SAFETY: the task's handler or the fault hook chose `at` as the task's landing address;
    // the frame is the live interrupt frame, so iretq continues there with the faulting stack
    // pointer and flags.
    unsafe { resume_at(frame, at, None) };
}

/// NMIs abandoned since boot, and when the last one was reported (microseconds since entry).
static NMI_ABANDONS: AtomicU64 = AtomicU64::new(0);
static NMI_REPORTED_US: AtomicU64 = AtomicU64::new(0);
/// The last fault reported in an NMI: its instruction address, its vector in the top byte.
static NMI_REPORTED_FAULT: AtomicU64 = AtomicU64::new(0);

/// NMIs abandoned since boot (a fault on the NMI's path that could not be repaired and run
/// again).
pub fn nmi_abandons() -> u64 {
    NMI_ABANDONS.load(Ordering::Relaxed)
}

/// A fault while an NMI was handled: where to resume (instruction and stack pointer). The
/// faulting instruction, if it was the damage, runs again; otherwise the NMI is abandoned, after
/// every crate's code is checked and repaired — the damage may lie anywhere on the NMI's path,
/// and an NMI comes at every timer period: left alone, the same fault comes back each time, and
/// its reports alone (one serial line takes longer than a period) would leave nothing else any
/// time to run. For the same reason an abandon is reported at most once a second.
fn nmi_fault(i: &FaultInfo) -> (u64, u64) {
    let now = nano_core::time::micros_since_entry();
    // Only the same fault again is kept quiet: another one (a page fault on half-written damage,
    // then the `ud2` it became) is news.
    let this = i.rip ^ (u64::from(i.vector) << 56);
    let again = NMI_REPORTED_FAULT.swap(this, Ordering::Relaxed) == this;
    let quiet = again && now.saturating_sub(NMI_REPORTED_US.load(Ordering::Relaxed)) < 1_000_000;
    if !quiet {
        NMI_REPORTED_US.store(now, Ordering::Relaxed);
        emergency_write(format_args!("\n!!! CPU EXCEPTION: {} (vector {}) at {:#x} in ", i.name, i.vector, i.rip));
        describe_symbol(i.rip, 0, &mut |a| emergency_write(a));
        emergency_write(format_args!(", while an NMI was handled\n"));
    }
    if let Repair::RunAgain(at) = repair_in_place(i) {
        return (at, i.rsp);
    }
    restore_every_crate(|| {});
    let n = NMI_ABANDONS.fetch_add(1, Ordering::Relaxed) + 1;
    if !quiet {
        emergency_write(format_args!("    the NMI is abandoned; the interrupted code goes on ({n} NMIs abandoned since boot)\n"));
    }
    (nmi::nmi_resume as *const () as u64, nmi::take_context())
}

/// Checks every crate's code and repairs what changed, reporting each repair: for a fault
/// whose damage may lie anywhere. The bytes restored, or `None` if the code could not be
/// checked here (see [`restore_every_crate`]).
pub fn repair_every_crate() -> Option<u64> {
    restore_every_crate(|| {})
}

/// Checks every crate's code and repairs what changed, from an NMI or a fault: allocates
/// nothing, blocks on nothing. `before_first` runs before the first repair is reported. The
/// bytes restored, or `None` if the code could not be checked (the loader held, or the page
/// tables, which a repair changes, held by the interrupted code).
fn restore_every_crate(mut before_first: impl FnMut()) -> Option<u64> {
    if nano_core::paging::held_here() {
        return None;
    }
    let mut first = true;
    nano_core::kernel::try_with_loader_mut(|l| {
        l.restore_all(|l, id, r| {
            if core::mem::take(&mut first) {
                before_first();
            }
            let name = l.krate(id).map_or("?", |k| k.name.as_str());
            say_restored(name, r);
        })
    })
}

/// Every exception's handler: lets the task's handler resume it, or reports the fault. An NMI
/// goes to the NMI hook first (the watchdog's).
fn handle(name: &'static str, vector: u8, error: Option<u64>, frame: &mut InterruptStackFrame) {
    if vector == 2 && nano_core::jobs::this_cpu_index() != 0 {
        parked_cpu_hang(frame);
        return;
    }
    if vector == 2
        && let Some(nmi) = NMI_HOOK.get()
    {
        match nmi() {
            NmiVerdict::Nothing => {}
            NmiVerdict::Hang { ms } => hang(ms, frame),
            NmiVerdict::Stalled { ms } => stalled(ms, frame),
            NmiVerdict::Starved { what, ms } => starved(what, ms, frame),
        }
        return;
    }
    dispatch(info(name, vector, error, frame), frame)
}

/// What the NMI hook found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NmiVerdict {
    /// The watchdog's periodic NMI: nothing to do.
    Nothing,
    /// No timer interrupt for `ms` milliseconds: the CPU runs with interrupts off and does not
    /// come back.
    Hang {
        /// How long.
        ms: u64,
    },
    /// Timer interrupts come, but no task switch for `ms` milliseconds: often one task running
    /// alone, but also what a damaged scheduler that picks the same task every time looks
    /// like — and then the supervisor and the scrubber, tasks themselves, never run.
    Stalled {
        /// How long.
        ms: u64,
    },
    /// Tasks switch, but a task that should have run has not for `ms` milliseconds (`what`:
    /// the scrubber): what a damaged scheduler that drops some tasks looks like. Every crate's
    /// code is checked, as for a stall.
    Starved {
        /// Which task.
        what: &'static str,
        /// How long.
        ms: u64,
    },
}

/// Asked at every NMI (the watchdog's: [`set_nmi_hook`]).
pub type NmiHook = fn() -> NmiVerdict;
static NMI_HOOK: Hook<NmiHook> = Hook::new("exceptions::nmi");
static HANGS: AtomicU64 = AtomicU64::new(0);

/// Installs the hook that every NMI asks whether the CPU hangs. Without one, an NMI is reported
/// like any exception.
pub fn set_nmi_hook(hook: NmiHook) {
    NMI_HOOK.set(hook);
}

/// Removes the NMI hook (the watchdog switched off).
pub fn clear_nmi_hook() {
    NMI_HOOK.clear();
}

/// Hangs the watchdog reported since boot.
pub fn hangs() -> u64 {
    HANGS.load(Ordering::Relaxed)
}

/// A stretch without a task switch, found by the watchdog's NMI: every crate's code is checked
/// and repaired, quietly unless something had changed (the scrubber's work, done from the NMI
/// because the scrubber itself may be what no longer runs). The interrupted code goes on.
/// [`NmiVerdict::Starved`]: every crate's code checked and repaired, as for a stall.
fn starved(what: &str, ms: u64, frame: &InterruptStackFrame) {
    let rip = frame.instruction_pointer.as_u64();
    repair_from_nmi(
        format_args!("\n!!! STARVED: {what} has not run for {ms} ms while tasks switch (watchdog NMI at {rip:#x})\n"),
        "    the scheduler goes on, repaired; the tasks it dropped are queued again at the next requeue pass\n",
    );
}

fn stalled(stalled_ms: u64, frame: &InterruptStackFrame) {
    let rip = frame.instruction_pointer.as_u64();
    repair_from_nmi(
        format_args!("\n!!! STALL: no task switch for {stalled_ms} ms (watchdog NMI at {rip:#x})\n"),
        "    the stalled code goes on, repaired\n",
    );
}

/// A stall's or a starvation's check from the NMI: every crate's code checked and repaired,
/// reported (`header`, then `repaired`) only if something was — the task may only be slow.
fn repair_from_nmi(header: core::fmt::Arguments<'_>, repaired: &str) {
    let restored = restore_every_crate(|| emergency_write(header));
    if restored.is_some_and(|b| b > 0) {
        STALLS_REPAIRED.fetch_add(1, Ordering::Relaxed);
        emergency_write(format_args!("{repaired}"));
    }
}

static STALLS_REPAIRED: AtomicU64 = AtomicU64::new(0);

/// The master 8259's registers, for a hang report: which IRQs it has in service (delivered, no
/// end of interrupt yet), which it has requested, which it masks.
#[derive(Debug, Clone, Copy)]
struct PicState {
    in_service: u8,
    requested: u8,
    masked: u8,
}

static LOST_EOIS: AtomicU64 = AtomicU64::new(0);
static HEAP_LOCKS_RELEASED: AtomicU64 = AtomicU64::new(0);

/// Hangs that were code waiting for a heap lock whose word was overwritten, released.
pub fn heap_locks_released() -> u64 {
    HEAP_LOCKS_RELEASED.load(Ordering::Relaxed)
}

/// Hangs that were a lost end of interrupt for the timer, repaired by sending it.
pub fn lost_eois_repaired() -> u64 {
    LOST_EOIS.load(Ordering::Relaxed)
}

/// The boot CPU's tick vector (the interrupts crate's `PIC1_VECTOR`, which its local APIC timer
/// uses too once it ticks from there).
const TICK_VECTOR: u8 = 32;

/// Reads [`PicState`]. The interrupts crate owns the 8259 (and depends on this crate), but a
/// hang report must say what the PIC holds without calling into code that may be what hangs:
/// read here, leaving the PIC as it was (OCW3 set back to reading the request register, the
/// power-on default).
fn pic_state() -> PicState {
    use x86_64::instructions::port::Port;
    // SAFETY: OCW3 reads of the master 8259's command port and a read of its mask register:
    // no memory effects, and the read mode is set back to the default.
    unsafe {
        let mut command: Port<u8> = Port::new(0x20);
        command.write(0x0b);
        let in_service = command.read();
        command.write(0x0a);
        let requested = command.read();
        let masked = Port::<u8>::new(0x21).read();
        PicState { in_service, requested, masked }
    }
}

/// Stalls (no task switch for the watchdog's limit) after which damaged code was repaired.
pub fn stalls_repaired() -> u64 {
    STALLS_REPAIRED.load(Ordering::Relaxed)
}

/// A hang with interrupts off, found by the watchdog's NMI at `frame`. Damaged code is the
/// usual cause (a flipped bit that turns a branch into a loop, in code that runs with
/// interrupts off: the scheduler, the task switch, the timer's entry), and what cannot be seen
/// from the looping instruction alone: so every crate's code is checked and repaired first,
/// and the interrupted code goes on — repaired, the loop usually ends by itself. If nothing
/// was damaged (or the loop goes on and the watchdog comes back), the hang is a fault at the
/// interrupted instruction, and takes a fault's course: the task layer abandons the step it was
/// in (a tick, a scheduling decision) or ends the task.
///
/// Runs in the NMI, whatever the interrupted code held: nothing here blocks, and nothing
/// allocates while the heap is held (the looping code may be the holder).
fn hang(stalled_ms: u64, frame: &mut InterruptStackFrame) {
    HANGS.fetch_add(1, Ordering::Relaxed);
    FAULTS.fetch_add(1, Ordering::Relaxed);
    let (rip, rsp) = (frame.instruction_pointer.as_u64(), frame.stack_pointer.as_u64());
    let interrupts_on = frame.cpu_flags.contains(x86_64::registers::rflags::RFlags::INTERRUPT_FLAG);
    let pic = pic_state();
    // Where the tick comes from: the boot CPU's local APIC timer (with APs), else the PIT.
    let local = nano_core::ipi::boot_local_timer_state(TICK_VECTOR);
    let tick_in_service = local.map_or(pic.in_service & 1 != 0, |l| l.in_service);
    let why = if !interrupts_on {
        "the CPU runs with interrupts off"
    } else if let Some(l) = local {
        if l.in_service {
            "interrupts are on, but the local APIC still has the timer's vector 32 in service (no end of interrupt was sent)"
        } else if l.masked {
            "interrupts are on, but the local APIC masks its timer"
        } else {
            "interrupts are on and the local APIC timer runs"
        }
    } else if pic.in_service & 1 != 0 {
        "interrupts are on, but the 8259 still has the timer's IRQ 0 in service (no end of interrupt was sent)"
    } else if pic.masked & 1 != 0 {
        "interrupts are on, but the 8259 masks the timer's IRQ 0"
    } else {
        "interrupts are on and the 8259 lets IRQ 0 through"
    };
    emergency_write(format_args!(
        "\n!!! HANG: no timer interrupt for {stalled_ms} ms: {why} (watchdog NMI; 8259 master: in service {:#04x}, requested {:#04x}, masked {:#04x})\n    rip: {rip:#x} in ",
        pic.in_service, pic.requested, pic.masked
    ));
    // Code spinning for a heap's lock that no code holds: the lock's word was overwritten (a
    // wild store of damaged code). Released, the waiting code goes on; the damage, if still
    // there, is repaired first, so that it does not store there again.
    if nano_core::heap::release_if_overwritten() {
        HEAP_LOCKS_RELEASED.fetch_add(1, Ordering::Relaxed);
        emergency_write(format_args!("(not named: the interrupted code waits for the heap)\n    rsp: {rsp:#x}\n"));
        restore_every_crate(|| {});
        emergency_write(format_args!(
            "    a heap's lock said held, but no code held it (its word was overwritten): released; the waiting code goes on\n"
        ));
        return;
    }
    let heap_held = nano_core::heap::held_here();
    if heap_held {
        emergency_write(format_args!("(not named: the interrupted code holds the heap)\n    rsp: {rsp:#x}\n"));
    } else {
        describe(rip, &mut |a| emergency_write(a));
        emergency_write(format_args!("\n    rsp: {rsp:#x}\n"));
        print_backtrace(current_rbp(), Some((rip, rsp)));
    }
    // Where the loop is cannot be told from its instruction alone: every crate is checked.
    let restored = restore_every_crate(|| {});
    // Interrupts on and the tick still in service (IRQ 0 at the 8259, or vector 32 at the local
    // APIC): no code loops, a tick was taken without its
    // end of interrupt — damage in the timer's entry that skipped the tick (the fault campaign
    // found one: a flip turned the call of the tick's body into other instructions, and the
    // damage was repaired before the watchdog came, with the end of interrupt still owed).
    // Nothing the interrupted code did is wrong: the end of interrupt is sent, and it goes on.
    if interrupts_on && tick_in_service {
        nano_core::ipi::boot_tick_end_of_interrupt();
        LOST_EOIS.fetch_add(1, Ordering::Relaxed);
        emergency_write(format_args!(
            "    the timer's end of interrupt was lost: sent now; ticks resume and the interrupted code goes on\n"
        ));
        return;
    }
    match restored {
        Some(0) => emergency_write(format_args!("    every crate's code is intact\n")),
        Some(_) => {
            emergency_write(format_args!("    the hung code goes on, repaired\n"));
            return;
        }
        None => {
            emergency_write(format_args!("    the loader or the page tables are held by the hung code: its crates cannot be checked\n"))
        }
    }
    if heap_held {
        emergency_write(format_args!("    hang with the heap held: system halted (exit code failure)\n"));
        nano_core::qemu::exit(nano_core::qemu::ExitCode::Failure)
    }
    // From here the hang is the interrupted code's fault, which may end its task without
    // returning here: a fault from now on is not the NMI's.
    nmi::leave();
    let info = FaultInfo { name: "hang", vector: 2, error: None, address: None, rip, rsp, frame_unreliable: false };
    let Some(at) = HOOK.get().and_then(|hook| hook(&info)) else {
        emergency_write(format_args!("    hang outside any task: system halted (exit code failure)\n"));
        nano_core::qemu::exit(nano_core::qemu::ExitCode::Failure)
    };
    // SAFETY: the fault hook chose `at` as where the interrupted code continues (an unwind or a
    // step's escape); the frame is the live NMI frame, so iretq continues there.
    unsafe { resume_at(frame, at, None) };
}

/// An NMI on a parked CPU: the watchdog (on the boot CPU) sends one when that CPU's timer has
/// not ticked for its limit, so the CPU runs with interrupts off and does not come back. As on
/// the boot CPU: every crate's code is checked (a repair lets the code go on), otherwise what
/// runs there is ended as a hang — its task unwinds; its idle task's hang stops that CPU.
fn parked_cpu_hang(frame: &mut InterruptStackFrame) {
    HANGS.fetch_add(1, Ordering::Relaxed);
    FAULTS.fetch_add(1, Ordering::Relaxed);
    let cpu = nano_core::jobs::this_cpu_index();
    let (rip, rsp) = (frame.instruction_pointer.as_u64(), frame.stack_pointer.as_u64());
    emergency_write(format_args!(
        "\n!!! HANG on CPU {cpu}: its timer stopped ticking (it runs with interrupts off; the watchdog's NMI)\n    rip: {rip:#x} in "
    ));
    describe(rip, &mut |a| emergency_write(a));
    emergency_write(format_args!("\n    rsp: {rsp:#x}\n"));
    if let Some(n) = restore_every_crate(|| {})
        && n > 0
    {
        emergency_write(format_args!("    the hung code goes on, repaired\n"));
        return;
    }
    let info = FaultInfo { name: "hang", vector: 2, error: None, address: None, rip, rsp, frame_unreliable: false };
    match HOOK.get().and_then(|hook| hook(&info)) {
        // SAFETY: the fault hook chose `at` as where the hung code's task continues (an unwind
        // or a step's escape); the frame is the live NMI frame, so iretq continues there.
        Some(at) => unsafe { resume_at(frame, at, None) },
        None => nano_core::jobs::stop_this_cpu(format_args!("hang outside any task")),
    }
}

/// The double fault (usually a kernel stack overflow: nothing to return to) and the machine
/// check end the machine after the report.
fn fatal(name: &'static str, vector: u8, error: Option<u64>, frame: &mut InterruptStackFrame) -> ! {
    if vector == 8 {
        HOOK.clear();
    }
    report(info(name, vector, error, frame));
    nano_core::qemu::exit(nano_core::qemu::ExitCode::Failure)
}

nano_core::exception_table!(handle = handle, fatal = fatal);

/// The NMI's entry as an IDT handler (see [`nmi`]).
// SAFETY: `nmi_entry` is an interrupt entry: it saves what it uses and ends in `iretq`, which is
// what an `x86-interrupt` handler is to the IDT (only its address is used).
const NMI_ENTRY: HandlerFunc = unsafe { core::mem::transmute::<extern "C" fn(), HandlerFunc>(nmi::nmi_entry) };

extern "x86-interrupt" fn spurious(_frame: InterruptStackFrame) {}

/// Builds and loads the IDT. Called once by captain.
pub fn init() {
    let idt = IDT.call_once(|| {
        let idt = alloc::boxed::Box::leak(alloc::boxed::Box::new(InterruptDescriptorTable::new()));
        install_exception_gates(idt, true);
        idt.non_maskable_interrupt.set_handler_fn(NMI_ENTRY);
        for v in 32..=255u8 {
            idt[v].set_handler_fn(spurious);
        }
        spin::Mutex::new(idt)
    });
    let guard = idt.lock();
    let table: &InterruptDescriptorTable = &guard;
    // SAFETY: the table was leaked, so it lives for the rest of the kernel's life and is never
    // moved; entries are only changed through `set_interrupt_handler` under the lock.
    unsafe { table.load_unsafe() };
    log::info!("exceptions: IDT with every CPU exception (vectors 0-21, 28-30) loaded (replaces nano_core's early IDT)");
}

/// Installs the handler for an interrupt vector (32..=255).
pub fn set_interrupt_handler(vector: u8, handler: HandlerFunc) {
    if vector < 32 {
        return;
    }
    if let Some(idt) = IDT.get() {
        x86_64::instructions::interrupts::without_interrupts(|| {
            idt.lock()[vector].set_handler_fn(handler);
        });
    }
}
