/*
** lpolicy.c - policy servers: a deluxe machine whose callbacks are Lua.
**
** DESIGN: each policy server owns a private lua_State, made by
** tand.start's thread while the server is not yet visible and from then
** on used only by whichever thread runs the server (one at a time, the
** engine's guarantee), so the state needs no lock. The policy's callbacks
** run under lua_pcall with a traceback handler, their arguments built
** inside the same protected call (so memory_limit is never a panic); an
** error crashes the server as in OTP: the caller gets server_crashed with
** the traceback and the engine answers every other waiting caller. The
** built-in operations work on a tand_tickets owned by the server, with no
** message.
** Callback deadlines are ldeadline.c's: a policy's state is tied to the
** ltand_watch in its policy, and every callback runs through
** ltand_watch_pcall. The memory limit is an allocator that counts the
** state's bytes and keeps its freed small blocks in a pool (lpool.c);
** both belong to the thread running the server, like the state.
*/
#include "ltand.h"

#include <lualib.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LTAND_POLICY_MACHINE "tand.policy_machine"
#define LTAND_FROM "tand.from"
/* A `from` left unanswered when its callback returned: collected, it
** tells its caller that no reply will come. */
#define LTAND_FROM_KEPT "tand.from_kept"

_Thread_local int64_t ltand_callback_deadline_ns;

typedef struct policy {
    ltand_watch watch;       /* the callbacks' deadline */
    lua_State *L;
    tand_tickets *tickets;
    tand_server *self;       /* borrowed: the server owns the policy */
    tand_journal *journal;   /* or NULL */
    int64_t auto_shutdown_ms;
    size_t mem_used, mem_limit;
    ltand_pool pool;         /* the Lua state's small blocks */
    int ref_policy, ref_state, ref_machine;
    int ref_callback[5];     /* init, handle_call, ... or LUA_NOREF */
    int ref_from_meta;       /* the metatable of `from` values */
    int ref_from_kept_meta;  /* and of those kept past their callback */
    int closing;             /* the state is being closed */
    int ref_op[7];           /* the names of the fast-path ops */
    unsigned passthrough;    /* bit op: P.passthrough lists that op */
    void *machine_ud;        /* the machine object, to recognise it */
    char *name;              /* the server's name at its start, or NULL */
} policy;

typedef struct lfrom {
    tand_from *from;
    int answered;
} lfrom;

static policy *policy_of(lua_State *L)
{
    ltand_watch *w = *(ltand_watch **)lua_getextraspace(L);
    return (policy *)(void *)((char *)w - offsetof(policy, watch));
}

/* Calls the function below nargs arguments (a traceback handler sits
** below it) with the callback deadline armed. [-(nargs+1), +(n|1), -] */
static int invoke(policy *p, int nargs, int nresults)
{
    return ltand_watch_pcall(p->L, nargs, nresults,
                             lua_gettop(p->L) - nargs - 1);
}

/* ---- the built-in operations ---- */

