#pragma once

/// @file
/// A message with more recipients than one request may carry, sent in parts (opt-in:
/// `Settings::split_large_messages`): runs of whole personalizations, in order, each within
/// SendGrid's limits on recipients and personalizations. A personalization is one mail that its
/// recipients all see, so it is never divided: one over the limit is refused, named.

#include <cstddef>
#include <string>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/message.hpp"
#include "sendgrid_backend/payload/limits.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

namespace detail {

/// One part: personalizations [first, first + count), or with make_private the addresses
/// to[first, first + count), each its own personalization.
struct PartWindow {
    std::size_t first = 0;
    std::size_t count = 0;
    std::size_t recipients = 0;  ///< as SendGrid counts them (before any de-duplication)
};

/// Whether `message` is made of personalizations that can go in separate requests.
inline bool divisible(const EmailMessage& message) noexcept {
    return !message.personalizations.empty() || message.make_private;
}

/// How many personalizations `message` has (a divisible one).
inline std::size_t personalization_count(const EmailMessage& message) noexcept {
    return message.personalizations.empty() ? message.to.size() : message.personalizations.size();
}

/// The recipients of personalization `i` of a divisible message: its to, then its cc and bcc or
/// else the message's, calling `each` for every address.
template <class Each>
void for_each_recipient(const EmailMessage& message, std::size_t i, Each&& each) {
    const bool own = !message.personalizations.empty();
    const Personalization* p = own ? &message.personalizations[i] : nullptr;
    if (own) {
        for (const auto& address : p->to) each(address);
    } else {
        each(message.to[i]);
    }
    for (const auto& address : own && !p->cc.empty() ? p->cc : message.cc) each(address);
    for (const auto& address : own && !p->bcc.empty() ? p->bcc : message.bcc) each(address);
}

/// The parts `message` goes in: one window over everything when it fits in one request, or when
/// it is not divisible (its payload then says what is wrong).
/// @throws InvalidMessage naming a personalization that alone has more recipients than a
///         request may carry.
inline std::vector<PartWindow> plan_parts(const EmailMessage& message) {
    std::vector<PartWindow> parts;
    if (!divisible(message)) {
        parts.push_back({0, static_cast<std::size_t>(-1), 0});
        return parts;
    }
    PartWindow current;
    const std::size_t count = personalization_count(message);
    for (std::size_t i = 0; i < count; ++i) {
        std::size_t recipients = 0;
        for_each_recipient(message, i, [&](const std::string&) { ++recipients; });
        if (recipients > limits::max_recipients) {
            const std::string name = message.personalizations.empty()
                                         ? "to[" + std::to_string(i) + "]"
                                         : "personalizations[" + std::to_string(i) + "]";
            throw InvalidMessage(name, "has " + std::to_string(recipients) +
                                           " recipients in to, cc and bcc; SendGrid allows at "
                                           "most 1000 per request, and one personalization is "
                                           "one mail that they all see, so it is not divided");
        }
        if (current.count == limits::max_personalizations ||
            current.recipients + recipients > limits::max_recipients) {
            parts.push_back(current);
            current = PartWindow{i, 0, 0};
        }
        ++current.count;
        current.recipients += recipients;
    }
    parts.push_back(current);
    return parts;
}

/// Every recipient of the part `window` of a divisible message, as given (per personalization:
/// to, cc, bcc).
inline std::vector<std::string> part_recipients(const EmailMessage& message,
                                                const PartWindow& window) {
    std::vector<std::string> recipients;
    recipients.reserve(window.recipients);
    for (std::size_t i = window.first; i < window.first + window.count; ++i) {
        for_each_recipient(message, i,
                           [&](const std::string& address) { recipients.push_back(address); });
    }
    return recipients;
}

}  // namespace detail

SENDGRID_BACKEND_NAMESPACE_END
