//! The official WebAssembly spec test suite (the subset vendored in `tests/spec`, or a whole
//! checkout named by `$WASM_TESTSUITE`)
//! run against this engine on the host: every directive of every file of the proposals the
//! engine implements, with passed/failed counts per file and the files skipped and why.
//!
//! Fails when a file of `MUST_PASS` did not run or has a failure, or the total falls below
//! `MIN_PASSED` (both raised as the engine improves), so a regression cannot go unnoticed.
//! Writes the table to `target/wasm-spec.txt`.
//!
//! What counts: `assert_trap` must trap with the kind its message names; `assert_invalid` must
//! be rejected with an error of the class its message names; `assert_malformed` with any
//! decoding error. A directive is excused ("needs a left-out proposal") only when the module
//! it runs on failed validation with an error naming such a proposal (or links against one
//! that did) — never by the wording of its own error. `module quote` text that the text parser
//! rejects tests the text format, which a binary engine never sees: counted apart, not as
//! passed. Module definitions and instances (a newer test-harness feature) are counted as not
//! implemented. Mixed files (core tests and proposal tests in one module) are not split: a
//! module using a left-out proposal takes its directives with it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use wasm_runtime::host::HOST;
use wasm_runtime::instance::{Global, Memory, Table};
use wasm_runtime::{Config, Error, Extern, Func, Instance, InstantiateError, Linker, Module, Store, TrapKind, Val};
use wast::core::{AbstractHeapType, HeapType, NanPattern, WastArgCore, WastRetCore};
use wast::parser::{self, ParseBuffer};
use wast::{QuoteWat, Wast, WastArg, WastDirective, WastExecute, WastInvoke, WastRet};

/// Files that must pass completely.
const MUST_PASS: &[&str] = &[
    "address.wast",
    "block.wast",
    "br.wast",
    "br_if.wast",
    "br_table-wasm2.wast",
    "elem-wasm2.wast",
    "global-wasm2.wast",
    "imports-wasm2.wast",
    "linking-wasm2.wast",
    "memory_grow-wasm2.wast",
    "ref_is_null-wasm2.wast",
    "ref_null-wasm2.wast",
    "table-wasm2.wast",
    "call.wast",
    "call_indirect.wast",
    "conversions.wast",
    "endianness.wast",
    "f32.wast",
    "f32_bitwise.wast",
    "f32_cmp.wast",
    "f64.wast",
    "f64_bitwise.wast",
    "f64_cmp.wast",
    "fac.wast",
    "float_exprs.wast",
    "forward.wast",
    "i32.wast",
    "i64.wast",
    "if.wast",
    "int_exprs.wast",
    "labels.wast",
    "left-to-right.wast",
    "load.wast",
    "local_get.wast",
    "local_set.wast",
    "local_tee.wast",
    "loop.wast",
    "memory_size.wast",
    "nop.wast",
    "return.wast",
    "select.wast",
    "stack.wast",
    "store.wast",
    "switch.wast",
    "traps.wast",
    "unreachable.wast",
    "unwind.wast",
];
/// Lower bound on passed directives over all files run.
const MIN_PASSED: usize = 28_000;

/// The memory64 and table64 files, by exact name (`i64.wast` and `f64.wast` are core).
const MEMORY64: &[&str] = &[
    "address64",
    "align64",
    "binary_leb128_64",
    "bulk64",
    "call_indirect64",
    "endianness64",
    "float_memory64",
    "load64",
    "memory64",
    "memory64-imports",
    "memory_copy64",
    "memory_fill64",
    "memory_grow64",
    "memory_init64",
    "memory_redundancy64",
    "memory_trap64",
    "table64",
    "table_copy64",
    "table_copy_mixed",
    "table_fill64",
    "table_get64",
    "table_grow64",
    "table_init64",
    "table_set64",
    "table_size64",
];

