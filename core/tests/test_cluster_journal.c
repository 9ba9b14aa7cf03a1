/*
** test_cluster_journal.c - a deluxe machine journaled on its JetStream
** log, against three real nats-servers on loopback: it resumes its queue
** on another host; two owners at once hand out no number twice (the
** deposed one's first batch is refused, its caller told not_owner); a
** corrupt entry and a log of another kind are refused; snapshots keep
** the log short and are resumed from; an adopted
** journal is never leaked by a start that fails.
*/
#include "check.h"
#include "cluster.h"
#include "nats_test.h"

static tand_runtime *rt;
static jsCtx *js;

/* A deluxe machine 1..max on journal j (the server owns j). */
static int deluxe_upto(tand_journal *j, int64_t max, tand_server **out)
{
    tand_deluxe_options o;
    tand_journal *left;
    int rc;
    memset(&o, 0, sizeof o);
    o.min_number = 1;
    o.max_number = max;
    o.auto_shutdown_ms = TAND_FOREVER;
    tand__journal_adopt(j);
    rc = tand_deluxe_start(rt, &o, out);
    if ((left = tand__journal_unadopted()) != NULL)
        tand__journal_close(left);
    return rc;
}

static int deluxe_on(tand_journal *j, tand_server **out)
{
    return deluxe_upto(j, 100, out);
}

static int queue_len(tand_server *s, int64_t *first)
{
    tand_msg req = {0}, reply;
    tand_reader r;
    tand_item it;
    int n = -1;
    req.op = TAND_OP_REPORT_STATE;
    if (tand_call(s, &req, &reply, 5000, 0) != 0)
        return -1;
    /* [ {min_number=, max_number=, queue=[...], ...} ]: find the queue */
    tand_reader_init(&r, reply.data, reply.size);
    while (tand_unpack(&r, &it) == 0) {
        if (it.type == TAND_T_STR && it.v.s.len == 5 &&
            memcmp(it.v.s.p, "queue", 5) == 0 && tand_unpack(&r, &it) == 0 &&
            it.type == TAND_T_ARRAY) {
            n = (int)it.v.n;
            if (n > 0 && tand_unpack(&r, &it) == 0)
                *first = it.v.i;
            break;
        }
    }
    tand_msg_clear(&reply);
    return n;
}

static void resume_and_fence(void)
{
    tand__log *log;
    tand_journal *j;
    tand_server *a, *b;
    char err[512];
    int64_t n, first = 0;

    CHECK_OK(tand__log_open(js, "deli", 3, &log, err, sizeof err));
    CHECK_OK(tand__cluster_journal_open(log, "deluxe", "h1", 1, 5000, &j,
                                        err, sizeof err));
    CHECK(tand_journal_fresh(j));
    CHECK_OK(deluxe_on(j, &a));
    CHECK_OK(tand_deluxe_queue(a, &n, 5000));
    CHECK_INT(n, 1);
    CHECK_OK(tand_deluxe_queue(a, &n, 5000));
    CHECK_OK(tand_deluxe_queue(a, &n, 5000));
    CHECK_OK(tand_deluxe_serve(a, NULL, &n, 5000));
    CHECK_INT(n, 1);
    CHECK_OK(tand_server_stop(a, 0, NULL, 5000));
    tand_server_release(a);

    /* another host resumes it: the queue is {2, 3} */
    CHECK_OK(tand__cluster_journal_open(log, "deluxe", "h2", 2, 5000, &j,
                                        err, sizeof err));
    CHECK(!tand_journal_fresh(j));
    CHECK_OK(deluxe_on(j, &a));
    CHECK_INT(queue_len(a, &first), 2);
    CHECK_INT(first, 2);
    CHECK_OK(tand_deluxe_queue(a, &n, 5000));
    CHECK_INT(n, 4);

    /* a third host takes over while h2 still runs it */
    CHECK_OK(tand__cluster_journal_open(log, "deluxe", "h3", 3, 5000, &j,
                                        err, sizeof err));
    CHECK_OK(deluxe_on(j, &b));
    /* h2's next batch is refused: its caller hears not_owner, and it
    ** stops, having answered nothing from its stale state */
    CHECK_RC(tand_deluxe_queue(a, &n, 5000), TAND_ENOTOWNER);
    WAIT_FOR(!tand_server_alive(a), 5000);
    tand_server_release(a);
    CHECK_INT(queue_len(b, &first), 3); /* 2, 3, 4 */
    CHECK_OK(tand_deluxe_queue(b, &n, 5000));
    CHECK_INT(n, 5); /* never 4 again */
    CHECK_OK(tand_server_stop(b, 0, NULL, 5000));
    tand_server_release(b);

    /* a counter on the deluxe log is refused */
    CHECK_RC(tand__cluster_journal_open(log, "counter", "h4", 4, 5000, &j,
                                        err, sizeof err),
             TAND_ECONFIG);
    CHECK(strstr(err, "another kind") != NULL);
    tand__log_close(log);
}

