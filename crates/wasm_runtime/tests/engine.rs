//! The engine on the host with the programs the kernel image ships (crates/wasm/programs):
//! WASI output and arguments, each trap kind named with its function, fuel, stack exhaustion,
//! and errors for bad input that name the cause.

use wasm_runtime::host::HOST;
use wasm_runtime::{Config, Error, Extern, Instance, Module, Store, TrapKind, Val};

fn program(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm/programs").join(name);
    wat::parse_file(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn instantiate(store: &Store, bytes: &[u8], config: Config) -> Instance {
    let m = Module::new(bytes, config).expect("compiles");
    Instance::new(store, &m, "t", &|i| {
        if i.module == wasm_runtime::wasi::MODULE { wasm_runtime::wasi::resolve(&i.name).map(Extern::Func) } else { None }
    })
    .expect("instantiates")
}

fn trap_of(r: Result<Vec<Val>, Error>) -> wasm_runtime::Trap {
    match r {
        Err(Error::Trap(t)) => t,
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn wasi_hello_prints_its_arguments_and_exits() {
    let store = Store::new(&HOST);
    store.wasi().args = vec!["hello".into(), "one".into(), "two".into()];
    let i = instantiate(&store, &program("hello.wat"), Config::default());
    let t = trap_of(i.call("_start", &[]));
    assert_eq!((t.kind, t.exit_code), (TrapKind::Exit, 0));
    let out = String::from_utf8(store.wasi().output.clone()).unwrap();
    assert_eq!(out, "hello from WASM, argc=3\nhello\none\ntwo\n");
}

#[test]
fn every_trap_kind_is_caught_and_named() {
    let store = Store::new(&HOST);
    let i = instantiate(&store, &program("traps.wat"), Config { fuel: true, ..Config::default() });
    store.set_fuel(1_000_000);
    let cases: &[(&str, &[Val], TrapKind, &str)] = &[
        ("divide", &[Val::I32(0)], TrapKind::IntegerDivisionByZero, "div"),
        ("overflow", &[], TrapKind::IntegerOverflow, "overflow"),
        ("unreachable", &[], TrapKind::Unreachable, "unreachable"),
        ("oob", &[], TrapKind::MemoryOutOfBounds, "oob"),
        ("null_call", &[], TrapKind::IndirectCallToNull, "null_call"),
        ("bad_sig", &[], TrapKind::BadSignature, "bad_sig"),
        ("recurse", &[Val::I32(0)], TrapKind::StackOverflow, "recurse"),
        ("spin", &[Val::I32(0)], TrapKind::OutOfFuel, "spin"),
        ("bad_conversion", &[], TrapKind::BadConversionToInteger, "nan"),
    ];
    for (export, args, kind, func) in cases {
        store.set_fuel(1_000_000);
        let t = trap_of(i.call(export, args));
        assert_eq!(t.kind, *kind, "{export}: {t}");
        assert_eq!(t.function.as_deref(), Some(format!("wasm::t::{func}").as_str()), "{export}: {t}");
        assert!(t.wasm_offset.is_some_and(|o| o > 0), "{export}: {t}");
    }
    // The instance still works after all of that.
    assert_eq!(i.call("divide", &[Val::I32(5)]).unwrap(), vec![Val::I32(20)]);
}

#[test]
fn results_are_right() {
    let store = Store::new(&HOST);
    let bytes = wat::parse_str(
        r#"(module (func (export "fib") (param i32) (result i32)
            (if (result i32) (i32.lt_u (local.get 0) (i32.const 2)) (then (local.get 0))
              (else (i32.add (call 0 (i32.sub (local.get 0) (i32.const 1))) (call 0 (i32.sub (local.get 0) (i32.const 2))))))))"#,
    )
    .unwrap();
    let i = instantiate(&store, &bytes, Config::default());
    assert_eq!(i.call("fib", &[Val::I32(20)]).unwrap(), vec![Val::I32(6765)]);
}

#[test]
fn bad_input_names_the_cause() {
    let bytes = program("hello.wat");
    for cut in [0, 4, 20, bytes.len() / 2, bytes.len() - 1] {
        match Module::new(&bytes[..cut], Config::default()) {
            Err(Error::Invalid(msg)) => assert!(msg.contains("byte"), "{msg}"),
            Err(other) => panic!("truncated at {cut}: {other}"),
            Ok(_) => panic!("truncated at {cut}: accepted"),
        }
    }
    let simd = wat::parse_str("(module (func (result v128) (v128.const i32x4 0 0 0 0)))").unwrap();
    assert!(matches!(Module::new(&simd, Config::default()), Err(Error::Invalid(m)) if m.contains("SIMD")));
    let store = Store::new(&HOST);
    let m = Module::new(&wat::parse_str(r#"(module (import "env" "nope" (func)))"#).unwrap(), Config::default()).unwrap();
    let e = Instance::new(&store, &m, "x", &|_| None).err().expect("link error");
    assert!(e.to_string().contains("env.nope"), "{e}");
}

/// Builds the Rust programs of the image (crates/wasm/programs/rust) like imgtool does.
fn rust_program(name: &str) -> Vec<u8> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let ws = root.join("crates/wasm/programs/rust");
    let target = root.join("target/wasm-programs");
    let ok = std::process::Command::new("cargo")
        .current_dir(&ws)
        .args(["build", "--release", "-q", "--target", "wasm32-unknown-unknown", "-Zbuild-std=core", "--target-dir"])
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("cargo runs")
        .success();
    assert!(ok, "building the Rust WASM programs failed");
    std::fs::read(target.join("wasm32-unknown-unknown/release").join(name)).expect("built")
}

#[test]
fn a_rust_wasi_program_runs() {
    let store = Store::new(&HOST);
    {
        let mut w = store.wasi();
        w.args = vec!["rusty.wasm".into(), "alpha".into()];
        w.clock = Some(|| 42_000_000);
    }
    let i = instantiate(&store, &rust_program("rusty.wasm"), Config::default());
    let t = trap_of(i.call("_start", &[]));
    assert_eq!((t.kind, t.exit_code), (TrapKind::Exit, 7), "{t}");
    let out = String::from_utf8(store.wasi().output.clone()).unwrap();
    assert!(
        out.starts_with("hello from Rust compiled to WebAssembly: 2 arguments\n  argv[0] = rusty.wasm\n  argv[1] = alpha\n  clock: 42 ms"),
        "{out}"
    );
}

#[test]
fn rust_kernels_agree_with_native() {
    #[path = "../../wasm/programs/rust/kernels/src/k.rs"]
    mod k;
    let store = Store::new(&HOST);
    let i = instantiate(&store, &rust_program("kernels.wasm"), Config::default());
    let mut data: Vec<u8> = (0..1usize << 16).map(|i| (i * 31 % 251) as u8).collect();
    let mut acc = 0u32;
    for _ in 0..3 {
        acc ^= k::sha256_blocks(&data);
        data[0] = acc as u8;
    }
    assert_eq!(i.call("sha256", &[Val::I32(3)]).unwrap(), vec![Val::I32(acc as i32)]);
    let mut buf = vec![0u32; 5000];
    assert_eq!(i.call("sort", &[Val::I32(5000), Val::I32(9)]).unwrap(), vec![Val::I32(k::sort(&mut buf, 9) as i32)]);
    let (mut a, mut b, mut c) = (vec![0.0; 64 * 64], vec![0.0; 64 * 64], vec![0.0; 64 * 64]);
    assert_eq!(i.call("matmul", &[Val::I32(64)]).unwrap(), vec![Val::I32(k::matmul(&mut a, &mut b, &mut c, 64) as i32)]);
}

thread_local! {
    static INNER: std::cell::RefCell<Option<Instance>> = const { std::cell::RefCell::new(None) };
}

/// A host function WASM calls, which calls WASM again; a trap there is passed on outward.
extern "C" fn call_inner(_vmctx: *mut wasm_runtime::vm::VMContext, x: i32) -> i32 {
    let r = INNER.with(|i| i.borrow().as_ref().unwrap().call("inner", &[Val::I32(x)]));
    match r {
        Ok(v) => match v[0] {
            Val::I32(v) => v,
            _ => -1,
        },
        Err(e) => {
            let kind = match &e {
                Error::Trap(t) => t.kind,
                _ => TrapKind::Fault,
            };
            drop(e);
            // SAFETY: this frame owns nothing left to drop; WASM called it.
            unsafe { wasm_runtime::trap::raise(kind, 0) }
        }
    }
}

#[test]
fn a_trap_in_nested_wasm_host_wasm_calls_unwinds_cleanly() {
    let store = Store::new(&HOST);
    let inner = instantiate(
        &store,
        &wat::parse_str(r#"(module (func (export "inner") (param i32) (result i32) (i32.div_u (i32.const 100) (local.get 0))))"#).unwrap(),
        Config::default(),
    );
    INNER.with(|i| *i.borrow_mut() = Some(inner));
    let outer_wat = r#"(module (import "host" "call_inner" (func $h (param i32) (result i32)))
        (func (export "outer") (param i32) (result i32) (i32.add (call $h (local.get 0)) (i32.const 1))))"#;
    let m = Module::new(&wat::parse_str(outer_wat).unwrap(), Config::default()).unwrap();
    let ty = m.info.types[0].clone();
    let outer = Instance::new(&store, &m, "outer", &|_| {
        Some(Extern::Func(wasm_runtime::Func {
            code: call_inner as *const () as u64,
            ty: ty.clone(),
            vmctx: std::ptr::null_mut(),
            owner: None,
        }))
    })
    .unwrap();
    assert_eq!(outer.call("outer", &[Val::I32(5)]).unwrap(), vec![Val::I32(21)]);
    let t = trap_of(outer.call("outer", &[Val::I32(0)]));
    assert_eq!(t.kind, TrapKind::IntegerDivisionByZero, "{t}");
    assert!(!wasm_runtime::trap::in_wasm(), "the entry chain is unwound");
    assert_eq!(outer.call("outer", &[Val::I32(50)]).unwrap(), vec![Val::I32(3)]);
    INNER.with(|i| *i.borrow_mut() = None);
}

#[test]
fn guard_region_memories_trap_out_of_bounds_accesses() {
    let store = Store::new(&HOST);
    let config = Config { bounds_checks: false, ..Config::default() };
    let i = instantiate(&store, &program("traps.wat"), config);
    let t = trap_of(i.call("oob", &[]));
    assert_eq!((t.kind, t.function.as_deref()), (TrapKind::MemoryOutOfBounds, Some("wasm::t::oob")), "{t}");
    let m = wat::parse_str(
        r#"(module (memory 1 3) (func (export "peek") (param i32) (result i32) (i32.load (local.get 0)))
            (func (export "grow") (result i32) (memory.grow (i32.const 1))))"#,
    )
    .unwrap();
    let i = instantiate(&store, &m, config);
    assert_eq!(i.call("peek", &[Val::I32(65532)]).unwrap(), vec![Val::I32(0)]);
    assert_eq!(trap_of(i.call("peek", &[Val::I32(65533)])).kind, TrapKind::MemoryOutOfBounds);
    assert_eq!(i.call("grow", &[]).unwrap(), vec![Val::I32(1)]);
    assert_eq!(i.call("peek", &[Val::I32(65533)]).unwrap(), vec![Val::I32(0)]);
    assert_eq!(trap_of(i.call("peek", &[Val::I32(-1)])).kind, TrapKind::MemoryOutOfBounds);
}

#[test]
fn eh_frame_describes_every_function() {
    use gimli::{BaseAddresses, EhFrame, LittleEndian, UnwindSection};
    let m = Module::new(&program("compute.wat"), Config::default()).unwrap();
    let base = 0x7000_0000u64;
    let bytes = m.image.eh_frame(base).unwrap();
    let eh = EhFrame::new(&bytes, LittleEndian);
    let bases = BaseAddresses::default().set_eh_frame(0x5000_0000);
    for r in &m.image.funcs {
        let pc = base + r.start as u64 + 4;
        let fde = eh.fde_for_address(&bases, pc, EhFrame::cie_from_offset).unwrap_or_else(|e| panic!("no FDE for {pc:#x}: {e:?}"));
        assert!(fde.contains(pc));
        let mut ctx = gimli::UnwindContext::new();
        let row = fde.unwind_info_for_address(&eh, &bases, &mut ctx, pc).unwrap();
        assert!(matches!(row.cfa(), gimli::CfaRule::RegisterAndOffset { .. }));
    }
}

/// Host threads as compile helpers: the same contract as the kernel's parked CPUs.
struct Threads(usize);

impl wasm_runtime::compile::Workers for Threads {
    fn helpers(&self) -> usize {
        self.0
    }

    fn run(&self, work: fn(*const ()), arg: *const (), mine: &mut dyn FnMut()) {
        let arg = arg as usize;
        std::thread::scope(|s| {
            for _ in 0..self.0 {
                s.spawn(move || work(arg as *const ()));
            }
            mine();
        });
    }
}

/// Every function's slot left empty, as helpers that claimed the functions and abandoned them
/// (a fault in the job) leave them: here nobody runs the work at all, not even the caller's
/// share, so the caller's fallback compiles every function.
struct Abandoning;

impl wasm_runtime::compile::Workers for Abandoning {
    fn helpers(&self) -> usize {
        1
    }

    fn run(&self, _work: fn(*const ()), _arg: *const (), _mine: &mut dyn FnMut()) {}
}

#[test]
fn parallel_compiles_give_the_serial_image() {
    let bytes = rust_program("kernels.wasm");
    let serial = Module::new(&bytes, Config::default()).expect("compiles");
    assert!(serial.info.bodies.len() > 4, "a module with several functions");
    assert_eq!(serial.image.by_helpers, 0);
    for helpers in [1, 3] {
        let m = Module::new_with(&bytes, Config::default(), &Threads(helpers)).expect("compiles");
        assert_eq!(m.image.code, serial.image.code, "{helpers} helpers");
        assert_eq!(m.image.funcs, serial.image.funcs);
        assert_eq!(m.image.trampolines, serial.image.trampolines);
        assert_eq!(m.image.traps.len(), serial.image.traps.len());
        assert_eq!(m.image.relocs.len(), serial.image.relocs.len());
        assert_eq!(m.image.ir_insts, serial.image.ir_insts);
        assert!(m.image.by_helpers <= serial.info.bodies.len());
    }
    // Every slot left empty (claimed and abandoned): the caller compiles them all, and the
    // image is the same.
    let m = Module::new_with(&bytes, Config::default(), &Abandoning).expect("compiles");
    assert_eq!(m.image.code, serial.image.code);
    assert_eq!(m.image.by_helpers, 0);
}
