/*
** bench_durable.c - durable calls/s: a journaled deluxe machine (fsync
** before each batch's replies) taking numbers for 1 and 50 client
** threads. Run by scripts/bench. Usage: bench_durable [ms] [dir]
*/
#include "tand.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct client {
    tand_server *s;
    int64_t end_ms, n, errors;
    int64_t *lat;
    size_t cap;
} client;

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void *run(void *arg)
{
    client *c = arg;
    while (now_us() / 1000 < c->end_ms) {
        int64_t t0 = now_us(), v;
        if (tand_deluxe_queue(c->s, &v, 10000) != 0)
            c->errors++;
        if ((size_t)c->n == c->cap) {
            c->cap = c->cap ? 2 * c->cap : 4096;
            c->lat = realloc(c->lat, c->cap * sizeof *c->lat);
        }
        c->lat[c->n++] = now_us() - t0;
    }
    return NULL;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void phase(tand_runtime *rt, const char *dir, int threads,
                  int durability, int64_t ms)
{
    char path[512], err[256];
    tand_deluxe_options o;
    tand_server *s;
    client *c = calloc((size_t)threads, sizeof *c);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    int64_t total = 0, errors = 0, t0, *all;
    size_t k = 0;
    int i;

    snprintf(path, sizeof path, "%s/bench-%d-%d.db", dir, threads,
             durability);
    unlink(path);
    memset(&o, 0, sizeof o);
    o.min_number = 1;
    o.max_number = INT64_MAX;
    o.auto_shutdown_ms = TAND_FOREVER;
    o.journal = path;
    o.durability = durability;
    o.error = err;
    o.error_size = sizeof err;
    o.mailbox_capacity = 1024;
    if (tand_deluxe_start(rt, &o, &s) != 0) {
        fprintf(stderr, "bench_durable: %s\n", err);
        exit(1);
    }
    t0 = now_us();
    for (i = 0; i < threads; i++) {
        c[i].s = s;
        c[i].end_ms = t0 / 1000 + ms;
        pthread_create(&th[i], NULL, run, &c[i]);
    }
    for (i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        total += c[i].n;
        errors += c[i].errors;
    }
    all = malloc((size_t)total * sizeof *all);
    for (i = 0; i < threads; i++) {
        memcpy(all + k, c[i].lat, (size_t)c[i].n * sizeof *all);
        k += (size_t)c[i].n;
        free(c[i].lat);
    }
    qsort(all, (size_t)total, sizeof *all, cmp64);
    printf("%-12s %3d  %10.0f  %9lld  %9lld  %lld\n",
           durability == TAND_DURABLE_FULL ? "tand_full" : "tand_os",
           threads, total / ((now_us() - t0) / 1e6),
           (long long)all[total / 2], (long long)all[total * 99 / 100],
           (long long)errors);
    free(all);
    tand_server_stop(s, 0, NULL, TAND_FOREVER);
    tand_server_release(s);
    unlink(path);
    free(c);
    free(th);
}

int main(int argc, char **argv)
{
    int64_t ms = argc > 1 ? atoll(argv[1]) : 2000;
    const char *dir = argc > 2 ? argv[2] : "/tmp";
    tand_runtime *rt;
    if (tand_runtime_new(NULL, &rt) != 0)
        return 1;
    printf("kind         thr     per_sec    p50_us    p99_us  errors\n");
    phase(rt, dir, 1, TAND_DURABLE_FULL, ms);
    phase(rt, dir, 50, TAND_DURABLE_FULL, ms);
    phase(rt, dir, 1, TAND_DURABLE_OS, ms);
    phase(rt, dir, 50, TAND_DURABLE_OS, ms);
    tand_runtime_free(rt);
    return 0;
}
