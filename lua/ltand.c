/*
** ltand.c - the Lua module `tand`: starting machines and their handles.
**
** Conventions (LuaSocket, luv): programming errors (wrong argument types,
** a closed handle, values that cannot be sent) raise; outcomes a caller
** should expect return nil, token, detail, the token being tand_errname().
** A handle is created closed and only then given its server reference, so
** an allocation error never leaks one; __gc only drops the reference and
** never blocks; __close and :stop() stop the server.
*/
#define _GNU_SOURCE /* dladdr */
#include "ltand.h"

#include <dlfcn.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static tand_runtime *runtime(lua_State *L)
{
    tand_runtime *rt = tand_runtime_default();
    if (rt == NULL)
        luaL_error(L, "tand: cannot create the runtime (out of memory or "
                      "threads)");
    return rt;
}

int ltand_fail(lua_State *L, int status, const char *detail)
{
    lua_pushnil(L);
    lua_pushstring(L, tand_errname(status));
    lua_pushstring(L, detail ? detail : tand_strerror(status));
    return 3;
}

/* nil, token, detail from a failed call's reply. */
static int fail_reply(lua_State *L, int status, const tand_msg *reply)
{
    return ltand_fail(L, status, reply->data);
}

void ltand_push_machine(lua_State *L, tand_server *s, uint64_t id)
{
    lmachine *m = lua_newuserdatauv(L, sizeof *m, 0);
    m->s = NULL;
    m->id = id;
    m->timeout_ms = LTAND_DEFAULT_TIMEOUT_MS;
    m->closed = 0;
    m->name = NULL;
    m->server_name = NULL;
    luaL_setmetatable(L, LTAND_MACHINE);
    if (s != NULL) {
        tand_server_retain(s);
        m->s = s;
    }
}

/* A handle from tand.whereis follows its name: when its server has
** ended, the name is looked up again, reaching the current incarnation
** (a supervisor's restart). */
static void follow_name(lmachine *m)
{
    tand_server *s;
    if (m->name == NULL || (m->s != NULL && tand_server_alive(m->s)))
        return;
    if (tand_whereis(tand_runtime_default(), m->name, &s) != 0)
        return;
    tand_server_release(m->s);
    m->s = s;
    m->id = tand_server_id(s);
}

/* The machine methods hold the machine metatable as their upvalue, so
** the check needs no lookup by name; anything else (or a call through
** a function without it) takes luaL_checkudata and its error. */
static lmachine *check_machine(lua_State *L, int idx)
{
    lmachine *m = lua_touserdata(L, idx);
    int same = 0;
    if (m != NULL && lua_getmetatable(L, idx)) {
        same = lua_rawequal(L, -1, lua_upvalueindex(1));
        lua_pop(L, 1);
    }
    if (!same)
        m = luaL_checkudata(L, idx, LTAND_MACHINE);
    if (m->closed)
        luaL_error(L, "attempt to use a closed machine");
    follow_name(m);
    return m;
}

