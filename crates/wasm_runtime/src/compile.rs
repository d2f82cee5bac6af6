//! Running Cranelift over a translated module and laying the result out as one code image.
//!
//! The image holds every defined function (16-byte aligned, in index order) followed by one
//! host-to-WASM trampoline per distinct signature. Calls between functions of the module are
//! recorded as relocations against function indices and patched when the image is placed;
//! nothing in the image refers to an absolute address, so it can go anywhere. Unwind
//! information is kept per function and written as `.eh_frame` once the address is known.

use crate::Error;
use crate::module::{FuncType, ModuleInfo};
use crate::translate::{self, Env, ir_type};
use crate::trap::{TrapKind, TrapSite};
use alloc::format;
use alloc::vec::Vec;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::types::I64;
use cranelift_codegen::ir::{
    AbiParam, ArgumentPurpose, ExternalName, Function, InstBuilder, MemFlagsData, Signature, UserExternalName, UserFuncName,
};
use cranelift_codegen::isa::unwind::UnwindInfo;
use cranelift_codegen::isa::{CallConv, OwnedTargetIsa, TargetFrontendConfig};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::{Context, FinalizedRelocTarget};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use hashbrown::HashMap;
use wasmparser::{BinaryReader, FunctionBody};

/// Compilation options.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Charge fuel at function entries and loop headers (bounds runaway loops).
    pub fuel: bool,
    /// Run Cranelift's IR verifier (slow; for tests).
    pub verify: bool,
    /// Let Cranelift use AVX/AVX2/FMA when the CPU has them (only where the OS saves the
    /// AVX state: the host).
    pub allow_avx: bool,
    /// Check every memory access against the memory's length (true), or rely on an 8 GiB
    /// guarded reservation per memory and let an out-of-bounds access fault (false; needs a
    /// platform that can reserve address space: the host).
    pub bounds_checks: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config { fuel: false, verify: false, allow_avx: false, bounds_checks: true }
    }
}

fn cpuid(leaf: u32) -> core::arch::x86_64::CpuidResult {
    core::arch::x86_64::__cpuid_count(leaf, 0)
}

/// The target ISA, with flags from CPUID.
pub fn isa(config: &Config) -> Result<OwnedTargetIsa, Error> {
    let e = |m: &dyn core::fmt::Debug| Error::Unsupported(format!("cranelift setting: {m:?}"));
    let mut f = settings::builder();
    f.set("opt_level", "speed").map_err(|x| e(&x))?;
    f.set("preserve_frame_pointers", "true").map_err(|x| e(&x))?;
    f.set("unwind_info", "true").map_err(|x| e(&x))?;
    f.set("enable_multi_ret_implicit_sret", "true").map_err(|x| e(&x))?;
    f.set("enable_probestack", "true").map_err(|x| e(&x))?;
    f.set("probestack_strategy", "inline").map_err(|x| e(&x))?;
    f.set("enable_verifier", if config.verify { "true" } else { "false" }).map_err(|x| e(&x))?;
    let mut b = cranelift_codegen::isa::lookup_by_name("x86_64-unknown-unknown").map_err(|x| e(&x))?;
    let l1 = cpuid(1);
    let l7 = if cpuid(0).eax >= 7 { cpuid(7) } else { cpuid(0) };
    let ext = if cpuid(0x8000_0000).eax >= 0x8000_0001 { cpuid(0x8000_0001).ecx } else { 0 };
    let mut feats: Vec<(&str, bool)> = alloc::vec![
        ("has_sse3", l1.ecx & 1 != 0),
        ("has_ssse3", l1.ecx & (1 << 9) != 0),
        ("has_cmpxchg16b", l1.ecx & (1 << 13) != 0),
        ("has_sse41", l1.ecx & (1 << 19) != 0),
        ("has_sse42", l1.ecx & (1 << 20) != 0),
        ("has_popcnt", l1.ecx & (1 << 23) != 0),
        ("has_lzcnt", ext & (1 << 5) != 0),
        ("has_bmi1", l7.ebx & (1 << 3) != 0),
        ("has_bmi2", l7.ebx & (1 << 8) != 0),
    ];
    if config.allow_avx {
        feats.push(("has_avx", l1.ecx & (1 << 28) != 0));
        feats.push(("has_avx2", l7.ebx & (1 << 5) != 0));
        feats.push(("has_fma", l1.ecx & (1 << 12) != 0));
    }
    for (name, on) in feats {
        b.set(name, if on { "true" } else { "false" }).map_err(|x| e(&x))?;
    }
    b.finish(settings::Flags::new(f)).map_err(|x| e(&x))
}

