/*
** machines.c - the built-in ticket machines ("deluxe" and "counter") as
** servers: message decoding and replies around the pure rules of
** ticket.c. Runs on the server's thread; needs no lock of its own.
*/
#include "internal.h"
#include "ticket.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The bound the built-in machines declare for one callback, so callers
** run them on their own threads: each op is a few hundred instructions
** on the in-memory state. One exceeds it: a deluxe report lists the
** whole queue, a few ns per queued number (a queue of a million numbers
** takes milliseconds). */
#define MACHINE_BOUND_US 50

/* ---- shared: encoded requests ["op", args...] ---- */

typedef struct request {
    tand_reader r;
    const char *op;
    size_t oplen;
    uint32_t nargs;
} request;

static int open_request(const tand_msg *msg, request *q)
{
    tand_item it;
    if (msg->data == NULL || tand_unpack_check(msg->data, msg->size) != 0)
        return TAND_EBADMSG;
    tand_reader_init(&q->r, msg->data, msg->size);
    if (tand_unpack(&q->r, &it) != 0 || it.type != TAND_T_ARRAY ||
        it.v.n == 0 || tand_unpack(&q->r, &it) != 0 ||
        it.type != TAND_T_STR)
        return TAND_EBADREQ;
    q->op = it.v.s.p;
    q->oplen = it.v.s.len;
    return 0;
}

static bool op_is(const request *q, const char *name)
{
    return strlen(name) == q->oplen && memcmp(q->op, name, q->oplen) == 0;
}

/* Reads one optional integer argument; *present says if it was there. */
static int int_arg(request *q, uint32_t nargs, int64_t *v, bool *present)
{
    tand_item it;
    *present = false;
    if (nargs == 0)
        return 0;
    if (tand_unpack(&q->r, &it) != 0)
        return TAND_EBADREQ;
    if (it.type == TAND_T_NIL)
        return 0;
    if (it.type == TAND_T_FLOAT && it.v.f == floor(it.v.f) &&
        it.v.f >= -9.2233720368547758e18 && it.v.f < 9.2233720368547758e18) {
        it.type = TAND_T_INT;
        it.v.i = (int64_t)it.v.f;
    }
    if (it.type != TAND_T_INT)
        return TAND_EBADREQ;
    *v = it.v.i;
    *present = true;
    return 0;
}

static uint32_t count_args(const tand_msg *msg)
{
    tand_reader r;
    tand_item it;
    tand_reader_init(&r, msg->data, msg->size);
    tand_unpack(&r, &it);
    return it.v.n - 1;
}

static void reply_error(tand_msg *reply, int status, const char *detail)
{
    reply->status = status;
    if (detail != NULL)
        tand_msg_set_text(reply, detail, strlen(detail));
}

static void unknown_request(tand_msg *reply, const request *q)
{
    char text[96];
    int n = (int)(q->oplen > 48 ? 48 : q->oplen);
    snprintf(text, sizeof text, "unknown request '%.*s'", n, q->op);
    reply_error(reply, TAND_EBADREQ, text);
}

/* Encodes a list of results into reply->data. */
static void reply_int(tand_msg *reply, int64_t v)
{
    tand_buf b;
    tand_buf_init(&b);
    tand_pack_array(&b, 1);
    tand_pack_int(&b, v);
    if (tand_buf_to_msg(&b, reply) != 0)
        reply->status = TAND_ENOMEM;
}

/* ---- deluxe ---- */

/* What a deluxe request acts on: the queue of a deluxe server, or of a
** tand_tickets answering like one (tand_tickets_handle). */
typedef struct deluxe_state {
    deluxe *d;
    int64_t auto_shutdown_ms;    /* as an idle time: -1 never, 0 at once */
    tand_journal *journal; /* or NULL */
} deluxe_state;

typedef struct deluxe_server {
    deluxe_state st; /* first: the server's state is either */
    deluxe d;
} deluxe_server;

static void say(char *buf, size_t n, const char *text)
{
    if (buf != NULL && n > 0)
        snprintf(buf, n, "%s", text);
}

static int restore_number(void *ud, int64_t number)
{
    return tand__deluxe_append(ud, number) == 0 ? 0 : TAND_EJOURNAL;
}

