//! Host tests on real objects: the fixture crates (mod_mgmt/tests/fixtures) and core, alloc and
//! compiler_builtins, all built by `modtool build` with the kernel's exact flags and target.
//! `tools/fixtures.sh` (run by `make test`) builds them into target/fixtures first.

use mod_mgmt::{CrateId, LoadError, Loader, NamespaceId, ObjectBytes, Perms, SectionKind};
use std::path::PathBuf;

fn fixtures_dir() -> PathBuf {
    let dir = std::env::var_os("DELOS_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/fixtures"));
    assert!(dir.is_dir(), "fixture objects missing in {}: run tools/fixtures.sh (make test does)", dir.display());
    dir
}

mod common;

fn objects() -> Vec<(String, Vec<u8>)> {
    let v = common::read_objects(&fixtures_dir());
    assert!(v.len() >= 6, "expected fx_a, fx_b, fx_c, core, alloc, compiler_builtins objects");
    v
}

fn obj(name: &str) -> (String, Vec<u8>) {
    objects().into_iter().find(|(f, _)| mod_mgmt::crate_name_of(f) == name).unwrap_or_else(|| panic!("no object for crate {name}"))
}

/// host ← main, with `dir_crates` in main's directory.
fn setup(dir_crates: &[&str]) -> (Loader, NamespaceId) {
    let mut l = Loader::new(&mod_mgmt::host::HOST_MEMORY);
    let host = mod_mgmt::host::install(&mut l).unwrap();
    let ns = l.add_namespace("main", Some(host)).unwrap();
    for (f, b) in objects() {
        if dir_crates.contains(&mod_mgmt::crate_name_of(&f)) {
            l.add_object_file(ns, &f, b.into()).unwrap();
        }
    }
    (l, ns)
}

const ALL: &[&str] = &["fx_a", "fx_b", "fx_c", "core", "alloc", "compiler_builtins"];

fn call(l: &Loader, ns: NamespaceId, sym: &str, a: u64, b: u64) -> u64 {
    let s = l.lookup(ns, sym).unwrap();
    assert_eq!(l.section(s.section).unwrap().kind, SectionKind::Text);
    // SAFETY: the fixtures' entry points are `extern "C" fn(u64, u64) -> u64` or take fewer
    // arguments; the section is loaded, relocated and executable.
    let f: extern "C" fn(u64, u64) -> u64 = unsafe { std::mem::transmute(s.addr as usize) };
    f(a, b)
}

fn load_a(dir: &[&str]) -> (Loader, NamespaceId, CrateId) {
    let (mut l, ns) = setup(dir);
    let (f, b) = obj("fx_a");
    let id = l.load(ns, &f, b.into()).unwrap();
    (l, ns, id)
}

fn crate_names(l: &Loader) -> Vec<String> {
    let mut v: Vec<String> = l.crates().map(|k| k.name.clone()).collect();
    v.sort();
    v
}

fn id_of(l: &Loader, ns: NamespaceId, name: &str) -> CrateId {
    l.crate_by_name(ns, name).unwrap_or_else(|| panic!("{name} not loaded"))
}

#[test]
fn chain_of_three_crates_and_dependency_edges() {
    let (l, ns, a) = load_a(ALL);
    assert_eq!(call(&l, ns, "fx_chain", 5, 0), 12);
    let (b, c) = (id_of(&l, ns, "fx_b"), id_of(&l, ns, "fx_c"));
    assert!(l.crate_dependencies(a).contains(&b));
    assert!(l.crate_dependencies(b).contains(&c));
    assert!(l.crate_dependents(c).contains(&b));
    assert!(l.crate_dependents(c).contains(&a));
    assert!(l.crate_dependents(a).is_empty());
    // A section-level edge: fx_a's fx_chain section uses fx_b's chain section.
    let s = l.lookup(ns, "fx_chain").unwrap().section;
    let used: Vec<String> = l.section_dependencies(s).iter().map(|d| l.section(*d).unwrap().name.clone()).collect();
    assert!(used.iter().any(|n| mod_mgmt::agnostic_key(n.trim_start_matches(".ltext.")) == "fx_b::chain"), "{used:?}");
}

