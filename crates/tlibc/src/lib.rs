//! tlibc: the C face of the kernel — a libc subset for C objects that `loadc` links.
//!
//! Provided (C ABI, exported when built for the kernel): `memchr`, `strlen`, `strnlen`,
//! `strcmp`, `strncmp`, `strcpy`, `strncpy`, `strcat`, `strncat`, `strchr`, `strrchr`,
//! `strstr`, `strspn`, `strcspn`, `strpbrk`, `strdup`, `strndup`, `strerror`; `malloc`,
//! `calloc`, `realloc`, `free`, `posix_memalign`, `aligned_alloc`; `printf`, `vprintf`,
//! `snprintf`, `vsnprintf`, `sprintf`, `puts`, `putchar`; `errno` (`__errno_location`, per
//! task); `abort`, `exit`; `mmap`, `munmap`, `mprotect` over the kernel's page API (W^X: a
//! writable and executable mapping is refused with `EINVAL`); `qsort`, `bsearch`; `strtol`,
//! `strtoul`, `strtoll`, `strtoull`, `atoi`, `atol`, `atoll`, `abs`, `labs`; `setjmp`,
//! `longjmp`; `isdigit` and friends, `toupper`, `tolower`. `memcpy`, `memmove`, `memset`,
//! `memcmp` come from nano_core (compiler_builtins). `include/tlibc.h` declares them all.
//!
//! Not provided: floating point in `printf` (the kernel is soft-float, while gcc passes
//! doubles in SSE registers), files and `FILE *`, locales, signals, `atexit`.
//!
//! The pure functions (strings, conversions, formatting) are plain Rust underneath and are
//! tested on the host against the host's libc; the `kernel` feature adds the C ABI exports.
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