static void push_state_table(lua_State *L, policy *p)
{
    int64_t min, max;
    uint64_t n = tand_tickets_count(p->tickets), i;
    int64_t *all = n ? malloc(n * sizeof *all) : NULL;
    tand_tickets_bounds(p->tickets, &min, &max);
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, min);
    lua_setfield(L, -2, "min_number");
    lua_pushinteger(L, max);
    lua_setfield(L, -2, "max_number");
    if (p->auto_shutdown_ms < 0)
        lua_pushnumber(L, HUGE_VAL);
    else
        lua_pushinteger(L, p->auto_shutdown_ms);
    lua_setfield(L, -2, "auto_shutdown_timeout");
    if (n > 0 && all == NULL)
        luaL_error(L, "not enough memory");
    lua_createtable(L, n < 1000000 ? (int)n : 1000000, 0);
    tand_tickets_list(p->tickets, all, n);
    for (i = 0; i < n; i++) {
        lua_pushinteger(L, all[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    free(all);
    lua_setfield(L, -2, "queue");
}

/* The built-in operations on the tickets, journaled when there is a
** journal (a failed write fails the batch: see tand.h). */
static int t_queue(policy *p, int64_t *n)
{
    int rc = tand_tickets_queue(p->tickets, n);
    if (rc == 0 && p->journal)
        tand_journal_queue_push(p->journal, *n);
    return rc;
}

static int t_serve(policy *p, const int64_t *prio, int64_t *n)
{
    int rc = tand_tickets_serve(p->tickets, prio, n);
    if (rc == 0 && p->journal)
        tand_journal_queue_remove(p->journal, *n);
    return rc;
}

static void t_reset(policy *p)
{
    tand_tickets_reset(p->tickets);
    if (p->journal)
        tand_journal_queue_clear(p->journal);
}

static int number_result(lua_State *L, int rc, int64_t n)
{
    if (rc != 0)
        return ltand_fail(L, rc, NULL);
    lua_pushinteger(L, n);
    return 1;
}

/* Runs the built-in op named `op` with the arguments at arg.. (nargs of
** them) and pushes its results. [-0, +n, e] */
static int builtin(lua_State *L, policy *p, const char *op, int arg,
                   int nargs)
{
    int64_t n = 0;
    int rc;
    if (strcmp(op, "queue_new_number") == 0) {
        rc = t_queue(p, &n);
        return number_result(L, rc, n);
    }
    if (strcmp(op, "serve_next_queued_number") == 0) {
        int64_t prio;
        int isint = 1;
        if (nargs >= 1 && !lua_isnil(L, arg)) {
            prio = (int64_t)lua_tointegerx(L, arg, &isint);
            if (!isint)
                return ltand_fail(L, TAND_EBADREQ,
                                  "the priority number must be an integer");
            rc = t_serve(p, &prio, &n);
        } else {
            rc = t_serve(p, NULL, &n);
        }
        return number_result(L, rc, n);
    }
    if (strcmp(op, "report_state") == 0) {
        push_state_table(L, p);
        return 1;
    }
    if (strcmp(op, "reset_state") == 0) {
        t_reset(p);
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushfstring(L, "unknown request '%s'", op);
    return ltand_fail(L, TAND_EBADREQ, lua_tostring(L, -1));
}

/* The machine object is one userdata per state: compare the pointer
** before the slower check by metatable name. */
static policy *check_pmachine(lua_State *L)
{
    policy *p = policy_of(L);
    if (lua_touserdata(L, 1) == p->machine_ud)
        return p;
    return *(policy **)luaL_checkudata(L, 1, LTAND_POLICY_MACHINE);
}

static int pm_queue_new_number(lua_State *L)
{
    return builtin(L, check_pmachine(L), "queue_new_number", 2, 0);
}

static int pm_serve_next_queued_number(lua_State *L)
{
    policy *p = check_pmachine(L);
    if (!lua_isnoneornil(L, 2))
        luaL_checkinteger(L, 2);
    return builtin(L, p, "serve_next_queued_number", 2, lua_gettop(L) - 1);
}

static int pm_report_state(lua_State *L)
{
    return builtin(L, check_pmachine(L), "report_state", 2, 0);
}

static int pm_reset_state(lua_State *L)
{
    return builtin(L, check_pmachine(L), "reset_state", 2, 0);
}

static int pm_queue(lua_State *L)
{
    push_state_table(L, check_pmachine(L));
    lua_getfield(L, -1, "queue");
    return 1;
}

static int pm_default(lua_State *L)
{
    policy *p = check_pmachine(L);
    int n;
    luaL_checktype(L, 2, LUA_TTABLE);
    if (lua_rawgeti(L, 2, 1) != LUA_TSTRING)
        return luaL_argerror(L, 2, "a request is {op, args...} with a "
                                   "string op");
    n = (int)lua_rawlen(L, 2);
    luaL_checkstack(L, n + 4, "request too long");
    for (int i = 2; i <= n; i++)
        lua_rawgeti(L, 2, i);
    return builtin(L, p, lua_tostring(L, 3), 4, n - 1);
}

/* The `from` at idx, of either metatable. [-0, +0, v] */
static lfrom *check_from(lua_State *L, int idx)
{
    policy *p = policy_of(L);
    lfrom *f = lua_touserdata(L, idx);
    if (f != NULL && lua_getmetatable(L, idx)) {
        int ok;
        lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref_from_meta);
        ok = lua_rawequal(L, -1, -2);
        lua_pop(L, 1);
        lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref_from_kept_meta);
        ok = ok || lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (ok)
            return f;
    }
    luaL_typeerror(L, idx, LTAND_FROM);
    return NULL;
}

/* __gc of a `from` kept past its callback: the policy dropped it
** unanswered, so its caller gets timeout now rather than at its deadline,
** and the engine lets go of the call. Not while the state closes: the
** engine answers those callers itself. [-0, +0, -] */
static int from_gc(lua_State *L)
{
    lfrom *f = lua_touserdata(L, 1);
    static const char text[] = "the server dropped the call unanswered";
    tand_msg m = {0};
    if (f->answered || policy_of(L)->closing)
        return 0;
    f->answered = 1;
    m.status = TAND_ETIMEDOUT;
    tand_msg_set_text(&m, text, sizeof text - 1);
    tand_reply(f->from, &m);
    return 0;
}

static int pm_reply(lua_State *L)
{
    policy *p = check_pmachine(L);
    lfrom *f = check_from(L, 2);
    tand_msg msg = {0};
    (void)p;
    if (f->answered)
        return luaL_error(L, "this caller has already been answered");
    if (ltand_encode(L, 3, lua_gettop(L) - 2, 1, &msg) != 0)
        return luaL_error(L, "machine:reply: %s", lua_tostring(L, -1));
    f->answered = 1;
    if (tand_reply(f->from, &msg) != 0)
        return ltand_fail(L, TAND_ETIMEDOUT, "the caller gave up waiting");
    lua_pushboolean(L, 1);
    return 1;
}

static int pm_stop(lua_State *L)
{
    policy *p = check_pmachine(L);
    tand_server_stop(p->self, 0, luaL_optstring(L, 2, NULL), 0);
    lua_pushboolean(L, 1);
    return 1;
}

static int pm_self(lua_State *L)
{
    policy *p = check_pmachine(L);
    lmachine *m;
    ltand_push_machine(L, p->self, tand_server_id(p->self));
    m = lua_touserdata(L, -1);
    /* sent in messages, so that it can be followed from another process */
    if (p->name != NULL && (m->server_name = strdup(p->name)) == NULL)
        return luaL_error(L, "not enough memory");
    return 1;
}

static const luaL_Reg pmachine_methods[] = {
    {"queue_new_number", pm_queue_new_number},
    {"serve_next_queued_number", pm_serve_next_queued_number},
    {"report_state", pm_report_state},
    {"reset_state", pm_reset_state},
    {"queue", pm_queue},
    {"default", pm_default},
    {"reply", pm_reply},
    {"stop", pm_stop},
    {"self", pm_self},
    {NULL, NULL}};

/* ---- the policy's Lua state ---- */

static const char *const fast_ops[] = {
    NULL, "queue_new_number", "serve_next_queued_number", "report_state",
    "reset_state", "next", "report"};

/* The callbacks, in the order of policy.ref_callback. */
enum { CB_INIT, CB_CALL, CB_CAST, CB_INFO, CB_TERMINATE, CB_COUNT };
static const char *const callbacks[] = {"init", "handle_call",
                                        "handle_cast", "handle_info",
                                        "terminate", NULL};

static void *policy_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    policy *p = ud;
    size_t old = ptr ? osize : 0;
    void *q;
    if (nsize == 0) {
        ltand_pool_realloc(&p->pool, ptr, osize, 0);
        p->mem_used -= old;
        return NULL;
    }
    if (p->mem_limit != 0 && nsize > old &&
        p->mem_used + (nsize - old) > p->mem_limit)
        return NULL;
    q = ltand_pool_realloc(&p->pool, ptr, osize, nsize);
    if (q != NULL)
        p->mem_used = p->mem_used - old + nsize;
    return q;
}

/* setmetatable refusing __gc: a finalizer may run at lua_close, outside
** any callback's deadline. */
static int sandbox_setmetatable(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE &&
        lua_getfield(L, 2, "__gc") != LUA_TNIL)
        return luaL_error(L, "__gc metamethods are not allowed in a "
                             "sandbox");
    lua_settop(L, 2);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 2, 1);
    return 1;
}

static int sandbox_require(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    if (lua_getfield(L, -1, name) == LUA_TNIL)
        return luaL_error(L, "module '%s' is not available in a sandbox",
                          name);
    return 1;
}

/* The most source one load() in a sandbox compiles: compiling runs in C,
** out of the callback deadline's reach, so it is kept short. */
#define LOAD_MAX_BYTES (1u << 20)

/* A load() reader (upvalue 1) whose pieces add up to LOAD_MAX_BYTES at
** most (upvalue 2 counts them). */
static int capped_reader(lua_State *L)
{
    lua_Integer used = lua_tointeger(L, lua_upvalueindex(2));
    size_t len = 0;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_call(L, 0, 1);
    if (lua_type(L, -1) == LUA_TSTRING)
        lua_tolstring(L, -1, &len);
    if ((size_t)used + len > LOAD_MAX_BYTES)
        return luaL_error(L, "a chunk is limited to %d bytes in a sandbox",
                          (int)LOAD_MAX_BYTES);
    lua_pushinteger(L, used + (lua_Integer)len);
    lua_replace(L, lua_upvalueindex(2));
    return 1;
}

