#pragma once

/// @file
/// Small text helpers: UTF-8 and ASCII checks, case folding, trimming, decimal parsing, field
/// paths.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "sendgrid_backend/detail/abi.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// Appends `text` with its backslashes, tabs and line breaks escaped (`\\`, `\t`, `\n`):
/// a field of a tab-separated line that holds no line break.
inline void append_escaped(std::string& out, std::string_view text) {
    for (char c : text) {
        switch (c) {
            case '\\':
                out += "\\\\";
                break;
            case '\t':
                out += "\\t";
                break;
            case '\n':
                out += "\\n";
                break;
            default:
                out += c;
        }
    }
}

/// `text` without the escapes `append_escaped` wrote.
inline std::string unescaped(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '\\' || i + 1 == text.size()) {
            out += text[i];
            continue;
        }
        const char next = text[++i];
        out += next == 't' ? '\t' : next == 'n' ? '\n' : next;
    }
    return out;
}

/// Whether `text` is well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
/// SendGrid answers 415 to anything else, and nlohmann::json::dump would throw on it.
inline bool is_valid_utf8(std::string_view text) noexcept {
    const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
    const std::size_t size = text.size();
    std::size_t i = 0;
    while (i < size) {
        // Fast path: skip 8 ASCII bytes at a time.
        while (i + 8 <= size) {
            std::uint64_t chunk;
            std::memcpy(&chunk, bytes + i, sizeof chunk);  // one load; byte order is irrelevant
            if (chunk & 0x8080808080808080ULL) break;
            i += 8;
        }
        if (i >= size) break;
        const unsigned char lead = bytes[i];
        if (lead < 0x80) {
            ++i;
            continue;
        }
        std::size_t length = 0;
        unsigned char min_second = 0x80;
        unsigned char max_second = 0xBF;
        if (lead >= 0xC2 && lead <= 0xDF) {
            length = 2;
        } else if (lead >= 0xE0 && lead <= 0xEF) {
            length = 3;
            if (lead == 0xE0) min_second = 0xA0;  // overlong
            if (lead == 0xED) max_second = 0x9F;  // surrogates
        } else if (lead >= 0xF0 && lead <= 0xF4) {
            length = 4;
            if (lead == 0xF0) min_second = 0x90;  // overlong
            if (lead == 0xF4) max_second = 0x8F;  // above U+10FFFF
        } else {
            return false;
        }
        if (i + length > size) return false;
        if (bytes[i + 1] < min_second || bytes[i + 1] > max_second) return false;
        for (std::size_t k = 2; k < length; ++k) {
            if (bytes[i + k] < 0x80 || bytes[i + k] > 0xBF) return false;
        }
        i += length;
    }
    return true;
}

/// Whether `text` holds any of `chars`. A plain loop: string_view::find_first_of calls memchr
/// once per character of `text`, which showed up as the top cost of building payloads.
inline bool contains_any(std::string_view text, std::string_view chars) noexcept {
    for (char c : text) {
        for (char wanted : chars) {
            if (c == wanted) return true;
        }
    }
    return false;
}

/// Whether `text` holds a CR or LF: in a header, subject or address that is header injection.
/// No early exit: the loop then vectorizes, and a clean text is read to the end anyway.
inline bool has_line_break(std::string_view text) noexcept {
    bool found = false;
    for (char c : text) found |= (c == '\r') | (c == '\n');
    return found;
}

/// Whether every byte of `text` is printable ASCII (0x20 to 0x7e): no control character, line
/// break, NUL or byte of UTF-8. Eight bytes at a time: a byte loop does not vectorize for
/// strings as short as an address, and every address of every message goes through here.
inline bool is_printable_ascii(std::string_view text) noexcept {
    constexpr std::uint64_t ones = 0x0101010101010101ULL;
    constexpr std::uint64_t high = 0x8080808080808080ULL;
    const auto printable = [](std::uint64_t word) {
        const std::uint64_t low7 = word & ~high;  // no byte carries into the next below
        const bool at_least_space = ((low7 + 0x60 * ones) & high) == high;  // low7 >= 0x20
        const bool has_del = ((low7 + ones) & high) != 0;                   // low7 == 0x7f
        return (word & high) == 0 && at_least_space && !has_del;
    };
    const char* bytes = text.data();
    const std::size_t size = text.size();
    std::uint64_t word = 0x2020202020202020ULL;  // spaces pass: they fill a short text's word
    if (size < 8) {
        if (size > 0) std::memcpy(&word, bytes, size);
        return printable(word);
    }
    for (std::size_t i = 0; i + 8 <= size; i += 8) {
        std::memcpy(&word, bytes + i, sizeof word);
        if (!printable(word)) return false;
    }
    std::memcpy(&word, bytes + size - 8, sizeof word);  // the last 8, overlapping
    return printable(word);
}

inline bool is_ascii(std::string_view text) noexcept {
    for (char c : text) {
        if (static_cast<unsigned char>(c) >= 0x80) return false;
    }
    return true;
}

inline char to_lower_ascii(char c) noexcept {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

inline std::string to_lower_ascii(std::string_view text) {
    std::string lower(text);
    for (char& c : lower) c = to_lower_ascii(c);
    return lower;
}

inline bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (to_lower_ascii(a[i]) != to_lower_ascii(b[i])) return false;
    }
    return true;
}

/// `text` without leading and trailing spaces and tabs. Plain loops: find_first_not_of calls
/// memchr per character, a visible cost when 1000 addresses are parsed per message.
inline std::string_view trim(std::string_view text) noexcept {
    std::size_t first = 0;
    std::size_t end = text.size();
    while (first < end && (text[first] == ' ' || text[first] == '\t')) ++first;
    while (end > first && (text[end - 1] == ' ' || text[end - 1] == '\t')) --end;
    return text.substr(first, end - first);
}

/// A non-negative decimal integer of at most `max_digits` digits and nothing else ("42", not
/// " 42", "4x" or "-1"); nullopt otherwise. For header values and numbers sent as strings.
inline std::optional<std::int64_t> parse_decimal(std::string_view text,
                                                 std::size_t max_digits = 18) noexcept {
    if (text.empty() || text.size() > max_digits) return std::nullopt;
    std::int64_t value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return std::nullopt;
        value = value * 10 + (c - '0');
    }
    return value;
}

/// Paths that name a field inside a value in errors: `field["key"]`, `field[3]`.
inline std::string keyed(std::string_view field, std::string_view key) {
    std::string path(field);
    path += "[\"";
    path += key;
    path += "\"]";
    return path;
}

inline std::string indexed(std::string_view field, std::size_t index) {
    std::string path(field);
    path += '[';
    path += std::to_string(index);
    path += ']';
    return path;
}

/// A value for an error text: quoted, cut to 80 bytes, line breaks shown as \r and \n.
inline std::string quote_for_error(std::string_view value) {
    std::string quoted = "'";
    const std::size_t limit = 80;
    for (std::size_t i = 0; i < value.size() && i < limit; ++i) {
        if (value[i] == '\r') {
            quoted += "\\r";
        } else if (value[i] == '\n') {
            quoted += "\\n";
        } else {
            quoted += value[i];
        }
    }
    if (value.size() > limit) quoted += "...";
    quoted += "'";
    return quoted;
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
