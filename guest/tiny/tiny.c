/*
 * Tiny SMP test firmware: each vCPU runs one scenario and the BSP reports
 * on the debug console (port 0xe9), then exits through isa-debug-exit.
 *
 * Arguments come from the fw_cfg file "opt/tiny/args", for example
 *   scenario=hammer target=port:0x80 op=outb count=100000
 *   scenario=hammer target=pmtimer secs=3
 *   scenario=hammer target=mmio:0xfed000f0 op=read32 count=50000
 *   scenario=halt count=1000          (HLT/wake ping-pong between vCPU pairs)
 *   scenario=ipi count=200            (IPI ping-pong, the waiter spins)
 *   scenario=vblk irq=msix count=1000 depth=4 bs=4096 mode=rw seed=1
 *                                     (virtio-blk-pci I/O, one queue per vCPU:
 *                                      vblk.c documents its keys and lines)
 * Named targets: port80 (outb 0x80), pmtimer (inl PMBASE+8), hpet (counter),
 * rtc (index 0x0a at 0x70, read 0x71, checks the UIP protocol), vga (planar
 * write and read-back at a byte of each vCPU's own; needs -device VGA), apic
 * (write and read back the vCPU's own local APIC's TPR: MMIO at 0xfee00080).
 *
 * Output lines (all on the BSP, after every vCPU is done):
 *   TINY start cpus=N scenario=S ... tsc_khz=K
 *   RESULT scenario=S vcpu=I count=C tsc=T ns=NS rate=R p50_ns=.. p99_ns=..
 *   HIST vcpu=I lt_ns:count ...   (sixteenth-octave TSC buckets of sampled accesses,
 *                                  upper bound converted to ns)
 *   TOTAL scenario=S cpus=N count=C rate=R
 *   TINY PASS | TINY FAIL reason=...
 * Exit status of QEMU: 33 for PASS, 35 for FAIL (isa-debug-exit iobase 0xf4).
 */
#include "tiny.h"

#define SAMPLE_EVERY 64
#define IPI_VECTOR   0x40
#define PM_BASE      0x600
#define PM_TMR       (PM_BASE + 8)
#define PM_FREQ      3579545u
#define HPET_BASE    0xfed00000u
#define LAPIC_BASE   0xfee00000u
#define DEBUGCON     0xe9
#define DEBUG_EXIT   0xf4

/* ---- port and memory access ---- */
static inline void outb(uint16_t p, uint8_t v) { asm volatile("outb %0,%1" :: "a"(v), "Nd"(p)); }
static inline void outw(uint16_t p, uint16_t v) { asm volatile("outw %0,%1" :: "a"(v), "Nd"(p)); }
static inline void outl(uint16_t p, uint32_t v) { asm volatile("outl %0,%1" :: "a"(v), "Nd"(p)); }
static inline uint8_t inb(uint16_t p) { uint8_t v; asm volatile("inb %1,%0" : "=a"(v) : "Nd"(p)); return v; }
static inline uint16_t inw(uint16_t p) { uint16_t v; asm volatile("inw %1,%0" : "=a"(v) : "Nd"(p)); return v; }
static inline uint32_t inl(uint16_t p) { uint32_t v; asm volatile("inl %1,%0" : "=a"(v) : "Nd"(p)); return v; }
static inline uint32_t mmio_read32(uint32_t a) { return *(volatile uint32_t *)a; }
static inline void mmio_write32(uint32_t a, uint32_t v) { *(volatile uint32_t *)a = v; }
static inline uint64_t rdtsc(void) { uint32_t lo, hi; asm volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((uint64_t)hi << 32) | lo; }
static inline void pause(void) { asm volatile("pause" ::: "memory"); }
#define barrier() asm volatile("" ::: "memory")
#define READ_ONCE(x) (*(volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile __typeof__(x) *)&(x) = (v))

/* 64-bit division without libgcc (whose builds carry ENDBR32, which
 * kvm_pvm's emulator may not know).  Only used outside the hot loops. */
