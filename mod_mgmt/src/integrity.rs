//! Integrity of loaded code: a hash of each crate's code and read-only data as placed.
//!
//! Code and constants never change after a crate is linked — except where the loader itself
//! rewrites them (a swap relinking the crate's references to another crate). So the loader
//! records a hash of every page when it links a crate, and again for the pages a rewrite
//! touched (a relink costs the pages it changed, not the crate's size), and
//! [`Loader::verify`] tells whether the bytes in memory are still those: a bit flipped in a crate's code (by a
//! fault, a stray write through a bad mapping, or a fault-injection campaign) is found before
//! or after it runs, and the crate can be reloaded from its object.
//!
//! The hash is not cryptographic (the trust in what was loaded comes from signatures, see
//! nano_core's `trust`); it must only be fast: 64-bit words, multiply-xor mixing.
//!
//! With the hash the loader keeps a copy of those bytes ([`Sealed`]), so corrupted code is
//! repaired in place ([`Loader::restore_code`]): the changed bytes are written back, at the same
//! addresses, with nothing to relink — what a fault handler can do for the very instruction
//! that faulted, and what repairs a crate that is always running (the scheduler, the task
//! switch) where reloading it would be a swap of the code in use. The copy is checked against
//! the hash before it is used; a damaged copy leaves reloading the crate from its object.

use crate::crates::LoadedCrate;
use crate::error::LoadError;
use crate::ids::CrateId;
use crate::loader::Loader;
use crate::memory::Perms;
use alloc::format;
use alloc::vec::Vec;

/// What a verification found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// The crate.
    pub krate: CrateId,
    /// The first 512-byte granule (its address) whose hash changed.
    pub page: u64,
    /// The hash of that page now.
    pub hash_now: u64,
    /// The hash the loader recorded when it last linked or rewrote it.
    pub hash_then: u64,
}

/// Granule of the hashes (a "page" here): small, so that a relink that touches a few words in
/// many places rehashes little (a swap of a crate with 1,359 users' references into a 5 MiB
/// crate rehashed 5 MiB with 4 KiB granules); 8 bytes of hash per 512 bytes of code.
const PAGE: usize = 512;

/// One part (code, or read-only data) of a sealed crate: its address, a copy of its bytes,
/// and a hash per page of the copy.
#[derive(Debug, Clone, Default)]
struct SealedPart {
    addr: u64,
    bytes: Vec<u8>,
    pages: Vec<u64>,
}

impl SealedPart {
    fn page_range(&self, i: usize) -> core::ops::Range<usize> {
        i * PAGE..((i + 1) * PAGE).min(self.bytes.len())
    }

    /// The hash of page `i` of the copy.
    fn hash_of_copy(&self, i: usize) -> u64 {
        let r = self.page_range(i);
        hash_range(SEED, self.bytes[r.clone()].as_ptr() as u64, r.len() as u64)
    }

    /// The hash of page `i` as it is in memory.
    fn hash_in_memory(&self, i: usize) -> u64 {
        let r = self.page_range(i);
        hash_range(SEED, self.addr + r.start as u64, r.len() as u64)
    }
}

/// A copy of a crate's code and read-only data as sealed, with a hash per page.
#[derive(Debug, Clone, Default)]
pub struct Sealed {
    parts: Vec<SealedPart>,
}

impl Sealed {
    /// Copies and hashes `k`'s code and read-only parts as they are in memory now.
    fn of(k: &LoadedCrate) -> Sealed {
        let parts = k
            .regions()
            .filter(|r| r.2 != Perms::ReadWrite)
            .map(|(addr, size, _)| {
                // SAFETY: a part of a loaded crate's own region: mapped and readable.
                let bytes = unsafe { core::slice::from_raw_parts(addr as *const u8, size) }.to_vec();
                let mut part = SealedPart { addr, bytes, pages: Vec::new() };
                part.pages = (0..size.div_ceil(PAGE)).map(|i| part.hash_of_copy(i)).collect();
                part
            })
            .collect();
        Sealed { parts }
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.bytes.len()).sum()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One hash for the whole crate (of the page hashes): what `ns` and tests compare.
    fn summary(&self) -> u64 {
        self.parts.iter().flat_map(|p| p.pages.iter()).fold(SEED, |h, p| (h ^ p).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29))
    }

    /// Whether the copy still matches its own page hashes (a damaged copy must not be used).
    fn intact(&self) -> bool {
        self.parts.iter().all(|p| (0..p.pages.len()).all(|i| p.hash_of_copy(i) == p.pages[i]))
    }
}

