/*
** test_cluster.c - one deluxe machine shared by three hosts (three
** clusters on runtimes of their own, in this process) through three real
** nats-servers on loopback: one host owns it, every host's calls reach
** it (the owner's own directly, the others' over NATS), and when the
** owner leaves, another takes over from the stream and goes on with the
** next number. A host with owner = never only calls; bad options are
** refused; a machine nobody started is noproc.
*/
#include "check.h"
#include "nats_test.h"

#include <pthread.h>
#include <time.h>

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

#define LEASE_MS 600

static char urls[1024];

static int start_deli(tand_runtime *rt, const char *name, void *arg,
                      tand_server **out, char *err, size_t n)
{
    tand_deluxe_options o;
    (void)arg;
    memset(&o, 0, sizeof o);
    o.min_number = 1;
    o.max_number = 1000000;
    o.auto_shutdown_ms = TAND_FOREVER;
    o.name = name;
    o.error = err;
    o.error_size = n;
    return tand_deluxe_start(rt, &o, out);
}

typedef struct host {
    tand_runtime *rt;
    tand_cluster *c;
    tand_cluster_machine *m;
    char name[16];
} host;

/* Joins as host `name` and starts `machine` with that config there. */
static int open_host_as(host *h, const char *name, const char *machine,
                        int owner, const char *config, char *err, size_t n)
{
    tand_cluster_options o;
    tand_cluster_machine_options mo;
    int rc;
    snprintf(h->name, sizeof h->name, "%s", name);
    CHECK_OK(tand_runtime_new(NULL, &h->rt));
    tand_cluster_options_init(&o);
    o.servers = urls;
    o.host = name;
    o.lease_ms = LEASE_MS;
    o.replicas = 3;
    o.error = err;
    o.error_size = n;
    if ((rc = tand_cluster_open(h->rt, &o, &h->c)) != 0) {
        fprintf(stderr, "%s: %s\n", name, err);
        return rc;
    }
    memset(&mo, 0, sizeof mo);
    mo.name = machine;
    mo.kind = "deluxe";
    mo.config = config;
    mo.owner = owner;
    mo.start = start_deli;
    mo.error = err;
    mo.error_size = n;
    return tand_cluster_start(h->c, &mo, &h->m);
}

static int open_host(host *h, const char *name, int owner)
{
    char err[512];
    int rc = open_host_as(h, name, "deli", owner, NULL, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "%s: start: %s\n", name, err);
    return rc;
}

static void close_host(host *h)
{
    tand_cluster_machine_release(h->m);
    tand_cluster_close(h->c);
    tand_runtime_free(h->rt);
    memset(h, 0, sizeof *h);
}

static int take(host *h, int64_t *n)
{
    tand_msg req = {0}, reply;
    int rc;
    req.op = TAND_OP_QUEUE_NEW_NUMBER;
    rc = tand_cluster_call(h->m, &req, &reply, 5000);
    *n = reply.ival[0];
    tand_msg_clear(&reply);
    return rc;
}

/* The owner's name, once some host owns the machine (within ms). */
static int owner_of(host *h, char *who, size_t size, uint64_t *epoch,
                    int64_t ms)
{
    int64_t until = tand_now_ms() + ms;
    do {
        if (tand_cluster_owner(h->m, who, size, epoch) == 0 && *epoch > 0)
            return 0;
        sleep_ms(20);
    } while (tand_now_ms() < until);
    return TAND_ETIMEDOUT;
}

static void shared_machine(void)
{
    host hs[3];
    char who[64] = "", who2[64] = "";
    uint64_t epoch = 0, epoch2 = 0;
    int64_t n, last = 0, t0;
    int i, k, owner = -1;

    memset(hs, 0, sizeof hs);
    CHECK_OK(open_host(&hs[0], "a", TAND_OWNER_ANY));
    CHECK_OK(open_host(&hs[1], "b", TAND_OWNER_ANY));
    CHECK_OK(open_host(&hs[2], "c", TAND_OWNER_NEVER));
    CHECK_OK(owner_of(&hs[2], who, sizeof who, &epoch, 10000));
    CHECK(strcmp(who, "a") == 0 || strcmp(who, "b") == 0);
    owner = strcmp(who, "a") == 0 ? 0 : 1;
    /* every host's calls reach the one machine, in order */
    for (k = 0; k < 30; k++) {
        i = k % 3;
        CHECK_OK(take(&hs[i], &n));
        CHECK_INT(n, last + 1);
        last = n;
    }
    /* the owner leaves: the other host takes over from the stream */
    t0 = tand_now_ms();
    close_host(&hs[owner]);
    CHECK_OK(take(&hs[2], &n)); /* waits for the new owner */
    CHECK_INT(n, last + 1);
    last = n;
    CHECK(tand_now_ms() - t0 < 15000); /* it happens (how fast: bench) */
    CHECK_OK(owner_of(&hs[2], who2, sizeof who2, &epoch2, 5000));
    CHECK(strcmp(who2, owner == 0 ? "b" : "a") == 0);
    CHECK(epoch2 > epoch);
    CHECK_OK(take(&hs[1 - owner], &n));
    CHECK_INT(n, last + 1);
    /* a cast from a host that does not own it reaches the owner: a reset
    ** (the deluxe machine's cast) starts the numbers again */
    {
        tand_msg msg = {0};
        int64_t until = tand_now_ms() + 10000;
        msg.op = TAND_OP_RESET_STATE;
        CHECK_OK(tand_cluster_cast(hs[2].m, &msg, 0));
        msg.op = 12345; /* an info nobody handles: dropped, no harm */
        CHECK_OK(tand_cluster_cast(hs[2].m, &msg, 1));
        do
            CHECK_OK(take(&hs[2], &n));
        while (n != 1 && tand_now_ms() < until);
        CHECK_INT(n, 1);
        CHECK_OK(take(&hs[1 - owner], &n));
        CHECK_INT(n, 2);
    }
    for (i = 0; i < 3; i++)
        if (hs[i].c != NULL)
            close_host(&hs[i]);
}

