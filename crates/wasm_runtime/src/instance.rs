//! Compiled modules, stores, instances: placing code, building memories/tables/globals,
//! resolving imports, running segments and the start function, calling exports.
//!
//! Ownership: an [`Instance`] owns its code block (freed on drop, after its trap sites are
//! unregistered), its context and its defined memories/tables/globals (shared `Arc`s, so a
//! module that imports them keeps them alive). A [`Store`] holds what every instance linked
//! together shares (stack limit, fuel, WASI state); one task uses a store at a time.

use crate::compile::{self, Config, Image};
use crate::module::{ImportKind, Init, ModuleInfo, SegmentMode};
use crate::trap::{self, CodeInfo, Trap, TrapKind};
use crate::vm::{self, Builtins, VMContext, VMFuncRef, VMMemory, VMStore, VMTable};
use crate::wasi::WasiCtx;
use crate::{Error, Platform};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use wasmparser::{ExternalKind, FuncType, GlobalType, RefType, ValType};

/// A WASM value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Val {
    /// i32.
    I32(i32),
    /// i64.
    I64(i64),
    /// f32 (bits).
    F32(u32),
    /// f64 (bits).
    F64(u64),
    /// funcref (address of a funcref record, 0 = null).
    FuncRef(u64),
    /// externref (opaque, 0 = null).
    ExternRef(u64),
}

impl Val {
    fn raw(self) -> u64 {
        match self {
            Val::I32(v) => v as u32 as u64,
            Val::I64(v) => v as u64,
            Val::F32(v) => v as u64,
            Val::F64(v) | Val::FuncRef(v) | Val::ExternRef(v) => v,
        }
    }

    fn from_raw(t: ValType, raw: u64) -> Val {
        match t {
            ValType::I32 => Val::I32(raw as u32 as i32),
            ValType::I64 => Val::I64(raw as i64),
            ValType::F32 => Val::F32(raw as u32),
            ValType::F64 => Val::F64(raw),
            ValType::Ref(r) if r.is_func_ref() => Val::FuncRef(raw),
            _ => Val::ExternRef(raw),
        }
    }

    fn matches(self, t: ValType) -> bool {
        matches!(
            (self, t),
            (Val::I32(_), ValType::I32) | (Val::I64(_), ValType::I64) | (Val::F32(_), ValType::F32) | (Val::F64(_), ValType::F64)
        ) || matches!((self, t), (Val::FuncRef(_), ValType::Ref(r)) if r.is_func_ref())
            || matches!((self, t), (Val::ExternRef(_), ValType::Ref(r)) if r.is_extern_ref())
    }
}

/// Largest memory this engine grows to (pages), whatever the module allows.
pub const MAX_PAGES: u64 = 16384;
/// Largest table this engine grows to.
pub const MAX_TABLE: u64 = 10_000_000;

/// A linear memory.
pub struct Memory {
    vm: UnsafeCell<VMMemory>,
    storage: spin::Mutex<Storage>,
    max_pages: u64,
    /// Its type.
    pub ty: wasmparser::MemoryType,
}

/// Where a memory's bytes live.
enum Storage {
    /// A heap vector (explicit bounds checks; growing may move it).
    Heap(Vec<u8>),
    /// A reservation of [`GUARDED_RESERVATION`] bytes from the platform, committed up to the
    /// current size; everything above faults (guard-region bounds checks). Never moves.
    Reserved { platform: &'static dyn Platform },
}

/// Address space reserved for a guard-region memory: 4 GiB of index, 4 GiB of offset, a page.
pub const GUARDED_RESERVATION: usize = (8 << 30) + 65536;

// SAFETY: `vm` is written only under `storage`'s lock (by `grow`) and read by the code of the
// one task using the store; see the module docs.
unsafe impl Send for Memory {}
// SAFETY: as above.
unsafe impl Sync for Memory {}

impl Drop for Memory {
    fn drop(&mut self) {
        if let Storage::Reserved { platform } = &*self.storage.lock() {
            platform.release(self.vm.get_mut().base, GUARDED_RESERVATION);
        }
    }
}

fn check_memory_type(ty: &wasmparser::MemoryType) -> Result<u64, Error> {
    if ty.memory64 || ty.shared {
        return Err(Error::Unsupported("64-bit or shared memory".into()));
    }
    let max_pages = ty.maximum.unwrap_or(65536).min(MAX_PAGES);
    if ty.initial > max_pages {
        return Err(Error::Memory(format!("{} initial pages (this engine allows {MAX_PAGES})", ty.initial)));
    }
    Ok(max_pages)
}

impl Memory {
    /// A memory of `ty.initial` pages on the heap (for code with explicit bounds checks).
    pub fn new(ty: wasmparser::MemoryType) -> Result<Arc<Memory>, Error> {
        let max_pages = check_memory_type(&ty)?;
        let len = (ty.initial * vm::PAGE) as usize;
        let mut data = Vec::new();
        data.try_reserve_exact(len).map_err(|_| Error::Memory(format!("{len} bytes of linear memory")))?;
        data.resize(len, 0);
        let vm = VMMemory { base: data.as_mut_ptr(), len: len as u64 };
        Ok(Arc::new(Memory { vm: UnsafeCell::new(vm), storage: spin::Mutex::new(Storage::Heap(data)), max_pages, ty }))
    }

