//! The `delos` import module: host functions made for WebAssembly.
//!
//! A module may import WASI, the exports of other loaded modules, and these — nothing else
//! unless the embedder grants more (the kernel's `wasm run --trusted`). Each function takes
//! the calling instance's context first, like the WASI ones, and checks every pointer and
//! length against the caller's own linear memory: a bad one yields `EFAULT` (21), never a
//! fault and never a read or write outside that memory.
//!
//! | import | type | what it does |
//! |---|---|---|
//! | `delos.print` | `(ptr i32, len i32) -> i32` | writes `len` bytes of memory at `ptr` to the console (the store's WASI sink); 0 or `EFAULT` |
//! | `delos.uptime_ms` | `() -> i64` | milliseconds since boot (the store's WASI clock) |
//!
//! The kernel adds `delos.backtrace` (prints a backtrace of the calling task, WASM frames
//! included) and `delos.panic` (a deliberate panic that unwinds through the WASM frames).

use crate::instance::{Func, store_of};
use crate::vm::VMContext;
use crate::wasi::{EFAULT, get, memory};
use wasmparser::ValType;

/// The module name these imports use.
pub const MODULE: &str = "delos";

/// The functions this module offers (the embedder may add its own).
pub const NAMES: &[&str] = &["print", "uptime_ms"];

unsafe extern "C" fn print(vmctx: *mut VMContext, ptr: i32, len: i32) -> i32 {
    // SAFETY: called by compiled code with its context.
    let (mem, store) = unsafe { (memory(vmctx), store_of(vmctx)) };
    let Some(bytes) = get(mem, ptr as u32, len as u32) else { return EFAULT };
    let mut w = store.wasi.lock();
    if let Some(sink) = w.sink {
        sink(bytes);
    }
    w.output.extend_from_slice(bytes);
    0
}

unsafe extern "C" fn uptime_ms(vmctx: *mut VMContext) -> i64 {
    // SAFETY: as above.
    let store = unsafe { store_of(vmctx) };
    store.wasi.lock().clock.map_or(0, |c| (c() / 1_000_000) as i64)
}

/// A host function of this module by name (`delos_wasm_uptime_ms` is the old name of
/// `uptime_ms`).
pub fn resolve(name: &str) -> Option<Func> {
    use ValType::{I32, I64};
    let f = crate::wasi::host_func;
    Some(match name {
        "print" => f(print as *const () as usize, &[I32, I32], &[I32]),
        "uptime_ms" | "delos_wasm_uptime_ms" => f(uptime_ms as *const () as usize, &[], &[I64]),
        _ => return None,
    })
}
