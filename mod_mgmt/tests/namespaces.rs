//! Host tests of namespaces made at run time: sharing, shadowing, two versions side by side,
//! dropping (200 cycles leave the loader as it was), and the refusals.

use mod_mgmt::{LoadError, Loader, NamespaceId, ObjectBytes};
use std::collections::BTreeMap;

mod common;

fn objects(sub: &str) -> Vec<(String, Vec<u8>)> {
    common::read_objects(&common::fixture_dir(sub))
}

/// host ← main (every fixture in its directory, fx_a loaded, so fx_b and fx_c are too).
fn setup() -> (Loader, NamespaceId) {
    let mut l = Loader::new(&mod_mgmt::host::HOST_MEMORY);
    let host = mod_mgmt::host::install(&mut l).unwrap();
    let main = l.add_namespace("main", Some(host)).unwrap();
    for (f, b) in objects("fixtures") {
        l.add_object_file(main, &f, b.into()).unwrap();
    }
    l.load_crate_into(main, "fx_a").unwrap();
    (l, main)
}

/// A directory holding fx_c version 2 (its `bump` adds 10).
fn v2_dir() -> BTreeMap<String, ObjectBytes> {
    let (f, b) = objects("fixtures-alt/fx_c_v2").into_iter().find(|(f, _)| mod_mgmt::crate_name_of(f) == "fx_c").unwrap();
    BTreeMap::from([(f, ObjectBytes::from(b))])
}

fn call(l: &Loader, ns: NamespaceId, sym: &str) -> u64 {
    let s = l.lookup(ns, sym).unwrap();
    // SAFETY: the fixtures' entry points are `extern "C" fn() -> u64`-compatible, loaded and
    // executable.
    let f: extern "C" fn(u64) -> u64 = unsafe { std::mem::transmute(s.addr as usize) };
    f(0)
}

fn crate_ns(l: &Loader, ns: NamespaceId, sym: &str) -> String {
    let s = l.lookup(ns, sym).unwrap();
    let k = l.krate(s.krate).unwrap();
    l.namespace(k.namespace).unwrap().name.clone()
}

#[test]
fn shared_unless_shadowed_two_versions_side_by_side() {
    let (mut l, main) = setup();
    let a = l.create_namespace("a", main, BTreeMap::new()).unwrap();
    let b = l.create_namespace("b", main, v2_dir()).unwrap();
    l.load_crate_into(a, "fx_a").unwrap();
    l.load_crate_into(b, "fx_a").unwrap();
    // Each has its own fx_a; a shares main's fx_c, b has its own version 2.
    assert_eq!(crate_ns(&l, a, "fx_counter"), "a");
    assert_eq!(crate_ns(&l, b, "fx_counter"), "b");
    assert_eq!(crate_ns(&l, a, "fx_c::bump"), "main");
    assert_eq!(crate_ns(&l, b, "fx_c::bump"), "b");
    // State: main and a count on one fx_c (v1, +1 from 100); b on its own (v2, +10).
    assert_eq!(call(&l, main, "fx_counter"), 101);
    assert_eq!(call(&l, a, "fx_counter"), 102);
    assert_eq!(call(&l, b, "fx_counter"), 110);
    assert_eq!(call(&l, b, "fx_counter"), 120);
    assert_eq!(call(&l, main, "fx_counter"), 103);
    // The parent does not see its children.
    assert_eq!(crate_ns(&l, main, "fx_c::bump"), "main");
    assert_eq!(l.children_of(main).len(), 2);
}

#[test]
fn dropping_frees_everything_and_200_cycles_leave_the_loader_as_it_was() {
    let (mut l, main) = setup();
    let before = l.totals();
    for i in 0..200 {
        let ns = l.create_namespace(&format!("run{i}"), main, v2_dir()).unwrap();
        l.load_crate_into(ns, "fx_a").unwrap();
        assert_eq!(call(&l, ns, "fx_counter"), 110, "cycle {i}: a fresh private fx_c each time");
        let d = l.drop_namespace(ns).unwrap();
        assert_eq!(d.crates, ["fx_a", "fx_c"], "cycle {i}");
        assert!(d.bytes > 0);
        assert!(l.namespace_by_name(&format!("run{i}")).is_err());
    }
    assert_eq!(l.totals(), before);
    assert_eq!(l.namespaces().count(), 2, "host and main; dropped slots are reused");
    assert_eq!(call(&l, main, "fx_counter"), 101, "main's own state untouched");
}

#[test]
fn refusals_name_the_cause_and_change_nothing() {
    let (mut l, main) = setup();
    let before = l.totals();
    assert!(matches!(l.create_namespace("main", main, BTreeMap::new()), Err(LoadError::NamespaceExists(n)) if n == "main"));
    for bad in ["", "has space", "a/b", "x".repeat(33).as_str()] {
        assert!(matches!(l.create_namespace(bad, main, BTreeMap::new()), Err(LoadError::BadNamespaceName(_))), "{bad:?}");
    }
    assert!(matches!(l.create_namespace("orphan", NamespaceId(99), BTreeMap::new()), Err(LoadError::NoSuchNamespace(_))));
    let e = l.drop_namespace(main).unwrap_err();
    assert_eq!(e.to_string(), "namespace main cannot be dropped: it is one of the boot namespaces");
    let p = l.create_namespace("p", main, v2_dir()).unwrap();
    let q = l.create_namespace("q", p, BTreeMap::new()).unwrap();
    l.load_crate_into(q, "fx_a").unwrap();
    assert_eq!(crate_ns(&l, q, "fx_c::bump"), "p", "the nearest private directory wins");
    let mid = l.totals();
    let e = l.drop_namespace(p).unwrap_err();
    assert_eq!(e.to_string(), "namespace p cannot be dropped: namespace q is its child");
    assert_eq!(l.totals(), mid);
    assert!(matches!(l.load_crate_into(q, "nosuch"), Err(LoadError::NoSuchProgram { .. })));
    assert!(matches!(l.drop_namespace(NamespaceId(99)), Err(LoadError::NoSuchNamespace(_))));
    l.drop_namespace(q).unwrap();
    assert!(matches!(l.drop_namespace(q), Err(LoadError::NoSuchNamespace(_))), "dropped twice");
    l.drop_namespace(p).unwrap();
    assert_eq!(l.totals(), before);
}

#[test]
fn programs_load_from_the_nearest_updates_then_directories() {
    let (mut l, main) = setup();
    let (_, v2) = objects("fixtures-alt/fx_c_v2").into_iter().find(|(f, _)| mod_mgmt::crate_name_of(f) == "fx_c").unwrap();
    let ns = l.create_namespace("pushed", main, BTreeMap::new()).unwrap();
    // A file pushed into main's updates is found from the child (and loaded into the child).
    l.add_update_file(main, "mine.o", v2.into()).unwrap();
    let id = l.load_program(ns, "mine.o").unwrap();
    assert_eq!(l.krate(id).unwrap().namespace, ns);
    let e = l.load_program(ns, "absent.o").unwrap_err();
    assert_eq!(e.to_string(), "no object file absent.o among the updates or in the directory of namespace pushed");
}
