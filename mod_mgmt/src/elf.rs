//! Reading relocatable objects: the `object` crate's ELF reader, checked and flattened.
//!
//! [`parse`] validates the header (ELF64, little endian, x86_64, `ET_REL`) and turns sections,
//! symbols and RELA entries into plain structs indexed like the ELF tables, so later stages
//! never see raw offsets. Every size and index from the file is checked here or by `object`;
//! a malformed object is a [`LoadError`], never a panic.
//!
//! **Prepared symbol keys.** imgtool adds a section [`KEYS_SECTION`] to every object it puts in
//! the image: the symbol map's key (the demangled name, [`crate::symbols::exact_key`]) of each
//! symbol the loader looks up or exports, in symbol-table order. Demangling costs about 20 µs a
//! name in the kernel under TCG, and a load needs one per export and per undefined symbol
//! (cranelift_codegen: 2,478); with the section the loader reads the keys instead
//! ([`ObjectFile::exact_key`]). The section is part of the object, so the manifest's digest
//! covers it like the code, and imgtool checks every key against the demangler when it writes
//! them. An object without the section, or with one that is not well formed for its symbol
//! table (another version, another symbol count, a key that is not UTF-8), is loaded by
//! demangling.

use crate::error::LoadError;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use object::LittleEndian as LE;
use object::elf::{self, FileHeader64};
use object::read::elf::{FileHeader, Rela, SectionHeader, Sym};

/// Largest section the loader accepts.
pub const MAX_SECTION: u64 = 256 << 20;

/// What a section becomes when loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SectionKind {
    /// Executable code.
    Text,
    /// Read-only data (also `.eh_frame` and `.gcc_except_table`).
    Rodata,
    /// Initialized writable data.
    Data,
    /// Zero-initialized writable data.
    Bss,
    /// TLS initializer.
    TlsData,
    /// Zero-initialized TLS.
    TlsBss,
}

impl SectionKind {
    /// Whether the section goes into the namespace's TLS image rather than crate memory.
    pub fn is_tls(self) -> bool {
        matches!(self, SectionKind::TlsData | SectionKind::TlsBss)
    }
}

/// One section header, flattened.
#[derive(Debug, Clone)]
pub struct ObjSection<'a> {
    /// Its name.
    pub name: &'a str,
    /// `None` for sections that are not loaded (no `SHF_ALLOC`, or empty groups etc.).
    pub kind: Option<SectionKind>,
    /// Size in memory.
    pub size: u64,
    /// Alignment (a power of two, at least 1).
    pub align: u64,
    /// File contents (empty for NOBITS).
    pub data: &'a [u8],
}

/// Where a symbol is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymDef {
    /// Not defined here.
    Undefined,
    /// In section `n`.
    Section(usize),
    /// An absolute value.
    Absolute,
}

/// Kind of a symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymKind {
    /// A function.
    Func,
    /// A data object.
    Object,
    /// A section symbol.
    Section,
    /// A TLS variable.
    Tls,
    /// Anything else (no type).
    Other,
}

/// One symbol, flattened.
#[derive(Debug, Clone)]
pub struct ObjSymbol<'a> {
    /// Raw (mangled) name.
    pub name: &'a str,
    /// Where it is defined.
    pub def: SymDef,
    /// Value (offset within its section for defined symbols).
    pub value: u64,
    /// Size.
    pub size: u64,
    /// `STB_GLOBAL` or `STB_WEAK`.
    pub global: bool,
    /// Its kind.
    pub kind: SymKind,
}

/// One RELA entry.
#[derive(Debug, Clone, Copy)]
pub struct ObjReloc {
    /// Offset in the target section.
    pub offset: u64,
    /// `r_type`.
    pub r_type: u32,
    /// Symbol index.
    pub sym: usize,
    /// Addend.
    pub addend: i64,
}

/// The name of the section of prepared symbol keys (see the module docs).
pub const KEYS_SECTION: &str = ".delos.keys";

/// What the keys section starts with: a version, so that a format change is refused (and the
/// loader demangles) rather than misread.
const KEYS_MAGIC: &[u8] = b"delos-keys v1\0";

/// The bytes of `obj`'s keys section: the magic, the symbol count as a little-endian `u32`,
/// then one NUL-terminated key per symbol, in symbol-table order (empty where [`wants_key`]
/// says none is needed).
pub fn keys_section(obj: &ObjectFile<'_>) -> Vec<u8> {
    let mut out = Vec::from(KEYS_MAGIC);
    out.extend_from_slice(&(obj.symbols.len() as u32).to_le_bytes());
    for s in &obj.symbols {
        if wants_key(s) {
            out.extend_from_slice(crate::symbols::exact_key(s.name).as_bytes());
        }
        out.push(0);
    }
    out
}

