// The test doubles users test their code with: faults aimed at one recipient or a predicate
// (a batch sends several requests at once, so "the next request" is whichever lands first),
// mail assertions with readable failures, GET /__requests, and the fake server program's
// fault syntax.
#include <sendgrid_backend/backend.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/testing/fake_server_cli.hpp>
#include <sendgrid_backend/testing/outbox.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "catch.hpp"

namespace sg = sendgrid_backend;
using sg::testing::FakeSendgridServer;
using sg::testing::Fault;

namespace {

sg::EmailMessage mail(const std::string& subject, const std::string& to) {
    return sg::EmailMessage(subject, "Body", "shop@example.com", {to});
}

sg::SendgridBackend backend_for(const FakeSendgridServer& server) {
    sg::Settings settings = server.settings();
    settings.max_in_flight = 8;
    settings.retry.max_tries = 1;
    sg::BackendOptions options;
    options.fail_silently = true;
    return sg::SendgridBackend(settings, options);
}

}  // namespace

TEST_CASE("settings() points a backend at the server and leaves every other setting at its default",
          "[testing][settings]") {
    FakeSendgridServer server("SG.settings-test-key");
    const sg::Settings settings = server.settings();
    CHECK(settings.host_url == server.url());
    CHECK(settings.api_key == "SG.settings-test-key");
    const sg::Settings defaults;
    CHECK(settings.timeout == defaults.timeout);
    CHECK(settings.max_in_flight == defaults.max_in_flight);
    CHECK(settings.retry.max_tries == defaults.retry.max_tries);
    CHECK(settings.sandbox_mode == defaults.sandbox_mode);

    const sg::SendgridBackend backend(settings);
    sg::EmailMessage message = mail("Welcome", "jane@example.com");
    CHECK(backend.send_message(message));
    const auto received = server.received();  // counted where it landed, with the key it carried
    REQUIRE(received.size() == 1);
    CHECK(received[0].message_id == message.outcome.message_id);
    CHECK(sg::find_header(received[0].headers, "Authorization") == "Bearer SG.settings-test-key");
}

TEST_CASE("a fault for one recipient hits that recipient's message in a concurrent batch",
          "[testing][faults]") {
    FakeSendgridServer server;
    server.push_fault(Fault(400).for_recipient("Bounce@Example.com"));
    const auto backend = backend_for(server);
    std::vector<sg::EmailMessage> batch;
    for (int i = 0; i < 12; ++i)
        batch.push_back(mail("m" + std::to_string(i), "u" + std::to_string(i) + "@example.com"));
    batch.push_back(mail("the one", "bounce@example.com"));
    CHECK(backend.send_messages(batch) == 12);
    CHECK(batch.back().outcome.http_status == 400);
    for (std::size_t i = 0; i + 1 < batch.size(); ++i) CHECK(batch[i].outcome.accepted());
}

TEST_CASE("targeted faults count down; untargeted ones still take the next request",
          "[testing][faults]") {
    FakeSendgridServer server;
    Fault twice(503);
    twice.times = 2;
    server.push_fault(twice.for_recipient("x@example.com"));
    server.push_fault(Fault(429).when([](const sg::testing::ReceivedRequest& request) {
        return request.payload.value("subject", "") == "limited";
    }));
    server.push_fault(Fault(500));  // the next request that no fault before it applies to
    sg::Settings settings = server.settings();
    settings.max_in_flight = 1;
    settings.retry.max_tries = 1;
    sg::BackendOptions options;
    options.fail_silently = true;
    const sg::SendgridBackend backend(settings, options);
    std::vector<sg::EmailMessage> batch{
        mail("a", "y@example.com"), mail("b", "x@example.com"),       mail("c", "x@example.com"),
        mail("d", "x@example.com"), mail("limited", "z@example.com"), mail("e", "z@example.com")};
    backend.send_messages(batch);
    CHECK(batch[0].outcome.http_status == 500);  // untargeted: the first request
    CHECK(batch[1].outcome.http_status == 503);
    CHECK(batch[2].outcome.http_status == 503);
    CHECK(batch[3].outcome.http_status == 202);  // used up
    CHECK(batch[4].outcome.http_status == 429);
    CHECK(batch[5].outcome.http_status == 202);
}

