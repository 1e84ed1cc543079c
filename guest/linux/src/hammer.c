/*
 * hammer: hit one I/O port or one MMIO address as fast as possible from
 * several threads, each pinned to its own vCPU, and report per-thread
 * counts, rates and a latency histogram as machine-readable lines.
 *
 *   hammer port=0x80 op=outb threads=2 secs=3
 *   hammer port=0x608 op=inl threads=2 count=1000000     (PIIX4 PM timer, -M pc)
 *   hammer mmio=0xfed000f0 op=read32 threads=1 secs=3    (HPET main counter)
 *
 * Parameters (key=value, any order; a leading "--" is accepted):
 *   port=N      I/O port (iopl(3), then in/out instructions)
 *   mmio=ADDR   physical address, mapped from memdev (default /dev/mem)
 *   memdev=PATH device to mmap for mmio (/dev/mem maps ADDR's page; any
 *               other device, e.g. /dev/hpet, is mapped at offset 0 and
 *               ADDR's offset within its page is used; /dev/hpet only
 *               opens read-only, so only read ops work there)
 *   op=OP       port: inb inw inl outb outw outl        (default inb)
 *               mmio: read8 read16 read32 read64 write8 write16 write32 write64
 *                     (default read32)
 *   val=N       value written by the out and write ops (default 0)
 *   threads=N   number of threads (default: number of online CPUs)
 *   cpus=A,B,.. vCPU of each thread (default: thread i on online CPU i mod n)
 *   secs=T      run for T seconds (default 3), or
 *   count=N     do N accesses per thread
 *   lat=1|0     time every access (default 1); lat=0 measures only the rate
 *   timer=tsc|mono  per-access timer: rdtsc (calibrated against
 *               CLOCK_MONOTONIC_RAW, default) or clock_gettime(CLOCK_MONOTONIC)
 *   hpet_enable=1|0  for an address in the HPET page (0xFED00000), set
 *               ENABLE_CNF (bit 0 of 0xFED00010) if clear (default 1)
 *   hist=1|0    print HIST lines (default 1)
 *
 * Output (one line each, space-separated key=value):
 *   INFO hammer ...                              setup facts
 *   RESULT scenario=hammer target=port:0x80 op=outb vcpu=0 thread=0 count=..
 *          secs=.. rate=.. mean_ns=.. p50_ns=.. p90_ns=.. p99_ns=.. max_ns=..
 *          [first=0x.. last=0x..]                (reads: first/last value read)
 *   HIST vcpu=0 thread=0 target=.. op=.. bucket_ns=B count=C
 *          (accesses with latency in [B, 2B) ns; B=0 means [0,1))
 *   RESULT scenario=hammer target=.. op=.. vcpu=all threads=N count=.. secs=.. rate=..
 * Rates are accesses per second; with lat=1 they include the timer reads.
 * Percentiles come from 8 sub-buckets per power of two (about 12% accurate).
 * Exit status: 0 on success, 1 on error (message on stderr and an ERROR line).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define NFINE 512                       /* fine histogram buckets */
#define MAXTHREADS 256

enum { OP_INB, OP_INW, OP_INL, OP_OUTB, OP_OUTW, OP_OUTL,
       OP_R8, OP_R16, OP_R32, OP_R64, OP_W8, OP_W16, OP_W32, OP_W64 };
static const char *op_names[] = { "inb", "inw", "inl", "outb", "outw", "outl",
    "read8", "read16", "read32", "read64", "write8", "write16", "write32", "write64" };

/* ---- parameters */
static int is_port = -1;                /* 1 port, 0 mmio, -1 unset */
static uint64_t target;                 /* port number or physical address */
static const char *memdev = "/dev/mem";
static int op = -1;
static uint64_t val;
static int nthreads;
static int cpus[MAXTHREADS], ncpus_given;
static double secs = 3;
static uint64_t count;                  /* 0: time based */
static int lat = 1, use_tsc = 1, hpet_enable = 1, print_hist = 1;

