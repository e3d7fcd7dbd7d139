#!/usr/bin/env bash
# The Redis queue's benchmark against a redis-server of its own (127.0.0.1, a temporary
# directory, appendonly on; fsync every second, Redis's default, or REDIS_APPENDFSYNC=always):
#   benchmarks/queue_bench.sh [path/to/queue_bench]   (build with: cmake --preset bench &&
#                                                     cmake --build --preset bench)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=${1:-$here/../build/bench/benchmarks/queue_bench}
dir=$(mktemp -d)
trap '"$here/../tests/support/redis.sh" stop "$dir"; rm -rf "$dir"' EXIT
REDIS_APPENDFSYNC=${REDIS_APPENDFSYNC:-everysec} "$here/../tests/support/redis.sh" start "$dir"
export SENDGRID_BACKEND_REDIS_URL
SENDGRID_BACKEND_REDIS_URL=$(cat "$dir/url")
echo "redis-server at $SENDGRID_BACKEND_REDIS_URL ($(redis-server --version | cut -d' ' -f3)," \
    "appendfsync ${REDIS_APPENDFSYNC:-everysec})"
echo "== Google Benchmark (medians of 3; ratios = cost per message / the baseline's)"
"$bench" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
    --benchmark_min_time=2 --benchmark_color=false
