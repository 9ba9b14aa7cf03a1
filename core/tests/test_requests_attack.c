/*
** test_requests_attack.c - a hostile review's tests of tand_send_request:
** exactly one reply per accepted request under load, kills, ends and
** allocation failures; the deadline kept when the idle timer is
** disarmed; the timer heap's room (disarming, a timer armed from init,
** start failures, kills in a handler and in terminate); a waiting reply
** that keeps a server from idling out; no handle_reply after the server
** stopped itself; replies that must not starve the mailbox; requests to
** itself, across runtimes and across a runtime's free; a pumped runtime.
** Two tests that corrupt memory on a faulty engine run in a child
** process (ATTACK_NO_FORK=1 skips them). Some checks read the engine's
** internals (internal.h): the timer heap's room and the idle flag.
*/
#include "check.h"
#include "echo.h"
#include "alloc.h"
#include "internal.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the probe: sends requests from its handlers, counts replies ---- */

enum {
    P_SEND = 200, /* ival[0] = count | op << 16 | arg << 32, ival[1] the
                  ** timeout: count requests {op, arg} to p->callee (or to
                  ** itself when p->callee is NULL); reply ival[0] the
                  ** number accepted, status the first refusal */
    P_SEND_WAIT,  /* the same as a cast, then waits for p->go */
    P_MARK,       /* cast: notes how many replies came before it */
    P_PING        /* replies ival[0] at once */
};

#define TAGS 8192

typedef struct probe {
    tand_server *callee;       /* borrowed; NULL: itself */
    uint64_t next_tag;         /* probe thread only */
    atomic_int seen[TAGS];     /* replies per tag */
    int status[TAGS];          /* the last reply's status per tag */
    int64_t value[TAGS];
    int64_t sent_ms[TAGS], due_ms[TAGS], at_ms[TAGS];
    atomic_int begun;          /* handle_reply calls begun */
    atomic_int replies;        /* handle_reply calls, once recorded */
    atomic_int unknown;        /* replies with a tag never sent */
    atomic_int accepted;       /* requests sent */
    int stop_on_reply;         /* the first reply stops the probe */
    atomic_int stopped;        /* it has */
    atomic_int after_stop;     /* handle_reply calls after that */
    int gate_in_reply;         /* the first reply waits for gate */
    int gate_in_terminate;     /* terminate waits for gate */
    int idle_in_init;          /* init arms the idle timer */
    atomic_int gate, at_gate;
    atomic_int go, waiting;    /* P_SEND_WAIT */
    atomic_int mark_at;        /* replies before P_MARK, or -1 */
    atomic_int terminated;
    atomic_int in_terminate;
} probe;

static void probe_reset(probe *p)
{
    memset(p, 0, sizeof *p);
    atomic_store(&p->mark_at, -1);
}

static void wait_flag(atomic_int *flag, int64_t ms)
{
    int64_t until = tand_now_ms() + ms;
    while (!atomic_load(flag) && tand_now_ms() < until)
        sleep_ms(1);
}

static int probe_init(tand_server *self, void *arg, void **state)
{
    probe *p = arg;
    *state = p;
    if (p->idle_in_init)
        return tand_server_set_idle(self, 60000, TAND_IDLE_NOTIFY);
    return 0;
}

/* Sends the requests of a P_SEND; returns the first refusal (0: all). */
static int probe_send(probe *p, tand_server *self, const tand_msg *m,
                      int64_t *accepted)
{
    int64_t count = m->ival[0] & 0xffff, op = (m->ival[0] >> 16) & 0xffff;
    int64_t arg = m->ival[0] >> 32, timeout = m->ival[1], i;
    tand_server *to = p->callee != NULL ? p->callee : self;
    *accepted = 0;
    for (i = 0; i < count; i++) {
        tand_msg req = {0};
        uint64_t tag = ++p->next_tag;
        int rc;
        req.op = (int)op;
        req.ival[0] = arg;
        if (tag < TAGS) {
            p->sent_ms[tag] = tand_now_ms();
            p->due_ms[tag] = timeout < 0 ? INT64_MAX
                                         : p->sent_ms[tag] + timeout;
        }
        rc = tand_send_request(self, to, &req, timeout, tag);
        if (rc != 0)
            return rc;
        ++*accepted;
        atomic_fetch_add(&p->accepted, 1);
    }
    return 0;
}

static int probe_call(void *state, tand_server *self, tand_msg *req,
                      tand_from *from, tand_msg *reply)
{
    probe *p = state;
    (void)from;
    switch (req->op) {
    case P_SEND:
        reply->status = probe_send(p, self, req, &reply->ival[0]);
        return 0;
    case P_PING:
        reply->ival[0] = req->ival[0];
        return 0;
    case ECHO: /* asked by itself */
        reply->ival[0] = req->ival[0];
        return 0;
    default:
        reply->status = TAND_EBADREQ;
        return 0;
    }
}

