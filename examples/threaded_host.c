/*
** threaded_host.c - an app whose threads share one ticket machine, in C
** only (no Lua).
**
** Eight threads take numbers from one deluxe machine at the same time;
** the main thread then serves them all. The machine hands each number
** out once, so the threads need no lock of their own.
**
**   threaded_host        prints the numbers taken, served, and calls/s
** Exits 1 if a number was handed out twice or lost.
*/
#include "tand.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { THREADS = 8, PER_THREAD = 5000, TOTAL = THREADS * PER_THREAD };

typedef struct taker {
    tand_server *machine;
    int64_t numbers[PER_THREAD];
    int failures;
} taker;

static void *take_numbers(void *p)
{
    taker *t = p;
    int i;
    for (i = 0; i < PER_THREAD; i++) {
        int rc = tand_deluxe_queue(t->machine, &t->numbers[i], 5000);
        if (rc != 0) {
            fprintf(stderr, "threaded_host: queue: %s\n", tand_errname(rc));
            t->failures++;
        }
    }
    return NULL;
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(void)
{
    static taker takers[THREADS];
    static char seen[TOTAL + 1];
    pthread_t th[THREADS];
    tand_deluxe_options o;
    tand_runtime *rt;
    tand_server *m;
    char err[256];
    int i, j, bad = 0, served = 0, rc;
    int64_t n;
    double t0, t1;

    if (tand_runtime_new(NULL, &rt) != 0) { /* one worker per core */
        fprintf(stderr, "threaded_host: cannot create the runtime\n");
        return 1;
    }
    tand_deluxe_options_init(&o); /* never shuts down by itself */
    o.min_number = 1;
    o.max_number = TOTAL;
    o.name = "deli";
    o.error = err;
    o.error_size = sizeof err;
    if ((rc = tand_deluxe_start(rt, &o, &m)) != 0) {
        fprintf(stderr, "threaded_host: %s\n", err);
        return 1;
    }

    t0 = seconds();
    for (i = 0; i < THREADS; i++) {
        takers[i].machine = m;
        pthread_create(&th[i], NULL, take_numbers, &takers[i]);
    }
    for (i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    t1 = seconds();

    for (i = 0; i < THREADS; i++) {
        bad += takers[i].failures;
        for (j = 0; j < PER_THREAD; j++) {
            n = takers[i].numbers[j];
            if (n < 1 || n > TOTAL || seen[n]++)
                bad++; /* out of range, or handed out twice */
        }
    }
    /* the queue is full: one more is refused, and nothing is lost */
    rc = tand_deluxe_queue(m, &n, 5000);
    if (rc != TAND_EFULL)
        bad++;
    while ((rc = tand_deluxe_serve(m, NULL, &n, 5000)) == 0) {
        if (n != served + 1) /* FIFO: served in the order handed out */
            bad++;
        served++;
    }
    if (rc != TAND_EEMPTY || served != TOTAL)
        bad++;

    printf("%d threads took %d numbers (%.0f calls/s), all distinct: %s; "
           "served %d in order\n",
           THREADS, TOTAL, TOTAL / (t1 - t0), bad ? "NO" : "yes", served);
    tand_server_stop(m, 0, NULL, 5000);
    tand_server_release(m);
    tand_runtime_free(rt);
    return bad == 0 ? 0 : 1;
}
