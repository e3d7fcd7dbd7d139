// Scheduled sends: the fake server's batch and pause/cancel endpoints answer as SendGrid
// documents them (status codes, error bodies, the limit of 10), the library's ScheduledSends
// drives them through the same settings, transport and errors as mail/send and never shows the
// key, and a cancelled batch's messages never produce events while a paused one's come after
// its resume.
#include <sendgrid_backend/backend.hpp>
#include <sendgrid_backend/scheduled_sends.hpp>
#include <sendgrid_backend/testing/fake_scheduled_sends.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <ctime>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "catch.hpp"

namespace sg = sendgrid_backend;

namespace {

/// FakeScheduledSends alone on a loopback server of this test's, behind a key check.
class ScheduledSendsServer {
  public:
    ScheduledSendsServer() {
        scheduled.register_routes(
            server_, [](const httplib::Request& request, httplib::Response& response) {
                if (request.get_header_value("Authorization") == "Bearer SG.scheduled-test") {
                    return true;
                }
                response.status = 401;
                response.set_content(
                    R"({"errors":[{"field":null,"message":"authorization required"}]})",
                    "application/json");
                return false;
            });
        port_ = server_.bind_to_any_port("127.0.0.1");
        if (port_ <= 0) throw sg::TestingSetupError("cannot bind 127.0.0.1");
        thread_ = std::thread([this] { server_.listen_after_bind(); });
        while (!server_.is_running()) std::this_thread::yield();
    }
    ~ScheduledSendsServer() {
        server_.stop();
        thread_.join();
    }

    httplib::Client client(const std::string& key = "SG.scheduled-test") const {
        httplib::Client client("127.0.0.1", port_);
        client.set_bearer_token_auth(key);
        return client;
    }

    sg::testing::FakeScheduledSends scheduled;

  private:
    httplib::Server server_;
    int port_ = 0;
    std::thread thread_;
};

nlohmann::json scheduled_json(const httplib::Result& result) {
    REQUIRE(result);
    return nlohmann::json::parse(result->body);
}

std::string post_batch(httplib::Client& client) {
    const auto result = client.Post("/v3/mail/batch");
    REQUIRE(result);
    REQUIRE(result->status == 201);
    return scheduled_json(result)["batch_id"].get<std::string>();
}

httplib::Result set_scheduled(httplib::Client& client, const std::string& batch_id,
                              const std::string& status) {
    return client.Post("/v3/user/scheduled_sends",
                       nlohmann::json{{"batch_id", batch_id}, {"status", status}}.dump(),
                       "application/json");
}

/// The one error SendGrid's body carries, checked for its shape.
nlohmann::json only_error(const httplib::Result& result) {
    const nlohmann::json body = scheduled_json(result);
    REQUIRE(body.contains("errors"));
    REQUIRE(body["errors"].size() == 1);
    CHECK(body["errors"][0].contains("field"));
    CHECK(body["errors"][0]["message"].is_string());
    return body["errors"][0];
}

std::int64_t scheduled_unix_now() { return static_cast<std::int64_t>(std::time(nullptr)); }

}  // namespace

TEST_CASE("batch ids are made and validated as SendGrid does", "[scheduled_sends][fake]") {
    ScheduledSendsServer server;
    httplib::Client client = server.client();
    const std::string batch = post_batch(client);
    CHECK(batch.size() == 32);
    CHECK(
        batch.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") ==
        std::string::npos);
    CHECK(post_batch(client) != batch);
    CHECK(server.scheduled.known(batch));
    CHECK(server.scheduled.state(batch) == sg::testing::ScheduledState::none);

    auto valid = client.Get("/v3/mail/batch/" + batch);
    REQUIRE(valid);
    CHECK(valid->status == 200);
    CHECK(scheduled_json(valid) == nlohmann::json{{"batch_id", batch}});

    auto invalid = client.Get("/v3/mail/batch/neverMadeHere");
    REQUIRE(invalid);
    CHECK(invalid->status == 400);
    CHECK(only_error(invalid)["message"] == "invalid batch id");
    CHECK_FALSE(server.scheduled.known("neverMadeHere"));
}

