#!/usr/bin/env bash
# nats_cluster.sh start DIR [N] | stop DIR - N nats-servers (3 by default)
# on loopback, clustered with JetStream, each storing under DIR/n<i>, for
# the cluster tests. start prints the client URLs, comma-separated, once
# every server is up and the JetStream cluster has a leader, and writes
# them to DIR/urls; the pids go to DIR/pids. stop kills each server by its
# pid (what start wrote) and removes DIR. Ports are free ones picked by
# the kernel at start.
# nats_cluster.sh pid DIR NAME prints the pid of server NAME (n0, n1...);
# nats_cluster.sh restart DIR NAME starts that server again (after it was
# killed) on its ports and store, and returns once it is ready.
set -euo pipefail
cmd=${1:?start or stop}
dir=${2:?a directory}

free_port() { # a port nobody listens on now
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Starts n servers on fresh ports; 0 once they are up (a minute at most).
launch() {
    local n=$1 i
    mkdir -p "$dir"
    : >"$dir/pids"
    clients=() routes=()
    for i in $(seq 1 "$n"); do
        clients+=("$(free_port)")
        routes+=("$(free_port)")
    done
    route_urls=""
    for i in $(seq 0 $((n - 1))); do
        route_urls+="nats-route://127.0.0.1:${routes[$i]},"
    done
    for i in $(seq 0 $((n - 1))); do
        rm -rf "$dir/n$i"
        mkdir -p "$dir/n$i"
        cat >"$dir/n$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:${clients[$i]}
jetstream { store_dir: "$dir/n$i" }
cluster {
  name: tand_test
  listen: 127.0.0.1:${routes[$i]}
  routes: [ ${route_urls%,} ]
}
CONF
        nats-server -c "$dir/n$i.conf" >"$dir/n$i.log" 2>&1 &
        echo $! >>"$dir/pids"
    done
    urls=""
    for i in $(seq 0 $((n - 1))); do urls+="nats://127.0.0.1:${clients[$i]},"; done
    echo "${urls%,}" >"$dir/urls"
    # up when every server is ready and the JetStream cluster has a meta
    # leader (some server says so: not each does)
    for _ in $(seq 1 600); do
        ready=0
        for i in $(seq 0 $((n - 1))); do
            if grep -q "Server is ready" "$dir/n$i.log" 2>/dev/null; then
                ready=$((ready + 1))
            fi
        done
        if [ "$ready" = "$n" ] &&
           { [ "$n" = 1 ] || cat "$dir"/n*.log | grep -q "metadata leader"; }; then
            return 0
        fi
        # a server that could not bind its port has ended
        while read -r pid; do kill -0 "$pid" 2>/dev/null || return 1; done <"$dir/pids"
        sleep 0.1
    done
    return 1
}

case $cmd in
start)
    n=${3:-3}
    command -v nats-server >/dev/null || {
        echo "nats_cluster: nats-server is not installed (scripts/setup installs it)" >&2
        exit 1
    }
    # a free port may be taken by another test before a server binds it:
    # then the servers are stopped and started again on other ports
    for attempt in 1 2 3; do
        if launch "$n"; then
            cat "$dir/urls"
            exit 0
        fi
        while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done <"$dir/pids"
    done
    echo "nats_cluster: the servers did not come up; logs in $dir" >&2
    exit 1
    ;;
stop)
    if [ -f "$dir/pids" ]; then
        while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$dir/pids"
        while read -r pid; do
            for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
            kill -9 "$pid" 2>/dev/null || true
        done <"$dir/pids"
    fi
    rm -rf "$dir"
    ;;
pid)
    name=${3:?a server name: n0, n1...}
    i=${name#n}
    sed -n "$((i + 1))p" "$dir/pids" | grep . || {
        echo "nats_cluster: no server $name in $dir" >&2
        exit 1
    }
    ;;
restart)
    name=${3:?a server name: n0, n1...}
    i=${name#n}
    old=$(sed -n "$((i + 1))p" "$dir/pids")
    [ -n "$old" ] && [ -f "$dir/$name.conf" ] || {
        echo "nats_cluster: no server $name in $dir" >&2
        exit 1
    }
    for _ in $(seq 1 100); do kill -0 "$old" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$old" 2>/dev/null; then
        echo "nats_cluster: $name still runs (pid $old)" >&2
        exit 1
    fi
    readies=$(grep -c "Server is ready" "$dir/$name.log" || true)
    nats-server -c "$dir/$name.conf" >>"$dir/$name.log" 2>&1 &
    pid=$!
    sed -i "$((i + 1))s/.*/$pid/" "$dir/pids"
    for _ in $(seq 1 600); do
        if [ "$(grep -c "Server is ready" "$dir/$name.log" || true)" -gt "$readies" ]; then
            exit 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "nats_cluster: $name did not come up again; its log is $dir/$name.log" >&2
    exit 1
    ;;
*)
    echo "usage: nats_cluster.sh start DIR [N] | stop DIR | pid DIR NAME | restart DIR NAME" >&2
    exit 2
    ;;
esac
