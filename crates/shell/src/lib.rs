//! shell: the serial console shell, a crate of the applications namespace.
//!
//! A command `foo` is the crate `foo` in the applications namespace. The shell loads it on first
//! use, finds its entry point `foo::main(&[&str]) -> isize` by symbol lookup and runs it as a
//! task of its own; while it runs, Ctrl-C kills it. `help` lists every command crate in the
//! namespace's directory with the one-line `DESCRIPTION` each exports.
//!
//! A trailing `&` runs a command in the background (the shell does not wait for it).
//!
//! Line editing: printable input, Backspace/Delete, Left/Right, Home/End (and Ctrl-A/Ctrl-E),
//! Up/Down through the history, Ctrl-C to drop the line, Ctrl-L to clear the screen.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod line;
mod parse;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use nano_core::{print, println};

/// The prompt the QEMU runner waits for.
pub const PROMPT: &str = "delos> ";

fn applications() -> Result<mod_mgmt::NamespaceId, String> {
    nano_core::kernel::with_loader_ref(|l| l.namespace_by_name("applications")).map_err(|e| format!("{e}"))
}

/// Command crates available in the applications namespace (directory files), sorted.
fn command_names() -> Vec<String> {
    let Ok(apps) = applications() else { return Vec::new() };
    nano_core::kernel::with_loader_ref(|l| {
        let mut v: Vec<String> = l
            .namespace(apps)
            .map(|n| n.files().map(|(f, _)| mod_mgmt::crate_name_of(f).to_string()).filter(|c| c != "shell").collect())
            .unwrap_or_default();
        v.sort();
        v.dedup();
        v
    })
}

/// The `DESCRIPTION` a command crate exports, if loaded.
fn description(name: &str) -> String {
    let Ok(apps) = applications() else { return String::new() };
    let addr = nano_core::kernel::with_loader_ref(|l| l.lookup(apps, &format!("{name}::DESCRIPTION")).ok().map(|s| s.addr));
    match addr {
        Some(a) => command::read_static_str(a).unwrap_or("").to_string(),
        None => String::new(),
    }
}

fn help() {
    println!("builtins: help, history, run --ns NAME CMD [ARGS] | run --fresh [--cycles N] CMD [ARGS] (in a namespace; see ns new)");
    println!("commands (crates in the applications namespace, loaded on first use):");
    let table = command_table();
    for c in command_names() {
        // A loaded command says what it does itself (it may be a newer version than the image's);
        // the others are described by the image's table, without loading them.
        let loaded = description(&c);
        let known = table.iter().find(|(n, _)| *n == c).map(|(_, d)| *d);
        match (loaded.is_empty(), known) {
            (false, _) => println!("  {c:<10} {loaded}"),
            (true, Some(d)) => println!("  {c:<10} {d}"),
            (true, None) => {} // not a command (a library crate of the namespace)
        }
    }
}

/// The image's `namespaces/applications.commands`: `name<TAB>description` per command crate,
/// written by imgtool from the sources, checked against the signed manifest like any object.
fn command_table() -> Vec<(&'static str, &'static str)> {
    let modules = &nano_core::kernel::boot_state().modules;
    let Some(m) = modules.iter().find(|m| m.name == "namespaces/applications.commands") else { return Vec::new() };
    if nano_core::trust::check(m.data).is_err() {
        println!("shell: the command table is not the signed one; ignoring it");
        return Vec::new();
    }
    core::str::from_utf8(m.data).map(|t| t.lines().filter_map(|l| l.split_once('\t')).collect()).unwrap_or_default()
}

/// Runs a command crate as a task; Ctrl-C kills it. In the background (a trailing `&`) the
/// shell does not wait: the task runs on its own and its output interleaves with the prompt.
/// Public and never inlined so it is a named function in the shell's code (fault-injection
/// tests damage it to make the shell itself fault).
#[inline(never)]
pub fn run_command(words: Vec<String>, background: bool) {
    run_in(None, words, background);
}

