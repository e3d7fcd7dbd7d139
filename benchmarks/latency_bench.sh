#!/usr/bin/env bash
# Sending at SendGrid's latency: slow_sendgrid answers each request 100 ms after it arrived, so
# throughput is requests in flight / 100 ms. Every rate is counted at that server.
#  1. one process, 256 in flight (goal: >= 0.9 x 2,560 msg/s, memory flat): the library in
#     batches of 2,560 and in one call, beside a raw libcurl multi loop, in the same run;
#  2. two sendgrid-worker processes sharing --rate-limit 1000 through their own redis-server,
#     on a queue of 20,000 messages (goal: 1,000 msg/s held, never above by more than the burst).
#   benchmarks/latency_bench.sh [build dir]   (build with: cmake --preset bench &&
#       cmake --build build/bench --target latency_bench slow_sendgrid sendgrid-worker -- -j1)
# Environment: MESSAGES (30720), IN_FLIGHT (256), QUEUED (20000), RATE (1000), WORKER_BATCH
# (1000), WORKER_IN_FLIGHT (256: SENDGRID_MAX_IN_FLIGHT of each worker), DELAY_MS (100); the
# programs' paths: LATENCY_BENCH, SLOW_SENDGRID, SENDGRID_WORKER (ctest's smoke run sets them).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build/bench}
bench=${LATENCY_BENCH:-$build/benchmarks/latency_bench}
server=${SLOW_SENDGRID:-$build/benchmarks/slow_sendgrid}
worker=${SENDGRID_WORKER:-$build/sendgrid-worker}
messages=${MESSAGES:-30720}
in_flight=${IN_FLIGHT:-256}
queued=${QUEUED:-20000}
rate=${RATE:-1000}
burst=$(( rate / 10 > 0 ? rate / 10 : 1 ))  # sendgrid-worker's default burst
worker_batch=${WORKER_BATCH:-1000}
worker_in_flight=${WORKER_IN_FLIGHT:-256}
delay_ms=${DELAY_MS:-100}

dir=$(mktemp -d)
server_pid=
worker_pids=()
cleanup() {
    for pid in "${worker_pids[@]}" $server_pid; do kill "$pid" 2>/dev/null || true; done
    for pid in "${worker_pids[@]}" $server_pid; do wait "$pid" 2>/dev/null || true; done
    "$here/../tests/support/redis.sh" stop "$dir/redis" || true
    rm -rf "$dir"
}
trap cleanup EXIT

"$server" --port-file "$dir/port" --delay-ms "$delay_ms" \
    >"$dir/server.out" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do [ -f "$dir/port" ] && break; sleep 0.05; done
url="http://127.0.0.1:$(cat "$dir/port")"
echo "slow_sendgrid at $url, answering ${delay_ms} ms after each request; $(nproc) cores," \
    "load average$(uptime | sed 's/.*load average//')"

status=0
step() { "$@" || status=1; }  # every step runs; any failed check fails the script

echo "== 1. one process, $in_flight in flight, $messages messages each (in-flight / latency:" \
    "$(( in_flight * 1000 / delay_ms )) msg/s)"
step "$bench" send --url "$url" --impl raw --messages "$messages" --in-flight "$in_flight"
step "$bench" send --url "$url" --impl library --messages "$messages" --in-flight "$in_flight" \
    --batch $(( 10 * in_flight ))
step "$bench" send --url "$url" --impl library --messages "$messages" --in-flight "$in_flight" \
    --batch 0
step "$bench" send --url "$url" --impl raw --messages "$messages" --in-flight "$in_flight"

echo "== 2. two sendgrid-worker processes, --rate-limit $rate (burst $burst), --batch" \
    "$worker_batch, SENDGRID_MAX_IN_FLIGHT=$worker_in_flight, $queued queued messages"
REDIS_APPENDFSYNC=everysec "$here/../tests/support/redis.sh" start "$dir/redis"
redis_url=$(cat "$dir/redis/url")
"$bench" enqueue --redis "$redis_url" --messages "$queued"
baseline=$("$bench" count --url "$url")
for w in 1 2; do
    SENDGRID_API_KEY=SG.benchmark-key SENDGRID_HOST_URL=$url \
        SENDGRID_MAX_IN_FLIGHT=$worker_in_flight \
        "$worker" --redis "$redis_url" --consumer "worker-$w" --batch "$worker_batch" \
        --rate-limit "$rate" --rate-limit-key latency_bench:rate >"$dir/worker-$w.log" 2>&1 &
    worker_pids+=($!)
done
step "$bench" watch --url "$url" --baseline "$baseline" --messages "$queued" --rate "$rate" --burst "$burst" \
    --redis "$redis_url" --timeout $(( queued / rate * 3 + 30 ))
for w in 1 2; do
    echo "  worker-$w: $(grep -c finished "$dir/worker-$w.log") rounds," \
        "$(awk '/finished/ {n += $2} END {print n + 0}' "$dir/worker-$w.log") messages"
done
exit $status
