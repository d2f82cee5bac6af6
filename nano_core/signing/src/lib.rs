//! signing: what makes an object trusted in Delos.
//!
//! Rust crates and C objects run in ring 0, so the kernel loads only objects signed with the key
//! whose public half is compiled into nano_core (the one static binary, the trust root):
//! - the boot image carries a **manifest** — one line `<sha512 hex> <path>` per file — and an
//!   ed25519 signature over it (`manifest.sig`, hex); nano_core accepts it at boot if it is the
//!   manifest the kernel was built with (its digest is in the kernel binary) or its signature
//!   verifies ([`check_manifest`]), and the loader checks every object's hash against it before
//!   parsing the object;
//! - an object sent with `make push` carries an ed25519 signature over a message binding its
//!   namespace, file name and SHA-512 ([`push_message`]); the receiver checks it before the
//!   object reaches the namespace's updates.
//!
//! The host side (imgtool) makes the key pair, writes and signs the manifest, and signs pushes.
//! Everything here is plain computation on bytes: no I/O, no allocation beyond the manifest map.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Bytes of a public key.
pub const PUBLIC_KEY_BYTES: usize = 32;
/// Bytes of a secret seed.
pub const SEED_BYTES: usize = 32;
/// Bytes of a signature.
pub const SIGNATURE_BYTES: usize = 64;
/// A SHA-512 digest.
pub type Digest = [u8; 64];

/// Why something is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not valid hex of the expected length.
    #[error("{what} is not {bytes} bytes of hex")]
    BadHex {
        /// What was being read.
        what: &'static str,
        /// The expected length.
        bytes: usize,
    },
    /// The signature does not verify with the key.
    #[error("the signature does not match the key the kernel was built with")]
    BadSignature,
    /// A manifest line is not `<128 hex> <path>`.
    #[error("manifest line {line} is malformed")]
    BadManifest {
        /// 1-based line number.
        line: usize,
    },
    /// A key that is not a valid ed25519 public key.
    #[error("the public key is invalid")]
    BadKey,
    /// A manifest the kernel was not built with, and no signature over it.
    #[error("the manifest is not the one built into the kernel and has no signature")]
    Unsigned,
}

/// Why a boot image's manifest is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestTrust {
    /// Its SHA-512 is the digest imgtool wrote into the kernel it built with the image.
    BuiltIn,
    /// Its signature verifies with the kernel's key (an image assembled for a kernel built
    /// earlier).
    Signed,
}

/// Checks a boot image's manifest. The kernel built together with the image carries the
/// manifest's digest (`built_in`, part of the kernel binary and so as trusted as its key): one
/// hash proves the manifest, where verifying the ed25519 signature costs 27 ms on TCG. Any other
/// manifest must carry a signature (hex) that verifies with `public_key`.
pub fn check_manifest(
    public_key: &[u8; PUBLIC_KEY_BYTES],
    built_in: Option<&Digest>,
    manifest: &[u8],
    signature_hex: Option<&str>,
) -> Result<ManifestTrust, Error> {
    if built_in.is_some_and(|d| *d == sha512(manifest)) {
        return Ok(ManifestTrust::BuiltIn);
    }
    let sig = unhex::<SIGNATURE_BYTES>(signature_hex.ok_or(Error::Unsigned)?, "manifest.sig")?;
    verify(public_key, manifest, &sig)?;
    Ok(ManifestTrust::Signed)
}

/// SHA-512 of `bytes`.
pub fn sha512(bytes: &[u8]) -> Digest {
    ed25519_compact::sha512::Hash::hash(bytes)
}

/// SHA-512 computed piece by piece (the same digest as [`sha512`] of the pieces joined): for
/// hashing a large object in slices, between other work.
#[derive(Clone, Default)]
pub struct Sha512(ed25519_compact::sha512::Hash);

impl Sha512 {
    /// Nothing hashed yet.
    pub fn new() -> Sha512 {
        Sha512(ed25519_compact::sha512::Hash::new())
    }

    /// Hashes the next piece.
    pub fn update(&mut self, piece: &[u8]) {
        self.0.update(piece);
    }

    /// The digest of everything hashed.
    pub fn finalize(self) -> Digest {
        self.0.finalize()
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Parses exactly `N` bytes of hex.
pub fn unhex<const N: usize>(s: &str, what: &'static str) -> Result<[u8; N], Error> {
    let bad = Error::BadHex { what, bytes: N };
    let s = s.trim();
    if s.len() != 2 * N || !s.is_ascii() {
        return Err(bad);
    }
    // By hand, not `u8::from_str_radix` per byte: the boot decodes 9,500 bytes of manifest.
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        *o = (nibble(pair[0]).ok_or_else(|| bad.clone())? << 4) | nibble(pair[1]).ok_or_else(|| bad.clone())?;
    }
    Ok(out)
}

/// The manifest of `files` (path, bytes): one line per file, sorted by path.
pub fn manifest<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut lines: Vec<(String, &str)> = files.into_iter().map(|(p, b)| (hex(&sha512(b)), p)).collect();
    lines.sort_by(|a, b| a.1.cmp(b.1));
    lines.iter().map(|(h, p)| format!("{h} {p}\n")).collect()
}

