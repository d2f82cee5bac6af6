//! WASM function bodies to Cranelift IR.
//!
//! A single pass over the operators keeps the WASM operand stack as a stack of SSA values and
//! the control stack as frames that know their exit block. Locals are frontend variables.
//! Code after an unconditional branch is skipped (only its nesting is tracked) until the
//! `else`/`end` that makes it reachable again. The module is validated before translation,
//! so type errors cannot occur here; an operand-stack underflow would be an engine bug and is
//! reported as an error rather than a panic.
//!
//! Conventions the rest of the engine relies on: every function's first parameter is the
//! `VMContext` pointer; references (funcref/externref) are `i64`; memory accesses are bounds
//! checked explicitly against the memory's current length; calls between functions of one
//! module use `ExternalName::User { namespace: 0, index: function }`.

use crate::Error;
use crate::module::{FuncType, ModuleInfo};
use crate::trap::TrapKind;
use crate::vm::{self, Builtin};
use alloc::borrow::Cow;
use alloc::format;
use alloc::string::ToString;
use alloc::vec::Vec;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::immediates::Offset32;
use cranelift_codegen::ir::types::{F32, F64, I8, I16, I32, I64};
use cranelift_codegen::ir::{
    AbiParam, AliasRegion, AliasRegionData, ArgumentPurpose, Block, BlockArg, BlockCall, ExtFuncData, ExternalName, FuncRef, Function,
    GlobalValueData, InstBuilder, JumpTableData, MemFlagsData, SigRef, Signature, SourceLoc, Type, UserExternalName, UserFuncName, Value,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use hashbrown::HashMap;
use wasmparser::{BlockType, FunctionBody, MemArg, Operator, ValType};

/// What the translator needs besides the body.
pub struct Env<'a> {
    /// The module.
    pub module: &'a ModuleInfo,
    /// Canonical signature id of each type index.
    pub sig_ids: &'a [u64],
    /// Whether to charge fuel at function entries and loop headers.
    pub fuel: bool,
    /// Explicit bounds checks (else the memory is a guarded reservation and accesses may fault).
    pub bounds_checks: bool,
    /// Calling convention of the target.
    pub call_conv: CallConv,
    /// The target's pointer type and such.
    pub frontend: TargetFrontendConfig,
}

/// The Cranelift type of a WASM value type.
pub fn ir_type(t: ValType) -> Result<Type, Error> {
    Ok(match t {
        ValType::I32 => I32,
        ValType::I64 => I64,
        ValType::F32 => F32,
        ValType::F64 => F64,
        ValType::Ref(_) => I64,
        ValType::V128 => return Err(Error::Unsupported("v128 values (SIMD)".into())),
    })
}

/// The signature of a compiled function of type `ft`: the context pointer, then the params.
pub fn wasm_signature(ft: &FuncType, call_conv: CallConv) -> Result<Signature, Error> {
    let mut s = Signature::new(call_conv);
    s.params.push(AbiParam::special(I64, ArgumentPurpose::VMContext));
    for p in ft.params() {
        s.params.push(AbiParam::new(ir_type(*p)?));
    }
    for r in ft.results() {
        s.returns.push(AbiParam::new(ir_type(*r)?));
    }
    Ok(s)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Block,
    Loop,
    If,
    Func,
}

struct Frame {
    kind: Kind,
    /// Where `end` (and branches to a non-loop) continue.
    dest: Block,
    /// Loop header (branch target of a loop).
    header: Option<Block>,
    /// The else arm of an `if`, until `else` or `end` consumes it.
    else_block: Option<Block>,
    /// Parameters an `if` was entered with (what a missing else arm passes on).
    if_params: Vec<Value>,
    params: usize,
    results: usize,
    /// Operand stack height below the frame's parameters.
    height: usize,
    /// Whether anything jumps to `dest`.
    branched: bool,
}

struct Translator<'a, 'f> {
    b: FunctionBuilder<'f>,
    env: &'a Env<'a>,
    vmctx: Value,
    locals: Vec<Variable>,
    stack: Vec<Value>,
    ctrl: Vec<Frame>,
    reachable: bool,
    skipped_depth: u32,
    vmctx_flags: MemFlagsData,
    heap_flags: MemFlagsData,
    table_flags: MemFlagsData,
    sigs: HashMap<u32, SigRef>,
    funcs: HashMap<u32, FuncRef>,
    builtin_sigs: HashMap<u8, SigRef>,
}

fn underflow() -> Error {
    Error::Invalid("operand stack underflow during translation".into())
}

fn args(vals: &[Value]) -> Vec<BlockArg> {
    vals.iter().map(|v| BlockArg::Value(*v)).collect()
}

