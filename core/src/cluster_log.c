/*
** cluster_log.c - a clustered machine's log: one JetStream stream per
** machine, to which its owner appends one entry per batch.
**
** DESIGN: ownership is exclusive through the fence alone: every append
** carries the stream-wide expected last sequence (the sequence of the
** entry the owner last appended or replayed). The stream accepts it only
** if nothing else was appended meanwhile, inside the stream's consensus;
** a lease only picks who tries. (nats-server 2.9.10 checks a KV revision
** or the per-subject last sequence outside consensus, so neither would
** fence.) An append also carries a Nats-Msg-Id: a retry of an append
** whose acknowledgement was lost is answered "duplicate", which is the
** same success. A wrong-last-sequence refusal means another host
** appended: this host is no longer the owner (TAND_ENOTOWNER), unless an
** earlier try of this very append went unanswered, when the outcome is
** unknown (TAND_ETIMEDOUT): the caller says which. The expected sequence
** is sent even when it is 0, so that the first append to an empty stream
** is fenced too.
** Runs on whichever tand thread commits the batch; never on a libnats
** thread (js_Publish waits for its acknowledgement on the calling
** thread).
*/
#include "cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct tand__log {
    jsCtx *js;
    bool unfenced; /* TAND_CLUSTER_UNFENCED_FOR_TESTS=1: see append */
    size_t max_entry; /* the largest entry the servers take */
    char stream[TAND_NAME_MAX + 16];
    char subject[TAND_NAME_MAX + 32];
};

/* Stream names may not hold '.', '*', '>', spaces or path separators, and
** subjects not '*', '>' or spaces: a machine name is carried hex-encoded
** when it has anything but [A-Za-z0-9_-]. */
static void encode_name(const char *name, char *out, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, j = 0;
    int plain = 1;
    for (i = 0; name[i] != '\0'; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-'))
            plain = 0;
    }
    if (plain) {
        snprintf(out, size, "%s", name);
        return;
    }
    out[j++] = 'x'; /* hex names start with x_, plain ones never do */
    out[j++] = '_';
    for (i = 0; name[i] != '\0' && j + 3 < size; i++) {
        out[j++] = hex[(unsigned char)name[i] >> 4];
        out[j++] = hex[(unsigned char)name[i] & 15];
    }
    out[j] = '\0';
}

void tand__stream_wait_leader(jsCtx *js, const char *stream,
                              int64_t timeout_ms)
{
    int64_t until = tand_now_ms() + timeout_ms;
    for (;;) {
        jsStreamInfo *si = NULL;
        bool led = false;
        if (js_GetStreamInfo(&si, js, stream, NULL, NULL) == NATS_OK) {
            led = si->Cluster == NULL ||
                  (si->Cluster->Leader != NULL && si->Cluster->Leader[0]);
            jsStreamInfo_Destroy(si);
        }
        if (led || tand_now_ms() >= until)
            return;
        {
            struct timespec pause = {0, 20000000};
            nanosleep(&pause, NULL);
        }
    }
}

int tand__log_open(jsCtx *js, const char *name, int replicas,
                   tand__log **out, char *err, size_t errsize)
{
    char enc[2 * TAND_NAME_MAX + 3];
    const char *subjects[1];
    jsStreamConfig cfg;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus st;
    tand__log *l;

    *out = NULL;
    if (js == NULL || name == NULL || name[0] == '\0' ||
        strlen(name) > TAND_NAME_MAX || replicas < 1 || replicas > 5)
        return TAND_EINVAL;
    if ((l = calloc(1, sizeof *l)) == NULL)
        return TAND_ENOMEM;
    encode_name(name, enc, sizeof enc);
    l->js = js;
    l->max_entry = TAND__LOG_MAX_ENTRY;
    {
        const char *off = getenv("TAND_CLUSTER_UNFENCED_FOR_TESTS");
        l->unfenced = off != NULL && strcmp(off, "1") == 0;
    }
    snprintf(l->stream, sizeof l->stream, "TAND_%.*s", TAND_NAME_MAX, enc);
    snprintf(l->subject, sizeof l->subject, "tand.log.%.*s", TAND_NAME_MAX,
             enc);
    jsStreamConfig_Init(&cfg);
    cfg.Name = l->stream;
    subjects[0] = l->subject;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Replicas = replicas;
    st = js_AddStream(&si, js, &cfg, NULL, &jerr);
    if (st != NATS_OK && jerr == JSStreamNameExistErr)
        st = js_GetStreamInfo(&si, js, l->stream, NULL, &jerr);
    if (st != NATS_OK) {
        snprintf(err, errsize, "cannot make the stream %s: %s (JetStream "
                 "error %d)", l->stream, natsStatus_GetText(st), (int)jerr);
        free(l);
        return TAND_ECLUSTER;
    }
    if (si->Config->Replicas != replicas) {
        snprintf(err, errsize, "the stream %s has %d replicas, not the %d "
                 "asked for", l->stream, (int)si->Config->Replicas,
                 replicas);
        jsStreamInfo_Destroy(si);
        free(l);
        return TAND_ECONFIG;
    }
    jsStreamInfo_Destroy(si);
    /* a stream just made (here or by another host) answers its first
    ** reads and appends once its servers have a leader */
    tand__stream_wait_leader(js, l->stream, 2000);
    *out = l;
    return 0;
}

void tand__log_close(tand__log *l)
{
    free(l);
}

const char *tand__log_stream(const tand__log *l)
{
    return l->stream;
}

void tand__log_set_max_entry(tand__log *l, size_t n)
{
    l->max_entry = n;
}

size_t tand__log_max_entry(const tand__log *l)
{
    return l->max_entry;
}

