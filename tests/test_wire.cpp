// At most once on the wire, counted where it lands: libcurl against a raw-socket server that
// answers after the timeout, closes or resets right after reading a request, sends half an
// answer or garbage. Each faulty request must reach the server exactly once, whatever libcurl
// would like to do, on a fresh and on a reused connection, one at a time and in batches.
#include <sendgrid_backend/backend.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "catch.hpp"
#include "support/fault_server.hpp"

// Its own namespace: the tests are compiled as unity builds (tests/CMakeLists.txt).
namespace wire_test {

using namespace std::chrono_literals;
using sendgrid_backend::BackendOptions;
using sendgrid_backend::EmailMessage;
using sendgrid_backend::SendgridBackend;
using sendgrid_backend::SendStatus;
using sendgrid_backend::Settings;
using sendgrid_backend::TransportError;
using test_support::FaultAction;
using test_support::FaultServer;

namespace {

constexpr auto kTimeout = 400ms;

EmailMessage make_message(const std::string& subject) {
    return EmailMessage(subject, "Body", "Shop <shop@example.com>", {"jane@example.com"});
}

SendgridBackend backend_for(const FaultServer& server, std::size_t in_flight = 1) {
    Settings settings;
    settings.api_key = "SG.wire-test";
    settings.host_url = server.url();
    settings.timeout = kTimeout;
    settings.max_in_flight = in_flight;
    settings.retry.initial_backoff = 1ms;
    settings.retry.max_backoff = 2ms;
    BackendOptions options;
    options.fail_silently = true;
    return SendgridBackend(settings, options);
}

/// Counts sendgrid_email_sent emissions while it lives.
struct EmissionCounter {
    std::mutex mutex;
    std::map<std::string, int> by_subject;
    sendgrid_backend::ScopedConnection connection;
    EmissionCounter() {
        connection = sendgrid_backend::sendgrid_email_sent.connect(
            [this](const SendgridBackend&, const EmailMessage& message, bool) {
                std::lock_guard<std::mutex> lock(mutex);
                ++by_subject[message.subject];
            });
    }
};

struct Expectation {
    FaultAction action;
    const char* name;
    SendStatus status;
    int http_status;
};

const Expectation kFaults[] = {
    {FaultAction::accept_late, "answer after the timeout", SendStatus::unknown, 0},
    {FaultAction::close_after_request, "read the request, then close", SendStatus::unknown, 0},
    {FaultAction::reset_after_request, "read the request, then reset", SendStatus::unknown, 0},
    {FaultAction::half_status_line, "half a status line", SendStatus::unknown, 0},
    {FaultAction::half_headers, "half an answer head", SendStatus::unknown, 0},
    {FaultAction::garbage, "garbage instead of HTTP", SendStatus::unknown, 0},
    {FaultAction::half_body, "a 400 head, half its body", SendStatus::rejected, 400},
    {FaultAction::accept_half_body, "a 202 head, half its body", SendStatus::accepted, 202},
};

}  // namespace

TEST_CASE("each fault reaches the server once, on a fresh and on a reused connection",
          "[wire][http]") {
    for (const Expectation& fault : kFaults) {
        for (const bool reused : {false, true}) {
            INFO(fault.name << (reused ? ", reused connection" : ", fresh connection"));
            FaultServer server;
            SendgridBackend backend = backend_for(server);
            EmissionCounter emissions;
            if (reused) {
                EmailMessage warm_up = make_message("warm-up");
                REQUIRE(backend.send_message(warm_up));
            }
            const std::size_t before = server.requests();
            server.push(fault.action, 2 * kTimeout);
            EmailMessage message = make_message("faulty");
            backend.send_message(message);

            CHECK(server.wait_for_requests(before + 1));
            std::this_thread::sleep_for(50ms);  // anything libcurl might still send, lands
            CHECK(server.requests() == before + 1);
            CHECK(message.outcome.status == fault.status);
            CHECK(message.outcome.http_status == fault.http_status);
            CHECK(message.outcome.attempts == 1);
            CHECK(message.outcome.tries == 1);
            CHECK(emissions.by_subject["faulty"] == 1);
            if (fault.status == SendStatus::unknown) {
                CHECK(message.outcome.maybe_delivered());
                CHECK(message.outcome.transport_error != TransportError::none);
                CHECK(message.outcome.failure_reason.find("SendGrid may have accepted it") !=
                      std::string::npos);
            }
            // The backend still works afterwards.
            EmailMessage next = make_message("next");
            CHECK(backend.send_message(next));
        }
    }
}

TEST_CASE("a timeout on a reused keep-alive connection is unknown, not a refused connection",
          "[wire][http]") {
    // libcurl reports CONNECT_TIME 0 for a reused connection; 0.1.x took that as "never
    // connected" and sent the message again.
    FaultServer server;
    SendgridBackend backend = backend_for(server);
    EmailMessage first = make_message("first");
    REQUIRE(backend.send_message(first));
    server.push(FaultAction::accept_late, 2 * kTimeout);
    EmailMessage second = make_message("second");
    CHECK_FALSE(backend.send_message(second));
    CHECK(second.outcome.status == SendStatus::unknown);
    CHECK(second.outcome.transport_error == TransportError::timeout);
    std::this_thread::sleep_for(3 * kTimeout);  // the late answer goes out; no re-send follows
    CHECK(server.requests() == 2);
    CHECK(server.connections() == 1);
    CHECK(server.accepted() == 2);  // the server did accept it: "unknown" was the honest answer
}

TEST_CASE("in a batch, slow and broken requests each reach the server once", "[wire][http]") {
    const std::size_t in_flight = GENERATE(1, 8);
    INFO(in_flight << " in flight");
    FaultServer server;
    SendgridBackend backend = backend_for(server, in_flight);
    EmissionCounter emissions;
    // Warm up the connections so that the faults land on reused ones too.
    std::vector<EmailMessage> warm_up;
    for (int i = 0; i < 8; ++i) warm_up.push_back(make_message("warm-" + std::to_string(i)));
    REQUIRE(backend.send_messages(warm_up) == warm_up.size());
    const std::size_t before = server.requests();

    server.push(FaultAction::accept_late, 2 * kTimeout);
    server.push(FaultAction::close_after_request);
    server.push(FaultAction::accept_late, 2 * kTimeout);
    server.push(FaultAction::reset_after_request);
    server.push(FaultAction::rate_limited);  // the only one that is retried
    server.push(FaultAction::accept_late, 2 * kTimeout);
    server.push(FaultAction::garbage);
    std::vector<EmailMessage> batch;
    for (int i = 0; i < 20; ++i) batch.push_back(make_message("m" + std::to_string(i)));
    const std::size_t accepted = backend.send_messages(batch);

    std::this_thread::sleep_for(3 * kTimeout);  // late answers and stray re-sends land
    // 20 messages + one retry of the 429: nothing else.
    CHECK(server.requests() == before + 21);
    int unknown = 0;
    int attempts = 0;
    for (const auto& message : batch) {
        CHECK(emissions.by_subject[message.subject] == 1);
        if (message.outcome.status == SendStatus::unknown) ++unknown;
        attempts += message.outcome.attempts;
    }
    CHECK(unknown == 6);
    CHECK(accepted == 14);
    CHECK(attempts == 21);  // what the server counted is what the outcomes say went out
}

TEST_CASE("connection refused: retried (nothing went out), attempts 0", "[wire][http]") {
    std::string url;
    {
        FaultServer closed;
        url = closed.url();
    }  // nothing listens there now
    Settings settings;
    settings.api_key = "SG.wire-test";
    settings.host_url = url;
    settings.retry.max_tries = 3;
    settings.retry.initial_backoff = 1ms;
    BackendOptions options;
    options.fail_silently = true;
    SendgridBackend backend(settings, options);
    EmailMessage message = make_message("nowhere");
    CHECK_FALSE(backend.send_message(message));
    CHECK(message.outcome.status == SendStatus::transport_failed);
    CHECK(message.outcome.transport_error == TransportError::connection_failed);
    CHECK(message.outcome.attempts == 0);
    CHECK(message.outcome.tries == 3);
}

TEST_CASE("a 429 is retried and the retry is counted", "[wire][http]") {
    FaultServer server;
    SendgridBackend backend = backend_for(server);
    server.push(FaultAction::rate_limited);
    EmailMessage message = make_message("patient");
    CHECK(backend.send_message(message));
    CHECK(server.requests() == 2);
    CHECK(message.outcome.attempts == 2);
    CHECK(message.outcome.tries == 2);
}

TEST_CASE("a 400 is final and reaches the server once", "[wire][http]") {
    FaultServer server;
    SendgridBackend backend = backend_for(server);
    server.push(FaultAction::reject);
    EmailMessage message = make_message("refused");
    CHECK_FALSE(backend.send_message(message));
    CHECK(message.outcome.status == SendStatus::rejected);
    CHECK(message.outcome.errors.at(0).field == "from");
    CHECK(server.requests() == 1);
}

TEST_CASE("libcurl's URL parser agrees with the base-URL check", "[wire][settings]") {
    sendgrid_backend::CurlTransport curl;
    for (const char* base :
         {"https://api.sendgrid.com", "http://127.0.0.1:8080", "http://[::1]:8080",
          "https://proxy.example.com/send%20grid", "http://host.example.com.:443/base"}) {
        INFO(base);
        sendgrid_backend::detail::BaseUrl url;
        REQUIRE(sendgrid_backend::detail::base_url_problem(base, url) == nullptr);
        CHECK(curl.url_problem(url.mail_send_url()).empty());
    }
    CHECK_FALSE(curl.url_problem("ftp://example.com/v3/mail/send").empty());
    CHECK_FALSE(curl.url_problem("https://example.com/v3/mail/send?x=1").empty());
    CHECK_FALSE(curl.url_problem("https://user@example.com/v3/mail/send").empty());
    CHECK_FALSE(curl.url_problem("https://[::1/v3/mail/send").empty());
    CHECK_FALSE(curl.url_problem("not a url").empty());
}

namespace {

/// The variables libcurl reads for proxies; cleared while it lives, then restored.
class ProxyEnvironment {
  public:
    static constexpr const char* names[] = {"http_proxy",  "HTTP_PROXY", "https_proxy",
                                            "HTTPS_PROXY", "all_proxy",  "ALL_PROXY",
                                            "no_proxy",    "NO_PROXY"};
    ProxyEnvironment() {
        for (const char* name : names) {
            const char* value = std::getenv(name);
            saved_.emplace_back(
                name, value != nullptr ? std::optional<std::string>(value) : std::nullopt);
            ::unsetenv(name);
        }
    }
    ~ProxyEnvironment() {
        for (const auto& [name, value] : saved_) {
            if (value) {
                ::setenv(name, value->c_str(), 1);
            } else {
                ::unsetenv(name);
            }
        }
    }
    ProxyEnvironment(const ProxyEnvironment&) = delete;
    ProxyEnvironment& operator=(const ProxyEnvironment&) = delete;

