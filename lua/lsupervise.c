/*
** lsupervise.c - tand.supervise: a supervisor of servers started from
** tand.start options tables.
**
** DESIGN: the supervisor starts and restarts its children on its own
** thread, with no Lua state: a child owns its start spec, freed through
** free_child when the supervisor is done with it. The children of one
** call share a sup_ctx (reference counted: the call's and one per child)
** whose error a child's failed start writes on the supervisor's thread;
** tand.supervise reads it only once tand_supervisor_start has returned,
** which waits for the first starts.
*/
#include "ltand.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a supervise call's children share: the reason the last one that
** failed to start gave, read by tand.supervise when the start fails. */
typedef struct sup_ctx {
    atomic_int refs;
    char error[2048];
} sup_ctx;

typedef struct sup_child {
    ltand_spec *spec;
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
    int rc = ltand_spec_start(rt, c->spec, name, out, detail, sizeof detail);
    if (rc != 0)
        snprintf(c->ctx->error, sizeof c->ctx->error, "child '%s': %s",
                 name, detail);
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
            o->max_restarts = (int)v;
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

int ltand_supervise(lua_State *L)
{
    tand_runtime *rt = ltand_runtime(L);
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
        ltand_spec *sp;
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
        if ((sp = ltand_spec_parse(L, 6)) == NULL) {
            lua_pushfstring(L, "child %d: %s", (int)i + 1,
                            lua_tostring(L, -1));
            rc = TAND_ECONFIG;
            goto fail;
        }
        if ((c = calloc(1, sizeof *c)) == NULL) {
            ltand_spec_free(sp);
            lua_pushliteral(L, "not enough memory");
            rc = TAND_ENOMEM;
            goto fail;
        }
        c->spec = sp;
        c->ctx = ctx;
        atomic_fetch_add(&ctx->refs, 1);
        kids[i].name = ltand_spec_name(sp);
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
