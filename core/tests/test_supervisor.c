/*
** test_supervisor.c - monitors, and supervisors: the three strategies,
** restart types, the restart intensity, start failures and shutdown.
*/
#include "check.h"
#include "echo.h"

static tand_runtime *rt;
static echo_shared shared;
static atomic_int freed_args;

static int start_echo(tand_runtime *r, const char *name, void *arg,
                      tand_server **out)
{
    (void)arg;
    return echo_start(r, &shared, 0, name, out);
}

static int start_fails(tand_runtime *r, const char *name, void *arg,
                       tand_server **out)
{
    (void)r;
    (void)name;
    (void)arg;
    *out = NULL;
    return TAND_ECONFIG;
}

static void count_free(void *arg)
{
    (void)arg;
    atomic_fetch_add(&freed_args, 1);
}

static uint64_t id_of(const char *name)
{
    tand_server *s;
    uint64_t id;
    if (tand_whereis(rt, name, &s) != 0)
        return 0;
    id = tand_server_id(s);
    tand_server_release(s);
    return id;
}

/* Registered to a server other than `old` (read once per poll). */
static int replaced(const char *name, uint64_t old)
{
    uint64_t now = id_of(name);
    return now != 0 && now != old;
}

static void crash(const char *name)
{
    tand_server *s;
    tand_msg req = {0}, reply;
    if (tand_whereis(rt, name, &s) != 0)
        return;
    req.op = CRASH;
    tand_call(s, &req, &reply, 5000, 0);
    tand_msg_clear(&reply);
    tand_server_release(s);
}

static tand_server *three(int strategy, int max_restarts, int restart)
{
    static const char *names[] = {"a", "b", "c"};
    tand_child_spec kids[3];
    tand_supervisor_options o;
    tand_server *sup;
    int i;
    memset(kids, 0, sizeof kids);
    for (i = 0; i < 3; i++) {
        kids[i].name = names[i];
        kids[i].start = start_echo;
        kids[i].restart = restart;
        kids[i].free_arg = count_free;
    }
    tand_supervisor_options_init(&o);
    o.strategy = strategy;
    o.max_restarts = max_restarts;
    CHECK_OK(tand_supervisor_start(rt, &o, kids, 3, &sup));
    return sup;
}

static void monitors(void)
{
    echo_shared w = {0}, x = {0};
    tand_server *watcher, *watched;
    CHECK_OK(echo_start(rt, &w, 0, NULL, &watcher));
    CHECK_OK(echo_start(rt, &x, 0, NULL, &watched));
    CHECK_OK(tand_monitor(watched, watcher, 77));
    CHECK_OK(tand_server_stop(watched, TAND_ECRASHED, "x", 2000));
    WAIT_FOR(atomic_load(&w.downs) == 1, 5000);
    CHECK_INT(atomic_load(&w.down_tag), 77);
    CHECK_INT(atomic_load(&w.down_reason), TAND_ECRASHED);
    /* monitoring a server that has ended: told at once */
    CHECK_OK(tand_monitor(watched, watcher, 78));
    WAIT_FOR(atomic_load(&w.downs) == 2, 5000);
    CHECK_INT(atomic_load(&w.down_reason), TAND_ENOPROC);
    tand_server_stop(watcher, 0, NULL, 2000);
    tand_server_release(watcher);
    tand_server_release(watched);
}

static void strategies(void)
{
    uint64_t a, b, c;
    tand_server *sup, *s;
    tand_stats st;

    sup = three(TAND_ONE_FOR_ONE, 3, TAND_PERMANENT);
    a = id_of("a"), b = id_of("b"), c = id_of("c");
    CHECK(a && b && c);
    crash("b");
    WAIT_FOR(replaced("b", b), 5000);
    CHECK_INT(id_of("a"), a);
    CHECK_INT(id_of("c"), c);
    CHECK_OK(tand_whereis(rt, "b", &s));
    CHECK_OK(tand_server_stats(s, &st));
    CHECK_INT(st.restarts, 1);
    tand_server_release(s);
    CHECK_OK(tand_server_stats(sup, &st));
    CHECK_INT(st.restarts, 1);
    CHECK_OK(tand_server_stop(sup, 0, NULL, 5000));
    CHECK_INT(id_of("a") + id_of("b") + id_of("c"), 0); /* all stopped */
    tand_server_release(sup);

    sup = three(TAND_ONE_FOR_ALL, 3, TAND_PERMANENT);
    a = id_of("a"), b = id_of("b"), c = id_of("c");
    crash("b");
    WAIT_FOR(replaced("b", b), 5000);
    WAIT_FOR(replaced("a", a), 5000);
    WAIT_FOR(replaced("c", c), 5000);
    tand_server_stop(sup, 0, NULL, 5000);
    tand_server_release(sup);

    sup = three(TAND_REST_FOR_ONE, 3, TAND_PERMANENT);
    a = id_of("a"), b = id_of("b"), c = id_of("c");
    crash("b");
    WAIT_FOR(replaced("b", b), 5000);
    WAIT_FOR(replaced("c", c), 5000);
    CHECK_INT(id_of("a"), a);
    tand_server_stop(sup, 0, NULL, 5000);
    tand_server_release(sup);
}

