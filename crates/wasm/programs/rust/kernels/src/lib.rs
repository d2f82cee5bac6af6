//! Compute kernels as WASM exports (`sha256(n)`, `sort(n, seed)`, `matmul(n)`), working on
//! buffers in linear memory. `wasmbench` runs the same `k` module natively as the baseline.
#![no_std]

pub mod k;

#[cfg(target_arch = "wasm32")]
mod exports {
    use super::k;

    const DATA: usize = 1 << 16;
    static mut BYTES: [u8; DATA] = [0; DATA];
    static mut WORDS: [u32; 1 << 18] = [0; 1 << 18];
    static mut MATS: [f64; 3 * 128 * 128] = [0.0; 3 * 128 * 128];

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo) -> ! {
        core::arch::wasm32::unreachable()
    }

    /// Hashes a 64 KiB buffer `n` times.
    #[unsafe(no_mangle)]
    pub extern "C" fn sha256(n: u32) -> u32 {
        // SAFETY: single-threaded WASM; nothing else touches the buffer during the call.
        let data = unsafe { &mut *core::ptr::addr_of_mut!(BYTES) };
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i * 31 % 251) as u8;
        }
        let mut acc = 0u32;
        for _ in 0..n {
            acc ^= k::sha256_blocks(data);
            data[0] = acc as u8;
        }
        acc
    }

    /// Sorts `n` (≤ 262,144) pseudo-random words.
    #[unsafe(no_mangle)]
    pub extern "C" fn sort(n: u32, seed: u32) -> u32 {
        // SAFETY: as above.
        let words = unsafe { &mut *core::ptr::addr_of_mut!(WORDS) };
        k::sort(&mut words[..(n as usize).min(1 << 18)], seed)
    }

    /// Multiplies two n×n (≤ 128) matrices.
    #[unsafe(no_mangle)]
    pub extern "C" fn matmul(n: u32) -> u32 {
        let n = (n as usize).min(128);
        // SAFETY: as above.
        let m = unsafe { &mut *core::ptr::addr_of_mut!(MATS) };
        let (a, rest) = m.split_at_mut(128 * 128);
        let (b, c) = rest.split_at_mut(128 * 128);
        k::matmul(a, b, c, n)
    }
}
