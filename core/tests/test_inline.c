/*
** test_inline.c - calls run on the caller's own thread: when they do and
** when they must not (no bound, a bound past the deadline, a journal, a
** thread that opted out, nesting past 8), and that every promise holds
** meanwhile: one handler at a time per server (and per pumped runtime),
** FIFO per sender, calling_self along the causal chain across threads,
** deferred replies, stats, stops and runtime frees during an inline run.
*/
#include "check.h"
#include "echo.h" /* sleep_ms */

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h> /* _exit */

static tand_runtime *rt;

/* A token for the running thread: the address of a thread-local, unique
** among living threads. A reply carries it back to the caller. */
static _Thread_local char token_;
static int64_t me(void)
{
    return (int64_t)(intptr_t)&token_;
}

/* Counts handlers inside at once and the most ever seen. */
typedef struct meter {
    atomic_int inside, max;
} meter;

static void meter_enter(meter *m)
{
    int n = atomic_fetch_add(&m->inside, 1) + 1;
    int mx = atomic_load(&m->max);
    while (n > mx && !atomic_compare_exchange_weak(&m->max, &mx, n))
        ;
}

static void meter_leave(meter *m)
{
    atomic_fetch_sub(&m->inside, 1);
}

enum {
    P_WHO = 1,   /* reply ival[0] = the running thread's token */
    P_COUNT,     /* call: reply ++counter; cast: count one more cast */
    P_GET,       /* reply ival[0] = counter, ival[1] = casts counted */
    P_ORDER,     /* ival[0] sender, ival[1] sequence (a call or a cast) */
    P_LAST,      /* reply the last sequence seen from sender ival[0] */
    P_RELAY,     /* ival[0] hops: with hops > 0, call next with P_RELAY
                 ** hops - 1; reply ival[0] = servers reached, ival[1] =
                 ** the inner call's status (also kept in inner_rc) */
    P_GATE,      /* wait up to ival[0] ms for the gate; reply ival[0] =
                 ** the running thread's token */
    P_FAIL,      /* reply with status unknown_request */
    P_DEFER,     /* keep the caller, answer later */
    P_ANSWER,    /* answer the kept caller with ival[0]; reply ival[1] =
                 ** what tand_reply returned */
    P_EARLY,     /* answer with ival[0] through tand_reply, then NOREPLY;
                 ** what tand_reply returned goes to early_rc */
    P_CAST_NEXT, /* call: cast P_CALL_NEXT (ival[0] hops) to next */
    P_CALL_NEXT, /* cast: P_RELAY next with ival[0] hops; its status
                 ** goes to cast_rc, then cast_done is set */
    P_NOP
};

#define NSEND 4

typedef struct probe {
    meter own, *meter; /* every callback runs inside *meter */
    tand_server *next; /* P_RELAY's and the casts' target */
    int64_t inner_timeout_ms;
    atomic_int gate, at_gate;
    atomic_llong ran_on;      /* token of the last P_WHO, P_RELAY,
                              ** P_FAIL, P_ANSWER, P_EARLY */
    atomic_llong deferred_on; /* token of the last P_DEFER */
    atomic_int inner_rc, cast_rc, cast_done, early_rc;
    atomic_int terminated, order_errors;
    /* the server's state: its own thread only */
    int64_t counter, casts;
    int64_t last_seq[NSEND];
    tand_from *kept;
} probe;

static void probe_init(probe *p)
{
    int i;
    memset(p, 0, sizeof *p);
    p->meter = &p->own;
    p->inner_timeout_ms = 3000;
    for (i = 0; i < NSEND; i++)
        p->last_seq[i] = -1;
}

static void order(probe *p, const tand_msg *m)
{
    int64_t sender = m->ival[0], seq = m->ival[1];
    if (sender < 0 || sender >= NSEND || seq != p->last_seq[sender] + 1)
        atomic_fetch_add(&p->order_errors, 1);
    if (sender >= 0 && sender < NSEND)
        p->last_seq[sender] = seq;
}

static void gate(probe *p, int64_t ms)
{
    int64_t until = tand_now_ms() + ms;
    atomic_fetch_add(&p->at_gate, 1);
    while (!atomic_load(&p->gate) && tand_now_ms() < until)
        sleep_ms(1);
}

/* P_RELAY to next with `hops`: the status; *reached the servers reached. */
static int relay(probe *p, int64_t hops, int64_t *reached)
{
    tand_msg req = {0}, reply;
    int rc;
    req.op = P_RELAY;
    req.ival[0] = hops;
    rc = tand_call(p->next, &req, &reply, p->inner_timeout_ms, 0);
    *reached = rc == 0 ? reply.ival[0] : 0;
    tand_msg_clear(&reply);
    return rc;
}

