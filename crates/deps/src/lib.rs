//! `deps CRATE | ADDR`: what a crate (or the section containing ADDR) depends on, and what
//! depends on it, from the per-relocation dependency graph.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;

/// One line for `help`.
pub static DESCRIPTION: &str = "dependencies of a crate or of the section at an address";

fn section_label(l: &mod_mgmt::Loader, s: mod_mgmt::SectionId) -> String {
    match l.section(s) {
        Some(sec) => {
            let krate = l.krate(sec.krate).map(|k| k.name.as_str()).unwrap_or("?");
            let sym = sec.symbols.first().map(|y| mod_mgmt::agnostic_key(&y.raw)).unwrap_or_else(|| sec.name.clone());
            alloc::format!("{krate}: {sym}")
        }
        None => alloc::format!("{s}"),
    }
}

/// Entry point.
pub fn main(args: &[&str]) -> isize {
    let Some(what) = args.get(1) else {
        nano_core::println!("usage: deps CRATE | ADDR");
        return 2;
    };
    nano_core::kernel::with_loader(|l| {
        let apps = l.namespace_by_name("applications").ok();
        if let Some(addr) = nano_core::kernel::parse_u64(what).filter(|_| what.starts_with("0x")) {
            let Some((sid, _)) = l.locate(addr) else {
                nano_core::println!("deps: {addr:#x} is not in any loaded section");
                return 1;
            };
            nano_core::println!("section {}", section_label(l, sid));
            let uses: Vec<_> = l.section_dependencies(sid);
            let used_by: Vec<_> = l.section_dependents(sid);
            nano_core::println!("  uses ({}):", uses.len());
            for s in uses {
                nano_core::println!("    {}", section_label(l, s));
            }
            nano_core::println!("  used by ({}):", used_by.len());
            for s in used_by {
                nano_core::println!("    {}", section_label(l, s));
            }
            return 0;
        }
        let Some(id) = apps.and_then(|a| l.crate_by_name(a, what)) else {
            nano_core::println!("deps: no crate {what} is loaded");
            return 1;
        };
        let name = |c| l.krate(c).map(|k| k.name.clone()).unwrap_or_default();
        let uses: Vec<String> = l.crate_dependencies(id).into_iter().map(name).collect();
        let used_by: Vec<String> = l.crate_dependents(id).into_iter().map(name).collect();
        nano_core::println!("crate {what}");
        nano_core::println!("  uses: {}", uses.join(", "));
        nano_core::println!("  used by: {}", if used_by.is_empty() { String::from("(nothing)") } else { used_by.join(", ") });
        0
    })
}
