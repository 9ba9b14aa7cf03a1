/*
** internal.h - structures shared by the engine's files; not installed.
**
** Lock order (never take a lock to the left while holding one to its
** right): the from lock (tand__from_lock), rt->table_mu, s->mu,
** rt->timer_mu, rt->mu, park bucket; a reply box's mu is taken alone or
** under the from lock.
** No lock is held while a behaviour's callback runs.
*/
#ifndef TAND_INTERNAL_H
#define TAND_INTERNAL_H

#include "alloc.h"
#include "tand.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define TAND_HIDDEN __attribute__((visibility("hidden")))

/* ---- time ---- */
TAND_HIDDEN int64_t tand__now_ns(void);
/* Absolute CLOCK_MONOTONIC deadline in ns for a timeout, or INT64_MAX. */
TAND_HIDDEN int64_t tand__deadline(int64_t timeout_ms);
/* A deadline read off the clock only when something first waits for it,
** so that a call answered at once or a cast that finds room costs no
** clock read (about 25 ns each, a tenth of a call). */
typedef struct lazy_deadline {
    int64_t timeout_ms;
    int64_t ns;                  /* valid once known */
    bool known;
} lazy_deadline;
static inline lazy_deadline tand__lazy(int64_t timeout_ms)
{
    lazy_deadline d = { timeout_ms, INT64_MAX, timeout_ms < 0 };
    return d;
}
/* The deadline counted from `now` (a clock reading the caller has anyway)
** unless it is already known. */
TAND_HIDDEN void tand__lazy_from(lazy_deadline *d, int64_t now);
/* The absolute deadline, reading the clock the first time. */
TAND_HIDDEN int64_t tand__lazy_ns(lazy_deadline *d);
/* A mutex for short critical sections under contention: it spins a
** little before sleeping where the platform offers that (glibc). */
TAND_HIDDEN int tand__mutex_init(pthread_mutex_t *mu);
TAND_HIDDEN void tand__timespec(int64_t ns, struct timespec *ts);
TAND_HIDDEN int tand__cond_init(pthread_cond_t *cv);
/* Waits on cv until signalled or deadline_ns; false once it has passed. */
TAND_HIDDEN bool tand__cond_wait_until(pthread_cond_t *cv,
                                       pthread_mutex_t *mu,
                                       int64_t deadline_ns);
TAND_HIDDEN void tand__cpu_relax(void);

/* ---- reply slots (park.c) ----
** A call's reply slot. Its state word moves by compare-and-swap:
**   WAITING -> TAKEN      the server starts the request
**   WAITING -> ABANDONED  the caller's deadline passed first: the server
**                         skips the request and frees the slot
**   TAKEN -> ABANDONED    the caller gave up during the request: the
**                         server drops its reply and frees the slot
**   TAKEN -> REPLYING -> REPLIED  the server writes the reply; the caller
**                         owns the slot again once it reads REPLIED
** The PARKED bit says the caller sleeps and must be woken. */
enum {
    SLOT_WAITING = 0,
    SLOT_TAKEN = 1,
    SLOT_REPLYING = 2,
    SLOT_REPLIED = 3,
    SLOT_ABANDONED = 4,
    SLOT_PARKED = 8
};

/* A request's causal chain: the ids of the servers whose handlers wait,
** on any thread, for it (newest last). A call whose target is in its
** chain would wait on itself: it fails at once with calling_self. The
** ids are copied, never pointers, so a chain is sound whatever has
** ended since; past CHAIN_MAX servers the oldest are dropped (such a
** cycle waits for its deadline instead). */
#define CHAIN_MAX 16
typedef struct call_chain {
    int n;
    uint64_t id[CHAIN_MAX];
} call_chain;

typedef struct tand_slot tand_slot;
struct tand_slot {
    _Atomic unsigned state;
    tand_msg reply;              /* the reply; also a reply posted from
                                 ** another thread to a journaled server,
                                 ** until that server sends it */
    tand_server *server;         /* the callee, for stats (borrowed) */
    tand_slot *posted_next;      /* the callee's posted list (guarded by
                                 ** its mu) */
    /* an asynchronous call's (replies.c); NULL box for a waiting caller */
    tand_replies *box;
    uint64_t tag;
    int64_t deadline_ns;
    tand_slot *pnext, *pprev;    /* box's deadline list; box owner only */
    tand_slot *done_next;        /* box's done list (guarded by box mu),
                                 ** then its owner's taken list */
    bool pending;                /* in the deadline list */
    call_chain chain;            /* last: only chain.n is cleared */
};

