/*
 * scenario=vblk: a minimal virtio 1.x driver for virtio-blk-pci (vendor
 * 0x1af4, device 0x1001 transitional or 0x1042 modern) on PCI bus 0.
 *
 *   scenario=vblk irq=poll|msix|isr count=N depth=D bs=B mode=rw|check|flush
 *                 seed=S secs=T data=full|hdr
 *
 * irq=poll (default): avail->flags = VRING_AVAIL_F_NO_INTERRUPT, spin on
 *   used->idx.  irq=msix: MSI-X vector q+1 for queue q, sent to the APIC
 *   of the vCPU that owns queue q with vector 0x50; the vCPU waits in
 *   "sti; hlt; cli" windows (the handler returns with RET, entry.S) and
 *   re-checks used->idx after every wake-up.  A periodic LAPIC timer
 *   (vector 0x41, every tick=US microseconds, default 100000; tick=0: none)
 *   bounds each hlt, so a lost interrupt costs time, not a hang.
 *   RESULT: irqs= MSI-X interrupts taken, irq_done= completions reaped
 *   after an MSI-X wake-up, tmr_done= after a wake-up by the timer alone
 *   (a late or lost interrupt), tmr= timer-only wake-ups.  The rest of the
 *   completions were in the ring before the vCPU needed to halt.
 *   msi_addr=A: every vector's message goes to address A instead of its
 *   vCPU's APIC (a test of where QEMU may send it: e.g. 0xfed00000, the
 *   HPET's read-only ID register); completions are then found by the
 *   timer alone.
 * irq=isr: MSI-X off, so each completion raises INTx (masked at the I/O
 *   APIC: nothing is delivered) and sets bit 0 of the ISR; every vCPU spins
 *   on used->idx and reads the shared ISR status register (read-and-clear,
 *   which lowers INTx) every 64 spins.  RESULT: isr_reads=, isr_hits= (reads
 *   that found bit 0).  At the end the BSP reads the ISR until the PCI
 *   status register's interrupt bit is clear: a line left high with nothing
 *   in the ISR FAILs ("vblk-intx-stuck"), and so does a run where no read
 *   ever found bit 0 ("vblk-no-isr").
 * Set-up reads the device configuration between two reads of
 *   config_generation, again until they agree, as Linux's virtio_cread
 *   does.  RESULT (vCPU 0's line): gen_reads= reads of config_generation.
 * count: requests per vCPU in the write pass (default 1000); depth: requests
 *   in flight per vCPU, 1..32 (default 4); bs: bytes per request, a multiple
 *   of 512, depth*bs <= 1 MiB (default 4096); seed (default 1); secs=T:
 *   write for T seconds instead of count requests (not with mode=check).
 * vCPU i drives queue i (fewer queues than vCPUs is a FAIL) and owns
 *   blocks [i*span, (i+1)*span) with span = min(count, capacity/bs/ncpus)
 *   (capacity/bs/ncpus with secs=).
 *   Write request k goes to block k % span with pass k / span; the data of
 *   each 512-byte sector is a function of (sector, owner vCPU, pass, seed),
 *   see "data pattern" below (data=hdr: its first 16 bytes only).
 * mode=rw: write pass, read back and compare the own range, barrier, then
 *   read and compare the next vCPU's range.  mode=check: only read and
 *   compare the own range (after an rw or flush run with the same seed,
 *   count, bs, data and vCPU count, e.g. after kill -9 or loadvm).
 *   mode=flush: write pass, then one FLUSH per vCPU, then the BSP prints RESULT lines
 *   and "TINY FLUSHED" and idles forever (kill QEMU, then run mode=check).
 *
 * RESULT count= is all requests of the vCPU (writes + reads + flushes),
 * rate= per second, p50/p99 and HIST are submit-to-reap latencies, errors=
 * is the number of requests whose data did not match.  A mismatch, a
 * non-zero status or a wait of 30 s for a completion FAILs, with a reason
 * such as "vblk-mismatch vcpu= owner= lba= off= want= got= errors=".
 */
#include "tiny.h"

#define VBLK_VECTOR   0x50
#define TIMER_VECTOR  0x41              /* below VBLK_VECTOR's priority class */
#define QSZ           128               /* 3 descriptors per request, depth <= 32 */
#define MAX_DEPTH     32
#define RING_BASE     0x800000u         /* 16 KiB of rings per queue */
#define DATA_BASE     0x1000000u        /* 1 MiB of buffers per vCPU */
#define DATA_PER_CPU  0x100000u
#define BAR_BASE      0xe0000000u
#define LAPIC_BASE    0xfee00000u
#define TIMEOUT_SECS  30

