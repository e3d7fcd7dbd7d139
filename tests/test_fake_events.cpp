// The fake server after the 202: the events each recipient gets (rules), the signed Event
// Webhook batches a receiver built on EventWebhook verifies, the client's retries, duplicates
// and shuffling seen at the receiver, send_at and batches, and the JSON endpoints the mail
// viewer page reads.
#include <sendgrid_backend/backend.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/testing/fake_server_cli.hpp>
#include <sendgrid_backend/transport/curl.hpp>
#include <sendgrid_backend/webhook.hpp>

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <ctime>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "catch.hpp"

namespace sg = sendgrid_backend;
using sg::testing::EventRule;
using sg::testing::FakeSendgridServer;
using sg::testing::FakeServerOptions;

namespace fake_events_test {

/// One POST the receiver got, and what it answered.
struct Post {
    sg::HttpHeaders headers;
    std::string body;
    int answered = 0;
};

/// The receiving end: an httplib::Server on 127.0.0.1 handing each POST to an EventWebhook
/// (made once the fake server's key is known), after answering `fail_next` statuses first.
class Receiver {
  public:
    Receiver() {
        server_.Post(
            "/events", [this](const httplib::Request& request, httplib::Response& response) {
                Post post;
                for (const auto& [name, value] : request.headers)
                    post.headers.emplace_back(name, value);
                post.body = request.body;
                std::unique_lock<std::mutex> lock(mutex_);
                if (!failures_.empty()) {
                    post.answered = failures_.front();
                    failures_.pop_front();
                } else if (!webhook_) {
                    post.answered = 503;  // trust() not called yet
                } else {
                    const sg::WebhookResult result = webhook_->handle(post.headers, post.body);
                    post.answered = result.http_status;
                    duplicates_ += result.duplicates;
                    for (const auto& event : result.events) events_.push_back(event);
                }
                response.status = post.answered;
                posts_.push_back(std::move(post));
                changed_.notify_all();
            });
        port_ = server_.bind_to_any_port("127.0.0.1");
        if (port_ <= 0) throw sg::TestingSetupError("Receiver: cannot bind 127.0.0.1");
        thread_ = std::thread([this] { server_.listen_after_bind(); });
        while (!server_.is_running()) std::this_thread::yield();
    }
    ~Receiver() {
        server_.stop();
        thread_.join();
    }
    Receiver(const Receiver&) = delete;
    Receiver& operator=(const Receiver&) = delete;

    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/events"; }

    /// Verify with `public_key` from now on (base64 DER, as the fake server gives it).
    void trust(const std::string& public_key,
               std::shared_ptr<sg::StatusTracker> statuses = nullptr) {
        sg::WebhookOptions options;
        options.public_key = public_key;
        options.statuses = std::move(statuses);
        std::lock_guard<std::mutex> lock(mutex_);
        webhook_ = std::make_unique<sg::EventWebhook>(options);
    }
    void fail_next(std::vector<int> statuses) {
        std::lock_guard<std::mutex> lock(mutex_);
        failures_.assign(statuses.begin(), statuses.end());
    }
    /// Waits for `count` new (de-duplicated) events; false after 5 s.
    bool wait_for_events(std::size_t count) {
        std::unique_lock<std::mutex> lock(mutex_);
        return changed_.wait_for(lock, std::chrono::seconds(5),
                                 [&] { return events_.size() >= count; });
    }
    std::vector<sg::WebhookEvent> events() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return events_;
    }
    std::vector<Post> posts() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return posts_;
    }
    std::size_t duplicates() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return duplicates_;
    }
    const sg::EventWebhook& webhook() const { return *webhook_; }

  private:
    httplib::Server server_;
    std::thread thread_;
    int port_ = 0;
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::unique_ptr<sg::EventWebhook> webhook_;
    std::deque<int> failures_;
    std::vector<Post> posts_;
    std::vector<sg::WebhookEvent> events_;
    std::size_t duplicates_ = 0;
};

FakeServerOptions posting_to(const Receiver& receiver) {
    FakeServerOptions options;
    options.webhook_url = receiver.url();
    options.webhook.max_batch_wait = std::chrono::milliseconds(50);
    options.webhook.first_retry = std::chrono::milliseconds(20);
    return options;
}

sg::EmailMessage mail(const std::string& subject, std::vector<std::string> to) {
    return sg::EmailMessage(subject, "Body", "shop@example.com", std::move(to));
}

