/*
** lvalue.c - Lua values to and from MessagePack.
**
** What can cross a thread: nil, booleans, integers, floats, strings,
** tables of those (arrays when the keys are exactly 1..n, maps otherwise)
** and machine handles. Functions, coroutines, other userdata, cyclic
** tables and nesting deeper than TAND_MAX_DEPTH are refused with a message
** that names the value and where it was. A table reached twice without a
** cycle is copied twice, as a deep copy would.
**
** The encoder writes into a buffer and replies land in a message of a
** space (ltand.h), each owned by a userdata whose __gc frees it, so a Lua
** error in the middle of an encoding or a decoding (out of memory) leaks
** nothing. A Lua state has one space of its own, in its scratch (in the
** registry, and held by the machine methods); a use that finds it busy
** (a __gc finalizer that calls a server while an encoding or a decoding
** allocates) gets a space of its own, so it never writes over the one in
** use. A memory error between take and give leaves the own space busy:
** later uses then each get a space of their own, slower but sound.
**
** A handle travels as ext TAND_EXT_HANDLE (see tand.h): its server's id
** (0 for a handle that reaches no server), this process's nonce, the name
** its server has (or none) and whether the handle follows that name (one
** from tand.whereis). A handle of this process (its nonce, or 0: what the
** 8-byte form means) decodes to the same handle, following its name if
** it did; one of another process (a policy's journaled state read back
** after a restart) follows the name it carries, or, without one, is an
** ended handle (noproc), never a handle to whichever server has its id
** here: ids restart from 1 in every process. A cluster's machine handle
** travels as its record's id (TAND_HANDLE_CLUSTER): in this process it
** decodes to a handle on the same record, while some handle keeps it;
** elsewhere, or once none does, to an ended handle.
*/
#include "ltand.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char BUFKEY = 'b';

typedef struct encoder {
    lua_State *L;
    tand_buf *b;
    int seen;       /* stack index of the table of tables on the path:
                    ** nil until a table is encoded, so sending no table
                    ** costs no table */
    char what[80];  /* what was refused */
    char where[80]; /* the innermost key that led to it */
} encoder;

struct ltand_space {
    tand_buf b;
    tand_msg reply;
};

struct ltand_scratch {
    ltand_space own;
    int busy; /* own is taken */
};

/* __gc of a scratch and of a space: a scratch begins with its space. */
static int space_gc(lua_State *L)
{
    ltand_space *sp = lua_touserdata(L, 1);
    tand_buf_free(&sp->b);
    tand_msg_clear(&sp->reply);
    return 0;
}

/* Pushes a new userdata of size bytes, zeroed, freed by space_gc.
** [-0, +1, m] */
static void *new_space(lua_State *L, size_t size)
{
    void *p = lua_newuserdatauv(L, size, 0);
    memset(p, 0, size);
    if (luaL_newmetatable(L, "tand.space")) {
        lua_pushcfunction(L, space_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return p;
}

ltand_scratch *ltand_scratch_of(lua_State *L)
{
    ltand_scratch *sc;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &BUFKEY);
    sc = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (sc != NULL)
        return sc;
    sc = new_space(L, sizeof *sc);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &BUFKEY);
    return sc;
}

void ltand_push_scratch(lua_State *L)
{
    ltand_scratch_of(L);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &BUFKEY);
}

ltand_space *ltand_space_take(lua_State *L, ltand_scratch *sc)
{
    ltand_space *sp;
    if (!sc->busy) {
        sc->busy = 1;
        lua_pushnil(L);
        sp = &sc->own;
    } else {
        sp = new_space(L, sizeof *sp);
    }
    tand_msg_clear(&sp->reply);
    return sp;
}

void ltand_space_give(ltand_scratch *sc, ltand_space *sp)
{
    if (sp != &sc->own)
        return; /* its own userdata frees it */
    if (sp->b.cap > 65536) /* do not keep a huge buffer forever */
        tand_buf_free(&sp->b);
    tand_msg_clear(&sp->reply);
    sc->busy = 0;
}

tand_msg *ltand_space_reply(ltand_space *sp)
{
    return &sp->reply;
}

static int refuse(encoder *e, const char *what)
{
    snprintf(e->what, sizeof e->what, "%s", what);
    return TAND_EBADVALUE;
}

