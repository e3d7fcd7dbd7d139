#!/usr/bin/env bash
# Runs a Google Benchmark program against a redis-server of its own (127.0.0.1, a temporary
# directory, appendonly on; fsync every second, Redis's default, or REDIS_APPENDFSYNC=always),
# medians of 3. queue_bench.sh and status_bench.sh call it:
#   benchmarks/with_redis.sh path/to/bench [benchmark flags...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=$1
dir=$(mktemp -d)
trap '"$here/../tests/support/redis.sh" stop "$dir"; rm -rf "$dir"' EXIT
REDIS_APPENDFSYNC=${REDIS_APPENDFSYNC:-everysec} "$here/../tests/support/redis.sh" start "$dir"
export SENDGRID_BACKEND_REDIS_URL
SENDGRID_BACKEND_REDIS_URL=$(cat "$dir/url")
echo "redis-server at $SENDGRID_BACKEND_REDIS_URL ($(redis-server --version | cut -d' ' -f3)," \
    "appendfsync ${REDIS_APPENDFSYNC:-everysec})"
echo "== Google Benchmark (medians of 3; ratios = cost per item / the baseline's)"
"$bench" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
    --benchmark_min_time=2 --benchmark_color=false "${@:2}"
