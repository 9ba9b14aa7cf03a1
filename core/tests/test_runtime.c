/*
** test_runtime.c - the pumped mode, 100,000 servers, and freeing a
** runtime while callers wait or keep calling.
*/
#include "check.h"
#include "echo.h"

#include <pthread.h>

static void pumped(void)
{
    tand_runtime *rt;
    tand_runtime_options o = {TAND_PUMPED};
    tand_server *s, *t;
    echo_shared sh = {0}, sh2 = {0};
    int64_t v;
    int i, handled;

    o.workers = TAND_PUMPED;
    CHECK_OK(tand_runtime_new(&o, &rt));
    CHECK_OK(echo_start(rt, &sh, 0, NULL, &s));
    /* casts wait in the mailbox until the host pumps */
    for (i = 1; i <= 10; i++)
        CHECK_OK(echo_cast_op(s, 0, i, 0, 0, TAND_NOWAIT));
    CHECK_INT(atomic_load(&sh.cast_sum), 0);
    handled = tand_runtime_pump(rt, 1000);
    CHECK_INT(handled, 10);
    CHECK_INT(atomic_load(&sh.cast_sum), 55);
    CHECK_INT(tand_runtime_pump(rt, 1000), 0);
    /* a call from the host thread pumps while it waits */
    CHECK_OK(echo_req(s, ECHO, 5, 0, 1000, &v));
    CHECK_INT(v, 5);
    /* a handler calling another server of the same pumped runtime */
    CHECK_OK(echo_start(rt, &sh2, 0, NULL, &t));
    CHECK_OK(echo_req(s, SELFCALL, 0, 0, 1000, &v));
    CHECK_RC((int)v, TAND_ECALLSELF);
    /* idle timers fire from the pump */
    CHECK_OK(tand_server_set_idle(t, 10, TAND_IDLE_STOP));
    {
        int64_t end = tand_now_ms() + 5000;
        while (tand_server_alive(t) && tand_now_ms() < end) {
            tand_runtime_pump(rt, 1000);
            sleep_ms(1);
        }
    }
    CHECK(!tand_server_alive(t));
    CHECK_INT(atomic_load(&sh2.terminated), 1);
    /* a stop waits by pumping */
    CHECK_OK(tand_server_stop(s, 0, NULL, 1000));
    CHECK_INT(atomic_load(&sh.terminated), 1);
    CHECK_RC(tand_runtime_pump(NULL, 0), TAND_EINVAL);
    tand_server_release(s);
    tand_server_release(t);
    tand_runtime_free(rt);

    CHECK_OK(tand_runtime_new(NULL, &rt));
    CHECK_RC(tand_runtime_pump(rt, 0), TAND_EINVAL);
    tand_runtime_free(rt);
    o.workers = -3;
    CHECK_RC(tand_runtime_new(&o, &rt), TAND_EINVAL);
    CHECK(rt == NULL);
}

static void many_servers(void)
{
    enum { N = 100000 };
    tand_runtime *rt;
    tand_server **all = malloc(N * sizeof *all);
    echo_shared sh = {0};
    int64_t v, t0;
    int i, bad = 0;

    CHECK_OK(tand_runtime_new(NULL, &rt));
    t0 = tand_now_ms();
    for (i = 0; i < N; i++)
        if (echo_start(rt, &sh, 0, NULL, &all[i]) != 0)
            bad++;
    CHECK_INT(bad, 0);
    printf("started %d servers in %lld ms\n", N,
           (long long)(tand_now_ms() - t0));
    for (i = 0; i < N; i += 997) {
        CHECK_OK(echo_req(all[i], ECHO, i, 0, 5000, &v));
        CHECK_INT(v, i);
    }
    for (i = 0; i < N; i++)
        if (tand_server_stop(all[i], 0, NULL, 0) != 0)
            bad++;
    CHECK_INT(bad, 0);
    WAIT_FOR(atomic_load(&sh.terminated) == N, 20000);
    for (i = 0; i < N; i++)
        tand_server_release(all[i]);
    free(all);
    tand_runtime_free(rt);
}