/* load(chunk [, chunkname [, mode [, env]]]), text chunks of at most
** LOAD_MAX_BYTES only: the original load (upvalue 1) with mode "t". An
** env passed as nil stays passed, as load tells a missing env from a nil
** one. */
static int sandbox_load(lua_State *L)
{
    int nargs = lua_gettop(L) >= 4 ? 4 : 3;
    size_t len;
    if (lua_type(L, 1) == LUA_TSTRING) {
        lua_tolstring(L, 1, &len);
        if (len > LOAD_MAX_BYTES) {
            luaL_pushfail(L);
            lua_pushfstring(L, "a chunk is limited to %d bytes in a sandbox",
                            (int)LOAD_MAX_BYTES);
            return 2;
        }
    } else if (lua_type(L, 1) == LUA_TFUNCTION) {
        lua_pushvalue(L, 1);
        lua_pushinteger(L, 0);
        lua_pushcclosure(L, capped_reader, 2);
        lua_replace(L, 1);
    }
    lua_settop(L, nargs);
    lua_pushliteral(L, "t");
    lua_replace(L, 3);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, nargs, LUA_MULTRET);
    return lua_gettop(L);
}

/* Closes every door of DESIGN.md's sandbox: io, os beyond time, debug,
** package loaders, binary chunks, dofile and loadfile; and from tand,
** whatever starts threads, loads code or sleeps a worker. [-0, +0, e] */
static void make_sandbox(lua_State *L)
{
    static const char *const gone[] = {"io", "debug", "package", "dofile",
                                       "loadfile", "require", NULL};
    static const char *const os_kept[] = {"time", "clock", "date",
                                          "difftime", NULL};
    /* ... and what finds a server by name: a sandboxed policy reaches
    ** only the handles it is given */
    static const char *const tand_gone[] = {"start", "spawn", "sleep",
                                            "whereis", "register",
                                            "unregister",
                                            "supervise", NULL};
    int i;
    for (i = 0; gone[i]; i++) {
        lua_pushnil(L);
        lua_setglobal(L, gone[i]);
    }
    lua_getglobal(L, "os");
    lua_createtable(L, 0, 4);
    for (i = 0; os_kept[i]; i++) {
        lua_getfield(L, -2, os_kept[i]);
        lua_setfield(L, -2, os_kept[i]);
    }
    lua_setglobal(L, "os");
    lua_pop(L, 1);
    /* load: text only, through the original function */
    lua_getglobal(L, "load");
    lua_pushcclosure(L, sandbox_load, 1);
    lua_setglobal(L, "load");
    lua_pushcfunction(L, sandbox_require);
    lua_setglobal(L, "require");
    lua_getglobal(L, "setmetatable");
    lua_pushcclosure(L, sandbox_setmetatable, 1);
    lua_setglobal(L, "setmetatable");
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "tand");
    for (i = 0; tand_gone[i]; i++) {
        lua_pushnil(L);
        lua_setfield(L, -2, tand_gone[i]);
    }
    lua_pop(L, 1);
    /* the libraries' own tables in package.loaded lose the same doors */
    for (i = 0; gone[i]; i++) {
        lua_pushnil(L);
        lua_setfield(L, -2, gone[i]);
    }
    lua_getglobal(L, "os");
    lua_setfield(L, -2, "os");
    lua_pop(L, 1);
}

/* ---- starting: the configuration handed from tand.start to init ---- */

typedef struct policy_config {
    char *code;      /* a dumped function (binary chunk), or NULL */
    size_t code_size;
    char *file;      /* a .lua file to load, or NULL */
    tand_msg opts;   /* the options table for init, MessagePack */
    char *path, *cpath;
    ltand_policy_options o;
    const char *launch_name; /* during a launch: the name it is given */
    int status;      /* why init failed */
    char err[2048];  /* and the detail */
} policy_config;

static void config_free(policy_config *c)
{
    free((char *)c->o.journal);
    free(c->code);
    free(c->file);
    tand_msg_clear(&c->opts);
    free(c->path);
    free(c->cpath);
}

static int fail_init(policy_config *c, int status, const char *fmt,
                     const char *text)
{
    c->status = status;
    snprintf(c->err, sizeof c->err, fmt, text ? text : "");
    return status;
}

/* tand's metatables in the registry ("tand.machine", "tand.from", ...)
** answer getmetatable with false: a policy that could add __gc to one
** would run a finalizer, where Lua turns hooks off and so the callback
** deadline. [-0, +0, m] */
static void protect_metatables(lua_State *L)
{
    lua_pushnil(L);
    while (lua_next(L, LUA_REGISTRYINDEX) != 0) {
        if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TTABLE &&
            strncmp(lua_tostring(L, -2), "tand.", 5) == 0) {
            lua_pushboolean(L, 0);
            lua_setfield(L, -2, "__metatable");
        }
        lua_pop(L, 1);
    }
}

