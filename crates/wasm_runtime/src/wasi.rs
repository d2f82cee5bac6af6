//! A WASI preview1 subset: console output, exit, arguments, environment, clock, randomness,
//! and the file-descriptor calls a program's start-up code makes (answered "no such file"),
//! enough for programs built for `wasm32-wasip1` or against the WASI imports by hand.
//!
//! Each function is an ordinary host function (`extern "C"`, first argument the calling
//! instance's context) found by name in [`resolve`]; pointers from the program are checked
//! against its memory and a bad one yields `EFAULT` rather than a fault.

use crate::instance::{Func, store_of};
use crate::trap::{self, TrapKind};
use crate::vm::VMContext;
use alloc::string::String;
use alloc::vec::Vec;
use wasmparser::{FuncType, ValType};

/// Every function of this WASI subset (what [`resolve`] knows).
pub const NAMES: &[&str] = &[
    "fd_write",
    "fd_read",
    "proc_exit",
    "args_sizes_get",
    "args_get",
    "environ_sizes_get",
    "environ_get",
    "clock_time_get",
    "random_get",
    "fd_fdstat_get",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "fd_close",
    "fd_seek",
    "sched_yield",
];

/// The module name WASI imports use.
pub const MODULE: &str = "wasi_snapshot_preview1";

const ESUCCESS: i32 = 0;
const EBADF: i32 = 8;
pub(crate) const EFAULT: i32 = 21;
const EINVAL: i32 = 28;
const ESPIPE: i32 = 70;

/// WASI state of a store.
#[derive(Default)]
pub struct WasiCtx {
    /// `argv`, including the program name.
    pub args: Vec<String>,
    /// `KEY=value` strings.
    pub env: Vec<String>,
    /// Where stdout/stderr go as they are written (the console); `None` keeps them only in
    /// [`WasiCtx::output`].
    pub sink: Option<fn(&[u8])>,
    /// Everything written to stdout and stderr.
    pub output: Vec<u8>,
    /// Nanoseconds since boot, for `clock_time_get`.
    pub clock: Option<fn() -> u64>,
    /// State of the `random_get` generator.
    pub seed: u64,
}

/// The memory of the calling instance as a slice.
///
/// # Safety
/// `vmctx` must be the live context of the instance calling a host function.
pub(crate) unsafe fn memory<'a>(vmctx: *mut VMContext) -> &'a mut [u8] {
    // SAFETY: the caller's context; its memory pointer is null or a live VMMemory.
    unsafe {
        let m = (*vmctx).memory;
        if m.is_null() || (*m).len == 0 {
            return &mut [];
        }
        core::slice::from_raw_parts_mut((*m).base, (*m).len as usize)
    }
}

pub(crate) fn get(mem: &[u8], at: u32, len: u32) -> Option<&[u8]> {
    mem.get(at as usize..(at as usize).checked_add(len as usize)?)
}

fn put(mem: &mut [u8], at: u32, bytes: &[u8]) -> Option<()> {
    mem.get_mut(at as usize..(at as usize).checked_add(bytes.len())?)?.copy_from_slice(bytes);
    Some(())
}

fn u32_at(mem: &[u8], at: u32) -> Option<u32> {
    Some(u32::from_le_bytes(get(mem, at, 4)?.try_into().ok()?))
}

/// The most bytes one `fd_write` takes (the rest is left for the next call, as with a pipe).
const MAX_WRITE: usize = 1 << 20;

unsafe extern "C" fn fd_write(vmctx: *mut VMContext, fd: i32, iovs: i32, n: i32, written: i32) -> i32 {
    if fd != 1 && fd != 2 {
        return EBADF;
    }
    // SAFETY: called by compiled code with its context.
    let (mem, store) = unsafe { (memory(vmctx), store_of(vmctx)) };
    let mut out = Vec::new();
    // Every iovec must lie in memory, so `n` is bounded by the memory's size; the bytes taken
    // are capped per call (a partial write, as WASI allows: the count says how much).
    if (iovs as u32 as u64) + (n as u32 as u64) * 8 > mem.len() as u64 {
        return EFAULT;
    }
    for k in 0..n as u32 {
        let base = iovs as u32 + k * 8; // in memory: checked above
        let (Some(p), Some(l)) = (u32_at(mem, base), u32_at(mem, base + 4)) else { return EFAULT };
        let Some(b) = get(mem, p, l) else { return EFAULT };
        let room = MAX_WRITE - out.len();
        out.extend_from_slice(&b[..b.len().min(room)]);
        if out.len() == MAX_WRITE {
            break;
        }
    }
    if put(mem, written as u32, &(out.len() as u32).to_le_bytes()).is_none() {
        return EFAULT;
    }
    let mut w = store.wasi.lock();
    if let Some(sink) = w.sink {
        sink(&out);
    }
    w.output.extend_from_slice(&out);
    ESUCCESS
}