/* Resumes from the journal, or records the bounds in a fresh one. */
static int deluxe_resume(deluxe_state *st, const tand_deluxe_options *o)
{
    tand_journal *j = st->journal;
    int64_t min, max;
    int found_min, found_max, rc;
    char text[160];
    if (tand_journal_fresh(j)) {
        if ((rc = tand_journal_set_int(j, "min_number", o->min_number)) ||
            (rc = tand_journal_set_int(j, "max_number", o->max_number)))
            return rc;
        return 0;
    }
    if ((rc = tand_journal_get_int(j, "min_number", &min, &found_min)) ||
        (rc = tand_journal_get_int(j, "max_number", &max, &found_max)) ||
        !found_min || !found_max) {
        say(o->error, o->error_size, "the journal has no bounds");
        return TAND_EJOURNAL;
    }
    if (min != o->min_number || max != o->max_number) {
        snprintf(text, sizeof text,
                 "the journal holds the range %lld..%lld, not %lld..%lld",
                 (long long)min, (long long)max, (long long)o->min_number,
                 (long long)o->max_number);
        say(o->error, o->error_size, text);
        return TAND_ECONFIG;
    }
    rc = tand_journal_queue_load(j, restore_number, st->d);
    if (rc != 0)
        say(o->error, o->error_size,
            "the journal's queue does not fit its range");
    return rc;
}

static int deluxe_init(tand_server *self, void *arg, void **state)
{
    const tand_deluxe_options *o = arg;
    deluxe_server *ds = tand__malloc(sizeof *ds);
    deluxe_state *st;
    int rc;
    if (ds == NULL)
        return TAND_ENOMEM;
    st = &ds->st;
    st->d = &ds->d;
    rc = tand__deluxe_init(st->d, o->min_number, o->max_number);
    if (rc != 0) {
        free(ds);
        return rc;
    }
    st->auto_shutdown_ms = tand__idle_of_shutdown(o->auto_shutdown_ms);
    st->journal = tand_server_journal(self);
    if (st->journal != NULL && (rc = deluxe_resume(st, o)) != 0) {
        tand__deluxe_free(st->d);
        free(ds);
        return rc;
    }
    *state = st;
    return 0;
}

/* The built-in operations, journaled when there is a journal. A journal
** write that fails fails the whole batch (see tand.h), so memory and
** journal never disagree in anything a caller is told. */
static int d_queue(deluxe_state *st, int64_t *n)
{
    int rc = tand__deluxe_queue(st->d, n);
    if (rc == 0 && st->journal)
        tand_journal_queue_push(st->journal, *n);
    return rc;
}

static int d_serve(deluxe_state *st, const int64_t *prio, int64_t *n)
{
    int rc = tand__deluxe_serve(st->d, prio, n);
    if (rc == 0 && st->journal)
        tand_journal_queue_remove(st->journal, *n);
    return rc;
}

static void d_reset(deluxe_state *st)
{
    tand__deluxe_reset(st->d);
    if (st->journal)
        tand_journal_queue_clear(st->journal);
}

/* The state as a map, in a one-result array when as_list. */
static void deluxe_report(deluxe_state *st, int as_list, tand_msg *reply)
{
    tand_buf b;
    const ticket *t;
    tand_buf_init(&b);
    if (as_list)
        tand_pack_array(&b, 1);
    tand_pack_map(&b, 4);
    tand_pack_str(&b, "min_number", 10);
    tand_pack_int(&b, st->d->min_number);
    tand_pack_str(&b, "max_number", 10);
    tand_pack_int(&b, st->d->max_number);
    tand_pack_str(&b, "auto_shutdown_timeout", 21);
    if (st->auto_shutdown_ms < 0)
        tand_pack_double(&b, HUGE_VAL);
    else
        tand_pack_int(&b, st->auto_shutdown_ms);
    tand_pack_str(&b, "queue", 5);
    if (st->d->count > UINT32_MAX) {
        tand_buf_free(&b);
        reply_error(reply, TAND_ENOMEM, "queue too long to report");
        return;
    }
    tand_pack_array(&b, (uint32_t)st->d->count);
    for (t = tand__deluxe_first(st->d); t; t = tand__deluxe_next(t))
        tand_pack_int(&b, tand__ticket_number(t));
    if (tand_buf_to_msg(&b, reply) != 0)
        reply->status = TAND_ENOMEM;
}

static void deluxe_serve(deluxe_state *st, const int64_t *prio,
                         tand_msg *reply)
{
    int64_t n;
    reply->status = d_serve(st, prio, &n);
    if (reply->status == 0)
        reply->ival[0] = n;
}

