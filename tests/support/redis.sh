#!/usr/bin/env bash
# A throwaway redis-server on 127.0.0.1 with its data in DIR, for tests and benchmarks. Append-only
# file on with fsync on every write, so a restart loses nothing that was acknowledged
# (REDIS_APPENDFSYNC=everysec, Redis's default, for benchmarks).
#
#   redis.sh start DIR     free port in DIR/port, URL in DIR/url
#   redis.sh restart DIR   stop and start again on the same port with the same data
#   redis.sh wipe DIR      stop and start again on the same port with no data (as a Redis
#                          without persistence would restart)
#   redis.sh stop DIR
set -euo pipefail

command=${1:?usage: redis.sh start|restart|wipe|stop DIR}
dir=${2:?usage: redis.sh start|restart|wipe|stop DIR}
redis_bin=$(command -v redis-server || echo /usr/bin/redis-server)
cli=$(command -v redis-cli || echo /usr/bin/redis-cli)

launch() {
    local port=$1
    "$redis_bin" --bind 127.0.0.1 --port "$port" --dir "$dir" --daemonize yes \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --appendonly yes \
        --appendfsync "${REDIS_APPENDFSYNC:-always}" --save "" --protected-mode yes >/dev/null
    for _ in $(seq 1 100); do
        if "$cli" -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then
            echo "$port" >"$dir/port"
            echo "redis://127.0.0.1:$port" >"$dir/url"
            return 0
        fi
        sleep 0.05
    done
    echo "redis.sh: redis-server did not start; see $dir/redis.log" >&2
    exit 1
}

halt() {
    if [ -f "$dir/port" ]; then
        "$cli" -h 127.0.0.1 -p "$(cat "$dir/port")" shutdown nosave >/dev/null 2>&1 || true
    fi
    for _ in $(seq 1 100); do
        [ -f "$dir/redis.pid" ] && kill -0 "$(cat "$dir/redis.pid")" 2>/dev/null || return 0
        sleep 0.05
    done
}

case "$command" in
start)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    halt
    rm -rf "$dir"/appendonly* "$dir"/*.aof "$dir"/dump.rdb
    launch "$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    ;;
restart)
    dir=$(cd "$dir" && pwd)
    port=$(cat "$dir/port")
    halt
    launch "$port"
    ;;
wipe)
    dir=$(cd "$dir" && pwd)
    port=$(cat "$dir/port")
    halt
    rm -rf "$dir"/appendonly* "$dir"/*.aof "$dir"/dump.rdb
    launch "$port"
    ;;
stop)
    halt
    ;;
*)
    echo "usage: redis.sh start|restart|wipe|stop DIR" >&2
    exit 2
    ;;
esac
