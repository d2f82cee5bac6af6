//! `kill ID...`: kills tasks.
#![no_std]
#![forbid(unsafe_code)]

/// One line for `help`.
pub static DESCRIPTION: &str = "kill tasks by id";

/// Entry point.
pub fn main(args: &[&str]) -> isize {
    if args.len() < 2 {
        nano_core::println!("usage: kill ID...");
        return 2;
    }
    let mut status = 0;
    for a in &args[1..] {
        match a.parse::<u64>() {
            Ok(id) => match task::kill(id) {
                Ok(()) => nano_core::println!("killed task {id}"),
                Err(e) => {
                    nano_core::println!("kill: {e}");
                    status = 1;
                }
            },
            Err(_) => {
                nano_core::println!("kill: not a task id: {a}");
                status = 2;
            }
        }
    }
    status
}
