//! imgtool: builds the Delos boot image.
//!
//! `imgtool build` runs the one kernel build (through `objbuild`, so the flags are the kernel's),
//! then writes into `target/image/`:
//! - `nano_core`: the kernel ELF, after checking that its file offsets follow its physical
//!   addresses (the multiboot1 a.out kludge used by `qemu -kernel` depends on it), with its
//!   symbol table (`mod_mgmt::symtab`) written into the array reserved for it;
//! - `modules.tar`: one archive holding `nano_core.syms` and, for each namespace manifest in
//!   `namespaces/`, the objects of its crates under `namespaces/<name>/<crate>-<hash>.o`, plus
//!   the manifests themselves;
//! - `nano_core.syms`: nano_core's symbols and sections as text, for people and tools (the
//!   kernel registers its symbols from the table inside its own image).
//!
//! `imgtool iso --cmdline "..." --out FILE` wraps the same files in a GRUB multiboot2 ISO.
//! Files are rewritten only when their contents change, so a second build is quick.

mod spec;
mod static_check;
mod syms;

mod keys;

use object::Endianness;
use object::read::elf::{ElfFile64, ProgramHeader};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Build(#[from] objbuild::BuildError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("namespace manifest {path}: {msg}")]
    Manifest { path: PathBuf, msg: String },
    #[error("nano_core: {0}")]
    Kernel(String),
    #[error(
        "usage: imgtool build | imgtool check-static | imgtool object CRATE_DIR | imgtool cobj SRC.c [SRC.c ...] | imgtool iso --out FILE [--cmdline STR] | imgtool sign FILE --namespace NS --name NAME"
    )]
    Usage,
    #[error("grub-mkrescue failed: {0}")]
    Iso(String),
    #[error("signing key: {0}")]
    Key(String),
}

fn io<T>(path: &Path, r: std::io::Result<T>) -> Result<T, Error> {
    r.map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    name: String,
    #[serde(default)]
    parent: Option<String>,
    crates: Vec<String>,
    /// Packages under crates/alt: other versions of crates, shipped as updates for `swap`.
    #[serde(default)]
    updates: Vec<String>,
    /// C programs compiled with [`C_FLAGS`] into objects of this namespace (for `loadc`): each
    /// entry one source, or several separated by spaces, linked into one object named after
    /// the first.
    #[serde(default)]
    c_programs: Vec<String>,
}

/// How C objects for Delos are compiled (`make cobj`, and the image's C programs): no PIC,
/// the large code model like every kernel object, no red zone (interrupts share the stack),
/// no stack protector or builtins (tlibc provides what is needed).
const C_FLAGS: &[&str] = &["-ffreestanding", "-fno-pic", "-mcmodel=large", "-mno-red-zone", "-fno-stack-protector", "-fno-builtin", "-O2"];

/// A crate object as it goes into the image, and its debug module: objects carry no DWARF
/// (the loader never reads it, and the archive GRUB loads stays small); for our own crates the
/// `.debug_*` sections and their relocations go into a separate module
/// (`objcopy --only-keep-debug`, same section names and symbols), which `debuginfo` reads on
/// first use. Third-party crates ship without debug info. Every object gets its prepared symbol
/// keys ([`with_prepared_keys`]).
fn image_object(path: &Path, ours: bool, scratch: &Path) -> Result<(Vec<u8>, Option<Vec<u8>>), Error> {
    let (object, debug) = image_object_unkeyed(path, ours, scratch)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    Ok((with_prepared_keys(object, &name, scratch)?, debug))
}

fn image_object_unkeyed(path: &Path, ours: bool, scratch: &Path) -> Result<(Vec<u8>, Option<Vec<u8>>), Error> {
    let name = path.file_name().unwrap_or_default();
    let out = scratch.join(name);
    let ok = Command::new("objcopy").arg("--strip-debug").arg(path).arg(&out).status().is_ok_and(|s| s.success());
    if !ok {
        return Ok((io(path, std::fs::read(path))?, None));
    }
    let stripped = io(&out, std::fs::read(&out))?;
    if !ours {
        return Ok((merge_sections(&out, scratch)?.unwrap_or(stripped), None));
    }
    let dbg = scratch.join(format!("{}.debug", name.to_string_lossy()));
    let ok = Command::new("objcopy").arg("--only-keep-debug").arg(path).arg(&dbg).status().is_ok_and(|s| s.success());
    if !ok {
        // Keep the debug info inside the object rather than lose it.
        return Ok((io(path, std::fs::read(path))?, None));
    }
    Ok((stripped, Some(io(&dbg, std::fs::read(&dbg))?)))
}

