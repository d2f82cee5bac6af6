//! `ns [-v]`: namespaces, their crates with memory sizes and symbol counts; `-v` adds sections.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

/// One line for `help`.
pub static DESCRIPTION: &str = "namespaces and crates (-v: sections)";

/// Entry point.
pub fn main(args: &[&str]) -> isize {
    let verbose = args.iter().any(|a| *a == "-v");
    nano_core::kernel::with_loader(|l| {
        for n in l.namespaces() {
            let parent = n.parent.and_then(|p| l.namespace(p)).map(|p| p.name.as_str()).unwrap_or("-");
            nano_core::println!(
                "namespace {} (parent {parent}): {} crates, {} symbols, {} object files",
                n.name,
                n.crates.len(),
                n.symbols.len(),
                n.files().count()
            );
            for id in n.crates.values() {
                let Some(k) = l.krate(*id) else { continue };
                nano_core::println!(
                    "  {:<20} {:>8} bytes {:>5} sections {:>5} exported {:>6} relocations{}",
                    k.name,
                    k.memory_size(),
                    k.sections.len(),
                    k.exported.len(),
                    k.relocations,
                    if k.prelinked { "  (prelinked)" } else { "" }
                );
                if verbose {
                    for (addr, size, perms) in k.regions() {
                        nano_core::println!("      region {addr:#x} +{size:#x} {perms}");
                    }
                    for s in &k.sections {
                        if let Some(sec) = l.section(*s) {
                            nano_core::println!("      {:#018x} {:>8} {:?} {}", sec.addr, sec.size, sec.kind, sec.name);
                        }
                    }
                }
            }
        }
    });
    0
}
