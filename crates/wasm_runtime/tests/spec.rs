//! The official WebAssembly spec test suite (the subset vendored in `tests/spec`, or a whole
//! checkout named by `$WASM_TESTSUITE`)
//! run against this engine on the host: every directive of every file of the proposals the
//! engine implements, with passed/failed counts per file and the files skipped and why.
//!
//! Fails when a file of `MUST_PASS` has a failure or the total falls below `MIN_PASSED`
//! (both raised as the engine improves), so a regression cannot go unnoticed. Writes the
//! table to `target/wasm-spec.txt`.

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
const MIN_PASSED: usize = 24_000;

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
    } else if n.ends_with("64") || n.contains("64-") || n == "table_copy_mixed" {
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

/// Errors that mean "a proposal this engine leaves out", not a wrong answer.
const UNSUPPORTED: &[&str] = &[
    "multiple memories",
    "function references",
    "gc feature",
    "exceptions proposal",
    "ModuleDefinition",
    "ModuleInstance",
    "constant expression required",
    "expression initializers",
    "heap types not supported",
    "memory64",
];

#[derive(Default)]
struct Counts {
    passed: usize,
    failed: usize,
    unsupported: usize,
    first_failures: Vec<String>,
}

struct Runner {
    /// The last module used a proposal left out: directives on it are not counted as failures.
    skipping: bool,
    store: Store,
    linker: Linker,
    current: Option<Instance>,
    named: HashMap<String, Instance>,
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
        (WastRetCore::RefFunc(_), Val::FuncRef(x)) => *x != 0,
        (WastRetCore::Either(alts), v) => alts.iter().any(|a| core_ok(a, v)),
        _ => false,
    }
}

impl Runner {
    fn new() -> Runner {
        let mut linker = Linker::new();
        spectest(&mut linker);
        Runner { skipping: false, store: Store::new(&HOST), linker, current: None, named: HashMap::new() }
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

    fn directive(&mut self, d: WastDirective<'_>) -> Result<(), String> {
        match d {
            WastDirective::Module(mut m) => self.module(&mut m),
            WastDirective::Register { name, module, .. } => {
                let inst = self.instance(module)?.clone();
                self.linker.instance(name, &inst);
                Ok(())
            }
            WastDirective::Invoke(i) => match self.invoke(&i)? {
                Ok(_) => Ok(()),
                Err(e) => Err(format!("invoke {}: {e}", i.name)),
            },
            WastDirective::AssertReturn { mut exec, results, .. } => match self.execute(&mut exec)? {
                Ok(vals) if vals.len() == results.len() && results.iter().zip(&vals).all(|(r, v)| ret_ok(r, v)) => Ok(()),
                Ok(vals) => Err(format!("got {vals:?}, expected {results:?}")),
                Err(e) => Err(format!("{e}")),
            },
            WastDirective::AssertTrap { mut exec, message, .. } => match self.execute(&mut exec)? {
                Err(Error::Trap(_)) => Ok(()),
                other => Err(format!("expected trap {message:?}, got {other:?}")),
            },
            WastDirective::AssertExhaustion { call, message, .. } => match self.invoke(&call)? {
                Err(Error::Trap(t)) if t.kind == TrapKind::StackOverflow => Ok(()),
                other => Err(format!("expected {message:?}, got {other:?}")),
            },
            WastDirective::AssertInvalid { mut module, message, .. } | WastDirective::AssertMalformed { mut module, message, .. } => {
                let Ok(bytes) = module.encode() else { return Ok(()) };
                match Module::new(&bytes, Config::default()) {
                    Err(_) => Ok(()),
                    Ok(_) => Err(format!("module accepted, expected {message:?}")),
                }
            }
            WastDirective::AssertUnlinkable { module, message, .. } => {
                let mut module = QuoteWat::Wat(module);
                let bytes = module.encode().map_err(|e| e.to_string())?;
                match self.instantiate(&bytes, None) {
                    Err(InstantiateError::Error(Error::Link { .. })) => Ok(()),
                    Err(e) => Err(format!("expected unlinkable {message:?}, got {e}")),
                    Ok(_) => Err(format!("linked, expected {message:?}")),
                }
            }
            other => Err(format!("directive not supported: {other:?}").chars().take(80).collect()),
        }
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
        let is_module = matches!(d, WastDirective::Module(_));
        match r.directive(d) {
            Ok(()) => c.passed += 1,
            Err(e) if UNSUPPORTED.iter().any(|u| e.contains(u)) => {
                c.unsupported += 1;
                if is_module {
                    r.skipping = true;
                    r.current = None;
                }
            }
            Err(e) if r.skipping && (e.contains("no current module") || e.contains("no module") || e.contains("no export")) => {
                c.unsupported += 1;
            }
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
            .unwrap_or_else(|_| Counts { passed: 0, failed: 1, unsupported: 0, first_failures: vec!["the runner panicked".into()] });
        total_p += c.passed;
        total_f += c.failed;
        total_u += c.unsupported;
        writeln!(report, "{:<34} {:>5} passed {:>4} failed {:>4} unsupported", name, c.passed, c.failed, c.unsupported).unwrap();
        for e in &c.first_failures {
            writeln!(report, "    {e}").unwrap();
        }
        if c.failed > 0 && MUST_PASS.contains(&name.as_str()) {
            broken.push(name);
        }
    }
    writeln!(
        report,
        "\ntotal: {total_p} passed, {total_f} failed ({:.2}% of supported), {total_u} need a proposal left out; {} files skipped:",
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
        assert!(broken.is_empty(), "files that must pass have failures: {broken:?}");
        assert!(total_p >= MIN_PASSED, "only {total_p} directives passed (floor {MIN_PASSED})");
    }
}
