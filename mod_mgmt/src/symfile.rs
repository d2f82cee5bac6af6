//! Reading the symbol file `tools/imgtool` writes for nano_core (format documented there):
//! `section NAME ADDR SIZE PERMS` and `sym ADDR SIZE BIND KIND NAME [KEY]` lines after a
//! `delos-syms 1` header. Hex numbers without `0x`. KEY, the rest of the line, is the symbol's
//! precomputed map key (its demangled name), which spares the kernel the demangling.

use crate::elf::SectionKind;
use crate::error::LoadError;
use crate::loader::{PrelinkedSection, PrelinkedSymbol};
use alloc::string::ToString;
use alloc::vec::Vec;

fn hex(s: Option<&str>, line: usize) -> Result<u64, LoadError> {
    s.and_then(|s| u64::from_str_radix(s, 16).ok()).ok_or(LoadError::SymbolFile { line, detail: "bad hex number" })
}

/// Parses a symbol file into sections and symbols.
pub fn parse(text: &str) -> Result<(Vec<PrelinkedSection>, Vec<PrelinkedSymbol>), LoadError> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, "delos-syms 1")) => {}
        _ => return Err(LoadError::SymbolFile { line: 1, detail: "missing `delos-syms 1` header" }),
    }
    let mut sections = Vec::new();
    let mut symbols = Vec::new();
    for (i, l) in lines {
        let line = i + 1;
        // Seven fields at most: a key (the last) may itself contain spaces.
        let mut f = l.splitn(7, ' ');
        match f.next() {
            Some("section") => {
                let name = f.next().ok_or(LoadError::SymbolFile { line, detail: "missing section name" })?;
                let addr = hex(f.next(), line)?;
                let size = hex(f.next(), line)?;
                let kind = match f.next() {
                    Some("rx") => SectionKind::Text,
                    Some("r") => SectionKind::Rodata,
                    Some("rw") => SectionKind::Data,
                    _ => return Err(LoadError::SymbolFile { line, detail: "bad section permissions" }),
                };
                sections.push(PrelinkedSection { name: name.to_string(), addr, size, kind });
            }
            Some("sym") => {
                let addr = hex(f.next(), line)?;
                let size = hex(f.next(), line)?;
                let global = match f.next() {
                    Some("g") => true,
                    Some("l") => false,
                    _ => return Err(LoadError::SymbolFile { line, detail: "bad binding" }),
                };
                let _kind = f.next().ok_or(LoadError::SymbolFile { line, detail: "missing kind" })?;
                let raw = f.next().filter(|n| !n.is_empty()).ok_or(LoadError::SymbolFile { line, detail: "missing name" })?;
                let key = f.next().map(|k| k.to_string());
                symbols.push(PrelinkedSymbol { raw: raw.to_string(), addr, size, global, key });
            }
            Some("") | None => {}
            Some(_) => return Err(LoadError::SymbolFile { line, detail: "unknown record" }),
        }
    }
    Ok((sections, symbols))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let (s, y) =
            parse("delos-syms 1\nsection .text ffffffff80100000 1000 rx\nsym ffffffff80100010 20 g f memcpy\nsym 1 0 l n x\n").unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].kind, SectionKind::Text);
        assert_eq!(y[0], PrelinkedSymbol { raw: "memcpy".into(), addr: 0xffffffff80100010, size: 0x20, global: true, key: None });
        let (_, y2) =
            parse("delos-syms 1\nsym 10 8 g f _ZN1a1b17h0123456789abcdefE a::b::h0123456789abcdef\nsym 20 8 g f _RNv <a as b>::c\n")
                .unwrap();
        assert_eq!(y2[0].key.as_deref(), Some("a::b::h0123456789abcdef"));
        assert_eq!(y2[1].key.as_deref(), Some("<a as b>::c"));
        assert!(!y[1].global);
        assert!(parse("nope").is_err());
        assert_eq!(parse("delos-syms 1\nsym zz 0 g f a").unwrap_err(), LoadError::SymbolFile { line: 2, detail: "bad hex number" });
        assert!(parse("delos-syms 1\nsection .x 0 0 rwx").is_err());
        assert!(parse("delos-syms 1\nwhat").is_err());
    }
}