TEST_CASE("mail assertions: filters, counts, and failures that list what was sent",
          "[testing][assertions]") {
    auto outbox = std::make_shared<sg::testing::OutboxTransport>();
    sg::Settings settings;
    settings.api_key = "SG.x";
    sg::BackendOptions options;
    options.transport = outbox;
    const sg::SendgridBackend backend(settings, options);
    std::vector<sg::EmailMessage> batch{mail("Welcome", "jane@example.com"),
                                        mail("Invoice", "jane@example.com"),
                                        mail("Welcome", "bob@example.com")};
    batch[2].cc = {"Boss <boss@example.com>"};
    backend.send_messages(batch);

    const auto sent = outbox->sent();
    CHECK(sent.count() == 3);
    CHECK(sent.to("JANE@example.com").count() == 2);
    CHECK(sent.to("boss@example.com").only().subject() == "Welcome");
    CHECK(sent.with_subject("Welcome").to("jane@example.com").count() == 1);
    CHECK(sent[0].message_id == "outbox-0");
    CHECK(sent[2].recipients() == std::vector<std::string>{"bob@example.com", "boss@example.com"});
    CHECK_NOTHROW(sent.assert_count(3).assert_sent_to("bob@example.com"));
    CHECK_NOTHROW(sent.to("nobody@example.com").assert_nothing_sent());

    try {
        sent.with_subject("Welcome").to("carl@example.com").assert_count(1);
        FAIL("no MailAssertionFailed");
    } catch (const sg::testing::MailAssertionFailed& failure) {
        const std::string text = failure.what();
        CHECK(text ==
              "[sendgrid_backend.mail_assertion] expected 1 mail with subject 'Welcome', to "
              "carl@example.com, found none; 3 mails were sent:\n"
              "  [0] 'Welcome' to jane@example.com\n"
              "  [1] 'Invoice' to jane@example.com\n"
              "  [2] 'Welcome' to bob@example.com, boss@example.com");
    }
    CHECK_THROWS_WITH(sent.to("jane@example.com").only(),
                      Catch::Contains("expected 1 mail to jane@example.com, found 2; 3 mails"));
    CHECK_THROWS_WITH(sent.to("jane@example.com").assert_nothing_sent(),
                      Catch::Contains("expected no mail to jane@example.com, found 2;"));
    CHECK_THROWS_WITH(sent.assert_count(2),
                      Catch::Contains("expected 2 mails, found 3; 3 mails were sent:\n  [0]"));

    // Nothing sent at all: said in words, not as an empty list.
    const sg::testing::SentMails none;
    CHECK_THROWS_WITH(none.assert_count(1),
                      "[sendgrid_backend.mail_assertion] expected 1 mail, "
                      "but no mail was sent");
    CHECK_THROWS_WITH(none.assert_sent_to("jane@example.com"),
                      "[sendgrid_backend.mail_assertion] expected a mail to jane@example.com, but "
                      "no mail was sent");
    CHECK_THROWS_WITH(sg::testing::SentMails({sg::testing::SentMail{}}).assert_nothing_sent(),
                      "[sendgrid_backend.mail_assertion] expected no mail, found 1; 1 mail was "
                      "sent:\n  [0] '' to nobody");
}

