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
/// - `<prefix>applied`: a counter, the facts applied since it was made (it never expires);
/// - `<prefix>call:<token>`: what one `apply` call answered, kept `answer_ttl` (below).
/// A message's two keys expire `ttl` after a fact was last applied to it.
///
/// `apply` sends its whole batch in one script call (one round trip): the script is atomic, so
/// processes applying the same facts at once apply each one once. KEYS[1] is the counter,
/// KEYS[2] the call's answer, KEYS[2p+1] and KEYS[2p+2] message p's hash and set (p = 1, 2,
/// ...); ARGV[1] is the batch in MessagePack (one argument: Redis and Lua read it in C, not 50
/// arguments per fact), grouped by message, each message's texts given once and named by their
/// 1-based index; ARGV[2] how long to keep the answer:
///
///     batch   = [ttl, [message...]]
///     message = [[text...], reads, [fingerprint...], [op word...]]
///
/// texts[1..reads] are the fields the facts read (their ops' fields, picks' order fields, and
/// watched fields); the rest are written-only fields and payload values. The op words are, per
/// fact (one per fingerprint, in order): its number of ops, then each op as
///
///     1 (max) | 2 (min) | 3 (add), field, value
///     4 (pick), rank field, time field, tie field, rank, time, tie, pairs, (name, value)...
///
/// The script answers one MessagePack array: per message, the read fields' texts as they were
/// before the batch (false when missing), then per fact 1 (applied) or 0 (applied before). The
/// client replays the applied facts on those texts (detail::apply_ops, the in-process store's
/// code) for the watched values: the script does a fact's ops, and nothing per watched field.
///
/// A connection that breaks after the script ran loses its answer, and with it the changes to
/// signal. So a call that applied anything keeps its answer under a token of the call, and
/// `apply` sends the same call again after a broken connection: a script that finds the token's
/// answer returns it and does nothing else, so the facts are applied once and reported once.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/checks/settings.hpp"
#include "sendgrid_backend/detail/status/record_ops.hpp"
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
    /// A message's record and fingerprints expire this long after a fact was last applied to
    /// it: 1 second to `max_ttl` (a year).
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

    std::string record_key(const std::string& key) const { return prefix + "rec:" + key; }
    std::string fingerprints_key(const std::string& key) const { return prefix + "fp:" + key; }
    std::string applied_key() const { return prefix + "applied"; }
    std::string call_key(const std::string& token) const { return prefix + "call:" + token; }
};

