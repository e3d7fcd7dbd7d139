// Messages over SendGrid's 1,000 recipients a request, sent in parts
// (Settings::split_large_messages), counted at the fake SendGrid server: how many requests,
// who each was for, one emission per message, each part's outcome, and a fault on one part
// reported for exactly its recipients. Each part's payload is also checked against SendGrid's
// schema (payload_schema).
#include <sendgrid_backend/backend.hpp>
#include <sendgrid_backend/parts.hpp>
#include <sendgrid_backend/scheduled_sends.hpp>
#include <sendgrid_backend/status/tracker.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "catch.hpp"
#include "payload_recorder.hpp"

using namespace std::chrono_literals;
namespace sg = sendgrid_backend;

namespace split_test {

sg::Settings splitting(const sg::testing::FakeSendgridServer& server) {
    sg::Settings settings = server.settings();
    settings.retry.initial_backoff = 1ms;
    settings.retry.max_backoff = 5ms;
    settings.split_large_messages = true;
    return settings;
}

std::string address(int i) { return "reader" + std::to_string(i) + "@example.com"; }

/// A make_private newsletter to `count` readers.
sg::EmailMessage newsletter(int count) {
    sg::EmailMessage message("News", "Hello", "news@example.com", {});
    for (int i = 0; i < count; ++i) message.to.push_back(address(i));
    message.make_private = true;
    return message;
}

/// Every recipient (to, cc, bcc) of a request's payload.
std::vector<std::string> recipients_of(const nlohmann::json& payload) {
    std::vector<std::string> all;
    for (const auto& p : payload["personalizations"]) {
        for (const char* list : {"to", "cc", "bcc"}) {
            if (!p.contains(list)) continue;
            for (const auto& entry : p[list]) all.push_back(entry["email"].get<std::string>());
        }
    }
    return all;
}

/// The emissions while it lives: (fail_flag, outcome) of each.
struct Emitted {
    std::mutex mutex;
    std::vector<std::pair<bool, sg::SendOutcome>> seen;
    sg::ScopedConnection connection;
    Emitted() {
        connection = sg::sendgrid_email_sent.connect(
            [this](const sg::SendgridBackend&, const sg::EmailMessage& message, bool fail_flag) {
                std::lock_guard<std::mutex> lock(mutex);
                seen.emplace_back(fail_flag, message.outcome);
            });
    }
};

}  // namespace split_test

using namespace split_test;

TEST_CASE(
    "2,500 make_private recipients go as 3 requests of at most 1,000, each recipient once, "
    "one emission",
    "[split][http]") {
    sg::testing::FakeSendgridServer server;
    sg::SendgridBackend backend(splitting(server));
    Emitted emitted;
    sg::EmailMessage message = newsletter(2500);
    message.batch_id = sg::ScheduledSends(server.settings()).create_batch_id();
    CHECK(backend.send_message(message));

    const auto received = server.received();
    REQUIRE(received.size() == 3);
    std::map<std::string, int> times;
    std::set<std::string> tracking_keys;
    for (std::size_t i = 0; i < received.size(); ++i) {
        const auto recipients = recipients_of(received[i].payload);
        CHECK(recipients.size() <= 1000);
        for (const auto& r : recipients) ++times[r];
        CHECK(received[i].payload["batch_id"] == message.batch_id);  // the parts share it
        for (const auto& p : received[i].payload["personalizations"]) {
            tracking_keys.insert(p["custom_args"]["sendgrid_backend_key"].get<std::string>());
        }
        CHECK(received[i].answered_status == 202);
        test_support::record_payload("split_part_" + std::to_string(i + 1), received[i].payload);
    }
    CHECK(times.size() == 2500);  // the union is everyone
    for (const auto& [recipient, count] : times) {
        INFO(recipient);
        CHECK(count == 1);  // none twice
    }
    CHECK(tracking_keys.size() == 1);  // one message, one key
    CHECK(*tracking_keys.begin() == message.outcome.tracking_key);

    REQUIRE(emitted.seen.size() == 1);
    CHECK_FALSE(emitted.seen[0].first);
    const sg::SendOutcome& outcome = message.outcome;
    CHECK(outcome.accepted());
    REQUIRE(outcome.parts.size() == 3);
    CHECK(outcome.parts[0].recipients.size() == 1000);
    CHECK(outcome.parts[1].recipients.size() == 1000);
    CHECK(outcome.parts[2].recipients.size() == 500);
    // Each part's id is the one the server gave the request for exactly its recipients.
    std::map<std::vector<std::string>, std::string> id_for;
    for (const auto& request : received)
        id_for[recipients_of(request.payload)] = request.message_id;
    for (std::size_t i = 0; i < 3; ++i) {
        CHECK(outcome.parts[i].outcome.accepted());
        CHECK(outcome.parts[i].outcome.message_id == id_for.at(outcome.parts[i].recipients));
    }
    CHECK(outcome.parts[0].recipients.front() == address(0));  // in order
    CHECK(outcome.parts[2].recipients.back() == address(2499));
    CHECK(outcome.message_id == outcome.parts[0].outcome.message_id);
    CHECK(outcome.attempts == 3);
    CHECK(outcome.recipients_not_accepted().empty());
}

