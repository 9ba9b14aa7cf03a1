/*
** test_server.c - calls, casts, infos, deadlines, stops, calling_self,
** full mailboxes, deferred replies and idle timers on a threaded runtime.
*/
#include "check.h"
#include "echo.h"
#include "internal.h"

#include <pthread.h>
#include <unistd.h>

static tand_runtime *rt;

static void basics(void)
{
    echo_shared sh = {0};
    tand_server *s;
    tand_stats st;
    tand_msg m = {0}, reply;
    int64_t v;

    CHECK_OK(echo_start(rt, &sh, 0, NULL, &s));
    CHECK(tand_server_alive(s));
    CHECK_OK(echo_req(s, ECHO, 42, 0, 1000, &v));
    CHECK_INT(v, 42);
    CHECK_RC(echo_req(s, 99, 0, 0, 1000, NULL), TAND_EBADREQ);
    CHECK_OK(echo_cast_op(s, 0, 5, 0, 1000, 0));
    CHECK_OK(echo_cast_op(s, 0, 6, 0, 1000, 0));
    m.op = 0;
    CHECK_OK(tand_send(s, &m, 1000, 0));
    CHECK_OK(echo_req(s, ECHO, 1, 0, 1000, NULL)); /* after the casts */
    CHECK_INT(atomic_load(&sh.cast_sum), 11);
    CHECK_INT(atomic_load(&sh.infos), 1);
    CHECK_OK(tand_server_stats(s, &st));
    CHECK_INT(st.calls, 3);
    CHECK_INT(st.casts, 2);
    CHECK_INT(st.infos, 1);
    CHECK_INT(st.errors, 1);
    CHECK(st.mailbox_peak >= 1);

    /* payloads travel and are owned by the receiver */
    m.op = ECHO;
    m.data = malloc(3);
    memcpy(m.data, "abc", 3);
    m.size = 3;
    CHECK_OK(tand_call(s, &m, &reply, 1000, 0));
    CHECK(m.data == NULL);
    tand_msg_clear(&reply);

    /* bad arguments */
    CHECK_RC(tand_call(NULL, &m, &reply, 10, 0), TAND_EINVAL);
    CHECK_RC(tand_call(s, NULL, &reply, 10, 0), TAND_EINVAL);

    CHECK_OK(tand_server_stop(s, 0, NULL, 2000));
    CHECK(!tand_server_alive(s));
    CHECK_INT(atomic_load(&sh.terminated), 1);
    CHECK_INT(atomic_load(&sh.term_reason), 0);
    CHECK_RC(echo_req(s, ECHO, 1, 0, 1000, NULL), TAND_ENOPROC);
    CHECK_RC(echo_cast_op(s, 0, 1, 0, 1000, 0), TAND_ENOPROC);
    CHECK_RC(tand_server_stop(s, 0, NULL, 100), TAND_ENOPROC);
    tand_server_release(s);
}

typedef struct sender {
    tand_server *s;
    int id, n;
    int failures;
} sender;

static void *order_sender(void *arg)
{
    sender *sd = arg;
    int i;
    for (i = 0; i < sd->n; i++) {
        int rc = (i % 3 == 0)
                     ? echo_req(sd->s, ORDER, sd->id, i, 5000, NULL)
                     : echo_cast_op(sd->s, ORDER, sd->id, i, 5000, 0);
        if (rc != 0)
            sd->failures++;
    }
    return NULL;
}

static void ordering(void)
{
    echo_shared sh = {0};
    tand_server *s;
    pthread_t th[8];
    sender sd[8];
    int i;
    CHECK_OK(echo_start(rt, &sh, 64, NULL, &s));
    for (i = 0; i < 8; i++) {
        sd[i].s = s;
        sd[i].id = i;
        sd[i].n = 20000;
        sd[i].failures = 0;
        pthread_create(&th[i], NULL, order_sender, &sd[i]);
    }
    for (i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT(sd[i].failures, 0);
    }
    CHECK_OK(echo_req(s, ECHO, 0, 0, 5000, NULL));
    CHECK_INT(atomic_load(&sh.order_errors), 0);
    tand_server_stop(s, 0, NULL, 2000);
    tand_server_release(s);
}

typedef struct gated {
    tand_server *s;
    int rc;
} gated;

/* A call held at the gate that gives up after a second. */
static void *gate_call(void *arg)
{
    gated *g = arg;
    g->rc = echo_req(g->s, GATE, 20000, 0, 1000, NULL);
    return NULL;
}

static void deadlines(void)
{
    echo_shared sh = {0};
    tand_server *s;
    tand_stats st;
    pthread_t th;
    gated g;
    int64_t v;

    CHECK_OK(echo_start(rt, &sh, 0, NULL, &s));
    /* the request has started: the caller gives up at its deadline while
    ** the handler still runs, and the reply is dropped */
    g.s = s;
    pthread_create(&th, NULL, gate_call, &g);
    WAIT_FOR(atomic_load(&sh.at_gate) == 1, 5000);
    pthread_join(th, NULL);
    CHECK_RC(g.rc, TAND_ETIMEDOUT);
    /* queued behind it and abandoned: the server skips it */
    CHECK_RC(echo_req(s, SLEEP, 1, 0, 20, NULL), TAND_ETIMEDOUT);
    atomic_store(&sh.gate, 1);
    CHECK_OK(echo_req(s, ECHO, 7, 0, 5000, &v)); /* no stale reply */
    CHECK_INT(v, 7);
    CHECK_INT(atomic_load(&sh.handled_sleeps), 0);
    CHECK_OK(tand_server_stats(s, &st));
    CHECK_INT(st.timeouts, 2);
    /* timeout 0: fails at once unless already answered */
    CHECK_RC(echo_req(s, SLEEP, 50, 0, 0, NULL), TAND_ETIMEDOUT);
    tand_server_stop(s, 0, NULL, 2000);
    tand_server_release(s);
}

