/*
** test_supervisor.c - monitors, and supervisors: the three strategies,
** restart types, the restart intensity, start failures and shutdown;
** the dynamic operations (which, start, terminate, restart, delete and
** count children), their errors, the ownership of a spec's arg under
** every deadline, strategies and intensity over dynamic children, and
** stale DOWN notices.
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
    /* the count is set once the start returns, a moment after the new
    ** incarnation's name is found */
    WAIT_FOR(tand_server_stats(s, &st) == 0 && st.restarts == 1, 5000);
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


/* ---- the dynamic operations ---- */

/* An arg whose free_arg counts its own calls: each must end at 1. */
typedef struct owned {
    atomic_int frees;
    int64_t start_sleep_ms; /* the start function sleeps this long */
} owned;

static void owned_free(void *arg)
{
    atomic_fetch_add(&((owned *)arg)->frees, 1);
}

static int start_echo_owned(tand_runtime *r, const char *name, void *arg,
                            tand_server **out)
{
    owned *o = arg;
    if (o != NULL && o->start_sleep_ms > 0)
        sleep_ms(o->start_sleep_ms);
    return echo_start(r, &shared, 0, name, out);
}

static tand_child_spec spec_of(const char *name, int restart, owned *o)
{
    tand_child_spec c;
    memset(&c, 0, sizeof c);
    c.name = name;
    c.restart = restart;
    c.start = start_echo_owned;
    c.arg = o;
    c.free_arg = owned_free;
    return c;
}

static tand_server *empty_sup(int strategy, int max_restarts)
{
    tand_supervisor_options o;
    tand_server *sup;
    tand_supervisor_options_init(&o);
    o.strategy = strategy;
    o.max_restarts = max_restarts;
    o.max_seconds = 60;
    CHECK_OK(tand_supervisor_start(rt, &o, NULL, 0, &sup));
    return sup;
}

/* The entry of `name` in sup's list, into *info (when not NULL): its
** index, or -1. */
static int child_at(tand_server *sup, const char *name, tand_child_info *info)
{
    tand_child_info *list;
    size_t n = 0, cap, i;
    int at = -1;
    CHECK_OK(tand_supervisor_which_children(sup, NULL, 0, &n, 5000));
    cap = n + 8; /* room for children started meanwhile */
    list = calloc(cap, sizeof *list);
    if (list == NULL ||
        tand_supervisor_which_children(sup, list, cap, &n, 5000) != 0) {
        free(list);
        return -2;
    }
    for (i = 0; i < n && i < cap && at < 0; i++)
        if (strcmp(list[i].name, name) == 0) {
            if (info != NULL)
                *info = list[i];
            at = (int)i;
        }
    free(list);
    return at;
}

static size_t nchildren(tand_server *sup)
{
    size_t n = 999;
    CHECK_OK(tand_supervisor_which_children(sup, NULL, 0, &n, 5000));
    return n;
}

