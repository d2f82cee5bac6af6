//! The boot module archive: a plain ustar file written by `tools/imgtool`.
//!
//! Both boot routes carry the same single module, so GRUB and `qemu -kernel` see identical data
//! and neither hits a limit on the number of modules. Only regular files are used; the reader
//! checks every header field it uses and stops at the end-of-archive marker.

use crate::Error;

const BLOCK: usize = 512;

/// One file in the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Path inside the archive, e.g. `namespaces/kernel/captain.o`.
    pub name: &'a str,
    /// The file's bytes.
    pub data: &'a [u8],
}

/// Iterates over the regular files in a ustar archive.
pub fn entries(archive: &[u8]) -> Entries<'_> {
    Entries { rest: archive, done: false }
}

/// Iterator returned by [`entries`]; yields an error once and then stops on malformed input.
pub struct Entries<'a> {
    rest: &'a [u8],
    done: bool,
}

fn malformed(detail: &'static str) -> Error {
    Error::Malformed { what: "module archive", detail }
}

fn octal(field: &[u8]) -> Result<usize, Error> {
    let mut v: usize = 0;
    for &c in field {
        match c {
            b'0'..=b'7' => v = v.checked_mul(8).and_then(|v| v.checked_add(usize::from(c - b'0'))).ok_or(malformed("size overflows"))?,
            b' ' | 0 => {
                if v != 0 || c == 0 {
                    break;
                }
            }
            _ => return Err(malformed("size is not octal")),
        }
    }
    Ok(v)
}

fn cstr(field: &[u8]) -> Result<&str, Error> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    core::str::from_utf8(&field[..end]).map_err(|_| malformed("name is not UTF-8"))
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            if self.rest.len() < BLOCK {
                self.done = true;
                return if self.rest.is_empty() { None } else { Some(Err(malformed("truncated header"))) };
            }
            let (hdr, after) = self.rest.split_at(BLOCK);
            if hdr.iter().all(|&b| b == 0) {
                self.done = true;
                return None;
            }
            let res = (|| {
                if &hdr[257..262] != b"ustar" {
                    return Err(malformed("not a ustar header"));
                }
                let sum = octal(&hdr[148..156])?;
                let actual: usize = hdr.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { usize::from(b) }).sum();
                if sum != actual {
                    return Err(malformed("header checksum mismatch"));
                }
                let size = octal(&hdr[124..136])?;
                let padded = size.checked_add(BLOCK - 1).ok_or(malformed("size overflows"))? / BLOCK * BLOCK;
                if padded > after.len() {
                    return Err(malformed("file data truncated"));
                }
                Ok((size, padded))
            })();
            let (size, padded) = match res {
                Ok(v) => v,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            let data = &after[..size];
            self.rest = &after[padded..];
            let kind = hdr[156];
            if kind != b'0' && kind != 0 {
                continue; // directories, links: not used by the image
            }
            let name = match (cstr(&hdr[345..500]), cstr(&hdr[0..100])) {
                (Ok(""), Ok(name)) => Ok(name),
                (Ok(_), Ok(_)) => Err(malformed("prefixed names are not supported")),
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
            return Some(match name {
                Ok(name) => Ok(Entry { name, data }),
                Err(e) => {
                    self.done = true;
                    Err(e)
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a ustar archive the way imgtool does.
    fn build(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data) in files {
            let mut h = [0u8; BLOCK];
            h[..name.len()].copy_from_slice(name.as_bytes());
            h[100..108].copy_from_slice(b"0000644\0");
            h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
            h[136..148].copy_from_slice(b"00000000000\0");
            h[156] = b'0';
            h[257..263].copy_from_slice(b"ustar\0");
            h[263..265].copy_from_slice(b"00");
            h[148..156].fill(b' ');
            let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
            h[148..156].copy_from_slice(format!("{:06o}\0 ", sum).as_bytes());
            out.extend_from_slice(&h);
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
        }
        out.resize(out.len() + 2 * BLOCK, 0);
        out
    }

    #[test]
    fn reads_files() {
        let a = build(&[("a.o", b"hello"), ("dir/b.o", &[7u8; 600])]);
        let v: Vec<_> = entries(&a).collect::<Result<_, _>>().unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0], Entry { name: "a.o", data: b"hello" });
        assert_eq!(v[1].name, "dir/b.o");
        assert_eq!(v[1].data.len(), 600);
    }

    #[test]
    fn rejects_bad_input() {
        let a = build(&[("a.o", &[1u8; 1000])]);
        let truncated = &a[..1024];
        assert!(entries(truncated).any(|e| e.is_err()));
        let mut bad = a.clone();
        bad[0] ^= 1;
        assert_eq!(entries(&bad).next().unwrap().unwrap_err(), malformed("header checksum mismatch"));
        assert!(entries(&a[..100]).next().unwrap().is_err());
        assert_eq!(entries(&[]).count(), 0);
    }

    #[test]
    fn mutations_never_panic() {
        let a = build(&[("a.o", &[1u8; 700]), ("b.o", b"xyz")]);
        let mut seed = 99u64;
        for _ in 0..20000 {
            let mut m = a.clone();
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let i = (seed >> 33) as usize % m.len();
            m[i] = (seed >> 13) as u8;
            let cut = (seed >> 40) as usize % (m.len() + 1);
            for e in entries(&m[..cut]) {
                let _ = e;
            }
        }
    }
}
