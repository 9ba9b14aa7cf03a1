/*
** server.c - a server's life: start, messages in, handlers, stop.
**
** DESIGN: a server is a behaviour, its state and a bounded mailbox, run
** by one thread at a time: whichever holds it. `hold` is one atomic word,
** taken by CAS from 0 and dropped only by the holder, so the state needs
** no lock and each hold is ordered after the last. Who runs a server:
** - A caller that finds it free runs its own call on its own thread
**   (call_inline): no hand-off, no wake-up; the reply is a return value.
** - A caller that finds it held (or queued) pushes its request under s->mu
**   and waits on its reply slot (park.c). Whoever holds the server serves
**   from the head of the mailbox, so nobody barges past a queued request.
** - Workers (runtime.c) run what no caller runs: casts, infos and
**   asynchronous calls, servers with work when nobody holds them, calls
**   that cannot run inline, idle timers, stops. A push that takes the hold
**   puts the server on the run queue.
** The rules that shape needs:
** - A call never returns past its deadline because it ran a handler: a
**   caller runs inline only a server with a declared bound (bound_ns:
**   tand_server_options.bound_us; the built-in machines' ops, a policy's
**   callback_timeout) that fits in what is left of its deadline, and never
**   a journaled one (a commit has no bound). The exception is trusted C
**   code that overruns its declared bound.
** - After its own call the holder serves the queue only for a server whose
**   callbacks are declared within COMBINE_NS and only while its deadline
**   leaves a batch; otherwise (a policy, a nested call) it passes the
**   server to a worker. A nested inline call (a handler calling another
**   server) serves only its own request; at most INLINE_MAX are nested on
**   one thread, deeper calls queue. A worker runs inline only servers
**   declared within COMBINE_NS, so a handler blocking in a nested policy
**   call never keeps a worker from the others (a worker waiting on a
**   queued call has a spare started for it). A journaled batch is
**   committed by the thread that holds it (a worker), before any of its
**   replies goes out.
** - Letting go is "drop the hold, then look for work": whoever brought
**   work meanwhile found the server held and left it to the holder; both
**   sides write, then read the other's word, in sequential consistency,
**   so one of them sees the other and no message is stranded (let_go).
** - What means "the request I am running" is per request: a thread that
**   runs a server adopts the request's server (tand__current) and causal
**   chain (tand__chain) for the handler's length, and restores its own
**   after. calling_self is found on the chain, an array of server ids
**   each request carries from the handler that made it, whichever thread
**   serves what.
** - A thread may opt out of running servers (tand_thread_set_inline).
** - A pumped runtime still runs one handler at a time: a caller runs a
**   server inline only while it holds the runtime's pump.
** - Once a holder has let go, it touches the server no more: another
**   thread may stop it and drop the last reference at once.
** Messages from one thread are pushed in program order into a FIFO,
** hence handled in the order sent; a caller that runs inline finds the
** mailbox empty, so its earlier casts have been handled. Stopping sets
** `stopping` under s->mu, which refuses new pushes at once; the holder
** (or the worker the stop schedules) then runs terminate, answers every
** queued and deferred caller (noproc for a normal stop, the reason
** otherwise), drops its name and id, marks it ended, and sends a DOWN
** notice to each monitor. The runtime holds one reference to each running
** server, dropped at its end; handles and monitors hold the others.
** A call's caller is named by a from cell (park.c): the handler gets
** the name, and whoever claims the live cell first (the handler's
** return, tand_reply on any thread, the server's end) answers it; the
** others find it claimed (already_answered). Claims other than the
** server thread's own, for the call it is handling, take the from lock,
** which the end also takes to answer the deferred callers, so a thread
** that answers one never finds its server freed under it. A journaled
** server's caller answered from another thread is posted to the server
** (s->posted, WORK_POSTED), which sends the reply after its next
** commit. A handler that does not return (a policy stuck in C) is ended
** from another thread by tand_server_kill. s->turn says who may touch
** the turn's records (the call being handled, the held replies): the server's thread opens it to a kill around each behaviour
** callback (one release store and one exchange), and closes it while its
** handler is inside tand_reply; a kill that finds it open takes the
** records over by CAS, answers every caller, drops the name and sends
** the DOWN notices (those of supervisors of a journaled server wait: see
** after_kill), while the stuck thread keeps the state, the journal and
** the runtime's reference until its handler returns and after_kill rolls
** the batch back and lets everything go.
*/
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Thread_local tand_server *tand__current;
_Thread_local const call_chain *tand__chain;

/* Servers this thread runs inline, one inside the other; at most
** INLINE_MAX deep, deeper calls queue. */
#define INLINE_MAX 8
static _Thread_local int inline_depth;
/* This thread's calls never run a server (tand_thread_set_inline). */
static _Thread_local bool inline_off;

static _Atomic uint64_t next_id = 1;

/* Handles this many messages before letting other servers run. */
#define BATCH 64
/* A caller holding a server serves the queue behind its own request only
** when the server's callbacks are declared this short. */
#define COMBINE_NS 100000

static void send_down(monitor *m, int reason, const char *detail);