static int probe_call(void *state, tand_server *self, tand_msg *req,
                      tand_from *from, tand_msg *reply)
{
    probe *p = state;
    int rc = 0;
    (void)self;
    meter_enter(p->meter);
    switch (req->op) {
    case P_WHO:
        atomic_store(&p->ran_on, me());
        reply->ival[0] = me();
        break;
    case P_COUNT:
        reply->ival[0] = ++p->counter;
        if ((p->counter & 255) == 0)
            sched_yield(); /* a window for an overlap to show */
        break;
    case P_GET:
        reply->ival[0] = p->counter;
        reply->ival[1] = p->casts;
        break;
    case P_ORDER:
        order(p, req);
        break;
    case P_LAST:
        reply->ival[0] = req->ival[0] >= 0 && req->ival[0] < NSEND
                             ? p->last_seq[req->ival[0]]
                             : -2;
        break;
    case P_RELAY: {
        int64_t reached = 0;
        atomic_store(&p->ran_on, me());
        if (req->ival[0] > 0 && p->next != NULL) {
            int inner = relay(p, req->ival[0] - 1, &reached);
            atomic_store(&p->inner_rc, inner);
            reply->ival[1] = inner;
        }
        reply->ival[0] = 1 + reached;
        break;
    }
    case P_GATE:
        reply->ival[0] = me();
        gate(p, req->ival[0]);
        break;
    case P_FAIL:
        atomic_store(&p->ran_on, me());
        reply->status = TAND_EBADREQ;
        break;
    case P_DEFER:
        atomic_store(&p->deferred_on, me());
        p->kept = from;
        rc = TAND_NOREPLY;
        break;
    case P_ANSWER:
        atomic_store(&p->ran_on, me());
        if (p->kept != NULL) {
            tand_msg late = {0};
            late.ival[0] = req->ival[0];
            reply->ival[1] = tand_reply(p->kept, &late);
            p->kept = NULL;
        } else {
            reply->ival[1] = 12345;
        }
        break;
    case P_EARLY: {
        tand_msg early = {0};
        atomic_store(&p->ran_on, me());
        early.ival[0] = req->ival[0];
        atomic_store(&p->early_rc, tand_reply(from, &early));
        rc = TAND_NOREPLY;
        break;
    }
    case P_CAST_NEXT: {
        tand_msg m = {0};
        m.op = P_CALL_NEXT;
        m.ival[0] = req->ival[0];
        reply->status = tand_cast(p->next, &m, 3000, 0);
        break;
    }
    case P_NOP:
        break;
    default:
        reply->status = TAND_EBADREQ;
        break;
    }
    meter_leave(p->meter);
    return rc;
}

static void probe_cast(void *state, tand_server *self, tand_msg *msg)
{
    probe *p = state;
    (void)self;
    meter_enter(p->meter);
    switch (msg->op) {
    case P_COUNT:
        p->casts++;
        break;
    case P_ORDER:
        order(p, msg);
        break;
    case P_GATE:
        gate(p, msg->ival[0]);
        break;
    case P_CALL_NEXT: {
        int64_t reached;
        atomic_store(&p->cast_rc, relay(p, msg->ival[0], &reached));
        atomic_store(&p->cast_done, 1);
        break;
    }
    default:
        break;
    }
    meter_leave(p->meter);
}

static void probe_terminate(void *state, tand_server *self, int reason,
                            const char *detail)
{
    probe *p = state;
    (void)self;
    (void)reason;
    (void)detail;
    meter_enter(p->meter);
    atomic_fetch_add(&p->terminated, 1);
    meter_leave(p->meter);
}

static const tand_behaviour probe_behaviour = {
    .name = "probe",
    .handle_call = probe_call,
    .handle_cast = probe_cast,
    .terminate = probe_terminate};

static int probe_start(tand_runtime *r, probe *p, int64_t bound_us,
                       const char *journal, tand_server **out)
{
    tand_server_options o;
    memset(&o, 0, sizeof o);
    o.behaviour = &probe_behaviour;
    o.arg = p;
    o.bound_us = bound_us;
    o.journal = journal;
    return tand_server_start(r, &o, out);
}

static int pcall(tand_server *s, int op, int64_t a, int64_t b,
                 int64_t timeout_ms, int64_t out[2])
{
    tand_msg req = {0}, reply;
    int rc;
    req.op = op;
    req.ival[0] = a;
    req.ival[1] = b;
    rc = tand_call(s, &req, &reply, timeout_ms, 0);
    if (out != NULL) {
        out[0] = reply.ival[0];
        out[1] = reply.ival[1];
    }
    tand_msg_clear(&reply);
    return rc;
}

static int pcast(tand_server *s, int op, int64_t a, int64_t b,
                 int64_t timeout_ms)
{
    tand_msg m = {0};
    m.op = op;
    m.ival[0] = a;
    m.ival[1] = b;
    return tand_cast(s, &m, timeout_ms, 0);
}

/* The token of the thread that ran a P_WHO call, 0 if the call failed. */
static int64_t who(tand_server *s, int64_t timeout_ms)
{
    int64_t out[2];
    if (pcall(s, P_WHO, 0, 0, timeout_ms, out) != 0)
        return 0;
    return out[0];
}

/* Calls P_WHO until one runs on this thread (the server may still be
** held by the worker that served an earlier call) or ms pass. */
static int until_inline(tand_server *s, int64_t ms)
{
    int64_t end = tand_now_ms() + ms;
    do {
        if (who(s, 5000) == me())
            return 1;
        sched_yield();
    } while (tand_now_ms() < end);
    return 0;
}

/* Loads for the checks (a failed check prints these, not the macro). */
static int ld(atomic_int *a)
{
    return atomic_load(a);
}

static int64_t ldt(atomic_llong *a)
{
    return atomic_load(a);
}

/* A call that must not run on this thread: it runs on a worker, or times
** out (which an inline run, answered when it returns, never does).
** Tries until one is answered, up to `tries`; false if one ran here or
** none was answered. */
static bool not_inline(tand_server *s, int64_t timeout_ms, int tries)
{
    int answered = 0, i;
    for (i = 0; i < tries && answered < 3; i++) {
        int64_t out[2] = {0, 0};
        int rc = pcall(s, P_WHO, 0, 0, timeout_ms, out);
        if (rc == 0 && out[0] == me())
            return false;
        if (rc == 0)
            answered++;
        else if (rc != TAND_ETIMEDOUT)
            return false;
    }
    return answered > 0;
}

typedef struct freer {
    tand_runtime *r;
    atomic_int done;
} freer;

static void *run_free(void *arg)
{
    freer *f = arg;
    tand_runtime_free(f->r);
    atomic_store(&f->done, 1);
    return NULL;
}

