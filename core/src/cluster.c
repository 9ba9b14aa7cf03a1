/*
** cluster.c - machines shared by many hosts through NATS JetStream: who
** owns a machine, how the owner runs it, and how the others' calls reach
** it.
**
** DESIGN: tand writes no consensus of its own. A lease in a JetStream KV
** bucket (its max age is lease_ms) picks which host tries to own a
** machine; the fence of its log (cluster_log.c, cluster_journal.c) alone
** makes ownership exclusive. Each host runs three threads of its own:
** - the control thread, every lease_ms / 4: renews the leases this host
**   holds, and hands each machine it may own but does not to
** - the takeover thread, which tries to create the lease; with it, it
**   replays the log, fences it and starts the machine with the log as
**   its journal (tand__journal_adopt), then subscribes to the machine's
**   call subject, and renews the lease (making it again if it lapsed
**   during the replay and nobody took it meanwhile). Takeovers block on
**   NATS (a long replay, a stream whose leader died), so they do not
**   hold up the renewals. A machine that ends (its first refused
**   append, a crash) is let go: the subscription is dropped and the
**   lease left to expire, so another host takes over. A machine is
**   looked at by one of the two threads at a time (`busy`).
** - the bridge: requests from NATS arrive on libnats' threads, which only
**   queue them for the bridge and never run a server or wait; the bridge
**   sends each to the machine as an asynchronous call into its reply box
**   and publishes each reply as it comes (after the batch's append is
**   acknowledged: a journaled server holds its replies until its commit).
** A caller's call goes to the local machine when this host owns it, else
** over NATS request/reply to the owner, with the caller's deadline; no
** responder (no owner right now) is retried until the deadline. An
** asynchronous call's reply comes to this host's inbox, on a libnats
** thread, which completes its slot in the caller's box; the bridge
** retries those that found no responder and ends those past their
** deadline.
** Locks: c->mu guards the machines list, each machine's `local`, the
** bridge's queue and this host's asynchronous calls; it is a leaf lock
** (the only calls out while it is held are libnats publishes, which call
** back nothing of ours).
** Lifetime: each machine record holds a reference on its cluster, so a
** handle used on one thread while another closes the cluster never
** finds it freed: tand_cluster_close stops everything and marks it
** closed (its handles then answer TAND_ECLUSTER), and the last
** reference frees it.
*/
#include "cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BUCKET "tand_leases"

typedef struct incoming {
    struct incoming *next;
    tand_cluster_machine *m; /* a reference */
    char *reply_to;
    char *data;
    size_t size;
} incoming;

/* An asynchronous call of this host's to a machine another host owns,
** waiting for its reply over NATS: the caller's box holds `slot`, which
** the reply (or its deadline, or the cluster's close) completes. */
typedef struct remote_call {
    struct remote_call *next;
    uint64_t id;         /* the last token of its reply subject */
    tand_slot *slot;
    int64_t deadline_ns; /* INT64_MAX: none */
    int64_t retry_ns;    /* no responders: sent again then (0: not) */
    char *subject;       /* the machine's call subject */
    char *data;          /* the request, for a retry */
    size_t size;
} remote_call;

/* A call of the bridge in flight: where its reply goes. */
typedef struct pending {
    struct pending *next;
    uint64_t tag;
    char *reply_to;
} pending;

struct tand_cluster_machine {
    _Atomic int refs;
    uint64_t id;    /* in `records`, for handles sent between threads */
    tand_cluster *c;
    char name[TAND_NAME_MAX + 1];
    char subject[2 * TAND_NAME_MAX + 32];
    char key[2 * TAND_NAME_MAX + 8]; /* in the lease bucket */
    char kind[33];
    char config[TAND_CLUSTER_CONFIG_MAX + 1];
    int owner;
    int (*start)(tand_runtime *rt, const char *name, void *arg,
                 tand_server **out, char *err, size_t err_size);
    void *arg;
    void (*free_arg)(void *arg);
    /* the thread's whose look holds `busy` (control or takeover): */
    tand__log *log;
    uint64_t lease_rev, epoch;
    natsSubscription *sub;
    char error[512]; /* guarded by c->mu: the last takeover's failure */
    /* guarded by c->mu: */
    tand_server *local; /* the machine while this host owns it */
    bool started;       /* c:start was called on this host */
    bool wanted;        /* for the takeover thread to try */
    bool busy;          /* in a look of the control or takeover thread,
                        ** whose fields above (the control thread's)
                        ** are then that thread's alone */
    tand_cluster_machine *next;
};

struct tand_cluster {
    _Atomic int refs;    /* the opener's, and one per machine record */
    atomic_bool closed;  /* tand_cluster_close was called */
    tand_runtime *rt;
    natsConnection *nc;
    jsCtx *js;
    kvStore *kv;
    char host[TAND_NAME_MAX + 1];
    int64_t lease_ms, timeout_ms;
    int replicas;
    bool stubborn; /* TAND_CLUSTER_STUBBORN_FOR_TESTS=1: see look_after */
    pthread_mutex_t mu;
    pthread_cond_t control_cv, takeover_cv;
    bool closing;              /* guarded by mu */
    tand_cluster_machine *machines; /* guarded by mu */
    pthread_t control, takeover, bridge;
    bool control_started, takeover_started, bridge_started;
    int wake[2];               /* the bridge's: a byte per queued request */
    incoming *in_head, *in_tail; /* guarded by mu */
    tand_replies *box;         /* the bridge's */
    pending *pending;          /* the bridge's */
    uint64_t next_tag;         /* the bridge's */
    /* this host's asynchronous calls over NATS: their replies come to
    ** inbox.<id>, and the bridge sweeps their deadlines and retries */
    char inbox[128];
    natsSubscription *calls_sub;
    remote_call *calls;        /* guarded by mu */
    uint64_t last_call;        /* guarded by mu */
};

void tand_cluster_options_init(tand_cluster_options *o)
{
    memset(o, 0, sizeof o[0]);
    o->lease_ms = 3000;
    o->replicas = 1;
    o->timeout_ms = 2000;
}

static void say(char *err, size_t n, const char *fmt, const char *a,
                const char *b)
{
    if (err != NULL && n > 0)
        snprintf(err, n, fmt, a, b ? b : "");
}

/* ---- encoding of calls and replies over NATS ---- */

/* What a request from NATS is. */
enum { REQ_CALL, REQ_CAST, REQ_INFO };

/* [how, op, ival0, ival1, timeout_ms, data or nil] */
static int encode_request(int how, const tand_msg *req, int64_t timeout_ms,
                          tand_buf *b)
{
    tand_buf_init(b);
    tand_pack_array(b, 6);
    tand_pack_int(b, how);
    tand_pack_int(b, req->op);
    tand_pack_int(b, req->ival[0]);
    tand_pack_int(b, req->ival[1]);
    tand_pack_int(b, timeout_ms);
    if (req->data != NULL)
        tand_pack_str(b, req->data, req->size);
    else
        tand_pack_nil(b);
    return b->err ? TAND_ENOMEM : 0;
}

