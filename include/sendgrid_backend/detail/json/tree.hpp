#pragma once

/// @file
/// Untrusted JSON text into nlohmann::json by the library's own reader (detail/json/scan.hpp):
/// the same tree nlohmann's parser builds (parse_json_text), the same texts refused with the
/// same words, in less time (nlohmann's lexer reads a byte at a time through its input
/// adapter), and without nlohmann's parser compiled in. WebhookEvent::json() reads its `raw`
/// with it; tests/test_webhook_events.cpp holds it to nlohmann's parser.

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <nlohmann/json.hpp>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/json/depth.hpp"
#include "sendgrid_backend/detail/json/parse.hpp"
#include "sendgrid_backend/detail/json/scan.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// A number as nlohmann types it: an integer without '-' is unsigned, with it signed, either
/// a double when out of their range; a fraction or exponent makes a double. (The scanner has
/// refused the numbers a double cannot hold; one too small for a double reads as ±0, as with
/// nlohmann's strtod. from_chars, unlike strtod, does not depend on the C locale. It rounds to
/// nearest whatever fesetround says: a program that sets another rounding mode gets, at the
/// edges of a double's range, what nlohmann would read in the default mode.)
inline nlohmann::json json_number(std::string_view token) {
    const char* first = token.data();
    const char* last = token.data() + token.size();
    if (token.find_first_of(".eE") == std::string_view::npos) {
        if (token[0] == '-') {
            std::int64_t value = 0;
            if (std::from_chars(first, last, value).ec == std::errc()) return value;
        } else {
            std::uint64_t value = 0;
            if (std::from_chars(first, last, value).ec == std::errc()) return value;
        }
    }
    double value = 0;
    if (std::from_chars(first, last, value).ec != std::errc()) value = token[0] == '-' ? -0.0 : 0.0;
    return value;
}

/// Reads one value into `out`; false on anything that is not JSON. The caller bounds the
/// nesting (the recursion is as deep as the text).
inline bool read_json_value(JsonScanner& scan, nlohmann::json& out) {
    switch (scan.peek()) {
        case '"': {
            std::string text;
            if (!scan.string(text)) return false;
            out = std::move(text);
            return true;
        }
        case '{': {
            scan.take('{');
            out = nlohmann::json::object();
            auto& object = out.get_ref<nlohmann::json::object_t&>();
            if (scan.take('}')) return true;
            std::string key;
            for (;;) {
                // object[key]: of a repeated key the last value stays, as with nlohmann's parser.
                if (!scan.string(key) || !scan.take(':') || !read_json_value(scan, object[key])) {
                    return false;
                }
                if (scan.take('}')) return true;
                if (!scan.take(',')) return false;
            }
        }
        case '[': {
            scan.take('[');
            out = nlohmann::json::array();
            auto& array = out.get_ref<nlohmann::json::array_t&>();
            if (scan.take(']')) return true;
            for (;;) {
                if (!read_json_value(scan, array.emplace_back())) return false;
                if (scan.take(']')) return true;
                if (!scan.take(',')) return false;
            }
        }
        case 't':
            out = true;
            return scan.word("true");
        case 'f':
            out = false;
            return scan.word("false");
        case 'n':
            out = nullptr;
            return scan.word("null");
        default: {
            std::string_view token;
            if (!scan.number(token)) return false;
            out = json_number(token);
            return true;
        }
    }
}

/// `text` read as one JSON text, with parse_json_text's contract: a discarded value when it is
/// not one or nests deeper than max_json_text_depth, `problem` (if given) then saying which.
/// A leading UTF-8 byte order mark is skipped, as nlohmann's parser skips it.
inline nlohmann::json read_json_text(std::string_view text, std::string* problem = nullptr) {
    if (text_nests_deeper(text, max_json_text_depth)) {
        return refused_json(problem, too_deep_json(max_json_text_depth));
    }
    if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
    JsonScanner scan(text);
    nlohmann::json json;
    if (!read_json_value(scan, json) || !scan.at_end()) return refused_json(problem, not_json);
    return json;
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
