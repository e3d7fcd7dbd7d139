#pragma once

/// @file
/// Messages with more recipients than one request may carry, sent in parts: include this header
/// in one file of a program that sets `Settings::split_large_messages` (a backend refuses the
/// setting otherwise), as transport/curl.hpp installs libcurl; programs that never split do not
/// compile this. A message of many personalizations (make_private's, or explicit ones) goes as
/// runs of whole personalizations, in order, each request within SendGrid's limits on
/// recipients and personalizations; one emission for the message, each part's recipients and
/// outcome on `outcome.parts`. A personalization is one mail that its recipients all see, so it
/// is never divided: one over the limit is refused, named.
///
/// @code
/// #include <sendgrid_backend/parts.hpp>
/// sendgrid_backend::Settings settings = sendgrid_backend::Settings::from_env();
/// settings.split_large_messages = true;
/// @endcode

#include <algorithm>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "sendgrid_backend/backend.hpp"
#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/message.hpp"
#include "sendgrid_backend/outcome.hpp"
#include "sendgrid_backend/payload/limits.hpp"
#include "sendgrid_backend/transport.hpp"

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

/// The backend's side of sending in parts (a friend of SendgridBackend: it builds each part's
/// request as the backend builds any other).
struct MessageParts {
    static PartsPrepared prepare(const SendgridBackend& backend, EmailMessage& message,
                                 const std::string& key, std::vector<HttpRequest>& requests) {
        if (!divisible(message)) return PartsPrepared::one_request;
        const std::size_t count = part_count(message);
        // 0 parts: nobody to send to, which the payload refuses by name.
        if (count <= 1) return PartsPrepared::one_request;
        std::vector<HttpRequest> built;  // moved to `requests` once every part is built
        std::vector<SendPart> parts(count);
        PartWindow window;
        for (std::size_t j = 0; j < count; ++j) {
            window = part_from(message, window.first + window.count);
            PayloadOptions options = backend.payload_options_;
            options.first_personalization = window.first;
            options.personalization_count = window.count;
            bool added = false;
            try {
                added = backend.add_request(message, options, key, built);
            } catch (const InvalidMessage& invalid) {
                SendgridBackend::fail(message, SendStatus::invalid,
                                      invalid.field() + ": " + invalid.reason());
            }
            if (!added) {
                message.outcome.failure_reason = "part " + std::to_string(j + 1) + " of " +
                                                 std::to_string(count) + ": " +
                                                 message.outcome.failure_reason;
                return PartsPrepared::refused;
            }
            parts[j].recipients = part_recipients(message, window);
        }
        message.outcome.parts = std::move(parts);
        for (HttpRequest& request : built) requests.push_back(std::move(request));
        return PartsPrepared::added;
    }
};

}  // namespace detail

/// Sums up the outcomes of a message sent in parts into its own fields (see
/// `SendOutcome::parts`), once every part is final.
inline void record_parts(SendOutcome& outcome) {
    const std::vector<SendPart>& parts = outcome.parts;
    if (parts.empty()) return;
    const SendOutcome* first_failed = nullptr;
    bool any_unknown = false;
    std::size_t accepted = 0;
    outcome.attempts = 0;
    outcome.tries = 0;
    outcome.duration = {};
    outcome.earlier_tries.clear();
    outcome.failure_reason.clear();
    for (std::size_t i = 0; i < parts.size(); ++i) {
        const SendOutcome& part = parts[i].outcome;
        outcome.attempts += part.attempts;
        outcome.tries += part.tries;
        outcome.duration = std::max(outcome.duration, part.duration);
        // push_back, not a range insert: its code is compiled in every sending file already.
        for (const EarlierTry& earlier : part.earlier_tries)
            outcome.earlier_tries.push_back(earlier);
        if (part.accepted()) {
            ++accepted;
            continue;
        }
        if (first_failed == nullptr) first_failed = &part;
        any_unknown = any_unknown || part.maybe_delivered();
        if (!outcome.failure_reason.empty()) outcome.failure_reason += "; ";
        outcome.failure_reason +=
            "part " + std::to_string(i + 1) + " of " + std::to_string(parts.size()) + " (" +
            std::to_string(parts[i].recipients.size()) + " recipients): " + part.failure_reason;
    }
    const SendOutcome& decisive = first_failed != nullptr ? *first_failed : parts.front().outcome;
    outcome.http_status = decisive.http_status;
    outcome.errors.clear();
    for (const ApiError& error : decisive.errors) outcome.errors.push_back(error);
    outcome.transport_error = decisive.transport_error;
    outcome.message_id = first_failed == nullptr ? decisive.message_id : std::string();
    outcome.status = any_unknown ? SendStatus::unknown : decisive.status;
    if (first_failed != nullptr && accepted > 0) {
        outcome.failure_reason += "; the other " + std::to_string(accepted) + " accepted";
    }
}

namespace detail {

inline constexpr PartsHooks message_parts_hooks{&MessageParts::prepare, &record_parts};

/// Installs the sending in parts in every program that includes this header.
inline const bool message_parts_installed = (parts_hooks().store(&message_parts_hooks), true);

}  // namespace detail

SENDGRID_BACKEND_NAMESPACE_END
