/*
** supervisor.c - OTP-style supervisors: a server that starts children,
** monitors them and restarts them by a strategy within an intensity, and
** whose child list changes at run time (start, terminate, restart and
** delete a child, as OTP's supervisor module does).
**
** DESIGN: a supervisor is an ordinary server; its state (the child list,
** in start order) is touched only on its own thread, where children are
** started, stopped and restarted; stopping one waits for its end, which
** the engine allows by starting a spare worker. The dynamic operations
** are calls into it (ops below, handled by sup_call).
** It learns of a child's end from the engine's DOWN notice (tand_monitor),
** tagged with a serial the supervisor gives each incarnation it starts
** and never reuses. A child's entry holds its current incarnation's tag,
** and a notice is looked up by scanning for it, so the notice of an
** incarnation the supervisor stopped itself (to restart it, to terminate
** it, or at shutdown), or of a child whose entry was deleted, matches
** nothing and is ignored, however the list has shifted since.
** A spec handed to tand_supervisor_start_child crosses threads in a
** carrier (see "carriers" below) that both sides reach only through a
** process-wide table under one leaf mutex, so that exactly one of them
** owns its arg whatever the caller's deadline does.
*/
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long a supervisor waits for a child to stop before going on. */
#define CHILD_STOP_MS 5000
#define MAX_CHILDREN 100000

/* The supervisor's calls (req->op), in the range tand.h keeps for tand's
** own (TAND_OP_RESERVED_*); private to this file. Names travel
** in req->data as text; replies with a list or counts carry a plain C
** array in reply->data (these replies never leave the process). */
enum {
    OP_WHICH = 110,     /* reply data: tand_child_info[n] */
    OP_START = 111,     /* ival[0]: a carrier's serial */
    OP_TERMINATE = 112, /* data: the name */
    OP_RESTART = 113,   /* data: the name; ival[0]: a carrier or 0 */
    OP_DELETE = 114,    /* data: the name */
    OP_COUNT = 115      /* reply data: one tand_child_counts */
};

typedef struct child {
    char *name;
    int restart;
    int (*start)(tand_runtime *, const char *, void *, tand_server **);
    void *arg;
    void (*free_arg)(void *);
    tand_server *s;   /* the current incarnation, or NULL */
    int64_t tag;      /* its monitor tag (the supervisor's serial), or 0 */
    uint64_t restarts;
    bool is_sup;      /* its last incarnation was a supervisor */
} child;

typedef struct sup {
    tand_server *self;
    int strategy, max_restarts;
    int64_t window_ns;
    int64_t *stamps; /* times of recent restarts, oldest first */
    int nstamps;
    child *c;        /* in start order */
    size_t n, cap;
    int64_t next_tag; /* the last incarnation's tag; never reused */
    bool ready;      /* the first children have been started */
    bool *adopted;   /* set by init: the server owns the state from then */
} sup;

static const tand_behaviour sup_behaviour;

/* ---- carriers ----
** A start_child call's spec (and a restart's new incarnation) in
** transit. The caller makes the carrier, puts it in the table and sends
** its serial; the supervisor, handling the call, looks the serial up and
** marks the carrier claimed, copying the spec out, all under pending_mu.
** Once tand_call has returned, however it did (a reply, its deadline
** before or during the handling, a supervisor that ended), the caller
** takes the carrier out of the table under the same mutex: if it was not
** claimed the supervisor never will (it finds no such serial: serials are
** never reused, so no ABA), and the arg is the caller's to free; if it
** was, it is the supervisor's. Only the caller frees the carrier. The
** supervisor hands the new incarnation back the same way: a reference
** stored in the carrier if it is still in the table, else released. */
typedef struct carrier {
    struct carrier *next, *prev; /* guarded by pending_mu */
    uint64_t serial;
    bool claimed;                /* guarded by pending_mu */
    tand_server *started;        /* guarded by pending_mu: a reference */
    const tand_child_spec *spec; /* the caller's; read under pending_mu
                                 ** while the caller waits in tand_call */
} carrier;

