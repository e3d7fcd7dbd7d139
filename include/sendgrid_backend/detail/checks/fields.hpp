#pragma once

/// @file
/// Checks of a message's text that throw `InvalidMessage` naming the field: UTF-8, a single
/// line, and JSON values (UTF-8 throughout, nested no deeper than the library allows).

#include <cstddef>
#include <string>
#include <string_view>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/json/depth.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/exceptions.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

// Field names are views: sending checks every field of every message, and a std::string made
// from each literal cost more than most checks; the name is only copied into an error.

inline void require_utf8(std::string_view value, std::string_view field) {
    if (!is_valid_utf8(value)) {
        throw InvalidMessage(std::string(field), "is not valid UTF-8 (SendGrid answers 415 to it)");
    }
}

/// UTF-8 and a single line without NUL bytes: subjects, header names and values, file names,
/// types, ids. These end up in MIME headers, where a NUL (valid UTF-8) has no business either.
inline void require_single_line(std::string_view value, std::string_view field) {
    // Printable ASCII passes every check below: one word-at-a-time pass for the common case, as
    // parse_address_view does, instead of three.
    if (is_printable_ascii(value)) return;
    require_utf8(value, field);
    if (has_line_break(value)) {
        throw InvalidMessage(std::string(field),
                             quote_for_error(value) + " contains a line break (header injection)");
    }
    if (value.find('\0') != std::string_view::npos) {
        throw InvalidMessage(std::string(field), "contains a NUL byte");
    }
}

/// UTF-8 without NUL bytes: a body, an alternative, a footer. Mail text parts may span lines,
/// but SMTP cannot carry a NUL in them (RFC 5321 section 4.5.2 allows none in text).
inline void require_mail_text(std::string_view value, std::string_view field) {
    require_utf8(value, field);
    if (const auto at = value.find('\0'); at != std::string_view::npos) {
        throw InvalidMessage(std::string(field), "contains a NUL byte at position " +
                                                     std::to_string(at) +
                                                     " (mail text cannot carry one)");
    }
}

/// Every string and key inside a JSON value must be UTF-8 or dump() throws later, and it may
/// nest no deeper than max_json_depth or dump() could overflow the stack.
template <class Json>
void require_utf8_json(const Json& value, const std::string& field,
                       int depth_left = max_json_depth) {
    if (value.is_structured() && depth_left == 0) {
        throw InvalidMessage(field, too_deep_json(max_json_depth));
    }
    if (value.is_string()) {
        require_utf8(value.template get_ref<const std::string&>(), field);
    } else if (value.is_object()) {
        for (const auto& [key, item] : value.items()) {
            require_utf8(key, field);
            require_utf8_json(item, keyed(field, key), depth_left - 1);
        }
    } else if (value.is_array()) {
        std::size_t i = 0;
        for (const auto& item : value) require_utf8_json(item, indexed(field, i++), depth_left - 1);
    }
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
