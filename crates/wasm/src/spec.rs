//! `wasm spec`: runs the image's subset of the WebAssembly spec suite (`spec/wasm-suite.bin`,
//! converted from `.wast` by imgtool; format in tools/imgtool/src/spec.rs) inside the kernel,
//! and prints passed/failed per file. Every module is compiled by the kernel's Cranelift.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use nano_core::println;
use wasm_runtime::{Error, Instance, Module, Store, TrapKind, Val};

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.at)?;
        self.at += 1;
        Some(v)
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn str(&mut self) -> Option<&'a str> {
        core::str::from_utf8(self.bytes()?).ok()
    }
    fn vals(&mut self) -> Option<Vec<(u8, u64)>> {
        let n = self.u8()?;
        (0..n).map(|_| Some((self.u8()?, u64::from_le_bytes(self.take(8)?.try_into().ok()?)))).collect()
    }
}

fn arg((t, bits): (u8, u64)) -> Val {
    match t {
        0 => Val::I32(bits as u32 as i32),
        1 => Val::I64(bits as i64),
        2 => Val::F32(bits as u32),
        _ => Val::F64(bits),
    }
}

fn matches(want: (u8, u64), got: &Val) -> bool {
    match (want.0, got) {
        (0, Val::I32(v)) => *v as u32 as u64 == want.1,
        (1, Val::I64(v)) => *v as u64 == want.1,
        (2, Val::F32(v)) => *v as u64 == want.1,
        (3, Val::F64(v)) => *v == want.1,
        (4, Val::F32(v)) => v & 0x7fff_ffff == 0x7fc0_0000,
        (5, Val::F32(v)) => v & 0x7fc0_0000 == 0x7fc0_0000,
        (6, Val::F64(v)) => v & 0x7fff_ffff_ffff_ffff == 0x7ff8_0000_0000_0000,
        (7, Val::F64(v)) => v & 0x7ff8_0000_0000_0000 == 0x7ff8_0000_0000_0000,
        _ => false,
    }
}

#[derive(Default)]
struct Tally {
    passed: u32,
    failed: u32,
    skipped: u32,
    first: Option<String>,
}

/// Runs the suite; returns the process status (0 only if nothing failed).
pub fn run(filter: Option<&str>) -> isize {
    let Some(m) = nano_core::kernel::boot_state().modules.iter().find(|m| m.name == "spec/wasm-suite.bin") else {
        println!("wasm spec: the image has no spec/wasm-suite.bin");
        return 1;
    };
    let mut r = Reader { b: m.data, at: 0 };
    if r.take(4) != Some(b"DSPC") {
        println!("wasm spec: spec/wasm-suite.bin is not a suite script");
        return 1;
    }
    let t0 = nano_core::time::micros_since_entry();
    let store = Store::new(&crate::platform::PLATFORM);
    let (mut total, mut files) = (Tally::default(), 0);
    let mut cur: Option<(String, Tally)> = None;
    let mut inst: Option<Instance> = None;
    let finish = |cur: &mut Option<(String, Tally)>, total: &mut Tally| {
        if let Some((name, t)) = cur.take() {
            println!(
                "{name:<22} {:>5} passed {:>3} failed {:>4} skipped{}",
                t.passed,
                t.failed,
                t.skipped,
                t.first.map(|f| format!("  first failure: {f}")).unwrap_or_default()
            );
            total.passed += t.passed;
            total.failed += t.failed;
            total.skipped += t.skipped;
        }
    };
    while let Some(tag) = r.u8() {
        let ok = (|| -> Option<()> {
            if tag == b'F' {
                finish(&mut cur, &mut total);
                let name = r.str()?;
                files += usize::from(filter.is_none_or(|f| name.contains(f)));
                cur = Some((String::from(name), Tally::default()));
                return Some(());
            }
            let selected = cur.as_ref().is_some_and(|(n, _)| filter.is_none_or(|f| n.contains(f)));
            let (name, t) = cur.as_mut()?;
            let mut check = |ok: bool, what: &dyn Fn() -> String| {
                if !selected {
                    return;
                }
                if ok {
                    t.passed += 1;
                } else {
                    t.failed += 1;
                    t.first.get_or_insert_with(what);
                }
            };
            match tag {
                b'M' => {
                    let bytes = r.bytes()?;
                    if selected {
                        // With more than one CPU the parked CPUs compile beside this task:
                        // hundreds of modules, each a round of helper jobs.
                        let made =
                            Module::new_with(bytes, crate::kernel_config(false, crate::explicit_checks()), &crate::helpers::ParkedCpus)
                                .map_err(|e| format!("{e}"))
                                .and_then(|m| Instance::new(&store, &m, "spec", &|_| None).map_err(|e| format!("{e}")));
                        check(made.is_ok(), &|| format!("module: {:?}", made.as_ref().err()));
                        inst = made.ok();
                    }
                }
                b'I' => {
                    let bytes = r.bytes()?;
                    if selected {
                        let rejected = Module::new(bytes, crate::kernel_config(false, crate::explicit_checks())).is_err();
                        check(rejected, &|| String::from("an invalid module was accepted"));
                    }
                }
                b'R' | b'T' | b'X' | b'V' => {
                    let export = r.str()?;
                    let args: Vec<Val> = r.vals()?.into_iter().map(arg).collect();
                    let want = if tag == b'R' { r.vals()? } else { Vec::new() };
                    if selected {
                        let got = match &inst {
                            Some(i) => i.call(export, &args),
                            None => Err(Error::NoExport(String::from("(no module)"))),
                        };
                        let ok = match (tag, &got) {
                            (b'R', Ok(v)) => v.len() == want.len() && want.iter().zip(v).all(|(w, g)| matches(*w, g)),
                            (b'T', Err(Error::Trap(_))) => true,
                            (b'X', Err(Error::Trap(tr))) => tr.kind == TrapKind::StackOverflow,
                            (b'V', Ok(_)) => true,
                            _ => false,
                        };
                        check(ok, &|| format!("{} {export}: {got:?}", tag as char));
                    }
                }
                b'S' => t.skipped += r.u32()?,
                _ => return None,
            }
            let _ = name;
            Some(())
        })();
        if ok.is_none() {
            println!("wasm spec: the suite script is malformed at byte {}", r.at);
            return 1;
        }
    }
    finish(&mut cur, &mut total);
    println!(
        "wasm spec: {} passed, {} failed, {} skipped (imports, references) in {} files, {} ms",
        total.passed,
        total.failed,
        total.skipped,
        files,
        (nano_core::time::micros_since_entry() - t0) / 1000
    );
    if total.failed == 0 { 0 } else { 1 }
}