static void dyn_operations(void)
{
    owned a = {0}, dup = {0}, pres = {0};
    tand_child_spec c = spec_of("d1", TAND_PERMANENT, &a);
    tand_server *sup = empty_sup(TAND_ONE_FOR_ONE, 3), *s, *s2;
    tand_child_info info, list[1];
    tand_child_counts k;
    size_t n;

    CHECK_INT(nchildren(sup), 0);
    CHECK(tand_server_is_supervisor(sup));
    CHECK_OK(tand_supervisor_start_child(sup, &c, &s, 5000));
    CHECK(s != NULL);
    CHECK_INT(tand_server_id(s), id_of("d1"));
    CHECK_INT(child_at(sup, "d1", &info), 0);
    CHECK_INT(info.alive, 1);
    CHECK_INT(info.restart, TAND_PERMANENT);
    CHECK_INT(info.restarts, 0);
    CHECK_INT(atomic_load(&a.frees), 0);

    /* a name present: running, then kept but not running */
    c = spec_of("d1", TAND_PERMANENT, &dup);
    CHECK_RC(tand_supervisor_start_child(sup, &c, NULL, 5000),
             TAND_ESTARTED);
    CHECK_INT(atomic_load(&dup.frees), 1);
    CHECK_OK(tand_supervisor_count_children(sup, &k, 5000));
    CHECK_INT(k.specs, 1);
    CHECK_INT(k.active, 1);
    CHECK_INT(k.workers, 1);
    CHECK_INT(k.supervisors, 0);

    CHECK_OK(tand_supervisor_terminate_child(sup, "d1", 5000));
    CHECK(!tand_server_alive(s));
    tand_server_release(s);
    CHECK_INT(id_of("d1"), 0);
    CHECK_INT(child_at(sup, "d1", &info), 0);
    CHECK_INT(info.alive, 0);
    CHECK_OK(tand_supervisor_terminate_child(sup, "d1", 5000)); /* again */
    /* terminated with "shutdown": not restarted, even though permanent */
    sleep_ms(20);
    CHECK_INT(id_of("d1"), 0);
    CHECK_OK(tand_supervisor_count_children(sup, &k, 5000));
    CHECK_INT(k.specs, 1);
    CHECK_INT(k.active, 0);
    c = spec_of("d1", TAND_PERMANENT, &pres);
    CHECK_RC(tand_supervisor_start_child(sup, &c, NULL, 5000),
             TAND_EPRESENT);
    CHECK_INT(atomic_load(&pres.frees), 1);
    CHECK_RC(tand_supervisor_delete_child(sup, "nope", 5000),
             TAND_ENOTFOUND);

    CHECK_OK(tand_supervisor_restart_child(sup, "d1", &s2, 5000));
    CHECK(s2 != NULL);
    CHECK_INT(tand_server_id(s2), id_of("d1"));
    CHECK(tand_server_alive(s2));
    CHECK_INT(child_at(sup, "d1", &info), 0);
    CHECK_INT(info.restarts, 0); /* by hand: not counted */
    {
        tand_stats st;
        CHECK_OK(tand_server_stats(sup, &st));
        CHECK_INT(st.restarts, 0);
    }
    CHECK_RC(tand_supervisor_restart_child(sup, "d1", NULL, 5000),
             TAND_ERUNNING);
    CHECK_RC(tand_supervisor_delete_child(sup, "d1", 5000), TAND_ERUNNING);
    CHECK_INT(atomic_load(&a.frees), 0);
    CHECK_OK(tand_supervisor_terminate_child(sup, "d1", 5000));
    CHECK_OK(tand_supervisor_restart_child(sup, "d1", NULL, 5000));
    CHECK(id_of("d1") != 0);
    CHECK_OK(tand_supervisor_terminate_child(sup, "d1", 5000));
    CHECK_OK(tand_supervisor_delete_child(sup, "d1", 5000));
    CHECK_INT(atomic_load(&a.frees), 1); /* at the delete */
    CHECK_INT(nchildren(sup), 0);
    CHECK_RC(tand_supervisor_delete_child(sup, "d1", 5000), TAND_ENOTFOUND);
    CHECK_RC(tand_supervisor_terminate_child(sup, "d1", 5000),
             TAND_ENOTFOUND);
    CHECK_RC(tand_supervisor_restart_child(sup, "d1", &s, 5000),
             TAND_ENOTFOUND);
    CHECK(s == NULL);
    tand_server_release(s2);

    /* start order, and a list longer than the room given */
    {
        owned o3[3] = {{0}, {0}, {0}};
        static const char *names[] = {"z", "y", "x"};
        for (int i = 0; i < 3; i++) {
            c = spec_of(names[i], TAND_PERMANENT, &o3[i]);
            CHECK_OK(tand_supervisor_start_child(sup, &c, NULL, 5000));
        }
        n = 0;
        memset(list, 0, sizeof list);
        CHECK_OK(tand_supervisor_which_children(sup, list, 1, &n, 5000));
        CHECK_INT(n, 3);
        CHECK(strcmp(list[0].name, "z") == 0);
        CHECK_INT(child_at(sup, "y", NULL), 1);
        CHECK_INT(child_at(sup, "x", NULL), 2);
        CHECK_OK(tand_server_stop(sup, 0, NULL, 5000));
        CHECK_INT(id_of("z") + id_of("y") + id_of("x"), 0);
        for (int i = 0; i < 3; i++)
            CHECK_INT(atomic_load(&o3[i].frees), 1);
    }
    tand_server_release(sup);
}