static void probe_cast(void *state, tand_server *self, tand_msg *msg)
{
    probe *p = state;
    int64_t n;
    if (msg->op == P_SEND_WAIT) {
        probe_send(p, self, msg, &n);
        atomic_store(&p->waiting, 1);
        wait_flag(&p->go, 10000);
    } else if (msg->op == P_MARK) {
        atomic_store(&p->mark_at, atomic_load(&p->replies));
    }
}

static void probe_reply(void *state, tand_server *self, uint64_t tag,
                        tand_msg *reply)
{
    probe *p = state;
    int first = atomic_fetch_add(&p->begun, 1) == 0;
    if (atomic_load(&p->stopped))
        atomic_fetch_add(&p->after_stop, 1);
    if (tag == 0 || tag >= TAGS) {
        atomic_fetch_add(&p->unknown, 1);
    } else {
        p->status[tag] = reply->status;
        p->value[tag] = reply->ival[0];
        p->at_ms[tag] = tand_now_ms();
        atomic_fetch_add(&p->seen[tag], 1);
    }
    atomic_fetch_add(&p->replies, 1); /* after what it publishes */
    if (first && p->stop_on_reply) {
        tand_server_stop(self, 0, NULL, 0);
        atomic_store(&p->stopped, 1);
    }
    if (first && p->gate_in_reply) {
        atomic_fetch_add(&p->at_gate, 1);
        wait_flag(&p->gate, 10000);
    }
}

static void probe_terminate(void *state, tand_server *self, int reason,
                            const char *detail)
{
    probe *p = state;
    (void)self, (void)reason, (void)detail;
    atomic_store(&p->in_terminate, 1);
    if (p->gate_in_terminate)
        wait_flag(&p->gate, 10000);
    atomic_fetch_add(&p->terminated, 1);
}

static const tand_behaviour probe_behaviour = {
    .name = "probe",
    .init = probe_init,
    .handle_call = probe_call,
    .handle_cast = probe_cast,
    .terminate = probe_terminate,
    .handle_reply = probe_reply};

static int probe_start_bound(tand_runtime *r, probe *p, size_t capacity,
                             const char *name, int64_t bound_us,
                             tand_server **out)
{
    tand_server_options o;
    memset(&o, 0, sizeof o);
    o.bound_us = bound_us; /* > 0: callers may run it on their threads */
    o.behaviour = &probe_behaviour;
    o.arg = p;
    o.mailbox_capacity = capacity;
    o.name = name;
    return tand_server_start(r, &o, out);
}

static int probe_start(tand_runtime *r, probe *p, size_t capacity,
                       const char *name, tand_server **out)
{
    return probe_start_bound(r, p, capacity, name, 0, out);
}

static int64_t pack(int64_t count, int op, int64_t arg)
{
    return count | ((int64_t)op << 16) | (arg << 32);
}

/* Has the probe send count {op, arg} with timeout; returns how many it
** sent, and the first refusal in *rc. */
static int64_t send_from(tand_server *ps, int64_t count, int op, int64_t arg,
                         int64_t timeout, int *rc)
{
    tand_msg req = {0}, reply;
    int64_t n;
    req.op = P_SEND;
    req.ival[0] = pack(count, op, arg);
    req.ival[1] = timeout;
    *rc = tand_call(ps, &req, &reply, 10000, 0);
    n = reply.ival[0];
    tand_msg_clear(&reply);
    return n;
}

static void cast_op(tand_server *s, int op, int64_t a, int64_t b)
{
    tand_msg m = {0};
    m.op = op;
    m.ival[0] = a;
    m.ival[1] = b;
    CHECK_OK(tand_cast(s, &m, 5000, 0));
}

/* Replies with no tag, tags with more than one reply, and tags sent
** without a reply, among tags 1..n. */
static void count_tags(probe *p, uint64_t n, int *dup, int *none)
{
    uint64_t t;
    *dup = *none = 0;
    for (t = 1; t <= n && t < TAGS; t++) {
        int k = atomic_load(&p->seen[t]);
        if (k > 1)
            (*dup)++;
        if (k == 0)
            (*none)++;
    }
}

static uint64_t calls_handled(tand_server *s)
{
    tand_stats st;
    if (tand_server_stats(s, &st) != 0)
        return 0;
    return st.calls;
}

/* The room reserved in a runtime's timer heap, and whether the heap is
** within its allocation. */
static size_t heap_reserved(tand_runtime *r, bool *fits)
{
    size_t n;
    pthread_mutex_lock(&r->timer_mu);
    n = r->heap_reserved;
    if (fits != NULL)
        *fits = r->heap_len <= r->heap_cap;
    pthread_mutex_unlock(&r->timer_mu);
    return n;
}

/* Runs fn in a child process (before this process has threads), so that
** a crash or a heap overflow fails one test and not the file; the child
** reports through its exit status. */
static void in_child(const char *what, int (*fn)(void))
{
    pid_t pid = fork();
    int status = 0;
    int64_t until = tand_now_ms() + 60000;
    if (pid < 0) {
        CHECK(pid >= 0);
        return;
    }
    if (pid == 0)
        _exit(fn());
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (tand_now_ms() > until) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fprintf(stderr, "%s: the child hung\n", what);
            break;
        }
        sleep_ms(5);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "%s: the child %s %d\n", what,
                WIFSIGNALED(status) ? "died of signal" : "exited with",
                WIFSIGNALED(status) ? WTERMSIG(status)
                                    : WEXITSTATUS(status));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static tand_runtime *rt;

