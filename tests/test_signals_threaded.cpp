// Concurrent send / connect / disconnect on one signal. Meant to run under ThreadSanitizer too
// (ctest label "threading"); every loop is bounded.
#include <sendgrid_backend/signals.hpp>

#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"

// Its own namespace: the tests are compiled as unity builds (tests/CMakeLists.txt).
namespace signals_threaded_test {

namespace {

struct Sender {};
struct Message {
    int id;
};
using TestSignal = sendgrid_backend::Signal<Sender, Message>;

constexpr int kSenderThreads = 4;
constexpr int kSendsPerThread = 2000;
constexpr int kConnectRounds = 500;

}  // namespace

TEST_CASE("4 threads send while 2 threads connect and disconnect", "[signals][threading]") {
    TestSignal signal;
    std::atomic<long> permanent_calls{0};
    std::atomic<long> transient_calls{0};
    std::atomic<long> thrown{0};
    std::atomic<long> errors_returned{0};
    std::atomic<bool> message_seen_intact{true};

    signal.connect([&](const Sender&, const Message& message, bool fail_flag) {
        if (fail_flag != (message.id % 2 == 1)) message_seen_intact = false;
        ++permanent_calls;
    });

    std::vector<std::thread> threads;
    for (int t = 0; t < kSenderThreads; ++t) {
        threads.emplace_back([&, t] {
            const Sender sender;
            for (int i = 0; i < kSendsPerThread; ++i) {
                const Message message{t * kSendsPerThread + i};
                const bool fail_flag = message.id % 2 == 1;
                // Robust sends collect what the throwing transient handlers threw.
                errors_returned +=
                    static_cast<long>(signal.send_robust(sender, message, fail_flag).size());
            }
        });
    }
    // Connector 1: plain and dispatch_uid handlers, some of which throw.
    threads.emplace_back([&] {
        for (int round = 0; round < kConnectRounds; ++round) {
            auto counting =
                signal.connect([&](const Sender&, const Message&, bool) { ++transient_calls; });
            auto throwing = signal.connect("thrower", [&](const Sender&, const Message&, bool) {
                ++thrown;
                throw std::runtime_error("transient");
            });
            std::this_thread::yield();
            CHECK(signal.disconnect(counting));
            signal.disconnect("thrower");
        }
    });
    // Connector 2: scoped and tracked handlers whose owners die while sends run.
    threads.emplace_back([&] {
        for (int round = 0; round < kConnectRounds; ++round) {
            auto owner = std::make_shared<int>(round);
            signal.connect_tracked(owner,
                                   [&, raw = owner.get()](const Sender&, const Message&, bool) {
                                       if (*raw >= 0) ++transient_calls;
                                   });
            sendgrid_backend::ScopedConnection scoped =
                signal.connect([&](const Sender&, const Message&, bool) { ++transient_calls; },
                               sendgrid_backend::Position::front);
            std::this_thread::yield();
            owner.reset();
        }
    });
    for (auto& thread : threads) thread.join();

    // Every send reached the permanent handler exactly once, with intact arguments.
    CHECK(permanent_calls == long{kSenderThreads} * kSendsPerThread);
    CHECK(message_seen_intact);
    // Every exception a handler threw came back from exactly one send_robust.
    CHECK(errors_returned == thrown.load());
    // Only the permanent handler is left; expired tracked slots are cleaned up on send.
    signal.send(Sender{}, Message{0}, false);
    CHECK(signal.num_handlers() == 1);
    INFO("transient handler calls: " << transient_calls.load() << ", thrown: " << thrown.load());
    CHECK(permanent_calls == long{kSenderThreads} * kSendsPerThread + 1);
}

TEST_CASE("first connects racing on a fresh signal, while it is sent, lose no handler",
          "[signals][threading]") {
    // The first connect makes the signal's Boost core; racing threads must end up sharing one.
    for (int round = 0; round < 100; ++round) {
        TestSignal signal;
        std::atomic<int> calls{0};
        std::atomic<bool> go{false};
        std::vector<std::thread> threads;
        for (int t = 0; t < 3; ++t) {
            threads.emplace_back([&] {
                while (!go) std::this_thread::yield();
                signal.connect([&](const Sender&, const Message&, bool) { ++calls; });
            });
        }
        threads.emplace_back([&] {
            while (!go) std::this_thread::yield();
            for (int i = 0; i < 20; ++i) signal.send(Sender{}, Message{i}, false);
        });
        go = true;
        for (auto& thread : threads) thread.join();
        REQUIRE(signal.num_handlers() == 3);
        calls = 0;
        signal.send(Sender{}, Message{0}, false);
        REQUIRE(calls == 3);
    }
}

TEST_CASE("concurrent connect with one dispatch_uid connects once", "[signals][threading]") {
    TestSignal signal;
    std::atomic<int> calls{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 200; ++i) {
                signal.connect("only-once", [&](const Sender&, const Message&, bool) { ++calls; });
            }
        });
    }
    for (auto& thread : threads) thread.join();
    CHECK(signal.num_handlers() == 1);
    signal.send(Sender{}, Message{1}, false);
    CHECK(calls == 1);
}

TEST_CASE("handlers connect and disconnect from inside handlers on many threads",
          "[signals][threading]") {
    TestSignal signal;
    std::atomic<long> inner_calls{0};
    signal.connect([&](const Sender&, const Message& message, bool) {
        // Each send connects a handler under its own uid and removes it again, re-entrantly.
        const std::string uid = "inner-" + std::to_string(message.id);
        signal.connect(uid, [&](const Sender&, const Message&, bool) { ++inner_calls; });
        signal.disconnect(uid);
    });
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 500; ++i) signal.send(Sender{}, Message{t * 1000 + i}, false);
        });
    }
    for (auto& thread : threads) thread.join();
    CHECK(signal.num_handlers() == 1);
}

TEST_CASE("observers come and go while 4 threads send: each counted send lands once",
          "[signals][threading][observe]") {
    TestSignal signal;
    std::atomic<long> permanent{0};
    auto transient_state = std::make_shared<std::atomic<long>>(0);
    const auto always = signal.observe(
        [&](const Sender&, const Message&, bool) noexcept { permanent.fetch_add(1); });
    std::atomic<bool> stop{false};
    std::thread churn([&] {
        for (int round = 0; round < kConnectRounds && !stop; ++round) {
            auto transient =
                signal.observe([transient_state](const Sender&, const Message&, bool) noexcept {
                    transient_state->fetch_add(1);
                });
            std::this_thread::yield();
            CHECK(transient.disconnect());
        }
    });
    std::vector<std::thread> senders;
    for (int t = 0; t < kSenderThreads; ++t) {
        senders.emplace_back([&] {
            for (int i = 0; i < kSendsPerThread; ++i) signal.send(Sender{}, Message{i}, false);
        });
    }
    for (auto& sender : senders) sender.join();
    stop = true;
    churn.join();
    CHECK(permanent == kSenderThreads * kSendsPerThread);
    CHECK(*transient_state <= kSenderThreads * kSendsPerThread);
    CHECK(transient_state.use_count() == 1);  // every list that held it is gone
}

}  // namespace signals_threaded_test