    /// A memory in a guarded reservation (for code compiled without bounds checks).
    pub fn new_guarded(ty: wasmparser::MemoryType, platform: &'static dyn Platform) -> Result<Arc<Memory>, Error> {
        let max_pages = check_memory_type(&ty)?;
        let base = platform
            .reserve(GUARDED_RESERVATION)
            .ok_or_else(|| Error::Unsupported("guard-region memories on this platform (compile with bounds checks)".into()))?;
        let len = (ty.initial * vm::PAGE) as usize;
        if !platform.commit(base, len) {
            platform.release(base, GUARDED_RESERVATION);
            return Err(Error::Memory(format!("{len} bytes of linear memory")));
        }
        let vm = VMMemory { base, len: len as u64 };
        Ok(Arc::new(Memory { vm: UnsafeCell::new(vm), storage: spin::Mutex::new(Storage::Reserved { platform }), max_pages, ty }))
    }

    /// Whether the memory sits in a guarded reservation.
    pub fn is_guarded(&self) -> bool {
        matches!(*self.storage.lock(), Storage::Reserved { .. })
    }

    fn vm(&self) -> *mut VMMemory {
        self.vm.get()
    }

    /// Current size in bytes.
    pub fn len(&self) -> u64 {
        let _g = self.storage.lock();
        // SAFETY: under the lock.
        unsafe { (*self.vm.get()).len }
    }

    /// Whether the memory has no pages.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Grows by `delta` pages; returns the old size in pages or `None`.
    pub fn grow(&self, delta: u64) -> Option<u64> {
        let mut st = self.storage.lock();
        // SAFETY: under the lock; the code re-reads base and len after every call.
        let vm = unsafe { &mut *self.vm.get() };
        let old = vm.len / vm::PAGE;
        let new = old.checked_add(delta)?;
        if new > self.max_pages {
            return None;
        }
        let len = (new * vm::PAGE) as usize;
        match &mut *st {
            Storage::Heap(d) => {
                let more = len - d.len();
                d.try_reserve_exact(more).ok()?;
                d.resize(len, 0);
                *vm = VMMemory { base: d.as_mut_ptr(), len: len as u64 };
            }
            Storage::Reserved { platform } => {
                if !platform.commit(vm.base, len) {
                    return None;
                }
                vm.len = len as u64;
            }
        }
        Some(old)
    }

    /// Runs `f` on the memory's bytes.
    pub fn with<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let _g = self.storage.lock();
        // SAFETY: under the lock; base..base+len is the memory's committed, writable range.
        let bytes = unsafe {
            let vm = &*self.vm.get();
            if vm.len == 0 { &mut [][..] } else { core::slice::from_raw_parts_mut(vm.base, vm.len as usize) }
        };
        f(bytes)
    }
}

/// A table of references.
pub struct Table {
    vm: UnsafeCell<VMTable>,
    data: spin::Mutex<Vec<u64>>,
    /// Where the table's storage is accounted (see [`Platform::charge`]).
    charged: Option<&'static dyn Platform>,
    /// Its type.
    pub ty: wasmparser::TableType,
}

// SAFETY: like `Memory`.
unsafe impl Send for Table {}
// SAFETY: like `Memory`.
unsafe impl Sync for Table {}

impl Table {
    /// A table of `ty.initial` null elements.
    pub fn new(ty: wasmparser::TableType) -> Result<Arc<Table>, Error> {
        Table::new_charged(ty, None)
    }

    /// Like [`Table::new`], its storage accounted with `platform` (creation and growth fail
    /// when the platform refuses).
    pub fn new_charged(ty: wasmparser::TableType, platform: Option<&'static dyn Platform>) -> Result<Arc<Table>, Error> {
        if ty.initial > MAX_TABLE {
            return Err(Error::Memory(format!("table of {} elements", ty.initial)));
        }
        if platform.is_some_and(|p| !p.charge(ty.initial * 8)) {
            return Err(Error::Memory(format!("table of {} elements: over the memory budget", ty.initial)));
        }
        let mut data = alloc::vec![0u64; ty.initial as usize];
        let t = Table {
            vm: UnsafeCell::new(VMTable { elems: data.as_mut_ptr(), len: data.len() as u64 }),
            data: spin::Mutex::new(data),
            charged: platform,
            ty,
        };
        Ok(Arc::new(t))
    }

    fn sync(&self, d: &mut Vec<u64>) {
        // SAFETY: called under the data lock.
        unsafe { *self.vm.get() = VMTable { elems: d.as_mut_ptr(), len: d.len() as u64 } };
    }

    /// Grows by `delta` elements of `init`; returns the old size or `None`.
    pub fn grow(&self, delta: u64, init: u64) -> Option<u64> {
        let mut d = self.data.lock();
        let old = d.len() as u64;
        let new = old.checked_add(delta)?;
        if new > self.ty.maximum.unwrap_or(u32::MAX as u64).min(MAX_TABLE) {
            return None;
        }
        if self.charged.is_some_and(|p| !p.charge(delta * 8)) {
            return None;
        }
        if d.try_reserve_exact(delta as usize).is_err() {
            if let Some(p) = self.charged {
                p.refund(delta * 8);
            }
            return None;
        }
        d.resize(new as usize, init);
        self.sync(&mut d);
        Some(old)
    }

    /// Runs `f` on the elements.
    pub fn with<R>(&self, f: impl FnOnce(&mut [u64]) -> R) -> R {
        f(&mut self.data.lock())
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        if let Some(p) = self.charged {
            p.refund(self.data.get_mut().len() as u64 * 8);
        }
    }
}

/// A global variable.
pub struct Global {
    cell: UnsafeCell<u64>,
    /// Its type.
    pub ty: GlobalType,
}

