//! Guarded kernel steps: a timer tick and a scheduling decision are the kernel's work, done on
//! whatever task's stack happens to be running. Damage in their code (a flipped bit in the
//! scheduler policy, the timer handler, the task table's bookkeeping) is not that task's fault,
//! so a fault or a panic inside a step abandons the step, never the task.
//!
//! A step runs inside the unwinder's catch, so an unwind (from a panic, or from a CPU exception
//! turned into one, see [`super::fault_unwind`]) stops at the step and the destructors of its
//! frames release what it held. Where no unwind can start — a jump to where there is no code,
//! a stack pointer sent off the stack, a fault while a fault unwinds — the step is *escaped*:
//! the registers saved when it began are put back and the step returns as abandoned, skipping
//! its frames (their destructors do not run). Either way, the task table, if the step took it,
//! is released: a step's own writes to it are single fields, never the map's structure.
//!
//! The innermost step's context is kept per task (saved and restored at every switch, because a
//! tick may switch tasks inside its step and resume later), in three copies: the fault handler
//! reads it to decide whether a fault is a step's.

use super::{CATCH, TASK_CPUS, TaskId, current, here, scrub_stack, tables};
use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering};
use nano_core::triple::Triple;
use x86_64::instructions::interrupts as cpu;

/// What a guarded step is (for its report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// A timer tick: the timer handler, the task layer's tick, a preemption's decision.
    Tick,
    /// A scheduling decision: the policy's enqueue and pick, called with the task table held,
    /// and the switch's bookkeeping after it (both tasks' entries in the task table).
    Schedule,
}

impl Step {
    fn what(self) -> &'static str {
        match self {
            Step::Tick => "the timer tick",
            Step::Schedule => "the scheduler's decision",
        }
    }
}

/// Registers saved when a step begins (the callee-saved ones and the stack pointer: what a
/// function call preserves), and the enclosing step. Read by `delos_step_escape`: the layout is
/// the assembly's.
#[repr(C)]
struct StepContext {
    regs: nano_core::saved::CalleeSaved,
    /// The enclosing step's context (0: none).
    outer: u64,
}

/// This CPU's running task's innermost step's [`StepContext`] (`percpu::PerCpu::innermost`).
fn innermost() -> &'static Triple {
    &here().innermost
}

/// Steps abandoned since boot, by fault or panic (the supervisor verifies every crate after one).
static ABANDONED: AtomicU64 = AtomicU64::new(0);
/// Of [`ABANDONED`], the timer ticks.
static TICKS_ABANDONED: AtomicU64 = AtomicU64::new(0);

core::arch::global_asm!(
    ".pushsection .text.delos_step_run,\"ax\",@progbits",
    ".globl delos_step_run",
    ".type delos_step_run,@function",
    // rdi = context, rsi = body, rdx = its argument. Returns 0 when the body returned, 1 when
    // the step was escaped (delos_step_escape).
    "delos_step_run:",
    ".cfi_startproc",
    nano_core::asm_frame_enter!(),
    nano_core::save_callee_saved!("rdi"),
    "mov rdi, rdx",
    "call rsi",
    "xor eax, eax",
    "pop rbp",
    ".cfi_def_cfa rsp, 8",
    "ret",
    ".cfi_endproc",
    ".size delos_step_run, . - delos_step_run",
    ".popsection",
    ".pushsection .text.delos_step_escape,\"ax\",@progbits",
    ".globl delos_step_escape",
    ".type delos_step_escape,@function",
    // Entered from the exception handler (on a stack pointer that may be anywhere) or called:
    // touches no stack until the saved one is back. Makes delos_step_run return 1.
    "delos_step_escape:",
    // This CPU's escape stack: its index is the word after the running task's TCB self-pointer
    // (fs:[8], as `percpu::this_cpu` reads it; steps run only once tasking started). Indexes past
    // TASK_CPUS share the last.
    "mov rcx, qword ptr fs:[8]",
    "cmp rcx, {cpus}",
    "jbe 2f",
    "mov rcx, {cpus}",
    "2:",
    "shl rcx, 12",
    "movabs rax, offset {stack}",
    "add rax, rcx",
    "lea rsp, [rax + 4096]",
    "call {load}",
    "mov rdi, rax",
    nano_core::restore_callee_saved!("rdi"),
    "mov eax, 1",
    "pop rbp",
    "ret",
    ".size delos_step_escape, . - delos_step_escape",
    ".popsection",
    stack = sym ESCAPE_STACKS,
    cpus = const TASK_CPUS,
    load = sym escape_target,
);