typedef struct waiter {
    tand_server *s;
    int rc;
} waiter;

static void *wait_call(void *arg)
{
    waiter *w = arg;
    w->rc = echo_req(w->s, SLEEP, 50, 0, 10000, NULL);
    return NULL;
}

static void free_with_waiters(void)
{
    tand_runtime *rt;
    tand_server *s;
    echo_shared sh = {0};
    pthread_t th[4];
    waiter w[4];
    int i;

    CHECK_OK(tand_runtime_new(NULL, &rt));
    CHECK_OK(echo_start(rt, &sh, 0, "x", &s));
    for (i = 0; i < 4; i++) {
        w[i].s = s;
        w[i].rc = 1;
        pthread_create(&th[i], NULL, wait_call, &w[i]);
    }
    WAIT_FOR(atomic_load(&sh.handled_sleeps) >= 1, 5000);
    tand_runtime_free(rt);
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        /* the one in progress finished; the rest were told noproc */
        CHECK(w[i].rc == 0 || w[i].rc == TAND_ENOPROC);
    }
    CHECK_INT(atomic_load(&sh.terminated), 1);
    CHECK(!tand_server_alive(s));
    CHECK_RC(echo_req(s, ECHO, 1, 0, 100, NULL), TAND_ENOPROC);
    tand_server_release(s);
}

typedef struct busy {
    tand_server *s;
    atomic_int started;
    int rc;
} busy;

static void *call_until_refused(void *arg)
{
    busy *b = arg;
    do {
        atomic_store(&b->started, 1);
        b->rc = echo_req(b->s, ECHO, 1, 0, 10000, NULL);
    } while (b->rc == 0);
    return NULL;
}

/* Casts into a mailbox of 4: most casts wait for room. */
static void *cast_until_refused(void *arg)
{
    busy *b = arg;
    do {
        atomic_store(&b->started, 1);
        b->rc = echo_cast_op(b->s, 0, 1, 0, 10000, 0);
    } while (b->rc == 0);
    return NULL;
}

static void *configure_until_refused(void *arg)
{
    busy *b = arg;
    do {
        atomic_store(&b->started, 1);
        b->rc = tand_server_set_idle(b->s, 60000, TAND_IDLE_NOTIFY);
        if (b->rc == 0)
            b->rc = tand_register(b->s, "busy");
    } while (b->rc == 0);
    return NULL;
}

static void *stop_and_wait(void *arg)
{
    busy *b = arg;
    atomic_store(&b->started, 1);
    b->rc = tand_server_stop(b->s, 0, NULL, 10000);
    return NULL;
}

/* Freeing a runtime while other threads call, cast, arm the idle timer,
** register and (every third round) stop the server and wait for its end:
** each is refused with noproc, or the stop succeeds, and none uses the
** runtime after it is gone (the sanitizer builds check that part). */
static void free_while_busy(int workers)
{
    static void *(*const kinds[])(void *) = {
        call_until_refused, call_until_refused, cast_until_refused,
        configure_until_refused, stop_and_wait};
    int round;
    for (round = 0; round < 300; round++) {
        tand_runtime *rt;
        tand_runtime_options o = {workers};
        echo_shared sh = {0};
        tand_server *s;
        int n = round % 3 == 0 ? 5 : 4;
        pthread_t th[5];
        busy b[5];
        int i;

        CHECK_OK(tand_runtime_new(&o, &rt));
        CHECK_OK(echo_start(rt, &sh, 4, NULL, &s));
        for (i = 0; i < n; i++) {
            b[i].s = s;
            atomic_init(&b[i].started, 0);
            pthread_create(&th[i], NULL, kinds[i], &b[i]);
        }
        for (i = 0; i < n; i++)
            WAIT_FOR(atomic_load(&b[i].started), 5000);
        if (round % 2)
            sleep_ms(1);
        tand_runtime_free(rt);
        for (i = 0; i < n; i++) {
            pthread_join(th[i], NULL);
            if (kinds[i] == stop_and_wait)
                CHECK(b[i].rc == 0 || b[i].rc == TAND_ENOPROC);
            else
                CHECK_RC(b[i].rc, TAND_ENOPROC);
        }
        tand_server_release(s);
    }
}