// SAFETY: like `Memory`.
unsafe impl Send for Global {}
// SAFETY: like `Memory`.
unsafe impl Sync for Global {}

impl Global {
    /// A global holding `v`.
    pub fn new(ty: GlobalType, v: Val) -> Arc<Global> {
        Arc::new(Global { cell: UnsafeCell::new(v.raw()), ty })
    }

    /// Sets its value (the type is the caller's business: used to carry state across a swap).
    pub fn set(&self, v: Val) {
        // SAFETY: as in `get`.
        unsafe { *self.cell.get() = v.raw() };
    }

    /// Its value.
    pub fn get(&self) -> Val {
        // SAFETY: plain read of a cell only WASM code of the same task writes.
        Val::from_raw(self.ty.content_type, unsafe { *self.cell.get() })
    }
}

/// A function as something to import: where its code is and what context it wants.
#[derive(Clone)]
pub struct Func {
    /// Entry point.
    pub code: u64,
    /// Its type.
    pub ty: FuncType,
    /// The callee's context; null for a host function, which gets its caller's.
    pub vmctx: *mut VMContext,
    /// Keeps the exporting instance alive.
    pub owner: Option<Arc<InstanceInner>>,
}

// SAFETY: the context pointer is only dereferenced by the code it belongs to.
unsafe impl Send for Func {}
// SAFETY: as above.
unsafe impl Sync for Func {}

/// Something an instance exports or imports.
#[derive(Clone)]
pub enum Extern {
    /// A function.
    Func(Func),
    /// A memory.
    Memory(Arc<Memory>),
    /// A table.
    Table(Arc<Table>),
    /// A global.
    Global(Arc<Global>),
}

/// Named externs to satisfy imports from.
#[derive(Clone, Default)]
pub struct Linker {
    defs: BTreeMap<(String, String), Extern>,
}

impl Linker {
    /// An empty linker.
    pub fn new() -> Linker {
        Linker::default()
    }

    /// Defines `module.name`.
    pub fn define(&mut self, module: &str, name: &str, e: Extern) {
        self.defs.insert((module.to_string(), name.to_string()), e);
    }

    /// Defines every export of `instance` under `module`.
    pub fn instance(&mut self, module: &str, instance: &Instance) {
        for e in &instance.inner.module.exports {
            if let Some(x) = instance.export(&e.name) {
                self.define(module, &e.name, x);
            }
        }
    }

    /// Looks up `module.name`.
    pub fn get(&self, module: &str, name: &str) -> Option<&Extern> {
        self.defs.get(&(module.to_string(), name.to_string()))
    }
}

/// A validated and compiled module, not yet placed.
pub struct Module {
    /// What the module declares.
    pub info: ModuleInfo,
    /// Its code.
    pub image: Image,
    /// How it was compiled.
    pub config: Config,
}

impl Module {
    /// Validates and compiles `wasm`.
    pub fn new(wasm: &[u8], config: Config) -> Result<Module, Error> {
        let info = ModuleInfo::parse(wasm)?;
        let image = compile::compile(&info, wasm, &config)?;
        Ok(Module { info, image, config })
    }

    /// Validates and compiles `wasm`, with `workers`' helpers compiling functions beside the
    /// caller (the same code as [`Module::new`]'s).
    pub fn new_with(wasm: &[u8], config: Config, workers: &dyn compile::Workers) -> Result<Module, Error> {
        let info = ModuleInfo::parse(wasm)?;
        let image = compile::compile_with(&info, wasm, &config, workers)?;
        Ok(Module { info, image, config })
    }
}

/// Shared by every instance linked together; see the module docs.
pub struct Store {
    inner: Arc<StoreInner>,
}

/// A store's state.
pub struct StoreInner {
    vm: UnsafeCell<VMStore>,
    platform: &'static dyn Platform,
    /// WASI state (arguments, environment, output).
    pub wasi: spin::Mutex<WasiCtx>,
    /// Every instance created in the store, alive as long as the store: tables and
    /// functions of one may point into another (even one whose initialization trapped).
    instances: spin::Mutex<Vec<Arc<InstanceInner>>>,
}

// SAFETY: the store is used by one task at a time (module docs).
unsafe impl Send for StoreInner {}
// SAFETY: as above.
unsafe impl Sync for StoreInner {}

impl Store {
    /// A store on `platform`.
    pub fn new(platform: &'static dyn Platform) -> Store {
        let inner = Arc::new(StoreInner {
            vm: UnsafeCell::new(VMStore { stack_limit: 0, fuel: i64::MAX, host: core::ptr::null() }),
            platform,
            wasi: spin::Mutex::new(WasiCtx::default()),
            instances: spin::Mutex::new(Vec::new()),
        });
        // SAFETY: nobody else has the store yet.
        unsafe { (*inner.vm.get()).host = Arc::as_ptr(&inner) as *const () };
        Store { inner }
    }

    /// Sets the fuel (units: function entries + loop iterations) for modules compiled with fuel.
    pub fn set_fuel(&self, fuel: i64) {
        // SAFETY: one task uses the store at a time.
        unsafe { (*self.inner.vm.get()).fuel = fuel };
    }

    /// Remaining fuel.
    pub fn fuel(&self) -> i64 {
        // SAFETY: as above.
        unsafe { (*self.inner.vm.get()).fuel }
    }

    /// Lets the store forget `inst` (it is freed once nothing else holds it): for an instance
    /// that was made and then refused, whose functions nobody else references.
    pub fn release(&self, inst: &Instance) {
        self.inner.instances.lock().retain(|i| !Arc::ptr_eq(i, &inst.inner));
    }