/// A third-party crate's object with its per-function and per-item sections merged into one
/// section of each kind (a partial link, `ld -r`, with [`MERGE_SCRIPT`]); `None` (and a warning)
/// if `ld` failed, and the caller ships the object as it is.
///
/// Why: rustc puts every function and static in a section of its own, and the loader pays for
/// each — its header parsed, its placement, its entry in the address index, and the bytes of
/// the headers and their names hashed when the object's signature is checked (cranelift_codegen:
/// 20,760 sections, 3.4 MB of its 12.8 MB). Merged, it has a few dozen. The symbols keep their
/// own addresses and sizes, so lookups, `addr2sym`, backtraces and a swap's relinking (which
/// matches by the symbol covering each place) see no difference; what coarsens is the
/// dependency graph, whose edges run between sections (`deps ADDR` on a merged crate's function
/// shows its whole crate's code). Our own crates stay unmerged for that view — per function,
/// what a swap or a fault report is about — and because their debug info, split into a module
/// of its own, names their sections.
fn merge_sections(object: &Path, scratch: &Path) -> Result<Option<Vec<u8>>, Error> {
    // Written every time: a script left by an earlier imgtool must not be used.
    let script = scratch.join("merge.ld");
    io(&script, std::fs::write(&script, MERGE_SCRIPT))?;
    let name = object.file_name().unwrap_or_default().to_string_lossy();
    let merged = scratch.join(format!("{name}.merged"));
    let status = Command::new("ld").arg("-r").arg("-T").arg(&script).arg("-o").arg(&merged).arg(object).status();
    if !status.as_ref().is_ok_and(|s| s.success()) {
        eprintln!("[imgtool] warning: ld -r could not merge the sections of {name} ({status:?}); shipping it unmerged");
        return Ok(None);
    }
    Ok(Some(io(&merged, std::fs::read(&merged))?))
}

/// `object` with the section of prepared symbol keys (`mod_mgmt::elf::KEYS_SECTION`): the
/// loader reads each export's and each undefined symbol's key there instead of demangling it at
/// load (about 20 µs a name in the kernel under TCG). Added with `objcopy --add-section`, then
/// read back and every key checked against the demangler; an object whose keys do not come out
/// right ships without them (the loader then demangles), with a warning.
fn with_prepared_keys(object: Vec<u8>, name: &str, scratch: &Path) -> Result<Vec<u8>, Error> {
    use mod_mgmt::elf;
    let right = |bytes: &[u8]| -> bool {
        let Ok(obj) = elf::parse(name, bytes) else { return false };
        obj.keys.len() == obj.symbols.len()
            && obj.symbols.iter().enumerate().all(|(i, s)| !elf::wants_key(s) || obj.keys[i] == mod_mgmt::symbols::exact_key(s.name))
    };
    let Ok(section) = elf::parse(name, &object).map(|obj| elf::keys_section(&obj)) else { return Ok(object) };
    let (plain, keyed, keys_file) =
        (scratch.join(format!("{name}.plain")), scratch.join(format!("{name}.keyed")), scratch.join(format!("{name}.keys")));
    io(&plain, std::fs::write(&plain, &object))?;
    io(&keys_file, std::fs::write(&keys_file, &section))?;
    let added = Command::new("objcopy")
        .arg("--add-section")
        .arg(format!("{}={}", elf::KEYS_SECTION, keys_file.display()))
        .arg(&plain)
        .arg(&keyed)
        .status()
        .is_ok_and(|s| s.success());
    if added {
        let out = io(&keyed, std::fs::read(&keyed))?;
        if right(&out) {
            return Ok(out);
        }
    }
    eprintln!("[imgtool] warning: the prepared symbol keys of {name} did not come out right; shipping it without them");
    Ok(object)
}

/// The partial link of [`merge_sections`]: the code, the read-only data and the exception tables
/// each into one output section at address 0 (the output stays relocatable: symbol values are
/// offsets in their section). Writable data, bss and TLS keep a section per static: a swap's
/// adoption of the old version's state goes section by section (`mod_mgmt::adopt`), and one
/// changed static must not keep a new version from sharing all the others. Anything not named
/// (`.eh_frame`, notes, the data) is kept as it is.
const MERGE_SCRIPT: &str = include_str!("../merge.ld");

/// gcc's own freestanding headers (`stddef.h`, `stdarg.h`, `stdint.h`, `stdbool.h`, `float.h`):
/// the only headers besides tlibc's a Delos C program sees.
fn gcc_freestanding_include() -> Result<PathBuf, Error> {
    let out = Command::new("gcc").arg("-print-file-name=include").output().map_err(|e| Error::Kernel(format!("cannot run gcc: {e}")))?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !dir.join("stddef.h").is_file() {
        return Err(Error::Kernel(format!("gcc's freestanding headers are not in {}", dir.display())));
    }
    Ok(dir)
}

