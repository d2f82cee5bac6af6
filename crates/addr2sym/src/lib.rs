//! `addr2sym ADDR...`: names addresses in nano_core or any loaded crate.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::String;

/// One line for `help`.
pub static DESCRIPTION: &str = "name addresses: crate, section, symbol + offset";

fn in_function(f: &str) -> String {
    let mut s = String::from(" in ");
    s.push_str(f);
    s
}

/// Entry point.
pub fn main(args: &[&str]) -> isize {
    if args.len() < 2 {
        nano_core::println!("usage: addr2sym ADDR...");
        return 2;
    }
    let mut status = 0;
    for a in &args[1..] {
        let Some(addr) = command::parse_u64(a) else {
            nano_core::println!("addr2sym: not an address: {a}");
            status = 2;
            continue;
        };
        match nano_core::kernel::with_loader_ref(|l| l.addr2sym(addr)) {
            Some(i) => {
                nano_core::println!(
                    "{addr:#x}: {} + {:#x} [crate {} in {}, section {} + {:#x}]",
                    i.symbol.as_deref().unwrap_or("<no symbol>"),
                    i.symbol_offset,
                    i.krate,
                    i.namespace,
                    i.section,
                    i.section_offset
                );
                // Source locations, innermost (inlined) first.
                for l in debuginfo::locate(addr) {
                    nano_core::println!(
                        "    at {}:{}:{}{}",
                        l.file,
                        l.line,
                        l.column,
                        l.function.map(|f| in_function(&f)).unwrap_or_default()
                    );
                }
            }
            None => {
                nano_core::println!("addr2sym: {addr:#x} is not in nano_core or any loaded crate");
                status = 1;
            }
        }
    }
    status
}