/// A relocation in the image.
#[derive(Debug, Clone, Copy)]
pub struct ImageReloc {
    /// Offset in the image of the bytes to patch.
    pub offset: u32,
    /// Kind (`X86CallPCRel4` or `Abs8`).
    pub kind: Reloc,
    /// Target function index.
    pub func: u32,
    /// Addend.
    pub addend: i64,
}

/// A compiled module, not yet placed.
pub struct Image {
    /// Machine code.
    pub code: Vec<u8>,
    /// Range of each defined function (index − imported functions) in `code`.
    pub funcs: Vec<Range<u32>>,
    /// Trampoline offset per type index.
    pub trampolines: Vec<u32>,
    /// Relocations.
    pub relocs: Vec<ImageReloc>,
    /// Trap sites, sorted.
    pub traps: Vec<TrapSite>,
    /// Unwind info per function and trampoline: (image offset, info).
    pub unwind: Vec<(u32, UnwindInfo)>,
    /// The ISA's common information entry, which every FDE refers to.
    pub cie: Option<gimli::write::CommonInformationEntry>,
    /// Canonical signature id of each type index.
    pub sig_ids: Vec<u64>,
    /// Cranelift IR instructions translated (for figures).
    pub ir_insts: usize,
    /// Functions compiled by helpers (see [`Workers`]), for figures.
    pub by_helpers: usize,
}

/// Canonical ids: equal function types get equal ids in every module of this engine.
static SIGNATURES: spin::Mutex<Vec<FuncType>> = spin::Mutex::new(Vec::new());

/// The canonical id of a function type.
pub fn sig_id(ft: &FuncType) -> u64 {
    let mut s = SIGNATURES.lock();
    if let Some(i) = s.iter().position(|x| x == ft) {
        return i as u64 + 1;
    }
    s.push(ft.clone());
    s.len() as u64
}

struct Output {
    code: Vec<u8>,
    relocs: Vec<(u32, Reloc, u32, i64)>,
    traps: Vec<(u32, TrapKind, u32)>,
    unwind: Option<UnwindInfo>,
    insts: usize,
}

fn run_cranelift(isa: &dyn cranelift_codegen::isa::TargetIsa, ctx: &mut Context, func_index: u32) -> Result<Output, Error> {
    let insts = ctx.func.dfg.num_insts();
    let names: Vec<UserExternalName> = ctx.func.params.user_named_funcs().values().cloned().collect();
    let mut cp = ControlPlane::default();
    let code = ctx.compile(isa, &mut cp).map_err(|e| Error::Compile { func: func_index, msg: format!("{:?}", e.inner) })?;
    let bytes = code.code_buffer().to_vec();
    let srclocs = code.buffer.get_srclocs_sorted();
    let wasm_offset_at = |off: u32| -> u32 {
        let i = srclocs.partition_point(|s| s.start <= off);
        i.checked_sub(1).map(|i| &srclocs[i]).filter(|s| off < s.end).map(|s| s.loc.bits()).unwrap_or(0)
    };
    let traps = code.buffer.traps().iter().map(|t| (t.offset, TrapKind::from_code(t.code), wasm_offset_at(t.offset))).collect();
    let mut relocs = Vec::new();
    for r in code.buffer.relocs() {
        match &r.target {
            FinalizedRelocTarget::ExternalName(ExternalName::User(u)) => {
                let name = names
                    .get(cranelift_codegen::entity::EntityRef::index(*u))
                    .ok_or_else(|| Error::Compile { func: func_index, msg: "unknown callee".into() })?;
                relocs.push((r.offset, r.kind, name.index, r.addend));
            }
            other => {
                return Err(Error::Unsupported(format!("function {func_index} needs {other:?} (a libcall: does the CPU lack SSE4.1?)")));
            }
        }
    }
    let unwind = code.create_unwind_info(isa).map_err(|e| Error::Compile { func: func_index, msg: format!("unwind: {e:?}") })?;
    Ok(Output { code: bytes, relocs, traps, unwind, insts })
}

