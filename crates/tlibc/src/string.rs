//! String and memory functions on C strings (NUL-terminated byte arrays).
//!
//! Each function has the C semantics; the caller guarantees what C requires (valid,
//! NUL-terminated strings, big-enough destinations).

use core::ffi::c_char;

/// `strlen`.
///
/// # Safety
/// `s` is a valid C string.
pub unsafe fn strlen(s: *const c_char) -> usize {
    let mut n = 0;
    // SAFETY: `s` is NUL-terminated, so every byte up to the NUL is readable.
    while unsafe { *s.add(n) } != 0 {
        n += 1;
    }
    n
}

/// `strnlen`.
///
/// # Safety
/// `s` is readable up to its NUL or `max` bytes.
pub unsafe fn strnlen(s: *const c_char, max: usize) -> usize {
    let mut n = 0;
    // SAFETY: at most `max` bytes are read, stopping at the NUL.
    while n < max && unsafe { *s.add(n) } != 0 {
        n += 1;
    }
    n
}

/// `strcmp`.
///
/// # Safety
/// Both are valid C strings.
pub unsafe fn strcmp(a: *const c_char, b: *const c_char) -> i32 {
    // SAFETY: forwarded; usize::MAX never limits a NUL-terminated comparison.
    unsafe { strncmp(a, b, usize::MAX) }
}

/// `strncmp`.
///
/// # Safety
/// Both are readable up to their NUL or `n` bytes.
pub unsafe fn strncmp(a: *const c_char, b: *const c_char, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: index i is before both strings' NUL or within n (the loop stops at a NUL).
        let (x, y) = unsafe { (*a.add(i) as u8, *b.add(i) as u8) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        if x == 0 {
            return 0;
        }
    }
    0
}

/// `strchr` (also finds the terminating NUL when `c` is 0).
///
/// # Safety
/// `s` is a valid C string.
pub unsafe fn strchr(s: *const c_char, c: i32) -> *mut c_char {
    let c = c as u8;
    let mut p = s;
    loop {
        // SAFETY: `p` stays within the string up to and including its NUL.
        let ch = unsafe { *p } as u8;
        if ch == c {
            return p as *mut c_char;
        }
        if ch == 0 {
            return core::ptr::null_mut();
        }
        // SAFETY: not past the NUL yet.
        p = unsafe { p.add(1) };
    }
}

/// `strrchr`.
///
/// # Safety
/// `s` is a valid C string.
pub unsafe fn strrchr(s: *const c_char, c: i32) -> *mut c_char {
    // SAFETY: `s` is a valid C string.
    let n = unsafe { strlen(s) };
    for i in (0..=n).rev() {
        // SAFETY: i <= n, within the string including its NUL.
        if unsafe { *s.add(i) } as u8 == c as u8 {
            // SAFETY: as above.
            return unsafe { s.add(i) } as *mut c_char;
        }
    }
    core::ptr::null_mut()
}

/// `strstr`.
///
/// # Safety
/// Both are valid C strings.
pub unsafe fn strstr(hay: *const c_char, needle: *const c_char) -> *mut c_char {
    // SAFETY: valid C strings.
    let (h, n) = unsafe { (strlen(hay), strlen(needle)) };
    // SAFETY: lengths just measured.
    let (hs, ns) = unsafe { (core::slice::from_raw_parts(hay as *const u8, h), core::slice::from_raw_parts(needle as *const u8, n)) };
    if n == 0 {
        return hay as *mut c_char;
    }
    match hs.windows(n).position(|w| w == ns) {
        // SAFETY: i + n <= h.
        Some(i) => unsafe { hay.add(i) as *mut c_char },
        None => core::ptr::null_mut(),
    }
}

fn in_set(set: &[u8], c: u8) -> bool {
    set.contains(&c)
}