/* [status, ival0, ival1, data or nil] */
static int encode_reply(const tand_msg *reply, tand_buf *b)
{
    tand_buf_init(b);
    tand_pack_array(b, 4);
    tand_pack_int(b, reply->status);
    tand_pack_int(b, reply->ival[0]);
    tand_pack_int(b, reply->ival[1]);
    if (reply->data != NULL)
        tand_pack_str(b, reply->data, reply->size);
    else
        tand_pack_nil(b);
    return b->err ? TAND_ENOMEM : 0;
}

/* Decodes n integers then the data of a request or a reply into msg (its
** data copied, NUL-terminated as details are). 0, or TAND_EBADMSG. */
static int decode(const char *p, size_t size, int64_t *ints, int nints,
                  tand_msg *msg)
{
    tand_reader r;
    tand_item it;
    int i;
    memset(msg, 0, sizeof *msg);
    tand_reader_init(&r, p, size);
    if (tand_unpack(&r, &it) != 0 || it.type != TAND_T_ARRAY ||
        it.v.n != (uint32_t)nints + 1)
        return TAND_EBADMSG;
    for (i = 0; i < nints; i++) {
        if (tand_unpack(&r, &it) != 0 || it.type != TAND_T_INT)
            return TAND_EBADMSG;
        ints[i] = it.v.i;
    }
    if (tand_unpack(&r, &it) != 0)
        return TAND_EBADMSG;
    if (it.type == TAND_T_STR) {
        if ((msg->data = tand__malloc(it.v.s.len + 1)) == NULL)
            return TAND_ENOMEM;
        memcpy(msg->data, it.v.s.p, it.v.s.len);
        msg->data[it.v.s.len] = '\0';
        msg->size = it.v.s.len;
    } else if (it.type != TAND_T_NIL) {
        return TAND_EBADMSG;
    }
    return 0;
}

/* ---- machines ---- */

/* Every machine record of the process by id, so that a handle can travel
** in a message as its id: a record leaves the table before it is freed,
** and one whose last reference is going is not found. */
static pthread_mutex_t records_mu = PTHREAD_MUTEX_INITIALIZER;
static tand_table *records;  /* guarded by records_mu */
static uint64_t last_record; /* guarded by records_mu */

static int record_add(tand_cluster_machine *m)
{
    int rc = TAND_ENOMEM;
    pthread_mutex_lock(&records_mu);
    if (records == NULL)
        records = tand__table_new();
    if (records != NULL) {
        m->id = ++last_record;
        rc = tand__table_put(records, &m->id, sizeof m->id, m);
    }
    pthread_mutex_unlock(&records_mu);
    return rc;
}

uint64_t tand_cluster_machine_id(const tand_cluster_machine *m)
{
    return m != NULL ? m->id : 0;
}

int tand_cluster_machine_find(uint64_t id, tand_cluster_machine **out)
{
    tand_cluster_machine *m = NULL;
    int refs;
    if (out == NULL)
        return TAND_EINVAL;
    pthread_mutex_lock(&records_mu);
    if (records != NULL && (m = tand__table_get(records, &id, sizeof id))) {
        refs = atomic_load(&m->refs);
        do { /* not back from 0: that record is being freed */
            if (refs == 0) {
                m = NULL;
                break;
            }
        } while (!atomic_compare_exchange_weak(&m->refs, &refs, refs + 1));
    }
    pthread_mutex_unlock(&records_mu);
    *out = m;
    return m != NULL ? 0 : TAND_ENOPROC;
}

static void cluster_free(tand_cluster *c);

static void cluster_release(tand_cluster *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1)
        cluster_free(c);
}

static void machine_release(tand_cluster_machine *m)
{
    tand_cluster *c;
    if (m == NULL || atomic_fetch_sub(&m->refs, 1) != 1)
        return;
    c = m->c;
    pthread_mutex_lock(&records_mu);
    tand__table_del(records, &m->id, sizeof m->id);
    pthread_mutex_unlock(&records_mu);
    if (m->free_arg != NULL)
        m->free_arg(m->arg);
    tand__log_close(m->log);
    free(m);
    cluster_release(c);
}

void tand_cluster_machine_release(tand_cluster_machine *m)
{
    machine_release(m);
}

/* The local machine while this host owns it (a reference), or NULL. */
static tand_server *local_of(tand_cluster_machine *m)
{
    tand_server *s;
    pthread_mutex_lock(&m->c->mu);
    s = m->local;
    if (s != NULL && tand_server_alive(s))
        tand_server_retain(s);
    else
        s = NULL;
    pthread_mutex_unlock(&m->c->mu);
    return s;
}

/* ---- the bridge: NATS requests to the owner's machine ---- */

static void on_request(natsConnection *nc, natsSubscription *sub,
                       natsMsg *msg, void *closure)
{
    tand_cluster_machine *m = closure;
    tand_cluster *c = m->c;
    incoming *in = tand__calloc(1, sizeof *in);
    const char *reply_to = natsMsg_GetReply(msg); /* none for a cast */
    size_t size = (size_t)natsMsg_GetDataLength(msg);
    char byte = 1;
    (void)nc;
    (void)sub;
    if (in == NULL ||
        (reply_to != NULL &&
         (in->reply_to = tand__strdup(reply_to)) == NULL) ||
        (in->data = tand__malloc(size ? size : 1)) == NULL) {
        if (in != NULL) { /* dropped: the caller times out */
            free(in->reply_to);
            free(in);
        }
        natsMsg_Destroy(msg);
        return;
    }
    memcpy(in->data, natsMsg_GetData(msg), size);
    in->size = size;
    natsMsg_Destroy(msg);
    atomic_fetch_add(&m->refs, 1);
    in->m = m;
    pthread_mutex_lock(&c->mu);
    if (c->in_tail != NULL)
        c->in_tail->next = in;
    else
        c->in_head = in;
    c->in_tail = in;
    pthread_mutex_unlock(&c->mu);
    if (write(c->wake[1], &byte, 1) < 0) {
        /* the pipe is full: the bridge is awake already */
    }
}

static void respond(tand_cluster *c, const char *reply_to,
                    const tand_msg *reply)
{
    tand_buf b;
    if (reply_to == NULL) /* a cast's: nobody waits */
        return;
    if (encode_reply(reply, &b) == 0)
        natsConnection_Publish(c->nc, reply_to, b.data, (int)b.size);
    tand_buf_free(&b);
}

static void respond_error(tand_cluster *c, const char *reply_to, int status,
                          const char *detail)
{
    tand_msg reply = {0};
    reply.status = status;
    if (detail != NULL)
        tand_msg_set_text(&reply, detail, strlen(detail));
    respond(c, reply_to, &reply);
    tand_msg_clear(&reply);
}

