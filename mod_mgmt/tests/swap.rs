//! Host tests of `swap` on real objects: fx_c replaced under fx_a/fx_b by other builds of it
//! (mod_mgmt/tests/fixtures/fx_c_*, built into target/fixtures-alt by tools/fixtures.sh).

use mod_mgmt::swap::{SwapError, SwapPair, Translation};
use mod_mgmt::{Loader, NamespaceId, ObjectBytes};
use std::path::PathBuf;

fn dir(sub: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target").join(sub);
    assert!(d.is_dir(), "fixture objects missing in {}: run tools/fixtures.sh (make test does)", d.display());
    d
}

fn object(d: &PathBuf, krate: &str) -> (String, Vec<u8>) {
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        let f = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.extension().is_some_and(|x| x == "o") && mod_mgmt::crate_name_of(&f) == krate {
            return (f, std::fs::read(&p).unwrap());
        }
    }
    panic!("no {krate} object in {}", d.display())
}

/// host ← main with every fixture in main's directory and fx_a loaded; the alternative fx_c
/// versions are added as updates named after their packages.
fn setup() -> (Loader, NamespaceId) {
    let mut l = Loader::new(&mod_mgmt::host::HOST_MEMORY);
    let host = mod_mgmt::host::install(&mut l).unwrap();
    let ns = l.add_namespace("main", Some(host)).unwrap();
    let base = dir("fixtures");
    for e in std::fs::read_dir(&base).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "o") {
            let f = p.file_name().unwrap().to_string_lossy().into_owned();
            l.add_object_file(ns, &f, std::fs::read(&p).unwrap().into()).unwrap();
        }
    }
    for alt in ["fx_c_v2", "fx_c_bad", "fx_c_big"] {
        let (_, b) = object(&dir(&format!("fixtures-alt/{alt}")), "fx_c");
        l.add_update_file(ns, &format!("{alt}.o"), b.into()).unwrap();
    }
    let (f, b) = object(&base, "fx_a");
    l.load(ns, &f, b.into()).unwrap();
    (l, ns)
}

fn call(l: &Loader, ns: NamespaceId, sym: &str, a: u64) -> u64 {
    let s = l.lookup(ns, sym).unwrap();
    // SAFETY: the fixtures' entry points are `extern "C" fn(u64) -> u64` (or take fewer
    // arguments) in loaded, executable sections.
    let f: extern "C" fn(u64) -> u64 = unsafe { std::mem::transmute(s.addr as usize) };
    f(a)
}

fn pair(old: &str, new: &str) -> SwapPair {
    SwapPair { old: old.into(), new_file: new.into() }
}

#[test]
fn swap_changes_behaviour_keeps_state_and_swaps_back() {
    let (mut l, ns) = setup();
    assert_eq!(call(&l, ns, "fx_counter", 0), 101);
    assert_eq!(call(&l, ns, "fx_counter", 0), 102);
    let old_bump = l.lookup(ns, "fx_c::bump").unwrap().addr;
    let times = l.swap(ns, &[pair("fx_c", "fx_c_v2")]).unwrap();
    assert!(times.total_us() < 10_000_000);
    // v2 adds 10, starting from the transferred 102.
    assert_eq!(call(&l, ns, "fx_counter", 0), 112);
    assert_eq!(call(&l, ns, "fx_chain", 5), 12, "fx_b's calls were relinked too");
    assert_eq!(call(&l, ns, "fx_counter", 0), 132);
    assert_eq!(call(&l, ns, "fx_dyn_area", 3), 36, "vtables and other code unaffected");
    let new_bump = l.lookup(ns, "fx_c::bump").unwrap().addr;
    assert_ne!(old_bump, new_bump);
    assert!(l.addr2sym(old_bump).is_none(), "the old version is unloaded");
    assert_eq!(l.addr2sym(new_bump).unwrap().krate, "fx_c");
    // The dependency graph now points at the new version.
    let c = l.crate_by_name(ns, "fx_c").unwrap();
    let users: Vec<String> = l.crate_dependents(c).into_iter().map(|id| l.krate(id).unwrap().name.clone()).collect();
    assert!(users.contains(&"fx_a".to_string()) && users.contains(&"fx_b".to_string()), "{users:?}");
    // Swap back to the original object (in the directory, named by crate).
    l.swap(ns, &[pair("fx_c", "fx_c")]).unwrap();
    assert_eq!(call(&l, ns, "fx_counter", 0), 133);
}