typedef struct waiter {
    tand_server *s;
    int op;
    int rc;
    char detail[32];
} waiter;

static void *wait_call(void *arg)
{
    waiter *w = arg;
    tand_msg req = {0}, reply;
    req.op = w->op;
    req.ival[0] = w->op == GATE ? 20000 : 1;
    w->rc = tand_call(w->s, &req, &reply, 10000, 0);
    if (reply.data)
        snprintf(w->detail, sizeof w->detail, "%s", reply.data);
    tand_msg_clear(&reply);
    return NULL;
}

static void stop_with_waiters(int reason)
{
    echo_shared sh = {0};
    tand_server *s;
    pthread_t th[4];
    waiter w[4];
    tand_stats st;
    int i, expect = reason ? reason : TAND_ENOPROC;

    CHECK_OK(echo_start(rt, &sh, 0, NULL, &s));
    CHECK_OK(echo_cast_op(s, GATE, 20000, 0, 1000, 0)); /* keep it busy */
    WAIT_FOR(atomic_load(&sh.at_gate) == 1, 5000);
    for (i = 0; i < 4; i++) {
        w[i].s = s;
        w[i].op = i == 0 ? DEFER : ECHO;
        w[i].rc = 1;
        w[i].detail[0] = '\0';
        pthread_create(&th[i], NULL, wait_call, &w[i]);
    }
    /* all four queued behind the gate before the stop */
    WAIT_FOR(tand_server_stats(s, &st) == 0 && st.mailbox_depth == 4, 5000);
    CHECK_OK(tand_server_stop(s, reason, reason ? "down" : NULL, 0));
    atomic_store(&sh.gate, 1);
    /* a second stopper waits for the end too, and is told noproc */
    CHECK_RC(tand_server_stop(s, 0, NULL, 5000), TAND_ENOPROC);
    CHECK(!tand_server_alive(s));
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_RC(w[i].rc, expect);
        if (reason)
            CHECK(strcmp(w[i].detail, "down") == 0);
    }
    CHECK_INT(atomic_load(&sh.terminated), 1);
    CHECK_INT(atomic_load(&sh.term_reason), reason);
    tand_server_release(s);
}

static void crash_and_self(void)
{
    echo_shared sh = {0};
    tand_server *s;
    tand_msg req = {0}, reply;
    int64_t v;

    CHECK_OK(echo_start(rt, &sh, 0, NULL, &s));
    CHECK_OK(echo_req(s, SELFCALL, 0, 0, 1000, &v));
    CHECK_RC((int)v, TAND_ECALLSELF);
    req.op = CRASH;
    CHECK_RC(tand_call(s, &req, &reply, 1000, 0), TAND_ECRASHED);
    CHECK(reply.data != NULL && strcmp(reply.data, "boom") == 0);
    tand_msg_clear(&reply);
    WAIT_FOR(atomic_load(&sh.terminated) == 1, 5000);
    CHECK_INT(atomic_load(&sh.term_reason), TAND_ECRASHED);
    CHECK(!tand_server_alive(s));
    tand_server_release(s);
}

static void deferred(void)
{
    echo_shared sh = {0};
    tand_server *s;
    pthread_t th;
    waiter w = {0};
    tand_stats st;

    CHECK_OK(echo_start(rt, &sh, 0, NULL, &s));
    w.s = s;
    w.op = DEFER;
    w.rc = 1;
    pthread_create(&th, NULL, wait_call, &w);
    WAIT_FOR(tand_server_stats(s, &st) == 0 && st.calls == 1, 5000);
    CHECK_OK(echo_answer(s, 9));
    pthread_join(th, NULL);
    CHECK_OK(w.rc);
    /* a deferred caller that gives up is not answered later (its deadline
    ** long enough for the server to keep it first, however loaded) */
    CHECK_RC(echo_req(s, DEFER, 0, 0, 1000, NULL), TAND_ETIMEDOUT);
    CHECK_RC(echo_answer(s, 1), TAND_ETIMEDOUT);
    CHECK_OK(echo_req(s, ECHO, 3, 0, 1000, NULL));
    tand_server_stop(s, 0, NULL, 2000);
    tand_server_release(s);
}

static void full_mailbox(void)
{
    echo_shared sh = {0};
    tand_server *s;
    int i;
    int64_t t0;

    CHECK_OK(echo_start(rt, &sh, 4, NULL, &s));
    CHECK_OK(echo_cast_op(s, SLEEP, 1500, 0, 1000, 0));
    tand_stats st;
    WAIT_FOR(tand_server_stats(s, &st) == 0 && st.mailbox_depth == 0,
             5000); /* the sleep has been taken out */
    for (i = 0; i < 4; i++)
        CHECK_OK(echo_cast_op(s, 0, 1, 0, 1000, TAND_NOWAIT));
    CHECK_RC(echo_cast_op(s, 0, 1, 0, 1000, TAND_NOWAIT), TAND_EBUSY);
    /* a call that may wait gets in once the sleep ends and room frees */
    t0 = tand_now_ms();
    CHECK_OK(echo_req(s, ECHO, 1, 0, 5000, NULL));
    CHECK(tand_now_ms() - t0 >= 100);
    CHECK_OK(echo_cast_op(s, SLEEP, 1500, 0, 1000, 0));
    for (i = 0; i < 3; i++)
        echo_cast_op(s, 0, 1, 0, 1000, TAND_NOWAIT);
    {
        tand_msg m = {0};
        /* full again: a waiting sender gives up at its deadline */
        int rc = TAND_EBUSY;
        for (i = 0; i < 4 && rc != TAND_ETIMEDOUT; i++) {
            m.op = 0;
            rc = tand_cast(s, &m, 30, 0);
        }
        CHECK_RC(rc, TAND_ETIMEDOUT);
    }
    /* and one that waits long enough gets in */
    CHECK_OK(echo_cast_op(s, 0, 1, 0, 5000, 0));
    CHECK_OK(tand_server_stats(s, &st));
    CHECK_INT(st.mailbox_peak, 4);
    tand_server_stop(s, 0, NULL, 2000);
    tand_server_release(s);
}

