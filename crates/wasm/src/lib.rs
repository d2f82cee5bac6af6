//! `wasm`: compiles and runs WebAssembly modules inside the kernel.
//!
//! ```text
//! wasm run FILE [--invoke FUNC] [--fuel N] [--repeat N] [--trusted] [ARGS...]
//!                                                       compile, run _start (WASI) or FUNC, unload
//! wasm load NAME FILE [--trusted]                       compile and keep as crate wasm:NAME
//! wasm call NAME FUNC [ARGS...]                         call an export of a loaded module
//! wasm unload NAME                                      remove it (code, symbols, memory)
//! wasm swap NAME FILE                                   replace a loaded module live
//! wasm list                                             loaded modules and their functions
//! wasm spec [FILTER]                                    the image's spec-suite subset, in the kernel
//! ```
//!
//! FILE is a name in the boot image's `wasm/` directory (or a full `/boot/...` path), or a
//! file sent with `make push WASM=FILE`. Every
//! compiled module becomes a crate `wasm:NAME` of the applications namespace with one section
//! per function named `wasm::NAME::FUNCTION` and its `.eh_frame`, so `addr2sym`, `sym2addr`,
//! `ns`, backtraces and the unwinder see JIT code like any other. Imports are capabilities:
//! WASI (`wasi_snapshot_preview1`), the `delos` module (host functions made for WASM, every
//! pointer checked against the caller's memory: `print`, `uptime_ms`, `backtrace`, `panic`) and
//! other loaded modules' exports; anything else is refused before instantiation, naming the
//! import. Only a module run `--trusted` may import exported kernel symbols by name (called
//! as `extern "C" fn(vmctx, args...)`), and the command says so. `--repeat N` runs a module N
//! times and compares the peaks of memory in use over the first and the last runs (the leak
//! check: `nano_core::leakcheck`).
//! Compilation and the call run in a task of their own with a 1 MiB stack, so a trap or a
//! fault ends only that call. With more than one CPU, the parked CPUs compile functions beside
//! that task (`helpers`; `--serial-compile` to compile alone): the code is the same bytes.
//!
//! Loaded modules share one store and link to each other by name: an import from module
//! `counter` is `counter`'s export. `wasm swap NAME FILE` compiles the new version, checks that
//! it exports everything other modules import from NAME with the same types, carries the
//! linear memory and the exported mutable globals over, rewrites the importers' function
//! tables to the new code (the next call runs it) and re-registers crate `wasm:NAME`; a refused
//! swap changes nothing.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

mod cache;
mod helpers;
mod platform;
mod spec;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use nano_core::println;
use wasm_runtime::instance::InstantiateError;
use wasm_runtime::{Config, Error, Extern, Func, Instance, Store, TrapKind, Val};
use wasmparser::ValType;

/// One line for `help`.
pub static DESCRIPTION: &str = "WebAssembly (--bounds-checks: explicit checks, not guard regions; --serial-compile: no parked CPU helps compile, --fault-helpers: they fault (a test); --ns NAME: in that namespace): wasm run FILE [--invoke F] [--fuel N] [--repeat N] [--trusted] [ARGS] | load NAME FILE [--trusted] | call NAME F [ARGS] | swap NAME FILE | unload NAME | list | cache [clear] | spec [FILTER]";

/// Compiled code in the kernel omits bounds checks: every linear memory is a reservation whose
/// unmapped pages fault (guard regions), and a fault at a memory access becomes an
/// out-of-bounds trap. `--bounds-checks` compiles explicit checks instead (for comparison).
pub(crate) fn kernel_config(fuel: bool, bounds_checks: bool) -> Config {
    Config { fuel, bounds_checks, ..Config::default() }
}

/// Whether the running command compiles explicit bounds checks.
pub(crate) fn explicit_checks() -> bool {
    EXPLICIT_CHECKS.load(core::sync::atomic::Ordering::Relaxed)
}

/// Set by `--bounds-checks` for the command that is running.
static EXPLICIT_CHECKS: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Stack of the task that compiles and runs (Cranelift and deep WASM recursion need room).
const STACK_PAGES: u64 = 256;

