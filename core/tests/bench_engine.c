/*
** bench_engine.c - "take a number and record the caller" on one server,
** for 1..64 client threads, in one run:
**   tand_call    tand_call() to a server with a trivial C handler
**   tand_cast    tand_cast() (1 and 4 senders; the mailbox bound holds);
**                timed in blocks of 64, so its latencies are block means
**   mutex_cv     anchor: a server thread fed through a mutex-protected
**                queue, each caller waiting on its own condition variable
**   spin_deleg   anchor: a server thread spinning over per-client slots
**                (delegation); clients spin on their slot, yielding once
**                clients outnumber cores
**   plain_mutex  anchor: the same handler under a pthread mutex, run by
**                each caller on its own thread: the floor for serialized
**                access in one process
** Prints one line per phase: kind, threads, per_sec, p50/p99/p99.9 us,
** errors. Calls are counted in blocks of 64 of which the first is timed
** (two clock reads per 64 calls, so that timing does not weigh on the
** plain mutex's 15 ns more than on a tand call). Every phase checks that
** the handler took exactly one number per call; a lost or extra number is
** counted as an error. Each phase runs BENCH_ROUNDS times (environment, 3
** by default), the kinds interleaved, and the round with the median rate
** is reported: this VM's core-to-core latency changes from minute to
** minute, and interleaving keeps the ratios fair. scripts/bench runs it
** with BENCH_ROUNDS=1 in its own interleaved rounds, quiet and busy.
** Run by scripts/bench, never by the tests. Usage: bench_engine [ms [kind]]
** (ms: the total time of one phase, over its rounds; kind: only the
** phases of that kind, e.g. tand_cast, for profiling).
*/
#include "tand.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64
#define MAX_ROUNDS 15

typedef struct result {
    double per_sec, p50, p99, p999;
    long errors;
} result;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int ncpu;

/* ---- tand ---- */

typedef struct ticket_state {
    int64_t counter, last_caller;
} ticket_state;

static int handle_call(void *state, tand_server *self, tand_msg *req,
                       tand_from *from, tand_msg *reply)
{
    ticket_state *t = state;
    (void)self;
    (void)from;
    reply->ival[0] = t->counter++;
    t->last_caller = req->ival[0];
    return 0;
}

static void handle_cast(void *state, tand_server *self, tand_msg *msg)
{
    ticket_state *t = state;
    (void)self;
    t->counter++;
    t->last_caller = msg->ival[0];
}

static const tand_behaviour ticket = {.name = "ticket",
                                      .handle_call = handle_call,
                                      .handle_cast = handle_cast};

/* ---- anchor: mutex + condition variables ---- */

typedef struct mreq {
    struct mreq *next;
    int64_t caller, result;
    int done;
    pthread_cond_t cv;
} mreq;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t work;
    mreq *head, *tail;
    int stop;
    ticket_state t;
    pthread_t th;
} ms;

static void *mserver(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&ms.mu);
    for (;;) {
        mreq *r;
        while (ms.head == NULL && !ms.stop)
            pthread_cond_wait(&ms.work, &ms.mu);
        if (ms.head == NULL)
            break;
        r = ms.head;
        ms.head = r->next;
        if (ms.head == NULL)
            ms.tail = NULL;
        r->result = ms.t.counter++;
        ms.t.last_caller = r->caller;
        r->done = 1;
        pthread_cond_signal(&r->cv);
    }
    pthread_mutex_unlock(&ms.mu);
    return NULL;
}

static int64_t mcall(mreq *r, int64_t caller)
{
    r->caller = caller;
    r->done = 0;
    r->next = NULL;
    pthread_mutex_lock(&ms.mu);
    if (ms.tail)
        ms.tail->next = r;
    else
        ms.head = r;
    ms.tail = r;
    pthread_cond_signal(&ms.work);
    while (!r->done)
        pthread_cond_wait(&r->cv, &ms.mu);
    pthread_mutex_unlock(&ms.mu);
    return r->result;
}

/* ---- anchor: spinning delegation ---- */

typedef struct dslot {
    _Atomic int64_t req; /* caller + 1, or 0 when answered */
    int64_t resp;
    char pad[64 - 2 * sizeof(int64_t)];
} __attribute__((aligned(64))) dslot;

static struct {
    dslot slot[MAX_THREADS];
    _Atomic int stop;
    int nclients;
    ticket_state t;
    pthread_t th;
} ds;

static void *dserver(void *arg)
{
    (void)arg;
    while (!atomic_load_explicit(&ds.stop, memory_order_relaxed)) {
        int i;
        for (i = 0; i < ds.nclients; i++) {
            int64_t r = atomic_load_explicit(&ds.slot[i].req,
                                             memory_order_acquire);
            if (r != 0) {
                ds.slot[i].resp = ds.t.counter++;
                ds.t.last_caller = r - 1;
                atomic_store_explicit(&ds.slot[i].req, 0,
                                      memory_order_release);
            }
        }
        if (ds.nclients >= ncpu)
            sched_yield(); /* share the cores with the clients */
        else
            relax();
    }
    return NULL;
}

