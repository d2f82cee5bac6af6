//! vfs: the kernel's files as `path::Path`s, read-only.
//!
//! ```text
//! /namespaces/<ns>/<file>.o            objects in a namespace's directory (loadable)
//! /namespaces/<ns>/updates/<file>.o    new versions for swap (from the image or make push)
//! /namespaces/<ns>/crates/<crate>      loaded crates (size, sections) — not readable
//! /boot/<path>                         every file of the boot image (manifests, nano_core.syms)
//! ```
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use path::{Component, Path, PathBuf};

/// A directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its name.
    pub name: String,
    /// Whether it is a directory.
    pub dir: bool,
    /// Size in bytes (files).
    pub size: usize,
}

/// What a path names.
pub enum Node {
    /// A directory and its entries.
    Dir(Vec<Entry>),
    /// A file and its bytes.
    File(&'static [u8]),
    /// A file that exists but is not kept as bytes here (loaded crates, pushed objects).
    Opaque(usize),
}

fn dir(name: &str) -> Entry {
    Entry { name: name.to_string(), dir: true, size: 0 }
}

/// Normalizes `p` against the root: `.` dropped, `..` climbs (never above `/`).
pub fn normalize(p: &Path) -> PathBuf {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                parts.pop();
            }
            Component::Normal(n) => parts.push(n),
        }
    }
    let mut out = PathBuf::from("/");
    for part in parts {
        out.push(part);
    }
    out
}

/// Looks a path up.
pub fn lookup(p: &Path) -> Result<Node, String> {
    let p = normalize(p);
    let parts: Vec<&str> = p.iter().skip(1).collect();
    let modules = &nano_core::kernel::boot_state().modules;
    match parts.as_slice() {
        [] => Ok(Node::Dir(alloc::vec![dir("boot"), dir("namespaces")])),
        ["boot", rest @ ..] => {
            let prefix = rest.join("/");
            if let Some(m) = modules.iter().find(|m| m.name == prefix) {
                return Ok(Node::File(m.data));
            }
            let mut entries: Vec<Entry> = Vec::new();
            let want = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
            for m in modules.iter().filter(|m| m.name.starts_with(&want)) {
                let rest = &m.name[want.len()..];
                match rest.split_once('/') {
                    Some((d, _)) => {
                        if !entries.iter().any(|e| e.name == d) {
                            entries.push(dir(d));
                        }
                    }
                    None => entries.push(Entry { name: rest.to_string(), dir: false, size: m.data.len() }),
                }
            }
            if entries.is_empty() { Err(format!("{}: no such file or directory", p.display())) } else { Ok(Node::Dir(entries)) }
        }
        ["namespaces", rest @ ..] => nano_core::kernel::with_loader_ref(|l| {
            let names: Vec<String> = l.namespaces().filter(|n| !n.name.starts_with("swap:")).map(|n| n.name.clone()).collect();
            let missing = || format!("{}: no such file or directory", p.display());
            match rest {
                [] => Ok(Node::Dir(names.iter().map(|n| dir(n)).collect())),
                [ns, tail @ ..] => {
                    let id = l.namespace_by_name(ns).map_err(|_| missing())?;
                    let n = l.namespace(id).ok_or_else(missing)?;
                    match tail {
                        [] => {
                            let mut v = alloc::vec![dir("crates"), dir("updates")];
                            v.extend(n.files().map(|(f, s)| Entry { name: f.clone(), dir: false, size: s }));
                            Ok(Node::Dir(v))
                        }
                        ["updates"] => {
                            Ok(Node::Dir(n.update_files().map(|(f, s)| Entry { name: f.clone(), dir: false, size: s }).collect()))
                        }
                        ["updates", f] => n.update_files().find(|(g, _)| g == f).map(|(_, s)| Node::Opaque(s)).ok_or_else(missing),
                        ["crates"] => Ok(Node::Dir(
                            n.crates
                                .values()
                                .filter_map(|c| l.krate(*c))
                                .map(|k| Entry { name: k.name.clone(), dir: false, size: k.memory_size() })
                                .collect(),
                        )),
                        ["crates", c] => {
                            n.crates.get(*c).and_then(|c| l.krate(*c)).map(|k| Node::Opaque(k.memory_size())).ok_or_else(missing)
                        }
                        [f] => n.files().find(|(g, _)| g == f).map(|(_, s)| Node::Opaque(s)).ok_or_else(missing),
                        _ => Err(missing()),
                    }
                }
            }
        }),
        _ => Err(format!("{}: no such file or directory", p.display())),
    }
}