TEST_CASE("pause, cancel, update and delete answer SendGrid's codes and bodies",
          "[scheduled_sends][fake]") {
    ScheduledSendsServer server;
    httplib::Client client = server.client();
    const std::string batch = post_batch(client);
    std::vector<std::pair<std::string, sg::testing::ScheduledState>> changes;
    server.scheduled.on_change([&](const std::string& id, sg::testing::ScheduledState state) {
        changes.emplace_back(id, state);
    });

    SECTION("POST sets a first status: 201 with the batch and status") {
        auto set = set_scheduled(client, batch, "pause");
        REQUIRE(set);
        CHECK(set->status == 201);
        CHECK(scheduled_json(set) == nlohmann::json{{"batch_id", batch}, {"status", "pause"}});
        CHECK(server.scheduled.state(batch) == sg::testing::ScheduledState::pause);
        REQUIRE(changes.size() == 1);
        CHECK(changes[0].second == sg::testing::ScheduledState::pause);

        // A second POST on a batch that has a status is refused: PATCH or DELETE change it.
        auto again = set_scheduled(client, batch, "cancel");
        REQUIRE(again);
        CHECK(again->status == 400);
        CHECK(only_error(again)["field"] == "batch_id");
        CHECK(server.scheduled.state(batch) == sg::testing::ScheduledState::pause);
    }
    SECTION("POST refuses unknown batches, other statuses and bodies that are not JSON") {
        auto unknown = set_scheduled(client, "neverMadeHere", "pause");
        REQUIRE(unknown);
        CHECK(unknown->status == 400);
        CHECK(only_error(unknown)["field"] == "batch_id");

        auto status = set_scheduled(client, batch, "stop");
        REQUIRE(status);
        CHECK(status->status == 400);
        CHECK(only_error(status)["field"] == "status");

        auto not_json = client.Post("/v3/user/scheduled_sends", "{batch", "application/json");
        REQUIRE(not_json);
        CHECK(not_json->status == 400);
        only_error(not_json);
        CHECK(server.scheduled.state(batch) == sg::testing::ScheduledState::none);
        CHECK(changes.empty());
    }
    SECTION("GET one: the status in a list; none set: an empty list; never made: 404") {
        auto none = client.Get("/v3/user/scheduled_sends/" + batch);
        REQUIRE(none);
        CHECK(none->status == 200);
        CHECK(scheduled_json(none) == nlohmann::json::array());

        REQUIRE(set_scheduled(client, batch, "cancel")->status == 201);
        auto one = client.Get("/v3/user/scheduled_sends/" + batch);
        REQUIRE(one);
        CHECK(one->status == 200);
        CHECK(scheduled_json(one) ==
              nlohmann::json::array({{{"batch_id", batch}, {"status", "cancel"}}}));

        auto unknown = client.Get("/v3/user/scheduled_sends/neverMadeHere");
        REQUIRE(unknown);
        CHECK(unknown->status == 404);
        only_error(unknown);
    }
    SECTION("PATCH changes a status (204); DELETE removes it (204); without one, 404") {
        auto patch_none = client.Patch("/v3/user/scheduled_sends/" + batch, R"({"status":"pause"})",
                                       "application/json");
        REQUIRE(patch_none);
        CHECK(patch_none->status == 404);

        REQUIRE(set_scheduled(client, batch, "pause")->status == 201);
        auto patch = client.Patch("/v3/user/scheduled_sends/" + batch, R"({"status":"cancel"})",
                                  "application/json");
        REQUIRE(patch);
        CHECK(patch->status == 204);
        CHECK(patch->body.empty());
        CHECK(server.scheduled.state(batch) == sg::testing::ScheduledState::cancel);

        auto bad = client.Patch("/v3/user/scheduled_sends/" + batch, R"({"status":"resume"})",
                                "application/json");
        REQUIRE(bad);
        CHECK(bad->status == 400);
        CHECK(only_error(bad)["field"] == "status");

        auto removed = client.Delete("/v3/user/scheduled_sends/" + batch);
        REQUIRE(removed);
        CHECK(removed->status == 204);
        CHECK(server.scheduled.state(batch) == sg::testing::ScheduledState::none);
        auto removed_again = client.Delete("/v3/user/scheduled_sends/" + batch);
        REQUIRE(removed_again);
        CHECK(removed_again->status == 404);

        REQUIRE(changes.size() == 3);
        CHECK(changes[1].second == sg::testing::ScheduledState::cancel);
        CHECK(changes[2] == std::make_pair(batch, sg::testing::ScheduledState::none));
    }
    SECTION("a request without the key gets 401 and changes nothing") {
        httplib::Client stranger = server.client("SG.someone-else");
        auto refused = set_scheduled(stranger, batch, "cancel");
        REQUIRE(refused);
        CHECK(refused->status == 401);
        auto refused_batch = stranger.Post("/v3/mail/batch");
        REQUIRE(refused_batch);
        CHECK(refused_batch->status == 401);
        CHECK(server.scheduled.state(batch) == sg::testing::ScheduledState::none);
    }
}