/* tand_runtime_free on another thread, waited for until ms pass: true
** when it returned. A free that does not return cannot be taken back, so
** the caller reports it and ends the program (fail_stuck). */
static bool free_within(tand_runtime *r, int64_t ms)
{
    freer f;
    pthread_t th;
    int64_t end = tand_now_ms() + ms;
    f.r = r;
    atomic_init(&f.done, 0);
    pthread_create(&th, NULL, run_free, &f);
    while (!atomic_load(&f.done) && tand_now_ms() < end)
        sleep_ms(1);
    if (!atomic_load(&f.done))
        return false;
    pthread_join(th, NULL);
    return true;
}

/* Ends a test that found the engine stuck: its threads cannot be joined. */
static void fail_stuck(const char *where, int line)
{
    fprintf(stderr, "%s:%d: %s: tand_runtime_free did not return\n", __FILE__,
            line, where);
    check_failures++;
    check_done("test_inline");
    fflush(NULL);
    _exit(1);
}

#define FREE_WITHIN(r, ms)                                                     \
    do {                                                                       \
        if (!free_within((r), (ms)))                                           \
            fail_stuck(__func__, __LINE__);                                    \
    } while (0)

static void stop_release(tand_server *s)
{
    tand_server_stop(s, 0, NULL, 5000);
    tand_server_release(s);
}

/* ---- 1 --------------------------------------------------------------- */

static void inline_runs_on_caller(void)
{
    probe pb, p0, pj;
    tand_server *bounded, *unbounded, *journaled;
    char dir[64], path[128], cmd[160];
    int64_t w;
    int i;

    probe_init(&pb);
    probe_init(&p0);
    probe_init(&pj);
    CHECK_OK(probe_start(rt, &pb, 1000, NULL, &bounded));
    CHECK_OK(probe_start(rt, &p0, 0, NULL, &unbounded));

    /* a free server with a bound runs on the calling thread */
    for (i = 0; i < 3; i++)
        CHECK(who(bounded, 5000) == me());
    /* without a bound, on a worker */
    for (i = 0; i < 3; i++) {
        w = who(unbounded, 5000);
        CHECK(w != 0);
        CHECK(w != me());
    }
    /* a thread that opted out queues its calls for a worker */
    CHECK_INT(tand_thread_set_inline(0), 1);
    CHECK_INT(tand_thread_set_inline(0), 0);
    for (i = 0; i < 3; i++) {
        w = who(bounded, 5000);
        CHECK(w != 0);
        CHECK(w != me());
    }
    CHECK_INT(tand_thread_set_inline(1), 0);
    CHECK_INT(tand_thread_set_inline(1), 1);
    CHECK(until_inline(bounded, 5000)); /* once the worker lets go */

    /* a journaled server never runs on its caller, bound or not */
    snprintf(dir, sizeof dir, "/tmp/tand-inline-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/probe.db", dir);
    CHECK_OK(probe_start(rt, &pj, 1000, path, &journaled));
    for (i = 0; i < 3; i++) {
        w = who(journaled, 5000);
        CHECK(w != 0);
        CHECK(w != me());
    }
    stop_release(journaled);
    CHECK_INT(ld(&pj.terminated), 1);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);

    stop_release(bounded);
    stop_release(unbounded);
    CHECK_INT(ld(&pb.terminated), 1);
    CHECK_INT(ld(&p0.terminated), 1);
}

/* ---- 2 --------------------------------------------------------------- */

static void deadline_fits(void)
{
    probe p;
    tand_server *s;

    probe_init(&p);
    CHECK_OK(probe_start(rt, &p, 500000, NULL, &s)); /* 0.5 s */
    /* each inline run lets the server go before the call returns, so
    ** every call below finds it free */
    CHECK(who(s, 2000) == me());
    CHECK(who(s, TAND_FOREVER) == me());
    CHECK(who(s, 2000) == me());
    /* 100 ms left is less than the bound: a worker runs it */
    CHECK(not_inline(s, 100, 20));
    CHECK(until_inline(s, 5000));
    stop_release(s);
}

/* ---- 3 --------------------------------------------------------------- */

#define STRESS_CALLERS 8
#define STRESS_CALLS 20000
#define STRESS_CASTERS 2
#define STRESS_CASTS 20000

typedef struct stresser {
    tand_server *s;
    int64_t *got; /* callers: the numbers their calls returned */
    int failures;
} stresser;

static void *stress_caller(void *arg)
{
    stresser *t = arg;
    int64_t out[2];
    int i;
    for (i = 0; i < STRESS_CALLS; i++) {
        if (pcall(t->s, P_COUNT, 0, 0, 30000, out) != 0) {
            t->failures++;
            t->got[i] = 0;
        } else {
            t->got[i] = out[0];
        }
    }
    return NULL;
}

static void *stress_caster(void *arg)
{
    stresser *t = arg;
    int i;
    for (i = 0; i < STRESS_CASTS; i++)
        if (pcast(t->s, P_COUNT, 0, 0, 30000) != 0)
            t->failures++;
    /* handled after this thread's casts: they are all in */
    if (pcall(t->s, P_NOP, 0, 0, 30000, NULL) != 0)
        t->failures++;
    return NULL;
}

