#!/usr/bin/env bash
# Two sender processes count into one Redis at the same time; a third reads the day back and
# checks the sums (examples/08_guide_metrics.cpp). Usage: metrics_two_senders.sh PROGRAM REDIS_DIR
set -euo pipefail
program=$1
url=$(cat "$2/url")
prefix="metrics-test-$$:"
day=2026-01-01
"$program" --redis "$url" --day "$day" --prefix "$prefix" --send 100 >/dev/null &
first=$!
"$program" --redis "$url" --day "$day" --prefix "$prefix" --send 100 >/dev/null &
second=$!
wait "$first"
wait "$second"
# 2 x 100 messages, every fifth refused: 160 sent, 40 failed.
"$program" --redis "$url" --day "$day" --prefix "$prefix" --expect-sent 160 --expect-failed 40
