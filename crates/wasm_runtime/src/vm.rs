//! The structures compiled code reads at run time, with the offsets the translator uses.
//!
//! Every compiled function takes a `*mut VMContext` as its first argument. Memories, tables
//! and globals are reached through pointers in it so that imported ones (owned by another
//! instance) and defined ones look the same to the code. All layouts are `repr(C)` and the
//! offsets below are checked against them at compile time.

use core::mem::offset_of;

/// A linear memory as the code sees it.
#[repr(C)]
#[derive(Debug)]
pub struct VMMemory {
    /// Address of byte 0.
    pub base: *mut u8,
    /// Current size in bytes.
    pub len: u64,
}

/// A table of references as the code sees it. Elements are 8 bytes: a funcref is a pointer to
/// a [`VMFuncRef`] (0 = null), an externref an opaque non-zero word (0 = null).
#[repr(C)]
#[derive(Debug)]
pub struct VMTable {
    /// Element 0.
    pub elems: *mut u64,
    /// Current number of elements.
    pub len: u64,
}

/// What a funcref points at: enough to call the function from anywhere.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VMFuncRef {
    /// Entry point.
    pub code: u64,
    /// Canonical signature id (equal ids = equal function types, across modules).
    pub sig: u64,
    /// The callee's context.
    pub vmctx: *mut VMContext,
}

/// Functions of the runtime that compiled code calls through [`VMContext::builtins`]. Each
/// returns 0 on success or a trap kind the code turns into a trap, so no Rust frame ever
/// has to be unwound by a trap.
#[repr(C)]
pub struct Builtins {
    /// `memory.grow`: (vmctx, memory, delta pages) → old size in pages or -1.
    pub memory_grow: unsafe extern "C" fn(*mut VMContext, u32, u32) -> i32,
    /// `memory.fill`: (vmctx, memory, dst, value, len) → status.
    pub memory_fill: unsafe extern "C" fn(*mut VMContext, u32, u32, u32, u32) -> u32,
    /// `memory.copy`: (vmctx, dst memory, src memory, dst, src, len) → status.
    pub memory_copy: unsafe extern "C" fn(*mut VMContext, u32, u32, u32, u32, u32) -> u32,
    /// `memory.init`: (vmctx, memory, data segment, dst, src, len) → status.
    pub memory_init: unsafe extern "C" fn(*mut VMContext, u32, u32, u32, u32, u32) -> u32,
    /// `data.drop`: (vmctx, data segment).
    pub data_drop: unsafe extern "C" fn(*mut VMContext, u32),
    /// `table.init`: (vmctx, table, element segment, dst, src, len) → status.
    pub table_init: unsafe extern "C" fn(*mut VMContext, u32, u32, u32, u32, u32) -> u32,
    /// `table.copy`: (vmctx, dst table, src table, dst, src, len) → status.
    pub table_copy: unsafe extern "C" fn(*mut VMContext, u32, u32, u32, u32, u32) -> u32,
    /// `elem.drop`: (vmctx, element segment).
    pub elem_drop: unsafe extern "C" fn(*mut VMContext, u32),
    /// `table.grow`: (vmctx, table, init value, delta) → old size or -1.
    pub table_grow: unsafe extern "C" fn(*mut VMContext, u32, u64, u32) -> i32,
    /// `table.fill`: (vmctx, table, dst, value, len) → status.
    pub table_fill: unsafe extern "C" fn(*mut VMContext, u32, u32, u64, u32) -> u32,
}

/// What instances linked together share: the stack limit and the fuel of the task that
/// runs them.
#[repr(C)]
pub struct VMStore {
    /// Lowest stack address the code may use; function prologues trap below it.
    pub stack_limit: u64,
    /// Remaining fuel; loop headers and function entries take one unit, and a negative value
    /// traps (only when the module was compiled with fuel).
    pub fuel: i64,
    /// The runtime's store state.
    pub host: *const (),
}

