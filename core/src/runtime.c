/*
** runtime.c - worker threads, the run queue, idle timers and the pump.
**
** DESIGN: workers run what no caller runs (server.c says who runs a
** server: a caller that finds it free runs its own call). The run queue
** (rt->mu) holds servers that have work and nobody to run it; a server is
** on it at most once (it is held meanwhile: s->hold). Threads: `nworkers`
** workers take a server, run a batch of its messages, let it go and take
** the next; one timer thread sleeps until the earliest timer (a server's
** idle deadline, or the earliest deadline of the requests it sent). An
** idle worker spins briefly on the queue length before it sleeps on
** rt->work, but only one worker per runtime spins, and only within the
** process-wide spin budget it shares with waiting callers (park.c), so a
** sleeping pool burns no core: a push signals rt->work only when a worker
** sleeps and none spins, and a worker that finds more work queued behind
** the server it took wakes the next sleeper. Idle timers are lazy:
** a handled message only stores s->last_active_ns; when a timer comes due
** the timer thread re-reads it and pushes the deadline forward if the
** server was active meanwhile. In pumped mode (no workers) there are no
** threads at all: tand_runtime_pump() runs the timers and the queue on the
** caller's thread, and a caller waiting on such a runtime pumps it itself
** when no other thread does. pump_owner says which thread may run the
** runtime's handlers (the pump, or a caller running a server inline:
** tand__pump_claim), so they never run two at once.
** A handler that calls another server blocks its worker; so that servers
** never all wait on blocked workers, a worker entering such a wait starts
** a detached spare worker when fewer than `nworkers` would remain not
** blocked; a spare ends when it is surplus (after a turn, or
** after idling SPARE_IDLE_NS), and shutdown waits on spares_done.
** tand_runtime_free stops every server and waits for each one's end. A
** caller answered by that end may still be on its way out: in threaded
** mode its wait uses nothing of rt; a thread that does use rt through a
** server (a caller pumping a pumped runtime, tand_register,
** tand_server_set_idle) holds a pin taken while the server was not
** stopping, and the free waits for the pins and for any pumping thread
** before it lets go of rt.
*/
#include "internal.h"

#include <errno.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define WORKER_SPIN_ITERS 2000
#define BATCH 64

static _Thread_local char pump_marker;
_Thread_local tand_runtime *tand__worker_of;

/* Spare workers beyond this many are not started. */
#define MAX_WORKERS 512
/* An idle spare worker waits this long for work before it ends. */
#define SPARE_IDLE_NS INT64_C(200000000)

bool tand__runtime_pumped(const tand_runtime *rt)
{
    return rt->nworkers == 0;
}

/* ---- run queue ---- */

static tand_server *rq_pop_locked(tand_runtime *rt)
{
    tand_server *s = rt->rq_head;
    if (s != NULL) {
        rt->rq_head = s->run_next;
        if (rt->rq_head == NULL)
            rt->rq_tail = NULL;
        s->run_next = NULL;
        atomic_fetch_sub_explicit(&rt->rq_len, 1, memory_order_relaxed);
    }
    return s;
}

void tand__runtime_schedule(tand_runtime *rt, tand_server *s)
{
    pthread_mutex_lock(&rt->mu);
    s->run_next = NULL;
    if (rt->rq_tail)
        rt->rq_tail->run_next = s;
    else
        rt->rq_head = s;
    rt->rq_tail = s;
    atomic_fetch_add_explicit(&rt->rq_len, 1, memory_order_relaxed);
    if (rt->sleepers > 0 &&
        atomic_load_explicit(&rt->spinning_workers, memory_order_relaxed) ==
            0)
        pthread_cond_signal(&rt->work);
    pthread_mutex_unlock(&rt->mu);
}

static tand_server *take_and_chain(tand_runtime *rt)
{
    tand_server *s = rq_pop_locked(rt);
    if (s != NULL && rt->rq_head != NULL && rt->sleepers > 0)
        pthread_cond_signal(&rt->work);
    return s;
}

/* A spare worker leaves the count (rt->mu held). Deciding that a spare is
** surplus and leaving happen in one critical section: otherwise a handler
** about to block could count a spare that is on its way out, start none,
** and find no worker left for the server it waits on. */
static void spare_leave_locked(tand_runtime *rt)
{
    rt->total_workers--;
    if (--rt->spare_workers == 0)
        pthread_cond_broadcast(&rt->spares_done);
}

