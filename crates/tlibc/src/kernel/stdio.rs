//! stdio: `printf` and friends, the three standard streams, and `write` to them.
//!
//! **Variadic entries are assembly.** gcc passes `double` arguments of a variadic call in SSE
//! registers (and says how many in `al`), but this crate is compiled soft-float: a Rust
//! `...` function would never save those registers. So `printf`, `fprintf`, `sprintf` and
//! `snprintf` are small assembly entries that build the System V register save area (six
//! integer registers, and the eight SSE registers when `al` says any were used) and a
//! `va_list` over it, then call the `v` variant — which C code may also call directly with its
//! own `va_list`. [`CArgs`] reads a `va_list` as the ABI lays it out.
//!
//! **Streams.** `stdout` and `stderr` write to the console; each call is collected first and
//! written at once, so lines of concurrent programs do not interleave mid-line. `stdin` has
//! nothing to read (end of file). There are no files: `fopen` fails with `ENOENT`.

use crate::format::{Args, Length};
use crate::string;
use core::ffi::{c_char, c_int, c_void};

/// A `va_list` as the x86_64 System V ABI lays it out (C's `va_list` is a pointer to this).
#[repr(C)]
pub struct RawVaList {
    /// Offset into `reg_save` of the next integer register argument (48: none left).
    gp_offset: u32,
    /// Offset into `reg_save` of the next SSE register argument (176: none left).
    fp_offset: u32,
    /// The next stack-passed argument.
    overflow: *mut u64,
    /// The saved argument registers: 6 integer, then 8 SSE (16 bytes each).
    reg_save: *mut u8,
}

/// Arguments read from a C `va_list`.
struct CArgs(*mut RawVaList);

impl CArgs {
    /// The next 8-byte argument of one class: from the register save area while that class's
    /// registers last (`offset` below `end`, `step` bytes each), then from the stack.
    fn next(&mut self, class: fn(&mut RawVaList) -> &mut u32, end: u32, step: u32) -> u64 {
        // SAFETY: the `va_list` was built by a variadic entry (ours or gcc's) for a call whose
        // arguments match the format (printf's contract): the offsets and pointers are valid.
        unsafe {
            let ap = &mut *self.0;
            let reg_save = ap.reg_save;
            let offset = class(ap);
            if *offset < end {
                let v = (reg_save.add(*offset as usize) as *const u64).read();
                *offset += step;
                v
            } else {
                let v = ap.overflow.read();
                ap.overflow = ap.overflow.add(1);
                v
            }
        }
    }

    /// The next 8-byte integer-class argument (six registers of 8 bytes).
    fn gp(&mut self) -> u64 {
        self.next(|ap| &mut ap.gp_offset, 48, 8)
    }

    /// The next `double` argument's bits (eight SSE registers of 16 bytes, after the six).
    fn fp(&mut self) -> u64 {
        self.next(|ap| &mut ap.fp_offset, 176, 16)
    }
}

impl Args for CArgs {
    fn int(&mut self, len: Length) -> i64 {
        let v = self.gp();
        match len {
            Length::Long => v as i64,
            Length::Int => i64::from(v as i32),
            Length::Short => i64::from(v as i16),
            Length::Char => i64::from(v as i8),
        }
    }
    fn uint(&mut self, len: Length) -> u64 {
        let v = self.gp();
        match len {
            Length::Long => v,
            Length::Int => u64::from(v as u32),
            Length::Short => u64::from(v as u16),
            Length::Char => u64::from(v as u8),
        }
    }
    fn ptr(&mut self) -> usize {
        self.gp() as usize
    }
    fn float(&mut self) -> f64 {
        f64::from_bits(self.fp())
    }
}

/// The variadic entries: `name` builds a `va_list` whose first integer argument is at
/// `gp_offset` (8 per fixed argument) and calls `target` with it in register `ap`, the one
/// after the fixed arguments.
macro_rules! variadic_entry {
    ($name:literal, $gp_offset:literal, $ap:literal, $target:path) => {
        super::sse_entry!(
            $name,
            $target,
            [
                // [rsp, rsp+24): the va_list; [rsp+32, rsp+208): the register save area.
                "sub rsp, 208",
                "mov [rsp + 32], rdi",
                "mov [rsp + 40], rsi",
                "mov [rsp + 48], rdx",
                "mov [rsp + 56], rcx",
                "mov [rsp + 64], r8",
                "mov [rsp + 72], r9",
                "test al, al",
                "je 2f",
                "movups [rsp + 80], xmm0",
                "movups [rsp + 96], xmm1",
                "movups [rsp + 112], xmm2",
                "movups [rsp + 128], xmm3",
                "movups [rsp + 144], xmm4",
                "movups [rsp + 160], xmm5",
                "movups [rsp + 176], xmm6",
                "movups [rsp + 192], xmm7",
                "2:",
                concat!("mov dword ptr [rsp], ", $gp_offset),
                "mov dword ptr [rsp + 4], 48",
                "lea rax, [rbp + 16]",
                "mov [rsp + 8], rax",
                "lea rax, [rsp + 32]",
                "mov [rsp + 16], rax",
                concat!("mov ", $ap, ", rsp"),
                "movabs rax, offset {target}",
                "call rax",
            ]
        );
    };
}

