/*
** park.c - reply slots: how a reply finds its caller.
**
** DESIGN: a caller allocates a slot, puts it in the call's envelope and
** waits on the slot's state word (the transitions are in internal.h). The
** server thread takes the request and later publishes the reply with one
** atomic exchange to REPLIED; the caller owns the slot again the moment it
** reads REPLIED, so the replier touches nothing of the slot after that
** exchange. A caller first spins on the word (a reply from a running
** thread then costs a cache-line transfer, not a system call); while the
** server's recent replies came quickly it then yields its core for a
** while (its request is served by the thread holding the server, which
** must not pay a wake-up per waiter, and may be the very thread the core
** goes to); then it parks.
** Parked callers sleep on the state word itself (a Linux futex), or
** elsewhere on a condition variable in a fixed table of buckets hashed by
** slot address (a "parking lot"); either way the replier uses the address
** only as a key, so it may wake after the slot is gone.
** Spinning is limited process-wide (tand__spin_begin: callers and idle
** workers together, fewer than the cores), so threads that outnumber the
** cores do not burn the CPU the servers need. A caller that gives up
** abandons the slot by CAS; ownership then passes to the server, which
** skips the request or drops the reply and frees the slot.
*/
#ifdef __linux__
#define _DEFAULT_SOURCE /* syscall() */
#endif
#include "internal.h"

#include <sched.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#endif

#define NBUCKETS 64
/* A caller spins for about twice the server's recent reply time, within
** these bounds, and parks at once when replies take longer than the most:
** spinning through an fsync only takes the core the others need. */
#define SPIN_MIN_NS 10000
#define SPIN_MAX_NS 60000

#ifdef __linux__
/* Linux: the kernel parks the caller on the state word itself (a futex),
** and a wake reaches exactly that caller. A wake on a slot already
** reused is at worst a spurious wakeup, which the waiter's loop absorbs. */
static void park(_Atomic unsigned *word, unsigned seen, int64_t deadline_ns)
{
    struct timespec rel;
    int64_t left = deadline_ns - tand__now_ns();
    if (left <= 0)
        return;
    rel.tv_sec = (time_t)(left / 1000000000);
    rel.tv_nsec = (long)(left % 1000000000);
    syscall(SYS_futex, (unsigned *)word, FUTEX_WAIT_PRIVATE, seen,
            deadline_ns == INT64_MAX ? NULL : &rel, NULL, 0);
}

static void unpark(_Atomic unsigned *word)
{
    syscall(SYS_futex, (unsigned *)word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL,
            0);
}
#else
typedef struct bucket {
    pthread_mutex_t mu;
    pthread_cond_t cv;
} bucket;

static bucket buckets[NBUCKETS];

static void buckets_init(void)
{
    int i;
    for (i = 0; i < NBUCKETS; i++) {
        pthread_mutex_init(&buckets[i].mu, NULL);
        /* If the monotonic clock cannot be set the wait still loops on
        ** its predicate and deadline; tand__cond_init only fails on
        ** resource exhaustion at startup. */
        if (tand__cond_init(&buckets[i].cv) != 0)
            pthread_cond_init(&buckets[i].cv, NULL);
    }
}

static bucket *bucket_of(const void *p)
{
    uintptr_t h = (uintptr_t)p;
    h ^= h >> 17;
    h *= UINT64_C(0x9E3779B97F4A7C15);
    return &buckets[(h >> 32) % NBUCKETS];
}

/* Elsewhere: a bucket of the parking lot, checked under its mutex. */
static void park(_Atomic unsigned *word, unsigned seen, int64_t deadline_ns)
{
    bucket *b = bucket_of(word);
    pthread_mutex_lock(&b->mu);
    if (atomic_load_explicit(word, memory_order_acquire) == seen)
        tand__cond_wait_until(&b->cv, &b->mu, deadline_ns);
    pthread_mutex_unlock(&b->mu);
}

static void unpark(_Atomic unsigned *word)
{
    bucket *b = bucket_of(word);
    pthread_mutex_lock(&b->mu);
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}
#endif

