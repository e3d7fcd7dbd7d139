#pragma once

/// @file
/// `RedisStatusStore`: a `StatusStore` in Redis, shared by every process on every host that
/// reaches it. Link `sendgrid_backend::redis` (hiredis).
///
/// @code
/// auto redis = std::make_shared<sendgrid_backend::RedisClient>(
///     sendgrid_backend::RedisOptions::from_url("redis://127.0.0.1:6379"));
/// sendgrid_backend::StatusTrackerOptions options;
/// options.store = std::make_shared<sendgrid_backend::RedisStatusStore>(redis);
/// auto statuses = std::make_shared<sendgrid_backend::StatusTracker>(options);
/// @endcode
///
/// Its keys (its data format; every process using them must agree on it), under `prefix`:
/// - `<prefix>facts:<key>`: a string, the message's facts as lines in the order they came, each
///   `\n<fingerprint>\t<call>\t<target>\t<body>` (the line break first, so that a line stays
///   whole after whatever the string held, even text of another program's, read past as it does
///   not parse): `call` names the part (one transaction) that sent the line, `target` is a
///   recipient or "" for the send, escaped (`\\`, `\t`, `\n`). A fingerprint holds
///   no tab or line break, a body no line break (`apply` refuses others). A target's first line
///   of a fingerprint is the fact; later ones are copies, read past (a call appends every fact
///   it names: whether one is new is known only from what Redis answers).
/// - `<prefix>applied`: a counter, the facts applied since it was made (it never expires);
/// - `<prefix>call:<token>`: an apply call's count was added to the counter (kept `answer_ttl`).
/// - `<prefix>msg:<key>`: where 0.17.0 to 0.19.0 kept a message (a hash, a field per target
///   whose value is its lines `<fingerprint>\t<body>\n`): read, never written (those versions'
///   records expire `ttl` after they last wrote them).
/// A message's string expires `ttl` after a call last named it. Needs Redis 6.2 or later (GETEX).
/// Each call naming a message reads its string whole, copies included: a message to thousands of
/// recipients, or one whose events keep coming again, costs each later batch naming it that much.
///
/// Each part of facts (`apply` sends one, `apply_in_parts` one per part, each as soon as it is
/// made, all before the first answer is read: one round trip) is one transaction, MULTI/EXEC,
/// so processes applying the same facts at once apply each one once: an `EXISTS` of the part's
/// 0.19 hashes, then per message an `APPEND` of its lines and a `GETEX` of its string that sets
/// its time to live. Two commands a message and no script: Redis' work is that of plain writes.
/// The client reads each message's string as Redis answers it, in order: the lines before this
/// call's lines were there before (the statuses are folded from those, in the client:
/// status/rules.hpp), a fact first seen in this call's lines was applied by it, and lines after
/// them came later. A fact's copies within one call are answered by the client, and not sent.
///
/// A connection that breaks after a transaction ran loses its answer, and with it the changes to
/// signal: `apply` sends the same parts again (the same lines, the same call names), which
/// answer as the first would have, whatever other processes appended meanwhile. Once the
/// answers are in, a small script adds the applied facts to the counter, once per call.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/checks/settings.hpp"
#include "sendgrid_backend/detail/text/random_key.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/redis/client.hpp"
#include "sendgrid_backend/redis/scripts.hpp"
#include "sendgrid_backend/status/store.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// Where a `RedisStatusStore` keeps its records, and for how long.
struct RedisStatusStoreOptions {
    std::string prefix = "sendgrid_backend:status:";
    /// A message's facts expire this long after a call last named it: 1 second to `max_ttl`
    /// (a year).
    std::chrono::seconds ttl = std::chrono::hours(24 * 30);

    static constexpr std::chrono::seconds max_ttl{366 * 24 * 3600};
    /// How long a call's mark that its count was added to the counter is kept: a count sent
    /// again after a broken connection within this is not added twice.
    static constexpr std::chrono::seconds answer_ttl{120};

    /// @throws ImproperlyConfigured naming the option that is out of range.
    void validate() const {
        // Redis deletes a key at once for an EXPIRE of 0 or less: the record would be lost.
        detail::require_within("RedisStatusStoreOptions::ttl", ttl, std::chrono::seconds(1),
                               max_ttl);
    }

    /// Where the message's facts are kept (see the file comment).
    std::string message_key(const std::string& key) const { return prefix + "facts:" + key; }
    /// Where 0.17.0 to 0.19.0 kept them (read, never written).
    std::string legacy_message_key(const std::string& key) const { return prefix + "msg:" + key; }
    std::string applied_key() const { return prefix + "applied"; }
    std::string call_key(const std::string& token) const { return prefix + "call:" + token; }
};

