//! nano_core's prepared symbol table ([`mod_mgmt::symtab`]) must answer every question exactly
//! as registering the same symbols with `add_prelinked` does: lookups by raw, exact and
//! hash-agnostic name, prefix searches, addr2sym, and linking a crate against it.

mod common;

use mod_mgmt::symtab::{SymbolTable, build};
use mod_mgmt::{Loader, ObjectBytes, PrelinkedSection, PrelinkedSymbol, SectionKind};

/// Real symbol names (every global of the fixture objects), placed at made-up addresses:
/// aliases, locals, duplicates of one key and symbols outside every section included.
fn kernel_like() -> (Vec<PrelinkedSection>, Vec<PrelinkedSymbol>) {
    let objects = common::read_objects(&common::fixture_dir("fixtures"));
    let mut names: Vec<String> = Vec::new();
    for (file, bytes) in &objects {
        names.extend(mod_mgmt::elf::defined_globals(file, bytes).unwrap().into_iter().map(String::from));
    }
    names.sort();
    names.dedup();
    assert!(names.len() > 1000, "only {} fixture globals", names.len());
    let text = 0xffff_ffff_8010_0000u64;
    let sections = vec![
        PrelinkedSection { name: ".rodata".into(), addr: text + 0x80_0000, size: 0x1000, kind: SectionKind::Rodata },
        PrelinkedSection { name: ".text".into(), addr: text, size: 0x80_0000, kind: SectionKind::Text },
        PrelinkedSection { name: ".eh_frame".into(), addr: text + 0x90_0000, size: 0x100, kind: SectionKind::Rodata },
    ];
    let mut symbols = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let addr = text + 0x40 * (i as u64 / 3);
        let key = (i % 2 == 0).then(|| mod_mgmt::exact_key(n));
        symbols.push(PrelinkedSymbol { raw: n.clone(), addr, size: 0x40 - (i as u64 % 3), global: i % 11 != 5, key });
        if i % 97 == 0 {
            // The same name again, later: the first stays the definition.
            symbols.push(PrelinkedSymbol { raw: n.clone(), addr: addr + 0x20, size: 4, global: true, key: None });
        }
    }
    for (raw, addr) in [("memcpy", 0x9000u64), ("memmove", 0x9000), ("kernel_entry", 0x1000)] {
        symbols.push(PrelinkedSymbol { raw: raw.into(), addr, size: 0x30, global: true, key: None });
    }
    symbols.push(PrelinkedSymbol { raw: "a_local".into(), addr: text + 0x80_0010, size: 8, global: false, key: None });
    (sections, symbols)
}

#[test]
fn table_answers_like_add_prelinked() {
    let (sections, symbols) = kernel_like();
    let mut old = Loader::new(&mod_mgmt::host::HOST_MEMORY);
    let old_ns = old.add_namespace("kernel", None).unwrap();
    let old_id = old.add_prelinked(old_ns, "nano_core", &sections, &symbols).unwrap();
    let bytes: &'static [u8] = Vec::leak(build(&sections, &symbols));
    let mut new = Loader::new(&mod_mgmt::host::HOST_MEMORY);
    let new_ns = new.add_namespace("kernel", None).unwrap();
    let new_id = new.add_prelinked_table(new_ns, "nano_core", SymbolTable::new("nano_core", bytes).unwrap()).unwrap();

    let (a, b) = (old.krate(old_id).unwrap(), new.krate(new_id).unwrap());
    assert_eq!(a.sections.len(), b.sections.len());
    assert_eq!(a.shadowed, b.shadowed);
    assert_eq!(old.totals().symbols, new.totals().symbols);
    assert_eq!(a.eh_frame.len(), b.eh_frame.len());

    // The section a lookup answers with, by what a user sees of it.
    let sec = |l: &Loader, r: mod_mgmt::SymbolRef| {
        let s = l.section(r.section).unwrap();
        (r.addr, r.size, s.name.clone(), s.addr, r.tls)
    };
    let mut names: Vec<String> = symbols.iter().map(|s| s.raw.clone()).collect();
    names.extend(symbols.iter().map(|s| mod_mgmt::exact_key(&s.raw)));
    names.extend(symbols.iter().map(|s| mod_mgmt::agnostic_key(&s.raw)));
    names.push("not_there".into());
    let mut found = 0;
    for n in &names {
        let (x, y) = (old.lookup(old_ns, n), new.lookup(new_ns, n));
        match (x, y) {
            (Ok(x), Ok(y)) => {
                assert_eq!(sec(&old, x), sec(&new, y), "{n}");
                found += 1;
            }
            (x, y) => assert_eq!(x.map(|_| ()), y.map(|_| ()), "{n}"),
        }
    }
    assert!(found > names.len() / 2, "only {found} of {} names found", names.len());
    for prefix in ["", "core::", "alloc::", "mem", "fx_", "zzz"] {
        let x: Vec<(String, u64)> = old.search(old_ns, prefix).into_iter().map(|(_, k, r)| (k, r.addr)).collect();
        let y: Vec<(String, u64)> = new.search(new_ns, prefix).into_iter().map(|(_, k, r)| (k, r.addr)).collect();
        assert_eq!(x, y, "prefix {prefix:?}");
    }
    for s in &symbols {
        for addr in [s.addr, s.addr + 3] {
            let (x, y) = (old.addr2sym(addr), new.addr2sym(addr));
            let strip = |i: Option<mod_mgmt::AddrInfo>| i.map(|i| (i.section, i.section_offset, i.symbol, i.raw, i.symbol_offset));
            assert_eq!(strip(x), strip(y), "addr {addr:#x}");
        }
    }
}

