//! Links nano_core with its linker script and without section garbage collection: loaded crates
//! resolve their undefined symbols against nano_core's symbol table, so every function of the
//! crates linked into it must stay there (see tools/imgtool, which writes the symbol file).
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
    println!("cargo:rustc-link-arg-bins=--no-gc-sections");
    println!("cargo:rustc-link-arg-bins=-zmax-page-size=4096");
    println!("cargo:rerun-if-changed=linker.ld");
}