/// A module's crate in the namespace; dropping it unregisters the crate (also when a panic
/// unwinds the task that ran the module).
struct Registration(mod_mgmt::CrateId);

impl Drop for Registration {
    fn drop(&mut self) {
        unregister(self.0);
    }
}

/// Field order matters: the symbols go before the code they name is freed.
struct Loaded {
    krate: Registration,
    instance: Instance,
    /// Only for `wasm run` (loaded modules live in [`kernel_store`]).
    _store: Option<Store>,
}

static KERNEL_STORE: spin::Once<Store> = spin::Once::new();

/// The store every `wasm load`ed module lives in.
fn kernel_store() -> &'static Store {
    KERNEL_STORE.call_once(|| {
        let s = Store::new(&platform::PLATFORM);
        {
            let mut w = s.wasi();
            w.sink = Some(console);
            w.clock = Some(clock_ns);
        }
        s
    })
}

static LOADED: spin::Mutex<BTreeMap<String, Arc<Loaded>>> = spin::Mutex::new(BTreeMap::new());

fn console(bytes: &[u8]) {
    nano_core::print!("{}", String::from_utf8_lossy(bytes));
}

fn clock_ns() -> u64 {
    nano_core::time::micros_since_entry() * 1000
}

/// A WASM file: from the image's `wasm/` directory (or a full `/boot/...` path), or pushed
/// with `make push WASM=FILE` (kept among the applications namespace's updates).
fn read_file(file: &str) -> Result<Vec<u8>, String> {
    let name = file.strip_prefix("/boot/").map(String::from).unwrap_or_else(|| format!("wasm/{file}"));
    if let Some(m) = nano_core::kernel::boot_state().modules.iter().find(|m| m.name == name) {
        return Ok(m.data.to_vec());
    }
    let pushed = nano_core::kernel::with_loader_ref(|l| {
        let ns = l.namespace_by_name("applications").ok()?;
        l.namespace(ns)?.file_bytes(file).filter(|_| file.ends_with(".wasm")).map(|b| b.to_vec())
    });
    pushed.ok_or_else(|| format!("{file}: no such file (the image's wasm directory has: {})", list_files().join(" ")))
}

fn list_files() -> Vec<String> {
    nano_core::kernel::boot_state().modules.iter().filter_map(|m| m.name.strip_prefix("wasm/").map(String::from)).collect()
}

fn stem(file: &str) -> String {
    let base = file.rsplit('/').next().unwrap_or(file);
    base.strip_suffix(".wasm").unwrap_or(base).replace(['.', '-'], "_")
}

/// Imports are capabilities: WASI, the `delos` module's host functions (made for WASM: every
/// pointer checked against the caller's memory), and another loaded module's exports. Kernel
/// symbols only for a module run `--trusted` ([`resolve_kernel`]).
fn resolve(i: &wasm_runtime::module::Import) -> Option<Extern> {
    use wasm_runtime::module::ImportKind;
    if i.module == wasm_runtime::wasi::MODULE {
        let ImportKind::Func(_) = i.kind else { return None };
        return wasm_runtime::wasi::resolve(&i.name).map(Extern::Func);
    }
    if i.module == wasm_runtime::delos::MODULE {
        let ImportKind::Func(_) = i.kind else { return None };
        return delos_function(&i.name).map(Extern::Func);
    }
    let other = LOADED.lock().get(&i.module).cloned()?;
    other.instance.export(&i.name)
}

/// The kernel's `delos` functions besides the engine's (`print`, `uptime_ms`).
const KERNEL_DELOS: &[&str] = &["backtrace", "panic"];

fn delos_function(name: &str) -> Option<Func> {
    let f = |code: usize| Func { code: code as u64, ty: wasmparser::FuncType::new([], []), vmctx: core::ptr::null_mut(), owner: None };
    match name {
        "backtrace" | "delos_wasm_backtrace" => Some(f(delos_wasm_backtrace as *const () as usize)),
        "panic" | "delos_wasm_panic" => Some(f(delos_wasm_panic as *const () as usize)),
        _ => wasm_runtime::delos::resolve(name),
    }
}