/* Sends one request from NATS to the machine, or answers it at once. */
static void bridge_send(tand_cluster *c, incoming *in)
{
    int64_t ints[5];
    tand_msg req;
    tand_server *s;
    pending *p;
    int rc = decode(in->data, in->size, ints, 5, &req);
    if (rc != 0 || ints[0] < REQ_CALL || ints[0] > REQ_INFO ||
        (ints[0] == REQ_CALL) != (in->reply_to != NULL)) {
        tand_msg_clear(&req);
        respond_error(c, in->reply_to, TAND_EBADMSG,
                      "a request that is not tand's");
        return;
    }
    req.op = (int)ints[1];
    req.ival[0] = ints[2];
    req.ival[1] = ints[3];
    if ((s = local_of(in->m)) == NULL) {
        tand_msg_clear(&req);
        respond_error(c, in->reply_to, TAND_ENOTOWNER,
                      "this host does not own the machine now");
        return;
    }
    if (ints[0] != REQ_CALL) { /* a full mailbox drops it, as a cast */
        if (ints[0] == REQ_CAST)
            tand_cast(s, &req, 0, TAND_NOWAIT);
        else
            tand_send(s, &req, 0, TAND_NOWAIT);
        tand_server_release(s);
        return;
    }
    if ((p = tand__calloc(1, sizeof *p)) == NULL) {
        tand_server_release(s);
        tand_msg_clear(&req);
        respond_error(c, in->reply_to, TAND_ENOMEM, NULL);
        return;
    }
    p->tag = ++c->next_tag;
    rc = tand_call_async(s, &req, ints[4] < 0 ? TAND_FOREVER : ints[4], 0,
                         c->box, p->tag);
    tand_server_release(s);
    if (rc != 0) {
        free(p);
        respond_error(c, in->reply_to, rc, NULL);
        return;
    }
    p->reply_to = in->reply_to; /* the pending call's now */
    in->reply_to = NULL;
    p->next = c->pending;
    c->pending = p;
}

/* Publishes the replies that have come in. */
static void bridge_answer(tand_cluster *c)
{
    uint64_t tag;
    tand_msg reply;
    while (tand_replies_take(c->box, &tag, &reply)) {
        pending **pp = &c->pending, *p;
        while (*pp != NULL && (*pp)->tag != tag)
            pp = &(*pp)->next;
        if ((p = *pp) != NULL) {
            *pp = p->next;
            respond(c, p->reply_to, &reply);
            free(p->reply_to);
            free(p);
        }
        tand_msg_clear(&reply);
    }
}

/* ---- this host's asynchronous calls over NATS ---- */

static void remote_call_free(remote_call *rc)
{
    free(rc->subject);
    free(rc->data);
    free(rc);
}

/* Completes the call's slot with reply (consumed): into its box, or
** freed if the caller gave it up. */
static void remote_call_end(remote_call *rc, tand_msg *reply)
{
    tand__slot_reply(rc->slot, reply);
    remote_call_free(rc);
}

static void remote_call_fail(remote_call *rc, int status)
{
    tand_msg reply = {0};
    reply.status = status;
    remote_call_end(rc, &reply);
}

/* With c->mu held: the call of that id, taken out of the list (or NULL). */
static remote_call *remote_call_take(tand_cluster *c, uint64_t id)
{
    remote_call **pp = &c->calls, *rc;
    while ((rc = *pp) != NULL && rc->id != id)
        pp = &rc->next;
    if (rc != NULL)
        *pp = rc->next;
    return rc;
}

static void on_call_reply(natsConnection *nc, natsSubscription *sub,
                          natsMsg *msg, void *closure)
{
    tand_cluster *c = closure;
    const char *subject = natsMsg_GetSubject(msg);
    size_t n = strlen(c->inbox);
    uint64_t id = strtoull(subject + (strlen(subject) > n ? n + 1 : 0),
                           NULL, 10);
    remote_call *rc, **pp;
    tand_msg reply;
    int64_t ints[3];
    char byte = 1;
    (void)nc;
    (void)sub;
    pthread_mutex_lock(&c->mu);
    if (natsMsg_IsNoResponders(msg)) { /* no owner now: one is coming */
        for (pp = &c->calls; *pp != NULL && (*pp)->id != id;)
            pp = &(*pp)->next;
        if (*pp != NULL)
            (*pp)->retry_ns = tand__now_ns() + 20000000;
        rc = NULL;
    } else {
        rc = remote_call_take(c, id);
    }
    pthread_mutex_unlock(&c->mu);
    if (rc == NULL) { /* a retry to come (the bridge's), or a late reply */
        if (write(c->wake[1], &byte, 1) < 0) {
            /* awake already */
        }
    } else if (decode(natsMsg_GetData(msg),
                      (size_t)natsMsg_GetDataLength(msg), ints, 3,
                      &reply) != 0) {
        tand_msg_clear(&reply);
        remote_call_fail(rc, TAND_EBADMSG);
    } else {
        reply.status = (int)ints[0];
        reply.ival[0] = ints[1];
        reply.ival[1] = ints[2];
        remote_call_end(rc, &reply);
    }
    natsMsg_Destroy(msg);
}

/* Sends the calls whose retry is due again, ends those past their
** deadline (all of them when closing); the longest the bridge may sleep
** before the next retry, in ms (-1: none waits). */
static int64_t sweep_calls(tand_cluster *c, bool closing)
{
    remote_call **pp, *rc, *ended = NULL;
    int64_t now = tand__now_ns(), next = INT64_MAX;
    char reply_to[160];
    pthread_mutex_lock(&c->mu);
    for (pp = &c->calls; (rc = *pp) != NULL;) {
        if (closing || now >= rc->deadline_ns) {
            *pp = rc->next;
            rc->next = ended;
            ended = rc;
            continue;
        }
        if (rc->retry_ns != 0 && now >= rc->retry_ns) {
            /* (published under the lock, so no reply frees it meanwhile;
            ** libnats only buffers and writes) */
            rc->retry_ns = 0;
            snprintf(reply_to, sizeof reply_to, "%s.%llu", c->inbox,
                     (unsigned long long)rc->id);
            natsConnection_PublishRequest(c->nc, rc->subject, reply_to,
                                          rc->data, (int)rc->size);
        }
        if (rc->retry_ns != 0 && rc->retry_ns < next)
            next = rc->retry_ns;
        pp = &rc->next;
    }
    pthread_mutex_unlock(&c->mu);
    while ((rc = ended) != NULL) {
        ended = rc->next;
        remote_call_fail(rc, closing ? TAND_ECLUSTER : TAND_ETIMEDOUT);
    }
    return next == INT64_MAX ? -1 : (next - now + 999999) / 1000000;
}

