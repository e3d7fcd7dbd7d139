#pragma once

/// @file
/// Where a message's tracking key goes in a request, for the backend that adds it and the Redis
/// queue that checks, before a message is durable, what a worker's backend will send.

#include <cstddef>
#include <map>
#include <string>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/message.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// The tracking key `message` carries itself in `custom_args[arg]`; null when it carries none.
/// @throws InvalidMessage for an empty one.
inline const std::string* own_tracking_key(const EmailMessage& message, const std::string& arg) {
    auto found = message.custom_args.find(arg);
    if (found == message.custom_args.end()) return nullptr;
    if (found->second.empty()) {
        throw InvalidMessage(keyed("custom_args", arg),
                             "is empty; a tracking key needs at least one character");
    }
    return &found->second;
}

/// Calls `add(args)` for each custom_args map that lacks `arg` and must hold `key` for every
/// recipient's events to carry it: each personalization's own (SendGrid echoes those instead of
/// the message's), then the message's.
/// @throws InvalidMessage naming the field when a personalization holds another key.
template <class Add>
void place_tracking_key(EmailMessage& message, const std::string& arg, const std::string& key,
                        Add&& add) {
    for (std::size_t i = 0; i < message.personalizations.size(); ++i) {
        std::map<std::string, std::string>& own = message.personalizations[i].custom_args;
        if (own.empty()) continue;  // the message's custom_args go there
        auto theirs = own.find(arg);
        if (theirs == own.end()) {
            add(own);
        } else if (theirs->second != key) {
            throw InvalidMessage(
                keyed("personalizations[" + std::to_string(i) + "].custom_args", arg),
                "differs from the message's tracking key; set it on the message only");
        }
    }
    if (message.custom_args.find(arg) == message.custom_args.end()) add(message.custom_args);
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