#define VIRTIO_F_VERSION_1     32
#define VIRTIO_BLK_F_RO        5
#define VIRTIO_BLK_F_FLUSH     9
#define VIRTIO_BLK_F_MQ        12
#define VIRTIO_BLK_T_IN        0
#define VIRTIO_BLK_T_OUT       1
#define VIRTIO_BLK_T_FLUSH     4
#define VRING_DESC_F_NEXT      1
#define VRING_DESC_F_WRITE     2
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_USED_F_NO_NOTIFY 1
#define ST_ACK 1
#define ST_DRIVER 2
#define ST_DRIVER_OK 4
#define ST_FEATURES_OK 8
#define ST_NEEDS_RESET 0x40
#define ST_FAILED 0x80

/* common configuration structure (virtio_pci_common_cfg) */
#define CC_DFSELECT   0
#define CC_DF         4
#define CC_GFSELECT   8
#define CC_GF         12
#define CC_MSIX       16
#define CC_NUMQ       18
#define CC_STATUS     20
#define CC_CFG_GEN    21
#define CC_Q_SELECT   22
#define CC_Q_SIZE     24
#define CC_Q_MSIX     26
#define CC_Q_ENABLE   28
#define CC_Q_NOFF     30
#define CC_Q_DESC     32
#define CC_Q_AVAIL    40
#define CC_Q_USED     48

static inline uint8_t rd8(uint32_t a) { return *(volatile uint8_t *)a; }
static inline uint16_t rd16(uint32_t a) { return *(volatile uint16_t *)a; }
static inline uint32_t rd32(uint32_t a) { return *(volatile uint32_t *)a; }
static inline void wr8(uint32_t a, uint8_t v) { *(volatile uint8_t *)a = v; }
static inline void wr16(uint32_t a, uint16_t v) { *(volatile uint16_t *)a = v; }
static inline void wr32(uint32_t a, uint32_t v) { *(volatile uint32_t *)a = v; }
static inline uint64_t rdtsc(void) { uint32_t lo, hi; asm volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((uint64_t)hi << 32) | lo; }
static inline void pause(void) { asm volatile("pause" ::: "memory"); }
#define barrier() asm volatile("" ::: "memory")
/* i686 has no mfence: a locked op orders the avail->idx store before the used->flags load */
#define mb() asm volatile("lock addl $0,(%%esp)" ::: "memory", "cc")
#define READ_ONCE(x) (*(volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile __typeof__(x) *)&(x) = (v))

struct vring_desc { uint64_t addr; uint32_t len; uint16_t flags, next; };
struct vring_avail { uint16_t flags, idx, ring[QSZ], used_event; };
struct vring_used_elem { uint32_t id, len; };
struct vring_used { uint16_t flags, idx; struct vring_used_elem ring[QSZ]; uint16_t avail_event; };
struct blk_hdr { uint32_t type, reserved; uint64_t sector; };

struct slot {
    struct blk_hdr hdr;                 /* device-readable */
    volatile uint8_t status;            /* device-writable */
    uint8_t busy;
    uint32_t owner, pass, nblk;
    uint64_t t0;
};

struct vq {
    struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;
    uint32_t notify;                    /* notify address of this queue */
    uint8_t *data;
    uint16_t avail_idx, last_used;
    struct slot slot[MAX_DEPTH];
    uint32_t written;                   /* requests of the write pass (secs=) */
    uint64_t writes, reads, flushes, kicks, irq_done, timer_done, timer_wakes, requests;
    uint64_t isr_reads, isr_hits;
    uint32_t bad, bad_owner, bad_off, bad_want, bad_got;
    uint64_t bad_lba;
} __attribute__((aligned(64)));

static struct vq vqs[MAX_CPUS];
volatile uint32_t vblk_irqs[256];       /* by APIC ID, bumped by vblk_irq_handler */
volatile uint32_t vblk_ticks[256];      /* by APIC ID, bumped by vblk_timer_handler */
static volatile uint32_t vb_arrive;
static volatile uint32_t vb_dying;

static enum { M_RW, M_CHECK, M_FLUSH } vb_mode;
static bool vb_msix, vb_isr_mode;
static uint32_t vb_msi_addr;
static uint32_t vb_tick_us, vb_depth, vb_bs, vb_spb, vb_seed, vb_span, vb_count;
static uint64_t vb_secs_tsc, vb_capacity, vb_features;
static int vb_dev;
static uint32_t vb_bar[6];
static uint32_t vb_common, vb_notify, vb_mult, vb_isr, vb_devcfg, vb_msix_cap, vb_msix_table;
static uint16_t vb_nq;
static uint32_t vb_gen_reads;

extern void vblk_irq_handler(void), vblk_timer_handler(void);