/* Takes the next server to run, or NULL when this worker should end:
** at shutdown, or for a spare worker once it is not needed (then it has
** already left the count). */
static tand_server *next_server(tand_runtime *rt, bool spare)
{
    tand_server *s = NULL;
    int i;

    /* One spinner per runtime at most, within the process's budget. It
    ** spins only until work shows, and stops counting as a spinner before
    ** it takes any: a push that came after its take then wakes a sleeper
    ** (a push skips the wake while a worker is counted as spinning). */
    if (atomic_fetch_add(&rt->spinning_workers, 1) == 0 &&
        tand__spin_begin()) {
        for (i = 0; i < WORKER_SPIN_ITERS &&
                    !atomic_load_explicit(&rt->rq_len, memory_order_relaxed);
             i++)
            tand__cpu_relax();
        tand__spin_end();
    }
    atomic_fetch_sub(&rt->spinning_workers, 1);

    pthread_mutex_lock(&rt->mu);
    while ((s = take_and_chain(rt)) == NULL && !rt->shutdown) {
        bool woke;
        rt->sleepers++;
        if (spare) {
            woke = tand__cond_wait_until(&rt->work, &rt->mu,
                                         tand__now_ns() + SPARE_IDLE_NS);
        } else {
            pthread_cond_wait(&rt->work, &rt->mu);
            woke = true;
        }
        rt->sleepers--;
        if (!woke && rt->total_workers - rt->blocked_workers > rt->nworkers)
            break; /* an idle spare that is not needed */
    }
    if (s == NULL && spare) /* idle and surplus, or shut down */
        spare_leave_locked(rt);
    pthread_mutex_unlock(&rt->mu);
    return s;
}

/* After a turn: a spare worker leaves when the workers not blocked
** outnumber the base. true when it has left. */
static bool spare_left(tand_runtime *rt)
{
    bool yes;
    pthread_mutex_lock(&rt->mu);
    yes = rt->total_workers - rt->blocked_workers > rt->nworkers;
    if (yes)
        spare_leave_locked(rt);
    pthread_mutex_unlock(&rt->mu);
    return yes;
}

static void *worker_main(void *arg)
{
    tand_runtime *rt = arg;
    tand_server *s;
    tand__worker_of = rt;
    while ((s = next_server(rt, false)) != NULL)
        tand__server_run(s, BATCH);
    return NULL;
}

static void *spare_main(void *arg)
{
    tand_runtime *rt = arg;
    tand_server *s;
    tand__worker_of = rt;
    while ((s = next_server(rt, true)) != NULL) {
        tand__server_run(s, BATCH);
        if (spare_left(rt))
            break;
    }
    return NULL;
}

void tand__runtime_block(tand_runtime *rt)
{
    pthread_attr_t attr;
    pthread_t th;
    pthread_mutex_lock(&rt->mu);
    rt->blocked_workers++;
    if (!rt->shutdown &&
        rt->total_workers - rt->blocked_workers < rt->nworkers &&
        rt->total_workers < MAX_WORKERS) {
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &attr, spare_main, rt) == 0) {
            rt->total_workers++;
            rt->spare_workers++;
        }
        pthread_attr_destroy(&attr);
    }
    pthread_mutex_unlock(&rt->mu);
}

void tand__runtime_unblock(tand_runtime *rt)
{
    pthread_mutex_lock(&rt->mu);
    rt->blocked_workers--;
    pthread_mutex_unlock(&rt->mu);
}

/* ---- timers: a binary min-heap of tand_timer on due_ns ---- */

static void heap_set(tand_runtime *rt, size_t i, tand_timer *t)
{
    rt->heap[i] = t;
    t->index = i;
}

static void sift_up(tand_runtime *rt, size_t i)
{
    tand_timer *t = rt->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (rt->heap[parent]->due_ns <= t->due_ns)
            break;
        heap_set(rt, i, rt->heap[parent]);
        i = parent;
    }
    heap_set(rt, i, t);
}

static void sift_down(tand_runtime *rt, size_t i)
{
    tand_timer *t = rt->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= rt->heap_len)
            break;
        if (c + 1 < rt->heap_len &&
            rt->heap[c + 1]->due_ns < rt->heap[c]->due_ns)
            c++;
        if (t->due_ns <= rt->heap[c]->due_ns)
            break;
        heap_set(rt, i, rt->heap[c]);
        i = c;
    }
    heap_set(rt, i, t);
}

