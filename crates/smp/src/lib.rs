//! smp: finds the machine's CPUs and brings the application processors (APs) up.
//!
//! The CPUs come from ACPI's MADT (read with the `acpi` crate). Each AP is started with the
//! INIT–SIPI–SIPI sequence through the boot CPU's local APIC; it begins in real mode at a
//! trampoline copied to physical page [`TRAMPOLINE`], which switches to protected mode, turns
//! on long mode with the kernel's page tables and calls [`ap_entry`] on a stack of its own.
//! There each AP loads its own GDT and TSS (with its own interrupt stacks) and the kernel's IDT,
//! says it has arrived, and parks in nano_core (`park_cpu`: halted, woken only by IPIs —
//! [`ping`] measures their round trip). captain
//! calls [`init`] during boot, before the shell (INIT goes to every AP at once, so the
//! architecture's 10 ms wait is paid once).
//!
//! **Every AP runs tasks** once it is up (up to `task::TASK_CPUS`): the boot CPU makes an idle
//! task for it (`task::prepare_cpu`) and a job on the AP makes its park loop that idle task and
//! starts its local APIC timer at [`AP_TICK_HZ`] (`become_task_cpu`); tasks are put on it with
//! `task::spawn_on` (the shell's `on CPU CMD`). A parked CPU also runs plain jobs posted to its
//! mailbox ([`run_on`], [`post`]) when its idle task runs, which is how `cpus --speedup`
//! measures parallel throughput and how the parked CPUs help compile WASM. This crate owns the
//! local APIC: it sends the IPIs that `nano_core::tlb` (TLB shootdowns, [`SHOOTDOWN_VECTOR`])
//! and `nano_core::stw` (stopping the world for a swap, [`STOP_VECTOR`]) ask for, to any CPU,
//! the boot CPU included. The handlers that sit on task stacks (the stop IPI's, the AP timer's)
//! live in nano_core (`nano_core::ipi`), so that a swap of this crate never finds its old code
//! on a stopped or preempted task's stack. An AP that does not answer is reported and left
//! alone; the system runs on the others. Everything an AP needs to start is allocated by the
//! boot CPU before it starts.
#![no_std]
#![feature(abi_x86_interrupt)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

mod acpi_tables;
mod ioapic;

pub use ioapic::{IsaRoute, route_isa_irq, route_isa_irq_as_nmi, unroute};

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use nano_core::paging::{self, Perms};
use spin::Mutex;
use x86_64::VirtAddr;
use x86_64::structures::DescriptorTablePointer;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

pub use acpi_tables::{Topology, TopologyError, topology};

/// Physical (and, while APs start, virtual) address of the real-mode trampoline: below 1 MiB,
/// page aligned, in the first MiB that the frame allocator never hands out.
pub const TRAMPOLINE: u64 = 0x8000;
/// Pages of each AP's kernel stack: 256 KiB, for jobs as deep as a Cranelift compile (a WASM
/// compile helper).
const AP_STACK_PAGES: u64 = 64;
/// How long an AP has to arrive after its second start-up IPI.
const ARRIVAL_TIMEOUT_US: u64 = 500_000;

// The trampoline, position-dependent at TRAMPOLINE: every absolute address in it is
// TRAMPOLINE + (label - start), a constant the assembler computes. The slots at its end are
// filled by the boot CPU before each start.
core::arch::global_asm!(
    r#"
.section .text.delos_smp_trampoline, "ax"
.global delos_smp_trampoline_start
.global delos_smp_trampoline_end
.global delos_smp_slot_cr3
.global delos_smp_slot_stack
.global delos_smp_slot_entry
.global delos_smp_slot_arg
.code16
delos_smp_trampoline_start:
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl ({t} + delos_smp_gdt_ptr - delos_smp_trampoline_start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $({t} + 1f - delos_smp_trampoline_start)
.code32
1:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl %cr4, %eax
    orl $((1 << 5) | (1 << 9) | (1 << 10)), %eax
    movl %eax, %cr4
    movl ({t} + delos_smp_slot_cr3 - delos_smp_trampoline_start), %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx
    rdmsr
    orl $((1 << 8) | (1 << 11)), %eax
    wrmsr
    movl %cr0, %eax
    andl $~(1 << 2), %eax
    orl $((1 << 31) | (1 << 16) | (1 << 1) | 1), %eax
    movl %eax, %cr0
    ljmp $0x18, $({t} + 2f - delos_smp_trampoline_start)
.code64
2:
    xorl %eax, %eax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movq ({t} + delos_smp_slot_stack - delos_smp_trampoline_start), %rsp
    xorl %ebp, %ebp
    movq ({t} + delos_smp_slot_arg - delos_smp_trampoline_start), %rdi
    movq ({t} + delos_smp_slot_entry - delos_smp_trampoline_start), %rax
    callq *%rax
3:
    cli
    hlt
    jmp 3b
.balign 8
delos_smp_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF
    .quad 0x00CF92000000FFFF
    .quad 0x00209A0000000000
delos_smp_gdt_ptr:
    .short delos_smp_gdt_ptr - delos_smp_gdt - 1
    .long {t} + delos_smp_gdt - delos_smp_trampoline_start
.balign 8
delos_smp_slot_cr3: .quad 0
delos_smp_slot_stack: .quad 0
delos_smp_slot_entry: .quad 0
delos_smp_slot_arg: .quad 0
delos_smp_trampoline_end:
.code64
"#,
    t = const TRAMPOLINE,
    options(att_syntax)
);

unsafe extern "C" {
    static delos_smp_trampoline_start: u8;
    static delos_smp_trampoline_end: u8;
    static delos_smp_slot_cr3: u8;
    static delos_smp_slot_stack: u8;
    static delos_smp_slot_entry: u8;
    static delos_smp_slot_arg: u8;
}

/// What a CPU is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuState {
    /// The boot CPU: runs tasks (ordered by the swappable policy), never jobs.
    Boot,
    /// Came up: runs its tasks, and posted jobs in its idle time (halted when there are none).
    Parked,
    /// Did not come up; the reason.
    Failed(String),
}

/// One CPU of the machine.
#[derive(Debug, Clone)]
pub struct Cpu {
    /// Index (0 is the boot CPU).
    pub index: usize,
    /// Its local APIC id.
    pub apic_id: u32,
    /// Its state.
    pub state: CpuState,
    /// Microseconds from its first start-up IPI to its arrival in `ap_entry`.
    pub start_us: Option<u64>,
}

static CPUS: Mutex<Vec<Cpu>> = Mutex::new(Vec::new());
/// Where the local APIC's registers are mapped (each CPU sees its own APIC there); 0 before
/// [`init`] mapped them.
static LAPIC_VA: AtomicU64 = AtomicU64::new(0);
/// The interrupt vector of a ping (see [`ping`]).
pub const PING_VECTOR: u8 = 0xF0;
/// Pings answered, by any CPU.
static PONGS: AtomicU64 = AtomicU64::new(0);

