//! `swap OLD NEW [OLD NEW ...] [--state HOOK] [--dry-run] [-v] [--cycles N]`, `swap --reclaim`
//!
//! Replaces each loaded crate OLD with NEW, an object among the namespace's updates (the image's
//! alternative builds, or files sent with `make push`) or in its directory. Prints the time of
//! each phase. The old version is retired and reclaimed by the reaper once nothing refers to
//! it; `--reclaim` runs that now and says what still holds each retired crate. `--cycles N`
//! swaps OLD→NEW→OLD N times, reclaims, and reports frames and heap in use after the first and
//! the last cycles (the leak check: `nano_core::leakcheck`). `--storm N [--seed S] [OLD=NEW ...]` makes N random swaps
//! among every live crate (each with itself) and the given alternatives, then reclaims.
//! `--ns NAME` swaps OLD in that namespace only (one made with `ns new`): its dependents
//! there are relinked, and other namespaces' versions keep running.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use crate_swap::{Options, Outcome};
use mod_mgmt::swap::SwapPair;
use nano_core::println;

/// One line for `help`.
pub static DESCRIPTION: &str =
    "replace running crates: swap OLD NEW [--ns NAME] [--state HOOK] [--dry-run] [-v] [--cycles N] | swap --reclaim";

fn print_outcome(o: &Outcome, verbose: bool) {
    if verbose || o.dry_run {
        for line in &o.report {
            println!("  {line}");
        }
    }
    let t = &o.times;
    if o.dry_run {
        println!(
            "swap: dry run ok: load {} us, verify {} us; {} relocations would be rewritten, {} bytes of state shared, {} bytes copied",
            t.load_us, t.verify_us, o.relinked, o.adopted_bytes, o.state_bytes
        );
        return;
    }
    if o.stack_words > 0 {
        println!("  {} pointers on task stacks now point into the new version", o.stack_words);
    }
    println!(
        "swap: done: load {} us, verify {} us, relink {} us, state {} us, cleanup {} us, total {} us ({} relocations, {} hooks, {} bytes of state shared, {} copied{})",
        t.load_us,
        t.verify_us,
        t.relink_us,
        t.state_us,
        t.cleanup_us,
        t.total_us(),
        o.relinked,
        o.hooks_moved,
        o.adopted_bytes,
        o.state_bytes,
        if o.waited > 0 { alloc::format!(", waited {} times for the old code to be idle", o.waited) } else { String::new() }
    );
}

/// A swap storm: `n` random swaps drawn from every live crate swapped with itself and the given
/// alternative pairs (each alternative swapped in and, later, back), then a reclaim. Returns
/// whether every swap committed.
fn storm(n: u64, seed: u64, alternatives: &[SwapPair]) -> bool {
    let mut rng = seed.max(1);
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut ok, mut failed, mut total_us, mut worst) = (0u64, 0u64, 0u64, (0u64, String::new()));
    let mut swapped_in: Vec<&SwapPair> = Vec::new();
    let opts = Options { attempts: 250, no_reaper: true, ..Default::default() };
    for i in 0..n {
        let crates: Vec<String> =
            nano_core::kernel::with_loader_ref(|l| l.crates().filter(|k| !k.prelinked).map(|k| k.name.clone()).collect());
        // One draw in four takes an alternative (or brings one back).
        let pair = if !alternatives.is_empty() && next() % 4 == 0 {
            let a = &alternatives[(next() % alternatives.len() as u64) as usize];
            match swapped_in.iter().position(|p| p.old == a.old) {
                Some(k) => {
                    swapped_in.remove(k);
                    SwapPair { old: a.old.clone(), new_file: a.old.clone() }
                }
                None => {
                    swapped_in.push(a);
                    a.clone()
                }
            }
        } else {
            let x = &crates[(next() % crates.len().max(1) as u64) as usize];
            SwapPair { old: x.clone(), new_file: x.clone() }
        };
        match crate_swap::swap(core::slice::from_ref(&pair), &opts) {
            Ok(o) => {
                ok += 1;
                let t = o.times.total_us();
                total_us += t;
                if t > worst.0 {
                    worst = (t, pair.old.clone());
                }
            }
            Err(e) => {
                failed += 1;
                println!("swap: storm: swap {} {} (#{}) FAILED: {e}", pair.old, pair.new_file, i + 1);
                if pair.old != pair.new_file {
                    swapped_in.retain(|p| p.old != pair.old);
                }
            }
        }
        if i % 8 == 7 {
            crate_swap::reclaim();
        }
    }
    // Bring the alternatives back.
    for a in swapped_in {
        if let Err(e) = crate_swap::swap(&[SwapPair { old: a.old.clone(), new_file: a.old.clone() }], &opts) {
            failed += 1;
            println!("swap: storm: swapping {} back FAILED: {e}", a.old);
        }
    }
    println!(
        "swap: storm: {ok} swaps committed, {failed} failed; {} us per swap on average, slowest {} us ({})",
        total_us / ok.max(1),
        worst.0,
        worst.1
    );
    failed == 0
}

