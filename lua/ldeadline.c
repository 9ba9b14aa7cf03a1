/*
** ldeadline.c - a policy callback's callback_timeout, which nothing a
** policy does escapes.
**
** DESIGN: the thread that runs a callback arms the deadline itself: it
** sets a count hook on the policy's Lua state for the callback's length
** (every HOOK_EVERY instructions the hook reads the coarse clock) and
** removes it afterwards, so nothing is paid while no callback runs and no
** thread ever writes another thread's Lua state. Once the deadline has
** passed the state is expired for good: its hooks raise at every call,
** return and instruction, so pcall cannot swallow the timeout, and the
** guards below refuse to run more code (a coroutine resumed or closed,
** an xpcall message handler, which would run inside the raising hook
** where hooks are off). Hooks belong to one Lua thread: the coroutine
** guards arm each coroutine before it runs. Long C steps call
** ltand_deadline_check (the pattern functions do).
** What a hook cannot reach (a trusted policy stuck in C, or in a __gc
** finalizer, where Lua turns hooks off) the watchdog thread handles: each
** thread publishes its running callbacks in frames of its own (one
** release store each way, plus a wake of the watchdog only when the new
** deadline comes before the watchdog's next wake-up), and the watchdog,
** which sleeps until the earliest deadline plus GRACE_NS, ends a server
** whose callback is still running then with tand_server_kill: its callers
** are answered at once and the stuck thread cleans up when it returns. A
** claimed frame keeps its callback (and so its policy and server) from
** ending until the watchdog lets go of it. wd_mu guards the list of
** threads and the wake-up; frames are read and claimed with atomics.
*/
#include "ltand.h"

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Instructions between two looks at the clock: about 2 us of Lua. */
#define HOOK_EVERY 1000
/* How long after a deadline the watchdog gives the hook to end the
** callback itself (with a traceback) before it kills the server. */
#define GRACE_NS INT64_C(50000000)
/* Callbacks nested on one thread (a pumped wait runs other servers)
** that the watchdog sees; deeper ones have their hooks only. */
#define FRAMES 8

#define EXPIRED_MASK (LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT)

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A reading of the monotonic clock never ahead of now_ns(), lagging it
** by at most *slack: the coarse clock where there is one (a few ns to
** read against about 25), enough for deadlines of milliseconds. */
static int64_t coarse_now_ns(int64_t *slack)
{
#ifdef CLOCK_MONOTONIC_COARSE
    static _Atomic int64_t res_ns; /* the coarse clock's tick, once read */
    struct timespec ts;
    int64_t res = atomic_load_explicit(&res_ns, memory_order_relaxed);
    if (res == 0) {
        if (clock_getres(CLOCK_MONOTONIC_COARSE, &ts) != 0 ||
            ts.tv_sec != 0) {
            *slack = 0;
            return now_ns();
        }
        res = ts.tv_nsec + 1;
        atomic_store_explicit(&res_ns, res, memory_order_relaxed);
    }
    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) != 0) {
        *slack = 0;
        return now_ns();
    }
    *slack = res;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
#else
    *slack = 0;
    return now_ns();
#endif
}

static ltand_watch *watch_of(lua_State *L)
{
    return *(ltand_watch **)lua_getextraspace(L);
}

/* ---- frames and the watchdog ---- */

/* A frame's state: 0 idle, or seq << 2 while its callback runs, with
** CLAIMED while the watchdog works on it and KILLED once it has. */
#define CLAIMED 1u
#define KILLED 2u

typedef struct frame {
    _Atomic uint64_t state;
    _Atomic(ltand_watch *) w;
    _Atomic int64_t deadline_ns;
} frame;

typedef struct watched_thread {
    frame f[FRAMES];
    _Atomic int depth;
    uint64_t seq;                        /* its thread only */
    struct watched_thread *next, *prev;  /* guarded by wd_mu */
} watched_thread;

static pthread_mutex_t wd_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wd_cv;
static watched_thread *wd_threads;     /* guarded by wd_mu */
static int wd_kicked;                  /* guarded by wd_mu */
static int wd_state;                   /* guarded by wd_mu: 0, 1 up, -1 failed */
static pthread_key_t wd_key;
/* When the watchdog wakes next (INT64_MAX: only when kicked). */
static _Atomic int64_t wd_wake_ns = INT64_MAX;
static _Thread_local watched_thread *my_frames;