/* Hosts that give a machine other options than its owner runs it with
** are refused, saying both; while nobody owns it, the next owner's
** options stand. */
static void options_disagree(void)
{
    host a, b, d;
    char err[512], who[64];
    uint64_t epoch;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    memset(&d, 0, sizeof d);
    CHECK_OK(open_host_as(&a, "a", "opts", TAND_OWNER_ANY, "max_number=99",
                          err, sizeof err));
    CHECK_OK(owner_of(&a, who, sizeof who, &epoch, 10000));
    CHECK(strcmp(who, "a") == 0);
    CHECK_RC(open_host_as(&b, "b", "opts", TAND_OWNER_ANY, "max_number=50",
                          err, sizeof err),
             TAND_ECONFIG);
    CHECK(strstr(err, "disagree") != NULL);
    CHECK(strstr(err, "a runs it with {max_number=99}") != NULL);
    CHECK(strstr(err, "{max_number=50}") != NULL);
    CHECK(b.m == NULL);
    /* the same options are welcome, as a client too */
    CHECK_OK(open_host_as(&d, "d", "opts", TAND_OWNER_NEVER, "max_number=99",
                          err, sizeof err));
    tand_cluster_close(b.c);
    tand_runtime_free(b.rt);
    memset(&b, 0, sizeof b);
    /* nobody owns it once a has left and its lease expired: then b's
    ** options are taken, and b owns it */
    close_host(&a);
    WAIT_FOR(tand_cluster_owner(d.m, who, sizeof who, &epoch) ==
                 TAND_ENOPROC,
             10000);
    close_host(&d);
    CHECK_OK(open_host_as(&b, "b", "opts", TAND_OWNER_ANY, "max_number=50",
                          err, sizeof err));
    CHECK_OK(owner_of(&b, who, sizeof who, &epoch, 10000));
    CHECK(strcmp(who, "b") == 0);
    close_host(&b);
}

typedef struct caller {
    tand_cluster_machine *m;
    int last, calls;
} caller;

static void *call_until_closed(void *arg)
{
    caller *k = arg;
    int64_t until = tand_now_ms() + 20000;
    int64_t n;
    host h;
    h.m = k->m;
    do {
        k->last = take(&h, &n);
        k->calls++;
    } while (k->last != TAND_ECLUSTER && tand_now_ms() < until);
    return NULL;
}

/* A cluster closed while other threads call its machine: they are
** answered cluster_unavailable from then on, and nothing is freed under
** them (the handles keep the cluster until they are released). */
static void close_while_calling(void)
{
    host h;
    caller k[4];
    pthread_t th[4];
    char err[512], who[64];
    uint64_t epoch;
    int i;
    memset(&h, 0, sizeof h);
    CHECK_OK(open_host_as(&h, "e", "closing", TAND_OWNER_ANY, NULL, err,
                          sizeof err));
    CHECK_OK(owner_of(&h, who, sizeof who, &epoch, 10000));
    for (i = 0; i < 4; i++) {
        k[i].m = h.m;
        k[i].calls = 0;
        k[i].last = 0;
        pthread_create(&th[i], NULL, call_until_closed, &k[i]);
    }
    sleep_ms(300);
    tand_cluster_close(h.c);
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_RC(k[i].last, TAND_ECLUSTER);
        CHECK(k[i].calls > 1);
    }
    CHECK_RC(tand_cluster_owner(h.m, who, sizeof who, &epoch), TAND_ECLUSTER);
    tand_cluster_machine_release(h.m); /* the cluster goes with it */
    tand_runtime_free(h.rt);
}

/* Takes one reply from box within ms: its status (and *n its number). */
static int take_reply(tand_replies *box, uint64_t *tag, int64_t *n,
                      int64_t ms)
{
    tand_msg reply;
    int rc;
    if (tand_replies_wait(box, ms) != 0 ||
        !tand_replies_take(box, tag, &reply))
        return -1000;
    rc = reply.status;
    *n = reply.ival[0];
    tand_msg_clear(&reply);
    return rc;
}