/// Why a file is not run: the proposals outside WebAssembly 2.0 minus SIMD.
fn skip_reason(name: &str) -> Option<&'static str> {
    let n = name.trim_end_matches(".wast");
    let gc = [
        "array",
        "array_copy",
        "array_fill",
        "array_init_data",
        "array_init_elem",
        "array_new_data",
        "array_new_elem",
        "struct",
        "i31",
        "ref_cast",
        "ref_test",
        "ref_eq",
        "br_on_cast",
        "br_on_cast_fail",
        "type-rec",
        "type-subtyping",
        "type-canon",
        "type-equivalence",
        "binary-gc",
        "extern",
    ];
    let typed = ["ref_as_non_null", "br_on_non_null", "br_on_null", "call_ref", "return_call_ref"];
    Some(if n.starts_with("simd_") || n.contains("relaxed") {
        "SIMD / relaxed SIMD"
    } else if MEMORY64.contains(&n) {
        "memory64 / table64"
    } else if gc.contains(&n) {
        "GC"
    } else if typed.contains(&n) {
        "typed function references"
    } else if ["tag", "throw", "throw_ref", "try_table"].contains(&n) {
        "exception handling"
    } else if ["return_call", "return_call_indirect"].contains(&n) {
        "tail calls"
    } else if n.contains("multi") {
        "multiple memories"
    } else if n == "switch" {
        return None;
    } else {
        return None;
    })
}

/// Validation errors of a *module* that mean "it uses a proposal this engine leaves out", not a
/// wrong answer. Only a module directive is classified by them; the directives on such a module
/// are then not run (counted as needing a proposal). No other directive is ever excused.
const UNSUPPORTED: &[&str] = &[
    "multiple memories",
    "function references",
    "function-references proposal",
    "gc feature",
    "gc proposal",
    "exceptions proposal",
    "heap types not supported",
    "memory64",
    "tail calls",
    "wide arithmetic",
    "extended constant expression",
    // The memory-index flag of a memarg (multiple memories).
    "malformed memop: reserved flags bits set",
];

/// What a directive's error says when the module it instantiates uses a left-out proposal.
const SKIP: &str = "(module uses a left-out proposal)";

/// Whether a module's validation error says it uses a left-out proposal.
fn unsupported(error: &str) -> bool {
    UNSUPPORTED.iter().any(|u| error.contains(u))
}

/// For a module the suite says is valid: a constant expression our validator calls
/// non-constant uses extended constant expressions (a left-out proposal).
fn unsupported_valid_module(error: &str) -> bool {
    unsupported(error) || error.contains("constant expression required")
}

/// The trap kinds a spec message names (`assert_trap`, `assert_exhaustion`): the engine must trap
/// with that kind, not with any trap.
fn trap_kind_of(message: &str) -> Option<&'static [TrapKind]> {
    use TrapKind::*;
    Some(match message {
        m if m.starts_with("integer divide by zero") => &[IntegerDivisionByZero],
        m if m.starts_with("integer overflow") => &[IntegerOverflow],
        m if m.starts_with("invalid conversion to integer") => &[BadConversionToInteger],
        m if m.starts_with("out of bounds memory access") => &[MemoryOutOfBounds],
        m if m.starts_with("out of bounds table access") => &[TableOutOfBounds],
        // `call_indirect` past the end of the table.
        m if m.starts_with("undefined element") => &[TableOutOfBounds],
        m if m.starts_with("uninitialized element") => &[IndirectCallToNull],
        m if m.starts_with("indirect call type mismatch") => &[BadSignature],
        m if m.starts_with("unreachable") => &[Unreachable],
        m if m.starts_with("call stack exhausted") => &[StackOverflow],
        _ => return None,
    })
}