static void note_key(encoder *e, int key_idx)
{
    lua_State *L = e->L;
    if (e->where[0] != '\0')
        return;
    if (lua_type(L, key_idx) == LUA_TSTRING)
        snprintf(e->where, sizeof e->where, " (at key '%.40s')",
                 lua_tostring(L, key_idx));
    else if (lua_isinteger(L, key_idx))
        snprintf(e->where, sizeof e->where, " (at index %lld)",
                 (long long)lua_tointeger(L, key_idx));
    else
        snprintf(e->where, sizeof e->where, " (at a %s key)",
                 luaL_typename(L, key_idx));
}

static int encode_value(encoder *e, int idx, int depth);

/* The name to send with m: the one it follows, else its server's while
** the server still has it (or has ended, having had it). */
static const char *handle_name(const lmachine *m)
{
    tand_server *found = NULL;
    int current;
    if (m->name != NULL)
        return m->name;
    if (m->server_name == NULL || m->s == NULL || !tand_server_alive(m->s))
        return m->server_name;
    current = tand_whereis(tand_server_runtime(m->s), m->server_name,
                           &found) == 0 &&
              found == m->s;
    tand_server_release(found);
    return current ? m->server_name : NULL;
}

static int encode_handle(encoder *e, const lmachine *m)
{
    const char *name = handle_name(m);
    size_t len = name != NULL ? strlen(name) : 0;
    if (len > TAND_NAME_MAX) /* names are checked when given: never */
        return refuse(e, "machine handle with a name over 255 bytes");
    tand_pack_handle_ex(e->b, m->id, tand_process_nonce(), name, len,
                        m->name != NULL);
    return 0;
}

static int encode_table(encoder *e, int idx, int depth)
{
    lua_State *L = e->L;
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx), count = 0, i;
    int rc = 0, sequence = 1;

    if (depth > TAND_MAX_DEPTH)
        return refuse(e, "table nested too deeply (more than 64 levels)");
    if (!lua_checkstack(L, 6))
        return refuse(e, "table nested too deeply for the Lua stack");
    if (lua_type(L, e->seen) == LUA_TNIL) {
        lua_newtable(L);
        lua_replace(L, e->seen);
    }
    lua_pushvalue(L, idx);
    if (lua_rawget(L, e->seen) != LUA_TNIL) {
        lua_pop(L, 1);
        return refuse(e, "cyclic table (a table that contains itself)");
    }
    lua_pop(L, 1);
    lua_pushvalue(L, idx);
    lua_pushboolean(L, 1);
    lua_rawset(L, e->seen);

    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_Integer k;
        count++;
        if (!lua_isinteger(L, -2) || (k = lua_tointeger(L, -2)) < 1 || k > n)
            sequence = 0;
        lua_pop(L, 1);
    }
    if (count > (lua_Integer)UINT32_MAX) {
        rc = refuse(e, "table with more than 2^32 entries");
    } else if (sequence && count == n) { /* keys are exactly 1..n */
        tand_pack_array(e->b, (uint32_t)n);
        for (i = 1; i <= n && rc == 0; i++) {
            lua_rawgeti(L, idx, i);
            rc = encode_value(e, lua_gettop(L), depth + 1);
            if (rc != 0) {
                lua_pushinteger(L, i);
                note_key(e, -1);
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
    } else {
        tand_pack_map(e->b, (uint32_t)count);
        lua_pushnil(L);
        while (rc == 0 && lua_next(L, idx) != 0) {
            int top = lua_gettop(L);
            rc = encode_value(e, top - 1, depth + 1);
            if (rc == 0)
                rc = encode_value(e, top, depth + 1);
            if (rc != 0)
                note_key(e, top - 1);
            lua_pop(L, rc == 0 ? 1 : 2);
        }
    }
    lua_pushvalue(L, idx);
    lua_pushnil(L);
    lua_rawset(L, e->seen);
    return rc;
}

static int encode_value(encoder *e, int idx, int depth)
{
    lua_State *L = e->L;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        tand_pack_nil(e->b);
        return 0;
    case LUA_TBOOLEAN:
        tand_pack_bool(e->b, lua_toboolean(L, idx));
        return 0;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            tand_pack_int(e->b, lua_tointeger(L, idx));
        else
            tand_pack_double(e->b, lua_tonumber(L, idx));
        return 0;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        tand_pack_str(e->b, s, len);
        return 0;
    }
    case LUA_TTABLE:
        return encode_table(e, idx, depth);
    case LUA_TUSERDATA: {
        lmachine *m = luaL_testudata(L, idx, LTAND_MACHINE);
        if (m == NULL)
            return refuse(e, "userdata (only machine handles can be sent)");
        if (m->closed)
            return refuse(e, "closed machine handle");
        if (m->cm != NULL) { /* by its record's id: this process only */
            tand_pack_cluster_handle(e->b, tand_cluster_machine_id(m->cm));
            return 0;
        }
        return encode_handle(e, m);
    }
    case LUA_TLIGHTUSERDATA:
        return refuse(e, "light userdata");
    case LUA_TFUNCTION:
        return refuse(e, "function");
    case LUA_TTHREAD:
        return refuse(e, "coroutine");
    default:
        return refuse(e, luaL_typename(L, idx));
    }
}