/* The handle's timeout, capped inside a policy callback by what is left
** of the callback's own time. */
static int64_t timeout_of(const lmachine *m)
{
    int64_t t = m->timeout_ms, left;
    if (ltand_callback_deadline_ns == 0)
        return t;
    {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        left = (ltand_callback_deadline_ns -
                ((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec)) /
               1000000;
    }
    if (left < 0)
        left = 0;
    return (t < 0 || left < t) ? left : t;
}

/* Sends req to the handle's server and waits; the reply lands in this
** state's reply box. */
static int call(lua_State *L, lmachine *m, tand_msg *req, tand_msg **reply)
{
    *reply = ltand_reply_box(L);
    if (m->s == NULL) { /* a handle to a server that had already ended */
        tand_msg_clear(req);
        return TAND_ENOPROC;
    }
    return tand_call(m->s, req, *reply, timeout_of(m), 0);
}

/* nil, "bad_value", why: a reply that does not decode here (more than
** LTAND_MAX_VALUES values, or not a tand value) is the server's fault,
** not the caller's, so it is an outcome, never an error raised.
** [-1, +3, m] */
static int bad_reply(lua_State *L)
{
    lua_pushfstring(L, "the reply cannot be received: %s",
                    lua_tostring(L, -1));
    return ltand_fail(L, TAND_EBADVALUE, lua_tostring(L, -1));
}

/* Pushes a reply's results: a list in data (a policy's answer, or a
** report), else the integer of the fast path. */
static int push_results(lua_State *L, const tand_msg *reply)
{
    int n;
    if (reply->data == NULL) {
        lua_pushinteger(L, (lua_Integer)reply->ival[0]);
        return 1;
    }
    n = ltand_decode(L, reply->data, reply->size, 1);
    if (n < 0)
        return bad_reply(L);
    return n;
}

static int int_call(lua_State *L, lmachine *m, tand_msg *req)
{
    tand_msg *reply;
    int rc = call(L, m, req, &reply);
    if (rc != 0)
        return fail_reply(L, rc, reply);
    return push_results(L, reply);
}

static int m_queue_new_number(lua_State *L)
{
    lmachine *m = check_machine(L, 1);
    tand_msg req = {0};
    req.op = TAND_OP_QUEUE_NEW_NUMBER;
    return int_call(L, m, &req);
}

static int m_serve_next_queued_number(lua_State *L)
{
    lmachine *m = check_machine(L, 1);
    tand_msg req = {0};
    req.op = TAND_OP_SERVE_NEXT;
    if (!lua_isnoneornil(L, 2)) {
        req.ival[0] = (int64_t)luaL_checkinteger(L, 2);
        req.ival[1] = 1;
    }
    return int_call(L, m, &req);
}

static int m_report_state(lua_State *L)
{
    lmachine *m = check_machine(L, 1);
    tand_msg req = {0}, *reply;
    int rc;
    req.op = TAND_OP_REPORT_STATE;
    rc = call(L, m, &req, &reply);
    if (rc != 0)
        return fail_reply(L, rc, reply);
    return push_results(L, reply);
}

static int cast_result(lua_State *L, int rc)
{
    if (rc != 0)
        return ltand_fail(L, rc, NULL);
    lua_pushboolean(L, 1);
    return 1;
}

/* Casts and infos never wait: a full mailbox is busy at once. */
static int send_msg(lua_State *L, lmachine *m, tand_msg *msg, int info)
{
    if (m->s == NULL) {
        tand_msg_clear(msg);
        return cast_result(L, TAND_ENOPROC);
    }
    return cast_result(L, info ? tand_send(m->s, msg, 0, TAND_NOWAIT)
                               : tand_cast(m->s, msg, 0, TAND_NOWAIT));
}

static int m_reset_state(lua_State *L)
{
    lmachine *m = check_machine(L, 1);
    tand_msg msg = {0};
    msg.op = TAND_OP_RESET_STATE;
    return send_msg(L, m, &msg, 0);
}

/* Encodes values first..top into msg, raising on what cannot be sent. */
static void encode_args(lua_State *L, int first, int as_array, tand_msg *msg)
{
    int n = lua_gettop(L) - first + 1;
    if (n < 0)
        n = 0;
    if (ltand_encode(L, first, n, as_array, msg) != 0)
        lua_error(L);
}

static int m_next(lua_State *L)
{
    lmachine *m = check_machine(L, 1);
    tand_msg req = {0};
    req.op = TAND_OP_NEXT;
    lua_settop(L, 2);
    if (!lua_isnil(L, 2))
        encode_args(L, 2, 0, &req);
    return int_call(L, m, &req);
}

static int m_report(lua_State *L)
{
    lmachine *m = check_machine(L, 1);
    tand_msg req = {0}, *reply;
    int rc;
    req.op = TAND_OP_REPORT;
    rc = call(L, m, &req, &reply);
    if (rc != 0)
        return fail_reply(L, rc, reply);
    lua_pushinteger(L, (lua_Integer)reply->ival[0]);
    if (reply->data == NULL)
        lua_pushnil(L);
    else if (ltand_decode(L, reply->data, reply->size, 0) < 0)
        return bad_reply(L);
    return 2;
}

static int m_call(lua_State *L)
{
    lmachine *m = check_machine(L, 1);
    tand_msg req = {0}, *reply;
    int rc;
    luaL_checktype(L, 2, LUA_TSTRING);
    encode_args(L, 2, 1, &req);
    rc = call(L, m, &req, &reply);
    if (rc != 0)
        return fail_reply(L, rc, reply);
    return push_results(L, reply);
}

static int m_cast(lua_State *L)
{
    lmachine *m = check_machine(L, 1);
    tand_msg msg = {0};
    luaL_checktype(L, 2, LUA_TSTRING);
    encode_args(L, 2, 1, &msg);
    return send_msg(L, m, &msg, 0);
}

static int m_send(lua_State *L)
{
    lmachine *m = check_machine(L, 1);
    tand_msg msg = {0};
    int n = lua_gettop(L) - 1;
    encode_args(L, 2, n != 1, &msg);
    return send_msg(L, m, &msg, 1);
}

static int m_alive(lua_State *L)
{
    lmachine *m = check_machine(L, 1);
    lua_pushboolean(L, m->s != NULL && tand_server_alive(m->s));
    return 1;
}

/* 1 once s has ended: it has left the runtime's id table, which it does
** with its name, before its stoppers are told (so the name is free). */
static int has_ended(tand_server *s)
{
    tand_server *found;
    if (tand_server_lookup(tand_server_runtime(s), tand_server_id(s),
                           &found) != 0)
        return 1;
    tand_server_release(found);
    return 0;
}

/* m:stop([reason]): true only once the server has ended, within the
** handle's timeout (0: only if it has ended already), else nil,
** "timeout"; nil, "noproc" when it had been stopped before. From the
** server's own callbacks it cannot wait for its end: true means the stop
** is on its way. The reason travels as the stop's detail; the engine has
** no code for an abnormal stop with a reason of its own yet, so every
** reason stops the server normally. */
static int m_stop(lua_State *L)
{
    lmachine *m = check_machine(L, 1);
    const char *reason = luaL_optstring(L, 2, NULL);
    int64_t timeout = timeout_of(m);
    int rc;
    if (m->s == NULL)
        return ltand_fail(L, TAND_ENOPROC, NULL);
    rc = tand_server_stop(m->s, 0, reason, timeout);
    if (rc == 0 && timeout == 0 && tand_self() != m->s && !has_ended(m->s))
        rc = TAND_ETIMEDOUT; /* asked to stop, not waited for */
    else if (rc == TAND_ENOPROC && tand_self() != m->s &&
             !has_ended(m->s))
        rc = TAND_ETIMEDOUT; /* another stopper's stop, still under way */
    if (rc != 0)
        return ltand_fail(L, rc, rc == TAND_ETIMEDOUT
                                     ? "the server has not ended yet (it "
                                       "will)"
                                     : NULL);
    lua_pushboolean(L, 1);
    return 1;
}

int ltand_timeout(lua_State *L, int idx, int64_t *ms)
{
    lua_Number v;
    if (lua_type(L, idx) != LUA_TNUMBER)
        return -1;
    if (lua_isinteger(L, idx)) {
        lua_Integer i = lua_tointeger(L, idx);
        if (i < 0)
            return -1;
        *ms = i > LTAND_TIMEOUT_MAX_MS ? TAND_FOREVER : (int64_t)i;
        return 0;
    }
    v = lua_tonumber(L, idx);
    if (!(v >= 0)) /* negative or NaN */
        return -1;
    if (v > (lua_Number)LTAND_TIMEOUT_MAX_MS) { /* math.huge included */
        *ms = TAND_FOREVER;
        return 0;
    }
    if (v != floor(v))
        return -1;
    *ms = (int64_t)v;
    return 0;
}

static int m_settimeout(lua_State *L)
{
    lmachine *m = check_machine(L, 1);
    int64_t ms = LTAND_DEFAULT_TIMEOUT_MS;
    if (!lua_isnoneornil(L, 2) && ltand_timeout(L, 2, &ms) != 0)
        return luaL_argerror(L, 2, "timeout must be a whole number of "
                                   "ms >= 0, or math.huge");
    m->timeout_ms = ms;
    lua_pushboolean(L, 1);
    return 1;
}

static void set_int(lua_State *L, const char *k, uint64_t v)
{
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

static int m_stats(lua_State *L)
{
    lmachine *m = check_machine(L, 1);
    tand_stats st;
    if (m->s == NULL)
        return ltand_fail(L, TAND_ENOPROC, NULL);
    tand_server_stats(m->s, &st);
    lua_createtable(L, 0, 10);
    set_int(L, "calls", st.calls);
    set_int(L, "casts", st.casts);
    set_int(L, "infos", st.infos);
    set_int(L, "errors", st.errors);
    set_int(L, "timeouts", st.timeouts);
    set_int(L, "mailbox_depth", st.mailbox_depth);
    set_int(L, "mailbox_peak", st.mailbox_peak);
    set_int(L, "deferred", st.deferred);
    set_int(L, "restarts", st.restarts);
    lua_pushnumber(L, (lua_Number)st.handler_ns / 1e6);
    lua_setfield(L, -2, "callback_ms");
    return 1;
}

static int m_gc(lua_State *L)
{
    lmachine *m = luaL_checkudata(L, 1, LTAND_MACHINE);
    tand_server *s = m->s;
    m->s = NULL;
    tand_server_release(s); /* never blocks */
    free(m->name);
    m->name = NULL;
    free(m->server_name);
    m->server_name = NULL;
    return 0;
}

static int m_close(lua_State *L)
{
    lmachine *m = luaL_checkudata(L, 1, LTAND_MACHINE);
    if (!m->closed && m->s != NULL)
        tand_server_stop(m->s, 0, NULL, m->timeout_ms < 0
                                            ? LTAND_DEFAULT_TIMEOUT_MS
                                            : m->timeout_ms);
    m->closed = 1;
    return m_gc(L);
}

static int m_tostring(lua_State *L)
{
    lmachine *m = luaL_checkudata(L, 1, LTAND_MACHINE);
    const char *st = m->closed ? "closed"
                     : (m->s && tand_server_alive(m->s)) ? "alive"
                                                          : "stopped";
    lua_pushfstring(L, "tand.machine: %I (%s)", (lua_Integer)m->id, st);
    return 1;
}

static int m_eq(lua_State *L)
{
    lmachine *a = luaL_checkudata(L, 1, LTAND_MACHINE);
    lmachine *b = luaL_checkudata(L, 2, LTAND_MACHINE);
    lua_pushboolean(L, a->id == b->id);
    return 1;
}

static const luaL_Reg machine_methods[] = {
    {"queue_new_number", m_queue_new_number},
    {"serve_next_queued_number", m_serve_next_queued_number},
    {"report_state", m_report_state},
    {"reset_state", m_reset_state},
    {"next", m_next},
    {"report", m_report},
    {"call", m_call},
    {"cast", m_cast},
    {"send", m_send},
    {"alive", m_alive},
    {"stop", m_stop},
    {"settimeout", m_settimeout},
    {"stats", m_stats},
    {NULL, NULL}};

static const luaL_Reg machine_meta[] = {{"__gc", m_gc},
                                        {"__close", m_close},
                                        {"__tostring", m_tostring},
                                        {"__eq", m_eq},
                                        {NULL, NULL}};

/* ---- tand.start ---- */

enum { KIND_NONE, KIND_DELUXE, KIND_COUNTER, KIND_POLICY };

/* A sandboxed policy's memory limit unless memory_limit says otherwise. */
#define SANDBOX_MEMORY_LIMIT (32u << 20)

typedef struct start_options {
    int has_min, has_max, has_initial, has_auto;
    int64_t min_number, max_number, initial_number, auto_ms;
    const char *name;
    int64_t call_timeout;
    size_t mailbox;
    int has_policy, has_policy_option, sandbox;
    int64_t callback_ms;
    size_t memory_limit;
    const char *journal; /* anchored in the options table while parsing */
    int durability, has_durability;
} start_options;

static int bad_config(lua_State *L, const char *fmt, const char *key)
{
    lua_pushfstring(L, fmt, key);
    return ltand_fail(L, TAND_ECONFIG, lua_tostring(L, -1));
}

/* 1 when the value at idx is a name: a string of 1 to TAND_NAME_MAX
** bytes without NUL (the engine keeps names as C strings, so "a\0b"
** would be cut to "a"). [-0, +0, -] */
static int is_name(lua_State *L, int idx)
{
    size_t len;
    const char *s;
    if (lua_type(L, idx) != LUA_TSTRING)
        return 0;
    s = lua_tolstring(L, idx, &len);
    return len > 0 && len <= TAND_NAME_MAX && strlen(s) == len;
}

static int get_integer(lua_State *L, int idx, int64_t *out)
{
    int isint;
    lua_Integer v = lua_tointegerx(L, idx, &isint);
    if (!isint || lua_type(L, idx) != LUA_TNUMBER)
        return -1;
    *out = (int64_t)v;
    return 0;
}

/* Reads one option (key at -2, value at -1). Returns 0 or pushes the
** failure (nil, token, detail) and returns 3. */
static int read_option(lua_State *L, start_options *o)
{
    const char *k;
    if (lua_type(L, -2) != LUA_TSTRING)
        return bad_config(L, "option keys are strings (got a %s)",
                          luaL_typename(L, -2));
    k = lua_tostring(L, -2);
    if (strcmp(k, "min_number") == 0 || strcmp(k, "max_number") == 0) {
        int64_t v;
        if (get_integer(L, -1, &v) != 0)
            return bad_config(L, "%s must be an integer", k);
        if (k[1] == 'i') {
            o->min_number = v;
            o->has_min = 1;
        } else {
            o->max_number = v;
            o->has_max = 1;
        }
    } else if (strcmp(k, "initial_number") == 0) {
        if (get_integer(L, -1, &o->initial_number) != 0)
            return bad_config(L, "%s must be an integer", k);
        o->has_initial = 1;
    } else if (strcmp(k, "auto_shutdown_timeout") == 0) {
        if (ltand_timeout(L, -1, &o->auto_ms) != 0)
            return bad_config(L, "%s must be a whole number of ms >= 0, "
                                 "or math.huge", k);
        o->has_auto = 1;
    } else if (strcmp(k, "call_timeout") == 0) {
        if (ltand_timeout(L, -1, &o->call_timeout) != 0)
            return bad_config(L, "%s must be a whole number of ms >= 0, "
                                 "or math.huge", k);
    } else if (strcmp(k, "mailbox") == 0) {
        int64_t v;
        if (get_integer(L, -1, &v) != 0 || v < 1 || v > TAND_MAILBOX_MAX)
            return bad_config(L, "%s must be an integer from 1 to 16777216",
                              k);
        o->mailbox = (size_t)v;
    } else if (strcmp(k, "policy") == 0) {
        o->has_policy = 1; /* read by ltand_policy_prepare */
    } else if (strcmp(k, "callback_timeout") == 0) {
        if (ltand_timeout(L, -1, &o->callback_ms) != 0 ||
            o->callback_ms == 0)
            return bad_config(L, "%s must be a whole number of ms > 0, "
                                 "or math.huge",
                              k);
        o->has_policy_option = 1;
    } else if (strcmp(k, "memory_limit") == 0) {
        int64_t v;
        if (get_integer(L, -1, &v) != 0 || v <= 0)
            return bad_config(L, "%s must be a number of bytes > 0", k);
        o->memory_limit = (size_t)v;
        o->has_policy_option = 1;
    } else if (strcmp(k, "sandbox") == 0) {
        if (lua_type(L, -1) != LUA_TBOOLEAN)
            return bad_config(L, "%s must be true or false", k);
        o->sandbox = lua_toboolean(L, -1);
        o->has_policy_option = 1;
    } else if (strcmp(k, "journal") == 0) {
        size_t len;
        if (lua_type(L, -1) != LUA_TSTRING)
            return bad_config(L, "%s must be the path of a file", k);
        o->journal = lua_tolstring(L, -1, &len);
        if (len == 0 || strlen(o->journal) != len)
            return bad_config(L, "%s must be the path of a file", k);
    } else if (strcmp(k, "durability") == 0) {
        const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                        : "";
        if (strcmp(v, "full") == 0)
            o->durability = TAND_DURABLE_FULL;
        else if (strcmp(v, "os") == 0)
            o->durability = TAND_DURABLE_OS;
        else
            return bad_config(L, "%s must be \"full\" or \"os\"", k);
        o->has_durability = 1;
    } else if (strcmp(k, "name") == 0) {
        if (!is_name(L, -1))
            return bad_config(L, "%s must be a string of 1 to 255 bytes "
                                 "without NUL", k);
        o->name = lua_tostring(L, -1); /* anchored in the options table */
    } else {
        return bad_config(L, "unknown option '%s'", k);
    }
    return 0;
}

/* A parsed tand.start options table: what it takes to start the server
** again from any thread, with no Lua state (a supervisor's restarts). */
typedef struct lspec {
    int kind;
    start_options o; /* o.name is not used: the name is given at start */
    char *name;      /* the name option, or NULL */
    char *journal;   /* the journal option, or NULL */
    ltand_policy *policy;
} lspec;

static void spec_free(lspec *sp)
{
    if (sp != NULL) {
        ltand_policy_free(sp->policy);
        free(sp->name);
        free(sp->journal);
        free(sp);
    }
}

/* Reads the options at idx (a table or an initial number) into a new spec.
** Returns it, or NULL with nil, token, detail pushed. [-0, +(0|3), m] */
static lspec *parse_spec(lua_State *L, int idx)
{
    start_options o;
    lspec *sp;
    int kind, top = lua_gettop(L);

    idx = lua_absindex(L, idx);
    memset(&o, 0, sizeof o);
    o.call_timeout = LTAND_DEFAULT_TIMEOUT_MS;
    o.auto_ms = TAND_FOREVER;
    o.callback_ms = LTAND_DEFAULT_CALLBACK_MS;
    if (lua_type(L, idx) == LUA_TNUMBER) {
        if (get_integer(L, idx, &o.initial_number) != 0)
            goto bad_initial;
        o.has_initial = 1;
    } else if (lua_type(L, idx) == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, idx) != 0) {
            if (read_option(L, &o) != 0) {
                /* keep only the three failure values */
                lua_rotate(L, top + 1, 3);
                lua_settop(L, top + 3);
                return NULL;
            }
            lua_pop(L, 1);
        }
    } else {
        bad_config(L, "tand.start takes an options table or an initial "
                      "number (got %s)",
                   luaL_typename(L, idx));
        return NULL;
    }

    if ((o.has_min || o.has_max) && o.has_initial) {
        bad_config(L, "%s: give min_number and max_number (deluxe) or "
                      "initial_number (counter), not both",
                   "tand.start");
        return NULL;
    }
    if (o.has_durability && o.journal == NULL) {
        bad_config(L, "%s is an option of a journal", "durability");
        return NULL;
    }
    if (o.has_policy_option && !o.has_policy) {
        bad_config(L, "%s: callback_timeout, memory_limit and sandbox are "
                      "options of a policy",
                   "tand.start");
        return NULL;
    }
    if (o.has_policy) {
        if (o.has_initial) {
            bad_config(L, "%s: a policy runs on the deluxe machine, not on "
                          "the counter",
                       "tand.start");
            return NULL;
        }
        if (o.has_min != o.has_max) {
            bad_config(L, "%s needs both min_number and max_number, or "
                          "neither",
                       "a policy");
            return NULL;
        }
        if (!o.has_min) {
            o.min_number = 1;
            o.max_number = INT64_MAX;
        } else if (o.min_number >= o.max_number) {
            goto bad_bounds;
        }
        kind = KIND_POLICY;
    } else if (o.has_min || o.has_max) {
        if (!o.has_min || !o.has_max) {
            bad_config(L, "%s needs both min_number and max_number",
                       "the deluxe machine");
            return NULL;
        }
        if (o.min_number >= o.max_number)
            goto bad_bounds;
        kind = KIND_DELUXE;
    } else if (o.has_initial) {
        if (o.has_auto) {
            bad_config(L, "%s is an option of the deluxe machine",
                       "auto_shutdown_timeout");
            return NULL;
        }
        kind = KIND_COUNTER;
    } else {
        bad_config(L, "%s: give min_number and max_number (deluxe) or "
                      "initial_number (counter)",
                   "tand.start");
        return NULL;
    }

    sp = calloc(1, sizeof *sp);
    if (sp == NULL ||
        (o.name != NULL && (sp->name = strdup(o.name)) == NULL) ||
        (o.journal != NULL && (sp->journal = strdup(o.journal)) == NULL)) {
        spec_free(sp);
        ltand_fail(L, TAND_ENOMEM, NULL);
        return NULL;
    }
    sp->kind = kind;
    sp->o = o;
    sp->o.name = NULL;
    sp->o.journal = NULL;
    if (kind == KIND_POLICY) {
        ltand_policy_options po;
        int rc;
        po.min_number = o.min_number;
        po.max_number = o.max_number;
        po.auto_shutdown_ms = o.auto_ms;
        po.callback_ms = o.callback_ms;
        po.memory_limit = o.memory_limit;
        if (o.sandbox && po.memory_limit == 0)
            po.memory_limit = SANDBOX_MEMORY_LIMIT;
        po.sandbox = o.sandbox;
        po.name = NULL;
        po.mailbox = o.mailbox;
        po.journal = sp->journal;
        po.durability = o.durability;
        lua_getfield(L, idx, "policy");
        rc = ltand_policy_prepare(L, -1, idx, &po, &sp->policy);
        if (rc != 0) { /* stack: policy, detail */
            lua_pushnil(L);
            lua_pushstring(L, tand_errname(rc));
            lua_pushvalue(L, -3);
            lua_rotate(L, top + 1, 3);
            lua_settop(L, top + 3);
            spec_free(sp);
            return NULL;
        }
        lua_pop(L, 1);
    }
    return sp;

bad_initial:
    bad_config(L, "%s must be an integer", "initial_number");
    return NULL;
bad_bounds:
    bad_config(L, "%s must be below max_number", "min_number");
    return NULL;
}

