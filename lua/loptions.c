/*
** loptions.c - tand.start: its options table read into a start spec, and
** servers started from a spec.
**
** DESIGN: a spec is read on the caller's thread, from its Lua state, and
** then owns copies of all it needs (the name, the journal's path, the
** prepared policy), so that it starts a server again from any thread with
** no Lua state: a supervisor keeps one per child and restarts from it.
*/
#include "ltand.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int ltand_bad_config(lua_State *L, const char *fmt, const char *key)
{
    lua_pushfstring(L, fmt, key);
    return ltand_fail(L, TAND_ECONFIG, lua_tostring(L, -1));
}

int ltand_get_integer(lua_State *L, int idx, int64_t *out)
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
        return ltand_bad_config(L, "option keys are strings (got a %s)",
                                luaL_typename(L, -2));
    k = lua_tostring(L, -2);
    if (strcmp(k, "min_number") == 0 || strcmp(k, "max_number") == 0) {
        int64_t v;
        if (ltand_get_integer(L, -1, &v) != 0)
            return ltand_bad_config(L, "%s must be an integer", k);
        if (k[1] == 'i') {
            o->min_number = v;
            o->has_min = 1;
        } else {
            o->max_number = v;
            o->has_max = 1;
        }
    } else if (strcmp(k, "initial_number") == 0) {
        if (ltand_get_integer(L, -1, &o->initial_number) != 0)
            return ltand_bad_config(L, "%s must be an integer", k);
        o->has_initial = 1;
    } else if (strcmp(k, "auto_shutdown_timeout") == 0) {
        if (ltand_timeout(L, -1, &o->auto_ms) != 0)
            return ltand_bad_config(L,
                                    "%s must be a whole number of ms >= 0, "
                                    "or math.huge",
                                    k);
        o->has_auto = 1;
    } else if (strcmp(k, "call_timeout") == 0) {
        if (ltand_timeout(L, -1, &o->call_timeout) != 0)
            return ltand_bad_config(L,
                                    "%s must be a whole number of ms >= 0, "
                                    "or math.huge",
                                    k);
    } else if (strcmp(k, "mailbox") == 0) {
        int64_t v;
        if (ltand_get_integer(L, -1, &v) != 0 || v < 1 || v > TAND_MAILBOX_MAX)
            return ltand_bad_config(
                L, "%s must be an integer from 1 to 16777216", k);
        o->mailbox = (size_t)v;
    } else if (strcmp(k, "policy") == 0) {
        o->has_policy = 1; /* read by ltand_policy_prepare */
    } else if (strcmp(k, "callback_timeout") == 0) {
        if (ltand_timeout(L, -1, &o->callback_ms) != 0 ||
            o->callback_ms == 0)
            return ltand_bad_config(L,
                                    "%s must be a whole number of ms > 0, "
                                    "or math.huge",
                                    k);
        o->has_policy_option = 1;
    } else if (strcmp(k, "memory_limit") == 0) {
        int64_t v;
        if (ltand_get_integer(L, -1, &v) != 0 || v <= 0)
            return ltand_bad_config(L, "%s must be a number of bytes > 0", k);
        o->memory_limit = (size_t)v;
        o->has_policy_option = 1;
    } else if (strcmp(k, "sandbox") == 0) {
        if (lua_type(L, -1) != LUA_TBOOLEAN)
            return ltand_bad_config(L, "%s must be true or false", k);
        o->sandbox = lua_toboolean(L, -1);
        o->has_policy_option = 1;
    } else if (strcmp(k, "journal") == 0) {
        size_t len;
        if (lua_type(L, -1) != LUA_TSTRING)
            return ltand_bad_config(L, "%s must be the path of a file", k);
        o->journal = lua_tolstring(L, -1, &len);
        if (len == 0 || strlen(o->journal) != len)
            return ltand_bad_config(L, "%s must be the path of a file", k);
    } else if (strcmp(k, "durability") == 0) {
        const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                        : "";
        if (strcmp(v, "full") == 0)
            o->durability = TAND_DURABLE_FULL;
        else if (strcmp(v, "os") == 0)
            o->durability = TAND_DURABLE_OS;
        else
            return ltand_bad_config(L, "%s must be \"full\" or \"os\"", k);
        o->has_durability = 1;
    } else if (strcmp(k, "name") == 0) {
        if (!ltand_is_name(L, -1))
            return ltand_bad_config(L,
                                    "%s must be a string of 1 to 255 bytes "
                                    "without NUL",
                                    k);
        o->name = lua_tostring(L, -1); /* anchored in the options table */
    } else {
        return ltand_bad_config(L, "unknown option '%s'", k);
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

const char *ltand_spec_name(const lspec *sp)
{
    return sp->name;
}

const char *ltand_spec_kind(const lspec *sp)
{
    return sp->kind == KIND_POLICY    ? "policy"
           : sp->kind == KIND_DELUXE ? "deluxe"
                                      : "counter";
}

int ltand_spec_has_journal(const lspec *sp)
{
    return sp->journal != NULL;
}

void ltand_spec_free(lspec *sp)
{
    if (sp != NULL) {
        ltand_policy_free(sp->policy);
        free(sp->name);
        free(sp->journal);
        free(sp);
    }
}

lspec *ltand_spec_parse(lua_State *L, int idx)
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
        if (ltand_get_integer(L, idx, &o.initial_number) != 0)
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
        ltand_bad_config(L,
                         "tand.start takes an options table or an initial "
                         "number (got %s)",
                         luaL_typename(L, idx));
        return NULL;
    }

    if ((o.has_min || o.has_max) && o.has_initial) {
        ltand_bad_config(L,
                         "%s: give min_number and max_number (deluxe) or "
                         "initial_number (counter), not both",
                         "tand.start");
        return NULL;
    }
    if (o.has_durability && o.journal == NULL) {
        ltand_bad_config(L, "%s is an option of a journal", "durability");
        return NULL;
    }
    if (o.has_policy_option && !o.has_policy) {
        ltand_bad_config(L,
                         "%s: callback_timeout, memory_limit and sandbox are "
                         "options of a policy",
                         "tand.start");
        return NULL;
    }
    if (o.has_policy) {
        if (o.has_initial) {
            ltand_bad_config(L,
                             "%s: a policy runs on the deluxe machine, not on "
                             "the counter",
                             "tand.start");
            return NULL;
        }
        if (o.has_min != o.has_max) {
            ltand_bad_config(L,
                             "%s needs both min_number and max_number, or "
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
            ltand_bad_config(L, "%s needs both min_number and max_number",
                             "the deluxe machine");
            return NULL;
        }
        if (o.min_number >= o.max_number)
            goto bad_bounds;
        kind = KIND_DELUXE;
    } else if (o.has_initial) {
        if (o.has_auto) {
            ltand_bad_config(L, "%s is an option of the deluxe machine",
                             "auto_shutdown_timeout");
            return NULL;
        }
        kind = KIND_COUNTER;
    } else {
        ltand_bad_config(L,
                         "%s: give min_number and max_number (deluxe) or "
                         "initial_number (counter)",
                         "tand.start");
        return NULL;
    }

    sp = calloc(1, sizeof *sp);
    if (sp == NULL ||
        (o.name != NULL && (sp->name = strdup(o.name)) == NULL) ||
        (o.journal != NULL && (sp->journal = strdup(o.journal)) == NULL)) {
        ltand_spec_free(sp);
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
            ltand_spec_free(sp);
            return NULL;
        }
        lua_pop(L, 1);
    }
    return sp;