static void idle_timers(void)
{
    echo_shared sh = {0}, sh2 = {0};
    tand_server *s, *t;
    int i;

    CHECK_OK(echo_start(rt, &sh, 0, NULL, &s));
    CHECK_OK(tand_server_set_idle(s, 20, TAND_IDLE_NOTIFY));
    WAIT_FOR(atomic_load(&sh.idles) >= 3, 5000); /* re-arms itself */
    CHECK_OK(tand_server_set_idle(s, -1, 0));
    CHECK_RC(tand_server_set_idle(s, 10, 77), TAND_EINVAL);
    tand_server_stop(s, 0, NULL, 2000);
    tand_server_release(s);

    CHECK_OK(echo_start(rt, &sh2, 0, NULL, &t));
    CHECK_OK(tand_server_set_idle(t, 600, TAND_IDLE_STOP));
    for (i = 0; i < 40; i++) { /* 800 ms of traffic keeps it alive */
        CHECK_OK(echo_req(t, ECHO, i, 0, 1000, NULL));
        sleep_ms(20);
    }
    CHECK(tand_server_alive(t));
    WAIT_FOR(!tand_server_alive(t), 5000);
    WAIT_FOR(atomic_load(&sh2.terminated) == 1, 5000);
    CHECK_INT(atomic_load(&sh2.term_reason), 0);
    CHECK_RC(echo_req(t, ECHO, 1, 0, 100, NULL), TAND_ENOPROC);
    tand_server_release(t);

    /* A handler longer than the idle time: the timer that comes due
    ** meanwhile is stale, and the idle time counts from its end. */
    memset(&sh2, 0, sizeof sh2);
    CHECK_OK(echo_start(rt, &sh2, 0, NULL, &t));
    CHECK_OK(tand_server_set_idle(t, 500, TAND_IDLE_STOP));
    CHECK_OK(echo_req(t, SLEEP, 600, 0, 5000, NULL));
    sleep_ms(50); /* well inside the 500 ms that follow the handler */
    CHECK(tand_server_alive(t));
    CHECK_OK(echo_cast_op(t, SLEEP, 600, 0, 1000, 0)); /* a worker's turn */
    sleep_ms(750); /* the cast's handler ended at 600: idle until 1100 */
    CHECK(tand_server_alive(t));
    WAIT_FOR(atomic_load(&sh2.terminated) == 1, 5000); /* (sh2 is ours) */
    CHECK_INT(atomic_load(&sh2.terminated), 1);
    CHECK_INT(atomic_load(&sh2.term_reason), 0);
    tand_server_release(t);
}

/* A handler that waits for room in a full mailbox lends its worker out:
** with a single worker, the server it waits on must still run. */
static void handler_waits_for_room(void)
{
    tand_runtime_options ro = {1};
    tand_runtime *one;
    echo_shared sa = {0}, sb = {0};
    tand_server *a, *b;
    tand_msg req = {0}, reply;
    tand_stats st;

    CHECK_OK(tand_runtime_new(&ro, &one));
    CHECK_OK(echo_start(one, &sa, 1, NULL, &a));
    CHECK_OK(echo_start(one, &sb, 0, NULL, &b));
    /* b holds the only worker while a's mailbox fills up */
    CHECK_OK(echo_cast_op(b, SLEEP, 1500, 0, 1000, 0));
    WAIT_FOR(tand_server_stats(b, &st) == 0 && st.mailbox_depth == 0, 5000);
    CHECK_OK(echo_cast_op(a, 0, 1, 0, 1000, TAND_NOWAIT));
    CHECK_RC(echo_cast_op(a, 0, 1, 0, 1000, TAND_NOWAIT), TAND_EBUSY);
    req.op = CASTTO;
    req.ival[0] = (int64_t)tand_server_id(a);
    req.ival[1] = 3000;
    CHECK_OK(tand_call(b, &req, &reply, 10000, 0)); /* not timed_out */
    tand_msg_clear(&reply);
    CHECK_OK(echo_req(a, ECHO, 1, 0, 5000, NULL));
    tand_runtime_free(one);
    tand_server_release(a);
    tand_server_release(b);
}

static void bad_options(void)
{
    tand_server_options o;
    tand_server *s = (tand_server *)1;
    echo_shared sh = {0};
    char longname[300];
    memset(&o, 0, sizeof o);
    CHECK_RC(tand_server_start(rt, &o, &s), TAND_EINVAL);
    CHECK(s == NULL);
    o.behaviour = &echo_behaviour;
    o.arg = &sh;
    o.mailbox_capacity = (size_t)TAND_MAILBOX_MAX + 1;
    CHECK_RC(tand_server_start(rt, &o, &s), TAND_EINVAL);
    o.mailbox_capacity = 0;
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    o.name = longname;
    CHECK_RC(tand_server_start(rt, &o, &s), TAND_EINVAL);
    o.name = "";
    CHECK_RC(tand_server_start(rt, &o, &s), TAND_EINVAL);
    CHECK_INT(atomic_load(&sh.terminated), 0);
    CHECK(strcmp(tand_errname(TAND_EFULL),
                 "all_possible_numbers_are_in_use") == 0);
    CHECK(strcmp(tand_errname(12345), "unknown_error") == 0);
    CHECK(strlen(tand_strerror(TAND_ETIMEDOUT)) > 0);
}