/// Compiles C sources into one relocatable object `target/c/<stem of the first>.o` (several
/// sources are linked with `ld -r`); returns its path. `-nostdinc`: tlibc's headers, then gcc's
/// freestanding ones — never the host's libc headers, whose declarations tlibc does not match.
fn compile_c(root: &Path, srcs: &[PathBuf]) -> Result<PathBuf, Error> {
    let first = srcs.first().ok_or(Error::Usage)?;
    let out_dir = root.join("target/c");
    io(&out_dir, std::fs::create_dir_all(&out_dir))?;
    let stem = first.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let out = out_dir.join(format!("{stem}.o"));
    let freestanding = gcc_freestanding_include()?;
    let mut parts = Vec::new();
    for (i, src) in srcs.iter().enumerate() {
        let part = if srcs.len() == 1 { out.clone() } else { out_dir.join(format!("{stem}.part{i}.o")) };
        let status = Command::new("gcc")
            .args(C_FLAGS)
            .arg("-nostdinc")
            .arg("-I")
            .arg(root.join("crates/tlibc/include"))
            .arg("-isystem")
            .arg(&freestanding)
            .arg("-c")
            .arg(src)
            .arg("-o")
            .arg(&part)
            .status()
            .map_err(|e| Error::Kernel(format!("cannot run gcc: {e}")))?;
        if !status.success() {
            return Err(Error::Kernel(format!("gcc failed on {}", src.display())));
        }
        parts.push(part);
    }
    if parts.len() > 1 {
        let status = Command::new("ld")
            .arg("-r")
            .arg("-o")
            .arg(&out)
            .args(&parts)
            .status()
            .map_err(|e| Error::Kernel(format!("cannot run ld: {e}")))?;
        for p in &parts {
            let _ = std::fs::remove_file(p);
        }
        if !status.success() {
            return Err(Error::Kernel(format!(
                "ld -r failed linking {}",
                srcs.iter().map(|s| s.display().to_string()).collect::<Vec<_>>().join(" ")
            )));
        }
    }
    Ok(out)
}

/// The crate (lib) name of an alternative-version package under crates/alt.
fn lib_name(root: &Path, package: &str) -> Result<String, Error> {
    let path = root.join("crates/alt").join(package).join("Cargo.toml");
    let text = io(&path, std::fs::read_to_string(&path))?;
    let v: toml::Value = toml::from_str(&text).map_err(|e| Error::Manifest { path: path.clone(), msg: e.to_string() })?;
    Ok(v.get("lib").and_then(|l| l.get("name")).and_then(|n| n.as_str()).unwrap_or(package).replace('-', "_"))
}

fn progress(t0: Instant, msg: std::fmt::Arguments<'_>) {
    eprintln!("[imgtool {:6.2}s] {msg}", t0.elapsed().as_secs_f64());
}

fn read_manifests(root: &Path) -> Result<Vec<(PathBuf, Manifest)>, Error> {
    let dir = root.join("namespaces");
    let mut out = Vec::new();
    let mut entries: Vec<_> = io(&dir, std::fs::read_dir(&dir))?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for path in entries.into_iter().filter(|p| p.extension().is_some_and(|e| e == "toml")) {
        let text = io(&path, std::fs::read_to_string(&path))?;
        let m: Manifest = toml::from_str(&text).map_err(|e| Error::Manifest { path: path.clone(), msg: e.to_string() })?;
        out.push((path, m));
    }
    let names: Vec<&str> = out.iter().map(|(_, m)| m.name.as_str()).collect();
    for (path, m) in &out {
        if let Some(p) = &m.parent
            && !names.contains(&p.as_str())
        {
            return Err(Error::Manifest { path: path.clone(), msg: format!("parent namespace {p:?} does not exist") });
        }
    }
    Ok(out)
}

/// Writes `data` to `path` unless it already holds exactly that; returns whether it wrote.
fn write_if_changed(path: &Path, data: &[u8]) -> Result<bool, Error> {
    if std::fs::read(path).is_ok_and(|old| old == data) {
        return Ok(false);
    }
    io(path, std::fs::write(path, data))?;
    Ok(true)
}

