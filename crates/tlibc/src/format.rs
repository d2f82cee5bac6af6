//! The `printf` engine: conversions `d i u o x X c s p f F e E g G a A %` with flags
//! `- 0 + space #`, field width and precision (numbers or `*`), and length modifiers
//! `hh h l ll z j t` (`L`, long double, is read as `double`). Floating-point digits come from
//! [`crate::float`].

use core::ffi::c_char;

/// Length modifier of a conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// none: `int`
    Int,
    /// `hh`
    Char,
    /// `h`
    Short,
    /// `l`, `ll`, `z`, `j`, `t`: 64 bits
    Long,
}

/// Where arguments come from (a C `va_list` in the kernel, a vector in tests).
pub trait Args {
    /// The next signed integer argument of this length, sign-extended.
    fn int(&mut self, len: Length) -> i64;
    /// The next unsigned integer argument of this length, zero-extended.
    fn uint(&mut self, len: Length) -> u64;
    /// The next pointer argument.
    fn ptr(&mut self) -> usize;
    /// The next `double` argument.
    fn float(&mut self) -> f64;
}

struct Spec {
    left: bool,
    zero: bool,
    plus: bool,
    space: bool,
    alt: bool,
    width: usize,
    precision: Option<usize>,
}

fn pad(out: &mut dyn FnMut(&[u8]), n: usize, c: u8) -> usize {
    for _ in 0..n {
        out(&[c]);
    }
    n
}

/// Emits `body` (already with its digits) with sign/prefix, precision zeros and padding.
fn emit(out: &mut dyn FnMut(&[u8]), spec: &Spec, prefix: &[u8], zeros: usize, body: &[u8]) -> usize {
    let len = prefix.len() + zeros + body.len();
    let fill = spec.width.saturating_sub(len);
    let mut n = 0;
    if !spec.left && !(spec.zero && spec.precision.is_none()) {
        n += pad(out, fill, b' ');
    }
    out(prefix);
    n += prefix.len();
    if !spec.left && spec.zero && spec.precision.is_none() {
        n += pad(out, fill, b'0');
    }
    n += pad(out, zeros, b'0');
    out(body);
    n += body.len();
    if spec.left {
        n += pad(out, fill, b' ');
    }
    n
}

/// What goes before a signed number: `-`, or `+`/space as the flags ask.
fn sign_of(negative: bool, spec: &Spec) -> &'static [u8] {
    if negative {
        b"-"
    } else if spec.plus {
        b"+"
    } else if spec.space {
        b" "
    } else {
        b""
    }
}

fn digits(mut v: u64, base: u64, upper: bool, buf: &mut [u8; 24]) -> usize {
    let table = if upper { b"0123456789ABCDEF" } else { b"0123456789abcdef" };
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = table[(v % base) as usize];
        v /= base;
        if v == 0 {
            break;
        }
    }
    i
}

