#pragma once

/// @file
/// A strict JSON reader for the JSON text read off the network: SendGrid's error bodies
/// (api_errors.hpp), and the Event Webhook's bodies (webhook_events.hpp). Hand-written instead of
/// nlohmann::json::parse for compile time only: every file that sends compiles the send path
/// header-only, and with nlohmann's parser in it such a file no longer compiled within the
/// library's budget against using the dependencies directly (benchmarks/compile_cost.sh; the
/// figures are in docs/benchmarks.md). tests/fuzz/fuzz_error_body.cpp holds its reading to
/// nlohmann's, both ways.

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <system_error>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/attributes.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// Whether any of the eight bytes at `at` is a quote, a backslash or a control character: a
/// string's text is mostly plain, and this tests eight bytes in a few instructions. Exact as a
/// yes or no (a subtraction's borrow can flag a byte only above one that is flagged rightly);
/// the caller finds which byte one at a time, whatever the host's byte order.
SENDGRID_BACKEND_DETAIL_WRAPS_ON_PURPOSE inline bool word_ends_plain_run(const char* at) noexcept {
    constexpr std::uint64_t ones = 0x0101010101010101ull;
    constexpr std::uint64_t highs = 0x8080808080808080ull;
    std::uint64_t word = 0;
    std::memcpy(&word, at, sizeof word);
    const std::uint64_t quote = word ^ (ones * '"');
    const std::uint64_t backslash = word ^ (ones * '\\');
    const std::uint64_t zero_byte_in =
        ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash);
    const std::uint64_t below_space = (word - ones * 0x20) & ~word;
    return ((zero_byte_in | below_space) & highs) != 0;
}

/// A strict reader of one JSON text (RFC 8259), read in place: no tree is built, a value the
/// caller skips is only checked. Every member returns false on anything that is not JSON: the
/// input is untrusted, so nesting is bounded and strings must be UTF-8. See the file comment
/// for why it is not nlohmann's parser.
class JsonScanner {
  public:
    explicit JsonScanner(std::string_view text, int max_depth = 64) noexcept
        : text_(text), max_depth_(max_depth) {}

    /// Skips spaces; returns the next character, or '\0' at the end.
    char peek() noexcept {
        skip_space();
        return at_ < text_.size() ? text_[at_] : '\0';
    }

    /// Consumes `c` (after spaces) if it is next.
    bool take(char c) noexcept {
        if (peek() != c) return false;
        ++at_;
        return true;
    }

    /// Where the run of a string's plain characters from here ends: at its next quote, escape
    /// or control character (or the text's end). `beyond_ascii` tells whether the run holds a
    /// byte above 0x7f: only such a run needs its UTF-8 checked.
    std::size_t plain_run_end(bool& beyond_ascii) const noexcept {
        std::size_t end = at_;
        std::uint64_t seen = 0;  // the run's bytes or-ed together, a word at a time
        while (end + 8 <= text_.size() && !word_ends_plain_run(text_.data() + end)) {
            std::uint64_t word = 0;
            std::memcpy(&word, text_.data() + end, sizeof word);
            seen |= word;
            end += 8;
        }
        while (end < text_.size()) {
            const auto c = static_cast<unsigned char>(text_[end]);
            if (c == '"' || c == '\\' || c < 0x20) break;
            seen |= c;
            ++end;
        }
        beyond_ascii = (seen & 0x8080808080808080ull) != 0;
        return end;
    }

    /// Whether only spaces are left.
    bool at_end() noexcept { return peek() == '\0' && at_ == text_.size(); }

    /// Reads a string value, escapes decoded, into `out`.
    bool string(std::string& out) {
        out.clear();
        if (!take('"')) return false;
        while (at_ < text_.size()) {
            // The run up to the next quote, escape or control character, appended at once.
            // Escapes decode to whole characters: checking each run is checking the string.
            bool beyond_ascii = false;
            const std::size_t end = plain_run_end(beyond_ascii);
            if (beyond_ascii && !is_valid_utf8(text_.substr(at_, end - at_))) return false;
            out.append(text_.data() + at_, end - at_);
            at_ = end;
            if (at_ >= text_.size()) return false;
            const char c = text_[at_++];
            if (c == '"') return true;
            if (c != '\\') return false;  // a control character
            if (at_ >= text_.size()) return false;
            switch (text_[at_++]) {
                case '"':
                    out += '"';
                    break;
                case '\\':
                    out += '\\';
                    break;
                case '/':
                    out += '/';
                    break;
                case 'b':
                    out += '\b';
                    break;
                case 'f':
                    out += '\f';
                    break;
                case 'n':
                    out += '\n';
                    break;
                case 'r':
                    out += '\r';
                    break;
                case 't':
                    out += '\t';
                    break;
                case 'u':
                    if (!unicode_escape(out)) return false;
                    break;
                default:
                    return false;
            }
        }
        return false;  // unterminated
    }