/// The interrupt vector of a TLB shootdown (see `nano_core::tlb`).
pub const SHOOTDOWN_VECTOR: u8 = 0xF1;
/// The interrupt vector of a parked CPU's local APIC timer: its task tick.
pub const TIMER_VECTOR: u8 = 0xF2;
/// The interrupt vector that stops the world (see `nano_core::stw`).
pub const STOP_VECTOR: u8 = 0xF3;
/// The vector of the IPI that wakes the boot CPU from a halt ([`wake_cpu`]).
pub const WAKE_VECTOR: u8 = 0xF4;
/// Timer ticks per second on a parked CPU that runs tasks (the boot CPU's tick is 100 Hz
/// too).
const AP_TICK_HZ: u64 = 100;
/// Local APIC timer counts per millisecond (divide by 16), measured against the TSC at boot.
static LAPIC_TIMER_PER_MS: AtomicU64 = AtomicU64::new(0);
/// Per CPU index: the top of its boot stack (its idle task's stack when it runs tasks).
static AP_STACK_TOP: [AtomicU64; nano_core::kernel::MAX_CPUS] = [const { AtomicU64::new(0) }; nano_core::kernel::MAX_CPUS];
/// The APIC id of each CPU index, and which indexes are parked CPUs (bit `i` for index `i`):
/// what the shootdown sender reads, which may run where [`CPUS`] is held (in an NMI), so
/// without a lock.
static APIC_OF: [AtomicU32; nano_core::kernel::MAX_CPUS] = [const { AtomicU32::new(0) }; nano_core::kernel::MAX_CPUS];
static PARKED_MASK: AtomicU64 = AtomicU64::new(0);
/// Per CPU index: set while the CPU writes an IPI to its local APIC (each CPU has its own): an
/// NMI that wants to send one then sends nothing, rather than change the destination of the
/// half-written one.
static ICR_BUSY: [AtomicBool; nano_core::kernel::MAX_CPUS] = [const { AtomicBool::new(false) }; nano_core::kernel::MAX_CPUS];

/// A TLB shootdown's handler, on any CPU: flushes its translations and says so.
extern "x86-interrupt" fn shootdown(_frame: x86_64::structures::idt::InterruptStackFrame) {
    nano_core::tlb::on_shootdown_ipi();
    end_of_interrupt();
}

/// The sender behind `nano_core::stw::SEND_STOP`: the stop IPI to every CPU in `mask` that is
/// up; the mask of those sent.
fn send_stops(mask: u64) -> Option<u64> {
    send_fixed_ipis(mask, STOP_VECTOR)
}

/// A fixed IPI of `vector` to every CPU in `mask` that is up (a parked CPU, or the boot CPU);
/// the mask of those sent, or `None` if this CPU was interrupted while writing another IPI.
fn send_fixed_ipis(mask: u64, vector: u8) -> Option<u64> {
    let busy = &ICR_BUSY[nano_core::jobs::this_cpu_index()];
    if busy.swap(true, Ordering::Acquire) {
        return None;
    }
    let lapic = LocalApic { base: LAPIC_VA.load(Ordering::Acquire) };
    let targets = mask & (PARKED_MASK.load(Ordering::Acquire) | 1);
    let sent = (0..APIC_OF.len().min(64))
        .filter(|&i| targets & (1 << i) != 0)
        .filter(|&i| lapic.ipi(APIC_OF[i].load(Ordering::Acquire), u32::from(vector) | 0x4000).is_ok())
        .fold(0u64, |m, i| m | (1 << i));
    busy.store(false, Ordering::Release);
    Some(sent)
}

/// Sends an NMI to CPU `index` (`nano_core::ipi::SEND_NMI`, the watchdog's, from its NMI on the
/// boot CPU); whether it was sent.
fn send_nmi(index: usize) -> bool {
    if index >= 64 || PARKED_MASK.load(Ordering::Acquire) & (1 << index) == 0 {
        return false;
    }
    let busy = &ICR_BUSY[nano_core::jobs::this_cpu_index()];
    if busy.swap(true, Ordering::Acquire) {
        return false; // this CPU was interrupted writing another IPI: next time
    }
    let lapic = LocalApic { base: LAPIC_VA.load(Ordering::Acquire) };
    // Delivery mode NMI (0b100), level assert; the vector is ignored.
    let sent = lapic.ipi(APIC_OF[index].load(Ordering::Acquire), 0x4400).is_ok();
    busy.store(false, Ordering::Release);
    sent
}

/// Wakes CPU `index` so that it looks for runnable tasks (`nano_core::kernel::WAKE_CPU_HOOK`):
/// a parked CPU by a ping (its park loop then looks at its mailbox too), the boot CPU by an IPI
/// of [`WAKE_VECTOR`], which ends a halt of a task waiting there (`task::wait_until`) — without
/// it, a task made runnable there or a wait's condition met by another CPU waited for the boot
/// CPU's next tick.
fn wake_cpu(index: usize) {
    let parked = PARKED_MASK.load(Ordering::Acquire);
    if index == 0 && parked != 0 {
        let _ = send_fixed(APIC_OF[0].load(Ordering::Acquire), WAKE_VECTOR);
    } else if index < 64 && parked & (1 << index) != 0 {
        let _ = send_ping(APIC_OF[index].load(Ordering::Acquire));
    }
}

/// A wake-up's handler (see [`wake_cpu`]): only the end of interrupt; the halt it ended was the
/// point.
extern "x86-interrupt" fn woken(_frame: x86_64::structures::idt::InterruptStackFrame) {
    end_of_interrupt();
}

/// Measures the local APIC timer's rate against the TSC (on the boot CPU, its timer masked):
/// counts per millisecond at divide 16.
fn calibrate_lapic_timer(lapic: &LocalApic) -> u64 {
    const MS: u64 = 2;
    lapic.write(LocalApic::TIMER_DIVIDE, 0b0011);
    lapic.write(LocalApic::LVT_TIMER, (1 << 16) | u32::from(TIMER_VECTOR));
    lapic.write(LocalApic::TIMER_INITIAL, u32::MAX);
    let t0 = nano_core::time::rdtsc();
    let wait = MS * nano_core::time::tsc_per_ms().max(1);
    while nano_core::time::rdtsc() - t0 < wait {
        core::hint::spin_loop();
    }
    let left = lapic.read(LocalApic::TIMER_CURRENT);
    lapic.write(LocalApic::TIMER_INITIAL, 0);
    (u64::from(u32::MAX - left) / MS).max(1)
}