/* Starts one server from a spec, registered as name (or NULL). On failure
** detail gets the reason. Runs on any thread. */
static int start_spec(tand_runtime *rt, lspec *sp, const char *name,
                      tand_server **out, char *detail, size_t size)
{
    int rc;
    *out = NULL;
    detail[0] = '\0';
    if (sp->kind == KIND_POLICY)
        return ltand_policy_launch(rt, sp->policy, name, out, detail, size);
    if (sp->kind == KIND_DELUXE) {
        tand_deluxe_options d;
        memset(&d, 0, sizeof d);
        d.min_number = sp->o.min_number;
        d.max_number = sp->o.max_number;
        d.auto_shutdown_ms = sp->o.auto_ms;
        d.name = name;
        d.mailbox_capacity = sp->o.mailbox;
        d.journal = sp->journal;
        d.durability = sp->o.durability;
        d.error = detail;
        d.error_size = size;
        rc = tand_deluxe_start(rt, &d, out);
    } else {
        tand_counter_options c;
        memset(&c, 0, sizeof c);
        c.initial_number = sp->o.initial_number;
        c.name = name;
        c.mailbox_capacity = sp->o.mailbox;
        c.journal = sp->journal;
        c.durability = sp->o.durability;
        c.error = detail;
        c.error_size = size;
        rc = tand_counter_start(rt, &c, out);
    }
    if (rc == TAND_ENAMETAKEN)
        snprintf(detail, size, "the name '%s' is already registered",
                 name ? name : "");
    else if (rc != 0 && detail[0] == '\0')
        snprintf(detail, size, "%s", tand_strerror(rc));
    return rc;
}