/* A handler that does not return: tand_server_kill answers every caller
** at once (the one being served, queued and deferred ones), frees the
** name, tells the monitors and the stoppers, and a spare worker keeps
** the runtime's other servers answering; the handler's late reply is
** dropped and terminate runs once it returns. */
static void killed_handler(void)
{
    tand_runtime_options ro = {1}; /* one worker: the stuck one */
    tand_runtime *one;
    echo_shared sh = {0}, other_sh = {0}, watcher_sh = {0};
    tand_server *s, *other, *watcher, *found = NULL;
    pthread_t th[4];
    waiter w[4];
    tand_stats st;
    int64_t v, t0;
    int i;

    CHECK_OK(tand_runtime_new(&ro, &one));
    CHECK_OK(echo_start(one, &sh, 0, "stuck", &s));
    CHECK_OK(echo_start(one, &other_sh, 0, NULL, &other));
    CHECK_OK(echo_start(one, &watcher_sh, 0, NULL, &watcher));
    CHECK_OK(tand_monitor(s, watcher, 42));
    for (i = 0; i < 4; i++) { /* a deferred caller, one at the gate, two queued */
        w[i].s = s;
        w[i].op = i == 0 ? DEFER : i == 1 ? GATE : ECHO;
        w[i].rc = 1;
        w[i].detail[0] = '\0';
        pthread_create(&th[i], NULL, wait_call, &w[i]);
        if (i == 0)
            WAIT_FOR(tand_server_stats(s, &st) == 0 && st.calls == 1, 5000);
        if (i == 1)
            WAIT_FOR(atomic_load(&sh.at_gate) == 1, 5000);
    }
    WAIT_FOR(tand_server_stats(s, &st) == 0 && st.mailbox_depth == 2, 5000);
    t0 = tand_now_ms();
    CHECK_OK(tand_server_kill(s, "killed"));
    CHECK(!tand_server_alive(s));
    CHECK_RC(tand_server_kill(s, "again"), TAND_ENOPROC);
    CHECK_RC(tand_server_stop(s, 0, NULL, 1000), TAND_ENOPROC);
    CHECK_RC(tand_whereis(one, "stuck", &found), TAND_ENOPROC);
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_RC(w[i].rc, TAND_ECRASHED);
        CHECK(strcmp(w[i].detail, "killed") == 0);
    }
    CHECK(tand_now_ms() - t0 < 3000); /* not the gate's 20 s */
    /* the monitor hears of it while the handler is still stuck */
    WAIT_FOR(atomic_load(&watcher_sh.downs) == 1, 5000);
    CHECK_INT(atomic_load(&watcher_sh.down_tag), 42);
    CHECK_INT(atomic_load(&watcher_sh.down_reason), TAND_ECRASHED);
    /* the only worker is stuck at the gate: a spare serves the others */
    CHECK_OK(echo_req(other, ECHO, 7, 0, 5000, &v));
    CHECK_INT(v, 7);
    CHECK_INT(atomic_load(&sh.terminated), 0); /* its state is still held */
    atomic_store(&sh.gate, 1);
    WAIT_FOR(atomic_load(&sh.terminated) == 1, 5000);
    CHECK_INT(atomic_load(&sh.term_reason), TAND_ECRASHED);
    CHECK_OK(echo_req(other, ECHO, 8, 0, 5000, &v));
    CHECK_INT(v, 8);
    tand_server_release(s);
    tand_server_release(other);
    tand_server_release(watcher);
    tand_runtime_free(one);
}

/* tand_demonitor: no notice after it, the room and reference given back;
** tand_monitor_async: the end as a reply in a box, cancelled monitors
** pruned from a long-lived server's list. */
static void monitors(void)
{
    echo_shared wsh = {0}, sh = {0};
    tand_server *watcher, *s, *gone;
    tand_replies *box;
    tand_msg reply;
    uint64_t tag = 0;
    int i;

    CHECK_OK(echo_start(rt, &wsh, 1, NULL, &watcher));
    CHECK_OK(echo_start(rt, &sh, 0, NULL, &s));
    CHECK_OK(tand_monitor(s, watcher, 7));
    CHECK_OK(tand_monitor(s, watcher, 8));
    CHECK_OK(tand_demonitor(s, watcher, 7));
    CHECK_RC(tand_demonitor(s, watcher, 7), TAND_ENOPROC);
    CHECK_RC(tand_demonitor(NULL, watcher, 7), TAND_EINVAL);
    /* the watcher's room: a mailbox of 1 plus the one notice left */
    CHECK_INT(watcher->mb.reserved, 1);

    CHECK_OK(tand_replies_new(&box));
    CHECK_OK(tand_monitor_async(s, box, 30));
    CHECK_INT(tand_replies_count(box), 1);
    CHECK_INT(tand_replies_timeout_ms(box), -1); /* no deadline */
    /* cancelled monitors do not pile up on a server that lives on */
    for (i = 0; i < 5000; i++) {
        tand_replies *b;
        CHECK_OK(tand_replies_new(&b));
        CHECK_OK(tand_monitor_async(s, b, 1));
        tand_replies_free(b);
    }
    pthread_mutex_lock(&s->mu);
    CHECK(s->nmonitors < 100);
    pthread_mutex_unlock(&s->mu);

    CHECK_OK(tand_server_stop(s, TAND_ESTOPPED, "maintenance", 5000));
    CHECK_OK(tand_replies_wait(box, 5000));
    CHECK_INT(tand_replies_take(box, &tag, &reply), 1);
    CHECK_INT(tag, 30);
    CHECK_RC(reply.status, TAND_ESTOPPED);
    CHECK(reply.data != NULL && strcmp(reply.data, "maintenance") == 0);
    tand_msg_clear(&reply);
    /* the one DOWN left: tag 8 */
    WAIT_FOR(atomic_load(&wsh.downs) == 1, 5000);
    CHECK_INT(atomic_load(&wsh.down_tag), 8);
    CHECK_INT(atomic_load(&wsh.downs), 1);
    CHECK_RC(tand_demonitor(s, watcher, 8), TAND_ENOPROC);

    /* an ended server: the notice comes at once, noproc */
    gone = s;
    CHECK_OK(tand_monitor_async(gone, box, 31));
    CHECK_OK(tand_replies_wait(box, 5000));
    CHECK_INT(tand_replies_take(box, &tag, &reply), 1);
    CHECK_INT(tag, 31);
    CHECK_RC(reply.status, TAND_ENOPROC);
    CHECK(reply.data == NULL);
    CHECK_RC(tand_monitor_async(NULL, box, 1), TAND_EINVAL);
    CHECK_RC(tand_monitor_async(gone, NULL, 1), TAND_EINVAL);
    tand_replies_free(box);
    tand_server_release(s);
    CHECK_OK(tand_server_stop(watcher, 0, NULL, 5000));
    tand_server_release(watcher);
}


