#!/usr/bin/env bash
# examples/cluster/run.sh - two hosts share one deli through NATS JetStream.
# It starts three nats-servers on loopback and two deli counters
# (host.lua, hosts "a" and "b"), shows that the numbers they take are one
# sequence with no repeats, kills the deli's owner with kill -9 and shows
# that the other host takes the deli over and goes on from where it was.
# Run after a build, with nats-server installed (the spec
# spec/examples_cluster_spec.lua runs it so):
#   examples/cluster/run.sh
# TAND names the Lua interpreter for the hosts (build/tand by default).
set -euo pipefail
cd "$(dirname "$0")/../.."
tand=${TAND:-build/tand}
work=$(mktemp -d)
nats=core/tests/nats_cluster.sh
declare -A pid

cleanup() {
    for h in "${!pid[@]}"; do kill -9 "${pid[$h]}" 2>/dev/null || true; done
    $nats stop "$work/nats"
    rm -rf "$work"
}
trap cleanup EXIT

# wait_for SECONDS WHAT COMMAND...: polls COMMAND until it succeeds.
wait_for() {
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "gave up waiting for $what; the hosts said:" >&2
            tail -n 5 "$work"/[ab] >&2
            exit 1
        fi
        sleep 0.1
    done
}
# lines of host $1 that say "took" after line $2 and name owner $3
took() { tail -n "+$(($2 + 1))" "$work/$1" | grep -c "took.*(deli on $3)"; }
at_least() { [ "$("${@:2}")" -ge "$1" ]; }
gone() { ! kill -0 "$1" 2>/dev/null; }

urls=$($nats start "$work/nats" 3)
echo "== nats-servers up: $urls"
# Both take numbers from the one deli, whichever host owns it.
for h in a b; do
    $tand examples/cluster/host.lua "$urls" "$h" "$work/$h.stop" \
        >"$work/$h" 2>&1 &
    pid[$h]=$!
    disown # (no "Killed" notice from bash)
done
for h in a b; do
    wait_for 60 "numbers on host $h" at_least 5 took "$h" 0 "[ab]"
done
owner=$(sed -n 's/.*took.*(deli on \([ab]\))$/\1/p' "$work/a" | tail -n 1)
other=$([ "$owner" = a ] && echo b || echo a)
echo "== the deli is on $owner; killing host $owner (kill -9)"
kill -9 "${pid[$owner]}"
unset "pid[$owner]"

# The other host takes it over, and its numbers go on.
mark=$(wc -l <"$work/$other")
wait_for 60 "$other to take over" at_least 10 took "$other" "$mark" "$other"
touch "$work/$other.stop"
wait_for 30 "$other to stop" gone "${pid[$other]}"
unset "pid[$other]"

for h in a b; do
    echo "== host $h said:"
    cat "$work/$h"
done
taken=$(cat "$work/a" "$work/b" | grep -o "took [0-9]*" | cut -d' ' -f2)
twice=$(echo "$taken" | sort -n | uniq -d)
if [ -n "$twice" ]; then
    echo "== taken twice: $twice"
    exit 1
fi
echo "== $(echo "$taken" | wc -l) numbers taken, none twice; host $other" \
     "took the deli over from host $owner"