/* Sets up the fresh state: libraries, sandbox, metatables, the machine
** object. Runs protected. [-0, +0, m] */
static int setup_state(lua_State *L)
{
    policy_config *c = lua_touserdata(L, 1);
    policy *p = lua_touserdata(L, 2);
    policy **m;
    lua_settop(L, 0);
    ltand_setup_state(L, c->path, c->cpath);
    ltand_watch_install(L, &p->watch);
    ltand_open_patterns(L); /* matches that end with their callback */
    if (c->o.sandbox)
        make_sandbox(L);
    luaL_newmetatable(L, LTAND_FROM);
    lua_pop(L, 1);
    luaL_newmetatable(L, LTAND_FROM_KEPT);
    lua_pushcfunction(L, from_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newmetatable(L, LTAND_POLICY_MACHINE);
    luaL_newlib(L, pmachine_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    m = lua_newuserdatauv(L, sizeof *m, 0);
    *m = p;
    p->machine_ud = m;
    luaL_setmetatable(L, LTAND_POLICY_MACHINE);
    p->ref_machine = luaL_ref(L, LUA_REGISTRYINDEX);
    luaL_getmetatable(L, LTAND_FROM);
    p->ref_from_meta = luaL_ref(L, LUA_REGISTRYINDEX);
    luaL_getmetatable(L, LTAND_FROM_KEPT);
    p->ref_from_kept_meta = luaL_ref(L, LUA_REGISTRYINDEX);
    for (int i = 1; i <= TAND_OP_REPORT; i++) {
        lua_pushstring(L, fast_ops[i]);
        p->ref_op[i] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    protect_metatables(L);
    return 0;
}

static void policy_free(policy *p)
{
    p->closing = 1;
    if (p->L != NULL)
        ltand_watch_close(p->L);
    ltand_pool_drain(&p->pool);
    tand_tickets_free(p->tickets);
    free(p->name);
    free(p);
}

/* The op code of a built-in op a policy may pass through, or 0. */
static int passthrough_op(const char *name, size_t len)
{
    for (int op = 1; op <= TAND_OP_RESET_STATE; op++)
        if (strlen(fast_ops[op]) == len && memcmp(fast_ops[op], name, len) == 0)
            return op;
    return 0;
}

/* Reads P.passthrough (the policy's table at idx): the built-in ops that
** go to the machine without entering Lua. [-0, +0, e] */
static void read_passthrough(lua_State *L, policy *p, int idx)
{
    int t = lua_getfield(L, idx, "passthrough");
    lua_Integer i, n;
    if (t == LUA_TNIL)
        return;
    if (t != LUA_TTABLE)
        luaL_error(L, "the policy's passthrough must be a list of op names "
                      "(it is a %s)",
                   luaL_typename(L, -1));
    n = (lua_Integer)lua_rawlen(L, -1);
    for (i = 1; i <= n; i++) {
        size_t len;
        const char *name;
        int op;
        if (lua_rawgeti(L, -1, i) != LUA_TSTRING)
            luaL_error(L, "the policy's passthrough[%I] is not an op name "
                          "(it is a %s)",
                       i, luaL_typename(L, -1));
        name = lua_tolstring(L, -1, &len);
        if ((op = passthrough_op(name, len)) == 0)
            luaL_error(L, "the policy's passthrough names '%s', which is "
                          "not an op of the machine (queue_new_number, "
                          "serve_next_queued_number, report_state, "
                          "reset_state)",
                       name);
        p->passthrough |= 1u << op;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* Takes in the policy table (argument 2): its callbacks, looked up once
** (the table's later changes are not seen), and P.passthrough. Runs
** protected: the table's metamethods are the policy's code.
** [-0, +0, e] */
static int read_policy_table(lua_State *L)
{
    policy *p = lua_touserdata(L, 1);
    for (int i = 0; callbacks[i]; i++) {
        int t = lua_getfield(L, 2, callbacks[i]);
        if (t != LUA_TNIL && t != LUA_TFUNCTION)
            luaL_error(L, "the policy's %s is not a function", callbacks[i]);
        p->ref_callback[i] = t == LUA_TNIL ? (lua_pop(L, 1), LUA_NOREF)
                                           : luaL_ref(L, LUA_REGISTRYINDEX);
    }
    read_passthrough(L, p, 2);
    return 0;
}

/* Loads the policy into p->L and leaves its table in the registry. */
static int load_policy(policy *p, policy_config *c)
{
    lua_State *L = p->L;
    int rc;

    lua_pushcfunction(L, ltand_traceback);
    rc = c->file ? luaL_loadfilex(L, c->file, "t")
                 : luaL_loadbufferx(L, c->code, c->code_size, "=policy", "b");
    if (rc != LUA_OK)
        return fail_init(c, TAND_ECONFIG, "cannot load the policy: %s",
                         lua_tostring(L, -1));
    if (invoke(p, 0, 1) != LUA_OK)
        return fail_init(c, TAND_ECONFIG, "the policy failed to load: %s",
                         lua_tostring(L, -1));
    if (lua_type(L, -1) == LUA_TFUNCTION) { /* return function() ... end */
        lua_pushcfunction(L, ltand_traceback);
        lua_insert(L, -2);
        if (invoke(p, 0, 1) != LUA_OK)
            return fail_init(c, TAND_ECONFIG, "the policy failed to load: %s",
                             lua_tostring(L, -1));
    }
    if (lua_type(L, -1) != LUA_TTABLE)
        return fail_init(c, TAND_ECONFIG,
                         "the policy must give a table of callbacks "
                         "(it gave a %s)",
                         luaL_typename(L, -1));
    lua_pushcfunction(L, read_policy_table);
    lua_pushlightuserdata(L, p);
    lua_pushvalue(L, -3);
    if (ltand_watch_pcall(L, 2, 0, 0) != LUA_OK)
        return fail_init(c, TAND_ECONFIG, "%s", lua_tostring(L, -1));
    p->ref_policy = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, 0);
    return 0;
}

/* Pushes the policy's callback `which` (CB_*) and returns 1, or pushes
** nothing and returns 0 when the policy has none. [-0, +(0|1), -] */
static int get_callback(policy *p, int which)
{
    if (p->ref_callback[which] == LUA_NOREF)
        return 0;
    lua_rawgeti(p->L, LUA_REGISTRYINDEX, p->ref_callback[which]);
    return 1;
}

static int resume_journal(policy *p, policy_config *c);

/* One callback run: what its protected part needs and what it found (see
** "running callbacks in protected mode" below). */
typedef struct cb_run {
    policy *p;
    int which;             /* one of CB_INIT .. CB_TERMINATE */
    const tand_msg *msg;   /* CB_CALL, CB_CAST: the request */
    const char *data;      /* CB_INIT, CB_INFO: MessagePack, or NULL */
    size_t size;
    const char *reason;    /* CB_TERMINATE */
    tand_from *from;       /* CB_CALL */
    tand_msg *reply;       /* CB_CALL: the reply the engine sends */
    lfrom *f;              /* CB_CALL: the `from` given to the callback */
    int called;            /* the arguments were built, the callback ran */
    int bad_request;       /* not {op, args...} (a saved state: not valid) */
    int engine_replies;    /* CB_CALL: *reply holds the callback's answer */
    int reset;             /* default_cast: the cast is reset_state */
} cb_run;

static int run_callback(cb_run *r);
static int decode_protected(lua_State *L);
static int save_state(policy *p);

static int policy_init(tand_server *self, void *arg, void **state)
{
    policy_config *c = arg;
    policy *p = calloc(1, sizeof *p);
    cb_run r = {0};
    lua_State *L;
    int rc;

    if (p == NULL)
        return fail_init(c, TAND_ENOMEM, "%snot enough memory", "");
    p->self = self;
    if (c->launch_name != NULL && (p->name = strdup(c->launch_name)) == NULL) {
        free(p);
        return fail_init(c, TAND_ENOMEM, "%snot enough memory", "");
    }
    p->auto_shutdown_ms = c->o.auto_shutdown_ms;
    ltand_watch_init(&p->watch, self, c->o.callback_ms);
    p->mem_limit = c->o.memory_limit;
    ltand_pool_init(&p->pool);
    p->ref_policy = p->ref_state = p->ref_machine = LUA_NOREF;
    for (int i = 0; i < CB_COUNT; i++)
        p->ref_callback[i] = LUA_NOREF;
    rc = tand_tickets_new(c->o.min_number, c->o.max_number, &p->tickets);
    if (rc != 0) {
        free(p->name);
        free(p);
        return fail_init(c, rc, "%smin_number must be below max_number",
                         "");
    }
    p->L = L = lua_newstate(policy_alloc, p);
    if (L == NULL) {
        policy_free(p);
        return fail_init(c, TAND_ENOMEM,
                         "%snot enough memory for the policy's Lua state "
                         "(see memory_limit)",
                         "");
    }
    *(ltand_watch **)lua_getextraspace(L) = &p->watch;
    /* Generational: each call's request table and `from` die young, and
    ** minor collections hand them back to the pool while it still has
    ** room for them (about 15% fewer instructions per call). */
    lua_gc(L, LUA_GCGEN, 0, 0);
    lua_pushcfunction(L, setup_state);
    lua_pushlightuserdata(L, c);
    lua_pushlightuserdata(L, p);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        rc = fail_init(c, TAND_ENOMEM, "cannot set up the policy state: %s",
                       lua_tostring(L, -1));
        policy_free(p);
        return rc;
    }
    if (c->o.callback_ms >= 0 && ltand_watch_start() != 0) {
        policy_free(p);
        return fail_init(c, TAND_ESYSTEM, "%scannot start the watchdog",
                         "");
    }
    if ((rc = load_policy(p, c)) != 0) {
        policy_free(p);
        return rc;
    }
    p->journal = tand_server_journal(self);
    if (p->journal != NULL) {
        int top = lua_gettop(L);
        if ((rc = resume_journal(p, c)) != 0) {
            policy_free(p);
            return rc;
        }
        if (lua_gettop(L) > top) { /* a saved state: resume from it */
            p->ref_state = luaL_ref(L, LUA_REGISTRYINDEX);
            lua_settop(L, 0);
            ltand_pool_drain(&p->pool); /* an idle server keeps nothing */
            atomic_store(&p->watch.killable, 1);
            *state = p;
            return 0;
        }
    }
    /* state = init(opts, machine), or {} */
    r.p = p;
    r.which = CB_INIT;
    r.data = c->opts.data;
    r.size = c->opts.size;
    if (run_callback(&r) != LUA_OK) {
        rc = fail_init(c, TAND_ECRASHED, "init failed: %s",
                       lua_tostring(L, -1));
        policy_free(p);
        return rc;
    }
    lua_settop(L, 0);
    ltand_pool_drain(&p->pool); /* an idle server keeps nothing */
    atomic_store(&p->watch.killable, 1);
    *state = p;
    return 0;
}

/* ---- the journal of a policy server: its tickets and its state ---- */

static int restore_ticket(void *ud, int64_t number)
{
    return tand_tickets_append(ud, number) == 0 ? 0 : TAND_EJOURNAL;
}

/* Resumes the tickets (or records the bounds in a fresh journal) and
** pushes the saved state, or nothing when there is none.
** Returns 0, or a code with c->err set. [-0, +(0|1), m] */
static int resume_journal(policy *p, policy_config *c)
{
    tand_journal *j = p->journal;
    int64_t min, max;
    int fmin, fmax, found, rc;
    char *blob;
    size_t n;
    if (tand_journal_fresh(j)) {
        if ((rc = tand_journal_set_int(j, "min_number",
                                       c->o.min_number)) != 0 ||
            (rc = tand_journal_set_int(j, "max_number",
                                       c->o.max_number)) != 0)
            return fail_init(c, rc, "%scannot write the journal", "");
        return 0;
    }
    if (tand_journal_get_int(j, "min_number", &min, &fmin) != 0 ||
        tand_journal_get_int(j, "max_number", &max, &fmax) != 0 || !fmin ||
        !fmax)
        return fail_init(c, TAND_EJOURNAL, "%sthe journal has no bounds", "");
    if (min != c->o.min_number || max != c->o.max_number) {
        char text[128];
        snprintf(text, sizeof text, "%lld..%lld", (long long)min,
                 (long long)max);
        return fail_init(c, TAND_ECONFIG,
                         "the journal holds the range %s, not the one given",
                         text);
    }
    if (tand_journal_queue_load(j, restore_ticket, p->tickets) != 0)
        return fail_init(c, TAND_EJOURNAL,
                         "%sthe journal's queue does not fit its range", "");
    rc = tand_journal_get_blob(j, "policy_state", &blob, &n, &found);
    if (rc != 0)
        return fail_init(c, rc, "%scannot read the journal", "");
    if (found) {
        cb_run r = {0};
        int status;
        r.data = blob;
        r.size = n;
        lua_pushcfunction(p->L, decode_protected);
        lua_pushlightuserdata(p->L, &r);
        status = lua_pcall(p->L, 1, 1, 0);
        free(blob);
        if (status != LUA_OK || r.bad_request)
            lua_pop(p->L, 1);
        if (status != LUA_OK)
            return fail_init(c, TAND_ENOMEM,
                             "%sthe journal's policy state does not fit in "
                             "memory_limit", "");
        if (r.bad_request)
            return fail_init(c, TAND_EJOURNAL,
                             "%sthe journal's policy state is not valid", "");
    }
    return 0;
}

/* Pushes the value a saved state decodes to (bad_request when it is not
** MessagePack), in protected mode. [-0, +(0|1), e] */
static int decode_protected(lua_State *L)
{
    cb_run *r = lua_touserdata(L, 1);
    if (ltand_decode(L, r->data, r->size, 0) < 0) {
        r->bad_request = 1;
        return 0;
    }
    return 1;
}

/* Journals the state after a callback. A state that cannot be encoded
** (a function, a coroutine, a cycle) fails the batch: nothing of it is
** journaled, its callers get bad_value, and the server stops, so a
** restart resumes the last acknowledged state. During init it fails the
** start instead. Returns 0, or -1 with the reason pushed. [-0, +(0|1), m] */
static int save_state(policy *p)
{
    lua_State *L = p->L;
    tand_msg m = {0};
    int top = lua_gettop(L), rc;
    if (p->journal == NULL)
        return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref_state);
    rc = ltand_encode(L, -1, 1, 0, &m);
    if (rc == 0)
        tand_journal_set_blob(p->journal, "policy_state", m.data, m.size);
    tand_msg_clear(&m);
    if (rc != 0) {
        lua_pushfstring(L, "the policy's state cannot be journaled: %s",
                        lua_tostring(L, -1));
        lua_replace(L, top + 1);
        lua_settop(L, top + 1);
        return -1;
    }
    lua_settop(L, top);
    return 0;
}

/* ---- messages in ---- */

/* Pushes the request table for msg: {op, args...}. Returns 0, or -1 for
** a message that is not a request. [-0, +1, m] */
static int push_request(policy *p, const tand_msg *msg)
{
    lua_State *L = p->L;
    if (msg->op > 0 && msg->op <= TAND_OP_REPORT) {
        lua_createtable(L, 2, 0);
        lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref_op[msg->op]);
        lua_rawseti(L, -2, 1);
        if (msg->op == TAND_OP_SERVE_NEXT && msg->ival[1]) {
            lua_pushinteger(L, msg->ival[0]);
            lua_rawseti(L, -2, 2);
        } else if (msg->op == TAND_OP_NEXT && msg->data != NULL) {
            if (ltand_decode(L, msg->data, msg->size, 0) < 0)
                return -1;
            lua_rawseti(L, -2, 2);
        }
        return 0;
    }
    if (msg->op != TAND_OP_ENCODED || msg->data == NULL ||
        ltand_decode(L, msg->data, msg->size, 0) < 0) {
        lua_pushnil(L);
        return -1;
    }
    if (lua_type(L, -1) != LUA_TTABLE ||
        lua_rawgeti(L, -1, 1) != LUA_TSTRING) {
        lua_pop(L, 1);
        return -1;
    }
    lua_pop(L, 1);
    return 0;
}

static int token_code(const char *token)
{
    int code;
    for (code = -1; code > TAND_ERR_LAST_; code--)
        if (strcmp(tand_errname(code), token) == 0)
            return code;
    return 0;
}

/* Turns the n results at `first` into the reply. A fast-path request
** (an op code) answered with one integer, or with nil and a known token,
** gets the integer fields, so C callers read them as from the built-in
** machine; anything else travels as a MessagePack list. */
static void set_reply(lua_State *L, int first, int n, int fast,
                      tand_msg *reply)
{
    if (fast && n == 1 && lua_isinteger(L, first)) {
        reply->ival[0] = (int64_t)lua_tointeger(L, first);
        return;
    }
    if (fast && n >= 2 && lua_isnil(L, first) &&
        lua_type(L, first + 1) == LUA_TSTRING) {
        int code = token_code(lua_tostring(L, first + 1));
        if (code != 0) {
            const char *d = n >= 3 ? lua_tostring(L, first + 2) : NULL;
            reply->status = code;
            if (d != NULL)
                tand_msg_set_text(reply, d, strlen(d));
            return;
        }
    }
    if (ltand_encode(L, first, n, 1, reply) != 0) {
        const char *why = lua_tostring(L, -1);
        char text[256];
        snprintf(text, sizeof text, "the reply cannot be sent: %s",
                 why ? why : "?");
        reply->status = TAND_EBADVALUE;
        tand_msg_set_text(reply, text, strlen(text));
    }
}

/* A callback raised: the server stops with server_crashed, carrying the
** error and traceback at the top of the stack. */
static void crash(policy *p, tand_msg *reply)
{
    size_t len;
    const char *msg = lua_tolstring(p->L, -1, &len);
    char timed_out[128];
    if (msg == NULL)
        msg = "a callback failed", len = strlen(msg);
    if (atomic_load(&p->watch.expired) && strstr(msg, "callback_timeout") ==
                                              NULL) {
        /* its own message was lost (no memory left to make it) */
        snprintf(timed_out, sizeof timed_out,
                 "callback_timeout: a callback ran longer than %lld ms",
                 (long long)p->watch.callback_ms);
        msg = timed_out, len = strlen(msg);
    }
    tand_server_stop(p->self, TAND_ECRASHED, msg, 0);
    if (reply != NULL) {
        reply->status = TAND_ECRASHED;
        tand_msg_set_text(reply, msg, len);
    }
}

/* ---- running callbacks in protected mode ----
**
** Everything a callback run allocates in the policy's state (the request
** table, the `from` object, a decoded message, the saved state) happens
** inside the protected call, so running out of memory_limit there is an
** error, never a panic of the whole process. Before the callback runs it
** costs only the message: a call gets out_of_memory, a cast or an info is
** dropped, and the policy's state is untouched; once it runs it is a
** crash, as for any error in a callback. */

/* Pushes the callback's arguments, calls it and takes in its results.
** [-0, +0, e] */
static int callback_protected(lua_State *L)
{
    cb_run *r = lua_touserdata(L, 1);
    policy *p = r->p;
    int nargs = 0, n;

    if (!get_callback(p, r->which)) { /* only init may be missing */
        lua_pushnil(L);
    } else {
        switch (r->which) {
        case CB_CALL:
        case CB_CAST:
            if (push_request(p, r->msg) != 0) {
                r->bad_request = 1;
                return 0;
            }
            nargs = 1;
            if (r->which == CB_CALL) {
                r->f = lua_newuserdatauv(L, sizeof *r->f, 0);
                r->f->from = r->from;
                r->f->answered = 0;
                lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref_from_meta);
                lua_setmetatable(L, -2);
                lua_pushvalue(L, -1);
                lua_replace(L, 1); /* kept alive until the run ends */
                nargs = 2;
            }
            break;
        case CB_INIT:
        case CB_INFO:
            if (r->data == NULL || ltand_decode(L, r->data, r->size, 0) < 0)
                lua_pushnil(L);
            nargs = 1;
            break;
        default: /* CB_TERMINATE */
            lua_pushstring(L, r->reason);
            nargs = 1;
            break;
        }
        if (r->which != CB_INIT) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref_state);
            nargs++;
        }
        lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref_machine);
        nargs++;
        r->called = 1;
        lua_call(L, nargs, LUA_MULTRET);
    }
    n = lua_gettop(L) - 1; /* the results, from index 2 */
    if (r->which == CB_INIT) {
        lua_settop(L, 2);
        if (lua_isnil(L, 2))
            lua_newtable(L);
        p->ref_state = luaL_ref(L, LUA_REGISTRYINDEX);
    } else if (r->which == CB_CALL && !r->f->answered) {
        if (!(n >= 1 && lua_touserdata(L, 2) == ltand_noreply_marker())) {
            set_reply(L, 2, n, r->msg->op != TAND_OP_ENCODED, r->reply);
            r->f->answered = 1; /* the engine sends this reply */
            r->engine_replies = 1;
        } else { /* deferred: a `from` dropped unanswered answers */
            lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref_from_kept_meta);
            lua_setmetatable(L, 1);
        }
    }
    if (r->which != CB_TERMINATE && save_state(p) != 0) {
        const char *why = lua_tostring(L, -1);
        if (r->which == CB_INIT)
            return lua_error(L);
        if (r->engine_replies) {
            tand_msg_clear(r->reply);
            r->reply->status = TAND_EBADVALUE;
            tand_msg_set_text(r->reply, why, strlen(why));
        }
        tand_server_stop(p->self, TAND_EBADVALUE, why, 0);
    }
    return 0;
}