#[test]
fn explicit_load_in_dependency_order_without_directory() {
    let (mut l, ns) = setup(&[]);
    for name in ["compiler_builtins", "core", "alloc", "fx_c", "fx_b", "fx_a"] {
        let (f, b) = obj(name);
        l.load(ns, &f, b.into()).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert_eq!(call(&l, ns, "fx_chain", 1, 0), 4);
}

#[test]
fn load_on_demand_pulls_in_everything_needed() {
    let (l, ns, _) = load_a(ALL);
    assert_eq!(crate_names(&l), ["alloc", "compiler_builtins", "core", "fx_a", "fx_b", "fx_c", "host"]);
    assert!(l.last_load_stats().crates >= 6);
    assert!(l.last_load_stats().relocations > 1000);
    let _ = ns;
}

/// Each crate's load is split into phases that add up to its own time: with a clock that
/// advances 10 µs per reading, every phase took at least one step, and the crates loaded on
/// demand while fx_a resolved count for themselves, not in fx_a's `resolve_us`.
#[test]
fn load_phases_add_up_to_the_crates_own_time() {
    static NOW: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    const STEP: u64 = 10;
    let (mut l, ns) = setup(ALL);
    l.set_clock(|| NOW.fetch_add(STEP, std::sync::atomic::Ordering::Relaxed));
    let (f, b) = obj("fx_a");
    let a = l.load(ns, &f, b.into()).unwrap();
    for k in l.crates().filter(|k| !k.prelinked) {
        let p = k.phases;
        let phases = [p.check_us, p.parse_us, p.place_us, p.register_us, p.resolve_us, p.relocate_us];
        let sum: u64 = phases.iter().sum();
        assert!(phases.iter().all(|&us| us >= STEP), "{}: a phase without a clock step: {p:?}", k.name);
        // load_us also spans the two readings around the phases.
        assert!(sum <= k.load_us && k.load_us - sum <= 2 * STEP, "{}: phases {p:?} sum {sum}, load_us {}", k.name, k.load_us);
    }
    let on_demand: u64 = l.crates().filter(|k| !k.prelinked && k.id != a).map(|k| k.load_us).sum();
    assert!(on_demand > 0);
    assert!(l.krate(a).unwrap().phases.resolve_us < on_demand, "fx_a's resolve counted the crates it loaded");
}

/// The same loads with the directory's index prepared as imgtool prepares it (hashes, used in
/// place): the same crates come in, and the index must list exactly the directory's files.
#[test]
fn load_on_demand_with_a_prebuilt_index() {
    let (mut l, ns) = setup(ALL);
    let mut dir: Vec<(String, Vec<u8>)> = objects().into_iter().filter(|(f, _)| ALL.contains(&mod_mgmt::crate_name_of(f))).collect();
    dir.sort();
    let index = mod_mgmt::dirindex::build(dir.iter().map(|(f, b)| (f.as_str(), mod_mgmt::elf::defined_globals(f, b).unwrap_or_default())));
    let n = l.set_dir_index(ns, "dirindex/main", index.clone().into()).unwrap();
    assert!(n > 100, "{n} globals indexed");
    let (f, b) = obj("fx_a");
    l.load(ns, &f, b.into()).unwrap();
    assert_eq!(crate_names(&l), ["alloc", "compiler_builtins", "core", "fx_a", "fx_b", "fx_c", "host"]);
    assert_eq!(call(&l, ns, "fx_chain", 1, 0), 4);

    // An index of another directory is refused, naming the file it lists and the directory lacks.
    let (mut l2, ns2) = setup(&["fx_b"]);
    let e = l2.set_dir_index(ns2, "dirindex/main", index.into()).unwrap_err().to_string();
    assert!(e.contains("dirindex/main") && e.contains("not in the directory"), "{e}");
    assert!(l2.set_dir_index(ns2, "dirindex/main", b"DLIX".to_vec().into()).is_err());
}

#[test]
fn generics_monomorphized_across_crates() {
    let (l, ns, a) = load_a(ALL);
    assert_eq!(call(&l, ns, "fx_generic", 10, 0), 55 + 6);
    // The instantiations live in fx_a, not in fx_c which defines the generic.
    let k = l.krate(a).unwrap();
    let names: Vec<String> =
        k.sections.iter().map(|s| l.section(*s).unwrap()).flat_map(|s| s.symbols.iter().map(|y| mod_mgmt::agnostic_key(&y.raw))).collect();
    assert!(names.iter().any(|n| n.starts_with("fx_c::sum_generic::<u32>")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("fx_c::sum_generic::<u8>")));
}

#[test]
fn trait_objects_with_vtables_in_other_crates() {
    let (l, ns, _) = load_a(ALL);
    assert_eq!(call(&l, ns, "fx_dyn_area", 3, 0), 9 + 27);
}

#[test]
fn statics_keep_state_between_calls() {
    let (l, ns, _) = load_a(ALL);
    assert_eq!(call(&l, ns, "fx_counter", 0, 0), 101);
    assert_eq!(call(&l, ns, "fx_counter", 0, 0), 102);
    assert_eq!(call(&l, ns, "fx_chain", 0, 0), 2); // bumps too
    assert_eq!(call(&l, ns, "fx_counter", 0, 0), 104);
    assert_eq!(call(&l, ns, "fx_bss", 3, 9), 9);
    assert_eq!(call(&l, ns, "fx_bss", 4, 1), 10);
    assert_eq!(call(&l, ns, "fx_bss", 3, 0), 1);
}

#[test]
fn strings_and_alloc_through_the_host_allocator() {
    let (l, ns, _) = load_a(ALL);
    assert_eq!(call(&l, ns, "fx_strings", 0, 0), 18);
    assert_eq!(call(&l, ns, "fx_alloc", 30, 0), 10 + 2 * 20);
    assert_eq!(call(&l, ns, "fx_alloc", 3000, 0), 1000 + 2 * 2000);
}

#[test]
fn same_crate_in_two_sibling_namespaces() {
    let mut l = Loader::new(&mod_mgmt::host::HOST_MEMORY);
    let host = mod_mgmt::host::install(&mut l).unwrap();
    let base = l.add_namespace("base", Some(host)).unwrap();
    let left = l.add_namespace("left", Some(base)).unwrap();
    let right = l.add_namespace("right", Some(base)).unwrap();
    for (f, b) in objects() {
        let n = mod_mgmt::crate_name_of(&f);
        if n.starts_with("fx_") {
            l.add_object_file(left, &f, b.clone().into()).unwrap();
            l.add_object_file(right, &f, b.into()).unwrap();
        } else {
            l.add_object_file(base, &f, b.into()).unwrap();
        }
    }
    for ns in [left, right] {
        let f = l.namespace(ns).unwrap().files().map(|(f, _)| f.clone()).find(|f| f.starts_with("fx_a")).unwrap();
        l.load_from_dir(ns, &f).unwrap();
    }
    assert_eq!(call(&l, left, "fx_counter", 0, 0), 101);
    assert_eq!(call(&l, left, "fx_counter", 0, 0), 102);
    assert_eq!(call(&l, right, "fx_counter", 0, 0), 101);
    let (cl, cr) = (id_of(&l, left, "fx_c"), id_of(&l, right, "fx_c"));
    assert_ne!(cl, cr);
    // core is shared: loaded once, into base.
    assert_eq!(l.crates().filter(|k| k.name == "core").count(), 1);
    assert_eq!(l.krate(id_of(&l, left, "core")).unwrap().namespace, base);
}

#[test]
fn unload_refused_while_depended_on_then_allowed() {
    let (mut l, ns, a) = load_a(ALL);
    let c = id_of(&l, ns, "fx_c");
    let bump = l.lookup(ns, "fx_c::bump").unwrap().addr;
    match l.unload(c) {
        Err(LoadError::InUse { name, dependents }) => {
            assert_eq!(name, "fx_c");
            assert!(dependents.contains(&"fx_a".to_string()) && dependents.contains(&"fx_b".to_string()), "{dependents:?}");
        }
        other => panic!("expected InUse, got {other:?}"),
    }
    assert_eq!(call(&l, ns, "fx_counter", 0, 0), 101, "refused unload must change nothing");
    l.unload(a).unwrap();
    l.unload(id_of(&l, ns, "fx_b")).unwrap();
    l.unload(c).unwrap();
    assert!(l.lookup(ns, "fx_c::bump").is_err());
    assert!(l.addr2sym(bump).is_none());
    assert!(l.crate_by_name(ns, "fx_c").is_none());
}

#[test]
fn unresolved_symbol_names_symbol_and_crate_and_changes_nothing() {
    let (mut l, ns) = setup(&[]);
    let before = l.totals();
    let (f, b) = obj("fx_a");
    match l.load(ns, &f, b.into()) {
        Err(LoadError::Unresolved { needed_by, symbols, unlisted }) => {
            assert_eq!(needed_by, "fx_a");
            assert_eq!(unlisted, 0);
            assert!(symbols.iter().any(|s| s == "fx_b::chain"), "{symbols:?}");
            let msg = LoadError::Unresolved { needed_by: needed_by.clone(), symbols: symbols.clone(), unlisted }.to_string();
            assert!(msg.contains(&format!("crate fx_a: {} unresolved symbols", symbols.len())) && msg.contains("`fx_b::chain`"), "{msg}");
            let more = LoadError::Unresolved { needed_by, symbols, unlisted: 3 }.to_string();
            assert!(more.ends_with(" and 3 more"), "{more}");
        }
        other => panic!("expected Unresolved, got {other:?}"),
    }
    assert_eq!(l.totals(), before);
}

#[test]
fn failed_load_rolls_back_crates_loaded_on_demand() {
    // fx_b is missing: fx_a fails after fx_c, core, ... were loaded on demand for it.
    let (mut l, ns) = setup(&["fx_c", "core", "alloc", "compiler_builtins"]);
    let before = l.totals();
    let (f, b) = obj("fx_a");
    let e = l.load(ns, &f, b.into()).unwrap_err();
    assert!(matches!(&e, LoadError::Unresolved { needed_by, .. } if needed_by == "fx_a"), "{e}");
    assert_eq!(crate_names(&l), ["host"]);
    assert_eq!(l.totals(), before);
    // And the same loader still works afterwards.
    let (f, b) = obj("fx_c");
    l.load(ns, &f, b.into()).unwrap();
}

#[test]
fn lookup_addr2sym_and_prefix_search() {
    let (l, ns, _) = load_a(ALL);
    let s = l.lookup(ns, "fx_chain").unwrap();
    let info = l.addr2sym(s.addr + 5).unwrap();
    assert_eq!((info.krate.as_str(), info.symbol.as_deref(), info.symbol_offset), ("fx_a", Some("fx_chain"), 5));
    assert_eq!(info.namespace, "main");
    // Hash-agnostic and exact (with hash) lookups find the same symbol.
    let bump = l.lookup(ns, "fx_c::bump").unwrap();
    let exact = l.search(ns, "fx_c::bump").into_iter().map(|(_, k, _)| k).next().unwrap();
    assert!(exact.starts_with("fx_c[") && exact.ends_with("]::bump"), "{exact}");
    assert_eq!(l.lookup(ns, &exact).unwrap(), bump);
    let found = l.search(ns, "fx_c::");
    assert!(found.len() >= 5, "{}", found.len());
    assert!(l.lookup(ns, "fx_c::no_such_fn").is_err());
    assert!(l.addr2sym(1).is_none());
    // Symbols of the host crate are found by address too.
    let alloc = l.lookup(ns, "__rustc::__rust_alloc").unwrap();
    assert_eq!(l.addr2sym(alloc.addr).unwrap().krate, "host");
}

#[test]
fn tls_sections_get_stable_negative_offsets() {
    let (l, ns, _) = load_a(ALL);
    let v = l.lookup(ns, "fx_c::TLS_VALUE").unwrap();
    let z = l.lookup(ns, "fx_c::TLS_ZERO").unwrap();
    assert!(v.tls && z.tls);
    let (vo, zo) = (v.addr as i64, z.addr as i64);
    assert!(vo < 0 && zo < 0);
    let total = l.tls().total() as i64;
    assert!(-vo <= total && -zo <= total);
    assert_eq!(vo % 8, 0);
    let img = l.tls().image();
    let at = (total + vo) as usize;
    assert_eq!(u64::from_le_bytes(img[at..at + 8].try_into().unwrap()), 0x7E57_7E57);
    let zat = (total + zo) as usize;
    assert!(img[zat..zat + 32].iter().all(|&b| b == 0));
    // The crate's code got the offset patched in: the function reading TLS_VALUE contains it.
    let f = l.lookup(ns, "fx_c::tls_bump").unwrap();
    // SAFETY: reading the loaded, readable code of tls_bump.
    let code = unsafe { std::slice::from_raw_parts(f.addr as *const u8, f.size as usize) };
    let needle = (vo as i32).to_le_bytes();
    let needle64 = vo.to_le_bytes();
    assert!(code.windows(4).any(|w| w == needle) || code.windows(8).any(|w| w == needle64), "TLS offset {vo} not found in tls_bump's code");
}

#[test]
fn regions_are_w_xor_x_in_the_host_page_tables() {
    let (l, ns, a) = load_a(ALL);
    let _ = ns;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let perms_at = |addr: u64| -> String {
        for line in maps.lines() {
            let (range, rest) = line.split_once(' ').unwrap();
            let (s, e) = range.split_once('-').unwrap();
            let (s, e) = (u64::from_str_radix(s, 16).unwrap(), u64::from_str_radix(e, 16).unwrap());
            if (s..e).contains(&addr) {
                return rest[..3].to_string();
            }
        }
        panic!("{addr:#x} not mapped")
    };
    for k in l.crates().filter(|k| !k.prelinked) {
        for (addr, _, p) in k.regions() {
            let want = match p {
                Perms::ReadExec => "r-x",
                Perms::Read => "r--",
                Perms::ReadWrite => "rw-",
                Perms::ReadWriteExec => panic!("crate {} region {addr:#x} left writable and executable", k.name),
            };
            assert_eq!(perms_at(addr), want, "crate {} region {addr:#x}", k.name);
        }
    }
    assert!(!l.krate(a).unwrap().eh_frame.is_empty(), ".eh_frame must stay reachable for the unwinder");
    let eh = l.section(l.krate(a).unwrap().eh_frame[0]).unwrap();
    assert_eq!(eh.kind, SectionKind::Rodata);
    assert!(eh.size > 0);
}

/// Offsets of ELF header fields we patch.
fn shdr(b: &[u8], i: usize) -> usize {
    let shoff = u64::from_le_bytes(b[0x28..0x30].try_into().unwrap()) as usize;
    shoff + i * 64
}

fn shnum(b: &[u8]) -> usize {
    u16::from_le_bytes(b[0x3c..0x3e].try_into().unwrap()) as usize
}

fn sh_type(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[shdr(b, i) + 4..shdr(b, i) + 8].try_into().unwrap())
}

