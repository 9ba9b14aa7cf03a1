/*
** test_requests.c - requests a server sends (tand_send_request): replies
** by tag to handle_reply, a deadline that passes while the callee never
** answers, callers of the asking server not held up meanwhile, many
** requests to many servers, a full mailbox, a crashed callee, asking
** itself, an asker that ends with requests in flight, more replies than
** one turn takes, a pumped runtime, and the calls that are refused.
*/
#include "check.h"
#include "echo.h"

#include <pthread.h>
#include <stdbool.h>

static tand_runtime *rt;

/* ---- the asker: sends requests from its handler, logs their replies ---- */

enum {
    ASK = 100 + 1,   /* ival[0] callee id, ival[1] packs op (high 32 bits)
                     ** and argument; data: the timeout as text. Reply
                     ** ival[0] = the tag sent, status = the send's */
    ASK_MANY = 102,  /* ival[0] callee id, ival[1] count: ECHO each */
    ASK_SELF = 103,  /* ECHO ival[0] asked of itself */
    PING = 104       /* replies at once */
};

#define LOG_MAX 20000

typedef struct asked {
    atomic_int n;                /* replies logged */
    uint64_t tag[LOG_MAX];
    int status[LOG_MAX];
    int64_t value[LOG_MAX];
    int64_t at_ms[LOG_MAX];
    atomic_int terminated;
} asked;

typedef struct asker {
    asked *log;
    uint64_t next_tag;
    int64_t timeout_ms;
} asker;

static int asker_init(tand_server *self, void *arg, void **state)
{
    asker *a = calloc(1, sizeof *a);
    (void)self;
    if (a == NULL)
        return TAND_ENOMEM;
    a->log = arg;
    a->timeout_ms = 5000;
    *state = a;
    return 0;
}

static int ask(asker *a, tand_server *self, uint64_t callee, int op,
               int64_t arg, int64_t timeout_ms, uint64_t *tag)
{
    tand_server *to;
    tand_msg req = {0};
    int rc = tand_server_lookup(tand_server_runtime(self), callee, &to);
    if (rc != 0)
        return rc;
    req.op = op;
    req.ival[0] = arg;
    *tag = ++a->next_tag;
    rc = tand_send_request(self, to, &req, timeout_ms, *tag);
    tand_server_release(to);
    return rc;
}

static int asker_call(void *state, tand_server *self, tand_msg *req,
                      tand_from *from, tand_msg *reply)
{
    asker *a = state;
    uint64_t tag = 0;
    tand_msg m = {0};
    int64_t i;
    (void)from;
    switch (req->op) {
    case ASK:
        reply->status = ask(a, self, (uint64_t)req->ival[0],
                            (int)(req->ival[1] >> 32),
                            req->ival[1] & 0xffffffff,
                            req->data ? atoll(req->data) : a->timeout_ms,
                            &tag);
        reply->ival[0] = (int64_t)tag;
        return 0;
    case ASK_MANY:
        for (i = 0; i < req->ival[1]; i++) {
            int rc = ask(a, self, (uint64_t)req->ival[0], ECHO, i,
                         a->timeout_ms, &tag);
            if (rc != 0) {
                reply->status = rc;
                break;
            }
        }
        reply->ival[0] = i;
        return 0;
    case ASK_SELF:
        m.op = PING;
        m.ival[0] = req->ival[0];
        reply->ival[0] = (int64_t)++a->next_tag;
        reply->status = tand_send_request(self, self, &m, 1000,
                                          a->next_tag);
        return 0;
    case PING:
        reply->ival[0] = req->ival[0];
        return 0;
    default:
        reply->status = TAND_EBADREQ;
        return 0;
    }
}

static void asker_reply(void *state, tand_server *self, uint64_t tag,
                        tand_msg *reply)
{
    asker *a = state;
    int i = atomic_load(&a->log->n);
    (void)self;
    if (i >= LOG_MAX)
        return;
    a->log->tag[i] = tag;
    a->log->status[i] = reply->status;
    a->log->value[i] = reply->ival[0];
    a->log->at_ms[i] = tand_now_ms();
    atomic_store(&a->log->n, i + 1);
}

static void asker_terminate(void *state, tand_server *self, int reason,
                            const char *detail)
{
    asker *a = state;
    (void)self, (void)reason, (void)detail;
    atomic_fetch_add(&a->log->terminated, 1);
    free(a);
}

static const tand_behaviour asker_behaviour = {
    .name = "asker",
    .init = asker_init,
    .handle_call = asker_call,
    .terminate = asker_terminate,
    .handle_reply = asker_reply};

static tand_server *start_asker(tand_runtime *r, asked *log)
{
    tand_server_options o;
    tand_server *s = NULL;
    memset(&o, 0, sizeof o);
    o.behaviour = &asker_behaviour;
    o.arg = log;
    CHECK_OK(tand_server_start(r, &o, &s));
    return s;
}

