/*
** lmachine.c - the machine handle: the "tand.machine" userdata, its
** methods (m:next, m:call, m:cast, m:stop, m:stats, ...) and metamethods.
**
** DESIGN: a handle lives in one Lua state, so one thread at a time uses
** it, and holds at most one reference to its server. A handle is created
** closed and only then given its server reference, so an allocation error
** never leaks one; __gc only drops the reference and never blocks;
** __close and :stop() stop the server. A call blocks its thread until the
** reply lands in the state's reply box or the handle's timeout passes;
** casts and infos never wait.
*/
#include "ltand.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* nil, token, detail from a failed call's reply. */
static int fail_reply(lua_State *L, int status, const tand_msg *reply)
{
    return ltand_fail(L, status, reply->data);
}

void ltand_push_machine(lua_State *L, tand_server *s, uint64_t id)
{
    lmachine *m = lua_newuserdatauv(L, sizeof *m, 0);
    m->s = NULL;
    m->cm = NULL;
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

/* The state's scratch, the methods' upvalue 2. */
#define METHOD_SCRATCH(L) \
    ((ltand_scratch *)lua_touserdata(L, lua_upvalueindex(2)))

/* The machine at idx. The machine methods hold the machine metatable as
** their upvalue 1 (a request set's methods as their upvalue 2: mt), so
** the check needs no lookup by name; anything else takes
** luaL_checkudata and its error. */
static inline lmachine *check_machine_at(lua_State *L, int idx, int mt)
{
    lmachine *m = lua_touserdata(L, idx);
    int same = 0;
    if (m != NULL && lua_getmetatable(L, idx)) {
        same = lua_rawequal(L, -1, mt);
        lua_pop(L, 1);
    }
    if (!same)
        m = luaL_checkudata(L, idx, LTAND_MACHINE);
    if (m->closed)
        luaL_error(L, "attempt to use a closed machine");
    follow_name(m);
    return m;
}

lmachine *ltand_check_machine(lua_State *L, int idx, int mt)
{
    return check_machine_at(L, idx, mt);
}

/* A method's self: argument 1, the metatable in upvalue 1 (the check
** compiled for those constants: the methods' hot path). */
static lmachine *check_self(lua_State *L)
{
    return check_machine_at(L, 1, lua_upvalueindex(1));
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

int64_t ltand_timeout_of(const lmachine *m)
{
    return timeout_of(m);
}

void ltand_push_cluster_machine(lua_State *L, tand_cluster_machine *cm,
                                int cluster)
{
    lmachine *m;
    if (cluster != 0)
        cluster = lua_absindex(L, cluster);
    m = lua_newuserdatauv(L, sizeof *m, 1);
    memset(m, 0, sizeof *m);
    m->timeout_ms = LTAND_DEFAULT_TIMEOUT_MS;
    luaL_setmetatable(L, LTAND_MACHINE);
    m->cm = cm;
    if (cluster != 0) { /* its cluster object lives while its handles do */
        lua_pushvalue(L, cluster);
        lua_setiuservalue(L, -2, 1);
    }
}

/* What a cluster's handle does not offer (yet): a raised error. */
static void not_clustered(lua_State *L, const lmachine *m, const char *what)
{
    if (m->cm != NULL)
        luaL_error(L, "m:%s is not available on a cluster's machine (calls, "
                      "requests, casts, infos, owner, alive and settimeout "
                      "are)",
                   what);
}

/* Sends req to the handle's server and waits for the reply. */
static int call(lmachine *m, tand_msg *req, tand_msg *reply)
{
    if (m->cm != NULL)
        return tand_cluster_call(m->cm, req, reply, timeout_of(m));
    if (m->s == NULL) { /* a handle to a server that had already ended */
        tand_msg_clear(req);
        return TAND_ENOPROC;
    }
    return tand_call(m->s, req, reply, timeout_of(m), 0);
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

int ltand_push_reply(lua_State *L, const tand_msg *reply)
{
    return reply->status != 0 ? fail_reply(L, reply->status, reply)
                              : push_results(L, reply);
}

/* Calls with req, in sp (taken by the method before it encoded
** anything, so that nothing raised can leak the request), and pushes
** the results or nil, token, detail; ends the use of sp. */
static int call_in(lua_State *L, lmachine *m, tand_msg *req,
                   ltand_space *sp)
{
    tand_msg *reply = ltand_space_reply(sp);
    int rc = call(m, req, reply);
    int n = rc != 0 ? fail_reply(L, rc, reply) : push_results(L, reply);
    ltand_space_give(METHOD_SCRATCH(L), sp);
    return n;
}

#define TAKE_SPACE(L) ltand_space_take(L, METHOD_SCRATCH(L))

static int m_queue_new_number(lua_State *L)
{
    lmachine *m = check_self(L);
    tand_msg req = {0};
    req.op = TAND_OP_QUEUE_NEW_NUMBER;
    return call_in(L, m, &req, TAKE_SPACE(L));
}

static int m_serve_next_queued_number(lua_State *L)
{
    lmachine *m = check_self(L);
    tand_msg req = {0};
    req.op = TAND_OP_SERVE_NEXT;
    if (!lua_isnoneornil(L, 2)) {
        req.ival[0] = (int64_t)luaL_checkinteger(L, 2);
        req.ival[1] = 1;
    }
    return call_in(L, m, &req, TAKE_SPACE(L));
}

static int m_report_state(lua_State *L)
{
    lmachine *m = check_self(L);
    tand_msg req = {0};
    req.op = TAND_OP_REPORT_STATE;
    return call_in(L, m, &req, TAKE_SPACE(L));
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
    if (m->cm != NULL)
        return cast_result(L, tand_cluster_cast(m->cm, msg, info));
    if (m->s == NULL) {
        tand_msg_clear(msg);
        return cast_result(L, TAND_ENOPROC);
    }
    return cast_result(L, info ? tand_send(m->s, msg, 0, TAND_NOWAIT)
                               : tand_cast(m->s, msg, 0, TAND_NOWAIT));
}

static int m_reset_state(lua_State *L)
{
    lmachine *m = check_self(L);
    tand_msg msg = {0};
    msg.op = TAND_OP_RESET_STATE;
    return send_msg(L, m, &msg, 0);
}

/* Encodes the n values at first.. into msg in sp, raising (with sp
** given back) on what cannot be sent. */
static void encode_args(lua_State *L, ltand_scratch *sc, ltand_space *sp,
                        int first, int n, int as_array, tand_msg *msg)
{
    if (ltand_encode(L, sp, first, n, as_array, msg) != 0) {
        ltand_space_give(sc, sp);
        lua_error(L);
    }
}

static int m_next(lua_State *L)
{
    lmachine *m = check_self(L);
    tand_msg req = {0};
    ltand_space *sp;
    req.op = TAND_OP_NEXT;
    lua_settop(L, 2);
    sp = TAKE_SPACE(L);
    if (!lua_isnil(L, 2))
        encode_args(L, METHOD_SCRATCH(L), sp, 2, 1, 0, &req);
    return call_in(L, m, &req, sp);
}

static int m_report(lua_State *L)
{
    lmachine *m = check_self(L);
    tand_msg req = {0}, *reply;
    ltand_space *sp = TAKE_SPACE(L);
    int rc, n = 2;
    req.op = TAND_OP_REPORT;
    reply = ltand_space_reply(sp);
    rc = call(m, &req, reply);
    if (rc != 0) {
        n = fail_reply(L, rc, reply);
    } else {
        lua_pushinteger(L, (lua_Integer)reply->ival[0]);
        if (reply->data == NULL)
            lua_pushnil(L);
        else if (ltand_decode(L, reply->data, reply->size, 0) < 0)
            n = bad_reply(L);
    }
    ltand_space_give(METHOD_SCRATCH(L), sp);
    return n;
}

/* The op code of a built-in op whose reply Lua reads as from a list (an
** integer, or a list in data), or 0. */
static int fast_op(const char *name, size_t len)
{
    static const struct {
        const char *name;
        int op;
    } ops[] = {{"next", TAND_OP_NEXT},
               {"report_state", TAND_OP_REPORT_STATE},
               {"queue_new_number", TAND_OP_QUEUE_NEW_NUMBER},
               {"serve_next_queued_number", TAND_OP_SERVE_NEXT}};
    size_t i;
    for (i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (strlen(ops[i].name) == len && memcmp(ops[i].name, name, len) == 0)
            return ops[i].op;
    return 0;
}

/* Encodes the call {op, args...} of the n values from first (op a
** string) into req, in sp; raises for what cannot be sent. A built-in
** op with the arguments its method takes (next with at most the caller,
** serve_next_queued_number with at most an integer priority, the others
** with none) travels as its op code, as the machine's methods send it:
** no list to encode, none for the server to parse, the same reply. */
static void encode_call(lua_State *L, ltand_scratch *sc, ltand_space *sp,
                        int first, int n, tand_msg *req)
{
    size_t len;
    const char *name = lua_tolstring(L, first, &len);
    int op = fast_op(name, len);
    if (op == TAND_OP_NEXT && n <= 2) {
        req->op = op;
        if (n == 2 && !lua_isnil(L, first + 1))
            encode_args(L, sc, sp, first + 1, 1, 0, req);
        return;
    }
    if (op == TAND_OP_SERVE_NEXT && n == 2 && lua_isinteger(L, first + 1)) {
        req->op = op;
        req->ival[0] = (int64_t)lua_tointeger(L, first + 1);
        req->ival[1] = 1;
        return;
    }
    if (op != 0 && op != TAND_OP_NEXT && n == 1) {
        req->op = op;
        return;
    }
    encode_args(L, sc, sp, first, n, 1, req);
}

static int m_call(lua_State *L)
{
    lmachine *m = check_self(L);
    tand_msg req = {0};
    int n = lua_gettop(L) - 1;
    ltand_space *sp;
    luaL_checktype(L, 2, LUA_TSTRING);
    sp = TAKE_SPACE(L);
    encode_call(L, METHOD_SCRATCH(L), sp, 2, n, &req);
    return call_in(L, m, &req, sp);
}

/* Encodes the values from first on, as m:cast and m:send send them. */
static void encode_message(lua_State *L, int first, int as_array,
                           tand_msg *msg)
{
    int n = lua_gettop(L) - first + 1;
    ltand_space *sp = TAKE_SPACE(L);
    encode_args(L, METHOD_SCRATCH(L), sp, first, n, as_array, msg);
    ltand_space_give(METHOD_SCRATCH(L), sp);
    lua_pop(L, 1);
}

static int m_cast(lua_State *L)
{
    lmachine *m = check_self(L);
    tand_msg msg = {0};
    luaL_checktype(L, 2, LUA_TSTRING);
    encode_message(L, 2, 1, &msg);
    return send_msg(L, m, &msg, 0);
}

static int m_send(lua_State *L)
{
    lmachine *m = check_self(L);
    tand_msg msg = {0};
    int n = lua_gettop(L) - 1;
    encode_message(L, 2, n != 1, &msg);
    return send_msg(L, m, &msg, 1);
}

int ltand_machine_async(lua_State *L, ltand_scratch *sc, int midx, int mt,
                        int first, int last, tand_replies *box,
                        tand_server *owner, uint64_t *ids, const int *closed)
{
    uint64_t tag = 1;
    lmachine *m = ltand_check_machine(L, midx, mt);
    tand_msg req = {0};
    ltand_space *sp;
    int n = last - first + 1;
    luaL_checktype(L, first, LUA_TSTRING);
    sp = ltand_space_take(L, sc);
    encode_call(L, sc, sp, first, n, &req);
    ltand_space_give(sc, sp);
    lua_pop(L, 1);
    /* Only now: a finalizer run by the encoding may have used the set */
    if (closed != NULL && *closed) {
        tand_msg_clear(&req);
        return TAND_ECANCELED;
    }
    if (ids != NULL)
        tag = ++*ids;
    if (m->cm != NULL) {
        if (owner == NULL) /* over NATS, or to this host's own server */
            return tand_cluster_call_async(m->cm, &req, timeout_of(m), box,
                                           tag);
        tand_msg_clear(&req); /* (a server's own box is not for NATS) */
        not_clustered(L, m, "send_request from a policy");
    }
    if (m->s == NULL) {
        tand_msg_clear(&req);
        return TAND_ENOPROC;
    }
    /* A server's request outlives the callback that sends it: its
    ** deadline is the handle's, not what is left of the callback's. */
    if (owner != NULL)
        return tand_send_request(owner, m->s, &req, m->timeout_ms, tag);
    /* never waiting for room: a full mailbox is busy at once */
    return tand_call_async(m->s, &req, timeout_of(m), TAND_NOWAIT, box, tag);
}

/* m:send_request(op, ...): a request, sent now (lrequest.c). */
static int m_send_request(lua_State *L)
{
    check_self(L);
    return ltand_request_send(L, METHOD_SCRATCH(L), 1, lua_upvalueindex(1),
                              2);
}

/* m:monitor(): a request that finishes when the server ends (lrequest.c). */
static int m_monitor(lua_State *L)
{
    lmachine *m = check_self(L);
    not_clustered(L, m, "monitor");
    return ltand_request_monitor(L, m->s, m->timeout_ms);
}

static int m_alive(lua_State *L)
{
    lmachine *m = check_self(L);
    if (m->cm != NULL) { /* some host owns it */
        char host[TAND_NAME_MAX + 1];
        uint64_t epoch;
        lua_pushboolean(L, tand_cluster_owner(m->cm, host, sizeof host,
                                              &epoch) == 0);
        return 1;
    }
    lua_pushboolean(L, m->s != NULL && tand_server_alive(m->s));
    return 1;
}

/* m:owner(): the host that owns a cluster's machine and its epoch, or
** nil, "noproc" when none does now. */
static int m_owner(lua_State *L)
{
    lmachine *m = check_self(L);
    char host[TAND_NAME_MAX + 1];
    uint64_t epoch;
    int rc;
    if (m->cm == NULL)
        return luaL_argerror(L, 1, "not a cluster's machine");
    if ((rc = tand_cluster_owner(m->cm, host, sizeof host, &epoch)) != 0) {
        char why[512];
        if (rc != TAND_ENOPROC || !tand_cluster_error(m->cm, why, sizeof why))
            return ltand_fail(L, rc, "no host owns the machine now");
        lua_pushfstring(L, "no host owns the machine now; this host's last "
                           "try to take it over failed: %s",
                        why);
        return ltand_fail(L, rc, lua_tostring(L, -1));
    }
    lua_pushstring(L, host);
    lua_pushinteger(L, (lua_Integer)epoch);
    return 2;
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
** is on its way. The reason is normal or not as ltand_stop_reason says. */
static int m_stop(lua_State *L)
{
    lmachine *m = check_self(L);
    const char *detail;
    int code = ltand_stop_reason(L, 2, &detail);
    int64_t timeout = timeout_of(m);
    int rc;
    not_clustered(L, m, "stop");
    if (m->s == NULL)
        return ltand_fail(L, TAND_ENOPROC, NULL);
    rc = tand_server_stop(m->s, code, detail, timeout);
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

/* m:reload([policy]): true, or nil, "reload_failed", why (the server
** runs on with its old code and state). */
static int m_reload(lua_State *L)
{
    lmachine *m = check_self(L);
    tand_msg req, reply = {0};
    int rc;
    if (m->s != NULL && !ltand_is_policy(m->s))
        return luaL_argerror(L, 1, "not a policy server (started without "
                                   "a policy)");
    if ((rc = ltand_policy_reload_request(L, 2, &req)) != 0)
        return ltand_fail(L, rc, lua_tostring(L, -1));
    if ((rc = call(m, &req, &reply)) == 0 && (rc = reply.status) == 0) {
        tand_msg_clear(&reply);
        lua_pushboolean(L, 1);
        return 1;
    }
    rc = fail_reply(L, rc, &reply);
    tand_msg_clear(&reply);
    return rc;
}

static int m_settimeout(lua_State *L)
{
    lmachine *m = check_self(L);
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
    lmachine *m = check_self(L);
    tand_stats st;
    not_clustered(L, m, "stats");
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
    tand_cluster_machine_release(m->cm);
    m->cm = NULL;
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
    if (m->cm != NULL) {
        lua_pushfstring(L, "tand.machine: %p (of a cluster)", (void *)m->cm);
        return 1;
    }
    lua_pushfstring(L, "tand.machine: %I (%s)", (lua_Integer)m->id, st);
    return 1;
}

static int m_eq(lua_State *L)
{
    lmachine *a = luaL_checkudata(L, 1, LTAND_MACHINE);
    lmachine *b = luaL_checkudata(L, 2, LTAND_MACHINE);
    lua_pushboolean(L, a->cm != NULL || b->cm != NULL ? a->cm == b->cm
                                                       : a->id == b->id);
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
    {"send_request", m_send_request},
    {"monitor", m_monitor},
    {"alive", m_alive},
    {"stop", m_stop},
    {"reload", m_reload},
    {"owner", m_owner},
    {"settimeout", m_settimeout},
    {"stats", m_stats},
    /* a supervisor's (lsupervise.c); they raise on any other server */
    {"which_children", ltand_sup_which_children},
    {"start_child", ltand_sup_start_child},
    {"terminate_child", ltand_sup_terminate_child},
    {"restart_child", ltand_sup_restart_child},
    {"delete_child", ltand_sup_delete_child},
    {"count_children", ltand_sup_count_children},
    {NULL, NULL}};

static const luaL_Reg machine_meta[] = {{"__gc", m_gc},
                                        {"__close", m_close},
                                        {"__tostring", m_tostring},
                                        {"__eq", m_eq},
                                        {NULL, NULL}};

void ltand_open_machine(lua_State *L)
{
    if (luaL_newmetatable(L, LTAND_MACHINE)) {
        luaL_setfuncs(L, machine_meta, 0);
        luaL_newlibtable(L, machine_methods);
        lua_pushvalue(L, -2); /* the methods' upvalues: see check_self */
        ltand_push_scratch(L); /* and call_in */
        luaL_setfuncs(L, machine_methods, 2);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
}