TEST_CASE("a fault on part 2 is reported for exactly its recipients, and no part is sent twice",
          "[split][http]") {
    sg::testing::FakeSendgridServer server;
    sg::testing::Fault refused(400);
    refused.for_recipient(address(1000));  // the first of part 2
    server.push_fault(refused);
    sg::BackendOptions quiet;
    quiet.fail_silently = true;
    sg::SendgridBackend backend(splitting(server), quiet);
    Emitted emitted;
    sg::EmailMessage message = newsletter(2500);
    CHECK_FALSE(backend.send_message(message));

    CHECK(server.received_count() == 3);  // a 400 is final: nothing was tried again
    REQUIRE(emitted.seen.size() == 1);
    CHECK(emitted.seen[0].first);  // fail_flag: not every recipient was accepted
    const sg::SendOutcome& outcome = message.outcome;
    CHECK(outcome.status == sg::SendStatus::rejected);
    CHECK(outcome.http_status == 400);
    CHECK(outcome.message_id.empty());
    REQUIRE(outcome.parts.size() == 3);
    CHECK(outcome.parts[0].outcome.accepted());
    CHECK(outcome.parts[1].outcome.status == sg::SendStatus::rejected);
    CHECK(outcome.parts[2].outcome.accepted());
    const auto missed = outcome.recipients_not_accepted();
    REQUIRE(missed.size() == 1000);
    for (int i = 0; i < 1000; ++i) CHECK(missed[static_cast<std::size_t>(i)] == address(1000 + i));
    CHECK_THAT(outcome.failure_reason,
               Catch::StartsWith("part 2 of 3 (1000 recipients): HTTP 400"));
    CHECK_THAT(outcome.failure_reason, Catch::EndsWith("the other 2 accepted"));
    CHECK_FALSE(outcome.parts[1].outcome.errors.empty());  // SendGrid's errors, for that part
}

TEST_CASE("a part that gets a 429 is tried again alone", "[split][http]") {
    sg::testing::FakeSendgridServer server;
    sg::testing::Fault slow_down(429);
    slow_down.retry_after_seconds = 0;
    slow_down.for_recipient(address(2000));  // part 3
    server.push_fault(slow_down);
    sg::SendgridBackend backend(splitting(server));
    sg::EmailMessage message = newsletter(2500);
    CHECK(backend.send_message(message));
    const auto received = server.received();
    REQUIRE(received.size() == 4);
    std::map<std::string, int> accepted_times;
    for (const auto& request : received) {
        if (request.answered_status != 202) continue;
        for (const auto& r : recipients_of(request.payload)) ++accepted_times[r];
    }
    CHECK(accepted_times.size() == 2500);
    for (const auto& [recipient, count] : accepted_times) CHECK(count == 1);
    CHECK(message.outcome.parts[2].outcome.tries == 2);
    CHECK(message.outcome.tries == 4);
    CHECK(message.outcome.earlier_tries.size() == 1);
}

