//! `ps`: lists tasks.
#![no_std]
#![forbid(unsafe_code)]

/// One line for `help`.
pub static DESCRIPTION: &str = "list tasks";

/// Entry point.
pub fn main(_args: &[&str]) -> isize {
    nano_core::println!("{:>4}  {:<16} {:<10} {:>7}  stack", "ID", "NAME", "STATE", "TICKS");
    for t in task::list() {
        let state = match &t.state {
            task::State::Runnable => "runnable",
            task::State::Running => "running",
            task::State::Exited(_) => "exited",
        };
        match t.stack {
            Some((b, e)) => nano_core::println!("{:>4}  {:<16} {:<10} {:>7}  {:#x}..{:#x}", t.id, t.name, state, t.ticks, b, e),
            None => nano_core::println!("{:>4}  {:<16} {:<10} {:>7}  -", t.id, t.name, state, t.ticks),
        }
    }
    nano_core::println!("policy: {}", task::policy_name());
    0
}
