//! nano_core's symbol file, written at build time.
//!
//! Format (text, one record per line, fields separated by one space):
//! ```text
//! delos-syms 1
//! section NAME ADDR SIZE PERMS        # PERMS: rx | r | rw
//! sym ADDR SIZE BIND KIND NAME [KEY]  # BIND: g (linkable) | l (for naming only); KIND: f | o | n
//! ```
//! KEY (rest of the line, global symbols only) is the symbol map key mod_mgmt would compute by
//! demangling NAME; computing it here saves the kernel from demangling thousands of names at
//! boot.
//! Addresses and sizes are hex without `0x`. Names are the raw (mangled) ELF names; the loader
//! demangles them into its symbol map. Local symbols are kept so that `addr2sym` can name any
//! address in nano_core, but only global ones satisfy other crates' undefined symbols — with two
//! exceptions, both exported as global:
//! - `rust_eh_personality` is a lang item that rustc always emits as local, yet every crate's
//!   `.eh_frame` references it by name;
//! - functions with C names (not Rust-mangled): compiler_builtins gives `memcpy`, `__udivti3`
//!   and friends hidden visibility, so they end up local, but loaded crates call them. C names
//!   are unique by construction, so exporting them cannot capture another crate's symbol.

use object::{Object, ObjectSection, ObjectSymbol, SectionFlags, SymbolKind, SymbolScope};
use std::fmt::Write;

/// The file's text and its symbol count.
pub struct SymbolFile {
    pub text: String,
    pub count: usize,
}

/// Symbols that are local in nano_core but must be linkable (see the module docs).
const FORCE_GLOBAL: &[&str] = &["rust_eh_personality"];

pub fn symbol_file(elf: &[u8]) -> Result<SymbolFile, String> {
    let file = object::File::parse(elf).map_err(|e| e.to_string())?;
    let mut text = String::from("delos-syms 1\n");
    for s in file.sections() {
        let SectionFlags::Elf { sh_flags, .. } = s.flags() else { continue };
        let sh_flags = sh_flags.0;
        if sh_flags & object::elf::SHF_ALLOC.0 == 0 || s.size() == 0 {
            continue;
        }
        let perms = if sh_flags & object::elf::SHF_EXECINSTR.0 != 0 {
            "rx"
        } else if sh_flags & object::elf::SHF_WRITE.0 != 0 {
            "rw"
        } else {
            "r"
        };
        let name = s.name().map_err(|e| e.to_string())?;
        let _ = writeln!(text, "section {name} {:x} {:x} {perms}", s.address(), s.size());
    }
    let mut count = 0;
    for sym in file.symbols() {
        let kind = match sym.kind() {
            SymbolKind::Text => "f",
            SymbolKind::Data => "o",
            SymbolKind::Unknown => "n",
            _ => continue,
        };
        if sym.is_undefined() || sym.section_index().is_none() {
            continue;
        }
        let name = sym.name().map_err(|e| e.to_string())?;
        if name.is_empty() || name.contains(char::is_whitespace) {
            continue;
        }
        let c_function = kind == "f" && !name.starts_with("_R") && !name.starts_with("_ZN");
        let global = matches!(sym.scope(), SymbolScope::Dynamic | SymbolScope::Linkage) || FORCE_GLOBAL.contains(&name) || c_function;
        let bind = if global { "g" } else { "l" };
        if global {
            let key = format!("{}", rustc_demangle::demangle(name));
            if key != name {
                let _ = writeln!(text, "sym {:x} {:x} {bind} {kind} {name} {key}", sym.address(), sym.size());
                count += 1;
                continue;
            }
        }
        let _ = writeln!(text, "sym {:x} {:x} {bind} {kind} {name}", sym.address(), sym.size());
        count += 1;
    }
    Ok(SymbolFile { text, count })
}

/// Raw names of the globally defined symbols of an object file.
pub fn defined_globals(obj: &[u8]) -> Result<Vec<String>, String> {
    let file = object::File::parse(obj).map_err(|e| e.to_string())?;
    Ok(file
        .symbols()
        .filter(|s| s.is_global() && !s.is_undefined() && matches!(s.kind(), SymbolKind::Text | SymbolKind::Data))
        .filter_map(|s| s.name().ok().map(String::from))
        .collect())
}

/// The name of the array in nano_core that holds its symbol table (nano_core/src/kernel.rs).
pub const TABLE_SYMBOL: &str = "DELOS_KERNEL_SYMBOLS";

/// The array in nano_core that holds the boot manifest's SHA-512 (nano_core/src/trust.rs).
pub const DIGEST_SYMBOL: &str = "DELOS_MANIFEST_DIGEST";

/// Writes `bytes` over the start of the array `symbol` of the linked kernel `elf`, in place (its
/// addresses and symbols do not change). Returns the array's size.
pub fn fill_array(elf: &mut [u8], symbol: &str, bytes: &[u8]) -> Result<usize, String> {
    let (offset, capacity) = {
        let file = object::File::parse(&*elf).map_err(|e| e.to_string())?;
        let sym = file.symbols().find(|s| s.name() == Ok(symbol)).ok_or_else(|| format!("nano_core has no array `{symbol}`"))?;
        let index = sym.section_index().ok_or_else(|| format!("`{symbol}` is in no section"))?;
        let section = file.section_by_index(index).map_err(|e| e.to_string())?;
        let (file_start, file_size) = section.file_range().ok_or_else(|| format!("`{symbol}` has no bytes in the file"))?;
        let at = sym.address().checked_sub(section.address()).filter(|at| at + sym.size() <= file_size);
        let at = at.ok_or_else(|| format!("`{symbol}` lies outside its section's bytes"))?;
        ((file_start + at) as usize, sym.size() as usize)
    };
    if bytes.len() > capacity {
        return Err(format!("{} bytes do not fit the array `{symbol}` of {capacity} bytes", bytes.len()));
    }
    elf[offset..offset + bytes.len()].copy_from_slice(bytes);
    Ok(capacity)
}

/// Writes nano_core's prepared symbol table ([`mod_mgmt::symtab`], built from the symbol file's
/// text) into its reserved array. Returns the table's size and the array's.
pub fn fill_table(elf: &mut [u8], text: &str) -> Result<(usize, usize), String> {
    let (sections, symbols) = mod_mgmt::symfile::parse(text).map_err(|e| format!("nano_core.syms: {e}"))?;
    let table = mod_mgmt::symtab::build(&sections, &symbols);
    let capacity = fill_array(elf, TABLE_SYMBOL, &table)
        .map_err(|e| format!("the symbol table: {e}: raise KERNEL_SYMBOLS_CAPACITY in nano_core/src/kernel.rs"))?;
    Ok((table.len(), capacity))
}
