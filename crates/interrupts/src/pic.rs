// The interrupts crate's items, shared with crates/alt/interrupts_renamed (which names the
// timer's interrupt entry differently). The including file defines the entry, a naked function
// whose body is `timer_entry_asm!()`, and `TIMER_ENTRY`, the entry as an IDT handler.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use nano_core::hooks::Hook;
use nano_core::triple::Triple;
use x86_64::instructions::port::Port;
use x86_64::structures::idt::InterruptStackFrame;

/// The interrupted context, as the timer's entry saved it (its stack pointer after pushing every
/// general register), from the entry until the tick's guarded step begins; 0 otherwise. In
/// three copies: a flipped bit here would send a fault elsewhere to a wrong stack.
///
/// Why: the task layer's tick guard covers the tick from the moment its step begins. Damage in
/// the code before that — this crate's entry and the look-up of the guard — faulted in the
/// interrupted task's name, and the fault campaign counted the shell killed that way as not
/// contained. Such a fault now abandons the tick: [`abandon_entry`] gives the task layer's fault
/// handler `timer_abandon`, which puts the saved registers back and returns from the interrupt.
static ENTRY: Triple = Triple::new(0);

/// Where the timer's entry last began to load the saved registers back (its stack pointer), in
/// three copies. Left in place after the return from the interrupt: it counts only for a fault
/// whose instruction lies in the entry itself, which on one CPU means the return of the tick in
/// progress. (Found by the fault campaign: a flipped pop made the `iretq` fault, and the fault
/// was charged to the shell, whose tick it was.)
static EXIT: Triple = Triple::new(0);

/// The timer's interrupt entry (the including file makes it a naked function with this body):
/// saves every general register, records where ([`ENTRY`]), runs `timer_body`, and returns
/// from the interrupt.
macro_rules! timer_entry_asm {
    () => {
        core::arch::naked_asm!(
            nano_core::push_general_registers!(),
            nano_core::record_stack_pointer!("entry"),
            "cld",
            "call {body}",
            // The registers are loaded back from here: recorded again (rax is loaded last), so
            // that a fault there abandons the tick as well (see `abandon_entry`).
            nano_core::record_stack_pointer!("exit"),
            nano_core::clear_triple!("entry"),
            nano_core::load_general_registers_checked_and_return!(),
            entry = sym ENTRY,
            exit = sym EXIT,
            body = sym timer_body,
        )
    };
}

/// Where the task layer's fault handler sends a fault in the timer's entry code: takes the saved
/// context (on a small stack of its own: the faulting stack pointer may be anywhere), signals
/// end of interrupt, puts every register back and returns to the interrupted code, which goes on
/// as if the tick had not come.
#[unsafe(naked)]
extern "C" fn timer_abandon() {
    core::arch::naked_asm!(
        "movabs rax, offset {stack}",
        "lea rsp, [rax + {size}]",
        "call {take}",
        "mov rsp, rax",
        nano_core::load_general_registers_and_return!(),
        stack = sym ABANDON_STACK,
        size = const ABANDON_STACK_BYTES,
        take = sym take_entry,
    )
}

const ABANDON_STACK_BYTES: usize = 1024;
/// The stack of `timer_abandon`'s one call (interrupts are off from the fault to the return,
/// on the one CPU that takes the timer: one user at a time).
#[repr(C, align(16))]
struct AbandonStack([u8; ABANDON_STACK_BYTES]);
static mut ABANDON_STACK: AbandonStack = AbandonStack([0; ABANDON_STACK_BYTES]);

/// Where a fault in the timer entry's last two instructions (`add rsp, 120; iretq`) resumes:
/// every register was loaded back already, but the stack pointer may have moved anywhere, and
/// the fault's own frame may have overwritten the saved registers below it. Sets the stack
/// pointer to the CPU's interrupt frame again (from `EXIT`, with no register to spare: through
/// the stack pointer itself) and returns from the interrupt.
#[unsafe(naked)]
extern "C" fn timer_return_again() {
    core::arch::naked_asm!(
        "movabs rsp, offset {exit}",
        "mov rsp, [rsp]",
        "add rsp, 120",
        "iretq",
        exit = sym EXIT,
    )
}

/// The saved context, taken (cleared) for `timer_abandon`: the entry's, or else that of the
/// loads in progress. Also ends the interrupt (at the 8259 or the local APIC, wherever the tick
/// came from), which the abandoned tick may not have reached.
extern "C" fn take_entry() -> u64 {
    nano_core::ipi::boot_tick_end_of_interrupt();
    let at = ENTRY.load().unwrap_or(0);
    ENTRY.store(0);
    if at != 0 { at } else { EXIT.load().unwrap_or(0) }
}

