#pragma once

/// @file
/// A fingerprint of JSON text that is equal for equal JSON values: a status fact is identified
/// by its event's content (status/rules.hpp), and SendGrid's copies of an event need not
/// write it byte for byte the same. Read in place with the JsonScanner, no tree.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/attributes.hpp"
#include "sendgrid_backend/detail/json/depth.hpp"
#include "sendgrid_backend/detail/json/scan.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// 64-bit FNV-1a: a fingerprint, not a secret (a collision merges two facts of one message).
SENDGRID_BACKEND_DETAIL_WRAPS_ON_PURPOSE inline std::uint64_t fnv1a(
    std::string_view text, std::uint64_t hash = 14695981039346656037ull) {
    for (char c : text) {
        hash ^= static_cast<unsigned char>(c);  // a byte: explicit, as it changes signed chars
        hash *= 1099511628211ull;
    }
    return hash;
}

/// A key's first eight bytes as a big-endian number (zeros past its end): keys whose numbers
/// differ are in the same order as the numbers, so most comparisons of a sort are one of
/// integers.
inline std::uint64_t key_prefix(std::string_view key) noexcept {
    unsigned char bytes[8] = {};
    if (!key.empty()) std::memcpy(bytes, key.data(), std::min<std::size_t>(key.size(), 8));
    std::uint64_t prefix = 0;
    for (unsigned char byte : bytes) prefix = (prefix << 8) | byte;
    return prefix;
}

/// An object's member as content_hash takes it: its key and its value's own hash.
struct HashedMember {
    std::string_view key;      ///< decoded: into the text, or into storage of the reader's
    std::uint64_t digest = 0;  ///< the member's value hashed on its own
    std::size_t order = 0;     ///< of a repeated key the last counts
    std::uint64_t prefix = 0;  ///< key_prefix(key)

    HashedMember() = default;
    HashedMember(std::string_view key_, std::uint64_t digest_, std::size_t order_) noexcept
        : key(key_), digest(digest_), order(order_), prefix(key_prefix(key_)) {}
};

/// Puts an object's members in key order (of a repeated key, in the order they came).
template <class Iterator>
void sort_members(Iterator begin, Iterator end) {
    const auto before = [](const HashedMember& a, const HashedMember& b) {
        if (a.prefix != b.prefix) return a.prefix < b.prefix;
        return a.key != b.key ? a.key < b.key : a.order < b.order;
    };
    const auto count = static_cast<std::size_t>(end - begin);
    constexpr std::size_t most_members = 32;  // an event's dozen or so, with room
    if (count > most_members) {
        std::sort(begin, end, before);
        return;
    }
    // Small places sorted, then the members put in their order: an insertion sort moving
    // members (forty bytes each) cost more than the comparisons.
    struct Place {
        std::uint64_t prefix;
        std::size_t index;
    };
    Place places[most_members];
    for (std::size_t i = 0; i < count; ++i) places[i] = {begin[i].prefix, i};
    std::sort(places, places + count, [&](const Place& a, const Place& b) {
        if (a.prefix != b.prefix) return a.prefix < b.prefix;
        return before(begin[a.index], begin[b.index]);
    });
    bool moved = false;
    for (std::size_t i = 0; i < count && !moved; ++i) moved = places[i].index != i;
    if (!moved) return;
    HashedMember sorted[most_members];
    for (std::size_t i = 0; i < count; ++i) sorted[i] = begin[places[i].index];
    std::copy(sorted, sorted + count, begin);
}

/// What content_hash keeps while it reads: the members of the objects being read (each
/// object's above its parent's), and the keys and strings that had escapes, decoded.
struct ContentHashScratch {
    using Member = HashedMember;
    std::vector<Member> members;
    std::deque<std::string> decoded_keys;  // a deque: views of earlier keys stay valid
    std::string decoded;
};

inline std::uint64_t hash_tag(char kind, std::uint64_t hash) {
    return fnv1a(std::string_view(&kind, 1), hash);
}

/// One step of hash_words: a bijection of the state for a given word.
SENDGRID_BACKEND_DETAIL_WRAPS_ON_PURPOSE constexpr std::uint64_t hash_step(
    std::uint64_t hash, std::uint64_t word) noexcept {
    return (((hash << 5) | (hash >> 59)) ^ word) * 0x517cc1b727220a95ull;
}

/// The `count` (at most 8) bytes at `data` as a little-endian number, whatever the host: hosts
/// share stores.
inline std::uint64_t little_endian_word(const unsigned char* data, std::size_t count) noexcept {
    std::uint64_t word = 0;
    for (std::size_t i = count; i > 0; --i) word = (word << 8) | data[i - 1];
    return word;
}

/// Eight bytes a step (FNV-1a's one a step made it most of a fact's cost), so texts of one
/// length that differ in one word never collide; the last step takes the bytes left (none: 0).
inline std::uint64_t hash_words(std::string_view bytes, std::uint64_t hash) {
    const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
    std::size_t left = bytes.size();
    for (; left >= 8; left -= 8, data += 8) hash = hash_step(hash, little_endian_word(data, 8));
    return hash_step(hash, little_endian_word(data, left));
}

