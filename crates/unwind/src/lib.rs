//! unwind: panics in tasks unwind their stacks (running destructors) instead of just ending.
//!
//! Three parts meet here:
//! - the `unwinding` crate's DWARF CFI unwinder, which needs each frame's FDE: this crate's
//!   [`Finder`] asks the loader's address index which crate holds the PC and hands over that
//!   crate's `.eh_frame` (or nano_core's `.eh_frame_hdr`) — ranges registered later are found
//!   the same way;
//! - our own personality routine ([`personality`]), which reads each function's LSDA
//!   (`.gcc_except_table`): cleanup landing pads run destructors, a catch (the one
//!   [`catch`] sets up) stops the unwinding;
//! - the hooks: nano_core's `rust_eh_personality` and `_Unwind_Resume` forward here, and the
//!   task crate starts unwinding from its panic hook and catches it around every task's entry,
//!   so a panicking task ends with `Exit::Panicked` after its destructors ran.
//!
//! If unwinding cannot proceed (no FDE, the loader locked by the panicking code), the task
//! still ends, as before this crate, without running destructors.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::string::String;
use core::any::Any;
use core::ffi::c_int;
use unwinding::abi::{UnwindAction, UnwindContext, UnwindReasonCode};
use unwinding::custom_eh_frame_finder::{EhFrameFinder, FrameInfo, FrameInfoKind};

/// Finds FDEs through the loader's address index.
pub struct Finder;

// SAFETY: `find` returns addresses of `.eh_frame`/`.eh_frame_hdr` sections that stay mapped while
// their crate is loaded (a crate whose code is on a stack being unwound cannot be unloaded).
unsafe impl EhFrameFinder for Finder {
    fn find(&self, pc: usize) -> Option<FrameInfo> {
        nano_core::kernel::with_loader_ref_unless_held_here(|l| {
            let (sid, _) = l.locate(pc as u64)?;
            let sec = l.section(sid)?;
            let k = l.krate(sec.krate)?;
            // nano_core (prelinked) brings a search table; JIT code (prelinked too) registers a
            // plain `.eh_frame`.
            if k.prelinked
                && let Some(hdr) = k.sections.iter().filter_map(|s| l.section(*s)).find(|s| s.name == ".eh_frame_hdr")
            {
                return Some(FrameInfo { text_base: None, kind: FrameInfoKind::EhFrameHdr(hdr.addr as usize) });
            }
            let eh = l.section(*k.eh_frame.first()?)?;
            Some(FrameInfo { text_base: None, kind: FrameInfoKind::EhFrame(eh.addr as usize) })
        })
        .flatten()
    }
}

static FINDER: Finder = Finder;

/// What the `unwinding` crate keeps the registered finder in (version 0.2.8's private
/// `CUSTOM_EH_FRAME_FINDER`, an `Option<&'static (dyn EhFrameFinder + Sync)>`). Registering
/// stores `&FINDER` there — a pointer to this crate's vtable that no relocation records and no
/// hook holds, so a swap of this crate would leave `unwinding` calling the old version, keeping
/// it alive for ever; and `unwinding` has no call to replace a finder. So [`init`] looks the
/// static up and [`swap_init`] writes the new version's finder into it.
const FINDER_STATIC: &str = "unwinding::unwinder::find_fde::custom::CUSTOM_EH_FRAME_FINDER";

