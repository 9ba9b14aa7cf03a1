/*
** test_async.c - asynchronous calls and reply boxes: replies by tag
** through a pollable descriptor, deadlines, a box freed with calls in
** flight, failed sends, a pumped runtime, and many owners at once.
*/
#include "check.h"
#include "echo.h"

#include <poll.h>
#include <stdbool.h>
#include <pthread.h>

static tand_runtime *rt;

static tand_msg op_msg(int op, int64_t a)
{
    tand_msg m;
    memset(&m, 0, sizeof m);
    m.op = op;
    m.ival[0] = a;
    return m;
}

static bool readable(int fd, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

static void replies_by_tag(void)
{
    echo_shared sh = {0};
    tand_server *s;
    tand_replies *box;
    tand_msg m, reply;
    uint64_t tag;
    bool seen[100] = {false};
    int i, got = 0;

    CHECK_OK(echo_start(rt, &sh, 0, NULL, &s));
    CHECK_OK(tand_replies_new(&box));
    CHECK(tand_replies_fd(box) >= 0);
    CHECK(!readable(tand_replies_fd(box), 0));
    CHECK_INT(tand_replies_take(box, &tag, &reply), 0);
    CHECK_INT(tand_replies_timeout_ms(box), -1);
    for (i = 0; i < 100; i++) {
        m = op_msg(ECHO, 1000 + i);
        CHECK_OK(tand_call_async(s, &m, TAND_FOREVER, 0, box, (uint64_t)i));
    }
    CHECK_INT(tand_replies_count(box), 100);
    while (got < 100) {
        CHECK(readable(tand_replies_fd(box), 5000));
        while (tand_replies_take(box, &tag, &reply) == 1) {
            CHECK_OK(reply.status);
            CHECK(tag < 100 && !seen[tag]);
            if (tag < 100) {
                seen[tag] = true;
                CHECK_INT(reply.ival[0], 1000 + (int64_t)tag);
            }
            tand_msg_clear(&reply);
            got++;
        }
    }
    CHECK_INT(tand_replies_count(box), 0);
    CHECK(!readable(tand_replies_fd(box), 0)); /* drained */
    /* wait for hosts without a loop */
    m = op_msg(SLEEP, 20);
    CHECK_OK(tand_call_async(s, &m, 5000, 0, box, 7));
    CHECK_OK(tand_replies_wait(box, 5000));
    CHECK_INT(tand_replies_take(box, &tag, &reply), 1);
    CHECK_INT(tag, 7);
    CHECK_INT(reply.ival[0], 20);
    CHECK_RC(tand_replies_wait(box, 10), TAND_ETIMEDOUT);
    tand_replies_free(box);
    tand_server_stop(s, 0, NULL, 5000);
    tand_server_release(s);
}

static void deadlines(void)
{
    echo_shared sh = {0};
    tand_server *s;
    tand_replies *box;
    tand_msg m, reply;
    uint64_t tag = 0;
    int64_t left;

    CHECK_OK(echo_start(rt, &sh, 0, NULL, &s));
    CHECK_OK(tand_replies_new(&box));
    /* a deadline long enough that the server surely keeps the call first,
    ** even on a loaded machine under a sanitizer */
    m = op_msg(DEFER, 0);
    CHECK_OK(tand_call_async(s, &m, 1000, 0, box, 1));
    m = op_msg(ECHO, 5);
    CHECK_OK(tand_call_async(s, &m, TAND_FOREVER, 0, box, 2));
    left = tand_replies_timeout_ms(box);
    CHECK(left >= 0 && left <= 1000);
    /* the echo comes first, then the deferred call times out */
    CHECK_OK(tand_replies_wait(box, 5000));
    CHECK_INT(tand_replies_take(box, &tag, &reply), 1);
    CHECK_INT(tag, 2);
    tand_msg_clear(&reply);
    WAIT_FOR(tand_replies_timeout_ms(box) == 0, 5000);
    CHECK_OK(tand_replies_wait(box, 0));
    CHECK_INT(tand_replies_take(box, &tag, &reply), 1);
    CHECK_INT(tag, 1);
    CHECK_RC(reply.status, TAND_ETIMEDOUT);
    CHECK_INT(tand_replies_count(box), 0);
    /* the late answer is dropped: the server learns the caller left */
    CHECK_RC(echo_answer(s, 3), TAND_ETIMEDOUT);
    CHECK_INT(tand_replies_take(box, &tag, &reply), 0);

    /* a server that stops answers what it holds with noproc */
    m = op_msg(DEFER, 0);
    CHECK_OK(tand_call_async(s, &m, TAND_FOREVER, 0, box, 9));
    CHECK_OK(echo_req(s, ECHO, 0, 0, 5000, NULL)); /* DEFER was handled */
    CHECK_OK(tand_server_stop(s, 0, NULL, 5000));
    CHECK_OK(tand_replies_wait(box, 5000));
    CHECK_INT(tand_replies_take(box, &tag, &reply), 1);
    CHECK_INT(tag, 9);
    CHECK_RC(reply.status, TAND_ENOPROC);
    tand_msg_clear(&reply);
    tand_replies_free(box);
    tand_server_release(s);
}

static void failed_sends(void)
{
    echo_shared sh = {0};
    tand_server *s;
    tand_replies *box;
    tand_msg m, reply;
    uint64_t tag;
    tand_stats st;

    CHECK_OK(echo_start(rt, &sh, 1, NULL, &s));
    CHECK_OK(tand_replies_new(&box));
    m = op_msg(ECHO, 1);
    CHECK_RC(tand_call_async(NULL, &m, 10, 0, box, 1), TAND_EINVAL);
    m = op_msg(ECHO, 1);
    CHECK_RC(tand_call_async(s, &m, 10, 0, NULL, 1), TAND_EINVAL);
    /* a full mailbox with TAND_NOWAIT: busy, and nothing in the box */
    CHECK_OK(echo_cast_op(s, SLEEP, 200, 0, 1000, 0));
    WAIT_FOR(tand_server_stats(s, &st) == 0 && st.mailbox_depth == 0, 5000);
    CHECK_OK(echo_cast_op(s, 0, 1, 0, 1000, 0));
    m = op_msg(ECHO, 1);
    CHECK_RC(tand_call_async(s, &m, 1000, TAND_NOWAIT, box, 1), TAND_EBUSY);
    CHECK_INT(tand_replies_count(box), 0);
    tand_server_stop(s, 0, NULL, 5000);
    m = op_msg(ECHO, 1);
    CHECK_RC(tand_call_async(s, &m, 1000, 0, box, 1), TAND_ENOPROC);
    CHECK_INT(tand_replies_count(box), 0);
    CHECK_INT(tand_replies_take(box, &tag, &reply), 0);
    tand_replies_free(box);
    tand_server_release(s);
}

/* Freed with calls queued, running and answered: no leak, no crash, and
** the servers carry on (ASan and TSan builds check the rest). */
static void free_in_flight(void)
{
    echo_shared sh = {0};
    tand_server *s;
    tand_replies *box;
    tand_msg m;
    int i;

    CHECK_OK(echo_start(rt, &sh, 0, NULL, &s));
    for (i = 0; i < 50; i++) {
        CHECK_OK(tand_replies_new(&box));
        m = op_msg(SLEEP, i % 3);
        CHECK_OK(tand_call_async(s, &m, TAND_FOREVER, 0, box, 1));
        m = op_msg(ECHO, i);
        CHECK_OK(tand_call_async(s, &m, TAND_FOREVER, 0, box, 2));
        if (i % 2)
            sleep_ms(1);
        tand_replies_free(box);
    }
    CHECK_OK(echo_req(s, ECHO, 1, 0, 5000, NULL));
    tand_server_stop(s, 0, NULL, 5000);
    tand_server_release(s);
}

static void pumped(void)
{
    tand_runtime_options ro = {0};
    tand_runtime *prt;
    echo_shared sh = {0};
    tand_server *s;
    tand_replies *box;
    tand_msg m, reply;
    uint64_t tag;

    CHECK_OK(tand_runtime_new(&ro, &prt));
    CHECK_OK(echo_start(prt, &sh, 0, NULL, &s));
    CHECK_OK(tand_replies_new(&box));
    m = op_msg(ECHO, 11);
    CHECK_OK(tand_call_async(s, &m, 5000, 0, box, 3));
    CHECK_INT(tand_replies_take(box, &tag, &reply), 0); /* nobody pumped */
    CHECK(!readable(tand_replies_fd(box), 0));
    CHECK(tand_runtime_pump(prt, 1000) >= 1);
    CHECK(readable(tand_replies_fd(box), 0));
    CHECK_INT(tand_replies_take(box, &tag, &reply), 1);
    CHECK_INT(tag, 3);
    CHECK_INT(reply.ival[0], 11);
    tand_replies_free(box);
    tand_runtime_free(prt);
    tand_server_release(s);
}

typedef struct owner {
    tand_server *s;
    int64_t numbers[4000];
    int failures;
} owner;

/* One box per thread, many calls in flight: every number once. */
static void *own(void *p)
{
    owner *o = p;
    tand_replies *box;
    tand_msg m, reply;
    uint64_t tag;
    int sent = 0, got = 0;
    if (tand_replies_new(&box) != 0) {
        o->failures++;
        return NULL;
    }
    while (got < 4000) {
        while (sent < 4000 && sent - got < 64) {
            m = op_msg(COUNT, 0);
            if (tand_call_async(o->s, &m, 10000, 0, box, (uint64_t)sent) != 0)
                o->failures++;
            sent++;
        }
        if (tand_replies_wait(box, 10000) != 0) {
            o->failures++;
            break;
        }
        while (tand_replies_take(box, &tag, &reply) == 1) {
            if (reply.status != 0 || tag >= 4000)
                o->failures++;
            else
                o->numbers[tag] = reply.ival[0];
            got++;
        }
    }
    tand_replies_free(box);
    return NULL;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void many_owners(void)
{
    enum { N = 4 };
    echo_shared sh = {0};
    tand_server *s;
    static owner o[N];
    static int64_t all[N * 4000];
    pthread_t th[N];
    int i, dup = 0;

    CHECK_OK(echo_start(rt, &sh, 0, NULL, &s));
    for (i = 0; i < N; i++) {
        o[i].s = s;
        pthread_create(&th[i], NULL, own, &o[i]);
    }
    for (i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT(o[i].failures, 0);
        memcpy(all + i * 4000, o[i].numbers, sizeof o[i].numbers);
    }
    qsort(all, N * 4000, sizeof all[0], cmp64);
    for (i = 0; i < N * 4000; i++)
        if (all[i] != i)
            dup++;
    CHECK_INT(dup, 0);
    tand_server_stop(s, 0, NULL, 5000);
    tand_server_release(s);
}

int main(void)
{
    CHECK_OK(tand_runtime_new(NULL, &rt));
    replies_by_tag();
    deadlines();
    failed_sends();
    free_in_flight();
    pumped();
    many_owners();
    tand_runtime_free(rt);
    return check_done("test_async");
}
