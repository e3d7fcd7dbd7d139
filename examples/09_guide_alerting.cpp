// 09 — the signals guide, 4 of 8: error handling and alerting.
//
//   09_guide_alerting DB           sends a batch; every send is logged (email_log.hpp); failures
//                                  are stored for a later retry; alerts go to the admin
//   09_guide_alerting DB --retry   a later run: re-sends what was stored, marking each done
//
// Alerts go through the same backend: at once when a critical, transactional or password-reset
// mail fails, and once an hour when more than 10 % of the last hour's mail failed. Failures are
// stored by what a retry can do about them: 429, 5xx and "not sent" are retried; SendGrid's
// other refusals are permanent (the message must change); an unknown outcome (sent, no answer)
// is held for review, never re-sent blindly, since SendGrid may have accepted it.
#include <sendgrid_backend/message_json.hpp>
#include <sendgrid_backend/sendgrid_backend.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstring>
#include <ctime>
#include <iostream>
#include <string>
#include <vector>

#include "email_log.hpp"

namespace sg = sendgrid_backend;
using namespace std::chrono_literals;

namespace {

const char* const alert_category = "admin-alert";
const char* const urgent_categories[] = {"critical", "transactional", "password-reset"};

/// The guide's store_failed_email_for_retry, done for real: the whole message, as JSON.
class FailedEmails {
  public:
    explicit FailedEmails(example::Database& db)
        : insert_(create_table(db),
                  "INSERT INTO failed_emails (message, status, reason, state, stored_at)"
                  " VALUES (?1, ?2, ?3, ?4, ?5)"),
          mark_(db.handle(),
                "UPDATE failed_emails SET state = ?2, retried_at = ?3, retry_outcome = ?4"
                " WHERE id = ?1") {}

    static const char* state_for(const sg::SendOutcome& outcome) {
        if (outcome.maybe_delivered()) return "needs_review";
        const bool retryable = outcome.status == sg::SendStatus::transport_failed ||
                               outcome.http_status == 429 || outcome.http_status >= 500;
        return retryable ? "pending" : "permanent";
    }

    void store(const sg::EmailMessage& message) {
        insert_
            .bind({sg::serialize_message(message),
                   std::string(sg::to_string(message.outcome.status)),
                   message.outcome.failure_reason, std::string(state_for(message.outcome)),
                   static_cast<std::int64_t>(std::time(nullptr))})
            .run();
    }

    void mark(std::int64_t id, const sg::SendOutcome& outcome) {
        mark_
            .bind({id, std::string(outcome.accepted() ? "done" : state_for(outcome)),
                   static_cast<std::int64_t>(std::time(nullptr)),
                   outcome.accepted() ? "accepted " + outcome.message_id : outcome.failure_reason})
            .run();
    }

  private:
    static sqlite3* create_table(example::Database& db) {
        db.execute(
            "CREATE TABLE IF NOT EXISTS failed_emails (id INTEGER PRIMARY KEY,"
            " message TEXT NOT NULL, status TEXT, reason TEXT, state TEXT NOT NULL,"
            " stored_at INTEGER, retried_at INTEGER, retry_outcome TEXT)");
        db.execute(
            "CREATE TABLE IF NOT EXISTS alerts_sent (kind TEXT, hour INTEGER,"
            " PRIMARY KEY (kind, hour))");
        return db.handle();
    }

    example::Statement insert_;
    example::Statement mark_;
};

/// The guide's alert_on_email_failures handler.
class Alerter {
  public:
    Alerter(example::Database& db, FailedEmails& failed) : db_(db), failed_(failed) {}

    void on_sent(const sg::SendgridBackend& backend, const sg::EmailMessage& message,
                 bool fail_flag) {
        if (!fail_flag || is_alert(message)) return;  // alerts about alerts would never end
        failed_.store(message);
        for (const std::string& category : message.categories) {
            for (const char* urgent : urgent_categories) {
                if (category == urgent) {
                    alert(backend, "Urgent email failed: '" + message.subject + "'",
                          "A " + category + " email to " + message.to.at(0) +
                              " failed: " + message.outcome.failure_reason);
                    return;
                }
            }
        }
        // The failure rate of the last hour, from the log (this send's row is already in).
        const std::int64_t since = static_cast<std::int64_t>(std::time(nullptr)) - 3600;
        const auto total = db_.count(
            "SELECT COUNT(*) FROM email_send_log WHERE send_time >= ?1 AND categories NOT LIKE "
            "'%admin-alert%'",
            {since});
        const auto failures = db_.count(
            "SELECT COUNT(*) FROM email_send_log WHERE send_time >= ?1 AND success = 0 AND "
            "categories NOT LIKE '%admin-alert%'",
            {since});
        if (total >= 10 && failures * 10 > total && first_this_hour("failure_rate")) {
            alert(backend, "Email failure rate above 10 %",
                  std::to_string(failures) + " of the last hour's " + std::to_string(total) +
                      " emails failed; latest: " + message.outcome.failure_reason);
        }
    }

    int alerts_sent = 0;

  private:
    static bool is_alert(const sg::EmailMessage& message) {
        for (const auto& category : message.categories) {
            if (category == alert_category) return true;
        }
        return false;
    }

    bool first_this_hour(const std::string& kind) {
        const auto hour = static_cast<std::int64_t>(std::time(nullptr)) / 3600;
        const bool seen =
            db_.count("SELECT COUNT(*) FROM alerts_sent WHERE kind = ?1 AND hour = ?2",
                      {kind, hour}) > 0;
        if (!seen) {
            example::Statement(db_.handle(), "INSERT INTO alerts_sent VALUES (?1, ?2)")
                .bind({kind, hour})
                .run();
        }
        return !seen;
    }

