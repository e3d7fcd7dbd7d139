// Two Event Webhook receiver processes (tests/support/status_receiver.cpp) against one
// redis-server, fed the same signed batches at the same time, each in a shuffled order of its
// own: every event is applied once (counted in Redis), the statuses are those a single receiver
// gets from the events once in order, and each real change is signalled once, by the process
// that applied it.
//
// The events: 50 messages x 3 recipients, each recipient one of six stories (delivered after a
// deferral, opened and clicked; bounced; blocked then delivered; blocked; deferred twice;
// dropped), with copies (the same sg_event_id, or a fresh one) and a few untracked events,
// shuffled and cut into signed batches.
//
// Signals are compared as chains, not as counts: how many changes a recipient goes through
// depends on the order its facts are applied in (a click applied first goes straight to
// delivered+click; in order, the same facts make five changes), and the two processes' order
// is whatever their race made it. What holds whatever the order: the changes both processes
// signalled for a recipient, put together, form one chain from nothing to the final state,
// each link once (a change signalled twice, or by both processes, or never, breaks it).
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <sendgrid_backend/redis/client.hpp>
#include <sendgrid_backend/status/memory_store.hpp>
#include <sendgrid_backend/status/redis_store.hpp>
#include <sendgrid_backend/status/tracker.hpp>
#include <sendgrid_backend/testing/webhook_signer.hpp>
#include <sendgrid_backend/webhook.hpp>

#include "catch.hpp"
#include "support/child_process.hpp"
#include "support/redis_fixture.hpp"

