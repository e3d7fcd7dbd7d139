// 16 — statuses past the 202, the whole loop on one machine: SendgridBackend sends to the fake
// SendGrid, which POSTs signed Event Webhook batches (each twice, shuffled) to a receiver on
// 127.0.0.1; its EventWebhook hands every verified batch to a StatusTracker, which the backend
// also tells each send's outcome. sendgrid_status_changed fires once per real change, however
// many copies of an event arrive and in whatever order.
#include <sendgrid_backend/sendgrid_backend.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/transport/curl.hpp>
#include <sendgrid_backend/webhook.hpp>

#include <httplib.h>

#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace sg = sendgrid_backend;

namespace {

/// "delivered", "delivered+open", ...
std::string describe(const sg::RecipientState& state) {
    std::string text = sg::to_string(state.state);
    if (state.has(sg::engaged_open)) text += "+open";
    if (state.has(sg::engaged_spamreport)) text += "+spamreport";
    return text;
}

}  // namespace

int main() {
    // The receiver's port first: the fake SendGrid is told where to post its events.
    httplib::Server receiver;
    const int port = receiver.bind_to_any_port("127.0.0.1");

    sg::testing::FakeServerOptions fake;
    fake.webhook_url = "http://127.0.0.1:" + std::to_string(port) + "/sendgrid/events";
    fake.webhook.max_batch_wait = std::chrono::milliseconds(50);
    fake.webhook.duplicate_probability = 1;  // every batch is posted again
    fake.webhook.shuffle = true;             // and its events come in any order
    fake.event_rules.push_back(sg::testing::EventRule({"processed", "delivered", "open"})
                                   .for_recipient("ann@example.com"));
    fake.event_rules.push_back(
        sg::testing::EventRule({"processed", "bounce"}).for_recipient("cat@example.com"));
    sg::testing::FakeSendgridServer sendgrid(fake);  // everyone else: processed, delivered

    // One tracker, told by both sides: the backend (the 202) and the webhook (the rest).
    auto statuses = std::make_shared<sg::StatusTracker>();
    sg::WebhookOptions webhook_options;
    webhook_options.public_key = sendgrid.webhook_public_key();  // the dashboard's key
    webhook_options.statuses = statuses;
    const sg::EventWebhook webhook(webhook_options);
    receiver.Post(
        "/sendgrid/events", [&](const httplib::Request& request, httplib::Response& response) {
            const sg::HttpHeaders headers(request.headers.begin(), request.headers.end());
            const sg::WebhookResult result = webhook.handle(headers, request.body);
            response.status = result.http_status;  // 503 when the store failed: SendGrid retries
        });
    std::thread serving([&] { receiver.listen_after_bind(); });

    // Every change, from the sending thread and the receiver's; each recipient's latest.
    std::mutex mutex;
    std::map<std::string, sg::RecipientState> reached;
    bool every_change_real = true;
    sg::ScopedConnection printing = sg::sendgrid_status_changed.connect(
        [&](const std::string&, const std::string& recipient, const sg::RecipientState& before,
            const sg::RecipientState& after, const sg::StatusEvent& event) {
            std::lock_guard<std::mutex> lock(mutex);
            std::cout << "  " << (recipient.empty() ? "(the send)" : recipient) << ": "
                      << describe(before) << " -> " << describe(after) << " ("
                      << (event.event ? "event " + event.event->event : std::string("send"))
                      << ")\n";
            every_change_real = every_change_real && before != after;
            // Threads may report in another order than the store applied: join the states.
            sg::RecipientState& latest = reached[recipient];
            if (after.state > latest.state) latest.state = after.state;
            latest.engagement |= after.engagement;
        });

    sg::BackendOptions options;
    options.statuses = statuses;
    const sg::SendgridBackend backend(sendgrid.settings(), options);
    sg::EmailMessage message("Your order", "It shipped.", "shop@example.com",
                             {"ann@example.com", "bob@example.com", "cat@example.com"});
    backend.send_message(message);
    const std::string key = message.outcome.tracking_key;  // in custom_args, echoed by events

    // 3 + 2 + 2 events fired, then every batch (and its copy) answered by the receiver.
    const bool arrived =
        sendgrid.wait_for_events(message.outcome.message_id, 7) && sendgrid.wait_for_webhook_idle();
    receiver.stop();
    serving.join();

    const std::optional<sg::MessageStatus> status = statuses->status(key);
    if (!arrived || !status) {
        std::cout << "the events did not arrive\n";
        return 1;
    }
    std::cout << status->summary() << '\n';

    const std::map<std::string, sg::RecipientState> expected = {
        {"", {sg::DeliveryState::accepted, 0}},
        {"ann@example.com", {sg::DeliveryState::delivered, sg::engaged_open}},
        {"bob@example.com", {sg::DeliveryState::delivered, 0}},
        {"cat@example.com", {sg::DeliveryState::bounced, 0}}};
    std::map<std::string, sg::RecipientState> final_states = {{"", status->send.summary()}};
    for (const sg::RecipientStatus& recipient : status->recipients) {
        final_states[recipient.email] = recipient.summary();
    }
    const bool ok = final_states == expected && reached == expected && every_change_real;
    std::cout << (ok ? "statuses as the rules say\n" : "statuses NOT as the rules say\n");
    return ok ? 0 : 1;
}
