#!/usr/bin/env bash
# What including the library costs a header-only user: CPU time and peak memory of g++ -O0
# compiling a one-function program that sends one message through sendgrid_backend.hpp and
# transport/curl.hpp, against the same program written with nlohmann/json, Boost.Signals2 and
# libcurl directly. Each is compiled `runs` times (default 3), alternately; the medians and
# their ratio are printed (goal: at most 1.35x), then the library's program again with the README's
# precompiled header (built once, as CMake's target_precompile_headers does), and with
# SENDGRID_BACKEND_SEPARATE_COMPILATION (per sending unit, and the one unit that compiles the path),
# and last where the library's header-only time goes: files that stop at each step of the program.
#   benchmarks/compile_cost.sh [runs] [compiler]
#   benchmarks/compile_cost.sh --instructions [compiler]
# --instructions counts the instructions the compiler executes for each of the two programs
# under valgrind's callgrind instead (minutes per program, but within a tenth of a per cent from
# run to run: on a machine whose speed drifts, CPU seconds cannot tell a few per cent apart). Its
# ratio runs higher than the CPU time's, so compare versions by it, and the goal by the seconds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
instructions=false
if [ "${1:-}" = --instructions ]; then
    instructions=true
    shift
    set -- 1 "$@"
fi
runs=${1:-3}
compiler=${2:-g++}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

cat >"$dir/library.cpp" <<'EOF'
#include <sendgrid_backend/sendgrid_backend.hpp>
#include <sendgrid_backend/transport/curl.hpp>

int send_one() {
    namespace sg = sendgrid_backend;
    sg::sendgrid_email_sent.connect([](const sg::SendgridBackend&, const sg::EmailMessage&, bool) {});
    sg::SendgridBackend backend(sg::Settings::from_env());
    sg::EmailMessage message("Welcome", "Hello!", "shop@example.com", {"jane@example.com"});
    return backend.send_message(message) ? 0 : 1;
}
EOF
cat >"$dir/direct.cpp" <<'EOF'
#include <boost/signals2/signal.hpp>
#include <curl/curl.h>
#include <nlohmann/json.hpp>
#include <string>

int send_one() {
    boost::signals2::signal<void(const std::string&, bool)> sent;
    sent.connect([](const std::string&, bool) {});
    nlohmann::json payload = {{"from", {{"email", "shop@example.com"}}}, {"subject", "Welcome"},
                              {"personalizations", {{{"to", {{{"email", "jane@example.com"}}}}}}},
                              {"content", {{{"type", "text/plain"}, {"value", "Hello!"}}}}};
    const std::string body = payload.dump();
    CURL* curl = curl_easy_init();
    curl_easy_setopt(curl, CURLOPT_URL, "https://api.sendgrid.com/v3/mail/send");
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
    const CURLcode result = curl_easy_perform(curl);
    curl_easy_cleanup(curl);
    sent(body, result != CURLE_OK);
    return result == CURLE_OK ? 0 : 1;
}
EOF

measure() {  # FILE [FLAGS...] -> "seconds kilobytes" per run, one line each
    local file=$1
    shift
    for _ in $(seq 1 "$runs"); do
        /usr/bin/time -f "%U %S %M" "$compiler" -std=c++17 -O0 -I"$here/../include" "$@" \
            -c "$dir/$file.cpp" -o /dev/null 2>&1 | tail -n 1 |
            awk '{printf "%.2f %d\n", $1 + $2, $3}'
    done
}
count() {  # FILE -> instructions executed by the compiler and its children (cc1plus, as)
    valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$dir/cg.%p" \
        "$compiler" -std=c++17 -O0 -I"$here/../include" -c "$dir/$1.cpp" -o /dev/null \
        2>"$dir/valgrind.log"
    cat "$dir"/cg.* | awk '/^summary:/ {total += $2} END {printf "%.0f\n", total}'
    rm -f "$dir"/cg.*
}
if $instructions; then
    library=$(count library)
    direct=$(count direct)
    echo "$compiler -O0, instructions: the library $library, the dependencies used directly" \
        "$direct, ratio $(awk -v a="$library" -v b="$direct" 'BEGIN { printf "%.3f", a / b }')"
    exit 0
