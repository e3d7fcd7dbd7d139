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
/// - `<prefix>msg:<key>`: a hash, the message's facts: a field per target (a recipient, or ""
///   for the send) whose value is the target's facts, one line each, `<fingerprint>\t<body>\n`
///   (a fingerprint holds no tab or line break, a body no line break: `apply` refuses others);
/// - `<prefix>applied`: a counter, the facts applied since it was made (it never expires);
/// - `<prefix>call:<token>`: what one script call answered, kept `answer_ttl` (below).
/// A message's hash expires `ttl` after a fact was last applied to it.
///
/// `apply` sends its whole batch in one script call, `apply_in_parts` one call a part, each sent
/// as soon as it is made and all before the first answer is read (one round trip, Redis applying
/// a part while the next is made). The script is atomic, so processes applying the same facts at
/// once apply each one once (a fact's copies within one call are answered by the client, and
/// not sent). KEYS[1] is the counter, KEYS[2] the call's
/// answer, KEYS[2 + m] message m's hash (m = 1, 2, ...); ARGV[1] is the time to live, ARGV[2]
/// how long to keep the answer, then per message its number of targets, and per target its
/// name, its number of facts and the facts' lines, as stored (one argument). Per message
/// the script reads the targets' values (one `HMGET`), appends the new facts' lines, and writes
/// the changed values back (one `HSET`, one `EXPIRE`): three commands per message, whatever
/// the number of its facts; a new target's lines are written as they came. It answers one
/// MessagePack array: per message and target, the target's value before the call (false when
/// none), then a text of one character per fact, '1' (applied) or '0' (applied before). The
/// client folds the statuses from those (status/rules.hpp), not Redis.
///
/// A connection that breaks after the script ran loses its answer, and with it the changes to
/// signal. So a call that applied anything keeps its answer under a token of the call, and
/// `apply` sends the same call again after a broken connection: a script that finds the token's
/// answer returns it and does nothing else, so the facts are applied once and reported once.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
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
    /// A message's facts expire this long after a fact was last applied to it: 1 second to
    /// `max_ttl` (a year).
    std::chrono::seconds ttl = std::chrono::hours(24 * 30);

    static constexpr std::chrono::seconds max_ttl{366 * 24 * 3600};
    /// How long a call's answer is kept for the same call sent again after a broken connection
    /// (see the file comment); `apply` sends it again only within half of this.
    static constexpr std::chrono::seconds answer_ttl{120};

    /// @throws ImproperlyConfigured naming the option that is out of range.
    void validate() const {
        // Redis deletes a key at once for an EXPIRE of 0 or less: the record would be lost.
        detail::require_within("RedisStatusStoreOptions::ttl", ttl, std::chrono::seconds(1),
                               max_ttl);
    }

    std::string message_key(const std::string& key) const { return prefix + "msg:" + key; }
    std::string applied_key() const { return prefix + "applied"; }
    std::string call_key(const std::string& token) const { return prefix + "call:" + token; }
};

namespace detail {

/// Applies a batch of facts (the format is in the file comment). Every read (where a key of the
/// wrong type fails) comes before the first write, as a script stopped by an error keeps what
/// it wrote. A fact is known when its line, "\n<fingerprint>\t", is in the target's value: a
/// plain search, as no body holds a line break.
inline constexpr const char* status_apply_script = R"lua(
-- The same call again (its connection broke before the answer came): what it answered then.
local kept = redis.call('GET', KEYS[2])
if kept then return kept end
-- Checked before anything is written: the INCRBY at the end must not fail (15 digits leave
-- room for any batch below 2^63).
local counter = redis.call('GET', KEYS[1])
if counter and (not string.find(counter, '^%d+$') or #counter > 15) then
    return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' is not a counter')
end
-- HMGET of a message's targets: one call, or calls of 1000 fields joined (unpack() is limited
-- to a few thousand values). A key of the wrong type is an error naming it.
local function read(key, names, count)
    local answer, n = nil, 0
    for first = 1, count, 1000 do
        local part = redis.pcall('HMGET', key, unpack(names, first, math.min(first + 999, count)))
        if part.err then
            error({err = 'WRONGTYPE ' .. key .. ' is not a hash: ' .. part.err})
        end
        if count <= 1000 then return part end
        answer = answer or {}
        for i = 1, #part do n = n + 1; answer[n] = part[i] end
    end
    return answer
