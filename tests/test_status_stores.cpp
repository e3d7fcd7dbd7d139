// The conformance test every StatusStore passes (the contract in status/store.hpp): the same
// checks, one function each, run against the memory store and, as they are built, the SQLite
// store (a file of the test's own) and the Redis store (the ctest fixture's redis-server). This
// file is compiled twice: in the SQLite program (memory and SQLite) and in the Redis program
// (SENDGRID_BACKEND_TEST_REDIS_STATUS_STORE: Redis, with the memory store as the oracle).
#include <sendgrid_backend/status/memory_store.hpp>
#include <sendgrid_backend/status/store.hpp>
#include <sendgrid_backend/status/tracker.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "catch.hpp"
#include "support/status_property.hpp"

#ifdef SENDGRID_BACKEND_TEST_SQLITE_STATUS_STORE
#include <sqlite3.h>

#include <sendgrid_backend/status/sqlite_store.hpp>
#endif
#ifdef SENDGRID_BACKEND_TEST_REDIS_STATUS_STORE
#include <sendgrid_backend/status/redis_store.hpp>

#include "support/cutting_proxy.hpp"
#include "support/redis_fixture.hpp"
#endif

// A namespace of its own: this file shares a unity-build unit with other tests.
namespace status_store_test {

using sendgrid_backend::AppliedFact;
using sendgrid_backend::FieldOp;
using sendgrid_backend::MemoryStatusStore;
using sendgrid_backend::PreparedFact;
using sendgrid_backend::StatusRecord;
using sendgrid_backend::StatusStore;
using Values = std::vector<std::int64_t>;
using Payload = std::vector<std::pair<std::string, std::string>>;
/// A fresh, empty store each call.
using MakeStore = std::function<std::shared_ptr<StatusStore>()>;

FieldOp op(FieldOp::Kind kind, std::string field, std::int64_t value) {
    FieldOp result;
    result.kind = kind;
    result.field = std::move(field);
    result.value = value;
    return result;
}
FieldOp max_op(std::string field, std::int64_t value) {
    return op(FieldOp::Kind::max, std::move(field), value);
}
FieldOp min_op(std::string field, std::int64_t value) {
    return op(FieldOp::Kind::min, std::move(field), value);
}
FieldOp add_op(std::string field, std::int64_t value) {
    return op(FieldOp::Kind::add, std::move(field), value);
}
FieldOp pick_op(std::string group, std::int64_t rank, std::int64_t time, std::int64_t tie,
                Payload payload = {}) {
    FieldOp result = op(FieldOp::Kind::pick, std::move(group), 0);
    result.order = {rank, time, tie};
    result.payload = std::move(payload);
    return result;
}

PreparedFact fact(std::string key, std::string fingerprint, std::vector<FieldOp> ops,
                  std::vector<std::string> watch = {}) {
    PreparedFact result;
    result.key = std::move(key);
    result.fingerprint = std::move(fingerprint);
    result.ops = std::move(ops);
    result.watch = std::move(watch);
    return result;
}

/// Applies one fact alone and returns what the store says it did.
AppliedFact apply_one(StatusStore& store, PreparedFact one) {
    const std::vector<AppliedFact> results = store.apply({std::move(one)});
    REQUIRE(results.size() == 1);
    return results[0];
}

std::string show(const std::string& text) {
    std::string shown = "\"";
    for (char c : text) {
        if (c == '\0') {
            shown += "\\0";
        } else {
            shown += c;
        }
    }
    return shown + "\"";
}

/// A record as text, so that a failed comparison shows both.
std::string show(const std::optional<StatusRecord>& record) {
    if (!record) return "nullopt";
    std::string text = "{";
    for (const auto& [field, value] : *record) text += show(field) + ": " + show(value) + ", ";
    return text + "}";
}

std::string show(const AppliedFact& result) {
    if (!result.applied) return "not applied" + std::string(result.before.empty() ? "" : " (?)");
    std::string text = "applied, before";
    for (auto value : result.before) text += " " + std::to_string(value);
    text += ", after";
    for (auto value : result.after) text += " " + std::to_string(value);
    return text;
}

std::string show(const std::vector<AppliedFact>& results) {
    std::string text;
    for (const AppliedFact& result : results) text += show(result) + "\n";
    return text;
}

// --- The contract, op by op ----------------------------------------------------------------

void check_contract(const MakeStore& make_store) {
    std::shared_ptr<StatusStore> made = make_store();
    StatusStore& store = *made;

    SECTION("max: a missing field is smaller than any value, negative ones included") {
        AppliedFact result = apply_one(store, fact("k", "f1", {max_op("m", 5)}, {"m"}));
        CHECK(result.applied);
        CHECK(result.before == Values{0});
        CHECK(result.after == Values{5});
        result = apply_one(store, fact("k", "f2", {max_op("m", 3)}, {"m"}));
        CHECK(result.before == Values{5});
        CHECK(result.after == Values{5});
        result = apply_one(store, fact("k", "f3", {max_op("m", 9)}, {"m"}));
        CHECK(result.after == Values{9});
        CHECK(apply_one(store, fact("k", "f4", {max_op("neg", -5)}, {"neg"})).after == Values{-5});
        CHECK(apply_one(store, fact("k", "f5", {max_op("neg", -7)}, {"neg"})).after == Values{-5});
        CHECK(apply_one(store, fact("k", "f6", {max_op("neg", -2)}, {"neg"})).after == Values{-2});
        CHECK(show(store.read("k")) == show(StatusRecord{{"m", "9"}, {"neg", "-2"}}));
    }

    SECTION("min: likewise, downwards") {
        CHECK(apply_one(store, fact("k", "f1", {min_op("m", 5)}, {"m"})).after == Values{5});
        CHECK(apply_one(store, fact("k", "f2", {min_op("m", 7)}, {"m"})).after == Values{5});
        CHECK(apply_one(store, fact("k", "f3", {min_op("m", -3)}, {"m"})).after == Values{-3});
        CHECK(apply_one(store, fact("k", "f4", {min_op("m", -1)}, {"m"})).after == Values{-3});
        CHECK(apply_one(store, fact("k", "f5", {min_op("big", 1000)}, {"big"})).before ==
              Values{0});
        CHECK(show(store.read("k")) == show(StatusRecord{{"big", "1000"}, {"m", "-3"}}));
    }

    SECTION("add: a missing field is 0; negative amounts and results") {
        AppliedFact result = apply_one(store, fact("k", "f1", {add_op("n", 4)}, {"n"}));
        CHECK(result.before == Values{0});
        CHECK(result.after == Values{4});
        result = apply_one(store, fact("k", "f2", {add_op("n", -10)}, {"n"}));
        CHECK(result.before == Values{4});
        CHECK(result.after == Values{-6});
        CHECK(apply_one(store, fact("k", "f3", {add_op("n", 0)}, {"n"})).after == Values{-6});
        CHECK(apply_one(store, fact("k", "f4", {add_op("z", 0)}, {"z"})).after == Values{0});
        CHECK(show(store.read("k")) == show(StatusRecord{{"n", "-6"}, {"z", "0"}}));
        // Within ±2^53, exactly (Redis' Lua numbers are doubles).
        const std::int64_t big = (std::int64_t{1} << 53) - 1;
        CHECK(apply_one(store, fact("k", "f5", {add_op("b", big - 1)}, {"b"})).after ==
              Values{big - 1});
        CHECK(apply_one(store, fact("k", "f6", {add_op("b", 1)}, {"b"})).after == Values{big});
        CHECK(apply_one(store, fact("k", "f7", {min_op("c", -big)}, {"c"})).after == Values{-big});
        CHECK(store.read("k")->at("b") == std::to_string(big));
        CHECK(store.read("k")->at("c") == std::to_string(-big));
    }

    SECTION("values past ±2^53 are taken as ±2^53, sums held within it; such texts no integer") {
        const std::int64_t limit = std::int64_t{1} << 53;
        const std::int64_t huge = std::numeric_limits<std::int64_t>::max();
        const std::int64_t tiny = std::numeric_limits<std::int64_t>::min();
        CHECK(apply_one(store, fact("k", "f1", {add_op("a", huge)}, {"a"})).after == Values{limit});
        CHECK(apply_one(store, fact("k", "f2", {add_op("a", huge)}, {"a"})).after == Values{limit});
        CHECK(apply_one(store, fact("k", "f3", {add_op("a", -3)}, {"a"})).after ==
              Values{limit - 3});
        CHECK(apply_one(store, fact("k", "f4", {add_op("s", tiny), add_op("s", tiny)}, {"s"}))
                  .after == Values{-limit});
        CHECK(apply_one(store, fact("k", "f5", {max_op("m", huge)}, {"m"})).after == Values{limit});
        CHECK(apply_one(store, fact("k", "f6", {min_op("n", tiny)}, {"n"})).after ==
              Values{-limit});
        apply_one(store, fact("k", "f7", {pick_op("p", huge, tiny, 1)}));
        // 18 digits: a text past 2^53 reads as none, so max writes its value over it.
        apply_one(store, fact("k", "f8",
                              {pick_op("t", 1, 1, 1,
                                       {{"t.big", "123456789012345678"},
                                        {"t.edge", "9007199254740993"},
                                        {"t.fits", "-9007199254740992"}})}));
        const AppliedFact result = apply_one(
            store, fact("k", "f9", {max_op("t.big", 1), add_op("t.edge", 1), min_op("t.fits", 0)},
                        {"t.big", "t.edge", "t.fits"}));
        CHECK(result.before == Values{0, 0, -limit});
        CHECK(result.after == Values{1, 1, -limit});
        const StatusRecord record = store.read("k").value();
        CHECK(record.at("a") == std::to_string(limit - 3));
        CHECK(record.at("p.rank") == std::to_string(limit));
        CHECK(record.at("p.time") == std::to_string(-limit));
        CHECK(record.at("t.fits") == "-9007199254740992");
        CHECK(record.at("t.big") == "1");
        CHECK(record.at("t.edge") == "1");  // 2^53 + 1: no integer, though a double rounds it
        // Leading zeros count toward the 18 digits, not toward the magnitude.
        apply_one(store,
                  fact("k", "f10",
                       {pick_op("u", 1, 1, 1,
                                {{"u.z", "0009007199254740992"}, {"u.y", "009007199254740992"}})}));
        const AppliedFact zeros = apply_one(
            store, fact("k", "f11", {add_op("u.z", 1), add_op("u.y", -1)}, {"u.z", "u.y"}));
        CHECK(zeros.before == Values{0, limit});
        CHECK(zeros.after == Values{1, limit - 1});
    }

    SECTION("pick: the greatest order wins, by rank, then time, then tie; ties keep the first") {
        const auto g = [&](std::int64_t rank, std::int64_t time, std::int64_t tie, Payload payload,
                           const std::string& fingerprint) {
            return apply_one(store, fact("k", fingerprint, {pick_op("g", rank, time, tie, payload)},
                                         {"g.rank", "g.time", "g.tie"}));
        };
        AppliedFact result = g(2, 100, 1, {{"g.state", "open"}, {"g.note", ""}}, "f1");
        CHECK(result.before == Values{0, 0, 0});
        CHECK(result.after == Values{2, 100, 1});
        const StatusRecord first{{"g.rank", "2"},
                                 {"g.time", "100"},
                                 {"g.tie", "1"},
                                 {"g.state", "open"},
                                 {"g.note", ""}};
        CHECK(show(store.read("k")) == show(first));  // the empty text is written too
        CHECK(g(1, 999, 9, {{"g.state", "lower rank"}}, "f2").after == Values{2, 100, 1});
        CHECK(g(2, 99, 9, {{"g.state", "earlier"}}, "f3").after == Values{2, 100, 1});
        CHECK(g(2, 100, 0, {{"g.state", "lower tie"}}, "f4").after == Values{2, 100, 1});
        CHECK(g(2, 100, 1, {{"g.state", "equal"}}, "f5").after == Values{2, 100, 1});
        CHECK(show(store.read("k")) == show(first));
        // A greater tie wins, and its empty text overwrites.
        CHECK(g(2, 100, 2, {{"g.state", ""}, {"g.note", "x"}}, "f6").after == Values{2, 100, 2});
        const StatusRecord second{
            {"g.rank", "2"}, {"g.time", "100"}, {"g.tie", "2"}, {"g.state", ""}, {"g.note", "x"}};
        CHECK(show(store.read("k")) == show(second));
        // A greater rank wins whatever its time; a payload need not name every field.
        CHECK(g(3, -50, -1, {{"g.state", "later"}}, "f7").after == Values{3, -50, -1});
        CHECK(store.read("k")->at("g.state") == "later");
        CHECK(store.read("k")->at("g.note") == "x");
        // Negative orders.
        CHECK(apply_one(store, fact("k", "h1", {pick_op("h", -2, 0, 0, {{"h.v", "a"}})})).applied);
        apply_one(store, fact("k", "h2", {pick_op("h", -3, 5, 5, {{"h.v", "b"}})}));
        CHECK(store.read("k")->at("h.v") == "a");
        apply_one(store, fact("k", "h3", {pick_op("h", -1, -9, -9, {{"h.v", "c"}})}));
        CHECK(store.read("k")->at("h.v") == "c");
        CHECK(store.read("k")->at("h.time") == "-9");
    }

    SECTION("pick: a missing part of the stored order is smaller than any") {
        apply_one(store, fact("k", "f1", {max_op("p.rank", 4)}));
        apply_one(store, fact("k", "f2", {pick_op("p", 3, 50, 50, {{"p.v", "lower"}})}));
        CHECK(show(store.read("k")) == show(StatusRecord{{"p.rank", "4"}}));
        apply_one(store, fact("k", "f3", {pick_op("p", 4, -1000, -1000, {{"p.v", "same rank"}})}));
        CHECK(show(store.read("k")) ==
              show(StatusRecord{
                  {"p.rank", "4"}, {"p.time", "-1000"}, {"p.tie", "-1000"}, {"p.v", "same rank"}}));
    }

    SECTION("a fact's ops apply in their order; stored texts that are no integer read as none") {
        AppliedFact result = apply_one(
            store,
            fact("k", "f1", {add_op("c", 1), max_op("c", 0), min_op("d", 5), add_op("d", -10)},
                 {"c", "d"}));
        CHECK(result.after == Values{1, -5});
        // Texts written by a payload, read back as integers as record_integer has it.
        const std::string nineteen_digits = "1234567890123456789";
        apply_one(store, fact("k", "f2",
                              {pick_op("t", 1, 1, 1,
                                       {{"t.word", "abc"},
                                        {"t.zeros", "007"},
                                        {"t.long", nineteen_digits},
                                        {"t.plus", "+5"},
                                        {"t.space", " 5"},
                                        {"t.minus", "-"},
                                        {"t.neg", "-08"}})}));
        result = apply_one(
            store, fact("k", "f3",
                        {max_op("t.zeros", 5), max_op("t.long", 1), add_op("t.word", 2),
                         min_op("t.plus", 9), max_op("t.space", 1), add_op("t.minus", 3),
                         max_op("t.neg", -9)},
                        {"t.word", "t.zeros", "t.long", "t.plus", "t.space", "t.minus", "t.neg"}));
        CHECK(result.before == Values{0, 7, 0, 0, 0, 0, -8});
        CHECK(result.after == Values{2, 7, 1, 9, 1, 3, -8});
        const StatusRecord record = store.read("k").value();
        CHECK(record.at("t.zeros") == "007");  // 7 > 5: kept as written
        CHECK(record.at("t.neg") == "-08");
        CHECK(record.at("t.long") == "1");
        CHECK(record.at("t.word") == "2");
    }

    SECTION("watch: values before and after, in watch order, 0 for missing; none for a copy") {
        apply_one(store, fact("k", "f0", {add_op("a", 5)}));
        const PreparedFact watched =
            fact("k", "f1", {add_op("a", 2), max_op("b", -4)}, {"a", "missing", "b", "a"});
        AppliedFact result = apply_one(store, watched);
        CHECK(result.applied);
        CHECK(result.before == Values{5, 0, 0, 5});
        CHECK(result.after == Values{7, 0, -4, 7});
        result = apply_one(store, watched);
        CHECK_FALSE(result.applied);
        CHECK(result.before.empty());
        CHECK(result.after.empty());
        // Nothing watched: nothing reported.
        result = apply_one(store, fact("k", "f2", {add_op("a", 1)}));
        CHECK(result.applied);
        CHECK(result.before.empty());
        CHECK(result.after.empty());
    }

    SECTION("duplicates, in one batch and across batches: applied and counted once") {
        CHECK(store.applied_facts() == 0);
        const PreparedFact once = fact("k", "f1", {add_op("n", 1)}, {"n"});
        // The fingerprint names the fact: a copy with other ops is still a copy.
        const PreparedFact changed_copy = fact("k", "f1", {add_op("n", 100)}, {"n"});
        // The same fingerprint under another key is another fact.
        const PreparedFact other_key = fact("j", "f1", {add_op("n", 1)}, {"n"});
        const std::vector<AppliedFact> results =
            store.apply({once, once, other_key, changed_copy, other_key});
        REQUIRE(results.size() == 5);
        CHECK(results[0].applied);
        CHECK(results[0].after == Values{1});
        CHECK_FALSE(results[1].applied);
        CHECK(results[2].applied);
        CHECK_FALSE(results[3].applied);
        CHECK_FALSE(results[4].applied);
        CHECK(store.applied_facts() == 2);
        for (int i = 0; i < 3; ++i) {
            const std::vector<AppliedFact> again = store.apply({changed_copy, once, other_key});
            REQUIRE(again.size() == 3);
            for (const AppliedFact& result : again) CHECK_FALSE(result.applied);
        }
        CHECK(store.applied_facts() == 2);
        CHECK(show(store.read("k")) == show(StatusRecord{{"n", "1"}}));
        CHECK(show(store.read("j")) == show(StatusRecord{{"n", "1"}}));
        // A fact with no ops is applied and counted; it leaves no record.
        CHECK(apply_one(store, fact("empty", "f1", {}, {"x"})).after == Values{0});
        CHECK_FALSE(apply_one(store, fact("empty", "f1", {})).applied);
        CHECK(store.applied_facts() == 3);
        CHECK_FALSE(store.read("empty").has_value());
    }

    SECTION("one message with thousands of facts and fields in one batch, and a copy of each") {
        // Past the sizes a store may split into several calls (Redis' Lua: 1,000 arguments).
        constexpr int facts = 2600;
        std::vector<PreparedFact> batch;
        for (int copy = 0; copy < 2; ++copy) {
            for (int i = 0; i < facts; ++i) {
                const std::string n = std::to_string(i);
                batch.push_back(fact("big", "f" + n,
                                     {add_op("n" + n, i), pick_op("g" + n, 1, i, 0, {{"v" + n, n}}),
                                      add_op("total", 1)},
                                     {"n" + n, "total"}));
            }
        }
        const std::vector<AppliedFact> results = store.apply(batch);
        REQUIRE(results.size() == batch.size());
        for (int i = 0; i < facts; ++i) {
            INFO("fact " << i);
            CHECK(results[i].applied);
            CHECK(results[i].before == Values{0, i});
            CHECK(results[i].after == Values{i, i + 1});
            CHECK_FALSE(results[facts + i].applied);
        }
        CHECK(store.applied_facts() == static_cast<std::uint64_t>(facts));
        const StatusRecord record = store.read("big").value();
        CHECK(record.size() == 1 + 5 * static_cast<std::size_t>(facts));
        CHECK(record.at("total") == std::to_string(facts));
        CHECK(record.at("n2599") == "2599");
        CHECK(record.at("g2599.time") == "2599");
        CHECK(record.at("v2599") == "2599");
        CHECK_FALSE(apply_one(store, batch[facts - 1]).applied);
    }

    SECTION("facts for several keys in one batch; unknown keys; an empty batch") {
        const std::string odd_key = "order 42/\xc3\xbc:rec:x";  // spaces, UTF-8, the separator
        const std::string nul_field("n\0l", 3);
        const std::string nul_value("v\0", 2);
        const std::vector<AppliedFact> results = store.apply({
            fact("a", "f1", {add_op("n", 1)}, {"n"}),
            fact("b", "f1", {add_op("n", 10)}, {"n"}),
            fact("a", "f2", {add_op("n", 2)}, {"n"}),
            fact(odd_key, "f1", {pick_op("g", 1, 2, 3, {{nul_field, nul_value}, {"e", ""}})}),
            fact("b", "f2", {max_op("m", -1)}, {"n", "m"}),
        });
        REQUIRE(results.size() == 5);
        CHECK(results[0].after == Values{1});
        CHECK(results[1].after == Values{10});
        CHECK(results[2].before == Values{1});
        CHECK(results[2].after == Values{3});
        CHECK(results[3].applied);
        CHECK(results[4].before == Values{10, 0});
        CHECK(results[4].after == Values{10, -1});
        CHECK(show(store.read("a")) == show(StatusRecord{{"n", "3"}}));
        CHECK(show(store.read("b")) == show(StatusRecord{{"m", "-1"}, {"n", "10"}}));
        CHECK(show(store.read(odd_key)) == show(StatusRecord{{"g.rank", "1"},
                                                             {"g.time", "2"},
                                                             {"g.tie", "3"},
                                                             {nul_field, nul_value},
                                                             {"e", ""}}));
        CHECK(store.applied_facts() == 5);
        CHECK_FALSE(store.read("c").has_value());
        CHECK_FALSE(store.read("").has_value());
        CHECK_FALSE(store.read("order 42/").has_value());
        CHECK(store.apply({}).empty());
        CHECK(store.applied_facts() == 5);
    }
}

// --- The property: any order, any copies, any batches give the same records ------------------

const std::vector<std::string> property_keys{"a", "b", "order:7"};

/// Facts whose ops are all joins, so that the record is the same in any order: each field takes
/// one kind of op, and a pick group's payload is a function of its order (always the same
/// names, empty texts included), as the status rules make them.
std::vector<PreparedFact> random_facts(std::mt19937& rng, int most) {
    auto pick = [&](int low, int high) {
        return std::uniform_int_distribution<int>(low, high)(rng);
    };
    const std::vector<std::string> watchable{"hi1", "lo1", "n1", "n2", "g.rank", "h.tie", "none"};
    std::vector<PreparedFact> facts;
    std::map<std::string, int> next_fingerprint;
    const int count = pick(1, most);
    for (int i = 0; i < count; ++i) {
        PreparedFact one;
        one.key = property_keys[static_cast<std::size_t>(pick(0, 2))];
        // "f<n>" per key: the same fingerprints recur under other keys.
        one.fingerprint = "f" + std::to_string(next_fingerprint[one.key]++);
        const int ops = pick(0, 4);
        for (int o = 0; o < ops; ++o) {
            const std::string which = std::to_string(pick(1, 2));
            switch (pick(0, 3)) {
                case 0:
                    one.ops.push_back(max_op("hi" + which, pick(-1000, 1000)));
                    break;
                case 1:
                    one.ops.push_back(min_op("lo" + which, pick(-1000, 1000)));
                    break;
                case 2:
                    one.ops.push_back(add_op("n" + which, pick(-50, 50)));
                    break;
                default: {
                    const std::string group = pick(0, 1) == 0 ? "g" : "h";
                    const int rank = pick(-2, 3), time = pick(-5, 5), tie = pick(0, 3);
                    const std::string order = std::to_string(rank) + "/" + std::to_string(time) +
                                              "/" + std::to_string(tie);
                    one.ops.push_back(pick_op(group, rank, time, tie,
                                              {{group + ".state", "s" + order},
                                               {group + ".note", tie % 2 == 0 ? "" : order}}));
                }
            }
        }
        const int watched = pick(0, 3);
        for (int w = 0; w < watched; ++w) {
            one.watch.push_back(watchable[static_cast<std::size_t>(pick(0, 6))]);
        }
        facts.push_back(std::move(one));
    }
    return facts;
}

/// Every fact 1 to 50 times, shuffled, cut into batches of random sizes.
std::vector<std::vector<PreparedFact>> random_batches(const std::vector<PreparedFact>& facts,
                                                      std::mt19937& rng) {
    std::vector<PreparedFact> copies;
    for (const PreparedFact& one : facts) {
        const int times = std::uniform_int_distribution<int>(1, 50)(rng);
        for (int i = 0; i < times; ++i) copies.push_back(one);
    }
    std::shuffle(copies.begin(), copies.end(), rng);
    std::vector<std::vector<PreparedFact>> batches;
    std::size_t at = 0;
    while (at < copies.size()) {
        const auto size = static_cast<std::size_t>(std::uniform_int_distribution<int>(1, 60)(rng));
        const std::size_t end = std::min(copies.size(), at + size);
        batches.emplace_back(copies.begin() + static_cast<std::ptrdiff_t>(at),
                             copies.begin() + static_cast<std::ptrdiff_t>(end));
        at = end;
    }
    return batches;
}

std::vector<AppliedFact> apply_all(StatusStore& store,
                                   const std::vector<std::vector<PreparedFact>>& batches) {
    std::vector<AppliedFact> results;
    for (const auto& batch : batches) {
        const std::vector<AppliedFact> answer = store.apply(batch);
        REQUIRE(answer.size() == batch.size());
        results.insert(results.end(), answer.begin(), answer.end());
    }
    return results;
}

std::size_t distinct_facts(const std::vector<PreparedFact>& facts) {
    std::set<std::pair<std::string, std::string>> distinct;
    for (const PreparedFact& one : facts) distinct.emplace(one.key, one.fingerprint);
    return distinct.size();
}

/// `rounds` rounds from `first_seed` on: the store's answers to one order of batches are the
/// memory store's, and another order, in a store of its own, ends with the same records.
void check_property(const MakeStore& make_store, int rounds, unsigned first_seed) {
    for (int round = 0; round < rounds; ++round) {
        const unsigned seed = first_seed + static_cast<unsigned>(round);
        CAPTURE(seed);
        std::mt19937 rng(seed);
        const std::vector<PreparedFact> facts = random_facts(rng, 40);
        const auto batches = random_batches(facts, rng);
        const auto other_batches = random_batches(facts, rng);
        MemoryStatusStore oracle;
        std::shared_ptr<StatusStore> store = make_store();
        std::shared_ptr<StatusStore> other = make_store();
        const std::vector<AppliedFact> expected = apply_all(oracle, batches);
        CHECK(show(apply_all(*store, batches)) == show(expected));
        apply_all(*other, other_batches);
        for (const std::string& key : property_keys) {
            CAPTURE(key);
            const std::string record = show(oracle.read(key));
            CHECK(show(store->read(key)) == record);
            CHECK(show(other->read(key)) == record);
        }
        const std::size_t distinct = distinct_facts(facts);
        CHECK(oracle.applied_facts() == distinct);
        CHECK(store->applied_facts() == distinct);
        CHECK(other->applied_facts() == distinct);
    }
}

/// `threads` threads, each with a store of its own over the same data (`open_shared`, called
/// in the thread), apply the same facts in different orders at once: each fact is applied once.
void check_concurrent(const std::function<std::shared_ptr<StatusStore>()>& open_shared,
                      unsigned seed, std::size_t threads_count = 2) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    const std::vector<PreparedFact> facts = random_facts(rng, 60);
    std::vector<std::vector<std::vector<PreparedFact>>> orders;
    for (std::size_t t = 0; t < threads_count; ++t) orders.push_back(random_batches(facts, rng));
    std::vector<std::size_t> applied(orders.size(), 0);
    std::vector<std::exception_ptr> errors(orders.size());
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < orders.size(); ++t) {
        threads.emplace_back([&, t] {
            try {
                std::shared_ptr<StatusStore> store = open_shared();
                for (const auto& batch : orders[t]) {
                    for (const AppliedFact& result : store->apply(batch)) {
                        applied[t] += result.applied ? 1 : 0;
                    }
                }
            } catch (...) {
                errors[t] = std::current_exception();
            }
        });
    }
    for (std::thread& thread : threads) thread.join();
    for (const std::exception_ptr& error : errors) {
        if (error) std::rethrow_exception(error);
    }
    const std::size_t distinct = distinct_facts(facts);
    std::size_t applied_by_all = 0;
    for (std::size_t count : applied) applied_by_all += count;
    CHECK(applied_by_all == distinct);
    MemoryStatusStore oracle;
    oracle.apply(facts);
    std::shared_ptr<StatusStore> reader = open_shared();
    CHECK(reader->applied_facts() == distinct);
    for (const std::string& key : property_keys) {
        CAPTURE(key);
        CHECK(show(reader->read(key)) == show(oracle.read(key)));
    }
}

