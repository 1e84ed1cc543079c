/*
 * kvm-floor: the smallest VMM that runs the tiny SMP firmware (guest/tiny).
 *
 *   kvm-floor [-smp N] [-m MB] [-rom PATH] key=value ...
 *   (-rom defaults to ../guest/tiny/tiny.rom next to the binary)
 *
 * It is the "floor" of the benchmarks: the same guest as under QEMU, but
 * every exit is answered by the vCPU thread that took it, with no lock at
 * all.  Shared state is either read-only after setup or atomic; fw_cfg
 * selector/offset and the console buffer are per thread.
 *
 * Devices (only what guest/tiny touches, as on QEMU's -M pc):
 *   0x510/0x511  fw_cfg: NB_CPUS, FILE_DIR with one file "opt/tiny/args"
 *   0xcf8/0xcfc  PCI config: no devices (reads all ones, writes ignored)
 *   0x608        ACPI PM timer, 24 bits at 3.579545 MHz
 *   0x70/0x71    RTC: register reads return 0x26 (status A after reset)
 *   0x80, 0x21, 0xa1  ignored
 *   0xe9         debug console -> stdout
 *   0xf4         isa-debug-exit: exit((val << 1) | 1)
 *   0xfed00000   HPET: general config (0x10) and main counter (0xf0, 100 MHz)
 * PIC/IOAPIC/LAPIC are KVM's in-kernel irqchip; there is no PIT.
 * As QEMU does, the RTC index port and the PCI config address are
 * coalesced PIO (KVM queues the writes in a ring instead of exiting);
 * their writes are ignored, so an access to the RTC data or PCI config
 * data port just empties the ring.
 * Anything else: reads give all ones, writes are dropped, and the number of
 * such accesses is reported on stderr at exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define ROM_SIZE    0x10000
#define ROM_LOW     0xf0000u          /* copy inside RAM, below 1 MiB */
#define ROM_HIGH    0xffff0000u       /* reset-vector alias, own memslot */
#define HPET_BASE   0xfed00000u
#define HPET_SIZE   0x400
#define PM_TMR_PORT 0x608
#define PM_FREQ     3579545ull
#define MAX_VCPUS   64
#define FW_CFG_ARGS_KEY 0x20

/* ---- configuration and state shared by all threads ---- */
static int kvm_fd, vm_fd, nr_vcpus = 1, run_size;
static int coalesced_page;      /* the ring's page in kvm_run, or 0 */
static size_t ram_size = 128u << 20;
static const char *rom_path;           /* default: next to the binary */
static char fw_args[4096];            /* read-only once the vCPUs run */
static size_t fw_args_len;
static uint8_t fw_dir[4 + 64];        /* FW_CFG_FILE_DIR blob, read-only */
static struct kvm_cpuid2 *cpuid;      /* supported CPUID, copied per vCPU */

static atomic_uint_fast64_t hpet_config;       /* HPET general config */
static atomic_uint_fast64_t hpet_start_ns;     /* CLOCK_MONOTONIC at enable */
static atomic_uint_fast64_t unknown_io, unknown_mmio;
static atomic_uint_fast64_t last_unknown;      /* (is_mmio << 63) | addr */

/* ---- per-thread state ---- */
static __thread uint16_t fw_sel;
static __thread uint32_t fw_off;
static __thread char con_buf[256];
static __thread size_t con_len;

static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kvm-floor: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* ---- debug console: per-thread line buffer, written with write(2) ---- */
static void con_flush(void)
{
    size_t done = 0;
    while (done < con_len) {
        ssize_t n = write(1, con_buf + done, con_len - done);
        if (n <= 0) break;
        done += n;
    }
    con_len = 0;
}

static void con_putc(char c)
{
    con_buf[con_len++] = c;
    if (c == '\n' || con_len == sizeof(con_buf)) con_flush();
}

/* Exit the whole process (all vCPU threads) after flushing this thread's
 * console output; only the BSP prints, so that is all there is. */
static void __attribute__((noreturn)) vm_exit(int status)
{
    con_flush();
    uint64_t io = atomic_load(&unknown_io), mm = atomic_load(&unknown_mmio);
    if (io || mm) {
        uint64_t last = atomic_load(&last_unknown);
        fprintf(stderr, "kvm-floor: warning: %llu unknown I/O and %llu unknown MMIO "
                "accesses (last: %s 0x%llx)\n", (unsigned long long)io,
                (unsigned long long)mm, last >> 63 ? "mmio" : "port",
                (unsigned long long)(last & ~(1ull << 63)));
    }
    exit(status);
}

static void note_unknown(int mmio, uint64_t addr)
{
    atomic_fetch_add(mmio ? &unknown_mmio : &unknown_io, 1);
    atomic_store(&last_unknown, (uint64_t)mmio << 63 | addr);
}

