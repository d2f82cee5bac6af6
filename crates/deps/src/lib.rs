//! `deps CRATE | ADDR`: what a crate (or the section containing ADDR) depends on, and what
//! depends on it, from the per-relocation dependency graph.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;

/// One line for `help`.
pub static DESCRIPTION: &str = "dependencies of a crate or of the section at an address (--ns NAME: a crate of that namespace)";

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
    if let Some(status) = command::run_in_namespace_option(args) {
        return status;
    }
    let Some(what) = args.get(1) else {
        nano_core::println!("usage: deps [--ns NAME] CRATE | ADDR");
        return 2;
    };
    // The answer is gathered with the loader held and printed after it is released (the loader
    // is held with interrupts off: no serial output in there).
    let (status, lines) = nano_core::kernel::with_loader_ref(|l| {
        let mut out: Vec<String> = Vec::new();
        // The crate as seen from the namespace this runs in (`deps --ns NAME`).
        let apps = command::home_namespace(l, main as fn(&[&str]) -> isize as usize as u64);
        if let Some(addr) = command::parse_u64(what).filter(|_| what.starts_with("0x")) {
            let Some((sid, _)) = l.locate(addr) else {
                out.push(alloc::format!("deps: {addr:#x} is not in any loaded section"));
                return (1, out);
            };
            out.push(alloc::format!("section {}", section_label(l, sid)));
            let uses: Vec<_> = l.section_dependencies(sid);
            let used_by: Vec<_> = l.section_dependents(sid);
            out.push(alloc::format!("  uses ({}):", uses.len()));
            for s in uses {
                out.push(alloc::format!("    {}", section_label(l, s)));
            }
            out.push(alloc::format!("  used by ({}):", used_by.len()));
            for s in used_by {
                out.push(alloc::format!("    {}", section_label(l, s)));
            }
            return (0, out);
        }
        let Some(id) = apps.and_then(|a| l.crate_by_name(a, what)) else {
            out.push(alloc::format!("deps: no crate {what} is loaded"));
            return (1, out);
        };
        // A crate of another namespace than the one asked about says which.
        let name = |c| match l.krate(c) {
            Some(k) if Some(k.namespace) != apps => {
                alloc::format!("{} [{}]", k.name, l.namespace(k.namespace).map_or("?", |n| n.name.as_str()))
            }
            Some(k) => k.name.clone(),
            None => String::new(),
        };
        let uses: Vec<String> = l.crate_dependencies(id).into_iter().map(name).collect();
        let used_by: Vec<String> = l.crate_dependents(id).into_iter().map(name).collect();
        out.push(alloc::format!("crate {what}"));
        out.push(alloc::format!("  uses: {}", uses.join(", ")));
        out.push(alloc::format!("  used by: {}", if used_by.is_empty() { String::from("(nothing)") } else { used_by.join(", ") }));
        (0, out)
    });
    for line in &lines {
        nano_core::println!("{line}");
    }
    status
}
