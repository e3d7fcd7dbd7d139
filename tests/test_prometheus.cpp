// PrometheusMetrics: a known sequence of sends (accepted, 400, 429 then 202, a timeout, an
// invalid and a cancelled message) through a real backend to FakeSendgridServer, and webhook
// requests good and bad; /metrics scraped over HTTP from prometheus-cpp's Exposer, every value
// checked, and the scrape passed through `promtool check metrics`.
#include <sendgrid_backend/backend.hpp>
#include <sendgrid_backend/prometheus.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/testing/webhook_signer.hpp>
#include <sendgrid_backend/transport/curl.hpp>
#include <sendgrid_backend/webhook.hpp>

#include <prometheus/exposer.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>

#include "catch.hpp"
#include "support/prometheus_text.hpp"

// Its own namespace: the tests are compiled as unity builds (tests/CMakeLists.txt).
namespace prometheus_test {

using namespace std::chrono_literals;
namespace sg = sendgrid_backend;
using sg::testing::FakeSendgridServer;
using sg::testing::Fault;
using test_support::promtool_findings;
using test_support::samples_of;

namespace {

constexpr std::int64_t kNow = 1'700'000'000;

sg::EmailMessage mail(const std::string& subject, const std::string& to = "jane@example.com") {
    return sg::EmailMessage(subject, "Body", "Shop <shop@example.com>", {to});
}

bool send(sg::SendgridBackend& backend, sg::EmailMessage message) {
    return backend.send_message(message);
}

/// A series of `name` with the test's constant label and, when given, one more.
std::string series(const std::string& name, const std::string& label = "",
                   const std::string& value = "") {
    std::string text = name + "{service=\"test\"";
    if (!label.empty()) text += "," + label + "=\"" + value + "\"";
    return text + "}";
}

/// Checks every sample of the families in `expected_families` against `expected` (0 where it
/// says nothing): a series counted by mistake fails as surely as one not counted.
void check_family(const std::map<std::string, double>& samples, const std::string& family,
                  const std::map<std::string, double>& expected) {
    std::size_t seen = 0;
    for (const auto& [name, value] : samples) {
        if (name.rfind(family + "{", 0) != 0) continue;
        ++seen;
        const auto wanted = expected.find(name);
        INFO(name);
        CHECK(value == (wanted == expected.end() ? 0.0 : wanted->second));
    }
    CHECK(seen >= expected.size());
    for (const auto& [name, value] : expected) {
        INFO(name);
        CHECK(samples.count(name) == 1);
    }
}

}  // namespace

TEST_CASE("/metrics after a known sequence of sends and webhook requests", "[prometheus][http]") {
    FakeSendgridServer server;
    sg::Settings settings = server.settings();
    settings.retry.initial_backoff = 1ms;
    settings.retry.max_backoff = 5ms;
    settings.timeout = 5000ms;  // ample, even under a sanitizer on a busy machine
    sg::BackendOptions quietly;
    quietly.fail_silently = true;
    sg::SendgridBackend backend(settings, quietly);
    settings.timeout = 1000ms;  // for the one send meant to time out
    sg::SendgridBackend impatient(settings, quietly);

    sg::PrometheusOptions options;
    options.constant_labels = {{"service", "test"}};
    sg::PrometheusMetrics metrics(options);
    prometheus::Exposer exposer("127.0.0.1:0");
    exposer.RegisterCollectable(metrics.collectable());
    REQUIRE(exposer.GetListeningPorts().size() == 1);

    sg::ScopedConnection cancel =
        sg::sendgrid_pre_send.connect([](const sg::SendgridBackend&, sg::EmailMessage& message) {
            if (message.subject == "cancelled") throw sg::CancelSend("unsubscribed");
        });

    // One at a time, so that each fault meets the message it is meant for.
    CHECK(send(backend, mail("accepted")));
    server.push_fault(Fault(400));
    CHECK_FALSE(send(backend, mail("rejected")));
    Fault rate_limited(429);
    rate_limited.retry_after_seconds = 0;
    server.push_fault(rate_limited);
    CHECK(send(backend, mail("429 then 202")));
    Fault slow;
    slow.delay = 3000ms;
    server.push_fault(slow);
    CHECK_FALSE(send(impatient, mail("timeout")));
    CHECK_FALSE(send(backend, mail("invalid", "not an address")));
    CHECK_FALSE(send(backend, mail("cancelled")));
    CHECK(server.wait_for_requests(5));  // 202, 400, 429, 202, the slow one

    sg::testing::WebhookSigner signer;
    sg::WebhookOptions webhook_options;
    webhook_options.public_key = signer.public_key_base64();
    webhook_options.now = [] { return kNow; };
    webhook_options.max_body_bytes = 4096;
    const sg::EventWebhook webhook(webhook_options);
    const std::string batch = R"([{"event":"delivered","sg_event_id":"e1"},
                                  {"event":"open","sg_event_id":"e2"},
                                  {"event":"bounce","sg_event_id":"e3"}])";
    CHECK(webhook.handle(signer.headers(batch, kNow), batch).accepted());
    CHECK(webhook.handle(signer.headers(batch, kNow), batch).duplicates == 3);  // replayed
    sg::HttpHeaders forged = signer.headers(batch, kNow);
    const std::string other = R"([{"event":"click","sg_event_id":"e9"}])";
    CHECK(webhook.handle(forged, other).refusal == sg::WebhookRefusal::signature_mismatch);
    CHECK(webhook.handle(signer.headers(batch, kNow - 3600), batch).refusal ==
          sg::WebhookRefusal::stale_timestamp);
    const std::string huge(5000, ' ');
    CHECK(webhook.handle(signer.headers(huge, kNow), huge).refusal ==
          sg::WebhookRefusal::body_too_large);

    httplib::Client client("127.0.0.1", exposer.GetListeningPorts()[0]);
    const auto scrape = client.Get("/metrics");
    REQUIRE(scrape);
    REQUIRE(scrape->status == 200);
    const std::string& text = scrape->body;
    const auto samples = samples_of(text);

    check_family(samples, "sendgrid_messages_total",
                 {{series("sendgrid_messages_total", "outcome", "accepted"), 2},
                  {series("sendgrid_messages_total", "outcome", "rejected"), 1},
                  {series("sendgrid_messages_total", "outcome", "transport_failed"), 0},
                  {series("sendgrid_messages_total", "outcome", "unknown"), 1},
                  {series("sendgrid_messages_total", "outcome", "invalid"), 1},
                  {series("sendgrid_messages_total", "outcome", "cancelled"), 1}});
    check_family(samples, "sendgrid_requests_total",
                 {{series("sendgrid_requests_total", "status", "202"), 2},
                  {series("sendgrid_requests_total", "status", "400"), 1},
                  {series("sendgrid_requests_total", "status", "429"), 1},
                  {series("sendgrid_requests_total", "status", "timeout"), 1}});
    check_family(samples, "sendgrid_rate_limited_total",
                 {{series("sendgrid_rate_limited_total"), 1}});
    // Four messages were handed to the transport: 1 + 1 + 2 + 1 tries.
    check_family(samples, "sendgrid_send_tries_bucket",
                 {{series("sendgrid_send_tries_bucket", "le", "1"), 3},
                  {series("sendgrid_send_tries_bucket", "le", "2"), 4},
                  {series("sendgrid_send_tries_bucket", "le", "3"), 4},
                  {series("sendgrid_send_tries_bucket", "le", "4"), 4},
                  {series("sendgrid_send_tries_bucket", "le", "5"), 4},
                  {series("sendgrid_send_tries_bucket", "le", "6"), 4},
                  {series("sendgrid_send_tries_bucket", "le", "8"), 4},
                  {series("sendgrid_send_tries_bucket", "le", "10"), 4},
                  {series("sendgrid_send_tries_bucket", "le", "+Inf"), 4}});
    CHECK(samples.at(series("sendgrid_send_tries_count")) == 4);
    CHECK(samples.at(series("sendgrid_send_tries_sum")) == 5);
    CHECK(samples.at(series("sendgrid_send_duration_seconds_count")) == 4);
    CHECK(samples.at(series("sendgrid_send_duration_seconds_bucket", "le", "+Inf")) == 4);
    CHECK(samples.at(series("sendgrid_send_duration_seconds_bucket", "le", "60")) == 4);
    CHECK(samples.at(series("sendgrid_send_duration_seconds_bucket", "le", "0.25")) <= 3);
    CHECK(samples.at(series("sendgrid_send_duration_seconds_sum")) >= 1.0);  // the timeout
    CHECK(samples.at(series("sendgrid_send_duration_seconds_sum")) < 30);

    check_family(samples, "sendgrid_webhook_events_total",
                 {{series("sendgrid_webhook_events_total", "event", "delivered"), 1},
                  {series("sendgrid_webhook_events_total", "event", "open"), 1},
                  {series("sendgrid_webhook_events_total", "event", "bounce"), 1}});
    check_family(samples, "sendgrid_webhook_requests_total",
                 {{series("sendgrid_webhook_requests_total", "result", "verified"), 1},
                  {series("sendgrid_webhook_requests_total", "result", "replayed"), 1},
                  {series("sendgrid_webhook_requests_total", "result", "signature_mismatch"), 1},
                  {series("sendgrid_webhook_requests_total", "result", "stale_timestamp"), 1},
                  {series("sendgrid_webhook_requests_total", "result", "body_too_large"), 1}});
    check_family(samples, "sendgrid_webhook_duplicate_events_total",
                 {{series("sendgrid_webhook_duplicate_events_total"), 3}});

    // Each family with its HELP and TYPE; promtool's linter finds nothing in the scrape.
    for (const char* family :
         {"sendgrid_messages_total", "sendgrid_requests_total", "sendgrid_rate_limited_total",
          "sendgrid_send_duration_seconds", "sendgrid_send_tries", "sendgrid_webhook_events_total",
          "sendgrid_webhook_requests_total", "sendgrid_webhook_duplicate_events_total"}) {
        INFO(family);
        CHECK(text.find(std::string("# HELP ") + family + " ") != std::string::npos);
        CHECK(text.find(std::string("# TYPE ") + family + " ") != std::string::npos);
    }
    CHECK(promtool_findings(text).empty());
    // text(), for applications with their own HTTP server, says the same (the Exposer adds
    // its own exposer_* families to the scrape).
    for (const auto& [name, value] : samples_of(metrics.text())) {
        INFO(name);
        CHECK(samples.count(name) == 1);
        if (samples.count(name) == 1) CHECK(samples.at(name) == value);
    }
}

