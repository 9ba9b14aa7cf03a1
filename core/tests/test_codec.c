/*
** test_codec.c - MessagePack round trips, every boundary of every width,
** handles with their nonce and name, and refusal of malformed, truncated
** and too deeply nested input.
*/
#include "check.h"

#include <math.h>
#include <sys/wait.h>
#include <unistd.h>

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
          it.v.h.id == UINT64_C(0x0102030405060708) &&
          it.v.h.nonce == tand_process_nonce() && it.v.h.name == NULL &&
          it.v.h.name_len == 0 && it.v.h.follows == 0);
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
    tand_pack_array(&b, 4);
    tand_pack_str(&b, "queue_new_number", 16);
    tand_pack_int(&b, 1234567);
    tand_pack_handle(&b, 99);
    tand_pack_handle_ex(&b, 99, 1, "deli", 4, 1);
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

/* Packs a handle with a name of len bytes ('a', 'b', ...) and reads it
** back: every field, the smallest header, and every truncation refused. */
static void round_handle(uint64_t id, uint64_t nonce, size_t len,
                         int follows)
{
    char name[TAND_NAME_MAX];
    tand_buf b;
    tand_reader r;
    tand_item it;
    size_t i, head = 17 + len <= 255 ? 3 : 4;
    for (i = 0; i < len; i++)
        name[i] = (char)('a' + i % 26);
    tand_buf_init(&b);
    tand_pack_handle_ex(&b, id, nonce, len > 0 ? name : NULL, len, follows);
    CHECK_OK(b.err);
    CHECK_INT(b.size, head + 17 + len);
    CHECK_INT((unsigned char)b.data[0], head == 3 ? 0xc7 : 0xc8);
    CHECK_INT(b.data[head - 1], TAND_EXT_HANDLE);
    CHECK_OK(tand_unpack_check(b.data, b.size));
    tand_reader_init(&r, b.data, b.size);
    CHECK_OK(tand_unpack(&r, &it));
    CHECK_INT(it.type, TAND_T_HANDLE);
    CHECK(it.v.h.id == id);
    CHECK(it.v.h.nonce == nonce);
    CHECK_INT(it.v.h.name_len, len);
    CHECK_INT(it.v.h.follows, follows != 0);
    if (len == 0)
        CHECK(it.v.h.name == NULL);
    else
        CHECK(it.v.h.name == b.data + head + 17 &&
              memcmp(it.v.h.name, name, len) == 0);
    CHECK(r.p == r.end);
    for (i = 0; i < b.size; i++)
        CHECK_RC(tand_unpack_check(b.data, i), TAND_EBADMSG);
    tand_buf_free(&b);
}

/* Checks one handle's bytes: refused (rc) or read with this id. */
static void read_handle(const char *p, size_t n, int rc, uint64_t id)
{
    tand_reader r;
    tand_item it;
    CHECK_RC(tand_unpack_check(p, n), rc);
    tand_reader_init(&r, p, n);
    CHECK_RC(tand_unpack(&r, &it), rc);
    if (rc == 0)
        CHECK(it.type == TAND_T_HANDLE && it.v.h.id == id);
}

/* 17 + len bytes of ext data: id 7, nonce 9, the flags, the name. */
static size_t handle_bytes(char *p, unsigned char tag, size_t len,
                           unsigned flags, const char *name)
{
    size_t head = tag == 0xc7 ? 3 : 4, i;
    p[0] = (char)tag;
    if (tag == 0xc7) {
        p[1] = (char)(17 + len);
    } else {
        p[1] = (char)((17 + len) >> 8);
        p[2] = (char)((17 + len) & 0xff);
    }
    p[head - 1] = TAND_EXT_HANDLE;
    memset(p + head, 0, 17);
    p[head + 7] = 7;
    p[head + 15] = 9;
    p[head + 16] = (char)flags;
    for (i = 0; i < len; i++)
        p[head + 17 + i] = name != NULL ? name[i] : 'x';
    return head + 17 + len;
}

