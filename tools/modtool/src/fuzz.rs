//! `modtool fuzz`: a mutation fuzzer over the object reader and the linker.
//!
//! Inputs are the fixture objects (small, real rustc output). Each iteration mutates one of them
//! — random bytes, interesting values written into ELF header, section header and relocation
//! fields, truncation — and loads it into a fresh namespace on top of a base namespace that
//! already holds core, alloc and compiler_builtins. Loading must return `Ok` or `Err`; a panic
//! is a bug: the input is saved to `mod_mgmt/tests/fuzz_regressions/` (which the host tests
//! replay) and the run fails. Loaded code is never executed.

use super::LoadOpts;
use mod_mgmt::{LoadError, Loader, ObjectBytes};
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    0x10,
    0x40,
    0x7f,
    0x80,
    0xff,
    0x100,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    u64::MAX,
    u64::MAX - 1,
    i64::MAX as u64,
];

fn put(b: &mut [u8], at: usize, width: usize, v: u64) {
    if at.checked_add(width).is_some_and(|e| e <= b.len()) {
        b[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
    }
}

fn rd(b: &[u8], at: usize, width: usize) -> u64 {
    let mut x = [0u8; 8];
    if at.checked_add(width).is_some_and(|e| e <= b.len()) {
        x[..width].copy_from_slice(&b[at..at + width]);
    }
    u64::from_le_bytes(x)
}

fn mutate(rng: &mut Rng, orig: &[u8]) -> Vec<u8> {
    let mut b = orig.to_vec();
    let shoff = rd(&b, 0x28, 8) as usize;
    let shnum = rd(&b, 0x3c, 2) as usize;
    for _ in 0..1 + rng.below(3) {
        let v = INTERESTING[rng.below(INTERESTING.len())];
        match rng.below(6) {
            0 if !b.is_empty() => {
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(b.len());
                    b[i] = rng.next() as u8;
                }
            }
            1 => {
                // ELF header field.
                let (at, w) = [(0x10, 2), (0x12, 2), (0x28, 8), (0x3a, 2), (0x3c, 2), (0x3e, 2), (4, 1), (5, 1)][rng.below(8)];
                put(&mut b, at, w, v);
            }
            2 if shnum > 0 => {
                // Section header field.
                let s = shoff.wrapping_add(rng.below(shnum) * 64);
                let (off, w) = [(0, 4), (4, 4), (8, 8), (24, 8), (32, 8), (40, 4), (44, 4), (48, 8), (56, 8)][rng.below(9)];
                put(&mut b, s.wrapping_add(off), w, v);
            }
            3 if shnum > 0 => {
                // A relocation entry: type, symbol, offset or addend.
                let rela: Vec<usize> = (0..shnum).filter(|&i| rd(&b, shoff.wrapping_add(i * 64 + 4), 4) == 4).collect();
                if !rela.is_empty() {
                    let s = shoff.wrapping_add(rela[rng.below(rela.len())] * 64);
                    let (off, size) = (rd(&b, s.wrapping_add(24), 8) as usize, rd(&b, s.wrapping_add(32), 8) as usize);
                    if size >= 24 {
                        let e = off.wrapping_add(rng.below(size / 24) * 24);
                        match rng.below(4) {
                            0 => put(&mut b, e.wrapping_add(8), 4, rng.below(45) as u64),
                            1 => put(&mut b, e.wrapping_add(12), 4, v),
                            2 => put(&mut b, e, 8, v),
                            _ => put(&mut b, e.wrapping_add(16), 8, v),
                        }
                    }
                }
            }
            4 if !b.is_empty() => {
                let n = rng.below(b.len());
                b.truncate(n);
            }
            _ => {
                // Copy a chunk over another place.
                if b.len() > 64 {
                    let len = 1 + rng.below(64);
                    let from = rng.below(b.len() - len);
                    let to = rng.below(b.len() - len);
                    let chunk = b[from..from + len].to_vec();
                    b[to..to + len].copy_from_slice(&chunk);
                }
            }
        }
    }
    b
}

