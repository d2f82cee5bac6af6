//! modtool: the host loader CLI. Loads Delos crate objects with mod_mgmt's host implementation,
//! links them, calls into them, and shows the namespace's view; builds objects with the
//! kernel's exact flags; fuzzes and benchmarks the loader.
//!
//! ```text
//! modtool load A.o B.o ... [--dir DIR] [--ns NAME [--ns-dir DIR] [--ns-load CRATE]...] [--call SYMBOL [--arg N]...]
//! modtool symbols A.o ... [--dir DIR] [--prefix P]
//! modtool deps A.o ... [--dir DIR]
//! modtool addr2sym A.o ... [--dir DIR] ADDR...
//! modtool build CRATE_DIR --out DIR [--target-dir DIR]
//! modtool fuzz [--iters N] [--seed S] [--dir DIR]
//! modtool bench [--dir DIR] [--kernel-deps DIR]
//! modtool swap A.o ... [--dir DIR] --crate NAME [--iters N]
//! ```
//! `load --ns NAME` then makes namespace NAME at run time (a child of `main`, its directory the
//! objects of `--ns-dir`), loads each `--ns-load` crate into it, and `--call` looks there: the
//! kernel's `ns new` / `run --ns` on the host.
//! `swap` loads the files, then replaces crate NAME with a fresh load of its own object N times
//! (default 3), printing each phase's time: the loader's swap on the host, for profiling.
//! Loaded code gets the symbols a kernel would give it (allocator entry points, `delos_log`,
//! panic entry points; see `mod_mgmt::host`). A panic in loaded code prints and exits with 101.

mod bench;
mod fuzz;

use mod_mgmt::{Loader, NamespaceId, ObjectBytes};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Options shared by the loading subcommands.
#[derive(Default)]
struct LoadOpts {
    files: Vec<PathBuf>,
    dir: Option<PathBuf>,
    call: Option<String>,
    args: Vec<u64>,
    prefix: Option<String>,
    addrs: Vec<u64>,
    out: Option<PathBuf>,
    iters: Option<u64>,
    seed: Option<u64>,
    kernel_deps: Option<PathBuf>,
    target_dir: Option<PathBuf>,
    krate: Option<String>,
    ns: Option<String>,
    ns_dir: Option<PathBuf>,
    ns_load: Vec<String>,
}

fn parse_num(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("not a number: {s}"))
}

fn parse_opts(args: &[String], positional_addrs: bool) -> Result<LoadOpts, String> {
    let mut o = LoadOpts::default();
    let mut it = args.iter();
    let need = |v: Option<&String>, flag: &str| v.cloned().ok_or_else(|| format!("{flag} needs a value"));
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dir" => o.dir = Some(need(it.next(), a)?.into()),
            "--call" => o.call = Some(need(it.next(), a)?),
            "--arg" => o.args.push(parse_num(&need(it.next(), a)?)?),
            "--prefix" => o.prefix = Some(need(it.next(), a)?),
            "--out" => o.out = Some(need(it.next(), a)?.into()),
            "--iters" => o.iters = Some(parse_num(&need(it.next(), a)?)?),
            "--seed" => o.seed = Some(parse_num(&need(it.next(), a)?)?),
            "--kernel-deps" => o.kernel_deps = Some(need(it.next(), a)?.into()),
            "--target-dir" => o.target_dir = Some(need(it.next(), a)?.into()),
            "--crate" => o.krate = Some(need(it.next(), a)?),
            "--ns" => o.ns = Some(need(it.next(), a)?),
            "--ns-dir" => o.ns_dir = Some(need(it.next(), a)?.into()),
            "--ns-load" => o.ns_load.push(need(it.next(), a)?),
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            s if positional_addrs && !s.ends_with(".o") => o.addrs.push(parse_num(s)?),
            s => o.files.push(s.into()),
        }
    }
    Ok(o)
}

