//! `modtool bench`: loader benchmarks, each reported as a ratio against a baseline measured in
//! the same run (these machines are shared and noisy).
//!
//! 1. Load+link time per crate and relocations per second, for the fixtures and for the large
//!    real objects (core, alloc, compiler_builtins).
//! 2. Loading fx_a+fx_b+fx_c with mod_mgmt vs `dlopen(RTLD_NOW)` of the same code built as a
//!    host cdylib (`mod_mgmt/tests/fixtures/fx_dylib`).
//! 3. Address lookups (`addr2sym`'s index) at 1k/10k/100k symbols vs a linear scan.
//!
//! Also prints the relocation types found in the objects.

use super::LoadOpts;
use mod_mgmt::{Loader, ObjectBytes, PrelinkedSection, PrelinkedSymbol, SectionKind};
use std::collections::BTreeMap;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn base_loader(objects: &[(String, Vec<u8>)], preload: &[&str]) -> Result<(Loader, mod_mgmt::NamespaceId), String> {
    let mut l = Loader::new(&mod_mgmt::host::HOST_MEMORY);
    let host = mod_mgmt::host::install(&mut l).map_err(|e| e.to_string())?;
    let ns = l.add_namespace("bench", Some(host)).map_err(|e| e.to_string())?;
    for c in preload {
        let (f, b) = find(objects, c)?;
        l.load(ns, f, ObjectBytes::from(b.clone())).map_err(|e| format!("{c}: {e}"))?;
    }
    Ok((l, ns))
}

fn find<'a>(objects: &'a [(String, Vec<u8>)], c: &str) -> Result<(&'a String, &'a Vec<u8>), String> {
    objects.iter().find(|(n, _)| mod_mgmt::crate_name_of(n) == c).map(|(n, b)| (n, b)).ok_or(format!("no object for {c}"))
}

fn reloc_types(objects: &[(String, Vec<u8>)]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for (name, bytes) in objects {
        if let Ok(obj) = mod_mgmt::elf::parse(name, bytes) {
            for (t, rels) in obj.relocs.iter().enumerate() {
                if obj.sections[t].kind.is_none() {
                    continue;
                }
                for r in rels {
                    *m.entry(mod_mgmt::reloc::type_name(r.r_type)).or_default() += 1;
                }
            }
        }
    }
    m
}

fn bench_load(objects: &[(String, Vec<u8>)]) -> Result<(), String> {
    println!("== load+link per crate (median of rounds; dependencies preloaded)");
    println!("{:<20} {:>10} {:>8} {:>12} {:>14}", "crate", "KiB", "relocs", "us/load", "relocs/s");
    let order = ["compiler_builtins", "core", "alloc", "fx_c", "fx_b", "fx_a"];
    for (i, c) in order.iter().enumerate() {
        let (l, ns) = base_loader(objects, &order[..i])?;
        let (f, b) = find(objects, c)?;
        let mut l = l;
        let rounds = if b.len() > 100_000 { 15 } else { 200 };
        let mut times = Vec::new();
        let mut relocs = 0;
        let input = ObjectBytes::from(b.clone());
        for _ in 0..rounds {
            let bytes = input.clone();
            let t = Instant::now();
            let id = l.load(ns, f, bytes).map_err(|e| format!("{c}: {e}"))?;
            times.push(t.elapsed().as_secs_f64());
            relocs = l.krate(id).map_or(0, |k| k.relocations);
            l.unload(id).map_err(|e| e.to_string())?;
        }
        let m = median(times);
        println!("{:<20} {:>10} {:>8} {:>12.1} {:>14.0}", c, b.len() / 1024, relocs, m * 1e6, relocs as f64 / m);
    }
    Ok(())
}

