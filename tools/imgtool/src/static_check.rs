//! The loadable-only check: no crate of a namespace manifest may be statically linked into
//! nano_core (the only exceptions are core, alloc and compiler_builtins, which nano_core needs
//! itself and whose objects are also offered for loading on demand).
//!
//! A crate is statically linked if nano_core's symbol file holds a symbol whose demangled name
//! mentions the crate as a path root (`captain[<hash>]::...`, v0 names keep the crate
//! disambiguator in brackets).

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
    fn ignores_allowed_crates_and_name_suffixes() {
        let syms = "delos-syms 1\nsym 1 1 g f _RNvNtCs1_4core3fmt5write\nsym 2 1 g f _RNvCs1234_8mycaptain4init\n";
        assert!(statically_linked(syms, &names(&["core", "captain"])).is_empty());
    }
}