/// Where the two words of [`FINDER_STATIC`] are (0: not found): the compiler may keep the fat
/// pointer as one 16-byte static or split it into `.0` (the data pointer) and `.1` (the vtable).
/// Statics of this crate, so a new version adopts them and finds the slot without the loader
/// (which a swap holds while it runs `swap_init`).
static FINDER_DATA_WORD: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
static FINDER_VTABLE_WORD: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// After a swap of this crate: points `unwinding`'s finder at this version's (see
/// [`FINDER_STATIC`]). Called by crate_swap, by convention, right after the commit.
pub fn swap_init() {
    use core::sync::atomic::Ordering;
    let (data_at, vtable_at) = (FINDER_DATA_WORD.load(Ordering::Acquire), FINDER_VTABLE_WORD.load(Ordering::Acquire));
    if data_at == 0 || vtable_at == 0 {
        return;
    }
    let finder: &'static (dyn EhFrameFinder + Sync) = &FINDER;
    // SAFETY: a shared reference to a trait object is two words, the data pointer then the
    // vtable (the layout rustc uses, and the one whose `.0`/`.1` split we found).
    let [data, vtable] = unsafe { core::mem::transmute::<&'static (dyn EhFrameFinder + Sync), [u64; 2]>(finder) };
    x86_64::instructions::interrupts::without_interrupts(|| {
        // SAFETY: the two addresses are the words of unwinding's registered finder (found by
        // name and size by `init`), which unwinding only reads after initialising them. Tasks
        // run on one CPU and interrupts are off, so no unwind reads them while both change.
        unsafe {
            (data_at as *mut u64).write_volatile(data);
            (vtable_at as *mut u64).write_volatile(vtable);
        }
    });
}

/// The two words of [`FINDER_STATIC`] in the loaded `unwinding` crate, by name: the `.0`/`.1`
/// halves if the compiler split the static, else the whole static's two words.
fn find_finder_words() -> Option<(u64, u64)> {
    nano_core::kernel::with_loader_ref(|l| {
        let k = l.crates().find(|k| k.name == "unwinding")?;
        let at = |suffix: &str| l.find_symbol(k.id, &alloc::format!("{FINDER_STATIC}{suffix}"), mod_mgmt::SymbolFilter::Any);
        match (at(".0"), at(".1")) {
            (Some(data), Some(vtable)) => Some((data, vtable)),
            _ => at("").map(|whole| (whole, whole + 8)),
        }
    })
}

/// A cursor over LSDA bytes in loaded memory.
struct Reader {
    p: usize,
}

const DW_EH_PE_OMIT: u8 = 0xff;

impl Reader {
    fn u8(&mut self) -> u8 {
        // SAFETY: the LSDA lies in a loaded crate's rodata; the reader stays inside the table
        // the LSDA header describes.
        let v = unsafe { (self.p as *const u8).read() };
        self.p += 1;
        v
    }
    fn uleb(&mut self) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let b = self.u8();
            if shift < 64 {
                v |= u64::from(b & 0x7f) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                return v;
            }
        }
    }
    fn sleb(&mut self) -> i64 {
        let (mut v, mut shift) = (0i64, 0);
        loop {
            let b = self.u8();
            if shift < 64 {
                v |= i64::from(b & 0x7f) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                if shift < 64 && b & 0x40 != 0 {
                    v |= -1i64 << shift;
                }
                return v;
            }
        }
    }
    fn fixed(&mut self, n: usize) -> u64 {
        let mut v = 0u64;
        for i in 0..n {
            v |= u64::from(self.u8()) << (8 * i);
        }
        v
    }
    /// Reads a pointer in DWARF EH encoding `enc` (value format and pc-relative application).
    fn encoded(&mut self, enc: u8) -> Option<u64> {
        if enc == DW_EH_PE_OMIT {
            return Some(0);
        }
        let field = self.p as u64;
        let v = match enc & 0x0f {
            0x00 | 0x04 => self.fixed(8),
            0x01 => self.uleb(),
            0x02 => self.fixed(2),
            0x03 => self.fixed(4),
            0x09 => self.sleb() as u64,
            0x0a => self.fixed(2) as i16 as i64 as u64,
            0x0b => self.fixed(4) as i32 as i64 as u64,
            0x0c => self.fixed(8),
            _ => return None,
        };
        Some(match enc & 0x70 {
            0x00 => v,
            0x10 => field.wrapping_add(v),
            _ => return None,
        })
    }
}

/// What the LSDA says about the call site of `ip`.
enum Site {
    /// No entry: unwinding through this frame must not happen (terminate).
    None,
    /// No landing pad: keep unwinding.
    Continue,
    /// A landing pad; `catch` if an action catches (catch-all), with its type filter.
    Pad { landing: u64, catch: Option<i64> },
}