static void corrupt_entry(void)
{
    tand__log *log;
    tand_journal *j;
    char err[512];
    uint64_t seq;
    CHECK_OK(tand__log_open(js, "corrupt", 3, &log, err, sizeof err));
    CHECK_OK(tand__cluster_journal_open(log, "deluxe", "h1", 1, 5000, &j,
                                        err, sizeof err));
    tand__journal_close(j);
    CHECK_OK(tand__log_append(log, "\xc1garbage", 8, "junk", 1, 5000, &seq,
                              err, sizeof err));
    CHECK_RC(tand__cluster_journal_open(log, "deluxe", "h2", 2, 5000, &j,
                                        err, sizeof err),
             TAND_EJOURNAL);
    CHECK(strstr(err, "entry 2") != NULL);
    tand__log_close(log);
}

/* The stream's first and last sequences. */
static void stream_range(const char *stream, uint64_t *first, uint64_t *last)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    *first = *last = 0;
    if (js_GetStreamInfo(&si, js, stream, NULL, &jerr) == NATS_OK) {
        *first = si->State.FirstSeq;
        *last = si->State.LastSeq;
        jsStreamInfo_Destroy(si);
    }
}

/* Every number of s's queue, in order, into q (at most cap); how many. */
static int queue_of(tand_server *s, int64_t *q, int cap)
{
    tand_msg req = {0}, reply;
    tand_reader r;
    tand_item it;
    int n = -1, i;
    req.op = TAND_OP_REPORT_STATE;
    if (tand_call(s, &req, &reply, 5000, 0) != 0)
        return -1;
    tand_reader_init(&r, reply.data, reply.size);
    while (tand_unpack(&r, &it) == 0)
        if (it.type == TAND_T_STR && it.v.s.len == 5 &&
            memcmp(it.v.s.p, "queue", 5) == 0 && tand_unpack(&r, &it) == 0 &&
            it.type == TAND_T_ARRAY) {
            n = (int)it.v.n;
            for (i = 0; i < n && i < cap && tand_unpack(&r, &it) == 0; i++)
                q[i] = it.v.i;
            break;
        }
    tand_msg_clear(&reply);
    return n;
}

