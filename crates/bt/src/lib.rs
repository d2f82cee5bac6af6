//! `bt [-s] [ID...]`: the return addresses on a task's stack (frame-pointer chain), each named
//! as fault reports name frames: `symbol + offset (crate, namespace) at file:line:column`, with
//! inlined frames. `-s` gives the short form, `symbol + offset (crate)`, which needs no debug
//! information. Without an id: every task.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

/// One line for `help`.
pub static DESCRIPTION: &str = "backtrace of tasks with source lines: bt [-s] [ID...]";

/// Entry point.
pub fn main(args: &[&str]) -> isize {
    let short = args[1..].contains(&"-s");
    let rest: Vec<&str> = args[1..].iter().copied().filter(|a| *a != "-s").collect();
    let wanted: Vec<u64> = rest.iter().filter_map(|a| command::parse_u64(a)).collect();
    if wanted.len() != rest.len() {
        nano_core::println!("usage: bt [-s] [ID...]");
        return 2;
    }
    // Interrupts off while walking, so no stack changes meanwhile.
    let stacks = task::without_preemption(task::stack_return_addresses);
    let mut shown = 0;
    for (id, name, addrs) in stacks {
        if !wanted.is_empty() && !wanted.contains(&id) {
            continue;
        }
        shown += 1;
        nano_core::println!("task {id} ({name}):");
        for (i, a) in addrs.iter().enumerate() {
            // Looked up one byte back: inside the call instruction (see exceptions::print_backtrace).
            if short {
                let sym = nano_core::kernel::with_loader_ref(|l| l.addr2sym(a - 1));
                match sym {
                    Some(s) => nano_core::println!(
                        "  #{i:<2} {a:#018x} {} + {:#x} ({})",
                        s.symbol.as_deref().unwrap_or("?"),
                        s.symbol_offset + 1,
                        s.krate
                    ),
                    None => nano_core::println!("  #{i:<2} {a:#018x} ?"),
                }
            } else {
                let mut line = alloc::format!("  #{i:<2} {a:#018x} ");
                exceptions::describe_at(a - 1, 1, &mut |args| {
                    let _ = core::fmt::Write::write_fmt(&mut line, args);
                });
                nano_core::println!("{line}");
            }
        }
    }
    if shown == 0 {
        nano_core::println!("bt: no such task");
        return 1;
    }
    0
}