namespace status_receivers_test {

namespace sg = sendgrid_backend;

constexpr int kMessages = 50;
constexpr int kRecipients = 3;
constexpr std::size_t kBatchSize = 29;  // not a multiple of anything: messages straddle batches

/// The events SendGrid might post for kMessages messages, copies included, in posting order.
std::vector<nlohmann::json> generate_events(std::mt19937_64& random) {
    std::vector<nlohmann::json> events;
    int next_id = 0;
    auto chance = [&](int percent) {
        return std::uniform_int_distribution<int>(0, 99)(random) < percent;
    };
    for (int m = 0; m < kMessages; ++m) {
        const std::string key = "m" + std::to_string(m);
        const std::string message_id = "MSG" + std::to_string(1000 + m);
        const std::int64_t t = 1'700'000'000 + 1000 * m;
        for (int r = 0; r < kRecipients; ++r) {
            // Some addresses in another case: events are matched by address in lower case.
            const std::string email =
                (chance(20) ? "User" : "user") + std::to_string(r) + "@Example.com";
            auto event = [&](const std::string& type, std::int64_t time,
                             nlohmann::json extra = nlohmann::json::object()) {
                nlohmann::json e = {
                    {"email", email},
                    {"event", type},
                    {"timestamp", time},
                    {"sg_event_id", "ev" + std::to_string(next_id++)},
                    {"sg_message_id", message_id + ".filterdrecv-" + std::to_string(r)},
                    {"smtp-id", "<" + message_id + "@example.com>"},
                    {"sendgrid_backend_key", key}};
                e.update(extra);
                events.push_back(std::move(e));
            };
            event("processed", t);
            switch (std::uniform_int_distribution<int>(0, 5)(random)) {
                case 0: {  // delivered, perhaps after a deferral; opened and clicked
                    if (chance(50)) event("deferred", t + 10, {{"reason", "421 try later"}});
                    event("delivered", t + 60, {{"response", "250 OK"}});
                    const int opens = std::uniform_int_distribution<int>(0, 3)(random);
                    for (int i = 0; i < opens; ++i) {
                        event("open", t + 100 + 37 * i,
                              {{"useragent", "Mail/" + std::to_string(i)}});
                    }
                    const int clicks = std::uniform_int_distribution<int>(0, 2)(random);
                    for (int i = 0; i < clicks; ++i) {
                        event("click", t + 150 + 41 * i,
                              {{"url", "https://shop.example.com/" + std::to_string(i)}});
                    }
                    break;
                }
                case 1:  // bounced after a deferral
                    event("deferred", t + 10, {{"reason", "421 busy"}});
                    event("bounce", t + 90,
                          {{"reason", "550 5.1.1 mailbox unavailable"},
                           {"status", "5.1.1"},
                           {"type", "bounce"},
                           {"bounce_classification", "Invalid Address"}});
                    break;
                case 2:  // blocked, then delivered and opened
                    event("bounce", t + 5, {{"reason", "blocked for now"}, {"type", "blocked"}});
                    event("delivered", t + 300, {{"response", "250 OK"}});
                    event("open", t + 400, {{"useragent", "Mail/9"}});
                    break;
                case 3:  // blocked
                    event("bounce", t + 5,
                          {{"reason", "554 blocked"}, {"type", "blocked"}, {"status", "5.7.1"}});
                    break;
                case 4:  // deferred twice
                    event("deferred", t + 10, {{"reason", "421 try later"}, {"attempt", "1"}});
                    event("deferred", t + 400, {{"reason", "421 still later"}, {"attempt", "2"}});
                    break;
                default:  // dropped
                    event("dropped", t + 1, {{"reason", "Bounced Address"}});
                    break;
            }
        }
        if (m % 10 == 0) {  // not about a tracked message: no tracking key
            events.push_back({{"email", "other@example.com"},
                              {"event", "delivered"},
                              {"timestamp", t},
                              {"sg_event_id", "ev" + std::to_string(next_id++)}});
        }
    }
    // SendGrid's copies: the same event again, with the same id or a fresh one.
    const std::size_t originals = events.size();
    for (std::size_t i = 0; i < originals; ++i) {
        if (chance(25)) events.push_back(events[i]);
        if (chance(25)) {
            nlohmann::json copy = events[i];
            copy["sg_event_id"] = "ev" + std::to_string(next_id++);
            events.push_back(std::move(copy));
        }
    }
    std::shuffle(events.begin(), events.end(), random);
    return events;
}

/// The facts the events are, counted by the documented rule (an event's content less its
/// sg_event_id, once per message), without the library's fingerprints.
std::size_t distinct_facts(const std::vector<nlohmann::json>& events) {
    std::set<std::pair<std::string, std::string>> facts;
    for (const nlohmann::json& event : events) {
        if (!event.contains("sendgrid_backend_key")) continue;
        nlohmann::json content = event;
        content.erase("sg_event_id");
        facts.emplace(event["sendgrid_backend_key"].get<std::string>(), content.dump());
    }
    return facts.size();
}

/// What the events say of their sends, by the same rule (SendGrid took message id x): the store
/// applies that once per key and id, beside each event.
std::size_t distinct_sends(const std::vector<nlohmann::json>& events) {
    std::set<std::pair<std::string, std::string>> sends;
    for (const nlohmann::json& event : events) {
        if (!event.contains("sendgrid_backend_key")) continue;
        const std::string id = event.value("sg_message_id", std::string());
        sends.emplace(event["sendgrid_backend_key"].get<std::string>(), id.substr(0, id.find('.')));
    }
    return sends.size();
}

/// Every field of a status, as text: two statuses are equal when their texts are.
std::string canonical(const sg::MessageStatus& status) {
    std::ostringstream text;
    text << "key=" << status.key << "\n";
    std::vector<const sg::RecipientStatus*> targets{&status.send};
    for (const auto& recipient : status.recipients) targets.push_back(&recipient);
    for (const sg::RecipientStatus* r : targets) {
        text << "[" << r->email << "] state=" << sg::to_string(r->state)
             << " time=" << r->state_time << " reason=" << r->reason << " smtp=" << r->smtp_status
             << " class=" << r->classification << " msgid=" << r->message_id
             << " http=" << r->http_status;
        const std::pair<const char*, const sg::EventCount*> counts[] = {
            {"processed", &r->processed},
            {"deferred", &r->deferred},
            {"delivered", &r->delivered},
            {"bounce", &r->bounce},
            {"dropped", &r->dropped},
            {"open", &r->open},
            {"click", &r->click},
            {"spamreport", &r->spamreport},
            {"unsubscribe", &r->unsubscribe},
            {"group_unsubscribe", &r->group_unsubscribe},
            {"group_resubscribe", &r->group_resubscribe}};
        for (const auto& [name, count] : counts) {
            text << " " << name << "=" << count->count << "/" << count->first << "/" << count->last;
        }
        text << "\n";
    }
    return text.str();
}

/// The fields on which two records differ, one "field: found | expected" line each.
std::string record_difference(const std::optional<sg::StatusRecord>& found,
                              const std::optional<sg::StatusRecord>& expected) {
    if (!found || !expected) return found ? "none expected" : "none found";
    // A target's facts come in any order: compared sorted.
    const auto facts_of = [](const sg::StatusRecord& record, const std::string& target) {
        auto at = record.find(target);
        if (at == record.end()) return std::string("(missing)");
        std::vector<std::string> bodies = at->second;
        std::sort(bodies.begin(), bodies.end());
        std::string text;
        for (const std::string& body : bodies) text += body + ";";
        return text;
    };
    std::set<std::string> targets;
    for (const auto& entry : *found) targets.insert(entry.first);
    for (const auto& entry : *expected) targets.insert(entry.first);
    std::string text;
    for (const std::string& target : targets) {
        const std::string left = facts_of(*found, target);
        const std::string right = facts_of(*expected, target);
        if (left != right) text += target + ": " + left + " | " + right + "\n";
    }
    return text;
}

struct SignedBatch {
    std::string path;
    std::string body;
};

/// A state as the receivers print it: "<state> <engagement>".
using StateText = std::pair<int, unsigned>;

StateText state_text(const sg::RecipientState& state) {
    return {static_cast<int>(state.state), state.engagement};
}

/// What one receiver process printed.
struct ReceiverRun {
    int exit_status = -1;
    std::string err;
    std::size_t batches = 0, events = 0, applied = 0, signals = 0, duplicates = 0;
    bool totals = false;
    /// (key, recipient or "-") -> the changes signalled, as (before, after).
    std::map<std::pair<std::string, std::string>, std::vector<std::pair<StateText, StateText>>>
        changes;
    std::size_t signal_lines = 0;

