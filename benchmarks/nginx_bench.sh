#!/usr/bin/env bash
# Sending against nginx on loopback (Debian nginx-light, its own config on 127.0.0.1): the
# library beside raw libcurl loops and wrk, in one run, and instructions per message.
#   benchmarks/nginx_bench.sh [path/to/nginx_bench]   (build with: cmake --preset bench &&
#                                                     cmake --build --preset bench)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=${1:-$here/../build/bench/benchmarks/nginx_bench}
dir=$(mktemp -d)
trap '"$here/../tests/support/nginx.sh" stop "$dir"; rm -rf "$dir"' EXIT
"$here/../tests/support/nginx.sh" start "$dir"
url="http://127.0.0.1:$(cat "$dir/port")"
export SENDGRID_BACKEND_NGINX_URL=$url
echo "nginx at $url"

echo "== Google Benchmark (medians of 9, the runs of all six interleaved at random so that the"
echo "   machine's drift falls on each alike; ratios = cost per message / the raw loop's)"
"$bench" --benchmark_repetitions=9 --benchmark_enable_random_interleaving=true \
    --benchmark_report_aggregates_only=true --benchmark_min_time=1 --benchmark_color=false |
    tee "$dir/benchmark.txt"

echo "== wrk: 16 connections POSTing the same body for 10 s (2 threads)"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
body=$(mktemp)
cat >"$body.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer SG.benchmark-key"
wrk.body = '{"content":[{"type":"text/plain","value":"Your order is on its way."}],"from":{"email":"shop@example.com"},"personalizations":[{"to":[{"email":"jane@example.com"}]}],"subject":"Order shipped"}'
LUA
wrk -t2 -c16 -d10s -s "$body.lua" "$url/v3/mail/send" | grep -E 'Requests/sec|Latency'
rm -f "$body" "$body.lua"

echo "== instructions per message in this process (callgrind; the difference of 4000 and 2000 sends)"
count() {  # IMPL N -> instructions
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/cg.out" \
        "$bench" --count "$1" "$2" >/dev/null 2>&1
    awk '/^totals:/ {print $2; exit}' "$dir/cg.out"
}
per_message() { echo $(( ($(count "$1" 4000) - $(count "$1" 2000)) / 2000 )); }
raw=$(per_message raw)
raw_curlu=$(per_message raw_curlu)
ours=$(per_message send_message)
echo "one at a time: raw libcurl loop $raw; the same loop with its URL parsed once" \
    "(CURLOPT_CURLU, as the library does) $raw_curlu; send_message $ours"
echo "  the library's own: $((ours - raw_curlu)) (over the CURLU loop), $((ours - raw)) (over the plain one)"
raw_multi=$(per_message raw_multi)
raw_multi_curlu=$(per_message raw_multi_curlu)
ours_multi=$(per_message send_messages)
echo "16 in flight: raw multi loop $raw_multi; with CURLOPT_CURLU $raw_multi_curlu;" \
    "send_messages $ours_multi"
echo "  the library's own: $((ours_multi - raw_multi_curlu)) (over the CURLU loop)," \
    "$((ours_multi - raw_multi)) (over the plain one)"
no_network=$(per_message no_network)
# The console reporter colours its lines even into a pipe: strip the escapes first.
no_network_ns=$(sed 's/\x1b\[[0-9;]*m//g' "$dir/benchmark.txt" |
    awk '$1 ~ /^no_network\/send_message.*_median$/ {print $2; exit}')
[ -n "$no_network_ns" ] || { echo "no no_network/send_message median in the output" >&2; exit 1; }
echo "no network (a transport answering at once in this process): send_message $no_network," \
    "in ${no_network_ns} ns per message above: the library's code runs" \
    "$(awk -v i="$no_network" -v t="$no_network_ns" 'BEGIN { printf "%.2f", i / t }') instructions/ns"
awk -v a="$((ours - raw))" -v b="$((ours - raw_curlu))" -v i="$no_network" -v t="$no_network_ns" \
    'BEGIN { printf "  the library'"'"'s own at that rate: %.2f us per message over the raw loop, %.2f us over the CURLU loop (goal: under 5)\n", a * t / i / 1000, b * t / i / 1000 }'