/* ---- options: a zeroed struct of every kind means its defaults ---- */

static int echo_child(tand_runtime *r, const char *name, void *arg,
                      tand_server **out)
{
    return echo_start(r, arg, 0, name, out);
}

static const char idle_policy[] =
    "return { handle_call = function(req, from, state, machine)\n"
    "  return machine:default(req) end }\n";

static int all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t i;
    for (i = 0; i < n; i++)
        if (b[i] != 0)
            return 0;
    return 1;
}

static void zeroed_options(void)
{
    tand_runtime_options ro = {0};
    tand_server_options so;
    tand_deluxe_options d;
    tand_counter_options c;
    tand_policy_options po;
    tand_supervisor_options sup;
    tand_child_spec kid;
    tand_runtime *r;
    tand_server *s, *m, *k, *p, *sv;
    echo_shared sh = {0}, ksh = {0};
    tand_stats st;
    int64_t n;
    tand_msg req = {0}, reply;

    /* each init fills what a zeroed struct means */
    memset(&ro, 0xff, sizeof ro);
    tand_runtime_options_init(&ro);
    CHECK(all_zero(&ro, sizeof ro));
    memset(&so, 0xff, sizeof so);
    tand_server_options_init(&so);
    CHECK(all_zero(&so, sizeof so));
    memset(&d, 0xff, sizeof d);
    tand_deluxe_options_init(&d);
    CHECK(all_zero(&d, sizeof d));
    memset(&c, 0xff, sizeof c);
    tand_counter_options_init(&c);
    CHECK(all_zero(&c, sizeof c));
    memset(&po, 0xff, sizeof po);
    tand_policy_options_init(&po);
    CHECK(all_zero(&po, sizeof po));
    memset(&sup, 0xff, sizeof sup);
    tand_supervisor_options_init(&sup);
    CHECK_INT(sup.strategy, TAND_ONE_FOR_ONE);
    CHECK_INT(sup.max_restarts, 3);
    CHECK_INT(sup.max_seconds, 5);
    CHECK(sup.name == NULL);

    /* a zeroed runtime has workers: a cast runs with nobody pumping */
    memset(&ro, 0, sizeof ro);
    CHECK_OK(tand_runtime_new(&ro, &r));
    CHECK_RC(tand_runtime_pump(r, 1000), TAND_EINVAL); /* not pumped */
    CHECK_OK(echo_start(r, &sh, 0, NULL, &s));
    CHECK_OK(echo_cast_op(s, 0, 7, 0, 1000, 0));
    WAIT_FOR(atomic_load(&sh.cast_sum) == 7, 5000);
    CHECK_INT(atomic_load(&sh.cast_sum), 7);
    tand_server_release(s);
    tand_runtime_free(r);
    ro.workers = TAND_PUMPED; /* the host pumps only when it asks to */
    CHECK_OK(tand_runtime_new(&ro, &r));
    CHECK_INT(tand_runtime_pump(r, 1000), 0);
    tand_runtime_free(r);

    /* a zeroed deluxe machine: 1..INT64_MAX, and it never stops idle */
    memset(&d, 0, sizeof d);
    CHECK_OK(tand_deluxe_start(rt, &d, &m));
    CHECK_OK(tand_deluxe_queue(m, &n, 1000));
    CHECK_INT(n, 1);
    sleep_ms(100);
    CHECK(tand_server_alive(m));
    CHECK_OK(tand_deluxe_serve(m, NULL, &n, 1000));
    tand_server_stop(m, 0, NULL, 2000);
    tand_server_release(m);
    /* ... and TAND_SHUTDOWN_AT_ONCE stops it at its first idle moment */
    d.min_number = 1;
    d.max_number = 10;
    d.auto_shutdown_ms = TAND_SHUTDOWN_AT_ONCE;
    CHECK_OK(tand_deluxe_start(rt, &d, &m));
    WAIT_FOR(!tand_server_alive(m), 5000);
    CHECK(!tand_server_alive(m));
    tand_server_release(m);
    d.auto_shutdown_ms = -3;
    CHECK_RC(tand_deluxe_start(rt, &d, &m), TAND_ECONFIG);

    /* a zeroed counter starts at 0 */
    memset(&c, 0, sizeof c);
    CHECK_OK(tand_counter_start(rt, &c, &k));
    req.op = TAND_OP_NEXT;
    CHECK_OK(tand_call(k, &req, &reply, 1000, 0));
    CHECK_INT(reply.ival[0], 0);
    tand_msg_clear(&reply);
    tand_server_stop(k, 0, NULL, 2000);
    tand_server_release(k);

    /* a zeroed policy: numbers from 1, a 1 s callback timeout, no idle
    ** shutdown */
    memset(&po, 0, sizeof po);
    po.source = idle_policy;
    po.source_size = sizeof idle_policy - 1;
    CHECK_OK(tand_policy_start(rt, &po, &p));
    CHECK_OK(tand_deluxe_queue(p, &n, 1000));
    CHECK_INT(n, 1);
    sleep_ms(100);
    CHECK(tand_server_alive(p));
    tand_server_stop(p, 0, NULL, 2000);
    tand_server_release(p);
    po.auto_shutdown_ms = TAND_SHUTDOWN_AT_ONCE;
    CHECK_OK(tand_policy_start(rt, &po, &p));
    WAIT_FOR(!tand_server_alive(p), 5000);
    CHECK(!tand_server_alive(p));
    tand_server_release(p);

    /* a zeroed supervisor: one_for_one, 3 restarts in 5 s */
    memset(&sup, 0, sizeof sup);
    memset(&kid, 0, sizeof kid);
    kid.name = "zeroed_kid";
    kid.start = echo_child;
    kid.arg = &ksh;
    CHECK_OK(tand_supervisor_start(rt, &sup, &kid, 1, &sv));
    CHECK_OK(tand_whereis(rt, "zeroed_kid", &k));
    CHECK_OK(tand_server_stop(k, TAND_ECRASHED, "once", 2000));
    tand_server_release(k);
    WAIT_FOR(tand_server_stats(sv, &st) == 0 && st.restarts == 1, 5000);
    CHECK(tand_server_alive(sv));
    tand_server_stop(sv, 0, NULL, 5000);
    tand_server_release(sv);
    /* TAND_NO_RESTARTS: the first crash ends the supervisor */
    sup.max_restarts = TAND_NO_RESTARTS;
    CHECK_OK(tand_supervisor_start(rt, &sup, &kid, 1, &sv));
    CHECK_OK(tand_whereis(rt, "zeroed_kid", &k));
    CHECK_OK(tand_server_stop(k, TAND_ECRASHED, "once", 2000));
    tand_server_release(k);
    WAIT_FOR(!tand_server_alive(sv), 5000);
    CHECK(!tand_server_alive(sv));
    tand_server_release(sv);
    sup.max_restarts = -5;
    CHECK_RC(tand_supervisor_start(rt, &sup, &kid, 1, &sv), TAND_ECONFIG);
}