/// The host-to-WASM trampoline for type `ft`: `(vmctx, callee, values)`, arguments read from
/// `values[i]` and results written back to `values[j]` (8 bytes each).
fn trampoline(ft: &FuncType, call_conv: CallConv, frontend: TargetFrontendConfig) -> Result<Function, Error> {
    let mut sig = Signature::new(call_conv);
    sig.params.push(AbiParam::special(I64, ArgumentPurpose::VMContext));
    sig.params.push(AbiParam::new(I64));
    sig.params.push(AbiParam::new(I64));
    let mut func = Function::with_name_signature(UserFuncName::user(1, 0), sig);
    let mut fctx = FunctionBuilderContext::new();
    let callee_sig = translate::wasm_signature(ft, call_conv)?;
    let mut b = FunctionBuilder::new(&mut func, &mut fctx);
    let block = b.create_block();
    b.append_block_params_for_function_params(block);
    b.switch_to_block(block);
    b.seal_block(block);
    let p = b.block_params(block).to_vec();
    let (vmctx, callee, values) = (p[0], p[1], p[2]);
    let flags = MemFlagsData::trusted();
    let mut args = alloc::vec![vmctx];
    for (i, t) in ft.params().iter().enumerate() {
        args.push(b.ins().load(ir_type(*t)?, flags, values, (i * 8) as i32));
    }
    let sref = b.import_signature(callee_sig);
    let call = b.ins().call_indirect(sref, callee, &args);
    let results = b.inst_results(call).to_vec();
    for (j, r) in results.into_iter().enumerate() {
        b.ins().store(flags, r, values, (j * 8) as i32);
    }
    b.ins().return_(&[]);
    b.finalize(frontend);
    Ok(func)
}

/// Helpers that compile beside the caller: the kernel's parked CPUs, or threads on the host.
///
/// The contract is the parked CPUs' (a plain job: `work(arg)`, no unwinding out of it): the
/// compile hands out functions one at a time from a counter in `arg`'s state, each result goes
/// into that function's slot, and the image is laid out in index order afterwards, so it is the
/// same bytes whoever compiled what. A function a helper claimed and did not finish (it faulted
/// or panicked there, and abandoned the work) is compiled again by the caller, which then
/// reports its error as a serial compile would.
pub trait Workers: Sync {
    /// How many helpers [`Workers::run`] would use now (0: the caller compiles alone).
    fn helpers(&self) -> usize;
    /// Starts `work(arg)` on every helper, calls `mine` (the caller's share) meanwhile, and
    /// returns when each helper has returned from `work` or abandoned it.
    ///
    /// `arg` points to heap memory that stays valid for as long as any helper may use it, also
    /// if the caller never resumes (a task killed while it waits leaks it rather than frees it).
    fn run(&self, work: fn(*const ()), arg: *const (), mine: &mut dyn FnMut());
}

/// The serial compile: no helpers.
struct Alone;

impl Workers for Alone {
    fn helpers(&self) -> usize {
        0
    }

    fn run(&self, _work: fn(*const ()), _arg: *const (), mine: &mut dyn FnMut()) {
        mine();
    }
}

/// The state a parallel compile shares with its helpers. Owned whole (the module's description
/// and bytes are copies), so that nothing a helper reads lies in the caller's stack.
struct Shared {
    module: ModuleInfo,
    wasm: Vec<u8>,
    sig_ids: Vec<u64>,
    isa: OwnedTargetIsa,
    fuel: bool,
    bounds_checks: bool,
    /// The defined functions, largest body first: handed out in this order, the big ones
    /// start early and the small ones fill the gaps at the end (longest job first).
    order: Vec<usize>,
    /// The next position in `order` to hand out.
    next: AtomicUsize,
    /// Set by the first error: no more functions are handed out.
    failed: AtomicBool,
    /// Functions compiled, by whoever: the caller counts its own separately.
    compiled: AtomicUsize,
    slots: Vec<spin::Mutex<Option<Result<Output, Error>>>>,
}