namespace detail {

/// Adds an apply call's count of applied facts to the counter (KEYS[1]) once: KEYS[2] marks the
/// call for ARGV[2] seconds, so that the count sent again after a broken connection is not added
/// twice. ARGV[1] is the count. Answers the counter (or 0 for a count already added).
inline constexpr const char* status_count_script = R"lua(
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end
local counted = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(counted) == 'table' and counted.err then
    redis.call('DEL', KEYS[2])
    return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' is not a counter: ' .. counted.err)
end
return counted
)lua";

/// A part as one transaction (see the file comment), and what reading its answer needs.
struct StatusBatch {
    std::string token;  ///< the call's name in its lines
    /// MULTI, EXISTS of the 0.19 hashes, per message APPEND and GETEX, EXEC, in Redis' protocol.
    std::string commands;
    std::size_t command_count = 0;
    TargetGroups groups;  ///< the part's targets (AppliedFacts::before's order)
    /// Per message, its targets' numbers, in the order the commands name them.
    std::vector<std::vector<std::size_t>> messages;
    /// Per message, where its key and its 0.19 hash's key are in `commands`, and the size of the
    /// lines it appends.
    struct Place {
        std::size_t key = 0, key_size = 0, legacy = 0, legacy_size = 0, appended = 0;
    };
    std::vector<Place> places;
    /// Per target, its facts (indices into the part), in order, copies within the call left out.
    std::vector<std::vector<std::size_t>> facts_of;
    /// Per target, its name as the lines write it (escaped).
    std::vector<std::string> written_targets;

    std::string_view key(std::size_t message) const {
        return std::string_view(commands).substr(places[message].key, places[message].key_size);
    }
    std::string_view legacy_key(std::size_t message) const {
        return std::string_view(commands).substr(places[message].legacy,
                                                 places[message].legacy_size);
    }
};

/// `token` names the call in its lines; a call sent again keeps it.
/// @throws std::invalid_argument for a fingerprint holding a tab or line break, or a body holding
///         a line break (the stored lines would not read back).
inline StatusBatch encode_status_batch(const RedisStatusStoreOptions& options, FactSpan facts,
                                       std::string token) {
    StatusBatch batch;
    batch.token = std::move(token);
    batch.groups = target_groups(facts);
    batch.facts_of.resize(batch.groups.first.size());
    std::unordered_map<std::string_view, std::size_t> positions;  // message key -> its index
    // The fingerprints of each target's facts after its first, by the target's number.
    struct Later {
        std::size_t operator()(const std::pair<std::size_t, std::string_view>& later) const {
            return std::hash<std::string_view>()(later.second) ^ later.first;
        }
    };
    std::unordered_set<std::pair<std::size_t, std::string_view>, Later> later;
    positions.reserve(batch.groups.first.size());  // no rehash on the way
    later.reserve(facts.size());
    for (std::size_t i = 0; i < facts.size(); ++i) {
        const PreparedFact& fact = facts[i];
        if (contains_any(fact.fingerprint, "\t\n") || fact.body.find('\n') != std::string::npos) {
            throw std::invalid_argument(
                "RedisStatusStore: a fact's fingerprint holds a tab or line break, or its body a "
                "line break (key '" +
                fact.key + "')");
        }
        const std::size_t target = batch.groups.of_fact[i];
        if (batch.groups.first[target] != i) {
            // A copy in the same call is answered here (not applied); Redis' answer tells only
            // of facts against what it held.
            if (facts[batch.groups.first[target]].fingerprint == fact.fingerprint ||
                !later.emplace(target, fact.fingerprint).second) {
                continue;
            }
        } else {
            auto [position, added] = positions.emplace(fact.key, batch.messages.size());
            if (added) batch.messages.emplace_back();
            batch.messages[position->second].push_back(target);
        }
        batch.facts_of[target].push_back(i);
    }
    batch.written_targets.reserve(batch.groups.first.size());
    for (std::size_t first : batch.groups.first) {
        append_escaped(batch.written_targets.emplace_back(), facts[first].target);
    }
    const std::size_t messages = batch.messages.size();
    const std::string ttl = std::to_string(options.ttl.count());
    // The lines' sizes first, so that the whole is written in one string, each message's lines
    // straight into it.
    const auto key_of = [&](std::size_t m) -> const std::string& {
        return facts[batch.groups.first[batch.messages[m].front()]].key;
    };
    batch.places.resize(messages);
    std::size_t total = 64 + messages * (128 + 3 * options.prefix.size() + ttl.size());
    for (std::size_t m = 0; m < messages; ++m) {
        std::size_t size = 0;
        for (std::size_t target : batch.messages[m]) {
            const std::size_t name = batch.written_targets[target].size();
            for (std::size_t i : batch.facts_of[target]) {
                size += facts[i].fingerprint.size() + batch.token.size() + name +
                        facts[i].body.size() + 4;
            }
        }
        batch.places[m].appended = size;
        total += size + 3 * key_of(m).size();
    }
    std::string& out = batch.commands;
    out.reserve(total);
    append_command(out, {"MULTI"});
    append_array_head(out, 1 + messages);
    append_bulk(out, "EXISTS");
    const auto append_key = [&](std::string_view part, const std::string& key, std::size_t& at,
                                std::size_t& size) {
        size = options.prefix.size() + part.size() + key.size();
        append_bulk_head(out, size);
        at = out.size();
        out.append(options.prefix).append(part).append(key).append("\r\n");
    };
    for (std::size_t m = 0; m < messages; ++m) {
        StatusBatch::Place& place = batch.places[m];
        append_key("msg:", key_of(m), place.legacy, place.legacy_size);
    }
    for (std::size_t m = 0; m < messages; ++m) {
        StatusBatch::Place& place = batch.places[m];
        append_array_head(out, 3);
        append_bulk(out, "APPEND");
        append_key("facts:", key_of(m), place.key, place.key_size);
        append_bulk_head(out, place.appended);
        for (std::size_t target : batch.messages[m]) {
            for (std::size_t i : batch.facts_of[target]) {
                out.append(1, '\n').append(facts[i].fingerprint).append(1, '\t');
                out.append(batch.token).append(1, '\t').append(batch.written_targets[target]);
                out.append(1, '\t').append(facts[i].body);
            }
        }
        out += "\r\n";
        // The key written again, not viewed in `out`: a view of a string it appends to.
        append_array_head(out, 4);
        append_bulk(out, "GETEX");
        append_bulk_head(out, place.key_size);
        out.append(options.prefix).append("facts:").append(key_of(m)).append("\r\n");
        append_bulk(out, "EX");
        append_bulk(out, ttl);
    }
    append_command(out, {"EXEC"});
    batch.command_count = 3 + 2 * messages;
    return batch;
}

