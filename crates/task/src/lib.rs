//! task: the mechanism of kernel tasks — creation, context switch, exit, kill, join.
//!
//! Policy (which task runs next) lives in a separate crate that registers a [`Policy`]; this
//! crate only asks it. Each task has its own stack with an unmapped guard page below it, its
//! own SSE state (saved with `fxsave` on every switch: JIT'd WASM uses SSE even though the
//! kernel is soft-float), and its own TLS block built from mod_mgmt's TLS image, with the
//! thread pointer in `FS.base`. Preemption: the timer tick calls [`schedule`].
//!
//! The task table is taken by the timer interrupt, so everything else takes it with interrupts
//! off (a tick inside a region holding it on the same CPU would otherwise deadlock).
//!
//! **Every CPU runs tasks.** A task stays on the CPU it was spawned on ([`spawn_on`]; [`spawn`]
//! is CPU 0): each CPU has its own running task, idle task and innermost step ([`percpu`]). The
//! boot CPU's tasks are ordered by the swappable policy; a parked CPU's (an AP's) are taken
//! round robin from the table, preempted by its local APIC timer (the smp crate's), and its
//! park loop in nano_core is its idle task. Whatever the task layer once did "because only
//! this CPU runs tasks" now asks which CPU holds the table ([`TableGuard`]).
//!
//! TLS blocks reserve [`TLS_RESERVE`] bytes below the thread pointer, so crates with TLS loaded
//! after a task started still have room in it; such a task sees those variables zeroed rather
//! than with their initial values (tasks spawned later get the full image).
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use nano_core::hooks::{DataHook, Hook};
use nano_core::paging::{self, Stack};
use nano_core::triple::Triple;
use spin::Mutex;
use x86_64::instructions::interrupts as cpu;

mod fault_unwind;
mod percpu;
mod step;

pub use percpu::TASK_CPUS;
use percpu::{here, this_cpu};

pub use step::{abandoned as steps_abandoned, ticks_abandoned};

/// A task's id. The boot task (which becomes the idle task) is 0.
pub type TaskId = u64;

/// Bytes of TLS space every task reserves below its thread pointer.
pub const TLS_RESERVE: usize = 64 * 1024;
/// Stack size of spawned tasks, in pages.
pub const STACK_PAGES: u64 = 32;

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Its function returned this value.
    Returned(isize),
    /// Someone killed it.
    Killed,
    /// A CPU exception ended it.
    Faulted(String),
    /// It panicked (message and location).
    Panicked(String),
}

/// A task's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Ready to run.
    Runnable,
    /// On the CPU.
    Running,
    /// Finished.
    Exited(Exit),
}

/// Why a task operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskError {
    /// No such task.
    NoSuchTask(TaskId),
    /// The idle task cannot be killed or joined.
    IdleTask,
    /// Memory for the stack or TLS block.
    OutOfMemory,
    /// No scheduling policy is registered.
    NoPolicy,
    /// The namespace's TLS image is larger than a task's TLS reserve.
    TlsTooLarge(u64),
    /// No such CPU runs tasks (not up, stopped, or beyond [`TASK_CPUS`]).
    NoSuchCpu(usize),
}

impl core::fmt::Display for TaskError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TaskError::NoSuchTask(id) => write!(f, "no task {id}"),
            TaskError::IdleTask => write!(f, "the idle task cannot be killed or joined"),
            TaskError::OutOfMemory => write!(f, "out of memory for a task stack"),
            TaskError::NoPolicy => write!(f, "no scheduling policy registered"),
            TaskError::TlsTooLarge(n) => write!(f, "TLS image of {n} bytes exceeds the {TLS_RESERVE}-byte reserve"),
            TaskError::NoSuchCpu(c) => write!(f, "CPU {c} runs no tasks (not up, stopped, or beyond the {TASK_CPUS} CPUs tasks can use)"),
        }
    }
}

impl core::error::Error for TaskError {}

/// A scheduling policy: the run queue. The running task is never in it.
///
/// The task crate's table is the truth; the queue is a view of it. `enqueue` of a task the
/// queue already holds must change nothing, because every runnable task is enqueued again a
/// few times a second (so a queue that lost one — a fault in its memory — loses it only
/// briefly), and an id from `pick_next` that is not a runnable task is skipped.
pub struct Policy {
    /// Name for `ps`.
    pub name: &'static str,
    /// Makes a task eligible to run.
    pub enqueue: fn(TaskId),
    /// Removes a task (it exited or was killed).
    pub remove: fn(TaskId),
    /// Takes the next task to run, or `None` if the queue is empty.
    pub pick_next: fn() -> Option<TaskId>,
    /// Whether the running task should give up the CPU at this tick.
    pub should_preempt: fn(ticks_run: u64) -> bool,
}

/// What `ps` shows.
#[derive(Debug, Clone)]
pub struct TaskInfo {
    /// Id.
    pub id: TaskId,
    /// Name.
    pub name: String,
    /// State.
    pub state: State,
    /// Timer ticks it was running at.
    pub ticks: u64,
    /// Its stack `[bottom, top)` (the guard page is just below).
    pub stack: Option<(u64, u64)>,
    /// For a restartable task: how often it was started again.
    pub restarts: Option<u32>,
    /// The CPU it runs on.
    pub cpu: usize,
}

/// How a restartable task is started (again): an entry point and its argument.
#[derive(Debug, Clone, Copy)]
pub struct Restartable {
    /// The entry point (a function, so it can run again; found by the recovery policy
    /// afresh if its crate was reloaded meanwhile).
    pub entry: fn(u64) -> isize,
    /// Its argument.
    pub arg: u64,
    /// Restarts so far.
    pub restarts: u32,
}

/// A restartable task that died by a CPU exception or a panic, for the recovery policy.
#[derive(Debug, Clone)]
pub struct Death {
    /// Its id.
    pub id: TaskId,
    /// Its name.
    pub name: String,
    /// How to start it again.
    pub restart: Restartable,
    /// Why it died.
    pub exit: Exit,
    /// The faulting instruction (for a CPU exception) and the return addresses on its stack
    /// when it died, innermost first: the code it was running.
    pub pcs: Vec<u64>,
    /// The CPU it ran on.
    pub cpu: usize,
}

#[repr(C, align(16))]
struct FxArea([u8; 512]);

/// A task's entry closure.
struct Entry(Box<dyn FnOnce() -> isize + Send>);

struct Task {
    id: TaskId,
    name: String,
    state: State,
    rsp: u64,
    fx: Box<FxArea>,
    stack: Option<Stack>,
    tls: Option<Box<[u8]>>,
    tp: u64,
    /// The function to run. A thin box around the closure, so that taking it leaves no stale
    /// vtable pointer in the record (see [`scrub_stack`] for why that matters).
    entry: Option<Box<Entry>>,
    /// Removed from the task table as soon as it exits (nobody will join it).
    detached: bool,
    /// Set for a restartable task.
    restart: Option<Restartable>,
    /// Where a restartable task was when it died (see [`Death::pcs`]).
    death_pcs: Vec<u64>,
    ticks: u64,
    slice: u64,
    /// Set while a panic unwinds this task: a second panic then ends it at once.
    panicking: bool,
    /// The kill reason of the fault the last `catch` caught.
    caught_fault: Option<String>,
    /// The innermost guarded step in progress on this task's stack, kept while it is switched
    /// out (see [`step`]).
    step: u64,
    /// The CPU it runs on (for good: tasks do not migrate).
    cpu: usize,
    /// Someone killed it while it ran on another CPU: that CPU ends it at its next tick.
    kill_requested: bool,
    /// The task it waits for in [`join`]: killed with it (see [`kill`]).
    joining: Option<TaskId>,
    /// Switched out by the boot CPU's tick (the interrupts crate's timer entry), and not run
    /// since: its stack holds that tick's interrupt entry, whose way back uses the entry's saved
    /// state (`interrupts::abandon_entry`'s records), which is the boot CPU's alone (and, while
    /// the PIT ticks, the 8259's end of interrupt). No other CPU takes it meanwhile
    /// ([`steal_work`]). Found together with [`Task::saving`]'s race (`cpus --balance`); whether
    /// this check is needed beside that one was not measured separately.
    in_boot_tick: bool,
    /// A switch away from it has begun and its registers are not saved yet: it still runs on
    /// its CPU, on its stack, until the task switched to clears this ([`finish_switch`]). No
    /// other CPU may take it meanwhile: it would resume it from the registers saved the time
    /// before, on the stack the first CPU still runs on (work stealing did, between a decision
    /// that marked the task runnable and the switch: two CPUs on one stack, `cpus --balance`
    /// about 1 run in 10 with a busy host). Before the switch's bookkeeping sets this, the task
    /// is still its CPU's current task, which [`steal_work`] checks too: the decision marks it
    /// runnable under one hold of the table, the bookkeeping takes another.
    saving: AtomicBool,
    /// An idle CPU may take it while it waits to run ([`spawn_movable`], [`steal_work`]).
    movable: bool,
    /// In [`wait_until`]: when it runs, it only looks whether what it waits for has come. A
    /// CPU whose every runnable task is waiting so halts until the next interrupt.
    pausing: bool,
    /// Its CPU's halt count ([`percpu::PerCpu::halts`]) when it last looked, in [`wait_until`].
    looked: u64,
}

/// The task table and the deaths the supervisor has not taken yet.
struct Tables {
    tasks: Mutex<BTreeMap<TaskId, Box<Task>>>,
    /// The CPU that holds `tasks`, plus one (0: free, or its holder did not say). Set by
    /// [`TableGuard`]; what tells a lock left by this CPU's own faulted frames (released when
    /// they are abandoned) from another CPU's ordinary hold.
    holder: core::sync::atomic::AtomicUsize,
    deaths: Mutex<Vec<Death>>,
}

/// The task table, held, with the holding CPU recorded (see [`Tables::holder`]).
struct TableGuard {
    guard: spin::MutexGuard<'static, BTreeMap<TaskId, Box<Task>>>,
}

impl core::ops::Deref for TableGuard {
    type Target = BTreeMap<TaskId, Box<Task>>;
    fn deref(&self) -> &Self::Target {
        &self.guard
    }
}

impl core::ops::DerefMut for TableGuard {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.guard
    }
}

impl Drop for TableGuard {
    fn drop(&mut self) {
        // Before the field `guard` unlocks, after this.
        tables().holder.store(0, Ordering::Release);
    }
}

impl Tables {
    /// Takes the task table (call with interrupts off), answering TLB shootdown requests while
    /// it waits: the holder may be sending one (with `-smp 4`, the watchdog's NMI repaired a
    /// `jmp .` in the boot CPU's decision, which held the table; the three APs spun here for it,
    /// every round of the repair waited its 500 ms for them, and the NMI took 2.5 s — a second
    /// hang).
    fn lock(&'static self) -> TableGuard {
        self.wait(false).expect("only a hold of this CPU's own is refused")
    }

    /// Takes the task table if it is free.
    fn try_lock(&'static self) -> Option<TableGuard> {
        let guard = self.tasks.try_lock()?;
        self.holder.store(this_cpu() + 1, Ordering::Release);
        Some(TableGuard { guard })
    }