/// Sets up host + main namespaces, the directory, and loads the files.
fn load_all(o: &LoadOpts) -> Result<(Loader, NamespaceId), String> {
    let mut loader = Loader::new(&mod_mgmt::host::HOST_MEMORY);
    let host = mod_mgmt::host::install(&mut loader).map_err(|e| e.to_string())?;
    let ns = loader.add_namespace("main", Some(host)).map_err(|e| e.to_string())?;
    if let Some(dir) = &o.dir {
        for (name, bytes) in read_dir_objects(dir)? {
            loader.add_object_file(ns, &name, bytes.into()).map_err(|e| e.to_string())?;
        }
    }
    for f in &o.files {
        let bytes = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if loader.crate_by_name(ns, mod_mgmt::crate_name_of(&name)).is_some() {
            continue; // already loaded on demand for an earlier file
        }
        loader.load(ns, &name, ObjectBytes::from(bytes)).map_err(|e| format!("loading {}: {e}", f.display()))?;
    }
    Ok((loader, ns))
}

/// Every `*.o` in `dir`, sorted by name.
fn read_dir_objects(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let p = e.map_err(|e| e.to_string())?.path();
        if p.extension().is_some_and(|x| x == "o") {
            let bytes = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            out.push((p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), bytes));
        }
    }
    out.sort();
    Ok(out)
}

fn cmd_load(o: &LoadOpts) -> Result<(), String> {
    let (mut loader, mut ns) = load_all(o)?;
    let t = loader.totals();
    eprintln!("loaded: {} crates, {} sections, {} symbols, {} dependency edges", t.crates, t.sections, t.symbols, t.dependency_edges);
    if let Some(name) = &o.ns {
        let mut dir = std::collections::BTreeMap::new();
        if let Some(d) = &o.ns_dir {
            for (f, bytes) in read_dir_objects(d)? {
                dir.insert(f, ObjectBytes::from(bytes));
            }
        }
        let child = loader.create_namespace(name, ns, dir).map_err(|e| e.to_string())?;
        for c in &o.ns_load {
            loader.load_crate_into(child, c).map_err(|e| format!("loading {c} into {name}: {e}"))?;
        }
        let names: Vec<String> = loader.crates_of(child).iter().filter_map(|c| loader.krate(*c)).map(|k| k.name.clone()).collect();
        eprintln!("namespace {name}: {} crates: {}", names.len(), names.join(" "));
        ns = child;
    }
    if let Some(sym) = &o.call {
        if o.args.len() > 6 {
            return Err("at most 6 arguments".into());
        }
        let s = loader.lookup(ns, sym).map_err(|e| e.to_string())?;
        let sec = loader.section(s.section).ok_or("symbol without a section")?;
        if sec.kind != mod_mgmt::SectionKind::Text {
            return Err(format!("{sym} is not a function (it is in {})", sec.name));
        }
        let a = |i: usize| o.args.get(i).copied().unwrap_or(0);
        // SAFETY: the symbol is in a loaded, relocated, executable section; the user asserts it
        // is an `extern "C" fn(u64, ...) -> u64`. Extra arguments are ignored by the callee.
        let f: extern "C" fn(u64, u64, u64, u64, u64, u64) -> u64 = unsafe { std::mem::transmute(s.addr as usize) };
        let r = f(a(0), a(1), a(2), a(3), a(4), a(5));
        println!("result: {r}");
    }
    Ok(())
}

fn cmd_swap(o: &LoadOpts) -> Result<(), String> {
    let krate = o.krate.as_deref().ok_or("swap needs --crate NAME")?;
    fn micros() -> u64 {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed().as_micros() as u64
    }
    let (mut loader, ns) = load_all(o)?;
    loader.set_clock(micros);
    for i in 0..o.iters.unwrap_or(3) {
        let t0 = std::time::Instant::now();
        let t = loader.swap(ns, &[mod_mgmt::swap::SwapPair { old: krate.into(), new_file: krate.into() }]).map_err(|e| e.to_string())?;
        println!(
            "swap {i}: load {} us, verify {} us, relink {} us, state {} us, cleanup {} us; with reclaim {} us",
            t.load_us,
            t.verify_us,
            t.relink_us,
            t.state_us,
            t.cleanup_us,
            t0.elapsed().as_micros()
        );
    }
    Ok(())
}