/// Sends `message` through SendgridBackend; its X-Message-Id.
std::string send(const FakeSendgridServer& server, sg::EmailMessage& message) {
    const sg::SendgridBackend backend(server.settings());
    REQUIRE(backend.send_message(message));
    REQUIRE_FALSE(message.outcome.message_id.empty());
    return message.outcome.message_id;
}

// The fake server's clock: time() reads a coarser clock that can still say the last second
// for a moment after system_clock has moved on (a flaky send_at check once).
std::int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

httplib::Headers bearer(const FakeSendgridServer& server) {
    return {{"Authorization", "Bearer " + server.api_key()}};
}

nlohmann::json raw_mail(const std::string& to) {
    return {{"personalizations", {{{"to", {{{"email", to}}}}}}},
            {"from", {{"email", "shop@example.com"}}},
            {"subject", "Raw"},
            {"content", {{{"type", "text/plain"}, {"value", "Hi"}}}}};
}

/// The recipient statuses of GET /__messages/{id}, by address.
std::map<std::string, std::string> statuses(const FakeSendgridServer& server,
                                            const std::string& message_id) {
    std::map<std::string, std::string> by_address;
    const nlohmann::json message = server.message_json(message_id);
    for (const auto& recipient : message["recipients"]) {
        by_address[recipient["email"].get<std::string>()] = recipient["status"].get<std::string>();
    }
    return by_address;
}

}  // namespace fake_events_test

using namespace fake_events_test;

TEST_CASE("a sent message's events arrive signed, verified with the key the server gives",
          "[fake_events][webhook]") {
    Receiver receiver;
    FakeSendgridServer server(posting_to(receiver));
    receiver.trust(server.webhook_public_key());

    sg::EmailMessage message = mail("Welcome", {"jane@example.com"});
    message.categories = {"welcome"};
    message.custom_args = {{"order_id", "42"}};
    const std::string message_id = send(server, message);

    REQUIRE(receiver.wait_for_events(2));
    const auto events = receiver.events();
    REQUIRE(events.size() == 2);
    CHECK(events[0].event == "processed");
    CHECK(events[1].event == "delivered");
    std::set<std::string> ids;
    for (const auto& event : events) {
        CHECK(sg::belongs_to(event, message_id));  // sg_message_id starts with the X-Message-Id
        CHECK(event.email == "jane@example.com");
        CHECK(event.categories == std::vector<std::string>{"welcome"});
        // The message's custom_args, and the tracking key the backend added.
        CHECK(event.custom_args ==
              std::map<std::string, std::string>{
                  {"order_id", "42"}, {"sendgrid_backend_key", message.outcome.tracking_key}});
        const nlohmann::json raw = event.json();
        CHECK(raw["order_id"] == "42");  // at the top level, as SendGrid puts it
        CHECK(raw["category"] == "welcome");
        CHECK(raw["smtp-id"].get<std::string>().find(message_id) != std::string::npos);
        CHECK(event.timestamp >= unix_now() - 60);
        ids.insert(event.sg_event_id);
    }
    CHECK(ids.size() == 2);
    CHECK(server.message_json(message_id)["events"].size() == 2);

    // The receiver refuses a tampered body and a replay outside the window; an exact replay
    // within it adds no event.
    const Post post = receiver.posts().at(0);
    CHECK(post.answered == 200);
    std::string tampered = post.body;
    tampered[tampered.find("jane")] = 'J';
    CHECK(receiver.webhook().handle(post.headers, tampered).http_status == 401);
    const sg::WebhookResult replay = receiver.webhook().handle(post.headers, post.body);
    CHECK(replay.accepted());
    CHECK(replay.events.empty());
    CHECK(replay.duplicates == 2);
    sg::WebhookOptions later;
    later.public_key = server.webhook_public_key();
    later.now = [] { return unix_now() + 3600; };
    CHECK(sg::EventWebhook(later).handle(post.headers, post.body).refusal ==
          sg::WebhookRefusal::stale_timestamp);
    sg::WebhookOptions other_key;
    other_key.public_key = FakeSendgridServer().webhook_public_key();
    CHECK(sg::EventWebhook(other_key).handle(post.headers, post.body).http_status == 401);
}