end
-- Every message's targets read first; ARGV walked again below (no table per message kept).
local stored_of, at = {}, 3
for m = 3, #KEYS do
    local count = tonumber(ARGV[at])
    local names = {}
    for t = 1, count do names[t] = ARGV[at + 3 * t - 2] end
    stored_of[m] = read(KEYS[m], names, count)
    at = at + 1 + 3 * count
end
local answer, n, applied = {}, 0, 0
at = 3
for m = 3, #KEYS do
    local count, stored, changed, c = tonumber(ARGV[at]), stored_of[m], {}, 0
    for t = 1, count do
        local name, facts, lines = ARGV[at + 3 * t - 2], tonumber(ARGV[at + 3 * t - 1]),
            ARGV[at + 3 * t]
        local value = stored[t]
        n = n + 1
        answer[n] = value
        if not value then  -- a new target: every fact is new, its lines are its value
            n = n + 1
            answer[n] = string.rep('1', facts)
            applied = applied + facts
            changed[c + 1], changed[c + 2], c = name, lines, c + 2
        else
            local known, flags, new, f, k = '\n' .. value, {}, {}, 0, 0
            for line in string.gmatch(lines, '[^\n]*\n') do
                local print = string.match(line, '^[^\t]*')
                f = f + 1
                if string.find(known, '\n' .. print .. '\t', 1, true) then
                    flags[f] = '0'
                else
                    flags[f] = '1'
                    k = k + 1
                    new[k] = line
                end
            end
            n = n + 1
            answer[n] = table.concat(flags)
            if k > 0 then
                applied = applied + k
                changed[c + 1], changed[c + 2], c = name, value .. table.concat(new), c + 2
            end
        end
    end
    at = at + 1 + 3 * count
    if c > 0 then
        for first = 1, c, 1000 do  -- even: name and value stay together
            redis.call('HSET', KEYS[m], unpack(changed, first, math.min(first + 999, c)))
        end
        redis.call('EXPIRE', KEYS[m], ARGV[1])
    end
end
)lua";

/// The end of a status script (after status_apply_script): answers `answer` packed, and when
/// `applied` facts were applied counts them (KEYS[1]) and keeps the answer for a resend of the
/// same call (KEYS[2], ARGV[2] seconds).
inline constexpr const char* status_answer_lua = R"lua(
local packed = cmsgpack.pack(answer)
if applied > 0 then
    redis.call('INCRBY', KEYS[1], applied)
    redis.call('SET', KEYS[2], packed, 'EX', ARGV[2])
end
return packed
)lua";

/// Reads what the script answers: one MessagePack array of integers, texts and false (cmsgpack
/// writes an integral Lua number as an integer, or as a float64 when it is large).
class PackReader {
  public:
    explicit PackReader(std::string_view bytes) : bytes_(bytes) {}

    std::optional<std::size_t> array() {
        const int code = byte();
        if (code >= 0x90 && code <= 0x9f) return static_cast<std::size_t>(code & 0x0f);
        if (code == 0xdc) return unsigned_of(2);
        if (code == 0xdd) return unsigned_of(4);
        return std::nullopt;
    }
    std::optional<std::int64_t> integer() {
        const int code = byte();
        if (code < 0) return std::nullopt;
        if (code <= 0x7f) return code;
        if (code >= 0xe0) return code - 0x100;
        switch (code) {
            case 0xcc:
                return unsigned_of(1);
            case 0xcd:
                return unsigned_of(2);
            case 0xce:
                return unsigned_of(4);
            case 0xcf: {
                const auto value = unsigned_of(8);
                if (!value || *value > static_cast<std::uint64_t>(INT64_MAX)) return std::nullopt;
                return static_cast<std::int64_t>(*value);
            }
            case 0xd0:
                return signed_of(1);
            case 0xd1:
                return signed_of(2);
            case 0xd2:
                return signed_of(4);
            case 0xd3:
                return signed_of(8);
            case 0xcb: {  // a float64 holding an integer (|x| <= 2^53)
                const auto bits = unsigned_of(8);
                if (!bits) return std::nullopt;
                double value = 0;
                std::memcpy(&value, &*bits, sizeof value);
                const double limit = 9007199254740992.0;  // 2^53: what a double holds exactly
                if (!(value >= -limit && value <= limit)) {
                    return std::nullopt;
                }
                return static_cast<std::int64_t>(value);
            }
            default:
                return std::nullopt;
        }
    }
    /// A text, or nullopt for false or nil; Malformed for anything else.
    struct Malformed {};
    std::optional<std::string_view> text_or_none() {
        const int code = byte();
        if (code == 0xc2 || code == 0xc0) return std::nullopt;
        std::optional<std::uint64_t> size;
        if (code >= 0xa0 && code <= 0xbf) {
            size = static_cast<std::uint64_t>(code & 0x1f);
        } else if (code == 0xd9) {
            size = unsigned_of(1);
        } else if (code == 0xda) {
            size = unsigned_of(2);
        } else if (code == 0xdb) {
            size = unsigned_of(4);
        }
        if (!size || bytes_.size() - at_ < *size) throw Malformed{};
        const std::string_view text = bytes_.substr(at_, static_cast<std::size_t>(*size));
        at_ += static_cast<std::size_t>(*size);
        return text;
    }
    bool at_end() const noexcept { return at_ == bytes_.size(); }

