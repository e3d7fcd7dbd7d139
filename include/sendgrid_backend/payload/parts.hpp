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

/// Personalization `i` of a divisible message: its to (or make_private's one address), and its
/// cc and bcc or else the message's. Plain loops below rather than a visitor template: every
/// file that sends compiles this (benchmarks/compile_cost.sh).
inline const std::vector<std::string>& cc_of(const EmailMessage& message, std::size_t i) noexcept {
    if (message.personalizations.empty() || message.personalizations[i].cc.empty())
        return message.cc;
    return message.personalizations[i].cc;
}
inline const std::vector<std::string>& bcc_of(const EmailMessage& message, std::size_t i) noexcept {
    if (message.personalizations.empty() || message.personalizations[i].bcc.empty()) {
        return message.bcc;
    }
    return message.personalizations[i].bcc;
}
inline std::size_t to_count_of(const EmailMessage& message, std::size_t i) noexcept {
    return message.personalizations.empty() ? 1 : message.personalizations[i].to.size();
}

/// The part of a divisible message that starts at personalization `first`: as many whole
/// personalizations as fit in one request (none when `first` is past the last). Windows one after
/// the other rather than a vector of them: every file that sends compiles this.
/// @throws InvalidMessage naming a personalization that alone has more recipients than a
///         request may carry.
inline PartWindow part_from(const EmailMessage& message, std::size_t first) {
    PartWindow part{first, 0, 0};
    const std::size_t count = personalization_count(message);
    for (std::size_t i = first; i < count && part.count < limits::max_personalizations; ++i) {
        const std::size_t recipients =
            to_count_of(message, i) + cc_of(message, i).size() + bcc_of(message, i).size();
        if (recipients > limits::max_recipients) {
            const std::string name = message.personalizations.empty()
                                         ? "to[" + std::to_string(i) + "]"
                                         : "personalizations[" + std::to_string(i) + "]";
            throw InvalidMessage(name, "has " + std::to_string(recipients) +
                                           " recipients in to, cc and bcc; SendGrid allows at "
                                           "most 1000 per request, and one personalization is "
                                           "one mail that they all see, so it is not divided");
        }
        if (part.recipients + recipients > limits::max_recipients) break;
        ++part.count;
        part.recipients += recipients;
    }
    return part;
}

/// How many requests a divisible message takes (1 when it fits in one).
/// @throws InvalidMessage as part_from.
inline std::size_t part_count(const EmailMessage& message) {
    std::size_t parts = 0;
    for (std::size_t first = 0; first < personalization_count(message); ++parts) {
        first += part_from(message, first).count;
    }
    return parts;
}

/// Every recipient of the part `window` of a divisible message, as given (per personalization:
/// to, cc, bcc).
inline std::vector<std::string> part_recipients(const EmailMessage& message,
                                                const PartWindow& window) {
    std::vector<std::string> recipients;
    recipients.reserve(window.recipients);
    for (std::size_t i = window.first; i < window.first + window.count; ++i) {
        if (message.personalizations.empty()) {
            recipients.push_back(message.to[i]);
        } else {
            for (const auto& address : message.personalizations[i].to)
                recipients.push_back(address);
        }
        for (const auto& address : cc_of(message, i)) recipients.push_back(address);
        for (const auto& address : bcc_of(message, i)) recipients.push_back(address);
    }
    return recipients;
}

}  // namespace detail

SENDGRID_BACKEND_NAMESPACE_END