/* ---- the deadline and the idle timer ---- */

/* Disarming the idle timer must not take the reply timer with it: the
** callee never answers, and the timeout still comes at the deadline. */
static void idle_disarm_keeps_reply_deadline(void)
{
    static probe p;
    echo_shared sh = {0};
    tand_server *e, *ps;
    int rc;
    probe_reset(&p);
    CHECK_OK(echo_start(rt, &sh, 0, NULL, &e));
    p.callee = e;
    CHECK_OK(probe_start(rt, &p, 0, NULL, &ps));
    CHECK_INT(send_from(ps, 1, DEFER, 0, 200, &rc), 1);
    CHECK_OK(rc);
    CHECK_OK(tand_server_set_idle(ps, -1, 0)); /* it had none anyway */
    WAIT_FOR(atomic_load(&p.replies) == 1, 3000);
    CHECK_RC(p.status[1], TAND_ETIMEDOUT);
    tand_server_stop(ps, 0, NULL, 5000);
    tand_server_stop(e, 0, NULL, 5000);
    CHECK_INT(atomic_load(&p.replies), 1);
    tand_server_release(ps);
    tand_server_release(e);
}

/* Disarming the idle timer must not give back the room its start
** reserved: the server may arm both its timers again at any time. */
static void idle_disarm_keeps_room(void)
{
    static probe p;
    tand_runtime_options ro = {TAND_PUMPED};
    tand_runtime *r;
    tand_server *ps;
    size_t before;
    ro.workers = 1;
    probe_reset(&p);
    CHECK_OK(tand_runtime_new(&ro, &r));
    CHECK_OK(probe_start(r, &p, 0, NULL, &ps));
    before = heap_reserved(r, NULL);
    CHECK_INT(before, 2);
    CHECK_OK(tand_server_set_idle(ps, -1, 0));
    CHECK_INT(heap_reserved(r, NULL), before);
    CHECK_OK(tand_server_set_idle(ps, 60000, TAND_IDLE_NOTIFY));
    CHECK_OK(tand_server_set_idle(ps, -1, 0));
    CHECK_INT(heap_reserved(r, NULL), before);
    tand_server_stop(ps, 0, NULL, 5000);
    CHECK_INT(heap_reserved(r, NULL), 0);
    tand_server_release(ps);
    tand_runtime_free(r);
}

/* The consequence: 31 servers disarm their idle timer, 31 more start
** (with the sink, room for 64 timers is reserved), then all 62 arm both
** timers: 124 timers must fit in the heap. */
#define CROWD 31
static int crowd_overflows_heap(void)
{
    static probe p[2 * CROWD];
    tand_runtime *r;
    tand_server *sink, *s[2 * CROWD];
    bool fits = true;
    int i, rc;
    if (tand_runtime_new(NULL, &r) != 0)
        return 2;
    {   /* the sink keeps every request (DEFER) */
        static echo_shared sh;
        CHECK_OK(echo_start(r, &sh, 4096, NULL, &sink));
    }
    for (i = 0; i < CROWD; i++) {
        probe_reset(&p[i]);
        p[i].callee = sink;
        CHECK_OK(probe_start(r, &p[i], 0, NULL, &s[i]));
    }
    for (i = 0; i < CROWD; i++)
        CHECK_OK(tand_server_set_idle(s[i], -1, 0));
    for (i = CROWD; i < 2 * CROWD; i++) {
        probe_reset(&p[i]);
        p[i].callee = sink;
        CHECK_OK(probe_start(r, &p[i], 0, NULL, &s[i]));
    }
    for (i = 0; i < 2 * CROWD; i++) {
        CHECK_OK(tand_server_set_idle(s[i], 60000, TAND_IDLE_NOTIFY));
        CHECK_INT(send_from(s[i], 1, DEFER, 0, 60000, &rc), 1);
        heap_reserved(r, &fits);
        if (!fits) {
            fprintf(stderr, "crowd: the timer heap overflowed its "
                            "allocation at server %d\n", i);
            _exit(1); /* its neighbours are overwritten: no clean up */
        }
    }
    tand_runtime_free(r);
    for (i = 0; i < 2 * CROWD; i++)
        tand_server_release(s[i]);
    tand_server_release(sink);
    return check_failures != 0;
}

/* A server's init may arm its idle timer (init's self is the server):
** the first server of a runtime, before any room is reserved. */
static int idle_armed_in_init(void)
{
    static probe p;
    tand_runtime_options ro = {TAND_PUMPED};
    tand_runtime *r;
    tand_server *ps = NULL;
    bool fits = true;
    ro.workers = 1;
    probe_reset(&p);
    p.idle_in_init = 1;
    if (tand_runtime_new(&ro, &r) != 0)
        return 2;
    CHECK_OK(probe_start(r, &p, 0, NULL, &ps));
    heap_reserved(r, &fits);
    CHECK(fits);
    if (ps != NULL) {
        tand_server_stop(ps, 0, NULL, 5000);
        tand_server_release(ps);
    }
    tand_runtime_free(r);
    return check_failures != 0;
}

