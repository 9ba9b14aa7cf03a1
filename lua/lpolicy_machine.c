/*
** lpolicy_machine.c - the objects a policy's callbacks get: `machine`,
** which runs the built-in operations on the server's own tickets with no
** message (and replies, stops, names the server), and `from`, a caller
** to answer now or later. Both live in the policy's state and are used
** only by the thread running the server.
*/
#include "lpolicy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LTAND_POLICY_MACHINE "tand.policy_machine"
#define LTAND_FROM "tand.from"
/* A `from` left unanswered when its callback returned: collected, it
** tells its caller that no reply will come. */
#define LTAND_FROM_KEPT "tand.from_kept"

/* Pushes the state as report_state gives it. [-0, +1, m] */
static void push_state_table(lua_State *L, policy *p)
{
    int64_t min, max;
    uint64_t n = tand_tickets_count(p->tickets), i;
    int64_t *all;
    if (n > SIZE_MAX / sizeof *all)
        luaL_error(L, "not enough memory");
    /* the copy is a userdata, so that an error below leaks nothing */
    all = lua_newuserdatauv(L, (size_t)n * sizeof *all, 0);
    tand_tickets_list(p->tickets, all, (size_t)n);
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
    lua_createtable(L, n < 1000000 ? (int)n : 1000000, 0);
    for (i = 0; i < n; i++) {
        lua_pushinteger(L, all[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "queue");
    lua_remove(L, -2); /* the copy */
}

static int number_result(lua_State *L, int rc, int64_t n)
{
    if (rc != 0)
        return ltand_fail(L, rc, NULL);
    lua_pushinteger(L, n);
    return 1;
}

/* Raises while a reload's code runs (its top level, code_change): a
** reload may yet be refused, and then the server goes on exactly as it
** was, so the machine only reads; what changes the tickets, answers a
** caller, stops the server or sends would outlive the refusal.
** [-0, +0, v] */
static void not_in_reload(lua_State *L, const policy *p, const char *what)
{
    if (p->reloading)
        luaL_error(L, "machine:%s cannot run during a reload (code_change "
                      "works on a copy, and the machine only reads)",
                   what);
}

/* Runs the built-in op `op` (TAND_OP_*) with the arguments at arg..
** (nargs of them) and pushes its results. [-0, +n, e] */
static int builtin(lua_State *L, policy *p, int op, int arg, int nargs)
{
    int64_t n = 0, prio;
    int rc, isint = 1;
    if (op == TAND_OP_QUEUE_NEW_NUMBER)
        not_in_reload(L, p, "queue_new_number");
    else if (op == TAND_OP_SERVE_NEXT)
        not_in_reload(L, p, "serve_next_queued_number");
    else if (op == TAND_OP_RESET_STATE)
        not_in_reload(L, p, "reset_state");
    switch (op) {
    case TAND_OP_QUEUE_NEW_NUMBER:
        rc = lpolicy_queue(p, &n);
        return number_result(L, rc, n);
    case TAND_OP_SERVE_NEXT:
        if (nargs >= 1 && !lua_isnil(L, arg)) {
            prio = (int64_t)lua_tointegerx(L, arg, &isint);
            if (!isint)
                return ltand_fail(L, TAND_EBADREQ,
                                  "the priority number must be an integer");
            rc = lpolicy_serve(p, &prio, &n);
        } else {
            rc = lpolicy_serve(p, NULL, &n);
        }
        return number_result(L, rc, n);
    case TAND_OP_REPORT_STATE:
        push_state_table(L, p);
        return 1;
    default: /* TAND_OP_RESET_STATE */
        lpolicy_reset(p);
        lua_pushboolean(L, 1);
        return 1;
    }
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
    return builtin(L, check_pmachine(L), TAND_OP_QUEUE_NEW_NUMBER, 2, 0);
}

static int pm_serve_next_queued_number(lua_State *L)
{
    policy *p = check_pmachine(L);
    if (!lua_isnoneornil(L, 2))
        luaL_checkinteger(L, 2);
    return builtin(L, p, TAND_OP_SERVE_NEXT, 2, lua_gettop(L) - 1);
}

static int pm_report_state(lua_State *L)
{
    return builtin(L, check_pmachine(L), TAND_OP_REPORT_STATE, 2, 0);
}

static int pm_reset_state(lua_State *L)
{
    return builtin(L, check_pmachine(L), TAND_OP_RESET_STATE, 2, 0);
}

static int pm_queue(lua_State *L)
{
    push_state_table(L, check_pmachine(L));
    lua_getfield(L, -1, "queue");
    return 1;
}

int lpolicy_default(lua_State *L)
{
    policy *p = check_pmachine(L);
    const char *name;
    size_t len;
    int n, op;
    luaL_checktype(L, 2, LUA_TTABLE);
    if (lua_rawgeti(L, 2, 1) != LUA_TSTRING)
        return luaL_argerror(L, 2, "a request is {op, args...} with a "
                                   "string op");
    name = lua_tolstring(L, 3, &len);
    if ((op = lpolicy_builtin_op(name, len)) == 0) {
        lua_pushfstring(L, "unknown request '%s'", name);
        return ltand_fail(L, TAND_EBADREQ, lua_tostring(L, -1));
    }
    n = (int)lua_rawlen(L, 2);
    luaL_checkstack(L, n + 4, "request too long");
    for (int i = 2; i <= n; i++)
        lua_rawgeti(L, 2, i);
    return builtin(L, p, op, 4, n - 1);
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
    not_in_reload(L, p, "reply");
    if (f->answered)
        return luaL_error(L, "this caller has already been answered");
    /* nil, token [, detail]: a failure, as handle_call's return says it */
    if (!(lua_gettop(L) <= 5 &&
          lpolicy_error_reply(L, 3, lua_gettop(L) - 2, &msg)) &&
        ltand_encode_once(L, p->scratch, 3, lua_gettop(L) - 2, 1, &msg) != 0)
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
    const char *detail;
    int code;
    not_in_reload(L, p, "stop");
    code = ltand_stop_reason(L, 2, &detail);
    tand_server_stop(p->self, code, detail, 0);
    lua_pushboolean(L, 1);
    return 1;
}

/* machine:send_request(handle, op, ...): the id of the request sent; its
** reply comes later to handle_info as {"reply", id, ...}. */
static int pm_send_request(lua_State *L)
{
    policy *p = check_pmachine(L);
    int last = lua_gettop(L), rc;
    not_in_reload(L, p, "send_request");
    luaL_getmetatable(L, LTAND_MACHINE); /* at last + 1, for the check */
    rc = ltand_machine_async(L, p->scratch, 2, last + 1, 3, last, NULL,
                             p->self, &p->last_request, NULL);
    if (rc != 0)
        return ltand_fail(L, rc, NULL);
    lua_pushinteger(L, (lua_Integer)p->last_request);
    return 1;
}

/* machine:monitor(handle): a ref; when the handle's server ends,
** handle_info gets {"DOWN", ref, reason}. */
static int pm_monitor(lua_State *L)
{
    policy *p = check_pmachine(L);
    int last = lua_gettop(L);
    lmachine *m;
    int64_t ref;
    int rc;
    not_in_reload(L, p, "monitor");
    luaL_getmetatable(L, LTAND_MACHINE);
    m = ltand_check_machine(L, 2, last + 1);
    ref = ++p->last_monitor;
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref_monitors);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, ref); /* (which may raise: before the monitor) */
    if (m->s != NULL) {
        rc = tand_monitor(m->s, p->self, ref);
    } else { /* it had ended before: noproc at once */
        tand_msg down = {0};
        down.op = TAND_OP_DOWN;
        down.ival[0] = ref;
        down.ival[1] = TAND_ENOPROC;
        rc = tand_send(p->self, &down, 0, TAND_NOWAIT);
    }
    if (rc != 0) {
        lua_pushnil(L);
        lua_rawseti(L, -2, ref);
        return ltand_fail(L, rc, NULL);
    }
    lua_pushinteger(L, ref);
    return 1;
}

/* machine:demonitor(ref): the monitor is cancelled and its DOWN, even one
** already on its way, never reaches handle_info. true. */
static int pm_demonitor(lua_State *L)
{
    policy *p = check_pmachine(L);
    lua_Integer ref = luaL_checkinteger(L, 2);
    not_in_reload(L, p, "demonitor");
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref_monitors);
    if (lua_rawgeti(L, -1, ref) != LUA_TNIL) {
        lmachine *m = lua_touserdata(L, -1);
        if (m->s != NULL)
            tand_demonitor(m->s, p->self, ref);
        lua_pushnil(L);
        lua_rawseti(L, -3, ref);
    }
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
    {"default", lpolicy_default},
    {"reply", pm_reply},
    {"stop", pm_stop},
    {"self", pm_self},
    {"send_request", pm_send_request},
    {"monitor", pm_monitor},
    {"demonitor", pm_demonitor},
    {NULL, NULL}};

void lpolicy_open_machine(lua_State *L, policy *p)
{
    policy **m;
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
    lua_newtable(L);
    p->ref_monitors = luaL_ref(L, LUA_REGISTRYINDEX);
}
