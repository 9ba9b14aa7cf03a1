/*
** lspawn.c - tand.spawn: a Lua function run on its own thread, in its own
** Lua state, with copies of its arguments; t:join() returns its results.
**
** DESIGN: the spawning state dumps the function as a binary chunk (it may
** use globals, which become the new state's globals, but may capture no
** other upvalue) and encodes the arguments as MessagePack; the new thread
** owns a fresh lua_State from start to end and never shares one. The
** thread and its handle share a `job` with two references: the thread's,
** dropped when it has published its outcome, and the handle's, dropped by
** __gc, so neither waits for the other. job->mu guards done, ok, result;
** the thread is detached and a join waits on job->cv with a deadline.
*/
#include "ltand.h"

#include <errno.h>
#include <lualib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct job {
    atomic_int refs;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;        /* guarded by mu */
    int ok;          /* guarded by mu */
    tand_msg result; /* guarded by mu: MessagePack array, or error text */
    char *code;      /* thread only, after start */
    size_t code_size;
    tand_msg args;   /* thread only, after start */
    char *path, *cpath;
} job;

typedef struct lthread {
    job *j;
} lthread;

static void job_release(job *j)
{
    if (j == NULL || atomic_fetch_sub(&j->refs, 1) != 1)
        return;
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    tand_msg_clear(&j->result);
    tand_msg_clear(&j->args);
    free(j->code);
    free(j->path);
    free(j->cpath);
    free(j);
}

/* ---- copying a function into another state ---- */

typedef struct dump_state {
    int init;
    luaL_Buffer b;
} dump_state;

/* Starts the buffer on the first write, as lstrlib's string.dump does:
** luaL_buffinit pushes onto the stack, and lua_dump needs the function on
** top when it starts. */
static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud)
{
    dump_state *d = ud;
    if (!d->init) {
        d->init = 1;
        luaL_buffinit(L, &d->b);
    }
    luaL_addlstring(&d->b, p, sz);
    return 0;
}

/* Whether the value at idx is the tand module of L. [-0, +0, -] */
static int is_module(lua_State *L, int idx)
{
    int same;
    idx = lua_absindex(L, idx);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "tand");
    same = lua_type(L, idx) == LUA_TTABLE && lua_rawequal(L, idx, -1);
    lua_pop(L, 2);
    return same;
}

void ltand_bind_upvalues(lua_State *L, int idx)
{
    const char *name;
    int i;
    idx = lua_absindex(L, idx);
    for (i = 1; (name = lua_getupvalue(L, idx, i)) != NULL; i++) {
        lua_pop(L, 1);
        if (strcmp(name, "_ENV") == 0) {
            lua_pushglobaltable(L);
        } else if (strcmp(name, "tand") == 0) {
            lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
            lua_getfield(L, -1, "tand");
            lua_remove(L, -2);
        } else {
            continue;
        }
        lua_setupvalue(L, idx, i);
    }
}

int ltand_dump_function(lua_State *L, int idx, char **out, size_t *size)
{
    dump_state d;
    const char *name;
    size_t len;
    int i;

    *out = NULL;
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TFUNCTION) {
        lua_pushfstring(L, "a function is expected (got %s)",
                        luaL_typename(L, idx));
        return -1;
    }
    if (lua_iscfunction(L, idx)) {
        lua_pushliteral(L, "a C function cannot be copied to another "
                           "state; wrap it in a Lua function");
        return -1;
    }
    for (i = 1; (name = lua_getupvalue(L, idx, i)) != NULL; i++) {
        /* `tand` may be the module: the other state has it too */
        int module = strcmp(name, "tand") == 0 && is_module(L, -1);
        lua_pop(L, 1);
        if (strcmp(name, "_ENV") != 0 && !module) {
            lua_pushfstring(L, "the function captures the local '%s' "
                               "(an upvalue); only globals can be used, "
                               "pass other values as arguments",
                            name[0] ? name : "?");
            return -1;
        }
    }
    lua_pushvalue(L, idx);
    d.init = 0;
    if (lua_dump(L, dump_writer, &d, 0) != 0 || !d.init) {
        lua_pop(L, 1);
        lua_pushliteral(L, "the function cannot be dumped");
        return -1;
    }
    luaL_pushresult(&d.b);
    lua_tolstring(L, -1, &len);
    *out = malloc(len ? len : 1);
    if (*out == NULL) {
        lua_pop(L, 2);
        lua_pushliteral(L, "not enough memory");
        return -1;
    }
    memcpy(*out, lua_tostring(L, -1), len);
    *size = len;
    lua_pop(L, 2);
    return 0;
}