/* Same frame trick as entry.S's ipi_handler: count by APIC ID, EOI, RET. */
asm(".text\n"
    ".macro VBLK_HANDLER name, counter\n"
    ".globl \\name\n"
    "\\name:\n"
    "    push %eax\n"
    "    mov 0xfee00020, %eax\n"
    "    shr $24, %eax\n"
    "    incl \\counter(,%eax,4)\n"
    "    movl $0, 0xfee000b0\n"
    "    mov 4(%esp), %eax\n"
    "    mov %eax, 12(%esp)\n"
    "    pop %eax\n"
    "    add $8, %esp\n"
    "    ret\n"
    ".endm\n"
    "VBLK_HANDLER vblk_irq_handler, vblk_irqs\n"
    "VBLK_HANDLER vblk_timer_handler, vblk_ticks\n");

/* ---- failure with a reason built from pieces ---- */
static char why[200];
static unsigned why_len;
static void w_s(const char *s) { while (*s && why_len < sizeof(why) - 1) why[why_len++] = *s++; why[why_len] = 0; }
static void w_u(uint64_t v)
{
    char b[24];
    int i = 0;
    do { b[i++] = '0' + v % 10; v /= 10; } while (v);
    while (i) { char c[2] = { b[--i], 0 }; w_s(c); }
}
static void w_x(uint32_t v)
{
    w_s("0x");
    for (int s = 28; s >= 0; s -= 4) { char c[2] = { "0123456789abcdef"[(v >> s) & 15], 0 }; w_s(c); }
}
static void w_start(const char *reason)
{
    /* the first vCPU to fail reports; any other one stops here */
    if (__atomic_exchange_n(&vb_dying, 1, __ATOMIC_SEQ_CST))
        for (;;) asm volatile("cli; hlt");
    why_len = 0;
    w_s(reason);
}
static const char *vb_irq_name(void)
{
    return vb_msix ? "msix" : vb_isr_mode ? "isr" : "poll";
}

static void __attribute__((noreturn)) die(const char *reason)
{
    w_start(reason);
    finish(false, why);
}

/* ---- PCI configuration space, byte and word views of the dword ---- */
static uint8_t cfg8(int reg) { return pci_read(vb_dev, 0, reg) >> ((reg & 3) * 8); }
static uint16_t cfg16(int reg) { return pci_read(vb_dev, 0, reg) >> ((reg & 2) * 8); }

static bool pci_find(void)
{
    for (int d = 0; d < 32; d++) {
        uint32_t id = pci_read(d, 0, 0);
        if ((id & 0xffff) == 0x1af4 && ((id >> 16) == 0x1001 || (id >> 16) == 0x1042)) {
            vb_dev = d;
            return true;
        }
    }
    return false;
}

/* Size every memory BAR and pack them from BAR_BASE, naturally aligned. */
static void pci_assign_bars(void)
{
    uint32_t next = BAR_BASE;
    pci_write(vb_dev, 0, 0x04, 0);                     /* decoding off while sizing */
    for (int b = 0; b < 6; b++) {
        int reg = 0x10 + 4 * b;
        uint32_t orig = pci_read(vb_dev, 0, reg);
        if (orig & 1) continue;                        /* I/O BAR: unused */
        bool is64 = ((orig >> 1) & 3) == 2;
        pci_write(vb_dev, 0, reg, 0xffffffffu);
        uint32_t mask = pci_read(vb_dev, 0, reg) & ~0xfu;
        uint32_t hi = 0;
        if (is64) {
            pci_write(vb_dev, 0, reg + 4, 0xffffffffu);
            hi = pci_read(vb_dev, 0, reg + 4);
        }
        if (mask && (!is64 || hi == 0xffffffffu)) {
            uint32_t size = ~mask + 1;
            next = (next + size - 1) & ~(size - 1);
            pci_write(vb_dev, 0, reg, next);
            vb_bar[b] = next;
            next += size;
        } else {
            pci_write(vb_dev, 0, reg, 0);              /* empty, or too big for us */
        }
        if (is64) pci_write(vb_dev, 0, reg + 4, 0);
        if (is64) b++;
    }
    pci_write(vb_dev, 0, 0x04, 0x2 | 0x4);             /* memory + bus master */
}

static void pci_walk_caps(void)
{
    if (!(cfg16(0x06) & 0x10)) die("vblk-no-capability-list");
    int p = cfg8(0x34) & 0xfc;
    for (int n = 0; p && n < 48; n++, p = cfg8(p + 1) & 0xfc) {
        uint8_t id = cfg8(p);
        if (id == 0x11) {
            vb_msix_cap = p;
            uint32_t t = pci_read(vb_dev, 0, p + 4);
            vb_msix_table = vb_bar[t & 7] ? vb_bar[t & 7] + (t & ~7u) : 0;
        }
        if (id != 0x09) continue;
        uint8_t type = cfg8(p + 3), bar = cfg8(p + 4);
        if (bar > 5 || !vb_bar[bar]) continue;
        uint32_t a = vb_bar[bar] + pci_read(vb_dev, 0, p + 8);
        if (type == 1 && !vb_common) vb_common = a;
        if (type == 2 && !vb_notify) { vb_notify = a; vb_mult = pci_read(vb_dev, 0, p + 16); }
        if (type == 3 && !vb_isr) vb_isr = a;
        if (type == 4 && !vb_devcfg) vb_devcfg = a;
    }
    if (!vb_common || !vb_notify || !vb_isr || !vb_devcfg) die("vblk-missing-virtio-caps");
}

