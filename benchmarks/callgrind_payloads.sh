#!/usr/bin/env bash
# Exact instruction counts (valgrind --tool=callgrind) of build_payload and of dump() of the same
# finished JSON, per message, and their ratio. Usage: callgrind_payloads.sh path/to/payload_bench
set -euo pipefail
bench=${1:?usage: $0 path/to/payload_bench}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

count() {  # count build|dump NAME ITERATIONS -> instructions per run
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/cg.out" \
        "$bench" --count "$1" "$2" "$3" >/dev/null 2>&1
    local total
    total=$(awk '/^totals:/ {print $2; exit}' "$out/cg.out")
    echo $((total / $3))
}

printf '%-14s %14s %14s %8s\n' message "build (Ir)" "dump (Ir)" ratio
for name in simple typical kitchen_sink private_1000; do
    iterations=200
    [ "$name" = private_1000 ] && iterations=20
    build=$(count build "$name" "$iterations")
    dump=$(count dump "$name" "$iterations")
    awk -v n="$name" -v b="$build" -v d="$dump" 'BEGIN { printf "%-14s %14d %14d %8.3f\n", n, b, d, b / d }'
done