uint64_t __udivmoddi4(uint64_t n, uint64_t d, uint64_t *rem)
{
    uint64_t q = 0, r = 0;
    if (!(n >> 32) && !(d >> 32)) {
        if (rem) *rem = (uint32_t)n % (uint32_t)d;
        return (uint32_t)n / (uint32_t)d;
    }
    for (int i = 63; i >= 0; i--) {
        r = r << 1 | ((n >> i) & 1);
        if (r >= d) { r -= d; q |= 1ull << i; }
    }
    if (rem) *rem = r;
    return q;
}
uint64_t __udivdi3(uint64_t n, uint64_t d) { return __udivmoddi4(n, d, 0); }
uint64_t __umoddi3(uint64_t n, uint64_t d) { uint64_t r; __udivmoddi4(n, d, &r); return r; }

void *memset(void *d, int c, unsigned n) { char *p = d; while (n--) *p++ = c; return d; }
void *memcpy(void *d, const void *s, unsigned n) { char *p = d; const char *q = s; while (n--) *p++ = *q++; return d; }

/* ---- shared state (.bss: zeroed by entry.S, RAM survives system_reset) ---- */
uint32_t ap_next_index;              /* entry.S: lock xadd for AP stacks */
volatile uint32_t ipi_count[256];    /* by APIC ID, bumped by ipi_handler */
uint32_t apic_id_of[MAX_CPUS];
static volatile uint32_t cpus_up;
static volatile uint32_t go;
struct cpu_result result[MAX_CPUS];
uint64_t idt[256];
static char args[256];
uint32_t ncpus;
uint64_t tsc_khz;

extern void ipi_handler(void);
extern char ap_tramp[], __tramp_load[], __tramp_size[];

/* ---- console ---- */
void putc(char c) { outb(DEBUGCON, c); }
void puts(const char *s) { while (*s) putc(*s++); }
void putu(uint64_t v)
{
    char b[24];
    int i = 0;
    do { b[i++] = '0' + v % 10; v /= 10; } while (v);
    while (i) putc(b[--i]);
}
void puthex(uint32_t v)
{
    puts("0x");
    for (int s = 28; s >= 0; s -= 4) putc("0123456789abcdef"[(v >> s) & 15]);
}
void __attribute__((noreturn)) finish(bool pass, const char *why)
{
    if (pass) {
        puts("TINY PASS\n");
    } else {
        puts("TINY FAIL reason="); puts(why); putc('\n');
    }
    outl(DEBUG_EXIT, pass ? 0x10 : 0x11);
    for (;;) asm volatile("cli; hlt");
}

/* ---- arguments ---- */
static bool streq_n(const char *a, const char *b, unsigned n)
{
    while (n--) { if (*a != *b) return false; if (!*a) return true; a++; b++; }
    return true;
}
const char *arg(const char *key)
{
    unsigned kl = 0;
    while (key[kl]) kl++;
    for (const char *p = args; *p; ) {
        while (*p == ' ' || *p == ',') p++;
        if (streq_n(p, key, kl) && p[kl] == '=') return p + kl + 1;
        while (*p && *p != ' ' && *p != ',') p++;
    }
    return 0;
}
bool arg_is(const char *key, const char *val)
{
    const char *v = arg(key);
    unsigned n = 0;
    if (!v) return false;
    while (val[n]) { if (v[n] != val[n]) return false; n++; }
    return v[n] == 0 || v[n] == ' ' || v[n] == ',';
}
static uint64_t parse_num(const char *v)
{
    uint64_t n = 0;
    if (v[0] == '0' && v[1] == 'x') {
        for (v += 2; ; v++) {
            int d = (*v >= '0' && *v <= '9') ? *v - '0' :
                    (*v >= 'a' && *v <= 'f') ? *v - 'a' + 10 : -1;
            if (d < 0) break;
            n = n * 16 + d;
        }
    } else {
        for (; *v >= '0' && *v <= '9'; v++) n = n * 10 + *v - '0';
    }
    return n;
}
uint64_t arg_num(const char *key, uint64_t dflt)
{
    const char *v = arg(key);
    return v ? parse_num(v) : dflt;
}
static void put_arg_word(const char *v)
{
    while (*v && *v != ' ' && *v != ',') putc(*v++);
}