/// Why `i` cannot be granted to an untrusted module, if it cannot (checked before anything is
/// instantiated, so a refusal names the import).
fn refusal(i: &wasm_runtime::module::Import) -> Option<String> {
    use wasm_runtime::module::ImportKind;
    let what = format!("import {}.{}", i.module, i.name);
    if i.module == wasm_runtime::wasi::MODULE {
        return None; // a missing WASI function has its own message
    }
    if i.module == wasm_runtime::delos::MODULE {
        let offered: Vec<&str> = wasm_runtime::delos::NAMES.iter().chain(KERNEL_DELOS).copied().collect();
        return match (&i.kind, delos_function(&i.name)) {
            (ImportKind::Func(_), Some(_)) => None,
            _ => Some(format!("{what} refused: the delos module has no such function (it offers {})", offered.join(", "))),
        };
    }
    if LOADED.lock().contains_key(&i.module) {
        return None; // a missing export is the engine's "unknown import"
    }
    Some(format!(
        "{what} refused: WASM modules may import WASI, the delos module ({}) and loaded modules' exports; {} is neither (kernel symbols are granted only to `wasm run --trusted`)",
        wasm_runtime::delos::NAMES.iter().chain(KERNEL_DELOS).copied().collect::<Vec<_>>().join(", "),
        i.module
    ))
}

/// For a module run `--trusted` only: an import of any other module name resolves to the
/// exported kernel symbol of the import's name, called as `extern "C" fn(vmctx, args...)`.
fn resolve_kernel(i: &wasm_runtime::module::Import, ty: &wasmparser::FuncType) -> Option<Extern> {
    let addr = nano_core::kernel::with_loader_ref(|l| {
        let ns = home(l)?;
        l.lookup(ns, &i.name).ok().map(|s| s.addr)
    })?;
    Some(Extern::Func(Func { code: addr, ty: ty.clone(), vmctx: core::ptr::null_mut(), owner: None }))
}

/// The namespace this crate runs in: `applications`, or NAME with `wasm --ns NAME ...` (or
/// `run --ns NAME wasm ...`). Modules are registered there and `--trusted` imports resolve there.
fn home(l: &mod_mgmt::Loader) -> Option<mod_mgmt::NamespaceId> {
    command::home_namespace(l, main as fn(&[&str]) -> isize as usize as u64)
}

/// Registers an instance's functions as crate `krate` (`wasm:NAME`); returns it and the cost.
fn register(krate: &str, inst: &Instance) -> Result<(mod_mgmt::CrateId, u64), String> {
    use mod_mgmt::{PrelinkedSection, PrelinkedSymbol, SectionKind};
    let t0 = nano_core::time::micros_since_entry();
    let mut sections = Vec::new();
    let mut symbols = Vec::new();
    for wasm_runtime::CodeSymbol { symbol: sym, addr, size, .. } in inst.functions() {
        sections.push(PrelinkedSection { name: format!(".text.{sym}"), addr, size: size.max(1), kind: SectionKind::Text });
        symbols.push(PrelinkedSymbol { raw: sym, addr, size, global: true, key: None });
    }
    let eh = inst.eh_frame();
    if !eh.is_empty() {
        sections.push(PrelinkedSection {
            name: ".eh_frame".into(),
            addr: eh.as_ptr() as u64,
            size: eh.len() as u64,
            kind: SectionKind::Rodata,
        });
    }
    let id = nano_core::kernel::with_loader_mut(|l| {
        let ns = home(l).ok_or("no applications namespace")?;
        l.add_prelinked(ns, krate, &sections, &symbols).map_err(|e| format!("{e}"))
    })?;
    Ok((id, nano_core::time::micros_since_entry() - t0))
}

fn unregister(id: mod_mgmt::CrateId) {
    let _ = nano_core::kernel::with_loader_mut(|l| l.unload(id));
}

struct Options {
    invoke: Option<String>,
    fuel: Option<i64>,
    trusted: bool,
    repeat: u64,
    rest: Vec<String>,
}