TAND_HIDDEN tand_slot *tand__slot_new(void);
/* Caller side, without waiting: true with the reply moved to *reply (the
** slot freed) when it is already REPLIED. */
TAND_HIDDEN bool tand__slot_collect(tand_slot *slot, tand_msg *reply);
/* The process-wide spin budget, shared by waiting callers and idle
** workers of every runtime (they share the cores): true when this thread
** may spin, and then it calls tand__spin_end when it stops spinning. */
TAND_HIDDEN bool tand__spin_begin(void);
TAND_HIDDEN void tand__spin_end(void);
TAND_HIDDEN void tand__slot_free(tand_slot *slot);
/* Caller side: waits for REPLIED or the deadline. Returns 0 with the reply
** moved to *reply, or TAND_ETIMEDOUT after abandoning the slot (then the
** server owns and frees it). `pumped`: the pumped runtime to pump while
** waiting (pinned by the caller), or NULL; nothing else of a runtime is
** used, so an answered caller does not need one any more. How it waits
** (spin, yield, park) follows reply_ns, the server's recent wait, and
** `brief`: the server's callbacks are declared short. */
TAND_HIDDEN int tand__slot_wait(tand_slot *slot, tand_runtime *pumped,
                                bool brief, lazy_deadline *deadline,
                                _Atomic int64_t *reply_ns, tand_msg *reply);
/* Server side: WAITING -> TAKEN. false: abandoned, and freed. */
TAND_HIDDEN bool tand__slot_take(tand_slot *slot);
/* Server side: delivers reply (consumed); frees an abandoned slot and
** returns false for it. */
TAND_HIDDEN bool tand__slot_reply(tand_slot *slot, tand_msg *reply);
/* Caller side: gives the slot up to the server (WAITING or TAKEN ->
** ABANDONED); false when the reply is already being written. */
TAND_HIDDEN bool tand__slot_abandon(tand_slot *slot);
/* Server side, after publishing the reply of an asynchronous call: hands
** the slot to its box (replies.c). */
TAND_HIDDEN void tand__replies_done(tand_replies *box, tand_slot *slot);
/* Owner side: a new asynchronous call's slot joins the box, and leaves it
** again if the call could not be sent. */
TAND_HIDDEN void tand__replies_attach(tand_replies *box, tand_slot *slot,
                                      uint64_t tag, int64_t deadline_ns);
TAND_HIDDEN void tand__replies_detach(tand_replies *box, tand_slot *slot);
/* Server side: whether the caller has already given up (a hint: it may
** give up right after a false answer). */
TAND_HIDDEN bool tand__slot_abandoned(tand_slot *slot);
/* A server's own reply box, for tand_send_request: it has no
** descriptor; a reply that comes in wakes the server instead
** (tand__server_wake_replies), and the box holds a reference on it. */
TAND_HIDDEN int tand__replies_new_owned(tand_server *owner,
                                        tand_replies **out);
/* Owner side: the earliest deadline of the calls in flight, or
** INT64_MAX. */
TAND_HIDDEN int64_t tand__replies_next_deadline(const tand_replies *box);

/* ---- from cells (park.c) ----
** The tand_from a handler gets is not a pointer but a name: a cell's
** index and generation, so that a `from` answered already, or whose
** server has ended, is told apart from a live one whatever thread
** holds it, and never reaches freed memory. Cells are never freed
** (chunks of them live for the process); each is reused with the next
** generation. A cell's word moves by compare-and-swap:
**   FREE -> LIVE   tand__from_open, when the server takes a call
**   LIVE -> BUSY   tand__from_claim: this thread alone answers it
**   BUSY -> FREE   tand__from_close, once the claimer has the slot
** Who may claim: the server's own thread for the call it is handling
** (without the from lock, between handle_call's return and the next
** kill-free step); everyone else (tand_reply, the end of the server)
** under the from lock, which is how a server's end (end_public) knows
** no other thread still uses the server for one of its callers. */
typedef struct from_cell {
    _Atomic uint64_t word;        /* generation << 2 | CELL_* */
    tand_slot *slot;              /* the call; set while FREE, by the
                                  ** opener, read by the claimer */
    tand_server *server;          /* the call's server (likewise) */
    bool linked;                  /* in server->deferred (guarded by
                                  ** server->mu) */
    struct from_cell *dnext, *dprev; /* server->deferred (likewise) */
    struct from_cell *free_next;  /* a free list (its owner's) */
    uint32_t index;
} from_cell;