/* ---- fw_cfg (I/O port interface) ---- */
static void fw_cfg_select(uint16_t key) { outw(0x510, key); }
static uint32_t fw_cfg_be32(void) { uint32_t v = 0; for (int i = 0; i < 4; i++) v = v << 8 | inb(0x511); return v; }
static uint16_t fw_cfg_be16(void) { uint16_t v = inb(0x511) << 8; return v | inb(0x511); }
static void fw_cfg_read_args(void)
{
    fw_cfg_select(0x19);                       /* FW_CFG_FILE_DIR */
    uint32_t n = fw_cfg_be32();
    for (uint32_t i = 0; i < n; i++) {
        char name[56];
        uint32_t size = fw_cfg_be32();
        uint16_t sel = fw_cfg_be16();
        fw_cfg_be16();
        for (int j = 0; j < 56; j++) name[j] = inb(0x511);
        if (streq_n(name, "opt/tiny/args", 14)) {
            if (size > sizeof(args) - 1) size = sizeof(args) - 1;
            fw_cfg_select(sel);
            for (uint32_t j = 0; j < size; j++) args[j] = inb(0x511);
            args[size] = 0;
            return;
        }
    }
}
static uint32_t fw_cfg_ncpus(void)
{
    fw_cfg_select(0x05);                       /* FW_CFG_NB_CPUS, LE16 */
    uint32_t v = inb(0x511);
    return v | inb(0x511) << 8;
}

/* ---- chipset ---- */
uint32_t pci_read(int dev, int fn, int reg)
{
    outl(0xcf8, 0x80000000u | dev << 11 | fn << 8 | (reg & 0xfc));
    return inl(0xcfc);
}
void pci_write(int dev, int fn, int reg, uint32_t v)
{
    outl(0xcf8, 0x80000000u | dev << 11 | fn << 8 | (reg & 0xfc));
    outl(0xcfc, v);
}
/* PMBASE = 0x600 and enable the ACPI I/O space, on PIIX4 (pc) or ICH9 (q35). */
static void pm_enable(void)
{
    if (pci_read(0x1f, 0, 0) == 0x29188086) {
        pci_write(0x1f, 0, 0x40, PM_BASE | 1);
        pci_write(0x1f, 0, 0x44, pci_read(0x1f, 0, 0x44) | 0x80);
    } else {
        pci_write(1, 3, 0x40, PM_BASE | 1);
        pci_write(1, 3, 0x80, pci_read(1, 3, 0x80) | 1);
    }
}
static uint32_t pm_read(void) { return inl(PM_TMR) & 0xffffff; }

/* TSC frequency against the 3.579545 MHz ACPI PM timer, over 10 ms. */
static void calibrate_tsc(void)
{
    uint32_t p0 = pm_read(), el;
    uint64_t t0 = rdtsc();
    do {
        el = (pm_read() - p0) & 0xffffff;
    } while (el < PM_FREQ / 100);
    tsc_khz = (rdtsc() - t0) * PM_FREQ / el / 1000;
}
static uint64_t tsc_to_ns(uint64_t t) { return tsc_khz ? t * 1000000 / tsc_khz : 0; }

/* ---- local APIC ---- */
static uint32_t lapic_read(uint32_t r) { return mmio_read32(LAPIC_BASE + r); }
static void lapic_write(uint32_t r, uint32_t v) { mmio_write32(LAPIC_BASE + r, v); }
static uint32_t lapic_id(void) { return lapic_read(0x20) >> 24; }
static void lapic_icr(uint32_t dest, uint32_t lo)
{
    while (lapic_read(0x300) & (1 << 12)) pause();     /* delivery pending */
    lapic_write(0x310, dest << 24);
    lapic_write(0x300, lo);
}
static void cpu_setup(void)
{
    struct { uint16_t lim; uint32_t base; } __attribute__((packed)) d = { sizeof(idt) - 1, (uint32_t)idt };
    asm volatile("lidt %0" :: "m"(d));
    lapic_write(0xf0, 0x100 | 0xff);                   /* SVR: enable, spurious 0xff */
}
static void idt_setup(void)
{
    uint32_t h = (uint32_t)ipi_handler;
    /* 32-bit interrupt gate, selector 0x08, DPL0, present */
    idt[IPI_VECTOR] = (uint64_t)(h & 0xffff) | (uint64_t)0x08 << 16 |
                      (uint64_t)0x8e00 << 32 | (uint64_t)(h >> 16) << 48;
}
static void delay_us(uint32_t us)
{
    uint64_t end = rdtsc() + (uint64_t)us * (uint32_t)(tsc_khz / 1000);
    while (rdtsc() < end) pause();
}

