// 11 — the signals guide, 6 of 8: user email status. A users table counts each user's failed
// sends; a success resets the count; more than 5 failures in a row disables email for the user,
// and a sendgrid_pre_send handler then cancels mail to them before anything is sent.
//
// Only failures that say something about the address count: SendGrid's refusals (4xx but 429)
// and addresses refused before sending. A rate limit, a network failure or an unknown outcome
// is not the user's fault; a cancelled send is this program's own doing.
//
// What happens after SendGrid's 202 counts too: a hard bounce (DeliveryState::bounced) or a spam
// report disables the user at once, from sendgrid_status_changed. A soft bounce ("blocked") does
// not. The whole loop runs on this machine: the fake SendGrid posts its signed Event Webhook
// batches to a receiver on 127.0.0.1, whose EventWebhook feeds a StatusTracker.
#include <sendgrid_backend/sendgrid_backend.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/transport/curl.hpp>
#include <sendgrid_backend/webhook.hpp>

#include <httplib.h>

#include <chrono>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sqlite.hpp"

namespace sg = sendgrid_backend;

namespace {

constexpr std::int64_t max_failures = 5;

bool counts_against_address(const sg::SendOutcome& outcome) {
    return (outcome.status == sg::SendStatus::rejected && outcome.http_status >= 400 &&
            outcome.http_status < 500 && outcome.http_status != 429) ||
           outcome.status == sg::SendStatus::invalid;
}

/// Why a status change disables the address, or "" when it does not.
std::string disabling(const sg::RecipientState& before, const sg::RecipientState& after,
                      const sg::StatusEvent& event) {
    if (after.state == sg::DeliveryState::bounced && before.state != sg::DeliveryState::bounced) {
        return "hard bounce: " + (event.event ? event.event->reason : std::string());
    }
    if (after.has(sg::engaged_spamreport) && !before.has(sg::engaged_spamreport)) {
        return "spam report";
    }
    return "";
}

/// The users table. Its handlers run on the sending thread and (status changes from the Event
/// Webhook) on the receiver's: one lock around the connection.
class UserEmailStatus {
  public:
    explicit UserEmailStatus(example::Database& db)
        : failed_(prepare(db),
                  "UPDATE users SET failures = failures + 1, email_enabled = "
                  "CASE WHEN failures + 1 > ?2 THEN 0 ELSE email_enabled END WHERE email = ?1"),
          succeeded_(db.handle(), "UPDATE users SET failures = 0 WHERE email = ?1"),
          disabled_(db.handle(),
                    "UPDATE users SET email_enabled = 0, disabled_reason = ?2 WHERE email = ?1"),
          enabled_(db.handle(),
                   "SELECT email_enabled, failures, disabled_reason FROM users WHERE email = ?1") {}

    /// The guide's update_user_email_status handler.
    void record(const sg::EmailMessage& message, bool fail_flag) {
        if (fail_flag && !counts_against_address(message.outcome)) return;
        std::lock_guard<std::mutex> lock(mutex_);
        for (const std::string& address : message.to) {
            if (fail_flag) {
                failed_.bind({address, max_failures}).run();
            } else {
                succeeded_.bind({address}).run();
            }
        }
    }

    /// The sendgrid_status_changed handler: a hard bounce or a spam report disables the address
    /// (the recipient comes lower case, as the table keeps it).
    void status_changed(const std::string& recipient, const sg::RecipientState& before,
                        const sg::RecipientState& after, const sg::StatusEvent& event) {
        const std::string why = disabling(before, after, event);
        if (recipient.empty() || why.empty()) return;
        std::lock_guard<std::mutex> lock(mutex_);
        disabled_.bind({recipient, why}).run();
    }

    /// The pre-send check: mail to a disabled user is cancelled.
    void check(sg::EmailMessage& message) {
        std::lock_guard<std::mutex> lock(mutex_);
        for (const std::string& address : message.to) {
            enabled_.bind({address});
            if (enabled_.next() && enabled_.integer(0) == 0) {
                const std::string why = enabled_.text(2).empty()
                                            ? std::to_string(enabled_.integer(1)) + " failures"
                                            : enabled_.text(2);
                throw sg::CancelSend("email disabled for " + address + " (" + why + ")");
            }
        }
    }

  private:
    static sqlite3* prepare(example::Database& db) {
        db.execute(
            "CREATE TABLE users (email TEXT PRIMARY KEY, failures INTEGER NOT NULL DEFAULT 0,"
            " email_enabled INTEGER NOT NULL DEFAULT 1, disabled_reason TEXT)");
        db.execute(
            "INSERT INTO users (email) VALUES ('bob@example.com'), ('jane@example.com'),"
            " ('carl@example.com'), ('dana@example.com'), ('erin@example.com')");
        return db.handle();
    }

    std::mutex mutex_;
    example::Statement failed_;
    example::Statement succeeded_;
    example::Statement disabled_;
    example::Statement enabled_;
};

}  // namespace