static pthread_mutex_t pending_mu = PTHREAD_MUTEX_INITIALIZER;
static carrier *pending;       /* guarded by pending_mu */
static uint64_t pending_serial; /* guarded by pending_mu */

static void carrier_put(carrier *k, const tand_child_spec *spec)
{
    memset(k, 0, sizeof *k);
    k->spec = spec;
    pthread_mutex_lock(&pending_mu);
    k->serial = ++pending_serial;
    k->next = pending;
    if (pending != NULL)
        pending->prev = k;
    pending = k;
    pthread_mutex_unlock(&pending_mu);
}

/* Caller side, after its call: takes k out of the table. Returns whether
** the supervisor claimed it; *started gets the reference stored in it. */
static bool carrier_take(carrier *k, tand_server **started)
{
    bool claimed;
    pthread_mutex_lock(&pending_mu);
    if (k->prev != NULL)
        k->prev->next = k->next;
    else
        pending = k->next;
    if (k->next != NULL)
        k->next->prev = k->prev;
    claimed = k->claimed;
    *started = k->started;
    pthread_mutex_unlock(&pending_mu);
    return claimed;
}

/* With pending_mu held: the carrier of serial, or NULL once its caller
** has given up. */
static carrier *carrier_find(uint64_t serial)
{
    carrier *k;
    for (k = pending; k != NULL; k = k->next)
        if (k->serial == serial)
            return k;
    return NULL;
}

/* Supervisor side: claims the carrier of serial, copying its spec into
** *spec and its name into name. false when its caller has given up. */
static bool carrier_claim(uint64_t serial, tand_child_spec *spec, char *name)
{
    carrier *k;
    pthread_mutex_lock(&pending_mu);
    k = carrier_find(serial);
    if (k != NULL) {
        k->claimed = true;
        *spec = *k->spec;
        strcpy(name, k->spec->name); /* checked: <= TAND_NAME_MAX */
        spec->name = name;
    }
    pthread_mutex_unlock(&pending_mu);
    return k != NULL;
}

/* Supervisor side: hands a new reference on s to the carrier's caller if
** it still waits, else drops it. */
static void carrier_give(uint64_t serial, tand_server *s)
{
    carrier *k;
    tand_server_retain(s);
    pthread_mutex_lock(&pending_mu);
    k = carrier_find(serial);
    if (k != NULL && k->started == NULL) {
        k->started = s;
        s = NULL;
    }
    pthread_mutex_unlock(&pending_mu);
    tand_server_release(s);
}

/* ---- the child list ---- */

void tand_supervisor_options_init(tand_supervisor_options *o)
{
    memset(o, 0, sizeof *o);
    o->strategy = TAND_ONE_FOR_ONE;
    o->max_restarts = 3;
    o->max_seconds = 5;
}

static void sup_free(sup *sv)
{
    size_t i;
    if (sv == NULL)
        return;
    for (i = 0; i < sv->n; i++) {
        if (sv->c[i].free_arg != NULL)
            sv->c[i].free_arg(sv->c[i].arg);
        free(sv->c[i].name);
    }
    free(sv->c);
    free(sv->stamps);
    free(sv);
}

static size_t find_child(const sup *sv, const char *name)
{
    size_t i;
    for (i = 0; i < sv->n; i++)
        if (strcmp(sv->c[i].name, name) == 0)
            return i;
    return SIZE_MAX;
}

/* Removes child i (not running) from the list, freeing its arg. */
static void delete_child(sup *sv, size_t i)
{
    child *c = &sv->c[i];
    if (c->free_arg != NULL)
        c->free_arg(c->arg);
    free(c->name);
    memmove(c, c + 1, (sv->n - i - 1) * sizeof *c);
    sv->n--;
}

