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
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
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

using sendgrid_backend::AppliedFacts;
using sendgrid_backend::MemoryStatusStore;
using sendgrid_backend::PreparedFact;
using sendgrid_backend::StatusRecord;
using sendgrid_backend::StatusStore;
/// A target's fact bodies (compared in any order: sorted first).
using Bodies = std::vector<std::string>;
/// A fresh, empty store each call.
using MakeStore = std::function<std::shared_ptr<StatusStore>()>;

PreparedFact fact(std::string key, std::string target, std::string fingerprint, std::string body) {
    PreparedFact result;
    result.key = std::move(key);
    result.target = std::move(target);
    result.fingerprint = std::move(fingerprint);
    result.body = std::move(body);
    return result;
}

/// What `apply` answered, checked for its sizes: a flag per fact, a `before` per target.
AppliedFacts apply_checked(StatusStore& store, const std::vector<PreparedFact>& facts) {
    AppliedFacts result = store.apply(facts);
    REQUIRE(result.applied.size() == facts.size());
    REQUIRE(result.before.size() == sendgrid_backend::detail::target_groups(facts).first.size());
    return result;
}

/// Applies one fact alone: whether the store applied it.
bool apply_one(StatusStore& store, PreparedFact one) {
    return apply_checked(store, {std::move(one)}).applied.at(0);
}

/// The applied flags as text, e.g. "101".
std::string bits(const AppliedFacts& result) {
    std::string text;
    for (bool applied : result.applied) text += applied ? '1' : '0';
    return text;
}

/// A text with its bytes that are not printable ASCII escaped (NUL, tab, UTF-8...).
std::string show(const std::string& text) {
    static const char digits[] = "0123456789abcdef";
    std::string shown = "\"";
    for (char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            shown += '\\';
            shown += c;
        } else if (byte < 0x20 || byte >= 0x7f) {
            shown += "\\x";
            shown += digits[byte >> 4];
            shown += digits[byte & 15];
        } else {
            shown += c;
        }
    }
    return shown + "\"";
}

/// Bodies in any order, shown sorted.
std::string show(Bodies bodies) {
    std::sort(bodies.begin(), bodies.end());
    std::string text = "[";
    for (std::size_t i = 0; i < bodies.size(); ++i) text += (i == 0 ? "" : ", ") + show(bodies[i]);
    return text + "]";
}

/// A record as text, each target's bodies sorted, so that a failed comparison shows both.
std::string show(const std::optional<StatusRecord>& record) {
    if (!record) return "nullopt";
    std::string text = "{";
    for (const auto& [target, bodies] : *record) text += show(target) + ": " + show(bodies) + ", ";
    return text + "}";
}

std::string show(const AppliedFacts& result) {
    std::string text = "applied " + bits(result) + ", before";
    for (const Bodies& before : result.before) text += " " + show(before);
    return text;
}

AppliedFacts expected(const std::string& flags, std::vector<Bodies> before) {
    AppliedFacts result;
    for (char flag : flags) result.applied.push_back(flag == '1');
    result.before = std::move(before);
    return result;
}

// --- The contract -----------------------------------------------------------------------------

