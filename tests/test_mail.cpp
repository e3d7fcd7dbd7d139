// SendgridBackend over real loopback HTTP against FakeSendgridServer (libcurl transport), plus
// the in-memory outbox for what needs no network.
#include <sendgrid_backend/backend.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/testing/outbox.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <ctime>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "catch.hpp"
#include "payload_recorder.hpp"
#include "support/scripted_transport.hpp"

using namespace std::chrono_literals;
using sendgrid_backend::BackendOptions;
using sendgrid_backend::EmailMessage;
using sendgrid_backend::SendError;
using sendgrid_backend::SendgridBackend;
using sendgrid_backend::SendStatus;
using sendgrid_backend::Settings;
using sendgrid_backend::TransportError;
using sendgrid_backend::testing::FakeSendgridServer;
using sendgrid_backend::testing::Fault;

namespace {

EmailMessage make_message(const std::string& subject, const std::string& to = "jane@example.com") {
    return EmailMessage(subject, "Body of " + subject, "Shop <shop@example.com>", {to});
}

/// Settings pointing at `server`, with retries fast enough for tests.
Settings settings_for(const FakeSendgridServer& server) {
    Settings settings = server.settings();
    settings.retry.initial_backoff = 1ms;
    settings.retry.max_backoff = 5ms;
    settings.timeout = 5000ms;
    return settings;
}

/// Records every sendgrid_email_sent emission while it lives.
struct Emissions {
    struct Seen {
        const SendgridBackend* sender;
        std::string subject;
        bool fail_flag;
        sendgrid_backend::SendOutcome outcome;
        std::thread::id thread;
    };
    std::mutex mutex;
    std::vector<Seen> seen;
    sendgrid_backend::ScopedConnection connection;

    Emissions() {
        connection = sendgrid_backend::sendgrid_email_sent.connect(
            [this](const SendgridBackend& sender, const EmailMessage& message, bool fail_flag) {
                std::lock_guard<std::mutex> lock(mutex);
                seen.push_back(Seen{&sender, message.subject, fail_flag, message.outcome,
                                    std::this_thread::get_id()});
            });
    }
    std::size_t size() {
        std::lock_guard<std::mutex> lock(mutex);
        return seen.size();
    }
};

/// Sends one message that is expected to fail, fail_silently; returns it with its outcome.
EmailMessage send_expecting_failure(SendgridBackend& backend, Emissions& emissions) {
    std::vector<EmailMessage> batch{make_message("doomed")};
    CHECK(backend.send_messages(batch) == 0);
    REQUIRE(emissions.size() == 1);
    CHECK(emissions.seen[0].fail_flag);
    return batch[0];
}

BackendOptions quietly() {
    BackendOptions options;
    options.fail_silently = true;
    return options;
}

}  // namespace

TEST_CASE("a send is accepted: id and status recorded, one emission, fail_flag false",
          "[mail][http]") {
    FakeSendgridServer server;
    SendgridBackend backend(settings_for(server));
    Emissions emissions;

    EmailMessage message = make_message("Welcome");
    CHECK(backend.send_message(message));

    CHECK(message.outcome.status == SendStatus::accepted);
    CHECK(message.outcome.http_status == 202);
    CHECK(message.outcome.attempts == 1);
    CHECK(message.outcome.duration > 0ns);
    CHECK(message.outcome.failure_reason.empty());
    REQUIRE(emissions.size() == 1);
    CHECK(emissions.seen[0].sender == &backend);
    CHECK_FALSE(emissions.seen[0].fail_flag);
    CHECK(emissions.seen[0].outcome.message_id == message.outcome.message_id);

    const auto received = server.received();
    REQUIRE(received.size() == 1);
    CHECK(message.outcome.message_id == received[0].message_id);
    CHECK(message.outcome.message_id.size() == 22);
    const auto& headers = received[0].headers;
    CHECK(sendgrid_backend::find_header(headers, "Authorization") == "Bearer " + server.api_key());
    CHECK(sendgrid_backend::find_header(headers, "Content-Type") == "application/json");
    CHECK(std::string(sendgrid_backend::find_header(headers, "User-Agent")) ==
          "sendgrid_backend-cpp/" SENDGRID_BACKEND_VERSION_STRING);
    // What went over the wire is exactly build_payload's JSON.
    CHECK(received[0].payload == backend.build_payload(message));
    test_support::record_payload("backend_sent", received[0].payload);
}

TEST_CASE("message ids are unique across sends", "[mail][http]") {
    FakeSendgridServer server;
    SendgridBackend backend(settings_for(server));
    std::vector<EmailMessage> batch;
    for (int i = 0; i < 20; ++i) batch.push_back(make_message("m" + std::to_string(i)));
    CHECK(backend.send_messages(batch) == 20);
    std::set<std::string> ids;
    for (const auto& message : batch) ids.insert(message.outcome.message_id);
    CHECK(ids.size() == 20);
}