    /// The store's WASI state.
    pub fn wasi(&self) -> spin::MutexGuard<'_, WasiCtx> {
        self.inner.wasi.lock()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Instances point at the store; the store's list points at them. Breaking the list
        // here frees every instance nobody else holds.
        let list = core::mem::take(&mut *self.inner.instances.lock());
        drop(list);
    }
}

/// The store state behind a context.
///
/// # Safety
/// `vmctx` must be a live instance's context.
pub unsafe fn store_of<'a>(vmctx: *mut VMContext) -> &'a StoreInner {
    // SAFETY: contexts point at their store, whose `host` is its `StoreInner`.
    unsafe { &*((*(*vmctx).store).host as *const StoreInner) }
}

/// An instance's state (what compiled code reaches through its context).
pub struct InstanceInner {
    /// The module's declarations.
    pub module: ModuleInfo,
    /// Name used for symbols (`wasm::<name>::<function>`).
    pub name: String,
    store: Arc<StoreInner>,
    code: *mut u8,
    code_len: usize,
    code_size: usize,
    trampolines: Vec<u32>,
    func_ranges: Vec<core::ops::Range<u32>>,
    eh_frame: Vec<u8>,
    vmctx: Box<UnsafeCell<VMContext>>,
    /// Written only by [`Instance::relink`]; compiled code reads it through the context.
    funcs: UnsafeCell<Box<[VMFuncRef]>>,
    /// Instances whose functions were relinked in (kept alive).
    relinked: spin::Mutex<Vec<Extern>>,
    /// The arrays the context points at (kept alive here, read only through the context).
    _global_cells: Box<[*mut u64]>,
    globals: Vec<Arc<Global>>,
    _table_ptrs: Box<[*mut VMTable]>,
    tables: Vec<Arc<Table>>,
    memories: Vec<Arc<Memory>>,
    data: spin::Mutex<Vec<Option<Arc<[u8]>>>>,
    elems: spin::Mutex<Vec<Option<Arc<[u64]>>>>,
    _imports: Vec<Extern>,
}

// SAFETY: raw pointers in here point into the instance's own allocations (or shared `Arc`s it
// holds); one task runs an instance at a time.
unsafe impl Send for InstanceInner {}
// SAFETY: as above.
unsafe impl Sync for InstanceInner {}

impl Drop for InstanceInner {
    fn drop(&mut self) {
        trap::unregister(self.code as u64);
        self.store.platform.free_code(self.code, self.code_size);
    }
}

/// An instantiated module.
#[derive(Clone)]
pub struct Instance {
    inner: Arc<InstanceInner>,
}

static BUILTINS: Builtins = Builtins {
    memory_grow: builtins::memory_grow,
    memory_fill: builtins::memory_fill,
    memory_copy: builtins::memory_copy,
    memory_init: builtins::memory_init,
    data_drop: builtins::data_drop,
    table_init: builtins::table_init,
    table_copy: builtins::table_copy,
    elem_drop: builtins::elem_drop,
    table_grow: builtins::table_grow,
    table_fill: builtins::table_fill,
};

fn link_err(i: &crate::module::Import, msg: impl Into<String>) -> Error {
    Error::Link { import: format!("{}.{}", i.module, i.name), msg: msg.into() }
}

fn limits_ok(initial: u64, max: Option<u64>, want_initial: u64, want_max: Option<u64>) -> bool {
    initial >= want_initial
        && match want_max {
            None => true,
            Some(w) => max.is_some_and(|m| m <= w),
        }
}