int tand__log_purge(tand__log *l, uint64_t before, char *err, size_t errsize)
{
    jsOptions o;
    jsErrCode jerr = 0;
    natsStatus st;
    jsOptions_Init(&o);
    o.Stream.Purge.Sequence = before;
    st = js_PurgeStream(l->js, l->stream, &o, &jerr);
    if (st == NATS_OK)
        return 0;
    snprintf(err, errsize, "cannot purge the stream %s: %s (JetStream "
             "error %d)", l->stream, natsStatus_GetText(st), (int)jerr);
    return st == NATS_TIMEOUT ? TAND_ETIMEDOUT : TAND_ECLUSTER;
}

int tand__log_last(tand__log *l, uint64_t *seq, char *err, size_t errsize)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus st = js_GetStreamInfo(&si, l->js, l->stream, NULL, &jerr);
    if (st != NATS_OK) {
        snprintf(err, errsize, "cannot read the stream %s: %s", l->stream,
                 natsStatus_GetText(st));
        return st == NATS_TIMEOUT ? TAND_ETIMEDOUT : TAND_ECLUSTER;
    }
    *seq = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    return 0;
}

int tand__log_append(tand__log *l, const void *data, size_t len,
                     const char *msg_id, uint64_t expect_last,
                     int64_t timeout_ms, uint64_t *seq, char *err,
                     size_t errsize)
{
    char last[24];
    natsMsg *m = NULL;
    jsPubOptions po;
    jsPubAck *ack = NULL;
    jsErrCode jerr = 0;
    natsStatus st;
    if (len > l->max_entry || msg_id == NULL) {
        snprintf(err, errsize, "an entry of %zu bytes for the stream %s, "
                 "which takes %zu at most", len, l->stream, l->max_entry);
        return TAND_EINVAL;
    }
    /* The headers by hand: libnats leaves out an expected last sequence
    ** of 0, which would leave the first append to an empty stream
    ** unfenced; the server checks the header whenever it is there. */
    snprintf(last, sizeof last, "%llu", (unsigned long long)expect_last);
    st = natsMsg_Create(&m, l->subject, NULL, data, (int)len);
    if (st == NATS_OK)
        st = natsMsgHeader_Set(m, "Nats-Msg-Id", msg_id);
    /* The control run of the cluster spec turns the fence off, to show
    ** that its check finds the duplicates a deposed owner then makes:
    ** never set outside that test. */
    if (st == NATS_OK && !l->unfenced)
        st = natsMsgHeader_Set(m, "Nats-Expected-Last-Sequence", last);
    if (st != NATS_OK) {
        natsMsg_Destroy(m);
        return TAND_ENOMEM;
    }
    jsPubOptions_Init(&po);
    po.MaxWait = timeout_ms;
    st = js_PublishMsg(&ack, l->js, m, &po, &jerr);
    natsMsg_Destroy(m);
    if (st == NATS_OK) {
        *seq = ack->Sequence;
        jsPubAck_Destroy(ack);
        return 0;
    }
    if (jerr == JSStreamWrongLastSequenceErr) {
        snprintf(err, errsize, "the stream %s has entries past %llu: "
                 "another host appended", l->stream,
                 (unsigned long long)expect_last);
        return TAND_ENOTOWNER;
    }
    snprintf(err, errsize, "cannot append to the stream %s: %s (JetStream "
             "error %d)", l->stream, natsStatus_GetText(st), (int)jerr);
    return st == NATS_TIMEOUT ? TAND_ETIMEDOUT : TAND_ECLUSTER;
}

int tand__log_replay(tand__log *l, uint64_t last,
                     int (*fn)(void *ud, uint64_t seq, const char *data,
                               size_t len),
                     void *ud, int64_t timeout_ms, char *err, size_t errsize)
{
    natsSubscription *sub = NULL;
    jsSubOptions so;
    jsErrCode jerr = 0;
    natsStatus st;
    uint64_t seq = 0;
    int rc = 0;
    if (last == 0)
        return 0;
    /* An ordered consumer: the server pushes the entries in order, with
    ** flow control, and none needs an acknowledgement. */
    jsSubOptions_Init(&so);
    so.Stream = l->stream;
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverAll;
    st = js_SubscribeSync(&sub, l->js, l->subject, NULL, &so, &jerr);
    if (st != NATS_OK) {
        snprintf(err, errsize, "cannot read the stream %s: %s (JetStream "
                 "error %d)", l->stream, natsStatus_GetText(st), (int)jerr);
        return TAND_ECLUSTER;
    }
    while (rc == 0 && seq < last) {
        natsMsg *m = NULL;
        jsMsgMetaData *meta = NULL;
        st = natsSubscription_NextMsg(&m, sub, timeout_ms);
        if (st != NATS_OK) {
            snprintf(err, errsize, "reading the stream %s stopped at entry "
                     "%llu of %llu: %s", l->stream, (unsigned long long)seq,
                     (unsigned long long)last, natsStatus_GetText(st));
            rc = st == NATS_TIMEOUT ? TAND_ETIMEDOUT : TAND_ECLUSTER;
            break;
        }
        if (natsMsg_GetMetaData(&meta, m) != NATS_OK) {
            natsMsg_Destroy(m);
            snprintf(err, errsize, "an entry of %s without its sequence",
                     l->stream);
            rc = TAND_ECLUSTER;
            break;
        }
        seq = meta->Sequence.Stream;
        jsMsgMetaData_Destroy(meta);
        if (seq <= last)
            rc = fn(ud, seq, natsMsg_GetData(m),
                    (size_t)natsMsg_GetDataLength(m));
        natsMsg_Destroy(m);
    }
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    return rc;
}