int ltand_encode(lua_State *L, ltand_space *sp, int first, int n,
                 int as_array, tand_msg *msg)
{
    encoder e;
    int rc = 0, i, top;

    first = lua_absindex(L, first);
    e.L = L;
    e.b = &sp->b;
    e.b->size = 0;
    e.b->err = 0;
    e.what[0] = e.where[0] = '\0';
    lua_pushnil(L); /* the table of tables, made by the first table */
    e.seen = lua_gettop(L);
    top = e.seen;
    if (as_array)
        tand_pack_array(e.b, (uint32_t)n);
    for (i = 0; i < n && rc == 0; i++) {
        rc = encode_value(&e, first + i, 1 + (as_array ? 1 : 0));
        if (rc != 0 && as_array && e.where[0] == '\0')
            snprintf(e.where, sizeof e.where, " (argument %d)", i + 1);
    }
    lua_settop(L, top - 1); /* the table of tables */
    if (rc == 0 && e.b->err != 0)
        rc = e.b->err;
    if (rc == 0) {
        char *p = malloc(e.b->size ? e.b->size : 1);
        if (p == NULL) {
            rc = TAND_ENOMEM;
        } else {
            memcpy(p, e.b->data, e.b->size);
            free(msg->data);
            msg->data = p;
            msg->size = e.b->size;
        }
    }
    if (rc == TAND_EBADVALUE)
        lua_pushfstring(L, "cannot send a %s%s", e.what, e.where);
    else if (rc != 0)
        lua_pushstring(L, tand_strerror(rc));
    return rc;
}

int ltand_encode_once(lua_State *L, ltand_scratch *sc, int first, int n,
                      int as_array, tand_msg *msg)
{
    ltand_space *sp;
    int rc;
    first = lua_absindex(L, first);
    sp = ltand_space_take(L, sc);
    rc = ltand_encode(L, sp, first, n, as_array, msg);
    ltand_space_give(sc, sp);
    if (rc != 0)
        lua_remove(L, -2); /* the space, under the message */
    else
        lua_pop(L, 1);
    return rc;
}

/* ---- decoding ---- */

static char *copy_name(lua_State *L, const char *p, size_t len)
{
    char *c = malloc(len + 1);
    if (c == NULL)
        luaL_error(L, "not enough memory");
    memcpy(c, p, len);
    c[len] = '\0';
    return c;
}

/* Pushes the handle a handle item decodes to (see the top).
** [-0, +1, m] */
static void push_handle(lua_State *L, const tand_item *it)
{
    tand_runtime *rt = tand_runtime_default();
    tand_server *s = NULL;
    uint64_t id = it->v.h.id;
    size_t len = it->v.h.name_len; /* the codec checked it: no NUL */
    int here = it->v.h.nonce == 0 || it->v.h.nonce == tand_process_nonce();
    char name[TAND_NAME_MAX + 1]; /* tand_whereis wants a C string */
    lmachine *m;

    if (it->v.h.cluster) { /* a cluster's machine, while a handle has it */
        tand_cluster_machine *cm = NULL;
        if (here && tand_cluster_machine_find(id, &cm) == 0)
            ltand_push_cluster_machine(L, cm, 0);
        else
            ltand_push_machine(L, NULL, 0); /* an ended handle */
        return;
    }
    if (len > 0)
        memcpy(name, it->v.h.name, len);
    name[len] = '\0';
    if (here)
        tand_server_lookup(rt, id, &s);
    else if (len > 0) /* another process's: follow its name */
        tand_whereis(rt, name, &s);
    if (s != NULL)
        id = tand_server_id(s);
    else if (!here)
        id = 0; /* no server of this process */
    ltand_push_machine(L, s, id);
    tand_server_release(s);
    if (len == 0)
        return;
    m = lua_touserdata(L, -1);
    m->server_name = copy_name(L, name, len);
    if (it->v.h.follows || !here)
        m->name = copy_name(L, name, len);
}

