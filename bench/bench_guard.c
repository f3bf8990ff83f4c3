/*
 * What lockdown costs (issue 19): a system call's time before and after
 * the seccomp filter, in a child that locks itself down as serve does
 * (guard_lock + guard_seal), so the bench process itself stays free.
 *
 *   bench_guard [--calls N] [--runs R]
 *
 * getppid (a call the filter lets through after looking at its number)
 * and socket(AF_INET, SOCK_STREAM) (the call with the most rules), each
 * R runs of N calls, medians. Target: none set by the issue; a serving
 * request makes a few dozen system calls, so tens of nanoseconds each are
 * microseconds per request at most.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "citadel/guard.h"

static long g_calls = 1000000;

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static double per_call(int sock)
{
    double t0 = now_ns();
    for (long i = 0; i < g_calls; i++) {
        if (sock) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd >= 0) close(fd);
        } else {
            syscall(SYS_getppid);
        }
    }
    return (now_ns() - t0) / (double)g_calls;
}

int main(int argc, char **argv)
{
    int runs = 5, fd[2], status;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--calls"))
            g_calls = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--runs"))
            runs = atoi(argv[i + 1]);
    }
    if (runs < 1 || runs > 99 || g_calls < 1 || pipe(fd)) return 2;
    if (fork() == 0) {
        double a[99], b[99], c[99], d[99], r[4];
        struct guard_spec s;
        struct cit_err err;
        close(fd[0]);
        for (int i = 0; i < runs; i++) a[i] = per_call(0), c[i] = per_call(1);
        guard_spec_init(&s, "bench", 0);
        if (guard_spec_system(&s, &err) || guard_lock(&s, &err) || guard_seal(&err)) {
            fprintf(stderr, "bench_guard: %s\n", err.msg);
            _exit(1);
        }
        for (int i = 0; i < runs; i++) b[i] = per_call(0), d[i] = per_call(1);
        r[0] = median(a, runs), r[1] = median(b, runs), r[2] = median(c, runs);
        r[3] = median(d, runs);
        if (write(fd[1], r, sizeof(r)) != sizeof(r)) _exit(1);
        _exit(0);
    }
    close(fd[1]);
    {
        double r[4];
        ssize_t n = read(fd[0], r, sizeof(r));
        wait(&status);
        if (n != sizeof(r) || !WIFEXITED(status) || WEXITSTATUS(status)) return 1;
        printf("bench_guard: %ld calls x %d runs, medians (ns per call)\n", g_calls, runs);
        printf("  getppid               %7.1f -> %7.1f locked  (+%.1f)\n", r[0], r[1], r[1] - r[0]);
        printf("  socket+close (TCP)    %7.1f -> %7.1f locked  (+%.1f)\n", r[2], r[3], r[3] - r[2]);
    }
    return 0;
}
