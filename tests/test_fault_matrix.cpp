// The fault matrix: every fault a send can meet, x fail_silently on and off, x one request at a
// time and 16 in flight, x a fresh and a reused connection. One message of each batch meets
// the fault (it goes to faulty@example.com); for every case the test checks, where it lands:
//  - exactly one sendgrid_email_sent per message, with the right fail_flag, status and reason;
//  - send_messages' return value, or SendError's contents;
//  - how many requests for the faulty message reached the server (1; 2 for a retried 429;
//    0 when nothing could connect);
//  - that nothing hung past the configured timeouts;
//  - that the API key appears in no text: exceptions, outcomes, SendGrid's errors, the echo.
// Runs under ASan+UBSan in the test command, so a leak or undefined behaviour fails it too.
#include <sendgrid_backend/backend.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "catch.hpp"
#include "support/fault_server.hpp"

// Its own namespace: the tests are compiled as unity builds (tests/CMakeLists.txt).
namespace fault_matrix_test {

using namespace std::chrono_literals;
namespace sg = sendgrid_backend;
using sg::SendStatus;
using sg::testing::Fault;
using test_support::FaultAction;

namespace {

constexpr auto kTimeout = 400ms;
const std::string kFaulty = "faulty@example.com";
const std::string kKey = "SG.fake-test-key.0123456789";  // the fake server's default key

enum class Where { fake_server, raw_server, nothing_listens, no_such_host };

struct FaultCase {
    const char* name;
    Where where;
    std::function<void(sg::testing::FakeSendgridServer&)> fake;  // for Where::fake_server
    FaultAction raw = FaultAction::accept;                       // for Where::raw_server
    SendStatus status;
    int http_status;
    std::size_t reached;  ///< requests for the faulty message the server saw
    /// The request timeout: longer only where the fault is not about time (a 5 MB answer read
    /// under the sanitizers and a loaded machine can take longer than kTimeout).
    std::chrono::milliseconds timeout = kTimeout;
};

Fault aimed(Fault fault) { return std::move(fault.for_recipient(kFaulty)); }

std::vector<FaultCase> cases() {
    auto status = [](int code) {
        return [code](sg::testing::FakeSendgridServer& s) { s.push_fault(aimed(Fault(code))); };
    };
    auto limited = [](bool retry_after) {
        return [retry_after](sg::testing::FakeSendgridServer& s) {
            Fault fault(429);
            if (retry_after) fault.retry_after_seconds = 0;  // else X-RateLimit-Reset, capped
            s.push_fault(aimed(fault));
        };
    };
    const auto fake = Where::fake_server;
    const auto raw = Where::raw_server;
    return {
        {"400", fake, status(400), {}, SendStatus::rejected, 400, 1},
        {"401", fake, status(401), {}, SendStatus::rejected, 401, 1},
        {"403", fake, status(403), {}, SendStatus::rejected, 403, 1},
        {"413", fake, status(413), {}, SendStatus::rejected, 413, 1},
        {"429 with Retry-After", fake, limited(true), {}, SendStatus::accepted, 202, 2},
        {"429 without Retry-After", fake, limited(false), {}, SendStatus::accepted, 202, 2},
        {"500", fake, status(500), {}, SendStatus::rejected, 500, 1},
        {"502", fake, status(502), {}, SendStatus::rejected, 502, 1},
        {"503", fake, status(503), {}, SendStatus::rejected, 503, 1},
        {"answer after the timeout", raw, {}, FaultAction::accept_late, SendStatus::unknown, 0, 1},
        {"reset after the request",
         raw,
         {},
         FaultAction::reset_after_request,
         SendStatus::unknown,
         0,
         1},
        {"closed after the request",
         raw,
         {},
         FaultAction::close_after_request,
         SendStatus::unknown,
         0,
         1},
        {"half an answer", raw, {}, FaultAction::half_headers, SendStatus::unknown, 0, 1},
        {"half a status line", raw, {}, FaultAction::half_status_line, SendStatus::unknown, 0, 1},
        {"garbage instead of HTTP", raw, {}, FaultAction::garbage, SendStatus::unknown, 0, 1},
        {"2xx without X-Message-Id",
         raw,
         {},
         FaultAction::accept_without_id,
         SendStatus::accepted,
         202,
         1},
        {"a huge error body",
         raw,
         {},
         FaultAction::huge_error_body,
         SendStatus::rejected,
         400,
         1,
         3s},
        {"the key echoed back",
         raw,
         {},
         FaultAction::echo_authorization,
         SendStatus::rejected,
         401,
         1},
        {"connection refused", Where::nothing_listens, {}, {}, SendStatus::transport_failed, 0, 0},
        {"DNS failure", Where::no_such_host, {}, {}, SendStatus::transport_failed, 0, 0},
    };
}

/// Counts emissions per subject and keeps every outcome text, while it lives.
struct Observed {
    std::mutex mutex;
    std::map<std::string, int> emissions;
    std::map<std::string, bool> fail_flags;
    std::string texts;
    sg::ScopedConnection connection;