/// A job, on a parked CPU: makes it run tasks (`arg`: its idle task's id, from
/// `task::prepare_cpu`) and starts its timer ticks.
fn become_task_cpu(idle: u64) -> u64 {
    let index = nano_core::jobs::this_cpu_index();
    let top = AP_STACK_TOP[index].load(Ordering::Acquire);
    task::start_on_this_cpu(idle, (top - AP_STACK_PAGES * 4096, top));
    start_periodic_timer(&LocalApic { base: LAPIC_VA.load(Ordering::Acquire) }, TIMER_VECTOR, AP_TICK_HZ);
    1
}

/// Starts this CPU's local APIC timer: periodic, `hz` interrupts a second of `vector` (divide
/// 16, at the rate [`calibrate_lapic_timer`] measured).
fn start_periodic_timer(lapic: &LocalApic, vector: u8, hz: u64) {
    let count = LAPIC_TIMER_PER_MS.load(Ordering::Acquire) * 1000 / hz;
    lapic.write(LocalApic::TIMER_DIVIDE, 0b0011);
    lapic.write(LocalApic::LVT_TIMER, (1 << 17) | u32::from(vector));
    lapic.write(LocalApic::TIMER_INITIAL, count.clamp(1, u64::from(u32::MAX)) as u32);
}

/// Makes every parked CPU (up to `task::TASK_CPUS`) run tasks: each gets an idle task (its park
/// loop) and a local APIC timer at [`AP_TICK_HZ`]. From here `task::spawn_on` can put tasks on
/// them. A CPU that cannot is reported and stays a plain parked CPU.
fn start_tasks_on_parked_cpus(lapic: &LocalApic) {
    LAPIC_TIMER_PER_MS.store(calibrate_lapic_timer(lapic), Ordering::Release);
    nano_core::ipi::set_eoi_register(LAPIC_VA.load(Ordering::Acquire) + LocalApic::EOI);
    nano_core::ipi::AP_TICK_HOOK.set(task::ap_tick);
    exceptions::set_interrupt_handler(TIMER_VECTOR, nano_core::ipi::ap_timer_handler);
    exceptions::set_interrupt_handler(STOP_VECTOR, nano_core::ipi::stop_handler);
    nano_core::kernel::WAKE_CPU_HOOK.set(wake_cpu);
    nano_core::ipi::SEND_NMI.set(send_nmi);
    nano_core::stw::SEND_STOP.set(send_stops);
    let mut started = 0;
    for index in parked() {
        let r = task::prepare_cpu(index).map_err(|e| e.to_string()).and_then(|idle| run_on(index, become_task_cpu, idle));
        match r {
            Ok(_) => started += 1,
            Err(e) => log::warn!("smp: CPU {index} runs no tasks: {e}"),
        }
    }
    log::info!(
        "smp: {started} parked CPUs run tasks too (local APIC timer at {AP_TICK_HZ} Hz, {} counts a ms)",
        LAPIC_TIMER_PER_MS.load(Ordering::Relaxed)
    );
}

/// Signals end of interrupt to this CPU's local APIC (an IPI handler's last step).
fn end_of_interrupt() {
    let base = LAPIC_VA.load(Ordering::Acquire);
    if base != 0 {
        LocalApic { base }.write(LocalApic::EOI, 0);
    }
}

/// The sender behind `nano_core::tlb::SEND_SHOOTDOWN`: a shootdown IPI to every CPU in `mask`
/// that is up (a parked CPU, or the boot CPU); the mask of those sent, or `None` if this CPU was
/// interrupted while writing another IPI.
fn send_shootdowns(mask: u64) -> Option<u64> {
    send_fixed_ipis(mask, SHOOTDOWN_VECTOR)
}

/// What [`stale_translation_check`] read on the parked CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleCheck {
    /// The word the page held first (the CPU read it, so it caches the translation).
    pub first: u64,
    /// The word the same address holds after it was mapped to another frame.
    pub second: u64,
    /// What the CPU read there the second time: `second`, unless it used its old translation.
    pub read: u64,
}

/// A word at `addr` (a job for a parked CPU).
fn read_word(addr: u64) -> u64 {
    // SAFETY: the caller (`stale_translation_check`) keeps `addr` mapped while the job runs.
    unsafe { (addr as *const u64).read_volatile() }
}

/// Maps a page, has parked CPU `index` read it (so that it caches the translation), maps the
/// same address to another frame, and has the CPU read it again. With `shootdown` false the
/// remap sends no shootdown (the CPU flushes nothing): the check that the test of the shootdown
/// can fail. Frames and address space are given back.
pub fn stale_translation_check(index: usize, shootdown: bool) -> Result<StaleCheck, String> {
    const FIRST: u64 = 0x1111_1111_1111_1111;
    const SECOND: u64 = 0x2222_2222_2222_2222;
    let va = paging::alloc_region(1).map_err(|e| format!("address space: {e}"))?;
    let frame_a = paging::map_new(va, Perms::ReadWrite).map_err(|e| format!("mapping: {e}"))?;
    // SAFETY: `va` was just mapped read-write to a fresh frame that only this function uses.
    unsafe { (va as *mut u64).write_volatile(FIRST) };
    let mut frames = alloc::vec![frame_a];
    // Without shootdowns from before the first read to the end: no round that another task's
    // change sends meanwhile may flush the CPU either (those changes go without one too — this
    // mode is a deliberate fault, for the test).
    if !shootdown {
        nano_core::tlb::SEND_SHOOTDOWN.clear();
    }
    let result = (|| {
        let first = run_on(index, read_word, va)?;
        let remapped = paging::unmap(va).and_then(|_| paging::map_new(va, Perms::ReadWrite));
        frames.push(remapped.map_err(|e| format!("remapping: {e}"))?);
        // SAFETY: as above, for the new frame.
        unsafe { (va as *mut u64).write_volatile(SECOND) };
        let read = run_on(index, read_word, va)?;
        Ok(StaleCheck { first, second: SECOND, read })
    })();
    if !shootdown && PARKED_MASK.load(Ordering::Acquire) != 0 {
        nano_core::tlb::SEND_SHOOTDOWN.set(send_shootdowns);
    }
    let _ = paging::unmap(va);
    x86_64::instructions::interrupts::without_interrupts(|| {
        for f in frames {
            // SAFETY: both frames were mapped only at `va`, which is unmapped now, and the parked
            // CPU's job that read it has finished (with or without its old translation, it reads
            // nothing more).
            unsafe { nano_core::frames::FRAMES.lock().free(f) };
        }
    });
    result
}

