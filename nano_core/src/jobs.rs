//! Jobs on parked CPUs, guarded: a CPU exception or a panic in a job abandons the job, not the
//! machine.
//!
//! A parked CPU runs plain jobs (`kernel::park_cpu`). Every exception handler and the panic
//! handler were written for the boot CPU, where a fault belongs to the running task: on a
//! parked CPU they would have blamed, and unwound, whatever task the boot CPU was running, on
//! the wrong CPU's stack. So before anything else, every exception gate
//! ([`crate::exception_table!`]) and the panic handler ask [`fault_gate`] / [`panic_gate`]
//! whether they run on a parked CPU. If so, and a job runs there, the job is *escaped*: the
//! registers saved when it began are put back and the job's frames skipped (their destructors
//! do not run: a job holds nothing that needs them), the job's mailbox says it was abandoned and
//! why, and the CPU parks again. A fault on a parked CPU outside any job (in nano_core's park
//! loop or an IPI handler) stops that CPU for good, reported; the others go on.
//!
//! On a parked CPU that runs tasks (all do, once the smp crate made their park loops idle
//! tasks) a fault outside a job in one of its tasks is that task's, and goes to the task layer
//! as on the boot CPU ([`RUNS_A_TASK_HOOK`]); one in its idle task still stops the CPU.
//!
//! The CPU is known by its GS base, which each parked CPU points at its [`CpuLocal`] when it
//! arrives; the boot CPU's stays 0. Nothing else uses GS (thread pointers are FS).

use crate::serial::{StackText, write_whole_from_parked_cpu};
use core::fmt::Write as _;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use x86_64::registers::model_specific::GsBase;

/// What a parked CPU keeps for itself, found through its GS base. The escape reads
/// `job_context` at offset 8 (`gs:[8]`): the layout is the assembly's.
#[repr(C)]
pub struct CpuLocal {
    index: AtomicU64,
    /// The running job's [`JobContext`] (0: no job).
    job_context: AtomicU64,
    /// The CPU stopped after an exception outside any job.
    stopped: AtomicBool,
    /// Jobs abandoned on this CPU so far.
    abandoned: AtomicU64,
    /// The CPU runs tasks (its park loop is its idle task): a fault outside a job is then its
    /// running task's, for the task layer.
    runs_tasks: AtomicBool,
}

/// One [`CpuLocal`] per CPU index (0, the boot CPU, has none in use).
static LOCALS: [CpuLocal; crate::kernel::MAX_CPUS] = [const {
    CpuLocal {
        index: AtomicU64::new(0),
        job_context: AtomicU64::new(0),
        stopped: AtomicBool::new(false),
        abandoned: AtomicU64::new(0),
        runs_tasks: AtomicBool::new(false),
    }
}; crate::kernel::MAX_CPUS];

/// Registers saved when a job begins (callee-saved ones and the stack pointer), and whether it
/// was escaped. Read by `delos_job_escape`: the layout is the assembly's.
#[repr(C)]
struct JobContext {
    regs: crate::saved::CalleeSaved,
    escaped: u64,
}

/// Why a job was abandoned (kept in the CPU's mailbox for the poster).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobFault {
    /// The exception's name, or "panic".
    pub what: &'static str,
    /// Where: the faulting instruction (for a panic, 0).
    pub rip: u64,
    /// The faulting address of a page fault.
    pub address: Option<u64>,
}

unsafe extern "C" {
    fn delos_job_run(ctx: *mut JobContext, f: usize, arg: u64) -> u64;
    fn delos_job_escape() -> !;
}

core::arch::global_asm!(
    ".pushsection .text.delos_job_run,\"ax\",@progbits",
    ".globl delos_job_run",
    ".type delos_job_run,@function",
    // rdi = context, rsi = the job (fn(u64) -> u64), rdx = its argument; returns its result.
    "delos_job_run:",
    ".cfi_startproc",
    crate::asm_frame_enter!(),
    crate::save_callee_saved!("rdi"),
    "mov rdi, rsi",
    "mov rsi, rdx",
    "call {call_job}",
    "pop rbp",
    ".cfi_def_cfa rsp, 8",
    "ret",
    ".cfi_endproc",
    ".size delos_job_run, . - delos_job_run",
    ".popsection",
    ".pushsection .text.delos_job_escape,\"ax\",@progbits",
    ".globl delos_job_escape",
    ".type delos_job_escape,@function",
    // Entered by the exception's iretq (on the job's saved stack pointer) or called from the
    // panic handler: makes delos_job_run return 0, with the context marked escaped.
    "delos_job_escape:",
    "cli",
    "mov rdi, qword ptr gs:[8]",
    crate::restore_callee_saved!("rdi"),
    "mov qword ptr [rdi + 56], 1",
    "xor eax, eax",
    "pop rbp",
    "ret",
    ".size delos_job_escape, . - delos_job_escape",
    ".popsection",
    call_job = sym call_job,
);