TEST_CASE("unsigned webhook requests are counted as such, refused ones by their refusal",
          "[prometheus]") {
    sg::PrometheusMetrics metrics;
    sg::WebhookOptions options;
    options.allow_unsigned = true;
    const sg::EventWebhook webhook(options);
    CHECK(webhook.handle({}, R"([{"event":"processed"},{"event":"made_up"}])").accepted());
    CHECK(webhook.handle({}, "not json").refusal == sg::WebhookRefusal::malformed_body);
    const auto samples = samples_of(metrics.text());
    CHECK(samples.at("sendgrid_webhook_requests_total{result=\"unsigned\"}") == 1);
    CHECK(samples.at("sendgrid_webhook_requests_total{result=\"verified\"}") == 0);
    CHECK(samples.at("sendgrid_webhook_requests_total{result=\"malformed_body\"}") == 1);
    CHECK(samples.at("sendgrid_webhook_events_total{event=\"processed\"}") == 1);
    CHECK(samples.at("sendgrid_webhook_events_total{event=\"unknown\"}") == 1);  // never its name
    CHECK(metrics.text().find("made_up") == std::string::npos);
}

TEST_CASE("every try of a message is counted, by status or transport error", "[prometheus]") {
    sg::PrometheusMetrics metrics;
    sg::EmailMessage message = mail("retried");
    message.outcome.status = sg::SendStatus::transport_failed;
    message.outcome.transport_error = sg::TransportError::connection_failed;
    message.outcome.tries = 4;
    message.outcome.earlier_tries = {{429, sg::TransportError::none},
                                     {503, sg::TransportError::none},
                                     {0, sg::TransportError::tls}};
    message.outcome.duration = 2500ms;
    sg::testing::FakeSendgridServer server;  // only for a backend to send the signal as
    const sg::SendgridBackend backend(server.settings());
    sg::sendgrid_email_sent.send(backend, message, true);
    message.outcome = {};
    message.outcome.status = sg::SendStatus::rejected;
    message.outcome.http_status = 418;  // undocumented: counted by its class
    message.outcome.tries = 1;
    sg::sendgrid_email_sent.send(backend, message, true);
    message.outcome.http_status = 999;  // no HTTP status at all
    sg::sendgrid_email_sent.send(backend, message, true);

    const auto samples = samples_of(metrics.text());
    const auto requests = [&](const char* status) {
        return samples.at(std::string("sendgrid_requests_total{status=\"") + status + "\"}");
    };
    CHECK(requests("429") == 1);
    CHECK(requests("503") == 1);
    CHECK(requests("tls") == 1);
    CHECK(requests("connection_failed") == 1);
    CHECK(requests("4xx") == 1);
    CHECK(requests("other_status") == 1);
    CHECK(samples.at("sendgrid_rate_limited_total") == 1);
    CHECK(samples.at("sendgrid_messages_total{outcome=\"transport_failed\"}") == 1);
    CHECK(samples.at("sendgrid_messages_total{outcome=\"rejected\"}") == 2);
    CHECK(samples.at("sendgrid_send_duration_seconds_bucket{le=\"2.5\"}") == 3);
    CHECK(samples.at("sendgrid_send_duration_seconds_bucket{le=\"1\"}") == 2);  // 0 s each
    CHECK(samples.at("sendgrid_send_duration_seconds_sum") == 2.5);
    CHECK(samples.at("sendgrid_send_tries_bucket{le=\"4\"}") == 3);
    CHECK(samples.at("sendgrid_send_tries_bucket{le=\"3\"}") == 2);
}

