#!/usr/bin/env bash
# Exact instruction counts (valgrind --tool=callgrind) of build_payload, of build_payload plus
# freeing its result, and of dump() of the same finished JSON, per message, with both ratios to
# dump. Usage: callgrind_payloads.sh path/to/payload_bench
set -euo pipefail
bench=${1:?usage: $0 path/to/payload_bench}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

count() {  # count build|build_and_free|dump|free_copy NAME ITERATIONS -> instructions per run
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/cg.out" \
        "$bench" --count "$1" "$2" "$3" >/dev/null 2>&1
    local total
    total=$(awk '/^totals:/ {print $2; exit}' "$out/cg.out")
    echo $((total / $3))
}

printf '%-14s %12s %12s %12s %8s %8s\n' message "build (Ir)" "+free (Ir)" "dump (Ir)" \
    build/dump +free/dump
for name in simple typical kitchen_sink private_1000; do
    iterations=200
    [ "$name" = private_1000 ] && iterations=20
    build=$(count build "$name" "$iterations")
    build_and_free=$(count build_and_free "$name" "$iterations")
    dump=$(count dump "$name" "$iterations")
    awk -v n="$name" -v b="$build" -v f="$build_and_free" -v d="$dump" \
        'BEGIN { printf "%-14s %12d %12d %12d %8.3f %8.3f\n", n, b, f, d, b / d, f / d }'
done
# Freeing is nlohmann::json's cost whoever built the JSON: free a copy of the same one.
printf '\nfreeing private_1000: %d Ir for the built payload, %d Ir for a copy of it\n' \
    $(($(count build_and_free private_1000 20) - $(count build private_1000 20))) \
    "$(count free_copy private_1000 20)"