fn bench_dlopen(objects: &[(String, Vec<u8>)], dylib: &std::path::Path) -> Result<(), String> {
    println!("== mod_mgmt (fx_c+fx_b+fx_a objects) vs dlopen(RTLD_NOW) of the same code as a cdylib");
    if !dylib.exists() {
        println!("   skipped: {} not built (tools/bench.sh builds it)", dylib.display());
        return Ok(());
    }
    let (mut l, ns) = base_loader(objects, &["compiler_builtins", "core", "alloc"])?;
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(200);
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let path = std::ffi::CString::new(dylib.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?;
    // The kernel's objects are already in memory (boot modules); so are these.
    let mut inputs = Vec::new();
    for c in ["fx_c", "fx_b", "fx_a"] {
        let (f, b) = find(objects, c)?;
        inputs.push((f.clone(), ObjectBytes::from(b.clone())));
    }
    for _ in 0..rounds {
        let t = Instant::now();
        let mut ids = Vec::new();
        for (f, b) in &inputs {
            ids.push(l.load(ns, f, b.clone()).map_err(|e| e.to_string())?);
        }
        let s = l.lookup(ns, "fx_chain").map_err(|e| e.to_string())?;
        ours.push(t.elapsed().as_secs_f64());
        // SAFETY: fx_chain is `extern "C" fn(u64) -> u64` in a loaded, executable section.
        let f: extern "C" fn(u64) -> u64 = unsafe { std::mem::transmute(s.addr as usize) };
        assert_eq!(f(5), 12);
        for id in ids.into_iter().rev() {
            l.unload(id).map_err(|e| e.to_string())?;
        }
        let t = Instant::now();
        // SAFETY: loading our own fixture library; RTLD_NOW resolves everything up front, as
        // mod_mgmt does.
        let h = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if h.is_null() {
            return Err("dlopen failed".into());
        }
        // SAFETY: h is a live handle; the name is NUL-terminated.
        let sym = unsafe { libc::dlsym(h, c"fx_chain".as_ptr()) };
        theirs.push(t.elapsed().as_secs_f64());
        if sym.is_null() {
            return Err("dlsym fx_chain failed".into());
        }
        // SAFETY: as above for the cdylib's copy.
        let f: extern "C" fn(u64) -> u64 = unsafe { std::mem::transmute(sym) };
        assert_eq!(f(5), 12);
        // SAFETY: no pointers into the library outlive this iteration.
        unsafe { libc::dlclose(h) };
    }
    let (a, b) = (median(ours), median(theirs));
    println!("   mod_mgmt {:.1} us, dlopen {:.1} us, ratio {:.2}x (goal <= 1.0x)", a * 1e6, b * 1e6, a / b);
    Ok(())
}

/// nano_core's symbol import, on the host: the text file parsed and registered key by key (how
/// the boot did it until 2026-12-06) against the table imgtool writes into the kernel, opened
/// and registered in place (how it does now); then every export looked up in each.
fn bench_symfile(path: &std::path::Path) -> Result<(), String> {
    println!("== nano_core symbol import (host; the boot's step): {}", path.display());
    let Ok(bytes) = std::fs::read(path) else {
        println!("   skipped: no image built");
        return Ok(());
    };
    let text = std::str::from_utf8(&bytes).map_err(|e| e.to_string())?;
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(30);
    let (sections, symbols) = mod_mgmt::symfile::parse(text).map_err(|e| e.to_string())?;
    let table_bytes: &'static [u8] = Vec::leak(mod_mgmt::symtab::build(&sections, &symbols));
    let (mut from_text, mut from_table) = (Vec::new(), Vec::new());
    let mut loaders = None;
    for _ in 0..rounds {
        // Interleaved: one of each per round.
        let t = Instant::now();
        let (sections, symbols) = mod_mgmt::symfile::parse(text).map_err(|e| e.to_string())?;
        let mut a = Loader::new(&mod_mgmt::host::HOST_MEMORY);
        let ans = a.add_namespace("kernel", None).map_err(|e| e.to_string())?;
        a.add_prelinked(ans, "nano_core", &sections, &symbols).map_err(|e| e.to_string())?;
        from_text.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let table = mod_mgmt::symtab::SymbolTable::new("nano_core", table_bytes).map_err(|e| e.to_string())?;
        let mut b = Loader::new(&mod_mgmt::host::HOST_MEMORY);
        let bns = b.add_namespace("kernel", None).map_err(|e| e.to_string())?;
        b.add_prelinked_table(bns, "nano_core", table).map_err(|e| e.to_string())?;
        from_table.push(t.elapsed().as_secs_f64());
        loaders = Some((a, ans, b, bns, table));
    }
    let (a, ans, b, bns, table) = loaders.ok_or("BENCH_ROUNDS is 0")?;
    let (x, y) = (median(from_text), median(from_table));
    println!(
        "   {} symbols: text file parsed and registered {:.0} us, table in place {:.0} us ({:.1}x faster; medians of {rounds})",
        symbols.len(),
        x * 1e6,
        y * 1e6,
        x / y
    );
    let keys: Vec<&str> = (0..table.export_count()).filter_map(|i| table.export(i).map(|(k, _)| k)).collect();
    let (mut tree, mut in_place) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let found = keys.iter().filter(|k| a.namespace(ans).is_some_and(|n| n.symbols.get_exact(k).is_some())).count();
        tree.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let found2 = keys.iter().filter(|k| b.namespace(bns).is_some_and(|n| n.symbols.get_exact(k).is_some())).count();
        in_place.push(t.elapsed().as_secs_f64());
        if found != keys.len() || found2 != keys.len() {
            return Err(format!("lookups found {found} and {found2} of {} exports", keys.len()));
        }
    }
    let n = keys.len() as f64;
    println!(
        "   lookup of each of {} exports by exact key: tree {:.0} ns, table {:.0} ns (medians of {rounds})",
        keys.len(),
        median(tree) / n * 1e9,
        median(in_place) / n * 1e9
    );
    Ok(())
}

