// HTTP/2 over TLS against a real nginx (tests/support/nginx.sh, started by a ctest fixture).
// nginx answers `return 202` before reading a request body and then resets the stream, which
// RFC 9113 allows; libcurl 7.88 then reports CURLE_HTTP2_STREAM for a request nginx served.
// A complete 202 head is SendGrid's (here nginx's) answer: every message must come back
// accepted, and nginx's access log must hold exactly one request per message.
#include <sendgrid_backend/backend.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "catch.hpp"

using sendgrid_backend::EmailMessage;
using sendgrid_backend::SendgridBackend;

namespace {

std::string nginx_dir() {
    const char* dir = std::getenv("SENDGRID_BACKEND_NGINX_DIR");
    REQUIRE(dir != nullptr);
    return dir;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

/// request_id -> status of every request nginx logged.
std::map<std::string, std::string> access_log(const std::string& dir) {
    std::map<std::string, std::string> requests;
    std::istringstream lines(read_file(dir + "/access.log"));
    std::string id;
    std::string status;
    while (lines >> id >> status) requests[id] = status;
    return requests;
}

}  // namespace

TEST_CASE("HTTP/2 over TLS: nginx's early 202 and stream reset count as accepted, once each",
          "[http2][http]") {
    const std::string dir = nginx_dir();
    const std::string port = read_file(dir + "/port").substr(0, 5);
    const std::size_t before = access_log(dir).size();

    sendgrid_backend::Settings settings;
    settings.api_key = "SG.http2-test";
    settings.host_url = "https://127.0.0.1:" + std::to_string(std::stoi(port));
    settings.ca_bundle = dir + "/cert.pem";  // trust the fixture's self-signed certificate
    settings.max_in_flight = 16;
    sendgrid_backend::BackendOptions options;
    options.fail_silently = true;
    const SendgridBackend backend(settings, options);

    std::vector<EmailMessage> batch;
    for (int i = 0; i < 1000; ++i) {
        // Bodies of a few KB: nginx answers before it has read them.
        batch.emplace_back("m" + std::to_string(i), std::string(4000, 'x'), "shop@example.com",
                           std::vector<std::string>{"jane@example.com"});
    }
    int emissions = 0;
    sendgrid_backend::ScopedConnection counter = sendgrid_backend::sendgrid_email_sent.connect(
        [&](const SendgridBackend&, const EmailMessage&, bool) { ++emissions; });
    CHECK(backend.send_messages(batch) == batch.size());
    CHECK(emissions == 1000);

    const auto logged = access_log(dir);
    CHECK(logged.size() == before + batch.size());
    std::set<std::string> ids;
    std::size_t cut_short = 0;
    for (const auto& message : batch) {
        INFO(message.subject << ": " << message.outcome.failure_reason);
        CHECK(message.outcome.accepted());
        CHECK(message.outcome.attempts == 1);
        ids.insert(message.outcome.message_id);
        const auto found = logged.find(message.outcome.message_id);
        REQUIRE(found != logged.end());
        CHECK(found->second == "202");
        if (message.outcome.transport_error != sendgrid_backend::TransportError::none) ++cut_short;
    }
    CHECK(ids.size() == batch.size());
    // How many answers libcurl reported as stream errors after the 202 head (0.1.x called
    // these failures): informative, it depends on timing.
    WARN(cut_short << " of 1000 answers came with a stream reset after their 202 head");
}

TEST_CASE("a self-signed server is refused unless its certificate is trusted", "[http2][tls]") {
    const std::string dir = nginx_dir();
    const std::string port = read_file(dir + "/port").substr(0, 5);
    sendgrid_backend::Settings settings;
    settings.api_key = "SG.http2-test";
    settings.host_url = "https://127.0.0.1:" + std::to_string(std::stoi(port));
    settings.retry.max_tries = 3;
    settings.retry.initial_backoff = std::chrono::milliseconds(1);
    sendgrid_backend::BackendOptions options;
    options.fail_silently = true;
    const std::size_t before = access_log(dir).size();
    const SendgridBackend backend(settings, options);
    EmailMessage message("tls", "Body", "shop@example.com", {"jane@example.com"});
    CHECK_FALSE(backend.send_message(message));
    CHECK(message.outcome.status == sendgrid_backend::SendStatus::transport_failed);
    CHECK(message.outcome.transport_error == sendgrid_backend::TransportError::tls);
    CHECK(message.outcome.attempts == 0);  // the handshake failed: no request was written
    CHECK(access_log(dir).size() == before);
}
