//! What the kernel trusts to run in ring 0: objects signed with the key compiled into this
//! binary (see the `signing` crate).
//!
//! At boot the image's manifest (`manifest`, `manifest.sig`) is checked — against the digest
//! imgtool built into this kernel, or else by its signature; the digest of every file it lists
//! becomes trusted. The loader asks [`check`] before it parses any object, so an
//! object whose bytes are not exactly what was signed is refused by name. `make push` objects
//! become trusted when their signature verifies ([`accept_push`]). Parked CPUs compute the
//! digests of the large boot modules ahead of their first load ([`hash_ahead`]).

use crate::modules::BootModule;
use alloc::collections::BTreeSet;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
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

/// A boot module whose digest a parked CPU may compute before its first load (see
/// [`hash_ahead`]).
struct Ahead {
    ptr: AtomicU64,
    len: AtomicU64,
    /// [`QUEUED`], [`HASHING`], [`TRUSTED_AHEAD`] or [`UNTRUSTED_AHEAD`].
    state: AtomicU8,
    /// Claimed by a parked CPU (not by the loader itself).
    by_parked_cpu: AtomicBool,
    /// The claiming parked CPU's index, and its count of abandoned jobs when it claimed: if
    /// the count moves while the slot is still [`HASHING`], the job was abandoned (a fault on
    /// that CPU, see `crate::jobs`) and the loader hashes the module itself.
    claimer: AtomicU64,
    claimer_abandoned: AtomicU64,
}

const QUEUED: u8 = 0;
const HASHING: u8 = 1;
const TRUSTED_AHEAD: u8 = 2;
const UNTRUSTED_AHEAD: u8 = 3;
/// Being hashed piece by piece by the boot CPU's idle loop ([`idle_hash_step`]): the partial
/// digest is in [`IDLE`], and the loader finishes it if it needs the module first.
const IDLE_HASHING: u8 = 4;
/// Modules smaller than this are not worth a slot (the boot loads most of them itself, first).
const AHEAD_MIN_BYTES: usize = 64 * 1024;

/// The boot modules worth hashing ahead, largest first; the first [`AHEAD_COUNT`] are in use.
/// Fixed atomics, not a heap list: a parked CPU runs [`hash_ahead`] with no allocator.
static AHEAD: [Ahead; 64] = [const {
    Ahead {
        ptr: AtomicU64::new(0),
        len: AtomicU64::new(0),
        state: AtomicU8::new(QUEUED),
        by_parked_cpu: AtomicBool::new(false),
        claimer: AtomicU64::new(0),
        claimer_abandoned: AtomicU64::new(0),
    }
}; 64];
static AHEAD_COUNT: AtomicUsize = AtomicUsize::new(0);
/// Objects whose digest a parked CPU had computed (or was computing) when the loader asked.
static AHEAD_USED: AtomicU64 = AtomicU64::new(0);
/// Microseconds the loader waited for a parked CPU to finish a digest it had begun.
static AHEAD_WAIT_US: AtomicU64 = AtomicU64::new(0);

/// Lists the boot modules worth hashing ahead, for [`hash_ahead`]: the crate objects of the
/// namespaces (not the debug modules, which only a backtrace's first file:line reads), the
/// largest first, up to 64.
fn plan_ahead(modules: &[BootModule]) {
    let mut big: alloc::vec::Vec<&BootModule> =
        modules.iter().filter(|m| m.name.starts_with("namespaces/") && m.name.ends_with(".o") && m.data.len() >= AHEAD_MIN_BYTES).collect();
    big.sort_by_key(|m| core::cmp::Reverse(m.data.len()));
    let n = big.len().min(AHEAD.len());
    for (slot, m) in AHEAD.iter().zip(&big[..n]) {
        slot.ptr.store(m.data.as_ptr() as u64, Ordering::Relaxed);
        slot.len.store(m.data.len() as u64, Ordering::Relaxed);
        slot.state.store(QUEUED, Ordering::Relaxed);
    }
    AHEAD_COUNT.store(n, Ordering::Release);
}

fn ahead_slots() -> &'static [Ahead] {
    &AHEAD[..AHEAD_COUNT.load(Ordering::Acquire)]
}

/// Hashes `slot`'s module and records whether it is trusted (the slot was claimed: [`HASHING`]).
fn hash_slot(slot: &Ahead) -> bool {
    finish(slot, signing::sha512(slot_bytes(slot)))
}

/// The bytes of `slot`'s module.
fn slot_bytes(slot: &Ahead) -> &'static [u8] {
    // SAFETY: the slot was filled by `plan_ahead` from a boot module's bytes, which stay mapped
    // and unchanged for the kernel's lifetime.
    unsafe { core::slice::from_raw_parts(slot.ptr.load(Ordering::Relaxed) as *const u8, slot.len.load(Ordering::Relaxed) as usize) }
}

/// Records whether `slot`'s module, whose digest is `digest`, is trusted.
fn finish(slot: &Ahead, digest: Digest) -> bool {
    let ok = is_trusted(&digest);
    slot.state.store(if ok { TRUSTED_AHEAD } else { UNTRUSTED_AHEAD }, Ordering::Release);
    ok
}

