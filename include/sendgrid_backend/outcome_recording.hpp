#pragma once

/// @file
/// Recording what a try got on the message's `SendOutcome`: an `HttpResponse` read as accepted,
/// rejected (with SendGrid's errors), not sent or unknown, and the API key kept out of it.

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "sendgrid_backend/api_errors.hpp"
#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/outcome.hpp"
#include "sendgrid_backend/transport.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// Writes what `response` says into `outcome` (everything but attempts, tries and duration).
/// A complete answer head is SendGrid's answer even when the body was cut short; without one,
/// the request was either not sent (`transport_failed`) or may have been (`unknown`).
inline void record_outcome(SendOutcome& outcome, const HttpResponse& response) {
    const int status = response.status;
    const bool cut_short = response.error != TransportError::none;
    outcome.http_status = status;
    outcome.transport_error = response.error;
    outcome.errors.clear();
    outcome.message_id.clear();
    outcome.failure_reason.clear();
    const std::string transport_words =
        cut_short ? std::string(to_string(response.error)) + ": " + response.error_message : "";
    if (status >= 200 && status < 300) {
        // A 2xx head is SendGrid's acceptance; a body cut short after it does not undo that.
        outcome.status = SendStatus::accepted;
        outcome.message_id = std::string(response.header("X-Message-Id"));
        return;
    }
    if (status >= 300 && status <= 599) {
        outcome.status = SendStatus::rejected;
        outcome.errors = parse_api_errors(response.body);
        outcome.failure_reason = "HTTP " + std::to_string(status);
        const std::size_t shown = std::min<std::size_t>(outcome.errors.size(), 10);
        for (std::size_t i = 0; i < shown; ++i) {
            outcome.failure_reason += "; " + outcome.errors[i].message;
            if (!outcome.errors[i].field.empty()) {
                outcome.failure_reason += " (" + outcome.errors[i].field + ")";
            }
        }
        if (outcome.errors.size() > shown) {
            outcome.failure_reason +=
                "; and " + std::to_string(outcome.errors.size() - shown) + " more";
        }
        if (cut_short) outcome.failure_reason += " (answer cut short: " + transport_words + ")";
        return;
    }
    outcome.status = SendStatus::unknown;
    if (status != 0) {
        outcome.failure_reason = "outcome unknown: the transport reported status " +
                                 std::to_string(status) + ", which is no final HTTP answer";
    } else if (!cut_short) {
        outcome.failure_reason =
            "outcome unknown: the transport gave neither an answer nor an error";
    } else if (!response.request_sent) {
        outcome.status = SendStatus::transport_failed;
        outcome.failure_reason = "not sent: " + transport_words;
    } else {
        outcome.failure_reason = "outcome unknown: the request was sent but no answer arrived (" +
                                 transport_words + "); SendGrid may have accepted it";
    }
}

namespace detail {

/// Records that no answer came and the request may have gone out (the transport threw, or never
/// answered): `why` says what happened.
inline void record_unknown(SendOutcome& outcome, const std::string& why) {
    outcome.status = SendStatus::unknown;
    outcome.http_status = 0;
    outcome.errors.clear();
    outcome.message_id.clear();
    outcome.transport_error = TransportError::exception;
    outcome.failure_reason = "outcome unknown: " + why + "; it may have sent the request";
}

/// Replaces every occurrence of `secret` in `text` (the API key, should a server echo it). The
/// search goes on after each replacement: a secret within "[redacted]" is not found again in it.
inline void redact(std::string& text, const std::string& secret) {
    if (secret.empty()) return;
    constexpr std::string_view replacement = "[redacted]";
    for (std::size_t at = text.find(secret); at != std::string::npos;
         at = text.find(secret, at + replacement.size())) {
        text.replace(at, secret.size(), replacement);
    }
}

/// Keeps `secret` out of every text of `outcome` that a server or a transport wrote.
inline void redact(SendOutcome& outcome, const std::string& secret) {
    if (secret.empty()) return;
    redact(outcome.failure_reason, secret);
    redact(outcome.message_id, secret);
    for (ApiError& error : outcome.errors) {
        redact(error.message, secret);
        redact(error.field, secret);
        redact(error.help, secret);
    }
}

}  // namespace detail

SENDGRID_BACKEND_NAMESPACE_END