static int start_child(sup *sv, size_t i)
{
    child *c = &sv->c[i];
    tand_server *s = NULL;
    int rc = c->start(tand_server_runtime(sv->self), c->name, c->arg, &s);
    if (rc != 0)
        return rc;
    if (s == NULL)
        return TAND_EINVAL;
    c->s = s;
    c->tag = ++sv->next_tag;
    c->is_sup = s->behaviour == &sup_behaviour;
    atomic_store(&s->n_restarts, c->restarts);
    rc = tand__monitor(s, sv->self, c->tag, true);
    if (rc != 0) { /* unwatched, it could not be restarted: stop it */
        tand_server_stop(s, 0, "shutdown", CHILD_STOP_MS);
        tand_server_release(s);
        c->s = NULL;
        c->tag = 0;
    }
    return rc;
}

static void stop_child(sup *sv, size_t i)
{
    child *c = &sv->c[i];
    if (c->s == NULL)
        return;
    c->tag = 0; /* its DOWN notice is now stale */
    tand_server_stop(c->s, 0, "shutdown", CHILD_STOP_MS);
    tand_server_release(c->s);
    c->s = NULL;
}

static void stop_all(sup *sv)
{
    size_t i = sv->n;
    while (i-- > 0)
        stop_child(sv, i);
}

/* Records a restart now; false when it would pass the intensity. */
static bool may_restart(sup *sv)
{
    int64_t now = tand__now_ns();
    int i, keep = 0;
    for (i = 0; i < sv->nstamps; i++)
        if (now - sv->stamps[i] < sv->window_ns)
            sv->stamps[keep++] = sv->stamps[i];
    sv->nstamps = keep;
    if (keep >= sv->max_restarts)
        return false;
    sv->stamps[sv->nstamps++] = now;
    atomic_fetch_add(&sv->self->n_restarts, 1);
    return true;
}

static void give_up(sup *sv)
{
    stop_all(sv);
    tand_server_stop(sv->self, TAND_ECRASHED,
                     "the supervisor reached its restart intensity", 0);
}

/* Child i ended abnormally (or is permanent): restart by the strategy,
** over the child list as it is now. one_for_all and rest_for_one stop
** the others of their range (in reverse order), drop the temporary ones
** among them (OTP does: they are never restarted) and start the rest in
** order, also those that were not running. */
static void restart(sup *sv, size_t i)
{
    size_t first = i, last = i, j;
    if (!may_restart(sv)) {
        give_up(sv);
        return;
    }
    if (sv->strategy == TAND_ONE_FOR_ALL) {
        first = 0;
        last = sv->n - 1;
    } else if (sv->strategy == TAND_REST_FOR_ONE) {
        last = sv->n - 1;
    }
    for (j = last + 1; j-- > first;)
        if (j != i)
            stop_child(sv, j);
    for (j = last + 1; j-- > first;)
        if (j != i && sv->c[j].restart == TAND_TEMPORARY) {
            delete_child(sv, j);
            last--;
            if (j < i)
                i--;
        }
    for (j = first; j <= last; j++) {
        sv->c[j].restarts++;
        while (start_child(sv, j) != 0) {
            if (!may_restart(sv)) {
                give_up(sv);
                return;
            }
        }
    }
}

static void on_down(sup *sv, const tand_msg *m)
{
    int64_t tag = m->ival[0];
    int reason = (int)m->ival[1];
    size_t i;
    child *c;
    if (tag <= 0)
        return;
    for (i = 0; i < sv->n && sv->c[i].tag != tag; i++)
        ;
    if (i == sv->n)
        return; /* an incarnation we stopped ourselves, or deleted */
    c = &sv->c[i];
    tand_server_release(c->s);
    c->s = NULL;
    c->tag = 0;
    if (c->restart == TAND_TEMPORARY) {
        delete_child(sv, i); /* OTP: its spec goes with it */
        return;
    }
    if (c->restart == TAND_TRANSIENT && reason == 0)
        return; /* kept, not running */
    restart(sv, i);
}

/* ---- the supervisor's calls ---- */

static void fail_start(tand_msg *reply, const char *name, int rc)
{
    char text[TAND_NAME_MAX + 64];
    snprintf(text, sizeof text, "child '%s' did not start: %s", name,
             tand_errname(rc));
    reply->status = rc;
    tand_msg_set_text(reply, text, strlen(text));
}