static void deluxe_encoded(deluxe_state *st, const tand_msg *req,
                           tand_msg *reply)
{
    request q;
    uint32_t nargs;
    int rc = open_request(req, &q);
    if (rc != 0) {
        reply_error(reply, rc, "a request is an array {op, args...}");
        return;
    }
    nargs = count_args(req);
    if (op_is(&q, "queue_new_number")) {
        reply->status = d_queue(st, &reply->ival[0]);
    } else if (op_is(&q, "serve_next_queued_number")) {
        int64_t p;
        bool has;
        if (int_arg(&q, nargs, &p, &has) != 0) {
            reply_error(reply, TAND_EBADREQ,
                        "the priority number must be an integer");
            return;
        }
        deluxe_serve(st, has ? &p : NULL, reply);
    } else if (op_is(&q, "report_state")) {
        deluxe_report(st, 1, reply);
        return;
    } else if (op_is(&q, "reset_state")) {
        tand_buf b;
        d_reset(st);
        tand_buf_init(&b);
        tand_pack_array(&b, 1);
        tand_pack_bool(&b, 1);
        if (tand_buf_to_msg(&b, reply) != 0)
            reply->status = TAND_ENOMEM;
        return;
    } else {
        unknown_request(reply, &q);
        return;
    }
    if (reply->status == 0)
        reply_int(reply, reply->ival[0]);
}

static void deluxe_answer(deluxe_state *st, const tand_msg *req,
                          tand_msg *reply)
{
    switch (req->op) {
    case TAND_OP_QUEUE_NEW_NUMBER:
        reply->status = d_queue(st, &reply->ival[0]);
        break;
    case TAND_OP_SERVE_NEXT:
        deluxe_serve(st, req->ival[1] ? &req->ival[0] : NULL, reply);
        break;
    case TAND_OP_REPORT_STATE:
        deluxe_report(st, 1, reply);
        break;
    case TAND_OP_RESET_STATE:
        d_reset(st);
        break;
    case TAND_OP_ENCODED:
        deluxe_encoded(st, req, reply);
        break;
    default:
        reply_error(reply, TAND_EBADREQ, "unknown request code");
        break;
    }
}

static int deluxe_call(void *state, tand_server *self, tand_msg *req,
                       tand_from *from, tand_msg *reply)
{
    (void)self;
    (void)from;
    deluxe_answer(state, req, reply);
    return 0;
}

static void deluxe_cast_in(deluxe_state *st, const tand_msg *msg)
{
    request q;
    if (msg->op == TAND_OP_RESET_STATE ||
        (msg->op == TAND_OP_ENCODED && open_request(msg, &q) == 0 &&
         op_is(&q, "reset_state")))
        d_reset(st);
    /* Any other cast is ignored, like an unexpected message. */
}

static void deluxe_cast(void *state, tand_server *self, tand_msg *msg)
{
    (void)self;
    deluxe_cast_in(state, msg);
}

void tand_tickets_handle(tand_tickets *t, tand_journal *j,
                         int64_t auto_shutdown_ms, const tand_msg *req,
                         tand_msg *reply)
{
    deluxe_state st;
    st.d = tand__tickets_deluxe(t);
    st.auto_shutdown_ms = tand__idle_of_shutdown(auto_shutdown_ms);
    st.journal = j;
    if (reply != NULL)
        deluxe_answer(&st, req, reply);
    else
        deluxe_cast_in(&st, req);
}

static void deluxe_terminate(void *state, tand_server *self, int reason,
                             const char *detail)
{
    deluxe_state *st = state;
    (void)self;
    (void)reason;
    (void)detail;
    if (st != NULL) {
        tand__deluxe_free(st->d);
        free(st); /* the deluxe_server it begins */
    }
}

static const tand_behaviour deluxe_behaviour = {
    .name = "deluxe",
    .init = deluxe_init,
    .handle_call = deluxe_call,
    .handle_cast = deluxe_cast, /* infos are ignored */
    .terminate = deluxe_terminate};

void tand_deluxe_options_init(tand_deluxe_options *o)
{
    memset(o, 0, sizeof *o);
}

void tand_counter_options_init(tand_counter_options *o)
{
    memset(o, 0, sizeof *o);
}

int64_t tand__idle_of_shutdown(int64_t auto_shutdown_ms)
{
    if (auto_shutdown_ms == 0 || auto_shutdown_ms == TAND_FOREVER)
        return -1;
    return auto_shutdown_ms == TAND_SHUTDOWN_AT_ONCE ? 0 : auto_shutdown_ms;
}

/* The failure of a start before its server: says why in error. */
static int refuse(char *error, size_t n, int rc, const char *why)
{
    say(error, n, why);
    return rc;
}