/* Runs callback r->which under its deadline and the traceback handler.
** LUA_OK, or an error status with the message at the top of the stack. */
static int run_callback(cb_run *r)
{
    lua_State *L = r->p->L;
    lua_pushcfunction(L, ltand_traceback);
    lua_pushcfunction(L, callback_protected);
    lua_pushlightuserdata(L, r);
    return invoke(r->p, 1, 0);
}

/* The built-in answer to a request by name. [-0, +0, e] */
static int default_call_protected(lua_State *L)
{
    cb_run *r = lua_touserdata(L, 1);
    lua_pushcfunction(L, pm_default);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->p->ref_machine);
    if (push_request(r->p, r->msg) != 0) {
        r->bad_request = 1;
        return 0;
    }
    lua_call(L, 2, LUA_MULTRET);
    set_reply(L, 2, lua_gettop(L) - 1, r->msg->op != TAND_OP_ENCODED,
              r->reply);
    return 0;
}

static void too_big(tand_msg *reply)
{
    static const char text[] = "the request does not fit in the policy's "
                               "memory_limit";
    reply->status = TAND_ENOMEM;
    tand_msg_set_text(reply, text, sizeof text - 1);
}

static void bad_request(tand_msg *reply)
{
    static const char text[] = "a request is {op, args...}";
    reply->status = TAND_EBADREQ;
    tand_msg_set_text(reply, text, sizeof text - 1);
}

