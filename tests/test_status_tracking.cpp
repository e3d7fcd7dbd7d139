// Tracking keys on sent messages (Settings::tracking_keys) and the backend recording each
// outcome in a status tracker (BackendOptions::statuses) before sendgrid_email_sent fires.
#include <sendgrid_backend/backend.hpp>
#include <sendgrid_backend/status/tracker.hpp>
#include <sendgrid_backend/testing/outbox.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "catch.hpp"

namespace sg = sendgrid_backend;

namespace {

struct Sending {
    std::shared_ptr<sg::testing::OutboxTransport> outbox =
        std::make_shared<sg::testing::OutboxTransport>();
    std::shared_ptr<sg::StatusTracker> tracker = std::make_shared<sg::StatusTracker>();

    sg::SendgridBackend backend(sg::Settings settings = {}) const {
        settings.api_key = "SG.test";
        sg::BackendOptions options;
        options.transport = outbox;
        options.statuses = tracker;
        options.fail_silently = true;
        return sg::SendgridBackend(settings, options);
    }
};

/// The custom_args a request carries: the backend writes them in each personalization.
nlohmann::json args_of(const nlohmann::json& payload) {
    return payload["personalizations"][0].value("custom_args", nlohmann::json::object());
}

sg::EmailMessage message(const std::string& subject) {
    return sg::EmailMessage(subject, "Body", "shop@example.com", {"jane@example.com"});
}

/// A message with custom_args of its own and two personalizations: ann's with custom_args of
/// its own too, then bob's with `bobs_args`.
sg::EmailMessage with_own_args(std::map<std::string, std::string> bobs_args) {
    sg::EmailMessage message("Hi", "Body", "shop@example.com", {});
    message.custom_args["campaign"] = "c1";
    sg::Personalization ann;
    ann.to = {"ann@example.com"};
    ann.custom_args["user_id"] = "7";
    sg::Personalization bob;
    bob.to = {"bob@example.com"};
    bob.custom_args = std::move(bobs_args);
    message.personalizations = {ann, bob};
    return message;
}

}  // namespace

TEST_CASE("every sent message carries a tracking key of its own, on the outcome before the signal",
          "[status][tracking]") {
    Sending sending;
    const auto backend = sending.backend();
    std::vector<std::string> seen_in_handler;
    std::vector<std::string> status_in_handler;
    sg::ScopedConnection connection = sg::sendgrid_email_sent.connect(
        [&](const sg::SendgridBackend&, const sg::EmailMessage& sent, bool) {
            seen_in_handler.push_back(sent.outcome.tracking_key);
            auto status = sending.tracker->status(sent.outcome.tracking_key);
            status_in_handler.push_back(status ? sg::to_string(status->send.state) : "none");
        });
    std::vector<sg::EmailMessage> batch{message("one"), message("two")};
    batch[1].custom_args["order"] = "42";
    CHECK(backend.send_messages(batch) == 2);
    const auto sent = sending.outbox->outbox();
    REQUIRE(sent.size() == 2);
    std::set<std::string> keys;
    for (std::size_t i = 0; i < 2; ++i) {
        const std::string key = batch[i].outcome.tracking_key;
        CHECK(key.size() == 32);
        CHECK(key.find_first_not_of("0123456789abcdef") == std::string::npos);
        CHECK(args_of(sent[i])["sendgrid_backend_key"] == key);
        keys.insert(key);
    }
    CHECK(keys.size() == 2);
    CHECK(args_of(sent[1])["order"] == "42");
    CHECK(seen_in_handler ==
          std::vector<std::string>{batch[0].outcome.tracking_key, batch[1].outcome.tracking_key});
    // Recorded before the signal: a handler can read the status.
    CHECK(status_in_handler == std::vector<std::string>{"accepted", "accepted"});
    // The key went into the request only: the message is as it was, and a second send of the
    // same object is another message with another key.
    CHECK(batch[0].custom_args.empty());
    CHECK(batch[1].custom_args.size() == 1);
    const std::string first_key = batch[0].outcome.tracking_key;
    REQUIRE(backend.send_message(batch[0]));
    CHECK(batch[0].outcome.tracking_key != first_key);

    const auto status = sending.tracker->status(first_key);
    REQUIRE(status);
    CHECK(status->send.message_id == "outbox-0");
    REQUIRE(status->recipients.size() == 1);
    CHECK(status->recipients[0].email == "jane@example.com");
    CHECK(status->recipients[0].state == sg::DeliveryState::accepted);
}

