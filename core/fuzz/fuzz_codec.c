/*
** fuzz_codec.c - libFuzzer target for the MessagePack reader: any bytes
** are either refused or walked completely, and what is accepted encodes
** back to bytes that are accepted again and decode to the same items;
** what is refused cannot be walked in one pass either (the Lua binding
** decodes in one pass, checking as it goes).
*/
#include "tand.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Re-encodes one item (and its children) from r into b. */
static int copy(tand_reader *r, tand_buf *b, int depth)
{
    tand_item it;
    uint64_t i, n;
    if (depth > TAND_MAX_DEPTH || tand_unpack(r, &it) != 0)
        return -1;
    switch (it.type) {
    case TAND_T_NIL: tand_pack_nil(b); return 0;
    case TAND_T_BOOL: tand_pack_bool(b, it.v.b); return 0;
    case TAND_T_INT: tand_pack_int(b, it.v.i); return 0;
    case TAND_T_FLOAT: tand_pack_double(b, it.v.f); return 0;
    case TAND_T_STR: tand_pack_str(b, it.v.s.p, it.v.s.len); return 0;
    case TAND_T_HANDLE:
        /* the reader's promises on a handle's name */
        if (it.v.h.name_len > TAND_NAME_MAX ||
            (it.v.h.name_len > 0 &&
             memchr(it.v.h.name, '\0', it.v.h.name_len) != NULL) ||
            (it.v.h.name_len == 0) != (it.v.h.name == NULL))
            abort();
        tand_pack_handle_ex(b, it.v.h.id, it.v.h.nonce, it.v.h.name,
                            it.v.h.name_len, it.v.h.follows);
        return 0;
    case TAND_T_ARRAY: tand_pack_array(b, it.v.n); n = it.v.n; break;
    case TAND_T_MAP: tand_pack_map(b, it.v.n); n = 2 * (uint64_t)it.v.n; break;
    default: return -1;
    }
    for (i = 0; i < n; i++)
        if (copy(r, b, depth + 1) != 0)
            return -1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tand_reader r;
    tand_buf once, twice;
    tand_buf_init(&once);
    tand_buf_init(&twice);
    if (tand_unpack_check((const char *)data, size) != 0) {
        tand_reader_init(&r, (const char *)data, size);
        if (copy(&r, &once, 1) == 0 && r.p == r.end)
            abort(); /* refused, yet walkable */
        tand_buf_free(&once);
        return 0;
    }
    tand_reader_init(&r, (const char *)data, size);
    if (copy(&r, &once, 1) != 0 || r.p != r.end)
        abort(); /* checked, yet not walkable */
    if (once.err == 0) {
        if (tand_unpack_check(once.data, once.size) != 0)
            abort(); /* our own encoding refused */
        tand_reader_init(&r, once.data, once.size);
        if (copy(&r, &twice, 1) != 0 || twice.size != once.size ||
            memcmp(twice.data, once.data, once.size) != 0)
            abort(); /* not stable */
    }
    tand_buf_free(&once);
    tand_buf_free(&twice);
    return 0;
}
