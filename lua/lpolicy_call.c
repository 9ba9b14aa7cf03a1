/*
** lpolicy_call.c - a policy server's messages in: each call, cast and
** info becomes its callback's arguments (the request table, a `from`, the
** state, the machine), runs under the callback deadline, and its results
** become the reply; an error crashes the server as in OTP. Ops listed in
** P.passthrough and callbacks the policy leaves out get the machine's
** built-in answer (tand_tickets_handle), in C: nothing runs in the
** policy's state then, not even a finalizer outside a deadline.
**
** DESIGN: everything a callback run allocates in the policy's state (the
** request table, the `from` object, a decoded message, the saved state)
** happens inside the protected call, so running out of memory_limit there
** is an error, never a panic of the whole process. Before the callback
** runs it costs only the message: a call gets out_of_memory, a cast or an
** info is dropped, and the policy's state is untouched; once it runs it
** is a crash, as for any error in a callback.
*/
#include "lpolicy.h"

#include <stdio.h>
#include <string.h>

/* Pushes the policy's callback `which` (CB_*) and returns 1, or pushes
** nothing and returns 0 when the policy has none. [-0, +(0|1), -] */
static int get_callback(policy *p, int which)
{
    if (p->code.ref_callback[which] == LUA_NOREF)
        return 0;
    lua_rawgeti(p->L, LUA_REGISTRYINDEX, p->code.ref_callback[which]);
    return 1;
}

