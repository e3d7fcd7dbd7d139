// 12 — the signals guide, 7 of 8: signal configuration. Every handler is registered in one
// place at start-up, each exactly once however often start-up code runs (dispatch_uid, as in
// Django's AppConfig.ready()), and disconnected cleanly at shutdown.
#include <sendgrid_backend/sendgrid_backend.hpp>
#include <sendgrid_backend/testing/outbox.hpp>

#include <atomic>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace sg = sendgrid_backend;

namespace email_handlers {

std::atomic<int> logged{0};
std::atomic<int> counted{0};
std::atomic<int> alerted{0};

void log_email_status(const sg::SendgridBackend&, const sg::EmailMessage& message, bool failed) {
    ++logged;
    std::cout << "[log] " << message.subject << (failed ? " FAILED" : " sent") << '\n';
}
void track_email_metrics(const sg::SendgridBackend&, const sg::EmailMessage&, bool) { ++counted; }
void alert_on_failure(const sg::SendgridBackend&, const sg::EmailMessage&, bool failed) {
    if (failed) ++alerted;
}

const char* const uids[] = {"email_handlers.log", "email_handlers.metrics", "email_handlers.alert"};

/// Connects every handler; safe to call again (each uid is connected at most once).
void register_handlers() {
    sg::sendgrid_email_sent.connect(uids[0], &log_email_status);
    sg::sendgrid_email_sent.connect(uids[1], &track_email_metrics);
    sg::sendgrid_email_sent.connect(uids[2], &alert_on_failure);
}

/// Disconnects them at shutdown; returns how many were connected.
int unregister_handlers() {
    int disconnected = 0;
    for (const char* uid : uids) disconnected += sg::sendgrid_email_sent.disconnect(uid) ? 1 : 0;
    return disconnected;
}

}  // namespace email_handlers

int main() {
    email_handlers::register_handlers();
    email_handlers::register_handlers();  // a second start-up path: nothing doubles
    const std::size_t connected = sg::sendgrid_email_sent.num_handlers();

    sg::Settings settings;
    settings.api_key = "SG.example";
    sg::BackendOptions options;
    options.fail_silently = true;
    options.transport = std::make_shared<sg::testing::OutboxTransport>();
    const sg::SendgridBackend backend(settings, options);
    std::vector<sg::EmailMessage> batch;
    batch.emplace_back("Welcome", "Hi", "shop@example.com",
                       std::vector<std::string>{"a@example.com"});
    batch.emplace_back("Broken", "Hi", "shop@example.com",
                       std::vector<std::string>{"not-an-address"});
    backend.send_messages(batch);

    const int disconnected = email_handlers::unregister_handlers();  // shutdown
    const bool ok = connected == 3 && email_handlers::logged == 2 && email_handlers::counted == 2 &&
                    email_handlers::alerted == 1 && disconnected == 3 &&
                    !sg::sendgrid_email_sent.has_listeners();
    std::cout << connected << " handlers connected once each; " << disconnected
              << " disconnected at shutdown" << (ok ? "\n" : " -- NOT as expected\n");
    return ok ? 0 : 1;
}