    /// Takes the task table, unless this CPU holds it already (its own frames, which a fault or
    /// panic interrupted: they never release it while this runs). Held by another CPU, it
    /// waits for that CPU to let go, answering TLB shootdown requests meanwhile.
    fn lock_unless_held_here(&'static self) -> Option<TableGuard> {
        self.wait(true)
    }

    /// Spins for the task table, answering TLB shootdown requests meanwhile; with
    /// `unless_held_here`, gives up (`None`) when this CPU holds it.
    fn wait(&'static self, unless_held_here: bool) -> Option<TableGuard> {
        loop {
            if unless_held_here && self.held_here() {
                return None;
            }
            if let Some(g) = self.try_lock() {
                return Some(g);
            }
            nano_core::tlb::serve_request();
            core::hint::spin_loop();
        }
    }

    /// Whether this CPU holds the task table (its own frames: on one CPU, with interrupts off
    /// around every use, nothing else can).
    fn held_here(&self) -> bool {
        self.tasks.is_locked() && self.holder.load(Ordering::Acquire) == this_cpu() + 1
    }

    /// Releases a hold of this CPU's whose guard will never be dropped (its frames were
    /// abandoned).
    ///
    /// # Safety
    /// [`Tables::held_here`] must be true and the holder's frames must never run again.
    unsafe fn force_release(&self) {
        self.holder.store(0, Ordering::Release);
        // SAFETY: the caller's contract.
        unsafe { self.tasks.force_unlock() };
    }
}

/// The address of the [`Tables`] (made once, at [`init`], never freed), in three copies.
///
/// Why not a plain static: a bit flipped in a `Mutex<BTreeMap>` static (its root pointer, its
/// lock word) takes every task down, and writable data has no reference copy to repair it from.
/// Three copies of one address are voted back (`nano_core::triple`); the tables themselves lie in
/// the heap (which the fault campaign does not target: see README, Fault injection).
static TABLES: Triple = Triple::new(0);
/// The next task id, in three copies (a flipped bit could hand out an id in use).
static NEXT_ID: Triple = Triple::new(1);
static POLICY: DataHook<Policy> = DataHook::new("task::policy");
static STARTED: AtomicBool = AtomicBool::new(false);
/// Context switches per CPU (the last entry: CPUs that run no tasks, never used).
static SWITCHES: [AtomicU64; TASK_CPUS + 1] = [const { AtomicU64::new(0) }; TASK_CPUS + 1];

/// Runs a closure, catching a panic that unwinds out of it (set by the unwind crate).
pub type CatchFn = fn(&mut dyn FnMut()) -> Result<(), String>;
/// Starts unwinding the current task; returns only if that is impossible.
pub type BeginFn = fn(String);

fn set_current_stack((bottom, top): (u64, u64)) {
    let p = here();
    p.stack[0].store(bottom, Ordering::Relaxed);
    p.stack[1].store(top, Ordering::Relaxed);
}

/// The running task's stack (bottom, top).
pub(crate) fn current_stack_bounds() -> (u64, u64) {
    let p = here();
    (p.stack[0].load(Ordering::Relaxed), p.stack[1].load(Ordering::Relaxed))
}

static CATCH: Hook<CatchFn> = Hook::new("task::catch");
static BEGIN: Hook<BeginFn> = Hook::new("task::begin_unwind");

/// A panic of the running task was caught: the next panic unwinds again (called by the
/// unwind crate's `catch`).
pub fn panic_caught() {
    let cur = current();
    cpu::without_interrupts(|| {
        let fault = here().unwinding.lock().take().filter(|f| f.0 == cur).map(|f| f.1);
        // The unwind released the table if a frame it passed held it; if the faulting frame
        // itself held it, it is still locked (the caller of the catch checks, see
        // `release_table_left_locked`).
        if let Some(t) = tables().lock_unless_held_here().as_mut().and_then(|t| t.get_mut(&cur)) {
            t.panicking = false;
            t.caught_fault = fault;
        }
    });
}

/// Before a task is ended after a fault or panic: whether the task table is still locked — held
/// by the very frame that faulted (whose locals an unwind from a fault does not drop), or by
/// code that could not be unwound at all. Nothing could be ended or scheduled then (waiting for
/// the table would hang with interrupts off): it is released, since its holder is the ending
/// task's own frames. Until 2026-12-07 this halted the kernel (campaign seed 29, trial 24: a
/// flip in `has_exited`, which the shell's idle time calls, faulted with the table held).
///
/// Except inside a guarded step (one whose context was damaged, so that it could not be
/// escaped, and its task is ended instead): every step begins with the table free (the tick's
/// guard finds it free or skips the tick, a decision takes it itself), so a step's own frames
/// hold it, and they never run again. It is released as an escaped step's is (a step writes
/// single fields of it, never the map's structure). Before, this halted the kernel: a flip in
/// the scheduler policy's code damaged the step's saved context (campaign seed 20, trial 82).
pub(crate) fn release_table_left_locked() {
    if tables().held_here() && step::in_step() {
        // SAFETY: see above: the holder is the abandoned step's frames on this task's stack
        // (this CPU holds it, with interrupts off), which is ending.
        unsafe { tables().force_release() };
        nano_core::serial::emergency_write(format_args!(
            "    the task table was held by the abandoned step: released (a step writes single fields of it)\n"
        ));
        return;
    }
    if tables().held_here() {
        // SAFETY: every user of the table holds it with interrupts off, and this CPU holds it:
        // no switch happened here while it was held, so the holder is this task's own frames
        // (the faulting one, whose locals a fault's unwind does not drop, or frames not unwound
        // at all), and this task is ending: they never run again. (Another CPU's hold is left
        // alone: that CPU releases it.)
        unsafe { tables().force_release() };
        nano_core::serial::emergency_write(format_args!(
            "    the task table was held by this task's own frames, which never run again: released (what they were changing may be half done)\n"
        ));
    }
}

/// For `crash table`: takes the task table and faults (an invalid opcode) in the frame that
/// holds it, as damaged code in a function of this crate would (campaign seed 29, trial 24:
/// `has_exited`). The fault's unwind does not drop that frame's guard; ending the task
/// releases the table (see [`release_table_left_locked`]).
#[inline(never)]
pub fn fault_holding_the_table() -> usize {
    cpu::without_interrupts(|| {
        let tasks = tables().lock();
        let n = tasks.len();
        if core::hint::black_box(n) != usize::MAX {
            // SAFETY: deliberately an undefined instruction (a test); the fault handler takes it.
            unsafe { core::arch::asm!("ud2") };
        }
        n
    })
}

/// Registers the unwinder: every task's entry then runs inside `catch`, and a panic in a task
/// unwinds its stack (running destructors) before the task ends.
pub fn set_unwinder(catch: CatchFn, begin: BeginFn) {
    CATCH.set(catch);
    BEGIN.set(begin);
}

const FS_BASE_MSR: u32 = 0xC000_0100;

core::arch::global_asm!(
    ".global delos_task_switch",
    "delos_task_switch:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov [rdi], rsp",
    "mov rsp, rsi",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    ".global delos_task_trampoline",
    "delos_task_trampoline:",
    "xor ebp, ebp",
    "and rsp, -16",
    "movabs rax, offset {main}",
    "call rax",
    "ud2",
    main = sym task_main,
);

unsafe extern "C" {
    /// Saves callee-saved registers and the stack pointer to `*save`, switches to `next_rsp`.
    fn delos_task_switch(save: *mut u64, next_rsp: u64);
    fn delos_task_trampoline();
}

fn policy() -> Option<&'static Policy> {
    POLICY.get()
}

/// Registers (or replaces) the scheduling policy. Runnable tasks are re-enqueued into it.
pub fn set_policy(p: &'static Policy) {
    cpu::without_interrupts(|| {
        POLICY.set(p);
        requeue_runnable(&tables().lock(), p, current());
    });
}

/// The name of the registered policy.
pub fn policy_name() -> &'static str {
    policy().map_or("none", |p| p.name)
}

/// The task tables; made on first use (at [`init`], on the boot CPU, before any task exists).
fn tables() -> &'static Tables {
    let addr = match TABLES.load() {
        Some(0) => cpu::without_interrupts(|| {
            // Re-read with interrupts off: no other task exists yet, but be exact anyway.
            match TABLES.load() {
                Some(0) => {
                    let t: &'static Tables = Box::leak(Box::new(Tables {
                        tasks: Mutex::new(BTreeMap::new()),
                        holder: core::sync::atomic::AtomicUsize::new(0),
                        deaths: Mutex::new(Vec::new()),
                    }));
                    TABLES.store(t as *const Tables as u64);
                    t as *const Tables as u64
                }
                other => other.unwrap_or(0),
            }
        }),
        Some(a) => a,
        None => 0,
    };
    if addr == 0 {
        // Two of three copies of the address changed at once: the tables cannot be found, and
        // nothing can run without them.
        panic!("task: the task table's address is lost (two of its three copies changed)");
    }
    // SAFETY: a non-zero value is the address of the leaked `Tables` made above (never freed);
    // the vote keeps a flipped copy from being taken for it.
    unsafe { &*(addr as *const Tables) }
}

/// A fresh task id. If two copies of the counter changed at once, counting resumes above the
/// largest id in the table.
fn next_id() -> TaskId {
    cpu::without_interrupts(|| {
        loop {
            let id = NEXT_ID.fetch_add(1).unwrap_or_else(|| {
                let id = tables().lock().keys().filter(|&&k| k < IDLE_ID_BASE).max().map_or(1, |m| m + 1);
                NEXT_ID.store(id + 1);
                id
            });
            if !IDLE_IDS.contains(&id) {
                return id;
            }
        }
    })
}

/// Where the ids of the parked CPUs' idle tasks begin (CPU `c`'s is `IDLE_ID_BASE + c`): apart
/// from the ids spawns get, so that the boot's tasks (shell 1, supervisor 2, scrubber 3) have
/// the same ids with any number of CPUs.
pub const IDLE_ID_BASE: TaskId = 1_000_000;
const IDLE_IDS: core::ops::Range<TaskId> = IDLE_ID_BASE..IDLE_ID_BASE + TASK_CPUS as TaskId;

/// This CPU's idle task.
fn idle_here() -> TaskId {
    here().idle.load(Ordering::Relaxed)
}

/// Whether `id` is the idle task of some CPU (they cannot be killed or joined).
fn is_any_idle(id: TaskId) -> bool {
    id == 0 || (1..TASK_CPUS).any(|c| percpu::of(c).idle.load(Ordering::Relaxed) == id)
}

/// The stack of this CPU's idle task.
fn idle_stack_here() -> (u64, u64) {
    here().idle_stack()
}

/// The stack range of task `t` (an idle task's is its CPU's boot stack).
fn stack_of(t: &Task) -> (u64, u64) {
    t.stack.as_ref().map_or_else(|| percpu::of(t.cpu).idle_stack(), Stack::range)
}

/// Whether task `t` is on another CPU now (its saved stack pointer is stale). An idle task
/// switched away stays marked running, so the mark alone does not tell.
fn running_elsewhere(t: &Task) -> bool {
    t.cpu != this_cpu() && percpu::of(t.cpu).current.load() == Some(t.id)
}

/// The running task.
pub fn current() -> TaskId {
    // Two of three copies changed at once (the read reported it): the idle task is the one
    // id that always exists.
    here().current.load().unwrap_or(0)
}