TEST_CASE("the fake server's sent() and GET /__requests report what arrived, key hidden",
          "[testing][http]") {
    FakeSendgridServer server;
    server.push_fault(Fault(400).for_recipient("bounce@example.com"));
    const auto backend = backend_for(server);
    std::vector<sg::EmailMessage> batch{mail("ok", "jane@example.com"),
                                        mail("no", "bounce@example.com")};
    backend.send_messages(batch);
    CHECK(server.sent().only().subject() == "ok");
    CHECK(server.sent().only().message_id == batch[0].outcome.message_id);

    httplib::Client client("127.0.0.1", server.port());
    const auto answer = client.Get("/__requests");
    REQUIRE(answer);
    const auto list = nlohmann::json::parse(answer->body);
    REQUIRE(list.size() == 2);
    std::multiset<int> statuses;
    for (const auto& request : list) {
        statuses.insert(request["status"].get<int>());
        CHECK(request["headers"]["Authorization"] == "[hidden]");
    }
    CHECK(statuses == std::multiset<int>{202, 400});
    CHECK(answer->body.find(server.api_key()) == std::string::npos);
    CHECK(client.Delete("/__requests")->status == 204);
    CHECK(server.received_count() == 0);
}

TEST_CASE("display names with ',' or ';' go over the wire and the fake server takes them",
          "[testing][http][names]") {
    FakeSendgridServer server;
    const auto backend = backend_for(server);
    sg::EmailMessage message("Names", "Body", "\"Shop, Inc.\" <shop@example.com>",
                             {"\"Doe, John\" <john@example.com>", "Doe; Jane <jane@example.com>"},
                             {"Roe, Rick <rick@example.com>"},
                             {"\"Say \\\"hi\\\"; Bob\" <bob@example.com>"});
    message.reply_to = {"\"Help, Desk\" <help@example.com>"};
    CHECK(backend.send_message(message));
    CHECK(message.outcome.http_status == 202);

    // Counted where it landed: one request, accepted, with the names as written.
    const auto received = server.received();
    REQUIRE(received.size() == 1);
    CHECK(received[0].answered_status == 202);
    const auto& payload = received[0].payload;
    CHECK(payload["from"]["name"] == "Shop, Inc.");
    CHECK(payload["reply_to"]["name"] == "Help, Desk");
    const auto& personalization = payload["personalizations"][0];
    CHECK(personalization["to"][0] ==
          nlohmann::json({{"email", "john@example.com"}, {"name", "Doe, John"}}));
    CHECK(personalization["to"][1]["name"] == "Doe; Jane");
    CHECK(personalization["cc"][0]["name"] == "Roe, Rick");
    CHECK(personalization["bcc"][0]["name"] == "Say \"hi\"; Bob");
    CHECK(server.sent().only().recipients() ==
          std::vector<std::string>{"john@example.com", "jane@example.com", "rick@example.com",
                                   "bob@example.com"});

    // Straight to the server, as other clients send them (older ones wrapped such names in
    // quotes themselves): accepted too.
    httplib::Client client("127.0.0.1", server.port());
    const httplib::Headers headers = {{"Authorization", "Bearer " + server.api_key()}};
    nlohmann::json raw = payload;
    raw["personalizations"][0]["to"][0]["name"] = "\"Doe, John\"";
    raw["personalizations"][0]["cc"][0]["name"] = "a;b,c";
    const auto answer = client.Post("/v3/mail/send", headers, raw.dump(), "application/json");
    REQUIRE(answer);
    CHECK(answer->status == 202);
    CHECK(server.received_count() == 2);
}

TEST_CASE("the fake server takes no JSON text followed by a NUL byte and more", "[testing][http]") {
    FakeSendgridServer server;
    httplib::Client client("127.0.0.1", server.port());
    const httplib::Headers headers = {{"Authorization", "Bearer " + server.api_key()}};
    const std::string payload = sg::serialize_payload(mail("ok", "jane@example.com"));
    const std::string with_nul = payload + std::string(1, '\0') + "junk";
    const auto refused = client.Post("/v3/mail/send", headers, with_nul, "application/json");
    const auto taken = client.Post("/v3/mail/send", headers, payload, "application/json");
    REQUIRE(refused);
    REQUIRE(taken);
    CHECK(refused->status == 400);
    CHECK(taken->status == 202);
    const auto received = server.received();
    REQUIRE(received.size() == 2);
    CHECK(received[0].body == with_nul);
    CHECK(received[0].payload.is_null());
    CHECK(received[1].payload.is_object());
}