TEST_CASE("rules choose each recipient's events: bounce@, blocked@, by address, by predicate",
          "[fake_events][rules]") {
    FakeServerOptions options;
    options.event_rules.push_back(
        EventRule({"processed", "deferred", "delivered"}).for_recipient("Slow@Example.com"));
    options.event_rules.push_back(EventRule({"dropped"}).for_recipient("*@blocked.example"));
    options.event_rules.push_back(EventRule({"processed", "delivered", "open"})
                                      .when([](const sg::testing::EventRecipient& recipient) {
                                          return recipient.payload.value("subject", "") ==
                                                 "Newsletter";
                                      }));
    FakeSendgridServer server(options);

    sg::EmailMessage message =
        mail("Receipt", {"jane@example.com", "bounce@example.com", "blocked@example.com",
                         "slow@example.com", "anyone@blocked.example"});
    const std::string id = send(server, message);
    REQUIRE(server.wait_for_events(id, 2 + 2 + 2 + 3 + 1));
    CHECK(statuses(server, id) ==
          std::map<std::string, std::string>{{"jane@example.com", "delivered"},
                                             {"bounce@example.com", "bounce"},
                                             {"blocked@example.com", "blocked"},
                                             {"slow@example.com", "delivered"},
                                             {"anyone@blocked.example", "dropped"}});
    std::vector<std::string> bounces;
    const nlohmann::json events = server.message_json(id)["events"];
    for (const auto& event : events) {
        if (event["event"] == "bounce") {
            bounces.push_back(event["email"].get<std::string>() + " " +
                              event["type"].get<std::string>());
            CHECK_FALSE(event["reason"].get<std::string>().empty());
        }
        if (event["event"] == "deferred") CHECK(event["email"] == "slow@example.com");
    }
    CHECK(bounces ==
          std::vector<std::string>{"bounce@example.com bounce", "blocked@example.com blocked"});

    sg::EmailMessage newsletter = mail("Newsletter", {"jane@example.com"});
    const std::string newsletter_id = send(server, newsletter);
    REQUIRE(server.wait_for_events(newsletter_id, 3));
    CHECK(statuses(server, newsletter_id)["jane@example.com"] == "open");
}

TEST_CASE("a batch answered 500 twice arrives three times; then nothing more",
          "[fake_events][webhook][retry]") {
    Receiver receiver;
    FakeSendgridServer server(posting_to(receiver));
    receiver.trust(server.webhook_public_key());
    receiver.fail_next({500, 500});

    sg::EmailMessage message = mail("Retry", {"jane@example.com"});
    send(server, message);
    REQUIRE(receiver.wait_for_events(2));
    REQUIRE(server.wait_for_webhook_idle());
    const auto posts = receiver.posts();
    REQUIRE(posts.size() == 3);
    CHECK(posts[0].answered == 500);
    CHECK(posts[1].answered == 500);
    CHECK(posts[2].answered == 200);
    CHECK(posts[1].body == posts[0].body);  // the same batch, signed again
    CHECK(posts[2].body == posts[0].body);
    const auto totals = server.webhook_totals();
    CHECK(totals.posts == 3);
    CHECK(totals.accepted_posts == 1);
    CHECK(totals.abandoned_batches == 0);
}

TEST_CASE("duplicates and shuffled batches reach the receiver, which keeps each event once",
          "[fake_events][webhook][misbehave]") {
    Receiver receiver;
    FakeServerOptions options = posting_to(receiver);
    options.webhook.duplicate_probability = 1;
    options.webhook.shuffle = true;
    options.webhook.seed = 7;
    FakeSendgridServer server(options);
    receiver.trust(server.webhook_public_key());

    std::vector<std::string> to;
    for (int i = 0; i < 10; ++i) to.push_back("user" + std::to_string(i) + "@example.com");
    sg::EmailMessage message = mail("Many", to);
    const std::string id = send(server, message);
    REQUIRE(receiver.wait_for_events(20));
    REQUIRE(server.wait_for_webhook_idle());

    std::vector<std::string> fired;
    const nlohmann::json message_events = server.message_json(id)["events"];
    for (const auto& event : message_events) fired.push_back(event["sg_event_id"]);
    std::vector<std::string> posted;
    std::multiset<std::string> every_copy;
    for (const auto& post : receiver.posts()) {
        for (const auto& event : nlohmann::json::parse(post.body)) {
            if (posted.size() < fired.size()) posted.push_back(event["sg_event_id"]);
            every_copy.insert(event["sg_event_id"].get<std::string>());
        }
    }
    REQUIRE(fired.size() == 20);
    CHECK(posted != fired);  // a different order
    CHECK(std::multiset<std::string>(posted.begin(), posted.end()) ==
          std::multiset<std::string>(fired.begin(), fired.end()));
    for (const auto& event_id : fired) CHECK(every_copy.count(event_id) == 2);  // each twice
    CHECK(receiver.events().size() == 20);  // EventWebhook dropped the copies
    CHECK(receiver.duplicates() == 20);
    CHECK(server.webhook_totals().duplicate_posts >= 1);
}