static void handles(void)
{
    static const size_t lens[] = {0, 1, 2, 238, 239, 254, 255};
    static const uint64_t nonces[] = {0, 1, UINT64_C(0x8000000000000001),
                                      UINT64_MAX};
    char p[300], name[TAND_NAME_MAX + 1];
    tand_buf b;
    tand_reader r;
    tand_item it;
    size_t i, j, n;

    for (i = 0; i < sizeof lens / sizeof lens[0]; i++)
        for (j = 0; j < sizeof nonces / sizeof nonces[0]; j++) {
            round_handle(UINT64_C(0x0102030405060708), nonces[j], lens[i],
                         (int)(j & 1));
            round_handle(0, nonces[j], lens[i], 1);
            round_handle(UINT64_MAX, nonces[j], lens[i], 0);
        }
    round_handle(42, 5, 3, 7); /* any true follows is written as 1 */

    /* the short form packs this process's nonce */
    CHECK(tand_process_nonce() != 0);
    CHECK(tand_process_nonce() == tand_process_nonce());
    tand_buf_init(&b);
    tand_pack_handle(&b, 12);
    CHECK_INT(b.size, 20);
    tand_reader_init(&r, b.data, b.size);
    CHECK_OK(tand_unpack(&r, &it));
    CHECK(it.type == TAND_T_HANDLE && it.v.h.id == 12 &&
          it.v.h.nonce == tand_process_nonce() && it.v.h.name_len == 0 &&
          !it.v.h.follows);
    tand_buf_free(&b);

    /* names the packer refuses: too long, a NUL, NULL with a length */
    memset(name, 'n', sizeof name);
    tand_buf_init(&b);
    tand_pack_handle_ex(&b, 1, 2, name, TAND_NAME_MAX + 1, 0);
    CHECK_RC(b.err, TAND_EBADVALUE);
    CHECK_INT(b.size, 0);
    tand_pack_nil(&b); /* later writes are no-ops */
    CHECK_INT(b.size, 0);
    tand_buf_free(&b);
    tand_buf_init(&b);
    tand_pack_handle_ex(&b, 1, 2, "a\0b", 3, 0);
    CHECK_RC(b.err, TAND_EBADVALUE);
    tand_buf_free(&b);
    tand_buf_init(&b);
    tand_pack_handle_ex(&b, 1, 2, NULL, 4, 0);
    CHECK_RC(b.err, TAND_EBADVALUE);
    tand_buf_free(&b);

    /* the 8-byte form tand 0.1 wrote: an id of this process, nonce 0 */
    memcpy(p, "\xd7\x01\x00\x00\x00\x00\x00\x00\x01\x02", 10);
    tand_reader_init(&r, p, 10);
    CHECK_OK(tand_unpack(&r, &it));
    CHECK(it.type == TAND_T_HANDLE && it.v.h.id == 0x0102 &&
          it.v.h.nonce == 0 && it.v.h.name == NULL &&
          it.v.h.name_len == 0 && it.v.h.follows == 0);
    read_handle(p, 10, 0, 0x0102);
    for (i = 0; i < 10; i++)
        read_handle(p, i, TAND_EBADMSG, 0);
    /* the same as ext 8 of length 8 */
    memcpy(p, "\xc7\x08\x01\x00\x00\x00\x00\x00\x00\x00\x05", 11);
    read_handle(p, 11, 0, 5);

    /* other writers' headers: ext 16 or 32 for a short name */
    n = handle_bytes(p, 0xc8, 4, 1, NULL);
    read_handle(p, n, 0, 7);
    memcpy(p, "\xc9\x00\x00\x00\x11\x01", 6);
    memset(p + 6, 0, 17);
    p[6 + 7] = 3;
    read_handle(p, 23, 0, 3);

    /* lengths that are neither form */
    for (i = 0; i < 17; i++) {
        if (i == 8)
            continue;
        memset(p, 0, sizeof p);
        p[0] = (char)0xc7;
        p[1] = (char)i;
        p[2] = TAND_EXT_HANDLE;
        read_handle(p, 3 + i, TAND_EBADMSG, 0);
    }
    n = handle_bytes(p, 0xc8, TAND_NAME_MAX + 1, 0, NULL); /* 273 bytes */
    read_handle(p, n, TAND_EBADMSG, 0);
    n = handle_bytes(p, 0xc8, TAND_NAME_MAX, 0, NULL); /* 272: the most */
    read_handle(p, n, 0, 7);
    /* fixext 16 is no handle form */
    memset(p, 0, 18);
    p[0] = (char)0xd8;
    p[1] = TAND_EXT_HANDLE;
    read_handle(p, 18, TAND_EBADMSG, 0);

    /* a NUL anywhere in the name, unknown flags, an unknown ext type */
    for (i = 0; i < 5; i++) {
        char bad[5] = "abcde";
        bad[i] = '\0';
        n = handle_bytes(p, 0xc7, 5, 0, bad);
        read_handle(p, n, TAND_EBADMSG, 0);
    }
    n = handle_bytes(p, 0xc7, 5, 0, "abcde");
    read_handle(p, n, 0, 7);
    for (i = 2; i < 8; i++) {
        n = handle_bytes(p, 0xc7, 2, 1u << i, NULL);
        read_handle(p, n, TAND_EBADMSG, 0);
    }
    /* a cluster's machine handle: bit 1, never with bit 0 */
    n = handle_bytes(p, 0xc7, 2, TAND_HANDLE_CLUSTER, NULL);
    read_handle(p, n, 0, 7);
    n = handle_bytes(p, 0xc7, 2, TAND_HANDLE_CLUSTER | TAND_HANDLE_FOLLOWS,
                     NULL);
    read_handle(p, n, TAND_EBADMSG, 0);
    tand_buf_init(&b);
    tand_pack_cluster_handle(&b, 99);
    tand_pack_handle(&b, 99);
    tand_reader_init(&r, b.data, b.size);
    CHECK_OK(tand_unpack(&r, &it));
    CHECK(it.type == TAND_T_HANDLE && it.v.h.id == 99 && it.v.h.cluster &&
          !it.v.h.follows && it.v.h.nonce == tand_process_nonce() &&
          it.v.h.name_len == 0);
    CHECK_OK(tand_unpack(&r, &it));
    CHECK(it.type == TAND_T_HANDLE && it.v.h.id == 99 && !it.v.h.cluster);
    tand_buf_free(&b);
    n = handle_bytes(p, 0xc7, 2, 0xff, NULL);
    read_handle(p, n, TAND_EBADMSG, 0);
    n = handle_bytes(p, 0xc7, 2, 0, NULL);
    p[2] = 2; /* ext type 2 */
    read_handle(p, n, TAND_EBADMSG, 0);
    p[2] = (char)0xff; /* ext type -1, MessagePack's timestamp */
    read_handle(p, n, TAND_EBADMSG, 0);

    /* truncated: the header claims more bytes than there are */
    n = handle_bytes(p, 0xc7, 10, 0, NULL);
    for (i = 0; i < n; i++)
        read_handle(p, i, TAND_EBADMSG, 0);
    n = handle_bytes(p, 0xc8, 250, 0, NULL);
    for (i = 0; i < n; i++)
        read_handle(p, i, TAND_EBADMSG, 0);

    /* inside an array, a handle is followed by the next item */
    tand_buf_init(&b);
    tand_pack_array(&b, 3);
    tand_pack_handle_ex(&b, 3, 4, "deli", 4, 1);
    tand_pack_handle_ex(&b, 5, 6, NULL, 0, 0);
    tand_pack_str(&b, "after", 5);
    CHECK_OK(b.err);
    CHECK_OK(tand_unpack_check(b.data, b.size));
    tand_reader_init(&r, b.data, b.size);
    CHECK_OK(tand_unpack(&r, &it));
    CHECK(it.type == TAND_T_ARRAY && it.v.n == 3);
    CHECK_OK(tand_unpack(&r, &it));
    CHECK(it.type == TAND_T_HANDLE && it.v.h.id == 3 &&
          it.v.h.nonce == 4 && it.v.h.name_len == 4 &&
          memcmp(it.v.h.name, "deli", 4) == 0 && it.v.h.follows == 1);
    CHECK_OK(tand_unpack(&r, &it));
    CHECK(it.type == TAND_T_HANDLE && it.v.h.id == 5 &&
          it.v.h.nonce == 6 && it.v.h.name == NULL && !it.v.h.follows);
    CHECK_OK(tand_unpack(&r, &it));
    CHECK(it.type == TAND_T_STR && it.v.s.len == 5 &&
          memcmp(it.v.s.p, "after", 5) == 0);
    CHECK(r.p == r.end);
    tand_buf_free(&b);
}

/* A forked child is another process: it takes a nonce of its own. */
static void nonce_after_fork(void)
{
    uint64_t parent = tand_process_nonce(), child = 0;
    int fds[2], status = 0;
    pid_t pid;
    CHECK(pipe(fds) == 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        uint64_t v = tand_process_nonce();
        ssize_t w = write(fds[1], &v, sizeof v);
        _exit(w == (ssize_t)sizeof v && v == tand_process_nonce() ? 0 : 1);
    }
    close(fds[1]);
    CHECK(read(fds[0], &child, sizeof child) == (ssize_t)sizeof child);
    close(fds[0]);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(child != 0);
    CHECK(child != parent);
    CHECK(tand_process_nonce() == parent);
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
    handles();
    nonce_after_fork();
    no_overreads();
    return check_done("test_codec");
}
