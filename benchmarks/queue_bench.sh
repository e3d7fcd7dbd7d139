#!/usr/bin/env bash
# The Redis queue's benchmark against a redis-server of its own (see with_redis.sh):
#   benchmarks/queue_bench.sh [path/to/queue_bench]   (build with: cmake --preset bench &&
#                                                     cmake --build --preset bench)
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/with_redis.sh" "${1:-$here/../build/bench/benchmarks/queue_bench}" "${@:2}"