/* Whether msg's data begins with an array, as a request does (a map
** {1 = op} would decode to the same Lua table). */
static int is_array(const tand_msg *msg)
{
    tand_reader rd;
    tand_item it;
    tand_reader_init(&rd, msg->data, msg->size);
    return tand_unpack(&rd, &it) == 0 && it.type == TAND_T_ARRAY;
}

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
    if (msg->op != TAND_OP_ENCODED || !is_array(msg) ||
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

int lpolicy_error_reply(lua_State *L, int first, int n, tand_msg *reply)
{
    int code;
    const char *d = NULL;
    if (n < 2 || !lua_isnil(L, first) ||
        lua_type(L, first + 1) != LUA_TSTRING ||
        (code = token_code(lua_tostring(L, first + 1))) == 0)
        return 0;
    if (n >= 3 && lua_type(L, first + 2) == LUA_TSTRING)
        d = lua_tostring(L, first + 2);
    else if (n >= 3 && !lua_isnil(L, first + 2))
        return 0; /* a detail that is not text: a list of values */
    reply->status = code;
    if (d != NULL)
        tand_msg_set_text(reply, d, strlen(d));
    return 1;
}

/* Turns the n results at `first` into the reply. A fast-path request
** (an op code) answered with one integer gets the integer fields, so C
** callers read them as from the built-in machine. A reply nil, token
** [, detail] with one of tand's tokens is a failure, as the built-in
** machines answer one: its status is the token's code (for a fast-path
** request whatever follows the token; for an encoded one only with at
** most a text detail). Anything else travels as a MessagePack list. */
static void set_reply(lua_State *L, int first, int n, int fast,
                      tand_msg *reply)
{
    if (fast && n == 1 && lua_isinteger(L, first)) {
        reply->ival[0] = (int64_t)lua_tointeger(L, first);
        return;
    }
    if ((fast ? n >= 2 : n == 2 || n == 3) && lpolicy_error_reply(L, first,
                                                               n, reply))
        return;
    if (ltand_encode_once(L, policy_of(L)->scratch, first, n, 1, reply) != 0) {
        const char *why = lua_tostring(L, -1);
        char text[256];
        snprintf(text, sizeof text, "the reply cannot be sent: %s",
                 why ? why : "?");
        reply->status = TAND_EBADVALUE;
        tand_msg_set_text(reply, text, strlen(text));
    }
}

void lpolicy_crash(policy *p, tand_msg *reply)
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

/* Pushes the info {"reply", id, ...} of a request's reply: its values,
** or nil, token, detail. [-0, +1, e] */
static void push_answer(lua_State *L, const cb_run *r)
{
    int top = lua_gettop(L), n, i;
    lua_createtable(L, 4, 0);
    lua_pushliteral(L, "reply");
    lua_rawseti(L, -2, 1);
    lua_pushinteger(L, (lua_Integer)r->request);
    lua_rawseti(L, -2, 2);
    n = ltand_push_reply(L, r->answer);
    for (i = n; i >= 1; i--)
        lua_rawseti(L, top + 1, 2 + i);
}

/* Pushes the info {"DOWN", ref, reason} of a monitor's notice.
** [-0, +1, m] */
static void push_down(lua_State *L, const tand_msg *down)
{
    lua_createtable(L, 3, 0);
    lua_pushliteral(L, "DOWN");
    lua_rawseti(L, -2, 1);
    lua_pushinteger(L, (lua_Integer)down->ival[0]);
    lua_rawseti(L, -2, 2);
    ltand_push_reason(L, (int)down->ival[1], down->data);
    lua_rawseti(L, -2, 3);
}

/* Whether a DOWN notice is of a monitor still wanted (not cancelled),
** which it then ends. [-0, +0, m] */
static int down_wanted(policy *p, const tand_msg *down)
{
    lua_State *L = p->L;
    int wanted;
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref_monitors);
    wanted = lua_rawgeti(L, -1, (lua_Integer)down->ival[0]) != LUA_TNIL;
    lua_pop(L, 1);
    if (wanted) {
        lua_pushnil(L);
        lua_rawseti(L, -2, (lua_Integer)down->ival[0]);
    }
    lua_pop(L, 1);
    return wanted;
}

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
        case CB_INFO:
            if (r->answer != NULL) {
                push_answer(L, r);
                nargs = 1;
                break;
            }
            if (r->down != NULL) {
                push_down(L, r->down);
                nargs = 1;
                break;
            }
            /* FALLTHROUGH */
        case CB_INIT:
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
    if (r->which != CB_TERMINATE && lpolicy_save_state(p) != 0) {
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
int lpolicy_run_callback(cb_run *r)
{
    lua_State *L = r->p->L;
    lua_pushcfunction(L, ltand_traceback);
    lua_pushcfunction(L, callback_protected);
    lua_pushlightuserdata(L, r);
    return invoke(r->p, 1, 0);
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

/* The machine's own answer to a call (the policy has no handle_call, or
** passes the op through), as a built-in deluxe server gives it: in C,
** so no code of the policy's state (a finalizer) runs outside a
** callback's deadline. */
/* The policy's auto shutdown as tand_tickets_handle reads it (the
** options' encoding: an idle time of 0 is TAND_SHUTDOWN_AT_ONCE). */
static int64_t shutdown_option(const policy *p)
{
    return p->auto_shutdown_ms == 0 ? TAND_SHUTDOWN_AT_ONCE
                                    : p->auto_shutdown_ms;
}

static void default_call(policy *p, const tand_msg *req, tand_msg *reply)
{
    tand_tickets_handle(p->tickets, p->journal, shutdown_option(p), req,
                        reply);
}

/* Tells whether msg's op is one P.passthrough lists: an op code, or an
** encoded request {op, args...} whose op names one. */
static int passes_through(const policy *p, const tand_msg *msg)
{
    tand_reader rd;
    tand_item it;
    if (p->code.passthrough == 0)
        return 0;
    if (msg->op != TAND_OP_ENCODED)
        return msg->op > 0 && msg->op <= TAND_OP_RESET_STATE &&
               (p->code.passthrough & (1u << msg->op)) != 0;
    tand_reader_init(&rd, msg->data, msg->size);
    if (tand_unpack(&rd, &it) != 0 || it.type != TAND_T_ARRAY ||
        it.v.n == 0 || tand_unpack(&rd, &it) != 0 || it.type != TAND_T_STR)
        return 0;
    /* (an unknown name is op 0, whose bit is never set) */
    return (p->code.passthrough & (1u << lpolicy_builtin_op(it.v.s.p, it.v.s.len))) !=
           0;
}

int lpolicy_call(void *state, tand_server *self, tand_msg *req,
                       tand_from *from, tand_msg *reply)
{
    policy *p = state;
    lua_State *L = p->L;
    int base = lua_gettop(L), rc, replied;
    cb_run r = {0};
    (void)self;

    if (req->op == TAND_OP_RELOAD) {
        lpolicy_reload(p, req, reply);
        return 0;
    }
    if (p->code.ref_callback[CB_CALL] == LUA_NOREF || passes_through(p, req)) {
        default_call(p, req, reply);
        return 0;
    }
    r.p = p;
    r.which = CB_CALL;
    r.msg = req;
    r.from = from;
    r.reply = reply;
    rc = lpolicy_run_callback(&r);
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
            lpolicy_crash(p, NULL);
            rc = TAND_NOREPLY;
        } else {
            tand_msg_clear(reply);
            lpolicy_crash(p, reply);
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

/* The machine's own answer to a cast: reset_state resets, anything else
** is ignored. */
static void default_cast(policy *p, const tand_msg *msg)
{
    tand_tickets_handle(p->tickets, p->journal, shutdown_option(p), msg,
                        NULL);
}

void lpolicy_cast(void *state, tand_server *self, tand_msg *msg)
{
    policy *p = state;
    lua_State *L = p->L;
    int base = lua_gettop(L);
    cb_run r = {0};
    (void)self;
    if (p->code.ref_callback[CB_CAST] == LUA_NOREF || passes_through(p, msg)) {
        default_cast(p, msg);
        return;
    }
    r.p = p;
    r.which = CB_CAST;
    r.msg = msg;
    if (lpolicy_run_callback(&r) != LUA_OK && r.called)
        lpolicy_crash(p, NULL); /* (a cast too big for memory_limit is dropped) */
    lua_settop(L, base);
    if (r.bad_request)
        default_cast(p, msg);
}

/* Runs handle_info with what r says (set up but for p and which); an
** info without handle_info is ignored, like the built-in machine's. */
static void run_info(policy *p, cb_run *r)
{
    lua_State *L = p->L;
    int base = lua_gettop(L);
    if (p->code.ref_callback[CB_INFO] == LUA_NOREF)
        return;
    r->p = p;
    r->which = CB_INFO;
    if (lpolicy_run_callback(r) != LUA_OK && r->called)
        lpolicy_crash(p, NULL); /* (one too big for memory_limit is dropped) */
    lua_settop(L, base);
}

void lpolicy_info(void *state, tand_server *self, tand_msg *msg)
{
    policy *p = state;
    cb_run r = {0};
    (void)self;
    if (msg->op == TAND_OP_DOWN) {
        if (!down_wanted(p, msg))
            return; /* a monitor cancelled */
        r.down = msg;
    } else {
        r.data = msg->data;
        r.size = msg->size;
    }
    run_info(p, &r);
}

void lpolicy_reply(void *state, tand_server *self, uint64_t tag,
                   tand_msg *reply)
{
    cb_run r = {0};
    (void)self;
    r.answer = reply;
    r.request = tag;
    run_info(state, &r);
}

void lpolicy_terminate(void *state, tand_server *self, int reason,
                             const char *detail)
{
    policy *p = state;
    cb_run r = {0};
    (void)self;
    if (p == NULL)
        return;
    lua_settop(p->L, 0);
    /* A callback past its deadline ends the state: no terminate runs. */
    if (p->code.ref_policy != LUA_NOREF && !atomic_load(&p->watch.expired) &&
        p->code.ref_callback[CB_TERMINATE] != LUA_NOREF) {
        r.p = p;
        r.which = CB_TERMINATE;
        r.reason = detail != NULL ? detail
                   : reason == 0  ? "normal"
                                  : tand_errname(reason);
        lpolicy_run_callback(&r); /* an error here changes nothing any more */
    }
    lpolicy_free(p);
}
