// 03: the README demo. Sends a few messages through SendgridBackend and shows the handlers on
// sendgrid_email_sent firing for every one of them, failures included.
//
// Without SENDGRID_API_KEY it starts FakeSendgridServer on 127.0.0.1 and injects a rate limit
// and a rejection. With SENDGRID_API_KEY (plus SENDGRID_DEMO_FROM, a verified sender, and
// SENDGRID_DEMO_TO) it sends to the real API, in sandbox mode unless SENDGRID_SANDBOX_MODE=false.
#include <sendgrid_backend/sendgrid_backend.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace sg = sendgrid_backend;

int main() {
    const char* key = std::getenv("SENDGRID_API_KEY");
    const bool real = key != nullptr && *key != '\0';
    std::unique_ptr<sg::testing::FakeSendgridServer> fake;
    sg::Settings settings = sg::Settings::from_env();
    std::string from = "Demo Shop <shop@example.com>";
    std::string to = "jane@example.com";
    if (real) {
        const char* demo_from = std::getenv("SENDGRID_DEMO_FROM");
        const char* demo_to = std::getenv("SENDGRID_DEMO_TO");
        if (demo_from == nullptr || demo_to == nullptr) {
            std::cerr << "With SENDGRID_API_KEY set, also set SENDGRID_DEMO_FROM (a verified "
                         "sender) and SENDGRID_DEMO_TO.\n";
            return 2;
        }
        from = demo_from;
        to = demo_to;
        if (!settings.sandbox_mode) settings.sandbox_mode = true;  // opt out with =false
        std::cout << "Sending through " << settings.host_url
                  << (settings.effective_sandbox_mode() ? " in sandbox mode" : "") << "\n\n";
    } else {
        fake = std::make_unique<sg::testing::FakeSendgridServer>();
        settings.api_key = fake->api_key();
        settings.host_url = fake->url();
        settings.retry.initial_backoff = std::chrono::milliseconds(100);
        std::cout << "No SENDGRID_API_KEY: sending to a local FakeSendgridServer at " << fake->url()
                  << "\n\n";
        sg::testing::Fault rate_limited(429);
        rate_limited.retry_after_seconds = 1;
        fake->push_fault(rate_limited);             // the first request: retried after 1 s
        fake->push_fault(sg::testing::Fault(400));  // the next one: rejected
    }

    // Handlers: logging, metrics, alerting. Each one is connected once (dispatch_uid).
    int accepted = 0, failed = 0;
    sg::sendgrid_email_sent.connect("log", [](const sg::SendgridBackend&,
                                              const sg::EmailMessage& message, bool fail_flag) {
        const auto& outcome = message.outcome;
        std::cout << "[log]     " << (fail_flag ? "FAILED " : "sent   ") << '"' << message.subject
                  << "\" status=" << outcome.http_status << " attempts=" << outcome.attempts
                  << " id=" << (outcome.message_id.empty() ? "-" : outcome.message_id) << " in "
                  << std::chrono::duration_cast<std::chrono::milliseconds>(outcome.duration).count()
                  << " ms\n";
    });
    sg::sendgrid_email_sent.connect(
        "metrics", [&](const sg::SendgridBackend&, const sg::EmailMessage&, bool fail_flag) {
            ++(fail_flag ? failed : accepted);
        });
    sg::sendgrid_email_sent.connect(
        "alert", [](const sg::SendgridBackend&, const sg::EmailMessage& message, bool fail_flag) {
            if (!fail_flag) return;
            std::cout << "[alert]   why: " << message.outcome.failure_reason << '\n';
        });
    // A pre-send hook tags every message.
    sg::sendgrid_pre_send.connect([](const sg::SendgridBackend&, sg::EmailMessage& message) {
        message.categories.push_back("demo");
    });

    sg::BackendOptions options;
    options.fail_silently = true;  // failures are recorded and emitted, not thrown
    const sg::SendgridBackend backend(settings, options);

    std::vector<sg::EmailMessage> batch;
    batch.emplace_back("Welcome aboard", "Hello and welcome!", from, std::vector<std::string>{to});
    batch.emplace_back("Your invoice", "Invoice attached.", from, std::vector<std::string>{to});
    batch.back().attach("invoice.txt", "Invoice 42: 1 teapot, 20 EUR");
    batch.emplace_back("Weekly news", "<h1>News</h1>", from, std::vector<std::string>{to});
    batch.back().content_subtype = "html";
    batch.emplace_back("Broken address", "This one cannot go out.", from,
                       std::vector<std::string>{"jane-at-example.com"});

    const std::size_t sent = backend.send_messages(batch);
    std::cout << "\nsend_messages returned " << sent << "; handlers counted " << accepted
              << " accepted and " << failed << " failed\n";
    return accepted + failed == static_cast<int>(batch.size()) ? 0 : 1;
}