int main() {
    example::Database db(":memory:");
    UserEmailStatus users(db);
    sg::ScopedConnection after = sg::sendgrid_email_sent.connect(
        "update_user_email_status", [&](const sg::SendgridBackend&, const sg::EmailMessage& message,
                                        bool fail_flag) { users.record(message, fail_flag); });
    sg::ScopedConnection before = sg::sendgrid_pre_send.connect(
        [&](const sg::SendgridBackend&, sg::EmailMessage& message) { users.check(message); });
    sg::ScopedConnection changed = sg::sendgrid_status_changed.connect(
        [&](const std::string&, const std::string& recipient, const sg::RecipientState& was,
            const sg::RecipientState& is,
            const sg::StatusEvent& event) { users.status_changed(recipient, was, is, event); });

    // The Event Webhook receiver's port first: the fake SendGrid posts its events there.
    httplib::Server receiver;
    const int port = receiver.bind_to_any_port("127.0.0.1");
    sg::testing::FakeServerOptions fake;
    fake.webhook_url = "http://127.0.0.1:" + std::to_string(port) + "/sendgrid/events";
    fake.webhook.max_batch_wait = std::chrono::milliseconds(50);
    using sg::testing::EventRule;
    fake.event_rules.push_back(
        EventRule({"processed", "bounce"}).for_recipient("carl@example.com"));
    fake.event_rules.push_back(
        EventRule({"processed", "delivered", "spamreport"}).for_recipient("dana@example.com"));
    fake.event_rules.push_back(
        EventRule({"processed", "blocked"}).for_recipient("erin@example.com"));
    sg::testing::FakeSendgridServer sendgrid(fake);  // everyone else: processed, delivered

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

    sg::testing::Fault bob_bounces(400);  // bob's mailbox is gone: six refusals
    bob_bounces.times = 6;
    sendgrid.push_fault(bob_bounces.for_recipient("bob@example.com"));
    sg::testing::Fault jane_full(400);  // jane's is full three times, then fine
    jane_full.times = 3;
    sendgrid.push_fault(jane_full.for_recipient("jane@example.com"));
    sg::BackendOptions options;
    options.fail_silently = true;
    options.statuses = statuses;  // the send's outcome: the status the events build on
    const sg::SendgridBackend backend(sendgrid.settings(), options);

    auto send_to = [&](const std::string& address) {
        sg::EmailMessage message("Digest", "News.", "shop@example.com", {address});
        backend.send_message(message);
        return message.outcome;
    };
    for (int i = 0; i < 6; ++i) send_to("bob@example.com");
    for (int i = 0; i < 4; ++i) send_to("jane@example.com");
    // Accepted, then: carl's address bounces, dana reports spam, erin's server blocks it.
    bool events_arrived = true;
    for (const auto& [address, events] :
         {std::pair<const char*, std::size_t>{"carl@example.com", 2},
          {"dana@example.com", 3},
          {"erin@example.com", 2}}) {
        events_arrived =
            sendgrid.wait_for_events(send_to(address).message_id, events) && events_arrived;
    }
    events_arrived = sendgrid.wait_for_webhook_idle() && events_arrived;
    const std::size_t reached_sendgrid = sendgrid.received_count();
    const sg::SendOutcome seventh = send_to("bob@example.com");
    const sg::SendOutcome carl_again = send_to("carl@example.com");
    const sg::SendOutcome dana_again = send_to("dana@example.com");
    receiver.stop();
    serving.join();

    const auto bob_enabled =
        db.count("SELECT email_enabled FROM users WHERE email = 'bob@example.com'");
    const auto jane_failures =
        db.count("SELECT failures FROM users WHERE email = 'jane@example.com'");
    std::cout << "bob: email_enabled=" << bob_enabled
              << "; the 7th mail: " << seventh.failure_reason
              << "\njane: failures=" << jane_failures << " (reset by her 4th, successful mail)\n"
              << "carl again: " << carl_again.failure_reason
              << "\ndana again: " << dana_again.failure_reason << '\n';
    example::Statement disabled(db.handle(),
                                "SELECT email, coalesce(disabled_reason, failures || ' failures') "
                                "FROM users WHERE email_enabled = 0 ORDER BY email");
    std::vector<std::string> disabled_users;
    while (disabled.next()) {
        std::cout << "  disabled: " << disabled.text(0) << " (" << disabled.text(1) << ")\n";
        disabled_users.push_back(disabled.text(0));
    }
    const bool ok =
        events_arrived && bob_enabled == 0 && seventh.status == sg::SendStatus::cancelled &&
        carl_again.status == sg::SendStatus::cancelled &&
        dana_again.status == sg::SendStatus::cancelled &&
        sendgrid.received_count() == reached_sendgrid &&  // never left the process
        reached_sendgrid == 13 && jane_failures == 0 &&
        disabled_users ==
            std::vector<std::string>{"bob@example.com", "carl@example.com", "dana@example.com"} &&
        db.count("SELECT count(*) FROM users WHERE disabled_reason LIKE 'hard bounce: 550%'") == 1;
    std::cout << (ok ? "user status as expected\n" : "user status NOT as expected\n");
    return ok ? 0 : 1;
}