TEST_CASE("each injected HTTP fault is recorded with SendGrid's errors and fail_flag true",
          "[mail][http]") {
    const int statuses[] = {400, 401, 403, 413, 429, 500, 503};
    for (int status : statuses) {
        INFO("status " << status);
        FakeSendgridServer server;
        Settings settings = settings_for(server);
        settings.retry.max_attempts = 1;  // see the fault itself, not a retry
        SendgridBackend backend(settings, quietly());
        Emissions emissions;
        server.push_fault(Fault{status});

        const EmailMessage message = send_expecting_failure(backend, emissions);
        CHECK(message.outcome.status == SendStatus::rejected);
        CHECK(message.outcome.http_status == status);
        CHECK(message.outcome.transport_error == TransportError::none);
        REQUIRE(message.outcome.errors.size() == 1);
        CHECK_FALSE(message.outcome.errors[0].message.empty());
        CHECK(message.outcome.failure_reason.rfind("HTTP " + std::to_string(status), 0) == 0);
        CHECK(message.outcome.message_id.empty());
    }
}

TEST_CASE("a wrong key is answered 401 by the server's own check", "[mail][http]") {
    FakeSendgridServer server;
    Settings settings = settings_for(server);
    settings.api_key = "SG.wrong-key";
    SendgridBackend backend(settings, quietly());
    Emissions emissions;
    const EmailMessage message = send_expecting_failure(backend, emissions);
    CHECK(message.outcome.http_status == 401);
    CHECK(message.outcome.errors.at(0).message ==
          "The provided authorization grant is invalid, expired, or revoked");
}

TEST_CASE("SendGrid's validation errors come back field by field", "[mail][http]") {
    FakeSendgridServer server;
    // A transport that sends a payload the builder would never make: no subject, no content.
    struct RawTransport : sendgrid_backend::CurlTransport {
        sendgrid_backend::HttpResponse send(const sendgrid_backend::HttpRequest& request) override {
            auto broken = request;
            broken.body = R"({"from":{"email":"shop@example.com"},
                              "personalizations":[{"to":[{"email":"a@example.com"},
                                                         {"email":"A@example.com"}]}]})";
            return CurlTransport::send(broken);
        }
    };
    BackendOptions options = quietly();
    options.transport = std::make_shared<RawTransport>();
    SendgridBackend backend(settings_for(server), options);
    Emissions emissions;
    const EmailMessage message = send_expecting_failure(backend, emissions);
    CHECK(message.outcome.http_status == 400);
    std::set<std::string> fields;
    for (const auto& error : message.outcome.errors) fields.insert(error.field);
    CHECK(fields == std::set<std::string>{"personalizations.0", "subject", "content"});
}

TEST_CASE("429 then success: retried, attempts counted", "[mail][http][retry]") {
    FakeSendgridServer server;
    SendgridBackend backend(settings_for(server));
    Emissions emissions;
    Fault rate_limited{429};
    rate_limited.retry_after_seconds = 0;
    rate_limited.times = 2;
    server.push_fault(rate_limited);

    EmailMessage message = make_message("patient");
    CHECK(backend.send_message(message));
    CHECK(message.outcome.attempts == 3);
    CHECK(message.outcome.http_status == 202);
    CHECK(server.received_count() == 3);
    REQUIRE(emissions.size() == 1);  // one emission, after the final attempt
    CHECK_FALSE(emissions.seen[0].fail_flag);
    CHECK(emissions.seen[0].outcome.attempts == 3);
}

TEST_CASE("a 429's Retry-After is honoured before the retry", "[mail][http][retry]") {
    FakeSendgridServer server;
    SendgridBackend backend(settings_for(server));
    Fault rate_limited{429};
    rate_limited.retry_after_seconds = 1;
    server.push_fault(rate_limited);
    EmailMessage message = make_message("waits");
    CHECK(backend.send_message(message));
    CHECK(message.outcome.attempts == 2);
    CHECK(message.outcome.duration >= 1s);  // the wait the server asked for, not a speed claim
}

TEST_CASE("retries stop after max_attempts", "[mail][http][retry]") {
    FakeSendgridServer server;
    Settings settings = settings_for(server);
    settings.retry.max_attempts = 3;
    SendgridBackend backend(settings, quietly());
    Emissions emissions;
    Fault rate_limited{429};
    rate_limited.retry_after_seconds = 0;
    rate_limited.times = 10;
    server.push_fault(rate_limited);
    const EmailMessage message = send_expecting_failure(backend, emissions);
    CHECK(message.outcome.attempts == 3);
    CHECK(message.outcome.http_status == 429);
    CHECK(server.received_count() == 3);
}

TEST_CASE("5xx is not retried unless opted in; 4xx never", "[mail][http][retry]") {
    FakeSendgridServer server;
    Settings settings = settings_for(server);
    {
        SendgridBackend backend(settings, quietly());
        Emissions emissions;
        server.push_fault(Fault{503});
        CHECK(send_expecting_failure(backend, emissions).outcome.attempts == 1);
    }
    {
        SendgridBackend backend(settings, quietly());
        Emissions emissions;
        server.push_fault(Fault{400});
        CHECK(send_expecting_failure(backend, emissions).outcome.attempts == 1);
    }
    settings.retry.retry_server_errors = true;
    SendgridBackend backend(settings);
    server.push_fault(Fault{503});
    EmailMessage message = make_message("retried 5xx");
    CHECK(backend.send_message(message));
    CHECK(message.outcome.attempts == 2);
}