/* ---- start errors: every failure of every machine says why ---- */

static void said(const char *err, const char *part, int line)
{
    if (err[0] == '\0' || strstr(err, part) == NULL) {
        fprintf(stderr, "line %d: error '%s' does not say '%s'\n", line, err,
                part);
        check_failures++;
    }
    check_count++;
}
#define SAID(err, part) said(err, part, __LINE__)

static void start_errors(void)
{
    tand_server_options so;
    tand_deluxe_options d;
    tand_counter_options c;
    tand_server *s = NULL, *taken;
    echo_shared sh = {0};
    char err[256], longname[300];

    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK_OK(echo_start(rt, &sh, 0, "start_errors_taken", &taken));

    /* a server of its own */
    tand_server_options_init(&so);
    so.error = err;
    so.error_size = sizeof err;
    strcpy(err, "stale");
    CHECK_RC(tand_server_start(rt, &so, &s), TAND_EINVAL);
    SAID(err, "behaviour");
    so.behaviour = &echo_behaviour;
    so.arg = &sh;
    CHECK_RC(tand_server_start(NULL, &so, &s), TAND_EINVAL);
    SAID(err, "NULL");
    so.mailbox_capacity = (size_t)TAND_MAILBOX_MAX + 1;
    CHECK_RC(tand_server_start(rt, &so, &s), TAND_EINVAL);
    SAID(err, "mailbox");
    so.mailbox_capacity = 0;
    so.name = longname;
    CHECK_RC(tand_server_start(rt, &so, &s), TAND_EINVAL);
    SAID(err, "name");
    so.name = "start_errors_taken";
    CHECK_RC(tand_server_start(rt, &so, &s), TAND_ENAMETAKEN);
    SAID(err, "start_errors_taken");
    so.name = NULL;
    so.bound_us = -1;
    CHECK_RC(tand_server_start(rt, &so, &s), TAND_EINVAL);
    SAID(err, "bound_us");
    so.bound_us = 0;
    so.journal = "/tmp/tand-start-errors.db";
    so.durability = 7;
    CHECK_RC(tand_server_start(rt, &so, &s), TAND_EINVAL);
    SAID(err, "durability");
    CHECK(s == NULL);

    /* the deluxe machine */
    tand_deluxe_options_init(&d);
    d.error = err;
    d.error_size = sizeof err;
    d.min_number = 5;
    d.max_number = 5;
    strcpy(err, "stale");
    CHECK_RC(tand_deluxe_start(rt, &d, &s), TAND_ECONFIG);
    SAID(err, "min_number");
    d.max_number = 9;
    d.auto_shutdown_ms = -7;
    CHECK_RC(tand_deluxe_start(rt, &d, &s), TAND_ECONFIG);
    SAID(err, "auto_shutdown_ms");
    d.auto_shutdown_ms = 0;
    CHECK_RC(tand_deluxe_start(rt, &d, NULL), TAND_EINVAL);
    SAID(err, "NULL");
    d.name = longname;
    CHECK_RC(tand_deluxe_start(rt, &d, &s), TAND_EINVAL);
    SAID(err, "name");
    d.name = "start_errors_taken";
    CHECK_RC(tand_deluxe_start(rt, &d, &s), TAND_ENAMETAKEN);
    SAID(err, "taken");
    d.name = NULL;
    d.mailbox_capacity = (size_t)TAND_MAILBOX_MAX + 1;
    CHECK_RC(tand_deluxe_start(rt, &d, &s), TAND_EINVAL);
    SAID(err, "mailbox");
    d.mailbox_capacity = 0;
    d.journal = "/tmp/tand-start-errors.db";
    d.durability = 7;
    CHECK_RC(tand_deluxe_start(rt, &d, &s), TAND_EINVAL);
    SAID(err, "durability");
    d.durability = 0;
    d.journal = "/nonexistent-dir/j.db";
    CHECK_RC(tand_deluxe_start(rt, &d, &s), TAND_EJOURNAL);
    SAID(err, "nonexistent-dir");
    CHECK(s == NULL);

    /* the counter */
    tand_counter_options_init(&c);
    c.error = err;
    c.error_size = sizeof err;
    strcpy(err, "stale");
    CHECK_RC(tand_counter_start(NULL, &c, &s), TAND_EINVAL);
    SAID(err, "NULL");
    c.name = "";
    CHECK_RC(tand_counter_start(rt, &c, &s), TAND_EINVAL);
    SAID(err, "name");
    c.name = "start_errors_taken";
    CHECK_RC(tand_counter_start(rt, &c, &s), TAND_ENAMETAKEN);
    SAID(err, "taken");
    c.name = NULL;
    c.mailbox_capacity = (size_t)TAND_MAILBOX_MAX + 1;
    CHECK_RC(tand_counter_start(rt, &c, &s), TAND_EINVAL);
    SAID(err, "mailbox");
    c.mailbox_capacity = 0;
    c.journal = "/tmp/tand-start-errors.db";
    c.durability = -1;
    CHECK_RC(tand_counter_start(rt, &c, &s), TAND_EINVAL);
    SAID(err, "durability");
    c.durability = 0;
    c.journal = "/nonexistent-dir/j.db";
    CHECK_RC(tand_counter_start(rt, &c, &s), TAND_EJOURNAL);
    SAID(err, "nonexistent-dir");
    CHECK(s == NULL);

    /* a success leaves the buffer empty */
    c.journal = NULL;
    strcpy(err, "stale");
    CHECK_OK(tand_counter_start(rt, &c, &s));
    CHECK_INT(err[0], '\0');
    tand_server_stop(s, 0, NULL, 2000);
    tand_server_release(s);
    tand_server_stop(taken, 0, NULL, 2000);
    tand_server_release(taken);
}