/// For the task layer's fault handler, given the faulting instruction `rip` and stack pointer
/// `rsp`: if the fault is in the timer's entry code before the tick's guarded step began, or in
/// its return after the step, the address to resume at, which abandons the tick (the registers
/// are put back from where the entry saved them) or finishes its return.
///
/// Only on the boot CPU, the one the PIT interrupts: `ENTRY` and `EXIT` are its entry's. A fault
/// on another CPU while the boot CPU was inside its timer entry was taken for the entry's, and
/// resumed with the boot CPU's saved registers (seen once in 10 runs of
/// `smp_tasks_run_on_every_cpu` beside a busy CPU: the faulting task took a general protection
/// fault, and the boot CPU's shell was killed).
pub fn abandon_entry(rip: u64, rsp: u64) -> Option<u64> {
    if nano_core::jobs::this_cpu_index() != 0 {
        return None;
    }
    let abandon = Some(timer_abandon as *const () as u64);
    if ENTRY.load().unwrap_or(0) != 0 {
        return abandon;
    }
    let entry = TIMER_ENTRY as usize as u64;
    let in_entry = || {
        nano_core::kernel::try_with_loader_ref(|l| {
            l.symbol_at(rip).and_then(|(_, _, sym)| sym).is_some_and(|(_, off)| rip.wrapping_sub(off) == entry)
        }) == Some(true)
    };
    match EXIT.load().unwrap_or(0) {
        0 => None,
        _ if !in_entry() => None,
        // Before the call of the body, past the pushes: the recording of where the registers
        // are is what faulted (in the fault campaign, a flipped bit of `ENTRY`'s address sent its
        // store to unmapped memory), and they are at the faulting stack pointer. `EXIT` is the
        // last tick's, of no use here: taking it returned through a stale frame. (A fault in
        // the pushes themselves would leave some registers unsaved; none was seen.)
        _ if rip < BODY_RETURN.load(Ordering::Relaxed) => {
            ENTRY.store(rsp);
            abandon
        }
        // Still at the saved registers: the fault's frame went below them; load them all again.
        exit if rsp == exit => abandon,
        // Past the loads: the registers are right, only the stack pointer is to be put back.
        _ => Some(timer_return_again as *const () as u64),
    }
}

/// Where the entry's call of `timer_body` returns to. The entry's code before this address
/// saves and records the registers; its code from here on loads them back (see
/// [`abandon_entry`]). Read from the body's own frame at every tick: as cheap as a check, and
/// right at once after a swap of this crate, whose entry is then another.
static BODY_RETURN: AtomicU64 = AtomicU64::new(0);

/// Armed by [`inject_entry_fault`].
static ENTRY_INJECTION: AtomicBool = AtomicBool::new(false);
/// Armed by [`inject_exit_fault`].
static EXIT_INJECTION: AtomicBool = AtomicBool::new(false);
/// Armed by [`inject_skipped_tick`].
static SKIP_INJECTION: AtomicBool = AtomicBool::new(false);

/// Makes the next tick return from the interrupt at once, without its body and so without its
/// end of interrupt, as damaged entry code that skips the call of the body would (found by the
/// fault campaign): for `crash tick --no-eoi`. No tick comes after it until the watchdog sends
/// the end of interrupt that was lost.
pub fn inject_skipped_tick() {
    SKIP_INJECTION.store(true, Ordering::Relaxed);
}

/// Makes the next tick fault in the timer's entry code after its guarded step ended (a read of
/// address 8), as damage in the entry's return would: for `crash tick --exit`.
pub fn inject_exit_fault() {
    EXIT_INJECTION.store(true, Ordering::Relaxed);
}

/// Makes the next tick fault in the timer's entry code, before its guarded step begins (a read
/// of address 8), as damaged entry code would: for `crash tick --entry`.
pub fn inject_entry_fault() {
    ENTRY_INJECTION.store(true, Ordering::Relaxed);
}

/// What the timer's entry runs, with every register saved: the tick, under the tick guard once
/// there is one. An abandoned tick may not have reached its EOI; a second one is harmless
/// (nothing else is in service while the timer's handler runs with interrupts off).
extern "C" fn timer_body() {
    let return_address: u64;
    // SAFETY: reads this function's return address from its frame (the kernel is built with
    // frame pointers: rbp is this frame's base, the return address above it); no side effects.
    unsafe { core::arch::asm!("mov {}, [rbp + 8]", out(reg) return_address, options(nostack, readonly, preserves_flags)) };
    BODY_RETURN.store(return_address, Ordering::Relaxed);
    if SKIP_INJECTION.swap(false, Ordering::Relaxed) {
        return;
    }
    if ENTRY_INJECTION.swap(false, Ordering::Relaxed) {
        injected_entry_fault();
    }
    let guard = TICK_GUARD.get();
    // From here on a fault is the guarded step's (or, before there is a guard, fatal as ever).
    let saved = ENTRY.load().unwrap_or(0);
    ENTRY.store(0);
    match guard {
        Some(guard) => {
            if !guard(on_timer) {
                nano_core::ipi::boot_tick_end_of_interrupt();
            }
        }
        None => on_timer(),
    }
    // Back in the entry's own code until its return (the entry clears it then): a fault from
    // here — damage in this function's return, seen in the fault campaign as a jump to 0x1f
    // charged to the shell — abandons the tick as one before the step does.
    ENTRY.store(saved);
    if EXIT_INJECTION.swap(false, Ordering::Relaxed) {
        injected_entry_fault();
    }
}

