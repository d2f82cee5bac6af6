//! A subset of the WebAssembly spec suite, converted for the kernel (`wasm spec`): the `.wast`
//! text is parsed here on the host (the `wast` crate needs std) into a small binary script the
//! kernel can run without a text parser.
//!
//! Format (little endian): `DSPC`, then records: `F` name (a file starts); `M` module bytes;
//! `I` module bytes that must be rejected; `R` export, args, results (assert_return); `T`
//! export, args (assert_trap); `V` export, args (invoke: must not trap); `X` export, args (assert_exhaustion); `S` n (directives skipped:
//! imports, references, registers). Strings and byte blobs carry a u32 length; values a type
//! byte (0 i32, 1 i64, 2 f32, 3 f64, 4/5 f32 canonical/arithmetic NaN, 6/7 f64 likewise) and
//! eight bytes.

use std::path::Path;
use wast::core::{NanPattern, WastArgCore, WastRetCore};
use wast::parser::{self, ParseBuffer};
use wast::{Wast, WastArg, WastDirective, WastExecute, WastRet};

/// The files the kernel runs (the fast, self-contained ones).
pub const FILES: &[&str] = &[
    "address.wast",
    "block.wast",
    "br_if.wast",
    "call_indirect.wast",
    "conversions.wast",
    "endianness.wast",
    "f32.wast",
    "f64.wast",
    "fac.wast",
    "i32.wast",
    "i64.wast",
    "if.wast",
    "int_exprs.wast",
    "left-to-right.wast",
    "local_tee.wast",
    "loop.wast",
    "memory_trap.wast",
    "select.wast",
    "stack.wast",
    "traps.wast",
    "unreachable.wast",
];

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn arg(a: &WastArg<'_>) -> Option<(u8, u64)> {
    match a {
        WastArg::Core(WastArgCore::I32(v)) => Some((0, *v as u32 as u64)),
        WastArg::Core(WastArgCore::I64(v)) => Some((1, *v as u64)),
        WastArg::Core(WastArgCore::F32(v)) => Some((2, v.bits as u64)),
        WastArg::Core(WastArgCore::F64(v)) => Some((3, v.bits)),
        _ => None,
    }
}

fn ret(r: &WastRet<'_>) -> Option<(u8, u64)> {
    match r {
        WastRet::Core(WastRetCore::I32(v)) => Some((0, *v as u32 as u64)),
        WastRet::Core(WastRetCore::I64(v)) => Some((1, *v as u64)),
        WastRet::Core(WastRetCore::F32(NanPattern::Value(v))) => Some((2, v.bits as u64)),
        WastRet::Core(WastRetCore::F64(NanPattern::Value(v))) => Some((3, v.bits)),
        WastRet::Core(WastRetCore::F32(NanPattern::CanonicalNan)) => Some((4, 0)),
        WastRet::Core(WastRetCore::F32(NanPattern::ArithmeticNan)) => Some((5, 0)),
        WastRet::Core(WastRetCore::F64(NanPattern::CanonicalNan)) => Some((6, 0)),
        WastRet::Core(WastRetCore::F64(NanPattern::ArithmeticNan)) => Some((7, 0)),
        _ => None,
    }
}

fn put_vals(out: &mut Vec<u8>, v: &[(u8, u64)]) {
    out.push(v.len() as u8);
    for (t, b) in v {
        out.push(*t);
        out.extend_from_slice(&b.to_le_bytes());
    }
}

fn call(out: &mut Vec<u8>, tag: u8, name: &str, args: &[WastArg<'_>]) -> bool {
    let Some(args) = args.iter().map(arg).collect::<Option<Vec<_>>>() else { return false };
    out.push(tag);
    put_bytes(out, name.as_bytes());
    put_vals(out, &args);
    true
}

fn leb(b: &[u8], at: &mut usize) -> Option<u32> {
    let (mut v, mut shift) = (0u32, 0);
    loop {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= ((byte & 0x7f) as u32) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

/// Whether a binary module has an import section (the kernel has no `spectest` module).
fn has_imports(b: &[u8]) -> bool {
    let mut at = 8;
    while at < b.len() {
        let id = b[at];
        at += 1;
        let Some(len) = leb(b, &mut at) else { return true };
        if id == 2 {
            return true;
        }
        at += len as usize;
    }
    false
}

/// Converts the listed files under `dir` into one script.
pub fn bundle(dir: &Path) -> Result<Vec<u8>, String> {
    let mut out = b"DSPC".to_vec();
    for f in FILES {
        let path = dir.join(f);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let buf = ParseBuffer::new(&text).map_err(|e| format!("{f}: {e}"))?;
        let wast: Wast<'_> = parser::parse(&buf).map_err(|e| format!("{f}: {e}"))?;
        out.push(b'F');
        put_bytes(&mut out, f.as_bytes());
        let mut skipped = 0u32;
        // Asserts on a module that uses imports (or is skipped) are skipped too.
        let mut usable = false;
        for d in wast.directives {
            let ok = match d {
                WastDirective::Module(mut m) => {
                    let bytes = m.encode().map_err(|e| format!("{f}: {e}"))?;
                    usable = !has_imports(&bytes);
                    if usable {
                        out.push(b'M');
                        put_bytes(&mut out, &bytes);
                    }
                    usable
                }
                WastDirective::AssertInvalid { mut module, .. } | WastDirective::AssertMalformed { mut module, .. } => {
                    match module.encode() {
                        Ok(bytes) => {
                            out.push(b'I');
                            put_bytes(&mut out, &bytes);
                            true
                        }
                        Err(_) => false,
                    }
                }
                WastDirective::AssertReturn { exec: WastExecute::Invoke(i), results, .. } if usable && i.module.is_none() => {
                    match results.iter().map(ret).collect::<Option<Vec<_>>>() {
                        Some(rs) if i.args.iter().all(|a| arg(a).is_some()) => {
                            call(&mut out, b'R', i.name, &i.args);
                            put_vals(&mut out, &rs);
                            true
                        }
                        _ => false,
                    }
                }
                WastDirective::AssertTrap { exec: WastExecute::Invoke(i), .. } if usable && i.module.is_none() => {
                    call(&mut out, b'T', i.name, &i.args)
                }
                WastDirective::AssertExhaustion { call: i, .. } if usable && i.module.is_none() => call(&mut out, b'X', i.name, &i.args),
                // An invoke must not trap; its results do not matter.
                WastDirective::Invoke(i) if usable && i.module.is_none() => call(&mut out, b'V', i.name, &i.args),
                _ => false,
            };
            if !ok {
                skipped += 1;
            }
        }
        out.push(b'S');
        out.extend_from_slice(&skipped.to_le_bytes());
    }
    Ok(out)
}