fi
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
seconds() { cut -d' ' -f1 "$dir/$1.txt" | median; }               # NAME -> median CPU seconds
mib() { echo $(($(cut -d' ' -f2 "$dir/$1.txt" | median) / 1024)); }  # NAME -> median peak MiB
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# Alternating, so that a machine that speeds up or slows down over the run moves both alike.
for _ in $(seq 1 "$runs"); do
    runs=1 measure library >>"$dir/library.txt"
    runs=1 measure direct >>"$dir/direct.txt"
done
direct_s=$(seconds direct)
echo "$compiler -O0, median of $runs: the library $(seconds library) s CPU ($(mib library) MiB)," \
    "the dependencies used directly $direct_s s ($(mib direct) MiB)"
echo "ratio: $(ratio "$(seconds library)" "$direct_s") (goal: at most 1.35)"

printf '#include <sendgrid_backend/sendgrid_backend.hpp>\n#include <sendgrid_backend/transport/curl.hpp>\n' \
    >"$dir/pch.hpp"
"$compiler" -std=c++17 -O0 -I"$here/../include" -x c++-header "$dir/pch.hpp" -o "$dir/pch.hpp.gch"
measure library -include "$dir/pch.hpp" -Winvalid-pch >"$dir/pch.txt"
echo "with a precompiled header of the two includes: $(seconds pch) s per file"
echo "ratio to the direct program: $(ratio "$(seconds pch)" "$direct_s")"

# SENDGRID_BACKEND_SEPARATE_COMPILATION: each unit that sends only declares the send path; one
# unit of the program (compiled.hpp) compiles it, once.
measure library -DSENDGRID_BACKEND_SEPARATE_COMPILATION >"$dir/separate.txt"
printf '#include <sendgrid_backend/compiled.hpp>\n#include <sendgrid_backend/transport/curl.hpp>\n' \
    >"$dir/compiled.cpp"
measure compiled -DSENDGRID_BACKEND_SEPARATE_COMPILATION >"$dir/compiled.txt"
echo "with SENDGRID_BACKEND_SEPARATE_COMPILATION: $(seconds separate) s ($(mib separate) MiB) per" \
    "unit that sends, and $(seconds compiled) s once for the unit of compiled.hpp"
echo "ratio per unit to the direct program: $(ratio "$(seconds separate)" "$direct_s")"

# Where the header-only time goes: files that stop at each step of the library's program.
umbrella='#include <sendgrid_backend/sendgrid_backend.hpp>'
curl='#include <sendgrid_backend/transport/curl.hpp>'
steps=(
    "the headers the library needs only (Boost.Signals2, nlohmann/json_fwd.hpp)|#include <boost/signals2/signal.hpp>
#include <nlohmann/json_fwd.hpp>"
    "sendgrid_backend.hpp only, nothing used|$umbrella"
    "plus transport/curl.hpp (registers, so compiles, the libcurl transport)|$umbrella
$curl"
    "plus a function that builds a payload|$umbrella
$curl
std::string build(const sendgrid_backend::EmailMessage& m) { return sendgrid_backend::serialize_payload(m); }"
)
echo "where the library's $(seconds library) s go (cumulative):"
step=0
for entry in "${steps[@]}"; do
    step=$((step + 1))
    printf '%s\n' "${entry#*|}" >"$dir/step$step.cpp"
    measure "step$step" >"$dir/step$step.txt"
    echo "  $(seconds "step$step") s: ${entry%%|*}"
done
echo "  $(seconds library) s: plus connecting a handler and sending (delivery, SendgridBackend)"
