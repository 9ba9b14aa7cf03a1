/*
** supervisor.c - OTP-style supervisors: a server that starts children,
** monitors them and restarts them by a strategy within an intensity.
**
** A supervisor is an ordinary server; its state is touched only on its own
** thread. It learns of a child's end from the engine's DOWN notice
** (tand_monitor), tagged with the child's index and incarnation number, so
** the notice of an incarnation the supervisor itself stopped (to restart
** it, or at shutdown) is recognised as stale and ignored. Children are
** started, stopped and restarted on the supervisor's thread; stopping one
** waits for its end, which the engine allows by starting a spare worker.
*/
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long a supervisor waits for a child to stop before going on. */
#define CHILD_STOP_MS 5000
#define MAX_CHILDREN 100000

typedef struct child {
    char *name;
    int restart;
    int (*start)(tand_runtime *, const char *, void *, tand_server **);
    void *arg;
    void (*free_arg)(void *);
    tand_server *s;   /* the current incarnation, or NULL */
    uint32_t gen;     /* incarnation number, in the monitor tag */
    uint64_t restarts;
} child;

typedef struct sup {
    tand_server *self;
    int strategy, max_restarts;
    int64_t window_ns;
    int64_t *stamps; /* times of recent restarts, oldest first */
    int nstamps;
    child *c;
    size_t n;
    bool *adopted; /* set by init: the server owns the state from then */
} sup;

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

static int64_t tag_of(size_t i, uint32_t gen)
{
    return (int64_t)(((uint64_t)i << 32) | gen);
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
    c->gen++;
    c->s = s;
    atomic_store(&s->n_restarts, c->restarts);
    rc = tand__monitor(s, sv->self, tag_of(i, c->gen), true);
    if (rc != 0) { /* unwatched, it could not be restarted: stop it */
        tand_server_stop(s, 0, "shutdown", CHILD_STOP_MS);
        tand_server_release(s);
        c->s = NULL;
    }
    return rc;
}

static void stop_child(sup *sv, size_t i)
{
    child *c = &sv->c[i];
    if (c->s == NULL)
        return;
    c->gen++; /* its DOWN notice is now stale */
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

/* Child i ended abnormally (or is permanent): restart by the strategy. */
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
    for (j = first; j <= last; j++) {
        if (j != i && sv->c[j].restart == TAND_TEMPORARY)
            continue;
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
    size_t i = (size_t)((uint64_t)m->ival[0] >> 32);
    uint32_t gen = (uint32_t)((uint64_t)m->ival[0] & 0xffffffffu);
    int reason = (int)m->ival[1];
    child *c;
    if (i >= sv->n || sv->c[i].gen != gen || sv->c[i].s == NULL)
        return; /* an incarnation we stopped ourselves */
    c = &sv->c[i];
    tand_server_release(c->s);
    c->s = NULL;
    if (c->restart == TAND_TEMPORARY ||
        (c->restart == TAND_TRANSIENT && reason == 0))
        return;
    restart(sv, i);
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
    size_t i;
    (void)self;
    (void)from;
    if (req->op != TAND_OP_SUPERVISOR_INIT) {
        reply->status = TAND_EBADREQ;
        return 0;
    }
    for (i = 0; i < sv->n; i++) {
        int rc = start_child(sv, i);
        if (rc != 0) {
            char text[TAND_NAME_MAX + 64];
            stop_all(sv);
            snprintf(text, sizeof text, "child '%s' did not start: %s",
                     sv->c[i].name, tand_errname(rc));
            reply->status = rc;
            tand_msg_set_text(reply, text, strlen(text));
            return 0;
        }
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
    if (o == NULL) {
        tand_supervisor_options_init(&defaults);
        o = &defaults;
    }
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
        if (children[i].name == NULL || children[i].name[0] == '\0' ||
            strlen(children[i].name) > TAND_NAME_MAX ||
            children[i].start == NULL || children[i].restart < 0 ||
            children[i].restart > TAND_TEMPORARY)
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
