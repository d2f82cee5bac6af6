//! `bt [ID...]`: the return addresses on a task's stack (frame-pointer chain), each named by
//! the loader as `symbol + offset (crate)`. Without an id: every task.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

/// One line for `help`.
pub static DESCRIPTION: &str = "backtrace of tasks: bt [ID...]";

/// Entry point.
pub fn main(args: &[&str]) -> isize {
    let wanted: Vec<u64> = args[1..].iter().filter_map(|a| nano_core::kernel::parse_u64(a)).collect();
    if args.len() > 1 && wanted.is_empty() {
        nano_core::println!("usage: bt [ID...]");
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
            let sym = nano_core::kernel::with_loader(|l| l.addr2sym(a - 1));
            match sym {
                Some(s) => nano_core::println!(
                    "  #{i:<2} {a:#018x} {} + {:#x} ({})",
                    s.symbol.as_deref().unwrap_or("?"),
                    s.symbol_offset + 1,
                    s.krate
                ),
                None => nano_core::println!("  #{i:<2} {a:#018x} ?"),
            }
        }
    }
    if shown == 0 {
        nano_core::println!("bt: no such task");
        return 1;
    }
    0
}
