// 15: Prometheus metrics. A service that sends mail and receives Event Webhook events exposes
// both sides on /metrics with prometheus-cpp's Exposer; examples/grafana_dashboard.json charts
// them.
//
//   15_metrics_service [PORT]    PORT for 127.0.0.1:PORT/metrics; 0, the default: any free one
//
// Everything runs in this one process: FakeSendgridServer stands in for the mail API (with a
// rejection and a rate limit injected) and a WebhookSigner plays SendGrid posting events. The
// program then scrapes its own /metrics, prints the series that moved, and exits 0 only if
// they hold the expected counts.
#include <sendgrid_backend/prometheus.hpp>
#include <sendgrid_backend/sendgrid_backend.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/testing/webhook_signer.hpp>
#include <sendgrid_backend/transport/curl.hpp>
#include <sendgrid_backend/webhook.hpp>

#include <httplib.h>
#include <prometheus/exposer.h>
#include <nlohmann/json.hpp>

#include <ctime>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace sg = sendgrid_backend;

int main(int argc, char** argv) {
    // --- Count from the start: the metrics observe the signals; the Exposer serves them. ---
    sg::PrometheusOptions metrics_options;
    metrics_options.constant_labels = {{"service", "example"}};
    const sg::PrometheusMetrics metrics(metrics_options);
    prometheus::Exposer exposer("127.0.0.1:" + std::string(argc > 1 ? argv[1] : "0"));
    exposer.RegisterCollectable(metrics.collectable());
    const int port = exposer.GetListeningPorts().at(0);
    std::cout << "Serving http://127.0.0.1:" << port << "/metrics\n";

    // --- Sending: one accepted, one rejected (400), one rate limited (429) then accepted. ---
    sg::testing::FakeSendgridServer mail_api;
    mail_api.push_fault(sg::testing::Fault(400).for_recipient("bounce@example.com"));
    sg::testing::Fault rate_limited(429);
    rate_limited.retry_after_seconds = 0;
    mail_api.push_fault(rate_limited.for_recipient("busy@example.com"));
    sg::BackendOptions backend_options;
    backend_options.fail_silently = true;  // a rejection is counted, not thrown
    const sg::SendgridBackend backend(mail_api.settings(), backend_options);
    std::vector<sg::EmailMessage> batch;
    for (const char* to : {"jane@example.com", "bounce@example.com", "busy@example.com"}) {
        batch.emplace_back("Your order", "It shipped.", "shop@example.com",
                           std::vector<std::string>{to});
    }
    backend.send_messages(batch);

    // --- Receiving: a signed batch, SendGrid retrying it, and a forged one. ---
    const sg::testing::WebhookSigner sendgrid;
    sg::WebhookOptions webhook_options;
    webhook_options.public_key = sendgrid.public_key_base64();
    const sg::EventWebhook webhook(webhook_options);
    const std::string events = nlohmann::json{
        {{"email", "jane@example.com"},
         {"event", "delivered"},
         {"sg_event_id", "evt-1"},
         {"timestamp", std::time(nullptr)}},
        {{"email", "busy@example.com"},
         {"event", "bounce"},
         {"sg_event_id", "evt-2"},
         {"timestamp",
          std::time(nullptr)}}}.dump();
    const sg::HttpHeaders signed_headers = sendgrid.headers(events, std::time(nullptr));
    webhook.handle(signed_headers, events);  // verified: 2 events
    webhook.handle(signed_headers, events);  // replayed: 2 duplicates
    const std::string forged = events + " ";
    webhook.handle(signed_headers, forged);  // signature_mismatch

    // --- Scrape our own /metrics as Prometheus would, and print what moved. ---
    httplib::Client prometheus_server("127.0.0.1", port);
    const auto scraped = prometheus_server.Get("/metrics");
    if (!scraped || scraped->status != 200) {
        std::cerr << "GET /metrics failed\n";
        return 1;
    }
    std::map<std::string, double> samples;  // "name{labels}" -> value
    std::istringstream lines(scraped->body);
    for (std::string line; std::getline(lines, line);) {
        if (line.rfind("sendgrid_", 0) != 0) continue;  // comments, the Exposer's own metrics
        const auto space = line.rfind(' ');
        const double value = std::stod(line.substr(space + 1));
        samples[line.substr(0, space)] = value;
        if (value != 0) std::cout << "  " << line << '\n';
    }

    const std::map<std::string, double> expected{
        {R"(sendgrid_messages_total{service="example",outcome="accepted"})", 2},
        {R"(sendgrid_messages_total{service="example",outcome="rejected"})", 1},
        {R"(sendgrid_requests_total{service="example",status="202"})", 2},
        {R"(sendgrid_requests_total{service="example",status="400"})", 1},
        {R"(sendgrid_requests_total{service="example",status="429"})", 1},
        {R"(sendgrid_rate_limited_total{service="example"})", 1},
        {R"(sendgrid_send_tries_count{service="example"})", 3},
        {R"(sendgrid_send_tries_sum{service="example"})", 4},
        {R"(sendgrid_send_duration_seconds_count{service="example"})", 3},
        {R"(sendgrid_webhook_events_total{service="example",event="delivered"})", 1},
        {R"(sendgrid_webhook_events_total{service="example",event="bounce"})", 1},
        {R"(sendgrid_webhook_requests_total{service="example",result="verified"})", 1},
        {R"(sendgrid_webhook_requests_total{service="example",result="replayed"})", 1},
        {R"(sendgrid_webhook_requests_total{service="example",result="signature_mismatch"})", 1},
        {R"(sendgrid_webhook_duplicate_events_total{service="example"})", 2},
    };
    int wrong = 0;
    for (const auto& [series, value] : expected) {
        const auto found = samples.find(series);
        if (found == samples.end() || found->second != value) {
            std::cerr << "expected " << series << ' ' << value << '\n';
            ++wrong;
        }
    }
    std::cout << (wrong == 0 ? "every expected count is there\n" : "counts differ\n");
    return wrong == 0 ? 0 : 1;
}