  private:
    int byte() { return at_ < bytes_.size() ? static_cast<unsigned char>(bytes_[at_++]) : -1; }
    std::optional<std::uint64_t> unsigned_of(std::size_t size) {
        if (bytes_.size() - at_ < size) return std::nullopt;
        std::uint64_t value = 0;
        for (std::size_t i = 0; i < size; ++i) {
            value = (value << 8) | static_cast<unsigned char>(bytes_[at_++]);
        }
        return value;
    }
    std::optional<std::int64_t> signed_of(std::size_t size) {
        const auto value = unsigned_of(size);
        if (!value) return std::nullopt;
        const unsigned shift = static_cast<unsigned>(64 - 8 * size);
        // Sign-extends through the top bits; two's complement, as C++20 and every compiler has.
        return static_cast<std::int64_t>(*value << shift) >> shift;
    }

    std::string_view bytes_;
    std::size_t at_ = 0;
};

/// A batch as the script gets it (see the file comment), and what reading its answer needs.
struct StatusBatch {
    std::vector<std::string> call;  ///< numkeys, KEYS, ARGV
    TargetGroups groups;            ///< the batch's targets (AppliedFacts::before's order)
    /// Per message, its targets' numbers, in the order the call names them.
    std::vector<std::vector<std::size_t>> messages;
    /// Per target, its facts (indices into the batch), in order, copies within the call left out.
    std::vector<std::vector<std::size_t>> facts_of;
};

/// `token` names the call (its kept answer); a call sent again keeps it.
/// @throws std::invalid_argument for a fingerprint holding a tab or line break, or a body holding
///         a line break (the stored lines would not read back).
inline StatusBatch encode_status_batch(const RedisStatusStoreOptions& options, FactSpan facts,
                                       const std::string& token) {
    StatusBatch batch;
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
    std::size_t arguments = 0;
    for (std::size_t i = 0; i < facts.size(); ++i) {
        const PreparedFact& fact = facts[i];
        if (fact.fingerprint.find_first_of("\t\n") != std::string::npos ||
            fact.body.find('\n') != std::string::npos) {
            throw std::invalid_argument(
                "RedisStatusStore: a fact's fingerprint holds a tab or line break, or its body a "
                "line break (key '" +
                fact.key + "')");
        }
        const std::size_t target = batch.groups.of_fact[i];
        if (batch.groups.first[target] != i) {
            // A copy in the same call is answered here (not applied); Redis checks only facts
            // against what it holds.
            if (facts[batch.groups.first[target]].fingerprint == fact.fingerprint ||
                !later.emplace(target, fact.fingerprint).second) {
                continue;
            }
        }
        if (batch.groups.first[target] == i) {
            auto [position, added] = positions.emplace(fact.key, batch.messages.size());
            if (added) {
                batch.messages.emplace_back();
                ++arguments;
            }
            batch.messages[position->second].push_back(target);
            arguments += 3;
        }
        batch.facts_of[target].push_back(i);
    }
    batch.call.reserve(5 + batch.messages.size() + arguments);
    batch.call.push_back(std::to_string(2 + batch.messages.size()));
    batch.call.push_back(options.applied_key());
    batch.call.push_back(options.call_key(token));
    for (const auto& message : batch.messages) {
        batch.call.push_back(options.message_key(facts[batch.groups.first[message.front()]].key));
    }
    batch.call.push_back(std::to_string(options.ttl.count()));
    batch.call.push_back(std::to_string(RedisStatusStoreOptions::answer_ttl.count()));
    for (const auto& message : batch.messages) {
        batch.call.push_back(std::to_string(message.size()));
        for (std::size_t target : message) {
            batch.call.push_back(facts[batch.groups.first[target]].target);
            batch.call.push_back(std::to_string(batch.facts_of[target].size()));
            std::string& lines = batch.call.emplace_back();
            std::size_t size = 0;
            for (std::size_t i : batch.facts_of[target]) {
                size += facts[i].fingerprint.size() + facts[i].body.size() + 2;
            }
            lines.reserve(size);
            for (std::size_t i : batch.facts_of[target]) {
                lines.append(facts[i].fingerprint).append(1, '\t');
                lines.append(facts[i].body).append(1, '\n');
            }
        }
    }
    return batch;
}