static void restart_types(void)
{
    tand_server *sup, *s;
    uint64_t b;

    /* transient: a normal stop is final, a crash is restarted */
    sup = three(TAND_ONE_FOR_ONE, 3, TAND_TRANSIENT);
    b = id_of("b");
    crash("b");
    WAIT_FOR(replaced("b", b), 5000);
    CHECK_OK(tand_whereis(rt, "b", &s));
    CHECK_OK(tand_server_stop(s, 0, NULL, 5000));
    tand_server_release(s);
    echo_req(sup, 0, 0, 0, 5000, NULL); /* the DOWN has been handled */
    CHECK_INT(id_of("b"), 0);
    tand_server_stop(sup, 0, NULL, 5000);
    tand_server_release(sup);

    /* temporary: never restarted (it is gone, and stays gone for a while
    ** after the supervisor has had time to hear of it) */
    sup = three(TAND_ONE_FOR_ONE, 3, TAND_TEMPORARY);
    crash("a");
    WAIT_FOR(id_of("a") == 0, 5000);
    for (int i = 0; i < 20; i++) {
        echo_req(sup, 0, 0, 0, 5000, NULL);
        sleep_ms(10);
    }
    CHECK_INT(id_of("a"), 0);
    CHECK(id_of("b") != 0);
    tand_server_stop(sup, 0, NULL, 5000);
    tand_server_release(sup);

    /* permanent: even a normal stop is restarted */
    sup = three(TAND_ONE_FOR_ONE, 3, TAND_PERMANENT);
    b = id_of("b");
    CHECK_OK(tand_whereis(rt, "b", &s));
    tand_server_stop(s, 0, NULL, 5000);
    tand_server_release(s);
    WAIT_FOR(replaced("b", b), 5000);
    tand_server_stop(sup, 0, NULL, 5000);
    tand_server_release(sup);
}

static void intensity(void)
{
    tand_server *sup;
    uint64_t b;
    int i;
    sup = three(TAND_ONE_FOR_ONE, 2, TAND_PERMANENT);
    for (i = 0; i < 2; i++) {
        b = id_of("b");
        crash("b");
        WAIT_FOR(replaced("b", b), 5000);
    }
    CHECK(tand_server_alive(sup));
    crash("b"); /* the third restart within 5 s: it gives up */
    WAIT_FOR(!tand_server_alive(sup), 5000);
    WAIT_FOR(id_of("a") == 0 && id_of("b") == 0 && id_of("c") == 0, 5000);
    tand_server_release(sup);
}

static void failures(void)
{
    tand_child_spec kids[2];
    tand_supervisor_options o;
    tand_server *sup = (tand_server *)1;
    int before;

    memset(kids, 0, sizeof kids);
    kids[0].name = "first";
    kids[0].start = start_echo;
    kids[0].free_arg = count_free;
    kids[1].name = "second";
    kids[1].start = start_fails;
    kids[1].free_arg = count_free;
    before = atomic_load(&freed_args);
    CHECK_RC(tand_supervisor_start(rt, NULL, kids, 2, &sup), TAND_ECONFIG);
    CHECK(sup == NULL);
    CHECK_INT(id_of("first"), 0); /* the started one was stopped */
    CHECK_INT(atomic_load(&freed_args) - before, 2);

    tand_supervisor_options_init(&o);
    o.strategy = 9;
    kids[1].start = start_echo;
    before = atomic_load(&freed_args);
    CHECK_RC(tand_supervisor_start(rt, &o, kids, 2, &sup), TAND_ECONFIG);
    CHECK_INT(atomic_load(&freed_args) - before, 2);
    tand_supervisor_options_init(&o);
    kids[1].name = "";
    CHECK_RC(tand_supervisor_start(rt, &o, kids, 2, &sup), TAND_ECONFIG);
    /* a supervisor name that is taken */
    kids[1].name = "second";
    o.name = "first";
    {
        tand_server *holder;
        echo_shared h = {0};
        CHECK_OK(echo_start(rt, &h, 0, "first", &holder));
        CHECK_RC(tand_supervisor_start(rt, &o, kids, 2, &sup),
                 TAND_ENAMETAKEN);
        tand_server_stop(holder, 0, NULL, 2000);
        tand_server_release(holder);
    }
}

int main(void)
{
    tand_runtime_options ro = {1}; /* one worker: stops must not stall */
    CHECK_OK(tand_runtime_new(&ro, &rt));
    monitors();
    strategies();
    restart_types();
    intensity();
    failures();
    tand_runtime_free(rt);
    return check_done("test_supervisor");
}
