//! debuginfo: source locations (file:line:column, with inlined frames) for any address.
//!
//! Every crate is built with DWARF line tables (`debug = "line-tables-only"`); the image puts
//! them in a separate debug module per crate (`debug/<namespace>/<file>`, made by
//! `objcopy --only-keep-debug`: the `.debug_*` sections, their relocations and the symbols),
//! and the object the loader loads has none. The first time an address in a crate is asked
//! about, this crate reads that debug module (or, for an object that came with its own DWARF,
//! such as a swap update, the object), copies its `.debug_*` sections, applies their
//! relocations against where the crate's sections were actually placed, and builds an
//! `addr2line` context, kept for later questions. nano_core's own
//! debug information comes from `nano_core.debug` in the boot image (already linked, so
//! nothing to relocate). Swapped crates are looked up again (their file changes).
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

use addr2line::gimli::{self, EndianSlice, LittleEndian};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use object::LittleEndian as LE;
use object::elf::{self, FileHeader64};
use object::read::elf::{FileHeader, Rela, SectionHeader, Sym};

/// Readers borrow the context's own section bytes (see [`Ctx`]).
type Reader = EndianSlice<'static, LittleEndian>;

/// A crate's `addr2line` context and the relocated DWARF it reads.
struct Ctx {
    // Declared first, so dropped before the bytes it borrows.
    ctx: addr2line::Context<Reader>,
    _bytes: Vec<Box<[u8]>>,
}

// SAFETY: contexts are only used under CACHE's lock, by one task at a time; their interior
// caches are never shared outside it.
unsafe impl Send for Ctx {}

/// Per loaded crate (ids are never reused, so a swapped crate gets a fresh entry): its
/// context, or `None` if it has no usable debug information. Entries of crates that are gone
/// are dropped whenever a new context is built.
static CACHE: spin::Mutex<BTreeMap<u32, Option<Ctx>>> = spin::Mutex::new(BTreeMap::new());

/// One source location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Function (for inlined frames), demangled.
    pub function: Option<String>,
    /// Source file.
    pub file: String,
    /// Line (0 if unknown).
    pub line: u32,
    /// Column (0 if unknown).
    pub column: u32,
}

/// The `.debug_*` sections of an object, relocated against `placed` (section name → address).
fn relocated_debug_sections(data: &[u8], placed: &BTreeMap<&str, u64>) -> Option<BTreeMap<String, Vec<u8>>> {
    let hdr = FileHeader64::<LE>::parse(data).ok()?;
    let endian = hdr.endian().ok()?;
    let sections = hdr.sections(endian, data).ok()?;
    let symtab = sections.symbols(endian, data, elf::SHT_SYMTAB).ok()?;
    let name_of = |sh: &object::elf::SectionHeader64<LE>| sections.section_name(endian, sh).ok().and_then(|n| core::str::from_utf8(n).ok());
    let mut out: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut index_of: BTreeMap<usize, String> = BTreeMap::new();
    for (i, sh) in sections.iter().enumerate() {
        let Some(name) = name_of(sh) else { continue };
        if name.starts_with(".debug_") && sh.sh_type(endian) != elf::SHT_NOBITS {
            out.insert(String::from(name), sh.data(endian, data).ok()?.to_vec());
            index_of.insert(i, String::from(name));
        }
    }
    // The value of each symbol: loaded sections where they were placed, debug sections at 0
    // (references into them are offsets), anything else unknown.
    let value = |sym: &object::elf::Sym64<LE>| -> Option<u64> {
        let idx = sym.st_shndx(endian).index()? as usize;
        let sh = sections.section(object::SectionIndex(idx)).ok()?;
        let name = name_of(sh)?;
        let base = if name.starts_with(".debug_") { 0 } else { *placed.get(name)? };
        Some(base + sym.st_value(endian))
    };
    for sh in sections.iter() {
        let Ok(Some((relas, _))) = sh.rela(endian, data) else { continue };
        let Some(target) = index_of.get(&(sh.sh_info(endian) as usize)) else { continue };
        let Some(bytes) = out.get_mut(target) else { continue };
        for r in relas {
            let Ok(sym) = symtab.symbol(object::SymbolIndex(r.r_sym(endian, false) as usize)) else { continue };
            let Some(s) = value(sym) else { continue };
            let v = s.wrapping_add(r.r_addend(endian) as u64);
            let off = r.r_offset(endian) as usize;
            match r.r_type(endian, false).0 {
                1 if off + 8 <= bytes.len() => bytes[off..off + 8].copy_from_slice(&v.to_le_bytes()),
                10 | 11 if off + 4 <= bytes.len() => bytes[off..off + 4].copy_from_slice(&(v as u32).to_le_bytes()),
                _ => {}
            }
        }
    }
    Some(out)
}