/// The fault `crash tick --entry` injects, in a frame of its own.
#[inline(never)]
fn injected_entry_fault() {
    // SAFETY: the read never completes: the first page is never mapped, so it faults, and the
    // fault (what is being tested) abandons the tick.
    let v = unsafe { core::ptr::read_volatile(core::hint::black_box(core::ptr::dangling::<u64>())) };
    core::hint::black_box(v);
}

/// Timer frequency.
pub const TICK_HZ: u64 = 100;
/// First vector of the master PIC.
pub const PIC1_VECTOR: u8 = 32;
const PIT_HZ: u64 = 1_193_182;

static TICKS: AtomicU64 = AtomicU64::new(0);
/// Called on every tick (the task layer's preemption).
static TICK_HOOK: Hook<fn()> = Hook::new("interrupts::tick");

/// Runs one tick (the function it is given), catching a fault or panic in it; returns whether
/// the tick ran to its end. The task layer, which owns unwinding, registers it: damage in the
/// tick's code (this crate's, the scheduler policy's, the task table's bookkeeping) is the
/// kernel's, not the interrupted task's, so it abandons the tick instead of ending the task.
pub type TickGuard = fn(fn()) -> bool;
static TICK_GUARD: Hook<TickGuard> = Hook::new("interrupts::tick_guard");

/// Registers the [`TickGuard`].
pub fn set_tick_guard(guard: TickGuard) {
    TICK_GUARD.set(guard);
}

fn outb(port: u16, v: u8) {
    // SAFETY: PIC and PIT registers are legacy I/O ports owned by this crate; no memory effects.
    unsafe { Port::new(port).write(v) }
}

/// Ticks since the timer started.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Registers the function called on every tick (with interrupts off, after EOI). It may switch
/// tasks.
pub fn set_tick_hook(hook: fn()) {
    TICK_HOOK.set(hook);
}

/// Masks the PIT's IRQ 0 at the 8259: the boot CPU's tick now comes from its local APIC timer
/// (the smp crate's `boot_tick_from_local_apic`). The PIT runs on: its line also reaches the
/// I/O APIC, where the watchdog takes it as an NMI. Call with interrupts off.
pub fn mask_pit_tick() {
    // SAFETY: the master 8259's mask register: no memory effects.
    let mask = unsafe { Port::<u8>::new(0x21).read() };
    outb(0x21, mask | 1);
}

/// One tick.
fn on_timer() {
    TICKS.fetch_add(1, Ordering::Relaxed);
    // EOI before the hook: the hook may switch to a task that runs for a long time, and the PIC
    // must be ready to deliver the next tick to it.
    nano_core::ipi::boot_tick_end_of_interrupt();
    if let Some(hook) = TICK_HOOK.get() {
        hook();
    }
}

extern "x86-interrupt" fn spurious_master(_frame: InterruptStackFrame) {}

extern "x86-interrupt" fn spurious_slave(_frame: InterruptStackFrame) {
    outb(0x20, 0x20);
}

/// Remaps the PICs, programs the PIT and unmasks the timer. Interrupts stay disabled; the task
/// layer enables them once it can handle a tick.
pub fn init() {
    // ICW1..ICW4: cascade, vectors 32..39 and 40..47, 8086 mode.
    outb(0x20, 0x11);
    outb(0xA0, 0x11);
    outb(0x21, PIC1_VECTOR);
    outb(0xA1, PIC1_VECTOR + 8);
    outb(0x21, 4);
    outb(0xA1, 2);
    outb(0x21, 1);
    outb(0xA1, 1);
    // Mask everything but IRQ0 (timer) and IRQ2 (cascade).
    outb(0x21, !0b101);
    outb(0xA1, 0xFF);
    exceptions::set_interrupt_handler(PIC1_VECTOR, TIMER_ENTRY);
    exceptions::set_interrupt_handler(PIC1_VECTOR + 7, spurious_master);
    exceptions::set_interrupt_handler(PIC1_VECTOR + 15, spurious_slave);
    let divisor = (PIT_HZ / TICK_HZ) as u16;
    outb(0x43, 0b0011_0110); // channel 0, lobyte/hibyte, mode 3 (square wave)
    outb(0x40, (divisor & 0xFF) as u8);
    outb(0x40, (divisor >> 8) as u8);
    log::info!("interrupts: PICs at vectors {}..{}, PIT timer at {} Hz", PIC1_VECTOR, PIC1_VECTOR + 15, TICK_HZ);
}
