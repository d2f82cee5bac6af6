//! `sym2addr [--ns NAME] PATTERN...`: finds symbols as seen from a namespace (default
//! `applications`). `NAME` matches exactly (raw, demangled, or without hashes); `PREFIX*` lists
//! every symbol whose hash-agnostic name starts with PREFIX. Each is shown with its
//! `[namespace/crate]`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

/// One line for `help`.
pub static DESCRIPTION: &str = "find symbols: exact, hash-agnostic, or PREFIX* (--ns NAME: as seen from that namespace)";

const MAX_SHOWN: usize = 50;

/// Entry point.
pub fn main(args: &[&str]) -> isize {
    if let Some(status) = command::run_in_namespace_option(args) {
        return status;
    }
    if args.len() < 2 {
        nano_core::println!("usage: sym2addr [--ns NAME] NAME | PREFIX* ...");
        return 2;
    }
    let mut status = 0;
    for pat in &args[1..] {
        let found = nano_core::kernel::with_loader_ref(|l| {
            let ns = command::home_namespace(l, main as fn(&[&str]) -> isize as usize as u64)?;
            let mut out = alloc::vec::Vec::new();
            if let Some(prefix) = pat.strip_suffix('*') {
                for (n, key, r) in l.search(ns, prefix) {
                    let krate = l.krate(r.krate).map(|k| k.name.clone()).unwrap_or_default();
                    let nsname = l.namespace(n).map(|x| x.name.clone()).unwrap_or_default();
                    out.push((r.addr, r.size, alloc::format!("{key} [{nsname}/{krate}]")));
                }
            } else if let Ok(r) = l.lookup(ns, pat) {
                let k = l.krate(r.krate);
                let krate = k.map(|k| k.name.clone()).unwrap_or_default();
                let nsname = k.and_then(|k| l.namespace(k.namespace)).map(|x| x.name.clone()).unwrap_or_default();
                out.push((r.addr, r.size, alloc::format!("{} [{nsname}/{krate}]", mod_mgmt::agnostic_key(pat))));
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