/// Context switches since boot, on every CPU.
pub fn switches() -> u64 {
    SWITCHES.iter().map(|s| s.load(Ordering::Relaxed)).sum()
}

/// Context switches since boot on CPU `cpu` (the watchdog's stall check watches the boot
/// CPU's: switches elsewhere say nothing about it).
pub fn switches_on(cpu: usize) -> u64 {
    SWITCHES.get(cpu).map_or(0, |s| s.load(Ordering::Relaxed))
}

fn fxsave(area: *mut FxArea) {
    // SAFETY: `area` points to a live, 16-byte aligned 512-byte buffer; SSE is enabled.
    unsafe { core::arch::asm!("fxsave64 [{}]", in(reg) area, options(nostack)) }
}

fn fxrstor(area: *const FxArea) {
    // SAFETY: `area` holds an image written by fxsave64.
    unsafe { core::arch::asm!("fxrstor64 [{}]", in(reg) area, options(nostack)) }
}

fn set_fs_base(tp: u64) {
    // SAFETY: writing FS.base changes only where TLS accesses go; every task's tp points to its
    // own live TLS block (or 0 before TLS exists).
    unsafe { x86_64::registers::model_specific::Msr::new(FS_BASE_MSR).write(tp) }
}

/// Builds a TLS block from the loader's current TLS image for a task of CPU `cpu`:
/// `[tp - reserve, tp)` holds the variables (the image at its top), `*tp = tp` (the x86_64 TCB
/// self-pointer), and `*(tp + 8) = cpu` (read by `percpu::this_cpu`: a task never changes CPU).
fn make_tls(cpu: usize) -> Result<(Box<[u8]>, u64), TaskError> {
    let (image, align) = nano_core::kernel::with_loader_ref(|l| (l.tls().image(), l.tls().align().max(16) as usize));
    if image.len() > TLS_RESERVE {
        return Err(TaskError::TlsTooLarge(image.len() as u64));
    }
    let size = TLS_RESERVE + align + 16;
    let mut block = alloc::vec![0u8; size].into_boxed_slice();
    let base = block.as_ptr() as usize;
    let tp = (base + TLS_RESERVE + align - 1) & !(align - 1);
    let tp_off = tp - base;
    block[tp_off - image.len()..tp_off].copy_from_slice(&image);
    block[tp_off..tp_off + 8].copy_from_slice(&(tp as u64).to_le_bytes());
    block[tp_off + 8..tp_off + 16].copy_from_slice(&(cpu as u64).to_le_bytes());
    Ok((block, tp as u64))
}

/// The record of CPU `cpu`'s idle task: running (it is the CPU's boot context), no stack of its
/// own (it runs on the CPU's boot stack), a TLS block of its own.
fn idle_record(id: TaskId, name: String, cpu: usize) -> Result<Task, TaskError> {
    let (tls, tp) = make_tls(cpu)?;
    let mut fx = Box::new(FxArea([0; 512]));
    fxsave(&mut *fx);
    Ok(Task {
        id,
        name,
        state: State::Running,
        rsp: 0,
        fx,
        stack: None,
        tls: Some(tls),
        tp,
        entry: None,
        detached: false,
        restart: None,
        death_pcs: Vec::new(),
        ticks: 0,
        slice: 0,
        panicking: false,
        caught_fault: None,
        step: 0,
        cpu,
        kill_requested: false,
        joining: None,
        in_boot_tick: false,
        saving: AtomicBool::new(false),
        movable: false,
        pausing: false,
        looked: 0,
    })
}

/// Turns the boot context into task 0 (the idle task), registers the tick, fault and idle
/// hooks. Interrupts are enabled when this returns.
pub fn init() -> Result<(), TaskError> {
    scrub_stack();
    init_tasking()
}

#[inline(never)]
fn init_tasking() -> Result<(), TaskError> {
    let idle = idle_record(0, "idle".into(), 0)?;
    let tp = idle.tp;
    tables().lock().insert(0, Box::new(idle));
    set_fs_base(tp);
    ::interrupts::set_tick_hook(on_tick);
    ::interrupts::set_tick_guard(guard_tick);
    exceptions::set_fault_hook(on_fault);
    exceptions::set_current_task_source(current);
    nano_core::panic::set_panic_hook(on_panic);
    nano_core::kernel::IDLE_HOOK.set(idle_step);
    nano_core::kernel::AP_SCHEDULE_HOOK.set(ap_idle_step);
    nano_core::jobs::RUNS_A_TASK_HOOK.set(runs_a_task_here);
    let boot = nano_core::paging::kernel_layout().stack;
    here().set_idle_stack(boot);
    set_current_stack(boot);
    STARTED.store(true, Ordering::Release);
    x86_64::instructions::interrupts::enable();
    log::info!("task: tasking started; boot context is task 0 (idle)");
    Ok(())
}

/// Makes this CPU (a parked CPU, in a job its park loop runs) one that runs tasks: the park
/// loop becomes its idle task `idle` (made by [`prepare_cpu`] on the boot CPU), on the stack
/// `stack`. From here, faults outside a job are its tasks' (or its idle task's, which stop it).
pub fn start_on_this_cpu(idle: TaskId, stack: (u64, u64)) {
    // No TLS block here yet, so not `this_cpu` (which reads it): the thread pointer first.
    let me = nano_core::jobs::this_cpu_index();
    if me == 0 || me >= TASK_CPUS {
        return;
    }
    // The table's raw lock: its guard records the holder with `this_cpu`.
    let tp = cpu::without_interrupts(|| tables().tasks.lock().get(&idle).map_or(0, |t| t.tp));
    if tp == 0 {
        return;
    }
    set_fs_base(tp);
    let p = percpu::of(me);
    p.set_idle_stack(stack);
    p.idle.store(idle, Ordering::Relaxed);
    p.idling.store(true, Ordering::Relaxed);
    p.current.store(idle);
    set_current_stack(stack);
    nano_core::jobs::set_runs_tasks(me);
}

/// On the boot CPU, before parked CPU `index` starts running tasks: its idle task's record (a
/// TLS block, no stack of its own: it runs on the CPU's boot stack), id `IDLE_ID_BASE + index`.
/// Returns that id, for [`start_on_this_cpu`] on that CPU.
pub fn prepare_cpu(index: usize) -> Result<TaskId, TaskError> {
    if index == 0 || index >= TASK_CPUS {
        return Err(TaskError::NoSuchCpu(index));
    }
    let id = IDLE_ID_BASE + index as TaskId;
    let idle = idle_record(id, alloc::format!("idle/{index}"), index)?;
    cpu::without_interrupts(|| tables().lock().insert(id, Box::new(idle)));
    Ok(id)
}

/// Whether this CPU runs one of its tasks now, not its idle task (`nano_core::jobs`).
fn runs_a_task_here() -> bool {
    !cpu_is_idle(this_cpu())
}

/// Whether CPU `cpu` runs its idle task now (nothing else of its own is running).
pub fn cpu_is_idle(cpu: usize) -> bool {
    let p = percpu::of(cpu);
    p.current.load() == Some(p.idle.load(Ordering::Relaxed))
}

/// The CPU the calling task runs on.
pub fn current_cpu() -> usize {
    this_cpu()
}

/// Starts a task running `f` on the caller's CPU; returns its id.
pub fn spawn(name: &str, f: impl FnOnce() -> isize + Send + 'static) -> Result<TaskId, TaskError> {
    spawn_sized(name, STACK_PAGES, f)
}

/// Starts a task running `f` on the caller's CPU that an idle CPU may take while it waits to
/// run (work stealing, see [`steal_work`]); returns its id.
pub fn spawn_movable(name: &str, f: impl FnOnce() -> isize + Send + 'static) -> Result<TaskId, TaskError> {
    let id = spawn(name, f)?;
    cpu::without_interrupts(|| {
        if let Some(t) = tables().lock().get_mut(&id) {
            t.movable = true;
        }
    });
    Ok(id)
}

/// Starts a task running `f` on CPU `cpu`, where it stays; returns its id.
pub fn spawn_on(cpu: usize, name: &str, f: impl FnOnce() -> isize + Send + 'static) -> Result<TaskId, TaskError> {
    scrub_stack();
    spawn_boxed_on(cpu, name, STACK_PAGES, Box::new(Entry(Box::new(f))))
}

/// The CPU with the fewest live tasks of its own (idle tasks not counted; the lowest index on a
/// tie): where [`spawn_on`] should put work that may run anywhere. A placement at spawn time,
/// not a balancer: a task stays where it was put.
pub fn least_loaded_cpu() -> usize {
    cpu::without_interrupts(|| {
        let tasks = tables().lock();
        let mut load = [0usize; TASK_CPUS];
        for t in tasks.values() {
            if t.cpu < TASK_CPUS && !is_any_idle(t.id) && !matches!(t.state, State::Exited(_)) {
                load[t.cpu] += 1;
            }
        }
        (0..TASK_CPUS)
            .filter(|&c| nano_core::jobs::runs_tasks(c) && !nano_core::jobs::stopped(c))
            .min_by_key(|&c| (load[c], c))
            .unwrap_or(0)
    })
}

/// The running task's stack: (lowest mapped address, top). `None` for an idle task (a CPU's
/// boot context).
pub fn current_stack() -> Option<(u64, u64)> {
    (current() != idle_here()).then(current_stack_bounds)
}

/// Like [`spawn`], with a stack of `stack_pages` pages (a JIT compiler or deep recursion
/// needs more than the default).
pub fn spawn_sized(name: &str, stack_pages: u64, f: impl FnOnce() -> isize + Send + 'static) -> Result<TaskId, TaskError> {
    scrub_stack();
    spawn_boxed(name, stack_pages, Box::new(Entry(Box::new(f))))
}

/// Like [`spawn`], for a task nobody will join: its record goes away as soon as it exits.
pub fn spawn_detached(name: &str, f: impl FnOnce() -> isize + Send + 'static) -> Result<TaskId, TaskError> {
    let id = spawn(name, f)?;
    detach(id);
    Ok(id)
}

/// Starts a detached task running the function `f` (an entry point found by symbol lookup).
/// Unlike the generic [`spawn`], whose closure glue is compiled into the calling crate, the
/// glue is this crate's: the new task's stack holds no frame of the caller's crate, so a crate
/// version that starts its successor (a shell, a receiver) can be reclaimed once it ends.
pub fn spawn_fn(name: &str, f: fn() -> isize) -> Result<TaskId, TaskError> {
    scrub_stack();
    let id = spawn_boxed(name, STACK_PAGES, Box::new(Entry(Box::new(f))))?;
    detach(id);
    Ok(id)
}

/// Starts a detached task that the recovery policy starts again (with the same entry and
/// argument) if it dies by a CPU exception or a panic ([`take_deaths`]).
pub fn spawn_restartable(name: &str, r: Restartable) -> Result<TaskId, TaskError> {
    spawn_restartable_on(this_cpu(), name, r)
}

/// [`spawn_restartable`] on CPU `cpu` (the recovery policy restarts a task on the CPU it died
/// on, see [`Death::cpu`]).
pub fn spawn_restartable_on(cpu: usize, name: &str, r: Restartable) -> Result<TaskId, TaskError> {
    let entry = r.entry;
    let arg = r.arg;
    scrub_stack();
    // Detached and restartable from its first instant: on another CPU it may run, and die, at
    // once.
    spawn_boxed_with(cpu, name, STACK_PAGES, Box::new(Entry(Box::new(move || entry(arg)))), Some(r))
}

