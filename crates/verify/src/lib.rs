//! `verify [--repair]`: checks every loaded crate's code and read-only data against the hash
//! the loader took when it linked them (and after every relink), and with `--repair` repairs a
//! corrupted crate (in place from its sealed copy, else reloaded from its object). Also prints
//! what the recovery policy has done so far.
#![no_std]
#![forbid(unsafe_code)]

/// One line for `help`.
pub static DESCRIPTION: &str = "check loaded code against its link-time hash: verify [--repair]";

/// Entry point.
pub fn main(args: &[&str]) -> isize {
    let repair = match args.get(1).copied() {
        None => false,
        Some("--repair") => true,
        Some(other) => {
            nano_core::println!("verify: unknown option {other}; usage: verify [--repair]");
            return 2;
        }
    };
    let v = recovery::verify_all(repair);
    for name in &v.corrupted {
        let fate = match v.repaired.iter().find(|r| r.name == *name) {
            Some(r) => r.how.as_str(),
            None if repair => "NOT repaired",
            None => "not repaired (verify --repair repairs it)",
        };
        nano_core::println!("verify: crate {name}: code differs from what was linked; {fate}");
    }
    for f in &v.failed {
        nano_core::println!("verify: repair failed: {f}");
    }
    nano_core::println!(
        "verify: {} crates, {} KiB of code and read-only data hashed in {} us; {} corrupted, {} repaired",
        v.crates,
        v.bytes / 1024,
        v.us,
        v.corrupted.len(),
        v.repaired.len()
    );
    let s = recovery::stats();
    nano_core::println!(
        "recovery: {} scrub passes ({} us hashing), {} crates repaired, {} tasks restarted, {} faulting instructions repaired and run again; sealed copies {} KiB",
        s.scrub_passes,
        s.scrub_us,
        s.repairs,
        s.restarts,
        exceptions::repairs_in_place(),
        nano_core::kernel::with_loader_ref(|l| l.sealed_bytes()) / 1024
    );
    if v.corrupted.len() == v.repaired.len() { 0 } else { 1 }
}