/* ---- a behaviour's own ops, and handle_call's return codes ---- */

enum { OWN_EMPTY = 50, OWN_DETAIL = 51, OWN_POSITIVE = 52 };

static atomic_int own_downs;
static atomic_llong own_down_tag;

static int own_call(void *state, tand_server *self, tand_msg *req,
                    tand_from *from, tand_msg *reply)
{
    (void)state;
    (void)self;
    (void)from;
    switch (req->op) {
    case 7:
    case 99:
    case 128:
    case 100000:
        reply->ival[0] = (int64_t)req->op * 2;
        return 0;
    case OWN_EMPTY:
        reply->ival[0] = 5; /* not seen by the caller: the call failed */
        return TAND_EEMPTY;
    case OWN_DETAIL:
        tand_msg_set_text(reply, "nothing here", 12);
        return TAND_ENOTQUEUED;
    case OWN_POSITIVE:
        return 2;
    default:
        return TAND_EBADREQ;
    }
}

static void own_info(void *state, tand_server *self, tand_msg *msg)
{
    (void)state;
    (void)self;
    if (msg->op == TAND_OP_DOWN) {
        atomic_store(&own_down_tag, msg->ival[0]);
        atomic_fetch_add(&own_downs, 1);
    }
}

static const tand_behaviour own_behaviour = {
    .name = "own_ops", .handle_call = own_call, .handle_info = own_info};

static int own_op(tand_server *s, int op, tand_msg *reply)
{
    tand_msg req = {0};
    req.op = op;
    return tand_call(s, &req, reply, 2000, 0);
}

static void own_ops(void)
{
    static const int ops[] = {7, 99, 128, 100000};
    tand_server_options so;
    tand_server *s, *watched;
    echo_shared wsh = {0};
    tand_msg reply;
    tand_stats st;
    int round, i;

    /* round 0: queued calls on a worker; round 1: run by the caller */
    for (round = 0; round < 2; round++) {
        tand_server_options_init(&so);
        so.behaviour = &own_behaviour;
        so.bound_us = round == 0 ? 0 : 1000;
        CHECK_OK(tand_server_start(rt, &so, &s));
        for (i = 0; i < 4; i++) {
            CHECK_OK(own_op(s, ops[i], &reply));
            CHECK_INT(reply.ival[0], (int64_t)ops[i] * 2);
            tand_msg_clear(&reply);
        }
        /* a returned code fails the call as init's fails the start */
        CHECK_RC(own_op(s, OWN_EMPTY, &reply), TAND_EEMPTY);
        CHECK_RC(reply.status, TAND_EEMPTY);
        CHECK_INT(reply.ival[0], 0);
        CHECK(reply.data == NULL);
        tand_msg_clear(&reply);
        CHECK_RC(own_op(s, OWN_DETAIL, &reply), TAND_ENOTQUEUED);
        CHECK(reply.data != NULL && strcmp(reply.data, "nothing here") == 0);
        tand_msg_clear(&reply);
        CHECK_RC(own_op(s, OWN_POSITIVE, &reply), TAND_EINVAL);
        tand_msg_clear(&reply);
        CHECK_RC(own_op(s, 12345, &reply), TAND_EBADREQ);
        tand_msg_clear(&reply);
        /* and counts as an error, as a status does */
        CHECK_OK(tand_server_stats(s, &st));
        CHECK_INT(st.errors, 4);
        CHECK_INT(st.calls, 8);
        /* the built-in machines' convenience calls reach it too */
        CHECK_RC(tand_deluxe_queue(s, NULL, 2000), TAND_EBADREQ);

        /* tand's own message to it: a DOWN notice in handle_info */
        CHECK_OK(echo_start(rt, &wsh, 0, NULL, &watched));
        CHECK_OK(tand_monitor(watched, s, 77 + round));
        CHECK_OK(tand_server_stop(watched, 0, NULL, 2000));
        WAIT_FOR(atomic_load(&own_downs) == round + 1, 5000);
        CHECK_INT(atomic_load(&own_downs), round + 1);
        CHECK_INT(atomic_load(&own_down_tag), 77 + round);
        tand_server_release(watched);
        tand_server_stop(s, 0, NULL, 2000);
        tand_server_release(s);
    }
}


