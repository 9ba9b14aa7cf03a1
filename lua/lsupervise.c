/*
** lsupervise.c - tand.supervise: a supervisor of servers started from
** tand.start options tables, and the supervisor handle's methods
** (sup:which_children, start_child, terminate_child, restart_child,
** delete_child, count_children), on the machine handle's method table.
**
** DESIGN: the supervisor starts and restarts its children on its own
** thread, with no Lua state: a child owns its start spec, freed through
** free_child when the supervisor is done with it. The children of one
** tand.supervise call (or the one of a start_child) share a sup_ctx
** (reference counted: the call's and one per child) into which a failed
** start puts its reason on the supervisor's thread, as a string swapped
** in atomically; the call takes it out the same way once the start has
** failed, so a late writer (after the caller's deadline) never races a
** reader.
*/
#include "ltand.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the children of one call share: the reason the last one that
** failed to start gave (malloc'ed), or NULL. */
typedef struct sup_ctx {
    atomic_int refs;
    _Atomic(char *) error;
} sup_ctx;

typedef struct sup_child {
    ltand_spec *spec;
    sup_ctx *ctx;
} sup_child;

static sup_ctx *ctx_new(void)
{
    sup_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx != NULL) {
        atomic_init(&ctx->refs, 1);
        atomic_init(&ctx->error, NULL);
    }
    return ctx;
}

static void ctx_release(sup_ctx *ctx)
{
    if (ctx != NULL && atomic_fetch_sub(&ctx->refs, 1) == 1) {
        free(atomic_load(&ctx->error));
        free(ctx);
    }
}

/* Takes the reason out of ctx (the caller frees it), or NULL. */
static char *ctx_take_error(sup_ctx *ctx)
{
    return atomic_exchange(&ctx->error, NULL);
}

static int start_child(tand_runtime *rt, const char *name, void *arg,
                       tand_server **out)
{
    sup_child *c = arg;
    char detail[1024], text[1400];
    int rc = ltand_spec_start(rt, c->spec, name, out, detail, sizeof detail);
    if (rc != 0) {
        snprintf(text, sizeof text, "child '%s': %s", name, detail);
        free(atomic_exchange(&c->ctx->error, strdup(text)));
    }
    return rc;
}

static void free_child(void *arg)
{
    sup_child *c = arg;
    ltand_spec_free(c->spec);
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
            return ltand_bad_config(L,
                                    "supervisor flags have string keys (got "
                                    "a %s)",
                                    luaL_typename(L, -2));
        if (strcmp(k, "strategy") == 0) {
            if (lua_type(L, -1) != LUA_TSTRING ||
                (o->strategy = option_index(lua_tostring(L, -1),
                                            strategies)) < 0)
                return ltand_bad_config(L,
                                        "%s must be one_for_one, one_for_all "
                                        "or rest_for_one",
                                        k);
        } else if (strcmp(k, "max_restarts") == 0) {
            if (ltand_get_integer(L, -1, &v) != 0 || v < 0 || v > 1000000)
                return ltand_bad_config(L, "%s must be an integer >= 0", k);
            /* 0 in C is the default: none is its own constant */
            o->max_restarts = v == 0 ? TAND_NO_RESTARTS : (int)v;
        } else if (strcmp(k, "max_seconds") == 0) {
            if (ltand_get_integer(L, -1, &v) != 0 || v <= 0 || v > 1000000000)
                return ltand_bad_config(L, "%s must be an integer > 0", k);
            o->max_seconds = v;
        } else if (strcmp(k, "name") == 0) {
            if (!ltand_is_name(L, -1))
                return ltand_bad_config(L,
                                        "%s must be a string of 1 to 255 "
                                        "bytes without NUL",
                                        k);
            o->name = lua_tostring(L, -1); /* anchored in the flags */
        } else {
            return ltand_bad_config(L, "unknown supervisor flag '%s'", k);
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* Reads the child spec at idx (a tand.start options table with a name
** and optionally restart) into *out, its arg a new sup_child sharing ctx.
** `what` names the spec in messages ("child 2"). 0, or a TAND_E* code
** with the detail pushed. Used by tand.supervise and sup:start_child
** alike. [-0, +(0|1), m] */
static int parse_child(lua_State *L, int idx, const char *what, sup_ctx *ctx,
                       tand_child_spec *out)
{
    int top = lua_gettop(L), opts, rc, restart = TAND_PERMANENT;
    ltand_spec *sp;
    sup_child *c;

    idx = lua_absindex(L, idx);
    memset(out, 0, sizeof *out);
    if (lua_type(L, idx) != LUA_TTABLE ||
        lua_getfield(L, idx, "name") != LUA_TSTRING) {
        lua_settop(L, top);
        lua_pushfstring(L, "%s must be a tand.start options table with a "
                           "name",
                        what);
        return TAND_ECONFIG;
    }
    lua_pop(L, 1);
    /* its options without `restart`, which is the supervisor's */
    lua_newtable(L);
    opts = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (lua_type(L, -2) == LUA_TSTRING &&
            strcmp(lua_tostring(L, -2), "restart") == 0) {
            if (lua_type(L, -1) != LUA_TSTRING ||
                (restart = option_index(lua_tostring(L, -1), restarts)) < 0) {
                lua_settop(L, top);
                lua_pushfstring(L, "%s: restart must be permanent, "
                                   "transient or temporary",
                                what);
                return TAND_ECONFIG;
            }
            lua_pop(L, 1);
            continue;
        }
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, opts);
    }
    if ((sp = ltand_spec_parse(L, opts)) == NULL) { /* nil, token, detail */
        rc = tand_errcode(lua_tostring(L, -2));
        lua_pushfstring(L, "%s: %s", what, lua_tostring(L, -1));
        lua_replace(L, top + 1);
        lua_settop(L, top + 1);
        return rc < 0 ? rc : TAND_ECONFIG;
    }
    lua_settop(L, top);
    if ((c = calloc(1, sizeof *c)) == NULL) {
        ltand_spec_free(sp);
        lua_pushliteral(L, "not enough memory");
        return TAND_ENOMEM;
    }
    c->spec = sp;
    c->ctx = ctx;
    atomic_fetch_add(&ctx->refs, 1);
    out->name = ltand_spec_name(sp);
    out->restart = restart;
    out->start = start_child;
    out->arg = c;
    out->free_arg = free_child;
    return 0;
}