unsafe extern "C" fn fd_read(vmctx: *mut VMContext, _fd: i32, _iovs: i32, _n: i32, nread: i32) -> i32 {
    // SAFETY: as above.
    let mem = unsafe { memory(vmctx) };
    put(mem, nread as u32, &0u32.to_le_bytes()).map_or(EFAULT, |_| ESUCCESS)
}

unsafe extern "C" fn proc_exit(_vmctx: *mut VMContext, code: i32) {
    // SAFETY: called from WASM code; this frame owns nothing to drop.
    unsafe { trap::raise(TrapKind::Exit, code) }
}

fn strings(v: &[String]) -> (u32, u32) {
    (v.len() as u32, v.iter().map(|s| s.len() as u32 + 1).sum())
}

unsafe fn sizes(vmctx: *mut VMContext, which: fn(&WasiCtx) -> &[String], count: i32, size: i32) -> i32 {
    // SAFETY: as above.
    let (mem, store) = unsafe { (memory(vmctx), store_of(vmctx)) };
    let w = store.wasi.lock();
    let (n, s) = strings(which(&w));
    match (put(mem, count as u32, &n.to_le_bytes()), put(mem, size as u32, &s.to_le_bytes())) {
        (Some(()), Some(())) => ESUCCESS,
        _ => EFAULT,
    }
}

unsafe fn fill(vmctx: *mut VMContext, which: fn(&WasiCtx) -> &[String], ptrs: i32, buf: i32) -> i32 {
    // SAFETY: as above.
    let (mem, store) = unsafe { (memory(vmctx), store_of(vmctx)) };
    let w = store.wasi.lock();
    let mut at = buf as u32;
    for (i, s) in which(&w).iter().enumerate() {
        let Some(slot) = (ptrs as u32).checked_add(i as u32 * 4) else { return EFAULT };
        let Some(nul) = at.checked_add(s.len() as u32) else { return EFAULT };
        if put(mem, slot, &at.to_le_bytes()).is_none() || put(mem, at, s.as_bytes()).is_none() || put(mem, nul, &[0]).is_none() {
            return EFAULT;
        }
        let Some(next) = nul.checked_add(1) else { return EFAULT };
        at = next;
    }
    ESUCCESS
}

unsafe extern "C" fn args_sizes_get(vmctx: *mut VMContext, count: i32, size: i32) -> i32 {
    // SAFETY: forwarded.
    unsafe { sizes(vmctx, |w| &w.args, count, size) }
}

unsafe extern "C" fn args_get(vmctx: *mut VMContext, ptrs: i32, buf: i32) -> i32 {
    // SAFETY: forwarded.
    unsafe { fill(vmctx, |w| &w.args, ptrs, buf) }
}

unsafe extern "C" fn environ_sizes_get(vmctx: *mut VMContext, count: i32, size: i32) -> i32 {
    // SAFETY: forwarded.
    unsafe { sizes(vmctx, |w| &w.env, count, size) }
}

unsafe extern "C" fn environ_get(vmctx: *mut VMContext, ptrs: i32, buf: i32) -> i32 {
    // SAFETY: forwarded.
    unsafe { fill(vmctx, |w| &w.env, ptrs, buf) }
}

unsafe extern "C" fn clock_time_get(vmctx: *mut VMContext, id: i32, _precision: i64, out: i32) -> i32 {
    if !(0..=3).contains(&id) {
        return EINVAL;
    }
    // SAFETY: as above.
    let (mem, store) = unsafe { (memory(vmctx), store_of(vmctx)) };
    let now = store.wasi.lock().clock.map(|c| c()).unwrap_or(0);
    put(mem, out as u32, &now.to_le_bytes()).map_or(EFAULT, |_| ESUCCESS)
}

