#pragma once

/// @file
/// SendGrid's error answers: the body `{"errors": [{"message", "field", "help"}]}` of a refused
/// request read into `ApiError`s (outcome.hpp), strictly, as untrusted input.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/json/scan.hpp"
#include "sendgrid_backend/outcome.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// One `{"message", "field", "help"}` object; a non-string value is kept as its JSON text.
inline bool read_api_error(JsonScanner& json, ApiError& error) {
    if (!json.take('{')) return false;
    if (json.take('}')) return true;
    std::string key;
    for (;;) {
        if (!json.string(key) || !json.take(':')) return false;
        std::string* target = key == "message" ? &error.message
                              : key == "field" ? &error.field
                              : key == "help"  ? &error.help
                                               : nullptr;
        std::string_view raw;
        if (target != nullptr && json.peek() == '"') {
            if (!json.string(*target)) return false;
        } else if (!json.value(&raw)) {
            return false;
        } else if (target != nullptr) {
            target->assign(raw == "null" ? std::string_view() : raw);
        }
        if (json.take('}')) return true;
        if (!json.take(',')) return false;
    }
}

/// The list of `errors`: its objects in order; other values in it are skipped.
inline bool read_api_errors(JsonScanner& json, std::vector<ApiError>& errors) {
    if (!json.take('[')) return false;
    if (json.take(']')) return true;
    for (;;) {
        if (json.peek() == '{') {
            ApiError error;
            if (!read_api_error(json, error)) return false;
            errors.push_back(std::move(error));
        } else if (!json.value()) {
            return false;
        }
        if (json.take(']')) return true;
        if (!json.take(',')) return false;
    }
}

}  // namespace detail

/// SendGrid's `{"errors": [{"message", "field", "help"}]}`; empty when the body is not that
/// (not JSON at all, or JSON of another shape). A `help` that is not a string is kept as its
/// JSON text; null is empty. A leading UTF-8 byte order mark is skipped (RFC 8259 allows it).
inline std::vector<ApiError> parse_api_errors(std::string_view body) {
    if (body.substr(0, 3) == "\xEF\xBB\xBF") body.remove_prefix(3);
    detail::JsonScanner json(body);
    std::vector<ApiError> errors;
    if (!json.take('{')) return {};
    if (!json.take('}')) {
        std::string key;
        for (;;) {
            if (!json.string(key) || !json.take(':')) return {};
            if (key == "errors" && json.peek() == '[') {
                std::vector<ApiError> list;
                if (!detail::read_api_errors(json, list)) return {};
                errors = std::move(list);  // a repeated key: the last one counts
            } else if (!json.value()) {
                return {};
            } else if (key == "errors") {
                errors.clear();  // ... even when it is not a list
            }
            if (json.take('}')) break;
            if (!json.take(',')) return {};
        }
    }
    return json.at_end() ? errors : std::vector<ApiError>{};
}

SENDGRID_BACKEND_NAMESPACE_END