/* A child whose start function calls its own supervisor: that is the
** supervisor's thread, so every operation fails with calling_self. */
typedef struct selfish {
    tand_server *sup;
    atomic_int which_rc, start_rc, frees_of_inner;
} selfish;

static void selfish_inner_free(void *arg)
{
    atomic_fetch_add(&((selfish *)arg)->frees_of_inner, 1);
}

static int start_selfish(tand_runtime *r, const char *name, void *arg,
                         tand_server **out)
{
    selfish *sf = arg;
    tand_child_spec inner;
    size_t n;
    memset(&inner, 0, sizeof inner);
    inner.name = "inner";
    inner.start = start_echo;
    inner.arg = sf;
    inner.free_arg = selfish_inner_free;
    atomic_store(&sf->which_rc,
                 tand_supervisor_which_children(sf->sup, NULL, 0, &n, 1000));
    atomic_store(&sf->start_rc,
                 tand_supervisor_start_child(sf->sup, &inner, NULL, 1000));
    return echo_start(r, &shared, 0, name, out);
}

static void dyn_errors(void)
{
    owned o = {0};
    tand_child_spec c = spec_of("e1", TAND_PERMANENT, &o);
    tand_server *sup = empty_sup(TAND_ONE_FOR_ONE, 3), *plain, *s, *holder;
    tand_child_info info;
    tand_child_counts k;
    echo_shared h = {0};
    selfish sf = {0};
    size_t n = 7;
    int frees = 0;

    /* NULL arguments */
    CHECK_RC(tand_supervisor_which_children(NULL, NULL, 0, &n, 100),
             TAND_EINVAL);
    CHECK_INT(n, 0);
    CHECK_RC(tand_supervisor_which_children(sup, NULL, 0, NULL, 100),
             TAND_EINVAL);
    CHECK_RC(tand_supervisor_which_children(sup, NULL, 2, &n, 100),
             TAND_EINVAL);
    CHECK_RC(tand_supervisor_count_children(sup, NULL, 100), TAND_EINVAL);
    CHECK_RC(tand_supervisor_start_child(sup, NULL, NULL, 100), TAND_EINVAL);
    CHECK_RC(tand_supervisor_start_child(NULL, &c, NULL, 100), TAND_EINVAL);
    CHECK_INT(atomic_load(&o.frees), ++frees);
    CHECK_RC(tand_supervisor_terminate_child(sup, NULL, 100), TAND_EINVAL);
    CHECK_RC(tand_supervisor_terminate_child(sup, "", 100), TAND_EINVAL);
    CHECK_RC(tand_supervisor_restart_child(sup, NULL, NULL, 100),
             TAND_EINVAL);
    CHECK_RC(tand_supervisor_delete_child(NULL, "e1", 100), TAND_EINVAL);

    /* a server that is not a supervisor */
    CHECK_OK(echo_start(rt, &h, 0, NULL, &plain));
    CHECK(!tand_server_is_supervisor(plain));
    CHECK(!tand_server_is_supervisor(NULL));
    CHECK_RC(tand_supervisor_which_children(plain, NULL, 0, &n, 100),
             TAND_EINVAL);
    CHECK_RC(tand_supervisor_start_child(plain, &c, &s, 100), TAND_EINVAL);
    CHECK(s == NULL);
    CHECK_INT(atomic_load(&o.frees), ++frees);
    CHECK_RC(tand_supervisor_terminate_child(plain, "e1", 100), TAND_EINVAL);
    CHECK_RC(tand_supervisor_restart_child(plain, "e1", &s, 100),
             TAND_EINVAL);
    CHECK_RC(tand_supervisor_delete_child(plain, "e1", 100), TAND_EINVAL);
    CHECK_RC(tand_supervisor_count_children(plain, &k, 100), TAND_EINVAL);
    CHECK(tand_server_alive(plain)); /* untouched */

    /* bad specs: nothing kept, arg freed */
    c.name = "";
    CHECK_RC(tand_supervisor_start_child(sup, &c, NULL, 100), TAND_ECONFIG);
    CHECK_INT(atomic_load(&o.frees), ++frees);
    c.name = "e1";
    c.restart = 7;
    CHECK_RC(tand_supervisor_start_child(sup, &c, NULL, 100), TAND_ECONFIG);
    CHECK_INT(atomic_load(&o.frees), ++frees);
    c.restart = TAND_PERMANENT;
    c.start = NULL;
    CHECK_RC(tand_supervisor_start_child(sup, &c, NULL, 100), TAND_ECONFIG);
    CHECK_INT(atomic_load(&o.frees), ++frees);
    /* a start that fails: its error, nothing kept */
    c.start = start_fails;
    CHECK_RC(tand_supervisor_start_child(sup, &c, &s, 5000), TAND_ECONFIG);
    CHECK(s == NULL);
    CHECK_INT(atomic_load(&o.frees), ++frees);
    CHECK_INT(nchildren(sup), 0);
    /* the name taken by a server that is not a child */
    c = spec_of("held", TAND_PERMANENT, &o);
    CHECK_OK(echo_start(rt, &h, 0, "held", &holder));
    CHECK_RC(tand_supervisor_start_child(sup, &c, NULL, 5000),
             TAND_ENAMETAKEN);
    CHECK_INT(atomic_load(&o.frees), ++frees);
    CHECK_INT(child_at(sup, "held", &info), -1);
    tand_server_stop(holder, 0, NULL, 2000);
    tand_server_release(holder);

    /* from the supervisor's own thread */
    {
        tand_child_spec sc;
        memset(&sc, 0, sizeof sc);
        sc.name = "selfish";
        sc.start = start_selfish;
        sc.arg = &sf;
        sf.sup = sup;
        CHECK_OK(tand_supervisor_start_child(sup, &sc, NULL, 5000));
        CHECK_RC(atomic_load(&sf.which_rc), TAND_ECALLSELF);
        CHECK_RC(atomic_load(&sf.start_rc), TAND_ECALLSELF);
        CHECK_INT(atomic_load(&sf.frees_of_inner), 1);
        CHECK_INT(child_at(sup, "inner", NULL), -1);
    }

    /* a supervisor that has ended */
    CHECK_OK(tand_server_stop(sup, 0, NULL, 5000));
    c = spec_of("late", TAND_PERMANENT, &o);
    CHECK_RC(tand_supervisor_start_child(sup, &c, &s, 1000), TAND_ENOPROC);
    CHECK(s == NULL);
    CHECK_INT(atomic_load(&o.frees), ++frees);
    CHECK_RC(tand_supervisor_which_children(sup, NULL, 0, &n, 1000),
             TAND_ENOPROC);
    CHECK_RC(tand_supervisor_count_children(sup, &k, 1000), TAND_ENOPROC);
    CHECK_RC(tand_supervisor_terminate_child(sup, "x", 1000), TAND_ENOPROC);
    CHECK_RC(tand_supervisor_restart_child(sup, "x", &s, 1000),
             TAND_ENOPROC);
    CHECK_RC(tand_supervisor_delete_child(sup, "x", 1000), TAND_ENOPROC);
    CHECK(tand_server_is_supervisor(sup)); /* still one, ended */
    tand_server_release(sup);
    tand_server_stop(plain, 0, NULL, 2000);
    tand_server_release(plain);
}

