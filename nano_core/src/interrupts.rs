//! The early GDT, TSS and IDT: every CPU exception is reported and ends the machine.
//!
//! These handlers exist so that a fault during boot (or in nano_core at any time before the
//! loaded exceptions crate takes over) produces a clear report instead of a silent triple fault.
//! The double fault handler runs on its own IST stack, so a kernel stack overflow into the guard
//! page still gets reported.

use crate::qemu::{ExitCode, exit};
use crate::serial::emergency_write;
use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::registers::control::Cr2;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::idt::{InterruptDescriptorTable, InterruptStackFrame, PageFaultErrorCode};
use x86_64::structures::tss::TaskStateSegment;

/// IST slot used by the double fault handler.
pub const DOUBLE_FAULT_IST: u16 = 0;
/// IST slot the loaded exceptions crate uses for page faults, so that a task overflowing its
/// stack into the guard page can still be handled (a fault while handling a page fault would
/// reuse this stack: the handler itself must not fault).
pub const PAGE_FAULT_IST: u16 = 1;

static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<(GlobalDescriptorTable, SegmentSelector, SegmentSelector, SegmentSelector)> = Once::new();
static IDT: Once<InterruptDescriptorTable> = Once::new();

fn report(name: &str, vector: u8, error: Option<u64>, frame: &InterruptStackFrame) -> ! {
    emergency_write(format_args!("\n!!! CPU EXCEPTION in nano_core: {name} (vector {vector})\n"));
    if let Some(e) = error {
        emergency_write(format_args!("    error code: {e:#x}\n"));
    }
    if vector == 14 {
        let cr2 = Cr2::read_raw();
        emergency_write(format_args!("    faulting address: {cr2:#x}\n"));
    }
    emergency_write(format_args!(
        "    rip: {:#x}  rsp: {:#x}  rflags: {:#x}  cs: {:#x}\n",
        frame.instruction_pointer.as_u64(),
        frame.stack_pointer.as_u64(),
        frame.cpu_flags.bits(),
        frame.code_segment.0
    ));
    emergency_write(format_args!("    system halted (exit code failure)\n"));
    exit(ExitCode::Failure)
}

macro_rules! handler {
    ($fn:ident, $name:expr, $vec:expr) => {
        extern "x86-interrupt" fn $fn(frame: InterruptStackFrame) {
            report($name, $vec, None, &frame)
        }
    };
    ($fn:ident, $name:expr, $vec:expr, code) => {
        extern "x86-interrupt" fn $fn(frame: InterruptStackFrame, code: u64) {
            report($name, $vec, Some(code), &frame)
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
handler!(hv_injection, "hypervisor injection exception", 28);
handler!(vmm_communication, "VMM communication exception", 29, code);
handler!(security, "security exception", 30, code);

extern "x86-interrupt" fn page_fault(frame: InterruptStackFrame, code: PageFaultErrorCode) {
    report("page fault", 14, Some(code.bits()), &frame)
}

extern "x86-interrupt" fn double_fault(frame: InterruptStackFrame, code: u64) -> ! {
    report("double fault", 8, Some(code), &frame)
}

extern "x86-interrupt" fn machine_check(frame: InterruptStackFrame) -> ! {
    report("machine check", 18, None, &frame)
}

/// Why the early tables could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("double fault stack: {0}")]
pub struct InterruptInitError(#[from] crate::paging::PagingError);

/// Loads the GDT (with a TSS whose IST holds a guarded double-fault stack) and the early IDT.
pub fn init() -> Result<(), InterruptInitError> {
    let df_stack = crate::paging::alloc_stack(4)?;
    let pf_stack = crate::paging::alloc_stack(8)?;
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        tss.interrupt_stack_table[DOUBLE_FAULT_IST as usize] = VirtAddr::new(df_stack.top);
        tss.interrupt_stack_table[PAGE_FAULT_IST as usize] = VirtAddr::new(pf_stack.top);
        tss
    });
    let (gdt, code, data, tss_sel) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss_sel = gdt.append(Descriptor::tss_segment(tss));
        (gdt, code, data, tss_sel)
    });
    gdt.load();
    // SAFETY: the selectors index the GDT just loaded, whose descriptors are valid 64-bit
    // kernel code/data segments and a TSS that lives for the rest of the kernel's life.
    unsafe {
        CS::set_reg(*code);
        DS::set_reg(*data);
        ES::set_reg(*data);
        SS::set_reg(*data);
        load_tss(*tss_sel);
    }
    let idt = IDT.call_once(|| {
        let mut idt = InterruptDescriptorTable::new();
        idt.divide_error.set_handler_fn(divide_error);
        idt.debug.set_handler_fn(debug);
        idt.non_maskable_interrupt.set_handler_fn(nmi);
        idt.breakpoint.set_handler_fn(breakpoint);
        idt.overflow.set_handler_fn(overflow);
        idt.bound_range_exceeded.set_handler_fn(bound_range);
        idt.invalid_opcode.set_handler_fn(invalid_opcode);
        idt.device_not_available.set_handler_fn(device_not_available);
        // SAFETY: the IST index refers to the stack installed in the TSS above.
        unsafe { idt.double_fault.set_handler_fn(double_fault).set_stack_index(DOUBLE_FAULT_IST) };
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
        idt.hv_injection_exception.set_handler_fn(hv_injection);
        idt.vmm_communication_exception.set_handler_fn(vmm_communication);
        idt.security_exception.set_handler_fn(security);
        idt
    });
    idt.load();
    Ok(())
}