fn find_site(lsda: usize, func_start: u64, ip: u64) -> Option<Site> {
    let mut r = Reader { p: lsda };
    let lp_enc = r.u8();
    let lpstart = if lp_enc == DW_EH_PE_OMIT { func_start } else { r.encoded(lp_enc)? };
    let tt_enc = r.u8();
    if tt_enc != DW_EH_PE_OMIT {
        r.uleb(); // offset of the type table; Rust's catches are catch-alls, no types needed
    }
    let cs_enc = r.u8();
    let cs_len = r.uleb();
    let cs_end = r.p as u64 + cs_len;
    let action_table = cs_end;
    while (r.p as u64) < cs_end {
        let start = r.encoded(cs_enc)?;
        let len = r.encoded(cs_enc)?;
        let pad = r.encoded(cs_enc)?;
        let action = r.uleb();
        if ip < func_start + start {
            break;
        }
        if ip < func_start + start + len {
            if pad == 0 {
                return Some(Site::Continue);
            }
            let catch = if action == 0 {
                None
            } else {
                let mut a = Reader { p: (action_table + action - 1) as usize };
                let filter = a.sleb();
                (filter > 0).then_some(filter)
            };
            return Some(Site::Pad { landing: lpstart + pad, catch });
        }
    }
    Some(Site::None)
}

/// The personality routine (nano_core's `rust_eh_personality` forwards here).
///
/// # Safety
/// Called by the unwinder with the Itanium ABI's arguments.
pub unsafe extern "C" fn personality(version: i32, actions: u32, _class: u64, exception: *mut u8, context: *mut u8) -> u32 {
    const CONTINUE: u32 = UnwindReasonCode::CONTINUE_UNWIND.0 as u32;
    const FATAL1: u32 = UnwindReasonCode::FATAL_PHASE1_ERROR.0 as u32;
    const FATAL2: u32 = UnwindReasonCode::FATAL_PHASE2_ERROR.0 as u32;
    if version != 1 || context.is_null() {
        return FATAL1;
    }
    // SAFETY: the unwinder passes its live context.
    let ctx: &mut UnwindContext<'_> = unsafe { &mut *(context as *mut UnwindContext<'_>) };
    let lsda = unwinding::abi::_Unwind_GetLanguageSpecificData(ctx) as usize;
    if lsda == 0 {
        return CONTINUE;
    }
    let ip = unwinding::abi::_Unwind_GetIP(ctx) as u64 - 1;
    let start = unwinding::abi::_Unwind_GetRegionStart(ctx) as u64;
    let actions = UnwindAction(actions as c_int);
    let site = match find_site(lsda, start, ip) {
        // The faulting instruction of a CPU exception being unwound is no call site: pass it.
        Some(Site::None) if task::unwinding_fault_ip() == Some(ip) => Site::Continue,
        Some(s) => s,
        None => return if actions.contains(UnwindAction::SEARCH_PHASE) { FATAL1 } else { FATAL2 },
    };
    if actions.contains(UnwindAction::SEARCH_PHASE) {
        return match site {
            Site::Pad { catch: Some(_), .. } => UnwindReasonCode::HANDLER_FOUND.0 as u32,
            Site::None => FATAL1,
            _ => CONTINUE,
        };
    }
    match site {
        Site::Pad { landing, catch } => {
            // rax: the exception; rdx: the selector (the catch filter, or 0 for cleanup).
            unwinding::abi::_Unwind_SetGR(ctx, 0, exception as usize);
            unwinding::abi::_Unwind_SetGR(ctx, 1, catch.unwrap_or(0) as usize);
            unwinding::abi::_Unwind_SetIP(ctx, landing as usize);
            UnwindReasonCode::INSTALL_CONTEXT.0 as u32
        }
        Site::Continue => CONTINUE,
        Site::None => FATAL2,
    }
}

/// Runs `f`, catching a panic that unwinds out of it (the panic's message as the error): the
/// kernel's `catch_unwind`.
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    let enabled = x86_64::instructions::interrupts::are_enabled();
    unwinding::panic::catch_unwind(f).map_err(|payload| {
        // The unwind that ended here ran with interrupts off (see `begin`): put back the state
        // this catch was entered with.
        if enabled {
            x86_64::instructions::interrupts::enable();
        }
        task::panic_caught();
        match payload.downcast::<String>() {
            Ok(s) => *s,
            Err(_) => String::from("panic"),
        }
    })
}