#[test]
fn missing_symbol_is_refused_and_changes_nothing() {
    let (mut l, ns) = setup();
    assert_eq!(call(&l, ns, "fx_counter", 0), 101);
    let before = (l.totals(), l.lookup(ns, "fx_c::bump").unwrap(), l.generation());
    match l.swap(ns, &[pair("fx_c", "fx_c_bad")]) {
        Err(SwapError::Incompatible { krate, problems }) => {
            assert_eq!(krate, "fx_c");
            assert!(problems.iter().any(|p| p == "missing `fx_c::bump`"), "{problems:?}");
        }
        other => panic!("expected Incompatible, got {other:?}"),
    }
    assert_eq!(l.totals(), before.0);
    assert_eq!(l.lookup(ns, "fx_c::bump").unwrap(), before.1);
    assert_eq!(call(&l, ns, "fx_counter", 0), 102, "behaviour and state unchanged");
}

#[test]
fn state_of_different_size_needs_a_hook() {
    let (mut l, ns) = setup();
    assert_eq!(call(&l, ns, "fx_counter", 0), 101);
    let before = l.totals();
    match l.swap(ns, &[pair("fx_c", "fx_c_big")]) {
        Err(SwapError::StateSize { krate, symbols }) => {
            assert_eq!(krate, "fx_c");
            assert!(symbols.iter().any(|s| s.starts_with("fx_c::BSS (old 4096 bytes, new 8192 bytes)")), "{symbols:?}");
        }
        other => panic!("expected StateSize, got {other:?}"),
    }
    assert_eq!(l.totals(), before);
    // With a hook that takes over the state, the swap goes through and the rest is copied.
    let p = l.swap_prepare(ns, &[pair("fx_c", "fx_c_big")], true).unwrap();
    assert!(p.report.iter().any(|r| r.contains("fx_c::BSS changes size")), "{:?}", p.report);
    let mut called = 0;
    l.swap_commit(p, &mut |_, pairs| {
        called = pairs.pairs().len();
        Ok(())
    })
    .unwrap();
    assert_eq!(called, 1);
    assert_eq!(call(&l, ns, "fx_counter", 0), 102, "COUNTER was copied by name");
}

#[test]
fn failing_hook_rolls_everything_back() {
    let (mut l, ns) = setup();
    assert_eq!(call(&l, ns, "fx_counter", 0), 101);
    let before = (l.totals(), l.lookup(ns, "fx_c::bump").unwrap());
    let p = l.swap_prepare(ns, &[pair("fx_c", "fx_c_v2")], false).unwrap();
    let e = l.swap_commit(p, &mut |_, _| Err("refused by test".into())).unwrap_err();
    assert_eq!(e, SwapError::Hook("refused by test".into()));
    assert_eq!(l.totals(), before.0);
    assert_eq!(l.lookup(ns, "fx_c::bump").unwrap(), before.1);
    assert_eq!(call(&l, ns, "fx_counter", 0), 102, "old code runs, relocations restored");
}

#[test]
fn bad_new_objects_and_unknown_crates_are_refused() {
    let (mut l, ns) = setup();
    let before = l.totals();
    let (_, good) = object(&dir("fixtures-alt/fx_c_v2"), "fx_c");
    l.add_update_file(ns, "trunc.o", ObjectBytes::from(good[..good.len() / 2].to_vec())).unwrap();
    l.add_update_file(ns, "text.o", ObjectBytes::from(b"not an object at all".to_vec())).unwrap();
    assert!(matches!(l.swap(ns, &[pair("fx_c", "trunc")]), Err(SwapError::Load { .. })));
    assert!(matches!(l.swap(ns, &[pair("fx_c", "text")]), Err(SwapError::Load { .. })));
    assert_eq!(l.swap(ns, &[pair("nope", "fx_c_v2")]).unwrap_err(), SwapError::NotLoaded("nope".into()));
    assert!(matches!(l.swap(ns, &[pair("fx_c", "no_such_file")]), Err(SwapError::NoSuchObject { .. })));
    assert_eq!(l.swap(ns, &[pair("fx_c", "fx_c_v2"), pair("fx_c", "fx_c")]).unwrap_err(), SwapError::Duplicate("fx_c".into()));
    assert!(matches!(l.swap(ns, &[pair("host", "fx_c_v2")]), Err(SwapError::Incompatible { .. })));
    assert_eq!(l.totals(), before);
    assert_eq!(call(&l, ns, "fx_counter", 0), 101);
}