impl Instance {
    /// Places `module`'s code, resolves its imports with `resolve`, initializes it and runs its
    /// start function. A trap during initialization is `Error::Trap`... reported as
    /// [`InstantiateError::Trap`].
    pub fn new(
        store: &Store,
        module: &Module,
        name: &str,
        resolve: &dyn Fn(&crate::module::Import) -> Option<Extern>,
    ) -> Result<Instance, InstantiateError> {
        let info = &module.info;
        let platform = store.inner.platform;
        // Imports first: nothing is allocated if one is missing.
        let mut imports = Vec::new();
        for i in &info.imports {
            let e = resolve(i).ok_or_else(|| link_err(i, "unknown import"))?;
            match (&i.kind, &e) {
                (ImportKind::Func(t), Extern::Func(f)) => {
                    if info.types[*t as usize] != f.ty {
                        return Err(link_err(i, "incompatible import type").into());
                    }
                }
                (ImportKind::Memory(t), Extern::Memory(m)) => {
                    if !module.config.bounds_checks && !m.is_guarded() {
                        return Err(link_err(i, "code compiled without bounds checks needs a guard-region memory").into());
                    }
                    let cur = m.len() / vm::PAGE;
                    if !limits_ok(cur, m.ty.maximum, t.initial, t.maximum) {
                        return Err(link_err(i, "incompatible import type").into());
                    }
                }
                (ImportKind::Table(t), Extern::Table(tb)) => {
                    let cur = tb.with(|d| d.len() as u64);
                    if t.element_type != tb.ty.element_type || !limits_ok(cur, tb.ty.maximum, t.initial, t.maximum) {
                        return Err(link_err(i, "incompatible import type").into());
                    }
                }
                (ImportKind::Global(t), Extern::Global(g)) => {
                    if *t != g.ty {
                        return Err(link_err(i, "incompatible import type").into());
                    }
                }
                _ => return Err(link_err(i, "incompatible import type").into()),
            }
            imports.push(e);
        }
        // Code.
        let image = &module.image;
        let page = 4096;
        let code_size = image.code.len().div_ceil(page).max(1) * page;
        let code = platform.alloc_code(code_size)?;
        // SAFETY: the platform mapped `code_size` writable bytes at `code`.
        let bytes = unsafe { core::slice::from_raw_parts_mut(code, code_size) };
        bytes[..image.code.len()].copy_from_slice(&image.code);
        let placed = image.relocate(bytes, code as u64, info.imported_funcs).and_then(|_| platform.make_executable(code, code_size));
        if let Err(e) = placed {
            platform.free_code(code, code_size);
            return Err(e.into());
        }
        let eh_frame = image.eh_frame(code as u64).unwrap_or_default();
        let mut funcs_sym = Vec::new();
        for (i, r) in image.funcs.iter().enumerate() {
            let f = info.imported_funcs + i as u32;
            funcs_sym.push((r.start, r.end, format!("wasm::{name}::{}", info.func_name(f))));
        }
        trap::register(Arc::new(CodeInfo {
            start: code as u64,
            len: image.code.len() as u64,
            traps: image.traps.clone(),
            funcs: funcs_sym,
        }));

        let vmctx = Box::new(UnsafeCell::new(VMContext {
            memory: core::ptr::null_mut(),
            store: store.inner.vm.get(),
            globals: core::ptr::null(),
            funcs: core::ptr::null(),
            tables: core::ptr::null(),
            builtins: &BUILTINS,
            instance: core::ptr::null_mut(),
        }));
        let me = vmctx.get();
        // Functions.
        let func_imports: Vec<&Func> = imports.iter().filter_map(|e| if let Extern::Func(f) = e { Some(f) } else { None }).collect();
        let mut funcs = Vec::with_capacity(info.funcs.len());
        for (f, ty) in info.funcs.iter().enumerate() {
            let sig = image.sig_ids[*ty as usize];
            let r = if (f as u32) < info.imported_funcs {
                let Some(x) = func_imports.get(f) else {
                    return Err(Error::Link { import: format!("function {f}"), msg: "missing".into() }.into());
                };
                VMFuncRef { code: x.code, sig, vmctx: if x.vmctx.is_null() { me } else { x.vmctx } }
            } else {
                let r = &image.funcs[f - info.imported_funcs as usize];
                VMFuncRef { code: code as u64 + r.start as u64, sig, vmctx: me }
            };
            funcs.push(r);
        }
        let funcs = funcs.into_boxed_slice();
        let funcs_base = funcs.as_ptr() as u64;
        // Memories, tables, globals (imports first).
        let mut memories = Vec::new();
        let mut tables = Vec::new();
        let mut globals = Vec::new();
        for e in &imports {
            match e {
                Extern::Memory(m) => memories.push(m.clone()),
                Extern::Table(t) => tables.push(t.clone()),
                Extern::Global(g) => globals.push(g.clone()),
                Extern::Func(_) => {}
            }
        }
        for m in &info.memories[info.imported_memories as usize..] {
            memories.push(if module.config.bounds_checks && !platform.reserve_memories() {
                Memory::new(*m)?
            } else {
                Memory::new_guarded(*m, platform)?
            });
        }
        for t in &info.tables[info.imported_tables as usize..] {
            tables.push(Table::new_charged(*t, Some(platform))?);
        }
        let eval = |init: Init, globals: &[Arc<Global>]| -> u64 {
            match init {
                Init::I32(v) => v as u32 as u64,
                Init::I64(v) => v as u64,
                Init::F32(v) => v as u64,
                Init::F64(v) => v,
                Init::RefNull => 0,
                Init::RefFunc(f) => funcs_base + f as u64 * vm::FUNCREF_SIZE as u64,
                Init::GlobalGet(g) => globals.get(g as usize).map(|g| g.get().raw()).unwrap_or(0),
            }
        };
        for (i, init) in info.global_inits.iter().enumerate() {
            let ty = info.globals[info.imported_globals as usize + i];
            let v = eval(*init, &globals);
            globals.push(Global::new(ty, Val::from_raw(ty.content_type, v)));
        }
        let global_cells: Box<[*mut u64]> = globals.iter().map(|g| g.cell.get()).collect();
        let table_ptrs: Box<[*mut VMTable]> = tables.iter().map(|t| t.vm.get()).collect();
        let elems: Vec<Option<Arc<[u64]>>> =
            info.elements.iter().map(|s| Some(s.items.iter().map(|i| eval(*i, &globals)).collect::<Arc<[u64]>>())).collect();
        let data: Vec<Option<Arc<[u8]>>> = info.data.iter().map(|d| Some(Arc::from(d.bytes.as_slice()))).collect();
        // SAFETY: `me` is the context just boxed; nothing runs yet.
        unsafe {
            (*me).memory = memories.first().map(|m| m.vm()).unwrap_or(core::ptr::null_mut());
            (*me).globals = global_cells.as_ptr();
            (*me).funcs = funcs.as_ptr();
            (*me).tables = table_ptrs.as_ptr();
        }
        let inner = Arc::new(InstanceInner {
            module: info.clone(),
            name: name.to_string(),
            store: store.inner.clone(),
            code,
            code_len: image.code.len(),
            code_size,
            trampolines: image.trampolines.clone(),
            func_ranges: image.funcs.clone(),
            eh_frame,
            vmctx,
            funcs: UnsafeCell::new(funcs),
            relinked: spin::Mutex::new(Vec::new()),
            _global_cells: global_cells,
            globals,
            _table_ptrs: table_ptrs,
            tables,
            memories,
            data: spin::Mutex::new(data),
            elems: spin::Mutex::new(elems),
            _imports: imports,
        });
        // SAFETY: as above; the Arc fixes the instance's address.
        unsafe { (*me).instance = Arc::as_ptr(&inner) as *mut () };
        store.inner.instances.lock().push(inner.clone());
        let inst = Instance { inner };
        inst.initialize()?;
        Ok(inst)
    }

