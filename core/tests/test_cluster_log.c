/*
** test_cluster_log.c - a clustered machine's fenced log against three
** real nats-servers on loopback (core/tests/nats_cluster.sh starts them
** and stops them by pid): appends fenced by the stream-wide last
** sequence, the first append to an empty stream included; a retried
** append answered as a duplicate; entries replayed; a stream with other
** replicas refused; an unreachable server reported as cluster_unavailable.
*/
#include "check.h"
#include "cluster.h"
#include "nats_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* What a replay gave: the entries' sequences and (short) texts. */
typedef struct entries {
    int n;
    uint64_t seq[8];
    char data[8][16];
} entries;

static int collect(void *ud, uint64_t seq, const char *data, size_t len)
{
    entries *e = ud;
    if (e->n == 8 || len >= sizeof e->data[0])
        return TAND_EINVAL;
    e->seq[e->n] = seq;
    memcpy(e->data[e->n], data, len);
    e->data[e->n][len] = '\0';
    e->n++;
    return 0;
}

static void fence(jsCtx *js)
{
    tand__log *l;
    entries got;
    char err[256];
    uint64_t seq = 0, last = 99;
    CHECK_OK(tand__log_open(js, "fence test", 3, &l, err, sizeof err));
    CHECK(strncmp(tand__log_stream(l), "TAND_x_", 7) == 0); /* hex name */
    CHECK_OK(tand__log_last(l, &last, err, sizeof err));
    CHECK_INT(last, 0);
    /* the first append to the empty stream is fenced too */
    CHECK_OK(tand__log_append(l, "one", 3, "h1-1", 0, 5000, &seq, err,
                              sizeof err));
    CHECK_INT(seq, 1);
    CHECK_RC(tand__log_append(l, "rival", 5, "h2-1", 0, 5000, &seq, err,
                              sizeof err),
             TAND_ENOTOWNER);
    CHECK_OK(tand__log_append(l, "two", 3, "h1-2", 1, 5000, &seq, err,
                              sizeof err));
    CHECK_INT(seq, 2);
    /* a retry of an append that went through: a duplicate, its sequence */
    CHECK_OK(tand__log_append(l, "two", 3, "h1-2", 1, 5000, &seq, err,
                              sizeof err));
    CHECK_INT(seq, 2);
    /* a stale owner is refused, whatever its data */
    CHECK_RC(tand__log_append(l, "stale", 5, "h2-2", 1, 5000, &seq, err,
                              sizeof err),
             TAND_ENOTOWNER);
    CHECK(strstr(err, "another host appended") != NULL);
    CHECK_OK(tand__log_last(l, &last, err, sizeof err));
    CHECK_INT(last, 2);
    got.n = 0;
    CHECK_OK(tand__log_replay(l, 2, collect, &got, 5000, err, sizeof err));
    CHECK_INT(got.n, 2);
    CHECK(got.seq[0] == 1 && strcmp(got.data[0], "one") == 0);
    CHECK(got.seq[1] == 2 && strcmp(got.data[1], "two") == 0);
    /* up to an entry, not past it */
    got.n = 0;
    CHECK_OK(tand__log_replay(l, 1, collect, &got, 5000, err, sizeof err));
    CHECK_INT(got.n, 1);
    tand__log_close(l);
    /* the same machine with other replicas is refused */
    CHECK_RC(tand__log_open(js, "fence test", 1, &l, err, sizeof err),
             TAND_ECONFIG);
    CHECK(strstr(err, "3 replicas") != NULL);
    CHECK_RC(tand__log_open(js, "", 3, &l, err, sizeof err), TAND_EINVAL);
    CHECK_RC(tand__log_open(js, "x", 0, &l, err, sizeof err), TAND_EINVAL);
}

int main(int argc, char **argv)
{
    char urls[1024];
    natsConnection *nc;
    jsCtx *js = NULL;
    natsStatus st;
    if (nats_test_init(argc, argv) != 0)
        return 2;
    /* nobody listens here: the connection is refused */
    nc = connect_to("nats://127.0.0.1:1", &st);
    CHECK(nc == NULL && st != NATS_OK);
    start_servers(urls, sizeof urls);
    nc = connect_to(urls, &st);
    if (st != NATS_OK)
        fprintf(stderr, "connect %s: %s\n", urls, nats_GetLastError(NULL));
    CHECK(st == NATS_OK);
    if (st != NATS_OK)
        return check_done("test_cluster_log");
    CHECK(natsConnection_JetStream(&js, nc, NULL) == NATS_OK);
    fence(js);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    nats_Close();
    return check_done("test_cluster_log");
}
