//! Mutation fuzzing of the engine's front door: corrupted versions of the image's programs go
//! through validation, translation and compilation (and instantiation when they still
//! validate); nothing may panic, every rejection is an `Error`. `WASM_FUZZ_ITERS` sets the
//! count (default 3,000: the smoke run of `make test`). Inputs that ever crashed are kept in
//! `tests/fuzz-crashes/` and replayed first.

use wasm_runtime::host::HOST;
use wasm_runtime::{Config, Instance, Module, Store};

fn seeds() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm/programs");
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wat"))
        .map(|p| wat::parse_file(&p).unwrap())
        .collect();
    v.sort();
    v
}

fn exercise(bytes: &[u8]) {
    if let Ok(m) = Module::new(bytes, Config::default()) {
        let store = Store::new(&HOST);
        let _ = Instance::new(&store, &m, "fuzz", &|_| None);
    }
}

#[test]
fn crash_inputs_stay_fixed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-crashes");
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "wasm") {
            exercise(&std::fs::read(e.path()).unwrap());
        }
    }
}

#[test]
fn mutated_modules_never_panic() {
    let iters: usize = std::env::var("WASM_FUZZ_ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(3000);
    let seeds = seeds();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut accepted, mut rejected) = (0, 0);
    for _ in 0..iters {
        let mut b = seeds[(next() % seeds.len() as u64) as usize].clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % b.len() as u64) as usize;
            match next() % 4 {
                0 => b[at] ^= 1 << (next() % 8),
                1 => b[at] = next() as u8,
                2 => b.truncate(at.max(8)),
                _ => b.insert(at, next() as u8),
            }
        }
        let r = std::panic::catch_unwind(|| exercise(&b));
        if r.is_err() {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fuzz-crashes/crash-{:016x}.wasm", next()));
            std::fs::write(&path, &b).unwrap();
            panic!("the engine panicked; input kept as {}", path.display());
        }
        if Module::new(&b, Config::default()).is_ok() { accepted += 1 } else { rejected += 1 }
    }
    println!("{iters} mutated modules: {accepted} still valid (compiled and instantiated), {rejected} rejected with an error");
    assert!(rejected > 0 && accepted > 0, "the mutations should produce both kinds");
}