    fn initialize(&self) -> Result<(), InstantiateError> {
        let info = &self.inner.module;
        let vmctx = self.vmctx();
        let offset = |init: &Init| -> u32 {
            match init {
                Init::I32(v) => *v as u32,
                Init::GlobalGet(g) => self.inner.globals.get(*g as usize).map(|g| g.get().raw() as u32).unwrap_or(0),
                _ => 0,
            }
        };
        let trap = |kind: TrapKind| InstantiateError::Trap(Trap { kind, pc: 0, function: None, wasm_offset: None, exit_code: 0 });
        for (i, s) in info.elements.iter().enumerate() {
            match &s.mode {
                SegmentMode::Active { index, offset: o } => {
                    let n = s.items.len() as u32;
                    // SAFETY: the context is live; the builtin checks every index.
                    if unsafe { builtins::table_init(vmctx, *index, i as u32, offset(o), 0, n) } != 0 {
                        return Err(trap(TrapKind::TableOutOfBounds));
                    }
                    self.inner.elems.lock()[i] = None;
                }
                SegmentMode::Declared => self.inner.elems.lock()[i] = None,
                SegmentMode::Passive => {}
            }
        }
        for (i, d) in info.data.iter().enumerate() {
            if let SegmentMode::Active { index, offset: o } = &d.mode {
                let n = d.bytes.len() as u32;
                // SAFETY: as above.
                if unsafe { builtins::memory_init(vmctx, *index, i as u32, offset(o), 0, n) } != 0 {
                    return Err(trap(TrapKind::MemoryOutOfBounds));
                }
                self.inner.data.lock()[i] = None;
            }
        }
        if let Some(start) = info.start {
            self.call_index(start, &[]).map_err(|e| match e {
                Error::Trap(t) => InstantiateError::Trap(t),
                other => InstantiateError::Error(other),
            })?;
        }
        Ok(())
    }

    fn vmctx(&self) -> *mut VMContext {
        self.inner.vmctx.get()
    }

    /// The instance's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The module's declarations.
    pub fn module(&self) -> &ModuleInfo {
        &self.inner.module
    }

    /// Code block: (address, bytes of code).
    pub fn code_range(&self) -> (u64, usize) {
        (self.inner.code as u64, self.inner.code_len)
    }

    /// `.eh_frame` for the code (absolute addresses).
    pub fn eh_frame(&self) -> &[u8] {
        &self.inner.eh_frame
    }