TEST_CASE("connection refused: a transport failure, retried because nothing was sent",
          "[mail][http][retry]") {
    Settings settings;
    {
        FakeSendgridServer closed;
        settings = settings_for(closed);
    }  // the port is free again: nothing listens there now
    settings.retry.max_attempts = 3;
    SendgridBackend backend(settings, quietly());
    Emissions emissions;
    const EmailMessage message = send_expecting_failure(backend, emissions);
    CHECK(message.outcome.status == SendStatus::transport_failed);
    CHECK(message.outcome.transport_error == TransportError::connection_failed);
    CHECK(message.outcome.http_status == 0);
    CHECK(message.outcome.attempts == 0);  // no request reached a connection
    CHECK(message.outcome.tries == 3);
    CHECK(message.outcome.failure_reason.rfind("not sent: connection_failed: ", 0) == 0);
    CHECK(message.outcome.failure_reason.find("(after 3 tries)") != std::string::npos);
}

TEST_CASE("a slow server times out: outcome unknown, not retried (it may have accepted)",
          "[mail][http][retry]") {
    FakeSendgridServer server;
    Settings settings = settings_for(server);
    settings.timeout = 300ms;
    SendgridBackend backend(settings, quietly());
    Emissions emissions;
    Fault slow;
    slow.delay = 1500ms;
    server.push_fault(slow);
    const EmailMessage message = send_expecting_failure(backend, emissions);
    CHECK(message.outcome.status == SendStatus::unknown);
    CHECK(message.outcome.maybe_delivered());
    CHECK(message.outcome.transport_error == TransportError::timeout);
    CHECK(message.outcome.attempts == 1);
    CHECK(message.outcome.tries == 1);
    CHECK(server.wait_for_requests(1));
    std::this_thread::sleep_for(1500ms);  // until the late answer: nothing else arrives
    CHECK(server.received_count() == 1);
}

TEST_CASE("an answer head of 202 counts as accepted even when the body is cut short",
          "[mail][http][retry]") {
    FakeSendgridServer server;
    SendgridBackend backend(settings_for(server), quietly());
    Emissions emissions;
    Fault drop;  // the server answers 202 with its X-Message-Id, then drops mid-body
    drop.drop_connection = true;
    server.push_fault(drop);
    EmailMessage message = make_message("cut");
    CHECK(backend.send_message(message));
    CHECK(message.outcome.status == SendStatus::accepted);
    CHECK(message.outcome.transport_error == TransportError::receive_failed);
    const auto received = server.received();
    REQUIRE(received.size() == 1);
    CHECK(received[0].answered_status == 202);
    CHECK(message.outcome.message_id == received[0].message_id);
    // The backend recovers: the next send on a fresh connection works.
    EmailMessage next = make_message("after the drop");
    CHECK(backend.send_message(next));
    CHECK(server.received_count() == 2);
}

TEST_CASE("fail_silently=false: every message attempted and emitted, then one SendError",
          "[mail][http]") {
    FakeSendgridServer server;
    Settings settings = settings_for(server);
    settings.max_in_flight = 1;  // the fault hits the first request
    settings.retry.max_attempts = 1;
    SendgridBackend backend(settings);
    Emissions emissions;
    server.push_fault(Fault{500});
    std::vector<EmailMessage> batch{make_message("first"), make_message("second"),
                                    make_message("third", "not-an-address")};
    try {
        backend.send_messages(batch);
        FAIL("no SendError");
    } catch (const SendError& error) {
        CHECK(error.id() == "sendgrid_backend.send_error");
        REQUIRE(error.failures().size() == 2);  // in batch order
        CHECK(error.failures()[0].index == 0);
        CHECK(error.failures()[0].status == SendStatus::rejected);
        CHECK(error.failures()[0].http_status == 500);
        CHECK(error.failures()[1].index == 2);
        CHECK(error.failures()[1].status == SendStatus::invalid);
        CHECK(error.failures()[1].reason.rfind("to[0]: ", 0) == 0);
        CHECK(std::string(error.what()).find("2 of 3 messages were not sent") != std::string::npos);
    }
    // Emitted as each outcome became final: the invalid one before anything was sent.
    REQUIRE(emissions.size() == 3);
    CHECK(emissions.seen[0].subject == "third");
    CHECK(emissions.seen[0].fail_flag);
    CHECK(emissions.seen[0].outcome.status == SendStatus::invalid);
    CHECK(emissions.seen[1].subject == "first");
    CHECK(emissions.seen[1].fail_flag);
    CHECK(emissions.seen[2].subject == "second");
    CHECK_FALSE(emissions.seen[2].fail_flag);
    CHECK(batch[1].outcome.accepted());
}

