//! `crash panic|null|ud|divide|stack`: faults deliberately, inside the command's own task.
//! Each ends only that task, with a report and a symbolized backtrace; the shell goes on. All
//! but `stack` unwind the task, so `main`'s [`Cleanup`] reports its drop.
//!
//! Fault injection, for the recovery tests and `make faults` (SYMBOL may be an address); none of
//! these faults here:
//! - `crash corrupt SYMBOL [--with-copy]` writes `ud2` over the function's first instruction,
//!   so its next caller faults for certain; `--with-copy` damages the loader's sealed copy of
//!   the code too, so that only a reload from the object repairs it;
//! - `crash wild SYMBOL` makes the function jump to address 0: the fault then shows no frame of
//!   the damaged function;
//! - `crash flip SYMBOL [OFFSET [BIT]]` flips one bit, with whatever effect that has — in code,
//!   or in a static (a data or bss symbol of a live crate);
//! - `crash runon SYMBOL` flips the function's final `ret` into a prefix, so that it runs on
//!   past its end into the padding (`int3`, which traps: see the loader's `allocate_and_fill`);
//! - `crash bad-free` frees a pointer that is no heap block: the allocator refuses it;
//! - `crash supervisor` makes the recovery supervisor panic at its next round: it dies, and the
//!   scrubber, finding it gone, takes the deaths and restarts it;
//! - `crash heap-lock` leaves the general heap's lock held by no code, as a wild store over its
//!   word would (the fault campaign saw one), and allocates: the watchdog releases the lock;
//! - `crash restartable` starts a restartable task that panics every time it runs (recovery
//!   gives it up after a few tries);
//! - `crash tick [--panic|--wild] [--idle]` makes the next timer tick fault (or panic, or jump
//!   to where there is no code) in the tick's own code, as damaged timer or scheduler code
//!   would, while this command's task (or the idle task) runs: the tick is abandoned and the
//!   task goes on (the task crate's guarded steps); `crash tick --entry` faults in the timer's
//!   interrupt entry instead, before the guarded step begins (abandoned by the interrupts crate),
//!   `crash tick --exit` after it ended; `crash tick --no-eoi` makes the next tick return at
//!   once without its end of interrupt, as entry code damaged to skip the tick's body would: no
//!   tick comes after it until the watchdog sends the lost end of interrupt; `crash tick --wild
//!   --damaged-step` zeroes the tick step's saved stack pointer before the wild jump, as a task
//!   switch sent astray did in the fault campaign: the step cannot be escaped, and this
//!   command's task is ended instead (it used to fault again in the escape, for good);
//! - `crash schedule [--panic|--wild]` does the same to this task's next scheduling decision,
//!   made with the task table held, as a damaged scheduler policy would: the decision is
//!   abandoned, the table released, and this task goes on;
//! - `crash schedule --switch [--panic|--wild]` does it to the bookkeeping of this task's next
//!   switch, after the decision: the switch is abandoned, and this task goes on;
//! - `--hang` (with `tick` or `schedule`) makes that step loop for good with interrupts off
//!   instead: only the watchdog's NMI ends it (the watchdog crate), and the step is abandoned
//!   as after a fault;
//! - `crash hang` loops for good with interrupts off in this command's own code: the watchdog
//!   ends the task, which unwinds;
//! - `crash stall MS [--long-work]` keeps interrupts off for MS milliseconds and then returns,
//!   as healthy work that runs long can: past the watchdog's limit it is reported as a hang
//!   and the task ended; with `--long-work` it carries the mark a fault report takes while it
//!   builds debug information (`nano_core::kernel::long_work`), which the watchdog gives the
//!   loader's longer limit;
//! - `crash loop SYMBOL` writes a jump to itself over the function's first instruction, so its
//!   next caller loops there — with interrupts off, if the function runs with them off (the
//!   scheduler's policy, the task switch): the watchdog then finds the damage, repairs it, and
//!   the caller goes on;
//! - `crash ret0 SYMBOL` makes the function return 0 at once (`xor eax, eax; ret`): for
//!   `scheduler::pick_next`, a policy that never picks a task, so the running one runs on alone
//!   (no task switch at all; only the watchdog's stall check notices).
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

