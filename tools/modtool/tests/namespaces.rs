//! `modtool load --ns`: the host CLI makes a namespace at run time and loads into it.

use std::path::PathBuf;
use std::process::Command;

fn fixtures(sub: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target").join(sub);
    assert!(d.is_dir(), "fixture objects missing in {}: run tools/fixtures.sh (make test does)", d.display());
    d
}

fn fx_a() -> PathBuf {
    std::fs::read_dir(fixtures("fixtures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("fx_a-"))
        .unwrap()
}

fn modtool(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_modtool")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn load_into_a_namespace_made_at_run_time() {
    let a = fx_a();
    let dir = fixtures("fixtures");
    let v2 = fixtures("fixtures-alt/fx_c_v2");
    let (a, dir, v2) = (a.to_str().unwrap(), dir.to_str().unwrap(), v2.to_str().unwrap());
    // main's own fx_c: bump adds 1 to 100.
    let (ok, out, err) = modtool(&["load", a, "--dir", dir, "--call", "fx_counter"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "result: 101");
    // A namespace whose directory holds fx_c v2 (adds 10): its own fx_a uses its own fx_c.
    let (ok, out, err) = modtool(&["load", a, "--dir", dir, "--ns", "b", "--ns-dir", v2, "--ns-load", "fx_a", "--call", "fx_counter"]);
    assert!(ok, "{err}");
    // Its directory also has core, alloc and compiler_builtins (built with fx_c v2): those
    // shadow main's too, so b has its own copies of them.
    let line = err.lines().find(|l| l.starts_with("namespace b: ")).unwrap_or_default();
    for c in ["fx_a", "fx_c", "core"] {
        assert!(line.split_whitespace().any(|w| w == c), "{err}");
    }
    assert_eq!(out.trim(), "result: 110");
    // Refusals name the cause.
    let (ok, _, err) = modtool(&["load", a, "--dir", dir, "--ns", "main"]);
    assert!(!ok && err.contains("a namespace named main already exists"), "{err}");
    let (ok, _, err) = modtool(&["load", a, "--dir", dir, "--ns", "b", "--ns-load", "nosuch"]);
    assert!(!ok && err.contains("loading nosuch into b: no object file nosuch.o"), "{err}");
}