static tand_server *start_echo(tand_runtime *r, echo_shared *sh,
                               size_t capacity)
{
    tand_server *s = NULL;
    CHECK_OK(echo_start(r, sh, capacity, NULL, &s));
    return s;
}

/* Calls the asker with op and returns the reply's ival[0], checking the
** call's status is `want`. */
static int64_t call_asker(tand_server *a, int op, int64_t x, int64_t y,
                          const char *timeout, int want)
{
    tand_msg req = {0}, reply;
    int64_t got;
    req.op = op;
    req.ival[0] = x;
    req.ival[1] = y;
    if (timeout != NULL)
        tand_msg_set_text(&req, timeout, strlen(timeout));
    CHECK_RC(tand_call(a, &req, &reply, 5000, 0), want);
    got = reply.ival[0];
    tand_msg_clear(&reply);
    return got;
}

static int64_t packed(int op, int64_t arg)
{
    return ((int64_t)op << 32) | arg;
}

/* The index of tag in the log, or -1. */
static int logged(asked *log, uint64_t tag)
{
    int i, n = atomic_load(&log->n);
    for (i = 0; i < n; i++)
        if (log->tag[i] == tag)
            return i;
    return -1;
}

static void replies_come_by_tag(void)
{
    static asked log;
    echo_shared sh = {0};
    tand_server *e = start_echo(rt, &sh, 0), *a = start_asker(rt, &log);
    uint64_t t1, t2;
    int i;
    t1 = (uint64_t)call_asker(a, ASK, (int64_t)tand_server_id(e),
                              packed(ECHO, 41), NULL, 0);
    t2 = (uint64_t)call_asker(a, ASK, (int64_t)tand_server_id(e),
                              packed(ECHO, 42), NULL, 0);
    CHECK(t1 != t2);
    WAIT_FOR(atomic_load(&log.n) == 2, 5000);
    CHECK_INT(atomic_load(&log.n), 2);
    CHECK((i = logged(&log, t1)) >= 0);
    if (i >= 0) {
        CHECK_RC(log.status[i], 0);
        CHECK_INT(log.value[i], 41);
    }
    CHECK((i = logged(&log, t2)) >= 0);
    if (i >= 0)
        CHECK_INT(log.value[i], 42);
    tand_server_stop(a, 0, NULL, 5000);
    tand_server_stop(e, 0, NULL, 5000);
    tand_server_release(a);
    tand_server_release(e);
}

/* The callee keeps the call and never answers: the asker hears timeout
** at the deadline, and the callee's late answer goes nowhere. */
static void deadline_without_an_answer(void)
{
    static asked log;
    echo_shared sh = {0};
    tand_server *e = start_echo(rt, &sh, 0), *a = start_asker(rt, &log);
    tand_msg req = {0}, reply;
    int64_t t0 = tand_now_ms();
    uint64_t tag = (uint64_t)call_asker(a, ASK, (int64_t)tand_server_id(e),
                                        packed(DEFER, 0), "200", 0);
    int i;
    WAIT_FOR(atomic_load(&log.n) == 1, 5000);
    CHECK_INT(atomic_load(&log.n), 1);
    CHECK((i = logged(&log, tag)) >= 0);
    if (i >= 0) {
        CHECK_RC(log.status[i], TAND_ETIMEDOUT);
        CHECK(log.at_ms[i] - t0 >= 190);
        CHECK(log.at_ms[i] - t0 < 3000);
    }
    /* the kept caller gave up: answering it fails, nothing more comes */
    req.op = ANSWER;
    req.ival[0] = 7;
    CHECK_OK(tand_call(e, &req, &reply, 5000, 0));
    CHECK_RC((int)reply.ival[1], TAND_ETIMEDOUT);
    tand_msg_clear(&reply);
    call_asker(a, PING, 0, 0, NULL, 0); /* one more turn of the asker */
    CHECK_INT(atomic_load(&log.n), 1);
    tand_server_stop(a, 0, NULL, 5000);
    tand_server_stop(e, 0, NULL, 5000);
    tand_server_release(a);
    tand_server_release(e);
}

/* While a request runs 300 ms in the callee, the asker answers its own
** callers at once. */
static void callers_not_held(void)
{
    static asked log;
    echo_shared sh = {0};
    tand_server *e = start_echo(rt, &sh, 0), *a = start_asker(rt, &log);
    int64_t t0, worst = 0;
    int i;
    call_asker(a, ASK, (int64_t)tand_server_id(e), packed(SLEEP, 300), NULL,
               0);
    WAIT_FOR(atomic_load(&sh.handled_sleeps) == 1, 5000);
    for (i = 0; i < 20; i++) {
        t0 = tand_now_ms();
        CHECK_INT(call_asker(a, PING, i, 0, NULL, 0), i);
        if (tand_now_ms() - t0 > worst)
            worst = tand_now_ms() - t0;
    }
    CHECK_INT(atomic_load(&log.n), 0); /* still asleep: it answered us */
    CHECK(worst < 250);
    WAIT_FOR(atomic_load(&log.n) == 1, 5000);
    CHECK_INT(atomic_load(&log.n), 1);
    CHECK_INT(log.value[0], 300);
    tand_server_stop(a, 0, NULL, 5000);
    tand_server_stop(e, 0, NULL, 5000);
    tand_server_release(a);
    tand_server_release(e);
}