TEST_CASE("fail_silently=true: no exception, the count says what was accepted", "[mail][http]") {
    FakeSendgridServer server;
    SendgridBackend backend(settings_for(server), quietly());
    Emissions emissions;
    std::vector<EmailMessage> batch{make_message("ok"), make_message("bad", "bad")};
    CHECK(backend.send_messages(batch) == 1);
    CHECK(emissions.size() == 2);
    CHECK(batch[1].outcome.failure_reason.rfind("to[0]: ", 0) == 0);
}

TEST_CASE("1000 messages with 8 in flight: exactly 1000 emissions, each message once",
          "[mail][http][batch]") {
    FakeSendgridServer server;
    Settings settings = settings_for(server);
    settings.max_in_flight = 8;
    SendgridBackend backend(settings);
    Emissions emissions;
    std::vector<EmailMessage> batch;
    for (int i = 0; i < 1000; ++i) batch.push_back(make_message("n" + std::to_string(i)));

    CHECK(backend.send_messages(batch) == 1000);

    REQUIRE(emissions.size() == 1000);
    std::map<std::string, int> times_seen;
    for (const auto& seen : emissions.seen) {
        ++times_seen[seen.subject];
        CHECK_FALSE(seen.fail_flag);
        CHECK(seen.thread == std::this_thread::get_id());  // handlers run on the caller's thread
    }
    CHECK(times_seen.size() == 1000);
    for (const auto& [subject, count] : times_seen) CHECK(count == 1);
    CHECK(server.received_count() == 1000);
    std::set<std::string> ids;
    for (const auto& message : batch) ids.insert(message.outcome.message_id);
    CHECK(ids.size() == 1000);
}

TEST_CASE("4 threads share one backend", "[mail][http][threading]") {
    FakeSendgridServer server;
    Settings settings = settings_for(server);
    settings.max_in_flight = 4;
    const SendgridBackend backend(settings);
    Emissions emissions;
    std::vector<std::thread> threads;
    std::atomic<std::size_t> accepted{0};
    std::vector<std::thread::id> ids(4);
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            ids[static_cast<std::size_t>(t)] = std::this_thread::get_id();
            std::vector<EmailMessage> batch;
            for (int i = 0; i < 50; ++i) {
                batch.push_back(make_message("t" + std::to_string(t) + "-" + std::to_string(i)));
            }
            accepted += backend.send_messages(batch);
        });
    }
    for (auto& thread : threads) thread.join();
    CHECK(accepted == 200);
    REQUIRE(emissions.size() == 200);
    std::set<std::string> subjects;
    for (const auto& seen : emissions.seen) {
        subjects.insert(seen.subject);
        // Each emission happened on the thread that sent that message.
        const auto thread_index = static_cast<std::size_t>(seen.subject[1] - '0');
        CHECK(seen.thread == ids[thread_index]);
    }
    CHECK(subjects.size() == 200);
    CHECK(server.received_count() == 200);
}

TEST_CASE("sendgrid_pre_send can modify and cancel messages", "[mail][http][pre_send]") {
    FakeSendgridServer server;
    SendgridBackend backend(settings_for(server), quietly());
    Emissions emissions;
    sendgrid_backend::ScopedConnection hook = sendgrid_backend::sendgrid_pre_send.connect(
        [](const SendgridBackend&, EmailMessage& message) {
            if (message.subject == "cancel me") throw sendgrid_backend::CancelSend("unsubscribed");
            if (message.subject == "broken hook") throw std::runtime_error("hook bug");
            message.subject = "[edited] " + message.subject;
            message.categories.push_back("edited");
        });
    std::vector<EmailMessage> batch{make_message("keep"), make_message("cancel me"),
                                    make_message("broken hook")};
    CHECK(backend.send_messages(batch) == 1);

    const auto received = server.received();
    REQUIRE(received.size() == 1);
    CHECK(received[0].payload["subject"] == "[edited] keep");
    CHECK(received[0].payload["categories"] == nlohmann::json::array({"edited"}));

    // Cancelled messages are final before anything is sent: emitted first.
    REQUIRE(emissions.size() == 3);
    CHECK(emissions.seen[0].subject == "cancel me");
    CHECK(emissions.seen[0].fail_flag);
    CHECK(emissions.seen[0].outcome.status == SendStatus::cancelled);
    CHECK(emissions.seen[0].outcome.failure_reason == "cancelled: unsubscribed");
    CHECK(emissions.seen[1].subject == "broken hook");
    CHECK(emissions.seen[1].outcome.status == SendStatus::cancelled);
    CHECK(emissions.seen[1].outcome.failure_reason.find("hook bug") != std::string::npos);
    CHECK(emissions.seen[2].subject == "[edited] keep");
    CHECK_FALSE(emissions.seen[2].fail_flag);
}

