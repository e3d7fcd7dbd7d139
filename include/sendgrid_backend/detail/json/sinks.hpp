#pragma once

/// @file
/// The two places a payload is written to: JSON text for the wire, or an nlohmann::json tree.

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/attributes.hpp"
#include "sendgrid_backend/detail/text/base64.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

// The payload is written once, through one of two sinks with the same members: JsonTextSink
// writes the JSON text that goes on the wire (no tree, no per-value allocation),
// BasicJsonDomSink builds the nlohmann::json that build_payload returns. Strings handed to either
// are UTF-8 already (the payload writer checks them first).

inline bool needs_json_escape(char c) noexcept {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == '"' || u == '\\';
}

/// The first byte in [from, end) that JSON strings must escape (a control character, '"' or
/// '\\'), or `end`. Eight bytes per step: message bodies are mostly plain text.
SENDGRID_BACKEND_DETAIL_WRAPS_ON_PURPOSE inline const char* find_json_special(
    const char* from, const char* end) noexcept {
    constexpr std::uint64_t ones = 0x0101010101010101ULL;
    constexpr std::uint64_t highs = 0x8080808080808080ULL;
    const char* p = from;
    for (;;) {
        while (end - p >= 8) {
            std::uint64_t x;
            std::memcpy(&x, p, sizeof x);
            const std::uint64_t quote = x ^ (ones * '"');
            const std::uint64_t backslash = x ^ (ones * '\\');
            // (v - 0x01..) & ~v has a byte's high bit set when that byte of v is zero, and
            // (x - 0x20..) & ~x when that byte of x is below 0x20 (only ever a hint: the bytes
            // are then looked at one by one).
            const std::uint64_t hint = ((quote - ones) & ~quote) |
                                       ((backslash - ones) & ~backslash) | ((x - ones * 0x20) & ~x);
            if ((hint & highs) != 0) break;
            p += 8;
        }
        const char* const stop = end - p >= 8 ? p + 8 : end;
        for (; p != stop; ++p) {
            if (needs_json_escape(*p)) return p;
        }
        if (p == end) return end;
    }
}

/// Writes compact JSON text. It keeps its own length inside a larger string and writes through
/// a pointer: std::string's append and push_back are calls into libstdc++, and the payload
/// writer would make one every few bytes.
class JsonTextSink {
  public:
    /// Room for about `bytes` of text before the first growth.
    void reserve(std::size_t bytes) {
        if (text_.size() < bytes) text_.resize(bytes);
    }
    /// The text written so far; the sink is empty afterwards.
    std::string take() {
        text_.resize(size_);
        size_ = 0;
        need_comma_ = false;
        return std::move(text_);
    }

    void begin_object() {
        separate();
        put('{');
        need_comma_ = false;
    }
    void end_object() {
        put('}');
        need_comma_ = true;
    }
    void begin_array() {
        separate();
        put('[');
        need_comma_ = false;
    }
    void end_array() {
        put(']');
        need_comma_ = true;
    }
    void key(std::string_view name) {
        separate();
        quoted(name);
        put(':');
        need_comma_ = false;
    }
    /// A key written in the source (the payload's own names): nothing in it needs escaping.
    template <std::size_t N>
    void key(const char (&name)[N]) {
        char* at = room(N + 3);  // ,"name":
        if (need_comma_) *at++ = ',';
        *at++ = '"';
        std::memcpy(at, name, N - 1);
        at += N - 1;
        *at++ = '"';
        *at++ = ':';
        end_at(at);
        need_comma_ = false;
    }
    void string(std::string_view value) {
        separate();
        quoted(value);
        need_comma_ = true;
    }
    void boolean(bool value) {
        separate();
        put(value ? std::string_view("true") : std::string_view("false"));
        need_comma_ = true;
    }
    void integer(std::int64_t value) {
        separate();
        char* at = room(24);
        end_at(std::to_chars(at, at + 24, value).ptr);
        need_comma_ = true;
    }
    /// The base64 of `bytes`, as a string, encoded in place (base64 needs no escaping).
    void base64_string(std::string_view bytes) {
        separate();
        char* at = room(base64_encoded_size(bytes.size()) + 2);
        *at++ = '"';
        base64_encode_into(bytes, at);
        at += base64_encoded_size(bytes.size());
        *at++ = '"';
        end_at(at);
        need_comma_ = true;
    }
    /// A value serialized elsewhere (dynamic_template_data, as nlohmann dumped it), written as
    /// it is: it must be valid JSON.
    void json_text(std::string_view text) {
        separate();
        put(text);
        need_comma_ = true;
    }

    /// Members written by `write` into an object, kept to be written again (make_private's
    /// shared envelope): text here.
    using Members = std::string;

    template <class Write>
    Members capture_members(Write&& write) {
        std::string saved = std::move(text_);
        const std::size_t saved_size = size_;
        const bool comma = need_comma_;
        text_ = std::string();
        size_ = 0;
        need_comma_ = false;
        write();
        Members members = take();
        text_ = std::move(saved);
        size_ = saved_size;
        need_comma_ = comma;
        return members;
    }
    void replay_members(const Members& members) {
        if (members.empty()) return;
        separate();
        put(members);
        need_comma_ = true;
    }