fn cmd_symbols(o: &LoadOpts) -> Result<(), String> {
    let (loader, ns) = load_all(o)?;
    for (n, key, r) in loader.search(ns, o.prefix.as_deref().unwrap_or("")) {
        let k = loader.krate(r.krate).map(|k| k.name.as_str()).unwrap_or("?");
        let nsname = loader.namespace(n).map(|x| x.name.as_str()).unwrap_or("?");
        println!("{:#018x} {:>6} {nsname}/{k} {}", r.addr, r.size, key);
    }
    Ok(())
}

fn cmd_deps(o: &LoadOpts) -> Result<(), String> {
    let (loader, _) = load_all(o)?;
    let name = |id| loader.krate(id).map(|k| k.name.clone()).unwrap_or_default();
    for k in loader.crates() {
        let uses: Vec<String> = loader.crate_dependencies(k.id).into_iter().map(name).collect();
        let by: Vec<String> = loader.crate_dependents(k.id).into_iter().map(name).collect();
        println!("{}: uses [{}]; used by [{}]", k.name, uses.join(", "), by.join(", "));
    }
    Ok(())
}

fn cmd_addr2sym(o: &LoadOpts) -> Result<(), String> {
    let (loader, _) = load_all(o)?;
    if o.addrs.is_empty() {
        return Err("no address given".into());
    }
    let mut bad = false;
    for &a in &o.addrs {
        match loader.addr2sym(a) {
            Some(i) => println!(
                "{a:#x}: {}/{} {} + {:#x} (section {} + {:#x})",
                i.namespace,
                i.krate,
                i.symbol.as_deref().unwrap_or("?"),
                i.symbol_offset,
                i.section,
                i.section_offset
            ),
            None => {
                println!("{a:#x}: not in any loaded section");
                bad = true;
            }
        }
    }
    if bad { Err("some addresses are not mapped".into()) } else { Ok(()) }
}

fn cmd_build(args: &[String]) -> Result<(), String> {
    let o = parse_opts(args, false)?;
    let [dir] = o.files.as_slice() else { return Err("usage: modtool build CRATE_DIR --out DIR".into()) };
    let out = o.out.ok_or("--out DIR is required")?;
    let dir = dir.canonicalize().map_err(|e| format!("{}: {e}", dir.display()))?;
    let manifest = dir.join("Cargo.toml");
    // Each package gets its own target dir (unless told otherwise), so users' builds never
    // invalidate the kernel's; crates of one workspace can share one with --target-dir.
    let target_dir =
        o.target_dir.unwrap_or_else(|| objbuild::repo_root().join("target/modtool-build").join(dir.file_name().unwrap_or_default()));
    let built = objbuild::build(&objbuild::BuildSpec { manifest, packages: vec![], target_dir, target_json: objbuild::target_json() })
        .map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    for old in std::fs::read_dir(&out).map_err(|e| e.to_string())?.flatten() {
        if old.path().extension().is_some_and(|x| x == "o") {
            let _ = std::fs::remove_file(old.path());
        }
    }
    for o in built.objects.values() {
        std::fs::copy(&o.path, out.join(o.file_name())).map_err(|e| format!("{}: {e}", o.path.display()))?;
    }
    eprintln!("modtool: {} objects in {}", built.objects.len(), out.display());
    Ok(())
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else { return Err(usage()) };
    let rest = &args[1..];
    match cmd.as_str() {
        "load" => cmd_load(&parse_opts(rest, false)?),
        "symbols" => cmd_symbols(&parse_opts(rest, false)?),
        "deps" => cmd_deps(&parse_opts(rest, false)?),
        "addr2sym" => cmd_addr2sym(&parse_opts(rest, true)?),
        "build" => cmd_build(rest),
        "fuzz" => fuzz::run(&parse_opts(rest, false)?),
        "bench" => bench::run(&parse_opts(rest, false)?),
        "swap" => cmd_swap(&parse_opts(rest, false)?),
        _ => Err(usage()),
    }
}

fn usage() -> String {
    "usage: modtool load|symbols|deps|addr2sym FILES... [--dir DIR] [--call SYM [--arg N]...] [--prefix P] [ADDR...]\n       modtool build CRATE_DIR --out DIR\n       modtool fuzz [--iters N] [--seed S] [--dir DIR]\n       modtool bench [--dir DIR] [--kernel-deps DIR]".into()
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("modtool: error: {e}");
            ExitCode::FAILURE
        }
    }
}
