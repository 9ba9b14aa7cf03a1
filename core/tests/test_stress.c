/*
** test_stress.c - 16 threads call one server for several seconds (set
** TAND_STRESS_SECONDS; default 3): every reply is checked, no number is
** handed out twice or lost, and casts, timeouts and a second server mix
** in to shake the scheduler. Then deferred callers are answered by other
** threads (tand_reply from anywhere, some froms twice) while their
** server runs, is stopped and is killed, journaled or not.
*/
#include "check.h"
#include "echo.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

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


/* ---- deferred callers answered from other threads ---- */

#define POOL_MAX 4096
#define REPLIERS 6
#define CALLERS 8

enum { HOLD = 1, STUCK = 2 };

typedef struct pool {
    pthread_mutex_t mu;
    tand_from *froms[POOL_MAX];
    int64_t values[POOL_MAX];
    int n;
    atomic_int stop;
    atomic_int unstick;
    atomic_int stuck;
    atomic_llong answered, gave_up, already, bad;
    atomic_llong got, ended, wrong;
} pool;

static pool P;

static void pool_put(tand_from *f, int64_t v)
{
    pthread_mutex_lock(&P.mu);
    if (P.n < POOL_MAX) {
        P.froms[P.n] = f;
        P.values[P.n] = v;
        P.n++;
    }
    pthread_mutex_unlock(&P.mu);
}

static int pool_call(void *state, tand_server *self, tand_msg *req,
                     tand_from *from, tand_msg *reply)
{
    (void)state;
    (void)self;
    (void)reply;
    pool_put(from, req->ival[0]);
    if (req->op == STUCK) {
        /* hands its caller to the repliers, then does not return until
        ** told: a handler for tand_server_kill to end */
        atomic_store(&P.stuck, 1);
        while (!atomic_load(&P.unstick))
            sleep_ms(1);
    }
    return TAND_NOREPLY;
}

static const tand_behaviour pool_behaviour = {.name = "pool",
                                              .handle_call = pool_call};

static void *replier_main(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    (void)arg;
    while (!atomic_load(&P.stop)) {
        tand_from *f = NULL;
        int64_t v = 0;
        tand_msg m = {0};
        int rc;
        pthread_mutex_lock(&P.mu);
        if (P.n > 0) {
            int i = (int)(rand_r(&seed) % (unsigned)P.n);
            f = P.froms[i];
            v = P.values[i];
            P.froms[i] = P.froms[P.n - 1];
            P.values[i] = P.values[P.n - 1];
            P.n--;
        }
        pthread_mutex_unlock(&P.mu);
        if (f == NULL) {
            sched_yield();
            continue;
        }
        m.ival[0] = v;
        rc = tand_reply(f, &m);
        if (rc == 0)
            atomic_fetch_add(&P.answered, 1);
        else if (rc == TAND_ETIMEDOUT)
            atomic_fetch_add(&P.gave_up, 1);
        else if (rc == TAND_EANSWERED)
            atomic_fetch_add(&P.already, 1);
        else
            atomic_fetch_add(&P.bad, 1);
        if (rc == 0 && rand_r(&seed) % 4 == 0)
            pool_put(f, v); /* answered again later: already_answered */
    }
    return NULL;
}

static void *pool_caller(void *arg)
{
    tand_runtime *rt = arg;
    int64_t seq = 0;
    while (!atomic_load(&P.stop)) {
        tand_server *s;
        tand_msg req = {0}, reply;
        int rc;
        if (tand_whereis(rt, "pool", &s) != 0) {
            sched_yield();
            continue;
        }
        req.op = HOLD;
        req.ival[0] = ++seq;
        rc = tand_call(s, &req, &reply, seq % 7 == 0 ? 1 : 5000, 0);
        if (rc == 0 && reply.ival[0] == seq)
            atomic_fetch_add(&P.got, 1);
        else if (rc == 0)
            atomic_fetch_add(&P.wrong, 1);
        else if (rc == TAND_ENOPROC || rc == TAND_ECRASHED ||
                 rc == TAND_ESTOPPED || rc == TAND_ETIMEDOUT)
            atomic_fetch_add(&P.ended, 1);
        else
            atomic_fetch_add(&P.wrong, 1);
        tand_msg_clear(&reply);
        tand_server_release(s);
    }
    return NULL;
}

