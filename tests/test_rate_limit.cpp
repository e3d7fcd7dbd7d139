// The rate limit in this process: LocalRateLimit's token bucket, and delivery taking a permit
// before every try, pausing the limit on a 429, and never held back for good by a limit that
// fails or never grants. Time is a FakeClock: the schedules are counted at the (scripted)
// transport, in fake milliseconds, with no real waiting.
#include <sendgrid_backend/backend.hpp>
#include <sendgrid_backend/delivery.hpp>
#include <sendgrid_backend/rate_limit.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "catch.hpp"
#include "support/scripted_transport.hpp"

using namespace std::chrono_literals;
namespace sg = sendgrid_backend;
using namespace test_support;

namespace {

sg::RateLimitOptions per_second(double rate, std::size_t burst) {
    sg::RateLimitOptions options;
    options.per_second = rate;
    options.burst = burst;
    return options;
}

/// Runs one delivery of `names`; returns the outcomes.
std::vector<sg::SendOutcome> deliver(sg::Transport& transport, FakeClock& clock,
                                     const std::vector<std::string>& names,
                                     std::shared_ptr<sg::RateLimit> limit,
                                     std::chrono::milliseconds max_permit_wait = 60s) {
    sg::DeliveryOptions options;
    options.max_in_flight = 8;
    options.rate_limit = limit.get();
    options.max_permit_wait = max_permit_wait;
    std::vector<sg::SendOutcome> outcomes(names.size());
    std::vector<sg::SendOutcome*> pointers;
    for (auto& outcome : outcomes) pointers.push_back(&outcome);
    sg::Delivery delivery(transport, options, clock, [] { return 0.5; });
    const auto report = delivery.run(requests_named(names), pointers, [](std::size_t) {});
    CHECK_FALSE(report.transport_broke());
    return outcomes;
}

std::map<std::string, std::vector<Step>> all_accepted(const std::vector<std::string>& names) {
    std::map<std::string, std::vector<Step>> script;
    for (const auto& name : names) script[name] = {{10ms, accepted()}};
    return script;
}

std::vector<std::string> names_up_to(int count) {
    std::vector<std::string> names;
    for (int i = 0; i < count; ++i) names.push_back("m" + std::to_string(i));
    return names;
}

/// A limit that never grants, or throws: delivery must not be held back for good.
class StuckLimit final : public sg::RateLimit {
  public:
    explicit StuckLimit(bool throws) : throws_(throws) {}
    sg::RatePermits take(std::size_t) override {
        ++takes;
        if (throws_) throw std::runtime_error("the limit's store is down");
        return {0, 100ms};
    }
    void pause(std::chrono::milliseconds) override {}
    int takes = 0;

  private:
    bool throws_;
};

}  // namespace

TEST_CASE("LocalRateLimit: a burst at once, then one permit per 1/rate", "[rate_limit]") {
    FakeClock clock;
    sg::LocalRateLimit limit(per_second(10, 3), clock);
    auto taken = limit.take(5);
    CHECK(taken.granted == 3);
    CHECK(taken.retry_in == 100ms);
    CHECK(limit.take(1).granted == 0);
    clock.advance(99ms);
    CHECK(limit.take(1).granted == 0);
    clock.advance(1ms);
    CHECK(limit.take(1).granted == 1);
    clock.advance(10s);  // a long idle time fills it to the burst, no more
    CHECK(limit.take(10).granted == 3);
}

TEST_CASE(
    "LocalRateLimit: a pause holds every permit back until it ends; a shorter one is kept "
    "out",
    "[rate_limit]") {
    FakeClock clock;
    sg::LocalRateLimit limit(per_second(100, 10), clock);
    limit.pause(2s);
    limit.pause(500ms);  // shorter: the 2 s pause stays
    auto taken = limit.take(1);
    CHECK(taken.granted == 0);
    CHECK(taken.retry_in == 2s);
    clock.advance(1999ms);
    CHECK(limit.take(1).granted == 0);
    clock.advance(1ms);
    CHECK(limit.take(1).granted == 1);
}

TEST_CASE("rate limit options out of range are refused naming the option", "[rate_limit]") {
    CHECK_THROWS_WITH(sg::LocalRateLimit(per_second(0, 1)),
                      Catch::Contains("RateLimitOptions::per_second"));
    CHECK_THROWS_WITH(sg::LocalRateLimit(per_second(-1, 1)),
                      Catch::Contains("RateLimitOptions::per_second"));
    CHECK_THROWS_WITH(sg::LocalRateLimit(per_second(2e6, 1)),
                      Catch::Contains("from 0.001 to 1000000"));
    CHECK_THROWS_WITH(sg::LocalRateLimit(per_second(10, 2'000'000)),
                      Catch::Contains("RateLimitOptions::burst"));
    CHECK(per_second(50, 0).effective_burst() == 5);
    CHECK(per_second(5, 0).effective_burst() == 1);
}

TEST_CASE(
    "delivery starts each request only with a permit: 20 at 10/s take 1.9 s at the "
    "transport",
    "[rate_limit][delivery]") {
    FakeClock clock;
    const auto names = names_up_to(20);
    ScriptedTransport transport(clock, all_accepted(names));
    auto limit = std::make_shared<sg::LocalRateLimit>(per_second(10, 1), clock);
    const auto outcomes = deliver(transport, clock, names, limit);
    for (const auto& outcome : outcomes) CHECK(outcome.accepted());
    REQUIRE(transport.starts.size() == 20);
    for (std::size_t i = 0; i < transport.starts.size(); ++i) {
        INFO("request " << i);
        CHECK(transport.starts[i].second == static_cast<long long>(i) * 100);
    }
}

