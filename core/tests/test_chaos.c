/*
** test_chaos.c - many threads, many journaled machines under a
** supervisor, random crashes and restarts, random timeouts, for a bounded
** time (TAND_CHAOS_SECONDS, default 3). Asserts that no machine ever
** acknowledges a number twice, across its restarts; that every
** acknowledged number is still queued at the end; and that no call
** outlives its deadline by more than a second.
*/
#include "check.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define MACHINES 4
#define CLIENTS 8

static tand_runtime *rt;
static char dir[64];
static int64_t end_ms;
static atomic_int late_calls, acked_total, crashes;

typedef struct log {
    pthread_mutex_t mu;
    int64_t *n;
    size_t len, cap;
} log_t;

static log_t logs[MACHINES];

static void name_of(int i, char *buf, size_t n)
{
    snprintf(buf, n, "chaos%d", i);
}

static int start_machine(tand_runtime *r, const char *name, void *arg,
                         tand_server **out)
{
    tand_deluxe_options o;
    char path[128];
    (void)arg;
    snprintf(path, sizeof path, "%s/%s.db", dir, name);
    memset(&o, 0, sizeof o);
    o.min_number = 1;
    o.max_number = INT64_MAX;
    o.auto_shutdown_ms = TAND_FOREVER;
    o.name = name;
    o.journal = path;
    o.durability = TAND_DURABLE_OS; /* the process lives: same guarantee */
    o.mailbox_capacity = 64;
    return tand_deluxe_start(r, &o, out);
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static unsigned next_rand(unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return (*seed >> 16) & 0x7fff;
}

static void *client(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    char name[32];
    while (tand_now_ms() < end_ms) {
        int i = (int)(next_rand(&seed) % MACHINES);
        int64_t timeout = 1 + next_rand(&seed) % 50, t0, n;
        tand_server *s;
        int rc;
        name_of(i, name, sizeof name);
        if (tand_whereis(rt, name, &s) != 0)
            continue; /* between incarnations */
        t0 = tand_now_ms();
        rc = tand_deluxe_queue(s, &n, timeout);
        if (tand_now_ms() - t0 > timeout + 1000)
            atomic_fetch_add(&late_calls, 1);
        tand_server_release(s);
        if (rc == 0) {
            log_t *l = &logs[i];
            pthread_mutex_lock(&l->mu);
            if (l->len == l->cap) {
                l->cap = l->cap ? 2 * l->cap : 1024;
                l->n = realloc(l->n, l->cap * sizeof *l->n);
            }
            l->n[l->len++] = n;
            pthread_mutex_unlock(&l->mu);
            atomic_fetch_add(&acked_total, 1);
        }
    }
    return NULL;
}

static void *chaos(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    char name[32];
    while (tand_now_ms() < end_ms) {
        tand_server *s;
        name_of((int)(next_rand(&seed) % MACHINES), name, sizeof name);
        if (tand_whereis(rt, name, &s) == 0) {
            if (tand_server_stop(s, TAND_ECRASHED, "chaos", 0) == 0)
                atomic_fetch_add(&crashes, 1);
            tand_server_release(s);
        }
        sleep_us(5000 + next_rand(&seed) % 20000);
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
    tand_child_spec kids[MACHINES];
    tand_supervisor_options so;
    tand_server *sup;
    pthread_t cl[CLIENTS], ch;
    char names[MACHINES][32];
    const char *env = getenv("TAND_CHAOS_SECONDS");
    int64_t seconds = env ? atoll(env) : 3;
    int i, dups = 0, lost = 0;

    snprintf(dir, sizeof dir, "/tmp/tand-chaos-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return 1;
    CHECK_OK(tand_runtime_new(NULL, &rt));
    memset(kids, 0, sizeof kids);
    for (i = 0; i < MACHINES; i++) {
        pthread_mutex_init(&logs[i].mu, NULL);
        name_of(i, names[i], sizeof names[i]);
        kids[i].name = names[i];
        kids[i].start = start_machine;
    }
    tand_supervisor_options_init(&so);
    so.max_restarts = 1000000;
    so.max_seconds = 1;
    CHECK_OK(tand_supervisor_start(rt, &so, kids, MACHINES, &sup));

    end_ms = tand_now_ms() + (seconds < 1 ? 1 : seconds) * 1000;
    for (i = 0; i < CLIENTS; i++)
        pthread_create(&cl[i], NULL, client, (void *)(uintptr_t)(i + 1));
    pthread_create(&ch, NULL, chaos, (void *)(uintptr_t)99);
    for (i = 0; i < CLIENTS; i++)
        pthread_join(cl[i], NULL);
    pthread_join(ch, NULL);

    for (i = 0; i < MACHINES; i++) {
        log_t *l = &logs[i];
        size_t k;
        tand_server *s = NULL;
        qsort(l->n, l->len, sizeof *l->n, cmp64);
        for (k = 1; k < l->len; k++)
            if (l->n[k] == l->n[k - 1])
                dups++;
        /* every acknowledged number is still queued: take them all back
        ** out by priority from the current incarnation */
        for (int tries = 0; tries < 500 && s == NULL; tries++)
            if (tand_whereis(rt, names[i], &s) != 0)
                sleep_us(10000);
        CHECK(s != NULL);
        for (k = 0; s != NULL && k < l->len; k++) {
            int64_t got;
            if (tand_deluxe_serve(s, &l->n[k], &got, 10000) != 0)
                lost++;
        }
        tand_server_release(s);
        free(l->n);
    }
    printf("%d numbers acknowledged, %d crashes\n", atomic_load(&acked_total),
           atomic_load(&crashes));
    CHECK_INT(dups, 0);
    CHECK_INT(lost, 0);
    CHECK_INT(atomic_load(&late_calls), 0);
    CHECK(atomic_load(&crashes) > 10);
    CHECK(atomic_load(&acked_total) > 100);
    CHECK_OK(tand_server_stop(sup, 0, NULL, 10000));
    tand_server_release(sup);
    tand_runtime_free(rt);
    {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            return 1;
    }
    return check_done("test_chaos");
}