    /// Every defined function (symbol `wasm::<name>::<function>`), then the host-to-WASM
    /// trampolines (index `None`, symbol `wasm::<name>::<trampoline N>`), so every byte of the
    /// code has a name.
    pub fn functions(&self) -> Vec<CodeSymbol> {
        let info = &self.inner.module;
        let base = self.inner.code as u64;
        let mut v: Vec<CodeSymbol> = self
            .inner
            .func_ranges
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let f = info.imported_funcs + i as u32;
                CodeSymbol {
                    index: Some(f),
                    symbol: format!("wasm::{}::{}", self.inner.name, info.func_name(f)),
                    addr: base + r.start as u64,
                    size: (r.end - r.start) as u64,
                }
            })
            .collect();
        let mut starts: Vec<u32> = self.inner.trampolines.clone();
        starts.sort_unstable();
        starts.dedup();
        for (n, s) in starts.iter().enumerate() {
            let end = starts.get(n + 1).copied().unwrap_or(self.inner.code_len as u32);
            v.push(CodeSymbol {
                index: None,
                symbol: format!("wasm::{}::<trampoline {n}>", self.inner.name),
                addr: base + *s as u64,
                size: (end - s) as u64,
            });
        }
        v
    }

    /// Memory 0, if any.
    pub fn memory(&self) -> Option<Arc<Memory>> {
        self.inner.memories.first().cloned()
    }

    /// The export called `name`.
    pub fn export(&self, name: &str) -> Option<Extern> {
        let e = self.inner.module.export(name)?;
        let i = e.index as usize;
        Some(match e.kind {
            ExternalKind::Func => {
                let r = self.func_ref(i)?;
                Extern::Func(Func {
                    code: r.code,
                    ty: self.inner.module.func_type(e.index).clone(),
                    vmctx: r.vmctx,
                    owner: Some(self.inner.clone()),
                })
            }
            ExternalKind::Memory => Extern::Memory(self.inner.memories.get(i)?.clone()),
            ExternalKind::Table => Extern::Table(self.inner.tables.get(i)?.clone()),
            ExternalKind::Global => Extern::Global(self.inner.globals.get(i)?.clone()),
            _ => return None,
        })
    }

    fn func_ref(&self, i: usize) -> Option<VMFuncRef> {
        // SAFETY: entries change only in `relink`, which the store's one-task rule orders.
        unsafe { (&*self.inner.funcs.get()).get(i).copied() }
    }

    /// Points every function import `module.name` of this instance at `f` (live relinking:
    /// compiled code loads the callee from this table at each call). Returns how many imports
    /// were rewritten; a type mismatch changes nothing.
    pub fn relink(&self, module: &str, name: &str, f: &Func) -> Result<usize, Error> {
        let info = &self.inner.module;
        let mut targets = Vec::new();
        let mut index = 0usize;
        for i in &info.imports {
            if let ImportKind::Func(t) = i.kind {
                if i.module == module && i.name == name {
                    if info.types[t as usize] != f.ty {
                        return Err(Error::Link { import: format!("{module}.{name}"), msg: "the new function has another type".into() });
                    }
                    targets.push(index);
                }
                index += 1;
            }
        }
        let me = self.vmctx();
        for i in &targets {
            // SAFETY: `i` is an import index inside the table; no call runs (store rule).
            unsafe {
                let slot = &mut (*self.inner.funcs.get())[*i];
                slot.code = f.code;
                slot.vmctx = if f.vmctx.is_null() { me } else { f.vmctx };
            }
        }
        if !targets.is_empty() {
            self.inner.relinked.lock().push(Extern::Func(f.clone()));
        }
        Ok(targets.len())
    }

    /// Whether any table this instance uses holds a reference to one of `other`'s functions
    /// (written there through a shared table): `other` must then stay alive.
    pub fn tables_refer_to(&self, other: &Instance) -> bool {
        // SAFETY: the funcs array is only read for its bounds.
        let funcs = unsafe { &*other.inner.funcs.get() };
        let (lo, hi) = (funcs.as_ptr() as u64, funcs.as_ptr() as u64 + core::mem::size_of_val(&**funcs) as u64);
        self.inner.tables.iter().any(|t| t.with(|d| d.iter().any(|&r| r >= lo && r < hi)))
    }

    /// Whether this instance imports anything from `module`.
    pub fn imports_from(&self, module: &str) -> Vec<String> {
        self.inner.module.imports.iter().filter(|i| i.module == module).map(|i| i.name.clone()).collect()
    }

    /// Calls the exported function `name`.
    pub fn call(&self, name: &str, args: &[Val]) -> Result<Vec<Val>, Error> {
        let e = self.inner.module.export(name).filter(|e| e.kind == ExternalKind::Func).ok_or_else(|| Error::NoExport(name.into()))?;
        self.call_index(e.index, args)
    }

    /// Calls function `index`.
    pub fn call_index(&self, index: u32, args: &[Val]) -> Result<Vec<Val>, Error> {
        let info = &self.inner.module;
        let ty_index = *info.funcs.get(index as usize).ok_or_else(|| Error::NoExport(format!("function {index}")))?;
        let ty = &info.types[ty_index as usize];
        if args.len() != ty.params().len() || !args.iter().zip(ty.params()).all(|(a, t)| a.matches(*t)) {
            return Err(Error::BadArguments(format!("expected {:?}, got {args:?}", ty.params())));
        }
        let mut values: Vec<u64> = args.iter().map(|a| a.raw()).collect();
        values.resize(ty.params().len().max(ty.results().len()), 0);
        let r = self.func_ref(index as usize).ok_or_else(|| Error::NoExport(format!("function {index}")))?;
        let tramp = self.inner.code as u64 + self.inner.trampolines[ty_index as usize] as u64;
        let platform = self.inner.store.platform;
        platform.install_trap_handler()?;
        let vms = self.inner.store.vm.get();
        let sp = current_sp();
        // SAFETY: one task uses the store at a time; an outer call's limit stays if tighter.
        let old_limit = unsafe { (*vms).stack_limit };
        // SAFETY: as above.
        unsafe { (*vms).stack_limit = old_limit.max(platform.stack_limit(sp)) };
        // SAFETY: the trampoline matches the callee's type (both from the type index), the
        // context is the callee's, and `values` holds max(params, results) slots.
        let res = unsafe { trap::enter(tramp, r.vmctx as u64, r.code, values.as_mut_ptr()) };
        // SAFETY: as above.
        unsafe { (*vms).stack_limit = old_limit };
        res.map_err(Error::Trap)?;
        Ok(ty.results().iter().enumerate().map(|(j, t)| Val::from_raw(*t, values[j])).collect())
    }
}

#[inline(never)]
fn current_sp() -> u64 {
    let sp: u64;
    // SAFETY: reads rsp.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}

/// Why instantiation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstantiateError {
    /// Linking or resources.
    Error(Error),
    /// A segment or the start function trapped.
    Trap(Trap),
}

impl From<Error> for InstantiateError {
    fn from(e: Error) -> Self {
        InstantiateError::Error(e)
    }
}

impl core::fmt::Display for InstantiateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            InstantiateError::Error(e) => e.fmt(f),
            InstantiateError::Trap(t) => t.fmt(f),
        }
    }
}

/// The runtime functions compiled code calls (see [`vm::Builtins`]).
mod builtins {
    use super::*;

    const OOB: u32 = 1;

    unsafe fn inst<'a>(vmctx: *mut VMContext) -> &'a InstanceInner {
        // SAFETY: the caller passes a live context, whose `instance` is its InstanceInner.
        unsafe { &*((*vmctx).instance as *const InstanceInner) }
    }

    fn range(start: u32, len: u32, size: usize) -> Option<core::ops::Range<usize>> {
        let end = start as u64 + len as u64;
        (end <= size as u64).then_some(start as usize..end as usize)
    }

    pub(super) unsafe extern "C" fn memory_grow(vmctx: *mut VMContext, mem: u32, delta: u32) -> i32 {
        // SAFETY: called by compiled code with its context.
        let i = unsafe { inst(vmctx) };
        i.memories.get(mem as usize).and_then(|m| m.grow(delta as u64)).map(|o| o as i32).unwrap_or(-1)
    }