unsafe extern "C" {
    fn delos_step_run(ctx: *mut StepContext, body: extern "C" fn(*mut u8), arg: *mut u8) -> u64;
    fn delos_step_escape() -> !;
}

/// Small stacks, one per CPU, for the one call `delos_step_escape` makes before it has the
/// step's stack back (the faulting stack pointer may point anywhere). Interrupts are off from
/// the fault to the escape: one user at a time on each CPU.
#[repr(C, align(16))]
struct EscapeStack([u8; 4096]);
static mut ESCAPE_STACKS: [EscapeStack; TASK_CPUS + 1] = [const { EscapeStack([0; 4096]) }; TASK_CPUS + 1];

/// Where `delos_step_escape` goes: the innermost step's context.
extern "C" fn escape_target() -> u64 {
    innermost().load().unwrap_or(0)
}

extern "C" fn run_body(arg: *mut u8) {
    // SAFETY: `arg` is the `&mut &mut dyn FnMut()` that `run` passed to `delos_step_run`, which
    // calls this once, within `run`'s frame.
    let body = unsafe { &mut *(arg as *mut &mut dyn FnMut()) };
    body();
}

/// Whether the running task is inside a step (its fault is the step's).
pub(crate) fn in_step() -> bool {
    innermost().load().is_some_and(|c| c != 0)
}

/// The running task's innermost step, to keep in its record across a switch.
pub(crate) fn save() -> u64 {
    innermost().load().unwrap_or(0)
}

/// Restores the innermost step of the task switched to.
pub(crate) fn restore(ctx: u64) {
    innermost().store(ctx);
}

/// Whether the innermost step's context can be escaped to: it lies on the running task's stack,
/// and so does the stack pointer saved in it, below it (`delos_step_run`'s frame is under
/// `run`'s, which holds the context). Damage that sent the task switch astray was seen to leave
/// a context whose stack pointer was 0 (the fault campaign): escaping there faulted again at
/// once, for good, and the kernel died; a fault that cannot escape ends its task instead.
fn escapable() -> bool {
    let sound = context_sound();
    if !sound {
        nano_core::serial::emergency_write(format_args!(
            "    the step's saved context is damaged (not on this task's stack): it cannot be escaped\n"
        ));
    }
    sound
}

fn context_sound() -> bool {
    let Some(ctx) = innermost().load().filter(|&c| c != 0) else { return false };
    let (bottom, top) = crate::current_stack_bounds();
    let on_stack = |a: u64| bottom < a && a < top;
    if bottom == 0 || !on_stack(ctx) || !on_stack(ctx + core::mem::size_of::<StepContext>() as u64 - 1) {
        return false;
    }
    // SAFETY: `ctx` and the whole context lie on the running task's stack, which is mapped.
    let rsp = unsafe { core::ptr::read_volatile(ctx as *const u64) };
    on_stack(rsp) && rsp < ctx && rsp % 8 == 0
}

/// For `crash tick --wild --damaged-step`: zeroes the stack pointer saved in the innermost
/// step's context.
pub(crate) fn damage_innermost_for_test() {
    if let Some(ctx) = innermost().load().filter(|&c| c != 0) {
        // SAFETY: a live step's context, on this task's stack (the caller runs inside the step).
        unsafe { core::ptr::write_volatile(ctx as *mut u64, 0) };
    }
}

/// The entry where the exception handler sends a fault that cannot be unwound, if it is a
/// step's and the step's context is sound (see [`escapable`]).
pub(crate) fn escape_entry() -> Option<u64> {
    if in_step() && !escapable() {
        return None;
    }
    in_step().then_some(delos_step_escape as *const () as u64)
}

/// Escapes the innermost step (a panic or a fault whose unwind could not start); returns only
/// outside a step, or if the step's context is damaged (see [`escapable`]).
pub(crate) fn escape() {
    if in_step() && escapable() {
        // SAFETY: the innermost step's context was saved by its `delos_step_run`, whose frame is
        // live on this stack (the context is unlinked before that frame returns); going back
        // there abandons the frames above it, which is what escaping a step means.
        unsafe { delos_step_escape() }
    }
}

