/*
** lrequest.c - calls that do not block a Lua thread: m:send_request
** returns a request (ready, wait, cancel), and tand.requests() makes a
** set that many calls share, with one descriptor for an event loop. Both
** speak cqueues' poll protocol (pollfd, events, timeout).
**
** DESIGN: a request and a set each own a reply box (tand_call_async in
** tand.h): the box's descriptor is what a loop polls, and the deadlines
** in it are the calls' own, each the handle's timeout from the send. A
** request or set belongs to the Lua state that made it, which runs on one
** thread at a time, the box's owner. Sending never waits and never runs
** the server on the sending thread: a full mailbox is nil, "busy" at once.
** Cancelling or closing one abandons what is still pending: a server
** skips a call it has not started and drops the reply of one it has, so
** no stale reply reaches anybody. The box itself, and so the descriptor a
** loop may still be polling, lives until __gc; cancelling makes it
** readable, so that a poller wakes and finds the request finished.
** A request keeps its reply once taken, so each wait answers the same. A
** set hands each reply out once; it is decoded in a space (lvalue.c), so
** a Lua error while decoding leaks nothing.
*/
#include "ltand.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LTAND_REQUEST "tand.request"
#define LTAND_REQUESTS "tand.requests"

enum { PENDING, DONE, CANCELLED };

typedef struct lrequest {
    tand_replies *box; /* freed by __gc */
    int state;
    tand_msg reply; /* once DONE; freed by __gc */
    int monitor;    /* a monitor: the reply is why its server ended */
    int64_t wait_ms; /* a monitor's wait without ms: the handle's timeout */
} lrequest;

typedef struct lrequests {
    tand_replies *box; /* freed by __gc */
    int closed;
    uint64_t last_id;  /* the id of the last call sent */
    ltand_scratch *scratch; /* the state's, for decoding */
    size_t monitors;   /* monitors pending; their ids are in the set's
                       ** user value, a table id -> true */
} lrequests;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for box within ms (TAND_FOREVER: none) until take() holds:
** tand_replies_wait may return early, when a deadline passes with its
** reply being written (then the reply comes a moment later). */
static int wait_until(tand_replies *box, int64_t ms, int (*take)(void *),
                      void *arg)
{
    int64_t until = ms == TAND_FOREVER ? INT64_MAX : now_ms() + ms, left;
    for (;;) {
        if (take(arg))
            return 1;
        if (until == INT64_MAX)
            left = TAND_FOREVER;
        else if ((left = until - now_ms()) < 0)
            return 0;
        tand_replies_wait(box, left);
        if (left == 0) /* the last look */
            return take(arg);
    }
}

/* Reads the optional wait at idx: ms, or TAND_FOREVER when absent. */
static int64_t wait_ms(lua_State *L, int idx)
{
    int64_t ms;
    if (lua_isnoneornil(L, idx))
        return TAND_FOREVER;
    if (ltand_timeout(L, idx, &ms) != 0)
        luaL_argerror(L, idx, "a wait is a whole number of ms >= 0");
    return ms;
}

/* What a loop should sleep at most for box, in seconds, or nil. */
static int push_timeout(lua_State *L, tand_replies *box)
{
    int64_t ms = box != NULL ? tand_replies_timeout_ms(box) : -1;
    if (ms < 0)
        lua_pushnil(L);
    else
        lua_pushnumber(L, (lua_Number)ms / 1000);
    return 1;
}

/* ---- a request ---- */

static lrequest *check_request(lua_State *L)
{
    return luaL_checkudata(L, 1, LTAND_REQUEST);
}

/* Takes the reply if it has come (or the deadline has passed). */
static int collect(void *arg)
{
    lrequest *r = arg;
    uint64_t tag;
    if (r->state != PENDING || !tand_replies_take(r->box, &tag, &r->reply))
        return r->state == DONE;
    r->state = DONE; /* the box stays, so a loop can still poll it */
    return 1;
}

/* Pushes what a finished request gives: a call's results, or the end
** reason of a monitor. */
static int push_answer(lua_State *L, const tand_msg *reply, int monitor)
{
    if (!monitor)
        return ltand_push_reply(L, reply);
    ltand_push_reason(L, reply->status, reply->data);
    return 1;
}