/* Removes t from the heap (timer_mu held); the heap's reference on its
** server passes to the caller. */
static void heap_remove(tand_runtime *rt, tand_timer *t)
{
    size_t i = t->index;
    tand_timer *last = rt->heap[--rt->heap_len];
    t->index = SIZE_MAX;
    if (last != t) {
        heap_set(rt, i, last);
        sift_down(rt, i);
        sift_up(rt, last->index);
    }
}

/* Puts t in the heap at due_ns, or moves it there (timer_mu held); the
** heap takes a reference on the server when t was not in it. There is
** room: each server reserved it at its start. */
static void heap_put(tand_runtime *rt, tand_timer *t, int64_t due_ns)
{
    t->due_ns = due_ns;
    if (t->index == SIZE_MAX) {
        heap_set(rt, rt->heap_len++, t);
        tand_server_retain(t->server);
    }
    sift_down(rt, t->index);
    sift_up(rt, t->index);
    if (rt->heap[0] == t)
        pthread_cond_signal(&rt->timer_cv);
}

int tand__timer_reserve(tand_runtime *rt, tand_server *s)
{
    int rc = 0;
    pthread_mutex_lock(&rt->timer_mu);
    if (rt->heap_cap < rt->heap_reserved + 2) {
        size_t cap = rt->heap_cap ? rt->heap_cap * 2 : 64;
        tand_timer **h = tand__realloc(rt->heap, cap * sizeof *h);
        if (h == NULL) {
            rc = TAND_ENOMEM;
        } else {
            rt->heap = h;
            rt->heap_cap = cap;
        }
    }
    if (rc == 0) {
        rt->heap_reserved += 2;
        s->timers_reserved = true;
    }
    pthread_mutex_unlock(&rt->timer_mu);
    return rc;
}

/* An idle time in ns, saturated: a huge timeout must not wrap around. */
static int64_t idle_ns(int64_t ms)
{
    return ms > INT64_MAX / 4000000 ? INT64_MAX / 4 : ms * 1000000;
}

/* With timer_mu held: whether s may have a timer armed. `stopping` is set
** before terminate cancels the timers under this lock, so a server on
** its way out is never put back in the heap. */
static bool may_arm(const tand_runtime *rt, tand_server *s)
{
    return !rt->timer_shutdown &&
           !atomic_load_explicit(&s->stopping, memory_order_acquire);
}

bool tand__timer_idle_passed(tand_runtime *rt, tand_server *s)
{
    bool passed;
    pthread_mutex_lock(&rt->timer_mu);
    passed = s->idle_ms >= 0 &&
             tand__now_ns() - atomic_load(&s->last_active_ns) >=
                 idle_ns(s->idle_ms);
    pthread_mutex_unlock(&rt->timer_mu);
    return passed;
}

void tand__timer_arm(tand_runtime *rt, tand_server *s)
{
    pthread_mutex_lock(&rt->timer_mu);
    if (s->idle_ms >= 0 && may_arm(rt, s))
        heap_put(rt, &s->idle_timer,
                 atomic_load(&s->last_active_ns) + idle_ns(s->idle_ms));
    pthread_mutex_unlock(&rt->timer_mu);
}

/* With timer_mu held: takes t out of the heap if it is there; 1 when it
** was, and then the caller drops the heap's reference on its server. */
static int disarm(tand_runtime *rt, tand_timer *t)
{
    if (t->index == SIZE_MAX)
        return 0;
    heap_remove(rt, t);
    return 1;
}

void tand__timer_set_replies(tand_runtime *rt, tand_server *s, int64_t due_ns)
{
    int release = 0;
    pthread_mutex_lock(&rt->timer_mu);
    if (due_ns != INT64_MAX && may_arm(rt, s))
        heap_put(rt, &s->reply_timer, due_ns);
    else
        release = disarm(rt, &s->reply_timer);
    pthread_mutex_unlock(&rt->timer_mu);
    if (release)
        tand_server_release(s);
}

void tand__timer_cancel(tand_runtime *rt, tand_server *s)
{
    int release;
    pthread_mutex_lock(&rt->timer_mu);
    release = disarm(rt, &s->idle_timer);
    pthread_mutex_unlock(&rt->timer_mu);
    if (release)
        tand_server_release(s);
}