int tand_deluxe_start(tand_runtime *rt, const tand_deluxe_options *o,
                      tand_server **out)
{
    tand_server_options so;
    tand_deluxe_options d;
    int64_t idle_ms;
    int rc;
    if (out != NULL)
        *out = NULL;
    if (o == NULL)
        return TAND_EINVAL;
    say(o->error, o->error_size, "");
    if (rt == NULL || out == NULL)
        return refuse(o->error, o->error_size, TAND_EINVAL,
                      "a NULL runtime or out");
    d = *o; /* init reads the bounds from here */
    if (d.min_number == 0 && d.max_number == 0) {
        d.min_number = 1;
        d.max_number = INT64_MAX;
    }
    if (d.min_number >= d.max_number)
        return refuse(o->error, o->error_size, TAND_ECONFIG,
                      "min_number must be below max_number");
    if (d.auto_shutdown_ms < TAND_SHUTDOWN_AT_ONCE)
        return refuse(o->error, o->error_size, TAND_ECONFIG,
                      "auto_shutdown_ms must be > 0, 0 or TAND_FOREVER "
                      "(never) or TAND_SHUTDOWN_AT_ONCE");
    idle_ms = tand__idle_of_shutdown(d.auto_shutdown_ms);
    memset(&so, 0, sizeof so);
    so.behaviour = &deluxe_behaviour;
    so.arg = &d;
    so.name = o->name;
    so.mailbox_capacity = o->mailbox_capacity;
    so.journal = o->journal;
    so.durability = o->durability;
    so.error = o->error;
    so.error_size = o->error_size;
    so.bound_us = MACHINE_BOUND_US;
    rc = tand_server_start(rt, &so, out);
    if (rc == 0 && idle_ms >= 0)
        tand_server_set_idle(*out, idle_ms, TAND_IDLE_STOP);
    return rc;
}

int tand_deluxe_queue(tand_server *s, int64_t *number, int64_t timeout_ms)
{
    tand_msg req = {0}, reply;
    int rc;
    req.op = TAND_OP_QUEUE_NEW_NUMBER;
    rc = tand_call(s, &req, &reply, timeout_ms, 0);
    if (rc == 0 && number != NULL)
        *number = reply.ival[0];
    tand_msg_clear(&reply);
    return rc;
}

int tand_deluxe_serve(tand_server *s, const int64_t *priority,
                      int64_t *number, int64_t timeout_ms)
{
    tand_msg req = {0}, reply;
    int rc;
    req.op = TAND_OP_SERVE_NEXT;
    if (priority != NULL) {
        req.ival[0] = *priority;
        req.ival[1] = 1;
    }
    rc = tand_call(s, &req, &reply, timeout_ms, 0);
    if (rc == 0 && number != NULL)
        *number = reply.ival[0];
    tand_msg_clear(&reply);
    return rc;
}

/* ---- counter ---- */

typedef struct counter_state {
    int64_t current;
    char *last_caller; /* MessagePack, or NULL for nil */
    size_t last_size;
    tand_journal *journal;
} counter_state;

static int counter_init(tand_server *self, void *arg, void **state)
{
    const tand_counter_options *o = arg;
    counter_state *st = tand__calloc(1, sizeof *st);
    int rc = 0, found;
    if (st == NULL)
        return TAND_ENOMEM;
    st->current = o->initial_number;
    st->journal = tand_server_journal(self);
    if (st->journal != NULL) {
        if (tand_journal_fresh(st->journal))
            rc = tand_journal_set_int(st->journal, "current_number",
                                      st->current);
        else if ((rc = tand_journal_get_int(st->journal, "current_number",
                                            &st->current, &found)) == 0 &&
                 found)
            rc = tand_journal_get_blob(st->journal, "last_caller",
                                       &st->last_caller, &st->last_size,
                                       &found);
        else if (rc == 0)
            rc = TAND_EJOURNAL;
        if (rc != 0) {
            say(o->error, o->error_size, "the journal has no counter");
            free(st->last_caller);
            free(st);
            return rc;
        }
    }
    *state = st;
    return 0;
}

/* Takes the caller value out of msg (MessagePack in data, or NULL). */
static int counter_next(counter_state *st, char *caller, size_t size,
                        tand_msg *reply)
{
    if (st->current == INT64_MAX) {
        free(caller);
        reply_error(reply, TAND_EFULL, "the counter is at its maximum");
        return -1;
    }
    reply->ival[0] = st->current++;
    free(st->last_caller);
    st->last_caller = caller;
    st->last_size = size;
    if (st->journal != NULL) {
        tand_journal_set_int(st->journal, "current_number", st->current);
        tand_journal_set_blob(st->journal, "last_caller", caller, size);
    }
    return 0;
}

