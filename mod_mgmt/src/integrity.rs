//! Integrity of loaded code: a hash of each crate's code and read-only data as placed.
//!
//! Code and constants never change after a crate is linked — except where the loader itself
//! rewrites them (a swap relinking the crate's references to another crate). So the loader
//! records a hash when it links a crate and again after every rewrite, and [`Loader::verify`]
//! tells whether the bytes in memory are still those: a bit flipped in a crate's code (by a
//! fault, a stray write through a bad mapping, or a fault-injection campaign) is found before
//! or after it runs, and the crate can be reloaded from its object.
//!
//! The hash is not cryptographic (the trust in what was loaded comes from signatures, see
//! nano_core's `trust`); it must only be fast: 64-bit words, multiply-xor mixing.

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
    /// The hash of its code and read-only data now.
    pub hash_now: u64,
    /// The hash the loader recorded when it last linked or rewrote them.
    pub hash_then: u64,
}

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

/// The hash of a crate's code and read-only parts as they are in memory now.
pub(crate) fn hash_crate(k: &LoadedCrate) -> Option<u64> {
    if k.prelinked {
        return None;
    }
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for (addr, size, _) in k.regions().filter(|r| r.2 != Perms::ReadWrite) {
        h = hash_range(h, addr, size as u64);
    }
    Some(h)
}

impl Loader {
    /// Records the hash of `id`'s code and read-only data as it is now.
    pub(crate) fn seal(&mut self, id: CrateId) {
        if let Some(k) = self.crates.get(&id) {
            let h = hash_crate(k);
            if let Some(k) = self.crates.get_mut(&id) {
                k.integrity = h;
            }
        }
    }

    /// Whether `id`'s code and read-only data are what the loader linked (or last rewrote).
    pub fn verify(&self, id: CrateId) -> Result<(), Corruption> {
        let Some(k) = self.crates.get(&id) else { return Ok(()) };
        match (k.integrity, hash_crate(k)) {
            (Some(then), Some(now)) if then != now => Err(Corruption { krate: id, hash_now: now, hash_then: then }),
            _ => Ok(()),
        }
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
