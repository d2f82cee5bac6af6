//! `ns [-v] [-n]`: namespaces, their crates with memory sizes and symbol counts, and the
//! retired versions a swap left (what still holds each); `-v` adds sections, `-n` prints only
//! the live crate names (one line per namespace, for scripts).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// One line for `help`.
pub static DESCRIPTION: &str = "namespaces, crates and retired versions (-v: sections, -n: names only)";

/// Entry point.
pub fn main(args: &[&str]) -> isize {
    let verbose = args.iter().any(|a| *a == "-v");
    let names_only = args.iter().any(|a| *a == "-n");
    // Collected under the loader, printed after it is released.
    let lines: Vec<String> = nano_core::kernel::with_loader(|l| {
        let mut out = Vec::new();
        for n in l.namespaces() {
            if names_only {
                let names: Vec<&str> = n.crates.keys().map(String::as_str).collect();
                out.push(format!("crates of {}: {}", n.name, names.join(" ")));
                continue;
            }
            let parent = n.parent.and_then(|p| l.namespace(p)).map(|p| p.name.as_str()).unwrap_or("-");
            out.push(format!(
                "namespace {} (parent {parent}): {} crates, {} symbols, {} object files",
                n.name,
                n.crates.len(),
                n.symbols.len(),
                n.files().count()
            ));
            for id in n.crates.values() {
                let Some(k) = l.krate(*id) else { continue };
                out.push(format!(
                    "  {:<20} {:>8} bytes {:>5} sections {:>5} exported {:>6} relocations{}",
                    k.name,
                    k.memory_size(),
                    k.sections.len(),
                    k.exported.len(),
                    k.relocations,
                    if k.prelinked { "  (prelinked)" } else { "" }
                ));
                if verbose {
                    for (addr, size, perms) in k.regions() {
                        out.push(format!("      region {addr:#x} +{size:#x} {perms}"));
                    }
                    for s in &k.sections {
                        if let Some(sec) = l.section(*s) {
                            out.push(format!("      {:#018x} {:>8} {:?} {}", sec.addr, sec.size, sec.kind, sec.name));
                        }
                    }
                }
            }
        }
        out
    });
    for line in &lines {
        nano_core::println!("{line}");
    }
    if names_only {
        return 0;
    }
    let held = crate_swap::holders();
    if held.kept.is_empty() && held.freed.is_empty() {
        nano_core::println!("retired versions: none");
    } else {
        nano_core::println!("retired versions (replaced by a swap, kept while anything refers to them):");
        for h in &held.kept {
            nano_core::println!("  {:<20} {:>8} bytes  crate#{}, held by {}", h.name, h.bytes, h.id, h.holder);
        }
        for (name, bytes) in &held.freed {
            nano_core::println!("  {name:<20} {bytes:>8} bytes  unreferenced: the reaper frees it");
        }
    }
    0
}