bad_initial:
    ltand_bad_config(L, "%s must be an integer", "initial_number");
    return NULL;
bad_bounds:
    ltand_bad_config(L, "%s must be below max_number", "min_number");
    return NULL;
}

int ltand_spec_start(tand_runtime *rt, lspec *sp, const char *name,
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
        /* auto_shutdown_timeout = 0: stop as soon as idle */
        d.auto_shutdown_ms =
            sp->o.auto_ms == 0 ? TAND_SHUTDOWN_AT_ONCE : sp->o.auto_ms;
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
    if ((sp = ltand_spec_parse(L, idx)) == NULL) { /* nil, token, detail */
        rc = tand_errcode(lua_tostring(L, -2));
        snprintf(detail, size, "%s", lua_tostring(L, -1));
        lua_pop(L, 3);
        return rc < 0 ? rc : TAND_ECONFIG;
    }
    rc = ltand_spec_start(rt, sp, sp->name, out, detail, size);
    ltand_spec_free(sp);
    return rc;
}

int ltand_start(lua_State *L)
{
    tand_runtime *rt = ltand_runtime(L);
    tand_server *s;
    lmachine *m;
    lspec *sp;
    char detail[2048];
    int rc, handle;

    lua_settop(L, 1);
    /* a wrong type is a programming error: it raises (DESIGN); a bad
    ** value is an expected failure: nil, token, detail */
    if (lua_type(L, 1) != LUA_TTABLE && lua_type(L, 1) != LUA_TNUMBER)
        return luaL_typeerror(L, 1, "options table or initial number");
    if ((sp = ltand_spec_parse(L, 1)) == NULL)
        return 3;
    /* The handle exists, closed, before the server: nothing can raise
    ** between starting the server and handing its reference over. */
    ltand_push_machine(L, NULL, 0);
    handle = lua_gettop(L);
    m = lua_touserdata(L, handle);
    rc = ltand_spec_start(rt, sp, sp->name, &s, detail, sizeof detail);
    m->timeout_ms = sp->o.call_timeout;
    m->server_name = sp->name; /* the handle carries it in messages */
    sp->name = NULL;
    ltand_spec_free(sp);
    if (rc != 0)
        return ltand_fail(L, rc, detail);
    m->s = s; /* the reference start gave us */
    m->id = tand_server_id(s);
    lua_pushvalue(L, handle);
    return 1;
}