void check_contract(const MakeStore& make_store) {
    std::shared_ptr<StatusStore> made = make_store();
    StatusStore& store = *made;

    SECTION("a fact is applied once per key, target and fingerprint, in a batch and across") {
        CHECK(store.applied_facts() == 0);
        const PreparedFact once = fact("k", "", "f1", "sent");
        // The fingerprint names the fact: a copy with another body is still a copy.
        const PreparedFact changed_copy = fact("k", "", "f1", "another body");
        // The same fingerprint under another target, or another key, is another fact.
        const PreparedFact other_target = fact("k", "a@example.com", "f1", "sent");
        const PreparedFact other_key = fact("j", "", "f1", "sent");
        AppliedFacts result = apply_checked(
            store, {once, once, other_target, changed_copy, other_key, other_target, other_key});
        CHECK(bits(result) == "1010100");
        CHECK(store.applied_facts() == 3);
        for (int i = 0; i < 3; ++i) {
            result = apply_checked(store, {changed_copy, other_key, once, other_target});
            CHECK(bits(result) == "0000");
        }
        CHECK(store.applied_facts() == 3);
        CHECK(show(store.read("k")) ==
              show(StatusRecord{{"", {"sent"}}, {"a@example.com", {"sent"}}}));
        CHECK(show(store.read("j")) == show(StatusRecord{{"", {"sent"}}}));
        // Fingerprints that are part of another, or another's body; an empty fingerprint and an
        // empty body are facts like any.
        result = apply_checked(store, {fact("k", "", "f", "x"), fact("k", "", "", ""),
                                       fact("k", "", "", ""), fact("k", "", "f1 ", "y"),
                                       fact("k", "", "1", "z"), fact("k", "", "sent", "f1")});
        CHECK(bits(result) == "110111");
        CHECK(store.applied_facts() == 8);
        CHECK_FALSE(apply_one(store, fact("k", "", "", "other")));
        CHECK_FALSE(apply_one(store, fact("k", "", "f", "other")));
        CHECK(show(store.read("k")) == show(StatusRecord{{"", {"sent", "x", "", "y", "z", "f1"}},
                                                         {"a@example.com", {"sent"}}}));
        CHECK(store.applied_facts() == 8);
    }

    SECTION("before: per target, in the order of its first fact, what it held before the call") {
        AppliedFacts result = apply_checked(
            store,
            {fact("k", "", "f1", "s1"), fact("k", "a", "f2", "a2"), fact("k", "", "f3", "s3")});
        CHECK(show(result) == show(expected("111", {{}, {}})));
        result = apply_checked(store, {
                                          fact("k", "a", "f4", "a4"),  // target 0: (k, a)
                                          fact("k", "", "f5", "s5"),   // target 1: (k, "")
                                          fact("k", "a", "f2", "a2"),  // a copy
                                          fact("k", "b", "f1", "b1"),  // target 2: a new one
                                          fact("k", "", "f1", "s1"),   // a copy
                                          fact("j", "a", "f2", "j2"),  // target 3: another key
                                          fact("k", "a", "f6", "a6"),
                                      });
        // Not the facts of the same call, whether before or after the target's first.
        CHECK(show(result) == show(expected("1101011", {{"a2"}, {"s1", "s3"}, {}, {}})));
        // A call of copies first: each target's facts, all of them.
        result = apply_checked(store, {fact("j", "a", "f2", "j2"), fact("k", "b", "f1", "b1"),
                                       fact("k", "a", "f4", "a4"), fact("k", "", "f9", "s9"),
                                       fact("k", "", "f9", "s9")});
        CHECK(show(result) ==
              show(expected("00010", {{"j2"}, {"b1"}, {"a2", "a4", "a6"}, {"s1", "s3", "s5"}})));
        CHECK(show(store.read("k")) ==
              show(StatusRecord{
                  {"", {"s1", "s3", "s5", "s9"}}, {"a", {"a2", "a4", "a6"}}, {"b", {"b1"}}}));
        CHECK(show(store.read("j")) == show(StatusRecord{{"a", {"j2"}}}));
        CHECK(store.applied_facts() == 9);
    }

    SECTION("facts for several keys and targets in one batch; odd texts; unknown keys; no facts") {
        const std::string odd_key = "order 42/\xc3\xbc msg:x";  // spaces, UTF-8, the separator
        const std::string utf8_target = "j\xc3\xbcrgen@ex\xc3\xa4mple.com";
        const std::string tab_body = "rank\t12\t\t\xe2\x82\xac \r";
        const std::string nul_key("n\0k", 3);
        const std::string nul_target("a\0b@example.com", 15);
        const std::string nul_fingerprint("f\0", 2);
        const std::string nul_body("v\0\0w", 4);
        const AppliedFacts result = apply_checked(
            store, {
                       fact("a", "", "f1", "a1"),
                       fact("b", "x y@example.com", "f1", "b1"),
                       fact(odd_key, utf8_target, "f1", tab_body),
                       fact("a", "", "f2", "a2"),
                       fact(nul_key, nul_target, nul_fingerprint, nul_body),
                       fact("msg:a", "", "f1", "m1"),  // another message than "a"
                       fact(nul_key, "", "f1", "s"),
                       fact("n", nul_target, nul_fingerprint, "n1"),  // "n\0k" begins so
                       fact(nul_key, nul_target, "f", nul_body),      // another fingerprint
                       fact(nul_key, nul_target, nul_fingerprint, "copy"),
                       fact("", "", "f1", "the empty key"),
                       fact(odd_key, "", "f1", "o1"),
                   });
        CHECK(show(result) == show(expected("111111111011", {{}, {}, {}, {}, {}, {}, {}, {}, {}})));
        CHECK(show(store.read("a")) == show(StatusRecord{{"", {"a1", "a2"}}}));
        CHECK(show(store.read("b")) == show(StatusRecord{{"x y@example.com", {"b1"}}}));
        CHECK(show(store.read(odd_key)) ==
              show(StatusRecord{{utf8_target, {tab_body}}, {"", {"o1"}}}));
        CHECK(show(store.read(nul_key)) ==
              show(StatusRecord{{nul_target, {nul_body, nul_body}}, {"", {"s"}}}));
        CHECK(show(store.read("msg:a")) == show(StatusRecord{{"", {"m1"}}}));
        CHECK(show(store.read("n")) == show(StatusRecord{{nul_target, {"n1"}}}));
        CHECK(show(store.read("")) == show(StatusRecord{{"", {"the empty key"}}}));
        CHECK(store.applied_facts() == 11);
        // What a later call finds under the odd names.
        CHECK(show(apply_checked(store, {fact(nul_key, nul_target, nul_fingerprint, "again"),
                                         fact(odd_key, utf8_target, "f2", "o2")})) ==
              show(expected("01", {{nul_body, nul_body}, {tab_body}})));
        CHECK(store.applied_facts() == 12);
        for (const std::string& unknown :
             {std::string("c"), std::string("order 42/"), std::string("msg:"), std::string("A"),
              std::string("n\0", 2), std::string("msg:b"), std::string("a ")}) {
            CAPTURE(show(unknown));
            CHECK_FALSE(store.read(unknown).has_value());
        }
        const AppliedFacts none = store.apply({});
        CHECK(none.applied.empty());
        CHECK(none.before.empty());
        CHECK(store.applied_facts() == 12);
        CHECK(show(store.read("a")) == show(StatusRecord{{"", {"a1", "a2"}}}));
    }

    SECTION("thousands of targets, and a target with thousands of facts, in one batch; copies") {
        // Past the sizes a store may split into several calls (Redis' Lua: 1,000 arguments).
        constexpr std::size_t count = 2600;
        std::vector<PreparedFact> batch;
        Bodies deep;
        for (std::size_t i = 0; i < count; ++i) {
            const std::string n = std::to_string(i);
            batch.push_back(fact("wide", "r" + n + "@example.com", "f", "body " + n));
        }
        for (std::size_t i = 0; i < count; ++i) {
            const std::string n = std::to_string(i);
            // Long bodies: the target's facts pass 64 KiB (MessagePack's 32-bit text sizes).
            const std::string body = "body " + n + std::string(40, '.');
            batch.push_back(fact("deep", "", "f" + n, body));
            deep.push_back(body);
        }
        const std::vector<PreparedFact> distinct = batch;
        batch.insert(batch.end(), distinct.begin(), distinct.end());  // a copy of each
        AppliedFacts result = apply_checked(store, batch);
        REQUIRE(result.before.size() == count + 1);
        const auto wrong_flags = [&](const AppliedFacts& answer, std::size_t new_from) {
            std::size_t wrong = 0;
            for (std::size_t i = 0; i < answer.applied.size(); ++i) {
                if (answer.applied[i] != (i >= new_from && i < new_from + 2)) ++wrong;
            }
            return wrong;
        };
        std::size_t wrong = 0;
        for (std::size_t i = 0; i < batch.size(); ++i) {
            if (result.applied[i] != (i < distinct.size())) ++wrong;
        }
        CHECK(wrong == 0);
        std::size_t nonempty = 0;
        for (const Bodies& before : result.before) nonempty += before.empty() ? 0 : 1;
        CHECK(nonempty == 0);
        CHECK(store.applied_facts() == distinct.size());
        const StatusRecord wide = store.read("wide").value();
        CHECK(wide.size() == count);
        wrong = 0;
        for (std::size_t i = 0; i < count; ++i) {
            const auto found = wide.find("r" + std::to_string(i) + "@example.com");
            if (found == wide.end() || found->second != Bodies{"body " + std::to_string(i)}) {
                ++wrong;
            }
        }
        CHECK(wrong == 0);
        CHECK(show(store.read("deep")) == show(StatusRecord{{"", deep}}));

        // Copies of all again, and a new fact for each message: each target's facts before.
        std::vector<PreparedFact> again = distinct;
        again.push_back(fact("wide", "r2599@example.com", "g", "late"));
        again.push_back(fact("deep", "", "new", "new body"));
        result = apply_checked(store, again);
        REQUIRE(result.before.size() == count + 1);
        CHECK(wrong_flags(result, distinct.size()) == 0);
        wrong = 0;
        for (std::size_t i = 0; i < count; ++i) {
            if (result.before[i] != Bodies{"body " + std::to_string(i)}) ++wrong;
        }
        CHECK(wrong == 0);
        CHECK(show(result.before[count]) == show(deep));
        CHECK(store.applied_facts() == distinct.size() + 2);
        deep.push_back("new body");
        CHECK(show(store.read("deep")) == show(StatusRecord{{"", deep}}));
        CHECK(show(store.read("wide")->at("r2599@example.com")) ==
              show(Bodies{"body 2599", "late"}));
    }

    SECTION("a batch of 66,000 facts for 3,000 messages, most of them copies") {
        // Past 65,535 parts in a store's answer (MessagePack's 32-bit array sizes).
        constexpr std::size_t messages = 3000;
        constexpr std::size_t copies = 22;
        std::vector<PreparedFact> batch;
        for (std::size_t copy = 0; copy < copies; ++copy) {
            for (std::size_t m = 0; m < messages; ++m) {
                batch.push_back(fact("m" + std::to_string(m), "", "f", std::to_string(m)));
            }
        }
        const AppliedFacts result = apply_checked(store, batch);
        std::size_t wrong = 0;
        for (std::size_t i = 0; i < batch.size(); ++i) {
            if (result.applied[i] != (i < messages)) ++wrong;
        }
        CHECK(wrong == 0);
        CHECK(store.applied_facts() == messages);
        CHECK(show(store.read("m0")) == show(StatusRecord{{"", {"0"}}}));
        CHECK(show(store.read("m2999")) == show(StatusRecord{{"", {"2999"}}}));
        CHECK(show(apply_checked(store, {fact("m2999", "", "f", "x"), fact("m0", "", "g", "y")})) ==
              show(expected("01", {{"2999"}, {"0"}})));
    }
}

