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

fn fib(n: u32) -> u32 {
    if n < 2 { n } else { fib(n - 1).wrapping_add(fib(n - 2)) }
}

fn sort(n: u32, mut seed: u32, mem: &mut [u32]) -> u32 {
    for i in 0..n as usize {
        seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
        mem[i] = seed >> 8;
    }
    for i in 1..n as usize {
        let x = mem[i];
        let mut j = i;
        while j > 0 && mem[j - 1] > x {
            mem[j] = mem[j - 1];
            j -= 1;
        }
        mem[j] = x;
    }
    mem[100]
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

fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::MAX;
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        last = Some(f());
        best = best.min(t.elapsed().as_secs_f64());
    }
    (best, last.unwrap())
}

fn main() {
    let bytes = wat::parse_str(WAT).unwrap();
    let (compile_s, module) = best(5, || Module::new(&bytes, Config { allow_avx: true, ..Config::default() }).unwrap());
    let funcs = module.image.funcs.len();
    println!(
        "compile: {:.2} ms per module, {:.0} us per function ({} functions, {} IR instructions, {} bytes of code)",
        compile_s * 1e3,
        compile_s * 1e6 / funcs as f64,
        funcs,
        module.image.ir_insts,
        module.image.code.len()
    );
    let store = Store::new(&HOST);
    let inst = Instance::new(&store, &module, "bench", &|_| None).unwrap();
    let mut mem = vec![0u32; 65536];
    let cases: Vec<(&str, Vec<Val>, Box<dyn FnMut() -> u32>)> = vec![
        ("fib(30)", vec![Val::I32(30)], Box::new(|| fib(black_box(30)))),
        ("sort 6000 (insertion)", vec![Val::I32(6000), Val::I32(7)], Box::new(move || sort(black_box(6000), black_box(7), &mut mem))),
        ("mix 50M rounds", vec![Val::I32(50_000_000)], Box::new(|| mix(black_box(50_000_000)))),
    ];
    let names = ["fib", "sort", "mix"];
    for ((label, args, mut native), export) in cases.into_iter().zip(names) {
        let (tn, rn) = best(5, &mut native);
        let (tw, rw) = best(5, || inst.call(export, &args).unwrap());
        assert_eq!(rw, vec![Val::I32(rn as i32)], "{label}: WASM and native disagree");
        println!("{label:<24} native {:>8.2} ms   wasm {:>8.2} ms   ratio {:.2}x", tn * 1e3, tw * 1e3, tw / tn);
    }
}
