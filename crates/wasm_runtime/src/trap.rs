//! Traps: what they are, where compiled code can raise them, and how control gets back to the
//! caller of the WASM function.
//!
//! Entering WASM goes through `delos_wasm_enter` (assembly), which saves the callee-saved
//! registers and the stack pointer in an [`EntryState`] linked into a per-thread (per-task in
//! the kernel) chain. A trap — a fault at a recorded trap site, reported by the platform's
//! fault handler through [`handle_fault`], or a runtime function calling [`raise`] — records
//! its kind and address in the innermost state and jumps to `delos_wasm_trap_landing`, which
//! restores that stack pointer and returns 1 from `delos_wasm_enter`. WASM frames own nothing
//! that needs dropping, so skipping them is all an unwind has to do.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::Cell;
use core::fmt;
use cranelift_codegen::ir::TrapCode;

/// The kinds of trap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum TrapKind {
    /// Call stack exhausted.
    StackOverflow = 1,
    /// Linear memory access out of bounds.
    MemoryOutOfBounds,
    /// Table access out of bounds (also `call_indirect` past the end of the table).
    TableOutOfBounds,
    /// `call_indirect` of a null entry.
    IndirectCallToNull,
    /// `call_indirect` of a function of another type.
    BadSignature,
    /// Integer overflow (`INT_MIN / -1`, float-to-int out of range).
    IntegerOverflow,
    /// Integer division or remainder by zero.
    IntegerDivisionByZero,
    /// Float-to-int of NaN.
    BadConversionToInteger,
    /// `unreachable`.
    Unreachable,
    /// The fuel budget ran out (a runaway loop).
    OutOfFuel,
    /// A fault in compiled code at an address that is no trap site.
    Fault,
    /// WASI `proc_exit` (not an error: the program ended itself).
    Exit,
}

impl TrapKind {
    /// From the number a builtin returns or a state stores.
    pub fn from_u32(v: u32) -> Option<TrapKind> {
        use TrapKind::*;
        Some(match v {
            1 => StackOverflow,
            2 => MemoryOutOfBounds,
            3 => TableOutOfBounds,
            4 => IndirectCallToNull,
            5 => BadSignature,
            6 => IntegerOverflow,
            7 => IntegerDivisionByZero,
            8 => BadConversionToInteger,
            9 => Unreachable,
            10 => OutOfFuel,
            11 => Fault,
            12 => Exit,
            _ => return None,
        })
    }

    /// The Cranelift trap code compiled code uses for this kind.
    pub fn code(self) -> TrapCode {
        match self {
            TrapKind::StackOverflow => TrapCode::STACK_OVERFLOW,
            TrapKind::MemoryOutOfBounds => TrapCode::HEAP_OUT_OF_BOUNDS,
            TrapKind::IntegerOverflow => TrapCode::INTEGER_OVERFLOW,
            TrapKind::IntegerDivisionByZero => TrapCode::INTEGER_DIVISION_BY_ZERO,
            TrapKind::BadConversionToInteger => TrapCode::BAD_CONVERSION_TO_INTEGER,
            other => TrapCode::unwrap_user(other as u8),
        }
    }

    /// The kind a Cranelift trap code stands for.
    pub fn from_code(c: TrapCode) -> TrapKind {
        match c {
            TrapCode::STACK_OVERFLOW => TrapKind::StackOverflow,
            TrapCode::HEAP_OUT_OF_BOUNDS => TrapKind::MemoryOutOfBounds,
            TrapCode::INTEGER_OVERFLOW => TrapKind::IntegerOverflow,
            TrapCode::INTEGER_DIVISION_BY_ZERO => TrapKind::IntegerDivisionByZero,
            TrapCode::BAD_CONVERSION_TO_INTEGER => TrapKind::BadConversionToInteger,
            other => user_kind(other).unwrap_or(TrapKind::Fault),
        }
    }

    /// The spec test suite's wording.
    pub fn message(self) -> &'static str {
        match self {
            TrapKind::StackOverflow => "call stack exhausted",
            TrapKind::MemoryOutOfBounds => "out of bounds memory access",
            TrapKind::TableOutOfBounds => "out of bounds table access",
            TrapKind::IndirectCallToNull => "uninitialized element",
            TrapKind::BadSignature => "indirect call type mismatch",
            TrapKind::IntegerOverflow => "integer overflow",
            TrapKind::IntegerDivisionByZero => "integer divide by zero",
            TrapKind::BadConversionToInteger => "invalid conversion to integer",
            TrapKind::Unreachable => "unreachable",
            TrapKind::OutOfFuel => "out of fuel",
            TrapKind::Fault => "fault in compiled code",
            TrapKind::Exit => "exit",
        }
    }
}

fn user_kind(c: TrapCode) -> Option<TrapKind> {
    (1..=12u32).filter_map(TrapKind::from_u32).find(|k| k.code() == c)
}