/// Restartable tasks that died since the last call (the recovery policy restarts them).
pub fn take_deaths() -> Vec<Death> {
    cpu::without_interrupts(|| core::mem::take(&mut *tables().deaths.lock()))
}

/// Whether a death waits for [`take_deaths`] (for a supervisor's [`wait_until`]).
pub fn deaths_waiting() -> bool {
    cpu::without_interrupts(|| !tables().deaths.lock().is_empty())
}

/// Notes where the running task is (the faulting instruction, then its return addresses), for
/// a restartable task's death report. Called before unwinding destroys the frames.
fn note_death_site(fault: Option<(u64, u64)>) {
    let cur = current();
    // Without the task table: the fault may have hit code that holds it.
    let (lo, hi) = current_stack_bounds();
    let mut pcs = Vec::new();
    if let Some((rip, rsp)) = fault {
        pcs.push(rip);
        // The word at the interrupted stack pointer: the return address when the fault hit a
        // function's first instructions (before it made a frame record), else some other
        // word — looking up a crate too many only costs a hash.
        if (lo..hi.saturating_sub(8)).contains(&rsp) {
            // SAFETY: inside the task's mapped stack (checked above).
            pcs.push(unsafe { (rsp as *const u64).read() });
        }
    }
    // The handler may run on its own stack (page faults use an IST stack): follow the chain
    // out of it, through the handler's frames, to the first frame on the task's stack.
    let mut rbp = nano_core::kernel::current_frame_pointer();
    for _ in 0..16 {
        if (lo..hi).contains(&rbp)
            || !rbp.is_multiple_of(8)
            || nano_core::paging::translate(rbp).is_none()
            || nano_core::paging::translate(rbp + 8).is_none()
        {
            break;
        }
        // SAFETY: the word at `rbp` is mapped (checked just above): a frame record's first word.
        rbp = unsafe { (rbp as *const u64).read() };
    }
    walk(rbp, lo, hi, &mut pcs);
    cpu::without_interrupts(|| {
        if let Some(mut tasks) = tables().lock_unless_held_here()
            && let Some(t) = tasks.get_mut(&cur)
            && t.restart.is_some()
            && t.death_pcs.is_empty()
        {
            t.death_pcs = pcs;
        }
    });
}

/// Marks a task as one nobody will join: its record goes away as soon as it exits.
pub fn detach(id: TaskId) {
    cpu::without_interrupts(|| {
        if let Some(t) = tables().lock().get_mut(&id) {
            t.detached = true;
        }
    });
}

#[inline(never)]
fn spawn_boxed(name: &str, stack_pages: u64, entry: Box<Entry>) -> Result<TaskId, TaskError> {
    spawn_boxed_on(this_cpu(), name, stack_pages, entry)
}

#[inline(never)]
fn spawn_boxed_on(on: usize, name: &str, stack_pages: u64, entry: Box<Entry>) -> Result<TaskId, TaskError> {
    spawn_boxed_with(on, name, stack_pages, entry, None)
}

/// Makes a task on CPU `on`; a restartable one (`restart`) is detached.
#[inline(never)]
fn spawn_boxed_with(on: usize, name: &str, stack_pages: u64, entry: Box<Entry>, restart: Option<Restartable>) -> Result<TaskId, TaskError> {
    let p = policy().ok_or(TaskError::NoPolicy)?;
    if on >= TASK_CPUS || !nano_core::jobs::runs_tasks(on) || nano_core::jobs::stopped(on) {
        return Err(TaskError::NoSuchCpu(on));
    }
    let stack = paging::alloc_stack(stack_pages).map_err(|_| TaskError::OutOfMemory)?;
    let (tls, tp) = match make_tls(on) {
        Ok(v) => v,
        Err(e) => {
            drop(stack); // never used
            return Err(e);
        }
    };
    let mut fx = Box::new(FxArea([0; 512]));
    fxsave(&mut *fx);
    // Initial frame for delos_task_switch: six callee-saved registers, then the return address.
    let top = stack.top - 64;
    let frame = [0u64, 0, 0, 0, 0, 0, delos_task_trampoline as *const () as u64];
    let rsp = top - (frame.len() as u64) * 8;
    for (i, v) in frame.iter().enumerate() {
        // SAFETY: the addresses lie in the freshly mapped, unused stack.
        unsafe { ((rsp + i as u64 * 8) as *mut u64).write(*v) };
    }
    let id = next_id();
    let t = Task {
        id,
        name: name.to_string(),
        state: State::Runnable,
        rsp,
        fx,
        stack: Some(stack),
        tls: Some(tls),
        tp,
        entry: Some(entry),
        detached: restart.is_some(),
        restart,
        death_pcs: Vec::new(),
        ticks: 0,
        slice: 0,
        panicking: false,
        caught_fault: None,
        step: 0,
        cpu: on,
        kill_requested: false,
        joining: None,
        in_boot_tick: false,
        saving: AtomicBool::new(false),
        movable: false,
        pausing: false,
        looked: 0,
    };
    cpu::without_interrupts(|| {
        tables().lock().insert(id, Box::new(t));
        if on == 0 {
            (p.enqueue)(id);
        }
    });
    // The CPU it goes to may be halted (its idle task, or a task waiting in `wait_until`).
    wake(on);
    Ok(id)
}

/// Wakes CPU `cpu` (if it is not this one) so that its idle task looks for runnable tasks.
fn wake(cpu: usize) {
    if cpu != this_cpu()
        && let Some(w) = nano_core::kernel::WAKE_CPU_HOOK.get()
    {
        w(cpu);
    }
}

/// Run first by a task a switch has just resumed (after `delos_task_switch`, or at the top of
/// a new task): the task switched away from is saved now, and other CPUs may take it.
fn finish_switch() {
    let saving = here().switched_from.swap(0, Ordering::Relaxed);
    if saving != 0 {
        // SAFETY: set by `schedule` on this CPU just before the switch, to the `saving` flag of
        // the task it switched away from. That task's record stays in the table: it is removed
        // only once exited and reaped, and this CPU, its only reaper, is here.
        unsafe { (*(saving as *const AtomicBool)).store(false, Ordering::Release) };
    }
}

extern "C" fn task_main() -> ! {
    finish_switch();
    let id = current();
    let entry = cpu::without_interrupts(|| tables().lock().get_mut(&id).and_then(|t| t.entry.take()).map(|e| e.0));
    reap();
    x86_64::instructions::interrupts::enable();
    let r = match (entry, CATCH.get()) {
        (Some(f), Some(catch)) => {
            let mut f = Some(f);
            let mut ret = -1;
            let mut run = || {
                if let Some(f) = f.take() {
                    ret = f();
                }
            };
            match catch(&mut run) {
                Ok(()) => ret,
                Err(msg) => {
                    release_table_left_locked();
                    match take_fault() {
                        Some(what) => exit(Exit::Faulted(what)),
                        None => exit(Exit::Panicked(msg)),
                    }
                }
            }
        }
        (Some(f), None) => f(),
        (None, _) => -1,
    };
    exit(Exit::Returned(r))
}

/// Ends the running task.
pub fn exit(how: Exit) -> ! {
    x86_64::instructions::interrupts::disable();
    let id = current();
    // Again, after a fault on the way out (see `fault_on_the_way_out`): the death is recorded
    // once, or the task would be restarted once per fault.
    let again = percpu::here().ending.swap(id + 1, Ordering::Relaxed) == id + 1;
    let stack = tables().lock_unless_held_here().and_then(|t| t.get(&id).and_then(|t| t.stack.as_ref().map(Stack::range)));
    if let Some((lo, hi)) = stack {
        nano_core::kernel::release_loader_held_by(lo, hi);
    }
    let mut waiting_elsewhere = 0u64;
    {
        let mut tasks = tables().lock();
        if let Some(t) = tasks.get_mut(&id) {
            if let Some(r) = t.restart
                && !again
                && matches!(how, Exit::Faulted(_) | Exit::Panicked(_))
            {
                let death =
                    Death { id, name: t.name.clone(), restart: r, exit: how.clone(), pcs: core::mem::take(&mut t.death_pcs), cpu: t.cpu };
                tables().deaths.lock().push(death);
            }
            t.state = State::Exited(how);
        }
        // Tasks waiting on other CPUs (a shell joining a command that ran here): their CPU may
        // be halted until its next tick; wake it, so that they see this end at once.
        let me = this_cpu();
        for t in tasks.values().filter(|t| t.pausing && t.cpu != me && t.cpu < 64) {
            waiting_elsewhere |= 1 << t.cpu;
        }
    }
    for cpu in (0..64).filter(|c| waiting_elsewhere & (1 << c) != 0) {
        wake(cpu);
    }
    exceptions::forget_task(id);
    if this_cpu() == 0 {
        // Under the table, like every call into the policy: its queue is plain memory, and a
        // task on another CPU may be spawning on this one.
        let _tasks = tables().lock();
        remove_from_policy(id);
    }
    schedule();
    unreachable!("an exited task was scheduled again")
}

/// Frees the stacks and TLS blocks of exited tasks other than the running one.
fn reap() {
    cpu::without_interrupts(reap_locked)
}

fn reap_locked() {
    let cur = current();
    let me = this_cpu();
    let mut dead = Vec::new();
    {
        // Only this CPU's tasks: an exited task of another CPU may still be on its way off its
        // stack there (its CPU reaps it after its last switch).
        let mut tasks = tables().lock();
        for t in tasks.values_mut() {
            if t.id != cur && t.cpu == me && matches!(t.state, State::Exited(_)) {
                if let Some(s) = t.stack.take() {
                    dead.push(s);
                }
                t.tls = None;
            }
        }
        tasks.retain(|id, t| *id == cur || t.cpu != me || !(t.detached && matches!(t.state, State::Exited(_))));
    }
    // The tasks exited and are not running: nothing runs on their stacks any more. Dropped
    // here, outside the task table's lock.
    drop(dead);
}

/// The scheduling decision of [`schedule`]: puts the current task back in the run queue if it
/// can go on, and picks the next runnable one; `None` without a policy. Returns whether the
/// current task is runnable, and the task picked. Its own frame, like
/// [`requeue_with_policy`]: the policy's address must not stay in `schedule`'s frame, where a
/// task switched out would keep it and a state-copying swap of the policy's crate would wait
/// for that task for ever (seen with a busy CPU beside QEMU).
#[inline(never)]
fn choose_next(cur: TaskId) -> Option<(bool, Option<TaskId>)> {
    if this_cpu() != 0 {
        // A parked CPU's tasks: round robin over the table (the policy orders the boot CPU's).
        return Some(fallback_choice(cur));
    }
    let p = policy()?;
    let mut tasks = tables().lock();
    SCHEDULE_INJECTION.fire_for(cur, "the scheduler, with the task table held");
    let cur_runnable = tasks.get(&cur).is_some_and(|t| matches!(t.state, State::Running | State::Runnable));
    if cur_runnable && (cur != idle_here() || !here().idling.load(Ordering::Relaxed)) {
        if let Some(t) = tasks.get_mut(&cur) {
            t.state = State::Runnable;
        }
        (p.enqueue)(cur);
    }
    let mut next = None;
    if cur != idle_here() && here().force_idle.swap(false, Ordering::Relaxed) {
        next = Some(idle_here());
    }
    while next.is_none()
        && let Some(id) = (p.pick_next)()
    {
        if tasks.get(&id).is_some_and(|t| t.state == State::Runnable) {
            next = Some(id);
            break;
        }
    }
    Some((cur_runnable, next))
}