fn options(args: &[&str]) -> Result<Options, String> {
    let mut o = Options { invoke: None, fuel: None, trusted: false, repeat: 1, rest: Vec::new() };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--trusted" => o.trusted = true,
            "--repeat" => o.repeat = it.next().and_then(|n| command::parse_u64(n)).filter(|n| *n > 0).ok_or("--repeat needs a count")?,
            "--invoke" => o.invoke = Some(it.next().ok_or("--invoke needs a function name")?.to_string()),
            "--fuel" => {
                let n = it.next().and_then(|n| command::parse_u64(n)).ok_or("--fuel needs a number")?;
                o.fuel = Some(n as i64);
            }
            other => o.rest.push(other.to_string()),
        }
    }
    Ok(o)
}

fn parse_val(t: ValType, s: &str) -> Result<Val, String> {
    let bad = || format!("{s:?} is not a {t}");
    Ok(match t {
        ValType::I32 => Val::I32(s.parse::<i64>().map_err(|_| bad())? as i32),
        ValType::I64 => Val::I64(s.parse::<i64>().map_err(|_| bad())?),
        _ => return Err(format!("arguments of type {t} are not supported on the command line")),
    })
}

fn show(v: &Val) -> String {
    match v {
        Val::I32(x) => format!("{x}"),
        Val::I64(x) => format!("{x}"),
        Val::F32(b) => format!("f32 bits {b:#x}"),
        Val::F64(b) => format!("f64 bits {b:#x}"),
        Val::FuncRef(p) | Val::ExternRef(p) => format!("ref {p:#x}"),
    }
}

/// How [`instantiate`] sets a module up.
struct Setup {
    /// A fuel budget (compiled with fuel checks).
    fuel: Option<i64>,
    /// WASI arguments (for a store of its own).
    argv: Vec<String>,
    /// In the kernel's shared store (modules kept loaded), else a store of its own.
    shared: bool,
    /// May import any exported kernel function.
    trusted: bool,
    /// Say nothing about the compilation (the middle runs of `--repeat`).
    quiet: bool,
}

/// Compiles and instantiates `bytes` as `name` and registers it.
fn instantiate(name: &str, krate: &str, bytes: &[u8], setup: Setup) -> Result<Loaded, String> {
    let Setup { fuel, argv, shared, trusted, quiet } = setup;
    let config = kernel_config(fuel.is_some(), EXPLICIT_CHECKS.load(core::sync::atomic::Ordering::Relaxed));
    let cache::Compiled { module, cached, compile_us } = cache::compiled(bytes, config).map_err(|e| format!("{name}: {e}"))?;
    let own = (!shared).then(|| Store::new(&platform::PLATFORM));
    let store = own.as_ref().unwrap_or_else(|| kernel_store());
    if let Some(f) = fuel {
        store.set_fuel(f);
    }
    if !shared {
        let mut w = store.wasi();
        w.args = argv;
        w.sink = Some(console);
        w.clock = Some(clock_ns);
        w.seed = nano_core::time::micros_since_entry();
    }
    // A missing WASI function gets its own message (it would otherwise be "unknown import").
    let missing_wasi = |i: &&wasm_runtime::module::Import| {
        matches!(i.kind, wasm_runtime::module::ImportKind::Func(_))
            && i.module == wasm_runtime::wasi::MODULE
            && wasm_runtime::wasi::resolve(&i.name).is_none()
    };
    if let Some(i) = module.info.imports.iter().find(missing_wasi) {
        return Err(format!("{name}: imports {}.{}, which this WASI subset does not have", i.module, i.name));
    }
    if trusted {
        println!("wasm: {name} runs trusted: its imports may name any exported kernel function, called with arguments it chooses");
    } else if let Some(why) = module.info.imports.iter().find_map(refusal) {
        return Err(format!("{name}: {why}; nothing was instantiated"));
    }
    let types = &module.info.types;
    let inst = Instance::new(store, &module, name, &|i| {
        resolve(i).or_else(|| match i.kind {
            wasm_runtime::module::ImportKind::Func(t) if trusted => resolve_kernel(i, &types[t as usize]),
            _ => None,
        })
    })
    .map_err(|e| match e {
        InstantiateError::Error(e) => format!("{name}: {e}"),
        InstantiateError::Trap(t) => format!("{name}: initialization {t}"),
    })?;
    let (krate, reg_us) = register(krate, &inst)?;
    let funcs = module.image.funcs.len();
    if !quiet && cached {
        println!(
            "wasm: {name}: compiled code reused from the cache ({funcs} functions, {} bytes of code; compiling took {compile_us} us); registered in {reg_us} us",
            module.image.code.len(),
        );
    } else if !quiet {
        let helped = match module.image.by_helpers {
            0 => String::new(),
            n => format!(", {n} of them by {} parked CPUs", helpers::last_helpers()),
        };
        println!(
            "wasm: compiled {name}: {funcs} functions, {} bytes of code, {} IR instructions in {compile_us} us ({} us/function{helped}); registered in {reg_us} us",
            module.image.code.len(),
            module.image.ir_insts,
            compile_us / funcs.max(1) as u64
        );
    }
    Ok(Loaded { krate: Registration(krate), instance: inst, _store: own })
}