/// Parses a manifest into path → digest.
pub fn parse_manifest(text: &str) -> Result<BTreeMap<String, Digest>, Error> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let (h, path) = line.split_once(' ').ok_or(Error::BadManifest { line: i + 1 })?;
        let digest = unhex::<64>(h, "a manifest digest").map_err(|_| Error::BadManifest { line: i + 1 })?;
        if path.is_empty() {
            return Err(Error::BadManifest { line: i + 1 });
        }
        out.insert(String::from(path), digest);
    }
    Ok(out)
}

/// What a push signs: the namespace, the file name and the object's SHA-512, so a signed
/// object cannot be replayed under another name.
pub fn push_message(namespace: &str, file: &str, digest: &Digest) -> String {
    format!("delos-push v1\n{namespace}\n{file}\n{}\n", hex(digest))
}

/// The public key of a secret seed.
pub fn public_key(seed: &[u8; SEED_BYTES]) -> [u8; PUBLIC_KEY_BYTES] {
    *ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(*seed)).pk
}

/// Signs `message` with the key of `seed` (deterministic ed25519).
pub fn sign(seed: &[u8; SEED_BYTES], message: &[u8]) -> [u8; SIGNATURE_BYTES] {
    *ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(*seed)).sk.sign(message, None)
}

/// Checks `signature` over `message` with `public_key`.
pub fn verify(public_key: &[u8; PUBLIC_KEY_BYTES], message: &[u8], signature: &[u8; SIGNATURE_BYTES]) -> Result<(), Error> {
    let pk = ed25519_compact::PublicKey::from_slice(public_key).map_err(|_| Error::BadKey)?;
    pk.verify(message, &ed25519_compact::Signature::new(*signature)).map_err(|_| Error::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: [u8; 32] = [7; 32];

    #[test]
    fn piecewise_digest_is_the_whole_one() {
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 300) as u8).collect();
        for piece in [1, 127, 128, 129, 65536] {
            let mut h = Sha512::new();
            for c in bytes.chunks(piece) {
                h.update(c);
            }
            assert_eq!(h.finalize(), sha512(&bytes), "pieces of {piece}");
        }
        assert_ne!(Sha512::new().finalize(), sha512(b"x"));
    }

    #[test]
    fn sign_and_verify_and_tamper() {
        let pk = public_key(&SEED);
        let m = b"the object";
        let s = sign(&SEED, m);
        assert_eq!(verify(&pk, m, &s), Ok(()));
        assert_eq!(verify(&pk, b"the objecT", &s), Err(Error::BadSignature));
        let mut bad = s;
        bad[5] ^= 1;
        assert_eq!(verify(&pk, m, &bad), Err(Error::BadSignature));
        assert_eq!(verify(&public_key(&[8; 32]), m, &s), Err(Error::BadSignature));
    }

    #[test]
    fn manifest_round_trip_and_errors() {
        let text = manifest([("b.o", &b"bb"[..]), ("a.o", &b"aa"[..])]);
        assert!(text.ends_with(" b.o\n") && text.starts_with(&hex(&sha512(b"aa"))));
        let m = parse_manifest(&text).unwrap();
        assert_eq!(m["a.o"], sha512(b"aa"));
        assert_eq!(parse_manifest("zz a.o"), Err(Error::BadManifest { line: 1 }));
        assert_eq!(parse_manifest(&format!("{} \n", hex(&[0; 64]))), Err(Error::BadManifest { line: 1 }));
        assert_eq!(unhex::<2>("0a0B", "x"), Ok([10, 11]));
        assert!(unhex::<2>("0a0", "x").is_err());
        assert!(unhex::<2>("0a0é", "x").is_err());
        assert!(unhex::<2>("0a0g", "x").is_err());
        assert!(unhex::<2>("+a0b", "x").is_err());
    }

    #[test]
    fn manifests_by_built_in_digest_or_by_signature() {
        let pk = public_key(&SEED);
        let m = manifest([("a.o", &b"aa"[..])]);
        let sig = hex(&sign(&SEED, m.as_bytes()));
        let built = sha512(m.as_bytes());
        let other = sha512(b"another image");
        // The kernel's own manifest needs no signature (a damaged one is not even read).
        assert_eq!(check_manifest(&pk, Some(&built), m.as_bytes(), None), Ok(ManifestTrust::BuiltIn));
        assert_eq!(check_manifest(&pk, Some(&built), m.as_bytes(), Some("zz")), Ok(ManifestTrust::BuiltIn));
        // Any other manifest must be signed with the key.
        assert_eq!(check_manifest(&pk, Some(&other), m.as_bytes(), Some(&sig)), Ok(ManifestTrust::Signed));
        assert_eq!(check_manifest(&pk, None, m.as_bytes(), Some(&sig)), Ok(ManifestTrust::Signed));
        assert_eq!(check_manifest(&pk, Some(&other), m.as_bytes(), None), Err(Error::Unsigned));
        let tampered = m.replace("a.o", "b.o");
        assert_eq!(check_manifest(&pk, Some(&built), tampered.as_bytes(), Some(&sig)), Err(Error::BadSignature));
        assert_eq!(check_manifest(&public_key(&[8; 32]), Some(&other), m.as_bytes(), Some(&sig)), Err(Error::BadSignature));
        assert!(check_manifest(&pk, None, m.as_bytes(), Some("0a")).is_err());
    }

    #[test]
    fn push_messages_bind_names() {
        let d = sha512(b"obj");
        assert_ne!(push_message("applications", "a.o", &d), push_message("applications", "b.o", &d));
        assert_ne!(push_message("applications", "a.o", &d), push_message("kernel", "a.o", &d));
    }
}
