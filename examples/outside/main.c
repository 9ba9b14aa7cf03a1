/*
** main.c - a program outside the tand tree, built against an installed
** tand (see CMakeLists.txt here, or pkg-config): takes numbers from a
** built-in machine and from a Lua policy given as source text.
*/
#include <tand.h>

#include <stdio.h>
#include <string.h>

static const char policy[] =
    "return { handle_call = function(req, from, state, machine)\n"
    "  return machine:default(req) end }\n";

int main(void)
{
    tand_deluxe_options d;
    tand_policy_options p;
    tand_server *m, *s;
    int64_t a = 0, b = 0;
    char err[256] = "";

    tand_deluxe_options_init(&d);
    d.min_number = 1;
    d.max_number = 10;
    tand_policy_options_init(&p);
    p.source = policy;
    p.source_size = sizeof policy - 1;
    p.error = err;
    p.error_size = sizeof err;
    if (tand_deluxe_start(tand_runtime_default(), &d, &m) != 0 ||
        tand_policy_start(tand_runtime_default(), &p, &s) != 0 ||
        tand_deluxe_queue(m, &a, 5000) != 0 ||
        tand_deluxe_queue(s, &b, 5000) != 0) {
        fprintf(stderr, "outside: failed %s\n", err);
        return 1;
    }
    printf("outside: %lld %lld\n", (long long)a, (long long)b);
    tand_server_release(m);
    tand_server_release(s);
    return a == 1 && b == 1 ? 0 : 1;
}