/// Checks that every loadable segment's file offset minus physical address is one constant,
/// so the whole image can be loaded as one block (multiboot1 a.out kludge).
fn check_kernel_layout(elf: &[u8]) -> Result<(), Error> {
    let file = ElfFile64::<Endianness>::parse(elf).map_err(|e| Error::Kernel(e.to_string()))?;
    let endian = file.endian();
    let mut delta = None;
    for ph in file.elf_program_headers() {
        if ph.p_type(endian) != object::elf::PT_LOAD || ph.p_filesz(endian) == 0 {
            continue;
        }
        let d = ph.p_offset(endian).wrapping_sub(ph.p_paddr(endian));
        match delta {
            None => delta = Some(d),
            Some(prev) if prev != d => {
                return Err(Error::Kernel(format!(
                    "segment at paddr {:#x} breaks the offset/physical-address correspondence the a.out kludge needs",
                    ph.p_paddr(endian)
                )));
            }
            _ => {}
        }
    }
    delta.map(|_| ()).ok_or_else(|| Error::Kernel("no loadable segments".into()))
}

/// The image's `wasm/` directory: crates/wasm/programs (`.wat` assembled here, `.wasm` as they
/// are) and the files named in `$EXTRA_WASM` (space separated), for `wasm run NAME.wasm`.
fn wasm_programs(root: &Path, files: &mut BTreeMap<String, Vec<u8>>) -> Result<(), Error> {
    let dir = root.join("crates/wasm/programs");
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    };
    paths.sort();
    paths.extend(build_rust_wasm(root)?);
    if let Ok(extra) = std::env::var("EXTRA_WASM") {
        paths.extend(extra.split_whitespace().map(PathBuf::from));
    }
    for p in paths {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let bytes = match ext {
            "wat" => wat::parse_file(&p).map_err(|e| Error::Kernel(format!("{}: {e}", p.display())))?,
            "wasm" => io(&p, std::fs::read(&p))?,
            _ => continue,
        };
        files.insert(format!("wasm/{stem}.wasm"), bytes);
    }
    Ok(())
}

/// Builds the Rust programs under crates/wasm/programs/rust for wasm32 (nightly, build-std:
/// this machine has no prebuilt wasm32 standard library); returns the `.wasm` files.
fn build_rust_wasm(root: &Path) -> Result<Vec<PathBuf>, Error> {
    let ws = root.join("crates/wasm/programs/rust");
    if !ws.join("Cargo.toml").exists() {
        return Ok(Vec::new());
    }
    let target_dir = root.join("target/wasm-programs");
    let status = std::process::Command::new("cargo")
        .current_dir(&ws)
        .args(["build", "--release", "-q", "--target", "wasm32-unknown-unknown", "-Zbuild-std=core"])
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .map_err(|source| Error::Io { path: ws.clone(), source })?;
    if !status.success() {
        return Err(Error::Kernel(format!("building the Rust WASM programs in {} failed", ws.display())));
    }
    let out = target_dir.join("wasm32-unknown-unknown/release");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&out)
        .map_err(|source| Error::Io { path: out.clone(), source })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .collect();
    v.sort();
    Ok(v)
}

fn tar_bytes(files: &BTreeMap<String, Vec<u8>>) -> Result<Vec<u8>, Error> {
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Deterministic);
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data.as_slice()).map_err(|source| Error::Io { path: name.into(), source })?;
    }
    b.into_inner().map_err(|source| Error::Io { path: "modules.tar".into(), source })
}

