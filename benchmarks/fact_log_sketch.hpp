#pragma once

// A sketch of one lean receiver for issue 24's contract, for status_bench's
// `status/sketch_fact_log` row, and not the least any receiver can do (docs/benchmarks.md,
// "A lean receiver's sketch", has a reviewer's faster prototypes). The library's store has kept
// facts and folded statuses in the client since 0.17.0 too; the sketch's facts are smaller (a
// hash field each, whose text is both its fingerprint and what it says), and it does far less
// per event. It
// verifies the signature, reads the whole body strictly (no tree: only the fields a status
// needs), and applies the events to Redis in one script call that is atomic across receivers
// and de-duplicates by content: each message is a hash of its facts (`HKEYS`, then one `HSET`
// of the new ones and an `EXPIRE`), the call's answer is kept for a resend and the applied facts
// are counted in the script (as RedisStatusStore did until 0.19.0). The status of each recipient is
// then folded in the client from the facts there before and the new ones, and the changes are
// counted (where the library would emit `sendgrid_status_changed`).
//
// Left out: the first and last times, reasons and classifications a status keeps, per-event
// refusals (a field of the wrong type refuses the whole body here), the `WebhookEvent`s handed
// to handlers, custom_args beyond the tracking key, soft bounces (a bounce's type is not read).