/* Snapshots: with small entries and a small threshold, a machine's log
** is snapshotted in chunks and purged as it goes, and another host
** resumes the same queue from it; a snapshot cut short is passed over,
** and a whole one that is not sound is refused. */
static void snapshots(void)
{
    tand__log *log;
    tand_journal *j;
    tand_server *a;
    char err[512];
    int64_t n, q1[400], q2[400];
    uint64_t first, last, seq;
    int i, len1, len2;

    CHECK_OK(tand__log_open(js, "snapshots", 3, &log, err, sizeof err));
    tand__log_set_max_entry(log, 600); /* a chunk holds about 25 numbers */
    CHECK_OK(tand__cluster_journal_open(log, "deluxe", "h1", 1, 5000, &j,
                                        err, sizeof err));
    tand__cluster_journal_set_snapshot_min(j, 2000);
    CHECK_OK(deluxe_upto(j, 1000000, &a));
    for (i = 0; i < 400; i++) { /* a queue of about 180 numbers */
        if (i % 5 == 4 || (i >= 300 && i % 2 == 1))
            CHECK_OK(tand_deluxe_serve(a, NULL, &n, 5000));
        else
            CHECK_OK(tand_deluxe_queue(a, &n, 5000));
    }
    len1 = queue_of(a, q1, 400);
    CHECK(len1 > 100 && len1 < 400); /* a snapshot of several chunks */
    CHECK_OK(tand_server_stop(a, 0, NULL, 5000));
    tand_server_release(a);
    stream_range("TAND_snapshots", &first, &last);
    CHECK(first > 100); /* purged up to a snapshot */
    CHECK(last > 400);

    /* another host resumes the same queue from the snapshot and after */
    CHECK_OK(tand__cluster_journal_open(log, "deluxe", "h2", 2, 5000, &j,
                                        err, sizeof err));
    CHECK(!tand_journal_fresh(j));
    CHECK_OK(deluxe_upto(j, 1000000, &a));
    len2 = queue_of(a, q2, 400);
    CHECK_INT(len2, len1);
    CHECK(memcmp(q1, q2, (size_t)len1 * sizeof q1[0]) == 0);
    CHECK_OK(tand_server_stop(a, 0, NULL, 5000));
    tand_server_release(a);

    /* the first chunk of a snapshot whose owner died then: passed over */
    {
        static const char cut[] =
            "\x95\xa4" "snap\xa4" "cut1\x00\x03\xa3\x93\xa6" "d";
        stream_range("TAND_snapshots", &first, &last);
        CHECK_OK(tand__log_append(log, cut, sizeof cut - 1, "cut", last,
                                  5000, &seq, err, sizeof err));
    }
    CHECK_OK(tand__cluster_journal_open(log, "deluxe", "h3", 3, 5000, &j,
                                        err, sizeof err));
    CHECK_OK(deluxe_upto(j, 1000000, &a));
    len2 = queue_of(a, q2, 400);
    CHECK_INT(len2, len1);
    CHECK(memcmp(q1, q2, (size_t)len1 * sizeof q1[0]) == 0);
    CHECK_OK(tand_server_stop(a, 0, NULL, 5000));
    tand_server_release(a);

    /* a whole snapshot of one chunk that is not one: refused */
    {
        static const char bad[] =
            "\x95\xa4" "snap\xa4" "bad1\x00\x01\xa2\x93\xa6";
        stream_range("TAND_snapshots", &first, &last);
        CHECK_OK(tand__log_append(log, bad, sizeof bad - 1, "bad", last,
                                  5000, &seq, err, sizeof err));
    }
    CHECK_RC(tand__cluster_journal_open(log, "deluxe", "h4", 4, 5000, &j,
                                        err, sizeof err),
             TAND_EJOURNAL);
    CHECK(strstr(err, "snapshot") != NULL);
    /* an entry larger than the servers take is refused, saying so */
    {
        static char big[700];
        CHECK_RC(tand__log_append(log, big, sizeof big, "big", seq, 5000,
                                  &seq, err, sizeof err),
                 TAND_EINVAL);
        CHECK(strstr(err, "600 at most") != NULL);
    }
    tand__log_close(log);
}

static void failed_start(void)
{
    tand__log *log;
    tand_journal *j;
    tand_deluxe_options o;
    tand_server *s;
    char err[512];
    CHECK_OK(tand__log_open(js, "failed start", 3, &log, err, sizeof err));
    CHECK_OK(tand__cluster_journal_open(log, "deluxe", "h1", 1, 5000, &j,
                                        err, sizeof err));
    memset(&o, 0, sizeof o);
    o.min_number = 5;
    o.max_number = 5; /* refused before the server starts */
    tand__journal_adopt(j);
    CHECK(tand_deluxe_start(rt, &o, &s) != 0);
    j = tand__journal_unadopted();
    CHECK(j != NULL); /* the caller's again: closed here, not leaked */
    tand__journal_close(j);
    tand__log_close(log);
}

int main(int argc, char **argv)
{
    char urls[1024];
    natsConnection *nc;
    natsStatus st;
    if (nats_test_init(argc, argv) != 0)
        return 2;
    start_servers(urls, sizeof urls);
    nc = connect_to(urls, &st);
    CHECK(st == NATS_OK);
    if (st != NATS_OK)
        return check_done("test_cluster_journal");
    CHECK(natsConnection_JetStream(&js, nc, NULL) == NATS_OK);
    CHECK_OK(tand_runtime_new(NULL, &rt));
    resume_and_fence();
    corrupt_entry();
    snapshots();
    failed_start();
    tand_runtime_free(rt);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    nats_Close();
    return check_done("test_cluster_journal");
}