static void one_at_a_time(void)
{
    enum { N = STRESS_CALLERS * STRESS_CALLS };
    probe p;
    tand_server *s;
    pthread_t th[STRESS_CALLERS + STRESS_CASTERS];
    stresser t[STRESS_CALLERS + STRESS_CASTERS];
    unsigned char *seen = calloc(N + 1, 1);
    int64_t out[2];
    tand_stats st;
    int i, k, bad = 0, dup = 0;

    probe_init(&p);
    CHECK_OK(probe_start(rt, &p, 20, NULL, &s)); /* short: combining */
    for (i = 0; i < STRESS_CALLERS + STRESS_CASTERS; i++) {
        t[i].s = s;
        t[i].failures = 0;
        t[i].got =
            i < STRESS_CALLERS ? malloc(STRESS_CALLS * sizeof(int64_t)) : NULL;
        pthread_create(&th[i], NULL,
                       i < STRESS_CALLERS ? stress_caller : stress_caster,
                       &t[i]);
    }
    for (i = 0; i < STRESS_CALLERS + STRESS_CASTERS; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT(t[i].failures, 0);
    }
    CHECK_INT(ld(&p.own.max), 1);
    CHECK_INT(ld(&p.own.inside), 0);
    /* every call got its own number, and together they are 1..N */
    for (i = 0; i < STRESS_CALLERS; i++) {
        for (k = 0; k < STRESS_CALLS; k++) {
            int64_t v = t[i].got[k];
            if (v < 1 || v > N)
                bad++;
            else if (seen[v]++)
                dup++;
        }
        free(t[i].got);
    }
    CHECK_INT(bad, 0);
    CHECK_INT(dup, 0);
    CHECK_OK(pcall(s, P_GET, 0, 0, 5000, out));
    CHECK_INT(out[0], N);
    CHECK_INT(out[1], STRESS_CASTERS * STRESS_CASTS);
    CHECK_OK(tand_server_stats(s, &st));
    CHECK_INT(st.calls, N + STRESS_CASTERS + 1);
    CHECK_INT(st.casts, STRESS_CASTERS * STRESS_CASTS);
    CHECK_INT(st.errors, 0);
    CHECK_INT(st.timeouts, 0);
    stop_release(s);
    CHECK_INT(ld(&p.own.max), 1); /* terminate too */
    free(seen);
}

/* ---- 4 --------------------------------------------------------------- */

#define FIFO_N 20000

typedef struct fifo_sender {
    tand_server *s;
    int id;
    int mode; /* 0: calls and casts interleaved; 1: calls; 2: casts */
    int failures;
} fifo_sender;

static void *fifo_send(void *arg)
{
    fifo_sender *f = arg;
    int i, rc;
    for (i = 0; i < FIFO_N; i++) {
        bool call = f->mode == 1 || (f->mode == 0 && i % 3 != 1);
        rc = call ? pcall(f->s, P_ORDER, f->id, i, 30000, NULL)
                  : pcast(f->s, P_ORDER, f->id, i, 30000);
        if (rc != 0)
            f->failures++;
    }
    if (pcall(f->s, P_NOP, 0, 0, 30000, NULL) != 0)
        f->failures++;
    return NULL;
}

static void fifo_per_sender(void)
{
    probe p;
    tand_server *s;
    pthread_t th[3];
    fifo_sender f[3];
    int64_t out[2];
    int i;

    probe_init(&p);
    CHECK_OK(probe_start(rt, &p, 20, NULL, &s));
    for (i = 0; i < 3; i++) {
        f[i].s = s;
        f[i].id = i;
        f[i].mode = i; /* mixed, a hammer of calls, casts only */
        f[i].failures = 0;
        pthread_create(&th[i], NULL, fifo_send, &f[i]);
    }
    for (i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT(f[i].failures, 0);
    }
    CHECK_INT(ld(&p.order_errors), 0);
    for (i = 0; i < 3; i++) {
        CHECK_OK(pcall(s, P_LAST, i, 0, 5000, out));
        CHECK_INT(out[0], FIFO_N - 1);
    }
    CHECK_INT(ld(&p.own.max), 1);
    stop_release(s);
}

/* ---- 5 --------------------------------------------------------------- */

static void nested_inline(void)
{
    enum { N = 10 };
    probe p[N];
    tand_server *s[N];
    int64_t out[2];
    int i, round;

    /* declared within 100 us, so that a worker runs them inline too */
    for (i = 0; i < N; i++) {
        probe_init(&p[i]);
        CHECK_OK(probe_start(rt, &p[i], 50, NULL, &s[i]));
    }
    for (i = 0; i + 1 < N; i++)
        p[i].next = s[i + 1];
    for (round = 0; round < 2; round++) {
        for (i = 0; i < N; i++) {
            atomic_store(&p[i].ran_on, 0);
            atomic_store(&p[i].inner_rc, 1);
        }
        CHECK_OK(pcall(s[0], P_RELAY, N - 1, 0, 10000, out));
        CHECK_INT(out[0], N); /* every level was reached */
        CHECK_OK((int)out[1]);
        for (i = 0; i + 1 < N; i++)
            CHECK_OK(ld(&p[i].inner_rc));
        /* 8 levels nest on this thread, the 9th queues for a worker,
        ** which runs the 10th inline in turn */
        for (i = 0; i < 8; i++)
            CHECK(ldt(&p[i].ran_on) == me());
        for (i = 8; i < N; i++) {
            CHECK(ldt(&p[i].ran_on) != 0);
            CHECK(ldt(&p[i].ran_on) != me());
        }
        CHECK(ldt(&p[9].ran_on) == ldt(&p[8].ran_on));
    }
    for (i = 0; i < N; i++)
        p[i].next = NULL;
    for (i = 0; i < N; i++)
        stop_release(s[i]);
}

/* ---- 6 --------------------------------------------------------------- */

/* A's handler calls B, whose handler calls A: B's call fails at once
** with calling_self, whichever threads run them. */
static void call_cycle(int64_t bound_a, int64_t bound_b)
{
    probe pa, pb;
    tand_server *a, *b;
    int64_t out[2], t0, took;
    bool with_a;

    probe_init(&pa);
    probe_init(&pb);
    CHECK_OK(probe_start(rt, &pa, bound_a, NULL, &a));
    CHECK_OK(probe_start(rt, &pb, bound_b, NULL, &b));
    pa.next = b;
    pb.next = a;
    atomic_store(&pa.inner_rc, 1);
    atomic_store(&pb.inner_rc, 1);
    t0 = tand_now_ms();
    CHECK_OK(pcall(a, P_RELAY, 2, 0, 5000, out));
    took = tand_now_ms() - t0;
    if (took >= 1000)
        fprintf(stderr, "cycle %lld/%lld took %lld ms\n", (long long)bound_a,
                (long long)bound_b, (long long)took);
    CHECK(took < 1000);
    CHECK_INT(out[0], 2); /* A and B; B's call to A went nowhere */
    CHECK_OK((int)out[1]);
    CHECK_OK(ld(&pa.inner_rc));
    CHECK_RC(ld(&pb.inner_rc), TAND_ECALLSELF);
    /* B runs inside A's handler on A's thread when it has a bound, but
    ** on a worker only when that bound is within 100 us */
    with_a = bound_b > 0 && (bound_a > 0 || bound_b <= 100);
    CHECK((ldt(&pa.ran_on) == me()) == (bound_a > 0));
    CHECK((ldt(&pb.ran_on) == me()) == (bound_a > 0 && bound_b > 0));
    CHECK((ldt(&pb.ran_on) == ldt(&pa.ran_on)) == with_a);
    pa.next = pb.next = NULL;
    stop_release(a);
    stop_release(b);
}

