//! Number parsing: the `strtol` family, with C's rules (leading space, sign, `0x`/`0` prefixes
//! for base 0 or 16, saturation with `ERANGE` on overflow, `endptr` at the first unused byte).

/// `ERANGE`.
pub const ERANGE: i32 = 34;
/// `EINVAL`.
pub const EINVAL: i32 = 22;
/// `ENOMEM`.
pub const ENOMEM: i32 = 12;

/// What a parse produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    /// The magnitude (saturated at u64::MAX).
    pub magnitude: u64,
    /// Whether a `-` sign was seen.
    pub negative: bool,
    /// Bytes consumed (0 if no digits: then `endptr` is the start).
    pub consumed: usize,
    /// Whether the magnitude overflowed u64.
    pub overflow: bool,
    /// The base was invalid.
    pub bad_base: bool,
}

fn digit(c: u8) -> Option<u32> {
    match c {
        b'0'..=b'9' => Some(u32::from(c - b'0')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 10),
        b'A'..=b'Z' => Some(u32::from(c - b'A') + 10),
        _ => None,
    }
}

/// C's `isspace`.
pub fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// Parses `s` (bytes up to, not including, the NUL) in `base` (0, or 2..=36).
pub fn parse(s: &[u8], base: u32) -> Parsed {
    let mut out = Parsed { magnitude: 0, negative: false, consumed: 0, overflow: false, bad_base: false };
    if base == 1 || base > 36 {
        out.bad_base = true;
        return out;
    }
    let mut i = 0;
    while i < s.len() && is_space(s[i]) {
        i += 1;
    }
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        out.negative = s[i] == b'-';
        i += 1;
    }
    let mut base = base;
    let has_hex_prefix =
        i + 1 < s.len() && s[i] == b'0' && (s[i + 1] | 0x20) == b'x' && s.get(i + 2).and_then(|&c| digit(c)).is_some_and(|d| d < 16);
    if (base == 0 || base == 16) && has_hex_prefix {
        base = 16;
        i += 2;
    } else if base == 0 {
        base = if i < s.len() && s[i] == b'0' { 8 } else { 10 };
    }
    let start = i;
    while i < s.len() {
        let Some(d) = digit(s[i]).filter(|&d| d < base) else { break };
        match out.magnitude.checked_mul(u64::from(base)).and_then(|v| v.checked_add(u64::from(d))) {
            Some(v) => out.magnitude = v,
            None => {
                out.overflow = true;
                out.magnitude = u64::MAX;
            }
        }
        i += 1;
    }
    out.consumed = if i == start { 0 } else { i };
    out
}

/// `strtoll`'s result and errno (0 if none).
pub fn to_i64(p: &Parsed) -> (i64, i32) {
    if p.bad_base {
        return (0, EINVAL);
    }
    if p.negative {
        if p.overflow || p.magnitude > (i64::MAX as u64) + 1 { (i64::MIN, ERANGE) } else { ((p.magnitude as i64).wrapping_neg(), 0) }
    } else if p.overflow || p.magnitude > i64::MAX as u64 {
        (i64::MAX, ERANGE)
    } else {
        (p.magnitude as i64, 0)
    }
}

/// `strtoull`'s result and errno (a `-` negates modulo 2^64, as C does).
pub fn to_u64(p: &Parsed) -> (u64, i32) {
    if p.bad_base {
        return (0, EINVAL);
    }
    if p.overflow {
        return (u64::MAX, ERANGE);
    }
    (if p.negative { p.magnitude.wrapping_neg() } else { p.magnitude }, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    #[test]
    fn matches_host_libc() {
        let inputs = [
            "0",
            "42",
            "-42",
            "+7",
            "   12abc",
            "0x1f",
            "0X1F",
            "-0x10",
            "017",
            "09",
            "0x",
            "0xg",
            "abc",
            "",
            " ",
            "-",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999",
            "z",
            "Zz",
            "1010",
            "\t\n 5",
        ];
        for s in inputs {
            for base in [0u32, 2, 8, 10, 16, 36] {
                let cs = CString::new(s).unwrap();
                let mut end: *mut std::ffi::c_char = std::ptr::null_mut();
                // SAFETY: valid C string and out-pointer; errno is the host's.
                let (theirs, their_errno, their_end) = unsafe {
                    *libc::__errno_location() = 0;
                    let v = libc::strtoll(cs.as_ptr(), &mut end, base as i32);
                    (v, *libc::__errno_location(), end.offset_from(cs.as_ptr()) as usize)
                };
                let p = parse(s.as_bytes(), base);
                let (ours, our_errno) = to_i64(&p);
                assert_eq!((ours, our_errno, p.consumed), (theirs, their_errno, their_end), "strtoll({s:?}, {base})");
                // SAFETY: as above.
                let (theirs, their_errno) = unsafe {
                    *libc::__errno_location() = 0;
                    let v = libc::strtoull(cs.as_ptr(), &mut end, base as i32);
                    (v, *libc::__errno_location())
                };
                let (ours, our_errno) = to_u64(&p);
                assert_eq!((ours, our_errno), (theirs, their_errno), "strtoull({s:?}, {base})");
            }
        }
    }
}