/// One line for `help`.
pub static DESCRIPTION: &str = "fault on purpose: crash panic|null|ud|divide|stack|hang|stall MS [--long-work]|heap-lock|bad-free|restartable|table|supervisor [--and-scrubber]|tick|schedule|corrupt SYM [--with-copy|--page-tables-held MS]|wild SYM|runon SYM|loop SYM|ret0 SYM|flip SYM [OFF [BIT]]";

/// What a code corruption does.
#[derive(Clone, Copy)]
enum Damage {
    Ud2,
    /// `ud2`, and the loader's sealed copy damaged too: only a reload can repair it.
    Ud2WithCopy,
    /// `xor eax, eax; jmp rax`: a wild jump to address 0 that leaves no frame of the function.
    WildJump,
    Flip {
        offset: u64,
        bit: u8,
    },
    /// `jmp .` (`eb fe`): the function's caller loops there for good.
    SelfJump,
    /// `xor eax, eax; ret`: the function returns 0 (`None`, `false`, null) at once.
    ReturnZero,
    /// The function's final `ret` flipped into a REX prefix (bit 7: `c3` → `43`): the function
    /// runs on past its end, into the padding before the next one (found so in the fault
    /// campaign).
    RunOn,
}

/// Damages the code of the loaded function `symbol` (looked up from the applications
/// namespace, which sees the kernel's crates too), or at an address (`0x…`).
fn damage(symbol: &str, how: Damage) -> isize {
    report_damage(symbol, how, write_damage(symbol, how))
}

/// What [`write_damage`] damaged: the crate's name, the address, and what lay there.
struct Damaged {
    krate: alloc::string::String,
    place: u64,
    what: &'static str,
}

/// Writes the damage `how` to `symbol`, reporting nothing.
fn write_damage(symbol: &str, how: Damage) -> Result<Damaged, alloc::string::String> {
    nano_core::kernel::with_loader_mut(|l| {
        let mut size = 0;
        let addr = match symbol.strip_prefix("0x").and_then(|h| u64::from_str_radix(h, 16).ok()) {
            Some(a) => a,
            None => {
                let ns = l.namespace_by_name("applications").map_err(|e| alloc::format!("{e}"))?;
                match l.lookup(ns, symbol) {
                    Ok(s) => {
                        size = s.size;
                        s.addr
                    }
                    // Not exported: a private function, found in the crate its path names.
                    Err(e) => {
                        let krate = symbol.split("::").next().unwrap_or_default();
                        l.crates()
                            .filter(|k| k.name == krate && !k.is_retired())
                            .map(|k| k.id)
                            .collect::<alloc::vec::Vec<_>>()
                            .into_iter()
                            .find_map(|id| l.find_symbol(id, symbol, mod_mgmt::SymbolFilter::Any))
                            .ok_or_else(|| alloc::format!("{e}"))?
                    }
                }
            }
        };
        if let Damage::Flip { offset, bit } = how
            && l.code_offset(addr).is_none()
        {
            let at = addr + offset;
            if l.symbol_at(at).is_some_and(|(sec, _, _)| sec.kind == mod_mgmt::SectionKind::Rodata) {
                return l
                    .flip_readonly_bit(at, bit)
                    .map(|krate| Damaged { krate, place: at, what: "read-only data" })
                    .map_err(|e| alloc::format!("{e}"));
            }
            return flip_data_bit(l, at, bit).map(|(krate, place)| Damaged { krate, place, what: "data" });
        }
        let (id, base) = l.code_offset(addr).ok_or_else(|| alloc::format!("{symbol} is not in the code or data of a loaded crate"))?;
        let name = l.krate(id).map(|k| k.name.clone()).unwrap_or_default();
        let place = match how {
            Damage::Ud2 => l.overwrite_code(id, base, &[0x0f, 0x0b]),
            Damage::Ud2WithCopy => l.flip_sealed_bit(id, base, 0).and_then(|()| l.overwrite_code(id, base, &[0x0f, 0x0b])),
            Damage::WildJump => l.overwrite_code(id, base, &[0x31, 0xc0, 0xff, 0xe0]),
            Damage::SelfJump => l.overwrite_code(id, base, &[0xeb, 0xfe]),
            Damage::ReturnZero => l.overwrite_code(id, base, &[0x31, 0xc0, 0xc3]),
            Damage::Flip { offset, bit } => l.flip_code_bit(id, base + offset, bit),
            Damage::RunOn => {
                let last = addr + size.max(1) - 1;
                // SAFETY: `last` is the last byte of a loaded function's code (its symbol's
                // size), mapped readable while the loader is held.
                let byte = unsafe { core::ptr::read_volatile(last as *const u8) };
                if size == 0 || byte != 0xc3 {
                    return Err(alloc::format!("{symbol} does not end in `ret` (its last byte is {byte:#04x}, its size {size})"));
                }
                l.flip_code_bit(id, base + size - 1, 7)
            }
        }
        .map_err(|e| alloc::format!("{e}"))?;
        Ok(Damaged { krate: name, place, what: "code" })
    })
}