fn context(sections: BTreeMap<String, Vec<u8>>) -> Option<Ctx> {
    let owned: BTreeMap<String, Box<[u8]>> = sections.into_iter().map(|(k, v)| (k, v.into_boxed_slice())).collect();
    let load = |id: gimli::SectionId| -> Result<Reader, gimli::Error> {
        let bytes: &[u8] = owned.get(id.name()).map_or(&[], |b| &b[..]);
        // SAFETY: the boxes move into the `Ctx` built below and are dropped only after its
        // context (field order); a box's contents never move, so the slices stay valid for as
        // long as anything can read them.
        Ok(EndianSlice::new(unsafe { &*(bytes as *const [u8]) }, LittleEndian))
    };
    let dwarf = gimli::Dwarf::load(load).ok()?;
    let ctx = addr2line::Context::from_dwarf(dwarf).ok()?;
    Some(Ctx { ctx, _bytes: owned.into_values().collect() })
}

/// Where a crate's DWARF comes from, copied out of the loader (building a context is heavy:
/// it is not done while holding the loader, where running out of memory would leave it locked).
enum Source {
    /// nano_core's own, already linked.
    Linked(&'static [u8]),
    /// A relocatable object (a debug module, or the crate's own object) and where the crate's
    /// sections were placed.
    Object(mod_mgmt::ObjectBytes, BTreeMap<String, u64>),
}

/// Builds the context for the crate containing `addr` (its key, and the context unless one is
/// cached already).
fn build_for(addr: u64) -> Option<(u32, Option<Ctx>)> {
    let (key, source) = nano_core::kernel::with_loader_ref_unless_held_here(|l| {
        let (sid, _) = l.locate(addr)?;
        let k = l.krate(l.section(sid)?.krate)?;
        let key = k.id.0;
        let mut cache = CACHE.lock();
        if cache.contains_key(&key) {
            return Some((key, None));
        }
        cache.retain(|id, _| l.krate(mod_mgmt::CrateId(*id)).is_some());
        drop(cache);
        let boot = &nano_core::kernel::boot_state().modules;
        if k.prelinked {
            // JIT code has no DWARF; only nano_core's is in the image.
            let m = boot.iter().find(|m| k.name == "nano_core" && m.name == "nano_core.debug")?;
            return Some((key, Some(Source::Linked(m.data))));
        }
        let ns = l.namespace(k.namespace)?;
        let placed = k.sections.iter().filter_map(|s| l.section(*s)).map(|s| (s.name.clone(), s.addr)).collect();
        // The image keeps our crates' DWARF in separate debug modules (`debug/<ns>/<file>`);
        // an object from elsewhere (a swap update, `make push`) carries its own.
        let module = alloc::format!("debug/{}/{}", ns.name, k.file);
        let bytes = match boot.iter().find(|m| m.name == module) {
            Some(m) => mod_mgmt::ObjectBytes::Static(m.data),
            None => ns.file_bytes(&k.file)?,
        };
        Some((key, Some(Source::Object(bytes, placed))))
    })
    .flatten()?;
    // `None`: the context is cached already.
    let built = match source {
        None => None,
        Some(Source::Linked(data)) => relocated_debug_sections(data, &BTreeMap::new()).and_then(context),
        Some(Source::Object(bytes, placed)) => {
            let placed: BTreeMap<&str, u64> = placed.iter().map(|(n, a)| (n.as_str(), *a)).collect();
            relocated_debug_sections(&bytes, &placed).and_then(context)
        }
    };
    Some((key, built))
}

/// A source location: file, line, column.
pub type SourcePos<'a> = (&'a str, u32, u32);

