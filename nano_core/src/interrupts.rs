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
use x86_64::structures::idt::{InterruptDescriptorTable, InterruptStackFrame};
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

/// The early handler of every exception: report, then end the machine.
fn report(name: &str, vector: u8, error: Option<u64>, frame: &mut InterruptStackFrame) -> ! {
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

crate::exception_table!(handle = report, fatal = report);

/// The types the [`crate::exception_table!`] macro names, for crates that use it.
pub mod x86 {
    pub use x86_64::structures::idt::{InterruptDescriptorTable, InterruptStackFrame, PageFaultErrorCode};
}

/// Why the early tables could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("double fault stack: {0}")]
pub struct InterruptInitError(#[from] crate::paging::PagingError);

/// Loads the GDT (with a TSS whose IST holds a guarded double-fault stack) and the early IDT.
pub fn init() -> Result<(), InterruptInitError> {
    // The CPU is given these stacks for good.
    let df_stack_top = crate::paging::alloc_stack(4)?.leak();
    let pf_stack_top = crate::paging::alloc_stack(8)?.leak();
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        tss.interrupt_stack_table[DOUBLE_FAULT_IST as usize] = VirtAddr::new(df_stack_top);
        tss.interrupt_stack_table[PAGE_FAULT_IST as usize] = VirtAddr::new(pf_stack_top);
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
        install_exception_gates(&mut idt, false);
        idt
    });
    idt.load();
    Ok(())
}

/// For naked interrupt entries: pushes the 15 general registers (`rax` first, `r15` last). The
/// CPU aligned the stack to 16 before its 40-byte frame, so after these 120 bytes it is aligned
/// for a call again, and the stack pointer addresses the registers as
/// [`load_general_registers_and_return!`] reads them.
#[macro_export]
macro_rules! push_general_registers {
    () => {
        "push rax\npush rcx\npush rdx\npush rbx\npush rbp\npush rsi\npush rdi\npush r8\npush r9\npush r10\npush r11\npush r12\npush r13\npush r14\npush r15"
    };
}

/// The 15 loads of the registers [`push_general_registers!`] saved at the stack pointer (`r15`
/// at `[rsp]`, `rax` at `[rsp + 112]`): the part the returns below share.
#[macro_export]
macro_rules! load_general_registers {
    () => {
        "mov r15, [rsp]\nmov r14, [rsp + 8]\nmov r13, [rsp + 16]\nmov r12, [rsp + 24]\nmov r11, [rsp + 32]\nmov r10, [rsp + 40]\nmov r9, [rsp + 48]\nmov r8, [rsp + 56]\nmov rdi, [rsp + 64]\nmov rsi, [rsp + 72]\nmov rbp, [rsp + 80]\nmov rbx, [rsp + 88]\nmov rdx, [rsp + 96]\nmov rcx, [rsp + 104]\nmov rax, [rsp + 112]\n"
    };
}

/// For naked interrupt entries: loads back the registers [`push_general_registers!`] saved at
/// the stack pointer and returns from the interrupt. Loaded, not popped: until the last two
/// instructions the stack pointer stays below the saved registers, so a fault in between
/// (damaged code) pushes its frame below them, and a handler that recorded where they are can
/// still load every one of them again.
#[macro_export]
macro_rules! load_general_registers_and_return {
    () => {
        concat!($crate::load_general_registers!(), "add rsp, 120\niretq")
    };
}

