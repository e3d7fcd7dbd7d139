// RedisRateLimit: one token bucket in Redis shared by every holder of its key. The script on
// two connections; the pause; failing open when Redis is gone; and the proofs, counted at the
// fake SendGrid server: three sendgrid-worker processes held to 50 requests a second together,
// and a 429 asking for 2 s pausing all three.
#include <sendgrid_backend/redis/queue.hpp>
#include <sendgrid_backend/redis/rate_limit.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "support/child_process.hpp"
#include "support/redis_fixture.hpp"
#include "support/scripted_transport.hpp"

using namespace std::chrono_literals;
namespace sg = sendgrid_backend;

namespace rate_limit_test {

std::shared_ptr<sg::RedisClient> connect() {
    return std::make_shared<sg::RedisClient>(
        sg::RedisOptions::from_url(test_support::redis_fixture_url()));
}

/// A key no other test (or earlier run) uses.
std::string fresh_key(const std::string& name) {
    static std::atomic<int> counter{0};
    return "test:rate_limit:" + name + ":" + std::to_string(::getpid()) + ":" +
           std::to_string(++counter);
}

sg::RedisRateLimitOptions limit_options(const std::string& key, double rate, std::size_t burst) {
    sg::RedisRateLimitOptions options;
    options.key = key;
    options.rate.per_second = rate;
    options.rate.burst = burst;
    return options;
}

/// Three sendgrid-worker processes on one queue, sharing the limit under `limit_key`.
class Workers {
  public:
    Workers(const sg::RedisQueueOptions& queue, const std::string& limit_key,
            const sg::testing::FakeSendgridServer& server) {
        for (int i = 0; i < 3; ++i) {
            const std::string name = "limited-" + std::to_string(i);
            running_.push_back(std::make_unique<test_support::Running>(
                SENDGRID_BACKEND_WORKER_PROGRAM,
                std::vector<std::string>{"--redis", test_support::redis_fixture_url(), "--stream",
                                         queue.stream, "--group", queue.group, "--status-prefix",
                                         queue.status_prefix, "--consumer", name, "--batch", "8",
                                         "--rate-limit", "50", "--rate-limit-key", limit_key,
                                         "--max-wait", "3000"},
                std::vector<std::string>{"SENDGRID_API_KEY=" + server.api_key(),
                                         "SENDGRID_HOST_URL=" + server.url(),
                                         "SENDGRID_TIMEOUT=5"}));
        }
    }
    /// Stops each (SIGTERM) and checks it exited cleanly; returns their stderr.
    std::string stop() {
        std::string logs;
        for (auto& worker : running_) {
            logs += worker->err();
            CHECK(worker->stop() == 0);
        }
        return logs;
    }

  private:
    std::vector<std::unique_ptr<test_support::Running>> running_;
};

/// Queues `count` messages; returns their keys.
std::vector<std::string> enqueue(sg::RedisMailQueue& queue, int count) {
    std::vector<std::string> keys;
    for (int i = 0; i < count; ++i) {
        keys.push_back(queue.enqueue(sg::EmailMessage("limited " + std::to_string(i), "Body",
                                                      "shop@example.com", {"user@example.com"})));
    }
    return keys;
}

bool wait_for(const sg::testing::FakeSendgridServer& server, std::size_t count,
              std::chrono::seconds timeout) {
    return server.wait_for_requests(count,
                                    std::chrono::duration_cast<std::chrono::milliseconds>(timeout));
}

/// How many requests each queue key reached the server with.
std::map<std::string, int> reached(const sg::testing::FakeSendgridServer& server) {
    std::map<std::string, int> by_key;
    for (const auto& request : server.received()) {
        ++by_key[request.payload["personalizations"][0]["custom_args"]["sendgrid_backend_queue_key"]
                     .get<std::string>()];
    }
    return by_key;
}

std::vector<std::chrono::system_clock::time_point> arrivals(
    const sg::testing::FakeSendgridServer& server) {
    std::vector<std::chrono::system_clock::time_point> times;
    for (const auto& request : server.received()) times.push_back(request.received_at);
    std::sort(times.begin(), times.end());
    return times;
}

}  // namespace rate_limit_test