#include <sendgrid_backend/detail/json/scan.hpp>
#include <sendgrid_backend/detail/text/random_key.hpp>
#include <sendgrid_backend/redis/client.hpp>
#include <sendgrid_backend/redis/scripts.hpp>
#include <sendgrid_backend/status/redis_store.hpp>
#include <sendgrid_backend/webhook.hpp>

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace fact_log_sketch {

namespace sg = sendgrid_backend;

/// The end of the sketch's script (kScript): answers `answer` packed, and when
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

/// KEYS[1] the applied-facts counter, KEYS[2] the call's kept answer, KEYS[2 + p] message p's
/// facts; ARGV[1] the messages' time to live, ARGV[2] the answer's, then per message its number
/// of facts and their fingerprints. Answers (MessagePack, kept and counted by the store's own
/// status_answer_lua), per message, the fingerprints it had before the call and a 0/1 per fact
/// (1: applied now).
inline constexpr const char* kScript = R"lua(
local kept = redis.call('GET', KEYS[2])
if kept then return kept end
local answer, at, applied = {}, 3, 0
for p = 3, #KEYS do
    local count = tonumber(ARGV[at])
    at = at + 1
    local before = redis.call('HKEYS', KEYS[p])
    local known = {}
    for i = 1, #before do known[before[i]] = true end
    local new, flags = {}, {}
    for i = at, at + count - 1 do
        local fact = ARGV[i]
        if known[fact] then
            flags[#flags + 1] = 0
        else
            known[fact] = true
            new[#new + 1] = fact
            new[#new + 1] = ''
            flags[#flags + 1] = 1
        end
    end
    at = at + count
    if #new > 0 then
        redis.call('HSET', KEYS[p], unpack(new))
        redis.call('EXPIRE', KEYS[p], ARGV[1])
        applied = applied + #new / 2
    end
    answer[#answer + 1] = before
    answer[#answer + 1] = flags
end
)lua";

struct Event {
    std::string key, email, type, extra;
    std::string_view timestamp;
};

/// One recipient's status as folded from facts: the delivery state's rank and two counts.
struct Recipient {
    std::string_view email;
    int rank = 0;
    std::int64_t opens = 0, clicks = 0;
    bool operator==(const Recipient& other) const {
        return rank == other.rank && opens == other.opens && clicks == other.clicks;
    }
};

inline int rank_of(std::string_view type) {
    if (type == "processed") return 1;
    if (type == "deferred") return 2;
    if (type == "delivered" || type == "open" || type == "click") return 3;
    if (type == "bounce" || type == "dropped") return 4;
    return 0;
}

/// A fact's fingerprint holds what the fold needs: type|timestamp|email|extra.
inline void fold(std::vector<Recipient>& recipients, std::string_view fact, Recipient*& changed) {
    std::string_view parts[4];
    for (int i = 0; i < 3; ++i) {
        const auto bar = fact.find('|');
        parts[i] = fact.substr(0, bar);
        fact.remove_prefix(bar == std::string_view::npos ? fact.size() : bar + 1);
    }
    parts[3] = fact;
    auto found = std::find_if(recipients.begin(), recipients.end(),
                              [&](const Recipient& r) { return r.email == parts[2]; });
    if (found == recipients.end()) {
        recipients.push_back(Recipient{parts[2]});
        found = recipients.end() - 1;
    }
    found->rank = std::max(found->rank, rank_of(parts[0]));
    if (parts[0] == "open") ++found->opens;
    if (parts[0] == "click") ++found->clicks;
    changed = &*found;
}

class Receiver {
  public:
    Receiver(std::string public_key, std::string prefix)
        : verifier_(public_key), prefix_(std::move(prefix)) {}

    /// Facts applied and status changes counted; -1 when the body is refused.
    struct Result {
        std::int64_t applied = -1, changes = 0;
    };

    Result handle(const sg::HttpHeaders& headers, std::string_view body, sg::RedisClient& redis) {
        std::string_view signature, stamp;
        for (const auto& [name, value] : headers) {
            if (name == sg::webhook_signature_header) signature = value;
            if (name == sg::webhook_timestamp_header) stamp = value;
        }
        if (!verifier_.verify(body, signature, stamp) || !read(body)) return {};
        group();
        const std::string answer = script_.run(redis, {call_}).at(0).text;
        return apply(answer);
    }

  private:
    bool read(std::string_view body) {
        sg::detail::JsonScanner in(body);
        count_ = 0;
        if (!in.take('[')) return false;
        if (in.take(']')) return in.at_end();
        do {
            if (count_ == events_.size()) events_.emplace_back();
            Event& event = events_[count_++];
            event.key.clear();
            event.email.clear();
            event.type.clear();
            event.extra.clear();
            event.timestamp = {};
            if (!in.take('{')) return false;
            if (!in.take('}')) {
                do {
                    if (!in.string(name_) || !in.take(':')) return false;
                    std::string* into = name_ == "email"                      ? &event.email
                                        : name_ == "event"                    ? &event.type
                                        : name_ == "sendgrid_backend_key"     ? &event.key
                                        : name_ == "url" || name_ == "reason" ? &event.extra
                                                                              : nullptr;
                    if (into != nullptr) {
                        if (!in.string(*into)) return false;
                    } else if (name_ == "timestamp") {
                        if (!in.number(event.timestamp)) return false;
                    } else if (in.peek() == '"') {
                        if (!in.string(skipped_)) return false;  // no allocation per value
                    } else if (!in.value()) {
                        return false;
                    }
                } while (in.take(','));
                if (!in.take('}')) return false;
            }
        } while (in.take(','));
        return in.take(']') && in.at_end();
    }

    /// Events by message, the script's call made.
    void group() {
        messages_.clear();
        positions_.clear();
        for (std::size_t i = 0; i < count_; ++i) {
            if (events_[i].key.empty()) continue;
            auto [at, added] = positions_.emplace(events_[i].key, messages_.size());
            if (added) messages_.emplace_back();
            messages_[at->second].push_back(i);
        }
        call_.clear();
        call_.push_back(std::to_string(2 + messages_.size()));
        call_.push_back(prefix_ + "applied");
        call_.push_back(prefix_ + "call:" + sg::detail::random_key());
        for (const auto& message : messages_) {
            call_.push_back(prefix_ + "f:" + events_[message.front()].key);
        }
        call_.push_back("2592000");
        call_.push_back("120");
        firsts_.clear();
        for (const auto& message : messages_) {
            call_.push_back(std::to_string(message.size()));
            firsts_.push_back(call_.size());
            for (std::size_t i : message) {
                const Event& e = events_[i];
                std::string& fact = call_.emplace_back();
                fact.reserve(e.type.size() + e.timestamp.size() + e.email.size() + e.extra.size() +
                             3);
                fact.append(e.type).append(1, '|').append(e.timestamp).append(1, '|');
                fact.append(e.email).append(1, '|').append(e.extra);
            }
        }
    }

    /// The statuses before and after each message's applied facts; the changes counted.
    Result apply(std::string_view answer) {
        PackReader in(answer);
        Result result;
        result.applied = 0;
        if (in.array().value_or(0) != 2 * messages_.size()) return Result{};
        std::vector<Recipient> recipients;
        for (std::size_t m = 0; m < messages_.size(); ++m) {
            const auto& message = messages_[m];
            recipients.clear();
            Recipient* changed = nullptr;
            const std::size_t before = in.array().value_or(0);
            for (std::size_t i = 0; i < before; ++i) {
                if (const auto fact = in.text_or_none()) fold(recipients, *fact, changed);
            }
            if (in.array().value_or(0) != message.size()) return Result{};
            for (std::size_t at = firsts_[m]; at < firsts_[m] + message.size(); ++at) {
                if (in.integer().value_or(0) != 1) continue;
                ++result.applied;
                const std::string_view fact = call_[at];
                const auto email = fact.substr(fact.find('|', fact.find('|') + 1) + 1);
                const auto mine = email.substr(0, email.find('|'));
                const auto old = std::find_if(recipients.begin(), recipients.end(),
                                              [&](const Recipient& r) { return r.email == mine; });
                const Recipient was = old == recipients.end() ? Recipient{} : *old;
                fold(recipients, fact, changed);
                if (!(was == *changed)) ++result.changes;
            }
        }
        return result;
    }

    sg::EventWebhookVerifier verifier_;
    std::string prefix_;
    sg::detail::StoredScript& script_ = sg::detail::stored_script<&kScript, &status_answer_lua>();
    std::vector<Event> events_;
    std::size_t count_ = 0;
    std::string name_, skipped_;
    std::vector<std::vector<std::size_t>> messages_;
    std::unordered_map<std::string_view, std::size_t> positions_;
    std::vector<std::string> call_;
    std::vector<std::size_t> firsts_;  // where each message's fingerprints begin in call_
};

}  // namespace fact_log_sketch