TEST_CASE("at most 10 batches are paused or cancelled at one time", "[scheduled_sends][fake]") {
    ScheduledSendsServer server;
    httplib::Client client = server.client();
    std::vector<std::string> batches;
    for (int i = 0; i < 11; ++i) batches.push_back(post_batch(client));
    for (int i = 0; i < 10; ++i) {
        REQUIRE(set_scheduled(client, batches[i], i % 2 == 0 ? "pause" : "cancel")->status == 201);
    }
    auto eleventh = set_scheduled(client, batches[10], "pause");
    REQUIRE(eleventh);
    CHECK(eleventh->status == 400);
    CHECK(only_error(eleventh)["message"].get<std::string>().find("10") != std::string::npos);
    CHECK(server.scheduled.state(batches[10]) == sg::testing::ScheduledState::none);

    // The list holds the ten, in the order they were set.
    auto list = client.Get("/v3/user/scheduled_sends");
    REQUIRE(list);
    CHECK(list->status == 200);
    const nlohmann::json all = scheduled_json(list);
    REQUIRE(all.size() == 10);
    CHECK(all[0] == nlohmann::json{{"batch_id", batches[0]}, {"status", "pause"}});
    CHECK(all[9] == nlohmann::json{{"batch_id", batches[9]}, {"status", "cancel"}});

    // A resumed batch frees its place.
    REQUIRE(client.Delete("/v3/user/scheduled_sends/" + batches[3])->status == 204);
    CHECK(set_scheduled(client, batches[10], "pause")->status == 201);
}

// --- the library's ScheduledSends ---

namespace {

sg::ScheduledSends scheduled_sends_for(const sg::testing::FakeSendgridServer& server) {
    sg::Settings settings = server.settings();
    settings.retry.max_tries = 1;
    return sg::ScheduledSends(settings);
}

/// Counts the requests that reach the transport, and answers with the given HTTP answers in turn.
class ScriptedScheduledTransport : public sg::Transport {
  public:
    explicit ScriptedScheduledTransport(std::vector<sg::HttpResponse> answers)
        : answers_(std::move(answers)) {}
    sg::HttpResponse send(const sg::HttpRequest& request) override {
        requests.push_back(request);
        if (answers_.empty()) throw std::runtime_error("no answer scripted");
        sg::HttpResponse answer = answers_.front();
        answers_.erase(answers_.begin());
        return answer;
    }
    std::vector<sg::HttpRequest> requests;

  private:
    std::vector<sg::HttpResponse> answers_;
};

sg::HttpResponse scheduled_answer(int status, std::string body) {
    sg::HttpResponse response;
    response.status = status;
    response.body = std::move(body);
    return response;
}

sg::ScheduledSends scheduled_sends_with(std::shared_ptr<sg::Transport> transport,
                                        const std::string& key = "SG.library-secret.key",
                                        int max_tries = 1) {
    sg::Settings settings;
    settings.api_key = key;
    settings.retry.max_tries = max_tries;
    settings.retry.initial_backoff = std::chrono::milliseconds(0);
    sg::ScheduledSendsOptions options;
    options.transport = std::move(transport);
    return sg::ScheduledSends(settings, options);
}

}  // namespace