fn report(name: &str, r: Result<Vec<Val>, Error>) -> isize {
    match r {
        Ok(vals) => {
            if !vals.is_empty() {
                println!("wasm: {name} returned {}", vals.iter().map(show).collect::<Vec<_>>().join(" "));
            }
            0
        }
        Err(Error::Trap(t)) if t.kind == TrapKind::Exit => {
            println!("wasm: {name} exited with status {}", t.exit_code);
            t.exit_code as isize
        }
        Err(Error::Trap(t)) => {
            println!("wasm: {name}: {t}");
            3
        }
        Err(e) => {
            println!("wasm: {name}: {e}");
            1
        }
    }
}

fn call(l: &Loaded, func: &str, args: &[String]) -> Result<Vec<Val>, Error> {
    let info = l.instance.module();
    let e = info.export(func).ok_or_else(|| Error::NoExport(func.into()))?;
    let ty = info.func_type(e.index);
    if ty.params().len() != args.len() {
        return Err(Error::BadArguments(format!("{func} takes {} arguments, got {}", ty.params().len(), args.len())));
    }
    let vals = ty.params().iter().zip(args).map(|(t, a)| parse_val(*t, a)).collect::<Result<Vec<_>, _>>().map_err(Error::BadArguments)?;
    l.instance.call(func, &vals)
}

/// Runs `f` in a task with a large stack and waits for it.
fn in_task(name: &str, f: impl FnOnce() -> isize + Send + 'static) -> isize {
    match task::spawn_sized(name, STACK_PAGES, f) {
        Ok(id) => match task::join(id) {
            Ok(task::Exit::Returned(code)) => code,
            Ok(other) => {
                println!("wasm: the task ended: {other:?}");
                1
            }
            Err(e) => {
                println!("wasm: {e}");
                1
            }
        },
        Err(e) => {
            println!("wasm: cannot start a task: {e}");
            1
        }
    }
}

fn run(args: &[&str]) -> isize {
    let o = match options(args) {
        Ok(o) => o,
        Err(e) => {
            println!("wasm: {e}");
            return 2;
        }
    };
    let Some(file) = o.rest.first().cloned() else {
        println!("usage: wasm run FILE [--invoke FUNC] [--fuel N] [--repeat N] [--trusted] [ARGS...]");
        return 2;
    };
    let bytes = match read_file(&file) {
        Ok(b) => b,
        Err(e) => {
            println!("wasm: {e}");
            return 1;
        }
    };
    in_task("wasm", move || {
        let name = stem(&file);
        let mut check = nano_core::leakcheck::LeakCheck::new(o.repeat);
        let mut status = 0;
        let t0 = nano_core::time::micros_since_entry();
        for k in 0..o.repeat {
            // With --repeat, only the first and the last run speak.
            let quiet = k > 0 && k + 1 < o.repeat;
            status = run_once(&name, &bytes, &o, quiet);
            check.record(k, nano_core::leakcheck::usage());
        }
        if o.repeat > 1 {
            let us = nano_core::time::micros_since_entry() - t0;
            println!("wasm: {} runs of {name} (compile, instantiate, run, release each) in {us} us", o.repeat);
            println!("{}", check.report("wasm:"));
        }
        status
    })
}