fn sh_flags(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[shdr(b, i) + 8..shdr(b, i) + 16].try_into().unwrap())
}

fn load_c_bytes(b: Vec<u8>) -> Result<CrateId, LoadError> {
    let (mut l, ns) = setup(&["core", "alloc", "compiler_builtins"]);
    let r = l.load(ns, "fx_c-patched.o", ObjectBytes::from(b));
    if r.is_err() {
        assert_eq!(crate_names(&l), ["host"], "a failed load must leave nothing behind");
    }
    r
}

#[test]
fn unsupported_relocation_is_named() {
    let (_, mut b) = obj("fx_c");
    // First RELA section that applies to an allocated section: set its first entry's type to
    // R_X86_64_GOTPCREL (9).
    let i = (0..shnum(&b))
        .find(|&i| {
            sh_type(&b, i) == 4 && {
                let target = u32::from_le_bytes(b[shdr(&b, i) + 44..shdr(&b, i) + 48].try_into().unwrap()) as usize;
                sh_flags(&b, target) & 2 != 0
            }
        })
        .unwrap();
    let off = u64::from_le_bytes(b[shdr(&b, i) + 24..shdr(&b, i) + 32].try_into().unwrap()) as usize;
    let r_offset = u64::from_le_bytes(b[off..off + 8].try_into().unwrap());
    b[off + 8..off + 12].copy_from_slice(&9u32.to_le_bytes());
    match load_c_bytes(b) {
        Err(LoadError::UnsupportedRelocation { r_type, type_name, offset, section, file }) => {
            assert_eq!((r_type, type_name, offset), (9, "R_X86_64_GOTPCREL", r_offset));
            assert!(section.starts_with('.'), "{section}");
            assert_eq!(file, "fx_c-patched.o");
        }
        other => panic!("expected UnsupportedRelocation, got {other:?}"),
    }
}