/* The arg of a start_child is freed exactly once whatever the deadline
** does: before the supervisor takes the call (0 ms, or stuck behind a
** slow start), while it starts the child (a start slower than the
** deadline), or after. Run under ASan, a leak or a double free fails. */
static void dyn_ownership(void)
{
    enum { ROUNDS = 300 };
    static owned args[ROUNDS];
    tand_server *sup = empty_sup(TAND_ONE_FOR_ONE, 3), *s;
    int i, ok = 0, timeouts = 0, kept = 0;
    char name[32];
    memset(args, 0, sizeof args);
    for (i = 0; i < ROUNDS; i++) {
        tand_child_spec c;
        int rc;
        snprintf(name, sizeof name, "own%d", i);
        args[i].start_sleep_ms = i % 4 == 3 ? 2 : 0;
        c = spec_of(name, i % 5 == 4 ? TAND_TEMPORARY : TAND_PERMANENT,
                    &args[i]);
        rc = tand_supervisor_start_child(sup, &c, &s, i % 3);
        if (rc == 0) {
            ok++;
            CHECK(s != NULL);
            CHECK_INT(tand_server_id(s), id_of(name));
            tand_server_release(s);
        } else {
            CHECK(s == NULL);
            CHECK_RC(rc, TAND_ETIMEDOUT);
            timeouts++;
        }
    }
    for (i = 0; i < ROUNDS; i++) {
        int at;
        snprintf(name, sizeof name, "own%d", i);
        at = child_at(sup, name, NULL);
        if (at >= 0) {
            kept++;
            CHECK_INT(atomic_load(&args[i].frees), 0);
        } else {
            CHECK_INT(atomic_load(&args[i].frees), 1);
        }
    }
    CHECK(kept >= ok);
    CHECK_OK(tand_server_stop(sup, 0, NULL, 30000));
    for (i = 0; i < ROUNDS; i++)
        CHECK_INT(atomic_load(&args[i].frees), 1);
    printf("ownership: %d started, %d timeouts (%d of them kept)\n", ok,
           timeouts, kept - ok);
    tand_server_release(sup);
}