TEST_CASE("ScheduledSends creates, pauses, cancels, resumes and lists through the fake server",
          "[scheduled_sends][library]") {
    sg::testing::FakeSendgridServer server;
    const sg::ScheduledSends scheduled = scheduled_sends_for(server);
    const std::string batch = scheduled.create_batch_id();
    CHECK(server.scheduled_sends().known(batch));
    CHECK(scheduled.batch_id_exists(batch));
    CHECK_FALSE(scheduled.batch_id_exists("neverMadeHere"));
    CHECK_FALSE(scheduled.scheduled_status(batch));

    scheduled.pause_scheduled(batch);
    CHECK(server.scheduled_sends().state(batch) == sg::testing::ScheduledState::pause);
    CHECK(scheduled.scheduled_status(batch) == sg::ScheduledSendStatus::pause);
    scheduled.pause_scheduled(batch);   // already paused: nothing to do
    scheduled.cancel_scheduled(batch);  // paused to cancelled: SendGrid's PATCH
    CHECK(server.scheduled_sends().state(batch) == sg::testing::ScheduledState::cancel);

    const std::string other = scheduled.create_batch_id();
    scheduled.pause_scheduled(other);
    const std::vector<sg::ScheduledSend> listed = scheduled.list_scheduled();
    REQUIRE(listed.size() == 2);
    CHECK(listed[0].batch_id == batch);
    CHECK(listed[0].status == sg::ScheduledSendStatus::cancel);
    CHECK(listed[1].batch_id == other);
    CHECK(listed[1].status == sg::ScheduledSendStatus::pause);

    scheduled.resume_scheduled(batch);
    CHECK(server.scheduled_sends().state(batch) == sg::testing::ScheduledState::none);
    scheduled.resume_scheduled(batch);  // nothing to remove: not an error
    CHECK(scheduled.list_scheduled().size() == 1);
}

TEST_CASE("ScheduledSends refuses a malformed batch id before sending, naming it",
          "[scheduled_sends][library]") {
    auto transport = std::make_shared<ScriptedScheduledTransport>(std::vector<sg::HttpResponse>{});
    const sg::ScheduledSends scheduled = scheduled_sends_with(transport);
    const std::string bad[] = {"", "abc/../../v3/mail/send", "has space", "ümlaut",
                               std::string(257, 'a')};
    for (const std::string& id : bad) {
        CAPTURE(id);
        try {
            scheduled.pause_scheduled(id);
            FAIL("no exception");
        } catch (const sg::InvalidArgument& error) {
            CHECK(error.argument() == "batch_id");
            CHECK(std::string(error.what()).find("batch_id: ") != std::string::npos);
        }
        CHECK_THROWS_AS(scheduled.cancel_scheduled(id), sg::InvalidArgument);
        CHECK_THROWS_AS(scheduled.resume_scheduled(id), sg::InvalidArgument);
        CHECK_THROWS_AS(scheduled.scheduled_status(id), sg::InvalidArgument);
        CHECK_THROWS_AS(scheduled.batch_id_exists(id), sg::InvalidArgument);
    }
    CHECK(transport->requests.empty());
}