/* A new request at the top, cancelled until it has its box. */
static lrequest *new_request(lua_State *L)
{
    lrequest *r = lua_newuserdatauv(L, sizeof *r, 0);
    memset(r, 0, sizeof *r);
    r->state = CANCELLED;
    luaL_setmetatable(L, LTAND_REQUEST);
    return r;
}

int ltand_request_monitor(lua_State *L, tand_server *s, int64_t wait_ms)
{
    lrequest *r = new_request(L);
    int rc;
    r->monitor = 1;
    r->wait_ms = wait_ms;
    if ((rc = tand_replies_new(&r->box)) != 0)
        return ltand_fail(L, rc, NULL);
    if (s == NULL) { /* a handle to a server that had ended before */
        r->reply.status = TAND_ENOPROC;
        r->state = DONE;
        return 1;
    }
    if ((rc = tand_monitor_async(s, r->box, 1)) != 0)
        return ltand_fail(L, rc, NULL);
    r->state = PENDING;
    return 1;
}

int ltand_request_send(lua_State *L, ltand_scratch *sc, int midx, int mt,
                       int first)
{
    lrequest *r;
    int rc;
    midx = lua_absindex(L, midx);
    first = lua_absindex(L, first);
    r = new_request(L);
    if ((rc = tand_replies_new(&r->box)) != 0)
        return ltand_fail(L, rc, NULL);
    rc = ltand_machine_async(L, sc, midx, mt, first, lua_gettop(L) - 1,
                             r->box, NULL, NULL, NULL);
    if (rc != 0)
        return ltand_fail(L, rc, NULL); /* (the box goes with r) */
    r->state = PENDING;
    return 1;
}

/* Whether waiting would answer at once: done, or cancelled. */
static int r_ready(lua_State *L)
{
    lrequest *r = check_request(L);
    lua_pushboolean(L, r->state == CANCELLED || collect(r));
    return 1;
}

static int r_wait(lua_State *L)
{
    lrequest *r = check_request(L);
    int64_t ms = wait_ms(L, 2);
    if (r->state == CANCELLED)
        return ltand_fail(L, TAND_ECANCELED, NULL);
    if (r->monitor && lua_isnoneornil(L, 2))
        ms = r->wait_ms; /* a monitor has no deadline of its own */
    if (!wait_until(r->box, ms, collect, r))
        return ltand_fail(L, TAND_ETIMEDOUT,
                          r->monitor ? "not ended yet: the monitor is still "
                                       "pending"
                                     : "no reply yet: the request is still "
                                       "pending");
    return push_answer(L, &r->reply, r->monitor);
}

/* Gives the request up: true when it was pending (its server skips it if
** it has not started it), false when it had finished. */
static int r_cancel(lua_State *L)
{
    lrequest *r = check_request(L);
    int was = r->state == PENDING && !collect(r);
    if (was) {
        tand_replies_cancel(r->box);
        r->state = CANCELLED;
    }
    lua_pushboolean(L, was);
    return 1;
}

/* __close: as cancel; the reply of a finished request stays. */
static int r_close(lua_State *L)
{
    lrequest *r = luaL_checkudata(L, 1, LTAND_REQUEST);
    if (r->state == PENDING && !collect(r)) {
        tand_replies_cancel(r->box);
        r->state = CANCELLED;
    }
    return 0;
}

static int r_gc(lua_State *L)
{
    lrequest *r = lua_touserdata(L, 1);
    tand_replies_free(r->box);
    r->box = NULL;
    tand_msg_clear(&r->reply);
    return 0;
}

static int r_pollfd(lua_State *L)
{
    lua_pushinteger(L, tand_replies_fd(check_request(L)->box));
    return 1;
}

/* events() of a request and a set: a loop waits for reading. */
static int poll_events(lua_State *L)
{
    lua_pushliteral(L, "r");
    return 1;
}

static int r_timeout(lua_State *L)
{
    lrequest *r = check_request(L);
    if (r->state != PENDING || collect(r)) {
        lua_pushnumber(L, 0); /* ready now: waiting answers at once */
        return 1;
    }
    return push_timeout(L, r->box);
}

