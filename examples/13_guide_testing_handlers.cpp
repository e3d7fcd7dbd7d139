// 13 — the signals guide, 8 of 8: testing your signal handlers, with Catch2. The handler under
// test counts failed mail per recipient; the tests show four ways in:
//   1. call it through the signal by hand (no backend send at all),
//   2. ScopedConnection, so a test's handler is gone when the test ends,
//   3. the in-memory outbox (OutboxTransport), like Django's mail.outbox,
//   4. a real round trip over HTTP through FakeSendgridServer, with a fault for one recipient,
// plus what a test sees when fail_silently is off (the default): a SendError.
#include <sendgrid_backend/sendgrid_backend.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/testing/outbox.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <map>
#include <memory>
#include <string>

#include "catch.hpp"

namespace sg = sendgrid_backend;

// --- The code under test: an application's handler. ----------------------------------------
struct FailureCounter {
    std::map<std::string, int> failures;

    void on_email_sent(const sg::SendgridBackend&, const sg::EmailMessage& message,
                       bool fail_flag) {
        if (!fail_flag) return;
        for (const auto& address : message.to) ++failures[address];
    }
};

// --- Helpers a test suite would keep. ---------------------------------------------------------
namespace {

/// A backend whose mail never leaves the process.
sg::SendgridBackend backend_with(std::shared_ptr<sg::Transport> transport, bool fail_silently) {
    sg::Settings settings;
    settings.api_key = "SG.test";
    sg::BackendOptions options;
    options.transport = std::move(transport);
    options.fail_silently = fail_silently;
    return sg::SendgridBackend(settings, options);
}

sg::EmailMessage mail_to(const std::string& to) {
    return sg::EmailMessage("Hello", "Body", "shop@example.com", {to});
}

}  // namespace

TEST_CASE("1. the handler, called through the signal by hand", "[guide]") {
    FailureCounter counter;
    sg::ScopedConnection connection = sg::sendgrid_email_sent.connect(
        [&](const sg::SendgridBackend& sender, const sg::EmailMessage& message, bool failed) {
            counter.on_email_sent(sender, message, failed);
        });
    const auto backend = backend_with(std::make_shared<sg::testing::OutboxTransport>(), true);
    sg::EmailMessage message = mail_to("jane@example.com");
    message.outcome.status = sg::SendStatus::rejected;  // as the backend would record it

    sg::sendgrid_email_sent.send(backend, message, true);
    sg::sendgrid_email_sent.send(backend, message, false);

    CHECK(counter.failures == std::map<std::string, int>{{"jane@example.com", 1}});
}

TEST_CASE("2. a ScopedConnection leaves no handler behind", "[guide]") {
    const std::size_t before = sg::sendgrid_email_sent.num_handlers();
    {
        FailureCounter counter;
        sg::ScopedConnection connection = sg::sendgrid_email_sent.connect(
            [&](const sg::SendgridBackend& s, const sg::EmailMessage& m, bool f) {
                counter.on_email_sent(s, m, f);
            });
        CHECK(sg::sendgrid_email_sent.num_handlers() == before + 1);
    }
    CHECK(sg::sendgrid_email_sent.num_handlers() == before);
}

TEST_CASE("3. through the backend into the outbox", "[guide]") {
    FailureCounter counter;
    sg::ScopedConnection connection =
        sg::sendgrid_email_sent.connect([&](const sg::SendgridBackend& s, const sg::EmailMessage& m,
                                            bool f) { counter.on_email_sent(s, m, f); });
    auto outbox = std::make_shared<sg::testing::OutboxTransport>();
    const auto backend = backend_with(outbox, true);
    std::vector<sg::EmailMessage> batch{mail_to("jane@example.com"), mail_to("not-an-address")};

    CHECK(backend.send_messages(batch) == 1);

    // What left the process: one mail, to jane (the other was refused before sending).
    REQUIRE_NOTHROW(outbox->sent().assert_count(1).assert_sent_to("jane@example.com"));
    CHECK(outbox->sent().to("jane@example.com").only().subject() == "Hello");
    CHECK(counter.failures == std::map<std::string, int>{{"not-an-address", 1}});
}

TEST_CASE("4. a real round trip over HTTP, with a fault for one recipient", "[guide]") {
    FailureCounter counter;
    sg::ScopedConnection connection =
        sg::sendgrid_email_sent.connect([&](const sg::SendgridBackend& s, const sg::EmailMessage& m,
                                            bool f) { counter.on_email_sent(s, m, f); });
    sg::testing::FakeSendgridServer server;  // SendGrid's contract on 127.0.0.1
    server.push_fault(sg::testing::Fault(400).for_recipient("bounce@example.com"));
    sg::BackendOptions options;
    options.fail_silently = true;
    const sg::SendgridBackend backend(server.settings(), options);
    std::vector<sg::EmailMessage> batch{mail_to("jane@example.com"), mail_to("bounce@example.com"),
                                        mail_to("bob@example.com")};

    CHECK(backend.send_messages(batch) == 2);

    CHECK(server.received_count() == 3);  // counted where the requests landed
    REQUIRE_NOTHROW(server.sent().assert_count(2).assert_sent_to("bob@example.com"));
    CHECK(counter.failures == std::map<std::string, int>{{"bounce@example.com", 1}});
    CHECK(batch[1].outcome.http_status == 400);
}

TEST_CASE("fail_silently is off by default: a test sees SendError after every emission",
          "[guide]") {
    int emissions = 0;
    sg::ScopedConnection connection = sg::sendgrid_email_sent.connect(
        [&](const sg::SendgridBackend&, const sg::EmailMessage&, bool) { ++emissions; });
    const auto backend = backend_with(std::make_shared<sg::testing::OutboxTransport>(), false);
    std::vector<sg::EmailMessage> batch{mail_to("jane@example.com"), mail_to("nobody")};
    try {
        backend.send_messages(batch);
        FAIL("expected a SendError");
    } catch (const sg::SendError& error) {
        REQUIRE(error.failures().size() == 1);
        CHECK(error.failures()[0].index == 1);
        CHECK(error.failures()[0].status == sg::SendStatus::invalid);
        CHECK(error.failures()[0].reason.rfind("to[0]: 'nobody' is not a valid email address", 0) ==
              0);
    }
    CHECK(emissions == 2);  // both were emitted before the exception
}

TEST_CASE("a failed mail assertion says what was sent", "[guide]") {
    auto outbox = std::make_shared<sg::testing::OutboxTransport>();
    const auto backend = backend_with(outbox, true);
    sg::EmailMessage message = mail_to("jane@example.com");
    backend.send_message(message);
    CHECK_THROWS_WITH(outbox->sent().assert_sent_to("bob@example.com"),
                      Catch::Contains("expected a mail to bob@example.com") &&
                          Catch::Contains("[0] 'Hello' to jane@example.com"));
}