    pub(super) unsafe extern "C" fn memory_fill(vmctx: *mut VMContext, mem: u32, dst: u32, val: u32, len: u32) -> u32 {
        // SAFETY: as above.
        let i = unsafe { inst(vmctx) };
        let Some(m) = i.memories.get(mem as usize) else { return OOB };
        m.with(|d| match range(dst, len, d.len()) {
            Some(r) => {
                d[r].fill(val as u8);
                0
            }
            None => OOB,
        })
    }

    pub(super) unsafe extern "C" fn memory_copy(vmctx: *mut VMContext, dm: u32, sm: u32, dst: u32, src: u32, len: u32) -> u32 {
        // SAFETY: as above.
        let i = unsafe { inst(vmctx) };
        if dm != sm {
            return OOB;
        }
        let Some(m) = i.memories.get(dm as usize) else { return OOB };
        m.with(|d| match (range(dst, len, d.len()), range(src, len, d.len())) {
            (Some(dr), Some(sr)) => {
                d.copy_within(sr, dr.start);
                0
            }
            _ => OOB,
        })
    }

    pub(super) unsafe extern "C" fn memory_init(vmctx: *mut VMContext, mem: u32, seg: u32, dst: u32, src: u32, len: u32) -> u32 {
        // SAFETY: as above.
        let i = unsafe { inst(vmctx) };
        let data = i.data.lock().get(seg as usize).cloned().flatten();
        let bytes: &[u8] = data.as_deref().unwrap_or(&[]);
        let Some(m) = i.memories.get(mem as usize) else { return OOB };
        let Some(sr) = range(src, len, bytes.len()) else { return OOB };
        m.with(|d| match range(dst, len, d.len()) {
            Some(dr) => {
                d[dr].copy_from_slice(&bytes[sr]);
                0
            }
            None => OOB,
        })
    }

    pub(super) unsafe extern "C" fn data_drop(vmctx: *mut VMContext, seg: u32) {
        // SAFETY: as above.
        let i = unsafe { inst(vmctx) };
        if let Some(s) = i.data.lock().get_mut(seg as usize) {
            *s = None;
        }
    }

    pub(super) unsafe extern "C" fn table_init(vmctx: *mut VMContext, t: u32, seg: u32, dst: u32, src: u32, len: u32) -> u32 {
        // SAFETY: as above.
        let i = unsafe { inst(vmctx) };
        let items = i.elems.lock().get(seg as usize).cloned().flatten();
        let items: &[u64] = items.as_deref().unwrap_or(&[]);
        let Some(tb) = i.tables.get(t as usize) else { return OOB };
        let Some(sr) = range(src, len, items.len()) else { return OOB };
        tb.with(|d| match range(dst, len, d.len()) {
            Some(dr) => {
                d[dr].copy_from_slice(&items[sr]);
                0
            }
            None => OOB,
        })
    }

    pub(super) unsafe extern "C" fn table_copy(vmctx: *mut VMContext, dt: u32, st: u32, dst: u32, src: u32, len: u32) -> u32 {
        // SAFETY: as above.
        let i = unsafe { inst(vmctx) };
        let (Some(d), Some(s)) = (i.tables.get(dt as usize), i.tables.get(st as usize)) else { return OOB };
        if Arc::ptr_eq(d, s) {
            return d.with(|e| match (range(dst, len, e.len()), range(src, len, e.len())) {
                (Some(dr), Some(sr)) => {
                    e.copy_within(sr, dr.start);
                    0
                }
                _ => OOB,
            });
        }
        let Some(items) = s.with(|e| range(src, len, e.len()).map(|r| e[r].to_vec())) else { return OOB };
        d.with(|e| match range(dst, len, e.len()) {
            Some(dr) => {
                e[dr].copy_from_slice(&items);
                0
            }
            None => OOB,
        })
    }

    pub(super) unsafe extern "C" fn elem_drop(vmctx: *mut VMContext, seg: u32) {
        // SAFETY: as above.
        let i = unsafe { inst(vmctx) };
        if let Some(s) = i.elems.lock().get_mut(seg as usize) {
            *s = None;
        }
    }

    pub(super) unsafe extern "C" fn table_grow(vmctx: *mut VMContext, t: u32, init: u64, delta: u32) -> i32 {
        // SAFETY: as above.
        let i = unsafe { inst(vmctx) };
        i.tables.get(t as usize).and_then(|tb| tb.grow(delta as u64, init)).map(|o| o as i32).unwrap_or(-1)
    }

    pub(super) unsafe extern "C" fn table_fill(vmctx: *mut VMContext, t: u32, dst: u32, val: u64, len: u32) -> u32 {
        // SAFETY: as above.
        let i = unsafe { inst(vmctx) };
        let Some(tb) = i.tables.get(t as usize) else { return OOB };
        tb.with(|d| match range(dst, len, d.len()) {
            Some(r) => {
                d[r].fill(val);
                0
            }
            None => OOB,
        })
    }
}

/// Whether a reference type is funcref.
pub fn is_funcref(r: RefType) -> bool {
    r.is_func_ref()
}

/// A named piece of an instance's compiled code (see [`Instance::functions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeSymbol {
    /// The WASM function index, or `None` for a host-to-WASM trampoline.
    pub index: Option<u32>,
    /// Its symbol name, `wasm::<module>::<function>`.
    pub symbol: String,
    /// Where its code starts.
    pub addr: u64,
    /// Code bytes.
    pub size: u64,
}
