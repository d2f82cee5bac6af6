//! `wasmtime_bench FILE(.wasm|.wat) FUNC [I32 ARGS...]`: compile time and the run time of FUNC
//! under wasmtime, each the median of 11, printed as `compile_ms run_ms result` for wasmbench
//! to compare. wasmtime's default configuration: Cranelift at speed, its default memory
//! reservation with guard pages (so no explicit bounds checks), no fuel, no epochs.

use std::time::Instant;
use wasmtime::{Config, Engine, Instance, Module, Store, Val};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (file, func) = (&args[1], &args[2]);
    let params: Vec<Val> = args[3..].iter().map(|a| Val::I32(a.parse().expect("i32 argument"))).collect();
    let bytes = if file.ends_with(".wat") { wat::parse_file(file).unwrap() } else { std::fs::read(file).unwrap() };
    let engine = Engine::new(&Config::new()).unwrap();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut module = None;
    let compile: Vec<f64> = (0..11)
        .map(|_| {
            let t = Instant::now();
            module = Some(Module::new(&engine, &bytes).unwrap());
            t.elapsed().as_secs_f64()
        })
        .collect();
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, module.as_ref().unwrap(), &[]).unwrap();
    let f = instance.get_func(&mut store, func).unwrap();
    let mut out = [Val::I32(0)];
    let run: Vec<f64> = (0..11)
        .map(|_| {
            let t = Instant::now();
            f.call(&mut store, &params, &mut out).unwrap();
            t.elapsed().as_secs_f64()
        })
        .collect();
    println!("{:.4} {:.4} {}", median(compile) * 1e3, median(run) * 1e3, out[0].i32().unwrap_or(0));
}