/// Whether a validation error `got` is of the class the spec's `expected` message names.
/// wasmparser words most errors as the reference interpreter does; where it does not, the
/// table says which of its words are the same class.
fn same_error_class(expected: &str, got: &str) -> bool {
    let got = got.to_lowercase();
    let expected = expected.to_lowercase();
    if got.contains(&expected) {
        return true;
    }
    const SAME: &[(&str, &[&str])] = &[
        ("unknown operator", &["illegal opcode", "unknown", "invalid", "unexpected"]),
        ("unexpected end", &["unexpected end", "eof", "too short"]),
        ("length out of bounds", &["unexpected end", "length", "out of bounds", "too short"]),
        ("malformed", &["malformed", "invalid", "unexpected", "out of bounds", "too large", "overflow", "not supported"]),
        ("integer representation too long", &["invalid var_u32", "invalid var_s32", "invalid var", "too long", "overflow"]),
        ("integer too large", &["invalid var", "too large", "overflow"]),
        ("magic header not detected", &["magic header"]),
        ("unknown binary version", &["unknown binary version", "version"]),
        ("section size mismatch", &["section", "size", "unexpected end"]),
        ("type mismatch", &["type mismatch", "expected", "operand"]),
        ("unknown", &["unknown", "out of bounds", "undeclared"]),
        ("duplicate", &["duplicate"]),
        ("alignment", &["alignment"]),
        ("constant expression required", &["constant expression", "non-constant"]),
        ("invalid result arity", &["arity", "type mismatch"]),
        ("data count", &["data count"]),
        ("too many locals", &["too many locals", "locals"]),
        ("memory size must be at most", &["memory size", "exceeds", "maximum"]),
        ("size minimum must not be greater than maximum", &["minimum", "maximum"]),
        ("global is immutable", &["immutable"]),
        ("unexpected content after last section", &["section", "unexpected"]),
        ("function and code section have inconsistent lengths", &["function and code section", "inconsistent"]),
        ("zero byte expected", &["zero byte", "reserved"]),
        ("illegal opcode", &["illegal opcode", "unknown operator", "invalid"]),
        ("start function", &["start function"]),
        ("multiple start sections", &["start"]),
        ("sub type", &["sub type", "subtype", "supertype"]),
        ("undeclared function reference", &["undeclared function reference", "undeclared"]),
        ("out of bounds", &["out of bounds"]),
        ("offset out of range", &["too large", "out of range", "out of bounds"]),
        ("immutable global", &["immutable"]),
        // WebAssembly 2.0: a constant expression sees only imported globals.
        ("unknown global", &["unknown global", "locally defined global"]),
        // Limits beyond 2^32 pages or elements: the decoder already refuses the number.
        ("memory size", &["memory size", "too large"]),
        ("table size", &["table size", "too large"]),
    ];
    SAME.iter().filter(|(e, _)| expected.starts_with(e)).any(|(_, words)| words.iter().any(|w| got.contains(w)))
}

#[derive(Default)]
struct Counts {
    passed: usize,
    failed: usize,
    /// Directives on modules that use a proposal left out (classified by the module's
    /// validation error only).
    unsupported: usize,
    /// Directives the runner does not implement (module definitions and instances, threads).
    not_implemented: usize,
    /// `module quote` cases the text parser rejects: tests of the text format, which a binary
    /// engine never sees.
    text_only: usize,
    first_failures: Vec<String>,
}

/// How a directive went, beyond passed and failed.
enum Outcome {
    Passed,
    /// The module uses a left-out proposal (its validation error says so).
    UnsupportedModule,
    /// A directive the runner does not implement.
    NotImplemented,
    /// Malformed text that only the text parser sees.
    TextOnly,
}

struct Runner {
    /// The last module used a proposal left out: directives on it are not counted as failures.
    skipping: bool,
    store: Store,
    linker: Linker,
    current: Option<Instance>,
    named: HashMap<String, Instance>,
    /// Named modules that use a left-out proposal: directives naming them are not run.
    skipped_names: Vec<String>,
    /// Names under which such modules would have been registered.
    skipped_registrations: Vec<String>,
}

extern "C" fn print_any() {}

fn spectest(linker: &mut Linker) {
    use wasmparser::{FuncType, GlobalType, MemoryType, RefType, TableType, ValType};
    let f = |p: &[ValType]| {
        Extern::Func(Func {
            code: print_any as *const () as u64,
            ty: FuncType::new(p.iter().copied(), []),
            vmctx: std::ptr::null_mut(),
            owner: None,
        })
    };
    linker.define("spectest", "print", f(&[]));
    linker.define("spectest", "print_i32", f(&[ValType::I32]));
    linker.define("spectest", "print_i64", f(&[ValType::I64]));
    linker.define("spectest", "print_f32", f(&[ValType::F32]));
    linker.define("spectest", "print_f64", f(&[ValType::F64]));
    linker.define("spectest", "print_i32_f32", f(&[ValType::I32, ValType::F32]));
    linker.define("spectest", "print_f64_f64", f(&[ValType::F64, ValType::F64]));
    let g = |t: ValType, v: Val| Extern::Global(Global::new(GlobalType { content_type: t, mutable: false, shared: false }, v));
    linker.define("spectest", "global_i32", g(ValType::I32, Val::I32(666)));
    linker.define("spectest", "global_i64", g(ValType::I64, Val::I64(666)));
    linker.define("spectest", "global_f32", g(ValType::F32, Val::F32(666.6f32.to_bits())));
    linker.define("spectest", "global_f64", g(ValType::F64, Val::F64(666.6f64.to_bits())));
    let t = TableType { element_type: RefType::FUNCREF, table64: false, initial: 10, maximum: Some(20), shared: false };
    linker.define("spectest", "table", Extern::Table(Table::new(t).unwrap()));
    let m = MemoryType { memory64: false, shared: false, initial: 1, maximum: Some(2), page_size_log2: None };
    let mem = if std::env::var("WASM_SPEC_GUARD").is_ok_and(|v| v == "1") { Memory::new_guarded(m, &HOST) } else { Memory::new(m) };
    linker.define("spectest", "memory", Extern::Memory(mem.unwrap()));
}

