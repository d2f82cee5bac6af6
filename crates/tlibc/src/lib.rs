//! tlibc: the C face of the kernel — a libc subset for C objects that `loadc` links.
//!
//! Provided (C ABI, exported when built for the kernel; declared by the standard headers in
//! `include/`, and all at once by `include/tlibc.h`): strings (`strlen` ... `strerror`,
//! `strcasecmp`); `malloc` and friends; `printf`, `fprintf`, `sprintf`, `snprintf` and their
//! `v` forms with `%f %e %g %a`; the streams `stdin`/`stdout`/`stderr` with `fputs`, `fputc`,
//! `putc`, `fwrite`, `fflush`, `perror`, `ferror`, `feof`, `fgetc`, `fgets`, `fopen` (always
//! `ENOENT`), `fclose`; `puts`, `putchar`, `write`; `errno` per task; `abort`, `exit`,
//! `__assert_fail`; `mmap`, `munmap`, `mprotect` (W^X: writable and executable is refused
//! with `EINVAL`); `qsort`, `bsearch`, `rand`, `srand`; `strtol` family, `strtod`, `strtof`,
//! `atof`, `atoi` family, `abs` family; `getenv` (empty environment); `time`, `clock`,
//! `clock_gettime` (from boot), `sleep`, `usleep`, `getpid`; `setjmp`, `longjmp`; ctype.
//! `memcpy`, `memmove`, `memset`, `memcmp` come from nano_core (compiler_builtins).
//!
//! The kernel is soft-float, while gcc passes and returns doubles in SSE registers: the
//! variadic printf entries and the float-returning functions are small assembly entries that
//! move them (see `kernel/stdio.rs`); the digits themselves are computed with integers.
//!
//! Not provided: files, reading stdin, scanf, libm, long double, locales, signals, `atexit`.
//!
//! The pure functions (strings, conversions, formatting, floats) are plain Rust underneath and
//! are tested on the host against the host's libc; the `kernel` feature adds the C ABI exports.
#![cfg_attr(not(test), no_std)]
#![cfg_attr(feature = "kernel", feature(thread_local))]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

pub mod conv;
pub mod float;
pub mod format;
pub mod sort;
pub mod string;

#[cfg(feature = "kernel")]
mod kernel;
