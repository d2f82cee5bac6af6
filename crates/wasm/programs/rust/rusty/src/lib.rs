//! A WASI program in Rust (`no_std`: this machine has no wasm32-wasip1 standard library): its
//! `_start` prints its arguments, the clock, a random word and a SHA-256 over the arguments,
//! then exits with status 7 through `proc_exit`.
#![no_std]

#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    fn fd_write(fd: i32, iovs: *const [u32; 2], n: i32, written: *mut u32) -> i32;
    fn args_sizes_get(argc: *mut u32, size: *mut u32) -> i32;
    fn args_get(argv: *mut *mut u8, buf: *mut u8) -> i32;
    fn clock_time_get(id: i32, precision: i64, out: *mut u64) -> i32;
    fn random_get(buf: *mut u8, len: u32) -> i32;
    fn proc_exit(code: i32) -> !;
}

// The panic handler comes with `kernels` (it traps with `unreachable`).

struct Out {
    buf: [u8; 512],
    len: usize,
}

impl core::fmt::Write for Out {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

impl Out {
    fn flush(&mut self) {
        let iov = [self.buf.as_ptr() as u32, self.len as u32];
        let mut n = 0;
        // SAFETY: the iovec points into our own buffer.
        unsafe { fd_write(1, &iov, 1, &mut n) };
        self.len = 0;
    }
}

static mut ARGV: [*mut u8; 32] = [core::ptr::null_mut(); 32];
static mut ARGBUF: [u8; 4096] = [0; 4096];

#[unsafe(no_mangle)]
pub extern "C" fn _start() {
    use core::fmt::Write;
    let mut out = Out { buf: [0; 512], len: 0 };
    let (mut argc, mut size) = (0u32, 0u32);
    // SAFETY: WASI fills the buffers we pass; sizes are checked before args_get.
    unsafe {
        args_sizes_get(&mut argc, &mut size);
        if argc as usize > 32 || size as usize > 4096 {
            proc_exit(2);
        }
        args_get(core::ptr::addr_of_mut!(ARGV) as *mut *mut u8, core::ptr::addr_of_mut!(ARGBUF) as *mut u8);
    }
    let _ = writeln!(out, "hello from Rust compiled to WebAssembly: {argc} arguments");
    let mut digest_input = [0u8; 64 * 4];
    let mut at = 0;
    for i in 0..argc as usize {
        // SAFETY: args_get wrote argc NUL-terminated strings into ARGBUF.
        let s = unsafe { core::ffi::CStr::from_ptr((*core::ptr::addr_of!(ARGV))[i] as *const core::ffi::c_char) };
        let s = s.to_str().unwrap_or("?");
        let _ = writeln!(out, "  argv[{i}] = {s}");
        for b in s.bytes() {
            if at < digest_input.len() {
                digest_input[at] = b;
                at += 1;
            }
        }
    }
    let (mut now, mut rnd) = (0u64, 0u32);
    // SAFETY: pointers to locals.
    unsafe {
        clock_time_get(1, 1, &mut now);
        random_get(&mut rnd as *mut u32 as *mut u8, 4);
    }
    let _ = writeln!(out, "  clock: {} ms since boot; sha256 word: {:08x}", now / 1_000_000, kernels::k::sha256_blocks(&digest_input));
    let _ = rnd;
    out.flush();
    // SAFETY: ends the program.
    unsafe { proc_exit(7) }
}
