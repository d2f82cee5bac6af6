//! Applying x86_64 relocations.
//!
//! Supported (and why): `R_X86_64_64` and `R_X86_64_PC64` are all that rustc emits for our
//! target (code model large, relocation model static): absolute pointers in code and data,
//! PC-relative pointers in `.eh_frame`. `PC32`, `PLT32` (no PLT here: a direct PC-relative
//! reference), `32` and `32S` appear in hand-written assembly and in objects built with smaller
//! code models; they are range-checked. `TPOFF32`/`TPOFF64` are local-exec TLS offsets from
//! the thread pointer, computed against the TLS image. Anything else is rejected by name.

/// A relocation type we know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelocKind {
    /// Nothing to do.
    None,
    /// S + A, 64 bits.
    Abs64,
    /// S + A, 32 bits zero-extended.
    Abs32,
    /// S + A, 32 bits sign-extended.
    Abs32S,
    /// S + A - P, 32 bits signed.
    Pc32,
    /// S + A - P, 64 bits.
    Pc64,
    /// TLS offset + A, 32 bits signed.
    TpOff32,
    /// TLS offset + A, 64 bits.
    TpOff64,
}

/// `R_X86_64_*` names by number, for messages.
pub fn type_name(r_type: u32) -> &'static str {
    match r_type {
        0 => "R_X86_64_NONE",
        1 => "R_X86_64_64",
        2 => "R_X86_64_PC32",
        3 => "R_X86_64_GOT32",
        4 => "R_X86_64_PLT32",
        5 => "R_X86_64_COPY",
        6 => "R_X86_64_GLOB_DAT",
        7 => "R_X86_64_JUMP_SLOT",
        8 => "R_X86_64_RELATIVE",
        9 => "R_X86_64_GOTPCREL",
        10 => "R_X86_64_32",
        11 => "R_X86_64_32S",
        12 => "R_X86_64_16",
        13 => "R_X86_64_PC16",
        14 => "R_X86_64_8",
        15 => "R_X86_64_PC8",
        16 => "R_X86_64_DTPMOD64",
        17 => "R_X86_64_DTPOFF64",
        18 => "R_X86_64_TPOFF64",
        19 => "R_X86_64_TLSGD",
        20 => "R_X86_64_TLSLD",
        21 => "R_X86_64_DTPOFF32",
        22 => "R_X86_64_GOTTPOFF",
        23 => "R_X86_64_TPOFF32",
        24 => "R_X86_64_PC64",
        25 => "R_X86_64_GOTOFF64",
        26 => "R_X86_64_GOTPC32",
        41 => "R_X86_64_GOTPCRELX",
        42 => "R_X86_64_REX_GOTPCRELX",
        _ => "unknown",
    }
}

impl RelocKind {
    /// Classifies `r_type`; `None` if unsupported.
    pub fn from_type(r_type: u32) -> Option<RelocKind> {
        Some(match r_type {
            0 => RelocKind::None,
            1 => RelocKind::Abs64,
            2 | 4 => RelocKind::Pc32,
            10 => RelocKind::Abs32,
            11 => RelocKind::Abs32S,
            18 => RelocKind::TpOff64,
            23 => RelocKind::TpOff32,
            24 => RelocKind::Pc64,
            _ => return None,
        })
    }

    /// Bytes written at the place.
    pub fn width(self) -> usize {
        match self {
            RelocKind::None => 0,
            RelocKind::Abs64 | RelocKind::Pc64 | RelocKind::TpOff64 => 8,
            _ => 4,
        }
    }

    /// Whether S is a TLS offset rather than an address.
    pub fn is_tls(self) -> bool {
        matches!(self, RelocKind::TpOff32 | RelocKind::TpOff64)
    }
}

/// Why a value could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// The place is outside the section.
    OutOfBounds,
    /// The value does not fit; carries the value.
    Overflow(i128),
}

/// Computes and writes one relocation into `section` (the bytes of the target section) at
/// `offset`. `s` is the symbol's address (or TLS offset), `p` the place's final address.
pub fn apply(kind: RelocKind, section: &mut [u8], offset: u64, s: i128, a: i64, p: u64) -> Result<(), WriteError> {
    let w = kind.width();
    let off = usize::try_from(offset).map_err(|_| WriteError::OutOfBounds)?;
    let end = off.checked_add(w).ok_or(WriteError::OutOfBounds)?;
    let place = section.get_mut(off..end).ok_or(WriteError::OutOfBounds)?;
    let a = i128::from(a);
    let p = i128::from(p);
    let v = match kind {
        RelocKind::None => return Ok(()),
        RelocKind::Abs64 | RelocKind::Abs32 | RelocKind::Abs32S | RelocKind::TpOff32 | RelocKind::TpOff64 => s + a,
        RelocKind::Pc32 | RelocKind::Pc64 => s + a - p,
    };
    match kind {
        RelocKind::Abs64 | RelocKind::Pc64 | RelocKind::TpOff64 => place.copy_from_slice(&(v as u64).to_le_bytes()),
        RelocKind::Abs32 => place.copy_from_slice(&u32::try_from(v).map_err(|_| WriteError::Overflow(v))?.to_le_bytes()),
        RelocKind::Abs32S | RelocKind::Pc32 | RelocKind::TpOff32 => {
            place.copy_from_slice(&i32::try_from(v).map_err(|_| WriteError::Overflow(v))?.to_le_bytes())
        }
        RelocKind::None => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computes_values() {
        let mut b = [0u8; 16];
        apply(RelocKind::Abs64, &mut b, 0, 0x1000, 8, 0).unwrap();
        assert_eq!(u64::from_le_bytes(b[..8].try_into().unwrap()), 0x1008);
        apply(RelocKind::Pc32, &mut b, 8, 0x1000, -4, 0x900).unwrap();
        assert_eq!(i32::from_le_bytes(b[8..12].try_into().unwrap()), 0x1000 - 4 - 0x900);
        apply(RelocKind::Pc64, &mut b, 8, 0x10, 0, 0x20).unwrap();
        assert_eq!(i64::from_le_bytes(b[8..16].try_into().unwrap()), -0x10);
        apply(RelocKind::TpOff32, &mut b, 0, -64, 4, 0).unwrap();
        assert_eq!(i32::from_le_bytes(b[..4].try_into().unwrap()), -60);
    }

    #[test]
    fn checks_range_and_bounds() {
        let mut b = [0u8; 8];
        assert_eq!(apply(RelocKind::Abs64, &mut b, 1, 0, 0, 0), Err(WriteError::OutOfBounds));
        assert_eq!(apply(RelocKind::Abs32, &mut b, u64::MAX, 0, 0, 0), Err(WriteError::OutOfBounds));
        assert_eq!(apply(RelocKind::Abs32, &mut b, 0, 1 << 32, 0, 0), Err(WriteError::Overflow(1 << 32)));
        assert_eq!(apply(RelocKind::Abs32S, &mut b, 0, 0x8000_0000, 0, 0), Err(WriteError::Overflow(0x8000_0000)));
        assert!(apply(RelocKind::Abs32S, &mut b, 0, -0x8000_0000, 0, 0).is_ok());
        assert!(apply(RelocKind::Pc32, &mut b, 0, 0xFFFF_FFFF_8000_0000u64 as i128, 0, 0x1000).is_err());
        assert_eq!(RelocKind::from_type(9), None);
        assert_eq!(type_name(42), "R_X86_64_REX_GOTPCRELX");
    }
}