/// [`load_general_registers_and_return!`], then a check that every register holds what its slot
/// does; if one does not, a second, separate sequence loads them all again before the return.
/// For the entries that run all the time (the timer's, the NMI's): a flipped bit in one of the
/// loads — `mov rsi, [rsp + 72]` turned into `mov r14, [rsp + 72]` in the fault campaign (seed
/// 15) — handed the interrupted task a wrong callee-saved register, and the tasks the ticks
/// interrupted jumped to addresses with no code one after another (the shell, the supervisor
/// and the scrubber among them). Compares and branches change no register; the return takes
/// the flags back from the CPU's frame. The second sequence runs only after a mismatch, so
/// damage in it changes nothing until then. Uses the local label `77`.
#[macro_export]
macro_rules! load_general_registers_checked_and_return {
    () => {
        concat!(
            $crate::load_general_registers!(),
            "cmp r15, [rsp]\njne 77f\ncmp r14, [rsp + 8]\njne 77f\ncmp r13, [rsp + 16]\njne 77f\ncmp r12, [rsp + 24]\njne 77f\ncmp r11, [rsp + 32]\njne 77f\ncmp r10, [rsp + 40]\njne 77f\ncmp r9, [rsp + 48]\njne 77f\ncmp r8, [rsp + 56]\njne 77f\ncmp rdi, [rsp + 64]\njne 77f\ncmp rsi, [rsp + 72]\njne 77f\ncmp rbp, [rsp + 80]\njne 77f\ncmp rbx, [rsp + 88]\njne 77f\ncmp rdx, [rsp + 96]\njne 77f\ncmp rcx, [rsp + 104]\njne 77f\ncmp rax, [rsp + 112]\njne 77f\n",
            "add rsp, 120\niretq\n77:\n",
            $crate::load_general_registers!(),
            "add rsp, 120\niretq"
        )
    };
}

/// For naked interrupt entries: stores the stack pointer into the three copies of the
/// [`crate::triple::Triple`] named by the operand `$operand` (a `sym` operand of the calling
/// `naked_asm!`). Clobbers `rax`.
#[macro_export]
macro_rules! record_stack_pointer {
    ($operand:literal) => {
        concat!("movabs rax, offset {", $operand, "}\nmov [rax], rsp\nmov [rax + 8], rsp\nmov [rax + 16], rsp")
    };
}

/// For naked interrupt entries: stores 0 into the three copies of the
/// [`crate::triple::Triple`] named by the operand `$operand` (a `sym` operand of the calling
/// `naked_asm!`). Clobbers `rax`.
#[macro_export]
macro_rules! clear_triple {
    ($operand:literal) => {
        concat!("movabs rax, offset {", $operand, "}\nmov qword ptr [rax], 0\nmov qword ptr [rax + 8], 0\nmov qword ptr [rax + 16], 0")
    };
}

