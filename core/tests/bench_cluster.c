/*
** bench_cluster.c - a clustered deluxe machine on three nats-servers on
** loopback (stream and lease replicas 3): remote calls (a host that does
** not own the machine, 1 and 16 client threads; the owner is another
** process), the takeover after that owner is killed -9 (from the kill to
** the first number this host is handed), then the calls of the new
** owner's own host (each batch still one fenced append). Run by
** scripts/bench. Usage: bench_cluster MS PATH/nats_cluster.sh
** (bench_cluster owner URLS NAME LEASE_MS is the owner process it
** starts.)
*/
#include "tand.h"
#include "nats_test.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#define LEASE_MS 1000
#define MACHINE "bench"

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static int start_deli(tand_runtime *rt, const char *name, void *arg,
                      tand_server **out, char *err, size_t n)
{
    tand_deluxe_options o;
    (void)arg;
    memset(&o, 0, sizeof o);
    o.min_number = 1;
    o.max_number = INT64_MAX;
    o.auto_shutdown_ms = TAND_FOREVER;
    o.mailbox_capacity = 1024;
    o.name = name;
    o.error = err;
    o.error_size = n;
    return tand_deluxe_start(rt, &o, out);
}

/* Joins the cluster at urls as host and starts the machine there. */
static int join(const char *urls, const char *host, tand_runtime **rt,
                tand_cluster **c, tand_cluster_machine **m)
{
    tand_cluster_options o;
    tand_cluster_machine_options mo;
    char err[512];
    if (tand_runtime_new(NULL, rt) != 0)
        return -1;
    tand_cluster_options_init(&o);
    o.servers = urls;
    o.host = host;
    o.lease_ms = LEASE_MS;
    o.replicas = 3;
    o.error = err;
    o.error_size = sizeof err;
    if (tand_cluster_open(*rt, &o, c) != 0) {
        fprintf(stderr, "bench_cluster: %s: %s\n", host, err);
        return -1;
    }
    memset(&mo, 0, sizeof mo);
    mo.name = MACHINE;
    mo.kind = "deluxe";
    mo.owner = TAND_OWNER_ANY;
    mo.start = start_deli;
    mo.error = err;
    mo.error_size = sizeof err;
    if (tand_cluster_start(*c, &mo, m) != 0) {
        fprintf(stderr, "bench_cluster: %s: start: %s\n", host, err);
        return -1;
    }
    return 0;
}

/* Whether host owns m now. */
static bool owned_by(tand_cluster_machine *m, const char *host)
{
    char who[256];
    uint64_t epoch;
    return tand_cluster_owner(m, who, sizeof who, &epoch) == 0 &&
           epoch > 0 && strcmp(who, host) == 0;
}

/* The owner process: says "ready" once it owns the machine, then runs
** until it is killed (or its parent has gone for 5 minutes). */
static int owner_main(const char *urls)
{
    tand_runtime *rt;
    tand_cluster *c;
    tand_cluster_machine *m;
    int64_t until = now_us() + 300 * 1000000LL;
    if (join(urls, "owner", &rt, &c, &m) != 0)
        return 1;
    while (!owned_by(m, "owner")) {
        if (now_us() > until - 280 * 1000000LL) {
            fprintf(stderr, "bench_cluster: the owner never owned\n");
            return 1;
        }
        sleep_ms(20);
    }
    printf("ready\n");
    fflush(stdout);
    while (now_us() < until && getppid() != 1)
        sleep_ms(100);
    return 0;
}

typedef struct client {
    tand_cluster_machine *m;
    int64_t end_us, n, errors;
    int64_t *lat;
    size_t cap;
} client;

static int take(tand_cluster_machine *m, int64_t timeout_ms)
{
    tand_msg req = {0}, reply;
    int rc;
    req.op = TAND_OP_QUEUE_NEW_NUMBER;
    rc = tand_cluster_call(m, &req, &reply, timeout_ms);
    tand_msg_clear(&reply);
    return rc;
}

