// 08 — the signals guide, 3 of 8: metrics and analytics. Per-day counters of sent and failed
// mail, failure reasons by kind, template usage and recipient domains, read back with
// get_email_metrics(date) (metrics.hpp); and, past SendGrid's 202, how many recipients were
// delivered to, bounced and opened each day, counted from sendgrid_status_changed into the
// same store.
//
//   08_guide_metrics                      counts in this process (InMemoryMetricsStore)
//   08_guide_metrics --redis URL --day D --prefix P --send N
//                                         one of many sender processes sharing counters in Redis
//   08_guide_metrics --redis URL --day D --prefix P --expect-sent S --expect-failed F
//                                         reads the shared counters and checks them
//
// Each sender runs the whole loop on this machine: the fake SendGrid posts its signed Event
// Webhook batches to a receiver on 127.0.0.1, whose EventWebhook feeds a StatusTracker.
#include <sendgrid_backend/metrics.hpp>
#include <sendgrid_backend/redis/metrics.hpp>
#include <sendgrid_backend/sendgrid_backend.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/transport/curl.hpp>
#include <sendgrid_backend/webhook.hpp>

#include <httplib.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace sg = sendgrid_backend;

namespace {

/// Counts, per day, the recipients that became delivered, bounced (hard) and opened: each a
/// real change, so SendGrid's copies of an event count once.
sg::Connection count_statuses(std::shared_ptr<sg::MetricsStore> store,
                              std::function<std::string()> today) {
    return sg::sendgrid_status_changed.connect(
        [store, today](const std::string&, const std::string& recipient,
                       const sg::RecipientState& before, const sg::RecipientState& after,
                       const sg::StatusEvent&) {
            if (recipient.empty()) return;  // the send itself: counted as sent or failed
            std::vector<std::pair<std::string, std::int64_t>> counts;
            for (const auto state : {sg::DeliveryState::delivered, sg::DeliveryState::bounced}) {
                if (after.state == state && before.state != state) {
                    counts.emplace_back(std::string("status:") + sg::to_string(state), 1);
                }
            }
            if (after.has(sg::engaged_open) && !before.has(sg::engaged_open)) {
                counts.emplace_back("status:opened", 1);
            }
            if (!counts.empty()) store->add(today(), counts);
        });
}

/// The status counters of `day`: "delivered", "bounced", "opened".
std::map<std::string, std::int64_t> status_counts(sg::MetricsStore& store, const std::string& day) {
    std::map<std::string, std::int64_t> counts{{"delivered", 0}, {"bounced", 0}, {"opened", 0}};
    for (const auto& [name, count] : store.counters(day)) {
        if (name.rfind("status:", 0) == 0) counts[name.substr(7)] = count;
    }
    return counts;
}

void print(const sg::EmailMetrics& metrics, const std::map<std::string, std::int64_t>& statuses) {
    std::cout << metrics.date << ": sent " << metrics.sent << ", failed " << metrics.failed
              << " (failure rate " << metrics.failure_rate() * 100 << " %)\n";
    for (const auto& [kind, count] : metrics.failure_reasons) {
        std::cout << "  failure " << kind << ": " << count << '\n';
    }
    for (const auto& [id, count] : metrics.templates)
        std::cout << "  template " << id << ": " << count << '\n';
    for (const auto& [domain, count] : metrics.recipient_domains) {
        std::cout << "  domain " << domain << ": " << count << '\n';
    }
    for (const auto& [state, count] : statuses) std::cout << "  " << state << ": " << count << '\n';
}

/// Sends `count` messages through a backend of its own and waits for their events; every fifth
/// goes to an address the local SendGrid stand-in refuses, every third uses a template. Of the
/// accepted ones, the "gone" addresses (every tenth, from the fourth) bounce and the "reader"
/// ones (every fourth) open the mail; the others are delivered.
void send_some(int count) {
    httplib::Server receiver;  // the Event Webhook's receiving end
    const int port = receiver.bind_to_any_port("127.0.0.1");
    sg::testing::FakeServerOptions fake;
    fake.webhook_url = "http://127.0.0.1:" + std::to_string(port) + "/sendgrid/events";
    fake.webhook.max_batch_wait = std::chrono::milliseconds(50);
    auto starts_with = [](std::string prefix) {
        return [prefix](const sg::testing::EventRecipient& recipient) {
            return recipient.email.rfind(prefix, 0) == 0;
        };
    };
    fake.event_rules.push_back(
        sg::testing::EventRule({"processed", "bounce"}).when(starts_with("gone")));
    fake.event_rules.push_back(
        sg::testing::EventRule({"processed", "delivered", "open"}).when(starts_with("reader")));
    sg::testing::FakeSendgridServer sendgrid(fake);
    sg::testing::Fault refuse(400);
    refuse.times = count;
    sendgrid.push_fault(refuse.for_recipient("bounce@example.org"));

    auto statuses = std::make_shared<sg::StatusTracker>();
    sg::WebhookOptions webhook_options;
    webhook_options.public_key = sendgrid.webhook_public_key();
    webhook_options.statuses = statuses;
    const sg::EventWebhook webhook(webhook_options);
    receiver.Post("/sendgrid/events",
                  [&](const httplib::Request& request, httplib::Response& response) {
                      const sg::HttpHeaders headers(request.headers.begin(), request.headers.end());
                      response.status = webhook.handle(headers, request.body).http_status;
                  });
    std::thread serving([&] { receiver.listen_after_bind(); });

    sg::BackendOptions options;
    options.fail_silently = true;
    options.statuses = statuses;
    const sg::SendgridBackend backend(sendgrid.settings(), options);
    std::vector<sg::EmailMessage> batch;
    for (int i = 0; i < count; ++i) {
        const std::string local = i % 10 == 3 ? "gone" : i % 4 == 0 ? "reader" : "user";
        const std::string to = i % 5 == 4   ? "bounce@example.org"
                               : i % 2 == 0 ? local + std::to_string(i) + "@example.com"
                                            : local + std::to_string(i) + "@example.net";
        batch.emplace_back("Order " + std::to_string(i), "Shipped.", "shop@example.com",
                           std::vector<std::string>{to});
        if (i % 3 == 0) batch.back().template_id = "d-order";
    }
    backend.send_messages(batch);
    for (const sg::EmailMessage& message : batch) {  // 2 events each, 3 for a reader
        if (!message.outcome.accepted()) continue;
        const std::size_t events = message.to.at(0).rfind("reader", 0) == 0 ? 3 : 2;
        if (!sendgrid.wait_for_events(message.outcome.message_id, events)) {
            std::cerr << "the events of " << message.to.at(0) << " did not come\n";
        }
    }
    if (!sendgrid.wait_for_webhook_idle()) std::cerr << "the webhook did not finish\n";
    receiver.stop();
    serving.join();
}

std::string option(int argc, char** argv, const std::string& name, const std::string& fallback) {
    for (int i = 1; i + 1 < argc; ++i) {
        if (argv[i] == name) return argv[i + 1];
    }
    return fallback;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string redis_url = option(argc, argv, "--redis", "");
    const std::string day = option(argc, argv, "--day", sg::utc_date());
    std::shared_ptr<sg::MetricsStore> store;
    if (redis_url.empty()) {
        store = std::make_shared<sg::InMemoryMetricsStore>();
    } else {
        auto redis = std::make_shared<sg::RedisClient>(sg::RedisOptions::from_url(redis_url));
        store = std::make_shared<sg::RedisMetricsStore>(
            redis, option(argc, argv, "--prefix", "email_metrics:"));
    }
    const std::function<std::string()> today = [&day] { return day; };
    sg::EmailMetricsRecorder metrics(store, today);

    const std::string expect_sent = option(argc, argv, "--expect-sent", "");
    if (!expect_sent.empty()) {  // the reading side
        const sg::EmailMetrics metrics_of_day = metrics.get_email_metrics(day);
        const auto statuses = status_counts(*store, day);
        print(metrics_of_day, statuses);
        // One recipient a message: each accepted one ends delivered or bounced.
        const bool ok =
            metrics_of_day.sent == std::stoll(expect_sent) &&
            metrics_of_day.failed == std::stoll(option(argc, argv, "--expect-failed", "-1")) &&
            metrics_of_day.failure_reasons ==
                std::map<std::string, std::int64_t>{{"rejected:400", metrics_of_day.failed}} &&
            statuses.at("delivered") + statuses.at("bounced") == metrics_of_day.sent &&
            statuses.at("bounced") > 0 && statuses.at("opened") > 0 &&
            statuses.at("opened") <= statuses.at("delivered");
        std::cout << (ok ? "shared counters add up\n" : "shared counters do NOT add up\n");
        return ok ? 0 : 1;
    }

    sg::ScopedConnection counting = metrics.connect();  // the guide's track_email_metrics
    sg::ScopedConnection counting_statuses = count_statuses(store, today);
    const int count = std::stoi(option(argc, argv, "--send", "50"));
    send_some(count);
    const sg::EmailMetrics metrics_of_day = metrics.get_email_metrics(day);
    const auto statuses = status_counts(*store, day);
    print(metrics_of_day, statuses);
    if (!redis_url.empty()) return 0;  // other processes count into the same store

    // 50 messages: every fifth refused (10), every third with the template (17, 14 of them
    // sent), the rest to example.com and example.net. Of the 40 sent, 5 bounce ("gone") and 35
    // are delivered, 10 of them opened ("reader").
    const bool ok = metrics_of_day.sent == 40 && metrics_of_day.failed == 10 &&
                    metrics_of_day.failure_reasons ==
                        std::map<std::string, std::int64_t>{{"rejected:400", 10}} &&
                    metrics_of_day.templates.at("d-order") == 14 &&
                    metrics_of_day.recipient_domains.at("example.com") == 20 &&
                    metrics_of_day.recipient_domains.at("example.net") == 20 &&
                    statuses == std::map<std::string, std::int64_t>{
                                    {"delivered", 35}, {"bounced", 5}, {"opened", 10}};
    std::cout << (ok ? "metrics as expected\n" : "metrics NOT as expected\n");
    return ok ? 0 : 1;
}