TEST_CASE("a message's own tracking key is used; an empty one is refused naming the field",
          "[status][tracking]") {
    Sending sending;
    const auto backend = sending.backend();
    sg::EmailMessage own = message("own");
    own.custom_args["sendgrid_backend_key"] = "order-42-receipt";
    REQUIRE(backend.send_message(own));
    CHECK(own.outcome.tracking_key == "order-42-receipt");
    CHECK(args_of(sending.outbox->outbox().at(0))["sendgrid_backend_key"] == "order-42-receipt");
    CHECK(sending.tracker->status("order-42-receipt"));

    sg::EmailMessage empty = message("empty");
    empty.custom_args["sendgrid_backend_key"] = "";
    CHECK_FALSE(backend.send_message(empty));
    CHECK(empty.outcome.status == sg::SendStatus::invalid);
    CHECK(empty.outcome.failure_reason.rfind("custom_args[\"sendgrid_backend_key\"]: is empty",
                                             0) == 0);
    CHECK(sending.outbox->size() == 1);

    // An invalid message with a key of its own is recorded as failed under it.
    sg::EmailMessage invalid = message("");
    invalid.from_email = "not an address";
    invalid.custom_args["sendgrid_backend_key"] = "bad-one";
    CHECK_FALSE(backend.send_message(invalid));
    const auto failed = sending.tracker->status("bad-one");
    REQUIRE(failed);
    CHECK(failed->send.state == sg::DeliveryState::failed);
    CHECK_FALSE(failed->send.reason.empty());
}

TEST_CASE("tracking keys can be turned off, or carried in another custom_arg",
          "[status][tracking]") {
    Sending sending;
    sg::Settings off;
    off.tracking_keys = false;
    sg::EmailMessage plain = message("plain");
    REQUIRE(sending.backend(off).send_message(plain));
    CHECK(plain.outcome.tracking_key.empty());
    CHECK_FALSE(sending.outbox->outbox().at(0)["personalizations"][0].contains("custom_args"));

    sg::Settings renamed;
    renamed.tracking_arg = "my_key";
    sg::EmailMessage other = message("other");
    REQUIRE(sending.backend(renamed).send_message(other));
    CHECK(args_of(sending.outbox->outbox().at(1))["my_key"] == other.outcome.tracking_key);

    sg::Settings bad;
    bad.tracking_arg = "";
    try {
        sending.backend(bad);
        FAIL("an empty tracking_arg was accepted");
    } catch (const sg::ImproperlyConfigured& error) {
        CHECK(error.setting() == "Settings::tracking_arg");
    }
    bad.tracking_arg = std::string(101, 'k');
    CHECK_THROWS_AS(sending.backend(bad), sg::ImproperlyConfigured);
    CHECK_THROWS_AS(sg::StatusTracker([] {
                        sg::StatusTrackerOptions options;
                        options.tracking_arg = "";
                        return options;
                    }()),
                    sg::ImproperlyConfigured);
}

TEST_CASE("a status store that throws is reported; the message is still emitted once",
          "[status][tracking]") {
    struct BrokenStore : sg::StatusStore {
        sg::AppliedFacts apply(const std::vector<sg::PreparedFact>&) override {
            throw std::runtime_error("store down");
        }
        std::optional<sg::StatusRecord> read(const std::string&) override { return std::nullopt; }
        std::uint64_t applied_facts() override { return 0; }
    };
    sg::StatusTrackerOptions options;
    options.store = std::make_shared<BrokenStore>();
    std::vector<std::string> errors;
    sg::Settings settings;
    settings.api_key = "SG.test";
    sg::BackendOptions backend_options;
    auto outbox = std::make_shared<sg::testing::OutboxTransport>();
    backend_options.transport = outbox;
    backend_options.statuses = std::make_shared<sg::StatusTracker>(options);
    backend_options.on_handler_error = [&](const sg::EmailMessage&, std::exception_ptr error) {
        try {
            std::rethrow_exception(error);
        } catch (const std::exception& e) {
            errors.push_back(e.what());
        }
    };
    const sg::SendgridBackend backend(settings, backend_options);
    int emitted = 0;
    sg::ScopedConnection connection = sg::sendgrid_email_sent.connect(
        [&](const sg::SendgridBackend&, const sg::EmailMessage&, bool) { ++emitted; });
    sg::EmailMessage sent = message("still sent");
    CHECK(backend.send_message(sent));
    CHECK(emitted == 1);
    CHECK(outbox->size() == 1);
    CHECK(errors == std::vector<std::string>{"store down"});
}

TEST_CASE("a status store that answers for other facts than it was given is an error, not a guess",
          "[status][tracking]") {
    struct LyingStore : sg::StatusStore {
        bool short_answer = true;
        sg::AppliedFacts apply(const std::vector<sg::PreparedFact>& facts) override {
            sg::AppliedFacts answer;
            answer.applied.assign(facts.size() - (short_answer ? 1 : 0), true);
            answer.before.resize(short_answer ? 9 : 1);
            return answer;
        }
        std::optional<sg::StatusRecord> read(const std::string&) override { return std::nullopt; }
        std::uint64_t applied_facts() override { return 0; }
    };
    auto store = std::make_shared<LyingStore>();
    sg::StatusTrackerOptions options;
    options.store = store;
    sg::StatusTracker tracker(options);
    int changes = 0;
    sg::ScopedConnection connection = sg::sendgrid_status_changed.connect(
        [&](const std::string&, const std::string&, const sg::RecipientState&,
            const sg::RecipientState&, const sg::StatusEvent&) { ++changes; });
    CHECK_THROWS_WITH(tracker.record_queue("k", sg::DeliveryState::queued),
                      Catch::Contains("breaks StatusStore's contract"));
    store->short_answer = false;  // one target, one fact: an answer of the right shape
    tracker.record_queue("k", sg::DeliveryState::queued);
    CHECK(changes == 1);
}