static void add(tand_server *sup, const char *name, int restart, owned *o)
{
    tand_child_spec c = spec_of(name, restart, o);
    CHECK_OK(tand_supervisor_start_child(sup, &c, NULL, 5000));
}

/* The strategies over a child list that grew and shrank at run time. */
static void dyn_strategies(void)
{
    owned o[5];
    tand_server *sup;
    uint64_t a, b, c, d;
    memset(o, 0, sizeof o);

    /* one_for_all: the static child and the dynamic ones */
    sup = three(TAND_ONE_FOR_ALL, 3, TAND_PERMANENT);
    add(sup, "d", TAND_PERMANENT, &o[0]);
    add(sup, "t", TAND_TEMPORARY, &o[1]);
    a = id_of("a"), d = id_of("d");
    CHECK(d != 0 && id_of("t") != 0);
    crash("d");
    WAIT_FOR(replaced("d", d), 5000);
    WAIT_FOR(replaced("a", a), 5000);
    /* the temporary one was stopped and its spec dropped, as OTP does */
    WAIT_FOR(id_of("t") == 0, 5000);
    CHECK_INT(child_at(sup, "t", NULL), -1);
    CHECK_INT(atomic_load(&o[1].frees), 1);
    CHECK_INT(nchildren(sup), 4);
    tand_server_stop(sup, 0, NULL, 5000);
    tand_server_release(sup);
    CHECK_INT(atomic_load(&o[0].frees), 1);

    /* rest_for_one over a, b, c, d after b was deleted: c's crash
    ** restarts c and d, in the current order, and not a */
    memset(o, 0, sizeof o);
    sup = empty_sup(TAND_REST_FOR_ONE, 3);
    add(sup, "a", TAND_PERMANENT, &o[0]);
    add(sup, "b", TAND_PERMANENT, &o[1]);
    add(sup, "c", TAND_PERMANENT, &o[2]);
    add(sup, "d", TAND_PERMANENT, &o[3]);
    CHECK_OK(tand_supervisor_terminate_child(sup, "b", 5000));
    CHECK_OK(tand_supervisor_delete_child(sup, "b", 5000));
    CHECK_INT(atomic_load(&o[1].frees), 1);
    a = id_of("a"), c = id_of("c"), d = id_of("d");
    crash("c");
    WAIT_FOR(replaced("c", c), 5000);
    WAIT_FOR(replaced("d", d), 5000);
    CHECK_INT(id_of("a"), a);
    CHECK_INT(id_of("b"), 0);
    CHECK_INT(child_at(sup, "c", NULL), 1);
    {
        tand_child_info info;
        CHECK_INT(child_at(sup, "c", &info), 1);
        CHECK_INT(info.restarts, 1);
        CHECK_INT(child_at(sup, "d", &info), 2);
        CHECK_INT(info.restarts, 1);
        CHECK_INT(child_at(sup, "a", &info), 0);
        CHECK_INT(info.restarts, 0);
    }
    /* one_for_one among dynamic children: only the one */
    tand_server_stop(sup, 0, NULL, 5000);
    tand_server_release(sup);

    memset(o, 0, sizeof o);
    sup = empty_sup(TAND_ONE_FOR_ONE, 3);
    add(sup, "a", TAND_PERMANENT, &o[0]);
    add(sup, "b", TAND_PERMANENT, &o[1]);
    a = id_of("a"), b = id_of("b");
    crash("b");
    WAIT_FOR(replaced("b", b), 5000);
    CHECK_INT(id_of("a"), a);
    tand_server_stop(sup, 0, NULL, 5000);
    tand_server_release(sup);
    for (int i = 0; i < 2; i++)
        CHECK_INT(atomic_load(&o[i].frees), 1);
}