void ltand_setup_state(lua_State *L, const char *path, const char *cpath)
{
    luaL_openlibs(L);
    /* Loaded, not only preloaded: decoding a handle needs its metatable. */
    luaL_requiref(L, "tand", luaopen_tand, 1); /* and the global tand */
    lua_pop(L, 1);
    lua_getglobal(L, "package");
    if (path != NULL) {
        lua_pushstring(L, path);
        lua_setfield(L, -2, "path");
    }
    if (cpath != NULL) {
        lua_pushstring(L, cpath);
        lua_setfield(L, -2, "cpath");
    }
    lua_pop(L, 1);
}

char *ltand_package_path(lua_State *L, const char *field)
{
    char *v = NULL;
    if (lua_getglobal(L, "package") == LUA_TTABLE) {
        if (lua_getfield(L, -1, field) == LUA_TSTRING)
            v = strdup(lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return v;
}

/* ---- the thread ---- */

int ltand_traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL)
        msg = lua_pushfstring(L, "(error object is a %s value)",
                              luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Runs the job inside L: [-0, +1]: the encoded results or an error
** message on the stack; returns 1 for success. */
static int run_protected(lua_State *L)
{
    job *j = lua_touserdata(L, 1);
    int nargs, base;
    lua_settop(L, 0);
    ltand_setup_state(L, j->path, j->cpath);
    lua_pushcfunction(L, ltand_traceback);
    base = lua_gettop(L);
    if (luaL_loadbufferx(L, j->code, j->code_size, "=spawned", "b") != 0)
        return lua_error(L);
    ltand_bind_upvalues(L, -1);
    nargs = j->args.data ? ltand_decode(L, j->args.data, j->args.size, 1)
                         : 0;
    if (nargs < 0)
        return lua_error(L);
    if (lua_pcall(L, nargs, LUA_MULTRET, base) != 0)
        return lua_error(L);
    {
        tand_msg out = {0};
        int n = lua_gettop(L) - base;
        if (n > LTAND_MAX_VALUES)
            return luaL_error(L, "the thread returned %d values, more than "
                                 "the %d it can return (return a table)",
                              n, LTAND_MAX_VALUES);
        if (ltand_encode_once(L, ltand_scratch_of(L), base + 1, n, 1, &out) != 0) {
            lua_pushfstring(L, "the thread returned a value that cannot "
                               "be sent: %s",
                            lua_tostring(L, -1));
            return lua_error(L);
        }
        pthread_mutex_lock(&j->mu);
        j->result = out;
        pthread_mutex_unlock(&j->mu);
    }
    return 0;
}

static void *thread_main(void *arg)
{
    job *j = arg;
    lua_State *L = luaL_newstate();
    int ok = 0;
    tand_msg err = {0};

    if (L == NULL) {
        tand_msg_set_text(&err, "not enough memory for a Lua state", 33);
    } else {
        lua_pushcfunction(L, run_protected);
        lua_pushlightuserdata(L, j);
        if (lua_pcall(L, 1, 0, 0) == 0) {
            ok = 1;
        } else {
            size_t len;
            const char *msg = lua_tolstring(L, -1, &len);
            if (msg == NULL)
                msg = "thread failed", len = 13;
            tand_msg_set_text(&err, msg, len);
        }
        lua_close(L);
    }
    pthread_mutex_lock(&j->mu);
    j->done = 1;
    j->ok = ok;
    if (!ok) {
        tand_msg_clear(&j->result);
        j->result = err;
    }
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    job_release(j);
    return NULL;
}

static int l_spawn(lua_State *L)
{
    lthread *t;
    job *j;
    pthread_attr_t attr;
    int rc;

    luaL_checktype(L, 1, LUA_TFUNCTION);
    t = lua_newuserdatauv(L, sizeof *t, 0); /* closed until the job runs */
    t->j = NULL;
    luaL_setmetatable(L, LTAND_THREAD);
    lua_insert(L, 1);

    j = calloc(1, sizeof *j);
    if (j == NULL)
        return luaL_error(L, "not enough memory");
    atomic_init(&j->refs, 1);
    pthread_mutex_init(&j->mu, NULL);
    {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&j->cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    t->j = j; /* from here the handle's __gc frees the job */
    if (ltand_dump_function(L, 2, &j->code, &j->code_size) != 0)
        return luaL_argerror(L, 1, lua_tostring(L, -1));
    if (lua_gettop(L) - 2 > LTAND_MAX_VALUES)
        return luaL_error(L, "tand.spawn: %d arguments, more than the %d a "
                             "thread takes (pass a table)",
                          lua_gettop(L) - 2, LTAND_MAX_VALUES);
    if (lua_gettop(L) > 2 &&
        ltand_encode_once(L, ltand_scratch_of(L), 3, lua_gettop(L) - 2, 1,
                     &j->args) != 0)
        return luaL_error(L, "tand.spawn: %s", lua_tostring(L, -1));
    j->path = ltand_package_path(L, "path");
    j->cpath = ltand_package_path(L, "cpath");

    atomic_fetch_add(&j->refs, 1); /* the thread's */
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    {
        pthread_t th;
        rc = pthread_create(&th, &attr, thread_main, j);
    }
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        atomic_fetch_sub(&j->refs, 1);
        return ltand_fail(L, TAND_ESYSTEM, "cannot create a thread");
    }
    lua_settop(L, 1);
    return 1;
}

static lthread *check_thread(lua_State *L)
{
    lthread *t = luaL_checkudata(L, 1, LTAND_THREAD);
    if (t->j == NULL)
        luaL_error(L, "attempt to use a thread that never started");
    return t;
}

/* t:join([timeout_ms]) -> results..., or nil, "timeout" / "thread_failed",
** detail. The timeout follows ltand_timeout's rule (none by default). */
static int t_join(lua_State *L)
{
    lthread *t = check_thread(L);
    job *j = t->j;
    int64_t ms = TAND_FOREVER;
    struct timespec ts;
    int done, ok, n;
    tand_msg *copy;

    if (!lua_isnoneornil(L, 2) && ltand_timeout(L, 2, &ms) != 0)
        return luaL_argerror(L, 2, "timeout must be a whole number of "
                                   "ms >= 0, or math.huge");
    if (ms >= 0) { /* ms <= LTAND_TIMEOUT_MAX_MS: tv_sec cannot overflow */
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(ms / 1000);
        ts.tv_nsec += (long)(ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
    }
    pthread_mutex_lock(&j->mu);
    while (!j->done) {
        if (ms < 0) {
            pthread_cond_wait(&j->cv, &j->mu);
        } else if (pthread_cond_timedwait(&j->cv, &j->mu, &ts) ==
                   ETIMEDOUT) {
            break;
        }
    }
    done = j->done;
    ok = j->ok;
    pthread_mutex_unlock(&j->mu);
    if (!done)
        return ltand_fail(L, TAND_ETIMEDOUT, "the thread is still running");
    /* done is final: result no longer changes, read it without the lock */
    if (!ok) {
        lua_pushnil(L);
        lua_pushliteral(L, "thread_failed");
        lua_pushstring(L, j->result.data ? j->result.data : "thread failed");
        return 3;
    }
    copy = &j->result;
    n = ltand_decode(L, copy->data, copy->size, 1);
    if (n < 0)
        return lua_error(L);
    return n;
}

static int t_done(lua_State *L)
{
    lthread *t = check_thread(L);
    int done;
    pthread_mutex_lock(&t->j->mu);
    done = t->j->done;
    pthread_mutex_unlock(&t->j->mu);
    lua_pushboolean(L, done);
    return 1;
}

static int t_gc(lua_State *L)
{
    lthread *t = luaL_checkudata(L, 1, LTAND_THREAD);
    job_release(t->j); /* the thread keeps its own reference */
    t->j = NULL;
    return 0;
}

static int t_tostring(lua_State *L)
{
    lthread *t = luaL_checkudata(L, 1, LTAND_THREAD);
    lua_pushfstring(L, "tand.thread: %p", (void *)t->j);
    return 1;
}

int ltand_open_spawn(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"join", t_join}, {"done", t_done}, {NULL, NULL}};
    if (luaL_newmetatable(L, LTAND_THREAD)) {
        lua_pushcfunction(L, t_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, t_tostring);
        lua_setfield(L, -2, "__tostring");
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_spawn);
    lua_setfield(L, -2, "spawn");
    return 0;
}