/// Whether symbol `s` needs a key when loaded: it is exported (defined and global) or looked
/// up (undefined).
pub fn wants_key(s: &ObjSymbol<'_>) -> bool {
    !s.name.is_empty()
        && !matches!(s.kind, SymKind::Section)
        && (s.def == SymDef::Undefined || (s.global && matches!(s.def, SymDef::Section(_))))
}

/// The keys of a keys section, if it is well formed for `count` symbols.
fn read_keys(data: &[u8], count: usize) -> Option<Vec<&str>> {
    let rest = data.strip_prefix(KEYS_MAGIC)?;
    let n = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    if n != count {
        return None;
    }
    let body = rest.get(4..)?.strip_suffix(&[0])?;
    let keys: Vec<&str> = body.split(|&b| b == 0).map(core::str::from_utf8).collect::<Result<_, _>>().ok()?;
    (keys.len() == count).then_some(keys)
}

/// A parsed object.
#[derive(Debug)]
pub struct ObjectFile<'a> {
    /// The file name (for errors).
    pub file: String,
    /// Sections by ELF index.
    pub sections: Vec<ObjSection<'a>>,
    /// Symbols by ELF index.
    pub symbols: Vec<ObjSymbol<'a>>,
    /// Relocations by the index of the section they apply to.
    pub relocs: Vec<Vec<ObjReloc>>,
    /// Prepared symbol keys by symbol index (empty: the object has none; see the module docs).
    pub keys: Vec<&'a str>,
}

impl ObjectFile<'_> {
    /// The symbol map's key of symbol `index`: prepared, or demangled now.
    pub fn exact_key(&self, index: usize) -> String {
        match self.keys.get(index) {
            Some(k) if !k.is_empty() => String::from(*k),
            _ => crate::symbols::exact_key(self.symbols.get(index).map_or("", |s| s.name)),
        }
    }
}

fn malformed(file: &str, e: impl core::fmt::Display) -> LoadError {
    LoadError::Malformed { file: file.to_string(), detail: e.to_string() }
}

