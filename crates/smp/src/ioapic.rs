//! The I/O APIC: routes ISA interrupts to the boot CPU's local APIC. Two uses so far:
//! - the PIT's line as a non-maskable interrupt, which is how the watchdog sees a CPU that runs
//!   with interrupts off (the PIT's ticks reach the 8259 PIC as the timer and the I/O APIC as
//!   an NMI: on a PC both are wired to the ISA lines);
//! - the serial ports' receive interrupts as ordinary vectors ([`route_isa_irq`]), masked at
//!   the PIC.

use crate::acpi_tables::topology;
use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering};
use nano_core::paging::{self, Perms};

/// Where an ISA interrupt was routed (as an NMI or to a vector).
#[derive(Debug, Clone, Copy)]
pub struct IsaRoute {
    /// The ISA IRQ.
    pub irq: u8,
    /// The global system interrupt it arrives at.
    pub gsi: u32,
    /// The I/O APIC input (redirection entry) programmed.
    pub input: u32,
    /// The local APIC id of the CPU that receives the NMI.
    pub apic_id: u32,
}

/// The mapped registers of the I/O APIC the route uses (0: none yet).
static IOAPIC_VA: AtomicU64 = AtomicU64::new(0);
/// The physical address mapped at [`IOAPIC_VA`].
static IOAPIC_PHYS: AtomicU64 = AtomicU64::new(0);

/// An I/O APIC's two registers: a selector and a window onto the selected register.
struct IoApic {
    base: u64,
}

impl IoApic {
    const VERSION: u32 = 1;

    fn read(&self, reg: u32) -> u32 {
        // SAFETY: `base` maps the I/O APIC's register page (uncached device memory); the
        // selector at +0 and the window at +0x10 are 32-bit registers. Interrupts are off in
        // the callers, so the select-then-access pair is not interleaved on this CPU.
        unsafe {
            (self.base as *mut u32).write_volatile(reg);
            ((self.base + 0x10) as *const u32).read_volatile()
        }
    }

    fn write(&self, reg: u32, v: u32) {
        // SAFETY: as in `read`.
        unsafe {
            (self.base as *mut u32).write_volatile(reg);
            ((self.base + 0x10) as *mut u32).write_volatile(v)
        }
    }

    /// Maps the I/O APIC at `phys` once (a second route to the same one reuses the mapping).
    fn at(phys: u64) -> Result<IoApic, String> {
        if IOAPIC_PHYS.load(Ordering::Acquire) == phys && IOAPIC_VA.load(Ordering::Acquire) != 0 {
            return Ok(IoApic { base: IOAPIC_VA.load(Ordering::Acquire) });
        }
        let va = paging::alloc_region(1).map_err(|e| format!("address space for the I/O APIC: {e}"))?;
        paging::map(va, phys, Perms::ReadWrite).map_err(|e| format!("mapping the I/O APIC: {e}"))?;
        IOAPIC_VA.store(va, Ordering::Release);
        IOAPIC_PHYS.store(phys, Ordering::Release);
        Ok(IoApic { base: va })
    }
}

/// MPS INTI flags: trigger mode level (bits 2–3 = 0b11).
const LEVEL: u16 = 0b1100;
/// MPS INTI flags: polarity active low (bits 0–1 = 0b11).
const ACTIVE_LOW: u16 = 0b11;
/// Redirection entry: delivery mode NMI.
const DELIVERY_NMI: u32 = 0b100 << 8;
/// Redirection entry: input active low.
const POLARITY_LOW: u32 = 1 << 13;
/// Redirection entry: masked.
const MASKED: u32 = 1 << 16;

/// Routes ISA interrupt `irq` to the boot CPU as an NMI (edge-triggered, as an NMI must be), at
/// the I/O APIC input the MADT gives for it. The boot CPU's local APIC is software-enabled if
/// it was not, so that it accepts the message.
pub fn route_isa_irq_as_nmi(irq: u8) -> Result<IsaRoute, String> {
    route(irq, DELIVERY_NMI)
}

/// Routes ISA interrupt `irq` to the boot CPU at `vector` (fixed delivery, edge-triggered as
/// ISA lines are unless the MADT says otherwise), at the I/O APIC input the MADT gives for it.
/// The handler must be in the IDT first, and it must signal the end of interrupt to the local
/// APIC (`nano_core`'s serial handlers do).
pub fn route_isa_irq(irq: u8, vector: u8) -> Result<IsaRoute, String> {
    if vector < 48 {
        return Err(format!("vector {vector} is an exception's or the 8259 PICs'"));
    }
    route(irq, u32::from(vector))
}

fn route(irq: u8, delivery: u32) -> Result<IsaRoute, String> {
    let topo = topology().map_err(|e| format!("{e}"))?;
    let (gsi, flags) = topo.isa_overrides.iter().find(|o| o.irq == irq).map_or((u32::from(irq), 0), |o| (o.gsi, o.flags));
    if flags & LEVEL == LEVEL {
        // An NMI must be edge-triggered; a level-triggered line would also need a different
        // end of interrupt. Neither is what ISA lines are on the machines we run on.
        return Err(format!("ISA IRQ {irq} is level-triggered (GSI {gsi}); only edge-triggered lines are routed"));
    }
    let io = topo
        .ioapics
        .iter()
        .filter(|io| io.gsi_base <= gsi)
        .max_by_key(|io| io.gsi_base)
        .ok_or_else(|| format!("no I/O APIC in the MADT serves GSI {gsi}"))?;
    let apic = IoApic::at(io.phys)?;
    let input = gsi - io.gsi_base;
    let inputs = ((apic.read(IoApic::VERSION) >> 16) & 0xFF) + 1;
    if input >= inputs {
        return Err(format!("GSI {gsi} is input {input} of an I/O APIC with {inputs}"));
    }
    crate::enable_boot_lapic(topo.lapic_phys)?;
    let apic_id = core::arch::x86_64::__cpuid(1).ebx >> 24;
    let low = delivery | if flags & 0b11 == ACTIVE_LOW { POLARITY_LOW } else { 0 };
    x86_64::instructions::interrupts::without_interrupts(|| {
        // Destination first, then the unmasking low half.
        apic.write(0x10 + 2 * input, MASKED);
        apic.write(0x11 + 2 * input, apic_id << 24);
        apic.write(0x10 + 2 * input, low);
    });
    Ok(IsaRoute { irq, gsi, input, apic_id })
}

/// Masks the input of `route` again (the watchdog switched off).
pub fn unroute(route: &IsaRoute) {
    let base = IOAPIC_VA.load(Ordering::Acquire);
    if base != 0 {
        x86_64::instructions::interrupts::without_interrupts(|| IoApic { base }.write(0x10 + 2 * route.input, MASKED));
    }
}