TEST_CASE("the tracking key reaches personalizations with custom_args of their own",
          "[status][tracking]") {
    Sending sending;
    const auto backend = sending.backend();
    sg::EmailMessage message = with_own_args({});
    REQUIRE(backend.send_message(message));
    const std::string key = message.outcome.tracking_key;
    const auto sent = sending.outbox->outbox().at(0);
    CHECK(sent["personalizations"][0]["custom_args"] ==
          nlohmann::json{{"user_id", "7"}, {"sendgrid_backend_key", key}});
    CHECK(sent["personalizations"][1]["custom_args"] ==
          nlohmann::json{{"campaign", "c1"}, {"sendgrid_backend_key", key}});
    // Added for the request only.
    CHECK(message.personalizations[0].custom_args.size() == 1);
    CHECK(message.custom_args.size() == 1);

    // A personalization's own key must be the message's.
    message.personalizations[0].custom_args["sendgrid_backend_key"] = "other";
    CHECK_FALSE(backend.send_message(message));
    CHECK(message.outcome.failure_reason.rfind(
              "personalizations[0].custom_args[\"sendgrid_backend_key\"]: differs", 0) == 0);
    message.custom_args["sendgrid_backend_key"] = "other";
    CHECK(backend.send_message(message));
    CHECK(message.outcome.tracking_key == "other");
}

TEST_CASE("a refused message keeps the custom_args it had, whichever check refuses it",
          "[status][tracking]") {
    Sending sending;
    const auto backend = sending.backend();
    // Ann's personalization would get the key, had bob's not refused it.
    sg::EmailMessage message = with_own_args({{"sendgrid_backend_key", "other"}});
    const auto before = [&] {
        return std::vector<std::map<std::string, std::string>>{
            message.custom_args, message.personalizations[0].custom_args,
            message.personalizations[1].custom_args};
    };
    const auto as_given = before();

    CHECK_FALSE(backend.send_message(message));
    CHECK(message.outcome.failure_reason.rfind(
              "personalizations[1].custom_args[\"sendgrid_backend_key\"]: differs", 0) == 0);
    CHECK(before() == as_given);

    // Placed, then refused by the payload's own checks: taken out again.
    message.personalizations[1].custom_args.clear();
    message.personalizations[0].custom_args["big"] = std::string(10'000, 'x');
    const auto with_big = before();
    CHECK_FALSE(backend.send_message(message));
    CHECK(message.outcome.status == sg::SendStatus::invalid);
    CHECK(message.outcome.failure_reason.find("personalizations[0].custom_args") !=
          std::string::npos);
    CHECK(before() == with_big);
    CHECK(sending.outbox->outbox().empty());
}

TEST_CASE("an address in several personalizations is one recipient, signalled once",
          "[status][tracking]") {
    Sending sending;
    const auto backend = sending.backend();
    sg::EmailMessage message = sg::EmailMessage("Hi", "Body", "shop@example.com", {});
    message.cc = {"Boss@example.com"};
    sg::Personalization a;
    a.to = {"a@example.com"};
    sg::Personalization b;
    b.to = {"b@example.com"};
    message.personalizations = {a, b};
    std::vector<std::string> changed;
    sg::ScopedConnection log = sg::sendgrid_status_changed.connect(
        [&](const std::string&, const std::string& recipient, const sg::RecipientState&,
            const sg::RecipientState&, const sg::StatusEvent&) { changed.push_back(recipient); });
    REQUIRE(backend.send_message(message));
    std::sort(changed.begin(), changed.end());
    CHECK(changed ==
          std::vector<std::string>{"", "a@example.com", "b@example.com", "boss@example.com"});
    CHECK(sending.tracker->status(message.outcome.tracking_key)->recipients.size() == 3);
}

TEST_CASE("keys are fresh in a forked child", "[status][tracking]") {
    const std::string before = sg::detail::random_key();  // fills this thread's pool
    int pipe_ends[2];
    REQUIRE(::pipe(pipe_ends) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        const std::string key = sg::detail::random_key();
        const ssize_t written = ::write(pipe_ends[1], key.data(), key.size());
        ::_exit(written == static_cast<ssize_t>(key.size()) ? 0 : 1);
    }
    const std::string mine = sg::detail::random_key();
    std::string theirs(32, '\0');
    CHECK(::read(pipe_ends[0], theirs.data(), theirs.size()) == 32);
    int status = 0;
    ::waitpid(child, &status, 0);
    ::close(pipe_ends[0]);
    ::close(pipe_ends[1]);
    CHECK(mine != theirs);
    CHECK(before != mine);
}