static void set_gate(int vec, void (*h)(void))
{
    uint32_t a = (uint32_t)h;
    idt[vec] = (uint64_t)(a & 0xffff) | (uint64_t)0x08 << 16 |
               (uint64_t)0x8e00 << 32 | (uint64_t)(a >> 16) << 48;
}

/*
 * ---- data pattern ----
 * Every 512-byte sector: dwords 0-3 are (sector low, sector high, owner vCPU,
 * pass), each xored with a hash of all four and the seed; dwords 4-127 are a
 * template made from the seed.  The template is copied with "rep movsl" and
 * compared with "repe cmpsl": kvm_pvm emulates every guest instruction, and
 * a C loop over 4 KiB costs it ~2.7 ms, rep movs ~0.6 ms.  data=hdr writes
 * and checks dwords 0-3 only (the rest of the sector is whatever the buffer
 * held), for rates that are not bound by the emulator.
 */
static uint32_t vb_tmpl[128];
static bool vb_hdr_only;

static uint32_t mix(uint32_t h)
{
    h ^= h >> 16; h *= 0x85ebca6bu;
    h ^= h >> 13; h *= 0xc2b2ae35u;
    return h ^ h >> 16;
}
static void make_header(uint32_t w[4], uint64_t sector, uint32_t owner, uint32_t pass)
{
    uint32_t h = mix(vb_seed ^ mix((uint32_t)sector ^ mix((uint32_t)(sector >> 32) ^ mix(owner ^ mix(pass)))));
    w[0] = (uint32_t)sector ^ h;
    w[1] = (uint32_t)(sector >> 32) ^ h;
    w[2] = owner ^ h;
    w[3] = pass ^ h;
}

static void fill(uint32_t *p, uint64_t sector, uint32_t owner, uint32_t pass)
{
    for (uint32_t s = 0; s < vb_spb; s++, sector++, p += 128) {
        make_header(p, sector, owner, pass);
        if (vb_hdr_only) continue;
        void *d = p + 4, *src = vb_tmpl + 4;
        uint32_t n = 124;
        asm volatile("rep movsl" : "+D"(d), "+S"(src), "+c"(n) :: "memory");
    }
}

static bool verify(struct vq *v, const uint32_t *p, uint64_t sector, uint32_t owner, uint32_t pass)
{
    for (uint32_t s = 0; s < vb_spb; s++, sector++, p += 128) {
        uint32_t w[4], j = 0;
        make_header(w, sector, owner, pass);
        while (j < 4 && p[j] == w[j]) j++;
        if (j == 4 && !vb_hdr_only) {
            const void *d = p + 4, *src = vb_tmpl + 4;
            uint32_t n = 124;
            uint8_t ne;
            asm volatile("repe cmpsl; setne %3" : "+D"(d), "+S"(src), "+c"(n), "=q"(ne) :: "memory", "cc");
            if (!ne) continue;
            j = 4 + 124 - n - 1;
        } else if (j == 4) {
            continue;
        }
        if (!v->bad++) {
            v->bad_owner = owner; v->bad_lba = sector; v->bad_off = j * 4;
            v->bad_want = j < 4 ? w[j] : vb_tmpl[j]; v->bad_got = p[j];
        }
        return false;
    }
    return true;
}

bool vblk_parse(void)
{
    vb_msix = arg_is("irq", "msix");
    vb_isr_mode = arg_is("irq", "isr");
    if (arg("irq") && !vb_msix && !vb_isr_mode && !arg_is("irq", "poll")) return false;
    if (!arg("mode") || arg_is("mode", "rw")) vb_mode = M_RW;
    else if (arg_is("mode", "check")) vb_mode = M_CHECK;
    else if (arg_is("mode", "flush")) vb_mode = M_FLUSH;
    else return false;
    uint64_t count = arg_num("count", 1000);
    vb_depth = arg_num("depth", 4);
    vb_bs = arg_num("bs", 4096);
    vb_seed = arg_num("seed", 1);
    vb_tick_us = arg_num("tick", 100000);
    vb_msi_addr = arg_num("msi_addr", 0);
    vb_secs_tsc = arg_num("secs", 0) * tsc_khz * 1000;
    if (!count || count > 0x7fffffffu || vb_tick_us > 4000000) return false;
    vb_count = count;
    if (vb_depth < 1 || vb_depth > MAX_DEPTH) return false;
    if (!vb_bs || vb_bs % 512 || vb_bs * vb_depth > DATA_PER_CPU) return false;
    if (vb_secs_tsc && vb_mode == M_CHECK) return false;
    vb_spb = vb_bs / 512;
    if (arg("data") && !arg_is("data", "full") && !arg_is("data", "hdr")) return false;
    vb_hdr_only = arg_is("data", "hdr");
    for (int j = 0; j < 128; j++) vb_tmpl[j] = mix(vb_seed * 0x9e3779b9u + j);
    return true;
}

