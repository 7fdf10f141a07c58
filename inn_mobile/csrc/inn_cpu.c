/* Which optional instructions this CPU runs (inn_internal.h, INN_CPU_*), asked once per process.
 *
 * Asking costs a CPUID on x86, and in a virtual machine CPUID exits to the hypervisor (microseconds each),
 * while the core asks per checksum stretch and per layer of float16 nodes: scores of times in one fill of a
 * real network, a measurable share of its startup (docs/benchmarks.md, "Stop 30"). The answer cannot change
 * while the process runs, so the first call keeps it in one word. Relaxed atomics suffice: threads that ask
 * at the same time compute the same bits and store the same word. Compilers without the GNU builtins have
 * none of the optional paths (every user is behind GNU C or clang), so they get no bits and keep nothing. */
#include "inn.h"
#include "inn_internal.h"

#if (defined(__GNUC__) || defined(__clang__)) && !defined(INN_PORTABLE)
#if defined(__x86_64__)
#include <cpuid.h>
#elif defined(__aarch64__) && defined(__linux__) && !defined(__ARM_FEATURE_CRC32)
#include <sys/auxv.h>
#endif

/* The INN_CPU_* bits, asked of the CPU (x86: CPUID leaf 1; ARM: the build's target or the kernel's hwcaps). */
static unsigned detect(void) {
    unsigned bits = 0;
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        if (c & (1u << 20)) bits |= INN_CPU_CRC32C; /* SSE4.2: no new register state, no OS support needed */
        /* F16C's 256-bit forms need the YMM state the OS saves, which libgcc's "avx" test covers */
        if ((c & (1u << 29)) && __builtin_cpu_supports("avx")) bits |= INN_CPU_F16C;
    }
#elif defined(__aarch64__) && defined(__ARM_FEATURE_CRC32) /* built for CPUs that all have them (Apple, ...) */
    bits |= INN_CPU_CRC32C;
#elif defined(__aarch64__) && defined(__linux__) /* Linux and Android: HWCAP_CRC32, bit 7 of AT_HWCAP */
    if (getauxval(AT_HWCAP) & (1ul << 7)) bits |= INN_CPU_CRC32C;
#endif
    return bits;
}

#define KNOWN (1u << 31) /* set in the kept word once it holds the answer */

unsigned inn_cpu_features(void) {
    static unsigned kept; /* 0 until the first call ends */
    unsigned bits = __atomic_load_n(&kept, __ATOMIC_RELAXED);
    if (!bits) {
        bits = detect() | KNOWN;
        __atomic_store_n(&kept, bits, __ATOMIC_RELAXED);
    }
    return bits & ~KNOWN;
}
#else
unsigned inn_cpu_features(void) { return 0; }
#endif