/* A reply waiting to be handled makes the server not idle, as a waiting
** message does: the one worker of the asker's runtime is held up while
** the reply comes in and the idle timer (stop) fires; once free, the
** server handles the reply instead of stopping without it. */
static void waiting_reply_is_not_idle(void)
{
    static probe p;
    tand_runtime_options ro = {TAND_PUMPED};
    tand_runtime *r;
    echo_shared sh = {0}, shb = {0};
    tand_server *e, *blocker, *ps;
    tand_msg gate = {0};
    int rc;
    ro.workers = 1;
    CHECK_OK(tand_runtime_new(&ro, &r));
    probe_reset(&p);
    CHECK_OK(echo_start(rt, &sh, 0, NULL, &e)); /* on the other runtime */
    CHECK_OK(echo_start(r, &shb, 0, NULL, &blocker));
    p.callee = e;
    CHECK_OK(probe_start(r, &p, 0, NULL, &ps));
    CHECK_OK(tand_server_set_idle(ps, 300, TAND_IDLE_STOP));
    CHECK_INT(send_from(ps, 1, DEFER, 0, 60000, &rc), 1);
    WAIT_FOR(calls_handled(e) == 1, 5000);
    gate.op = GATE;
    gate.ival[0] = 10000;
    CHECK_OK(tand_cast(blocker, &gate, 1000, 0)); /* the worker is held */
    WAIT_FOR(atomic_load(&shb.at_gate) == 1, 5000);
    CHECK_OK(echo_answer(e, 42)); /* the reply comes in, and waits */
    WAIT_FOR(atomic_load(&ps->work) & WORK_IDLE, 5000); /* and the idle timer */
    atomic_store(&shb.gate, 1);
    WAIT_FOR(atomic_load(&p.replies) == 1 || atomic_load(&p.terminated),
             5000);
    CHECK_INT(atomic_load(&p.replies), 1);
    tand_server_stop(ps, 0, NULL, 5000);
    tand_server_stop(e, 0, NULL, 5000);
    tand_server_release(ps);
    tand_server_release(e);
    tand_server_release(blocker);
    tand_runtime_free(r);
}

/* ---- what handle_reply sees ---- */

/* 20 replies are ready when the probe takes them; the first stops it:
** like a message, no reply is handled once the server stopped itself. */
static void no_reply_after_self_stop(void)
{
    static probe p;
    echo_shared sh = {0};
    tand_server *e, *ps;
    probe_reset(&p);
    p.stop_on_reply = 1;
    CHECK_OK(echo_start(rt, &sh, 0, NULL, &e));
    p.callee = e;
    CHECK_OK(probe_start(rt, &p, 0, NULL, &ps));
    cast_op(ps, P_SEND_WAIT, pack(20, ECHO, 1), 5000);
    WAIT_FOR(atomic_load(&p.waiting) == 1, 5000);
    WAIT_FOR(calls_handled(e) == 20, 5000);
    atomic_store(&p.go, 1);
    WAIT_FOR(atomic_load(&p.terminated) == 1, 5000);
    CHECK_INT(atomic_load(&p.after_stop), 0);
    tand_server_stop(e, 0, NULL, 5000);
    tand_server_release(ps);
    tand_server_release(e);
}

/* A message queued behind a burst of 2000 ready replies is handled
** within a couple of turns (the engine's batch is 64), not after them
** all: replies never starve the mailbox. */
static void replies_do_not_starve_mailbox(void)
{
    static probe p;
    echo_shared sh = {0};
    tand_server *e, *ps;
    int dup, none;
    probe_reset(&p);
    CHECK_OK(echo_start(rt, &sh, 4096, NULL, &e));
    p.callee = e;
    CHECK_OK(probe_start(rt, &p, 0, NULL, &ps));
    cast_op(ps, P_SEND_WAIT, pack(2000, ECHO, 1), 20000);
    WAIT_FOR(atomic_load(&p.waiting) == 1, 5000);
    cast_op(ps, P_MARK, 0, 0);
    WAIT_FOR(calls_handled(e) == 2000, 10000);
    atomic_store(&p.go, 1);
    WAIT_FOR(atomic_load(&p.mark_at) >= 0, 10000);
    WAIT_FOR(atomic_load(&p.replies) == 2000, 10000);
    fprintf(stderr, "starve: the message came after %d replies\n",
            atomic_load(&p.mark_at));
    CHECK(atomic_load(&p.mark_at) <= 2 * 64);
    count_tags(&p, 2000, &dup, &none);
    CHECK_INT(dup, 0);
    CHECK_INT(none, 0);
    tand_server_stop(ps, 0, NULL, 5000);
    tand_server_stop(e, 0, NULL, 5000);
    tand_server_release(ps);
    tand_server_release(e);
}

