#!/usr/bin/env bash
# Exact instruction counts per emission (valgrind --tool=callgrind) for each signal variant,
# and the ratio of the wrapper to raw Boost.Signals2. Usage: callgrind_signals.sh path/to/signal_bench
set -euo pipefail
bench=${1:?usage: $0 path/to/signal_bench}
iterations=20000
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

count() {  # count IMPL HANDLERS -> instructions per emission
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/cg.out" \
        "$bench" --count "$1" "$2" "$iterations" >/dev/null 2>&1
    local total
    total=$(awk '/^totals:/ {print $2; exit}' "$out/cg.out")
    echo $((total / iterations))
}

printf '%-22s %8s %8s %8s\n' "instructions/emission" 0 1 10
declare -A ir
for impl in RawBoost Wrapper FunctionVector RawBoostDummyMutex WrapperSingleThreaded; do
    row=$(printf '%-22s' "$impl")
    for handlers in 0 1 10; do
        ir[$impl,$handlers]=$(count "$impl" "$handlers")
        row+=$(printf ' %8s' "${ir[$impl,$handlers]}")
    done
    echo "$row"
done
echo
for pair in "Wrapper RawBoost" "WrapperSingleThreaded RawBoostDummyMutex" "FunctionVector RawBoost"; do
    set -- $pair
    for handlers in 0 1 10; do
        awk -v a="${ir[$1,$handlers]}" -v b="${ir[$2,$handlers]}" -v n="$1/$2" -v h="$handlers" \
            'BEGIN { printf "%-42s %2s handlers: %.3f\n", n, h, a / b }'
    done
done
