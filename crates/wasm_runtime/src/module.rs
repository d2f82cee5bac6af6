//! Reading a module: validation by wasmparser, then everything the translator and the
//! instantiation need, in owned form (types, imports, functions, tables, memories, globals,
//! exports, segments, names). Function bodies stay in the module bytes; only their ranges
//! are kept.

use crate::Error;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::ops::Range;
use wasmparser::{
    ConstExpr, DataKind, ElementItems, ElementKind, ExternalKind, KnownCustom, Name, Operator, Parser, Payload, TypeRef, ValType,
    Validator, WasmFeatures,
};

pub use wasmparser::{FuncType, GlobalType, MemoryType, RefType, TableType};

/// The proposals this engine implements: WebAssembly 2.0 without SIMD.
pub fn features() -> WasmFeatures {
    WasmFeatures::WASM2.difference(WasmFeatures::SIMD)
}

/// A constant expression, evaluated at instantiation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// `i32.const`.
    I32(i32),
    /// `i64.const`.
    I64(i64),
    /// `f32.const` (bits).
    F32(u32),
    /// `f64.const` (bits).
    F64(u64),
    /// `ref.null`.
    RefNull,
    /// `ref.func`.
    RefFunc(u32),
    /// `global.get` of an imported global.
    GlobalGet(u32),
}

/// What an import brings in.
#[derive(Debug, Clone)]
pub enum ImportKind {
    /// A function of this type index.
    Func(u32),
    /// A table.
    Table(TableType),
    /// A linear memory.
    Memory(MemoryType),
    /// A global.
    Global(GlobalType),
}

/// One import.
#[derive(Debug, Clone)]
pub struct Import {
    /// Module name.
    pub module: String,
    /// Field name.
    pub name: String,
    /// Kind and type.
    pub kind: ImportKind,
}

/// Where an element segment goes.
#[derive(Debug, Clone)]
pub enum SegmentMode {
    /// Copied at instantiation into this table/memory at this offset.
    Active {
        /// Table or memory index.
        index: u32,
        /// Offset expression.
        offset: Init,
    },
    /// Used by `table.init`/`memory.init`.
    Passive,
    /// Declares functions for `ref.func` only.
    Declared,
}

/// An element segment.
#[derive(Debug, Clone)]
pub struct ElemSegment {
    /// Where it goes.
    pub mode: SegmentMode,
    /// Each element (`RefNull`, `RefFunc` or `GlobalGet`).
    pub items: Vec<Init>,
}

/// A data segment.
#[derive(Debug, Clone)]
pub struct DataSegment {
    /// Where it goes.
    pub mode: SegmentMode,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// An export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// Export name.
    pub name: String,
    /// Kind.
    pub kind: ExternalKind,
    /// Index in the kind's index space.
    pub index: u32,
}

/// Everything about a validated module except the code.
#[derive(Debug, Clone, Default)]
pub struct ModuleInfo {
    /// Function types.
    pub types: Vec<FuncType>,
    /// Imports in order.
    pub imports: Vec<Import>,
    /// Type index of every function (imports first).
    pub funcs: Vec<u32>,
    /// Number of imported functions.
    pub imported_funcs: u32,
    /// Every table (imports first).
    pub tables: Vec<TableType>,
    /// Number of imported tables.
    pub imported_tables: u32,
    /// Every memory (imports first).
    pub memories: Vec<MemoryType>,
    /// Number of imported memories.
    pub imported_memories: u32,
    /// Every global's type (imports first).
    pub globals: Vec<GlobalType>,
    /// Initializers of the defined globals.
    pub global_inits: Vec<Init>,
    /// Number of imported globals.
    pub imported_globals: u32,
    /// Exports.
    pub exports: Vec<Export>,
    /// Start function.
    pub start: Option<u32>,
    /// Element segments.
    pub elements: Vec<ElemSegment>,
    /// Data segments.
    pub data: Vec<DataSegment>,
    /// Byte ranges of the defined functions' bodies in the module.
    pub bodies: Vec<Range<usize>>,
    /// Function names from the name section.
    pub func_names: BTreeMap<u32, String>,
    /// The module's name from the name section.
    pub name: Option<String>,
    /// Functions that may be referenced (`ref.func`, exports, element segments).
    pub escaping: Vec<bool>,
}

fn invalid(e: wasmparser::BinaryReaderError) -> Error {
    Error::Invalid(format!("{} (at byte {:#x})", e.message(), e.offset()))
}

fn const_expr(e: &ConstExpr<'_>) -> Result<Init, Error> {
    let mut r = e.get_operators_reader();
    let op = r.read().map_err(invalid)?;
    let init = match op {
        Operator::I32Const { value } => Init::I32(value),
        Operator::I64Const { value } => Init::I64(value),
        Operator::F32Const { value } => Init::F32(value.bits()),
        Operator::F64Const { value } => Init::F64(value.bits()),
        Operator::RefNull { .. } => Init::RefNull,
        Operator::RefFunc { function_index } => Init::RefFunc(function_index),
        Operator::GlobalGet { global_index } => Init::GlobalGet(global_index),
        other => return Err(Error::Unsupported(format!("constant expression {other:?}"))),
    };
    match r.read().map_err(invalid)? {
        Operator::End => Ok(init),
        other => Err(Error::Unsupported(format!("extended constant expression ({other:?})"))),
    }
}