/* The call's built-in answer when the policy has no handle_call. */
static void default_call(policy *p, tand_msg *req, tand_msg *reply)
{
    lua_State *L = p->L;
    int top = lua_gettop(L);
    cb_run r = {0};
    int64_t v;
    switch (req->op) {
    case TAND_OP_QUEUE_NEW_NUMBER:
        reply->status = t_queue(p, &reply->ival[0]);
        return;
    case TAND_OP_SERVE_NEXT:
        v = req->ival[0];
        reply->status = t_serve(p, req->ival[1] ? &v : NULL,
                                &reply->ival[0]);
        return;
    default:
        break;
    }
    r.p = p;
    r.msg = req;
    r.reply = reply;
    lua_pushcfunction(L, default_call_protected);
    lua_pushlightuserdata(L, &r);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        tand_msg_clear(reply);
        too_big(reply); /* the only error it can meet */
    } else if (r.bad_request) {
        bad_request(reply);
    }
    lua_settop(L, top);
}

/* Tells whether msg's op is one P.passthrough lists: an op code, or an
** encoded request {op, args...} whose op names one. */
static int passes_through(const policy *p, const tand_msg *msg)
{
    tand_reader rd;
    tand_item it;
    if (p->passthrough == 0)
        return 0;
    if (msg->op != TAND_OP_ENCODED)
        return msg->op > 0 && msg->op <= TAND_OP_RESET_STATE &&
               (p->passthrough & (1u << msg->op)) != 0;
    tand_reader_init(&rd, msg->data, msg->size);
    if (tand_unpack(&rd, &it) != 0 || it.type != TAND_T_ARRAY ||
        it.v.n == 0 || tand_unpack(&rd, &it) != 0 || it.type != TAND_T_STR)
        return 0;
    /* (an unknown name is op 0, whose bit is never set) */
    return (p->passthrough & (1u << passthrough_op(it.v.s.p, it.v.s.len))) !=
           0;
}