TEST_CASE("handlers from many threads: every send counted once", "[prometheus][threading]") {
    sg::PrometheusMetrics metrics;
    sg::testing::FakeSendgridServer server;
    const sg::SendgridBackend backend(server.settings());
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            sg::EmailMessage message = mail("counted");
            message.outcome.status = sg::SendStatus::accepted;
            message.outcome.http_status = 202;
            message.outcome.tries = 1;
            for (int i = 0; i < 2500; ++i) sg::sendgrid_email_sent.send(backend, message, false);
        });
    }
    std::thread scraper([&] {
        for (int i = 0; i < 20; ++i) CHECK_FALSE(metrics.text().empty());
    });
    for (auto& thread : threads) thread.join();
    scraper.join();
    const auto samples = samples_of(metrics.text());
    CHECK(samples.at("sendgrid_messages_total{outcome=\"accepted\"}") == 10000);
    CHECK(samples.at("sendgrid_requests_total{status=\"202\"}") == 10000);
    CHECK(samples.at("sendgrid_send_tries_count") == 10000);
}

TEST_CASE("a PrometheusMetrics counts only while it lives; collectors outlive it safely",
          "[prometheus]") {
    sg::testing::FakeSendgridServer server;
    const sg::SendgridBackend backend(server.settings());
    sg::EmailMessage message = mail("x");
    message.outcome.status = sg::SendStatus::accepted;
    std::shared_ptr<prometheus::Collectable> kept;
    {
        sg::PrometheusMetrics metrics;
        kept = metrics.collectable();
        sg::sendgrid_email_sent.send(backend, message, false);
    }
    sg::sendgrid_email_sent.send(backend, message, false);  // after: not counted, no crash
    const auto families = kept->Collect();
    REQUIRE(!families.empty());
    CHECK(families[0].name == "sendgrid_messages_total");
    CHECK(families[0].metric[0].counter.value == 1);
}