/// Why [`Loader::restore_code`] could not repair a crate in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreError {
    /// No such live crate, or one without a sealed copy (prelinked).
    NoCopy,
    /// The sealed copy itself no longer matches the hash: only the object can repair it.
    CopyDamaged,
    /// Writing the bytes back failed (permissions).
    Write,
}

/// What [`Loader::restore_code`] wrote back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Restored {
    /// Bytes that differed and were restored.
    pub bytes: u64,
    /// The lowest and highest+1 address restored (equal when nothing differed).
    pub first: u64,
    /// See [`Restored::first`].
    pub end: u64,
}

const SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// Hashes `[start, start+len)` (mapped, readable, 8-byte aligned length not required).
fn hash_range(mut h: u64, start: u64, len: u64) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let words = len / 8;
    for i in 0..words {
        // SAFETY: the caller passes a mapped, readable range of a loaded crate.
        let w = unsafe { ((start + i * 8) as *const u64).read_unaligned() };
        h = (h ^ w).wrapping_mul(K).rotate_left(29);
    }
    for i in words * 8..len {
        // SAFETY: as above.
        let b = unsafe { ((start + i) as *const u8).read() };
        h = (h ^ u64::from(b)).wrapping_mul(K);
    }
    h ^ len
}

impl Loader {
    /// Records a copy of `id`'s code and read-only data as they are now, and their hashes.
    pub(crate) fn seal(&mut self, id: CrateId) {
        let Some(k) = self.crates.get(&id) else { return };
        let sealed = (!k.prelinked).then(|| Sealed::of(k));
        if let Some(k) = self.crates.get_mut(&id) {
            k.integrity = sealed.as_ref().map(Sealed::summary);
            k.sealed = sealed;
        }
    }

    /// After the loader rewrote the `(address, width)` places in `id` (a relink), takes those
    /// bytes into the sealed copy and rehashes only the pages they lie on.
    pub(crate) fn reseal_places(&mut self, id: CrateId, places: &[(u64, usize)]) {
        let Some(k) = self.crates.get_mut(&id) else { return };
        let Some(sealed) = k.sealed.as_mut() else { return };
        for part in &mut sealed.parts {
            let mut dirty: Vec<usize> = Vec::new();
            for &(p, width) in places {
                let Some(off) = p.checked_sub(part.addr).map(|o| o as usize).filter(|o| *o < part.bytes.len()) else { continue };
                let end = (off + width.max(1)).min(part.bytes.len());
                // SAFETY: `part.addr + off .. + end` lies in the crate's own mapped part.
                let now = unsafe { core::slice::from_raw_parts((part.addr + off as u64) as *const u8, end - off) };
                part.bytes[off..end].copy_from_slice(now);
                dirty.extend([off / PAGE, (end - 1) / PAGE]);
            }
            dirty.sort_unstable();
            dirty.dedup();
            for i in dirty {
                part.pages[i] = part.hash_of_copy(i);
            }
        }
        k.integrity = Some(sealed.summary());
    }

    /// Bytes held by sealed copies of live crates.
    pub fn sealed_bytes(&self) -> usize {
        self.crates().filter_map(|k| k.sealed.as_ref()).map(Sealed::len).sum()
    }

    /// Repairs `id` in place: every byte of its code and read-only data that differs from the
    /// sealed copy is written back (each run of changed bytes with one permission change).
    /// Allocates nothing, so a fault handler may call it.
    pub fn restore_code(&mut self, id: CrateId) -> Result<Restored, RestoreError> {
        let k = self.crates.get(&id).filter(|k| !k.is_retired()).ok_or(RestoreError::NoCopy)?;
        let sealed = k.sealed.as_ref().ok_or(RestoreError::NoCopy)?;
        if !sealed.intact() {
            return Err(RestoreError::CopyDamaged);
        }
        // Taken out for the writes (which need `&mut self`), put back after.
        let sealed = self.crates.get_mut(&id).and_then(|k| k.sealed.take()).ok_or(RestoreError::NoCopy)?;
        let mut done = Restored::default();
        let mut result = Ok(());
        'parts: for SealedPart { addr, bytes, .. } in &sealed.parts {
            let mut i = 0;
            while i < bytes.len() {
                // SAFETY: `addr + i` lies in the crate's own mapped part (the copy has its size).
                let now = |j: usize| unsafe { ((addr + j as u64) as *const u8).read_volatile() };
                if now(i) == bytes[i] {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < bytes.len() && now(i) != bytes[i] {
                    i += 1;
                }
                let place = addr + start as u64;
                if self.restore_run(place, &bytes[start..i]).is_err() {
                    result = Err(RestoreError::Write);
                    break 'parts;
                }
                if done.bytes == 0 {
                    done.first = place;
                }
                done.first = done.first.min(place);
                done.end = done.end.max(addr + i as u64);
                done.bytes += (i - start) as u64;
            }
        }
        if let Some(k) = self.crates.get_mut(&id) {
            k.sealed = Some(sealed);
        }
        result.map(|()| done)
    }