fn arg(a: &WastArg<'_>) -> Result<Val, String> {
    let WastArg::Core(a) = a else { return Err("component argument".into()) };
    Ok(match a {
        WastArgCore::I32(v) => Val::I32(*v),
        WastArgCore::I64(v) => Val::I64(*v),
        WastArgCore::F32(v) => Val::F32(v.bits),
        WastArgCore::F64(v) => Val::F64(v.bits),
        WastArgCore::RefNull(HeapType::Abstract { ty: AbstractHeapType::Extern, .. }) => Val::ExternRef(0),
        WastArgCore::RefNull(_) => Val::FuncRef(0),
        WastArgCore::RefExtern(n) => Val::ExternRef(*n as u64 + 1),
        other => return Err(format!("argument {other:?}")),
    })
}

fn nan_ok32(p: &NanPattern<wast::token::F32>, bits: u32) -> bool {
    match p {
        NanPattern::CanonicalNan => bits & 0x7fff_ffff == 0x7fc0_0000,
        NanPattern::ArithmeticNan => bits & 0x7fc0_0000 == 0x7fc0_0000,
        NanPattern::Value(v) => v.bits == bits,
    }
}

fn nan_ok64(p: &NanPattern<wast::token::F64>, bits: u64) -> bool {
    match p {
        NanPattern::CanonicalNan => bits & 0x7fff_ffff_ffff_ffff == 0x7ff8_0000_0000_0000,
        NanPattern::ArithmeticNan => bits & 0x7ff8_0000_0000_0000 == 0x7ff8_0000_0000_0000,
        NanPattern::Value(v) => v.bits == bits,
    }
}

fn ret_ok(r: &WastRet<'_>, v: &Val) -> bool {
    let WastRet::Core(r) = r else { return false };
    core_ok(r, v)
}

fn core_ok(r: &WastRetCore<'_>, v: &Val) -> bool {
    match (r, v) {
        (WastRetCore::I32(a), Val::I32(b)) => a == b,
        (WastRetCore::I64(a), Val::I64(b)) => a == b,
        (WastRetCore::F32(p), Val::F32(b)) => nan_ok32(p, *b),
        (WastRetCore::F64(p), Val::F64(b)) => nan_ok64(p, *b),
        (WastRetCore::RefNull(_), Val::FuncRef(0) | Val::ExternRef(0)) => true,
        (WastRetCore::RefExtern(None), Val::ExternRef(x)) => *x != 0,
        (WastRetCore::RefExtern(Some(n)), Val::ExternRef(x)) => *x == *n as u64 + 1,
        // `(ref.func)` with no index means "any non-null function reference" in the suite's
        // format; a specific one (`(ref.func $f)`, which no vendored file uses) is not checked,
        // so it fails rather than passing unchecked.
        (WastRetCore::RefFunc(None), Val::FuncRef(x)) => *x != 0,
        (WastRetCore::Either(alts), v) => alts.iter().any(|a| core_ok(a, v)),
        _ => false,
    }
}

impl Runner {
    fn new() -> Runner {
        let mut linker = Linker::new();
        spectest(&mut linker);
        Runner {
            skipping: false,
            store: Store::new(&HOST),
            linker,
            current: None,
            named: HashMap::new(),
            skipped_names: Vec::new(),
            skipped_registrations: Vec::new(),
        }
    }

    fn instantiate(&mut self, bytes: &[u8], name: Option<&str>) -> Result<Instance, InstantiateError> {
        // WASM_SPEC_GUARD=1 runs the suite with guard-region memories instead of bounds checks.
        let guard = std::env::var("WASM_SPEC_GUARD").is_ok_and(|v| v == "1");
        let config = Config { verify: true, allow_avx: true, bounds_checks: !guard, ..Config::default() };
        let module = Module::new(bytes, config)?;
        let linker = &self.linker;
        Instance::new(&self.store, &module, name.unwrap_or("spec"), &|i| linker.get(&i.module, &i.name).cloned())
    }