/// The per-instance context every compiled function receives.
#[repr(C)]
pub struct VMContext {
    /// The instance's memory 0 (null when it has none).
    pub memory: *mut VMMemory,
    /// The store this instance belongs to (shared by every instance linked together).
    pub store: *mut VMStore,
    /// Global `i` lives at `*globals[i]` (8 bytes).
    pub globals: *const *mut u64,
    /// Function `i`'s funcref record (imports resolved).
    pub funcs: *const VMFuncRef,
    /// Table `i` is `*tables[i]`.
    pub tables: *const *mut VMTable,
    /// Runtime functions.
    pub builtins: *const Builtins,
    /// Back pointer to the owning instance's state.
    pub instance: *mut (),
}

/// Offset of [`VMContext::memory`].
pub const VMCTX_MEMORY: i32 = offset_of!(VMContext, memory) as i32;
/// Offset of [`VMContext::store`].
pub const VMCTX_STORE: i32 = offset_of!(VMContext, store) as i32;
/// Offset of [`VMStore::fuel`].
pub const STORE_FUEL: i32 = offset_of!(VMStore, fuel) as i32;
/// Offset of [`VMStore::stack_limit`].
pub const STORE_STACK_LIMIT: i32 = offset_of!(VMStore, stack_limit) as i32;
/// Offset of [`VMContext::globals`].
pub const VMCTX_GLOBALS: i32 = offset_of!(VMContext, globals) as i32;
/// Offset of [`VMContext::funcs`].
pub const VMCTX_FUNCS: i32 = offset_of!(VMContext, funcs) as i32;
/// Offset of [`VMContext::tables`].
pub const VMCTX_TABLES: i32 = offset_of!(VMContext, tables) as i32;
/// Offset of [`VMContext::builtins`].
pub const VMCTX_BUILTINS: i32 = offset_of!(VMContext, builtins) as i32;
/// Offset of [`VMMemory::base`].
pub const MEMORY_BASE: i32 = offset_of!(VMMemory, base) as i32;
/// Offset of [`VMMemory::len`].
pub const MEMORY_LEN: i32 = offset_of!(VMMemory, len) as i32;
/// Offset of [`VMTable::elems`].
pub const TABLE_ELEMS: i32 = offset_of!(VMTable, elems) as i32;
/// Offset of [`VMTable::len`].
pub const TABLE_LEN: i32 = offset_of!(VMTable, len) as i32;
/// Offset of [`VMFuncRef::code`].
pub const FUNCREF_CODE: i32 = offset_of!(VMFuncRef, code) as i32;
/// Offset of [`VMFuncRef::sig`].
pub const FUNCREF_SIG: i32 = offset_of!(VMFuncRef, sig) as i32;
/// Offset of [`VMFuncRef::vmctx`].
pub const FUNCREF_VMCTX: i32 = offset_of!(VMFuncRef, vmctx) as i32;
/// Size of a [`VMFuncRef`].
pub const FUNCREF_SIZE: i64 = core::mem::size_of::<VMFuncRef>() as i64;

/// Index of each builtin in [`Builtins`] (each is one pointer).
#[derive(Debug, Clone, Copy)]
#[repr(u8)]
pub enum Builtin {
    /// `memory.grow`.
    MemoryGrow = 0,
    /// `memory.fill`.
    MemoryFill,
    /// `memory.copy`.
    MemoryCopy,
    /// `memory.init`.
    MemoryInit,
    /// `data.drop`.
    DataDrop,
    /// `table.init`.
    TableInit,
    /// `table.copy`.
    TableCopy,
    /// `elem.drop`.
    ElemDrop,
    /// `table.grow`.
    TableGrow,
    /// `table.fill`.
    TableFill,
}

const _: () = assert!(core::mem::size_of::<Builtins>() == 10 * 8);

/// The WASM page size.
pub const PAGE: u64 = 65536;