/* Each thread keeps its last freed slot for its next call: a caller in a
** loop then never goes to malloc. It is a thread-local pointer (a key's
** get and set cost a fifth of a call); the key, set once per thread to
** the pointer's address, only frees the slot when the thread ends. */
static pthread_key_t spare_key;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;
static bool spare_ok;
static _Thread_local tand_slot *spare;
static _Thread_local bool spare_keyed;

static void spare_gone(void *p)
{
    tand_slot **mine = p;
    free(*mine);
    *mine = NULL;
    spare_keyed = false; /* a later free keys it again */
}

static void spare_init(void)
{
    spare_ok = pthread_key_create(&spare_key, spare_gone) == 0;
#ifndef __linux__
    buckets_init();
#endif
}

tand_slot *tand__slot_new(void)
{
    tand_slot *slot = spare;
    if (slot != NULL) {
        spare = NULL;
        memset(slot, 0, offsetof(tand_slot, chain));
        slot->chain.n = 0;
        atomic_init(&slot->state, SLOT_WAITING);
        return slot;
    }
    pthread_once(&spare_once, spare_init); /* before the first park */
    return tand__calloc(1, sizeof(tand_slot));
}

void tand__slot_free(tand_slot *slot)
{
    if (slot == NULL)
        return;
    tand_msg_clear(&slot->reply);
    if (spare == NULL) {
        if (!spare_keyed) {
            pthread_once(&spare_once, spare_init);
            spare_keyed = spare_ok &&
                          pthread_setspecific(spare_key, &spare) == 0;
        }
        if (spare_keyed) {
            spare = slot;
            return;
        }
    }
    free(slot);
}

bool tand__slot_take(tand_slot *slot)
{
    unsigned s = SLOT_WAITING;
    if (atomic_compare_exchange_strong_explicit(&slot->state, &s, SLOT_TAKEN,
                                                memory_order_acquire,
                                                memory_order_acquire))
        return true;
    if ((s & ~SLOT_PARKED) == SLOT_WAITING) {
        /* Parked while waiting: keep the bit. */
        if (atomic_compare_exchange_strong_explicit(
                &slot->state, &s, SLOT_TAKEN | SLOT_PARKED,
                memory_order_acquire, memory_order_acquire))
            return true;
    }
    /* Abandoned: the slot is ours to free. */
    tand__slot_free(slot);
    return false;
}

bool tand__slot_abandoned(tand_slot *slot)
{
    unsigned s = atomic_load_explicit(&slot->state, memory_order_acquire);
    return (s & ~SLOT_PARKED) == SLOT_ABANDONED;
}

bool tand__slot_reply(tand_slot *slot, tand_msg *reply)
{
    unsigned s = atomic_load_explicit(&slot->state, memory_order_acquire);
    tand_replies *box;
    for (;;) {
        if ((s & ~SLOT_PARKED) == SLOT_ABANDONED) {
            tand_msg_clear(reply);
            tand__slot_free(slot);
            return false;
        }
        if (atomic_compare_exchange_weak_explicit(
                &slot->state, &s, SLOT_REPLYING | (s & SLOT_PARKED),
                memory_order_acquire, memory_order_acquire))
            break;
    }
    slot->reply = *reply;
    memset(reply, 0, sizeof *reply);
    box = slot->box;
    s = atomic_exchange_explicit(&slot->state, SLOT_REPLIED,
                                 memory_order_acq_rel);
    /* From here on the slot belongs to the caller again: unpark uses its
    ** address only as a key, never the memory. An asynchronous caller
    ** learns of the reply only from its box, so the slot is still there
    ** to be handed over. */
    if (box != NULL)
        tand__replies_done(box, slot);
    else if (s & SLOT_PARKED)
        unpark(&slot->state);
    return true;
}

static int take_reply(tand_slot *slot, tand_msg *reply)
{
    *reply = slot->reply;
    memset(&slot->reply, 0, sizeof slot->reply);
    tand__slot_free(slot);
    return 0;
}

bool tand__slot_collect(tand_slot *slot, tand_msg *reply)
{
    if (atomic_load_explicit(&slot->state, memory_order_acquire) !=
        SLOT_REPLIED)
        return false;
    take_reply(slot, reply);
    return true;
}