/* Asynchronous calls from a host that does not own the machine: answered
** into the box in any order, each number once; while nobody may own a
** machine they end at their deadline; the cluster's close answers those
** in flight; a box freed with calls in flight leaks nothing. */
static void async_calls(void)
{
    host a, b;
    tand_replies *box;
    tand_msg req = {0};
    char err[512], who[64];
    uint64_t epoch, tag, seen = 0;
    int64_t n;
    int i;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    CHECK_OK(open_host_as(&a, "a", "async", TAND_OWNER_ANY, NULL, err,
                          sizeof err));
    CHECK_OK(owner_of(&a, who, sizeof who, &epoch, 10000));
    CHECK_OK(open_host_as(&b, "b", "async", TAND_OWNER_NEVER, NULL, err,
                          sizeof err));
    CHECK_OK(tand_replies_new(&box));
    for (i = 1; i <= 8; i++) {
        req.op = TAND_OP_QUEUE_NEW_NUMBER;
        CHECK_OK(tand_cluster_call_async(i % 4 ? b.m : a.m, &req, 5000, box,
                                         (uint64_t)i));
    }
    for (i = 0; i < 8; i++) {
        CHECK_OK(take_reply(box, &tag, &n, 5000));
        CHECK(tag >= 1 && tag <= 8 && n >= 1 && n <= 8);
        CHECK((seen & (1u << n)) == 0); /* each number once */
        seen |= 1u << n;
    }
    CHECK_INT((int64_t)tand_replies_count(box), 0);
    close_host(&a); /* nobody may own it now: b only calls */
    req.op = TAND_OP_QUEUE_NEW_NUMBER;
    CHECK_OK(tand_cluster_call_async(b.m, &req, 300, box, 9));
    CHECK_RC(take_reply(box, &tag, &n, 5000), TAND_ETIMEDOUT);
    CHECK_INT((int64_t)tag, 9);
    {
        tand_replies *gone;
        CHECK_OK(tand_replies_new(&gone));
        req.op = TAND_OP_QUEUE_NEW_NUMBER;
        CHECK_OK(tand_cluster_call_async(b.m, &req, 10000, gone, 1));
        tand_replies_free(gone); /* the call is given up; the close ends it */
    }
    req.op = TAND_OP_QUEUE_NEW_NUMBER;
    CHECK_OK(tand_cluster_call_async(b.m, &req, 10000, box, 10));
    tand_cluster_close(b.c);
    CHECK_RC(take_reply(box, &tag, &n, 5000), TAND_ECLUSTER);
    CHECK_INT((int64_t)tag, 10);
    req.op = TAND_OP_QUEUE_NEW_NUMBER;
    CHECK_RC(tand_cluster_call_async(b.m, &req, 1000, box, 11),
             TAND_ECLUSTER);
    tand_replies_free(box);
    tand_cluster_machine_release(b.m);
    tand_runtime_free(b.rt);
}

static void bad_input(void)
{
    tand_runtime *rt;
    tand_cluster *c = NULL;
    tand_cluster_options o;
    tand_cluster_machine *m;
    char err[512];
    CHECK_OK(tand_runtime_new(NULL, &rt));
    tand_cluster_options_init(&o);
    o.error = err;
    o.error_size = sizeof err;
    CHECK_RC(tand_cluster_open(rt, &o, &c), TAND_ECONFIG); /* no servers */
    o.servers = urls;
    CHECK_RC(tand_cluster_open(rt, &o, &c), TAND_ECONFIG); /* no host */
    o.host = "x";
    o.lease_ms = 5;
    CHECK_RC(tand_cluster_open(rt, &o, &c), TAND_ECONFIG);
    CHECK(strstr(err, "lease_ms") != NULL);
    o.lease_ms = LEASE_MS;
    o.replicas = 9;
    CHECK_RC(tand_cluster_open(rt, &o, &c), TAND_ECONFIG);
    /* the bucket was made with 3 replicas and LEASE_MS: a host that says
    ** otherwise is refused */
    o.replicas = 3;
    o.lease_ms = LEASE_MS * 2;
    CHECK_RC(tand_cluster_open(rt, &o, &c), TAND_ECONFIG);
    CHECK(strstr(err, "disagree") != NULL);
    o.lease_ms = LEASE_MS;
    o.servers = "nats://127.0.0.1:1";
    CHECK_RC(tand_cluster_open(rt, &o, &c), TAND_ECLUSTER);
    CHECK(strstr(err, "cannot reach") != NULL);
    o.servers = urls;
    CHECK_OK(tand_cluster_open(rt, &o, &c));
    CHECK_RC(tand_cluster_whereis(c, "nobody ran it", &m, err, sizeof err),
             TAND_ENOPROC);
    tand_cluster_close(c);
    tand_runtime_free(rt);
}

int main(int argc, char **argv)
{
    if (nats_test_init(argc, argv) != 0)
        return 2;
    start_servers(urls, sizeof urls);
    shared_machine();
    options_disagree();
    close_while_calling();
    async_calls();
    bad_input();
    nats_Close();
    return check_done("test_cluster");
}