/* A new live cell for slot, a call of s, and its name; NULL without
** memory for the cell. */
TAND_HIDDEN tand_from *tand__from_open(tand_slot *slot, tand_server *s,
                                       from_cell **cell);
/* The cell `from` names while it is live, now this thread's to answer
** (BUSY); NULL when from names no live call (answered already, its
** server ended, or not a from at all). */
TAND_HIDDEN from_cell *tand__from_claim(tand_from *from);
/* Claims the live cell c, whatever its generation: false if it is not
** live. For a server's end, which finds its cells in its list. */
TAND_HIDDEN bool tand__from_claim_cell(from_cell *c);
/* Gives a claimed cell back (its slot is the claimer's to answer). */
TAND_HIDDEN void tand__from_close(from_cell *c);
/* Whether from still names a live call (a hint, for whoever alone may
** claim it). */
TAND_HIDDEN bool tand__from_live(tand_from *from);
/* The from lock: see above. */
TAND_HIDDEN void tand__from_lock(void);
TAND_HIDDEN void tand__from_unlock(void);

/* ---- timers (runtime.c) ----
** A runtime's timer thread (or its pump) keeps one min-heap of the
** servers' timers, of two kinds: the idle timer, and the earliest
** deadline of the requests a server sent (tand_send_request). A timer in
** the heap holds a reference on its server. */
enum { TIMER_IDLE, TIMER_REPLIES };
typedef struct tand_timer {
    int64_t due_ns;              /* guarded by rt->timer_mu */
    size_t index;                /* guarded by rt->timer_mu; SIZE_MAX:
                                 ** not in the heap */
    tand_server *server;         /* set at start */
    int kind;                    /* TIMER_* */
} tand_timer;

/* ---- mailbox (mailbox.c) ---- */
enum { ENV_CALL = 1, ENV_CAST = 2, ENV_INFO = 3 };

typedef struct envelope {
    int kind;
    tand_msg msg;
    tand_slot *slot; /* calls */
} envelope;

typedef struct mailbox {
    envelope *ring; /* allocated lazily, grows up to limit + reserved */
    uint32_t head, count, cap, limit;
    uint32_t peak;
    uint32_t reserved; /* room kept free for forced notices */
} mailbox;

TAND_HIDDEN void tand__mbox_init(mailbox *mb, uint32_t limit);
/* 0, TAND_EBUSY when full (unless force), TAND_ENOMEM when it cannot
** grow. A forced push uses up one reservation, if any. */
TAND_HIDDEN int tand__mbox_push(mailbox *mb, const envelope *e, bool force);
/* Keeps room for one more forced notice, so that it cannot fail for want
** of memory later: 0 or TAND_ENOMEM. */
TAND_HIDDEN int tand__mbox_reserve(mailbox *mb);
/* Gives back one reservation that no notice will use. */
TAND_HIDDEN void tand__mbox_unreserve(mailbox *mb);
TAND_HIDDEN bool tand__mbox_pop(mailbox *mb, envelope *e);
TAND_HIDDEN void tand__mbox_free(mailbox *mb);

/* ---- servers (server.c) ---- */

/* A reply held until its batch is durable. */
typedef struct held {
    tand_slot *slot;
    tand_msg reply;
} held;

typedef struct monitor {
    struct monitor *next;
    tand_server *watcher; /* retained; or NULL: */
    tand_slot *slot;      /* the reply slot of a box's monitor
                          ** (tand_monitor_async), which its box may
                          ** abandon at any time */
    int64_t tag;
    bool after_release;   /* told only once the server let go of its
                          ** journal (supervisors: see tand__monitor) */
} monitor;

/* A server's work besides its mailbox: its idle timer fired; replies
** of its requests (or a deadline of one) to take. One word, so that a
** holder letting go looks at both with one load. */
enum { WORK_IDLE = 1, WORK_REPLIES = 2, WORK_POSTED = 4 };

/* Who may touch a server's in-turn records (the call being handled, the
** held replies): its own thread between handlers
** (ENGINE) and while its handler calls tand_reply (REPLYING); while a
** handler runs (HANDLER), tand_server_kill may take them over (KILLED). */
enum { TURN_ENGINE = 0, TURN_HANDLER = 1, TURN_REPLYING = 2, TURN_KILLED = 3 };

