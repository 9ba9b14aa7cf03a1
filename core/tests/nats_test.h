/*
** nats_test.h - for the cluster's C tests: three real nats-servers on
** loopback (started by nats_cluster.sh, whose path is the test's first
** argument, and stopped by pid at exit) and connections to them.
*/
#ifndef TAND_NATS_TEST_H
#define TAND_NATS_TEST_H

#include "nats_connect.h"

#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char nats_dir[256], nats_script[512];

static int nats_test_init(int argc, char **argv)
{
    snprintf(nats_script, sizeof nats_script, "%s", argc > 1 ? argv[1] : "");
    if (argc < 2 || access(nats_script, X_OK) != 0) {
        fprintf(stderr, "usage: %s PATH/nats_cluster.sh\n", argv[0]);
        return -1;
    }
    return 0;
}

static void stop_servers(void)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s stop %s", nats_script, nats_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not stop the nats-servers in %s\n", nats_dir);
}

/* Starts the servers; their URLs, comma-separated, in urls. */
static void start_servers(char *urls, size_t size)
{
    char cmd[1024];
    FILE *p;
    snprintf(nats_dir, sizeof nats_dir, "/tmp/tand-nats-XXXXXX");
    if (mkdtemp(nats_dir) == NULL) {
        perror("mkdtemp");
        exit(1);
    }
    snprintf(cmd, sizeof cmd, "%s start %s 3", nats_script, nats_dir);
    p = popen(cmd, "r");
    if (p == NULL || fgets(urls, (int)size, p) == NULL) {
        fprintf(stderr, "nats_cluster.sh start failed\n");
        exit(1);
    }
    pclose(p);
    urls[strcspn(urls, "\n")] = '\0';
    atexit(stop_servers);
}

#endif
