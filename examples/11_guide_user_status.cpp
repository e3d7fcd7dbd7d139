// 11 — the signals guide, 6 of 8: user email status. A users table counts each user's failed
// sends; a success resets the count; more than 5 failures in a row disables email for the user,
// and a sendgrid_pre_send handler then cancels mail to them before anything is sent.
//
// Only failures that say something about the address count: SendGrid's refusals (4xx but 429)
// and addresses refused before sending. A rate limit, a network failure or an unknown outcome
// is not the user's fault; a cancelled send is this program's own doing.
#include <sendgrid_backend/sendgrid_backend.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <iostream>
#include <string>
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

class UserEmailStatus {
  public:
    explicit UserEmailStatus(example::Database& db)
        : failed_(prepare(db),
                  "UPDATE users SET failures = failures + 1, email_enabled = "
                  "CASE WHEN failures + 1 > ?2 THEN 0 ELSE email_enabled END WHERE email = ?1"),
          succeeded_(db.handle(), "UPDATE users SET failures = 0 WHERE email = ?1"),
          enabled_(db.handle(), "SELECT email_enabled, failures FROM users WHERE email = ?1") {}

    /// The guide's update_user_email_status handler.
    void record(const sg::EmailMessage& message, bool fail_flag) {
        if (fail_flag && !counts_against_address(message.outcome)) return;
        for (const std::string& address : message.to) {
            if (fail_flag) {
                failed_.bind({address, max_failures}).run();
            } else {
                succeeded_.bind({address}).run();
            }
        }
    }

    /// The pre-send check: mail to a disabled user is cancelled.
    void check(sg::EmailMessage& message) {
        for (const std::string& address : message.to) {
            enabled_.bind({address});
            if (enabled_.next() && enabled_.integer(0) == 0) {
                throw sg::CancelSend("email disabled for " + address + " after " +
                                     std::to_string(enabled_.integer(1)) + " failures");
            }
        }
    }

  private:
    static sqlite3* prepare(example::Database& db) {
        db.execute(
            "CREATE TABLE users (email TEXT PRIMARY KEY, failures INTEGER NOT NULL DEFAULT 0,"
            " email_enabled INTEGER NOT NULL DEFAULT 1)");
        db.execute("INSERT INTO users (email) VALUES ('bob@example.com'), ('jane@example.com')");
        return db.handle();
    }

    example::Statement failed_;
    example::Statement succeeded_;
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

    sg::testing::FakeSendgridServer sendgrid;
    sg::testing::Fault bob_bounces(400);  // bob's mailbox is gone: six refusals
    bob_bounces.times = 6;
    sendgrid.push_fault(bob_bounces.for_recipient("bob@example.com"));
    sg::testing::Fault jane_full(400);  // jane's is full three times, then fine
    jane_full.times = 3;
    sendgrid.push_fault(jane_full.for_recipient("jane@example.com"));
    sg::BackendOptions options;
    options.fail_silently = true;
    const sg::SendgridBackend backend(sendgrid.settings(), options);

    auto send_to = [&](const std::string& address) {
        sg::EmailMessage message("Digest", "News.", "shop@example.com", {address});
        backend.send_message(message);
        return message.outcome;
    };
    for (int i = 0; i < 6; ++i) send_to("bob@example.com");
    for (int i = 0; i < 4; ++i) send_to("jane@example.com");
    const std::size_t reached_sendgrid = sendgrid.received_count();
    const sg::SendOutcome seventh = send_to("bob@example.com");

    const auto bob_enabled =
        db.count("SELECT email_enabled FROM users WHERE email = 'bob@example.com'");
    const auto jane_failures =
        db.count("SELECT failures FROM users WHERE email = 'jane@example.com'");
    std::cout << "bob: email_enabled=" << bob_enabled
              << "; the 7th mail: " << seventh.failure_reason
              << "\njane: failures=" << jane_failures << " (reset by her 4th, successful mail)\n";
    const bool ok = bob_enabled == 0 && seventh.status == sg::SendStatus::cancelled &&
                    sendgrid.received_count() == reached_sendgrid &&  // never left the process
                    reached_sendgrid == 10 && jane_failures == 0;
    std::cout << (ok ? "user status as expected\n" : "user status NOT as expected\n");
    return ok ? 0 : 1;
}