impl Shared {
    fn env(&self) -> Env<'_> {
        Env {
            module: &self.module,
            sig_ids: &self.sig_ids,
            fuel: self.fuel,
            bounds_checks: self.bounds_checks,
            call_conv: CallConv::SystemV,
            frontend: self.isa.frontend_config(),
        }
    }

    /// Compiles functions until none is left; returns how many this caller compiled.
    fn work(&self) -> usize {
        let env = self.env();
        let mut fctx = FunctionBuilderContext::new();
        let mut ctx = Context::new();
        let mut done = 0;
        while !self.failed.load(Ordering::Acquire) {
            let Some(&i) = self.order.get(self.next.fetch_add(1, Ordering::AcqRel)) else { break };
            let slot = &self.slots[i];
            let r = compile_function(&env, &*self.isa, &self.wasm, i, &mut ctx, &mut fctx);
            if r.is_err() {
                self.failed.store(true, Ordering::Release);
            }
            *slot.lock() = Some(r);
            done += 1;
            self.compiled.fetch_add(1, Ordering::AcqRel);
        }
        done
    }
}

/// A helper's entry: `arg` is the [`Shared`] of the compile (see [`Workers::run`]).
fn helper_work(arg: *const ()) {
    // SAFETY: `compile_with` passes a pointer to its boxed `Shared`, which it keeps (or, if its
    // task is killed, leaks) until `Workers::run` has returned, that is until every helper
    // has returned from here or abandoned it.
    let shared = unsafe { &*(arg as *const Shared) };
    shared.work();
}

/// Translates and compiles defined function `i` (its index among the defined functions).
fn compile_function(
    env: &Env<'_>,
    isa: &dyn cranelift_codegen::isa::TargetIsa,
    wasm: &[u8],
    i: usize,
    ctx: &mut Context,
    fctx: &mut FunctionBuilderContext,
) -> Result<Output, Error> {
    let index = env.module.imported_funcs + i as u32;
    let range = env.module.bodies[i].clone();
    let body = FunctionBody::new(BinaryReader::new(&wasm[range.clone()], range.start as u64));
    ctx.clear();
    translate::translate_function(env, index, &body, &mut ctx.func, fctx)?;
    run_cranelift(isa, ctx, index)
}

/// Compiles every defined function of `module` (whose bytes are `wasm`), alone.
pub fn compile(module: &ModuleInfo, wasm: &[u8], config: &Config) -> Result<Image, Error> {
    compile_with(module, wasm, config, &Alone)
}

/// Compiles every defined function of `module` (whose bytes are `wasm`), with `workers`'
/// helpers compiling functions beside the caller when there are any and more than one
/// function. The image is the same bytes either way.
pub fn compile_with(module: &ModuleInfo, wasm: &[u8], config: &Config, workers: &dyn Workers) -> Result<Image, Error> {
    let isa = isa(config)?;
    let call_conv = CallConv::SystemV;
    let sig_ids: Vec<u64> = module.types.iter().map(sig_id).collect();
    let env = Env {
        module,
        sig_ids: &sig_ids,
        fuel: config.fuel,
        bounds_checks: config.bounds_checks,
        call_conv,
        frontend: isa.frontend_config(),
    };
    let mut image = Image {
        code: Vec::new(),
        funcs: Vec::new(),
        trampolines: Vec::new(),
        relocs: Vec::new(),
        traps: Vec::new(),
        unwind: Vec::new(),
        cie: isa.create_systemv_cie(),
        sig_ids: sig_ids.clone(),
        ir_insts: 0,
        by_helpers: 0,
    };
    let mut fctx = FunctionBuilderContext::new();
    let mut ctx = Context::new();
    let append = |image: &mut Image, out: Output| -> Range<u32> {
        while !image.code.len().is_multiple_of(16) {
            image.code.push(0xcc);
        }
        let start = image.code.len() as u32;
        image.code.extend_from_slice(&out.code);
        for (off, kind, func, addend) in out.relocs {
            image.relocs.push(ImageReloc { offset: start + off, kind, func, addend });
        }
        for (off, kind, wasm_offset) in out.traps {
            image.traps.push(TrapSite { offset: start + off, kind, wasm_offset });
        }
        if let Some(u) = out.unwind {
            image.unwind.push((start, u));
        }
        image.ir_insts += out.insts;
        start..image.code.len() as u32
    };
    let n = module.bodies.len();
    let mut outputs: Vec<Option<Result<Output, Error>>> = Vec::new();
    if n > 1 && workers.helpers() > 0 {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| core::cmp::Reverse(module.bodies[i].len()));
        let shared = alloc::boxed::Box::new(Shared {
            order,
            module: module.clone(),
            wasm: wasm.to_vec(),
            sig_ids: sig_ids.clone(),
            isa: isa.clone(),
            fuel: config.fuel,
            bounds_checks: config.bounds_checks,
            next: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            compiled: AtomicUsize::new(0),
            slots: (0..n).map(|_| spin::Mutex::new(None)).collect(),
        });
        let arg = &*shared as *const Shared as *const ();
        let mut mine = 0;
        workers.run(helper_work, arg, &mut || mine = shared.work());
        image.by_helpers = shared.compiled.load(Ordering::Acquire) - mine;
        outputs = shared.slots.into_iter().map(spin::Mutex::into_inner).collect();
    }
    for i in 0..n {
        // Compiled by a helper, or not handed out (an error stopped the others; serial from
        // here reports the first error by index, as a serial compile would), or claimed by a
        // helper that abandoned it.
        let out = match outputs.get_mut(i).and_then(Option::take) {
            Some(r) => r?,
            None => compile_function(&env, &*isa, wasm, i, &mut ctx, &mut fctx)?,
        };
        let r = append(&mut image, out);
        image.funcs.push(r);
    }
    let mut by_sig: HashMap<u64, u32> = HashMap::new();
    for (t, ft) in module.types.iter().enumerate() {
        if let Some(off) = by_sig.get(&sig_ids[t]) {
            image.trampolines.push(*off);
            continue;
        }
        ctx.clear();
        ctx.func = trampoline(ft, call_conv, isa.frontend_config())?;
        let out = run_cranelift(&*isa, &mut ctx, u32::MAX)?;
        let r = append(&mut image, out);
        by_sig.insert(sig_ids[t], r.start);
        image.trampolines.push(r.start);
    }
    Ok(image)
}