void tand__timer_end(tand_runtime *rt, tand_server *s)
{
    int release;
    pthread_mutex_lock(&rt->timer_mu);
    release = disarm(rt, &s->idle_timer) + disarm(rt, &s->reply_timer);
    if (s->timers_reserved) { /* the room it reserved */
        s->timers_reserved = false;
        rt->heap_reserved -= 2;
    }
    pthread_mutex_unlock(&rt->timer_mu);
    while (release-- > 0)
        tand_server_release(s);
}

/* With timer_mu held: pops a timer that has really come due (the caller
** gets the heap's reference on its server), or returns NULL and sets
** *next_ns to the next deadline (INT64_MAX when none). */
static tand_timer *timer_due(tand_runtime *rt, int64_t now, int64_t *next_ns)
{
    while (rt->heap_len > 0) {
        tand_timer *t = rt->heap[0];
        if (t->due_ns > now) {
            *next_ns = t->due_ns;
            return NULL;
        }
        if (t->kind == TIMER_IDLE) {
            tand_server *s = t->server;
            int64_t due = atomic_load(&s->last_active_ns) +
                          idle_ns(s->idle_ms);
            if (due > now) { /* active since it was armed */
                t->due_ns = due;
                sift_down(rt, 0);
                continue;
            }
        }
        heap_remove(rt, t);
        return t;
    }
    *next_ns = INT64_MAX;
    return NULL;
}

/* Runs a timer that came due, outside timer_mu, and drops the heap's
** reference on its server. */
static void timer_fire(tand_timer *t)
{
    tand_server *s = t->server;
    if (t->kind == TIMER_IDLE)
        tand__server_fire_idle(s);
    else
        tand__server_wake_replies(s);
    tand_server_release(s);
}

static void *timer_main(void *arg)
{
    tand_runtime *rt = arg;
    pthread_mutex_lock(&rt->timer_mu);
    while (!rt->timer_shutdown) {
        int64_t next;
        tand_timer *t = timer_due(rt, tand__now_ns(), &next);
        if (t != NULL) {
            pthread_mutex_unlock(&rt->timer_mu);
            timer_fire(t);
            pthread_mutex_lock(&rt->timer_mu);
            continue;
        }
        tand__cond_wait_until(&rt->timer_cv, &rt->timer_mu, next);
    }
    pthread_mutex_unlock(&rt->timer_mu);
    return NULL;
}

static void run_due_timers(tand_runtime *rt)
{
    int64_t now = tand__now_ns(), next;
    tand_timer *t;
    for (;;) {
        pthread_mutex_lock(&rt->timer_mu);
        t = timer_due(rt, now, &next);
        pthread_mutex_unlock(&rt->timer_mu);
        if (t == NULL)
            return;
        timer_fire(t);
    }
}

/* ---- pumped mode ---- */

int tand_runtime_pump(tand_runtime *rt, int64_t budget_us)
{
    void *me = &pump_marker, *owner = NULL;
    bool nested;
    int64_t deadline;
    int handled = 0;

    if (rt == NULL || !tand__runtime_pumped(rt))
        return TAND_EINVAL;
    nested = atomic_load(&rt->pump_owner) == me;
    if (!nested && !atomic_compare_exchange_strong(&rt->pump_owner, &owner, me))
        return 0; /* another thread pumps */
    deadline = tand__now_ns() + (budget_us > 0 ? budget_us * 1000 : 0);
    run_due_timers(rt);
    for (;;) {
        tand_server *s;
        pthread_mutex_lock(&rt->mu);
        s = rq_pop_locked(rt);
        pthread_mutex_unlock(&rt->mu);
        if (s == NULL)
            break;
        handled += tand__server_run(s, BATCH);
        if (tand__now_ns() >= deadline)
            break;
    }
    if (!nested)
        atomic_store(&rt->pump_owner, NULL);
    return handled;
}

void tand__runtime_help(tand_runtime *rt)
{
    tand_runtime_pump(rt, 0);
}

int tand__pump_claim(tand_runtime *rt)
{
    void *me = &pump_marker, *owner = NULL;
    if (atomic_load_explicit(&rt->pump_owner, memory_order_relaxed) == me)
        return 2;
    return atomic_compare_exchange_strong(&rt->pump_owner, &owner, me) ? 1
                                                                       : 0;
}