  private:
    std::vector<std::pair<const char*, std::optional<std::string>>> saved_;
};

struct ProxyCase {
    std::vector<std::pair<const char*, const char*>> variables;  ///< "PROXY": the proxy's URL
    bool https;
    bool through_proxy;
};

}  // namespace

TEST_CASE("the proxy environment is honoured as libcurl reads it", "[wire][proxy]") {
    // Counted where the connection lands: the target server or the proxy. An https request
    // through a proxy starts with CONNECT; straight to the (plain) target, its TLS handshake
    // fails, but the connection was made there.
    const std::vector<ProxyCase> cases = {
        {{}, false, false},
        {{{"http_proxy", "PROXY"}}, false, true},
        {{{"HTTP_PROXY", "PROXY"}}, false, false},  // not read in capitals for http
        {{{"all_proxy", "PROXY"}}, false, true},
        {{{"ALL_PROXY", "PROXY"}}, false, true},
        {{{"http_proxy", ""}, {"all_proxy", "PROXY"}}, false, true},  // empty is unset
        {{{"https_proxy", "PROXY"}}, false, false},
        {{{"http_proxy", "PROXY"}, {"no_proxy", "127.0.0.1"}}, false, false},
        {{{"http_proxy", "PROXY"}, {"NO_PROXY", "127.0.0.1"}}, false, false},
        {{{"http_proxy", "PROXY"}, {"no_proxy", "*"}}, false, false},
        {{{"http_proxy", "PROXY"}, {"no_proxy", "example.com"}}, false, true},
        {{{"https_proxy", "PROXY"}}, true, true},
        {{{"HTTPS_PROXY", "PROXY"}}, true, true},
        {{{"http_proxy", "PROXY"}}, true, false},
        {{{"all_proxy", "PROXY"}}, true, true},
        {{{"https_proxy", "PROXY"}, {"no_proxy", "127.0.0.1"}}, true, false},
    };
    for (std::size_t k = 0; k < cases.size(); ++k) {
        const ProxyCase& c = cases[k];
        ProxyEnvironment clean;
        FaultServer target;
        FaultServer proxy;
        std::string description = c.https ? "https:" : "http:";
        for (const auto& [name, value] : c.variables) {
            const std::string text = std::string(value) == "PROXY" ? proxy.url() : value;
            ::setenv(name, text.c_str(), 1);
            description += std::string(" ") + name + "=" + text;
        }
        INFO(description);
        // Made after the environment is set: a transport reads it when it first sends.
        Settings settings;
        settings.api_key = "SG.wire-test";
        settings.host_url = c.https ? "https" + target.url().substr(4) : target.url();
        settings.timeout = 300ms;
        settings.retry.max_tries = 1;
        BackendOptions options;
        options.fail_silently = true;
        const SendgridBackend backend(settings, options);
        EmailMessage message = make_message("proxy case " + std::to_string(k));
        backend.send_message(message);
        CHECK(proxy.connections() == (c.through_proxy ? 1u : 0u));
        CHECK(target.connections() == (c.through_proxy ? 0u : 1u));
        if (!c.https) CHECK(message.outcome.status == SendStatus::accepted);
    }
}

}  // namespace wire_test