/// The bodies in a target's stored value (lines of "<fingerprint>\t<body>"), appended to `into`.
inline void stored_bodies(std::string_view value, std::vector<std::string>& into) {
    while (!value.empty()) {
        const std::size_t end = value.find('\n');
        const std::string_view line = value.substr(0, end);
        const std::size_t tab = line.find('\t');
        if (tab != std::string_view::npos) into.emplace_back(line.substr(tab + 1));
        value.remove_prefix(end == std::string_view::npos ? value.size() : end + 1);
    }
}

/// The script's answer, checked against the batch it was given.
inline AppliedFacts decode_status_answer(const RedisValue& answer, const StatusBatch& batch,
                                         std::size_t fact_count) {
    if (answer.is_error()) {
        throw RedisError("Redis did not apply the status facts: " + answer.text);
    }
    auto unexpected = [] {
        throw RedisError(
            "Redis answered the status script with something it does not return (another "
            "script under the same SHA1?)");
    };
    if (answer.type != RedisValue::Type::string) unexpected();
    PackReader reader(answer.text);
    std::size_t left = reader.array().value_or(0);
    const auto take = [&] {
        if (left == 0) unexpected();
        --left;
    };
    AppliedFacts result;
    result.applied.assign(fact_count, false);
    result.before.resize(batch.groups.first.size());
    try {
        for (const auto& message : batch.messages) {
            for (std::size_t target : message) {
                take();
                if (const auto value = reader.text_or_none()) {
                    stored_bodies(*value, result.before[target]);
                }
                take();
                const auto flags = reader.text_or_none();
                const auto& mine = batch.facts_of[target];
                if (!flags || flags->size() != mine.size()) unexpected();
                for (std::size_t f = 0; f < mine.size(); ++f) {
                    const char flag = (*flags)[f];
                    if (flag != '0' && flag != '1') unexpected();
                    result.applied[mine[f]] = flag == '1';
                }
            }
        }
    } catch (const PackReader::Malformed&) {
        unexpected();
    }
    if (left != 0 || !reader.at_end()) unexpected();
    return result;
}

}  // namespace detail

/// A `StatusStore` in Redis; see the file comment. Thread-safe as its RedisClient. Forgets a
/// message `ttl` after its last applied fact (Redis expires its keys).
class RedisStatusStore : public StatusStore {
  public:
    /// @throws ImproperlyConfigured when `redis` is null or an option is out of range.
    explicit RedisStatusStore(std::shared_ptr<RedisClient> redis,
                              RedisStatusStoreOptions options = {})
        : redis_(std::move(redis)), options_(std::move(options)) {
        if (!redis_) throw ImproperlyConfigured("redis", "is null; pass a RedisClient");
        options_.validate();
    }

    /// One script call for the whole batch; after a broken connection the same call again (up
    /// to 3 tries, each started only while its answer would still be kept: `answer_ttl` after
    /// the first, less the client's longest wait), which answers what the first one did if it ran.
    /// @throws RedisConnectionLost when the connection broke and no later try got an answer: the
    ///         batch may or may not have been applied. Applying it again is safe (no fact is
    ///         applied twice), but reports the facts the lost call applied as applied before.
    ///         RedisError when Redis is out of reach or refuses the script (a key of another
    ///         type under the prefix) in the first try: nothing is written then.
    AppliedFacts apply(const std::vector<PreparedFact>& facts) override {
        AppliedFacts result;
        apply_in_parts_of(
            facts, [first = true]() mutable { return std::exchange(first, false); },
            [&](std::size_t, std::size_t, AppliedFacts answer) { result = std::move(answer); });
        return result;
    }