TEST_CASE("explicit personalizations are kept whole: 1,200 of 2 recipients go as 3 requests",
          "[split][http]") {
    sg::testing::FakeSendgridServer server;
    sg::SendgridBackend backend(splitting(server));
    sg::EmailMessage message("Pairs", "Hello", "news@example.com", {});
    for (int i = 0; i < 1200; ++i) {
        sg::Personalization p;
        p.to = {address(2 * i)};
        p.cc = {address(2 * i + 1)};
        message.personalizations.push_back(p);
    }
    CHECK(backend.send_message(message));
    const auto received = server.received();
    REQUIRE(received.size() == 3);
    std::size_t total = 0;
    for (const auto& request : received) {
        const auto& ps = request.payload["personalizations"];
        for (const auto& p : ps) {
            REQUIRE(p["to"].size() == 1);
            REQUIRE(p["cc"].size() == 1);  // a pair is never divided
        }
        CHECK(ps.size() <= 500);
        total += ps.size();
    }
    CHECK(total == 1200);
}

TEST_CASE(
    "one personalization over 1,000 recipients is refused naming it; without opting in, a "
    "large list is refused saying how to opt in",
    "[split][http]") {
    sg::testing::FakeSendgridServer server;
    sg::BackendOptions quiet;
    quiet.fail_silently = true;
    sg::EmailMessage message("One mail", "Hello", "news@example.com", {});
    sg::Personalization small;
    small.to = {address(0)};
    sg::Personalization everyone;
    for (int i = 1; i <= 1001; ++i) everyone.to.push_back(address(i));
    message.personalizations = {small, everyone};
    {
        sg::SendgridBackend backend(splitting(server), quiet);
        CHECK_FALSE(backend.send_message(message));
        CHECK(message.outcome.status == sg::SendStatus::invalid);
        CHECK_THAT(message.outcome.failure_reason,
                   Catch::StartsWith("personalizations[1]: has 1001 recipients"));
    }
    sg::Settings off = splitting(server);
    off.split_large_messages = false;
    sg::SendgridBackend backend(off, quiet);
    sg::EmailMessage large = newsletter(1001);
    CHECK_FALSE(backend.send_message(large));
    CHECK_THAT(large.outcome.failure_reason,
               Catch::Contains("Settings::split_large_messages sends it as several requests"));
    CHECK(server.received_count() == 0);  // nothing of either went out
}

TEST_CASE(
    "in a batch, a make_private message to nobody is refused by name and the others go "
    "as they should",
    "[split][http]") {
    sg::testing::FakeSendgridServer server;
    sg::BackendOptions quiet;
    quiet.fail_silently = true;
    sg::SendgridBackend backend(splitting(server), quiet);
    Emitted emitted;
    std::vector<sg::EmailMessage> batch{newsletter(0), newsletter(3)};
    CHECK(backend.send_messages(batch) == 1);
    CHECK(batch[0].outcome.status == sg::SendStatus::invalid);
    CHECK_THAT(batch[0].outcome.failure_reason, Catch::StartsWith("to: is empty"));
    CHECK(batch[1].outcome.accepted());
    const auto received = server.received();
    REQUIRE(received.size() == 1);
    CHECK(batch[1].outcome.message_id == received[0].message_id);
    CHECK(emitted.seen.size() == 2);
}

TEST_CASE(
    "a status tracker records each recipient by its own part: part 2 refused is not "
    "everyone refused",
    "[split][http]") {
    sg::testing::FakeSendgridServer server;
    sg::testing::Fault refused(400);
    refused.for_recipient(address(1000));
    server.push_fault(refused);
    auto tracker = std::make_shared<sg::StatusTracker>();
    sg::BackendOptions options;
    options.fail_silently = true;
    options.statuses = tracker;
    sg::SendgridBackend backend(splitting(server), options);
    sg::EmailMessage message = newsletter(2500);
    CHECK_FALSE(backend.send_message(message));
    const auto status = tracker->status(message.outcome.tracking_key);
    REQUIRE(status);
    CHECK(status->send.state == sg::DeliveryState::failed);  // the message as a whole
    REQUIRE(status->recipients.size() == 2500);
    for (int i = 0; i < 2500; ++i) {
        const sg::RecipientStatus* recipient = status->recipient(address(i));
        REQUIRE(recipient != nullptr);
        const bool in_part_2 = i >= 1000 && i < 2000;
        INFO(address(i));
        CHECK(recipient->state ==
              (in_part_2 ? sg::DeliveryState::failed : sg::DeliveryState::accepted));
    }
}