/// Calls the job with the Rust ABI (the assembly calls this with the C ABI).
extern "C" fn call_job(f: usize, arg: u64) -> u64 {
    // SAFETY: only `Mailbox::post` stores a job, and it stores a `fn(u64) -> u64`.
    let f = unsafe { core::mem::transmute::<usize, fn(u64) -> u64>(f) };
    f(arg)
}

/// Points this CPU's GS base at its [`CpuLocal`] (a parked CPU, once, on arrival).
pub(crate) fn arrive(index: usize) {
    let local = &LOCALS[index];
    local.index.store(index as u64, Ordering::Relaxed);
    GsBase::write(x86_64::VirtAddr::from_ptr(local));
}

/// This CPU's [`CpuLocal`] if it is a parked CPU (its GS base set), else `None` (the boot CPU).
fn this_cpu() -> Option<&'static CpuLocal> {
    let base = GsBase::read().as_u64();
    let first = LOCALS.as_ptr() as u64;
    let size = core::mem::size_of::<CpuLocal>() as u64;
    let offset = base.checked_sub(first)?;
    (offset.is_multiple_of(size)).then(|| LOCALS.get((offset / size) as usize)).flatten()
}

/// This CPU's index: 0 on the boot CPU, the index it parked with on the others.
pub fn this_cpu_index() -> usize {
    this_cpu().map_or(0, |l| l.index.load(Ordering::Relaxed) as usize)
}

/// Whether this CPU is running a job now (the boot CPU never does).
pub fn in_job_here() -> bool {
    this_cpu().is_some_and(|l| l.job_context.load(Ordering::Acquire) != 0)
}

/// Whether this CPU (one that runs tasks) runs one of its tasks now, not its idle task: set by
/// the task layer. A fault in the idle task — the park loop, an IPI handler — stops the CPU as
/// it did before the CPU ran tasks.
pub static RUNS_A_TASK_HOOK: crate::hooks::Hook<fn() -> bool> = crate::hooks::Hook::new("jobs::runs_a_task");

fn runs_a_task_here(local: &CpuLocal) -> bool {
    local.runs_tasks.load(Ordering::Acquire) && RUNS_A_TASK_HOOK.get().is_none_or(|f| f())
}

/// Marks parked CPU `index` as one that runs tasks (its park loop became its idle task): a
/// fault or panic there outside a job is its running task's, which the gates leave to the
/// task layer.
pub fn set_runs_tasks(index: usize) {
    if let Some(l) = LOCALS.get(index) {
        l.runs_tasks.store(true, Ordering::Release);
    }
}

/// Whether CPU `index` runs tasks: the boot CPU always, a parked CPU once [`set_runs_tasks`].
pub fn runs_tasks(index: usize) -> bool {
    index == 0 || LOCALS.get(index).is_some_and(|l| l.runs_tasks.load(Ordering::Acquire))
}

/// Runs job `f(arg)` on this parked CPU: its result, or why it was abandoned.
pub(crate) fn run(index: usize, f: usize, arg: u64) -> Result<u64, ()> {
    let local = &LOCALS[index];
    let mut ctx = JobContext { regs: crate::saved::CalleeSaved::default(), escaped: 0 };
    local.job_context.store(&raw mut ctx as u64, Ordering::Release);
    // SAFETY: `delos_job_run` saves the callee-saved registers into `ctx` (live until this
    // function returns) and calls the job; an escape puts them back and returns here.
    let r = unsafe { delos_job_run(&raw mut ctx, f, arg) };
    local.job_context.store(0, Ordering::Release);
    // SAFETY: read through a volatile pointer: after an escape, `ctx` was written by code the
    // compiler did not see return here.
    if unsafe { core::ptr::read_volatile(&raw const ctx.escaped) } != 0 {
        local.abandoned.fetch_add(1, Ordering::Release);
        return Err(());
    }
    Ok(r)
}

/// How many jobs CPU `index` has abandoned: work a job claimed and did not finish can be
/// taken over once this moves (see `trust::hash_ahead`).
pub fn abandoned(index: usize) -> u64 {
    LOCALS.get(index).map_or(0, |l| l.abandoned.load(Ordering::Acquire))
}

/// Whether parked CPU `index` stopped after an exception outside any job.
pub fn stopped(index: usize) -> bool {
    LOCALS.get(index).is_some_and(|l| l.stopped.load(Ordering::Acquire))
}

/// A parked CPU's fault report, written whole (a panic message longer than this is cut).
type Report = StackText<512>;

/// How a report of a fault in a job ends.
const ABANDONED: &str = " in a job: the job is abandoned and the CPU parks again";