/// `on CPU CMD [ARGS]`: CMD as a task on CPU `CPU` (where it stays), in the foreground or, with
/// a trailing `&`, in the background. `on any CMD`: on the CPU with the fewest tasks.
fn on_builtin(mut words: Vec<String>, background: bool) {
    let cpu = match words.get(1).map(String::as_str) {
        Some("any") => Some(task::least_loaded_cpu()),
        Some(w) => command::parse_u64(w).map(|c| c as usize),
        None => None,
    };
    let (Some(cpu), true) = (cpu, words.len() >= 3) else {
        println!("usage: on CPU|any CMD [ARGS]  (CPU: an index `cpus` lists; any: the CPU with the fewest tasks)");
        return;
    };
    run_on_cpu(None, cpu, words.split_off(2), background);
}

/// [`run_command`] in namespace `ns` (`None`: the applications namespace); returns whether
/// the command ran and exited with status 0.
fn run_in(ns: Option<&str>, words: Vec<String>, background: bool) -> bool {
    run_on_cpu(ns, task::current_cpu(), words, background)
}

/// [`run_in`] on CPU `cpu`.
fn run_on_cpu(ns: Option<&str>, cpu: usize, words: Vec<String>, background: bool) -> bool {
    let main = match ns.map_or_else(|| command::main_of(&words[0]), |n| command::main_in(n, &words[0])) {
        Ok(a) => a,
        Err(e) => {
            println!("shell: {e}");
            return false;
        }
    };
    let entry = command::main_at(main);
    let name = words[0].clone();
    let id = match task::spawn_on(cpu, &name, move || {
        let args: Vec<&str> = words.iter().map(String::as_str).collect();
        entry(&args)
    }) {
        Ok(id) => id,
        Err(e) => {
            println!("shell: cannot start {name}: {e}");
            return false;
        }
    };
    if background {
        task::detach(id);
        println!("[{id}] {name} runs in the background");
        return true;
    }
    while !task::has_exited(id) {
        match nano_core::serial::try_read_byte() {
            Some(0x03) => {
                let _ = task::kill(id);
                println!("^C");
                break;
            }
            // Typed ahead: the line editor reads it once the command is done.
            Some(b) => line::TYPEAHEAD.lock().push(b),
            None if nano_core::serial::input_by_interrupt() => {
                // Until it ends or a key comes (a command on another CPU: its end is seen at
                // this CPU's next tick).
                task::wait_until(|| nano_core::serial::input_waiting() || task::has_exited(id), None);
            }
            None => task::yield_now(),
        }
    }
    match task::join(id) {
        Ok(task::Exit::Returned(0)) => return true,
        Ok(task::Exit::Returned(code)) => println!("shell: {name} exited with status {code}"),
        Ok(task::Exit::Killed) => println!("shell: {name} was killed"),
        Ok(task::Exit::Faulted(why)) => println!("shell: {name} died: {why}"),
        Ok(task::Exit::Panicked(why)) => println!("shell: {name} panicked: {why}"),
        Err(e) => println!("shell: {name}: {e}"),
    }
    false
}

/// One `run --fresh` cycle: make a namespace, run the command in it, drop it; whether all
/// of that succeeded. Everything it allocates is gone when it returns (the leak check
/// measures between cycles).
fn fresh_cycle(words: &[String], talk: bool) -> bool {
    let name = format!("fresh{}", FRESH.fetch_add(1, core::sync::atomic::Ordering::Relaxed) + 1);
    // The `ns` command makes and drops it (loaded on first use, like any command).
    let ns = |verb: &str| {
        let mut w: Vec<String> = ["ns", verb, name.as_str()].iter().map(|s| String::from(*s)).collect();
        if !talk {
            w.push(String::from("--quiet"));
        }
        run_in(None, w, false)
    };
    if !ns("new") {
        return false;
    }
    if talk {
        println!("shell: running {} in the new namespace {name}", words[0]);
    }
    let ok = run_in(Some(&name), words.to_vec(), false);
    if !ns("drop") {
        println!("shell: namespace {name} stays (ns drop {name} later)");
        return false;
    }
    ok || talk
}