/* ---- fw_cfg (legacy I/O interface, byte reads from 0x511) ---- */
static uint8_t fw_cfg_read(void)
{
    uint32_t off = fw_off++;
    switch (fw_sel) {
    case 0x05:                                   /* FW_CFG_NB_CPUS, LE16 */
        return off < 2 ? (uint8_t)(nr_vcpus >> (8 * off)) : 0;
    case 0x19:                                   /* FW_CFG_FILE_DIR */
        return off < sizeof(fw_dir) ? fw_dir[off] : 0;
    case FW_CFG_ARGS_KEY:
        return off < fw_args_len ? (uint8_t)fw_args[off] : 0;
    default:
        return 0;
    }
}

static void put_be(uint8_t *p, uint32_t v, int n)
{
    for (int i = 0; i < n; i++) p[i] = v >> (8 * (n - 1 - i));
}

/* ---- port I/O: one access of @size bytes ---- */
static void pio(uint16_t port, int is_write, int size, uint8_t *data)
{
    uint32_t val = 0;
    if (is_write) memcpy(&val, data, size);

    switch (port) {
    case 0x80: case 0x21: case 0xa1: case 0x70:  /* POST, PIC masks, RTC index */
    case 0xcf8:                                  /* PCI config address */
        if (is_write) return;
        break;
    case 0xcfc: case 0xcfd: case 0xcfe: case 0xcff:   /* no PCI devices */
        if (!is_write) memset(data, 0xff, size);
        return;
    case 0x510:                                  /* fw_cfg selector */
        if (!is_write) break;
        fw_sel = val;
        fw_off = 0;
        return;
    case 0x511:                                  /* fw_cfg data */
        if (is_write) return;
        for (int i = 0; i < size; i++) data[i] = fw_cfg_read();
        return;
    case 0x71:                                   /* RTC data: status A */
        if (!is_write) { memset(data, 0, size); data[0] = 0x26; }
        return;
    case PM_TMR_PORT:                            /* ACPI PM timer, 24-bit */
        if (is_write) return;
        val = (uint32_t)((unsigned __int128)now_ns() * PM_FREQ / 1000000000ull) & 0xffffff;
        memcpy(data, &val, size);
        return;
    case 0xe9:                                   /* debug console */
        if (!is_write) { data[0] = 0xe9; return; }   /* QEMU's readback */
        con_putc((char)val);
        return;
    case 0xf4:                                   /* isa-debug-exit */
        if (!is_write) break;
        vm_exit((int)((val << 1) | 1));
    }
    note_unknown(0, port);
    if (!is_write) memset(data, 0xff, size);
}

/* ---- MMIO: only the HPET is ever reached (LAPIC is in-kernel) ---- */
static uint64_t hpet_counter(void)
{
    if (!(atomic_load(&hpet_config) & 1)) return 0;
    return (now_ns() - atomic_load(&hpet_start_ns)) / 10;    /* 100 MHz */
}

static void mmio(uint64_t addr, int is_write, int len, uint8_t *data)
{
    uint64_t val = 0;
    if (is_write) memcpy(&val, data, len);

    if (addr >= HPET_BASE && addr < HPET_BASE + HPET_SIZE) {
        uint64_t off = addr - HPET_BASE, reg = off & ~7ull;
        unsigned shift = (off & 7) * 8;
        if (is_write) {
            if (reg == 0x10 && shift == 0) {
                /* Start the counter on a 0 -> 1 transition of ENABLE. */
                uint64_t old = atomic_exchange(&hpet_config, val & 3);
                if ((val & 1) && !(old & 1)) atomic_store(&hpet_start_ns, now_ns());
            }
            return;
        }
        uint64_t r = reg == 0x10 ? atomic_load(&hpet_config) :
                     reg == 0xf0 ? hpet_counter() : 0;
        r >>= shift;
        memcpy(data, &r, len);
        return;
    }
    note_unknown(1, addr);
    if (!is_write) memset(data, 0xff, len);
}

