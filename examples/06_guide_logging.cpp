// 06 — the signals guide, 1 of 8: basic logging. One handler logs every send with spdlog:
// SUCCESS or FAILED, the subject, the recipients, SendGrid's message id, and why it failed.
//
// Runs against a local FakeSendgridServer that refuses mail to bounce@example.com.
#include <sendgrid_backend/sendgrid_backend.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace sg = sendgrid_backend;

namespace {

std::string join(const std::vector<std::string>& items) {
    std::string joined;
    for (const auto& item : items) joined += (joined.empty() ? "" : ", ") + item;
    return joined;
}

std::size_t count(const std::string& text, const std::string& word) {
    std::size_t found = 0;
    for (auto at = text.find(word); at != std::string::npos; at = text.find(word, at + 1)) ++found;
    return found;
}

}  // namespace

int main() {
    sg::testing::FakeSendgridServer sendgrid;
    sendgrid.push_fault(sg::testing::Fault(400).for_recipient("bounce@example.com"));

    // The log goes to stdout and, so that this example can check itself, to a string.
    std::ostringstream captured;
    auto logger = std::make_shared<spdlog::logger>(
        "email",
        spdlog::sinks_init_list{std::make_shared<spdlog::sinks::stdout_sink_mt>(),
                                std::make_shared<spdlog::sinks::ostream_sink_mt>(captured)});

    // The guide's handler.
    sg::ScopedConnection logging = sg::sendgrid_email_sent.connect(
        "log_email_status",
        [&](const sg::SendgridBackend&, const sg::EmailMessage& message, bool fail_flag) {
            const std::string to = join(message.recipients());
            if (fail_flag) {
                logger->error("FAILED '{}' to {}: {}", message.subject, to,
                              message.outcome.failure_reason);
            } else {
                logger->info("SUCCESS '{}' to {} (message id {})", message.subject, to,
                             message.outcome.message_id);
            }
        });

    sg::BackendOptions options;
    options.fail_silently = true;
    const sg::SendgridBackend backend(sendgrid.settings(), options);

    std::vector<sg::EmailMessage> batch;
    batch.emplace_back("Welcome", "Hello!", "shop@example.com",
                       std::vector<std::string>{"jane@example.com"},
                       std::vector<std::string>{"team@example.com"});
    batch.emplace_back("Your receipt", "Thanks.", "shop@example.com",
                       std::vector<std::string>{"bob@example.com"});
    batch.emplace_back("Newsletter", "News.", "shop@example.com",
                       std::vector<std::string>{"bounce@example.com"});
    backend.send_messages(batch);
    logger->flush();

    const std::string log = captured.str();
    const bool ok =
        count(log, "SUCCESS") == 2 && count(log, "FAILED") == 1 &&
        log.find("to jane@example.com, team@example.com (message id " +
                 batch[0].outcome.message_id + ")") != std::string::npos &&
        log.find("FAILED 'Newsletter' to bounce@example.com: HTTP 400") != std::string::npos;
    std::cout << (ok ? "log as expected\n" : "unexpected log\n");
    return ok ? 0 : 1;
}
