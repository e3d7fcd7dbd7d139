#!/usr/bin/env bash
# The two README commands on a fresh Debian 12 machine (as root, or with sudo available):
#   ./setup.sh demo   install what is missing, build, run the demo
#   ./setup.sh test   install what is missing, build with clang's ASan + UBSan, run every test through ctest
# (.ci/run also calls `./setup.sh ci-packages` for what its later steps need.)
# Both are idempotent: a re-run installs nothing and rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")"

# What the demo and the test command need; .ci/run adds valgrind (the callgrind scripts of
# benchmarks/).
packages=(build-essential cmake ninja-build pkg-config g++
    libboost-dev nlohmann-json3-dev catch2 libcurl4-openssl-dev libssl-dev
    libcpp-httplib-dev libbenchmark-dev libsqlite3-dev zlib1g-dev python3-jsonschema
    nginx-light openssl libspdlog-dev libhiredis-dev redis-server prometheus-cpp-dev prometheus)
ci_packages=(valgrind)
# The test command's compiler (clang: its sanitizers in one build, and it compiles the tests
# faster than g++) and its browser test of the fake server's mail viewer page (headless Chromium).
test_packages=(clang libclang-rt-14-dev chromium chromium-driver python3-selenium)

install_missing() {  # PACKAGE...
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "setup.sh: installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

jobs=$(nproc 2>/dev/null || echo 2)
case "${1:-}" in
demo)
    install_missing "${packages[@]}"
    cmake --preset dev >/dev/null
    cmake --build --preset dev --target 03_sendgrid_demo -- -j"$jobs"
    exec ./build/dev/examples/03_sendgrid_demo
    ;;
test)
    install_missing "${packages[@]}" "${test_packages[@]}"
    cmake --preset asan >/dev/null
    cmake --build --preset asan -- -j"$jobs"
    ctest --preset asan -j"$jobs"
    ;;
ci-packages)  # for .ci/run: what its steps after the test command need
    install_missing "${packages[@]}" "${ci_packages[@]}"
    ;;
*)
    echo "usage: $0 demo|test" >&2
    exit 2
    ;;
esac