fn build(root: &Path) -> Result<(), Error> {
    let t0 = Instant::now();
    // Before cargo: nano_core's build compiles the public key in.
    let key = keys::ensure(root)?;
    let manifests = read_manifests(root)?;
    let mut packages = vec!["nano_core".to_string()];
    for (_, m) in &manifests {
        for c in &m.crates {
            if root.join("crates").join(c).join("Cargo.toml").exists() && !packages.contains(c) {
                packages.push(c.clone());
            }
        }
    }
    progress(t0, format_args!("building {} packages with the kernel flags: {}", packages.len(), packages.join(" ")));
    let built = objbuild::build(&objbuild::BuildSpec {
        manifest: root.join("Cargo.toml"),
        packages,
        target_dir: root.join("target/kernel"),
        target_json: objbuild::target_json(),
    })?;
    // Alternative versions share crate names with the crates they replace, so each is built in
    // an invocation of its own (same flags, same target directory: shared dependencies keep
    // their hashes).
    let mut updates: Vec<(String, String, objbuild::CrateObject)> = Vec::new();
    for (_, m) in &manifests {
        for pkg in &m.updates {
            let lib = lib_name(root, pkg)?;
            let b = objbuild::build(&objbuild::BuildSpec {
                manifest: root.join("Cargo.toml"),
                packages: vec![pkg.clone()],
                target_dir: root.join("target/kernel"),
                target_json: objbuild::target_json(),
            })?;
            let obj = b.by_name(&lib).into_iter().find(|o| !built.objects.contains_key(&format!("{}-{}", o.name, o.hash))).cloned();
            let obj = obj.ok_or_else(|| Error::Manifest {
                path: root.join("namespaces"),
                msg: format!("update {pkg} (crate {lib}) produced no new object"),
            })?;
            updates.push((m.name.clone(), pkg.clone(), obj));
        }
    }
    if !updates.is_empty() {
        progress(t0, format_args!("built {} alternative versions for swap", updates.len()));
    }
    progress(t0, format_args!("cargo done: {} crate objects", built.objects.len()));

    let out = root.join("target/image");
    io(&out, std::fs::create_dir_all(&out))?;
    let kernel_path =
        built.executables.get("nano_core").ok_or_else(|| Error::Kernel("cargo did not report the nano_core binary".into()))?;
    let mut kernel = io(kernel_path, std::fs::read(kernel_path))?;
    check_kernel_layout(&kernel)?;
    let syms = syms::symbol_file(&kernel).map_err(Error::Kernel)?;
    // The table the kernel registers its own symbols from goes into the kernel itself: the
    // addresses and the symbols stay as linked, only the reserved array's bytes change.
    let (table, capacity) = syms::fill_table(&mut kernel, &syms.text).map_err(Error::Kernel)?;
    progress(
        t0,
        format_args!(
            "nano_core: {} KiB, symbol file {} KiB ({} symbols), symbol table {} of {} KiB",
            kernel.len() / 1024,
            syms.text.len() / 1024,
            syms.count,
            table / 1024,
            capacity / 1024
        ),
    );

    let stripped_dir = out.join("stripped");
    io(&stripped_dir, std::fs::create_dir_all(&stripped_dir))?;
    let mut files = BTreeMap::new();
    files.insert("nano_core.syms".to_string(), syms.text.into_bytes());
    // nano_core's DWARF (already linked) for source locations; the loader never loads it.
    let debug = out.join("nano_core.debug");
    let stripped = Command::new("objcopy").arg("--only-keep-debug").arg(kernel_path).arg(&debug).status().is_ok_and(|s| s.success());
    files.insert("nano_core.debug".to_string(), if stripped { io(&debug, std::fs::read(&debug))? } else { kernel.clone() });
    for (path, m) in &manifests {
        files.insert(format!("namespaces/{}.toml", m.name), io(path, std::fs::read(path))?);
        for c in &m.crates {
            let objs = built.by_name(c);
            let obj = match objs.as_slice() {
                [one] => *one,
                [] => {
                    return Err(Error::Manifest {
                        path: path.clone(),
                        msg: format!("crate {c:?} was not built (not a dependency of any kernel crate?)"),
                    });
                }
                many => {
                    return Err(Error::Manifest {
                        path: path.clone(),
                        msg: format!("crate {c:?} was built {} times with different hashes", many.len()),
                    });
                }
            };
            let ours = root.join("crates").join(c).join("Cargo.toml").exists();
            let (object, debug) = image_object(&obj.path, ours, &stripped_dir)?;
            files.insert(format!("namespaces/{}/{}", m.name, obj.file_name()), object);
            if let Some(d) = debug {
                files.insert(format!("debug/{}/{}", m.name, obj.file_name()), d);
            }
        }
        // The commands of the namespace and their one-line descriptions, read from the sources
        // here so that `help` need not load every command crate (the WASM engine among them).
        let table = command_table(root, &m.crates);
        if !table.is_empty() {
            files.insert(format!("namespaces/{}.commands", m.name), table.into_bytes());
        }
        progress(t0, format_args!("namespace {}: {} crates", m.name, m.crates.len()));
    }
    for (_, m) in &manifests {
        for entry in &m.c_programs {
            // An entry is one source, or several separated by spaces (linked into one object).
            let srcs: Vec<PathBuf> = entry.split_whitespace().map(|s| root.join(s)).collect();
            let obj = compile_c(root, &srcs)?;
            let name = obj.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            files.insert(format!("namespaces/{}/{name}", m.name), io(&obj, std::fs::read(&obj))?);
        }
    }
    wasm_programs(root, &mut files)?;
    let spec = spec::bundle(&root.join("crates/wasm_runtime/tests/spec")).map_err(Error::Kernel)?;
    files.insert("spec/wasm-suite.bin".into(), spec);
    for (ns, pkg, obj) in &updates {
        files.insert(format!("namespaces/{ns}/updates/{pkg}.o"), io(&obj.path, std::fs::read(&obj.path))?);
    }
    // Dependencies of loaded crates that nano_core does not contain (a crates.io crate only a
    // loaded crate uses) go into the kernel namespace's directory, for loading on demand.
    let listed: Vec<&str> = manifests.iter().flat_map(|(_, m)| m.crates.iter().map(String::as_str)).collect();
    let syms_text = String::from_utf8_lossy(&files["nano_core.syms"]).into_owned();
    let nano_syms: std::collections::HashSet<&str> = syms_text.lines().filter_map(|l| l.split(' ').nth(5)).collect();
    let mut extra = Vec::new();
    for obj in built.objects.values() {
        if listed.contains(&obj.name.as_str()) || obj.name == "nano_core" {
            continue;
        }
        let bytes = io(&obj.path, std::fs::read(&obj.path))?;
        if !syms::defined_globals(&bytes).map_err(Error::Kernel)?.iter().all(|g| nano_syms.contains(g.as_str())) {
            extra.push(obj.name.clone());
            let ours = root.join("crates").join(&obj.name).join("Cargo.toml").exists();
            let (object, debug) = image_object(&obj.path, ours, &stripped_dir)?;
            files.insert(format!("namespaces/kernel/{}", obj.file_name()), object);
            if let Some(d) = debug {
                files.insert(format!("debug/kernel/{}", obj.file_name()), d);
            }
        }
    }
    if !extra.is_empty() {
        progress(t0, format_args!("kernel namespace: dependencies not in nano_core added for loading on demand: {}", extra.join(" ")));
    }
    // Each namespace directory's load-on-demand index, prepared here so that the kernel does
    // not parse every object's symbol table at boot (mod_mgmt::dirindex); signed like the rest.
    for (_, m) in &manifests {
        let prefix = format!("namespaces/{}/", m.name);
        let dir: Vec<(&str, Vec<&str>)> = files
            .iter()
            .filter_map(|(p, b)| p.strip_prefix(&prefix).filter(|f| !f.starts_with("updates/")).map(|f| (f, b)))
            .map(|(f, b)| (f, mod_mgmt::elf::defined_globals(f, b).unwrap_or_default()))
            .collect();
        let (n, index) = (dir.len(), mod_mgmt::dirindex::build(dir));
        progress(t0, format_args!("namespace {}: load-on-demand index of {n} files, {} bytes", m.name, index.len()));
        files.insert(format!("dirindex/{}", m.name), index);
    }
    // The signed manifest: what this kernel may load (nano_core checks it with the key it was
    // built with, and every object's hash against it).
    let manifest = signing::manifest(files.iter().map(|(p, b)| (p.as_str(), b.as_slice())));
    let signature = signing::sign(&key.seed, manifest.as_bytes());
    // The kernel built with this image knows its manifest by digest: one hash at boot instead of
    // an ed25519 verification (signing::check_manifest).
    syms::fill_array(&mut kernel, syms::DIGEST_SYMBOL, &signing::sha512(manifest.as_bytes())).map_err(Error::Kernel)?;
    files.insert("manifest".into(), manifest.into_bytes());
    files.insert("manifest.sig".into(), format!("{}\n", signing::hex(&signature)).into_bytes());
    progress(t0, format_args!("manifest of {} files signed with {}", files.len() - 2, key.path.display()));
    let archive = tar_bytes(&files)?;
    let wrote = [
        write_if_changed(&out.join("nano_core"), &kernel)?,
        write_if_changed(&out.join("modules.tar"), &archive)?,
        write_if_changed(&out.join("nano_core.syms"), &files["nano_core.syms"])?,
    ];
    progress(
        t0,
        format_args!(
            "image in {}: modules.tar {} files, {} KiB{}",
            out.display(),
            files.len(),
            archive.len() / 1024,
            if wrote.iter().any(|w| *w) { "" } else { " (unchanged)" }
        ),
    );
    Ok(())
}