using namespace rate_limit_test;

TEST_CASE("two RedisRateLimits on their own connections take from one bucket",
          "[rate_limit][redis]") {
    const std::string key = fresh_key("shared");
    sg::RedisRateLimit first(connect(), limit_options(key, 10, 5));
    sg::RedisRateLimit second(connect(), limit_options(key, 10, 5));
    CHECK(first.take(3).granted == 3);
    const sg::RatePermits rest = second.take(5);
    CHECK(rest.granted == 2);  // the bucket held 5; the first took 3
    CHECK(rest.retry_in >= 1ms);
    CHECK(rest.retry_in <= 100ms);
    CHECK(first.take(1).granted == 0);
    std::this_thread::sleep_for(rest.retry_in + 5ms);
    CHECK(first.take(1).granted == 1);
    CHECK(first.redis_failures() == 0);
    CHECK(second.redis_failures() == 0);
}

TEST_CASE("a pause from one holder holds back every other; a shorter one does not shorten it",
          "[rate_limit][redis]") {
    const std::string key = fresh_key("pause");
    sg::RedisRateLimit first(connect(), limit_options(key, 1000, 100));
    sg::RedisRateLimit second(connect(), limit_options(key, 1000, 100));
    first.pause(2s);
    second.pause(300ms);
    const sg::RatePermits held = second.take(1);
    CHECK(held.granted == 0);
    CHECK(held.retry_in > 1500ms);
    CHECK(held.retry_in <= 2s);
    // The pause key expires with the pause: nothing is left behind in Redis.
    const auto ttl = connect()->command({"PTTL", key + ":paused_until"}).integer;
    CHECK(ttl > 1500);
    CHECK(ttl <= 2000);
}

TEST_CASE("RedisRateLimit options out of range are refused naming the option",
          "[rate_limit][redis]") {
    CHECK_THROWS_WITH(sg::RedisRateLimit(connect(), limit_options("", 10, 1)),
                      Catch::Contains("RedisRateLimitOptions::key"));
    CHECK_THROWS_WITH(sg::RedisRateLimit(connect(), limit_options("k", 0, 1)),
                      Catch::Contains("RedisRateLimitOptions::rate::per_second"));
    CHECK_THROWS_WITH(sg::RedisRateLimit(connect(), limit_options("k", 10, 1'000'001)),
                      Catch::Contains("RedisRateLimitOptions::rate::burst"));
    auto options = limit_options("k", 10, 1);
    options.fail_open_for = 0ms;
    CHECK_THROWS_WITH(sg::RedisRateLimit(connect(), options),
                      Catch::Contains("RedisRateLimitOptions::fail_open_for"));
    CHECK_THROWS_WITH(sg::RedisRateLimit(nullptr, limit_options("k", 10, 1)),
                      Catch::Contains("redis"));
}

TEST_CASE(
    "when Redis is gone, sends are not held back, and Redis is asked again after "
    "fail_open_for",
    "[rate_limit][redis]") {
    test_support::OwnRedis own;
    sg::RedisOptions redis_options = sg::RedisOptions::from_url(own.url());
    redis_options.reconnect_for = 0ms;
    redis_options.timeout = 200ms;
    test_support::FakeClock clock;
    sg::RedisRateLimit limit(std::make_shared<sg::RedisClient>(redis_options),
                             limit_options(fresh_key("gone"), 1, 1), clock);
    CHECK(limit.take(1).granted == 1);
    CHECK(limit.take(1).granted == 0);  // Redis holds it back while it answers
    REQUIRE(own.run("stop") == 0);
    CHECK(limit.take(4).granted == 4);
    CHECK(limit.redis_failures() == 1);
    CHECK(limit.take(4).granted == 4);  // within fail_open_for: Redis is not asked
    CHECK(limit.redis_failures() == 1);
    clock.advance(1001ms);
    CHECK(limit.take(2).granted == 2);  // asked again, and failed again
    CHECK(limit.redis_failures() == 2);
}