static void *bridge_main(void *arg)
{
    tand_cluster *c = arg;
    for (;;) {
        struct pollfd fds[2];
        incoming *in;
        char buf[256];
        int64_t wait = tand_replies_timeout_ms(c->box), retry;
        bool closing;
        retry = sweep_calls(c, false);
        if (retry >= 0 && (wait < 0 || retry < wait))
            wait = retry;
        fds[0].fd = c->wake[0];
        fds[1].fd = tand_replies_fd(c->box);
        fds[0].events = fds[1].events = POLLIN;
        poll(fds, 2, wait < 0 || wait > 200 ? 200 : (int)wait);
        if (fds[0].revents & POLLIN)
            while (read(c->wake[0], buf, sizeof buf) > 0)
                ;
        pthread_mutex_lock(&c->mu);
        in = c->in_head;
        c->in_head = c->in_tail = NULL;
        closing = c->closing;
        pthread_mutex_unlock(&c->mu);
        while (in != NULL) {
            incoming *next = in->next;
            if (!closing)
                bridge_send(c, in);
            machine_release(in->m);
            free(in->reply_to);
            free(in->data);
            free(in);
            in = next;
        }
        bridge_answer(c);
        if (closing) {
            sweep_calls(c, true);
            return NULL;
        }
    }
}

/* ---- the control thread: leases and takeovers ---- */

/* Lets go of the machine this host ran (it ended, or the lease was
** lost): no more requests from NATS, the server stopped. */
static void step_down(tand_cluster_machine *m, int reason, const char *why)
{
    tand_cluster *c = m->c;
    tand_server *s;
    if (m->sub != NULL) {
        natsSubscription_Unsubscribe(m->sub);
        natsSubscription_Destroy(m->sub);
        m->sub = NULL;
    }
    pthread_mutex_lock(&c->mu);
    s = m->local;
    m->local = NULL;
    pthread_mutex_unlock(&c->mu);
    if (s != NULL) {
        tand_server_stop(s, reason, why, c->timeout_ms);
        tand_server_release(s);
    }
    m->lease_rev = 0;
}

/* The lease's value: "host epoch config" (the config the owner runs the
** machine with, for the hosts that start it after). */
#define LEASE_VALUE_MAX (TAND_NAME_MAX + 24 + TAND_CLUSTER_CONFIG_MAX)
static void lease_value(const tand_cluster_machine *m, uint64_t epoch,
                        char *out, size_t n)
{
    snprintf(out, n, "%s %llu %s", m->c->host, (unsigned long long)epoch,
             m->config);
}

/* Reads a lease's value: the host into host (size bytes), the epoch, and
** where the config starts and its length (-1 when the value has none: a
** lease not written by tand; config may be NULL). */
static void lease_parse(const char *v, int len, char *host, size_t size,
                        uint64_t *epoch, const char **config, int *clen)
{
    int i, j;
    for (i = 0; i < len && v[i] != ' '; i++)
        ;
    snprintf(host, size, "%.*s", i, v);
    *epoch = 0;
    for (j = i + 1; j < len && v[j] >= '0' && v[j] <= '9'; j++)
        *epoch = *epoch * 10 + (uint64_t)(v[j] - '0');
    if (config != NULL) {
        *config = j < len ? v + j + 1 : v + len;
        *clen = j < len ? len - j - 1 : -1;
    }
}

/* Renews the lease of a machine this host runs; 0, or -1 once it is lost.
** After a takeover (remake), a lease that lapsed while the log was
** replayed is made again if no other host has taken it meanwhile. */
static int renew(tand_cluster_machine *m, bool remake)
{
    tand_cluster *c = m->c;
    char value[LEASE_VALUE_MAX];
    uint64_t rev;
    lease_value(m, m->epoch, value, sizeof value);
    if (kvStore_Update(&rev, c->kv, m->key, value, (int)strlen(value),
                       m->lease_rev) != NATS_OK &&
        (!remake || kvStore_Create(&rev, c->kv, m->key, value,
                                   (int)strlen(value)) != NATS_OK))
        return -1;
    m->lease_rev = rev;
    return 0;
}

/* With the lease: replay, fence, start, subscribe. */
static void take_over(tand_cluster_machine *m)
{
    tand_cluster *c = m->c;
    tand_journal *j = NULL, *left;
    tand_server *s = NULL;
    char value[LEASE_VALUE_MAX], why[sizeof m->error] = "";
    uint64_t rev;
    int rc;
    m->epoch = m->lease_rev;
    /* the epoch in the lease's value too, for m:owner() */
    lease_value(m, m->epoch, value, sizeof value);
    if (kvStore_Update(&rev, c->kv, m->key, value, (int)strlen(value),
                       m->lease_rev) != NATS_OK) {
        m->lease_rev = 0; /* lost already: expired, another host has it */
        return;
    }
    m->lease_rev = rev;
    rc = tand__cluster_journal_open(m->log, m->kind, c->host, m->epoch,
                                    c->timeout_ms, &j, why, sizeof why);
    if (rc == 0) {
        char detail[sizeof why - 64] = "";
        tand__journal_adopt(j);
        rc = m->start(c->rt, m->name, m->arg, &s, detail, sizeof detail);
        if ((left = tand__journal_unadopted()) != NULL)
            tand__journal_close(left);
        if (rc != 0)
            snprintf(why, sizeof why, "the machine did not start: %s%s%s",
                     tand_errname(rc), detail[0] ? ": " : "", detail);
    }
    pthread_mutex_lock(&c->mu);
    /* a failure: the next look tries again while the lease is ours */
    snprintf(m->error, sizeof m->error, "%s", rc != 0 ? why : "");
    if (rc == 0)
        m->local = s;
    pthread_mutex_unlock(&c->mu);
    if (rc != 0)
        return;
    /* In a queue group: while an old owner is still subscribed, each
    ** request reaches one of the two, never both, so a not_owner from
    ** the old one means the new one did not apply it. */
    if (natsConnection_QueueSubscribe(&m->sub, c->nc, m->subject, "owner",
                                      on_request, m) != NATS_OK) {
        m->sub = NULL;
        step_down(m, TAND_ECLUSTER, "cannot subscribe to the calls");
    } else if (renew(m, true) != 0 && !c->stubborn) {
        step_down(m, TAND_ENOTOWNER, "the lease was lost during the takeover");
    }
}

/* The control thread's look at a machine: renews its lease while this
** host runs it, lets it go once it ended, and otherwise asks the
** takeover thread to try for it. */
static void look_after(tand_cluster_machine *m)
{
    tand_cluster *c = m->c;
    tand_server *s = local_of(m);
    if (s != NULL) { /* ours: renew */
        tand_server_release(s);
        if (renew(m, false) != 0 && !c->stubborn) /* lost: the new owner's */
            step_down(m, TAND_ENOTOWNER, "the lease was lost");
        /* A stubborn owner (the cluster spec's runs that check the fence
        ** alone) goes on as if it held the lease: then only the fence
        ** stops it, at its first batch. Never set outside that test. */
        return;
    }
    if (m->local != NULL || m->sub != NULL) /* it ended */
        step_down(m, 0, NULL);
    pthread_mutex_lock(&c->mu);
    m->wanted = true; /* for the takeover thread, once this look ends */
    pthread_mutex_unlock(&c->mu);
}

