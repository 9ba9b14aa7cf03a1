/*
** test_stress.c - 16 threads call one server for several seconds (set
** TAND_STRESS_SECONDS; default 3): every reply is checked, no number is
** handed out twice or lost, and casts, timeouts and a second server mix
** in to shake the scheduler.
*/
#include "check.h"
#include "echo.h"

#include <pthread.h>

#define THREADS 16

typedef struct client {
    tand_server *s, *other;
    int64_t end_ms;
    int64_t *got;
    size_t n, cap;
    int errors;
    int id;
} client;

static void *client_main(void *arg)
{
    client *c = arg;
    int64_t v, last = -1, i = 0;
    while (tand_now_ms() < c->end_ms) {
        int rc = echo_req(c->s, COUNT, 0, 0, 10000, &v);
        if (rc != 0 || v <= last) {
            c->errors++;
            continue;
        }
        last = v;
        if (c->n == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 4096;
            c->got = realloc(c->got, c->cap * sizeof *c->got);
        }
        c->got[c->n++] = v;
        if (++i % 64 == 0) {
            /* a cast, an echo on the other server, a timeout that may or
            ** may not fire: none may disturb the numbers */
            if (echo_cast_op(c->s, 0, 1, 0, 10000, 0) != 0)
                c->errors++;
            if (echo_req(c->other, ECHO, i, 0, 10000, &v) != 0 || v != i)
                c->errors++;
            rc = echo_req(c->other, ECHO, i, 0, 0, &v);
            if (rc != 0 && rc != TAND_ETIMEDOUT)
                c->errors++;
        }
    }
    return NULL;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int main(void)
{
    tand_runtime *rt;
    tand_server *s, *other;
    echo_shared sh = {0}, sh2 = {0};
    client c[THREADS];
    pthread_t th[THREADS];
    const char *env = getenv("TAND_STRESS_SECONDS");
    int64_t seconds = env ? atoll(env) : 3, total = 0, counter;
    int64_t *all;
    size_t k = 0, i;
    int t, dups = 0;

    if (seconds < 1)
        seconds = 1;
    CHECK_OK(tand_runtime_new(NULL, &rt));
    CHECK_OK(echo_start(rt, &sh, 256, NULL, &s));
    CHECK_OK(echo_start(rt, &sh2, 256, NULL, &other));
    for (t = 0; t < THREADS; t++) {
        memset(&c[t], 0, sizeof c[t]);
        c[t].s = s;
        c[t].other = other;
        c[t].id = t;
        c[t].end_ms = tand_now_ms() + seconds * 1000;
        pthread_create(&th[t], NULL, client_main, &c[t]);
    }
    for (t = 0; t < THREADS; t++) {
        pthread_join(th[t], NULL);
        CHECK_INT(c[t].errors, 0);
        total += (int64_t)c[t].n;
    }
    all = malloc((size_t)total * sizeof *all);
    for (t = 0; t < THREADS; t++) {
        memcpy(all + k, c[t].got, c[t].n * sizeof *all);
        k += c[t].n;
        free(c[t].got);
    }
    qsort(all, k, sizeof *all, cmp64);
    for (i = 0; i < k; i++)
        if (all[i] != (int64_t)i)
            dups++;
    CHECK_INT(dups, 0); /* 0..total-1 exactly once each */
    CHECK_OK(echo_req(s, COUNT, 0, 0, 5000, &counter));
    CHECK_INT(counter, total); /* none lost */
    printf("%lld numbers from %d threads in %lld s\n", (long long)total,
           THREADS, (long long)seconds);
    free(all);
    tand_server_release(s);
    tand_server_release(other);
    tand_runtime_free(rt);
    return check_done("test_stress");
}