/* ---- exactly one reply ---- */

typedef struct pinger {
    tand_server *s;
    atomic_int *stop;
    int bad;
} pinger;

static void *ping_main(void *arg)
{
    pinger *g = arg;
    int64_t i = 0, got;
    while (!atomic_load(g->stop)) {
        tand_msg req = {0}, reply;
        req.op = P_PING;
        req.ival[0] = ++i;
        if (tand_call(g->s, &req, &reply, 5000, 0) != 0)
            g->bad++;
        got = reply.ival[0];
        tand_msg_clear(&reply);
        if (got != i)
            g->bad++;
    }
    return NULL;
}

/* Four probes, each sending in rounds to two callees: echoes, sleeps,
** callers kept forever (their deadlines pass), to itself; while host
** threads call the probes (two of which have a bound, so that callers
** run them, and take their replies, on their own threads). Every accepted tag gets exactly one reply, a
** kept one a timeout no earlier than its deadline and not much later. */
#define NPROBES 4
static void exactly_once_under_load(void)
{
    static probe p[NPROBES];
    echo_shared sh[2] = {{0}};
    tand_server *e[2], *ps[NPROBES];
    pinger g[2];
    pthread_t th[2];
    atomic_int stop = 0;
    int i, round, rc, late = 0, early = 0, wrong = 0;
    for (i = 0; i < 2; i++)
        CHECK_OK(echo_start(rt, &sh[i], 4096, NULL, &e[i]));
    for (i = 0; i < NPROBES; i++) {
        probe_reset(&p[i]);
        p[i].callee = i == NPROBES - 1 ? NULL : e[i % 2];
        CHECK_OK(probe_start_bound(rt, &p[i], 4096, NULL, i < 2 ? 50 : 0,
                                   &ps[i]));
    }
    for (i = 0; i < 2; i++) {
        g[i].s = ps[i];
        g[i].stop = &stop;
        g[i].bad = 0;
        pthread_create(&th[i], NULL, ping_main, &g[i]);
    }
    for (round = 0; round < 20; round++) {
        for (i = 0; i < NPROBES; i++) {
            int op = p[i].callee == NULL ? ECHO
                     : round % 3 == 0    ? ECHO
                     : round % 3 == 1    ? DEFER
                                         : SLEEP;
            int64_t n = send_from(ps[i], 25, op, op == SLEEP ? 1 : round,
                                  5 + round * 3, &rc);
            if (rc != 0)
                fprintf(stderr, "load: a send refused: %s\n",
                        tand_errname(rc));
            CHECK_INT(n, 25);
        }
    }
    for (i = 0; i < NPROBES; i++) {
        int dup, none;
        uint64_t t;
        WAIT_FOR(atomic_load(&p[i].replies) == atomic_load(&p[i].accepted),
                 15000);
        count_tags(&p[i], (uint64_t)atomic_load(&p[i].accepted), &dup,
                   &none);
        CHECK_INT(dup, 0);
        CHECK_INT(none, 0);
        CHECK_INT(atomic_load(&p[i].unknown), 0);
        for (t = 1; t <= (uint64_t)atomic_load(&p[i].accepted); t++) {
            if (p[i].status[t] == TAND_ETIMEDOUT) {
                if (p[i].at_ms[t] < p[i].due_ms[t] - 1)
                    early++;
                if (p[i].at_ms[t] > p[i].due_ms[t] + 3000)
                    late++;
            } else if (p[i].status[t] != 0) {
                wrong++;
            }
        }
    }
    atomic_store(&stop, 1);
    for (i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT(g[i].bad, 0);
    }
    CHECK_INT(early, 0);
    CHECK_INT(late, 0);
    CHECK_INT(wrong, 0);
    for (i = 0; i < NPROBES; i++) {
        int before = atomic_load(&p[i].replies);
        tand_server_stop(ps[i], 0, NULL, 5000);
        CHECK_INT(atomic_load(&p[i].replies), before);
        tand_server_release(ps[i]);
    }
    for (i = 0; i < 2; i++) {
        tand_server_stop(e[i], 0, NULL, 5000);
        tand_server_release(e[i]);
    }
}

/* ---- kills and ends ---- */

