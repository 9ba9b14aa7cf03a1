/*
** fuzz_journal.c - libFuzzer target for the journal loader: any file is
** either refused, untouched, or loaded as a deluxe machine's journal
** without a crash, whatever its bytes.
*/
#include "tand.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[64];

static void write_file(const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        abort();
    if (size > 0 && fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);
}

static int same_file(const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = malloc(size + 1);
    size_t n;
    int same;
    if (f == NULL || buf == NULL)
        abort();
    n = fread(buf, 1, size + 1, f);
    fclose(f);
    same = n == size && memcmp(buf, data, size) == 0;
    free(buf);
    return same;
}

static void clean(void)
{
    char side[80];
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static tand_runtime *rt;
    tand_runtime_options ro = {TAND_PUMPED};
    tand_deluxe_options o;
    tand_server *s = NULL;
    char err[512];
    int rc;

    if (rt == NULL) {
        snprintf(path, sizeof path, "/tmp/tand-fuzz-%d.db", (int)getpid());
        if (tand_runtime_new(&ro, &rt) != 0)
            abort();
    }
    if (size == 0)
        return 0; /* an empty file would be a new journal */
    clean();
    write_file(data, size);
    memset(&o, 0, sizeof o);
    o.min_number = 1;
    o.max_number = 1000000;
    o.auto_shutdown_ms = TAND_FOREVER;
    o.journal = path;
    o.error = err;
    o.error_size = sizeof err;
    rc = tand_deluxe_start(rt, &o, &s);
    if (rc == TAND_EJOURNAL) {
        if (!same_file(data, size))
            abort(); /* a refused journal must be left as it was */
    } else if (rc == 0) {
        int64_t n;
        tand_deluxe_queue(s, &n, 1000);
        tand_server_stop(s, 0, NULL, 1000);
        tand_server_release(s);
    }
    clean();
    return 0;
}