/// Takes `id` out of the policy's run queue (in a frame of its own, as [`choose_next`]). Call
/// with the task table held: every call into the policy is made under it, since its queue is
/// plain memory that tasks on every CPU reach (a spawn on the boot CPU from an AP).
#[inline(never)]
fn remove_from_policy(id: TaskId) {
    if let Some(p) = policy() {
        (p.remove)(id);
    }
}

/// The scheduling decision when the policy's was abandoned (its code faulted or panicked):
/// round robin over this CPU's tasks in the task table by id, which is the truth the policy's
/// run queue only mirrors. Keeps tasks running — the supervisor among them, which verifies and
/// repairs the policy's crate — while the policy is damaged. A parked CPU's every decision.
fn fallback_choice(cur: TaskId) -> (bool, Option<TaskId>) {
    let (me, idle) = (this_cpu(), idle_here());
    let mut tasks = tables().lock();
    let cur_runnable = tasks.get(&cur).is_some_and(|t| matches!(t.state, State::Running | State::Runnable));
    if let Some(t) = tasks.get_mut(&cur).filter(|_| cur_runnable) {
        t.state = State::Runnable;
    }
    #[allow(clippy::borrowed_box)] // the map's items; `find_map` hands them over as they are
    let runnable = |(&id, t): (&TaskId, &Box<Task>)| (id != idle && id != cur && t.cpu == me && t.state == State::Runnable).then_some(id);
    let next = tasks.range(cur + 1..).find_map(runnable).or_else(|| tasks.range(..cur).find_map(runnable));
    (cur_runnable, next)
}

/// What a switch from the running task to the next one needs, taken from the task table before
/// it is released: where to save the running task's stack pointer and SSE state, and the next
/// task's stack pointer, SSE state, thread pointer, stack bounds and innermost step.
struct Switch {
    /// The current task's [`Task::saving`], set: cleared once the switch is done.
    saving: *const AtomicBool,
    save_rsp: *mut u64,
    save_fx: *mut FxArea,
    save_step: *mut u64,
    next: TaskId,
    rsp: u64,
    fx: *const FxArea,
    tp: u64,
    stack: (u64, u64),
    step: u64,
}

/// What the guarded part of [`schedule`] hands back: whether to switch, and how.
struct Prepared {
    switch: bool,
    sw: Switch,
}

impl Switch {
    /// No switch: every word zero.
    const NONE: Switch = Switch {
        saving: core::ptr::null(),
        save_rsp: core::ptr::null_mut(),
        save_fx: core::ptr::null_mut(),
        save_step: core::ptr::null_mut(),
        next: 0,
        rsp: 0,
        fx: core::ptr::null(),
        tp: 0,
        stack: (0, 0),
        step: 0,
    };
}

/// The bookkeeping of a switch from `cur` to the decision's `next` (`None`: nothing queued), as
/// a guarded step's body: `None` when `cur` goes on running (then it is marked so here),
/// otherwise what the switch needs, `next` marked running. The current task's innermost step
/// is saved by the caller, outside the step.
#[inline(never)]
fn prepare_switch(cur: TaskId, next: Option<TaskId>, cur_runnable: bool) -> Option<Switch> {
    // `crash schedule --switch` fails at the end of each path: where a switch is made, with the
    // next task already marked running (what an abandoned step must settle).
    let inject = || SWITCH_INJECTION.fire_for(cur, "the task switch's bookkeeping");
    // Nothing queued: the idle task, unless the current task can go on.
    let from_queue = next.is_some();
    let idle = idle_here();
    let next = next.unwrap_or(idle);
    let keep_running = |tasks: &mut BTreeMap<TaskId, Box<Task>>| {
        if let Some(t) = tasks.get_mut(&cur) {
            t.state = State::Running;
            t.slice = 0;
        }
    };
    if next == cur {
        keep_running(&mut tables().lock());
        inject();
        return None;
    }
    if !from_queue && cur_runnable && cur != idle {
        // Only the idle task besides us: keep running.
        let mut tasks = tables().lock();
        remove_from_policy(cur);
        keep_running(&mut tasks);
        inject();
        return None;
    }
    let mut tasks = tables().lock();
    // The current task first: if it is gone, nothing is changed.
    let c = tasks.get_mut(&cur)?;
    // Switched away, it is not running: the decision marks it runnable when it queues it, but
    // a decision that misread the table (campaign seed 29, trial 197: a flipped displacement
    // made `choose_next` read the wrong field for the map's root; it saw no task at all, and
    // popped and dropped every queued one) left each task that switched away marked running.
    // Never queued again, every task ended up so, and the kernel only idled. Marked runnable
    // here, the requeue pass queues it again once the decision's code is repaired. (The idle
    // task keeps its mark: it is never queued.)
    if cur != idle && c.state == State::Running {
        c.state = State::Runnable;
    }
    let (save_rsp, save_fx, save_step, saving) = (&raw mut c.rsp, &raw mut *c.fx, &raw mut c.step, &raw const c.saving);
    // Killed by another CPU, or taken by an idle CPU (see [`steal_work`]), since the decision
    // (the table was free in between): the current task goes on if it can, else the idle task.
    let me = this_cpu();
    let gone = |n: &Task| n.id != idle && (n.cpu != me || n.state != State::Runnable);
    let next = match tasks.get(&next) {
        Some(n) if gone(n) && cur_runnable && cur != idle => cur,
        Some(n) if gone(n) => idle,
        _ => next,
    };
    if next == cur {
        keep_running(&mut tasks);
        return None;
    }
    let Some(n) = tasks.get_mut(&next) else {
        keep_running(&mut tasks);
        return None;
    };
    here().marked_next.store(next + 1, Ordering::Relaxed);
    n.state = State::Running;
    n.slice = 0;
    let stack = n.stack.as_ref().map_or_else(idle_stack_here, Stack::range);
    let sw = Switch { saving, save_rsp, save_fx, save_step, next, rsp: n.rsp, fx: &*n.fx, tp: n.tp, stack, step: n.step };
    // SAFETY: `saving` points into the current task's boxed Task, which the table holds.
    unsafe { (*saving).store(true, Ordering::Release) };
    inject();
    Some(sw)
}

/// After a step was abandoned part-way (a tick, or a decision and the switch's bookkeeping):
/// the current task runs on, and the task a switch was going to, if the bookkeeping had marked
/// it running, is runnable again; the next requeue pass puts it back in the policy's queue if
/// the decision had taken it out. Before, a tick abandoned mid-switch left the beat task marked
/// running while it was not: never picked again, its beats stopped for good (fault campaign
/// seed 19, trial 268).
///
/// Two lookups, not a walk of the table: the step may have been abandoned because the table is
/// damaged, and a walk that faults with the table held halts the kernel (seed 23, trial 100:
/// stores from a scheduler sent astray damaged it, and the walk that settled every entry
/// faulted). Skipped if the table is held (by the code the step interrupted).
pub(crate) fn settle_running(cur: TaskId) {
    let marked = here().marked_next.swap(0, Ordering::Relaxed).checked_sub(1);
    let Some(mut tasks) = tables().lock_unless_held_here() else { return };
    if let Some(id) = marked
        && id != cur
        && id != idle_here()
        && let Some(t) = tasks.get_mut(&id)
        && t.state == State::Running
    {
        t.state = State::Runnable;
    }
    if let Some(t) = tasks.get_mut(&cur)
        && t.state == State::Runnable
    {
        t.state = State::Running;
    }
}

/// Picks the next task and switches to it. Returns when the caller is scheduled again (or
/// immediately if nothing else is runnable).
pub fn schedule() {
    if !STARTED.load(Ordering::Acquire) {
        return;
    }
    cpu::without_interrupts(|| {
        let cur = current();
        // The policy's decision and the switch's bookkeeping after it (both tasks' entries in
        // the table, the policy's queue when the current task stays), as one guarded step:
        // damage in the policy, or in that bookkeeping (the fault campaign found flips there,
        // charged to whichever task was switching), abandons the decision, not the task that
        // asked for it. One step, not two: a step costs about 0.55 us a switch under TCG.
        //
        // Every word of the result is written before the step: the idle task is switched out
        // here, and a swap's reference scan reads its frame. An `Option`'s unwritten payload
        // kept what an earlier call had left in that memory — the scheduler policy's address,
        // which made every state-copying swap of the policy wait for the idle task for ever.
        let mut prepared = Prepared { switch: false, sw: Switch::NONE };
        let mut body = || {
            if let Some((cur_runnable, next)) = choose_next(cur)
                && let Some(sw) = prepare_switch(cur, next, cur_runnable)
            {
                prepared = Prepared { switch: true, sw };
            }
        };
        let sw = match step::run(step::Step::Schedule, &mut body) {
            Ok(()) if prepared.switch => prepared.sw,
            // No policy, or the current task goes on.
            Ok(()) => return,
            Err(_) => {
                // Made again without the policy, and without a guard (what the abandoned step
                // had marked was settled: see `settle_running`).
                let (cur_runnable, next) = fallback_choice(cur);
                match prepare_switch(cur, next, cur_runnable) {
                    Some(sw) => sw,
                    None => return,
                }
            }
        };
        // Outside the step: inside it, the innermost step is the step itself.
        // SAFETY: `save_step` points into the current task's boxed Task, like `save_rsp`.
        unsafe { *sw.save_step = step::save() };
        SWITCHES[this_cpu().min(TASK_CPUS)].fetch_add(1, Ordering::Relaxed);
        nano_core::tlb::pay_owed_by(this_cpu());
        here().current.store(sw.next);
        set_current_stack(sw.stack);
        step::restore(sw.step);
        fxsave(sw.save_fx);
        fxrstor(sw.fx);
        set_fs_base(sw.tp);
        here().switched_from.store(sw.saving as u64, Ordering::Relaxed);
        // SAFETY: `save_rsp` points into the current task's boxed Task (stable while it exists,
        // and exited tasks are only removed by join, never while running); `rsp` was saved by a
        // previous switch or built by `spawn`. Interrupts are off.
        unsafe { delos_task_switch(sw.save_rsp, sw.rsp) };
        // Back in `cur`: the task that switched here is saved now.
        finish_switch();
        reap();
    });
}

/// Lets the idle task run once now, even if other tasks are runnable (it only runs when
/// nothing else can, which with the shell always runnable is seldom: a waiting task stays
/// runnable, see [`wait_until`]). Its one step leaves whatever
/// code it was parked in — a swap's reaper uses this so that a replaced task crate is not kept
/// alive by the idle task's resume point.
pub fn run_idle() {
    here().force_idle.store(true, Ordering::Relaxed);
    yield_now();
}

/// Gives up the CPU.
pub fn yield_now() {
    schedule();
}