int ltand_start_table(lua_State *L, int idx, tand_runtime *rt,
                      tand_server **out, char *detail, size_t size)
{
    lspec *sp;
    int rc;
    *out = NULL;
    if ((sp = parse_spec(L, idx)) == NULL) { /* nil, token, detail */
        rc = tand_errcode(lua_tostring(L, -2));
        snprintf(detail, size, "%s", lua_tostring(L, -1));
        lua_pop(L, 3);
        return rc < 0 ? rc : TAND_ECONFIG;
    }
    rc = start_spec(rt, sp, sp->name, out, detail, size);
    spec_free(sp);
    return rc;
}

static int l_start(lua_State *L)
{
    tand_runtime *rt = runtime(L);
    tand_server *s;
    lmachine *m;
    lspec *sp;
    char detail[2048];
    int rc, handle;

    lua_settop(L, 1);
    if ((sp = parse_spec(L, 1)) == NULL)
        return 3;
    /* The handle exists, closed, before the server: nothing can raise
    ** between starting the server and handing its reference over. */
    ltand_push_machine(L, NULL, 0);
    handle = lua_gettop(L);
    m = lua_touserdata(L, handle);
    rc = start_spec(rt, sp, sp->name, &s, detail, sizeof detail);
    m->timeout_ms = sp->o.call_timeout;
    m->server_name = sp->name; /* the handle carries it in messages */
    sp->name = NULL;
    spec_free(sp);
    if (rc != 0)
        return ltand_fail(L, rc, detail);
    m->s = s; /* the reference start gave us */
    m->id = tand_server_id(s);
    lua_pushvalue(L, handle);
    return 1;
}

