// The interrupts crate's items, shared with crates/alt/interrupts_renamed (which names the
// timer's interrupt entry differently). The including file defines `TIMER_ENTRY`.

use core::sync::atomic::{AtomicU64, Ordering};
use nano_core::hooks::Hook;
use x86_64::instructions::port::Port;
use x86_64::structures::idt::InterruptStackFrame;

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

/// What the timer's interrupt entry does: a tick, under the tick guard once there is one. An
/// abandoned tick may not have reached its EOI; a second one is harmless (nothing else is in
/// service while the timer's handler runs with interrupts off).
fn timer_tick() {
    match TICK_GUARD.get() {
        Some(guard) => {
            if !guard(on_timer) {
                eoi(0);
            }
        }
        None => on_timer(),
    }
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