#[test]
fn stale_prepare_is_refused() {
    let (mut l, ns) = setup();
    let p = l.swap_prepare(ns, &[pair("fx_c", "fx_c_v2")], false).unwrap();
    let (f, b) = object(&dir("fixtures-alt/fx_c_bad"), "fx_c");
    let other = l.add_namespace("other", None).unwrap();
    let _ = l.load(other, &f, b.into()); // any change to the loaded set
    assert_eq!(l.swap_commit(p, &mut |_, _| Ok(())).unwrap_err(), SwapError::Stale);
    assert_eq!(call(&l, ns, "fx_counter", 0), 101);
}

#[test]
fn many_swap_cycles_leave_the_loader_as_it_was() {
    let (mut l, ns) = setup();
    l.swap(ns, &[pair("fx_c", "fx_c_v2")]).unwrap();
    l.swap(ns, &[pair("fx_c", "fx_c")]).unwrap();
    let after_first = l.totals();
    for _ in 0..100 {
        l.swap(ns, &[pair("fx_c", "fx_c_v2")]).unwrap();
        l.swap(ns, &[pair("fx_c", "fx_c")]).unwrap();
    }
    assert_eq!(l.totals(), after_first);
    assert_eq!(call(&l, ns, "fx_counter", 0), 101);
}

#[test]
fn many_swap_cycles_keep_the_memory_the_loader_holds() {
    let (mut l, ns) = setup();
    l.swap(ns, &[pair("fx_c", "fx_c_v2")]).unwrap();
    l.swap(ns, &[pair("fx_c", "fx_c")]).unwrap();
    let after_first = l.region_bytes();
    for _ in 0..100 {
        l.swap(ns, &[pair("fx_c", "fx_c_v2")]).unwrap();
        l.swap(ns, &[pair("fx_c", "fx_c")]).unwrap();
    }
    assert_eq!(l.region_bytes(), after_first, "adopted data regions are passed on, retired code is freed");
    assert!(l.retired().is_empty());
}

#[test]
fn old_code_shares_state_with_new_code_until_reclaimed() {
    let (mut l, ns) = setup();
    assert_eq!(call(&l, ns, "fx_counter", 0), 101);
    let old_bump = l.lookup(ns, "fx_c::bump").unwrap().addr;
    let counter = l.lookup(ns, "fx_c::COUNTER").unwrap().addr;
    let greeting = l.lookup(ns, "fx_c::GREETING").unwrap().addr;
    let name_ptr = l.lookup(ns, "fx_c::NAME_PTR").unwrap().addr;
    let touch_fn = l.lookup(ns, "fx_c::TOUCH_FN").unwrap().addr;
    let p = l.swap_prepare(ns, &[pair("fx_c", "fx_c_v2")], false).unwrap();
    assert!(!p.needs_quiescence, "every static is adopted, nothing is copied: {:?}", p.report);
    assert_eq!(p.state_bytes(), 0);
    assert!(p.adopted_bytes() >= 8 + 512 * 8, "COUNTER and BSS are shared: {}", p.adopted_bytes());
    let new_bump = p.new_export("fx_c::bump").unwrap();
    assert_ne!(new_bump, old_bump);
    assert_eq!(p.translate(&l, old_bump), Translation::Moved(new_bump), "a stored function pointer moves");
    assert!(matches!(p.translate(&l, old_bump + 1), Translation::Unmappable { .. }), "the middle of a function has no equivalent");
    assert_eq!(p.translate(&l, counter), Translation::Unaffected, "adopted statics keep their address");
    assert_eq!(p.translate(&l, 0x10), Translation::Unaffected);
    l.swap_commit(p, &mut |_, _| Ok(())).unwrap();
    assert_eq!(l.lookup(ns, "fx_c::COUNTER").unwrap().addr, counter, "NEW's COUNTER is OLD's memory");

    // OLD is retired: out of the namespace, still mapped and named.
    let retired = l.retired();
    assert_eq!(retired.len(), 1);
    assert_eq!(retired[0].name, "fx_c");
    assert!(retired[0].bytes > 0 && retired[0].ranges.iter().any(|&(s, e)| old_bump >= s && old_bump < e));
    assert!(l.addr2sym(old_bump).is_some(), "retired code is still in the address index");
    assert!(!l.crates().any(|k| k.is_retired()), "crates() lists live crates");

    // Code still running in the old version shares the state with the new version.
    // SAFETY: `old_bump` is fx_c v1's `bump` (`fn() -> u64`), still mapped while retired.
    let old: extern "C" fn() -> u64 = unsafe { std::mem::transmute(old_bump as usize) };
    assert_eq!(old(), 102, "old code, old step (1), shared counter");
    assert_eq!(call(&l, ns, "fx_counter", 0), 112, "new code, new step (10), same counter");

    // The adopted statics' pointer initializers now point into the new version.
    let live = l.crate_by_name(ns, "fx_c").unwrap();
    let owner = |a: u64| l.locate(a).map(|(sid, _)| l.section(sid).unwrap().krate);
    // SAFETY: NAME_PTR and TOUCH_FN are pointer-sized statics in adopted, mapped data.
    let (name, touch) = unsafe { ((name_ptr as *const u64).read(), (touch_fn as *const u64).read()) };
    assert_eq!(owner(name), Some(live), "NAME_PTR was switched to the new version's string");
    assert_eq!(owner(touch), Some(live), "TOUCH_FN was switched to the new version's function");
    assert_eq!(touch, l.lookup(ns, "fx_c::bss_touch").unwrap().addr);
    // SAFETY: the string lies in the new version's mapped rodata.
    assert_eq!(unsafe { std::slice::from_raw_parts(name as *const u8, 11) }, b"fx_c's name");
    assert_ne!(l.lookup(ns, "fx_c::GREETING").unwrap().addr, greeting, "an immutable static is rodata: not state, not adopted");

    // Reclaiming frees the old code; the shared data stays with the new version.
    let before = l.region_bytes();
    let freed = l.reclaim(retired[0].id).unwrap();
    assert!(freed > 0 && l.region_bytes() == before - freed as usize);
    assert!(l.addr2sym(old_bump).is_none());
    assert!(l.reclaim(live).is_err(), "a live crate is not reclaimed");
    assert_eq!(call(&l, ns, "fx_counter", 0), 122);
    assert_eq!(call(&l, ns, "fx_chain", 5), 12);
}

