/*
** nats_tool.c - what the cluster spec does to NATS by hand, behind
** tand's back: a lease written, read or deleted in the lease bucket
** ("tand_leases"), and which server leads a stream.
**   nats_tool URLS lease-put KEY VALUE   overwrites the lease, whoever has it
**   nats_tool URLS lease-delete KEY      deletes it (any host may then take it)
**   nats_tool URLS lease-get KEY         prints "VALUE" (exit 3 if none)
**   nats_tool URLS leader STREAM         prints the leader's server name
** URLS are comma-separated. Exit 0 on success, 1 on a failure (said on
** stderr), 2 on bad usage.
*/
#include "nats_connect.h"

#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int lease(jsCtx *js, const char *op, const char *key,
                 const char *value)
{
    kvStore *kv = NULL;
    kvEntry *e = NULL;
    uint64_t rev = 0;
    natsStatus st = js_KeyValue(&kv, js, "tand_leases");
    int rc = 0;
    if (st == NATS_OK && strcmp(op, "lease-put") == 0)
        st = kvStore_PutString(&rev, kv, key, value);
    else if (st == NATS_OK && strcmp(op, "lease-delete") == 0)
        st = kvStore_Delete(kv, key);
    else if (st == NATS_OK) {
        st = kvStore_Get(&e, kv, key);
        if (st == NATS_NOT_FOUND) {
            st = NATS_OK;
            rc = 3;
        } else if (st == NATS_OK) {
            printf("%.*s\n", kvEntry_ValueLen(e), kvEntry_ValueString(e));
            kvEntry_Destroy(e);
        }
    }
    if (st != NATS_OK) {
        fprintf(stderr, "nats_tool: %s %s: %s\n", op, key,
                natsStatus_GetText(st));
        rc = 1;
    }
    kvStore_Destroy(kv);
    return rc;
}

static int leader(jsCtx *js, const char *stream)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus st = js_GetStreamInfo(&si, js, stream, NULL, &jerr);
    int rc = 0;
    if (st != NATS_OK || si->Cluster == NULL || si->Cluster->Leader == NULL) {
        fprintf(stderr, "nats_tool: no leader of %s: %s (JetStream error "
                "%d)\n", stream, natsStatus_GetText(st), (int)jerr);
        rc = 1;
    } else {
        printf("%s\n", si->Cluster->Leader);
    }
    jsStreamInfo_Destroy(si);
    return rc;
}

int main(int argc, char **argv)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsStatus st;
    int rc;
    if (argc < 4 ||
        (strcmp(argv[2], "lease-put") == 0 ? argc != 5 : argc != 4) ||
        (strcmp(argv[2], "lease-put") != 0 &&
         strcmp(argv[2], "lease-delete") != 0 &&
         strcmp(argv[2], "lease-get") != 0 && strcmp(argv[2], "leader") != 0)) {
        fprintf(stderr, "usage: nats_tool URLS lease-put KEY VALUE | "
                        "lease-delete KEY | lease-get KEY | leader STREAM\n");
        return 2;
    }
    nc = connect_to(argv[1], &st);
    if (st == NATS_OK)
        st = natsConnection_JetStream(&js, nc, NULL);
    if (st != NATS_OK) {
        fprintf(stderr, "nats_tool: cannot reach %s: %s\n", argv[1],
                natsStatus_GetText(st));
        rc = 1;
    } else if (strcmp(argv[2], "leader") == 0) {
        rc = leader(js, argv[3]);
    } else {
        rc = lease(js, argv[2], argv[3], argc > 4 ? argv[4] : NULL);
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    nats_Close();
    return rc;
}
