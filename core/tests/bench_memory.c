/*
** bench_memory.c - what idle servers cost: resident bytes per idle
** built-in machine for 100,000 of them, and how fast they start.
** Run by scripts/bench. Usage: bench_memory [count]
*/
#include "tand.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long resident_bytes(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f != NULL) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * sysconf(_SC_PAGESIZE);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    long count = argc > 1 ? atol(argv[1]) : 100000, i, before, after;
    tand_runtime *rt;
    tand_server **all = malloc((size_t)count * sizeof *all);
    tand_deluxe_options o = {0};
    double t0, t1;

    if (all == NULL || tand_runtime_new(NULL, &rt) != 0)
        return 1;
    o.min_number = 1;
    o.max_number = 99;
    o.auto_shutdown_ms = TAND_FOREVER;
    before = resident_bytes();
    t0 = now_s();
    for (i = 0; i < count; i++)
        if (tand_deluxe_start(rt, &o, &all[i]) != 0)
            return 1;
    t1 = now_s();
    after = resident_bytes();
    printf("kind         count  bytes_per_server  total_mb  starts_per_sec\n");
    printf("builtin  %9ld  %16.0f  %8.1f  %14.0f\n", count,
           (double)(after - before) / count, (after - before) / 1048576.0,
           count / (t1 - t0));
    for (i = 0; i < count; i++) {
        tand_server_stop(all[i], 0, NULL, 0);
        tand_server_release(all[i]);
    }
    tand_runtime_free(rt);
    free(all);
    return 0;
}