/* A longer cycle on workers: A -> B -> C -> A. */
static void call_cycle3(void)
{
    probe p[3];
    tand_server *s[3];
    int64_t out[2], t0;
    int i;

    for (i = 0; i < 3; i++) {
        probe_init(&p[i]);
        CHECK_OK(probe_start(rt, &p[i], 0, NULL, &s[i]));
    }
    for (i = 0; i < 3; i++)
        p[i].next = s[(i + 1) % 3];
    t0 = tand_now_ms();
    CHECK_OK(pcall(s[0], P_RELAY, 3, 0, 5000, out));
    CHECK(tand_now_ms() - t0 < 1000);
    CHECK_INT(out[0], 3);
    CHECK_OK(ld(&p[0].inner_rc));
    CHECK_OK(ld(&p[1].inner_rc));
    CHECK_RC(ld(&p[2].inner_rc), TAND_ECALLSELF);
    for (i = 0; i < 3; i++)
        p[i].next = NULL;
    for (i = 0; i < 3; i++)
        stop_release(s[i]);
}

/* Casts and the causal chain. (a) A's call handler casts to B and
** returns; B's cast handler then calls A: nothing waits on that call,
** so it is answered (no calling_self). (b) A's cast handler calls B,
** whose handler calls A: A's handler does wait for that request (A is
** held until B answers), which is the causal chain tand.h defines, so
** B's call fails at once with calling_self instead of deadlocking. */
static void cast_cycles(int64_t bound)
{
    probe pa, pb;
    tand_server *a, *b;
    int64_t out[2], t0;

    probe_init(&pa);
    probe_init(&pb);
    CHECK_OK(probe_start(rt, &pa, bound, NULL, &a));
    CHECK_OK(probe_start(rt, &pb, bound, NULL, &b));
    pa.next = b;
    pb.next = a;

    /* (a) */
    atomic_store(&pb.cast_rc, 1);
    CHECK_OK(pcall(a, P_CAST_NEXT, 0, 0, 5000, out));
    WAIT_FOR(ld(&pb.cast_done), 10000);
    CHECK_OK(ld(&pb.cast_rc));

    /* (b) */
    atomic_store(&pa.cast_rc, 1);
    atomic_store(&pb.inner_rc, 1);
    t0 = tand_now_ms();
    CHECK_OK(pcast(a, P_CALL_NEXT, 1, 0, 5000));
    WAIT_FOR(ld(&pa.cast_done), 10000);
    CHECK(tand_now_ms() - t0 < 1000);
    CHECK_OK(ld(&pa.cast_rc));
    CHECK_RC(ld(&pb.inner_rc), TAND_ECALLSELF);

    pa.next = pb.next = NULL;
    stop_release(a);
    stop_release(b);
}

static void cycle_callself(void)
{
    call_cycle(1000, 1000); /* all inline on this thread */
    call_cycle(0, 0);       /* A and B on workers */
    call_cycle(1000, 0);    /* A inline, B on a worker */
    call_cycle(0, 50);      /* A on a worker, B inline there */
    call_cycle(0, 1000);    /* A on a worker, B (too long) on another */
    call_cycle3();
    cast_cycles(1000);
    cast_cycles(0);
}

/* ---- 7 --------------------------------------------------------------- */

static void blocking_handler_no_stall(void)
{
    tand_runtime_options ro = {1};
    tand_runtime *one;
    probe px, py, pa, pb, pc, pd;
    tand_server *x, *y, *a, *b, *c, *d;
    int64_t out[2], t0;

    CHECK_OK(tand_runtime_new(&ro, &one));
    probe_init(&px);
    probe_init(&py);
    CHECK_OK(probe_start(one, &px, 0, NULL, &x));
    CHECK_OK(probe_start(one, &py, 1000, NULL, &y));
    /* x holds the only worker at the gate; y is run by its caller */
    CHECK_OK(pcast(x, P_GATE, 20000, 0, 1000));
    WAIT_FOR(ld(&px.at_gate) == 1, 5000);
    t0 = tand_now_ms();
    CHECK(who(y, 2000) == me());
    CHECK(who(y, 2000) == me());
    CHECK(tand_now_ms() - t0 < 1000);
    atomic_store(&px.gate, 1);
    CHECK(who(x, 5000) != 0);

    /* a, on the only worker, calls b (no bound): b is still served,
    ** by a spare started while a's worker waits */
    probe_init(&pa);
    probe_init(&pb);
    probe_init(&pc);
    probe_init(&pd);
    CHECK_OK(probe_start(one, &pa, 0, NULL, &a));
    CHECK_OK(probe_start(one, &pb, 0, NULL, &b));
    CHECK_OK(probe_start(one, &pc, 50, NULL, &c));
    CHECK_OK(probe_start(one, &pd, 1000, NULL, &d));
    pa.next = b;
    atomic_store(&pa.inner_rc, 1);
    t0 = tand_now_ms();
    CHECK_OK(pcall(a, P_RELAY, 1, 0, 10000, out));
    CHECK(tand_now_ms() - t0 < 3000);
    CHECK_INT(out[0], 2);
    CHECK_OK(ld(&pa.inner_rc));
    CHECK(ldt(&pa.ran_on) != me());
    CHECK(ldt(&pb.ran_on) != me());
    CHECK(ldt(&pb.ran_on) != ldt(&pa.ran_on));
    /* c, declared within 100 us, runs on a's worker inside a's handler;
    ** d, declared longer, does not keep the worker: another thread runs
    ** it while a's worker waits */
    pa.next = c;
    CHECK_OK(pcall(a, P_RELAY, 1, 0, 10000, out));
    CHECK_INT(out[0], 2);
    CHECK(ldt(&pc.ran_on) == ldt(&pa.ran_on));
    pa.next = d;
    CHECK_OK(pcall(a, P_RELAY, 1, 0, 10000, out));
    CHECK_INT(out[0], 2);
    CHECK(ldt(&pd.ran_on) != 0);
    CHECK(ldt(&pd.ran_on) != ldt(&pa.ran_on));
    CHECK(ldt(&pd.ran_on) != me());
    pa.next = NULL;
    FREE_WITHIN(one, 60000);
    CHECK_INT(ld(&px.terminated), 1);
    CHECK_INT(ld(&py.terminated), 1);
    CHECK_INT(ld(&pa.terminated), 1);
    CHECK_INT(ld(&pb.terminated), 1);
    CHECK_INT(ld(&pc.terminated), 1);
    CHECK_INT(ld(&pd.terminated), 1);
    tand_server_release(x);
    tand_server_release(y);
    tand_server_release(a);
    tand_server_release(b);
    tand_server_release(c);
    tand_server_release(d);
}

