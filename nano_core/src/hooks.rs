//! hooks: the one registration facility for addresses that one crate stores for another.
//!
//! Lower layers offer hooks instead of calling upward: the timer calls a tick hook, the
//! exception handlers a fault hook, the panic handler a panic hook, the task layer a policy.
//! Each of these holds the address of a function (or a static) of a higher, loaded crate — a
//! reference into that crate that no relocation records. A live swap of the higher crate must
//! move it to the new version, and must know every one of them: so every hook is a [`Hook`]
//! (a function) or a [`DataHook`] (a `&'static` value), which puts its slot into one registry
//! the first time it is set. The swap asks [`references`] what the slots and the CPU's
//! interrupt gates hold (refusing a swap that would leave one without an equivalent), then
//! [`relink`]s them to the new version by symbol name.
//!
//! A slot lives where its hook is declared (a static of the offering crate); when that memory
//! is freed its slots are forgotten ([`forget_range`]). A slot is a [`Triple`]: a bit flipped in
//! the address a hook holds would send, say, every timer interrupt to a wild address, and
//! nothing else knows the right value; three copies, voted on at every call, repair it.

use alloc::string::String;
use alloc::vec::Vec;
use core::marker::{FnPtr, PhantomData};
use core::sync::atomic::{AtomicBool, Ordering};
use spin::Mutex;

use crate::triple::Triple;

/// One registered slot: the address of its [`Triple`], and the hook's name.
struct Slot {
    addr: usize,
    name: String,
}

static SLOTS: Mutex<Vec<Slot>> = Mutex::new(Vec::new());

fn register(addr: usize, name: &str) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        crate::heap::metadata(|| {
            let mut slots = SLOTS.lock();
            if !slots.iter().any(|s| s.addr == addr) {
                slots.push(Slot { addr, name: String::from(name) });
            }
        })
    })
}

/// A hook holding a function pointer of type `F` (e.g. `fn()`, `fn(&FaultInfo) -> Option<u64>`).
///
/// Declare it as a `static` in the crate that calls it; the crate that implements it calls
/// [`Hook::set`].
#[repr(C)] // the slot first: fault-injection tests flip bits at known offsets
pub struct Hook<F> {
    value: Triple,
    registered: AtomicBool,
    name: &'static str,
    _f: PhantomData<F>,
}

impl<F: FnPtr> Hook<F> {
    /// An empty hook; `name` says what it is in `ns` and swap reports (e.g. `interrupts::tick`).
    pub const fn new(name: &'static str) -> Hook<F> {
        Hook { value: Triple::new(0), registered: AtomicBool::new(false), name, _f: PhantomData }
    }

    /// Installs `f` (replacing what was there).
    pub fn set(&'static self, f: F) {
        if !self.registered.swap(true, Ordering::AcqRel) {
            register(&self.value as *const Triple as usize, self.name);
        }
        set_slot(&self.value, f.addr() as u64);
    }

    /// The installed function.
    pub fn get(&self) -> Option<F> {
        let v = self.value.load().unwrap_or(0) as usize;
        if v == 0 {
            return None;
        }
        // SAFETY: the slot only ever holds a function pointer of type `F`: one stored by `set`,
        // or the same-named function of a new version of its crate, which a swap put there
        // (the swap's contract: a function keeps its signature across versions, as for every
        // relocation it rewrites). `F` is a function pointer type, the size of a usize.
        Some(unsafe { core::mem::transmute_copy::<usize, F>(&v) })
    }

    /// Removes the installed function.
    pub fn clear(&self) {
        set_slot(&self.value, 0);
    }
}

/// A hook holding a `&'static T` (a table of functions such as a scheduling policy).
#[repr(C)] // as `Hook`
pub struct DataHook<T: 'static> {
    value: Triple,
    registered: AtomicBool,
    name: &'static str,
    _t: PhantomData<&'static T>,
}

impl<T: 'static + Sync> DataHook<T> {
    /// An empty hook.
    pub const fn new(name: &'static str) -> DataHook<T> {
        DataHook { value: Triple::new(0), registered: AtomicBool::new(false), name, _t: PhantomData }
    }

    /// Installs `v`.
    pub fn set(&'static self, v: &'static T) {
        if !self.registered.swap(true, Ordering::AcqRel) {
            register(&self.value as *const Triple as usize, self.name);
        }
        set_slot(&self.value, v as *const T as u64);
    }

    /// The installed value.
    pub fn get(&self) -> Option<&'static T> {
        let v = self.value.load().unwrap_or(0) as usize;
        // SAFETY: the slot holds null, a `&'static T` stored by `set`, or the same-named static
        // of a new version of its crate, put there by a swap (which keeps the static's type).
        unsafe { (v as *const T).as_ref() }
    }
}