static int copy_bytes(const char *p, size_t n, char **out)
{
    *out = NULL;
    if (n == 0)
        return 0;
    if ((*out = tand__malloc(n)) == NULL)
        return TAND_ENOMEM;
    memcpy(*out, p, n);
    return 0;
}

static void counter_encoded(counter_state *st, tand_msg *req,
                            tand_msg *reply)
{
    request q;
    tand_buf b;
    int rc = open_request(req, &q);
    if (rc != 0) {
        reply_error(reply, rc, "a request is an array {op, args...}");
        return;
    }
    tand_buf_init(&b);
    if (op_is(&q, "next")) {
        /* The caller is whatever follows the op, or nil. */
        const char *start = q.r.p;
        char *caller;
        size_t n = (size_t)(q.r.end - start);
        uint32_t nargs = count_args(req);
        if (nargs > 1) {
            reply_error(reply, TAND_EBADREQ, "next takes one argument");
            return;
        }
        if (nargs == 1) {
            tand_reader r = q.r;
            tand_item it;
            tand_unpack(&r, &it);
            if (it.type == TAND_T_NIL)
                n = 0;
        }
        if (copy_bytes(start, n, &caller) != 0) {
            reply->status = TAND_ENOMEM;
            return;
        }
        if (counter_next(st, caller, n, reply) != 0)
            return;
        tand_pack_array(&b, 1);
        tand_pack_int(&b, reply->ival[0]);
    } else if (op_is(&q, "report")) {
        tand_pack_array(&b, 2);
        tand_pack_int(&b, st->current);
        if (st->last_caller == NULL)
            tand_pack_nil(&b);
        else
            tand_pack_raw(&b, st->last_caller, st->last_size);
    } else {
        unknown_request(reply, &q);
        return;
    }
    if (tand_buf_to_msg(&b, reply) != 0)
        reply->status = TAND_ENOMEM;
}

static int counter_call(void *state, tand_server *self, tand_msg *req,
                        tand_from *from, tand_msg *reply)
{
    counter_state *st = state;
    (void)self;
    (void)from;
    switch (req->op) {
    case TAND_OP_NEXT:
        if (req->data != NULL &&
            tand_unpack_check(req->data, req->size) != 0) {
            reply_error(reply, TAND_EBADMSG, "the caller is not valid");
            break;
        }
        counter_next(st, req->data, req->data ? req->size : 0, reply);
        req->data = NULL; /* kept as last_caller (or freed) */
        req->size = 0;
        break;
    case TAND_OP_REPORT:
        reply->ival[0] = st->current;
        if (copy_bytes(st->last_caller, st->last_size, &reply->data) != 0)
            reply->status = TAND_ENOMEM;
        else
            reply->size = st->last_size;
        break;
    case TAND_OP_ENCODED:
        counter_encoded(st, req, reply);
        break;
    default:
        reply_error(reply, TAND_EBADREQ, "unknown request code");
        break;
    }
    return 0;
}

static void counter_terminate(void *state, tand_server *self, int reason,
                              const char *detail)
{
    counter_state *st = state;
    (void)self;
    (void)reason;
    (void)detail;
    if (st != NULL) {
        free(st->last_caller);
        free(st);
    }
}

static const tand_behaviour counter_behaviour = {
    .name = "counter",
    .init = counter_init,
    .handle_call = counter_call,
    .terminate = counter_terminate};

int tand_counter_start(tand_runtime *rt, const tand_counter_options *o,
                       tand_server **out)
{
    tand_server_options so;
    if (out != NULL)
        *out = NULL;
    if (o == NULL)
        return TAND_EINVAL;
    say(o->error, o->error_size, "");
    if (rt == NULL || out == NULL)
        return refuse(o->error, o->error_size, TAND_EINVAL,
                      "a NULL runtime or out");
    memset(&so, 0, sizeof so);
    so.behaviour = &counter_behaviour;
    so.arg = (void *)o;
    so.name = o->name;
    so.mailbox_capacity = o->mailbox_capacity;
    so.journal = o->journal;
    so.durability = o->durability;
    so.error = o->error;
    so.error_size = o->error_size;
    so.bound_us = MACHINE_BOUND_US;
    return tand_server_start(rt, &so, out);
}
