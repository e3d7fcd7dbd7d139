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
/// - `<prefix>rec:<key>`: a hash, the message's record (integers as decimal text);
/// - `<prefix>fp:<key>`: a set, the fingerprints of the facts applied to the message;
/// - `<prefix>applied`: a counter, the facts applied since it was made (it never expires).
/// A message's two keys expire `ttl` after a fact was last applied to it.
///
/// `apply` sends its whole batch in one script call (one round trip): the script is atomic, so
/// processes applying the same facts at once apply each one once. KEYS[1] is the counter,
/// KEYS[2p] and KEYS[2p+1] message p's hash and set (p = 1, 2, ...); ARGV[1] is the batch in
/// MessagePack (one argument: Redis and Lua read it in C, not 50 arguments per fact), texts
/// given once in a table and named by their 1-based index:
///
///     batch = [ttl, [text...], [fact...]]
///     fact  = [p, fingerprint, [watched field...], [op...]]
///     op    = [1 (max) | 2 (min) | 3 (add), field, value]
///           | [4 (pick), rank field, time field, tie field, rank, time, tie, [name, value...]]
///
/// The script answers one MessagePack array of integers: per fact, 0 (applied before), or 1
/// followed by the watched values before, then after (one string: a reply of thousands of
/// small arrays cost the client more than the script did).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/checks/settings.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/redis/client.hpp"
#include "sendgrid_backend/redis/scripts.hpp"
#include "sendgrid_backend/status/store.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// Where a `RedisStatusStore` keeps its records, and for how long.
struct RedisStatusStoreOptions {
    std::string prefix = "sendgrid_backend:status:";
    /// A message's record and fingerprints expire this long after a fact was last applied to
    /// it: 1 second to `max_ttl` (a year).
    std::chrono::seconds ttl = std::chrono::hours(24 * 30);

    static constexpr std::chrono::seconds max_ttl{366 * 24 * 3600};

    /// @throws ImproperlyConfigured naming the option that is out of range.
    void validate() const {
        // Redis deletes a key at once for an EXPIRE of 0 or less: the record would be lost.
        detail::require_within("RedisStatusStoreOptions::ttl", ttl, std::chrono::seconds(1),
                               max_ttl);
    }

    std::string record_key(const std::string& key) const { return prefix + "rec:" + key; }
    std::string fingerprints_key(const std::string& key) const { return prefix + "fp:" + key; }
    std::string applied_key() const { return prefix + "applied"; }
};

namespace detail {

/// Applies a batch of facts (the format is in the file comment). Integers are compared as
/// numbers (Lua's doubles hold the ±2^53 the contract allows exactly); a stored text that is not
/// an integer reads as missing, as `record_integer` has it. Each message's hash and set are
/// read once, the facts applied in Lua, and each written back once (a variadic HSET and SADD):
/// a few commands per message rather than a dozen per fact, which is what Redis spent its time
/// on, and what its append-only file records. A script stopped by an error keeps what it wrote,
/// so every read (where a key of the wrong type fails) comes before the first write.
inline constexpr const char* status_apply_script = R"lua(
local function int(text)
    if not text or not string.find(text, '^%-?%d+$') then return nil end
    local digits = #text
    if string.byte(text, 1) == 45 then digits = digits - 1 end
    if digits > 18 then return nil end
    return tonumber(text)
end
-- Reads first, writes last: a read of a key of the wrong type stops the script before it wrote
-- anything, so a batch is applied whole or not at all.
local counter = redis.call('GET', KEYS[1])
if counter and not int(counter) then
    return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' is not a counter')
end
local function read(command, key, kind)
    local answer = redis.pcall(command, key)
    if type(answer) == 'table' and answer.err then
        error({err = 'WRONGTYPE ' .. key .. ' is not a ' .. kind .. ': ' .. answer.err})
    end
    return answer
