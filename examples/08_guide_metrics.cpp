// 08 — the signals guide, 3 of 8: metrics and analytics. Per-day counters of sent and failed
// mail, failure reasons by kind, template usage and recipient domains, read back with
// get_email_metrics(date) (metrics.hpp).
//
//   08_guide_metrics                      counts in this process (InMemoryMetricsStore)
//   08_guide_metrics --redis URL --day D --prefix P --send N
//                                         one of many sender processes sharing counters in Redis
//   08_guide_metrics --redis URL --day D --prefix P --expect-sent S --expect-failed F
//                                         reads the shared counters and checks them
#include <sendgrid_backend/metrics.hpp>
#include <sendgrid_backend/redis/metrics.hpp>
#include <sendgrid_backend/sendgrid_backend.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace sg = sendgrid_backend;

namespace {

void print(const sg::EmailMetrics& metrics) {
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
}

/// Sends `count` messages through a backend of its own; every fifth goes to an address the
/// local SendGrid stand-in refuses, every third uses a template.
void send_some(int count) {
    sg::testing::FakeSendgridServer sendgrid;
    sg::testing::Fault refuse(400);
    refuse.times = count;
    sendgrid.push_fault(refuse.for_recipient("bounce@example.org"));
    sg::BackendOptions options;
    options.fail_silently = true;
    const sg::SendgridBackend backend(sendgrid.settings(), options);
    std::vector<sg::EmailMessage> batch;
    for (int i = 0; i < count; ++i) {
        const std::string to = i % 5 == 4   ? "bounce@example.org"
                               : i % 2 == 0 ? "user" + std::to_string(i) + "@example.com"
                                            : "user" + std::to_string(i) + "@example.net";
        batch.emplace_back("Order " + std::to_string(i), "Shipped.", "shop@example.com",
                           std::vector<std::string>{to});
        if (i % 3 == 0) batch.back().template_id = "d-order";
    }
    backend.send_messages(batch);
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
    sg::EmailMetricsRecorder metrics(store, [&day] { return day; });

    const std::string expect_sent = option(argc, argv, "--expect-sent", "");
    if (!expect_sent.empty()) {  // the reading side
        const sg::EmailMetrics today = metrics.get_email_metrics(day);
        print(today);
        const bool ok = today.sent == std::stoll(expect_sent) &&
                        today.failed == std::stoll(option(argc, argv, "--expect-failed", "-1")) &&
                        today.failure_reasons ==
                            std::map<std::string, std::int64_t>{{"rejected:400", today.failed}};
        std::cout << (ok ? "shared counters add up\n" : "shared counters do NOT add up\n");
        return ok ? 0 : 1;
    }

    sg::ScopedConnection counting = metrics.connect();  // the guide's track_email_metrics
    const int count = std::stoi(option(argc, argv, "--send", "50"));
    send_some(count);
    const sg::EmailMetrics today = metrics.get_email_metrics(day);
    print(today);
    if (!redis_url.empty()) return 0;  // other processes count into the same store

    // 50 messages: every fifth refused (10), every third with the template (17, 14 of them
    // sent), the rest to example.com and example.net.
    const bool ok =
        today.sent == 40 && today.failed == 10 &&
        today.failure_reasons == std::map<std::string, std::int64_t>{{"rejected:400", 10}} &&
        today.templates.at("d-order") == 14 && today.recipient_domains.at("example.com") == 20 &&
        today.recipient_domains.at("example.net") == 20;
    std::cout << (ok ? "metrics as expected\n" : "metrics NOT as expected\n");
    return ok ? 0 : 1;
}