TEST_CASE("batches are cut at max_batch_events and max_batch_bytes", "[fake_events][webhook]") {
    Receiver receiver;
    FakeServerOptions options = posting_to(receiver);
    options.webhook.max_batch_events = 3;
    options.webhook.max_batch_bytes = 2000;  // a few events of about 400 bytes each
    FakeSendgridServer server(options);
    receiver.trust(server.webhook_public_key());

    std::vector<std::string> to;
    for (int i = 0; i < 6; ++i) to.push_back("user" + std::to_string(i) + "@example.com");
    sg::EmailMessage message = mail("Batches", to);
    message.custom_args = {{"padding", std::string(300, 'x')}};
    send(server, message);
    REQUIRE(receiver.wait_for_events(12));
    REQUIRE(server.wait_for_webhook_idle());
    std::size_t events = 0;
    for (const auto& post : receiver.posts()) {
        const auto batch = nlohmann::json::parse(post.body);
        CHECK(batch.size() >= 1);
        CHECK(batch.size() <= 3);
        CHECK((batch.size() == 1 || post.body.size() <= 2000));
        events += batch.size();
    }
    CHECK(events == 12);
    CHECK(receiver.posts().size() >= 4);
}

namespace {

/// A server whose webhook at 127.0.0.1:`port` gets each event at once and whose stop gives the
/// webhook 200 ms.
FakeServerOptions stopping_options(int port) {
    FakeServerOptions options;
    options.webhook_url = "http://127.0.0.1:" + std::to_string(port) + "/events";
    options.webhook.max_batch_wait = std::chrono::milliseconds(1);
    options.webhook.stop_budget = std::chrono::milliseconds(200);
    return options;
}

/// How long a server made with `options` takes to stop (be destroyed) once it has accepted a
/// message, fired its events and run `then`. Only the stop is timed: making the server and
/// sending take longer on a loaded machine, and are not what these tests bound.
template <class Then>
std::chrono::steady_clock::duration time_to_stop(const FakeServerOptions& options, Then then) {
    std::optional<FakeSendgridServer> server(std::in_place, options);
    sg::EmailMessage message = mail("Nobody answers", {"jane@example.com"});
    const std::string id = send(*server, message);
    REQUIRE(server->wait_for_events(id, 2));
    then(*server);
    const auto started = std::chrono::steady_clock::now();
    server.reset();
    return std::chrono::steady_clock::now() - started;
}

}  // namespace

TEST_CASE("stopping the server does not wait long for a dead webhook", "[fake_events][webhook]") {
    // A port bound but never listening: every connection is refused, and no other socket
    // of this process can take the port while the test runs.
    const int bound = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof address;
    REQUIRE(::bind(bound, reinterpret_cast<sockaddr*>(&address), size) == 0);
    REQUIRE(::getsockname(bound, reinterpret_cast<sockaddr*>(&address), &size) == 0);
    const int dead_port = ntohs(address.sin_port);
    FakeServerOptions options = stopping_options(dead_port);
    options.webhook.first_retry = std::chrono::milliseconds(10);
    // Bounded by stop_budget (200 ms) plus one connection attempt; without it, the 24 h of
    // retrying. The bound leaves room for a loaded machine.
    CHECK(time_to_stop(options, [](FakeSendgridServer&) {}) < std::chrono::seconds(10));
    ::close(bound);
}

TEST_CASE("stopping the server cuts off a webhook that never answers", "[fake_events][webhook]") {
    std::mutex mutex;
    std::condition_variable released;
    bool release = false;
    httplib::Server hanging;
    hanging.Post("/events", [&](const httplib::Request&, httplib::Response& response) {
        std::unique_lock<std::mutex> lock(mutex);
        released.wait(lock, [&] { return release; });
        response.status = 200;
    });
    const int port = hanging.bind_to_any_port("127.0.0.1");
    std::thread serving([&] { hanging.listen_after_bind(); });
    FakeServerOptions options = stopping_options(port);
    options.webhook.request_timeout = std::chrono::minutes(1);
    // Bounded by stop_budget (200 ms); without the cut-off, the request's minute.
    CHECK(time_to_stop(options, [](FakeSendgridServer& server) {
              CHECK_FALSE(server.wait_for_webhook_idle(std::chrono::milliseconds(100)));
          }) < std::chrono::seconds(10));
    {
        std::lock_guard<std::mutex> lock(mutex);
        release = true;
    }
    released.notify_all();
    hanging.stop();
    serving.join();
}