/// What [`shootdown_rounds`] measured, TSC cycles per permission change.
#[derive(Debug, Clone, Default)]
pub struct RoundCost {
    /// Changes that sent a round (IPIs to every parked CPU, then the wait until each flushed).
    pub with_round: Vec<u64>,
    /// The same change, interleaved with those, made with the round left out.
    pub without: Vec<u64>,
    /// Rounds the timed changes sent (one per change with a round).
    pub rounds: u64,
    /// Parked CPUs that did not flush within the timeout, in those rounds.
    pub timeouts: u64,
}

/// The cost of `n` shootdown rounds with the parked CPUs idle (it waits for their jobs to end
/// first): a page of its own has a
/// permission taken away (and given back) `n` times with a round, and `n` times without one,
/// interleaved. Without a round is safe here: nothing but this function uses the page, and
/// interrupts are off then, so no other change can go without its round meanwhile.
pub fn shootdown_rounds(n: u64) -> Result<RoundCost, String> {
    // Idle first: a CPU still at a job (the boot's hashing ahead) is sent no IPI, it owes a
    // flush instead, and the rounds would not be measured. A job of nothing on each waits.
    for index in parked() {
        run_on(index, core::convert::identity, 0)?;
    }
    let page = paging::Mapping::new(1, Perms::ReadWrite).map_err(|e| format!("mapping: {e}"))?;
    let mut cost = RoundCost::default();
    // Counted with interrupts off around each change: only its own round, none of another task.
    let (rounds, timeouts) = (core::cell::Cell::new(0u64), core::cell::Cell::new(0u64));
    let timed = |with_round: bool| -> Result<u64, String> {
        x86_64::instructions::interrupts::without_interrupts(|| {
            if !with_round {
                nano_core::tlb::SEND_SHOOTDOWN.clear();
            }
            let before = nano_core::tlb::stats();
            let t0 = nano_core::time::rdtsc();
            let r = page.protect(0, 1, Perms::Read);
            let dt = nano_core::time::rdtsc() - t0;
            let after = nano_core::tlb::stats();
            rounds.set(rounds.get() + after.rounds - before.rounds);
            timeouts.set(timeouts.get() + after.timeouts - before.timeouts);
            if !with_round {
                nano_core::tlb::SEND_SHOOTDOWN.set(send_shootdowns);
            }
            r.and_then(|()| page.protect(0, 1, Perms::ReadWrite)).map_err(|e| format!("protecting: {e}"))?;
            Ok(dt)
        })
    };
    let mut result = Ok(());
    for _ in 0..n {
        match timed(true).and_then(|a| Ok((a, timed(false)?))) {
            Ok((a, b)) => {
                cost.with_round.push(a);
                cost.without.push(b);
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    cost.rounds = rounds.get();
    cost.timeouts = timeouts.get();
    result.map(|()| cost)
}

/// A ping's handler, on the CPU pinged: counts it and signals end of interrupt.
extern "x86-interrupt" fn pong(_frame: x86_64::structures::idt::InterruptStackFrame) {
    if FAULT_IN_PONG.load(Ordering::Relaxed) == nano_core::jobs::this_cpu_index() as u64 + 1 {
        FAULT_IN_PONG.store(0, Ordering::Relaxed);
        // SAFETY: deliberately invalid (`cpus --stop`): the read faults, outside any job.
        let v = unsafe { core::ptr::read_volatile(core::hint::black_box(core::ptr::dangling::<u64>())) };
        core::hint::black_box(v);
    }
    PONGS.fetch_add(1, Ordering::AcqRel);
    end_of_interrupt();
}

/// A job that faults or panics on purpose, for `cpus --job-fault`: `kind` 0 reads the
/// never-mapped first page, 1 runs an undefined instruction, 2 calls an address with no code,
/// anything else panics. The job is abandoned (see `nano_core::jobs`); it never returns.
pub fn faulting_job(kind: u64) -> u64 {
    match kind {
        // SAFETY: deliberately invalid: the read faults, and the fault abandons the job.
        0 => unsafe { core::ptr::read_volatile(core::hint::black_box(core::ptr::dangling::<u64>())) },
        1 => {
            // SAFETY: deliberately an undefined instruction: it faults, abandoning the job.
            unsafe { core::arch::asm!("ud2") };
            1
        }
        2 => {
            // SAFETY: none needed for what happens: fetching the first instruction faults (the
            // first page is never mapped), abandoning the job.
            let nowhere: extern "C" fn() = unsafe { core::mem::transmute::<usize, extern "C" fn()>(core::hint::black_box(8)) };
            nowhere();
            2
        }
        _ => panic!("a job panics on purpose (cpus --job-fault panic)"),
    }
}

/// The CPU (index + 1) whose next ping faults in its handler (0: none), for [`stop_by_fault`].
static FAULT_IN_PONG: AtomicU64 = AtomicU64::new(0);

/// Makes parked CPU `index` fault in its ping handler, outside any job (for `cpus --stop`): the
/// CPU stops for good, reported, and the others go on (see `nano_core::jobs`). Returns once it
/// has stopped.
pub fn stop_by_fault(index: usize) -> Result<(), String> {
    let apic_id = parked_apic_id(index)?;
    FAULT_IN_PONG.store(index as u64 + 1, Ordering::Relaxed);
    send_ping(apic_id)?;
    let deadline = nano_core::time::micros_since_entry() + 1_000_000;
    while !nano_core::jobs::stopped(index) {
        if nano_core::time::micros_since_entry() > deadline {
            FAULT_IN_PONG.store(0, Ordering::Relaxed);
            return Err(format!("CPU {index} did not stop within 1 s"));
        }
        task::yield_now();
    }
    Ok(())
}

/// Runs `f(arg)` on parked CPU `index` and waits (yielding) for its result. `f` must be plain
/// computation: on a parked CPU there is no current task, no TLS, no allocation and no unwinding;
/// and it may touch only memory whose mapping stays as it is while it runs (a TLB shootdown does
/// not interrupt a job: the CPU flushes when the job ends, see `nano_core::tlb`).
///
/// A CPU exception or a panic in `f` abandons the job (see `nano_core::jobs`): the error then
/// says what happened, and where.
pub fn run_on(index: usize, f: fn(u64) -> u64, arg: u64) -> Result<u64, String> {
    post(index, f, arg)?.wait()
}

/// A job posted to a parked CPU (see [`post`]).
#[derive(Debug)]
pub struct Pending {
    index: usize,
}

impl Pending {
    /// Waits (yielding) for the job's result, or why it was abandoned.
    pub fn wait(self) -> Result<u64, String> {
        let b = &nano_core::kernel::MAILBOXES[self.index];
        loop {
            match b.outcome() {
                Some(Ok(r)) => return Ok(r),
                Some(Err(f)) => return Err(self.abandoned(&f)),
                None => task::yield_now(),
            }
        }
    }

    /// What a poster is told of an abandoned job, its code named here (the parked CPU reports
    /// only addresses: naming them takes the loader, which it must not).
    fn abandoned(&self, f: &nano_core::jobs::JobFault) -> String {
        let mut s = format!("CPU {}: the job was abandoned: {}", self.index, f.what);
        if f.rip != 0 {
            s.push_str(&format!(" at {:#x} in ", f.rip));
            exceptions::describe(f.rip, &mut |a| s.push_str(&alloc::format!("{a}")));
        }
        if let Some(a) = f.address {
            s.push_str(&format!(" (faulting address {a:#x})"));
        }
        s
    }
}

/// How long [`post`] waits for a parked CPU to finish the job it is running.
const BUSY_WAIT_MS: u64 = 5_000;

/// Posts `f(arg)` to parked CPU `index` and wakes it; the caller collects the result with
/// [`Pending::wait`] (and keeps `f`'s crate referenced until then, by naming it). If the CPU is
/// still running an earlier job (the boot's [`hash_boot_modules_ahead`], or another caller's),
/// waits for it, yielding, up to [`BUSY_WAIT_MS`].
pub fn post(index: usize, f: fn(u64) -> u64, arg: u64) -> Result<Pending, String> {
    let deadline = nano_core::time::micros_since_entry() + BUSY_WAIT_MS * 1000;
    loop {
        if let Some(p) = post_if_idle(index, f, arg)? {
            return Ok(p);
        }
        if nano_core::time::micros_since_entry() > deadline {
            return Err(format!("CPU {index} is still busy after {BUSY_WAIT_MS} ms"));
        }
        task::yield_now();
    }
}

/// Posts `f(arg)` to parked CPU `index` if it is idle (no job running or waiting), and wakes
/// it; an error at once otherwise. For work that the caller can do itself when no CPU helps.
pub fn try_post(index: usize, f: fn(u64) -> u64, arg: u64) -> Result<Pending, String> {
    post_if_idle(index, f, arg)?.ok_or_else(|| format!("CPU {index} is running another job"))
}

/// Posts and wakes if the CPU's mailbox is free: `None` if it is not.
fn post_if_idle(index: usize, f: fn(u64) -> u64, arg: u64) -> Result<Option<Pending>, String> {
    if index == task::current_cpu() {
        // The job would run only when this CPU's idle task does, which never happens while this
        // task waits for it.
        return Err(format!("CPU {index} runs the posting task itself"));
    }
    let apic_id = parked_apic_id(index)?;
    let b = nano_core::kernel::MAILBOXES.get(index).ok_or_else(|| format!("CPU {index} has no mailbox"))?;
    // Interrupts off around the post: two tasks posting to one CPU must not interleave its
    // check for a pending job with the other's stores.
    if !x86_64::instructions::interrupts::without_interrupts(|| b.post(f, arg)) {
        return Ok(None);
    }
    send_ping(apic_id)?;
    Ok(Some(Pending { index }))
}

/// The APIC id of parked CPU `index`.
fn parked_apic_id(index: usize) -> Result<u32, String> {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let cpus = CPUS.lock();
        let cpu = cpus.iter().find(|c| c.index == index).ok_or_else(|| format!("no CPU {index}"))?;
        if nano_core::jobs::stopped(index) {
            return Err(format!("CPU {index} stopped after an exception outside any job"));
        }
        (cpu.state == CpuState::Parked).then_some(cpu.apic_id).ok_or_else(|| format!("CPU {index} is not a parked CPU"))
    })
}

/// Sends a fixed IPI of vector [`PING_VECTOR`] to APIC `apic_id` (a parked CPU: it runs [`pong`],
/// then its mailbox). Interrupts are off while the ICR is written: a task switch between its
/// two halves would let another sender's destination through.
fn send_ping(apic_id: u32) -> Result<(), String> {
    send_fixed(apic_id, PING_VECTOR)
}

/// Sends a fixed IPI of `vector` to APIC `apic_id` (see [`send_ping`]).
fn send_fixed(apic_id: u32, vector: u8) -> Result<(), String> {
    let lapic = LocalApic { base: LAPIC_VA.load(Ordering::Acquire) };
    x86_64::instructions::interrupts::without_interrupts(|| {
        let nested = ICR_BUSY[nano_core::jobs::this_cpu_index()].swap(true, Ordering::Acquire);
        let r = lapic.ipi(apic_id, u32::from(vector) | 0x4000);
        if !nested {
            ICR_BUSY[nano_core::jobs::this_cpu_index()].store(false, Ordering::Release);
        }
        r
    })
}

/// Sends a ping (a fixed IPI, vector [`PING_VECTOR`]) to parked CPU `index` and waits for its
/// handler to run there: the IPI round trip, in TSC cycles. `None` if the CPU is not parked or
/// did not answer within 100 ms.
pub fn ping(index: usize) -> Option<u64> {
    let apic_id = parked_apic_id(index).ok()?;
    let before = PONGS.load(Ordering::Acquire);
    let t0 = nano_core::time::rdtsc();
    send_ping(apic_id).ok()?;
    let limit = 100 * nano_core::time::tsc_per_ms().max(1);
    while PONGS.load(Ordering::Acquire) == before {
        if nano_core::time::rdtsc() - t0 > limit {
            return None;
        }
        core::hint::spin_loop();
    }
    Some(nano_core::time::rdtsc() - t0)
}

/// The index of the last AP that arrived (handshake with the boot CPU).
static ARRIVED: AtomicU64 = AtomicU64::new(0);

/// The indexes of the parked CPUs (the ones that take jobs and IPIs).
pub fn parked() -> Vec<usize> {
    cpus().iter().filter(|c| c.state == CpuState::Parked && !nano_core::jobs::stopped(c.index)).map(|c| c.index).collect()
}

/// The parked CPUs free to help now: not this task's own CPU (a job there would wait for this
/// task to give the CPU up), and running their idle task (a job waits behind their tasks).
pub fn idle_parked() -> Vec<usize> {
    let me = task::current_cpu();
    parked().into_iter().filter(|&c| c != me && task::cpu_is_idle(c)).collect()
}

/// The CPUs found at boot, the boot CPU first (empty before [`init`]).
pub fn cpus() -> Vec<Cpu> {
    x86_64::instructions::interrupts::without_interrupts(|| CPUS.lock().clone())
}

/// What an AP loads on arrival; made by the boot CPU, leaked (the AP keeps it for good).
struct PerCpu {
    index: u64,
    gdt: GlobalDescriptorTable,
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
    idt: DescriptorTablePointer,
}

/// Busy-waits (interrupts keep working).
pub(crate) fn spin_us(us: u64) {
    let end = nano_core::time::micros_since_entry() + us;
    while nano_core::time::micros_since_entry() < end {
        core::hint::spin_loop();
    }
}

/// The local APIC, mapped (at the same address every CPU sees its own).
struct LocalApic {
    base: u64,
}

impl LocalApic {
    const EOI: u64 = 0xB0;
    const SVR: u64 = 0xF0;
    const LVT_TIMER: u64 = 0x320;
    const TIMER_INITIAL: u64 = 0x380;
    const TIMER_CURRENT: u64 = 0x390;
    const TIMER_DIVIDE: u64 = 0x3E0;
    const ICR_LOW: u64 = 0x300;
    const ICR_HIGH: u64 = 0x310;

    fn map(phys: u64) -> Result<LocalApic, String> {
        let va = paging::alloc_region(1).map_err(|e| format!("address space for the local APIC: {e}"))?;
        paging::map(va, phys, Perms::ReadWrite).map_err(|e| format!("mapping the local APIC: {e}"))?;
        Ok(LocalApic { base: va })
    }

    fn read(&self, reg: u64) -> u32 {
        // SAFETY: `base` maps the local APIC's register page; registers are 32-bit, aligned.
        unsafe { ((self.base + reg) as *const u32).read_volatile() }
    }

    fn write(&self, reg: u64, v: u32) {
        // SAFETY: as in `read`.
        unsafe { ((self.base + reg) as *mut u32).write_volatile(v) }
    }

    /// Sends an IPI (`low`: vector, delivery mode, level) to APIC `dest` and waits until the
    /// APIC has sent it.
    fn ipi(&self, dest: u32, low: u32) -> Result<(), String> {
        self.write(Self::ICR_HIGH, dest << 24);
        self.write(Self::ICR_LOW, low);
        let end = nano_core::time::micros_since_entry() + 10_000;
        while self.read(Self::ICR_LOW) & (1 << 12) != 0 {
            if nano_core::time::micros_since_entry() > end {
                return Err(format!("IPI {low:#x} to APIC {dest} stayed pending"));
            }
            core::hint::spin_loop();
        }
        Ok(())
    }
}

/// Where an AP arrives in long mode, on its own stack, with the address of its [`PerCpu`].
extern "C" fn ap_entry(per_cpu: u64) -> ! {
    // SAFETY: the boot CPU passed a leaked, fully built `PerCpu` that only this AP uses.
    let p: &'static PerCpu = unsafe { &*(per_cpu as *const PerCpu) };
    // SAFETY: the GDT is leaked ('static) and its selectors index valid 64-bit descriptors and a
    // TSS that lives for good; the IDT pointer is the kernel's IDT (loaded on the boot CPU).
    unsafe {
        use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
        p.gdt.load_unsafe();
        CS::set_reg(p.code);
        DS::set_reg(p.data);
        ES::set_reg(p.data);
        SS::set_reg(p.data);
        x86_64::instructions::tables::load_tss(p.tss);
        x86_64::instructions::tables::lidt(&p.idt);
    }
    // Software-enable this CPU's local APIC (spurious vector 0xFF) so that IPIs reach it.
    let lapic = LocalApic { base: LAPIC_VA.load(Ordering::Acquire) };
    lapic.write(LocalApic::SVR, lapic.read(LocalApic::SVR) | (1 << 8) | 0xFF);
    ARRIVED.store(p.index, Ordering::Release);
    nano_core::kernel::park_cpu(p.index as usize)
}

/// Builds what AP `index` loads on arrival: its GDT and TSS (interrupt stacks of its own).
fn per_cpu(index: u64) -> Result<&'static PerCpu, String> {
    let df = paging::alloc_stack(4).map_err(|e| format!("double-fault stack: {e}"))?.leak();
    let pf = paging::alloc_stack(8).map_err(|e| format!("page-fault stack: {e}"))?.leak();
    let mut tss = TaskStateSegment::new();
    tss.interrupt_stack_table[nano_core::interrupts::DOUBLE_FAULT_IST as usize] = VirtAddr::new(df);
    tss.interrupt_stack_table[nano_core::interrupts::PAGE_FAULT_IST as usize] = VirtAddr::new(pf);
    let tss: &'static TaskStateSegment = Box::leak(Box::new(tss));
    let mut gdt = GlobalDescriptorTable::new();
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    let tss_sel = gdt.append(Descriptor::tss_segment(tss));
    let idt = x86_64::instructions::tables::sidt();
    Ok(Box::leak(Box::new(PerCpu { index, gdt, code, data, tss: tss_sel, idt })))
}