void tand__pump_release(tand_runtime *rt)
{
    atomic_store(&rt->pump_owner, NULL);
}

/* ---- life cycle ---- */

int tand__ncpu(void)
{
    static _Atomic int cached;
    int n = atomic_load_explicit(&cached, memory_order_relaxed);
    if (n == 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        n = online < 1 ? 1 : (online > 256 ? 256 : (int)online);
        atomic_store_explicit(&cached, n, memory_order_relaxed);
    }
    return n;
}

static void destroy(tand_runtime *rt)
{
    tand__table_free(rt->by_id);
    tand__table_free(rt->by_name);
    free(rt->heap);
    free(rt->workers);
    pthread_cond_destroy(&rt->timer_cv);
    pthread_mutex_destroy(&rt->timer_mu);
    pthread_cond_destroy(&rt->work);
    pthread_cond_destroy(&rt->spares_done);
    pthread_mutex_destroy(&rt->mu);
    pthread_mutex_destroy(&rt->table_mu);
    free(rt);
}

static void stop_threads(tand_runtime *rt, int started)
{
    int i;
    pthread_mutex_lock(&rt->mu);
    rt->shutdown = true;
    pthread_cond_broadcast(&rt->work);
    while (rt->spare_workers > 0)
        pthread_cond_wait(&rt->spares_done, &rt->mu);
    pthread_mutex_unlock(&rt->mu);
    for (i = 0; i < started; i++)
        pthread_join(rt->workers[i], NULL);
    pthread_mutex_lock(&rt->timer_mu);
    rt->timer_shutdown = true;
    pthread_cond_broadcast(&rt->timer_cv);
    pthread_mutex_unlock(&rt->timer_mu);
    if (rt->timer_started)
        pthread_join(rt->timer_thread, NULL);
}

/* ---- one engine a process ----
** Each copy of tand's code in a process (libtand linked into a host, and
** tand.so loaded by require) would have its own runtimes and registry.
** The first copy to make a runtime binds an abstract Unix socket named
** after the process, for the life of the process; a second copy's bind
** fails with EADDRINUSE, and it refuses to make runtimes. The name joins
** the pid, the pid namespace's inode and the process's start time, so
** that two processes never share one (containers sharing a network
** namespace may each have a pid 1). */
static int engine_rc;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

/* The process's start time (clock ticks since boot), or 0. */
static unsigned long long start_time(void)
{
    char buf[1024], *p;
    unsigned long long t = 0;
    int i;
    FILE *f = fopen("/proc/self/stat", "re");
    if (f == NULL)
        return 0;
    p = fgets(buf, sizeof buf, f);
    fclose(f);
    if (p == NULL || (p = strrchr(buf, ')')) == NULL)
        return 0;
    /* after "pid (comm)": field 3 on; the start time is field 22 */
    for (i = 3; i < 22 && p != NULL; i++)
        p = strchr(p + 1, ' ');
    if (p != NULL)
        t = strtoull(p + 1, NULL, 10);
    return t;
}

static void engine_claim(void)
{
    struct sockaddr_un a;
    struct stat ns;
    int fd, n;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    if (stat("/proc/self/ns/pid", &ns) != 0)
        ns.st_ino = 0;
    n = snprintf(a.sun_path + 1, sizeof a.sun_path - 1,
                 "tand-engine-%lu-%ld-%llu", (unsigned long)ns.st_ino,
                 (long)getpid(), start_time());
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return; /* no sockets: the check is skipped */
    if (bind(fd, (struct sockaddr *)&a,
             (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                         (size_t)n)) != 0) {
        if (errno == EADDRINUSE)
            engine_rc = TAND_EENGINE;
        close(fd);
    }
    /* else fd stays open: the bound name is the claim */
}

void tand_runtime_options_init(tand_runtime_options *o)
{
    memset(o, 0, sizeof *o);
}