/// Formats `fmt` (bytes up to its NUL) with `args`, writing through `out`; returns the number
/// of bytes produced (what `printf` returns).
///
/// # Safety
/// `%s` arguments must be valid C strings (or null).
pub unsafe fn format(fmt: &[u8], args: &mut dyn Args, out: &mut dyn FnMut(&[u8])) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < fmt.len() {
        let c = fmt[i];
        if c != b'%' {
            let start = i;
            while i < fmt.len() && fmt[i] != b'%' {
                i += 1;
            }
            out(&fmt[start..i]);
            n += i - start;
            continue;
        }
        let spec_start = i;
        i += 1;
        let mut spec = Spec { left: false, zero: false, plus: false, space: false, alt: false, width: 0, precision: None };
        while i < fmt.len() {
            match fmt[i] {
                b'-' => spec.left = true,
                b'0' => spec.zero = true,
                b'+' => spec.plus = true,
                b' ' => spec.space = true,
                b'#' => spec.alt = true,
                _ => break,
            }
            i += 1;
        }
        if i < fmt.len() && fmt[i] == b'*' {
            let w = args.int(Length::Int);
            if w < 0 {
                spec.left = true;
            }
            spec.width = w.unsigned_abs() as usize;
            i += 1;
        } else {
            while i < fmt.len() && fmt[i].is_ascii_digit() {
                spec.width = spec.width.saturating_mul(10).saturating_add(usize::from(fmt[i] - b'0'));
                i += 1;
            }
        }
        if i < fmt.len() && fmt[i] == b'.' {
            i += 1;
            if i < fmt.len() && fmt[i] == b'*' {
                let p = args.int(Length::Int);
                spec.precision = (p >= 0).then_some(p as usize);
                i += 1;
            } else {
                let mut p = 0usize;
                while i < fmt.len() && fmt[i].is_ascii_digit() {
                    p = p.saturating_mul(10).saturating_add(usize::from(fmt[i] - b'0'));
                    i += 1;
                }
                spec.precision = Some(p);
            }
        }
        let mut len = Length::Int;
        while i < fmt.len() {
            match fmt[i] {
                b'h' => len = if len == Length::Short { Length::Char } else { Length::Short },
                b'l' | b'z' | b'j' | b't' | b'q' | b'L' => len = Length::Long,
                _ => break,
            }
            i += 1;
        }
        let Some(&conv) = fmt.get(i) else {
            out(&fmt[spec_start..]);
            n += fmt.len() - spec_start;
            break;
        };
        i += 1;
        let mut buf = [0u8; 24];
        match conv {
            b'%' => {
                out(b"%");
                n += 1;
            }
            b'd' | b'i' => {
                let v = args.int(len);
                let start = digits(v.unsigned_abs(), 10, false, &mut buf);
                let sign = sign_of(v < 0, &spec);
                let body: &[u8] = if spec.precision == Some(0) && v == 0 { b"" } else { &buf[start..] };
                let zeros = spec.precision.map_or(0, |p| p.saturating_sub(body.len()));
                n += emit(out, &spec, sign, zeros, body);
            }
            b'u' | b'o' | b'x' | b'X' => {
                let v = args.uint(len);
                let base = match conv {
                    b'o' => 8,
                    b'u' => 10,
                    _ => 16,
                };
                let start = digits(v, base, conv == b'X', &mut buf);
                let body: &[u8] = if spec.precision == Some(0) && v == 0 { b"" } else { &buf[start..] };
                let mut zeros = spec.precision.map_or(0, |p| p.saturating_sub(body.len()));
                let prefix: &[u8] = match conv {
                    b'x' if spec.alt && v != 0 => b"0x",
                    b'X' if spec.alt && v != 0 => b"0X",
                    _ => b"",
                };
                if conv == b'o' && spec.alt && zeros == 0 && body.first() != Some(&b'0') {
                    zeros = 1;
                }
                n += emit(out, &spec, prefix, zeros, body);
            }
            b'c' => {
                let ch = args.int(Length::Int) as u8;
                n += emit(out, &Spec { zero: false, ..spec }, b"", 0, &[ch]);
            }
            b's' => {
                let p = args.ptr() as *const c_char;
                let s: &[u8] = if p.is_null() {
                    b"(null)"
                } else {
                    let max = spec.precision.unwrap_or(usize::MAX);
                    // SAFETY: the caller passes a valid C string for %s.
                    let len = unsafe { crate::string::strnlen(p, max) };
                    // SAFETY: `len` bytes were just found readable.
                    unsafe { core::slice::from_raw_parts(p as *const u8, len) }
                };
                n += emit(out, &Spec { zero: false, ..spec }, b"", 0, s);
            }
            b'f' | b'F' | b'e' | b'E' | b'g' | b'G' | b'a' | b'A' => {
                let f = crate::float::format(args.float(), conv, spec.precision, spec.alt);
                let sign = sign_of(f.negative, &spec);
                // A precision does not turn `0` off for floats; infinity and NaN are never
                // zero-padded.
                let spec = Spec { precision: None, zero: spec.zero && f.finite, ..spec };
                n += emit(out, &spec, sign, 0, &f.body);
            }
            b'p' => {
                let p = args.ptr();
                if p == 0 {
                    n += emit(out, &Spec { zero: false, precision: None, ..spec }, b"", 0, b"(nil)");
                } else {
                    let start = digits(p as u64, 16, false, &mut buf);
                    n += emit(out, &Spec { precision: None, ..spec }, b"0x", 0, &buf[start..]);
                }
            }
            _ => {
                out(&fmt[spec_start..i]);
                n += i - spec_start;
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    #[derive(Clone, Copy)]
    enum A {
        I(i64),
        U(u64),
        P(usize),
        F(f64),
    }

    struct VecArgs(Vec<A>, usize);

    impl Args for VecArgs {
        fn int(&mut self, len: Length) -> i64 {
            self.1 += 1;
            let v = match self.0[self.1 - 1] {
                A::I(v) => v,
                A::U(v) => v as i64,
                A::P(v) => v as i64,
                A::F(v) => v.to_bits() as i64,
            };
            match len {
                Length::Int => v as i32 as i64,
                Length::Char => v as i8 as i64,
                Length::Short => v as i16 as i64,
                Length::Long => v,
            }
        }
        fn uint(&mut self, len: Length) -> u64 {
            let v = self.int(Length::Long) as u64;
            match len {
                Length::Int => v as u32 as u64,
                Length::Char => v as u8 as u64,
                Length::Short => v as u16 as u64,
                Length::Long => v,
            }
        }
        fn ptr(&mut self) -> usize {
            self.int(Length::Long) as usize
        }
        fn float(&mut self) -> f64 {
            self.1 += 1;
            match self.0[self.1 - 1] {
                A::F(v) => v,
                _ => panic!("not a double"),
            }
        }
    }

    fn ours(fmt: &str, args: &[A]) -> (String, usize) {
        let mut s = Vec::new();
        let c = CString::new(fmt).unwrap();
        // SAFETY: %s arguments in the tests are valid C strings.
        let n = unsafe { format(c.as_bytes(), &mut VecArgs(args.to_vec(), 0), &mut |b| s.extend_from_slice(b)) };
        (String::from_utf8(s).unwrap(), n)
    }

    fn theirs(fmt: &str, args: &[A]) -> (String, usize) {
        let c = CString::new(fmt).unwrap();
        let mut buf = vec![0u8; 512];
        let v = |i: usize| match args.get(i) {
            Some(A::I(v)) => *v as u64,
            Some(A::U(v)) => *v,
            Some(A::P(v)) => *v as u64,
            Some(A::F(_)) | None => 0,
        };
        // SAFETY: every argument is passed as a 64-bit integer, which is how the x86_64 SysV ABI
        // passes int, long, pointers and chars in registers (the callee reads the low bits);
        // %s arguments are valid C strings.
        let n = unsafe { libc::snprintf(buf.as_mut_ptr() as *mut _, buf.len(), c.as_ptr(), v(0), v(1), v(2), v(3)) };
        // SAFETY: snprintf NUL-terminated the buffer.
        let s = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr() as *const _) }.to_str().unwrap().to_string();
        (s, n as usize)
    }

    #[test]
    fn matches_host_snprintf() {
        let hello = CString::new("hello").unwrap();
        let empty = CString::new("").unwrap();
        let sp = A::P(hello.as_ptr() as usize);
        let ep = A::P(empty.as_ptr() as usize);
        let ints = [0i64, 1, -1, 42, -42, 255, 65535, i32::MAX as i64, i32::MIN as i64, i64::MAX, i64::MIN, 123456789];
        let int_fmts = [
            "%d", "%i", "%5d", "%-5d|", "%05d", "%+d", "% d", "%.3d", "%8.3d", "%-8.3d|", "%.0d", "%ld", "%lld", "%hd", "%hhd", "%zd",
            "%u", "%lu", "%x", "%X", "%#x", "%#X", "%08x", "%#010x", "%o", "%#o", "%lx", "%hhx", "%hu", "%.0x", "%+5d", "%-+6d|", "%c",
            "%3c", "%-3c|",
        ];
        let mut count = 0;
        for f in int_fmts {
            for &v in &ints {
                if f.contains('c') && !(32..127).contains(&v) {
                    continue;
                }
                let args = [A::I(v)];
                assert_eq!(ours(f, &args), theirs(f, &args), "format {f:?} with {v}");
                count += 1;
            }
        }
        let str_cases: Vec<(&str, Vec<A>)> = vec![
            ("%s", vec![sp]),
            ("[%10s]", vec![sp]),
            ("[%-10s]", vec![sp]),
            ("[%.3s]", vec![sp]),
            ("[%10.2s]", vec![sp]),
            ("[%s]", vec![ep]),
            ("%s and %s", vec![sp, ep]),
            ("%p", vec![A::P(0x1234)]),
            ("[%20p]", vec![A::P(0xdead_beef)]),
            ("%p", vec![A::P(0)]),
            ("100%%", vec![]),
            ("%*d", vec![A::I(6), A::I(42)]),
            ("%-*d|", vec![A::I(6), A::I(42)]),
            ("%.*d", vec![A::I(4), A::I(7)]),
            ("%*.*s|", vec![A::I(8), A::I(2), sp]),
            ("a%db%sc%xd", vec![A::I(1), sp, A::U(255)]),
            ("%lu", vec![A::U(u64::MAX)]),
            ("%llx", vec![A::U(u64::MAX)]),
        ];
        for (f, a) in &str_cases {
            assert_eq!(ours(f, a), theirs(f, a), "format {f:?}");
            count += 1;
        }
        assert!(count > 300, "{count}");
    }

    #[test]
    fn floats_with_flags_and_width_match_host_snprintf() {
        let fmts = [
            "%10.3f|", "%-10.3f|", "%010.3f", "%+f", "% f", "%+.2e", "%08.2e", "%-12g|", "%012g", "%+g", "%#x %g", "%5.1f", "[%*.*f]",
            "%F", "%010f", "%.3Lf",
        ];
        let values = [0.0, -0.0, 1.5, -1.5, 3.25159, -271.828, 1e-10, 6.02e23, f64::INFINITY, f64::NEG_INFINITY, f64::NAN];
        let mut count = 0;
        for f in fmts {
            for v in values {
                let args: Vec<A> = match f {
                    "%#x %g" => vec![A::U(255), A::F(v)],
                    "[%*.*f]" => vec![A::I(12), A::I(4), A::F(v)],
                    _ => vec![A::F(v)],
                };
                let c = CString::new(f).unwrap();
                let mut buf = vec![0u8; 256];
                // SAFETY: the arguments match the conversions: integers as 64-bit values (read
                // as int by the callee, which is how SysV passes them), doubles as f64.
                let n = unsafe {
                    match args.as_slice() {
                        [A::F(x)] => libc::snprintf(buf.as_mut_ptr() as *mut _, buf.len(), c.as_ptr(), *x),
                        [A::U(a), A::F(x)] => libc::snprintf(buf.as_mut_ptr() as *mut _, buf.len(), c.as_ptr(), *a, *x),
                        [A::I(a), A::I(b), A::F(x)] => {
                            libc::snprintf(buf.as_mut_ptr() as *mut _, buf.len(), c.as_ptr(), *a as i32, *b as i32, *x)
                        }
                        _ => unreachable!(),
                    }
                };
                // SAFETY: NUL-terminated by snprintf.
                let theirs = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr() as *const _) }.to_str().unwrap().to_string();
                let theirs = if f == "%.3Lf" { String::new() } else { theirs };
                if f == "%.3Lf" {
                    // long double is read as double (documented): compare with %.3f of the host.
                    let c = CString::new("%.3f").unwrap();
                    // SAFETY: one double.
                    let n2 = unsafe { libc::snprintf(buf.as_mut_ptr() as *mut _, buf.len(), c.as_ptr(), v) };
                    // SAFETY: NUL-terminated.
                    let t = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr() as *const _) }.to_str().unwrap().to_string();
                    assert_eq!(ours(f, &args), (t, n2 as usize), "format {f:?} with {v}");
                } else {
                    assert_eq!(ours(f, &args), (theirs, n as usize), "format {f:?} with {v}");
                }
                count += 1;
            }
        }
        assert_eq!(count, fmts.len() * values.len());
    }
}