/* ---- 8 --------------------------------------------------------------- */

#define PUMP_CALLERS 4
#define PUMP_CALLS 5000
#define PUMP_SERVERS 3

typedef struct pump_user {
    tand_server **s;
    int id;
    int calls, casts, failures;
    atomic_int *done;
    tand_runtime *rt;
    int handled;
} pump_user;

static void *pump_caller(void *arg)
{
    pump_user *u = arg;
    int i, k;
    for (i = 0; i < PUMP_CALLS; i++) {
        tand_server *s = u->s[(i + u->id) % PUMP_SERVERS];
        if (pcall(s, P_COUNT, 0, 0, 30000, NULL) == 0)
            u->calls++;
        else
            u->failures++;
        if (i % 8 == 0) {
            if (pcast(s, P_COUNT, 0, 0, 30000) == 0)
                u->casts++;
            else
                u->failures++;
        }
    }
    for (k = 0; k < PUMP_SERVERS; k++) /* after this thread's casts */
        if (pcall(u->s[k], P_NOP, 0, 0, 30000, NULL) != 0)
            u->failures++;
    return NULL;
}

static void *pumper(void *arg)
{
    pump_user *u = arg;
    while (!atomic_load(u->done)) {
        int n = tand_runtime_pump(u->rt, 1000);
        if (n < 0) {
            u->failures++;
            break;
        }
        u->handled += n;
        if (n == 0)
            sched_yield();
    }
    return NULL;
}

static void pumped_one_handler(void)
{
    tand_runtime_options ro = {TAND_PUMPED};
    tand_runtime *pr;
    probe p[PUMP_SERVERS];
    tand_server *s[PUMP_SERVERS];
    meter shared = {0};
    pthread_t th[PUMP_CALLERS + 1];
    pump_user u[PUMP_CALLERS + 1];
    atomic_int done = 0;
    int64_t calls = 0, casts = 0, out[2];
    int i;

    CHECK_OK(tand_runtime_new(&ro, &pr));
    for (i = 0; i < PUMP_SERVERS; i++) {
        probe_init(&p[i]);
        p[i].meter = &shared; /* the whole runtime: one at a time */
        CHECK_OK(probe_start(pr, &p[i], 50, NULL, &s[i]));
    }
    for (i = 0; i <= PUMP_CALLERS; i++) {
        memset(&u[i], 0, sizeof u[i]);
        u[i].s = s;
        u[i].id = i;
        u[i].done = &done;
        u[i].rt = pr;
        pthread_create(&th[i], NULL, i < PUMP_CALLERS ? pump_caller : pumper,
                       &u[i]);
    }
    for (i = 0; i < PUMP_CALLERS; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT(u[i].failures, 0);
        CHECK_INT(u[i].calls, PUMP_CALLS);
        calls += u[i].calls;
        casts += u[i].casts;
    }
    atomic_store(&done, 1);
    pthread_join(th[PUMP_CALLERS], NULL);
    CHECK_INT(u[PUMP_CALLERS].failures, 0);
    printf("pumped: the pump thread handled %d messages\n",
           u[PUMP_CALLERS].handled);
    CHECK_INT(ld(&shared.max), 1);
    CHECK_INT(ld(&shared.inside), 0);
    {
        int64_t got_calls = 0, got_casts = 0;
        for (i = 0; i < PUMP_SERVERS; i++) {
            CHECK_OK(pcall(s[i], P_GET, 0, 0, 5000, out));
            got_calls += out[0];
            got_casts += out[1];
        }
        CHECK_INT(got_calls, calls);
        CHECK_INT(got_casts, casts);
    }
    FREE_WITHIN(pr, 60000);
    CHECK_INT(ld(&shared.max), 1);
    for (i = 0; i < PUMP_SERVERS; i++) {
        CHECK_INT(ld(&p[i].terminated), 1);
        tand_server_release(s[i]);
    }
}

/* ---- 9 --------------------------------------------------------------- */

