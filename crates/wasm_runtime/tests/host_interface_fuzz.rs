//! Hostile input to the host interface: one module imports every WASI and `delos` host
//! function and exports a forwarder for each; random calls pass hostile pointers, lengths and
//! handles (near the end of memory, past it, negative, huge). Every call must come back with
//! a value (an errno) or a trap; the module's memory is a guard-region reservation, so a host
//! function reading or writing outside it would fault this test; and memory outside the
//! module — a canary buffer of this process — must be untouched. `HOST_FUZZ_ITERS` sets the
//! count (default 50,000: the run of `make test`).

use wasm_runtime::host::HOST;
use wasm_runtime::{Config, Error, Instance, Module, Store, Val};
use wasmparser::ValType;

/// Every host function: (import module, name, parameter types, result types).
fn functions() -> Vec<(&'static str, &'static str, Vec<ValType>, Vec<ValType>)> {
    let mut v = Vec::new();
    for (module, names, resolve) in [
        (wasm_runtime::wasi::MODULE, wasm_runtime::wasi::NAMES, wasm_runtime::wasi::resolve as fn(&str) -> Option<wasm_runtime::Func>),
        (wasm_runtime::delos::MODULE, wasm_runtime::delos::NAMES, wasm_runtime::delos::resolve as fn(&str) -> Option<wasm_runtime::Func>),
    ] {
        for name in names {
            let f = resolve(name).unwrap_or_else(|| panic!("{module}.{name} is listed but does not resolve"));
            v.push((module, *name, f.ty.params().to_vec(), f.ty.results().to_vec()));
        }
    }
    v
}

fn wat_type(t: &ValType) -> &'static str {
    match t {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
        other => panic!("host functions take integers, not {other:?}"),
    }
}

/// The module: every host function imported, and exported again as `f<i>`.
fn module_text(fs: &[(&str, &str, Vec<ValType>, Vec<ValType>)]) -> String {
    let mut m = String::from("(module\n");
    for (i, (module, name, p, r)) in fs.iter().enumerate() {
        let params: Vec<&str> = p.iter().map(wat_type).collect();
        let results: Vec<&str> = r.iter().map(wat_type).collect();
        m += &format!("  (import \"{module}\" \"{name}\" (func $h{i} (param {}) (result {})))\n", params.join(" "), results.join(" "));
    }
    m += "  (memory 1)\n";
    for (i, (_, _, p, r)) in fs.iter().enumerate() {
        let params: Vec<&str> = p.iter().map(wat_type).collect();
        let results: Vec<&str> = r.iter().map(wat_type).collect();
        let gets: String = (0..p.len()).map(|k| format!(" (local.get {k})")).collect();
        m += &format!("  (func (export \"f{i}\") (param {}) (result {}) (call $h{i}{gets}))\n", params.join(" "), results.join(" "));
    }
    m + ")\n"
}

#[test]
fn host_functions_survive_hostile_arguments() {
    let iters: usize = std::env::var("HOST_FUZZ_ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(50_000);
    let fs = functions();
    let wasm = wat::parse_str(module_text(&fs)).expect("the forwarding module assembles");
    let config = Config { bounds_checks: false, ..Config::default() };
    let module = Module::new(&wasm, config).expect("the forwarding module compiles");
    let canary = vec![0xA5u8; 1 << 20];
    let interesting: [i64; 12] = [0, 1, -1, 8, 65532, 65535, 65536, 65540, i32::MAX as i64, i32::MIN as i64, 0x7fff_ffff_ffff, -65536];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut returned, mut trapped) = (0usize, 0usize);
    let mut calls_per_function = vec![0usize; fs.len()];
    let mut store = Store::new(&HOST);
    let mut inst = Instance::new(&store, &module, "hostile", &|i| match i.module.as_str() {
        "wasi_snapshot_preview1" => wasm_runtime::wasi::resolve(&i.name).map(wasm_runtime::Extern::Func),
        "delos" => wasm_runtime::delos::resolve(&i.name).map(wasm_runtime::Extern::Func),
        _ => None,
    })
    .expect("every import resolves");
    for n in 0..iters {
        if n % 500 == 499 {
            // A fresh store now and then: WASI output accumulates in the store.
            drop(inst);
            store = Store::new(&HOST);
            inst = Instance::new(&store, &module, "hostile", &|i| match i.module.as_str() {
                "wasi_snapshot_preview1" => wasm_runtime::wasi::resolve(&i.name).map(wasm_runtime::Extern::Func),
                "delos" => wasm_runtime::delos::resolve(&i.name).map(wasm_runtime::Extern::Func),
                _ => None,
            })
            .expect("every import resolves");
        }
        let k = (next() % fs.len() as u64) as usize;
        let args: Vec<Val> = fs[k]
            .2
            .iter()
            .map(|t| {
                let v = match next() % 3 {
                    0 => interesting[(next() % interesting.len() as u64) as usize],
                    1 => (next() % 70_000) as i64,
                    _ => next() as i64,
                };
                if *t == ValType::I32 { Val::I32(v as i32) } else { Val::I64(v) }
            })
            .collect();
        match inst.call(&format!("f{k}"), &args) {
            Ok(vals) => {
                assert_eq!(vals.len(), fs[k].3.len(), "{}.{} returned {vals:?}", fs[k].0, fs[k].1);
                returned += 1;
            }
            Err(Error::Trap(_)) => trapped += 1, // proc_exit ends the call by design
            Err(e) => panic!("{}.{}({args:?}) failed: {e}", fs[k].0, fs[k].1),
        }
        calls_per_function[k] += 1;
    }
    assert!(canary.iter().all(|b| *b == 0xA5), "memory outside the module was written");
    assert!(calls_per_function.iter().all(|c| *c > 0) || iters < 200, "every host function was called: {calls_per_function:?}");
    println!("{iters} hostile calls to {} host functions: {returned} returned, {trapped} trapped (proc_exit); canary intact", fs.len());
}