/* tand.whereis(name): a string that cannot be a name (empty, over 255
** bytes, or with a NUL) is a wrong argument and raises. */
static int l_whereis(lua_State *L)
{
    const char *name;
    tand_server *s;
    lmachine *m;
    luaL_argexpected(L, lua_type(L, 1) == LUA_TSTRING, 1, "string");
    luaL_argcheck(L, is_name(L, 1), 1,
                  "a name has 1 to 255 bytes without NUL");
    name = lua_tostring(L, 1);
    ltand_push_machine(L, NULL, 0);
    m = lua_touserdata(L, -1);
    if ((m->name = strdup(name)) == NULL ||
        (m->server_name = strdup(name)) == NULL)
        return luaL_error(L, "not enough memory");
    if (tand_whereis(runtime(L), name, &s) != 0) {
        lua_pushfstring(L, "no server is registered as '%s'", name);
        return ltand_fail(L, TAND_ENOPROC, lua_tostring(L, -1));
    }
    m->s = s;
    m->id = tand_server_id(s);
    return 1;
}

/* ---- tand.supervise ---- */

/* What a supervise call's children share: the reason the last one that
** failed to start gave, read by tand.supervise when the start fails. */
typedef struct sup_ctx {
    atomic_int refs;
    char error[2048];
} sup_ctx;

