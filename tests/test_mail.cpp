// SendgridBackend over real loopback HTTP against FakeSendgridServer (libcurl transport): what
// needs the real HTTP path. The contract itself (one emission per message, SendError,
// fail_silently, handlers, the pre-send hook) is tested without HTTP in test_backend.cpp.
#include <sendgrid_backend/backend.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <ctime>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "catch.hpp"
#include "payload_recorder.hpp"

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

/// build_payload's JSON for `message` as its send posted it: with its tracking key.
nlohmann::json as_sent(const SendgridBackend& backend, EmailMessage message) {
    message.custom_args[backend.settings().tracking_arg] = message.outcome.tracking_key;
    return backend.build_payload(message);
}

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
    // What went over the wire is exactly build_payload's JSON, with the tracking key added.
    CHECK(received[0].payload["personalizations"][0]["custom_args"]["sendgrid_backend_key"] ==
          message.outcome.tracking_key);
    CHECK(received[0].payload == as_sent(backend, message));
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
        settings.retry.max_tries = 1;  // see the fault itself, not a retry
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

TEST_CASE("retries stop after max_tries", "[mail][http][retry]") {
    FakeSendgridServer server;
    Settings settings = settings_for(server);
    settings.retry.max_tries = 3;
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
    settings.retry.max_tries = 3;
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
    return {server.received(), as_sent(backend, large)};
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

TEST_CASE("the API key appears in no error text, reason or echo", "[mail][http][secrets]") {
    FakeSendgridServer server;
    Settings settings = settings_for(server);
    settings.echo_to_stdout = true;
    settings.retry.max_tries = 1;
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