/* ---- state */
static volatile uint8_t *mmio_ptr;
static volatile int stop;
static pthread_barrier_t barrier;
static uint64_t tsc_mult;               /* ns = (ticks * tsc_mult) >> 32 */
static char target_str[64];

struct thread {
    pthread_t tid;
    int idx, cpu, ran_on;
    uint64_t count;
    double secs;
    uint64_t first, last;               /* first/last value read */
    uint64_t sum_ns, max_ns;
    uint64_t hist[NFINE];
    char err[128];
};
static struct thread th[MAXTHREADS];

static void die(const char *fmt, ...)
{
    va_list ap;
    char buf[512];
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fprintf(stderr, "hammer: %s\n", buf);
    printf("ERROR scenario=hammer msg=\"%s\"\n", buf);
    fflush(stdout);
    exit(1);
}

static uint64_t parse_num(const char *k, const char *v)
{
    char *end;
    errno = 0;
    uint64_t n = strtoull(v, &end, 0);
    if (errno || end == v || *end)
        die("bad number for %s: '%s'", k, v);
    return n;
}

static double now_raw(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

static inline uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* fine bucket: exact below 8 ns, then 8 sub-buckets per power of two */
static inline int fine_idx(uint64_t ns)
{
    if (ns < 8)
        return (int)ns;
    int l = 63 - __builtin_clzll(ns);
    return (l - 2) * 8 + (int)((ns >> (l - 3)) & 7);
}

static uint64_t fine_lo(int i)
{
    if (i < 8)
        return i;
    int l = i / 8 + 2;
    return (uint64_t)(8 + i % 8) << (l - 3);
}

static uint64_t fine_width(int i)
{
    return i < 8 ? 1 : 1ull << (i / 8 - 1);
}

/* ---- the access loops: one instance per op, no dispatch inside the loop */
#define PORT_IN(sfx, type)                                                  \
    static inline uint64_t do_##sfx(void)                                  \
    {                                                                       \
        type v;                                                             \
        __asm__ volatile("in" #sfx " %w1, %0" : "=a"(v) : "Nd"((uint16_t)target)); \
        return v;                                                           \
    }
#define PORT_OUT(sfx, type)                                                 \
    static inline uint64_t do_out##sfx(void)                               \
    {                                                                       \
        __asm__ volatile("out" #sfx " %0, %w1" : : "a"((type)val), "Nd"((uint16_t)target)); \
        return 0;                                                           \
    }
PORT_IN(b, uint8_t) PORT_IN(w, uint16_t) PORT_IN(l, uint32_t)
PORT_OUT(b, uint8_t) PORT_OUT(w, uint16_t) PORT_OUT(l, uint32_t)
#define MMIO_RD(bits)                                                       \
    static inline uint64_t do_r##bits(void)                                 \
    { return *(volatile uint##bits##_t *)mmio_ptr; }
#define MMIO_WR(bits)                                                       \
    static inline uint64_t do_w##bits(void)                                 \
    { *(volatile uint##bits##_t *)mmio_ptr = (uint##bits##_t)val; return 0; }
MMIO_RD(8) MMIO_RD(16) MMIO_RD(32) MMIO_RD(64)
MMIO_WR(8) MMIO_WR(16) MMIO_WR(32) MMIO_WR(64)

#define LOOP(fn, is_read)                                                   \
    static void loop_##fn(struct thread *t)                                 \
    {                                                                       \
        uint64_t n = 0, v = 0, sum = 0, max = 0;                            \
        if (is_read)                                                        \
            t->first = fn();                                                \
        if (!lat) {                                                         \
            while (count ? n < count : !stop) {                             \
                v = fn();                                                   \
                n++;                                                        \
            }                                                               \
        } else if (use_tsc) {                                               \
            while (count ? n < count : !stop) {                             \
                uint64_t t0 = rdtsc();                                      \
                v = fn();                                                   \
                uint64_t d = ((rdtsc() - t0) * tsc_mult) >> 32;             \
                t->hist[fine_idx(d)]++;                                     \
                sum += d;                                                   \
                if (d > max)                                                \
                    max = d;                                                \
                n++;                                                        \
            }                                                               \
        } else {                                                            \
            while (count ? n < count : !stop) {                             \
                uint64_t t0 = mono_ns();                                    \
                v = fn();                                                   \
                uint64_t d = mono_ns() - t0;                                \
                t->hist[fine_idx(d)]++;                                     \
                sum += d;                                                   \
                if (d > max)                                                \
                    max = d;                                                \
                n++;                                                        \
            }                                                               \
        }                                                                   \
        t->count = n;                                                       \
        t->last = v;                                                        \
        t->sum_ns = sum;                                                    \
        t->max_ns = max;                                                    \
    }
LOOP(do_b, 1) LOOP(do_w, 1) LOOP(do_l, 1)
LOOP(do_outb, 0) LOOP(do_outw, 0) LOOP(do_outl, 0)
LOOP(do_r8, 1) LOOP(do_r16, 1) LOOP(do_r32, 1) LOOP(do_r64, 1)
LOOP(do_w8, 0) LOOP(do_w16, 0) LOOP(do_w32, 0) LOOP(do_w64, 0)

static void (*const loops[])(struct thread *) = {
    loop_do_b, loop_do_w, loop_do_l, loop_do_outb, loop_do_outw, loop_do_outl,
    loop_do_r8, loop_do_r16, loop_do_r32, loop_do_r64,
    loop_do_w8, loop_do_w16, loop_do_w32, loop_do_w64,
};

static void *thread_main(void *arg)
{
    struct thread *t = arg;
    cpu_set_t set;

    CPU_ZERO(&set);
    CPU_SET(t->cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set))
        snprintf(t->err, sizeof(t->err), "sched_setaffinity(cpu %d): %s",
                 t->cpu, strerror(errno));
    pthread_barrier_wait(&barrier);     /* all pinned: go */
    if (t->err[0])
        return NULL;
    t->ran_on = sched_getcpu();
    double t0 = now_raw();
    loops[op](t);
    t->secs = now_raw() - t0;
    return NULL;
}

/* ns per TSC tick, measured over ~100 ms */
static void calibrate_tsc(void)
{
    double w0 = now_raw();
    uint64_t c0 = rdtsc();
    while (now_raw() - w0 < 0.1)
        ;
    double w1 = now_raw();
    uint64_t c1 = rdtsc();
    double ns_per_tick = (w1 - w0) * 1e9 / (double)(c1 - c0);
    tsc_mult = (uint64_t)(ns_per_tick * 4294967296.0);
    printf("INFO hammer tsc_mhz=%.1f\n", 1e3 / ns_per_tick);
}

static uint64_t quantile(const uint64_t *h, uint64_t total, double q)
{
    uint64_t want = (uint64_t)(q * total), cum = 0;
    if (want >= total)
        want = total - 1;
    for (int i = 0; i < NFINE; i++) {
        cum += h[i];
        if (cum > want)
            return fine_lo(i) + fine_width(i) / 2;
    }
    return 0;
}

static void map_mmio(int is_read)
{
    long pg = sysconf(_SC_PAGESIZE);
    int is_devmem = strcmp(memdev, "/dev/mem") == 0;
    int prot = PROT_READ | PROT_WRITE;
    int fd = open(memdev, O_RDWR | O_SYNC);
    if (fd < 0 && !is_devmem && is_read) {
        /* /dev/hpet refuses write opens: map it read-only */
        fd = open(memdev, O_RDONLY);
        prot = PROT_READ;
    }
    if (fd < 0)
        die("open %s: %s", memdev, strerror(errno));
    off_t off = is_devmem ? (off_t)(target & ~(uint64_t)(pg - 1)) : 0;
    void *p = mmap(NULL, pg, prot, MAP_SHARED, fd, off);
    if (p == MAP_FAILED)
        die("mmap %s at 0x%llx: %s%s", memdev, (unsigned long long)off, strerror(errno),
            errno == EPERM ? " (CONFIG_IO_STRICT_DEVMEM: boot with iomem=relaxed, or use memdev=/dev/hpet)" : "");
    close(fd);
    volatile uint8_t *page = p;
    mmio_ptr = page + (target & (pg - 1));

    /* HPET: the main counter only runs with ENABLE_CNF set */
    if ((target & ~0x3ffull) == 0xfed00000ull && hpet_enable) {
        volatile uint64_t *cap = (volatile uint64_t *)(page + 0x000);
        volatile uint64_t *cfg = (volatile uint64_t *)(page + 0x010);
        uint64_t c = *cfg;
        int set = 0;
        if (!(c & 1)) {
            if (!(prot & PROT_WRITE))
                die("HPET disabled (config=0x%" PRIx64 ") and %s is mapped read-only", c, memdev);
            *cfg = c | 1;
            set = 1;
        }
        printf("INFO hammer hpet cap=0x%016" PRIx64 " config=0x%" PRIx64 " enabled_by_hammer=%d\n",
               *cap, *cfg, set);
    }
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        while (*a == '-')
            a++;
        char *eq = strchr(a, '=');
        if (!eq)
            die("argument '%s' is not key=value", argv[i]);
        *eq = 0;
        const char *k = a, *v = eq + 1;
        if (!strcmp(k, "port")) {
            is_port = 1;
            target = parse_num(k, v);
            if (target > 0xffff)
                die("port 0x%llx out of range", (unsigned long long)target);
        } else if (!strcmp(k, "mmio")) {
            is_port = 0;
            target = parse_num(k, v);
        } else if (!strcmp(k, "memdev")) {
            memdev = v;
        } else if (!strcmp(k, "op")) {
            for (size_t j = 0; j < sizeof(op_names) / sizeof(op_names[0]); j++)
                if (!strcmp(v, op_names[j]))
                    op = (int)j;
            if (op < 0)
                die("unknown op '%s'", v);
        } else if (!strcmp(k, "val")) {
            val = parse_num(k, v);
        } else if (!strcmp(k, "threads")) {
            nthreads = (int)parse_num(k, v);
        } else if (!strcmp(k, "cpus")) {
            char *s = strdup(v), *tok, *save = NULL;
            for (tok = strtok_r(s, ",:", &save); tok; tok = strtok_r(NULL, ",:", &save)) {
                if (ncpus_given >= MAXTHREADS)
                    die("too many cpus");
                cpus[ncpus_given++] = (int)parse_num(k, tok);
            }
        } else if (!strcmp(k, "secs")) {
            secs = atof(v);
            if (secs <= 0)
                die("bad secs '%s'", v);
        } else if (!strcmp(k, "count")) {
            count = parse_num(k, v);
        } else if (!strcmp(k, "lat")) {
            lat = (int)parse_num(k, v);
        } else if (!strcmp(k, "timer")) {
            if (!strcmp(v, "tsc"))
                use_tsc = 1;
            else if (!strcmp(v, "mono"))
                use_tsc = 0;
            else
                die("timer must be tsc or mono");
        } else if (!strcmp(k, "hpet_enable")) {
            hpet_enable = (int)parse_num(k, v);
        } else if (!strcmp(k, "hist")) {
            print_hist = (int)parse_num(k, v);
        } else {
            die("unknown parameter '%s'", k);
        }
    }
    if (is_port < 0)
        die("give port=N or mmio=ADDR");
    if (op < 0)
        op = is_port ? OP_INB : OP_R32;
    if (is_port != (op <= OP_OUTL))
        die("op %s does not fit a %s target", op_names[op], is_port ? "port" : "mmio");
    int is_read = op <= OP_INL || (op >= OP_R8 && op <= OP_R64);

    int online = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (nthreads <= 0)
        nthreads = ncpus_given ? ncpus_given : online;
    if (nthreads > MAXTHREADS)
        die("at most %d threads", MAXTHREADS);
    for (int i = 0; i < nthreads; i++)
        th[i] = (struct thread){ .idx = i, .ran_on = -1,
                                 .cpu = ncpus_given ? cpus[i % ncpus_given] : i % online };

    if (is_port)
        snprintf(target_str, sizeof(target_str), "port:0x%llx", (unsigned long long)target);
    else
        snprintf(target_str, sizeof(target_str), "mmio:0x%llx", (unsigned long long)target);
    printf("INFO hammer target=%s op=%s threads=%d cpus_online=%d mode=%s lat=%d timer=%s\n",
           target_str, op_names[op], nthreads, online, count ? "count" : "secs", lat,
           use_tsc ? "tsc" : "mono");
    if (nthreads > online)
        printf("INFO hammer warning=more_threads_than_cpus\n");

    if (is_port) {
        if (iopl(3))
            die("iopl(3): %s", strerror(errno));
    } else {
        map_mmio(is_read);
    }
    if (lat && use_tsc)
        calibrate_tsc();
    fflush(stdout);

    pthread_barrier_init(&barrier, NULL, nthreads + 1);
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&th[i].tid, NULL, thread_main, &th[i]))
            die("pthread_create failed");
    pthread_barrier_wait(&barrier);
    if (!count) {
        struct timespec ts = { (time_t)secs, (long)((secs - (time_t)secs) * 1e9) };
        while (nanosleep(&ts, &ts) && errno == EINTR)
            ;
        stop = 1;
    }
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i].tid, NULL);

    uint64_t total = 0;
    double maxsecs = 0;
    int failed = 0;
    for (int i = 0; i < nthreads; i++) {
        struct thread *t = &th[i];
        if (t->err[0]) {
            printf("ERROR scenario=hammer thread=%d msg=\"%s\"\n", i, t->err);
            failed = 1;
            continue;
        }
        total += t->count;
        if (t->secs > maxsecs)
            maxsecs = t->secs;
        printf("RESULT scenario=hammer target=%s op=%s vcpu=%d thread=%d count=%" PRIu64
               " secs=%.3f rate=%.0f", target_str, op_names[op], t->ran_on, i, t->count,
               t->secs, t->secs > 0 ? t->count / t->secs : 0);
        if (lat && t->count)
            printf(" mean_ns=%.0f p50_ns=%" PRIu64 " p90_ns=%" PRIu64 " p99_ns=%" PRIu64
                   " max_ns=%" PRIu64, (double)t->sum_ns / t->count,
                   quantile(t->hist, t->count, 0.50), quantile(t->hist, t->count, 0.90),
                   quantile(t->hist, t->count, 0.99), t->max_ns);
        if (is_read)
            printf(" first=0x%" PRIx64 " last=0x%" PRIx64, t->first, t->last);
        printf("\n");
        if (t->ran_on != t->cpu)
            printf("INFO hammer warning=thread_%d_not_on_cpu_%d\n", i, t->cpu);
        if (lat && print_hist) {
            /* fold fine buckets into log2 buckets: [2^k, 2^(k+1)) */
            uint64_t h2[65] = { 0 };
            for (int j = 0; j < NFINE; j++) {
                uint64_t lo = fine_lo(j);
                h2[lo ? 64 - __builtin_clzll(lo) : 0] += t->hist[j];
            }
            for (int k = 0; k < 65; k++)
                if (h2[k])
                    printf("HIST vcpu=%d thread=%d target=%s op=%s bucket_ns=%" PRIu64
                           " count=%" PRIu64 "\n", t->ran_on, i, target_str, op_names[op],
                           k ? (uint64_t)1 << (k - 1) : 0, h2[k]);
        }
    }
    printf("RESULT scenario=hammer target=%s op=%s vcpu=all threads=%d count=%" PRIu64
           " secs=%.3f rate=%.0f\n", target_str, op_names[op], nthreads, total, maxsecs,
           maxsecs > 0 ? total / maxsecs : 0);
    fflush(stdout);
    return failed;
}
