/*
** game_loop.c - a game that runs its matchmaking beside its frame loop.
**
** tand has no thread of its own here (a pumped runtime): each frame the
** game sends "join" calls without waiting (into a reply box), lends tand
** at most a fixed budget with tand_runtime_pump(), and reads the matches
** that came back. The matchmaking server is a Lua policy
** (examples/policies/matchmaking.lua) whose join reply waits until an
** opponent arrives, so a waiting player must never hold a frame up.
**
**   game_loop [POLICY.lua]     prints the frames, the matches and the
**                              longest time a frame spent in tand
** Exits 1 if a player is left unmatched, a match is not mutual, or a
** frame spent far longer than its budget in tand.
*/
#include "tand.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    FRAMES = 120,
    JOINS_PER_FRAME = 2,
    JOIN_FRAMES = 100,     /* players join during the first 100 frames */
    PLAYERS = JOINS_PER_FRAME * JOIN_FRAMES,
    FRAME_US = 4000,       /* a 250 Hz frame, to keep the run short */
    BUDGET_US = 1000,      /* what a frame lends tand */
    SLACK_US = 250000      /* beyond this, the budget was not honoured
                           ** (a loaded machine may take the thread off
                           ** its core for tens of ms; a frame held up by
                           ** a waiting player would be held for good) */
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_us(int64_t us)
{
    struct timespec ts;
    if (us <= 0)
        return;
    ts.tv_sec = (time_t)(us / 1000000);
    ts.tv_nsec = (long)(us % 1000000) * 1000;
    nanosleep(&ts, NULL);
}

/* ["join", "pN", rating] */
static int join_request(int player, tand_msg *req)
{
    char name[16];
    tand_buf b;
    int n = snprintf(name, sizeof name, "p%d", player);
    memset(req, 0, sizeof *req);
    req->op = TAND_OP_ENCODED;
    tand_buf_init(&b);
    tand_pack_array(&b, 3);
    tand_pack_str(&b, "join", 4);
    tand_pack_str(&b, name, (size_t)n);
    tand_pack_int(&b, 1500 + player % 50);
    return tand_buf_to_msg(&b, req);
}

/* The opponent's number from a join reply ["pN", rating], or -1. */
static int opponent_of(const tand_msg *reply)
{
    tand_reader r;
    tand_item it;
    char name[16];
    tand_reader_init(&r, reply->data, reply->size);
    if (tand_unpack(&r, &it) != 0 || it.type != TAND_T_ARRAY ||
        it.v.n != 2 || tand_unpack(&r, &it) != 0 || it.type != TAND_T_STR ||
        it.v.s.len < 2 || it.v.s.len >= sizeof name || it.v.s.p[0] != 'p')
        return -1;
    memcpy(name, it.v.s.p + 1, it.v.s.len - 1);
    name[it.v.s.len - 1] = '\0';
    return atoi(name);
}

int main(int argc, char **argv)
{
    const char *policy =
        argc > 1 ? argv[1] : "examples/policies/matchmaking.lua";
    tand_runtime_options ro = {TAND_PUMPED}; /* no worker threads: we pump */
    tand_policy_options po;
    tand_runtime *rt;
    tand_server *lobby;
    tand_replies *box;
    tand_msg req, reply;
    uint64_t tag;
    char err[512];
    int match[PLAYERS];
    int frame, i, joined = 0, answered = 0, bad = 0, late_frames = 0;
    int64_t longest = 0, deadline;

    if (tand_runtime_new(&ro, &rt) != 0 || tand_replies_new(&box) != 0) {
        fprintf(stderr, "game_loop: cannot set up tand\n");
        return 1;
    }
    tand_policy_options_init(&po);
    po.policy = policy;
    po.callback_timeout_ms = 1000;
    po.error = err;
    po.error_size = sizeof err;
    if (tand_policy_start(rt, &po, &lobby) != 0) {
        fprintf(stderr, "game_loop: %s\n", err);
        return 1;
    }
    for (i = 0; i < PLAYERS; i++)
        match[i] = -1;

    for (frame = 0; frame < FRAMES || (answered < PLAYERS && frame < 2000);
         frame++) {
        int64_t start = now_us(), spent;
        for (i = 0; i < JOINS_PER_FRAME && joined < PLAYERS &&
                    frame < JOIN_FRAMES;
             i++, joined++) {
            if (join_request(joined, &req) != 0 ||
                tand_call_async(lobby, &req, 10000, TAND_NOWAIT, box,
                                (uint64_t)joined) != 0) {
                fprintf(stderr, "game_loop: cannot send a join\n");
                return 1;
            }
        }
        /* tand's share of the frame: pump, then read what is ready */
        tand_runtime_pump(rt, BUDGET_US);
        while (tand_replies_take(box, &tag, &reply) == 1) {
            if (reply.status != 0 || tag >= PLAYERS) {
                fprintf(stderr, "game_loop: join %d: %s\n", (int)tag,
                        tand_errname(reply.status));
                bad++;
            } else {
                match[tag] = opponent_of(&reply);
            }
            answered++;
            tand_msg_clear(&reply);
        }
        spent = now_us() - start;
        if (spent > longest)
            longest = spent;
        if (spent > BUDGET_US + SLACK_US)
            late_frames++;
        sleep_us(FRAME_US - spent); /* the rest of the frame: the game */
    }

    for (i = 0; i < PLAYERS; i++) {
        int o = match[i];
        if (o < 0 || o >= PLAYERS || o == i || match[o] != i)
            bad++;
    }
    printf("frames: %d, players: %d, matches: %d\n", frame, PLAYERS,
           (PLAYERS - bad) / 2);
    printf("time in tand per frame: at most %lld us (budget %d us); "
           "frames far over budget: %d\n",
           (long long)longest, BUDGET_US, late_frames);

    deadline = now_us() + 5000000;
    tand_server_stop(lobby, 0, NULL, 0);
    while (tand_server_alive(lobby) && now_us() < deadline)
        tand_runtime_pump(rt, BUDGET_US);
    tand_server_release(lobby);
    tand_replies_free(box);
    tand_runtime_free(rt);
    return bad == 0 && late_frames == 0 ? 0 : 1;
}