static int64_t dcall(int i, int64_t caller)
{
    int spins = 0;
    atomic_store_explicit(&ds.slot[i].req, caller + 1, memory_order_release);
    while (atomic_load_explicit(&ds.slot[i].req, memory_order_acquire)) {
        relax();
        if (ds.nclients >= ncpu && ++spins % 64 == 0)
            sched_yield();
    }
    return ds.slot[i].resp;
}

/* ---- anchor: a plain mutex around the handler ---- */

static struct {
    pthread_mutex_t mu; /* a default mutex, as most C code would take */
    ticket_state t;     /* guarded by mu */
} pm = {PTHREAD_MUTEX_INITIALIZER, {0, 0}};

static int64_t pcall(int64_t caller)
{
    int64_t n;
    pthread_mutex_lock(&pm.mu);
    n = pm.t.counter++;
    pm.t.last_caller = caller;
    pthread_mutex_unlock(&pm.mu);
    return n;
}

/* ---- the phases ---- */

enum { K_CALL, K_CAST, K_MUTEX, K_DELEG, K_PLAIN };
static const char *const kind_name[] = {"tand_call", "tand_cast", "mutex_cv",
                                        "spin_deleg", "plain_mutex"};

typedef struct client {
    int kind, id;
    tand_server *s;
    int64_t end_ns;
    int64_t *lat; /* latency samples, ns */
    size_t n, cap;
    long calls, errors; /* calls made (casts: sent), of which failed */
} client;

static void keep_latency(client *c, int64_t ns)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 1 << 12;
        c->lat = realloc(c->lat, c->cap * sizeof *c->lat);
    }
    c->lat[c->n++] = ns;
}

/* One call of the client's kind; returns 0 or a tand error. */
static int one_call(client *c, mreq *r)
{
    int rc = 0;
    if (c->kind == K_CALL) {
        tand_msg req = {0}, reply;
        req.ival[0] = c->id;
        rc = tand_call(c->s, &req, &reply, 5000, 0);
        tand_msg_clear(&reply);
    } else if (c->kind == K_MUTEX) {
        mcall(r, c->id);
    } else if (c->kind == K_DELEG) {
        dcall(c->id, c->id);
    } else {
        pcall(c->id);
    }
    return rc;
}