static void thread_gone(void *arg)
{
    watched_thread *t = arg;
    pthread_mutex_lock(&wd_mu);
    if (t->prev)
        t->prev->next = t->next;
    else
        wd_threads = t->next;
    if (t->next)
        t->next->prev = t->prev;
    pthread_mutex_unlock(&wd_mu);
    free(t);
}

/* Ends w's server: its callback is past its deadline and still runs.
** false when the engine asks to try again in a moment. */
static bool kill_policy(ltand_watch *w, int64_t late_ns)
{
    char detail[160];
    int rc;
    atomic_store(&w->expired, 1);
    snprintf(detail, sizeof detail,
             "callback_timeout: a callback ran longer than %lld ms and "
             "did not return for %lld ms more (stuck outside Lua)",
             (long long)w->callback_ms, (long long)(late_ns / 1000000));
    rc = tand_server_kill(w->server, detail);
    return rc != TAND_EBUSY;
}

/* One look at every frame: kills what is due, returns the next due time.
** wd_mu held. */
static int64_t scan(int64_t now)
{
    int64_t next = INT64_MAX;
    watched_thread *t;
    for (t = wd_threads; t != NULL; t = t->next) {
        int n = atomic_load(&t->depth), i;
        for (i = 0; i < n && i < FRAMES; i++) {
            frame *f = &t->f[i];
            uint64_t v = atomic_load(&f->state);
            int64_t due;
            ltand_watch *w;
            if (v == 0 || (v & (CLAIMED | KILLED)) != 0)
                continue;
            due = atomic_load(&f->deadline_ns);
            due = due > INT64_MAX - GRACE_NS ? INT64_MAX : due + GRACE_NS;
            if (now < due) {
                if (due < next)
                    next = due;
                continue;
            }
            if (!atomic_compare_exchange_strong(&f->state, &v, v | CLAIMED))
                continue; /* it has just ended */
            w = atomic_load(&f->w);
            if (atomic_load(&w->killable) &&
                !kill_policy(w, now - due + GRACE_NS)) {
                atomic_store(&f->state, v); /* again in a millisecond */
                if (now + 1000000 < next)
                    next = now + 1000000;
            } else {
                atomic_store(&f->state, v | KILLED);
            }
        }
    }
    return next;
}

static void *watchdog_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&wd_mu);
    for (;;) {
        int64_t next = scan(now_ns()), again;
        /* Published before the second look: a callback that starts now
        ** either sees this time and kicks, or is seen here. */
        atomic_store(&wd_wake_ns, next);
        again = scan(now_ns());
        if (again < next)
            atomic_store(&wd_wake_ns, next = again);
        while (!wd_kicked) {
            if (next == INT64_MAX) {
                pthread_cond_wait(&wd_cv, &wd_mu);
            } else {
                struct timespec ts;
                ts.tv_sec = (time_t)(next / 1000000000);
                ts.tv_nsec = (long)(next % 1000000000);
                if (pthread_cond_timedwait(&wd_cv, &wd_mu, &ts) != 0 &&
                    now_ns() >= next)
                    break;
            }
        }
        wd_kicked = 0;
    }
    return NULL;
}

/* Starts the watchdog once: 0, or -1 when it cannot run. wd_mu held. */
static int start_watchdog(void)
{
    pthread_condattr_t ca;
    pthread_attr_t attr;
    pthread_t th;
    if (wd_state != 0)
        return wd_state > 0 ? 0 : -1;
    wd_state = -1;
    if (pthread_key_create(&wd_key, thread_gone) != 0)
        return -1;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&wd_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &attr, watchdog_main, NULL) == 0)
        wd_state = 1;
    pthread_attr_destroy(&attr);
    return wd_state > 0 ? 0 : -1;
}

int ltand_watch_start(void)
{
    int rc;
    pthread_mutex_lock(&wd_mu);
    rc = start_watchdog();
    pthread_mutex_unlock(&wd_mu);
    return rc;
}