    /// Sends each part as soon as it is made (one script call each, all on one connection before
    /// the first answer is read): Redis applies a part while the next is made, and the whole is
    /// still one round trip. After a broken connection, every call is sent again as `apply`
    /// sends its one, and the making goes on. A part Redis refuses (a key of another type) does
    /// not stop the others: `applied` is told of each part that was applied, then the first
    /// refusal is thrown. `applied` is told of a part as soon as its answer is read, while Redis
    /// still works on later ones. `more` and `applied` run under the RedisClient's lock: they
    /// must not use that client.
    void apply_in_parts(const std::vector<PreparedFact>& facts, const std::function<bool()>& more,
                        const PartApplied& applied) override {
        apply_in_parts_of(facts, more, applied);
    }

    /// @throws RedisError.
    std::optional<StatusRecord> read(const std::string& key) override {
        const RedisValue fields = idempotent({"HGETALL", options_.message_key(key)});
        if (fields.is_error()) throw RedisError("Redis did not read a status: " + fields.text);
        if (fields.elements.empty()) return std::nullopt;
        StatusRecord record;
        for (std::size_t i = 0; i + 1 < fields.elements.size(); i += 2) {
            detail::stored_bodies(fields.elements[i + 1].text, record[fields.elements[i].text]);
        }
        return record;
    }