TEST_CASE("ScheduledSends errors carry SendGrid's answer and never the key",
          "[scheduled_sends][library]") {
    sg::testing::FakeSendgridServer server;

    SECTION("an unknown batch, and the limit of 10") {
        const sg::ScheduledSends scheduled = scheduled_sends_for(server);
        try {
            scheduled.cancel_scheduled("neverMadeHere");
            FAIL("no exception");
        } catch (const sg::ScheduledSendsError& error) {
            CHECK(error.http_status() == 404);
            REQUIRE(error.errors().size() == 1);
            CHECK(std::string(error.what()).find("cancel_scheduled") != std::string::npos);
        }
        for (int i = 0; i < 10; ++i) scheduled.pause_scheduled(scheduled.create_batch_id());
        const std::string eleventh = scheduled.create_batch_id();
        try {
            scheduled.cancel_scheduled(eleventh);
            FAIL("no exception");
        } catch (const sg::ScheduledSendsError& error) {
            CHECK(error.http_status() == 400);
            CHECK(std::string(error.what()).find("at most 10") != std::string::npos);
        }
    }
    SECTION("a wrong key: 401, and the key used is not in the text") {
        sg::Settings settings = server.settings();
        settings.api_key = "SG.wrong-but-secret.key";
        const sg::ScheduledSends scheduled(settings);
        try {
            scheduled.create_batch_id();
            FAIL("no exception");
        } catch (const sg::ScheduledSendsError& error) {
            CHECK(error.http_status() == 401);
            CHECK(std::string(error.what()).find("SG.wrong-but-secret.key") == std::string::npos);
        }
    }
    SECTION("a server that echoes the key, and a transport that throws it: redacted") {
        const std::string key = "SG.library-secret.key";
        auto transport = std::make_shared<ScriptedScheduledTransport>(std::vector<sg::HttpResponse>{
            scheduled_answer(400, R"({"errors":[{"field":"Bearer SG.library-secret.key",)"
                                  R"("message":"bad key SG.library-secret.key"}]})")});
        const sg::ScheduledSends scheduled = scheduled_sends_with(transport, key);
        try {
            scheduled.create_batch_id();
            FAIL("no exception");
        } catch (const sg::ScheduledSendsError& error) {
            CHECK(error.http_status() == 400);
            CHECK(std::string(error.what()).find(key) == std::string::npos);
            CHECK(std::string(error.what()).find("[redacted]") != std::string::npos);
            REQUIRE(error.errors().size() == 1);
            CHECK(error.errors()[0].message.find(key) == std::string::npos);
            CHECK(error.errors()[0].field.find(key) == std::string::npos);
        }
        // The scripted transport throws once its answers run out; its text is redacted too.
        struct Thrower : sg::Transport {
            sg::HttpResponse send(const sg::HttpRequest& request) override {
                throw std::runtime_error(
                    "cannot send with " +
                    std::string(sg::find_header(request.headers, "Authorization")));
            }
        };
        const sg::ScheduledSends throwing = scheduled_sends_with(std::make_shared<Thrower>(), key);
        try {
            throwing.list_scheduled();
            FAIL("no exception");
        } catch (const sg::ScheduledSendsError& error) {
            CHECK(error.transport_error() == sg::TransportError::exception);
            CHECK(std::string(error.what()).find(key) == std::string::npos);
        }
    }
}

TEST_CASE("ScheduledSends sends SendGrid's requests and retries a 429 as mail/send does",
          "[scheduled_sends][library]") {
    auto transport = std::make_shared<ScriptedScheduledTransport>(std::vector<sg::HttpResponse>{
        scheduled_answer(429, R"({"errors":[{"field":null,"message":"too many requests"}]})"),
        scheduled_answer(201, R"({"batch_id":"HkJ5yLYULb7Rj8GKSx7u025ouWVlMgAi"})"),
        scheduled_answer(200, "[]"),
        scheduled_answer(201,
                         R"({"batch_id":"HkJ5yLYULb7Rj8GKSx7u025ouWVlMgAi","status":"pause"})"),
        scheduled_answer(200,
                         R"([{"batch_id":"HkJ5yLYULb7Rj8GKSx7u025ouWVlMgAi","status":"pause"}])"),
        scheduled_answer(204, ""),
        scheduled_answer(200, "not json"),
    });
    const sg::ScheduledSends scheduled =
        scheduled_sends_with(transport, "SG.library-secret.key", 3);
    const std::string batch = scheduled.create_batch_id();
    CHECK(batch == "HkJ5yLYULb7Rj8GKSx7u025ouWVlMgAi");
    scheduled.pause_scheduled(batch);
    scheduled.resume_scheduled(batch);
    CHECK_THROWS_AS(scheduled.list_scheduled(), sg::ScheduledSendsError);

    const auto& sent = transport->requests;
    REQUIRE(sent.size() == 7);
    const std::string base = "https://api.sendgrid.com/v3";
    CHECK((sent[0].method == "POST" && sent[0].url == base + "/mail/batch"));
    CHECK((sent[1].method == "POST" && sent[1].url == base + "/mail/batch"));  // after the 429
    CHECK((sent[2].method == "GET" && sent[2].url == base + "/user/scheduled_sends/" + batch));
    CHECK((sent[3].method == "POST" && sent[3].url == base + "/user/scheduled_sends"));
    CHECK(nlohmann::json::parse(sent[3].body) ==
          nlohmann::json{{"batch_id", batch}, {"status", "pause"}});
    CHECK(sg::find_header(sent[3].headers, "Content-Type") == "application/json");
    CHECK((sent[5].method == "DELETE" && sent[5].url == base + "/user/scheduled_sends/" + batch));
    CHECK((sent[6].method == "GET" && sent[6].url == base + "/user/scheduled_sends"));
    for (const auto& request : sent) {
        CHECK(sg::find_header(request.headers, "Authorization") == "Bearer SG.library-secret.key");
    }
}