TEST_CASE("send_at: scheduled until then, refused beyond 72 hours; batches paused, cancelled",
          "[fake_events][schedule]") {
    FakeSendgridServer server;
    httplib::Client client("127.0.0.1", server.port());

    nlohmann::json too_late = raw_mail("jane@example.com");
    too_late["send_at"] = unix_now() + 72 * 3600 + 60;
    const auto refused =
        client.Post("/v3/mail/send", bearer(server), too_late.dump(), "application/json");
    REQUIRE(refused);
    CHECK(refused->status == 400);
    CHECK(nlohmann::json::parse(refused->body)["errors"][0]["field"] == "send_at");

    nlohmann::json unknown_batch = raw_mail("jane@example.com");
    unknown_batch["batch_id"] = "no-such-batch";
    const auto unknown =
        client.Post("/v3/mail/send", bearer(server), unknown_batch.dump(), "application/json");
    REQUIRE(unknown);
    CHECK(unknown->status == 400);
    CHECK(nlohmann::json::parse(unknown->body)["errors"][0]["field"] == "batch_id");

    auto new_batch = [&] {
        const auto made = client.Post("/v3/mail/batch", bearer(server), "", "application/json");
        REQUIRE(made);
        REQUIRE(made->status == 201);
        return nlohmann::json::parse(made->body)["batch_id"].get<std::string>();
    };
    auto set_batch = [&](const std::string& batch, const std::string& status) {
        const auto set = client.Post("/v3/user/scheduled_sends", bearer(server),
                                     nlohmann::json{{"batch_id", batch}, {"status", status}}.dump(),
                                     "application/json");
        REQUIRE(set);
        CHECK(set->status / 100 == 2);
    };
    // Seconds ahead, so that the checks before send_at are made before it on a loaded machine.
    const std::int64_t send_at = unix_now() + 3;
    auto schedule = [&](const std::string& to, const std::string& batch) {
        nlohmann::json body = raw_mail(to);
        body["send_at"] = send_at;
        if (!batch.empty()) body["batch_id"] = batch;
        const auto sent =
            client.Post("/v3/mail/send", bearer(server), body.dump(), "application/json");
        REQUIRE(sent);
        REQUIRE(sent->status == 202);
        return sent->get_header_value("X-Message-Id");
    };
    const std::string paused_batch = new_batch();
    const std::string cancelled_batch = new_batch();
    set_batch(paused_batch, "pause");
    set_batch(cancelled_batch, "cancel");
    const std::string plain = schedule("plain@example.com", "");
    const std::string paused = schedule("paused@example.com", paused_batch);
    const std::string cancelled = schedule("cancelled@example.com", cancelled_batch);

    CHECK(statuses(server, plain)["plain@example.com"] == "scheduled");
    CHECK(server.message_json(plain)["send_at"] == send_at);
    CHECK(server.message_json(paused)["batch_id"] == paused_batch);
    CHECK(statuses(server, cancelled)["cancelled@example.com"] == "cancelled");

    REQUIRE(server.wait_for_events(plain, 2));
    CHECK(unix_now() >= send_at);
    CHECK(statuses(server, plain)["plain@example.com"] == "delivered");
    // send_at passed: the paused batch holds its message, the cancelled one never sends.
    CHECK_FALSE(server.wait_for_events(paused, 1, std::chrono::milliseconds(300)));
    CHECK(statuses(server, paused)["paused@example.com"] == "scheduled");
    CHECK(server.message_json(cancelled)["events"].empty());

    const auto resumed =
        client.Delete(("/v3/user/scheduled_sends/" + paused_batch).c_str(), bearer(server));
    REQUIRE(resumed);
    CHECK(resumed->status == 204);
    REQUIRE(server.wait_for_events(paused, 2));
    CHECK(statuses(server, paused)["paused@example.com"] == "delivered");
    CHECK(server.message_json(cancelled)["events"].empty());
    CHECK(statuses(server, cancelled)["cancelled@example.com"] == "cancelled");
}

