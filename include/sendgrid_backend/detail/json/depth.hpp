#pragma once

/// @file
/// How deep the library lets JSON nest, and checks of it. Free of nlohmann/json's header (a
/// template where it reads a value) so that the umbrella header can use it.

#include <cstddef>
#include <string>
#include <string_view>

#include "sendgrid_backend/detail/abi.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

// nlohmann copies and writes JSON values recursively, so a value nested some ten thousand levels
// deep overflows the stack. The library bounds what it takes: a dynamic_template_data value may
// nest max_json_depth levels, a text it reads (a webhook body, a stored message) twice that,
// which leaves room for the message or event around such a value.
inline constexpr int max_json_depth = 256;
inline constexpr int max_json_text_depth = 2 * max_json_depth;

/// What an InvalidMessage says of JSON nested deeper than `limit` levels.
inline std::string too_deep_json(int limit) {
    return "nests arrays and objects deeper than " + std::to_string(limit) + " levels";
}

/// Whether `value` nests deeper than `limit` levels (a scalar is 0 deep); the recursion goes
/// no deeper than `limit` + 1.
template <class Json>
bool nests_deeper(const Json& value, int limit) {
    if (!value.is_structured()) return false;
    if (limit == 0) return true;
    for (const auto& item : value) {
        if (nests_deeper(item, limit - 1)) return true;
    }
    return false;
}

/// The same for JSON text, without parsing it: brackets inside strings do not count. Exact for
/// JSON; text that is not JSON is the parser's to refuse.
inline bool text_nests_deeper(std::string_view text, int limit) noexcept {
    int depth = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (c == '\\') {
                ++i;  // the escaped character cannot end the string
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > limit) return true;
        } else if (c == ']' || c == '}') {
            // More closed than opened: not JSON, for the parser to refuse (and the count can
            // never run past an int however long the text).
            if (--depth < 0) return false;
        }
    }
    return false;
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