/// Compiles, instantiates and runs the module once (what `wasm run` does); the module and
/// everything it held are gone when this returns.
fn run_once(name: &str, bytes: &[u8], o: &Options, quiet: bool) -> isize {
    let setup = Setup { fuel: o.fuel, argv: o.rest.clone(), shared: false, trusted: o.trusted, quiet };
    let l = match instantiate(name, &format!("wasm:{name}"), bytes, setup) {
        Ok(l) => l,
        Err(e) => {
            println!("wasm: {e}");
            return 1;
        }
    };
    let result = match &o.invoke {
        Some(f) => call(&l, f, &o.rest[1..]),
        None if l.instance.module().export("_start").is_some() => l.instance.call("_start", &[]),
        None => {
            println!("wasm: {name} has no _start; use --invoke FUNC");
            return 2;
        }
    };
    drop(l);
    if quiet { quiet_status(&result) } else { report(name, result) }
}

/// The status `report` would return, without printing.
fn quiet_status(r: &Result<Vec<Val>, Error>) -> isize {
    match r {
        Ok(_) => 0,
        Err(Error::Trap(t)) if t.kind == TrapKind::Exit => t.exit_code as isize,
        Err(Error::Trap(_)) => 3,
        Err(_) => 1,
    }
}

fn load(name: &str, file: &str, trusted: bool) -> isize {
    if LOADED.lock().contains_key(name) {
        println!("wasm: {name} is already loaded (wasm unload {name} first)");
        return 1;
    }
    let bytes = match read_file(file) {
        Ok(b) => b,
        Err(e) => {
            println!("wasm: {e}");
            return 1;
        }
    };
    let name = name.to_string();
    in_task("wasm", move || {
        match instantiate(
            &name,
            &format!("wasm:{name}"),
            &bytes,
            Setup { fuel: None, argv: alloc::vec![name.clone()], shared: true, trusted, quiet: false },
        ) {
            Ok(l) => {
                LOADED.lock().insert(name, Arc::new(l));
                0
            }
            Err(e) => {
                println!("wasm: {e}");
                1
            }
        }
    })
}

fn importers(name: &str) -> Vec<String> {
    LOADED.lock().iter().filter(|(n, l)| n.as_str() != name && !l.instance.imports_from(name).is_empty()).map(|(n, _)| n.clone()).collect()
}

fn unload(name: &str) -> isize {
    let users = importers(name);
    if !users.is_empty() {
        println!("wasm: {name} is imported by {}; unload those first", users.join(", "));
        return 1;
    }
    let holders: Vec<String> = {
        let loaded = LOADED.lock();
        match loaded.get(name) {
            Some(me) => loaded
                .iter()
                .filter(|(n, l)| n.as_str() != name && l.instance.tables_refer_to(&me.instance))
                .map(|(n, _)| n.clone())
                .collect(),
            None => Vec::new(),
        }
    };
    if !holders.is_empty() {
        println!("wasm: tables of {} hold functions of {name}; unload those first", holders.join(", "));
        return 1;
    }
    match LOADED.lock().remove(name) {
        Some(l) => {
            // Nothing else refers to it: the shared store lets it go, and with it its code,
            // memory and tables.
            kernel_store().release(&l.instance);
            drop(l);
            println!("wasm: unloaded {name}");
            0
        }
        None => {
            println!("wasm: {name} is not loaded");
            1
        }
    }
}

fn list() -> isize {
    let (in_use, peak, budget, refused) = platform::accounting();
    println!(
        "wasm: memories and tables use {} KiB of a {} KiB budget (peak {} KiB; one memory at most {} KiB); {refused} growths refused",
        in_use / 1024,
        budget / 1024,
        peak / 1024,
        platform::instance_limit() / 1024
    );
    let loaded = LOADED.lock();
    if loaded.is_empty() {
        println!("wasm: no modules loaded; files: {}", list_files().join(" "));
    }
    for (name, l) in loaded.iter() {
        let (addr, len) = l.instance.code_range();
        let mem = l.instance.memory().map_or(0, |m| m.len());
        println!("{name}: {len} bytes of code at {addr:#x}, {} KiB of linear memory", mem / 1024);
        for wasm_runtime::CodeSymbol { symbol: sym, addr: a, size, .. } in l.instance.functions() {
            println!("  {a:#x} {size:>6}  {sym}");
        }
    }
    0
}

