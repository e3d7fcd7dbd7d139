#pragma once

// The status property, run against every store: recorded event sequences for one message to
// three recipients, permuted and copied (1 to 50 copies, some with a fresh sg_event_id), give
// the same final status as the events once in order, and sendgrid_status_changed fires once per
// real change. Included by test_status_rules.cpp (memory) and the SQLite and Redis tests.

#include "catch.hpp"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "sendgrid_backend/status/tracker.hpp"
#include "sendgrid_backend/webhook_events.hpp"

namespace status_property {

namespace sg = sendgrid_backend;

inline nlohmann::json event_json(const std::string& key, const std::string& email,
                                 const std::string& type, std::int64_t timestamp,
                                 const std::string& id,
                                 nlohmann::json extra = nlohmann::json::object()) {
    nlohmann::json event = {{"email", email},
                            {"event", type},
                            {"timestamp", timestamp},
                            {"sg_event_id", id},
                            {"sg_message_id", "MSGID123.filterdrecv-1"},
                            {"smtp-id", "<MSGID123@example.com>"},
                            {"sendgrid_backend_key", key}};
    event.update(extra);
    return event;
}

/// What SendGrid might report for one message to three recipients: a.example delivered after
/// a deferral and opened twice and clicked; b bounced after a deferral; c blocked, then
/// delivered, then spam-reported.
inline std::vector<nlohmann::json> recorded_sequence(const std::string& key) {
    const std::int64_t t = 1'700'000'000;
    return {
        event_json(key, "a@example.com", "processed", t, "a1"),
        event_json(key, "a@example.com", "deferred", t + 10, "a2",
                   {{"reason", "421 try later"}, {"attempt", "1"}}),
        event_json(key, "a@example.com", "delivered", t + 70, "a3", {{"response", "250 OK"}}),
        event_json(key, "a@example.com", "open", t + 100, "a4", {{"useragent", "Mail/1"}}),
        event_json(key, "a@example.com", "open", t + 200, "a5", {{"useragent", "Mail/1"}}),
        event_json(key, "a@example.com", "click", t + 210, "a6", {{"url", "https://x.test/"}}),
        event_json(key, "B@Example.com", "processed", t, "b1"),
        event_json(key, "b@example.com", "deferred", t + 10, "b2", {{"reason", "421 busy"}}),
        event_json(key, "b@example.com", "bounce", t + 90, "b3",
                   {{"reason", "550 5.1.1 mailbox unavailable"},
                    {"status", "5.1.1"},
                    {"type", "bounce"},
                    {"bounce_classification", "Invalid Address"}}),
        event_json(key, "c@example.com", "processed", t, "c1"),
        event_json(key, "c@example.com", "bounce", t + 5, "c2",
                   {{"reason", "blocked for now"}, {"type", "blocked"}}),
        event_json(key, "c@example.com", "delivered", t + 300, "c3"),
        event_json(key, "c@example.com", "spamreport", t + 400, "c4"),
    };
}

inline std::vector<sg::WebhookEvent> parse(const std::vector<nlohmann::json>& events) {
    return sg::parse_webhook_events(nlohmann::json(events).dump());
}

/// Every recipient's changes, as (recipient, before, after) in the order signalled.
struct ChangeLog {
    std::vector<std::tuple<std::string, sg::RecipientState, sg::RecipientState>> changes;
    sg::ScopedConnection connection;

    explicit ChangeLog(std::string key)
        : connection(sg::sendgrid_status_changed.connect(
              [this, key](const std::string& changed_key, const std::string& recipient,
                          const sg::RecipientState& before, const sg::RecipientState& after,
                          const sg::StatusEvent&) {
                  if (changed_key == key) changes.emplace_back(recipient, before, after);
              })) {}
};

/// The final status, fields compared as text (times and counts included).
inline std::string status_text(const sg::MessageStatus& status) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& recipient : status.recipients) {
        nlohmann::json r = {
            {"email", recipient.email},      {"state", sg::to_string(recipient.state)},
            {"time", recipient.state_time},  {"reason", recipient.reason},
            {"smtp", recipient.smtp_status}, {"class", recipient.classification}};
        const std::pair<const char*, const sg::EventCount*> counts[] = {
            {"processed", &recipient.processed},
            {"deferred", &recipient.deferred},
            {"delivered", &recipient.delivered},
            {"bounce", &recipient.bounce},
            {"open", &recipient.open},
            {"click", &recipient.click},
            {"spamreport", &recipient.spamreport}};
        for (const auto& [name, count] : counts) {
            r[name] = {count->count, count->first, count->last};
        }
        out.push_back(r);
    }
    out.push_back({{"send", sg::to_string(status.send.state)}, {"msgid", status.send.message_id}});
    return out.dump();
}

