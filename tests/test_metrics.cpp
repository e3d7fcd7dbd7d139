// Email metrics per day: what the recorder counts, how a day reads back, and that the in-memory
// store adds up under threads.
#include <sendgrid_backend/backend.hpp>
#include <sendgrid_backend/metrics.hpp>
#include <sendgrid_backend/testing/outbox.hpp>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"

using sendgrid_backend::EmailMessage;
using sendgrid_backend::EmailMetricsRecorder;
using sendgrid_backend::InMemoryMetricsStore;
using sendgrid_backend::SendStatus;

namespace {

EmailMessage sent_to(std::vector<std::string> to, std::string template_id = "") {
    EmailMessage message("s", "b", "shop@example.com", std::move(to));
    message.template_id = std::move(template_id);
    message.outcome.status = SendStatus::accepted;
    return message;
}

EmailMessage failed(
    SendStatus status, int http_status = 0,
    sendgrid_backend::TransportError error = sendgrid_backend::TransportError::none) {
    EmailMessage message("s", "b", "shop@example.com", {"jane@example.com"});
    message.outcome.status = status;
    message.outcome.http_status = http_status;
    message.outcome.transport_error = error;
    return message;
}

}  // namespace

TEST_CASE("the recorder counts sends, failures by kind, templates and domains", "[metrics]") {
    auto store = std::make_shared<InMemoryMetricsStore>();
    std::string day = "2026-11-29";
    EmailMetricsRecorder metrics(store, [&] { return day; });
    metrics.record(sent_to({"a@Example.com", "Bob <bob@example.COM>", "c@other.org"}, "d-1"),
                   false);
    metrics.record(sent_to({"x@other.org"}, "d-1"), false);
    metrics.record(sent_to({"y@third.net"}), false);
    metrics.record(failed(SendStatus::rejected, 400), true);
    metrics.record(failed(SendStatus::rejected, 400), true);
    metrics.record(failed(SendStatus::unknown, 0, sendgrid_backend::TransportError::timeout), true);
    metrics.record(failed(SendStatus::transport_failed, 0,
                          sendgrid_backend::TransportError::connection_failed),
                   true);
    metrics.record(failed(SendStatus::invalid), true);
    day = "2026-11-30";
    metrics.record(sent_to({"late@example.com"}), false);

    const auto today = metrics.get_email_metrics("2026-11-29");
    CHECK(today.date == "2026-11-29");
    CHECK(today.sent == 3);
    CHECK(today.failed == 5);
    CHECK(today.failure_rate() == Approx(5.0 / 8.0));
    CHECK(today.failure_reasons ==
          std::map<std::string, std::int64_t>{{"rejected:400", 2},
                                              {"unknown:timeout", 1},
                                              {"transport_failed:connection_failed", 1},
                                              {"invalid", 1}});
    CHECK(today.templates == std::map<std::string, std::int64_t>{{"d-1", 2}});
    CHECK(today.recipient_domains == std::map<std::string, std::int64_t>{
                                         {"example.com", 2}, {"other.org", 2}, {"third.net", 1}});
    CHECK(metrics.get_email_metrics("2026-11-30").sent == 1);
    const auto empty = metrics.get_email_metrics("2020-01-01");
    CHECK(empty.sent == 0);
    CHECK(empty.failure_rate() == 0.0);
}

TEST_CASE("connect() counts every emission, once however often it is called", "[metrics]") {
    auto store = std::make_shared<InMemoryMetricsStore>();
    EmailMetricsRecorder metrics(store, [] { return std::string("d"); });
    sendgrid_backend::ScopedConnection first = metrics.connect();
    sendgrid_backend::ScopedConnection second = metrics.connect();  // same dispatch_uid
    sendgrid_backend::Settings settings;
    settings.api_key = "SG.metrics";
    sendgrid_backend::BackendOptions options;
    options.fail_silently = true;
    options.transport = std::make_shared<sendgrid_backend::testing::OutboxTransport>();
    const sendgrid_backend::SendgridBackend backend(settings, options);
    std::vector<EmailMessage> batch{EmailMessage("a", "b", "shop@example.com", {"a@example.com"}),
                                    EmailMessage("c", "d", "shop@example.com", {"nobody"})};
    backend.send_messages(batch);
    const auto day = metrics.get_email_metrics("d");
    CHECK(day.sent == 1);
    CHECK(day.failed == 1);
    CHECK(day.failure_reasons.at("invalid") == 1);
}

TEST_CASE("the in-memory store adds up under 4 threads", "[metrics][threading]") {
    auto store = std::make_shared<InMemoryMetricsStore>();
    EmailMetricsRecorder metrics(store, [] { return std::string("d"); });
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 1000; ++i) {
                metrics.record(sent_to({"a@example.com"}), false);
                metrics.record(failed(SendStatus::rejected, 500), true);
            }
        });
    }
    for (auto& thread : threads) thread.join();
    const auto day = metrics.get_email_metrics("d");
    CHECK(day.sent == 4000);
    CHECK(day.failed == 4000);
    CHECK(day.recipient_domains.at("example.com") == 4000);
    CHECK(day.failure_reasons.at("rejected:500") == 4000);
}