/// Replaces loaded module `name` with `file`, live (see the crate docs).
fn swap(name: &str, file: &str) -> Result<String, String> {
    let t0 = nano_core::time::micros_since_entry();
    let old = LOADED.lock().get(name).cloned().ok_or_else(|| format!("{name} is not loaded"))?;
    let bytes = read_file(file)?;
    let setup = Setup { fuel: None, argv: alloc::vec![name.to_string()], shared: true, trusted: false, quiet: false };
    let new = instantiate(name, &format!("wasm:{name}(next)"), &bytes, setup)?;
    let refuse = |why: String, new: Loaded| -> Result<String, String> {
        kernel_store().release(&new.instance);
        drop(new);
        Err(format!("swap refused: {why}; {name} is unchanged"))
    };
    // Everything another module imports from `name` must be there, with the same type.
    let users: Vec<(String, Arc<Loaded>)> =
        LOADED.lock().iter().filter(|(n, _)| n.as_str() != name).map(|(n, l)| (n.clone(), l.clone())).collect();
    for (user, l) in &users {
        for imp in l.instance.imports_from(name) {
            let ok = match (old.instance.export(&imp), new.instance.export(&imp)) {
                (Some(Extern::Func(a)), Some(Extern::Func(b))) => a.ty == b.ty,
                (Some(Extern::Func(_)), _) => false,
                (Some(_), _) => {
                    return refuse(format!("{user} imports {name}.{imp}, which is no function (only functions are relinked)"), new);
                }
                (None, _) => true,
            };
            if !ok {
                return refuse(format!("{file} lacks export {imp} (with the same type) that {user} imports"), new);
            }
        }
    }
    // State: linear memory and exported mutable globals.
    let mut carried = 0usize;
    if let (Some(om), Some(nm)) = (old.instance.memory(), new.instance.memory()) {
        let olen = om.len();
        if nm.len() < olen && nm.grow((olen - nm.len()).div_ceil(65536)).is_none() {
            return refuse(format!("the new memory cannot grow to the old one's {olen} bytes"), new);
        }
        om.with(|src| nm.with(|dst| dst[..src.len()].copy_from_slice(src)));
        carried += olen as usize;
    }
    let mut globals = 0;
    for e in &old.instance.module().exports {
        if let (Some(Extern::Global(a)), Some(Extern::Global(b))) = (old.instance.export(&e.name), new.instance.export(&e.name))
            && a.ty.mutable
            && a.ty == b.ty
        {
            b.set(a.get());
            globals += 1;
        }
    }
    // Relink the importers.
    let mut relinked = 0;
    for (_, l) in &users {
        for imp in l.instance.imports_from(name) {
            if let Some(Extern::Func(f)) = new.instance.export(&imp) {
                relinked += l.instance.relink(name, &imp, &f).map_err(|e| format!("{e}"))?;
            }
        }
    }
    // The symbols: the new code becomes wasm:NAME (the old crate goes when the old Loaded does).
    let Loaded { krate: next, instance, .. } = new;
    drop(next);
    let old_entry = LOADED.lock().remove(name);
    drop(old_entry);
    drop(old);
    let (krate, _) = register(&format!("wasm:{name}"), &instance)?;
    LOADED.lock().insert(name.to_string(), Arc::new(Loaded { krate: Registration(krate), instance, _store: None }));
    Ok(format!(
        "wasm: swapped {name} for {file}: {relinked} imports relinked in {} modules, {carried} bytes of memory and {globals} globals carried over, in {} us",
        users.len(),
        nano_core::time::micros_since_entry() - t0
    ))
}

/// Called by `crate_swap` after every committed swap: the cache's modules hold the engine's
/// code (ISA vtables, runtime functions), and any of the engine's crates may just have been
/// replaced; dropping them lets the retired versions be reclaimed (a later run compiles again).
#[inline(never)]
pub fn after_swap() {
    cache::swapped();
}

/// Called before this crate is unloaded (`ns drop` of a namespace holding a private copy of
/// it): the cache's modules live on the heap, and unloading frees only the crate's own memory.
#[inline(never)]
pub fn before_unload() {
    cache::clear();
}