/// Says what [`write_damage`] did: 0 if it damaged, 1 if not.
fn report_damage(symbol: &str, how: Damage, r: Result<Damaged, alloc::string::String>) -> isize {
    match r {
        Ok(Damaged { krate, place, what }) => {
            // A flipped bit of code says which byte it changed, so that a test aimed at one
            // instruction fails when an edit moves that instruction (instead of passing on
            // harmless damage elsewhere).
            let byte = match how {
                Damage::Flip { bit, .. } if what == "code" => {
                    // SAFETY: `place` is a byte of a loaded crate's code, mapped readable.
                    let now = unsafe { core::ptr::read_volatile(place as *const u8) };
                    alloc::format!(", byte {:#04x} -> {now:#04x}", now ^ (1 << bit))
                }
                _ => alloc::string::String::new(),
            };
            nano_core::println!("crash: damaged {symbol} in crate {krate} at {place:#x} ({what}{byte})");
            0
        }
        Err(e) => {
            nano_core::println!("crash: {e}");
            1
        }
    }
}

#[inline(never)]
fn deliberate_panic(what: &str) -> ! {
    panic!("deliberate panic: {what}")
}

#[inline(never)]
fn null_write() {
    // SAFETY: deliberately invalid: the page fault must end only this task.
    unsafe { core::ptr::write_volatile(0x10 as *mut u64, 1) }
}

#[inline(never)]
fn invalid_opcode() {
    // SAFETY: deliberately invalid instruction.
    unsafe { core::arch::asm!("ud2") }
}

/// Keeps interrupts off for `ms` milliseconds, marked as known-long work or not.
fn stall(ms: u64, long_work: bool) -> isize {
    let spin = || {
        let end = nano_core::time::micros_since_entry() + ms * 1000;
        x86_64::instructions::interrupts::without_interrupts(|| {
            while nano_core::time::micros_since_entry() < end {
                core::hint::spin_loop();
            }
        })
    };
    if long_work {
        nano_core::kernel::long_work(spin);
    } else {
        spin();
    }
    let how = if long_work { "marked as long work" } else { "unmarked" };
    nano_core::println!("crash: stalled {ms} ms with interrupts off ({how}) and came back");
    0
}

/// Loops for good with interrupts off, as damaged code can: only an NMI gets the CPU back.
#[inline(never)]
fn hang_with_interrupts_off() {
    x86_64::instructions::interrupts::disable();
    loop {
        core::hint::spin_loop();
    }
}

#[inline(never)]
fn divide_by_zero() {
    // SAFETY: deliberately divides by a zero register.
    unsafe { core::arch::asm!("xor ecx, ecx", "div ecx", out("eax") _, out("edx") _, out("ecx") _) }
}