/* ---- hammer ---- */
enum op { OP_INB, OP_INW, OP_INL, OP_OUTB, OP_OUTW, OP_OUTL, OP_READ32, OP_WRITE32, OP_RTC,
          OP_VGA, OP_APIC };
enum check { CHECK_NONE, CHECK_PMTIMER, CHECK_HPET, CHECK_RTC, CHECK_READBACK };
static struct {
    enum op op;
    enum check check;
    uint32_t addr, val;
    uint64_t count, secs_tsc;
    const char *name;
} hm;

/*
 * target=vga: planar VGA memory (a -device VGA, in write mode 0 with every
 * plane enabled) from every vCPU, each at its own byte: write it, read
 * plane 0 back.  The read goes through the device-wide latch register,
 * so a device that let two reads interleave would return another vCPU's
 * byte.  1 if the byte read back is the one written.
 */
#define VGA_WINDOW 0xa0000u
static inline uint32_t vga_rw(uint32_t me)
{
    volatile uint8_t *p = (volatile uint8_t *)(VGA_WINDOW + 16 * me);
    uint8_t v = (uint8_t)(*p + 1);

    *p = v;
    return *p == v;
}

/*
 * Planar mode, every plane enabled.  False if 0xa0000 does not behave as
 * planar VGA memory: without a VGA, it is plain RAM on pc and vga_rw()
 * would pass without reaching any device.
 */
static bool vga_setup(void)
{
    static const uint8_t seq[][2] = { {4, 0x06}, {2, 0x0f} };
    static const uint8_t gfx[][2] = { {5, 0x00}, {6, 0x05}, {8, 0xff}, {4, 0x00} };
    volatile uint8_t *p = (volatile uint8_t *)VGA_WINDOW;

    for (unsigned i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
        outb(0x3c4, seq[i][0]); outb(0x3c5, seq[i][1]);
    }
    for (unsigned i = 0; i < sizeof(gfx) / sizeof(gfx[0]); i++) {
        outb(0x3ce, gfx[i][0]); outb(0x3cf, gfx[i][1]);
    }
    outb(0x3c4, 2); outb(0x3c5, 0x01);      /* plane 0 only */
    *p = 0x11;
    outb(0x3c5, 0x02);                      /* plane 1 only */
    *p = 0x22;
    outb(0x3c5, 0x0f);
    return *p == 0x11;                      /* read plane 0 */
}

/*
 * target=apic: the local APIC's TPR, of which every vCPU has its own
 * behind the one MMIO page at 0xfee00000: write the next value, read it
 * back.  A device that served a vCPU from another vCPU's APIC would
 * return that one's.  1 if the TPR reads back what was written.  (The
 * hammer runs with interrupts off, so the TPR masks nothing it needs.)
 */
static inline uint32_t apic_rw(void)
{
    uint32_t v = (lapic_read(0x80) + 1) & 0xff;

    lapic_write(0x80, v);
    return lapic_read(0x80) == v;
}

static inline uint32_t access_once(uint32_t me)
{
    switch (hm.op) {
    case OP_INB: return inb(hm.addr);
    case OP_INW: return inw(hm.addr);
    case OP_INL: return inl(hm.addr);
    case OP_OUTB: outb(hm.addr, hm.val); return 0;
    case OP_OUTW: outw(hm.addr, hm.val); return 0;
    case OP_OUTL: outl(hm.addr, hm.val); return 0;
    case OP_READ32: return mmio_read32(hm.addr);
    case OP_WRITE32: mmio_write32(hm.addr, hm.val); return 0;
    case OP_RTC: outb(0x70, 0x0a); return inb(0x71);
    case OP_VGA: return vga_rw(me);
    case OP_APIC: return apic_rw();
    }
    return 0;
}

