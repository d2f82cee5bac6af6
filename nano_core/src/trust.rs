//! What the kernel trusts to run in ring 0: objects signed with the key compiled into this
//! binary (see the `signing` crate).
//!
//! At boot the image's manifest (`manifest`, `manifest.sig`) is checked — against the digest
//! imgtool built into this kernel, or else by its signature; the digest of every file it lists
//! becomes trusted. The loader asks [`check`] before it parses any object, so an
//! object whose bytes are not exactly what was signed is refused by name. `make push` objects
//! become trusted when their signature verifies ([`accept_push`]).

use crate::modules::BootModule;
use alloc::collections::BTreeSet;
use core::sync::atomic::{AtomicU64, Ordering};
use signing::Digest;
use spin::Mutex;

/// The public key this kernel was built with.
static PUBLIC_KEY: [u8; signing::PUBLIC_KEY_BYTES] = *include_bytes!(concat!(env!("OUT_DIR"), "/signing.pub"));

/// Digests of everything trusted.
static TRUSTED: Mutex<BTreeSet<Digest>> = Mutex::new(BTreeSet::new());

static CHECKED: AtomicU64 = AtomicU64::new(0);
static CHECKED_BYTES: AtomicU64 = AtomicU64::new(0);
static CHECK_US: AtomicU64 = AtomicU64::new(0);

/// Why something is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// The boot image has no manifest or no signature.
    #[error("the boot image has no {0}")]
    Missing(&'static str),
    /// The manifest or a signature is malformed or does not verify.
    #[error(transparent)]
    Signing(#[from] signing::Error),
    /// An object's bytes are in no signed manifest and no verified push.
    #[error("its SHA-512 is in no signed manifest or verified push (altered or unsigned)")]
    Unknown,
}

/// The SHA-512 of the boot image's manifest, written here by imgtool when it builds the image
/// with this kernel (all zeros in a kernel imgtool did not write). Part of the kernel binary, it
/// is trusted as [`PUBLIC_KEY`] is.
#[unsafe(no_mangle)]
#[used]
#[unsafe(link_section = ".imgtool")]
static DELOS_MANIFEST_DIGEST: Digest = [0; 64];

/// The digest as it is in memory, if imgtool wrote one.
fn built_in_digest() -> Option<&'static Digest> {
    Some(crate::kernel::written_by_imgtool(&DELOS_MANIFEST_DIGEST)).filter(|d| **d != [0; 64])
}

/// Accepts the boot image's manifest (see [`signing::check_manifest`]); returns how many files
/// it lists and why it was accepted.
pub fn init(modules: &[BootModule]) -> Result<(usize, signing::ManifestTrust), TrustError> {
    let find = |name: &'static str| modules.iter().find(|m| m.name == name).map(|m| m.data).ok_or(TrustError::Missing(name));
    let text = find("manifest")?;
    let sig = find("manifest.sig").ok().and_then(|s| core::str::from_utf8(s).ok());
    let how = signing::check_manifest(&PUBLIC_KEY, built_in_digest(), text, sig)?;
    let text = core::str::from_utf8(text).map_err(|_| signing::Error::BadManifest { line: 0 })?;
    let files = signing::parse_manifest(text)?;
    let n = files.len();
    x86_64::instructions::interrupts::without_interrupts(|| TRUSTED.lock().extend(files.into_values()));
    Ok((n, how))
}

/// Whether `bytes` are exactly a signed object (the loader calls this before parsing one).
pub fn check(bytes: &[u8]) -> Result<(), TrustError> {
    let t0 = crate::time::micros_since_entry();
    let d = signing::sha512(bytes);
    CHECKED.fetch_add(1, Ordering::Relaxed);
    CHECKED_BYTES.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    CHECK_US.fetch_add(crate::time::micros_since_entry() - t0, Ordering::Relaxed);
    if x86_64::instructions::interrupts::without_interrupts(|| TRUSTED.lock().contains(&d)) { Ok(()) } else { Err(TrustError::Unknown) }
}

/// Trusts a pushed object whose signature (hex) over its namespace, name and digest verifies.
pub fn accept_push(namespace: &str, file: &str, bytes: &[u8], signature_hex: &str) -> Result<(), TrustError> {
    let sig = signing::unhex::<{ signing::SIGNATURE_BYTES }>(signature_hex, "the signature")?;
    let d = signing::sha512(bytes);
    signing::verify(&PUBLIC_KEY, signing::push_message(namespace, file, &d).as_bytes(), &sig)?;
    x86_64::instructions::interrupts::without_interrupts(|| TRUSTED.lock().insert(d));
    Ok(())
}

/// (objects checked, bytes hashed, microseconds spent), for `make bench`.
pub fn stats() -> (u64, u64, u64) {
    (CHECKED.load(Ordering::Relaxed), CHECKED_BYTES.load(Ordering::Relaxed), CHECK_US.load(Ordering::Relaxed))
}