typedef struct sup_child {
    lspec *spec;
    sup_ctx *ctx;
} sup_child;

static void ctx_release(sup_ctx *ctx)
{
    if (ctx != NULL && atomic_fetch_sub(&ctx->refs, 1) == 1)
        free(ctx);
}

static int start_child(tand_runtime *rt, const char *name, void *arg,
                       tand_server **out)
{
    sup_child *c = arg;
    char detail[1024];
    int rc = start_spec(rt, c->spec, name, out, detail, sizeof detail);
    if (rc != 0)
        snprintf(c->ctx->error, sizeof c->ctx->error, "child '%s': %s",
                 name, detail);
    return rc;
}

static void free_child(void *arg)
{
    sup_child *c = arg;
    spec_free(c->spec);
    ctx_release(c->ctx);
    free(c);
}

static const char *const strategies[] = {"one_for_one", "one_for_all",
                                         "rest_for_one", NULL};
static const char *const restarts[] = {"permanent", "transient",
                                       "temporary", NULL};

static int option_index(const char *v, const char *const *names)
{
    int i;
    for (i = 0; names[i]; i++)
        if (strcmp(v, names[i]) == 0)
            return i;
    return -1;
}

/* Reads tand.supervise's flags table at 1 into o; 0, or 3 with the
** failure pushed. */
static int read_flags(lua_State *L, tand_supervisor_options *o)
{
    tand_supervisor_options_init(o);
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        const char *k = lua_type(L, -2) == LUA_TSTRING
                            ? lua_tostring(L, -2)
                            : NULL;
        int64_t v;
        if (k == NULL)
            return bad_config(L, "supervisor flags have string keys (got "
                                 "a %s)",
                              luaL_typename(L, -2));
        if (strcmp(k, "strategy") == 0) {
            if (lua_type(L, -1) != LUA_TSTRING ||
                (o->strategy = option_index(lua_tostring(L, -1),
                                            strategies)) < 0)
                return bad_config(L, "%s must be one_for_one, one_for_all "
                                     "or rest_for_one",
                                  k);
        } else if (strcmp(k, "max_restarts") == 0) {
            if (get_integer(L, -1, &v) != 0 || v < 0 || v > 1000000)
                return bad_config(L, "%s must be an integer >= 0", k);
            o->max_restarts = (int)v;
        } else if (strcmp(k, "max_seconds") == 0) {
            if (get_integer(L, -1, &v) != 0 || v <= 0 || v > 1000000000)
                return bad_config(L, "%s must be an integer > 0", k);
            o->max_seconds = v;
        } else if (strcmp(k, "name") == 0) {
            if (!is_name(L, -1))
                return bad_config(L, "%s must be a string of 1 to 255 "
                                     "bytes without NUL", k);
            o->name = lua_tostring(L, -1); /* anchored in the flags */
        } else {
            return bad_config(L, "unknown supervisor flag '%s'", k);
        }
        lua_pop(L, 1);
    }
    return 0;
}