/// A text goes in after its length, so that no two different values give one stream.
inline std::uint64_t hash_text(std::string_view bytes, std::uint64_t hash) {
    return hash_words(bytes, hash_step(hash, bytes.size()));
}

/// A string's text hashed as hash_json_value hashes the string (hash_text after the tag 's'),
/// into `hash`, when it holds no escape (looked for in the same pass, a word at a time); false,
/// `hash` untouched, when it does.
inline bool hash_unescaped(std::string_view inside, std::uint64_t& hash) noexcept {
    constexpr std::uint64_t ones = 0x0101010101010101ull;
    constexpr std::uint64_t highs = 0x8080808080808080ull;
    const auto* data = reinterpret_cast<const unsigned char*>(inside.data());
    std::size_t left = inside.size();
    std::uint64_t result = hash_step(hash_tag('s', hash), inside.size());
    for (; left >= 8; left -= 8, data += 8) {
        const std::uint64_t word = little_endian_word(data, 8);
        const std::uint64_t backslash = word ^ (ones * '\\');
        if (((backslash - ones) & ~backslash & highs) != 0) return false;  // a byte of it is one
        result = hash_step(result, word);
    }
    for (std::size_t i = 0; i < left; ++i) {
        if (data[i] == '\\') return false;
    }
    hash = hash_step(result, little_endian_word(data, left));
    return true;
}

/// A string the scanner took (`raw`, quotes included) decoded: a view of its text when it has
/// no escape, else of `out`.
inline std::string_view decoded_string(std::string_view raw, std::string& out) {
    const std::string_view inside = raw.substr(1, raw.size() - 2);
    if (inside.find('\\') == std::string_view::npos) return inside;
    JsonScanner decoder(raw);
    decoder.string(out);  // cannot fail: the scanner took it
    return out;
}

/// An object's hash from its members in key order (sort_members): each key once, its last
/// value's; members named `skip` (when not empty) left out.
inline std::uint64_t hash_sorted_members(const HashedMember* begin, const HashedMember* end,
                                         std::uint64_t hash, std::string_view skip = {}) {
    hash = hash_tag('{', hash);
    for (const HashedMember* it = begin; it != end; ++it) {
        if (it + 1 != end && (it + 1)->key == it->key) continue;
        if (!skip.empty() && it->key == skip) continue;
        hash = hash_text(it->key, hash_tag('k', hash));
        hash = hash_step(hash, it->digest);  // a number, not its bytes: the same on any host
    }
    return hash_tag('}', hash);
}

/// Hashes the next value into `hash`; an object's member `skip` is left out. False when the
/// text is not JSON or nests deeper than max_json_text_depth.
inline bool hash_json_value(JsonScanner& scan, std::uint64_t& hash, ContentHashScratch& scratch,
                            int depth, std::string_view skip = {}) {
    const char first = scan.peek();
    if (first == '"') {
        std::string_view raw;
        if (!scan.skip_string(&raw)) return false;
        hash = hash_text(decoded_string(raw, scratch.decoded), hash_tag('s', hash));
        return true;
    }
    if (first == '[') {
        if (depth >= max_json_text_depth) return false;
        scan.take('[');
        hash = hash_tag('[', hash);
        if (!scan.take(']')) {
            for (;;) {
                if (!hash_json_value(scan, hash, scratch, depth + 1)) return false;
                if (scan.take(']')) break;
                if (!scan.take(',')) return false;
            }
        }
        hash = hash_tag(']', hash);
        return true;
    }
    if (first == '{') {
        // Members in key order, each value hashed on its own: the order they came in does not
        // count, and the text is read once.
        if (depth >= max_json_text_depth) return false;
        scan.take('{');
        auto& members = scratch.members;
        const std::size_t base = members.size();
        if (!scan.take('}')) {
            for (std::size_t order = 0;; ++order) {
                std::string_view raw_key;
                if (!scan.skip_string(&raw_key) || !scan.take(':')) return false;
                std::string_view key = raw_key.substr(1, raw_key.size() - 2);
                if (key.find('\\') != std::string_view::npos) {
                    key = decoded_string(raw_key, scratch.decoded_keys.emplace_back());
                }
                std::uint64_t digest = fnv1a({});
                if (!hash_json_value(scan, digest, scratch, depth + 1)) return false;
                if (key != skip || skip.empty()) members.emplace_back(key, digest, order);
                if (scan.take('}')) break;
                if (!scan.take(',')) return false;
            }
        }
        const auto begin = members.begin() + static_cast<std::ptrdiff_t>(base);
        sort_members(begin, members.end());
        hash = hash_sorted_members(members.data() + base, members.data() + members.size(), hash);
        members.erase(begin, members.end());
        return true;
    }
    if (first == 't' || first == 'f' || first == 'n') {
        const std::string_view word = first == 't' ? "true" : first == 'f' ? "false" : "null";
        if (!scan.word(word)) return false;
        hash = hash_tag(first == 't' ? 't' : first == 'f' ? 'F' : '0', hash);
        return true;
    }
    std::string_view token;
    if (!scan.number(token)) return false;
    hash = hash_text(token, hash_tag('n', hash));
    return true;
}