#[inline(never)]
#[allow(unconditional_recursion)]
fn overflow_stack(n: u64) -> u64 {
    let buf = [n; 32];
    core::hint::black_box(&buf);
    overflow_stack(n + 1) + core::hint::black_box(buf[1])
}

/// Calls `f` through a pointer the compiler cannot see through. The fault functions contain no
/// call, so LLVM proves they cannot unwind and a direct call to one gets no landing pad: a
/// fault there would skip the caller's cleanups. Called opaquely, the call may unwind, as a
/// call into real code usually may.
#[inline(never)]
fn opaque(f: fn()) {
    core::hint::black_box(f)()
}

/// Reports its drop: shows that unwinding ran the caller's destructors after a fault.
struct Cleanup<'a>(&'a str);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        nano_core::println!("crash: cleanup ran ({})", self.0);
    }
}

/// The body of `crash restartable`'s task: panics every time it starts, so recovery restarts
/// it until its policy gives up.
fn doomed(_: u64) -> isize {
    deliberate_panic("a restartable task that always panics")
}

/// Starts [`doomed`] as a restartable task.
fn start_doomed() -> isize {
    match task::spawn_restartable("doomed", task::Restartable { entry: doomed, arg: 0, restarts: 0 }) {
        Ok(id) => {
            nano_core::println!("crash: restartable task {id} started; it panics every time");
            0
        }
        Err(e) => {
            nano_core::println!("crash: {e}");
            1
        }
    }
}

/// Flips bit `bit` of the byte at `at`, which must lie in the writable data (data or bss) of a
/// live crate: what a flipped bit in a static does, for the data-fault tests. (Read-only data
/// is flipped by the loader, which seals it: `Loader::flip_readonly_bit`.)
fn flip_data_bit(l: &mod_mgmt::Loader, at: u64, bit: u8) -> Result<(alloc::string::String, u64), alloc::string::String> {
    let (sec, _, _) = l.symbol_at(at).ok_or_else(|| alloc::format!("{at:#x} is not in the code or data of a loaded crate"))?;
    if !matches!(sec.kind, mod_mgmt::SectionKind::Data | mod_mgmt::SectionKind::Bss) {
        return Err(alloc::format!("{at:#x} is in {} of a crate, neither code, read-only data nor writable data", sec.name));
    }
    let krate = l.krate(sec.krate).filter(|k| !k.is_retired()).map(|k| k.name.clone()).ok_or("a retired crate's data")?;
    x86_64::instructions::interrupts::without_interrupts(|| {
        // SAFETY: `at` lies in a writable data section of a live crate (checked above), mapped
        // read-write while the crate is loaded, which the loader lock we hold guarantees.
        unsafe {
            let p = at as *mut u8;
            p.write_volatile(p.read_volatile() ^ (1 << (bit % 8)));
        }
    });
    Ok((krate, at))
}

/// Makes the next timer tick that interrupts this task (it spins), or with `idle` the idle
/// task (this task lets it run), fault or panic in the tick's own code, and reports whether the
/// interrupted task went on.
fn tick_fault(fault: task::Fault, idle: bool, entry: bool, exit: bool) -> isize {
    let before = task::ticks_abandoned();
    if entry {
        interrupts::inject_entry_fault();
    } else if exit {
        interrupts::inject_exit_fault();
    } else {
        task::inject_tick_fault(fault, if idle { 0 } else { task::current() });
    }
    // A hang takes the watchdog's limit (2 s by default) to end.
    let deadline = nano_core::time::micros_since_entry() + 10_000_000;
    while task::ticks_abandoned() == before && nano_core::time::micros_since_entry() < deadline {
        if idle {
            task::run_idle();
        } else {
            core::hint::spin_loop();
        }
    }
    if task::ticks_abandoned() == before {
        nano_core::println!("crash: no tick was abandoned within 10 s");
        return 1;
    }
    let who = if idle {
        "the idle task"
    } else if entry || exit {
        "the interrupted task"
    } else {
        "this task"
    };
    let what = if entry {
        "entry fault"
    } else if exit {
        "exit fault"
    } else {
        fault_name(fault)
    };
    nano_core::println!("crash: the tick's {what} was contained; {who} went on");
    0
}