/// The one table of CPU exceptions (vector, name, whether the CPU pushes an error code), and
/// the gates that go with it.
///
/// The `x86-interrupt` ABI does not tell a handler which vector it serves, so there must be one
/// function per vector. This macro writes them all from one list, for nano_core's early IDT and
/// for the loaded `exceptions` crate alike, so the two can never again disagree on which
/// vectors exist. It defines `fn install_exception_gates(idt: &mut InterruptDescriptorTable)`
/// in the calling module, which fills vectors 0–31 (all the architecture defines: reserved ones
/// stay absent). Every handler calls
/// `$handle(name: &'static str, vector: u8, error: Option<u64>, frame: &mut InterruptStackFrame)`,
/// except on a parked CPU, where [`crate::jobs::fault_gate`] abandons the job instead;
/// the double fault and machine check, which cannot return, call `$fatal` with the same
/// arguments (it returns `!`). The double fault runs on [`DOUBLE_FAULT_IST`]; the page fault on
/// [`PAGE_FAULT_IST`] if asked (so that a task's stack overflow into its guard page can still be
/// handled; the early IDT does not, so that overflowing the boot stack shows as a double fault).
#[macro_export]
macro_rules! exception_table {
    (handle = $handle:path, fatal = $fatal:path) => {
        $crate::exception_table!(@gates $handle, $fatal;
            divide_error(0, "divide error"),
            debug(1, "debug"),
            non_maskable_interrupt(2, "non-maskable interrupt"),
            breakpoint(3, "breakpoint"),
            overflow(4, "overflow"),
            bound_range_exceeded(5, "bound range exceeded"),
            invalid_opcode(6, "invalid opcode"),
            device_not_available(7, "device not available"),
            x87_floating_point(16, "x87 floating-point exception"),
            simd_floating_point(19, "SIMD floating-point exception"),
            virtualization(20, "virtualization exception"),
            hv_injection_exception(28, "hypervisor injection exception");
            invalid_tss(10, "invalid TSS"),
            segment_not_present(11, "segment not present"),
            stack_segment_fault(12, "stack-segment fault"),
            general_protection_fault(13, "general protection fault"),
            alignment_check(17, "alignment check"),
            cp_protection_exception(21, "control protection exception"),
            vmm_communication_exception(29, "VMM communication exception"),
            security_exception(30, "security exception")
        );
    };
    (@gates $handle:path, $fatal:path;
        $($plain:ident($pv:expr, $pn:expr)),*;
        $($coded:ident($cv:expr, $cn:expr)),*) => {
        /// Handlers for the exceptions that push no error code.
        mod plain_gates {
            #[allow(unused_imports)]
            use super::*;
            use $crate::interrupts::x86::InterruptStackFrame;
            $(
                pub(super) extern "x86-interrupt" fn $plain(mut frame: InterruptStackFrame) {
                    if $crate::jobs::fault_gate($pn, $pv, None, &mut frame) {
                        return;
                    }
                    $handle($pn, $pv, None, &mut frame)
                }
            )*
        }
        /// Handlers for the exceptions that push an error code.
        mod coded_gates {
            #[allow(unused_imports)]
            use super::*;
            use $crate::interrupts::x86::InterruptStackFrame;
            $(
                pub(super) extern "x86-interrupt" fn $coded(mut frame: InterruptStackFrame, code: u64) {
                    if $crate::jobs::fault_gate($cn, $cv, Some(code), &mut frame) {
                        return;
                    }
                    $handle($cn, $cv, Some(code), &mut frame)
                }
            )*
            pub(super) extern "x86-interrupt" fn page_fault(
                mut frame: InterruptStackFrame,
                code: $crate::interrupts::x86::PageFaultErrorCode,
            ) {
                if $crate::jobs::fault_gate("page fault", 14, Some(code.bits()), &mut frame) {
                    return;
                }
                $handle("page fault", 14, Some(code.bits()), &mut frame)
            }
            pub(super) extern "x86-interrupt" fn double_fault(mut frame: InterruptStackFrame, code: u64) -> ! {
                $fatal("double fault", 8, Some(code), &mut frame)
            }
            pub(super) extern "x86-interrupt" fn machine_check(mut frame: InterruptStackFrame) -> ! {
                $fatal("machine check", 18, None, &mut frame)
            }
        }
        /// Fills vectors 0–31 of `idt` with this module's handlers (see
        /// `nano_core::exception_table!`).
        ///
        /// With `page_fault_on_ist`, page faults run on nano_core's page-fault IST stack.
        fn install_exception_gates(idt: &mut $crate::interrupts::x86::InterruptDescriptorTable, page_fault_on_ist: bool) {
            $( idt.$plain.set_handler_fn(plain_gates::$plain); )*
            $( idt.$coded.set_handler_fn(coded_gates::$coded); )*
            idt.machine_check.set_handler_fn(coded_gates::machine_check);
            let page_fault = idt.page_fault.set_handler_fn(coded_gates::page_fault);
            // SAFETY: nano_core's TSS (loaded at boot, never replaced) has a guarded stack in
            // each of these IST slots.
            unsafe {
                idt.double_fault.set_handler_fn(coded_gates::double_fault).set_stack_index($crate::interrupts::DOUBLE_FAULT_IST);
                if page_fault_on_ist {
                    page_fault.set_stack_index($crate::interrupts::PAGE_FAULT_IST);
                }
            }
        }
    };
}