/* The takeover thread's try: the lease if nobody holds it, then the
** takeover. */
static void try_take(tand_cluster_machine *m)
{
    tand_cluster *c = m->c;
    char value[LEASE_VALUE_MAX];
    uint64_t rev;
    if (m->lease_rev == 0) {
        lease_value(m, 0, value, sizeof value);
        if (kvStore_Create(&rev, c->kv, m->key, value, (int)strlen(value)) !=
            NATS_OK)
            return; /* another host holds it */
        m->lease_rev = rev;
    }
    take_over(m);
}

/* With c->mu held: claims a machine for one thread's look (see `busy`). */
static bool claim(tand_cluster_machine *m)
{
    if (m->busy)
        return false;
    m->busy = true;
    atomic_fetch_add(&m->refs, 1);
    return true;
}

/* Ends a look: a machine the control thread wants taken over goes to the
** takeover thread now (it could not claim it while the look lasted). */
static void let_be(tand_cluster_machine *m)
{
    pthread_mutex_lock(&m->c->mu);
    m->busy = false;
    if (m->wanted)
        pthread_cond_signal(&m->c->takeover_cv);
    pthread_mutex_unlock(&m->c->mu);
    machine_release(m);
}

static void *control_main(void *arg)
{
    tand_cluster *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->closing) {
        tand_cluster_machine *m, **list;
        size_t n = 0, i;
        for (m = c->machines; m != NULL; m = m->next)
            n++;
        list = tand__calloc(n ? n : 1, sizeof *list);
        for (i = 0, m = c->machines; list != NULL && m != NULL; m = m->next)
            if (m->started && m->owner == TAND_OWNER_ANY && claim(m))
                list[i++] = m;
        n = list != NULL ? i : 0;
        pthread_mutex_unlock(&c->mu);
        for (i = 0; i < n; i++) {
            look_after(list[i]);
            let_be(list[i]);
        }
        free(list);
        pthread_mutex_lock(&c->mu);
        if (c->closing)
            break;
        tand__cond_wait_until(&c->control_cv, &c->mu,
                              tand__now_ns() + c->lease_ms / 4 * 1000000);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Takeovers block on NATS (a replay, a stream with no leader for a few
** seconds): on a thread of their own, so that the leases of the machines
** this host runs are renewed meanwhile. */
static void *takeover_main(void *arg)
{
    tand_cluster *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->closing) {
        tand_cluster_machine *m;
        for (m = c->machines; m != NULL; m = m->next)
            if (m->wanted && claim(m))
                break;
        if (m == NULL) {
            pthread_cond_wait(&c->takeover_cv, &c->mu);
            continue;
        }
        m->wanted = false;
        pthread_mutex_unlock(&c->mu);
        try_take(m);
        let_be(m);
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* ---- the cluster ---- */

/* Connects to the comma-separated servers (natsOptions_SetURL's own list
** form does not connect with libnats 3.4.1: they go as a server list). */
static natsStatus connect_nats(tand_cluster *c, const char *servers,
                               char *err, size_t n)
{
    natsOptions *o = NULL;
    const char *list[16];
    char *copy = tand__strdup(servers), *tok, *save = NULL;
    int count = 0;
    natsStatus st;
    if (copy == NULL)
        return NATS_NO_MEMORY;
    for (tok = strtok_r(copy, ", ", &save); tok != NULL && count < 16;
         tok = strtok_r(NULL, ", ", &save))
        list[count++] = tok;
    st = natsOptions_Create(&o);
    if (st == NATS_OK)
        st = natsOptions_SetServers(o, list, count);
    if (st == NATS_OK)
        st = natsOptions_SetTimeout(o, c->timeout_ms);
    /* each reply goes out at once: no buffered flusher's wait */
    if (st == NATS_OK)
        st = natsOptions_SetSendAsap(o, true);
    if (st == NATS_OK)
        st = natsOptions_SetMaxReconnect(o, -1); /* for ever */
    if (st == NATS_OK)
        st = natsOptions_SetReconnectWait(o, 100);
    if (st == NATS_OK)
        st = natsConnection_Connect(&c->nc, o);
    if (st != NATS_OK)
        say(err, n, "cannot reach the NATS servers %s: %s", servers,
            nats_GetLastError(NULL) ? nats_GetLastError(NULL)
                                    : natsStatus_GetText(st));
    natsOptions_Destroy(o);
    free(copy);
    return st;
}

/* Binds the lease bucket, making it if need be; a bucket of another
** lease_ms or replicas is refused: the hosts disagree. Hosts that join a
** new cluster at once race to make it, and a bucket just made answers
** nothing until its servers have elected a leader: the steps are tried
** again for twice timeout_ms. */
static int open_bucket(tand_cluster *c, char *err, size_t n)
{
    kvConfig cfg;
    kvStatus *sts = NULL;
    natsStatus st;
    char why[128];
    int64_t until = tand_now_ms() + 2 * c->timeout_ms;
    kvConfig_Init(&cfg);
    cfg.Bucket = BUCKET;
    cfg.History = 1;
    cfg.TTL = c->lease_ms * 1000000; /* ns */
    cfg.Replicas = c->replicas;
    cfg.StorageType = js_FileStorage;
    for (;;) {
        if (c->kv == NULL) {
            st = js_CreateKeyValue(&c->kv, c->js, &cfg);
            if (st != NATS_OK) /* it exists, maybe as another host made it */
                st = js_KeyValue(&c->kv, c->js, BUCKET);
        }
        if (c->kv != NULL)
            st = kvStore_Status(&sts, c->kv);
        if (st == NATS_OK || tand_now_ms() >= until)
            break;
        {
            struct timespec pause = {0, 50000000};
            nanosleep(&pause, NULL);
        }
    }
    if (st != NATS_OK) {
        say(err, n, "cannot use the lease bucket: %s%s",
            nats_GetLastError(NULL) ? nats_GetLastError(NULL)
                                    : natsStatus_GetText(st), NULL);
        return TAND_ECLUSTER;
    }
    if (kvStatus_TTL(sts) != cfg.TTL ||
        kvStatus_Replicas(sts) != (int64_t)c->replicas) {
        snprintf(why, sizeof why, "lease_ms %lld and replicas %lld",
                 (long long)(kvStatus_TTL(sts) / 1000000),
                 (long long)kvStatus_Replicas(sts));
        say(err, n, "the cluster's hosts disagree: the lease bucket has %s",
            why, NULL);
        kvStatus_Destroy(sts);
        return TAND_ECONFIG;
    }
    kvStatus_Destroy(sts);
    tand__stream_wait_leader(c->js, "KV_" BUCKET, c->timeout_ms);
    return 0;
}

static void cluster_free(tand_cluster *c)
{
    pending *p;
    remote_call *rc;
    if (c->calls_sub != NULL)
        natsSubscription_Destroy(c->calls_sub);
    while ((rc = c->calls) != NULL) { /* sent as the cluster was closing */
        c->calls = rc->next;
        remote_call_fail(rc, TAND_ECLUSTER);
    }
    if (c->kv != NULL)
        kvStore_Destroy(c->kv);
    if (c->js != NULL)
        jsCtx_Destroy(c->js);
    if (c->nc != NULL)
        natsConnection_Destroy(c->nc);
    while ((p = c->pending) != NULL) {
        c->pending = p->next;
        free(p->reply_to);
        free(p);
    }
    tand_replies_free(c->box);
    if (c->wake[0] >= 0) {
        close(c->wake[0]);
        close(c->wake[1]);
    }
    pthread_cond_destroy(&c->control_cv);
    pthread_cond_destroy(&c->takeover_cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

int tand_cluster_open(tand_runtime *rt, const tand_cluster_options *o,
                      tand_cluster **out)
{
    tand_cluster *c;
    char *err = o != NULL ? o->error : NULL;
    size_t n = o != NULL ? o->error_size : 0;
    jsOptions jo;
    int rc;

    if (out != NULL)
        *out = NULL;
    if (rt == NULL || o == NULL || out == NULL)
        return TAND_EINVAL;
    if (err != NULL && n > 0)
        err[0] = '\0';
    if (o->servers == NULL || o->servers[0] == '\0') {
        say(err, n, "servers: give the NATS servers' URLs%s", "", NULL);
        return TAND_ECONFIG;
    }
    if (o->host == NULL || o->host[0] == '\0' ||
        strlen(o->host) > TAND_NAME_MAX || strchr(o->host, ' ') != NULL) {
        say(err, n, "host: a name of 1 to 255 bytes without spaces%s", "",
            NULL);
        return TAND_ECONFIG;
    }
    if (o->lease_ms < 100 || o->lease_ms > 3600000) {
        say(err, n, "lease_ms: from 100 to 3600000%s", "", NULL);
        return TAND_ECONFIG;
    }
    if (o->replicas < 1 || o->replicas > 5) {
        say(err, n, "replicas: from 1 to 5%s", "", NULL);
        return TAND_ECONFIG;
    }
    if (o->timeout_ms < 1 || o->timeout_ms > 600000) {
        say(err, n, "timeout_ms: from 1 to 600000%s", "", NULL);
        return TAND_ECONFIG;
    }
    if ((c = tand__calloc(1, sizeof *c)) == NULL)
        return TAND_ENOMEM;
    atomic_init(&c->refs, 1);
    atomic_init(&c->closed, false);
    c->rt = rt;
    snprintf(c->host, sizeof c->host, "%s", o->host);
    c->lease_ms = o->lease_ms;
    c->replicas = o->replicas;
    c->timeout_ms = o->timeout_ms;
    {
        const char *v = getenv("TAND_CLUSTER_STUBBORN_FOR_TESTS");
        c->stubborn = v != NULL && strcmp(v, "1") == 0;
    }
    c->wake[0] = c->wake[1] = -1;
    pthread_mutex_init(&c->mu, NULL);
    if (tand__cond_init(&c->control_cv) != 0 ||
        tand__cond_init(&c->takeover_cv) != 0 || pipe(c->wake) != 0) {
        c->wake[0] = c->wake[1] = -1;
        cluster_free(c);
        return TAND_ESYSTEM;
    }
    fcntl(c->wake[0], F_SETFL, O_NONBLOCK);
    fcntl(c->wake[1], F_SETFL, O_NONBLOCK);
    fcntl(c->wake[0], F_SETFD, FD_CLOEXEC);
    fcntl(c->wake[1], F_SETFD, FD_CLOEXEC);
    if ((rc = tand_replies_new(&c->box)) != 0) {
        cluster_free(c);
        return rc;
    }
    if (connect_nats(c, o->servers, err, n) != NATS_OK) {
        cluster_free(c);
        return TAND_ECLUSTER;
    }
    jsOptions_Init(&jo);
    jo.Wait = c->timeout_ms; /* JetStream's requests wait as long as ours */
    if (natsConnection_JetStream(&c->js, c->nc, &jo) != NATS_OK) {
        say(err, n, "cannot use JetStream%s", "", NULL);
        cluster_free(c);
        return TAND_ECLUSTER;
    }
    if ((rc = open_bucket(c, err, n)) != 0) {
        cluster_free(c);
        return rc;
    }
    {
        natsInbox *inbox = NULL;
        char pattern[sizeof c->inbox + 4];
        if (natsInbox_Create(&inbox) == NATS_OK)
            snprintf(c->inbox, sizeof c->inbox, "%s", (const char *)inbox);
        natsInbox_Destroy(inbox);
        snprintf(pattern, sizeof pattern, "%s.*", c->inbox);
        if (c->inbox[0] == '\0' ||
            natsConnection_Subscribe(&c->calls_sub, c->nc, pattern,
                                     on_call_reply, c) != NATS_OK) {
            say(err, n, "cannot subscribe to this host's replies%s", "",
                NULL);
            cluster_free(c);
            return TAND_ECLUSTER;
        }
    }
    if (pthread_create(&c->bridge, NULL, bridge_main, c) != 0) {
        cluster_free(c);
        return TAND_ESYSTEM;
    }
    c->bridge_started = true;
    if (pthread_create(&c->takeover, NULL, takeover_main, c) != 0) {
        tand_cluster_close(c);
        return TAND_ESYSTEM;
    }
    c->takeover_started = true;
    if (pthread_create(&c->control, NULL, control_main, c) != 0) {
        tand_cluster_close(c);
        return TAND_ESYSTEM;
    }
    c->control_started = true;
    *out = c;
    return 0;
}

void tand_cluster_close(tand_cluster *c)
{
    tand_cluster_machine *m;
    char byte = 1;
    if (c == NULL)
        return;
    atomic_store(&c->closed, true);
    pthread_mutex_lock(&c->mu);
    c->closing = true;
    pthread_cond_signal(&c->control_cv);
    pthread_cond_signal(&c->takeover_cv);
    pthread_mutex_unlock(&c->mu);
    if (c->control_started)
        pthread_join(c->control, NULL);
    if (c->takeover_started) /* after a try under way, bounded by NATS's */
        pthread_join(c->takeover, NULL);
    /* the machines this host runs: stopped, their leases left to expire
    ** (their last batch is appended, so the next owner resumes it) */
    for (m = c->machines; m != NULL; m = m->next)
        step_down(m, 0, NULL);
    /* no more deliveries to on_request, which uses the machines */
    natsConnection_Close(c->nc);
    if (write(c->wake[1], &byte, 1) < 0) {
        /* awake already */
    }
    if (c->bridge_started)
        pthread_join(c->bridge, NULL);
    pthread_mutex_lock(&c->mu);
    m = c->machines;
    c->machines = NULL;
    pthread_mutex_unlock(&c->mu);
    while (m != NULL) { /* the list's references */
        tand_cluster_machine *next = m->next;
        machine_release(m);
        m = next;
    }
    cluster_release(c); /* the opener's: freed with the last handle */
}

/* The machine of that name in c's list (a reference), or NULL. */
static tand_cluster_machine *find(tand_cluster *c, const char *name)
{
    tand_cluster_machine *m;
    for (m = c->machines; m != NULL; m = m->next)
        if (strcmp(m->name, name) == 0) {
            atomic_fetch_add(&m->refs, 1);
            return m;
        }
    return NULL;
}

/* A new machine record for name, in c's list (a reference for the
** caller, one for the list). */
static int add_machine(tand_cluster *c, const char *name,
                       tand_cluster_machine **out, char *err, size_t n)
{
    tand_cluster_machine *m = tand__calloc(1, sizeof *m);
    char enc[2 * TAND_NAME_MAX + 3];
    int rc;
    if (m == NULL)
        return TAND_ENOMEM;
    atomic_init(&m->refs, 2);
    m->c = c;
    snprintf(m->name, sizeof m->name, "%s", name);
    rc = tand__log_open(c->js, name, c->replicas, &m->log, err, n);
    if (rc == 0 && (rc = record_add(m)) != 0)
        tand__log_close(m->log);
    if (rc != 0) {
        free(m);
        return rc;
    }
    atomic_fetch_add(&c->refs, 1);
    /* the servers' max_payload less room for an entry's headers */
    if (natsConnection_GetMaxPayload(c->nc) > 8192)
        tand__log_set_max_entry(
            m->log, (size_t)natsConnection_GetMaxPayload(c->nc) - 4096);
    snprintf(enc, sizeof enc, "%s", tand__log_stream(m->log) + 5);
    snprintf(m->subject, sizeof m->subject, "tand.call.%s", enc);
    snprintf(m->key, sizeof m->key, "%s", enc);
    m->next = c->machines;
    c->machines = m;
    *out = m;
    return 0;
}

/* 0 unless a host owns m now and runs it with a config other than o's:
** TAND_ECONFIG, saying both. */
static int agrees(tand_cluster_machine *m,
                  const tand_cluster_machine_options *o, char *err, size_t n)
{
    const char *mine = o->config != NULL ? o->config : "", *theirs;
    char host[TAND_NAME_MAX + 1];
    uint64_t epoch;
    kvEntry *e = NULL;
    int len, rc = 0;
    if (kvStore_Get(&e, m->c->kv, m->key) != NATS_OK)
        return 0; /* nobody owns it now */
    lease_parse(kvEntry_Value(e), kvEntry_ValueLen(e), host, sizeof host,
                &epoch, &theirs, &len);
    if (epoch > 0 && len >= 0 &&
        ((size_t)len != strlen(mine) ||
         memcmp(theirs, mine, (size_t)len) != 0)) {
        if (err != NULL && n > 0)
            snprintf(err, n, "the hosts disagree on the machine '%s': "
                     "%s runs it with {%.*s}, this host gives {%s}",
                     m->name, host, len > 400 ? 400 : len, theirs, mine);
        rc = TAND_ECONFIG;
    }
    kvEntry_Destroy(e);
    return rc;
}

int tand_cluster_start(tand_cluster *c, const tand_cluster_machine_options *o,
                       tand_cluster_machine **out)
{
    tand_cluster_machine *m;
    char *err = o != NULL ? o->error : NULL;
    size_t n = o != NULL ? o->error_size : 0;
    int rc = 0;

    if (out != NULL)
        *out = NULL;
    if (c == NULL || o == NULL || out == NULL || o->name == NULL ||
        o->name[0] == '\0' || strlen(o->name) > TAND_NAME_MAX ||
        o->kind == NULL || strlen(o->kind) > 32 ||
        (o->config != NULL && strlen(o->config) > TAND_CLUSTER_CONFIG_MAX) ||
        (o->owner != TAND_OWNER_ANY && o->owner != TAND_OWNER_NEVER) ||
        (o->owner == TAND_OWNER_ANY && o->start == NULL)) {
        if (o != NULL && o->free_arg != NULL)
            o->free_arg(o->arg);
        return TAND_EINVAL;
    }
    if (err != NULL && n > 0)
        err[0] = '\0';
    pthread_mutex_lock(&c->mu);
    if ((m = find(c, o->name)) != NULL && m->started) {
        pthread_mutex_unlock(&c->mu);
        machine_release(m);
        if (o->free_arg != NULL)
            o->free_arg(o->arg);
        say(err, n, "the machine '%s' is started on this host already%s",
            o->name, NULL);
        return TAND_ENAMETAKEN;
    }
    if (m == NULL)
        rc = add_machine(c, o->name, &m, err, n);
    pthread_mutex_unlock(&c->mu);
    if (rc == 0)
        rc = agrees(m, o, err, n);
    pthread_mutex_lock(&c->mu);
    if (rc == 0 && m->started) { /* started by another thread meanwhile */
        say(err, n, "the machine '%s' is started on this host already%s",
            o->name, NULL);
        rc = TAND_ENAMETAKEN;
    }
    if (rc != 0 && m != NULL) {
        pthread_mutex_unlock(&c->mu);
        machine_release(m);
        pthread_mutex_lock(&c->mu);
    }
    if (rc == 0) {
        snprintf(m->kind, sizeof m->kind, "%s", o->kind);
        snprintf(m->config, sizeof m->config, "%s",
                 o->config != NULL ? o->config : "");
        m->owner = o->owner;
        m->start = o->start;
        m->arg = o->arg;
        m->free_arg = o->free_arg;
        m->started = true;
        pthread_cond_signal(&c->control_cv); /* look at it now */
    }
    pthread_mutex_unlock(&c->mu);
    if (rc != 0) {
        if (o->free_arg != NULL)
            o->free_arg(o->arg);
        return rc;
    }
    *out = m;
    return 0;
}

int tand_cluster_whereis(tand_cluster *c, const char *name,
                         tand_cluster_machine **out, char *err, size_t n)
{
    tand_cluster_machine *m;
    uint64_t last;
    int rc = 0;
    if (out != NULL)
        *out = NULL;
    if (c == NULL || name == NULL || name[0] == '\0' ||
        strlen(name) > TAND_NAME_MAX || out == NULL)
        return TAND_EINVAL;
    pthread_mutex_lock(&c->mu);
    if ((m = find(c, name)) == NULL)
        rc = add_machine(c, name, &m, err, n);
    if (rc == 0 && !m->started)
        m->owner = TAND_OWNER_NEVER;
    pthread_mutex_unlock(&c->mu);
    if (rc != 0)
        return rc;
    /* a machine nobody ever ran has an empty log */
    if ((rc = tand__log_last(m->log, &last, err, n)) == 0 && last == 0)
        rc = TAND_ENOPROC;
    if (rc != 0) {
        machine_release(m);
        return rc;
    }
    *out = m;
    return 0;
}

int tand_cluster_call(tand_cluster_machine *m, tand_msg *req,
                      tand_msg *reply, int64_t timeout_ms)
{
    tand_cluster *c = m != NULL ? m->c : NULL;
    int64_t deadline, left;
    int64_t ints[3];
    tand_server *s;
    natsMsg *resp = NULL;
    natsStatus st;
    tand_buf b;
    int rc;

    if (reply != NULL)
        memset(reply, 0, sizeof *reply);
    if (m == NULL || req == NULL || reply == NULL) {
        tand_msg_clear(req);
        return TAND_EINVAL;
    }
    if (atomic_load(&c->closed)) {
        tand_msg_clear(req);
        return TAND_ECLUSTER;
    }
    if ((s = local_of(m)) != NULL) { /* ours: no NATS */
        rc = tand_call(s, req, reply, timeout_ms, 0);
        tand_server_release(s);
        return rc;
    }
    deadline = timeout_ms < 0 ? INT64_MAX : tand_now_ms() + timeout_ms;
    rc = encode_request(REQ_CALL, req, timeout_ms, &b);
    tand_msg_clear(req);
    if (rc != 0) {
        tand_buf_free(&b);
        return rc;
    }
    for (;;) {
        left = deadline == INT64_MAX ? c->timeout_ms * 10
                                     : deadline - tand_now_ms();
        if (left <= 0) {
            rc = TAND_ETIMEDOUT;
            break;
        }
        st = natsConnection_Request(&resp, c->nc, m->subject, b.data,
                                    (int)b.size, left);
        if (st == NATS_NO_RESPONDERS) { /* no owner now: one is coming */
            struct timespec pause = {0, 20000000};
            nanosleep(&pause, NULL);
            continue;
        }
        if (st != NATS_OK) {
            rc = st == NATS_TIMEOUT ? TAND_ETIMEDOUT : TAND_ECLUSTER;
            break;
        }
        rc = decode(natsMsg_GetData(resp), (size_t)natsMsg_GetDataLength(resp),
                    ints, 3, reply);
        natsMsg_Destroy(resp);
        if (rc == 0) {
            reply->status = (int)ints[0];
            reply->ival[0] = ints[1];
            reply->ival[1] = ints[2];
            rc = reply->status;
        }
        break;
    }
    tand_buf_free(&b);
    return rc;
}

int tand_cluster_call_async(tand_cluster_machine *m, tand_msg *req,
                            int64_t timeout_ms, tand_replies *box,
                            uint64_t tag)
{
    tand_cluster *c = m != NULL ? m->c : NULL;
    char reply_to[160];
    remote_call *rc;
    tand_server *s;
    tand_buf b;
    int err;
    if (m == NULL || req == NULL || box == NULL) {
        tand_msg_clear(req);
        return TAND_EINVAL;
    }
    if (atomic_load(&c->closed)) {
        tand_msg_clear(req);
        return TAND_ECLUSTER;
    }
    if ((s = local_of(m)) != NULL) { /* ours: no NATS */
        err = tand_call_async(s, req, timeout_ms, TAND_NOWAIT, box, tag);
        tand_server_release(s);
        return err;
    }
    err = encode_request(REQ_CALL, req, timeout_ms, &b);
    tand_msg_clear(req);
    rc = err == 0 ? tand__calloc(1, sizeof *rc) : NULL;
    if (rc == NULL || (rc->slot = tand__slot_new()) == NULL ||
        (rc->subject = tand__strdup(m->subject)) == NULL ||
        (rc->data = tand__malloc(b.size)) == NULL) {
        if (rc != NULL && rc->slot != NULL)
            tand__slot_free(rc->slot);
        if (rc != NULL)
            remote_call_free(rc);
        tand_buf_free(&b);
        return err != 0 ? err : TAND_ENOMEM;
    }
    memcpy(rc->data, b.data, b.size);
    rc->size = b.size;
    rc->deadline_ns = tand__deadline(timeout_ms);
    tand__replies_attach(box, rc->slot, tag, rc->deadline_ns);
    pthread_mutex_lock(&c->mu);
    rc->id = ++c->last_call;
    rc->next = c->calls;
    c->calls = rc;
    snprintf(reply_to, sizeof reply_to, "%s.%llu", c->inbox,
             (unsigned long long)rc->id);
    /* under the lock, as a retry is: its reply cannot free it meanwhile */
    err = natsConnection_PublishRequest(c->nc, m->subject, reply_to, b.data,
                                        (int)b.size) == NATS_OK
              ? 0
              : TAND_ECLUSTER;
    if (err != 0)
        remote_call_take(c, rc->id);
    pthread_mutex_unlock(&c->mu);
    tand_buf_free(&b);
    if (err != 0) {
        tand__replies_detach(box, rc->slot);
        tand__slot_free(rc->slot);
        remote_call_free(rc);
    }
    return err;
}

int tand_cluster_cast(tand_cluster_machine *m, tand_msg *msg, int info)
{
    tand_server *s;
    tand_buf b;
    int rc;
    if (m == NULL || msg == NULL) {
        tand_msg_clear(msg);
        return TAND_EINVAL;
    }
    if (atomic_load(&m->c->closed)) {
        tand_msg_clear(msg);
        return TAND_ECLUSTER;
    }
    if ((s = local_of(m)) != NULL) { /* ours: no NATS */
        rc = info ? tand_send(s, msg, 0, TAND_NOWAIT)
                  : tand_cast(s, msg, 0, TAND_NOWAIT);
        tand_server_release(s);
        return rc;
    }
    rc = encode_request(info ? REQ_INFO : REQ_CAST, msg, 0, &b);
    tand_msg_clear(msg);
    if (rc == 0 && natsConnection_Publish(m->c->nc, m->subject, b.data,
                                          (int)b.size) != NATS_OK)
        rc = TAND_ECLUSTER;
    tand_buf_free(&b);
    return rc;
}

int tand_cluster_error(tand_cluster_machine *m, char *buf, size_t n)
{
    int any;
    if (m == NULL || buf == NULL || n == 0)
        return 0;
    pthread_mutex_lock(&m->c->mu);
    any = m->error[0] != '\0';
    snprintf(buf, n, "%s", m->error);
    pthread_mutex_unlock(&m->c->mu);
    return any;
}

int tand_cluster_owner(tand_cluster_machine *m, char *host, size_t size,
                       uint64_t *epoch)
{
    kvEntry *e = NULL;
    if (m == NULL || host == NULL || size == 0 || epoch == NULL)
        return TAND_EINVAL;
    if (atomic_load(&m->c->closed))
        return TAND_ECLUSTER;
    host[0] = '\0';
    *epoch = 0;
    if (kvStore_Get(&e, m->c->kv, m->key) != NATS_OK)
        return TAND_ENOPROC; /* nobody owns it now */
    lease_parse(kvEntry_Value(e), kvEntry_ValueLen(e), host, size, epoch,
                NULL, NULL);
    kvEntry_Destroy(e);
    if (strcmp(host, m->c->host) == 0) {
        /* this host's lease, but its takeover failed: nobody runs it */
        bool failed;
        pthread_mutex_lock(&m->c->mu);
        failed = m->local == NULL && m->error[0] != '\0';
        pthread_mutex_unlock(&m->c->mu);
        if (failed) {
            host[0] = '\0';
            *epoch = 0;
            return TAND_ENOPROC;
        }
    }
    return 0;
}
