/*
 * Tiny SMP test firmware: what tiny.c shares with the scenario files
 * (vblk.c).  Everything runs in 32-bit flat mode, linear == physical.
 */
#ifndef TINY_H
#define TINY_H
#include <stdint.h>
#include <stdbool.h>

#define MAX_CPUS     64
#define NBUCKETS     512         /* 32 octaves of TSC cycles, 16 steps each */

struct cpu_result {
    uint64_t count;
    uint64_t tsc;
    uint64_t hist[NBUCKETS];
    uint32_t errors;
    uint32_t done;
};

/* tiny.c */
extern struct cpu_result result[MAX_CPUS];
extern uint32_t apic_id_of[MAX_CPUS];
extern uint32_t ncpus;
extern uint64_t tsc_khz;
extern uint64_t idt[256];
void putc(char c);
void puts(const char *s);
void putu(uint64_t v);
void puthex(uint32_t v);
void __attribute__((noreturn)) finish(bool pass, const char *why);
const char *arg(const char *key);
bool arg_is(const char *key, const char *val);
uint64_t arg_num(const char *key, uint64_t dflt);
uint32_t pci_read(int dev, int fn, int reg);
void pci_write(int dev, int fn, int reg, uint32_t v);
int bucket_of(uint64_t cycles);
void *memset(void *d, int c, unsigned n);

/* vblk.c: scenario=vblk, a virtio 1.x virtio-blk-pci driver */
bool vblk_parse(void);                 /* BSP, before the APs start */
void vblk_setup(void);                 /* BSP, after the APs are up */
void vblk_run(uint32_t me);            /* every vCPU */
void vblk_report(uint32_t cpu);        /* extra fields of a RESULT line */
void __attribute__((noreturn)) vblk_finish(void);   /* BSP, after report() */

#endif
