//! Boot timestamps: the TSC, calibrated against the PIT once at boot.

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::instructions::port::Port;

static TSC_AT_ENTRY: AtomicU64 = AtomicU64::new(0);
static TSC_PER_MS: AtomicU64 = AtomicU64::new(0);

/// PIT input clock in Hz.
const PIT_HZ: u64 = 1_193_182;
/// Calibration window.
/// Two milliseconds: polling the PIT costs a few microseconds per read under TCG, so the TSC
/// rate is within about 0.2% (a 10 ms window took 8 ms more of every boot for 0.05%).
const CALIBRATION_MS: u64 = 2;

/// The raw time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc only reads a counter; CR4.TSD is clear so it is allowed at any privilege.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Records the TSC at kernel entry; all timestamps count from here.
pub fn mark_entry() {
    TSC_AT_ENTRY.store(rdtsc(), Ordering::Relaxed);
}

/// Measures the TSC frequency with PIT channel 2 (one-shot, gate through port 0x61).
pub fn calibrate() {
    let count = PIT_HZ * CALIBRATION_MS / 1000;
    // SAFETY: PIT channel 2 and port 0x61 are legacy timer/speaker ports with no memory effects;
    // nothing else uses channel 2, and the speaker output bit stays off.
    let ticks = unsafe {
        let mut p61: Port<u8> = Port::new(0x61);
        let mut cmd: Port<u8> = Port::new(0x43);
        let mut ch2: Port<u8> = Port::new(0x42);
        let v = p61.read();
        p61.write((v & !0x02) & !0x01); // gate low, speaker off
        cmd.write(0b1011_0000); // channel 2, lobyte/hibyte, mode 0
        ch2.write((count & 0xFF) as u8);
        ch2.write((count >> 8) as u8);
        let v = p61.read();
        p61.write(v | 0x01); // gate high: start counting
        let t0 = rdtsc();
        while p61.read() & 0x20 == 0 {
            core::hint::spin_loop();
        }
        rdtsc() - t0
    };
    TSC_PER_MS.store((ticks / CALIBRATION_MS).max(1), Ordering::Relaxed);
}

/// TSC ticks per millisecond (0 before calibration).
pub fn tsc_per_ms() -> u64 {
    TSC_PER_MS.load(Ordering::Relaxed)
}

/// Microseconds since kernel entry (0 before calibration).
pub fn micros_since_entry() -> u64 {
    let per_ms = TSC_PER_MS.load(Ordering::Relaxed);
    if per_ms == 0 {
        return 0;
    }
    let d = rdtsc().saturating_sub(TSC_AT_ENTRY.load(Ordering::Relaxed));
    (u128::from(d) * 1000 / u128::from(per_ms)) as u64
}