static int r_tostring(lua_State *L)
{
    static const char *const states[] = {"pending", "done", "cancelled"};
    lrequest *r = check_request(L);
    lua_pushfstring(L, "tand.request (%s)", states[r->state]);
    return 1;
}

static const luaL_Reg request_methods[] = {
    {"ready", r_ready},     {"wait", r_wait},     {"cancel", r_cancel},
    {"pollfd", r_pollfd},   {"events", poll_events}, {"timeout", r_timeout},
    {NULL, NULL}};

static const luaL_Reg request_meta[] = {{"__gc", r_gc},
                                        {"__close", r_close},
                                        {"__tostring", r_tostring},
                                        {NULL, NULL}};

/* ---- a set of requests ---- */

/* The set's methods hold the set metatable as their upvalue 1 and the
** machine metatable as their upvalue 2, so neither check looks a name
** up. */
static lrequests *check_set(lua_State *L)
{
    lrequests *set = lua_touserdata(L, 1);
    int same = 0;
    if (set != NULL && lua_getmetatable(L, 1)) {
        same = lua_rawequal(L, -1, lua_upvalueindex(1));
        lua_pop(L, 1);
    }
    if (!same)
        set = luaL_checkudata(L, 1, LTAND_REQUESTS);
    if (set->closed)
        luaL_error(L, "attempt to use a closed request set");
    return set;
}

static int set_new(lua_State *L)
{
    lrequests *set = lua_newuserdatauv(L, sizeof *set, 1);
    int rc;
    memset(set, 0, sizeof *set);
    luaL_setmetatable(L, LTAND_REQUESTS);
    lua_newtable(L); /* the ids of its monitors */
    lua_setiuservalue(L, -2, 1);
    set->scratch = ltand_scratch_of(L);
    if ((rc = tand_replies_new(&set->box)) != 0)
        return ltand_fail(L, rc, NULL);
    return 1;
}

/* set:call(m, op, ...): the id of the call sent, or nil, token, detail. */
static int s_call(lua_State *L)
{
    lrequests *set = check_set(L);
    int rc = ltand_machine_async(L, set->scratch, 2, lua_upvalueindex(2), 3,
                                 lua_gettop(L), set->box, NULL,
                                 &set->last_id, &set->closed);
    if (rc == TAND_ECANCELED) /* a finalizer closed it meanwhile */
        return luaL_error(L, "attempt to use a closed request set");
    if (rc != 0)
        return ltand_fail(L, rc, NULL);
    lua_pushinteger(L, (lua_Integer)set->last_id);
    return 1;
}

/* set:monitor(m): the id under which the end of m's server comes, its
** reply the reason. */
static int s_monitor(lua_State *L)
{
    lrequests *set = check_set(L);
    lmachine *m = ltand_check_machine(L, 2, lua_upvalueindex(2));
    uint64_t id = set->last_id + 1;
    int rc;
    lua_getiuservalue(L, 1, 1); /* first the room in the table */
    lua_pushboolean(L, 1);
    lua_rawseti(L, -2, (lua_Integer)id);
    rc = m->s != NULL ? tand_monitor_async(m->s, set->box, id)
                      : TAND_ENOPROC;
    if (rc != 0) {
        lua_pushnil(L);
        lua_rawseti(L, -2, (lua_Integer)id);
        return ltand_fail(L, rc, m->s == NULL ? "the server had ended" : NULL);
    }
    set->last_id = id;
    set->monitors++;
    lua_pushinteger(L, (lua_Integer)id);
    return 1;
}

/* Whether a reply waits in the set's box (for wait_until). */
static int has_reply(void *arg)
{
    lrequests *set = arg;
    return tand_replies_wait(set->box, 0) == 0;
}