#[test]
fn truncated_objects_are_errors() {
    let (_, b) = obj("fx_c");
    for n in (0..b.len()).step_by(61) {
        assert!(load_c_bytes(b[..n].to_vec()).is_err(), "truncated to {n} bytes loaded");
    }
}

#[test]
fn bad_headers_offsets_sizes_and_counts_are_errors() {
    let (_, orig) = obj("fx_c");
    let alloc_sec = (1..shnum(&orig))
        .find(|&i| {
            sh_type(&orig, i) == 1
                && sh_flags(&orig, i) & 2 != 0
                && u64::from_le_bytes(orig[shdr(&orig, i) + 32..shdr(&orig, i) + 40].try_into().unwrap()) > 16
        })
        .unwrap();
    let patch = |at: usize, bytes: &[u8]| {
        let mut b = orig.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        b
    };
    let h = shdr(&orig, alloc_sec);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("e_type = ET_EXEC", patch(0x10, &2u16.to_le_bytes())),
        ("e_machine = EM_386", patch(0x12, &3u16.to_le_bytes())),
        ("ELFCLASS32", patch(4, &[1])),
        ("big endian", patch(5, &[2])),
        ("section offset beyond the file", patch(h + 24, &0xFFFF_FFFF_0000u64.to_le_bytes())),
        ("section size beyond the file", patch(h + 32, &0x7FFF_FFFFu64.to_le_bytes())),
        ("absurd section size", patch(h + 32, &u64::MAX.to_le_bytes())),
        ("alignment not a power of two", patch(h + 48, &3u64.to_le_bytes())),
        ("absurd section count", patch(0x3c, &0xFFFEu16.to_le_bytes())),
        ("section table beyond the file", patch(0x28, &0xFFFF_FFFF_FFFFu64.to_le_bytes())),
    ];
    for (what, b) in cases {
        match load_c_bytes(b) {
            Err(e) => assert!(!e.to_string().is_empty(), "{what}"),
            Ok(_) => panic!("{what}: loaded"),
        }
    }
    assert!(matches!(load_c_bytes(patch(0x10, &2u16.to_le_bytes())), Err(LoadError::WrongKind { .. })));
}

