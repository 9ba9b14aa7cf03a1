/*
** bench_engine.c - calls/s and latency percentiles of sync calls on a
** trivial C handler with 1, 2 and 16 client threads, and casts/s.
** Run by scripts/bench, never by the tests. Usage: bench_engine [ms]
*/
#include "tand.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int handle_call(void *state, tand_server *self, tand_msg *req,
                       tand_from *from, tand_msg *reply)
{
    int64_t *counter = state;
    (void)self;
    (void)req;
    (void)from;
    reply->ival[0] = (*counter)++;
    return 0;
}

static void handle_cast(void *state, tand_server *self, tand_msg *msg)
{
    int64_t *counter = state;
    (void)self;
    *counter += msg->ival[0];
}

static const tand_behaviour trivial = {"trivial", NULL, handle_call,
                                       handle_cast, NULL, NULL, NULL};

typedef struct client {
    tand_server *s;
    int64_t end_ns;
    int64_t *lat;
    size_t n, cap;
    int kind; /* 0 calls, 1 casts */
    long errors;
} client;

static void *client_main(void *arg)
{
    client *c = arg;
    while (now_ns() < c->end_ns) {
        int i;
        for (i = 0; i < 64; i++) {
            tand_msg req = {0}, reply;
            int64_t t0 = now_ns();
            int rc;
            req.ival[0] = 1;
            if (c->kind == 0) {
                rc = tand_call(c->s, &req, &reply, 5000, 0);
                tand_msg_clear(&reply);
            } else {
                rc = tand_cast(c->s, &req, 5000, 0);
            }
            if (rc != 0)
                c->errors++;
            if (c->n == c->cap) {
                c->cap = c->cap ? c->cap * 2 : 1 << 16;
                c->lat = realloc(c->lat, c->cap * sizeof *c->lat);
            }
            c->lat[c->n++] = now_ns() - t0;
        }
    }
    return NULL;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void run(tand_runtime *rt, int threads, int kind, int64_t ms)
{
    tand_server_options o;
    tand_server *s;
    client *c = calloc((size_t)threads, sizeof *c);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    int64_t counter = 0, t0, elapsed, *all;
    size_t total = 0, k = 0;
    long errors = 0;
    int i;

    memset(&o, 0, sizeof o);
    o.behaviour = &trivial;
    o.arg = &counter;
    if (tand_server_start(rt, &o, &s) != 0) {
        fprintf(stderr, "bench_engine: cannot start a server\n");
        exit(1);
    }
    t0 = now_ns();
    for (i = 0; i < threads; i++) {
        c[i].s = s;
        c[i].kind = kind;
        c[i].end_ns = t0 + ms * 1000000;
        pthread_create(&th[i], NULL, client_main, &c[i]);
    }
    for (i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        total += c[i].n;
        errors += c[i].errors;
    }
    tand_server_stop(s, 0, NULL, TAND_FOREVER); /* casts drained */
    elapsed = now_ns() - t0;
    all = malloc(total * sizeof *all);
    for (i = 0; i < threads; i++) {
        memcpy(all + k, c[i].lat, c[i].n * sizeof *all);
        k += c[i].n;
        free(c[i].lat);
    }
    qsort(all, total, sizeof *all, cmp64);
    printf("%-5s %3d  %12.0f  %9.2f  %9.2f  %9.2f  %ld\n",
           kind ? "cast" : "call", threads, total / (elapsed / 1e9),
           all[total / 2] / 1e3, all[total * 99 / 100] / 1e3,
           all[total * 999 / 1000] / 1e3, errors);
    free(all);
    free(c);
    free(th);
    tand_server_release(s);
}

int main(int argc, char **argv)
{
    tand_runtime *rt;
    int64_t ms = argc > 1 ? atoll(argv[1]) : 2000;
    static const int calls[] = {1, 2, 4, 16, 64};
    size_t i;

    if (ms < 100)
        ms = 100;
    if (tand_runtime_new(NULL, &rt) != 0) {
        fprintf(stderr, "bench_engine: cannot create the runtime\n");
        return 1;
    }
    printf("kind  thr       per_sec    p50_us    p99_us  p99.9_us  errors\n");
    for (i = 0; i < sizeof calls / sizeof calls[0]; i++)
        run(rt, calls[i], 0, ms);
    run(rt, 1, 1, ms);
    run(rt, 4, 1, ms);
    tand_runtime_free(rt);
    return 0;
}