unsafe extern "C" fn random_get(vmctx: *mut VMContext, buf: i32, len: i32) -> i32 {
    // SAFETY: as above.
    let (mem, store) = unsafe { (memory(vmctx), store_of(vmctx)) };
    let mut w = store.wasi.lock();
    let Some(dst) = mem.get_mut(buf as u32 as usize..(buf as u32 as usize).saturating_add(len as u32 as usize)) else { return EFAULT };
    let mut x = w.seed | 1;
    for b in dst {
        // xorshift64*: not cryptographic, documented as such.
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *b = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8;
    }
    w.seed = x;
    ESUCCESS
}

unsafe extern "C" fn fd_fdstat_get(vmctx: *mut VMContext, fd: i32, out: i32) -> i32 {
    if !(0..=2).contains(&fd) {
        return EBADF;
    }
    // SAFETY: as above.
    let mem = unsafe { memory(vmctx) };
    let mut st = [0u8; 24];
    st[0] = 2; // character device
    put(mem, out as u32, &st).map_or(EFAULT, |_| ESUCCESS)
}

unsafe extern "C" fn fd_badf2(_vmctx: *mut VMContext, _a: i32, _b: i32) -> i32 {
    EBADF
}

unsafe extern "C" fn fd_badf3(_vmctx: *mut VMContext, _a: i32, _b: i32, _c: i32) -> i32 {
    EBADF
}

unsafe extern "C" fn fd_close(_vmctx: *mut VMContext, _fd: i32) -> i32 {
    EBADF
}

unsafe extern "C" fn fd_seek(_vmctx: *mut VMContext, _fd: i32, _off: i64, _whence: i32, _out: i32) -> i32 {
    ESPIPE
}

unsafe extern "C" fn sched_yield(_vmctx: *mut VMContext) -> i32 {
    ESUCCESS
}

/// A host function at `code` with parameters `p` and results `r` (it takes the caller's
/// context as its first argument, like every host function here).
pub(crate) fn host_func(code: usize, p: &[ValType], r: &[ValType]) -> Func {
    Func { code: code as u64, ty: FuncType::new(p.iter().copied(), r.iter().copied()), vmctx: core::ptr::null_mut(), owner: None }
}

/// The WASI function `name` with its type, if this subset has it.
pub fn resolve(name: &str) -> Option<Func> {
    use ValType::{I32, I64};
    let f = host_func;
    Some(match name {
        "fd_write" => f(fd_write as *const () as usize, &[I32; 4], &[I32]),
        "fd_read" => f(fd_read as *const () as usize, &[I32; 4], &[I32]),
        "proc_exit" => f(proc_exit as *const () as usize, &[I32], &[]),
        "args_sizes_get" => f(args_sizes_get as *const () as usize, &[I32; 2], &[I32]),
        "args_get" => f(args_get as *const () as usize, &[I32; 2], &[I32]),
        "environ_sizes_get" => f(environ_sizes_get as *const () as usize, &[I32; 2], &[I32]),
        "environ_get" => f(environ_get as *const () as usize, &[I32; 2], &[I32]),
        "clock_time_get" => f(clock_time_get as *const () as usize, &[I32, I64, I32], &[I32]),
        "random_get" => f(random_get as *const () as usize, &[I32; 2], &[I32]),
        "fd_fdstat_get" => f(fd_fdstat_get as *const () as usize, &[I32; 2], &[I32]),
        "fd_prestat_get" => f(fd_badf2 as *const () as usize, &[I32; 2], &[I32]),
        "fd_prestat_dir_name" => f(fd_badf3 as *const () as usize, &[I32; 3], &[I32]),
        "fd_close" => f(fd_close as *const () as usize, &[I32], &[I32]),
        "fd_seek" => f(fd_seek as *const () as usize, &[I32, I64, I32, I32], &[I32]),
        "sched_yield" => f(sched_yield as *const () as usize, &[], &[I32]),
        _ => return None,
    })
}