/* Pushes the next value of r, checking it as it goes (so a message is
** read once): as tand_unpack_check, at most TAND_MAX_DEPTH deep, and no
** count the bytes left cannot hold. -1 on bad input, with what it pushed
** left for the caller to drop. [-0, +(0|1|...), m] */
static int decode_value(lua_State *L, tand_reader *r, int depth)
{
    tand_item it;
    uint32_t i;
    if (depth > TAND_MAX_DEPTH || !lua_checkstack(L, 4) ||
        tand_unpack(r, &it) != 0)
        return -1;
    if ((it.type == TAND_T_ARRAY || it.type == TAND_T_MAP) &&
        it.v.n > (uint64_t)(r->end - r->p))
        return -1; /* each element takes at least a byte */
    switch (it.type) {
    case TAND_T_NIL:
        lua_pushnil(L);
        return 0;
    case TAND_T_BOOL:
        lua_pushboolean(L, it.v.b);
        return 0;
    case TAND_T_INT:
        lua_pushinteger(L, (lua_Integer)it.v.i);
        return 0;
    case TAND_T_FLOAT:
        lua_pushnumber(L, (lua_Number)it.v.f);
        return 0;
    case TAND_T_STR:
        lua_pushlstring(L, it.v.s.p, it.v.s.len);
        return 0;
    case TAND_T_ARRAY:
        lua_createtable(L, it.v.n < 1024 ? (int)it.v.n : 1024, 0);
        for (i = 1; i <= it.v.n; i++) {
            if (decode_value(L, r, depth + 1) != 0)
                return -1;
            lua_rawseti(L, -2, (lua_Integer)i);
        }
        return 0;
    case TAND_T_MAP:
        lua_createtable(L, 0, it.v.n < 1024 ? (int)it.v.n : 1024);
        for (i = 0; i < it.v.n; i++) {
            if (decode_value(L, r, depth + 1) != 0 ||
                decode_value(L, r, depth + 1) != 0)
                return -1;
            if (lua_isnil(L, -2) ||
                (lua_type(L, -2) == LUA_TNUMBER &&
                 lua_tonumber(L, -2) != lua_tonumber(L, -2)))
                return -1; /* nil or NaN key: not a Lua table */
            lua_rawset(L, -3);
        }
        return 0;
    case TAND_T_HANDLE:
        push_handle(L, &it);
        return 0;
    default:
        return -1;
    }
}

int ltand_decode(lua_State *L, const char *data, size_t size, int as_list)
{
    tand_reader r;
    tand_item it;
    int top = lua_gettop(L);
    uint32_t i, n;

    if (data == NULL)
        goto bad;
    tand_reader_init(&r, data, size);
    if (!as_list) {
        if (decode_value(L, &r, 1) != 0 || r.p != r.end)
            goto bad;
        return 1;
    }
    if (tand_unpack(&r, &it) != 0 || it.type != TAND_T_ARRAY)
        goto bad;
    n = it.v.n;
    if (n > LTAND_MAX_VALUES) {
        lua_settop(L, top);
        lua_pushfstring(L, "%I values, more than the %d a message carries "
                           "as a list (send a table)",
                        (lua_Integer)n, LTAND_MAX_VALUES);
        return -1;
    }
    if (!lua_checkstack(L, (int)n + 4))
        goto bad;
    for (i = 0; i < n; i++)
        if (decode_value(L, &r, 2) != 0)
            goto bad;
    if (r.p != r.end)
        goto bad; /* trailing bytes */
    return (int)n;
bad:
    lua_settop(L, top);
    lua_pushliteral(L, "a message is not a valid tand value");
    return -1;
}