    /// Sent with the same backend; a failed alert is logged, never raised.
    void alert(const sg::SendgridBackend& backend, const std::string& subject,
               const std::string& body) {
        sg::EmailMessage message("[ALERT] " + subject, body, "alerts@example.com",
                                 {"admin@example.com"});
        message.categories = {alert_category};
        try {
            backend.send_message(message);
            ++alerts_sent;
        } catch (const std::exception& error) {
            std::cerr << "the alert could not be sent: " << error.what() << '\n';
        }
    }

    example::Database& db_;
    FailedEmails& failed_;
};

sg::Settings settings_for(const sg::testing::FakeSendgridServer& sendgrid) {
    sg::Settings settings = sendgrid.settings();
    settings.timeout = 500ms;
    return settings;
}

int send_batch(const std::string& path) {
    std::remove(path.c_str());
    example::Database db(path);
    example::EmailLog log(db);
    FailedEmails failed(db);
    Alerter alerter(db, failed);
    // The log first: the alerter reads the failure rate from it.
    sg::ScopedConnection logging = log.connect();
    sg::ScopedConnection alerting = sg::sendgrid_email_sent.connect(
        "alert_on_email_failures",
        [&](const sg::SendgridBackend& backend, const sg::EmailMessage& message, bool fail_flag) {
            alerter.on_sent(backend, message, fail_flag);
        });

    // SendGrid's stand-in: a bouncing address, a server error on two messages, one answer that
    // comes too late (sent, no answer: unknown).
    sg::testing::FakeSendgridServer sendgrid;
    sg::testing::Fault bounce(400);
    bounce.times = 3;
    sendgrid.push_fault(bounce.for_recipient("bounce@example.com"));
    sendgrid.push_fault(sg::testing::Fault(503).for_recipient("carol@example.com"));
    sendgrid.push_fault(sg::testing::Fault(503).for_recipient("dave@example.com"));
    sg::testing::Fault slow;
    slow.delay = 1500ms;
    sendgrid.push_fault(slow.for_recipient("slow@example.com"));

    sg::BackendOptions options;
    options.fail_silently = true;
    const sg::SendgridBackend backend(settings_for(sendgrid), options);
    std::vector<sg::EmailMessage> batch;
    auto add = [&](const std::string& subject, const std::string& to) -> sg::EmailMessage& {
        batch.emplace_back(subject, "Body", "shop@example.com", std::vector<std::string>{to});
        return batch.back();
    };
    for (int i = 0; i < 14; ++i)
        add("Newsletter " + std::to_string(i), "reader" + std::to_string(i) + "@example.com");
    for (int i = 0; i < 3; ++i) add("Newsletter bounce " + std::to_string(i), "bounce@example.com");
    add("Reset your password", "carol@example.com").categories = {"password-reset"};
    add("Weekly digest", "dave@example.com");
    add("Order shipped", "slow@example.com");
    backend.send_messages(batch);

    const auto alerts = sendgrid.sent().to("admin@example.com");
    std::cout << alerts.count() << " alerts:" << alerts.describe() << '\n';
    const bool ok =
        alerts.count() == 2 &&
        alerts.with_subject("[ALERT] Email failure rate above 10 %").count() == 1 &&
        alerts.with_subject("[ALERT] Urgent email failed: 'Reset your password'").count() == 1 &&
        db.count("SELECT COUNT(*) FROM failed_emails WHERE state = 'pending'") == 2 &&
        db.count("SELECT COUNT(*) FROM failed_emails WHERE state = 'permanent'") == 3 &&
        db.count("SELECT COUNT(*) FROM failed_emails WHERE state = 'needs_review'") == 1 &&
        db.count("SELECT COUNT(*) FROM email_send_log") == 22;  // 20 messages, 2 alerts
    std::cout << (ok ? "failures stored and alerts sent as expected\n" : "NOT as expected\n");
    return ok ? 0 : 1;
}

int retry_stored(const std::string& path) {
    example::Database db(path);
    FailedEmails failed(db);
    sg::testing::FakeSendgridServer sendgrid;  // SendGrid is well again
    sg::BackendOptions options;
    options.fail_silently = true;
    const sg::SendgridBackend backend(settings_for(sendgrid), options);

    example::Statement pending(db.handle(),
                               "SELECT id, message FROM failed_emails WHERE state = 'pending'");
    std::vector<std::pair<std::int64_t, sg::EmailMessage>> retries;
    while (pending.next()) {
        retries.emplace_back(pending.integer(0), sg::deserialize_message(pending.text(1)));
    }
    for (auto& [id, message] : retries) {
        backend.send_message(message);
        failed.mark(id, message.outcome);
        std::cout << "retried '" << message.subject << "': " << to_string(message.outcome.status)
                  << '\n';
    }
    example::Statement review(db.handle(),
                              "SELECT reason FROM failed_emails WHERE state = 'needs_review'");
    while (review.next()) std::cout << "held for review, not re-sent: " << review.text(0) << '\n';

    const bool ok =
        retries.size() == 2 && sendgrid.received_count() == 2 &&
        db.count(
            "SELECT COUNT(*) FROM failed_emails WHERE state = 'done' AND "
            "retry_outcome LIKE 'accepted %'") == 2 &&
        db.count("SELECT COUNT(*) FROM failed_emails WHERE state = 'needs_review'") == 1;
    std::cout << (ok ? "retry run as expected\n" : "retry run NOT as expected\n");
    return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string path = argc > 1 ? argv[1] : "09_alerting.sqlite";
    const bool retry = argc > 2 && std::strcmp(argv[2], "--retry") == 0;
    return retry ? retry_stored(path) : send_batch(path);
}