/* Killed while handle_reply runs: a reply that comes in meanwhile and a
** request still kept by its callee are dropped, terminate runs once,
** handle_reply never again; the callee's late answer goes nowhere. */
static void kill_during_handle_reply(void)
{
    static probe p;
    echo_shared sh = {0}, sh2 = {0};
    tand_server *e, *e2, *ps;
    tand_msg req = {0}, reply;
    int rc;
    probe_reset(&p);
    p.gate_in_reply = 1;
    CHECK_OK(echo_start(rt, &sh, 0, NULL, &e));
    CHECK_OK(echo_start(rt, &sh2, 0, NULL, &e2));
    p.callee = e2;
    CHECK_OK(probe_start(rt, &p, 0, NULL, &ps));
    /* tag 1 is kept by e2; tag 2 replies 100 ms later, into the box of
    ** a stuck, then killed, server; tag 3 replies at once and gates */
    CHECK_INT(send_from(ps, 1, DEFER, 0, -1, &rc), 1);
    CHECK_INT(send_from(ps, 1, SLEEP, 100, 5000, &rc), 1);
    p.callee = e;
    CHECK_INT(send_from(ps, 1, ECHO, 5, 5000, &rc), 1);
    WAIT_FOR(atomic_load(&p.at_gate) == 1, 5000);
    CHECK_INT(atomic_load(&p.seen[3]), 1);
    CHECK_OK(tand_server_kill(ps, "stuck"));
    CHECK_INT(atomic_load(&p.terminated), 0); /* still stuck */
    /* e2 serves in order: once this is answered, tag 2's reply is in */
    CHECK_OK(echo_req(e2, ECHO, 1, 0, 5000, NULL));
    atomic_store(&p.gate, 1);
    WAIT_FOR(atomic_load(&p.terminated) == 1, 5000);
    CHECK_INT(atomic_load(&p.replies), 1);
    /* the kept request was abandoned: answering it fails */
    req.op = ANSWER;
    req.ival[0] = 1;
    CHECK_OK(tand_call(e2, &req, &reply, 5000, 0));
    CHECK_RC((int)reply.ival[1], TAND_ETIMEDOUT);
    tand_msg_clear(&reply);
    CHECK_INT(atomic_load(&p.replies), 1);
    CHECK_INT(atomic_load(&p.terminated), 1);
    tand_server_stop(e, 0, NULL, 5000);
    tand_server_stop(e2, 0, NULL, 5000);
    tand_server_release(ps);
    tand_server_release(e);
    tand_server_release(e2);
}

/* Servers that end just as their reply timer comes due (1..5 ms): the
** timer thread fires for a server that is ending or ended. */
static void end_while_the_timer_fires(void)
{
    static probe p;
    echo_shared sh = {0};
    tand_server *e, *ps;
    int i, rc;
    CHECK_OK(echo_start(rt, &sh, 4096, NULL, &e));
    for (i = 0; i < 200; i++) {
        probe_reset(&p);
        p.callee = e;
        CHECK_OK(probe_start(rt, &p, 0, NULL, &ps));
        CHECK_INT(send_from(ps, 3, DEFER, 0, 1 + i % 5, &rc), 3);
        if (i % 3 == 0)
            sleep_ms(i % 6); /* (to vary the interleaving; not a check) */
        if (i % 2 == 0)
            CHECK_OK(tand_server_stop(ps, 0, NULL, 5000));
        else
            tand_server_kill(ps, "now"); /* a stop when nothing runs */
        WAIT_FOR(atomic_load(&p.terminated) == 1, 5000);
        CHECK(atomic_load(&p.replies) <= 3);
        tand_server_release(ps);
    }
    tand_server_stop(e, 0, NULL, 5000);
    tand_server_release(e);
}

/* The room in the heap comes back after failed starts, stops, kills in
** a handler and kills in terminate (where both cancel the timers). */
static void room_accounting(void)
{
    static probe p, q, k;
    tand_runtime_options ro = {TAND_PUMPED};
    tand_runtime *r;
    tand_server *named, *other = NULL, *ps, *qs;
    bool fits;
    int i;
    ro.workers = 2;
    CHECK_OK(tand_runtime_new(&ro, &r));
    probe_reset(&p);
    CHECK_OK(probe_start(r, &p, 0, "taken", &named));
    CHECK_INT(heap_reserved(r, NULL), 2);
    for (i = 0; i < 300; i++) {
        probe_reset(&k);
        CHECK_RC(probe_start(r, &k, 0, "taken", &other), TAND_ENAMETAKEN);
    }
    CHECK_INT(heap_reserved(r, &fits), 2);
    CHECK(fits);
    /* killed in a handler */
    probe_reset(&q);
    CHECK_OK(probe_start(r, &q, 0, NULL, &qs));
    cast_op(qs, P_SEND_WAIT, pack(0, ECHO, 0), 0);
    WAIT_FOR(atomic_load(&q.waiting) == 1, 5000);
    CHECK_OK(tand_server_kill(qs, "stuck"));
    atomic_store(&q.go, 1);
    WAIT_FOR(atomic_load(&q.terminated) == 1, 5000);
    CHECK_INT(heap_reserved(r, NULL), 2);
    tand_server_release(qs);
    /* killed in terminate */
    probe_reset(&q);
    q.gate_in_terminate = 1;
    CHECK_OK(probe_start(r, &q, 0, NULL, &ps));
    CHECK_OK(tand_server_stop(ps, 0, NULL, 0));
    WAIT_FOR(atomic_load(&q.in_terminate) == 1, 5000);
    CHECK_OK(tand_server_kill(ps, "stuck in terminate"));
    atomic_store(&q.gate, 1);
    WAIT_FOR(atomic_load(&q.terminated) == 1, 5000);
    CHECK_INT(heap_reserved(r, NULL), 2);
    tand_server_release(ps);
    CHECK_OK(tand_server_stop(named, 0, NULL, 5000));
    CHECK_INT(heap_reserved(r, NULL), 0);
    tand_server_release(named);
    tand_runtime_free(r);
}

