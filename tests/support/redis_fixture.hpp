#pragma once

// The tests' redis-servers: the one ctest starts for them all (cmake/test_services.cmake writes
// its files into SENDGRID_BACKEND_REDIS_DIR), and one a test starts for itself to stop or restart.

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <sendgrid_backend/redis/queue.hpp>

#include "catch.hpp"

namespace test_support {

/// The first line of a file the shared redis-server's fixture wrote ("url", ...).
inline std::string redis_fixture_file(const char* name) {
    const char* dir = std::getenv("SENDGRID_BACKEND_REDIS_DIR");
    REQUIRE(dir != nullptr);
    std::ifstream file(std::string(dir) + "/" + name);
    std::string text;
    REQUIRE(std::getline(file, text));
    return text;
}

/// The shared redis-server's URL.
inline std::string redis_fixture_url() { return redis_fixture_file("url"); }

/// Every key matching `pattern`, read with SCAN (the shared server is never blocked by KEYS).
inline std::vector<std::string> redis_keys(sendgrid_backend::RedisClient& redis,
                                           const std::string& pattern) {
    std::vector<std::string> keys;
    std::string cursor = "0";
    do {
        const auto page = redis.command({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
        REQUIRE(page.elements.size() == 2);
        cursor = page.elements[0].text;
        for (const auto& key : page.elements[1].elements) keys.push_back(key.text);
    } while (cursor != "0");
    return keys;
}

/// Names of its own for each queue a test makes, so tests share the one redis-server safely.
inline sendgrid_backend::RedisQueueOptions fresh_queue(const std::string& name) {
    static std::atomic<int> counter{0};
    const std::string prefix =
        "test:" + name + ":" + std::to_string(::getpid()) + ":" + std::to_string(++counter);
    sendgrid_backend::RedisQueueOptions options;
    options.stream = prefix + ":stream";
    options.group = prefix + ":group";
    options.status_prefix = prefix + ":status:";
    return options;
}

#ifdef SENDGRID_BACKEND_REDIS_SCRIPT
/// A redis-server of the test's own (tests/support/redis.sh), so stopping or restarting it
/// disturbs no other test.
struct OwnRedis {
    std::string dir;
    OwnRedis() {
        char name[] = "/tmp/sendgrid_backend_redis_XXXXXX";
        REQUIRE(::mkdtemp(name) != nullptr);
        dir = name;
        REQUIRE(run("start") == 0);
    }
    OwnRedis(const OwnRedis&) = delete;
    OwnRedis& operator=(const OwnRedis&) = delete;
    int run(const std::string& command) const {
        return std::system(
            (std::string(SENDGRID_BACKEND_REDIS_SCRIPT) + " " + command + " " + dir).c_str());
    }
    std::string url() const {
        std::ifstream file(dir + "/url");
        std::string text;
        std::getline(file, text);
        return text;
    }
    ~OwnRedis() {
        run("stop");
        std::system(("rm -rf " + dir).c_str());
    }
};
#endif

}  // namespace test_support
