/*
** test_faults.c - allocation failures: the N-th allocation of a scenario
** fails, for every N along it. Each failure must come back as an error
** code (out_of_memory, or what follows from it), never as a crash, a hang
** or a leak (the ASan build checks leaks). A pumped runtime keeps the
** order of allocations the same from run to run.
*/
#include "check.h"
#include "alloc.h"

#include <unistd.h>

static int bad; /* results outside the allowed set */

static void allow(int rc)
{
    if (rc != 0 && rc != TAND_ENOMEM && rc != TAND_ENOPROC &&
        rc != TAND_EJOURNAL && rc != TAND_ECRASHED) {
        fprintf(stderr, "unexpected %s\n", tand_errname(rc));
        bad++;
    }
}

static void scenario(const char *journal)
{
    tand_runtime_options ro = {TAND_PUMPED};
    tand_runtime *rt;
    tand_deluxe_options d;
    tand_counter_options c;
    tand_server *m = NULL, *k = NULL, *w = NULL;
    tand_msg req = {0}, reply;
    tand_buf b;
    int64_t n, prio = 2;
    int i;

    if (tand_runtime_new(&ro, &rt) != 0)
        return;
    memset(&d, 0, sizeof d);
    d.min_number = 1;
    d.max_number = 1000;
    d.auto_shutdown_ms = TAND_FOREVER;
    d.name = "deli";
    d.journal = journal;
    allow(tand_deluxe_start(rt, &d, &m));
    if (m != NULL) {
        for (i = 0; i < 3; i++)
            allow(tand_deluxe_queue(m, &n, 1000));
        allow(tand_deluxe_serve(m, &prio, &n, 1000));
        tand_buf_init(&b);
        tand_pack_array(&b, 1);
        tand_pack_str(&b, "report_state", 12);
        if (tand_buf_to_msg(&b, &req) == 0) {
            allow(tand_call(m, &req, &reply, 1000, 0));
            tand_msg_clear(&reply);
        }
        req.op = TAND_OP_RESET_STATE;
        allow(tand_cast(m, &req, 1000, 0));
        allow(tand_send(m, &req, 1000, 0));
        allow(tand_server_set_idle(m, 100000, TAND_IDLE_STOP));
        if (tand_whereis(rt, "deli", &w) == 0)
            tand_server_release(w);
        tand_runtime_pump(rt, 1000);
    }
    memset(&c, 0, sizeof c);
    c.initial_number = 7;
    allow(tand_counter_start(rt, &c, &k));
    if (k != NULL) {
        tand_buf_init(&b);
        tand_pack_map(&b, 1);
        tand_pack_str(&b, "id", 2);
        tand_pack_int(&b, 42);
        req.op = TAND_OP_NEXT;
        if (tand_buf_to_msg(&b, &req) == 0) {
            allow(tand_call(k, &req, &reply, 1000, 0));
            tand_msg_clear(&reply);
        }
        req.op = TAND_OP_REPORT;
        allow(tand_call(k, &req, &reply, 1000, 0));
        tand_msg_clear(&reply);
        allow(tand_monitor(k, m ? m : k, 1));
    }
    if (m != NULL) {
        allow(tand_server_stop(m, TAND_ECRASHED, "detail", 1000));
        tand_server_release(m);
    }
    if (k != NULL)
        tand_server_release(k);
    tand_runtime_free(rt); /* stops the counter */
}

static void remove_journal(const char *journal)
{
    char side[600];
    if (journal == NULL)
        return;
    unlink(journal);
    snprintf(side, sizeof side, "%s-wal", journal);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", journal);
    unlink(side);
}

/* Fails allocation 0, 1, 2, ... until a run ends before reaching it. */
static void sweep(const char *journal)
{
    long n;
    for (n = 0; n < 20000 && bad == 0; n++) {
        long left;
        tand__fail_allocation(n);
        scenario(journal);
        left = tand__fail_allocation(-1);
        remove_journal(journal);
        if (left >= 0)
            break; /* every allocation of the scenario has failed once */
    }
    printf("%s: %ld allocations, each failed once\n",
           journal ? "journaled" : "in memory", n);
    CHECK(n > 20);
    CHECK(n < 20000);
    CHECK_INT(bad, 0);
}

int main(void)
{
    char path[] = "/tmp/tand-faults-XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) {
        close(fd);
        unlink(path);
    }
    sweep(NULL);
    sweep(path);
    return check_done("test_faults");
}