fn kind(e: &LoadError) -> &'static str {
    match e {
        LoadError::Malformed { .. } => "malformed",
        LoadError::WrongKind { .. } => "wrong kind",
        LoadError::TooLarge { .. } => "too large",
        LoadError::BadSymbol { .. } => "bad symbol",
        LoadError::UnsupportedRelocation { .. } => "unsupported relocation",
        LoadError::BadRelocation { .. } => "bad relocation",
        LoadError::RelocationOverflow { .. } => "relocation overflow",
        LoadError::Unresolved { .. } => "unresolved",
        LoadError::Ambiguous { .. } => "ambiguous",
        LoadError::AlreadyLoaded { .. } => "already loaded",
        LoadError::Memory(_) => "memory",
        _ => "other",
    }
}

pub fn run(o: &LoadOpts) -> Result<(), String> {
    let iters = o.iters.unwrap_or(20_000);
    let dir = o.dir.clone().unwrap_or_else(|| objbuild::repo_root().join("target/fixtures"));
    let objects = super::read_dir_objects(&dir)?;
    let mut loader = Loader::new(&mod_mgmt::host::HOST_MEMORY);
    let host = mod_mgmt::host::install(&mut loader).map_err(|e| e.to_string())?;
    let base = loader.add_namespace("base", Some(host)).map_err(|e| e.to_string())?;
    let mut inputs = Vec::new();
    for (name, bytes) in &objects {
        let c = mod_mgmt::crate_name_of(name);
        if c.starts_with("fx_") {
            inputs.push((name.clone(), bytes.clone()));
        }
        if c != "fx_a" {
            // Everything but the top crate is linkable, so mutated fx_a/fx_b/fx_c link fully.
            loader.add_object_file(base, name, ObjectBytes::from(bytes.clone())).map_err(|e| e.to_string())?;
        }
    }
    for c in ["core", "alloc", "compiler_builtins", "fx_c", "fx_b"] {
        let f = objects.iter().find(|(n, _)| mod_mgmt::crate_name_of(n) == c).ok_or(format!("no {c} object in {}", dir.display()))?;
        if loader.crate_by_name(base, c).is_some() {
            continue;
        }
        loader.load(base, &f.0, ObjectBytes::from(f.1.clone())).map_err(|e| format!("{c}: {e}"))?;
    }
    if inputs.is_empty() {
        return Err(format!("no fx_* objects in {} (run tools/fixtures.sh)", dir.display()));
    }
    if std::env::var_os("FUZZ_VERBOSE").is_none() {
        std::panic::set_hook(Box::new(|_| {}));
    }
    let mut rng = Rng(o.seed.unwrap_or(0x5EED_DE105) | 1);
    let (mut ok, mut panics) = (0u64, 0u64);
    let mut errors: BTreeMap<&'static str, u64> = BTreeMap::new();
    let regress = objbuild::repo_root().join("mod_mgmt/tests/fuzz_regressions");
    let t0 = std::time::Instant::now();
    for i in 0..iters {
        let (name, orig) = &inputs[rng.below(inputs.len())];
        let input = mutate(&mut rng, orig);
        let ns = loader.add_namespace(&format!("fuzz{i}"), Some(base)).map_err(|e| e.to_string())?;
        let r = catch_unwind(AssertUnwindSafe(|| loader.load(ns, name, ObjectBytes::from(input.clone()))));
        match r {
            Ok(Ok(id)) => {
                ok += 1;
                loader.unload(id).map_err(|e| format!("iteration {i}: unloading a fuzzed crate: {e}"))?;
            }
            Ok(Err(e)) => *errors.entry(kind(&e)).or_default() += 1,
            Err(_) => {
                panics += 1;
                let path: PathBuf = regress.join(format!("crash-{i}-{:016x}.o", rng.next()));
                let _ = std::fs::write(&path, &input);
                eprintln!("fuzz: PANIC at iteration {i}; input saved to {}", path.display());
                // The loader may be inconsistent after a panic: start over from a fresh one.
                return Err(format!("{panics} panic(s); inputs saved in {}", regress.display()));
            }
        }
    }
    let _ = std::panic::take_hook();
    let secs = t0.elapsed().as_secs_f64();
    println!("fuzz: {iters} iterations in {secs:.1} s ({:.0}/s), {panics} panics, {ok} loaded, errors: {errors:?}", iters as f64 / secs);
    Ok(())
}