    void parse(const std::string& out) {
        std::istringstream lines(out);
        for (std::string line; std::getline(lines, line);) {
            std::istringstream words(line);
            std::string kind;
            words >> kind;
            if (kind == "signal") {
                std::string key, recipient;
                StateText before, after;
                words >> key >> recipient >> before.first >> before.second >> after.first >>
                    after.second;
                REQUIRE(words);
                changes[{key, recipient}].emplace_back(before, after);
                ++signal_lines;
            } else if (kind == "totals") {
                words >> batches >> events >> applied >> signals >> duplicates;
                REQUIRE(words);
                totals = true;
            }
        }
    }
};

/// Whether `changes` (from both processes) form one chain from nothing to `final`, each link
/// once; the reason when not.
std::string chain_fault(std::vector<std::pair<StateText, StateText>> changes,
                        const StateText& final_state) {
    StateText at{static_cast<int>(sg::DeliveryState::none), 0};
    while (!changes.empty()) {
        const auto next = std::find_if(changes.begin(), changes.end(),
                                       [&](const auto& change) { return change.first == at; });
        if (next == changes.end()) {
            return "no change leaves state " + std::to_string(at.first) + "/" +
                   std::to_string(at.second) + " but " + std::to_string(changes.size()) +
                   " are left (signalled twice, or a link missing)";
        }
        if (next->second == at) return "a change to the same state";
        at = next->second;
        changes.erase(next);
    }
    if (at != final_state) {
        return "the chain ends at " + std::to_string(at.first) + "/" + std::to_string(at.second) +
               ", the final state is " + std::to_string(final_state.first) + "/" +
               std::to_string(final_state.second);
    }
    return "";
}

/// Removes the files it was given when it goes, the test passed or not.
struct RemovedFiles {
    std::vector<std::string> paths;
    RemovedFiles() = default;
    RemovedFiles(const RemovedFiles&) = delete;
    RemovedFiles& operator=(const RemovedFiles&) = delete;
    ~RemovedFiles() {
        for (const std::string& path : paths) std::remove(path.c_str());
    }
};

/// Deletes the run's keys (the fixture's redis-server is shared by the tests).
void delete_prefix(sg::RedisClient& redis, const std::string& prefix) {
    for (const std::string& key : test_support::redis_keys(redis, prefix + "*")) {
        redis.command({"DEL", key});
    }
}

}  // namespace status_receivers_test

