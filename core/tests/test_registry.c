/*
** test_registry.c - names and ids: register, look up, taken names, and
** names that vanish with their server.
*/
#include "check.h"
#include "echo.h"

int main(void)
{
    tand_runtime *rt;
    tand_server *a, *b, *found;
    echo_shared sh = {0};
    uint64_t id;

    CHECK_OK(tand_runtime_new(NULL, &rt));
    CHECK_OK(echo_start(rt, &sh, 0, "deli", &a));
    CHECK_OK(tand_whereis(rt, "deli", &found));
    CHECK(found == a);
    tand_server_release(found);
    CHECK_RC(echo_start(rt, &sh, 0, "deli", &b), TAND_ENAMETAKEN);
    CHECK(b == NULL);
    CHECK_INT(atomic_load(&sh.terminated), 1); /* b's state was freed */
    CHECK_RC(tand_whereis(rt, "nobody", &found), TAND_ENOPROC);
    CHECK(found == NULL);

    /* lookup by id */
    id = tand_server_id(a);
    CHECK(id != 0);
    CHECK_OK(tand_server_lookup(rt, id, &found));
    CHECK(found == a);
    tand_server_release(found);
    CHECK_RC(tand_server_lookup(rt, id + 1000000, &found), TAND_ENOPROC);

    /* a second name for the same server is refused, the same is fine */
    CHECK_OK(tand_register(a, "deli"));
    CHECK_RC(tand_register(a, "other"), TAND_EINVAL);
    CHECK_OK(tand_unregister(rt, "deli"));
    CHECK_RC(tand_unregister(rt, "deli"), TAND_ENOPROC);
    CHECK_OK(tand_register(a, "counter"));
    CHECK_OK(tand_whereis(rt, "counter", &found));
    tand_server_release(found);

    /* names and ids vanish with the server, and can be taken again */
    CHECK_OK(tand_server_stop(a, 0, NULL, 2000));
    CHECK_RC(tand_whereis(rt, "counter", &found), TAND_ENOPROC);
    CHECK_RC(tand_server_lookup(rt, id, &found), TAND_ENOPROC);
    CHECK_RC(tand_register(a, "again"), TAND_ENOPROC);
    CHECK_OK(echo_start(rt, &sh, 0, "counter", &b));
    CHECK(tand_server_id(b) != id);
    CHECK_RC(tand_register(b, ""), TAND_EINVAL);
    CHECK_RC(tand_register(NULL, "x"), TAND_EINVAL);

    tand_server_release(a);
    tand_server_release(b);
    tand_runtime_free(rt); /* stops b */
    CHECK_INT(atomic_load(&sh.terminated), 3);
    return check_done("test_registry");
}