static void init_children(sup *sv, tand_msg *reply)
{
    size_t i;
    for (i = 0; i < sv->n; i++) {
        int rc = start_child(sv, i);
        if (rc != 0) {
            stop_all(sv);
            fail_start(reply, sv->c[i].name, rc);
            return;
        }
    }
    sv->ready = true;
}

static void op_start(sup *sv, const tand_msg *req, tand_msg *reply)
{
    char name[TAND_NAME_MAX + 1];
    uint64_t serial = (uint64_t)req->ival[0];
    tand_child_spec spec;
    size_t i;
    child *c;
    int rc;

    if (!carrier_claim(serial, &spec, name)) {
        reply->status = TAND_ETIMEDOUT; /* its caller has given up */
        return;
    }
    /* the arg is ours from here on */
    if ((i = find_child(sv, name)) != SIZE_MAX) {
        rc = sv->c[i].s != NULL ? TAND_ESTARTED : TAND_EPRESENT;
    } else if (sv->n == MAX_CHILDREN) {
        rc = TAND_ECONFIG;
    } else if (sv->n == sv->cap) {
        size_t cap = sv->cap ? 2 * sv->cap : 4;
        child *grown = tand__realloc(sv->c, cap * sizeof *grown);
        rc = grown != NULL ? 0 : TAND_ENOMEM;
        if (grown != NULL) {
            sv->c = grown;
            sv->cap = cap;
        }
    } else {
        rc = 0;
    }
    c = &sv->c[sv->n];
    if (rc == 0) {
        memset(c, 0, sizeof *c);
        if ((c->name = tand__strdup(name)) == NULL)
            rc = TAND_ENOMEM;
    }
    if (rc != 0) {
        if (spec.free_arg != NULL)
            spec.free_arg(spec.arg);
        reply->status = rc;
        return;
    }
    c->restart = spec.restart;
    c->start = spec.start;
    c->arg = spec.arg;
    c->free_arg = spec.free_arg;
    sv->n++;
    if ((rc = start_child(sv, sv->n - 1)) != 0) {
        fail_start(reply, name, rc);
        sv->n--;
        free(c->name);
        if (c->free_arg != NULL)
            c->free_arg(c->arg);
        return;
    }
    carrier_give(serial, c->s);
}

/* The child named in req, or SIZE_MAX with not_found in reply. */
static size_t named(sup *sv, const tand_msg *req, tand_msg *reply)
{
    size_t i = req->data != NULL ? find_child(sv, req->data) : SIZE_MAX;
    if (i == SIZE_MAX)
        reply->status = TAND_ENOTFOUND;
    return i;
}

static void op_terminate(sup *sv, const tand_msg *req, tand_msg *reply)
{
    size_t i = named(sv, req, reply);
    if (i == SIZE_MAX)
        return;
    stop_child(sv, i);
    if (sv->c[i].restart == TAND_TEMPORARY)
        delete_child(sv, i);
}

static void op_restart(sup *sv, const tand_msg *req, tand_msg *reply)
{
    size_t i = named(sv, req, reply);
    int rc;
    if (i == SIZE_MAX)
        return;
    if (sv->c[i].s != NULL) {
        reply->status = TAND_ERUNNING;
        return;
    }
    /* by hand: no restart of the intensity, nor of the child's count */
    if ((rc = start_child(sv, i)) != 0) {
        fail_start(reply, sv->c[i].name, rc);
        return;
    }
    if (req->ival[0] != 0)
        carrier_give((uint64_t)req->ival[0], sv->c[i].s);
}

static void op_delete(sup *sv, const tand_msg *req, tand_msg *reply)
{
    size_t i = named(sv, req, reply);
    if (i == SIZE_MAX)
        return;
    if (sv->c[i].s != NULL)
        reply->status = TAND_ERUNNING;
    else
        delete_child(sv, i);
}

static bool running(const child *c)
{
    return c->s != NULL && tand_server_alive(c->s);
}

