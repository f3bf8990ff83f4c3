/* The NEON kernels built again with the dot-product extension
 * (-march=armv8.2-a+dotprod), so byte dot products use SDOT (see dot16).
 * Installed instead of the plain NEON set when the kernel reports
 * asimddp (HWCAP_ASIMDDP). */
#include "kern_neon.c"
