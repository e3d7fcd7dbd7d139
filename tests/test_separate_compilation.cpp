// A program built with SENDGRID_BACKEND_SEPARATE_COMPILATION: this unit only declares the send
// path (tests/support/compiled_elsewhere.sh checks its object file),
// separate_compilation_source.cpp compiles it once. Sending must behave as header-only, counted at
// the fake server.
#include <sendgrid_backend/sendgrid_backend.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "catch.hpp"

#if !defined(SENDGRID_BACKEND_SEPARATE_COMPILATION) || SENDGRID_BACKEND_DEFINE_COMPILED
#error "this unit must be built with SENDGRID_BACKEND_SEPARATE_COMPILATION, without compiled.hpp"
#endif

namespace sg = sendgrid_backend;
using namespace std::chrono_literals;

namespace {

sg::Settings settings_for(const sg::testing::FakeSendgridServer& server) {
    sg::Settings settings = server.settings();
    settings.timeout = 5000ms;
    return settings;
}

struct Emission {
    std::string subject;
    bool fail_flag;
};

}  // namespace

TEST_CASE(
    "built separately, a batch reaches the server once per valid message and each message "
    "is emitted once",
    "[separate_compilation][http]") {
    sg::testing::FakeSendgridServer server;
    sg::BackendOptions options;
    options.fail_silently = true;
    const sg::SendgridBackend backend(settings_for(server), options);
    std::vector<Emission> emitted;
    const sg::ScopedConnection counting = sg::sendgrid_email_sent.connect(
        [&](const sg::SendgridBackend&, const sg::EmailMessage& message, bool fail_flag) {
            emitted.push_back({message.subject, fail_flag});
        });

    std::vector<sg::EmailMessage> batch{
        sg::EmailMessage("one", "Body", "shop@example.com", {"jane@example.com"}),
        sg::EmailMessage("bad", "Body", "shop@example.com", {"not an address"}),
        sg::EmailMessage("two", "Body", "shop@example.com", {"joe@example.com"}),
    };
    CHECK(backend.send_messages(batch) == 2);

    // Both are in flight at once: the server may have either first.
    std::map<std::string, nlohmann::json> received;
    for (const auto& request : server.received()) received[request.message_id] = request.payload;
    REQUIRE(received.size() == 2);
    REQUIRE(received.count(batch[0].outcome.message_id) == 1);
    REQUIRE(received.count(batch[2].outcome.message_id) == 1);
    // What went out is build_payload's JSON with the message's tracking key in its custom_args.
    auto as_sent = [&](sg::EmailMessage message) {
        message.custom_args[backend.settings().tracking_arg] = message.outcome.tracking_key;
        return backend.build_payload(message);
    };
    CHECK(received[batch[0].outcome.message_id] == as_sent(batch[0]));
    CHECK(received[batch[2].outcome.message_id] == as_sent(batch[2]));
    CHECK(batch[1].outcome.status == sg::SendStatus::invalid);
    CHECK(batch[1].outcome.failure_reason.find("to[0]") != std::string::npos);
    REQUIRE(emitted.size() == 3);
    CHECK(emitted[0].subject == "bad");  // refused before sending: emitted first
    CHECK(emitted[0].fail_flag);
    CHECK_FALSE(emitted[1].fail_flag);
    CHECK_FALSE(emitted[2].fail_flag);
}

TEST_CASE("built separately, a refused send throws SendError from the compiled unit",
          "[separate_compilation][http]") {
    sg::testing::FakeSendgridServer server;
    server.push_fault(sg::testing::Fault{400});
    const sg::SendgridBackend backend(settings_for(server));
    sg::EmailMessage message("refused", "Body", "shop@example.com", {"jane@example.com"});
    CHECK_THROWS_AS(backend.send_message(message), sg::SendError);
    CHECK(server.received_count() == 1);
    CHECK(message.outcome.http_status == 400);
}

TEST_CASE("built separately, bad settings are refused naming the setting",
          "[separate_compilation]") {
    sg::Settings settings;
    settings.api_key = "SG.test";
    settings.max_in_flight = 0;
    try {
        const sg::SendgridBackend backend(settings);
        FAIL("max_in_flight 0 was accepted");
    } catch (const sg::ImproperlyConfigured& refused) {
        CHECK(refused.setting() == "Settings::max_in_flight");
    }
}
