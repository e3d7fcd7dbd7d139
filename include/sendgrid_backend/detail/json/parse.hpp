#pragma once

/// @file
/// Untrusted JSON text into nlohmann::json: depth-bounded, NUL bytes refused, the problem named.

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/json/depth.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// What a JSON text that is not one is refused with.
inline constexpr const char* not_json = "is not valid JSON";

/// The discarded value a refused text reads as, `problem` (if given) saying why.
inline nlohmann::json refused_json(std::string* problem, std::string why) {
    if (problem != nullptr) *problem = std::move(why);
    return nlohmann::json(nlohmann::json::value_t::discarded);
}

/// `text` parsed as one JSON text, or a discarded value when it is not one or nests deeper
/// than max_json_text_depth; `problem` (if given) then says which. nlohmann's parser stops at
/// a NUL byte outside a string (it also reads C strings), so it takes "[1]\0anything" as [1];
/// JSON has no raw NUL byte anywhere, so such text is refused here.
inline nlohmann::json parse_json_text(std::string_view text, std::string* problem = nullptr) {
    if (text_nests_deeper(text, max_json_text_depth)) {
        return refused_json(problem, too_deep_json(max_json_text_depth));
    }
    if (text.find('\0') != std::string_view::npos) return refused_json(problem, not_json);
    nlohmann::json json = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
    if (json.is_discarded()) return refused_json(problem, not_json);
    return json;
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
