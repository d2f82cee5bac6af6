//! `wasmtime_bench FILE(.wasm|.wat) FUNC [I32 ARGS...]`: compile time and the best of five runs
//! of FUNC under wasmtime, printed as `compile_ms run_ms result` for wasmbench to compare.

use std::time::Instant;
use wasmtime::{Config, Engine, Instance, Module, Store, Val};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (file, func) = (&args[1], &args[2]);
    let params: Vec<Val> = args[3..].iter().map(|a| Val::I32(a.parse().expect("i32 argument"))).collect();
    let bytes = if file.ends_with(".wat") { wat::parse_file(file).unwrap() } else { std::fs::read(file).unwrap() };
    let engine = Engine::new(&Config::new()).unwrap();
    let mut best_compile = f64::MAX;
    let mut module = None;
    for _ in 0..5 {
        let t = Instant::now();
        module = Some(Module::new(&engine, &bytes).unwrap());
        best_compile = best_compile.min(t.elapsed().as_secs_f64());
    }
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, module.as_ref().unwrap(), &[]).unwrap();
    let f = instance.get_func(&mut store, func).unwrap();
    let mut best = f64::MAX;
    let mut out = [Val::I32(0)];
    for _ in 0..5 {
        let t = Instant::now();
        f.call(&mut store, &params, &mut out).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("{:.4} {:.4} {}", best_compile * 1e3, best * 1e3, out[0].i32().unwrap_or(0));
}