/// Called first by every exception gate. On the boot CPU, and outside a job on a parked CPU
/// that runs tasks: `false` (the gate goes on). On a parked CPU in a job: the job is abandoned
/// (the frame is sent to the escape) and `true`. On a parked CPU that runs no tasks, outside a
/// job: the CPU stops for good.
pub fn fault_gate(name: &'static str, vector: u8, error: Option<u64>, frame: &mut x86_64::structures::idt::InterruptStackFrame) -> bool {
    let Some(local) = this_cpu() else { return false };
    let index = local.index.load(Ordering::Relaxed);
    let rip = frame.instruction_pointer.as_u64();
    let address = (vector == 14).then(x86_64::registers::control::Cr2::read_raw);
    let ctx = local.job_context.load(Ordering::Acquire);
    // Outside a job on a CPU that runs tasks: a task's fault, or its idle task's, is the
    // exceptions crate's and the task layer's, as on the boot CPU. The idle task's too: its
    // timer tick runs task code (the scheduler's step), and damage there is repaired and run
    // again like anywhere else; only a fault that is not damage stops the CPU (the task
    // layer's `stop_this_cpu`). Before, this gate stopped the CPU at once: a flip in
    // `task::step::run` that every CPU hit stopped the AP whose tick came while it idled
    // (`smp_damage_hit_by_several_cpus_at_once_runs_again_on_each`, 2 runs in 5 on 2026-12-08).
    if ctx == 0 && local.runs_tasks.load(Ordering::Acquire) {
        return false;
    }
    let mut report = Report::new();
    let _ = write!(report, "\n!!! CPU {index}: {name} (vector {vector}");
    if let Some(e) = error {
        let _ = write!(report, ", error code {e:#x}");
    }
    let _ = write!(report, ") at {rip:#x}");
    if let Some(a) = address {
        let _ = write!(report, ", faulting address {a:#x}");
    }
    if ctx == 0 {
        stop(local, index, report)
    }
    let _ = writeln!(report, "{ABANDONED}");
    write_whole_from_parked_cpu(report.as_str());
    crate::kernel::MAILBOXES[index as usize].note_abandoned(JobFault { what: name, rip, address });
    // SAFETY: `ctx` is the live context of the job this CPU runs (cleared when it ends); its
    // saved stack pointer is the park loop's own stack, where the escape continues.
    unsafe {
        let rsp = (*(ctx as *const JobContext)).regs.rsp;
        frame.as_mut().update(|f| {
            f.instruction_pointer = x86_64::VirtAddr::new(delos_job_escape as *const () as u64);
            f.stack_pointer = x86_64::VirtAddr::new(rsp);
        });
    }
    true
}

/// Called first by the panic handler: on a parked CPU, the job is abandoned (or, outside a job,
/// the CPU stops); on the boot CPU it returns.
pub fn panic_gate(info: &core::panic::PanicInfo<'_>) {
    let Some(local) = this_cpu() else { return };
    if local.job_context.load(Ordering::Acquire) == 0 && runs_a_task_here(local) {
        return; // a task's panic: the task layer's
    }
    let index = local.index.load(Ordering::Relaxed);
    let mut report = Report::new();
    let _ = write!(report, "\n!!! CPU {index}: panic");
    if let Some(loc) = info.location() {
        let _ = write!(report, " at {}:{}:{}", loc.file(), loc.line(), loc.column());
    }
    let _ = write!(report, ": {}", info.message());
    if local.job_context.load(Ordering::Acquire) == 0 {
        stop(local, index, report)
    }
    let _ = writeln!(report, "{ABANDONED}");
    write_whole_from_parked_cpu(report.as_str());
    crate::kernel::MAILBOXES[index as usize].note_abandoned(JobFault { what: "panic", rip: 0, address: None });
    // SAFETY: a job runs on this CPU (its context is set): the escape returns from its
    // `delos_job_run`, skipping the panicking frames.
    unsafe { delos_job_escape() }
}

/// Stops this parked CPU for good after an exception or panic in its idle task (outside any
/// job, outside any task): what the task layer does with a fault it cannot blame on a task.
/// On the boot CPU it returns (the caller's fault is the kernel's).
pub fn stop_this_cpu(what: core::fmt::Arguments<'_>) {
    let Some(local) = this_cpu() else { return };
    let index = local.index.load(Ordering::Relaxed);
    let mut report = Report::new();
    let _ = write!(report, "\n!!! CPU {index}: {what} in its idle task");
    stop(local, index, report)
}

/// Stops this parked CPU for good after an exception outside any job: nothing it was doing can
/// be resumed or blamed. It halts with interrupts off (only an NMI or INIT wakes it).
fn stop(local: &CpuLocal, index: u64, mut report: Report) -> ! {
    let _ = writeln!(report, " outside any job: CPU {index} stops; the others go on");
    write_whole_from_parked_cpu(report.as_str());
    local.stopped.store(true, Ordering::Release);
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