/// A trap: its kind and, when it came from compiled code, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trap {
    /// What happened.
    pub kind: TrapKind,
    /// Machine address of the trapping instruction (0 when raised by the runtime).
    pub pc: u64,
    /// `wasm::<module>::<function>` of the trapping code, if known.
    pub function: Option<String>,
    /// Byte offset in the module of the WASM instruction that trapped, if known.
    pub wasm_offset: Option<u32>,
    /// Exit status for [`TrapKind::Exit`].
    pub exit_code: i32,
}

impl fmt::Display for Trap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == TrapKind::Exit {
            return write!(f, "exit({})", self.exit_code);
        }
        write!(f, "trap: {}", self.kind.message())?;
        if let Some(func) = &self.function {
            write!(f, " in {func}")?;
        }
        if let Some(o) = self.wasm_offset {
            write!(f, " at wasm offset {o:#x}")?;
        }
        if self.pc != 0 {
            write!(f, " (pc {:#x})", self.pc)?;
        }
        Ok(())
    }
}

/// One trap site in a code image.
#[derive(Debug, Clone, Copy)]
pub struct TrapSite {
    /// Offset of the instruction in the image.
    pub offset: u32,
    /// Kind.
    pub kind: TrapKind,
    /// WASM byte offset it came from.
    pub wasm_offset: u32,
}

/// What the trap registry knows about one placed code image.
#[derive(Debug)]
pub struct CodeInfo {
    /// Image start address.
    pub start: u64,
    /// Image length.
    pub len: u64,
    /// Trap sites, sorted by offset.
    pub traps: Vec<TrapSite>,
    /// (start offset, end offset, symbol) of each function, sorted.
    pub funcs: Vec<(u32, u32, String)>,
}

impl CodeInfo {
    /// The function containing image offset `off`.
    pub fn func_at(&self, off: u32) -> Option<&str> {
        let i = self.funcs.partition_point(|f| f.0 <= off).checked_sub(1)?;
        (off < self.funcs[i].1).then(|| self.funcs[i].2.as_str())
    }
}

static REGISTRY: spin::RwLock<Vec<Arc<CodeInfo>>> = spin::RwLock::new(Vec::new());

/// Makes a placed image's trap sites known to [`handle_fault`].
pub fn register(info: Arc<CodeInfo>) {
    let mut r = REGISTRY.write();
    let at = r.partition_point(|c| c.start < info.start);
    r.insert(at, info);
}

/// Forgets an image (before its memory is freed).
pub fn unregister(start: u64) {
    REGISTRY.write().retain(|c| c.start != start);
}

/// The image containing `pc`.
pub fn lookup(pc: u64) -> Option<Arc<CodeInfo>> {
    let r = REGISTRY.read();
    let i = r.partition_point(|c| c.start <= pc).checked_sub(1)?;
    (pc < r[i].start + r[i].len).then(|| r[i].clone())
}

/// Saved by `delos_wasm_enter`; one per active call into WASM.
#[repr(C)]
#[derive(Debug)]
pub struct EntryState {
    /// Stack pointer to restore on a trap (offset 0, used by the assembly).
    pub saved_sp: u64,
    /// Trap kind (0 = none).
    pub kind: u32,
    /// Exit status for `proc_exit`.
    pub exit_code: i32,
    /// Faulting instruction.
    pub pc: u64,
    /// The enclosing entry (host → WASM → host → WASM).
    pub prev: *mut EntryState,
}

#[thread_local]
static ACTIVE: Cell<*mut EntryState> = Cell::new(core::ptr::null_mut());

/// Whether this thread/task is inside a call into WASM.
pub fn in_wasm() -> bool {
    !ACTIVE.get().is_null()
}

#[unsafe(no_mangle)]
extern "C" fn delos_wasm_active_state() -> *mut EntryState {
    ACTIVE.get()
}

#[cfg(feature = "std")]
macro_rules! CALL_ACTIVE {
    () => {
        "call {active}"
    };
}
#[cfg(not(feature = "std"))]
macro_rules! CALL_ACTIVE {
    () => {
        "movabs rax, offset {active}\ncall rax"
    };
}