fn bench_index() -> Result<(), String> {
    println!("== address lookup: index (sorted array, binary search) vs linear scan");
    for n in [1_000usize, 10_000, 100_000] {
        let mut l = Loader::new(&mod_mgmt::host::HOST_MEMORY);
        let ns = l.add_namespace("idx", None).map_err(|e| e.to_string())?;
        let mut sections = Vec::new();
        let mut syms = Vec::new();
        let mut ranges = Vec::new();
        let mut addr = 0x1000_0000u64;
        let mut seed = 12345u64;
        for i in 0..n {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let size = 16 + (seed >> 40) % 512;
            sections.push(PrelinkedSection { name: format!(".text.f{i}"), addr, size, kind: SectionKind::Text });
            syms.push(PrelinkedSymbol { raw: format!("f{i}"), addr, size, global: true, key: None });
            ranges.push((addr, addr + size));
            addr += size + (seed >> 50) % 64;
        }
        l.add_prelinked(ns, "synthetic", &sections, &syms).map_err(|e| e.to_string())?;
        let probes: Vec<u64> = (0..200_000u64).map(|i| ranges[(i.wrapping_mul(2654435761) % n as u64) as usize].0 + 3).collect();
        let t = Instant::now();
        let mut hits = 0usize;
        for &p in &probes {
            hits += l.locate(p).map_or(0, |(_, o)| o as usize);
        }
        let ix = t.elapsed().as_secs_f64() / probes.len() as f64;
        let t = Instant::now();
        for &p in &probes {
            hits += l.symbol_at(p).and_then(|(_, _, s)| s).map_or(0, |(_, o)| o as usize);
        }
        let with_sym = t.elapsed().as_secs_f64() / probes.len() as f64;
        hits -= 3 * probes.len();
        let t = Instant::now();
        for &p in &probes[..20_000] {
            hits += l.addr2sym(p).map_or(0, |i| i.symbol_offset as usize);
        }
        let named = t.elapsed().as_secs_f64() / 20_000.0;
        hits -= 3 * 20_000;
        let lin_probes = &probes[..(2_000_000 / n).clamp(200, probes.len())];
        let t = Instant::now();
        let mut lin_hits = 0usize;
        for &p in lin_probes {
            lin_hits += ranges.iter().position(|&(s, e)| p >= s && p < e).map_or(0, |_| 3);
        }
        let lin = t.elapsed().as_secs_f64() / lin_probes.len() as f64;
        assert_eq!(hits, 3 * probes.len());
        assert_eq!(lin_hits, 3 * lin_probes.len());
        println!(
            "   {:>7} symbols: index {:>6.1} ns/lookup ({:>5.1} M/s), linear scan {:>9.1} ns/lookup, speedup {:>7.1}x; +symbol {:>5.0} ns; addr2sym with demangled name {:>6.0} ns",
            n,
            ix * 1e9,
            1e-6 / ix,
            lin * 1e9,
            lin / ix,
            with_sym * 1e9,
            named * 1e9
        );
    }
    Ok(())
}

pub fn run(o: &LoadOpts) -> Result<(), String> {
    let dir = o.dir.clone().unwrap_or_else(|| objbuild::repo_root().join("target/fixtures"));
    let objects = super::read_dir_objects(&dir)?;
    println!("== relocation types in the objects of {}", dir.display());
    for (t, n) in reloc_types(&objects) {
        println!("   {t}: {n}");
    }
    if let Some(k) = &o.kernel_deps {
        let kobjs: Vec<_> = super::read_dir_objects(k)?.into_iter().filter(|(n, _)| !n.starts_with("nano_core")).collect();
        println!("== relocation types in the kernel build's library objects ({} objects)", kobjs.len());
        for (t, n) in reloc_types(&kobjs) {
            println!("   {t}: {n}");
        }
    }
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "load" {
        bench_load(&objects)?;
    }
    if only.is_empty() || only == "dlopen" {
        bench_dlopen(&objects, &objbuild::repo_root().join("target/fx_dylib/release/libfx_dylib.so"))?;
    }
    if only.is_empty() || only == "symfile" {
        bench_symfile(&objbuild::repo_root().join("target/image/nano_core.syms"))?;
    }
    if only.is_empty() || only == "index" {
        bench_index()?;
    }
    Ok(())
}