    fn instance(&self, id: Option<wast::token::Id<'_>>) -> Result<&Instance, String> {
        match id {
            Some(id) => self.named.get(id.name()).ok_or_else(|| format!("no module {}", id.name())),
            None => self.current.as_ref().ok_or_else(|| "no current module".to_string()),
        }
    }

    fn invoke(&self, i: &WastInvoke<'_>) -> Result<Result<Vec<Val>, Error>, String> {
        let inst = self.instance(i.module)?;
        let args = i.args.iter().map(arg).collect::<Result<Vec<_>, _>>()?;
        Ok(inst.call(i.name, &args))
    }

    fn execute(&mut self, e: &mut WastExecute<'_>) -> Result<Result<Vec<Val>, Error>, String> {
        match e {
            WastExecute::Invoke(i) => self.invoke(i),
            WastExecute::Get { module, global, .. } => {
                let inst = self.instance(*module)?;
                match inst.export(global) {
                    Some(Extern::Global(g)) => Ok(Ok(vec![g.get()])),
                    _ => Err(format!("no global {global}")),
                }
            }
            WastExecute::Wat(w) => {
                let bytes = w.encode().map_err(|e| e.to_string())?;
                match self.instantiate(&bytes, None) {
                    Ok(_) => Ok(Ok(vec![])),
                    Err(InstantiateError::Trap(t)) => Ok(Err(Error::Trap(t))),
                    Err(InstantiateError::Error(e)) if self.unsupported_module(&e.to_string()) => Err(SKIP.to_string()),
                    Err(InstantiateError::Error(e)) => Err(e.to_string()),
                }
            }
        }
    }

    fn module(&mut self, m: &mut QuoteWat<'_>) -> Result<(), String> {
        self.skipping = false;
        let name = m.name().map(|n| n.name().to_string());
        let bytes = m.encode().map_err(|e| e.to_string())?;
        let inst = self.instantiate(&bytes, name.as_deref()).map_err(|e| e.to_string())?;
        if let Some(n) = name {
            self.named.insert(n, inst.clone());
        }
        self.current = Some(inst);
        Ok(())
    }

    /// Whether a module failed because of a left-out proposal: its own validation error, or a
    /// link error naming a module registered from one that did.
    fn unsupported_module(&self, error: &str) -> bool {
        unsupported_valid_module(error) || self.skipped_registrations.iter().any(|r| error.contains(&format!("import {r}.")))
    }

    /// `assert_invalid` (`invalid`: the error must be of the class the message names) and
    /// `assert_malformed` (any decoding error: decoders word them differently).
    fn reject(&mut self, mut module: QuoteWat<'_>, message: &str, invalid: bool) -> Result<Outcome, String> {
        let quoted = matches!(module, QuoteWat::QuoteModule(..));
        let bytes = match module.encode() {
            Ok(b) => b,
            // Quoted text the text parser rejects: a text-format test.
            Err(_) if quoted => return Ok(Outcome::TextOnly),
            Err(e) => return Err(format!("the test's module does not encode: {e}")),
        };
        match Module::new(&bytes, Config::default()) {
            Err(e) if unsupported(&e.to_string()) => Ok(Outcome::UnsupportedModule),
            Err(e) if !invalid || same_error_class(message, &e.to_string()) => Ok(Outcome::Passed),
            Err(e) => Err(format!("rejected for another reason: expected {message:?}, got {e}")),
            Ok(_) => Err(format!("module accepted, expected {message:?}")),
        }
    }

