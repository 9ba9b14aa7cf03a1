/*
** echo.h - a test server whose requests exercise the engine: echo,
** sleep, defer and answer later, call itself, crash, and track order.
*/
#ifndef TAND_ECHO_H
#define TAND_ECHO_H

#include "tand.h"

#include <stdatomic.h>
#include <time.h>

enum {
    ECHO = 1,     /* reply ival[0] */
    SLEEP = 2,    /* sleep ival[0] ms, then reply */
    DEFER = 3,    /* keep the caller for later */
    ANSWER = 4,   /* answer the kept caller with ival[0]; reply ival[1]
                  ** what tand_reply returned */
    SELFCALL = 5, /* call ourselves; reply the status */
    CRASH = 6,    /* stop with server_crashed, reply server_crashed */
    ORDER = 7,    /* ival[0] sender, ival[1] sequence number */
    COUNT = 8,    /* reply the next number of a counter */
    RELAY = 9,    /* call server id ival[0] with ECHO ival[1]; reply it */
    CASTTO = 10,  /* cast to server id ival[0], waiting up to ival[1] ms
                  ** for room; reply the status */
    STOPID = 11,  /* stop server id ival[0], waiting up to ival[1] ms for
                  ** its end; reply the status, and ival[0] = ms waited */
    GATE = 12     /* wait up to ival[0] ms for shared->gate to open (a
                  ** call or a cast) */
};

#define ECHO_SENDERS 64

typedef struct echo_shared {
    atomic_int terminated;
    atomic_int term_reason;
    atomic_int idles;
    atomic_int infos;
    atomic_int handled_sleeps;
    atomic_int order_errors;
    atomic_llong cast_sum;
    atomic_llong down_tag;    /* the last DOWN notice */
    atomic_int down_reason;
    atomic_int downs;
    atomic_int gate;          /* GATE waits until it is set */
    atomic_int at_gate;       /* GATEs that have started waiting */
} echo_shared;

typedef struct echo_state {
    echo_shared *shared;
    tand_from *kept;
    int64_t last_seq[ECHO_SENDERS];
    int64_t counter;
} echo_state;

static inline void sleep_ms(int64_t ms)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000;
    nanosleep(&ts, NULL);
}

/* Holds the handler until the test opens sh->gate, or ms pass: a server
** kept busy for exactly as long as the test needs, however slow the
** machine. */
static inline void gate_wait(echo_shared *sh, int64_t ms)
{
    int64_t until = tand_now_ms() + ms;
    atomic_fetch_add(&sh->at_gate, 1);
    while (!atomic_load(&sh->gate) && tand_now_ms() < until)
        sleep_ms(1);
}

static inline int echo_init(tand_server *self, void *arg, void **state)
{
    echo_state *st = calloc(1, sizeof *st);
    int i;
    (void)self;
    if (st == NULL)
        return TAND_ENOMEM;
    st->shared = arg;
    for (i = 0; i < ECHO_SENDERS; i++)
        st->last_seq[i] = -1;
    *state = st;
    return 0;
}

static inline void check_order(echo_state *st, const tand_msg *m)
{
    int64_t sender = m->ival[0], seq = m->ival[1];
    if (sender < 0 || sender >= ECHO_SENDERS)
        return;
    if (seq != st->last_seq[sender] + 1)
        atomic_fetch_add(&st->shared->order_errors, 1);
    st->last_seq[sender] = seq;
}