// --- The property: any order, any copies, any batches give the same records ------------------

const std::vector<std::string> property_keys{"a", "b", "order:7"};
const std::vector<std::string> property_targets{"", "a@example.com", "b@example.com"};

using FactId = std::tuple<std::string, std::string, std::string>;  // key, target, fingerprint

FactId id_of(const PreparedFact& one) { return {one.key, one.target, one.fingerprint}; }

/// Any bytes but a line break (tabs, NUL, bytes that are no UTF-8 included).
std::string random_body(std::mt19937& rng) {
    const int length = std::uniform_int_distribution<int>(0, 12)(rng);
    std::string body;
    for (int i = 0; i < length; ++i) {
        char c = '\n';
        while (c == '\n') c = static_cast<char>(std::uniform_int_distribution<int>(0, 255)(rng));
        body += c;
    }
    return body;
}

/// Facts for a few keys and targets, fingerprints from a few (so the same ones recur under other
/// keys and targets, and copies of a fact are drawn too: with its body, as the rules make them).
std::vector<PreparedFact> random_facts(std::mt19937& rng, int most) {
    auto pick = [&](int low, int high) {
        return std::uniform_int_distribution<int>(low, high)(rng);
    };
    std::map<FactId, std::string> bodies;
    std::vector<PreparedFact> facts;
    const int count = pick(1, most);
    for (int i = 0; i < count; ++i) {
        PreparedFact one = fact(property_keys[static_cast<std::size_t>(pick(0, 2))],
                                property_targets[static_cast<std::size_t>(pick(0, 2))],
                                "f" + std::to_string(pick(0, 5)), "");
        one.body = bodies.emplace(id_of(one), random_body(rng)).first->second;
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

std::vector<AppliedFacts> apply_all(StatusStore& store,
                                    const std::vector<std::vector<PreparedFact>>& batches) {
    std::vector<AppliedFacts> results;
    for (const auto& batch : batches) results.push_back(apply_checked(store, batch));
    return results;
}

/// The flags the contract gives: a fact is applied where it first appears.
std::string first_appearances(const std::vector<std::vector<PreparedFact>>& batches) {
    std::set<FactId> seen;
    std::string flags;
    for (const auto& batch : batches) {
        for (const PreparedFact& one : batch) flags += seen.insert(id_of(one)).second ? '1' : '0';
    }
    return flags;
}

std::string all_bits(const std::vector<AppliedFacts>& results) {
    std::string flags;
    for (const AppliedFacts& result : results) flags += bits(result);
    return flags;
}

std::size_t distinct_facts(const std::vector<PreparedFact>& facts) {
    std::set<FactId> distinct;
    for (const PreparedFact& one : facts) distinct.insert(id_of(one));
    return distinct.size();
}

/// `rounds` rounds from `first_seed` on: the store's answers to one order of batches are the
/// memory store's (applied where a fact first appears; before as it held), and another order,
/// in a store of its own, ends with the same records.
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
        const std::vector<AppliedFacts> expected = apply_all(oracle, batches);
        CHECK(all_bits(expected) == first_appearances(batches));
        const std::vector<AppliedFacts> answers = apply_all(*store, batches);
        for (std::size_t b = 0; b < batches.size(); ++b) {  // the first batch that differs
            if (show(answers[b]) == show(expected[b])) continue;
            CAPTURE(b);
            CHECK(show(answers[b]) == show(expected[b]));
            break;
        }
        CHECK(all_bits(apply_all(*other, other_batches)) == first_appearances(other_batches));
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

/// What one apply_in_parts call reported: facts[first, end) and the answer for them.
struct PartCall {
    std::size_t first;
    std::size_t end;
    AppliedFacts result;
};

/// Feeds `parts` to the store's apply_in_parts, one a `more`; `made` ends holding them all,
/// `calls` what the store reported (also when it throws).
void apply_parts(StatusStore& store, const std::vector<std::vector<PreparedFact>>& parts,
                 std::vector<PreparedFact>& made, std::vector<PartCall>& calls) {
    std::size_t next = 0;
    store.apply_in_parts(
        made,
        [&] {
            if (next == parts.size()) return false;
            made.insert(made.end(), parts[next].begin(), parts[next].end());
            ++next;
            return true;
        },
        [&](std::size_t first, std::size_t end, AppliedFacts result) {
            calls.push_back({first, end, std::move(result)});
        });
    CHECK(next == parts.size());
}

/// Facts made in parts while the store applies them (`apply_in_parts`, empty parts among them):
/// the calls it reports cover the facts in order, each answering what the memory store answers
/// for the same facts as a batch of their own, and the records end as one batch leaves them.
/// `one_call_a_part`: the store says it sends each part as it comes (the Redis store).
void check_parts(const MakeStore& make_store, int rounds, unsigned first_seed,
                 bool one_call_a_part) {
    for (int round = 0; round < rounds; ++round) {
        const unsigned seed = first_seed + static_cast<unsigned>(round);
        CAPTURE(seed);
        std::mt19937 rng(seed);
        const std::vector<PreparedFact> facts = random_facts(rng, 40);
        auto parts = random_batches(facts, rng);
        parts.insert(parts.begin() + static_cast<std::ptrdiff_t>(rng() % (parts.size() + 1)),
                     std::vector<PreparedFact>());
        std::shared_ptr<StatusStore> store = make_store();
        std::vector<PreparedFact> made;
        std::vector<PartCall> calls;
        apply_parts(*store, parts, made, calls);
        if (one_call_a_part) CHECK(calls.size() == parts.size() - 1);  // but the empty one
        MemoryStatusStore oracle;
        std::size_t at = 0;
        for (PartCall& call : calls) {
            REQUIRE(call.first == at);
            REQUIRE(call.end > call.first);
            REQUIRE(call.end <= made.size());
            at = call.end;
            const std::vector<PreparedFact> same(
                made.begin() + static_cast<std::ptrdiff_t>(call.first),
                made.begin() + static_cast<std::ptrdiff_t>(call.end));
            CHECK(show(call.result) == show(oracle.apply(same)));
        }
        CHECK(at == made.size());
        for (const std::string& key : property_keys) {
            CAPTURE(key);
            CHECK(show(store->read(key)) == show(oracle.read(key)));
        }
        CHECK(store->applied_facts() == distinct_facts(facts));
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
                    for (bool one : store->apply(batch).applied) applied[t] += one ? 1 : 0;
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

TEST_CASE("the memory store: facts made in parts are applied as one batch", "[status][store]") {
    check_parts([] { return std::make_shared<MemoryStatusStore>(); }, 30, 3000, false);
}

TEST_CASE("the memory store: two threads apply the same facts once", "[status][store]") {
    auto shared = std::make_shared<MemoryStatusStore>();
    check_concurrent([&] { return shared; }, 77);
}

TEST_CASE("the memory store: its bounds forget no message of the call being applied",
          "[status][store]") {
    // A bound forgets the least recent messages, but not one the same call gave a fact: else
    // a copy later in the call is applied again (and counted twice, and `before` is wrong).
    const std::vector<PreparedFact> batch{fact("a", "", "f1", "s1"), fact("b", "", "f1", "s1"),
                                          fact("a", "", "f1", "s1"), fact("a", "", "f2", "s2")};
    SECTION("max_messages") {
        MemoryStatusStore store(1);
        CHECK(show(apply_checked(store, batch)) == show(expected("1101", {{}, {}})));
        CHECK(store.applied_facts() == 3);
        CHECK(show(store.read("a")) == show(StatusRecord{{"", {"s1", "s2"}}}));
    }
    SECTION("max_facts") {
        MemoryStatusStore store(100, 1);
        CHECK(show(apply_checked(store, batch)) == show(expected("1101", {{}, {}})));
        CHECK(store.applied_facts() == 3);
        CHECK(show(store.read("a")) == show(StatusRecord{{"", {"s1", "s2"}}}));
    }
    SECTION("a later call forgets them as the bounds say") {
        MemoryStatusStore store(1);
        apply_checked(store, batch);
        CHECK(apply_one(store, fact("c", "", "f1", "s1")));
        CHECK(store.size() == 1);
        CHECK_FALSE(store.read("a").has_value());
        CHECK(apply_one(store, fact("a", "", "f1", "s1")));  // forgotten: new again
    }
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

/// Runs `sql` on the file at `path` with SQLite directly (made when missing).
void exec_on(const std::string& path, const char* sql) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    std::unique_ptr<sqlite3, int (*)(sqlite3*)> closer(db, &sqlite3_close);
    REQUIRE(sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK);
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

TEST_CASE("the SQLite store: facts made in parts are applied as one batch",
          "[status][store][sqlite]") {
    TempDir dir;
    check_parts([&] { return std::make_shared<SqliteStatusStore>(dir.fresh()); }, 8, 3100, false);
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
        store.apply({fact("k", "", "f1", "s1"), fact("k", "a@example.com", "f2", "a2"),
                     fact("k", "", "f3", "s3")});
    }
    SqliteStatusStore reopened(path);
    CHECK(show(reopened.read("k")) ==
          show(StatusRecord{{"", {"s1", "s3"}}, {"a@example.com", {"a2"}}}));
    CHECK(reopened.applied_facts() == 3);
    const AppliedFacts again = apply_checked(
        reopened, {fact("k", "a@example.com", "f2", "a2"), fact("k", "", "f4", "s4")});
    CHECK(show(again) == show(expected("01", {{"a2"}, {"s1", "s3"}})));
    CHECK(reopened.applied_facts() == 4);
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
    store.apply({fact("old", "", "f1", "o1"), fact("kept", "a", "f1", "k1")});
    clock.unix_time = start + 60;
    CHECK_FALSE(apply_one(store, fact("old", "", "f1", "o1")));  // a copy: no refresh
    CHECK(apply_one(store, fact("kept", "", "f2", "k2")));       // refreshes, whatever the target
    clock.unix_time = start + 99;
    CHECK(store.read("old").has_value());
    clock.unix_time = start + 100;
    CHECK_FALSE(store.read("old").has_value());
    CHECK(show(store.read("kept")) == show(StatusRecord{{"", {"k2"}}, {"a", {"k1"}}}));
    // Forgotten with its facts: the fact is new again, and the target held nothing before.
    CHECK(show(apply_checked(store,
                             {fact("old", "", "f1", "o1 again"), fact("old", "b", "f1", "b")})) ==
          show(expected("11", {{}, {}})));
    CHECK(show(store.read("old")) == show(StatusRecord{{"", {"o1 again"}}, {"b", {"b"}}}));
    CHECK(store.applied_facts() == 5);
    // Another key's apply deletes a forgotten message's rows.
    clock.unix_time = start + 1000;
    CHECK(rows_for(path, "facts", "kept") == 2);
    CHECK(rows_for(path, "messages", "kept") == 1);
    store.apply({fact("new", "", "f1", "n1")});
    CHECK(rows_for(path, "facts", "kept") == 0);
    CHECK(rows_for(path, "messages", "kept") == 0);
    CHECK(rows_for(path, "facts", "old") == 0);
    CHECK(rows_for(path, "facts", "new") == 1);
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
        store.apply({fact("m" + std::to_string(i), "", "f1", "old"),
                     fact("m" + std::to_string(i), "r", "f1", "old")});
    }
    clock.unix_time = start + messages / 3 + 100;
    const std::string newest = "m" + std::to_string(messages - 1);
    CHECK(rows_for(path, "facts", newest) == 2);
    const AppliedFacts again = apply_checked(store, {fact(newest, "", "f1", "new")});
    CHECK(show(again) == show(expected("1", {{}})));
    CHECK(show(store.read(newest)) == show(StatusRecord{{"", {"new"}}}));
    CHECK_FALSE(store.read("m0").has_value());
    CHECK(rows_for(path, "messages", "m0") == 0);
    CHECK(rows_for(path, "facts", "m0") == 0);
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

TEST_CASE("the SQLite store refuses a file in sendgrid_backend 0.16's format, naming it",
          "[status][store][sqlite]") {
    TempDir dir;
    // 0.16's tables (a record of fields per message, its fingerprints), with a status in them.
    const std::string old_file = dir.fresh();
    exec_on(old_file, R"sql(
CREATE TABLE records (
    key TEXT NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (key, field)) WITHOUT ROWID;
CREATE TABLE fingerprints (
    key TEXT NOT NULL, fingerprint TEXT NOT NULL,
    PRIMARY KEY (key, fingerprint)) WITHOUT ROWID;
CREATE TABLE messages (
    key TEXT NOT NULL PRIMARY KEY, changed INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX messages_by_change ON messages (changed);
CREATE TABLE counters (
    name TEXT NOT NULL PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO counters (name, value) VALUES ('applied', 1);
INSERT INTO records (key, field, value) VALUES ('k', 'state', 'delivered');
INSERT INTO fingerprints (key, fingerprint) VALUES ('k', 'f1');
INSERT INTO messages (key, changed) VALUES ('k', 1000);
)sql");
    CHECK_THROWS_AS(SqliteStatusStore(old_file), SqliteError);
    CHECK_THROWS_WITH(SqliteStatusStore(old_file), Catch::Contains("[sendgrid_backend.sqlite]") &&
                                                       Catch::Contains(old_file) &&
                                                       Catch::Contains("0.16"));
    // Its statuses are left as they were.
    CHECK(rows_for(old_file, "records", "k") == 1);
    CHECK(rows_for(old_file, "fingerprints", "k") == 1);
    CHECK(rows_for(old_file, "messages", "k") == 1);
    // A records table alone is refused as well.
    const std::string records_only = dir.fresh();
    exec_on(records_only,
            "CREATE TABLE records (key TEXT NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL, "
            "PRIMARY KEY (key, field)) WITHOUT ROWID");
    CHECK_THROWS_WITH(SqliteStatusStore(records_only),
                      Catch::Contains(records_only) && Catch::Contains("0.16"));
    // A file of this version opens again.
    const std::string current = dir.fresh();
    { SqliteStatusStore store(current); }
    SqliteStatusStore reopened(current);
    CHECK(reopened.applied_facts() == 0);
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
    CHECK_THROWS_WITH(store.apply({fact("k", "", "f1", "s1")}),
                      Catch::Contains(path) && Catch::Contains("locked"));
    REQUIRE(sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr) == SQLITE_OK);
    // Nothing of the failed batch was kept; the store works on.
    CHECK(store.applied_facts() == 0);
    CHECK_FALSE(store.read("k").has_value());
    CHECK(apply_one(store, fact("k", "", "f1", "s1")));
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

/// The keys of the calls' count marks under the store's prefix.
std::vector<std::string> kept_answers(RedisClient& redis, const RedisStatusStoreOptions& options) {
    return test_support::redis_keys(redis, options.call_key("*"));
}

/// How many transactions Redis ran (INFO commandstats), by anyone.
std::int64_t exec_calls(RedisClient& redis) {
    const std::string stats = redis.command({"INFO", "commandstats"}).text;
    const std::size_t at = stats.find("cmdstat_exec:calls=");
    return at == std::string::npos ? 0 : std::atoll(stats.c_str() + at + 19);
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

TEST_CASE("the Redis store: facts made in parts, each part one script call sent as it comes",
          "[status][store][redis]") {
    if (!have_redis()) return;
    auto redis = fixture_client();
    check_parts([&] { return std::make_shared<RedisStatusStore>(redis, fresh_options()); }, 25,
                3200, true);

    SECTION("a part that cannot be made stops the making; the parts sent were applied") {
        RedisStatusStore store(redis, fresh_options());
        std::vector<PreparedFact> made;
        std::vector<PartCall> calls;
        int asked = 0;
        try {
            store.apply_in_parts(
                made,
                [&] {
                    ++asked;
                    if (asked == 3) throw std::runtime_error("no third part");
                    made.push_back(fact("m", "", "p" + std::to_string(asked), "b"));
                    return true;
                },
                [&](std::size_t first, std::size_t end, AppliedFacts result) {
                    calls.push_back({first, end, std::move(result)});
                });
            FAIL("apply_in_parts returned");
        } catch (const std::runtime_error& error) {
            CHECK(std::string(error.what()) == "no third part");
        }
        REQUIRE(calls.size() == 2);
        CHECK(bits(calls[0].result) + bits(calls[1].result) == "11");
        CHECK(store.applied_facts() == 2);
        CHECK(show(store.read("m")) == show(StatusRecord{{"", {"b", "b"}}}));
    }

    SECTION("a message Redis refuses does not stop the others; its refusal is thrown after them") {
        const RedisStatusStoreOptions options = fresh_options();
        RedisStatusStore store(redis, options);
        redis->command({"HSET", options.message_key("taken"), "not", "a string"});
        const std::vector<std::vector<PreparedFact>> parts = {
            {fact("a", "", "f", "a")}, {fact("taken", "", "f", "t")}, {fact("c", "", "f", "c")}};
        std::vector<PreparedFact> made;
        std::vector<PartCall> calls;
        CHECK_THROWS_WITH(
            apply_parts(store, parts, made, calls),
            Catch::Contains("WRONGTYPE") && Catch::Contains(options.message_key("taken")));
        REQUIRE(calls.size() == 3);
        CHECK(calls[1].first == 1);
        CHECK(bits(calls[0].result) + bits(calls[1].result) + bits(calls[2].result) == "101");
        CHECK(store.applied_facts() == 2);
        CHECK(store.read("a").has_value());
        CHECK(store.read("c").has_value());
    }
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

TEST_CASE("the Redis store: a message's string, a line per fact, expires ttl after a call names it",
          "[status][store][redis]") {
    if (!have_redis()) return;
    auto redis = fixture_client();
    RedisStatusStoreOptions options = fresh_options();
    options.ttl = std::chrono::seconds(3600);
    RedisStatusStore store(redis, options);
    store.apply({fact("k", "", "f1", "s\t1"), fact("k", "a@example.com", "f2", "a2"),
                 fact("k", "", "f3", "")});
    const std::string key = options.message_key("k");
    CHECK(key == options.prefix + "facts:k");
    const auto ttl = redis->command({"TTL", key}).integer;
    CHECK(ttl > 3500);
    CHECK(ttl <= 3600);
    CHECK(redis->command({"TTL", options.applied_key()}).integer == -1);  // the counter stays
    CHECK(redis->command({"GET", options.applied_key()}).text == "3");
    // Lines of fingerprint, the call's name, target and body, in the order they came.
    const auto lines_of = [&] {
        std::vector<std::vector<std::string>> lines;
        const std::string value = redis->command({"GET", key}).text;
        CHECK(value.front() == '\n');
        std::size_t at = 1;
        while (at <= value.size()) {
            const std::size_t end = std::min(value.find('\n', at), value.size());
            std::vector<std::string>& parts = lines.emplace_back();
            std::string_view line(value.data() + at, end - at);
            for (int i = 0; i < 3; ++i) {
                parts.emplace_back(line.substr(0, line.find('\t')));
                line.remove_prefix(std::min(line.size(), line.find('\t') + 1));
            }
            parts.emplace_back(line);
            at = end + 1;
        }
        return lines;
    };
    auto lines = lines_of();
    REQUIRE(lines.size() == 3);
    const std::string call = lines[0][1];
    CHECK(call.size() == 12);
    CHECK(lines[0] == std::vector<std::string>{"f1", call, "", "s\t1"});
    CHECK(lines[1] == std::vector<std::string>{"f3", call, "", ""});
    CHECK(lines[2] == std::vector<std::string>{"f2", call, "a@example.com", "a2"});
    // A copy is appended too (whether a fact is new is known only from Redis' answer), and read
    // past; any call naming the message gives it its time to live again.
    redis->command({"EXPIRE", key, "100"});
    CHECK_FALSE(apply_one(store, fact("k", "", "f1", "s\t1")));
    CHECK(redis->command({"TTL", key}).integer > 3500);
    lines = lines_of();
    REQUIRE(lines.size() == 4);
    CHECK(lines[3][0] == "f1");
    CHECK(lines[3][1] != call);
    CHECK(show(store.read("k")) ==
          show(StatusRecord{{"", {"s\t1", ""}}, {"a@example.com", {"a2"}}}));
    // A target with a tab, a line break or a backslash is written escaped.
    CHECK(apply_one(store, fact("k", "b\tc\nd\\", "f4", "b4")));
    CHECK(lines_of().back()[2] == "b\\tc\\nd\\\\");
    CHECK(show(store.read("k")) ==
          show(StatusRecord{{"", {"s\t1", ""}}, {"a@example.com", {"a2"}}, {"b\tc\nd\\", {"b4"}}}));
}

TEST_CASE("the Redis store reads what 0.17.0 to 0.19.0 wrote, and never writes it",
          "[status][store][redis]") {
    if (!have_redis()) return;
    auto redis = fixture_client();
    const RedisStatusStoreOptions options = fresh_options();
    RedisStatusStore store(redis, options);
    // A 0.19 record: a hash, a field per target of "<fingerprint>\t<body>\n" lines.
    const std::string legacy = options.legacy_message_key("old");
    CHECK(legacy == options.prefix + "msg:old");
    redis->command({"HSET", legacy, "", "f1\ts1\nf2\ts\t2\n", "a", "f3\ta3\n"});
    CHECK(show(store.read("old")) == show(StatusRecord{{"", {"s1", "s\t2"}}, {"a", {"a3"}}}));
    // Its facts were there before: not applied again; a new one is, after them.
    CHECK(show(apply_checked(store, {fact("old", "", "f1", "s1"), fact("old", "a", "f4", "a4"),
                                     fact("old", "b", "f5", "b5"), fact("new", "", "f1", "s1")})) ==
          show(expected("0111", {{"s1", "s\t2"}, {"a3"}, {}, {}})));
    CHECK(store.applied_facts() == 3);
    // Their copies in the new string are read past; the old hash is as it was.
    CHECK(show(apply_checked(store, {fact("old", "", "f1", "s1"), fact("old", "a", "f4", "a4")})) ==
          show(expected("00", {{"s1", "s\t2"}, {"a3", "a4"}})));
    CHECK(show(store.read("old")) ==
          show(StatusRecord{{"", {"s1", "s\t2"}}, {"a", {"a3", "a4"}}, {"b", {"b5"}}}));
    CHECK(redis->command({"HLEN", legacy}).integer == 2);
    CHECK(redis->command({"HGET", legacy, "a"}).text == "f3\ta3\n");
    CHECK(redis->command({"EXISTS", options.legacy_message_key("new")}).integer == 0);
    CHECK(store.applied_facts() == 3);
    // A key of another type where a 0.19 hash would be is no record of 0.19's: none.
    redis->command({"SET", options.legacy_message_key("odd"), "text"});
    CHECK_FALSE(store.read("odd").has_value());
    CHECK(show(apply_checked(store, {fact("odd", "", "f1", "s1"), fact("odd", "", "f2", "s2")})) ==
          show(expected("11", {{}})));
    CHECK(show(store.read("odd")) == show(StatusRecord{{"", {"s1", "s2"}}}));
    CHECK(redis->command({"GET", options.legacy_message_key("odd")}).text == "text");
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
    // A key of another type where a message's string goes: that message refused, naming it,
    // after the others were applied (a transaction does not stop at a refused command); the key
    // and its time to live as they were.
    redis->command({"HSET", options.message_key("taken"), "field", "value"});
    REQUIRE(redis->command({"EXPIRE", options.message_key("taken"), "5000"}).integer == 1);
    for (const auto& batch :
         {std::vector<PreparedFact>{fact("free", "", "f1", "s1"), fact("taken", "", "f1", "s1")},
          std::vector<PreparedFact>{fact("taken", "a", "f2", "x"), fact("free", "", "f2", "s2")}}) {
        CHECK_THROWS_WITH(store.apply(batch), Catch::Contains("WRONGTYPE") &&
                                                  Catch::Contains(options.message_key("taken")));
    }
    CHECK(show(store.read("free")) == show(StatusRecord{{"", {"s1", "s2"}}}));
    CHECK(store.applied_facts() == 2);
    CHECK(redis->command({"HGET", options.message_key("taken"), "field"}).text == "value");
    CHECK(redis->command({"HLEN", options.message_key("taken")}).integer == 1);
    const std::int64_t ttl = redis->command({"TTL", options.message_key("taken")}).integer;
    CHECK(ttl > 4000);
    CHECK(ttl <= 5000);
    CHECK_THROWS_AS(store.read("taken"), sendgrid_backend::RedisError);
    // Text of another program's where a message's string goes: kept, the lines after it.
    redis->command({"SET", options.message_key("text"), "not ours"});
    CHECK(bits(apply_checked(store, {fact("text", "", "f1", "s1")})) == "1");
    CHECK(show(store.read("text")) == show(StatusRecord{{"", {"s1"}}}));
    CHECK(redis->command({"GETRANGE", options.message_key("text"), "0", "7"}).text == "not ours");
    CHECK(store.applied_facts() == 3);
    // A counter that is no counter: the facts are applied, then the count refused, naming it;
    // the counter as it was. The same for one the count would take past 2^63 - 1.
    for (const char* bad : {"not a number", "99999999999999999999", "9223372036854775807"}) {
        CAPTURE(bad);
        redis->command({"SET", options.applied_key(), bad});
        const std::string key = std::string("counted-") + bad;
        CHECK_THROWS_WITH(store.apply({fact(key, "", "f1", "s1")}),
                          Catch::Contains(options.applied_key()));
        CHECK(store.read(key).has_value());
        CHECK(redis->command({"GET", options.applied_key()}).text == bad);
    }
}

TEST_CASE(
    "the Redis store refuses a fingerprint with a tab or line break, a body with a line "
    "break: nothing of the batch written",
    "[status][store][redis]") {
    if (!have_redis()) return;
    auto redis = fixture_client();
    const RedisStatusStoreOptions options = fresh_options();
    RedisStatusStore store(redis, options);
    for (const PreparedFact& bad :
         {fact("k", "", "f\t1", "s"), fact("k", "", "f\n1", "s"), fact("k", "", "\n", "s"),
          fact("k", "a", "f1", "s\n"), fact("k", "a", "f1", "line 1\nf2\tline 2")}) {
        CAPTURE(show(bad.fingerprint), show(bad.body));
        CHECK_THROWS_AS(store.apply({fact("k", "", "good", "s"), bad, fact("j", "", "f", "s")}),
                        std::invalid_argument);
    }
    CHECK(redis->command({"EXISTS", options.message_key("k")}).integer == 0);
    CHECK(redis->command({"EXISTS", options.message_key("j")}).integer == 0);
    CHECK(store.applied_facts() == 0);
    // Tabs and carriage returns in a body, and a carriage return in a fingerprint, are fine.
    CHECK(bits(apply_checked(store, {fact("k", "", "f\r", "a\tb\r"), fact("k", "", "f", "\t")})) ==
          "11");
    CHECK(show(store.read("k")) == show(StatusRecord{{"", {"a\tb\r", "\t"}}}));
    CHECK_FALSE(apply_one(store, fact("k", "", "f\r", "other")));
}

TEST_CASE("the Redis store loads its count script again after Redis forgot it",
          "[status][store][redis]") {
    if (!have_redis()) return;
    auto redis = fixture_client();
    RedisStatusStore store(redis, fresh_options());
    CHECK(apply_one(store, fact("k", "", "f1", "s1")));
    // As after a restart (other processes' scripts reload on NOSCRIPT as this one does).
    REQUIRE(redis->command({"SCRIPT", "FLUSH"}).text == "OK");
    CHECK(show(apply_checked(store, {fact("k", "", "f2", "s2"), fact("k", "", "f1", "s1")})) ==
          show(expected("10", {{"s1"}})));
    CHECK(show(store.read("k")) == show(StatusRecord{{"", {"s1", "s2"}}}));
    CHECK(store.applied_facts() == 2);
}

/// A Redis store whose connection goes through a CuttingProxy: connected, its count script loaded.
struct StoreBehindProxy {
    static RedisOptions on_port(RedisOptions options, int port) {
        options.port = port;
        return options;
    }
    const RedisOptions target = RedisOptions::from_url(test_support::redis_fixture_url());
    test_support::CuttingProxy proxy{target.host, target.port};
    const RedisOptions through = on_port(target, proxy.port());
    const RedisStatusStoreOptions options = fresh_options();
    RedisStatusStore store{std::make_shared<RedisClient>(through), options};

    StoreBehindProxy() { CHECK(apply_one(store, fact("warm", "", "w", "w"))); }
};

TEST_CASE(
    "the Redis store tells of a part as its answer comes, once, in order, also when later parts "
    "are sent again; what `applied` throws is thrown after the answers",
    "[status][store][redis]") {
    if (!have_redis()) return;
    using test_support::CuttingProxy;
    auto direct = fixture_client();
    StoreBehindProxy behind;
    auto& [target, proxy, through, options, store] = behind;
    RedisStatusStore reader(direct, options);
    const auto parts_of = [](const std::string& key) {
        return std::vector<std::vector<PreparedFact>>{
            {fact(key, "", "f1", "s1"), fact(key, "a", "f2", "a2")},
            {fact(key, "", "f1", "s1"), fact(key, "b", "f3", "b3")},
            {fact(key, "a", "f4", "a4")}};
    };
    const auto feed = [](const std::vector<std::vector<PreparedFact>>& parts,
                         std::vector<PreparedFact>& made, std::function<void(std::size_t)> before) {
        return [parts = &parts, made = &made, before, next = std::size_t{0}]() mutable {
            if (next == parts->size()) return false;
            before(next);
            made->insert(made->end(), (*parts)[next].begin(), (*parts)[next].end());
            ++next;
            return true;
        };
    };
    // The first two parts answered (past the proxy) before the third is made; the third's answer
    // lost: every part is sent again; the first two, told of as their answers came, are not told
    // twice, and the third answers what it did.
    std::uint64_t applied = reader.applied_facts();
    const auto parts = parts_of("k");
    std::vector<PreparedFact> made;
    std::vector<PartCall> calls;
    store.apply_in_parts(made,
                         feed(parts, made,
                              [&](std::size_t next) {
                                  if (next == 0) return;
                                  std::this_thread::sleep_for(std::chrono::milliseconds(100));
                                  if (next == 2) behind.proxy.arm(CuttingProxy::Cut::next_answer);
                              }),
                         [&](std::size_t first, std::size_t end, AppliedFacts result) {
                             calls.push_back({first, end, std::move(result)});
                         });
    CHECK(proxy.cuts() == 1);
    REQUIRE(calls.size() == 3);
    CHECK(calls[0].first == 0);
    CHECK(calls[1].first == 2);
    CHECK(calls[2].first == 4);
    CHECK(calls[2].end == 5);
    CHECK(show(calls[0].result) == show(expected("11", {{}, {}})));
    CHECK(show(calls[1].result) == show(expected("01", {{"s1"}, {}})));
    CHECK(show(calls[2].result) == show(expected("1", {{"a2"}})));
    CHECK(reader.applied_facts() == applied + 4);

    // `applied` throws for the first part: no part is told of after it, every part was sent
    // (and applied), and the connection still answers each call as its own.
    applied = reader.applied_facts();
    const auto others = parts_of("j");
    made.clear();
    calls.clear();
    CHECK_THROWS_WITH(
        store.apply_in_parts(made, feed(others, made, [](std::size_t) {}),
                             [&](std::size_t first, std::size_t end, AppliedFacts result) {
                                 calls.push_back({first, end, std::move(result)});
                                 throw std::runtime_error("a handler's error");
                             }),
        "a handler's error");
    CHECK(calls.size() == 1);
    CHECK(reader.applied_facts() == applied + 4);
    CHECK(show(apply_checked(store, {fact("j", "", "f1", "s1"), fact("j", "c", "f5", "c5")})) ==
          show(expected("01", {{"s1"}, {}})));
}

TEST_CASE("the Redis store: a connection broken during a call loses no answer and applies once",
          "[status][store][redis]") {
    if (!have_redis()) return;
    using test_support::CuttingProxy;
    StoreBehindProxy behind;
    auto& [target, proxy, through, options, store] = behind;
    auto direct = fixture_client();

    // Redis ran the transaction and its answer was lost: sent again, it answers what it did.
    proxy.arm(CuttingProxy::Cut::next_answer);
    AppliedFacts result = apply_checked(
        store, {fact("k", "", "f1", "s1"), fact("k", "a", "f2", "a2"), fact("k", "", "f1", "s1")});
    CHECK(proxy.cuts() == 1);
    CHECK(show(result) == show(expected("110", {{}, {}})));
    RedisStatusStore reader(direct, options);
    CHECK(show(reader.read("k")) == show(StatusRecord{{"", {"s1"}}, {"a", {"a2"}}}));
    CHECK(reader.applied_facts() == 3);

    // The request never reached Redis: the call sent again applies it.
    proxy.arm(CuttingProxy::Cut::next_request);
    result = apply_checked(store, {fact("k", "", "f3", "s3")});
    CHECK(proxy.cuts() == 2);
    CHECK(show(result) == show(expected("1", {{"s1"}})));
    CHECK(reader.applied_facts() == 4);

    // Each call that applied something marks its count for answer_ttl (a count sent again after a
    // broken connection is not added twice); one that applied nothing counts nothing.
    CHECK(kept_answers(*direct, options).size() == 3);
    CHECK_FALSE(apply_one(store, fact("k", "", "f3", "s3")));
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
    CHECK(apply_one(hurried, fact("k", "", "f4", "s4")));
    proxy.arm(CuttingProxy::Cut::next_answer);
    proxy.down();  // the store's connection stays; a new one is refused
    try {
        hurried.apply({fact("k", "", "f5", "s5")});
        FAIL("apply returned");
    } catch (const sendgrid_backend::RedisConnectionLost& lost) {
        CHECK_THAT(lost.what(), Catch::Contains("may have been applied"));
    }
    proxy.up();
    // It was applied, and not counted: the count comes after the answers.
    CHECK(reader.applied_facts() == 5);
    CHECK_FALSE(apply_one(hurried, fact("k", "", "f5", "s5")));
    CHECK(show(reader.read("k")) ==
          show(StatusRecord{{"", {"s1", "s3", "s4", "s5"}}, {"a", {"a2"}}}));
}

TEST_CASE("the Redis store: a connection broken while parts are sent loses no answer",
          "[status][store][redis]") {
    if (!have_redis()) return;
    using test_support::CuttingProxy;
    StoreBehindProxy behind;
    auto& [target, proxy, through, options, store] = behind;
    RedisStatusStore reader(fixture_client(), options);
    const std::vector<std::vector<PreparedFact>> parts = {
        {fact("k", "", "f1", "s1"), fact("k", "a", "f2", "a2")},
        {fact("k", "", "f1", "s1"), fact("k", "b", "f3", "b3")},
        {fact("k", "a", "f4", "a4")}};
    for (const auto cut : {CuttingProxy::Cut::next_answer, CuttingProxy::Cut::next_request}) {
        CAPTURE(cut == CuttingProxy::Cut::next_answer ? "answer" : "request");
        const std::uint64_t before = reader.applied_facts();
        std::vector<PreparedFact> made;
        std::vector<PartCall> calls;
        std::vector<std::vector<PreparedFact>> these = parts;
        for (auto& part : these) {
            for (auto& one : part) one.key += cut == CuttingProxy::Cut::next_answer ? "1" : "2";
        }
        const int cuts = proxy.cuts();
        proxy.arm(cut);
        apply_parts(store, these, made, calls);
        CHECK(proxy.cuts() == cuts + 1);
        // Each part answered once, as if nothing had broken.
        REQUIRE(calls.size() == 3);
        CHECK(show(calls[0].result) == show(expected("11", {{}, {}})));
        CHECK(show(calls[1].result) == show(expected("01", {{"s1"}, {}})));
        CHECK(show(calls[2].result) == show(expected("1", {{"a2"}})));
        CHECK(reader.applied_facts() == before + 4);
    }
}

TEST_CASE("the Redis store: a batch the tracker makes in parts changes what one call would",
          "[status][store][redis]") {
    if (!have_redis()) return;
    namespace sg = sendgrid_backend;
    // 40 messages' events, each 1 to 3 times, shuffled: several parts of the tracker's size.
    std::vector<nlohmann::json> events;
    std::mt19937 rng(20261207);
    for (int k = 0; k < 40; ++k) {
        for (const auto& event : status_property::recorded_sequence("parts-" + std::to_string(k))) {
            events.insert(events.end(), 1 + rng() % 3, event);
        }
    }
    std::shuffle(events.begin(), events.end(), rng);
    const std::vector<sg::WebhookEvent> parsed = status_property::parse(events);
    REQUIRE(parsed.size() > 1000);
    using Change = std::tuple<std::string, std::string, sg::RecipientState, sg::RecipientState>;
    const auto record_into = [&](std::shared_ptr<StatusStore> store, std::size_t& applied) {
        std::vector<Change> changes;
        sg::ScopedConnection log = sg::sendgrid_status_changed.connect(
            [&](const std::string& key, const std::string& recipient, const sg::RecipientState& was,
                const sg::RecipientState& now, const sg::StatusEvent&) {
                if (key.rfind("parts-", 0) == 0) changes.emplace_back(key, recipient, was, now);
            });
        sg::StatusTrackerOptions options;
        options.store = std::move(store);
        applied = sg::StatusTracker(options).record(parsed);
        return changes;
    };
    std::size_t applied_in_memory = 0;
    std::size_t applied_in_redis = 0;
    const std::vector<Change> in_memory =
        record_into(std::make_shared<MemoryStatusStore>(), applied_in_memory);
    const RedisStatusStoreOptions options = fresh_options();
    auto redis = fixture_client();
    const std::int64_t transactions = exec_calls(*redis);
    const std::vector<Change> in_redis =
        record_into(std::make_shared<RedisStatusStore>(redis, options), applied_in_redis);
    CHECK(exec_calls(*redis) - transactions > 3);  // a transaction a part
    CHECK(applied_in_redis == applied_in_memory);
    CHECK(in_redis.size() == in_memory.size());
    CHECK(in_redis == in_memory);  // the same changes, in the same order
}

TEST_CASE("the Redis store: threads sharing one tracker and client apply big batches once",
          "[status][store][redis]") {
    if (!have_redis()) return;
    namespace sg = sendgrid_backend;
    // The same 30 messages' events in two orders, each order several parts: the client is held
    // while a thread makes and sends its parts, so the threads take turns, and no event counts
    // twice.
    std::vector<nlohmann::json> events;
    for (int k = 0; k < 30; ++k) {
        const auto sequence = status_property::recorded_sequence("shared-" + std::to_string(k));
        events.insert(events.end(), sequence.begin(), sequence.end());
    }
    std::mt19937 rng(7);
    std::vector<std::vector<sg::WebhookEvent>> orders;
    for (int t = 0; t < 2; ++t) {
        std::vector<nlohmann::json> order = events;
        order.insert(order.end(), events.begin(), events.end());  // a copy of each, too
        std::shuffle(order.begin(), order.end(), rng);
        orders.push_back(status_property::parse(order));
    }
    REQUIRE(orders[0].size() > 2 * 250);
    sg::StatusTrackerOptions options;
    const RedisStatusStoreOptions store_options = fresh_options();
    options.store = std::make_shared<RedisStatusStore>(fixture_client(), store_options);
    sg::StatusTracker shared(options);
    std::atomic<std::size_t> applied{0};
    std::vector<std::exception_ptr> errors(orders.size());
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < orders.size(); ++t) {
        threads.emplace_back([&, t] {
            try {
                applied += shared.record(orders[t]);
            } catch (...) {
                errors[t] = std::current_exception();
            }
        });
    }
    for (std::thread& thread : threads) thread.join();
    for (const std::exception_ptr& error : errors) {
        if (error) std::rethrow_exception(error);
    }
    sg::StatusTracker oracle;  // the memory store
    CHECK(applied.load() == oracle.record(status_property::parse(events)));
    for (int k = 0; k < 30; ++k) {
        const std::string key = "shared-" + std::to_string(k);
        CAPTURE(key);
        CHECK(status_property::status_text(*shared.status(key)) ==
              status_property::status_text(*oracle.status(key)));
    }
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
    decltype(status_property::ChangeLog::changes) expected_changes;
    {
        status_property::ChangeLog log("cut-batch");
        oracle.record(status_property::parse(status_property::recorded_sequence("cut-batch")));
        expected_changes = log.changes;
    }
    REQUIRE(expected_changes.size() > 5);

    const RedisOptions target = RedisOptions::from_url(test_support::redis_fixture_url());
    CuttingProxy proxy(target.host, target.port);
    RedisOptions through = target;
    through.port = proxy.port();
    auto store =
        std::make_shared<RedisStatusStore>(std::make_shared<RedisClient>(through), fresh_options());
    // Connected and the script loaded, so that the cut falls on the batch's answer.
    CHECK(apply_one(*store, fact("warm", "", "w", "w")));
    sg::StatusTrackerOptions shared;
    shared.store = store;
    sg::StatusTracker tracker(shared);
    status_property::ChangeLog seen("cut-batch");
    proxy.arm(CuttingProxy::Cut::next_answer);
    const auto events = status_property::parse(status_property::recorded_sequence("cut-batch"));
    CHECK(tracker.record(events) == events.size());
    CHECK(proxy.cuts() == 1);
    CHECK(seen.changes == expected_changes);  // each change once, as the oracle signalled it
    // SendGrid posting the batch again changes and signals nothing.
    CHECK(tracker.record(events) == 0);
    CHECK(seen.changes.size() == expected_changes.size());
    CHECK(status_property::status_text(*tracker.status("cut-batch")) ==
          status_property::status_text(*oracle.status("cut-batch")));
}

#endif

}  // namespace status_store_test
