/*
** nats_connect.h - for the cluster's test programs: a connection to
** nats-servers given as comma-separated URLs.
*/
#ifndef TAND_NATS_CONNECT_H
#define TAND_NATS_CONNECT_H

#include <nats/nats.h>
#include <stdio.h>
#include <string.h>

/* Connects to the comma-separated urls (natsOptions_SetURL's own list
** form does not connect with libnats 3.4.1: the list goes as servers). */
static natsConnection *connect_to(const char *urls, natsStatus *st)
    __attribute__((unused));
static natsConnection *connect_to(const char *urls, natsStatus *st)
{
    natsOptions *o = NULL;
    natsConnection *nc = NULL;
    const char *servers[8];
    char copy[1024], *tok, *save = NULL;
    int n = 0;
    snprintf(copy, sizeof copy, "%s", urls);
    for (tok = strtok_r(copy, ",", &save); tok != NULL && n < 8;
         tok = strtok_r(NULL, ",", &save))
        servers[n++] = tok;
    *st = natsOptions_Create(&o);
    if (*st == NATS_OK)
        *st = natsOptions_SetServers(o, servers, n);
    if (*st == NATS_OK)
        *st = natsOptions_SetTimeout(o, 2000);
    if (*st == NATS_OK)
        *st = natsConnection_Connect(&nc, o);
    natsOptions_Destroy(o);
    return nc;
}

#endif