typedef struct relay {
    tand_server *from, *to;
    int64_t value;
    int rc;
} relay;

static void *relay_call(void *arg)
{
    relay *r = arg;
    int64_t v = -1;
    r->rc = echo_req(r->from, RELAY, (int64_t)tand_server_id(r->to),
                     r->value, 10000, &v);
    if (r->rc == 0 && v != r->value)
        r->rc = -1000;
    return NULL;
}

/* With one worker, handlers that wait on other servers still get their
** replies: a blocked worker hands its place to a spare. */
static void blocked_workers(void)
{
    tand_runtime *rt;
    tand_runtime_options o = {1};
    tand_server *a[4], *b;
    echo_shared sh = {0};
    pthread_t th[4];
    relay r[4];
    int64_t t0;
    int i;

    CHECK_OK(tand_runtime_new(&o, &rt));
    CHECK_OK(echo_start(rt, &sh, 0, NULL, &b));
    for (i = 0; i < 4; i++)
        CHECK_OK(echo_start(rt, &sh, 0, NULL, &a[i]));
    t0 = tand_now_ms();
    for (i = 0; i < 4; i++) {
        r[i].from = a[i];
        r[i].to = i == 3 ? a[0] : b; /* a chain: a3 -> a0 -> b */
        r[i].value = 100 + i;
        pthread_create(&th[i], NULL, relay_call, &r[i]);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_OK(r[i].rc);
    }
    CHECK(tand_now_ms() - t0 < 5000);
    for (i = 0; i < 4; i++)
        tand_server_release(a[i]);
    tand_server_release(b);
    tand_runtime_free(rt); /* waits for the spares */
    CHECK_INT(atomic_load(&sh.terminated), 5);
}

/* With one worker, a handler that stops a server another thread is
** already stopping waits for its end without holding the worker that end
** needs. */
static void second_stopper_in_handler(void)
{
    tand_runtime *rt;
    tand_runtime_options o = {1};
    tand_server *a, *b;
    tand_replies *box;
    tand_msg req = {0}, reply;
    echo_shared sh = {0};
    uint64_t tag;
    int got = 0;

    CHECK_OK(tand_runtime_new(&o, &rt));
    CHECK_OK(echo_start(rt, &sh, 0, NULL, &a));
    CHECK_OK(echo_start(rt, &sh, 0, NULL, &b));
    CHECK_OK(tand_replies_new(&box));
    /* a holds the worker at the gate; b's stop and a's stop of b queue
    ** behind it, and then the gate opens */
    req.op = GATE;
    req.ival[0] = 10000;
    CHECK_OK(tand_call_async(a, &req, 20000, 0, box, 1));
    WAIT_FOR(atomic_load(&sh.at_gate) == 1, 5000);
    CHECK_OK(tand_server_stop(b, 0, NULL, 0));
    memset(&req, 0, sizeof req);
    req.op = STOPID;
    req.ival[0] = (int64_t)tand_server_id(b);
    req.ival[1] = 5000;
    CHECK_OK(tand_call_async(a, &req, 20000, 0, box, 2));
    atomic_store(&sh.gate, 1);
    while (got < 2) {
        CHECK_OK(tand_replies_wait(box, 10000));
        while (tand_replies_take(box, &tag, &reply)) {
            got++;
            if (tag == 2) {
                CHECK_RC(reply.status, TAND_ENOPROC);
                CHECK(reply.ival[0] < 2500); /* 5000 if it stalled */
            } else {
                CHECK_OK(reply.status);
            }
            tand_msg_clear(&reply);
        }
    }
    CHECK(!tand_server_alive(b));
    tand_replies_free(box);
    tand_server_release(a);
    tand_server_release(b);
    tand_runtime_free(rt);
}

int main(void)
{
    blocked_workers();
    second_stopper_in_handler();
    pumped();
    many_servers();
    free_with_waiters();
    free_while_busy(1);
    free_while_busy(TAND_PUMPED);
    return check_done("test_runtime");
}