static int policy_call(void *state, tand_server *self, tand_msg *req,
                       tand_from *from, tand_msg *reply)
{
    policy *p = state;
    lua_State *L = p->L;
    int base = lua_gettop(L), rc, replied;
    cb_run r = {0};
    (void)self;

    if (p->ref_callback[CB_CALL] == LUA_NOREF || passes_through(p, req)) {
        default_call(p, req, reply);
        return 0;
    }
    r.p = p;
    r.which = CB_CALL;
    r.msg = req;
    r.from = from;
    r.reply = reply;
    rc = run_callback(&r);
    /* Read before anything can allocate: past the run, nothing keeps the
    ** `from` object from the collector. */
    replied = r.f != NULL && r.f->answered && !r.engine_replies;
    if (rc != LUA_OK && r.f != NULL)
        r.f->answered = 1; /* by the crash (or already by the policy) */
    if (rc != LUA_OK && !r.called) {
        /* The request did not fit in memory_limit: the policy never saw
        ** it, so its state is intact and the server goes on. */
        lua_settop(L, base);
        too_big(reply);
        return 0;
    }
    if (rc != LUA_OK) {
        if (replied) { /* it answered with machine:reply, then crashed */
            crash(p, NULL);
            rc = TAND_NOREPLY;
        } else {
            tand_msg_clear(reply);
            crash(p, reply);
            rc = 0;
        }
        lua_settop(L, base);
        return rc;
    }
    lua_settop(L, base);
    if (r.bad_request) {
        bad_request(reply);
        return 0;
    }
    return r.engine_replies ? 0 : TAND_NOREPLY;
}

/* Tells whether an encoded cast is reset_state. [-0, +0, e] */
static int default_cast_protected(lua_State *L)
{
    cb_run *r = lua_touserdata(L, 1);
    if (push_request(r->p, r->msg) == 0) {
        lua_rawgeti(L, -1, 1);
        r->reset = strcmp(lua_tostring(L, -1), "reset_state") == 0;
    }
    return 0;
}

/* The built-in answer to a cast: reset_state; anything else (or what
** cannot be decoded within memory_limit) is ignored. */
static void default_cast(policy *p, tand_msg *msg)
{
    lua_State *L = p->L;
    int top = lua_gettop(L);
    cb_run r = {0};
    if (msg->op == TAND_OP_RESET_STATE) {
        t_reset(p);
    } else if (msg->op == TAND_OP_ENCODED) {
        r.p = p;
        r.msg = msg;
        lua_pushcfunction(L, default_cast_protected);
        lua_pushlightuserdata(L, &r);
        if (lua_pcall(L, 1, 0, 0) == LUA_OK && r.reset)
            t_reset(p);
    }
    lua_settop(L, top);
}

static void policy_cast(void *state, tand_server *self, tand_msg *msg)
{
    policy *p = state;
    lua_State *L = p->L;
    int base = lua_gettop(L);
    cb_run r = {0};
    (void)self;
    if (p->ref_callback[CB_CAST] == LUA_NOREF || passes_through(p, msg)) {
        default_cast(p, msg);
        return;
    }
    r.p = p;
    r.which = CB_CAST;
    r.msg = msg;
    if (run_callback(&r) != LUA_OK && r.called)
        crash(p, NULL); /* (a cast too big for memory_limit is dropped) */
    lua_settop(L, base);
    if (r.bad_request)
        default_cast(p, msg);
}