struct tand_server {
    _Atomic int refs;
    tand_runtime *rt;
    uint64_t id;
    const tand_behaviour *behaviour;
    void *state;                 /* server thread only */
    int64_t bound_ns;            /* the declared bound of one callback;
                                 ** 0 (none, or journaled): never run by
                                 ** a caller. Set at start only. */

    pthread_mutex_t mu;
    pthread_cond_t room;         /* senders waiting for room */
    pthread_cond_t ended_cv;     /* stoppers waiting for terminate */
    mailbox mb;                  /* guarded by mu */
    /* 1 while a thread holds the server (a caller running it, a worker,
    ** the pump) or it waits on the run queue. Taken only by CAS from 0
    ** (a push, a stop, the idle timer, a caller), dropped only by its
    ** holder, which then looks for work that came meanwhile (see
    ** let_go in server.c). */
    _Atomic int hold;
    int room_waiters;            /* guarded by mu */
    int stop_reason;             /* guarded by mu */
    char *stop_detail;           /* guarded by mu */
    _Atomic unsigned work;       /* WORK_* bits, set under mu or by the
                                 ** holder: work besides the mailbox */
    tand_replies *replies;       /* server thread only: its requests'
                                 ** box, made at the first, or NULL */
    int64_t replies_due_ns;      /* server thread only: the reply
                                 ** timer as last armed */
    bool ended;                  /* guarded by mu: new monitors are told */
    bool finished;               /* guarded by mu: all notices sent */
    bool killed;                 /* guarded by mu: tand_server_kill ended
                                 ** it while a handler ran */
    bool ending;                 /* guarded by mu: terminate has begun */
    mailbox doomed;              /* guarded by mu: the mailbox of a server
                                 ** ending, whose callers are answered */
    _Atomic int turn;            /* TURN_* */
    tand_runtime *turn_worker;   /* the worker running the handler (set
                                 ** before turn = HANDLER), or NULL */
    _Atomic bool stopping;       /* written under mu, read anywhere */

    tand_server *run_next;       /* guarded by rt->mu */

    int64_t idle_ms;             /* guarded by rt->timer_mu */
    int idle_action;             /* guarded by rt->timer_mu */
    tand_timer idle_timer;
    tand_timer reply_timer;
    bool timers_reserved;        /* guarded by rt->timer_mu */
    _Atomic int64_t last_active_ns;

    monitor *monitors;           /* guarded by mu */
    size_t nmonitors;            /* guarded by mu: in the list */
    size_t monitors_pruned;      /* guarded by mu: left at the last prune */
    char *name;                  /* guarded by rt->table_mu */
    from_cell *deferred;         /* guarded by mu: the deferred calls */
    tand_slot *posted;           /* guarded by mu: replies other threads
                                 ** gave to this journaled server, to go
                                 ** out with its next batch (newest
                                 ** first) */
    from_cell *current_cell;     /* the call being handled, or NULL: set
                                 ** by the server's thread before the
                                 ** handler opens, read by a kill */
    tand_from *current_from;
    bool journaled;              /* set at start: a journal was opened */
    tand_journal *journal;       /* server thread only, or NULL */
    struct held *held;           /* replies waiting for the commit */
    size_t nheld, capheld;       /* server thread only */
    bool own_batch;              /* server thread only: the message being
                                 ** handled ends its batch */
    bool in_message;             /* server thread only: serve() is
                                 ** dispatching a mailbox message */

    _Atomic uint64_t n_calls, n_casts, n_infos, n_errors, n_timeouts;
    _Atomic uint64_t n_handler_ns, n_restarts;
    _Atomic uint64_t depth, peak;
    /* The calls taken and not answered (stats' deferred) are taken -
    ** answered - answered_off: the holder counts the calls it takes and
    ** those it answers as it returns from handle_call with plain stores
    ** (the call path pays no locked instruction for them); answers from
    ** elsewhere (tand_reply, a server's end) add atomically. */
    _Atomic uint64_t n_taken, n_answered; /* the holder's */
    _Atomic uint64_t n_answered_off;      /* any thread's */
    _Atomic int64_t reply_ns;    /* callers' recent wait, for spinning */
};

/* Runs a scheduled server for up to max_msgs messages on this thread.
** Returns the number handled. Called by workers and the pump. */
TAND_HIDDEN int tand__server_run(tand_server *s, int max_msgs);
/* The timer thread or pump found the server idle long enough. */
TAND_HIDDEN void tand__server_fire_idle(tand_server *s);
/* A reply came into the server's box, or the timer thread or pump found
** a deadline of its requests passed: the server takes them. */
TAND_HIDDEN void tand__server_wake_replies(tand_server *s);
/* tand_monitor, with after_release: the notice waits until the server
** has let go of its journal, so a supervisor never restarts a journaled
** child that a killed handler still holds. */
TAND_HIDDEN int tand__monitor(tand_server *watched, tand_server *watcher,
                              int64_t tag, bool after_release);

