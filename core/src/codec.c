/*
** codec.c - MessagePack: the encoding of every value that crosses threads.
**
** Writers append to a tand_buf and latch the first error, so a caller
** checks once at the end. Readers never trust their input: every length is
** checked against the end of the buffer before it is used.
**
** A handle is ext TAND_EXT_HANDLE of 17 + n bytes (ext 8, ext 16 past 255):
**   id (8, big endian) | nonce (8, big endian) | flags (1) | name (n)
** the process nonce telling this process's ids from another's, flags bit 0
** TAND_HANDLE_FOLLOWS or bit 1 TAND_HANDLE_CLUSTER (the others 0), the
** name 0..TAND_NAME_MAX bytes
** without NUL. The 8-byte form (fixext 8: the id alone) is still read, as
** a handle of this process (nonce 0).
*/
#include "internal.h"

#include <stdlib.h>
#include <string.h>

void tand_buf_init(tand_buf *b)
{
    memset(b, 0, sizeof *b);
}

void tand_buf_free(tand_buf *b)
{
    free(b->data);
    tand_buf_init(b);
}

static char *reserve(tand_buf *b, size_t n)
{
    if (b->err)
        return NULL;
    if (b->cap - b->size < n) {
        size_t cap = b->cap ? b->cap : 64;
        char *p;
        while (cap - b->size < n) {
            if (cap > SIZE_MAX / 2) {
                b->err = TAND_ENOMEM;
                return NULL;
            }
            cap *= 2;
        }
        p = tand__realloc(b->data, cap);
        if (p == NULL) {
            b->err = TAND_ENOMEM;
            return NULL;
        }
        b->data = p;
        b->cap = cap;
    }
    b->size += n;
    return b->data + b->size - n;
}

static void put_be(char *p, uint64_t v, int n)
{
    int i;
    for (i = n - 1; i >= 0; i--) {
        p[i] = (char)(v & 0xff);
        v >>= 8;
    }
}

static void put_tagged(tand_buf *b, unsigned char tag, uint64_t v, int n)
{
    char *p = reserve(b, 1 + (size_t)n);
    if (p == NULL)
        return;
    p[0] = (char)tag;
    put_be(p + 1, v, n);
}

void tand_pack_nil(tand_buf *b)
{
    put_tagged(b, 0xc0, 0, 0);
}

void tand_pack_bool(tand_buf *b, int v)
{
    put_tagged(b, v ? 0xc3 : 0xc2, 0, 0);
}

void tand_pack_int(tand_buf *b, int64_t v)
{
    if (v >= 0 && v <= 127)
        put_tagged(b, (unsigned char)v, 0, 0);
    else if (v < 0 && v >= -32)
        put_tagged(b, (unsigned char)(0xe0 | (v + 32)), 0, 0);
    else if (v >= INT8_MIN && v <= INT8_MAX)
        put_tagged(b, 0xd0, (uint64_t)v, 1);
    else if (v >= INT16_MIN && v <= INT16_MAX)
        put_tagged(b, 0xd1, (uint64_t)v, 2);
    else if (v >= INT32_MIN && v <= INT32_MAX)
        put_tagged(b, 0xd2, (uint64_t)v, 4);
    else
        put_tagged(b, 0xd3, (uint64_t)v, 8);
}

void tand_pack_double(tand_buf *b, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_tagged(b, 0xcb, bits, 8);
}

void tand_pack_str(tand_buf *b, const char *s, size_t len)
{
    char *p;
    if (len > UINT32_MAX) {
        if (!b->err)
            b->err = TAND_EBADVALUE;
        return;
    }
    if (len < 32)
        put_tagged(b, (unsigned char)(0xa0 | len), 0, 0);
    else if (len <= UINT8_MAX)
        put_tagged(b, 0xd9, len, 1);
    else if (len <= UINT16_MAX)
        put_tagged(b, 0xda, len, 2);
    else
        put_tagged(b, 0xdb, len, 4);
    if ((p = reserve(b, len)) != NULL && len > 0)
        memcpy(p, s, len);
}