static void *client_main(void *arg)
{
    client *c = arg;
    mreq r;
    memset(&r, 0, sizeof r);
    pthread_cond_init(&r.cv, NULL);
    for (;;) {
        int64_t t0 = now_ns(), t1;
        int i;
        if (t0 >= c->end_ns)
            break;
        if (c->kind == K_CAST) {
            /* A cast's latency is only its enqueueing: its samples are the
            ** means of blocks of 64. */
            for (i = 0; i < 64; i++) {
                tand_msg req = {0};
                req.ival[0] = c->id;
                if (tand_cast(c->s, &req, 5000, 0) != 0)
                    c->errors++;
            }
            keep_latency(c, (now_ns() - t0) / 64);
            c->calls += 64;
            continue;
        }
        if (one_call(c, &r) != 0) /* the timed call of the block */
            c->errors++;
        t1 = now_ns();
        keep_latency(c, t1 - t0);
        for (i = 1; i < 64; i++)
            if (one_call(c, &r) != 0)
                c->errors++;
        c->calls += 64;
    }
    pthread_cond_destroy(&r.cv);
    return NULL;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static result run(tand_runtime *rt, int kind, int threads, int64_t ms_)
{
    result res;
    tand_server_options o;
    tand_server *s = NULL;
    ticket_state state = {0, 0};
    client *c = calloc((size_t)threads, sizeof *c);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    int64_t t0, elapsed, *all, taken = 0;
    size_t nlat = 0, k = 0;
    long total = 0, errors = 0;
    int i;

    if (kind == K_CALL || kind == K_CAST) {
        memset(&o, 0, sizeof o);
        o.behaviour = &ticket;
        o.arg = &state;
        o.mailbox_capacity = 1024; /* casts must respect a bound */
        o.bound_us = 10;           /* the handler takes a number */
        if (tand_server_start(rt, &o, &s) != 0) {
            fprintf(stderr, "bench_engine: cannot start a server\n");
            exit(1);
        }
    } else if (kind == K_MUTEX) {
        memset(&ms, 0, sizeof ms);
        pthread_mutex_init(&ms.mu, NULL);
        pthread_cond_init(&ms.work, NULL);
        pthread_create(&ms.th, NULL, mserver, NULL);
    } else if (kind == K_DELEG) {
        memset(&ds, 0, sizeof ds);
        ds.nclients = threads;
        pthread_create(&ds.th, NULL, dserver, NULL);
    } else {
        pm.t.counter = 0;
    }
    t0 = now_ns();
    for (i = 0; i < threads; i++) {
        c[i].kind = kind;
        c[i].id = i;
        c[i].s = s;
        c[i].end_ns = t0 + ms_ * 1000000;
        pthread_create(&th[i], NULL, client_main, &c[i]);
    }
    for (i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        total += c[i].calls;
        nlat += c[i].n;
        errors += c[i].errors;
    }
    if (kind == K_CAST) {
        /* Casts count once handled: stopping drops what is still queued,
        ** and a call queues behind every cast sent before it. */
        tand_msg req = {0}, reply;
        if (tand_call(s, &req, &reply, 60000, 0) == 0)
            total++;
        else
            errors++;
        tand_msg_clear(&reply);
    }
    elapsed = now_ns() - t0;
    if (s != NULL)
        tand_server_stop(s, 0, NULL, TAND_FOREVER);
    if (kind == K_MUTEX) {
        pthread_mutex_lock(&ms.mu);
        ms.stop = 1;
        pthread_cond_signal(&ms.work);
        pthread_mutex_unlock(&ms.mu);
        pthread_join(ms.th, NULL);
    } else if (kind == K_DELEG) {
        atomic_store(&ds.stop, 1);
        pthread_join(ds.th, NULL);
    }
    taken = kind == K_CALL || kind == K_CAST ? state.counter
            : kind == K_MUTEX                ? ms.t.counter
            : kind == K_DELEG                ? ds.t.counter
                                             : pm.t.counter;
    /* A failed call or cast may or may not have taken its number. */
    if (taken > total || taken < total - errors) {
        fprintf(stderr, "bench_engine: %s/%d: %lld numbers taken for %ld "
                "calls (%ld failed)\n", kind_name[kind], threads,
                (long long)taken, total, errors);
        errors += taken > total ? taken - total : total - taken;
    }
    all = malloc((nlat ? nlat : 1) * sizeof *all);
    for (i = 0; i < threads; i++) {
        memcpy(all + k, c[i].lat, c[i].n * sizeof *all);
        k += c[i].n;
        free(c[i].lat);
    }
    if (nlat == 0)
        all[0] = 0;
    qsort(all, nlat, sizeof *all, cmp64);
    res.per_sec = total / (elapsed / 1e9);
    res.p50 = all[nlat / 2] / 1e3;
    res.p99 = all[nlat * 99 / 100] / 1e3;
    res.p999 = all[nlat * 999 / 1000] / 1e3;
    res.errors = errors;
    free(all);
    free(c);
    free(th);
    tand_server_release(s);
    return res;
}

static int cmp_rate(const void *a, const void *b)
{
    double x = ((const result *)a)->per_sec, y = ((const result *)b)->per_sec;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    static const int calls[] = {1, 2, 4, 16, 64};
    /* (kind, threads) of every phase, in the order they run */
    int phases[32][2], nphases = 0, p, r, rounds = 3;
    static result got[32][MAX_ROUNDS];
    tand_runtime *rt;
    int64_t ms_ = argc > 1 ? atoll(argv[1]) : 2000;
    const char *env = getenv("BENCH_ROUNDS");
    size_t i;

    ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1)
        ncpu = 1;
    if (env != NULL && atoi(env) > 0)
        rounds = atoi(env) < MAX_ROUNDS ? atoi(env) : MAX_ROUNDS;
    if (ms_ < 50 * rounds)
        ms_ = 50 * rounds;
    for (i = 0; i < sizeof calls / sizeof calls[0]; i++) {
        int kinds[] = {K_CALL, K_PLAIN, K_MUTEX, K_DELEG}, k;
        for (k = 0; k < 4; k++) {
            phases[nphases][0] = kinds[k];
            phases[nphases++][1] = calls[i];
        }
    }
    phases[nphases][0] = K_CAST;
    phases[nphases++][1] = 1;
    phases[nphases][0] = K_CAST;
    phases[nphases++][1] = 4;
    if (argc > 2) { /* keep only the phases of one kind */
        int kept = 0;
        for (p = 0; p < nphases; p++)
            if (strcmp(kind_name[phases[p][0]], argv[2]) == 0) {
                phases[kept][0] = phases[p][0];
                phases[kept++][1] = phases[p][1];
            }
        if (kept == 0) {
            fprintf(stderr, "bench_engine: no phase of kind %s\n", argv[2]);
            return 2;
        }
        nphases = kept;
    }
    if (tand_runtime_new(NULL, &rt) != 0) {
        fprintf(stderr, "bench_engine: cannot create the runtime\n");
        return 1;
    }
    for (r = 0; r < rounds; r++)
        for (p = 0; p < nphases; p++)
            got[p][r] = run(rt, phases[p][0], phases[p][1], ms_ / rounds);
    printf("kind        thr       per_sec    p50_us    p99_us  p99.9_us  "
           "errors\n");
    for (int kind = K_CALL; kind <= K_PLAIN; kind++) {
        for (p = 0; p < nphases; p++) {
            result *m;
            if (phases[p][0] != kind)
                continue;
            qsort(got[p], (size_t)rounds, sizeof got[p][0], cmp_rate);
            m = &got[p][rounds / 2];
            printf("%-11s %3d  %12.0f  %9.2f  %9.2f  %9.2f  %ld\n",
                   kind_name[kind], phases[p][1], m->per_sec, m->p50, m->p99,
                   m->p999, m->errors);
        }
    }
    tand_runtime_free(rt);
    return 0;
}