/* ---- itself, two runtimes, a runtime's free, a pumped runtime ---- */

/* 300 requests to itself (more than a turn), then 100 more left in its
** own mailbox when it stops: one reply each for the first, none after. */
static void asks_itself_then_stops(void)
{
    static probe p;
    tand_server *ps;
    int rc, dup, none;
    probe_reset(&p);
    CHECK_OK(probe_start(rt, &p, 1024, NULL, &ps));
    CHECK_INT(send_from(ps, 300, ECHO, 3, 5000, &rc), 300);
    WAIT_FOR(atomic_load(&p.replies) == 300, 5000);
    count_tags(&p, 300, &dup, &none);
    CHECK_INT(dup, 0);
    CHECK_INT(none, 0);
    cast_op(ps, P_SEND_WAIT, pack(100, ECHO, 4), 5000);
    WAIT_FOR(atomic_load(&p.waiting) == 1, 5000);
    CHECK_OK(tand_server_stop(ps, 0, NULL, 0));
    atomic_store(&p.go, 1);
    WAIT_FOR(atomic_load(&p.terminated) == 1, 5000);
    CHECK_INT(atomic_load(&p.replies), 300);
    tand_server_release(ps);
}

/* The callee's runtime is freed with the request kept: its end answers
** the asker (on another runtime) once. The asker's runtime is freed with
** a request kept elsewhere: the late answer goes nowhere. */
static void across_runtimes(void)
{
    static probe p, q;
    tand_runtime_options ro = {TAND_PUMPED};
    tand_runtime *ra, *rb, *rc_;
    echo_shared sh = {0}, sh2 = {0};
    tand_server *e, *e2, *ps, *qs;
    tand_msg req = {0}, reply;
    int rc;
    ro.workers = 1;
    CHECK_OK(tand_runtime_new(&ro, &ra));
    CHECK_OK(tand_runtime_new(&ro, &rb));
    probe_reset(&p);
    CHECK_OK(echo_start(rb, &sh, 0, NULL, &e));
    p.callee = e;
    CHECK_OK(probe_start(ra, &p, 0, NULL, &ps));
    CHECK_INT(send_from(ps, 1, DEFER, 0, -1, &rc), 1);
    CHECK_INT(send_from(ps, 5, SLEEP, 2, -1, &rc), 5);
    tand_runtime_free(rb); /* its echo ends: kept and queued answered */
    WAIT_FOR(atomic_load(&p.replies) == 6, 5000);
    CHECK_INT(atomic_load(&p.seen[1]), 1);
    CHECK(p.status[1] == TAND_ENOPROC || p.status[1] == 0);
    tand_server_release(e);

    ro.workers = TAND_PUMPED; /* a pumped runtime for the other asker */
    CHECK_OK(tand_runtime_new(&ro, &rc_));
    CHECK_OK(echo_start(ra, &sh2, 0, NULL, &e2));
    probe_reset(&q);
    q.callee = e2;
    CHECK_OK(probe_start(rc_, &q, 0, NULL, &qs));
    CHECK_INT(send_from(qs, 1, DEFER, 0, 60000, &rc), 1);
    WAIT_FOR(calls_handled(e2) == 1, 5000);
    tand_runtime_free(rc_); /* the asker ends with its request kept */
    CHECK_INT(atomic_load(&q.terminated), 1);
    req.op = ANSWER;
    req.ival[0] = 1;
    CHECK_OK(tand_call(e2, &req, &reply, 5000, 0));
    CHECK_RC((int)reply.ival[1], TAND_ETIMEDOUT);
    tand_msg_clear(&reply);
    CHECK_INT(atomic_load(&q.replies), 0);
    tand_server_release(qs);
    tand_server_stop(ps, 0, NULL, 5000);
    tand_server_release(ps);
    tand_server_release(e2);
    tand_runtime_free(ra);
}

/* A runtime freed with requests queued behind a gated callee, kept by
** another, and sent to itself. */
static void runtime_free_in_flight(void)
{
    static probe p;
    tand_runtime *r;
    echo_shared sh = {0};
    tand_server *e, *ps;
    tand_msg gate = {0};
    int rc;
    CHECK_OK(tand_runtime_new(NULL, &r));
    probe_reset(&p);
    CHECK_OK(echo_start(r, &sh, 0, NULL, &e));
    gate.op = GATE;
    gate.ival[0] = 200;
    CHECK_OK(tand_cast(e, &gate, 1000, 0));
    p.callee = e;
    CHECK_OK(probe_start(r, &p, 0, NULL, &ps));
    CHECK_INT(send_from(ps, 100, ECHO, 1, -1, &rc), 100);
    CHECK_INT(send_from(ps, 1, DEFER, 0, 10, &rc), 1);
    p.callee = NULL;
    CHECK_INT(send_from(ps, 10, ECHO, 1, -1, &rc), 10);
    tand_runtime_free(r);
    CHECK_INT(atomic_load(&p.terminated), 1);
    CHECK(atomic_load(&p.replies) <= 111);
    tand_server_release(ps);
    tand_server_release(e);
}