static void *stuck_caller(void *arg)
{
    tand_msg req = {0}, reply;
    req.op = STUCK;
    tand_call(arg, &req, &reply, 10000, 0);
    tand_msg_clear(&reply);
    return NULL;
}

static void replies_from_threads(tand_runtime *rt)
{
    pthread_t rep[REPLIERS], cal[CALLERS], st;
    char path[64];
    int i, round;

    snprintf(path, sizeof path, "/tmp/tand-stress-pool-%d.db", (int)getpid());
    pthread_mutex_init(&P.mu, NULL);
    for (i = 0; i < REPLIERS; i++)
        pthread_create(&rep[i], NULL, replier_main, (void *)(uintptr_t)(i + 1));
    for (i = 0; i < CALLERS; i++)
        pthread_create(&cal[i], NULL, pool_caller, rt);
    for (round = 0; round < 12; round++) {
        tand_server_options o;
        tand_server *s;
        int end = round % 3;
        tand_server_options_init(&o);
        o.behaviour = &pool_behaviour;
        o.name = "pool";
        if (round % 2 == 1) {
            unlink(path);
            o.journal = path;
            o.durability = TAND_DURABLE_OS;
        }
        CHECK_OK(tand_server_start(rt, &o, &s));
        sleep_ms(150);
        if (end == 0) {
            CHECK_OK(tand_server_stop(s, 0, NULL, 5000));
        } else if (end == 1) {
            CHECK_OK(tand_server_stop(s, TAND_ECRASHED, "round", 5000));
        } else {
            /* a kill while its handler is stuck, callers being answered */
            atomic_store(&P.stuck, 0);
            atomic_store(&P.unstick, 0);
            pthread_create(&st, NULL, stuck_caller, s);
            WAIT_FOR(atomic_load(&P.stuck), 5000);
            for (;;) {
                int rc = tand_server_kill(s, "killed mid-handler");
                if (rc != TAND_EBUSY) {
                    CHECK_OK(rc);
                    break;
                }
            }
            atomic_store(&P.unstick, 1);
            pthread_join(st, NULL);
            CHECK_RC(tand_server_stop(s, 0, NULL, 5000), TAND_ENOPROC);
        }
        tand_server_release(s);
    }
    atomic_store(&P.stop, 1);
    for (i = 0; i < CALLERS; i++)
        pthread_join(cal[i], NULL);
    for (i = 0; i < REPLIERS; i++)
        pthread_join(rep[i], NULL);
    /* what is left names ended calls: answered already */
    for (i = 0; i < P.n; i++) {
        tand_msg m = {0};
        CHECK_RC(tand_reply(P.froms[i], &m), TAND_EANSWERED);
    }
    {
        tand_msg m = {0};
        /* not a name tand gave: refused, nothing touched */
        CHECK_RC(tand_reply((tand_from *)(uintptr_t)0x12345, &m),
                 TAND_EANSWERED);
    }
    unlink(path);
    CHECK_INT(atomic_load(&P.wrong), 0);
    CHECK_INT(atomic_load(&P.bad), 0);
    CHECK(atomic_load(&P.got) > 0);
    CHECK(atomic_load(&P.already) > 0);
    printf("replies from %d threads: %lld answered, %lld given up, %lld "
           "already answered; callers got %lld, %lld ended or gave up\n",
           REPLIERS, (long long)atomic_load(&P.answered),
           (long long)atomic_load(&P.gave_up),
           (long long)atomic_load(&P.already), (long long)atomic_load(&P.got),
           (long long)atomic_load(&P.ended));
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
    replies_from_threads(rt);
    tand_runtime_free(rt);
    return check_done("test_stress");
}