    /// Checks a string value without decoding it (nothing is allocated); `raw` (if given)
    /// receives its text as written, quotes included.
    bool skip_string(std::string_view* raw = nullptr) noexcept {
        if (!take('"')) return false;
        const std::size_t start = at_ - 1;
        while (at_ < text_.size()) {
            bool beyond_ascii = false;
            const std::size_t end = plain_run_end(beyond_ascii);
            // Escapes decode to whole characters, so checking each run between them is
            // checking the decoded string.
            if (beyond_ascii && !is_valid_utf8(text_.substr(at_, end - at_))) return false;
            at_ = end;
            if (at_ >= text_.size()) return false;
            const char c = text_[at_++];
            if (c == '"') {
                if (raw != nullptr) *raw = text_.substr(start, at_ - start);
                return true;
            }
            if (c != '\\' || at_ >= text_.size()) return false;
            const char escaped = text_[at_++];
            std::uint32_t code = 0;
            if (escaped == 'u') {
                if (!unicode_code(code)) return false;
            } else if (std::string_view("\"\\/bfnrt").find(escaped) == std::string_view::npos) {
                return false;
            }
        }
        return false;  // unterminated
    }

    /// Skips one value of any kind; `raw` (if given) receives its text as written.
    bool value(std::string_view* raw = nullptr) { return value(raw, 0); }

    /// Where the next character is read: with `text`, the span of what was read in between.
    std::size_t position() const noexcept { return at_; }

    /// Reads a number (see number()) and gives its text.
    bool number(std::string_view& token) noexcept {
        skip_space();
        const std::size_t start = at_;
        if (!number()) return false;
        token = text_.substr(start, at_ - start);
        return true;
    }

    /// Consumes `word` ("true", "false", "null") if it is next, after spaces.
    bool word(std::string_view text) noexcept {
        skip_space();
        return literal(text);
    }

  private:
    void skip_space() noexcept {
        while (at_ < text_.size() && (text_[at_] == ' ' || text_[at_] == '\t' ||
                                      text_[at_] == '\n' || text_[at_] == '\r')) {
            ++at_;
        }
    }

    bool value(std::string_view* raw, int depth) {
        const char first = peek();
        const std::size_t start = at_;
        bool ok = false;
        if (first == '"') {
            ok = skip_string();
        } else if (first == '{' || first == '[') {
            ok = depth < max_depth_ && container(first, depth + 1);
        } else if (first == 't') {
            ok = literal("true");
        } else if (first == 'f') {
            ok = literal("false");
        } else if (first == 'n') {
            ok = literal("null");
        } else {
            ok = number();
        }
        if (ok && raw != nullptr) *raw = text_.substr(start, at_ - start);
        return ok;
    }

    bool container(char open, int depth) {
        ++at_;
        const char close = open == '{' ? '}' : ']';
        if (take(close)) return true;
        for (;;) {
            // A key only checked: nothing decoded, nothing allocated.
            if (open == '{' && (!skip_string() || !take(':'))) return false;
            if (!value(nullptr, depth)) return false;
            if (take(close)) return true;
            if (!take(',')) return false;
        }
    }

    bool literal(std::string_view word) noexcept {
        if (text_.substr(at_, word.size()) != word) return false;
        at_ += word.size();
        return true;
    }

    bool digits() noexcept {
        const std::size_t start = at_;
        while (at_ < text_.size() && text_[at_] >= '0' && text_[at_] <= '9') ++at_;
        return at_ > start;
    }

    /// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, and not beyond a double's range (as
    /// nlohmann and most readers refuse it; one too small to represent reads as 0 and is taken).
    bool number() noexcept {
        const std::size_t start = at_;
        if (!number_grammar()) return false;
        return !overflows_double(text_.substr(start, at_ - start));
    }

    bool number_grammar() noexcept {
        if (at_ < text_.size() && text_[at_] == '-') ++at_;
        if (at_ < text_.size() && text_[at_] == '0') {
            ++at_;
        } else if (!digits()) {
            return false;
        }
        if (at_ < text_.size() && text_[at_] == '.') {
            ++at_;
            if (!digits()) return false;
        }
        if (at_ < text_.size() && (text_[at_] == 'e' || text_[at_] == 'E')) {
            ++at_;
            if (at_ < text_.size() && (text_[at_] == '+' || text_[at_] == '-')) ++at_;
            if (!digits()) return false;
        }
        return true;
    }