static void *run(void *arg)
{
    client *c = arg;
    while (now_us() < c->end_us) {
        int64_t t0 = now_us();
        if (take(c->m, 5000) != 0)
            c->errors++;
        if ((size_t)c->n == c->cap) {
            c->cap = c->cap ? 2 * c->cap : 4096;
            c->lat = realloc(c->lat, c->cap * sizeof *c->lat);
        }
        c->lat[c->n++] = now_us() - t0;
    }
    return NULL;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void phase(const char *kind, tand_cluster_machine *m, int threads,
                  int64_t ms)
{
    client *c = calloc((size_t)threads, sizeof *c);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    int64_t total = 0, errors = 0, t0, *all;
    size_t k = 0;
    int i;
    t0 = now_us();
    for (i = 0; i < threads; i++) {
        c[i].m = m;
        c[i].end_us = t0 + ms * 1000;
        pthread_create(&th[i], NULL, run, &c[i]);
    }
    for (i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        total += c[i].n;
        errors += c[i].errors;
    }
    all = malloc((size_t)(total ? total : 1) * sizeof *all);
    for (i = 0; i < threads; i++) {
        memcpy(all + k, c[i].lat, (size_t)c[i].n * sizeof *all);
        k += (size_t)c[i].n;
        free(c[i].lat);
    }
    qsort(all, (size_t)total, sizeof *all, cmp64);
    if (total > 0)
        printf("%-16s %3d  %10.0f  %9lld  %9lld  %lld\n", kind, threads,
               total / ((now_us() - t0) / 1e6), (long long)all[total / 2],
               (long long)all[total * 99 / 100], (long long)errors);
    fflush(stdout);
    free(all);
    free(c);
    free(th);
}

/* Starts the owner process; its pid once it owns the machine, or -1. */
static pid_t spawn_owner(const char *self, const char *urls)
{
    int fd[2];
    pid_t pid;
    char line[32] = "";
    FILE *f;
    if (pipe(fd) != 0)
        return -1;
    if ((pid = fork()) == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        execl(self, self, "owner", urls, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    f = fdopen(fd[0], "r");
    /* the owner says ready, or dies trying (then the read ends) */
    if (pid < 0 || f == NULL || fgets(line, sizeof line, f) == NULL ||
        strcmp(line, "ready\n") != 0) {
        if (pid > 0)
            kill(pid, SIGKILL);
        pid = -1;
    }
    if (f != NULL)
        fclose(f);
    return pid;
}

int main(int argc, char **argv)
{
    static char urls[1024];
    tand_runtime *rt;
    tand_cluster *c;
    tand_cluster_machine *m;
    int64_t ms, t0, takeover_ms = -1;
    pid_t owner;

    if (argc == 3 && strcmp(argv[1], "owner") == 0)
        return owner_main(argv[2]);
    if (argc != 3) {
        fprintf(stderr, "usage: bench_cluster MS PATH/nats_cluster.sh\n");
        return 2;
    }
    ms = atoll(argv[1]);
    if (nats_test_init(argc - 1, argv + 1) != 0)
        return 2;
    start_servers(urls, sizeof urls);
    if ((owner = spawn_owner("/proc/self/exe", urls)) < 0) {
        fprintf(stderr, "bench_cluster: the owner process did not start\n");
        return 1;
    }
    if (join(urls, "caller", &rt, &c, &m) != 0) {
        kill(owner, SIGKILL);
        return 1;
    }
    printf("kind             thr     per_sec    p50_us    p99_us  errors\n");
    take(m, 5000); /* the first call sets up the reply subscription */
    phase("cluster_remote", m, 1, ms);
    phase("cluster_remote", m, 16, ms);
    /* the owner killed: how long until this host is handed a number */
    t0 = now_us();
    kill(owner, SIGKILL);
    waitpid(owner, NULL, 0);
    while (now_us() - t0 < 30 * 1000000LL)
        if (take(m, 1000) == 0) {
            takeover_ms = (now_us() - t0) / 1000;
            break;
        }
    if (!owned_by(m, "caller"))
        fprintf(stderr, "bench_cluster: this host did not take over\n");
    phase("cluster_owner", m, 1, ms);
    phase("cluster_owner", m, 16, ms);
    printf("takeover_ms: %lld lease_ms: %d\n", (long long)takeover_ms,
           LEASE_MS);
    tand_cluster_machine_release(m);
    tand_cluster_close(c);
    tand_runtime_free(rt);
    nats_Close();
    return takeover_ms < 0;
}