/// `strspn` (`accept`) and `strcspn` (`!accept`).
///
/// # Safety
/// Both are valid C strings.
pub unsafe fn span(s: *const c_char, set: *const c_char, accept: bool) -> usize {
    // SAFETY: valid C strings.
    let (n, m) = unsafe { (strlen(s), strlen(set)) };
    // SAFETY: lengths just measured.
    let (ss, st) = unsafe { (core::slice::from_raw_parts(s as *const u8, n), core::slice::from_raw_parts(set as *const u8, m)) };
    ss.iter().take_while(|&&c| in_set(st, c) == accept).count()
}

/// `memchr`.
///
/// # Safety
/// `s` is readable for `n` bytes.
pub unsafe fn memchr(s: *const u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: `n` readable bytes.
    let bytes = unsafe { core::slice::from_raw_parts(s, n) };
    match bytes.iter().position(|&b| b == c as u8) {
        // SAFETY: i < n.
        Some(i) => unsafe { s.add(i) as *mut u8 },
        None => core::ptr::null_mut(),
    }
}

/// The message `strerror` gives for an errno value.
pub fn strerror(e: i32) -> &'static [u8] {
    match e {
        0 => b"Success\0",
        1 => b"Operation not permitted\0",
        2 => b"No such file or directory\0",
        9 => b"Bad file descriptor\0",
        12 => b"Cannot allocate memory\0",
        14 => b"Bad address\0",
        19 => b"No such device\0",
        22 => b"Invalid argument\0",
        34 => b"Numerical result out of range\0",
        38 => b"Function not implemented\0",
        _ => b"Unknown error\0",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    #[test]
    fn matches_host_libc() {
        let words = ["", "a", "abc", "abd", "ab", "hello world", "héllo", "zzz", "a\u{1}b"];
        for x in words {
            for y in words {
                let (cx, cy) = (c(x), c(y));
                // SAFETY: valid C strings on both sides.
                unsafe {
                    assert_eq!(
                        strcmp(cx.as_ptr(), cy.as_ptr()).signum(),
                        libc::strcmp(cx.as_ptr(), cy.as_ptr()).signum(),
                        "strcmp {x:?} {y:?}"
                    );
                    for n in 0..5 {
                        assert_eq!(strncmp(cx.as_ptr(), cy.as_ptr(), n).signum(), libc::strncmp(cx.as_ptr(), cy.as_ptr(), n).signum());
                    }
                    let ours = strstr(cx.as_ptr(), cy.as_ptr());
                    let theirs = libc::strstr(cx.as_ptr(), cy.as_ptr());
                    assert_eq!(ours as usize, theirs as usize, "strstr {x:?} {y:?}");
                    assert_eq!(span(cx.as_ptr(), cy.as_ptr(), true), libc::strspn(cx.as_ptr(), cy.as_ptr()));
                    assert_eq!(span(cx.as_ptr(), cy.as_ptr(), false), libc::strcspn(cx.as_ptr(), cy.as_ptr()));
                }
            }
            let cx = c(x);
            // SAFETY: valid C strings.
            unsafe {
                #[allow(clippy::strlen_on_c_strings)] // comparing with the host's strlen is the point
                let theirs = libc::strlen(cx.as_ptr());
                assert_eq!(strlen(cx.as_ptr()), theirs);
                for ch in [0, b'a' as i32, b'b' as i32, b'o' as i32, b'q' as i32] {
                    assert_eq!(strchr(cx.as_ptr(), ch) as usize, libc::strchr(cx.as_ptr(), ch) as usize, "strchr {x:?} {ch}");
                    assert_eq!(strrchr(cx.as_ptr(), ch) as usize, libc::strrchr(cx.as_ptr(), ch) as usize, "strrchr {x:?} {ch}");
                    let n = x.len();
                    assert_eq!(memchr(cx.as_ptr() as *const u8, ch, n) as usize, libc::memchr(cx.as_ptr() as *const _, ch, n) as usize);
                }
            }
        }
    }
}