/// `crash bad-free`: frees a pointer that is no heap block (the first page, as a string made of
/// garbage would hold), as damaged code would: the kernel's allocator refuses it and says so,
/// instead of writing its free-list links there.
fn bad_free() -> isize {
    let before = nano_core::heap::refused_frees();
    let layout = core::alloc::Layout::from_size_align(16, 8).expect("a valid layout");
    // SAFETY: not safe by the allocator's contract, on purpose: the pointer is no block. What is
    // tested is that the kernel's allocator checks that (and refuses) rather than trust it.
    unsafe { alloc::alloc::dealloc(core::hint::black_box(0x1000 as *mut u8), layout) };
    if nano_core::heap::refused_frees() == before + 1 {
        nano_core::println!("crash: the free of a pointer that is no heap block was refused");
        0
    } else {
        nano_core::println!("crash: the free of a pointer that is no heap block was NOT refused");
        1
    }
}

/// `crash heap-lock`: the general heap's lock left held by no code (as a wild store over its
/// word would), then an allocation; reports whether the watchdog released the lock.
fn heap_lock() -> isize {
    let before = exceptions::heap_locks_released();
    nano_core::heap::inject_overwritten_lock();
    // Spins with interrupts off inside the allocator until the watchdog's NMI releases the lock.
    // black_box: an allocation the compiler could see through would be elided.
    let b = core::hint::black_box(alloc::boxed::Box::new(7u64));
    if exceptions::heap_locks_released() == before || *b != 7 {
        nano_core::println!("crash: the allocation went through, but the watchdog released no heap lock");
        return 1;
    }
    nano_core::println!("crash: the heap's lock, overwritten, was released by the watchdog; the allocation went on");
    0
}

/// `crash tick --no-eoi`: the next tick skips its body and its end of interrupt; reports
/// whether the watchdog sent the lost end of interrupt and ticks came again.
fn lost_eoi() -> isize {
    let before = exceptions::lost_eois_repaired();
    interrupts::inject_skipped_tick();
    // Spins with interrupts on: no tick comes until the watchdog's repair (a sleep would never
    // end), and the watchdog's limit is 2 s by default.
    let deadline = nano_core::time::micros_since_entry() + 10_000_000;
    while exceptions::lost_eois_repaired() == before && nano_core::time::micros_since_entry() < deadline {
        core::hint::spin_loop();
    }
    if exceptions::lost_eois_repaired() == before {
        nano_core::println!("crash: the lost end of interrupt was not repaired within 10 s");
        return 1;
    }
    let ticks = interrupts::ticks();
    while interrupts::ticks() < ticks + 5 && nano_core::time::micros_since_entry() < deadline {
        core::hint::spin_loop();
    }
    if interrupts::ticks() < ticks + 5 {
        nano_core::println!("crash: the end of interrupt was sent, but no ticks came after it");
        return 1;
    }
    nano_core::println!("crash: the tick's lost end of interrupt was sent by the watchdog; ticks resumed");
    0
}

/// The fault `crash tick` or `crash schedule` injects: `--panic`, `--wild` or a page fault.
fn injected(opts: &[&str]) -> task::Fault {
    if opts.contains(&"--panic") {
        task::Fault::Panic
    } else if opts.contains(&"--wild") && opts.contains(&"--damaged-step") {
        task::Fault::WildJumpDamagedStep
    } else if opts.contains(&"--wild") {
        task::Fault::WildJump
    } else if opts.contains(&"--hang") {
        task::Fault::Hang
    } else {
        task::Fault::PageFault
    }
}