TEST_CASE("the JSON endpoints: messages, search, one message, attachments, events on demand",
          "[fake_events][endpoints]") {
    FakeServerOptions options;
    options.max_messages = 2;
    FakeSendgridServer server(options);
    httplib::Client client("127.0.0.1", server.port());

    sg::EmailMessage first = mail("First", {"old@example.com"});
    send(server, first);
    sg::EmailMessage receipt = mail("Your receipt", {"jane@example.com", "joe@example.com"});
    receipt.categories = {"Billing"};
    receipt.attach("receipt.txt", "paid in full", "text/plain");
    receipt.attach_alternative("<p>Paid</p>", "text/html");
    const std::string id = send(server, receipt);
    sg::EmailMessage hello = mail("Hello", {"ann@example.com"});
    const std::string hello_id = send(server, hello);
    REQUIRE(server.wait_for_events(id, 4));

    const auto all = client.Get("/__messages");
    REQUIRE(all);
    CHECK(all->status == 200);
    // Only by a loopback name (no DNS rebinding), and events only from a JSON post (no
    // cross-site form).
    const auto rebound = client.Get("/__messages", {{"Host", "attacker.example"}});
    REQUIRE(rebound);
    CHECK(rebound->status == 403);
    const auto foreign_page = client.Get("/", {{"Host", "attacker.example:80"}});
    REQUIRE(foreign_page);
    CHECK(foreign_page->status == 403);
    CHECK(client.Get("/", {{"Host", "localhost:" + std::to_string(server.port())}})->status == 200);
    const auto form = client.Post(
        "/__events",
        nlohmann::json{{"message_id", id}, {"email", "jane@example.com"}, {"event", "open"}}.dump(),
        "text/plain");
    REQUIRE(form);
    CHECK(form->status == 415);
    const auto listed = nlohmann::json::parse(all->body);
    REQUIRE(listed["messages"].size() == 2);  // max_messages: the oldest went
    CHECK(listed["dropped"] == 1);
    CHECK(listed["max_messages"] == 2);
    CHECK(listed["messages"][0]["message_id"] == hello_id);  // newest first
    CHECK(listed["messages"][1]["message_id"] == id);
    CHECK(listed["messages"][1]["from"] == "shop@example.com");
    CHECK_FALSE(listed["messages"][1].contains("send_at"));
    CHECK_FALSE(listed["messages"][1].contains("batch_id"));
    for (const char* query : {"billing", "JOE@", "receipt"}) {
        const auto found = nlohmann::json::parse(
            client.Get((std::string("/__messages?q=") + query).c_str())->body);
        INFO(query);
        REQUIRE(found["messages"].size() == 1);
        CHECK(found["messages"][0]["message_id"] == id);
    }

    const auto one = client.Get(("/__messages/" + id).c_str());
    REQUIRE(one);
    REQUIRE(one->status == 200);
    const auto detail = nlohmann::json::parse(one->body);
    CHECK(detail["subject"] == "Your receipt");
    CHECK(detail["text"] == "Body");
    CHECK(detail["html"] == "<p>Paid</p>");
    CHECK(detail["categories"] == nlohmann::json{"Billing"});
    CHECK(detail["request"]["headers"]["Authorization"] == "Bearer ***");
    CHECK(detail["request"]["payload"]["attachments"][0]["content"] == 12);
    CHECK(detail["attachments"] ==
          nlohmann::json{
              {{"index", 0}, {"filename", "receipt.txt"}, {"type", "text/plain"}, {"size", 12}}});
    CHECK(detail["events"].size() == 4);
    CHECK(one->body.find(server.api_key()) == std::string::npos);
    CHECK(client.Get("/__messages/nope")->status == 404);

    const auto attachment = client.Get(("/__messages/" + id + "/attachments/0").c_str());
    REQUIRE(attachment);
    CHECK(attachment->status == 200);
    CHECK(attachment->body == "paid in full");
    CHECK(attachment->get_header_value("Content-Type") == "text/plain");
    CHECK(attachment->get_header_value("Content-Disposition") ==
          "attachment; filename=\"receipt.txt\"");
    CHECK(client.Get(("/__messages/" + id + "/attachments/1").c_str())->status == 404);

    auto fire = [&](const nlohmann::json& body) {
        return client.Post("/__events", body.dump(), "application/json");
    };
    const auto clicked = fire({{"message_id", id},
                               {"email", "Joe@Example.com"},
                               {"event", "click"},
                               {"url", "https://example.com/pay"}});
    REQUIRE(clicked);
    CHECK(clicked->status == 202);
    const auto click = nlohmann::json::parse(clicked->body)["events"];
    REQUIRE(click.size() == 1);
    CHECK(click[0]["event"] == "click");
    CHECK(click[0]["url"] == "https://example.com/pay");
    CHECK(click[0]["email"] == "joe@example.com");
    CHECK(statuses(server, id)["joe@example.com"] == "click");
    CHECK(server.message_json(id)["events"].back() == click[0]);
    CHECK(fire({{"message_id", id}, {"email", "joe@example.com"}, {"event", "explode"}})->status ==
          400);
    CHECK(client.Post("/__events", "{", "application/json")->status == 400);
    CHECK(fire({{"message_id", "nope"}, {"email", "joe@example.com"}, {"event", "open"}})->status ==
          404);
    CHECK(fire({{"message_id", id}, {"email", "nobody@example.com"}, {"event", "open"}})->status ==
          404);

    const auto page = client.Get("/");
    REQUIRE(page);
    CHECK(page->status == 200);
    CHECK(page->get_header_value("Content-Type").rfind("text/html", 0) == 0);
    CHECK(page->body == std::string(sg::testing::detail::mail_viewer_html()));

    CHECK(client.Delete("/__requests")->status == 204);
    const auto emptied = nlohmann::json::parse(client.Get("/__messages")->body);
    CHECK(emptied["messages"].empty());
    CHECK(emptied["dropped"] == 0);
    CHECK(client.Get(("/__messages/" + id).c_str())->status == 404);
}