int tand_runtime_new(const tand_runtime_options *opts, tand_runtime **out)
{
    tand_runtime *rt;
    int workers = opts ? opts->workers : 0, i;

    if (out == NULL)
        return TAND_EINVAL;
    *out = NULL;
    if (workers < TAND_PUMPED || workers > 1024)
        return TAND_EINVAL;
    pthread_once(&engine_once, engine_claim);
    if (engine_rc != 0)
        return engine_rc;
    rt = tand__calloc(1, sizeof *rt);
    if (rt == NULL)
        return TAND_ENOMEM;
    /* 0 (and the -1 of tand 0.1) is one per core; TAND_PUMPED none */
    rt->nworkers = workers == TAND_PUMPED ? 0
                   : workers <= 0         ? tand__ncpu()
                                          : workers;
    pthread_mutex_init(&rt->mu, NULL);
    pthread_mutex_init(&rt->timer_mu, NULL);
    pthread_mutex_init(&rt->table_mu, NULL);
    if (tand__cond_init(&rt->work) != 0 ||
        tand__cond_init(&rt->timer_cv) != 0 ||
        tand__cond_init(&rt->spares_done) != 0) {
        destroy(rt);
        return TAND_ESYSTEM;
    }
    rt->by_id = tand__table_new();
    rt->by_name = tand__table_new();
    rt->workers = tand__calloc((size_t)rt->nworkers + 1, sizeof *rt->workers);
    if (!rt->by_id || !rt->by_name || !rt->workers) {
        destroy(rt);
        return TAND_ENOMEM;
    }
    if (rt->nworkers > 0) {
        if (pthread_create(&rt->timer_thread, NULL, timer_main, rt) != 0) {
            destroy(rt);
            return TAND_ESYSTEM;
        }
        rt->timer_started = true;
        rt->total_workers = rt->nworkers;
        for (i = 0; i < rt->nworkers; i++) {
            if (pthread_create(&rt->workers[i], NULL, worker_main, rt) !=
                0) {
                stop_threads(rt, i);
                destroy(rt);
                return TAND_ESYSTEM;
            }
        }
    }
    *out = rt;
    return 0;
}

static void collect(void *value, void *ud)
{
    tand_server ***cursor = ud;
    tand_server *s = value;
    tand_server_retain(s);
    *(*cursor)++ = s;
}

void tand_runtime_free(tand_runtime *rt)
{
    tand_server **all, **cursor;
    size_t n, i;

    if (rt == NULL)
        return;
    for (;;) {
        pthread_mutex_lock(&rt->table_mu);
        rt->closed = true;
        n = tand__table_count(rt->by_id);
        all = n ? tand__malloc(n * sizeof *all) : NULL;
        if (all != NULL) {
            cursor = all;
            tand__table_each(rt->by_id, collect, &cursor);
        }
        pthread_mutex_unlock(&rt->table_mu);
        if (n == 0)
            break;
        if (all == NULL) { /* out of memory: wait for a moment */
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
            continue;
        }
        for (i = 0; i < n; i++)
            tand_server_stop(all[i], 0, NULL, 0);
        for (i = 0; i < n; i++) {
            pthread_mutex_lock(&all[i]->mu);
            while (!all[i]->finished) {
                if (tand__runtime_pumped(rt)) {
                    pthread_mutex_unlock(&all[i]->mu);
                    tand__runtime_help(rt);
                    pthread_mutex_lock(&all[i]->mu);
                } else {
                    pthread_cond_wait(&all[i]->ended_cv, &all[i]->mu);
                }
            }
            pthread_mutex_unlock(&all[i]->mu);
            tand_server_release(all[i]);
        }
        free(all);
    }
    /* Every server has ended, so a thread still pumping or holding a pin
    ** (a caller just answered noproc) has nothing left to wait for but
    ** the CPU. The pump first: a server that had left the table before
    ** the last look was ended by a pumping thread, and a pin taken on it
    ** before its end is seen once that pump is over. */
    if (tand__runtime_pumped(rt)) {
        void *none = NULL;
        while (!atomic_compare_exchange_weak(&rt->pump_owner, &none,
                                             &pump_marker)) {
            none = NULL;
            sched_yield();
        }
    }
    while (atomic_load_explicit(&rt->pins, memory_order_acquire) > 0)
        sched_yield();
    stop_threads(rt, rt->nworkers);
    while (rt->heap_len > 0) {
        tand_timer *t = rt->heap[0];
        heap_remove(rt, t);
        tand_server_release(t->server);
    }
    destroy(rt);
}

static tand_runtime *default_rt;
static int default_rc;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void default_init(void)
{
    default_rc = tand_runtime_new(NULL, &default_rt);
}

tand_runtime *tand_runtime_default(void)
{
    pthread_once(&default_once, default_init);
    return default_rt;
}

int tand_runtime_default_error(void)
{
    pthread_once(&default_once, default_init);
    return default_rc;
}
