// Concurrency stress: 8 threads x 500 sends through one backend over real HTTP, while two other
// threads connect and disconnect handlers every way there is (by handle, by dispatch_uid, by
// scope, by the tracked owner dying) and a handler throws now and then. Every message must be
// accounted for exactly once: at the server and by the handler that stays connected. TSan runs
// this in CI (label "threading").
#include <sendgrid_backend/backend.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"

namespace sg = sendgrid_backend;

TEST_CASE("8 senders x 500 messages while handlers come and go: each message counted once",
          "[stress][threading][http]") {
    constexpr int senders = 8;
    constexpr int per_sender = 500;
    constexpr int batch_size = 25;
    sg::testing::FakeSendgridServer server("SG.fake-test-key.0123456789", 64);
    sg::Settings settings = server.settings();
    settings.max_in_flight = 4;
    std::atomic<int> handler_errors{0};
    sg::BackendOptions options;
    options.on_handler_error = [&](const sg::EmailMessage&, std::exception_ptr) {
        ++handler_errors;
    };
    const sg::SendgridBackend backend(settings, options);

    // The handler that stays connected throughout: counts every emission by subject.
    std::mutex mutex;
    std::map<std::string, int> emitted;
    int failed = 0;
    sg::ScopedConnection counting = sg::sendgrid_email_sent.connect(
        [&](const sg::SendgridBackend&, const sg::EmailMessage& message, bool fail_flag) {
            std::lock_guard<std::mutex> lock(mutex);
            ++emitted[message.subject];
            failed += fail_flag ? 1 : 0;
        });

    // A handler connected throughout that throws for every 25th message (the first of each
    // batch): each of those must reach on_handler_error, and the counting handler still runs.
    sg::ScopedConnection throwing = sg::sendgrid_email_sent.connect(
        [](const sg::SendgridBackend&, const sg::EmailMessage& message, bool) {
            const auto dash = message.subject.find('-');
            if (std::stoi(message.subject.substr(dash + 1)) % 25 == 0) {
                throw std::runtime_error("every 25th");
            }
        });

    std::atomic<bool> sending{true};
    std::atomic<long> churned{0};
    auto churn = [&](int which) {
        long round = 0;
        while (sending) {
            ++round;
            const std::string uid =
                "churn-" + std::to_string(which) + "-" + std::to_string(round % 4);
            auto noop = [](const sg::SendgridBackend&, const sg::EmailMessage&, bool) {};
            sg::Connection by_handle = sg::sendgrid_email_sent.connect(noop);
            sg::sendgrid_email_sent.connect(uid, noop);
            { sg::ScopedConnection scoped = sg::sendgrid_email_sent.connect(noop); }
            auto owner = std::make_shared<int>(0);
            sg::sendgrid_email_sent.connect_tracked(owner, noop);
            owner.reset();  // the tracked handler goes with its owner
            sg::Connection thrower = sg::sendgrid_email_sent.connect(
                [](const sg::SendgridBackend&, const sg::EmailMessage&, bool) {
                    throw std::runtime_error("a flaky handler");
                });
            std::this_thread::yield();
            sg::sendgrid_email_sent.disconnect(by_handle);
            sg::sendgrid_email_sent.disconnect(uid);
            thrower.disconnect();
            ++churned;
        }
    };
    std::vector<std::thread> threads;
    threads.emplace_back(churn, 0);
    threads.emplace_back(churn, 1);
    std::vector<std::thread> sender_threads;
    std::atomic<std::size_t> accepted{0};
    for (int t = 0; t < senders; ++t) {
        sender_threads.emplace_back([&, t] {
            for (int first = 0; first < per_sender; first += batch_size) {
                std::vector<sg::EmailMessage> batch;
                for (int i = first; i < first + batch_size; ++i) {
                    batch.emplace_back("t" + std::to_string(t) + "-" + std::to_string(i), "Body",
                                       "shop@example.com",
                                       std::vector<std::string>{"user@example.com"});
                }
                accepted += backend.send_messages(batch);
            }
        });
    }
    for (auto& thread : sender_threads) thread.join();
    sending = false;
    for (auto& thread : threads) thread.join();

    constexpr std::size_t total = senders * per_sender;
    CHECK(accepted == total);
    // Handler-side: every subject exactly once, none failed.
    std::lock_guard<std::mutex> lock(mutex);
    CHECK(emitted.size() == total);
    std::size_t twice = 0;
    for (const auto& [subject, count] : emitted) twice += count != 1 ? 1 : 0;
    CHECK(twice == 0);
    CHECK(failed == 0);
    // Server-side: every subject arrived exactly once.
    std::map<std::string, int> arrived;
    for (const auto& request : server.received()) ++arrived[request.mail().subject()];
    CHECK(server.received_count() == total);
    CHECK(arrived.size() == total);
    std::size_t duplicates = 0;
    for (const auto& [subject, count] : arrived) duplicates += count != 1 ? 1 : 0;
    CHECK(duplicates == 0);
    CHECK(churned > 0);
    // The churning threads left nothing behind but the two permanent handlers.
    CHECK(sg::sendgrid_email_sent.num_handlers() == 2);
    // Every 25th message's error was reported; the churning thrower adds some more.
    CHECK(handler_errors >= senders * per_sender / batch_size);
}