/* The intensity, reached by a dynamically added child's crashes: the
** supervisor stops its children and ends. */
static void dyn_intensity(void)
{
    owned o[2];
    tand_server *sup = empty_sup(TAND_ONE_FOR_ONE, 2);
    uint64_t x;
    int i;
    memset(o, 0, sizeof o);
    add(sup, "keep", TAND_PERMANENT, &o[0]);
    add(sup, "x", TAND_PERMANENT, &o[1]);
    for (i = 0; i < 2; i++) {
        x = id_of("x");
        crash("x");
        WAIT_FOR(replaced("x", x), 5000);
    }
    CHECK(tand_server_alive(sup));
    /* a restart by hand does not count */
    CHECK_OK(tand_supervisor_terminate_child(sup, "x", 5000));
    CHECK_OK(tand_supervisor_restart_child(sup, "x", NULL, 5000));
    CHECK(tand_server_alive(sup));
    crash("x"); /* the third restart within 60 s: it gives up */
    WAIT_FOR(!tand_server_alive(sup), 5000);
    WAIT_FOR(id_of("keep") == 0 && id_of("x") == 0, 5000);
    tand_server_release(sup);
    WAIT_FOR(atomic_load(&o[0].frees) == 1 && atomic_load(&o[1].frees) == 1,
             5000);
}

/* How children that end on their own are kept: a temporary one's spec
** goes, a transient one that ends normally stays (not running), one
** that crashes is restarted. */
static void dyn_ends(void)
{
    owned o[3];
    tand_server *sup = empty_sup(TAND_ONE_FOR_ONE, 5), *s;
    tand_child_info info;
    uint64_t tr;
    memset(o, 0, sizeof o);
    add(sup, "temp", TAND_TEMPORARY, &o[0]);
    add(sup, "tran", TAND_TRANSIENT, &o[1]);
    crash("temp");
    WAIT_FOR(child_at(sup, "temp", NULL) == -1, 5000);
    CHECK_INT(atomic_load(&o[0].frees), 1);

    tr = id_of("tran");
    crash("tran");
    WAIT_FOR(replaced("tran", tr), 5000);
    CHECK_INT(child_at(sup, "tran", &info), 0);
    CHECK_INT(info.restarts, 1);
    CHECK_OK(tand_whereis(rt, "tran", &s));
    CHECK_OK(tand_server_stop(s, 0, NULL, 5000));
    tand_server_release(s);
    WAIT_FOR(child_at(sup, "tran", &info) == 0 && !info.alive, 5000);
    CHECK_INT(id_of("tran"), 0);
    CHECK_INT(atomic_load(&o[1].frees), 0);
    CHECK_OK(tand_supervisor_restart_child(sup, "tran", NULL, 5000));
    CHECK(id_of("tran") != 0);

    /* terminate_child deletes a temporary child's spec */
    add(sup, "temp2", TAND_TEMPORARY, &o[2]);
    CHECK_OK(tand_supervisor_terminate_child(sup, "temp2", 5000));
    CHECK_INT(child_at(sup, "temp2", NULL), -1);
    CHECK_INT(atomic_load(&o[2].frees), 1);
    tand_server_stop(sup, 0, NULL, 5000);
    tand_server_release(sup);
    CHECK_INT(atomic_load(&o[1].frees), 1);
}