/// The trampoline's bytes and the offsets of its slots.
fn trampoline() -> (&'static [u8], [u64; 4]) {
    // SAFETY: linker symbols of this crate's own trampoline section; only addresses are taken,
    // and the bytes between start and end are this crate's code (mapped, readable).
    unsafe {
        let start = &raw const delos_smp_trampoline_start as u64;
        let end = &raw const delos_smp_trampoline_end as u64;
        let off = |s: *const u8| s as u64 - start;
        let slots = [
            off(&raw const delos_smp_slot_cr3),
            off(&raw const delos_smp_slot_stack),
            off(&raw const delos_smp_slot_entry),
            off(&raw const delos_smp_slot_arg),
        ];
        (core::slice::from_raw_parts(start as *const u8, (end - start) as usize), slots)
    }
}

/// Starts AP `index` (APIC `apic_id`), already reset by INIT; returns the microseconds from its
/// first start-up IPI to its arrival.
fn start_ap(lapic: &LocalApic, index: u64, apic_id: u32, cr3: u64) -> Result<u64, String> {
    let p = per_cpu(index)?;
    let stack_top = paging::alloc_stack(AP_STACK_PAGES).map_err(|e| format!("stack: {e}"))?.leak();
    let (code, slots) = trampoline();
    let page = paging::phys_to_virt(TRAMPOLINE).as_u64();
    // SAFETY: the trampoline page is in the first MiB, which nothing else uses after boot; it is
    // written through the physical map before the AP is told to run it.
    unsafe {
        core::ptr::copy_nonoverlapping(code.as_ptr(), page as *mut u8, code.len());
        for (slot, value) in slots.iter().zip([cr3, stack_top, ap_entry as *const () as u64, p as *const PerCpu as u64]) {
            ((page + slot) as *mut u64).write_volatile(value);
        }
    }
    AP_STACK_TOP[index as usize].store(stack_top, Ordering::Release);
    ARRIVED.store(0, Ordering::Release);
    let t0 = nano_core::time::micros_since_entry();
    // `smp_withhold=N` (a test option): CPU N gets no start-up IPI, so it never arrives, as if
    // it were broken.
    let withheld = boot_info::cmdline::get(&nano_core::kernel::boot_state().cmdline, "smp_withhold")
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n == index);
    if !withheld {
        let sipi = 0x0000_4600 | (TRAMPOLINE >> 12) as u32;
        lapic.ipi(apic_id, sipi)?;
        spin_us(200);
        if ARRIVED.load(Ordering::Acquire) != index {
            lapic.ipi(apic_id, sipi)?;
        }
    }
    let end = nano_core::time::micros_since_entry() + ARRIVAL_TIMEOUT_US;
    while ARRIVED.load(Ordering::Acquire) != index {
        if nano_core::time::micros_since_entry() > end {
            return Err(format!("did not arrive within {} ms of its start-up IPIs", ARRIVAL_TIMEOUT_US / 1000));
        }
        core::hint::spin_loop();
    }
    Ok(nano_core::time::micros_since_entry() - t0)
}

