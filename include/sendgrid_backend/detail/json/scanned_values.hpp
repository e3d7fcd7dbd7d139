#pragma once

/// @file
/// Values read off a JsonScanner (detail/json/scan.hpp) as the Event Webhook's fields take
/// them, without a tree: text by the text rule, integers by the rule nlohmann's types gave.

#include <charconv>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/json/scan.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// `json` (text the scanner took) without the spaces outside its strings.
inline std::string compact_json(std::string_view json) {
    std::string text;
    text.reserve(json.size());
    bool in_string = false;
    for (std::size_t i = 0; i < json.size(); ++i) {
        const char c = json[i];
        if (in_string) {
            text += c;
            if (c == '\\') {
                text += json[++i];  // the escaped character cannot end the string
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
            text += c;
        } else if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            text += c;
        }
    }
    return text;
}

/// Reads a value as text into `out`: a string decoded, any other value its compact JSON text
/// as received; null is nothing when `null_is_empty` (a text field), else "null" (a custom
/// arg). False when the text is not JSON.
inline bool read_text(JsonScanner& scan, std::string& out, bool null_is_empty = true) {
    if (scan.peek() == '"') return scan.string(out);
    std::string_view raw;
    if (!scan.value(&raw)) return false;
    if (null_is_empty && raw == "null") {
        out.clear();
    } else {
        out = compact_json(raw);
    }
    return true;
}

/// A JSON number's value as an integer when it has one: an integer in int64's range as it is;
/// any other number, as nlohmann reads it as a double, truncated when a double of it is in
/// int64's range (1e300 would convert with undefined behaviour); except that an integer beyond
/// int64's range and within uint64's, which nlohmann reads as unsigned, is none.
inline std::optional<std::int64_t> integer_of_number(std::string_view token) noexcept {
    const JsonNumber number = json_number_value(token);
    switch (number.kind) {
        case JsonNumber::Kind::signed_integer:
            return number.signed_value;
        case JsonNumber::Kind::unsigned_integer:
            if (number.unsigned_value >
                static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
                return std::nullopt;
            }
            return static_cast<std::int64_t>(number.unsigned_value);
        case JsonNumber::Kind::floating:
            break;
    }
    const double value = number.floating_value;
    if (value >= -9223372036854775808.0 && value < 9223372036854775808.0) {
        return static_cast<std::int64_t>(value);
    }
    return std::nullopt;
}

/// Whether a JSON number is other than zero.
inline bool is_nonzero_number(std::string_view token) noexcept {
    double value = 0;
    (void)std::from_chars(token.data(), token.data() + token.size(), value);
    return value != 0;
}

/// Reads an integer field's value into `out`: a number (see integer_of_number) or a string of
/// digits (SendGrid sends some numbers as strings: "attempt": "1"); nullopt for anything else
/// or outside [min, max] (a number from the network is refused rather than wrapped). False
/// when the text is not JSON.
inline bool read_integer(JsonScanner& scan, std::optional<std::int64_t>& out,
                         std::int64_t min = std::numeric_limits<std::int64_t>::min(),
                         std::int64_t max = std::numeric_limits<std::int64_t>::max()) {
    out.reset();
    const char first = scan.peek();
    if (first == '"') {
        std::string digits;
        if (!scan.string(digits)) return false;
        out = parse_decimal(digits);
    } else if (first == '-' || (first >= '0' && first <= '9')) {
        std::string_view token;
        if (!scan.number(token)) return false;
        out = integer_of_number(token);
    } else if (!scan.value()) {
        return false;
    }
    if (out && (*out < min || *out > max)) out.reset();
    return true;
}

/// The same for an int field that cannot be negative (attempt, url_offset.index).
inline bool read_count(JsonScanner& scan, std::optional<int>& out) {
    std::optional<std::int64_t> number;
    if (!read_integer(scan, number, 0, std::numeric_limits<int>::max())) return false;
    out.reset();
    if (number) out = static_cast<int>(*number);
    return true;
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