/* A DOWN notice of a deleted child's incarnation (its tag) must not
** touch the child that took its name and place in the list. The
** supervisor tags incarnations 1, 2, ... in start order; the test sends
** the stale notice itself, so its timing is certain. */
static void dyn_stale_down(void)
{
    owned o[2];
    tand_server *sup = empty_sup(TAND_ONE_FOR_ONE, 3);
    tand_child_info info;
    tand_msg down = {0};
    tand_stats st;
    uint64_t x;
    memset(o, 0, sizeof o);
    add(sup, "x", TAND_PERMANENT, &o[0]); /* tag 1 */
    CHECK_OK(tand_supervisor_terminate_child(sup, "x", 5000));
    CHECK_OK(tand_supervisor_delete_child(sup, "x", 5000));
    add(sup, "x", TAND_PERMANENT, &o[1]); /* tag 2, at index 0 again */
    x = id_of("x");
    down.op = TAND_OP_DOWN;
    down.ival[0] = 1;
    down.ival[1] = TAND_ECRASHED;
    CHECK_OK(tand_send(sup, &down, 5000, 0));
    CHECK_INT(child_at(sup, "x", &info), 0); /* after the notice */
    CHECK_INT(info.alive, 1);
    CHECK_INT(info.restarts, 0);
    CHECK_INT(id_of("x"), x);
    CHECK_OK(tand_server_stats(sup, &st));
    CHECK_INT(st.restarts, 0);
    /* and its own end is still heard */
    crash("x");
    WAIT_FOR(replaced("x", x), 5000);
    CHECK_INT(child_at(sup, "x", &info), 0);
    CHECK_INT(info.restarts, 1);
    tand_server_stop(sup, 0, NULL, 5000);
    tand_server_release(sup);
}

/* count_children tells a supervisor child from a worker by what the
** child is, not by a flag given. */
static int start_inner_sup(tand_runtime *r, const char *name, void *arg,
                           tand_server **out)
{
    tand_supervisor_options o;
    tand_child_spec kid;
    (void)arg;
    memset(&kid, 0, sizeof kid);
    kid.name = "inner_worker";
    kid.start = start_echo;
    tand_supervisor_options_init(&o);
    o.name = name;
    return tand_supervisor_start(r, &o, &kid, 1, out);
}

static void dyn_counts(void)
{
    owned o[2];
    tand_server *sup = empty_sup(TAND_ONE_FOR_ONE, 3), *inner;
    tand_child_spec c;
    tand_child_counts k;
    size_t n = 0;
    memset(o, 0, sizeof o);
    add(sup, "w1", TAND_PERMANENT, &o[0]);
    memset(&c, 0, sizeof c);
    c.name = "inner";
    c.start = start_inner_sup;
    CHECK_OK(tand_supervisor_start_child(sup, &c, &inner, 5000));
    CHECK(tand_server_is_supervisor(inner));
    CHECK_OK(tand_supervisor_which_children(inner, NULL, 0, &n, 5000));
    CHECK_INT(n, 1);
    add(sup, "w2", TAND_TRANSIENT, &o[1]);
    CHECK_OK(tand_supervisor_terminate_child(sup, "w2", 5000));
    CHECK_OK(tand_supervisor_count_children(sup, &k, 5000));
    CHECK_INT(k.specs, 3);
    CHECK_INT(k.active, 2);
    CHECK_INT(k.supervisors, 1);
    CHECK_INT(k.workers, 2);
    /* a supervisor child is terminated with its own children */
    CHECK_OK(tand_supervisor_terminate_child(sup, "inner", 5000));
    CHECK_INT(id_of("inner_worker"), 0);
    CHECK_OK(tand_supervisor_count_children(sup, &k, 5000));
    CHECK_INT(k.active, 1);
    CHECK_INT(k.supervisors, 1); /* kept: its spec still is one */
    tand_server_release(inner);
    tand_server_stop(sup, 0, NULL, 5000);
    tand_server_release(sup);
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
    dyn_operations();
    dyn_errors();
    dyn_ownership();
    dyn_strategies();
    dyn_intensity();
    dyn_ends();
    dyn_stale_down();
    dyn_counts();
    tand_runtime_free(rt);
    return check_done("test_supervisor");
}
