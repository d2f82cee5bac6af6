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

/// The end of the timer's entry and of `timer_abandon`: the registers the entry pushed, popped
/// in reverse order, and the return from the interrupt.
macro_rules! restore_registers_and_return {
    () => {
        "pop r15\npop r14\npop r13\npop r12\npop r11\npop r10\npop r9\npop r8\npop rdi\npop rsi\npop rbp\npop rbx\npop rdx\npop rcx\npop rax\niretq"
    };
}

/// The timer's interrupt entry (the including file makes it a naked function with this body):
/// saves every general register, records where ([`ENTRY`]), runs `timer_body`, and returns
/// from the interrupt.
macro_rules! timer_entry_asm {
    () => {
        core::arch::naked_asm!(
            "push rax",
            "push rcx",
            "push rdx",
            "push rbx",
            "push rbp",
            "push rsi",
            "push rdi",
            "push r8",
            "push r9",
            "push r10",
            "push r11",
            "push r12",
            "push r13",
            "push r14",
            "push r15",
            // The CPU aligned the stack to 16 before pushing its 40-byte frame; 15 pushes more
            // leave it aligned for the call.
            "movabs rax, offset {entry}",
            "mov [rax], rsp",
            "mov [rax + 8], rsp",
            "mov [rax + 16], rsp",
            "cld",
            "call {body}",
            restore_registers_and_return!(),
            entry = sym ENTRY,
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
        "mov al, 0x20",
        "out 0x20, al",
        restore_registers_and_return!(),
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

/// The saved context, taken (cleared) for `timer_abandon`.
extern "C" fn take_entry() -> u64 {
    let at = ENTRY.load().unwrap_or(0);
    ENTRY.store(0);
    at
}

/// For the task layer's fault handler: if the fault is in the timer's entry code (before the
/// tick's guarded step began), the address to resume at, which abandons the tick.
pub fn abandon_entry() -> Option<u64> {
    if ENTRY.load().unwrap_or(0) == 0 {
        return None;
    }
    Some(timer_abandon as *const () as u64)
}

/// Armed by [`inject_entry_fault`].
static ENTRY_INJECTION: AtomicBool = AtomicBool::new(false);

/// Makes the next tick fault in the timer's entry code, before its guarded step begins (a read
/// of address 8), as damaged entry code would: for `crash tick --entry`.
pub fn inject_entry_fault() {
    ENTRY_INJECTION.store(true, Ordering::Relaxed);
}

/// What the timer's entry runs, with every register saved: the tick, under the tick guard once
/// there is one. An abandoned tick may not have reached its EOI; a second one is harmless
/// (nothing else is in service while the timer's handler runs with interrupts off).
extern "C" fn timer_body() {
    if ENTRY_INJECTION.swap(false, Ordering::Relaxed) {
        injected_entry_fault();
    }
    let guard = TICK_GUARD.get();
    // From here on a fault is the guarded step's (or, before there is a guard, fatal as ever).
    ENTRY.store(0);
    match guard {
        Some(guard) => {
            if !guard(on_timer) {
                eoi(0);
            }
        }
        None => on_timer(),
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

fn eoi(irq: u8) {
    if irq >= 8 {
        outb(0xA0, 0x20);
    }
    outb(0x20, 0x20);
}

/// One tick.
fn on_timer() {
    TICKS.fetch_add(1, Ordering::Relaxed);
    // EOI before the hook: the hook may switch to a task that runs for a long time, and the PIC
    // must be ready to deliver the next tick to it.
    eoi(0);
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