/// Runs a reclaim pass and prints it.
fn reclaim_now() {
    crate_swap::settle_reaper();
    let r = crate_swap::reclaim_thorough();
    for (name, bytes) in &r.freed {
        println!("swap: reclaimed the retired {name} ({bytes} bytes)");
    }
    for h in &r.kept {
        println!("swap: retired {} (crate#{}, {} bytes) is still referenced: {}", h.name, h.id, h.bytes, h.holder);
    }
    println!(
        "swap: reclaim: {} freed, {} still referenced; scanned {} KiB in {} us",
        r.freed.len(),
        r.kept.len(),
        r.scanned / 1024,
        r.scan_us
    );
}

fn usage() -> isize {
    println!(
        "usage: swap OLD NEW [OLD NEW ...] [--ns NAME] [--state HOOK] [--dry-run] [-v] [--cycles N] | swap --reclaim | swap --storm N [--seed S] [OLD=NEW ...]"
    );
    2
}

/// Entry point.
pub fn main(args: &[&str]) -> isize {
    let mut opts = Options { attempts: 250, ..Default::default() };
    let (mut verbose, mut cycles) = (false, 0u64);
    let mut words = Vec::new();
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match *a {
            "--dry-run" => opts.dry_run = true,
            "--reclaim" => {
                reclaim_now();
                return 0;
            }
            "--storm" => {
                let Some(n) = it.next().and_then(|n| command::parse_u64(n)) else { return usage() };
                let mut seed = 1;
                let mut alts = Vec::new();
                while let Some(a) = it.next() {
                    match (*a, a.split_once('=')) {
                        ("--seed", _) => match it.next().and_then(|n| command::parse_u64(n)) {
                            Some(s) => seed = s,
                            None => return usage(),
                        },
                        (_, Some((old, new))) => alts.push(SwapPair { old: old.to_string(), new_file: new.to_string() }),
                        _ => return usage(),
                    }
                }
                let ok = storm(n, seed, &alts);
                reclaim_now();
                return if ok { 0 } else { 1 };
            }
            "-v" => verbose = true,
            "--state" => match it.next() {
                Some(h) => opts.state_hook = Some(h.to_string()),
                None => return usage(),
            },
            "--ns" => match it.next() {
                Some(n) => opts.namespace = Some(n.to_string()),
                None => return usage(),
            },
            "--cycles" => match it.next().and_then(|n| command::parse_u64(n)) {
                Some(n) => cycles = n,
                None => return usage(),
            },
            w if w.starts_with('-') => {
                println!("swap: unknown option {w}");
                return usage();
            }
            w => words.push(w),
        }
    }
    if words.is_empty() || words.len() % 2 != 0 {
        return usage();
    }
    let pairs: Vec<SwapPair> = words.chunks(2).map(|c| SwapPair { old: c[0].to_string(), new_file: c[1].to_string() }).collect();
    if cycles == 0 {
        return match crate_swap::swap(&pairs, &opts) {
            Ok(o) => {
                print_outcome(&o, verbose);
                0
            }
            Err(e) => {
                println!("swap: {e}");
                1
            }
        };
    }
    // Leak check: OLD -> NEW -> OLD, `cycles` times; the way back uses OLD's original file.
    let originals: Vec<String> = nano_core::kernel::with_loader_ref(|l| {
        let apps = l.namespace_by_name("applications").ok();
        pairs
            .iter()
            .map(|p| apps.and_then(|a| l.crate_by_name(a, &p.old)).and_then(|id| l.krate(id)).map(|k| k.file.clone()).unwrap_or_default())
            .collect()
    });
    let back: Vec<SwapPair> = pairs.iter().zip(&originals).map(|(p, f)| SwapPair { old: p.old.clone(), new_file: f.clone() }).collect();
    let mut check = nano_core::leakcheck::LeakCheck::new(cycles);
    let mut total_us = 0;
    let opts = Options { no_reaper: true, ..opts };
    for i in 0..cycles {
        for ps in [&pairs, &back] {
            match crate_swap::swap(ps, &opts) {
                Ok(o) => total_us += o.times.total_us(),
                Err(e) => {
                    println!("swap: cycle {}: {e}", i + 1);
                    return 1;
                }
            }
        }
        let r = crate_swap::reclaim(); // what a reaper would do after each swap
        if (i == 0 || i + 1 == cycles) && !r.kept.is_empty() {
            println!("swap: after cycle {}, {} retired versions are still referenced ({})", i + 1, r.kept.len(), r.kept[0].holder);
        }
        check.record(i, nano_core::leakcheck::usage());
    }
    println!("swap: {cycles} cycles ({} swaps), {} us per swap on average", cycles * 2, total_us / (cycles * 2));
    println!("{}", check.report("swap:"));
    0
}