/* 4 callees, 500 requests each, sent in one go: every tag comes back
** once, with its own value; more than one turn's worth of replies. */
static void many_to_many(void)
{
    static asked log;
    static bool seen[4 * 500 + 1];
    echo_shared sh[4] = {{0}};
    tand_server *e[4], *a = start_asker(rt, &log);
    int i, n, dup = 0, wrong = 0;
    for (i = 0; i < 4; i++)
        e[i] = start_echo(rt, &sh[i], 1000);
    for (i = 0; i < 4; i++)
        CHECK_INT(call_asker(a, ASK_MANY, (int64_t)tand_server_id(e[i]), 500,
                             NULL, 0),
                  500);
    WAIT_FOR(atomic_load(&log.n) == 2000, 10000);
    n = atomic_load(&log.n);
    CHECK_INT(n, 2000);
    for (i = 0; i < n; i++) {
        uint64_t t = log.tag[i];
        if (t < 1 || t > 2000 || seen[t])
            dup++;
        else
            seen[t] = true;
        /* the tags of callee k are 500k+1 .. 500k+500, values 0..499 */
        if (t >= 1 && t <= 2000 &&
            (log.status[i] != 0 || log.value[i] != (int64_t)((t - 1) % 500)))
            wrong++;
    }
    CHECK_INT(dup, 0);
    CHECK_INT(wrong, 0);
    tand_server_stop(a, 0, NULL, 5000);
    for (i = 0; i < 4; i++) {
        tand_server_stop(e[i], 0, NULL, 5000);
        tand_server_release(e[i]);
    }
    tand_server_release(a);
}

/* A request never waits for room: a full mailbox is busy at once. */
static void full_mailbox_is_busy(void)
{
    static asked log;
    echo_shared sh = {0};
    tand_server *e = start_echo(rt, &sh, 1), *a = start_asker(rt, &log);
    tand_msg gate = {0};
    int64_t t0;
    gate.op = GATE;
    gate.ival[0] = 5000;
    CHECK_OK(tand_cast(e, &gate, 1000, 0)); /* it runs this, */
    WAIT_FOR(atomic_load(&sh.at_gate) == 1, 5000);
    gate.op = ECHO;
    CHECK_OK(tand_cast(e, &gate, 1000, 0)); /* and this fills it */
    t0 = tand_now_ms();
    call_asker(a, ASK, (int64_t)tand_server_id(e), packed(ECHO, 1), NULL,
               TAND_EBUSY);
    CHECK(tand_now_ms() - t0 < 1000);
    atomic_store(&sh.gate, 1);
    call_asker(a, PING, 0, 0, NULL, 0);
    CHECK_INT(atomic_load(&log.n), 0); /* a refused send has no reply */
    tand_server_stop(a, 0, NULL, 5000);
    tand_server_stop(e, 0, NULL, 5000);
    tand_server_release(a);
    tand_server_release(e);
}

static void crashed_callee(void)
{
    static asked log;
    echo_shared sh = {0};
    tand_server *e = start_echo(rt, &sh, 0), *a = start_asker(rt, &log);
    uint64_t tag = (uint64_t)call_asker(a, ASK, (int64_t)tand_server_id(e),
                                        packed(CRASH, 0), NULL, 0);
    uint64_t gone;
    int i;
    WAIT_FOR(atomic_load(&log.n) == 1, 5000);
    CHECK((i = logged(&log, tag)) >= 0);
    if (i >= 0)
        CHECK_RC(log.status[i], TAND_ECRASHED);
    WAIT_FOR(atomic_load(&sh.terminated) == 1, 5000);
    /* an ended callee: refused at the send */
    gone = tand_server_id(e);
    call_asker(a, ASK, (int64_t)gone, packed(ECHO, 1), NULL, TAND_ENOPROC);
    tand_server_stop(a, 0, NULL, 5000);
    tand_server_release(a);
    tand_server_release(e);
}

static void asks_itself(void)
{
    static asked log;
    tand_server *a = start_asker(rt, &log);
    uint64_t tag = (uint64_t)call_asker(a, ASK_SELF, 9, 0, NULL, 0);
    int i;
    WAIT_FOR(atomic_load(&log.n) == 1, 5000);
    CHECK((i = logged(&log, tag)) >= 0);
    if (i >= 0) {
        CHECK_RC(log.status[i], 0);
        CHECK_INT(log.value[i], 9);
    }
    tand_server_stop(a, 0, NULL, 5000);
    tand_server_release(a);
}