    fn directive(&mut self, d: WastDirective<'_>) -> Result<Outcome, String> {
        let passed = |r: Result<(), String>| r.map(|()| Outcome::Passed);
        match d {
            WastDirective::Module(mut m) => match self.module(&mut m) {
                Ok(()) => Ok(Outcome::Passed),
                Err(e) if self.unsupported_module(&e) => {
                    self.skipping = true;
                    self.current = None;
                    if let Some(n) = m.name() {
                        self.skipped_names.push(n.name().to_string());
                    }
                    Ok(Outcome::UnsupportedModule)
                }
                Err(e) => Err(e),
            },
            WastDirective::Register { name, module, .. } => {
                let skipped = match module {
                    Some(m) => self.skipped_names.iter().any(|s| s == m.name()),
                    None => self.skipping && self.current.is_none(),
                };
                if skipped {
                    self.skipped_registrations.push(name.to_string());
                    return Ok(Outcome::UnsupportedModule);
                }
                let inst = self.instance(module)?.clone();
                self.linker.instance(name, &inst);
                Ok(Outcome::Passed)
            }
            WastDirective::Invoke(i) => match self.invoke(&i)? {
                Ok(_) => Ok(Outcome::Passed),
                Err(e) => Err(format!("invoke {}: {e}", i.name)),
            },
            WastDirective::AssertReturn { mut exec, results, .. } => passed(match self.execute(&mut exec)? {
                Ok(vals) if vals.len() == results.len() && results.iter().zip(&vals).all(|(r, v)| ret_ok(r, v)) => Ok(()),
                Ok(vals) => Err(format!("got {vals:?}, expected {results:?}")),
                Err(e) => Err(format!("{e}")),
            }),
            WastDirective::AssertTrap { mut exec, message, .. } => {
                let want = trap_kind_of(message).ok_or_else(|| format!("unknown trap message {message:?}"))?;
                passed(match self.execute(&mut exec)? {
                    Err(Error::Trap(t)) if want.contains(&t.kind) => Ok(()),
                    other => Err(format!("expected trap {message:?}, got {other:?}")),
                })
            }
            WastDirective::AssertExhaustion { call, message, .. } => passed(match self.invoke(&call)? {
                Err(Error::Trap(t)) if t.kind == TrapKind::StackOverflow => Ok(()),
                other => Err(format!("expected {message:?}, got {other:?}")),
            }),
            WastDirective::AssertInvalid { module, message, .. } => self.reject(module, message, true),
            WastDirective::AssertMalformed { module, message, .. } => self.reject(module, message, false),
            WastDirective::AssertUnlinkable { module, message, .. } => {
                let mut module = QuoteWat::Wat(module);
                let bytes = module.encode().map_err(|e| e.to_string())?;
                match self.instantiate(&bytes, None) {
                    Err(InstantiateError::Error(e)) if self.unsupported_module(&e.to_string()) => return Ok(Outcome::UnsupportedModule),
                    _ => {}
                }
                passed(match self.instantiate(&bytes, None) {
                    Err(InstantiateError::Error(Error::Link { .. })) => Ok(()),
                    Err(e) => Err(format!("expected unlinkable {message:?}, got {e}")),
                    Ok(_) => Err(format!("linked, expected {message:?}")),
                })
            }
            WastDirective::ModuleDefinition(_)
            | WastDirective::ModuleInstance { .. }
            | WastDirective::Thread(_)
            | WastDirective::Wait { .. } => Ok(Outcome::NotImplemented),
            other => Err(format!("directive not supported: {other:?}").chars().take(80).collect()),
        }
    }
}

/// Whether a directive acts on the current (unnamed) module: the ones a module that could not
/// be instantiated takes with it.
fn on_current_module(d: &WastDirective<'_>) -> bool {
    let exec_on_current = |e: &WastExecute<'_>| match e {
        WastExecute::Invoke(i) => i.module.is_none(),
        WastExecute::Get { module, .. } => module.is_none(),
        WastExecute::Wat(_) => false,
    };
    match d {
        WastDirective::Invoke(i) => i.module.is_none(),
        WastDirective::AssertReturn { exec, .. } | WastDirective::AssertTrap { exec, .. } => exec_on_current(exec),
        WastDirective::AssertExhaustion { call, .. } => call.module.is_none(),
        WastDirective::Register { module, .. } => module.is_none(),
        _ => false,
    }
}

/// The module a directive names explicitly (`$M` in `invoke $M "f"`, `register "m" $M`).
fn names_module<'a>(d: &'a WastDirective<'_>) -> Option<&'a str> {
    let of_exec = |e: &'a WastExecute<'_>| match e {
        WastExecute::Invoke(i) => i.module.map(|m| m.name()),
        WastExecute::Get { module, .. } => module.map(|m| m.name()),
        WastExecute::Wat(_) => None,
    };
    match d {
        WastDirective::Invoke(i) => i.module.map(|m| m.name()),
        WastDirective::AssertReturn { exec, .. } | WastDirective::AssertTrap { exec, .. } => of_exec(exec),
        WastDirective::AssertExhaustion { call, .. } => call.module.map(|m| m.name()),
        WastDirective::Register { module, .. } => module.map(|m| m.name()),
        _ => None,
    }
}