/// Continues unwinding a caught panic (the kernel's `resume_unwind`); returns only if
/// unwinding could not start.
pub fn resume(msg: String) -> UnwindReasonCode {
    begin(msg)
}

/// Starts unwinding the current task with `msg`; returns only if unwinding could not start.
///
/// Unwinding runs with interrupts off until the catch that ends it. The `unwinding` crate
/// enters each landing pad by switching `rsp` to the pad's frame and only then reading the
/// saved registers from its context, which lives in the unwinder's frame — below the new
/// stack pointer. A timer interrupt in that window pushes its frame over the context and the
/// task jumps into garbage (the one-in-thirty hang of a panic in a host function called by
/// WASM). With interrupts off the window cannot be hit; landing pads may still yield.
pub fn begin(msg: String) -> UnwindReasonCode {
    let enabled = x86_64::instructions::interrupts::are_enabled();
    x86_64::instructions::interrupts::disable();
    let payload: Box<dyn Any + Send> = Box::new(msg);
    let code = unwinding::panic::begin_panic(payload);
    if enabled {
        x86_64::instructions::interrupts::enable();
    }
    code
}

fn catch_for_task(f: &mut dyn FnMut()) -> Result<(), String> {
    catch(f)
}

fn begin_for_task(msg: String) {
    let _ = begin(msg);
}

/// The address of `_Unwind_Resume` inside the unwinding crate (nano_core's own symbol of that
/// name shadows it in the namespace).
fn unwinding_resume() -> Option<u64> {
    nano_core::kernel::with_loader_ref(|l| {
        let k = l.crates().find(|k| k.name == "unwinding")?;
        l.find_symbol(k.id, "_Unwind_Resume", mod_mgmt::SymbolFilter::Code)
    })
}

/// Installs the FDE finder and the hooks. Called once by captain after the task layer is up.
pub fn init() {
    if unwinding::custom_eh_frame_finder::set_custom_eh_frame_finder(&FINDER).is_err() {
        return;
    }
    match find_finder_words() {
        Some((data, vtable)) => {
            FINDER_DATA_WORD.store(data, core::sync::atomic::Ordering::Release);
            FINDER_VTABLE_WORD.store(vtable, core::sync::atomic::Ordering::Release);
        }
        None => log::warn!("unwind: {FINDER_STATIC} not found: a swap of unwind will keep the old version alive"),
    }
    let Some(resume) = unwinding_resume() else {
        log::warn!("unwind: _Unwind_Resume of the unwinding crate not found; panics will not unwind");
        return;
    };
    // SAFETY: `resume` is the address of the unwinding crate's `_Unwind_Resume`, which has the
    // signature nano_core's hook expects.
    let resume: unsafe extern "C" fn(*mut u8) -> ! =
        unsafe { core::mem::transmute::<usize, unsafe extern "C" fn(*mut u8) -> !>(resume as usize) };
    nano_core::panic::set_unwind_hooks(personality, resume);
    task::set_unwinder(catch_for_task, begin_for_task);
    log::info!("unwind: panics in tasks unwind (DWARF CFI; FDEs found through the loader)");
}

struct Trace {
    pcs: alloc::vec::Vec<u64>,
    max: usize,
}

extern "C" fn trace_frame(ctx: &UnwindContext<'_>, arg: *mut core::ffi::c_void) -> UnwindReasonCode {
    // SAFETY: `arg` is the `Trace` that `cfi_backtrace` passes, alive for the whole walk.
    let t = unsafe { &mut *(arg as *mut Trace) };
    t.pcs.push(unwinding::abi::_Unwind_GetIP(ctx) as u64);
    if t.pcs.len() >= t.max { UnwindReasonCode::NORMAL_STOP } else { UnwindReasonCode::NO_REASON }
}

/// The return addresses of the current stack found by DWARF CFI unwinding (not frame
/// pointers), innermost first, at most `max`.
pub fn cfi_backtrace(max: usize) -> alloc::vec::Vec<u64> {
    let mut t = Trace { pcs: alloc::vec::Vec::with_capacity(max), max };
    unwinding::abi::_Unwind_Backtrace(trace_frame, &mut t as *mut Trace as *mut core::ffi::c_void);
    t.pcs
}
