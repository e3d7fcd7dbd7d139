#pragma once

/// @file
/// `PayloadOptions`: what a payload takes from the backend's settings rather than the message.

#include <cstddef>

#include "sendgrid_backend/detail/abi.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// The settings that shape a payload (a subset of `SendgridBackend::Settings`).
struct PayloadOptions {
    bool sandbox_mode = false;
    bool track_email_opens = true;
    bool track_clicks_html = true;
    bool track_clicks_plain = true;
    /// Drop an address that already appears in the same personalization (to before cc before
    /// bcc) instead of refusing the message. Off by default: a duplicate is often a bug.
    bool deduplicate_recipients = false;
    /// Only the personalizations [first_personalization, + personalization_count) are written
    /// (with make_private: those of to[first_personalization...]): one part of a message sent
    /// in parts (Settings::split_large_messages, parts.hpp). Errors still name the
    /// message's own indices. A message with neither has its one personalization whatever.
    std::size_t first_personalization = 0;
    std::size_t personalization_count = static_cast<std::size_t>(-1);
};

SENDGRID_BACKEND_NAMESPACE_END