/// COM1's receive interrupt (ISA IRQ 4 through the I/O APIC).
pub const COM1_VECTOR: u8 = 0x64;
/// COM2's receive interrupt (ISA IRQ 3 through the I/O APIC).
pub const COM2_VECTOR: u8 = 0x63;

/// How the serial ports receive, for `cpus`: per port, its route or why it is polled.
static SERIAL_INPUT: spin::Mutex<Vec<(&'static str, Result<IsaRoute, String>)>> = spin::Mutex::new(Vec::new());

/// Serial input by interrupt: each port's receive interrupt (COM1: ISA IRQ 4, COM2: IRQ 3, if
/// the port exists) is routed through the I/O APIC to the boot CPU, whose handler (in
/// nano_core) moves the received bytes into the port's ring; readers read the ring. Before, a
/// reader polled the UART: a byte sat in the 16-byte FIFO until its reader's next turn, so a
/// push of a large object crawled at 16 bytes per turn of the receiver, and a key typed at an
/// idle prompt waited for the next timer tick to wake the CPU. `serial_poll` on the kernel
/// command line keeps polling. A port that cannot be routed (no MADT, no I/O APIC, a
/// level-triggered line) stays polled, and the log and `cpus` say why.
pub fn serial_input_by_interrupt() {
    if boot_info::cmdline::get(&nano_core::kernel::boot_state().cmdline, "serial_poll").is_some() {
        log::info!("smp: serial input polled (serial_poll)");
        return;
    }
    type Handler = extern "x86-interrupt" fn(x86_64::structures::idt::InterruptStackFrame);
    let ports: [(&'static str, nano_core::serial::Uart, u8, u8, Handler); 2] = [
        ("COM1", nano_core::serial::COM1, 4, COM1_VECTOR, nano_core::serial::com1_interrupt),
        ("COM2", nano_core::serial::COM2, 3, COM2_VECTOR, nano_core::serial::com2_interrupt),
    ];
    let mut routes = Vec::new();
    for (name, uart, irq, vector, handler) in ports {
        if name == "COM2" && !uart.present() {
            continue;
        }
        exceptions::set_interrupt_handler(vector, handler);
        let r = route_isa_irq(irq, vector).and_then(|route| {
            // The handlers end the interrupt at the local APIC, which the route mapped.
            nano_core::ipi::set_eoi_register(LAPIC_VA.load(Ordering::Acquire) + LocalApic::EOI);
            if uart.receive_by_interrupt() { Ok(route) } else { Err(format!("{name} has no receive ring")) }
        });
        match &r {
            Ok(route) => log::info!(
                "smp: {name} receives by interrupt: ISA IRQ {irq} at I/O APIC input {} (GSI {}) as vector {vector:#x} to APIC {}",
                route.input,
                route.gsi,
                route.apic_id
            ),
            Err(e) => log::warn!("smp: {name} stays polled: {e}"),
        }
        routes.push((name, r));
    }
    x86_64::instructions::interrupts::without_interrupts(|| *SERIAL_INPUT.lock() = routes);
}

/// How each serial port receives: its route through the I/O APIC, or why it is polled.
pub fn serial_input() -> Vec<(&'static str, Result<IsaRoute, String>)> {
    x86_64::instructions::interrupts::without_interrupts(|| SERIAL_INPUT.lock().clone())
}

/// Set by the first [`init`].
static STARTED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Finds the CPUs and starts every AP (once: captain calls it during boot; later calls do
/// nothing). Logs what happened; a CPU that does not come up is recorded as failed and the
/// others go on.
pub fn init() {
    if STARTED.swap(true, Ordering::AcqRel) {
        return;
    }
    let t0 = nano_core::time::micros_since_entry();
    // The boot CPU's APIC id, from CPUID leaf 1 (EBX bits 24..31).
    let bsp_id = core::arch::x86_64::__cpuid(1).ebx >> 24;
    let mut cpus = alloc::vec![Cpu { index: 0, apic_id: bsp_id, state: CpuState::Boot, start_us: None }];
    let topo = match topology() {
        Ok(t) => t,
        Err(e) => {
            log::warn!("smp: {e}; running on the boot CPU only");
            x86_64::instructions::interrupts::without_interrupts(|| *CPUS.lock() = cpus);
            return;
        }
    };
    let aps: Vec<u32> = topo.apic_ids.iter().copied().filter(|&id| id != bsp_id).collect();
    if !aps.is_empty() {
        match start_all(&topo, &aps) {
            Ok(started) => cpus.extend(started),
            Err(e) => log::warn!("smp: {e}; running on the boot CPU only"),
        }
    }
    let parked = cpus.iter().filter(|c| c.state == CpuState::Parked).count();
    log::info!(
        "smp: {} CPUs in the MADT: the boot CPU (APIC {bsp_id}) runs tasks, {parked} APs parked, {} failed ({} us)",
        cpus.len(),
        cpus.len() - 1 - parked,
        nano_core::time::micros_since_entry() - t0
    );
    APIC_OF[0].store(bsp_id, Ordering::Release);
    let mut mask = 0u64;
    for c in cpus.iter().filter(|c| c.state == CpuState::Parked && c.index < APIC_OF.len().min(64)) {
        APIC_OF[c.index].store(c.apic_id, Ordering::Release);
        mask |= 1 << c.index;
    }
    PARKED_MASK.store(mask, Ordering::Release);
    x86_64::instructions::interrupts::without_interrupts(|| *CPUS.lock() = cpus);
    if mask != 0 {
        // From here every unmapping and every permission taken away waits until the parked
        // CPUs dropped their translations (see `nano_core::tlb`).
        nano_core::tlb::SEND_SHOOTDOWN.set(send_shootdowns);
        if boot_info::cmdline::get(&nano_core::kernel::boot_state().cmdline, "smp_no_tasks").is_none() {
            start_tasks_on_parked_cpus(&LocalApic { base: LAPIC_VA.load(Ordering::Acquire) });
        }
    }
    let tick = boot_tick_from_local_apic(topo.lapic_phys);
    if let Err(e) = &tick {
        log::info!("smp: the boot CPU ticks from the PIT: {e}");
    }
    x86_64::instructions::interrupts::without_interrupts(|| *BOOT_TICK.lock() = Some(tick));
    hash_boot_modules_ahead();
}

/// How the boot CPU ticks: from its local APIC timer, or why still from the PIT.
static BOOT_TICK: spin::Mutex<Option<Result<(), String>>> = spin::Mutex::new(None);

/// Moves the boot CPU's scheduling tick from the PIT (through the 8259) to its local APIC timer
/// at the same rate (`interrupts::TICK_HZ`) and the same vector, so the same entry takes it (its
/// abandon paths, the tick guard): every CPU then ticks from its own local APIC, as the APs
/// already did. The PIT runs on, masked at the 8259: its line also reaches the I/O APIC, where
/// the watchdog takes it as an NMI, so a hang of the tick itself is still seen by a clock that
/// does not depend on it. `pit_tick` on the kernel command line keeps the PIT's tick.
fn boot_tick_from_local_apic(lapic_phys: u64) -> Result<(), String> {
    if boot_info::cmdline::get(&nano_core::kernel::boot_state().cmdline, "pit_tick").is_some() {
        return Err("kept by `pit_tick`".into());
    }
    let lapic = enable_boot_lapic(lapic_phys)?;
    if LAPIC_TIMER_PER_MS.load(Ordering::Acquire) == 0 {
        LAPIC_TIMER_PER_MS.store(calibrate_lapic_timer(&lapic), Ordering::Release);
    }
    x86_64::instructions::interrupts::without_interrupts(|| {
        // Interrupts off: no PIT tick is between its entry and its end of interrupt (ticks
        // end their interrupt before they switch tasks), so none is ended at the wrong place.
        nano_core::ipi::set_eoi_register(lapic.base + LocalApic::EOI);
        nano_core::ipi::set_boot_tick_by_local_apic();
        interrupts::mask_pit_tick();
        start_periodic_timer(&lapic, interrupts::PIC1_VECTOR, interrupts::TICK_HZ);
    });
    log::info!(
        "smp: the boot CPU ticks from its local APIC timer at {} Hz (vector {}); the PIT only drives the watchdog",
        interrupts::TICK_HZ,
        interrupts::PIC1_VECTOR
    );
    Ok(())
}

/// Where the boot CPU's scheduling tick comes from, for `cpus`.
pub fn boot_tick() -> Result<&'static str, String> {
    match x86_64::instructions::interrupts::without_interrupts(|| BOOT_TICK.lock().clone()) {
        Some(Ok(())) => Ok("its local APIC timer"),
        Some(Err(e)) => Err(e),
        None => Err("the PIT (smp not started)".into()),
    }
}

/// Gives every parked CPU its first job: the digests of the large boot modules the loader has
/// not checked yet (`nano_core::trust::hash_ahead`), so that the first load of the WASM engine
/// does not spend most of its time in SHA-512 on the boot CPU. Nobody waits for these jobs; a
/// later [`post`] to a CPU still at it waits for it to finish.
fn hash_boot_modules_ahead() {
    // `smp_hash_fault` (a test option): the first hashing job faults with a module claimed.
    if boot_info::cmdline::get(&nano_core::kernel::boot_state().cmdline, "smp_hash_fault").is_some() {
        nano_core::trust::inject_hash_fault();
    }
    for index in parked() {
        if let Err(e) = post(index, nano_core::trust::hash_ahead, 0) {
            log::warn!("smp: CPU {index}: cannot hash boot modules ahead: {e}");
        }
    }
}

/// Maps the local APIC (once) and software-enables the boot CPU's (spurious vector 0xFF), so
/// that it sends IPIs and accepts the I/O APIC's messages.
fn enable_boot_lapic(phys: u64) -> Result<LocalApic, String> {
    let lapic = match LAPIC_VA.load(Ordering::Acquire) {
        0 => {
            let l = LocalApic::map(phys)?;
            LAPIC_VA.store(l.base, Ordering::Release);
            l
        }
        base => LocalApic { base },
    };
    let svr = lapic.read(LocalApic::SVR);
    if svr & (1 << 8) == 0 {
        lapic.write(LocalApic::SVR, svr | (1 << 8) | 0xFF);
    }
    Ok(lapic)
}

fn start_all(topo: &Topology, aps: &[u32]) -> Result<Vec<Cpu>, String> {
    let lapic = enable_boot_lapic(topo.lapic_phys)?;
    exceptions::set_interrupt_handler(PING_VECTOR, pong);
    exceptions::set_interrupt_handler(SHOOTDOWN_VECTOR, shootdown);
    exceptions::set_interrupt_handler(WAKE_VECTOR, woken);
    let (cr3, _) = x86_64::registers::control::Cr3::read_raw();
    let cr3 = cr3.start_address().as_u64();
    if cr3 >= 1 << 32 {
        return Err(format!("the kernel's page tables at {cr3:#x} are above 4 GiB (the trampoline loads CR3 in 32-bit mode)"));
    }
    // The trampoline runs at its physical address with paging on: map it there while APs start.
    paging::map(TRAMPOLINE, TRAMPOLINE, Perms::ReadExec).map_err(|e| format!("mapping the trampoline: {e}"))?;
    let mut out = Vec::new();
    if aps.len() >= nano_core::kernel::MAX_CPUS {
        log::warn!("smp: {} CPUs; using the first {}", aps.len() + 1, nano_core::kernel::MAX_CPUS);
    }
    let aps = &aps[..aps.len().min(nano_core::kernel::MAX_CPUS - 1)];
    // INIT every AP, then wait the 10 ms the architecture asks for once, not once per AP.
    let reset: Vec<Result<(), String>> = aps.iter().map(|&apic_id| lapic.ipi(apic_id, 0x0000_4500)).collect();
    spin_us(10_000);
    for (i, (&apic_id, reset)) in aps.iter().zip(reset).enumerate() {
        let index = i as u64 + 1;
        let (state, start_us) = match reset.and_then(|()| start_ap(&lapic, index, apic_id, cr3)) {
            Ok(us) => (CpuState::Parked, Some(us)),
            Err(e) => {
                log::warn!("smp: CPU {index} (APIC {apic_id}) {e}; going on without it");
                (CpuState::Failed(e), None)
            }
        };
        out.push(Cpu { index: index as usize, apic_id, state, start_us });
    }
    // Nothing runs at low addresses any more (the frame is low memory, not a frame of ours).
    let _ = paging::unmap(TRAMPOLINE);
    Ok(out)
}