    Observed() {
        connection = sg::sendgrid_email_sent.connect(
            [this](const sg::SendgridBackend&, const sg::EmailMessage& message, bool fail_flag) {
                std::lock_guard<std::mutex> lock(mutex);
                ++emissions[message.subject];
                fail_flags[message.subject] = fail_flag;
                texts += message.outcome.failure_reason + message.outcome.message_id;
                for (const auto& e : message.outcome.errors) texts += e.message + e.field + e.help;
            });
    }
};

std::vector<sg::EmailMessage> batch_of(std::size_t count, std::size_t faulty_index) {
    std::vector<sg::EmailMessage> batch;
    for (std::size_t i = 0; i < count; ++i) {
        const std::string to =
            i == faulty_index ? kFaulty : "user" + std::to_string(i) + "@example.com";
        batch.emplace_back("m" + std::to_string(i), "Body", "shop@example.com",
                           std::vector<std::string>{to});
    }
    return batch;
}

}  // namespace

TEST_CASE("the fault matrix", "[matrix][http]") {
    int runs = 0;
    for (const FaultCase& fault : cases()) {
        for (const bool silently : {true, false}) {
            for (const std::size_t in_flight : {std::size_t{1}, std::size_t{16}}) {
                for (const bool reused : {false, true}) {
                    if (reused && fault.where == Where::no_such_host) continue;  // nothing to reuse
                    INFO(fault.name << (silently ? ", fail_silently" : ", raising") << ", "
                                    << in_flight << " in flight"
                                    << (reused ? ", reused connections" : ", fresh connections"));
                    ++runs;
                    std::optional<sg::testing::FakeSendgridServer> fake;
                    std::optional<test_support::FaultServer> raw;
                    std::string url;
                    if (fault.where == Where::fake_server) {
                        fake.emplace();
                        url = fake->url();
                    } else if (fault.where == Where::no_such_host) {
                        url = "http://sendgrid-test.invalid";
                    } else {
                        raw.emplace();
                        url = raw->url();
                    }
                    sg::Settings settings;
                    settings.api_key = kKey;
                    settings.host_url = url;
                    settings.timeout = fault.timeout;
                    settings.connect_timeout = kTimeout;
                    settings.max_in_flight = in_flight;
                    settings.retry.max_tries = 3;
                    settings.retry.initial_backoff = 1ms;
                    settings.retry.max_backoff = 2ms;
                    settings.retry.max_retry_after = 50ms;
                    settings.echo_to_stdout = true;
                    std::ostringstream echo;
                    sg::BackendOptions options;
                    options.fail_silently = silently;
                    options.stream = &echo;
                    const sg::SendgridBackend backend(settings, options);

                    if (reused) {  // the batch below meets warm, kept-alive connections
                        auto warm = batch_of(in_flight, in_flight);
                        for (auto& message : warm) message.subject = "warm " + message.subject;
                        REQUIRE(backend.send_messages(warm) == warm.size());
                    }
                    if (fault.where == Where::nothing_listens) raw.reset();  // the server goes
                    if (fake) fault.fake(*fake);
                    if (raw) raw->always_for(kFaulty, fault.raw, 2 * kTimeout);

                    const std::size_t count = in_flight == 1 ? 6 : 20;
                    const std::size_t faulty = 3;
                    auto batch = batch_of(count, faulty);
                    Observed observed;
                    const bool whole_batch =
                        fault.where == Where::nothing_listens || fault.where == Where::no_such_host;
                    const std::size_t failures =
                        whole_batch ? count : (fault.status == SendStatus::accepted ? 0 : 1);
                    std::string texts;
                    const auto started = std::chrono::steady_clock::now();
                    try {
                        const std::size_t accepted = backend.send_messages(batch);
                        CHECK((silently || failures == 0));
                        CHECK(accepted == count - failures);
                    } catch (const sg::SendError& error) {
                        CHECK_FALSE(silently);
                        CHECK(error.id() == "sendgrid_backend.send_error");
                        texts += error.what();
                        REQUIRE(error.failures().size() == failures);
                        if (!whole_batch) {
                            CHECK(error.failures()[0].index == faulty);
                            CHECK(error.failures()[0].status == fault.status);
                            CHECK(error.failures()[0].http_status == fault.http_status);
                        }
                    }
                    const auto elapsed = std::chrono::steady_clock::now() - started;
                    INFO("took "
                         << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()
                         << " ms");
                    // Three tries of at most a timeout each, plus the short backoffs. A lookup
                    // can take longer: with 16 at once, the sandbox's DNS server leaves some
                    // unanswered, and libcurl 7.88 (threaded resolver, multi mode) reports those
                    // only when glibc's resolver gives up, not at connect_timeout. ctest runs
                    // this with RES_OPTIONS="timeout:1 attempts:1": at most 1 s a lookup.
                    const auto resolver = fault.where == Where::no_such_host ? 1s : 0s;
                    CHECK(elapsed < 3 * (fault.timeout + resolver) + 1s);

                    for (std::size_t i = 0; i < count; ++i) {
                        INFO("message " << i);
                        const auto& outcome = batch[i].outcome;
                        CHECK(observed.emissions[batch[i].subject] == 1);
                        const bool this_one = whole_batch || i == faulty;
                        const SendStatus expected = this_one ? fault.status : SendStatus::accepted;
                        CHECK(outcome.status == expected);
                        CHECK(observed.fail_flags[batch[i].subject] ==
                              (expected != SendStatus::accepted));
                        if (this_one) {
                            CHECK(outcome.http_status == fault.http_status);
                            CHECK(outcome.maybe_delivered() ==
                                  (fault.status == SendStatus::unknown));
                            if (expected != SendStatus::accepted) {
                                CHECK_FALSE(outcome.failure_reason.empty());
                            }
                        }
                        if (whole_batch) {
                            CHECK(outcome.attempts == 0);  // nothing ever reached a connection
                            CHECK(outcome.tries == 3);
                        }
                    }
                    if (fake) {
                        std::size_t reached = 0;
                        for (const auto& request : fake->received()) {
                            reached += request.mail().is_for(kFaulty) ? 1 : 0;
                        }
                        CHECK(reached == fault.reached);
                    } else if (raw) {
                        std::this_thread::sleep_for(20ms);  // what a stray re-send would need
                        CHECK(raw->requests_with(kFaulty) == fault.reached);
                        CHECK(static_cast<std::size_t>(batch[faulty].outcome.attempts) ==
                              fault.reached);
                    }
                    texts += observed.texts + echo.str();
                    CHECK(texts.find(kKey) == std::string::npos);
                    if (fault.raw == FaultAction::echo_authorization && raw) {
                        CHECK(batch[faulty].outcome.errors.at(0).message ==
                              "bad credentials: Bearer [redacted]");
                    }
                }
            }
        }
    }
    CHECK(runs == 156);
}

}  // namespace fault_matrix_test