/* ---- tand_reply from any thread ---- */

static tand_from *_Atomic kept_from;
static atomic_int early_rc;

enum { KEEP = 1, KEEP_AND_ANSWER = 2, ANSWER_AND_RETURN = 3 };

static int keep_call(void *state, tand_server *self, tand_msg *req,
                     tand_from *from, tand_msg *reply)
{
    tand_msg m = {0};
    (void)state;
    (void)self;
    switch (req->op) {
    case KEEP:
        atomic_store(&kept_from, from);
        return TAND_NOREPLY;
    case KEEP_AND_ANSWER: /* answered at once, deferred all the same */
        m.ival[0] = 11;
        atomic_store(&early_rc, tand_reply(from, &m));
        atomic_store(&kept_from, from);
        return TAND_NOREPLY;
    case ANSWER_AND_RETURN: /* a second answer, returned: dropped */
        m.ival[0] = 12;
        atomic_store(&early_rc, tand_reply(from, &m));
        reply->ival[0] = 99;
        return 0;
    }
    return TAND_EBADREQ;
}

static const tand_behaviour keep_behaviour = {.name = "keep",
                                              .handle_call = keep_call};

typedef struct keep_waiter {
    tand_server *s;
    int op, rc;
    int64_t v;
} keep_waiter;

static void *keep_wait(void *arg)
{
    keep_waiter *w = arg;
    tand_msg req = {0}, reply;
    req.op = w->op;
    w->rc = tand_call(w->s, &req, &reply, 10000, 0);
    w->v = reply.ival[0];
    tand_msg_clear(&reply);
    return NULL;
}

static tand_from *wait_kept(void)
{
    tand_from *f;
    int64_t until = tand_now_ms() + 5000;
    while ((f = atomic_exchange(&kept_from, NULL)) == NULL &&
           tand_now_ms() < until)
        sleep_ms(1);
    return f;
}

static void reply_from_any_thread(void)
{
    tand_server_options so;
    tand_server *s;
    keep_waiter w;
    pthread_t th;
    tand_from *f;
    tand_msg m = {0}, reply;
    tand_stats st;
    char path[64];
    int journaled;

    snprintf(path, sizeof path, "/tmp/tand-reply-any-%d.db", (int)getpid());
    for (journaled = 0; journaled < 2; journaled++) {
        tand_server_options_init(&so);
        so.behaviour = &keep_behaviour;
        if (journaled) {
            unlink(path);
            so.journal = path;
        }
        CHECK_OK(tand_server_start(rt, &so, &s));

        /* deferred, answered by this (non-server) thread */
        w.s = s;
        w.op = KEEP;
        pthread_create(&th, NULL, keep_wait, &w);
        CHECK((f = wait_kept()) != NULL);
        m.ival[0] = 7;
        m.status = TAND_EEMPTY; /* an error reply counts as one */
        CHECK_OK(tand_reply(f, &m));
        pthread_join(th, NULL);
        CHECK_RC(w.rc, TAND_EEMPTY);
        /* twice: refused, the reply consumed */
        m.data = malloc(4);
        m.size = 4;
        CHECK_RC(tand_reply(f, &m), TAND_EANSWERED);
        CHECK(m.data == NULL);
        CHECK_OK(tand_server_stats(s, &st));
        CHECK_INT(st.errors, 1);
        CHECK_INT(st.deferred, 0);

        /* answered from the handler, then handed on: the second is
        ** refused */
        w.op = KEEP_AND_ANSWER;
        pthread_create(&th, NULL, keep_wait, &w);
        CHECK((f = wait_kept()) != NULL);
        pthread_join(th, NULL);
        CHECK_OK(w.rc);
        CHECK_INT(w.v, 11);
        CHECK_OK(atomic_load(&early_rc));
        CHECK_RC(tand_reply(f, &m), TAND_EANSWERED);

        /* answered through tand_reply, then a reply returned: the first
        ** one counts, the returned one is dropped */
        m.op = ANSWER_AND_RETURN;
        CHECK_OK(tand_call(s, &m, &reply, 5000, 0));
        CHECK_INT(reply.ival[0], 12);
        tand_msg_clear(&reply);

        /* a deferred caller of a server that stops gets noproc; its from
        ** is answered already */
        w.op = KEEP;
        pthread_create(&th, NULL, keep_wait, &w);
        CHECK((f = wait_kept()) != NULL);
        CHECK_OK(tand_server_stats(s, &st));
        CHECK_INT(st.deferred, 1);
        CHECK_OK(tand_server_stop(s, 0, NULL, 5000));
        pthread_join(th, NULL);
        CHECK_RC(w.rc, TAND_ENOPROC);
        CHECK_RC(tand_reply(f, &m), TAND_EANSWERED);
        tand_server_release(s);
    }
    unlink(path);
    /* names tand never gave are refused as well */
    CHECK_RC(tand_reply((tand_from *)(uintptr_t)1, &m), TAND_EANSWERED);
    CHECK_RC(tand_reply((tand_from *)(uintptr_t)-1, &m), TAND_EANSWERED);
    CHECK_RC(tand_reply(NULL, &m), TAND_EINVAL);
}

int main(void)
{
    CHECK_OK(tand_runtime_new(NULL, &rt));
    basics();
    ordering();
    deadlines();
    stop_with_waiters(0);
    stop_with_waiters(TAND_ECRASHED);
    crash_and_self();
    deferred();
    full_mailbox();
    idle_timers();
    handler_waits_for_room();
    bad_options();
    killed_handler();
    monitors();
    zeroed_options();
    start_errors();
    own_ops();
    reply_from_any_thread();
    tand_runtime_free(rt);
    return check_done("test_server");
}
