// 05: the receiving side. A webhook receiver on 127.0.0.1 (cpp-httplib) verifies SendGrid's
// signed Event Webhook requests, parses them and records delivered, bounced and blocked events
// into SQLite, matched to the messages the sending side logged.
//
// Everything runs in this one process: FakeSendgridServer stands in for the mail API and a
// WebhookSigner plays SendGrid posting events back, so the example needs no network.
#include <sendgrid_backend/sendgrid_backend.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/testing/webhook_signer.hpp>
#include <sendgrid_backend/transport/curl.hpp>
#include <sendgrid_backend/webhook.hpp>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <ctime>
#include <iostream>
#include <string>
#include <vector>

#include "sqlite.hpp"

namespace sg = sendgrid_backend;

namespace {

/// Runs one statement with its parameters.
void execute(example::Database& db, const char* sql,
             const std::vector<example::Value>& parameters = {}) {
    example::Statement(db.handle(), sql).bind(parameters).run();
}

}  // namespace

int main() {
    example::Database db(":memory:");
    execute(db, "CREATE TABLE sent (message_id TEXT PRIMARY KEY, recipient TEXT, subject TEXT)");
    execute(db,
            "CREATE TABLE events (sg_event_id TEXT PRIMARY KEY, message_id TEXT, kind TEXT, "
            "email TEXT, reason TEXT)");

    // --- The sending side logs every accepted message with its X-Message-Id. ---
    sg::testing::FakeSendgridServer mail_api;
    const sg::SendgridBackend backend(mail_api.settings());
    sg::ScopedConnection log_sent = sg::sendgrid_email_sent.connect(
        [&](const sg::SendgridBackend&, const sg::EmailMessage& message, bool fail_flag) {
            if (!fail_flag) {
                execute(db, "INSERT INTO sent VALUES (?, ?, ?)",
                        {message.outcome.message_id, message.to.at(0), message.subject});
            }
        });
    std::vector<sg::EmailMessage> batch;
    for (const char* to : {"ann@example.com", "bob@example.com", "cat@example.com"}) {
        batch.emplace_back("Your order", "It shipped.", "shop@example.com",
                           std::vector<std::string>{to});
    }
    backend.send_messages(batch);

    // --- The receiving side: verify, parse, record. ---
    const sg::testing::WebhookSigner sendgrid;  // holds the key SendGrid would sign with
    sg::WebhookOptions options;
    options.public_key = sendgrid.public_key_base64();  // as shown on the SendGrid dashboard
    const sg::EventWebhook webhook(options);
    sg::ScopedConnection record = sg::sendgrid_event_received.connect(
        [&](const sg::EventWebhook&, const sg::WebhookEvent& event) {
            if (event.type != sg::EventType::delivered && event.type != sg::EventType::bounce) {
                return;  // opens, clicks, ...: not recorded here
            }
            const std::string kind =
                event.type == sg::EventType::bounce ? event.bounce_type : event.event;
            // The sent message whose id starts SendGrid's sg_message_id.
            execute(db,
                    "INSERT INTO events SELECT ?1, message_id, ?2, ?3, ?4 FROM sent "
                    "WHERE substr(?5, 1, length(message_id) + 1) = message_id || '.'",
                    {event.sg_event_id, kind, event.email, event.reason, event.sg_message_id});
        });
    httplib::Server receiver;
    receiver.Post(
        "/sendgrid/events", [&](const httplib::Request& request, httplib::Response& response) {
            sg::HttpHeaders headers(request.headers.begin(), request.headers.end());
            const sg::WebhookResult result = webhook.handle(headers, request.body);
            response.status = result.http_status;
            response.set_content(result.accepted() ? "ok" : result.refusal_reason, "text/plain");
        });
    const int port = receiver.bind_to_any_port("127.0.0.1");
    std::thread serving([&] { receiver.listen_after_bind(); });
    while (!receiver.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));

    // --- SendGrid posts events back (signed), then retries the same request. ---
    nlohmann::json events = nlohmann::json::array();
    const char* kinds[][3] = {{"delivered", "", ""},
                              {"bounce", "bounce", "550 5.1.1 unknown user"},
                              {"bounce", "blocked", "554 5.7.1 blocked by policy"}};
    for (std::size_t i = 0; i < batch.size(); ++i) {
        const std::string id = batch[i].outcome.message_id;
        nlohmann::json event = {{"email", batch[i].to.at(0)},
                                {"event", kinds[i][0]},
                                {"sg_event_id", "evt-" + std::to_string(i)},
                                {"sg_message_id", id + ".filter0001.1.0"},
                                {"timestamp", std::time(nullptr)}};
        if (*kinds[i][1] != '\0') {
            event["type"] = kinds[i][1];
            event["reason"] = kinds[i][2];
        }
        events.push_back(event);
    }
    events.push_back(
        {{"email", "ann@example.com"}, {"event", "open"}, {"sg_event_id", "evt-open"}});
    const std::string body = events.dump() + "\r\n";
    httplib::Client sendgrid_client("127.0.0.1", port);
    for (int delivery = 0; delivery < 2; ++delivery) {  // the second one is a retry
        httplib::Headers headers;
        for (const auto& [name, value] : sendgrid.headers(body, std::time(nullptr))) {
            headers.emplace(name, value);
        }
        const auto answer =
            sendgrid_client.Post("/sendgrid/events", headers, body, "application/json");
        std::cout << "webhook POST " << (delivery + 1) << ": HTTP " << (answer ? answer->status : 0)
                  << '\n';
    }
    const auto forged = sendgrid_client.Post("/sendgrid/events", body, "application/json");
    std::cout << "unsigned POST: HTTP " << (forged ? forged->status : 0) << " ("
              << (forged ? forged->body : "") << ")\n";
    receiver.stop();
    serving.join();

    // --- What the database now knows about each sent message. ---
    example::Statement query(db.handle(),
                             "SELECT sent.recipient, events.kind, events.reason FROM events "
                             "JOIN sent USING (message_id) ORDER BY sent.recipient");
    int rows = 0;
    while (query.next()) {
        std::cout << "  " << query.text(0) << ": " << query.text(1) << ' ' << query.text(2) << '\n';
        ++rows;
    }
    std::cout << rows << " events recorded against sent messages\n";
    return rows == 3 ? 0 : 1;
}