namespace detail {

/// Applies a batch of facts (the format is in the file comment). Integers are compared as
/// numbers (Lua's doubles hold the ±2^53 the contract allows exactly); a stored text that is not
/// an integer reads as missing, as `record_integer` has it. Each message's hash is read once
/// (HMGET of the fields its facts read) and its set asked once (SMISMEMBER of its
/// fingerprints); the ops run on Lua arrays indexed as the texts are; each key is written back
/// once (a variadic HSET and SADD): a few commands per message rather than a dozen per fact,
/// which is what Redis spent its time on, and what its append-only file records. A script
/// stopped by an error keeps what it wrote, so every read (where a key of the wrong type fails)
/// comes before the first write.
inline constexpr const char* status_apply_script = R"lua(
-- ±2^53, what a double holds exactly (detail::max_record_integer); as text for comparing texts.
local limit, limit_text = 9007199254740992, '9007199254740992'
local function int(text)
    if not text or not string.find(text, '^%-?%d+$') then return nil end
    local digits = text
    if string.byte(text, 1) == 45 then digits = string.sub(text, 2) end
    if #digits > 18 then return nil end
    -- Within ±2^53, compared as text (past it a double rounds), as record_integer has it.
    local significant = string.match(digits, '^0*(%d-)$')
    if #significant > #limit_text or
       (#significant == #limit_text and significant > limit_text) then
        return nil
    end
    return tonumber(text)
end
-- The same call again (its connection broke before the answer came): what it answered then.
local kept = redis.call('GET', KEYS[2])
if kept then return kept end
local counter = redis.call('GET', KEYS[1])
if counter and not int(counter) then
    return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' is not a counter')
end
-- list[1..count] as arguments, in calls of 1000 (unpack() is limited to a few thousand
-- values); the answers joined. A key of the wrong type is an error naming it.
local function read(command, key, kind, list, count)
    local answer = {}
    for first = 1, count, 1000 do
        local part = redis.pcall(command, key, unpack(list, first, math.min(first + 999, count)))
        if type(part) == 'table' and part.err then
            error({err = 'WRONGTYPE ' .. key .. ' is not a ' .. kind .. ': ' .. part.err})
        end
        for i = 1, #part do answer[#answer + 1] = part[i] end
    end
    return answer
end
local function write(command, key, list)
    for first = 1, #list, 1000 do
        redis.call(command, key, unpack(list, first, math.min(first + 999, #list)))
    end
end
local batch = cmsgpack.unpack(ARGV[1])
local ttl, messages, answer, applied, writes = batch[1], batch[2], {}, 0, {}
for p, message in ipairs(messages) do
    local texts, reads, prints, ops = message[1], message[2], message[3], message[4]
    local stored = read('HMGET', KEYS[2 * p + 1], 'hash', texts, reads)
    if reads == 0 then  -- no HMGET to find a key of another type before EXPIRE touches it
        local kind = redis.call('TYPE', KEYS[2 * p + 1]).ok
        if kind ~= 'hash' and kind ~= 'none' then
            error({err = 'WRONGTYPE ' .. KEYS[2 * p + 1] .. ' is not a hash: it is a ' .. kind})
        end
    end
    local known = read('SMISMEMBER', KEYS[2 * p + 2], 'set', prints, #prints)
    -- numbers[i]: field i's integer (false: none); kinds[i]: how a changed field is written
    -- (1, the number; 2, the text in written[i]).
    local numbers, kinds, written, seen, added = {}, {}, {}, {}, {}
    for i = 1, reads do
        answer[#answer + 1] = stored[i]
        numbers[i] = int(stored[i]) or false
    end
    local at = 1
    for f = 1, #prints do
        local print = prints[f]
        local new = known[f] == 0 and not seen[print]
        if new then
            seen[print] = true
            added[#added + 1] = print
            applied = applied + 1
        end
        answer[#answer + 1] = new and 1 or 0
        local count = ops[at]
        at = at + 1
        for _ = 1, count do
            local kind = ops[at]
            if kind == 4 then
                local pairs_end = at + 7 + 2 * ops[at + 7]
                if new then
                    local greater = false
                    for i = 1, 3 do
                        local mine, theirs = ops[at + 3 + i], numbers[ops[at + i]]
                        if not theirs or mine > theirs then
                            greater = true
                            break
                        end
                        if mine < theirs then break end
                    end
                    if greater then
                        for i = 1, 3 do
                            local field = ops[at + i]
                            numbers[field], kinds[field] = ops[at + 3 + i], 1
                        end
                        for j = at + 8, pairs_end, 2 do
                            local field, text = ops[j], texts[ops[j + 1]]
                            numbers[field], kinds[field], written[field] = int(text) or false, 2, text
                        end
                    end
                end
                at = pairs_end + 1
            else
                if new then
                    local field, value = ops[at + 1], ops[at + 2]
                    local theirs = numbers[field]
                    if kind == 3 then
                        -- Held within ±2^53, as detail::apply_ops holds it.
                        local sum = math.max(-limit, math.min(limit, (theirs or 0) + value))
                        numbers[field], kinds[field] = sum, 1
                    elseif not theirs or (kind == 1 and value > theirs) or
                           (kind == 2 and value < theirs) then
                        numbers[field], kinds[field] = value, 1
                    end
                end
                at = at + 3
            end
        end
    end
    if #added > 0 then
        local flat = {}
        for field, kind in pairs(kinds) do
            flat[#flat + 1] = texts[field]
            flat[#flat + 1] = kind == 1 and string.format('%d', numbers[field]) or written[field]
        end
        writes[#writes + 1] = {p, flat, added}
    end
end
-- Writes last, one per key: the changed fields, the new fingerprints, the time to live.
for _, w in ipairs(writes) do
    local p = w[1]
    write('HSET', KEYS[2 * p + 1], w[2])  -- in 1000s: even, so pairs stay whole
    write('SADD', KEYS[2 * p + 2], w[3])
    redis.call('EXPIRE', KEYS[2 * p + 1], ttl)
    redis.call('EXPIRE', KEYS[2 * p + 2], ttl)
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
    /// The shortest form: most are field indices below 128, times fit in 32 bits.
    void integer(std::int64_t value) {
        if (value >= 0 && value < 128) {
            out_.push_back(static_cast<char>(value));
        } else if (value >= -32 && value < 0) {
            out_.push_back(static_cast<char>(0xe0 | (value + 32)));
        } else if (value >= 0 && value <= 0xffff) {
            out_.push_back(static_cast<char>(value <= 0xff ? 0xcc : 0xcd));
            big_endian(static_cast<std::uint64_t>(value), value <= 0xff ? 1 : 2);
        } else if (value >= 0 && value <= 0xffffffff) {
            out_.push_back(static_cast<char>(0xce));
            big_endian(static_cast<std::uint64_t>(value), 4);
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
            case 0xcb: {  // a float64 holding an integer (|x| <= 2^53 by the store's contract)
                const auto bits = unsigned_of(8);
                if (!bits) return std::nullopt;
                double value = 0;
                std::memcpy(&value, &*bits, sizeof value);
                const auto limit = static_cast<double>(max_record_integer);  // 2^53: exact
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

/// One message's texts, each once, by 1-based index (as Lua counts). The texts are views: of
/// the facts' strings, or of names this table made (a pick's "<group>.rank", ...).
class TextTable {
  public:
    std::int64_t index(std::string_view text) {
        auto found = indices_.find(text);
        if (found != indices_.end()) return found->second;
        texts_.push_back(text);
        indices_.emplace(text, static_cast<std::int64_t>(texts_.size()));
        return static_cast<std::int64_t>(texts_.size());
    }
    /// The index of `group` + `part`, made once per message.
    std::int64_t index(const std::string& group, const char* part) {
        scratch_.assign(group).append(part);
        auto found = indices_.find(scratch_);
        if (found != indices_.end()) return found->second;
        return index(std::string_view(made_.emplace_back(scratch_)));
    }
    void clear() {
        indices_.clear();
        texts_.clear();
        made_.clear();
    }
    const std::vector<std::string_view>& texts() const noexcept { return texts_; }

  private:
    std::unordered_map<std::string_view, std::int64_t> indices_;
    std::vector<std::string_view> texts_;
    std::deque<std::string> made_;  // names made for this message (clear() forgets them)
    std::string scratch_;
};

/// A batch as the script gets it (see the file comment), and what reading its answer needs.
struct StatusBatch {
    struct Message {
        std::vector<std::size_t> facts;  ///< indices into the batch's facts, in order
        std::vector<std::string> reads;  ///< texts[1..reads]: the fields its facts read
    };
    std::vector<std::string> call;  ///< numkeys, KEYS, ARGV[1]
    std::vector<Message> messages;
};

inline std::int64_t pack_kind(FieldOp::Kind kind) {
    return kind == FieldOp::Kind::max ? 1 : kind == FieldOp::Kind::min ? 2 : 3;
}

/// `token` names the call (its kept answer); a call sent again keeps it.
inline StatusBatch encode_status_batch(const RedisStatusStoreOptions& options,
                                       const std::vector<PreparedFact>& facts,
                                       const std::string& token) {
    StatusBatch batch;
    std::unordered_map<std::string_view, std::size_t> positions;  // message key -> its index
    for (std::size_t i = 0; i < facts.size(); ++i) {
        auto [position, added] = positions.emplace(facts[i].key, batch.messages.size());
        if (added) batch.messages.emplace_back();
        batch.messages[position->second].facts.push_back(i);
    }
    batch.call.reserve(3 + 2 * batch.messages.size() + 2);
    batch.call.push_back(std::to_string(2 + 2 * batch.messages.size()));
    batch.call.push_back(options.applied_key());
    batch.call.push_back(options.call_key(token));
    PackWriter packed;
    packed.array(2);
    packed.integer(options.ttl.count());
    packed.array(batch.messages.size());
    TextTable texts;
    PackWriter words;
    for (StatusBatch::Message& message : batch.messages) {
        const std::string& key = facts[message.facts.front()].key;
        batch.call.push_back(options.record_key(key));
        batch.call.push_back(options.fingerprints_key(key));
        texts.clear();
        // The fields read come first: ops' fields and order fields, then the watched ones.
        for (std::size_t i : message.facts) {
            for (const FieldOp& op : facts[i].ops) {
                if (op.kind != FieldOp::Kind::pick) {
                    texts.index(op.field);
                    continue;
                }
                for (const char* part : pick_parts) texts.index(op.field, part);
            }
            for (const std::string& field : facts[i].watch) texts.index(field);
        }
        const std::size_t reads = texts.texts().size();
        words.bytes().clear();
        std::size_t word_count = 0;
        const auto word = [&](std::int64_t value) {
            words.integer(value);
            ++word_count;
        };
        for (std::size_t i : message.facts) {
            word(static_cast<std::int64_t>(facts[i].ops.size()));
            for (const FieldOp& op : facts[i].ops) {
                if (op.kind != FieldOp::Kind::pick) {
                    word(pack_kind(op.kind));
                    word(texts.index(op.field));
                    word(bounded(op.value));
                    continue;
                }
                word(4);
                for (const char* part : pick_parts) word(texts.index(op.field, part));
                for (std::int64_t value : op.order) word(bounded(value));
                word(static_cast<std::int64_t>(op.payload.size()));
                for (const auto& [name, value] : op.payload) {
                    word(texts.index(name));
                    word(texts.index(value));
                }
            }
        }
        message.reads.assign(texts.texts().begin(),
                             texts.texts().begin() + static_cast<std::ptrdiff_t>(reads));
        packed.array(4);
        packed.array(texts.texts().size());
        for (std::string_view text : texts.texts()) packed.text(text);
        packed.integer(static_cast<std::int64_t>(reads));
        packed.array(message.facts.size());
        for (std::size_t i : message.facts) packed.text(facts[i].fingerprint);
        packed.array(word_count);
        packed.bytes() += words.bytes();
    }
    batch.call.push_back(std::move(packed.bytes()));
    batch.call.push_back(std::to_string(RedisStatusStoreOptions::answer_ttl.count()));
    return batch;
}

/// The script's answer, checked against the batch it was given; the applied facts replayed on
/// the texts read before the batch, for their watched values.
inline std::vector<AppliedFact> decode_status_answer(const RedisValue& answer,
                                                     const StatusBatch& batch,
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
    const auto take = [&] {
        if (left == 0) unexpected();
        --left;
    };
    std::vector<AppliedFact> results(facts.size());
    StatusRecord record;
    try {
        for (const StatusBatch::Message& message : batch.messages) {
            record.clear();
            for (const std::string& field : message.reads) {
                take();
                if (const auto text = reader.text_or_none()) record.emplace(field, *text);
            }
            for (std::size_t i : message.facts) {
                take();
                const std::optional<std::int64_t> applied = reader.integer();
                if (!applied || (*applied != 0 && *applied != 1)) unexpected();
                if (*applied == 1) results[i] = apply_ops(record, facts[i]);
            }
        }
    } catch (const PackReader::Malformed&) {
        unexpected();
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

    /// One script call for the whole batch; after a broken connection the same call again (up
    /// to 3 tries, each started only while its answer would still be kept: `answer_ttl` after
    /// the first, less the client's longest wait), which answers what the first one did if it ran.
    /// @throws RedisConnectionLost when the connection broke and no later try got an answer: the
    ///         batch may or may not have been applied. Applying it again is safe (no fact is
    ///         applied twice), but reports the facts the lost call applied as applied before.
    ///         RedisError when Redis is out of reach or refuses the script (a key of another
    ///         type under the prefix) in the first try: nothing is written then.
    std::vector<AppliedFact> apply(const std::vector<PreparedFact>& facts) override {
        if (facts.empty()) return {};
        const detail::StatusBatch batch =
            detail::encode_status_batch(options_, facts, detail::random_key());
        // A try may wait this long for a connection (twice: to connect, then while Redis
        // loads), then for its answer.
        const RedisOptions& client = redis_->options();
        const auto longest_try = 2 * client.reconnect_for + client.timeout;
        const auto keep_until =
            std::chrono::steady_clock::now() + RedisStatusStoreOptions::answer_ttl;
        bool lost = false;  // a try's connection broke: the batch may have been applied
        for (int attempt = 1;; ++attempt) {
            try {
                const RedisValue answer = detail::stored_script<&detail::status_apply_script,
                                                                &detail::status_answer_lua>()
                                              .run(*redis_, {batch.call})
                                              .at(0);
                return detail::decode_status_answer(answer, batch, facts);
            } catch (const RedisConnectionLost&) {
                lost = true;
                if (attempt < 3 && std::chrono::steady_clock::now() + longest_try < keep_until) {
                    continue;
                }
                throw;
            } catch (const RedisError& error) {
                // After a broken try, a later one that fails (no connection, or BUSY while the
                // first still runs) cannot say the batch was not applied.
                if (!lost) throw;
                std::string why = error.what();
                why.erase(0, why.find("] ") == std::string::npos ? 0 : why.find("] ") + 2);
                throw RedisConnectionLost(
                    "the connection broke under the status script, and sending it again failed "
                    "(the batch may have been applied): " +
                    why);
            }
        }
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