/// Hashes the JSON value `text` into `hash`, leaving out its top-level member `skip`: equal
/// JSON, equal hash (members in any order, spaces, escapes, repeated keys as the last counts);
/// numbers by their text (1 and 1.0 differ). Text that is not JSON (an event built by hand)
/// is hashed as its bytes.
inline std::uint64_t content_hash(std::string_view text, std::uint64_t hash,
                                  std::string_view skip = {}) {
    // One per thread, kept: a fresh one cost each event its allocations (a deque allocates
    // even empty). Nothing called while it is in use can call back here.
    thread_local ContentHashScratch scratch;
    scratch.members.clear();
    scratch.decoded_keys.clear();
    JsonScanner scan(text, max_json_text_depth);
    std::uint64_t result = hash;
    if (hash_json_value(scan, result, scratch, 0, skip) && scan.at_end()) return result;
    return hash_text(text, hash_tag('?', hash));
}

/// The members of objects that a reader reads anyway (the Event Webhook's reads every event),
/// each value hashed on its own as content_hash hashes it: an object's content_hash is then had
/// from them, in `hash`, without reading its text a second time. The keys view the text read:
/// it must outlive their use.
class MemberDigests {
  public:
    /// Forgets every object (and the keys kept for them).
    void clear() noexcept {
        members_.clear();
        ends_.clear();
        unhashed_.clear();
        keys_.clear();
        scratch_.members.clear();
        scratch_.decoded_keys.clear();
    }

    void begin_object() {
        begin_ = members_.size();
        unhashed_object_ = false;
    }

    /// A member's key, before its value is read: as written (quotes included) and decoded.
    void add_key(std::string_view raw_key, const std::string& key) {
        const std::string_view written =
            raw_key.size() >= 2 ? raw_key.substr(1, raw_key.size() - 2) : std::string_view();
        // Every escape decodes to fewer bytes than it is written in: a key as long as it is
        // written had none, and is the text itself.
        key_ = written.size() == key.size() ? written : std::string_view(keys_.emplace_back(key));
    }

    /// The value of the key added last, as written (JSON the reader checked; spaces after it are
    /// left out).
    void add_value(std::string_view value) {
        while (!value.empty() && is_json_space(value.back())) value.remove_suffix(1);
        std::uint64_t digest = fnv1a({});
        const bool string = value.size() >= 2 && value.front() == '"';
        const char first = value.empty() ? '\0' : value.front();
        if (string && hash_unescaped(value.substr(1, value.size() - 2), digest)) {
            // hashed as hash_json_value hashes a string
        } else if (first == '-' || (first >= '0' && first <= '9')) {
            digest = hash_text(value, hash_tag('n', digest));  // a checked number: its text
        } else {
            // Escaped strings, words and containers: as content_hash reads them, its members
            // one level down.
            JsonScanner scan(value, max_json_text_depth);
            if (!hash_json_value(scan, digest, scratch_, 1) || !scan.at_end()) {
                unhashed_object_ = true;
            }
        }
        members_.emplace_back(key_, digest, members_.size() - begin_);
    }

    void end_object() {
        sort_members(members_.begin() + static_cast<std::ptrdiff_t>(begin_), members_.end());
        ends_.push_back(members_.size());
        unhashed_.push_back(unhashed_object_);
    }

    /// The number of objects ended since `clear`.
    std::size_t size() const noexcept { return ends_.size(); }

    /// What `content_hash(text, hash, skip)` gives for the text of object `object` (in the
    /// order they were ended); nullopt when one of its values could not be hashed here.
    std::optional<std::uint64_t> hash(std::size_t object, std::uint64_t hash,
                                      std::string_view skip) const {
        if (object >= ends_.size() || unhashed_[object]) return std::nullopt;
        const std::size_t begin = object == 0 ? 0 : ends_[object - 1];
        return hash_sorted_members(members_.data() + begin, members_.data() + ends_[object], hash,
                                   skip);
    }

  private:
    static bool is_json_space(char c) noexcept {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
    }

    std::vector<HashedMember> members_;  // every object's, each object's in key order
    std::vector<std::size_t> ends_;      // per object, one past its last member
    std::vector<bool> unhashed_;         // per object: a value could not be hashed
    std::deque<std::string> keys_;       // keys that had escapes, decoded (views stay valid)
    ContentHashScratch scratch_;         // for values read as content_hash reads them
    std::size_t begin_ = 0;
    std::string_view key_;  // the key added last
    bool unhashed_object_ = false;
};

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
