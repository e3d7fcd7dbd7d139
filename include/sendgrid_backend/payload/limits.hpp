#pragma once

/// @file
/// SendGrid's documented limits on a request, which build_payload checks before anything is
/// sent (the backend and the Redis queue check the body's size against the same numbers).

#include <cstddef>

#include "sendgrid_backend/detail/abi.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// SendGrid's documented limits, checked before anything is sent.
namespace limits {
inline constexpr std::size_t max_personalizations = 1000;
inline constexpr std::size_t max_recipients = 1000;  ///< to + cc + bcc over all personalizations
inline constexpr std::size_t max_categories = 10;
inline constexpr std::size_t max_category_length = 255;
inline constexpr std::size_t max_args_bytes = 10000;  ///< custom_args or substitutions, each
inline constexpr std::size_t max_groups_to_display = 25;
inline constexpr std::size_t min_ip_pool_name = 2;
inline constexpr std::size_t max_ip_pool_name = 64;
/// The whole request. 30 MB taken as 30,000,000 bytes, the stricter reading.
inline constexpr std::size_t max_payload_bytes = 30'000'000;
}  // namespace limits

SENDGRID_BACKEND_NAMESPACE_END
