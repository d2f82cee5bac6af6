//! `wasm`: compiles and runs WebAssembly modules inside the kernel.
//!
//! ```text
//! wasm run FILE [--invoke FUNC] [--fuel N] [ARGS...]   compile, run _start (WASI) or FUNC, unload
//! wasm load NAME FILE                                   compile and keep as crate wasm:NAME
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
//! `ns`, backtraces and the unwinder see JIT code like any other. Imports resolve against WASI
//! (`wasi_snapshot_preview1`) and, for any other module name, against exported kernel symbols
//! of the same name (`extern "C" fn(vmctx, args...)`), such as the host functions below.
//! Compilation and the call run in a task of their own with a 1 MiB stack, so a trap or a
//! fault ends only that call.
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

mod platform;
mod spec;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use nano_core::println;
use wasm_runtime::instance::InstantiateError;
use wasm_runtime::{Config, Error, Extern, Func, Instance, Module, Store, TrapKind, Val};
use wasmparser::ValType;

/// One line for `help`.
pub static DESCRIPTION: &str = "WebAssembly: wasm run FILE [--invoke F] [--fuel N] [ARGS] | load NAME FILE | call NAME F [ARGS] | swap NAME FILE | unload NAME | list | spec [FILTER]";

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
    let pushed = nano_core::kernel::with_loader(|l| {
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

/// Imports: WASI by name, another loaded module's export, or (below) a kernel symbol.
fn resolve(i: &wasm_runtime::module::Import) -> Option<Extern> {
    use wasm_runtime::module::ImportKind;
    if i.module == wasm_runtime::wasi::MODULE {
        let ImportKind::Func(_) = i.kind else { return None };
        return wasm_runtime::wasi::resolve(&i.name).map(Extern::Func);
    }
    let other = LOADED.lock().get(&i.module).cloned()?;
    other.instance.export(&i.name)
}

fn resolve_kernel(i: &wasm_runtime::module::Import, ty: &wasmparser::FuncType) -> Option<Extern> {
    let addr = nano_core::kernel::with_loader(|l| {
        let ns = l.namespace_by_name("applications").ok()?;
        l.lookup(ns, &i.name).ok().map(|s| s.addr)
    })?;
    Some(Extern::Func(Func { code: addr, ty: ty.clone(), vmctx: core::ptr::null_mut(), owner: None }))
}

/// Registers an instance's functions as crate `krate` (`wasm:NAME`); returns it and the cost.
fn register(krate: &str, inst: &Instance) -> Result<(mod_mgmt::CrateId, u64), String> {
    use mod_mgmt::{PrelinkedSection, PrelinkedSymbol, SectionKind};
    let t0 = nano_core::time::micros_since_entry();
    let mut sections = Vec::new();
    let mut symbols = Vec::new();
    for (_, sym, addr, size) in inst.functions() {
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
    let id = nano_core::kernel::with_loader(|l| {
        let ns = l.namespace_by_name("applications").map_err(|e| format!("{e}"))?;
        l.add_prelinked(ns, krate, &sections, &symbols).map_err(|e| format!("{e}"))
    })?;
    Ok((id, nano_core::time::micros_since_entry() - t0))
}

fn unregister(id: mod_mgmt::CrateId) {
    let _ = nano_core::kernel::with_loader(|l| l.unload(id));
}

struct Options {
    invoke: Option<String>,
    fuel: Option<i64>,
    rest: Vec<String>,
}

fn options(args: &[&str]) -> Result<Options, String> {
    let mut o = Options { invoke: None, fuel: None, rest: Vec::new() };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--invoke" => o.invoke = Some(it.next().ok_or("--invoke needs a function name")?.to_string()),
            "--fuel" => {
                let n = it.next().and_then(|n| nano_core::kernel::parse_u64(n)).ok_or("--fuel needs a number")?;
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

/// Compiles and instantiates `bytes` as `name` and registers it.
fn instantiate(name: &str, krate: &str, bytes: &[u8], fuel: Option<i64>, argv: Vec<String>, shared: bool) -> Result<Loaded, String> {
    let t0 = nano_core::time::micros_since_entry();
    let config = Config { fuel: fuel.is_some(), ..Config::default() };
    let module = Module::new(bytes, config).map_err(|e| format!("{name}: {e}"))?;
    let t1 = nano_core::time::micros_since_entry();
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
    let types = &module.info.types;
    let inst = Instance::new(store, &module, name, &|i| {
        resolve(i).or_else(|| match i.kind {
            wasm_runtime::module::ImportKind::Func(t) => resolve_kernel(i, &types[t as usize]),
            _ => None,
        })
    })
    .map_err(|e| match e {
        InstantiateError::Error(e) => format!("{name}: {e}"),
        InstantiateError::Trap(t) => format!("{name}: initialization {t}"),
    })?;
    let (krate, reg_us) = register(krate, &inst)?;
    let funcs = module.image.funcs.len();
    println!(
        "wasm: compiled {name}: {funcs} functions, {} bytes of code, {} IR instructions in {} us ({} us/function); registered in {reg_us} us",
        module.image.code.len(),
        module.image.ir_insts,
        t1 - t0,
        (t1 - t0) / funcs.max(1) as u64
    );
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
        println!("usage: wasm run FILE [--invoke FUNC] [--fuel N] [ARGS...]");
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
        let l = match instantiate(&name, &format!("wasm:{name}"), &bytes, o.fuel, o.rest.clone(), false) {
            Ok(l) => l,
            Err(e) => {
                println!("wasm: {e}");
                return 1;
            }
        };
        let r = match &o.invoke {
            Some(f) => report(&name, call(&l, f, &o.rest[1..])),
            None if l.instance.module().export("_start").is_some() => report(&name, l.instance.call("_start", &[])),
            None => {
                println!("wasm: {name} has no _start; use --invoke FUNC");
                2
            }
        };
        drop(l);
        r
    })
}

fn load(name: &str, file: &str) -> isize {
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
    in_task("wasm", move || match instantiate(&name, &format!("wasm:{name}"), &bytes, None, alloc::vec![name.clone()], true) {
        Ok(l) => {
            LOADED.lock().insert(name, Arc::new(l));
            0
        }
        Err(e) => {
            println!("wasm: {e}");
            1
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
    match LOADED.lock().remove(name) {
        Some(l) => {
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
    let loaded = LOADED.lock();
    if loaded.is_empty() {
        println!("wasm: no modules loaded; files: {}", list_files().join(" "));
    }
    for (name, l) in loaded.iter() {
        let (addr, len) = l.instance.code_range();
        println!("{name}: {len} bytes of code at {addr:#x}");
        for (_, sym, a, size) in l.instance.functions() {
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
    let new = instantiate(name, &format!("wasm:{name}(next)"), &bytes, None, alloc::vec![name.to_string()], true)?;
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

/// Entry point.
pub fn main(args: &[&str]) -> isize {
    match args.get(1).copied() {
        Some("run") => run(&args[2..]),
        Some("load") if args.len() == 4 => load(args[2], args[3]),
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