static void op_which(sup *sv, tand_msg *reply)
{
    tand_child_info *list;
    size_t i;
    if (sv->n == 0)
        return;
    if ((list = tand__calloc(sv->n, sizeof *list)) == NULL) {
        reply->status = TAND_ENOMEM;
        return;
    }
    for (i = 0; i < sv->n; i++) {
        const child *c = &sv->c[i];
        strcpy(list[i].name, c->name);
        list[i].restart = c->restart;
        list[i].alive = running(c);
        list[i].restarts = c->restarts;
    }
    reply->data = (char *)list;
    reply->size = sv->n * sizeof *list;
}

static void op_count(sup *sv, tand_msg *reply)
{
    tand_child_counts *k = tand__calloc(1, sizeof *k);
    size_t i;
    if (k == NULL) {
        reply->status = TAND_ENOMEM;
        return;
    }
    k->specs = sv->n;
    for (i = 0; i < sv->n; i++) {
        k->active += running(&sv->c[i]);
        if (sv->c[i].is_sup)
            k->supervisors++;
        else
            k->workers++;
    }
    reply->data = (char *)k;
    reply->size = sizeof *k;
}

static int sup_init(tand_server *self, void *arg, void **state)
{
    sup *sv = arg;
    sv->self = self;
    *sv->adopted = true;
    *state = sv;
    return 0;
}

static int sup_call(void *state, tand_server *self, tand_msg *req,
                    tand_from *from, tand_msg *reply)
{
    sup *sv = state;
    (void)self;
    (void)from;
    if (req->op == TAND_OP_SUPERVISOR_INIT) {
        if (!sv->ready)
            init_children(sv, reply);
        return 0;
    }
    if (!sv->ready && req->op >= OP_WHICH && req->op <= OP_COUNT) {
        reply->status = TAND_ENOPROC; /* not started up yet */
        return 0;
    }
    switch (req->op) {
    case OP_WHICH:
        op_which(sv, reply);
        break;
    case OP_START:
        op_start(sv, req, reply);
        break;
    case OP_TERMINATE:
        op_terminate(sv, req, reply);
        break;
    case OP_RESTART:
        op_restart(sv, req, reply);
        break;
    case OP_DELETE:
        op_delete(sv, req, reply);
        break;
    case OP_COUNT:
        op_count(sv, reply);
        break;
    default:
        reply->status = TAND_EBADREQ;
    }
    return 0;
}

static void sup_info(void *state, tand_server *self, tand_msg *msg)
{
    (void)self;
    if (msg->op == TAND_OP_DOWN)
        on_down(state, msg);
}

static void sup_terminate(void *state, tand_server *self, int reason,
                          const char *detail)
{
    sup *sv = state;
    (void)self;
    (void)reason;
    (void)detail;
    stop_all(sv);
    sup_free(sv);
}

static const tand_behaviour sup_behaviour = {
    .name = "supervisor",
    .init = sup_init,
    .handle_call = sup_call,
    .handle_info = sup_info,
    .terminate = sup_terminate};

static void free_args(const tand_child_spec *children, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (children[i].free_arg != NULL)
            children[i].free_arg(children[i].arg);
}

static bool spec_ok(const tand_child_spec *c)
{
    return c->name != NULL && c->name[0] != '\0' &&
           strlen(c->name) <= TAND_NAME_MAX && c->start != NULL &&
           c->restart >= TAND_PERMANENT && c->restart <= TAND_TEMPORARY;
}