/// Runs the property with stores from `make_store` (a fresh, empty one per call).
inline void check(const std::function<std::shared_ptr<sg::StatusStore>()>& make_store, int rounds,
                  std::uint64_t seed) {
    // The reference: the events once, in order, into a store of their own.
    const std::string reference_key = "reference-" + std::to_string(seed);
    sg::StatusTrackerOptions options;
    options.store = make_store();
    sg::StatusTracker reference(options);
    std::size_t reference_changes = 0;
    std::string expected;
    {
        ChangeLog log(reference_key);
        reference.record(parse(recorded_sequence(reference_key)));
        expected = status_text(*reference.status(reference_key));
        reference_changes = log.changes.size();
    }
    INFO("expected " << expected);
    const auto final_states = [](const sg::MessageStatus& status) {
        std::map<std::string, sg::RecipientState> states;
        for (const auto& r : status.recipients) states[r.email] = r.summary();
        states[""] = status.send.summary();
        return states;
    };
    const auto expected_states = final_states(*reference.status(reference_key));
    CHECK(expected_states.at("a@example.com").state == sg::DeliveryState::delivered);
    CHECK(expected_states.at("b@example.com").state == sg::DeliveryState::bounced);
    CHECK(expected_states.at("c@example.com").state == sg::DeliveryState::delivered);
    CHECK(reference_changes > 0);

    std::mt19937_64 random(seed);
    for (int round = 0; round < rounds; ++round) {
        const std::string key = "round-" + std::to_string(seed) + "-" + std::to_string(round);
        std::vector<nlohmann::json> events;
        std::size_t fresh_id = 0;
        for (auto event : recorded_sequence(key)) {
            const int copies = 1 + static_cast<int>(random() % 50);
            for (int c = 0; c < copies; ++c) {
                nlohmann::json copy = event;
                if (c > 0 && random() % 3 == 0) {  // SendGrid's retry with a new id
                    copy["sg_event_id"] = "fresh-" + std::to_string(++fresh_id);
                }
                events.push_back(copy);
            }
        }
        std::shuffle(events.begin(), events.end(), random);
        sg::StatusTrackerOptions round_options;
        round_options.store = make_store();
        sg::StatusTracker tracker(round_options);
        ChangeLog log(key);
        std::size_t applied = 0;
        for (std::size_t at = 0; at < events.size();) {  // batches of 1 to 40
            const std::size_t size = std::min<std::size_t>(1 + random() % 40, events.size() - at);
            std::vector<nlohmann::json> batch(
                events.begin() + static_cast<std::ptrdiff_t>(at),
                events.begin() + static_cast<std::ptrdiff_t>(at + size));
            applied += tracker.record(parse(batch));
            at += size;
        }
        INFO("seed " << seed << " round " << round << " events " << events.size());
        const auto status = tracker.status(key);
        REQUIRE(status);
        // The reference's key differs; the statuses' texts do not mention it.
        CHECK(status_text(*status) == expected);
        CHECK(applied == recorded_sequence(key).size());  // each distinct event once
        // Each signal is a real change, and they chain to the final state per recipient.
        std::map<std::string, sg::RecipientState> last;
        for (const auto& [recipient, before, after] : log.changes) {
            CHECK(before != after);
            auto found = last.find(recipient);
            CHECK(before == (found == last.end() ? sg::RecipientState{} : found->second));
            last[recipient] = after;
        }
        CHECK(last == expected_states);
    }
}

}  // namespace status_property
