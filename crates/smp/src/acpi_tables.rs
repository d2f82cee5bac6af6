//! Reading the MADT through the `acpi` crate: where the RSDP is, and a handler that maps
//! physical memory for it.

use acpi::sdt::madt::{Madt, MadtEntry};
use acpi::{AcpiTables, Handler, PciAddress, PhysicalMapping};
use alloc::vec::Vec;
use core::ptr::NonNull;
use nano_core::paging::{self, PAGE, Perms};

/// What the MADT says about the CPUs.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Physical address of the local APICs' registers.
    pub lapic_phys: u64,
    /// Local APIC ids of the enabled (or online-capable) processors, in MADT order.
    pub apic_ids: Vec<u32>,
    /// The I/O APICs.
    pub ioapics: Vec<IoApicInfo>,
    /// Where ISA interrupts arrive when not at the I/O APIC input of their own number.
    pub isa_overrides: Vec<IsaOverride>,
}

/// One I/O APIC, as the MADT describes it.
#[derive(Debug, Clone, Copy)]
pub struct IoApicInfo {
    /// Physical address of its registers.
    pub phys: u64,
    /// The global system interrupt of its first input.
    pub gsi_base: u32,
}

/// An ISA interrupt that arrives at another global system interrupt (on PCs the PIT's IRQ 0
/// arrives at GSI 2), with its MPS flags (polarity in bits 0–1, trigger mode in bits 2–3).
#[derive(Debug, Clone, Copy)]
pub struct IsaOverride {
    /// The ISA IRQ.
    pub irq: u8,
    /// Where it arrives.
    pub gsi: u32,
    /// MPS INTI flags.
    pub flags: u16,
}

/// Why the CPUs could not be found.
#[derive(Debug)]
pub enum TopologyError {
    /// No RSDP in the BIOS areas.
    NoRsdp,
    /// The ACPI tables were refused (the `acpi` crate's reason).
    Acpi(acpi::AcpiError),
    /// No MADT.
    NoMadt,
}

impl core::fmt::Display for TopologyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TopologyError::NoRsdp => write!(f, "no ACPI RSDP in the EBDA or the BIOS area"),
            TopologyError::Acpi(e) => write!(f, "ACPI tables: {e:?}"),
            TopologyError::NoMadt => write!(f, "no MADT (APIC) table"),
        }
    }
}

/// Handler methods the `acpi` crate requires but reading the MADT never calls.
macro_rules! not_needed {
    ($($name:ident($($arg:ty),*) $(-> $ret:ty)?;)*) => {
        $(
            fn $name(&self, $(_: $arg),*) $(-> $ret)? {
                unimplemented!(concat!("ACPI ", stringify!($name), ": not needed to read the MADT"))
            }
        )*
    };
}

/// Maps physical memory read-only into fresh kernel address space for the `acpi` crate (the
/// tables may lie outside the physical map, in firmware-reserved memory).
#[derive(Debug, Clone, Copy)]
struct Mapper;

impl Handler for Mapper {
    unsafe fn map_physical_region<T>(&self, physical_address: usize, size: usize) -> PhysicalMapping<Self, T> {
        let phys = physical_address as u64;
        let first = phys & !(PAGE - 1);
        let pages = (phys + size as u64 - first).div_ceil(PAGE);
        let va = paging::alloc_region(pages).expect("address space for an ACPI table");
        for i in 0..pages {
            // A firmware page: mapped, never freed (not a frame of ours).
            paging::map(va + i * PAGE, first + i * PAGE, Perms::Read).expect("mapping an ACPI table");
        }
        let virt = va + (phys - first);
        PhysicalMapping {
            physical_start: physical_address,
            virtual_start: NonNull::new(virt as *mut T).expect("a kernel address is never null"),
            region_length: size,
            mapped_length: (pages * PAGE) as usize,
            handler: *self,
        }
    }

    fn unmap_physical_region<T>(region: &PhysicalMapping<Self, T>) {
        let virt = region.virtual_start.as_ptr() as u64;
        let first = virt & !(PAGE - 1);
        for i in 0..(region.mapped_length as u64 / PAGE) {
            // The frame is firmware memory: only the mapping goes.
            let _ = paging::unmap(first + i * PAGE);
        }
    }