void tand_pack_array(tand_buf *b, uint32_t n)
{
    if (n < 16)
        put_tagged(b, (unsigned char)(0x90 | n), 0, 0);
    else if (n <= UINT16_MAX)
        put_tagged(b, 0xdc, n, 2);
    else
        put_tagged(b, 0xdd, n, 4);
}

void tand_pack_map(tand_buf *b, uint32_t n)
{
    if (n < 16)
        put_tagged(b, (unsigned char)(0x80 | n), 0, 0);
    else if (n <= UINT16_MAX)
        put_tagged(b, 0xde, n, 2);
    else
        put_tagged(b, 0xdf, n, 4);
}

/* The ext data of a handle: id, nonce and flags, then the name. */
#define HANDLE_FIXED 17
#define HANDLE_SHORT 8 /* the old form: the id alone */

static void pack_handle(tand_buf *b, uint64_t server_id, uint64_t nonce,
                        const char *name, size_t name_len, int flags)
{
    size_t len = HANDLE_FIXED + name_len, head;
    char *p;
    if (name_len > TAND_NAME_MAX ||
        (name_len > 0 &&
         (name == NULL || memchr(name, '\0', name_len) != NULL))) {
        if (!b->err)
            b->err = TAND_EBADVALUE;
        return;
    }
    head = len <= UINT8_MAX ? 3 : 4; /* ext 8 or ext 16, then the type */
    if ((p = reserve(b, head + len)) == NULL)
        return;
    if (head == 3) {
        p[0] = (char)0xc7;
        put_be(p + 1, len, 1);
    } else {
        p[0] = (char)0xc8;
        put_be(p + 1, len, 2);
    }
    p[head - 1] = TAND_EXT_HANDLE;
    p += head;
    put_be(p, server_id, 8);
    put_be(p + 8, nonce, 8);
    p[16] = (char)flags;
    if (name_len > 0)
        memcpy(p + HANDLE_FIXED, name, name_len);
}

void tand_pack_handle_ex(tand_buf *b, uint64_t server_id, uint64_t nonce,
                         const char *name, size_t name_len, int follows)
{
    pack_handle(b, server_id, nonce, name, name_len,
                follows ? TAND_HANDLE_FOLLOWS : 0);
}

void tand_pack_cluster_handle(tand_buf *b, uint64_t machine_id)
{
    pack_handle(b, machine_id, tand_process_nonce(), NULL, 0,
                TAND_HANDLE_CLUSTER);
}

void tand_pack_handle(tand_buf *b, uint64_t server_id)
{
    tand_pack_handle_ex(b, server_id, tand_process_nonce(), NULL, 0, 0);
}

void tand_pack_raw(tand_buf *b, const char *p, size_t n)
{
    char *dst = reserve(b, n);
    if (dst != NULL && n > 0)
        memcpy(dst, p, n);
}

int tand_buf_to_msg(tand_buf *b, tand_msg *msg)
{
    int rc = b->err;
    free(msg->data);
    msg->data = NULL;
    msg->size = 0;
    if (rc == 0) {
        msg->data = b->data;
        msg->size = b->size;
        tand_buf_init(b);
    } else {
        tand_buf_free(b);
    }
    return rc;
}

/* ---- reading ---- */

void tand_reader_init(tand_reader *r, const char *data, size_t size)
{
    r->p = data;
    r->end = data ? data + size : data;
}

static bool get_be(tand_reader *r, int n, uint64_t *v)
{
    const unsigned char *p = (const unsigned char *)r->p;
    int i;
    if (r->end - r->p < n)
        return false;
    *v = 0;
    for (i = 0; i < n; i++)
        *v = (*v << 8) | p[i];
    r->p += n;
    return true;
}