int ltand_supervise(lua_State *L)
{
    tand_runtime *rt = ltand_runtime(L);
    tand_supervisor_options o;
    tand_child_spec *kids;
    tand_server *sup;
    sup_ctx *ctx;
    lmachine *m;
    size_t n, i;
    char *error;
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
    ctx = ctx_new();
    if (kids == NULL || ctx == NULL) {
        free(kids);
        ctx_release(ctx);
        return ltand_fail(L, TAND_ENOMEM, NULL);
    }
    for (i = 0; i < n; i++) {
        char what[32];
        lua_settop(L, 3);
        lua_rawgeti(L, 2, (lua_Integer)i + 1); /* 4 */
        snprintf(what, sizeof what, "child %d", (int)i + 1);
        if ((rc = parse_child(L, 4, what, ctx, &kids[i])) != 0)
            goto fail;
    }
    lua_settop(L, 3);
    rc = tand_supervisor_start(rt, &o, kids, n, &sup); /* frees the args */
    free(kids);
    if (rc != 0) {
        error = ctx_take_error(ctx);
        lua_pushstring(L, error ? error : tand_strerror(rc));
        free(error);
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

/* ---- the supervisor handle's methods ----
** Registered on the machine handle's method table (lmachine.c), so they
** hold its upvalues: the machine metatable is upvalue 1. */

/* The supervisor of the handle at 1, its timeout into *timeout; NULL for
** a handle whose server had ended before it was made. Raises for what is
** not a machine handle, or one whose server is not a supervisor.
** [-0, +0, v] */
static tand_server *check_sup(lua_State *L, int64_t *timeout)
{
    lmachine *m = ltand_check_machine(L, 1, lua_upvalueindex(1));
    if (m->s != NULL && !tand_server_is_supervisor(m->s))
        luaL_argerror(L, 1, "not a supervisor");
    *timeout = ltand_timeout_of(m);
    return m->s;
}

/* The child name at idx, or raises. [-0, +0, v] */
static const char *check_name(lua_State *L, int idx)
{
    if (!ltand_is_name(L, idx))
        luaL_argerror(L, idx, "a child's name: a string of 1 to 255 bytes "
                              "without NUL");
    return lua_tostring(L, idx);
}

/* Makes the machine handle at idx (made closed) a handle of s, which it
** takes over, as found under name. [-0, +0, m] */
static void adopt(lua_State *L, int idx, tand_server *s, const char *name)
{
    lmachine *h = lua_touserdata(L, idx);
    h->s = s;
    h->id = tand_server_id(s);
    if ((h->server_name = strdup(name)) == NULL)
        luaL_error(L, "not enough memory"); /* h owns s: no leak */
}

static int ok_or_fail(lua_State *L, int rc)
{
    if (rc != 0)
        return ltand_fail(L, rc, NULL);
    lua_pushboolean(L, 1);
    return 1;
}

/* sup:which_children(): a list, in start order, of {name=, alive=,
** restarts=, restart=}. */
int ltand_sup_which_children(lua_State *L)
{
    int64_t timeout;
    tand_server *s = check_sup(L, &timeout);
    tand_child_info *list = NULL;
    size_t cap = 0, n = 0, i;
    int rc;
    if (s == NULL)
        return ltand_fail(L, TAND_ENOPROC, NULL);
    for (;;) { /* children may come between two looks: until it fits */
        rc = tand_supervisor_which_children(s, list, cap, &n, timeout);
        if (rc != 0)
            return ltand_fail(L, rc, NULL);
        if (n <= cap)
            break;
        cap = n + 8;
        lua_settop(L, 1);
        list = lua_newuserdatauv(L, cap * sizeof *list, 0); /* 2 */
    }
    lua_createtable(L, (int)n, 0);
    for (i = 0; i < n; i++) {
        lua_createtable(L, 0, 4);
        lua_pushstring(L, list[i].name);
        lua_setfield(L, -2, "name");
        lua_pushboolean(L, list[i].alive);
        lua_setfield(L, -2, "alive");
        lua_pushinteger(L, (lua_Integer)list[i].restarts);
        lua_setfield(L, -2, "restarts");
        lua_pushstring(L, restarts[list[i].restart]);
        lua_setfield(L, -2, "restart");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* sup:start_child(spec): a handle to the new child, or nil, token,
** detail. */
int ltand_sup_start_child(lua_State *L)
{
    int64_t timeout;
    tand_server *s = check_sup(L, &timeout), *child;
    char name[TAND_NAME_MAX + 1];
    tand_child_spec spec;
    sup_ctx *ctx;
    char *error;
    int rc;

    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    if (s == NULL)
        return ltand_fail(L, TAND_ENOPROC, NULL);
    ltand_push_machine(L, NULL, 0); /* 3: the handle, closed for now */
    if ((ctx = ctx_new()) == NULL)
        return ltand_fail(L, TAND_ENOMEM, NULL);
    if ((rc = parse_child(L, 2, "the child", ctx, &spec)) != 0) {
        ctx_release(ctx);
        return ltand_fail(L, rc, lua_tostring(L, -1));
    }
    snprintf(name, sizeof name, "%s", spec.name); /* spec goes to sup */
    rc = tand_supervisor_start_child(s, &spec, &child, timeout);
    if (rc != 0) {
        error = ctx_take_error(ctx);
        ctx_release(ctx);
        lua_pushstring(L, error ? error : tand_strerror(rc));
        free(error);
        return ltand_fail(L, rc, lua_tostring(L, -1));
    }
    ctx_release(ctx);
    adopt(L, 3, child, name);
    lua_settop(L, 3);
    return 1;
}

/* sup:terminate_child(name): true, or nil, token. */
int ltand_sup_terminate_child(lua_State *L)
{
    int64_t timeout;
    tand_server *s = check_sup(L, &timeout);
    const char *name = check_name(L, 2);
    if (s == NULL)
        return ltand_fail(L, TAND_ENOPROC, NULL);
    return ok_or_fail(L, tand_supervisor_terminate_child(s, name, timeout));
}

/* sup:restart_child(name): a handle to the new incarnation, or nil,
** token, detail. */
int ltand_sup_restart_child(lua_State *L)
{
    int64_t timeout;
    tand_server *s = check_sup(L, &timeout), *child;
    const char *name = check_name(L, 2);
    int rc;
    lua_settop(L, 2);
    if (s == NULL)
        return ltand_fail(L, TAND_ENOPROC, NULL);
    ltand_push_machine(L, NULL, 0); /* 3 */
    rc = tand_supervisor_restart_child(s, name, &child, timeout);
    if (rc != 0)
        return ltand_fail(L, rc, NULL);
    adopt(L, 3, child, name);
    return 1;
}

/* sup:delete_child(name): true, or nil, token. */
int ltand_sup_delete_child(lua_State *L)
{
    int64_t timeout;
    tand_server *s = check_sup(L, &timeout);
    const char *name = check_name(L, 2);
    if (s == NULL)
        return ltand_fail(L, TAND_ENOPROC, NULL);
    return ok_or_fail(L, tand_supervisor_delete_child(s, name, timeout));
}

/* sup:count_children(): {specs=, active=, supervisors=, workers=}. */
int ltand_sup_count_children(lua_State *L)
{
    int64_t timeout;
    tand_server *s = check_sup(L, &timeout);
    tand_child_counts k;
    int rc;
    if (s == NULL)
        return ltand_fail(L, TAND_ENOPROC, NULL);
    if ((rc = tand_supervisor_count_children(s, &k, timeout)) != 0)
        return ltand_fail(L, rc, NULL);
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, (lua_Integer)k.specs);
    lua_setfield(L, -2, "specs");
    lua_pushinteger(L, (lua_Integer)k.active);
    lua_setfield(L, -2, "active");
    lua_pushinteger(L, (lua_Integer)k.supervisors);
    lua_setfield(L, -2, "supervisors");
    lua_pushinteger(L, (lua_Integer)k.workers);
    lua_setfield(L, -2, "workers");
    return 1;
}
