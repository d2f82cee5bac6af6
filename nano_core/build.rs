//! Links nano_core with its linker script and without section garbage collection: loaded crates
//! resolve their undefined symbols against nano_core's symbol table, so every function of the
//! crates linked into it must stay there (see tools/imgtool, which writes the symbol file).
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
    println!("cargo:rustc-link-arg-bins=--no-gc-sections");
    println!("cargo:rustc-link-arg-bins=-zmax-page-size=4096");
    println!("cargo:rerun-if-changed=linker.ld");
    // The public key this kernel trusts (made by imgtool before it builds the kernel).
    let key = std::path::Path::new(&dir).join("../target/keys/signing.pub");
    println!("cargo:rerun-if-changed={}", key.display());
    let bytes = std::fs::read(&key)
        .unwrap_or_else(|e| panic!("{}: {e}: build the kernel with `make image` (imgtool makes the signing key)", key.display()));
    assert!(bytes.len() == 32, "{}: not a 32-byte ed25519 public key", key.display());
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    std::fs::write(std::path::Path::new(&out).join("signing.pub"), bytes).expect("OUT_DIR is writable");
}