/* ---- machines (machines.c) ---- */
/* auto_shutdown_ms of the deluxe and policy options as an idle time for
** tand_server_set_idle: -1 (never) for 0 and TAND_FOREVER, 0 for
** TAND_SHUTDOWN_AT_ONCE, else itself. */
TAND_HIDDEN int64_t tand__idle_of_shutdown(int64_t auto_shutdown_ms);

/* ---- journals (journal_api.c, journal.c) ---- */

/* What a journal does, whatever keeps it: a SQLite file (journal.c) or a
** clustered machine's stream (cluster_journal.c). The engine and the
** behaviours reach it only through tand_journal_* and tand__journal_*
** (journal_api.c), so the machines journal the same way on either. */
typedef struct journal_ops {
    void (*close)(tand_journal *j);
    /* Commits the batch's writes; on a failure (now or earlier in the
    ** batch) drops them, says why in err and returns the error. */
    int (*commit)(tand_journal *j, char *err, size_t n);
    void (*rollback)(tand_journal *j); /* drops the batch's writes */
    bool (*dirty)(const tand_journal *j); /* something to commit */
    int (*set_int)(tand_journal *j, const char *key, int64_t v);
    int (*set_blob)(tand_journal *j, const char *key, const void *p,
                    size_t n);
    int (*get_int)(tand_journal *j, const char *key, int64_t *v, int *found);
    int (*get_blob)(tand_journal *j, const char *key, char **out, size_t *n,
                    int *found);
    int (*queue_push)(tand_journal *j, int64_t number);
    int (*queue_remove)(tand_journal *j, int64_t number);
    int (*queue_clear)(tand_journal *j);
    int (*queue_load)(tand_journal *j, int (*fn)(void *ud, int64_t number),
                      void *ud);
} journal_ops;

/* The head of every journal. */
struct tand_journal {
    const journal_ops *ops;
    bool fresh; /* nothing to resume: this start made it */
};

/* Opens (or creates) the SQLite journal of a server of `kind` and holds
** it until tand__journal_close (see journal.c): TAND_EJOURNALLOCKED when
** another server holds it. On failure `err` says why and an existing
** file is untouched. */
TAND_HIDDEN int tand__sqlite_journal_open(const char *path, const char *kind,
                                          int durability, tand_journal **out,
                                          char *err, size_t n);
TAND_HIDDEN void tand__journal_close(tand_journal *j);
TAND_HIDDEN int tand__journal_commit(tand_journal *j, char *err, size_t n);
TAND_HIDDEN void tand__journal_rollback(tand_journal *j);
TAND_HIDDEN bool tand__journal_dirty(const tand_journal *j);

/* A journal made elsewhere (a clustered machine's) for the next
** tand_server_start on this thread to use instead of opening one: the
** server owns it from then on, on every path (closed if the start
** fails). Consumed by that start. */
TAND_HIDDEN void tand__journal_adopt(tand_journal *j);
/* The adopted journal no start took (a start that failed before it got
** there), now the caller's again; or NULL. */
TAND_HIDDEN tand_journal *tand__journal_unadopted(void);

/* ---- runtime (runtime.c) ---- */
typedef struct tand_table tand_table;

struct tand_runtime {
    int nworkers;
    pthread_t *workers;
    pthread_t timer_thread;
    bool timer_started;

    pthread_mutex_t mu;          /* the run queue */
    pthread_cond_t work;         /* idle workers sleep here */
    tand_server *rq_head;        /* guarded by mu */
    tand_server *rq_tail;        /* guarded by mu */
    int sleepers;                /* guarded by mu */
    bool shutdown;               /* guarded by mu */
    int total_workers;           /* guarded by mu: base + spare */
    int blocked_workers;         /* guarded by mu: waiting in a call */
    int spare_workers;           /* guarded by mu */
    pthread_cond_t spares_done;  /* shutdown waits for spares here */
    _Atomic size_t rq_len;
    _Atomic int spinning_workers;