bool tand__slot_abandon(tand_slot *slot)
{
    unsigned s = atomic_load_explicit(&slot->state, memory_order_acquire);
    for (;;) {
        unsigned base = s & ~SLOT_PARKED;
        if (base == SLOT_REPLYING || base == SLOT_REPLIED)
            return false;
        if (atomic_compare_exchange_weak_explicit(
                &slot->state, &s, SLOT_ABANDONED, memory_order_acq_rel,
                memory_order_acquire))
            return true;
    }
}

static bool replied(tand_slot *slot)
{
    return atomic_load_explicit(&slot->state, memory_order_acquire) ==
           SLOT_REPLIED;
}

/* Folds this call's wait into the server's recent reply time. start is
** 0 when the reply came before the first clock reading (a few dozen
** spins, far below SPIN_MIN_NS): that wait counts as none, without
** reading the clock. The shared word is written only when it changes. */
static void learn(_Atomic int64_t *reply_ns, int64_t start)
{
    int64_t took = start == 0 ? 0 : tand__now_ns() - start;
    int64_t avg = atomic_load_explicit(reply_ns, memory_order_relaxed);
    int64_t next = avg + (took - avg) / 8;
    if (next != avg)
        atomic_store_explicit(reply_ns, next, memory_order_relaxed);
}

/* The first clock reading of a wait: its start for learn(), and the
** call's deadline if nothing has fixed it yet. */
static int64_t first_reading(lazy_deadline *deadline)
{
    int64_t now = tand__now_ns();
    tand__lazy_from(deadline, now);
    return now;
}

/* Parks until the slot is REPLIED; false after abandoning it at the
** deadline (then the server owns it). */
static bool sleep_until(tand_slot *slot, int64_t deadline_ns)
{
    unsigned s = atomic_load_explicit(&slot->state, memory_order_acquire);
    while (s != SLOT_REPLIED) {
        if (!(s & SLOT_PARKED)) {
            if (!atomic_compare_exchange_weak_explicit(
                    &slot->state, &s, s | SLOT_PARKED, memory_order_acq_rel,
                    memory_order_acquire))
                continue;
            s |= SLOT_PARKED;
        }
        if (tand__now_ns() >= deadline_ns) {
            if (tand__slot_abandon(slot))
                return false;
            /* Being written: the replier needs no lock to finish. */
            while (!replied(slot))
                sched_yield();
            return true;
        }
        park(&slot->state, s, deadline_ns);
        s = atomic_load_explicit(&slot->state, memory_order_acquire);
    }
    return true;
}

/* Threads spinning (callers for a reply, workers for work), counted
** process-wide: every runtime shares the same cores, and one core is
** left to the thread they wait for. */
static _Atomic int spinners;

bool tand__spin_begin(void)
{
    if (atomic_fetch_add_explicit(&spinners, 1, memory_order_relaxed) <
        tand__ncpu() - 1)
        return true;
    atomic_fetch_sub_explicit(&spinners, 1, memory_order_relaxed);
    return false;
}

void tand__spin_end(void)
{
    atomic_fetch_sub_explicit(&spinners, 1, memory_order_relaxed);
}

/* A caller of a server with short callbacks, or whose recent replies
** came within half this time, waits up to this long by giving its core
** away (sched_yield) before it parks. */
#define YIELD_MAX_NS 400000