end
local records, numbers, seen, changed, added = {}, {}, {}, {}, {}
for p = 1, (#KEYS - 1) / 2 do
    local record, flat = {}, read('HGETALL', KEYS[2 * p], 'hash')
    for i = 1, #flat, 2 do record[flat[i]] = flat[i + 1] end
    local prints = {}
    for _, print in ipairs(read('SMEMBERS', KEYS[2 * p + 1], 'set')) do prints[print] = true end
    records[p], numbers[p], seen[p], changed[p], added[p] = record, {}, prints, {}, {}
end
-- unpack() is limited to a few thousand values: a long list goes in several calls.
local function call_in_chunks(command, key, list)
    for first = 1, #list, 1000 do
        redis.call(command, key, unpack(list, first, math.min(first + 999, #list)))
    end
end
-- A field's integer, read from its text once per batch (false: not an integer).
local function number(p, field)
    local value = numbers[p][field]
    if value == nil then
        value = int(records[p][field]) or false
        numbers[p][field] = value
    end
    return value or nil
end
-- A changed field is written as text once, at the end: 1, a number; 2, a text.
local function set(p, field, value)
    numbers[p][field] = value
    changed[p][field] = 1
end
local function set_text(p, field, text)
    records[p][field] = text
    numbers[p][field] = nil
    changed[p][field] = 2
end
local function watched(p, fields)
    local values = {}
    for i = 1, #fields do values[i] = number(p, fields[i]) or 0 end
    return values
end
local batch = cmsgpack.unpack(ARGV[1])
local strings, results, applied = batch[2], {}, 0  -- results: one flat list, packed
for f, fact in ipairs(batch[3]) do
    local p, print, watch, ops = fact[1], fact[2], fact[3], fact[4]
    local new = not seen[p][print]
    if new then
        seen[p][print] = true
        table.insert(added[p], print)
        local fields = {}
        for i, w in ipairs(watch) do fields[i] = strings[w] end
        local before = watched(p, fields)
        for _, op in ipairs(ops) do
            local kind = op[1]
            if kind == 4 then  -- pick: op = {4, rank, time, tie fields, rank, time, tie, payload}
                local greater = false
                for i = 2, 4 do
                    local stored = number(p, strings[op[i]])
                    local mine = op[i + 3]
                    if not stored or mine > stored then
                        greater = true
                        break
                    end
                    if mine < stored then break end
                end
                if greater then
                    for i = 2, 4 do set(p, strings[op[i]], op[i + 3]) end
                    local payload = op[8]
                    for i = 1, #payload, 2 do set_text(p, strings[payload[i]], strings[payload[i + 1]]) end
                end
            else  -- max (1), min (2), add (3): op = {kind, field, value}
                local field, value = strings[op[2]], op[3]
                local stored = number(p, field)
                if kind == 3 then
                    set(p, field, (stored or 0) + value)
                elseif not stored or (kind == 1 and value > stored) or
                       (kind == 2 and value < stored) then
                    set(p, field, value)
                end
            end
        end
        local after = watched(p, fields)
        results[#results + 1] = 1
        for i = 1, #fields do results[#results + 1] = before[i] end
        for i = 1, #fields do results[#results + 1] = after[i] end
        applied = applied + 1
    else
        results[#results + 1] = 0
    end
end
-- One write per key: the record's changed fields, the new fingerprints, the time to live.
local ttl = batch[1]
for p = 1, (#KEYS - 1) / 2 do
    if #added[p] > 0 then
        local flat = {}
        for field, kind in pairs(changed[p]) do
            flat[#flat + 1] = field
            flat[#flat + 1] = kind == 1 and string.format('%d', numbers[p][field]) or records[p][field]
        end
        call_in_chunks('HSET', KEYS[2 * p], flat)  -- 1000: even, so pairs stay whole
        call_in_chunks('SADD', KEYS[2 * p + 1], added[p])
        redis.call('EXPIRE', KEYS[2 * p], ttl)
        redis.call('EXPIRE', KEYS[2 * p + 1], ttl)
    end
end
if applied > 0 then redis.call('INCRBY', KEYS[1], applied) end
return cmsgpack.pack(results)
)lua";

inline StoredScript& stored_status_apply_script() {
    static StoredScript script(status_apply_script);
    return script;
}

/// Writes MessagePack (what Redis' Lua reads with cmsgpack.unpack): arrays, integers, texts.
/// Only the original spec's codes, which every cmsgpack reads.
class PackWriter {
  public:
    void array(std::size_t size) {
        if (size < 16) {
            out_.push_back(static_cast<char>(0x90 | size));
        } else if (size < 65536) {
            out_.push_back(static_cast<char>(0xdc));
            big_endian(size, 2);
        } else {
            out_.push_back(static_cast<char>(0xdd));
            big_endian(size, 4);
        }
    }
    void integer(std::int64_t value) {
        if (value >= 0 && value < 128) {
            out_.push_back(static_cast<char>(value));
        } else {
            out_.push_back(static_cast<char>(0xd3));
            big_endian(static_cast<std::uint64_t>(value), 8);
        }
    }
    void text(std::string_view value) {
        if (value.size() < 32) {
            out_.push_back(static_cast<char>(0xa0 | value.size()));
        } else if (value.size() < 65536) {
            out_.push_back(static_cast<char>(0xda));
            big_endian(value.size(), 2);
        } else {
            out_.push_back(static_cast<char>(0xdb));
            big_endian(value.size(), 4);
        }
        out_.append(value.data(), value.size());
    }
    std::string& bytes() noexcept { return out_; }

  private:
    void big_endian(std::uint64_t value, int bytes) {
        for (int shift = 8 * (bytes - 1); shift >= 0; shift -= 8) {
            out_.push_back(static_cast<char>((value >> shift) & 0xff));
        }
    }
    std::string out_;
};

/// Reads what the script answers: one MessagePack array of integers (cmsgpack writes an
/// integral Lua number as an integer, or as a float64 when it is large).
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
            case 0xcb: {  // a float64 holding an integer (|x| <= 2^53 by the store's contract)
                const auto bits = unsigned_of(8);
                if (!bits) return std::nullopt;
                double value = 0;
                std::memcpy(&value, &*bits, sizeof value);
                if (!(value >= -9007199254740992.0 && value <= 9007199254740992.0)) {
                    return std::nullopt;
                }
                return static_cast<std::int64_t>(value);
            }
            default:
                return std::nullopt;
        }
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

/// The texts of a batch, each once (field names repeat from fact to fact): 1-based indices,
/// as Lua counts.
class TextTable {
  public:
    std::int64_t index(const std::string& text) {
        auto found = indices_.find(text);  // first: emplace would copy the text every time
        if (found != indices_.end()) return found->second;
        found = indices_.emplace(text, static_cast<std::int64_t>(texts_.size()) + 1).first;
        texts_.push_back(&found->first);
        return found->second;
    }
    const std::vector<const std::string*>& texts() const noexcept { return texts_; }

  private:
    std::unordered_map<std::string, std::int64_t> indices_;
    std::vector<const std::string*> texts_;
};

/// The script's call for `facts`: numkeys, KEYS, and the batch as one MessagePack argument
/// (see the file comment).
inline std::vector<std::string> encode_status_batch(const RedisStatusStoreOptions& options,
                                                    const std::vector<PreparedFact>& facts) {
    std::vector<std::string> call{"", options.applied_key()};
    std::unordered_map<std::string, std::int64_t> positions;  // message key -> p
    TextTable texts;
    PackWriter packed_facts;
    packed_facts.array(facts.size());
    for (const PreparedFact& fact : facts) {
        auto [position, added] =
            positions.emplace(fact.key, static_cast<std::int64_t>(positions.size()) + 1);
        if (added) {
            call.push_back(options.record_key(fact.key));
            call.push_back(options.fingerprints_key(fact.key));
        }
        packed_facts.array(4);
        packed_facts.integer(position->second);
        packed_facts.text(fact.fingerprint);
        packed_facts.array(fact.watch.size());
        for (const std::string& field : fact.watch) packed_facts.integer(texts.index(field));
        packed_facts.array(fact.ops.size());
        for (const FieldOp& op : fact.ops) {
            if (op.kind != FieldOp::Kind::pick) {
                packed_facts.array(3);
                packed_facts.integer(op.kind == FieldOp::Kind::max   ? 1
                                     : op.kind == FieldOp::Kind::min ? 2
                                                                     : 3);
                packed_facts.integer(texts.index(op.field));
                packed_facts.integer(op.value);
                continue;
            }
            packed_facts.array(8);
            packed_facts.integer(4);
            for (const char* part : {".rank", ".time", ".tie"}) {
                packed_facts.integer(texts.index(op.field + part));
            }
            for (std::int64_t value : op.order) packed_facts.integer(value);
            packed_facts.array(2 * op.payload.size());
            for (const auto& [name, value] : op.payload) {
                packed_facts.integer(texts.index(name));
                packed_facts.integer(texts.index(value));
            }
        }
    }
    call[0] = std::to_string(call.size() - 1);
    PackWriter batch;
    batch.array(3);
    batch.integer(options.ttl.count());
    batch.array(texts.texts().size());
    for (const std::string* text : texts.texts()) batch.text(*text);
    batch.bytes() += packed_facts.bytes();
    call.push_back(std::move(batch.bytes()));
    return call;
}

/// The script's answer, checked against the batch it was given.
inline std::vector<AppliedFact> decode_status_answer(const RedisValue& answer,
                                                     const std::vector<PreparedFact>& facts) {
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
    auto next = [&] {
        if (left == 0) unexpected();
        --left;
        const std::optional<std::int64_t> value = reader.integer();
        if (!value) unexpected();
        return *value;
    };
    std::vector<AppliedFact> results(facts.size());
    for (std::size_t i = 0; i < facts.size(); ++i) {
        const std::int64_t applied = next();
        if (applied == 0) continue;
        if (applied != 1) unexpected();
        const std::size_t watched = facts[i].watch.size();
        AppliedFact& result = results[i];
        result.applied = true;
        result.before.reserve(watched);
        result.after.reserve(watched);
        for (std::size_t j = 0; j < watched; ++j) result.before.push_back(next());
        for (std::size_t j = 0; j < watched; ++j) result.after.push_back(next());
    }
    if (left != 0 || !reader.at_end()) unexpected();
    return results;
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

    /// One script call for the whole batch.
    /// @throws RedisConnectionLost when the connection broke during the call: the batch may or
    ///         may not have been applied. Applying it again is safe (no fact is applied twice),
    ///         but reports the facts the lost call applied as applied before.
    ///         RedisError when Redis is out of reach or refuses the script (a key of another
    ///         type under the prefix: nothing is written then).
    std::vector<AppliedFact> apply(const std::vector<PreparedFact>& facts) override {
        if (facts.empty()) return {};
        const RedisValue answer = detail::stored_status_apply_script()
                                      .run(*redis_, {detail::encode_status_batch(options_, facts)})
                                      .at(0);
        return detail::decode_status_answer(answer, facts);
    }

    /// @throws RedisError.
    std::optional<StatusRecord> read(const std::string& key) override {
        const RedisValue fields = idempotent({"HGETALL", options_.record_key(key)});
        if (fields.is_error()) throw RedisError("Redis did not read a status: " + fields.text);
        if (fields.elements.empty()) return std::nullopt;
        StatusRecord record;
        for (std::size_t i = 0; i + 1 < fields.elements.size(); i += 2) {
            record.emplace(fields.elements[i].text, fields.elements[i + 1].text);
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