TEST_CASE("a fake server on a chosen port, and the per-request hook", "[testing][http]") {
    int port = 0;
    {
        FakeSendgridServer any;  // find a free port
        port = any.port();
    }
    std::vector<int> seen;
    std::mutex seen_mutex;
    sg::testing::FakeServerOptions options;
    options.port = port;
    options.on_request = [&](const sg::testing::ReceivedRequest& request) {
        std::lock_guard<std::mutex> lock(seen_mutex);
        seen.push_back(request.answered_status);
    };
    FakeSendgridServer server(options);
    CHECK(server.port() == port);
    const auto backend = backend_for(server);
    sg::EmailMessage message = mail("hi", "jane@example.com");
    CHECK(backend.send_message(message));
    std::lock_guard<std::mutex> lock(seen_mutex);
    CHECK(seen == std::vector<int>{202});
}

TEST_CASE("the fake server program's --fault syntax", "[testing][cli]") {
    using sg::testing::detail::parse_fault_spec;
    Fault fault;
    std::string error;
    REQUIRE(parse_fault_spec("429,retry-after=1,times=2,delay=30", fault, error));
    CHECK(fault.status == 429);
    CHECK(fault.retry_after_seconds == 1);
    CHECK(fault.times == 2);
    CHECK(fault.delay == std::chrono::milliseconds(30));
    CHECK_FALSE(fault.matches);

    Fault targeted;
    REQUIRE(parse_fault_spec("400,to=bounce@example.com", targeted, error));
    sg::testing::ReceivedRequest request;
    request.payload = {{"personalizations", {{{"to", {{{"email", "bounce@example.com"}}}}}}}};
    CHECK(targeted.matches(request));
    request.payload["personalizations"][0]["to"][0]["email"] = "jane@example.com";
    CHECK_FALSE(targeted.matches(request));

    Fault slow;
    REQUIRE(parse_fault_spec("delay=2000,drop", slow, error));
    CHECK(slow.status == 0);
    CHECK(slow.drop_connection);

    for (const char* bad : {"", "99", "600", "abc", "429,times=x", "429,colour=red", "400,to="}) {
        INFO(bad);
        Fault ignored;
        CHECK_FALSE(parse_fault_spec(bad, ignored, error));
        CHECK_FALSE(error.empty());
    }

    // Every number has a bound, inclusive, and a refusal names the setting and its range.
    Fault widest;
    REQUIRE(parse_fault_spec("599,times=1000000,delay=3600000,retry-after=86400", widest, error));
    CHECK(widest.times == 1'000'000);
    CHECK(widest.delay == std::chrono::hours(1));
    CHECK(widest.retry_after_seconds == 86'400);
    const std::pair<const char*, const char*> refusals[] = {
        {"600", "'600' is out of range; give an HTTP status 100-599"},
        {"4o4", "'4o4' is not a number; give an HTTP status 100-599"},
        {"429,times=0", "times: '0' is out of range; give a count 1-1000000"},
        {"429,times=1000001", "times: '1000001' is out of range; give a count 1-1000000"},
        {"200,delay=3600001", "delay: '3600001' is out of range; give milliseconds 0-3600000"},
        {"429,retry-after=86401", "retry-after: '86401' is out of range; give seconds 0-86400"},
        {"429,retry-after=99999999999999999999",
         "retry-after: '99999999999999999999' is out of range; give seconds 0-86400"},
        {"429,times=-1", "times: '-1' is out of range; give a count 1-1000000"},
        {"429,times",
         "'times' is not a fault setting (the status comes first, then times=N, "
         "delay=MS, retry-after=S, to=ADDRESS or drop)"},
    };
    for (const auto& [spec, expected] : refusals) {
        INFO(spec);
        Fault ignored;
        CHECK_FALSE(parse_fault_spec(spec, ignored, error));
        CHECK(error == expected);
    }
}