/// The bodies in a 0.19 target's value (lines of "<fingerprint>\t<body>"), appended to `into`,
/// their fingerprints to `known` (when given).
inline void legacy_bodies(std::string_view value, std::vector<std::string>& into,
                          std::vector<std::string_view>* known = nullptr) {
    while (!value.empty()) {
        const std::size_t end = value.find('\n');
        const std::string_view line = value.substr(0, end);
        const std::size_t tab = line.find('\t');
        if (tab != std::string_view::npos) {
            into.emplace_back(line.substr(tab + 1));
            if (known != nullptr) known->push_back(line.substr(0, tab));
        }
        value.remove_prefix(end == std::string_view::npos ? value.size() : end + 1);
    }
}

/// One line of a message's string: its fingerprint, call, target (as written) and body.
struct StoredLine {
    std::string_view fingerprint, call, target, body;
};

/// Calls `each(line)` for each line of `value` that reads as one (`\n` then four parts), in
/// order, while it answers true.
template <class Each>
void each_line(std::string_view value, Each&& each) {
    while (!value.empty()) {
        const std::size_t end = value.find('\n');
        std::string_view rest = value.substr(0, end);
        value.remove_prefix(end == std::string_view::npos ? value.size() : end + 1);
        StoredLine line;
        std::string_view* parts[] = {&line.fingerprint, &line.call, &line.target};
        bool whole = true;
        for (std::string_view* part : parts) {
            const std::size_t tab = rest.find('\t');
            if (tab == std::string_view::npos) {
                whole = false;
                break;
            }
            *part = rest.substr(0, tab);
            rest.remove_prefix(tab + 1);
        }
        if (!whole) continue;  // text not written by this store, or the empty start
        line.body = rest;
        if (!each(line)) return;
    }
}

/// Calls `each(line)` for the first line of every target and fingerprint in `value` (later
/// lines are copies).
template <class Each>
void first_lines(std::string_view value, Each&& each) {
    std::unordered_set<std::pair<std::string_view, std::string_view>, TextPairHash> seen;
    each_line(value, [&](const StoredLine& line) {
        if (seen.emplace(line.target, line.fingerprint).second) each(line);
        return true;
    });
}

