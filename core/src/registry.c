/*
** registry.c - names and ids: finding a running server.
**
** Both tables belong to the runtime and are guarded by rt->table_mu. A
** server enters the id table when it starts and leaves both tables at its
** end, before its stoppers are told it ended, so a name is free again the
** moment tand_server_stop() returns.
*/
#include "internal.h"

#include <stdlib.h>
#include <string.h>

int tand_register(tand_server *s, const char *name)
{
    tand_runtime *rt;
    char *copy;
    int rc;

    if (s == NULL || name == NULL || name[0] == '\0' ||
        strlen(name) > TAND_NAME_MAX)
        return TAND_EINVAL;
    if ((copy = tand__strdup(name)) == NULL)
        return TAND_ENOMEM;
    if ((rt = tand__server_pin(s)) == NULL) {
        free(copy);
        return TAND_ENOPROC;
    }
    pthread_mutex_lock(&rt->table_mu);
    if (tand__table_get(rt->by_id, &s->id, sizeof s->id) != s) {
        rc = TAND_ENOPROC; /* ended meanwhile */
    } else if (s->name != NULL) {
        rc = strcmp(s->name, name) == 0 ? 0 : TAND_EINVAL;
    } else {
        rc = tand__table_put(rt->by_name, copy, strlen(copy), s);
        if (rc == 0) {
            s->name = copy;
            copy = NULL;
        }
    }
    pthread_mutex_unlock(&rt->table_mu);
    tand__runtime_unpin(rt);
    free(copy);
    return rc;
}

int tand_unregister(tand_runtime *rt, const char *name)
{
    tand_server *s;
    if (rt == NULL || name == NULL)
        return TAND_EINVAL;
    pthread_mutex_lock(&rt->table_mu);
    s = tand__table_del(rt->by_name, name, strlen(name));
    if (s != NULL) {
        free(s->name);
        s->name = NULL;
    }
    pthread_mutex_unlock(&rt->table_mu);
    return s ? 0 : TAND_ENOPROC;
}

int tand_whereis(tand_runtime *rt, const char *name, tand_server **out)
{
    tand_server *s;
    if (out != NULL)
        *out = NULL;
    if (rt == NULL || name == NULL || out == NULL)
        return TAND_EINVAL;
    pthread_mutex_lock(&rt->table_mu);
    s = tand__table_get(rt->by_name, name, strlen(name));
    if (s != NULL)
        tand_server_retain(s);
    pthread_mutex_unlock(&rt->table_mu);
    *out = s;
    return s ? 0 : TAND_ENOPROC;
}

int tand_server_lookup(tand_runtime *rt, uint64_t id, tand_server **out)
{
    tand_server *s;
    if (out != NULL)
        *out = NULL;
    if (rt == NULL || out == NULL)
        return TAND_EINVAL;
    pthread_mutex_lock(&rt->table_mu);
    s = tand__table_get(rt->by_id, &id, sizeof id);
    if (s != NULL)
        tand_server_retain(s);
    pthread_mutex_unlock(&rt->table_mu);
    *out = s;
    return s ? 0 : TAND_ENOPROC;
}
