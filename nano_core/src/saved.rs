//! The callee-saved registers of a call that can be escaped: saved when it begins, put back to
//! leave it from anywhere inside (a guarded kernel step of the task crate, a job on a parked
//! CPU in [`crate::jobs`]). Both write their entry and escape in assembly; these macros give the
//! lines that save and restore [`CalleeSaved`] through a register that holds its address, so
//! that the layout is written once.

/// The registers a call preserves, and the stack pointer: what returning from the call needs
/// after its frames are skipped. The field order is the assembly's (see [`save_callee_saved!`]).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct CalleeSaved {
    /// The stack pointer inside the entry's frame.
    pub rsp: u64,
    /// The entry's frame pointer.
    pub rbp: u64,
    /// The rest of the callee-saved registers.
    pub rbx: u64,
    /// r12.
    pub r12: u64,
    /// r13.
    pub r13: u64,
    /// r14.
    pub r14: u64,
    /// r15.
    pub r15: u64,
}

/// Assembly lines (Intel syntax, one string) storing the stack pointer and the callee-saved
/// registers into the [`CalleeSaved`] at the address in register `$reg`.
#[macro_export]
macro_rules! save_callee_saved {
    ($reg:literal) => {
        concat!(
            "mov [",
            $reg,
            "], rsp\n",
            "mov [",
            $reg,
            " + 8], rbp\n",
            "mov [",
            $reg,
            " + 16], rbx\n",
            "mov [",
            $reg,
            " + 24], r12\n",
            "mov [",
            $reg,
            " + 32], r13\n",
            "mov [",
            $reg,
            " + 40], r14\n",
            "mov [",
            $reg,
            " + 48], r15\n"
        )
    };
}

/// Assembly lines (one string) loading the stack pointer and the callee-saved registers back
/// from the [`CalleeSaved`] at the address in register `$reg` (which must not be one of them).
#[macro_export]
macro_rules! restore_callee_saved {
    ($reg:literal) => {
        concat!(
            "mov rsp, [",
            $reg,
            "]\n",
            "mov rbp, [",
            $reg,
            " + 8]\n",
            "mov rbx, [",
            $reg,
            " + 16]\n",
            "mov r12, [",
            $reg,
            " + 24]\n",
            "mov r13, [",
            $reg,
            " + 32]\n",
            "mov r14, [",
            $reg,
            " + 40]\n",
            "mov r15, [",
            $reg,
            " + 48]\n"
        )
    };
}

/// Assembly lines (one string) that open a frame with its call-frame information, so that
/// unwinding and backtraces pass through an assembly entry: `push rbp; mov rbp, rsp`.
#[macro_export]
macro_rules! asm_frame_enter {
    () => {
        concat!("push rbp\n", ".cfi_def_cfa_offset 16\n", ".cfi_offset rbp, -16\n", "mov rbp, rsp\n", ".cfi_def_cfa_register rbp\n")
    };
}
