#pragma once

/// @file
/// Untrusted JSON text into nlohmann::json by the library's own reader (detail/json/scan.hpp):
/// the same tree nlohmann's parser builds (parse_json_text), the same texts refused with the
/// same words, in less time (nlohmann's lexer reads a byte at a time through its input
/// adapter), and without nlohmann's parser compiled in. WebhookEvent::json() reads its `raw`
/// with it; tests/test_webhook_events.cpp holds it to nlohmann's parser.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/json/depth.hpp"
#include "sendgrid_backend/detail/json/parse.hpp"
#include "sendgrid_backend/detail/json/scan.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// A number as nlohmann types it (json_number_value).
inline nlohmann::json json_number(std::string_view token) {
    const JsonNumber number = json_number_value(token);
    switch (number.kind) {
        case JsonNumber::Kind::signed_integer:
            return number.signed_value;
        case JsonNumber::Kind::unsigned_integer:
            return number.unsigned_value;
        case JsonNumber::Kind::floating:
            break;
    }
    return number.floating_value;
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
