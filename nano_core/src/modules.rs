//! Boot modules as (name, bytes), read from the archive module the image carries.

use alloc::string::String;
use alloc::vec::Vec;
use boot_info::BootInfo;

/// One file from the boot image.
#[derive(Debug, Clone)]
pub struct BootModule {
    /// Path inside the image, e.g. `namespaces/kernel/core.o`.
    pub name: String,
    /// The file's bytes, in the physical-memory map (reserved for the kernel's lifetime).
    pub data: &'static [u8],
}

/// Why the modules could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModuleError {
    /// A module lies outside mapped physical memory.
    #[error("module {name} at {start:#x}..{end:#x} is outside physical memory")]
    OutOfRange {
        /// The module's name.
        name: String,
        /// Start address.
        start: u64,
        /// End address.
        end: u64,
    },
    /// The archive is malformed.
    #[error("module {name}: {source}")]
    Archive {
        /// The module's name.
        name: String,
        /// What is wrong.
        source: boot_info::Error,
    },
}

/// Expands every `.tar` boot module into its files; other modules are kept as they are.
pub fn collect(bi: &BootInfo, phys_end: u64) -> Result<Vec<BootModule>, ModuleError> {
    let mut out = Vec::new();
    for m in &bi.modules {
        if m.end > phys_end {
            return Err(ModuleError::OutOfRange { name: m.name.as_str().into(), start: m.start, end: m.end });
        }
        let len = (m.end - m.start) as usize;
        // SAFETY: the module's frames are reserved from the frame allocator for the kernel's
        // whole lifetime and lie inside the physical map (checked above); nothing writes them.
        let data: &'static [u8] = unsafe { core::slice::from_raw_parts(crate::paging::phys_to_virt(m.start).as_ptr::<u8>(), len) };
        let base = m.name.rsplit('/').next().unwrap_or("");
        if base.ends_with(".tar") {
            for e in boot_info::archive::entries(data) {
                let e = e.map_err(|source| ModuleError::Archive { name: m.name.as_str().into(), source })?;
                out.push(BootModule { name: e.name.into(), data: e.data });
            }
        } else {
            out.push(BootModule { name: base.into(), data });
        }
    }
    Ok(out)
}