int tand__slot_wait(tand_slot *slot, tand_runtime *pumped, bool brief,
                    lazy_deadline *deadline, _Atomic int64_t *reply_ns,
                    tand_msg *reply)
{
    int64_t start = 0; /* the first clock reading, taken once a wait lasts */
    int64_t budget = 2 * atomic_load_explicit(reply_ns, memory_order_relaxed);
    int i;

    if (budget < SPIN_MIN_NS)
        budget = SPIN_MIN_NS;
    /* Spin while there are cores to spare and replies come quickly. */
    if (!pumped && budget <= 2 * SPIN_MAX_NS && tand__spin_begin()) {
        int64_t spin = budget > SPIN_MAX_NS ? SPIN_MAX_NS : budget;
        for (i = 1;; i++) {
            if (replied(slot)) {
                tand__spin_end();
                learn(reply_ns, start);
                return take_reply(slot, reply);
            }
            tand__cpu_relax();
            if ((i & 31) == 0) {
                if (start == 0)
                    start = first_reading(deadline);
                else if (tand__now_ns() - start >= spin)
                    break;
            }
        }
        tand__spin_end();
    }
    if (start == 0)
        start = first_reading(deadline);

    if (!pumped && (brief || budget <= YIELD_MAX_NS)) {
        /* The server's callbacks are short, or its replies came soon:
        ** give the core away, perhaps to a holder that was preempted,
        ** rather than cost the replier a wake-up (a holder in an fsync or
        ** a long callback makes replies slow, and then its waiters park
        ** at once). */
        for (i = 1; !replied(slot); i++) {
            int64_t now;
            sched_yield();
            if ((i & 7) != 0)
                continue;
            now = tand__now_ns();
            if (now >= deadline->ns || now - start >= YIELD_MAX_NS)
                break;
        }
    }

    if (pumped) {
        /* Nobody else may run the server: help until replied. */
        while (!replied(slot)) {
            if (tand__now_ns() >= deadline->ns && tand__slot_abandon(slot))
                return TAND_ETIMEDOUT;
            tand__runtime_help(pumped);
            if (!replied(slot))
                sched_yield();
        }
    } else if (!sleep_until(slot, deadline->ns)) {
        return TAND_ETIMEDOUT;
    }
    learn(reply_ns, start);
    return take_reply(slot, reply);
}

/* ---- from cells (see internal.h) ----
** A cell's name is its index in the high half of the value and the low
** bits of its generation in the low half (never 0, so no name is NULL).
** Chunks are published once and never freed, so a claim reads a cell's
** word whatever the name: a stale one just fails its CAS. Free cells
** wait in their thread's list (no lock on a call's path); a thread with
** too many, or one that ends, gives them to the shared list. */

#define CELL_FREE 0u
#define CELL_LIVE 1u
#define CELL_BUSY 2u
#define CELL_HALF (sizeof(uintptr_t) * 4)
#define CELL_GEN_MASK ((uint64_t)(((uintptr_t)1 << CELL_HALF) - 1))
#define CELL_CHUNK 1024u
#define CELL_CHUNKS 65536u
#define CELL_LOCAL_MAX 256
#define CELL_BATCH 64

static from_cell *_Atomic cell_chunks[CELL_CHUNKS];
static size_t cell_nchunks;             /* guarded by cell_mu */
static from_cell *cell_shared;          /* guarded by cell_mu */
static pthread_mutex_t cell_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t from_mu = PTHREAD_MUTEX_INITIALIZER;

typedef struct cell_list {
    from_cell *head;
    int n;
} cell_list;
static _Thread_local cell_list cells_mine;
static _Thread_local bool cells_keyed;
static pthread_key_t cells_key;
static pthread_once_t cells_once = PTHREAD_ONCE_INIT;
static bool cells_key_ok;

/* Moves up to n cells of the list to the shared one. */
static void cells_give(cell_list *l, int n)
{
    pthread_mutex_lock(&cell_mu);
    while (l->head != NULL && n-- > 0) {
        from_cell *c = l->head;
        l->head = c->free_next;
        l->n--;
        c->free_next = cell_shared;
        cell_shared = c;
    }
    pthread_mutex_unlock(&cell_mu);
}

static void cells_gone(void *p)
{
    cell_list *l = p;
    cells_give(l, l->n);
    cells_keyed = false;
}

static void cells_init(void)
{
    cells_key_ok = pthread_key_create(&cells_key, cells_gone) == 0;
}

