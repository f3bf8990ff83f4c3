/* The AVX2 kernels built again with AVX512-VNNI enabled, so byte dot
 * products use vpdpbusd on 256-bit registers (see dot_u8s8). Installed
 * instead of the plain AVX2 set when CPUID reports avx512vnni and
 * avx512vl. */
#include "kern_avx2.c"