static inline int echo_call(void *state, tand_server *self, tand_msg *req,
                     tand_from *from, tand_msg *reply)
{
    echo_state *st = state;
    tand_msg inner = {0}, inner_reply;
    switch (req->op) {
    case ECHO:
        reply->ival[0] = req->ival[0];
        return 0;
    case SLEEP:
        atomic_fetch_add(&st->shared->handled_sleeps, 1);
        sleep_ms(req->ival[0]);
        reply->ival[0] = req->ival[0];
        return 0;
    case DEFER:
        st->kept = from;
        return TAND_NOREPLY;
    case ANSWER:
        if (st->kept != NULL) {
            tand_msg late = {0};
            late.ival[0] = req->ival[0];
            reply->ival[1] = tand_reply(st->kept, &late);
            st->kept = NULL;
        }
        return 0;
    case SELFCALL:
        inner.op = ECHO;
        reply->ival[0] = tand_call(self, &inner, &inner_reply, 1000, 0);
        tand_msg_clear(&inner_reply);
        return 0;
    case CRASH:
        tand_server_stop(self, TAND_ECRASHED, "boom", 0);
        reply->status = TAND_ECRASHED;
        tand_msg_set_text(reply, "boom", 4);
        return 0;
    case ORDER:
        check_order(st, req);
        return 0;
    case COUNT:
        reply->ival[0] = st->counter++;
        return 0;
    case RELAY: {
        tand_server *other;
        reply->status = tand_server_lookup(tand_server_runtime(self),
                                           (uint64_t)req->ival[0], &other);
        if (reply->status != 0)
            return 0;
        inner.op = ECHO;
        inner.ival[0] = req->ival[1];
        reply->status = tand_call(other, &inner, &inner_reply, 5000, 0);
        reply->ival[0] = inner_reply.ival[0];
        tand_msg_clear(&inner_reply);
        tand_server_release(other);
        return 0;
    }
    case CASTTO: {
        tand_server *other;
        reply->status = tand_server_lookup(tand_server_runtime(self),
                                           (uint64_t)req->ival[0], &other);
        if (reply->status != 0)
            return 0;
        inner.op = ECHO;
        reply->status = tand_cast(other, &inner, req->ival[1], 0);
        tand_server_release(other);
        return 0;
    }
    case GATE:
        gate_wait(st->shared, req->ival[0]);
        return 0;
    case STOPID: {
        tand_server *other;
        int64_t t0 = tand_now_ms();
        reply->status = tand_server_lookup(tand_server_runtime(self),
                                           (uint64_t)req->ival[0], &other);
        if (reply->status != 0)
            return 0;
        reply->status = tand_server_stop(other, 0, NULL, req->ival[1]);
        reply->ival[0] = tand_now_ms() - t0;
        tand_server_release(other);
        return 0;
    }
    default:
        reply->status = TAND_EBADREQ;
        return 0;
    }
}

static inline void echo_cast(void *state, tand_server *self, tand_msg *msg)
{
    echo_state *st = state;
    (void)self;
    if (msg->op == ORDER)
        check_order(st, msg);
    else if (msg->op == SLEEP)
        sleep_ms(msg->ival[0]);
    else if (msg->op == GATE)
        gate_wait(st->shared, msg->ival[0]);
    else
        atomic_fetch_add(&st->shared->cast_sum, msg->ival[0]);
}

static inline void echo_info(void *state, tand_server *self, tand_msg *msg)
{
    echo_state *st = state;
    (void)self;
    if (msg->op == TAND_OP_DOWN) {
        atomic_store(&st->shared->down_tag, msg->ival[0]);
        atomic_store(&st->shared->down_reason, (int)msg->ival[1]);
        atomic_fetch_add(&st->shared->downs, 1);
        return;
    }
    atomic_fetch_add(&st->shared->infos, 1);
}

static inline void echo_idle(void *state, tand_server *self)
{
    echo_state *st = state;
    (void)self;
    atomic_fetch_add(&st->shared->idles, 1);
}

static inline void echo_terminate(void *state, tand_server *self, int reason,
                           const char *detail)
{
    echo_state *st = state;
    (void)self;
    (void)detail;
    atomic_store(&st->shared->term_reason, reason);
    atomic_fetch_add(&st->shared->terminated, 1);
    free(st);
}

static const tand_behaviour echo_behaviour = {
    .name = "echo",
    .init = echo_init,
    .handle_call = echo_call,
    .handle_cast = echo_cast,
    .handle_info = echo_info,
    .handle_idle = echo_idle,
    .terminate = echo_terminate};

static inline int echo_start(tand_runtime *rt, echo_shared *sh, size_t capacity,
                      const char *name, tand_server **out)
{
    tand_server_options o;
    memset(&o, 0, sizeof o);
    o.behaviour = &echo_behaviour;
    o.arg = sh;
    o.mailbox_capacity = capacity;
    o.name = name;
    return tand_server_start(rt, &o, out);
}

/* A call with integer arguments; returns the status, *out the result. */
static inline int echo_req(tand_server *s, int op, int64_t a, int64_t b,
                    int64_t timeout_ms, int64_t *out)
{
    tand_msg req = {0}, reply;
    int rc;
    req.op = op;
    req.ival[0] = a;
    req.ival[1] = b;
    rc = tand_call(s, &req, &reply, timeout_ms, 0);
    if (out != NULL)
        *out = reply.ival[0];
    tand_msg_clear(&reply);
    return rc;
}

/* ANSWER the kept caller with v; returns what tand_reply returned. */
static inline int echo_answer(tand_server *s, int64_t v)
{
    tand_msg req = {0}, reply;
    int rc;
    req.op = ANSWER;
    req.ival[0] = v;
    req.ival[1] = 12345;
    rc = tand_call(s, &req, &reply, 5000, 0);
    if (rc == 0)
        rc = (int)reply.ival[1];
    tand_msg_clear(&reply);
    return rc;
}

static inline int echo_cast_op(tand_server *s, int op, int64_t a, int64_t b,
                        int64_t timeout_ms, int flags)
{
    tand_msg m = {0};
    m.op = op;
    m.ival[0] = a;
    m.ival[1] = b;
    return tand_cast(s, &m, timeout_ms, flags);
}

#endif