    /// Writes `sealed` back at `place`. A run that lies within one aligned 8-byte word is
    /// written with a single 8-byte store: other CPUs may be executing these very bytes (a
    /// `jmp .` that every CPU's scheduler loops in, repaired from the watchdog's NMI), and a
    /// byte-by-byte write let them run a half-repaired instruction (`crash loop
    /// task::choose_next` with `-smp 4`: the first byte back, the second still damaged, and three
    /// APs faulted on the mix). Longer runs are written byte by byte.
    fn restore_run(&mut self, place: u64, sealed: &[u8]) -> Result<(), crate::swap::SwapError> {
        let word = place & !7;
        if place + sealed.len() as u64 > word + 8 {
            return self.write_at(place, sealed.len(), |b| b.copy_from_slice(sealed));
        }
        self.write_at(word, 8, |b| {
            let mut new = [0u8; 8];
            new.copy_from_slice(b);
            let at = (place - word) as usize;
            new[at..at + sealed.len()].copy_from_slice(sealed);
            // SAFETY: `b` is the 8 bytes at `word`, 8-aligned and writable for this call: one
            // aligned store, atomic for every CPU.
            unsafe { (b.as_mut_ptr() as *mut u64).write_volatile(u64::from_ne_bytes(new)) };
        })
    }

    /// For a fault at `rip`: if the live crate whose code contains `rip` was corrupted, repairs
    /// it in place and returns what was restored (the caller decides whether the faulting
    /// instruction may simply run again). Allocates nothing.
    pub fn restore_at(&mut self, rip: u64) -> Option<(CrateId, Restored)> {
        let (id, _) = self.code_offset(rip)?;
        self.verify(id).err()?;
        self.restore_code(id).ok().map(|r| (id, r))
    }

    /// Repairs every live crate whose code or read-only data changed, in crate order, calling
    /// `each` for each repair; returns the bytes restored in all. Allocates nothing (the
    /// watchdog calls it from an NMI, whose interrupted code may hold the heap).
    pub fn restore_all(&mut self, mut each: impl FnMut(&Self, CrateId, &Restored)) -> u64 {
        let mut total = 0;
        let mut next = Some(CrateId(0));
        while let Some(from) = next {
            let Some(id) = self.crates.range(from..).map(|(id, _)| *id).next() else { break };
            next = id.0.checked_add(1).map(CrateId);
            if self.crates.get(&id).is_none_or(|k| k.is_retired()) || self.verify(id).is_ok() {
                continue;
            }
            if let Ok(r) = self.restore_code(id) {
                total += r.bytes;
                each(self, id, &r);
            }
        }
        total
    }

    /// Whether `id`'s code and read-only data are what the loader linked (or last rewrote).
    pub fn verify(&self, id: CrateId) -> Result<(), Corruption> {
        let Some(sealed) = self.crates.get(&id).and_then(|k| k.sealed.as_ref()) else { return Ok(()) };
        for part in &sealed.parts {
            for (i, then) in part.pages.iter().enumerate() {
                let now = part.hash_in_memory(i);
                if now != *then {
                    return Err(Corruption { krate: id, page: part.addr + (i * PAGE) as u64, hash_now: now, hash_then: *then });
                }
            }
        }
        Ok(())
    }

    /// Every live (not retired) crate whose code or read-only data changed.
    pub fn verify_all(&self) -> Vec<Corruption> {
        self.crates().filter(|k| !k.is_retired()).filter_map(|k| self.verify(k.id).err()).collect()
    }