    /// @throws RedisError.
    std::uint64_t applied_facts() override {
        const RedisValue count = idempotent({"GET", options_.applied_key()});
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
    using Script = detail::StoredScript;
    static Script& script() {
        return detail::stored_script<&detail::status_apply_script, &detail::status_answer_lua>();
    }

    /// A part sent: its facts' place in the vector, its call, and what Redis answered.
    struct SentPart {
        std::size_t first = 0;
        std::size_t end = 0;
        detail::StatusBatch batch;
        AppliedFacts result;
        std::exception_ptr error;  ///< Redis refused it
        bool reported = false;     ///< `applied` was told of it as its answer came
    };

    void apply_in_parts_of(const std::vector<PreparedFact>& facts,
                           const std::function<bool()>& more, const PartApplied& applied) {
        std::vector<SentPart> parts;  // this round's
        std::exception_ptr not_made;  // thrown by `more` or the encoding: after the answers
        bool made_all = false;        // `more` said no more (or threw)
        std::size_t made = 0;  // facts before it were sent (any already there: the first part)
        const auto next_call = [&]() -> const std::vector<std::string>* {
            try {
                while (more()) {
                    if (facts.size() == made) continue;  // an empty part: nothing to send
                    SentPart& part = parts.emplace_back();
                    part.first = made;
                    part.end = made = facts.size();
                    part.batch = detail::encode_status_batch(
                        options_,
                        detail::FactSpan(facts.data() + part.first, part.end - part.first),
                        detail::random_key());
                    return &part.batch.call;
                }
            } catch (...) {
                if (!parts.empty() && parts.back().batch.call.empty()) parts.pop_back();
                not_made = std::current_exception();
            }
            made_all = true;
            return nullptr;
        };
        // The first part made before Redis is reached: a batch of no facts never reaches it.
        const std::vector<std::string>* first_call = next_call();
        std::exception_ptr refused;      // the first part Redis refused: thrown after the others
        std::exception_ptr told_failed;  // what `applied` threw: no part is told of after it
        const auto tell = [&](SentPart& part) {
            part.reported = true;
            if (told_failed) return;
            try {
                applied(part.first, part.end, std::move(part.result));
            } catch (...) {
                told_failed = std::current_exception();
            }
        };
        // Rounds: a connection that broke while parts were sent stops the sending; the parts
        // sent are sent again and reported, then the making goes on in a new round.
        while (!parts.empty()) {
            send_round(
                parts,
                [&]() -> const std::vector<std::string>* {
                    if (first_call != nullptr) return std::exchange(first_call, nullptr);
                    return made_all ? nullptr : next_call();
                },
                tell);
            for (SentPart& part : parts) {
                if (part.reported) continue;
                if (part.error) {
                    if (!refused) refused = part.error;
                    continue;
                }
                tell(part);
            }
            parts.clear();
            // After `applied` threw, nothing more is made or sent: the caller hears at once.
            if (!made_all && !told_failed) first_call = next_call();
        }
        if (told_failed) std::rethrow_exception(told_failed);
        if (refused) std::rethrow_exception(refused);
        if (not_made) std::rethrow_exception(not_made);
    }

    /// Sends the round's parts as `next` makes them and reads their answers into them (a part
    /// Redis refused gets its error); after a broken connection, sends every part made so far
    /// again. A part whose first answer says what it applied is handed to `tell` as that answer
    /// comes (its result is final: a part sent again answers what it did then), so that the
    /// caller works on it while Redis works on the later ones. @throws as `apply` when no try
    /// got the answers.
    template <class Tell>
    void send_round(std::vector<SentPart>& parts,
                    const std::function<const std::vector<std::string>*()>& next, Tell&& tell) {
        // A try may wait this long for a connection (twice: to connect, then while Redis
        // loads), then for its answer.
        const RedisOptions& client = redis_->options();
        const auto longest_try = 2 * client.reconnect_for + client.timeout;
        const auto keep_until =
            std::chrono::steady_clock::now() + RedisStatusStoreOptions::answer_ttl;
        bool lost = false;  // a try's connection broke: the parts may have been applied
        std::vector<RedisValue> answers;
        std::size_t told_in_order = 0;  // the first parts, told of as their answers came
        const auto answered = [&](std::size_t i, const RedisValue& answer) {
            // In order only: a part after one refused or not run waits for it, below.
            if (i != told_in_order || i >= parts.size() || answer.is_error()) return;
            SentPart& part = parts[i];
            try {
                part.result =
                    detail::decode_status_answer(answer, part.batch, part.end - part.first);
            } catch (const RedisError&) {
                return;  // decoded again below, where its error is kept
            }
            tell(part);
            ++told_in_order;
        };
        try {
            answers = script().run_streamed(*redis_, next, answered);
        } catch (const RedisConnectionLost&) {
            lost = true;
        } catch (const RedisError&) {
            throw;  // no connection: nothing was sent
        } catch (...) {
            lost = true;  // e.g. out of memory with parts on the way: the connection was closed
        }
        // Not run (the script not loaded, Redis loading its data) or not answered: all of them
        // again, with the same tokens: a part that ran answers what it did then.
        const auto unrun = [](const RedisValue& answer) {
            return detail::is_redis_error(answer, "NOSCRIPT") ||
                   detail::is_redis_error(answer, "LOADING");
        };
        if (lost || std::any_of(answers.begin(), answers.end(), unrun)) {
            // Some parts ran: a failure from here on cannot say nothing was applied.
            lost = lost || !std::all_of(answers.begin(), answers.end(), unrun);
            std::vector<std::vector<std::string>> calls;
            calls.reserve(parts.size());
            for (const SentPart& part : parts) calls.push_back(part.batch.call);
            for (int attempt = lost ? 2 : 1;; ++attempt) {
                if (lost && !(std::chrono::steady_clock::now() + longest_try < keep_until)) {
                    throw RedisConnectionLost(
                        "the connection broke under the status script, too late to send it again "
                        "(the batch may have been applied)");
                }
                try {
                    answers = script().run(*redis_, calls);
                    break;
                } catch (const RedisConnectionLost&) {
                    lost = true;
                    if (attempt >= 3) throw;
                } catch (const RedisError& error) {
                    // After a broken try, a later one that fails (no connection, or BUSY while
                    // the first still runs) cannot say the batch was not applied.
                    if (!lost) throw;
                    throw RedisConnectionLost(may_have_been_applied(error));
                }
            }
        }
        if (answers.size() != parts.size()) {
            throw RedisError("Redis answered " + std::to_string(answers.size()) +
                             " status script calls of " + std::to_string(parts.size()));
        }
        for (std::size_t i = 0; i < parts.size(); ++i) {
            SentPart& part = parts[i];
            if (part.reported) continue;
            try {
                part.result =
                    detail::decode_status_answer(answers[i], part.batch, part.end - part.first);
            } catch (const RedisError& error) {
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
        return "the connection broke under the status script, and sending it again failed (the "
               "batch may have been applied): " +
               why;
    }

    /// A read, sent again (a few times) when the connection broke under it.
    RedisValue idempotent(const std::vector<std::string>& command) {
        for (int attempt = 1;; ++attempt) {
            try {
                return redis_->command(command);
            } catch (const RedisConnectionLost&) {
                if (attempt >= 3) throw;
            }
        }
    }

    std::shared_ptr<RedisClient> redis_;
    RedisStatusStoreOptions options_;
};

SENDGRID_BACKEND_NAMESPACE_END