fn iso(root: &Path, out: &Path, cmdline: &str) -> Result<(), Error> {
    let t0 = Instant::now();
    let image = root.join("target/image");
    let stage = root.join("target/iso-stage");
    let _ = std::fs::remove_dir_all(&stage);
    io(&stage, std::fs::create_dir_all(stage.join("boot/grub")))?;
    for f in ["nano_core", "modules.tar"] {
        io(&image.join(f), std::fs::copy(image.join(f), stage.join("boot").join(f)))?;
    }
    let cfg = format!(
        "set timeout=0\nset default=0\nserial --unit=0 --speed=115200\nterminal_output serial\nmenuentry \"Delos\" {{\n    multiboot2 /boot/nano_core {cmdline}\n    module2 /boot/modules.tar modules.tar\n    boot\n}}\n"
    );
    io(&stage, std::fs::write(stage.join("boot/grub/grub.cfg"), cfg))?;
    let status = Command::new("grub-mkrescue")
        .args(["-d", "/usr/lib/grub/i386-pc", "-o"])
        .arg(out)
        .arg(&stage)
        .output()
        .map_err(|e| Error::Iso(e.to_string()))?;
    if !status.status.success() {
        return Err(Error::Iso(String::from_utf8_lossy(&status.stderr).into_owned()));
    }
    progress(t0, format_args!("ISO {} (command line {cmdline:?})", out.display()));
    Ok(())
}