#ifndef SENDGRID_BACKEND_TEST_REDIS_STATUS_STORE

TEST_CASE("the memory store keeps the StatusStore contract", "[status][store]") {
    check_contract([] { return std::make_shared<MemoryStatusStore>(); });
}

TEST_CASE("the memory store: any order, copies and batches give the same records",
          "[status][store]") {
    check_property([] { return std::make_shared<MemoryStatusStore>(); }, 40, 1000);
}

TEST_CASE("the memory store: two threads apply the same facts once", "[status][store]") {
    auto shared = std::make_shared<MemoryStatusStore>();
    check_concurrent([&] { return shared; }, 77);
}

#endif

#ifdef SENDGRID_BACKEND_TEST_SQLITE_STATUS_STORE

using sendgrid_backend::SqliteError;
using sendgrid_backend::SqliteStatusStore;
using sendgrid_backend::SqliteStatusStoreOptions;

/// A directory of the test's own, removed with what it holds.
struct TempDir {
    std::filesystem::path path;
    TempDir() {
        char name[] = "/tmp/sendgrid_backend_sqlite_XXXXXX";
        REQUIRE(::mkdtemp(name) != nullptr);
        path = name;
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path, ignored);
    }
    /// A new file name in it each call.
    std::string fresh() { return (path / ("status" + std::to_string(++files) + ".db")).string(); }
    int files = 0;
};