    /// Flips bit `bit` of the byte at `offset` in `id`'s code (W^X kept: the page is writable
    /// only for the write); returns the address. For fault-injection tests and campaigns only.
    pub fn flip_code_bit(&mut self, id: CrateId, offset: u64, bit: u8) -> Result<u64, LoadError> {
        self.tamper_code(id, offset, 1, |b| b[0] ^= 1 << (bit % 8))
    }

    /// Overwrites `id`'s code at `offset` with `bytes` (for instance `ud2`, so the next call
    /// faults for certain); returns the address. For fault-injection tests only.
    pub fn overwrite_code(&mut self, id: CrateId, offset: u64, bytes: &[u8]) -> Result<u64, LoadError> {
        self.tamper_code(id, offset, bytes.len(), |b| b.copy_from_slice(bytes))
    }

    /// Flips bit `bit` of the byte at `offset` of `id`'s sealed copy of its code, so that an
    /// in-place repair is impossible and only a reload repairs the crate. Fault injection only.
    pub fn flip_sealed_bit(&mut self, id: CrateId, offset: u64, bit: u8) -> Result<(), LoadError> {
        let k = self.crates.get_mut(&id).ok_or_else(|| LoadError::NoSuchCrate(format!("{id}")))?;
        let name = k.name.clone();
        let part = k
            .sealed
            .as_mut()
            .and_then(|s| s.parts.first_mut())
            .ok_or_else(|| LoadError::NotCode(format!("crate {name}: no sealed copy")))?;
        let b = part.bytes.get_mut(offset as usize).ok_or_else(|| LoadError::NotCode(format!("crate {name} at offset {offset:#x}")))?;
        *b ^= 1 << (bit % 8);
        Ok(())
    }

    /// Flips bit `bit` of the byte at `addr`, which must lie in the read-only data of a live
    /// crate loaded by the loader: what a flipped bit in a table of code addresses does (the
    /// scrubber and a fault's check repair it from the sealed copy). Returns the crate's name.
    /// Fault injection only.
    pub fn flip_readonly_bit(&mut self, addr: u64, bit: u8) -> Result<alloc::string::String, LoadError> {
        let k = self
            .crates()
            .find(|k| !k.is_retired() && k.regions().any(|r| r.2 == Perms::Read && (r.0..r.0 + r.1 as u64).contains(&addr)))
            .ok_or_else(|| LoadError::NotCode(format!("{addr:#x} is not in the read-only data of a live crate")))?;
        if k.prelinked {
            return Err(LoadError::NotCode(format!("crate {}: it is part of nano_core", k.name)));
        }
        let name = k.name.clone();
        self.write_at(addr, 1, |b| b[0] ^= 1 << (bit % 8)).map_err(|e| LoadError::NotCode(format!("{addr:#x}: {e}")))?;
        Ok(name)
    }

    /// The offset of `addr` in the code of the live crate that contains it.
    pub fn code_offset(&self, addr: u64) -> Option<(CrateId, u64)> {
        let k = self
            .crates()
            .find(|k| !k.is_retired() && k.regions().any(|r| r.2 == Perms::ReadExec && (r.0..r.0 + r.1 as u64).contains(&addr)))?;
        let (start, _, _) = k.regions().find(|r| r.2 == Perms::ReadExec)?;
        Some((k.id, addr - start))
    }

    fn tamper_code(&mut self, id: CrateId, offset: u64, len: usize, edit: impl FnOnce(&mut [u8])) -> Result<u64, LoadError> {
        let k = self.crates.get(&id).ok_or_else(|| LoadError::NoSuchCrate(format!("{id}")))?;
        if k.prelinked || k.is_retired() {
            return Err(LoadError::NotCode(format!(
                "crate {}: it is {}",
                k.name,
                if k.prelinked { "part of nano_core" } else { "retired" }
            )));
        }
        let (addr, size, _) =
            k.regions().find(|r| r.2 == Perms::ReadExec).ok_or_else(|| LoadError::NotCode(format!("crate {}: it has no code", k.name)))?;
        if offset + len as u64 > size as u64 {
            return Err(LoadError::NotCode(format!("crate {} at offset {offset:#x}: its code is {size:#x} bytes", k.name)));
        }
        let place = addr + offset;
        self.write_at(place, len, edit).map_err(|e| LoadError::NotCode(format!("{place:#x}: {e}")))?;
        Ok(place)
    }
}