fn fault_name(fault: task::Fault) -> &'static str {
    match fault {
        task::Fault::PageFault => "fault",
        task::Fault::Panic => "panic",
        task::Fault::WildJump => "wild jump",
        task::Fault::WildJumpDamagedStep => "wild jump with a damaged step",
        task::Fault::Hang => "hang",
    }
}

/// `crash corrupt SYMBOL --page-tables-held MS`: damages `symbol` with `ud2`, then holds the
/// page tables' lock for `ms` with interrupts off, so that an NMI whose path runs the damage
/// finds the page tables held by the code it interrupted: it must not repair then (the repair
/// changes permissions, and would wait for ever), only abandon the NMI; the next NMI after the
/// hold repairs. An NMI may repair the damage in the moment between the write and the hold:
/// then the damage is written again (at most 5 times).
fn damage_under_held_page_tables(symbol: &str, ms: u64) -> isize {
    for _ in 0..5 {
        let written = write_damage(symbol, Damage::Ud2);
        // Counted from here: an NMI that came while the damage was written found the loader
        // held, which abandons it too.
        let before = exceptions::nmi_abandons();
        let repairs = exceptions::repairs_in_place();
        if written.is_ok() {
            nano_core::paging::hold_for_test(ms);
        }
        let abandoned = exceptions::nmi_abandons() - before;
        // Reported once the damage is gone (the next NMI repairs it), so that this report and
        // the NMI's do not cross.
        let deadline = nano_core::time::micros_since_entry() + 2_000_000;
        while written.is_ok() && exceptions::repairs_in_place() == repairs && nano_core::time::micros_since_entry() < deadline {
            task::sleep_ms(1);
        }
        let repaired = exceptions::repairs_in_place() != repairs;
        if report_damage(symbol, Damage::Ud2, written) != 0 {
            return 1;
        }
        if abandoned == 0 {
            continue;
        }
        if !repaired {
            nano_core::println!(
                "crash: the page tables were held for {ms} ms; {abandoned} NMIs abandoned meanwhile; no NMI repaired the damage within 2 s"
            );
            return 1;
        }
        nano_core::println!(
            "crash: the page tables were held for {ms} ms with the damage in place; {abandoned} NMIs abandoned meanwhile; the first NMI after repaired it"
        );
        return 0;
    }
    nano_core::println!("crash: no NMI ran into the damage while the page tables were held (5 tries)");
    1
}

/// Makes this task's next scheduling decision fail with `fault`, with the task table held, and
/// reports whether this task went on.
fn schedule_fault(fault: task::Fault, switch: bool) -> isize {
    let before = task::steps_abandoned();
    let what = if switch {
        task::inject_switch_fault(fault);
        "task switch's"
    } else {
        task::inject_schedule_fault(fault);
        "scheduler's"
    };
    // A switch's bookkeeping runs only when another task is runnable: the idle task always is
    // when this one sleeps, so yield until the step was abandoned (the first yield, as a rule).
    for _ in 0..100 {
        task::yield_now();
        if task::steps_abandoned() != before || !switch {
            break;
        }
        task::sleep_ms(1);
    }
    if task::steps_abandoned() == before {
        nano_core::println!("crash: the {what} step was not abandoned");
        return 1;
    }
    nano_core::println!("crash: the {what} {} was contained; this task went on", fault_name(fault));
    0
}