/// Translates function `index` (a defined function) into `func`.
pub fn translate_function(
    env: &Env<'_>,
    index: u32,
    body: &FunctionBody<'_>,
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
) -> Result<(), Error> {
    let ft = env.module.func_type(index).clone();
    func.signature = wasm_signature(&ft, env.call_conv)?;
    func.name = UserFuncName::user(0, index);
    let vmctx_gv = func.create_global_value(GlobalValueData::VMContext);
    let ro_flags = func.dfg.mem_flags.insert_unchecked(MemFlagsData::trusted().with_readonly());
    let trusted = func.dfg.mem_flags.insert_unchecked(MemFlagsData::trusted());
    let store = func.create_global_value(GlobalValueData::Load {
        base: vmctx_gv,
        offset: Offset32::new(vm::VMCTX_STORE),
        global_type: I64,
        flags: ro_flags,
    });
    let limit = func.create_global_value(GlobalValueData::Load {
        base: store,
        offset: Offset32::new(vm::STORE_STACK_LIMIT),
        global_type: I64,
        flags: trusted,
    });
    func.stack_limit = Some(limit);
    let vmctx_region = func.dfg.alias_regions.insert(AliasRegionData { user_id: 0, description: Cow::Borrowed("vmctx") });
    let heap_region = func.dfg.alias_regions.insert(AliasRegionData { user_id: 1, description: Cow::Borrowed("heap") });
    let table_region = func.dfg.alias_regions.insert(AliasRegionData { user_id: 2, description: Cow::Borrowed("table") });
    let region = |r: AliasRegion| Some(r);
    let mut b = FunctionBuilder::new(func, fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    let params: Vec<Value> = b.block_params(entry).to_vec();
    let vmctx = params[0];
    let mut locals = Vec::new();
    for (i, p) in ft.params().iter().enumerate() {
        let v = b.declare_var(ir_type(*p)?);
        b.def_var(v, params[i + 1]);
        locals.push(v);
    }
    let mut lr = body.get_locals_reader().map_err(|e| Error::Invalid(e.message().to_string()))?;
    for _ in 0..lr.get_count() {
        let (count, ty) = lr.read().map_err(|e| Error::Invalid(e.message().to_string()))?;
        let t = ir_type(ty)?;
        for _ in 0..count {
            let v = b.declare_var(t);
            let zero = match t {
                F32 => b.ins().f32const(0.0),
                F64 => b.ins().f64const(0.0),
                t => b.ins().iconst(t, 0),
            };
            b.def_var(v, zero);
            locals.push(v);
        }
    }
    let ret = b.create_block();
    for r in ft.results() {
        let t = ir_type(*r)?;
        b.append_block_param(ret, t);
    }
    let mut t = Translator {
        b,
        env,
        vmctx,
        locals,
        stack: Vec::new(),
        ctrl: Vec::new(),
        reachable: true,
        skipped_depth: 0,
        vmctx_flags: MemFlagsData::trusted().with_alias_region(region(vmctx_region)),
        heap_flags: if env.bounds_checks {
            MemFlagsData::new().with_notrap().with_alias_region(region(heap_region))
        } else {
            MemFlagsData::new().with_trap_code(Some(TrapKind::MemoryOutOfBounds.code())).with_alias_region(region(heap_region))
        },
        table_flags: MemFlagsData::trusted().with_alias_region(region(table_region)),
        sigs: HashMap::new(),
        funcs: HashMap::new(),
        builtin_sigs: HashMap::new(),
    };
    t.ctrl.push(Frame {
        kind: Kind::Func,
        dest: ret,
        header: None,
        else_block: None,
        if_params: Vec::new(),
        params: 0,
        results: ft.results().len(),
        height: 0,
        branched: false,
    });
    if env.fuel {
        t.charge_fuel();
    }
    let mut ops = body.get_operators_reader().map_err(|e| Error::Invalid(e.message().to_string()))?;
    while !ops.eof() {
        let (op, offset) = ops.read_with_offset().map_err(|e| Error::Invalid(e.message().to_string()))?;
        t.b.set_srcloc(SourceLoc::new(offset as u32));
        t.op(op)?;
    }
    if !t.ctrl.is_empty() {
        return Err(Error::Invalid("function body ends inside a block".into()));
    }
    t.b.finalize(env.frontend);
    Ok(())
}

impl<'a, 'f> Translator<'a, 'f> {
    fn pop(&mut self) -> Result<Value, Error> {
        self.stack.pop().ok_or_else(underflow)
    }

    fn pop2(&mut self) -> Result<(Value, Value), Error> {
        let b = self.pop()?;
        let a = self.pop()?;
        Ok((a, b))
    }

    fn popn(&mut self, n: usize) -> Result<Vec<Value>, Error> {
        let at = self.stack.len().checked_sub(n).ok_or_else(underflow)?;
        Ok(self.stack.split_off(at))
    }

    fn peekn(&self, n: usize) -> Result<&[Value], Error> {
        let at = self.stack.len().checked_sub(n).ok_or_else(underflow)?;
        Ok(&self.stack[at..])
    }

    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    fn block_types(&self, bt: BlockType) -> Result<(Vec<Type>, Vec<Type>), Error> {
        Ok(match bt {
            BlockType::Empty => (Vec::new(), Vec::new()),
            BlockType::Type(t) => (Vec::new(), alloc::vec![ir_type(t)?]),
            BlockType::FuncType(i) => {
                let ft = self.env.module.types.get(i as usize).ok_or_else(|| Error::Invalid("block type index".into()))?;
                let p = ft.params().iter().map(|t| ir_type(*t)).collect::<Result<Vec<_>, _>>()?;
                let r = ft.results().iter().map(|t| ir_type(*t)).collect::<Result<Vec<_>, _>>()?;
                (p, r)
            }
        })
    }

    fn block_with_params(&mut self, tys: &[Type]) -> Block {
        let bl = self.b.create_block();
        for t in tys {
            self.b.append_block_param(bl, *t);
        }
        bl
    }

    fn trap(&mut self, k: TrapKind) {
        self.b.ins().trap(k.code());
    }

    fn charge_fuel(&mut self) {
        let store = self.vmload(self.vmctx, vm::VMCTX_STORE);
        let f = self.b.ins().load(I64, self.vmctx_flags, store, vm::STORE_FUEL);
        let f = self.b.ins().iadd_imm_s(f, -1);
        self.b.ins().store(self.vmctx_flags, f, store, vm::STORE_FUEL);
        let neg = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, f, 0);
        self.b.ins().trapnz(neg, TrapKind::OutOfFuel.code());
    }

    fn vmload(&mut self, base: Value, off: i32) -> Value {
        self.b.ins().load(I64, self.vmctx_flags, base, off)
    }

    /// Branch to frame `depth` (0 = innermost) with the values it expects.
    fn branch_args(&mut self, depth: u32) -> Result<(Block, Vec<Value>), Error> {
        let i = self.ctrl.len().checked_sub(1 + depth as usize).ok_or_else(underflow)?;
        let f = &mut self.ctrl[i];
        let (target, n) = match f.kind {
            Kind::Loop => (f.header.ok_or_else(underflow)?, f.params),
            _ => {
                f.branched = true;
                (f.dest, f.results)
            }
        };
        Ok((target, self.peekn(n)?.to_vec()))
    }

    fn sig_ref(&mut self, type_index: u32) -> Result<SigRef, Error> {
        if let Some(s) = self.sigs.get(&type_index) {
            return Ok(*s);
        }
        let ft = self.env.module.types.get(type_index as usize).ok_or_else(|| Error::Invalid("type index".into()))?;
        let sig = wasm_signature(ft, self.env.call_conv)?;
        let s = self.b.import_signature(sig);
        self.sigs.insert(type_index, s);
        Ok(s)
    }

    fn builtin(&mut self, which: Builtin, params: &[Type], ret: Option<Type>, call_args: &[Value]) -> Option<Value> {
        let sig = match self.builtin_sigs.get(&(which as u8)) {
            Some(s) => *s,
            None => {
                let mut s = Signature::new(self.env.call_conv);
                s.params.push(AbiParam::new(I64));
                s.params.extend(params.iter().map(|t| AbiParam::new(*t)));
                s.returns.extend(ret.map(AbiParam::new));
                let s = self.b.import_signature(s);
                self.builtin_sigs.insert(which as u8, s);
                s
            }
        };
        let table = self.vmload(self.vmctx, vm::VMCTX_BUILTINS);
        let f = self.vmload(table, which as i32 * 8);
        let mut all = alloc::vec![self.vmctx];
        all.extend_from_slice(call_args);
        let call = self.b.ins().call_indirect(sig, f, &all);
        self.b.inst_results(call).first().copied()
    }

    /// A builtin that returns a status: traps with `kind` when it is not 0.
    fn checked_builtin(&mut self, which: Builtin, params: &[Type], call_args: &[Value], kind: TrapKind) {
        if let Some(status) = self.builtin(which, params, Some(I32), call_args) {
            self.b.ins().trapnz(status, kind.code());
        }
    }

    /// A bulk memory/table instruction: its immediates (as i32 constants) and its three
    /// operands go to runtime function `which`, whose non-zero status traps with `kind`.
    fn bulk(&mut self, which: Builtin, imms: &[u32], tys: &[Type], kind: TrapKind) -> Result<(), Error> {
        let operands = self.popn(3)?;
        let mut call_args: Vec<Value> = imms.iter().map(|i| self.b.ins().iconst(I32, *i as i64)).collect();
        call_args.extend(operands);
        self.checked_builtin(which, tys, &call_args, kind);
        Ok(())
    }

    /// The native address of a memory access, after the bounds check.
    fn heap_addr(&mut self, memarg: &MemArg, size: u64) -> Result<(Value, i32), Error> {
        let index = self.pop()?;
        let index = self.b.ins().uextend(I64, index);
        let mem = self.vmload(self.vmctx, vm::VMCTX_MEMORY);
        let base = self.vmload(mem, vm::MEMORY_BASE);
        if self.env.bounds_checks {
            let len = self.vmload(mem, vm::MEMORY_LEN);
            let end = memarg.offset.checked_add(size).ok_or_else(|| Error::Invalid("memory offset overflows".into()))?;
            let last = self.b.ins().iadd_imm_s(index, end as i64);
            let oob = self.b.ins().icmp(IntCC::UnsignedGreaterThan, last, len);
            self.b.ins().trapnz(oob, TrapKind::MemoryOutOfBounds.code());
        }
        let addr = self.b.ins().iadd(base, index);
        match i32::try_from(memarg.offset) {
            Ok(o) => Ok((addr, o)),
            Err(_) => Ok((self.b.ins().iadd_imm_s(addr, memarg.offset as i64), 0)),
        }
    }

    fn load(&mut self, memarg: &MemArg, size: u64, f: impl FnOnce(&mut Self, Value, i32) -> Value) -> Result<(), Error> {
        let (addr, off) = self.heap_addr(memarg, size)?;
        let v = f(self, addr, off);
        self.push(v);
        Ok(())
    }

    fn store(&mut self, memarg: &MemArg, size: u64, f: impl FnOnce(&mut Self, Value, Value, i32)) -> Result<(), Error> {
        let v = self.pop()?;
        let (addr, off) = self.heap_addr(memarg, size)?;
        f(self, v, addr, off);
        Ok(())
    }

    fn unop(&mut self, f: impl FnOnce(&mut FunctionBuilder<'f>, Value) -> Value) -> Result<(), Error> {
        let a = self.pop()?;
        let v = f(&mut self.b, a);
        self.push(v);
        Ok(())
    }

    fn binop(&mut self, f: impl FnOnce(&mut FunctionBuilder<'f>, Value, Value) -> Value) -> Result<(), Error> {
        let (a, b) = self.pop2()?;
        let v = f(&mut self.b, a, b);
        self.push(v);
        Ok(())
    }

    fn icmp(&mut self, cc: IntCC) -> Result<(), Error> {
        self.binop(|b, x, y| {
            let c = b.ins().icmp(cc, x, y);
            b.ins().uextend(I32, c)
        })
    }

    fn fcmp(&mut self, cc: FloatCC) -> Result<(), Error> {
        self.binop(|b, x, y| {
            let c = b.ins().fcmp(cc, x, y);
            b.ins().uextend(I32, c)
        })
    }

    fn eqz(&mut self) -> Result<(), Error> {
        self.unop(|b, x| {
            let c = b.ins().icmp_imm_s(IntCC::Equal, x, 0);
            b.ins().uextend(I32, c)
        })
    }

    fn extend_s(&mut self, from: Type, to: Type) -> Result<(), Error> {
        self.unop(|b, x| {
            let n = b.ins().ireduce(from, x);
            b.ins().sextend(to, n)
        })
    }

    fn table_ptr(&mut self, table: u32) -> Value {
        let tables = self.vmload(self.vmctx, vm::VMCTX_TABLES);
        self.vmload(tables, table as i32 * 8)
    }

    /// Address of element `index` (an i32) of table `table`, bounds checked.
    fn table_elem(&mut self, table: u32, index: Value) -> Value {
        let t = self.table_ptr(table);
        let len = self.b.ins().load(I64, self.table_flags, t, vm::TABLE_LEN);
        let elems = self.b.ins().load(I64, self.table_flags, t, vm::TABLE_ELEMS);
        let i = self.b.ins().uextend(I64, index);
        let oob = self.b.ins().icmp(IntCC::UnsignedGreaterThanOrEqual, i, len);
        self.b.ins().trapnz(oob, TrapKind::TableOutOfBounds.code());
        let off = self.b.ins().ishl_imm_u(i, 3);
        self.b.ins().iadd(elems, off)
    }

    fn call(&mut self, callee: u32) -> Result<(), Error> {
        let m = self.env.module;
        let ty = *m.funcs.get(callee as usize).ok_or_else(|| Error::Invalid("function index".into()))?;
        let n = m.types[ty as usize].params().len();
        let mut call_args = alloc::vec![self.vmctx];
        call_args.extend(self.popn(n)?);
        let inst = if callee < m.imported_funcs {
            let sig = self.sig_ref(ty)?;
            let funcs = self.vmload(self.vmctx, vm::VMCTX_FUNCS);
            let at = callee as i32 * vm::FUNCREF_SIZE as i32;
            let code = self.vmload(funcs, at + vm::FUNCREF_CODE);
            call_args[0] = self.vmload(funcs, at + vm::FUNCREF_VMCTX);
            self.b.ins().call_indirect(sig, code, &call_args)
        } else {
            let fref = match self.funcs.get(&callee) {
                Some(f) => *f,
                None => {
                    let sig = self.sig_ref(ty)?;
                    let name = self.b.func.declare_imported_user_function(UserExternalName::new(0, callee));
                    let f = self.b.import_function(ExtFuncData {
                        name: ExternalName::user(name),
                        signature: sig,
                        colocated: true,
                        patchable: false,
                    });
                    self.funcs.insert(callee, f);
                    f
                }
            };
            self.b.ins().call(fref, &call_args)
        };
        let results = self.b.inst_results(inst).to_vec();
        self.stack.extend(results);
        Ok(())
    }

    fn call_indirect(&mut self, type_index: u32, table: u32) -> Result<(), Error> {
        let index = self.pop()?;
        let n = self.env.module.types.get(type_index as usize).ok_or_else(|| Error::Invalid("type index".into()))?.params().len();
        let mut call_args = self.popn(n)?;
        let slot = self.table_elem(table, index);
        let fref = self.b.ins().load(I64, self.table_flags, slot, 0);
        self.b.ins().trapz(fref, TrapKind::IndirectCallToNull.code());
        let sig = self.b.ins().load(I64, self.vmctx_flags, fref, vm::FUNCREF_SIG);
        let expected = *self.env.sig_ids.get(type_index as usize).ok_or_else(|| Error::Invalid("type index".into()))?;
        let bad = self.b.ins().icmp_imm_s(IntCC::NotEqual, sig, expected as i64);
        self.b.ins().trapnz(bad, TrapKind::BadSignature.code());
        let code = self.vmload(fref, vm::FUNCREF_CODE);
        let callee_vmctx = self.vmload(fref, vm::FUNCREF_VMCTX);
        call_args.insert(0, callee_vmctx);
        let sig = self.sig_ref(type_index)?;
        let inst = self.b.ins().call_indirect(sig, code, &call_args);
        let results = self.b.inst_results(inst).to_vec();
        self.stack.extend(results);
        Ok(())
    }

    fn global_cell(&mut self, g: u32) -> Value {
        let globals = self.vmload(self.vmctx, vm::VMCTX_GLOBALS);
        self.vmload(globals, g as i32 * 8)
    }

    fn end_frame(&mut self) -> Result<(), Error> {
        let mut f = self.ctrl.pop().ok_or_else(underflow)?;
        if self.reachable {
            let vals = self.peekn(f.results)?.to_vec();
            self.b.ins().jump(f.dest, &args(&vals));
            f.branched = true;
        }
        self.stack.truncate(f.height);
        if let Some(else_block) = f.else_block.take() {
            // An `if` without `else`: the false arm passes its parameters on.
            self.b.switch_to_block(else_block);
            self.b.ins().jump(f.dest, &args(&f.if_params));
            f.branched = true;
        }
        if let Some(h) = f.header {
            self.b.seal_block(h);
        }
        if f.branched {
            self.b.switch_to_block(f.dest);
            self.b.seal_block(f.dest);
            let vals = self.b.block_params(f.dest).to_vec();
            self.reachable = true;
            if f.kind == Kind::Func {
                self.b.ins().return_(&vals);
                self.reachable = false;
            } else {
                self.stack.extend(vals);
            }
        } else {
            self.reachable = false;
        }
        Ok(())
    }

    fn op(&mut self, op: Operator<'_>) -> Result<(), Error> {
        use Operator as O;
        if !self.reachable {
            match op {
                O::Block { .. } | O::Loop { .. } | O::If { .. } => {
                    self.skipped_depth += 1;
                    return Ok(());
                }
                O::End if self.skipped_depth > 0 => {
                    self.skipped_depth -= 1;
                    return Ok(());
                }
                O::Else if self.skipped_depth > 0 => return Ok(()),
                O::End | O::Else => {}
                _ => return Ok(()),
            }
        }
        let b = &mut self.b;
        match op {
            O::Nop => {}
            O::Unreachable => {
                self.trap(TrapKind::Unreachable);
                self.reachable = false;
            }
            O::Block { blockty } => {
                let (p, r) = self.block_types(blockty)?;
                let dest = self.block_with_params(&r);
                let height = self.stack.len().checked_sub(p.len()).ok_or_else(underflow)?;
                self.ctrl.push(Frame {
                    kind: Kind::Block,
                    dest,
                    header: None,
                    else_block: None,
                    if_params: Vec::new(),
                    params: p.len(),
                    results: r.len(),
                    height,
                    branched: false,
                });
            }
            O::Loop { blockty } => {
                let (p, r) = self.block_types(blockty)?;
                let header = self.block_with_params(&p);
                let dest = self.block_with_params(&r);
                let vals = self.popn(p.len())?;
                self.b.ins().jump(header, &args(&vals));
                self.b.switch_to_block(header);
                let height = self.stack.len();
                let hp = self.b.block_params(header).to_vec();
                self.stack.extend(hp);
                self.ctrl.push(Frame {
                    kind: Kind::Loop,
                    dest,
                    header: Some(header),
                    else_block: None,
                    if_params: Vec::new(),
                    params: p.len(),
                    results: r.len(),
                    height,
                    branched: false,
                });
                if self.env.fuel {
                    self.charge_fuel();
                }
            }
            O::If { blockty } => {
                let cond = self.pop()?;
                let (p, r) = self.block_types(blockty)?;
                let then_block = self.b.create_block();
                let else_block = self.b.create_block();
                let dest = self.block_with_params(&r);
                self.b.ins().brif(cond, then_block, &[], else_block, &[]);
                self.b.seal_block(then_block);
                self.b.seal_block(else_block);
                self.b.switch_to_block(then_block);
                let if_params = self.peekn(p.len())?.to_vec();
                let height = self.stack.len() - p.len();
                self.ctrl.push(Frame {
                    kind: Kind::If,
                    dest,
                    header: None,
                    else_block: Some(else_block),
                    if_params,
                    params: p.len(),
                    results: r.len(),
                    height,
                    branched: false,
                });
            }
            O::Else => {
                let reachable = self.reachable;
                let f = self.ctrl.last_mut().ok_or_else(underflow)?;
                let (dest, results, height) = (f.dest, f.results, f.height);
                let else_block = f.else_block.take().ok_or_else(|| Error::Invalid("else without if".into()))?;
                let if_params = core::mem::take(&mut f.if_params);
                if reachable {
                    f.branched = true;
                    let vals = self.peekn(results)?.to_vec();
                    self.b.ins().jump(dest, &args(&vals));
                }
                self.stack.truncate(height);
                self.stack.extend(if_params);
                self.b.switch_to_block(else_block);
                self.reachable = true;
            }
            O::End => self.end_frame()?,
            O::Br { relative_depth } => {
                let (target, vals) = self.branch_args(relative_depth)?;
                self.b.ins().jump(target, &args(&vals));
                self.reachable = false;
            }
            O::BrIf { relative_depth } => {
                let cond = self.pop()?;
                let (target, vals) = self.branch_args(relative_depth)?;
                let next = self.b.create_block();
                self.b.ins().brif(cond, target, &args(&vals), next, &[]);
                self.b.seal_block(next);
                self.b.switch_to_block(next);
            }
            O::BrTable { targets } => {
                let index = self.pop()?;
                let mut calls = Vec::new();
                for t in targets.targets() {
                    let depth = t.map_err(|e| Error::Invalid(e.message().to_string()))?;
                    let (target, vals) = self.branch_args(depth)?;
                    let pool = &mut self.b.func.dfg.value_lists;
                    calls.push(BlockCall::new(target, args(&vals), pool));
                }
                let (target, vals) = self.branch_args(targets.default())?;
                let pool = &mut self.b.func.dfg.value_lists;
                let def = BlockCall::new(target, args(&vals), pool);
                let jt = self.b.create_jump_table(JumpTableData::new(def, &calls));
                self.b.ins().br_table(index, jt);
                self.reachable = false;
            }
            O::Return => {
                let n = self.ctrl[0].results;
                let vals = self.peekn(n)?.to_vec();
                self.b.ins().return_(&vals);
                self.reachable = false;
            }
            O::Call { function_index } => self.call(function_index)?,
            O::CallIndirect { type_index, table_index } => self.call_indirect(type_index, table_index)?,
            O::Drop => {
                self.pop()?;
            }
            O::Select | O::TypedSelect { .. } => {
                let c = self.pop()?;
                let (x, y) = self.pop2()?;
                let v = self.b.ins().select(c, x, y);
                self.push(v);
            }
            O::LocalGet { local_index } => {
                let var = *self.locals.get(local_index as usize).ok_or_else(underflow)?;
                let v = b.use_var(var);
                self.push(v);
            }
            O::LocalSet { local_index } => {
                let v = self.pop()?;
                let var = *self.locals.get(local_index as usize).ok_or_else(underflow)?;
                self.b.def_var(var, v);
            }
            O::LocalTee { local_index } => {
                let v = *self.stack.last().ok_or_else(underflow)?;
                let var = *self.locals.get(local_index as usize).ok_or_else(underflow)?;
                self.b.def_var(var, v);
            }
            O::GlobalGet { global_index } => {
                let ty = ir_type(self.env.module.globals.get(global_index as usize).ok_or_else(underflow)?.content_type)?;
                let cell = self.global_cell(global_index);
                let v = self.b.ins().load(ty, self.vmctx_flags, cell, 0);
                self.push(v);
            }
            O::GlobalSet { global_index } => {
                let v = self.pop()?;
                let cell = self.global_cell(global_index);
                self.b.ins().store(self.vmctx_flags, v, cell, 0);
            }
            O::I32Load { memarg } => self.load(&memarg, 4, |t, a, o| t.b.ins().load(I32, t.heap_flags, a, o))?,
            O::I64Load { memarg } => self.load(&memarg, 8, |t, a, o| t.b.ins().load(I64, t.heap_flags, a, o))?,
            O::F32Load { memarg } => self.load(&memarg, 4, |t, a, o| t.b.ins().load(F32, t.heap_flags, a, o))?,
            O::F64Load { memarg } => self.load(&memarg, 8, |t, a, o| t.b.ins().load(F64, t.heap_flags, a, o))?,
            O::I32Load8S { memarg } => self.load(&memarg, 1, |t, a, o| t.b.ins().sload8(I32, t.heap_flags, a, o))?,
            O::I32Load8U { memarg } => self.load(&memarg, 1, |t, a, o| t.b.ins().uload8(I32, t.heap_flags, a, o))?,
            O::I32Load16S { memarg } => self.load(&memarg, 2, |t, a, o| t.b.ins().sload16(I32, t.heap_flags, a, o))?,
            O::I32Load16U { memarg } => self.load(&memarg, 2, |t, a, o| t.b.ins().uload16(I32, t.heap_flags, a, o))?,
            O::I64Load8S { memarg } => self.load(&memarg, 1, |t, a, o| t.b.ins().sload8(I64, t.heap_flags, a, o))?,
            O::I64Load8U { memarg } => self.load(&memarg, 1, |t, a, o| t.b.ins().uload8(I64, t.heap_flags, a, o))?,
            O::I64Load16S { memarg } => self.load(&memarg, 2, |t, a, o| t.b.ins().sload16(I64, t.heap_flags, a, o))?,
            O::I64Load16U { memarg } => self.load(&memarg, 2, |t, a, o| t.b.ins().uload16(I64, t.heap_flags, a, o))?,
            O::I64Load32S { memarg } => self.load(&memarg, 4, |t, a, o| t.b.ins().sload32(t.heap_flags, a, o))?,
            O::I64Load32U { memarg } => self.load(&memarg, 4, |t, a, o| t.b.ins().uload32(t.heap_flags, a, o))?,
            O::I32Store { memarg } | O::F32Store { memarg } => self.store(&memarg, 4, |t, v, a, o| {
                t.b.ins().store(t.heap_flags, v, a, o);
            })?,
            O::I64Store { memarg } | O::F64Store { memarg } => self.store(&memarg, 8, |t, v, a, o| {
                t.b.ins().store(t.heap_flags, v, a, o);
            })?,
            O::I32Store8 { memarg } | O::I64Store8 { memarg } => self.store(&memarg, 1, |t, v, a, o| {
                t.b.ins().istore8(t.heap_flags, v, a, o);
            })?,
            O::I32Store16 { memarg } | O::I64Store16 { memarg } => self.store(&memarg, 2, |t, v, a, o| {
                t.b.ins().istore16(t.heap_flags, v, a, o);
            })?,
            O::I64Store32 { memarg } => self.store(&memarg, 4, |t, v, a, o| {
                t.b.ins().istore32(t.heap_flags, v, a, o);
            })?,
            O::MemorySize { .. } => {
                let mem = self.vmload(self.vmctx, vm::VMCTX_MEMORY);
                let len = self.vmload(mem, vm::MEMORY_LEN);
                let pages = self.b.ins().ushr_imm_u(len, 16);
                let v = self.b.ins().ireduce(I32, pages);
                self.push(v);
            }
            O::MemoryGrow { mem } => {
                let delta = self.pop()?;
                let m = self.b.ins().iconst(I32, mem as i64);
                let v = self.builtin(Builtin::MemoryGrow, &[I32, I32], Some(I32), &[m, delta]).ok_or_else(underflow)?;
                self.push(v);
            }
            O::MemoryFill { mem } => self.bulk(Builtin::MemoryFill, &[mem], &[I32; 4], TrapKind::MemoryOutOfBounds)?,
            O::MemoryCopy { dst_mem, src_mem } => {
                self.bulk(Builtin::MemoryCopy, &[dst_mem, src_mem], &[I32; 5], TrapKind::MemoryOutOfBounds)?
            }
            O::MemoryInit { data_index, mem } => {
                self.bulk(Builtin::MemoryInit, &[mem, data_index], &[I32; 5], TrapKind::MemoryOutOfBounds)?
            }
            O::DataDrop { data_index } => {
                let d = self.b.ins().iconst(I32, data_index as i64);
                self.builtin(Builtin::DataDrop, &[I32], None, &[d]);
            }
            O::TableInit { elem_index, table } => {
                self.bulk(Builtin::TableInit, &[table, elem_index], &[I32; 5], TrapKind::TableOutOfBounds)?
            }
            O::TableCopy { dst_table, src_table } => {
                self.bulk(Builtin::TableCopy, &[dst_table, src_table], &[I32; 5], TrapKind::TableOutOfBounds)?
            }
            O::ElemDrop { elem_index } => {
                let e = self.b.ins().iconst(I32, elem_index as i64);
                self.builtin(Builtin::ElemDrop, &[I32], None, &[e]);
            }
            O::TableGrow { table } => {
                let delta = self.pop()?;
                let init = self.pop()?;
                let t = self.b.ins().iconst(I32, table as i64);
                let v = self.builtin(Builtin::TableGrow, &[I32, I64, I32], Some(I32), &[t, init, delta]).ok_or_else(underflow)?;
                self.push(v);
            }
            O::TableFill { table } => self.bulk(Builtin::TableFill, &[table], &[I32, I32, I64, I32], TrapKind::TableOutOfBounds)?,
            O::TableSize { table } => {
                let t = self.table_ptr(table);
                let len = self.b.ins().load(I64, self.table_flags, t, vm::TABLE_LEN);
                let v = self.b.ins().ireduce(I32, len);
                self.push(v);
            }
            O::TableGet { table } => {
                let i = self.pop()?;
                let slot = self.table_elem(table, i);
                let v = self.b.ins().load(I64, self.table_flags, slot, 0);
                self.push(v);
            }
            O::TableSet { table } => {
                let v = self.pop()?;
                let i = self.pop()?;
                let slot = self.table_elem(table, i);
                self.b.ins().store(self.table_flags, v, slot, 0);
            }
            O::RefNull { .. } => {
                let v = b.ins().iconst(I64, 0);
                self.push(v);
            }
            O::RefIsNull => self.eqz()?,
            O::RefFunc { function_index } => {
                let funcs = self.vmload(self.vmctx, vm::VMCTX_FUNCS);
                let v = self.b.ins().iadd_imm_s(funcs, function_index as i64 * vm::FUNCREF_SIZE);
                self.push(v);
            }
            O::I32Const { value } => {
                let v = b.ins().iconst(I32, value as i64);
                self.push(v);
            }
            O::I64Const { value } => {
                let v = b.ins().iconst(I64, value);
                self.push(v);
            }
            O::F32Const { value } => {
                let v = b.ins().f32const(cranelift_codegen::ir::immediates::Ieee32::with_bits(value.bits()));
                self.push(v);
            }
            O::F64Const { value } => {
                let v = b.ins().f64const(cranelift_codegen::ir::immediates::Ieee64::with_bits(value.bits()));
                self.push(v);
            }
            O::I32Eqz | O::I64Eqz => self.eqz()?,
            O::I32Eq | O::I64Eq => self.icmp(IntCC::Equal)?,
            O::I32Ne | O::I64Ne => self.icmp(IntCC::NotEqual)?,
            O::I32LtS | O::I64LtS => self.icmp(IntCC::SignedLessThan)?,
            O::I32LtU | O::I64LtU => self.icmp(IntCC::UnsignedLessThan)?,
            O::I32GtS | O::I64GtS => self.icmp(IntCC::SignedGreaterThan)?,
            O::I32GtU | O::I64GtU => self.icmp(IntCC::UnsignedGreaterThan)?,
            O::I32LeS | O::I64LeS => self.icmp(IntCC::SignedLessThanOrEqual)?,
            O::I32LeU | O::I64LeU => self.icmp(IntCC::UnsignedLessThanOrEqual)?,
            O::I32GeS | O::I64GeS => self.icmp(IntCC::SignedGreaterThanOrEqual)?,
            O::I32GeU | O::I64GeU => self.icmp(IntCC::UnsignedGreaterThanOrEqual)?,
            O::F32Eq | O::F64Eq => self.fcmp(FloatCC::Equal)?,
            O::F32Ne | O::F64Ne => self.fcmp(FloatCC::NotEqual)?,
            O::F32Lt | O::F64Lt => self.fcmp(FloatCC::LessThan)?,
            O::F32Gt | O::F64Gt => self.fcmp(FloatCC::GreaterThan)?,
            O::F32Le | O::F64Le => self.fcmp(FloatCC::LessThanOrEqual)?,
            O::F32Ge | O::F64Ge => self.fcmp(FloatCC::GreaterThanOrEqual)?,
            O::I32Clz | O::I64Clz => self.unop(|b, x| b.ins().clz(x))?,
            O::I32Ctz | O::I64Ctz => self.unop(|b, x| b.ins().ctz(x))?,
            O::I32Popcnt | O::I64Popcnt => self.unop(|b, x| b.ins().popcnt(x))?,
            O::I32Add | O::I64Add => self.binop(|b, x, y| b.ins().iadd(x, y))?,
            O::I32Sub | O::I64Sub => self.binop(|b, x, y| b.ins().isub(x, y))?,
            O::I32Mul | O::I64Mul => self.binop(|b, x, y| b.ins().imul(x, y))?,
            O::I32DivS | O::I64DivS => self.binop(|b, x, y| b.ins().sdiv(x, y))?,
            O::I32DivU | O::I64DivU => self.binop(|b, x, y| b.ins().udiv(x, y))?,
            O::I32RemS | O::I64RemS => self.binop(|b, x, y| b.ins().srem(x, y))?,
            O::I32RemU | O::I64RemU => self.binop(|b, x, y| b.ins().urem(x, y))?,
            O::I32And | O::I64And => self.binop(|b, x, y| b.ins().band(x, y))?,
            O::I32Or | O::I64Or => self.binop(|b, x, y| b.ins().bor(x, y))?,
            O::I32Xor | O::I64Xor => self.binop(|b, x, y| b.ins().bxor(x, y))?,
            O::I32Shl | O::I64Shl => self.binop(|b, x, y| b.ins().ishl(x, y))?,
            O::I32ShrS | O::I64ShrS => self.binop(|b, x, y| b.ins().sshr(x, y))?,
            O::I32ShrU | O::I64ShrU => self.binop(|b, x, y| b.ins().ushr(x, y))?,
            O::I32Rotl | O::I64Rotl => self.binop(|b, x, y| b.ins().rotl(x, y))?,
            O::I32Rotr | O::I64Rotr => self.binop(|b, x, y| b.ins().rotr(x, y))?,
            O::F32Abs | O::F64Abs => self.unop(|b, x| b.ins().fabs(x))?,
            O::F32Neg | O::F64Neg => self.unop(|b, x| b.ins().fneg(x))?,
            O::F32Ceil | O::F64Ceil => self.unop(|b, x| b.ins().ceil(x))?,
            O::F32Floor | O::F64Floor => self.unop(|b, x| b.ins().floor(x))?,
            O::F32Trunc | O::F64Trunc => self.unop(|b, x| b.ins().trunc(x))?,
            O::F32Nearest | O::F64Nearest => self.unop(|b, x| b.ins().nearest(x))?,
            O::F32Sqrt | O::F64Sqrt => self.unop(|b, x| b.ins().sqrt(x))?,
            O::F32Add | O::F64Add => self.binop(|b, x, y| b.ins().fadd(x, y))?,
            O::F32Sub | O::F64Sub => self.binop(|b, x, y| b.ins().fsub(x, y))?,
            O::F32Mul | O::F64Mul => self.binop(|b, x, y| b.ins().fmul(x, y))?,
            O::F32Div | O::F64Div => self.binop(|b, x, y| b.ins().fdiv(x, y))?,
            O::F32Min | O::F64Min => self.binop(|b, x, y| b.ins().fmin(x, y))?,
            O::F32Max | O::F64Max => self.binop(|b, x, y| b.ins().fmax(x, y))?,
            O::F32Copysign | O::F64Copysign => self.binop(|b, x, y| b.ins().fcopysign(x, y))?,
            O::I32WrapI64 => self.unop(|b, x| b.ins().ireduce(I32, x))?,
            O::I64ExtendI32S => self.unop(|b, x| b.ins().sextend(I64, x))?,
            O::I64ExtendI32U => self.unop(|b, x| b.ins().uextend(I64, x))?,
            O::I32TruncF32S | O::I32TruncF64S => self.unop(|b, x| b.ins().fcvt_to_sint(I32, x))?,
            O::I32TruncF32U | O::I32TruncF64U => self.unop(|b, x| b.ins().fcvt_to_uint(I32, x))?,
            O::I64TruncF32S | O::I64TruncF64S => self.unop(|b, x| b.ins().fcvt_to_sint(I64, x))?,
            O::I64TruncF32U | O::I64TruncF64U => self.unop(|b, x| b.ins().fcvt_to_uint(I64, x))?,
            O::I32TruncSatF32S | O::I32TruncSatF64S => self.unop(|b, x| b.ins().fcvt_to_sint_sat(I32, x))?,
            O::I32TruncSatF32U | O::I32TruncSatF64U => self.unop(|b, x| b.ins().fcvt_to_uint_sat(I32, x))?,
            O::I64TruncSatF32S | O::I64TruncSatF64S => self.unop(|b, x| b.ins().fcvt_to_sint_sat(I64, x))?,
            O::I64TruncSatF32U | O::I64TruncSatF64U => self.unop(|b, x| b.ins().fcvt_to_uint_sat(I64, x))?,
            O::F32ConvertI32S | O::F32ConvertI64S => self.unop(|b, x| b.ins().fcvt_from_sint(F32, x))?,
            O::F32ConvertI32U | O::F32ConvertI64U => self.unop(|b, x| b.ins().fcvt_from_uint(F32, x))?,
            O::F64ConvertI32S | O::F64ConvertI64S => self.unop(|b, x| b.ins().fcvt_from_sint(F64, x))?,
            O::F64ConvertI32U | O::F64ConvertI64U => self.unop(|b, x| b.ins().fcvt_from_uint(F64, x))?,
            O::F32DemoteF64 => self.unop(|b, x| b.ins().fdemote(F32, x))?,
            O::F64PromoteF32 => self.unop(|b, x| b.ins().fpromote(F64, x))?,
            O::I32ReinterpretF32 => self.unop(|b, x| b.ins().bitcast(I32, MemFlagsData::new(), x))?,
            O::I64ReinterpretF64 => self.unop(|b, x| b.ins().bitcast(I64, MemFlagsData::new(), x))?,
            O::F32ReinterpretI32 => self.unop(|b, x| b.ins().bitcast(F32, MemFlagsData::new(), x))?,
            O::F64ReinterpretI64 => self.unop(|b, x| b.ins().bitcast(F64, MemFlagsData::new(), x))?,
            O::I32Extend8S => self.extend_s(I8, I32)?,
            O::I32Extend16S => self.extend_s(I16, I32)?,
            O::I64Extend8S => self.extend_s(I8, I64)?,
            O::I64Extend16S => self.extend_s(I16, I64)?,
            O::I64Extend32S => self.extend_s(I32, I64)?,
            other => return Err(Error::Unsupported(format!("instruction {other:?}"))),
        }
        Ok(())
    }
}