/// Unix time as a test sets it.
class FakeClock final : public sendgrid_backend::Clock {
  public:
    time_point now() override { return std::chrono::steady_clock::now(); }
    std::int64_t unix_now() override { return unix_time; }
    void sleep_until(time_point) override {}
    std::int64_t unix_time = 1'000'000;
};

/// Rows of `table` for `key`, read with SQLite directly.
long long rows_for(const std::string& path, const char* table, const std::string& key) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
    std::unique_ptr<sqlite3, int (*)(sqlite3*)> closer(db, &sqlite3_close);
    sqlite3_stmt* raw = nullptr;
    const std::string sql = std::string("SELECT count(*) FROM ") + table + " WHERE key = ?1";
    REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &raw, nullptr) == SQLITE_OK);
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> statement(raw, &sqlite3_finalize);
    sqlite3_bind_text(raw, 1, key.c_str(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
    REQUIRE(sqlite3_step(raw) == SQLITE_ROW);
    return sqlite3_column_int64(raw, 0);
}

TEST_CASE("the SQLite store keeps the StatusStore contract", "[status][store][sqlite]") {
    TempDir dir;
    check_contract([&] { return std::make_shared<SqliteStatusStore>(dir.fresh()); });
}

TEST_CASE("the SQLite store: any order, copies and batches give the same records",
          "[status][store][sqlite]") {
    TempDir dir;
    check_property([&] { return std::make_shared<SqliteStatusStore>(dir.fresh()); }, 12, 2000);
}

TEST_CASE("the SQLite store: recorded events in any order and copies give one status",
          "[status][store][sqlite][property]") {
    TempDir dir;
    status_property::check([&] { return std::make_shared<SqliteStatusStore>(dir.fresh()); }, 10,
                           20261207);
}

TEST_CASE("the SQLite store: stores on one file apply the same facts at once, each fact once",
          "[status][store][sqlite]") {
    TempDir dir;
    for (unsigned seed = 3000; seed < 3008; ++seed) {
        const std::string file = dir.fresh();  // made by whichever thread opens it first
        // Two stores, then four: the more writers, the likelier a lost race would show.
        check_concurrent([&] { return std::make_shared<SqliteStatusStore>(file); }, seed,
                         seed % 2 == 0 ? 2 : 4);
    }
}

TEST_CASE("the SQLite store keeps its records in the file", "[status][store][sqlite]") {
    TempDir dir;
    const std::string path = dir.fresh();
    {
        SqliteStatusStore store(path);
        store.apply({fact("k", "f1", {add_op("n", 3)}), fact("k", "f2", {add_op("n", 4)})});
    }
    SqliteStatusStore reopened(path);
    CHECK(show(reopened.read("k")) == show(StatusRecord{{"n", "7"}}));
    CHECK(reopened.applied_facts() == 2);
    CHECK_FALSE(apply_one(reopened, fact("k", "f2", {add_op("n", 4)})).applied);
}

TEST_CASE("the SQLite store forgets a message max_age after its last applied fact",
          "[status][store][sqlite]") {
    TempDir dir;
    const std::string path = dir.fresh();
    FakeClock clock;
    SqliteStatusStoreOptions options;
    options.max_age = std::chrono::seconds(100);
    options.clock = &clock;
    SqliteStatusStore store(path, options);
    const std::int64_t start = clock.unix_time;
    store.apply({fact("old", "f1", {add_op("n", 1)}), fact("kept", "f1", {add_op("n", 1)})});
    clock.unix_time = start + 60;
    CHECK_FALSE(apply_one(store, fact("old", "f1", {add_op("n", 1)})).applied);  // no refresh
    CHECK(apply_one(store, fact("kept", "f2", {add_op("n", 1)})).applied);       // refreshes
    clock.unix_time = start + 99;
    CHECK(store.read("old").has_value());
    clock.unix_time = start + 100;
    CHECK_FALSE(store.read("old").has_value());
    CHECK(show(store.read("kept")) == show(StatusRecord{{"n", "2"}}));
    // Forgotten with its fingerprints: the fact is new again.
    CHECK(apply_one(store, fact("old", "f1", {add_op("n", 5)}, {"n"})).before == Values{0});
    CHECK(show(store.read("old")) == show(StatusRecord{{"n", "5"}}));
    CHECK(store.applied_facts() == 4);
    // Another key's apply deletes a forgotten message's rows.
    clock.unix_time = start + 1000;
    CHECK(rows_for(path, "records", "kept") == 1);
    store.apply({fact("new", "f1", {add_op("n", 1)})});
    CHECK(rows_for(path, "records", "kept") == 0);
    CHECK(rows_for(path, "fingerprints", "kept") == 0);
    CHECK(rows_for(path, "messages", "kept") == 0);
    CHECK(rows_for(path, "records", "new") == 1);
}

TEST_CASE("the SQLite store forgets old messages also past what one apply deletes",
          "[status][store][sqlite]") {
    TempDir dir;
    const std::string path = dir.fresh();
    FakeClock clock;
    SqliteStatusStoreOptions options;
    options.max_age = std::chrono::seconds(100);
    options.clock = &clock;
    SqliteStatusStore store(path, options);
    // More forgotten messages than one apply deletes (oldest first): the newest of them is still
    // in the file when its fact comes again, and must count as new.
    const int messages = sendgrid_backend::detail::sqlite_prune_per_apply + 20;
    const std::int64_t start = clock.unix_time;
    for (int i = 0; i < messages; ++i) {  // within max_age: none is forgotten on the way
        clock.unix_time = start + i / 3;
        store.apply({fact("m" + std::to_string(i), "f1", {add_op("n", 1)})});
    }
    clock.unix_time = start + messages / 3 + 100;
    const std::string newest = "m" + std::to_string(messages - 1);
    const AppliedFact again = apply_one(store, fact(newest, "f1", {add_op("n", 1)}, {"n"}));
    CHECK(again.applied);
    CHECK(again.before == Values{0});
    CHECK(show(store.read(newest)) == show(StatusRecord{{"n", "1"}}));
    CHECK_FALSE(store.read("m0").has_value());
    CHECK(rows_for(path, "messages", "m0") == 0);
}

TEST_CASE("the SQLite store: errors name the file and say SQLite's reason; options checked",
          "[status][store][sqlite]") {
    TempDir dir;
    const std::string missing_dir = (dir.path / "no such dir" / "status.db").string();
    CHECK_THROWS_WITH(SqliteStatusStore(missing_dir),
                      Catch::Contains("[sendgrid_backend.sqlite]") &&
                          Catch::Contains(missing_dir) &&
                          Catch::Contains("unable to open database file"));
    const std::string not_a_database = dir.fresh();
    {
        std::ofstream file(not_a_database);
        for (int i = 0; i < 200; ++i) file << "this is not a SQLite database\n";
    }
    CHECK_THROWS_AS(SqliteStatusStore(not_a_database), SqliteError);
    CHECK_THROWS_WITH(SqliteStatusStore(not_a_database),
                      Catch::Contains(not_a_database) && Catch::Contains("file is not a database"));

    const auto refused = [&](SqliteStatusStoreOptions options) -> std::string {
        try {
            SqliteStatusStore store(dir.fresh(), options);
        } catch (const sendgrid_backend::ImproperlyConfigured& e) {
            return e.setting();
        }
        return "<accepted>";
    };
    SqliteStatusStoreOptions options;
    options.busy_timeout = std::chrono::milliseconds(-1);
    CHECK(refused(options) == "SqliteStatusStoreOptions::busy_timeout");
    options = {};
    options.max_age = std::chrono::seconds(0);
    CHECK(refused(options) == "SqliteStatusStoreOptions::max_age");
    options.max_age = std::chrono::hours(24 * 367);
    CHECK(refused(options) == "SqliteStatusStoreOptions::max_age");
    options.max_age = std::chrono::hours(24 * 366);
    CHECK(refused(options) == "<accepted>");
}

TEST_CASE("the SQLite store: a writer that holds the file too long is an error, not a hang",
          "[status][store][sqlite]") {
    TempDir dir;
    const std::string path = dir.fresh();
    SqliteStatusStoreOptions options;
    options.busy_timeout = std::chrono::milliseconds(50);
    SqliteStatusStore store(path, options);
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    std::unique_ptr<sqlite3, int (*)(sqlite3*)> closer(db, &sqlite3_close);
    REQUIRE(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
    CHECK_THROWS_WITH(store.apply({fact("k", "f1", {add_op("n", 1)})}),
                      Catch::Contains(path) && Catch::Contains("locked"));
    REQUIRE(sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr) == SQLITE_OK);
    // Nothing of the failed batch was kept; the store works on.
    CHECK(store.applied_facts() == 0);
    CHECK(apply_one(store, fact("k", "f1", {add_op("n", 1)})).applied);
    CHECK(store.applied_facts() == 1);
}

#endif

#ifdef SENDGRID_BACKEND_TEST_REDIS_STATUS_STORE

using sendgrid_backend::RedisClient;
using sendgrid_backend::RedisOptions;
using sendgrid_backend::RedisStatusStore;
using sendgrid_backend::RedisStatusStoreOptions;

/// Whether the fixture's redis-server is there; without it (the program run by hand) the Redis
/// checks are skipped, said with a warning.
bool have_redis() {
    if (std::getenv("SENDGRID_BACKEND_REDIS_DIR") != nullptr) return true;
    WARN(
        "SENDGRID_BACKEND_REDIS_DIR is not set: the Redis status store is not checked (ctest "
        "starts the redis-server fixture and sets it)");
    return false;
}

std::shared_ptr<RedisClient> fixture_client() {
    return std::make_shared<RedisClient>(RedisOptions::from_url(test_support::redis_fixture_url()));
}

/// A prefix no other test or run uses.
RedisStatusStoreOptions fresh_options() {
    static std::atomic<int> counter{0};
    RedisStatusStoreOptions options;
    options.prefix =
        "test:status:" + std::to_string(::getpid()) + ":" + std::to_string(++counter) + ":";
    return options;
}

TEST_CASE("the Redis store keeps the StatusStore contract", "[status][store][redis]") {
    if (!have_redis()) return;
    auto redis = fixture_client();
    check_contract([&] { return std::make_shared<RedisStatusStore>(redis, fresh_options()); });
}

TEST_CASE("the Redis store: any order, copies and batches give the same records",
          "[status][store][redis]") {
    if (!have_redis()) return;
    auto redis = fixture_client();
    check_property([&] { return std::make_shared<RedisStatusStore>(redis, fresh_options()); }, 25,
                   4000);
}

TEST_CASE("the Redis store: recorded events in any order and copies give one status",
          "[status][store][redis][property]") {
    if (!have_redis()) return;
    auto redis = fixture_client();
    status_property::check(
        [&] { return std::make_shared<RedisStatusStore>(redis, fresh_options()); }, 25, 20261208);
}

TEST_CASE("the Redis store: two clients apply the same facts at once, each fact once",
          "[status][store][redis]") {
    if (!have_redis()) return;
    const std::string url = test_support::redis_fixture_url();  // Catch checks: not in a thread
    for (unsigned seed : {5000u, 5001u, 5002u}) {
        const RedisStatusStoreOptions options = fresh_options();
        // Each thread its own connection.
        check_concurrent(
            [&] {
                return std::make_shared<RedisStatusStore>(
                    std::make_shared<RedisClient>(RedisOptions::from_url(url)), options);
            },
            seed);
    }
}

TEST_CASE("the Redis store: a message's two keys expire ttl after its last fact",
          "[status][store][redis]") {
    if (!have_redis()) return;
    auto redis = fixture_client();
    RedisStatusStoreOptions options = fresh_options();
    options.ttl = std::chrono::seconds(3600);
    RedisStatusStore store(redis, options);
    store.apply({fact("k", "f1", {add_op("n", 1)})});
    for (const std::string& key : {options.record_key("k"), options.fingerprints_key("k")}) {
        CAPTURE(key);
        const auto ttl = redis->command({"TTL", key}).integer;
        CHECK(ttl > 3500);
        CHECK(ttl <= 3600);
    }
    CHECK(redis->command({"TTL", options.applied_key()}).integer == -1);  // the counter stays
    CHECK(redis->command({"SISMEMBER", options.fingerprints_key("k"), "f1"}).integer == 1);
    CHECK(redis->command({"HGET", options.record_key("k"), "n"}).text == "1");
    // A copy does not refresh them; a new fact does.
    redis->command({"EXPIRE", options.record_key("k"), "100"});
    redis->command({"EXPIRE", options.fingerprints_key("k"), "100"});
    store.apply({fact("k", "f1", {add_op("n", 1)})});
    CHECK(redis->command({"TTL", options.record_key("k")}).integer <= 100);
    store.apply({fact("k", "f2", {add_op("n", 1)})});
    CHECK(redis->command({"TTL", options.record_key("k")}).integer > 3500);
    CHECK(redis->command({"TTL", options.fingerprints_key("k")}).integer > 3500);
}

TEST_CASE("the Redis store: options checked; a key of another type refused, nothing written",
          "[status][store][redis]") {
    const auto refused = [](std::chrono::seconds ttl) -> std::string {
        RedisStatusStoreOptions options;
        options.ttl = ttl;
        try {
            options.validate();
        } catch (const sendgrid_backend::ImproperlyConfigured& e) {
            return e.setting();
        }
        return "<accepted>";
    };
    CHECK(refused(std::chrono::seconds(0)) == "RedisStatusStoreOptions::ttl");
    CHECK(refused(std::chrono::seconds(-5)) == "RedisStatusStoreOptions::ttl");
    CHECK(refused(std::chrono::hours(24 * 367)) == "RedisStatusStoreOptions::ttl");
    CHECK(refused(std::chrono::hours(24 * 366)) == "<accepted>");
    CHECK(refused(std::chrono::seconds(1)) == "<accepted>");
    CHECK_THROWS_AS(RedisStatusStore(nullptr), sendgrid_backend::ImproperlyConfigured);
    if (!have_redis()) return;
    auto redis = fixture_client();
    const RedisStatusStoreOptions options = fresh_options();
    RedisStatusStore store(redis, options);
    redis->command({"SET", options.record_key("taken"), "a string"});
    CHECK_THROWS_WITH(
        store.apply({fact("free", "f1", {add_op("n", 1)}), fact("taken", "f1", {add_op("n", 1)})}),
        Catch::Contains("WRONGTYPE") && Catch::Contains("taken"));
    CHECK(redis->command({"EXISTS", options.fingerprints_key("free")}).integer == 0);
    CHECK(redis->command({"EXISTS", options.fingerprints_key("taken")}).integer == 0);
    CHECK_FALSE(store.read("free").has_value());
    CHECK(store.applied_facts() == 0);
    // A fact that reads no field: the record's type is checked all the same, and its time to
    // live left alone.
    REQUIRE(redis->command({"EXPIRE", options.record_key("taken"), "5000"}).integer == 1);
    CHECK_THROWS_WITH(store.apply({fact("taken", "f2", {})}),
                      Catch::Contains("WRONGTYPE") && Catch::Contains("taken"));
    const std::int64_t ttl = redis->command({"TTL", options.record_key("taken")}).integer;
    CHECK(ttl > 4000);
    CHECK(ttl <= 5000);
    CHECK(store.applied_facts() == 0);
}

TEST_CASE("the Redis store loads its script again after Redis forgot it",
          "[status][store][redis]") {
    if (!have_redis()) return;
    auto redis = fixture_client();
    RedisStatusStore store(redis, fresh_options());
    CHECK(apply_one(store, fact("k", "f1", {add_op("n", 1)})).applied);
    // As after a restart (other processes' scripts reload on NOSCRIPT as this one does).
    REQUIRE(redis->command({"SCRIPT", "FLUSH"}).text == "OK");
    CHECK(apply_one(store, fact("k", "f2", {add_op("n", 1)})).applied);
    CHECK(show(store.read("k")) == show(StatusRecord{{"n", "2"}}));
    CHECK(store.applied_facts() == 2);
}

/// The keys of the calls' kept answers under the store's prefix.
std::vector<std::string> kept_answers(RedisClient& redis, const RedisStatusStoreOptions& options) {
    return test_support::redis_keys(redis, options.call_key("*"));
}

TEST_CASE("the Redis store: a connection broken during a call loses no answer and applies once",
          "[status][store][redis]") {
    if (!have_redis()) return;
    using test_support::CuttingProxy;
    const RedisOptions target = RedisOptions::from_url(test_support::redis_fixture_url());
    CuttingProxy proxy(target.host, target.port);
    RedisOptions through = target;
    through.port = proxy.port();
    const RedisStatusStoreOptions options = fresh_options();
    auto direct = fixture_client();
    RedisStatusStore store(std::make_shared<RedisClient>(through), options);
    CHECK(apply_one(store, fact("warm", "w", {add_op("n", 1)})).applied);  // the script loaded

    // Redis ran the script and its answer was lost: the call sent again answers what it did.
    proxy.arm(CuttingProxy::Cut::next_answer);
    std::vector<AppliedFact> results =
        store.apply({fact("k", "f1", {add_op("n", 1), max_op("m", 5)}, {"n", "m"}),
                     fact("k", "f2", {add_op("n", 1)}, {"n"}),
                     fact("k", "f1", {add_op("n", 1), max_op("m", 5)}, {"n", "m"})});
    CHECK(proxy.cuts() == 1);
    CHECK(show(results) ==
          "applied, before 0 0, after 1 5\napplied, before 1, after 2\nnot applied\n");
    RedisStatusStore reader(direct, options);
    CHECK(show(reader.read("k")) == show(StatusRecord{{"m", "5"}, {"n", "2"}}));
    CHECK(reader.applied_facts() == 3);

    // The request never reached Redis: the call sent again applies it.
    proxy.arm(CuttingProxy::Cut::next_request);
    results = store.apply({fact("k", "f3", {add_op("n", 1)}, {"n"})});
    CHECK(proxy.cuts() == 2);
    CHECK(show(results) == "applied, before 2, after 3\n");
    CHECK(reader.applied_facts() == 4);

    // Each call that applied something keeps its answer for answer_ttl; one that applied
    // nothing keeps none.
    CHECK(kept_answers(*direct, options).size() == 3);
    CHECK_FALSE(apply_one(store, fact("k", "f3", {add_op("n", 1)})).applied);
    const std::vector<std::string> kept = kept_answers(*direct, options);
    REQUIRE(kept.size() == 3);
    const std::int64_t ttl = direct->command({"TTL", kept[0]}).integer;
    CHECK(ttl > 0);
    CHECK(ttl <= RedisStatusStoreOptions::answer_ttl.count());
    CHECK(reader.applied_facts() == 4);

    // The answer lost and Redis out of reach for the tries after it: not "nothing applied"
    // (a RedisError) but "may have been applied"; offered again, the facts count once.
    RedisOptions impatient = through;
    impatient.reconnect_for = std::chrono::milliseconds(200);
    RedisStatusStore hurried(std::make_shared<RedisClient>(impatient), options);
    CHECK(apply_one(hurried, fact("k", "f4", {add_op("n", 1)})).applied);
    proxy.arm(CuttingProxy::Cut::next_answer);
    proxy.down();  // the store's connection stays; a new one is refused
    try {
        hurried.apply({fact("k", "f5", {add_op("n", 1)})});
        FAIL("apply returned");
    } catch (const sendgrid_backend::RedisConnectionLost& lost) {
        CHECK_THAT(lost.what(), Catch::Contains("may have been applied"));
    }
    proxy.up();
    CHECK(reader.applied_facts() == 6);
    CHECK_FALSE(apply_one(hurried, fact("k", "f5", {add_op("n", 1)})).applied);
    CHECK(show(reader.read("k")) == show(StatusRecord{{"m", "5"}, {"n", "5"}}));
}

TEST_CASE("the Redis store: a connection broken during a batch loses no status change",
          "[status][store][redis]") {
    if (!have_redis()) return;
    using test_support::CuttingProxy;
    namespace sg = sendgrid_backend;
    // The oracle: the batch through the in-process store, every change it signals.
    sg::StatusTrackerOptions memory;
    memory.store = std::make_shared<MemoryStatusStore>();
    sg::StatusTracker oracle(memory);
    decltype(status_property::ChangeLog::changes) expected;
    {
        status_property::ChangeLog log("cut-batch");
        oracle.record(status_property::parse(status_property::recorded_sequence("cut-batch")));
        expected = log.changes;
    }
    REQUIRE(expected.size() > 5);

    const RedisOptions target = RedisOptions::from_url(test_support::redis_fixture_url());
    CuttingProxy proxy(target.host, target.port);
    RedisOptions through = target;
    through.port = proxy.port();
    auto store =
        std::make_shared<RedisStatusStore>(std::make_shared<RedisClient>(through), fresh_options());
    // Connected and the script loaded, so that the cut falls on the batch's answer.
    CHECK(apply_one(*store, fact("warm", "w", {add_op("n", 1)})).applied);
    sg::StatusTrackerOptions shared;
    shared.store = store;
    sg::StatusTracker tracker(shared);
    status_property::ChangeLog seen("cut-batch");
    proxy.arm(CuttingProxy::Cut::next_answer);
    const auto events = status_property::parse(status_property::recorded_sequence("cut-batch"));
    CHECK(tracker.record(events) == events.size());
    CHECK(proxy.cuts() == 1);
    CHECK(seen.changes == expected);  // each change once, as the oracle signalled it
    // SendGrid posting the batch again changes and signals nothing.
    CHECK(tracker.record(events) == 0);
    CHECK(seen.changes.size() == expected.size());
    CHECK(status_property::status_text(*tracker.status("cut-batch")) ==
          status_property::status_text(*oracle.status("cut-batch")));
}

#endif

}  // namespace status_store_test