variadic_entry!("printf", 8, "rsi", vprintf);
variadic_entry!("fprintf", 16, "rdx", vfprintf);
variadic_entry!("sprintf", 16, "rdx", vsprintf);
variadic_entry!("snprintf", 24, "rcx", vsnprintf);

/// Writes bytes to the console as one piece.
fn console(b: &[u8]) {
    match core::str::from_utf8(b) {
        Ok(s) => nano_core::print!("{s}"),
        Err(_) => {
            for &c in b {
                nano_core::print!("{}", c as char);
            }
        }
    }
}

/// The bytes of C string `s`, without its NUL.
///
/// # Safety
/// `s` is a valid C string that outlives `'a`.
pub(crate) unsafe fn fmt_bytes<'a>(s: *const c_char) -> &'a [u8] {
    // SAFETY: the caller's contract.
    unsafe { core::slice::from_raw_parts(s as *const u8, string::strlen(s)) }
}

/// Formats into a vector (then written in one piece).
///
/// # Safety
/// printf's contract: `fmt` a C string, `ap` a `va_list` whose arguments match it.
unsafe fn format_to_vec(fmt: *const c_char, ap: *mut RawVaList) -> (alloc::vec::Vec<u8>, usize) {
    let mut out = alloc::vec::Vec::new();
    // SAFETY: the caller's contract.
    let n = unsafe { crate::format::format(fmt_bytes(fmt), &mut CArgs(ap), &mut |b| out.extend_from_slice(b)) };
    (out, n)
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vprintf(fmt: *const c_char, ap: *mut RawVaList) -> c_int {
    // SAFETY: printf's contract.
    let (out, n) = unsafe { format_to_vec(fmt, ap) };
    console(&out);
    n as c_int
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vfprintf(f: *mut File, fmt: *const c_char, ap: *mut RawVaList) -> c_int {
    // SAFETY: printf's contract.
    let (out, n) = unsafe { format_to_vec(fmt, ap) };
    // SAFETY: `f` is a stream (C contract).
    if unsafe { write_stream(f, &out) } { n as c_int } else { -1 }
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsnprintf(buf: *mut c_char, size: usize, fmt: *const c_char, ap: *mut RawVaList) -> c_int {
    let mut written = 0usize;
    let mut sink = |b: &[u8]| {
        for &c in b {
            if written + 1 < size {
                // SAFETY: written < size - 1: inside the caller's buffer.
                unsafe { *buf.add(written) = c as c_char };
                written += 1;
            }
        }
    };
    // SAFETY: printf's contract.
    let n = unsafe { crate::format::format(fmt_bytes(fmt), &mut CArgs(ap), &mut sink) };
    if size > 0 {
        // SAFETY: written < size.
        unsafe { *buf.add(written) = 0 };
    }
    n as c_int
}

/// # Safety
/// C semantics (the buffer must be big enough; prefer snprintf).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsprintf(buf: *mut c_char, fmt: *const c_char, ap: *mut RawVaList) -> c_int {
    // SAFETY: forwarded.
    unsafe { vsnprintf(buf, usize::MAX, fmt, ap) }
}

// --- streams -------------------------------------------------------------------------------

/// A C `FILE`: one of the three standard streams.
#[repr(C)]
pub struct File {
    /// 0, 1 or 2.
    fd: c_int,
    /// Sticky error indicator (`ferror`).
    error: c_int,
    /// Sticky end-of-file indicator (`feof`).
    eof: c_int,
}

static mut STDIN: File = File { fd: 0, error: 0, eof: 0 };
static mut STDOUT: File = File { fd: 1, error: 0, eof: 0 };
static mut STDERR: File = File { fd: 2, error: 0, eof: 0 };

/// C's `stdin` (nothing to read: end of file).
#[allow(non_upper_case_globals)]
#[unsafe(no_mangle)]
pub static mut stdin: *mut File = &raw mut STDIN;
/// C's `stdout` (the console).
#[allow(non_upper_case_globals)]
#[unsafe(no_mangle)]
pub static mut stdout: *mut File = &raw mut STDOUT;
/// C's `stderr` (the console).
#[allow(non_upper_case_globals)]
#[unsafe(no_mangle)]
pub static mut stderr: *mut File = &raw mut STDERR;

/// Writes to stream `f`; false (and the error indicator set, `errno` EBADF) if it cannot.
///
/// # Safety
/// `f` is null or one of the streams this module gave out.
unsafe fn write_stream(f: *mut File, b: &[u8]) -> bool {
    // SAFETY: the caller's contract: null or a live `File`.
    let Some(file) = (unsafe { f.as_mut() }) else {
        super::set_errno(EBADF);
        return false;
    };
    if file.fd == 1 || file.fd == 2 {
        console(b);
        true
    } else {
        file.error = 1;
        super::set_errno(EBADF);
        false
    }
}

const EOF: c_int = -1;
const EBADF: c_int = 9;
const ENOENT: c_int = 2;

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fwrite(p: *const c_void, size: usize, n: usize, f: *mut File) -> usize {
    let Some(len) = size.checked_mul(n) else { return 0 };
    if len == 0 {
        return 0;
    }
    // SAFETY: C contract: `p` has `size * n` readable bytes.
    let b = unsafe { core::slice::from_raw_parts(p as *const u8, len) };
    // SAFETY: `f` is a stream.
    if unsafe { write_stream(f, b) } { n } else { 0 }
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fputs(s: *const c_char, f: *mut File) -> c_int {
    // SAFETY: `s` is a C string; `f` a stream.
    if unsafe { write_stream(f, fmt_bytes(s)) } { 0 } else { EOF }
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fputc(c: c_int, f: *mut File) -> c_int {
    // SAFETY: `f` is a stream.
    if unsafe { write_stream(f, &[c as u8]) } { c & 0xff } else { EOF }
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn putc(c: c_int, f: *mut File) -> c_int {
    // SAFETY: forwarded.
    unsafe { fputc(c, f) }
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn puts(s: *const c_char) -> c_int {
    // SAFETY: `s` is a C string.
    let mut line = alloc::vec::Vec::from(unsafe { fmt_bytes(s) });
    line.push(b'\n');
    console(&line);
    0
}

/// Writes one character.
#[unsafe(no_mangle)]
pub extern "C" fn putchar(c: c_int) -> c_int {
    console(&[c as u8]);
    c & 0xff
}

/// Nothing is buffered across calls: a no-op that succeeds.
#[unsafe(no_mangle)]
pub extern "C" fn fflush(_f: *mut File) -> c_int {
    0
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn perror(s: *const c_char) {
    let e = super::__errno_location();
    // SAFETY: the calling task's errno.
    let msg = super::strerror(unsafe { *e });
    let mut line = alloc::vec::Vec::new();
    if !s.is_null() {
        // SAFETY: `s` is a C string.
        let prefix = unsafe { fmt_bytes(s) };
        if !prefix.is_empty() {
            line.extend_from_slice(prefix);
            line.extend_from_slice(b": ");
        }
    }
    // SAFETY: strerror returns a static C string.
    line.extend_from_slice(unsafe { fmt_bytes(msg) });
    line.push(b'\n');
    console(&line);
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferror(f: *mut File) -> c_int {
    // SAFETY: `f` is a stream.
    unsafe { f.as_ref() }.map_or(1, |f| f.error)
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn feof(f: *mut File) -> c_int {
    // SAFETY: `f` is a stream.
    unsafe { f.as_ref() }.map_or(0, |f| f.eof)
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clearerr(f: *mut File) {
    // SAFETY: `f` is a stream.
    if let Some(f) = unsafe { f.as_mut() } {
        f.error = 0;
        f.eof = 0;
    }
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fgetc(f: *mut File) -> c_int {
    // SAFETY: `f` is a stream.
    if let Some(f) = unsafe { f.as_mut() } {
        f.eof = 1;
    }
    EOF
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getc(f: *mut File) -> c_int {
    // SAFETY: forwarded.
    unsafe { fgetc(f) }
}

/// End of file: a loaded program has no input stream.
#[unsafe(no_mangle)]
pub extern "C" fn getchar() -> c_int {
    // SAFETY: STDIN is a stream.
    unsafe { fgetc(&raw mut STDIN) }
}

/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fgets(_s: *mut c_char, _n: c_int, f: *mut File) -> *mut c_char {
    // SAFETY: forwarded.
    unsafe { fgetc(f) };
    core::ptr::null_mut()
}

/// There are no files: always fails with `ENOENT`.
#[unsafe(no_mangle)]
pub extern "C" fn fopen(_path: *const c_char, _mode: *const c_char) -> *mut File {
    super::set_errno(ENOENT);
    core::ptr::null_mut()
}

/// Closing a standard stream succeeds and does nothing.
#[unsafe(no_mangle)]
pub extern "C" fn fclose(_f: *mut File) -> c_int {
    0
}

/// `write(2)` to descriptor 1 or 2 (the console); anything else is `EBADF`.
///
/// # Safety
/// C semantics.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn write(fd: c_int, p: *const c_void, n: usize) -> isize {
    if fd != 1 && fd != 2 {
        super::set_errno(EBADF);
        return -1;
    }
    if n > 0 {
        // SAFETY: C contract: `p` has `n` readable bytes.
        console(unsafe { core::slice::from_raw_parts(p as *const u8, n) });
    }
    n as isize
}