/// What a part's transaction did: per fact applied or not, per target its facts before, and the
/// first message Redis refused (a key of another type), if any: its facts are not applied.
struct DecodedPart {
    AppliedFacts result;
    std::string refused;
};

/// Whether a part's transaction found 0.19 records of its messages (their facts then count
/// as there before: `decode_status_answer` needs them).
inline bool has_legacy_records(const RedisValue& exec) {
    return exec.type == RedisValue::Type::array && !exec.elements.empty() &&
           exec.elements[0].type == RedisValue::Type::integer && exec.elements[0].integer > 0;
}

/// The answer to a part's EXEC, read against the part. `legacy` holds, per message, the answer
/// to an HGETALL of its 0.19 hash (when `has_legacy_records`; else null).
/// @throws RedisError when the transaction did not run or answered something it cannot.
inline DecodedPart decode_status_answer(const RedisValue& exec, const StatusBatch& batch,
                                        FactSpan facts,
                                        const std::vector<RedisValue>* legacy = nullptr) {
    if (exec.is_error()) throw RedisError("Redis did not apply the status facts: " + exec.text);
    const auto unexpected = [] {
        throw RedisError("Redis answered the status transaction with something it does not");
    };
    const std::size_t messages = batch.messages.size();
    if (exec.type != RedisValue::Type::array || exec.elements.size() != 1 + 2 * messages) {
        unexpected();
    }
    DecodedPart part;
    AppliedFacts& result = part.result;
    result.applied.assign(facts.size(), false);
    result.before.resize(batch.groups.first.size());
    result.target_of = batch.groups.of_fact;  // the tracker needs them too
    for (std::size_t m = 0; m < messages; ++m) {
        const std::vector<std::size_t>& targets = batch.messages[m];
        const RedisValue& appended = exec.elements[1 + 2 * m];
        const RedisValue& value = exec.elements[2 + 2 * m];
        if (appended.is_error() || value.is_error()) {
            if (part.refused.empty()) {
                part.refused = "Redis did not apply the status facts of " +
                               std::string(batch.key(m)) + ": " +
                               (appended.is_error() ? appended.text : value.text);
            }
            continue;
        }
        if (appended.type != RedisValue::Type::integer || value.type != RedisValue::Type::string ||
            static_cast<std::uint64_t>(appended.integer) != value.text.size() ||
            value.text.size() < batch.places[m].appended) {
            unexpected();
        }
        // The 0.19 record's facts, by target: there before whatever the string says.
        std::vector<std::vector<std::string_view>> legacy_known(targets.size());
        if (legacy != nullptr && !(*legacy)[m].elements.empty()) {
            const RedisValue& fields = (*legacy)[m];
            for (std::size_t f = 0; f + 1 < fields.elements.size(); f += 2) {
                for (std::size_t t = 0; t < targets.size(); ++t) {
                    if (facts[batch.groups.first[targets[t]]].target == fields.elements[f].text) {
                        legacy_bodies(fields.elements[f + 1].text, result.before[targets[t]],
                                      &legacy_known[t]);
                    }
                }
            }
        }
        const auto in_legacy = [&](std::size_t t, std::string_view fingerprint) {
            const auto& known = legacy_known[t];
            return std::find(known.begin(), known.end(), fingerprint) != known.end();
        };
        if (static_cast<std::uint64_t>(appended.integer) == batch.places[m].appended) {
            // The string was empty: every fact is new (but for the 0.19 record's).
            for (std::size_t t = 0; t < targets.size(); ++t) {
                for (std::size_t i : batch.facts_of[targets[t]]) {
                    result.applied[i] = !in_legacy(t, facts[i].fingerprint);
                }
            }
            continue;
        }
        // The string's lines in the order they came, up to the end of this call's first lines (a
        // try lost before this one wrote them, or this one): the facts first seen there were
        // applied by this call; the lines before them were there before; those after came later.
        std::unordered_map<std::string_view, std::size_t> target_of;  // written name -> t
        for (std::size_t t = 0; t < targets.size(); ++t) {
            target_of.emplace(batch.written_targets[targets[t]], t);
        }
        std::unordered_map<std::pair<std::string_view, std::string_view>, bool, TextPairHash>
            first_seen;  // (target, fingerprint) -> first seen in this call's lines
        bool in_ours = false;
        each_line(value.text, [&](const StoredLine& line) {
            const bool mine = line.call == batch.token;
            if (in_ours && !mine) return false;  // this call's lines end here
            in_ours = mine;
            const auto found = target_of.find(line.target);
            if (found == target_of.end() || in_legacy(found->second, line.fingerprint)) {
                return true;
            }
            if (first_seen.emplace(std::make_pair(line.target, line.fingerprint), mine).second &&
                !mine) {
                result.before[targets[found->second]].emplace_back(line.body);
            }
            return true;
        });
        for (std::size_t t = 0; t < targets.size(); ++t) {
            const std::string_view name = batch.written_targets[targets[t]];
            for (std::size_t i : batch.facts_of[targets[t]]) {
                const auto found =
                    first_seen.find(std::make_pair(name, std::string_view(facts[i].fingerprint)));
                if (found != first_seen.end()) {
                    result.applied[i] = found->second;
                } else if (!in_legacy(t, facts[i].fingerprint)) {
                    unexpected();  // appended by this call, so it must be there
                }
            }
        }
    }
    return part;
}

}  // namespace detail