TEST_CASE("options are checked, naming the option", "[prometheus]") {
    const auto refused = [](sg::PrometheusOptions options, const std::string& words) {
        try {
            sg::PrometheusMetrics metrics(options);
            FAIL("accepted");
        } catch (const sg::ImproperlyConfigured& error) {
            INFO(error.what());
            CHECK(std::string(error.what()).find(words) != std::string::npos);
        }
    };
    sg::PrometheusOptions options;
    options.duration_buckets = {1, 0.5};
    refused(options, "PrometheusOptions::duration_buckets");
    options = {};
    options.tries_buckets = {0};
    refused(options, "PrometheusOptions::tries_buckets");
    options = {};
    options.constant_labels = {{"status", "x"}};
    refused(options, "PrometheusOptions::constant_labels");
    options.constant_labels = {{"bad-name", "x"}};
    refused(options, "no Prometheus label name");
    options.constant_labels = {{"__reserved", "x"}};
    refused(options, "no Prometheus label name");
    options.constant_labels = {{"service", "a"}, {"service", "b"}};  // promtool: duplicate label
    refused(options, "twice");
    options.constant_labels = {{"service", "\xff\xfe"}};  // promtool: invalid label value
    refused(options, "not UTF-8");
}

TEST_CASE("a try kept both as earlier and as final is counted once", "[prometheus]") {
    // An outcome interrupted by an error may keep its last try in earlier_tries as well.
    sg::PrometheusMetrics metrics;
    sg::EmailMessage message = mail("interrupted");
    message.outcome.status = sg::SendStatus::rejected;
    message.outcome.http_status = 429;
    message.outcome.tries = 2;
    message.outcome.earlier_tries = {{429, sg::TransportError::none},
                                     {429, sg::TransportError::none}};
    sg::testing::FakeSendgridServer server;
    const sg::SendgridBackend backend(server.settings());
    sg::sendgrid_email_sent.send(backend, message, true);
    CHECK(samples_of(metrics.text()).at("sendgrid_requests_total{status=\"429\"}") == 2);
}