/// Sleeps for at least `ms` milliseconds (see [`wait_until`]: the CPU halts meanwhile when
/// no task of it has work).
pub fn sleep_ms(ms: u64) {
    let deadline = nano_core::time::micros_since_entry() + ms * 1000;
    if current() == idle_here() {
        while nano_core::time::micros_since_entry() < deadline {
            yield_now();
            x86_64::instructions::hlt();
        }
        return;
    }
    wait_until(|| false, Some(deadline));
}

/// The longest a CPU that runs tasks goes without a timer tick (the boot CPU's PIT and the
/// APs' local APIC timers tick at 100 Hz). A wait whose deadline is nearer than this yields
/// instead of halting, so that a short sleep does not last a whole tick.
const TICK_US: u64 = 10_000;

/// Waits until `ready()` or the deadline (microseconds since entry), whichever comes first;
/// returns whether `ready()` did. Meanwhile the task is marked pausing: other tasks of its CPU
/// run first, and when every runnable task of this CPU is pausing, it halts the CPU until the
/// next interrupt (a timer tick, a device's, a wake-up IPI) instead of polling. `ready` is
/// also asked with interrupts off right before a halt, so that what an interrupt brings
/// between the last look and the halt is not waited for until the tick after it: it must be
/// cheap and take no lock that an interrupt handler takes.
///
/// Why: every wait in Delos used to poll (the shell for a key, `join`, `sleep`), and a CPU
/// whose tasks all poll never halts: an idle system at its prompt kept a host core busy for
/// good (1.02 host CPU seconds per second; 0.18–0.20 with this). Waiting this way is still
/// polling — each task looks again after every interrupt that ends a halt, a tick at the
/// latest — but at about 100 looks a second instead of as fast as the CPU can yield. No wait
/// queues: a condition is a closure, and who makes it true need not know who waits.
pub fn wait_until(ready: impl Fn() -> bool, deadline: Option<u64>) -> bool {
    let me = current();
    // The idle task has nothing to wait for, and a CPU running with interrupts off (a caller
    // in `without_preemption`) must not halt: nothing would wake it. Those only yield.
    let may_halt = me != idle_here() && cpu::are_enabled();
    let _pausing = may_halt.then(|| Pausing::mark(me));
    loop {
        if ready() {
            return true;
        }
        if deadline.is_some_and(|d| nano_core::time::micros_since_entry() >= d) {
            return false;
        }
        yield_now();
        if !may_halt {
            continue;
        }
        let near = deadline.is_some_and(|d| d.saturating_sub(nano_core::time::micros_since_entry()) < TICK_US);
        cpu::disable();
        if !near && !ready() && only_pausing_here(me) {
            here().halts.fetch_add(1, Ordering::Relaxed);
            // `sti; hlt`: an interrupt that came since `disable` ends the halt at once.
            cpu::enable_and_hlt();
        } else {
            cpu::enable();
        }
    }
}

/// Marks a task as pausing ([`Task::pausing`]) for as long as it lives: a task that unwinds out
/// of its wait (a panic, a kill) is not left marked.
struct Pausing(TaskId);

impl Pausing {
    fn mark(me: TaskId) -> Pausing {
        set_pausing(me, true);
        Pausing(me)
    }
}

impl Drop for Pausing {
    fn drop(&mut self) {
        set_pausing(self.0, false);
    }
}

fn set_pausing(id: TaskId, on: bool) {
    cpu::without_interrupts(|| {
        if let Some(t) = tables().lock().get_mut(&id) {
            t.pausing = on;
        }
    });
}

/// Whether this CPU may halt: every runnable task of it other than `me` (and its idle task) is
/// pausing in [`wait_until`], and has looked at what it waits for since this CPU last halted.
/// Records that `me` has looked. Called with interrupts off.
///
/// Why the look: an interrupt ends a halt, and the tick may switch to another waiting task
/// first, which would halt again at once: with three tasks waiting (the shell, the supervisor,
/// the scrubber) each looked only at every third tick or so. Now each looks once after every
/// interrupt that ends a halt.
fn only_pausing_here(me: TaskId) -> bool {
    let (cpu, idle) = (this_cpu(), idle_here());
    let halts = here().halts.load(Ordering::Relaxed);
    let mut tasks = tables().lock();
    if let Some(t) = tasks.get_mut(&me) {
        t.looked = halts;
    }
    tasks.values().all(|t| t.id == me || t.id == idle || t.cpu != cpu || t.state != State::Runnable || (t.pausing && t.looked == halts))
}

/// Times CPU `cpu` halted because every task of it was waiting ([`wait_until`]); 0 for a CPU
/// beyond [`TASK_CPUS`].
pub fn halts_on(cpu: usize) -> u64 {
    if cpu < TASK_CPUS { percpu::of(cpu).halts.load(Ordering::Relaxed) } else { 0 }
}

/// Ticks between two [`requeue_runnable`] passes (at 100 Hz: 4 a second).
const REQUEUE_TICKS: u64 = 25;
/// Timer ticks seen by [`on_tick`] (only to pace [`requeue_runnable`]).
static TICKS: AtomicU64 = AtomicU64::new(0);

/// Enqueues every runnable task but the current one and the idle task again. The task table is
/// the truth and the policy's run queue only a view of it, which a fault in the policy's
/// memory (or a full queue) can make lose a task; policies ignore a task they already hold, so
/// this puts back exactly the lost ones, within [`REQUEUE_TICKS`].
fn requeue_runnable(tasks: &BTreeMap<TaskId, Box<Task>>, p: &Policy, cur: TaskId) {
    for t in tasks.values() {
        if t.state == State::Runnable && t.id != cur && t.id != 0 && t.cpu == 0 {
            (p.enqueue)(t.id);
        }
    }
}

/// [`requeue_runnable`] with the registered policy, in a frame of its own: `on_tick` goes on to
/// switch tasks, and a policy address left in its frame would make a swap of the policy's
/// crate see the interrupted task as still using the old version.
#[inline(never)]
fn requeue_with_policy(tasks: &BTreeMap<TaskId, Box<Task>>, cur: TaskId) {
    if let Some(p) = policy() {
        requeue_runnable(tasks, p, cur);
    }
}

/// What `crash tick` and `crash schedule` inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A page fault (a read of address 8, in the unmapped first page), which unwinds.
    PageFault = 1,
    /// A panic.
    Panic = 2,
    /// A call to address 8, where there is no code: no unwind can start there (no unwind
    /// information covers it), as after a flipped bit sent a jump astray.
    WildJump = 3,
    /// A loop with interrupts off that never ends, as damaged code can loop: only the watchdog's
    /// NMI gets the CPU back.
    Hang = 4,
    /// A [`Fault::WildJump`] after the step's saved context was damaged (its stack pointer
    /// zeroed), as a task switch sent astray left it in the fault campaign: the step cannot be
    /// escaped, and the task that ran it is ended instead.
    WildJumpDamagedStep = 5,
}

/// A fault armed by `crash tick` or `crash schedule` for one task: `kind` 0 none, else a
/// [`Fault`].
struct Injection {
    kind: AtomicU64,
    victim: AtomicU64,
}

impl Injection {
    const fn new() -> Injection {
        Injection { kind: AtomicU64::new(0), victim: AtomicU64::new(0) }
    }

    fn arm(&self, fault: Fault, victim: TaskId) {
        self.victim.store(victim, Ordering::Relaxed);
        self.kind.store(fault as u64, Ordering::Relaxed);
    }

    /// Faults (or panics) here if armed for task `cur`, once; `site` says where, in a panic.
    fn fire_for(&self, cur: TaskId, site: &'static str) {
        if self.kind.load(Ordering::Relaxed) != 0 && self.victim.load(Ordering::Relaxed) == cur {
            injected_fault(self.kind.swap(0, Ordering::Relaxed), site);
        }
    }
}

/// Armed by [`inject_tick_fault`]; fired in [`guard_tick`].
static TICK_INJECTION: Injection = Injection::new();
/// Armed by [`inject_schedule_fault`]; fired in [`choose_next`], with the task table held.
static SCHEDULE_INJECTION: Injection = Injection::new();
/// Armed by [`inject_switch_fault`]; fired in [`prepare_switch`].
static SWITCH_INJECTION: Injection = Injection::new();

/// Makes the next timer tick that interrupts task `victim` fail with `fault` inside the tick's
/// own code, as damaged scheduler or timer code would: for `crash tick`, the test of
/// [`guard_tick`].
pub fn inject_tick_fault(fault: Fault, victim: TaskId) {
    TICK_INJECTION.arm(fault, victim);
}

/// Makes the calling task's next call into the scheduler fail with `fault` inside the task
/// table's critical section, in a function it calls, as a damaged scheduler policy would: for
/// `crash schedule`. The decision is abandoned (the table released) and the task goes on.
pub fn inject_schedule_fault(fault: Fault) {
    SCHEDULE_INJECTION.arm(fault, current());
}

/// Makes the calling task's next task switch fail with `fault` in the switch's bookkeeping,
/// after the decision (for `crash schedule --switch`): the switch is abandoned and the task
/// goes on.
pub fn inject_switch_fault(fault: Fault) {
    SWITCH_INJECTION.arm(fault, current());
}

/// What `crash tick` and `crash schedule` inject (a [`Fault`] as a number), in a frame of its
/// own (a fault's own frame keeps its locals; its callers' are dropped).
#[inline(never)]
fn injected_fault(kind: u64, site: &'static str) {
    if kind == Fault::Panic as u64 {
        panic!("injected into {site} (crash --panic)");
    }
    if kind == Fault::Hang as u64 {
        loop {
            core::hint::spin_loop();
        }
    }
    if kind == Fault::WildJumpDamagedStep as u64 {
        step::damage_innermost_for_test();
    }
    if kind == Fault::WildJump as u64 || kind == Fault::WildJumpDamagedStep as u64 {
        // SAFETY: none needed for what happens: the call faults on fetching its first
        // instruction (the first page is never mapped), and the fault (what is being tested) is
        // escaped by the step guard, since no unwind information covers address 8.
        let nowhere: extern "C" fn() = unsafe { core::mem::transmute::<usize, extern "C" fn()>(core::hint::black_box(8)) };
        nowhere();
        return;
    }
    // SAFETY: the read never completes: the first page is never mapped, so it faults, and the
    // fault (what is being tested) is unwound by the step guard.
    let v = unsafe { core::ptr::read_volatile(core::hint::black_box(core::ptr::dangling::<u64>())) };
    core::hint::black_box(v);
}

/// The timer's tick guard ([`::interrupts::TickGuard`]): runs the tick as a guarded step (see
/// [`step`]). A fault or a panic in the tick's code unwinds the interrupted task's stack only as
/// far as here — the frames of the tick, whose locks are released by their destructors — or,
/// where no unwind can start, escapes back here; the tick is abandoned and the task it
/// interrupted goes on, unharmed and not blamed. (Without it the unwind went on into the task,
/// which was ended; the fault campaign counted that shell or supervisor as not contained.) The
/// idle task's ticks are guarded too: it unwinds on nano_core's boot stack.
fn guard_tick(tick: fn()) -> bool {
    let cur = current();
    let mut run = || {
        TICK_INJECTION.fire_for(cur, "the timer tick");
        tick()
    };
    step::run(step::Step::Tick, &mut run).is_ok()
}