/* One unrolled run of @n accesses of the chosen kind; the failed checks. */
#define RUN_LOOP(expr) do { for (uint32_t i = n; i; i--) { expr; } } while (0)
static uint32_t access_run(uint32_t n, uint32_t me)
{
    uint16_t p = hm.addr;
    uint32_t bad = 0;

    switch (hm.op) {
    case OP_INB: RUN_LOOP(inb(p)); break;
    case OP_INW: RUN_LOOP(inw(p)); break;
    case OP_INL: RUN_LOOP(inl(p)); break;
    case OP_OUTB: RUN_LOOP(outb(p, hm.val)); break;
    case OP_OUTW: RUN_LOOP(outw(p, hm.val)); break;
    case OP_OUTL: RUN_LOOP(outl(p, hm.val)); break;
    case OP_READ32: RUN_LOOP(mmio_read32(hm.addr)); break;
    case OP_WRITE32: RUN_LOOP(mmio_write32(hm.addr, hm.val)); break;
    case OP_RTC: RUN_LOOP(outb(0x70, 0x0a); inb(0x71)); break;
    case OP_VGA: RUN_LOOP(bad += !vga_rw(me)); break;
    case OP_APIC: RUN_LOOP(bad += !apic_rw()); break;
    }
    return bad;
}

/*
 * Histogram buckets: a sixteenth of an octave each, 3-6% apart, so that a
 * p99 tells 1.1x of another p99 apart from it.  Bucket 16e+s holds TSC
 * deltas in [2^e + s*2^(e-4), 2^e + (s+1)*2^(e-4)); deltas below 16
 * cycles (no access is that fast) go to bucket 64.  No division: this
 * runs under kvm_pvm's emulator.
 */
int bucket_of(uint64_t cycles)
{
    uint32_t c = cycles >> 32 ? 0xffffffffu : (uint32_t)cycles;
    int e = 4;

    if (c < 16) return 64;
    while (e < 31 && c >= (2u << e)) e++;
    return 16 * e + ((c >> (e - 4)) & 15);
}

/* The exclusive upper bound of bucket b, in TSC cycles. */
static uint64_t bucket_limit(int b)
{
    return (uint64_t)(16 + (b & 15) + 1) << ((b >> 4) - 4);
}

/* Sampled value checks: a lockless read path must still give sane values. */
static bool value_ok(uint32_t v, uint32_t *last, bool first)
{
    switch (hm.check) {
    case CHECK_PMTIMER:     /* 24-bit, moves forward (modulo wrap) */
        v &= 0xffffff;
        if (v >> 24) return false;
        if (!first && ((v - *last) & 0xffffff) >= 0x800000) return false;
        break;
    case CHECK_HPET:        /* low 32 bits, moves forward */
        if (!first && (uint32_t)(v - *last) >= 0x80000000u) return false;
        break;
    case CHECK_RTC:         /* status A: divider bits as the RTC reset them */
        if ((v & 0x70) != 0x20) return false;
        break;
    case CHECK_READBACK:    /* vga_rw(), apic_rw(): read back what was written */
        if (!v) return false;
        break;
    case CHECK_NONE:
        break;
    }
    *last = v;
    return true;
}

static void hammer(uint32_t me)
{
    struct cpu_result *r = &result[me];
    uint64_t t0 = rdtsc(), now, deadline = t0 + hm.secs_tsc;
    uint32_t last = 0;
    bool first = true;

    for (;;) {
        r->errors += access_run(SAMPLE_EVERY - 1, me);
        uint64_t a = rdtsc();
        uint32_t v = access_once(me);
        now = rdtsc();
        r->hist[bucket_of(now - a)]++;
        if (!value_ok(v, &last, first)) r->errors++;
        first = false;
        r->count += SAMPLE_EVERY;
        if (hm.secs_tsc ? now >= deadline : r->count >= hm.count) break;
    }
    r->tsc = now - t0;
}