static void stats_inline(void)
{
    enum { N = 100 };
    probe p;
    tand_server *s;
    tand_stats st;
    int i, here = 0;

    probe_init(&p);
    CHECK_OK(probe_start(rt, &p, 1000, NULL, &s));
    for (i = 0; i < N; i++)
        if (who(s, 5000) == me())
            here++;
    CHECK_INT(here, N);
    CHECK_OK(tand_server_stats(s, &st));
    CHECK_INT(st.calls, N);
    CHECK(st.handler_ns > 0);
    CHECK_INT(st.errors, 0);
    CHECK_INT(st.timeouts, 0);
    CHECK_INT(st.deferred, 0);
    CHECK_INT(st.mailbox_depth, 0);
    atomic_store(&p.ran_on, 0);
    CHECK_RC(pcall(s, P_FAIL, 0, 0, 5000, NULL), TAND_EBADREQ);
    CHECK(ldt(&p.ran_on) == me());
    CHECK(who(s, 5000) == me());
    CHECK_OK(tand_server_stats(s, &st));
    CHECK_INT(st.calls, N + 2);
    CHECK_INT(st.errors, 1);
    stop_release(s);
}

/* ---- 10 -------------------------------------------------------------- */

typedef struct deferrer {
    tand_server *s;
    int rc;
    int64_t value, token;
} deferrer;

static void *defer_call(void *arg)
{
    deferrer *d = arg;
    int64_t out[2] = {0, 0};
    d->token = me();
    d->rc = pcall(d->s, P_DEFER, 0, 0, 10000, out);
    d->value = out[0];
    return NULL;
}

static void deferred_inline(void)
{
    probe p;
    tand_server *s;
    pthread_t th;
    deferrer d = {0};
    tand_stats st;
    int64_t out[2];

    probe_init(&p);
    CHECK_OK(probe_start(rt, &p, 1000, NULL, &s));
    d.s = s;
    d.rc = 1;
    pthread_create(&th, NULL, defer_call, &d);
    WAIT_FOR(tand_server_stats(s, &st) == 0 && st.calls == 1 &&
                 st.deferred == 1,
             5000);
    /* once the deferring run has let the server go, this thread answers
    ** it, inline too */
    CHECK(until_inline(s, 5000));
    CHECK_OK(pcall(s, P_ANSWER, 77, 0, 5000, out));
    CHECK_OK((int)out[1]);
    CHECK(ldt(&p.ran_on) == me());
    pthread_join(th, NULL);
    CHECK_OK(d.rc);
    CHECK_INT(d.value, 77);
    CHECK(ldt(&p.deferred_on) == d.token); /* inline there */
    CHECK_OK(tand_server_stats(s, &st));
    CHECK_INT(st.deferred, 0);

    /* answered by the handler itself before it returns NOREPLY */
    atomic_store(&p.early_rc, 1);
    CHECK_OK(pcall(s, P_EARLY, 55, 0, 5000, out));
    CHECK_INT(out[0], 55);
    CHECK_OK(ld(&p.early_rc));
    CHECK(ldt(&p.ran_on) == me());
    CHECK_OK(tand_server_stats(s, &st));
    CHECK_INT(st.deferred, 0);
    CHECK_INT(st.timeouts, 0);
    stop_release(s);
}

/* ---- 11 -------------------------------------------------------------- */

typedef struct caller {
    tand_server *s;
    int op;
    int64_t arg, timeout_ms;
    int rc;
    int64_t token, ran_on;
    atomic_int done;
} caller;

static void *run_caller(void *arg)
{
    caller *c = arg;
    int64_t out[2] = {0, 0};
    c->token = me();
    c->rc = pcall(c->s, c->op, c->arg, 0, c->timeout_ms, out);
    c->ran_on = out[0];
    atomic_store(&c->done, 1);
    return NULL;
}

typedef struct stopper {
    tand_server *s;
    int rc;
    atomic_int done;
} stopper;

static void *run_stopper(void *arg)
{
    stopper *st = arg;
    st->rc = tand_server_stop(st->s, 0, NULL, 2000);
    atomic_store(&st->done, 1);
    return NULL;
}

/* A caller runs the handler, held at the gate, while another thread
** stops the server; nqueued callers wait behind it. */
static void stop_during_inline_with(int64_t bound_us, int nqueued)
{
    probe p;
    tand_server *s;
    caller holder, queued[3];
    stopper sp;
    pthread_t th_holder, th_queued[3], th_stop;
    tand_stats st;
    int i;

    probe_init(&p);
    CHECK_OK(probe_start(rt, &p, bound_us, NULL, &s));
    memset(&holder, 0, sizeof holder);
    holder.s = s;
    holder.op = P_GATE;
    holder.arg = 20000;
    holder.timeout_ms = 30000;
    holder.rc = 1;
    pthread_create(&th_holder, NULL, run_caller, &holder);
    WAIT_FOR(ld(&p.at_gate) == 1, 5000);
    for (i = 0; i < nqueued; i++) {
        memset(&queued[i], 0, sizeof queued[i]);
        queued[i].s = s;
        queued[i].op = P_WHO;
        queued[i].timeout_ms = 10000;
        queued[i].rc = 1;
        pthread_create(&th_queued[i], NULL, run_caller, &queued[i]);
    }
    WAIT_FOR(tand_server_stats(s, &st) == 0 &&
                 st.mailbox_depth == (uint64_t)nqueued,
             10000);
    memset(&sp, 0, sizeof sp);
    sp.s = s;
    sp.rc = 1;
    pthread_create(&th_stop, NULL, run_stopper, &sp);
    WAIT_FOR(!tand_server_alive(s), 5000);
    /* the stop waits for the handler at the gate */
    CHECK_INT(ld(&sp.done), 0);
    CHECK_INT(ld(&holder.done), 0);
    CHECK_INT(ld(&p.terminated), 0);
    atomic_store(&p.gate, 1);
    pthread_join(th_stop, NULL);
    CHECK_OK(sp.rc);
    pthread_join(th_holder, NULL);
    CHECK_OK(holder.rc); /* the caller running it has its reply */
    CHECK(holder.ran_on == holder.token); /* it ran the handler itself */
    for (i = 0; i < nqueued; i++) {
        pthread_join(th_queued[i], NULL);
        CHECK_RC(queued[i].rc, TAND_ENOPROC);
    }
    CHECK_INT(ld(&p.terminated), 1);
    CHECK_INT(ld(&p.own.max), 1);
    CHECK_RC(pcall(s, P_WHO, 0, 0, 1000, NULL), TAND_ENOPROC);
    CHECK_INT(ld(&p.terminated), 1);
    tand_server_release(s);
}