static void server_free(tand_server *s)
{
    tand__journal_close(s->journal);
    free(s->held);
    while (s->monitors != NULL) { /* (a server that never ran) */
        monitor *m = s->monitors;
        s->monitors = m->next;
        send_down(m, TAND_ENOPROC, NULL);
    }
    tand__mbox_free(&s->mb);
    tand__mbox_free(&s->doomed);
    free(s->stop_detail);
    free(s->name);
    pthread_cond_destroy(&s->room);
    pthread_cond_destroy(&s->ended_cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void tand_server_retain(tand_server *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void tand_server_release(tand_server *s)
{
    if (s != NULL &&
        atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        server_free(s);
}

static int check_name(const char *name)
{
    size_t len;
    if (name == NULL)
        return 0;
    len = strlen(name);
    return (len == 0 || len > TAND_NAME_MAX) ? TAND_EINVAL : 0;
}

static void set_error(const tand_server_options *o, const char *text)
{
    if (o->error != NULL && o->error_size > 0)
        snprintf(o->error, o->error_size, "%s", text);
}

/* The journal tand__journal_adopt gave this thread's next start. */
static _Thread_local tand_journal *adopted_journal;

void tand__journal_adopt(tand_journal *j)
{
    adopted_journal = j;
}

tand_journal *tand__journal_unadopted(void)
{
    tand_journal *j = adopted_journal;
    adopted_journal = NULL;
    return j;
}

/* A failure that has said nothing yet says what its code means. */
static int start_failed(const tand_server_options *o, int rc)
{
    if (o->error != NULL && o->error_size > 0 && o->error[0] == '\0')
        set_error(o, tand_strerror(rc));
    return rc;
}

void tand_server_options_init(tand_server_options *o)
{
    memset(o, 0, sizeof *o);
}

/* The options tand_server_start refuses, each saying why in o->error. */
static int check_options(tand_runtime *rt, const tand_server_options *o,
                         bool adopted, tand_server **out)
{
    const char *why = NULL;
    if (rt == NULL || out == NULL)
        why = "a NULL runtime or out";
    else if (o->behaviour == NULL || o->behaviour->handle_call == NULL)
        why = "a server needs a behaviour with a handle_call";
    else if (o->mailbox_capacity > TAND_MAILBOX_MAX)
        why = "mailbox_capacity is above TAND_MAILBOX_MAX";
    else if (check_name(o->name) != 0)
        why = "a name is 1 to TAND_NAME_MAX bytes";
    else if (o->bound_us < 0)
        why = "bound_us must be >= 0";
    else if (o->journal != NULL && (o->durability < TAND_DURABLE_FULL ||
                                    o->durability > TAND_DURABLE_OS))
        why = "durability must be TAND_DURABLE_FULL or TAND_DURABLE_OS";
    else if (o->journal != NULL && adopted)
        why = "a server has one journal: its own or an adopted one";
    else if ((o->journal != NULL || adopted) && o->behaviour->name == NULL)
        why = "a journaled server's behaviour needs a name";
    if (why == NULL)
        return 0;
    set_error(o, why);
    return TAND_EINVAL;
}

/* tand_server_start with `adopted` (or NULL) as the server's journal;
** *taken is set once the server owns it. */
static int start(tand_runtime *rt, const tand_server_options *o,
                 tand_journal *adopted, bool *taken, tand_server **out)
{
    tand_server *s;
    uint32_t cap;
    int rc;
    bool journaled = o != NULL && (o->journal != NULL || adopted != NULL);

    if (out != NULL)
        *out = NULL;
    if (o == NULL)
        return TAND_EINVAL;
    if (o->error != NULL && o->error_size > 0)
        o->error[0] = '\0';
    if ((rc = check_options(rt, o, adopted != NULL, out)) != 0)
        return rc;
    cap = o->mailbox_capacity ? (uint32_t)o->mailbox_capacity
                              : TAND_MAILBOX_DEFAULT;

    s = tand__calloc(1, sizeof *s);
    if (s == NULL)
        return start_failed(o, TAND_ENOMEM);
    if (tand__mutex_init(&s->mu) != 0) {
        free(s);
        return start_failed(o, TAND_ESYSTEM);
    }
    if (tand__cond_init(&s->room) != 0) {
        pthread_mutex_destroy(&s->mu);
        free(s);
        return start_failed(o, TAND_ESYSTEM);
    }
    if (tand__cond_init(&s->ended_cv) != 0) {
        pthread_cond_destroy(&s->room);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return start_failed(o, TAND_ESYSTEM);
    }
    atomic_init(&s->refs, 2); /* the caller's and the runtime's */
    s->rt = rt;
    s->id = atomic_fetch_add(&next_id, 1);
    s->behaviour = o->behaviour;
    /* A journaled call is never run by its caller: its reply waits for
    ** the batch's commit, whose length nothing bounds. */
    if (!journaled && o->bound_us > 0)
        s->bound_ns = o->bound_us > INT64_MAX / 1000 ? INT64_MAX
                                                     : o->bound_us * 1000;
    s->idle_timer.index = s->reply_timer.index = SIZE_MAX;
    s->idle_timer.server = s->reply_timer.server = s;
    s->idle_timer.kind = TIMER_IDLE;
    s->reply_timer.kind = TIMER_REPLIES;
    s->replies_due_ns = INT64_MAX;
    tand__mbox_init(&s->mb, cap);

    if (journaled) {
        char err[512] = "";
        if (adopted != NULL) {
            s->journal = adopted;
            *taken = true;
            rc = 0;
        } else {
            rc = tand__sqlite_journal_open(o->journal, o->behaviour->name,
                                           o->durability, &s->journal, err,
                                           sizeof err);
        }
        if (rc == 0 && (s->held = tand__malloc(BATCH * sizeof *s->held)) == NULL)
            rc = TAND_ENOMEM;
        if (rc != 0) {
            set_error(o, err[0] ? err : tand_strerror(rc));
            server_free(s);
            return rc;
        }
        s->capheld = BATCH;
        s->journaled = true;
    }

    /* Room for its timers first: init may arm the idle timer. */
    if ((rc = tand__timer_reserve(rt, s)) != 0) {
        server_free(s);
        return start_failed(o, rc);
    }
    s->state = o->arg;
    if (o->behaviour->init != NULL) {
        rc = o->behaviour->init(s, o->arg, &s->state);
        if (rc != 0) {
            tand__timer_end(rt, s);
            server_free(s);
            return start_failed(o, rc > 0 ? TAND_EINVAL : rc);
        }
    }
    if (s->journal != NULL) { /* what init wrote is durable before use */
        char err[512];
        rc = tand__journal_commit(s->journal, err, sizeof err);
        if (rc != 0) {
            set_error(o, err);
            if (o->behaviour->terminate != NULL)
                o->behaviour->terminate(s->state, s, rc, err);
            tand__timer_end(rt, s);
            server_free(s);
            return rc;
        }
    }

    pthread_mutex_lock(&rt->table_mu);
    if (rt->closed) {
        rc = TAND_ENOPROC;
    } else {
        rc = tand__table_put(rt->by_id, &s->id, sizeof s->id, s);
        if (rc == 0 && o->name != NULL) {
            s->name = tand__strdup(o->name);
            rc = s->name ? tand__table_put(rt->by_name, s->name,
                                           strlen(s->name), s)
                         : TAND_ENOMEM;
            if (rc != 0) {
                free(s->name);
                s->name = NULL;
                tand__table_del(rt->by_id, &s->id, sizeof s->id);
            }
        }
    }
    pthread_mutex_unlock(&rt->table_mu);
    if (rc != 0) {
        tand__timer_end(rt, s);
        if (o->behaviour->terminate != NULL)
            o->behaviour->terminate(s->state, s, rc, NULL);
        server_free(s);
        if (rc == TAND_ENAMETAKEN) {
            char text[TAND_NAME_MAX + 64];
            snprintf(text, sizeof text, "the name '%s' is taken", o->name);
            set_error(o, text);
        }
        return start_failed(o, rc);
    }
    *out = s;
    return 0;
}

int tand_server_start(tand_runtime *rt, const tand_server_options *o,
                      tand_server **out)
{
    tand_journal *adopted = adopted_journal;
    bool taken = false;
    int rc;
    adopted_journal = NULL;
    rc = start(rt, o, adopted, &taken, out);
    if (rc != 0 && adopted != NULL && !taken)
        tand__journal_close(adopted);
    return rc;
}

const tand_behaviour *tand_server_behaviour(const tand_server *s)
{
    return s ? s->behaviour : NULL;
}

tand_journal *tand_server_journal(tand_server *self)
{
    return self ? self->journal : NULL;
}

int tand_server_alive(const tand_server *s)
{
    return s != NULL && !atomic_load(&((tand_server *)s)->stopping);
}

uint64_t tand_server_id(const tand_server *s)
{
    return s ? s->id : 0;
}

tand_runtime *tand_server_runtime(const tand_server *s)
{
    return s ? s->rt : NULL;
}

tand_server *tand_self(void)
{
    return tand__current;
}

int tand_server_stats(const tand_server *s, tand_stats *out)
{
    tand_server *m = (tand_server *)s;
    if (s == NULL || out == NULL)
        return TAND_EINVAL;
    out->calls = atomic_load_explicit(&m->n_calls, memory_order_relaxed);
    out->casts = atomic_load_explicit(&m->n_casts, memory_order_relaxed);
    out->infos = atomic_load_explicit(&m->n_infos, memory_order_relaxed);
    out->errors = atomic_load_explicit(&m->n_errors, memory_order_relaxed);
    out->timeouts =
        atomic_load_explicit(&m->n_timeouts, memory_order_relaxed);
    out->mailbox_depth =
        atomic_load_explicit(&m->depth, memory_order_relaxed);
    out->mailbox_peak = atomic_load_explicit(&m->peak, memory_order_relaxed);
    out->handler_ns =
        atomic_load_explicit(&m->n_handler_ns, memory_order_relaxed);
    out->restarts =
        atomic_load_explicit(&m->n_restarts, memory_order_relaxed);
    {
        /* the answers first: each was taken before it, so the difference
        ** read this way is never below what it was */
        uint64_t off = atomic_load_explicit(&m->n_answered_off,
                                            memory_order_relaxed);
        uint64_t here = atomic_load_explicit(&m->n_answered,
                                             memory_order_relaxed);
        uint64_t taken = atomic_load_explicit(&m->n_taken,
                                              memory_order_relaxed);
        out->deferred = taken > here + off ? taken - here - off : 0;
    }
    return 0;
}

static void count(_Atomic uint64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* Adds to a counter only the thread holding the server writes: a load
** and a store, no locked instruction. */
static void add_held(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* With s->mu held, after a push: the depth is stored in sequential
** consistency, since a holder letting go reads it after dropping `hold`
** (let_go). */
static void note_push(tand_server *s)
{
    atomic_store(&s->depth, s->mb.count);
    atomic_store_explicit(&s->peak, s->mb.peak, memory_order_relaxed);
}

/* With s->mu held, by the holder after it took messages out: only the
** holder reads the depth for itself, the others read it for stats. */
static void note_depth(tand_server *s)
{
    atomic_store_explicit(&s->depth, s->mb.count, memory_order_relaxed);
    atomic_store_explicit(&s->peak, s->mb.peak, memory_order_relaxed);
}

/* Takes the hold of a free server: true when this thread now holds it
** (and must run it or put it on the run queue). */
static bool take_hold(tand_server *s)
{
    int free_ = 0;
    return atomic_compare_exchange_strong(&s->hold, &free_, 1);
}

/* Work that a holder must not leave behind: queued messages, a fired
** idle timer, replies to take, a stop. */
static bool has_work(tand_server *s)
{
    return atomic_load(&s->depth) > 0 || atomic_load(&s->work) != 0 ||
           atomic_load(&s->stopping);
}

/* The holder lets go. Whoever brought work meanwhile found the server
** held and left the work to it: both sides write, then read the other's
** word, in sequential consistency, so at least one of them sees the
** other. true when the server is let go; false when work came and this
** thread holds it again. */
static bool let_go(tand_server *s)
{
    atomic_store(&s->hold, 0);
    return !has_work(s) || !take_hold(s);
}

/* Internal push flag: past the mailbox limit (the engine's notices). */
#define FORCE 0x100

/* With s->mu held, a server that has not finished its end still has its
** runtime; a pin taken then makes tand_runtime_free wait for the unpin
** too. (It waits for the end of every server that is not stopping; one
** already ending is ended by a worker it joins, or by a pumping thread
** whose pump_owner it claims before it reads the pins.) */
static tand_runtime *pin_locked(tand_server *s)
{
    atomic_fetch_add_explicit(&s->rt->pins, 1, memory_order_relaxed);
    return s->rt;
}

tand_runtime *tand__server_pin(tand_server *s)
{
    tand_runtime *rt = NULL;
    pthread_mutex_lock(&s->mu);
    if (!atomic_load_explicit(&s->stopping, memory_order_relaxed))
        rt = pin_locked(s);
    pthread_mutex_unlock(&s->mu);
    return rt;
}

void tand__runtime_unpin(tand_runtime *rt)
{
    atomic_fetch_sub_explicit(&rt->pins, 1, memory_order_release);
}

/* Waits on cv (s->mu held, s not finished) until signalled or the
** deadline; in a pumped runtime runs the pump instead of sleeping, with
** the runtime pinned while s->mu is free. false once it has passed. */
static bool wait_on(tand_server *s, pthread_cond_t *cv, int64_t deadline_ns)
{
    if (tand__runtime_pumped(s->rt)) {
        tand_runtime *rt = pin_locked(s);
        pthread_mutex_unlock(&s->mu);
        tand__runtime_help(rt);
        tand__runtime_unpin(rt);
        pthread_mutex_lock(&s->mu);
        return tand__now_ns() < deadline_ns;
    }
    return tand__cond_wait_until(cv, &s->mu, deadline_ns);
}

/* Queues an envelope; consumes nothing on failure (the caller cleans).
** With `pumped` non-NULL (a call that will wait), a push into a pumped
** runtime pins it there for the wait; *pumped is NULL otherwise. */
static int push(tand_server *s, const envelope *e, lazy_deadline *deadline,
                int flags, tand_runtime **pumped)
{
    tand_runtime *blocked = NULL;
    bool schedule = false;
    int rc;

    if (!(flags & FORCE) && tand__current != NULL &&
        atomic_load_explicit(&tand__current->turn, memory_order_relaxed) ==
            TURN_KILLED)
        return TAND_ENOPROC; /* a killed handler, still running, acts no
                             ** more (the engine's notices still go) */
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (atomic_load_explicit(&s->stopping, memory_order_relaxed)) {
            rc = TAND_ENOPROC;
            break;
        }
        rc = tand__mbox_push(&s->mb, e, (flags & FORCE) != 0);
        /* A server waiting for room in its own mailbox would wait forever. */
        if (rc != TAND_EBUSY || (flags & TAND_NOWAIT) || tand__current == s)
            break;
        if (tand__worker_of != NULL && blocked == NULL &&
            !tand__runtime_pumped(s->rt)) {
            /* A handler waits for room: keep the other servers running
            ** (the one it waits on may need this very worker). */
            blocked = tand__worker_of;
            pthread_mutex_unlock(&s->mu);
            tand__runtime_block(blocked);
            pthread_mutex_lock(&s->mu);
            continue;
        }
        s->room_waiters++;
        if (!wait_on(s, &s->room, tand__lazy_ns(deadline))) {
            s->room_waiters--;
            rc = TAND_ETIMEDOUT;
            break;
        }
        s->room_waiters--;
    }
    if (pumped != NULL)
        *pumped = rc == 0 && tand__runtime_pumped(s->rt) ? pin_locked(s)
                                                         : NULL;
    if (rc == 0) {
        note_push(s);
        schedule = take_hold(s);
    }
    pthread_mutex_unlock(&s->mu);
    if (blocked != NULL)
        tand__runtime_unblock(blocked);
    if (schedule)
        tand__runtime_schedule(s->rt, s);
    return rc;
}

/* A call's envelope with a new reply slot; takes req over (clearing it
** when there is no memory for the slot): 0 or TAND_ENOMEM. */
static int call_envelope(tand_server *s, tand_msg *req, envelope *e)
{
    e->kind = ENV_CALL;
    e->slot = tand__slot_new();
    if (e->slot == NULL) {
        tand_msg_clear(req);
        return TAND_ENOMEM;
    }
    e->slot->server = s;
    e->msg = *req;
    memset(req, 0, sizeof *req);
    return 0;
}

/* The causal chain of a call made on this thread into the slot: the
** chain of the request whose handler makes it, then that handler's
** server. false when s is in it (the call would wait on itself). */
static bool chain_call(tand_server *s, call_chain *out)
{
    tand_server *cur = tand__current;
    const call_chain *parent = tand__chain;
    int i, drop = 0;
    out->n = 0;
    if (cur == NULL)
        return true;
    if (cur == s)
        return false;
    if (parent != NULL) {
        for (i = 0; i < parent->n; i++)
            if (parent->id[i] == s->id)
                return false;
        drop = parent->n == CHAIN_MAX; /* the oldest goes */
        out->n = parent->n - drop;
        memcpy(out->id, parent->id + drop,
               (size_t)out->n * sizeof out->id[0]);
    }
    out->id[out->n++] = cur->id;
    return true;
}

/* Waits for the reply of a call that is on its way; `pumped` is the
** pinned pumped runtime to pump meanwhile, or NULL. */
static int wait_reply(tand_server *s, tand_slot *slot, tand_runtime *pumped,
                      lazy_deadline *deadline, tand_msg *reply)
{
    bool brief = s->bound_ns != 0 && s->bound_ns <= COMBINE_NS;
    int rc;
    if (tand__worker_of != NULL) {
        /* A handler waits on another server: keep the others running. */
        tand_runtime *mine = tand__worker_of;
        tand__runtime_block(mine);
        rc = tand__slot_wait(slot, pumped, brief, deadline, &s->reply_ns,
                             reply);
        tand__runtime_unblock(mine);
    } else {
        rc = tand__slot_wait(slot, pumped, brief, deadline, &s->reply_ns,
                             reply);
    }
    if (pumped != NULL)
        tand__runtime_unpin(pumped);
    if (rc == TAND_ETIMEDOUT) {
        count(&s->n_timeouts);
        return rc;
    }
    return reply->status;
}

static bool dispatch(tand_server *s, envelope *e);
static void after_kill(tand_server *s, bool terminate_ran);
static void give_back(tand_server *s, int64_t t0, const lazy_deadline *d,
                      bool nested);

/* What call_inline returns when the caller must queue its request. */
#define QUEUE_IT 1

/* A caller runs the server itself when it finds it free and the run is
** bounded within what is left of its deadline (see "Who runs a server").
** Returns the call's result, or QUEUE_IT with nothing consumed. */
static int call_inline(tand_server *s, envelope *e, lazy_deadline *d,
                       tand_msg *reply)
{
    tand_server *prev = tand__current;
    tand_runtime *rt = s->rt, *pin;
    int64_t t0;
    int pump = 0;
    bool killed, pumped = false;

    if (s->bound_ns == 0 || inline_off || inline_depth >= INLINE_MAX)
        return QUEUE_IT;
    /* A worker's handler runs only a short server inline: a longer one
    ** would keep the worker from the other servers, while a worker that
    ** waits on a queued call has a spare started in its place. */
    if (tand__worker_of != NULL && s->bound_ns > COMBINE_NS)
        return QUEUE_IT;
    t0 = tand__now_ns();
    tand__lazy_from(d, t0);
    if (d->ns != INT64_MAX && d->ns - t0 < s->bound_ns)
        return QUEUE_IT;
    /* Held or queued: the request queues (no barging). */
    if (atomic_load_explicit(&s->hold, memory_order_relaxed) ||
        !take_hold(s))
        return QUEUE_IT;
    /* Held by this thread, the server cannot end, so its runtime stays.
    ** Work that came just before the hold (a message, a stop) goes first:
    ** to a worker, and the request queues behind it. */
    if (has_work(s) || ((pumped = tand__runtime_pumped(rt)) &&
                        (pump = tand__pump_claim(rt)) == 0)) {
        if (!let_go(s))
            tand__runtime_schedule(rt, s);
        return QUEUE_IT;
    }

    inline_depth++;
    tand__current = s;
    killed = dispatch(s, e);
    if (killed)
        after_kill(s, false);
    else
        give_back(s, t0, d, prev != NULL); /* nested: from a handler */
    tand__current = prev;
    inline_depth--;
    if (pump == 1)
        tand__pump_release(rt);
    if (tand__slot_collect(e->slot, reply))
        return reply->status;
    /* Deferred (or a killed handler's caller being answered): wait. */
    pin = pumped ? tand__server_pin(s) : NULL;
    return wait_reply(s, e->slot, pin, d, reply);
}

int tand_call(tand_server *s, tand_msg *req, tand_msg *reply,
              int64_t timeout_ms, int flags)
{
    envelope e;
    lazy_deadline deadline = tand__lazy(timeout_ms);
    tand_runtime *pumped;
    int rc;

    if (reply != NULL)
        memset(reply, 0, sizeof *reply);
    if (s == NULL || req == NULL || reply == NULL) {
        tand_msg_clear(req);
        return TAND_EINVAL;
    }
    if (call_envelope(s, req, &e) != 0)
        return TAND_ENOMEM;
    if (!chain_call(s, &e.slot->chain)) {
        tand_msg_clear(&e.msg);
        tand__slot_free(e.slot);
        return TAND_ECALLSELF;
    }
    if ((rc = call_inline(s, &e, &deadline, reply)) != QUEUE_IT)
        return rc;
    /* From here on the server's runtime may be freed by another thread
    ** (that stops the server and answers this call): only a pumped one,
    ** which this wait pumps, is used, and it is pinned. */
    rc = push(s, &e, &deadline, flags, &pumped);
    if (rc != 0) {
        tand_msg_clear(&e.msg);
        tand__slot_free(e.slot);
        return rc;
    }
    return wait_reply(s, e.slot, pumped, &deadline, reply);
}

int tand_thread_set_inline(int allow)
{
    int was = !inline_off;
    inline_off = !allow;
    return was;
}

int tand_call_async(tand_server *s, tand_msg *req, int64_t timeout_ms,
                    int flags, tand_replies *box, uint64_t tag)
{
    envelope e;
    lazy_deadline deadline = tand__lazy(timeout_ms);
    int rc;

    if (s == NULL || req == NULL || box == NULL) {
        tand_msg_clear(req);
        return TAND_EINVAL;
    }
    if (call_envelope(s, req, &e) != 0)
        return TAND_ENOMEM;
    /* In the box before the server can see it: a reply may come at once. */
    tand__replies_attach(box, e.slot, tag, tand__lazy_ns(&deadline));
    rc = push(s, &e, &deadline, flags, NULL);
    if (rc != 0) {
        tand__replies_detach(box, e.slot);
        tand_msg_clear(&e.msg);
        tand__slot_free(e.slot);
    }
    return rc;
}

int tand_send_request(tand_server *self, tand_server *to, tand_msg *req,
                      int64_t timeout_ms, uint64_t tag)
{
    int64_t due;
    int rc;
    if (self == NULL || to == NULL || req == NULL ||
        tand__current != self || self->behaviour->handle_reply == NULL) {
        tand_msg_clear(req);
        return TAND_EINVAL;
    }
    if (atomic_load_explicit(&self->stopping, memory_order_relaxed)) {
        tand_msg_clear(req); /* (its reply could never come) */
        return TAND_ENOPROC;
    }
    if (self->replies == NULL &&
        (rc = tand__replies_new_owned(self, &self->replies)) != 0) {
        tand_msg_clear(req);
        return rc;
    }
    rc = tand_call_async(to, req, timeout_ms, TAND_NOWAIT, self->replies,
                         tag);
    /* The timer moves only for an earlier deadline; one that fired is
    ** set again when the server takes what it woke it for. */
    if (rc == 0 &&
        (due = tand__replies_next_deadline(self->replies)) <
            self->replies_due_ns) {
        self->replies_due_ns = due;
        tand__timer_set_replies(self->rt, self, due);
    }
    return rc;
}

static int send_kind(tand_server *s, tand_msg *msg, int64_t timeout_ms,
                     int flags, int kind)
{
    envelope e;
    lazy_deadline deadline = tand__lazy(timeout_ms);
    int rc;
    if (s == NULL || msg == NULL) {
        tand_msg_clear(msg);
        return TAND_EINVAL;
    }
    e.kind = kind;
    e.slot = NULL;
    e.msg = *msg;
    memset(msg, 0, sizeof *msg);
    rc = push(s, &e, &deadline, flags, NULL);
    if (rc != 0)
        tand_msg_clear(&e.msg);
    return rc;
}

int tand_cast(tand_server *s, tand_msg *msg, int64_t timeout_ms, int flags)
{
    return send_kind(s, msg, timeout_ms, flags, ENV_CAST);
}

int tand_send(tand_server *s, tand_msg *msg, int64_t timeout_ms, int flags)
{
    return send_kind(s, msg, timeout_ms, flags, ENV_INFO);
}

static int flush(tand_server *s, char *err, size_t errsize);

/* Stops the server for a failure found on its own thread. A normal stop
** already under way takes the failure as its reason, so monitors and
** supervisors see it; without memory for the detail, the reason alone. */
static void stop_on_failure(tand_server *s, int rc, const char *detail)
{
    pthread_mutex_lock(&s->mu);
    if (atomic_load_explicit(&s->stopping, memory_order_relaxed)) {
        if (s->stop_reason == 0) {
            s->stop_reason = rc;
            free(s->stop_detail);
            s->stop_detail = tand__strdup(detail);
        }
        pthread_mutex_unlock(&s->mu);
        return;
    }
    pthread_mutex_unlock(&s->mu);
    if (tand_server_stop(s, rc, detail, 0) == TAND_ENOMEM)
        tand_server_stop(s, rc, NULL, 0);
}

/* Sends a reply, or with a journal holds it until the batch commits. */
static bool deliver(tand_server *s, tand_slot *slot, tand_msg *reply)
{
    if (s->journal != NULL) {
        if (tand__slot_abandoned(slot)) /* nobody to hold it for */
            return tand__slot_reply(slot, reply);
        if (s->nheld == s->capheld) {
            held *h = tand__realloc(s->held, 2 * s->capheld * sizeof *h);
            if (h == NULL) {
                /* No room to hold it: commit what is held so far, this
                ** reply's effects included, and then send it. */
                char err[256];
                int rc = flush(s, err, sizeof err);
                if (rc != 0) {
                    tand_msg_clear(reply);
                    reply->status = rc;
                    tand_msg_set_text(reply, err, strlen(err));
                }
                return tand__slot_reply(slot, reply);
            }
            s->held = h;
            s->capheld *= 2;
        }
        s->held[s->nheld].slot = slot;
        s->held[s->nheld].reply = *reply;
        memset(reply, 0, sizeof *reply);
        s->nheld++;
        return true;
    }
    return tand__slot_reply(slot, reply);
}

/* Sends the replies held for the batch; after a failed commit (rc) the
** successful ones become its error, as their effects were not kept. */
static void send_held(tand_server *s, int rc, const char *err)
{
    size_t i;
    for (i = 0; i < s->nheld; i++) {
        held *h = &s->held[i];
        if (rc != 0 && h->reply.status == 0) {
            tand_msg_clear(&h->reply);
            h->reply.status = rc;
            tand_msg_set_text(&h->reply, err, strlen(err));
            count(&s->n_errors);
        }
        tand__slot_reply(h->slot, &h->reply);
    }
    s->nheld = 0;
}

/* Makes the batch durable, then sends its replies; a failed commit
** answers them with journal_error, stops the server and returns the
** error (its text in err). */
static int flush(tand_server *s, char *err, size_t errsize)
{
    int rc = tand__journal_commit(s->journal, err, errsize);
    send_held(s, rc, err);
    if (rc != 0)
        stop_on_failure(s, rc, err);
    return rc;
}

/* The server crashed in the middle of a batch: nothing of the batch is
** kept, so a restart resumes from the last durable state, and the callers
** whose replies were waiting for the commit will learn of the crash:
** terminate sends them once the journal is let go, so that a caller told
** of the crash can start the server again at once. */
static void abort_batch(tand_server *s, int reason, const char *detail)
{
    size_t i;
    tand__journal_rollback(s->journal);
    for (i = 0; i < s->nheld; i++) {
        held *h = &s->held[i];
        tand_msg_clear(&h->reply);
        h->reply.status = reason;
        if (detail != NULL)
            tand_msg_set_text(&h->reply, detail, strlen(detail));
    }
}

/* A taken call answered by another thread than its holder's return
** (tand_reply, the server's end): the stats' deferred count. */
static void answered_off(tand_server *s)
{
    atomic_fetch_add_explicit(&s->n_answered_off, 1, memory_order_relaxed);
}

/* With s->mu held: the deferred list of cells. */
static void deferred_link(tand_server *s, from_cell *c)
{
    c->dprev = NULL;
    c->dnext = s->deferred;
    if (s->deferred)
        s->deferred->dprev = c;
    s->deferred = c;
    c->linked = true;
}

static void deferred_unlink(tand_server *s, from_cell *c)
{
    if (!c->linked)
        return;
    if (c->dprev)
        c->dprev->dnext = c->dnext;
    else
        s->deferred = c->dnext;
    if (c->dnext)
        c->dnext->dprev = c->dprev;
    c->dnext = c->dprev = NULL;
    c->linked = false;
}

/* On the server's thread, after handle_call returned TAND_NOREPLY: the
** call joins the deferred list, unless another thread has answered it
** already (or is answering it: that thread unlinks nothing then). */
static void defer_call(tand_server *s, from_cell *c, tand_from *from)
{
    pthread_mutex_lock(&s->mu);
    if (tand__from_live(from))
        deferred_link(s, c);
    pthread_mutex_unlock(&s->mu);
}

/* On the server's thread: the replies other threads gave to this
** journaled server go out with the batch (held until its commit). */
static void take_posted(tand_server *s)
{
    tand_slot *list;
    pthread_mutex_lock(&s->mu);
    list = s->posted;
    s->posted = NULL;
    atomic_fetch_and(&s->work, ~(unsigned)WORK_POSTED);
    pthread_mutex_unlock(&s->mu);
    /* newest first: send them in the order given */
    {
        tand_slot *rev = NULL;
        while (list != NULL) {
            tand_slot *next = list->posted_next;
            list->posted_next = rev;
            rev = list;
            list = next;
        }
        list = rev;
    }
    while (list != NULL) {
        tand_slot *slot = list;
        tand_msg reply = slot->reply;
        list = slot->posted_next;
        slot->posted_next = NULL;
        memset(&slot->reply, 0, sizeof slot->reply);
        deliver(s, slot, &reply);
    }
}

int tand_server_own_batch(tand_server *self)
{
    int turn = TURN_HANDLER, rc = 0;
    char err[256];
    if (self == NULL || self != tand__current)
        return TAND_EINVAL;
    if (self->journal == NULL)
        return 0;
    if (!self->in_message) /* handle_reply, terminate: not a message's */
        return TAND_EINVAL;
    /* The held replies are the turn's: a kill takes them over while a
    ** handler runs, so they are touched only after this CAS (as in
    ** tand_reply). */
    if (!atomic_compare_exchange_strong(&self->turn, &turn, TURN_REPLYING))
        return turn == TURN_KILLED ? TAND_ENOPROC : TAND_EINVAL;
    self->own_batch = true;
    if (self->nheld > 0 || tand__journal_dirty(self->journal))
        rc = flush(self, err, sizeof err);
    atomic_store_explicit(&self->turn, TURN_HANDLER, memory_order_release);
    return rc;
}

int tand_reply(tand_from *from, tand_msg *reply)
{
    tand_server *me = tand__current, *s;
    tand_slot *slot;
    from_cell *c;
    bool reopen = false, sent = true, posted = false, schedule = false;
    int rc;
    if (from == NULL || reply == NULL) {
        tand_msg_clear(reply);
        return TAND_EINVAL;
    }
    if (me != NULL) {
        /* From a handler: a kill of its server takes the held replies
        ** over while it runs, so a reply of its own is delivered with
        ** the turn closed; a killed handler acts no more. */
        int turn = TURN_HANDLER;
        if (atomic_compare_exchange_strong(&me->turn, &turn, TURN_REPLYING))
            reopen = true;
        else if (turn == TURN_KILLED) {
            tand_msg_clear(reply);
            return TAND_ENOPROC;
        }
    }
    /* Under the from lock a claim of a live cell is this thread's alone
    ** until it unlocks, and its server cannot finish its end meanwhile
    ** (end_public claims the rest under the same lock). */
    tand__from_lock();
    if ((c = tand__from_claim(from)) == NULL) {
        tand__from_unlock();
        tand_msg_clear(reply);
        rc = TAND_EANSWERED;
        goto out;
    }
    s = c->server;
    slot = c->slot;
    if (reply->status < 0) /* (a posted reply is the server's at once) */
        count(&s->n_errors);
    pthread_mutex_lock(&s->mu);
    deferred_unlink(s, c);
    if (s != me && s->journaled) {
        /* Another thread's reply to a journaled server waits for a batch
        ** of that server's, as its own would: it goes out after the
        ** commit of the batch that server's thread runs next. */
        slot->reply = *reply;
        memset(reply, 0, sizeof *reply);
        slot->posted_next = s->posted;
        s->posted = slot;
        atomic_fetch_or(&s->work, WORK_POSTED);
        schedule = !atomic_load_explicit(&s->stopping,
                                         memory_order_relaxed) &&
                   take_hold(s);
        posted = true;
    }
    pthread_mutex_unlock(&s->mu);
    answered_off(s);
    tand__from_close(c);
    if (s == me)
        sent = deliver(s, slot, reply);
    else if (!posted)
        sent = tand__slot_reply(slot, reply);
    tand__from_unlock();
    if (schedule) /* it holds the server: it cannot end before it runs */
        tand__runtime_schedule(s->rt, s);
    rc = sent ? 0 : TAND_ETIMEDOUT;
out:
    if (reopen)
        atomic_store_explicit(&me->turn, TURN_HANDLER, memory_order_release);
    return rc;
}

/* A behaviour callback begins: from now until handler_close,
** tand_server_kill may take the in-turn records over. */
static void handler_open(tand_server *s)
{
    s->turn_worker = tand__worker_of;
    atomic_store_explicit(&s->turn, TURN_HANDLER, memory_order_release);
}

/* The callback has returned: true when it was killed meanwhile (then its
** callers are answered and nothing of the turn is to be touched). */
static bool handler_close(tand_server *s)
{
    return atomic_exchange_explicit(&s->turn, TURN_ENGINE,
                                    memory_order_acq_rel) == TURN_KILLED;
}

/* handle_call returned rc, neither 0 nor TAND_NOREPLY: the call fails
** with it (a positive one with TAND_EINVAL), keeping a detail the
** handler set. */
static void failed_call(tand_msg *reply, int rc)
{
    reply->status = rc < 0 ? rc : TAND_EINVAL;
    reply->op = 0;
    reply->ival[0] = reply->ival[1] = 0;
}

/* Handles one message; true when a kill took the server over meanwhile. */
static bool dispatch(tand_server *s, envelope *e)
{
    const tand_behaviour *b = s->behaviour;
    const call_chain *outer = tand__chain;
    bool killed = false;
    tand__chain = NULL;
    switch (e->kind) {
    case ENV_CALL: {
        call_chain chain;
        tand_msg reply;
        from_cell *cell;
        tand_from *from;
        int rc;
        if (!tand__slot_take(e->slot))
            break; /* the caller gave up before we started */
        if (e->slot->box != NULL && e->slot->deadline_ns != INT64_MAX &&
            tand__now_ns() >= e->slot->deadline_ns) {
            /* an asynchronous call past its deadline, whose owner has
            ** not looked yet: skipped, as a waiting caller's would be */
            memset(&reply, 0, sizeof reply);
            reply.status = TAND_ETIMEDOUT;
            tand__slot_reply(e->slot, &reply);
            break;
        }
        add_held(&s->n_calls, 1);
        /* The request's chain, on this stack: the slot is the caller's
        ** again once answered, which the handler may do at any time. */
        chain.n = e->slot->chain.n;
        memcpy(chain.id, e->slot->chain.id,
               (size_t)chain.n * sizeof chain.id[0]);
        tand__chain = &chain;
        memset(&reply, 0, sizeof reply);
        /* The call's name: any thread may answer it through tand_reply,
        ** the handler too before it returns NOREPLY. */
        if ((from = tand__from_open(e->slot, s, &cell)) == NULL) {
            reply.status = TAND_ENOMEM;
            count(&s->n_errors);
            tand__slot_reply(e->slot, &reply);
            tand__chain = NULL;
            break;
        }
        add_held(&s->n_taken, 1);
        s->current_cell = cell;
        s->current_from = from;
        handler_open(s);
        rc = b->handle_call(s->state, s, &e->msg, from, &reply);
        if ((killed = handler_close(s))) {
            tand_msg_clear(&reply); /* its caller has its answer */
        } else {
            s->current_cell = NULL;
            s->current_from = NULL;
            if (rc == TAND_NOREPLY) {
                tand_msg_clear(&reply);
                defer_call(s, cell, from);
            } else if (tand__from_claim(from) == NULL) {
                /* answered already through tand_reply: this reply would
                ** be a second answer */
                tand_msg_clear(&reply);
            } else {
                if (rc != 0)
                    failed_call(&reply, rc);
                tand__from_close(cell);
                add_held(&s->n_answered, 1);
                if (reply.status < 0)
                    count(&s->n_errors);
                deliver(s, e->slot, &reply);
            }
        }
        tand__chain = NULL;
        break;
    }
    case ENV_CAST:
        add_held(&s->n_casts, 1);
        if (b->handle_cast) {
            handler_open(s);
            b->handle_cast(s->state, s, &e->msg);
            killed = handler_close(s);
        }
        break;
    case ENV_INFO:
        add_held(&s->n_infos, 1);
        if (b->handle_info) {
            handler_open(s);
            b->handle_info(s->state, s, &e->msg);
            killed = handler_close(s);
        }
        break;
    }
    tand_msg_clear(&e->msg);
    tand__chain = outer;
    return killed;
}

/* Hands the replies of the server's requests that came in, and those
** whose deadline passed, to handle_reply, until handled reaches max (then
** the rest waits for the next turn); then sets the reply timer to the
** next deadline. true when a kill took the server over meanwhile. */
static bool take_replies(tand_server *s, int max, int *handled)
{
    const tand_behaviour *b = s->behaviour;
    tand_msg reply;
    uint64_t tag;
    int64_t due;
    while (*handled < max &&
           !atomic_load_explicit(&s->stopping, memory_order_relaxed)) {
        bool killed;
        if (!tand_replies_take(s->replies, &tag, &reply))
            break;
        (*handled)++;
        add_held(&s->n_infos, 1);
        handler_open(s);
        b->handle_reply(s->state, s, tag, &reply);
        killed = handler_close(s);
        tand_msg_clear(&reply);
        if (killed)
            return true;
    }
    if (*handled >= max)
        atomic_fetch_or(&s->work, WORK_REPLIES); /* there may be more */
    due = tand__replies_next_deadline(s->replies);
    if (due != s->replies_due_ns) {
        s->replies_due_ns = due;
        tand__timer_set_replies(s->rt, s, due);
    }
    return false;
}

/* The server's end: its requests still in flight are abandoned (their
** servers skip them or drop the replies). */
static void free_replies(tand_server *s)
{
    tand_replies_free(s->replies);
    s->replies = NULL;
}

/* Answers a caller of a server that has ended. */
static void answer_ended(tand_slot *slot, int reason, const char *detail)
{
    tand_msg reply;
    memset(&reply, 0, sizeof reply);
    reply.status = reason == 0 ? TAND_ENOPROC : reason;
    if (reason != 0 && detail != NULL)
        tand_msg_set_text(&reply, detail, strlen(detail));
    tand__slot_reply(slot, &reply);
}

/* Tells a watcher that the server it monitors has ended, and frees the
** monitor. The notice goes in even if the watcher's mailbox is full. A
** box's monitor is answered instead, unless its box gave it up. */
static void send_down(monitor *m, int reason, const char *detail)
{
    envelope e;
    lazy_deadline never = tand__lazy(-1); /* FORCE never waits */
    if (m->slot != NULL) {
        tand_msg reply;
        memset(&reply, 0, sizeof reply);
        reply.status = reason;
        if (detail != NULL)
            tand_msg_set_text(&reply, detail, strlen(detail));
        if (tand__slot_take(m->slot))
            tand__slot_reply(m->slot, &reply);
        else
            tand_msg_clear(&reply);
        free(m);
        return;
    }
    memset(&e, 0, sizeof e);
    e.kind = ENV_INFO;
    e.msg.op = TAND_OP_DOWN;
    e.msg.ival[0] = m->tag;
    e.msg.ival[1] = reason;
    if (detail != NULL)
        tand_msg_set_text(&e.msg, detail, strlen(detail));
    if (push(m->watcher, &e, &never, FORCE, NULL) != 0)
        tand_msg_clear(&e.msg); /* the watcher has ended too */
    tand_server_release(m->watcher);
    free(m);
}

int tand_monitor(tand_server *watched, tand_server *watcher, int64_t tag)
{
    return tand__monitor(watched, watcher, tag, false);
}

/* With watched->mu held: drops the box monitors whose box gave them up,
** once the list has doubled since the last look, so that a loop
** monitoring and cancelling a long-lived server costs no memory. */
static void prune_monitors(tand_server *watched)
{
    monitor **pm = &watched->monitors;
    if (watched->nmonitors < 2 * watched->monitors_pruned + 16)
        return;
    while (*pm != NULL) {
        monitor *m = *pm;
        if (m->slot != NULL && tand__slot_abandoned(m->slot) &&
            !tand__slot_take(m->slot)) { /* (which frees it) */
            *pm = m->next;
            free(m);
            watched->nmonitors--;
        } else {
            pm = &m->next;
        }
    }
    watched->monitors_pruned = watched->nmonitors;
}

/* Puts m on watched's list; false when watched has ended already (then
** the caller sends the notice). */
static bool add_monitor(tand_server *watched, monitor *m)
{
    bool ended;
    pthread_mutex_lock(&watched->mu);
    ended = watched->ended;
    if (!ended) {
        prune_monitors(watched);
        m->next = watched->monitors;
        watched->monitors = m;
        watched->nmonitors++;
    }
    pthread_mutex_unlock(&watched->mu);
    return !ended;
}

int tand_monitor_async(tand_server *watched, tand_replies *box, uint64_t tag)
{
    monitor *m;
    tand_slot *slot;
    if (watched == NULL || box == NULL)
        return TAND_EINVAL;
    if ((m = tand__calloc(1, sizeof *m)) == NULL)
        return TAND_ENOMEM;
    if ((slot = tand__slot_new()) == NULL) {
        free(m);
        return TAND_ENOMEM;
    }
    slot->server = watched;
    tand__replies_attach(box, slot, tag, INT64_MAX);
    m->slot = slot;
    m->tag = (int64_t)tag;
    if (!add_monitor(watched, m))
        send_down(m, TAND_ENOPROC, NULL);
    return 0;
}

int tand_demonitor(tand_server *watched, tand_server *watcher, int64_t tag)
{
    monitor **pm, *found = NULL;
    if (watched == NULL || watcher == NULL)
        return TAND_EINVAL;
    pthread_mutex_lock(&watched->mu);
    for (pm = &watched->monitors; *pm != NULL; pm = &(*pm)->next) {
        monitor *m = *pm;
        if (m->watcher == watcher && m->tag == tag && !m->after_release) {
            *pm = m->next;
            watched->nmonitors--;
            found = m;
            break;
        }
    }
    pthread_mutex_unlock(&watched->mu);
    if (found == NULL)
        return TAND_ENOPROC;
    pthread_mutex_lock(&watcher->mu); /* the room kept for its notice */
    tand__mbox_unreserve(&watcher->mb);
    pthread_mutex_unlock(&watcher->mu);
    tand_server_release(watcher);
    free(found);
    return 0;
}

int tand__monitor(tand_server *watched, tand_server *watcher, int64_t tag,
                  bool after_release)
{
    monitor *m;
    int rc;
    if (watched == NULL || watcher == NULL)
        return TAND_EINVAL;
    if ((m = tand__calloc(1, sizeof *m)) == NULL)
        return TAND_ENOMEM;
    pthread_mutex_lock(&watcher->mu); /* room for the DOWN notice */
    rc = tand__mbox_reserve(&watcher->mb);
    pthread_mutex_unlock(&watcher->mu);
    if (rc != 0) {
        free(m);
        return rc;
    }
    tand_server_retain(watcher);
    m->watcher = watcher;
    m->tag = tag;
    m->after_release = after_release;
    if (!add_monitor(watched, m))
        send_down(m, TAND_ENOPROC, NULL);
    return 0;
}

/* Answers every call of s still named by a live cell (the deferred ones,
** the one a killed handler was handling) and the replies posted to it,
** under the from lock: once it is let go no other thread answers (or
** uses s for) one of its callers. */
static void answer_deferred(tand_server *s, int reason, const char *detail)
{
    from_cell *c, *next;
    tand_slot *posted;
    tand_from *current;
    tand__from_lock();
    pthread_mutex_lock(&s->mu);
    c = s->deferred;
    s->deferred = NULL;
    posted = s->posted;
    s->posted = NULL;
    current = s->killed ? s->current_from : NULL;
    pthread_mutex_unlock(&s->mu);
    for (; c != NULL; c = next) {
        next = c->dnext;
        c->linked = false;
        c->dnext = c->dprev = NULL;
        /* linked cells are live: every claim of one takes the from lock */
        if (tand__from_claim_cell(c)) {
            tand_slot *slot = c->slot;
            tand__from_close(c);
            answered_off(s);
            answer_ended(slot, reason, detail);
        }
    }
    /* the call a killed handler was handling, unless it (or a thread it
    ** gave the name to) has answered it */
    if (current != NULL && (c = tand__from_claim(current)) != NULL) {
        tand_slot *slot = c->slot;
        tand__from_close(c);
        answered_off(s);
        answer_ended(slot, reason, detail);
    }
    while (posted != NULL) {
        tand_slot *slot = posted;
        posted = slot->posted_next;
        slot->posted_next = NULL;
        tand_msg_clear(&slot->reply); /* its batch is not kept */
        answer_ended(slot, reason, detail);
    }
    tand__from_unlock();
}

/* The end as callers, names and monitors see it: every caller still
** waiting is answered (queued ones from s->doomed, deferred ones), the
** name and id are dropped, `ended` is set, the monitors hear (with
** keep_released, those that wait for the journal's release stay), and
** then `finished` lets stoppers return. Runs once per server: at the end
** of terminate on the server's thread, or in tand_server_kill. */
static void end_public(tand_server *s, int reason, const char *detail,
                       bool keep_released)
{
    tand_runtime *rt = s->rt;
    monitor *mons, *kept = NULL;
    mailbox old;
    envelope e;

    pthread_mutex_lock(&s->mu);
    old = s->doomed;
    tand__mbox_init(&s->doomed, 0);
    pthread_mutex_unlock(&s->mu);
    while (tand__mbox_pop(&old, &e)) {
        if (e.kind == ENV_CALL && tand__slot_take(e.slot))
            answer_ended(e.slot, reason, detail);
        tand_msg_clear(&e.msg);
    }
    tand__mbox_free(&old);
    answer_deferred(s, reason, detail);

    pthread_mutex_lock(&rt->table_mu);
    tand__table_del(rt->by_id, &s->id, sizeof s->id);
    if (s->name != NULL &&
        tand__table_get(rt->by_name, s->name, strlen(s->name)) == s)
        tand__table_del(rt->by_name, s->name, strlen(s->name));
    pthread_mutex_unlock(&rt->table_mu);

    pthread_mutex_lock(&s->mu);
    s->ended = true;
    mons = s->monitors;
    s->monitors = NULL;
    if (keep_released) {
        monitor **pm = &mons;
        while (*pm != NULL) {
            monitor *m = *pm;
            if (m->after_release) {
                *pm = m->next;
                m->next = kept;
                kept = m;
            } else {
                pm = &m->next;
            }
        }
        s->monitors = kept;
    }
    pthread_cond_broadcast(&s->room);
    pthread_mutex_unlock(&s->mu);
    /* Monitors hear of the end before stoppers return, so a stopper that
    ** then calls a watcher finds the notice handled first. */
    while (mons != NULL) {
        monitor *m = mons;
        mons = m->next;
        send_down(m, reason, detail);
    }
    pthread_mutex_lock(&s->mu);
    s->finished = true;
    pthread_cond_broadcast(&s->ended_cv);
    pthread_mutex_unlock(&s->mu);
}

/* On the server's thread, once a handler (or terminate) killed by
** tand_server_kill has returned: nothing of the batch is kept, the
** journal is let go and the monitors that waited for that hear of the
** end; then the state is freed (terminate, unless it is the one that
** was killed) and the runtime's reference dropped. */
static void after_kill(tand_server *s, bool terminate_ran)
{
    monitor *mons;
    char *detail;

    pthread_mutex_lock(&s->mu);
    while (!s->finished) /* the killer never blocks: it is near its end */
        tand__cond_wait_until(&s->ended_cv, &s->mu, INT64_MAX);
    mons = s->monitors;
    s->monitors = NULL;
    detail = s->stop_detail ? tand__strdup(s->stop_detail) : NULL;
    pthread_mutex_unlock(&s->mu);
    if (s->journal != NULL) {
        tand__journal_rollback(s->journal);
        tand__journal_close(s->journal);
        s->journal = NULL;
    }
    while (mons != NULL) {
        monitor *m = mons;
        mons = m->next;
        send_down(m, TAND_ECRASHED, detail);
    }
    if (!terminate_ran && s->behaviour->terminate != NULL)
        s->behaviour->terminate(s->state, s, TAND_ECRASHED, detail);
    s->state = NULL;
    free_replies(s);
    free(detail);
    if (s->turn_worker != NULL) /* the worker is back: the spare can go */
        tand__runtime_unblock(s->turn_worker);
    tand_server_release(s); /* the runtime's reference */
}

/* Runs on the server's thread once `stopping` is set. */
static void terminate(tand_server *s)
{
    int reason;
    char *detail;

    pthread_mutex_lock(&s->mu);
    reason = s->stop_reason;
    detail = s->stop_detail;
    s->stop_detail = NULL;
    s->doomed = s->mb;
    tand__mbox_init(&s->mb, s->doomed.limit);
    s->ending = true;
    note_depth(s);
    pthread_mutex_unlock(&s->mu);

    tand__timer_end(s->rt, s);
    if (s->behaviour->terminate != NULL) {
        int64_t t0 = tand__now_ns();
        bool killed;
        handler_open(s);
        s->behaviour->terminate(s->state, s, reason, detail);
        killed = handler_close(s);
        add_held(&s->n_handler_ns, (uint64_t)(tand__now_ns() - t0));
        if (killed) {
            free(detail);
            after_kill(s, true);
            return;
        }
    }
    s->state = NULL;
    free_replies(s);
    if (s->journal != NULL) { /* what terminate wrote, then let go */
        if (reason == 0) /* replies given meanwhile go out after it */
            take_posted(s);
        char err[256] = "";
        int rc = tand__journal_commit(s->journal, err, sizeof err);
        tand__journal_close(s->journal);
        s->journal = NULL;
        send_held(s, rc, err); /* the journal is free for a restart */
        if (rc != 0 && reason == 0) {
            reason = rc;
            free(detail);
            detail = tand__strdup(err);
        }
    }
    end_public(s, reason, detail, false);
    free(detail);
    tand_server_release(s); /* the runtime's reference */
}

int tand_server_kill(tand_server *s, const char *detail)
{
    int turn = TURN_HANDLER, rc;
    char *copy = NULL;
    bool journaled;
    size_t i;

    if (s == NULL)
        return TAND_EINVAL;
    if (detail != NULL && (copy = tand__strdup(detail)) == NULL)
        return TAND_ENOMEM;
    pthread_mutex_lock(&s->mu);
    if (s->ended || s->killed) {
        pthread_mutex_unlock(&s->mu);
        free(copy);
        return TAND_ENOPROC;
    }
    if (!atomic_compare_exchange_strong(&s->turn, &turn, TURN_KILLED)) {
        pthread_mutex_unlock(&s->mu);
        if (turn == TURN_REPLYING) { /* inside tand_reply: in a moment */
            free(copy);
            return TAND_EBUSY;
        }
        /* No handler runs: its thread (or the next) runs the end. */
        rc = tand_server_stop(s, TAND_ECRASHED, copy, 0);
        free(copy);
        return rc;
    }
    /* The handler's thread touches nothing of the turn any more. */
    tand_server_retain(s);
    journaled = s->journal != NULL;
    s->killed = true;
    s->stop_reason = TAND_ECRASHED;
    free(s->stop_detail);
    s->stop_detail = copy;
    atomic_store(&s->stopping, true);
    if (!s->ending) {
        s->doomed = s->mb;
        tand__mbox_init(&s->mb, s->doomed.limit);
        note_depth(s);
    }
    pthread_mutex_unlock(&s->mu);
    if (s->turn_worker != NULL) /* a worker is stuck: start a spare */
        tand__runtime_block(s->turn_worker);
    tand__timer_end(s->rt, s);
    for (i = 0; i < s->nheld; i++) { /* their batch will be rolled back */
        held *h = &s->held[i];
        tand_msg_clear(&h->reply);
        answer_ended(h->slot, TAND_ECRASHED, copy);
    }
    s->nheld = 0;
    /* A supervisor restarts a journaled child only once the journal is
    ** let go, when the handler returns; any other at once. */
    end_public(s, TAND_ECRASHED, copy, journaled);
    tand_server_release(s);
    return 0;
}

/* The idle timer fired, but the server was not idle: armed again. */
static void not_idle(tand_server *s)
{
    atomic_fetch_and(&s->work, ~(unsigned)WORK_IDLE);
    tand__timer_arm(s->rt, s);
}

static void on_idle(tand_server *s)
{
    tand_runtime *rt = s->rt;
    int action;
    pthread_mutex_lock(&rt->timer_mu);
    action = s->idle_ms >= 0 ? s->idle_action : 0;
    pthread_mutex_unlock(&rt->timer_mu);
    if (action == TAND_IDLE_STOP) {
        tand_server_stop(s, 0, NULL, 0);
    } else if (action == TAND_IDLE_NOTIFY) {
        if (s->behaviour->handle_idle != NULL)
            s->behaviour->handle_idle(s->state, s);
        atomic_store(&s->last_active_ns, tand__now_ns());
        tand__timer_arm(rt, s);
    }
}

/* Runs the server, which this thread holds, for up to max_msgs messages
** and then lets it go, or puts it back on the run queue when more is
** waiting. Returns the number handled. */
static int serve(tand_server *s, int max_msgs)
{
    int64_t t0 = tand__now_ns(), t1;
    bool requeue, drained = false;
    int handled = 0;
    envelope e;

    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (atomic_load_explicit(&s->stopping, memory_order_relaxed)) {
            int reason = s->stop_reason;
            char *detail = s->stop_detail ? tand__strdup(s->stop_detail)
                                          : NULL;
            pthread_mutex_unlock(&s->mu);
            char err[256];
            if (s->journal != NULL && reason == 0)
                flush(s, err, sizeof err); /* a normal stop keeps this
                                           ** turn's work */
            else if (s->journal != NULL)
                abort_batch(s, reason, detail);
            free(detail);
            terminate(s);
            return handled;
        }
        if (atomic_load(&s->work) & WORK_IDLE) {
            /* Idle only if nothing waits, this turn handled nothing and
            ** the idle time has passed since the last activity: a timer
            ** that came due while a handler ran is stale (activity is
            ** stored when a turn or an inline call ends). */
            if (s->mb.count == 0 && handled == 0 &&
                !(atomic_load(&s->work) & WORK_REPLIES) &&
                tand__timer_idle_passed(s->rt, s)) {
                atomic_fetch_and(&s->work, ~(unsigned)WORK_IDLE);
                pthread_mutex_unlock(&s->mu);
                on_idle(s);
                pthread_mutex_lock(&s->mu);
                continue;
            }
            not_idle(s);
        }
        if (atomic_load(&s->work) & WORK_POSTED) {
            /* replies other threads gave: held for this batch's commit */
            pthread_mutex_unlock(&s->mu);
            take_posted(s);
            pthread_mutex_lock(&s->mu);
            continue;
        }
        if (handled >= max_msgs)
            break;
        if (!drained && (atomic_load(&s->work) & WORK_REPLIES)) {
            /* Once a turn, and with messages waiting at most half of
            ** what is left of it, so that replies never starve the
            ** mailbox. */
            int max = s->mb.count == 0 ? max_msgs
                                       : handled + (max_msgs - handled + 1) / 2;
            drained = true;
            atomic_fetch_and(&s->work, ~(unsigned)WORK_REPLIES);
            pthread_mutex_unlock(&s->mu);
            if (take_replies(s, max, &handled)) {
                after_kill(s, false);
                return handled;
            }
            pthread_mutex_lock(&s->mu);
            continue;
        }
        if (!tand__mbox_pop(&s->mb, &e))
            break;
        note_depth(s);
        if (s->room_waiters > 0)
            pthread_cond_signal(&s->room);
        pthread_mutex_unlock(&s->mu);
        s->in_message = true;
        if (dispatch(s, &e)) {
            s->in_message = false;
            after_kill(s, false);
            return handled + 1;
        }
        s->in_message = false;
        handled++;
        pthread_mutex_lock(&s->mu);
        /* tand_server_own_batch: commit it alone, unless the message
        ** stopped the server (a crash rolls its batch back, above) */
        if (s->own_batch &&
            !atomic_load_explicit(&s->stopping, memory_order_relaxed))
            break;
    }
    s->own_batch = false;
    if (s->journal != NULL &&
        (s->nheld > 0 || tand__journal_dirty(s->journal))) {
        /* group commit: one commit for the batch, then its replies */
        char err[256];
        pthread_mutex_unlock(&s->mu);
        flush(s, err, sizeof err);
        pthread_mutex_lock(&s->mu);
        if (atomic_load_explicit(&s->stopping, memory_order_relaxed)) {
            pthread_mutex_unlock(&s->mu);
            terminate(s);
            return handled;
        }
    }
    t1 = tand__now_ns();
    if (handled > 0)
        atomic_store_explicit(&s->last_active_ns, t1, memory_order_relaxed);
    /* Counted before the server is given up: once `hold` is clear
    ** and the lock free, another worker may run its stop and the last
    ** reference may go, so this turn touches `s` no more. */
    add_held(&s->n_handler_ns, (uint64_t)(t1 - t0));
    requeue = s->mb.count > 0 || atomic_load(&s->work) != 0 || !let_go(s);
    pthread_mutex_unlock(&s->mu);
    if (requeue)
        tand__runtime_schedule(s->rt, s);
    return handled;
}

int tand__server_run(tand_server *s, int max_msgs)
{
    tand_server *prev = tand__current;
    const call_chain *outer = tand__chain;
    int handled;
    tand__current = s;
    tand__chain = NULL;
    handled = serve(s, max_msgs);
    tand__chain = outer;
    tand__current = prev;
    return handled;
}

/* The holder's own request is done. A server with more to do (a queue,
** its idle timer, a stop) is served on by this thread when its callbacks
** are short (bound_ns <= COMBINE_NS) and this caller's deadline leaves
** room for a batch, but never by a nested call, which serves only its own
** request; otherwise it goes to a worker. A server with nothing to do is
** let go. */
static void give_back(tand_server *s, int64_t t0, const lazy_deadline *d,
                      bool nested)
{
    int64_t t1 = tand__now_ns();
    atomic_store_explicit(&s->last_active_ns, t1, memory_order_relaxed);
    add_held(&s->n_handler_ns, (uint64_t)(t1 - t0));
    if (!has_work(s) && let_go(s))
        return; /* from here on `s` is someone else's */
    if (!nested && s->bound_ns <= COMBINE_NS &&
        (d->ns == INT64_MAX || d->ns - t1 >= BATCH * s->bound_ns))
        tand__server_run(s, BATCH);
    else
        tand__runtime_schedule(s->rt, s);
}

/* Raises one of the server's work flags and schedules it if it is free;
** nothing once it is stopping. */
static void wake(tand_server *s, unsigned work)
{
    bool schedule = false;
    pthread_mutex_lock(&s->mu);
    if (!atomic_load_explicit(&s->stopping, memory_order_relaxed) &&
        !s->ended) {
        atomic_fetch_or(&s->work, work);
        schedule = take_hold(s);
    }
    pthread_mutex_unlock(&s->mu);
    if (schedule)
        tand__runtime_schedule(s->rt, s);
}

void tand__server_fire_idle(tand_server *s)
{
    wake(s, WORK_IDLE);
}

void tand__server_wake_replies(tand_server *s)
{
    wake(s, WORK_REPLIES);
}

/* Waits until the stopping server s has finished its end or the deadline
** passes; true if it has finished. */
static bool wait_finished(tand_server *s, int64_t deadline)
{
    bool finished;
    if (tand__worker_of != NULL) /* a handler waits: keep others running */
        tand__runtime_block(tand__worker_of);
    pthread_mutex_lock(&s->mu);
    while (!s->finished && wait_on(s, &s->ended_cv, deadline))
        ;
    finished = s->finished;
    pthread_mutex_unlock(&s->mu);
    if (tand__worker_of != NULL)
        tand__runtime_unblock(tand__worker_of);
    return finished;
}

int tand_server_stop(tand_server *s, int reason, const char *detail,
                     int64_t timeout_ms)
{
    int64_t deadline;
    bool schedule = false;
    char *copy = NULL;

    if (s == NULL || reason > 0)
        return TAND_EINVAL;
    deadline = tand__deadline(timeout_ms);
    if (detail != NULL && (copy = tand__strdup(detail)) == NULL)
        return TAND_ENOMEM;
    pthread_mutex_lock(&s->mu);
    if (atomic_load_explicit(&s->stopping, memory_order_relaxed)) {
        /* Stopped by someone else: still wait for its end, so that its
        ** name is free when this returns, as for the first stopper. */
        pthread_mutex_unlock(&s->mu);
        free(copy);
        if (tand__current != s && timeout_ms != 0)
            wait_finished(s, deadline);
        return TAND_ENOPROC;
    }
    s->stop_reason = reason;
    s->stop_detail = copy;
    atomic_store(&s->stopping, true);
    pthread_cond_broadcast(&s->room);
    schedule = take_hold(s);
    pthread_mutex_unlock(&s->mu);
    if (schedule)
        tand__runtime_schedule(s->rt, s);
    if (tand__current == s || timeout_ms == 0)
        return 0;
    return wait_finished(s, deadline) ? 0 : TAND_ETIMEDOUT;
}

int tand_server_set_idle(tand_server *s, int64_t idle_ms, int action)
{
    tand_runtime *rt;
    if (s == NULL ||
        (idle_ms >= 0 && action != TAND_IDLE_NOTIFY &&
         action != TAND_IDLE_STOP))
        return TAND_EINVAL;
    if ((rt = tand__server_pin(s)) == NULL)
        return TAND_ENOPROC;
    pthread_mutex_lock(&rt->timer_mu);
    s->idle_ms = idle_ms;
    s->idle_action = action;
    pthread_mutex_unlock(&rt->timer_mu);
    atomic_store(&s->last_active_ns, tand__now_ns());
    if (idle_ms >= 0)
        tand__timer_arm(rt, s);
    else
        tand__timer_cancel(rt, s);
    tand__runtime_unpin(rt);
    return 0;
}