impl Image {
    /// Patches the relocations for an image placed at `base` (`code` must be a copy of
    /// [`Image::code`]).
    pub fn relocate(&self, code: &mut [u8], base: u64, imported_funcs: u32) -> Result<(), Error> {
        for r in &self.relocs {
            let target = r
                .func
                .checked_sub(imported_funcs)
                .and_then(|i| self.funcs.get(i as usize))
                .ok_or_else(|| Error::Unsupported(format!("relocation to function {}", r.func)))?;
            let s = base + target.start as u64;
            let p = base + r.offset as u64;
            let at = r.offset as usize;
            match r.kind {
                Reloc::X86CallPCRel4 | Reloc::X86PCRel4 | Reloc::X86CallPLTRel4 => {
                    let v = (s as i64).wrapping_add(r.addend).wrapping_sub(p as i64);
                    let v = i32::try_from(v).map_err(|_| Error::Unsupported("call out of ±2 GiB range".into()))?;
                    code.get_mut(at..at + 4)
                        .ok_or_else(|| Error::Unsupported("relocation past the end".into()))?
                        .copy_from_slice(&v.to_le_bytes());
                }
                Reloc::Abs8 => {
                    let v = (s as i64).wrapping_add(r.addend);
                    code.get_mut(at..at + 8)
                        .ok_or_else(|| Error::Unsupported("relocation past the end".into()))?
                        .copy_from_slice(&v.to_le_bytes());
                }
                other => return Err(Error::Unsupported(format!("relocation kind {other:?}"))),
            }
        }
        Ok(())
    }

    /// `.eh_frame` contents for the image placed at `base` (ends with a zero terminator).
    pub fn eh_frame(&self, base: u64) -> Result<Vec<u8>, Error> {
        use gimli::write::{Address, EhFrame, EndianVec, FrameTable};
        let cie = self.cie.clone().ok_or_else(|| Error::Unsupported("no System V CIE".into()))?;
        let mut table = FrameTable::default();
        let cie_id = table.add_cie(cie);
        for (off, u) in &self.unwind {
            if let UnwindInfo::SystemV(s) = u {
                table.add_fde(cie_id, s.to_fde(Address::Constant(base + *off as u64)));
            }
        }
        let mut out = EhFrame(EndianVec::new(gimli::LittleEndian));
        table.write_eh_frame(&mut out).map_err(|e| Error::Unsupported(format!("eh_frame: {e:?}")))?;
        let mut v = out.0.into_vec();
        v.extend_from_slice(&[0, 0, 0, 0]);
        Ok(v)
    }
}