TEST_CASE("SendError says each failure's status once, and the reason on its own still says it",
          "[mail][http][pre_send]") {
    FakeSendgridServer server;
    Settings settings = settings_for(server);
    settings.max_in_flight = 1;  // the fault hits the first request: "rejected"
    settings.retry.max_attempts = 1;
    SendgridBackend backend(settings);
    sendgrid_backend::ScopedConnection hook = sendgrid_backend::sendgrid_pre_send.connect(
        [](const SendgridBackend&, EmailMessage& message) {
            if (message.subject == "opted out") {
                throw sendgrid_backend::CancelSend("user opted out");
            }
            if (message.subject == "broken hook") throw std::runtime_error("hook bug");
        });
    server.push_fault(Fault{400});
    std::vector<EmailMessage> batch{make_message("opted out"), make_message("broken hook"),
                                    make_message("rejected"), make_message("sent")};
    try {
        backend.send_messages(batch);
        FAIL("no SendError");
    } catch (const SendError& error) {
        CHECK(std::string(error.what()) ==
              "[sendgrid_backend.send_error] 3 of 4 messages were not sent: [0] cancelled: user "
              "opted out; [1] cancelled: a sendgrid_pre_send handler threw: hook bug; [2] "
              "rejected: HTTP 400; Bad Request (injected)");
    }
    // What a handler reads names the status itself.
    CHECK(batch[0].outcome.failure_reason == "cancelled: user opted out");
    CHECK(batch[2].outcome.failure_reason == "HTTP 400; Bad Request (injected)");
    CHECK(batch[3].outcome.accepted());
}

TEST_CASE("a missing API key: the library's text names both ways a C++ program has",
          "[mail][settings]") {
    Settings settings;
    settings.api_key = " ";
    CHECK_THROWS_WITH(SendgridBackend(settings),
                      "[sendgrid_backend.improperly_configured] SENDGRID_API_KEY: is not set; set "
                      "SENDGRID_API_KEY or pass BackendOptions::api_key");
}

TEST_CASE("SendError's text for each kind of failure", "[mail]") {
    using Failure = SendError::Failure;
    const auto text = [](Failure failure) {
        return std::string(SendError({std::move(failure)}, 1).what());
    };
    const std::string head = "[sendgrid_backend.send_error] 1 of 1 message was not sent: [0] ";
    CHECK(text({0, SendStatus::cancelled, 0, "cancelled: user opted out"}) ==
          head + "cancelled: user opted out");
    CHECK(text({0, SendStatus::unknown, 0, "outcome unknown: no answer"}) ==
          head + "outcome unknown: no answer");
    CHECK(text({0, SendStatus::rejected, 429, "HTTP 429; too many requests"}) ==
          head + "rejected: HTTP 429; too many requests");
    // A reason that does not say the status gets it in front, the HTTP status too.
    CHECK(text({0, SendStatus::cancelled, 0, "user opted out"}) ==
          head + "cancelled: user opted out");
    CHECK(text({0, SendStatus::rejected, 400, "bad from"}) == head + "rejected 400: bad from");
    CHECK(text({0, SendStatus::rejected, 400, "HTTP 4000"}) == head + "rejected 400: HTTP 4000");
    CHECK(text({0, SendStatus::invalid, 0, "to[0]: no @"}) == head + "invalid: to[0]: no @");
    CHECK(text({0, SendStatus::transport_failed, 0, "not sent: refused"}) ==
          head + "transport_failed: not sent: refused");
    CHECK(text({0, SendStatus::cancelled, 0, "uncancelled: x"}) ==
          head + "cancelled: uncancelled: x");
    CHECK(std::string(
              SendError({{1, SendStatus::invalid, 0, "a"}, {2, SendStatus::invalid, 0, "b"}}, 3)
                  .what()) ==
          "[sendgrid_backend.send_error] 2 of 3 messages were not sent: [1] invalid: a; [2] "
          "invalid: b");
}

TEST_CASE("a throwing handler neither fails an accepted send nor stops the batch", "[mail][http]") {
    FakeSendgridServer server;
    std::vector<std::string> reported;
    BackendOptions options;
    options.on_handler_error = [&](const EmailMessage& message, std::exception_ptr error) {
        try {
            std::rethrow_exception(error);
        } catch (const std::exception& e) {
            reported.push_back(message.subject + ": " + e.what());
        }
    };
    SendgridBackend backend(settings_for(server), options);
    sendgrid_backend::ScopedConnection thrower = sendgrid_backend::sendgrid_email_sent.connect(
        [](const SendgridBackend&, const EmailMessage&, bool) {
            throw std::runtime_error("metrics down");
        });
    Emissions emissions;  // connected after the thrower: still called
    std::vector<EmailMessage> batch{make_message("a"), make_message("b")};
    CHECK(backend.send_messages(batch) == 2);  // no SendError: both accepted
    CHECK(emissions.size() == 2);
    // Emitted in the order the answers came: compare without order.
    CHECK(std::multiset<std::string>(reported.begin(), reported.end()) ==
          std::multiset<std::string>{"a: metrics down", "b: metrics down"});
}