static int l_supervise(lua_State *L)
{
    tand_runtime *rt = runtime(L);
    tand_supervisor_options o;
    tand_child_spec *kids;
    tand_server *sup;
    sup_ctx *ctx;
    lmachine *m;
    size_t n, i;
    int rc;

    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    if (read_flags(L, &o) != 0)
        return 3;
    n = (size_t)lua_rawlen(L, 2);
    ltand_push_machine(L, NULL, 0); /* 3: the handle, closed for now */
    m = lua_touserdata(L, 3);
    kids = calloc(n ? n : 1, sizeof *kids);
    ctx = calloc(1, sizeof *ctx);
    if (kids == NULL || ctx == NULL) {
        free(kids);
        free(ctx);
        return ltand_fail(L, TAND_ENOMEM, NULL);
    }
    atomic_init(&ctx->refs, 1);
    for (i = 0; i < n; i++) {
        sup_child *c;
        int restart = TAND_PERMANENT;
        lspec *sp;
        lua_settop(L, 3);
        if (lua_rawgeti(L, 2, (lua_Integer)i + 1) != LUA_TTABLE ||
            lua_getfield(L, 4, "name") != LUA_TSTRING) {
            lua_pushfstring(L, "child %d must be a tand.start options table "
                               "with a name",
                            (int)i + 1);
            rc = TAND_ECONFIG;
            goto fail;
        }
        /* its options without `restart`, which is the supervisor's */
        lua_newtable(L); /* 6 */
        lua_pushnil(L);
        while (lua_next(L, 4) != 0) {
            if (lua_type(L, -2) == LUA_TSTRING &&
                strcmp(lua_tostring(L, -2), "restart") == 0) {
                if (lua_type(L, -1) != LUA_TSTRING ||
                    (restart = option_index(lua_tostring(L, -1),
                                            restarts)) < 0) {
                    lua_pushfstring(L, "child %d: restart must be "
                                       "permanent, transient or temporary",
                                    (int)i + 1);
                    rc = TAND_ECONFIG;
                    goto fail;
                }
                lua_pop(L, 1);
                continue;
            }
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, 6);
        }
        if ((sp = parse_spec(L, 6)) == NULL) {
            lua_pushfstring(L, "child %d: %s", (int)i + 1,
                            lua_tostring(L, -1));
            rc = TAND_ECONFIG;
            goto fail;
        }
        if ((c = calloc(1, sizeof *c)) == NULL) {
            spec_free(sp);
            lua_pushliteral(L, "not enough memory");
            rc = TAND_ENOMEM;
            goto fail;
        }
        c->spec = sp;
        c->ctx = ctx;
        atomic_fetch_add(&ctx->refs, 1);
        kids[i].name = sp->name;
        kids[i].restart = restart;
        kids[i].start = start_child;
        kids[i].arg = c;
        kids[i].free_arg = free_child;
    }
    lua_settop(L, 3);
    rc = tand_supervisor_start(rt, &o, kids, n, &sup); /* frees the args */
    free(kids);
    if (rc != 0) {
        lua_pushstring(L, ctx->error[0] ? ctx->error : tand_strerror(rc));
        ctx_release(ctx);
        return ltand_fail(L, rc, lua_tostring(L, -1));
    }
    ctx_release(ctx);
    m->s = sup;
    m->id = tand_server_id(sup);
    if (o.name != NULL && (m->server_name = strdup(o.name)) == NULL)
        return luaL_error(L, "not enough memory"); /* m owns sup: no leak */
    lua_settop(L, 3);
    return 1;
