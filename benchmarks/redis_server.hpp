#pragma once

// Where a benchmark finds its redis-server: the one its script started
// (SENDGRID_BACKEND_REDIS_URL), or the tests' fixture (for the ctest smoke runs).

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <fstream>
#include <string>

/// SENDGRID_BACKEND_REDIS_URL, or the url file in SENDGRID_BACKEND_REDIS_DIR (the tests' fixture).
inline std::string redis_url() {
    if (const char* url = std::getenv("SENDGRID_BACKEND_REDIS_URL")) return url;
    if (const char* dir = std::getenv("SENDGRID_BACKEND_REDIS_DIR")) {
        std::ifstream file(std::string(dir) + "/url");
        std::string url;
        if (std::getline(file, url)) return url;
    }
    return "";
}

/// Whether there is no redis-server to run against; then `state` is skipped, naming `script`,
/// which starts one.
inline bool redis_missing(benchmark::State& state, const char* script) {
    if (!redis_url().empty()) return false;
    const std::string why =
        std::string("SENDGRID_BACKEND_REDIS_URL is not set (run ") + script + ")";
    state.SkipWithError(why.c_str());
    return true;
}