TEST_CASE("the fake server's event flags: rules, misbehaviour, bounds, each refusal names its flag",
          "[fake_events][cli]") {
    auto parse = [](std::vector<const char*> args) {
        args.insert(args.begin(), "sendgrid-fake-server");
        return sg::testing::detail::parse_fake_server_command_line(static_cast<int>(args.size()),
                                                                   args.data());
    };
    const auto line =
        parse({"--webhook", "http://127.0.0.1:9/hook", "--webhook-key-out", "/tmp/key",
               "--event-rule", "jane@example.com=processed+bounce",
               "--event-rule=*@example.org=dropped", "--webhook-duplicates", "0.25",
               "--webhook-shuffle", "--webhook-retry-for=60", "--max-messages", "100"});
    CHECK(line.options.webhook_url == "http://127.0.0.1:9/hook");
    CHECK(line.webhook_key_out == "/tmp/key");
    REQUIRE(line.options.event_rules.size() == 2);
    CHECK(line.options.event_rules[0].events == std::vector<std::string>{"processed", "bounce"});
    const nlohmann::json payload = nlohmann::json::object();
    CHECK(line.options.event_rules[0].matches({"JANE@example.com", payload}));
    CHECK_FALSE(line.options.event_rules[0].matches({"joe@example.com", payload}));
    CHECK(line.options.event_rules[1].matches({"x@example.org", payload}));
    CHECK(line.options.webhook.duplicate_probability == 0.25);
    CHECK(line.options.webhook.shuffle);
    CHECK(line.options.webhook.retry_for == std::chrono::seconds(60));
    CHECK(line.options.max_messages == std::size_t{100});

    auto refusal = [&](std::vector<const char*> args) {
        try {
            parse(std::move(args));
        } catch (const sg::detail::UsageError& error) {
            const std::string what = error.what();  // "[sendgrid_backend.usage] --flag: ..."
            return what.substr(what.find("] ") + 2);
        }
        return std::string("accepted");
    };
    CHECK(refusal({"--webhook", "https://example.com/"}).rfind("--webhook 'https://", 0) == 0);
    CHECK(refusal({"--webhook", "127.0.0.1:8080"}).find("must start with http://") !=
          std::string::npos);
    CHECK(refusal({"--webhook", "http://127.0.0.1:99999/"}).find("1-65535") != std::string::npos);
    CHECK(refusal({"--event-rule", "jane@example.com=processed+explode"}) ==
          "--event-rule 'jane@example.com=processed+explode': 'explode' is not an event "
          "(processed, delivered, deferred, bounce, blocked, dropped, open, click, spamreport, "
          "unsubscribe, group_unsubscribe)");
    CHECK(refusal({"--event-rule", "bounce"}).rfind("--event-rule 'bounce': needs ADDRESS=", 0) ==
          0);
    CHECK(refusal({"--webhook-duplicates", "1.5"}) ==
          "--webhook-duplicates: '1.5' is not a probability 0-1 (e.g. 0.2)");
    CHECK(refusal({"--webhook-shuffle=yes"}).rfind("--webhook-shuffle takes no value", 0) == 0);
    CHECK(refusal({"--max-messages", "0"}).rfind("--max-messages: ", 0) == 0);
    CHECK(refusal({"--webhook-retry-for", "86401"}).rfind("--webhook-retry-for: ", 0) == 0);
    CHECK(refusal({"--webhook-key-out", "/tmp/key"}).rfind("--webhook-key-out: ", 0) == 0);
    const std::string usage = sg::testing::detail::fake_server_usage;
    for (const char* flag :
         {"--webhook URL", "--webhook-key-out FILE", "--event-rule", "--webhook-duplicates P",
          "--webhook-shuffle", "--webhook-retry-for S", "--max-messages N"}) {
        CHECK(usage.find(flag) != std::string::npos);
    }
}