/// A `StatusStore` in Redis; see the file comment. Thread-safe as its RedisClient. Forgets a
/// message `ttl` after a call last named it (Redis expires its keys).
class RedisStatusStore : public StatusStore {
  public:
    /// @throws ImproperlyConfigured when `redis` is null or an option is out of range.
    explicit RedisStatusStore(std::shared_ptr<RedisClient> redis,
                              RedisStatusStoreOptions options = {})
        : redis_(std::move(redis)), options_(std::move(options)) {
        if (!redis_) throw ImproperlyConfigured("redis", "is null; pass a RedisClient");
        options_.validate();
    }

    /// One transaction for the whole batch; after a broken connection the same again (up to 3
    /// tries), which answers what the first one did if it ran.
    /// @throws RedisConnectionLost when the connection broke and no later try got an answer: the
    ///         batch may or may not have been applied. Applying it again is safe (no fact is
    ///         applied twice), but reports the facts the lost call applied as applied before.
    ///         RedisError when Redis is out of reach (nothing of the parts not yet told of is
    ///         written then), refuses a
    ///         message (a key of another type under the prefix: the others are applied and
    ///         reported, then this is thrown naming the key), or refuses to count the applied
    ///         facts (a counter that is not one: the facts were applied). std::invalid_argument
    ///         for a fingerprint with a tab or line break, or a body with a line break (nothing
    ///         is written then).
    AppliedFacts apply(const std::vector<PreparedFact>& facts) override {
        AppliedFacts result;
        apply_in_parts_of(
            facts, [first = true]() mutable { return std::exchange(first, false); },
            [&](std::size_t, std::size_t, AppliedFacts answer) { result = std::move(answer); });
        return result;
    }

    /// Sends each part as soon as it is made (one transaction each, all on one connection
    /// before the first answer is read): Redis applies a part while the next is made, and the
    /// whole is still one round trip. After a broken connection, every part is sent again as
    /// `apply` sends its one, and the making goes on. A message Redis refuses (a key of another
    /// type) does not stop the others: `applied` is told of every part, then the first refusal
    /// is thrown. `applied` is told of a part as soon as its answer is read, while Redis still
    /// works on later ones. `more` and `applied` run under the RedisClient's lock: they must not
    /// use that client.
    void apply_in_parts(const std::vector<PreparedFact>& facts, const std::function<bool()>& more,
                        const PartApplied& applied) override {
        apply_in_parts_of(facts, more, applied);
    }

    /// @throws RedisError.
    std::optional<StatusRecord> read(const std::string& key) override {
        const std::vector<RedisValue> answers = idempotent(
            {{"GET", options_.message_key(key)}, {"HGETALL", options_.legacy_message_key(key)}});
        const RedisValue& value = answers.at(0);
        // A 0.19 key of another type is no record of theirs (they wrote hashes): none.
        static const RedisValue none;
        const RedisValue& legacy = answers.at(1).is_error() ? none : answers.at(1);
        if (value.is_error()) throw RedisError("Redis did not read a status: " + value.text);
        if (value.is_nil() && legacy.elements.empty()) return std::nullopt;
        StatusRecord record;
        std::map<std::string, std::vector<std::string_view>> legacy_known;
        for (std::size_t i = 0; i + 1 < legacy.elements.size(); i += 2) {
            const std::string& target = legacy.elements[i].text;
            detail::legacy_bodies(legacy.elements[i + 1].text, record[target],
                                  &legacy_known[target]);
        }
        detail::first_lines(value.text, [&](const detail::StoredLine& line) {
            std::string target = detail::unescaped(line.target);
            const auto known = legacy_known.find(target);
            if (known != legacy_known.end() && std::find(known->second.begin(), known->second.end(),
                                                         line.fingerprint) != known->second.end()) {
                return;
            }
            record[std::move(target)].emplace_back(line.body);
        });
        if (record.empty()) return std::nullopt;  // text of another program's, no line of ours
        return record;
    }