#[test]
fn random_mutations_never_panic() {
    let (_, orig) = obj("fx_c");
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..300 {
        let mut b = orig.clone();
        for _ in 0..1 + next() % 8 {
            let i = next() as usize % b.len();
            b[i] = next() as u8;
        }
        let _ = load_c_bytes(b);
    }
}

#[test]
fn fuzz_regressions_never_panic() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "o") {
            let _ = load_c_bytes(std::fs::read(&p).unwrap());
        }
    }
}

#[test]
fn already_loaded_crate_is_refused() {
    let (mut l, ns, _) = load_a(ALL);
    let (f, b) = obj("fx_c");
    let e = l.load(ns, &f, b.into()).unwrap_err();
    assert_eq!(e, LoadError::AlreadyLoaded { name: "fx_c".into(), namespace: "main".into() });
}

/// `bytes` with a keys section (`mod_mgmt::elf::KEYS_SECTION`) holding `section`, added with
/// objcopy the way imgtool adds it.
fn with_keys_section(name: &str, bytes: &[u8], section: &[u8]) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("delos-keys-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (plain, keys, keyed) = (dir.join("plain.o"), dir.join("keys"), dir.join("keyed.o"));
    std::fs::write(&plain, bytes).unwrap();
    std::fs::write(&keys, section).unwrap();
    let ok = std::process::Command::new("objcopy")
        .arg("--add-section")
        .arg(format!("{}={}", mod_mgmt::elf::KEYS_SECTION, keys.display()))
        .arg(&plain)
        .arg(&keyed)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "objcopy --add-section failed");
    let out = std::fs::read(&keyed).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    out
}