fn is_trusted(d: &Digest) -> bool {
    x86_64::instructions::interrupts::without_interrupts(|| TRUSTED.lock().contains(d))
}

/// A job for parked CPUs (`smp` posts it to each at boot): computes the digests of the boot
/// modules the loader has not checked yet, largest first, so that the first load of a large
/// crate (the WASM engine's, 14 MiB) finds its object already checked instead of spending
/// most of its time in SHA-512. Several CPUs share the work: each claims a module before
/// hashing it, and so does the loader (a module nobody has begun, it hashes itself). Plain
/// computation, as a parked CPU's job must be: no allocation, no task, no unwinding. Returns
/// how many modules this CPU hashed.
pub fn hash_ahead(_: u64) -> u64 {
    let cpu = crate::jobs::this_cpu_index();
    let mut n = 0;
    for slot in ahead_slots() {
        let abandoned = crate::jobs::abandoned(cpu);
        if slot.state.compare_exchange(QUEUED, HASHING, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            // Who claimed, then (released after it) that a parked CPU did: the loader reads
            // them in the other order.
            slot.claimer.store(cpu as u64, Ordering::Relaxed);
            slot.claimer_abandoned.store(abandoned, Ordering::Relaxed);
            slot.by_parked_cpu.store(true, Ordering::Release);
            if HASH_FAULT.swap(false, Ordering::Relaxed) {
                // SAFETY: deliberately invalid (`smp_hash_fault`, a test option): the read
                // faults with this slot claimed, and the job is abandoned.
                let v = unsafe { core::ptr::read_volatile(core::hint::black_box(core::ptr::dangling::<u64>())) };
                core::hint::black_box(v);
            }
            hash_slot(slot);
            n += 1;
        }
    }
    n
}

/// The module the boot CPU's idle loop is hashing: its slot, the digest so far, how many bytes
/// it covers.
struct IdleHash {
    slot: usize,
    digest: signing::Sha512,
    done: usize,
}

/// Taken with interrupts off only, by the idle loop for one piece and by the loader: on the one
/// CPU that runs tasks, neither can find it held by the other.
static IDLE: Mutex<Option<IdleHash>> = Mutex::new(None);
/// Bytes hashed at a time, interrupts off: about half a millisecond under TCG (a key typed
/// meanwhile waits that long; a 16550's 16-byte FIFO holds 1.4 ms of input at 115200 baud).
const IDLE_PIECE: usize = 32 * 1024;
/// Modules whose digest the idle loop computed whole, and ones the loader finished.
static IDLE_DONE: AtomicU64 = AtomicU64::new(0);
static IDLE_FINISHED_BY_LOADER: AtomicU64 = AtomicU64::new(0);

/// One piece of idle work for the boot CPU (`kernel::idle_work`: the idle task, and the shell
/// waiting for a key): hashes the next [`IDLE_PIECE`] bytes of a boot module not checked yet,
/// largest first, so that a first load after a pause (the WASM engine's, whose SHA-512 was about half
/// of the first `wasm run`) finds its digest known. Returns whether there is more to do; with
/// nothing left, the idle loop halts as before. `idle_hash=N` limits it to N pieces (0: off).
pub fn idle_hash_step() -> bool {
    if IDLE_BUDGET.load(Ordering::Relaxed) == 0 {
        return false;
    }
    x86_64::instructions::interrupts::without_interrupts(|| {
        let mut idle = IDLE.lock();
        if idle.is_none() {
            let Some(slot) = ahead_slots()
                .iter()
                .position(|s| s.state.compare_exchange(QUEUED, IDLE_HASHING, Ordering::AcqRel, Ordering::Relaxed).is_ok())
            else {
                IDLE_BUDGET.store(0, Ordering::Relaxed);
                return false;
            };
            *idle = Some(IdleHash { slot, digest: signing::Sha512::new(), done: 0 });
        }
        let Some(h) = idle.as_mut() else { return false };
        // Not 0 (checked above; only this CPU and, with interrupts off, only here changes it).
        IDLE_BUDGET.fetch_sub(1, Ordering::Relaxed);
        let slot = &AHEAD[h.slot];
        let bytes = slot_bytes(slot);
        let end = (h.done + IDLE_PIECE).min(bytes.len());
        h.digest.update(&bytes[h.done..end]);
        h.done = end;
        if end == bytes.len()
            && let Some(h) = idle.take()
        {
            finish(slot, h.digest.finalize());
            IDLE_DONE.fetch_add(1, Ordering::Relaxed);
        }
        true
    })
}

/// Pieces the idle loop may still hash: unlimited by default, `idle_hash=N`, and 0 once every
/// planned module is taken (or with `idle_hash=0`).
static IDLE_BUDGET: AtomicU64 = AtomicU64::new(u64::MAX);