static bool hammer_setup(void)
{
    hm.count = arg_num("count", 10000);
    hm.secs_tsc = arg_num("secs", 0) * tsc_khz * 1000;
    hm.val = arg_num("val", 0);
    hm.check = CHECK_NONE;
    const char *t = arg("target");
    if (!t || arg_is("target", "port80")) {
        hm.name = "port80"; hm.op = OP_OUTB; hm.addr = 0x80;
    } else if (arg_is("target", "pmtimer")) {
        hm.name = "pmtimer"; hm.op = OP_INL; hm.addr = PM_TMR; hm.check = CHECK_PMTIMER;
    } else if (arg_is("target", "hpet")) {
        hm.name = "hpet"; hm.op = OP_READ32; hm.addr = HPET_BASE + 0xf0; hm.check = CHECK_HPET;
        mmio_write32(HPET_BASE + 0x10, mmio_read32(HPET_BASE + 0x10) | 1);
    } else if (arg_is("target", "rtc")) {
        hm.name = "rtc"; hm.op = OP_RTC; hm.check = CHECK_RTC;
    } else if (arg_is("target", "vga")) {
        hm.name = "vga"; hm.op = OP_VGA; hm.check = CHECK_READBACK;
        if (!vga_setup()) finish(false, "vga-not-planar");
    } else if (arg_is("target", "apic")) {
        hm.name = "apic"; hm.op = OP_APIC; hm.check = CHECK_READBACK;
    } else if (streq_n(t, "port:", 5) || streq_n(t, "mmio:", 5)) {
        bool port = t[0] == 'p';
        hm.name = t;
        hm.addr = parse_num(t + 5);
        hm.op = port ? OP_INB : OP_READ32;
        if (arg_is("op", "inb")) hm.op = OP_INB;
        else if (arg_is("op", "inw")) hm.op = OP_INW;
        else if (arg_is("op", "inl")) hm.op = OP_INL;
        else if (arg_is("op", "outb")) hm.op = OP_OUTB;
        else if (arg_is("op", "outw")) hm.op = OP_OUTW;
        else if (arg_is("op", "outl")) hm.op = OP_OUTL;
        else if (arg_is("op", "read32")) hm.op = OP_READ32;
        else if (arg_is("op", "write32")) hm.op = OP_WRITE32;
        else if (arg("op")) return false;
    } else {
        return false;
    }
    if (hm.count < SAMPLE_EVERY) hm.count = SAMPLE_EVERY;
    return true;
}

/* ---- halt / ipi ping-pong between vCPU pairs (2k, 2k+1); odd one self-IPIs ---- */
static bool pingpong_hlt;
static uint64_t pingpong_rounds;

static void wait_ipi(uint32_t id, uint32_t seen)
{
    while (ipi_count[id] == seen) {
        if (pingpong_hlt) asm volatile("sti; hlt; cli" ::: "memory");
        else asm volatile("sti; pause; cli" ::: "memory");
    }
}

static void pingpong(uint32_t me)
{
    struct cpu_result *r = &result[me];
    uint32_t peer = me ^ 1, id = apic_id_of[me];
    bool self = peer >= ncpus, leader = self || !(me & 1);
    uint32_t peer_id = self ? id : apic_id_of[peer];
    uint64_t t0 = rdtsc(), a;

    for (uint64_t i = 0; i < pingpong_rounds; i++) {
        uint32_t seen = ipi_count[id];
        a = rdtsc();
        if (leader) {
            lapic_icr(peer_id, IPI_VECTOR | 0x4000);
            wait_ipi(id, seen);
            r->hist[bucket_of(rdtsc() - a)]++;
        } else {
            wait_ipi(id, seen);
            lapic_icr(peer_id, IPI_VECTOR | 0x4000);
        }
        r->count++;
    }
    r->tsc = rdtsc() - t0;
}

/* ---- per-vCPU entry ---- */
static enum { SC_HAMMER, SC_HALT, SC_IPI, SC_VBLK } scenario;

static void run_scenario(uint32_t me)
{
    while (!go) pause();
    if (scenario == SC_HAMMER) hammer(me);
    else if (scenario == SC_VBLK) vblk_run(me);
    else pingpong(me);
    barrier();
    WRITE_ONCE(result[me].done, 1);
}

void ap_main(uint32_t me)
{
    cpu_setup();
    apic_id_of[me] = lapic_id();
    __atomic_fetch_add(&cpus_up, 1, __ATOMIC_SEQ_CST);
    if (me < MAX_CPUS) run_scenario(me);
}