/// The keys section imgtool would write for `bytes`, with `rename` applied to the keys.
fn keys_for(name: &str, bytes: &[u8], rename: impl Fn(String) -> String) -> Vec<u8> {
    let obj = mod_mgmt::elf::parse(name, bytes).unwrap();
    let mut section = b"delos-keys v1\0".to_vec();
    section.extend_from_slice(&(obj.symbols.len() as u32).to_le_bytes());
    for s in &obj.symbols {
        if mod_mgmt::elf::wants_key(s) {
            section.extend_from_slice(rename(mod_mgmt::symbols::exact_key(s.name)).as_bytes());
        }
        section.push(0);
    }
    section
}

/// Objects with prepared keys (as imgtool writes them) load, link and run like the plain ones,
/// and the keys are what the loader uses: a key renamed in the section is the name the export
/// gets. A keys section for another symbol count is ignored (the loader demangles).
#[test]
fn prepared_symbol_keys_are_used_and_a_wrong_section_is_ignored() {
    let (mut l, ns) = setup(&[]);
    for name in ["compiler_builtins", "core", "alloc", "fx_c", "fx_b", "fx_a"] {
        let (f, b) = obj(name);
        let rename = |k: String| if name == "fx_a" && k == "fx_chain" { "fx_chain_prepared".to_string() } else { k };
        let imgtools = mod_mgmt::elf::keys_section(&mod_mgmt::elf::parse(name, &b).unwrap());
        assert!(keys_for(name, &b, |k| k) == imgtools, "{name}: the section imgtool writes differs from the format read here");
        let keyed = with_keys_section(name, &b, &keys_for(name, &b, rename));
        assert_eq!(mod_mgmt::elf::parse(name, &keyed).unwrap().keys.len(), mod_mgmt::elf::parse(name, &b).unwrap().symbols.len());
        l.load(ns, &f, keyed.into()).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(l.lookup(ns, "fx_chain").is_err(), "the key in the section names the export");
    assert_eq!(call(&l, ns, "fx_chain_prepared", 1, 0), 4);
    assert_eq!(call(&l, ns, "fx_generic", 3, 0), {
        let (mut plain, pns) = setup(ALL);
        let (f, b) = obj("fx_a");
        plain.load(pns, &f, b.into()).unwrap();
        call(&plain, pns, "fx_generic", 3, 0)
    });

    // A section written for one symbol fewer: not this object's; the keys are demangled.
    let (mut l, ns) = setup(&["compiler_builtins", "core", "alloc", "fx_c", "fx_b"]);
    let (f, b) = obj("fx_a");
    let mut wrong = keys_for("fx_a", &b, |k| if k == "fx_chain" { "fx_chain_prepared".to_string() } else { k });
    let count = u32::from_le_bytes(wrong[14..18].try_into().unwrap());
    wrong[14..18].copy_from_slice(&(count - 1).to_le_bytes());
    let keyed = with_keys_section("fx_a-wrong", &b, &wrong);
    assert!(mod_mgmt::elf::parse("fx_a", &keyed).unwrap().keys.is_empty());
    l.load(ns, &f, keyed.into()).unwrap();
    assert_eq!(call(&l, ns, "fx_chain", 1, 0), 4);
}

/// The code part of every loaded crate is `int3` wherever no text section lies (between
/// sections and after the last one): code that runs on past a function's end traps at once
/// instead of running what zero bytes decode to (`add [rax], al`, a store).
#[test]
fn code_padding_is_int3() {
    let (l, _, _) = load_a(ALL);
    let mut padding = 0usize;
    for k in l.crates().filter(|k| k.name != "host") {
        for (addr, size, perms) in k.regions().filter(|r| r.2 == Perms::ReadExec) {
            let mut covered = vec![false; size];
            for s in k.sections.iter().filter_map(|id| l.section(*id)).filter(|s| s.kind == SectionKind::Text) {
                if s.addr >= addr && s.addr < addr + size as u64 {
                    let start = (s.addr - addr) as usize;
                    covered[start..(start + s.size as usize).min(size)].fill(true);
                }
            }
            // SAFETY: the part is mapped readable (and executable) for as long as the loader
            // holds the crate.
            let bytes = unsafe { std::slice::from_raw_parts(addr as *const u8, size) };
            for (i, (&b, &c)) in bytes.iter().zip(&covered).enumerate() {
                if !c {
                    assert_eq!(b, 0xcc, "{}: byte {i} of the code part at {addr:#x} ({perms:?}) is padding but not int3", k.name);
                    padding += 1;
                }
            }
        }
    }
    assert!(padding > 0, "no padding seen: the test checks nothing");
}