/* This thread's frames, listed for the watchdog the first time. */
static watched_thread *frames(void)
{
    watched_thread *t = my_frames;
    if (t != NULL)
        return t;
    if ((t = calloc(1, sizeof *t)) == NULL)
        return NULL;
    pthread_mutex_lock(&wd_mu);
    if (start_watchdog() != 0 || pthread_setspecific(wd_key, t) != 0) {
        pthread_mutex_unlock(&wd_mu);
        free(t);
        return NULL;
    }
    t->next = wd_threads;
    if (wd_threads)
        wd_threads->prev = t;
    wd_threads = t;
    pthread_mutex_unlock(&wd_mu);
    return my_frames = t;
}

/* Publishes a running callback; its frame's index, or -1 when it cannot
** be watched (too deep, or no memory): its hook still holds it. */
static int frame_push(ltand_watch *w, int64_t deadline)
{
    watched_thread *t = frames();
    int d;
    frame *f;
    if (t == NULL || (d = atomic_load_explicit(&t->depth,
                                               memory_order_relaxed)) >=
                         FRAMES)
        return -1;
    f = &t->f[d];
    atomic_store_explicit(&f->w, w, memory_order_relaxed);
    atomic_store_explicit(&f->deadline_ns, deadline, memory_order_relaxed);
    t->seq++;
    atomic_store_explicit(&f->state, t->seq << 2, memory_order_release);
    atomic_store(&t->depth, d + 1);
    if (deadline < INT64_MAX - GRACE_NS &&
        deadline + GRACE_NS < atomic_load(&wd_wake_ns)) {
        pthread_mutex_lock(&wd_mu);
        wd_kicked = 1;
        pthread_cond_signal(&wd_cv);
        pthread_mutex_unlock(&wd_mu);
    }
    return d;
}

/* The callback has ended; waits while the watchdog holds its frame. */
static void frame_pop(int d)
{
    watched_thread *t = my_frames;
    frame *f = &t->f[d];
    for (;;) {
        uint64_t v = atomic_load(&f->state);
        if ((v & CLAIMED) == 0 &&
            atomic_compare_exchange_weak(&f->state, &v, 0))
            break;
        if (v & CLAIMED)
            sched_yield(); /* a kill is under way: it never blocks */
    }
    atomic_store_explicit(&t->depth, d, memory_order_release);
}

/* ---- the hook ---- */

static void timeout_hook(lua_State *L, lua_Debug *ar);

/* Marks w expired and makes L's hook raise at every step from now on.
** Does not return. */
static int expire(lua_State *L, ltand_watch *w)
{
    atomic_store(&w->expired, 1);
    lua_sethook(L, timeout_hook, EXPIRED_MASK, 1);
    return luaL_error(L, "callback_timeout: a callback ran longer than %I "
                         "ms",
                      (lua_Integer)w->callback_ms);
}

static void timeout_hook(lua_State *L, lua_Debug *ar)
{
    ltand_watch *w = watch_of(L);
    int64_t slack;
    (void)ar;
    if (atomic_load_explicit(&w->expired, memory_order_relaxed)) {
        expire(L, w);
        return;
    }
    if (w->deadline_ns == 0) { /* a coroutine armed by an earlier callback */
        lua_sethook(L, NULL, 0, 0);
        return;
    }
    if (coarse_now_ns(&slack) >= w->deadline_ns)
        expire(L, w);
}

void ltand_deadline_check(lua_State *L)
{
    ltand_watch *w = watch_of(L);
    int64_t slack;
    if (atomic_load_explicit(&w->expired, memory_order_relaxed) ||
        (w->deadline_ns != 0 && coarse_now_ns(&slack) >= w->deadline_ns))
        expire(L, w);
}

void ltand_watch_init(ltand_watch *w, tand_server *server,
                      int64_t callback_ms)
{
    w->server = server;
    w->callback_ms = callback_ms;
    w->deadline_ns = 0;
    atomic_init(&w->expired, 0);
    atomic_init(&w->killable, 0);
}

/* The deadline of a callback starting now, or 0 for none (no timeout, or
** one so long that it cannot be counted in ns). */
static int64_t deadline_from_now(const ltand_watch *w)
{
    int64_t now, slack;
    if (w->callback_ms < 0)
        return 0;
    now = coarse_now_ns(&slack) + slack; /* never early */
    if (w->callback_ms > (INT64_MAX / 2 - now) / 1000000)
        return 0;
    return now + w->callback_ms * 1000000;
}

