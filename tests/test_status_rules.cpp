// The status rules (status/rules.hpp) as a table and as scenarios, the in-process store, the
// tracker's signal, and the property: any order and number of copies gives one status.
#include <sendgrid_backend/settings.hpp>
#include <sendgrid_backend/status/memory_store.hpp>
#include <sendgrid_backend/status/rules.hpp>
#include <sendgrid_backend/status/tracker.hpp>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "catch.hpp"
#include "support/status_property.hpp"

namespace sg = sendgrid_backend;
using sg::DeliveryState;
using status_property::event_json;
using status_property::parse;

namespace {

sg::WebhookEvent one(const nlohmann::json& event) { return parse({event}).at(0); }

struct Tracked {
    std::shared_ptr<sg::MemoryStatusStore> store = std::make_shared<sg::MemoryStatusStore>();
    sg::StatusTracker tracker{options()};

    sg::StatusTrackerOptions options() {
        sg::StatusTrackerOptions result;
        result.store = store;
        result.now = [] { return std::int64_t{1'700'000'000}; };
        return result;
    }

    /// Applies `events` one batch each, in order; returns the recipient's final status.
    sg::RecipientStatus after(const std::vector<nlohmann::json>& events,
                              const std::string& email = "a@example.com") {
        for (const auto& event : events) tracker.record(parse({event}));
        auto status = tracker.status("k");
        REQUIRE(status);
        const sg::RecipientStatus* recipient = status->recipient(email);
        REQUIRE(recipient);
        return *recipient;
    }
};

nlohmann::json ev(const std::string& type, std::int64_t t, const std::string& id,
                  nlohmann::json extra = nlohmann::json::object()) {
    return event_json("k", "a@example.com", type, t, id, std::move(extra));
}

}  // namespace

TEST_CASE("the rules table: the state each kind of event implies", "[status][rules]") {
    struct Row {
        const char* event;
        const char* bounce_type;
        DeliveryState implies;
        const char* counted;
    };
    const Row rows[] = {
        {"processed", "", DeliveryState::processed, "processed"},
        {"deferred", "", DeliveryState::deferred, "deferred"},
        {"delivered", "", DeliveryState::delivered, "delivered"},
        {"bounce", "bounce", DeliveryState::bounced, "bounce"},
        {"bounce", "blocked", DeliveryState::blocked, "bounce"},
        {"dropped", "", DeliveryState::dropped, "dropped"},
        {"open", "", DeliveryState::delivered, "open"},
        {"click", "", DeliveryState::delivered, "click"},
        {"spamreport", "", DeliveryState::delivered, "spamreport"},
        {"unsubscribe", "", DeliveryState::delivered, "unsubscribe"},
        {"group_unsubscribe", "", DeliveryState::delivered, "group_unsubscribe"},
        {"group_resubscribe", "", DeliveryState::delivered, "group_resubscribe"},
    };
    for (const Row& row : rows) {
        INFO(row.event << " " << row.bounce_type);
        const auto event = one(ev(row.event, 1, "x", {{"type", row.bounce_type}}));
        const auto rule = sg::rule_for(event);
        REQUIRE(rule);
        CHECK(rule->implies == row.implies);
        CHECK(std::string(rule->count) == row.counted);
        Tracked tracked;
        const auto status = tracked.after({ev(row.event, 5, "x", {{"type", row.bounce_type}})});
        CHECK(status.state == row.implies);
        const sg::EventCount* count =
            sg::detail::count_named(const_cast<sg::RecipientStatus&>(status), row.counted);
        REQUIRE(count);
        CHECK(count->count == 1);
        CHECK(count->first == 5);
        CHECK(count->last == 5);
    }
    CHECK(std::size(sg::event_rules) == 11);  // every EventType but group_resubscribe's twin
    // An unknown kind, an event without the key or without an address: not a fact.
    CHECK_FALSE(sg::fact_from_event(one(ev("machine_open", 1, "x")), "sendgrid_backend_key"));
    nlohmann::json keyless = ev("delivered", 1, "x");
    keyless.erase("sendgrid_backend_key");
    CHECK_FALSE(sg::fact_from_event(one(keyless), "sendgrid_backend_key"));
    // Any value is a key by its text; an empty one is none.
    nlohmann::json numeric_key = ev("delivered", 1, "x");
    numeric_key["sendgrid_backend_key"] = 42;
    const auto numeric = sg::fact_from_event(one(numeric_key), "sendgrid_backend_key");
    REQUIRE(numeric);
    CHECK(numeric->recipient.key == "42");
    nlohmann::json empty_key = ev("delivered", 1, "x");
    empty_key["sendgrid_backend_key"] = "";
    CHECK_FALSE(sg::fact_from_event(one(empty_key), "sendgrid_backend_key"));
    CHECK_FALSE(sg::fact_from_event(one(ev("delivered", 1, "x")), "other_arg"));
    CHECK(sg::fact_from_event(one(ev("delivered", 1, "x")), "sendgrid_backend_key"));
}

TEST_CASE("the rules, both ways round", "[status][rules]") {
    struct Case {
        const char* name;
        std::vector<nlohmann::json> events;
        DeliveryState state;
        const char* reason;
    };
    const std::vector<Case> cases = {
        {"delivered after deferred",
         {ev("deferred", 10, "1", {{"reason", "421 later"}}), ev("delivered", 20, "2")},
         DeliveryState::delivered,
         ""},
        {"bounce is final",
         {ev("bounce", 10, "1", {{"reason", "550 gone"}, {"type", "bounce"}}),
          ev("deferred", 20, "2", {{"reason", "421"}}), ev("processed", 30, "3")},
         DeliveryState::bounced,
         "550 gone"},
        {"dropped is final",
         {ev("dropped", 10, "1", {{"reason", "Bounced Address"}}), ev("delivered", 20, "2")},
         DeliveryState::dropped,
         "Bounced Address"},
        {"an open implies delivered",
         {ev("processed", 10, "1"), ev("open", 20, "2")},
         DeliveryState::delivered,
         ""},
        {"a later soft bounce does not undo delivered",
         {ev("delivered", 10, "1"),
          ev("bounce", 20, "2", {{"reason", "busy"}, {"type", "blocked"}})},
         DeliveryState::delivered,
         ""},
        {"blocked beats deferred",
         {ev("deferred", 10, "1", {{"reason", "421"}}),
          ev("bounce", 20, "2", {{"reason", "blocked"}, {"type", "blocked"}})},
         DeliveryState::blocked,
         "blocked"},
        {"the later of two deferrals gives the reason",
         {ev("deferred", 10, "1", {{"reason", "first"}}),
          ev("deferred", 20, "2", {{"reason", "second"}})},
         DeliveryState::deferred,
         "second"},
    };
    for (const Case& c : cases) {
        INFO(c.name);
        Tracked forward;
        const auto one_way = forward.after(c.events);
        CHECK(one_way.state == c.state);
        CHECK(one_way.reason == c.reason);
        std::vector<nlohmann::json> reversed(c.events.rbegin(), c.events.rend());
        Tracked backward;
        const auto other_way = backward.after(reversed);
        CHECK(other_way.state == c.state);
        CHECK(other_way.reason == c.reason);
        CHECK(other_way.state_time == one_way.state_time);
    }
}

TEST_CASE("copies change nothing twice, a fresh sg_event_id included; counts count events",
          "[status][rules]") {
    Tracked tracked;
    auto open = ev("open", 100, "o1", {{"useragent", "Mail/1"}});
    CHECK(tracked.tracker.record(parse({open})) == 1);
    CHECK(tracked.tracker.record(parse({open})) == 0);
    open["sg_event_id"] = "a-new-id-for-the-same-open";
    CHECK(tracked.tracker.record(parse({open})) == 0);
    CHECK(tracked.tracker.record(parse({ev("open", 50, "o2", {{"useragent", "Mail/1"}})})) == 1);
    CHECK(tracked.tracker.record(parse({ev("open", 200, "o3", {{"useragent", "Phone/2"}})})) == 1);
    const auto status = tracked.after({});
    CHECK(status.open.count == 3);
    CHECK(status.open.first == 50);
    CHECK(status.open.last == 200);
    CHECK(status.state == DeliveryState::delivered);
    CHECK(status.summary().has(sg::engaged_open));
    CHECK_FALSE(status.summary().has(sg::engaged_click));
    CHECK(tracked.store->applied_facts() ==
          3 + 1);  // the opens, and once what they say of the send
}

TEST_CASE("sends and events meet in one record, in either order", "[status][rules]") {
    sg::EmailMessage message;
    message.to = {"Ann <A@example.com>", "b@example.com"};
    message.outcome.status = sg::SendStatus::accepted;
    message.outcome.http_status = 202;
    message.outcome.message_id = "MSGID123";
    message.outcome.tracking_key = "k";
    const auto delivered = ev("delivered", 1'700'000'100, "d1");

    for (bool send_first : {true, false}) {
        INFO("send first: " << send_first);
        Tracked tracked;
        if (send_first) tracked.tracker.record(message);
        tracked.tracker.record(parse({delivered}));  // before the send: kept, merged later
        if (!send_first) tracked.tracker.record(message);
        const auto status = tracked.tracker.status("k");
        REQUIRE(status);
        CHECK(status->send.state == DeliveryState::accepted);
        CHECK(status->send.message_id == "MSGID123");
        CHECK(status->send.http_status == 202);
        REQUIRE(status->recipients.size() == 2);
        CHECK(status->recipient("a@example.com")->state == DeliveryState::delivered);
        CHECK(status->recipient("B@example.com")->state == DeliveryState::accepted);
        CHECK(status->summary() == "accepted; delivered to 1 of 2; accepted: b@example.com");
    }

    // An unknown send that SendGrid did take: its events say so.
    sg::EmailMessage unsure = message;
    unsure.outcome = {};
    unsure.outcome.status = sg::SendStatus::unknown;
    unsure.outcome.failure_reason = "outcome unknown: timeout";
    unsure.outcome.tracking_key = "k";
    Tracked tracked;
    tracked.tracker.record(unsure);
    CHECK(tracked.tracker.status("k")->send.state == DeliveryState::unknown);
    tracked.tracker.record(parse({delivered}));
    const auto resolved = tracked.tracker.status("k");
    CHECK(resolved->send.state == DeliveryState::accepted);
    CHECK(resolved->send.message_id == "MSGID123");
    CHECK(resolved->send.reason.empty());

    // A failed send: its recipients say why too.
    sg::EmailMessage refused = message;
    refused.outcome = {};
    refused.outcome.status = sg::SendStatus::rejected;
    refused.outcome.http_status = 400;
    refused.outcome.failure_reason = "HTTP 400; bad from (from.email)";
    refused.outcome.tracking_key = "f";
    tracked.tracker.record(refused);
    const auto failed = tracked.tracker.status("f");
    REQUIRE(failed);
    CHECK(failed->send.state == DeliveryState::failed);
    CHECK(failed->send.http_status == 400);
    CHECK(failed->count(DeliveryState::failed) == 2);
    // Nobody was sent it: no "delivered to 0 of 2", and the send's reason once.
    CHECK(failed->summary() ==
          "failed (HTTP 400; bad from (from.email)); failed: a@example.com; failed: b@example.com");
    // Once a recipient got past failed (a part of a split message, an event), the count is back.
    sg::EmailMessage late = refused;
    late.outcome.tracking_key = "g";
    tracked.tracker.record(late);
    tracked.tracker.record(
        parse({event_json("g", "a@example.com", "delivered", 1'700'000'100, "g1")}));
    const auto partly = tracked.tracker.status("g");
    REQUIRE(partly);
    CHECK(partly->summary() ==
          "accepted; delivered to 1 of 2; failed: b@example.com (HTTP 400; bad from (from.email))");
}

TEST_CASE("sendgrid_status_changed: once per real change, with the event", "[status][signal]") {
    Tracked tracked;
    std::vector<std::string> seen;
    sg::ScopedConnection connection = sg::sendgrid_status_changed.connect(
        [&](const std::string& key, const std::string& recipient, const sg::RecipientState& before,
            const sg::RecipientState& after, const sg::StatusEvent& event) {
            seen.push_back(key + " " + recipient + " " + sg::to_string(before.state) + ">" +
                           sg::to_string(after.state) + " " + std::to_string(after.engagement) +
                           " " + (event.event != nullptr ? event.event->event : "-"));
        });
    tracked.tracker.record(parse({ev("delivered", 10, "1")}));
    tracked.tracker.record(parse({ev("delivered", 10, "1")}));  // a copy
    tracked.tracker.record(parse({ev("deferred", 5, "2")}));    // late, and below delivered
    tracked.tracker.record(parse({ev("open", 20, "3")}));
    tracked.tracker.record(parse({ev("open", 30, "4")}));  // a second open: no change
    const std::vector<std::string> expected = {"k a@example.com none>delivered 0 delivered",
                                               "k  none>accepted 0 delivered",
                                               "k a@example.com delivered>delivered 1 open"};
    CHECK(seen == expected);

    // A handler that throws is reported, and the others still run.
    std::vector<std::string> errors;
    sg::StatusTrackerOptions options;
    options.on_handler_error = [&](const std::string& key, std::exception_ptr) {
        errors.push_back(key);
    };
    sg::StatusTracker tracker(options);
    sg::ScopedConnection thrower = sg::sendgrid_status_changed.connect(
        [](const std::string&, const std::string&, const sg::RecipientState&,
           const sg::RecipientState&, const sg::StatusEvent&) { throw std::runtime_error("no"); });
    seen.clear();
    CHECK(tracker.record(parse({event_json("k2", "z@example.com", "processed", 1, "p")})) == 1);
    CHECK(errors.size() == 2);  // the recipient's change and the send's
    CHECK(seen.size() == 2);
}

TEST_CASE("a store's own target numbers are used only when they fit the facts", "[status][store]") {
    const std::vector<sg::PreparedFact> facts = {
        {"k", "a", "f1", "b"}, {"k", "b", "f2", "b"}, {"k", "a", "f3", "b"}, {"j", "a", "f4", "b"}};
    const auto told = sg::detail::told_target_groups(facts, {0, 1, 0, 2});
    REQUIRE(told);
    CHECK(told->first == std::vector<std::size_t>{0, 1, 3});
    CHECK(told->of_fact == std::vector<std::size_t>{0, 1, 0, 2});
    CHECK(told->first == sg::detail::target_groups(facts).first);
    for (const std::vector<std::size_t>& wrong :
         {std::vector<std::size_t>{0, 1, 0},        // not one per fact
          std::vector<std::size_t>{1, 0, 1, 2},     // not in the order of first facts
          std::vector<std::size_t>{0, 1, 1, 2},     // another target under one number
          std::vector<std::size_t>{0, 1, 0, 0},     // another key under one number
          std::vector<std::size_t>{0, 2, 0, 1},     // a number skipped
          std::vector<std::size_t>{0, 1, 2, 3}}) {  // one key and target, two numbers
        CHECK_FALSE(sg::detail::told_target_groups(facts, wrong));
    }

    // Through a tracker: a store that tells numbers that do not fit changes nothing of what is
    // signalled.
    struct WrongNumbers : sg::MemoryStatusStore {
        sg::AppliedFacts apply(const std::vector<sg::PreparedFact>& facts) override {
            sg::AppliedFacts result = sg::MemoryStatusStore::apply(facts);
            result.target_of.assign(facts.size(), 0);  // every fact under the first target
            return result;
        }
    };
    std::vector<std::string> seen;
    sg::ScopedConnection recording = sg::sendgrid_status_changed.connect(
        [&seen](const std::string& key, const std::string& recipient,
                const sg::RecipientState& before, const sg::RecipientState& after,
                const sg::StatusEvent&) {
            seen.push_back(key + " " + recipient + " " + sg::to_string(before.state) + ">" +
                           sg::to_string(after.state));
        });
    const auto batch = parse({ev("processed", 1, "1"), ev("delivered", 2, "2"),
                              event_json("k", "b@example.com", "bounce", 3, "3")});
    std::vector<std::vector<std::string>> signalled;
    for (const std::shared_ptr<sg::StatusStore>& store :
         {std::shared_ptr<sg::StatusStore>(std::make_shared<sg::MemoryStatusStore>()),
          std::shared_ptr<sg::StatusStore>(std::make_shared<WrongNumbers>())}) {
        sg::StatusTrackerOptions options;
        options.store = store;
        sg::StatusTracker tracker(options);
        seen.clear();
        CHECK(tracker.record(batch) == 3);
        signalled.push_back(seen);
    }
    CHECK(signalled[0].size() == 4);
    CHECK(signalled[1] == signalled[0]);
}

TEST_CASE("MemoryStatusStore is bounded: the least recently changed message goes first",
          "[status][store]") {
    CHECK_THROWS_AS(sg::MemoryStatusStore(0), sg::ImproperlyConfigured);
    auto store = std::make_shared<sg::MemoryStatusStore>(2);
    sg::StatusTrackerOptions options;
    options.store = store;
    sg::StatusTracker tracker(options);
    for (const char* key : {"one", "two"}) {
        tracker.record(parse({event_json(key, "a@example.com", "processed", 1, key)}));
    }
    tracker.record(
        parse({event_json("one", "a@example.com", "delivered", 2, "d")}));  // one is newer
    tracker.record(parse({event_json("three", "a@example.com", "processed", 1, "3")}));
    CHECK(store->size() == 2);
    CHECK(tracker.status("one"));
    CHECK_FALSE(tracker.status("two"));
    CHECK(tracker.status("three"));
}

TEST_CASE("MemoryStatusStore is bounded by facts too: big messages push out the least recent",
          "[status][store]") {
    CHECK_THROWS_AS(sg::MemoryStatusStore(10, 0), sg::ImproperlyConfigured);
    auto store = std::make_shared<sg::MemoryStatusStore>(100, 7);
    sg::StatusTrackerOptions options;
    options.store = store;
    sg::StatusTracker tracker(options);
    // "one": 3 facts (two events, and what they say of the send), "two": 3; 6 kept.
    tracker.record(parse({event_json("one", "a@example.com", "processed", 1, "1"),
                          event_json("one", "a@example.com", "delivered", 2, "2"),
                          event_json("two", "a@example.com", "processed", 1, "3"),
                          event_json("two", "a@example.com", "delivered", 2, "4")}));
    CHECK(store->facts() == 6);
    CHECK(store->size() == 2);
    // Three more for "three": 9 > 7, so "one", the least recent, goes with its 3.
    tracker.record(parse({event_json("three", "a@example.com", "processed", 1, "5"),
                          event_json("three", "b@example.com", "processed", 1, "6")}));
    CHECK(store->facts() == 6);
    CHECK_FALSE(tracker.status("one"));
    CHECK(tracker.status("two"));
    CHECK(tracker.status("three"));
    // A copy weighs nothing.
    tracker.record(parse({event_json("three", "a@example.com", "processed", 1, "5")}));
    CHECK(store->facts() == 6);
    // One message alone past the bound is kept whole; the others go.
    std::vector<nlohmann::json> many;
    for (int i = 0; i < 8; ++i) {
        many.push_back(event_json("big", "r" + std::to_string(i) + "@example.com", "delivered", 3,
                                  "big" + std::to_string(i)));
    }
    tracker.record(parse(many));
    CHECK(store->size() == 1);
    CHECK(store->facts() == 8 + 1);
    REQUIRE(tracker.status("big"));
    CHECK(tracker.status("big")->count(sg::DeliveryState::delivered) == 8);
}

TEST_CASE("the property: any order, any copies, one status (memory store)", "[status][property]") {
    status_property::check([] { return std::make_shared<sg::MemoryStatusStore>(); }, 60, 20261206);
}

TEST_CASE("events naming different message ids give one record in either order",
          "[status][rules]") {
    auto with_id = [](nlohmann::json event, const std::string& id) {
        event["sg_message_id"] = id;
        return event;
    };
    const auto a = with_id(ev("delivered", 10, "1"), "AAA.filter1");
    const auto b = with_id(ev("open", 20, "2"), "BBB.filter1");
    nlohmann::json c = ev("click", 30, "3");
    c.erase("sg_message_id");
    Tracked one;
    Tracked other;
    one.after({a, b, c});
    other.after({c, b, a});
    CHECK(one.tracker.status("k")->send.message_id == other.tracker.status("k")->send.message_id);
    // A target's facts are kept in any order: compared sorted.
    const auto sorted = [](sg::StatusRecord record) {
        for (auto& entry : record) std::sort(entry.second.begin(), entry.second.end());
        return record;
    };
    CHECK(sorted(*one.store->read("k")) == sorted(*other.store->read("k")));
}

TEST_CASE("a fingerprint tells texts apart by their lengths", "[status][rules]") {
    Tracked tracked;
    auto first = ev("open", 100, "o1", {{"useragent", "Mail/1kzsy"}});
    auto second = ev("open", 100, "o2", {{"useragent", "Mail/1"}, {"z", "y"}});
    CHECK(tracked.tracker.record(parse({first})) == 1);
    CHECK(tracked.tracker.record(parse({second})) == 1);
    CHECK(tracked.after({}).open.count == 2);
}

namespace {

/// A body's events and the digests of their members, as the Event Webhook's reader makes them
/// (they view the body: it is kept with them).
struct ReadWithDigests {
    const std::string body;
    std::vector<sg::WebhookEvent> events;
    sg::detail::MemberDigests digests;

    explicit ReadWithDigests(std::string text) : body(std::move(text)) {
        sg::detail::WebhookBodyReader reader(body);
        reader.read(&events, static_cast<std::size_t>(-1), &digests);
        reader.finish();
        REQUIRE(digests.size() == events.size());
    }
    ReadWithDigests(const ReadWithDigests&) = delete;
    ReadWithDigests& operator=(const ReadWithDigests&) = delete;
};

}  // namespace

TEST_CASE("an event's fingerprint is its JSON value's, less sg_event_id", "[status][rules]") {
    // Made from the event's text, and from the digests its reading made (EventWebhook's way):
    // one fingerprint.
    const auto fingerprint = [](const std::string& event) {
        const ReadWithDigests read_events("[" + event + "]");
        const auto& events = read_events.events;
        REQUIRE(events.size() == 1);
        const auto facts = sg::fact_from_event(events[0], "sendgrid_backend_key");
        REQUIRE(facts);
        const auto read =
            sg::detail::recipient_fact(events[0], "sendgrid_backend_key", &read_events.digests, 0);
        REQUIRE(read);
        CHECK(read->fact.fingerprint == facts->recipient.fingerprint);
        CHECK(read->fact.body == facts->recipient.body);
        return facts->recipient.fingerprint;
    };
    const std::string base =
        R"({"event":"open","email":"a@example.com","timestamp":100,"sg_event_id":"e1",)"
        R"("sendgrid_backend_key":"k","ua":"Mail","o":{"a":[1,{"b":null,"c":true}],"d":"x"}})";
    const std::string same_value[] = {
        // members reordered, at the top and inside
        R"({"o":{"d":"x","a":[1,{"c":true,"b":null}]},"ua":"Mail","sendgrid_backend_key":"k",)"
        R"("timestamp":100,"email":"a@example.com","event":"open","sg_event_id":"e1"})",
        // other spaces
        "{ \"event\" : \"open\" ,\n \"email\":\"a@example.com\",\t\"timestamp\" : 100, "
        "\"sg_event_id\":\"e1\", \"sendgrid_backend_key\":\"k\",\"ua\":\"Mail\","
        "\"o\":{ \"a\":[ 1 , { \"b\" : null , \"c\" : true } ] , \"d\" : \"x\" } }",
        // an escaped character, in a value and in a key
        R"({"event":"open","email":"a@example.com","timestamp":100,"sg_event_id":"e1",)"
        R"("sendgrid_backend_key":"k","u\u0061":"M\u0061il","o":{"a":[1,{"b":null,"c":true}],)"
        R"("d":"\u0078"}})",
        // a fresh sg_event_id (a copy SendGrid sent again), or none
        R"({"event":"open","email":"a@example.com","timestamp":100,"sg_event_id":"e2",)"
        R"("sendgrid_backend_key":"k","ua":"Mail","o":{"a":[1,{"b":null,"c":true}],"d":"x"}})",
        R"({"event":"open","email":"a@example.com","timestamp":100,)"
        R"("sendgrid_backend_key":"k","ua":"Mail","o":{"a":[1,{"b":null,"c":true}],"d":"x"}})",
        // a key twice: the last counts
        R"({"event":"open","email":"a@example.com","timestamp":100,"sg_event_id":"e1","ua":"X",)"
        R"("sendgrid_backend_key":"k","ua":"Mail","o":{"a":[1,{"b":null,"c":true}],"d":"x"}})",
    };
    for (const std::string& event : same_value) {
        INFO(event);
        CHECK(fingerprint(event) == fingerprint(base));
    }
    const std::string other_value[] = {
        R"({"event":"open","email":"a@example.com","timestamp":101,"sg_event_id":"e1",)"
        R"("sendgrid_backend_key":"k","ua":"Mail","o":{"a":[1,{"b":null,"c":true}],"d":"x"}})",
        R"({"event":"open","email":"a@example.com","timestamp":100,"sg_event_id":"e1",)"
        R"("sendgrid_backend_key":"k","ua":"Mail","o":{"a":[{"b":null,"c":true},1],"d":"x"}})",
        R"({"event":"open","email":"a@example.com","timestamp":100,"sg_event_id":"e1",)"
        R"("sendgrid_backend_key":"k","ua":"Mail","o":{"a":[1,{"b":null,"c":false}],"d":"x"}})",
        R"({"event":"open","email":"a@example.com","timestamp":100,"sg_event_id":"e1",)"
        R"("sendgrid_backend_key":"k","ua":"Mail","o":{"a":[1,{"b":null,"c":true}],"d":"xx"}})",
        R"({"event":"open","email":"a@example.com","timestamp":100,"sg_event_id":"e1",)"
        R"("sendgrid_backend_key":"k","ua":"Mail","o":{"a":[1,{"b":null,"c":true}],"e":"x"}})",
        R"({"event":"open","email":"a@example.com","timestamp":100,"sg_event_id":"e1",)"
        R"("sendgrid_backend_key":"k","ua":"Mail","o":{"a":[1,{"b":null,"c":true}],"d":["x"]}})",
        // sg_event_id inside a value is content
        R"({"event":"open","email":"a@example.com","timestamp":100,"sg_event_id":"e1",)"
        R"("sendgrid_backend_key":"k","ua":"Mail","o":{"a":[1,{"b":null,"c":true}],"d":"x",)"
        R"("sg_event_id":"e1"}})",
    };
    for (const std::string& event : other_value) {
        INFO(event);
        CHECK(fingerprint(event) != fingerprint(base));
    }
    // Strings and keys go in after their lengths: moving a byte from one to the next differs.
    CHECK(sg::detail::content_hash(R"({"ab":"c"})", 0) !=
          sg::detail::content_hash(R"({"a":"bc"})", 0));
    CHECK(sg::detail::content_hash(R"(["ab","c"])", 0) !=
          sg::detail::content_hash(R"(["a","bc"])", 0));
    CHECK(sg::detail::content_hash(R"([[],[[]]])", 0) !=
          sg::detail::content_hash(R"([[[]],[]])", 0));
    // A raw text that is not JSON (an event built by hand) is hashed as its bytes, no crash.
    sg::WebhookEvent built;
    built.type = sg::EventType::open;
    built.email = "a@example.com";
    built.custom_args["sendgrid_backend_key"] = "k";
    for (const char* raw : {"", "{", "{\"a\":", "[1] x", "\"\xff\"", "{\"a\":1,\"a\"}"}) {
        INFO(raw);
        built.raw = raw;
        CHECK(sg::fact_from_event(built, "sendgrid_backend_key"));
    }
    built.raw = "{";
    const auto first = sg::fact_from_event(built, "sendgrid_backend_key");
    built.raw = "}";
    CHECK(first->recipient.fingerprint !=
          sg::fact_from_event(built, "sendgrid_backend_key")->recipient.fingerprint);
    std::string deep(2000, '[');
    built.raw = deep;
    CHECK(sg::fact_from_event(built, "sendgrid_backend_key"));
}

TEST_CASE("the reader's digests of an event's members hash as its text does", "[status][rules]") {
    // Keys alike in their first eight bytes or differing past them, a NUL in a key, escaped
    // keys and values, repeated keys (the last counts), spaces around values, empty and nested
    // containers, numbers as written, long strings: content_hash of the event's text and the
    // digests give one hash, with and without a member left out, from any start.
    const std::string events[] = {
        "{}",
        // members read into fields, one of them an object whose keys the reader reads too
        R"({"url_offset":{"index":2,"type":"html"},"category":["a",1],"tls":1,"attempt":"3"})",
        R"({"abcdefgh1":1,"abcdefgh":2,"abcdefgh2":3,"abcdefg":4,"ab":5,"ab\u0000":6,"a":7})",
        R"({"b":"x","a":"y","b":"z","a\u0062":"w","\u0061":"v","sg_event_id":"e","sg_event_id":1})",
        "{ \"a\" : \"x\" , \"b\" : [ 1 , 2 ] ,\n\t\"c\" : { } , \"d\" : [ ] , \"e\":null ,"
        "\"f\":true,\"g\":false , \"h\" : -1.5e+10 }",
        R"({"o":{"b":{"c":[{"d":"\n\"\\"},{"d":"\u00e9\ud83d\ude00"}],"c":0},"a":1},"o":2})",
        R"({"s":")" + std::string(300, 'x') + R"(","t":"caf\u00e9 \/ \b\f\r\t","u":"é😀"})",
    };
    for (const std::string& event : events) {
        INFO(event);
        const ReadWithDigests both("[" + event + "," + event + "]");
        const auto& read = both.events;
        const sg::detail::MemberDigests* digests = &both.digests;
        REQUIRE(read.size() == 2);
        for (std::size_t object = 0; object < 2; ++object) {
            for (const std::uint64_t start : {std::uint64_t{0}, std::uint64_t{12345}}) {
                for (const std::string_view skip :
                     {std::string_view(), std::string_view("sg_event_id"), std::string_view("a"),
                      std::string_view("ab\0", 3)}) {
                    CHECK(digests->hash(object, start, skip) ==
                          sg::detail::content_hash(read[object].raw, start, skip));
                }
            }
        }
        CHECK(!digests->hash(2, 0, ""));  // no third object
    }
}

TEST_CASE("texts of any bytes and lengths are fingerprinted (UTF-8, over 127 bytes)",
          "[status][rules]") {
    // Bytes over 0x7f, and lengths whose bytes are, go into the hash: the test build's
    // -fsanitize=integer stops at any implicit change of a char's sign on the way.
    Tracked tracked;
    const std::string agent(130, 'M');
    CHECK(tracked.tracker.record(parse({ev("open", 100, "o1", {{"useragent", agent}})})) == 1);
    CHECK(tracked.tracker.record(parse({ev("open", 100, "o2", {{"useragent", agent + "x"}})})) ==
          1);
    CHECK(tracked.tracker.record(
              parse({event_json("k", "m\xc3\xbcller@example.com", "delivered", 100, "d1")})) == 1);
    CHECK(tracked.after({}).open.count == 2);
    const auto status = tracked.tracker.status("k");
    REQUIRE(status);
    REQUIRE(status->recipient("m\xc3\xbcller@example.com"));
    CHECK(status->recipient("m\xc3\xbcller@example.com")->state == DeliveryState::delivered);
}

TEST_CASE("an event with no usable time is counted, and leaves first and last as they were",
          "[status][rules]") {
    Tracked tracked;
    auto timeless = ev("open", 0, "o2");
    timeless.erase("timestamp");
    const auto status = tracked.after({ev("open", 1'700'000'100, "o1"), timeless,
                                       ev("open", -5, "o3", {{"useragent", "negative"}})});
    CHECK(status.open.count == 3);
    CHECK(status.open.first == 1'700'000'100);
    CHECK(status.open.last == 1'700'000'100);
}

TEST_CASE("one tracking key sent twice, to other people with the same outcome, is two sends",
          "[status][rules]") {
    Tracked tracked;
    sg::EmailMessage message;
    message.outcome.status = sg::SendStatus::transport_failed;
    message.outcome.failure_reason = "connection refused";
    message.outcome.tracking_key = "k";
    message.to = {"first@example.com"};
    tracked.tracker.record(message);
    message.to = {"second@example.com"};
    tracked.tracker.record(message);
    tracked.tracker.record(message);                 // the same send again: a copy
    CHECK(tracked.store->applied_facts() == 2 * 2);  // each send: its own fact and its recipient's
    const auto status = tracked.tracker.status("k");
    REQUIRE(status);
    CHECK(status->recipients.size() == 2);
    CHECK(status->recipient("second@example.com"));
    // The same people in another order and case: the same send.
    message.to = {"first@example.com"};
    sg::EmailMessage again = message;
    again.to = {"FIRST@example.com"};
    tracked.tracker.record(again);
    CHECK(tracked.store->applied_facts() == 2 * 2);
}

TEST_CASE("a message sent in parts: each recipient's change carries its own part's state",
          "[status][signal]") {
    Tracked tracked;
    std::vector<std::string> seen;
    sg::ScopedConnection connection = sg::sendgrid_status_changed.connect(
        [&](const std::string&, const std::string& recipient, const sg::RecipientState&,
            const sg::RecipientState& after, const sg::StatusEvent& event) {
            seen.push_back(recipient + " " + sg::to_string(after.state) + " " +
                           sg::to_string(event.implies));
        });
    sg::EmailMessage message;
    message.to = {"a@example.com", "b@example.com"};
    message.outcome.status = sg::SendStatus::unknown;  // the whole: part 2 had no answer
    message.outcome.tracking_key = "k";
    sg::SendPart first;
    first.recipients = {"a@example.com"};
    first.outcome.status = sg::SendStatus::accepted;
    first.outcome.http_status = 202;
    sg::SendPart second;
    second.recipients = {"b@example.com"};
    second.outcome.status = sg::SendStatus::unknown;
    message.outcome.parts = {first, second};
    tracked.tracker.record(message);
    std::sort(seen.begin(), seen.end());
    const std::vector<std::string> expected = {
        " unknown unknown", "a@example.com accepted accepted", "b@example.com unknown unknown"};
    CHECK(seen == expected);
}

TEST_CASE("a tracking_arg named like a key SendGrid's events have is refused, named",
          "[status][rules]") {
    for (const char* name : {"category", "email", "event", "timestamp", "url", "unique_args"}) {
        INFO(name);
        sg::StatusTrackerOptions options;
        options.tracking_arg = name;
        try {
            sg::StatusTracker tracker(options);
            FAIL("not refused");
        } catch (const sg::ImproperlyConfigured& error) {
            CHECK(std::string(error.what()).find("StatusTrackerOptions::tracking_arg") !=
                  std::string::npos);
        }
        sg::Settings settings;
        settings.api_key = "SG.test";
        settings.tracking_arg = name;
        CHECK_THROWS_AS(settings.validate(), sg::ImproperlyConfigured);
        settings.tracking_keys = false;  // no tracking keys: the name is never used
        CHECK_NOTHROW(settings.validate());
    }
    sg::StatusTrackerOptions options;
    options.tracking_arg = "order_key";  // any other custom arg
    CHECK_NOTHROW(sg::StatusTracker(options));
}

TEST_CASE("a fact's fingerprint is the same on every host: pinned values", "[status][rules]") {
    // Receivers on hosts of either byte order share one store: a fingerprint made of a number's
    // bytes in memory would differ between them, and each would apply every event once.
    const auto events = sg::parse_webhook_events(
        R"([{"email":"a@example.com","event":"open","timestamp":1700000000,"sg_event_id":"x",)"
        R"("url_offset":{"index":1,"type":"html"},"category":["a","b"],)"
        R"("sendgrid_backend_key":"k"}])");
    const auto facts = sg::fact_from_event(events.at(0), "sendgrid_backend_key");
    REQUIRE(facts);
    CHECK(facts->recipient.fingerprint == "eb54e29c24aa5f7b1");
    CHECK(facts->send.fingerprint == "a08bdd407b561c080");
}