#[test]
fn two_objects_of_one_crate_are_ambiguous_unless_one_is_the_old_one() {
    let (mut l, ns) = setup();
    let (_, v2) = object(&dir("fixtures-alt/fx_c_v2"), "fx_c");
    let (_, bad) = object(&dir("fixtures-alt/fx_c_bad"), "fx_c");
    l.add_update_file(ns, "fx_c-1111.o", v2.into()).unwrap();
    l.add_update_file(ns, "fx_c-2222.o", bad.into()).unwrap();
    match l.swap(ns, &[pair("fx_c", "fx_c")]) {
        Err(SwapError::Ambiguous { name, candidates }) => {
            assert_eq!(name, "fx_c");
            assert_eq!(candidates, ["fx_c-1111", "fx_c-2222"]);
        }
        other => panic!("expected Ambiguous, got {other:?}"),
    }
    l.swap(ns, &[pair("fx_c", "fx_c-1111")]).unwrap();
    assert_eq!(call(&l, ns, "fx_counter", 0), 110, "v2 by its file name");
}

#[test]
fn integrity_detects_a_flipped_bit_and_a_reload_repairs_it() {
    let (mut l, ns) = setup();
    assert!(l.verify_all().is_empty(), "nothing is corrupted after loading");
    let c = l.crate_by_name(ns, "fx_c").unwrap();
    let place = l.flip_code_bit(c, 0x10, 3).unwrap();
    assert_eq!(l.verify(c).map_err(|e| e.krate), Err(c), "a flipped bit in fx_c's code is found");
    assert_eq!(l.verify_all().len(), 1);
    // Flipping it back restores the recorded hash.
    l.flip_code_bit(c, 0x10, 3).unwrap();
    assert!(l.verify(c).is_ok());
    l.flip_code_bit(c, 0x10, 3).unwrap();
    // Repair: reload fx_c from its object (a swap with itself); state is kept.
    assert_eq!(call(&l, ns, "fx_counter", 0), 101);
    l.swap(ns, &[pair("fx_c", "fx_c")]).unwrap();
    assert!(l.verify_all().is_empty(), "the new copy and the relinked users verify: {:?}", l.verify_all());
    assert!(l.addr2sym(place).is_none(), "the corrupted copy is gone");
    assert_eq!(call(&l, ns, "fx_counter", 0), 102, "state kept across the repair");
    // A bit beyond the code is refused.
    assert!(l.flip_code_bit(l.crate_by_name(ns, "fx_c").unwrap(), 1 << 30, 0).is_err());
}

