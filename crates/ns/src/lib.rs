//! `ns [-v] [-n]`: namespaces as a tree, their crates with memory sizes and symbol counts, and
//! the retired versions a swap left (what still holds each); `-v` adds sections, `-n` prints
//! only the live crate names (one line per namespace, for scripts).
//!
//! `ns new NAME [--parent P] [--dir D] [--file F]...` makes a namespace at run time, a child of
//! P (default `applications`), whose directory holds the files of D (`NS` for namespace NS's
//! directory, `NS/updates` for its updates, pushed objects included) and each file F (found
//! in P's chain, updates first). Crates loaded into it are its own; its directory's versions
//! shadow its parents'. `ns drop NAME` unloads everything it loaded — refused, with the
//! reason, while a task runs in it or another namespace uses it. `run --ns NAME CMD` (a shell
//! builtin) runs a command inside one.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// One line for `help`.
pub static DESCRIPTION: &str = "namespaces as a tree, crates, retired versions (-v: sections, -n: names only) | new NAME [--parent P] [--dir NS|NS/updates] [--file F]... | drop NAME";

/// Where a new namespace's directory comes from.
enum Source<'a> {
    /// Every file of namespace NS's directory, or of its updates.
    Dir { ns: &'a str, updates: bool },
    /// One file, found in the parent's chain (updates first, then the directory).
    File(&'a str),
}

/// Creates namespace `name`, a child of `parent`, with the files `sources` name.
pub fn create(name: &str, parent: &str, sources: &[&str], files: &[&str]) -> Result<String, String> {
    let mut src: Vec<Source<'_>> = Vec::new();
    for d in sources {
        match d.split_once('/') {
            Some((ns, "updates")) => src.push(Source::Dir { ns, updates: true }),
            None => src.push(Source::Dir { ns: d, updates: false }),
            Some(_) => return Err(format!("--dir {d}: say NS (a namespace's directory) or NS/updates")),
        }
    }
    src.extend(files.iter().map(|f| Source::File(f)));
    nano_core::kernel::with_loader_mut(|l| {
        let p = l.namespace_by_name(parent).map_err(|e| format!("{e}"))?;
        let mut dir = BTreeMap::new();
        for s in &src {
            match s {
                Source::Dir { ns, updates } => {
                    let id = l.namespace_by_name(ns).map_err(|e| format!("--dir {ns}{}: {e}", if *updates { "/updates" } else { "" }))?;
                    let n = l.namespace(id).ok_or("namespace vanished")?;
                    let names: Vec<String> = if *updates {
                        n.update_files().map(|(f, _)| f.clone()).collect()
                    } else {
                        n.files().map(|(f, _)| f.clone()).collect()
                    };
                    for f in names {
                        if let Some(b) = n.file_bytes(&f) {
                            dir.insert(f, b);
                        }
                    }
                }
                Source::File(f) => {
                    let Some((_, b)) = l.nearest_object(p, |name| name == *f) else {
                        return Err(format!("--file {f}: no such object file in namespace {parent} or its parents"));
                    };
                    dir.insert(String::from(*f), b);
                }
            }
        }
        let files = dir.len();
        l.create_namespace(name, p, dir).map_err(|e| format!("{e}"))?;
        Ok(format!("ns: namespace {name} created (parent {parent}, {files} object files)"))
    })
}

/// Drops namespace `name` (see [`mod_mgmt::Loader::drop_namespace`]), first reclaiming retired
/// versions of its crates if a swap inside it left any and calling their `before_unload`;
/// refused, changing nothing, for the loader's reasons or while a task runs in it.
pub fn drop_namespace(name: &str) -> Result<String, String> {
    let has_retired = nano_core::kernel::with_loader_ref(|l| {
        let id = l.namespace_by_name(name).map_err(|e| format!("{e}"))?;
        Ok::<bool, String>(l.crates_of(id).iter().filter_map(|c| l.krate(*c)).any(|k| k.is_retired()))
    })?;
    if has_retired {
        crate_swap::reclaim();
    }
    // Everything that could refuse the drop is checked before anything changes.
    let id = nano_core::kernel::with_loader_ref(|l| {
        let id = l.namespace_by_name(name).map_err(|e| format!("{e}"))?;
        l.check_drop(id).map_err(|e| format!("{e}"))?;
        task_inside(l, id).map_or(Ok(id), |why| Err(format!("namespace {name} cannot be dropped: {why}")))
    })?;
    // Crates whose statics own heap memory (caches) let go of it: unloading frees a crate's own
    // memory, not what its statics point to.
    nano_core::kernel::call_crate_hooks("before_unload", &|k| k.namespace == id);
    nano_core::kernel::with_loader_mut(|l| {
        // Checked again: the hooks ran with the loader released.
        if let Some(why) = task_inside(l, id) {
            return Err(format!("namespace {name} cannot be dropped: {why}"));
        }
        let d = l.drop_namespace(id).map_err(|e| format!("{e}"))?;
        Ok(format!(
            "ns: namespace {name} dropped: {} crates unloaded ({} bytes){}{}",
            d.crates.len(),
            d.bytes,
            if d.crates.is_empty() { "" } else { ": " },
            d.crates.join(" ")
        ))
    })
}

/// The first task (other than this one) running in namespace `id`: a return address into the
/// namespace's code on its stack. Function entries (a task's restart entry left in a
/// supervisor's frame) and data pointers are not counted: stacks hold stale words, and those
/// would refuse a drop that is safe. Call with the loader held (interrupts off).
fn task_inside(l: &mod_mgmt::Loader, id: mod_mgmt::NamespaceId) -> Option<String> {
    let ranges: Vec<(u64, u64)> = l
        .crates_of(id)
        .iter()
        .filter_map(|c| l.krate(*c))
        .flat_map(|k| k.regions().filter(|r| r.2 == mod_mgmt::Perms::ReadExec).map(|r| (r.0, r.0 + r.1 as u64)).collect::<Vec<_>>())
        .collect();
    let me = task::current();
    let mut running = None;
    task::for_each_stack_word(&mut |tid, tname, w| {
        if running.is_none()
            && tid != me
            && ranges.iter().any(|&(s, e)| *w >= s && *w < e)
            && !l.symbol_at(*w).is_some_and(|(_, _, sym)| sym.is_some_and(|(_, off)| off == 0))
        {
            running = Some(format!("task {tid} ({tname}) runs in it"));
        }
    });
    running
}

fn usage() -> isize {
    nano_core::println!(
        "usage: ns [-v|-n] | ns new NAME [--parent P] [--dir NS|NS/updates] [--file F]... [--quiet] | ns drop NAME [--quiet]"
    );
    2
}

/// `ns new ...` and `ns drop ...`.
fn manage(args: &[&str]) -> isize {
    // `--quiet` (last): say nothing on success (the shell's `run --fresh --cycles`).
    let (args, quiet) = match args.split_last() {
        Some((&"--quiet", rest)) => (rest, true),
        _ => (args, false),
    };
    let result = match args {
        ["drop", name] => drop_namespace(name),
        ["new", name, rest @ ..] => {
            let (mut parent, mut dirs, mut files) = ("applications", Vec::new(), Vec::new());
            let mut it = rest.iter();
            while let Some(a) = it.next() {
                match (*a, it.next()) {
                    ("--parent", Some(p)) => parent = p,
                    ("--dir", Some(d)) => dirs.push(*d),
                    ("--file", Some(f)) => files.push(*f),
                    _ => return usage(),
                }
            }
            create(name, parent, &dirs, &files)
        }
        _ => return usage(),
    };
    match result {
        Ok(msg) => {
            if !quiet {
                nano_core::println!("{msg}");
            }
            0
        }
        Err(e) => {
            nano_core::println!("ns: {e}");
            1
        }
    }
}

/// Entry point.
pub fn main(args: &[&str]) -> isize {
    if matches!(args.get(1), Some(&"new" | &"drop")) {
        return manage(&args[1..]);
    }
    if let Some(bad) = args[1..].iter().find(|a| !matches!(**a, "-v" | "-n")) {
        nano_core::println!("ns: unknown argument {bad}");
        return usage();
    }
    let verbose = args.contains(&"-v");
    let names_only = args.contains(&"-n");
    // Collected under the loader, printed after it is released.
    let lines: Vec<String> = nano_core::kernel::with_loader_ref(|l| {
        let mut out = Vec::new();
        // Depth-first from the roots: a child follows its parent, indented under it.
        let mut order = Vec::new();
        let mut stack: Vec<(mod_mgmt::NamespaceId, usize)> = l.namespaces().filter(|n| n.parent.is_none()).map(|n| (n.id, 0)).collect();
        stack.reverse();
        while let Some((id, depth)) = stack.pop() {
            order.push((id, depth));
            let mut kids: Vec<_> = l.children_of(id).into_iter().map(|c| (c, depth + 1)).collect();
            kids.reverse();
            stack.extend(kids);
        }
        for (id, depth) in order {
            let Some(n) = l.namespace(id) else { continue };
            let pad = "  ".repeat(depth);
            if names_only {
                let names: Vec<&str> = n.crates.keys().map(String::as_str).collect();
                out.push(format!("crates of {}: {}", n.name, names.join(" ")));
                continue;
            }
            let parent = n.parent.and_then(|p| l.namespace(p)).map(|p| p.name.as_str()).unwrap_or("-");
            out.push(format!(
                "{pad}namespace {} (parent {parent}{}): {} crates, {} symbols, {} object files",
                n.name,
                if n.private { ", made at run time" } else { "" },
                n.crates.len(),
                n.symbols.len(),
                n.files().count()
            ));
            for id in n.crates.values() {
                let Some(k) = l.krate(*id) else { continue };
                out.push(format!(
                    "{pad}  {:<20} {:>8} bytes {:>5} sections {:>5} exported {:>6} relocations{}",
                    k.name,
                    k.memory_size(),
                    k.sections.len(),
                    k.exported.len(),
                    k.relocations,
                    if k.prelinked { "  (prelinked)" } else { "" }
                ));
                if verbose {
                    for (addr, size, perms) in k.regions() {
                        out.push(format!("{pad}      region {addr:#x} +{size:#x} {perms}"));
                    }
                    for s in &k.sections {
                        if let Some(sec) = l.section(*s) {
                            out.push(format!("{pad}      {:#018x} {:>8} {:?} {}", sec.addr, sec.size, sec.kind, sec.name));
                        }
                    }
                }
            }
        }
        out
    });
    for line in &lines {
        nano_core::println!("{line}");
    }
    if names_only {
        return 0;
    }
    let held = crate_swap::holders();
    if held.kept.is_empty() && held.freed.is_empty() {
        nano_core::println!("retired versions: none");
    } else {
        nano_core::println!("retired versions (replaced by a swap, kept while anything refers to them):");
        for h in &held.kept {
            nano_core::println!("  {:<20} {:>8} bytes  crate#{}, held by {}", h.name, h.bytes, h.id, h.holder);
        }
        for (name, bytes) in &held.freed {
            nano_core::println!("  {name:<20} {bytes:>8} bytes  unreferenced: the reaper frees it");
        }
    }
    0
}