/// The timer's hook (interrupts off). Every other user of the task table holds it with
/// interrupts off too, so it is free whenever a tick arrives; should that ever not hold, this
/// tick is skipped rather than spun on (spinning here, with interrupts off, on a lock the
/// interrupted code holds would stop the machine).
fn on_tick() {
    let cur = current();
    let me = this_cpu();
    let preempt = {
        let Some(mut tasks) = tables().try_lock() else { return };
        if me == 0 && TICKS.fetch_add(1, Ordering::Relaxed).is_multiple_of(REQUEUE_TICKS) {
            requeue_with_policy(&tasks, cur);
            // Three-copy words read only on rare paths (a fault, a spawn): voted now, so that
            // a flipped copy is repaired before a second flip in the same word loses it.
            exceptions::vote_hooks();
            let _ = NEXT_ID.load();
        }
        match tasks.get_mut(&cur) {
            Some(t) => {
                t.ticks += 1;
                t.slice += 1;
                // A parked CPU's tasks share it a tick at a time.
                let preempt = cur == idle_here() || me != 0 || policy().is_some_and(|p| (p.should_preempt)(t.slice));
                if preempt && me == 0 {
                    t.in_boot_tick = true;
                }
                preempt
            }
            None => false,
        }
    };
    if preempt {
        schedule();
        if me == 0 {
            // Back on the boot CPU, inside the tick that switched it out. (Not waited for, as
            // above: a mark left set only keeps other CPUs from taking the task.)
            if let Some(mut tasks) = tables().try_lock()
                && let Some(t) = tasks.get_mut(&cur)
            {
                t.in_boot_tick = false;
            }
        }
    }
}

fn on_fault(info: &exceptions::FaultInfo) -> Option<u64> {
    let cur = current();
    let in_step = step::in_step();
    // In the timer's entry code, before the tick's guarded step began: the tick is abandoned
    // there (the entry's saved registers put back), and the interrupted task goes on.
    if !in_step && let Some(at) = ::interrupts::abandon_entry(info.rip, info.rsp) {
        step::count_abandoned_tick();
        nano_core::serial::emergency_write(format_args!(
            "    {} at {:#x} was in the timer's interrupt entry, not {}'s: the tick is abandoned and the task goes on\n",
            info.name,
            info.rip,
            task_label(cur)
        ));
        return Some(at);
    }
    if cur == idle_here() && !in_step {
        // A parked CPU's idle task (its park loop, an IPI handler): that CPU stops, the others
        // go on, as before it ran tasks.
        nano_core::jobs::stop_this_cpu(format_args!("{} at {:#x}", info.name, info.rip));
        return None; // the boot context, outside a step: fatal
    }
    // With the task table locked (the fault hit the scheduler policy, called under it), the
    // task is still unwound: the frames that hold the table release it on the way, and the
    // catch checks that none was left holding it (see `release_table_left_locked`).
    let who = task_label(cur);
    let what = alloc::format!("{} at {:#x}", info.name, info.rip);
    // (A fault in a step — a tick, a scheduling decision — abandons the step as usual: the way
    // out goes on from where the step began.)
    if !in_step && percpu::here().ending.load(Ordering::Relaxed) == cur + 1 {
        fault_on_the_way_out(&who, info);
        release_table_left_locked();
        exit(Exit::Faulted(what))
    }
    if !in_step {
        note_death_site(Some((info.rip, info.rsp)));
    }
    let prepared = if info.frame_unreliable { None } else { fault_unwind::prepare(cur, info, &what) };
    if let Some(at) = prepared {
        if in_step {
            nano_core::serial::emergency_write(format_args!(
                "    {} in the kernel's step (tick or scheduling) while {who} ran; unwinding the step\n",
                info.name
            ));
        } else {
            nano_core::serial::emergency_write(format_args!("    {who} killed by {}; unwinding its stack\n", info.name));
        }
        return Some(at);
    }
    if let Some(at) = step::escape_entry() {
        nano_core::serial::emergency_write(format_args!(
            "    {} in the kernel's step (tick or scheduling) while {who} ran, and it cannot be unwound: escaping the step\n",
            info.name
        ));
        return Some(at);
    }
    nano_core::serial::emergency_write(format_args!("    {who} killed by {} (not unwound)\n", info.name));
    // Ending the task needs the table; if the faulting code holds it, nothing can (said so).
    release_table_left_locked();
    exit(Exit::Faulted(what))
}

/// A task faulted again while it was being ended (after a fault, a panic, or a plain exit):
/// the way out ran damaged code. Campaign seed 34, trial 227: a flip in the task crate sent
/// the supervisor's way out to a non-canonical address; each fault ended the task again through
/// the same code, one level deeper on its stack, and each end recorded a death to restart,
/// until the watchdog repaired the code — four supervisors were started, and none ran. The
/// faulting instruction may lie anywhere (a wild jump leaves no trace of where it came from),
/// so every crate is checked and repaired before the task is ended again.
fn fault_on_the_way_out(who: &str, info: &exceptions::FaultInfo) {
    nano_core::serial::emergency_write(format_args!(
        "    {who} faulted ({}) on its way out: the way out ran damaged code; every crate checked\n",
        info.name
    ));
    match exceptions::repair_every_crate() {
        Some(0) => nano_core::serial::emergency_write(format_args!("    every crate's code is intact\n")),
        Some(_) => {}
        None => nano_core::serial::emergency_write(format_args!("    the loader or the page tables are held here: not checked\n")),
    }
}

/// "task ID (NAME)", or "task ID" if the table is busy (held by the code that faulted).
fn task_label(id: TaskId) -> String {
    match task_name(id) {
        n if n.is_empty() => alloc::format!("task {id}"),
        n => alloc::format!("task {id} ({n})"),
    }
}

/// The name of task `id` (empty if the table is busy), taken with interrupts off.
fn task_name(id: TaskId) -> String {
    cpu::without_interrupts(|| tables().lock_unless_held_here().and_then(|t| t.get(&id).map(|t| t.name.clone())).unwrap_or_default())
}

/// The kill reason of the CPU exception whose unwind the running task's last `catch` caught.
fn take_fault() -> Option<String> {
    let cur = current();
    cpu::without_interrupts(|| tables().lock().get_mut(&cur).and_then(|t| t.caught_fault.take()))
}

/// The faulting instruction of the CPU exception the running task is unwinding, if any: the
/// personality routine lets unwinding pass that frame (a fault is not a call site, so the
/// function's cleanup table has no entry for it and its own locals are not dropped).
pub fn unwinding_fault_ip() -> Option<u64> {
    let cur = current();
    cpu::without_interrupts(|| here().unwinding.try_lock().and_then(|f| f.as_ref().filter(|f| f.0 == cur).map(|f| f.2)))
}

/// A panic in a task ends only that task: message, location and a symbolized backtrace are
/// printed, the stack unwinds (running destructors) if the unwind crate is loaded, and the task
/// exits with [`Exit::Panicked`]. A panic outside any task falls through to nano_core.
fn on_panic(info: &core::panic::PanicInfo<'_>) {
    let cur = current();
    // The idle task unwinds only a tick's panic (to the tick guard); anything else of its own is
    // the kernel's end (nano_core's panic handler), as is a panic before tasking.
    if !STARTED.load(Ordering::Acquire) {
        return;
    }
    if cur == idle_here() && !step::in_step() {
        nano_core::jobs::stop_this_cpu(format_args!("panic: {}", info.message()));
        return;
    }
    let name = task_name(cur);
    note_death_site(None);
    let loc = info.location().map(|l| alloc::format!("{}:{}:{}", l.file(), l.line(), l.column())).unwrap_or_default();
    let msg = alloc::format!("{}", info.message());
    nano_core::serial::emergency_write(format_args!("\n!!! task {cur} ({name}) panicked at {loc}: {msg}\n"));
    let rbp: u64;
    // SAFETY: reads the frame pointer register; no memory is touched.
    unsafe { core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack)) };
    exceptions::print_backtrace(rbp, None);
    let what = alloc::format!("{msg} at {loc}");
    // Interrupts off while the table is held: the timer takes it too (a tick arriving inside
    // this window used to deadlock the machine, about one panic in a hundred).
    let first = cpu::without_interrupts(|| {
        // With the table held by the panicking code (the policy, called under it), the panic
        // cannot be recorded: it unwinds anyway, and the catch checks the table was released.
        match tables().lock_unless_held_here() {
            Some(mut t) => t.get_mut(&cur).is_some_and(|t| !core::mem::replace(&mut t.panicking, true)),
            None => true,
        }
    });
    if !first {
        // A panic while a step unwinds: the step is escaped.
        step::escape();
        if cur == idle_here() {
            nano_core::jobs::stop_this_cpu(format_args!("panic while unwinding"));
            return;
        }
        nano_core::serial::emergency_write(format_args!("    (panic while unwinding: ending the task)\n"));
        release_table_left_locked();
        exit(Exit::Panicked(what));
    }
    if let Some(begin) = BEGIN.get() {
        // Unwinds to the catch around the task's entry (running destructors on the way), which
        // ends the task, or to the tick guard; returns only if unwinding could not start.
        begin(what.clone());
        // Unwinding could not start: a step is escaped instead.
        step::escape();
        if cur == idle_here() {
            nano_core::jobs::stop_this_cpu(format_args!("panic that could not unwind"));
            return;
        }
        nano_core::serial::emergency_write(format_args!("    (could not unwind; ending the task without running destructors)\n"));
    }
    if cur == idle_here() {
        nano_core::jobs::stop_this_cpu(format_args!("panic"));
        return;
    }
    release_table_left_locked();
    exit(Exit::Panicked(what))
}

/// Kills a task. Killing the running task ends it at once.
pub fn kill(id: TaskId) -> Result<(), TaskError> {
    if is_any_idle(id) {
        return Err(TaskError::IdleTask);
    }
    if id == current() {
        exit(Exit::Killed);
    }
    // The task, then the task it waits for in `join`, and so on: a command that does its work
    // in a helper task (`wasm run` runs the module in one with a large stack) is killed with
    // that helper. Before, Ctrl-C ended the command and left the helper running for good (a
    // WASM loop spun on, unkillable by Ctrl-C; on another CPU the command's own end waited for
    // it, since that CPU never went idle to free the command's stack).
    let mut next = Some(id);
    for depth in 0..JOIN_CHAIN_MAX {
        let Some(victim) = next else { break };
        if victim == current() || is_any_idle(victim) {
            break;
        }
        let (remote, waits_for) = match kill_one(victim, depth > 0) {
            Ok(r) => r,
            Err(e) if depth == 0 => return Err(e),
            Err(_) => break,
        };
        if let Some(c) = remote {
            wake(c);
        }
        next = waits_for;
    }
    Ok(())
}

/// How far [`kill`] follows the tasks each victim waits for.
const JOIN_CHAIN_MAX: usize = 8;

