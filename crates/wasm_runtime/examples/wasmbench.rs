//! `make bench` part: compute kernels run as WASM under this engine and as native Rust, in the
//! same process, same run; compile time per module and per function. Figures are ratios to the
//! native baseline measured alongside (the machines are shared and noisy).
//!
//! wasmtime is not part of the comparison: it is not vendored and building it here takes
//! longer than the whole CI budget; see the README.

use std::hint::black_box;
use std::time::Instant;
use wasm_runtime::host::HOST;
use wasm_runtime::{Config, Instance, Module, Store, Val};

const WAT: &str = r#"
(module
  (memory (export "memory") 4)
  (func $fib (export "fib") (param $n i32) (result i32)
    (if (result i32) (i32.lt_u (local.get $n) (i32.const 2))
      (then (local.get $n))
      (else (i32.add (call $fib (i32.sub (local.get $n) (i32.const 1)))
                     (call $fib (i32.sub (local.get $n) (i32.const 2)))))))
  ;; insertion sort of n i32 at address 0, filled by an LCG from seed
  (func (export "sort") (param $n i32) (param $seed i32) (result i32)
    (local $i i32) (local $j i32) (local $x i32) (local $y i32)
    (block $d (loop $l
      (br_if $d (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $seed (i32.add (i32.mul (local.get $seed) (i32.const 1103515245)) (i32.const 12345)))
      (i32.store (i32.shl (local.get $i) (i32.const 2)) (i32.shr_u (local.get $seed) (i32.const 8)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (local.set $i (i32.const 1))
    (block $d2 (loop $outer
      (br_if $d2 (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $x (i32.load (i32.shl (local.get $i) (i32.const 2))))
      (local.set $j (local.get $i))
      (block $ins (loop $inner
        (br_if $ins (i32.eqz (local.get $j)))
        (local.set $y (i32.load (i32.shl (i32.sub (local.get $j) (i32.const 1)) (i32.const 2))))
        (br_if $ins (i32.le_u (local.get $y) (local.get $x)))
        (i32.store (i32.shl (local.get $j) (i32.const 2)) (local.get $y))
        (local.set $j (i32.sub (local.get $j) (i32.const 1)))
        (br $inner)))
      (i32.store (i32.shl (local.get $j) (i32.const 2)) (local.get $x))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $outer)))
    (i32.load (i32.const 400)))
  ;; a hash-mixing loop in the style of sha256's rounds
  (func (export "mix") (param $n i32) (result i32)
    (local $a i32) (local $b i32) (local $c i32) (local $i i32)
    (local.set $a (i32.const 0x6a09e667)) (local.set $b (i32.const 0xbb67ae85)) (local.set $c (i32.const 0x3c6ef372))
    (block $d (loop $l
      (br_if $d (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $a (i32.add (local.get $a) (i32.xor (i32.rotr (local.get $b) (i32.const 6)) (i32.rotr (local.get $b) (i32.const 11)))))
      (local.set $b (i32.add (local.get $b) (i32.and (local.get $c) (i32.xor (local.get $a) (local.get $i)))))
      (local.set $c (i32.xor (local.get $c) (i32.add (i32.rotl (local.get $a) (i32.const 5)) (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (i32.xor (local.get $a) (i32.xor (local.get $b) (local.get $c))))
)"#;

#[path = "../../wasm/programs/rust/kernels/src/k.rs"]
mod k;

fn fib(n: u32) -> u32 {
    if n < 2 { n } else { fib(n - 1).wrapping_add(fib(n - 2)) }
}

fn mix(n: u32) -> u32 {
    let (mut a, mut b, mut c) = (0x6a09e667u32, 0xbb67ae85u32, 0x3c6ef372u32);
    for i in 0..n {
        a = a.wrapping_add(b.rotate_right(6) ^ b.rotate_right(11));
        b = b.wrapping_add(c & (a ^ i));
        c ^= a.rotate_left(5).wrapping_add(i);
    }
    a ^ b ^ c
}

/// The median time of `runs` runs of `f`, and its last result.
fn median_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed().as_secs_f64());
    }
    (median(times), last.unwrap())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Rounds of interleaved measurement: each round times native, ours and ours with guard
/// regions once, in alternating order (so drift and warm-up hit all three alike).
const ROUNDS: usize = 11;

/// wasmtime's compile and run times for the same file and call, if the baseline is built
/// (`make bench` builds tools/wasmtime_bench).
fn wasmtime(file: &std::path::Path, func: &str, args: &[i32]) -> Option<(f64, f64, i32)> {
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/wasmtime-bench/release/wasmtime_bench");
    let out = std::process::Command::new(bin).arg(file).arg(func).args(args.iter().map(|a| a.to_string())).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let v: Vec<&str> = text.split_whitespace().collect();
    Some((v.first()?.parse::<f64>().ok()? / 1e3, v.get(1)?.parse::<f64>().ok()? / 1e3, v.get(2)?.parse().ok()?))
}

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let wat_file = root.join("target/wasmbench.wat");
    std::fs::write(&wat_file, WAT).unwrap();
    let kernels = root.join("target/wasm-programs/wasm32-unknown-unknown/release/kernels.wasm");
    let kernels_bytes = std::fs::read(&kernels).expect("kernels.wasm: run `imgtool build` (or make test) first");
    let wat_bytes = wat::parse_str(WAT).unwrap();
    let config = Config { allow_avx: true, ..Config::default() };
    for (label, file, bytes) in [("wat kernels", &wat_file, &wat_bytes), ("kernels.wasm (Rust)", &kernels, &kernels_bytes)] {
        let (compile_s, module) = median_of(11, || Module::new(bytes, config).unwrap());
        let funcs = module.image.funcs.len();
        let wt = wasmtime(file, "fib", &[0]).or_else(|| wasmtime(file, "sha256", &[0]));
        println!(
            "compile {label}: {:.2} ms per module, {:.0} us per function ({funcs} functions, {} IR instructions){}",
            compile_s * 1e3,
            compile_s * 1e6 / funcs as f64,
            module.image.ir_insts,
            wt.map(|(c, _, _)| format!("; wasmtime {:.2} ms: ratio {:.2}x", c * 1e3, compile_s / c)).unwrap_or_default()
        );
    }
    let store = Store::new(&HOST);
    let wat_inst = Instance::new(&store, &Module::new(&wat_bytes, config).unwrap(), "bench", &|_| None).unwrap();
    let k_inst = Instance::new(&store, &Module::new(&kernels_bytes, config).unwrap(), "kernels", &|_| None).unwrap();
    let guard = Config { bounds_checks: false, ..config };
    let wat_g = Instance::new(&store, &Module::new(&wat_bytes, guard).unwrap(), "bench_g", &|_| None).unwrap();
    let k_g = Instance::new(&store, &Module::new(&kernels_bytes, guard).unwrap(), "kernels_g", &|_| None).unwrap();
    let mut words = vec![0u32; 1 << 18];
    let (mut ma, mut mb, mut mc) = (vec![0.0; 128 * 128], vec![0.0; 128 * 128], vec![0.0; 128 * 128]);
    let mut data: Vec<u8> = (0..1usize << 16).map(|i| (i * 31 % 251) as u8).collect();
    type Native<'a> = Box<dyn FnMut() -> u32 + 'a>;
    let cases: Vec<(&str, &Instance, &Instance, &std::path::Path, &str, Vec<i32>, Native<'_>)> = vec![
        ("fib(30) [wat]", &wat_inst, &wat_g, &wat_file, "fib", vec![30], Box::new(|| fib(black_box(30)))),
        ("mix 50M rounds [wat]", &wat_inst, &wat_g, &wat_file, "mix", vec![50_000_000], Box::new(|| mix(black_box(50_000_000)))),
        (
            "sha256 64 KiB x 40 [rust]",
            &k_inst,
            &k_g,
            &kernels,
            "sha256",
            vec![40],
            Box::new(|| {
                for (i, b) in data.iter_mut().enumerate() {
                    *b = (i * 31 % 251) as u8;
                }
                let mut acc = 0u32;
                for _ in 0..black_box(40) {
                    acc ^= k::sha256_blocks(&data);
                    data[0] = acc as u8;
                }
                acc
            }),
        ),
        (
            "heapsort 200k [rust]",
            &k_inst,
            &k_g,
            &kernels,
            "sort",
            vec![200_000, 5],
            Box::new(|| k::sort(&mut words[..200_000], black_box(5))),
        ),
        (
            "matmul f64 128 [rust]",
            &k_inst,
            &k_g,
            &kernels,
            "matmul",
            vec![128],
            Box::new(|| k::matmul(&mut ma, &mut mb, &mut mc, black_box(128))),
        ),
    ];
    let (mut ratios, mut guard_ratios, mut controls) = (Vec::new(), Vec::new(), Vec::new());
    for (label, inst, inst_g, file, export, args, mut native) in cases {
        let vals: Vec<Val> = args.iter().map(|a| Val::I32(*a)).collect();
        let (mut n_t, mut w_t, mut g_t) = (Vec::new(), Vec::new(), Vec::new());
        let (mut rn, mut rw, mut rg) = (0, Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let mut time_native = || {
                let t = Instant::now();
                rn = native();
                n_t.push(t.elapsed().as_secs_f64());
            };
            let time_ours = |i: &Instance, times: &mut Vec<f64>, out: &mut Vec<Val>| {
                let t = Instant::now();
                *out = i.call(export, &vals).unwrap();
                times.push(t.elapsed().as_secs_f64());
            };
            if round % 2 == 0 {
                time_native();
                time_ours(inst, &mut w_t, &mut rw);
                time_ours(inst_g, &mut g_t, &mut rg);
            } else {
                time_ours(inst_g, &mut g_t, &mut rg);
                time_ours(inst, &mut w_t, &mut rw);
                time_native();
            }
        }
        let (tn, tw, tg) = (median(n_t), median(w_t), median(g_t));
        assert_eq!(rw, vec![Val::I32(rn as i32)], "{label}: WASM and native disagree");
        assert_eq!(rg, rw, "{label}: guard-region build disagrees");
        // fib and mix touch no memory: their code is the same in both modes, so their ratio
        // shows the noise, not the effect.
        if label.contains("[wat]") {
            controls.push(tg / tw)
        } else {
            guard_ratios.push(tg / tw)
        }
        let wt = wasmtime(file, export, &args);
        if let Some((_, t, r)) = wt {
            assert_eq!(r, rn as i32, "{label}: wasmtime disagrees");
            ratios.push(tw / t);
        }
        println!(
            "{label:<28} native {:>8.2} ms  ours {:>8.2} ms ({:.2}x native; guard regions {:.2} ms){}",
            tn * 1e3,
            tw * 1e3,
            tw / tn,
            tg * 1e3,
            wt.map(|(_, t, _)| format!("  wasmtime {:>8.2} ms  ours/wasmtime {:.2}x", t * 1e3, tw / t))
                .unwrap_or_else(|| "  (wasmtime baseline not built)".into())
        );
    }
    let geo = |v: &[f64]| (v.iter().map(|r| r.ln()).sum::<f64>() / v.len() as f64).exp();
    println!(
        "guard regions / explicit bounds checks, geometric mean over the memory-using kernels (sha256, heapsort, matmul): {:.2}x; \
         noise controls without memory accesses (fib, mix: same code in both modes): {:.2}x",
        geo(&guard_ratios),
        geo(&controls)
    );
    if !ratios.is_empty() {
        let geo = ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64;
        println!(
            "ours/wasmtime geometric mean: {:.2}x (goal <= 1.0x; times are medians of {ROUNDS} runs on both sides; wasmtime with its defaults: guard pages, no fuel)",
            geo.exp()
        );
    }
}
