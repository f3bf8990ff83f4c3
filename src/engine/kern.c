/*
 * The kernel table: which set this CPU runs, chosen once.
 *
 * CPU detection (CPUID and XGETBV: the instructions and the OS saving
 * their registers) and the choice of set live here, apart from the kernels
 * themselves. The table is filled under pthread_once: two threads that
 * load models at the same time (a serve loading while another request
 * runs) both see one finished table, never a half-written one.
 * CITADEL_KERNELS=scalar, =avx2 or =neon forces a lower set (tests,
 * comparisons).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "eng_int.h"

#if defined(__x86_64__)
#include <cpuid.h>

static uint64_t xcr0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t)hi << 32 | lo;
}

int eng_cpu_has_avx2(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    /* FMA (12), OSXSAVE (27), AVX (28), F16C (29) */
    if ((c & (1u << 12 | 1u << 27 | 1u << 28 | 1u << 29)) !=
        (1u << 12 | 1u << 27 | 1u << 28 | 1u << 29))
        return 0;
    if ((xcr0() & 6) != 6) return 0; /* XMM and YMM state saved by the OS */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b >> 5) & 1; /* AVX2 */
}

int eng_cpu_has_avx512vnni(void)
{
    unsigned a, b, c, d;
    if (!eng_cpu_has_avx2() || (xcr0() & 0xe6) != 0xe6) return 0; /* opmask and ZMM state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    /* EBX: AVX512F (16), AVX512BW (30), AVX512VL (31); ECX: AVX512_VNNI (11) */
    return (b & (1u << 16 | 1u << 30 | 1u << 31)) == (1u << 16 | 1u << 30 | 1u << 31) &&
           ((c >> 11) & 1);
}

int eng_cpu_has_avx512bf16(void)
{
    unsigned a, b, c, d;
    if (!eng_cpu_has_avx512vnni()) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || a < 1) return 0; /* no subleaf 1 */
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 0;
    return (a >> 5) & 1; /* leaf 7 subleaf 1, EAX bit 5: AVX512_BF16 */
}
#else
int eng_cpu_has_avx2(void)
{
    return 0;
}

int eng_cpu_has_avx512bf16(void)
{
    return 0;
}

int eng_cpu_has_avx512vnni(void)
{
    return 0;
}
#endif

#if defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1ul << 20)
#endif

int eng_cpu_has_dotprod(void)
{
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
}
#else
int eng_cpu_has_dotprod(void)
{
    return 0;
}
#endif

static struct eng_kernels table;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void choose(void)
{
    const char *force = getenv("CITADEL_KERNELS");
    eng_kernels_ref(&table);
#if defined(__x86_64__)
    int simd = !(force && !strcmp(force, "scalar")) && eng_cpu_has_avx2();
    if (simd && !(force && !strcmp(force, "avx2")) && eng_cpu_has_avx512vnni())
        eng_kernels_avx2_vnni(&table);
    else if (simd)
        eng_kernels_avx2(&table);
#elif defined(__aarch64__)
    if (!(force && !strcmp(force, "scalar"))) {
        if (!(force && !strcmp(force, "neon")) && eng_cpu_has_dotprod())
            eng_kernels_neon_dot(&table);
        else
            eng_kernels_neon(&table);
    }
#else
    (void)force;
#endif
}

const struct eng_kernels *eng_kernels_get(void)
{
    pthread_once(&table_once, choose);
    return &table;
}

const char *eng_kernels_name(void)
{
    return eng_kernels_get()->name;
}

const char *eng_kernels_built(void)
{
#if defined(__x86_64__)
    return "scalar avx2 avx2+vnni";
#elif defined(__aarch64__)
    return "scalar neon neon+dotprod";
#else
    return "scalar";
#endif
}