    /// @throws RedisError.
    std::uint64_t applied_facts() override {
        const RedisValue count = idempotent({{"GET", options_.applied_key()}}).at(0);
        if (count.is_nil()) return 0;
        const auto value = detail::parse_decimal(count.text);
        if (count.is_error() || !value) {
            throw RedisError("Redis did not read the applied facts counter " +
                             options_.applied_key() + ": " + count.text);
        }
        return static_cast<std::uint64_t>(*value);
    }

    const RedisStatusStoreOptions& options() const noexcept { return options_; }

  private:
    static detail::StoredScript& count_script() {
        return detail::stored_script<&detail::status_count_script>();
    }

    /// A part sent: its facts' place in the vector, its transaction, and what Redis answered.
    struct SentPart {
        std::size_t first = 0;
        std::size_t end = 0;
        detail::StatusBatch batch;
        FormattedCommands formatted;  ///< the batch's commands, as sent
        AppliedFacts result;
        std::exception_ptr error;  ///< Redis refused it, or a message of it
        bool reported = false;     ///< `applied` was told of it as its answer came
    };
    // `formatted` views the batch's string: parts move (never copy) when their vector grows.
    static_assert(std::is_nothrow_move_constructible_v<SentPart>);

    void apply_in_parts_of(const std::vector<PreparedFact>& facts,
                           const std::function<bool()>& more, const PartApplied& applied) {
        std::vector<SentPart> parts;  // this round's
        std::exception_ptr not_made;  // thrown by `more` or the encoding: after the answers
        bool made_all = false;        // `more` said no more (or threw)
        std::size_t made = 0;  // facts before it were sent (any already there: the first part)
        const auto next_part = [&]() -> const FormattedCommands* {
            try {
                while (more()) {
                    if (facts.size() == made) continue;  // an empty part: nothing to send
                    SentPart& part = parts.emplace_back();
                    part.first = made;
                    part.end = made = facts.size();
                    part.batch = detail::encode_status_batch(
                        options_,
                        detail::FactSpan(facts.data() + part.first, part.end - part.first),
                        detail::random_key().substr(0, 12));
                    part.formatted = {part.batch.commands, part.batch.command_count};
                    return &part.formatted;
                }
            } catch (...) {
                if (!parts.empty() && parts.back().batch.commands.empty()) parts.pop_back();
                not_made = std::current_exception();
            }
            made_all = true;
            return nullptr;
        };
        // The first part made before Redis is reached: a batch of no facts never reaches it.
        const FormattedCommands* first_part = next_part();
        std::exception_ptr refused;      // the first message Redis refused: thrown at the end
        std::exception_ptr told_failed;  // what `applied` threw: no part is told of after it
        std::uint64_t applied_count = 0;
        const auto tell = [&](SentPart& part) {
            part.reported = true;
            for (bool fact_applied : part.result.applied) applied_count += fact_applied ? 1 : 0;
            if (told_failed) return;
            try {
                applied(part.first, part.end, std::move(part.result));
            } catch (...) {
                told_failed = std::current_exception();
            }
        };
        // The parts told of were applied: counted once all is sent, or something failed.
        const auto count_told = [&]() -> std::exception_ptr {
            if (applied_count == 0) return nullptr;
            try {
                count(applied_count);
            } catch (...) {
                return std::current_exception();
            }
            return nullptr;
        };
        // Rounds: a connection that broke while parts were sent stops the sending; the parts
        // sent are sent again and reported, then the making goes on in a new round.
        try {
            while (!parts.empty()) {
                send_round(
                    parts, facts,
                    [&]() -> const FormattedCommands* {
                        if (first_part != nullptr) return std::exchange(first_part, nullptr);
                        return made_all ? nullptr : next_part();
                    },
                    tell);
                for (SentPart& part : parts) {
                    if (part.error && !refused) refused = part.error;
                    if (!part.reported && !part.result.applied.empty()) tell(part);
                }
                parts.clear();
                // After `applied` threw, nothing more is made or sent: the caller hears at once.
                if (!made_all && !told_failed) first_part = next_part();
            }
        } catch (...) {
            count_told();  // if Redis can be reached; the first failure is the news
            if (told_failed) std::rethrow_exception(told_failed);
            throw;
        }
        const std::exception_ptr not_counted = count_told();
        if (told_failed) std::rethrow_exception(told_failed);
        if (refused) std::rethrow_exception(refused);
        if (not_counted) std::rethrow_exception(not_counted);
        if (not_made) std::rethrow_exception(not_made);
    }