/* A pumped runtime: replies, timeouts at their deadline, itself. */
static void pumped(void)
{
    static probe p, q;
    tand_runtime_options ro = {TAND_PUMPED};
    tand_runtime *r;
    echo_shared sh = {0};
    tand_server *e, *ps, *qs;
    int64_t until;
    int rc, dup, none;
    uint64_t t;
    ro.workers = TAND_PUMPED;
    CHECK_OK(tand_runtime_new(&ro, &r));
    probe_reset(&p);
    probe_reset(&q);
    CHECK_OK(echo_start(r, &sh, 1024, NULL, &e));
    p.callee = e;
    CHECK_OK(probe_start(r, &p, 0, NULL, &ps));
    CHECK_OK(probe_start(r, &q, 1024, NULL, &qs)); /* asks itself */
    CHECK_INT(send_from(ps, 100, ECHO, 1, 5000, &rc), 100);
    CHECK_INT(send_from(ps, 3, DEFER, 0, 50, &rc), 3);
    CHECK_INT(send_from(qs, 200, ECHO, 2, 5000, &rc), 200);
    until = tand_now_ms() + 5000;
    while ((atomic_load(&p.replies) < 103 || atomic_load(&q.replies) < 200) &&
           tand_now_ms() < until) {
        tand_runtime_pump(r, 1000);
        sleep_ms(1);
    }
    CHECK_INT(atomic_load(&p.replies), 103);
    CHECK_INT(atomic_load(&q.replies), 200);
    count_tags(&p, 103, &dup, &none);
    CHECK_INT(dup + none, 0);
    count_tags(&q, 200, &dup, &none);
    CHECK_INT(dup + none, 0);
    for (t = 101; t <= 103; t++) {
        CHECK_RC(p.status[t], TAND_ETIMEDOUT);
        CHECK(p.at_ms[t] >= p.due_ms[t] - 1);
    }
    tand_server_release(ps);
    tand_server_release(qs);
    tand_server_release(e);
    tand_runtime_free(r);
}

/* The n-th allocation along sends and replies fails, for each n: every
** request accepted still gets exactly one reply, nothing leaks (ASan). */
static void allocation_failures(void)
{
    long n;
    int bad = 0, past = 0;
    for (n = 0; n < 400 && past < 8; n++) {
        static probe p;
        tand_runtime_options ro = {TAND_PUMPED};
        tand_runtime *r;
        echo_shared sh = {0};
        tand_server *e = NULL, *ps = NULL;
        int64_t until;
        int rc, dup, none;
        ro.workers = TAND_PUMPED;
        if (tand_runtime_new(&ro, &r) != 0)
            continue;
        probe_reset(&p);
        tand__fail_allocation(n);
        if (echo_start(r, &sh, 0, NULL, &e) == 0) {
            p.callee = e;
            if (probe_start(r, &p, 0, NULL, &ps) == 0) {
                send_from(ps, 3, ECHO, 1, 5000, &rc);
                send_from(ps, 1, DEFER, 0, 20, &rc);
                p.callee = NULL;
                send_from(ps, 2, ECHO, 1, 5000, &rc);
            }
        }
        if (tand__fail_allocation(-1) >= 0)
            past++; /* the scenario had fewer allocations than n */
        until = tand_now_ms() + 3000;
        while (ps != NULL &&
               atomic_load(&p.replies) < atomic_load(&p.accepted) &&
               tand_now_ms() < until) {
            tand_runtime_pump(r, 1000);
            sleep_ms(1);
        }
        if (ps != NULL) {
            count_tags(&p, p.next_tag, &dup, &none);
            /* a tag whose send was refused has no reply: count those */
            if (dup != 0 || atomic_load(&p.replies) !=
                                atomic_load(&p.accepted)) {
                fprintf(stderr, "faults: at %ld: %d replies for %d "
                                "requests, %d twice\n", n,
                        atomic_load(&p.replies), atomic_load(&p.accepted),
                        dup);
                bad++;
            }
        }
        tand_runtime_free(r);
        tand_server_release(ps);
        tand_server_release(e);
    }
    CHECK_INT(bad, 0);
}

int main(void)
{
    int only_child = getenv("ATTACK_NO_FORK") != NULL;
    if (!only_child) {
        in_child("crowd_overflows_heap", crowd_overflows_heap);
        in_child("idle_armed_in_init", idle_armed_in_init);
    }
    CHECK_OK(tand_runtime_new(NULL, &rt));
    idle_disarm_keeps_reply_deadline();
    idle_disarm_keeps_room();
    waiting_reply_is_not_idle();
    no_reply_after_self_stop();
    replies_do_not_starve_mailbox();
    exactly_once_under_load();
    kill_during_handle_reply();
    end_while_the_timer_fires();
    room_accounting();
    asks_itself_then_stops();
    across_runtimes();
    runtime_free_in_flight();
    pumped();
    allocation_failures();
    tand_runtime_free(rt);
    return check_done("test_requests_attack");
}