#[test]
fn a_corrupted_crate_is_restored_in_place_from_its_sealed_copy() {
    let (mut l, ns) = setup();
    let c = l.crate_by_name(ns, "fx_c").unwrap();
    assert!(l.sealed_bytes() > 0, "every loaded crate keeps a sealed copy");
    assert_eq!(l.restore_code(c).unwrap().bytes, 0, "nothing to restore in an intact crate");
    let a = l.flip_code_bit(c, 0x10, 3).unwrap();
    let b = l.flip_code_bit(c, 0x12, 0).unwrap();
    assert!(l.verify(c).is_err());
    let r = l.restore_code(c).unwrap();
    assert_eq!((r.bytes, r.first, r.end), (2, a, b + 1), "exactly the two changed bytes, where they were");
    assert!(l.verify_all().is_empty(), "intact again, at the same addresses");
    assert_eq!(call(&l, ns, "fx_counter", 0), 101, "and it runs");
    // For a fault: the crate whose code contains the address is found and repaired.
    let place = l.flip_code_bit(c, 0x20, 7).unwrap();
    let (id, r) = l.restore_at(place).expect("a corrupted crate at that address");
    assert_eq!((id, r.bytes, r.first), (c, 1, place));
    assert!(l.restore_at(place).is_none(), "intact now: nothing to do");
    // A damaged copy is not used: only a reload repairs the crate then.
    l.flip_code_bit(c, 0x10, 1).unwrap();
    l.flip_sealed_bit(c, 0x30, 2).unwrap();
    assert_eq!(l.restore_code(c), Err(mod_mgmt::integrity::RestoreError::CopyDamaged));
    let place = l.flip_code_bit(c, 0x11, 1).unwrap();
    assert!(l.restore_at(place).is_none(), "no in-place repair from a damaged copy");
    l.swap(ns, &[pair("fx_c", "fx_c")]).unwrap();
    assert!(l.verify_all().is_empty(), "reloaded");
    let c = l.crate_by_name(ns, "fx_c").unwrap();
    assert_eq!(l.restore_code(c).map(|r| r.bytes), Ok(0), "with a fresh copy");
    // Relinking (a swap of a dependency) re-seals the users: their copies follow.
    l.swap(ns, &[pair("fx_c", "fx_c")]).unwrap();
    assert!(l.verify_all().is_empty());
    for k in l.crates().filter(|k| !k.prelinked && !k.is_retired()).map(|k| k.id).collect::<Vec<_>>() {
        assert_eq!(l.restore_code(k).map(|r| r.bytes), Ok(0), "copies match after the relink");
    }
}

#[test]
fn busy_ranges_cover_old_code_but_not_its_string_pools() {
    let (mut l, ns) = setup();
    let c = l.crate_by_name(ns, "fx_c").unwrap();
    let sections: Vec<(String, mod_mgmt::SectionKind, u64, u64)> =
        l.krate(c).unwrap().sections.iter().filter_map(|id| l.section(*id)).map(|s| (s.name.clone(), s.kind, s.addr, s.size)).collect();
    let p = l.swap_prepare(ns, &[pair("fx_c", "fx_c_v2")], false).unwrap();
    let ranges = p.old_busy_ranges(&l);
    assert!(ranges.windows(2).all(|w| w[0].1 < w[1].0), "sorted and merged: {ranges:x?}");
    let bump = l.lookup(ns, "fx_c::bump").unwrap().addr;
    assert!(mod_mgmt::swap::in_ranges(&ranges, bump), "a function of OLD is busy");
    let pools: Vec<_> = sections.iter().filter(|s| s.0.contains("rodata.str") && s.3 > 0).collect();
    assert!(!pools.is_empty(), "fx_c has string constants: {sections:?}");
    for (name, _, addr, size) in pools {
        assert!(!(*addr..addr + size).any(|a| mod_mgmt::swap::in_ranges(&ranges, a)), "{name} is a constant pool");
    }
    l.swap_abort(p);
}

#[test]
fn in_ranges_is_half_open() {
    let r = [(10, 20), (30, 31)];
    let hits: Vec<u64> = (0..40).filter(|a| mod_mgmt::swap::in_ranges(&r, *a)).collect();
    assert_eq!(hits, (10..20).chain([30]).collect::<Vec<_>>());
    assert!(!mod_mgmt::swap::in_ranges(&[], 5));
}

