/* CPU feature detection, once, and the table of kernels per ISA level.
 *
 * CPUID says what the core implements; XGETBV (XCR0) says which register states the OS saves on
 * a context switch. Both must agree before a level is usable: a VM or OS that masks AVX-512
 * state leaves the CPUID bits set, and running zmm code there faults.
 */
#include "kernels/kernels.h"
#include "kernels/int8.h"

#if defined(FL_HAVE_X86_KERNELS) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

static uint64_t xgetbv0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

/* SSE2 is part of x86-64 itself, so every x86-64 CPU runs the generic level. */
static int detect(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return FL_ISA_GENERIC;
    const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    if (!osxsave || !avx) return FL_ISA_GENERIC;
    const uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) return FL_ISA_GENERIC; /* XMM and YMM state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return FL_ISA_GENERIC;
    const int avx2 = (b >> 5) & 1;
    if (!avx2 || !fma) return FL_ISA_GENERIC;
    /* AVX-512 F, DQ, BW, VL (the set avx512.c is compiled for) and opmask + ZMM state. */
    const int avx512 = ((b >> 16) & 1) && ((b >> 17) & 1) && ((b >> 30) & 1) && ((b >> 31) & 1);
    if (avx512 && (xcr0 & 0xe6) == 0xe6) return FL_ISA_AVX512;
    return FL_ISA_AVX2;
}

/* The int8 instructions, given the AVX-512 level (ZMM state already checked): AVX512_VNNI is
 * CPUID.(7,0):ECX bit 11, VBMI (vpermb, which int8 C1 gathers with) bit 1. AVX-VNNI (the VEX
 * form, Alder Lake and later) is CPUID.(7,1):EAX bit 4 and needs only the AVX state. */
static int detect_avx512vnni(void) {
    unsigned a, b, c, d;
    if (detect() < FL_ISA_AVX512 || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return ((c >> 11) & 1) && ((c >> 1) & 1);
}
static int detect_avxvnni(void) {
    unsigned a, b, c, d;
    if (detect() < FL_ISA_AVX2 || !__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 0;
    return (a >> 4) & 1;
}
/* AMX-TILE and AMX-INT8 are CPUID.(7,0):EDX bits 24 and 25; XCR0 bits 17 and 18 are the tile
 * config and data states. Linux (5.16+) then still faults on the first tile instruction unless
 * the process asked for the data state: arch_prctl(ARCH_REQ_XCOMP_PERM = 0x1023,
 * XFEATURE_XTILEDATA = 18), once, granted for the process and its children. Elsewhere: no AMX. */
static int detect_amx(void) {
    unsigned a, b, c, d;
    if (!detect_avx512vnni() || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    if (!((d >> 24) & 1) || !((d >> 25) & 1) || (xgetbv0() & 0x60000) != 0x60000) return 0;
#if defined(FL_HAVE_AMX_KERNELS)
    return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
#else
    return 0;
#endif
}
#elif defined(FL_HAVE_GENERIC_KERNELS)
/* aarch64: NEON (Advanced SIMD) is mandatory in ARMv8-A, so no runtime check is needed. */
static int detect(void) { return FL_ISA_GENERIC; }
#else
static int detect(void) { return FL_ISA_SCALAR; }
#endif
#if !(defined(FL_HAVE_X86_KERNELS) && (defined(__GNUC__) || defined(__clang__)))
static int detect_avx512vnni(void) { return 0; }
static int detect_avxvnni(void) { return 0; }
static int detect_amx(void) { return 0; }
#endif

int fl_cpu_has_avx512vnni(void) {
    static int cached = -1;
    if (cached < 0) cached = detect_avx512vnni();
    return cached;
}

int fl_cpu_has_avxvnni(void) {
    static int cached = -1;
    if (cached < 0) cached = detect_avxvnni();
    return cached;
}

int fl_cpu_has_amx(void) {
    static int cached = -1;
    if (cached < 0) cached = detect_amx();
    return cached;
}

static int int8_limit = FL_I8_COUNT - 1;

void fl_int8_set_limit(int level) {
    int8_limit = level < 0 ? 0 : level >= FL_I8_COUNT ? FL_I8_COUNT - 1 : level;
}

/* An int8 net at fp32 level `isa` runs the AMX C3 (and VNNI for the rest) or the VNNI kernels
 * when that level is AVX-512 and the CPU has them (VNNI + VBMI; AMX-INT8); otherwise the
 * scalar specification (there is no AVX2 int8 kernel yet), so lowering net.isa or
 * FASTLENET_ISA lowers the int8 kernels too; fl_int8_set_limit caps them further. */
int fl_int8_level(int isa) {
    int level = FL_I8_SCALAR;
#ifdef FL_HAVE_X86_KERNELS
    if (isa >= FL_ISA_AVX512 && fl_cpu_has_avx512vnni())
        level = fl_cpu_has_amx() ? FL_I8_AMX : FL_I8_AVX512VNNI;
#endif
    (void)isa;
    return level < int8_limit ? level : int8_limit;
}

const char *fl_int8_name(int level) {
    static const char *const names[FL_I8_COUNT] = {"scalar", "avx512vnni", "amx"};
    return (level >= 0 && level < FL_I8_COUNT) ? names[level] : "unknown";
}

const fl_int8_kernels *fl_int8_kernels_for(int isa) {
    if (isa < 0 || isa > fl_isa_detect()) return NULL;
    switch (fl_int8_level(isa)) {
#ifdef FL_HAVE_X86_KERNELS
    case FL_I8_AVX512VNNI: return &fl_int8_kernels__avx512vnni;
#ifdef FL_HAVE_AMX_KERNELS
    case FL_I8_AMX: return &fl_int8_kernels__amx;
#endif
#endif
    default: return &fl_int8_kernels__scalar;
    }
}

int fl_isa_detect(void) {
    /* Racing first calls compute the same value; the int store is benign. */
    static int cached = -1;
    if (cached < 0) cached = detect();
    return cached;
}

const char *fl_isa_name(int isa) {
    static const char *const names[FL_ISA_COUNT] = {"scalar", "generic", "avx2", "avx512"};
    return (isa >= 0 && isa < FL_ISA_COUNT) ? names[isa] : "unknown";
}

const fl_kernels *fl_kernels_for(int isa) {
    if (isa < 0 || isa > fl_isa_detect()) return NULL;
    switch (isa) {
    case FL_ISA_SCALAR: return &fl_kernels__scalar;
#ifdef FL_HAVE_GENERIC_KERNELS
    case FL_ISA_GENERIC: return &fl_kernels__generic;
#endif
#ifdef FL_HAVE_X86_KERNELS
    case FL_ISA_AVX2: return &fl_kernels__avx2;
    case FL_ISA_AVX512: return &fl_kernels__avx512;
#endif
    default: return NULL;
    }
}

int fl_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}