static uint8_t vb_generation(void)
{
    vb_gen_reads++;
    return rd8(vb_common + CC_CFG_GEN);
}

/* BSP, once every vCPU's APIC ID is known and before any vCPU runs. */
void vblk_setup(void)
{
    if (!pci_find()) die("vblk-no-device");
    pci_assign_bars();
    pci_walk_caps();

    uint32_t c = vb_common;
    wr8(c + CC_STATUS, 0);
    for (int i = 0; rd8(c + CC_STATUS); i++)
        if (i > 1000000) die("vblk-reset-timeout");
    wr8(c + CC_STATUS, ST_ACK);
    wr8(c + CC_STATUS, ST_ACK | ST_DRIVER);

    wr32(c + CC_DFSELECT, 0);
    uint32_t f0 = rd32(c + CC_DF);
    wr32(c + CC_DFSELECT, 1);
    uint32_t f1 = rd32(c + CC_DF);
    vb_features = (uint64_t)f1 << 32 | f0;
    if (!(f1 & 1)) die("vblk-no-VERSION_1");
    if (vb_mode != M_CHECK && (f0 & 1u << VIRTIO_BLK_F_RO)) die("vblk-read-only");
    if (vb_mode == M_FLUSH && !(f0 & 1u << VIRTIO_BLK_F_FLUSH)) die("vblk-no-FLUSH");
    uint32_t g0 = f0 & (1u << VIRTIO_BLK_F_MQ | 1u << VIRTIO_BLK_F_FLUSH);
    wr32(c + CC_GFSELECT, 0);
    wr32(c + CC_GF, g0);
    wr32(c + CC_GFSELECT, 1);
    wr32(c + CC_GF, 1);                                /* VERSION_1 */
    wr8(c + CC_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
    if (!(rd8(c + CC_STATUS) & ST_FEATURES_OK)) die("vblk-features-not-ok");

    uint8_t gen;
    do {
        gen = vb_generation();
        vb_capacity = rd32(vb_devcfg) | (uint64_t)rd32(vb_devcfg + 4) << 32;
        vb_nq = (g0 & 1u << VIRTIO_BLK_F_MQ) ? rd16(vb_devcfg + 34) : 1;
    } while (gen != vb_generation());
    if (vb_nq < ncpus) {
        w_start("vblk-too-few-queues num_queues="); w_u(vb_nq);
        w_s(" cpus="); w_u(ncpus);
        finish(false, why);
    }
    uint64_t span = vb_capacity / vb_spb / ncpus;
    if (!vb_secs_tsc && span > vb_count) span = vb_count;   /* secs=: the whole share */
    if (span > 0x7fffffffu) span = 0x7fffffffu;
    vb_span = span;
    if (!vb_span) die("vblk-disk-too-small");
    /* a block is never written twice while in flight (requests issue in order, slot k % depth) */
    if ((vb_secs_tsc || vb_count > vb_span) && vb_span < vb_depth) die("vblk-disk-too-small-for-depth");

    if (vb_msix) {
        if (!vb_msix_cap || !vb_msix_table) die("vblk-no-msix");
        uint32_t d = pci_read(vb_dev, 0, vb_msix_cap);
        if (((d >> 16) & 0x7ff) + 1 < ncpus + 1) die("vblk-too-few-msix-vectors");
        set_gate(VBLK_VECTOR, vblk_irq_handler);
        set_gate(TIMER_VECTOR, vblk_timer_handler);
        /* enable, function mask off: before DRIVER_OK, which decides on irqfds */
        pci_write(vb_dev, 0, vb_msix_cap, (d & 0x3fffffffu) | 0x80000000u);
    }
    wr16(c + CC_MSIX, 0xffff);                         /* no config-change vector */

    for (uint32_t q = 0; q < ncpus; q++) {
        struct vq *v = &vqs[q];
        uint32_t ring = RING_BASE + q * 0x4000;
        memset((void *)ring, 0, 0x4000);
        v->desc = (struct vring_desc *)ring;
        v->avail = (struct vring_avail *)(ring + 0x800);
        v->used = (struct vring_used *)(ring + 0x1000);
        v->data = (uint8_t *)(DATA_BASE + q * DATA_PER_CPU);
        v->avail->flags = vb_msix || vb_isr_mode ? 0 : VRING_AVAIL_F_NO_INTERRUPT;

        wr16(c + CC_Q_SELECT, q);
        uint16_t max = rd16(c + CC_Q_SIZE);
        if (max < QSZ) die("vblk-queue-too-small");
        wr16(c + CC_Q_SIZE, QSZ);
        uint16_t vec = vb_msix ? q + 1 : 0xffff;
        wr16(c + CC_Q_MSIX, vec);
        if (rd16(c + CC_Q_MSIX) != vec) die("vblk-queue-msix-vector-refused");
        wr32(c + CC_Q_DESC, (uint32_t)v->desc);     wr32(c + CC_Q_DESC + 4, 0);
        wr32(c + CC_Q_AVAIL, (uint32_t)v->avail);   wr32(c + CC_Q_AVAIL + 4, 0);
        wr32(c + CC_Q_USED, (uint32_t)v->used);     wr32(c + CC_Q_USED + 4, 0);
        v->notify = vb_notify + rd16(c + CC_Q_NOFF) * vb_mult;
        wr16(c + CC_Q_ENABLE, 1);

        if (vb_msix) {
            uint32_t e = vb_msix_table + (q + 1) * 16;
            wr32(e + 0, vb_msi_addr ? vb_msi_addr           /* fixed, physical */
                                    : LAPIC_BASE | apic_id_of[q] << 12);
            wr32(e + 4, 0);
            wr32(e + 8, VBLK_VECTOR);                        /* edge */
            wr32(e + 12, 0);                                 /* unmask */
        }
    }
    wr8(c + CC_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
    if (rd8(c + CC_STATUS) & (ST_NEEDS_RESET | ST_FAILED)) die("vblk-device-status");

    puts("TINY vblk pci=00:"); putu(vb_dev);
    puts(" id="); puthex(pci_read(vb_dev, 0, 0));
    puts(" bar1="); puthex(vb_bar[1]);
    puts(" bar4="); puthex(vb_bar[4]);
    puts(" notify="); puthex(vb_notify);
    puts(" mult="); putu(vb_mult);
    puts(" features="); puthex(f1); putc(':'); puthex(f0);
    puts(" capacity="); putu(vb_capacity);
    puts(" num_queues="); putu(vb_nq);
    puts(" span="); putu(vb_span);
    puts(" irq="); puts(vb_irq_name());
    putc('\n');
}

/* ---- the queue ---- */
static void submit(struct vq *v, uint32_t s, uint32_t type, uint64_t sector)
{
    struct slot *sl = &v->slot[s];
    struct vring_desc *d = &v->desc[3 * s];
    sl->hdr.type = type;
    sl->hdr.reserved = 0;
    sl->hdr.sector = sector;
    sl->status = 0xff;
    sl->busy = 1;
    sl->t0 = rdtsc();
    d[0].addr = (uint32_t)&sl->hdr; d[0].len = sizeof(sl->hdr);
    d[0].flags = VRING_DESC_F_NEXT; d[0].next = 3 * s + 1;
    if (type == VIRTIO_BLK_T_FLUSH) {
        d[0].next = 3 * s + 2;
    } else {
        d[1].addr = (uint32_t)(v->data + s * vb_bs); d[1].len = vb_bs;
        d[1].flags = VRING_DESC_F_NEXT | (type == VIRTIO_BLK_T_IN ? VRING_DESC_F_WRITE : 0);
        d[1].next = 3 * s + 2;
    }
    d[2].addr = (uint32_t)&sl->status; d[2].len = 1;
    d[2].flags = VRING_DESC_F_WRITE; d[2].next = 0;
    v->avail->ring[v->avail_idx % QSZ] = 3 * s;
    barrier();
    WRITE_ONCE(v->avail->idx, ++v->avail_idx);
}

static void kick(struct vq *v, uint32_t q)
{
    mb();
    if (!(READ_ONCE(v->used->flags) & VRING_USED_F_NO_NOTIFY)) {
        wr16(v->notify, q);
        v->kicks++;
    }
}

/*
 * Until used->idx moves: spin (poll) or sti;hlt;cli with the timer as a
 * bound (msix).  Says how the wait ended: WAKE_NONE, the ring had moved
 * before any hlt; WAKE_IRQ, the last hlt ended with an MSI-X interrupt;
 * WAKE_TIMER, with the timer only (the completion's interrupt was late or lost).
 */
enum wake { WAKE_NONE, WAKE_IRQ, WAKE_TIMER };
static enum wake wait_used(struct vq *v, uint32_t me)
{
    uint32_t id = apic_id_of[me], spins = 0;
    uint64_t start = rdtsc();
    enum wake how = WAKE_NONE;
    for (;;) {
        if (READ_ONCE(v->used->idx) != v->last_used) return how;
        if (vb_msix) {
            uint32_t i0 = vblk_irqs[id], t0 = vblk_ticks[id];
            asm volatile("sti; hlt; cli" ::: "memory");
            if (vblk_irqs[id] == i0 && vblk_ticks[id] != t0) {
                /* one more window for an MSI that came with the tick */
                asm volatile("sti; pause; cli" ::: "memory");
                if (vblk_irqs[id] == i0) {
                    how = WAKE_TIMER;
                    v->timer_wakes++;
                }
            }
            if (vblk_irqs[id] != i0) how = WAKE_IRQ;
        } else {
            pause();
            if (vb_isr_mode && !(spins & 63)) {
                v->isr_reads++;
                if (rd8(vb_isr) & 1) v->isr_hits++;
            }
            if (++spins & 1023) continue;
        }
        if (rdtsc() - start > (uint64_t)TIMEOUT_SECS * 1000 * tsc_khz) {
            w_start("vblk-timeout vcpu="); w_u(me);
            w_s(" avail_idx="); w_u(v->avail_idx);
            w_s(" used_idx="); w_u(READ_ONCE(v->used->idx));
            w_s(" irqs="); w_u(vblk_irqs[id]);
            finish(false, why);
        }
    }
}

enum phase { PH_WRITE, PH_VERIFY, PH_FLUSH };

/* Block and pass of write request k, or of the last write to block k (verify). */
static void place(enum phase ph, uint32_t k, uint32_t written, uint32_t *blk, uint32_t *pass)
{
    if (ph == PH_WRITE) {
        *blk = k % vb_span;
        *pass = k / vb_span;
    } else {
        *blk = k;
        *pass = (written - 1 - k) / vb_span;
    }
}

/*
 * n requests (PH_WRITE: until the deadline when secs= is set), issued in
 * order, request k in slot k % depth, so the in-flight ones always lie in
 * a window of depth consecutive requests.
 */
static uint32_t run_phase(uint32_t me, enum phase ph, uint32_t owner, uint32_t n, uint32_t written)
{
    struct vq *v = &vqs[me];
    struct cpu_result *r = &result[me];
    uint32_t next = 0, done = 0;
    uint64_t deadline = rdtsc() + vb_secs_tsc;
    bool timed = ph == PH_WRITE && vb_secs_tsc;

    for (;;) {
        bool queued = false;
        while ((timed || next < n) && !v->slot[next % vb_depth].busy) {
            if (timed && rdtsc() >= deadline) { timed = false; n = next; break; }
            uint32_t s = next % vb_depth;
            struct slot *sl = &v->slot[s];
            if (ph == PH_FLUSH) {
                submit(v, s, VIRTIO_BLK_T_FLUSH, 0);
            } else {
                place(ph, next, written, &sl->nblk, &sl->pass);
                sl->owner = owner;
                uint64_t sector = ((uint64_t)owner * vb_span + sl->nblk) * vb_spb;
                if (ph == PH_WRITE) fill((uint32_t *)(v->data + s * vb_bs), sector, owner, sl->pass);
                submit(v, s, ph == PH_WRITE ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, sector);
            }
            next++;
            queued = true;
        }
        if (queued) kick(v, me);
        if (!timed && done == next && next >= n) break;
        enum wake how = wait_used(v, me);
        uint16_t ui = READ_ONCE(v->used->idx);
        barrier();
        while (v->last_used != ui) {
            struct vring_used_elem e = v->used->ring[v->last_used % QSZ];
            v->last_used++;
            uint32_t s = e.id / 3;
            struct slot *sl = &v->slot[s];
            if (e.id % 3 || s >= vb_depth || !sl->busy) {
                w_start("vblk-bad-used-id vcpu="); w_u(me); w_s(" id="); w_u(e.id);
                finish(false, why);
            }
            if (sl->status) {
                w_start("vblk-status vcpu="); w_u(me);
                w_s(" status="); w_u(sl->status);
                w_s(" type="); w_u(sl->hdr.type);
                w_s(" lba="); w_u(sl->hdr.sector);
                finish(false, why);
            }
            r->hist[bucket_of(rdtsc() - sl->t0)]++;
            if (ph == PH_VERIFY) {
                if (!verify(v, (uint32_t *)(v->data + s * vb_bs), sl->hdr.sector, sl->owner, sl->pass))
                    r->errors++;
                v->reads++;
            } else if (ph == PH_WRITE) {
                v->writes++;
            } else {
                v->flushes++;
            }
            if (how == WAKE_IRQ) v->irq_done++;
            if (how == WAKE_TIMER) v->timer_done++;
            v->requests++;
            sl->busy = 0;
            done++;
        }
    }
    return n;
}

static void vb_barrier(uint32_t gen)
{
    __atomic_fetch_add(&vb_arrive, 1, __ATOMIC_SEQ_CST);
    while (READ_ONCE(vb_arrive) < gen * ncpus) pause();
}

static uint32_t verify_count(uint32_t written) { return written < vb_span ? written : vb_span; }

void vblk_run(uint32_t me)
{
    struct vq *v = &vqs[me];
    if (vb_msix && vb_tick_us) {
        wr32(LAPIC_BASE + 0x3e0, 0xb);                     /* divide by 1: 1 GHz */
        wr32(LAPIC_BASE + 0x320, TIMER_VECTOR | 1 << 17);  /* periodic */
        wr32(LAPIC_BASE + 0x380, vb_tick_us * 1000);
    }
    uint64_t t0 = rdtsc();
    if (vb_mode == M_CHECK) {
        v->written = vb_count;
        run_phase(me, PH_VERIFY, me, verify_count(vb_count), vb_count);
    } else {
        v->written = run_phase(me, PH_WRITE, me, vb_count, 0);
        if (vb_mode == M_FLUSH) {
            run_phase(me, PH_FLUSH, me, 1, 0);
        } else {
            run_phase(me, PH_VERIFY, me, verify_count(v->written), v->written);
            if (ncpus > 1) {
                vb_barrier(1);
                uint32_t other = (me + 1) % ncpus, w = READ_ONCE(vqs[other].written);
                run_phase(me, PH_VERIFY, other, verify_count(w), w);
            }
        }
    }
    result[me].tsc = rdtsc() - t0;
    result[me].count = v->requests;
    if (vb_msix) {
        wr32(LAPIC_BASE + 0x380, 0);
        wr32(LAPIC_BASE + 0x320, 1 << 16);                 /* masked */
    }
}

void vblk_report(uint32_t c)
{
    struct vq *v = &vqs[c];
    puts(" irqs="); putu(vb_msix ? vblk_irqs[apic_id_of[c]] : 0);
    puts(" irq_done="); putu(v->irq_done);
    puts(" tmr_done="); putu(v->timer_done);
    puts(" tmr="); putu(v->timer_wakes);
    puts(" writes="); putu(v->writes);
    puts(" reads="); putu(v->reads);
    puts(" flushes="); putu(v->flushes);
    puts(" kicks="); putu(v->kicks);
    if (c == 0) {
        puts(" gen_reads="); putu(vb_gen_reads);
    }
    if (vb_isr_mode) {
        puts(" isr_reads="); putu(v->isr_reads);
        puts(" isr_hits="); putu(v->isr_hits);
    }
    puts(" mode="); puts(vb_mode == M_RW ? "rw" : vb_mode == M_CHECK ? "check" : "flush");
    puts(" irq="); puts(vb_irq_name());
    puts(" depth="); putu(vb_depth);
    puts(" bs="); putu(vb_bs);
    puts(" data="); puts(vb_hdr_only ? "hdr" : "full");
}

/*
 * irq=isr, every request reaped: the last completion's INTx may still be
 * high (no vCPU read the ISR after it) or still coming (the main loop
 * raises it after the IOThread has completed the request).  Read the ISR
 * until the PCI status register says that INTx is low; a second of reads
 * that leave it high is a line that no ISR read lowers.
 */
static void vb_check_intx(void)
{
    uint64_t hits = 0, start = rdtsc();
    for (uint32_t c = 0; c < ncpus; c++) hits += vqs[c].isr_hits;
    if (!hits) die("vblk-no-isr");
    for (;;) {
        uint8_t isr = rd8(vb_isr);
        uint16_t status = cfg16(0x06);
        if (!(status & 0x08)) return;                  /* PCI_STATUS_INTERRUPT */
        if (rdtsc() - start > 1000ull * tsc_khz) {
            w_start("vblk-intx-stuck isr="); w_u(isr);
            w_s(" status="); w_x(status);
            finish(false, why);
        }
    }
}

void vblk_finish(void)
{
    uint64_t errors = 0;
    for (uint32_t c = 0; c < ncpus; c++) errors += result[c].errors;
    for (uint32_t c = 0; c < ncpus; c++) {
        struct vq *v = &vqs[c];
        if (!v->bad) continue;
        w_start("vblk-mismatch vcpu="); w_u(c);
        w_s(" owner="); w_u(v->bad_owner);
        w_s(" lba="); w_u(v->bad_lba);
        w_s(" off="); w_u(v->bad_off);
        w_s(" want="); w_x(v->bad_want);
        w_s(" got="); w_x(v->bad_got);
        w_s(" errors="); w_u(errors);
        finish(false, why);
    }
    for (uint32_t c = 0; c < ncpus; c++) {
        struct vq *v = &vqs[c];
        if (!vb_secs_tsc && v->written != vb_count) die("vblk-short-count");
        if (vb_mode == M_FLUSH && v->flushes != 1) die("vblk-no-flush");
    }
    if (vb_isr_mode) vb_check_intx();
    if (vb_mode == M_FLUSH) {
        puts("TINY FLUSHED\n");
        for (;;) asm volatile("cli; hlt");
    }
    finish(true, "");
}