/// Builds one package of the workspace (by its directory) with the image's exact build and
/// prints the path of its object (what `make push` sends).
fn object(root: &Path, dir: &Path) -> Result<(), Error> {
    let dir = io(dir, dir.canonicalize())?;
    let manifest = dir.join("Cargo.toml");
    let text = io(&manifest, std::fs::read_to_string(&manifest))?;
    let v: toml::Value = toml::from_str(&text).map_err(|e| Error::Manifest { path: manifest.clone(), msg: e.to_string() })?;
    let package = v
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .ok_or_else(|| Error::Manifest { path: manifest.clone(), msg: "no package name".into() })?;
    let lib = v.get("lib").and_then(|l| l.get("name")).and_then(|n| n.as_str()).unwrap_or(package).replace('-', "_");
    // Members of this workspace build in the image's target directory, so every dependency
    // keeps the hash the running kernel has; other crates build on their own.
    let member = dir.starts_with(root) && !dir.starts_with(root.join("mod_mgmt/tests"));
    let (manifest, target_dir, packages) = if member {
        (root.join("Cargo.toml"), root.join("target/kernel"), vec![package.to_string()])
    } else {
        (manifest, root.join("target/modtool-build").join(package), vec![])
    };
    let built = objbuild::build(&objbuild::BuildSpec { manifest, packages, target_dir, target_json: objbuild::target_json() })?;
    let mut objs = built.by_name(&lib);
    objs.sort_by_key(|o| std::fs::metadata(&o.path).and_then(|m| m.modified()).ok());
    let obj = objs.last().ok_or_else(|| Error::Kernel(format!("no object for crate {lib}")))?;
    println!("{}", obj.path.display());
    Ok(())
}

/// Fails if a crate of any namespace manifest is statically linked into nano_core.
fn check_static(root: &Path) -> Result<(), Error> {
    let syms_path = root.join("target/image/nano_core.syms");
    let syms = io(&syms_path, std::fs::read_to_string(&syms_path))?;
    let crates: Vec<String> = read_manifests(root)?.into_iter().flat_map(|(_, m)| m.crates).collect();
    let mut problems = Vec::new();
    for (c, sym) in static_check::statically_linked(&syms, &crates) {
        problems.push(format!("crate {c} is statically linked into nano_core (e.g. {sym})"));
    }
    // Every manifest crate's object: its strong globals must not be nano_core's too.
    let globals = static_check::nano_core_globals(&syms);
    // The objects of the image (not debug modules, not stale build outputs).
    let tar_path = root.join("target/image/modules.tar");
    let mut archive = tar::Archive::new(io(&tar_path, std::fs::File::open(&tar_path))?);
    let mut objects = 0;
    for entry in io(&tar_path, archive.entries())? {
        let mut entry = io(&tar_path, entry)?;
        let name = io(&tar_path, entry.path())?.to_string_lossy().to_string();
        let file = name.rsplit('/').next().unwrap_or_default().to_string();
        let krate = mod_name_of(&file);
        if name.starts_with("debug/")
            || !file.ends_with(".o")
            || !crates.iter().any(|c| c == krate)
            || static_check::ALLOWED.contains(&krate)
        {
            continue;
        }
        let mut bytes = Vec::new();
        io(&tar_path, std::io::Read::read_to_end(&mut entry, &mut bytes))?;
        let obj = object::File::parse(&*bytes).map_err(|e| Error::Kernel(format!("{file}: {e}")))?;
        use object::{Object, ObjectSymbol};
        let strong: Vec<String> = obj
            .symbols()
            .filter(|y| y.is_global() && y.is_definition() && !y.is_weak())
            .filter_map(|y| y.name().ok().map(String::from))
            .collect();
        objects += 1;
        for g in static_check::shared_globals(&strong, &globals) {
            problems.push(format!("{file} defines {g}, which nano_core defines too"));
        }
    }
    for raw in static_check::legacy_symbols(&syms) {
        problems.push(format!("nano_core has a legacy-mangled symbol {raw} (not built with the kernel's flags)"));
    }
    // nano_core's dependency graph.
    let tree = std::process::Command::new("cargo")
        .args(["tree", "-q", "-p", "nano_core", "-e", "normal", "--prefix", "none", "--offline"])
        .current_dir(root)
        .output()
        .map_err(|e| Error::Kernel(format!("cargo tree: {e}")))?;
    if !tree.status.success() {
        return Err(Error::Kernel(format!("cargo tree: {}", String::from_utf8_lossy(&tree.stderr))));
    }
    let packages: Vec<String> =
        String::from_utf8_lossy(&tree.stdout).lines().filter_map(|l| l.split_whitespace().next()).map(String::from).collect();
    for c in static_check::linked_packages(&packages, &crates) {
        problems.push(format!("nano_core depends on manifest crate {c} (cargo tree)"));
    }
    if problems.is_empty() {
        eprintln!(
            "[imgtool] static-link check: none of {} manifest crates is linked into nano_core ({} symbols named, {} objects' globals compared, {} packages in nano_core's graph, no legacy symbols)",
            crates.len(),
            syms.lines().filter(|l| l.starts_with("sym ")).count(),
            objects,
            packages.len()
        );
        return Ok(());
    }
    for p in &problems {
        eprintln!("[imgtool] {p}");
    }
    Err(Error::Kernel(format!("{} problem(s): loadable code statically linked into nano_core", problems.len())))
}

