//! The loadable-only check: no crate of a namespace manifest may be statically linked into
//! nano_core (the only exceptions are core, alloc and compiler_builtins, which nano_core needs
//! itself and whose objects are also offered for loading on demand).
//!
//! Four independent looks, any of which fails the check:
//! - nano_core's symbol file holds a symbol whose demangled name mentions the crate as a path
//!   root (`captain[<hash>]::...`, v0 names keep the crate disambiguator in brackets);
//! - a strong global symbol a manifest crate's object defines is also a global of nano_core
//!   (whatever its name looks like);
//! - nano_core's symbol file holds a legacy-mangled (`_ZN`) symbol: everything is built with v0
//!   mangling, so such a symbol came from somewhere the first look cannot see into;
//! - nano_core's dependency graph (`cargo tree`) contains a manifest crate.

/// Crates nano_core is allowed (and needs) to contain.
pub const ALLOWED: &[&str] = &["core", "alloc", "compiler_builtins"];

/// For each crate of `crates` found in the symbol file, one example symbol.
pub fn statically_linked(syms: &str, crates: &[String]) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = Vec::new();
    for line in syms.lines().filter(|l| l.starts_with("sym ")) {
        let Some(raw) = line.split(' ').nth(5) else { continue };
        let full = format!("{}", rustc_demangle::demangle(raw));
        for c in crates {
            if ALLOWED.contains(&c.as_str()) || found.iter().any(|(f, _)| f == c) {
                continue;
            }
            let pat = format!("{c}[");
            let hit = full.match_indices(&pat).any(|(i, _)| i == 0 || !full[..i].ends_with(|ch: char| ch.is_alphanumeric() || ch == '_'));
            if hit {
                found.push((c.clone(), full.clone()));
            }
        }
    }
    found
}

/// Raw names of nano_core's global symbols.
pub fn nano_core_globals(syms: &str) -> std::collections::BTreeSet<String> {
    syms.lines()
        .filter(|l| l.starts_with("sym "))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.get(3) == Some(&"g")).then(|| f.get(5).map(|s| s.to_string())).flatten()
        })
        .collect()
}

/// Legacy-mangled symbols in nano_core's symbol file.
pub fn legacy_symbols(syms: &str) -> Vec<String> {
    syms.lines()
        .filter(|l| l.starts_with("sym "))
        .filter_map(|l| l.split(' ').nth(5))
        .filter(|r| r.starts_with("_ZN"))
        .map(String::from)
        .collect()
}

/// Strong globals of a crate object (raw names) that nano_core defines too.
pub fn shared_globals(object_globals: &[String], nano_core: &std::collections::BTreeSet<String>) -> Vec<String> {
    object_globals.iter().filter(|g| nano_core.contains(*g)).cloned().collect()
}

/// Manifest crates among the packages of nano_core's dependency graph (`cargo tree` package
/// names, with `-` and `_` the same).
pub fn linked_packages(packages: &[String], crates: &[String]) -> Vec<String> {
    let norm = |s: &str| s.replace('-', "_");
    crates.iter().filter(|c| !ALLOWED.contains(&c.as_str()) && packages.iter().any(|p| norm(p) == norm(c))).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn detects_a_linked_crate() {
        // `captain::init` (v0) and a nano_core function.
        let syms = "delos-syms 1\nsym 1 1 g f _RNvCs1234_7captain4init\nsym 2 1 g f _RNvNtCs99_9nano_core6kernel5start\n";
        let hits = statically_linked(syms, &names(&["captain", "task", "core"]));
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].0, "captain");
    }

    #[test]
    fn finds_legacy_symbols_shared_globals_and_linked_packages() {
        let syms = "delos-syms 1\nsym 1 1 g f _ZN7captain4init17h0123456789abcdefE\nsym 2 1 g f shared_fn\nsym 3 1 l f local_fn\n";
        assert_eq!(legacy_symbols(syms), ["_ZN7captain4init17h0123456789abcdefE"]);
        let g = nano_core_globals(syms);
        assert_eq!(shared_globals(&names(&["shared_fn", "local_fn", "other"]), &g), ["shared_fn"]);
        assert_eq!(linked_packages(&names(&["mod_mgmt", "boot-info", "core"]), &names(&["boot_info", "task", "core"])), ["boot_info"]);
    }

    #[test]
    fn ignores_allowed_crates_and_name_suffixes() {
        let syms = "delos-syms 1\nsym 1 1 g f _RNvNtCs1_4core3fmt5write\nsym 2 1 g f _RNvCs1234_8mycaptain4init\n";
        assert!(statically_linked(syms, &names(&["core", "captain"])).is_empty());
    }
}