    pthread_mutex_t timer_mu;    /* the timer heap */
    pthread_cond_t timer_cv;
    tand_timer **heap;           /* guarded by timer_mu */
    size_t heap_len, heap_cap;   /* guarded by timer_mu */
    size_t heap_reserved;        /* guarded by timer_mu: room promised */
    bool timer_shutdown;         /* guarded by timer_mu */

    pthread_mutex_t table_mu;    /* names and ids */
    tand_table *by_id;           /* guarded by table_mu */
    tand_table *by_name;         /* guarded by table_mu */
    bool closed;                 /* guarded by table_mu */

    _Atomic(void *) pump_owner;  /* pumped mode: the pumping thread */
    _Atomic int pins;            /* threads that still use rt through a
                                 ** server: tand_runtime_free waits them */
};

/* Puts a server that has work on the run queue; the caller has just set
** taken s->held for it. */
TAND_HIDDEN void tand__runtime_schedule(tand_runtime *rt, tand_server *s);
/* Room in the heap for a new server's two timers, so that arming one
** never fails: 0 or TAND_ENOMEM. */
TAND_HIDDEN int tand__timer_reserve(tand_runtime *rt, tand_server *s);
/* Idle timers: arm counts from s->last_active_ns; cancel disarms;
** idle_passed: whether the idle time has passed since then. */
TAND_HIDDEN void tand__timer_arm(tand_runtime *rt, tand_server *s);
TAND_HIDDEN void tand__timer_cancel(tand_runtime *rt, tand_server *s);
TAND_HIDDEN bool tand__timer_idle_passed(tand_runtime *rt, tand_server *s);
/* At the server's end (or a failed start): both of its timers out, and
** their room given back (once, however often it is called). */
TAND_HIDDEN void tand__timer_end(tand_runtime *rt, tand_server *s);
/* The reply timer: due at due_ns, or none for INT64_MAX. */
TAND_HIDDEN void tand__timer_set_replies(tand_runtime *rt, tand_server *s,
                                         int64_t due_ns);
/* A worker about to wait in a call from a handler: starts a spare worker
** when no other worker would be left to run servers. */
TAND_HIDDEN void tand__runtime_block(tand_runtime *rt);
TAND_HIDDEN void tand__runtime_unblock(tand_runtime *rt);
/* The runtime whose worker this thread is, or NULL. */
extern _Thread_local tand_runtime *tand__worker_of;
/* Pumped mode helper for waits: pump a little if nobody else is. */
TAND_HIDDEN void tand__runtime_help(tand_runtime *rt);
/* Pumped mode: this thread takes the right to run the runtime's handlers
** (one thread at a time). 0: another thread has it; 1: taken, give it
** back with tand__pump_release; 2: this thread already had it. */
TAND_HIDDEN int tand__pump_claim(tand_runtime *rt);
TAND_HIDDEN void tand__pump_release(tand_runtime *rt);
TAND_HIDDEN bool tand__runtime_pumped(const tand_runtime *rt);
/* Cores online (1..256), read once. */
TAND_HIDDEN int tand__ncpu(void);
/* The runtime of a server that is not stopping, kept alive (against a
** concurrent tand_runtime_free) until tand__runtime_unpin; NULL once the
** server is stopping. */
TAND_HIDDEN tand_runtime *tand__server_pin(tand_server *s);
TAND_HIDDEN void tand__runtime_unpin(tand_runtime *rt);

/* ---- tables (table.c): names and ids ---- */
TAND_HIDDEN tand_table *tand__table_new(void);
TAND_HIDDEN void tand__table_free(tand_table *t);
/* 0, TAND_ENAMETAKEN, TAND_ENOMEM. The key is copied. */
TAND_HIDDEN int tand__table_put(tand_table *t, const void *key, size_t len,
                                void *value);
TAND_HIDDEN void *tand__table_get(tand_table *t, const void *key, size_t len);
TAND_HIDDEN void *tand__table_del(tand_table *t, const void *key, size_t len);
/* Calls fn for each value; fn must not change the table. */
TAND_HIDDEN void tand__table_each(tand_table *t, void (*fn)(void *, void *),
                                  void *ud);
TAND_HIDDEN size_t tand__table_count(const tand_table *t);

/* ---- thread-local: the request running on this thread ----
** A thread that runs a server adopts the context of each request it
** serves: the server (tand__current) and the request's causal chain
** (tand__chain, on the stack of the running dispatch; NULL outside a
** call's handler). Nested runs save and restore both. */
extern _Thread_local tand_server *tand__current;
extern _Thread_local const call_chain *tand__chain;

#endif