static void policy_info(void *state, tand_server *self, tand_msg *msg)
{
    policy *p = state;
    lua_State *L = p->L;
    int base = lua_gettop(L);
    cb_run r = {0};
    (void)self;
    if (p->ref_callback[CB_INFO] == LUA_NOREF)
        return; /* ignored, like the built-in machine */
    r.p = p;
    r.which = CB_INFO;
    r.data = msg->data;
    r.size = msg->size;
    if (run_callback(&r) != LUA_OK && r.called)
        crash(p, NULL); /* (a message too big for memory_limit is dropped) */
    lua_settop(L, base);
}

static void policy_terminate(void *state, tand_server *self, int reason,
                             const char *detail)
{
    policy *p = state;
    cb_run r = {0};
    (void)self;
    if (p == NULL)
        return;
    lua_settop(p->L, 0);
    /* A callback past its deadline ends the state: no terminate runs. */
    if (p->ref_policy != LUA_NOREF && !atomic_load(&p->watch.expired) &&
        p->ref_callback[CB_TERMINATE] != LUA_NOREF) {
        r.p = p;
        r.which = CB_TERMINATE;
        r.reason = detail != NULL ? detail
                   : reason == 0  ? "normal"
                                  : tand_errname(reason);
        run_callback(&r); /* an error here changes nothing any more */
    }
    policy_free(p);
}

static const tand_behaviour policy_behaviour = {
    "policy",    policy_init, policy_call, policy_cast, policy_info, NULL,
    policy_terminate};

/* ---- tand.start{ policy = P } ---- */

/* Fills c from the policy value at pidx; 0 or -1 with c->err set. */
static int read_policy(lua_State *L, int pidx, policy_config *c)
{
    size_t len;
    const char *s;
    if (lua_type(L, pidx) == LUA_TFUNCTION) {
        if (ltand_dump_function(L, pidx, &c->code, &c->code_size) != 0) {
            fail_init(c, TAND_ECONFIG, "policy: %s", lua_tostring(L, -1));
            lua_pop(L, 1);
            return -1;
        }
        return 0;
    }
    if (lua_type(L, pidx) != LUA_TSTRING) {
        fail_init(c, TAND_ECONFIG,
                  "policy must be a module name, a path to a .lua file "
                  "or a function (got %s)",
                  luaL_typename(L, pidx));
        return -1;
    }
    s = lua_tolstring(L, pidx, &len);
    if (strchr(s, '/') != NULL || (len > 4 && strcmp(s + len - 4, ".lua") == 0)) {
        c->file = strdup(s);
        return c->file ? 0 : -1;
    }
    /* a module name: its file on the caller's package.path */
    lua_getglobal(L, "package");
    if (lua_type(L, -1) == LUA_TTABLE &&
        lua_getfield(L, -1, "searchpath") == LUA_TFUNCTION) {
        lua_pushvalue(L, pidx);
        lua_getfield(L, -3, "path");
        lua_call(L, 2, 2);
        if (lua_type(L, -2) == LUA_TSTRING)
            c->file = strdup(lua_tostring(L, -2));
        else
            fail_init(c, TAND_ECONFIG, "policy module not found:%s",
                      lua_tostring(L, -1));
        lua_pop(L, 3);
        return c->file ? 0 : -1;
    }
    lua_pop(L, lua_type(L, -1) == LUA_TTABLE ? 2 : 1);
    fail_init(c, TAND_ECONFIG, "%spolicy modules need package.searchpath",
              "");
    return -1;
}

void ltand_policy_free(ltand_policy *c)
{
    if (c != NULL) {
        config_free(c);
        free(c);
    }
}

int ltand_policy_prepare(lua_State *L, int pidx, int oidx,
                         const ltand_policy_options *o, ltand_policy **out)
{
    policy_config *c;
    int rc, top = lua_gettop(L);

    *out = NULL;
    pidx = lua_absindex(L, pidx);
    oidx = lua_absindex(L, oidx);
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        lua_pushstring(L, "not enough memory");
        return TAND_ENOMEM;
    }
    c->o = *o;
    c->o.name = NULL; /* given at each launch */
    c->o.journal = NULL;
    if (o->journal != NULL && (c->o.journal = strdup(o->journal)) == NULL) {
        free(c);
        lua_pushstring(L, "not enough memory");
        return TAND_ENOMEM;
    }
    if (read_policy(L, pidx, c) != 0) {
        rc = c->status ? c->status : TAND_ENOMEM;
        goto fail;
    }
    /* init's opts: the options table without the policy itself */
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, oidx) != 0) {
        if (lua_type(L, -2) == LUA_TSTRING &&
            strcmp(lua_tostring(L, -2), "policy") == 0) {
            lua_pop(L, 1);
            continue;
        }
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
    if (ltand_encode(L, -1, 1, 0, &c->opts) != 0) {
        rc = fail_init(c, TAND_ECONFIG, "the options cannot be sent: %s",
                       lua_tostring(L, -1));
        goto fail;
    }
    c->path = ltand_package_path(L, "path");
    c->cpath = ltand_package_path(L, "cpath");
    lua_settop(L, top);
    *out = c;
    return 0;
fail:
    lua_settop(L, top);
    lua_pushstring(L, c->err[0] ? c->err : tand_strerror(rc));
    ltand_policy_free(c);
    return rc;
}

int ltand_policy_launch(tand_runtime *rt, ltand_policy *c, const char *name,
                        tand_server **out, char *detail, size_t size)
{
    tand_server_options so;
    int rc;

    *out = NULL;
    c->status = 0;
    c->err[0] = '\0';
    memset(&so, 0, sizeof so);
    so.behaviour = &policy_behaviour;
    so.arg = c;
    so.name = name;
    c->launch_name = name;
    so.mailbox_capacity = c->o.mailbox;
    so.journal = c->o.journal;
    so.durability = c->o.durability;
    so.error = c->err;
    so.error_size = sizeof c->err;
    /* A callback ends by its callback_timeout (ldeadline.c), so a caller
    ** whose deadline leaves that much may run it on its own thread. */
    so.bound_us = c->o.callback_ms >= 0 ? c->o.callback_ms * 1000 : 0;
    rc = tand_server_start(rt, &so, out);
    c->launch_name = NULL;
    if (rc != 0) {
        if (rc == TAND_ENAMETAKEN)
            snprintf(detail, size, "the name '%s' is already registered",
                     name ? name : "");
        else
            snprintf(detail, size, "%s",
                     c->err[0] ? c->err : tand_strerror(rc));
        return rc;
    }
    if (c->o.auto_shutdown_ms >= 0)
        tand_server_set_idle(*out, c->o.auto_shutdown_ms, TAND_IDLE_STOP);
    return 0;
}