    // The MADT needs none of these (no AML is run).
    not_needed! {
        read_u8(usize) -> u8; read_u16(usize) -> u16; read_u32(usize) -> u32; read_u64(usize) -> u64;
        write_u8(usize, u8); write_u16(usize, u16); write_u32(usize, u32); write_u64(usize, u64);
        read_io_u8(u16) -> u8; read_io_u16(u16) -> u16; read_io_u32(u16) -> u32;
        write_io_u8(u16, u8); write_io_u16(u16, u16); write_io_u32(u16, u32);
        read_pci_u8(PciAddress, u16) -> u8; read_pci_u16(PciAddress, u16) -> u16; read_pci_u32(PciAddress, u16) -> u32;
        write_pci_u8(PciAddress, u16, u8); write_pci_u16(PciAddress, u16, u16); write_pci_u32(PciAddress, u16, u32);
    }

    fn nanos_since_boot(&self) -> u64 {
        nano_core::time::micros_since_entry() * 1000
    }
    fn stall(&self, microseconds: u64) {
        crate::spin_us(microseconds);
    }
    fn sleep(&self, milliseconds: u64) {
        crate::spin_us(milliseconds * 1000);
    }
}

/// The RSDP: its signature on a 16-byte boundary in the first KiB of the EBDA or in
/// 0xE0000..0x100000, with a valid checksum over its first 20 bytes. Read through the physical
/// map (low memory is RAM or ROM the firmware left there).
fn find_rsdp() -> Option<u64> {
    let read = |phys: u64, len: usize| -> &'static [u8] {
        // SAFETY: the physical map covers the first MiB (RAM and ROM, readable); the bytes are
        // only read.
        unsafe { core::slice::from_raw_parts(paging::phys_to_virt(phys).as_ptr::<u8>(), len) }
    };
    let ebda = u64::from(u16::from_le_bytes([read(0x40E, 2)[0], read(0x40E, 2)[1]])) << 4;
    let areas = [(ebda, ebda + 1024), (0xE0000, 0x100000)];
    areas.into_iter().filter(|(s, _)| *s >= 0x400).find_map(|(start, end)| {
        (start..end).step_by(16).find(|&a| {
            let b = read(a, 20);
            &b[..8] == b"RSD PTR " && b.iter().fold(0u8, |s, x| s.wrapping_add(*x)) == 0
        })
    })
}

/// Reads the CPUs and the local APIC address from the MADT.
pub fn topology() -> Result<Topology, TopologyError> {
    let rsdp = find_rsdp().ok_or(TopologyError::NoRsdp)?;
    // SAFETY: `rsdp` holds a checksummed RSDP (checked above).
    let tables = unsafe { AcpiTables::from_rsdp(Mapper, rsdp as usize) }.map_err(TopologyError::Acpi)?;
    let madt = tables.find_table::<Madt>().ok_or(TopologyError::NoMadt)?;
    let madt = madt.get();
    let mut lapic_phys = u64::from(madt.local_apic_address);
    let mut apic_ids = Vec::new();
    let mut ioapics = Vec::new();
    let mut isa_overrides = Vec::new();
    for e in madt.entries() {
        match e {
            // Bit 0: enabled; bit 1: online capable.
            MadtEntry::LocalApic(l) if l.flags & 0b11 != 0 => apic_ids.push(u32::from(l.apic_id)),
            MadtEntry::LocalX2Apic(l) if l.flags & 0b11 != 0 => apic_ids.push(l.x2apic_id),
            MadtEntry::LocalApicAddressOverride(o) => lapic_phys = o.local_apic_address,
            MadtEntry::IoApic(io) => {
                ioapics.push(IoApicInfo { phys: u64::from(io.io_apic_address), gsi_base: io.global_system_interrupt_base })
            }
            MadtEntry::InterruptSourceOverride(o) if o.bus == 0 => {
                isa_overrides.push(IsaOverride { irq: o.irq, gsi: o.global_system_interrupt, flags: o.flags })
            }
            _ => {}
        }
    }
    Ok(Topology { lapic_phys, apic_ids, ioapics, isa_overrides })
}
