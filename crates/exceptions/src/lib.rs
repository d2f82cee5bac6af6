//! exceptions: the loaded kernel's IDT, replacing nano_core's early one.
//!
//! Every CPU exception gets a report that names the faulting instruction through the loader's
//! address index (`crate + symbol + offset`). What happens next is policy registered by a higher
//! layer: the task crate installs a [`FaultHook`] that ends the faulting task and switches away;
//! without one (or for a fault outside any task) the machine halts with the failure exit code.
//! Hardware interrupt vectors (32..=255) are filled by the interrupts crate through
//! [`set_interrupt_handler`]. Double faults run on nano_core's IST stack.
#![no_std]
#![feature(abi_x86_interrupt)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use nano_core::serial::emergency_write;
use spin::Once;
use x86_64::registers::control::Cr2;
use x86_64::structures::idt::{HandlerFunc, InterruptDescriptorTable, InterruptStackFrame, PageFaultErrorCode};

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
}

/// Called after the report; returns only if the fault should be treated as fatal.
pub type FaultHook = fn(&FaultInfo);

static HOOK: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());
static FAULTS: AtomicU64 = AtomicU64::new(0);
static IDT: Once<spin::Mutex<&'static mut InterruptDescriptorTable>> = Once::new();

/// Installs the hook that decides what a fault does to the running task.
pub fn set_fault_hook(hook: FaultHook) {
    HOOK.store(hook as *mut (), Ordering::Release);
}

/// Number of exceptions reported since boot.
pub fn fault_count() -> u64 {
    FAULTS.load(Ordering::Relaxed)
}

/// Names an address as `crate: symbol+0xoff` if the loader knows it. Never blocks: during a
/// fault the loader may be locked by the interrupted code.
pub fn describe(addr: u64, out: &mut dyn FnMut(core::fmt::Arguments<'_>)) {
    match nano_core::kernel::try_with_loader(|l| l.addr2sym(addr)) {
        Some(Some(i)) => out(format_args!(
            "{} + {:#x} (crate {}, namespace {})",
            i.symbol.as_deref().unwrap_or("?"),
            i.symbol_offset,
            i.krate,
            i.namespace
        )),
        Some(None) => out(format_args!("not in any loaded section")),
        None => out(format_args!("(loader busy; no symbol)")),
    }
}

fn report(info: FaultInfo) {
    FAULTS.fetch_add(1, Ordering::Relaxed);
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
    let hook = HOOK.load(Ordering::Acquire);
    if !hook.is_null() {
        // SAFETY: HOOK only ever holds a `FaultHook` stored by `set_fault_hook`.
        let hook: FaultHook = unsafe { core::mem::transmute::<*mut (), FaultHook>(hook) };
        hook(&info);
    }
    emergency_write(format_args!("    fault outside any task: system halted (exit code failure)\n"));
    nano_core::qemu::exit(nano_core::qemu::ExitCode::Failure)
}

fn info(name: &'static str, vector: u8, error: Option<u64>, frame: &InterruptStackFrame) -> FaultInfo {
    let address = (vector == 14).then(|| Cr2::read_raw());
    FaultInfo { name, vector, error, address, rip: frame.instruction_pointer.as_u64(), rsp: frame.stack_pointer.as_u64() }
}

macro_rules! handler {
    ($fn:ident, $name:expr, $vec:expr) => {
        extern "x86-interrupt" fn $fn(frame: InterruptStackFrame) {
            report(info($name, $vec, None, &frame))
        }
    };
    ($fn:ident, $name:expr, $vec:expr, code) => {
        extern "x86-interrupt" fn $fn(frame: InterruptStackFrame, code: u64) {
            report(info($name, $vec, Some(code), &frame))
        }
    };
}

handler!(divide_error, "divide error", 0);
handler!(debug, "debug", 1);
handler!(nmi, "non-maskable interrupt", 2);
handler!(breakpoint, "breakpoint", 3);
handler!(overflow, "overflow", 4);
handler!(bound_range, "bound range exceeded", 5);
handler!(invalid_opcode, "invalid opcode", 6);
handler!(device_not_available, "device not available", 7);
handler!(invalid_tss, "invalid TSS", 10, code);
handler!(segment_not_present, "segment not present", 11, code);
handler!(stack_segment, "stack-segment fault", 12, code);
handler!(general_protection, "general protection fault", 13, code);
handler!(x87_fp, "x87 floating-point exception", 16);
handler!(alignment_check, "alignment check", 17, code);
handler!(simd_fp, "SIMD floating-point exception", 19);
handler!(virtualization, "virtualization exception", 20);
handler!(control_protection, "control protection exception", 21, code);

extern "x86-interrupt" fn page_fault(frame: InterruptStackFrame, code: PageFaultErrorCode) {
    report(info("page fault", 14, Some(code.bits()), &frame))
}

extern "x86-interrupt" fn double_fault(frame: InterruptStackFrame, code: u64) -> ! {
    // A double fault usually means a kernel stack overflow: nothing to return to.
    HOOK.store(core::ptr::null_mut(), Ordering::Release);
    report(info("double fault", 8, Some(code), &frame));
    nano_core::qemu::exit(nano_core::qemu::ExitCode::Failure)
}

extern "x86-interrupt" fn machine_check(frame: InterruptStackFrame) -> ! {
    report(info("machine check", 18, None, &frame));
    nano_core::qemu::exit(nano_core::qemu::ExitCode::Failure)
}

extern "x86-interrupt" fn spurious(_frame: InterruptStackFrame) {}

/// Builds and loads the IDT. Called once by captain.
pub fn init() {
    let idt = IDT.call_once(|| {
        let idt = alloc::boxed::Box::leak(alloc::boxed::Box::new(InterruptDescriptorTable::new()));
        idt.divide_error.set_handler_fn(divide_error);
        idt.debug.set_handler_fn(debug);
        idt.non_maskable_interrupt.set_handler_fn(nmi);
        idt.breakpoint.set_handler_fn(breakpoint);
        idt.overflow.set_handler_fn(overflow);
        idt.bound_range_exceeded.set_handler_fn(bound_range);
        idt.invalid_opcode.set_handler_fn(invalid_opcode);
        idt.device_not_available.set_handler_fn(device_not_available);
        // SAFETY: nano_core's TSS has a guarded double-fault stack in this IST slot.
        unsafe { idt.double_fault.set_handler_fn(double_fault).set_stack_index(nano_core::interrupts::DOUBLE_FAULT_IST) };
        idt.invalid_tss.set_handler_fn(invalid_tss);
        idt.segment_not_present.set_handler_fn(segment_not_present);
        idt.stack_segment_fault.set_handler_fn(stack_segment);
        idt.general_protection_fault.set_handler_fn(general_protection);
        idt.page_fault.set_handler_fn(page_fault);
        idt.x87_floating_point.set_handler_fn(x87_fp);
        idt.alignment_check.set_handler_fn(alignment_check);
        idt.machine_check.set_handler_fn(machine_check);
        idt.simd_floating_point.set_handler_fn(simd_fp);
        idt.virtualization.set_handler_fn(virtualization);
        idt.cp_protection_exception.set_handler_fn(control_protection);
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
    log::info!("exceptions: IDT with all 32 CPU exceptions loaded (replaces nano_core's early IDT)");
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
