//! `sym2addr PATTERN...`: finds symbols. `NAME` matches exactly (raw, demangled, or without
//! hashes); `PREFIX*` lists every symbol whose hash-agnostic name starts with PREFIX.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

/// One line for `help`.
pub static DESCRIPTION: &str = "find symbols: exact, hash-agnostic, or PREFIX*";

const MAX_SHOWN: usize = 50;

/// Entry point.
pub fn main(args: &[&str]) -> isize {
    if args.len() < 2 {
        nano_core::println!("usage: sym2addr NAME | PREFIX* ...");
        return 2;
    }
    let mut status = 0;
    for pat in &args[1..] {
        let found = nano_core::kernel::with_loader(|l| {
            let ns = l.namespace_by_name("applications").ok()?;
            let mut out = alloc::vec::Vec::new();
            if let Some(prefix) = pat.strip_suffix('*') {
                for (n, key, r) in l.search(ns, prefix) {
                    let krate = l.krate(r.krate).map(|k| k.name.clone()).unwrap_or_default();
                    let nsname = l.namespace(n).map(|x| x.name.clone()).unwrap_or_default();
                    out.push((r.addr, r.size, alloc::format!("{key} [{nsname}/{krate}]")));
                }
            } else if let Ok(r) = l.lookup(ns, pat) {
                let krate = l.krate(r.krate).map(|k| k.name.clone()).unwrap_or_default();
                out.push((r.addr, r.size, alloc::format!("{} [{krate}]", mod_mgmt::agnostic_key(pat))));
            }
            Some(out)
        });
        match found {
            Some(v) if !v.is_empty() => {
                for (addr, size, what) in v.iter().take(MAX_SHOWN) {
                    nano_core::println!("{addr:#018x} {size:>6} {what}");
                }
                if v.len() > MAX_SHOWN {
                    nano_core::println!("... {} more", v.len() - MAX_SHOWN);
                }
            }
            _ => {
                nano_core::println!("sym2addr: no symbol matches {pat}");
                status = 1;
            }
        }
    }
    status
}
