/*
** cluster_none.c - the cluster's functions in a build without libnats:
** each says so (TAND_ECLUSTER, and a message where it has room).
*/
#include "internal.h"

#include <stdio.h>
#include <string.h>

#define WHY "tand was built without libnats (install libnats-dev and build again)"

void tand_cluster_options_init(tand_cluster_options *o)
{
    memset(o, 0, sizeof o[0]);
    o->lease_ms = 3000;
    o->replicas = 1;
    o->timeout_ms = 2000;
}

int tand_cluster_open(tand_runtime *rt, const tand_cluster_options *o,
                      tand_cluster **out)
{
    (void)rt;
    if (out != NULL)
        *out = NULL;
    if (o != NULL && o->error != NULL && o->error_size > 0)
        snprintf(o->error, o->error_size, "%s", WHY);
    return TAND_ECLUSTER;
}

void tand_cluster_close(tand_cluster *c)
{
    (void)c;
}

int tand_cluster_start(tand_cluster *c, const tand_cluster_machine_options *o,
                       tand_cluster_machine **out)
{
    (void)c;
    if (out != NULL)
        *out = NULL;
    if (o != NULL && o->free_arg != NULL)
        o->free_arg(o->arg);
    return TAND_ECLUSTER;
}

int tand_cluster_whereis(tand_cluster *c, const char *name,
                         tand_cluster_machine **out, char *err, size_t n)
{
    (void)c;
    (void)name;
    if (out != NULL)
        *out = NULL;
    if (err != NULL && n > 0)
        snprintf(err, n, "%s", WHY);
    return TAND_ECLUSTER;
}

int tand_cluster_call(tand_cluster_machine *m, tand_msg *req,
                      tand_msg *reply, int64_t timeout_ms)
{
    (void)m;
    (void)timeout_ms;
    tand_msg_clear(req);
    if (reply != NULL)
        memset(reply, 0, sizeof *reply);
    return TAND_ECLUSTER;
}

int tand_cluster_call_async(tand_cluster_machine *m, tand_msg *req,
                            int64_t timeout_ms, tand_replies *box,
                            uint64_t tag)
{
    (void)m;
    (void)timeout_ms;
    (void)box;
    (void)tag;
    tand_msg_clear(req);
    return TAND_ECLUSTER;
}

int tand_cluster_cast(tand_cluster_machine *m, tand_msg *msg, int info)
{
    (void)m;
    (void)info;
    tand_msg_clear(msg);
    return TAND_ECLUSTER;
}

int tand_cluster_owner(tand_cluster_machine *m, char *host, size_t size,
                       uint64_t *epoch)
{
    (void)m;
    (void)host;
    (void)size;
    (void)epoch;
    return TAND_ECLUSTER;
}

void tand_cluster_machine_release(tand_cluster_machine *m)
{
    (void)m;
}

int tand_cluster_error(tand_cluster_machine *m, char *buf, size_t n)
{
    (void)m;
    if (buf != NULL && n > 0)
        buf[0] = '\0';
    return 0;
}

uint64_t tand_cluster_machine_id(const tand_cluster_machine *m)
{
    (void)m;
    return 0;
}

int tand_cluster_machine_find(uint64_t id, tand_cluster_machine **out)
{
    (void)id;
    if (out == NULL)
        return TAND_EINVAL;
    *out = NULL;
    return TAND_ENOPROC;
}