TEST_CASE("the whole loop: a send, its events (copied, shuffled), one status, real changes only",
          "[fake_events][status]") {
    Receiver receiver;
    FakeServerOptions options = posting_to(receiver);
    options.webhook.duplicate_probability = 1;
    options.webhook.shuffle = true;
    options.webhook.seed = 11;
    options.event_rules.push_back(EventRule({"processed", "deferred", "delivered", "open", "click"})
                                      .for_recipient("reader@example.com"));
    FakeSendgridServer server(options);  // bounce@ bounces
    auto tracker = std::make_shared<sg::StatusTracker>();
    receiver.trust(server.webhook_public_key(), tracker);

    std::mutex mutex;
    std::vector<std::tuple<std::string, sg::RecipientState, sg::RecipientState>> changes;
    sg::ScopedConnection log = sg::sendgrid_status_changed.connect(
        [&](const std::string&, const std::string& recipient, const sg::RecipientState& before,
            const sg::RecipientState& after, const sg::StatusEvent&) {
            std::lock_guard<std::mutex> lock(mutex);
            changes.emplace_back(recipient, before, after);
        });
    sg::BackendOptions backend_options;
    backend_options.statuses = tracker;
    const sg::SendgridBackend backend(server.settings(), backend_options);
    sg::EmailMessage message =
        mail("Loop", {"jane@example.com", "Reader <reader@example.com>", "bounce@example.com"});
    REQUIRE(backend.send_message(message));
    const std::string key = message.outcome.tracking_key;
    CHECK(key.size() == 32);
    CHECK(server.received_count() == 1);  // one request reached the server
    CHECK(server.message_json(
              message.outcome.message_id)["request"]["payload"]["personalizations"][0]
                                         ["custom_args"]["sendgrid_backend_key"] == key);

    REQUIRE(receiver.wait_for_events(2 + 5 + 2));
    REQUIRE(server.wait_for_webhook_idle());
    CHECK(receiver.duplicates() == 9);  // every event came twice

    const auto status = tracker->status(key);
    REQUIRE(status);
    CHECK(status->send.state == sg::DeliveryState::accepted);
    CHECK(status->send.message_id == message.outcome.message_id);
    CHECK(status->send.http_status == 202);
    REQUIRE(status->recipients.size() == 3);
    CHECK(status->recipient("jane@example.com")->state == sg::DeliveryState::delivered);
    const sg::RecipientStatus& reader = *status->recipient("reader@example.com");
    CHECK(reader.state == sg::DeliveryState::delivered);
    CHECK(reader.open.count == 1);
    CHECK(reader.click.count == 1);
    CHECK(reader.deferred.count == 1);
    const sg::RecipientStatus& bounced = *status->recipient("bounce@example.com");
    CHECK(bounced.state == sg::DeliveryState::bounced);
    CHECK_FALSE(bounced.reason.empty());
    CHECK(status->summary().rfind("accepted; delivered to 2 of 3; bounced: bounce@example.com (",
                                  0) == 0);
    // Once each: the send (its own fact and each recipient's), each event, and what the events
    // say of the send.
    CHECK(tracker->store().applied_facts() == (1 + 3) + 9 + 1);

    // Each signal was a real change, and each recipient's last one is where it ended.
    std::lock_guard<std::mutex> lock(mutex);
    std::map<std::string, std::set<sg::DeliveryState>> reached;
    for (const auto& [recipient, before, after] : changes) {
        CHECK(before != after);
        reached[recipient].insert(after.state);
    }
    CHECK(reached["reader@example.com"].count(sg::DeliveryState::delivered) == 1);
    CHECK(reached["bounce@example.com"].count(sg::DeliveryState::bounced) == 1);
    CHECK(reached[""] == std::set<sg::DeliveryState>{sg::DeliveryState::accepted});
}