    /// Adds `applied` facts to the counter, once, also when sent again after a broken connection.
    void count(std::uint64_t applied) {
        const std::vector<std::string> call = {
            "2", options_.applied_key(), options_.call_key(detail::random_key()),
            std::to_string(applied), std::to_string(RedisStatusStoreOptions::answer_ttl.count())};
        for (int attempt = 1;; ++attempt) {
            try {
                const RedisValue answer = count_script().run(*redis_, {call}).at(0);
                if (answer.is_error()) {
                    throw RedisError("Redis did not count the applied status facts: " +
                                     answer.text);
                }
                return;
            } catch (const RedisConnectionLost&) {
                if (attempt >= 3) throw;
            }
        }
    }

    /// The part's transaction did not run because Redis was loading its data (it refused the
    /// commands, and EXEC discarded them): it is sent again.
    static bool not_run(const std::vector<RedisValue>& answers, std::size_t begin,
                        std::size_t end) {
        if (end > answers.size() || !answers[end - 1].is_error()) return false;
        for (std::size_t i = begin; i < end; ++i) {
            if (detail::is_redis_error(answers[i], "LOADING")) return true;
        }
        return false;
    }

    /// Sends the round's parts as `next` makes them and reads their answers into them (a part
    /// Redis refused gets its error); after a broken connection, sends every part made so far
    /// again. A part whose answer says what it applied is handed to `tell` as that answer comes
    /// (its result is final: a part sent again answers what it did then), so that the caller
    /// works on it while Redis works on the later ones. @throws as `apply` when no try got the
    /// answers.
    template <class Tell>
    void send_round(std::vector<SentPart>& parts, const std::vector<PreparedFact>& facts,
                    const std::function<const FormattedCommands*()>& next, Tell&& tell) {
        const auto span_of = [&](const SentPart& part) {
            return detail::FactSpan(facts.data() + part.first, part.end - part.first);
        };
        bool lost = false;  // a try's connection broke: the parts may have been applied
        std::vector<RedisValue> answers;
        std::vector<std::size_t> exec_at;  // per part, its EXEC's answer's number
        std::size_t told_in_order = 0;     // the first parts, told of as their answers came
        const auto decoded = [&](SentPart& part, const RedisValue& exec,
                                 const std::vector<RedisValue>* legacy) {
            detail::DecodedPart answer =
                detail::decode_status_answer(exec, part.batch, span_of(part), legacy);
            part.result = std::move(answer.result);
            if (!answer.refused.empty()) {
                part.error = std::make_exception_ptr(RedisError(answer.refused));
            }
        };
        const auto index_parts = [&] {
            exec_at.clear();
            std::size_t commands = 0;
            for (const SentPart& part : parts) {
                commands += part.batch.command_count;
                exec_at.push_back(commands - 1);
            }
        };
        const auto answered = [&](std::size_t i, const RedisValue& answer) {
            // In order only: a part after one refused, not run or read later waits for it.
            if (exec_at.size() != parts.size()) index_parts();
            if (told_in_order >= parts.size() || i != exec_at[told_in_order]) return;
            if (answer.is_error() || detail::has_legacy_records(answer)) return;
            SentPart& part = parts[told_in_order];
            try {
                decoded(part, answer, nullptr);
            } catch (const RedisError&) {
                return;  // decoded again below, where its error is kept
            }
            tell(part);
            ++told_in_order;
        };
        try {
            answers = redis_->pipeline_streamed(next, answered);
        } catch (const RedisConnectionLost&) {
            lost = true;
        } catch (const RedisError&) {
            throw;  // no connection: nothing was sent
        } catch (...) {
            lost = true;  // e.g. out of memory with parts on the way: the connection was closed
        }
        index_parts();  // every part made by now
        const auto any_not_run = [&] {
            for (std::size_t p = 0; p < parts.size(); ++p) {
                const std::size_t begin = p == 0 ? 0 : exec_at[p - 1] + 1;
                if (not_run(answers, begin, exec_at[p] + 1)) return true;
            }
            return false;
        };
        // Not run (Redis loading its data) or not answered: all of them again, with the same
        // names: a part that ran answers what it did then.
        if (lost || (answers.size() == exec_at.back() + 1 && any_not_run())) {
            std::vector<FormattedCommands> commands;
            commands.reserve(parts.size());
            for (const SentPart& part : parts) commands.push_back(part.formatted);
            const auto give_up = std::chrono::steady_clock::now() + redis_->options().reconnect_for;
            std::chrono::milliseconds wait{20};
            for (int attempt = lost ? 2 : 1;; ++attempt) {
                try {
                    answers = redis_->pipeline_formatted(commands);
                    if (!any_not_run()) break;
                    if (std::chrono::steady_clock::now() + wait > give_up) break;
                    std::this_thread::sleep_for(wait);
                    wait = std::min(wait * 2, std::chrono::milliseconds(500));
                } catch (const RedisConnectionLost&) {
                    lost = true;
                    if (attempt >= 3) throw;
                } catch (const RedisError& error) {
                    // After a broken try, a later one that fails (no connection) cannot say the
                    // batch was not applied.
                    if (!lost) throw;
                    throw RedisConnectionLost(may_have_been_applied(error));
                }
            }
        }
        if (answers.size() != exec_at.back() + 1) {
            throw RedisError("Redis answered " + std::to_string(answers.size()) + " commands of " +
                             std::to_string(exec_at.back() + 1));
        }
        // The 0.19 records of the parts that found some: one more round trip (only while such
        // records last).
        std::vector<std::vector<RedisValue>> legacy(parts.size());
        {
            std::vector<std::vector<std::string_view>> reads;
            for (std::size_t p = 0; p < parts.size(); ++p) {
                if (parts[p].reported || !detail::has_legacy_records(answers[exec_at[p]])) continue;
                for (std::size_t m = 0; m < parts[p].batch.messages.size(); ++m) {
                    reads.push_back({"HGETALL", parts[p].batch.legacy_key(m)});
                }
            }
            if (!reads.empty()) {
                std::vector<RedisValue> read = idempotent(reads);
                std::size_t at = 0;
                for (std::size_t p = 0; p < parts.size(); ++p) {
                    if (parts[p].reported || !detail::has_legacy_records(answers[exec_at[p]])) {
                        continue;
                    }
                    for (std::size_t m = 0; m < parts[p].batch.messages.size(); ++m) {
                        // A key of another type there is no record of 0.19's (they wrote
                        // hashes): none.
                        if (read[at].is_error()) read[at] = RedisValue();
                        legacy[p].push_back(std::move(read[at++]));
                    }
                }
            }
        }
        for (std::size_t p = 0; p < parts.size(); ++p) {
            SentPart& part = parts[p];
            if (part.reported) continue;
            const RedisValue& multi = answers[p == 0 ? 0 : exec_at[p - 1] + 1];
            if (multi.is_error()) {
                // Its commands ran one by one, or not at all: which, nothing says.
                part.result = AppliedFacts();
                part.error = std::make_exception_ptr(
                    RedisConnectionLost("Redis refused MULTI for the status facts (" + multi.text +
                                        "): they may have been applied outside a transaction"));
                continue;
            }
            const RedisValue& exec = answers[exec_at[p]];
            try {
                decoded(part, exec, legacy[p].empty() ? nullptr : &legacy[p]);
            } catch (const RedisError& error) {
                part.result = AppliedFacts();
                // Sent again after a broken connection: the first may still have run.
                part.error =
                    lost
                        ? std::make_exception_ptr(RedisConnectionLost(may_have_been_applied(error)))
                        : std::current_exception();
            }
        }
    }

    static std::string may_have_been_applied(const RedisError& error) {
        std::string why = error.what();
        why.erase(0, why.find("] ") == std::string::npos ? 0 : why.find("] ") + 2);
        return "the connection broke under the status transaction, and sending it again failed "
               "(the batch may have been applied): " +
               why;
    }

    /// Reads, sent again (a few times) when the connection broke under them.
    std::vector<RedisValue> idempotent(const std::vector<std::vector<std::string_view>>& commands) {
        for (int attempt = 1;; ++attempt) {
            try {
                return redis_->pipeline_views(commands);
            } catch (const RedisConnectionLost&) {
                if (attempt >= 3) throw;
            }
        }
    }

    std::shared_ptr<RedisClient> redis_;
    RedisStatusStoreOptions options_;
};

SENDGRID_BACKEND_NAMESPACE_END
