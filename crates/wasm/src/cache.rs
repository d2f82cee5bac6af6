//! Compiled modules kept for reuse: a `wasm run` or `wasm load` of bytes compiled before, with
//! the same compile options and by the same engine, instantiates the kept code instead of
//! compiling again (Cranelift under TCG costs milliseconds per function).
//!
//! The key is the bytes themselves, compared in full (not a hash: a module is untrusted input,
//! and a crafted collision must not run someone else's code), plus the options that change the
//! code (fuel checks, explicit bounds checks). Every committed swap empties it
//! (`wasm::after_swap`): the kept modules hold the engine's code (vtables, runtime functions)
//! and would keep a retired version of any engine crate alive, and code from two compilers is
//! never mixed. A compile that a swap overlapped is used once and not kept (it may hold the
//! old engine). Bounded by entries and bytes; the least recently used goes first.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use wasm_runtime::{Config, Error, Module};

/// Most modules kept.
const MAX_ENTRIES: usize = 16;
/// Most bytes kept (the modules' bytes plus their compiled code).
const MAX_BYTES: usize = 16 << 20;

struct Entry {
    bytes: Vec<u8>,
    /// The compile options that change the code ([`options`]). A whole word, not two `bool`s:
    /// an entry is built on the stack and moved into the cache, and the six padding bytes
    /// beside two `bool`s carried stale stack bytes along. With the two `false`s below them they
    /// read as an address in a crate's code, which the swap's conservative reference scan took
    /// for a reference: a retired `wasm` crate was kept for good (the `-smp 4` swap storm).
    options: u64,
    module: Arc<Module>,
    /// Microseconds its compilation took.
    compile_us: u64,
    hits: u64,
}

impl Entry {
    fn size(&self) -> usize {
        self.bytes.len() + self.module.image.code.len()
    }
}

/// The options of `config` that change the compiled code, as one word.
fn options(config: &Config) -> u64 {
    u64::from(config.fuel) | u64::from(config.bounds_checks) << 1
}

/// Kept modules, least recently used first.
static CACHE: spin::Mutex<Vec<Entry>> = spin::Mutex::new(Vec::new());

/// Committed swaps seen (by [`swapped`]); the cache holds only modules compiled wholly within
/// the current generation.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// How a module was obtained.
pub struct Compiled {
    /// The module (shared with the cache).
    pub module: Arc<Module>,
    /// Whether it came from the cache.
    pub cached: bool,
    /// Microseconds its compilation took (then, for a cached one).
    pub compile_us: u64,
}

/// The module for `bytes` compiled with `config`: from the cache, or compiled now and kept.
pub fn compiled(bytes: &[u8], config: Config) -> Result<Compiled, Error> {
    let generation = GENERATION.load(Ordering::Acquire);
    {
        let mut cache = CACHE.lock();
        if let Some(i) = cache.iter().position(|e| e.options == options(&config) && e.bytes == bytes) {
            let mut e = cache.remove(i);
            e.hits += 1;
            let hit = Compiled { module: e.module.clone(), cached: true, compile_us: e.compile_us };
            cache.push(e);
            return Ok(hit);
        }
    }
    let t0 = nano_core::time::micros_since_entry();
    let module = Arc::new(Module::new_with(bytes, config, &crate::helpers::ParkedCpus)?);
    let compile_us = nano_core::time::micros_since_entry() - t0;
    let entry = Entry { bytes: bytes.to_vec(), options: options(&config), module: module.clone(), compile_us, hits: 0 };
    let mut cache = CACHE.lock();
    if GENERATION.load(Ordering::Acquire) != generation {
        // A swap committed while this compiled: the module may hold a retired engine's code.
        return Ok(Compiled { module, cached: false, compile_us });
    }
    cache.push(entry);
    while cache.len() > MAX_ENTRIES || (cache.len() > 1 && cache.iter().map(Entry::size).sum::<usize>() > MAX_BYTES) {
        cache.remove(0);
    }
    Ok(Compiled { module, cached: false, compile_us })
}

/// One line per kept module: (bytes, compiled code bytes, compile microseconds, hits).
pub fn list() -> Vec<(usize, usize, u64, u64)> {
    CACHE.lock().iter().map(|e| (e.bytes.len(), e.module.image.code.len(), e.compile_us, e.hits)).collect()
}

/// A swap committed: forget every kept module, and keep none whose compile overlapped it.
pub fn swapped() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
    clear();
}

/// Forgets every kept module.
pub fn clear() -> usize {
    let mut cache = CACHE.lock();
    let n = cache.len();
    cache.clear();
    n
}