    static bool overflows_double(std::string_view token) noexcept {
        // Without an exponent, fewer than 300 characters are a magnitude within 1e-300 and
        // 1e300 (or zero): in range, and most numbers (timestamps, ids) are told so at once.
        if (token.size() < 300 && !contains_any(token, "eE")) {
            return false;
        }
        double value = 0;
        if (std::from_chars(token.data(), token.data() + token.size(), value).ec !=
            std::errc::result_out_of_range) {
            return false;
        }
        // Out of range, too large or too small: the decimal exponent of the first significant
        // digit tells which.
        std::size_t i = token[0] == '-' ? 1 : 0;
        const std::size_t integer_start = i;
        while (i < token.size() && token[i] >= '0' && token[i] <= '9') ++i;
        const std::size_t integer_end = i;
        long long magnitude = 0;
        bool found = false;
        for (std::size_t k = integer_start; k < integer_end && !found; ++k) {
            if (token[k] != '0') {
                magnitude = static_cast<long long>(integer_end - k) - 1;
                found = true;
            }
        }
        if (i < token.size() && token[i] == '.') {
            for (++i; i < token.size() && token[i] >= '0' && token[i] <= '9'; ++i) {
                if (!found && token[i] != '0') {
                    magnitude = -static_cast<long long>(i - integer_end);
                    found = true;
                }
            }
        }
        long long exponent = 0;
        if (i < token.size() && (token[i] == 'e' || token[i] == 'E')) {
            ++i;
            const bool negative = i < token.size() && token[i] == '-';
            if (i < token.size() && (token[i] == '+' || token[i] == '-')) ++i;
            for (; i < token.size(); ++i) {
                if (exponent < 1'000'000'000'000LL) exponent = exponent * 10 + (token[i] - '0');
            }
            if (negative) exponent = -exponent;
        }
        return magnitude + exponent > 0;
    }

    bool hex4(std::uint32_t& code) noexcept {
        if (at_ + 4 > text_.size()) return false;
        code = 0;
        for (int i = 0; i < 4; ++i) {
            const char c = text_[at_++];
            code <<= 4;
            if (c >= '0' && c <= '9')
                code |= static_cast<std::uint32_t>(c - '0');
            else if (c >= 'a' && c <= 'f')
                code |= static_cast<std::uint32_t>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F')
                code |= static_cast<std::uint32_t>(c - 'A' + 10);
            else
                return false;
        }
        return true;
    }

    /// \uXXXX (after the 'u'), a surrogate pair included: the code point.
    bool unicode_code(std::uint32_t& code) noexcept {
        if (!hex4(code)) return false;
        if (code >= 0xDC00 && code <= 0xDFFF) return false;  // a lone low surrogate
        if (code >= 0xD800 && code <= 0xDBFF) {
            std::uint32_t low = 0;
            if (text_.substr(at_, 2) != "\\u") return false;
            at_ += 2;
            if (!hex4(low) || low < 0xDC00 || low > 0xDFFF) return false;
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
        }
        return true;
    }

    /// The same, appended as UTF-8.
    bool unicode_escape(std::string& out) {
        std::uint32_t code = 0;
        if (!unicode_code(code)) return false;
        if (code < 0x80) {
            out += static_cast<char>(code);
        } else if (code < 0x800) {
            out += static_cast<char>(0xC0 | (code >> 6));
            out += static_cast<char>(0x80 | (code & 0x3F));
        } else if (code < 0x10000) {
            out += static_cast<char>(0xE0 | (code >> 12));
            out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (code & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (code >> 18));
            out += static_cast<char>(0x80 | ((code >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (code & 0x3F));
        }
        return true;
    }

    std::string_view text_;
    std::size_t at_ = 0;
    int max_depth_;
};

/// A number the scanner took, typed as nlohmann types it: an integer without '-' is unsigned,
/// with it signed, either a double when out of their range; a fraction or exponent makes a
/// double. (The scanner refused the numbers a double cannot hold; one too small for a double
/// reads as ±0, as with nlohmann's strtod. from_chars, unlike strtod, does not depend on the C
/// locale. It rounds to nearest whatever fesetround says: a program that sets another rounding
/// mode gets, at the edges of a double's range, what nlohmann would read in the default mode.)
struct JsonNumber {
    enum class Kind { signed_integer, unsigned_integer, floating };
    Kind kind = Kind::floating;
    std::int64_t signed_value = 0;
    std::uint64_t unsigned_value = 0;
    double floating_value = 0;
};

inline JsonNumber json_number_value(std::string_view token) noexcept {
    JsonNumber number;
    const char* first = token.data();
    const char* last = token.data() + token.size();
    if (!contains_any(token, ".eE")) {
        if (token[0] == '-') {
            if (std::from_chars(first, last, number.signed_value).ec == std::errc()) {
                number.kind = JsonNumber::Kind::signed_integer;
                return number;
            }
        } else if (std::from_chars(first, last, number.unsigned_value).ec == std::errc()) {
            number.kind = JsonNumber::Kind::unsigned_integer;
            return number;
        }
    }
    if (std::from_chars(first, last, number.floating_value).ec != std::errc()) {
        number.floating_value = token[0] == '-' ? -0.0 : 0.0;
    }
    return number;
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