/// A table made from crates loaded for real (core, alloc, compiler_builtins, fx_c and the host
/// functions, at their live addresses), as imgtool makes nano_core's from its ELF.
fn table_of_loaded(l: &Loader) -> SymbolTable {
    let mut sections = Vec::new();
    let mut symbols = Vec::new();
    for k in l.crates() {
        for s in &k.sections {
            let sec = l.section(*s).unwrap();
            if sec.kind.is_tls() || sec.size == 0 {
                continue;
            }
            sections.push(PrelinkedSection { name: sec.name.clone(), addr: sec.addr, size: sec.size, kind: sec.kind });
            for y in &sec.symbols {
                symbols.push(PrelinkedSymbol {
                    raw: y.raw.to_string(),
                    addr: sec.addr + y.offset,
                    size: y.size,
                    global: y.global,
                    key: None,
                });
            }
        }
    }
    SymbolTable::new("loaded", Vec::leak(build(&sections, &symbols))).unwrap()
}

#[test]
fn crates_link_and_run_against_the_table() {
    let objects = common::read_objects(&common::fixture_dir("fixtures"));
    let obj = |c: &str| objects.iter().find(|(n, _)| mod_mgmt::crate_name_of(n) == c).unwrap_or_else(|| panic!("no {c} object"));
    let mut live = Loader::new(&mod_mgmt::host::HOST_MEMORY);
    let host = mod_mgmt::host::install(&mut live).unwrap();
    let ns = live.add_namespace("main", Some(host)).unwrap();
    for c in ["compiler_builtins", "core", "alloc", "fx_c"] {
        let (f, b) = obj(c);
        live.load(ns, f, ObjectBytes::from(b.clone())).unwrap_or_else(|e| panic!("{c}: {e}"));
    }
    let table = table_of_loaded(&live);
    assert!(table.export_count() > 1000, "{} exports", table.export_count());

    // A second loader whose kernel namespace is that table, in place; fx_b and fx_a load on
    // demand into a child namespace and link against it.
    let mut l = Loader::new(&mod_mgmt::host::HOST_MEMORY);
    let kernel = l.add_namespace("kernel", None).unwrap();
    let base = l.add_prelinked_table(kernel, "nano_core", table).unwrap();
    assert!(l.krate(base).unwrap().exported.is_empty(), "the base layer copies no key");
    for i in 0..table.export_count() {
        let (key, y) = table.export(i).unwrap();
        assert_eq!(l.lookup(kernel, key).unwrap().addr, table.symbol(y as usize).unwrap().addr, "{key}");
    }
    let apps = l.add_namespace("apps", Some(kernel)).unwrap();
    for c in ["fx_b", "fx_a"] {
        let (f, b) = obj(c);
        l.add_object_file(apps, f, ObjectBytes::from(b.clone())).unwrap();
    }
    let a = l.load_from_dir(apps, &obj("fx_a").0).unwrap();
    let chain = l.lookup(apps, "fx_chain").unwrap();
    // SAFETY: fx_chain is `extern "C" fn(u64, u64) -> u64` (the fixtures' contract), loaded,
    // relocated and executable; what it calls lives in `live`, which outlives the call.
    let f: extern "C" fn(u64, u64) -> u64 = unsafe { std::mem::transmute(chain.addr as usize) };
    assert_eq!(f(5, 0), 12);
    assert!(l.crate_dependencies(a).contains(&base));
    l.unload(a).unwrap();
    drop(l);
    drop(live);
}

#[test]
fn into_a_namespace_with_symbols_the_table_is_inserted() {
    let (sections, symbols) = kernel_like();
    let table = SymbolTable::new("t", Vec::leak(build(&sections, &symbols))).unwrap();
    let (key, y) = table.export(7).unwrap();
    let mut l = Loader::new(&mod_mgmt::host::HOST_MEMORY);
    let ns = l.add_namespace("kernel", None).unwrap();
    let first = PrelinkedSymbol { raw: "first".into(), addr: 0x5000, size: 8, global: true, key: Some(key.to_string()) };
    l.add_prelinked(ns, "earlier", &[], &[first]).unwrap();
    let id = l.add_prelinked_table(ns, "nano_core", table).unwrap();
    let k = l.krate(id).unwrap();
    assert_eq!(k.exported.len(), table.export_count() - 1);
    assert_eq!(k.shadowed, table.shadowed() + 1);
    // The earlier definition stays; every other key is the table's.
    assert_eq!(l.lookup(ns, key).unwrap().addr, 0x5000);
    assert_ne!(table.symbol(y as usize).unwrap().addr, 0x5000);
    let (other, z) = table.export(8).unwrap();
    assert_eq!(l.lookup(ns, other).unwrap().addr, table.symbol(z as usize).unwrap().addr);
    // Registering it twice is refused by name.
    assert!(l.add_prelinked_table(ns, "nano_core", table).is_err());
}
