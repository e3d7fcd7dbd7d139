#pragma once

/// @file
/// What makes a SendGrid batch id: one check for the message's `batch_id` (payload) and for the
/// arguments of `ScheduledSends` (scheduled_sends.hpp).

#include <cstddef>
#include <string>
#include <string_view>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/detail/text/url.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// Why `batch_id` cannot be one, or empty. SendGrid's ids are letters, digits, '-' and '_';
/// refusing anything else also keeps the id from changing a request's path.
inline std::string batch_id_problem(std::string_view batch_id) {
    if (batch_id.empty()) return "is empty (create one with create_batch_id())";
    if (batch_id.size() > 256) return "is longer than 256 characters";
    for (std::size_t i = 0; i < batch_id.size(); ++i) {
        const char c = batch_id[i];
        if (!is_alnum_ascii(c) && c != '-' && c != '_') {
            return quote_for_error(batch_id) +
                   " has a character that is not a letter, digit, "
                   "'-' or '_' at position " +
                   std::to_string(i);
        }
    }
    return "";
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
