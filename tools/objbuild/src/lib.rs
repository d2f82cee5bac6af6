//! The one place that knows how Delos crate objects are built.
//!
//! Every crate object loaded into a running Delos must come from one cargo invocation with
//! exactly these settings: symbol hashes differ between separate builds, and the loader links by
//! exact (then hash-agnostic) symbol names. `tools/imgtool` (the boot image) and `modtool build`
//! (a user's own crates, fixtures) both call [`build`], so the flags cannot drift apart.
//!
//! Settings: nightly, `-Z build-std=core,alloc` with the `compiler-builtins-mem` feature, the
//! custom target `nano_core/x86_64-delos.json` (code model large, relocation model static,
//! panic=unwind, soft-float, frame pointers), `--release` with `codegen-units=1` (one object per
//! crate), and `RUSTFLAGS=--emit=obj,link -Z share-generics=no`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// `Cargo.toml` of the workspace or package.
    pub manifest: PathBuf,
    /// Packages to build (`-p`); empty means the manifest's default.
    pub packages: Vec<String>,
    /// Cargo target directory for this build.
    pub target_dir: PathBuf,
    /// The target JSON.
    pub target_json: PathBuf,
}

/// One crate's object from a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateObject {
    /// Crate name (underscores), e.g. `compiler_builtins`.
    pub name: String,
    /// The build hash cargo gave it.
    pub hash: String,
    /// Path of `<name>-<hash>.o`.
    pub path: PathBuf,
}

impl CrateObject {
    /// `<name>-<hash>.o`, the file name used in images and object directories.
    pub fn file_name(&self) -> String {
        format!("{}-{}.o", self.name, self.hash)
    }
}

/// What a build produced.
#[derive(Debug, Clone, Default)]
pub struct Built {
    /// Library objects, keyed by `<name>-<hash>`.
    pub objects: BTreeMap<String, CrateObject>,
    /// Linked executables by target name (nano_core).
    pub executables: BTreeMap<String, PathBuf>,
}

impl Built {
    /// The objects of crate `name` (several if two versions were built).
    pub fn by_name(&self, name: &str) -> Vec<&CrateObject> {
        self.objects.values().filter(|o| o.name == name).collect()
    }
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// cargo could not be started.
    #[error("cannot run cargo: {0}")]
    Spawn(#[source] std::io::Error),
    /// cargo reported failure (its diagnostics were printed).
    #[error("cargo build failed ({0})")]
    Failed(std::process::ExitStatus),
    /// cargo said it built an rlib, but the object beside it is missing.
    #[error("object {0} missing after build (was RUSTFLAGS overridden?)")]
    MissingObject(PathBuf),
}

/// The RUSTFLAGS every kernel object is built with.
pub const RUSTFLAGS: &str = "--emit=obj,link -Z share-generics=no";

/// The repository root (this crate lives in `tools/objbuild`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap_or_else(|_| PathBuf::from("."))
}

/// The kernel target JSON in this repository.
pub fn target_json() -> PathBuf {
    repo_root().join("nano_core/x86_64-delos.json")
}

/// Runs the build and collects every crate object.
pub fn build(spec: &BuildSpec) -> Result<Built, BuildError> {
    let mut cmd = Command::new("cargo");
    cmd.arg("+nightly")
        .arg("build")
        .arg("--release")
        .arg("--manifest-path")
        .arg(&spec.manifest)
        .args(["--config", "profile.release.codegen-units=1"])
        .args(["--config", "profile.release.panic=\"unwind\""])
        .args(["--config", "profile.release.incremental=false"])
        .args(["--config", "profile.release.debug=\"line-tables-only\""])
        .args(["--config", "profile.release.lto=false"])
        .args(["-Z", "build-std=core,alloc", "-Z", "build-std-features=compiler-builtins-mem", "-Z", "json-target-spec"])
        .arg("--target")
        .arg(&spec.target_json)
        .arg("--message-format=json-render-diagnostics")
        .env("RUSTFLAGS", RUSTFLAGS)
        .env("CARGO_TARGET_DIR", &spec.target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for p in &spec.packages {
        cmd.arg("-p").arg(p);
    }
    let mut child = cmd.spawn().map_err(BuildError::Spawn)?;
    let mut built = Built::default();
    let stdout = child.stdout.take().ok_or_else(|| BuildError::Spawn(std::io::Error::other("no stdout")))?;
    let mut pending = Vec::new();
    // Host artifacts (proc macros and their dependencies) land outside the target's directory.
    let target_dir_name = spec.target_json.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let kinds: Vec<&str> = msg["target"]["kind"].as_array().map(|a| a.iter().filter_map(|k| k.as_str()).collect()).unwrap_or_default();
        let name = msg["target"]["name"].as_str().unwrap_or_default().replace('-', "_");
        if kinds.contains(&"bin") {
            if let Some(exe) = msg["executable"].as_str() {
                built.executables.insert(name.clone(), PathBuf::from(exe));
            }
            continue;
        }
        if kinds.iter().any(|k| *k == "custom-build" || *k == "proc-macro") {
            continue;
        }
        for f in msg["filenames"].as_array().into_iter().flatten().filter_map(|f| f.as_str()) {
            let p = Path::new(f);
            if !p.components().any(|c| c.as_os_str() == target_dir_name.as_str()) {
                continue;
            }
            let Some(stem) = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("lib"))
                .and_then(|n| n.strip_suffix(".rlib").or_else(|| n.strip_suffix(".rmeta")))
            else {
                continue;
            };
            let Some((crate_name, hash)) = stem.rsplit_once('-') else { continue };
            let obj = p.with_file_name(format!("{stem}.o"));
            if pending.iter().any(|o: &CrateObject| o.path == obj) {
                continue;
            }
            pending.push(CrateObject { name: crate_name.to_string(), hash: hash.to_string(), path: obj });
        }
    }
    let status = child.wait().map_err(BuildError::Spawn)?;
    if !status.success() {
        return Err(BuildError::Failed(status));
    }
    for o in pending {
        if !o.path.exists() {
            return Err(BuildError::MissingObject(o.path));
        }
        built.objects.insert(format!("{}-{}", o.name, o.hash), o);
    }
    Ok(built)
}