/// Parses and validates a relocatable x86_64 ELF object.
pub fn parse<'a>(file: &str, data: &'a [u8]) -> Result<ObjectFile<'a>, LoadError> {
    let hdr = FileHeader64::<LE>::parse(data).map_err(|e| malformed(file, e))?;
    let endian = hdr.endian().map_err(|e| malformed(file, e))?;
    let wrong = |detail: String| LoadError::WrongKind { file: file.to_string(), detail };
    if hdr.e_type(endian) != elf::ET_REL {
        return Err(wrong(format!("not a relocatable object (e_type {})", hdr.e_type(endian).0)));
    }
    if hdr.e_machine(endian) != elf::EM_X86_64 {
        return Err(wrong(format!("not an x86_64 object (e_machine {})", hdr.e_machine(endian).0)));
    }
    let table = hdr.sections(endian, data).map_err(|e| malformed(file, e))?;
    let mut sections = Vec::with_capacity(table.len());
    let mut symtab_index = None;
    let mut keys_data: &[u8] = &[];
    for (i, sh) in table.iter().enumerate() {
        let name = table.section_name(endian, sh).ok().and_then(|n| core::str::from_utf8(n).ok()).unwrap_or("");
        let flags = sh.sh_flags(endian).0;
        let ty = sh.sh_type(endian);
        if ty == elf::SHT_SYMTAB {
            if symtab_index.is_some() {
                return Err(malformed(file, "more than one symbol table"));
            }
            symtab_index = Some(i);
        }
        let align = match sh.sh_addralign(endian) {
            0 => 1,
            a if a.is_power_of_two() => a,
            a => return Err(malformed(file, format!("section {name}: alignment {a} is not a power of two"))),
        };
        let size = sh.sh_size(endian);
        let alloc = flags & elf::SHF_ALLOC.0 != 0;
        let kind = if !alloc || ty == elf::SHT_GROUP {
            None
        } else if flags & elf::SHF_TLS.0 != 0 {
            Some(if ty == elf::SHT_NOBITS { SectionKind::TlsBss } else { SectionKind::TlsData })
        } else if flags & elf::SHF_EXECINSTR.0 != 0 {
            Some(SectionKind::Text)
        } else if flags & elf::SHF_WRITE.0 != 0 {
            Some(if ty == elf::SHT_NOBITS { SectionKind::Bss } else { SectionKind::Data })
        } else {
            Some(SectionKind::Rodata)
        };
        if kind.is_some() && size > MAX_SECTION {
            return Err(LoadError::TooLarge { file: file.to_string(), what: format!("section {name}"), size, limit: MAX_SECTION });
        }
        if kind.is_some() && align > 1 << 16 {
            return Err(malformed(file, format!("section {name}: alignment {align} is absurd")));
        }
        if kind.is_none() && name == KEYS_SECTION {
            keys_data = sh.data(endian, data).unwrap_or_default();
        }
        let data = if kind.is_some() && ty != elf::SHT_NOBITS {
            let d = sh.data(endian, data).map_err(|e| malformed(file, format!("section {name}: {e}")))?;
            if d.len() as u64 != size {
                return Err(malformed(file, format!("section {name}: data size differs from sh_size")));
            }
            d
        } else {
            &[][..]
        };
        sections.push(ObjSection { name, kind, size, align, data });
    }

    let mut symbols = Vec::new();
    if let Some(si) = symtab_index {
        let symtab = table.symbols(endian, data, elf::SHT_SYMTAB).map_err(|e| malformed(file, e))?;
        symbols.reserve(symtab.len());
        for (i, sym) in symtab.iter().enumerate() {
            let name = symtab.symbol_name(endian, sym).ok().and_then(|n| core::str::from_utf8(n).ok()).unwrap_or("");
            let bad = |detail| LoadError::BadSymbol { file: file.to_string(), index: i, name: name.to_string(), detail };
            let shndx = sym.st_shndx(endian);
            let def = if shndx == elf::SHN_UNDEF {
                SymDef::Undefined
            } else if shndx == elf::SHN_ABS {
                SymDef::Absolute
            } else if shndx == elf::SHN_COMMON {
                return Err(bad("common symbols are not supported"));
            } else {
                match symtab.symbol_section(endian, sym, object::SymbolIndex(i)).map_err(|e| malformed(file, e))? {
                    Some(s) if s.0 < sections.len() => SymDef::Section(s.0),
                    Some(_) => return Err(bad("section index out of range")),
                    None => SymDef::Undefined,
                }
            };
            let kind = match sym.st_type() {
                elf::STT_FUNC => SymKind::Func,
                elf::STT_OBJECT => SymKind::Object,
                elf::STT_SECTION => SymKind::Section,
                elf::STT_TLS => SymKind::Tls,
                _ => SymKind::Other,
            };
            let bind = sym.st_bind();
            let global = bind == elf::STB_GLOBAL || bind == elf::STB_WEAK;
            symbols.push(ObjSymbol { name, def, value: sym.st_value(endian), size: sym.st_size(endian), global, kind });
        }
        let _ = si;
    }

    let mut relocs = alloc::vec![Vec::new(); sections.len()];
    for (i, sh) in table.iter().enumerate() {
        let ty = sh.sh_type(endian);
        if ty == elf::SHT_REL {
            return Err(LoadError::WrongKind {
                file: file.to_string(),
                detail: format!("section #{i} uses REL relocations; x86_64 objects use RELA"),
            });
        }
        let Some((rela, link)) = sh.rela(endian, data).map_err(|e| malformed(file, e))? else { continue };
        if symtab_index != Some(link.0) && !rela.is_empty() {
            return Err(malformed(file, format!("relocation section #{i} does not use the symbol table")));
        }
        let target = sh.sh_info(endian) as usize;
        if target >= sections.len() {
            return Err(malformed(file, format!("relocation section #{i} applies to missing section #{target}")));
        }
        if sections[target].kind.is_none() {
            continue; // debug info and other unloaded sections
        }
        let list = &mut relocs[target];
        list.reserve(rela.len());
        for r in rela {
            let sym = r.r_sym(endian, false) as usize;
            if sym >= symbols.len() {
                return Err(LoadError::BadRelocation {
                    file: file.to_string(),
                    section: sections[target].name.to_string(),
                    offset: r.r_offset(endian),
                    detail: "symbol index out of range",
                });
            }
            list.push(ObjReloc { offset: r.r_offset(endian), r_type: r.r_type(endian, false).0, sym, addend: r.r_addend(endian) });
        }
    }
    let keys = read_keys(keys_data, symbols.len()).unwrap_or_default();
    Ok(ObjectFile { file: file.to_string(), sections, symbols, relocs, keys })
}

/// Defined global symbols of an object, without loading it (for the load-on-demand index).
/// Reads only the header, the section table and the symbol table.
pub fn defined_globals<'a>(file: &str, data: &'a [u8]) -> Result<Vec<&'a str>, LoadError> {
    let hdr = FileHeader64::<LE>::parse(data).map_err(|e| malformed(file, e))?;
    let endian = hdr.endian().map_err(|e| malformed(file, e))?;
    let table = hdr.sections(endian, data).map_err(|e| malformed(file, e))?;
    let symtab = table.symbols(endian, data, elf::SHT_SYMTAB).map_err(|e| malformed(file, e))?;
    Ok(symtab
        .iter()
        .filter(|s| (s.st_bind() == elf::STB_GLOBAL || s.st_bind() == elf::STB_WEAK) && s.st_shndx(endian) != elf::SHN_UNDEF)
        .filter_map(|s| symtab.symbol_name(endian, s).ok().and_then(|n| core::str::from_utf8(n).ok()))
        .filter(|n| !n.is_empty())
        .collect())
}