/// Limits idle hashing to `pieces` pieces (the `idle_hash=N` kernel option: 0 turns it off, for
/// comparisons; a few leave a module begun, which the loader must finish: a test).
pub fn limit_idle_hashing(pieces: u64) {
    IDLE_BUDGET.store(pieces, Ordering::Relaxed);
}

/// The loader needs the module of `slot`, which the idle loop has begun: it takes the partial
/// digest and hashes the rest itself.
fn finish_idle(slot: &Ahead) -> bool {
    let partial = x86_64::instructions::interrupts::without_interrupts(|| {
        let mut idle = IDLE.lock();
        match idle.as_ref() {
            Some(h) if core::ptr::eq(&AHEAD[h.slot], slot) => idle.take(),
            _ => None,
        }
    });
    let bytes = slot_bytes(slot);
    let (mut digest, done) = partial.map_or((signing::Sha512::new(), 0), |h| (h.digest, h.done));
    digest.update(&bytes[done..]);
    IDLE_FINISHED_BY_LOADER.fetch_add(1, Ordering::Relaxed);
    finish(slot, digest.finalize())
}

/// (modules the idle loop hashed whole, modules the loader finished after it), for `mem`.
pub fn idle_stats() -> (u64, u64) {
    (IDLE_DONE.load(Ordering::Relaxed), IDLE_FINISHED_BY_LOADER.load(Ordering::Relaxed))
}

/// Makes the next parked CPU's hashing job fault with its first module claimed (the
/// `smp_hash_fault` test option): the loader must take that module over.
static HASH_FAULT: AtomicBool = AtomicBool::new(false);

/// Arms [`HASH_FAULT`] (for the `smp_hash_fault` kernel option).
pub fn inject_hash_fault() {
    HASH_FAULT.store(true, Ordering::Relaxed);
}

/// Modules the loader hashed itself after the parked CPU that claimed them abandoned its job.
static TAKEN_OVER: AtomicU64 = AtomicU64::new(0);

/// Whether `bytes` are a module hashed ahead: `Some(trusted)` once its digest is known (waiting
/// for a CPU that has begun it; hashing it here if nobody has), `None` if it has no slot.
fn check_ahead(bytes: &[u8]) -> Option<bool> {
    let slot = ahead_slots()
        .iter()
        .find(|s| s.ptr.load(Ordering::Relaxed) == bytes.as_ptr() as u64 && s.len.load(Ordering::Relaxed) == bytes.len() as u64)?;
    let t0 = crate::time::micros_since_entry();
    loop {
        match slot.state.load(Ordering::Acquire) {
            TRUSTED_AHEAD => break,
            UNTRUSTED_AHEAD => break,
            QUEUED => {
                if slot.state.compare_exchange(QUEUED, HASHING, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                    return Some(hash_slot(slot));
                }
            }
            // Begun by the idle loop, which cannot run while the loader does: finished here.
            IDLE_HASHING => return Some(finish_idle(slot)),
            _ => {
                // Claimed by a parked CPU whose job was abandoned since: hashed here instead.
                if slot.by_parked_cpu.load(Ordering::Acquire)
                    && crate::jobs::abandoned(slot.claimer.load(Ordering::Relaxed) as usize)
                        != slot.claimer_abandoned.load(Ordering::Relaxed)
                    && slot.state.load(Ordering::Acquire) == HASHING
                {
                    TAKEN_OVER.fetch_add(1, Ordering::Relaxed);
                    return Some(hash_slot(slot));
                }
                core::hint::spin_loop()
            }
        }
    }
    if slot.by_parked_cpu.load(Ordering::Relaxed) {
        AHEAD_USED.fetch_add(1, Ordering::Relaxed);
        AHEAD_WAIT_US.fetch_add(crate::time::micros_since_entry() - t0, Ordering::Relaxed);
    }
    Some(slot.state.load(Ordering::Acquire) == TRUSTED_AHEAD)
}

/// (objects whose digest a parked CPU had computed, or was computing, when the loader asked;
/// microseconds the loader waited for those), for `mem` and `make bench`.
pub fn ahead_stats() -> (u64, u64) {
    (AHEAD_USED.load(Ordering::Relaxed), AHEAD_WAIT_US.load(Ordering::Relaxed))
}

/// Modules whose parked CPU abandoned its hashing job, hashed by the loader instead.
pub fn taken_over() -> u64 {
    TAKEN_OVER.load(Ordering::Relaxed)
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
    plan_ahead(modules);
    Ok((n, how))
}

/// Whether `bytes` are exactly a signed object (the loader calls this before parsing one).
pub fn check(bytes: &[u8]) -> Result<(), TrustError> {
    let t0 = crate::time::micros_since_entry();
    let ok = match check_ahead(bytes) {
        Some(ok) => ok,
        None => is_trusted(&signing::sha512(bytes)),
    };
    CHECKED.fetch_add(1, Ordering::Relaxed);
    CHECKED_BYTES.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    CHECK_US.fetch_add(crate::time::micros_since_entry() - t0, Ordering::Relaxed);
    if ok { Ok(()) } else { Err(TrustError::Unknown) }
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