int ltand_watch_pcall(lua_State *L, int nargs, int nresults, int msgh)
{
    ltand_watch *w = watch_of(L);
    int64_t outer_call = ltand_callback_deadline_ns, deadline, slack;
    int slot = -1, rc, base = lua_gettop(L) - nargs - 1;
    if (atomic_load(&w->expired)) { /* its state is done for */
        lua_settop(L, lua_gettop(L) - nargs - 1);
        lua_pushliteral(L, "callback_timeout: the policy's state has "
                           "expired");
        return LUA_ERRRUN;
    }
    deadline = deadline_from_now(w);
    if (deadline != 0) {
        w->deadline_ns = deadline;
        slot = frame_push(w, deadline);
        lua_sethook(L, timeout_hook, LUA_MASKCOUNT, HOOK_EVERY);
    }
    ltand_callback_deadline_ns = deadline;
    rc = lua_pcall(L, nargs, nresults, msgh);
    ltand_callback_deadline_ns = outer_call;
    if (deadline != 0) {
        lua_sethook(L, NULL, 0, 0);
        w->deadline_ns = 0;
        if (slot >= 0)
            frame_pop(slot);
        /* Back, but late (stuck where no hook runs, in init say, which
        ** nothing kills): it failed all the same. */
        if (rc == LUA_OK && coarse_now_ns(&slack) >= deadline) {
            atomic_store(&w->expired, 1);
            lua_settop(L, base);
            lua_pushfstring(L, "callback_timeout: a callback ran longer "
                               "than %I ms",
                            (lua_Integer)w->callback_ms);
            rc = LUA_ERRRUN;
        }
    }
    return rc;
}

void ltand_watch_close(lua_State *L)
{
    ltand_watch *w = watch_of(L);
    int64_t deadline = atomic_load(&w->killable) ? deadline_from_now(w) : 0;
    int slot = deadline != 0 ? frame_push(w, deadline) : -1;
    lua_close(L); /* __gc finalizers run here, with hooks off */
    if (slot >= 0)
        frame_pop(slot);
}

/* ---- guards: coroutines and xpcall ---- */

/* Before co runs on this thread: arms it like the callback, or raises
** when the callback has expired. [-0, +0, v] */
static void arm(lua_State *L, lua_State *co)
{
    ltand_watch *w = watch_of(L);
    if (atomic_load(&w->expired))
        expire(L, w);
    if (w->deadline_ns != 0)
        lua_sethook(co, timeout_hook, LUA_MASKCOUNT, HOOK_EVERY);
}

/* After co ran: an expiry inside it goes on in L. [-0, +0, v] */
static void disarm(lua_State *L)
{
    ltand_watch *w = watch_of(L);
    if (atomic_load(&w->expired))
        expire(L, w);
}

/* Resumes co with narg values from L's top and moves the results (or
** the error) back: their count, or -1 after an error. [-narg, +n, v] */
static int resume(lua_State *L, lua_State *co, int narg)
{
    int status, nres;
    if (lua_status(co) == LUA_OK && lua_gettop(co) == 0) {
        lua_pushliteral(L, "cannot resume dead coroutine");
        return -1;
    }
    if (!lua_checkstack(co, narg)) {
        lua_pushliteral(L, "too many arguments to resume");
        return -1;
    }
    arm(L, co);
    lua_xmove(L, co, narg);
    status = lua_resume(co, L, narg, &nres);
    disarm(L);
    if (status == LUA_OK || status == LUA_YIELD) {
        if (!lua_checkstack(L, nres + 1)) {
            lua_pop(co, nres);
            lua_pushliteral(L, "too many results to resume");
            return -1;
        }
        lua_xmove(co, L, nres);
        return nres;
    }
    lua_xmove(co, L, 1); /* the error */
    return -1;
}

/* coroutine.resume(co, ...) */
static int guarded_resume(lua_State *L)
{
    lua_State *co = lua_tothread(L, 1);
    int n;
    luaL_argexpected(L, co != NULL, 1, "coroutine");
    n = resume(L, co, lua_gettop(L) - 1);
    if (n < 0) {
        lua_pushboolean(L, 0);
        lua_insert(L, -2);
        return 2;
    }
    lua_pushboolean(L, 1);
    lua_insert(L, -(n + 1));
    return n + 1;
}

static int guarded_wrap_call(lua_State *L)
{
    lua_State *co = lua_tothread(L, lua_upvalueindex(1));
    int n = resume(L, co, lua_gettop(L));
    if (n < 0) {
        arm(L, co); /* its __close handlers run under the deadline */
        lua_resetthread(co);
        return lua_error(L);
    }
    return n;
}