TEST_CASE("a sendgrid_webhook_handled handler that throws goes to on_result_handler_error",
          "[prometheus][webhook]") {
    sg::ScopedConnection careless =
        sg::sendgrid_webhook_handled.connect([](const sg::EventWebhook&, const sg::WebhookResult&) {
            throw std::runtime_error("oops");
        });
    sg::WebhookOptions options;
    options.allow_unsigned = true;
    int reported = 0;
    options.on_result_handler_error = [&](const sg::WebhookResult& result, std::exception_ptr) {
        CHECK(result.accepted());
        ++reported;
    };
    const sg::EventWebhook webhook(options);
    CHECK(webhook.handle({}, R"([{"event":"open"}])").http_status == 200);  // the answer stands
    CHECK(reported == 1);
}

TEST_CASE("one PrometheusMetrics at a time: a second would count every send twice",
          "[prometheus]") {
    {
        const sg::PrometheusMetrics first;
        try {
            const sg::PrometheusMetrics second;
            FAIL("a second one was made");
        } catch (const sg::ImproperlyConfigured& error) {
            CHECK(error.setting() == "PrometheusMetrics");
            CHECK(std::string(error.what()).find("alive already") != std::string::npos);
        }
        CHECK(first.text().find("sendgrid_messages_total") != std::string::npos);
    }
    const sg::PrometheusMetrics after;  // the first is gone: allowed again
    CHECK_FALSE(after.text().empty());
}

}  // namespace prometheus_test