static int get_str(tand_reader *r, tand_item *it, int lenbytes)
{
    uint64_t len;
    if (!get_be(r, lenbytes, &len) || (uint64_t)(r->end - r->p) < len)
        return TAND_EBADMSG;
    it->type = TAND_T_STR;
    it->v.s.p = r->p;
    it->v.s.len = (size_t)len;
    r->p += len;
    return 0;
}

static int get_count(tand_reader *r, tand_item *it, int type, int n)
{
    uint64_t v;
    if (!get_be(r, n, &v))
        return TAND_EBADMSG;
    it->type = type;
    it->v.n = (uint32_t)v;
    return 0;
}

static int get_signed(tand_reader *r, tand_item *it, int n)
{
    uint64_t v;
    if (!get_be(r, n, &v))
        return TAND_EBADMSG;
    it->type = TAND_T_INT;
    switch (n) {
    case 1: it->v.i = (int8_t)v; break;
    case 2: it->v.i = (int16_t)v; break;
    case 4: it->v.i = (int32_t)v; break;
    default: it->v.i = (int64_t)v; break;
    }
    return 0;
}

static int get_unsigned(tand_reader *r, tand_item *it, int n)
{
    uint64_t v;
    if (!get_be(r, n, &v) || v > INT64_MAX)
        return TAND_EBADMSG; /* beyond a Lua integer */
    it->type = TAND_T_INT;
    it->v.i = (int64_t)v;
    return 0;
}

/* An ext of len data bytes: a handle in one of its two forms (see the
** top), all of it in the input, or TAND_EBADMSG. */
static int get_ext(tand_reader *r, tand_item *it, uint64_t len)
{
    uint64_t type, id = 0, nonce = 0, flags = 0;
    size_t name_len = 0;
    if (!get_be(r, 1, &type) || type != TAND_EXT_HANDLE ||
        (len != HANDLE_SHORT &&
         (len < HANDLE_FIXED || len > HANDLE_FIXED + TAND_NAME_MAX)) ||
        (uint64_t)(r->end - r->p) < len)
        return TAND_EBADMSG;
    get_be(r, 8, &id); /* cannot fail: len bytes are there */
    if (len > HANDLE_SHORT) {
        get_be(r, 8, &nonce);
        get_be(r, 1, &flags);
        name_len = (size_t)len - HANDLE_FIXED;
        if ((flags & ~(uint64_t)(TAND_HANDLE_FOLLOWS |
                                 TAND_HANDLE_CLUSTER)) != 0 ||
            flags == (TAND_HANDLE_FOLLOWS | TAND_HANDLE_CLUSTER) ||
            (name_len > 0 && memchr(r->p, '\0', name_len) != NULL))
            return TAND_EBADMSG;
    }
    it->type = TAND_T_HANDLE;
    it->v.h.id = id;
    it->v.h.nonce = nonce;
    it->v.h.name = name_len > 0 ? r->p : NULL;
    it->v.h.name_len = name_len;
    it->v.h.follows = (flags & TAND_HANDLE_FOLLOWS) != 0;
    it->v.h.cluster = (flags & TAND_HANDLE_CLUSTER) != 0;
    r->p += name_len;
    return 0;
}

