#pragma once

/// @file
/// Where statuses are kept: `StatusStore`, the one small interface behind the in-process, SQLite
/// and Redis stores. A store knows nothing of SendGrid: it keeps, per message key and target (a
/// recipient, or "" for the send), the set of facts applied to it, each at most once (by its
/// fingerprint) and atomically, and hands back what a target held before. The status rules
/// (status/rules.hpp) turn sends, queue moves and webhook events into facts and fold a target's
/// facts into its status: a function of the set, so the status a store's facts give depends on
/// which facts came, not on their order or number of copies. `StatusTracker`
/// (status/tracker.hpp) puts the two together.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/attributes.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// One fact (a send's outcome for one of its targets, a queue move, a webhook event), ready for
/// a store.
struct PreparedFact {
    std::string key;     ///< the message's tracking key
    std::string target;  ///< whose status it is: a recipient (lower case), or "" for the send
    /// Equal for the same fact however often it comes: applied once per key and target. No tab
    /// or line break.
    std::string fingerprint;
    /// What the fact says, as the rules write it (one line: no line break). Stores keep it as is.
    std::string body;
};

/// What one `StatusStore::apply` call did.
struct AppliedFacts {
    /// Per fact, in order: true when applied by this call; false when its key, target and
    /// fingerprint had been applied before (earlier, or by an earlier fact of the same call).
    std::vector<bool> applied;
    /// Per target the call names (a key and target, in the order of their first fact: see
    /// `detail::target_groups`), the bodies of the facts it held before the call, in any order.
    std::vector<std::vector<std::string>> before;
    /// Optional: per fact, its target's number in `before` (the numbering of
    /// `detail::target_groups`: one number per key and target, in the order of first facts),
    /// when the store worked it out anyway (RedisStatusStore does); empty: the tracker works it
    /// out. Numbers that are not that numbering are not used.
    std::vector<std::size_t> target_of;
};

/// A message's facts as stored: by target ("" the send), each target's fact bodies in any order.
using StatusRecord = std::map<std::string, std::vector<std::string>>;

/// A store's contract, checked by one conformance test for every store (tests/test_status_stores):
/// - `apply` applies each fact at most once per (key, target, fingerprint), the whole call at
///   once (atomically, also against other processes sharing the store), and says what it did
///   and what each target held before;
/// - `read` returns every target's facts for a key, nullopt when there are none;
/// - `applied_facts` counts the facts applied since the store began (shared stores: by anyone).
/// A store may forget old messages (a bound, a time to live); it says how in its documentation.
/// Implementations are thread-safe.
class StatusStore {
  public:
    /// Told what one call of `apply_in_parts` applied: facts[first, end) and what `apply` would
    /// have answered for them.
    using PartApplied =
        std::function<void(std::size_t first, std::size_t end, AppliedFacts result)>;

    virtual ~StatusStore() = default;
    virtual AppliedFacts apply(const std::vector<PreparedFact>& facts) = 0;

    /// Applies facts made while the store works: each `more()` appends the next part to `facts`
    /// (empty when the call begins; false: no part left), and the facts are applied as `apply`
    /// applies a batch, in order (a later call sees an earlier one's facts), `applied` told of
    /// each call. This one makes every part first, then applies them in one call. A store may send
    /// each part as it comes instead (RedisStatusStore: Redis applies one while the next is
    /// made). `more` and `applied` must not use the store: a store may call them while it
    /// works, under its locks (RedisStatusStore does).
    /// @throws what `apply` throws; the calls `applied` was told of before were applied.
    virtual void apply_in_parts(const std::vector<PreparedFact>& facts,
                                const std::function<bool()>& more, const PartApplied& applied) {
        while (more()) {
        }
        if (!facts.empty()) applied(0, facts.size(), apply(facts));
    }

    virtual std::optional<StatusRecord> read(const std::string& key) = 0;
    virtual std::uint64_t applied_facts() = 0;
};

namespace detail {

/// The targets a batch names, in the order of their first fact: each fact's target's number,
/// and each target's first fact. What `AppliedFacts::before` is indexed by.
struct TargetGroups {
    std::vector<std::size_t> of_fact;  ///< per fact, its target's number
    std::vector<std::size_t> first;    ///< per target, its first fact
};

/// Hashes a pair of texts (a key and a target, a target and a fingerprint) without joining
/// them into a string.
struct TextPairHash {
    SENDGRID_BACKEND_DETAIL_WRAPS_ON_PURPOSE std::size_t operator()(
        const std::pair<std::string_view, std::string_view>& pair) const {
        const std::size_t first = std::hash<std::string_view>()(pair.first);
        return first ^ (std::hash<std::string_view>()(pair.second) + 0x9e3779b97f4a7c15ull +
                        (first << 6) + (first >> 2));
    }
};

/// A run of facts in a vector (a part of `apply_in_parts`): where it starts and its size, valid
/// until the vector grows past its capacity.
struct FactSpan {
    const PreparedFact* first = nullptr;
    std::size_t count = 0;

    FactSpan(const PreparedFact* begin, std::size_t size) : first(begin), count(size) {}
    FactSpan(const std::vector<PreparedFact>& facts)  // NOLINT(google-explicit-constructor)
        : first(facts.data()), count(facts.size()) {}
    std::size_t size() const noexcept { return count; }
    const PreparedFact& operator[](std::size_t i) const noexcept { return first[i]; }
};

inline TargetGroups target_groups(FactSpan facts) {
    TargetGroups groups;
    groups.of_fact.reserve(facts.size());
    std::unordered_map<std::pair<std::string_view, std::string_view>, std::size_t, TextPairHash>
        numbers;
    numbers.reserve(facts.size());  // no rehash on the way
    for (std::size_t i = 0; i < facts.size(); ++i) {
        auto [at, added] = numbers.emplace(
            std::make_pair(std::string_view(facts[i].key), std::string_view(facts[i].target)),
            groups.first.size());
        if (added) groups.first.push_back(i);
        groups.of_fact.push_back(at->second);
    }
    return groups;
}

/// The groups `numbers` (per fact, its target's number, as a store told them) make: nullopt
/// unless they are target_groups' numbering of `facts`: numbered in the order of first facts,
/// each fact of its group's key and target, each key and target one group.
inline std::optional<TargetGroups> told_target_groups(FactSpan facts,
                                                      std::vector<std::size_t> numbers) {
    if (numbers.size() != facts.size()) return std::nullopt;
    TargetGroups groups;
    // Each group's key and target, once: a hash a group, where working the numbers out takes
    // one a fact.
    std::unordered_set<std::pair<std::string_view, std::string_view>, TextPairHash> named;
    for (std::size_t i = 0; i < facts.size(); ++i) {
        const std::size_t target = numbers[i];
        if (target == groups.first.size()) {
            if (!named.emplace(facts[i].key, facts[i].target).second) return std::nullopt;
            groups.first.push_back(i);
        } else if (target > groups.first.size() ||
                   facts[groups.first[target]].target != facts[i].target ||
                   facts[groups.first[target]].key != facts[i].key) {
            return std::nullopt;
        }
    }
    groups.of_fact = std::move(numbers);
    return groups;
}

}  // namespace detail

SENDGRID_BACKEND_NAMESPACE_END
