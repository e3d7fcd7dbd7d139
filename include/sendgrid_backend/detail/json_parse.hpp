#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

#include "sendgrid_backend/detail/abi.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// `text` parsed as one JSON text, or a discarded value when it is not one. nlohmann's parser
/// stops at a NUL byte outside a string (it also reads C strings), so it takes "[1]\0anything"
/// as [1]; JSON has no raw NUL byte anywhere, so such text is refused here.
inline nlohmann::json parse_json_text(std::string_view text) {
    if (text.find('\0') != std::string_view::npos) {
        return nlohmann::json(nlohmann::json::value_t::discarded);
    }
    return nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