TEST_CASE(
    "two receiver processes on one Redis apply each event once; statuses and signals as "
    "one receiver's",
    "[status][redis][webhook][processes]") {
    using namespace status_receivers_test;
    const std::string url = test_support::redis_fixture_url();
    const std::string base = test_support::unique_base("status-receivers");
    const std::string prefix =
        "test:status_receivers:" + std::to_string(::getpid()) + ":" +
        std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + ":";
    CAPTURE(prefix, base);

    // The events, cut into batches signed like SendGrid's.
    std::mt19937_64 random(20240611);
    const std::vector<nlohmann::json> events = generate_events(random);
    const std::size_t facts = distinct_facts(events);
    const std::size_t stored_facts = facts + distinct_sends(events);
    const sg::testing::WebhookSigner signer;
    const std::string stamp = std::to_string(1'700'100'000);
    RemovedFiles files;
    std::vector<SignedBatch> batches;
    for (std::size_t at = 0; at < events.size(); at += kBatchSize) {
        const auto end =
            events.begin() + static_cast<std::ptrdiff_t>(std::min(events.size(), at + kBatchSize));
        const std::string body =
            nlohmann::json(
                std::vector<nlohmann::json>(events.begin() + static_cast<std::ptrdiff_t>(at), end))
                .dump();
        SignedBatch batch{base + "-batch" + std::to_string(batches.size()), body};
        files.paths.push_back(batch.path);
        std::ofstream file(batch.path, std::ios::binary);
        file << signer.sign(body, stamp) << "\n" << stamp << "\n" << body;
        REQUIRE(file.good());
        batches.push_back(std::move(batch));
    }
    CAPTURE(events.size(), facts, batches.size());
    REQUIRE(batches.size() >= 20);
    REQUIRE(facts < events.size());  // there are copies to leave out

    // The reference: one tracker over an in-process store, the batches once, in order.
    sg::StatusTrackerOptions reference_options;
    auto reference_store = std::make_shared<sg::MemoryStatusStore>();
    reference_options.store = reference_store;
    sg::StatusTracker reference(reference_options);
    std::size_t reference_signals = 0;
    {
        sg::ScopedConnection counting = sg::sendgrid_status_changed.connect(
            [&](const std::string&, const std::string&, const sg::RecipientState&,
                const sg::RecipientState&, const sg::StatusEvent&) { ++reference_signals; });
        for (const SignedBatch& batch : batches) {
            reference.record(sg::parse_webhook_events(batch.body));
        }
    }
    CHECK(reference_store->applied_facts() == stored_facts);

    // The two processes, started together on every batch, each in its own order.
    const std::string go = base + "-go";
    files.paths.push_back(go);
    std::vector<std::string> common{
        "--redis", url, "--prefix", prefix, "--public-key", signer.public_key_base64(), "--go", go};
    std::vector<pid_t> pids;
    std::vector<std::string> outs;
    for (int process = 0; process < 2; ++process) {
        std::vector<std::string> args = common;
        args.push_back("--seed");
        args.push_back(std::to_string(101 + process));
        for (const SignedBatch& batch : batches) args.push_back(batch.path);
        outs.push_back(base + "-receiver" + std::to_string(process));
        files.paths.push_back(outs.back() + ".out");
        files.paths.push_back(outs.back() + ".err");
        pids.push_back(test_support::spawn(SENDGRID_BACKEND_STATUS_RECEIVER_PROGRAM, args, {},
                                           outs.back() + ".out", outs.back() + ".err"));
    }
    { std::ofstream(go) << "go\n"; }
    std::vector<ReceiverRun> runs(2);
    for (int process = 0; process < 2; ++process) {
        runs[process].exit_status = test_support::wait_for_exit(pids[process]);
        runs[process].err = test_support::read_file(outs[process] + ".err");
        runs[process].parse(test_support::read_file(outs[process] + ".out"));
    }
    for (const ReceiverRun& run : runs) {
        CAPTURE(run.err);
        REQUIRE(run.exit_status == 0);
        REQUIRE(run.totals);
        CHECK(run.batches == batches.size());
        CHECK(run.events == events.size());  // every event verified and parsed
        CHECK(run.signals == run.signal_lines);
    }

    // Every event applied once: the counter in Redis, and what each process says it applied.
    auto redis = std::make_shared<sg::RedisClient>(sg::RedisOptions::from_url(url));
    sg::RedisStatusStoreOptions store_options;
    store_options.prefix = prefix;
    auto store = std::make_shared<sg::RedisStatusStore>(redis, store_options);
    CHECK(store->applied_facts() == stored_facts);
    CHECK(runs[0].applied + runs[1].applied == facts);
    // Both did part of the work: the two really ran against each other.
    CHECK(runs[0].applied > 0);
    CHECK(runs[1].applied > 0);
    std::printf(
        "status receivers: %zu events (%zu distinct facts) in %zu batches; applied %zu + %zu; "
        "signals %zu + %zu (one receiver in order: %zu)\n",
        events.size(), facts, batches.size(), runs[0].applied, runs[1].applied, runs[0].signals,
        runs[1].signals, reference_signals);

    // The statuses: each message's record and status as the reference's, field by field.
    sg::StatusTrackerOptions reading_options;
    reading_options.store = store;
    const sg::StatusTracker reading(reading_options);
    std::map<sg::DeliveryState, int> states;
    std::size_t links = 0;
    for (int m = 0; m < kMessages; ++m) {
        const std::string key = "m" + std::to_string(m);
        CAPTURE(key);
        const auto expected = reference.status(key);
        const auto found = reading.status(key);
        REQUIRE(expected);
        REQUIRE(found);
        CHECK(canonical(*found) == canonical(*expected));
        CHECK(record_difference(store->read(key), reference_store->read(key)) == "");
        CHECK(found->recipients.size() == static_cast<std::size_t>(kRecipients));
        for (const auto& recipient : expected->recipients) ++states[recipient.state];

        // Each target's signalled changes, both processes together: one chain to the end.
        std::vector<const sg::RecipientStatus*> targets{&found->send};
        for (const auto& recipient : found->recipients) targets.push_back(&recipient);
        for (const sg::RecipientStatus* target : targets) {
            const std::string name = target->email.empty() ? "-" : target->email;
            CAPTURE(name);
            std::vector<std::pair<StateText, StateText>> changes;
            for (const ReceiverRun& run : runs) {
                auto found_changes = run.changes.find({key, name});
                if (found_changes == run.changes.end()) continue;
                changes.insert(changes.end(), found_changes->second.begin(),
                               found_changes->second.end());
            }
            links += changes.size();
            CHECK(chain_fault(changes, state_text(target->summary())) == "");
        }
    }
    // No signal about anything else (the untracked events, another key or address).
    CHECK(links == runs[0].signals + runs[1].signals);
    // The events tell every story: the comparison above is not of empty statuses.
    for (sg::DeliveryState state :
         {sg::DeliveryState::delivered, sg::DeliveryState::bounced, sg::DeliveryState::blocked,
          sg::DeliveryState::deferred, sg::DeliveryState::dropped}) {
        CAPTURE(sg::to_string(state));
        CHECK(states[state] > 0);
    }

    delete_prefix(*redis, prefix);
}