core::arch::global_asm!(
    ".pushsection .text.delos_wasm_enter,\"ax\",@progbits",
    ".global delos_wasm_enter",
    ".type delos_wasm_enter,@function",
    "delos_wasm_enter:",
    ".cfi_startproc",
    "push rbp",
    ".cfi_def_cfa_offset 16",
    ".cfi_offset rbp, -16",
    "mov rbp, rsp",
    ".cfi_def_cfa_register rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    ".cfi_offset rbx, -24",
    ".cfi_offset r12, -32",
    ".cfi_offset r13, -40",
    ".cfi_offset r14, -48",
    ".cfi_offset r15, -56",
    "sub rsp, 8",
    "mov [rdi], rsp",
    "mov rax, rsi",
    "mov rdi, rdx",
    "mov rsi, rcx",
    "mov rdx, r8",
    "call rax",
    "xor eax, eax",
    "2:",
    "lea rsp, [rbp - 40]",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    ".cfi_def_cfa rsp, 8",
    "ret",
    ".cfi_endproc",
    ".size delos_wasm_enter, . - delos_wasm_enter",
    // rdi = the state to return through.
    ".global delos_wasm_unwind_to",
    ".type delos_wasm_unwind_to,@function",
    "delos_wasm_unwind_to:",
    "mov rsp, [rdi]",
    "lea rbp, [rsp + 48]",
    "mov eax, 1",
    "jmp 2b",
    ".size delos_wasm_unwind_to, . - delos_wasm_unwind_to",
    // Entered instead of the faulting instruction; the stack is the faulting one.
    ".global delos_wasm_trap_landing",
    ".type delos_wasm_trap_landing,@function",
    "delos_wasm_trap_landing:",
    "and rsp, -16",
    // Host objects are position independent; kernel crates use the large code model and may
    // be placed anywhere, so they call through an absolute address.
    CALL_ACTIVE!(),
    "mov rdi, rax",
    "jmp delos_wasm_unwind_to",
    ".size delos_wasm_trap_landing, . - delos_wasm_trap_landing",
    ".popsection",
    active = sym delos_wasm_active_state,
);

unsafe extern "C-unwind" {
    // A Rust panic in a host function called by WASM unwinds through the WASM frames (their
    // `.eh_frame` is registered) and through this function (its CFI is above) into `enter`.
    fn delos_wasm_enter(state: *mut EntryState, tramp: u64, vmctx: u64, callee: u64, values: *mut u64) -> u32;
}

unsafe extern "C" {
    fn delos_wasm_unwind_to(state: *mut EntryState) -> !;
    fn delos_wasm_trap_landing();
}

/// Address the platform's fault handler resumes at after [`handle_fault`] accepted a fault.
pub fn landing() -> u64 {
    delos_wasm_trap_landing as *const () as u64
}

/// Called by the platform's fault handler with the faulting instruction. Returns where to
/// resume (the landing) when the fault belongs to WASM code this thread is running, after
/// recording the trap; `None` leaves the fault to the platform.
pub fn handle_fault(pc: u64) -> Option<u64> {
    let state = ACTIVE.get();
    if state.is_null() {
        return None;
    }
    let info = lookup(pc)?;
    let off = (pc - info.start) as u32;
    let kind = match info.traps.binary_search_by_key(&off, |t| t.offset) {
        Ok(i) => info.traps[i].kind,
        Err(_) => TrapKind::Fault,
    };
    // SAFETY: ACTIVE only holds states of live `enter` calls on this thread.
    unsafe {
        (*state).kind = kind as u32;
        (*state).pc = pc;
    }
    Some(landing())
}

/// Ends the innermost call into WASM with a trap (from a runtime or host function called by
/// WASM code).
///
/// # Safety
/// Must be called (directly or through frames that own nothing needing a drop) from code that
/// WASM called on this thread; the frames in between are skipped without being unwound.
pub unsafe fn raise(kind: TrapKind, exit_code: i32) -> ! {
    let state = ACTIVE.get();
    assert!(!state.is_null(), "trap raised outside WASM");
    // SAFETY: as above, `state` belongs to a live `enter`; the caller vouches for the frames.
    unsafe {
        (*state).kind = kind as u32;
        (*state).exit_code = exit_code;
        delos_wasm_unwind_to(state)
    }
}

/// Calls `callee` through the array trampoline `tramp` with `values` (arguments in, results
/// out), catching traps.
///
/// # Safety
/// `tramp` must be the trampoline for `callee`'s signature, `vmctx` the callee's context and
/// `values` large enough for its parameters and results.
pub unsafe fn enter(tramp: u64, vmctx: u64, callee: u64, values: *mut u64) -> Result<(), Trap> {
    /// Unlinks the entry state however the call ends (returns, traps, or a panic unwinds).
    struct Unlink(*mut EntryState);
    impl Drop for Unlink {
        fn drop(&mut self) {
            ACTIVE.set(self.0);
        }
    }
    let mut state = EntryState { saved_sp: 0, kind: 0, exit_code: 0, pc: 0, prev: ACTIVE.get() };
    let unlink = Unlink(state.prev);
    ACTIVE.set(&mut state);
    // SAFETY: the caller guarantees the call is well-typed; the state outlives the call.
    let r = unsafe { delos_wasm_enter(&mut state, tramp, vmctx, callee, values) };
    drop(unlink);
    if r == 0 {
        return Ok(());
    }
    let kind = TrapKind::from_u32(state.kind).unwrap_or(TrapKind::Fault);
    let (mut function, mut wasm_offset) = (None, None);
    if state.pc != 0
        && let Some(info) = lookup(state.pc)
    {
        let off = (state.pc - info.start) as u32;
        function = info.func_at(off).map(String::from);
        if let Ok(i) = info.traps.binary_search_by_key(&off, |t| t.offset) {
            wasm_offset = Some(info.traps[i].wasm_offset);
        }
    }
    Err(Trap { kind, pc: state.pc, function, wasm_offset, exit_code: state.exit_code })
}