TEST_CASE("sandbox mode: validated by the server, answered 200, counted as sent", "[mail][http]") {
    FakeSendgridServer server;
    Settings settings = settings_for(server);
    settings.debug = true;  // sandbox_mode_in_debug defaults to true
    SendgridBackend backend(settings);
    CHECK(backend.sandbox_mode());
    EmailMessage message = make_message("sandboxed");
    CHECK(backend.send_message(message));
    CHECK(message.outcome.http_status == 200);
    CHECK(message.outcome.message_id.empty());
    CHECK(server.received()[0].payload["mail_settings"]["sandbox_mode"]["enable"] == true);
}

namespace {

/// Sends a small message, one whose body is `large_body_bytes` long, then the small one again,
/// through a backend that gzips bodies from `gzip_min_bytes` (0: never); returns what `server`
/// received and the large message's payload.
std::pair<std::vector<sendgrid_backend::testing::ReceivedRequest>, nlohmann::json>
send_small_large_small(FakeSendgridServer& server, std::size_t gzip_min_bytes,
                       std::size_t large_body_bytes) {
    Settings settings = settings_for(server);
    settings.gzip_min_bytes = gzip_min_bytes;
    SendgridBackend backend(settings);
    EmailMessage small = make_message("small");
    EmailMessage large = make_message("large");
    large.body = std::string(large_body_bytes, 'x');
    CHECK(backend.send_message(small));
    CHECK(backend.send_message(large));
    CHECK(backend.send_message(small));
    return {server.received(), backend.build_payload(large)};
}

}  // namespace