/* Pushes the next finished call's id and its reply, or returns 0. */
static int take(lua_State *L, lrequests *set)
{
    uint64_t id;
    ltand_space *sp = ltand_space_take(L, set->scratch);
    tand_msg *reply = ltand_space_reply(sp);
    int n;
    int monitor = 0;
    if (!tand_replies_take(set->box, &id, reply)) {
        ltand_space_give(set->scratch, sp);
        lua_pop(L, 1);
        return 0;
    }
    if (set->monitors > 0) { /* is it one of them? */
        lua_getiuservalue(L, 1, 1);
        if (lua_rawgeti(L, -1, (lua_Integer)id) != LUA_TNIL) {
            monitor = 1;
            set->monitors--;
            lua_pushnil(L);
            lua_rawseti(L, -3, (lua_Integer)id);
        }
        lua_pop(L, 2);
    }
    lua_pushinteger(L, (lua_Integer)id);
    n = push_answer(L, reply, monitor);
    ltand_space_give(set->scratch, sp);
    return n + 1; /* above the space's slot, which the return leaves */
}

static int s_wait(lua_State *L)
{
    lrequests *set = check_set(L);
    int64_t ms = wait_ms(L, 2);
    int n;
    if (tand_replies_count(set->box) == 0)
        return ltand_fail(L, TAND_EEMPTY_SET, NULL);
    for (;;) {
        if ((n = take(L, set)) != 0)
            return n;
        if (!wait_until(set->box, ms, has_reply, set))
            return ltand_fail(L, TAND_ETIMEDOUT, "no reply yet");
    }
}

static int s_poll(lua_State *L)
{
    lrequests *set = check_set(L);
    int n = take(L, set);
    if (n == 0)
        lua_pushnil(L);
    return n != 0 ? n : 1;
}

static int s_count(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)tand_replies_count(check_set(L)->box));
    return 1;
}

static int s_fd(lua_State *L)
{
    lua_pushinteger(L, tand_replies_fd(check_set(L)->box));
    return 1;
}

static int s_timeout(lua_State *L)
{
    return push_timeout(L, check_set(L)->box);
}

/* Closes the set: what is pending is cancelled; its descriptor stays
** valid until __gc. Closing twice is fine. */
static int s_close(lua_State *L)
{
    lrequests *set = luaL_checkudata(L, 1, LTAND_REQUESTS);
    if (!set->closed)
        tand_replies_cancel(set->box);
    set->closed = 1;
    return 0;
}

static int s_gc(lua_State *L)
{
    lrequests *set = lua_touserdata(L, 1);
    tand_replies_free(set->box);
    set->box = NULL;
    return 0;
}

static int s_tostring(lua_State *L)
{
    lrequests *set = luaL_checkudata(L, 1, LTAND_REQUESTS);
    if (set->closed)
        lua_pushliteral(L, "tand.requests (closed)");
    else
        lua_pushfstring(L, "tand.requests (%I pending)",
                        (lua_Integer)tand_replies_count(set->box));
    return 1;
}

static const luaL_Reg set_methods[] = {
    {"call", s_call},     {"monitor", s_monitor},
    {"wait", s_wait},     {"poll", s_poll},
    {"count", s_count},   {"fd", s_fd},         {"pollfd", s_fd},
    {"events", poll_events}, {"timeout", s_timeout}, {"close", s_close},
    {NULL, NULL}};

static const luaL_Reg set_meta[] = {{"__gc", s_gc},
                                    {"__close", s_close},
                                    {"__tostring", s_tostring},
                                    {NULL, NULL}};

/* Makes the metatable `name`; with upvalues, its methods hold it and
** the machine metatable (see check_set). */
static void new_class(lua_State *L, const char *name, const luaL_Reg *meta,
                      const luaL_Reg *methods, int upvalues)
{
    if (luaL_newmetatable(L, name)) {
        luaL_setfuncs(L, meta, 0);
        lua_newtable(L);
        if (upvalues) {
            lua_pushvalue(L, -2);
            luaL_getmetatable(L, LTAND_MACHINE);
            luaL_setfuncs(L, methods, 2);
        } else {
            luaL_setfuncs(L, methods, 0);
        }
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
}

void ltand_open_requests(lua_State *L)
{
    new_class(L, LTAND_REQUEST, request_meta, request_methods, 0);
    new_class(L, LTAND_REQUESTS, set_meta, set_methods, 1);
}

int ltand_requests(lua_State *L)
{
    return set_new(L);
}