/// Entry point.
pub fn main(args: &[&str]) -> isize {
    // `wasm run --ns NAME ...` means `wasm --ns NAME run ...`.
    if args.get(1) == Some(&"run") && args.get(2) == Some(&"--ns") {
        let mut moved: Vec<&str> = alloc::vec![args[0], "--ns"];
        moved.extend(args.get(3).copied());
        moved.push("run");
        moved.extend(args.iter().skip(4).copied());
        return main(&moved);
    }
    if let Some(status) = command::run_in_namespace_option(args) {
        return status;
    }
    EXPLICIT_CHECKS.store(args.contains(&"--bounds-checks"), core::sync::atomic::Ordering::Relaxed);
    helpers::SERIAL.store(args.contains(&"--serial-compile"), core::sync::atomic::Ordering::Relaxed);
    helpers::FAULT.store(args.contains(&"--fault-helpers"), core::sync::atomic::Ordering::Relaxed);
    let args: Vec<&str> =
        args.iter().copied().filter(|a| !matches!(*a, "--bounds-checks" | "--serial-compile" | "--fault-helpers")).collect();
    let args = args.as_slice();
    match args.get(1).copied() {
        Some("run") => run(&args[2..]),
        Some("load") if args.len() == 4 => load(args[2], args[3], false),
        Some("load") if args.len() == 5 && args[4] == "--trusted" => load(args[2], args[3], true),
        Some("call") if args.len() >= 4 => {
            let Some(l) = LOADED.lock().get(args[2]).cloned() else {
                println!("wasm: {} is not loaded", args[2]);
                return 1;
            };
            let func = args[3].to_string();
            let rest: Vec<String> = args[4..].iter().map(|s| s.to_string()).collect();
            let name = args[2].to_string();
            in_task("wasm", move || report(&name, call(&l, &func, &rest)))
        }
        Some("unload") if args.len() == 3 => unload(args[2]),
        Some("swap") if args.len() == 4 => {
            let (name, file) = (args[2].to_string(), args[3].to_string());
            in_task("wasm", move || match swap(&name, &file) {
                Ok(msg) => {
                    println!("{msg}");
                    0
                }
                Err(e) => {
                    println!("wasm: {e}");
                    1
                }
            })
        }
        Some("list") => list(),
        Some("cache") if args.len() == 2 => {
            let kept = cache::list();
            for (i, (bytes, code, us, hits)) in kept.iter().enumerate() {
                println!("  #{i}: {bytes} bytes of WASM, {code} bytes of code, compiled in {us} us, reused {hits} times");
            }
            println!("wasm: {} compiled modules kept for reuse", kept.len());
            0
        }
        Some("cache") if args.get(2) == Some(&"clear") => {
            println!("wasm: forgot {} compiled modules", cache::clear());
            0
        }
        Some("spec") => {
            let filter = args.get(2).map(|s| String::from(*s));
            in_task("wasm", move || spec::run(filter.as_deref()))
        }
        _ => {
            println!("usage: {DESCRIPTION}");
            2
        }
    }
}

/// Host function for WASM (`(import "delos" "delos_wasm_backtrace" (func))`): prints the
/// backtrace of the calling task, WASM frames included.
#[unsafe(no_mangle)]
pub extern "C" fn delos_wasm_backtrace(_vmctx: *mut u8) {
    println!("wasm: backtrace requested by WASM code:");
    exceptions::print_backtrace(nano_core::kernel::current_frame_pointer(), None);
}

/// Host function for WASM (`(import "delos" "delos_wasm_panic" (func))`): panics, so the
/// task unwinds through the WASM frames that called it (their `.eh_frame` is registered).
#[unsafe(no_mangle)]
pub extern "C-unwind" fn delos_wasm_panic(_vmctx: *mut u8) {
    panic!("deliberate panic in a host function called by WASM");
}

/// Host function for WASM: milliseconds since boot.
#[unsafe(no_mangle)]
pub extern "C" fn delos_wasm_uptime_ms(_vmctx: *mut u8) -> i64 {
    (nano_core::time::micros_since_entry() / 1000) as i64
}
