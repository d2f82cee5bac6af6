//! `ps`: lists tasks.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

/// One line for `help`.
pub static DESCRIPTION: &str = "list tasks";

/// Entry point.
pub fn main(_args: &[&str]) -> isize {
    nano_core::println!("{:>4}  {:<16} {:<10} {:>7} {:>8} {:>3}  stack", "ID", "NAME", "STATE", "TICKS", "RESTARTS", "CPU");
    for t in task::list() {
        let state = match &t.state {
            task::State::Runnable => "runnable",
            task::State::Running => "running",
            task::State::Exited(_) => "exited",
        };
        // Restarts: `-` for a task the recovery policy does not restart.
        let restarts = t.restarts.map_or(alloc::string::String::from("-"), |r| alloc::format!("{r}"));
        match t.stack {
            Some((b, e)) => {
                nano_core::println!(
                    "{:>4}  {:<16} {:<10} {:>7} {:>8} {:>3}  {:#x}..{:#x}",
                    t.id,
                    t.name,
                    state,
                    t.ticks,
                    restarts,
                    t.cpu,
                    b,
                    e
                )
            }
            None => nano_core::println!("{:>4}  {:<16} {:<10} {:>7} {:>8} {:>3}  -", t.id, t.name, state, t.ticks, restarts, t.cpu),
        }
    }
    nano_core::println!("policy: {}", task::policy_name());
    0
}