/// Writes a slot's three copies with interrupts off, so that a hook called from an interrupt on
/// this CPU never sees a half-written slot (and "repairs" it back to the old value).
fn set_slot(slot: &Triple, v: u64) {
    x86_64::instructions::interrupts::without_interrupts(|| slot.store(v));
}

/// What holds a registered address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// A hook, by name.
    Hook(String),
    /// The gate of this interrupt vector in the loaded IDT.
    Gate(u8),
}

impl core::fmt::Display for Holder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Holder::Hook(n) => write!(f, "hook {n}"),
            Holder::Gate(v) => write!(f, "IDT vector {v}"),
        }
    }
}

/// Reads and writes the gates of the IDT the CPU uses now.
mod idt {
    const GATES: usize = 256;

    fn table() -> Option<(u64, usize)> {
        let p = x86_64::instructions::tables::sidt();
        let n = ((p.limit as usize) + 1) / 16;
        (p.base.as_u64() != 0).then_some((p.base.as_u64(), n.min(GATES)))
    }

    /// The handler address of every present gate.
    pub fn gates() -> impl Iterator<Item = (u8, u64)> {
        let (base, n) = table().unwrap_or((0, 0));
        (0..n).filter_map(move |i| {
            let e = base + 16 * i as u64;
            // SAFETY: the CPU's IDT register points at `n` 16-byte gates that the kernel keeps
            // mapped (a leaked table or a static); reading them has no side effects.
            let (lo, opts, mid, hi) = unsafe {
                ((e as *const u16).read(), ((e + 4) as *const u16).read(), ((e + 6) as *const u16).read(), ((e + 8) as *const u32).read())
            };
            let present = opts & 0x8000 != 0;
            let addr = u64::from(lo) | (u64::from(mid) << 16) | (u64::from(hi) << 32);
            present.then_some((i as u8, addr))
        })
    }

    /// Points gate `v` at `addr` (keeping its selector, IST and flags).
    pub fn set(v: u8, addr: u64) {
        let Some((base, n)) = table() else { return };
        if v as usize >= n {
            return;
        }
        let e = base + 16 * u64::from(v);
        // SAFETY: as in `gates`; the table is writable kernel memory, and the caller has
        // interrupts off, so no interrupt is delivered through a half-written gate.
        unsafe {
            (e as *mut u16).write(addr as u16);
            ((e + 6) as *mut u16).write((addr >> 16) as u16);
            ((e + 8) as *mut u32).write((addr >> 32) as u32);
        }
    }
}

/// Calls `f` with every address held by a registered hook or an interrupt gate (a swap checks
/// them against the crates it replaces).
pub fn references(f: &mut dyn FnMut(Holder, u64)) {
    let slots: Vec<(usize, String)> = x86_64::instructions::interrupts::without_interrupts(|| {
        crate::heap::metadata(|| SLOTS.lock().iter().map(|s| (s.addr, s.name.clone())).collect())
    });
    for (addr, name) in slots {
        // SAFETY: registered slots are the `Triple` of a live hook static (forgotten when
        // their memory is freed).
        let v = unsafe { &*(addr as *const Triple) }.load().unwrap_or(0);
        if v != 0 {
            f(Holder::Hook(name), v);
        }
    }
    for (v, addr) in idt::gates() {
        f(Holder::Gate(v), addr);
    }
}

/// Moves every hook and gate whose address `translate` maps to a new one; returns how many
/// moved. Call with interrupts off (a swap's commit).
pub fn relink(translate: &mut dyn FnMut(u64) -> Option<u64>) -> usize {
    let mut moved = 0;
    let slots = SLOTS.lock();
    for s in slots.iter() {
        // SAFETY: as in `references`.
        let slot = unsafe { &*(s.addr as *const Triple) };
        let v = slot.load().unwrap_or(0);
        if v != 0
            && let Some(new) = translate(v)
        {
            set_slot(slot, new);
            moved += 1;
        }
    }
    drop(slots);
    let gates: Vec<(u8, u64)> = idt::gates().collect();
    for (v, addr) in gates {
        if let Some(new) = translate(addr) {
            idt::set(v, new);
            moved += 1;
        }
    }
    moved
}

/// Forgets the slots inside `[start, end)` (their memory is being freed).
pub fn forget_range(start: u64, end: u64) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        SLOTS.lock().retain(|s| (s.addr as u64) < start || (s.addr as u64) >= end);
    })
}

/// How many slots are registered.
pub fn count() -> usize {
    x86_64::instructions::interrupts::without_interrupts(|| SLOTS.lock().len())
}