/* coroutine.wrap(f) */
static int guarded_wrap(lua_State *L)
{
    lua_State *co;
    luaL_checktype(L, 1, LUA_TFUNCTION);
    co = lua_newthread(L);
    lua_pushvalue(L, 1);
    lua_xmove(L, co, 1);
    lua_pushcclosure(L, guarded_wrap_call, 1);
    return 1;
}

/* coroutine.close(co): the original (upvalue 1), with co armed. */
static int guarded_close(lua_State *L)
{
    lua_State *co = lua_tothread(L, 1);
    int n;
    luaL_argexpected(L, co != NULL, 1, "coroutine");
    arm(L, co);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    n = lua_gettop(L);
    disarm(L);
    return n;
}

/* An xpcall message handler (upvalue 1) runs where the error was raised;
** for a timeout that is inside the hook, where hooks are off, so it does
** not run then: the error passes as it is. */
static int guarded_handler(lua_State *L)
{
    if (atomic_load(&watch_of(L)->expired))
        return 1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int xpcall_done(lua_State *L, int status, lua_KContext extra)
{
    if (status != LUA_OK && status != LUA_YIELD) {
        lua_pushboolean(L, 0);
        lua_pushvalue(L, -2);
        return 2;
    }
    return lua_gettop(L) - (int)extra;
}

/* xpcall(f, msgh, ...), with msgh guarded. */
static int guarded_xpcall(lua_State *L)
{
    int n = lua_gettop(L), status;
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, guarded_handler, 1);
    lua_replace(L, 2);
    lua_pushboolean(L, 1); /* the first result, if no errors */
    lua_pushvalue(L, 1);
    lua_rotate(L, 3, 2); /* both under the arguments */
    status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, xpcall_done);
    return xpcall_done(L, status, 2);
}

/* ---- long C steps ----
** The count hook sees a C function as one instruction. Those of the
** standard library that can run long without allocating (so that no
** memory limit stops them) are replaced by versions that look at the
** deadline as they go; those that run long only in proportion to memory
** (sorting, concatenating, formatting, compiling) look at it when they
** return, so a loop of them is not 1000 of them. */

/* Elements a step moves between two looks at the deadline. */
#define CHUNK 4096

/* The standard function (upvalue 1) with the arguments, then a look at
** the deadline. */
static int checked_call(lua_State *L)
{
    int n;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    n = lua_gettop(L);
    ltand_deadline_check(L);
    return n;
}

/* string.rep(s, n [, sep]): with s and sep empty the standard one loops
** n times to build nothing. */
static int guarded_rep(lua_State *L)
{
    size_t l, lsep;
    lua_Integer n;
    luaL_checklstring(L, 1, &l);
    n = luaL_checkinteger(L, 2);
    luaL_optlstring(L, 3, "", &lsep);
    if (n > 0 && l + lsep == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    return checked_call(L);
}

/* Calls the standard table.move (upvalue 1) on [f, f+m) -> t of the
** tables at 1 and tt, then looks at the deadline. */
static void move_chunk(lua_State *L, int tt, lua_Integer f, lua_Integer m,
                       lua_Integer t)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_pushinteger(L, f);
    lua_pushinteger(L, f + m - 1);
    lua_pushinteger(L, t);
    lua_pushvalue(L, tt);
    lua_call(L, 5, 0);
    ltand_deadline_check(L);
}

/* table.move(a1, f, e, t [, a2]): a long move goes in chunks, in the
** order that keeps an overlapping move right. */
static int guarded_move(lua_State *L)
{
    lua_Integer f = luaL_checkinteger(L, 2), e = luaL_checkinteger(L, 3);
    lua_Integer t = luaL_checkinteger(L, 4), n, i, m;
    int tt = !lua_isnoneornil(L, 5) ? 5 : 1;
    if (e < f || (lua_Unsigned)e - (lua_Unsigned)f < CHUNK)
        return checked_call(L);
    luaL_argcheck(L, f > 0 || e < LUA_MAXINTEGER + f, 3,
                  "too many elements to move");
    n = e - f + 1;
    luaL_argcheck(L, t <= LUA_MAXINTEGER - n + 1, 4,
                  "destination wrap around");
    if (t > e || t <= f || (tt != 1 && !lua_compare(L, 1, tt, LUA_OPEQ))) {
        for (i = 0; i < n; i += m) {
            m = n - i < CHUNK ? n - i : CHUNK;
            move_chunk(L, tt, f + i, m, t + i);
        }
    } else { /* onto itself, upwards: from the top down */
        for (i = n; i > 0; i -= m) {
            m = i < CHUNK ? i : CHUNK;
            move_chunk(L, tt, f + (i - m), m, t + (i - m));
        }
    }
    lua_pushvalue(L, tt);
    return 1;
}