TEST_CASE("large bodies are sent gzip-compressed and arrive intact", "[mail][http]") {
    FakeSendgridServer server;
    const auto [received, large_payload] = send_small_large_small(server, 1024, 50'000);
    REQUIRE(received.size() == 3);
    CHECK(sendgrid_backend::find_header(received[0].headers, "Content-Encoding").empty());
    CHECK(sendgrid_backend::find_header(received[1].headers, "Content-Encoding") == "gzip");
    CHECK(received[1].payload == large_payload);
}

TEST_CASE("no Expect: 100-continue round trip, for small or large bodies", "[mail][http]") {
    // libcurl asks for one above 1 MiB unless the request carries an empty Expect header; the
    // transport adds that header only where libcurl would ask.
    FakeSendgridServer server;
    const auto [received, large_payload] = send_small_large_small(server, 0, 1'200'000);
    REQUIRE(received.size() == 3);
    for (const auto& request : received) {
        CHECK(sendgrid_backend::find_header(request.headers, "Expect").empty());
        CHECK(std::string(sendgrid_backend::find_header(request.headers, "User-Agent")) ==
              "sendgrid_backend-cpp/" SENDGRID_BACKEND_VERSION_STRING);
    }
    CHECK(received[1].payload == large_payload);
}

TEST_CASE("echo to a stream writes each message, never the key", "[mail][http]") {
    FakeSendgridServer server;
    Settings settings = settings_for(server);
    settings.echo_to_stdout = true;
    std::ostringstream stream;
    BackendOptions options;
    options.stream = &stream;
    SendgridBackend backend(settings, options);
    EmailMessage message = make_message("Echoed");
    message.attach("a.txt", "hello");
    CHECK(backend.send_message(message));
    const std::string echoed = stream.str();
    CHECK(echoed.find("Subject: Echoed\n") != std::string::npos);
    CHECK(echoed.find("To: jane@example.com\n") != std::string::npos);
    CHECK(echoed.find("Body of Echoed") != std::string::npos);
    CHECK(echoed.find("[attachment a.txt, 5 bytes]") != std::string::npos);
    CHECK(echoed.find(std::string(79, '-')) != std::string::npos);
    CHECK(echoed.find(server.api_key()) == std::string::npos);
}

TEST_CASE("the API key appears in no error text, reason or echo", "[mail][http][secrets]") {
    FakeSendgridServer server;
    Settings settings = settings_for(server);
    settings.echo_to_stdout = true;
    settings.retry.max_attempts = 1;
    std::ostringstream stream;
    BackendOptions options;
    options.stream = &stream;
    SendgridBackend backend(settings, options);
    const std::string key = server.api_key();

    for (int status : {400, 401, 403, 413, 429, 500, 503}) server.push_fault(Fault{status});
    Fault drop;
    drop.drop_connection = true;
    server.push_fault(drop);
    std::vector<EmailMessage> batch;
    for (int i = 0; i < 8; ++i) batch.push_back(make_message("s" + std::to_string(i)));
    batch.push_back(make_message("invalid", "x"));
    std::string texts;
    try {
        backend.send_messages(batch);
        FAIL("no SendError");
    } catch (const SendError& error) {
        texts += error.what();
        // 7 error statuses and the invalid message; the dropped answer had a 202 head.
        CHECK(error.failures().size() == 8);
    }
    for (const auto& message : batch) {
        texts += message.outcome.failure_reason;
        for (const auto& e : message.outcome.errors) texts += e.message + e.field + e.help;
    }
    texts += stream.str();
    try {
        Settings no_url = settings;
        no_url.host_url = "ftp://example.com";
        SendgridBackend broken(no_url);
    } catch (const std::exception& e) {
        texts += e.what();
    }
    CHECK_FALSE(texts.empty());
    CHECK(texts.find(key) == std::string::npos);
    CHECK(texts.find("SG.fake") == std::string::npos);
}

TEST_CASE("a missing API key is ImproperlyConfigured; an explicit key beats the settings",
          "[mail]") {
    Settings settings;
    CHECK_THROWS_AS(SendgridBackend(settings), sendgrid_backend::ImproperlyConfigured);
    settings.api_key = "   ";
    CHECK_THROWS_AS(SendgridBackend(settings), sendgrid_backend::ImproperlyConfigured);
    try {
        SendgridBackend backend(settings);
    } catch (const sendgrid_backend::ImproperlyConfigured& e) {
        CHECK(e.setting() == "SENDGRID_API_KEY");
    }

    auto outbox = std::make_shared<sendgrid_backend::testing::OutboxTransport>();
    BackendOptions options;
    options.api_key = "SG.explicit";
    options.transport = outbox;
    settings.api_key = "SG.from-settings";
    SendgridBackend backend(settings, options);
    EmailMessage message = make_message("keyed");
    CHECK(backend.send_message(message));
    CHECK(sendgrid_backend::find_header(outbox->requests().at(0).headers, "Authorization") ==
          "Bearer SG.explicit");
    CHECK(message.outcome.message_id == "outbox-0");
}

TEST_CASE("the host URL selects the endpoint (e.g. the EU region)", "[mail]") {
    Settings settings;
    settings.api_key = "SG.x";
    BackendOptions options;
    options.transport = std::make_shared<sendgrid_backend::testing::OutboxTransport>();
    CHECK(SendgridBackend(settings, options).send_url() == "https://api.sendgrid.com/v3/mail/send");
    settings.host_url = "https://api.eu.sendgrid.com/";
    CHECK(SendgridBackend(settings, options).send_url() ==
          "https://api.eu.sendgrid.com/v3/mail/send");
    settings.host_url = "api.sendgrid.com";
    CHECK_THROWS_AS(SendgridBackend(settings, options), sendgrid_backend::ImproperlyConfigured);
}

TEST_CASE("the outbox transport keeps every payload, like Django's mail.outbox", "[mail]") {
    auto outbox = std::make_shared<sendgrid_backend::testing::OutboxTransport>();
    Settings settings;
    settings.api_key = "SG.x";
    BackendOptions options;
    options.transport = outbox;
    SendgridBackend backend(settings, options);
    std::vector<EmailMessage> batch{make_message("one"), make_message("two")};
    CHECK(backend.send_messages(batch) == 2);
    const auto sent = outbox->outbox();
    REQUIRE(sent.size() == 2);
    CHECK(sent[0]["subject"] == "one");
    CHECK(sent[1]["subject"] == "two");
    outbox->clear();
    CHECK(outbox->size() == 0);
}

namespace {

/// A backend over a scripted transport whose script is keyed by each payload's subject.
struct ScriptedBackend {
    test_support::FakeClock clock;
    std::shared_ptr<test_support::ScriptedTransport> transport;
    std::unique_ptr<SendgridBackend> backend;

    ScriptedBackend(std::map<std::string, std::vector<test_support::Step>> by_subject,
                    bool fail_silently, std::size_t in_flight = 8) {
        // The script is keyed by request body; bodies are the exact payloads of these messages.
        Settings settings;
        settings.api_key = "SG.scripted";
        settings.max_in_flight = in_flight;
        settings.retry.jitter = 0;
        BackendOptions probe_options;
        probe_options.transport = std::make_shared<sendgrid_backend::testing::OutboxTransport>();
        const SendgridBackend probe(settings, probe_options);
        std::map<std::string, std::vector<test_support::Step>> by_body;
        for (auto& [subject, steps] : by_subject) {
            by_body[probe.serialize_payload(make_message(subject))] = steps;
        }
        transport = std::make_shared<test_support::ScriptedTransport>(clock, by_body);
        BackendOptions options;
        options.fail_silently = fail_silently;
        options.transport = transport;
        options.clock = &clock;
        backend = std::make_unique<SendgridBackend>(settings, options);
    }
};

std::vector<EmailMessage> messages_with_subjects(const std::vector<std::string>& subjects) {
    std::vector<EmailMessage> batch;
    for (const auto& subject : subjects) batch.push_back(make_message(subject));
    return batch;
}

}  // namespace

TEST_CASE("each message is emitted as soon as its outcome is final, on the caller's thread",
          "[mail][contract]") {
    using test_support::Step;
    ScriptedBackend scripted(
        {{"slow", {Step{3000ms, test_support::accepted("s")}}},
         {"limited",
          {Step{10ms, test_support::rate_limited("1")}, Step{10ms, test_support::accepted("l")}}},
         {"quick", {Step{5ms, test_support::accepted("q")}}}},
        true);
    Emissions emissions;
    std::map<std::string, long long> emitted_at_ms;
    sendgrid_backend::ScopedConnection timing = sendgrid_backend::sendgrid_email_sent.connect(
        [&](const SendgridBackend&, const EmailMessage& message, bool) {
            emitted_at_ms[message.subject] = scripted.clock.elapsed().count();
        });
    auto batch = messages_with_subjects({"slow", "limited", "quick", "bad"});
    batch[3].to = {"not-an-address"};
    CHECK(scripted.backend->send_messages(batch) == 3);
    REQUIRE(emissions.size() == 4);
    std::vector<std::string> order;
    for (const auto& seen : emissions.seen) {
        order.push_back(seen.subject);
        CHECK(seen.thread == std::this_thread::get_id());
    }
    CHECK(order == std::vector<std::string>{"bad", "quick", "limited", "slow"});
    CHECK(emitted_at_ms["bad"] == 0);
    CHECK(emitted_at_ms["quick"] == 5);
    CHECK(emitted_at_ms["limited"] == 1020);
    CHECK(emitted_at_ms["slow"] == 3000);
    CHECK(batch[1].outcome.tries == 2);
}

TEST_CASE(
    "a throwing transport: one emission per message, then BrokenTransport even with "
    "fail_silently",
    "[mail][contract]") {
    using test_support::Step;
    const bool fail_silently = GENERATE(false, true);
    ScriptedBackend scripted({{"a", {Step{1ms, test_support::accepted()}}},
                              {"b", {Step{1ms, test_support::accepted()}}},
                              {"c", {Step{1ms, test_support::accepted()}}}},
                             fail_silently, 1);
    scripted.transport->throw_on_send = 1;
    Emissions emissions;
    auto batch = messages_with_subjects({"a", "b", "c"});
    try {
        scripted.backend->send_messages(batch);
        FAIL("no BrokenTransport");
    } catch (const sendgrid_backend::BrokenTransport& error) {
        CHECK(error.id() == "sendgrid_backend.broken_transport");
        CHECK(std::string(error.what())
                  .rfind("[sendgrid_backend.broken_transport] the transport "
                         "broke (it threw from wait_any: send exploded)",
                         0) == 0);
        REQUIRE(error.failures().size() == 2);
        CHECK(error.failures()[0].index == 1);
        CHECK(error.failures()[0].status == SendStatus::unknown);
        CHECK(error.failures()[1].index == 2);
        CHECK(error.failures()[1].status == SendStatus::transport_failed);
        REQUIRE(error.cause() != nullptr);
        CHECK_THROWS_WITH(std::rethrow_exception(error.cause()), "send exploded");
    }
    REQUIRE(emissions.size() == 3);
    std::set<std::string> subjects;
    for (const auto& seen : emissions.seen) subjects.insert(seen.subject);
    CHECK(subjects.size() == 3);
    CHECK(batch[0].outcome.accepted());
}

TEST_CASE("a transport that answers short or long still gives one emission per message",
          "[mail][contract]") {
    using test_support::Step;
    ScriptedBackend scripted({{"a", {Step{1ms, test_support::accepted()}}},
                              {"b", {Step{1ms, test_support::accepted()}}},
                              {"c", {Step{1ms, test_support::accepted()}}}},
                             true, 3);
    const bool short_answer = GENERATE(true, false);
    if (short_answer) {
        scripted.transport->never_answer = scripted.backend->serialize_payload(make_message("b"));
    } else {
        scripted.transport->answer_unknown_tag = true;
    }
    Emissions emissions;
    auto batch = messages_with_subjects({"a", "b", "c"});
    CHECK_THROWS_AS(scripted.backend->send_messages(batch), sendgrid_backend::BrokenTransport);
    CHECK(emissions.size() == 3);
    CHECK(batch[0].outcome.accepted());
    CHECK(batch[1].outcome.status == (short_answer ? SendStatus::unknown : SendStatus::accepted));
    CHECK(batch[2].outcome.accepted());
}

TEST_CASE("a plain transport exception out of send_message keeps the library's id",
          "[mail][contract]") {
    struct Exploding : sendgrid_backend::Transport {
        sendgrid_backend::HttpResponse send(const sendgrid_backend::HttpRequest&) override {
            throw std::logic_error("bug in a custom transport");
        }
    };
    Settings settings;
    settings.api_key = "SG.x";
    BackendOptions options;
    options.transport = std::make_shared<Exploding>();
    SendgridBackend backend(settings, options);
    Emissions emissions;
    EmailMessage message = make_message("one");
    try {
        backend.send_message(message);
        FAIL("nothing thrown");
    } catch (const sendgrid_backend::Error& error) {
        CHECK(error.id() == "sendgrid_backend.broken_transport");
    }
    CHECK(emissions.size() == 1);
    CHECK(message.outcome.status == SendStatus::unknown);
    CHECK(message.outcome.failure_reason.find("bug in a custom transport") != std::string::npos);
}
