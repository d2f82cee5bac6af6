//! The loader's errors: one enum, each variant carrying what a caller needs to act on it.

use alloc::string::String;
use alloc::vec::Vec;

/// Why loading, linking, looking up or unloading failed.
///
/// Whenever one of these is returned, the namespaces are exactly as they were before the call:
/// memory allocated for the failed crate is freed and crates loaded on demand for it are
/// unloaded again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The embedder's check refused the object before it was parsed (the kernel: its bytes are
    /// not what was signed).
    #[error("{file}: untrusted object: {reason}")]
    Untrusted {
        /// The object's file name.
        file: String,
        /// Why.
        reason: String,
    },
    /// The bytes are not a well-formed ELF object.
    #[error("{file}: malformed object: {detail}")]
    Malformed {
        /// The object's file name.
        file: String,
        /// What the ELF reader rejected.
        detail: String,
    },
    /// A well-formed ELF file of a kind we do not load.
    #[error("{file}: {detail}")]
    WrongKind {
        /// The object's file name.
        file: String,
        /// e.g. "not a relocatable object (ET_EXEC)".
        detail: String,
    },
    /// A section or total size beyond the loader's limits.
    #[error("{file}: {what} of {size} bytes is larger than the limit of {limit}")]
    TooLarge {
        /// The object's file name.
        file: String,
        /// What is too large.
        what: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A symbol refers to a section index that does not exist, or similar.
    #[error("{file}: symbol #{index} ({name}): {detail}")]
    BadSymbol {
        /// The object's file name.
        file: String,
        /// Symbol table index.
        index: usize,
        /// The raw name (may be empty).
        name: String,
        /// What is wrong.
        detail: &'static str,
    },
    /// A relocation type this loader does not implement.
    #[error("{file}: unsupported relocation type {r_type} ({type_name}) in section {section} at offset {offset:#x}")]
    UnsupportedRelocation {
        /// The object's file name.
        file: String,
        /// Section the relocation applies to.
        section: String,
        /// Offset within that section.
        offset: u64,
        /// The ELF `r_type`.
        r_type: u32,
        /// Its name, if known.
        type_name: &'static str,
    },
    /// A relocation whose place lies outside its section, or refers to a bad symbol.
    #[error("{file}: bad relocation in section {section} at offset {offset:#x}: {detail}")]
    BadRelocation {
        /// The object's file name.
        file: String,
        /// Section the relocation applies to.
        section: String,
        /// Offset within that section.
        offset: u64,
        /// What is wrong.
        detail: &'static str,
    },
    /// A computed value does not fit the relocation's field.
    #[error("{file}: relocation {type_name} in section {section} at offset {offset:#x} overflows (value {value:#x})")]
    RelocationOverflow {
        /// The object's file name.
        file: String,
        /// Section the relocation applies to.
        section: String,
        /// Offset within that section.
        offset: u64,
        /// The relocation type's name.
        type_name: &'static str,
        /// The value that did not fit.
        value: i128,
    },
    /// Undefined symbols that no crate in the namespace, its parents, or their object
    /// directories defines.
    #[error("crate {needed_by}: {} unresolved symbol{}: {}{}", symbols.len() + unlisted, if symbols.len() + unlisted > 1 { "s" } else { "" }, list(symbols), if *unlisted > 0 { alloc::format!(" and {unlisted} more") } else { alloc::string::String::new() })]
    Unresolved {
        /// The crate that needs them.
        needed_by: String,
        /// The symbols (demangled, hash-agnostic form), in name order, up to 32.
        symbols: Vec<String>,
        /// How many more there are beyond those listed.
        unlisted: usize,
    },
    /// A hash-agnostic lookup found several different definitions.
    #[error("symbol {symbol} is ambiguous: {} definitions ({})", candidates.len(), list(candidates))]
    Ambiguous {
        /// The name looked up.
        symbol: String,
        /// The exact names of the candidates.
        candidates: Vec<String>,
    },
    /// A crate of this name is already loaded in the namespace.
    #[error("crate {name} is already loaded in namespace {namespace}")]
    AlreadyLoaded {
        /// Crate name.
        name: String,
        /// Namespace name.
        namespace: String,
    },
    /// No such crate.
    #[error("no crate {0} is loaded")]
    NoSuchCrate(String),
    /// No such namespace.
    #[error("no namespace {0}")]
    NoSuchNamespace(String),
    /// No object file of that name in the namespace's directory.
    #[error("no object file {file} in the directory of namespace {namespace}")]
    NoSuchFile {
        /// The file asked for.
        file: String,
        /// Namespace searched.
        namespace: String,
    },
    /// A namespace name must be 1 to 32 letters, digits, `_` or `-`.
    #[error("bad namespace name {0:?}: use 1 to 32 letters, digits, _ or -")]
    BadNamespaceName(String),
    /// A live namespace already has that name.
    #[error("a namespace named {0} already exists")]
    NamespaceExists(String),
    /// The namespace cannot be dropped, and why.
    #[error("namespace {name} cannot be dropped: {reason}")]
    NamespaceInUse {
        /// The namespace.
        name: String,
        /// Why not.
        reason: String,
    },
    /// No object file of that name among the namespace's updates or in its directory.
    #[error("no object file {file} among the updates or in the directory of namespace {namespace}")]
    NoSuchProgram {
        /// The file asked for.
        file: String,
        /// Namespace searched.
        namespace: String,
    },
    /// The crate cannot be unloaded because others depend on it.
    #[error("crate {name} is in use by {}", list(dependents))]
    InUse {
        /// The crate.
        name: String,
        /// Crates that depend on it.
        dependents: Vec<String>,
    },
    /// A deliberate code corruption (fault injection) asked for a place that is not the code
    /// of a live, loaded crate.
    #[error("cannot tamper with {0}")]
    NotCode(String),
    /// The memory provider failed.
    #[error("memory: {0}")]
    Memory(#[from] crate::memory::MemoryError),
    /// A symbol looked up by name does not exist.
    #[error("no symbol {0}")]
    NoSuchSymbol(String),
    /// Bad text in a symbol file.
    #[error("symbol file line {line}: {detail}")]
    SymbolFile {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        detail: &'static str,
    },
}

fn list(items: &[String]) -> String {
    let mut s = String::new();
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('`');
        s.push_str(it);
        s.push('`');
    }
    s
}