/// Runs `body` as a guarded step; `Err` with what happened if it was abandoned.
pub(crate) fn run(step: Step, body: &mut dyn FnMut()) -> Result<(), String> {
    let Some(catch) = CATCH.get() else {
        body();
        return Ok(());
    };
    let cur = current();
    let table_was_free = !tables().held_here();
    let outer = outer_unwind(cur);
    let mut ctx = StepContext { regs: nano_core::saved::CalleeSaved::default(), outer: save() };
    let mut outcome: Result<(), String> = Ok(());
    let mut guarded = || outcome = catch(body);
    let mut guarded: &mut dyn FnMut() = &mut guarded;
    innermost().store(&raw mut ctx as u64);
    // SAFETY: `delos_step_run` saves the callee-saved registers into `ctx` (live until the end
    // of this function) and calls `run_body` with a pointer to `guarded`, also live here.
    let escaped = unsafe { delos_step_run(&raw mut ctx, run_body, (&raw mut guarded).cast()) } != 0;
    // SAFETY: read through a volatile pointer: after an escape, `ctx` was written by code the
    // compiler did not see return here.
    innermost().store(unsafe { core::ptr::read_volatile(&raw const ctx.outer) });
    let result = if escaped {
        let what = forget_unwind(cur, outer).unwrap_or_else(|| String::from("a fault"));
        Err(alloc::format!("{what} (escaped: no unwind could start there)"))
    } else {
        core::mem::replace(&mut outcome, Ok(()))
    };
    let Err(msg) = result else { return Ok(()) };
    if table_was_free && tables().held_here() {
        // SAFETY: this CPU did not hold the table when the step began and only the step's
        // frames (now gone) can have taken it here since: interrupts are off in a step, so no
        // other context ran on this CPU. What the step wrote under it are single fields.
        unsafe { tables().force_release() };
    }
    // What the step marked in the table before it failed (a task about to be switched to) is
    // settled: only this task runs.
    super::settle_running(current());
    // The unwind ran below this frame and left its words there (among them addresses of the
    // code it passed, which a swap's quiescence check would take for references).
    scrub_stack();
    let what = super::take_fault().unwrap_or(msg);
    ABANDONED.fetch_add(1, Ordering::Relaxed);
    if step == Step::Tick {
        TICKS_ABANDONED.fetch_add(1, Ordering::Relaxed);
    }
    nano_core::serial::emergency_write(format_args!(
        "    {what} was in {}'s code, not task {cur}'s: the step is abandoned and {} goes on\n",
        step.what(),
        super::task_label(cur)
    ));
    Err(what)
}

/// What the task was already unwinding when a step began (a tick can arrive while a task
/// unwinds its own panic or fault): a failure inside the step then cannot unwind (one unwind
/// at a time) and is escaped, and the escape must leave the task's own unwind as it was.
#[derive(Debug, Clone, Copy)]
struct OuterUnwind {
    /// The task was panicking (or it could not be told: the table was busy).
    panicking: bool,
    /// A CPU exception of the task was being unwound (or it could not be told).
    fault: bool,
}

fn outer_unwind(cur: TaskId) -> OuterUnwind {
    OuterUnwind {
        panicking: tables().lock_unless_held_here().is_none_or(|t| t.get(&cur).is_some_and(|t| t.panicking)),
        fault: here().unwinding.try_lock().is_none_or(|f| f.as_ref().is_some_and(|f| f.0 == cur)),
    }
}

/// After an escape: the fault or panic that could not be unwound is over; what the task was
/// unwinding before the step began is left alone. Returns the fault's kill reason, if it was a
/// CPU exception.
fn forget_unwind(cur: TaskId, outer: OuterUnwind) -> Option<String> {
    let what = cpu::without_interrupts(|| {
        if outer.fault {
            return None;
        }
        let mut f = here().unwinding.try_lock()?;
        f.take_if(|f| f.0 == cur).map(|f| f.1)
    });
    if !outer.panicking
        && let Some(t) = tables().lock_unless_held_here().as_mut().and_then(|t| t.get_mut(&cur))
    {
        t.panicking = false;
    }
    what
}

/// Counts a tick abandoned before its step began (a fault in the timer's entry code, which the
/// interrupts crate abandons), so that the supervisor verifies every crate after it as after
/// any abandoned step.
pub(crate) fn count_abandoned_tick() {
    ABANDONED.fetch_add(1, Ordering::Relaxed);
    TICKS_ABANDONED.fetch_add(1, Ordering::Relaxed);
}

/// Steps abandoned since boot (ticks and scheduling decisions).
pub fn abandoned() -> u64 {
    ABANDONED.load(Ordering::Relaxed)
}

/// Timer ticks abandoned since boot.
pub fn ticks_abandoned() -> u64 {
    TICKS_ABANDONED.load(Ordering::Relaxed)
}
