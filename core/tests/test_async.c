/*
** test_async.c - asynchronous calls and reply boxes: replies by tag
** through a pollable descriptor, deadlines, a box freed with calls in
** flight, failed sends, a pumped runtime, a box cancelled (calls queued,
** running, replies not taken, the descriptor, reuse), and many owners at
** once.
*/
#include "check.h"
#include "echo.h"

#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <pthread.h>
#if defined(__SANITIZE_ADDRESS__)
#define TAND_TEST_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TAND_TEST_LSAN 1
#endif
#endif
#ifdef TAND_TEST_LSAN
#include <sanitizer/lsan_interface.h>
#endif

static tand_runtime *rt;

static tand_msg op_msg(int op, int64_t a)
{
    tand_msg m;
    memset(&m, 0, sizeof m);
    m.op = op;
    m.ival[0] = a;
    return m;
}

static bool readable(int fd, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

static void replies_by_tag(void)
{
    echo_shared sh = {0};
    tand_server *s;
    tand_replies *box;
    tand_msg m, reply;
    uint64_t tag;
    bool seen[100] = {false};
    int i, got = 0;

    CHECK_OK(echo_start(rt, &sh, 0, NULL, &s));
    CHECK_OK(tand_replies_new(&box));
    CHECK(tand_replies_fd(box) >= 0);
    CHECK(!readable(tand_replies_fd(box), 0));
    CHECK_INT(tand_replies_take(box, &tag, &reply), 0);
    CHECK_INT(tand_replies_timeout_ms(box), -1);
    for (i = 0; i < 100; i++) {
        m = op_msg(ECHO, 1000 + i);
        CHECK_OK(tand_call_async(s, &m, TAND_FOREVER, 0, box, (uint64_t)i));
    }
    CHECK_INT(tand_replies_count(box), 100);
    while (got < 100) {
        CHECK(readable(tand_replies_fd(box), 5000));
        while (tand_replies_take(box, &tag, &reply) == 1) {
            CHECK_OK(reply.status);
            CHECK(tag < 100 && !seen[tag]);
            if (tag < 100) {
                seen[tag] = true;
                CHECK_INT(reply.ival[0], 1000 + (int64_t)tag);
            }
            tand_msg_clear(&reply);
            got++;
        }
    }
    CHECK_INT(tand_replies_count(box), 0);
    CHECK(!readable(tand_replies_fd(box), 0)); /* drained */
    /* wait for hosts without a loop */
    m = op_msg(SLEEP, 20);
    CHECK_OK(tand_call_async(s, &m, 5000, 0, box, 7));
    CHECK_OK(tand_replies_wait(box, 5000));
    CHECK_INT(tand_replies_take(box, &tag, &reply), 1);
    CHECK_INT(tag, 7);
    CHECK_INT(reply.ival[0], 20);
    CHECK_RC(tand_replies_wait(box, 10), TAND_ETIMEDOUT);
    tand_replies_free(box);
    tand_server_stop(s, 0, NULL, 5000);
    tand_server_release(s);
}

static void deadlines(void)
{
    echo_shared sh = {0};
    tand_server *s;
    tand_replies *box;
    tand_msg m, reply;
    uint64_t tag = 0;
    int64_t left;

    CHECK_OK(echo_start(rt, &sh, 0, NULL, &s));
    CHECK_OK(tand_replies_new(&box));
    /* a deadline long enough that the server surely keeps the call first,
    ** even on a loaded machine under a sanitizer */
    m = op_msg(DEFER, 0);
    CHECK_OK(tand_call_async(s, &m, 1000, 0, box, 1));
    m = op_msg(ECHO, 5);
    CHECK_OK(tand_call_async(s, &m, TAND_FOREVER, 0, box, 2));
    left = tand_replies_timeout_ms(box);
    CHECK(left >= 0 && left <= 1000);
    /* the echo comes first, then the deferred call times out */
    CHECK_OK(tand_replies_wait(box, 5000));
    CHECK_INT(tand_replies_take(box, &tag, &reply), 1);
    CHECK_INT(tag, 2);
    tand_msg_clear(&reply);
    WAIT_FOR(tand_replies_timeout_ms(box) == 0, 5000);
    CHECK_OK(tand_replies_wait(box, 0));
    CHECK_INT(tand_replies_take(box, &tag, &reply), 1);
    CHECK_INT(tag, 1);
    CHECK_RC(reply.status, TAND_ETIMEDOUT);
    CHECK_INT(tand_replies_count(box), 0);
    /* the late answer is dropped: the server learns the caller left */
    CHECK_RC(echo_answer(s, 3), TAND_ETIMEDOUT);
    CHECK_INT(tand_replies_take(box, &tag, &reply), 0);

    /* a server that stops answers what it holds with noproc */
    m = op_msg(DEFER, 0);
    CHECK_OK(tand_call_async(s, &m, TAND_FOREVER, 0, box, 9));
    CHECK_OK(echo_req(s, ECHO, 0, 0, 5000, NULL)); /* DEFER was handled */
    CHECK_OK(tand_server_stop(s, 0, NULL, 5000));
    CHECK_OK(tand_replies_wait(box, 5000));
    CHECK_INT(tand_replies_take(box, &tag, &reply), 1);
    CHECK_INT(tag, 9);
    CHECK_RC(reply.status, TAND_ENOPROC);
    tand_msg_clear(&reply);
    tand_replies_free(box);
    tand_server_release(s);
}

static void failed_sends(void)
{
    echo_shared sh = {0};
    tand_server *s;
    tand_replies *box;
    tand_msg m, reply;
    uint64_t tag;
    tand_stats st;

    CHECK_OK(echo_start(rt, &sh, 1, NULL, &s));
    CHECK_OK(tand_replies_new(&box));
    m = op_msg(ECHO, 1);
    CHECK_RC(tand_call_async(NULL, &m, 10, 0, box, 1), TAND_EINVAL);
    m = op_msg(ECHO, 1);
    CHECK_RC(tand_call_async(s, &m, 10, 0, NULL, 1), TAND_EINVAL);
    /* a full mailbox with TAND_NOWAIT: busy, and nothing in the box */
    CHECK_OK(echo_cast_op(s, SLEEP, 200, 0, 1000, 0));
    WAIT_FOR(tand_server_stats(s, &st) == 0 && st.mailbox_depth == 0, 5000);
    CHECK_OK(echo_cast_op(s, 0, 1, 0, 1000, 0));
    m = op_msg(ECHO, 1);
    CHECK_RC(tand_call_async(s, &m, 1000, TAND_NOWAIT, box, 1), TAND_EBUSY);
    CHECK_INT(tand_replies_count(box), 0);
    tand_server_stop(s, 0, NULL, 5000);
    m = op_msg(ECHO, 1);
    CHECK_RC(tand_call_async(s, &m, 1000, 0, box, 1), TAND_ENOPROC);
    CHECK_INT(tand_replies_count(box), 0);
    CHECK_INT(tand_replies_take(box, &tag, &reply), 0);
    tand_replies_free(box);
    tand_server_release(s);
}

/* Freed with calls queued, running and answered: no leak, no crash, and
** the servers carry on (ASan and TSan builds check the rest). */
static void free_in_flight(void)
{
    echo_shared sh = {0};
    tand_server *s;
    tand_replies *box;
    tand_msg m;
    int i;

    CHECK_OK(echo_start(rt, &sh, 0, NULL, &s));
    for (i = 0; i < 50; i++) {
        CHECK_OK(tand_replies_new(&box));
        m = op_msg(SLEEP, i % 3);
        CHECK_OK(tand_call_async(s, &m, TAND_FOREVER, 0, box, 1));
        m = op_msg(ECHO, i);
        CHECK_OK(tand_call_async(s, &m, TAND_FOREVER, 0, box, 2));
        if (i % 2)
            sleep_ms(1);
        tand_replies_free(box);
    }
    CHECK_OK(echo_req(s, ECHO, 1, 0, 5000, NULL));
    tand_server_stop(s, 0, NULL, 5000);
    tand_server_release(s);
}

static void pumped(void)
{
    tand_runtime_options ro = {TAND_PUMPED};
    tand_runtime *prt;
    echo_shared sh = {0};
    tand_server *s;
    tand_replies *box;
    tand_msg m, reply;
    uint64_t tag;

    CHECK_OK(tand_runtime_new(&ro, &prt));
    CHECK_OK(echo_start(prt, &sh, 0, NULL, &s));
    CHECK_OK(tand_replies_new(&box));
    m = op_msg(ECHO, 11);
    CHECK_OK(tand_call_async(s, &m, 5000, 0, box, 3));
    CHECK_INT(tand_replies_take(box, &tag, &reply), 0); /* nobody pumped */
    CHECK(!readable(tand_replies_fd(box), 0));
    CHECK(tand_runtime_pump(prt, 1000) >= 1);
    CHECK(readable(tand_replies_fd(box), 0));
    CHECK_INT(tand_replies_take(box, &tag, &reply), 1);
    CHECK_INT(tag, 3);
    CHECK_INT(reply.ival[0], 11);
    tand_replies_free(box);
    tand_runtime_free(prt);
    tand_server_release(s);
}

/* ---- tand_replies_cancel ----------------------------------------------
** A probe server that counts what its handler runs, per op, and whose
** P_BLOCK call holds the server until the test opens it: cancel is tested
** with calls queued behind a running one, with the running one, with
** replies that came in and were not taken, and on the box afterwards. */

enum {
    P_WORK = 1,   /* reply ival[0] and a malloc'ed payload */
    P_BLOCK = 2,  /* wait (10 s at most) until the test opens the probe */
    P_DEFER = 3,  /* keep the caller for P_ANSWER */
    P_ANSWER = 4, /* answer the kept caller; reply ival[1] = tand_reply's */
    P_PING = 5,   /* reply at once: a barrier for what was sent before */
    P_OPS = 6
};

typedef struct probe {
    pthread_mutex_t mu;
    pthread_cond_t cv;     /* monotonic clock */
    int entered;           /* guarded by mu: P_BLOCKs that have started */
    int left;              /* guarded by mu: P_BLOCKs that have returned */
    bool open;             /* guarded by mu: P_BLOCKs may return */
    tand_from *kept;       /* the server's thread only */
    atomic_int ran[P_OPS]; /* handler runs, by op */
} probe;

static void probe_init(probe *p)
{
    pthread_condattr_t ca;
    int i;
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    for (i = 0; i < P_OPS; i++)
        atomic_init(&p->ran[i], 0);
}

static void probe_destroy(probe *p)
{
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
}

static struct timespec monotonic_in(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
}

/* Waits until *count (guarded by p->mu) reaches n, or ms pass. */
static bool probe_wait(probe *p, const int *count, int n, int64_t ms)
{
    struct timespec until = monotonic_in(ms);
    bool ok;
    pthread_mutex_lock(&p->mu);
    while (*count < n && pthread_cond_timedwait(&p->cv, &p->mu, &until) == 0)
        ;
    ok = *count >= n;
    pthread_mutex_unlock(&p->mu);
    return ok;
}

static void probe_open(probe *p)
{
    pthread_mutex_lock(&p->mu);
    p->open = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* A reply with a malloc'ed payload, so a reply the box forgets to free
** is a leak the ASan build reports. */
static void probe_payload(tand_msg *reply, int64_t v)
{
    tand_buf b;
    tand_buf_init(&b);
    tand_pack_array(&b, 2);
    tand_pack_str(&b, "probe reply", 11);
    tand_pack_int(&b, v);
    if (tand_buf_to_msg(&b, reply) != 0)
        reply->status = TAND_ENOMEM;
}

static int probe_call(void *state, tand_server *self, tand_msg *req,
                      tand_from *from, tand_msg *reply)
{
    probe *p = state;
    (void)self;
    if (req->op > 0 && req->op < P_OPS)
        atomic_fetch_add(&p->ran[req->op], 1);
    switch (req->op) {
    case P_WORK:
        reply->ival[0] = req->ival[0];
        probe_payload(reply, req->ival[0]);
        return 0;
    case P_BLOCK: {
        struct timespec until = monotonic_in(10000);
        pthread_mutex_lock(&p->mu);
        p->entered++;
        pthread_cond_broadcast(&p->cv);
        while (!p->open && pthread_cond_timedwait(&p->cv, &p->mu, &until) == 0)
            ;
        reply->ival[0] = p->open;
        p->left++;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        probe_payload(reply, req->ival[0]);
        return 0;
    }
    case P_DEFER:
        p->kept = from;
        return TAND_NOREPLY;
    case P_ANSWER:
        reply->ival[1] = 12345; /* nobody kept */
        if (p->kept != NULL) {
            tand_msg late = {0};
            probe_payload(&late, req->ival[0]);
            reply->ival[1] = tand_reply(p->kept, &late);
            p->kept = NULL;
        }
        return 0;
    case P_PING:
        return 0;
    default:
        reply->status = TAND_EBADREQ;
        return 0;
    }
}

static const tand_behaviour probe_behaviour = {.name = "probe",
                                               .handle_call = probe_call};

static int probe_start(tand_runtime *r, probe *p, tand_server **out)
{
    tand_server_options o;
    memset(&o, 0, sizeof o);
    o.behaviour = &probe_behaviour;
    o.arg = p;
    return tand_server_start(r, &o, out);
}

static int send_op(tand_server *s, int op, int64_t a, int64_t timeout_ms,
                   tand_replies *box, uint64_t tag)
{
    tand_msg m = op_msg(op, a);
    return tand_call_async(s, &m, timeout_ms, 0, box, tag);
}

/* A call of op with argument a; returns its status, *out its ival[1]. */
static int call_op(tand_server *s, int op, int64_t a, int64_t *out)
{
    tand_msg m = op_msg(op, a), reply;
    int rc = tand_call(s, &m, &reply, 5000, 0);
    if (out != NULL)
        *out = reply.ival[1];
    tand_msg_clear(&reply);
    return rc;
}

/* Watches the box for ms, polling its descriptor and taking whatever it
** says is there: how many replies came out (the last one's tag in *tag). */
static int replies_within(tand_replies *box, int64_t ms, uint64_t *tag)
{
    int64_t end = tand_now_ms() + ms, left;
    tand_msg reply;
    int n = 0;
    for (;;) {
        while (tand_replies_take(box, tag, &reply) == 1) {
            n++;
            tand_msg_clear(&reply);
        }
        if ((left = end - tand_now_ms()) <= 0)
            return n;
        readable(tand_replies_fd(box), (int)left);
    }
}

/* The reply of a P_WORK (or P_BLOCK) call: its payload says v. */
static bool payload_says(const tand_msg *reply, int64_t v)
{
    tand_reader r;
    tand_item it;
    if (reply->data == NULL || tand_unpack_check(reply->data, reply->size) != 0)
        return false;
    tand_reader_init(&r, reply->data, reply->size);
    if (tand_unpack(&r, &it) != 0 || it.type != TAND_T_ARRAY || it.v.n != 2)
        return false;
    if (tand_unpack(&r, &it) != 0 || it.type != TAND_T_STR ||
        it.v.s.len != 11 || memcmp(it.v.s.p, "probe reply", 11) != 0)
        return false;
    return tand_unpack(&r, &it) == 0 && it.type == TAND_T_INT && it.v.i == v;
}

/* Under ASan: 0 when no block has leaked so far (the leak checker runs
** now, so a leak is blamed on the test that made it); elsewhere 0. */
static int leaks_now(void)
{
#ifdef TAND_TEST_LSAN
    return __lsan_do_recoverable_leak_check();
#else
    return 0;
#endif
}

/* Calls queued behind a running one, some with deadlines (one already
** passed): cancel skips them all. The handler never runs for them, the
** box is empty at once, and nothing comes out of it later, not even the
** passed deadline's timeout. */
static void cancel_queued(void)
{
    probe p;
    tand_server *s;
    tand_replies *box;
    tand_msg reply;
    tand_stats st;
    uint64_t tag = 0;
    int i;

    probe_init(&p);
    CHECK_OK(probe_start(rt, &p, &s));
    CHECK_OK(tand_replies_new(&box));
    CHECK_OK(send_op(s, P_BLOCK, 1, TAND_FOREVER, box, 1));
    CHECK(probe_wait(&p, &p.entered, 1, 5000));
    for (i = 0; i < 30; i++)
        CHECK_OK(send_op(s, P_WORK, i, i % 2 ? TAND_FOREVER : 60000, box,
                         100 + (uint64_t)i));
    CHECK_OK(send_op(s, P_WORK, 99, 1, box, 200)); /* soon past */
    CHECK_INT(tand_replies_count(box), 32);
    WAIT_FOR(tand_replies_timeout_ms(box) == 0, 5000);

    tand_replies_cancel(box);
    CHECK_INT(tand_replies_count(box), 0);
    CHECK_INT(tand_replies_timeout_ms(box), -1);
    reply.status = 77;
    CHECK_INT(tand_replies_take(box, &tag, &reply), 0);
    CHECK_INT(reply.status, 0); /* zeroed */
    CHECK(reply.data == NULL);

    /* Let the server go on: once a call sent after them is answered, it
    ** has been through every one of them. */
    probe_open(&p);
    CHECK_OK(call_op(s, P_PING, 0, NULL));
    CHECK_INT(atomic_load(&p.ran[P_WORK]), 0);
    CHECK_INT(atomic_load(&p.ran[P_BLOCK]), 1);
    CHECK_OK(tand_server_stats(s, &st));
    CHECK_INT(st.calls, 2); /* the block and the ping */
    CHECK_INT(st.deferred, 0);
    CHECK_INT(replies_within(box, 500, &tag), 0);
    CHECK_INT(tand_replies_count(box), 0);
    CHECK_INT(tand_replies_take(box, &tag, &reply), 0);
    CHECK(!readable(tand_replies_fd(box), 0));

    tand_replies_free(box);
    CHECK_OK(tand_server_stop(s, 0, NULL, 5000));
    tand_server_release(s);
    probe_destroy(&p);
}

/* The call the server is running, and one it deferred: both replies are
** dropped (the deferred one's tand_reply learns that its caller left),
** and nothing comes out of the box later. */
static void cancel_running(void)
{
    probe p;
    tand_server *s;
    tand_replies *box, *box2;
    tand_msg reply;
    tand_stats st;
    uint64_t tag = 0;
    int64_t answered = 0;
    int i;

    probe_init(&p);
    CHECK_OK(probe_start(rt, &p, &s));
    CHECK_OK(tand_replies_new(&box));
    CHECK_OK(send_op(s, P_DEFER, 0, TAND_FOREVER, box, 1));
    CHECK_OK(send_op(s, P_BLOCK, 0, 60000, box, 2));
    CHECK(probe_wait(&p, &p.entered, 1, 5000));
    CHECK_INT(atomic_load(&p.ran[P_DEFER]), 1);
    CHECK_INT(tand_replies_count(box), 2);

    tand_replies_cancel(box);
    CHECK_INT(tand_replies_count(box), 0);
    CHECK_INT(tand_replies_take(box, &tag, &reply), 0);
    /* a second box, cancelled and freed at once with calls queued: the
    ** server skips them without touching it (ASan) */
    CHECK_OK(tand_replies_new(&box2));
    for (i = 0; i < 3; i++)
        CHECK_OK(send_op(s, P_WORK, i, i ? 60000 : TAND_FOREVER, box2, 1));
    tand_replies_cancel(box2);
    CHECK_INT(tand_replies_count(box2), 0);
    tand_replies_free(box2);
    probe_open(&p);
    CHECK(probe_wait(&p, &p.left, 1, 5000)); /* it has returned */
    CHECK_OK(call_op(s, P_ANSWER, 5, &answered));
    CHECK_RC((int)answered, TAND_ETIMEDOUT);
    CHECK_INT(atomic_load(&p.ran[P_WORK]), 0);
    CHECK_OK(tand_server_stats(s, &st));
    CHECK_INT(st.deferred, 0);
    CHECK_INT(replies_within(box, 500, &tag), 0);
    CHECK_INT(tand_replies_count(box), 0);
    CHECK(!readable(tand_replies_fd(box), 0));

    tand_replies_free(box);
    CHECK_OK(tand_server_stop(s, 0, NULL, 5000));
    tand_server_release(s);
    probe_destroy(&p);
}

/* Replies that came in and were not taken are freed: none taken, or some
** taken (the owner has moved the rest out of the shared list) and more
** come in behind them. Their payloads would leak otherwise (ASan). */
static void cancel_frees_replies(void)
{
    probe p;
    tand_server *s;
    tand_replies *box;
    tand_msg reply;
    uint64_t tag = 0;
    int round, i;

    probe_init(&p);
    CHECK_OK(probe_start(rt, &p, &s));
    for (round = 0; round < 2; round++) {
        CHECK_OK(tand_replies_new(&box));
        for (i = 0; i < 16; i++)
            CHECK_OK(send_op(s, P_WORK, i, TAND_FOREVER, box, (uint64_t)i));
        CHECK_OK(call_op(s, P_PING, 0, NULL)); /* all 16 are in the box */
        CHECK(readable(tand_replies_fd(box), 5000));
        if (round == 1) {
            CHECK_INT(tand_replies_take(box, &tag, &reply), 1);
            CHECK_OK(reply.status);
            CHECK(payload_says(&reply, (int64_t)tag));
            tand_msg_clear(&reply);
            for (i = 0; i < 4; i++)
                CHECK_OK(
                    send_op(s, P_WORK, 16 + i, 60000, box, 16 + (uint64_t)i));
            CHECK_OK(call_op(s, P_PING, 0, NULL));
        }
        CHECK_INT(tand_replies_count(box), round == 0 ? 16 : 19);
        tand_replies_cancel(box);
        CHECK_INT(tand_replies_count(box), 0);
        CHECK_INT(tand_replies_take(box, &tag, &reply), 0);
        CHECK_INT(replies_within(box, 100, &tag), 0);
        CHECK_INT(leaks_now(), 0);
        tand_replies_free(box);
    }
    CHECK_INT(atomic_load(&p.ran[P_WORK]), 36);
    CHECK_OK(tand_server_stop(s, 0, NULL, 5000));
    tand_server_release(s);
    probe_destroy(&p);
}

typedef struct poller {
    int fd;
    atomic_int polling;
    int rc; /* poll's */
    short revents;
} poller;

static void *poll_box(void *arg)
{
    poller *pl = arg;
    struct pollfd pf = {pl->fd, POLLIN, 0};
    atomic_store(&pl->polling, 1);
    pl->rc = poll(&pf, 1, 5000);
    pl->revents = pf.revents;
    return NULL;
}

/* The descriptor: another thread polling it wakes at the cancel; it stays
** the same open descriptor, readable until the next take; and the box
** works as before, under old tags and new, whether or not a take came
** between the cancel and the next call. */
static void cancel_descriptor(void)
{
    probe p;
    tand_server *s;
    tand_replies *box;
    tand_msg reply;
    poller pl;
    pthread_t th;
    uint64_t tag = 0;
    int fd, round;

    probe_init(&p);
    CHECK_OK(probe_start(rt, &p, &s));
    CHECK_OK(tand_replies_new(&box));
    fd = tand_replies_fd(box);
    CHECK_OK(send_op(s, P_BLOCK, 0, TAND_FOREVER, box, 1));
    CHECK_OK(send_op(s, P_WORK, 2, TAND_FOREVER, box, 2));
    CHECK(probe_wait(&p, &p.entered, 1, 5000));
    CHECK(!readable(fd, 0));

    memset(&pl, 0, sizeof pl);
    pl.fd = fd;
    pl.rc = -2;
    CHECK_INT(pthread_create(&th, NULL, poll_box, &pl), 0);
    WAIT_FOR(atomic_load(&pl.polling), 5000);
    sleep_ms(20); /* most likely inside poll by now; either way it wakes */
    tand_replies_cancel(box);
    pthread_join(th, NULL);
    CHECK_INT(pl.rc, 1); /* not 0: it woke before its 5 s */
    CHECK(pl.revents & POLLIN);

    CHECK_INT(tand_replies_fd(box), fd);
    CHECK(fcntl(fd, F_GETFD) != -1);
    CHECK(readable(fd, 5000));
    CHECK(readable(fd, 0)); /* polling does not consume it */
    CHECK_INT(tand_replies_take(box, &tag, &reply), 0);
    CHECK(!readable(fd, 0)); /* the take drained it */
    probe_open(&p);
    CHECK_OK(call_op(s, P_PING, 0, NULL));
    CHECK_INT(atomic_load(&p.ran[P_WORK]), 0);

    /* round 0 takes (drains) before the call, round 1 calls straight
    ** after a second cancel, with the cancel's byte still in the pipe */
    for (round = 0; round < 2; round++) {
        if (round == 1) {
            tand_replies_cancel(box);
            CHECK(readable(fd, 5000));
        }
        CHECK_OK(send_op(s, P_WORK, 4242 + round, 5000, box, 1)); /* old */
        CHECK_OK(send_op(s, P_WORK, 7 + round, TAND_FOREVER, box, 777));
        CHECK_INT(tand_replies_count(box), 2);
        CHECK(tand_replies_timeout_ms(box) >= 0);
        CHECK_OK(tand_replies_wait(box, 5000));
        CHECK_OK(call_op(s, P_PING, 0, NULL)); /* both are in by now */
        CHECK(readable(fd, 5000));
        CHECK_INT(tand_replies_take(box, &tag, &reply), 1);
        CHECK_INT(tag, 1);
        CHECK_OK(reply.status);
        CHECK_INT(reply.ival[0], 4242 + round);
        CHECK(payload_says(&reply, 4242 + round));
        tand_msg_clear(&reply);
        CHECK_INT(tand_replies_take(box, &tag, &reply), 1);
        CHECK_INT(tag, 777);
        CHECK_OK(reply.status);
        CHECK_INT(reply.ival[0], 7 + round);
        tand_msg_clear(&reply);
        CHECK_INT(tand_replies_count(box), 0);
        CHECK_INT(tand_replies_take(box, &tag, &reply), 0);
        CHECK(!readable(fd, 0));
    }
    CHECK_INT(replies_within(box, 300, &tag), 0);
    CHECK_INT(atomic_load(&p.ran[P_WORK]), 4);

    tand_replies_free(box);
    CHECK_OK(tand_server_stop(s, 0, NULL, 5000));
    tand_server_release(s);
    probe_destroy(&p);
}

/* NULL is fine; an empty box (new, or every reply taken) is made readable
** and stays usable, also after two cancels in a row. */
static void cancel_empty(void)
{
    probe p;
    tand_server *s;
    tand_replies *box;
    tand_msg reply;
    uint64_t tag = 0;
    int round;

    tand_replies_cancel(NULL);
    probe_init(&p);
    CHECK_OK(probe_start(rt, &p, &s));
    CHECK_OK(tand_replies_new(&box));
    for (round = 0; round < 3; round++) {
        tand_replies_cancel(box);
        if (round == 2)
            tand_replies_cancel(box);
        CHECK_INT(tand_replies_count(box), 0);
        CHECK_INT(tand_replies_timeout_ms(box), -1);
        CHECK(readable(tand_replies_fd(box), 5000));
        CHECK_INT(tand_replies_take(box, &tag, &reply), 0);
        CHECK(!readable(tand_replies_fd(box), 0));
        CHECK_OK(send_op(s, P_WORK, 50 + round, 5000, box, 5));
        CHECK_OK(tand_replies_wait(box, 5000));
        CHECK_INT(tand_replies_take(box, &tag, &reply), 1);
        CHECK_INT(tag, 5);
        CHECK_OK(reply.status);
        CHECK_INT(reply.ival[0], 50 + round);
        tand_msg_clear(&reply);
        CHECK_INT(tand_replies_count(box), 0);
    }
    /* a wait after a cancel, with nothing taken: the cancel's byte is
    ** drained, so the wait sleeps in poll instead of finding the
    ** descriptor readable over and over */
    tand_replies_cancel(box);
    CHECK_RC(tand_replies_wait(box, 20), TAND_ETIMEDOUT);
    CHECK(!readable(tand_replies_fd(box), 0));
    tand_replies_free(box);
    CHECK_OK(tand_server_stop(s, 0, NULL, 5000));
    tand_server_release(s);
    probe_destroy(&p);
}

/* In a pumped runtime nothing runs until the host pumps: calls cancelled
** before the pump are never handled, and the box serves the next one. */
static void cancel_pumped(void)
{
    tand_runtime_options ro = {TAND_PUMPED};
    tand_runtime *prt;
    probe p;
    tand_server *s;
    tand_replies *box;
    tand_msg reply;
    tand_stats st;
    uint64_t tag = 0;
    int i, pumps = 0;

    probe_init(&p);
    CHECK_OK(tand_runtime_new(&ro, &prt));
    CHECK_OK(probe_start(prt, &p, &s));
    CHECK_OK(tand_replies_new(&box));
    for (i = 0; i < 8; i++)
        CHECK_OK(send_op(s, P_WORK, i, i % 2 ? 5000 : TAND_FOREVER, box,
                         (uint64_t)i));
    tand_replies_cancel(box);
    CHECK_INT(tand_replies_count(box), 0);
    CHECK(readable(tand_replies_fd(box), 0));
    while (tand_runtime_pump(prt, 100000) > 0 && pumps < 100)
        pumps++;
    CHECK_INT(atomic_load(&p.ran[P_WORK]), 0);
    CHECK_OK(tand_server_stats(s, &st));
    CHECK_INT(st.calls, 0);
    CHECK_INT(st.mailbox_depth, 0);
    CHECK_INT(tand_replies_take(box, &tag, &reply), 0);
    CHECK(!readable(tand_replies_fd(box), 0));
    CHECK_OK(send_op(s, P_WORK, 31, 5000, box, 8));
    CHECK(tand_runtime_pump(prt, 100000) >= 1);
    CHECK(readable(tand_replies_fd(box), 0));
    CHECK_INT(tand_replies_take(box, &tag, &reply), 1);
    CHECK_INT(tag, 8);
    CHECK_INT(reply.ival[0], 31);
    tand_msg_clear(&reply);
    CHECK_INT(tand_replies_take(box, &tag, &reply), 0);
    tand_replies_free(box);
    tand_runtime_free(prt);
    tand_server_release(s);
    probe_destroy(&p);
}

typedef struct owner {
    tand_server *s;
    int64_t numbers[4000];
    int failures;
} owner;

/* One box per thread, many calls in flight: every number once. */
static void *own(void *p)
{
    owner *o = p;
    tand_replies *box;
    tand_msg m, reply;
    uint64_t tag;
    int sent = 0, got = 0;
    if (tand_replies_new(&box) != 0) {
        o->failures++;
        return NULL;
    }
    while (got < 4000) {
        while (sent < 4000 && sent - got < 64) {
            m = op_msg(COUNT, 0);
            if (tand_call_async(o->s, &m, 10000, 0, box, (uint64_t)sent) != 0)
                o->failures++;
            sent++;
        }
        if (tand_replies_wait(box, 10000) != 0) {
            o->failures++;
            break;
        }
        while (tand_replies_take(box, &tag, &reply) == 1) {
            if (reply.status != 0 || tag >= 4000)
                o->failures++;
            else
                o->numbers[tag] = reply.ival[0];
            got++;
        }
    }
    tand_replies_free(box);
    return NULL;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void many_owners(void)
{
    enum { N = 4 };
    echo_shared sh = {0};
    tand_server *s;
    static owner o[N];
    static int64_t all[N * 4000];
    pthread_t th[N];
    int i, dup = 0;

    CHECK_OK(echo_start(rt, &sh, 0, NULL, &s));
    for (i = 0; i < N; i++) {
        o[i].s = s;
        pthread_create(&th[i], NULL, own, &o[i]);
    }
    for (i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT(o[i].failures, 0);
        memcpy(all + i * 4000, o[i].numbers, sizeof o[i].numbers);
    }
    qsort(all, N * 4000, sizeof all[0], cmp64);
    for (i = 0; i < N * 4000; i++)
        if (all[i] != i)
            dup++;
    CHECK_INT(dup, 0);
    tand_server_stop(s, 0, NULL, 5000);
    tand_server_release(s);
}

int main(void)
{
    CHECK_OK(tand_runtime_new(NULL, &rt));
    replies_by_tag();
    deadlines();
    failed_sends();
    free_in_flight();
    pumped();
    cancel_queued();
    cancel_running();
    cancel_frees_replies();
    cancel_descriptor();
    cancel_empty();
    cancel_pumped();
    many_owners();
    tand_runtime_free(rt);
    return check_done("test_async");
}
