#pragma once

// The signals guide's database log (example 07, used again by 09): one row per send in an
// `email_send_log` table, written by a sendgrid_email_sent handler through a prepared statement.

#include <sendgrid_backend/sendgrid_backend.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <ctime>
#include <string>

#include "sqlite.hpp"

namespace example {

/// ISO 8601 UTC time, e.g. "2026-11-29T10:15:00Z".
inline std::string utc_now_iso(std::time_t when = std::time(nullptr)) {
    std::tm parts{};
    gmtime_r(&when, &parts);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &parts);
    return text;
}

class EmailLog {
  public:
    explicit EmailLog(Database& db) : insert_(create_table(db), insert_sql) {}

    /// Connects record() to sendgrid_email_sent once (dispatch_uid "email_log").
    sendgrid_backend::Connection connect() {
        return sendgrid_backend::sendgrid_email_sent.connect(
            "email_log", [this](const sendgrid_backend::SendgridBackend&,
                                const sendgrid_backend::EmailMessage& message,
                                bool fail_flag) { record(message, fail_flag); });
    }

    /// One row: the guide's columns, with the real failure reason (HTTP status and SendGrid's
    /// errors[] as JSON), and the outcome's status name instead of a bare success/failed.
    void record(const sendgrid_backend::EmailMessage& message, bool fail_flag) {
        const sendgrid_backend::SendOutcome& outcome = message.outcome;
        nlohmann::json errors = nlohmann::json::array();
        for (const auto& error : outcome.errors) {
            errors.push_back({{"message", error.message}, {"field", error.field}});
        }
        const auto text_or_null = [](const std::string& text) -> Value {
            if (text.empty()) return nullptr;
            return text;
        };
        insert_
            .bind({message.subject, nlohmann::json(message.recipients()).dump(), message.from_email,
                   std::string(sendgrid_backend::to_string(outcome.status)),
                   std::int64_t{fail_flag ? 0 : 1}, text_or_null(outcome.message_id),
                   static_cast<std::int64_t>(std::time(nullptr)), utc_now_iso(),
                   std::int64_t{outcome.http_status}, text_or_null(outcome.failure_reason),
                   errors.empty() ? Value(nullptr) : Value(errors.dump()),
                   text_or_null(message.template_id), nlohmann::json(message.categories).dump(),
                   nlohmann::json(message.custom_args).dump()})
            .run();
    }

  private:
    static sqlite3* create_table(Database& db) {
        db.execute(
            "CREATE TABLE IF NOT EXISTS email_send_log ("
            " id INTEGER PRIMARY KEY,"
            " subject TEXT, recipients TEXT, sender TEXT,"
            " status TEXT NOT NULL, success INTEGER NOT NULL, sendgrid_message_id TEXT,"
            " send_time INTEGER NOT NULL, send_time_iso TEXT NOT NULL,"
            " http_status INTEGER, failure_reason TEXT, errors TEXT,"
            " template_id TEXT, categories TEXT, custom_args TEXT)");
        return db.handle();
    }

    static constexpr const char* insert_sql =
        "INSERT INTO email_send_log (subject, recipients, sender, status, success,"
        " sendgrid_message_id, send_time, send_time_iso, http_status, failure_reason, errors,"
        " template_id, categories, custom_args) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)";

    Statement insert_;
};

}  // namespace example