/* table.insert(t, pos, v) on a table: its shift, which a __len can make
** as long as it likes, looks at the deadline as it goes. */
static int guarded_insert(lua_State *L)
{
    lua_Integer e, pos, i;
    if (lua_type(L, 1) != LUA_TTABLE || lua_gettop(L) != 3)
        return checked_call(L);
    e = (lua_Integer)((lua_Unsigned)luaL_len(L, 1) + 1u);
    pos = luaL_checkinteger(L, 2);
    luaL_argcheck(L, (lua_Unsigned)pos - 1u < (lua_Unsigned)e, 2,
                  "position out of bounds");
    for (i = e; i > pos; i--) {
        lua_geti(L, 1, i - 1);
        lua_seti(L, 1, i);
        if ((i & (CHUNK - 1)) == 0)
            ltand_deadline_check(L);
    }
    lua_seti(L, 1, pos);
    return 0;
}

/* table.remove(t [, pos]) on a table: the same for its shift. */
static int guarded_remove(lua_State *L)
{
    lua_Integer size, pos;
    if (lua_type(L, 1) != LUA_TTABLE)
        return checked_call(L);
    size = luaL_len(L, 1);
    pos = luaL_optinteger(L, 2, size);
    if (pos != size)
        luaL_argcheck(L, (lua_Unsigned)pos - 1u <= (lua_Unsigned)size, 2,
                      "position out of bounds");
    lua_geti(L, 1, pos);
    for (; pos < size; pos++) {
        lua_geti(L, 1, pos + 1);
        lua_seti(L, 1, pos);
        if ((pos & (CHUNK - 1)) == 0)
            ltand_deadline_check(L);
    }
    lua_pushnil(L);
    lua_seti(L, 1, pos);
    return 1;
}

/* Replaces lib[name] (lib at the top of the stack) by fn with the
** standard function as its upvalue. [-0, +0, m] */
static void guard(lua_State *L, const char *name, lua_CFunction fn)
{
    if (lua_getfield(L, -1, name) != LUA_TFUNCTION) {
        lua_pop(L, 1);
        return;
    }
    lua_pushcclosure(L, fn, 1);
    lua_setfield(L, -2, name);
}

static void guard_long_steps(lua_State *L)
{
    if (lua_getglobal(L, "table") == LUA_TTABLE) {
        guard(L, "move", guarded_move);
        guard(L, "insert", guarded_insert);
        guard(L, "remove", guarded_remove);
        guard(L, "sort", checked_call);
        guard(L, "concat", checked_call);
    }
    lua_pop(L, 1);
    if (lua_getglobal(L, "string") == LUA_TTABLE) {
        guard(L, "rep", guarded_rep);
        guard(L, "format", checked_call);
    }
    lua_pop(L, 1);
    if (lua_getglobal(L, "os") == LUA_TTABLE)
        guard(L, "date", checked_call);
    lua_pop(L, 1);
    lua_pushglobaltable(L);
    guard(L, "load", checked_call);
    lua_pop(L, 1);
}

void ltand_watch_install(lua_State *L, ltand_watch *w)
{
    *(ltand_watch **)lua_getextraspace(L) = w;
    if (lua_getglobal(L, "coroutine") == LUA_TTABLE) {
        lua_pushcfunction(L, guarded_resume);
        lua_setfield(L, -2, "resume");
        lua_pushcfunction(L, guarded_wrap);
        lua_setfield(L, -2, "wrap");
        lua_getfield(L, -1, "close");
        lua_pushcclosure(L, guarded_close, 1);
        lua_setfield(L, -2, "close");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, guarded_xpcall);
    lua_setglobal(L, "xpcall");
    guard_long_steps(L);
}