/* Refills this thread's list from the shared one, or with a new chunk:
** false without memory. */
static bool cells_fill(cell_list *l)
{
    int n = 0;
    if (!cells_keyed) {
        pthread_once(&cells_once, cells_init);
        cells_keyed =
            cells_key_ok && pthread_setspecific(cells_key, l) == 0;
    }
    pthread_mutex_lock(&cell_mu);
    if (cell_shared == NULL && cell_nchunks < CELL_CHUNKS) {
        from_cell *chunk = calloc(CELL_CHUNK, sizeof *chunk);
        uint32_t i;
        if (chunk != NULL) {
            for (i = 0; i < CELL_CHUNK; i++) {
                from_cell *c = &chunk[CELL_CHUNK - 1 - i];
                c->index = (uint32_t)(cell_nchunks * CELL_CHUNK +
                                      (CELL_CHUNK - 1 - i));
                atomic_init(&c->word, CELL_FREE);
                c->free_next = cell_shared;
                cell_shared = c;
            }
            atomic_store_explicit(&cell_chunks[cell_nchunks], chunk,
                                  memory_order_release);
            cell_nchunks++;
        }
    }
    while (cell_shared != NULL && n < CELL_BATCH) {
        from_cell *c = cell_shared;
        cell_shared = c->free_next;
        c->free_next = l->head;
        l->head = c;
        l->n++;
        n++;
    }
    pthread_mutex_unlock(&cell_mu);
    return n > 0;
}

tand_from *tand__from_open(tand_slot *slot, tand_server *s,
                           from_cell **cell)
{
    cell_list *l = &cells_mine;
    from_cell *c;
    uint64_t gen;
    if (l->head == NULL && !cells_fill(l))
        return NULL;
    c = l->head;
    l->head = c->free_next;
    l->n--;
    c->slot = slot;
    c->server = s;
    c->linked = false;
    c->dnext = c->dprev = NULL;
    gen = ((atomic_load_explicit(&c->word, memory_order_relaxed) >> 2) + 1) &
          CELL_GEN_MASK;
    if (gen == 0)
        gen = 1;
    atomic_store_explicit(&c->word, gen << 2 | CELL_LIVE,
                          memory_order_release);
    *cell = c;
    return (tand_from *)(((uintptr_t)c->index << CELL_HALF) |
                         (uintptr_t)gen);
}

/* The cell a name points to, or NULL for a name that is no cell's. */
static from_cell *cell_of(tand_from *from, uint64_t *gen)
{
    uintptr_t v = (uintptr_t)from;
    uintptr_t index = v >> CELL_HALF;
    from_cell *chunk;
    *gen = (uint64_t)v & CELL_GEN_MASK;
    if (*gen == 0 || index >= (uintptr_t)CELL_CHUNK * CELL_CHUNKS)
        return NULL;
    chunk = atomic_load_explicit(&cell_chunks[index / CELL_CHUNK],
                                 memory_order_acquire);
    return chunk ? &chunk[index % CELL_CHUNK] : NULL;
}

from_cell *tand__from_claim(tand_from *from)
{
    uint64_t gen, want;
    from_cell *c = cell_of(from, &gen);
    if (c == NULL)
        return NULL;
    want = gen << 2 | CELL_LIVE;
    if (!atomic_compare_exchange_strong_explicit(
            &c->word, &want, gen << 2 | CELL_BUSY, memory_order_acq_rel,
            memory_order_relaxed))
        return NULL;
    return c;
}

bool tand__from_claim_cell(from_cell *c)
{
    uint64_t w = atomic_load_explicit(&c->word, memory_order_relaxed);
    return (w & 3) == CELL_LIVE &&
           atomic_compare_exchange_strong_explicit(
               &c->word, &w, (w & ~(uint64_t)3) | CELL_BUSY,
               memory_order_acq_rel, memory_order_relaxed);
}

bool tand__from_live(tand_from *from)
{
    uint64_t gen;
    from_cell *c = cell_of(from, &gen);
    return c != NULL && atomic_load_explicit(&c->word, memory_order_acquire) ==
                            (gen << 2 | CELL_LIVE);
}

void tand__from_close(from_cell *c)
{
    cell_list *l = &cells_mine;
    uint64_t w = atomic_load_explicit(&c->word, memory_order_relaxed);
    c->slot = NULL;
    c->server = NULL;
    atomic_store_explicit(&c->word, (w & ~(uint64_t)3) | CELL_FREE,
                          memory_order_release);
    c->free_next = l->head;
    l->head = c;
    if (++l->n > CELL_LOCAL_MAX || !cells_keyed)
        cells_give(l, cells_keyed ? CELL_LOCAL_MAX / 2 : l->n);
}

void tand__from_lock(void)
{
    pthread_mutex_lock(&from_mu);
}

void tand__from_unlock(void)
{
    pthread_mutex_unlock(&from_mu);
}
