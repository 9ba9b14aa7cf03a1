/*
** bench_instr.c - the C side of scripts/bench's instruction counts: n
** tand_call()s of TAND_OP_NEXT on a counter machine from one client, each
** with the caller "me" (a 3-byte MessagePack string in malloc'ed data, as
** the Lua binding sends m:next("me")). The runtime is threaded, one worker
** per core, like the Lua module's; with one client the engine runs each
** call on this thread. scripts/bench_instr.lua runs it under callgrind for
** n and 2n calls: the difference is the cost of n calls, startup cancels.
** Run by scripts/bench, never by the tests. Usage: bench_instr n
*/
#include "tand.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char caller[] = "\xa2me"; /* MessagePack "me" */

int main(int argc, char **argv)
{
    tand_runtime *rt = NULL;
    tand_server *s = NULL;
    tand_counter_options o;
    long n = argc > 1 ? atol(argv[1]) : 0, i;
    int rc;

    if (n <= 0) {
        fprintf(stderr, "usage: bench_instr n (n > 0)\n");
        return 2;
    }
    memset(&o, 0, sizeof o);
    if ((rc = tand_runtime_new(NULL, &rt)) != 0 ||
        (rc = tand_counter_start(rt, &o, &s)) != 0) {
        fprintf(stderr, "bench_instr: cannot start: %s\n", tand_errname(rc));
        return 1;
    }
    for (i = 0; i < n; i++) {
        tand_msg req = {0}, reply;
        req.op = TAND_OP_NEXT;
        if ((req.data = malloc(sizeof caller - 1)) == NULL) {
            fprintf(stderr, "bench_instr: out of memory\n");
            return 1;
        }
        memcpy(req.data, caller, sizeof caller - 1);
        req.size = sizeof caller - 1;
        rc = tand_call(s, &req, &reply, 5000, 0);
        if (rc != 0 || reply.ival[0] != i) {
            fprintf(stderr, "bench_instr: call %ld: %s, number %lld\n", i,
                    tand_errname(rc), (long long)reply.ival[0]);
            return 1;
        }
        tand_msg_clear(&reply);
    }
    tand_server_stop(s, 0, NULL, TAND_FOREVER);
    tand_server_release(s);
    tand_runtime_free(rt);
    printf("c_next %ld\n", n);
    return 0;
}
