/*
** lpolicy.c - policy servers: a deluxe machine whose callbacks are Lua.
** This file starts one: it reads tand.start's policy, makes the server's
** private state, loads the policy into it and runs init (lpolicy.h says
** which file does the rest).
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
#include "lpolicy.h"

#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Thread_local int64_t ltand_callback_deadline_ns;

static const char *const fast_ops[] = {
    NULL, "queue_new_number", "serve_next_queued_number", "report_state",
    "reset_state", "next", "report"};

/* The callbacks, in the order of policy_code.ref_callback. */
static const char *const callbacks[] = {"init", "handle_call",
                                        "handle_cast", "handle_info",
                                        "terminate", "code_change", NULL};

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

static void config_free(policy_config *c)
{
    free((char *)c->o.journal);
    lpolicy_source_free(&c->source);
    tand_msg_clear(&c->opts);
    free(c->path);
    free(c->cpath);
}

int lpolicy_fail(policy_config *c, int status, const char *fmt,
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
    lua_settop(L, 0);
    ltand_setup_state(L, c->path, c->cpath);
    p->scratch = ltand_scratch_of(L);
    ltand_watch_install(L, &p->watch);
    ltand_open_patterns(L); /* matches that end with their callback */
    if (c->o.sandbox)
        lpolicy_open_sandbox(L);
    lpolicy_open_machine(L, p);
    for (int i = 1; i <= TAND_OP_REPORT; i++) {
        lua_pushstring(L, fast_ops[i]);
        p->ref_op[i] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    protect_metatables(L);
    return 0;
}

void lpolicy_free(policy *p)
{
    p->closing = 1;
    if (p->L != NULL)
        ltand_watch_close(p->L);
    ltand_pool_drain(&p->pool);
    tand_tickets_free(p->tickets);
    lpolicy_source_free(&p->source);
    free(p->name);
    free(p);
}

void lpolicy_source_free(policy_source *src)
{
    free(src->file);
    free(src->code);
    memset(src, 0, sizeof *src);
}

int lpolicy_source_copy(policy_source *dst, const policy_source *src)
{
    memset(dst, 0, sizeof *dst);
    if (src->file != NULL && (dst->file = strdup(src->file)) == NULL)
        return TAND_ENOMEM;
    if (src->code != NULL) {
        if ((dst->code = malloc(src->code_size ? src->code_size : 1)) == NULL)
            return TAND_ENOMEM;
        memcpy(dst->code, src->code, src->code_size);
        dst->code_size = src->code_size;
    }
    return 0;
}


int lpolicy_builtin_op(const char *name, size_t len)
{
    for (int op = 1; op <= TAND_OP_RESET_STATE; op++)
        if (strlen(fast_ops[op]) == len && memcmp(fast_ops[op], name, len) == 0)
            return op;
    return 0;
}

/* Reads P.passthrough (the policy's table at idx): the built-in ops that
** go to the machine without entering Lua. [-0, +0, e] */
static void read_passthrough(lua_State *L, policy_code *code, int idx)
{
    int t = lua_getfield(L, idx, "passthrough");
    lua_Integer i, n;
    if (t == LUA_TNIL)
        return;
    if (t != LUA_TTABLE)
        luaL_error(L, "the policy's passthrough must be a list of op names "
                      "(it is a %s)",
                   luaL_typename(L, -1));
    /* a list, read as Lua reads one (through __len and __index), and
    ** nothing else in it: {queue_new_number = true} is refused */
    n = luaL_len(L, -1);
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        lua_Integer k;
        int isint;
        lua_pop(L, 1);
        k = lua_tointegerx(L, -1, &isint);
        if (!isint || lua_type(L, -1) != LUA_TNUMBER || k < 1 || k > n)
            luaL_error(L, "the policy's passthrough must be a list of op "
                          "names (it has the key %s)",
                       luaL_tolstring(L, -1, NULL));
    }
    for (i = 1; i <= n; i++) {
        size_t len;
        const char *name;
        int op;
        if (lua_geti(L, -1, i) != LUA_TSTRING)
            luaL_error(L, "the policy's passthrough[%I] is not an op name "
                          "(it is a %s)",
                       i, luaL_typename(L, -1));
        name = lua_tolstring(L, -1, &len);
        if ((op = lpolicy_builtin_op(name, len)) == 0)
            luaL_error(L, "the policy's passthrough names '%s', which is "
                          "not an op of the machine (queue_new_number, "
                          "serve_next_queued_number, report_state, "
                          "reset_state)",
                       name);
        code->passthrough |= 1u << op;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

void lpolicy_drop_code(policy *p, policy_code *code)
{
    luaL_unref(p->L, LUA_REGISTRYINDEX, code->ref_policy);
    code->ref_policy = LUA_NOREF;
    for (int i = 0; i < CB_COUNT; i++) {
        luaL_unref(p->L, LUA_REGISTRYINDEX, code->ref_callback[i]);
        code->ref_callback[i] = LUA_NOREF;
    }
    code->passthrough = 0;
}

void lpolicy_load_code(policy *p, const policy_source *src,
                       policy_code *code, int *stage)
{
    lua_State *L = p->L;
    int t;
    code->ref_policy = LUA_NOREF;
    for (int i = 0; i < CB_COUNT; i++)
        code->ref_callback[i] = LUA_NOREF;
    code->passthrough = 0;
    *stage = LOAD_COMPILE;
    if ((src->file ? luaL_loadfilex(L, src->file, "t")
                   : luaL_loadbufferx(L, src->code, src->code_size, "=policy",
                                      "b")) != LUA_OK)
        lua_error(L);
    if (src->code != NULL)
        ltand_bind_upvalues(L, -1);
    *stage = LOAD_RUN;
    lua_call(L, 0, 1);
    if (lua_type(L, -1) == LUA_TFUNCTION) /* return function() ... end */
        lua_call(L, 0, 1);
    *stage = LOAD_READ;
    if (lua_type(L, -1) != LUA_TTABLE)
        luaL_error(L, "the policy must give a table of callbacks (it gave "
                      "a %s)",
                   luaL_typename(L, -1));
    t = lua_gettop(L);
    /* the callbacks, looked up once: the table's metamethods are the
    ** policy's code, and its later changes are not seen */
    for (int i = 0; callbacks[i]; i++) {
        int type = lua_getfield(L, t, callbacks[i]);
        if (type != LUA_TNIL && type != LUA_TFUNCTION)
            luaL_error(L, "the policy's %s is not a function", callbacks[i]);
        if (type == LUA_TNIL)
            lua_pop(L, 1);
        else
            code->ref_callback[i] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    read_passthrough(L, code, t);
    code->ref_policy = luaL_ref(L, LUA_REGISTRYINDEX);
    *stage = LOAD_DONE;
}

/* The message handler of lpolicy_push_load_msgh: a traceback for an
** error of the policy's own code running, the message alone for one in
** reading what it gave. */
static int load_msgh(lua_State *L)
{
    int stage = *policy_of(L)->load_stage;
    if (stage == LOAD_RUN || stage == LOAD_CHANGE)
        return ltand_traceback(L);
    if (lua_type(L, 1) != LUA_TSTRING)
        lua_pushfstring(L, "reading the policy's table raised a %s value",
                        luaL_typename(L, 1));
    return 1;
}

void lpolicy_push_load_msgh(lua_State *L, int *stage)
{
    policy_of(L)->load_stage = stage;
    lua_pushcfunction(L, load_msgh);
}

const char *lpolicy_load_failure(int stage)
{
    switch (stage) {
    case LOAD_COMPILE: return "cannot load the policy: ";
    case LOAD_RUN: return "the policy failed to load: ";
    case LOAD_CHANGE: return "code_change failed: ";
    default: return "";
    }
}

static int load_protected(lua_State *L)
{
    policy *p = lua_touserdata(L, 1);
    policy_config *c = lua_touserdata(L, 2);
    lpolicy_load_code(p, &c->source, &p->code, lua_touserdata(L, 3));
    return 0;
}

/* Loads the policy into p->L: its code in p->code, its source kept for a
** reload of the same. */
static int load_policy(policy *p, policy_config *c)
{
    lua_State *L = p->L;
    int stage = LOAD_COMPILE, rc;
    lpolicy_push_load_msgh(L, &stage);
    lua_pushcfunction(L, load_protected);
    lua_pushlightuserdata(L, p);
    lua_pushlightuserdata(L, c);
    lua_pushlightuserdata(L, &stage);
    rc = ltand_watch_pcall(L, 3, 0, lua_gettop(L) - 4);
    if (rc != LUA_OK) {
        lpolicy_drop_code(p, &p->code);
        if (rc == LUA_ERRMEM)
            return lpolicy_fail(c, TAND_ENOMEM, "%snot enough memory to load "
                                "the policy (see memory_limit)", "");
        rc = lpolicy_fail(c, TAND_ECONFIG, "%s", lpolicy_load_failure(stage));
        {
            size_t used = strlen(c->err);
            snprintf(c->err + used, sizeof c->err - used, "%s",
                     lua_tostring(L, -1));
        }
        return rc;
    }
    lua_settop(L, 0);
    if (lpolicy_source_copy(&p->source, &c->source) != 0)
        return lpolicy_fail(c, TAND_ENOMEM, "%snot enough memory", "");
    return 0;
}

static int policy_init(tand_server *self, void *arg, void **state)
{
    policy_config *c = arg;
    policy *p = calloc(1, sizeof *p);
    cb_run r = {0};
    lua_State *L;
    int rc;

    if (p == NULL)
        return lpolicy_fail(c, TAND_ENOMEM, "%snot enough memory", "");
    p->self = self;
    if (c->launch_name != NULL && (p->name = strdup(c->launch_name)) == NULL) {
        free(p);
        return lpolicy_fail(c, TAND_ENOMEM, "%snot enough memory", "");
    }
    p->auto_shutdown_ms = c->o.auto_shutdown_ms;
    ltand_watch_init(&p->watch, self, c->o.callback_ms);
    p->mem_limit = c->o.memory_limit;
    ltand_pool_init(&p->pool);
    p->code.ref_policy = p->ref_state = p->ref_machine = LUA_NOREF;
    for (int i = 0; i < CB_COUNT; i++)
        p->code.ref_callback[i] = LUA_NOREF;
    rc = tand_tickets_new(c->o.min_number, c->o.max_number, &p->tickets);
    if (rc != 0) {
        free(p->name);
        free(p);
        return lpolicy_fail(c, rc, "%smin_number must be below max_number",
                         "");
    }
    p->L = L = lua_newstate(policy_alloc, p);
    if (L == NULL) {
        lpolicy_free(p);
        return lpolicy_fail(c, TAND_ENOMEM,
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
        rc = lpolicy_fail(c, TAND_ENOMEM, "cannot set up the policy state: %s",
                       lua_tostring(L, -1));
        lpolicy_free(p);
        return rc;
    }
    if (c->o.callback_ms >= 0 && ltand_watch_start() != 0) {
        lpolicy_free(p);
        return lpolicy_fail(c, TAND_ESYSTEM, "%scannot start the watchdog",
                         "");
    }
    if ((rc = load_policy(p, c)) != 0) {
        lpolicy_free(p);
        return rc;
    }
    p->journal = tand_server_journal(self);
    if (p->journal != NULL) {
        int top = lua_gettop(L);
        if ((rc = lpolicy_resume_journal(p, c)) != 0) {
            lpolicy_free(p);
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
    if (lpolicy_run_callback(&r) != LUA_OK) {
        rc = lpolicy_fail(c, TAND_ECRASHED, "init failed: %s",
                       lua_tostring(L, -1));
        lpolicy_free(p);
        return rc;
    }
    lua_settop(L, 0);
    ltand_pool_drain(&p->pool); /* an idle server keeps nothing */
    atomic_store(&p->watch.killable, 1);
    *state = p;
    return 0;
}

static const tand_behaviour policy_behaviour = {
    .name = "policy",
    .init = policy_init,
    .handle_call = lpolicy_call,
    .handle_cast = lpolicy_cast,
    .handle_info = lpolicy_info,
    .terminate = lpolicy_terminate,
    .handle_reply = lpolicy_reply};

int ltand_is_policy(const tand_server *s)
{
    return tand_server_behaviour(s) == &policy_behaviour;
}

/* ---- tand.start{ policy = P } ---- */

/* Fills c from the policy value at pidx; 0 or -1 with c->err set. */
static int read_policy(lua_State *L, int pidx, policy_config *c)
{
    size_t len;
    const char *s;
    if (lua_type(L, pidx) == LUA_TFUNCTION) {
        if (ltand_dump_function(L, pidx, &c->source.code,
                                &c->source.code_size) != 0) {
            lpolicy_fail(c, TAND_ECONFIG, "policy: %s", lua_tostring(L, -1));
            lua_pop(L, 1);
            return -1;
        }
        return 0;
    }
    if (lua_type(L, pidx) != LUA_TSTRING) {
        lpolicy_fail(c, TAND_ECONFIG,
                  "policy must be a module name, a path to a .lua file "
                  "or a function (got %s)",
                  luaL_typename(L, pidx));
        return -1;
    }
    s = lua_tolstring(L, pidx, &len);
    if (strchr(s, '/') != NULL || (len > 4 && strcmp(s + len - 4, ".lua") == 0)) {
        c->source.file = strdup(s);
        return c->source.file ? 0 : -1;
    }
    /* a module name: its file on the caller's package.path */
    lua_getglobal(L, "package");
    if (lua_type(L, -1) == LUA_TTABLE &&
        lua_getfield(L, -1, "searchpath") == LUA_TFUNCTION) {
        lua_pushvalue(L, pidx);
        lua_getfield(L, -3, "path");
        lua_call(L, 2, 2);
        if (lua_type(L, -2) == LUA_TSTRING)
            c->source.file = strdup(lua_tostring(L, -2));
        else
            lpolicy_fail(c, TAND_ECONFIG, "policy module not found: %s",
                      lua_tostring(L, -1));
        lua_pop(L, 3);
        return c->source.file ? 0 : -1;
    }
    lua_pop(L, lua_type(L, -1) == LUA_TTABLE ? 2 : 1);
    lpolicy_fail(c, TAND_ECONFIG, "%spolicy modules need package.searchpath",
              "");
    return -1;
}

int ltand_policy_reload_request(lua_State *L, int idx, tand_msg *req)
{
    policy_config c;
    const policy_source *src = &c.source;
    const char *bytes;
    size_t n;
    memset(req, 0, sizeof *req);
    req->op = TAND_OP_RELOAD;
    if (lua_isnoneornil(L, idx))
        return 0; /* the same source again: no data */
    if (lua_type(L, idx) != LUA_TSTRING && lua_type(L, idx) != LUA_TFUNCTION)
        return luaL_argerror(L, idx, "a module name, a path to a .lua file "
                                     "or a function expected");
    memset(&c, 0, sizeof c);
    if (read_policy(L, idx, &c) != 0) {
        lua_pushstring(L, c.err[0] ? c.err : "not enough memory");
        lpolicy_source_free(&c.source);
        return c.status ? TAND_ERELOAD : TAND_ENOMEM;
    }
    bytes = src->file ? src->file : src->code;
    n = src->file ? strlen(src->file) : src->code_size;
    if ((req->data = malloc(n + 1)) == NULL) {
        lpolicy_source_free(&c.source);
        lua_pushliteral(L, "not enough memory");
        return TAND_ENOMEM;
    }
    req->data[0] = src->file ? 'f' : 'c';
    memcpy(req->data + 1, bytes, n);
    req->size = n + 1;
    lpolicy_source_free(&c.source);
    return 0;
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
    if (ltand_encode_once(L, ltand_scratch_of(L), -1, 1, 0, &c->opts) != 0) {
        rc = lpolicy_fail(c, TAND_ECONFIG, "the options cannot be sent: %s",
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