/* The asker ends with requests queued and running: they are abandoned,
** the callee's replies go nowhere, nothing leaks or crashes. */
static void asker_ends_in_flight(void)
{
    static asked log;
    echo_shared sh = {0};
    tand_server *e = start_echo(rt, &sh, 0), *a = start_asker(rt, &log);
    tand_msg req = {0}, reply;
    int i;
    for (i = 0; i < 3; i++)
        call_asker(a, ASK, (int64_t)tand_server_id(e), packed(GATE, 5000),
                   NULL, 0);
    call_asker(a, ASK, (int64_t)tand_server_id(e), packed(DEFER, 0), "-1",
               0);
    WAIT_FOR(atomic_load(&sh.at_gate) == 1, 5000);
    CHECK_OK(tand_server_stop(a, 0, NULL, 5000));
    CHECK_INT(atomic_load(&log.terminated), 1);
    atomic_store(&sh.gate, 1);
    /* the callee skips what it had not started, then the DEFER */
    req.op = ANSWER;
    req.ival[0] = 1;
    CHECK_OK(tand_call(e, &req, &reply, 5000, 0));
    tand_msg_clear(&reply);
    CHECK(atomic_load(&sh.at_gate) < 3);
    CHECK_INT(atomic_load(&log.n), 0);
    tand_server_stop(e, 0, NULL, 5000);
    tand_server_release(a);
    tand_server_release(e);
}

static void refused_sends(void)
{
    static asked log;
    echo_shared sh = {0};
    tand_server *e = start_echo(rt, &sh, 0), *a = start_asker(rt, &log);
    tand_msg req = {0};
    req.op = ECHO;
    /* not from a handler of the asker */
    CHECK_RC(tand_send_request(a, e, &req, 1000, 1), TAND_EINVAL);
    CHECK_RC(tand_send_request(NULL, e, &req, 1000, 1), TAND_EINVAL);
    CHECK_RC(tand_send_request(a, NULL, &req, 1000, 1), TAND_EINVAL);
    CHECK_RC(tand_send_request(a, e, NULL, 1000, 1), TAND_EINVAL);
    /* echo has no handle_reply: a handler of it may not send requests */
    req.data = strdup("payload"); /* consumed on the refusal */
    req.size = 7;
    CHECK_RC(tand_send_request(e, a, &req, 1000, 1), TAND_EINVAL);
    CHECK(req.data == NULL);
    tand_server_stop(a, 0, NULL, 5000);
    tand_server_stop(e, 0, NULL, 5000);
    tand_server_release(a);
    tand_server_release(e);
}

/* With no workers the pump delivers the replies, and the deadline too. */
static void pumped_runtime(void)
{
    static asked log;
    tand_runtime_options ro = {TAND_PUMPED};
    tand_runtime *p = NULL;
    echo_shared sh = {0};
    tand_server *e, *a;
    tand_msg req = {0}, reply;
    int64_t until;
    ro.workers = TAND_PUMPED;
    CHECK_OK(tand_runtime_new(&ro, &p));
    e = start_echo(p, &sh, 0);
    a = start_asker(p, &log);
    req.op = ASK;
    req.ival[0] = (int64_t)tand_server_id(e);
    req.ival[1] = packed(ECHO, 5);
    CHECK_OK(tand_call(a, &req, &reply, 5000, 0));
    req.op = ASK;
    req.ival[0] = (int64_t)tand_server_id(e);
    req.ival[1] = packed(DEFER, 0);
    tand_msg_set_text(&req, "100", 3);
    CHECK_OK(tand_call(a, &req, &reply, 5000, 0));
    until = tand_now_ms() + 5000;
    while (atomic_load(&log.n) < 2 && tand_now_ms() < until) {
        tand_runtime_pump(p, 1000);
        sleep_ms(1);
    }
    CHECK_INT(atomic_load(&log.n), 2);
    CHECK_RC(log.status[0], 0);
    CHECK_INT(log.value[0], 5);
    CHECK_RC(log.status[1], TAND_ETIMEDOUT);
    tand_server_release(a);
    tand_server_release(e);
    tand_runtime_free(p);
}

int main(void)
{
    CHECK_OK(tand_runtime_new(NULL, &rt));
    replies_come_by_tag();
    deadline_without_an_answer();
    callers_not_held();
    many_to_many();
    full_mailbox_is_busy();
    crashed_callee();
    asks_itself();
    asker_ends_in_flight();
    refused_sends();
    pumped_runtime();
    tand_runtime_free(rt);
    return check_done("test_requests");
}
