/*
** bench_neighbour.c - the busy neighbour of scripts/bench: one process that
** spins on one core, making no system call in its loop, until SIGTERM or
** SIGINT, or until max_s seconds have passed (so it never outlives a
** killed bench). At exit it prints the share of a core it got, so a run can
** show that its "busy" rounds really had a neighbour.
** Usage: bench_neighbour [max_s]   (max_s: 600 by default)
*/
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static double seconds(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    double max_s = argc > 1 ? atof(argv[1]) : 600, t0, wall, cpu;
    volatile uint64_t spins = 0;
    struct sigaction sa = {0};

    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    t0 = seconds(CLOCK_MONOTONIC);
    while (!stop) {
        spins++;
        /* the clock only every 2^22 turns: the loop stays on the CPU */
        if ((spins & ((1u << 22) - 1)) == 0 &&
            seconds(CLOCK_MONOTONIC) - t0 > max_s)
            break;
    }
    wall = seconds(CLOCK_MONOTONIC) - t0;
    cpu = seconds(CLOCK_PROCESS_CPUTIME_ID);
    printf("neighbour %.2f s wall %.2f s cpu %.0f%% of a core%s\n", wall, cpu,
           wall > 0 ? 100 * cpu / wall : 0, stop ? "" : " (timed out)");
    return 0;
}