/// Entry point.
pub fn main(args: &[&str]) -> isize {
    let num = |i: usize, default: u64| args.get(i).map_or(Some(default), |a| command::parse_u64(a));
    match (args.get(1).copied(), args.get(2)) {
        (Some("corrupt"), Some(sym)) if args.get(3) == Some(&"--with-copy") => return damage(sym, Damage::Ud2WithCopy),
        (Some("corrupt"), Some(sym)) if args.get(3) == Some(&"--page-tables-held") => {
            return match num(4, 0) {
                Some(ms) if (1..=1000).contains(&ms) => damage_under_held_page_tables(sym, ms),
                _ => {
                    nano_core::println!("usage: crash corrupt SYMBOL --page-tables-held MILLISECONDS (1-1000)");
                    2
                }
            };
        }
        (Some("corrupt"), Some(sym)) => return damage(sym, Damage::Ud2),
        (Some("wild"), Some(sym)) => return damage(sym, Damage::WildJump),
        (Some("runon"), Some(sym)) => return damage(sym, Damage::RunOn),
        (Some("loop"), Some(sym)) => return damage(sym, Damage::SelfJump),
        (Some("ret0"), Some(sym)) => return damage(sym, Damage::ReturnZero),
        (Some("flip"), Some(sym)) => {
            return match (num(3, 0), num(4, 0)) {
                (Some(offset), Some(bit)) if bit < 8 => damage(sym, Damage::Flip { offset, bit: bit as u8 }),
                _ => {
                    nano_core::println!("usage: crash flip SYMBOL [OFFSET [BIT]] (BIT 0-7)");
                    2
                }
            };
        }
        (Some("stall"), Some(ms)) => {
            return match command::parse_u64(ms) {
                Some(ms) => stall(ms, args.get(3) == Some(&"--long-work")),
                None => {
                    nano_core::println!("usage: crash stall MILLISECONDS [--long-work]");
                    2
                }
            };
        }
        (Some("restartable"), _) => return start_doomed(),
        (Some("table"), _) => {
            nano_core::println!("crash: faulting with the task table held");
            return task::fault_holding_the_table() as isize;
        }
        (Some("heap-lock"), _) => return heap_lock(),
        (Some("bad-free"), _) => return bad_free(),
        (Some("supervisor"), _) => {
            let both = args.get(2) == Some(&"--and-scrubber");
            recovery::inject_supervisor_fault(both);
            if both {
                nano_core::println!("crash: the supervisor and the scrubber will panic at their next rounds");
            } else {
                nano_core::println!("crash: the supervisor will panic at its next round");
            }
            return 0;
        }
        (Some("schedule"), _) => {
            let opts = args.get(2..).unwrap_or(&[]);
            return schedule_fault(injected(opts), opts.contains(&"--switch"));
        }
        (Some("tick"), _) => {
            let opts = args.get(2..).unwrap_or(&[]);
            if opts.contains(&"--no-eoi") {
                return lost_eoi();
            }
            return tick_fault(injected(opts), opts.contains(&"--idle"), opts.contains(&"--entry"), opts.contains(&"--exit"));
        }
        (Some("corrupt" | "wild" | "runon" | "loop" | "ret0" | "flip"), None) => {
            nano_core::println!(
                "usage: crash corrupt SYMBOL [--with-copy | --page-tables-held MS] | crash wild SYMBOL | crash runon SYMBOL | crash loop SYMBOL | crash ret0 SYMBOL | crash flip SYMBOL [OFFSET [BIT]]"
            );
            return 2;
        }
        _ => {}
    }
    let _cleanup = Cleanup(args.get(1).copied().unwrap_or(""));
    match args.get(1).copied() {
        Some("panic") => deliberate_panic("requested by crash"),
        Some("null") => opaque(null_write),
        Some("ud") => opaque(invalid_opcode),
        Some("divide") => opaque(divide_by_zero),
        Some("hang") => opaque(hang_with_interrupts_off),
        Some("stack") => {
            core::hint::black_box(overflow_stack(0));
        }
        _ => {
            nano_core::println!(
                "usage: crash panic|null|ud|divide|stack|hang|stall MS [--long-work]|heap-lock|bad-free|restartable|table|supervisor [--and-scrubber]|tick [--panic|--wild [--damaged-step]|--hang] [--idle] [--entry|--exit|--no-eoi]|schedule [--panic|--wild|--hang] [--switch]|corrupt SYMBOL [--with-copy|--page-tables-held MS]|wild SYMBOL|runon SYMBOL|loop SYMBOL|ret0 SYMBOL|flip SYMBOL [OFFSET [BIT]]"
            );
            return 2;
        }
    }
    nano_core::println!("crash: still alive?");
    1
}
