// 07 — the signals guide, 2 of 8: database logging. Every send becomes a row of an SQLite file
// (email_log.hpp): subject, recipients, sender, status, SendGrid's message id, time, the real
// failure reason, template, categories and custom args. One transaction per batch.
#include <sendgrid_backend/sendgrid_backend.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "email_log.hpp"

namespace sg = sendgrid_backend;

int main(int argc, char** argv) {
    const std::string path = argc > 1 ? argv[1] : "07_email_log.sqlite";
    std::remove(path.c_str());  // a fresh file for this run

    sg::testing::FakeSendgridServer sendgrid;
    sendgrid.push_fault(sg::testing::Fault(400).for_recipient("bounce@example.com"));
    sg::BackendOptions options;
    options.fail_silently = true;
    const sg::SendgridBackend backend(sendgrid.settings(), options);

    {
        example::Database db(path);
        example::EmailLog log(db);
        sg::ScopedConnection logging = log.connect();

        std::vector<sg::EmailMessage> batch;
        batch.emplace_back("Welcome", "Hello!", "Shop <shop@example.com>",
                           std::vector<std::string>{"jane@example.com"},
                           std::vector<std::string>{"team@example.com"});
        batch.back().categories = {"welcome"};
        batch.back().custom_args = {{"user_id", "42"}};
        batch.emplace_back("", "", "shop@example.com", std::vector<std::string>{"bob@example.com"});
        batch.back().template_id = "d-receipt";
        batch.emplace_back("Newsletter", "News.", "shop@example.com",
                           std::vector<std::string>{"bounce@example.com"});
        batch.emplace_back("Typo", "Hi", "shop@example.com",
                           std::vector<std::string>{"no-at-sign.example.com"});

        example::Transaction batch_rows(db);  // one transaction for the batch's rows
        backend.send_messages(batch);
        batch_rows.commit();
    }

    // Read the file back with a connection of its own: the rows are on disk.
    example::Database db(path);
    const auto rows = db.count("SELECT COUNT(*) FROM email_send_log");
    const auto sent = db.count("SELECT COUNT(*) FROM email_send_log WHERE success = 1");
    const auto with_id =
        db.count("SELECT COUNT(*) FROM email_send_log WHERE sendgrid_message_id IS NOT NULL");
    const auto rejected = db.count(
        "SELECT COUNT(*) FROM email_send_log WHERE status = 'rejected' AND http_status = 400 "
        "AND failure_reason LIKE 'HTTP 400;%' AND errors LIKE '%message%'");
    const auto invalid = db.count(
        "SELECT COUNT(*) FROM email_send_log WHERE status = 'invalid' AND "
        "failure_reason LIKE 'to[0]: %'");
    const auto tagged = db.count(
        "SELECT COUNT(*) FROM email_send_log WHERE categories = '[\"welcome\"]' AND "
        "custom_args = '{\"user_id\":\"42\"}' AND "
        "recipients = '[\"jane@example.com\",\"team@example.com\"]'");
    const auto templated =
        db.count("SELECT COUNT(*) FROM email_send_log WHERE template_id = 'd-receipt'");

    example::Statement rows_out(db.handle(),
                                "SELECT status, subject, failure_reason FROM email_send_log");
    while (rows_out.next()) {
        std::cout << rows_out.text(0) << "  '" << rows_out.text(1) << "'  " << rows_out.text(2)
                  << '\n';
    }
    const bool ok = rows == 4 && sent == 2 && with_id == 2 && rejected == 1 && invalid == 1 &&
                    tagged == 1 && templated == 1;
    std::cout << rows << " rows in " << path << (ok ? ", as expected\n" : ", NOT as expected\n");
    return ok ? 0 : 1;
}