int tand_supervisor_start(tand_runtime *rt,
                          const tand_supervisor_options *o,
                          const tand_child_spec *children, size_t n,
                          tand_server **out)
{
    tand_supervisor_options defaults;
    tand_server_options so;
    tand_msg req = {0}, reply;
    bool adopted = false;
    sup *sv;
    size_t i;
    int rc;

    if (out != NULL)
        *out = NULL;
    /* Zero is the default of each field: a copy with them filled in. */
    tand_supervisor_options_init(&defaults);
    if (o != NULL) {
        tand_supervisor_options given = *o;
        if (given.max_restarts == 0)
            given.max_restarts = defaults.max_restarts;
        else if (given.max_restarts == TAND_NO_RESTARTS)
            given.max_restarts = 0;
        else if (given.max_restarts < 0)
            given.max_restarts = -2; /* refused below */
        if (given.max_seconds == 0)
            given.max_seconds = defaults.max_seconds;
        defaults = given;
    }
    o = &defaults;
    if (rt == NULL || out == NULL || (n > 0 && children == NULL) ||
        n > MAX_CHILDREN) {
        if (children != NULL)
            free_args(children, n);
        return TAND_EINVAL;
    }
    rc = 0;
    if (o->strategy < TAND_ONE_FOR_ONE || o->strategy > TAND_REST_FOR_ONE ||
        o->max_restarts < 0 || o->max_restarts > 1000000 ||
        o->max_seconds <= 0 || o->max_seconds > INT64_MAX / 2000000000)
        rc = TAND_ECONFIG;
    for (i = 0; i < n && rc == 0; i++)
        if (!spec_ok(&children[i]))
            rc = TAND_ECONFIG;
    if (rc != 0) {
        free_args(children, n);
        return rc;
    }

    sv = tand__calloc(1, sizeof *sv);
    if (sv != NULL) {
        sv->c = tand__calloc(n ? n : 1, sizeof *sv->c);
        sv->stamps = tand__calloc((size_t)o->max_restarts + 1, sizeof *sv->stamps);
    }
    if (sv == NULL || sv->c == NULL || sv->stamps == NULL) {
        if (sv != NULL) {
            free(sv->c);
            free(sv->stamps);
            free(sv);
        }
        free_args(children, n);
        return TAND_ENOMEM;
    }
    sv->strategy = o->strategy;
    sv->max_restarts = o->max_restarts;
    sv->window_ns = o->max_seconds * 1000000000;
    sv->n = n;
    sv->cap = n ? n : 1;
    /* Every arg first, so that a failed name copy frees them all. */
    for (i = 0; i < n; i++) {
        child *c = &sv->c[i];
        c->restart = children[i].restart;
        c->start = children[i].start;
        c->arg = children[i].arg;
        c->free_arg = children[i].free_arg;
    }
    for (i = 0; i < n; i++) {
        sv->c[i].name = tand__strdup(children[i].name);
        if (sv->c[i].name == NULL) {
            sup_free(sv); /* frees every arg */
            return TAND_ENOMEM;
        }
    }

    memset(&so, 0, sizeof so);
    so.behaviour = &sup_behaviour;
    so.arg = sv;
    so.name = o->name;
    sv->adopted = &adopted;
    rc = tand_server_start(rt, &so, out);
    if (rc != 0) {
        if (!adopted) /* else terminate has freed it */
            sup_free(sv);
        return rc;
    }
    /* The children start on the supervisor's own thread, as in OTP. */
    req.op = TAND_OP_SUPERVISOR_INIT;
    rc = tand_call(*out, &req, &reply, TAND_FOREVER, 0);
    tand_msg_clear(&reply);
    if (rc != 0) {
        tand_server_stop(*out, 0, NULL, TAND_FOREVER); /* frees sv */
        tand_server_release(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- the dynamic operations: calls into the supervisor ---- */

int tand_server_is_supervisor(const tand_server *s)
{
    return s != NULL && s->behaviour == &sup_behaviour;
}

/* A call of op with `name` (or none) in its data and ival0; the reply
** goes to *reply (cleared by the caller). */
static int sup_request(tand_server *s, int op, const char *name,
                       int64_t ival0, tand_msg *reply, int64_t timeout_ms)
{
    tand_msg req = {0};
    req.op = op;
    req.ival[0] = ival0;
    if (name != NULL && tand_msg_set_text(&req, name, strlen(name)) != 0) {
        memset(reply, 0, sizeof *reply);
        return TAND_ENOMEM;
    }
    return tand_call(s, &req, reply, timeout_ms, 0);
}

static bool name_ok(const char *name)
{
    return name != NULL && name[0] != '\0' && strlen(name) <= TAND_NAME_MAX;
}

/* A call naming a child, with no result but its status. */
static int named_op(tand_server *s, int op, const char *name,
                    int64_t timeout_ms)
{
    tand_msg reply;
    int rc;
    if (!tand_server_is_supervisor(s) || !name_ok(name))
        return TAND_EINVAL;
    rc = sup_request(s, op, name, 0, &reply, timeout_ms);
    tand_msg_clear(&reply);
    return rc;
}

int tand_supervisor_which_children(tand_server *s, tand_child_info *out,
                                   size_t cap, size_t *count,
                                   int64_t timeout_ms)
{
    tand_msg reply;
    size_t n;
    int rc;
    if (count != NULL)
        *count = 0;
    if (!tand_server_is_supervisor(s) || count == NULL ||
        (out == NULL && cap > 0))
        return TAND_EINVAL;
    rc = sup_request(s, OP_WHICH, NULL, 0, &reply, timeout_ms);
    if (rc == 0) {
        n = reply.size / sizeof *out;
        if (n > 0 && cap > 0)
            memcpy(out, reply.data, (n < cap ? n : cap) * sizeof *out);
        *count = n;
    }
    tand_msg_clear(&reply);
    return rc;
}

int tand_supervisor_count_children(tand_server *s, tand_child_counts *out,
                                   int64_t timeout_ms)
{
    tand_msg reply;
    int rc;
    if (out != NULL)
        memset(out, 0, sizeof *out);
    if (!tand_server_is_supervisor(s) || out == NULL)
        return TAND_EINVAL;
    rc = sup_request(s, OP_COUNT, NULL, 0, &reply, timeout_ms);
    if (rc == 0 && reply.size == sizeof *out)
        memcpy(out, reply.data, sizeof *out);
    tand_msg_clear(&reply);
    return rc;
}

int tand_supervisor_start_child(tand_server *s, const tand_child_spec *spec,
                                tand_server **out, int64_t timeout_ms)
{
    tand_server *started = NULL;
    tand_msg reply;
    carrier k;
    int rc;

    if (out != NULL)
        *out = NULL;
    if (spec == NULL)
        return TAND_EINVAL;
    if (!tand_server_is_supervisor(s) || !spec_ok(spec)) {
        if (spec->free_arg != NULL)
            spec->free_arg(spec->arg);
        return tand_server_is_supervisor(s) ? TAND_ECONFIG : TAND_EINVAL;
    }
    carrier_put(&k, spec);
    rc = sup_request(s, OP_START, NULL, (int64_t)k.serial, &reply,
                     timeout_ms);
    tand_msg_clear(&reply);
    if (!carrier_take(&k, &started)) {
        /* never seen by the supervisor, and now never will be */
        if (spec->free_arg != NULL)
            spec->free_arg(spec->arg);
        if (rc == 0) /* cannot be: a reply comes after the claim */
            rc = TAND_ETIMEDOUT;
    }
    if (rc == 0 && out != NULL)
        *out = started;
    else
        tand_server_release(started);
    return rc;
}

int tand_supervisor_terminate_child(tand_server *s, const char *name,
                                    int64_t timeout_ms)
{
    return named_op(s, OP_TERMINATE, name, timeout_ms);
}

int tand_supervisor_restart_child(tand_server *s, const char *name,
                                  tand_server **out, int64_t timeout_ms)
{
    tand_server *started = NULL;
    tand_msg reply;
    carrier k;
    int rc;
    if (out != NULL)
        *out = NULL;
    if (out == NULL)
        return named_op(s, OP_RESTART, name, timeout_ms);
    if (!tand_server_is_supervisor(s) || !name_ok(name))
        return TAND_EINVAL;
    carrier_put(&k, NULL);
    rc = sup_request(s, OP_RESTART, name, (int64_t)k.serial, &reply,
                     timeout_ms);
    tand_msg_clear(&reply);
    carrier_take(&k, &started);
    if (rc == 0 && started != NULL)
        *out = started;
    else
        tand_server_release(started);
    if (rc == 0 && started == NULL)
        rc = TAND_ENOMEM; /* cannot be: given before the reply */
    return rc;
}

int tand_supervisor_delete_child(tand_server *s, const char *name,
                                 int64_t timeout_ms)
{
    return named_op(s, OP_DELETE, name, timeout_ms);
}
