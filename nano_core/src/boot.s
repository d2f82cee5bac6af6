/* Multiboot headers and the 32-bit → 64-bit trampoline (AT&T syntax).
 *
 * Both loaders enter `_start` in 32-bit protected mode with paging off, eax = magic and
 * ebx = physical address of the boot information. We build boot page tables that map the first
 * GiB twice (identity, and at KERNEL_VMA for the higher half), enable PAE, long mode, NX and SSE,
 * and jump to `nano_core_entry(magic, info)` in the higher half. Rust replaces these tables with
 * W^X ones (src/paging.rs) before anything else is loaded. */

.set KERNEL_VMA, 0xFFFFFFFF80000000
.set MB1_MAGIC, 0x1BADB002
/* bit 0: page-align modules; bit 1: memory map; bit 16: a.out kludge address fields are valid */
.set MB1_FLAGS, 0x00010003
.set MB2_MAGIC, 0xE85250D6

.section .multiboot_header, "a"
.balign 8
mb2_header:
    .long MB2_MAGIC
    .long 0                                   /* architecture: i386 protected mode */
    .long mb2_header_end - mb2_header
    .long -(MB2_MAGIC + (mb2_header_end - mb2_header))
    .balign 8
    .short 0, 0                               /* end tag */
    .long 8
mb2_header_end:

.balign 4
mb1_header:
    .long MB1_MAGIC
    .long MB1_FLAGS
    .long -(MB1_MAGIC + MB1_FLAGS)
    .long mb1_header                          /* header_addr */
    .long __kernel_phys_start                 /* load_addr */
    .long __load_end_phys                     /* load_end_addr */
    .long __bss_end_phys                      /* bss_end_addr */
    .long _start                              /* entry_addr */

.section .boot.text, "ax"
.code32
.global _start
_start:
    cli
    cld
    mov %eax, %edi                            /* first argument: magic */
    mov %ebx, %esi                            /* second argument: info */

    /* Long mode available? (cpuid 0x80000001, edx bit 29) — otherwise hang with a message. */
    mov $0x80000000, %eax
    cpuid
    cmp $0x80000001, %eax
    jb no_long_mode
    mov $0x80000001, %eax
    cpuid
    test $(1 << 29), %edx
    jz no_long_mode

    /* P4[0] = P4[511] = P3; P3[0] = P3[510] = P2; P2 maps 1 GiB with 2 MiB pages. */
    mov $boot_p3, %eax
    or $0x3, %eax
    mov %eax, boot_p4
    mov %eax, boot_p4 + 511 * 8
    mov $boot_p2, %eax
    or $0x3, %eax
    mov %eax, boot_p3
    mov %eax, boot_p3 + 510 * 8
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax                            /* present, writable, huge */
    mov %eax, boot_p2(, %ecx, 8)
    inc %ecx
    cmp $512, %ecx
    jne 1b

    mov $boot_p4, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $((1 << 5) | (1 << 9) | (1 << 10)), %eax  /* PAE, OSFXSR, OSXMMEXCPT */
    mov %eax, %cr4
    mov $0xC0000080, %ecx                     /* EFER */
    rdmsr
    or $((1 << 8) | (1 << 11)), %eax          /* LME, NXE */
    wrmsr
    mov %cr0, %eax
    and $~(1 << 2), %eax                      /* EM off: SSE instructions must not trap */
    or $((1 << 31) | (1 << 16) | (1 << 1) | 1), %eax  /* PG, WP, MP, PE */
    mov %eax, %cr0

    lgdt boot_gdt_ptr
    ljmp $0x08, $long_mode

no_long_mode:
    /* "NO64" on COM1, then halt. */
    mov $0x3F8, %dx
    mov $'N', %al
    out %al, %dx
    mov $'O', %al
    out %al, %dx
    mov $'6', %al
    out %al, %dx
    mov $'4', %al
    out %al, %dx
2:  hlt
    jmp 2b

.code64
long_mode:
    xor %eax, %eax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ax, %fs
    mov %ax, %gs
    movabs $__stack_top, %rsp
    xor %ebp, %ebp                            /* end of the frame-pointer chain */
    movabs $nano_core_entry, %rax
    call *%rax
3:  hlt
    jmp 3b

.section .boot.data, "aw"
.balign 16
boot_gdt:
    .quad 0
    .quad 0x00209A0000000000                  /* 64-bit code */
    .quad 0x0000920000000000                  /* data */
boot_gdt_end:
boot_gdt_ptr:
    .short boot_gdt_end - boot_gdt - 1
    .long boot_gdt

.section .boot.page_tables, "aw"
.balign 4096
boot_p4: .fill 4096, 1, 0
boot_p3: .fill 4096, 1, 0
boot_p2: .fill 4096, 1, 0
