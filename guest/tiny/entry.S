/*
 * Tiny SMP test firmware: reset vector, real -> 32-bit flat protected mode,
 * AP trampoline, and the IPI handler.
 *
 * kvm_pvm emulates every instruction outside 64-bit CPL3 and cannot emulate
 * a protected-mode IRET, so the handler returns with RET after dropping the
 * CS/EFLAGS words of the frame (it only ever interrupts STI;HLT/PAUSE
 * windows, where the arithmetic flags are dead and IF is set again by the
 * caller).  The GDT lives in ROM with its "accessed" bits preset, else the
 * CPU would try to write them and spin.
 */
#define STACK_BASE  0x200000
#define STACK_SHIFT 14
#define LAPIC_EOI   0xfee000b0

    .section .text.start, "ax"
    .code16
    .globl start16
start16:
    cli
    cld
    mov     $0xf000, %ax
    mov     %ax, %ds
    lgdtl   gdt_desc16
    mov     %cr0, %eax
    or      $1, %eax
    mov     %eax, %cr0
    ljmpl   $0x08, $start32

    .code32
start32:
    mov     $0x10, %ax
    mov     %ax, %ds
    mov     %ax, %es
    mov     %ax, %ss
    mov     %ax, %fs
    mov     %ax, %gs
    mov     $(STACK_BASE + (1 << STACK_SHIFT)), %esp
    /* RAM is not cleared by system_reset: zero .bss ourselves. */
    mov     $__bss_start, %edi
    mov     $__bss_end, %ecx
    sub     %edi, %ecx
    xor     %eax, %eax
    rep stosb
    call    bsp_main
1:  cli
    hlt
    jmp     1b

    .globl ap_start32
ap_start32:
    mov     $0x10, %ax
    mov     %ax, %ds
    mov     %ax, %es
    mov     %ax, %ss
    mov     %ax, %fs
    mov     %ax, %gs
    mov     $1, %eax
    lock xaddl %eax, ap_next_index
    mov     %eax, %ecx
    inc     %ecx
    shl     $STACK_SHIFT, %ecx
    add     $STACK_BASE, %ecx
    mov     %ecx, %esp
    push    %eax
    call    ap_main
1:  cli
    hlt
    jmp     1b

/* Fixed-vector IPI: count it for this CPU, EOI, return without IRET. */
    .globl ipi_handler
ipi_handler:
    push    %eax
    mov     0xfee00020, %eax        /* LAPIC ID register */
    shr     $24, %eax
    incl    ipi_count(,%eax,4)
    movl    $0, LAPIC_EOI
    mov     4(%esp), %eax           /* frame: eax, eip, cs, eflags */
    mov     %eax, 12(%esp)          /* eflags slot := eip */
    pop     %eax
    add     $8, %esp
    ret

    .section .rodata.gdt, "a"
    .align 8
gdt:
    .quad   0
    .quad   0x00cf9b000000ffff      /* 0x08: code, flat, accessed */
    .quad   0x00cf93000000ffff      /* 0x10: data, flat, accessed */
gdt_end:
    .globl gdt_desc
gdt_desc:
    .word   gdt_end - gdt - 1
    .long   gdt

/* Copied to 0x8000 by the BSP; SIPI vector 0x08 starts APs here. */
    .section .tramp, "ax"
    .code16
    .globl ap_tramp
ap_tramp:
    cli
    cld
    mov     $0xf000, %ax
    mov     %ax, %ds
    lgdtl   gdt_desc16
    mov     %cr0, %eax
    or      $1, %eax
    mov     %eax, %cr0
    ljmpl   $0x08, $ap_start32

    .section .reset, "ax"
    .code16
    .globl reset
reset:
    ljmp    $0xf000, $start16_off
    .balign 16, 0xf4
    .section .note.GNU-stack,"",@progbits