  private:
    /// `bytes` of room at the end of the text, counted as written: end_at() gives back what
    /// was not used.
    char* room(std::size_t bytes) {
        if (text_.size() - size_ < bytes) grow(bytes);
        char* at = text_.data() + size_;
        size_ += bytes;
        return at;
    }
    /// Out of line, so that room() stays small enough to be inlined everywhere.
    SENDGRID_BACKEND_DETAIL_NOINLINE void grow(std::size_t bytes) {
        text_.resize(std::max(text_.size() * 2, size_ + bytes));
    }
    void end_at(const char* end) { size_ = static_cast<std::size_t>(end - text_.data()); }
    void put(char c) { *room(1) = c; }
    void put(std::string_view text) {
        if (!text.empty()) std::memcpy(room(text.size()), text.data(), text.size());
    }
    void separate() {
        if (need_comma_) put(',');
    }

    /// `text` quoted and escaped as RFC 8259 requires; other bytes (UTF-8) pass as they are.
    void quoted(std::string_view text) {
        char* at = room(text.size() + 2);  // grows again only for escapes
        *at++ = '"';
        const char* run = text.data();
        const char* const end = text.data() + text.size();
        for (;;) {
            const char* special = find_json_special(run, end);
            if (special != run) std::memcpy(at, run, static_cast<std::size_t>(special - run));
            at += special - run;
            if (special == end) break;
            run = special + 1;
            // The byte was counted once; its escape takes up to 6 (\u00XX).
            const std::size_t offset = static_cast<std::size_t>(at - text_.data());
            room(5);
            at = text_.data() + offset;
            *at++ = '\\';
            const auto c = static_cast<unsigned char>(*special);
            switch (c) {
                case '"':
                    *at++ = '"';
                    break;
                case '\\':
                    *at++ = '\\';
                    break;
                case '\b':
                    *at++ = 'b';
                    break;
                case '\f':
                    *at++ = 'f';
                    break;
                case '\n':
                    *at++ = 'n';
                    break;
                case '\r':
                    *at++ = 'r';
                    break;
                case '\t':
                    *at++ = 't';
                    break;
                default: {
                    static constexpr char hex[] = "0123456789abcdef";
                    const char escaped[] = {'u', '0', '0', hex[c >> 4], hex[c & 15]};
                    std::memcpy(at, escaped, sizeof escaped);
                    at += sizeof escaped;
                }
            }
        }
        *at++ = '"';
        end_at(at);
    }

    std::string text_;  ///< text_[0, size_) is written; the rest is room
    std::size_t size_ = 0;
    bool need_comma_ = false;
};

/// Builds an nlohmann::json tree in `root`. A template so that its members, heavy users of
/// nlohmann::json, are compiled only in files that build trees (the send path writes text).
template <class Json>
class BasicJsonDomSink {
  public:
    Json root;

    void begin_object() { open(Json::object()); }
    void end_object() { open_.pop_back(); }
    void begin_array() { open(Json::array()); }
    void end_array() { open_.pop_back(); }
    void key(std::string_view name) { key_.assign(name.data(), name.size()); }
    void string(std::string_view value) { place(Json(std::string(value))); }
    void boolean(bool value) { place(Json(value)); }
    void integer(std::int64_t value) { place(Json(value)); }
    void base64_string(std::string_view bytes) { place(Json(base64_encode(bytes))); }
    /// A copy of a whole value (dynamic_template_data).
    void json_value(const Json& value) { place(value); }

    using Members = Json;

    template <class Write>
    Members capture_members(Write&& write) {
        // `write` writes into this sink: point it at a fresh object for the time of the call.
        std::vector<Json*> saved_open = std::move(open_);
        std::string saved_key = std::move(key_);
        Members members = Json::object();
        open_ = {&members};
        write();
        open_ = std::move(saved_open);
        key_ = std::move(saved_key);
        return members;
    }
    void replay_members(const Members& members) {
        auto& object = open_.back()->template get_ref<typename Json::object_t&>();
        for (const auto& [name, value] : members.items()) object.emplace(name, value);
    }

  private:
    /// Puts `value` where the next value goes; returns it.
    Json* place(Json value) {
        if (open_.empty()) {
            root = std::move(value);
            return &root;
        }
        Json& parent = *open_.back();
        if (parent.is_array()) {
            auto& array = parent.template get_ref<typename Json::array_t&>();
            array.push_back(std::move(value));
            return &array.back();
        }
        auto& object = parent.template get_ref<typename Json::object_t&>();
        return &object.insert_or_assign(std::move(key_), std::move(value)).first->second;
    }
    void open(Json container) { open_.push_back(place(std::move(container))); }

    // Open containers, innermost last. A pointer into an array stays valid while it is open:
    // the array only grows again after it is closed.
    std::vector<Json*> open_;
    std::string key_;
};

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