fail: /* the detail is on top */
    for (size_t j = 0; j < i; j++)
        free_child(kids[j].arg);
    free(kids);
    ctx_release(ctx);
    return ltand_fail(L, rc, lua_tostring(L, -1));
}

static int l_sleep(lua_State *L)
{
    lua_Number ms = luaL_checknumber(L, 1);
    struct timespec ts;
    luaL_argcheck(L, ms >= 0 && ms < 1e12, 1, "must be ms >= 0");
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)((ms - (lua_Number)ts.tv_sec * 1000) * 1e6);
    while (nanosleep(&ts, &ts) != 0)
        ;
    return 0;
}

static int l_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec * 1e3 +
                          (lua_Number)ts.tv_nsec / 1e6);
    return 1;
}

static const char noreply_marker = 'n';

void *ltand_noreply_marker(void)
{
    return (void *)&noreply_marker;
}

static const luaL_Reg funcs[] = {{"start", l_start},
                                 {"whereis", l_whereis},
                                 {"supervise", l_supervise},
                                 {"sleep", l_sleep},
                                 {"now", l_now},
                                 {NULL, NULL}};

/* lua_close() unloads C modules, but the runtime's worker threads run
** this code for the life of the process: when the module is a shared
** object of its own, it stays loaded (the build links it -z nodelete too;
** this covers other builds, such as LuaRocks'). */
static void stay_loaded(void)
{
#ifdef RTLD_NODELETE
    Dl_info info;
    if (dladdr((void *)&stay_loaded, &info) != 0 && info.dli_fname != NULL)
        dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
#endif
}

__attribute__((visibility("default"))) int luaopen_tand(lua_State *L)
{
    stay_loaded();
    runtime(L);
    if (luaL_newmetatable(L, LTAND_MACHINE)) {
        luaL_setfuncs(L, machine_meta, 0);
        luaL_newlibtable(L, machine_methods);
        lua_pushvalue(L, -2); /* the methods' upvalue: see check_machine */
        luaL_setfuncs(L, machine_methods, 1);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    luaL_newlib(L, funcs);
    ltand_open_spawn(L);
    lua_pushliteral(L, TAND_VERSION_STRING);
    lua_setfield(L, -2, "version");
    lua_pushlightuserdata(L, (void *)&noreply_marker);
    lua_setfield(L, -2, "noreply");
    return 1;
}