TEST_CASE(
    "three sendgrid-worker processes, 1500 messages, --rate-limit 50: every 2 s at the "
    "server within 10 % of 100 requests",
    "[rate_limit][redis][processes]") {
    sg::testing::FakeSendgridServer server("SG.fake-test-key.0123456789", 32);
    auto client = connect();
    const auto names = test_support::fresh_queue("rate_limited");
    sg::RedisMailQueue queue(client, names);
    const auto keys = enqueue(queue, 1500);
    Workers workers(names, fresh_key("workers"), server);
    const bool all_arrived = wait_for(server, 1500, 60s);
    std::this_thread::sleep_for(300ms);  // time for any request too many to show itself
    const std::string logs = workers.stop();
    INFO(logs.substr(0, 2000));
    REQUIRE(all_arrived);

    const auto reached_by_key = reached(server);
    CHECK(server.received_count() == 1500);  // none twice
    CHECK(reached_by_key.size() == 1500);
    std::map<std::string, int> sent_by;
    for (const auto& key : keys) {
        const auto status = queue.status(key);
        REQUIRE(status);
        CHECK(status->state == sg::QueuedState::accepted);
        ++sent_by[status->worker];
    }
    CHECK(sent_by.size() == 3);  // all three took part

    const auto times = arrivals(server);
    const auto first = times.front();
    std::vector<int> per_window;
    for (auto start = first + 2s; start + 2s <= times.back(); start += 2s) {
        per_window.push_back(
            static_cast<int>(std::lower_bound(times.begin(), times.end(), start + 2s) -
                             std::lower_bound(times.begin(), times.end(), start)));
    }
    REQUIRE(per_window.size() >= 12);  // 1500 at 50 a second: 30 s
    for (std::size_t w = 0; w < per_window.size(); ++w) {
        INFO("window " << w + 1 << " (from " << 2 * (w + 1) << " s): " << per_window[w]
                       << " requests");
        CHECK(per_window[w] >= 90);
        CHECK(per_window[w] <= 110);
    }
}

TEST_CASE("a 429 with Retry-After 2 to one of three sendgrid-worker processes pauses all three",
          "[rate_limit][redis][processes]") {
    sg::testing::FakeSendgridServer server("SG.fake-test-key.0123456789", 32);
    auto client = connect();
    const auto names = test_support::fresh_queue("paused");
    sg::RedisMailQueue queue(client, names);
    const auto keys = enqueue(queue, 300);
    Workers workers(names, fresh_key("paused"), server);
    REQUIRE(wait_for(server, 100, 20s));
    sg::testing::Fault rate_limited(429);
    rate_limited.retry_after_seconds = 2;
    server.push_fault(rate_limited);
    const bool all_arrived = wait_for(server, 301, 40s);  // 300, and the 429'd one again
    const std::string logs = workers.stop();
    INFO(logs.substr(0, 2000));
    REQUIRE(all_arrived);

    const auto received = server.received();
    auto limited = std::find_if(received.begin(), received.end(),
                                [](const auto& request) { return request.answered_status == 429; });
    REQUIRE(limited != received.end());
    const auto at = limited->received_at;
    // Requests whose permit was taken before the pause was recorded may still arrive in its
    // first moments; after that, nothing until the 2 s are over.
    int under_way = 0;
    for (const auto& request : received) {
        if (request.received_at <= at) continue;
        const auto after = request.received_at - at;
        if (after < 100ms) {
            ++under_way;
        } else {
            INFO(
                "a request " << std::chrono::duration_cast<std::chrono::milliseconds>(after).count()
                             << " ms after the 429");
            CHECK(after >= 2s);
        }
    }
    CHECK(under_way <= 5);
    for (const auto& key : keys) CHECK(queue.status(key)->state == sg::QueuedState::accepted);
    CHECK(reached(server).size() == 300);
}