TEST_CASE(
    "a 429 with Retry-After pauses the limit: nothing sharing it starts before the pause "
    "ends",
    "[rate_limit][delivery]") {
    FakeClock clock;
    // A permit every 10 ms: without the pause, b would start at 10 ms and c at 20 ms.
    auto limit = std::make_shared<sg::LocalRateLimit>(per_second(100, 1), clock);
    std::map<std::string, std::vector<Step>> script = all_accepted({"b", "c"});
    script["a"] = {{10ms, rate_limited("2")}, {10ms, accepted()}};
    ScriptedTransport transport(clock, script);
    const auto outcomes = deliver(transport, clock, {"a", "b", "c"}, limit);
    for (const auto& outcome : outcomes) CHECK(outcome.accepted());
    REQUIRE(transport.starts.size() == 4);
    CHECK(transport.starts[0] == std::make_pair(std::string("a"), 0LL));
    // The 429 came at 10 ms and asked for 2 s: the limit holds everyone until 2010 ms.
    for (std::size_t i = 1; i < transport.starts.size(); ++i) {
        INFO(transport.starts[i].first << " at " << transport.starts[i].second << " ms");
        CHECK(transport.starts[i].second >= 2010);
    }
}

TEST_CASE(
    "a limit that never grants holds no try back longer than max_permit_wait from when it "
    "was ready; one that throws, not at all",
    "[rate_limit][delivery]") {
    FakeClock clock;
    const auto names = names_up_to(3);
    SECTION("never grants") {
        ScriptedTransport transport(clock, all_accepted(names));
        auto limit = std::make_shared<StuckLimit>(false);
        const auto outcomes = deliver(transport, clock, names, limit, 1s);
        for (const auto& outcome : outcomes) CHECK(outcome.accepted());
        REQUIRE(transport.starts.size() == 3);
        // All three were ready when the run began: none waits longer than 1 s from then (a
        // worker's visibility timeout counts on it), not 1 s each in turn.
        for (const auto& start : transport.starts) CHECK(start.second == 1000);
    }
    SECTION(
        "never grants, and says to wait longer than max_permit_wait: a retry goes 1 s after "
        "it was due") {
        std::map<std::string, std::vector<Step>> script = all_accepted({"b"});
        script["a"] = {{10ms, rate_limited("5")}, {10ms, accepted()}};
        ScriptedTransport transport(clock, script);
        class Paused final : public sg::RateLimit {
          public:
            sg::RatePermits take(std::size_t wanted) override {
                if (++takes == 1) return {wanted, 0ms};  // the first two go at once
                return {0, 60s};
            }
            void pause(std::chrono::milliseconds) override {}
            int takes = 0;
        };
        auto limit = std::make_shared<Paused>();
        sg::DeliveryOptions options;
        options.max_in_flight = 8;
        options.rate_limit = limit.get();
        options.max_permit_wait = 1s;
        options.retry.max_retry_after = 60s;
        std::vector<sg::SendOutcome> outcomes(2);
        std::vector<sg::SendOutcome*> pointers{&outcomes[0], &outcomes[1]};
        sg::Delivery delivery(transport, options, clock, [] { return 0.5; });
        delivery.run(requests_named({"a", "b"}), pointers, [](std::size_t) {});
        REQUIRE(transport.starts.size() == 3);
        CHECK(transport.starts[2] == std::make_pair(std::string("a"), 10LL + 5000 + 1000));
        CHECK(outcomes[0].accepted());
    }
    SECTION("throws") {
        ScriptedTransport transport(clock, all_accepted(names));
        auto limit = std::make_shared<StuckLimit>(true);
        const auto outcomes = deliver(transport, clock, names, limit, 1s);
        for (const auto& outcome : outcomes) CHECK(outcome.accepted());
        REQUIRE(transport.starts.size() == 3);
        for (const auto& start : transport.starts) CHECK(start.second == 0);
        CHECK(limit->takes == 1);  // one take for the three
    }
}

TEST_CASE(
    "BackendOptions::rate_limit: a backend's sends take permits, and wait at most the "
    "longest wait between tries",
    "[rate_limit][backend]") {
    FakeClock clock;
    auto transport = std::make_shared<ScriptedTransport>(
        clock, std::map<std::string, std::vector<Step>>{{"hello", {{5ms, accepted()}}}});
    transport->key_of = [](const std::string& body) {
        return nlohmann::json::parse(body)["subject"].get<std::string>();
    };
    sg::Settings settings;
    settings.api_key = "SG.test-key";
    sg::BackendOptions options;
    options.transport = transport;
    options.clock = &clock;
    auto limit = std::make_shared<sg::LocalRateLimit>(per_second(4, 1), clock);
    options.rate_limit = limit;
    sg::SendgridBackend backend(settings, options);
    CHECK(backend.rate_limit() == limit);
    std::vector<sg::EmailMessage> messages;
    for (int i = 0; i < 5; ++i) {
        sg::EmailMessage message;
        message.subject = "hello";
        message.body = "text";
        message.from_email = "app@example.com";
        message.to = {"user" + std::to_string(i) + "@example.com"};
        messages.push_back(message);
    }
    CHECK(backend.send_messages(messages) == 5);
    REQUIRE(transport->starts.size() == 5);
    for (std::size_t i = 0; i < 5; ++i) CHECK(transport->starts[i].second == 250 * (long long)i);
}