// --- the proof, end to end ---

namespace {

/// Sends a message scheduled at `send_at` in `batch_id` through SendgridBackend (which writes
/// send_at into each personalization, and batch_id at the top) and returns its X-Message-Id.
std::string send_scheduled_mail(const sg::testing::FakeSendgridServer& server,
                                const std::string& to, std::int64_t send_at,
                                const std::string& batch_id) {
    sg::SendgridBackend backend(server.settings());
    sg::EmailMessage message("Scheduled", "Later", "shop@example.com", {to});
    message.send_at = send_at;
    message.batch_id = batch_id;
    REQUIRE(backend.send_message(message));
    REQUIRE(message.outcome.accepted());
    const nlohmann::json payload = server.received().back().payload;
    CHECK(payload["batch_id"] == batch_id);
    CHECK(payload["personalizations"][0]["send_at"] == send_at);
    return message.outcome.message_id;
}

}  // namespace

TEST_CASE("a cancelled batch gets no events; a paused one gets them after its resume",
          "[scheduled_sends][end_to_end]") {
    sg::testing::FakeSendgridServer server;
    const sg::ScheduledSends scheduled = scheduled_sends_for(server);
    const std::string cancelled_batch = scheduled.create_batch_id();
    const std::string paused_batch = scheduled.create_batch_id();
    const std::string taken_back_batch = scheduled.create_batch_id();
    // Set before the mail is sent, so that no race with send_at decides the test.
    scheduled.cancel_scheduled(cancelled_batch);
    scheduled.pause_scheduled(paused_batch);
    scheduled.cancel_scheduled(taken_back_batch);
    const std::int64_t send_at = scheduled_unix_now() + 3;
    const std::string cancelled =
        send_scheduled_mail(server, "cancelled@example.com", send_at, cancelled_batch);
    const std::string paused =
        send_scheduled_mail(server, "paused@example.com", send_at, paused_batch);
    const std::string taken_back =
        send_scheduled_mail(server, "taken-back@example.com", send_at, taken_back_batch);
    // A cancel counts at send_at (as SendGrid's): until then it can be taken back.
    scheduled.resume_scheduled(taken_back_batch);
    REQUIRE(scheduled_unix_now() < send_at);
    CHECK(server.message_json(paused)["recipients"][0]["status"] == "scheduled");
    CHECK(server.message_json(cancelled)["recipients"][0]["status"] == "cancelled");

    // Until a second past send_at: neither may get an event (waiting on the server's own
    // signal, which wakes on every event fired).
    const auto past_send_at = std::chrono::seconds(send_at + 1 - scheduled_unix_now());
    CHECK_FALSE(server.wait_for_events(cancelled, 1, past_send_at));
    CHECK_FALSE(server.wait_for_events(paused, 1, std::chrono::milliseconds(1)));
    REQUIRE(scheduled_unix_now() > send_at);
    REQUIRE(server.wait_for_events(taken_back, 2, std::chrono::seconds(5)));

    scheduled.resume_scheduled(paused_batch);
    REQUIRE(server.wait_for_events(paused, 2, std::chrono::seconds(5)));
    const nlohmann::json paused_events = server.message_json(paused)["events"];
    CHECK(paused_events[0]["event"] == "processed");
    CHECK(paused_events[1]["event"] == "delivered");

    const nlohmann::json gone = server.message_json(cancelled);
    CHECK(gone["events"].empty());
    CHECK(gone["recipients"][0]["status"] == "cancelled");
}