/// Throwaway namespaces made so far (their names: `fresh1`, `fresh2`, ...).
static FRESH: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// `run --ns NAME CMD [ARGS]`: CMD in namespace NAME (made with `ns new`).
/// `run --fresh [--cycles N] CMD [ARGS]`: CMD in a namespace made for it and dropped when it
/// exits; with `--cycles`, N times, then the peak frames and heap of the first and the last
/// cycles are compared (the leak check, `nano_core::leakcheck`).
fn run_builtin(mut words: Vec<String>, background: bool) {
    let usage = || println!("usage: run --ns NAME CMD [ARGS] | run --fresh [--cycles N] CMD [ARGS]");
    if words.len() < 3 {
        return usage();
    }
    match words[1].as_str() {
        "--ns" => {
            let ns = words[2].clone();
            if words.len() < 4 {
                return usage();
            }
            run_in(Some(&ns), words.split_off(3), background);
        }
        "--fresh" => {
            if background {
                println!(
                    "shell: run --fresh waits for its command (the namespace is dropped when it exits); use ns new and run --ns for a background job"
                );
                return;
            }
            let mut cycles = 1;
            let mut rest = words.split_off(2);
            if rest.first().is_some_and(|w| w == "--cycles") {
                match rest.get(1).and_then(|n| command::parse_u64(n)).filter(|n| *n > 0) {
                    Some(n) => cycles = n,
                    None => return usage(),
                }
                rest.drain(..2);
            }
            if rest.is_empty() {
                return usage();
            }
            let mut check = nano_core::leakcheck::LeakCheck::new(cycles);
            for i in 0..cycles {
                if !fresh_cycle(&rest, cycles == 1) {
                    if cycles > 1 {
                        println!("shell: run --fresh: cycle {} failed", i + 1);
                    }
                    return;
                }
                check.record(i, nano_core::leakcheck::usage());
            }
            if cycles > 1 {
                println!("run: {cycles} fresh namespaces made, used and dropped");
                println!("{}", check.report("run:"));
            }
        }
        _ => usage(),
    }
}

/// History handed from a replaced version of the shell to the new one (a static, so a swap
/// shares it between the two).
static HANDOVER: spin::Mutex<Option<Vec<String>>> = spin::Mutex::new(None);

/// Set once a shell ran: a later start without a handover is a restart after a fault.
static STARTED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// After a swap replaced this crate, starts the new version's shell as a task (with this one's
/// history) and tells the caller to end: the old version's code then runs nowhere and is
/// reclaimed. `false` if this is still the current version.
fn hand_over(editor: &line::Editor) -> bool {
    let me = run as fn(u64) -> isize as usize as u64;
    match nano_core::kernel::current_version("applications", "shell::run") {
        Some(cur) if cur != me => {
            *HANDOVER.lock() = Some(editor.history().to_vec());
            let entry = nano_core::kernel::restartable_entry(cur);
            match task::spawn_restartable("shell", task::Restartable { entry, arg: 0, restarts: 0 }) {
                Ok(id) => {
                    println!("shell: continuing in the new version (task {id})");
                    true
                }
                Err(e) => {
                    println!("shell: cannot start the new version ({e}); staying in this one");
                    HANDOVER.lock().take();
                    false
                }
            }
        }
        _ => false,
    }
}

/// The shell's entry point: run as a restartable task by captain, by the version it replaced,
/// or by the recovery supervisor after the shell died (the argument is unused).
pub fn run(_: u64) -> isize {
    let mut editor = line::Editor::new();
    match HANDOVER.lock().take() {
        Some(history) => editor.set_history(history),
        None if STARTED.swap(true, core::sync::atomic::Ordering::Relaxed) => println!("shell: started again"),
        None => println!("Delos shell. Type `help` for the commands."),
    }
    loop {
        if hand_over(&editor) {
            return 0;
        }
        print!("{PROMPT}");
        let Some(input) = editor.read_line(PROMPT) else { continue };
        let mut words = match parse::split(&input) {
            Ok(w) => w,
            Err(e) => {
                println!("shell: {e}");
                continue;
            }
        };
        if words.is_empty() {
            continue;
        }
        // A trailing unquoted `&` runs the command in the background.
        let background = words.len() > 1 && words.last().is_some_and(|w| w == "&") && input.trim_end().ends_with('&');
        if background {
            words.pop();
        }
        match words[0].as_str() {
            "help" => help(),
            "run" => run_builtin(words, background),
            "on" => on_builtin(words, background),
            "history" => {
                for (i, h) in editor.history().iter().enumerate() {
                    println!("{:4}  {h}", i + 1);
                }
            }
            _ => run_command(words, background),
        }
    }
}
