//! The C ABI exports and their kernel bindings (heap, console, tasks, page tables).
//!
//! Every function here is `extern "C"` with its C name; C objects loaded by `loadc` resolve
//! their undefined symbols to them (tlibc is loaded on demand from the applications namespace).

use crate::{conv, sort, string};
use alloc::alloc::Layout;
use alloc::collections::BTreeMap;
use core::cell::Cell;
use core::ffi::{c_char, c_int, c_long, c_void};
use nano_core::paging::{Mapping, PAGE, Perms};
use spin::Mutex;

#[thread_local]
static ERRNO: Cell<c_int> = Cell::new(0);

fn set_errno(e: c_int) {
    ERRNO.set(e);
}

/// The calling task's `errno`.
#[unsafe(no_mangle)]
pub extern "C" fn __errno_location() -> *mut c_int {
    ERRNO.as_ptr()
}

// --- strings -------------------------------------------------------------------------------

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strnlen(s: *const c_char, max: usize) -> usize {
    // SAFETY: forwarded under the C contract.
    unsafe { string::strnlen(s, max) }
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strcmp(a: *const c_char, b: *const c_char) -> c_int {
    // SAFETY: forwarded under the C contract.
    unsafe { string::strcmp(a, b) }
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strncmp(a: *const c_char, b: *const c_char, n: usize) -> c_int {
    // SAFETY: forwarded under the C contract.
    unsafe { string::strncmp(a, b, n) }
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strcpy(d: *mut c_char, s: *const c_char) -> *mut c_char {
    // SAFETY: C contract: `s` is a C string and `d` has room for it and its NUL.
    unsafe { core::ptr::copy_nonoverlapping(s, d, string::strlen(s) + 1) };
    d
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strncpy(d: *mut c_char, s: *const c_char, n: usize) -> *mut c_char {
    // SAFETY: C contract: `d` has `n` bytes; `s` is readable up to its NUL or `n` bytes.
    unsafe {
        let len = string::strnlen(s, n);
        core::ptr::copy_nonoverlapping(s, d, len);
        core::ptr::write_bytes(d.add(len), 0, n - len);
    }
    d
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strcat(d: *mut c_char, s: *const c_char) -> *mut c_char {
    // SAFETY: C contract: `d` has room for both strings and the NUL.
    unsafe { strcpy(d.add(string::strlen(d)), s) };
    d
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strncat(d: *mut c_char, s: *const c_char, n: usize) -> *mut c_char {
    // SAFETY: C contract: `d` has room for its string, up to `n` bytes of `s` and a NUL.
    unsafe {
        let end = d.add(string::strlen(d));
        let len = string::strnlen(s, n);
        core::ptr::copy_nonoverlapping(s, end, len);
        *end.add(len) = 0;
    }
    d
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strchr(s: *const c_char, c: c_int) -> *mut c_char {
    // SAFETY: forwarded under the C contract.
    unsafe { string::strchr(s, c) }
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strrchr(s: *const c_char, c: c_int) -> *mut c_char {
    // SAFETY: forwarded under the C contract.
    unsafe { string::strrchr(s, c) }
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strstr(h: *const c_char, n: *const c_char) -> *mut c_char {
    // SAFETY: forwarded under the C contract.
    unsafe { string::strstr(h, n) }
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strspn(s: *const c_char, set: *const c_char) -> usize {
    // SAFETY: forwarded under the C contract.
    unsafe { string::span(s, set, true) }
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strcspn(s: *const c_char, set: *const c_char) -> usize {
    // SAFETY: forwarded under the C contract.
    unsafe { string::span(s, set, false) }
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strpbrk(s: *const c_char, set: *const c_char) -> *mut c_char {
    // SAFETY: forwarded under the C contract.
    unsafe {
        let i = string::span(s, set, false);
        if *s.add(i) == 0 { core::ptr::null_mut() } else { s.add(i) as *mut c_char }
    }
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memchr(s: *const c_void, c: c_int, n: usize) -> *mut c_void {
    // SAFETY: forwarded under the C contract.
    unsafe { string::memchr(s as *const u8, c, n) as *mut c_void }
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strdup(s: *const c_char) -> *mut c_char {
    // SAFETY: C contract: `s` is a C string.
    unsafe { strndup(s, usize::MAX) }
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strndup(s: *const c_char, n: usize) -> *mut c_char {
    // SAFETY: C contract; the new block has len + 1 bytes.
    unsafe {
        let len = string::strnlen(s, n);
        let d = malloc(len + 1) as *mut c_char;
        if !d.is_null() {
            core::ptr::copy_nonoverlapping(s, d, len);
            *d.add(len) = 0;
        }
        d
    }
}

/// The message for an errno value.
#[unsafe(no_mangle)]
pub extern "C" fn strerror(e: c_int) -> *const c_char {
    string::strerror(e).as_ptr() as *const c_char
}

// --- memory --------------------------------------------------------------------------------

/// Bytes before every block: the allocation's start, its total size, its alignment, and the
/// size the program asked for.
const HEADER: usize = 32;

unsafe fn alloc_aligned(size: usize, align: usize, zero: bool) -> *mut c_void {
    let align = align.max(16);
    let Some(total) = size.checked_add(HEADER + align) else {
        set_errno(conv::ENOMEM);
        return core::ptr::null_mut();
    };
    let Ok(layout) = Layout::from_size_align(total, align) else {
        set_errno(conv::EINVAL);
        return core::ptr::null_mut();
    };
    // SAFETY: the layout has a non-zero size.
    let raw = unsafe { if zero { alloc::alloc::alloc_zeroed(layout) } else { alloc::alloc::alloc(layout) } };
    if raw.is_null() {
        set_errno(conv::ENOMEM);
        return core::ptr::null_mut();
    }
    let user = (raw as usize + HEADER + align - 1) & !(align - 1);
    let h = (user - HEADER) as *mut usize;
    // SAFETY: `user - HEADER .. user` lies inside the block (user >= raw + HEADER).
    unsafe {
        h.write(raw as usize);
        h.add(1).write(total);
        h.add(2).write(align);
        h.add(3).write(size);
    }
    user as *mut c_void
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    // SAFETY: no preconditions beyond C's.
    unsafe { alloc_aligned(size, 16, false) }
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: no preconditions beyond C's.
        Some(total) => unsafe { alloc_aligned(total, 16, true) },
        None => {
            set_errno(conv::ENOMEM);
            core::ptr::null_mut()
        }
    }
}

/// # Safety
/// `p` is null or came from this allocator and was not freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // SAFETY: the header written by alloc_aligned precedes `p`.
    unsafe {
        let h = (p as usize - HEADER) as *const usize;
        let (raw, total, align) = (h.read(), h.add(1).read(), h.add(2).read());
        alloc::alloc::dealloc(raw as *mut u8, Layout::from_size_align_unchecked(total, align));
    }
}

/// # Safety
/// As `free` for `p`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        // SAFETY: C semantics.
        return unsafe { malloc(size) };
    }
    // SAFETY: the header precedes `p`; the new block holds at least min(old, new) bytes.
    unsafe {
        let old = ((p as usize - HEADER) as *const usize).add(3).read();
        let n = malloc(size);
        if !n.is_null() {
            core::ptr::copy_nonoverlapping(p as *const u8, n as *mut u8, old.min(size));
            free(p);
        }
        n
    }
}

/// # Safety
/// `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || !align.is_multiple_of(core::mem::size_of::<usize>()) {
        return conv::EINVAL;
    }
    // SAFETY: C semantics.
    let p = unsafe { alloc_aligned(size, align, false) };
    if p.is_null() {
        return conv::ENOMEM;
    }
    // SAFETY: caller's contract.
    unsafe { out.write(p) };
    0
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(conv::EINVAL);
        return core::ptr::null_mut();
    }
    // SAFETY: C semantics.
    unsafe { alloc_aligned(size, align, false) }
}

// --- stdio: in stdio.rs -----------------------------------------------------------------

mod stdio;
pub(crate) use stdio::fmt_bytes;

// --- process -------------------------------------------------------------------------------

/// Ends the program (its task) with `status`.
#[unsafe(no_mangle)]
pub extern "C" fn exit(status: c_int) -> ! {
    task::exit(task::Exit::Returned(status as isize))
}

/// Ends the program abnormally.
#[unsafe(no_mangle)]
pub extern "C" fn abort() -> ! {
    nano_core::println!("abort() called");
    task::exit(task::Exit::Returned(134))
}

// --- stdlib --------------------------------------------------------------------------------

unsafe fn c_bytes<'a>(s: *const c_char) -> &'a [u8] {
    // SAFETY: `s` is a C string.
    unsafe { fmt_bytes(s) }
}

unsafe fn strto(s: *const c_char, end: *mut *mut c_char, base: c_int) -> conv::Parsed {
    // SAFETY: `s` is a C string.
    let p = conv::parse(unsafe { c_bytes(s) }, base.max(0) as u32);
    if !end.is_null() {
        // SAFETY: `end` is writable (C contract); consumed <= strlen(s).
        unsafe { end.write(s.add(p.consumed) as *mut c_char) };
    }
    p
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strtoll(s: *const c_char, end: *mut *mut c_char, base: c_int) -> i64 {
    // SAFETY: C semantics.
    let (v, e) = conv::to_i64(&unsafe { strto(s, end, base) });
    if e != 0 {
        set_errno(e);
    }
    v
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strtol(s: *const c_char, end: *mut *mut c_char, base: c_int) -> c_long {
    // SAFETY: C semantics (long is 64-bit here).
    unsafe { strtoll(s, end, base) }
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strtoull(s: *const c_char, end: *mut *mut c_char, base: c_int) -> u64 {
    // SAFETY: C semantics.
    let (v, e) = conv::to_u64(&unsafe { strto(s, end, base) });
    if e != 0 {
        set_errno(e);
    }
    v
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strtoul(s: *const c_char, end: *mut *mut c_char, base: c_int) -> u64 {
    // SAFETY: C semantics.
    unsafe { strtoull(s, end, base) }
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn atoi(s: *const c_char) -> c_int {
    // SAFETY: C semantics.
    unsafe { strtoll(s, core::ptr::null_mut(), 10) as c_int }
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn atol(s: *const c_char) -> c_long {
    // SAFETY: C semantics.
    unsafe { strtoll(s, core::ptr::null_mut(), 10) }
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn atoll(s: *const c_char) -> i64 {
    // SAFETY: C semantics.
    unsafe { strtoll(s, core::ptr::null_mut(), 10) }
}

/// `abs`.
#[unsafe(no_mangle)]
pub extern "C" fn abs(v: c_int) -> c_int {
    v.wrapping_abs()
}

/// `labs`.
#[unsafe(no_mangle)]
pub extern "C" fn labs(v: c_long) -> c_long {
    v.wrapping_abs()
}

/// Absolute value.
#[unsafe(no_mangle)]
pub extern "C" fn llabs(v: i64) -> i64 {
    v.wrapping_abs()
}

/// An assembly entry `$name` for C callers: a frame (with CFI, so unwinding and backtraces
/// pass through it), the `$body` lines, which call `{target}` = `$target`, and a return.
/// Used where gcc's calling convention and this soft-float crate's differ in SSE registers.
macro_rules! sse_entry {
    ($name:literal, $target:path, [$($body:expr),* $(,)?]) => {
        core::arch::global_asm!(
            concat!(".global ", $name),
            concat!(".type ", $name, ", @function"),
            concat!($name, ":"),
            ".cfi_startproc",
            "push rbp",
            ".cfi_def_cfa_offset 16",
            ".cfi_offset rbp, -16",
            "mov rbp, rsp",
            ".cfi_def_cfa_register rbp",
            $($body,)*
            "leave",
            ".cfi_def_cfa rsp, 8",
            "ret",
            ".cfi_endproc",
            concat!(".size ", $name, ", . - ", $name),
            target = sym $target,
        );
    };
}
pub(crate) use sse_entry;

// The float-returning functions: C callers (built with SSE) expect the result in `xmm0`, but
// this crate is soft-float and returns it in `rax`; the entry moves it across.
sse_entry!("strtod", strtod_bits, ["movabs rax, offset {target}", "call rax", "movq xmm0, rax"]);
sse_entry!("strtof", strtof_bits, ["movabs rax, offset {target}", "call rax", "movd xmm0, eax"]);
sse_entry!("atof", atof_bits, ["movabs rax, offset {target}", "call rax", "movq xmm0, rax"]);

/// `strtod`, the result's bits in an integer register (see `float_return_entry`).
///
/// # Safety
/// C semantics.
unsafe extern "C" fn strtod_bits(s: *const c_char, end: *mut *mut c_char) -> u64 {
    // SAFETY: `s` is a C string.
    let p = crate::float::strtod(unsafe { c_bytes(s) });
    if !end.is_null() {
        // SAFETY: `end` is writable (C contract); len <= strlen(s).
        unsafe { end.write(s.add(p.len) as *mut c_char) };
    }
    if p.range_error {
        set_errno(conv::ERANGE);
    }
    p.value.to_bits()
}

/// `strtof`: read as a `double`, then rounded to `float`.
///
/// # Safety
/// C semantics.
unsafe extern "C" fn strtof_bits(s: *const c_char, end: *mut *mut c_char) -> u32 {
    // SAFETY: forwarded.
    let v = f64::from_bits(unsafe { strtod_bits(s, end) });
    (v as f32).to_bits()
}

/// `atof`.
///
/// # Safety
/// `s` is a C string.
unsafe extern "C" fn atof_bits(s: *const c_char) -> u64 {
    // SAFETY: `s` is a C string.
    crate::float::strtod(unsafe { c_bytes(s) }).value.to_bits()
}

/// The empty environment: every name is unset.
#[unsafe(no_mangle)]
pub extern "C" fn getenv(_name: *const c_char) -> *mut c_char {
    core::ptr::null_mut()
}

#[thread_local]
static RAND_STATE: Cell<u64> = Cell::new(1);

/// Seeds [`rand`] for the calling task.
#[unsafe(no_mangle)]
pub extern "C" fn srand(seed: u32) {
    RAND_STATE.set(u64::from(seed));
}

/// A pseudo-random number in `0..=RAND_MAX` (2^31 - 1), per task (not glibc's sequence).
#[unsafe(no_mangle)]
pub extern "C" fn rand() -> c_int {
    // Knuth's MMIX linear congruential generator; the high bits are the good ones.
    let next = RAND_STATE.get().wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    RAND_STATE.set(next);
    (next >> 33) as c_int
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strcasecmp(a: *const c_char, b: *const c_char) -> c_int {
    // SAFETY: forwarded.
    unsafe { strncasecmp(a, b, usize::MAX) }
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strncasecmp(a: *const c_char, b: *const c_char, n: usize) -> c_int {
    for i in 0..n {
        // SAFETY: both are C strings; we stop at the first NUL.
        let (x, y) = unsafe { ((*a.add(i) as u8).to_ascii_lowercase(), (*b.add(i) as u8).to_ascii_lowercase()) };
        if x != y || x == 0 {
            return c_int::from(x) - c_int::from(y);
        }
    }
    0
}

// --- assert, time, process ids -------------------------------------------------------------

/// What `assert` calls when its condition is false (glibc's name, so objects built against
/// either header link): prints where, and ends the program as `abort` does.
///
/// # Safety
/// The strings are C strings (the macro passes literals).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __assert_fail(expr: *const c_char, file: *const c_char, line: u32, func: *const c_char) -> ! {
    let s = |p: *const c_char| {
        // SAFETY: C strings from the assert macro.
        if p.is_null() { "?" } else { core::str::from_utf8(unsafe { c_bytes(p) }).unwrap_or("?") }
    };
    nano_core::println!("{}:{line}: {}: Assertion `{}' failed.", s(file), s(func), s(expr));
    abort()
}

/// Seconds since boot (Delos has no wall clock); also stored at `t` if it is not null.
///
/// # Safety
/// `t` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn time(t: *mut i64) -> i64 {
    let now = (nano_core::time::micros_since_entry() / 1_000_000) as i64;
    if !t.is_null() {
        // SAFETY: the caller's contract.
        unsafe { t.write(now) };
    }
    now
}

/// Microseconds since boot (`CLOCKS_PER_SEC` is 1,000,000): differences time a computation.
#[unsafe(no_mangle)]
pub extern "C" fn clock() -> c_long {
    nano_core::time::micros_since_entry() as c_long
}

/// C's `struct timespec`.
#[repr(C)]
pub struct Timespec {
    tv_sec: i64,
    tv_nsec: c_long,
}

/// Every clock is the time since boot.
///
/// # Safety
/// `ts` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clock_gettime(_clock: c_int, ts: *mut Timespec) -> c_int {
    let us = nano_core::time::micros_since_entry();
    if ts.is_null() {
        set_errno(conv::EINVAL);
        return -1;
    }
    // SAFETY: the caller's contract.
    unsafe { ts.write(Timespec { tv_sec: (us / 1_000_000) as i64, tv_nsec: ((us % 1_000_000) * 1000) as c_long }) };
    0
}

/// Sleeps the calling task.
#[unsafe(no_mangle)]
pub extern "C" fn sleep(seconds: u32) -> u32 {
    task::sleep_ms(u64::from(seconds) * 1000);
    0
}

/// Sleeps the calling task (to the scheduler's millisecond resolution, at least 1 ms).
#[unsafe(no_mangle)]
pub extern "C" fn usleep(us: u32) -> c_int {
    task::sleep_ms(u64::from(us).div_ceil(1000));
    0
}

/// The calling task's id.
#[unsafe(no_mangle)]
pub extern "C" fn getpid() -> c_int {
    task::current() as c_int
}

type CCompare = unsafe extern "C" fn(*const c_void, *const c_void) -> c_int;

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qsort(base: *mut c_void, n: usize, size: usize, cmp: CCompare) {
    // SAFETY: C semantics: the comparator accepts any two elements of the array.
    unsafe { sort::qsort(base as *mut u8, n, size, &mut |a, b| cmp(a as *const c_void, b as *const c_void)) }
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bsearch(key: *const c_void, base: *const c_void, n: usize, size: usize, cmp: CCompare) -> *mut c_void {
    // SAFETY: C semantics.
    unsafe {
        sort::bsearch(key as *const u8, base as *const u8, n, size, &mut |a, b| cmp(a as *const c_void, b as *const c_void)) as *mut c_void
    }
}

// --- ctype ---------------------------------------------------------------------------------

macro_rules! ctype {
    ($name:ident, $test:expr) => {
        /// C's ctype classification.
        #[unsafe(no_mangle)]
        pub extern "C" fn $name(c: c_int) -> c_int {
            let f: fn(u8) -> bool = $test;
            c_int::from((0..=255).contains(&c) && f(c as u8))
        }
    };
}

ctype!(isdigit, |c| c.is_ascii_digit());
ctype!(isxdigit, |c| c.is_ascii_hexdigit());
ctype!(isalpha, |c| c.is_ascii_alphabetic());
ctype!(isalnum, |c| c.is_ascii_alphanumeric());
ctype!(isupper, |c| c.is_ascii_uppercase());
ctype!(islower, |c| c.is_ascii_lowercase());
ctype!(isspace, conv::is_space);
ctype!(isprint, |c| (0x20..0x7f).contains(&c));
ctype!(ispunct, |c| c.is_ascii_punctuation());

/// `toupper`.
#[unsafe(no_mangle)]
pub extern "C" fn toupper(c: c_int) -> c_int {
    if (b'a' as c_int..=b'z' as c_int).contains(&c) { c - 32 } else { c }
}

/// `tolower`.
#[unsafe(no_mangle)]
pub extern "C" fn tolower(c: c_int) -> c_int {
    if (b'A' as c_int..=b'Z' as c_int).contains(&c) { c + 32 } else { c }
}

// --- mman ----------------------------------------------------------------------------------

const PROT_READ: c_int = 1;
const PROT_WRITE: c_int = 2;
const PROT_EXEC: c_int = 4;
const MAP_PRIVATE: c_int = 0x02;
const MAP_ANONYMOUS: c_int = 0x20;
const MAP_FAILED: *mut c_void = usize::MAX as *mut c_void;

/// Mappings made by mmap, by start address (owned: removing one unmaps it and frees its frames).
static MAPPINGS: Mutex<BTreeMap<u64, Mapping>> = Mutex::new(BTreeMap::new());

fn perms(prot: c_int) -> Result<Perms, c_int> {
    if prot & !(PROT_READ | PROT_WRITE | PROT_EXEC) != 0 {
        return Err(conv::EINVAL);
    }
    match (prot & PROT_WRITE != 0, prot & PROT_EXEC != 0) {
        (true, true) => Err(conv::EINVAL), // W^X
        (true, false) => Ok(Perms::ReadWrite),
        (false, true) => Ok(Perms::ReadExec),
        (false, false) => Ok(Perms::Read), // PROT_NONE is mapped read-only (no no-access pages)
    }
}

/// Anonymous private mappings only (`fd` -1); writable+executable is refused (W^X).
///
/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mmap(_addr: *mut c_void, len: usize, prot: c_int, flags: c_int, fd: c_int, _off: i64) -> *mut c_void {
    let fail = |e| {
        set_errno(e);
        MAP_FAILED
    };
    if len == 0 || flags & MAP_ANONYMOUS == 0 || flags & MAP_PRIVATE == 0 || fd != -1 {
        return fail(if fd != -1 { 19 } else { conv::EINVAL });
    }
    let p = match perms(prot) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let Ok(m) = Mapping::new((len as u64).div_ceil(PAGE), p) else { return fail(conv::ENOMEM) };
    let start = m.start();
    x86_64::instructions::interrupts::without_interrupts(|| MAPPINGS.lock().insert(start, m));
    start as *mut c_void
}

/// Unmaps a whole mapping made by `mmap`.
///
/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: usize) -> c_int {
    let start = addr as u64;
    let removed = x86_64::instructions::interrupts::without_interrupts(|| {
        let mut m = MAPPINGS.lock();
        match m.get(&start) {
            Some(mapping) if (len as u64).div_ceil(PAGE) == mapping.pages() => m.remove(&start),
            _ => None,
        }
    });
    match removed {
        Some(mapping) => {
            drop(mapping); // unmaps, frees the frames
            0
        }
        None => {
            set_errno(conv::EINVAL);
            -1
        }
    }
}

/// Changes the permissions of pages of a mapping made by `mmap`.
///
/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mprotect(addr: *mut c_void, len: usize, prot: c_int) -> c_int {
    let start = addr as u64;
    let p = match perms(prot) {
        Ok(p) => p,
        Err(e) => {
            set_errno(e);
            return -1;
        }
    };
    let pages = (len as u64).div_ceil(PAGE);
    let done = x86_64::instructions::interrupts::without_interrupts(|| {
        let maps = MAPPINGS.lock();
        let (_, m) = maps.range(..=start).next_back().filter(|_| start.is_multiple_of(PAGE))?;
        let first = (start - m.start()) / PAGE;
        Some(m.protect(first, pages, p).is_ok())
    });
    if done != Some(true) {
        set_errno(conv::EINVAL);
        return -1;
    }
    0
}

// --- setjmp --------------------------------------------------------------------------------

core::arch::global_asm!(
    ".global setjmp",
    "setjmp:",
    "mov [rdi], rbx",
    "mov [rdi + 8], rbp",
    "mov [rdi + 16], r12",
    "mov [rdi + 24], r13",
    "mov [rdi + 32], r14",
    "mov [rdi + 40], r15",
    "lea rdx, [rsp + 8]",
    "mov [rdi + 48], rdx",
    "mov rdx, [rsp]",
    "mov [rdi + 56], rdx",
    "xor eax, eax",
    "ret",
    ".global longjmp",
    "longjmp:",
    "mov eax, esi",
    "test eax, eax",
    "jnz 2f",
    "inc eax",
    "2:",
    "mov rbx, [rdi]",
    "mov rbp, [rdi + 8]",
    "mov r12, [rdi + 16]",
    "mov r13, [rdi + 24]",
    "mov r14, [rdi + 32]",
    "mov r15, [rdi + 40]",
    "mov rsp, [rdi + 48]",
    "jmp qword ptr [rdi + 56]",
);