static void report(void)
{
    uint64_t total = 0, max_tsc = 0;
    const char *sname = scenario == SC_HAMMER ? "hammer" : scenario == SC_HALT ? "halt" :
                        scenario == SC_VBLK ? "vblk" : "ipi";
    for (uint32_t c = 0; c < ncpus; c++) {
        struct cpu_result *r = &result[c];
        uint64_t ns = tsc_to_ns(r->tsc), samples = 0, seen = 0;
        uint64_t p50 = 0, p99 = 0;
        for (int b = 0; b < NBUCKETS; b++) samples += r->hist[b];
        for (int b = 0; b < NBUCKETS; b++) {
            seen += r->hist[b];
            if (!p50 && seen * 2 >= samples && samples) p50 = tsc_to_ns(bucket_limit(b));
            if (!p99 && seen * 100 >= samples * 99 && samples) p99 = tsc_to_ns(bucket_limit(b));
        }
        puts("RESULT scenario="); puts(sname);
        if (scenario == SC_HAMMER) { puts(" target="); put_arg_word(hm.name); }
        puts(" vcpu="); putu(c);
        puts(" count="); putu(r->count);
        puts(" tsc="); putu(r->tsc);
        puts(" ns="); putu(ns);
        puts(" rate="); putu(ns ? r->count * 1000000000ull / ns : 0);
        puts(" p50_ns="); putu(p50);
        puts(" p99_ns="); putu(p99);
        puts(" errors="); putu(r->errors);
        if (scenario == SC_VBLK) vblk_report(c);
        putc('\n');
        puts("HIST vcpu="); putu(c);
        for (int b = 0; b < NBUCKETS; b++) {
            if (!r->hist[b]) continue;
            putc(' '); putu(tsc_to_ns(bucket_limit(b))); putc(':'); putu(r->hist[b]);
        }
        putc('\n');
        total += r->count;
        if (r->tsc > max_tsc) max_tsc = r->tsc;
    }
    uint64_t ns = tsc_to_ns(max_tsc);
    puts("TOTAL scenario="); puts(sname);
    puts(" cpus="); putu(ncpus);
    puts(" count="); putu(total);
    puts(" rate="); putu(ns ? total * 1000000000ull / ns : 0);
    putc('\n');
}

static void start_aps(void)
{
    memcpy(ap_tramp, __tramp_load, (uint32_t)__tramp_size);
    ap_next_index = 1;
    lapic_icr(0, 0x000c4500);                          /* INIT, all but self */
    delay_us(10000);
    for (int i = 0; i < 2; i++) {
        lapic_icr(0, 0x000c4600 | ((uint32_t)ap_tramp >> 12));   /* SIPI */
        delay_us(200);
    }
    uint64_t deadline = rdtsc() + 20000ull * tsc_khz;  /* 20 s: emulated CPL0 is slow */
    while (cpus_up < ncpus && rdtsc() < deadline) pause();
}

void bsp_main(void)
{
    outb(0x21, 0xff);                                  /* mask both 8259s */
    outb(0xa1, 0xff);
    fw_cfg_read_args();
    ncpus = fw_cfg_ncpus();
    if (ncpus < 1 || ncpus > MAX_CPUS) finish(false, "ncpus");
    pm_enable();
    calibrate_tsc();
    idt_setup();
    cpu_setup();
    apic_id_of[0] = lapic_id();
    cpus_up = 1;

    if (!arg("scenario") || arg_is("scenario", "hammer")) {
        scenario = SC_HAMMER;
        if (!hammer_setup()) finish(false, "bad-target-or-op");
    } else if (arg_is("scenario", "halt") || arg_is("scenario", "ipi")) {
        scenario = arg_is("scenario", "halt") ? SC_HALT : SC_IPI;
        pingpong_hlt = scenario == SC_HALT;
        pingpong_rounds = arg_num("count", 1000);
    } else if (arg_is("scenario", "vblk")) {
        scenario = SC_VBLK;
        if (!vblk_parse()) finish(false, "vblk-bad-args");
    } else {
        finish(false, "unknown-scenario");
    }
    puts("TINY start cpus="); putu(ncpus);
    puts(" args="); for (const char *p = args; *p; p++) putc(*p == ' ' ? ',' : *p);
    puts(" tsc_khz="); putu(tsc_khz);
    putc('\n');

    if (ncpus > 1) start_aps();
    if (cpus_up != ncpus) {
        puts("TINY cpus_up="); putu(cpus_up); putc('\n');
        finish(false, "ap-startup");
    }
    if (scenario == SC_VBLK) vblk_setup();
    go = 1;
    run_scenario(0);
    for (uint32_t c = 1; c < ncpus; c++)
        while (!READ_ONCE(result[c].done)) pause();
    report();
    if (scenario == SC_VBLK) vblk_finish();

    bool ok = true;
    for (uint32_t c = 0; c < ncpus; c++) {
        if (result[c].errors) ok = false;
        if (!hm.secs_tsc && result[c].count < (scenario == SC_HAMMER ? hm.count : pingpong_rounds))
            ok = false;
    }
    (void)puthex;
    finish(ok, "errors-or-short-count");
}