/* ---- vCPU threads ---- */
static void dump_regs(int fd, int id, const char *why, struct kvm_run *run)
{
    struct kvm_regs r;
    struct kvm_sregs s;
    con_flush();
    fprintf(stderr, "kvm-floor: vcpu %d: %s (exit reason %u)\n", id, why, run->exit_reason);
    if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
        fprintf(stderr, "  suberror %u\n", run->internal.suberror);
    if (run->exit_reason == KVM_EXIT_FAIL_ENTRY)
        fprintf(stderr, "  hardware_entry_failure_reason 0x%llx\n",
                (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
    if (ioctl(fd, KVM_GET_REGS, &r) == 0)
        fprintf(stderr, "  rip=%llx rsp=%llx rflags=%llx\n"
                "  rax=%llx rbx=%llx rcx=%llx rdx=%llx rsi=%llx rdi=%llx rbp=%llx\n",
                r.rip, r.rsp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp);
    if (ioctl(fd, KVM_GET_SREGS, &s) == 0)
        fprintf(stderr, "  cs=%x base=%llx cr0=%llx\n", s.cs.selector, s.cs.base, s.cr0);
}

static void *vcpu_thread(void *arg)
{
    int id = (int)(intptr_t)arg;
    int fd = ioctl(vm_fd, KVM_CREATE_VCPU, id);
    if (fd < 0) die("KVM_CREATE_VCPU %d: %s", id, strerror(errno));

    /* CPUID as KVM supports it, with this vCPU's APIC ID filled in. */
    size_t sz = sizeof(*cpuid) + cpuid->nent * sizeof(cpuid->entries[0]);
    struct kvm_cpuid2 *c = malloc(sz);
    memcpy(c, cpuid, sz);
    for (unsigned i = 0; i < c->nent; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[i];
        if (e->function == 1)
            e->ebx = (e->ebx & 0x00ffffff) | (uint32_t)id << 24;
        if (e->function == 0xb || e->function == 0x1f)
            e->edx = id;                         /* x2APIC ID */
    }
    if (ioctl(fd, KVM_SET_CPUID2, c) < 0) die("KVM_SET_CPUID2: %s", strerror(errno));
    free(c);

    struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (run == MAP_FAILED) die("mmap kvm_run: %s", strerror(errno));

    /* vCPU 0 starts at the reset vector; the others wait for INIT/SIPI
     * inside KVM_RUN (the in-kernel LAPIC handles that). */
    for (;;) {
        if (ioctl(fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            die("KVM_RUN vcpu %d: %s", id, strerror(errno));
        }
        switch (run->exit_reason) {
        case KVM_EXIT_IO: {
            uint8_t *p = (uint8_t *)run + run->io.data_offset;
            if (coalesced_page && (run->io.port == 0x71 || run->io.port >= 0xcfc)) {
                struct kvm_coalesced_mmio_ring *ring =
                    (void *)((uint8_t *)run + coalesced_page * getpagesize());
                atomic_store(&ring->first, atomic_load(&ring->last));
            }
            for (uint32_t i = 0; i < run->io.count; i++, p += run->io.size)
                pio(run->io.port, run->io.direction == KVM_EXIT_IO_OUT, run->io.size, p);
            break;
        }
        case KVM_EXIT_MMIO:
            mmio(run->mmio.phys_addr, run->mmio.is_write, run->mmio.len, run->mmio.data);
            break;
        case KVM_EXIT_INTR:
            break;
        case KVM_EXIT_SHUTDOWN:
            dump_regs(fd, id, "shutdown (triple fault)", run);
            vm_exit(2);
        case KVM_EXIT_INTERNAL_ERROR:
            dump_regs(fd, id, "KVM internal error", run);
            vm_exit(2);
        case KVM_EXIT_FAIL_ENTRY:
            dump_regs(fd, id, "entry failed", run);
            vm_exit(2);
        default:
            dump_regs(fd, id, "unexpected exit", run);
            vm_exit(2);
        }
    }
}

/* ---- setup ---- */
static void add_slot(int slot, uint64_t gpa, size_t size, void *host)
{
    struct kvm_userspace_memory_region r = {
        .slot = slot, .guest_phys_addr = gpa, .memory_size = size,
        .userspace_addr = (uintptr_t)host,
    };
    if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
        die("KVM_SET_USER_MEMORY_REGION %d: %s", slot, strerror(errno));
}

static void usage(void)
{
    fprintf(stderr, "usage: kvm-floor [-smp N] [-m MB] [-rom PATH] key=value ...\n");
    exit(1);
}

int main(int argc, char **argv)
{
    int i;
    for (i = 1; i < argc && argv[i][0] == '-'; i += 2) {
        if (i + 1 >= argc) usage();
        if (!strcmp(argv[i], "-smp")) nr_vcpus = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-m")) ram_size = (size_t)atol(argv[i + 1]) << 20;
        else if (!strcmp(argv[i], "-rom")) rom_path = argv[i + 1];
        else usage();
    }
    if (nr_vcpus < 1 || nr_vcpus > MAX_VCPUS) die("-smp must be 1..%d", MAX_VCPUS);
    if (ram_size < (4u << 20) || ram_size > (2048ull << 20)) die("-m must be 4..2048");
    /* The firmware's key=value args, joined by spaces (QEMU's -fw_cfg string). */
    for (; i < argc; i++) {
        size_t n = strlen(argv[i]);
        if (fw_args_len + n + 1 >= sizeof(fw_args)) die("arguments too long");
        if (fw_args_len) fw_args[fw_args_len++] = ' ';
        memcpy(fw_args + fw_args_len, argv[i], n);
        fw_args_len += n;
    }
    put_be(fw_dir, 1, 4);                        /* one file */
    put_be(fw_dir + 4, fw_args_len, 4);          /* size */
    put_be(fw_dir + 8, FW_CFG_ARGS_KEY, 2);      /* select; reserved stays 0 */
    strcpy((char *)fw_dir + 12, "opt/tiny/args");

    /* ROM image; by default out/guest/tiny/tiny.rom seen from out/bench/. */
    static uint8_t rom[ROM_SIZE];
    static char def_rom[4096];
    if (!rom_path) {
        ssize_t n = readlink("/proc/self/exe", def_rom, sizeof(def_rom) - 64);
        char *slash = n > 0 ? memrchr(def_rom, '/', n) : NULL;
        if (slash) strcpy(slash, "/../guest/tiny/tiny.rom");
        else strcpy(def_rom, "out/guest/tiny/tiny.rom");
        rom_path = def_rom;
    }
    int rfd = open(rom_path, O_RDONLY);
    if (rfd < 0) die("%s: %s", rom_path, strerror(errno));
    if (read(rfd, rom, ROM_SIZE) != ROM_SIZE) die("%s: not a 64 KiB image", rom_path);
    close(rfd);

    kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm_fd < 0) die("/dev/kvm: %s", strerror(errno));
    if (ioctl(kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) die("bad KVM API version");
    vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
    if (vm_fd < 0) die("KVM_CREATE_VM: %s", strerror(errno));
    run_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size <= 0) die("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));

    /* Real mode on VMX without unrestricted guest needs these; same
     * addresses as QEMU, just below the 4 GiB ROM alias. */
    if (ioctl(vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &(uint64_t){ 0xfeffc000 }) < 0 && errno != EINVAL)
        fprintf(stderr, "kvm-floor: KVM_SET_IDENTITY_MAP_ADDR: %s\n", strerror(errno));
    if (ioctl(vm_fd, KVM_SET_TSS_ADDR, 0xfeffd000ul) < 0)
        fprintf(stderr, "kvm-floor: KVM_SET_TSS_ADDR: %s\n", strerror(errno));
    if (ioctl(vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) die("KVM_CREATE_IRQCHIP: %s", strerror(errno));

    coalesced_page = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_MMIO);
    if (coalesced_page > 0 && ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_PIO) > 0) {
        struct kvm_coalesced_mmio_zone rtc = { .addr = 0x70, .size = 1, .pio = 1 };
        struct kvm_coalesced_mmio_zone pci = { .addr = 0xcf8, .size = 4, .pio = 1 };
        if (ioctl(vm_fd, KVM_REGISTER_COALESCED_MMIO, &rtc) < 0 ||
            ioctl(vm_fd, KVM_REGISTER_COALESCED_MMIO, &pci) < 0)
            die("KVM_REGISTER_COALESCED_MMIO: %s", strerror(errno));
    } else {
        coalesced_page = 0;
    }

    /* Memory: RAM [0, -m) with the ROM copied at 0xF0000, plus the ROM
     * alias at 0xFFFF0000.  HPET and LAPIC pages stay unmapped. */
    void *ram = mmap(NULL, ram_size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    void *hi = mmap(NULL, ROM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ram == MAP_FAILED || hi == MAP_FAILED) die("mmap guest memory: %s", strerror(errno));
    memcpy((uint8_t *)ram + ROM_LOW, rom, ROM_SIZE);
    memcpy(hi, rom, ROM_SIZE);
    add_slot(0, 0, ram_size, ram);
    add_slot(1, ROM_HIGH, ROM_SIZE, hi);

    /* Supported CPUID, grown until KVM is happy with the buffer size. */
    for (int n = 64; ; n *= 2) {
        cpuid = calloc(1, sizeof(*cpuid) + n * sizeof(cpuid->entries[0]));
        cpuid->nent = n;
        if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) == 0) break;
        if (errno != E2BIG || n > 4096) die("KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
        free(cpuid);
    }

    /* One thread per vCPU; creation order does not matter (the BSP is id
     * 0, the APs sit in wait-for-SIPI until the guest wakes them). */
    pthread_t th[MAX_VCPUS];
    for (int id = 0; id < nr_vcpus; id++)
        if ((errno = pthread_create(&th[id], NULL, vcpu_thread, (void *)(intptr_t)id)))
            die("pthread_create: %s", strerror(errno));
    for (int id = 0; id < nr_vcpus; id++)
        pthread_join(th[id], NULL);
    return 1;                                    /* not reached: 0xf4 exits */
}