/// Kills one task: ends it now if it is not running, or asks its CPU to end it at its next
/// tick. Returns the CPU to wake, if any, and the task it was waiting for. An `orphan` (the
/// task a killed task waited for) is detached too: no one is left to join it, and its record
/// would stay in the table as an exited task for good.
fn kill_one(id: TaskId, orphan: bool) -> Result<(Option<usize>, Option<TaskId>), TaskError> {
    cpu::without_interrupts(|| {
        let mut tasks = tables().lock();
        let t = tasks.get_mut(&id).ok_or(TaskError::NoSuchTask(id))?;
        let waits_for = t.joining;
        if orphan {
            t.detached = true;
        }
        if matches!(t.state, State::Exited(_)) {
            return Ok((None, waits_for));
        }
        if running_elsewhere(t) {
            // Running on another CPU: that CPU ends it at its next tick.
            t.kill_requested = true;
            return Ok((Some(t.cpu), waits_for));
        }
        t.state = State::Exited(Exit::Killed);
        if let Some(p) = policy() {
            (p.remove)(id);
        }
        Ok((Some(t.cpu).filter(|&c| c != 0), waits_for))
    })
}

/// Waits for a task to end and returns how it ended (and forgets it).
pub fn join(id: TaskId) -> Result<Exit, TaskError> {
    if is_any_idle(id) {
        return Err(TaskError::IdleTask);
    }
    let me = current();
    loop {
        let done = cpu::without_interrupts(|| {
            let mut tasks = tables().lock();
            if let Some(t) = tasks.get_mut(&me) {
                t.joining = Some(id);
            }
            match tasks.get(&id).map(|t| t.state.clone()) {
                None => Some(Err(TaskError::NoSuchTask(id))),
                Some(State::Exited(e)) => {
                    if tasks.get(&id).is_some_and(|t| t.stack.is_none()) {
                        tasks.remove(&id);
                        Some(Ok(e))
                    } else {
                        None // wait until its stack is reaped
                    }
                }
                Some(_) => None,
            }
        });
        if let Some(r) = done {
            cpu::without_interrupts(|| {
                if let Some(t) = tables().lock().get_mut(&me) {
                    t.joining = None;
                }
            });
            return r;
        }
        if has_exited(id) {
            // Its stack is reaped by its CPU after its last switch: soon.
            yield_now();
            reap();
        } else {
            wait_until(|| has_exited(id), None);
        }
    }
}

/// Whether a task has ended (or does not exist).
pub fn has_exited(id: TaskId) -> bool {
    cpu::without_interrupts(|| tables().lock().get(&id).is_none_or(|t| matches!(t.state, State::Exited(_))))
}

/// All tasks.
pub fn list() -> Vec<TaskInfo> {
    cpu::without_interrupts(|| {
        tables()
            .lock()
            .values()
            .map(|t| TaskInfo {
                id: t.id,
                name: t.name.clone(),
                state: t.state.clone(),
                ticks: t.ticks,
                stack: t.stack.as_ref().map(Stack::range),
                restarts: t.restart.map(|r| r.restarts),
                cpu: t.cpu,
            })
            .collect()
    })
}

/// Walks a frame-pointer chain starting at `rbp` within `[lo, hi)`, collecting return
/// addresses (innermost first).
fn walk(mut rbp: u64, lo: u64, hi: u64, out: &mut Vec<u64>) {
    for _ in 0..256 {
        if rbp < lo || rbp.checked_add(16).is_none_or(|e| e > hi) || !rbp.is_multiple_of(8) {
            break;
        }
        // SAFETY: `rbp..rbp+16` lies inside the task's mapped stack (checked above); the task
        // is not running (or is the caller), so the words are stable.
        let (next, ret) = unsafe { ((rbp as *const u64).read(), ((rbp + 8) as *const u64).read()) };
        if ret == 0 {
            break;
        }
        out.push(ret);
        if next <= rbp {
            break;
        }
        rbp = next;
    }
}

/// Every task's return addresses (the saved resume point first, then the frame-pointer chain),
/// for checking that no task is inside some code (swap's safe point). Call with interrupts off
/// so that the stacks do not change while they are walked.
pub fn stack_return_addresses() -> Vec<(TaskId, String, Vec<u64>)> {
    let cur = current();
    let tasks = tables().lock();
    let mut out = Vec::new();
    for t in tasks.values() {
        if matches!(t.state, State::Exited(_)) {
            continue;
        }
        let (lo, hi) = stack_of(t);
        let mut addrs = Vec::new();
        if running_elsewhere(t) {
            // Running on another CPU: its frames change as they are read; none are listed.
        } else if t.id == cur {
            let rbp: u64;
            // SAFETY: reads the frame pointer register; no memory is touched.
            unsafe { core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack)) };
            walk(rbp, lo, hi, &mut addrs);
        } else if t.rsp >= lo && t.rsp + 56 <= hi {
            // The frame delos_task_switch left: r15 r14 r13 r12 rbx rbp, then the return address.
            // SAFETY: inside the task's stack (checked); the task is switched out.
            let (rbp, ret) = unsafe { (((t.rsp + 40) as *const u64).read(), ((t.rsp + 48) as *const u64).read()) };
            addrs.push(ret);
            walk(rbp, lo, hi, &mut addrs);
        }
        out.push((t.id, t.name.clone(), addrs));
    }
    out
}

/// Visits every word on every live task's stack, from its saved stack pointer (the current
/// stack pointer for the running task) up to the top, with the task's id and name. The visitor
/// may change a word (swap rewrites function pointers that moved). Call with interrupts off.
pub fn for_each_stack_word(f: &mut dyn FnMut(TaskId, &str, &mut u64)) {
    let cur = current();
    let tasks = tables().lock();
    for t in tasks.values() {
        if matches!(t.state, State::Exited(_)) {
            continue;
        }
        let (lo, hi) = stack_of(t);
        let sp = if t.id == cur {
            let rsp: u64;
            // SAFETY: reads the stack pointer register; no memory is touched.
            unsafe { core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack)) };
            rsp
        } else if running_elsewhere(t) {
            // Running on another CPU: from where it stopped for the world (its registers are
            // pushed below that), or, not stopped, its whole stack (a conservative scan).
            nano_core::stw::stopped_at(t.cpu).unwrap_or(lo)
        } else {
            t.rsp
        };
        if sp < lo || sp >= hi {
            continue;
        }
        let mut a = sp & !7;
        while a + 8 <= hi {
            // SAFETY: `a` lies in the task's mapped stack; the task is switched out (or is the
            // caller, whose frames below `sp` are not touched), and interrupts are off, so
            // nothing else reads or writes the word meanwhile.
            f(t.id, &t.name, unsafe { &mut *(a as *mut u64) });
            a += 8;
        }
    }
}

/// Runs `f` with interrupts off (no task switch meanwhile).
pub fn without_preemption<T>(f: impl FnOnce() -> T) -> T {
    cpu::without_interrupts(f)
}

/// A parked CPU's idle step (nano_core's park loop, through `AP_SCHEDULE_HOOK`): frees what
/// this CPU's exited tasks left, takes a movable task waiting elsewhere ([`steal_work`]), then
/// runs its runnable tasks; returns when none is left.
fn ap_idle_step() {
    reap();
    steal_work();
    schedule();
}

/// Tasks an idle CPU took from another ([`steal_work`]).
static MIGRATIONS: AtomicU64 = AtomicU64::new(0);

/// How many times an idle CPU took a movable task from a busy one.
pub fn migrations() -> u64 {
    MIGRATIONS.load(Ordering::Relaxed)
}

/// Work stealing, by a parked CPU with nothing of its own to run: takes one movable task
/// ([`spawn_movable`]) that waits on a CPU busy running another task, and makes it this CPU's
/// (its TCB's CPU word too: see `percpu::this_cpu`). A task is taken only while it is switched
/// out (runnable), under the task table, which every scheduling decision holds; the decision of
/// the CPU it left, if it had picked it meanwhile, sees it gone (see [`prepare_switch`]). Tasks
/// that are not movable — everything spawned without [`spawn_movable`] — stay where they were
/// put.
fn steal_work() {
    let me = this_cpu();
    cpu::without_interrupts(|| {
        let mut tasks = tables().lock();
        let waiting = tasks
            .values()
            .find(|t| {
                t.movable
                    && t.cpu != me
                    && t.state == State::Runnable
                    && !t.in_boot_tick
                    && !t.saving.load(Ordering::Acquire)
                    && percpu::of(t.cpu).current.load() != Some(t.id)
                    && !is_any_idle(t.id)
                    && !cpu_is_idle(t.cpu)
            })
            .map(|t| (t.id, t.cpu));
        let Some((id, from)) = waiting else { return };
        if from == 0 {
            remove_from_policy(id);
        }
        if let Some(t) = tasks.get_mut(&id) {
            t.cpu = me;
            // SAFETY: `tp` is the thread pointer of the task's live TLS block, whose TCB has the
            // CPU word at `tp + 8` (see `make_tls`); the task is switched out, so nothing reads
            // it meanwhile.
            unsafe { ((t.tp + 8) as *mut u64).write_volatile(me as u64) };
            MIGRATIONS.fetch_add(1, Ordering::Relaxed);
        }
    });
}

/// A parked CPU's timer tick (the smp crate's local APIC timer handler, interrupts off, its end
/// of interrupt already signalled): ends the running task if another CPU killed it, otherwise
/// ticks as on the boot CPU (a guarded step, which may switch tasks).
pub fn ap_tick() {
    if !STARTED.load(Ordering::Acquire) || this_cpu() == 0 {
        return;
    }
    let cur = current();
    let killed = tables().try_lock().is_some_and(|t| t.get(&cur).is_some_and(|t| t.kill_requested));
    if killed {
        exit(Exit::Killed);
    }
    guard_tick(on_tick);
}

/// One step of the idle loop (nano_core's, through its idle hook): run whatever is runnable,
/// then a piece of idle work if there is any, else halt until the next interrupt. The first
/// call marks the boot context as idling.
pub fn idle_step() {
    here().idling.store(true, Ordering::Relaxed);
    yield_now();
    // The idle task runs on the boot stack, where captain's start-up ran: the frames a tick
    // builds below this one would otherwise sit on its words (the policy's address among
    // them) and keep them live.
    scrub_stack();
    // Idle work first (`nano_core::kernel::idle_work`), then back to look for tasks; halt
    // only when there is none left.
    if nano_core::kernel::idle_work(false) {
        return;
    }
    x86_64::instructions::interrupts::enable_and_hlt();
}

/// Zeroes the unused stack below the caller's frame (within the running task's stack), so
/// that what the caller's callees build there starts clean. Values copied from dead stack
/// slots into padding and unused enum payloads of long-lived heap records (a task's record)
/// would otherwise look like references to whatever code ran before — and keep a replaced
/// crate version from ever being reclaimed.
#[inline(never)]
fn scrub_stack() {
    const SCRUB: u64 = 8 * 1024;
    let rsp: u64;
    // SAFETY: reads the stack pointer; no memory is touched.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack)) };
    let floor = current_stack_bounds().0;
    let top = rsp & !7;
    let start = top.saturating_sub(SCRUB).max(floor);
    if start >= top {
        return;
    }
    // SAFETY: `[start, top)` lies below this function's stack pointer and above the stack's
    // lowest mapped address: dead stack space of the running task, which nothing else uses (no
    // red zone in the kernel; an interrupt pushes its frame below the interrupted stack
    // pointer, and anything it leaves there is dead too). `rep stosq` makes no call, so it
    // can zero right up to the stack pointer: the caller's next frame goes there.
    unsafe {
        core::arch::asm!(
            "rep stosq",
            inout("rdi") start => _,
            inout("rcx") (top - start) / 8 => _,
            in("rax") 0u64,
            options(nostack),
        )
    };
}