/// What [`with_location`] calls with the innermost and the outermost location of an address.
pub type LocationSink<'s> = dyn for<'a> FnMut(SourcePos<'a>, SourcePos<'a>) + 's;

/// Calls `f(innermost, outermost)` with the source locations of `addr` — the innermost inlined
/// frame and the frame of the function that contains it (the same if nothing was inlined) —
/// without allocating once the crate's context exists. Returns `false` if nothing is known.
pub fn with_location(addr: u64, f: &mut LocationSink<'_>) -> bool {
    // addr2line builds its tables lazily, full of code addresses: bookkeeping, kept in the
    // metadata heap so that a swap's reference scan does not take them for references.
    // Building a crate's context and its line tables is the longest work a fault report does
    // with interrupts off: the watchdog allows it the loader's limit.
    nano_core::kernel::long_work(|| nano_core::heap::metadata(|| with_location_inner(addr, f)))
}

fn with_location_inner(addr: u64, f: &mut LocationSink<'_>) -> bool {
    let Some((key, built)) = build_for(addr) else { return false };
    let mut cache = CACHE.lock();
    if built.is_some() || !cache.contains_key(&key) {
        cache.insert(key, built);
    }
    let Some(Some(ctx)) = cache.get(&key) else { return false };
    let Ok(mut frames) = ctx.ctx.find_frames(addr).skip_all_loads() else { return false };
    let (mut first, mut last) = (None, None);
    while let Ok(Some(fr)) = frames.next() {
        if let Some(loc) = fr.location {
            let l = (loc.file.unwrap_or("?"), loc.line.unwrap_or(0), loc.column.unwrap_or(0));
            first.get_or_insert(l);
            last = Some(l);
        }
    }
    match (first, last) {
        (Some(a), Some(b)) => {
            f(a, b);
            true
        }
        _ => false,
    }
}

/// The source locations of `addr`, innermost (inlined) first; empty if unknown.
pub fn locate(addr: u64) -> Vec<Location> {
    let found = nano_core::kernel::long_work(|| nano_core::heap::metadata(|| locate_inner(addr)));
    // The result leaves the cache: copy it into the caller's heap.
    found
        .into_iter()
        .map(|l| Location { function: l.function.map(|f| String::from(f.as_str())), file: String::from(l.file.as_str()), ..l })
        .collect()
}

fn locate_inner(addr: u64) -> Vec<Location> {
    let Some((key, built)) = build_for(addr) else { return Vec::new() };
    let mut cache = CACHE.lock();
    if built.is_some() || !cache.contains_key(&key) {
        cache.insert(key, built);
    }
    let Some(Some(ctx)) = cache.get(&key) else { return Vec::new() };
    let mut out = Vec::new();
    if let Ok(mut frames) = ctx.ctx.find_frames(addr).skip_all_loads() {
        while let Ok(Some(f)) = frames.next() {
            let function = f.function.as_ref().and_then(|n| n.raw_name().ok()).map(|n| mod_mgmt::agnostic_key(n.as_ref()));
            if let Some(loc) = f.location {
                out.push(Location {
                    function,
                    file: String::from(loc.file.unwrap_or("?")),
                    line: loc.line.unwrap_or(0),
                    column: loc.column.unwrap_or(0),
                });
            }
        }
    }
    out
}

/// `file:line:column` of `addr` in the function that contains it (the outermost frame), plus
/// the innermost inlined location when code was inlined there — for backtraces.
pub fn describe(addr: u64) -> Option<String> {
    let mut found = None;
    with_location(addr, &mut |inner, outer| {
        found = Some((String::from(inner.0), inner.1, inner.2, String::from(outer.0), outer.1, outer.2))
    });
    // Formatted outside `with_location`, so the string lives in the caller's heap.
    let (ifile, iline, icol, ofile, oline, ocol) = found?;
    let mut s = format!("{ofile}:{oline}:{ocol}");
    if (ifile.as_str(), iline, icol) != (ofile.as_str(), oline, ocol) {
        s.push_str(&format!(" (inlined: {ifile}:{iline}:{icol})"));
    }
    Some(s)
}

/// Makes exception reports and backtraces show source locations.
pub fn init() {
    exceptions::set_location_hook(describe);
    log::info!("debuginfo: source locations from DWARF line tables, loaded per crate on first use");
}