fn run_file(path: &PathBuf) -> Counts {
    let mut c = Counts::default();
    let text = std::fs::read_to_string(path).unwrap();
    let mut lexer = wast::lexer::Lexer::new(&text);
    lexer.allow_confusing_unicode(true);
    let buf = match ParseBuffer::new_with_lexer(lexer) {
        Ok(b) => b,
        Err(e) => {
            c.failed += 1;
            c.first_failures.push(format!("lexer: {e}"));
            return c;
        }
    };
    let wast: Wast<'_> = match parser::parse(&buf) {
        Ok(w) => w,
        Err(e) => {
            c.failed += 1;
            c.first_failures.push(format!("parse: {}", e.message()));
            return c;
        }
    };
    let mut r = Runner::new();
    for d in wast.directives {
        let (line, _) = d.span().linecol_in(&text);
        let on_skipped = match names_module(&d) {
            Some(n) => r.skipped_names.iter().any(|s| s == n),
            None => r.skipping && r.current.is_none() && on_current_module(&d),
        };
        if !matches!(d, WastDirective::Module(_)) && on_skipped {
            // A directive on a module that uses a left-out proposal: not run.
            c.unsupported += 1;
            continue;
        }
        match r.directive(d) {
            Ok(Outcome::Passed) => c.passed += 1,
            Ok(Outcome::UnsupportedModule) => c.unsupported += 1,
            Ok(Outcome::NotImplemented) => c.not_implemented += 1,
            Ok(Outcome::TextOnly) => c.text_only += 1,
            // A module given inside an assertion uses a left-out proposal.
            Err(e) if e == SKIP => c.unsupported += 1,
            Err(e) => {
                c.failed += 1;
                if c.first_failures.len() < 3 {
                    c.first_failures.push(format!("line {}: {}", line + 1, e.chars().take(160).collect::<String>()));
                }
            }
        }
    }
    c
}

fn main() {
    let dir =
        std::env::var("WASM_TESTSUITE").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/spec"));
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("spec suite at {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wast"))
        .collect();
    files.sort();
    let (mut total_p, mut total_f, mut total_u, mut report, mut skipped) = (0, 0, 0, String::new(), Vec::new());
    let (mut total_ni, mut total_t, mut ran) = (0, 0, Vec::new());
    let mut broken = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        if filter.as_ref().is_some_and(|x| !name.contains(x.as_str())) {
            continue;
        }
        if let Some(why) = skip_reason(&name) {
            skipped.push(format!("{name} ({why})"));
            continue;
        }
        let path = f.clone();
        let c = std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(move || run_file(&path))
            .unwrap()
            .join()
            .unwrap_or_else(|_| Counts { failed: 1, first_failures: vec!["the runner panicked".into()], ..Counts::default() });
        total_p += c.passed;
        total_f += c.failed;
        total_u += c.unsupported;
        total_ni += c.not_implemented;
        total_t += c.text_only;
        ran.push(name.clone());
        writeln!(
            report,
            "{:<34} {:>5} passed {:>4} failed {:>4} need a left-out proposal {:>3} not implemented {:>3} text-format only",
            name, c.passed, c.failed, c.unsupported, c.not_implemented, c.text_only
        )
        .unwrap();
        for e in &c.first_failures {
            writeln!(report, "    {e}").unwrap();
        }
        if c.failed > 0 && MUST_PASS.contains(&name.as_str()) {
            broken.push(name);
        }
    }
    writeln!(
        report,
        "\ntotal: {total_p} passed, {total_f} failed ({:.2}% of supported), {total_u} need a proposal left out, {total_ni} directives not implemented by the runner, {total_t} text-format-only cases; {} files skipped:",
        100.0 * total_p as f64 / (total_p + total_f).max(1) as f64,
        skipped.len()
    )
    .unwrap();
    for s in &skipped {
        writeln!(report, "  skipped {s}").unwrap();
    }
    print!("{report}");
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/wasm-spec.txt");
    let _ = std::fs::write(out, &report);
    if filter.is_none() {
        let missing: Vec<&&str> = MUST_PASS.iter().filter(|m| !ran.iter().any(|r| r == *m)).collect();
        assert!(missing.is_empty(), "files that must pass did not run: {missing:?}");
        assert!(broken.is_empty(), "files that must pass have failures: {broken:?}");
        assert!(total_p >= MIN_PASSED, "only {total_p} directives passed (floor {MIN_PASSED})");
    }
}