impl ModuleInfo {
    /// Validates `bytes` and reads the module.
    pub fn parse(bytes: &[u8]) -> Result<ModuleInfo, Error> {
        Validator::new_with_features(features()).validate_all(bytes).map_err(invalid)?;
        let mut m = ModuleInfo::default();
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.map_err(invalid)? {
                Payload::TypeSection(r) => {
                    for t in r.into_iter_err_on_gc_types() {
                        m.types.push(t.map_err(invalid)?);
                    }
                }
                Payload::ImportSection(r) => {
                    for i in r.into_imports() {
                        let i = i.map_err(invalid)?;
                        let kind = match i.ty {
                            TypeRef::Func(t) => {
                                m.funcs.push(t);
                                m.imported_funcs += 1;
                                ImportKind::Func(t)
                            }
                            TypeRef::Table(t) => {
                                m.tables.push(t);
                                m.imported_tables += 1;
                                ImportKind::Table(t)
                            }
                            TypeRef::Memory(t) => {
                                m.memories.push(t);
                                m.imported_memories += 1;
                                ImportKind::Memory(t)
                            }
                            TypeRef::Global(t) => {
                                m.globals.push(t);
                                m.imported_globals += 1;
                                ImportKind::Global(t)
                            }
                            other => return Err(Error::Unsupported(format!("import of {other:?}"))),
                        };
                        m.imports.push(Import { module: i.module.to_string(), name: i.name.to_string(), kind });
                    }
                }
                Payload::FunctionSection(r) => {
                    for t in r {
                        m.funcs.push(t.map_err(invalid)?);
                    }
                }
                Payload::TableSection(r) => {
                    for t in r {
                        let t = t.map_err(invalid)?;
                        if !matches!(t.init, wasmparser::TableInit::RefNull) {
                            return Err(Error::Unsupported("table initializer expressions".into()));
                        }
                        m.tables.push(t.ty);
                    }
                }
                Payload::MemorySection(r) => {
                    for t in r {
                        m.memories.push(t.map_err(invalid)?);
                    }
                }
                Payload::GlobalSection(r) => {
                    for g in r {
                        let g = g.map_err(invalid)?;
                        m.globals.push(g.ty);
                        m.global_inits.push(const_expr(&g.init_expr)?);
                    }
                }
                Payload::ExportSection(r) => {
                    for e in r {
                        let e = e.map_err(invalid)?;
                        m.exports.push(Export { name: e.name.to_string(), kind: e.kind, index: e.index });
                    }
                }
                Payload::StartSection { func, .. } => m.start = Some(func),
                Payload::ElementSection(r) => {
                    for e in r {
                        let e = e.map_err(invalid)?;
                        let mode = match &e.kind {
                            ElementKind::Passive => SegmentMode::Passive,
                            ElementKind::Declared => SegmentMode::Declared,
                            ElementKind::Active { table_index, offset_expr } => {
                                SegmentMode::Active { index: table_index.unwrap_or(0), offset: const_expr(offset_expr)? }
                            }
                        };
                        let mut items = Vec::new();
                        match e.items {
                            ElementItems::Functions(r) => {
                                for f in r {
                                    items.push(Init::RefFunc(f.map_err(invalid)?));
                                }
                            }
                            ElementItems::Expressions(_, r) => {
                                for x in r {
                                    items.push(const_expr(&x.map_err(invalid)?)?);
                                }
                            }
                        }
                        m.elements.push(ElemSegment { mode, items });
                    }
                }
                Payload::DataSection(r) => {
                    for d in r {
                        let d = d.map_err(invalid)?;
                        let mode = match d.kind {
                            DataKind::Passive => SegmentMode::Passive,
                            DataKind::Active { memory_index, offset_expr } => {
                                SegmentMode::Active { index: memory_index, offset: const_expr(&offset_expr)? }
                            }
                        };
                        m.data.push(DataSegment { mode, bytes: d.data.to_vec() });
                    }
                }
                Payload::CodeSectionEntry(body) => {
                    let r = body.range();
                    m.bodies.push(r.start as usize..r.end as usize);
                }
                Payload::CustomSection(c) => {
                    // A malformed name section is ignored, as the spec asks.
                    if let KnownCustom::Name(names) = c.as_known() {
                        for n in names.into_iter().flatten() {
                            match n {
                                Name::Module { name, .. } => m.name = Some(name.to_string()),
                                Name::Function(map) => {
                                    for n in map.into_iter().flatten() {
                                        m.func_names.insert(n.index, n.name.to_string());
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        m.escaping = alloc::vec![false; m.funcs.len()];
        for e in &m.exports {
            if e.kind == ExternalKind::Func {
                m.escaping[e.index as usize] = true;
            }
        }
        for s in &m.elements {
            for i in &s.items {
                if let Init::RefFunc(f) = i {
                    m.escaping[*f as usize] = true;
                }
            }
        }
        Ok(m)
    }

    /// The type of function `f`.
    pub fn func_type(&self, f: u32) -> &FuncType {
        &self.types[self.funcs[f as usize] as usize]
    }

    /// A function's display name: from the name section, an export, or `func[N]`.
    pub fn func_name(&self, f: u32) -> String {
        if let Some(n) = self.func_names.get(&f) {
            return n.clone();
        }
        if let Some(e) = self.exports.iter().find(|e| e.kind == ExternalKind::Func && e.index == f) {
            return e.name.clone();
        }
        format!("func[{f}]")
    }

    /// The export called `name`.
    pub fn export(&self, name: &str) -> Option<&Export> {
        self.exports.iter().find(|e| e.name == name)
    }
}

/// Whether a value type is a reference (represented as a pointer-sized integer).
pub fn is_ref(t: ValType) -> bool {
    matches!(t, ValType::Ref(_))
}