int tand_unpack(tand_reader *r, tand_item *it)
{
    unsigned char c;
    uint64_t v;
    if (r->p == NULL || r->p >= r->end)
        return TAND_EBADMSG;
    c = (unsigned char)*r->p++;
    if (c <= 0x7f) {
        it->type = TAND_T_INT;
        it->v.i = c;
        return 0;
    }
    if (c >= 0xe0) {
        it->type = TAND_T_INT;
        it->v.i = (int8_t)c;
        return 0;
    }
    if ((c & 0xf0) == 0x80) {
        it->type = TAND_T_MAP;
        it->v.n = c & 0x0f;
        return 0;
    }
    if ((c & 0xf0) == 0x90) {
        it->type = TAND_T_ARRAY;
        it->v.n = c & 0x0f;
        return 0;
    }
    if ((c & 0xe0) == 0xa0) {
        it->type = TAND_T_STR;
        v = c & 0x1f;
        if ((uint64_t)(r->end - r->p) < v)
            return TAND_EBADMSG;
        it->v.s.p = r->p;
        it->v.s.len = (size_t)v;
        r->p += v;
        return 0;
    }
    switch (c) {
    case 0xc0: it->type = TAND_T_NIL; return 0;
    case 0xc2: it->type = TAND_T_BOOL; it->v.b = 0; return 0;
    case 0xc3: it->type = TAND_T_BOOL; it->v.b = 1; return 0;
    case 0xc4: return get_str(r, it, 1); /* bin 8/16/32 read as strings */
    case 0xc5: return get_str(r, it, 2);
    case 0xc6: return get_str(r, it, 4);
    case 0xca: {
        float f;
        uint32_t bits;
        if (!get_be(r, 4, &v))
            return TAND_EBADMSG;
        bits = (uint32_t)v;
        memcpy(&f, &bits, sizeof f);
        it->type = TAND_T_FLOAT;
        it->v.f = f;
        return 0;
    }
    case 0xcb:
        if (!get_be(r, 8, &v))
            return TAND_EBADMSG;
        it->type = TAND_T_FLOAT;
        memcpy(&it->v.f, &v, sizeof it->v.f);
        return 0;
    case 0xcc: return get_unsigned(r, it, 1);
    case 0xcd: return get_unsigned(r, it, 2);
    case 0xce: return get_unsigned(r, it, 4);
    case 0xcf: return get_unsigned(r, it, 8);
    case 0xd0: return get_signed(r, it, 1);
    case 0xd1: return get_signed(r, it, 2);
    case 0xd2: return get_signed(r, it, 4);
    case 0xd3: return get_signed(r, it, 8);
    case 0xd7: return get_ext(r, it, 8);
    case 0xc7:
    case 0xc8:
    case 0xc9: /* ext 8/16/32 */
        if (!get_be(r, c == 0xc7 ? 1 : c == 0xc8 ? 2 : 4, &v))
            return TAND_EBADMSG;
        return get_ext(r, it, v);
    case 0xd9: return get_str(r, it, 1);
    case 0xda: return get_str(r, it, 2);
    case 0xdb: return get_str(r, it, 4);
    case 0xdc: return get_count(r, it, TAND_T_ARRAY, 2);
    case 0xdd: return get_count(r, it, TAND_T_ARRAY, 4);
    case 0xde: return get_count(r, it, TAND_T_MAP, 2);
    case 0xdf: return get_count(r, it, TAND_T_MAP, 4);
    default: return TAND_EBADMSG; /* 0xc1, fixext 1/2/4/16 */
    }
}

/* Skips one value and its children, at most TAND_MAX_DEPTH deep. */
static int skip(tand_reader *r, int depth)
{
    tand_item it;
    uint64_t n, i;
    int rc;
    if (depth > TAND_MAX_DEPTH)
        return TAND_EBADMSG;
    if ((rc = tand_unpack(r, &it)) != 0)
        return rc;
    if (it.type == TAND_T_ARRAY)
        n = it.v.n;
    else if (it.type == TAND_T_MAP)
        n = 2 * (uint64_t)it.v.n;
    else
        return 0;
    /* Each element takes at least one byte: refuse counts the input
    ** cannot hold before looping over them. */
    if (n > (uint64_t)(r->end - r->p))
        return TAND_EBADMSG;
    for (i = 0; i < n; i++)
        if ((rc = skip(r, depth + 1)) != 0)
            return rc;
    return 0;
}

int tand_unpack_check(const char *data, size_t size)
{
    tand_reader r;
    int rc;
    if (data == NULL)
        return TAND_EBADMSG;
    tand_reader_init(&r, data, size);
    rc = skip(&r, 1);
    if (rc == 0 && r.p != r.end)
        rc = TAND_EBADMSG; /* trailing bytes */
    return rc;
}