/// `name<TAB>description` lines for the crates of `crates` that are commands: their source has
/// `pub static DESCRIPTION: &str = "...";` (the contract with the shell, beside `main`).
fn command_table(root: &Path, crates: &[String]) -> String {
    let mut out = String::new();
    for c in crates {
        let Ok(src) = std::fs::read_to_string(root.join("crates").join(c).join("src/lib.rs")) else { continue };
        if let Some(d) = static_description(&src) {
            out += &format!("{c}\t{d}\n");
        }
    }
    out
}

/// The string literal of `pub static DESCRIPTION: &str = "...";` in `src` (rustfmt may put it on
/// the next line; escapes `\"` and `\\` undone), if any.
fn static_description(src: &str) -> Option<String> {
    const DECL: &str = "pub static DESCRIPTION: &str =";
    let after = &src[src.find(DECL)? + DECL.len()..];
    let mut chars = after.trim_start().strip_prefix('"')?.chars();
    let mut out = String::new();
    while let Some(ch) = chars.next() {
        match ch {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            '\n' | '\t' => return None,
            c => out.push(c),
        }
    }
    None
}

/// The crate name of an object file name (`foo-0123abcd.o` → `foo`).
fn mod_name_of(file: &str) -> &str {
    let stem = file.strip_suffix(".o").unwrap_or(file);
    match stem.rsplit_once('-') {
        Some((name, hash)) if !hash.is_empty() && hash.bytes().all(|b| b.is_ascii_hexdigit()) => name,
        _ => stem,
    }
}

fn run() -> Result<(), Error> {
    let root = objbuild::repo_root();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("build") => build(&root),
        Some("check-static") => check_static(&root),
        Some("cobj") if args.len() > 1 => {
            let srcs: Vec<PathBuf> = args[1..].iter().flat_map(|a| a.split_whitespace()).map(PathBuf::from).collect();
            compile_c(&root, &srcs).map(|p| println!("{}", p.display()))
        }
        Some("object") => match args.get(1) {
            Some(dir) => object(&root, Path::new(dir)),
            None => Err(Error::Usage),
        },
        Some("sign") => {
            let (mut ns, mut name) = (None, None);
            let mut it = args.iter().skip(2);
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--namespace" => ns = it.next().cloned(),
                    "--name" => name = it.next().cloned(),
                    _ => return Err(Error::Usage),
                }
            }
            match (args.get(1), ns, name) {
                (Some(f), Some(ns), Some(name)) => keys::sign_push(&root, Path::new(f), &ns, &name),
                _ => Err(Error::Usage),
            }
        }
        Some("iso") => {
            let mut out = None;
            let mut cmdline = String::new();
            let mut it = args[1..].iter();
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--out" => out = it.next().map(PathBuf::from),
                    "--cmdline" => cmdline = it.next().cloned().unwrap_or_default(),
                    _ => return Err(Error::Usage),
                }
            }
            iso(&root, &out.ok_or(Error::Usage)?, &cmdline)
        }
        _ => Err(Error::Usage),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imgtool: error: {e}");
            ExitCode::FAILURE
        }
    }
}
