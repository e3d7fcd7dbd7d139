#!/usr/bin/env bash
# Event Webhook statuses in Redis against a redis-server of its own (see with_redis.sh):
#   benchmarks/status_bench.sh [path/to/status_bench]   (build with: cmake --preset bench &&
#                                                       cmake --build --preset bench)
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/with_redis.sh" "${1:-$here/../build/bench/benchmarks/status_bench}" "${@:2}"
