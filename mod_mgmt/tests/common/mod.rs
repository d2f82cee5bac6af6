//! Shared by the host test files: the fixture objects `tools/fixtures.sh` builds.
// Each test file is its own crate and uses only some of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `target/<sub>` (fixtures, fixtures-alt/...), which must exist.
pub fn fixture_dir(sub: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target").join(sub);
    assert!(d.is_dir(), "fixture objects missing in {}: run tools/fixtures.sh (make test does)", d.display());
    d
}

/// Every `*.o` in `dir` as (file name, bytes), sorted by name.
pub fn read_objects(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "o"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}