static void stop_during_inline(void)
{
    /* with a short bound the holder serves on and ends it on its own
    ** thread; with a longer one a worker does */
    stop_during_inline_with(50, 3);
    stop_during_inline_with(5000, 3);
    stop_during_inline_with(50, 0);
    stop_during_inline_with(5000, 0);
}

/* ---- 12 -------------------------------------------------------------- */

typedef struct looper {
    tand_server *s;
    int op;
    int64_t arg;
    bool no_inline;
    atomic_int started;
    atomic_int last_rc; /* for the report of a stuck free */
    int rc, bad, calls;
} looper;

static void *call_until_refused(void *arg)
{
    looper *l = arg;
    int64_t out[2];
    if (l->no_inline)
        tand_thread_set_inline(0);
    do {
        atomic_store(&l->started, 1);
        l->rc = pcall(l->s, l->op, l->arg, 0, 10000, out);
        atomic_store(&l->last_rc, l->rc);
        if (l->rc == 0) {
            l->calls++;
            /* a relay's inner call sees the same end */
            if (l->op == P_RELAY && out[1] != 0 && out[1] != TAND_ENOPROC)
                l->bad++;
        } else if (l->rc != TAND_ENOPROC) {
            l->bad++;
        }
    } while (l->rc == 0);
    return NULL;
}

static void free_runtime_during_inline(void)
{
    enum { LOOPERS = 5 };
    int round, calls = 0;
    for (round = 0; round < 100; round++) {
        tand_runtime_options ro = {round % 3 == 2 ? TAND_PUMPED : round % 3 + 1};
        tand_runtime *r;
        probe pa, pb;
        tand_server *a, *b;
        pthread_t th[LOOPERS];
        looper l[LOOPERS];
        int i;

        CHECK_OK(tand_runtime_new(&ro, &r));
        probe_init(&pa);
        probe_init(&pb);
        CHECK_OK(probe_start(r, &pa, 50, NULL, &a));
        CHECK_OK(probe_start(r, &pb, 2000, NULL, &b));
        pa.next = b; /* b is the runtime's until free ends it */
        for (i = 0; i < LOOPERS; i++) {
            memset(&l[i], 0, sizeof l[i]);
            l[i].s = i % 2 ? b : a;
            l[i].op = i == 0 ? P_RELAY : i == 1 ? P_COUNT : P_WHO;
            l[i].arg = i == 0 ? 1 : 0;
            l[i].no_inline = i == 4;
            pthread_create(&th[i], NULL, call_until_refused, &l[i]);
        }
        for (i = 0; i < LOOPERS; i++)
            WAIT_FOR(ld(&l[i].started), 5000);
        if (round % 2)
            sleep_ms(1); /* some rounds free mid-stream, others at once */
        if (!free_within(r, 60000)) {
            /* say what is stuck before giving up */
            tand_stats st;
            fprintf(stderr, "round %d (workers %d): the free is stuck\n", round,
                    ro.workers);
            for (i = 0; i < LOOPERS; i++)
                fprintf(stderr, "  caller %d: last call %s\n", i,
                        tand_errname(ld(&l[i].last_rc)));
            tand_server_stats(a, &st);
            fprintf(stderr, "  a: mailbox %llu, timeouts %llu, terminated %d\n",
                    (unsigned long long)st.mailbox_depth,
                    (unsigned long long)st.timeouts, ld(&pa.terminated));
            tand_server_stats(b, &st);
            fprintf(stderr, "  b: mailbox %llu, timeouts %llu, terminated %d\n",
                    (unsigned long long)st.mailbox_depth,
                    (unsigned long long)st.timeouts, ld(&pb.terminated));
            fail_stuck(__func__, __LINE__);
        }
        for (i = 0; i < LOOPERS; i++) {
            pthread_join(th[i], NULL);
            CHECK_RC(l[i].rc, TAND_ENOPROC);
            CHECK_INT(l[i].bad, 0);
            calls += l[i].calls;
        }
        CHECK_INT(ld(&pa.terminated), 1);
        CHECK_INT(ld(&pb.terminated), 1);
        CHECK_INT(ld(&pa.own.max), 1);
        CHECK_INT(ld(&pb.own.max), 1);
        tand_server_release(a);
        tand_server_release(b);
    }
    printf("free during inline: %d calls answered over 100 rounds\n", calls);
}

/* Says which test runs, so that a hang shows where. */
#define RUN(test)                                                              \
    do {                                                                       \
        printf("-- %s\n", #test);                                              \
        fflush(stdout);                                                        \
        test();                                                                \
    } while (0)

int main(void)
{
    tand_runtime_options ro = {2}; /* workers, whatever the cores */
    CHECK_OK(tand_runtime_new(&ro, &rt));
    setvbuf(stdout, NULL, _IOLBF, 0);
    RUN(inline_runs_on_caller);
    RUN(deadline_fits);
    RUN(one_at_a_time);
    RUN(fifo_per_sender);
    RUN(nested_inline);
    RUN(cycle_callself);
    RUN(blocking_handler_no_stall);
    RUN(pumped_one_handler);
    RUN(stats_inline);
    RUN(deferred_inline);
    RUN(stop_during_inline);
    RUN(free_runtime_during_inline);
    FREE_WITHIN(rt, 60000);
    return check_done("test_inline");
}