/// `ld -r` with imgtool's script (tools/imgtool/merge.ld): `object` with its code, read-only
/// data and exception tables merged into one section each, as the image ships third-party crates.
fn merged(object: &std::path::Path, out: &std::path::Path) -> Vec<u8> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/imgtool/merge.ld");
    let ok = std::process::Command::new("ld").arg("-r").arg("-T").arg(&script).arg("-o").arg(out).arg(object).status().unwrap();
    assert!(ok.success(), "ld -r failed on {}", object.display());
    std::fs::read(out).unwrap()
}

fn object_path(d: &PathBuf, krate: &str) -> PathBuf {
    let (f, _) = object(d, krate);
    d.join(f)
}

/// A crate merged the way imgtool merges third-party crates loads, links and runs like the
/// original, and swaps both ways with unmerged versions: relinking finds every place by the
/// symbol covering it, and its statics (left one section each) are shared with the new version.
#[test]
fn merged_sections_load_run_and_swap_with_unmerged_versions() {
    let tmp = std::env::temp_dir().join(format!("delos-merge-test-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let c1 = merged(&object_path(&dir("fixtures"), "fx_c"), &tmp.join("fx_c.o"));
    let c2 = merged(&object_path(&dir("fixtures-alt/fx_c_v2"), "fx_c"), &tmp.join("fx_c_v2.o"));
    let mut l = Loader::new(&mod_mgmt::host::HOST_MEMORY);
    let host = mod_mgmt::host::install(&mut l).unwrap();
    let ns = l.add_namespace("main", Some(host)).unwrap();
    for e in std::fs::read_dir(dir("fixtures")).unwrap() {
        let p = e.unwrap().path();
        let f = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.extension().is_some_and(|x| x == "o") {
            let bytes = if mod_mgmt::crate_name_of(&f) == "fx_c" { c1.clone() } else { std::fs::read(&p).unwrap() };
            l.add_object_file(ns, &f, bytes.into()).unwrap();
        }
    }
    l.add_update_file(ns, "fx_c_v2_merged.o", c2.into()).unwrap();
    let (_, v2) = object(&dir("fixtures-alt/fx_c_v2"), "fx_c");
    l.add_update_file(ns, "fx_c_v2.o", v2.into()).unwrap();
    let (f, b) = object(&dir("fixtures"), "fx_a");
    l.load(ns, &f, b.into()).unwrap();
    let text_sections = |l: &Loader| {
        let c = l.crate_by_name(ns, "fx_c").unwrap();
        let sections = l.krate(c).unwrap().sections.iter().map(|s| l.section(*s).unwrap());
        sections.filter(|s| s.kind == mod_mgmt::SectionKind::Text && s.size > 0).count()
    };
    assert_eq!(text_sections(&l), 1, "the merged fx_c has one code section");
    assert_eq!(call(&l, ns, "fx_counter", 0), 101);
    assert_eq!(call(&l, ns, "fx_counter", 0), 102);
    let bump = l.lookup(ns, "fx_c::bump").unwrap().addr;
    assert_eq!(l.addr2sym(bump).unwrap().symbol.as_deref(), Some("fx_c::bump"), "symbols keep their own addresses");
    // Merged v1 -> merged v2 -> unmerged v2 -> the merged v1 in the directory; v1 counts by
    // 1, v2 by 10, and the count is one shared static throughout.
    l.swap(ns, &[pair("fx_c", "fx_c_v2_merged")]).unwrap();
    assert_eq!(call(&l, ns, "fx_counter", 0), 112);
    assert_eq!(call(&l, ns, "fx_chain", 5), 12, "fx_b's calls into the merged code relinked");
    assert_eq!(call(&l, ns, "fx_counter", 0), 132);
    l.swap(ns, &[pair("fx_c", "fx_c_v2")]).unwrap();
    assert!(text_sections(&l) > 1, "the unmerged v2 has a section per function");
    assert_eq!(call(&l, ns, "fx_counter", 0), 142);
    l.swap(ns, &[pair("fx_c", "fx_c")]).unwrap();
    assert_eq!(text_sections(&l), 1);
    assert_eq!(call(&l, ns, "fx_counter", 0), 143);
    assert_eq!(call(&l, ns, "fx_chain", 5), 12);
    std::fs::remove_dir_all(&tmp).unwrap();
}
